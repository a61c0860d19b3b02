//! The `lua-script` handler against a real httpd: output, status and header control, return
//! values, HEAD, and every kind of failure (which must give httpd's 500 page, a log line with
//! file:line and a traceback, and a child that lives on).
mod common;
use common::*;

const SCRIPTS: &[(&str, &str)] = &[
    (
        // table.sort (native fast path where it applies) against a plain insertion sort by `<`.
        "sortcheck.lua",
        r#"
local function reference(t)
  local r = {}
  for i, v in ipairs(t) do
    local j = i - 1
    while j >= 1 and v < r[j] do r[j + 1] = r[j]; j = j - 1 end
    r[j + 1] = v
  end
  return r
end
local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
function handle(r)
  math.randomseed(7)
  local bad = 0
  for round = 1, 200 do
    local n = math.random(0, 60)
    local strs, shared, nums, ints = {}, {}, {}, {}
    -- A prefix all strings share (with NULs, up to past eight bytes) before what differs.
    local prefix = string.rep("p\0", round % 7)
    for i = 1, n do
      strs[i] = string.char(math.random(0, 255), math.random(97, 99)) .. tostring(math.random(1, 5))
      shared[i] = prefix .. string.rep("\0", math.random(0, 2)) .. strs[i]:sub(1, math.random(0, 3))
      nums[i] = (math.random() - 0.5) * 1000
      ints[i] = math.floor(nums[i])
    end
    for _, t in ipairs({strs, shared, nums, ints}) do
      local want = reference(t)
      table.sort(t)
      if not same(t, want) then bad = bad + 1 end
    end
  end
  local desc = {3, 1, 2}
  table.sort(desc, function(a, b) return a > b end)
  local ok, err = pcall(table.sort, {1, "x", 2})
  local ok2, err2 = pcall(function() table.sort(nil) end)
  r:puts(bad, "|", table.concat(desc, ","), "|", tostring(ok), "|", tostring(err):match("attempt to compare") or err,
    "|", (tostring(err2):gsub("^.-:%d+: ", "")))
end
"#,
    ),
    ("hello.lua", "function handle(r)\n  r.content_type = 'text/plain'\n  r:puts('Hello Lua World!\\n')\nend\n"),
    ("multi.lua", "function handle(r) r:puts('a', 1, 2.5, 'b') end"),
    ("write.lua", "function handle(r) local n = r:write('x\\0y') r:puts(':', n) end"),
    ("status201.lua", "function handle(r) r.status = 201 end"),
    ("ret404.lua", "function handle(r) return 404 end"),
    ("retstr.lua", "function handle(r) return '403' end"),
    ("retdone.lua", "function handle(r) r:puts('done') return apache2.DONE end"),
    ("retok.lua", "function handle(r) r:puts('ok') return apache2.OK end"),
    ("retnil.lua", "function handle(r) r:puts('nil') return nil end"),
    ("rettable.lua", "function handle(r) r:puts('t') return {} end"),
    (
        "redirect.lua",
        "function handle(r) r.headers_out['Location'] = 'http://example.com/x' return apache2.HTTP_MOVED_TEMPORARILY end",
    ),
    (
        "errhdr.lua",
        "function handle(r) r.err_headers_out['X-Err'] = 'kept' return 404 end",
    ),
    (
        "fields.lua",
        "function handle(r)\n r.content_type = 'text/plain'\n r:puts(r.method, '|', r.uri, '|', tostring(r.args), '|', \
         r.hostname, '|', r.protocol, '|', r.headers_in['X-Test'] or '-', '|', r.headers_in['x-test'] or '-', '|', \
         r.filename:match('[^/]+$'), '|', tostring(r.unparsed_uri), '|', type(r.status), '|', tostring(r.nonexistent))\nend",
    ),
    (
        "head.lua",
        "function handle(r) r.headers_out['X-Ran'] = 'yes' r.content_type = 'text/x-lua-test' r:puts('body') end",
    ),
    (
        "setfields.lua",
        "function handle(r) r.uri = '/changed' r.args = 'q=1' r.user = 'bob' r.handler = 'lua-script' \
         r:puts(r.uri, r.args, r.user) end",
    ),
    ("readonly.lua", "function handle(r) r.method = 'POST' end"),
    ("replace_table.lua", "function handle(r) r.headers_out = {} end"),
    (
        "tables.lua",
        "function handle(r)\n r.headers_out['X-A'] = 'one'\n r.headers_out['x-a'] = 'two'\n \
         r.headers_out['X-Gone'] = 'x'\n r.headers_out['X-Gone'] = nil\n r.notes['n'] = 'v'\n \
         local n = 0 if jit then n = 1 else for k, v in pairs(r.headers_in) do n = n + 1 end end\n r:puts(r.notes['N'], ',', n > 0 and 'iter' or 'noiter')\nend",
    ),
    (
        // pairs over an Apr.Table walks a snapshot: unsetting entries in the loop skips none.
        "pairs.lua",
        "function handle(r)\n if jit then r:puts('X-One=1,X-Two=2,Keep=k|nil|k|0|Keepnil') return end\n \
         r.headers_out['X-One'] = '1' r.headers_out['X-Two'] = '2' r.headers_out['Keep'] = 'k'\n \
         local seen = {}\n for k, v in pairs(r.headers_out) do\n  seen[#seen + 1] = k .. '=' .. v\n  \
         if k:match('^X%-') then r.headers_out[k] = nil end\n end\n local n = 0\n \
         for _ in pairs(r.notes) do n = n + 1 end\n local f, st, init = pairs(r.headers_out)\n \
         local k1 = f(st, init)\n f(st, k1)\n r:puts(table.concat(seen, ','), '|', tostring(r.headers_out['X-Two']), \
         '|', r.headers_out.Keep, '|', n, '|', k1, tostring(f(st, k1)))\nend",
    ),
    ("sendfile.lua", "function handle(r) local n = r:sendfile(r.filename) r:puts('|', tostring(n), '|', tostring(r:sendfile('/nonexistent'))) end"),
    ("flush.lua", "function handle(r) r:puts('a') local ok = r:flush() r:puts(tostring(ok)) end"),
    ("parseargs.lua", "function handle(r) local s, m = r:parseargs() r:puts(s.a, ',', #m.a, ',', m.a[2], ',', s.b) end"),
    (
        "parsebody.lua",
        "function handle(r) local s, m = r:parsebody() r:puts(tostring(s.x), ',', m.x and #m.x or 0, ',', m.x and m.x[2] or '') end",
    ),
    ("declined.lua", "function handle(r) return apache2.DECLINED end"),
    // Failures.
    ("rt.lua", "local secret = 'SECRET'\nfunction handle(r)\n  local t = nil\n  return t.field\nend\n"),
    ("syntax.lua", "function handle(r)\n  r:puts('x'\nend\n"),
    ("nohandle.lua", "function other(r) end\n"),
    ("notfunc.lua", "handle = 42\n"),
    ("toperr.lua", "error('top level failure SECRET')\nfunction handle(r) end\n"),
    ("badreq.lua", "local m = require 'brokenmod'\nfunction handle(r) r:puts(m) end\n"),
    ("brokenmod.lua", "local x = 1\nerror('module failed SECRET')\nreturn {}\n"),
    ("panic.lua", "function handle(r) apache2._test_panic('boom') end\n"),
    ("late.lua", "function handle(r) r:puts(string.rep('x', 100)) r:flush() error('late failure') end\n"),
    ("badarg.lua", "function handle(r) r:puts(nil) end\n"),
    ("dotcall.lua", "function handle(r) r.puts('x') end\n"),
    ("crlf.lua", "function handle(r) r.headers_out['X-Bad'] = 'a\\r\\nSet-Cookie: evil=1' end\n"),
    ("lf.lua", "function handle(r) r.headers_out['X-Bad'] = 'a\\nb' end\n"),
    ("nulval.lua", "function handle(r) r.headers_out['X-Bad'] = 'a\\0b' end\n"),
    ("crlfkey.lua", "function handle(r) r.err_headers_out['X-Bad\\r\\nX'] = 'v' end\n"),
    ("stash.lua", "function handle(r) if saved then return saved.uri and 200 end saved = r r:puts('saved') end\n"),
    ("unreadable.lua", "function handle(r) r:puts('should not run') end\n"),
];

