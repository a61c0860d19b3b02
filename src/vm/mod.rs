//! One Lua VM: a Lua state plus its caches (compiled chunks, module profiles, scope
//! environments). Scopes are environments inside a VM: `once` gets a fresh environment per
//! call, `request` one per request, and the long-lived scopes one per VM. Nothing here touches
//! httpd, so the whole call path is testable without a server.
#![deny(unsafe_code)]

pub mod pool;

use crate::config::{munge_path, parent_dir, CodeCache, InlineChunk};
use crate::httpd::FileStamp;
use crate::luac::{EnvBuilder, EnvParts};
use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, Table, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

const PRELUDE: &str = include_str!("prelude.lua");
const PRELUDE_NAME: &str = "=mod_lua_rs prelude";

/// The prelude compiled once per process, without its debug information, which every VM loads
/// instead of parsing the source again: compiling it was most of what making a VM cost (762k
/// of 1.37M instructions under Lua 5.4), which `LuaScope conn` pays on every connection, and
/// loading it with its line and local-name tables cost 142k of the 1.07M left (71k without).
/// The prelude raises its errors at its callers' levels, so they name the script's position;
/// only a traceback through it shows its frames without line numbers.
static PRELUDE_CODE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// The prelude's main function in `lua`.
fn prelude(lua: &Lua) -> mlua::Result<Function> {
    let code = match PRELUDE_CODE.get() {
        Some(code) => code,
        None => {
            // The first VM compiles it, then loads the dump as every later VM does, so that
            // all VMs run the same code.
            let f = lua.load(PRELUDE).set_name(PRELUDE_NAME).into_function()?;
            // (Set from here rather than in a `get_or_init` closure, where the dump would be
            // code of its own outside the children's packed text.)
            let _ = PRELUDE_CODE.set(f.dump(true));
            PRELUDE_CODE.get().expect("the prelude's code was just set")
        }
    };
    lua.load(&code[..])
        .set_name(PRELUDE_NAME)
        .set_mode(ChunkMode::Binary)
        .into_function()
}

/// How much a VM's Lua heap may grow past its size after the last full collection before an
/// idle VM is collected (see [`Vm::shed_garbage`]).
const IDLE_GARBAGE: usize = 64 * 1024;

/// A VM in use is collected when its request ends after this many requests with more than
/// [`IDLE_GARBAGE`] of garbage, or at once past [`MAX_GARBAGE`]. The incremental collector
/// (Lua 5.3, LuaJIT) alone lets a busy VM's heap grow to several times its live size (its
/// pause is relative to the heap after a cycle, and a cycle lags behind allocation), and
/// with one VM per thread that growth is paid many times over.
const COLLECT_EVERY: u32 = 32;
const MAX_GARBAGE: usize = 1024 * 1024;

/// A fast hasher for maps the module looks up on every request, keyed by script paths from
/// the configuration and the file system or by names of its own API (SipHash's flooding
/// resistance buys nothing there and costs on every call).
#[derive(Default)]
pub struct PathHasher(u64);

impl Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type PathMap<V> = HashMap<Vec<u8>, V, BuildHasherDefault<PathHasher>>;

/// How a call finds its global environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvMode {
    /// A fresh environment for this call; the chunk's top level runs every time.
    Once,
    /// One environment per request (dropped by [`Vm::end_request`]).
    Request,
    /// One environment for the VM's lifetime.
    Persistent,
}

/// Which script to run and under which code-cache and module-path rules.
pub struct ChunkSpec<'a> {
    /// Absolute path of the script.
    pub path: &'a [u8],
    /// A stat httpd already made of `path` (saves a syscall under `LuaCodeCache stat`).
    pub stamp: Option<FileStamp>,
    pub codecache: CodeCache,
    /// `LuaPackagePath` / `LuaPackageCPath` entries in effect.
    pub package_paths: &'a [String],
    pub package_cpaths: &'a [String],
    /// Code given in the configuration instead of a file (`path` is then its key).
    pub inline: Option<&'a InlineChunk>,
}

/// Why an entry function could not be called.
#[derive(Debug)]
pub enum VmError {
    /// The script could not be read or compiled.
    Load(String),
    /// The script's top level raised an error.
    TopLevel(String),
    /// The named global is not a function.
    NotAFunction,
    /// Lua itself failed (out of memory, internal error).
    Lua(String),
}

