//! The shared object's layout: what runs in httpd's children on every request is linked
//! together in `.text.hot` (src/hot_text.ld, passed to the linker by build.rs), apart from
//! what only the configuration, errors and panics run; that keeps a third of the module's
//! code resident in each child instead of all of it (README, "Where the time goes", step 35).
mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn tool(cmd: &str, args: &[&str], so: &Path) -> String {
    let out = Command::new(cmd)
        .args(args)
        .arg(so)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start and end address of section `name`.
fn section(so: &Path, name: &str) -> Option<(u64, u64)> {
    tool("readelf", &["-SW"], so).lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let i = f.iter().position(|w| *w == name)?;
        let addr = u64::from_str_radix(f.get(i + 2)?, 16).ok()?;
        let size = u64::from_str_radix(f.get(i + 4)?, 16).ok()?;
        Some((addr, addr + size))
    })
}

/// Addresses of the functions whose demangled path is `path` (every instance; `nm -C` may or
/// may not keep the hash).
fn functions(symbols: &str, path: &str) -> Vec<u64> {
    let hashed = format!("{path}::h");
    symbols
        .lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, ' ');
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            let named = name == path || name.starts_with(&hashed);
            (matches!(kind, "t" | "T") && named).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .collect()
}

#[test]
fn the_request_path_is_linked_apart_from_configuration_and_errors() {
    if std::env::var("MOD_LUA_RS_NO_HOT_TEXT").as_deref() == Ok("1") {
        eprintln!("linked without src/hot_text.ld (MOD_LUA_RS_NO_HOT_TEXT=1): nothing to check");
        return;
    }
    let so = module_path();
    let (lo, hi) = section(&so, ".text.hot").expect("the module has a .text.hot section");
    let text = section(&so, ".text").expect("the module has a .text section");
    assert!(
        hi - lo < text.1 - text.0,
        "the hot code is the smaller part"
    );
    let symbols = tool("nm", &["-C"], &so);
    let hot = |path: &str| {
        let at = functions(&symbols, path);
        assert!(!at.is_empty(), "no function {path} in the module");
        at.iter().all(|a| (lo..hi).contains(a))
    };
    // Every request: the hook harness, the call into Lua, r's fields and r:puts.
    for path in [
        "mod_lua_rs::dispatch::call",
        "mod_lua_rs::luac::trampoline",
        "mod_lua_rs::lua_api::request::request_index",
        "mod_lua_rs::lua_api::request::puts",
    ] {
        assert!(hot(path), "{path} is outside .text.hot");
    }
    // Configuration only (the parent reads it before forking children), and panics.
    for path in [
        "mod_lua_rs::module::directives::lua_scope",
        "mod_lua_rs::module::directives::lua_hook_block",
        "mod_lua_rs::module::directives::lua_map_handler",
        "mod_lua_rs::module::guard::install_panic_hook::{{closure}}",
    ] {
        assert!(!hot(path), "{path} is in .text.hot");
    }
}
