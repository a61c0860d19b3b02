//! Runs one entry function for a request: picks the VM for the configured LuaScope, resolves
//! the function (code cache, scope environment), calls it with `r`, and reads the result.
//! A panic inside a call poisons that VM and becomes an ordinary failure.

use crate::config::{DirConfig, InlineChunk, Scope};
use crate::httpd::{AliveGuard, FileStamp, Level, Request};
use crate::lua_api::request;
use crate::lua_api::returned_number;
use crate::vm::pool::{self, PoolError, SendVm};
use crate::vm::{ChunkSpec, EnvMode, ErrorText, Load, Vm, VmError, VmSetup};
use mlua::Value;
use once_cell::unsync::OnceCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// What every VM of this module is set up with.
pub static SETUP: VmSetup = VmSetup {
    install: crate::lua_api::install,
};

/// How long a call waits for a VM of a full `LuaScope server` pool before answering 503.
/// (mod_lua waits forever, holding a global mutex.)
pub const SERVER_POOL_WAIT: Duration = Duration::from_secs(30);

/// The module's state for one request (and its subrequests and internal redirects): the VM
/// leased from the shared pool for the rest of the request's life by its first call that keeps
/// state in it (every scope but `once` and `server`, and filters), and the WebSocket state.
#[derive(Default)]
pub struct RequestState {
    vm: OnceCell<SendVm>,
    websocket: std::cell::Cell<WebSocket>,
    scratch: OnceCell<crate::httpd::PoolBrigade>,
    map_match: std::cell::Cell<Option<crate::handler::KeptMatch>>,
}

/// Where a request stands with WebSockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebSocket {
    #[default]
    None,
    /// r:wsupgrade answered 101: the connection now carries frames.
    Open,
    /// A close frame was sent.
    Closed,
}

impl RequestState {
    /// Whether the request holds a VM of the shared pool (for its request-long scopes).
    pub fn holds_vm(&self) -> bool {
        self.vm.get().is_some()
    }

    pub fn websocket(&self) -> WebSocket {
        self.websocket.get()
    }

    pub fn set_websocket(&self, w: WebSocket) {
        self.websocket.set(w);
    }

    /// Keeps the LuaMapHandler match of the fixups hook for the handler.
    pub fn keep_map_match(&self, m: crate::handler::KeptMatch) {
        self.map_match.set(Some(m));
    }

    /// The kept LuaMapHandler match, if there is one and `wanted` accepts it (taken: it
    /// serves one handler run).
    pub fn take_map_match_of(
        &self,
        wanted: impl FnOnce(&crate::handler::KeptMatch) -> bool,
    ) -> Option<crate::handler::KeptMatch> {
        let kept = self.map_match.get()?;
        if !wanted(&kept) {
            return None;
        }
        self.map_match.set(None);
        Some(kept)
    }

    /// A brigade kept for the request's connection I/O (WebSocket frames).
    pub fn scratch<'a>(&'a self, r: Request<'_>) -> crate::httpd::Brigade<'a> {
        self.scratch
            .get_or_init(|| crate::httpd::PoolBrigade::new(r.connection().brigade(r.root().pool())))
            .get()
    }
}

impl Drop for RequestState {
    fn drop(&mut self) {
        if let Some(vm) = self.vm.take() {
            pool::checkin(vm);
        }
    }
}

/// The module's state for one connection: the VM of `LuaScope conn`.
#[derive(Default)]
pub struct ConnState {
    vm: OnceCell<SendVm>,
}

/// The script and function to call.
pub struct Entry<'a> {
    /// The script's path, or an inline block's key.
    pub path: &'a [u8],
    /// The global function to call; `None` runs an inline block's body with `r` in scope.
    pub function: Option<&'a str>,
    /// httpd's stat of `path`, when it made one (the handler's `r->finfo`).
    pub stamp: Option<FileStamp>,
    pub inline: Option<&'a InlineChunk>,
    /// Arguments after `r` (an authz provider's `Require` arguments).
    pub args: &'a [String],
}

impl<'a> Entry<'a> {
    /// A file's global function, called with `r` alone.
    pub fn file(path: &'a [u8], function: &'a str) -> Self {
        Entry {
            path,
            function: Some(function),
            stamp: None,
            inline: None,
            args: &[],
        }
    }

