//! The `lua-script` handler (mod_lua `lua_handler`) and LuaMapHandler (`lua_map_handler`,
//! `lua_map_handler_fixups`), and how a failed call becomes a response and a log line.

use crate::config::{interpolate, mapped_script_path, DirConfig, MapHandler, Phase};
use crate::dispatch::{self, Entry, Failure, Outcome};
use crate::httpd::{self, FileType, Level, Request, DECLINED, DONE, HTTP_BAD_REQUEST, OK};
use std::borrow::Cow;
use std::ffi::{c_int, CStr};
use std::sync::Arc;

const HANDLER_NAME: &[u8] = b"lua-script";
const MAP_HANDLER_NAME: &[u8] = b"lua-map-handler";

/// An entry function's number as a hook status (out-of-range values make httpd answer 500,
/// as they do for mod_lua).
pub fn status(n: i64) -> c_int {
    n.clamp(c_int::MIN as i64, c_int::MAX as i64) as c_int
}

/// H12: `SetHandler lua-script` / `AddHandler lua-script .lua`.
pub fn lua_script(r: Request<'_>) -> c_int {
    if r.handler().map(|h| h.to_bytes()) != Some(HANDLER_NAME) {
        return DECLINED;
    }
    if matches!(r.file_type(), FileType::NoFile | FileType::Directory) {
        return DECLINED;
    }
    let (Some(cfg), Some(path)) = (r.dir_config::<DirConfig>(), r.filename()) else {
        return DECLINED;
    };
    // Unlike mod_lua, HEAD runs the script too: httpd drops the body, and the headers and
    // status are the ones GET would give.
    let entry = Entry {
        stamp: r.finfo_stamp(),
        ..Entry::file(path.to_bytes(), "handle")
    };
    let result = match dispatch::call(r, cfg, &entry) {
        Ok(Outcome::Number(n)) => status(n),
        Ok(Outcome::NotNumber) => OK,
        Err(f) => failed(r, cfg, &entry, Site::Handler, f),
    };
    finish(r, result)
}

/// Ends the response of a handler that ran: after r:wsupgrade the connection carries
/// WebSocket frames, so httpd must not add a response of its own and the connection ends
/// with the handler; a complete response (OK, DONE) is written out now (see
/// `Request::end_response`).
fn finish(r: Request<'_>, result: c_int) -> c_int {
    if r.root().state().websocket() != dispatch::WebSocket::None {
        r.connection().abort();
        return DONE;
    }
    if result == OK || result == DONE {
        r.end_response();
    }
    result
}

/// H13: runs the first LuaMapHandler whose pattern matches `r->uri` (any handler, any method).
pub fn map_handler(r: Request<'_>) -> c_int {
    let Some(cfg) = r.dir_config::<DirConfig>() else {
        return DECLINED;
    };
    if cfg.map_handlers.is_empty() {
        return DECLINED;
    }
    let Some(uri) = r.uri() else { return DECLINED };
    for mh in cfg.map_handlers.iter() {
        let (path, function) = match mapped_target(r, cfg, mh, uri) {
            Ok(Some(target)) => target,
            Ok(None) => continue,
            Err(status) => return status,
        };
        let entry = Entry::file(path.as_bytes(), &function);
        match dispatch::call(r, cfg, &entry) {
            Ok(Outcome::Number(n)) if n == DECLINED as i64 => continue,
            Ok(Outcome::Number(n)) => return finish(r, status(n)),
            Ok(Outcome::NotNumber) => {
                no_value(r, &function, &path);
                return finish(r, OK);
            }
            Err(f) => return failed(r, cfg, &entry, Site::MapHandler, f),
        }
    }
    DECLINED
}

/// A mapped script's path and entry function name.
type MapTarget<'c> = (Cow<'c, str>, Cow<'c, str>);

