//! LuaOutputFilter / LuaInputFilter with mod_lua's script protocol (§7): the function yields
//! once to accept (an output filter may yield a prefix), then sees each chunk in the global
//! `bucket` and yields what to pass on; at the end `bucket` is nil and a last yield is a
//! suffix. Returning before the first yield declines. Unlike mod_lua, it works in every
//! LuaScope, streams (output is passed on every 64 KiB), accepts `coroutine.yield()` without a
//! value, and a failure after output began closes the connection instead of hanging it (before
//! that, httpd can still answer 500, as it does with mod_lua; nothing more passes the broken
//! filter either way).

use crate::config::{DirConfig, FilterKind, FilterSpec};
use crate::dispatch::{self, Coroutine, Entry, Failure};
use crate::ffi;
use crate::handler::{log_failure, Site};
use crate::httpd::{Brigade, BucketKind, Filter, Level, Outgoing, PoolBrigade, Request};
use mlua::thread::ThreadStatus;
use mlua::{BorrowedBytes, MultiValue, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};

const APR_SUCCESS: ffi::apr_status_t = 0;
const APR_EGENERAL: ffi::apr_status_t = 20014;
/// Output is passed downstream whenever this much has been produced.
const PASS_EVERY: usize = 64 * 1024;

/// Per filter instance, attached to the request pool.
pub struct FilterState {
    run: Run,
    /// For input filters: the brigade read from the next filter (kept to avoid one per call).
    scratch: Option<PoolBrigade>,
    /// What file buckets are read into (see [`httpd::Bucket::read_unmapped`]).
    buf: Vec<u8>,
}

/// Where a filter instance is.
enum Run {
    /// Its coroutine takes the body.
    Running(Coroutine),
    /// It saw the end of the body: anything after it passes as it is.
    Done,
    /// It failed (or never started): nothing passes any more.
    Broken,
}

/// What a filter yielded: a Lua string (passed on without a copy by output filters, copied
/// once by input filters) or a number's text.
enum Chunk {
    Lua(mlua::LuaString),
    Text(Vec<u8>),
}

impl Chunk {
    /// Appends a copy to `bb` (nothing for an empty chunk); returns how many bytes.
    fn copy_to(&self, bb: Brigade<'_>) -> usize {
        let b: &[u8] = match self {
            Chunk::Lua(s) => &s.as_bytes(),
            Chunk::Text(t) => t,
        };
        bb.append(b);
        b.len()
    }

    /// Appends to `out`, a Lua string without a copy (it is kept until `out` is passed on);
    /// returns how many bytes.
    fn lend_to(self, out: &mut Outgoing<'_, BorrowedBytes>) -> usize {
        match self {
            Chunk::Lua(s) => out.borrow(s.as_bytes()),
            Chunk::Text(t) => out.copy(&t),
        }
    }
}

enum Step {
    Yielded(Option<Chunk>),
    Finished,
    Failed(String),
}

fn resume(co: &Coroutine, arg: Value) -> Step {
    let result = catch_unwind(AssertUnwindSafe(|| co.thread.resume::<MultiValue>(arg)));
    match result {
        Err(_) => Step::Failed("Rust panic inside the filter".into()),
        Ok(Err(e)) => Step::Failed(crate::vm::ErrorText::of(&e).one_line()),
        Ok(Ok(values)) => {
            if co.thread.status() != ThreadStatus::Resumable {
                return Step::Finished;
            }
            Step::Yielded(match values.into_iter().next() {
                Some(Value::String(s)) => Some(Chunk::Lua(s)),
                Some(Value::Integer(i)) => Some(Chunk::Text(i.to_string().into_bytes())),
                Some(Value::Number(n)) => Some(Chunk::Text(
                    crate::lua_api::number_to_string(n).into_bytes(),
                )),
                _ => None,
            })
        }
    }
}

/// Sets the global `bucket` in the filter function's environment and resumes it.
fn feed(co: &Coroutine, chunk: Option<&[u8]>) -> Step {
    let value = match chunk {
        Some(b) => match co.lua.create_string(b) {
            Ok(s) => Value::String(s),
            Err(e) => return Step::Failed(e.to_string()),
        },
        None => Value::Nil,
    };
    if let Err(e) = co.env.raw_set("bucket", value) {
        return Step::Failed(e.to_string());
    }
    resume(co, Value::Nil)
}

fn find_spec<'c>(cfg: &'c DirConfig, name: &str, kind: FilterKind) -> Option<&'c FilterSpec> {
    cfg.filters
        .iter()
        .rev()
        .find(|s| s.kind == kind && s.name.eq_ignore_ascii_case(name))
        .map(|s| &**s)
}