    /// How log lines name the entry point.
    pub fn function_name(&self) -> &str {
        self.function.unwrap_or("(inline block)")
    }
}

/// What the function returned, as mod_lua reads it.
pub enum Outcome {
    Number(i64),
    NotNumber,
}

/// Why the call did not return normally.
pub enum Failure {
    /// The script could not be loaded (unreadable, syntax error).
    Load(String),
    /// The script's top level raised an error.
    TopLevel(String),
    /// The entry function is missing or not a function.
    NotAFunction,
    /// The function raised an error.
    Runtime(ErrorText),
    /// No VM could be had in time (`LuaScope server` pool exhausted).
    Busy(String),
    /// Lua failed internally or Rust panicked.
    Internal(String),
}

#[cold]
#[inline(never)]
fn pool_failure(e: PoolError) -> Failure {
    match e {
        PoolError::Exhausted { max, waited } => Failure::Busy(format!(
            "all {max} VMs of the LuaScope server pool stayed busy for {}s",
            waited.as_secs()
        )),
        PoolError::Create(e) => lua_failure(e),
    }
}

#[cold]
#[inline(never)]
fn no_request_api() -> Failure {
    Failure::Internal("the request API is not installed".into())
}

/// The request API `vm`'s setup installed, which every call into a script needs for its `r`.
#[inline(always)]
fn request_api(vm: &Vm) -> Result<&crate::luac::RequestFns, Failure> {
    vm.request_fns().ok_or_else(no_request_api)
}

#[cold]
#[inline(never)]
fn lua_failure(e: mlua::Error) -> Failure {
    Failure::Internal(ErrorText::of(&e).one_line())
}

fn request_vm<'a>(r: Request<'a>) -> Result<&'a Vm, Failure> {
    let state = r.root().state();
    state
        .vm
        .get_or_try_init(|| pool::checkout(&SETUP))
        .map(SendVm::vm)
        .map_err(lua_failure)
}

fn conn_vm<'a>(r: Request<'a>) -> Result<&'a Vm, Failure> {
    let state = r.connection().state();
    state
        .vm
        .get_or_try_init(|| Vm::new(&SETUP).map(SendVm::new))
        .map(SendVm::vm)
        .map_err(lua_failure)
}

impl From<VmError> for Failure {
    fn from(e: VmError) -> Failure {
        match e {
            VmError::Load(m) => Failure::Load(m),
            VmError::TopLevel(m) => Failure::TopLevel(m),
            VmError::NotAFunction => Failure::NotAFunction,
            VmError::Lua(m) => Failure::Internal(m),
        }
    }
}

/// What the code cache needs to find `entry`'s chunk under `cfg`.
fn chunk_spec<'a>(cfg: &'a DirConfig, entry: &Entry<'a>) -> ChunkSpec<'a> {
    ChunkSpec {
        path: entry.path,
        stamp: entry.stamp,
        codecache: cfg.codecache(),
        package_paths: &cfg.package_paths[..],
        package_cpaths: &cfg.package_cpaths[..],
        inline: entry.inline,
    }
}

/// Runs `f` with the VM and environment mode `cfg`'s LuaScope gives `entry`; under
/// `LuaScope server` also returns the VM's lease, which the caller holds as long as it uses
/// what `f` made.
fn with_scope_vm<T>(
    r: Request<'_>,
    cfg: &DirConfig,
    entry: &Entry<'_>,
    f: impl FnOnce(&Vm, EnvMode) -> Result<T, Failure>,
) -> Result<(T, Option<pool::ServerLease>), Failure> {
    match cfg.scope() {
        Scope::Once => Ok((f(request_vm(r)?, EnvMode::Once)?, None)),
        Scope::Request => Ok((f(request_vm(r)?, EnvMode::Request)?, None)),
        Scope::Thread => Ok((f(request_vm(r)?, EnvMode::Persistent)?, None)),
        Scope::Conn => Ok((f(conn_vm(r)?, EnvMode::Persistent)?, None)),
        Scope::Server { min, max } => {
            let lease = server_lease(entry, min, max)?;
            Ok((f(lease.vm(), EnvMode::Persistent)?, Some(lease)))
        }
    }
}

