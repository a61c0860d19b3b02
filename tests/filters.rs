//! LuaOutputFilter / LuaInputFilter against a real httpd: mod_lua's protocol (httpd-tests FL10)
//! in every LuaScope, many filtered responses under concurrency with bounded child memory,
//! 1 GB streamed through an output and an input filter, failures mid-stream, every way of
//! activating a filter, and the same FL10 output as Debian's mod_lua.
mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};

const FILTERS: &str = r#"
function output_filter(r)
    coroutine.yield("prefix\n")
    while bucket ~= nil do
        local output = "bucket:" .. bucket .. "\n"
        coroutine.yield(output)
    end
    coroutine.yield("suffix\n")
end
function upper(r)
    coroutine.yield()
    while bucket do
        coroutine.yield(bucket:upper())
    end
end
function decline(r)
    return
end
function fail_later(r)
    coroutine.yield()
    local n = 0
    while bucket do
        n = n + 1
        if n == 2 then error("filter failed on chunk 2") end
        coroutine.yield(bucket)
    end
end
function input_upper(r)
    coroutine.yield()
    while bucket do
        coroutine.yield(bucket:upper())
    end
    coroutine.yield("&filterSignature=1234")
end
function keep(r)
    local before = "none"
    if kept then
        local ok, err = pcall(function() return kept.uri end)
        before = ok and ("alive " .. tostring(err)) or ("gone: " .. tostring(err))
    end
    kept = r
    coroutine.yield(r.uri .. " " .. before .. "\n")
    while bucket do coroutine.yield(bucket) end
end
function insert(r)
    if r.uri:match("^/inserted") then r:add_output_filter("UPPER") end
    if r.uri:match("^/lua%-input") then r:add_input_filter("IN_UPPER") end
    return apache2.OK
end
"#;

const SCOPES: &[&str] = &["once", "request", "conn", "thread", "server 1 4"];

