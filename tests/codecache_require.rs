//! LuaCodeCache (stat/forever/never), `require` through the script's directory, LuaPackagePath
//! and LuaPackageCPath (Debian's lua-cjson), and the `apache2` table.
mod common;
use common::*;

const V1: &str = "function handle(r) r:puts('version-1') end\n";
const V2: &str = "function handle(r) r:puts('version-2') end\n"; // same size as V1
const V3: &str = "function handle(r) r:puts('version-3') end\n";

fn fetch(c: &mut Client, path: &str) -> String {
    c.send("GET", path, &[], b"", false).text()
}

#[test]
fn code_cache_policies() {
    if !httpd_available() {
        return;
    }
    assert_eq!(V1.len(), V2.len());
    let s = Config::new()
        .log_level("info lua:debug")
        .directives(
            "LuaScope thread\n\
             <Directory {docroot}/forever>\n LuaCodeCache forever\n</Directory>\n\
             <Directory {docroot}/never>\n LuaCodeCache never\n</Directory>\n\
             <Directory {docroot}/never2>\n LuaCodeCache never\n</Directory>\n",
        )
        .file("htdocs/stat/v.lua", V1)
        .file("htdocs/forever/v.lua", V1)
        .file("htdocs/never/v.lua", V1)
        .file(
            "htdocs/never2/count.lua",
            "loads = (loads or 0) + 1\nfunction handle(r) r:puts(loads) end\n",
        )
        .start();
    let mut c = s.connect();
    for dir in ["stat", "forever", "never"] {
        assert_eq!(fetch(&mut c, &format!("/{dir}/v.lua")), "version-1");
    }
    // Rewrite in place with the same size: `stat` must notice it.
    std::thread::sleep(std::time::Duration::from_millis(20));
    for dir in ["stat", "forever", "never"] {
        s.write_doc(&format!("{dir}/v.lua"), V2);
    }
    assert_eq!(fetch(&mut c, "/stat/v.lua"), "version-2");
    assert_eq!(fetch(&mut c, "/never/v.lua"), "version-2");
    assert_eq!(
        fetch(&mut c, "/forever/v.lua"),
        "version-1",
        "forever must keep the first version"
    );
    s.write_doc("stat/v.lua", V3);
    assert_eq!(fetch(&mut c, "/stat/v.lua"), "version-3");
    // mod_lua's debug lines for a first read and a re-read (one connection: one child, and
    // its pool hands the same VM back to each request).
    let file = |dir: &str| format!("{}/{dir}/v.lua", s.docroot().display());
    let log = s.error_log();
    assert_logged(
        &log,
        &[
            &format!("AH01481: loading lua file {}", file("stat")),
            &format!("AH02332: (re)loading lua file {}", file("stat")),
            &format!("AH01481: loading lua file {}", file("forever")),
            &format!("AH02332: (re)loading lua file {}", file("never")),
        ],
    );
    assert!(
        !log.contains(&format!(
            "AH02332: (re)loading lua file {}",
            file("forever")
        )),
        "{log}"
    );
    // `never` reloads on every use: the top level runs again each time (globals persist in
    // the long-lived scope, as in mod_lua's reload-in-place).
    let a: u64 = fetch(&mut c, "/never2/count.lua").parse().unwrap();
    let b: u64 = fetch(&mut c, "/never2/count.lua").parse().unwrap();
    assert!(b > a, "{a} then {b}");
}

#[test]
fn require_modules() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("LuaPackagePath {root}/lib/?.lua\n<Directory {docroot}/other>\n LuaPackagePath {root}/lib2/?.lua\n</Directory>")
        .file("htdocs/sibling.lua", "return { greet = function() return 'from sibling' end }\n")
        .file("lib/shared.lua", "local M = {} function M.name() return 'shared lib' end return M\n")
        .file("lib2/extra.lua", "return 'extra lib'\n")
        .file(
            "htdocs/main.lua",
            "local sib = require 'sibling'\nlocal shared = require 'shared'\n\
             function handle(r) r:puts(sib.greet(), '|', shared.name()) end\n",
        )
        .file("htdocs/other/o.lua", "function handle(r) r:puts(require('extra'), '|', require('shared').name()) end\n")
        .file("htdocs/nomod.lua", "function handle(r) require 'does.not.exist' end\n")
        .file(
            "htdocs/nomodmsg.lua",
            "function handle(r) r:puts(select(2, pcall(require, 'nope'))) end\n",
        )
        .file(
            "htdocs/json.lua",
            "local cjson = require 'cjson'\n\
             function handle(r)\n r.content_type = 'application/json'\n\
             local t = cjson.decode('{\"a\":[1,2,3],\"b\":\"x\"}')\n r:puts(cjson.encode({ sum = t.a[1] + t.a[2] + t.a[3], b = t.b }))\nend\n",
        )
        .start();
    assert_eq!(s.get("/main.lua").text(), "from sibling|shared lib");
    assert_eq!(s.get("/other/o.lua").text(), "extra lib|shared lib");
    let r = s.get("/nomod.lua");
    assert_eq!(r.status, 500);
    assert!(s.error_log().contains("module 'does.not.exist' not found"));
    // Lua's own layout of the message, whatever the Lua: one "\n\t" before each line.
    let msg = s.get("/nomodmsg.lua").text();
    assert!(
        msg.starts_with(
            "module 'nope' not found:\n\tno field package.preload['nope']\n\tno file '"
        ) && !msg.contains("\n\t\n")
            && msg.contains("/htdocs/nope.lua'\n\tno file '"),
        "{msg}"
    );
    let r = s.get("/json.lua");
    if std::path::Path::new("/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so").exists()
        || std::env::var("CI").is_ok()
    {
        assert_eq!(r.status, 200, "require 'cjson' failed: {}", s.error_log());
        let body = r.text();
        assert!(
            body.contains("\"sum\":6") && body.contains("\"b\":\"x\""),
            "{body}"
        );
    }
    s.assert_no_crash();
}

