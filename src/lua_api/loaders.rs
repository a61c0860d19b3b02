//! `load`, `loadfile`, `dofile` (and LuaJIT's `loadstring`) called without an environment give
//! the chunk the calling script's globals instead of the real global table.
//!
//! In mod_lua a script's globals are its VM's, so `load("count = 1")()` sets the script's
//! `count`, which under the `once` scope is gone after the call. Here scripts run in
//! environments whose misses fall through to the real globals (see `vm/prelude.lua`), which
//! outlive every call and are every script's fallback: a chunk loaded with Lua's default
//! environment would set globals every later request and every other script sees. Each of
//! these finds the caller's environment (the nearest Lua function up the stack, past C
//! functions such as `pcall`) and hands it to Lua's own function as the environment argument;
//! every other call (an explicit environment, a caller without one, bad arguments) goes to
//! Lua's own function unchanged, whose errors read as from a direct call.

use crate::luac::{self, Kind, Returned, Stack, CALL_FIRST, DELEGATE, DELEGATE_AS_IS};
use mlua::{Function, Lua};

/// Hands the call to the original with the caller's environment as argument `env_at` when no
/// argument fills that place.
fn with_caller_env(st: &Stack<'_>, env_at: i32) -> Returned {
    if st.len() >= env_at {
        return Ok(DELEGATE);
    }
    st.pad_args(env_at - 1)?;
    Ok(if st.push_caller_env() {
        DELEGATE_AS_IS
    } else {
        DELEGATE
    })
}

/// load(chunk [, chunkname [, mode [, env]]])
fn load(st: &Stack<'_>) -> Returned {
    with_caller_env(st, 4)
}

/// loadfile([filename [, mode [, env]]])
fn loadfile(st: &Stack<'_>) -> Returned {
    with_caller_env(st, 3)
}

/// dofile([filename]): Lua's dofile takes no environment, so a file is loaded here (an error
/// loading it raised as Lua's dofile raises it, without a position) and run in the caller's
/// environment; standard input, bad arguments and callers without an environment of their
/// own go to the original.
fn dofile(st: &Stack<'_>) -> Returned {
    if st.kind(1) != Kind::String {
        return Ok(DELEGATE);
    }
    let Some(path) = st.cstr(1) else {
        return Ok(DELEGATE);
    };
    if !st.push_caller_env() {
        return Ok(DELEGATE);
    }
    match st.load_file_in_env(path) {
        Ok(()) => {
            // The chunk alone (dofile passes it no arguments) is what is called.
            st.keep_only_top();
            Ok(CALL_FIRST)
        }
        Err(message) => Err(String::from_utf8_lossy(&message).into_owned()),
    }
}

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    let replace = |name: &str, f: luac::RawFn| -> mlua::Result<()> {
        let Ok(original) = globals.raw_get::<Function>(name) else {
            return Ok(());
        };
        globals.raw_set(name, luac::delegating(lua, f, original, name)?)
    };
    replace("load", load)?;
    replace("loadfile", loadfile)?;
    replace("dofile", dofile)?;
    // LuaJIT's loadstring(s [, chunkname]) is its load; Lua 5.3/5.4 have none.
    if globals.raw_get::<Option<Function>>("loadstring")?.is_some() {
        replace("loadstring", load)?;
    }
    Ok(())
}
