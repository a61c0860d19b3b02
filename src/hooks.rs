//! Runs the Lua hooks of one phase and slot (mod_lua `lua_request_rec_hook_harness`, HN01–HN03):
//! hooks run in list order; DECLINED moves on, any other number ends the phase's Lua hooks
//! and goes back to httpd; a non-number or a failure is a 500 with mod_lua's log line.

use crate::config::{DirConfig, HookCode, Phase, Slot};
use crate::dispatch::{self, Entry, Outcome};
use crate::handler::{log_failure, status, Site};
use crate::httpd::{Level, Request, DECLINED, HTTP_INTERNAL_SERVER_ERROR};
use std::borrow::Cow;
use std::ffi::c_int;

/// What a failed hook returns: 500, except in the log phase, where a broken log script must
/// not also suppress httpd's access log line (mod_lua returns 500 there, which does).
fn on_failure(phase: Phase) -> c_int {
    if phase == Phase::Log {
        DECLINED
    } else {
        HTTP_INTERNAL_SERVER_ERROR
    }
}

pub fn run(r: Request<'_>, phase: Phase, slot: Slot) -> c_int {
    let Some(cfg) = r.dir_config::<DirConfig>() else {
        return DECLINED;
    };
    let specs = cfg.hooks.get(phase, slot);
    if specs.is_empty() {
        return DECLINED;
    }
    for spec in specs {
        let (path, inline) = match &spec.code {
            HookCode::File(f) => (f.resolve(r.pool(), cfg.root()), None),
            HookCode::Inline(chunk) => (Cow::Borrowed(chunk.key.as_str()), Some(&**chunk)),
        };
        let entry = Entry {
            path: path.as_bytes(),
            function: spec.function.as_deref(),
            stamp: None,
            inline,
            args: &[],
        };
        match dispatch::call(r, cfg, &entry) {
            Ok(Outcome::Number(n)) => {
                if r.is_level(Level::Trace4) {
                    trace_returned(r, &entry, phase, n);
                }
                if n != DECLINED as i64 {
                    return status(n);
                }
            }
            Ok(Outcome::NotNumber) => {
                not_a_number(r, &entry, phase);
                return on_failure(phase);
            }
            Err(f) => {
                failed(r, &entry, phase, &f);
                return on_failure(phase);
            }
        }
    }
    DECLINED
}

// The log lines are functions of their own: their formatting stays out of the frame of every
// hook call (a worker thread's stack stays as deep as its deepest call ever went).

#[inline(never)]
fn trace_returned(r: Request<'_>, entry: &Entry<'_>, phase: Phase, n: i64) {
    r.log(
        Level::Trace4,
        &format!(
            "Lua hook {}:{} for phase {} returned {n}",
            String::from_utf8_lossy(entry.path),
            entry.function_name(),
            phase.name()
        ),
    );
}

#[cold]
#[inline(never)]
fn not_a_number(r: Request<'_>, entry: &Entry<'_>, phase: Phase) {
    r.log(
        Level::Crit,
        &format!(
            "AH03017: Lua hook {}:{} for phase {} did not return a numeric value",
            String::from_utf8_lossy(entry.path),
            entry.function_name(),
            phase.name()
        ),
    );
}

#[cold]
#[inline(never)]
fn failed(r: Request<'_>, entry: &Entry<'_>, phase: Phase, f: &dispatch::Failure) {
    log_failure(r, entry, Site::Hook(phase), f);
}
