//! The request object `r` (mod_lua's `Apache2.Request`) and its header/notes tables
//! (`Apr.Table`). Fields are read live from the request on every access; methods check their
//! arguments with Lua's wording. Safe code over `httpd::LiveRequest`.
#![forbid(unsafe_code)]

use super::args::{arg_error, caller_where, Args};
use super::{encode, form, websocket};
use crate::apr::{has_nul, Table as AprTable};
use crate::httpd::{self, AliveGuard, BodyError, Level, LiveRequest, Request};
use crate::luac::{
    self, Kind, RawFn, RawUserData, Repeated, RequestFns, Returned, Stack, DELEGATE,
};
use mlua::{FromLuaMulti, Function, IntoLuaMulti, LightUserData, Lua, MultiValue, Table, Value};
use std::ffi::{c_int, CStr, CString};
use std::rc::Rc;

/// `r` as a Lua userdata.
pub struct RequestHandle {
    live: LiveRequest,
}

impl RequestHandle {
    pub fn new(live: LiveRequest) -> Self {
        RequestHandle { live }
    }
}

fn gone_text() -> String {
    "request object used after its request ended (do not keep 'r' in globals or upvalues)".into()
}

fn gone() -> mlua::Error {
    mlua::Error::RuntimeError(gone_text())
}

fn req(live: &LiveRequest) -> mlua::Result<Request<'_>> {
    live.get().ok_or_else(gone)
}

pub(super) fn lua_bytes(lua: &Lua, s: impl AsRef<[u8]>) -> mlua::Result<Value> {
    lua.create_string(s).map(Value::String)
}

/// A C string for httpd, or a Lua error if the bytes hold a NUL.
pub(super) fn c_arg(lua: &Lua, what: &str, bytes: Vec<u8>) -> mlua::Result<CString> {
    CString::new(bytes).map_err(|_| {
        mlua::Error::RuntimeError(format!("{}{what} contains a NUL byte", caller_where(lua)))
    })
}

// ---------------------------------------------------------------------------------------------
// Apr.Table

/// Which of the request's tables a [`TableHandle`] refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TableKind {
    HeadersIn,
    HeadersOut,
    ErrHeadersOut,
    Notes,
    SubprocessEnv,
}

impl TableKind {
    const ALL: [TableKind; 5] = [
        TableKind::HeadersIn,
        TableKind::HeadersOut,
        TableKind::ErrHeadersOut,
        TableKind::Notes,
        TableKind::SubprocessEnv,
    ];

    /// The method that returns a plain-table snapshot (`r:headers_in_table()`, …).
    fn snapshot_method(self) -> &'static str {
        match self {
            TableKind::HeadersIn => "headers_in_table",
            TableKind::HeadersOut => "headers_out_table",
            TableKind::ErrHeadersOut => "err_headers_out_table",
            TableKind::Notes => "notes_table",
            TableKind::SubprocessEnv => "subprocess_env_table",
        }
    }

    fn name(self) -> &'static str {
        match self {
            TableKind::HeadersIn => "headers_in",
            TableKind::HeadersOut => "headers_out",
            TableKind::ErrHeadersOut => "err_headers_out",
            TableKind::Notes => "notes",
            TableKind::SubprocessEnv => "subprocess_env",
        }
    }

    fn of<'a>(self, r: Request<'a>) -> AprTable<'a> {
        match self {
            TableKind::HeadersIn => r.headers_in(),
            TableKind::HeadersOut => r.headers_out(),
            TableKind::ErrHeadersOut => r.err_headers_out(),
            TableKind::Notes => r.notes(),
            TableKind::SubprocessEnv => r.subprocess_env(),
        }
    }

    /// Notes never reach the wire, so (as in mod_lua) they may hold line breaks.
    fn allows_newlines(self) -> bool {
        self == TableKind::Notes
    }
}

/// One of the request's APR tables as a Lua userdata (`r.headers_out` etc.).
pub struct TableHandle {
    live: LiveRequest,
    kind: TableKind,
}

/// Keys and values that would let a script split a response or truncate a value are refused
/// (mod_lua turns `\n` into a space and lets `\r` through).
fn checked<'v>(
    s: &Stack<'v>,
    what: impl FnOnce() -> String,
    kind: TableKind,
    i: c_int,
    fname: &str,
) -> Result<&'v CStr, String> {
    let bytes = s.string_arg(i, fname)?;
    let newline = !kind.allows_newlines() && bytes.iter().any(|&b| b == b'\r' || b == b'\n');
    match s.cstr(i) {
        Some(c) if !newline => Ok(c),
        _ => {
            let shown = String::from_utf8_lossy(bytes).escape_default().to_string();
            Err(format!(
                "{}{} '{shown}' for table '{}' contains {}: refused",
                s.caller_where(),
                what(),
                kind.name(),
                if newline { "CR or LF" } else { "a NUL byte" }
            ))
        }
    }
}

/// `self` (argument 1) of a raw method as a `T` with its live request, or luaL_checkudata's
/// message naming the type expected.
fn raw_self<'l, T: RawUserData>(
    s: &Stack<'l>,
    fname: &str,
    expected: &str,
    live: fn(&T) -> &LiveRequest,
) -> Result<(&'l T, Request<'l>), String> {
    let h = s.userdata::<T>(1).ok_or_else(|| {
        s.arg_error(
            1,
            fname,
            &format!("{expected} expected, got {}", s.type_name(1)),
        )
    })?;
    Ok((h, live(h).get().ok_or_else(gone_text)?))
}

/// The table handle a table function was called on, and its live request.
fn raw_table<'l>(s: &Stack<'l>, fname: &str) -> Result<(&'l TableHandle, Request<'l>), String> {
    raw_self(s, fname, "Apr.Table", |h: &TableHandle| &h.live)
}

/// `r.headers_in[key]`.
fn table_index(s: &Stack<'_>) -> Returned {
    let (h, r) = raw_table(s, "get")?;
    s.string_arg(2, "get")?;
    match s.cstr(2) {
        Some(key) => push_cstr(s, h.kind.of(r).get(key)),
        None => s.push_nil(),
    }
    Ok(1)
}

/// `r.headers_out[key] = value` (nil removes it).
fn table_newindex(s: &Stack<'_>) -> Returned {
    let (h, r) = raw_table(s, "set")?;
    let key = checked(s, || "key".into(), h.kind, 2, "set")?;
    let table = h.kind.of(r);
    match s.kind(3) {
        Kind::None | Kind::Nil => table.unset(key),
        _ => {
            let what = || format!("value of '{}'", String::from_utf8_lossy(key.to_bytes()));
            let v = checked(s, what, h.kind, 3, "set")?;
            table.set(key, v);
        }
    }
    Ok(0)
}

/// `tostring(r.headers_in)`: as mod_lua's (Lua's default for a named type), also once the
/// request has ended.
fn table_tostring(s: &Stack<'_>) -> Returned {
    s.push_bytes(s.default_tostring(1, "Apr.Table").as_bytes());
    Ok(1)
}

/// Beyond mod_lua: `pairs(r.headers_in)` iterates a snapshot of every entry in order, taken
/// when the loop starts (so a loop may set or unset entries as it goes); Lua 5.2+ (LuaJIT has
/// no __pairs: use r:headers_in_table() there).
fn table_pairs(s: &Stack<'_>) -> Returned {
    let (h, r) = raw_table(s, "pairs")?;
    let entries = h.kind.of(r).entries();
    let items: Vec<Option<&[u8]>> = entries
        .iter()
        .flat_map(|(k, v)| [Some(k.to_bytes()), Some(v.to_bytes())])
        .collect();
    s.push_sequence(1, items.into_iter())?;
    s.push_pair_iterator()?;
    s.push_nil();
    s.push_nil();
    Ok(3)
}