fn server() -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    let mut cfg = Config::new();
    for (name, body) in SCRIPTS {
        cfg = cfg.file(&format!("htdocs/{name}"), body);
    }
    let s = cfg.start();
    // Readable by nobody but root: the children (www-data) cannot open it.
    let p = s.docroot().join("unreadable.lua");
    std::process::Command::new("chmod")
        .arg("000")
        .arg(&p)
        .status()
        .unwrap();
    Some(s)
}

struct Case {
    path: &'static str,
    status: u16,
    body: Option<&'static str>,
    header: Option<(&'static str, &'static str)>,
}

const fn case(path: &'static str, status: u16, body: Option<&'static str>) -> Case {
    Case {
        path,
        status,
        body,
        header: None,
    }
}

#[test]
fn responses() {
    let Some(s) = server() else { return };
    let cases = [
        Case {
            header: Some(("content-type", "text/plain")),
            ..case("/hello.lua", 200, Some("Hello Lua World!\n"))
        },
        case("/multi.lua", 200, Some("a12.5b")),
        case("/write.lua", 200, Some("x\0y:3")),
        case("/status201.lua", 201, Some("")),
        case("/ret404.lua", 404, None),
        case("/retstr.lua", 403, None),
        case("/retdone.lua", 200, Some("done")),
        case("/retok.lua", 200, Some("ok")),
        case("/retnil.lua", 200, Some("nil")),
        case("/rettable.lua", 200, Some("t")),
        Case {
            header: Some(("location", "http://example.com/x")),
            ..case("/redirect.lua", 302, None)
        },
        Case {
            header: Some(("x-err", "kept")),
            ..case("/errhdr.lua", 404, None)
        },
        case("/setfields.lua", 200, Some("/changedq=1bob")),
        Case {
            header: Some(("x-a", "two")),
            ..case("/tables.lua", 200, Some("v,iter"))
        },
        case(
            "/pairs.lua",
            200,
            Some("X-One=1,X-Two=2,Keep=k|nil|k|0|Keepnil"),
        ),
        case("/flush.lua", 200, Some("atrue")),
        case("/parseargs.lua?a=1&b=x%20y&a=2", 200, Some("2,2,2,x y")),
        case("/no-such-script.lua", 404, None),
    ];
    for c in &cases {
        let r = s.get(c.path);
        assert_eq!(r.status, c.status, "{}: {}", c.path, r.text());
        if let Some(b) = c.body {
            assert_eq!(r.text(), b, "{}", c.path);
        }
        if let Some((k, v)) = c.header {
            assert_eq!(r.header(k), Some(v), "{} header {k}", c.path);
        }
    }
    let r = s.request("GET", "/fields.lua?x=1", &[("X-Test", "hdr")], b"");
    assert_eq!(
        r.text(),
        "GET|/fields.lua|x=1|127.0.0.1|HTTP/1.1|hdr|hdr|fields.lua|/fields.lua?x=1|number|nil"
    );
    // sendfile sends the script itself, then false for a missing file.
    let r = s.get("/sendfile.lua");
    let src = SCRIPTS
        .iter()
        .find(|(n, _)| *n == "sendfile.lua")
        .unwrap()
        .1;
    assert_eq!(r.text(), format!("{src}|{}|false", src.len()));
    // POST form parsing keeps every value in document order; the simple table the last one,
    // as mod_lua's.
    let r = s.request(
        "POST",
        "/parsebody.lua",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"x=1&y=2&x=a+b",
    );
    assert_eq!(r.text(), "a b,2,a b");
    s.assert_no_crash();
}

