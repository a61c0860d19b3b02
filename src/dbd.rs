//! Databases through APR's DBD layer: a connection from mod_dbd's pool (`ap_dbd_open`) or one
//! opened directly with an apr_dbd driver. This is the unsafe layer for `r:dbacquire`; the Lua
//! objects live in `lua_api::db`.
//!
//! Every connection is bound to the request that acquired it: it owns a subpool of the
//! request pool, and destroying that pool (when the request ends, also after a script error)
//! returns the connection to mod_dbd or closes it. `close()` does the same earlier. After
//! either, every operation reports a closed connection instead of touching freed memory.

use crate::apr::Pool;
use crate::ffi;
use crate::httpd::Request;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Mutex, PoisonError};

type DbdOpen =
    unsafe extern "C" fn(*mut ffi::apr_pool_t, *mut ffi::server_rec) -> *mut ffi::ap_dbd_t;
type DbdClose = unsafe extern "C" fn(*mut ffi::server_rec, *mut ffi::ap_dbd_t);

/// Where a connection goes back to.
enum Release {
    /// mod_dbd's reslist for this server.
    ModDbd {
        rec: *mut ffi::ap_dbd_t,
        server: *mut ffi::server_rec,
        close: DbdClose,
    },
    /// A connection we opened: apr_dbd_close.
    Direct,
}

struct Live {
    driver: *const ffi::apr_dbd_driver_t,
    handle: *mut ffi::apr_dbd_t,
    /// mod_dbd's DBDPrepareSQL statements (NULL for direct connections).
    prepared: *mut ffi::apr_hash_t,
    /// Subpool of the request pool: results, rows and statements are allocated here.
    pool: *mut ffi::apr_pool_t,
    release: Release,
}

// SAFETY: a Live is only used while its Mutex is held, by the thread running the request that
// acquired it (or the thread destroying that request's pool).
unsafe impl Send for Live {}

impl Live {
    /// Gives the connection back; the pool is left to the caller.
    fn release(self) {
        // SAFETY: the handle is live until this call, which consumes it.
        unsafe {
            match self.release {
                Release::ModDbd { rec, server, close } => close(server, rec),
                Release::Direct => {
                    ffi::apr_dbd_close(self.driver, self.handle);
                }
            }
        }
    }

    /// Ok for status 0, else the driver's message for it.
    fn outcome(&self, rc: c_int) -> Result<(), String> {
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    fn error(&self, rc: c_int) -> String {
        // SAFETY: live driver and handle; the message is copied at once.
        unsafe {
            let p = ffi::apr_dbd_error(self.driver, self.handle, rc);
            if p.is_null() {
                format!("database error {rc}")
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }
}

/// Closes the connection when its pool goes away first.
struct ReleaseOnDrop(Arc<Mutex<Option<Live>>>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(live) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            live.release();
        }
    }
}

/// A database connection (cheap to clone; all clones see the same state).
#[derive(Clone)]
pub struct Conn(Arc<Mutex<Option<Live>>>);

/// A prepared statement of one connection.
#[derive(Clone)]
pub struct Statement {
    ptr: *mut ffi::apr_dbd_prepared_t,
    /// Arguments the statement needs; None when unknown (mod_dbd's DBDPrepareSQL).
    pub nargs: Option<usize>,
}
// SAFETY: only used through its connection, under the connection's lock.
unsafe impl Send for Statement {}

/// The rows of a select.
pub struct Rows {
    res: *mut ffi::apr_dbd_results_t,
    conn: Conn,
    /// The row "next" (-1) continues from: drivers keep their position in the row object.
    cursor: std::cell::Cell<*mut ffi::apr_dbd_row_t>,
}
// SAFETY: as Statement.
unsafe impl Send for Rows {}

/// One row: (column index from 0, column name, value), NULL columns left out.
pub type Row = Vec<(usize, String, Vec<u8>)>;

/// Selects ask for random-access results. mod_lua asks for sequential ones, with which the
/// pgsql driver reports 0 columns until a row is fetched, so every PostgreSQL select in
/// mod_lua returns nothing. Random-access results also serve "the next row" (-1).
const RANDOM_ACCESS: c_int = 1;

fn subpool(parent: Pool<'_>) -> *mut ffi::apr_pool_t {
    let mut p = std::ptr::null_mut();
    // SAFETY: the parent pool is live; the subpool is destroyed with it at the latest.
    unsafe {
        ffi::apr_pool_create_ex(&mut p, parent.as_ptr(), None, std::ptr::null_mut());
    }
    p
}

impl Conn {
    fn adopt(live: Live) -> Conn {
        let pool = live.pool;
        let state = Arc::new(Mutex::new(Some(live)));
        // SAFETY: `pool` was just created and is live.
        let pool = unsafe { Pool::from_raw(pool) }.expect("subpool");
        pool.attach(ReleaseOnDrop(state.clone()));
        Conn(state)
    }

