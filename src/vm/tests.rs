use super::pool::{self, PoolError};
use super::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn setup() -> VmSetup {
    VmSetup {
        install: |_| Ok(()),
    }
}

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("mod_lua_rs-vm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        p
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn empty() -> Vec<String> {
    Vec::new()
}

fn spec<'a>(path: &'a Path, cc: CodeCache, paths: &'a [String]) -> ChunkSpec<'a> {
    ChunkSpec {
        path: path.as_os_str().as_encoded_bytes(),
        stamp: None,
        codecache: cc,
        package_paths: paths,
        package_cpaths: paths,
        inline: None,
    }
}

fn call_int(vm: &Vm, s: &ChunkSpec, mode: EnvMode, f: &str) -> i64 {
    vm.resolve(s, mode, f).unwrap().call::<i64>(()).unwrap()
}

const COUNTER: &str = "n = (n or 0) + 1\nfunction handle() return n end\n";

#[test]
fn once_scope_never_shares_globals() {
    let d = Dir::new("once");
    let p = d.write("c.lua", COUNTER);
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let s = spec(&p, CodeCache::Stat, &e);
    for _ in 0..5 {
        assert_eq!(call_int(&vm, &s, EnvMode::Once, "handle"), 1);
    }
    // Assigning through _G stays in the call's environment as well.
    let p2 = d.write(
        "g.lua",
        "function handle() local v = _G.leak; _G.leak = 1; return v == nil and 1 or 0 end",
    );
    let s2 = spec(&p2, CodeCache::Stat, &e);
    for _ in 0..3 {
        assert_eq!(call_int(&vm, &s2, EnvMode::Once, "handle"), 1);
    }
    assert_eq!(vm.lua().globals().get::<Value>("leak").unwrap(), Value::Nil);
}

#[test]
fn persistent_and_request_scopes_keep_globals() {
    let d = Dir::new("persist");
    let p = d.write("c.lua", COUNTER);
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let s = spec(&p, CodeCache::Stat, &e);
    assert_eq!(call_int(&vm, &s, EnvMode::Persistent, "handle"), 1);
    assert_eq!(
        call_int(&vm, &s, EnvMode::Persistent, "handle"),
        1,
        "top level runs once per env"
    );
    assert_eq!(call_int(&vm, &s, EnvMode::Request, "handle"), 1);
    vm.end_request();
    assert_eq!(call_int(&vm, &s, EnvMode::Request, "handle"), 1);
}

#[test]
fn nested_functions_keep_their_own_environment() {
    // A handler from one `once` call must keep seeing its own globals while another call of
    // the same script runs (re-entrancy, e.g. a subrequest).
    let d = Dir::new("reent");
    let p = d.write(
        "r.lua",
        "tag = tostring({})\nfunction handle() return tag end\n",
    );
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let s = spec(&p, CodeCache::Stat, &e);
    let f1 = vm.resolve(&s, EnvMode::Once, "handle").unwrap();
    let t1: String = f1.call(()).unwrap();
    let f2 = vm.resolve(&s, EnvMode::Once, "handle").unwrap();
    let t2: String = f2.call(()).unwrap();
    assert_ne!(t1, t2);
    assert_eq!(f1.call::<String>(()).unwrap(), t1);
}

#[test]
fn stat_notices_a_same_size_change_and_forever_does_not() {
    let d = Dir::new("stat");
    let p = d.write("v.lua", "function handle() return 1 end");
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let stat = spec(&p, CodeCache::Stat, &e);
    assert_eq!(call_int(&vm, &stat, EnvMode::Persistent, "handle"), 1);
    std::thread::sleep(Duration::from_millis(5));
    d.write("v.lua", "function handle() return 2 end");
    assert_eq!(call_int(&vm, &stat, EnvMode::Persistent, "handle"), 2);

    let vm2 = Vm::new(&setup()).unwrap();
    let forever = spec(&p, CodeCache::Forever, &e);
    assert_eq!(call_int(&vm2, &forever, EnvMode::Once, "handle"), 2);
    d.write("v.lua", "function handle() return 3 end");
    assert_eq!(call_int(&vm2, &forever, EnvMode::Once, "handle"), 2);
    let never = spec(&p, CodeCache::Never, &e);
    assert_eq!(call_int(&vm2, &never, EnvMode::Once, "handle"), 3);
}

#[test]
fn reload_keeps_globals_of_long_lived_scopes() {
    let d = Dir::new("reload");
    let p = d.write(
        "k.lua",
        "keep = (keep or 0) + 1\nfunction handle() return keep end",
    );
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let s = spec(&p, CodeCache::Never, &e);
    assert_eq!(call_int(&vm, &s, EnvMode::Persistent, "handle"), 1);
    assert_eq!(call_int(&vm, &s, EnvMode::Persistent, "handle"), 2);
}

#[test]
fn load_errors_and_missing_functions() {
    let d = Dir::new("err");
    let bad = d.write("bad.lua", "function handle(\n");
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    match vm.resolve(&spec(&bad, CodeCache::Stat, &e), EnvMode::Once, "handle") {
        Err(VmError::Load(m)) => assert!(m.contains("bad.lua:2:"), "{m}"),
        _ => panic!("expected a load error"),
    }
    let top = d.write("top.lua", "\n\nerror('boom')\n");
    match vm.resolve(&spec(&top, CodeCache::Stat, &e), EnvMode::Once, "handle") {
        Err(VmError::TopLevel(m)) => assert!(m.contains("top.lua:3: boom"), "{m}"),
        _ => panic!("expected a top-level error"),
    }
    let nf = d.write("nf.lua", "handle = 5");
    assert!(matches!(
        vm.resolve(&spec(&nf, CodeCache::Stat, &e), EnvMode::Once, "handle"),
        Err(VmError::NotAFunction)
    ));
    let missing = d.0.join("missing.lua");
    match vm.resolve(
        &spec(&missing, CodeCache::Stat, &e),
        EnvMode::Once,
        "handle",
    ) {
        Err(VmError::Load(m)) => assert!(m.contains("cannot open"), "{m}"),
        _ => panic!("expected a load error"),
    }
}

#[test]
fn runtime_errors_carry_file_line_and_traceback() {
    let d = Dir::new("rt");
    let p = d.write(
        "rt.lua",
        "local function inner() error('bad thing') end\nfunction handle() inner() end\n",
    );
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let f = vm
        .resolve(&spec(&p, CodeCache::Stat, &e), EnvMode::Once, "handle")
        .unwrap();
    let err = f.call::<()>(()).unwrap_err();
    let t = ErrorText::of(&err);
    assert!(t.message.contains("rt.lua:1: bad thing"), "{}", t.message);
    assert!(
        t.traceback.as_deref().unwrap_or("").contains("rt.lua:2"),
        "{:?}",
        t.traceback
    );
}

#[test]
fn line_numbers_survive_shebang_and_bom() {
    let d = Dir::new("lines");
    let p = d.write(
        "l.lua",
        "\u{feff}#!/usr/bin/lua\nfunction handle()\n  error('x')\nend\n",
    );
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let f = vm
        .resolve(&spec(&p, CodeCache::Stat, &e), EnvMode::Once, "handle")
        .unwrap();
    let t = ErrorText::of(&f.call::<()>(()).unwrap_err());
    assert!(t.message.contains("l.lua:3: x"), "{}", t.message);
}

#[test]
fn require_uses_script_dir_and_package_path_and_isolates_edits() {
    let d = Dir::new("req");
    d.write("mods/sib.lua", "return { v = 'sibling' }");
    d.write("lib/far.lua", "return { v = 'far' }");
    let p = d.write(
        "mods/main.lua",
        "package.path = package.path .. ';/nonexistent/?.lua'\n\
         function handle() return require('sib').v .. ',' .. require('far').v .. ',' .. #package.path end",
    );
    let vm = Vm::new(&setup()).unwrap();
    let paths = vec![format!("{}/lib/?.lua", d.0.display())];
    let s = ChunkSpec {
        path: p.as_os_str().as_encoded_bytes(),
        stamp: None,
        codecache: CodeCache::Stat,
        package_paths: &paths,
        package_cpaths: &paths,
        inline: None,
    };
    let a: String = vm
        .resolve(&s, EnvMode::Once, "handle")
        .unwrap()
        .call(())
        .unwrap();
    let b: String = vm
        .resolve(&s, EnvMode::Once, "handle")
        .unwrap()
        .call(())
        .unwrap();
    assert!(a.starts_with("sibling,far,"), "{a}");
    assert_eq!(
        a, b,
        "package.path edits of one call must not accumulate in the next"
    );
    let real: String = vm
        .lua()
        .globals()
        .get::<Table>("package")
        .unwrap()
        .get("path")
        .unwrap();
    assert!(!real.contains("/nonexistent/"));
    // A missing module reports the searched paths.
    let m = d.write("m.lua", "function handle() return require('nope') end");
    let err = vm
        .resolve(
            &spec(&m, CodeCache::Stat, &empty()),
            EnvMode::Once,
            "handle",
        )
        .unwrap()
        .call::<()>(())
        .unwrap_err();
    assert!(err.to_string().contains("module 'nope' not found"), "{err}");
}

/// mod_lua's reused VMs fail with "stack overflow" after about a million calls (one value is
/// left on the stack per call). Drive well over a million calls through one reused VM along
/// the path a request takes (resolve the entry function in its scope, call it with an
/// argument, read the result) and require every call to succeed.
#[test]
fn over_a_million_calls_through_one_vm() {
    let d = Dir::new("million");
    let p = d.write(
        "h.lua",
        "local n = 0\nfunction handle(r) n = n + 1; return r end\n",
    );
    let vm = Vm::new(&setup()).unwrap();
    let e = empty();
    let s = ChunkSpec {
        codecache: CodeCache::Forever,
        ..spec(&p, CodeCache::Forever, &e)
    };
    // A fresh userdata per call stands in for `r`, as dispatch creates one per call.
    struct Arg(i64);
    impl mlua::UserData for Arg {
        fn add_methods<M: mlua::UserDataMethods<Self>>(m: &mut M) {
            m.add_method("get", |_, this, ()| Ok(this.0));
        }
    }
    let p2 = d.write("u.lua", "function handle(r) return r:get() end\n");
    let s2 = spec(&p2, CodeCache::Forever, &e);
    const CALLS: i64 = 1_100_000;
    for i in 0..CALLS {
        let f = vm.resolve(&s, EnvMode::Persistent, "handle").unwrap();
        let got: i64 = f.call(i).unwrap();
        assert_eq!(got, i);
        if i % 4 == 0 {
            let f = vm.resolve(&s2, EnvMode::Once, "handle").unwrap();
            let ud = vm.lua().create_userdata(Arg(i)).unwrap();
            assert_eq!(f.call::<i64>(ud).unwrap(), i);
        }
    }
    let n: i64 = vm.lua().load("return 0").call(()).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn server_pool_honours_max_and_never_blocks_forever() {
    let key = b"/test/server-pool".to_vec();
    let p = pool::server_pool(&key, 1, 2, &setup());
    assert_eq!(p.counts(), (1, 1), "min VMs exist from the start");
    let a = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    let b = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    assert_eq!(p.counts(), (2, 0));
    let t0 = std::time::Instant::now();
    match p.lease(&setup(), Duration::from_millis(50)) {
        Err(PoolError::Exhausted { max: 2, .. }) => {}
        _ => panic!("a third lease must fail after the wait"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(50));
    drop(a);
    let c = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    drop((b, c));
    assert_eq!(p.counts(), (2, 2), "every lease came back");
    // A waiter is woken by a returned VM (at once, not when its wait runs out)...
    let held = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    let held2 = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    let wait = |p: std::sync::Arc<pool::ServerPool>| {
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let ok = p.lease(&setup(), Duration::from_secs(20)).is_ok();
            (ok, t.elapsed())
        })
    };
    let waiter = wait(p.clone());
    std::thread::sleep(Duration::from_millis(50));
    drop(held);
    let (ok, waited) = waiter.join().unwrap();
    assert!(
        ok && waited < Duration::from_secs(10),
        "woken after {waited:?}"
    );
    // ... and by a poisoned VM's slot coming free.
    let held3 = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    assert_eq!(p.counts(), (2, 0));
    let waiter = wait(p.clone());
    std::thread::sleep(Duration::from_millis(50));
    held2.vm().poison();
    drop(held2);
    let (ok, waited) = waiter.join().unwrap();
    assert!(
        ok && waited < Duration::from_secs(10),
        "woken after {waited:?}"
    );
    drop(held3);
    assert_eq!(p.counts(), (2, 2));
    // A poisoned VM is closed and its slot freed.
    let l = p.lease(&setup(), Duration::from_millis(10)).unwrap();
    l.vm().poison();
    drop(l);
    assert_eq!(p.counts().0, 1);
}

#[test]
fn shared_pool_reuses_vms() {
    let vm = pool::checkout(&setup()).unwrap();
    let before = pool::shared_idle();
    pool::checkin(vm);
    assert_eq!(pool::shared_idle(), before + 1);
    let vm = pool::checkout(&setup()).unwrap();
    vm.vm().poison();
    pool::checkin(vm);
    assert_eq!(pool::shared_idle(), before);
}

#[test]
fn an_idle_vm_sheds_its_garbage() {
    let vm = Vm::new(&setup()).unwrap();
    vm.lua().gc_stop();
    vm.shed_garbage();
    let base = vm.lua().used_memory();
    // A little garbage stays for Lua's own collector ...
    vm.lua()
        .load("local t = {} for i = 1, 100 do t[i] = {} end")
        .exec()
        .unwrap();
    vm.end_request();
    assert!(!vm.has_idle_garbage(std::time::Instant::now(), std::time::Duration::ZERO));
    // ... a lot is collected once the VM has idled long enough, not when its request ends.
    vm.lua()
        .load("G = {} for i = 1, 2000 do G[i] = string.rep('x', 100) .. i end G = nil")
        .exec()
        .unwrap();
    vm.end_request();
    assert!(vm.lua().used_memory() > base + IDLE_GARBAGE);
    assert!(!vm.has_idle_garbage(
        std::time::Instant::now(),
        std::time::Duration::from_secs(3600)
    ));
    assert!(vm.has_idle_garbage(std::time::Instant::now(), std::time::Duration::ZERO));
    vm.shed_garbage();
    assert!(
        vm.lua().used_memory() < base + IDLE_GARBAGE / 4,
        "{} vs {base}",
        vm.lua().used_memory()
    );
    assert!(!vm.has_idle_garbage(std::time::Instant::now(), std::time::Duration::ZERO));
}

#[test]
fn a_pool_sheds_the_garbage_of_its_oldest_idle_vm() {
    use std::sync::Mutex;
    let idle = Mutex::new(Vec::new());
    let garbage = "G = {} for i = 1, 2000 do G[i] = string.rep('x', 100) .. i end G = nil";
    let (a, b) = (
        pool::checkout(&setup()).unwrap(),
        pool::checkout(&setup()).unwrap(),
    );
    a.vm().lua().load(garbage).exec().unwrap();
    b.vm().lua().load(garbage).exec().unwrap();
    let made = a.vm().lua().used_memory();
    a.vm().lua().globals().set("NAME", "a").unwrap();
    pool::return_to(&idle, a, 8);
    pool::return_to(&idle, b, 8);
    // Nothing is collected when requests end ...
    let top = idle.lock().unwrap().pop().unwrap();
    assert!(top.vm().lua().used_memory() + IDLE_GARBAGE > made);
    pool::return_to(&idle, top, 8);
    // ... but once the oldest has idled long enough, the next request to end sheds its garbage.
    std::thread::sleep(pool::IDLE_AFTER + std::time::Duration::from_millis(50));
    let top = idle.lock().unwrap().pop().unwrap();
    pool::return_to(&idle, top, 8);
    let list = idle.lock().unwrap();
    assert_eq!(list.len(), 2);
    let oldest = list[0].vm().lua();
    assert_eq!(oldest.globals().get::<String>("NAME").unwrap(), "a");
    assert!(oldest.used_memory() + IDLE_GARBAGE < made, "not shed");
    // The one on top had its request end just now: it keeps its garbage for now.
    assert!(list[1].vm().lua().used_memory() + IDLE_GARBAGE > made);
    drop(list);
    // Later, the clean VM at the bottom does not hide the one above it.
    std::thread::sleep(pool::IDLE_AFTER + std::time::Duration::from_millis(50));
    let c = pool::checkout(&setup()).unwrap();
    pool::return_to(&idle, c, 8);
    let list = idle.lock().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0].vm().lua().globals().get::<String>("NAME").unwrap(),
        "a"
    );
    assert!(
        list[1].vm().lua().used_memory() + IDLE_GARBAGE < made,
        "not shed"
    );
}

