//! Where VMs live between uses.
//! - The shared pool: VMs that serve the `once`, `request` and `thread` scopes. A request that
//!   runs `request` or `thread` code (or a filter) leases one VM for the rest of its life
//!   (every phase, on whichever thread runs it), so all of that request's Lua code shares one
//!   state; the VM comes back when the request's pool is freed. A `once` call in a request
//!   holding no VM leases one for the call alone ([`CallLease`]).
//! - Server pools: one bounded pool per script for `LuaScope server min max`, as mod_lua keeps
//!   one reslist per file. A lease returns its VM on drop on every path; waiting for a VM is
//!   bounded, never forever.
#![deny(unsafe_code)]

use super::{PathMap, Vm, VmSetup};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A VM that may be handed to another thread.
pub struct SendVm(Box<Vm>);

// SAFETY: a `Vm` owns its Lua state and every handle into it (functions, tables, caches);
// none is shared with anything outside the `Vm`, and the module never keeps a reference to a
// VM's contents after a call returns. Moving the whole `Vm` to another thread therefore moves
// all users of the state together, and a `Vm` is only ever used by one thread at a time (the
// pools hand it out exclusively).
#[allow(unsafe_code)]
unsafe impl Send for SendVm {}

impl SendVm {
    pub fn new(vm: Vm) -> SendVm {
        SendVm(Box::new(vm))
    }
    pub fn vm(&self) -> &Vm {
        &self.0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Idle VMs kept for reuse; more than this many idle VMs are closed instead.
const SHARED_IDLE_MAX: usize = 512;

static SHARED: Mutex<Vec<SendVm>> = Mutex::new(Vec::new());

/// How long a VM waits unused in a pool before its garbage is collected.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// How many idle VMs, from the least recently used, a returning VM looks at for garbage.
const SHED_SCAN: usize = 64;

/// Takes the least recently used idle VM with garbage to shed (see [`Vm::has_idle_garbage`])
/// out of `idle`, with its position; the caller collects it without holding the pool's lock
/// and puts it back there. Pools are LIFO, so `idle` runs from the least recently used VM
/// up: the search stops at the first VM that has not idled long enough.
fn take_oldest_with_garbage(idle: &mut Vec<SendVm>, now: Instant) -> Option<(usize, SendVm)> {
    let i = idle
        .iter()
        .take(SHED_SCAN)
        .take_while(|v| v.vm().idled(now, IDLE_AFTER))
        .position(|v| v.vm().garbage_left())?;
    Some((i, idle.remove(i)))
}

/// Takes an idle VM from the shared pool or creates one.
pub fn checkout(setup: &VmSetup) -> mlua::Result<SendVm> {
    if let Some(vm) = lock(&SHARED).pop() {
        return Ok(vm);
    }
    Vm::new(setup).map(SendVm::new)
}

/// Returns a VM to the shared pool (a poisoned one is closed).
pub fn checkin(vm: SendVm) {
    return_to(&SHARED, vm, SHARED_IDLE_MAX);
}

/// Exclusive use of a shared-pool VM for one call; the VM goes back to the pool when this is
/// dropped. For calls that leave nothing in the VM for later calls of their request (`once`).
pub struct CallLease(Option<SendVm>);

impl CallLease {
    pub fn checkout(setup: &VmSetup) -> mlua::Result<CallLease> {
        checkout(setup).map(|vm| CallLease(Some(vm)))
    }

    pub fn vm(&self) -> &Vm {
        self.0
            .as_ref()
            .expect("lease holds a VM until dropped")
            .vm()
    }
}

impl Drop for CallLease {
    fn drop(&mut self) {
        if let Some(vm) = self.0.take() {
            if std::thread::panicking() {
                vm.vm().poison();
            }
            checkin(vm);
        }
    }
}

/// Ends `vm`'s request and puts it back in the idle list `idle` (a poisoned VM is closed).
pub(crate) fn return_to(idle: &Mutex<Vec<SendVm>>, vm: SendVm, cap: usize) {
    let now = vm.vm().end_request();
    if !vm.vm().is_poisoned() {
        put_back(idle, |list| list, vm, cap, now);
    }
}

/// Puts `vm` on top of the idle list `list` finds in `pool` (at most `cap` idle VMs); then
/// sheds the garbage of the pool's oldest VM if it has idled long with some, outside the
/// lock, so that each request that ends cleans at most one idle VM.
fn put_back<T>(
    pool: &Mutex<T>,
    list: fn(&mut T) -> &mut Vec<SendVm>,
    vm: SendVm,
    cap: usize,
    now: Instant,
) {
    let mut guard = lock(pool);
    let idle = list(&mut guard);
    if idle.len() < cap {
        idle.push(vm);
    }
    let old = take_oldest_with_garbage(idle, now);
    drop(guard);
    if let Some((i, old)) = old {
        old.vm().shed_garbage();
        let mut guard = lock(pool);
        let idle = list(&mut guard);
        if idle.len() < cap {
            idle.insert(i.min(idle.len()), old);
        }
    }
}

/// Number of idle VMs in the shared pool (for diagnostics and tests).
pub fn shared_idle() -> usize {
    lock(&SHARED).len()
}

/// A bounded pool of VMs for one script under `LuaScope server`.
pub struct ServerPool {
    state: Mutex<PoolState>,
    returned: Condvar,
    /// Requests waiting on `returned`, changed only under `state`'s lock. A returned VM
    /// wakes them only when there are any: waking is a system call whether or not anyone
    /// waits. A returner reads it after putting its VM back under the lock, so a waiter that
    /// found no VM has counted itself by then, and one that comes later finds the VM.
    waiting: AtomicU32,
    min: u32,
    max: u32,
}

struct PoolState {
    idle: Vec<SendVm>,
    /// VMs in existence (idle + leased).
    total: u32,
}

/// Why a server-scope VM could not be had.
#[derive(Debug)]
pub enum PoolError {
    /// All `max` VMs stayed busy for the whole wait.
    Exhausted {
        max: u32,
        waited: Duration,
    },
    Create(mlua::Error),
}

static SERVER_POOLS: Mutex<Option<PathMap<Arc<ServerPool>>>> = Mutex::new(None);

/// The pool for `key` (the script path); created with `min` VMs on first use. As in mod_lua,
/// the first caller's min/max define the pool.
pub fn server_pool(key: &[u8], min: u32, max: u32, setup: &VmSetup) -> Arc<ServerPool> {
    let mut pools = lock(&SERVER_POOLS);
    let pools = pools.get_or_insert_with(PathMap::default);
    if let Some(p) = pools.get(key) {
        return p.clone();
    }
    let max = max.max(1);
    let min = min.clamp(1, max);
    let idle: Vec<SendVm> = (0..min)
        .filter_map(|_| Vm::new(setup).ok().map(SendVm::new))
        .collect();
    let pool = Arc::new(ServerPool {
        state: Mutex::new(PoolState {
            total: idle.len() as u32,
            idle,
        }),
        returned: Condvar::new(),
        waiting: AtomicU32::new(0),
        min,
        max,
    });
    pools.insert(key.to_vec(), pool.clone());
    pool
}

impl ServerPool {
    /// Leases a VM, creating one while fewer than `max` exist, else waiting at most `wait`
    /// for one to come back.
    pub fn lease(
        self: &Arc<Self>,
        setup: &VmSetup,
        wait: Duration,
    ) -> Result<ServerLease, PoolError> {
        let deadline = Instant::now() + wait;
        let mut st = lock(&self.state);
        loop {
            if let Some(vm) = st.idle.pop() {
                return Ok(ServerLease {
                    pool: self.clone(),
                    vm: Some(vm),
                });
            }
            if st.total < self.max {
                st.total += 1;
                drop(st);
                return match Vm::new(setup) {
                    Ok(vm) => Ok(ServerLease {
                        pool: self.clone(),
                        vm: Some(SendVm::new(vm)),
                    }),
                    Err(e) => {
                        self.forget_one();
                        Err(PoolError::Create(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PoolError::Exhausted {
                    max: self.max,
                    waited: wait,
                });
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            st = self
                .returned
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn forget_one(&self) {
        let mut st = lock(&self.state);
        st.total = st.total.saturating_sub(1);
        drop(st);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.returned.notify_one();
        }
    }

    pub fn min(&self) -> u32 {
        self.min
    }
    pub fn max(&self) -> u32 {
        self.max
    }

    /// (VMs in existence, idle VMs).
    pub fn counts(&self) -> (u32, usize) {
        let st = lock(&self.state);
        (st.total, st.idle.len())
    }
}

/// Exclusive use of one server-scope VM; returned to its pool when dropped.
pub struct ServerLease {
    pool: Arc<ServerPool>,
    vm: Option<SendVm>,
}

impl ServerLease {
    pub fn vm(&self) -> &Vm {
        self.vm
            .as_ref()
            .expect("lease holds a VM until dropped")
            .vm()
    }
}

impl Drop for ServerLease {
    fn drop(&mut self) {
        let Some(vm) = self.vm.take() else { return };
        let now = vm.vm().end_request();
        if vm.vm().is_poisoned() || std::thread::panicking() {
            drop(vm);
            self.pool.forget_one();
            return;
        }
        // A server pool never holds more than `max` VMs: its idle list needs no cap.
        put_back(&self.pool.state, |st| &mut st.idle, vm, usize::MAX, now);
        // Two VMs may have come back (this one and a shed one).
        if self.pool.waiting.load(Ordering::Relaxed) > 0 {
            self.pool.returned.notify_all();
        }
    }
}
