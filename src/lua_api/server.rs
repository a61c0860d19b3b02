//! The rest of mod_lua's `r` API (§5a leftovers, §5d files, §5e utilities, §5f server and
//! process information, §5g ivm): colon methods check `self`; mod_lua's dot functions
//! (strcmp_match, date_parse_rfc, usleep, mpm_query, state_query, exists_config_define,
//! module_info) take their arguments directly; clock, loaded_modules and server_info work both
//! ways.
#![forbid(unsafe_code)]

use super::args::Args;
use super::request::{c_arg, method, push_cstr, raw_request, Methods};
use crate::httpd::{self, ConfNode, OwnedRegex, ScoreValue};
use crate::luac::{self, Kind, Number, RawFn, Returned, Stack};
use mlua::{IntoLuaMulti, Lua, MultiValue, Table, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// mod_lua's limit on capture groups for r:regex.
const MAX_GROUPS: usize = 25;
/// Compiled patterns kept per VM.
const REGEX_CACHE_MAX: usize = 256;

/// A VM's compiled r:regex patterns, by flags and pattern (the upvalue of its `regex`).
#[derive(Default)]
pub struct RegexCache(RefCell<HashMap<i32, HashMap<Vec<u8>, OwnedRegex>>>);

/// A function that takes its arguments without `self` (mod_lua's dot-call functions).
fn function<F, R>(m: &Methods, name: &'static str, f: F) -> mlua::Result<()>
where
    F: Fn(&Lua, &Args<'_>) -> mlua::Result<R> + 'static,
    R: IntoLuaMulti,
{
    m.api(name, move |lua, args| f(lua, &Args::new(lua, name, args)));
    Ok(())
}

/// Per-process values shared by every VM of a child (mod_lua's ivm_get / ivm_set).
#[derive(Clone)]
enum IvmValue {
    /// Every number, as a float: mod_lua keeps a C double (`ivm_set(k, 5)` reads back 5.0).
    Number(f64),
    Str(Vec<u8>),
    Bool(bool),
}

static IVM: Mutex<Option<HashMap<Vec<u8>, IvmValue>>> = Mutex::new(None);

pub(super) fn install(m: &Methods) -> mlua::Result<()> {
    // §5a leftovers: raw functions (below).

    // §5d Files.
    method(m, "get_direntries", |lua, r, a| {
        let path = c_arg(lua, "path", a.strict_string(2)?)?;
        match httpd::dir_entries(r.pool(), &path) {
            Some(names) => {
                let t = lua.create_table_with_capacity(names.len(), 0)?;
                for n in names {
                    t.raw_push(lua.create_string(n)?)?;
                }
                t.into_lua_multi(lua)
            }
            None => Ok(MultiValue::new()),
        }
    })?;
    for (name, recursive) in [("mkdir", false), ("mkrdir", true)] {
        method(m, name, move |lua, r, a| {
            let path = c_arg(lua, "path", a.strict_string(2)?)?;
            let perms = a.opt_integer(3, crate::ffi::APR_OS_DEFAULT as i64)? as i32;
            Ok(httpd::mkdir(r.pool(), &path, perms, recursive))
        })?;
    }
    method(m, "rmdir", |lua, r, a| {
        Ok(httpd::rmdir(
            r.pool(),
            &c_arg(lua, "path", a.strict_string(2)?)?,
        ))
    })?;
    method(m, "touch", |lua, r, a| {
        let path = c_arg(lua, "path", a.strict_string(2)?)?;
        let mtime = match a.get(3) {
            Value::Nil => httpd::now_us(),
            Value::Number(f) => *f as i64,
            _ => a.integer(3)?,
        };
        Ok(httpd::touch(r.pool(), &path, mtime))
    })?;
    // §5e Utilities and §5f server information: regex, strcmp_match, clock, date_parse_rfc,
    // usleep, mpm_query, state_query and exists_config_define are raw functions (below).
    function(m, "loaded_modules", |lua, _| {
        let t = lua.create_table()?;
        for n in httpd::loaded_modules() {
            t.raw_push(n)?;
        }
        Ok(t)
    })?;
    function(m, "module_info", |lua, a| {
        let name = c_arg(lua, "module", a.strict_string(1)?)?;
        match httpd::module_commands(&name) {
            Some(cmds) if !cmds.is_empty() => {
                let commands = lua.create_table()?;
                for (k, v) in cmds {
                    commands.raw_set(k, v)?;
                }
                let t = lua.create_table()?;
                t.raw_set("commands", commands)?;
                t.into_lua_multi(lua)
            }
            _ => Ok(MultiValue::new()),
        }
    })?;
    function(m, "server_info", |lua, _| {
        let [exe, root, sb, mpm] = httpd::server_info();
        let t = lua.create_table()?;
        t.raw_set("server_executable", exe)?;
        t.raw_set("server_root", root)?;
        t.raw_set("scoreboard_fname", sb)?;
        t.raw_set("server_mpm", mpm)?;
        Ok(t)
    })?;
    method(
        m,
        "scoreboard_process",
        |lua, _, a| match httpd::scoreboard_process(a.strict_integer(2)?) {
            Some(fields) => {
                let t = lua.create_table()?;
                for (k, v) in fields {
                    t.raw_set(k, v)?;
                }
                t.into_lua_multi(lua)
            }
            None => Ok(MultiValue::new()),
        },
    )?;
    method(
        m,
        "scoreboard_worker",
        |lua, _, a| match httpd::scoreboard_worker(a.strict_integer(2)?, a.strict_integer(3)?) {
            Some(fields) => {
                let t = lua.create_table()?;
                for (k, v) in fields {
                    match v {
                        ScoreValue::Int(n) => t.raw_set(k, n)?,
                        ScoreValue::Number(n) => t.raw_set(k, n)?,
                        ScoreValue::Text(s) => t.raw_set(k, s)?,
                    }
                }
                t.into_lua_multi(lua)
            }
            None => Ok(MultiValue::new()),
        },
    )?;
    method(m, "config", |lua, _, _| {
        conf_table(lua, &httpd::config_tree())?.into_lua_multi(lua)
    })?;
    method(m, "activeconfig", |lua, r, _| match r.active_config() {
        Some(nodes) => conf_table(lua, &nodes)?.into_lua_multi(lua),
        None => Ok(MultiValue::new()),
    })?;
    Ok(())
}

/// mod_lua's shape of a config tree: an array of `{directive, file, line[, children]}`.
fn conf_table(lua: &Lua, nodes: &[ConfNode]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(nodes.len(), 0)?;
    for (i, n) in nodes.iter().enumerate() {
        let e = lua.create_table_with_capacity(0, 4)?;
        e.raw_set("directive", n.directive.as_str())?;
        e.raw_set("file", n.file.as_str())?;
        e.raw_set("line", n.line)?;
        if !n.children.is_empty() {
            e.raw_set("children", conf_table(lua, &n.children)?)?;
        }
        t.raw_set(i + 1, e)?;
    }
    Ok(t)
}

/// The methods of this part of the API written over the Lua stack (called on many requests).
pub(super) fn install_raw(m: &Methods) {
    // Each VM's r:regex has its own cache of compiled patterns.
    m.add("regex", |lua| {
        luac::define::<RegexCache>(lua, &[])?;
        luac::closure(lua, regex, luac::new_userdata(lua, RegexCache::default())?)
    });
    let plain: &[(&'static str, RawFn)] = &[
        ("strcmp_match", strcmp_match),
        ("clock", clock),
        ("stat", stat),
        ("ivm_get", ivm_get),
        ("ivm_set", ivm_set),
        ("send_interim_response", send_interim_response),
        ("custom_response", custom_response),
        ("set_keepalive", set_keepalive),
        ("runtime_dir_relative", runtime_dir_relative),
        ("ssl_var_lookup", ssl_var_lookup),
        ("date_parse_rfc", date_parse_rfc),
        ("usleep", usleep),
        ("mpm_query", mpm_query),
        ("state_query", state_query),
        ("exists_config_define", exists_config_define),
    ];
    for &(name, f) in plain {
        m.raw(name, f);
    }
}

/// `r:regex(subject, pattern [, flags])` → the match (whole at 0, groups from 1), false, or
/// false and the compiler's message.
fn regex(s: &Stack<'_>) -> Returned {
    raw_request(s, "regex")?;
    let subject = s.strict_cstr_arg(2, "regex", "subject")?;
    let pattern = s.strict_string_arg(3, "regex")?;
    let flags = s.opt_integer_arg(4, "regex", 0)? as i32;
    let cache = s.upvalue::<RegexCache>().ok_or("r:regex has no cache")?;
    let groups = {
        let mut cache = cache.0.try_borrow_mut().map_err(|_| "r:regex re-entered")?;
        if !cache.get(&flags).is_some_and(|m| m.contains_key(pattern)) {
            let re = match OwnedRegex::compile(s.strict_cstr_arg(3, "regex", "pattern")?, flags) {
                Ok(re) => re,
                Err(e) => return failed(s, &e),
            };
            if cache.values().map(HashMap::len).sum::<usize>() >= REGEX_CACHE_MAX {
                cache.clear();
            }
            cache.entry(flags).or_default().insert(pattern.to_vec(), re);
        }
        let re = &cache[&flags][pattern];
        if re.groups() > MAX_GROUPS {
            let msg = format!(
                "regcomp found {} matches; only {MAX_GROUPS} allowed.",
                re.groups()
            );
            return failed(s, &msg);
        }
        re.captures(subject)
    };
    match groups {
        None => s.push_bool(false),
        Some(groups) => s.push_sequence(0, groups.into_iter())?,
    }
    Ok(1)
}

/// `r:stat(path [, wanted])` → the fields `wanted` asks for, as mod_lua: mtime, atime, ctime
/// and size as floats, filetype and protection as integers; nothing when the file cannot be
/// stat'ed.
fn stat(s: &Stack<'_>) -> Returned {
    use crate::ffi::{
        APR_FINFO_ATIME, APR_FINFO_CTIME, APR_FINFO_MIN, APR_FINFO_MTIME, APR_FINFO_PROT,
        APR_FINFO_SIZE, APR_FINFO_TYPE,
    };
    let (_, r) = raw_request(s, "stat")?;
    let path = s.strict_cstr_arg(2, "stat", "path")?;
    let wanted = s.opt_integer_arg(3, "stat", APR_FINFO_MIN as i64)? as i32;
    let Some(st) = httpd::stat(r.pool(), path, wanted) else {
        return Ok(0);
    };
    // A field when it was asked for (as mod_lua decides) and apr_stat filled it in.
    let has = |bit: i32| wanted & bit == bit && st.valid & bit == bit;
    let mut fields = Vec::with_capacity(6);
    for (bit, name, value) in [
        (APR_FINFO_MTIME, c"mtime", st.mtime),
        (APR_FINFO_ATIME, c"atime", st.atime),
        (APR_FINFO_CTIME, c"ctime", st.ctime),
        (APR_FINFO_SIZE, c"size", st.size),
    ] {
        if has(bit) {
            fields.push((name, Number::Float(value as f64)));
        }
    }
    if has(APR_FINFO_TYPE) {
        fields.push((c"filetype", Number::Int(st.filetype.into())));
    }
    if wanted & APR_FINFO_PROT != 0 && st.valid & APR_FINFO_PROT != 0 {
        fields.push((c"protection", Number::Int(st.protection.into())));
    }
    s.push_record(&fields)?;
    Ok(1)
}

/// false and a message.
fn failed(s: &Stack<'_>, message: &str) -> Returned {
    s.push_bool(false);
    s.push_bytes(message.as_bytes());
    Ok(2)
}

/// `r.strcmp_match(string, pattern [, ignore_case])` (a dot function, as in mod_lua).
fn strcmp_match(s: &Stack<'_>) -> Returned {
    let string = s.strict_cstr_arg(1, "strcmp_match", "string")?;
    let pattern = s.strict_cstr_arg(2, "strcmp_match", "pattern")?;
    s.push_bool(httpd::strcmp_match(string, pattern, s.boolean_flag(3)));
    Ok(1)
}

/// `r:send_interim_response([send_headers])`: the flag counts only as a boolean, as in mod_lua.
fn send_interim_response(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "send_interim_response")?;
    r.send_interim_response(s.boolean_flag(2));
    Ok(0)
}

/// `r:custom_response(status, text)`: a number (read as lua_tointeger reads it) and a string,
/// both checked by type as mod_lua checks them.
fn custom_response(s: &Stack<'_>) -> Returned {
    const NAME: &str = "custom_response";
    let (_, r) = raw_request(s, NAME)?;
    let status = s.strict_integer_arg(2, NAME)? as i32;
    let text = s.strict_cstr_arg(3, NAME, "response")?;
    r.custom_response(status, text);
    Ok(0)
}

fn set_keepalive(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "set_keepalive")?;
    s.push_bool(r.set_keepalive());
    Ok(1)
}

/// `r:runtime_dir_relative([file])`: `file` defaults to "." (luaL_optstring).
fn runtime_dir_relative(s: &Stack<'_>) -> Returned {
    const NAME: &str = "runtime_dir_relative";
    let (_, r) = raw_request(s, NAME)?;
    let file = match s.kind(2) {
        Kind::None | Kind::Nil => c".",
        _ => s.cstr_arg(2, NAME, "file")?,
    };
    push_cstr(s, r.runtime_dir_relative(file));
    Ok(1)
}

fn ssl_var_lookup(s: &Stack<'_>) -> Returned {
    const NAME: &str = "ssl_var_lookup";
    let (_, r) = raw_request(s, NAME)?;
    push_cstr(s, r.ssl_var_lookup(s.cstr_arg(2, NAME, "variable")?));
    Ok(1)
}

/// `r.date_parse_rfc(date)` → seconds since the epoch (a float, as mod_lua pushes it), or
/// nothing for a date it does not understand.
fn date_parse_rfc(s: &Stack<'_>) -> Returned {
    match httpd::parse_rfc_date(s.strict_cstr_arg(1, "date_parse_rfc", "date")?) {
        Some(t) => {
            s.push_number(t as f64);
            Ok(1)
        }
        None => Ok(0),
    }
}

/// `r.usleep(microseconds)`: a number (strings refused), fractions dropped, as mod_lua.
fn usleep(s: &Stack<'_>) -> Returned {
    let us = match s.number(1) {
        Some(Number::Int(i)) => i,
        Some(Number::Float(f)) => f as i64,
        None => return Err(s.type_error(1, "usleep", "number")),
    };
    httpd::sleep_us(us);
    Ok(0)
}

/// `r.mpm_query(code)`: mod_lua reads the code with lua_tointeger and no check (anything
/// that is not an integer queries code 0).
fn mpm_query(s: &Stack<'_>) -> Returned {
    let code = match s.kind(1) {
        Kind::Number | Kind::String => s.integer(1).unwrap_or(0),
        _ => 0,
    };
    s.push_int(httpd::mpm_query(code as i32) as i64);
    Ok(1)
}

fn state_query(s: &Stack<'_>) -> Returned {
    let code = s.strict_integer_arg(1, "state_query")?;
    s.push_int(httpd::state_query(code as i32) as i64);
    Ok(1)
}

fn exists_config_define(s: &Stack<'_>) -> Returned {
    let name = s.strict_cstr_arg(1, "exists_config_define", "name")?;
    s.push_bool(httpd::config_defined(name));
    Ok(1)
}

/// `r:clock()`: microseconds, as a float as mod_lua pushes it (`r:clock() - t0` prints
/// "250.0" there too).
fn clock(s: &Stack<'_>) -> Returned {
    s.push_number(httpd::now_us() as f64);
    Ok(1)
}

/// `r:ivm_get(key)`: a missing key gives nothing (not a nil), as mod_lua.
fn ivm_get(s: &Stack<'_>) -> Returned {
    raw_request(s, "ivm_get")?;
    let key = s.string_arg(2, "ivm_get")?;
    let v = IVM
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(key).cloned());
    match v {
        None => return Ok(0),
        Some(IvmValue::Number(n)) => s.push_number(n),
        Some(IvmValue::Bool(b)) => s.push_bool(b),
        Some(IvmValue::Str(v)) => s.push_bytes(&v),
    }
    Ok(1)
}

/// `r:ivm_set(key, value)`: nil removes the key.
fn ivm_set(s: &Stack<'_>) -> Returned {
    raw_request(s, "ivm_set")?;
    let key = s.string_arg(2, "ivm_set")?;
    let value = match s.kind(3) {
        Kind::None => return Err(s.arg_error(3, "ivm_set", "value expected")),
        Kind::Nil => None,
        Kind::Number => Some(IvmValue::Number(match s.number(3) {
            Some(Number::Int(i)) => i as f64,
            Some(Number::Float(f)) => f,
            None => 0.0,
        })),
        Kind::Boolean => Some(IvmValue::Bool(s.truthy(3))),
        Kind::String => Some(IvmValue::Str(s.str(3).unwrap_or_default().to_vec())),
        other => {
            return Err(s.arg_error(
                3,
                "ivm_set",
                &format!(
                    "number, string, boolean or nil expected, got {}",
                    other.name()
                ),
            ))
        }
    };
    let mut ivm = IVM.lock().unwrap_or_else(PoisonError::into_inner);
    let map = ivm.get_or_insert_with(HashMap::new);
    match value {
        Some(v) => {
            map.insert(key.to_vec(), v);
        }
        None => {
            map.remove(key);
        }
    }
    Ok(0)
}
