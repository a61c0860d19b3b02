//! Differential test: the same config and scripts under our module and Debian's mod_lua, in two
//! separate servers; status, chosen headers and body must match where behaviour is meant to.
mod common;
use common::*;

const SCRIPTS: &[(&str, &str)] = &[
    ("hello.lua", "function handle(r)\n  r.content_type = 'text/plain'\n  r:puts('Hello Lua World!\\n')\nend\n"),
    ("method.lua", "function handle(r) r:puts(r.method) end"),
    ("version.lua", "function handle(r) r:puts(apache2.version) end"),
    ("201.lua", "function handle(r) r.status = 201 end"),
    ("404.lua", "function handle(r) return 404 end"),
    ("done.lua", "function handle(r) r:puts('d') return apache2.DONE end"),
    (
        "setheaders.lua",
        "function handle(r) r.headers_out['X-Header'] = 'yes' r.headers_out['X-Host'] = r.headers_in['Host'] end",
    ),
    (
        "headerfromparam.lua",
        "function handle(r) local GET = r:parseargs() r.headers_out[GET['HeaderName']] = GET['HeaderValue'] r:puts('Header set') end",
    ),
    (
        "redirect.lua",
        "function handle(r) r.headers_out['Location'] = 'http://example.com/' return apache2.HTTP_MOVED_TEMPORARILY end",
    ),
    (
        "fields.lua",
        "function handle(r) r:puts(r.uri, '|', tostring(r.args), '|', r.protocol, '|', r.hostname, '|', \
         tostring(r.path_info), '|', r.unparsed_uri, '|', r.the_request, '|', tostring(r.is_initial_req), '|', \
         tostring(r.assbackwards), '|', r.proxyreq, '|', tostring(r.user), '|', r.status, '|', tostring(r.handler)) end",
    ),
    (
        "setfields.lua",
        "function handle(r) r.ap_auth_type = 'Token' r.user = 'bob' local ok = pcall(function() r.method = 'PUT' end) \
         r:puts(r.ap_auth_type, '|', r.user, '|', tostring(ok), '|', r.method) end",
    ),
    ("write.lua", "function handle(r) local n = r:write('abc\\0def') r:puts(' ', n) end"),
    ("numbers.lua", "function handle(r) r:puts(1, 2, 'x', 10) end"),
    (
        "putsmany.lua",
        "function handle(r) r:puts('a', 1, 2.5, string.rep('x', 600), 'b', string.rep('y', 300), string.rep('z', 300)) \
         local ok = pcall(r.puts, r, 'c', 'd', {}, 'e') r:puts('|', tostring(ok)) end",
    ),
    ("sendfile.lua", "function handle(r) r:puts(tostring(r:sendfile(r.filename))) end"),
    ("flush.lua", "function handle(r) r:puts('a') r:puts(tostring(r:flush())) end"),
    ("args.lua", "function handle(r) local s = r:parseargs() r:puts(tostring(s.a), tostring(s.b), tostring(s.c)) end"),
    (
        "form.lua",
        "function handle(r) local s = r:parsebody() r:puts(tostring(s.name), '/', tostring(s.city)) end",
    ),
    (
        "formkeys.lua",
        "function handle(r) local p = r:parsebody() local ks = {} for k, v in pairs(p) do ks[#ks + 1] = k .. '=' .. v end \
         table.sort(ks) r:puts(table.concat(ks, ';')) end",
    ),
    ("noreturn.lua", "function handle(r) r:puts('x') end"),
    ("returnstr.lua", "function handle(r) r:puts('x') return 'abc' end"),
    ("ctype.lua", "function handle(r) r.content_type = 'application/x-custom' r:puts('{}') end"),
    ("notes.lua", "function handle(r) r.notes['k'] = 'v' r:puts(r.notes['K'], tostring(r.notes['none'])) end"),
    ("tables_nil.lua", "function handle(r) r.headers_out['X-A'] = 'a' r.headers_out['X-A'] = nil r:puts('ok') end"),
    ("require.lua", "local m = require 'helper' function handle(r) r:puts(m.value) end"),
    ("helper.lua", "return { value = 'from helper' }"),
    (
        "fields2.lua",
        "function handle(r) for _, k in ipairs({'allowoverrides', 'options', 'auth_name', 'banner', 'server_built', \
         'some_auth_required', 'limit_req_body', 'is_https', 'context_prefix', 'assbackwards', 'basic_auth_pw', \
         'ap_auth_type', 'content_encoding', 'range', 'remaining', 'server_name', 'port', 'log_id'}) do \
         r:puts(k, '=', tostring(r[k]), ';') end r:puts(type(r.started), type(r.canonical_filename), \
         type(r.document_root), type(r.context_document_root)) end",
    ),
    (
        "encode.lua",
        "function handle(r) r:puts(r:escape('a b&c=d/\\195\\169~'), '|', r:unescape('a+b%26c'), '|', tostring((r:unescape('x%zz'))), select('#', r:unescape('x%zz')), \
         '|', r:escape_html('<a href=\"x\">&\\'</a>'), '|', r:escape_logitem('t\\tq\"\\\\'), '|', \
         r:os_escape_path('/a b/c?d', true), '|', r:os_escape_path('a b#c'), '|', r:base64_encode('hello world'), '|', \
         r:base64_decode('aGVsbG8gd29ybGQ='), '|', r:md5('abc'), '|', r:sha1('abc'), '|', r:md5(''), '|', r:sha1('')) end",
    ),
    (
        "cookies.lua",
        "function handle(r) r:puts(tostring(r:getcookie('s')), '|', select('#', r:getcookie('nope'))) \
         r:setcookie{key = 'k 1', value = 'v;1', expires = 1700000000, secure = true, httponly = true, domain = 'example.com'} \
         r:setcookie{key = 'plain', value = 'x', path = '/app'} r:setcookie('legacy', 'y', true, 1700000000) end",
    ),
    (
        "url.lua",
        "function handle(r) r:puts(r:construct_url('/x?y=1'), '|', r:get_server_name_for_url()) end",
    ),
    (
        "expr.lua",
        "function handle(r) local a = r:expr(\"%{REQUEST_METHOD} == 'GET'\") local b = r:expr('-n %{HTTP:X-Absent}') \
         local c, err = r:expr('%{ == broken') r:puts(tostring(a), '|', tostring(b), '|', tostring(c), '|', tostring(err)) end",
    ),
    (
        "snapshots.lua",
        "function handle(r) r.notes['n'] = 'v' r.subprocess_env['E'] = 'e' r.headers_out['X-O'] = 'o' \
         local hi = r:headers_in_table() local ho = r:headers_out_table() local no = r:notes_table() \
         local se = r:subprocess_env_table() r:puts(hi['Host'], '|', ho['X-O'], '|', no['n'], '|', se['E']) end",
    ),
    (
        "body.lua",
        "function handle(r) local b, n = r:requestbody() r:puts(tostring(n), ':', tostring(b)) end",
    ),
    (
        "multipart.lua",
        "function handle(r) local s = r:parsebody(100000) r:puts(tostring(s.name), '|', tostring(s.file), '|', tostring(s.other)) end",
    ),
    (
        "files.lua",
        "function handle(r) local st = r:stat(r.filename) local names = r:get_direntries(r.document_root .. '/maps') \
         table.sort(names) r:puts(string.format('%d', st.size), '|', string.format('%d', st.filetype), '|', \
         tostring(st.mtime > 1e15), '|', table.concat(names, ','), '|', select('#', r:stat('/nonexistent')), '|', \
         r:runtime_dir_relative('x.sock'):match('[^/]+$')) end",
    ),
    (
        "utils.lua",
        "function handle(r) local m = r:regex('foo123bar', [[([a-z]+)(\\d+)]]) local i = r:regex('ABC', 'b', 1) \
         r:puts(m[0], ',', m[1], ',', m[2], '|', tostring(r:regex('abc', 'z')), '|', i[0], '|', \
         tostring(r.strcmp_match('foo.lua', '*.lua')), tostring(r.strcmp_match('FOO', 'f*')), \
         tostring(r.strcmp_match('FOO', 'f*', true)), '|', \
         string.format('%d', r.date_parse_rfc('Sun, 06 Nov 1994 08:49:37 GMT')), '|', \
         select('#', r.date_parse_rfc('not a date')), '|', type(r:clock())) end",
    ),
    (
        "info.lua",
        "function handle(r) r:puts(string.format('%d,%d', r.mpm_query(2), r.mpm_query(3)), '|', \
         tostring(r.exists_config_define('MOD_LUA_RS_TESTING')), tostring(r.exists_config_define('NOPE')), '|', \
         r:loaded_modules()[1], '|', r.module_info('mod_mime.c').commands.AddType, '|', \
         select('#', r.module_info('mod_nonexistent.c')), '|', r:server_info().server_mpm, '|', \
         tostring(r:scoreboard_process(0).pid > 0), '|', type(r:scoreboard_worker(0, 0).request)) end",
    ),
    (
        // Lua names our userdata types as mod_lua's (the metatables' __name).
        "typenames.lua",
        "function handle(r) local function e(f) return (select(2, pcall(f)):gsub('^.-:%d+: ', '')) end \
         r:puts(e(function() return #r.headers_in end), '|', e(function() return #r end), '|', \
         e(function() return r.notes + 1 end)) end",
    ),
    // r:clock() is a float, as mod_lua pushes it ("0.0", not "0", on Lua 5.3 and 5.4).
    ("clock.lua", "function handle(r) r:puts(tostring(r:clock() * 0)) end"),
    // Which numbers are floats and which integers, as mod_lua pushes them.
    (
        "numtypes.lua",
        "function handle(r) local out = {} local function add(t) local ks = {} for k, v in pairs(t) do \
         if type(v) == 'number' then ks[#ks + 1] = k .. '=' .. tostring(v * 0) end end table.sort(ks) \
         out[#out + 1] = table.concat(ks, ',') end \
         add(r:stat(r.filename)) add(r:scoreboard_process(0)) add(r:scoreboard_worker(0, 0)) \
         r:ivm_set('n', 5) add({ ivm = r:ivm_get('n'), date = r.date_parse_rfc('Sun, 06 Nov 1994 08:49:37 GMT') }) \
         r:puts(table.concat(out, '|')) end",
    ),
    (
        "serverinfo.lua",
        "function handle(r) local ks = {} for k in pairs(r:server_info()) do ks[#ks + 1] = k end table.sort(ks) \
         r:puts(table.concat(ks, ',')) end",
    ),
    (
        "ivm.lua",
        "function handle(r) r:ivm_set('n', 42) r:ivm_set('s', 'text') r:puts(string.format('%d', r:ivm_get('n')), \
         ',', r:ivm_get('s'), ',', select('#', r:ivm_get('never-set'))) end",
    ),
    (
        // string.upper/lower are our own (faster) functions: same bytes, same errors.
        "case.lua",
        "function handle(r) local big = string.rep('aZ\\0\\195\\169-{@[`', 40) \
         local function e(f) local ok, err = pcall(f) return (tostring(err):gsub('^.-:%d+: ', '')) end \
         r:puts(('abc'):upper(), '|', string.lower('\\195\\128BC'), '|', string.upper(12.5), '|', \
         (big:upper():gsub('\\0', '0')), '|', (big:lower():gsub('\\0', '0')), '|', e(function() return string.upper(nil) end), '|', e(function() return ('x').lower() end), '|', \
         e(function() return string.upper({}) end), '|', select(2, pcall(string.upper)), '|', \
         select(2, pcall(string.lower, {}))) end",
    ),
    (
        // table.sort has a native fast path (strings, integers or floats, no comparator).
        "sort.lua",
        r#"function handle(r)
  local function e(f) local ok, err = pcall(f) return ok and "ok" or (tostring(err):gsub("^.-:%d+: ", "")) end
  local function show(t) local o = {} for i, v in ipairs(t) do o[i] = (tostring(v):gsub("%z", "0")) end return table.concat(o, ",") end
  local s = {"pear", "apple", "Zebra", "a\0b", "a\0a", "a", "", "éclair", "apple", "banana"}
  table.sort(s)
  local ints = {5, -3, 99, 0, 7, 7, math.maxinteger, math.mininteger}
  table.sort(ints)
  local floats = {2.5, -1.25, 1e300, -0.0, 3.75, 0.5}
  table.sort(floats)
  local mixed = {3, 1.5, 2, -1.0}
  table.sort(mixed)
  local desc = {1, 5, 3}
  table.sort(desc, function(a, b) return a > b end)
  local big = {} for i = 1, 300 do big[i] = string.format("k%04d", (i * 7919) % 1000) end
  table.sort(big)
  local okbig = true for i = 2, #big do if big[i - 1] > big[i] then okbig = false end end
  -- Equal in their first eight bytes past a shared prefix, or in all eight and then some.
  local ties = {"prefix-long-2", "prefix-long-10", "q", "prefix-long-1", "prefix-lonG", "prefix-long-1\0"}
  table.sort(ties)
  local shared = {"same-0123456789-b", "same-0123456789-a", "same-0123456789", "same-01234567", "same-0123456789-a"}
  table.sort(shared)
  local one = {"x"} table.sort(one)
  local empty = {} table.sort(empty)
  r:puts(show(s), "|", show(ints), "|", show(floats), "|", show(mixed), "|", show(desc), "|", tostring(okbig), big[1], big[300], "|",
    show(ties), "|", show(shared), "|",
    show(one), #empty, "|",
    e(function() table.sort({3, "x", 1}) end), "|", e(function() table.sort({1, nil, 3}) end), "|",
    e(function() table.sort(nil) end), "|", e(function() table.sort({}, 5) end), "|", e(function() table.sort() end), "|",
    e(function() table.sort({1, 0/0, 2, 0/0, 5, 0/0, 3}) end), "|",
    e(function() table.sort(setmetatable({}, {__len = function() return 3 end, __index = function(_, i) return 4 - i end, __newindex = function() end})) end), "|",
    select(2, pcall(table.sort)), "|", e(function() table.sort({true, false}) end))
end
"#,
    ),
    (
        // string.format and table.concat have native fast paths for the common cases; the
        // rest, and every error, go to the originals, worded as called from the script.
        "format.lua",
        r#"function handle(r)
  local function e(f) local ok, err = pcall(f) return ok and "ok" or (tostring(err):gsub("^.-([%w_]+%.lua:%d+:)", "%1")) end
  local long = string.rep("y", 120)
  r:puts(string.format("%d|%5d|%-5d|%05d|%+d|% d|%.3d|%.0d|%i|%x|%X|%#x|%08.3x|%-#8x|%x", 42, -42, 7, -7, 7, 7, 5, 0, 9, 255, 255, 255, 10, 10, -1), "\n",
    string.format("%d %d %5.3d %+.2i", math.maxinteger, math.mininteger, -4, 3), "\n",
    string.format("[%s][%10s][%-10s][%.2s][%8.3s][%s][%s][%5s][%%][%s]", "abc", "abc", "abc", "abc", "abcdef", 12, -7, 42, "a\0b"):gsub("%z", "0"), "\n",
    #string.format("%5s|%-3s|%.99s", long, long, long), "|", string.format("no specs"), "|", string.format(""), "|", string.format(12), "\n",
    string.format("%5.2f|%q|%c|%g|%d|%s|%s|%s|%s", 3.14159, 'a\n"b', 65, 1e20, 3.0, 1.5, true, nil, setmetatable({}, {__tostring = function() return "T!" end})), "\n",
    e(function() return string.format("%d", "x") end), "|", e(function() return ("%d"):format({}) end), "|",
    e(function() return string.format("%d") end), "|", select(2, pcall(string.format, "%d")), "|",
    e(function() return string.format("%d", 1.5) end), "|", e(function() return string.format("%5s", "a\0b") end), "|",
    e(function() return string.format() end), "|", e(function() return string.format("%d", "12") end), "\n")
  getmetatable("").__tostring = function(s) return "<" .. #s .. ">" end
  local shown = string.format("%s|%5s", "abc", "de")
  getmetatable("").__tostring = nil
  r:puts(shown, "\n",
    table.concat({1, "a", 2}, ", "), "|", table.concat({1, "a", 2}, ", ", 2, 3), "|", table.concat({}, "x"), "|",
    table.concat({1, 2, 3}, "-", 3, 2), "|", table.concat({1.5, 2}), "|", table.concat({"p", "q"}, 1), "|",
    table.concat(setmetatable({}, {__index = function(_, i) return "m" .. i end}), "", 1, 3), "|",
    (table.concat({math.mininteger, "z"}, "\0"):gsub("%z", "0")), "\n",
    e(function() return table.concat({1, {}, 3}) end), "|", e(function() return table.concat({1, 2}, {}) end), "|",
    e(function() return table.concat() end), "|", e(function() return table.concat({1, 2}, "", 1, 3) end), "|",
    e(function() local t = {} for i = 1, 50 do t[i] = i % 7 end table.sort(t, function(a, b) return true end) end), "|",
    e(function() table.sort({3, 2, 1}, function(a, b) error("cmp failed") end) end), "|",
    e(function() table.sort({3, 2, 1}, function(a, b) error({}) end) end):sub(1, 6))
end
"#,
    ),
    (
        // string.rep has a native fast path (string, integer count, string or no separator).
        "rep.lua",
        r#"function handle(r)
  local function e(f) local ok, err = pcall(f) return ok and "ok" or (tostring(err):gsub("^.-([%w_]+%.lua:%d+:)", "%1")) end
  local big = string.rep("ab", 5000, ", ")
  r:puts(string.rep("x", 4), "|", string.rep("ab", 3, "-"), "|", ("na"):rep(2, "\0"):gsub("%z", "0"), "|",
    "[", string.rep("x", 0), "][", string.rep("x", -3), "][", string.rep("", 5), "][", string.rep("", 3, ","), "]|",
    string.rep("q", 1, "sep"), "|", string.rep("z", 3.0), "|", string.rep("z", "2"), "|", string.rep(12, 2), "|",
    string.rep("y", 2, 7), "|", #string.rep("k", 100), "|", #big, big:sub(1, 9), big:sub(-5), "\n",
    e(function() return string.rep("x", 1.5) end), "|", e(function() return string.rep() end), "|",
    e(function() return string.rep("x") end), "|", e(function() return string.rep({}, 2) end), "|",
    e(function() return string.rep("x", 2, {}) end), "|", e(function() return string.rep("ab", math.maxinteger) end), "|",
    e(function() return ("x"):rep("y") end), "|", select(2, pcall(string.rep, "x")), "\n")
end
"#,
    ),
    (
        "custom.lua",
        "function handle(r) r:custom_response(410, 'gone for good') return 410 end",
    ),
];

