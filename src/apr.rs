//! Safe wrappers over the few APR objects the module touches: pools (with cleanups that run a
//! Rust `Drop`), string copies into a pool, and tables. All raw pointer work on APR lives here.

use crate::ffi;
use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;
use std::ptr::NonNull;

/// A borrowed APR pool. Copying the handle does not copy the pool.
#[derive(Clone, Copy)]
pub struct Pool<'a> {
    raw: NonNull<ffi::apr_pool_t>,
    _life: PhantomData<&'a ffi::apr_pool_t>,
}

impl<'a> Pool<'a> {
    /// # Safety
    /// `raw` must be a live pool for `'a`.
    pub unsafe fn from_raw(raw: *mut ffi::apr_pool_t) -> Option<Self> {
        NonNull::new(raw).map(|raw| Pool {
            raw,
            _life: PhantomData,
        })
    }

    pub fn as_ptr(self) -> *mut ffi::apr_pool_t {
        self.raw.as_ptr()
    }

    /// Copies `bytes` into the pool as a NUL-terminated string. Bytes after an interior NUL
    /// would be invisible to httpd, so callers must reject them first (see [`has_nul`]).
    pub fn strdup(self, bytes: &[u8]) -> *mut c_char {
        // SAFETY: the pool is live; apr_pstrmemdup copies `len` bytes and appends a NUL.
        unsafe { ffi::apr_pstrmemdup(self.as_ptr(), bytes.as_ptr().cast(), bytes.len()) }
    }

    /// Hands `value` to the pool: it is dropped when the pool is cleared or destroyed.
    /// Returns a pointer that stays valid until then. The value is stored in the pool's own
    /// memory (no heap allocation) unless it needs more than the pool's 8-byte alignment.
    pub fn attach<T: 'static>(self, value: T) -> *mut T {
        unsafe extern "C" fn drop_boxed<T>(data: *mut c_void) -> ffi::apr_status_t {
            crate::module::guard::guard("pool cleanup", 0, || {
                // SAFETY: `data` came from Box::into_raw in `attach` and the pool runs each
                // cleanup exactly once.
                drop(unsafe { Box::from_raw(data.cast::<T>()) });
                0
            })
        }
        unsafe extern "C" fn drop_in_pool<T>(data: *mut c_void) -> ffi::apr_status_t {
            crate::module::guard::guard("pool cleanup", 0, || {
                // SAFETY: `data` holds a T written by `attach` in this pool's memory, which
                // is freed only after the cleanups ran; each cleanup runs exactly once.
                unsafe { std::ptr::drop_in_place(data.cast::<T>()) };
                0
            })
        }
        const POOL_ALIGN: usize = 8;
        let (ptr, cleanup): (
            *mut T,
            unsafe extern "C" fn(*mut c_void) -> ffi::apr_status_t,
        ) = if std::mem::align_of::<T>() <= POOL_ALIGN && std::mem::size_of::<T>() > 0 {
            // SAFETY: apr_palloc returns memory aligned to 8 bytes that lives until the
            // pool is cleared or destroyed, after its cleanups have run.
            let p = unsafe { ffi::apr_palloc(self.as_ptr(), std::mem::size_of::<T>()) }.cast::<T>();
            assert!(!p.is_null(), "apr_palloc failed");
            // SAFETY: `p` is fresh, aligned and large enough for a T.
            unsafe { p.write(value) };
            (p, drop_in_pool::<T>)
        } else {
            (Box::into_raw(Box::new(value)), drop_boxed::<T>)
        };
        // SAFETY: registering a cleanup on a live pool; the function pointer lives as long as
        // the module is loaded, and every pool we attach to is destroyed before the module
        // is unloaded (pconf, pchild, connection and request pools).
        unsafe {
            ffi::apr_pool_cleanup_register(
                self.as_ptr(),
                ptr as *const c_void,
                Some(cleanup),
                Some(ffi::apr_pool_cleanup_null),
            );
        }
        ptr
    }
}

/// A part of a per-directory configuration record: owned by the record that set it, borrowed
/// by the records merged from that one.
///
/// httpd merges per-directory configurations on every request, into the request pool, and a
/// merged record never outlives the records it was merged from (those live in the
/// configuration pool, or in the same request pool where they were made earlier and so are
/// cleaned up later). Borrowing by pointer instead of counting references means a
/// per-request merge writes nothing: reference counts would be memory that every worker
/// thread on every core reads and writes, moving cache lines between cores on each request.
pub struct ConfRef<T: ?Sized + 'static>(Held<T>);

enum Held<T: ?Sized + 'static> {
    Own(Box<T>),
    Borrowed(NonNull<T>),
}

// SAFETY: a ConfRef gives only shared access to a `T` (mutation goes through `make_mut`, which
// needs the ConfRef itself mutably and never writes through a borrowed pointer), so it may
// cross and be shared between threads when `&T` may.
unsafe impl<T: ?Sized + Sync> Send for ConfRef<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for ConfRef<T> {}

