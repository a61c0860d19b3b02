//! The module's global allocator: the system allocator (malloc), except that large blocks
//! (above 32 KiB, up to 4 MiB) are kept on free lists for reuse, up to [`BUDGET`] bytes per
//! process.
//!
//! Why: a filter turns every 64 KiB piece of a body into Lua strings, and the collector frees
//! them together. glibc gives each thread arena's freed top back to the kernel as soon as it
//! passes 128 KiB (`madvise(MADV_DONTNEED)`), so the next response faults the same pages in
//! again, zeroed, and the release shoots down TLB entries on every CPU running the process. A
//! process-wide `M_TRIM_THRESHOLD` would fix that for the whole of httpd at the cost of its
//! memory; keeping a few megabytes of our own large blocks warm fixes it for what the module
//! allocates (Lua's heap included: mlua allocates through Rust's global allocator).
//!
//! Blocks are rounded up to one of four sizes per power of two (at most 25% more), so that a
//! freed block serves any later request of its class. Everything else, and every block that
//! does not fit the budget, goes straight to malloc/free.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks above this size are large.
const LOG_SMALLEST: u32 = 15;
/// Largest block kept.
const LOG_LARGEST: u32 = 22;
/// Size classes per power of two.
const STEPS: usize = 4;
const CLASSES: usize = (LOG_LARGEST - LOG_SMALLEST) as usize * STEPS;
/// Most blocks kept per class.
const SLOTS: usize = 32;
/// Most bytes kept in all (per process).
pub const BUDGET: usize = 4 << 20;
/// malloc's alignment: blocks needing more are never kept.
const MIN_ALIGN: usize = 16;

struct FreeList {
    len: usize,
    blocks: [*mut u8; SLOTS],
}

// SAFETY: the list only holds addresses of unused blocks; whoever pops one owns it.
unsafe impl Send for FreeList {}

static LISTS: [Mutex<FreeList>; CLASSES] = [const {
    Mutex::new(FreeList {
        len: 0,
        blocks: [std::ptr::null_mut(); SLOTS],
    })
}; CLASSES];

/// Bytes held on the free lists.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// The class of a large block of `size` bytes and the size it is allocated with; None for
/// small or huge blocks.
fn class(size: usize, align: usize) -> Option<(usize, usize)> {
    if align > MIN_ALIGN || size <= 1 << LOG_SMALLEST || size > 1 << LOG_LARGEST {
        return None;
    }
    // 2^p < size <= 2^(p+1), in steps of 2^p / STEPS.
    let p = usize::BITS - 1 - (size - 1).leading_zeros();
    let step = (1usize << p) / STEPS;
    let rounded = size.div_ceil(step) * step;
    let k = rounded / step - STEPS; // 1..=STEPS
    let index = (p - LOG_SMALLEST) as usize * STEPS + (k - 1);
    Some((index, rounded))
}

fn list(index: usize) -> std::sync::MutexGuard<'static, FreeList> {
    // Nothing panics while a list is locked; a poisoned lock still holds a consistent list.
    LISTS[index].lock().unwrap_or_else(|e| e.into_inner())
}

fn take(index: usize, size: usize) -> *mut u8 {
    let mut l = list(index);
    if l.len == 0 {
        return std::ptr::null_mut();
    }
    l.len -= 1;
    let p = l.blocks[l.len];
    drop(l);
    KEPT.fetch_sub(size, Ordering::Relaxed);
    p
}

/// Keeps `p` for reuse if the budget and its list allow; false when the caller must free it.
fn keep(index: usize, size: usize, p: *mut u8) -> bool {
    if KEPT.fetch_add(size, Ordering::Relaxed) + size > BUDGET {
        KEPT.fetch_sub(size, Ordering::Relaxed);
        return false;
    }
    let mut l = list(index);
    if l.len == SLOTS {
        drop(l);
        KEPT.fetch_sub(size, Ordering::Relaxed);
        return false;
    }
    let n = l.len;
    l.blocks[n] = p;
    l.len += 1;
    true
}

/// Gives every kept block back to malloc (before the module is unloaded: the lists live in
/// its data).
pub fn release() {
    for index in 0..CLASSES {
        let size = block_size(index);
        loop {
            let p = take(index, size);
            if p.is_null() {
                break;
            }
            // SAFETY: kept blocks came from System with this size and malloc's alignment.
            unsafe { System.dealloc(p, Layout::from_size_align_unchecked(size, MIN_ALIGN)) };
        }
    }
}

/// The allocated size of class `index`'s blocks.
fn block_size(index: usize) -> usize {
    let p = LOG_SMALLEST + (index / STEPS) as u32;
    (1usize << p) + (index % STEPS + 1) * ((1usize << p) / STEPS)
}

