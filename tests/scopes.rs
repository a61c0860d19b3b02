//! LuaScope under mpm_event (2 children × 25 threads): what each scope shares, and that
//! server-scope pools honour their bounds and get every VM back on every exit path.
mod common;
use common::*;
use std::collections::{HashMap, HashSet};

const COUNTER: &str = "function handle(r) hits = (hits or 0) + 1 r:puts(hits) end\n";
const BOTH: &str = "function first(r) marker = 'seen' return apache2.DECLINED end\n\
                    function handle(r) r:puts(tostring(marker)) marker = nil end\n";
const IDENT: &str = "local pid = io.open('/proc/self/stat'):read('*l'):match('^(%d+)')\n\
                     vmid = vmid or tostring({})\n\
                     function handle(r)\n\
                       local t = os.clock() + 0.01 while os.clock() < t do end\n\
                       r:puts(pid, ' ', vmid)\n\
                     end\n";
const FLAKY: &str = "served = (served or 0) + 1\n\
                     function handle(r)\n\
                       if r.args == 'error' then error('scripted failure') end\n\
                       if r.args == 'panic' then apache2._test_panic('scripted') end\n\
                       if r.args == 'status' then return 'not a number' end\n\
                       r:puts('ok ', served)\n\
                     end\n";

fn server() -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    let mut cfg = Config::new().directives(
        "<Directory {docroot}/once>\n LuaScope once\n</Directory>\n\
         <Directory {docroot}/request>\n LuaScope request\n</Directory>\n\
         <Directory {docroot}/thread>\n LuaScope thread\n</Directory>\n\
         <Directory {docroot}/conn>\n LuaScope conn\n</Directory>\n\
         <Directory {docroot}/server>\n LuaScope server 1 1\n</Directory>\n\
         <Directory {docroot}/server2>\n LuaScope server 1 2\n</Directory>\n\
         LuaMapHandler ^/(\\w+)/both.lua$ {docroot}/$1/both.lua first\n",
    );
    for dir in [
        "default", "once", "request", "thread", "conn", "server", "server2",
    ] {
        cfg = cfg
            .file(&format!("htdocs/{dir}/c.lua"), COUNTER)
            .file(&format!("htdocs/{dir}/both.lua"), BOTH)
            .file(&format!("htdocs/{dir}/ident.lua"), IDENT)
            .file(&format!("htdocs/{dir}/flaky.lua"), FLAKY);
    }
    Some(cfg.start())
}

fn numbers(rs: &[Response]) -> Vec<u64> {
    rs.iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.text().trim().parse().unwrap()
        })
        .collect()
}

#[test]
fn default_and_once_never_share_globals() {
    let Some(s) = server() else { return };
    for dir in ["default", "once"] {
        let all = numbers(&hammer(s.port, 10, 30, &format!("/{dir}/c.lua")));
        assert!(
            all.iter().all(|&n| n == 1),
            "{dir}: a global leaked between requests: {all:?}"
        );
        // Two entry points of one request do not share globals either.
        assert_eq!(s.get(&format!("/{dir}/both.lua")).text(), "nil", "{dir}");
    }
    s.assert_no_crash();
}

#[test]
fn request_scope_shares_within_one_request_only() {
    let Some(s) = server() else { return };
    for _ in 0..20 {
        assert_eq!(s.get("/request/both.lua").text(), "seen");
    }
    let all = numbers(&hammer(s.port, 5, 20, "/request/c.lua"));
    assert!(all.iter().all(|&n| n == 1), "{all:?}");
}