/// Calls `entry` for `r` under the request's configuration.
pub fn call(r: Request<'_>, cfg: &DirConfig, entry: &Entry<'_>) -> Result<Outcome, Failure> {
    // Each way to a VM is a function of its own, so that the call's frame holds only the
    // locals of the way taken (a worker thread's stack stays as deep as its deepest call ever
    // went).
    match cfg.scope() {
        // A server-scope lease ends with the call, as in mod_lua.
        Scope::Server { min, max } => call_leased(r, cfg, entry, min, max),
        // A `once` call leaves nothing in its VM for later calls (its environment, its modules
        // and its `r` end with it), so unless the request already holds a VM it takes one for
        // the call alone: the VMs in use are those of the calls running, not of every request
        // in flight (each request waiting on the network held one), which is fewer VMs, kept
        // warm.
        Scope::Once if !r.root().state().holds_vm() => call_once(r, cfg, entry),
        _ => call_scoped(r, cfg, entry),
    }
}

#[inline(never)]
fn call_scoped(r: Request<'_>, cfg: &DirConfig, entry: &Entry<'_>) -> Result<Outcome, Failure> {
    with_scope_vm(r, cfg, entry, |vm, mode| {
        run(vm, r, &chunk_spec(cfg, entry), mode, entry)
    })
    .map(|(out, _)| out)
}

#[inline(never)]
fn call_leased(
    r: Request<'_>,
    cfg: &DirConfig,
    entry: &Entry<'_>,
    min: u32,
    max: u32,
) -> Result<Outcome, Failure> {
    let lease = server_lease(entry, min, max)?;
    run(
        lease.vm(),
        r,
        &chunk_spec(cfg, entry),
        EnvMode::Persistent,
        entry,
    )
}

/// A VM of `entry`'s `LuaScope server` pool, for as long as the lease is held.
fn server_lease(entry: &Entry<'_>, min: u32, max: u32) -> Result<pool::ServerLease, Failure> {
    pool::server_pool(entry.path, min, max, &SETUP)
        .lease(&SETUP, SERVER_POOL_WAIT)
        .map_err(pool_failure)
}

#[inline(never)]
fn call_once(r: Request<'_>, cfg: &DirConfig, entry: &Entry<'_>) -> Result<Outcome, Failure> {
    let lease = pool::CallLease::checkout(&SETUP).map_err(lua_failure)?;
    run(lease.vm(), r, &chunk_spec(cfg, entry), EnvMode::Once, entry)
}

fn run(
    vm: &Vm,
    r: Request<'_>,
    spec: &ChunkSpec<'_>,
    mode: EnvMode,
    entry: &Entry<'_>,
) -> Result<Outcome, Failure> {
    // The two kinds of entry and the panic are functions of their own, so that this frame,
    // which every call goes through, holds none of their locals (a worker thread's stack
    // stays as deep as its deepest call ever went).
    let result = catch_unwind(AssertUnwindSafe(|| match entry.function {
        Some(name) => {
            // Resolved before the call's frame is entered: the two paths do not stack up.
            let env = reported(vm, r, spec, vm.resolve_env(spec, mode))?;
            call_function(vm, r, &env, entry, name)
        }
        None => call_body(vm, r, spec, mode),
    }));
    match result {
        Ok(Ok(v)) => Ok(match returned_number(&v) {
            Some(n) => Outcome::Number(n),
            None => Outcome::NotNumber,
        }),
        Ok(Err(f)) => Err(f),
        Err(panic) => Err(panicked(vm, panic)),
    }
}

/// Calls the global function `name` of the script's environment `env` with `r` (and the
/// entry's arguments).
#[inline(never)]
fn call_function(
    vm: &Vm,
    r: Request<'_>,
    env: &mlua::Table,
    entry: &Entry<'_>,
    name: &str,
) -> Result<Value, Failure> {
    let fns = request_api(vm)?;
    if !entry.args.is_empty() {
        return call_function_with_args(vm, fns, r, env, entry, name);
    }
    request::call_entry(fns, env, name, r)
        .map_err(runtime_failure)?
        .ok_or(Failure::NotAFunction)
}

