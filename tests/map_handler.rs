//! LuaMapHandler: `$N` captures in file and function, DECLINED falling through, return value
//! rules, LuaRoot-relative files, and our refusal of captures that leave the directory.
mod common;
use common::*;

fn server() -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    Some(
        Config::new()
            .directives(
                "LuaRoot {root}/app\n\
                 LuaMapHandler ^/api/(\\w+)/(\\w+)$ handlers/$1.lua handle_$2\n\
                 LuaMapHandler ^/chain$ handlers/first.lua\n\
                 LuaMapHandler ^/chain$ handlers/second.lua\n\
                 LuaMapHandler ^/noret$ handlers/first.lua noret\n\
                 LuaMapHandler ^/broken$ handlers/broken.lua\n\
                 LuaMapHandler ^/missing$ handlers/missing.lua\n\
                 LuaMapHandler ^/nofunc$ handlers/first.lua nosuchfunction\n\
                 LuaMapHandler ^/files/(.+)$ {root}/app/handlers/$1\n\
                 LuaMapHandler ^/abs(.*)$ $1\n\
                 LuaMapHandler ^/status$ handlers/first.lua status\n\
                 LuaMapHandler ^/moved/(\\w+)$ handlers/users.lua handle_$1\n\
                 LuaHookInsertFilter {root}/app/move.lua move\n",
            )
            .file(
                "app/move.lua",
                "function move(r)\n\
                   local to = {['/moved/shw'] = '/moved/show', ['/moved/lst'] = '/moved/list'}\n\
                   r.uri = to[r.uri] or r.uri\n\
                   return apache2.OK\n\
                 end\n",
            )
            .file(
                "app/handlers/users.lua",
                "function handle_list(r) r.content_type = 'application/json' r:puts('[\"ann\",\"bob\"]') end\n\
                 function handle_show(r) r:puts('show ', r.uri) end\n",
            )
            .file(
                "app/handlers/first.lua",
                "function handle(r) return apache2.DECLINED end\n\
                 function noret(r) r:puts('no return value') end\n\
                 function status(r) return 410 end\n",
            )
            .file("app/handlers/second.lua", "function handle(r) r:puts('second') return apache2.OK end\n")
            .file("app/handlers/broken.lua", "function handle(r\n")
            .file("app/handlers/ok.lua", "function handle(r) r:puts('file capture ok') end\n")
            .file("secret.lua", "function handle(r) r:puts('outside') end\n")
            .start(),
    )
}

#[test]
fn routes_by_regex_captures() {
    let Some(s) = server() else { return };
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/api/users/list", 200, Some("[\"ann\",\"bob\"]")),
        ("/api/users/show?id=3", 200, Some("show /api/users/show")),
        ("/chain", 200, Some("second")),
        ("/noret", 200, Some("no return value")),
        ("/status", 410, None),
        ("/files/ok.lua", 200, Some("file capture ok")),
        ("/api/nosuch/list", 500, None),
        ("/broken", 500, None),
        ("/missing", 500, None),
        ("/nofunc", 500, None),
    ];
    for (path, status, body) in cases {
        let r = s.get(path);
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        if let Some(b) = body {
            assert_eq!(r.text(), *b, "{path}");
        }
    }
    let r = s.get("/api/users/list");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_logged(
        &s.error_log(),
        &[
            "AH02483: lua: Lua handler handle_list in ",
            "did not return a value, assuming apache2.OK",
            "AH02331: lua: Unable to find entry function 'nosuchfunction'",
        ],
    );
    // HEAD runs mapped handlers too.
    let r = s.request("HEAD", "/api/users/list", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    s.assert_no_crash();
}

/// The handler matches the URI it is given: when a hook changes it after the fixups phase
/// claimed the request for LuaMapHandler, the captures are the new URI's.
#[test]
fn a_uri_changed_after_fixups_is_matched_again() {
    let Some(s) = server() else { return };
    let r = s.get("/moved/shw");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "show /moved/show");
    let r = s.get("/moved/lst");
    assert_eq!(r.text(), "[\"ann\",\"bob\"]");
    s.assert_no_crash();
}

#[test]
fn captures_cannot_leave_the_directory() {
    let Some(s) = server() else { return };
    for path in [
        "/files/..%2f..%2fsecret.lua",
        "/files/a/..%2f..%2f..%2fsecret.lua",
    ] {
        let r = s.get(path);
        assert!(
            (400..500).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("outside"));
    }
    // An absolute path supplied through a capture that starts the file name.
    let r = s.get(&format!("/abs{}/secret.lua", s.root.display()));
    assert!(
        (400..500).contains(&r.status),
        "absolute capture: {} {}",
        r.status,
        r.text()
    );
    assert!(s.error_log().contains("outside its directory"));
}

#[test]
fn invalid_regex_fails_config_test() {
    if !httpd_available() {
        return;
    }
    let err =
        Server::config_test(&Config::new().directives("LuaMapHandler ^/(unclosed /tmp/x.lua"))
            .unwrap_err();
    assert!(err.contains("Invalid regex pattern!"), "{err}");
}

#[test]
fn map_handler_is_refused_in_directory_context() {
    if !httpd_available() {
        return;
    }
    let err = Server::config_test(
        &Config::new().directives("<Directory /tmp>\nLuaMapHandler ^/x$ /tmp/x.lua\n</Directory>"),
    )
    .unwrap_err();
    assert!(
        err.contains("cannot occur within <Directory> section"),
        "{err}"
    );
    // <Location> is fine.
    Server::config_test(
        &Config::new().directives("<Location /x>\nLuaMapHandler ^/x$ /tmp/x.lua\n</Location>"),
    )
    .unwrap();
}
