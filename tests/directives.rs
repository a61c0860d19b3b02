//! Directive syntax and error texts at `apache2 -t`, and module identity (`IfModule`).
mod common;
use common::*;

#[test]
fn valid_configs_pass_config_test() {
    if !httpd_available() {
        return;
    }
    let ok = [
        "LuaScope once",
        "LuaScope request",
        "LuaScope conn",
        "LuaScope thread",
        "LuaScope server",
        "LuaScope server 2 8",
        "LuaCodeCache stat\nLuaCodeCache FOREVER\nLuaCodeCache never",
        "LuaInherit none\nLuaInherit Parent-First\nLuaInherit parent-last",
        "LuaRoot /tmp\nLuaPackagePath /tmp/?.lua\nLuaPackageCPath lib/?.so",
        "LuaMapHandler ^/x$ /tmp/x.lua\nLuaMapHandler ^/y/(\\d+)$ /tmp/y.lua handle_$1",
        "<Location /a>\nLuaScope thread\nLuaCodeCache never\nLuaMapHandler ^/a$ /tmp/a.lua\n</Location>",
        "<Directory /tmp>\nLuaScope conn\nLuaPackagePath /tmp/?.lua\n</Directory>",
        "LuaShowErrors On\nLuaShowErrors off",
    ];
    for conf in ok {
        if let Err(e) = Server::config_test(&Config::new().directives(conf)) {
            panic!("{conf:?} should pass apache2 -t:\n{e}");
        }
    }
}

#[test]
fn bad_arguments_fail_with_mod_lua_messages() {
    if !httpd_available() {
        return;
    }
    let cases: &[(&str, &str)] = &[
        (
            "LuaScope sometimes",
            "Invalid value for LuaScope, 'sometimes', acceptable values are: 'once', 'request', 'conn', 'thread', 'server'",
        ),
        ("LuaScope Thread", "Invalid value for LuaScope, 'Thread'"),
        (
            "LuaCodeCache sometimes",
            "LuaCodeCache type of 'sometimes' not recognized, valid options are 'never', 'stat', and 'forever'",
        ),
        (
            "LuaInherit everything",
            "LuaInherit type of 'everything' not recognized, valid options are 'none', 'parent-first', and 'parent-last'",
        ),
        ("LuaScope server 1 2 3", "LuaScope takes one, two or three arguments"),
        ("LuaRoot", "LuaRoot takes one argument"),
        ("LuaMapHandler ^/x$", "LuaMapHandler takes two or three arguments"),
        ("LuaMapHandler ^/(x$ /tmp/x.lua", "Invalid regex pattern!"),
        ("LuaScop once", "Invalid command 'LuaScop'"),
    ];
    for (conf, msg) in cases {
        match Server::config_test(&Config::new().directives(conf)) {
            Ok(out) => panic!("{conf:?} should fail apache2 -t, got: {out}"),
            Err(out) => assert!(out.contains(msg), "{conf:?}: expected {msg:?} in:\n{out}"),
        }
    }
}

#[test]
fn module_is_known_by_both_names() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives(
            "<IfModule mod_lua.c>\nAlias /by-file {docroot}/a.lua\n</IfModule>\n\
             <IfModule lua_module>\nAlias /by-id {docroot}/a.lua\n</IfModule>\n\
             <IfModule !mod_lua.c>\nAlias /by-file {docroot}/missing.lua\n</IfModule>",
        )
        .load("alias_module", "mod_alias.so")
        .file("htdocs/a.lua", "function handle(r) r:puts('matched') end")
        .start();
    assert_eq!(s.get("/by-file").text(), "matched");
    assert_eq!(s.get("/by-id").text(), "matched");
}

#[test]
fn module_exports_lua_module_symbol() {
    if !httpd_available() {
        return;
    }
    let so = module_path();
    let out = std::process::Command::new("nm")
        .arg("-D")
        .arg("--defined-only")
        .arg(&so)
        .output()
        .unwrap();
    let syms = String::from_utf8_lossy(&out.stdout);
    assert!(
        syms.lines().any(|l| l.ends_with(" lua_module")),
        "lua_module not exported"
    );
}
