//! The complete request object against a real httpd: all 43 fields (types, writability),
//! the header/notes tables, request-data, cookie, URL/expr/etag, encoding and logging methods,
//! calling conventions, and hostile inputs (each answered clearly, the child alive afterwards).
mod common;
use common::*;

const FIELDS: &str = r#"
local names = { "allowoverrides", "ap_auth_type", "args", "assbackwards", "auth_name", "banner",
  "basic_auth_pw", "canonical_filename", "content_encoding", "content_type", "context_document_root",
  "context_prefix", "document_root", "err_headers_out", "filename", "handler", "headers_in",
  "headers_out", "hostname", "is_https", "is_initial_req", "limit_req_body", "log_id", "method", "notes",
  "options", "path_info", "port", "protocol", "proxyreq", "range", "remaining", "server_built",
  "server_name", "some_auth_required", "started", "status", "subprocess_env", "the_request",
  "unparsed_uri", "uri", "user", "useragent_ip" }
function handle(r)
  r.content_type = "text/plain"
  for _, k in ipairs(names) do
    local v = r[k]
    local t = type(v)
    -- "Apr.Table: 0x…", as mod_lua's tostring shows it
    if t == "userdata" then t = tostring(v):gsub(": 0x%x+$", "") end
    r:puts(k, "=", t, ":", (type(v) == "string" or type(v) == "number" or type(v) == "boolean") and tostring(v) or "", "\n")
  end
end
"#;

fn fields(text: &str) -> std::collections::HashMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once('=')?;
            let (t, v) = rest.split_once(':')?;
            Some((k.to_string(), (t.to_string(), v.to_string())))
        })
        .collect()
}

fn server() -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    Some(
        Config::new()
            .load("authn_core_module", "mod_authn_core.so")
            .load("auth_basic_module", "mod_auth_basic.so")
            .load("alias_module", "mod_alias.so")
            .directives(
                "LimitRequestBody 2000000\n\
                 <Directory {docroot}/auth>\n AuthType Basic\n AuthName \"Test Realm\"\n Options Indexes FollowSymLinks\n AllowOverride AuthConfig Limit\n</Directory>\n\
                 <Directory {docroot}/small>\n LimitRequestBody 100\n</Directory>\n\
                 Alias /ctx {docroot}/ctxdir\n",
            )
            .file("htdocs/fields.lua", FIELDS)
            .file("htdocs/auth/fields.lua", FIELDS)
            .file("htdocs/ctxdir/fields.lua", FIELDS)
            .file("htdocs/req.lua", REQ)
            .file("htdocs/small/req.lua", REQ)
            .file("htdocs/etag.txt", "some static content\n")
            .start(),
    )
}

/// One script, many operations, chosen by `?op=`.
const REQ: &str = r##"
local ops = {}
function ops.tables(r)
  r.headers_out["X-One"] = "1"
  r.headers_out["x-one"] = "2"
  r.err_headers_out["X-Err"] = "e"
  r:setcookie("a", "1")
  r:setcookie("b", "2")
  r.notes["multi"] = "line1\nline2"
  r.subprocess_env["MY_VAR"] = "v"
  local s = r:headers_in_table()
  local hs = r:headers_out_table()
  local ns = r:notes_table()
  local es = r:subprocess_env_table()
  local gs, gm = r:err_headers_out_table()
  r:puts(r.headers_in["x-dup"], "|", s["X-Dup"], "|", hs["X-One"], "|", ns["multi"], "|",
    es["MY_VAR"], "|", gs["X-Err"], "|", #gm["Set-Cookie"], "|", gm["Set-Cookie"][2]:sub(1, 4), "|",
    tostring(r.headers_in["absent"]))
end
function ops.unset(r)
  r.headers_out["X-Gone"] = "x"
  r.headers_out["X-Gone"] = nil
  r.headers_out[42] = 7
  r:puts(tostring(r.headers_out["X-Gone"]), "|", r.headers_out["42"])