const MAP: &str = "LuaMapHandler ^/map/(\\w+)_(\\w+)$ {docroot}/maps/$1.lua handle_$2\n";
const MAP_SCRIPT: &str = "function handle_quietly(r) r:puts('hello!') end\n\
                          function handle_declines(r) return apache2.DECLINED end\n\
                          function handle_status(r) r.status = 202 r:puts('accepted') end\n";

struct Req {
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
}

const fn get(path: &'static str) -> Req {
    Req {
        method: "GET",
        path,
        headers: &[],
        body: b"",
    }
}

const REQUESTS: &[Req] = &[
    get("/hello.lua"),
    get("/method.lua"),
    Req {
        method: "POST",
        ..get("/method.lua")
    },
    get("/version.lua"),
    get("/201.lua"),
    get("/404.lua"),
    get("/done.lua"),
    get("/setheaders.lua"),
    get("/headerfromparam.lua?HeaderName=foo&HeaderValue=bar"),
    get("/redirect.lua"),
    get("/fields.lua?x=1"),
    get("/fields.lua"),
    get("/setfields.lua"),
    get("/write.lua"),
    get("/numbers.lua"),
    get("/putsmany.lua"),
    get("/sendfile.lua"),
    get("/flush.lua"),
    get("/args.lua?a=1&b=two%20words&c"),
    // A repeated key: the simple table holds the last value, in mod_lua as here.
    get("/args.lua?a=1&b=x&a=2&c=y&a=3"),
    Req {
        method: "POST",
        path: "/form.lua",
        headers: &[("Content-Type", "application/x-www-form-urlencoded")],
        body: b"name=Ann+Lee&city=Z%C3%BCrich",
    },
    Req {
        method: "POST",
        path: "/form.lua",
        headers: &[("Content-Type", "application/x-www-form-urlencoded")],
        body: b"name=first&city=A&name=second&name=third",
    },
    Req {
        method: "POST",
        path: "/formkeys.lua",
        headers: &[("Content-Type", "application/x-www-form-urlencoded")],
        body: b"a=1&=x&novalue&&e=%41%42+c",
    },
    get("/noreturn.lua"),
    get("/returnstr.lua"),
    get("/ctype.lua"),
    get("/notes.lua"),
    get("/tables_nil.lua"),
    get("/require.lua"),
    get("/map/x_quietly"),
    get("/map/x_status"),
    get("/missing.lua"),
    get("/fields2.lua"),
    get("/encode.lua"),
    Req { headers: &[("Cookie", "a=1; s=abc%20d")], ..get("/cookies.lua") },
    get("/url.lua"),
    get("/expr.lua"),
    get("/snapshots.lua"),
    Req { method: "POST", path: "/body.lua", headers: &[], body: b"raw body bytes" },
    Req {
        method: "POST",
        path: "/multipart.lua",
        headers: &[("Content-Type", "multipart/form-data; boundary=XyZ")],
        body: b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAnn\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nvalue\r\n--XyZ--\r\n",
    },
    get("/files.lua"),
    get("/utils.lua"),
    get("/info.lua"),
    get("/typenames.lua"),
    get("/clock.lua"),
    get("/numtypes.lua"),
    get("/serverinfo.lua"),
    get("/ivm.lua"),
    get("/custom.lua"),
    get("/case.lua"),
    get("/sort.lua"),
    get("/format.lua"),
    get("/rep.lua"),
];

