//! The `lua-script` handler (mod_lua `lua_handler`) and LuaMapHandler (`lua_map_handler`,
//! `lua_map_handler_fixups`), and how a failed call becomes a response and a log line.

use crate::config::{capture_path_is_safe, interpolate, DirConfig};
use crate::dispatch::{self, Entry, Failure, Outcome};
use crate::httpd::{self, FileType, Level, Request, DECLINED, DONE, HTTP_BAD_REQUEST, OK};
use std::borrow::Cow;
use std::ffi::c_int;

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
        Err(f) => failed(r, cfg, &entry, "handler", f),
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
        let Some(caps) = mh.regex.captures(uri) else {
            continue;
        };
        if !capture_path_is_safe(&mh.file, &caps) {
            r.log(
                Level::Err,
                &format!(
                    "lua: refusing LuaMapHandler {} -> {}: the URI '{}' would take the script path outside its directory",
                    mh.pattern,
                    mh.file,
                    uri.to_string_lossy()
                ),
            );
            return HTTP_BAD_REQUEST;
        }
        let file = interpolate(&mh.file, &caps);
        let function = interpolate(&mh.function, &caps);
        let path = httpd::merge_path(r.pool(), cfg.root(), &file).unwrap_or(Cow::Borrowed(&file));
        let entry = Entry::file(path.as_bytes(), &function);
        match dispatch::call(r, cfg, &entry) {
            Ok(Outcome::Number(n)) if n == DECLINED as i64 => continue,
            Ok(Outcome::Number(n)) => return finish(r, status(n)),
            Ok(Outcome::NotNumber) => {
                r.log(
                    Level::Warn,
                    &format!("lua: Lua handler {function} in {path} did not return a value, assuming apache2.OK"),
                );
                return finish(r, OK);
            }
            Err(f) => return failed(r, cfg, &entry, "mapped handler", f),
        }
    }
    DECLINED
}

/// H10: claims the request for LuaMapHandler before mod_dir's FallbackResource does.
pub fn map_handler_fixups(r: Request<'_>) -> c_int {
    if r.handler().is_some() {
        return DECLINED;
    }
    let Some(cfg) = r.dir_config::<DirConfig>() else {
        return DECLINED;
    };
    let Some(uri) = r.uri() else { return DECLINED };
    if cfg.map_handlers.iter().any(|mh| mh.regex.is_match(uri)) {
        r.set_handler(Some(MAP_HANDLER_NAME));
        return OK;
    }
    DECLINED
}

/// Logs a failed call with the script's position and a traceback; returns the status it
/// calls for (500, or 503 when no VM could be had).
pub fn log_failure(r: Request<'_>, entry: &Entry<'_>, what: &str, failure: &Failure) -> c_int {
    let path = String::from_utf8_lossy(entry.path);
    let function = entry.function_name();
    let (level, status, text) = match failure {
        Failure::Load(m) => (
            Level::Err,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!("lua: Error loading {path}: {m}"),
        ),
        Failure::NotAFunction => (
            Level::Crit,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!(
                "lua: Unable to find entry function '{function}' in {path} (not a valid function)"
            ),
        ),
        Failure::Runtime(e) => (
            Level::Err,
            httpd::HTTP_INTERNAL_SERVER_ERROR,
            format!(
                "lua: Lua error in {what} {path} ({function}): {}",
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
    what: &str,
    failure: Failure,
) -> c_int {
    let status = log_failure(r, entry, what, &failure);
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