impl<T: ?Sized + 'static> ConfRef<T> {
    pub fn new(value: Box<T>) -> Self {
        ConfRef(Held::Own(value))
    }

    /// The same value, borrowed for a record merged from the one holding `self`.
    pub fn borrow(&self, _: &MergeInputsOutlive) -> Self {
        ConfRef(Held::Borrowed(NonNull::from(&**self)))
    }
}

/// The promise that lets a merge borrow from its inputs: the merged record is dropped (and no
/// longer used) before either input record is.
pub struct MergeInputsOutlive(());

impl MergeInputsOutlive {
    /// # Safety
    /// The records merged under this promise must not outlive the records they are merged
    /// from. httpd's merge_dir_config guarantees it (see [`ConfRef`]).
    pub unsafe fn promise() -> MergeInputsOutlive {
        MergeInputsOutlive(())
    }

    /// For unit tests whose merged records are locals dropped before their inputs.
    #[cfg(test)]
    pub fn for_tests() -> MergeInputsOutlive {
        MergeInputsOutlive(())
    }
}

impl<T: Clone + 'static> ConfRef<T> {
    /// Mutable access, copying a borrowed value first (configuration time only).
    pub fn make_mut(&mut self) -> &mut T {
        if let Held::Borrowed(_) = self.0 {
            self.0 = Held::Own(Box::new((**self).clone()));
        }
        match &mut self.0 {
            Held::Own(b) => b,
            Held::Borrowed(_) => unreachable!("made owned above"),
        }
    }
}

impl<T: ?Sized + 'static> std::ops::Deref for ConfRef<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.0 {
            Held::Own(b) => b,
            // SAFETY: the promise `borrow` was given keeps the owner alive while this exists.
            Held::Borrowed(p) => unsafe { p.as_ref() },
        }
    }
}

impl<T: Default + 'static> Default for ConfRef<T> {
    fn default() -> Self {
        ConfRef::new(Box::default())
    }
}

/// A deep copy: the copy owns its value.
impl<T: Clone + 'static> Clone for ConfRef<T> {
    fn clone(&self) -> Self {
        ConfRef::new(Box::new((**self).clone()))
    }
}

impl<T: ?Sized + std::fmt::Debug + 'static> std::fmt::Debug for ConfRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// True if `bytes` contains a NUL, which a C string cannot carry.
pub fn has_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// Reads a possibly-NULL C string owned by httpd.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub unsafe fn opt_cstr<'a>(p: *const c_char) -> Option<&'a CStr> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(p) })
    }
}

/// A borrowed `apr_table_t` (header and notes tables).
#[derive(Clone, Copy)]
pub struct Table<'a> {
    raw: NonNull<ffi::apr_table_t>,
    _life: PhantomData<&'a ffi::apr_table_t>,
}

impl<'a> Table<'a> {
    /// # Safety
    /// `raw` must be a live table for `'a`, used by one thread at a time.
    pub unsafe fn from_raw(raw: *mut ffi::apr_table_t) -> Option<Self> {
        NonNull::new(raw).map(|raw| Table {
            raw,
            _life: PhantomData,
        })
    }

    pub fn as_ptr(self) -> *mut ffi::apr_table_t {
        self.raw.as_ptr()
    }

    /// Case-insensitive lookup of the first value for `key`.
    pub fn get(self, key: &CStr) -> Option<&'a CStr> {
        // SAFETY: live table, NUL-terminated key; the value lives in the table's pool.
        unsafe { opt_cstr(ffi::apr_table_get(self.as_ptr(), key.as_ptr())) }
    }

    /// Replaces every value of `key` (both are copied by APR).
    pub fn set(self, key: &CStr, value: &CStr) {
        // SAFETY: live table; apr_table_set copies key and value into the table's pool.
        unsafe { ffi::apr_table_set(self.as_ptr(), key.as_ptr(), value.as_ptr()) }
    }

    /// Adds a value without removing earlier ones (both are copied by APR).
    pub fn add(self, key: &CStr, value: &CStr) {
        // SAFETY: as for `set`.
        unsafe { ffi::apr_table_add(self.as_ptr(), key.as_ptr(), value.as_ptr()) }
    }

    pub fn unset(self, key: &CStr) {
        // SAFETY: live table.
        unsafe { ffi::apr_table_unset(self.as_ptr(), key.as_ptr()) }
    }

    /// The entries in table order (keys keep the case they were stored with).
    pub fn entries(self) -> Vec<(&'a CStr, &'a CStr)> {
        // SAFETY: apr_table_elts returns the table's backing array of apr_table_entry_t;
        // `nelts` entries are initialised and live as long as the table.
        unsafe {
            let arr = ffi::apr_table_elts(self.as_ptr());
            if arr.is_null() {
                return Vec::new();
            }
            let n = (*arr).nelts.max(0) as usize;
            let elts = (*arr).elts as *const ffi::apr_table_entry_t;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let e = &*elts.add(i);
                if let (Some(k), Some(v)) = (opt_cstr(e.key), opt_cstr(e.val)) {
                    out.push((k, v));
                }
            }
            out
        }
    }
}
