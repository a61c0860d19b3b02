//! The shipped examples, served through the shipped httpd-conf/lua-examples.conf.
mod common;
use common::*;
use std::path::Path;

fn server() -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let conf = std::fs::read_to_string(repo.join("httpd-conf/lua-examples.conf")).unwrap();
    // The examples are copied below the server root, where the children can read them.
    let mut cfg = Config::new()
        .load("dir_module", "mod_dir.so")
        .load("authn_core_module", "mod_authn_core.so")
        .load("authz_user_module", "mod_authz_user.so")
        .load("env_module", "mod_env.so")
        .load("deflate_module", "mod_deflate.so")
        .directives(&format!("Define LUA_EXAMPLES {{root}}/examples\nSetEnv LUA_JSON_LOG {{root}}/logs/requests.jsonl\nSetEnv LUA_GUESTBOOK_DB {{root}}/logs/guestbook.db\n{conf}"));
    let src = repo.join("lua-examples");
    for f in walk(&src) {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        cfg = cfg.file(
            &format!("examples/{rel}"),
            &std::fs::read_to_string(&f).unwrap(),
        );
    }
    let s = cfg.start();
    // The children (www-data) append the JSON request log and keep the guestbook's database
    // in logs/, as under scripts/serve.sh.
    make_writable(s.root.join("logs"));
    Some(s)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn hello_and_index() {
    let Some(s) = server() else { return };
    let r = s.get("/hello.lua");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello Lua World!\n"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("mod_lua examples"));
    // Library modules are not served.
    assert_eq!(s.get("/lib/util.lua").status, 403);
}

#[test]
fn form_echo_get_and_post() {
    let Some(s) = server() else { return };
    let r = s.get("/form.lua?name=Ada&name=Bob&color=%3Cb%3E");
    assert_eq!(r.status, 200);
    let t = r.text();
    assert!(t.contains("<b>name</b> = Ada, Bob"), "{t}");
    assert!(t.contains("<b>color</b> = &lt;b&gt;"), "{t}");
    let r = s.request(
        "POST",
        "/form.lua",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=Ann+Lee&color=blue",
    );
    let t = r.text();
    assert!(
        t.contains("Posted fields") && t.contains("<b>name</b> = Ann Lee"),
        "{t}"
    );
}

#[test]
fn json_api_routes() {
    let Some(s) = server() else { return };
    let r = s.get("/api/items");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.text().contains("\"count\":3"), "{}", r.text());
    let r = s.get("/api/items/2");
    assert!(r.text().contains("\"name\":\"bread\""), "{}", r.text());
    let r = s.get("/api/items/42");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no item 42"));
    assert_eq!(s.get("/api/health").status, 200);
    assert!(s.get("/api/time").text().contains("epoch"));
    let r = s.request("POST", "/api/items", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    s.assert_no_crash();
}

#[test]
fn hook_examples() {
    let Some(s) = server() else { return };
    // translate_name rewriter
    assert_eq!(
        s.get("/blog/hello-world").text(),
        "blog post: hello-world\n"
    );
    // authz provider: Require method-is GET HEAD
    assert_eq!(s.request("POST", "/blog.lua", &[], b"x").status, 403);
    // access checker: loopback passes
    assert_eq!(s.get("/admin/").text(), "admin area\n");
    // security headers, also on error pages
    let r = s.get("/no-such-page");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        s.get("/hello.lua").header("x-content-type-options"),
        Some("nosniff")
    );
    // basic authentication against hooks/users.txt
    assert_eq!(s.get("/private/").status, 401);
    let bad = ("Authorization", "Basic YWxpY2U6d3Jvbmc="); // alice:wrong
    assert_eq!(s.request("GET", "/private/", &[bad], b"").status, 401);
    let good = ("Authorization", "Basic YWxpY2U6d29uZGVybGFuZA=="); // alice:wonderland
    assert_eq!(
        s.request("GET", "/private/", &[good], b"").text(),
        "hello alice\n"
    );
    // hook code is not served
    assert_eq!(s.get("/hooks/rewrite.lua").status, 403);
    // JSON request log
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(s.root.join("logs/requests.jsonl")).unwrap_or_default();
        if log.contains("\"user\":\"alice\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        log.lines()
            .any(|l| l.contains("\"uri\":\"/private/") && l.contains("\"user\":\"alice\"")),
        "{log}"
    );
    s.assert_no_crash();
}

#[test]
fn filter_examples() {
    let Some(s) = server() else { return };
    let r = s.get("/filtered/page.html");
    let t = r.text();
    assert!(t.starts_with("<div class=\"banner\">"), "{t}");
    assert!(
        t.contains("https://example.com/")
            && t.contains("https://example.org/")
            && !t.contains("http://"),
        "{t}"
    );
    assert!(
        t.ends_with("<!-- rewritten by html_rewrite.lua -->\n"),
        "{t}"
    );
    // Chained with DEFLATE: compressed for clients that accept gzip.
    let r = s.request(
        "GET",
        "/filtered/page.html",
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // The input filter transforms the body before the handler reads it.
    let r = s.request(
        "POST",
        "/upload.lua",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=ada",
    );
    assert_eq!(r.text(), "NAME=ADA&filterSignature=1234\n");
    s.assert_no_crash();
}

#[test]
fn websocket_example() {
    let Some(s) = server() else { return };
    // A plain GET is refused with 400; the real client exchange is in tests/websocket.rs.
    assert_eq!(s.get("/ws/echo.lua").status, 400);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(
            b"GET /ws/echo.lua HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    while !got.windows(7).any(|w| w == b"welcome") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 "));
}

#[test]
fn guestbook_in_sqlite() {
    let Some(s) = server() else { return };
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = s.request(
        "POST",
        "/guestbook.lua",
        &form,
        b"name=Ada&message=%3Chi%3E+there",
    );
    assert_eq!(r.status, 303, "{}", s.error_log());
    assert_eq!(r.header("Location"), Some("/guestbook.lua"));
    let r = s.request("POST", "/guestbook.lua", &form, b"name=Bob&message=");
    assert_eq!(r.status, 400);
    let r = s.request("POST", "/guestbook.lua", &form, b"name=Bob&message=second");
    assert_eq!(r.status, 303);
    let t = s.get("/guestbook.lua").text();
    let (bob, ada) = (
        t.find("<b>Bob</b>: second"),
        t.find("<b>Ada</b>: &lt;hi&gt; there"),
    );
    assert!(bob.is_some() && ada.is_some() && bob < ada, "{t}");
    s.assert_no_crash();
}