end
function ops.args(r)
  local s, m = r:parseargs()
  r:puts(s.a, "|", #m.a, "|", m.a[1], ",", m.a[2], ",", m.a[3], "|", s.nul, "|", s.bad, "|", s.flag, "|", s.plus)
end
function ops.body(r)
  local s, m, err = r:parsebody(tonumber(r.headers_in["X-Max"]))
  if err then r:puts("ERR:", err) return end
  local keys = {}
  for k in pairs(m) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do r:puts(k, "=", table.concat(m[k], ","), ";") end
end
function ops.bodylen(r)
  local s, m, err = r:parsebody(tonumber(r.headers_in["X-Max"]))
  if err then r:puts("ERR:", err) return end
  local n = 0 for _ in pairs(m) do n = n + 1 end
  r:puts("fields=", n, " upload=", s.upload and #s.upload or -1)
end
function ops.raw(r)
  local body, n = r:requestbody(nil, tonumber(r.headers_in["X-Max"]))
  if body == nil then r:puts("NIL:", tostring(n)) return end
  r:puts(n, ":", body)
end
function ops.tofile(r)
  local path = r.headers_in["X-File"]
  local n, err = r:requestbody(path)
  local f = io.open(path, "rb")
  local content = f:read("*a")
  f:close()
  r:puts(tostring(n), ":", tostring(err), ":", content)
end
function ops.cookies(r)
  r:puts(tostring(r:getcookie("session")), "|", tostring((r:getcookie("missing"))), "|", tostring((r:getcookie("dup"))), "|",
    select("#", r:getcookie("missing")))
  r:setcookie{ key = "k 1", value = "v;1", expires = 1700000000, secure = true, httponly = true, domain = "example.com" }
  r:setcookie{ key = "plain", value = "x" }
  r:setcookie("legacy", "y", true, 1700000000)
  r:setcookie("legacy2", "z")
end
function ops.url(r)
  r:puts(r:construct_url("/x?y=1"), "|", r:get_server_name_for_url())
end
function ops.expr(r)
  local a = r:expr("%{REQUEST_METHOD} == 'GET'")
  local b = r:expr("-n %{HTTP:X-Absent}")
  local c, err = r:expr("%{ == broken")
  r:puts(tostring(a), "|", tostring(b), "|", tostring(c), "|", err and "err" or "noerr")
end
function ops.docroot(r)
  r:set_document_root("/srv/elsewhere")
  r:set_context_info("/prefix", "/srv/ctx")
  r:puts(r.document_root, "|", r.context_prefix, "|", r.context_document_root)
end
function ops.etag(r)
  r.filename = r.document_root .. "/etag.txt"
  r:puts(tostring(r:make_etag()), "|", tostring(r:make_etag(true)))
end
function ops.encode(r)
  local bin = "\0\1\255ab\0"
  r:puts(r:escape("a b&c=d/é"), "|", r:unescape("a+b%26c"), "|", tostring((r:unescape("bad%zz"))), "|",
    select("#", r:unescape("nul%00")), "|", r:escape_html("<a href=\"x\">&</a>"), "|",
    r:escape_logitem("tab\there\"q"), "|", r:os_escape_path("/a b/c?d", true), "|", r:os_escape_path("a b"), "|",
    r:base64_encode("hello"), "|", r:base64_decode("aGVsbG8="), "|",
    tostring(r:base64_decode(r:base64_encode(bin)) == bin), "|", #r:base64_decode(r:base64_encode(bin)), "|",
    r:md5("abc"), "|", r:sha1("abc"), "|", r:md5(""), "|", r:sha1("a\0b"))
end
function ops.log(r)
  r:err("err-level message")
  r:warn("warn-level message")
  r:info("info-level message")
  r:debug("debug-level message")
  r:trace8("trace8-level message")
  r:puts("logged")
end
function ops.writes(r)
  r.status = 203
  r.args = "new=1"
  r.uri = "/rewritten"
  r.filename = "/tmp/x"
  r.handler = "some-handler"
  r.user = "alice"
  r.content_type = "text/x-test"
  r.proxyreq = apache2.PROXYREQ_REVERSE
  r:puts(r.status, "|", r.args, "|", r.uri, "|", r.filename, "|", r.handler, "|", r.user, "|", r.content_type, "|", r.proxyreq)
end
function ops.readonly(r)
  local ok, err = pcall(function() r[r.headers_in["X-Field"]] = "x" end)
  r:puts(tostring(ok), "|", tostring(err))
end
function ops.dotcall(r)
  local ok, err = pcall(r.escape, "x")
  local ok2, err2 = pcall(r.escape, r, 5)
  local ok3, err3 = pcall(r.puts, r, {})
  r:puts(tostring(err), "\n", tostring(err2), "\n", tostring(err3))
end
function ops.htpassword(r)
  for alg = 0, 3 do r:puts(r:htpassword("s3cret", alg), "\n") end
  local ok, err = r:htpassword("x", 9)
  r:puts(tostring(ok), "|", err, "\n", r:htpassword("x", 2, 6):sub(1, 7))
end
function handle(r)
  local op = r:parseargs().op
  return ops[op](r)
end
"##;

#[test]
fn all_fields_have_mod_lua_types() {
    let Some(s) = server() else { return };
    let r = s.request("GET", "/fields.lua?x=1", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let f = fields(&r.text());
    assert_eq!(f.len(), 43, "{}", r.text());
    let expect: &[(&str, &str)] = &[
        ("allowoverrides", "string"),
        ("ap_auth_type", "nil"),
        ("args", "string"),
        ("assbackwards", "boolean"),
        ("auth_name", "string"),
        ("banner", "string"),
        ("basic_auth_pw", "string"),
        ("canonical_filename", "string"),
        ("content_encoding", "nil"),
        ("context_document_root", "string"),
        ("context_prefix", "string"),
        ("document_root", "string"),
        ("err_headers_out", "Apr.Table"),
        ("filename", "string"),
        ("handler", "string"),
        ("headers_in", "Apr.Table"),
        ("headers_out", "Apr.Table"),
        ("hostname", "string"),
        ("is_https", "boolean"),
        ("is_initial_req", "boolean"),
        ("limit_req_body", "number"),
        ("log_id", "nil"),
        ("method", "string"),
        ("notes", "Apr.Table"),
        ("options", "string"),
        ("path_info", "string"),
        ("port", "number"),
        ("protocol", "string"),
        ("proxyreq", "string"),
        ("range", "nil"),
        ("remaining", "number"),
        ("server_built", "string"),
        ("server_name", "string"),
        ("some_auth_required", "boolean"),
        ("started", "number"),
        ("status", "number"),
        ("subprocess_env", "Apr.Table"),
        ("the_request", "string"),
        ("unparsed_uri", "string"),
        ("uri", "string"),
        ("user", "nil"),
        ("useragent_ip", "string"),
    ];
    for (k, t) in expect {
        assert_eq!(f[*k].0, *t, "field {k}: {:?}", f[*k]);
    }
    let v = |k: &str| f[k].1.clone();
    assert_eq!(v("args"), "x=1");
    assert_eq!(v("is_https"), "false");
    assert_eq!(v("is_initial_req"), "true");
    assert_eq!(v("limit_req_body"), "2000000");
    assert_eq!(v("proxyreq"), "PROXYREQ_NONE");
    assert_eq!(v("handler"), "lua-script");
    assert_eq!(v("status"), "200");
    // UseCanonicalName Off: the port comes from the Host header, which names none.
    assert_eq!(v("port"), "80");
    assert!(v("banner").starts_with("Apache/2.4"));
    assert!(v("started").parse::<i64>().unwrap() > 1_600_000_000);
    assert_eq!(v("auth_name"), "");
    assert_eq!(v("context_prefix"), "");
}

#[test]
fn auth_and_context_fields() {
    let Some(s) = server() else { return };
    // "user:secret"
    let r = s.request(
        "GET",
        "/auth/fields.lua",
        &[("Authorization", "Basic dXNlcjpzZWNyZXQ=")],
        b"",
    );
    let f = fields(&r.text());
    assert_eq!(f["auth_name"].1, "Test Realm");
    assert_eq!(f["basic_auth_pw"].1, "secret");
    // Reading basic_auth_pw sets r.user and r.ap_auth_type, as in mod_lua (the fields after it).
    assert_eq!(f["user"].1, "user");
    assert_eq!(f["allowoverrides"].1, "Limit   AuthCfg ");
    assert_eq!(f["options"].1, "Indexes  FollowSymLinks   ");
    let f = fields(&s.get("/ctx/fields.lua").text());
    assert_eq!(f["context_prefix"].1, "/ctx");
    assert!(
        f["context_document_root"].1.ends_with("/htdocs/ctxdir"),
        "{:?}",
        f["context_document_root"]
    );
}

fn op(s: &Server, op: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let method = if body.is_empty() { "GET" } else { "POST" };
    s.request(method, &format!("/req.lua?op={op}"), headers, body)
}

#[test]
fn tables_and_snapshots() {
    let Some(s) = server() else { return };
    let mut c = s.connect();
    let req = "GET /req.lua?op=tables HTTP/1.1\r\nHost: x\r\nX-Dup: first\r\nX-Dup: second\r\nConnection: close\r\n\r\n";
    let _ = &mut c;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    use std::io::Write;
    stream.write_all(req.as_bytes()).unwrap();
    let r = read_response(&mut std::io::BufReader::new(stream), false).unwrap();
    // httpd joins repeated request headers; repeated response headers stay separate.
    assert_eq!(
        r.text(),
        "first, second|first, second|2|line1\nline2|v|e|2|b=2;|nil"
    );
    assert_eq!(
        r.headers["x-one"],
        vec!["2".to_string()],
        "set replaces, case-insensitively"
    );
    let r = op(&s, "unset", &[], b"");
    assert_eq!(r.text(), "nil|7");
}

#[test]
fn parseargs_keeps_every_value() {
    let Some(s) = server() else { return };
    let r = s.get("/req.lua?op=args&a=1&a=2&a=3&nul=ab%00cd&bad=100%zz%&flag&plus=1+1");
    assert_eq!(r.text(), "3|3|1,2,3|ab|100%zz%|1|1+1");
}

#[test]
fn parsebody_urlencoded_and_multipart() {
    let Some(s) = server() else { return };
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(
        op(&s, "body", &form, b"z=1&a=x+y&z=2&a=%41&empty=").text(),
        "a=x y,A;empty=;z=1,2;"
    );
    // Multipart: quoted boundary, extra parameters, headers in any order, empty field, binary file.
    let ct = "multipart/form-data; charset=UTF-8; boundary=\"----b0und\"";
    let body = b"------b0und\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n\
        ------b0und\r\nContent-Type: application/octet-stream\r\ncontent-disposition: form-data; filename=\"a.bin\"; name=\"upload\"\r\n\r\n\x00\x01\r\n\x02\r\n\
        ------b0und\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n\
        ------b0und\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nWorld\r\n------b0und--\r\n";
    let r = op(&s, "bodylen", &[("Content-Type", ct)], body);
    assert_eq!(r.text(), "fields=3 upload=5");
    let r = op(&s, "body", &[("Content-Type", ct)], body);
    assert!(
        r.text().starts_with("empty=;title=Hello,World;upload="),
        "{:?}",
        r.text()
    );
}

#[test]
fn hostile_bodies_get_clear_answers() {
    let Some(s) = server() else { return };
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    // 10 MB urlencoded body: over parsebody's default max, and over LimitRequestBody.
    let big = "k=v&".repeat(10 * 1024 * 1024 / 4);
    let r = op(&s, "body", &form, big.as_bytes());
    assert!(
        r.status == 413 || r.text().starts_with("ERR:"),
        "{} {}",
        r.status,
        r.text()
    );
    let r = op(&s, "body", &[form[0], ("X-Max", "0")], big.as_bytes());
    assert!(
        r.status == 413 || r.text().starts_with("ERR:"),
        "{} {}",
        r.status,
        r.text()
    );
    // Within LimitRequestBody and an explicit max: parsed.
    let mid = "k=v&".repeat(100_000);
    let r = op(
        &s,
        "bodylen",
        &[form[0], ("X-Max", "1000000")],
        mid.as_bytes(),
    );
    assert_eq!(r.text(), "fields=1 upload=-1");
    // 10,000 multipart parts: refused with a message.
    let ct = "multipart/form-data; boundary=B";
    let mut many = String::new();
    for i in 0..10_000 {
        many.push_str(&format!(
            "--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n"
        ));
    }
    many.push_str("--B--\r\n");
    let r = op(
        &s,
        "bodylen",
        &[("Content-Type", ct), ("X-Max", "1000000")],
        many.as_bytes(),
    );
    assert!(r.text().contains("more than 1000 parts"), "{}", r.text());
    // A boundary that never closes.
    let open = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue without end";
    let r = op(&s, "bodylen", &[("Content-Type", ct)], open.as_bytes());
    assert!(r.text().contains("closing boundary"), "{}", r.text());
    // No boundary parameter at all.
    let r = op(
        &s,
        "bodylen",
        &[("Content-Type", "multipart/form-data")],
        b"x",
    );
    assert!(r.text().contains("without a boundary"), "{}", r.text());
    // Per-directory LimitRequestBody applies to parsebody(0).
    let r = s.request(
        "POST",
        "/small/req.lua?op=body",
        &[form[0], ("X-Max", "0")],
        "a=1&".repeat(100).as_bytes(),
    );
    assert!(
        r.status == 413 || r.text().starts_with("ERR:"),
        "{} {}",
        r.status,
        r.text()
    );
    assert_eq!(s.get("/fields.lua").status, 200);
    s.assert_no_crash();
}

#[test]
fn requestbody_string_chunked_and_file() {
    let Some(s) = server() else { return };
    assert_eq!(
        op(&s, "raw", &[], b"hello\0world").text(),
        "11:hello\0world"
    );
    // Chunked request body.
    let mut c = s.connect();
    let r = c.send(
        "POST",
        "/req.lua?op=raw",
        &[("Transfer-Encoding", "chunked")],
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        true,
    );
    assert_eq!(r.text(), "11:hello world");
    assert_eq!(
        op(&s, "raw", &[("X-Max", "4")], b"too long").text(),
        "NIL:Request body was larger than the permitted size."
    );
    // To a file, truncating what was there.
    let path = s.root.join("upload.bin");
    std::fs::write(&path, "old content that is longer than the new one").unwrap();
    chmod_tree(&path);
    std::process::Command::new("chmod")
        .arg("666")
        .arg(&path)
        .status()
        .unwrap();
    let p = path.display().to_string();
    let r = op(&s, "tofile", &[("X-File", &p)], b"new");
    assert_eq!(r.text(), "3:nil:new");
}

#[test]
fn cookies() {
    let Some(s) = server() else { return };
    let r = op(
        &s,
        "cookies",
        &[("Cookie", "a=1; session=abc%20d; dup=1, dup=2")],
        b"",
    );
    assert_eq!(r.text(), "abc%20d|nil|nil|0");
    let set = &r.headers["set-cookie"];
    assert_eq!(set.len(), 4, "{set:?}");
    assert_eq!(set[0], "k+1=v%3b1; Secure; Expires=Tue, 14 Nov 2023 22:13:20 GMT; HttpOnly; Domain=example.com; Path=/;");
    assert_eq!(set[1], "plain=x;     Path=/;");
    assert_eq!(
        set[2],
        "legacy=y; Secure; Expires=Tue, 14 Nov 2023 22:13:20 GMT;"
    );
    assert_eq!(set[3], "legacy2=z;");
    assert!(s
        .error_log()
        .contains("client submitted cookie 'dup' more than once"));
}

#[test]
fn url_expr_docroot_etag() {
    let Some(s) = server() else { return };
    // The client sends `Host: 127.0.0.1` (no port), so the URL has none (UseCanonicalName Off).
    assert_eq!(
        op(&s, "url", &[], b"").text(),
        "http://127.0.0.1/x?y=1|127.0.0.1"
    );
    assert_eq!(op(&s, "expr", &[], b"").text(), "true|false|false|err");
    assert_eq!(
        op(&s, "docroot", &[], b"").text(),
        "/srv/elsewhere|/prefix|/srv/ctx"
    );
    let t = op(&s, "etag", &[], b"").text();
    let (strong, weak) = t.split_once('|').unwrap();
    // httpd makes even the default ETag weak for a file changed within the last second.
    assert!(
        strong.ends_with('"') && strong.contains("-\"") || strong.contains('"'),
        "{t}"
    );
    assert!(weak.starts_with("W/\""), "{t}");
}

#[test]
fn encoders_match_httpd() {
    let Some(s) = server() else { return };
    let t = op(&s, "encode", &[], b"").text();
    let parts: Vec<&str> = t.split('|').collect();
    assert_eq!(
        parts,
        vec![
            "a+b%26c%3dd%2f%c3%a9",
            "a b&c",
            "nil",
            "0",
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;",
            "tab\\there\\\"q",
            "/a%20b/c%3fd",
            "a%20b",
            "aGVsbG8=",
            "hello",
            "true",
            "6",
            "900150983cd24fb0d6963f7d28e17f72",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            "d41d8cd98f00b204e9800998ecf8427e",
            "4a3dec2d1f8245280855c42db0ee4239f917fdb8",
        ]
    );
}

#[test]
fn logging_levels_and_positions() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .log_level("warn lua:info")
        .file("htdocs/req.lua", REQ)
        .start();
    assert_eq!(s.get("/req.lua?op=log").text(), "logged");
    let log = s.error_log();
    let line = |needle: &str| log.lines().find(|l| l.contains(needle)).map(str::to_string);
    // The message as the script wrote it, as mod_lua logs it (log watchers match on it).
    let err = line("err-level message").expect("err logged");
    assert!(
        err.contains("[lua:error]") && err.ends_with("] err-level message"),
        "{err}"
    );
    assert!(line("warn-level message").unwrap().contains("[lua:warn]"));
    assert!(line("info-level message").unwrap().contains("[lua:info]"));
    assert!(
        line("debug-level message").is_none(),
        "LogLevel lua:info must hide debug"
    );
    let s2 = Config::new()
        .log_level("warn lua:trace8")
        .file("htdocs/req.lua", REQ)
        .start();
    s2.get("/req.lua?op=log");
    let log = s2.error_log();
    assert!(log.contains("trace8-level message"));
    // From debug on, httpd's default format shows the source position mod_lua passes: the
    // chunk's name ("@" and the script's path) and the line.
    let debug = log.lines().find(|l| l.contains("debug-level message"));
    assert!(
        debug.is_some_and(|l| l.contains(" @/") && l.contains("/htdocs/req.lua(")),
        "{debug:?}"
    );
}

#[test]
fn writable_and_read_only_fields() {
    let Some(s) = server() else { return };
    let r = op(&s, "writes", &[], b"");
    assert_eq!(r.status, 203);
    assert_eq!(
        r.text(),
        "203|new=1|/rewritten|/tmp/x|some-handler|alice|text/x-test|PROXYREQ_REVERSE"
    );
    assert_eq!(r.header("content-type"), Some("text/x-test"));
    for field in [
        "method",
        "hostname",
        "headers_in",
        "banner",
        "is_https",
        "nonexistent",
    ] {
        let r = op(&s, "readonly", &[("X-Field", field)], b"");
        assert_eq!(
            r.text(),
            format!("false|Property [{field}] may not be set on a request_rec")
        );
    }
}

#[test]
fn calling_conventions() {
    let Some(s) = server() else { return };
    let t = op(&s, "dotcall", &[], b"").text();
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].contains("bad argument #1 to 'escape' (Apache2.Request expected, got string)"),
        "{t}"
    );
    assert!(
        lines[1].contains("bad argument #2 to 'escape' (string expected, got number)"),
        "{t}"
    );
    // Errors raised by the API are plain strings, as mod_lua's are.
    assert!(
        !t.contains("runtime error") && !t.contains("traceback"),
        "{t}"
    );
    assert!(
        lines[2].contains("bad argument #2 to 'puts' (string expected, got table)"),
        "{t}"
    );
}