fn server_with(extra: &str) -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    let mut dirs = String::new();
    for (i, scope) in SCOPES.iter().enumerate() {
        dirs.push_str(&format!(
            "<Location /s{i}/>\n LuaScope {scope}\n SetOutputFilter LUA_OUTPUT\n</Location>\n"
        ));
        dirs.push_str(&format!(
            "<Location /u{i}/>\n LuaScope {scope}\n SetOutputFilter UPPER\n</Location>\n"
        ));
    }
    let mut cfg = Config::new()
        .load("alias_module", "mod_alias.so")
        .load("filter_module", "mod_filter.so")
        .load("deflate_module", "mod_deflate.so")
        .directives(&format!(
            "LuaOutputFilter LUA_OUTPUT {{root}}/filters.lua output_filter\n\
             LuaOutputFilter UPPER {{root}}/filters.lua upper\n\
             LuaOutputFilter DECLINE {{root}}/filters.lua decline\n\
             LuaOutputFilter FAIL_LATER {{root}}/filters.lua fail_later\n\
             LuaInputFilter IN_UPPER {{root}}/filters.lua input_upper\n\
             LuaOutputFilter KEEP {{root}}/filters.lua keep\n\
             LuaHookInsertFilter {{root}}/filters.lua insert\n\
             {dirs}\
             <Location /declined/>\n SetOutputFilter DECLINE\n</Location>\n\
             <Location /srv/>\n LuaScope server 1 1\n SetOutputFilter UPPER\n</Location>\n\
             <Location /failing/>\n SetOutputFilter FAIL_LATER\n</Location>\n\
             <Location /keep/>\n LuaScope server 1 1\n SetOutputFilter KEEP\n</Location>\n\
             <Location /input/>\n SetInputFilter IN_UPPER\n</Location>\n\
             AddOutputFilter UPPER .up\n\
             LuaOutputFilter FPUPPER {{root}}/filters.lua upper\n\
             FilterDeclare FPUPPER\n\
             FilterProvider FPUPPER FPUPPER \"%{{REQUEST_URI}} =~ m#^/fp/#\"\n\
             FilterChain FPUPPER\n\
             {extra}\n"
        ))
        .file("filters.lua", FILTERS)
        .file("htdocs/echo.lua", "function handle(r) local b = r:requestbody() r:puts(tostring(b)) end")
        .file(
            "htdocs/big.lua",
            "function handle(r) local chunk = string.rep('abcdefgh', 131072) \
             for i = 1, tonumber(r.args) do r:write(chunk) if i % 8 == 0 then r:flush() end end end",
        )
        .file("htdocs/sink.lua", "function handle(r) local n = r:requestbody('/dev/null') r:puts(tostring(n)) end")
        .file("htdocs/deflate.lua", "function handle(r) r.content_type = 'text/plain' r:add_output_filter('DEFLATE') r:puts(string.rep('compress me ', 500)) end")
        .file("htdocs/x.up", "by extension");
    for i in 0..SCOPES.len() {
        cfg = cfg.file(&format!("htdocs/s{i}/foobar.html"), "foobar");
        cfg = cfg.file(
            &format!("htdocs/u{i}/a.txt"),
            &"lower case text ".repeat(100),
        );
        cfg = cfg.file(
            &format!("htdocs/u{i}/big.lua"),
            "function handle(r) for i = 1, 50 do r:write(string.rep('x', 10000)) end end",
        );
    }
    cfg = cfg.file(
        "htdocs/failing/chunks.lua",
        "function handle(r) for i = 1, 10 do r:write(string.rep('c', 10000)) r:flush() end end",
    );
    for p in [
        "declined/a.txt",
        "fp/a.txt",
        "inserted/a.txt",
        "plain/a.txt",
    ] {
        cfg = cfg.file(&format!("htdocs/{p}"), &"abc ".repeat(20000));
    }
    cfg = cfg.file(
        "htdocs/lua-input/echo.lua",
        "function handle(r) local b = r:requestbody() r:puts(tostring(b)) end",
    );
    cfg = cfg.file("htdocs/srv/small.txt", "small");
    cfg = cfg.file("htdocs/keep/a.txt", "body");
    cfg = cfg.file(
        "htdocs/srv/stream.lua",
        "function handle(r) for i = 1, 2000 do r:write(string.rep('s', 65536)) r:flush() end end",
    );
    for p in ["input/echo.lua", "input/sink.lua"] {
        let src = if p.ends_with("echo.lua") {
            "function handle(r) local b = r:requestbody() r:puts(tostring(b)) end"
        } else {
            "function handle(r) local n = r:requestbody('/dev/null') r:puts(tostring(n)) end"
        };
        cfg = cfg.file(&format!("htdocs/{p}"), src);
    }
    Some(cfg.start())
}

#[test]
fn fl10_in_every_scope() {
    let Some(s) = server_with("") else { return };
    for (i, scope) in SCOPES.iter().enumerate() {
        for _ in 0..3 {
            let r = s.get(&format!("/s{i}/foobar.html"));
            assert_eq!(r.text(), "prefix\nbucket:foobar\nsuffix\n", "scope {scope}");
            assert!(r.header("etag").is_none(), "ETag must go: the body changed");
        }
        let r = s.get(&format!("/u{i}/a.txt"));
        assert!(r.text() == "LOWER CASE TEXT ".repeat(100), "scope {scope}");
        let r = s.get(&format!("/u{i}/big.lua"));
        assert!(r.text() == "X".repeat(500_000), "scope {scope}");
    }
    s.assert_no_crash();
}

fn children_rss_kb(parent: u32) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            total += status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

#[test]
fn many_filtered_responses_in_every_scope_with_bounded_memory() {
    let Some(s) = server_with("") else { return };
    let pid = s.pid().unwrap();
    let warm = |n: usize| {
        for (i, scope) in SCOPES.iter().enumerate() {
            for r in hammer(s.port, 16, n, &format!("/u{i}/a.txt")) {
                assert_eq!(r.status, 200);
                assert!(r.text().starts_with("LOWER CASE"), "{scope}");
            }
        }
    };
    warm(50);
    let before = children_rss_kb(pid);
    // 5 scopes × 16 clients × 1250 = 100,000 filtered responses.
    warm(1250);
    let after = children_rss_kb(pid);
    assert!(
        after < before + 64 * 1024,
        "child RSS grew from {before} kB to {after} kB"
    );
    s.assert_no_crash();
}