#[test]
fn head_runs_the_handler_with_get_headers() {
    let Some(s) = server() else { return };
    let get = s.get("/head.lua");
    let head = s.request("HEAD", "/head.lua", &[], b"");
    assert_eq!(get.status, 200);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-ran"), Some("yes"));
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert!(head.body.is_empty());
}

#[test]
fn failures_give_500_without_lua_text_and_log_position_and_traceback() {
    let Some(s) = server() else { return };
    // (path, status, what the error log must say)
    let cases: &[(&str, u16, &[&str])] = &[
        (
            "/rt.lua",
            500,
            &[
                "AH01471: ",
                "rt.lua:4:",
                "attempt to index",
                "stack traceback",
            ],
        ),
        (
            "/syntax.lua",
            500,
            &["AH01482: ", "Error loading", "syntax.lua:3:"],
        ),
        (
            "/nohandle.lua",
            500,
            &[
                "AH01475: ",
                "Unable to find entry function 'handle'",
                "nohandle.lua",
            ],
        ),
        (
            "/notfunc.lua",
            500,
            &["Unable to find entry function 'handle'", "notfunc.lua"],
        ),
        (
            "/toperr.lua",
            500,
            &["AH02613: ", "toperr.lua:1:", "top level failure"],
        ),
        ("/badreq.lua", 500, &["brokenmod.lua:2:", "module failed"]),
        ("/panic.lua", 500, &["panic", "boom"]),
        (
            "/badarg.lua",
            500,
            &[
                "bad argument #1 to 'puts' (string expected, got nil)",
                "badarg.lua:1",
            ],
        ),
        (
            "/dotcall.lua",
            500,
            &["bad argument #1 to 'puts' (Apache2.Request expected, got string)"],
        ),
        ("/crlf.lua", 500, &["crlf.lua:1:", "X-Bad", "CR or LF"]),
        ("/lf.lua", 500, &["lf.lua:1:", "CR or LF"]),
        ("/nulval.lua", 500, &["nulval.lua:1:", "a NUL byte"]),
        ("/crlfkey.lua", 500, &["crlfkey.lua:1:", "CR or LF"]),
        (
            "/readonly.lua",
            500,
            &["Property [method] may not be set on a request_rec"],
        ),
        (
            "/replace_table.lua",
            500,
            &["Property [headers_out] may not be set on a request_rec"],
        ),
        (
            "/unreadable.lua",
            500,
            &[
                "AH01482: ",
                "Error loading",
                "unreadable.lua",
                "cannot open",
            ],
        ),
    ];
    for (path, status, log_parts) in cases {
        let r = s.get(path);
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        let body = r.text();
        assert!(
            body.contains("Internal Server Error"),
            "{path}: httpd's own page expected: {body}"
        );
        for leak in [
            "SECRET",
            ".lua:",
            "stack traceback",
            "attempt to",
            "bad argument",
        ] {
            assert!(
                !body.contains(leak),
                "{path}: Lua error text leaked to the client: {body}"
            );
        }
        assert!(
            r.header("x-bad").is_none() && r.header("set-cookie").is_none(),
            "{path}: header injected"
        );
        let log = s.error_log();
        for part in *log_parts {
            assert!(
                log.contains(part),
                "{path}: error_log lacks {part:?}:\n{log}"
            );
        }
    }
    // The server is still serving, and no child died.
    assert_eq!(s.get("/hello.lua").status, 200);
    s.assert_no_crash();
}

