//! The one door every call from httpd goes through: a panic never crosses `extern "C"`.
//! A panic is logged (by the hook installed in `install_panic_hook`) and turned into the
//! caller's failure value.

use crate::httpd::{log_global, Level};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; if it panics, logs `what` and returns `on_panic` instead.
pub fn guard<R>(what: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            log_global(
                Level::Crit,
                &format!("lua: internal error (Rust panic) in {what}: {msg}"),
            );
            on_panic
        }
    }
}

/// Replaces the default panic hook (multi-line, may symbolise a backtrace into the error log)
/// with one line through httpd's logger. Called at every module load.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log_global(Level::Crit, &format!("lua: panic{loc}: {msg}"));
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn guard_passes_values_through() {
        assert_eq!(super::guard("t", 1, || 7), 7);
    }
}
