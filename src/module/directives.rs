//! The directive table: mod_lua's names, argument shapes, override classes and help texts,
//! plus `LuaShowErrors` (ours). Handlers parse into the typed config of `crate::config`.

use super::guard::guard;
use crate::apr::{opt_cstr, ConfRef};
use crate::config::{
    parse_codecache, parse_inherit, parse_scope, DirConfig, FilterKind, FilterSpec, HookCode,
    HookSpec, InlineChunk, MapHandler, Phase, ScriptFile, ServerConfig, Slot,
};
use crate::ffi::{self, cmd_func, cmd_parms, command_rec};
use crate::httpd::{CmdParms, Regex, NOT_IN_DIR_FILES_HTACCESS};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr::null;
use std::sync::Arc;

/// The command table httpd reads; terminated by an all-NULL entry.
#[repr(transparent)]
pub struct Commands(pub [command_rec; 33]);

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

/// A hook directive: its phase travels in `cmd_data` (index + 1).
const fn hook(
    name: &'static std::ffi::CStr,
    phase: Phase,
    slots: bool,
    help: &'static std::ffi::CStr,
) -> command_rec {
    let (func, how) = if slots {
        (
            cmd_func {
                take3: Some(lua_hook_file3),
            },
            ffi::cmd_how_TAKE23,
        )
    } else {
        (
            cmd_func {
                take2: Some(lua_hook_file2),
            },
            ffi::cmd_how_TAKE2,
        )
    };
    command_rec {
        cmd_data: std::ptr::without_provenance_mut(phase as usize + 1),
        ..cmd(name, func, how, help)
    }
}