// ---------------------------------------------------------------------------------------------
// Fields

/// Field names whose value is a request string (nil when unset).
fn string_field<'a>(r: Request<'a>, key: &[u8]) -> Option<Option<&'a CStr>> {
    Some(match key {
        b"method" => r.method(),
        b"uri" => r.uri(),
        b"args" => r.args(),
        b"filename" => r.filename(),
        b"hostname" => r.hostname(),
        b"handler" => r.handler(),
        b"content_type" => r.content_type(),
        b"content_encoding" => r.content_encoding(),
        b"protocol" => r.protocol(),
        b"the_request" => r.the_request(),
        b"unparsed_uri" => r.unparsed_uri(),
        b"path_info" => r.path_info(),
        b"user" => r.user(),
        b"ap_auth_type" => r.ap_auth_type(),
        b"canonical_filename" => r.canonical_filename(),
        b"range" => r.range(),
        b"log_id" => r.log_id(),
        b"useragent_ip" => r.useragent_ip(),
        b"document_root" => r.document_root(),
        b"context_document_root" => r.context_document_root(),
        b"context_prefix" => r.context_prefix(),
        _ => return None,
    })
}

fn table_field(key: &[u8]) -> Option<TableKind> {
    Some(match key {
        b"headers_in" => TableKind::HeadersIn,
        b"headers_out" => TableKind::HeadersOut,
        b"err_headers_out" => TableKind::ErrHeadersOut,
        b"notes" => TableKind::Notes,
        b"subprocess_env" => TableKind::SubprocessEnv,
        _ => return None,
    })
}

/// mod_lua's `allowoverrides` text: "All", "None", or five slots (empty ones keep their space).
fn overrides_text(opts: i32) -> String {
    use crate::ffi::{OR_ALL, OR_AUTHCFG, OR_FILEINFO, OR_INDEXES, OR_LIMIT, OR_OPTIONS};
    if opts & OR_ALL == OR_ALL {
        return "All".into();
    }
    if opts == 0 {
        return "None".into();
    }
    let slot = |bit: i32, name: &'static str| if opts & bit != 0 { name } else { "" };
    [
        slot(OR_LIMIT, "Limit"),
        slot(OR_OPTIONS, "Options"),
        slot(OR_FILEINFO, "FileInfo"),
        slot(OR_AUTHCFG, "AuthCfg"),
        slot(OR_INDEXES, "Indexes"),
    ]
    .join(" ")
}

/// mod_lua's `options` text: six slots, the last "All" when every OPT_ALL bit is set.
fn options_text(opts: i32) -> String {
    use crate::ffi::{OPT_ALL, OPT_EXECCGI, OPT_INCLUDES, OPT_INDEXES, OPT_MULTI, OPT_SYM_LINKS};
    let slot = |bit: i32, name: &'static str| if opts & bit != 0 { name } else { "" };
    [
        slot(OPT_INDEXES, "Indexes"),
        slot(OPT_INCLUDES, "Includes"),
        slot(OPT_SYM_LINKS, "FollowSymLinks"),
        slot(OPT_EXECCGI, "ExecCGI"),
        slot(OPT_MULTI, "MultiViews"),
        if opts & OPT_ALL == OPT_ALL { "All" } else { "" },
    ]
    .join(" ")
}

pub(super) fn push_cstr(s: &Stack<'_>, v: Option<&CStr>) {
    match v {
        Some(v) => s.push_bytes(v.to_bytes()),
        None => s.push_nil(),
    }
}

/// The request a raw method was called on (`self`, argument 1).
pub(super) fn raw_request<'l>(
    s: &Stack<'l>,
    fname: &str,
) -> Result<(&'l RequestHandle, Request<'l>), String> {
    if s.kind(1) != Kind::UserData && checks_userdata_first(fname) {
        let detail = format!("userdata expected, got {}", s.type_name(1));
        return Err(s.arg_error(1, fname, &detail));
    }
    raw_self(s, fname, "Apache2.Request", |h: &RequestHandle| &h.live)
}

/// Whether mod_lua's method `name` checks that `self` is a userdata before it checks for a
/// request (its `bad self` message then says "userdata expected").
fn checks_userdata_first(name: &str) -> bool {
    matches!(
        name,
        "flush"
            | "sendfile"
            | "add_input_filter"
            | "get_server_name_for_url"
            | "set_document_root"
            | "set_context_info"
            | "expr"
            | "make_etag"
            | "escape_logitem"
            | "os_escape_path"
            | "send_interim_response"
            | "custom_response"
            | "set_keepalive"
            | "stat"
            | "get_direntries"
            | "runtime_dir_relative"
            | "regex"
            | "scoreboard_process"
            | "scoreboard_worker"
    )
}

/// `r.key`: a method (upvalue 2 holds the method table), else a field read live.
fn request_index(s: &Stack<'_>) -> Returned {
    if s.lookup_upvalue(2) {
        return Ok(1);
    }
    let Some(key) = s.str(2) else {
        s.push_nil();
        return Ok(1);
    };
    if is_unmade_method(key) {
        // The methods table's __call makes it (see `install`).
        return Ok(DELEGATE);
    }
    let (h, r) = raw_request(s, "index")?;
    if let Some(v) = string_field(r, key) {
        push_cstr(s, v);
        return Ok(1);
    }
    if let Some(kind) = table_field(key) {
        s.push_userdata(TableHandle { live: h.live, kind });
        return Ok(1);
    }
    match key {
        b"status" => s.push_int(r.status() as i64),
        b"port" => s.push_int(r.server_port() as i64),
        b"remaining" => s.push_int(r.remaining()),
        b"limit_req_body" => s.push_int(r.limit_req_body() as i32 as i64),
        b"started" => s.push_int(httpd::server_started()),
        b"assbackwards" => s.push_bool(r.assbackwards()),
        b"is_initial_req" => s.push_bool(r.is_initial_req()),
        b"is_https" => s.push_bool(r.is_https()),
        b"some_auth_required" => s.push_bool(r.some_auth_required()),
        b"server_name" => push_cstr(s, Some(r.server_name().unwrap_or(c"localhost"))),
        b"auth_name" => push_cstr(s, Some(r.auth_name().unwrap_or(c""))),
        b"basic_auth_pw" => push_cstr(s, Some(r.basic_auth_pw().unwrap_or(c""))),
        b"banner" => s.push_bytes(httpd::server_banner().as_bytes()),
        b"server_built" => s.push_bytes(httpd::server_built().as_bytes()),
        b"allowoverrides" => s.push_bytes(overrides_text(r.allow_overrides()).as_bytes()),
        b"options" => s.push_bytes(options_text(r.allow_options()).as_bytes()),
        b"proxyreq" => match r.proxyreq() {
            0 => s.push_bytes(b"PROXYREQ_NONE"),
            1 => s.push_bytes(b"PROXYREQ_PROXY"),
            2 => s.push_bytes(b"PROXYREQ_REVERSE"),
            3 => s.push_bytes(b"PROXYREQ_RESPONSE"),
            _ => s.push_nil(),
        },
        _ => s.push_nil(),
    }
    Ok(1)
}