const PUC_LUA_ONLY: &[&str] = &[
    "/case.lua",
    "/sort.lua",
    "/format.lua",
    "/rep.lua",
    "/typenames.lua",
    "/clock.lua",
    "/numtypes.lua",
];

const COMPARED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "location",
    "x-header",
    "x-host",
    "foo",
    "x-a",
];

fn start(module: Module) -> Server {
    let mut cfg = Config::new()
        .module(module)
        .directives(MAP)
        .file("htdocs/maps/x.lua", MAP_SCRIPT);
    for (name, body) in SCRIPTS {
        cfg = cfg.file(&format!("htdocs/{name}"), body);
    }
    cfg.start()
}

/// `text` with the server's port, where it stands as a number of its own, replaced by "PORT"
/// (the two servers listen on different ports; a longer number that merely contains the
/// port's digits stays as it is).
fn without_port(text: &str, port: u16) -> String {
    let port = port.to_string();
    let digit_at = |i: usize| text.as_bytes().get(i).is_some_and(u8::is_ascii_digit);
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for (i, _) in text.match_indices(&port) {
        let end = i + port.len();
        if (i == 0 || !digit_at(i - 1)) && !digit_at(end) {
            out.push_str(&text[done..i]);
            out.push_str("PORT");
            done = end;
        }
    }
    out.push_str(&text[done..]);
    out
}