/// An inline block `<LuaHook… [function] [early|late]> … </LuaHook…>` (read at config time).
const fn block(
    name: &'static std::ffi::CStr,
    phase: Phase,
    help: &'static std::ffi::CStr,
) -> command_rec {
    command_rec {
        cmd_data: std::ptr::without_provenance_mut(phase as usize + 1),
        req_override: ffi::EXEC_ON_READ | ffi::OR_ALL,
        ..cmd(
            name,
            cmd_func {
                raw_args: Some(lua_hook_block),
            },
            ffi::cmd_how_RAW_ARGS,
            help,
        )
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
    hook(c"LuaQuickHandler", Phase::Quick, false, c"Provide a hook for the quick handler of request processing"),
    hook(
        c"LuaHookPreTranslateName",
        Phase::PreTranslateName,
        false,
        c"Provide a hook for the pre_translate name phase of request processing",
    ),
    hook(
        c"LuaHookTranslateName",
        Phase::TranslateName,
        true,
        c"Provide a hook for the translate name phase of request processing",
    ),
    hook(
        c"LuaHookMapToStorage",
        Phase::MapToStorage,
        false,
        c"Provide a hook for the map_to_storage phase of request processing",
    ),
    hook(
        c"LuaHookCheckUserID",
        Phase::CheckUserId,
        true,
        c"Provide a hook for the check_user_id phase of request processing",
    ),
    hook(
        c"LuaHookAccessChecker",
        Phase::AccessChecker,
        true,
        c"Provide a hook for the access_checker phase of request processing",
    ),
    hook(
        c"LuaHookAuthChecker",
        Phase::AuthChecker,
        true,
        c"Provide a hook for the auth_checker phase of request processing",
    ),
    hook(
        c"LuaHookTypeChecker",
        Phase::TypeChecker,
        false,
        c"Provide a hook for the type_checker phase of request processing",
    ),
    hook(c"LuaHookFixups", Phase::Fixups, false, c"Provide a hook for the fixups phase of request processing"),
    hook(c"LuaHookLog", Phase::Log, false, c"Provide a hook for the logging phase of request processing"),
    hook(
        c"LuaHookInsertFilter",
        Phase::InsertFilter,
        false,
        c"Provide a hook for the insert_filter phase of request processing",
    ),
    command_rec {
        cmd_data: std::ptr::without_provenance_mut(1),
        ..cmd(
            c"LuaInputFilter",
            cmd_func { take3: Some(lua_filter) },
            ffi::cmd_how_TAKE3,
            c"Registers a Lua function as an input filter",
        )
    },
    command_rec {
        cmd_data: std::ptr::without_provenance_mut(2),
        ..cmd(
            c"LuaOutputFilter",
            cmd_func { take3: Some(lua_filter) },
            ffi::cmd_how_TAKE3,
            c"Registers a Lua function as an output filter",
        )
    },
    block(c"<LuaQuickHandler", Phase::Quick, c"Provide a hook for the quick handler of request processing"),
    block(
        c"<LuaHookPreTranslateName",
        Phase::PreTranslateName,
        c"Provide a hook for the pre_translate name phase of request processing",
    ),
    block(
        c"<LuaHookTranslateName",
        Phase::TranslateName,
        c"Provide a hook for the translate name phase of request processing",
    ),
    block(
        c"<LuaHookMapToStorage",
        Phase::MapToStorage,
        c"Provide a hook for the map_to_storage phase of request processing",
    ),
    block(
        c"<LuaHookCheckUserID",
        Phase::CheckUserId,
        c"Provide a hook for the check_user_id phase of request processing",
    ),
    block(
        c"<LuaHookAccessChecker",
        Phase::AccessChecker,
        c"Provide a hook for the access_checker phase of request processing",
    ),
    block(
        c"<LuaHookAuthChecker",
        Phase::AuthChecker,
        c"Provide a hook for the auth_checker phase of request processing",
    ),
    block(
        c"<LuaHookTypeChecker",
        Phase::TypeChecker,
        c"Provide a hook for the type_checker phase of request processing",
    ),
    block(c"<LuaHookFixups", Phase::Fixups, c"Provide a inline hook for the fixups phase of request processing"),
    cmd(
        BYTECODE_HACK,
        cmd_func { raw_args: Some(lua_bytecode_hack) },
        ffi::cmd_how_RAW_ARGS,
        c"(internal) Byte code handler",
    ),
    command_rec {
        req_override: ffi::RSRC_CONF | ffi::EXEC_ON_READ,
        ..cmd(
            c"LuaAuthzProvider",
            cmd_func { take3: Some(lua_authz_provider) },
            ffi::cmd_how_TAKE3,
            c"Provide an authorization provider",
        )
    },
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
    cfg.root().map(str::to_string).or_else(|| {
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
        cfg.root = Some(ConfRef::new(Box::new(root.clone())));
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
        .map(|p| p.into_owned())
        .ok_or_else(|| format!("Unable to build full path to file, {dir}"))
}

unsafe extern "C" fn lua_package_path(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    a: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        let p = package_dir(cmd, cfg, a)?;
        cfg.package_paths.make_mut().push(p);
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
        cfg.package_cpaths.make_mut().push(p);
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
        cfg.add_map_handler(MapHandler {
            pattern,
            regex,
            file: arg(file).unwrap_or_default(),
            function: arg(function).unwrap_or_else(|| "handle".to_string()),
        });
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

/// The internal directive an inline block becomes once read (mod_lua's name).
const BYTECODE_HACK: &std::ffi::CStr = c"Lua_____ByteCodeHack";

fn phase_of(cmd: CmdParms<'_>) -> Result<Phase, String> {
    Phase::ALL
        .get(cmd.cmd_data().wrapping_sub(1))
        .copied()
        .ok_or_else(|| "mod_lua_rs: unknown hook directive".into())
}

unsafe extern "C" fn lua_hook_file2(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    file: *const c_char,
    function: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        add_file_hook(cmd, cfg, arg(file), arg(function), None)
    })
}

unsafe extern "C" fn lua_hook_file3(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    file: *const c_char,
    function: *const c_char,
    when: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        add_file_hook(cmd, cfg, arg(file), arg(function), arg(when))
    })
}

/// `LuaHook* file function [early|late]` (mod_lua `register_named_file_function_hook`).
fn add_file_hook(
    cmd: CmdParms<'_>,
    cfg: &mut DirConfig,
    file: Option<String>,
    function: Option<String>,
    when: Option<String>,
) -> Result<(), String> {
    let phase = phase_of(cmd)?;
    if matches!(phase, Phase::Quick | Phase::TranslateName) {
        cmd.check_context(NOT_IN_DIR_FILES_HTACCESS)?;
    }
    // Only the directives that take a third argument get here with one (httpd checks the
    // count), and their phases all have slots.
    debug_assert!(when.is_none() || phase.has_slots());
    let slot = match Slot::parse(when.as_deref()) {
        Ok(slot) => runnable_slot(cmd, phase, slot),
        // mod_lua takes any word here for LuaHookCheckUserID (and ignores it), so a
        // configuration it loads keeps loading.
        Err(_) if phase == Phase::CheckUserId => {
            config_warning(
                cmd,
                &format!(
                    "{} ... {}: neither 'early' nor 'late', ignored (as mod_lua ignores it)",
                    cmd.cmd_name(),
                    when.as_deref().unwrap_or_default()
                ),
            );
            Slot::Middle
        }
        Err(e) => return Err(e),
    };
    let spec = HookSpec {
        code: HookCode::File(ScriptFile::new(file.unwrap_or_default())),
        function: function.filter(|f| !f.is_empty()),
    };
    cfg.hooks.make_mut().push(phase, slot, spec);
    Ok(())
}