/// `require`'s errors read as Lua's own `require` words and places them (a C function there):
/// a bad argument and a missing module at the script's line, a module that fails to load
/// without a position; a number is a name. Debian's mod_lua answers the same.
#[test]
fn require_errors_read_as_lua_own() {
    const HANDLER: &str = "local function plain(s, root)\n\
           local i, j = s:find(root, 1, true)\n\
           while i do s = s:sub(1, i - 1) .. 'ROOT' .. s:sub(j + 1) i, j = s:find(root, 1, true) end\n\
           return s\n\
         end\n\
         function handle(r)\n\
           package.path = r.document_root .. '/?.lua'\n\
           local function e(f)\n\
             local ok, err = pcall(f)\n\
             return (plain(tostring(err), r.document_root):match('^[^\\n]*\\n?[^\\n]*'))\n\
           end\n\
           r:puts(e(function()\n require(nil)\n end), ' | ')\n\
           r:puts(e(function()\n require('nope.x')\n end), ' | ')\n\
           r:puts(e(function()\n require('bad')\n end), ' | ')\n\
           r:puts(e(function()\n require(42)\n end), ' | ')\n\
           r:puts(select(2, pcall(require, 'nope')):match('^[^\\n]*'), ' | ', (require('good')))\n\
         end\n";
    let config = || {
        Config::new()
            .file("htdocs/r.lua", HANDLER)
            .file("htdocs/bad.lua", "x = = 1\n")
            .file("htdocs/good.lua", "return 'good'\n")
    };
    let Some((ours, theirs)) = on_both(config, |_, s| {
        let text = s.get("/r.lua").text();
        s.assert_no_crash();
        text
    }) else {
        return;
    };
    // (LuaJIT words syntax errors its own way.)
    if runs_puc_lua() {
        assert_eq!(ours, theirs);
    }
    for t in [&ours, &theirs] {
        assert!(
            t.starts_with(
                "ROOT/r.lua:13: bad argument #1 to 'require' (string expected, got nil) | \
                 ROOT/r.lua:16: module 'nope.x' not found:\n\tno field package.preload['nope.x'] | \
                 error loading module 'bad' from file 'ROOT/bad.lua':\n\tROOT/bad.lua:1: "
            ) && t.contains(" | ROOT/r.lua:22: module '42' not found:\n")
                && t.ends_with(" | module 'nope' not found: | good"),
            "{t}"
        );
    }
}

#[test]
fn apache2_table() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .file(
            "htdocs/k.lua",
            "local a = require 'apache2'\n\
             function handle(r)\n\
               r:puts(apache2.OK, ',', apache2.DECLINED, ',', apache2.DONE, ',', apache2.HTTP_MOVED_TEMPORARILY, ',',\n\
                 apache2.PROXYREQ_NONE, apache2.PROXYREQ_PROXY, apache2.PROXYREQ_REVERSE, apache2.PROXYREQ_RESPONSE, ',',\n\
                 apache2.AUTHZ_DENIED, apache2.AUTHZ_GRANTED, apache2.AUTHZ_NEUTRAL, apache2.AUTHZ_GENERAL_ERROR,\n\
                 apache2.AUTHZ_DENIED_NO_USER, ',', tostring(a == apache2), ',', a.OK, ',', apache2.version)\n\
             end\n",
        )
        .start();
    let t = s.get("/k.lua").text();
    assert!(
        t.starts_with("0,-1,-2,302,0123,01234,true,0,Apache/2.4"),
        "{t}"
    );
}