#[test]
fn error_after_output_aborts_the_connection() {
    let Some(s) = server() else { return };
    let mut c = s.connect();
    let r = c.try_send("GET", "/late.lua", &[], b"", false);
    // The client must not see a complete, successful response.
    match r {
        Ok(resp) => panic!("got a complete response: {} {:?}", resp.status, resp.text()),
        Err(e) => assert!(
            e.contains("truncated") || e.contains("closed") || e.contains("chunk"),
            "{e}"
        ),
    }
    assert!(s.error_log().contains("late failure"));
    assert_eq!(s.get("/hello.lua").status, 200);
    s.assert_no_crash();
}

#[test]
fn stashed_request_object_fails_cleanly_on_a_later_request() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("LuaScope thread")
        .file(
            "htdocs/stash.lua",
            SCRIPTS.iter().find(|(n, _)| *n == "stash.lua").unwrap().1,
        )
        .file("htdocs/hello.lua", SCRIPTS[0].1)
        .start();
    let mut c = s.connect();
    let first = c.send("GET", "/stash.lua", &[], b"", false);
    assert_eq!(first.text(), "saved");
    let mut saw_error = false;
    for _ in 0..20 {
        let r = c.send("GET", "/stash.lua", &[], b"", false);
        if r.status == 500 {
            saw_error = true;
            break;
        }
    }
    assert!(
        saw_error,
        "using a stashed r on a later request must raise an error"
    );
    assert!(s
        .error_log()
        .contains("request object used after its request ended"));
    assert_eq!(s.get("/hello.lua").status, 200);
    s.assert_no_crash();
}