    /// A connection from mod_dbd's pool for the request's server.
    pub fn from_mod_dbd(r: Request<'_>) -> Result<Conn, String> {
        // SAFETY: optional functions are registered by mod_dbd at load time; the types
        // are those mod_dbd.h declares for them.
        let (open, close) = unsafe {
            let open = ffi::apr_dynamic_fn_retrieve(c"ap_dbd_open".as_ptr());
            let close = ffi::apr_dynamic_fn_retrieve(c"ap_dbd_close".as_ptr());
            match (open, close) {
                (Some(o), Some(c)) => (
                    std::mem::transmute::<unsafe extern "C" fn(), DbdOpen>(o),
                    std::mem::transmute::<unsafe extern "C" fn(), DbdClose>(c),
                ),
                _ => return Err("mod_dbd doesn't seem to have been loaded.".into()),
            }
        };
        let server = r.rec().server;
        // SAFETY: a live request and server; mod_dbd only uses the pool for checks and logs.
        let rec = unsafe { open(r.pool().as_ptr(), server) };
        // SAFETY: NULL or a record from mod_dbd's reslist, ours until ap_dbd_close.
        let Some(d) = (unsafe { rec.as_ref() }) else {
            return Err(
                "Could not acquire connection from mod_dbd. If your database is running, \
                        this may indicate a permission problem."
                    .into(),
            );
        };
        Ok(Conn::adopt(Live {
            driver: d.driver,
            handle: d.handle,
            prepared: d.prepared,
            pool: subpool(r.pool()),
            release: Release::ModDbd { rec, server, close },
        }))
    }

    /// The apr_dbd driver `driver` ("sqlite3", "pgsql", …), loaded for a connection of `r`'s;
    /// errors carry the APR status, as mod_lua returns it.
    pub fn driver(r: Request<'_>, driver: &CStr) -> Result<Driver, (String, Option<i32>)> {
        let pool = subpool(r.pool());
        let name = driver.to_string_lossy().into_owned();
        let mut drv: *const ffi::apr_dbd_driver_t = std::ptr::null();
        // SAFETY: apr_dbd_init is idempotent; the process pool outlives every request.
        let rc = unsafe {
            let process = (*r.rec().server).process;
            ffi::apr_dbd_init((*process).pool);
            ffi::apr_dbd_get_driver(pool, driver.as_ptr(), &mut drv)
        };
        let loaded = Driver { drv, pool, name };
        let msg = match rc {
            0 => return Ok(loaded),
            ffi::APR_ENOTIMPL => format!("driver for {} not available", loaded.name),
            ffi::APR_EDSOOPEN => format!("can't find driver for {}", loaded.name),
            ffi::APR_ESYMNOTFOUND => format!("driver for {} is invalid or corrupted", loaded.name),
            _ => "mod_lua not compatible with APR in get_driver".into(),
        };
        Err((msg, Some(rc)))
    }

    /// A connection opened with a loaded driver and its parameters.
    pub fn open(driver: Driver, params: &CStr) -> Result<Conn, (String, Option<i32>)> {
        if params.is_empty() {
            return Err(("No database connection string was specified.".into(), None));
        }
        let mut handle: *mut ffi::apr_dbd_t = std::ptr::null_mut();
        let mut err: *const c_char = std::ptr::null();
        // SAFETY: a loaded driver, NUL-terminated params, out-pointers on our stack.
        let rc = unsafe {
            ffi::apr_dbd_open_ex(
                driver.drv,
                driver.pool,
                params.as_ptr(),
                &mut handle,
                &mut err,
            )
        };
        if rc != 0 || handle.is_null() {
            // SAFETY: NULL or a message in the driver's pool, copied before the pool goes.
            let msg = unsafe { err.as_ref() }
                .map(|_| {
                    unsafe { CStr::from_ptr(err) }
                        .to_string_lossy()
                        .into_owned()
                })
                .unwrap_or_else(|| format!("Could not connect to {} database", driver.name));
            return Err((msg, Some(rc)));
        }
        let drv = driver.drv;
        let pool = driver.into_pool();
        Ok(Conn::adopt(Live {
            driver: drv,
            handle,
            prepared: std::ptr::null_mut(),
            pool,
            release: Release::Direct,
        }))
    }