impl From<mlua::Error> for VmError {
    fn from(e: mlua::Error) -> Self {
        VmError::Lua(ErrorText::of(&e).one_line())
    }
}

/// What to tell the error log about a Lua error: the message (with file:line) and the
/// traceback, separated.
pub struct ErrorText {
    pub message: String,
    pub traceback: Option<String>,
}

impl ErrorText {
    pub fn of(e: &mlua::Error) -> ErrorText {
        match e {
            mlua::Error::CallbackError { traceback, cause } => {
                let inner = ErrorText::of(cause);
                ErrorText {
                    message: inner.message,
                    traceback: Some(traceback.clone()),
                }
            }
            mlua::Error::RuntimeError(s) | mlua::Error::SyntaxError { message: s, .. } => {
                Self::split(s)
            }
            mlua::Error::WithContext { context, cause } => {
                let inner = ErrorText::of(cause);
                ErrorText {
                    message: format!("{context}: {}", inner.message),
                    traceback: inner.traceback,
                }
            }
            other => Self::split(&other.to_string()),
        }
    }

    fn split(s: &str) -> ErrorText {
        match s.find("\nstack traceback:") {
            Some(i) => ErrorText {
                message: s[..i].to_string(),
                traceback: Some(s[i + 1..].to_string()),
            },
            None => ErrorText {
                message: s.to_string(),
                traceback: None,
            },
        }
    }

    /// The message and the traceback on one log line (frames separated by " | ").
    pub fn one_line(&self) -> String {
        match &self.traceback {
            Some(tb) => {
                let frames: Vec<&str> = tb
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                format!(
                    "{} ({})",
                    self.message.replace('\n', " "),
                    frames.join(" | ")
                )
            }
            None => self.message.replace('\n', " "),
        }
    }
}

/// What every new VM gets besides the standard libraries.
pub struct VmSetup {
    /// Installs the module's API (the `apache2` table, request metatables, …).
    pub install: fn(&Lua) -> mlua::Result<()>,
}

enum Code {
    /// A text chunk compiled as `local _ENV = ...; <script>`: calling it with an environment
    /// runs the script's top level in that environment, with a fresh `_ENV` per activation.
    Text(Function),
    /// A precompiled chunk: reloaded from its bytes for each environment.
    Binary(Rc<[u8]>),
}

struct ChunkEntry {
    code: Rc<CodeCell>,
    stamp: Option<FileStamp>,
    generation: u64,
    profile: Rc<Profile>,
}

/// A module profile (package.path/cpath and loaded table) and the config lists it came from.
struct Profile {
    paths: Vec<String>,
    cpaths: Vec<String>,
    table: Table,
}

pub struct CodeCell {
    code: Code,
    name: String,
}

struct EnvEntry {
    env: Table,
    generation: u64,
}

fn remember(map: &RefCell<PathMap<EnvEntry>>, key: &[u8], env: &Table, generation: u64) {
    map.borrow_mut().insert(
        key.to_vec(),
        EnvEntry {
            env: env.clone(),
            generation,
        },
    );
}

/// A Lua state with the module's caches.
pub struct Vm {
    /// The VM's small-block allocator (see [`crate::alloc::LuaHeap`]). Declared first, so
    /// that it is dropped first and hands the state back to mlua's allocator before the
    /// state closes.
    #[cfg(not(feature = "luajit"))]
    _heap: Option<crate::alloc::LuaHeap>,
    lua: Lua,
    new_profile: Function,
    envs: EnvBuilder,
    base_path: String,
    base_cpath: String,
    chunks: RefCell<PathMap<ChunkEntry>>,
    request_envs: RefCell<PathMap<EnvEntry>>,
    persistent_envs: RefCell<PathMap<EnvEntry>>,
    generation: Cell<u64>,
    poisoned: Cell<bool>,
    /// Lua heap size after the last full collection.
    collected_at: Cell<usize>,
    /// When the VM's last request ended.
    last_used: Cell<Option<Instant>>,
    /// Requests ended since the last full collection.
    since_collect: Cell<u32>,
    /// Whether the last request left more than [`IDLE_GARBAGE`] uncollected.
    garbage_left: Cell<bool>,
    /// Whether the last lookup of a script file read it (for mod_lua's debug lines).
    last_load: Cell<Option<Load>>,
    /// The request API's C functions, when the setup installed it (looked up once here
    /// rather than in the state's app data on every call).
    request_fns: Option<std::rc::Rc<crate::luac::RequestFns>>,
}