/// Reads a response and counts body bytes without keeping them; returns (status, bytes).
fn stream_count(port: u16, request: &[u8], body: Option<(u64, u8)>) -> (u16, u64, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    stream.write_all(request).unwrap();
    if let Some((len, byte)) = body {
        let chunk = vec![byte; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(format!("{n:x}\r\n").as_bytes()).unwrap();
            stream.write_all(&chunk[..n]).unwrap();
            stream.write_all(b"\r\n").unwrap();
            left -= n as u64;
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
    }
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
        {
            chunked = true;
        }
    }
    assert!(chunked, "a streamed body must be chunked");
    let mut total = 0u64;
    let mut last = String::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let size = u64::from_str_radix(line.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = r.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "connection closed mid-chunk");
            last = String::from_utf8_lossy(&buf[..n.min(64)]).into_owned();
            left -= n as u64;
        }
        total += size;
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    (status, total, last)
}

#[test]
fn a_gigabyte_streams_through_output_and_input_filters() {
    let Some(s) =
        server_with("<Location /big.lua>\n SetOutputFilter UPPER\n</Location>\nLimitRequestBody 0")
    else {
        return;
    };
    let pid = s.pid().unwrap();
    let base = children_rss_kb(pid);
    // 1024 × 1 MiB through the output filter.
    let (status, total, last) = stream_count(
        s.port,
        b"GET /big.lua?1024 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(total, 1 << 30);
    assert!(
        !last.is_empty() && last.bytes().all(|b| b.is_ascii_uppercase()),
        "{last}"
    );
    let after_out = children_rss_kb(pid);
    assert!(
        after_out < base + 256 * 1024,
        "output: child RSS {base} kB → {after_out} kB"
    );
    // 1 GiB request body through the input filter, streamed by the handler to /dev/null.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    stream
        .write_all(b"POST /input/sink.lua HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    let chunk = vec![b'q'; 1 << 20];
    for _ in 0..1024 {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        stream.write_all(&chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(r.status, 200);
    // Every byte passed the filter, plus its suffix.
    assert_eq!(
        r.text(),
        ((1u64 << 30) + "&filterSignature=1234".len() as u64).to_string()
    );
    let after_in = children_rss_kb(pid);
    assert!(
        after_in < base + 256 * 1024,
        "input: child RSS {base} kB → {after_in} kB"
    );
    s.assert_no_crash();
}

#[test]
fn activation_and_failures() {
    let Some(s) = server_with("") else { return };
    // Declining passes the content unchanged.
    let same = |path: &str, want: &str| {
        let got = s.get(path).text();
        assert!(
            got == want,
            "{path}: {} bytes, starting {:?}",
            got.len(),
            &got[..got.len().min(40)]
        );
    };
    same("/declined/a.txt", &"abc ".repeat(20000));
    // AddOutputFilter by extension, mod_filter's FilterProvider (declared under the Lua filter's
    // own name, as with mod_lua), LuaHookInsertFilter.
    same("/x.up", "BY EXTENSION");
    same("/fp/a.txt", &"ABC ".repeat(20000));
    same("/inserted/a.txt", &"ABC ".repeat(20000));
    same("/plain/a.txt", &"abc ".repeat(20000));
    // r:add_output_filter with one of httpd's own filters.
    let r = s.request("GET", "/deflate.lua", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.body.len() < 1000);
    // An input filter transforms the request body (FL11), set by SetInputFilter or from Lua.
    let r = s.request("POST", "/input/echo.lua", &[], b"name=value");
    assert_eq!(r.text(), "NAME=VALUE&filterSignature=1234");
    let r = s.request("POST", "/lua-input/echo.lua", &[], b"abc");
    assert_eq!(r.text(), "ABC&filterSignature=1234");
    // A Lua error after output began: the client sees a broken response, never a hang.
    let mut c = s.connect();
    let res = c.try_send("GET", "/failing/chunks.lua", &[], b"", false);
    assert!(
        res.is_err(),
        "a complete response came back: {:?}",
        res.map(|r| (r.status, r.body.len()))
    );
    let log = s.error_log();
    assert!(
        log.contains("AH02663: lua: Error while executing filter fail_later: ")
            && log.contains("filter failed on chunk 2")
            && log.contains("filters.lua:"),
        "{log}"
    );
    assert_eq!(s.get("/u0/a.txt").status, 200);
    // A filter's `r` works for its own request only: kept in a global, a later request of
    // the same VM gets an error from it, never the old request.
    let answers: Vec<String> = (0..8).map(|_| s.get("/keep/a.txt").text()).collect();
    for a in &answers {
        assert!(
            a == "/keep/a.txt none\nbody"
                || (a.starts_with("/keep/a.txt gone: ")
                    && a.contains("request object used after its request ended")
                    && a.ends_with("\nbody")),
            "{answers:?}"
        );
    }
    assert!(
        answers.iter().filter(|a| a.contains(" none")).count() <= 2,
        "{answers:?}"
    );
    s.assert_no_crash();
}

#[test]
fn fl10_matches_debian_mod_lua() {
    let config = || {
        Config::new()
            .load("alias_module", "mod_alias.so")
            .directives(
                "LuaOutputFilter LUA_OUTPUT {root}/filters.lua output_filter\n\
                 LuaOutputFilter UPPER {root}/filters.lua upper\n\
                 Alias /modules/lua/filtered {docroot}\n\
                 <Location /modules/lua/filtered/>\n SetOutputFilter LUA_OUTPUT\n</Location>\n\
                 <Location /up/>\n SetOutputFilter UPPER\n</Location>\n",
            )
            .file("filters.lua", FILTERS)
            .file("htdocs/foobar.html", "foobar")
            .file("htdocs/up/a.txt", "mixed Case")
    };
    let Some((ours, theirs)) = on_both(config, |_, s| {
        let a = s.get("/modules/lua/filtered/foobar.html");
        let b = s.get("/up/a.txt");
        (a.status, a.text(), b.status, b.text())
    }) else {
        return;
    };
    assert_eq!(ours, theirs);
    assert_eq!(ours.1, "prefix\nbucket:foobar\nsuffix\n");
}

/// An output filter that fails before any of the response went out (an error on its first
/// chunk, no such function, a script that does not compile) leaves httpd free to answer 500,
/// as mod_lua does, instead of closing the connection on an empty response; nothing of the
/// file passes unfiltered, and the next request on the same connection is served.
#[test]
fn failures_before_output_answer_500_like_debian_mod_lua() {
    const SCRIPT: &str =
        "function fail_first(r)\n coroutine.yield()\n error('broke on the first chunk')\nend\n";
    let config = || {
        Config::new()
            .directives(
                "LuaOutputFilter FAIL_FIRST {root}/f.lua fail_first\n\
                 LuaOutputFilter NOFUNC {root}/f.lua no_such_function\n\
                 LuaOutputFilter BAD {root}/bad.lua fail_first\n\
                 <Location /first/>\n SetOutputFilter FAIL_FIRST\n</Location>\n\
                 <Location /nofunc/>\n SetOutputFilter NOFUNC\n</Location>\n\
                 <Location /bad/>\n SetOutputFilter BAD\n</Location>\n",
            )
            .file("f.lua", SCRIPT)
            .file("bad.lua", "function fail_first(r) coroutine.yield( end\n")
            .file("htdocs/first/a.txt", "secret file text")
            .file("htdocs/nofunc/a.txt", "secret file text")
            .file("htdocs/bad/a.txt", "secret file text")
            .file("htdocs/plain.txt", "plain")
    };
    let Some((ours, theirs)) = on_both(config, |m, s| {
        let answers: Vec<(&str, u16)> = ["/first/a.txt", "/nofunc/a.txt", "/bad/a.txt"]
            .into_iter()
            .map(|p| {
                let r = s.get(p);
                assert!(!r.text().contains("secret"), "{p}: {}", r.text());
                (p, r.status)
            })
            .collect();
        if m == Module::Ours {
            let mut c = s.connect();
            let r = c.send("GET", "/first/a.txt", &[], b"", false);
            assert_eq!(r.status, 500);
            let r = c.send_retrying(s.port, "/plain.txt");
            assert_eq!((r.status, r.text()), (200, "plain".to_string()));
            assert_logged(
                &s.error_log(),
                &[
                    "AH02663: lua: Error while executing filter fail_first: ",
                    "f.lua:3: broke on the first chunk",
                    "AH02329: lua: Unable to find entry function 'no_such_function'",
                    "AH01482: lua: Error loading ",
                ],
            );
            s.assert_no_crash();
        }
        answers
    }) else {
        return;
    };
    assert_eq!(ours, theirs);
    assert!(ours.iter().all(|&(_, status)| status == 500), "{ours:?}");
}

/// Static files reach a filter in the pieces mod_lua gives it: with `EnableMMAP on` (the
/// default) one piece per 4 MiB, with `EnableMMAP off` apr's 8000-byte reads; and the bytes are
/// the file's (we read mapped-size pieces without mapping the file).
#[test]
fn file_pieces_match_debian_mod_lua() {
    const SIZES: &str = "function sizes(r)\n coroutine.yield()\n local n = 0\n \
        while bucket do n = n + 1 coroutine.yield(#bucket .. '\\n') end\n \
        coroutine.yield('pieces ' .. n .. '\\n')\nend\n";
    // 9 MiB + 5 bytes of varied bytes: three pieces when mapped.
    let len: usize = 9 * 1024 * 1024 + 5;
    let content: String = (0..len)
        .map(|i| (b'a' + ((i * 7 + i / 8191) % 26) as u8) as char)
        .collect();
    let config = || {
        Config::new()
            .directives(
                "LuaOutputFilter SIZES {root}/f.lua sizes\n\
                 LuaOutputFilter UPPER {root}/f.lua upper\n\
                 <Location /mm/>\n SetOutputFilter SIZES\n</Location>\n\
                 <Location /nomm/>\n EnableMMAP off\n SetOutputFilter SIZES\n</Location>\n\
                 <Location /up/>\n SetOutputFilter UPPER\n</Location>\n",
            )
            .file("f.lua", &format!("{SIZES}{FILTERS}"))
            .file("htdocs/mm/big.txt", &content)
            .file("htdocs/nomm/big.txt", &content)
            .file("htdocs/up/big.txt", &content)
    };
    let Some((ours, theirs)) = on_both(config, |m, s| {
        let mm = s.get("/mm/big.txt");
        let nomm = s.get("/nomm/big.txt");
        let up = s.get("/up/big.txt");
        assert_eq!((mm.status, nomm.status, up.status), (200, 200, 200));
        assert!(
            up.body == content.to_uppercase().as_bytes(),
            "{m:?}: uppercased file differs"
        );
        s.assert_no_crash();
        (mm.text(), nomm.text())
    }) else {
        return;
    };
    assert_eq!(ours, theirs);
    let (mm, nomm) = &ours;
    assert_eq!(
        mm,
        &format!("4194304\n4194304\n{}\npieces 3\n", len - 2 * 4194304)
    );
    let pieces = len.div_ceil(8000);
    assert!(nomm.starts_with("8000\n8000\n"), "{nomm:.40}");
    assert!(
        nomm.ends_with(&format!("\n{}\npieces {pieces}\n", len % 8000)),
        "{nomm:.40}"
    );
}

#[test]
fn server_scope_filter_vm_returns_when_the_client_leaves() {
    let Some(s) = server_with("") else { return };
    // LuaScope server 1 1: one VM for the filter. Clients that read a little of a long filtered
    // response and hang up must not keep it: the next request gets it at once.
    for _ in 0..5 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        stream
            .write_all(b"GET /srv/stream.lua HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        drop(stream);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // With the VM still held, this would wait 30 s and answer 503.
    let t0 = std::time::Instant::now();
    let r = s.get("/srv/small.txt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "SMALL"),
        "the pool VM was not returned"
    );
    assert!(t0.elapsed().as_secs() < 10);
    s.assert_no_crash();
}