#[test]
fn without_port_replaces_only_the_whole_number() {
    assert_eq!(without_port("127.0.0.1:41117/x", 41117), "127.0.0.1:PORT/x");
    assert_eq!(without_port("784111777|41117", 41117), "784111777|PORT");
    assert_eq!(without_port("4111741117", 41117), "4111741117");
}

#[test]
fn same_responses_as_debian_mod_lua() {
    if !httpd_available() {
        return;
    }
    if !std::path::Path::new(DEBIAN_MOD_LUA).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "{DEBIAN_MOD_LUA} missing under CI"
        );
        eprintln!("skipped: Debian's mod_lua is not installed");
        return;
    }
    let ours = start(Module::Ours);
    let theirs = start(Module::DebianModLua);
    // Guard against a vacuous pass: both servers really run the scripts.
    for s in [&ours, &theirs] {
        let r = s.get("/hello.lua");
        assert_eq!((r.status, r.text().as_str()), (200, "Hello Lua World!\n"));
        assert_eq!(s.get("/map/x_quietly").text(), "hello!");
    }
    // Scripts that exercise Lua 5.3/5.4 language details (patterns with NUL, integer
    // subtypes, type names from __name in messages) compare only when our module runs PUC Lua, as mod_lua does.
    for req in REQUESTS {
        if !runs_puc_lua() && PUC_LUA_ONLY.contains(&req.path) {
            continue;
        }
        let a = ours.request(req.method, req.path, req.headers, req.body);
        let b = theirs.request(req.method, req.path, req.headers, req.body);
        let what = format!("{} {}", req.method, req.path);
        assert_eq!(
            a.status,
            b.status,
            "{what}: status (ours {:?}, mod_lua {:?})",
            a.text(),
            b.text()
        );
        // X-Host carries the port, which differs between the two servers.
        for h in COMPARED_HEADERS.iter().filter(|h| **h != "x-host") {
            assert_eq!(a.headers.get(*h), b.headers.get(*h), "{what}: header {h}");
        }
        let (ta, tb) = (a.text(), b.text());
        assert_eq!(
            without_port(&ta, ours.port),
            without_port(&tb, theirs.port),
            "{what}: body"
        );
    }
    assert_eq!(
        ours.get("/setheaders.lua").header("x-host"),
        Some("127.0.0.1")
    );
    ours.assert_no_crash();
}