/// A script file read by a VM: for the first time, or again because it changed (or
/// `LuaCodeCache never`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    First,
    Again,
}

impl Vm {
    #[allow(unsafe_code)]
    pub fn new(setup: &VmSetup) -> mlua::Result<Vm> {
        // SAFETY (of the mlua call): mod_lua opens every standard library, including `debug`,
        // and lets scripts load C modules; an unsafe state is what scripts expect.
        let made = unsafe { Lua::unsafe_new() };
        // The `Lua` mlua makes runs a full collection when it is dropped (its clones do not),
        // which on a VM's close would mark the whole heap just before `lua_close` frees it
        // all: dropped here, it collects the few objects of the fresh state instead.
        let lua = made.clone();
        drop(made);
        (setup.install)(&lua)?;
        let (new_profile, env_mt, pkg_mt, loaded_mt, require_in, copy_globals) =
            prelude(&lua)?.call::<(Function, Table, Table, Table, Function, Function)>(())?;
        let envs = EnvBuilder::new(
            &lua,
            EnvParts {
                env_mt,
                pkg_mt,
                loaded_mt,
                require_in,
                copy_globals,
            },
        )?;
        let package: Table = lua.globals().get("package")?;
        let base_path: String = package.get("path")?;
        let base_cpath: String = package.get("cpath")?;
        // Lua 5.4's generational collector: a VM holds a large long-lived heap (libraries,
        // compiled scripts, environments) and each request adds short-lived garbage, which
        // minor collections free without marking the old heap again. Measured against the
        // incremental mode: compute under `once` +20% requests/s, child RSS 20-30% lower.
        #[cfg(feature = "lua54")]
        lua.gc_set_mode(mlua::prelude::LuaGcMode::Generational(
            mlua::prelude::LuaGcGenParams::default(),
        ));
        let request_fns = lua
            .app_data_ref::<std::rc::Rc<crate::luac::RequestFns>>()
            .map(|f| std::rc::Rc::clone(&f));
        Ok(Vm {
            #[cfg(not(feature = "luajit"))]
            _heap: crate::alloc::LuaHeap::install(&lua),
            lua,
            new_profile,
            envs,
            base_path,
            base_cpath,
            chunks: RefCell::default(),
            request_envs: RefCell::default(),
            persistent_envs: RefCell::default(),
            generation: Cell::new(0),
            poisoned: Cell::new(false),
            collected_at: Cell::new(0),
            last_used: Cell::new(None),
            since_collect: Cell::new(0),
            garbage_left: Cell::new(false),
            last_load: Cell::new(None),
            request_fns,
        })
    }