#[test]
fn a_busy_vm_is_collected_every_few_requests_or_when_garbage_piles_up() {
    let vm = Vm::new(&setup()).unwrap();
    vm.lua().gc_stop();
    vm.shed_garbage();
    let base = vm.lua().used_memory();
    let some = "G = {} for i = 1, 2000 do G[i] = string.rep('x', 100) .. i end G = nil";
    vm.lua().load(some).exec().unwrap();
    for _ in 1..COLLECT_EVERY {
        vm.end_request();
    }
    assert!(
        vm.lua().used_memory() > base + IDLE_GARBAGE,
        "collected too early"
    );
    vm.end_request();
    assert!(
        vm.lua().used_memory() < base + IDLE_GARBAGE / 4,
        "not collected"
    );
    // Over MAX_GARBAGE: collected when the request ends.
    vm.lua()
        .load("G = {} for i = 1, 4000 do G[i] = string.rep('y', 400) .. i end G = nil")
        .exec()
        .unwrap();
    assert!(vm.lua().used_memory() > base + MAX_GARBAGE);
    vm.end_request();
    // (Lua's string table keeps the size the 4,000 numbers' strings gave it.)
    assert!(
        vm.lua().used_memory() < base + IDLE_GARBAGE,
        "not collected: {} vs {base}",
        vm.lua().used_memory()
    );
}
