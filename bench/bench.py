#!/usr/bin/env python3
"""Benchmark: mod_lua_rs against Debian's mod_lua on the same httpd, side by side.

Each workload runs under each LuaScope (and with no LuaScope line) in two identically
configured private servers (mpm_event, 2 children x 32 threads, one listening socket per child,
127.0.0.1), one loading our
module and one loading /usr/lib/apache2/modules/mod_lua.so (plus one serving the static file
where the workload has one). All of a workload's servers stay up while it runs; rounds of a few
seconds alternate between them, so that a drift of the machine's speed reaches every setting
alike. The report gives the median requests/s, p50/p99 latency, child RSS, errors and child
crashes, and each ratio to mod_lua's best clean setting. Writes bench/results.md and
bench/results.svg. Loopback only; every server it starts is stopped by PID.

usage: bench/bench.py [--duration S] [--rounds N] [--workloads a,b] [--scopes default,thread]
                      [--flavour lua54|lua53|luajit]

--flavour builds our module against another Lua (cargo feature, own target directory) and
writes bench/results-<flavour>.md/.svg/.json instead.

bench/bench.py --profile ours|mod_lua,SCOPE,WORKLOAD [--requests N] [--top N] [--exclusive] runs
one workload under valgrind's callgrind in a single-process httpd (-X) and prints instructions
per request, in total and by function (inclusive, or each function's own cost with --exclusive):
the numbers of the README's profile section. With --flavour it profiles that build of ours.
"""
import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, "target", "release", "libmod_lua_rs.so")
MOD_LUA = "/usr/lib/apache2/modules/mod_lua.so"
MODULES = "/usr/lib/apache2/modules"
# ListenCoresBucketsRatio giving one listening socket per child (two children; one socket on one CPU).
BUCKETS_RATIO = -(-(os.cpu_count() or 1) // 2)
SCOPES = ["default", "once", "request", "conn", "thread", "server"]

HELLO = 'function handle(r)\n  r.content_type = "text/plain"\n  r:puts("Hello Lua World!\\n")\nend\n'
ARGS = """function handle(r)
  r.content_type = "text/plain"
  local get = r:parseargs()
  for _, k in ipairs({"a", "b", "c", "d", "e"}) do r:puts(k, "=", tostring(get[k]), "\\n") end
  for _, h in ipairs({"User-Agent", "Accept", "X-Test"}) do r:puts(h, ": ", tostring(r.headers_in[h]), "\\n") end
end
"""
POST_FORM = """function handle(r)
  r.content_type = "text/plain"
  local post = r:parsebody()
  local n = 0
  for k, v in pairs(post) do n = n + #v end
  r:puts("fields bytes ", n, "\\n")
end
"""
COMPUTE = """function handle(r)
  local items = {}
  for i = 1, 500 do items[i] = string.format("item-%05d:%s", (i * 7919) % 1000, string.rep("x", 4)) end
  table.sort(items)
  local out = table.concat(items, ",")
  r.content_type = "text/plain"
  r:puts(#out, " ", out:sub(1, 40), "\\n")
end
"""
ACCESS = "function check(r)\n  return apache2.DECLINED\nend\n"
UPPER = "function upper(r)\n  coroutine.yield()\n  while bucket do coroutine.yield(bucket:upper()) end\nend\n"
# An API endpoint as scripts write them with mod_lua's request API: a session cookie read and
# refreshed, a routing regex, a per-process hit counter, an ETag digest, escaped output.
API = """function handle(r)
  local sid = r:getcookie("sid") or r:sha1(r.useragent_ip .. r:clock())
  r:setcookie{key = "sid", value = sid, path = "/", httponly = true}
  local m = r:regex(r.uri, [[^/api/(\\w+)/(\\d+)$]])
  local hits = (r:ivm_get("hits") or 0) + 1
  r:ivm_set("hits", hits)
  r.headers_out["Cache-Control"] = "no-store"
  r.headers_out["ETag"] = '"' .. r:md5(m[1] .. m[2]) .. '"'
  r.content_type = "application/json"
  r:puts('{"kind":"', r:escape_html(m[1]), '","id":', m[2], ',"session":"', r:escape(sid), '","seen":', hits > 0 and "true" or "false", '}')
end
"""
# A mapped handler returns its status as scripts do: one that returns nothing makes both modules
# log AH02483 for every request, and the benchmark would measure error_log writes.
MAP = "function handle_item(r)\n  r.content_type = 'text/plain'\n  r:puts('item ', r.uri:match('(%d+)$'), '\\n')\n  return apache2.OK\nend\n"

# name → (files, extra config, URL path, wrk extra args, static comparison path or None)
WORKLOADS = {
    "hello": ({"htdocs/hello.lua": HELLO, "htdocs/static.txt": "Hello Lua World!\n"}, "", "/hello.lua", [], "/static.txt"),
    "args": ({"htdocs/args.lua": ARGS}, "", "/args.lua?a=1&b=two&c=3&d=four&e=5", ["-H", "X-Test: yes"], None),
    "post_form": ({"htdocs/form.lua": POST_FORM}, "", "/form.lua", ["-s", "{root}/post.lua"], None),
    "compute": ({"htdocs/compute.lua": COMPUTE}, "", "/compute.lua", [], None),
    "access_hook": (
        {"hooks.lua": ACCESS, "htdocs/page.html": "x" * 1024},
        "LuaHookAccessChecker {root}/hooks.lua check\n",
        "/page.html",
        [],
        "/page.html",
    ),
    "output_filter": (
        {"filters.lua": UPPER, "htdocs/f/big.html": "abcdefgh" * 8192},
        "LuaOutputFilter UPPER {root}/filters.lua upper\n<Location /f/>\n SetOutputFilter UPPER\n</Location>\n",
        "/f/big.html",
        [],
        "/f/big.html",
    ),
    "map_handler": (
        {"map.lua": MAP},
        "LuaMapHandler ^/items/(\\d+)$ {root}/map.lua handle_item\n",
        "/items/42",
        [],
        None,
    ),
    "api": (
        {"api.lua": API},
        "LuaMapHandler ^/api/ {root}/api.lua\n",
        "/api/widgets/42",
        ["-H", "Cookie: theme=dark; sid=3f2a9c"],
        None,
    ),
}

# The post_form body: 40 urlencoded fields, about 2 KB.
POST_BODY = "&".join(f"field{i:02d}={'v' * 40}" for i in range(1, 41))
POST_LUA = f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "{POST_BODY}"
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """One private httpd; `wrapper` (e.g. valgrind) runs it as a single process (-X)."""

    def __init__(self, module, scope, workload, static=False, wrapper=None):
        self.root = tempfile.mkdtemp(prefix="mod_lua_bench-")
        os.chmod(self.root, 0o755)
        for d in ("htdocs", "logs", "run"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        files, extra, _, _, _ = WORKLOADS[workload]
        for rel, text in files.items():
            p = os.path.join(self.root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        with open(os.path.join(self.root, "post.lua"), "w") as f:
            f.write(POST_LUA)
        subprocess.run(["chmod", "-R", "a+rX", self.root], check=True)
        self.port = free_port()
        scope_line = "" if scope == "default" else ("LuaScope server 1 64\n" if scope == "server" else f"LuaScope {scope}\n")
        # Under a wrapper the process keeps our uid, so that callgrind_control may reach it.
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 and not wrapper else ""
        lua = "" if static else f"LoadModule lua_module {module}\nAddHandler lua-script .lua\n{scope_line}{extra.format(root=self.root)}"
        if static and workload == "access_hook":
            lua = ""
        conf = f"""ServerRoot {self.root}
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile {self.root}/run/httpd.pid
DefaultRuntimeDir {self.root}/run
Mutex file:{self.root}/run default
ErrorLog {self.root}/logs/error_log
LogLevel warn
{user}LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
StartServers 2
ServerLimit 2
ThreadLimit 32
ThreadsPerChild 32
MinSpareThreads 64
MaxSpareThreads 64
MaxRequestWorkers 64
MaxKeepAliveRequests 0
# One listening socket per child (SO_REUSEPORT): the kernel spreads wrk's connections over both
# children. With one shared socket a child could accept nearly all of them, and when all of its
# workers are busy the event MPM closes a keep-alive connection that has a request waiting
# rather than wait for a worker (wrk counts a read error), on either module. httpd makes
# (online CPUs / ratio) sockets and at least as many children: the ratio keeps them at most two.
ListenCoresBucketsRatio {BUCKETS_RATIO}
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule mime_module {MODULES}/mod_mime.so
TypesConfig /etc/mime.types
DocumentRoot {self.root}/htdocs
# As Debian's apache2.conf has it: no .htaccess files are looked for (without this line httpd
# tries five of them, one per directory level, on every request).
<Directory />
 AllowOverride None
</Directory>
<Directory {self.root}/htdocs>
 Require all granted
</Directory>
{lua}
"""
        with open(os.path.join(self.root, "httpd.conf"), "w") as f:
            f.write(conf)
        cmd = ["/usr/sbin/apache2", "-d", self.root, "-f", os.path.join(self.root, "httpd.conf"), "-DFOREGROUND"]
        if wrapper:
            cmd = [*wrapper, *cmd, "-X"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + (120 if wrapper else 15)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"httpd failed: {self.proc.stderr.read().decode()} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("httpd did not start")

    def log(self):
        try:
            with open(os.path.join(self.root, "logs", "error_log")) as f:
                return f.read()
        except OSError:
            return ""

    def crashes(self):
        return self.log().count("exit signal")

    def children(self):
        """PIDs of the server's child processes."""
        kids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                        kids.append(pid)
            except (OSError, ValueError, IndexError):
                pass
        return kids

    def child_rss_kb(self):
        total = 0
        for pid in self.children():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                pass
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def parse_latency(text, label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000.0 if unit == "us" else (v if unit == "ms" else v * 1000.0)


def run_wrk(server, workload, duration, static=False):
    _, _, path, extra, static_path = WORKLOADS[workload]
    if static:
        path, extra = static_path, []
    extra = [a.format(root=server.root) for a in extra]
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", *extra, f"http://127.0.0.1:{server.port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    kinds = {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        kinds["non-2xx/3xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        for kind, n in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(n):
                kinds[kind] = int(n)
    return {"rps": rps, "p50": parse_latency(out, "50"), "p99": parse_latency(out, "99"),
            "errors": sum(kinds.values()), "error_kinds": kinds}


def measure(server, workload, duration, static=False):
    """One round on a server that is already up: `duration` seconds of wrk, then the
    children's RSS and the crashes (children killed by a signal) since the round before."""
    before = server.crashes()
    r = run_wrk(server, workload, duration, static)
    r["rss_mb"] = server.child_rss_kb() / 1024.0
    r["crashes"] = server.crashes() - before
    if r["errors"] or r["crashes"]:
        # What the server logged, for the JSON report (the server's files go when it stops).
        r["error_log_tail"] = server.log().splitlines()[-20:]
    return r


def run_workload(ours, workload, scopes, rounds, duration):
    """Every setting of `workload` — ours and mod_lua under each scope, and the static file
    where the workload has one — on its own server, all started together and kept up for the
    whole workload. Each gets one warm-up second (compiles, pools, page cache); then `rounds`
    rounds run every setting once, ours and mod_lua side by side with the order swapped each
    round, so a drift of the machine's speed reaches both modules alike. Returns the rounds of
    each setting: {(module, scope): [round, ...]} with ("static", None) for the static file."""
    settings = [(m, s) for s in scopes for m in ("ours", "mod_lua")]
    if WORKLOADS[workload][4]:
        settings.append(("static", None))
    servers = {}
    try:
        for mod, scope in settings:
            if mod == "static":
                servers[(mod, scope)] = Server(ours, "default", workload, static=True)
            else:
                servers[(mod, scope)] = Server(ours if mod == "ours" else MOD_LUA, scope, workload)
        for (mod, _), s in servers.items():
            run_wrk(s, workload, 1, static=mod == "static")
        raw = {k: [] for k in settings}
        for rnd in range(rounds):
            for scope in scopes:
                order = ("ours", "mod_lua") if rnd % 2 == 0 else ("mod_lua", "ours")
                for mod in order:
                    raw[(mod, scope)].append(measure(servers[(mod, scope)], workload, duration))
            if ("static", None) in servers:
                raw[("static", None)].append(measure(servers[("static", None)], workload, duration, static=True))
            print(f"{workload}: round {rnd + 1}/{rounds} done", file=sys.stderr)
        return raw
    finally:
        for s in servers.values():
            s.stop()


def send_requests(server, workload, n):
    """`n` keep-alive requests of `workload` (as wrk sends them), one at a time."""
    _, _, path, extra, _ = WORKLOADS[workload]
    headers = dict(extra[i + 1].split(": ", 1) for i, a in enumerate(extra) if a == "-H")
    method, body = "GET", None
    if workload == "post_form":
        method, body = "POST", POST_BODY
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    for _ in range(n):
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{workload}: HTTP {resp.status}")
        if resp.will_close:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.close()


def build(flavour):
    """Builds our module for `flavour` (the default one in target/release, the others in their
    own target directories) and returns its path."""
    if flavour == "lua54":
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        return OURS
    target = os.path.join(ROOT, "target", flavour)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--no-default-features",
                    "--features", flavour, "--target-dir", target], cwd=ROOT, check=True)
    return os.path.join(target, "release", "libmod_lua_rs.so")


def profile(module, scope, workload, n, top, exclusive=False, keep=None):
    """Instructions per request under callgrind for `module`, in total and by function
    (inclusive, or each function's own cost with `exclusive`)."""
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install valgrind")
    out = tempfile.mkdtemp(prefix="mod_lua_profile-")
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out"]
    s = Server(module, scope, workload, wrapper=wrapper)
    try:
        send_requests(s, workload, 200)
        subprocess.run(["callgrind_control", "-z", str(s.proc.pid)], check=True, capture_output=True)
        send_requests(s, workload, n)
        subprocess.run(["callgrind_control", "-d", str(s.proc.pid)], check=True, capture_output=True)
    finally:
        s.stop()
    dumps = sorted((f for f in os.listdir(out) if f.startswith("cg.out.")), key=lambda f: os.path.getmtime(os.path.join(out, f)))
    text = subprocess.run(["callgrind_annotate", f"--inclusive={'no' if exclusive else 'yes'}", "--threshold=100", os.path.join(out, dumps[-1])],
                          capture_output=True, text=True).stdout
    if keep:
        shutil.copy(os.path.join(out, dumps[-1]), keep)
    shutil.rmtree(out, ignore_errors=True)
    total = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
    print(f"{os.path.basename(module)} {scope} {workload}: {total // n:,} instructions per request ({n} requests)")
    rows = text.split("file:function", 1)[1].splitlines()[2:]
    for row in rows[:top]:
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", row)
        if m:
            print(f"{int(m.group(1).replace(',', '')) // n:>10,}  {m.group(2)[:150]}")


def median_of(rounds):
    return {
        "rps": statistics.median(r["rps"] for r in rounds),
        "p50": statistics.median(r["p50"] or 0 for r in rounds),
        "p99": statistics.median(r["p99"] or 0 for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "crashes": sum(r["crashes"] for r in rounds),
        "rss_mb": max(r["rss_mb"] for r in rounds),
        "error_kinds": [r.get("error_kinds", {}) for r in rounds if r.get("errors")],
        "error_log_tails": [r["error_log_tail"] for r in rounds if "error_log_tail" in r],
    }


def svg_chart(results, workloads, scopes):
    bar_w, gap, group_gap, h, top = 9, 2, 26, 260, 30
    colors = {"ours": "#2b7bb9", "mod_lua": "#c0504d"}
    peak = max(v["rps"] for w in results.values() for mod in ("ours", "mod_lua") for v in w[mod].values()) or 1
    x = 60
    parts = []
    for wl in workloads:
        start = x
        for scope in scopes:
            for mod in ("mod_lua", "ours"):
                v = results[wl][mod].get(scope)
                if v:
                    bh = v["rps"] / peak * h
                    parts.append(f'<rect x="{x}" y="{top + h - bh:.1f}" width="{bar_w}" height="{bh:.1f}" fill="{colors[mod]}"/>')
                x += bar_w + gap
            x += 4
        parts.append(f'<text x="{(start + x) / 2:.0f}" y="{top + h + 16}" font-size="11" text-anchor="middle">{wl}</text>')
        x += group_gap
    width = x + 20
    axis = f'<line x1="55" y1="{top}" x2="55" y2="{top + h}" stroke="#333"/><line x1="55" y1="{top + h}" x2="{width - 10}" y2="{top + h}" stroke="#333"/>'
    ticks = "".join(
        f'<text x="50" y="{top + h - f * h + 4:.0f}" font-size="9" text-anchor="end">{int(peak * f):,}</text>' for f in (0, 0.5, 1)
    )
    legend = (
        f'<rect x="60" y="8" width="10" height="10" fill="{colors["ours"]}"/><text x="74" y="17" font-size="11">mod_lua_rs</text>'
        f'<rect x="150" y="8" width="10" height="10" fill="{colors["mod_lua"]}"/><text x="164" y="17" font-size="11">Debian mod_lua</text>'
        f'<text x="290" y="17" font-size="11">requests/s per workload; bars: scopes {", ".join(scopes)}</text>'
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + h + 30}" font-family="sans-serif">{legend}{axis}{ticks}{"".join(parts)}</svg>\n'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--scopes", default=",".join(SCOPES))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench"))
    ap.add_argument("--flavour", default="lua54", choices=["lua54", "lua53", "luajit"])
    ap.add_argument("--profile", metavar="ours|mod_lua,SCOPE,WORKLOAD",
                    help="instead of benchmarking: instructions per request under callgrind")
    ap.add_argument("--requests", type=int, default=2000, help="with --profile")
    ap.add_argument("--top", type=int, default=40, help="with --profile: functions shown")
    ap.add_argument("--exclusive", action="store_true", help="with --profile: each function's own cost")
    ap.add_argument("--keep", metavar="FILE", help="with --profile: keep callgrind's output (for callgrind_annotate)")
    a = ap.parse_args()
    if a.profile:
        which, scope, workload = a.profile.split(",")
        module = build(a.flavour) if which == "ours" else MOD_LUA
        profile(module, scope, workload, a.requests, a.top, a.exclusive, a.keep)
        return
    workloads = a.workloads.split(",")
    scopes = a.scopes.split(",")
    for tool in ("wrk", "/usr/sbin/apache2"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/install-deps.sh")
    ours = build(a.flavour)
    results = {wl: {"ours": {}, "mod_lua": {}, "static": None} for wl in workloads}
    for wl in workloads:
        raw = run_workload(ours, wl, scopes, a.rounds, a.duration)
        for (mod, scope), rounds in raw.items():
            if mod == "static":
                results[wl]["static"] = median_of(rounds)
            else:
                results[wl][mod][scope] = median_of(rounds)
    write_report(results, workloads, scopes, a)


def write_report(results, workloads, scopes, a):
    lines = []
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.+)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    httpd = subprocess.run(["/usr/sbin/apache2", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    lines.append(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; "
                 f"{httpd}; our module built for {a.flavour} (mod_lua: Debian's, Lua 5.3); "
                 f"mpm_event 2×32 threads, one listening socket per child, AllowOverride None; wrk -t2 -c32, servers kept up, {a.rounds} alternating rounds of {a.duration} s, median.\n")
    lines.append("| workload | scope | mod_lua_rs req/s | mod_lua req/s | ratio to mod_lua's best clean | p50 / p99 ms (ours) | p50 / p99 ms (mod_lua) | RSS MB ours / mod_lua | errors ours / mod_lua | crashes ours / mod_lua |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for wl in workloads:
        clean = [v["rps"] for v in results[wl]["mod_lua"].values() if v["errors"] == 0 and v["crashes"] == 0]
        best = max(clean) if clean else 0
        for scope in scopes:
            o, m = results[wl]["ours"][scope], results[wl]["mod_lua"][scope]
            ratio = o["rps"] / best if best else float("inf")
            summary.setdefault(wl, []).append(ratio)
            lines.append(
                f"| {wl} | {scope} | {o['rps']:,.0f} | {m['rps']:,.0f}{' (errors)' if m['errors'] or m['crashes'] else ''} | "
                f"{ratio:.2f} | {o['p50']:.2f} / {o['p99']:.2f} | {m['p50']:.2f} / {m['p99']:.2f} | "
                f"{o['rss_mb']:.0f} / {m['rss_mb']:.0f} | {o['errors']} / {m['errors']} | {o['crashes']} / {m['crashes']} |"
            )
        st = results[wl]["static"]
        if st:
            lines.append(f"| {wl} | (no Lua: static file) | {st['rps']:,.0f} | | | {st['p50']:.2f} / {st['p99']:.2f} | | | | |")
    best_ratios = {wl: max(v) for wl, v in summary.items()}
    geo = statistics.geometric_mean([max(r, 1e-9) for r in best_ratios.values()]) if best_ratios else 0
    lines.append("")
    lines.append("Best ratio per workload: " + ", ".join(f"{wl} {r:.2f}" for wl, r in best_ratios.items())
                 + f"; geometric mean {geo:.2f}.")
    if "default" in scopes:
        d = [results[wl]["ours"]["default"]["rps"] / max(results[wl]["mod_lua"]["default"]["rps"], 1) for wl in workloads]
        lines.append("Default scope vs mod_lua's default: " + ", ".join(f"{wl} {r:.2f}" for wl, r in zip(workloads, d)) + ".")
    text = "\n".join(lines) + "\n"
    os.makedirs(a.out, exist_ok=True)
    name = "results" if a.flavour == "lua54" else f"results-{a.flavour}"
    with open(os.path.join(a.out, f"{name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, f"{name}.svg"), "w") as f:
        f.write(svg_chart(results, workloads, scopes))
    with open(os.path.join(a.out, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