/// The script path and function name LuaMapHandler `mh` gives for `uri` (None when it does
/// not match), or the status to answer with. A function of its own: the match, the captures
/// and the path building stay out of the frame the script is called from (a worker thread's
/// stack stays as deep as its deepest call ever went).
#[inline(never)]
fn mapped_target<'c>(
    r: Request<'_>,
    cfg: &DirConfig,
    mh: &'c Arc<MapHandler>,
    uri: &CStr,
) -> Result<Option<MapTarget<'c>>, c_int> {
    // The fixups hook's match, when it was this mapping's and of this URI (only a request
    // the fixups hook claimed has one: others get no state here); else the regex again.
    let kept = r
        .root()
        .state_if_any()
        .and_then(|state| state.take_map_match_of(|k| k.is_by(mh) && k.is_for(uri)));
    let Some(found) = kept.map(|k| k.found).or_else(|| mh.regex.find(uri)) else {
        return Ok(None);
    };
    let caps = found.groups(uri.to_bytes());
    let Some(file) = mapped_script_path(&mh.file, &caps) else {
        refuse(r, mh, uri);
        return Err(HTTP_BAD_REQUEST);
    };
    let function = interpolate(&mh.function, &caps);
    let path = match httpd::merge_path(r.pool(), cfg.root(), &file) {
        Some(Cow::Owned(merged)) => Cow::Owned(merged),
        // Already in merged form (or not mergeable): the path as mapped.
        _ => file,
    };
    Ok(Some((path, function)))
}

#[cold]
#[inline(never)]
fn refuse(r: Request<'_>, mh: &MapHandler, uri: &CStr) {
    r.log(
        Level::Err,
        &format!(
            "lua: refusing LuaMapHandler {} -> {}: the URI '{}' would take the script path outside its directory",
            mh.pattern,
            mh.file,
            uri.to_string_lossy()
        ),
    );
}

#[cold]
#[inline(never)]
fn no_value(r: Request<'_>, function: &str, path: &str) {
    r.log(
        Level::Warn,
        &format!("AH02483: lua: Lua handler {function} in {path} did not return a value, assuming apache2.OK"),
    );
}

/// H10: claims the request for LuaMapHandler before mod_dir's FallbackResource does, and keeps
/// the match for the handler.
pub fn map_handler_fixups(r: Request<'_>) -> c_int {
    if r.handler().is_some() {
        return DECLINED;
    }
    let Some(cfg) = r.dir_config::<DirConfig>() else {
        return DECLINED;
    };
    let Some(uri) = r.uri() else { return DECLINED };
    for mh in cfg.map_handlers.iter() {
        if let Some(found) = mh.regex.find(uri) {
            r.root()
                .state()
                .keep_map_match(KeptMatch::new(mh, uri, found));
            r.set_handler(Some(MAP_HANDLER_NAME));
            return OK;
        }
    }
    DECLINED
}

/// The LuaMapHandler match the fixups hook found, kept for the handler, which needs the same
/// match a moment later: checking that neither the mapping nor the URI changed costs less
/// than running the regex again.
#[derive(Clone, Copy)]
pub struct KeptMatch {
    /// The LuaMapHandler that matched (its address: configurations outlive requests).
    handler: usize,
    uri: UriKey,
    found: httpd::Match,
}

/// A URI as a kept match knows it: where it is, its length and a hash of its bytes, so that a
/// URI replaced or changed in place is matched again.
#[derive(Clone, Copy, PartialEq, Eq)]
struct UriKey(usize, usize, u64);

impl UriKey {
    fn of(uri: &CStr) -> UriKey {
        let bytes = uri.to_bytes();
        // FNV-1a.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        UriKey(uri.as_ptr() as usize, bytes.len(), hash)
    }
}

impl KeptMatch {
    fn new(handler: &Arc<MapHandler>, uri: &CStr, found: httpd::Match) -> KeptMatch {
        KeptMatch {
            handler: Arc::as_ptr(handler) as usize,
            uri: UriKey::of(uri),
            found,
        }
    }

    /// Whether this is a match of `uri`.
    fn is_for(&self, uri: &CStr) -> bool {
        self.uri == UriKey::of(uri)
    }

    /// Whether this is `handler`'s match.
    fn is_by(&self, handler: &Arc<MapHandler>) -> bool {
        self.handler == Arc::as_ptr(handler) as usize
    }
}