/// [`call_function`] for an entry with arguments after `r` (authz providers).
#[inline(never)]
fn call_function_with_args(
    vm: &Vm,
    fns: &crate::luac::RequestFns,
    r: Request<'_>,
    env: &mlua::Table,
    entry: &Entry<'_>,
    name: &str,
) -> Result<Value, Failure> {
    let lua = vm.lua();
    let mut args = Vec::with_capacity(entry.args.len());
    for a in entry.args {
        args.push(Value::String(lua.create_string(a).map_err(lua_failure)?));
    }
    request::call_entry_with_args(fns, env, name, r, args)
        .map_err(runtime_failure)?
        .ok_or(Failure::NotAFunction)
}

/// Runs an inline block's body with `r` in scope.
#[inline(never)]
fn call_body(
    vm: &Vm,
    r: Request<'_>,
    spec: &ChunkSpec<'_>,
    mode: EnvMode,
) -> Result<Value, Failure> {
    let (code, env) = reported(vm, r, spec, vm.resolve_body(spec, mode))?;
    let fns = request_api(vm)?;
    request::with_request(fns, r, |r| Ok(vm.call_body(&code, &env, r)))
        .map_err(lua_failure)?
        .map_err(runtime_failure)
}

fn runtime_failure(e: mlua::Error) -> Failure {
    Failure::Runtime(ErrorText::of(&e))
}

/// A panic during a call: the VM is poisoned (closed instead of reused).
#[cold]
#[inline(never)]
fn panicked(vm: &Vm, panic: Box<dyn std::any::Any + Send>) -> Failure {
    vm.poison();
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Failure::Internal(format!("Rust panic: {msg}"))
}

/// A filter's Lua coroutine with what keeps it usable across calls: the environment it sees as
/// globals (where `bucket` is set) and, under `LuaScope server`, the VM lease (dropped last).
pub struct Coroutine {
    pub thread: mlua::Thread,
    pub env: mlua::Table,
    /// Keeps the `r` made by [`Coroutine::request`] usable; dropped with the coroutine,
    /// before the VM goes back to its pool.
    alive: Option<AliveGuard<'static>>,
    pub lua: mlua::Lua,
    _lease: Option<pool::ServerLease>,
}

impl Coroutine {
    /// An `r` for `req`, usable as long as this coroutine (which lives in the filter's
    /// state, in the request pool).
    pub fn request(&mut self, req: Request<'_>) -> mlua::Result<Value> {
        let (r, alive) = request::filter_request(&self.lua, req)?;
        self.alive = Some(alive);
        Ok(r)
    }
}

/// Passes on what resolving `spec` in `vm` gave, after mod_lua's debug line for a script file
/// the VM read on the way (reported whether or not the read succeeded, so that a later call
/// does not report it again).
fn reported<T>(
    vm: &Vm,
    r: Request<'_>,
    spec: &ChunkSpec<'_>,
    resolved: Result<T, VmError>,
) -> Result<T, VmError> {
    let Some(load) = vm.take_last_load() else {
        return resolved;
    };
    if r.is_level(Level::Debug) {
        let path = String::from_utf8_lossy(spec.path);
        r.log(
            Level::Debug,
            &match load {
                Load::First => format!("AH01481: loading lua file {path}"),
                Load::Again => format!("AH02332: (re)loading lua file {path}"),
            },
        );
    }
    resolved
}

/// Prepares `entry`'s function as a coroutine for a filter (not started yet).
pub fn coroutine(r: Request<'_>, cfg: &DirConfig, entry: &Entry<'_>) -> Result<Coroutine, Failure> {
    let spec = chunk_spec(cfg, entry);
    let function = entry.function.unwrap_or("handle");
    let (parts, lease) = with_scope_vm(r, cfg, entry, |vm, mode| {
        let (f, env) = reported(vm, r, &spec, vm.resolve_with_env(&spec, mode, function))?;
        let thread = vm.lua().create_thread(f).map_err(lua_failure)?;
        Ok((vm.lua().clone(), thread, env))
    })?;
    let (lua, thread, env) = parts;
    Ok(Coroutine {
        thread,
        env,
        alive: None,
        lua,
        _lease: lease,
    })
}