    /// A connection that is already closed: every operation reports that.
    pub fn closed() -> Conn {
        Conn(Arc::new(Mutex::new(None)))
    }

    /// Runs `f` on the open connection; None once it is closed.
    fn with<T>(&self, f: impl FnOnce(&Live) -> T) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(f)
    }

    /// Returns the connection (to mod_dbd) or closes it. Idempotent.
    pub fn close(&self) {
        let live = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(live) = live {
            let pool = live.pool;
            live.release();
            // SAFETY: the connection's own subpool; its ReleaseOnDrop now finds nothing.
            unsafe { ffi::apr_pool_destroy(pool) };
        }
    }

    pub fn is_open(&self) -> bool {
        self.with(|_| ()).is_some()
    }

    /// apr_dbd_check_conn: is the server still there.
    pub fn active(&self) -> bool {
        // SAFETY: live connection.
        self.with(|l| unsafe { ffi::apr_dbd_check_conn(l.driver, l.pool, l.handle) } == 0)
            .unwrap_or(false)
    }

    /// Rows affected, or the driver's message.
    pub fn query(&self, sql: &CStr) -> Option<Result<i64, String>> {
        self.with(|l| {
            let mut n: c_int = 0;
            // SAFETY: live connection, NUL-terminated SQL.
            let rc = unsafe { ffi::apr_dbd_query(l.driver, l.handle, &mut n, sql.as_ptr()) };
            l.outcome(rc).map(|()| n as i64)
        })
    }

    pub fn select(&self, sql: &CStr) -> Option<Result<(Rows, usize), String>> {
        self.with(|l| {
            let mut res: *mut ffi::apr_dbd_results_t = std::ptr::null_mut();
            // SAFETY: live connection; results live in the connection's pool.
            let rc = unsafe {
                ffi::apr_dbd_select(
                    l.driver,
                    l.pool,
                    l.handle,
                    &mut res,
                    sql.as_ptr(),
                    RANDOM_ACCESS,
                )
            };
            self.results(l, rc, res)
        })
    }

    /// The driver's escaping of `s` (None if the driver has none).
    pub fn escape(&self, s: &CStr) -> Option<Option<Vec<u8>>> {
        self.with(|l| {
            // SAFETY: live connection; the result is in the connection's pool, copied now.
            unsafe {
                let p = ffi::apr_dbd_escape(l.driver, l.pool, s.as_ptr(), l.handle);
                p.as_ref().map(|_| CStr::from_ptr(p).to_bytes().to_vec())
            }
        })
    }

    pub fn prepare(&self, sql: &CStr) -> Option<Result<Statement, String>> {
        self.with(|l| {
            let mut st: *mut ffi::apr_dbd_prepared_t = std::ptr::null_mut();
            // SAFETY: live connection; the statement lives in the connection's pool.
            let rc = unsafe {
                ffi::apr_dbd_prepare(
                    l.driver,
                    l.pool,
                    l.handle,
                    sql.as_ptr(),
                    std::ptr::null(),
                    &mut st,
                )
            };
            l.outcome(rc)?;
            Ok(Statement {
                ptr: st,
                nargs: Some(count_args(sql.to_bytes())),
            })
        })
    }

    /// A statement mod_dbd prepared from `DBDPrepareSQL … tag`.
    pub fn prepared(&self, tag: &CStr) -> Option<Option<Statement>> {
        self.with(|l| {
            if l.prepared.is_null() {
                return None;
            }
            // SAFETY: mod_dbd's hash of label → apr_dbd_prepared_t, live with the connection.
            let p = unsafe {
                ffi::apr_hash_get(
                    l.prepared,
                    tag.as_ptr().cast::<c_void>(),
                    ffi::APR_HASH_KEY_STRING as isize,
                )
            };
            (!p.is_null()).then_some(Statement {
                ptr: p.cast(),
                nargs: None,
            })
        })
    }

    /// A select's outcome: the rows and their column count, or the driver's message.
    fn results(
        &self,
        l: &Live,
        rc: c_int,
        res: *mut ffi::apr_dbd_results_t,
    ) -> Result<(Rows, usize), String> {
        l.outcome(rc)?;
        // SAFETY: results just produced by this driver.
        let cols = unsafe { ffi::apr_dbd_num_cols(l.driver, res) }.max(0) as usize;
        Ok((Rows::new(res, self.clone()), cols))
    }

    fn arg_ptrs(args: &[CString]) -> Vec<*const c_char> {
        args.iter().map(|a| a.as_ptr()).collect()
    }