/// Where a script was called from: names the caller in log lines and picks the message
/// number (`AHnnnnn`) mod_lua logs for the same failure there, so that log watchers keyed on
/// mod_lua's numbers keep working.
#[derive(Clone, Copy, Debug)]
pub enum Site<'a> {
    Handler,
    MapHandler,
    Hook(Phase),
    Filter(&'a str),
    Authz(&'a str),
}

impl Site<'_> {
    fn describe(self) -> String {
        match self {
            Site::Handler => "handler".into(),
            Site::MapHandler => "mapped handler".into(),
            Site::Hook(phase) => format!("{} hook", phase.name()),
            Site::Filter(name) => format!("filter {name}"),
            Site::Authz(name) => format!("authz provider {name}"),
        }
    }

    /// mod_lua's number for "Unable to find entry function … (not a valid function)".
    fn not_a_function_code(self) -> &'static str {
        match self {
            Site::Handler => "AH01475",
            Site::MapHandler => "AH02331",
            Site::Hook(_) => "AH01478",
            Site::Filter(_) => "AH02329",
            Site::Authz(_) => "AH02319",
        }
    }

    /// mod_lua's number for an error the called function raised.
    fn runtime_code(self) -> &'static str {
        match self {
            Site::Handler | Site::MapHandler | Site::Hook(_) => "AH01471",
            Site::Filter(_) => "AH02663",
            Site::Authz(_) => "AH02316",
        }
    }
}

/// Logs a failed call with the script's position and a traceback; returns the status it
/// calls for (500, or 503 when no VM could be had).
pub fn log_failure(r: Request<'_>, entry: &Entry<'_>, site: Site<'_>, failure: &Failure) -> c_int {
    let path = String::from_utf8_lossy(entry.path);
    let function = entry.function_name();
    let (level, status, text) = match failure {
        // mod_lua's numbers for a file that does not compile and for a top level that fails.
        Failure::Load(m) => (
            Level::Err,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!("AH01482: lua: Error loading {path}: {m}"),
        ),
        Failure::TopLevel(m) => (
            Level::Err,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!("AH02613: lua: Error loading {path}: {m}"),
        ),
        Failure::NotAFunction => (
            Level::Crit,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!(
                "{}: lua: Unable to find entry function '{function}' in {path} (not a valid function)",
                site.not_a_function_code()
            ),
        ),
        Failure::Runtime(e) => (
            Level::Err,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!(
                "{}: lua: Lua error in {} {path} ({function}): {}",
                site.runtime_code(),
                site.describe(),
                e.one_line()
            ),
        ),
        Failure::Busy(m) => (
            Level::Err,
            httpd::HTTP_SERVICE_UNAVAILABLE,
            format!("lua: no VM for {path}: {m}"),
        ),
        Failure::Internal(m) => (
            Level::Crit,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!("lua: internal error running {path} ({function}): {m}"),
        ),
    };
    r.log(level, &text);
    status
}

/// A failed handler call: logged, then httpd's own error page (no Lua text reaches the client
/// unless `LuaShowErrors On`).
pub fn failed(
    r: Request<'_>,
    cfg: &DirConfig,
    entry: &Entry<'_>,
    site: Site<'_>,
    failure: Failure,
) -> c_int {
    let status = log_failure(r, entry, site, &failure);
    if r.response_started() {
        // Part of the response is on the wire: an error page can no longer be sent. Close the
        // connection so the client sees a broken response rather than a complete-looking one.
        r.log(
            Level::Err,
            "lua: response already started; aborting the connection",
        );
        r.connection().abort();
        return DONE;
    }
    if let (true, Failure::Runtime(e)) = (cfg.show_errors(), &failure) {
        // mod_lua's error page (report_lua_error), only when explicitly enabled.
        r.set_status(httpd::HTTP_INTERNAL_SERVER_ERROR);
        r.set_content_type(b"text/html");
        let body = format!("<h3>Error!</h3>\n<pre>{}</pre>\n", escape_html(&e.message));
        r.write(body.as_bytes());
        return OK;
    }
    status
}

/// httpd's `ap_escape_html`: `< > & "`.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