#[test]
fn thread_scope_persists_and_survives_load() {
    let Some(s) = server() else { return };
    let mut c = s.connect();
    let seq: Vec<u64> = (0..30)
        .map(|_| {
            c.send("GET", "/thread/c.lua", &[], b"", false)
                .text()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        seq.iter().max().unwrap() > &1,
        "thread scope must keep globals: {seq:?}"
    );
    let all = hammer(s.port, 40, 60, "/thread/c.lua");
    assert_eq!(all.len(), 2400);
    assert!(all.iter().all(|r| r.status == 200));
    s.assert_no_crash();
}

#[test]
fn conn_scope_follows_the_connection() {
    let Some(s) = server() else { return };
    let mut a = s.connect();
    let seq: Vec<u64> = (0..10)
        .map(|_| {
            a.send("GET", "/conn/c.lua", &[], b"", false)
                .text()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(seq, (1..=10).collect::<Vec<u64>>());
    let mut b = s.connect();
    assert_eq!(b.send("GET", "/conn/c.lua", &[], b"", false).text(), "1");
    assert_eq!(a.send("GET", "/conn/c.lua", &[], b"", false).text(), "11");
}

#[test]
fn server_scope_honours_max() {
    let Some(s) = server() else { return };
    // max 1: one VM per child, so each count is seen at most once per child (two children).
    let all = numbers(&hammer(s.port, 8, 40, "/server/c.lua"));
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for n in &all {
        *seen.entry(*n).or_default() += 1;
    }
    assert!(
        seen.values().all(|&c| c <= 2),
        "more VMs than LuaScope server 1 1 allows: {seen:?}"
    );
    assert!(*all.iter().max().unwrap() >= 160, "{all:?}");
    // max 2: never more than two distinct VMs in one child, even with 12 concurrent clients.
    let rs = hammer(s.port, 12, 10, "/server2/ident.lua");
    let mut per_pid: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &rs {
        assert_eq!(r.status, 200);
        let text = r.text();
        let (pid, vm) = text.split_once(' ').unwrap();
        per_pid
            .entry(pid.to_string())
            .or_default()
            .insert(vm.to_string());
    }
    assert!(per_pid.values().all(|v| v.len() <= 2), "{per_pid:?}");
    s.assert_no_crash();
}

#[test]
fn server_scope_gets_its_vm_back_on_every_exit_path() {
    let Some(s) = server() else { return };
    let mut c = s.connect();
    // A handler's non-numeric return value means OK.
    for (arg, status) in [
        ("error", 500),
        ("status", 200),
        ("panic", 500),
        ("error", 500),
        ("panic", 500),
    ] {
        for _ in 0..10 {
            let r = c.send("GET", &format!("/server/flaky.lua?{arg}"), &[], b"", false);
            assert_eq!(r.status, status, "{arg}");
            c = s.connect();
        }
        // With a single-VM pool, a leaked lease would make this wait and answer 503.
        let t0 = std::time::Instant::now();
        let r = s.get("/server/flaky.lua");
        assert_eq!(r.status, 200, "after {arg}: {}", r.text());
        assert!(
            t0.elapsed().as_secs() < 5,
            "the pool was exhausted after {arg}"
        );
    }
    s.assert_no_crash();
}

/// A strict-mode module (the classic `strict.lua`: it replaces `getmetatable(_G).__index`)
/// works in every scope, as in mod_lua, and changes only its own script's globals: a fixup
/// using it and the handler of the same request run in one VM, in two environments.
#[test]
fn strict_mode_stays_in_its_own_environment() {
    const STRICT: &str = "local mt = getmetatable(_G)\n\
        if mt == nil then mt = {} setmetatable(_G, mt) end\n\
        mt.__declared = {}\n\
        mt.__newindex = function(t, n, v) mt.__declared[n] = true rawset(t, n, v) end\n\
        mt.__index = function(t, n)\n\
          if not mt.__declared[n] then error(\"variable '\" .. n .. \"' is not declared\", 2) end\n\
          return rawget(t, n)\n\
        end\n\
        function fix(r)\n\
          local ok, e = pcall(function() return undeclared end)\n\
          r.notes['strict'] = tostring(ok) .. ' ' .. tostring(e):gsub('^.-:%d+: ', '')\n\
          return apache2.DECLINED\n\
        end\n";
    const HANDLER: &str = "function handle(r)\n\
        r:puts(r.notes['strict'], '|', tostring(some_undefined), '|', type(print), '|', \
        tostring(pcall(getmetatable)))\nend\n";
    let config = || {
        let mut cfg = Config::new().file("strict.lua", STRICT);
        let mut dirs = String::new();
        for scope in ["once", "request", "thread", "server 1 1"] {
            let dir = scope.split(' ').next().unwrap_or(scope);
            dirs.push_str(&format!(
                "<Directory {{docroot}}/{dir}>\n LuaScope {scope}\n \
                 LuaHookFixups {{root}}/strict.lua fix\n</Directory>\n"
            ));
            cfg = cfg.file(&format!("htdocs/{dir}/h.lua"), HANDLER);
        }
        cfg.directives(&dirs)
    };
    let Some((ours, theirs)) = on_both(config, |m, s| {
        let mut answers = Vec::new();
        for dir in ["once", "request", "thread", "server"] {
            for _ in 0..3 {
                let r = s.get(&format!("/{dir}/h.lua"));
                answers.push((m, dir, r.status, r.text()));
            }
        }
        s.assert_no_crash();
        answers
    }) else {
        return;
    };
    let answers = [ours, theirs].concat();
    for (m, dir, status, text) in &answers {
        assert_eq!(
            (*status, text.as_str()),
            (
                200,
                "false variable 'undeclared' is not declared|nil|function|false"
            ),
            "{m:?} {dir}"
        );
    }
}

/// `require`d modules live as long as the scope's globals: under `once` (the default) and
/// `request` every call or request runs them afresh, in the script's environment (mod_lua
/// gives such a call a VM of its own); under `server` they stay loaded in the VM. Debian's
/// mod_lua answers the same.
#[test]
fn modules_are_as_fresh_as_the_scope() {
    const MODULE: &str = "local M = {n = 0}\n\
        module_runs = (module_runs or 0) + 1\n\
        function M.inc() M.n = M.n + 1 return M.n end\n\
        function M.show(x) return string.format('%d', x) end\n\
        return M\n";
    const HANDLER: &str = "local m = require 'counter'\n\
        function handle(r)\n\
          r:puts(m.show(m.inc()), ' ', tostring(module_runs), ' ', tostring(require('counter') == m))\n\
        end\n";
    let config = || {
        let mut cfg = Config::new()
            .directives(
                "LuaPackagePath {root}/lib/?.lua\n\
                 <Directory {docroot}/once>\n LuaScope once\n</Directory>\n\
                 <Directory {docroot}/request>\n LuaScope request\n</Directory>\n\
                 <Directory {docroot}/server>\n LuaScope server 1 1\n</Directory>\n",
            )
            .file("lib/counter.lua", MODULE);
        for dir in ["default", "once", "request", "server"] {
            cfg = cfg.file(&format!("htdocs/{dir}/m.lua"), HANDLER);
        }
        cfg
    };
    let Some((ours, theirs)) = on_both(config, |_, s| {
        let mut answers = Vec::new();
        for dir in ["default", "once", "request", "server"] {
            let texts: Vec<String> = (0..4)
                .map(|_| s.get(&format!("/{dir}/m.lua")).text())
                .collect();
            answers.push((dir, texts));
        }
        s.assert_no_crash();
        answers
    }) else {
        return;
    };
    for (dir, texts) in ours.iter().chain(&theirs) {
        if *dir == "server" {
            // One VM per child process (two children): the module ran once in each, and its
            // counter went on.
            assert!(texts.iter().all(|t| t.ends_with(" 1 true")), "{texts:?}");
            assert!(texts.iter().any(|t| t.starts_with("2 ")), "{texts:?}");
        } else {
            assert_eq!(texts, &vec!["1 1 true".to_string(); 4], "{dir}");
        }
    }
}

/// `load`, `loadfile` and `dofile` give the chunk the calling script's globals (in mod_lua the
/// script's globals are its VM's): what a loaded chunk sets is the script's, and under `once`
/// (the default) gone with the call. Debian's mod_lua answers the same.
#[test]
fn loaded_chunks_see_the_scripts_globals() {
    const HANDLER: &str = "function handle(r)\n\
          load('from_load = (from_load or 0) + 1')()\n\
          loadfile(r.document_root .. '/inc.lua')()\n\
          dofile(r.document_root .. '/inc.lua')\n\
          select(2, pcall(load, 'from_pcall = 1'))()\n\
          local own = {}\n\
          load('in_own = 1', 'own', 't', own)()\n\
          local parts = {'from_', 'reader = 1'}\n\
          load(function() return table.remove(parts, 1) end)()\n\
          local bad, err = load('x =')\n\
          local nofile, nferr = loadfile('/nonexistent/x.lua')\n\
          local ok, dferr = pcall(dofile, '/nonexistent/y.lua')\n\
          local function e(f) local ok, err = pcall(f) return (tostring(err):gsub('^.-([%w_]+%.lua:%d+:)', '%1')) end\n\
          r:puts(from_load, ' ', inc, ' ', rawget(_G, 'from_load'), ' ', tostring(from_pcall), ' ', \
            tostring(in_own), own.in_own, ' ', tostring(from_reader), ' ', tostring(bad), ' ', err, ' | ', \
            tostring(nofile), ' ', nferr, ' | ', tostring(ok), ' ', dferr, ' | ', \
            e(function() return load({}) end), ' | ', e(function() return load('x', {}) end), ' | ', \
            e(function() return loadfile({}) end), ' | ', e(function() return dofile({}) end), ' | ', \
            e(function() return dofile(r.document_root .. '/boom.lua') end), ' | ', select('#', dofile(r.document_root .. '/two.lua')))\n\
        end\n";
    let config = || {
        Config::new()
            .file("htdocs/l.lua", HANDLER)
            .file("htdocs/inc.lua", "inc = (inc or 0) + 1\n")
            .file("htdocs/boom.lua", "local x = 1\nerror('boom ' .. x)\n")
            .file("htdocs/two.lua", "return 1, 2\n")
    };
    let Some((ours, theirs)) = on_both(config, |_, s| {
        let texts: Vec<String> = (0..4).map(|_| s.get("/l.lua").text()).collect();
        s.assert_no_crash();
        texts
    }) else {
        return;
    };
    // (LuaJIT words its syntax and file errors its own way.)
    if runs_puc_lua() {
        assert_eq!(ours, theirs);
    }
    for t in ours.iter().chain(&theirs) {
        assert!(
            t.starts_with("1 2 1 1 nil1 1 nil [string \"x =\"]:1: ")
                && t.contains(" | nil cannot open /nonexistent/x.lua")
                && t.contains(" | false cannot open /nonexistent/y.lua")
                && t.contains("boom.lua:2: boom 1 | 2"),
            "{t}"
        );
    }
}

/// A `once` call (the default) holds its VM for the call alone: requests still in flight after
/// their Lua ran (here: sending a large file to clients that do not read it) hold none, so the
/// next request's call reuses a VM instead of making another, and a child keeps as many VMs
/// as calls run at once, not as requests are open. Each VM counts itself once (its registry
/// marks it) in the process's `ivm` store.
#[test]
fn once_calls_hold_no_vm_while_their_request_waits() {
    use std::io::{Read, Write};
    if !httpd_available() {
        return;
    }
    let s = Config::new()
        .file(
            "hooks.lua",
            "function fix(r)\n\
               local reg = debug.getregistry()\n\
               if not reg.counted_vm then\n\
                 reg.counted_vm = true\n\
                 r:ivm_set('vms', (r:ivm_get('vms') or 0) + 1)\n\
               end\n\
               r.headers_out['X-VMs'] = tostring(r:ivm_get('vms'))\n\
               return apache2.DECLINED\n\
             end\n",
        )
        .directives("LuaHookFixups {root}/hooks.lua fix\n")
        .start();
    s.write_doc("big.bin", &"x".repeat(32 << 20));
    let mut waiting = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..12 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let count = head
            .lines()
            .find_map(|l| l.strip_prefix("X-VMs: "))
            .unwrap_or_else(|| panic!("no X-VMs in {head}"))
            .trim()
            .to_string();
        counts.push(count);
        // Read no further: the response stays in flight.
        waiting.push(c);
    }
    assert!(
        counts.iter().all(|c| c.parse::<f64>() == Ok(1.0)),
        "VMs per child as requests kept coming: {counts:?}"
    );
    drop(waiting);
    s.assert_no_crash();
}