/// The slot a hook asking for `slot` runs in. check_user_id has no late position that ever
/// runs: httpd runs the phase only under an AuthType, and mod_authn_core's last hook refuses
/// every AuthType no module took. So a late authentication hook runs in the middle, as
/// mod_lua runs it, and the start-up log says so.
fn runnable_slot(cmd: CmdParms<'_>, phase: Phase, slot: Slot) -> Slot {
    if (phase, slot) != (Phase::CheckUserId, Slot::Late) {
        return slot;
    }
    config_warning(
        cmd,
        &format!(
            "{} ... late: no authentication hook runs after mod_authn_core's, so this one \
             runs in the middle position (as mod_lua runs it)",
            cmd.cmd_name()
        ),
    );
    Slot::Middle
}

/// A start-up warning about the directive being read, with its file and line.
fn config_warning(cmd: CmdParms<'_>, what: &str) {
    let (file, line) = cmd.config_position();
    crate::httpd::log_global(
        crate::httpd::Level::Warn,
        &format!("lua: {file}:{line}: {what}"),
    );
}

/// What an inline block leaves in the config tree for [`lua_bytecode_hack`].
struct BlockDef {
    phase: Phase,
    slot: Slot,
    function: Option<String>,
    chunk: Arc<InlineChunk>,
}

/// `<LuaHookX [function] [early|late]>` (EXEC_ON_READ: `mconfig` is the config tree slot).
unsafe extern "C" fn lua_hook_block(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    line: *const c_char,
) -> *const c_char {
    guard(
        "inline Lua block",
        c"mod_lua_rs: internal error while reading this block".as_ptr(),
        || {
            // SAFETY: httpd passes the cmd_parms of the running directive.
            let cmd = unsafe { CmdParms::from_raw(parms) }.expect("cmd_parms");
            match read_block(cmd, mconfig, arg(line).unwrap_or_default()) {
                Ok(()) => null(),
                Err(msg) => cmd.pool().strdup(msg.as_bytes()),
            }
        },
    )
}

fn read_block(cmd: CmdParms<'_>, mconfig: *mut c_void, line: String) -> Result<(), String> {
    let name = cmd.cmd_name();
    let phase = phase_of(cmd)?;
    let end = line
        .rfind('>')
        .ok_or_else(|| format!("{name}> directive missing closing '>'"))?;
    let words: Vec<&str> = line[..end].split_whitespace().collect();
    let function = words.first().map(|w| w.to_string());
    let slot = match words.get(1) {
        None => Slot::Middle,
        // Every block phase has slots (mod_lua accepts the word for all of them and then
        // never runs the block where it has no harness for it).
        Some(w) => match Slot::parse(Some(w)) {
            Err(_) => return Err(format!("{name}> 2nd argument must be 'early' or 'late'")),
            Ok(s) => runnable_slot(cmd, phase, s),
        },
    };
    if words.len() > 2 {
        // mod_lua reads two words and ignores the rest.
        config_warning(
            cmd,
            &format!(
                "{name}> takes a function name and 'early' or 'late'; ignored: {}",
                words[2..].join(" ")
            ),
        );
    }
    let (file, start) = cmd.config_position();
    let end_tag = format!("</{}", &name[1..]).to_ascii_lowercase();
    // Blank lines first, so that Lua's line numbers are the config file's.
    let mut source = "\n".repeat(start as usize);
    loop {
        let Some(raw) = cmd.read_raw_config_line() else {
            return Err(format!(
                "{name}> block at {file}:{start} has no closing {end_tag}>"
            ));
        };
        let text = String::from_utf8_lossy(&raw);
        if text.trim_start().to_ascii_lowercase().starts_with(&end_tag) {
            break;
        }
        source.push_str(&text);
        if !text.ends_with('\n') {
            source.push('\n');
        }
    }
    // Compile now, so that a syntax error fails the configuration with its file and line.
    syntax_check(&file, &source).map_err(|e| format!("Lua Error:{e}"))?;
    let chunk = Arc::new(InlineChunk {
        key: format!("{file}:{start}"),
        file,
        source,
    });
    cmd.replace_tree_node(
        mconfig,
        BYTECODE_HACK,
        BlockDef {
            phase,
            slot,
            function,
            chunk,
        },
    );
    Ok(())
}