    pub fn pquery(&self, st: &Statement, args: &[CString]) -> Option<Result<i64, String>> {
        self.with(|l| {
            let ptrs = Self::arg_ptrs(args);
            let mut n: c_int = 0;
            // SAFETY: live connection, a statement of it, `ptrs` valid for the call.
            let rc = unsafe {
                ffi::apr_dbd_pquery(
                    l.driver,
                    l.pool,
                    l.handle,
                    &mut n,
                    st.ptr,
                    ptrs.len() as c_int,
                    ptrs.as_ptr().cast_mut(),
                )
            };
            l.outcome(rc).map(|()| n as i64)
        })
    }

    pub fn pselect(
        &self,
        st: &Statement,
        args: &[CString],
    ) -> Option<Result<(Rows, usize), String>> {
        self.with(|l| {
            let ptrs = Self::arg_ptrs(args);
            let mut res: *mut ffi::apr_dbd_results_t = std::ptr::null_mut();
            // SAFETY: as pquery; results live in the connection's pool.
            let rc = unsafe {
                ffi::apr_dbd_pselect(
                    l.driver,
                    l.pool,
                    l.handle,
                    &mut res,
                    st.ptr,
                    RANDOM_ACCESS,
                    ptrs.len() as c_int,
                    ptrs.as_ptr().cast_mut(),
                )
            };
            self.results(l, rc, res)
        })
    }
}

/// Arguments an apr_dbd query string takes: each `%` not part of `%%`.
fn count_args(sql: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < sql.len() {
        if sql[i] == b'%' {
            if sql.get(i + 1) == Some(&b'%') {
                i += 1;
            } else {
                n += 1;
            }
        }
        i += 1;
    }
    n
}

impl Rows {
    fn new(res: *mut ffi::apr_dbd_results_t, conn: Conn) -> Rows {
        Rows {
            res,
            conn,
            cursor: std::cell::Cell::new(std::ptr::null_mut()),
        }
    }

    /// Row `rownum` (-1 = the next one); None when there is none or the connection is closed.
    pub fn row(&self, rownum: i32) -> Option<Row> {
        self.conn.with(|l| {
            let next = rownum == -1;
            let mut row = if next {
                self.cursor.get()
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: live connection and its results; rows live in the connection's pool.
            unsafe {
                if ffi::apr_dbd_get_row(l.driver, l.pool, self.res, &mut row, rownum) != 0 {
                    return None;
                }
                if next {
                    self.cursor.set(row);
                }
                let cols = ffi::apr_dbd_num_cols(l.driver, self.res).max(0);
                let mut out = Vec::with_capacity(cols as usize);
                for c in 0..cols {
                    // SQL NULL: drivers differ (pgsql gives "" from get_entry), datum_get
                    // with the NULL type answers ENOENT for it in all of them (and may write
                    // a pointer-sized value into `scratch` otherwise).
                    let mut scratch = [0u64; 4];
                    let null = ffi::apr_dbd_datum_get(
                        l.driver,
                        row,
                        c,
                        ffi::apr_dbd_type_e_APR_DBD_TYPE_NULL,
                        scratch.as_mut_ptr().cast(),
                    ) == ffi::APR_ENOENT as ffi::apr_status_t;
                    let v = ffi::apr_dbd_get_entry(l.driver, row, c);
                    if null || v.is_null() {
                        continue;
                    }
                    let name = ffi::apr_dbd_get_name(l.driver, self.res, c);
                    let name = if name.is_null() {
                        "(oob)".to_string()
                    } else {
                        CStr::from_ptr(name).to_string_lossy().into_owned()
                    };
                    out.push((c as usize, name, CStr::from_ptr(v).to_bytes().to_vec()));
                }
                Some(out)
            }
        })?
    }
}

/// An apr_dbd driver loaded into its own pool, which a connection opened with it takes over;
/// dropped unused, the pool goes with it.
pub struct Driver {
    drv: *const ffi::apr_dbd_driver_t,
    pool: *mut ffi::apr_pool_t,
    name: String,
}

impl Driver {
    /// The pool, now the connection's: the Driver no longer destroys it.
    fn into_pool(mut self) -> *mut ffi::apr_pool_t {
        std::mem::replace(&mut self.pool, std::ptr::null_mut())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.pool.is_null() {
            // SAFETY: our subpool, not handed to any connection (into_pool takes it).
            unsafe { ffi::apr_pool_destroy(self.pool) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_format_arguments() {
        assert_eq!(
            super::count_args(b"SELECT * FROM t WHERE a = %s AND b = %d"),
            2
        );
        assert_eq!(super::count_args(b"SELECT '100%%' FROM t"), 0);
        assert_eq!(super::count_args(b"no args"), 0);
    }
}
