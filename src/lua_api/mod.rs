//! What scripts see: the `apache2` table, the request object `r` and its tables.
pub mod args;
pub mod db;
pub mod encode;
mod fastlib;
pub mod form;
mod loaders;
pub mod request;
pub mod server;
pub mod websocket;

use mlua::{Lua, Table, Value};

/// mod_lua's `apache2` constants (K02–K14).
const CONSTANTS: &[(&str, i64)] = &[
    ("OK", 0),
    ("DECLINED", -1),
    ("DONE", -2),
    ("HTTP_MOVED_TEMPORARILY", 302),
    ("PROXYREQ_NONE", 0),
    ("PROXYREQ_PROXY", 1),
    ("PROXYREQ_REVERSE", 2),
    ("PROXYREQ_RESPONSE", 3),
    ("AUTHZ_DENIED", 0),
    ("AUTHZ_GRANTED", 1),
    ("AUTHZ_NEUTRAL", 2),
    ("AUTHZ_GENERAL_ERROR", 3),
    ("AUTHZ_DENIED_NO_USER", 4),
];

/// Defining this (`-D MOD_LUA_RS_TESTING`) gives scripts `apache2._test_panic(msg)`, which
/// panics inside the module: the test suite uses it to prove a Rust panic is contained.
const TEST_DEFINE: &std::ffi::CStr = c"MOD_LUA_RS_TESTING";

/// Installs the module's API into a new Lua state (the `VmSetup::install` of every VM).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    request::install(lua)?;
    fastlib::install(lua)?;
    loaders::install(lua)?;
    let apache2 = lua.create_table()?;
    apache2.set("version", crate::httpd::server_banner())?;
    for (k, v) in CONSTANTS {
        apache2.set(*k, *v)?;
    }
    if crate::httpd::config_defined(TEST_DEFINE) {
        apache2.set(
            "_test_panic",
            lua.create_function(|_, msg: String| -> mlua::Result<()> {
                panic!("test panic: {msg}")
            })?,
        )?;
    }
    // `require "apache2"` returns the same table as the global (mod_lua returns an empty one).
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("apache2", &apache2)?;
    lua.globals().set("apache2", apache2)?;
    Ok(())
}

/// Lua's `%.14g` formatting of a float as `tostring` prints it.
pub fn number_to_string(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Lua's string→integer coercion for return values and integer arguments (decimal or hex,
/// surrounding spaces allowed, integral floats accepted).
pub fn parse_number(s: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(s).ok()?.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(i);
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = i64::from_str_radix(h, 16).ok()?;
        return Some(if neg { -v } else { v });
    }
    let f: f64 = t.parse().ok()?;
    (f.fract() == 0.0 && f.is_finite()).then_some(f as i64)
}

/// What an entry function returned, read as mod_lua reads it (`lua_isnumber` then
/// `lua_tointeger`): numbers and numeric strings are numbers; anything else is not.
pub fn returned_number(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Number(f) => Some(if f.fract() == 0.0 && f.is_finite() {
            *f as i64
        } else {
            0
        }),
        Value::String(s) => parse_number(&s.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_lua() {
        assert_eq!(parse_number(b" 404 "), Some(404));
        assert_eq!(parse_number(b"0x10"), Some(16));
        assert_eq!(parse_number(b"2e2"), Some(200));
        assert_eq!(parse_number(b"1.5"), None);
        assert_eq!(parse_number(b"abc"), None);
        assert_eq!(returned_number(&Value::Number(302.0)), Some(302));
        assert_eq!(returned_number(&Value::Boolean(true)), None);
        assert_eq!(number_to_string(3.0), "3.0");
        assert_eq!(number_to_string(0.5), "0.5");
    }
}