    /// The request API's C functions (None when the VM's setup did not install the API).
    pub fn request_fns(&self) -> Option<&crate::luac::RequestFns> {
        self.request_fns.as_deref()
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Marks the VM as unfit for reuse (a panic went through it).
    pub fn poison(&self) {
        self.poisoned.set(true);
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.get()
    }

    /// Forgets request-scope environments (called when the VM's request ends), and collects
    /// the VM's garbage every [`COLLECT_EVERY`] requests when there is more than
    /// [`IDLE_GARBAGE`] of it (or at once past [`MAX_GARBAGE`]). Collecting whenever there
    /// was more than [`IDLE_GARBAGE`] meant a full collection on every request that allocated
    /// that much, on top of the collector's own cycles. VMs that then sit idle are
    /// collected by [`Vm::shed_garbage`].
    ///
    /// Returns when the request ended.
    pub fn end_request(&self) -> Instant {
        self.request_envs.borrow_mut().clear();
        let now = Instant::now();
        self.last_used.set(Some(now));
        let n = self.since_collect.get() + 1;
        self.since_collect.set(n);
        let garbage = self
            .lua
            .used_memory()
            .saturating_sub(self.collected_at.get());
        if garbage > MAX_GARBAGE || (garbage > IDLE_GARBAGE && n >= COLLECT_EVERY) {
            self.shed_garbage();
        } else {
            self.garbage_left.set(garbage > IDLE_GARBAGE);
        }
        now
    }

    /// Whether at `now` the VM has idled at least `after` since its last request.
    pub fn idled(&self, now: Instant, after: Duration) -> bool {
        self.last_used
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) >= after)
    }

    /// Whether the last request left more than [`IDLE_GARBAGE`] uncollected.
    pub fn garbage_left(&self) -> bool {
        self.garbage_left.get()
    }

    /// Whether at `now` the VM has idled at least `after` since its last request, which left
    /// more than [`IDLE_GARBAGE`] uncollected. (Cheap: pools ask while holding their lock.)
    pub fn has_idle_garbage(&self, now: Instant, after: Duration) -> bool {
        self.garbage_left() && self.idled(now, after)
    }

    /// Collects all garbage (an idle VM allocates nothing, so Lua's collector would leave it
    /// until the VM is used again).
    pub fn shed_garbage(&self) {
        let _ = self.lua.gc_collect();
        self.collected_at.set(self.lua.used_memory());
        self.since_collect.set(0);
        self.garbage_left.set(false);
    }

    /// Finds `function` in the script's environment for `mode`, loading or reloading the
    /// script as the code cache requires and running its top level where a new environment
    /// (or a reloaded script) needs it.
    pub fn resolve(
        &self,
        spec: &ChunkSpec<'_>,
        mode: EnvMode,
        function: &str,
    ) -> Result<Function, VmError> {
        self.resolve_with_env(spec, mode, function).map(|(f, _)| f)
    }

    /// [`Vm::resolve`], also returning the environment the function sees as its globals.
    pub fn resolve_with_env(
        &self,
        spec: &ChunkSpec<'_>,
        mode: EnvMode,
        function: &str,
    ) -> Result<(Function, Table), VmError> {
        let env = self.resolve_env(spec, mode)?;
        match env.get::<Value>(function)? {
            Value::Function(f) => Ok((f, env)),
            _ => Err(VmError::NotAFunction),
        }
    }

    /// The environment a script's entry functions are looked up in for `mode`, loading or
    /// reloading the script as the code cache requires and running its top level where a new
    /// environment (or a reloaded script) needs it.
    pub fn resolve_env(&self, spec: &ChunkSpec<'_>, mode: EnvMode) -> Result<Table, VmError> {
        let (code, generation, profile) = self.chunk(spec)?;
        match self.env_map(mode) {
            None => match &code.code {
                Code::Text(f) => self
                    .envs
                    .build_and_run(&profile.table, f)
                    .map_err(|e| VmError::TopLevel(ErrorText::of(&e).one_line())),
                Code::Binary(_) => {
                    let env = self.fresh_env(&profile.table, mode)?;
                    self.run_chunk(&code, &env)?;
                    Ok(env)
                }
            },
            Some(map) => self.cached_env(map, spec.path, generation, &code, &profile.table, mode),
        }
    }

    /// For an inline block without a function name: the block's body (to be called with
    /// the environment and `r`, see [`Vm::call_body`]) and the environment for `mode`.
    pub fn resolve_body(
        &self,
        spec: &ChunkSpec<'_>,
        mode: EnvMode,
    ) -> Result<(Rc<CodeCell>, Table), VmError> {
        let (code, generation, profile) = self.chunk(spec)?;
        let env = match self.env_map(mode) {
            None => self.fresh_env(&profile.table, mode)?,
            Some(map) => self.env_only(map, spec.path, generation, &profile.table, mode)?,
        };
        Ok((code, env))
    }

    /// Runs a nameless block's body in `env` with `arg` as `r`; returns its first result.
    pub fn call_body(
        &self,
        code: &CodeCell,
        env: &Table,
        arg: impl mlua::IntoLua,
    ) -> mlua::Result<Value> {
        match &code.code {
            #[cfg(not(feature = "luajit"))]
            Code::Text(f) => f.call::<Value>((env, arg)),
            #[cfg(feature = "luajit")]
            Code::Text(f) => {
                f.set_environment(env.clone())?;
                f.call::<Value>(arg)
            }
            Code::Binary(_) => Err(mlua::Error::RuntimeError(
                "inline blocks are never precompiled".into(),
            )),
        }
    }

    /// Where environments of `mode` are kept (None: a fresh one for every call).
    fn env_map(&self, mode: EnvMode) -> Option<&RefCell<PathMap<EnvEntry>>> {
        match mode {
            EnvMode::Once => None,
            EnvMode::Request => Some(&self.request_envs),
            EnvMode::Persistent => Some(&self.persistent_envs),
        }
    }

    /// A new environment for `mode` (see [`EnvBuilder::build`]). Those that live for the VM's
    /// lifetime get the globals copied in once; per-call and per-request ones stay empty and
    /// fall through (a copy would cost more than it saves).
    // The first call's path (loading, running a top level): kept out of the frames of
    // every call's path.
    #[inline(never)]
    fn fresh_env(&self, profile: &Table, mode: EnvMode) -> mlua::Result<Table> {
        self.envs.build(profile, mode == EnvMode::Persistent)
    }

    fn env_only(
        &self,
        map: &RefCell<PathMap<EnvEntry>>,
        key: &[u8],
        generation: u64,
        profile: &Table,
        mode: EnvMode,
    ) -> Result<Table, VmError> {
        if let Some(e) = map.borrow().get(key) {
            return Ok(e.env.clone());
        }
        let env = self.fresh_env(profile, mode)?;
        remember(map, key, &env, generation);
        Ok(env)
    }

    fn cached_env(
        &self,
        map: &RefCell<PathMap<EnvEntry>>,
        key: &[u8],
        generation: u64,
        code: &CodeCell,
        profile: &Table,
        mode: EnvMode,
    ) -> Result<Table, VmError> {
        let existing = map.borrow().get(key).map(|e| (e.env.clone(), e.generation));
        let env = match existing {
            Some((env, g)) if g == generation => return Ok(env),
            // The script changed: run the new version in the existing environment, keeping
            // its globals (mod_lua reloads into the live VM the same way).
            Some((env, _)) => env,
            None => self.fresh_env(profile, mode)?,
        };
        self.run_chunk(code, &env)?;
        remember(map, key, &env, generation);
        Ok(env)
    }

    // The first call's path (loading, running a top level): kept out of the frames of
    // every call's path.
    #[inline(never)]
    fn run_chunk(&self, code: &CodeCell, env: &Table) -> Result<(), VmError> {
        let result = match &code.code {
            #[cfg(not(feature = "luajit"))]
            Code::Text(f) => f.call::<()>(env),
            #[cfg(feature = "luajit")]
            Code::Text(f) => f
                .set_environment(env.clone())
                .and_then(|_| f.call::<()>(())),
            Code::Binary(bytes) => self
                .lua
                .load(&bytes[..])
                .set_name(code.name.clone())
                .set_mode(ChunkMode::Binary)
                .set_environment(env.clone())
                .call::<()>(()),
        };
        result.map_err(|e| VmError::TopLevel(ErrorText::of(&e).one_line()))
    }

    /// Returns the compiled script, (re)loading it per the code-cache policy, its generation
    /// (bumped on every reload) and its module profile.
    fn chunk(&self, spec: &ChunkSpec<'_>) -> Result<(Rc<CodeCell>, u64, Rc<Profile>), VmError> {
        let path = spec.path;
        // Only `stat` looks at the file again; httpd's own stat is used when we have it.
        // Inline code never changes while the configuration lives.
        let codecache = if spec.inline.is_some() {
            CodeCache::Forever
        } else {
            spec.codecache
        };
        let current = match codecache {
            CodeCache::Stat => match spec.stamp {
                Some(s) => Some(s),
                None => FileStamp::of_path(path),
            },
            _ => None,
        };
        let (cached, known) = {
            let chunks = self.chunks.borrow();
            match chunks.get(path) {
                None => (None, false),
                Some(e) => {
                    let fresh = match codecache {
                        CodeCache::Forever => true,
                        CodeCache::Never => false,
                        CodeCache::Stat => current.is_some() && current == e.stamp,
                    };
                    (
                        fresh.then(|| (e.code.clone(), e.generation, e.profile.clone())),
                        true,
                    )
                }
            }
        };
        if let Some((code, generation, p)) = cached {
            if p.paths == spec.package_paths && p.cpaths == spec.package_cpaths {
                return Ok((code, generation, p));
            }
            return self.reprofile(spec, code, generation, current);
        }
        if spec.inline.is_none() {
            self.last_load
                .set(Some(if known { Load::Again } else { Load::First }));
        }
        let code = Rc::new(self.compile(spec)?);
        let generation = self.next_generation();
        self.reprofile(spec, code, generation, current)
    }

    /// Records `code` for the script with a module profile for the paths in effect.
    // The first call's path (loading, running a top level): kept out of the frames of
    // every call's path.
    #[inline(never)]
    fn reprofile(
        &self,
        spec: &ChunkSpec<'_>,
        code: Rc<CodeCell>,
        generation: u64,
        current: Option<FileStamp>,
    ) -> Result<(Rc<CodeCell>, u64, Rc<Profile>), VmError> {
        let path = spec.path;
        // Scripts find modules next to themselves; inline blocks next to their config file.
        let origin = spec.inline.map(|i| i.file.as_bytes()).unwrap_or(path);
        let dir = parent_dir(std::str::from_utf8(origin).unwrap_or("/"));
        let p = munge_path(&self.base_path, "./?.lua", dir, spec.package_paths);
        let c = munge_path(&self.base_cpath, "./?.so", dir, spec.package_cpaths);
        let profile = Rc::new(Profile {
            paths: spec.package_paths.to_vec(),
            cpaths: spec.package_cpaths.to_vec(),
            table: self.new_profile.call::<Table>((p, c))?,
        });
        self.chunks.borrow_mut().insert(
            path.to_vec(),
            ChunkEntry {
                code: code.clone(),
                stamp: current,
                generation,
                profile: profile.clone(),
            },
        );
        Ok((code, generation, profile))
    }

    /// Whether the last script lookup read a file (once: the answer is cleared).
    pub fn take_last_load(&self) -> Option<Load> {
        self.last_load.take()
    }

    fn next_generation(&self) -> u64 {
        self.generation.set(self.generation.get() + 1);
        self.generation.get()
    }

    // The first call's path (loading, running a top level): kept out of the frames of
    // every call's path.
    #[inline(never)]
    fn compile(&self, spec: &ChunkSpec<'_>) -> Result<CodeCell, VmError> {
        if let Some(inline) = spec.inline {
            let name = format!("@{}", inline.file);
            return self.compile_text(&wrap_inline(inline.source.as_bytes()), name);
        }
        let shown = String::from_utf8_lossy(spec.path).into_owned();
        let bytes = std::fs::read(&shown)
            .map_err(|e| VmError::Load(format!("cannot open {shown}: {e}")))?;
        let name = format!("@{shown}");
        if bytes.first() == Some(&0x1b) {
            return Ok(CodeCell {
                code: Code::Binary(bytes.into()),
                name,
            });
        }
        self.compile_text(&wrap_source(&bytes), name)
    }

    fn compile_text(&self, source: &[u8], name: String) -> Result<CodeCell, VmError> {
        let f = self
            .lua
            .load(source)
            .set_name(name.clone())
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| VmError::Load(ErrorText::of(&e).one_line()))?;
        Ok(CodeCell {
            code: Code::Text(f),
            name,
        })
    }
}

/// Prepares a script's text as `luaL_loadfile` would (skip a UTF-8 BOM and a `#` first line,
/// keeping line numbers) and, for Lua 5.2+, makes the chunk take its environment as the first
/// argument: `local _ENV = ...;` on line 1, so line numbers stay those of the file.
pub fn wrap_source(bytes: &[u8]) -> Vec<u8> {
    let mut body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if body.first() == Some(&b'#') {
        let nl = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
        body = &body[nl..];
    }
    prefixed(
        if cfg!(feature = "luajit") {
            ""
        } else {
            "local _ENV = ...; "
        },
        body,
    )
}

/// An inline block's text: it takes its environment and, for nameless blocks, `r`:
/// `local _ENV, r = ...;` on the (blank) first line keeps the config file's line numbers.
pub fn wrap_inline(body: &[u8]) -> Vec<u8> {
    prefixed(
        if cfg!(feature = "luajit") {
            "local r = ...; "
        } else {
            "local _ENV, r = ...; "
        },
        body,
    )
}

/// `prefix` on the same line as the start of `body` (no line is added).
fn prefixed(prefix: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len());
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests;
