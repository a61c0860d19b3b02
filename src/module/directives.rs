//! The directive table: mod_lua's names, argument shapes, override classes and help texts,
//! plus `LuaShowErrors` (ours). Handlers parse into the typed config of `crate::config`.

use super::guard::guard;
use crate::apr::opt_cstr;
use crate::config::{
    parse_codecache, parse_inherit, parse_scope, DirConfig, MapHandler, ServerConfig,
};
use crate::ffi::{self, cmd_func, cmd_parms, command_rec};
use crate::httpd::{CmdParms, Regex, NOT_IN_DIR_FILES_HTACCESS};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::null;
use std::sync::Arc;

/// The command table httpd reads; terminated by an all-NULL entry.
#[repr(transparent)]
pub struct Commands(pub [command_rec; 9]);

// SAFETY: the table is immutable static data (string literals and function pointers).
unsafe impl Sync for Commands {}

const fn cmd(
    name: &'static std::ffi::CStr,
    func: cmd_func,
    how: ffi::cmd_how,
    help: &'static std::ffi::CStr,
) -> command_rec {
    command_rec {
        name: name.as_ptr(),
        func,
        cmd_data: std::ptr::null_mut(),
        req_override: ffi::OR_ALL,
        args_how: how,
        errmsg: help.as_ptr(),
    }
}

pub static COMMANDS: Commands = Commands([
    cmd(
        c"LuaRoot",
        cmd_func { take1: Some(lua_root) },
        ffi::cmd_how_TAKE1,
        c"Specify the base path for resolving relative paths for mod_lua directives",
    ),
    cmd(
        c"LuaPackagePath",
        cmd_func { take1: Some(lua_package_path) },
        ffi::cmd_how_TAKE1,
        c"Add a directory to lua's package.path",
    ),
    cmd(
        c"LuaPackageCPath",
        cmd_func { take1: Some(lua_package_cpath) },
        ffi::cmd_how_TAKE1,
        c"Add a directory to lua's package.cpath",
    ),
    cmd(
        c"LuaScope",
        cmd_func { take3: Some(lua_scope) },
        ffi::cmd_how_TAKE123,
        c"One of once, request, conn, server -- default is once",
    ),
    cmd(
        c"LuaInherit",
        cmd_func { take1: Some(lua_inherit) },
        ffi::cmd_how_TAKE1,
        c"Controls how Lua scripts in parent contexts are merged with the current  context: none|parent-last|parent-first (default: parent-first) ",
    ),
    cmd(
        c"LuaCodeCache",
        cmd_func { take1: Some(lua_codecache) },
        ffi::cmd_how_TAKE1,
        c"Controls the behavior of the in-memory code cache  context: stat|forever|never (default: stat) ",
    ),
    cmd(
        c"LuaMapHandler",
        cmd_func { take3: Some(lua_map_handler) },
        ffi::cmd_how_TAKE23,
        c"Maps a path to a lua handler",
    ),
    cmd(
        c"LuaShowErrors",
        cmd_func { flag: Some(lua_show_errors) },
        ffi::cmd_how_FLAG,
        c"On: send Lua error messages to the client as mod_lua does (default Off: httpd's error page, details in the error log)",
    ),
    command_rec {
        name: null(),
        func: cmd_func { no_args: None },
        cmd_data: std::ptr::null_mut(),
        req_override: 0,
        args_how: 0,
        errmsg: null(),
    },
]);

/// A directive argument as text (NULL for an absent optional argument).
fn arg(p: *const c_char) -> Option<String> {
    // SAFETY: httpd passes NULL or a NUL-terminated argument string.
    unsafe { opt_cstr(p) }.map(|s| s.to_string_lossy().into_owned())
}

