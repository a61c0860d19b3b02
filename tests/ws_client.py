"""WebSocket client scenarios for tests/websocket.rs (Python's `websockets` package).

usage: ws_client.py URL SCENARIO   — prints "ok" and exits 0 when the scenario passes.
"""
import asyncio
import ssl
import sys

import websockets


def connect(url, **kw):
    if url.startswith("wss:"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        kw["ssl"] = ctx
    return websockets.connect(url, max_size=None, **kw)


async def echo(url):
    async with connect(url) as ws:
        for m in ["ping0", "ping1" * 10, "ping2" * 100, "ping3" * 1024, "y" * 70000, "é ü ✓"]:
            await ws.send(m)
            assert await ws.recv() == m
        data = bytes(range(256)) * 10
        await ws.send(data)
        got = await ws.recv()
        assert got == data, type(got)
        for payload in [b"", b"with payload"]:
            pong = await ws.ping(payload)
            await asyncio.wait_for(pong, 5)
        await ws.send("quit")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("no close")
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1000, e


async def fragments(url):
    async with connect(url) as ws:
        # websockets sends an iterator's fragments with FIN clear, then an empty final frame.
        await ws.send(iter(["ab", "cd", "ef"]))
        got = [await ws.recv() for _ in range(4)]
        assert got == ["op=1 fin=false ab", "op=0 fin=false cd", "op=0 fin=false ef", "op=0 fin=true "], got


async def too_big(url):
    # The server closes with 1009 as soon as it sees the length: the close may arrive while
    # the client is still sending.
    try:
        async with connect(url) as ws:
            await ws.send("x" * (17 * 1024 * 1024))
            await asyncio.wait_for(ws.recv(), 10)
        raise AssertionError("no close")
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None and e.rcvd.code == 1009, e


async def client_close(url):
    async with connect(url) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.close(1000)
        assert ws.close_code == 1000, ws.close_code


async def main(url, scenario):
    await {"echo": echo, "fragments": fragments, "too_big": too_big, "client_close": client_close}[scenario](url)
    print("ok")


asyncio.run(main(sys.argv[1], sys.argv[2]))
