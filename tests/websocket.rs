//! WebSockets (r:wsupgrade, wsread, wswrite, wsclose, wsping, wspeek) with a real client
//! (Python's `websockets`, tests/ws_client.py) over plain HTTP and over TLS (mod_ssl with a
//! self-signed certificate made here), and raw-socket checks of the protocol corners.
mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

const ECHO: &str = r#"
function handle(r)
  if not r:wsupgrade() then return 400 end
  while true do
    local data, fin, op = r:wsread()
    if not data then break end
    if data == "quit" then r:wsclose() break end
    r:wswrite(data)
  end
  return apache2.DONE
end
"#;

const DESCRIBE: &str = r#"
function handle(r)
  if not r:wsupgrade() then return 400 end
  while true do
    local data, fin, op = r:wsread()
    if not data then break end
    r:wswrite(string.format("op=%d fin=%s %s", op, tostring(fin), data))
  end
end
"#;

const PINGER: &str = r#"
function handle(r)
  if not r:wsupgrade() then return 400 end
  local pending_before = r:wspeek()
  local ok = r:wsping()
  r:wswrite("pong received: " .. tostring(ok) .. " pending before: " .. tostring(pending_before))
  r:wsclose(4000)
end
"#;

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "python3 with the websockets package is required under CI"
        );
        eprintln!("skipped: python3 websockets not installed (scripts/install-deps.sh)");
    }
    ok
}

fn client(url: &str, scenario: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ws_client.py");
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(script)
        .args([url, scenario])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim_end().ends_with("ok"),
        "{scenario} at {url}:\n{text}"
    );
}

fn server(tls_port: Option<u16>) -> Server {
    let mut cfg = Config::new()
        .file("htdocs/echo.lua", ECHO)
        .file("htdocs/describe.lua", DESCRIBE)
        .file("htdocs/pinger.lua", PINGER);
    if let Some(port) = tls_port {
        cfg = cfg.tls(port);
    }
    cfg.start()
}

#[test]
fn echo_fragments_limits_and_close_over_plain_http() {
    if !httpd_available() || !python_ready() {
        return;
    }
    let s = server(None);
    let base = format!("ws://127.0.0.1:{}", s.port);
    client(&format!("{base}/echo.lua"), "echo");
    client(&format!("{base}/describe.lua"), "fragments");
    client(&format!("{base}/echo.lua"), "too_big");
    client(&format!("{base}/echo.lua"), "client_close");
    // The server is still fine afterwards.
    assert_eq!(s.get("/echo.lua").status, 400);
    s.assert_no_crash();
}

#[test]
fn echo_over_tls() {
    if !httpd_available() || !python_ready() {
        return;
    }
    let tls = free_port();
    let s = server(Some(tls));
    client(&format!("wss://127.0.0.1:{tls}/echo.lua"), "echo");
    client(&format!("wss://127.0.0.1:{tls}/describe.lua"), "fragments");
    s.assert_no_crash();
}

/// Opens a raw connection and performs the handshake; returns the stream and the 101 head.
fn handshake(port: u16, path: &str) -> (BufReader<TcpStream>, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (r, head)
}

fn read_frame(r: &mut BufReader<TcpStream>) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).unwrap();
    (h[0], p)
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

#[test]
fn protocol_details_on_the_wire() {
    if !httpd_available() {
        return;
    }
    let s = server(None);
    // RFC 6455's example key; a clean 101 without Transfer-Encoding (mod_lua sends "chunked").
    let (mut r, head) = handshake(s.port, "/echo.lua");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    // A ping with payload is answered with a pong carrying it; data still echoes afterwards.
    r.get_mut().write_all(&masked(0x9, b"abc")).unwrap();
    assert_eq!(read_frame(&mut r), (0x8A, b"abc".to_vec()));
    r.get_mut().write_all(&masked(0x1, b"hi")).unwrap();
    assert_eq!(read_frame(&mut r), (0x81, b"hi".to_vec()));
    // A client close is answered with a close frame carrying its code.
    r.get_mut()
        .write_all(&masked(0x8, &1001u16.to_be_bytes()))
        .unwrap();
    assert_eq!(read_frame(&mut r), (0x88, 1001u16.to_be_bytes().to_vec()));

    // An unmasked client frame is a protocol error: close 1002.
    let (mut r, _) = handshake(s.port, "/echo.lua");
    r.get_mut().write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(read_frame(&mut r), (0x88, 1002u16.to_be_bytes().to_vec()));

    // Server-initiated ping, wspeek and a custom close code.
    let (mut r, _) = handshake(s.port, "/pinger.lua");
    let (op, payload) = read_frame(&mut r);
    assert_eq!((op, payload.len()), (0x89, 0));
    r.get_mut().write_all(&masked(0xA, b"")).unwrap();
    let (op, text) = read_frame(&mut r);
    assert_eq!(
        (op, String::from_utf8(text).unwrap().as_str()),
        (0x81, "pong received: true pending before: false")
    );
    assert_eq!(read_frame(&mut r), (0x88, 4000u16.to_be_bytes().to_vec()));

    // Handshakes that are not WebSocket upgrades are refused.
    let bad = [
        ("POST", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        ("GET", "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        ("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        ("GET", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
    ];
    for (method, headers) in bad {
        let mut stream = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(stream, "{method} /echo.lua HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{headers}Connection: close\r\n\r\n").unwrap();
        let resp = read_response(&mut BufReader::new(stream), false).unwrap();
        assert_eq!(resp.status, 400, "{method} {headers}");
    }
    assert!(s
        .error_log()
        .contains("Websocket: Upgrade from HTTP to Websocket failed"));
    s.assert_no_crash();
}