/// Bytes currently kept (for tests and diagnostics).
pub fn kept() -> usize {
    KEPT.load(Ordering::Relaxed)
}

pub struct ModuleAlloc;

/// A block for `layout`: a kept one of its class if there is one, else a new one from System.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
unsafe fn allocate(layout: Layout, zeroed: bool) -> *mut u8 {
    let fresh = |l: Layout| {
        if zeroed {
            System.alloc_zeroed(l)
        } else {
            System.alloc(l)
        }
    };
    match class(layout.size(), layout.align()) {
        None => fresh(layout),
        Some((index, size)) => {
            let p = take(index, size);
            if p.is_null() {
                return fresh(Layout::from_size_align_unchecked(size, layout.align()));
            }
            if zeroed {
                std::ptr::write_bytes(p, 0, layout.size());
            }
            p
        }
    }
}

// SAFETY: every block comes from System; large blocks are allocated with their class size
// and freed (or kept) under the same class, which both ends compute from the layout.
unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocate(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocate(layout, true)
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        match class(layout.size(), layout.align()) {
            None => System.dealloc(p, layout),
            Some((index, size)) => {
                if !keep(index, size, p) {
                    System.dealloc(p, Layout::from_size_align_unchecked(size, layout.align()));
                }
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class(layout.size(), layout.align());
        let new = class(new_size, layout.align());
        match (old, new) {
            (None, None) => System.realloc(p, layout, new_size),
            (Some((a, _)), Some((b, _))) if a == b => p,
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let q = self.alloc(new_layout);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                q
            }
        }
    }
}

/// Lua's allocator for one VM: small blocks (up to [`SMALL_MAX`] bytes) that the VM frees are
/// kept on the VM's own free lists, by size in steps of 16 bytes, and handed out again to the
/// same VM; everything else goes through the module's global allocator as mlua's allocator
/// does.
///
/// Why: a request's garbage is hundreds of small blocks (tables, their parts, strings) that
/// a collection frees together and the next requests allocate again. glibc's per-thread cache
/// holds seven blocks of a size, so most of them went through malloc's bins; a free list
/// per VM needs no locking (a VM serves one request at a time) and no bookkeeping but the
/// list heads. The lists hold at most [`CACHE_CAP`] bytes per VM.
///
/// Every block is a malloc block, whoever allocated it (mlua's allocator before the switch,
/// or this one): a freed block is filed under the class its usable size covers, so blocks
/// from either allocator can serve any request of their class or below, and mlua's
/// allocator, put back when the heap is dropped, can free blocks this one made.
#[cfg(not(feature = "luajit"))]
pub struct LuaHeap {
    /// Keeps `state` alive.
    _lua: mlua::Lua,
    state: *mut mlua::ffi::lua_State,
    lists: Box<SmallLists>,
    previous: (mlua::ffi::lua_Alloc, *mut std::ffi::c_void),
}

/// Blocks up to this size are kept per VM.
#[cfg(not(feature = "luajit"))]
const SMALL_MAX: usize = 512;
#[cfg(not(feature = "luajit"))]
const SMALL_STEP: usize = 16;
#[cfg(not(feature = "luajit"))]
const SMALL_CLASSES: usize = SMALL_MAX / SMALL_STEP;
/// Most bytes a VM keeps on its lists. (64 KiB held up to a megabyte per child in idle
/// blocks with one VM per concurrent request, for no measurable gain over 16: post_form,
/// whose collections free the most at once, ran 0.6% more instructions with 16.)
#[cfg(not(feature = "luajit"))]
pub const CACHE_CAP: usize = 16 * 1024;

/// Free lists by class: `heads[c]` chains blocks of at least `c * SMALL_STEP` usable bytes
/// through their first word.
#[cfg(not(feature = "luajit"))]
struct SmallLists {
    heads: [*mut u8; SMALL_CLASSES + 1],
    bytes: usize,
}

#[cfg(not(feature = "luajit"))]
impl SmallLists {
    fn layout(size: usize) -> Layout {
        // SAFETY: MIN_ALIGN is a power of two and sizes stay far below isize::MAX.
        unsafe { Layout::from_size_align_unchecked(size, MIN_ALIGN) }
    }

    /// A block of at least `size` bytes.
    ///
    /// # Safety
    /// `size` is not zero.
    unsafe fn alloc(&mut self, size: usize) -> *mut u8 {
        if size > SMALL_MAX {
            let layout = Self::layout(size);
            let p = std::alloc::alloc(layout);
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            return p;
        }
        let class = size.div_ceil(SMALL_STEP);
        let p = self.heads[class];
        if !p.is_null() {
            self.heads[class] = p.cast::<*mut u8>().read();
            self.bytes -= class * SMALL_STEP;
            return p;
        }
        let layout = Self::layout(class * SMALL_STEP);
        let p = System.alloc(layout);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        p
    }