/// Failures that both modules log, and the request that causes each.
const FAILING: &[(&str, &str)] = &[
    ("e/syntax.lua", "function handle(r\n"),
    ("e/nofunc.lua", "x = 1\n"),
    ("e/runtime.lua", "function handle(r) error('boom') end\n"),
    ("e/toplevel.lua", "error('top')\nfunction handle(r) end\n"),
    (
        "e/cookie.lua",
        "function handle(r) local v = r:getcookie('a') r:puts(tostring(v)) end\n",
    ),
    ("f/page.txt", "some text\n"),
];
const FAILING_SCRIPTS: &[(&str, &str)] = &[
    ("maps.lua", "function none(r) r:puts('x') end\n"),
    (
        "hooks.lua",
        "function nonnum(r) return 'x' end\nfunction err(r) error('hook boom') end\n",
    ),
    (
        "authz.lua",
        "function nonint(r) return 'x' end\nfunction bad(r) return 42 end\n\
         function err(r) error('authz boom') end\n",
    ),
    (
        "filters.lua",
        "function failf(r) coroutine.yield() error('filter boom') end\n",
    ),
];
const FAILING_CONFIG: &str = "LuaMapHandler ^/m/none$ {root}/maps.lua none\n\
    LuaMapHandler ^/m/missing$ {root}/maps.lua nosuch\n\
    LuaAuthzProvider lua-nonint {root}/authz.lua nonint\n\
    LuaAuthzProvider lua-bad {root}/authz.lua bad\n\
    LuaAuthzProvider lua-err {root}/authz.lua err\n\
    LuaOutputFilter FAILF {root}/filters.lua failf\n\
    <Location /h/nonnum>\n LuaHookFixups {root}/hooks.lua nonnum\n</Location>\n\
    <Location /h/missing>\n LuaHookFixups {root}/hooks.lua nosuch\n</Location>\n\
    <Location /h/err>\n LuaHookFixups {root}/hooks.lua err\n</Location>\n\
    <Location /a/nonint>\n Require lua-nonint\n</Location>\n\
    <Location /a/bad>\n Require lua-bad\n</Location>\n\
    <Location /a/err>\n Require lua-err\n</Location>\n\
    <Location /f/>\n SetOutputFilter FAILF\n</Location>\n";