/// mod_lua `req_newindex`: nine writable fields (`ap_auth_type` too, as in Debian's 2.4.71,
/// though mod_lua's 2.4 manual says eight); values checked as luaL_check* would.
fn request_newindex(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "newindex")?;
    let key = s.string_arg(2, "newindex")?;
    let text = || -> Result<&[u8], String> {
        let v = s.string_arg(3, "newindex")?;
        if has_nul(v) {
            return Err(format!(
                "{}value for request field '{}' contains a NUL byte",
                s.caller_where(),
                String::from_utf8_lossy(key)
            ));
        }
        Ok(v)
    };
    match key {
        b"status" => r.set_status(s.integer_arg(3, "newindex")? as i32),
        b"proxyreq" => r.set_proxyreq(s.integer_arg(3, "newindex")? as i32),
        b"uri" => r.set_uri(text()?),
        b"args" => r.set_args(Some(text()?)),
        b"filename" => r.set_filename(text()?),
        b"handler" => r.set_handler(Some(text()?)),
        b"user" => r.set_user(Some(text()?)),
        b"ap_auth_type" => r.set_ap_auth_type(Some(text()?)),
        b"content_type" => r.set_content_type(text()?),
        _ => {
            return Err(format!(
                "Property [{}] may not be set on a request_rec",
                String::from_utf8_lossy(key)
            ))
        }
    }
    Ok(0)
}

/// `tostring(r)`: "Apache2.Request: 0x…", as mod_lua's.
fn request_tostring(s: &Stack<'_>) -> Returned {
    s.push_bytes(s.default_tostring(1, "Apache2.Request").as_bytes());
    Ok(1)
}

/// r:puts(...): every argument, as strings, in order.
fn puts(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "puts")?;
    match s.len() {
        // r:puts() writes nothing, as mod_lua's loop over no arguments.
        ..=1 => Ok(0),
        2 => {
            r.write(s.string_arg(2, "puts")?);
            Ok(0)
        }
        _ => puts_gathered(s, r),
    }
}

/// r:puts with several arguments. Short arguments go to httpd in one write (each ap_rwrite
/// walks the output filter chain's buffer); what came before a bad argument is still written,
/// as mod_lua does. A function of its own, so that the one-argument call's frame has no
/// gathering buffer.
#[inline(never)]
fn puts_gathered(s: &Stack<'_>, r: Request<'_>) -> Returned {
    let mut gathered = [0u8; PUTS_GATHER];
    let mut used = 0;
    for n in 2..=s.len() {
        let arg = match s.string_arg(n, "puts") {
            Ok(a) => a,
            Err(e) => {
                r.write(&gathered[..used]);
                return Err(e);
            }
        };
        if used + arg.len() > PUTS_GATHER {
            r.write(&gathered[..used]);
            used = 0;
        }
        if arg.len() > PUTS_GATHER {
            r.write(arg);
        } else {
            gathered[used..used + arg.len()].copy_from_slice(arg);
            used += arg.len();
        }
    }
    r.write(&gathered[..used]);
    Ok(0)
}

/// Bytes of r:puts arguments gathered into one write.
const PUTS_GATHER: usize = 256;

/// r:write(s) → bytes written (or -1).
fn write(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "write")?;
    s.push_int(r.write(s.string_arg(2, "write")?));
    Ok(1)
}

// ---------------------------------------------------------------------------------------------
// Methods

/// Argument `n` (`v`; None when missing) of a method written with mlua as the request, with
/// luaL_checkudata's message when it is not one (`self` is argument 1; db objects take `r` as
/// argument 2).
pub(super) fn request_arg<'u>(
    lua: &Lua,
    fname: &str,
    n: usize,
    v: Option<&'u Value>,
) -> mlua::Result<&'u RequestHandle> {
    let found = match v {
        Some(Value::UserData(ud)) => luac::userdata_of::<RequestHandle>(lua, ud),
        _ => None,
    };
    found.ok_or_else(|| {
        let got = v.map_or_else(|| "no value".into(), |v| luac::value_type_name(lua, v));
        let expected = match v {
            Some(Value::UserData(_)) => "Apache2.Request",
            _ if checks_userdata_first(fname) => "userdata",
            _ => "Apache2.Request",
        };
        arg_error(lua, n, fname, &format!("{expected} expected, got {got}"))
    })
}

/// The tag an API function returns (followed by the message) instead of raising;
/// [`raising`] turns it into a plain string error.
static FAIL_TAG: u8 = 0;

fn fail_tag() -> Value {
    Value::LightUserData(fail_light())
}

fn fail_light() -> LightUserData {
    LightUserData((&raw const FAIL_TAG).cast_mut().cast())
}

/// `f` (an [`api_fn`]) as scripts call it: its failures raise plain strings.
pub(super) fn raising(lua: &Lua, f: Function) -> mlua::Result<Function> {
    luac::raising(lua, f, fail_light())
}

/// The text a failed call raises: our messages as they are, anything else as mlua prints it.
/// An error raised by Lua code the call ran (a metamethod) comes without the traceback mlua
/// appends to it: the script gets the message, as it would from mod_lua.
fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::RuntimeError(s) => s
            .split_once("\nstack traceback:")
            .map_or(s.as_str(), |(message, _)| message)
            .to_string(),
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        other => other.to_string(),
    }
}

/// A Rust function for [`raising`]: returns its results, or FAIL and the message.
pub(super) fn api_fn<A, R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, A) -> mlua::Result<R> + 'static,
{
    lua.create_function(move |lua, args: MultiValue| {
        match A::from_lua_multi(args, lua).and_then(|a| f(lua, a)) {
            Ok(r) => r.into_lua_multi(lua),
            Err(e) => (fail_tag(), error_text(&e)).into_lua_multi(lua),
        }
    })
}

/// The names of the methods made on first use (the same in every VM of the process).
type NameSet =
    std::collections::HashSet<&'static [u8], std::hash::BuildHasherDefault<crate::vm::PathHasher>>;

static LAZY_NAMES: std::sync::OnceLock<NameSet> = std::sync::OnceLock::new();

/// Whether `key` names a method this VM makes on first use (and has not made yet, or the
/// methods table would have had it).
fn is_unmade_method(key: &[u8]) -> bool {
    LAZY_NAMES.get().is_some_and(|names| names.contains(key))
}

/// Makes one method in a VM, as scripts call it.
type Maker = Box<dyn Fn(&Lua) -> mlua::Result<Function>>;

/// A method's body with its results already converted.
type ErasedApi = Rc<dyn Fn(&Lua, MultiValue) -> mlua::Result<MultiValue>>;

/// The request API's methods, made in a VM only when a script first reaches for one (`r:puts`,
/// `r:md5`, `r.strcmp_match`, …): a VM holds the few its scripts use instead of all of them.
/// Made eagerly, the mlua functions kept about 20 KB of every VM's Lua heap alive and the C
/// functions another 13 KB (each a closure over its Rust function, plus its name); under
/// `LuaScope server` a child keeps a VM per busy thread.
pub(super) struct Methods {
    makers: std::cell::RefCell<MakerMap>,
}

/// Every VM builds this map (under `LuaScope conn`, every connection): sized up front, and
/// with the module's own hasher rather than SipHash seeded from the kernel's random source.
type MakerMap = std::collections::HashMap<
    &'static str,
    Maker,
    std::hash::BuildHasherDefault<crate::vm::PathHasher>,
>;

/// More than the methods there are (about 140), so that the map never grows.
const METHODS_CAPACITY: usize = 160;

