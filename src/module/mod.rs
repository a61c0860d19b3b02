//! What httpd sees: the exported `lua_module`, its directive table, config constructors and
//! hook registration. Every function httpd calls is an `extern "C"` shim whose body is one
//! guarded call into safe code.
pub mod guard;

mod directives;

use crate::config::{DirConfig, Phase, ServerConfig, Slot};
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
        match DirConfig::merge_is_input(base, add) {
            // Merged configs are read-only: an input may stand for the result.
            Some(same) => (same as *const DirConfig).cast_mut().cast(),
            None => {
                // SAFETY: httpd merges into the pool of the request (or configuration) being
                // served, and the records merged from live at least as long.
                let p = unsafe { crate::apr::MergeInputsOutlive::promise() };
                pool.attach(DirConfig::merge(base, add, &p)).cast()
            }
        }
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
        request_hook!($name, $what, $body, true);
    };
    // `$wanted`: a cheap test that the configuration may need the hook at all.
    ($name:ident, $what:literal, $body:path, $wanted:expr) => {
        unsafe extern "C" fn $name(r: *mut ffi::request_rec) -> c_int {
            if !$wanted {
                return DECLINED;
            }
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
    crate::handler::map_handler,
    crate::config::may_have_map_handlers()
);
request_hook!(
    lua_map_handler_fixups,
    "LuaMapHandler fixups",
    crate::handler::map_handler_fixups,
    crate::config::may_have_map_handlers()
);

/// What every phase harness does: nothing unless some configuration has Lua hooks for
/// `phase` in `slot` (one atomic load); else, when `runs`, the hooks under the guard.
///
/// # Safety
/// `r` is the request httpd passed to the harness, owned by this thread.
#[inline(always)]
unsafe fn run_phase(
    r: *mut ffi::request_rec,
    phase: Phase,
    slot: Slot,
    what: &'static str,
    runs: bool,
) -> c_int {
    if !crate::config::may_have_hooks(phase, slot) {
        return DECLINED;
    }
    guard(what, HTTP_INTERNAL_SERVER_ERROR, || {
        // SAFETY: the caller's promise.
        match unsafe { Request::from_raw(r) } {
            Some(r) if runs => crate::hooks::run(r, phase, slot),
            _ => DECLINED,
        }
    })
}

/// One harness per phase and slot (mod_lua's `lua_*_harness` functions).
macro_rules! phase_hook {
    ($name:ident, $phase:ident, $slot:ident) => {
        unsafe extern "C" fn $name(r: *mut ffi::request_rec) -> c_int {
            // SAFETY: httpd passes the request being processed, owned by this thread.
            unsafe {
                run_phase(
                    r,
                    Phase::$phase,
                    Slot::$slot,
                    concat!("Lua hook ", stringify!($name)),
                    true,
                )
            }
        }
    };
}

phase_hook!(pre_translate_name_early, PreTranslateName, Early);
phase_hook!(pre_translate_name, PreTranslateName, Middle);
phase_hook!(pre_translate_name_late, PreTranslateName, Late);
phase_hook!(translate_name_early, TranslateName, Early);
phase_hook!(translate_name, TranslateName, Middle);
phase_hook!(translate_name_late, TranslateName, Late);
phase_hook!(map_to_storage_early, MapToStorage, Early);
phase_hook!(map_to_storage, MapToStorage, Middle);
phase_hook!(map_to_storage_late, MapToStorage, Late);
phase_hook!(check_user_id_early, CheckUserId, Early);
phase_hook!(check_user_id, CheckUserId, Middle);
phase_hook!(access_checker_early, AccessChecker, Early);
phase_hook!(access_checker, AccessChecker, Middle);
phase_hook!(access_checker_late, AccessChecker, Late);
phase_hook!(auth_checker_early, AuthChecker, Early);
phase_hook!(auth_checker, AuthChecker, Middle);
phase_hook!(auth_checker_late, AuthChecker, Late);
phase_hook!(type_checker_early, TypeChecker, Early);
phase_hook!(type_checker, TypeChecker, Middle);
phase_hook!(type_checker_late, TypeChecker, Late);
phase_hook!(fixups_early, Fixups, Early);
phase_hook!(fixups, Fixups, Middle);
phase_hook!(fixups_late, Fixups, Late);
phase_hook!(log_transaction, Log, Middle);

/// The quick handler harnesses (H01: never for lookup subrequests).
macro_rules! quick_hook {
    ($name:ident, $slot:ident) => {
        unsafe extern "C" fn $name(r: *mut ffi::request_rec, lookup: c_int) -> c_int {
            // SAFETY: httpd passes the request being processed, owned by this thread.
            unsafe {
                run_phase(
                    r,
                    Phase::Quick,
                    Slot::$slot,
                    concat!("Lua quick handler ", stringify!($name)),
                    lookup == 0,
                )
            }
        }
    };
}

quick_hook!(quick_handler_early, Early);
quick_hook!(quick_handler, Middle);
quick_hook!(quick_handler_late, Late);

/// LuaHookInsertFilter (mod_lua never implemented it): the functions may add filters with
/// r:add_output_filter / r:add_input_filter; their return values do not matter.
unsafe extern "C" fn insert_filter(r: *mut ffi::request_rec) {
    if !crate::config::may_have_hooks(Phase::InsertFilter, Slot::Middle) {
        return;
    }
    guard("Lua insert_filter hook", (), || {
        // SAFETY: httpd passes the request being processed, owned by this thread.
        if let Some(r) = unsafe { Request::from_raw(r) } {
            crate::hooks::run(r, Phase::InsertFilter, Slot::Middle);
        }
    })
}

unsafe extern "C" fn output_filter(
    f: *mut ffi::ap_filter_t,
    bb: *mut ffi::apr_bucket_brigade,
) -> ffi::apr_status_t {
    guard("Lua output filter", 20014, || {
        // SAFETY: httpd passes this filter and the brigade it is to process.
        match unsafe {
            (
                crate::httpd::Filter::from_raw(f),
                crate::httpd::Brigade::from_raw(bb),
            )
        } {
            (Some(f), Some(bb)) => crate::filter::output(f, bb),
            _ => 20014,
        }
    })
}

unsafe extern "C" fn input_filter(
    f: *mut ffi::ap_filter_t,
    bb: *mut ffi::apr_bucket_brigade,
    mode: ffi::ap_input_mode_t,
    block: ffi::apr_read_type_e,
    readbytes: ffi::apr_off_t,
) -> ffi::apr_status_t {
    guard("Lua input filter", 20014, || {
        // SAFETY: httpd passes this filter and the brigade to fill.
        match unsafe {
            (
                crate::httpd::Filter::from_raw(f),
                crate::httpd::Brigade::from_raw(bb),
            )
        } {
            (Some(f), Some(bb)) => crate::filter::input(f, bb, mode, block, readbytes),
            _ => 20014,
        }
    })
}

/// Registers a Lua filter name with httpd (at configuration time).
pub(crate) fn register_filter(
    cmd: crate::httpd::CmdParms<'_>,
    name: &str,
    kind: crate::config::FilterKind,
) {
    let name = cmd.pool().strdup(name.as_bytes());
    // SAFETY: the name lives in the configuration pool, the functions are static.
    unsafe {
        match kind {
            crate::config::FilterKind::Output => {
                ffi::ap_register_output_filter_protocol(
                    name,
                    Some(output_filter),
                    None,
                    ffi::ap_filter_type_AP_FTYPE_RESOURCE,
                    (ffi::AP_FILTER_PROTO_CHANGE | ffi::AP_FILTER_PROTO_CHANGE_LENGTH)
                        as std::ffi::c_uint,
                );
            }
            crate::config::FilterKind::Input => {
                ffi::ap_register_input_filter(
                    name,
                    Some(input_filter),
                    None,
                    ffi::ap_filter_type_AP_FTYPE_RESOURCE,
                );
            }
        }
    }
}

/// The authz provider callbacks shared by every LuaAuthzProvider name.
static AUTHZ_PROVIDER: ffi::authz_provider = ffi::authz_provider {
    check_authorization: Some(authz_check),
    parse_require_line: Some(authz_parse),
};

pub(crate) fn register_authz_provider(cmd: crate::httpd::CmdParms<'_>, name: &str) {
    let name = cmd.pool().strdup(name.as_bytes());
    // SAFETY: registers a static provider struct under a pool-allocated name; httpd keeps the
    // registration for the configuration pool's lifetime.
    unsafe {
        ffi::ap_register_auth_provider(
            cmd.pool().as_ptr(),
            c"authz".as_ptr(),
            name,
            c"0".as_ptr(),
            (&raw const AUTHZ_PROVIDER).cast(),
            ffi::AP_AUTH_INTERNAL_PER_CONF as c_int,
        );
    }
}

/// Parses one `Require <lua provider> args…` line (config time, once per line).
unsafe extern "C" fn authz_parse(
    cmd: *mut ffi::cmd_parms,
    require_line: *const c_char,
    parsed: *mut *const c_void,
) -> *const c_char {
    guard(
        "authz provider parse",
        c"mod_lua_rs: internal error parsing Require".as_ptr(),
        || {
            // SAFETY: httpd passes the running directive's cmd_parms, the line and an out pointer.
            let (cmd, line) = unsafe {
                (
                    crate::httpd::CmdParms::from_raw(cmd).expect("cmd"),
                    crate::apr::opt_cstr(require_line),
                )
            };
            let line = line
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = cmd
                .temp_pool_note(c"authz_provider_name")
                .unwrap_or_default();
            let Some(spec) = crate::authz::lookup(&name) else {
                return cmd
                    .pool()
                    .strdup(format!("no LuaAuthzProvider named '{name}'").as_bytes())
                    as *const c_char;
            };
            let args = crate::httpd::conf_words(cmd.pool(), &line);
            let p = cmd
                .pool()
                .attach(crate::authz::ParsedRequire { spec, args });
            // SAFETY: `parsed` is the out pointer httpd handed us.
            unsafe { *parsed = p as *const c_void };
            null()
        },
    )
}

unsafe extern "C" fn authz_check(
    r: *mut ffi::request_rec,
    _require_line: *const c_char,
    parsed: *const c_void,
) -> ffi::authz_status {
    guard(
        "authz provider",
        crate::authz::AUTHZ_GENERAL_ERROR as ffi::authz_status,
        || {
            // SAFETY: httpd passes the request and the ParsedRequire our parse function made.
            let (r, parsed) = unsafe {
                (
                    Request::from_raw(r),
                    (parsed as *const crate::authz::ParsedRequire).as_ref(),
                )
            };
            match (r, parsed) {
                (Some(r), Some(p)) => crate::authz::check(r, p) as ffi::authz_status,
                _ => crate::authz::AUTHZ_GENERAL_ERROR as ffi::authz_status,
            }
        },
    )
}

/// mod_lua's "early" slot: APR_HOOK_FIRST - 1.
const HOOK_EARLY: c_int = ffi::APR_HOOK_FIRST - 1;
/// mod_lua's "late" slot: APR_HOOK_LAST + 1.
const HOOK_LATE: c_int = ffi::APR_HOOK_LAST + 1;

/// Gives the allocator's kept blocks back to malloc when the configuration pool goes (before
/// mod_so unloads the module at a restart).
struct ReleaseKeptBlocks;

impl Drop for ReleaseKeptBlocks {
    fn drop(&mut self) {
        crate::alloc::release();
    }
}

unsafe extern "C" fn register_hooks(p: *mut ffi::apr_pool_t) {
    guard("register_hooks", (), || {
        guard::install_panic_hook();
        // SAFETY: httpd passes the configuration pool the module was loaded in.
        if let Some(pool) = unsafe { crate::apr::Pool::from_raw(p) } {
            pool.attach(ReleaseKeptBlocks);
        }
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
            let (early, middle, late) = (HOOK_EARLY, ffi::APR_HOOK_MIDDLE, HOOK_LATE);
            // mod_lua's quick handler runs first among the modules'; early is before that.
            ffi::ap_hook_quick_handler(Some(quick_handler_early), null(), null(), early);
            ffi::ap_hook_quick_handler(Some(quick_handler), null(), null(), ffi::APR_HOOK_FIRST);
            ffi::ap_hook_quick_handler(Some(quick_handler_late), null(), null(), late);
            ffi::ap_hook_pre_translate_name(Some(pre_translate_name_early), null(), null(), early);
            ffi::ap_hook_pre_translate_name(Some(pre_translate_name), null(), null(), middle);
            ffi::ap_hook_pre_translate_name(Some(pre_translate_name_late), null(), null(), late);
            ffi::ap_hook_translate_name(Some(translate_name_early), null(), null(), early);
            ffi::ap_hook_translate_name(Some(translate_name), null(), null(), middle);
            ffi::ap_hook_translate_name(Some(translate_name_late), null(), null(), late);
            ffi::ap_hook_map_to_storage(Some(map_to_storage_early), null(), null(), early);
            ffi::ap_hook_map_to_storage(Some(map_to_storage), null(), null(), middle);
            ffi::ap_hook_map_to_storage(Some(map_to_storage_late), null(), null(), late);
            ffi::ap_hook_check_user_id(Some(check_user_id_early), null(), null(), early);
            // No late check_user_id harness: see directives::runnable_slot.
            ffi::ap_hook_check_user_id(Some(check_user_id), null(), null(), middle);
            ffi::ap_hook_access_checker(Some(access_checker_early), null(), null(), early);
            ffi::ap_hook_access_checker(Some(access_checker), null(), null(), middle);
            ffi::ap_hook_access_checker(Some(access_checker_late), null(), null(), late);
            ffi::ap_hook_auth_checker(Some(auth_checker_early), null(), null(), early);
            ffi::ap_hook_auth_checker(Some(auth_checker), null(), null(), middle);
            ffi::ap_hook_auth_checker(Some(auth_checker_late), null(), null(), late);
            ffi::ap_hook_type_checker(Some(type_checker_early), null(), null(), early);
            ffi::ap_hook_type_checker(Some(type_checker), null(), null(), middle);
            ffi::ap_hook_type_checker(Some(type_checker_late), null(), null(), late);
            ffi::ap_hook_fixups(Some(fixups_early), null(), null(), early);
            ffi::ap_hook_fixups(Some(fixups), null(), null(), middle);
            ffi::ap_hook_fixups(Some(fixups_late), null(), null(), late);
            ffi::ap_hook_log_transaction(
                Some(log_transaction),
                null(),
                null(),
                ffi::APR_HOOK_FIRST,
            );
            ffi::ap_hook_insert_filter(Some(insert_filter), null(), null(), middle);
        }
    })
}
