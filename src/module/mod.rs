//! What httpd sees: the exported `lua_module`, its directive table, config constructors and
//! hook registration. Every function httpd calls is an `extern "C"` shim whose body is one
//! guarded call into safe code.
pub mod guard;

mod directives;

use crate::config::{DirConfig, ServerConfig};
use crate::ffi;
use crate::httpd::{Request, DECLINED, HTTP_INTERNAL_SERVER_ERROR};
use guard::guard;
use std::ffi::{c_char, c_int, c_void};
use std::ptr::null;

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut lua_module: ffi::module = ffi::module {
    version: ffi::MODULE_MAGIC_NUMBER_MAJOR,
    minor_version: ffi::MODULE_MAGIC_NUMBER_MINOR,
    module_index: -1,
    // What `<IfModule mod_lua.c>` matches; `<IfModule lua_module>` matches the symbol name.
    name: c"mod_lua.c".as_ptr(),
    dynamic_load_handle: std::ptr::null_mut(),
    next: std::ptr::null_mut(),
    magic: ffi::MODULE_MAGIC_COOKIE as std::ffi::c_ulong,
    rewrite_args: None,
    create_dir_config: Some(create_dir_config),
    merge_dir_config: Some(merge_dir_config),
    create_server_config: Some(create_server_config),
    merge_server_config: Some(merge_server_config),
    cmds: &raw const directives::COMMANDS as *const ffi::command_rec,
    register_hooks: Some(register_hooks),
    flags: 0,
};

unsafe extern "C" fn create_dir_config(p: *mut ffi::apr_pool_t, _dir: *mut c_char) -> *mut c_void {
    guard("create_dir_config", std::ptr::null_mut(), || {
        // SAFETY: httpd passes the live configuration pool.
        let pool = unsafe { crate::apr::Pool::from_raw(p) }.expect("pool");
        pool.attach(DirConfig::default()).cast()
    })
}

unsafe extern "C" fn merge_dir_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guard("merge_dir_config", std::ptr::null_mut(), || {
        // SAFETY: `base` and `add` are DirConfigs made by create/merge_dir_config; `p` is live.
        let (pool, base, add) = unsafe {
            (
                crate::apr::Pool::from_raw(p).expect("pool"),
                &*(base as *const DirConfig),
                &*(add as *const DirConfig),
            )
        };
        pool.attach(DirConfig::merge(base, add)).cast()
    })
}

unsafe extern "C" fn create_server_config(
    p: *mut ffi::apr_pool_t,
    _s: *mut ffi::server_rec,
) -> *mut c_void {
    guard("create_server_config", std::ptr::null_mut(), || {
        // SAFETY: httpd passes the live configuration pool.
        let pool = unsafe { crate::apr::Pool::from_raw(p) }.expect("pool");
        pool.attach(ServerConfig::default()).cast()
    })
}

unsafe extern "C" fn merge_server_config(
    p: *mut ffi::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    guard("merge_server_config", std::ptr::null_mut(), || {
        // SAFETY: both are ServerConfigs made by create_server_config; `p` is live.
        let (pool, base, add) = unsafe {
            (
                crate::apr::Pool::from_raw(p).expect("pool"),
                &*(base as *const ServerConfig),
                &*(add as *const ServerConfig),
            )
        };
        pool.attach(ServerConfig::merge(base, add)).cast()
    })
}

/// Wraps a request hook: one unsafe conversion, then guarded safe code.
macro_rules! request_hook {
    ($name:ident, $what:literal, $body:path) => {
        unsafe extern "C" fn $name(r: *mut ffi::request_rec) -> c_int {
            guard($what, HTTP_INTERNAL_SERVER_ERROR, || {
                // SAFETY: httpd passes the request being processed, owned by this thread.
                match unsafe { Request::from_raw(r) } {
                    Some(r) => $body(r),
                    None => DECLINED,
                }
            })
        }
    };
}

request_hook!(
    lua_handler,
    "lua-script handler",
    crate::handler::lua_script
);
request_hook!(
    lua_map_handler,
    "LuaMapHandler",
    crate::handler::map_handler
);
request_hook!(
    lua_map_handler_fixups,
    "LuaMapHandler fixups",
    crate::handler::map_handler_fixups
);

/// mod_lua's "early" slot: APR_HOOK_FIRST - 1.
const HOOK_EARLY: c_int = ffi::APR_HOOK_FIRST - 1;

unsafe extern "C" fn register_hooks(_p: *mut ffi::apr_pool_t) {
    guard("register_hooks", (), || {
        guard::install_panic_hook();
        // SAFETY: registering static functions with httpd's hook tables at load time.
        unsafe {
            ffi::ap_hook_handler(Some(lua_handler), null(), null(), ffi::APR_HOOK_MIDDLE);
            ffi::ap_hook_handler(Some(lua_map_handler), null(), null(), HOOK_EARLY);
            ffi::ap_hook_fixups(
                Some(lua_map_handler_fixups),
                null(),
                null(),
                ffi::APR_HOOK_LAST + 1 - 2,
            );
        }
    })
}