    /// Frees (or keeps) block `p` that Lua knows as `size` bytes.
    ///
    /// # Safety
    /// `p` is a live block of `size` bytes from [`SmallLists::alloc`] or mlua's allocator.
    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        if size > SMALL_MAX {
            return std::alloc::dealloc(p, Self::layout(size));
        }
        let class = (libc::malloc_usable_size(p.cast()) / SMALL_STEP).min(SMALL_CLASSES);
        let bytes = class * SMALL_STEP;
        if class == 0 || self.bytes + bytes > CACHE_CAP {
            return System.dealloc(p, Self::layout(size));
        }
        p.cast::<*mut u8>().write(self.heads[class]);
        self.heads[class] = p;
        self.bytes += bytes;
    }

    /// Gives every kept block back to malloc.
    fn release(&mut self) {
        for head in self.heads.iter_mut() {
            while !head.is_null() {
                let p = *head;
                // SAFETY: a kept block is a malloc block whose first word links the list.
                unsafe {
                    *head = p.cast::<*mut u8>().read();
                    libc::free(p.cast());
                }
            }
        }
        self.bytes = 0;
    }
}

/// The `lua_Alloc` of a VM with a [`LuaHeap`]: `ud` is its [`SmallLists`].
#[cfg(not(feature = "luajit"))]
unsafe extern "C" fn lua_alloc(
    ud: *mut std::ffi::c_void,
    p: *mut std::ffi::c_void,
    osize: usize,
    nsize: usize,
) -> *mut std::ffi::c_void {
    let lists = &mut *ud.cast::<SmallLists>();
    let p = p.cast::<u8>();
    if nsize == 0 {
        if !p.is_null() {
            lists.free(p, osize);
        }
        return std::ptr::null_mut();
    }
    if p.is_null() {
        // For a new block Lua passes the object's type as `osize`.
        return lists.alloc(nsize).cast();
    }
    if osize > SMALL_MAX && nsize > SMALL_MAX {
        let q = std::alloc::realloc(p, SmallLists::layout(osize), nsize);
        if q.is_null() {
            std::alloc::handle_alloc_error(SmallLists::layout(nsize));
        }
        return q.cast();
    }
    if nsize <= osize && osize <= SMALL_MAX {
        return p.cast();
    }
    let q = lists.alloc(nsize);
    std::ptr::copy_nonoverlapping(p, q, osize.min(nsize));
    lists.free(p, osize);
    q.cast()
}

#[cfg(not(feature = "luajit"))]
impl LuaHeap {
    /// Makes `lua` allocate through a new heap until the heap is dropped (None if mlua
    /// could not run the switch).
    pub fn install(lua: &mlua::Lua) -> Option<LuaHeap> {
        let mut lists = Box::new(SmallLists {
            heads: [std::ptr::null_mut(); SMALL_CLASSES + 1],
            bytes: 0,
        });
        let ud: *mut SmallLists = &mut *lists;
        let mut switched = None;
        // SAFETY: the closure only swaps the state's allocator; blocks of either allocator
        // are malloc blocks both can free (see the type's notes).
        unsafe {
            lua.exec_raw::<()>((), |l| {
                let mut old_ud = std::ptr::null_mut();
                let old = mlua::ffi::lua_getallocf(l, &mut old_ud);
                mlua::ffi::lua_setallocf(l, lua_alloc, ud.cast());
                switched = Some((l, old, old_ud));
            })
        }
        .ok()?;
        let (state, f, ud) = switched?;
        Some(LuaHeap {
            _lua: lua.clone(),
            state,
            lists,
            previous: (f, ud),
        })
    }

    /// Bytes kept on the VM's lists.
    pub fn kept(&self) -> usize {
        self.lists.bytes
    }
}