#[test]
fn htpassword_hashes_verify_with_htpasswd() {
    let Some(s) = server() else { return };
    let t = op(&s, "htpassword", &[], b"").text();
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("$apr1$"), "{t}");
    assert!(lines[1].starts_with("{SHA}"), "{t}");
    assert!(lines[2].starts_with("$2y$05$"), "{t}");
    assert_eq!(
        lines[4],
        "false|mk_password_hash(): unsupported algorithm 9"
    );
    assert_eq!(lines[5], "$2y$06$");
    if !std::path::Path::new("/usr/bin/htpasswd").exists() {
        return;
    }
    for (alg, hash) in lines[..4].iter().enumerate() {
        let file = s.root.join(format!("passwd{alg}"));
        std::fs::write(&file, format!("user:{hash}\n")).unwrap();
        let ok = std::process::Command::new("htpasswd")
            .arg("-vb")
            .arg(&file)
            .args(["user", "s3cret"])
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "alg {alg}: {hash}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let bad = std::process::Command::new("htpasswd")
            .arg("-vb")
            .arg(&file)
            .args(["user", "wrong"])
            .output()
            .unwrap();
        assert!(!bad.status.success(), "alg {alg} accepted a wrong password");
    }
}

/// The methods written as plain C functions over the Lua stack (encoders, digests, cookies,
/// flush, logging) answer as mod_lua's do: results, nothing-returned cases, and argument
/// errors as `:` calls name them.
#[test]
fn stack_methods_match_mod_lua() {
    const HANDLER: &str = r#"
function handle(r)
  local t = probe(r)
  t("md5", function() return r:md5("abc") end)
  t("md5 empty", function() return r:md5("") end)
  t("md5 number", function() return r:md5(5) end)
  t("md5 none", function() return r:md5() end)
  t("md5 bad self", function() return r.md5("x") end)
  t("sha1", function() return r:sha1("abc\0def") end)
  t("sha1 number", function() return r:sha1(7) end)
  t("escape", function() return r:escape("a b&c=d/\195\169~") end)
  t("escape number", function() return r:escape(12) end)
  t("unescape", function() return r:unescape("a+b%20c%2F") end)
  t("unescape malformed", function() return r:unescape("a%zz") end)
  t("unescape nul", function() return r:unescape("a%00b") end)
  t("escape_html", function() return r:escape_html("<a href='x'>&\"</a>") end)
  t("escape_html number", function() return r:escape_html(12.5) end)
  t("escape_html none", function() return r:escape_html() end)
  t("base64", function() return r:base64_encode("hello world") end)
  t("base64 decode", function() return r:base64_decode("aGVsbG8=") end)
  t("base64 table", function() return r:base64_decode({}) end)
  t("cookie", function() return r:getcookie("sid") end)
  t("cookie missing", function() return r:getcookie("nope") end)
  t("cookie number", function() return r:getcookie(5) end)
  t("cookie none", function() return r:getcookie() end)
  t("flush", function() return r:flush() end)
  t("flush no self", function() return r.flush() end)
  t("info", function() return r:info("a line") end)
  t("info number", function() return r:info(42) end)
  t("info none", function() return r:info() end)
  t("warn table", function() return r:warn({}) end)
  t("notice bad self", function() return r.notice("x") end)
end
"#;
    let Some((status, text, _)) = same_on_both(HANDLER, &[("Cookie", "a=1; sid=xyz")], &[]) else {
        return;
    };
    assert_eq!(status, 200);
    assert!(
        text.contains("md5 true n=1 900150983cd24fb0d6963f7d28e17f72"),
        "{text}"
    );
    assert!(text.contains("cookie true n=1 xyz"), "{text}");
}