impl Default for Methods {
    fn default() -> Methods {
        Methods {
            makers: std::cell::RefCell::new(MakerMap::with_capacity_and_hasher(
                METHODS_CAPACITY,
                Default::default(),
            )),
        }
    }
}

impl Methods {
    /// Registers `f` as the method `name`, made in a VM (as an [`api_fn`]) on first use.
    pub(super) fn api<F, R>(&self, name: &'static str, f: F)
    where
        F: Fn(&Lua, MultiValue) -> mlua::Result<R> + 'static,
        R: IntoLuaMulti,
    {
        // One erased type for every method: mlua's callback glue (a few KB of code for each
        // distinct closure type) is then built once instead of once per method.
        let f: ErasedApi = Rc::new(move |lua, args| f(lua, args)?.into_lua_multi(lua));
        self.add(name, move |lua| {
            let f = Rc::clone(&f);
            raising(lua, api_fn(lua, move |lua, args: MultiValue| f(lua, args))?)
        });
    }

    /// Registers the C function `f` (see luac) as the method `name`.
    pub(super) fn raw(&self, name: &'static str, f: RawFn) {
        self.add(name, move |lua| luac::function(lua, f));
    }

    /// Registers `make` as what makes the method `name` in a VM.
    pub(super) fn add(
        &self,
        name: &'static str,
        make: impl Fn(&Lua) -> mlua::Result<Function> + 'static,
    ) {
        self.makers.borrow_mut().insert(name, Box::new(make));
    }
}

/// Adds a colon-style method: checks `self`, resolves the live request, hands the arguments
/// (1-based, `self` at 1) to `f`.
pub(super) fn method<F, R>(methods: &Methods, name: &'static str, f: F) -> mlua::Result<()>
where
    F: Fn(&Lua, Request<'_>, &Args<'_>) -> mlua::Result<R> + 'static,
    R: IntoLuaMulti,
{
    method_with_handle(methods, name, move |lua, _, r, a| f(lua, r, a))
}

/// [`method`], also handing `f` the handle `r` was called through, for objects that must not
/// outlive the call that made them.
pub(super) fn method_with_handle<F, R>(
    methods: &Methods,
    name: &'static str,
    f: F,
) -> mlua::Result<()>
where
    F: Fn(&Lua, &LiveRequest, Request<'_>, &Args<'_>) -> mlua::Result<R> + 'static,
    R: IntoLuaMulti,
{
    methods.api(name, move |lua, args| {
        let first = args.front().cloned();
        let h = request_arg(lua, name, 1, first.as_ref())?;
        let r = req(&h.live)?;
        f(lua, &h.live, r, &Args::new(lua, name, args))
    });
    Ok(())
}

/// mod_lua's default `max` for r:parsebody() (MAX_STRING_LEN).
const DEFAULT_PARSEBODY_MAX: i64 = 8192;
/// Most parts r:parsebody() accepts in a multipart body.
pub const MULTIPART_MAX_PARTS: usize = 1000;
/// Ceiling on bodies read into memory when neither the caller nor LimitRequestBody sets one.
const BODY_CEILING: u64 = 1 << 30;

/// Pushes parseargs/parsebody's two tables: the last value per key (mod_lua's parseargs keeps
/// only the last, its parsebody reads the pairs backwards and keeps the first it sees), and
/// every value in order; both sized for `size` keys up front.
fn push_form_tables<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    s: &Stack<'_>,
    size: usize,
    pairs: impl Iterator<Item = (K, V)>,
) -> Returned {
    s.push_form_tables(size, pairs, Repeated::KeepLast)?;
    Ok(2)
}

/// r:headers_in_table() and the other snapshots: table `K` of [`TableKind::ALL`] as
/// parseargs-shaped tables.
fn snapshot<const K: usize>(s: &Stack<'_>) -> Returned {
    let kind = TableKind::ALL[K];
    let (_, r) = raw_request(s, kind.snapshot_method())?;
    let entries = kind.of(r).entries();
    // The first value of a repeated key, as mod_lua's apr_table_do callback keeps it.
    s.push_form_tables(
        entries.len(),
        entries.iter().map(|(k, v)| (k.to_bytes(), v.to_bytes())),
        Repeated::KeepFirst,
    )?;
    Ok(2)
}

/// r:parseargs() → simple, multi.
fn parseargs(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "parseargs")?;
    let args = r.args().map(|a| a.to_bytes()).unwrap_or(b"");
    push_form_tables(s, form::pair_count(args), form::parse_args(args))
}

/// The limit for reading a body: the caller's `max` if positive, else LimitRequestBody, and
/// never unbounded.
fn body_limit(r: Request<'_>, max: i64) -> u64 {
    if max > 0 {
        return max as u64;
    }
    match r.limit_req_body() {
        n if n > 0 => n as u64,
        _ => BODY_CEILING,
    }
}

fn body_error_text(e: BodyError, limit: u64) -> String {
    match e {
        BodyError::TooLarge => {
            format!("Request body was larger than the permitted size ({limit} bytes).")
        }
        BodyError::Status(s) => format!("Request body refused (HTTP {s})."),
        BodyError::Read => "Request body could not be read.".to_string(),
    }
}

/// r:parsebody([max]) → simple, multi[, error].
fn parsebody(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "parsebody")?;
    let max = s.opt_integer_arg(2, "parsebody", DEFAULT_PARSEBODY_MAX)?;
    let limit = body_limit(r, max);
    let ctype = r
        .headers_in()
        .get(c"Content-Type")
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let lower = ctype.to_ascii_lowercase();
    let multipart = lower.starts_with(b"multipart/form-data");
    let fail = |why: String| -> Returned {
        push_form_tables(s, 0, std::iter::empty::<(&[u8], &[u8])>())?;
        s.push_bytes(why.as_bytes());
        Ok(3)
    };
    if !multipart && !lower.starts_with(b"application/x-www-form-urlencoded") {
        return push_form_tables(s, 0, std::iter::empty::<(&[u8], &[u8])>());
    }
    let body = match r.read_body(limit) {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => return fail(body_error_text(e, limit)),
    };
    if multipart {
        match form::parse_multipart(ctype, &body, MULTIPART_MAX_PARTS) {
            Ok(parts) => push_form_tables(
                s,
                parts.len(),
                parts
                    .iter()
                    .map(|p| (p.name.as_slice(), p.value.as_slice())),
            ),
            Err(e) => fail(e.to_string()),
        }
    } else {
        push_form_tables(s, form::pair_count(&body), form::parse_urlencoded(&body))
    }
}