#[cfg(not(feature = "luajit"))]
impl Drop for LuaHeap {
    fn drop(&mut self) {
        let (f, ud) = self.previous;
        // SAFETY: `state` is a thread of `self.lua`, alive while it is; Lua frees the blocks
        // this heap made with mlua's allocator from now on (see the type's notes).
        unsafe { mlua::ffi::lua_setallocf(self.state, f, ud) };
        self.lists.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_by_at_most_a_quarter() {
        assert_eq!(class(32 * 1024, 16), None);
        assert_eq!(class(64 * 1024, 32), None);
        assert_eq!(class((4 << 20) + 1, 16), None);
        let mut last = (0, 0);
        for size in (32 * 1024 + 1..=4 << 20).step_by(97).chain([4 << 20]) {
            let (index, rounded) = class(size, 16).unwrap();
            assert!(
                rounded >= size && rounded - size <= size / 4,
                "{size} -> {rounded}"
            );
            assert_eq!(block_size(index), rounded, "{size}");
            assert!(index < CLASSES);
            assert!(index >= last.0 && rounded >= last.1);
            last = (index, rounded);
        }
        assert_eq!(class(64 * 1024, 16), Some((STEPS - 1, 64 * 1024)));
        assert_eq!(class(64 * 1024 + 25, 16), Some((STEPS, 80 * 1024)));
        assert_eq!(class(4 << 20, 16), Some((CLASSES - 1, 4 << 20)));
    }

    #[test]
    fn blocks_are_reused_and_contents_survive_realloc() {
        let a = ModuleAlloc;
        unsafe {
            let l = Layout::from_size_align(70_000, 16).unwrap();
            let p = a.alloc(l);
            assert!(!p.is_null());
            for i in 0..70_000 {
                *p.add(i) = (i % 251) as u8;
            }
            // Same class: the block itself.
            let q = a.realloc(p, l, 75_000);
            assert_eq!(q, p);
            // Another class: moved, contents kept.
            let l2 = Layout::from_size_align(75_000, 16).unwrap();
            let r = a.realloc(q, l2, 300_000);
            assert!((0..70_000).all(|i| *r.add(i) == (i % 251) as u8));
            // Down to a small block.
            let l3 = Layout::from_size_align(300_000, 16).unwrap();
            let s = a.realloc(r, l3, 100);
            assert!((0..100).all(|i| *s.add(i) == (i % 251) as u8));
            a.dealloc(s, Layout::from_size_align(100, 16).unwrap());
            // Freed large blocks are kept and handed out again (zeroed when asked).
            let t = a.alloc(l);
            *t = 7;
            a.dealloc(t, l);
            let z = a.alloc_zeroed(Layout::from_size_align(66_000, 16).unwrap());
            assert!((0..66_000).all(|i| *z.add(i) == 0));
            a.dealloc(z, Layout::from_size_align(66_000, 16).unwrap());
        }
    }

    #[test]
    fn threads_share_the_lists_within_the_budget() {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let a = ModuleAlloc;
                    for i in 0..2000usize {
                        let size = 33_000 + (i * 7919 + t * 104_729) % 1_000_000;
                        let l = Layout::from_size_align(size, 16).unwrap();
                        unsafe {
                            let p = a.alloc(l);
                            *p = t as u8;
                            *p.add(size - 1) = i as u8;
                            assert_eq!((*p, *p.add(size - 1)), (t as u8, i as u8));
                            a.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(kept() <= BUDGET);
        release();
    }

    #[cfg(not(feature = "luajit"))]
    #[test]
    fn a_vm_heap_reuses_small_blocks_and_hands_back_its_state() {
        let lua = mlua::Lua::new();
        // Blocks made before the switch are freed after it, and the other way round.
        lua.load("before = {} for i = 1, 2000 do before[i] = {i, tostring(i)} end")
            .exec()
            .unwrap();
        let heap = LuaHeap::install(&lua).expect("installed");
        let churn = r#"
            local t = {}
            for i = 1, 5000 do t[i] = {("x"):rep(i % 300), i} end
            local n = 0
            for i = 1, #t do n = n + #t[i][1] + t[i][2] end
            before = nil
            kept = t
            return n
        "#;
        let expected: i64 = (1..=5000).map(|i: i64| i % 300 + i).sum();
        for _ in 0..3 {
            assert_eq!(lua.load(churn).eval::<i64>().unwrap(), expected);
            lua.gc_collect().unwrap();
        }
        assert!(heap.kept() > 0, "freed small blocks are kept");
        assert!(heap.kept() <= CACHE_CAP);
        // Lua's own count stays exact through reuse.
        let used = lua.used_memory();
        lua.load("kept = nil").exec().unwrap();
        lua.gc_collect().unwrap();
        assert!(lua.used_memory() < used);
        // Dropped first, the heap gives the state back to mlua's allocator, which frees
        // the blocks the heap made.
        lua.load("kept = {} for i = 1, 3000 do kept[i] = {i} end")
            .exec()
            .unwrap();
        drop(heap);
        assert_eq!(lua.load("return #kept").eval::<i64>().unwrap(), 3000);
        lua.load("kept = nil collectgarbage()").exec().unwrap();
    }
}