/// Compiles an inline block in a throw-away state (no libraries) to report syntax errors.
fn syntax_check(file: &str, source: &str) -> Result<(), String> {
    // SAFETY (of the mlua call): a bare state with no libraries that only compiles text.
    #[allow(unsafe_code)]
    let lua =
        unsafe { mlua::Lua::unsafe_new_with(mlua::StdLib::NONE, mlua::LuaOptions::default()) };
    lua.load(&crate::vm::wrap_inline(source.as_bytes())[..])
        .set_name(format!("@{file}"))
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()
        .map(|_| ())
        .map_err(|e| crate::vm::ErrorText::of(&e).message)
}

/// `Lua_____ByteCodeHack`: adds an inline block's hook to the section it was written in.
unsafe extern "C" fn lua_bytecode_hack(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    _args: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        let def = cmd
            .node_data::<BlockDef>()
            .ok_or_else(|| format!("{} is internal to mod_lua", BYTECODE_HACK.to_string_lossy()))?;
        let spec = HookSpec {
            code: HookCode::Inline(def.chunk.clone()),
            function: def.function.clone(),
        };
        cfg.hooks.make_mut().push(def.phase, def.slot, spec);
        Ok(())
    })
}

/// `LuaAuthzProvider name file function` (main server config only, before its `Require`s).
unsafe extern "C" fn lua_authz_provider(
    parms: *mut cmd_parms,
    _mconfig: *mut c_void,
    name: *const c_char,
    file: *const c_char,
    function: *const c_char,
) -> *const c_char {
    guard(
        "LuaAuthzProvider",
        c"mod_lua_rs: internal error in LuaAuthzProvider".as_ptr(),
        || {
            // SAFETY: httpd passes the cmd_parms of the running directive.
            let cmd = unsafe { CmdParms::from_raw(parms) }.expect("cmd_parms");
            let result = (|| -> Result<(), String> {
                cmd.check_context(crate::ffi::GLOBAL_ONLY as u32)?;
                let name = arg(name).unwrap_or_default();
                let registration = crate::authz::register(crate::authz::ProviderSpec {
                    name: name.clone(),
                    file: ScriptFile::new(arg(file).unwrap_or_default()),
                    function: arg(function).unwrap_or_default(),
                });
                cmd.pool().attach(registration);
                super::register_authz_provider(cmd, &name);
                Ok(())
            })();
            match result {
                Ok(()) => null(),
                Err(msg) => cmd.pool().strdup(msg.as_bytes()),
            }
        },
    )
}

/// `LuaInputFilter name file function` / `LuaOutputFilter name file function`: the filter is
/// registered with httpd under `name` (for SetOutputFilter, AddOutputFilter, FilterProvider,
/// r:add_output_filter) and the script is found per request in the section's config.
unsafe extern "C" fn lua_filter(
    parms: *mut cmd_parms,
    mconfig: *mut c_void,
    name: *const c_char,
    file: *const c_char,
    function: *const c_char,
) -> *const c_char {
    directive(parms, mconfig, |cmd, cfg| {
        cmd.check_context(NOT_IN_DIR_FILES_HTACCESS)?;
        let kind = if cmd.cmd_data() == 1 {
            FilterKind::Input
        } else {
            FilterKind::Output
        };
        let name = arg(name).unwrap_or_default();
        super::register_filter(cmd, &name, kind);
        cfg.filters.make_mut().push(Arc::new(FilterSpec {
            name,
            file: ScriptFile::new(arg(file).unwrap_or_default()),
            function: arg(function).unwrap_or_default(),
            kind,
        }));
        Ok(())
    })
}