/// r:requestbody([filename [, maxsize]]) → the body and its length; with a file name, the
/// body's length once written there; nil/false and a message when it cannot be had.
fn requestbody(s: &Stack<'_>) -> Returned {
    const NAME: &str = "requestbody";
    let (_, r) = raw_request(s, NAME)?;
    let filename = match s.kind(2) {
        Kind::None | Kind::Nil => None,
        _ => Some(s.string_arg(2, NAME)?),
    };
    let max = s.opt_integer_arg(3, NAME, 0)?;
    let limit = body_limit(r, max);
    let Some(path) = filename else {
        match r.read_body(limit) {
            Ok(Some(body)) => {
                s.push_bytes(&body);
                s.push_int(body.len() as i64);
                return Ok(2);
            }
            Ok(None) => return Ok(0),
            Err(e) => {
                let msg = match e {
                    BodyError::TooLarge => {
                        "Request body was larger than the permitted size.".to_string()
                    }
                    e => body_error_text(e, limit),
                };
                s.push_nil();
                s.push_bytes(msg.as_bytes());
                return Ok(2);
            }
        }
    };
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let failed = |msg: String| {
        s.push_bool(false);
        s.push_bytes(msg.as_bytes());
        Ok(2)
    };
    // Unlike mod_lua, an existing file is truncated first.
    let mut file = match std::fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return failed(format!("cannot open {}: {e}", path.display())),
    };
    // Streamed to a file, the body is bounded by the caller's maxsize or LimitRequestBody
    // only (no in-memory ceiling).
    let limit = match (max, r.limit_req_body()) {
        (m, _) if m > 0 => m as u64,
        (_, l) if l > 0 => l as u64,
        _ => u64::MAX,
    };
    let mut io_error = None;
    let result = r.read_body_with(limit, |chunk| {
        file.write_all(chunk).map_err(|e| {
            io_error = Some(e);
            BodyError::Read
        })
    });
    match (result, io_error) {
        (_, Some(e)) => failed(format!("cannot write {}: {e}", path.display())),
        (Ok(Some(n)), None) => {
            s.push_int(n as i64);
            Ok(1)
        }
        (Ok(None), None) => failed("the request has no body".into()),
        (Err(e), None) => failed(body_error_text(e, limit)),
    }
}

/// r:wsread() → payload, fin, opcode; nothing once the connection is closed (see `ws::read`).
fn wsread(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "wsread")?;
    match ws::read(r) {
        Some((payload, fin, opcode)) => {
            s.push_bytes(&payload);
            s.push_bool(fin);
            s.push_int(opcode.into());
            Ok(3)
        }
        None => Ok(0),
    }
}

/// r:wswrite(data [, raw]) → whether the frame went out (see `ws::write`).
fn wswrite(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "wswrite")?;
    let data = s.string_arg(2, "wswrite")?;
    let raw = s.boolean_flag(3);
    s.push_bool(ws::write(r, data, raw));
    Ok(1)
}

/// r:sendfile(path) → bytes sent, or false.
fn sendfile(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "sendfile")?;
    s.strict_string_arg(2, "sendfile")?;
    match s.cstr(2).and_then(|path| r.sendfile(path)) {
        Some(n) => s.push_int(n),
        None => s.push_bool(false),
    }
    Ok(1)
}

/// r:construct_url(uri) → an absolute URL for this server.
fn construct_url(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "construct_url")?;
    push_cstr(s, r.construct_url(s.cstr_arg(2, "construct_url", "uri")?));
    Ok(1)
}

/// r:setcookie{key=, value=, expires=, secure=, httponly=, path=, domain=} or the legacy
/// r:setcookie(key, value [, secure [, expires]]) — mod_lua's header layout, exactly, and its
/// checks: the table's fields are read as `t.key` reads them and checked as mod_lua checks
/// them on the top of its stack (hence its `bad argument #-2` wording).
fn setcookie(s: &Stack<'_>) -> Returned {
    const NAME: &str = "setcookie";
    const FIELDS: [&CStr; 7] = [
        c"key",
        c"value",
        c"expires",
        c"secure",
        c"httponly",
        c"path",
        c"domain",
    ];
    let (_, r) = raw_request(s, NAME)?;
    let (key, value, expires, secure, httponly, path, domain);
    if s.kind(2) == Kind::Table {
        let f = s.fields(2, &FIELDS)?;
        let at = |i: usize| f.len() - FIELDS.len() as c_int + 1 + i as c_int;
        // luaL_checkstring / luaL_optstring on the field just read (index -1).
        let string = |i: usize, default: Option<&'static [u8]>| match f.kind(at(i)) {
            Kind::Nil if default.is_some() => Ok(default.unwrap_or_default()),
            Kind::String | Kind::Number => f.string_arg(at(i), NAME),
            _ => {
                let detail = format!("string expected, got {}", f.type_name(at(i)));
                Err(f.arg_error(-1, NAME, &detail))
            }
        };
        key = string(0, None)?;
        value = string(1, None)?;
        expires = match f.kind(at(2)) {
            Kind::Nil => 0,
            _ => f.integer(at(2)).map_err(|d| f.arg_error(-1, NAME, &d))?,
        };
        secure = f.boolean_flag(at(3));
        httponly = f.boolean_flag(at(4));
        path = string(5, Some(b"/"))?;
        domain = string(6, Some(b""))?;
    } else {
        key = s.string_arg(2, NAME)?;
        value = s.string_arg(3, NAME)?;
        secure = s.boolean_flag(4);
        expires = s.opt_integer_arg(5, NAME, 0)?;
        httponly = false;
        path = b"";
        domain = b"";
    }
    for (what, v) in [("path", path), ("domain", domain)] {
        if v.iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0 || b == b';')
        {
            return Err(format!(
                "{}cookie {what} contains CR, LF, NUL or ';': refused",
                s.caller_where()
            ));
        }
    }
    // "key=value; Secure; Expires=…; HttpOnly; Domain=…; Path=…;", each part after the
    // first left empty (its space kept) when unset.
    let mut header = encode::escape_urlencoded(key);
    header.push(b'=');
    header.extend(encode::escape_urlencoded(value));
    header.extend_from_slice(b"; ");
    if secure {
        header.extend_from_slice(b"Secure;");
    }
    header.push(b' ');
    if expires > 0 {
        if let Some(date) = httpd::rfc822_date(expires) {
            header.extend_from_slice(format!("Expires={date};").as_bytes());
        }
    }
    header.push(b' ');
    if httponly {
        header.extend_from_slice(b"HttpOnly;");
    }
    for (name, v) in [(&b" Domain="[..], domain), (b" Path=", path)] {
        match v.is_empty() {
            true => header.push(b' '),
            false => {
                header.extend_from_slice(name);
                header.extend_from_slice(v);
                header.push(b';');
            }
        }
    }
    let header = CString::new(header).map_err(|_| "cookie contains a NUL byte".to_string())?;
    r.err_headers_out().add(c"Set-Cookie", &header);
    Ok(0)
}

/// The cookie's raw value, or nothing (not even nil) as mod_lua.
fn getcookie(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "getcookie")?;
    let name = s.string_arg(2, "getcookie")?;
    let entries = r.headers_in().entries();
    let lines = entries
        .iter()
        .filter(|(k, _)| {
            k.to_bytes().eq_ignore_ascii_case(b"Cookie")
                || k.to_bytes().eq_ignore_ascii_case(b"Cookie2")
        })
        .map(|(_, v)| v.to_bytes());
    match form::cookie_value(lines, name) {
        Ok(Some(v)) => {
            s.push_bytes(&v);
            Ok(1)
        }
        Ok(None) => Ok(0),
        Err(form::DuplicateCookie) => {
            r.log_as_core(
                Level::Err,
                // httpd's own line for it (ap_cookie_read, which mod_lua calls).
                &format!(
                    "AH00011: ap_cookie: client submitted cookie '{}' more than once: {}",
                    String::from_utf8_lossy(name),
                    r.uri().map(|u| u.to_string_lossy()).unwrap_or_default()
                ),
            );
            Ok(0)
        }
    }
}

/// The logging methods, most severe first (`r:emerg` … `r:trace8`).
const LOG_LEVELS: [(&str, Level); 16] = [
    ("emerg", Level::Emerg),
    ("alert", Level::Alert),
    ("crit", Level::Crit),
    ("err", Level::Err),
    ("warn", Level::Warn),
    ("notice", Level::Notice),
    ("info", Level::Info),
    ("debug", Level::Debug),
    ("trace1", Level::Trace1),
    ("trace2", Level::Trace2),
    ("trace3", Level::Trace3),
    ("trace4", Level::Trace4),
    ("trace5", Level::Trace5),
    ("trace6", Level::Trace6),
    ("trace7", Level::Trace7),
    ("trace8", Level::Trace8),
];