/// How a filter's first resume went.
enum Start {
    /// It yielded (the value, if any, is an output filter's prefix).
    Accepted(Coroutine, Option<Chunk>),
    /// It returned before yielding, or has no Lua spec here: pass data through.
    Declined,
    /// No VM or no function: logged.
    Failed,
}

fn start(r: Request<'_>, f: Filter<'_>, kind: FilterKind) -> Start {
    let Some(cfg) = r.dir_config::<DirConfig>() else {
        return Start::Declined;
    };
    let name = f.name();
    let Some(spec) = find_spec(cfg, &name, kind) else {
        return Start::Declined;
    };
    let path = spec.file.resolve(r.pool(), cfg.root());
    let entry = Entry::file(path.as_bytes(), &spec.function);
    let report = |failure: Failure| {
        log_failure(r, &entry, Site::Filter(&name), &failure);
    };
    let mut co = match dispatch::coroutine(r, cfg, &entry) {
        Ok(co) => co,
        Err(failure) => {
            report(failure);
            return Start::Failed;
        }
    };
    let ud = match co.request(r) {
        Ok(ud) => ud,
        Err(e) => {
            report(Failure::Internal(e.to_string()));
            return Start::Failed;
        }
    };
    match resume(&co, ud) {
        Step::Yielded(first) => Start::Accepted(co, first),
        Step::Finished => Start::Declined,
        Step::Failed(msg) => {
            r.log(
                Level::Err,
                &format!(
                    "lua: filter {name} ({}) failed before accepting: {msg}",
                    spec.function
                ),
            );
            Start::Declined
        }
    }
}

/// A filter that failed on the way: log, and stop (see [`stop`]).
fn abort(r: Request<'_>, f: Filter<'_>, state: &mut FilterState, msg: &str) -> ffi::apr_status_t {
    r.log(
        Level::Err,
        &format!(
            "AH02663: lua: Error while executing filter {}: {msg}",
            f.name()
        ),
    );
    state.run = Run::Broken;
    stop(r)
}

/// The status of a broken filter, which lets nothing more through. Until the response has
/// started httpd can still answer 500 (the default handler makes one of a filter's error, and
/// error pages bypass resource filters), so the connection only closes after this request;
/// once part of the response went out, the connection is aborted so that the client sees a
/// broken response, not a complete-looking one.
fn stop(r: Request<'_>) -> ffi::apr_status_t {
    if r.response_started() {
        r.connection().abort();
    } else {
        r.connection().close_after();
    }
    APR_EGENERAL
}

/// Remembers a filter that could not start, so that nothing passes it unfiltered later.
fn never_started(r: Request<'_>, f: Filter<'_>) -> ffi::apr_status_t {
    f.set_state(
        r,
        FilterState {
            run: Run::Broken,
            scratch: None,
            buf: Vec::new(),
        },
    );
    stop(r)
}