/// Runs a directive handler: converts the raw arguments once, reports `Err` as the
/// configuration error text, and never lets a panic reach httpd.
fn directive(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    f: impl FnOnce(CmdParms<'_>, &mut DirConfig) -> Result<(), String>,
) -> *const c_char {
    guard(
        "directive",
        c"mod_lua_rs: internal error while reading this directive".as_ptr(),
        || {
            // SAFETY: httpd passes the directive's cmd_parms and this module's per-directory
            // config for the section being read (a DirConfig made by create_dir_config).
            let (cmd, cfg) = unsafe {
                (
                    CmdParms::from_raw(parms).expect("cmd_parms"),
                    &mut *(mconfig as *mut DirConfig),
                )
            };
            match f(cmd, cfg) {
                Ok(()) => null(),
                Err(msg) => cmd.pool().strdup(msg.as_bytes()),
            }
        },
    )
}

/// The LuaRoot in effect where a directive is read (the section's own, else the server's).
fn root_here(cmd: CmdParms<'_>, cfg: &DirConfig) -> Option<String> {
    cfg.root.as_deref().map(str::to_string).or_else(|| {
        cmd.server_config_mut::<ServerConfig>()
            .and_then(|s| s.root.clone())
    })
}

unsafe extern "C" fn lua_root(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        let root = arg(a).unwrap_or_default();
        cfg.root = Some(Arc::from(root.as_str()));
        if !cmd.in_section() {
            if let Some(s) = cmd.server_config_mut::<ServerConfig>() {
                s.root = Some(root);
            }
        }
        Ok(())
    })
}

fn package_dir(cmd: CmdParms<'_>, cfg: &DirConfig, a: *const c_char) -> Result<String, String> {
    let dir = arg(a).unwrap_or_default();
    cmd.merge_path(root_here(cmd, cfg).as_deref(), &dir)
        .ok_or_else(|| format!("Unable to build full path to file, {dir}"))
}

unsafe extern "C" fn lua_package_path(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        let p = package_dir(cmd, cfg, a)?;
        Arc::make_mut(&mut cfg.package_paths).push(p);
        Ok(())
    })
}

unsafe extern "C" fn lua_package_cpath(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        let p = package_dir(cmd, cfg, a)?;
        Arc::make_mut(&mut cfg.package_cpaths).push(p);
        Ok(())
    })
}

unsafe extern "C" fn lua_scope(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
    b: *const c_char,
    c: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |_, cfg| {
        let (scope, min, max) = (arg(a).unwrap_or_default(), arg(b), arg(c));
        cfg.scope = Some(parse_scope(&scope, min.as_deref(), max.as_deref())?);
        Ok(())
    })
}

unsafe extern "C" fn lua_inherit(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |_, cfg| {
        cfg.inherit = Some(parse_inherit(&arg(a).unwrap_or_default())?);
        Ok(())
    })
}

unsafe extern "C" fn lua_codecache(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |_, cfg| {
        cfg.codecache = Some(parse_codecache(&arg(a).unwrap_or_default())?);
        Ok(())
    })
}

unsafe extern "C" fn lua_map_handler(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    pattern: *const c_char,
    file: *const c_char,
    function: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        cmd.check_context(NOT_IN_DIR_FILES_HTACCESS)?;
        let pattern = arg(pattern).unwrap_or_default();
        let re_src =
            CString::new(pattern.clone()).map_err(|_| "Invalid regex pattern!".to_string())?;
        let regex = Regex::compile(cmd.pool(), &re_src)
            .ok_or_else(|| "Invalid regex pattern!".to_string())?;
        Arc::make_mut(&mut cfg.map_handlers).push(Arc::new(MapHandler {
            pattern,
            regex,
            file: arg(file).unwrap_or_default(),
            function: arg(function).unwrap_or_else(|| "handle".to_string()),
        }));
        Ok(())
    })
}

unsafe extern "C" fn lua_show_errors(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    on: c_int,
) -> *const c_char {
    directive(parms, mconfig, |_, cfg| {
        cfg.show_errors = Some(on != 0);
        Ok(())
    })
}