/// `r:info(msg)` and the other levels ([`LOG_LEVELS`]`[I]`): the message as the script wrote
/// it, as mod_lua logs it (log watchers match on it); the script's position goes to httpd as
/// the line's source, which its default ErrorLogFormat shows at debug level and above.
fn log_message<const I: usize>(s: &Stack<'_>) -> Returned {
    let (name, level) = LOG_LEVELS[I];
    let (_, r) = raw_request(s, name)?;
    let msg = s.string_arg(2, name)?;
    if r.is_level(level) {
        let (file, line) = s.caller_source();
        r.log_at(level, file, line, msg);
    }
    Ok(0)
}

/// `r:flush()` → whether the output so far went out.
fn flush(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "flush")?;
    s.push_bool(r.flush());
    Ok(1)
}

/// The encoders (`r:escape(s)`, …): a string in (numbers refused where mod_lua checks the
/// type), one string out.
fn encoder<const STRICT: bool>(
    s: &Stack<'_>,
    name: &str,
    f: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Returned {
    raw_request(s, name)?;
    let input = if STRICT {
        s.strict_string_arg(2, name)?
    } else {
        s.string_arg(2, name)?
    };
    s.push_bytes(&f(input));
    Ok(1)
}

fn escape(s: &Stack<'_>) -> Returned {
    encoder::<true>(s, "escape", encode::escape_urlencoded)
}

/// Nothing (not even nil) on a malformed escape, as mod_lua.
fn unescape(s: &Stack<'_>) -> Returned {
    raw_request(s, "unescape")?;
    match encode::unescape_urlencoded(s.strict_string_arg(2, "unescape")?) {
        Some(v) => {
            s.push_bytes(&v);
            Ok(1)
        }
        None => Ok(0),
    }
}

fn escape_html(s: &Stack<'_>) -> Returned {
    encoder::<false>(s, "escape_html", encode::escape_html)
}

fn base64_encode(s: &Stack<'_>) -> Returned {
    encoder::<true>(s, "base64_encode", encode::base64_encode)
}

fn base64_decode(s: &Stack<'_>) -> Returned {
    encoder::<true>(s, "base64_decode", encode::base64_decode)
}

/// `r:md5(s)` / `r:sha1(s)`: the digest in lowercase hex.
fn digest<const N: usize>(s: &Stack<'_>, name: &str, f: fn(&[u8]) -> [u8; N]) -> Returned {
    raw_request(s, name)?;
    let bytes = f(s.strict_string_arg(2, name)?);
    let mut hex = [0u8; 40];
    s.push_bytes(encode::hex_lower(&bytes, &mut hex));
    Ok(1)
}

fn md5(s: &Stack<'_>) -> Returned {
    digest(s, "md5", httpd::md5_raw)
}

fn sha1(s: &Stack<'_>) -> Returned {
    digest(s, "sha1", httpd::sha1_raw)
}

/// M05: `r:add_output_filter(name)` adds a registered filter (Lua or httpd's, e.g. DEFLATE)
/// to this request; returns nothing, as mod_lua.
fn add_output_filter(s: &Stack<'_>) -> Returned {
    const NAME: &str = "add_output_filter";
    let (_, r) = raw_request(s, NAME)?;
    let name = s.cstr_arg(2, NAME, "filter name")?;
    r.log(
        Level::Debug,
        &format!("AH01485: adding output filter {}", name.to_string_lossy()),
    );
    r.add_output_filter(name);
    Ok(0)
}

/// M06: `r:add_input_filter(name)` → whether httpd knows the filter.
fn add_input_filter(s: &Stack<'_>) -> Returned {
    const NAME: &str = "add_input_filter";
    let (_, r) = raw_request(s, NAME)?;
    let name = s.strict_cstr_arg(2, NAME, "filter name")?;
    s.push_bool(r.add_input_filter(name));
    Ok(1)
}

fn get_server_name_for_url(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "get_server_name_for_url")?;
    push_cstr(s, r.server_name_for_url());
    Ok(1)
}

fn set_document_root(s: &Stack<'_>) -> Returned {
    const NAME: &str = "set_document_root";
    let (_, r) = raw_request(s, NAME)?;
    let root = s.strict_cstr_arg(2, NAME, "document root")?;
    r.set_document_root(root.to_bytes());
    Ok(0)
}

fn set_context_info(s: &Stack<'_>) -> Returned {
    const NAME: &str = "set_context_info";
    let (_, r) = raw_request(s, NAME)?;
    let prefix = s.strict_cstr_arg(2, NAME, "prefix")?;
    let root = s.strict_cstr_arg(3, NAME, "document root")?;
    r.set_context_info(prefix.to_bytes(), root.to_bytes());
    Ok(0)
}

/// `r:expr(expression)` → its value, or false (nil when evaluating failed) and httpd's message.
fn expr(s: &Stack<'_>) -> Returned {
    const NAME: &str = "expr";
    let (_, r) = raw_request(s, NAME)?;
    let e = s.strict_cstr_arg(2, NAME, "expression")?;
    match r.expr(e) {
        Ok(b) => {
            s.push_bool(b);
            Ok(1)
        }
        Err((b, msg)) => {
            s.push_bool(b);
            s.push_bytes(msg.as_bytes());
            Ok(2)
        }
    }
}

/// Works as mod_lua's manual documents (mod_lua's own always raises a type error).
fn make_etag(s: &Stack<'_>) -> Returned {
    let (_, r) = raw_request(s, "make_etag")?;
    push_cstr(s, r.make_etag(s.truthy(2)));
    Ok(1)
}

fn escape_logitem(s: &Stack<'_>) -> Returned {
    const NAME: &str = "escape_logitem";
    let (_, r) = raw_request(s, NAME)?;
    push_cstr(s, r.escape_logitem(s.strict_cstr_arg(2, NAME, "string")?));
    Ok(1)
}

/// `r:os_escape_path(path [, partial])`: `partial` counts only as a boolean, as in mod_lua.
fn os_escape_path(s: &Stack<'_>) -> Returned {
    const NAME: &str = "os_escape_path";
    let (_, r) = raw_request(s, NAME)?;
    let path = s.strict_cstr_arg(2, NAME, "path")?;
    push_cstr(s, r.os_escape_path(path, s.boolean_flag(3)));
    Ok(1)
}