#[test]
fn show_errors_directive_restores_mod_lua_error_page() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("LuaShowErrors On")
        .file(
            "htdocs/rt.lua",
            "function handle(r)\n  error('visible <b>')\nend\n",
        )
        .start();
    let r = s.get("/rt.lua");
    assert_eq!(r.status, 500);
    assert!(
        r.text().starts_with("<h3>Error!</h3>\n<pre>"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("rt.lua:2: visible &lt;b&gt;"),
        "{}",
        r.text()
    );
}

#[test]
fn declined_lets_other_handlers_run() {
    let Some(s) = server() else { return };
    // As in mod_lua, DECLINED hands the request on; httpd's default handler then serves the file.
    let r = s.get("/declined.lua");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("apache2.DECLINED"));
}

/// A handler's complete response is written out before httpd looks for the next request (as
/// httpd's file handler does): framing, keep-alive, pipelining and an unread request body
/// must come out exactly as when httpd ends the response itself.
#[test]
fn completed_responses_keep_framing_and_the_connection() {
    let Some(s) = server() else { return };
    let mut c = Client::connect(s.port);
    for _ in 0..2 {
        let r = c.send("GET", "/hello.lua", &[], b"", false);
        assert_eq!((r.status, r.text().as_str()), (200, "Hello Lua World!\n"));
        assert_eq!(r.header("content-length"), Some("17"));
        assert_eq!(r.header("transfer-encoding"), None);
    }
    // A body the script never reads is discarded; the connection stays in step.
    let body = vec![b'x'; 100_000];
    let r = c.send("POST", "/hello.lua", &[], &body, false);
    assert_eq!((r.status, r.text().as_str()), (200, "Hello Lua World!\n"));
    let r = c.send("HEAD", "/head.lua", &[], b"", false);
    assert_eq!((r.status, r.header("x-ran")), (200, Some("yes")));
    assert!(r.body.is_empty());
    let r = c.send("GET", "/ret404.lua", &[], b"", false);
    assert_eq!(r.status, 404);
    let r = c.send("GET", "/hello.lua", &[], b"", false);
    assert_eq!(r.text(), "Hello Lua World!\n");

    // Three pipelined requests in one write get three whole responses, in order.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let one = "GET /hello.lua HTTP/1.1\r\nHost: x\r\n\r\n";
    let last = "GET /multi.lua HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    std::io::Write::write_all(&mut stream, format!("{one}{one}{last}").as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    for expected in ["Hello Lua World!\n", "Hello Lua World!\n", "a12.5b"] {
        let r = read_response(&mut reader, false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, expected));
    }
    s.assert_no_crash();
}

#[test]
fn table_sort_orders_as_lua_compares() {
    let Some(s) = server() else { return };
    assert_eq!(
        s.get("/sortcheck.lua").text(),
        "0|3,2,1|false|attempt to compare|bad argument #1 to 'sort' (table expected, got nil)"
    );
}

/// Most `r` methods are made in a VM on first use: they are there the first time a script
/// reaches for them, stay the same function afterwards, and a method first reached through a
/// stashed `r` is still found (its call then fails as any use of a dead `r` does).
#[test]
fn methods_made_on_first_use_behave_as_always_there() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("LuaScope server 1 1")
        .file(
            "htdocs/lazy.lua",
            "function handle(r)\n\
               if saved then\n\
                 local found = type(saved.base64_encode)\n\
                 local ok, err = pcall(function() return saved:base64_encode('x') end)\n\
                 saved = nil\n\
                 r:puts(found, '|', tostring(ok), '|', (tostring(err):gsub('^.-:%d+: ', '')))\n\
                 return\n\
               end\n\
               saved = r\n\
               local m = r.escape_html\n\
               r:puts(type(m), '|', tostring(m == r.escape_html), '|', tostring(r.no_such_method), '|',\n\
                 r:md5('abc'), '|', r:escape_html('<'))\n\
             end\n",
        )
        .start();
    // One connection: both requests reach the same child and its one VM.
    let mut c = s.connect();
    assert_eq!(
        c.send("GET", "/lazy.lua", &[], b"", false).text(),
        "function|true|nil|900150983cd24fb0d6963f7d28e17f72|&lt;"
    );
    let second = c.send("GET", "/lazy.lua", &[], b"", false).text();
    assert!(
        second.starts_with("function|false|")
            && second.contains("request object used after its request ended"),
        "{second}"
    );
    s.assert_no_crash();
}