/// The logging methods log the message as written, with the script's position as the line's
/// source (shown from debug level on), as mod_lua's do; a cookie sent twice gets httpd core's
/// AH00011 line.
#[test]
fn log_lines_match_mod_lua() {
    const SCRIPT: &str = r#"
function handle(r)
  r:info("stack-info line")
  r:info(42)
  r:debug("stack-debug line")
  r:err("stack-err line")
  r:getcookie("dup")
  r:puts("logged")
end
"#;
    let config = || {
        Config::new()
            .log_level("warn lua:debug")
            .file("htdocs/m.lua", SCRIPT)
    };
    let Some((ours, theirs)) = on_both(config, |_, s| {
        let r = s.request("GET", "/m.lua", &[("Cookie", "dup=1; dup=2")], b"");
        assert_eq!(r.text(), "logged");
        let root = s.docroot().parent().unwrap().display().to_string();
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Each message line from its level tag on, without the pid and client parts.
        let logged: Vec<String> = s
            .error_log()
            .lines()
            .filter(|l| l.contains("stack-") || l.contains("] 42") || l.contains("AH00011"))
            .map(|l| {
                let from = l.find("[lua:").or_else(|| l.find("[core:")).unwrap_or(0);
                let tag_end = l[from..].find(']').map_or(from, |i| from + i + 1);
                let source = l.find(" @").map(|i| &l[i..l.find("): ").unwrap_or(i) + 1]);
                let message = &l[l.rfind("] ").map_or(0, |i| i + 2)..];
                format!("{} {:?} {}", &l[from..tag_end], source, message)
            })
            .collect();
        s.assert_no_crash();
        logged.join("\n").replace(&root, "ROOT")
    }) else {
        return;
    };
    assert_eq!(ours, theirs);
    assert!(
        ours.contains("@ROOT/htdocs/m.lua(5)") && ours.contains("stack-err line"),
        "{ours}"
    );
    // A cookie sent twice: httpd's own line, logged by its core as under mod_lua.
    assert!(ours.contains("[core:error] None AH00011: "), "{ours}");
}

