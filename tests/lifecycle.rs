//! Process lifecycle: graceful restarts (the module is unloaded and loaded again), full
//! restarts and child recycling, under load, without a crash.
mod common;
use common::*;
use std::time::{Duration, Instant};

const SCRIPT: &str = "function handle(r) n = (n or 0) + 1 r:puts('v1 ', n) end\n";

fn signal(s: &Server, sig: libc::c_int) {
    let pid = s.pid().expect("server running") as libc::pid_t;
    // SAFETY: kill(2) on the PID of the httpd this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn wait_for_generation(s: &Server, resumes: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if s.error_log().matches("resuming normal operations").count() >= resumes {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no restart seen:\n{}", s.error_log());
}

/// The "exit signal" lines of `log` except those of children a full restart (SIGHUP) stops:
/// mpm_event itself now and then crashes a child it is stopping then, in its own code
/// (`apr_os_sock_get` in the child's main thread), with Debian's mod_lua loaded as with ours
/// or none (a 2 s gap between restarts under load crashed one child in 7 cycles with mod_lua,
/// in 28 with ours). The parent logs those children between "SIGHUP received" and the new
/// generation's "resuming normal operations"; a crash anywhere else is a failure.
fn crashes_outside_full_restart(log: &str) -> Vec<&str> {
    let mut stopping = false;
    let mut crashes = Vec::new();
    for line in log.lines() {
        if line.contains("SIGHUP received") {
            stopping = true;
        } else if line.contains("resuming normal operations") {
            stopping = false;
        } else if line.contains("exit signal") && !stopping {
            crashes.push(line);
        }
    }
    crashes
}

fn all_ok(port: u16, threads: usize, per: usize, path: &str, expect: &str) {
    for r in hammer(port, threads, per, path) {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with(expect), "{}", r.text());
    }
}

#[test]
fn graceful_and_full_restarts_under_load() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("LuaScope thread")
        .file("htdocs/v.lua", SCRIPT)
        .start();
    all_ok(s.port, 10, 20, "/v.lua", "v1 ");
    // Keep traffic flowing while httpd restarts gracefully (SIGUSR1) and fully (SIGHUP).
    let port = s.port;
    let load = std::thread::spawn(move || {
        let mut ok = 0;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(r) = Client::connect(port).try_send("GET", "/v.lua", &[], b"", true) {
                assert!(
                    r.status == 200 || r.status == 503,
                    "{} {}",
                    r.status,
                    r.text()
                );
                ok += 1;
            }
        }
        ok
    });
    signal(&s, libc::SIGUSR1);
    wait_for_generation(&s, 2);
    // Let the new generation's children finish starting: mpm_event itself can crash a child
    // that is still starting when the next restart arrives (seen with no Lua module loaded at
    // all: 2 crashes in 60 rapid restarts under load; a core dump shows the child's main
    // thread in mpm_event's code, in apr_os_sock_get). With 0.5 s between the two restarts
    // that happened in about 1 of 30 cycles under load (once in a CI run of this test), with
    // 2 s in none of 30.
    std::thread::sleep(Duration::from_secs(2));
    s.write_doc("v.lua", &SCRIPT.replace("v1", "v2"));
    signal(&s, libc::SIGHUP);
    wait_for_generation(&s, 3);
    assert!(load.join().unwrap() > 0);
    all_ok(s.port, 10, 20, "/v.lua", "v2 ");
    let log = s.error_log();
    let crashes = crashes_outside_full_restart(&log);
    assert!(crashes.is_empty(), "a child crashed:\n{log}");
}

#[test]
fn crashes_of_children_stopped_by_a_full_restart_are_told_apart() {
    let log = "[x] AH00489: resuming normal operations\n\
               [x] AH00494: SIGHUP received.  Attempting to restart\n\
               [x] AH00052: child pid 7 exit signal Segmentation fault (11)\n\
               [x] AH00489: resuming normal operations\n";
    assert!(crashes_outside_full_restart(log).is_empty());
    let later = format!("{log}[x] AH00052: child pid 8 exit signal Segmentation fault (11)\n");
    assert_eq!(crashes_outside_full_restart(&later).len(), 1);
    let before =
        "[x] AH00052: child pid 6 exit signal Aborted (6)\n[x] AH00494: SIGHUP received.\n";
    assert_eq!(crashes_outside_full_restart(before).len(), 1);
}

#[test]
fn children_recycled_often_stay_healthy() {
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .directives("MaxConnectionsPerChild 15\nLuaScope server 1 3")
        .file("htdocs/v.lua", SCRIPT)
        .start();
    for _ in 0..5 {
        let rs: Vec<Response> = (0..40)
            .map(|_| Client::connect(s.port).send("GET", "/v.lua", &[], b"", true))
            .collect();
        assert!(rs
            .iter()
            .all(|r| r.status == 200 && r.text().starts_with("v1 ")));
    }
    s.assert_no_crash();
}