/// The message numbers (`AHnnnnn`) in `log` from byte `from` on.
fn message_numbers(log: &str, from: usize) -> std::collections::BTreeSet<String> {
    let text = log.get(from..).unwrap_or("");
    let b = text.as_bytes();
    text.match_indices("AH")
        .filter(|(i, _)| {
            b.len() >= i + 8 && b[i + 2..i + 7].iter().all(u8::is_ascii_digit) && b[i + 7] == b':'
        })
        .map(|(i, _)| text[i..i + 7].to_string())
        .collect()
}

#[test]
fn same_message_numbers_as_debian_mod_lua() {
    if !httpd_available() || !std::path::Path::new(DEBIAN_MOD_LUA).exists() {
        assert!(
            std::env::var("CI").is_err(),
            "httpd or {DEBIAN_MOD_LUA} missing under CI"
        );
        return;
    }
    let start = |module| {
        let mut cfg = Config::new().module(module).directives(FAILING_CONFIG);
        for (name, body) in FAILING {
            cfg = cfg.file(&format!("htdocs/{name}"), body);
        }
        for (name, body) in FAILING_SCRIPTS {
            cfg = cfg.file(name, body);
        }
        cfg.start()
    };
    let (ours, theirs) = (start(Module::Ours), start(Module::DebianModLua));
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/e/syntax.lua", &[]),
        ("/e/nofunc.lua", &[]),
        ("/e/runtime.lua", &[]),
        ("/e/toplevel.lua", &[]),
        ("/e/cookie.lua", &[("Cookie", "a=1; a=2")]),
        ("/m/none", &[]),
        ("/m/missing", &[]),
        ("/h/nonnum", &[]),
        ("/h/missing", &[]),
        ("/h/err", &[]),
        ("/a/nonint", &[]),
        ("/a/bad", &[]),
        ("/a/err", &[]),
        ("/f/page.txt", &[]),
    ];
    for (path, headers) in cases {
        let mut seen = Vec::new();
        for s in [&ours, &theirs] {
            let before = s.error_log().len();
            let _ = s.connect().try_send("GET", path, headers, b"", false);
            // The line is written before or while the response goes out; wait for it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut numbers = message_numbers(&s.error_log(), before);
            while numbers.is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
                numbers = message_numbers(&s.error_log(), before);
            }
            // Any further line of the same failure.
            std::thread::sleep(std::time::Duration::from_millis(50));
            numbers.extend(message_numbers(&s.error_log(), before));
            seen.push(numbers);
        }
        let (ours_n, theirs_n) = (&seen[0], &seen[1]);
        assert!(
            !ours_n.is_empty() && ours_n.is_subset(theirs_n),
            "{path}: ours logged {ours_n:?}, mod_lua {theirs_n:?}\nours:\n{}\nmod_lua:\n{}",
            ours.error_log(),
            theirs.error_log()
        );
    }
    ours.assert_no_crash();
}