/// r:setcookie writes mod_lua's header layout for both calling forms and checks the table's
/// fields as mod_lua does (its `#-2` wording included), metamethods and their errors too.
#[test]
fn setcookie_matches_mod_lua() {
    const HANDLER: &str = r#"
function handle(r)
  local t = probe(r)
  t("full", function() r:setcookie{key = "k 1", value = "v;w", expires = 1000000000, secure = true,
    httponly = true, path = "/p", domain = "example.com"} end)
  t("numbers", function() r:setcookie{key = 5, value = 6.5, secure = 1, httponly = "yes", path = 7} end)
  t("legacy", function() r:setcookie("l", "v", true, "1000000000") end)
  t("legacy short", function() r:setcookie("m", "w") end)
  t("no key", function() r:setcookie{value = "v"} end)
  t("table value", function() r:setcookie{key = "k", value = {}} end)
  t("bad expires", function() r:setcookie{key = "k", value = "v", expires = "soon"} end)
  t("float expires", function() r:setcookie{key = "k", value = "v", expires = 12.5} end)
  t("boolean path", function() r:setcookie{key = "k", value = "v", path = false} end)
  t("legacy no value", function() r:setcookie("k") end)
  t("nothing", function() r:setcookie() end)
  local proxy = setmetatable({}, {__index = function(_, k)
    if k == "key" then return "mk" elseif k == "value" then return "mv" end
  end})
  t("metatable", function() r:setcookie(proxy) end)
  t("raising metatable", function()
    r:setcookie(setmetatable({}, {__index = function(_, k) error("no field " .. k, 0) end}))
  end)
end
"#;
    let Some((_, text, cookies)) = same_on_both(HANDLER, &[], &["Set-Cookie"]) else {
        return;
    };
    assert_eq!(cookies.len(), 5, "{cookies:?}");
    assert!(
        text.contains("no key false n=1 ROOT/htdocs/probe.lua:"),
        "{text}"
    );
    assert!(
        text.contains("raising metatable false n=1 no field key"),
        "{text}"
    );
}

/// Methods still written as mlua functions report argument errors as mod_lua's do: with the
/// script's position even from a tail call (`return r:expr(x)`), and named as the call site
/// names them.
#[test]
fn mlua_methods_word_errors_like_mod_lua() {
    const HANDLER: &str = r#"
function handle(r)
  local t = probe(r)
  t("expr tail", function() return r:expr({}) end)
  t("expr call", function() local v = r:expr({}) return v end)
  t("escape_logitem tail", function() return r:escape_logitem() end)
  t("os_escape_path local", function() local f = r.os_escape_path local v = f(r, {}) return v end)
  t("custom_response tail", function() return r:custom_response("x", "y") end)
  t("mkdir tail", function() return r:mkdir({}) end)
  t("add_output_filter tail", function() return r:add_output_filter() end)
  t("expr bad self tail", function() return r.expr("x") end)
end
"#;
    let Some((_, text, _)) = same_on_both(HANDLER, &[], &[]) else {
        return;
    };
    assert!(
        text.contains("expr tail false n=1 ROOT/htdocs/probe.lua:"),
        "{text}"
    );
    assert!(text.contains("bad argument #2 to 'f'"), "{text}");
}