/// Builds the request API of a new VM (methods, field access, table access).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let m = Methods::default();
    // §5a Output, §5b request data and §5c encoding are raw functions (below).
    super::server::install(&m)?;
    super::db::install(&m)?;

    // M36: r:htpassword(pw [, alg [, cost]]) → hash | false, error.
    method(&m, "htpassword", |lua, _, a| {
        let pw = c_arg(lua, "password", a.strict_string(2)?)?;
        match httpd::htpassword(&pw, a.opt_integer(3, 0)?, a.opt_integer(4, 0)?) {
            Ok(h) => lua_bytes(lua, h)?.into_lua_multi(lua),
            Err(e) => (false, e).into_lua_multi(lua),
        }
    })?;

    // §5h WebSockets (through the connection filters, so they work under TLS too).
    method(&m, "wsupgrade", |lua, r, _| ws::upgrade(lua, r))?;
    method(&m, "wsclose", |_, r, a| {
        ws::close(r, a.opt_integer(2, websocket::CLOSE_NORMAL as i64)? as u16);
        Ok(())
    })?;
    method(&m, "wsping", |_, r, _| Ok(ws::ping(r)))?;
    method(&m, "wspeek", |_, r, _| {
        let state = r.root().state();
        Ok(r.connection().input_pending(state.scratch(r)))
    })?;

    // What runs on most requests is plain C functions over the Lua stack (see luac).
    let raw: &[(&str, RawFn)] = &[
        ("puts", puts),
        ("write", write),
        ("flush", flush),
        ("getcookie", getcookie),
        ("setcookie", setcookie),
        ("requestbody", requestbody),
        ("sendfile", sendfile),
        ("construct_url", construct_url),
        ("wsread", wsread),
        ("wswrite", wswrite),
        ("escape", escape),
        ("unescape", unescape),
        ("escape_html", escape_html),
        ("base64_encode", base64_encode),
        ("base64_decode", base64_decode),
        ("md5", md5),
        ("sha1", sha1),
        (LOG_LEVELS[0].0, log_message::<0>),
        (LOG_LEVELS[1].0, log_message::<1>),
        (LOG_LEVELS[2].0, log_message::<2>),
        (LOG_LEVELS[3].0, log_message::<3>),
        (LOG_LEVELS[4].0, log_message::<4>),
        (LOG_LEVELS[5].0, log_message::<5>),
        (LOG_LEVELS[6].0, log_message::<6>),
        (LOG_LEVELS[7].0, log_message::<7>),
        (LOG_LEVELS[8].0, log_message::<8>),
        (LOG_LEVELS[9].0, log_message::<9>),
        (LOG_LEVELS[10].0, log_message::<10>),
        (LOG_LEVELS[11].0, log_message::<11>),
        (LOG_LEVELS[12].0, log_message::<12>),
        (LOG_LEVELS[13].0, log_message::<13>),
        (LOG_LEVELS[14].0, log_message::<14>),
        (LOG_LEVELS[15].0, log_message::<15>),
        ("parseargs", parseargs),
        ("parsebody", parsebody),
        ("add_output_filter", add_output_filter),
        ("add_input_filter", add_input_filter),
        ("get_server_name_for_url", get_server_name_for_url),
        ("set_document_root", set_document_root),
        ("set_context_info", set_context_info),
        ("expr", expr),
        ("make_etag", make_etag),
        ("escape_logitem", escape_logitem),
        ("os_escape_path", os_escape_path),
        (TableKind::ALL[0].snapshot_method(), snapshot::<0>),
        (TableKind::ALL[1].snapshot_method(), snapshot::<1>),
        (TableKind::ALL[2].snapshot_method(), snapshot::<2>),
        (TableKind::ALL[3].snapshot_method(), snapshot::<3>),
        (TableKind::ALL[4].snapshot_method(), snapshot::<4>),
    ];
    for &(name, f) in raw {
        m.raw(name, f);
    }
    super::server::install_raw(&m);

    let methods = lua.create_table()?;
    // `r.name` for a name that is no field and no method made yet: request_index hands the
    // call (methods, r, name) to the methods table, whose __call makes the method, keeps it
    // there (later lookups find it directly) and returns it; nil for other names.
    let makers = Rc::new(m.makers.into_inner());
    LAZY_NAMES.get_or_init(|| makers.keys().map(|k| k.as_bytes()).collect());
    let make = lua.create_function(move |lua, (methods, _r, key): (Table, Value, Value)| {
        let Value::String(key) = key else {
            return Ok(Value::Nil);
        };
        let Some(maker) = key.to_str().ok().and_then(|k| makers.get(&*k)) else {
            return Ok(Value::Nil);
        };
        let f = maker(lua)?;
        methods.raw_set(&key, &f)?;
        Ok(Value::Function(f))
    })?;
    let lazy = lua.create_table()?;
    lazy.raw_set("__call", make)?;
    methods.set_metatable(Some(lazy))?;
    luac::define::<RequestHandle>(
        lua,
        &[
            ("__index", luac::closure(lua, request_index, &methods)?),
            ("__newindex", luac::function(lua, request_newindex)?),
            ("__tostring", luac::function(lua, request_tostring)?),
        ],
    )?;
    let mut table_entries = vec![
        ("__index", luac::function(lua, table_index)?),
        ("__newindex", luac::function(lua, table_newindex)?),
        ("__tostring", luac::function(lua, table_tostring)?),
    ];
    if cfg!(not(feature = "luajit")) {
        table_entries.push(("__pairs", luac::function(lua, table_pairs)?));
    }
    luac::define::<TableHandle>(lua, &table_entries)?;
    lua.set_app_data(Rc::new(RequestFns::new(lua)?));
    Ok(())
}

/// Calls the function `name` of `env` as `name(r)` with an `r` for `req` that is usable
/// during this call only; None when `name` is not a function.
pub fn call_entry(
    fns: &RequestFns,
    env: &Table,
    name: &str,
    req: Request<'_>,
) -> mlua::Result<Option<Value>> {
    let (live, _alive) = fns.liveness.enter(req);
    fns.call(env, name, &live)
}

/// As [`call_entry`], as `name(r, args…)`.
pub fn call_entry_with_args(
    fns: &RequestFns,
    env: &Table,
    name: &str,
    req: Request<'_>,
    args: Vec<Value>,
) -> mlua::Result<Option<Value>> {
    let (live, _alive) = fns.liveness.enter(req);
    fns.call_with_args(env, name, &live, args)
}

/// Runs `f` with an `r` for `req` that is usable until `f` returns.
pub fn with_request<T>(
    fns: &RequestFns,
    req: Request<'_>,
    f: impl FnOnce(Value) -> mlua::Result<T>,
) -> mlua::Result<T> {
    let (live, _alive) = fns.liveness.enter(req);
    f(fns.request(&live)?)
}

/// An `r` for a filter's coroutine, usable until the returned guard is dropped (which the
/// filter does before its request ends).
pub fn filter_request(lua: &Lua, req: Request<'_>) -> mlua::Result<(Value, AliveGuard<'static>)> {
    let fns = request_fns(lua)?;
    let (live, alive) = fns.liveness.enter_for_request(req);
    Ok((fns.request(&live)?, alive))
}