pub fn output(f: Filter<'_>, bb: Brigade<'_>) -> ffi::apr_status_t {
    let Some(r) = f.request() else {
        return f.pass(bb);
    };
    // A finished coroutine is dropped only after `out` (declared later, dropped first) has
    // let go of the Lua strings it lends: under `LuaScope server` dropping the coroutine
    // returns its VM to the pool, where another thread may take it at once.
    let mut retired: Option<Coroutine> = None;
    let mut out = Outgoing::new(f.brigade());
    if f.state::<FilterState>().is_none() {
        match start(r, f, FilterKind::Output) {
            Start::Declined => {
                f.remove_output();
                return f.pass(bb);
            }
            Start::Failed => {
                // No VM or no function: nothing may pass unfiltered.
                bb.clear();
                return never_started(r, f);
            }
            Start::Accepted(co, prefix) => {
                f.set_state(
                    r,
                    FilterState {
                        run: Run::Running(co),
                        scratch: None,
                        buf: Vec::new(),
                    },
                );
                if !f.via_mod_filter() {
                    // The body changes: its length and digests no longer hold (FL04).
                    for h in [c"Content-Length", c"Content-MD5", c"ETag"] {
                        r.headers_out().unset(h);
                    }
                }
                if let Some(p) = prefix {
                    p.lend_to(&mut out);
                }
            }
        }
    }
    let state = f.state::<FilterState>().expect("state set above");
    if matches!(state.run, Run::Broken) {
        bb.clear();
        return stop(r);
    }
    let mut pending = 0usize;
    let mut next = bb.first();
    while let Some(bucket) = next {
        let Run::Running(co) = &state.run else {
            // Finished (EOS seen): anything after it passes as it is.
            next = bucket.next(bb);
            out.take(bucket);
            continue;
        };
        match bucket.kind() {
            BucketKind::Eos => {
                match feed(co, None) {
                    Step::Yielded(Some(suffix)) => {
                        suffix.lend_to(&mut out);
                    }
                    Step::Failed(msg) => {
                        out.discard();
                        return abort(r, f, state, &msg);
                    }
                    _ => {}
                }
                if let Run::Running(co) = std::mem::replace(&mut state.run, Run::Done) {
                    retired = Some(co);
                }
                next = bucket.next(bb);
                out.take(bucket);
            }
            BucketKind::Flush => {
                next = bucket.next(bb);
                out.take(bucket);
                let rv = out.pass(f);
                pending = 0;
                if rv != APR_SUCCESS {
                    return rv;
                }
            }
            BucketKind::Metadata => {
                next = bucket.next(bb);
                out.take(bucket);
            }
            BucketKind::Data => {
                let data = match bucket.read_unmapped(&mut state.buf) {
                    Ok(d) => d,
                    Err(rv) => return rv,
                };
                match feed(co, Some(data)) {
                    Step::Yielded(Some(v)) => pending += v.lend_to(&mut out),
                    Step::Yielded(None) => {}
                    Step::Finished => {
                        out.discard();
                        return abort(
                            r,
                            f,
                            state,
                            "the filter function returned before the end of the body",
                        );
                    }
                    Step::Failed(msg) => {
                        out.discard();
                        return abort(r, f, state, &msg);
                    }
                }
                next = bucket.next(bb);
                bucket.delete();
                // Output that is followed by the end of the body waits for it, so that the
                // response leaves in one write.
                let eos_next = next.is_some_and(|b| b.kind() == BucketKind::Eos);
                if pending >= PASS_EVERY && !eos_next {
                    let rv = out.pass(f);
                    pending = 0;
                    if rv != APR_SUCCESS {
                        return rv;
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return APR_SUCCESS;
    }
    let rv = out.pass(f);
    drop(retired);
    rv
}

pub fn input(
    f: Filter<'_>,
    bb: Brigade<'_>,
    mode: ffi::ap_input_mode_t,
    block: ffi::apr_read_type_e,
    readbytes: ffi::apr_off_t,
) -> ffi::apr_status_t {
    let Some(r) = f.request() else {
        return f.get(bb, mode, block, readbytes);
    };
    if mode != ffi::ap_input_mode_t_AP_MODE_READBYTES
        && mode != ffi::ap_input_mode_t_AP_MODE_GETLINE
    {
        return f.get(bb, mode, block, readbytes);
    }
    if f.state::<FilterState>().is_none() {
        match start(r, f, FilterKind::Input) {
            Start::Declined => {
                f.remove_input();
                return f.get(bb, mode, block, readbytes);
            }
            Start::Failed => return never_started(r, f),
            // Input filters ignore the first yield's value (mod_lua FL04).
            Start::Accepted(co, _) => {
                let scratch = PoolBrigade::new(f.brigade());
                f.set_state(
                    r,
                    FilterState {
                        run: Run::Running(co),
                        scratch: Some(scratch),
                        buf: Vec::new(),
                    },
                );
            }
        }
    }
    let state = f.state::<FilterState>().expect("state set above");
    match state.run {
        Run::Running(_) => {}
        Run::Done => return f.get(bb, mode, block, readbytes),
        Run::Broken => return stop(r),
    }
    let Some(tmp) = state.scratch.as_ref().map(PoolBrigade::get) else {
        return APR_EGENERAL;
    };
    let rv = f.get(tmp, mode, block, readbytes);
    if rv != APR_SUCCESS {
        return rv;
    }
    let mut next = tmp.first();
    while let Some(bucket) = next {
        let Run::Running(co) = &state.run else {
            next = bucket.next(tmp);
            bucket.move_to(bb);
            continue;
        };
        match bucket.kind() {
            BucketKind::Eos => {
                match feed(co, None) {
                    Step::Yielded(Some(suffix)) => {
                        suffix.copy_to(bb);
                    }
                    Step::Failed(msg) => {
                        tmp.clear();
                        return abort(r, f, state, &msg);
                    }
                    _ => {}
                }
                state.run = Run::Done;
                next = bucket.next(tmp);
                bucket.move_to(bb);
            }
            BucketKind::Data => {
                let data = match bucket.read_unmapped(&mut state.buf) {
                    Ok(d) => d,
                    Err(rv) => return rv,
                };
                match feed(co, Some(data)) {
                    Step::Yielded(Some(v)) => {
                        v.copy_to(bb);
                    }
                    Step::Yielded(None) => {}
                    Step::Finished => {
                        tmp.clear();
                        return abort(
                            r,
                            f,
                            state,
                            "the filter function returned before the end of the body",
                        );
                    }
                    Step::Failed(msg) => {
                        tmp.clear();
                        return abort(r, f, state, &msg);
                    }
                }
                next = bucket.next(tmp);
                bucket.delete();
            }
            _ => {
                next = bucket.next(tmp);
                bucket.move_to(bb);
            }
        }
    }
    tmp.clear();
    APR_SUCCESS
}