/// The VM's RequestFns, shared so that no app-data borrow is held while scripts run (they may
/// set app data of their own, e.g. r:dbacquire).
fn request_fns(lua: &Lua) -> mlua::Result<Rc<RequestFns>> {
    lua.app_data_ref::<Rc<RequestFns>>()
        .map(|f| Rc::clone(&f))
        .ok_or_else(|| mlua::Error::RuntimeError("the request API is not installed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_texts_leave_out_mlua_tracebacks() {
        let raised =
            mlua::Error::RuntimeError("t.lua:3: boom\nstack traceback:\n\t[C]: in ?".into());
        assert_eq!(error_text(&raised), "t.lua:3: boom");
        let plain = mlua::Error::RuntimeError("bad argument #1 to 'x' (y)".into());
        assert_eq!(error_text(&plain), "bad argument #1 to 'x' (y)");
    }

    #[test]
    fn override_and_option_texts() {
        use crate::ffi::{OPT_ALL, OPT_INDEXES, OPT_SYM_LINKS, OR_ALL, OR_AUTHCFG, OR_LIMIT};
        assert_eq!(overrides_text(OR_ALL), "All");
        assert_eq!(overrides_text(0), "None");
        assert_eq!(overrides_text(OR_LIMIT | OR_AUTHCFG), "Limit   AuthCfg ");
        assert_eq!(
            options_text(OPT_INDEXES | OPT_SYM_LINKS),
            "Indexes  FollowSymLinks   "
        );
        assert_eq!(
            options_text(OPT_ALL),
            "Indexes Includes FollowSymLinks ExecCGI  All"
        );
    }
}

/// WebSocket I/O for the `r:ws*` methods.
mod ws {
    use super::websocket::{
        self as proto, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
    };
    use crate::dispatch::WebSocket;
    use crate::httpd::{self, Level, Request};
    use mlua::{IntoLuaMulti, Lua, MultiValue};

    fn send(r: Request<'_>, opcode: u8, payload: &[u8]) -> bool {
        let state = r.root().state();
        let header = proto::frame_header(true, opcode, payload.len());
        r.connection()
            .write_flush(state.scratch(r), &[&header, payload])
            .is_ok()
    }

    /// r:wsupgrade(): checks the handshake and answers 101 on the connection itself (no
    /// `Transfer-Encoding` header, unlike mod_lua). true, or nothing when refused.
    pub fn upgrade(lua: &Lua, r: Request<'_>) -> mlua::Result<MultiValue> {
        let h = r.headers_in();
        let get = |k: &std::ffi::CStr| h.get(k).map(|v| v.to_bytes());
        let check = proto::check_handshake(
            r.method().map(|m| m.to_bytes()).unwrap_or(b""),
            get(c"Upgrade"),
            get(c"Connection"),
            get(c"Sec-WebSocket-Version"),
            get(c"Sec-WebSocket-Key"),
        );
        if let Err(why) = check {
            r.log(
                Level::Notice,
                &format!("AH02666: Websocket: Upgrade from HTTP to Websocket failed: {why}"),
            );
            return Ok(MultiValue::new());
        }
        let accept = proto::accept_key(get(c"Sec-WebSocket-Key").unwrap_or(b""), httpd::sha1_raw);
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let state = r.root().state();
        if r.connection()
            .write_flush(state.scratch(r), &[response.as_bytes()])
            .is_err()
        {
            return Ok(MultiValue::new());
        }
        r.set_status(101);
        state.set_websocket(WebSocket::Open);
        r.log(
            Level::Debug,
            "AH03012: Websocket: Upgraded from HTTP to Websocket",
        );
        true.into_lua_multi(lua)
    }

    /// Sends a close frame (once) and ends the conversation.
    pub fn close(r: Request<'_>, code: u16) {
        let state = r.root().state();
        if state.websocket() == WebSocket::Open {
            send(r, OP_CLOSE, &proto::close_payload(code));
            state.set_websocket(WebSocket::Closed);
        }
    }

    /// r:wswrite(data [, raw]): a text frame, or a binary one when `data` is not UTF-8 (a text
    /// frame must be); `data` as it is with raw = true.
    pub fn write(r: Request<'_>, data: &[u8], raw: bool) -> bool {
        if r.root().state().websocket() != WebSocket::Open {
            return false;
        }
        if raw {
            let state = r.root().state();
            return r
                .connection()
                .write_flush(state.scratch(r), &[data])
                .is_ok();
        }
        let opcode = if std::str::from_utf8(data).is_ok() {
            OP_TEXT
        } else {
            OP_BINARY
        };
        send(r, opcode, data)
    }

    /// One frame from the client: (fin, opcode, payload), after protocol checks.
    enum Frame {
        Data {
            fin: bool,
            opcode: u8,
            payload: Vec<u8>,
        },
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn read_frame(r: Request<'_>) -> Result<Frame, u16> {
        let state = r.root().state();
        let conn = r.connection();
        let bb = state.scratch(r);
        let head = conn.read_exact(bb, 2).map_err(|_| 0u16)?;
        if proto::reserved_bits(head[0]) {
            return Err(proto::CLOSE_PROTOCOL_ERROR);
        }
        let (fin, opcode, masked, len7) = proto::parse_first_two([head[0], head[1]]);
        if !masked {
            // RFC 6455 §5.1: a server must close on an unmasked client frame.
            return Err(proto::CLOSE_PROTOCOL_ERROR);
        }
        let len = match len7 {
            126 => u16::from_be_bytes(
                conn.read_exact(bb, 2)
                    .map_err(|_| 0u16)?
                    .try_into()
                    .unwrap(),
            ) as u64,
            127 => u64::from_be_bytes(
                conn.read_exact(bb, 8)
                    .map_err(|_| 0u16)?
                    .try_into()
                    .unwrap(),
            ),
            n => n as u64,
        };
        let control = opcode >= 0x8;
        if control && (len > 125 || !fin) {
            return Err(proto::CLOSE_PROTOCOL_ERROR);
        }
        if len > proto::MAX_PAYLOAD {
            return Err(proto::CLOSE_TOO_BIG);
        }
        let key: [u8; 4] = conn
            .read_exact(bb, 4)
            .map_err(|_| 0u16)?
            .try_into()
            .unwrap();
        let mut payload = conn.read_exact(bb, len as usize).map_err(|_| 0u16)?;
        proto::unmask(&mut payload, key);
        Ok(match opcode {
            OP_TEXT | OP_BINARY | OP_CONTINUATION => Frame::Data {
                fin,
                opcode,
                payload,
            },
            OP_PING => Frame::Ping(payload),
            OP_PONG => Frame::Pong,
            OP_CLOSE => Frame::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            _ => return Err(proto::CLOSE_PROTOCOL_ERROR),
        })
    }

    /// r:wsread() → payload, fin, opcode (1 text, 2 binary, 0 continuation); nothing once the
    /// client closed or broke the protocol. Pings are answered with a pong carrying their
    /// payload; pongs are skipped.
    pub fn read(r: Request<'_>) -> Option<(Vec<u8>, bool, u8)> {
        if r.root().state().websocket() != WebSocket::Open {
            return None;
        }
        loop {
            match read_frame(r) {
                Ok(Frame::Data {
                    fin,
                    opcode,
                    payload,
                }) => return Some((payload, fin, opcode)),
                Ok(Frame::Ping(payload)) => {
                    if !send(r, OP_PONG, &payload) {
                        return None;
                    }
                }
                Ok(Frame::Pong) => {}
                Ok(Frame::Close(code)) => {
                    close(
                        r,
                        code.filter(|c| *c >= 1000).unwrap_or(proto::CLOSE_NORMAL),
                    );
                    return None;
                }
                Err(0) => {
                    r.root().state().set_websocket(WebSocket::Closed);
                    return None;
                }
                Err(code) => {
                    r.log(Level::Info, &format!("Websocket: closing with {code}"));
                    close(r, code);
                    return None;
                }
            }
        }
    }

    /// r:wsping(): sends a ping and waits for the pong (answering the client's pings).
    pub fn ping(r: Request<'_>) -> bool {
        if r.root().state().websocket() != WebSocket::Open || !send(r, OP_PING, b"") {
            return false;
        }
        loop {
            match read_frame(r) {
                Ok(Frame::Pong) => return true,
                Ok(Frame::Ping(p)) => {
                    if !send(r, OP_PONG, &p) {
                        return false;
                    }
                }
                Ok(Frame::Data { .. }) => {}
                Ok(Frame::Close(_)) | Err(_) => {
                    close(r, proto::CLOSE_NORMAL);
                    return false;
                }
            }
        }
    }
}
