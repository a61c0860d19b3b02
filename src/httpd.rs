//! Safe handles over httpd's request, connection, server and directive structures, and logging.
//! Each handle is created from a raw pointer in exactly one place (an `unsafe fn from_raw`), and
//! everything above this module works with these handles only.

use crate::apr::{opt_cstr, Pool, Table};
use crate::ffi;
use std::borrow::Cow;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

/// httpd status codes the module returns from hooks.
pub const OK: c_int = ffi::OK;
pub const DECLINED: c_int = ffi::DECLINED;
pub const DONE: c_int = ffi::DONE;
pub const HTTP_INTERNAL_SERVER_ERROR: c_int = ffi::HTTP_INTERNAL_SERVER_ERROR;
pub const HTTP_BAD_REQUEST: c_int = ffi::HTTP_BAD_REQUEST;
pub const HTTP_SERVICE_UNAVAILABLE: c_int = ffi::HTTP_SERVICE_UNAVAILABLE;

/// Log levels, as httpd numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warn = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
    Trace1 = 8,
    Trace2 = 9,
    Trace3 = 10,
    Trace4 = 11,
    Trace5 = 12,
    Trace6 = 13,
    Trace7 = 14,
    Trace8 = 15,
}

/// The index httpd gave this module (needed for config vectors and per-module log levels).
pub fn module_index() -> c_int {
    // SAFETY: httpd writes module_index once while loading the module, before any hook runs;
    // afterwards it is only read.
    unsafe { crate::module::lua_module.module_index }
}

/// Hands text to httpd's logger as the arguments of a `"%.*s"` format: the text itself when
/// it holds no NUL (no copy), else a copy with NULs made spaces (kept alive in `held`).
fn log_text<'m>(msg: &'m [u8], held: &'m mut Option<CString>) -> (c_int, *const c_char) {
    let text: &[u8] = if msg.contains(&0) {
        let spaced = msg
            .iter()
            .map(|&b| if b == 0 { b' ' } else { b })
            .collect::<Vec<u8>>();
        held.insert(CString::new(spaced).unwrap_or_default())
            .to_bytes()
    } else {
        msg
    };
    (
        c_int::try_from(text.len()).unwrap_or(c_int::MAX),
        text.as_ptr().cast(),
    )
}

/// Logs through httpd without a request or server (start-up problems, panics).
/// Unit tests run without httpd, so there it writes to stderr instead.
#[cfg(test)]
pub fn log_global(level: Level, msg: &str) {
    eprintln!("[{level:?}] {msg}");
}

/// Logs through httpd without a request or server (start-up problems, panics).
#[cfg(not(test))]
pub fn log_global(level: Level, msg: &str) {
    let mut held = None;
    let (len, text) = log_text(msg.as_bytes(), &mut held);
    // SAFETY: the format is a literal "%.*s" with a length and that many readable bytes; a
    // NULL server makes httpd log to the main error log.
    unsafe {
        ffi::ap_log_error_(
            c"mod_lua_rs".as_ptr(),
            0,
            module_index(),
            level as c_int,
            0,
            std::ptr::null(),
            c"%.*s".as_ptr(),
            len,
            text,
        )
    }
}

/// What kind of file `r->finfo` describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    NoFile,
    Regular,
    Directory,
    Other,
}

/// A file's identity and version as seen by stat: used by the code cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub device: u64,
    pub inode: u64,
    pub size: i64,
    pub mtime_us: i64,
    pub ctime_us: i64,
}

impl FileStamp {
    /// The stamp of the file at `path` (bytes as the file system has them); None when it
    /// cannot be had (no such file, no permission, a NUL in the name).
    ///
    /// A plain stat(2), with the name on the stack for every usual length: this runs on every
    /// call of a hook script under `LuaCodeCache stat` (std's `metadata` took twice the
    /// instructions and a larger frame).
    pub fn of_path(path: &[u8]) -> Option<FileStamp> {
        const ON_STACK: usize = 128;
        if path.contains(&0) {
            return None;
        }
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        let rc = if path.len() < ON_STACK {
            let mut name = [0u8; ON_STACK];
            name[..path.len()].copy_from_slice(path);
            // SAFETY: `name` is NUL-terminated (the rest of the buffer is zeros and `path` has
            // no NUL); `st` is written by stat before it is read.
            unsafe { libc::stat(name.as_ptr().cast(), st.as_mut_ptr()) }
        } else {
            let name = std::ffi::CString::new(path).ok()?;
            // SAFETY: as above, with the name on the heap.
            unsafe { libc::stat(name.as_ptr(), st.as_mut_ptr()) }
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: stat succeeded, so it filled `st`.
        let st = unsafe { st.assume_init() };
        Some(FileStamp {
            device: st.st_dev,
            inode: st.st_ino,
            size: st.st_size,
            mtime_us: st.st_mtime * 1_000_000 + st.st_mtime_nsec / 1000,
            ctime_us: st.st_ctime * 1_000_000 + st.st_ctime_nsec / 1000,
        })
    }
}

/// A request being processed. `Copy` because it is only a handle; httpd owns the struct.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    raw: NonNull<ffi::request_rec>,
    _life: PhantomData<&'a mut ffi::request_rec>,
}

macro_rules! str_field {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        pub fn $name(self) -> Option<&'a CStr> {
            // SAFETY: the field is NULL or a NUL-terminated string in the request's pool.
            unsafe { opt_cstr((*self.raw.as_ptr()).$name) }
        }
    )*};
}

impl<'a> Request<'a> {
    /// # Safety
    /// `raw` must point to a request_rec that stays live for `'a` and is used by the calling
    /// thread only.
    pub unsafe fn from_raw(raw: *mut ffi::request_rec) -> Option<Self> {
        NonNull::new(raw).map(|raw| Request {
            raw,
            _life: PhantomData,
        })
    }

    pub fn as_ptr(self) -> *mut ffi::request_rec {
        self.raw.as_ptr()
    }

    pub(crate) fn rec(self) -> &'a mut ffi::request_rec {
        // SAFETY: see from_raw; httpd gives each request to one thread at a time.
        unsafe { &mut *self.raw.as_ptr() }
    }

    str_field!(
        handler,
        filename,
        method,
        uri,
        args,
        hostname,
        unparsed_uri,
        the_request,
        protocol,
        content_type,
        content_encoding,
        path_info,
        user,
        ap_auth_type,
        canonical_filename,
        range,
        log_id,
        useragent_ip,
    );

    pub fn pool(self) -> Pool<'a> {
        // SAFETY: every request has a live pool.
        unsafe { Pool::from_raw(self.rec().pool) }.expect("request without a pool")
    }

    pub fn connection(self) -> Conn<'a> {
        // SAFETY: every request has a live connection.
        unsafe { Conn::from_raw(self.rec().connection) }.expect("request without a connection")
    }

    pub fn header_only(self) -> bool {
        self.rec().header_only != 0
    }

    pub fn status(self) -> c_int {
        self.rec().status
    }

    pub fn set_status(self, status: c_int) {
        self.rec().status = status;
    }

    pub fn assbackwards(self) -> bool {
        self.rec().assbackwards != 0
    }

    pub fn proxyreq(self) -> c_int {
        self.rec().proxyreq
    }

    pub fn remaining(self) -> i64 {
        self.rec().remaining
    }

    /// True once the response headers have gone to the client.
    pub fn response_started(self) -> bool {
        self.rec().sent_bodyct != 0 || self.rec().bytes_sent > 0
    }

    pub fn is_initial_req(self) -> bool {
        // SAFETY: live request.
        unsafe { ffi::ap_is_initial_req(self.as_ptr()) != 0 }
    }

    pub fn file_type(self) -> FileType {
        match self.rec().finfo.filetype {
            ffi::apr_filetype_e_APR_NOFILE => FileType::NoFile,
            ffi::apr_filetype_e_APR_REG => FileType::Regular,
            ffi::apr_filetype_e_APR_DIR => FileType::Directory,
            _ => FileType::Other,
        }
    }

    /// The stat httpd already made of `r->filename`, when it made one.
    pub fn finfo_stamp(self) -> Option<FileStamp> {
        let f = &self.rec().finfo;
        let need = ffi::APR_FINFO_MTIME | ffi::APR_FINFO_SIZE | ffi::APR_FINFO_INODE;
        if f.filetype == ffi::apr_filetype_e_APR_NOFILE || f.valid & need != need {
            return None;
        }
        let ctime = if f.valid & ffi::APR_FINFO_CTIME != 0 {
            f.ctime
        } else {
            0
        };
        Some(FileStamp {
            device: f.device,
            inode: f.inode,
            size: f.size,
            mtime_us: f.mtime,
            ctime_us: ctime,
        })
    }

    /// Copies `value` into the request pool and stores it in a string field of request_rec.
    fn set_str(self, value: Option<&[u8]>) -> *mut c_char {
        match value {
            Some(v) => self.pool().strdup(v),
            None => std::ptr::null_mut(),
        }
    }

    pub fn set_uri(self, v: &[u8]) {
        self.rec().uri = self.set_str(Some(v));
    }
    pub fn set_args(self, v: Option<&[u8]>) {
        self.rec().args = self.set_str(v);
    }
    pub fn set_filename(self, v: &[u8]) {
        self.rec().filename = self.set_str(Some(v));
    }
    pub fn set_handler(self, v: Option<&[u8]>) {
        self.rec().handler = self.set_str(v);
    }
    pub fn set_user(self, v: Option<&[u8]>) {
        self.rec().user = self.set_str(v);
    }
    pub fn set_ap_auth_type(self, v: Option<&[u8]>) {
        self.rec().ap_auth_type = self.set_str(v);
    }
    pub fn set_proxyreq(self, v: c_int) {
        self.rec().proxyreq = v;
    }

    pub fn set_content_type(self, v: &[u8]) {
        let ct = self.pool().strdup(v);
        // SAFETY: `ct` lives in the request pool, as ap_set_content_type requires.
        unsafe { ffi::ap_set_content_type(self.as_ptr(), ct) }
    }

    pub fn headers_in(self) -> Table<'a> {
        // SAFETY: httpd allocates these tables with every request.
        unsafe { Table::from_raw(self.rec().headers_in) }.expect("headers_in")
    }
    pub fn headers_out(self) -> Table<'a> {
        unsafe { Table::from_raw(self.rec().headers_out) }.expect("headers_out")
    }
    pub fn err_headers_out(self) -> Table<'a> {
        unsafe { Table::from_raw(self.rec().err_headers_out) }.expect("err_headers_out")
    }
    pub fn notes(self) -> Table<'a> {
        unsafe { Table::from_raw(self.rec().notes) }.expect("notes")
    }
    pub fn subprocess_env(self) -> Table<'a> {
        unsafe { Table::from_raw(self.rec().subprocess_env) }.expect("subprocess_env")
    }

    /// Writes body bytes (buffered by httpd). Returns the count written or -1.
    pub fn write(self, data: &[u8]) -> i64 {
        let mut written: i64 = 0;
        // ap_rwrite takes an int length: write in slices so huge strings stay correct.
        for chunk in data.chunks(1 << 30) {
            // SAFETY: `chunk` is valid for its length during the call.
            let n = unsafe {
                ffi::ap_rwrite(chunk.as_ptr().cast(), chunk.len() as c_int, self.as_ptr())
            };
            if n < 0 {
                return -1;
            }
            written += n as i64;
        }
        written
    }

    pub fn flush(self) -> bool {
        // SAFETY: live request.
        unsafe { ffi::ap_rflush(self.as_ptr()) == 0 }
    }

    /// Ends a complete response from its handler, as httpd's own file handler does: the
    /// request body is discarded, EOS goes down the request's filters (httpd then sends none
    /// of its own) and a FLUSH down the connection's, so the response is written before httpd
    /// looks for the client's next request. Without it a small response waits in the core
    /// output filter until after that look, finds nothing yet, and the keep-alive connection
    /// makes a trip through the event MPM's poller to another worker on every request.
    /// Does nothing for subrequests, after EOS, on aborted connections, or when discarding
    /// the body fails (httpd's own ending reports that).
    pub fn end_response(self) {
        let r = self.rec();
        if !r.main.is_null() || r.eos_sent != 0 || r.output_filters.is_null() {
            return;
        }
        let c = self.connection();
        // SAFETY: live request and connection; the brigade lives in the request pool and is
        // emptied before return.
        unsafe {
            if c.rec().aborted != 0 || ffi::ap_discard_request_body(self.as_ptr()) != OK {
                return;
            }
            let bb = c.brigade(self.pool());
            bb.append_eos();
            let rv = ffi::ap_pass_brigade(r.output_filters, bb.as_ptr());
            bb.clear();
            if rv != 0 || c.rec().aborted != 0 {
                return;
            }
            bb.append_flush();
            ffi::ap_pass_brigade(c.rec().output_filters, bb.as_ptr());
            bb.clear();
        }
    }

    /// Sends a whole file as body. `None` when it is missing, not a regular file or unreadable.
    pub fn sendfile(self, path: &CStr) -> Option<i64> {
        let pool = self.pool().as_ptr();
        // SAFETY: stat/open/send with pool-allocated objects on a live request; the file is
        // closed by the request pool's cleanup.
        unsafe {
            let mut finfo: ffi::apr_finfo_t = std::mem::zeroed();
            if ffi::apr_stat(
                &mut finfo,
                path.as_ptr(),
                ffi::APR_FINFO_TYPE | ffi::APR_FINFO_SIZE,
                pool,
            ) != 0
                || finfo.filetype != ffi::apr_filetype_e_APR_REG
            {
                return None;
            }
            let mut file: *mut ffi::apr_file_t = std::ptr::null_mut();
            if ffi::apr_file_open(
                &mut file,
                path.as_ptr(),
                ffi::APR_FOPEN_READ,
                ffi::APR_OS_DEFAULT,
                pool,
            ) != 0
            {
                return None;
            }
            let mut sent: ffi::apr_size_t = 0;
            if ffi::ap_send_fd(
                file,
                self.as_ptr(),
                0,
                finfo.size as ffi::apr_size_t,
                &mut sent,
            ) != 0
            {
                return None;
            }
            Some(sent as i64)
        }
    }

    /// Reads the request body (Content-Length or chunked) up to `max` bytes; `Ok(None)` when
    /// the request has none.
    pub fn read_body(self, max: u64) -> Result<Option<Vec<u8>>, BodyError> {
        let mut out = Vec::new();
        let n = self.read_body_with(max, |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(n.map(|_| out))
    }

    /// Streams the request body (Content-Length or chunked) to `sink`, at most `max` bytes.
    /// Returns the byte count; `Ok(None)` when the request has no body.
    pub fn read_body_with(
        self,
        max: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), BodyError>,
    ) -> Result<Option<u64>, BodyError> {
        // SAFETY: the client-block API on a live request; `buf` is valid for its length.
        unsafe {
            let rc =
                ffi::ap_setup_client_block(self.as_ptr(), ffi::REQUEST_CHUNKED_DECHUNK as c_int);
            if rc != OK {
                return Err(BodyError::Status(rc));
            }
            if ffi::ap_should_client_block(self.as_ptr()) == 0 {
                return Ok(None);
            }
            let mut total: u64 = 0;
            // Not sized by Content-Length: an input filter may return more than was announced,
            // and ap_get_client_block drops what does not fit. Never zeroed: only the bytes
            // httpd wrote are read.
            let size = 64 * 1024;
            let mut buf: Vec<u8> = Vec::with_capacity(size);
            loop {
                let n = ffi::ap_get_client_block(
                    self.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    size as ffi::apr_size_t,
                );
                if n < 0 {
                    return Err(BodyError::Read);
                }
                if n == 0 {
                    return Ok(Some(total));
                }
                total += n as u64;
                if total > max {
                    return Err(BodyError::TooLarge);
                }
                sink(std::slice::from_raw_parts(buf.as_ptr(), n as usize))?;
            }
        }
    }

    /// `AllowOverride` bits in effect (OR_* flags).
    pub fn allow_overrides(self) -> c_int {
        // SAFETY: live request.
        unsafe { ffi::ap_allow_overrides(self.as_ptr()) }
    }

    /// `Options` bits in effect (OPT_* flags).
    pub fn allow_options(self) -> c_int {
        // SAFETY: live request.
        unsafe { ffi::ap_allow_options(self.as_ptr()) }
    }

    pub fn auth_name(self) -> Option<&'a CStr> {
        // SAFETY: live request; the name lives in the config.
        unsafe { opt_cstr(ffi::ap_auth_name(self.as_ptr())) }
    }

    /// httpd's `ap_get_basic_auth_pw`, with its side effects (sets `r->user` and
    /// `r->ap_auth_type`, or notes an auth failure).
    pub fn basic_auth_pw(self) -> Option<&'a CStr> {
        let mut pw: *const c_char = std::ptr::null();
        // SAFETY: live request; the password is allocated in the request pool.
        unsafe {
            if ffi::ap_get_basic_auth_pw(self.as_ptr(), &mut pw) != OK {
                return None;
            }
            opt_cstr(pw)
        }
    }

    pub fn context_document_root(self) -> Option<&'a CStr> {
        // SAFETY: live request.
        unsafe { opt_cstr(ffi::ap_context_document_root(self.as_ptr())) }
    }

    pub fn context_prefix(self) -> Option<&'a CStr> {
        // SAFETY: live request.
        unsafe { opt_cstr(ffi::ap_context_prefix(self.as_ptr())) }
    }

    pub fn is_https(self) -> bool {
        // SAFETY: live connection.
        unsafe { ffi::ap_ssl_conn_is_ssl(self.rec().connection) != 0 }
    }

    pub fn some_auth_required(self) -> bool {
        // SAFETY: live request.
        unsafe { ffi::ap_some_auth_required(self.as_ptr()) != 0 }
    }

    /// `scheme://host[:port]` + `uri` for this request.
    pub fn construct_url(self, uri: &CStr) -> Option<&'a CStr> {
        // SAFETY: the result is allocated in the request pool.
        unsafe {
            opt_cstr(ffi::ap_construct_url(
                self.pool().as_ptr(),
                uri.as_ptr(),
                self.as_ptr(),
            ))
        }
    }

    pub fn make_etag(self, force_weak: bool) -> Option<&'a CStr> {
        // SAFETY: live request; uses r->finfo and r->mtime.
        unsafe { opt_cstr(ffi::ap_make_etag(self.as_ptr(), force_weak as c_int)) }
    }

    pub fn server_name_for_url(self) -> Option<&'a CStr> {
        // SAFETY: live request.
        unsafe { opt_cstr(ffi::ap_get_server_name_for_url(self.as_ptr())) }
    }

    pub fn set_document_root(self, path: &[u8]) {
        let p = self.pool().strdup(path);
        // SAFETY: `p` lives in the request pool.
        unsafe { ffi::ap_set_document_root(self.as_ptr(), p) }
    }

    pub fn set_context_info(self, prefix: &[u8], docroot: &[u8]) {
        let (p, d) = (self.pool().strdup(prefix), self.pool().strdup(docroot));
        // SAFETY: both strings live in the request pool.
        unsafe { ffi::ap_set_context_info(self.as_ptr(), p, d) }
    }

    /// Evaluates an ap_expr boolean expression: `Ok(bool)`, or the parse/run error.
    pub fn expr(self, expr: &CStr) -> Result<bool, (bool, String)> {
        let pool = self.pool().as_ptr();
        // SAFETY: parse and run in the request pool; strings returned live in it.
        unsafe {
            let mut info: ffi::ap_expr_info_t = std::mem::zeroed();
            info.module_index = module_index();
            let err = ffi::ap_expr_parse(pool, pool, &mut info, expr.as_ptr(), None);
            if let Some(e) = opt_cstr(err) {
                return Err((false, e.to_string_lossy().into_owned()));
            }
            let mut err: *const c_char = std::ptr::null();
            let rc = ffi::ap_expr_exec(self.as_ptr(), &info, &mut err);
            if rc < 0 {
                let e = opt_cstr(err)
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Err((true, e));
            }
            Ok(rc != 0)
        }
    }

    /// httpd's `ap_escape_logitem`.
    pub fn escape_logitem(self, s: &CStr) -> Option<&'a CStr> {
        // SAFETY: result allocated in the request pool.
        unsafe { opt_cstr(ffi::ap_escape_logitem(self.pool().as_ptr(), s.as_ptr())) }
    }

    /// httpd's `ap_os_escape_path`.
    pub fn os_escape_path(self, path: &CStr, partial: bool) -> Option<&'a CStr> {
        // SAFETY: result allocated in the request pool.
        unsafe {
            opt_cstr(ffi::ap_os_escape_path(
                self.pool().as_ptr(),
                path.as_ptr(),
                partial as c_int,
            ))
        }
    }

    /// `LimitRequestBody` in effect (0 = unlimited).
    pub fn limit_req_body(self) -> i64 {
        // SAFETY: live request.
        unsafe { ffi::ap_get_limit_req_body(self.as_ptr()) }
    }

    /// The merged per-directory config of this module for the request.
    pub fn dir_config<T>(self) -> Option<&'a T> {
        // SAFETY: per_dir_config is the module config vector; our slot holds a `T` created by
        // create/merge_dir_config (or NULL).
        unsafe { config_slot::<T>(self.rec().per_dir_config) }
    }

    pub fn server(self) -> Server<'a> {
        // SAFETY: every request has a server.
        unsafe { Server::from_raw(self.rec().server) }.expect("request without server")
    }

    /// The request that owns this one's pool: walks up subrequests and internal redirects.
    pub fn root(self) -> Request<'a> {
        let mut r = self.rec() as *mut ffi::request_rec;
        // SAFETY: main/prev links point at live ancestor requests.
        unsafe {
            loop {
                if !(*r).main.is_null() {
                    r = (*r).main;
                } else if !(*r).prev.is_null() {
                    r = (*r).prev;
                } else {
                    break;
                }
            }
        }
        Request {
            raw: NonNull::new(r).unwrap(),
            _life: PhantomData,
        }
    }

    /// This module's per-request state (kept in `r->request_config`), created on first use
    /// and dropped when the request's pool is freed. The module stores exactly one type there:
    /// [`crate::dispatch::RequestState`].
    pub fn state(self) -> &'a crate::dispatch::RequestState {
        if let Some(state) = self.state_if_any() {
            return state;
        }
        let p = self.pool().attach(crate::dispatch::RequestState::default());
        // SAFETY: request_config is allocated by httpd for every request; our slot is free
        // (checked above) and `p` lives as long as the request's pool.
        unsafe { *config_vec(self.rec().request_config) = p.cast() };
        // SAFETY: just attached.
        unsafe { &*p }
    }

    /// This module's per-request state if something created it (without creating it).
    pub fn state_if_any(self) -> Option<&'a crate::dispatch::RequestState> {
        // SAFETY: request_config is allocated by httpd for every request; our slot is NULL or
        // a RequestState attached to this request's pool (so it lives as long as the request).
        unsafe {
            let slot = config_vec(self.rec().request_config);
            (*slot as *const crate::dispatch::RequestState).as_ref()
        }
    }

    pub fn is_level(self, level: Level) -> bool {
        // SAFETY: live request; pure query.
        unsafe { ffi::lua_shim_r_is_level(self.as_ptr(), module_index(), level as c_int) != 0 }
    }

    /// Logs for this request, attributing the line to `file:line` (a script position or a
    /// source location).
    pub fn log_at(self, level: Level, file: &CStr, line: c_int, msg: &[u8]) {
        self.log_for(module_index(), level, file, line, msg)
    }

    /// Logs a line httpd's core logs when mod_lua calls into it (`ap_cookie_read`'s AH00011):
    /// tagged `core`, and subject to core's log level, as under mod_lua.
    pub fn log_as_core(self, level: Level, msg: &str) {
        static CORE: std::sync::OnceLock<c_int> = std::sync::OnceLock::new();
        let core = *CORE.get_or_init(|| {
            // SAFETY: ap_find_linked_module returns NULL or a module that lives as long as
            // the process.
            unsafe {
                let m = ffi::ap_find_linked_module(c"core.c".as_ptr());
                if m.is_null() {
                    module_index()
                } else {
                    (*m).module_index
                }
            }
        });
        self.log_for(core, level, c"util_cookie.c", 0, msg.as_bytes())
    }

    fn log_for(self, index: c_int, level: Level, file: &CStr, line: c_int, msg: &[u8]) {
        // SAFETY: live request; pure query.
        if unsafe { ffi::lua_shim_r_is_level(self.as_ptr(), index, level as c_int) } == 0 {
            return;
        }
        let mut held = None;
        let (len, text) = log_text(msg, &mut held);
        // SAFETY: literal "%.*s" format with a length and that many readable bytes.
        unsafe {
            ffi::ap_log_rerror_(
                file.as_ptr(),
                line,
                index,
                level as c_int,
                0,
                self.as_ptr(),
                c"%.*s".as_ptr(),
                len,
                text,
            )
        }
    }

    pub fn log(self, level: Level, msg: &str) {
        self.log_at(level, c"mod_lua.c", 0, msg.as_bytes())
    }

    pub fn document_root(self) -> Option<&'a CStr> {
        // SAFETY: live request; returns a string from server config.
        unsafe { opt_cstr(ffi::ap_document_root(self.as_ptr())) }
    }

    pub fn server_port(self) -> u32 {
        // SAFETY: live request.
        unsafe { ffi::ap_get_server_port(self.as_ptr()) as u32 }
    }

    pub fn server_name(self) -> Option<&'a CStr> {
        // SAFETY: live request.
        unsafe { opt_cstr(ffi::ap_get_server_name(self.as_ptr())) }
    }
}

/// # Safety
/// `v` must be a live module config vector.
unsafe fn config_vec(v: *mut ffi::ap_conf_vector_t) -> *mut *mut c_void {
    unsafe { (v as *mut *mut c_void).add(module_index() as usize) }
}

/// # Safety
/// `v` must be a live module config vector whose slot for this module holds a `T` or NULL.
unsafe fn config_slot<'a, T>(v: *mut ffi::ap_conf_vector_t) -> Option<&'a T> {
    if v.is_null() {
        return None;
    }
    unsafe { (*config_vec(v) as *const T).as_ref() }
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// httpd refused to set up reading (e.g. 413, 400 for a bad chunk header).
    Status(c_int),
    /// Reading failed part-way (client gone, LimitRequestBody exceeded, malformed chunking).
    Read,
    /// The body is larger than the caller's limit.
    TooLarge,
}

/// A client connection.
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    raw: NonNull<ffi::conn_rec>,
    _life: PhantomData<&'a mut ffi::conn_rec>,
}

impl<'a> Conn<'a> {
    /// # Safety
    /// `raw` must be a live connection for `'a`, used by the calling thread only.
    pub unsafe fn from_raw(raw: *mut ffi::conn_rec) -> Option<Self> {
        NonNull::new(raw).map(|raw| Conn {
            raw,
            _life: PhantomData,
        })
    }

    fn rec(self) -> &'a mut ffi::conn_rec {
        // SAFETY: see from_raw.
        unsafe { &mut *self.raw.as_ptr() }
    }

    pub fn pool(self) -> Pool<'a> {
        // SAFETY: every connection has a pool.
        unsafe { Pool::from_raw(self.rec().pool) }.expect("connection without pool")
    }

    /// This module's per-connection state (kept in `c->conn_config`), created on first use
    /// and dropped with the connection's pool. Only [`crate::dispatch::ConnState`] lives there.
    pub fn state(self) -> &'a crate::dispatch::ConnState {
        // SAFETY: conn_config is allocated for every connection; our slot is NULL or a
        // ConnState attached to this connection's pool.
        unsafe {
            let slot = config_vec(self.rec().conn_config);
            if (*slot).is_null() {
                let p = self.pool().attach(crate::dispatch::ConnState::default());
                *slot = p.cast();
            }
            &*(*slot as *const crate::dispatch::ConnState)
        }
    }

    /// Stops all further output and closes the connection after this request (used when a
    /// script fails after part of the response went out: the client must see a broken
    /// response, not a complete-looking one).
    pub fn abort(self) {
        self.close_after();
        self.rec().aborted = 1;
    }

    /// Closes the connection once this request's response (if any) is done.
    pub fn close_after(self) {
        self.rec().keepalive = ffi::ap_conn_keepalive_e_AP_CONN_CLOSE;
    }
}

/// A (virtual) server.
#[derive(Clone, Copy)]
pub struct Server<'a> {
    raw: NonNull<ffi::server_rec>,
    _life: PhantomData<&'a ffi::server_rec>,
}

impl<'a> Server<'a> {
    /// # Safety
    /// `raw` must be a live server_rec for `'a`.
    pub unsafe fn from_raw(raw: *mut ffi::server_rec) -> Option<Self> {
        NonNull::new(raw).map(|raw| Server {
            raw,
            _life: PhantomData,
        })
    }

    pub fn config<T>(self) -> Option<&'a T> {
        // SAFETY: module_config slot holds the `T` made by create_server_config.
        unsafe { config_slot::<T>((*self.raw.as_ptr()).module_config) }
    }
}

/// Server version banner (what `apache2.version` reports).
pub fn server_banner() -> String {
    // SAFETY: returns a static string owned by httpd.
    unsafe { opt_cstr(ffi::ap_get_server_banner()) }
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The server's build date string.
pub fn server_built() -> String {
    // SAFETY: returns a static string.
    unsafe { opt_cstr(ffi::ap_get_server_built()) }
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// When the server (re)started, in seconds since the epoch (from the scoreboard).
pub fn server_started() -> i64 {
    // SAFETY: the scoreboard image and its global part are set up before any child serves;
    // NULL checks cover processes without one.
    unsafe {
        let sb = ffi::ap_scoreboard_image;
        if sb.is_null() || (*sb).global.is_null() {
            return 0;
        }
        (*(*sb).global).restart_time / 1_000_000
    }
}

/// The 16-byte MD5 digest of `data` (what `ap_md5_binary` hex-encodes for mod_lua).
pub fn md5_raw(data: &[u8]) -> [u8; 16] {
    let mut digest = [0u8; 16];
    // SAFETY: `digest` has the 16 bytes apr_md5 writes; `data` is valid for its length.
    unsafe { ffi::apr_md5(digest.as_mut_ptr(), data.as_ptr().cast(), data.len()) };
    digest
}

/// The 20-byte SHA-1 digest of `data`.
pub fn sha1_raw(data: &[u8]) -> [u8; 20] {
    // SAFETY: the context and digest are local; `data` is fed in slices that fit `c_uint`.
    unsafe {
        let mut ctx: ffi::apr_sha1_ctx_t = std::mem::zeroed();
        ffi::apr_sha1_init(&mut ctx);
        for chunk in data.chunks(1 << 30) {
            ffi::apr_sha1_update_binary(&mut ctx, chunk.as_ptr(), chunk.len() as std::ffi::c_uint);
        }
        let mut digest = [0u8; 20];
        ffi::apr_sha1_final(digest.as_mut_ptr(), &mut ctx);
        digest
    }
}

/// Password hashes as `htpasswd` makes them (mod_lua's `mk_password_hash`): algorithm 0 APR-MD5
/// (`$apr1$`), 1 SHA (`{SHA}`), 2 bcrypt (`cost` 4–31, 0 = 5), 3 crypt(3).
pub fn htpassword(pw: &CStr, alg: i64, cost: i64) -> Result<String, String> {
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let random = |n: usize| -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; n];
        // SAFETY: `b` has room for `n` bytes.
        let rv = unsafe { ffi::apr_generate_random_bytes(b.as_mut_ptr(), n as ffi::apr_size_t) };
        if rv != 0 {
            return Err("Unable to generate random bytes".into());
        }
        Ok(b)
    };
    let salt8 = || -> Result<CString, String> {
        let s: Vec<u8> = random(8)?
            .iter()
            .map(|b| ITOA64[(*b & 63) as usize])
            .collect();
        Ok(CString::new(s).expect("salt alphabet has no NUL"))
    };
    let mut out = vec![0 as c_char; 256];
    let finish = |out: &[c_char]| -> String {
        // SAFETY: the encoders NUL-terminate within `out`.
        unsafe { CStr::from_ptr(out.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    match alg {
        0 => {
            let salt = salt8()?;
            // SAFETY: NUL-terminated inputs; `out` has room for the result.
            let rv = unsafe {
                ffi::apr_md5_encode(
                    pw.as_ptr(),
                    salt.as_ptr(),
                    out.as_mut_ptr(),
                    out.len() as ffi::apr_size_t,
                )
            };
            if rv != 0 {
                return Err("could not encode password".into());
            }
            Ok(finish(&out))
        }
        1 => {
            let digest = sha1_raw(pw.to_bytes());
            Ok(format!(
                "{{SHA}}{}",
                String::from_utf8_lossy(&crate::lua_api::encode::base64_encode(&digest))
            ))
        }
        2 => {
            let cost = if cost == 0 { 5 } else { cost };
            if !(4..=31).contains(&cost) {
                return Err(format!(
                    "Unable to encode with bcrypt: cost {cost} out of range (4-31)"
                ));
            }
            let salt = random(16)?;
            // SAFETY: NUL-terminated password, 16 salt bytes, `out` sized as given.
            let rv = unsafe {
                ffi::apr_bcrypt_encode(
                    pw.as_ptr(),
                    cost as std::ffi::c_uint,
                    salt.as_ptr(),
                    16,
                    out.as_mut_ptr(),
                    out.len() as ffi::apr_size_t,
                )
            };
            if rv != 0 {
                return Err("Unable to encode with bcrypt".into());
            }
            Ok(finish(&out))
        }
        3 => {
            let salt = salt8()?;
            // SAFETY: NUL-terminated inputs; the shim writes at most `out.len()` bytes.
            let rv = unsafe {
                ffi::lua_shim_crypt(
                    pw.as_ptr(),
                    salt.as_ptr(),
                    out.as_mut_ptr(),
                    out.len() as std::ffi::c_ulong,
                )
            };
            if rv != 0 {
                return Err("crypt() failed".into());
            }
            Ok(finish(&out))
        }
        other => Err(format!("mk_password_hash(): unsupported algorithm {other}")),
    }
}

/// RFC 822 date for `secs` since the epoch (as cookies' `Expires=` want it).
pub fn rfc822_date(secs: i64) -> Option<String> {
    let mut buf = [0 as c_char; ffi::APR_RFC822_DATE_LEN as usize + 1];
    // SAFETY: `buf` has APR_RFC822_DATE_LEN + 1 bytes as apr_rfc822_date requires.
    let rv = unsafe { ffi::apr_rfc822_date(buf.as_mut_ptr(), secs.saturating_mul(1_000_000)) };
    if rv != 0 {
        return None;
    }
    // SAFETY: apr_rfc822_date NUL-terminates on success.
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// `-D NAME` / `Define NAME` present?
pub fn config_defined(name: &CStr) -> bool {
    // SAFETY: pure query of the define list.
    unsafe { ffi::ap_exists_config_define(name.as_ptr()) != 0 }
}

/// A regular expression compiled by httpd (PCRE, with httpd's default flags), as mod_lua's
/// LuaMapHandler uses. Lives in a configuration pool.
#[derive(Clone, Copy)]
pub struct Regex {
    raw: NonNull<ffi::ap_regex_t>,
}

// SAFETY: a compiled ap_regex_t is immutable after ap_pregcomp; ap_regexec only reads it
// (match data is per call), so sharing it between threads is sound.
unsafe impl Send for Regex {}
unsafe impl Sync for Regex {}

impl Regex {
    /// Compiles `pattern` in `pool` (freed with it).
    pub fn compile(pool: Pool<'_>, pattern: &CStr) -> Option<Regex> {
        // SAFETY: ap_pregcomp registers the regex's cleanup on `pool`.
        NonNull::new(unsafe { ffi::ap_pregcomp(pool.as_ptr(), pattern.as_ptr(), 0) })
            .map(|raw| Regex { raw })
    }

    /// Matches `subject`: where `$0`..`$9` are in it, or None.
    pub fn find(&self, subject: &CStr) -> Option<Match> {
        let mut m = [ffi::ap_regmatch_t::default(); CAPTURES];
        // SAFETY: the regex is live for the config's lifetime; `m` has room for CAPTURES
        // matches.
        let rc = unsafe {
            ffi::ap_regexec(
                self.raw.as_ptr(),
                subject.as_ptr(),
                CAPTURES,
                m.as_mut_ptr(),
                0,
            )
        };
        (rc == 0).then_some(Match(m))
    }
}

/// Where a [`Regex`] matched: the byte ranges of `$0`..`$9` in the subject, kept without
/// borrowing it.
#[derive(Clone, Copy)]
pub struct Match([ffi::ap_regmatch_t; CAPTURES]);

impl Match {
    /// The groups' text in `subject`, the string that was matched.
    pub fn groups<'s>(&self, subject: &'s [u8]) -> Captures<'s> {
        std::array::from_fn(|i| match_group(&self.0[i], subject))
    }
}

/// How many groups a [`Regex`] match reports (`$0`..`$9`, as mod_lua).
const CAPTURES: usize = 10;

/// The groups of a [`Regex`] match: `$0`..`$9`, None for a group that did not take part.
pub type Captures<'s> = [Option<&'s [u8]>; CAPTURES];

/// The text of one group of a match (None for a group that did not take part).
fn match_group<'s>(g: &ffi::ap_regmatch_t, bytes: &'s [u8]) -> Option<&'s [u8]> {
    if g.rm_so < 0 || g.rm_eo < g.rm_so || g.rm_eo as usize > bytes.len() {
        None
    } else {
        Some(&bytes[g.rm_so as usize..g.rm_eo as usize])
    }
}

/// The text of each group of a match.
fn match_groups<'s>(m: &[ffi::ap_regmatch_t], bytes: &'s [u8]) -> Vec<Option<&'s [u8]>> {
    m.iter().map(|g| match_group(g, bytes)).collect()
}

/// The arguments httpd hands a directive handler.
#[derive(Clone, Copy)]
pub struct CmdParms<'a> {
    raw: NonNull<ffi::cmd_parms>,
    _life: PhantomData<&'a ffi::cmd_parms>,
}

/// Where a directive may not appear (mod_lua's `ap_check_cmd_context` masks).
pub const NOT_IN_DIR_FILES_HTACCESS: u32 =
    (ffi::NOT_IN_DIRECTORY | ffi::NOT_IN_FILES | ffi::NOT_IN_HTACCESS) as u32;

impl<'a> CmdParms<'a> {
    /// # Safety
    /// `raw` must be the cmd_parms httpd passed to the running directive handler.
    pub unsafe fn from_raw(raw: *mut ffi::cmd_parms) -> Option<Self> {
        NonNull::new(raw).map(|raw| CmdParms {
            raw,
            _life: PhantomData,
        })
    }

    fn rec(self) -> &'a ffi::cmd_parms {
        // SAFETY: see from_raw.
        unsafe { &*self.raw.as_ptr() }
    }

    pub fn pool(self) -> Pool<'a> {
        // SAFETY: the config pool is live while directives are read.
        unsafe { Pool::from_raw(self.rec().pool) }.expect("cmd without pool")
    }

    pub fn server(self) -> Server<'a> {
        // SAFETY: the server being configured.
        unsafe { Server::from_raw(self.rec().server) }.expect("cmd without server")
    }

    /// True when the directive is inside a section (`<Directory>`, `<Location>`, …) or .htaccess.
    pub fn in_section(self) -> bool {
        !self.rec().path.is_null()
    }

    /// The server config of the server being configured (mutable: directives run
    /// single-threaded while the configuration is read).
    pub fn server_config_mut<T>(self) -> Option<&'a mut T> {
        // SAFETY: module_config holds the `T` made by create_server_config; config reading is
        // single-threaded.
        unsafe {
            let v = (*self.rec().server).module_config;
            if v.is_null() {
                return None;
            }
            (*config_vec(v) as *mut T).as_mut()
        }
    }

    /// The `cmd_data` of the directive's table entry (the module stores a small tag there).
    pub fn cmd_data(self) -> usize {
        // SAFETY: `cmd` points at our static command table entry.
        unsafe { (*self.rec().cmd).cmd_data as usize }
    }

    /// The directive's name as written in the command table (e.g. `<LuaHookFixups`).
    pub fn cmd_name(self) -> String {
        // SAFETY: the name is a static C string of our command table.
        unsafe { opt_cstr((*self.rec().cmd).name) }
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The configuration file being read and the current line number in it; for a directive
    /// run from the parsed tree (no file being read then), the directive's own position.
    pub fn config_position(self) -> (String, u32) {
        let cf = self.rec().config_file;
        if cf.is_null() {
            let d = self.rec().directive;
            if d.is_null() {
                return (String::new(), 0);
            }
            // SAFETY: the directive being run is live in the config tree while it runs.
            return unsafe {
                (
                    opt_cstr((*d).filename)
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    u32::try_from((*d).line_num).unwrap_or(0),
                )
            };
        }
        // SAFETY: config_file is live while the directive is read.
        unsafe {
            (
                opt_cstr((*cf).name)
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                (*cf).line_number,
            )
        }
    }

    /// Reads the next raw line of the configuration file (with its newline, untrimmed and not
    /// joined with the next, so line numbers stay exact), as mod_lua's block reader does.
    pub fn read_raw_config_line(self) -> Option<Vec<u8>> {
        let cf = self.rec().config_file;
        if cf.is_null() {
            return None;
        }
        const MAX: usize = 8192;
        let mut buf = vec![0u8; MAX];
        // SAFETY: the config file's reader functions are called as httpd's own
        // ap_cfg_getline would call them, with a buffer of `MAX` bytes.
        unsafe {
            let cf = &mut *cf;
            let mut len = 0usize;
            if let Some(getstr) = cf.getstr {
                if getstr(buf.as_mut_ptr().cast(), MAX as ffi::apr_size_t, cf.param) != 0 {
                    return None;
                }
                len = buf.iter().position(|&b| b == 0).unwrap_or(MAX);
            } else if let Some(getch) = cf.getch {
                while len < MAX {
                    let mut ch: c_char = 0;
                    if getch(&mut ch, cf.param) != 0 {
                        break;
                    }
                    buf[len] = ch as u8;
                    len += 1;
                    if ch as u8 == b'\n' {
                        break;
                    }
                }
                if len == 0 {
                    return None;
                }
            }
            buf.truncate(len);
            if buf.last() == Some(&b'\n') {
                cf.line_number += 1;
            }
            Some(buf)
        }
    }

    /// For an EXEC_ON_READ directive (whose `mconfig` is the config tree slot being built):
    /// turns that node into a `directive` node carrying `data`, which httpd then runs as an
    /// ordinary directive in its section (mod_lua's `Lua_____ByteCodeHack`).
    pub fn replace_tree_node<T: 'static>(self, mconfig: *mut c_void, directive: &CStr, data: T) {
        let pool = self.pool();
        let data = pool.attach(data);
        let (file, line) = self.config_position();
        // SAFETY: for EXEC_ON_READ commands httpd passes `ap_directive_t **` as mconfig; the
        // node is allocated in the config pool like httpd's own.
        unsafe {
            let slot = mconfig as *mut *mut ffi::ap_directive_t;
            if (*slot).is_null() {
                *slot = ffi::apr_palloc(pool.as_ptr(), std::mem::size_of::<ffi::ap_directive_t>())
                    .cast();
                std::ptr::write_bytes(*slot, 0, 1);
            }
            let node = &mut **slot;
            node.directive = pool.strdup(directive.to_bytes());
            node.args = std::ptr::null();
            node.data = data.cast();
            node.filename = pool.strdup(file.as_bytes());
            node.line_num = line as c_int;
        }
    }

    /// The `data` a [`CmdParms::replace_tree_node`] node carries, if this directive is one.
    pub fn node_data<T>(self) -> Option<&'a T> {
        let d = self.rec().directive;
        // SAFETY: only nodes made by replace_tree_node with a `T` carry data for our
        // internal directive; anything else has NULL data.
        unsafe { d.as_ref().and_then(|d| (d.data as *const T).as_ref()) }
    }

    /// The value of a pool note (`apr_pool_userdata_get`) on the command's temporary pool.
    pub fn temp_pool_note(self, key: &CStr) -> Option<String> {
        let mut v: *mut c_void = std::ptr::null_mut();
        // SAFETY: reads a pointer stored by mod_authz_core as a C string.
        unsafe {
            ffi::apr_pool_userdata_get(&mut v, key.as_ptr(), self.rec().temp_pool);
            opt_cstr(v as *const c_char).map(|s| s.to_string_lossy().into_owned())
        }
    }

    /// Runs core's context check; `Err` carries core's message.
    pub fn check_context(self, forbidden: u32) -> Result<(), String> {
        // SAFETY: valid cmd_parms; the returned message (if any) is pool-allocated.
        let msg = unsafe { ffi::ap_check_cmd_context(self.raw.as_ptr(), forbidden) };
        match unsafe { opt_cstr(msg) } {
            None => Ok(()),
            Some(m) => Err(m.to_string_lossy().into_owned()),
        }
    }

    /// Resolves `file` against `root` (or the working directory) as mod_lua's
    /// `apr_filepath_merge(..., APR_FILEPATH_NOTRELATIVE)` does.
    pub fn merge_path<'f>(self, root: Option<&str>, file: &'f str) -> Option<Cow<'f, str>> {
        merge_path(self.pool(), root, file)
    }
}

/// Splits a configuration line into words as httpd's `ap_getword_conf` does (quotes group
/// words, backslash escapes inside quotes).
pub fn conf_words(pool: Pool<'_>, line: &str) -> Vec<String> {
    let Ok(c) = CString::new(line) else {
        return Vec::new();
    };
    let copy = pool.strdup(c.as_bytes());
    let mut cursor: *const c_char = copy;
    let mut words = Vec::new();
    // SAFETY: ap_getword_conf walks a NUL-terminated pool string, advancing `cursor` and
    // returning pool-allocated words.
    unsafe {
        while *cursor != 0 {
            let w = ffi::ap_getword_conf(pool.as_ptr(), &mut cursor);
            match opt_cstr(w) {
                Some(w) if !w.to_bytes().is_empty() => words.push(w.to_string_lossy().into_owned()),
                _ => {}
            }
        }
    }
    words
}

/// `apr_filepath_merge(root, file, APR_FILEPATH_NOTRELATIVE)`; NULL root = working directory.
/// An absolute path that merging would leave as it is (the usual case: a script named by its
/// full path in the configuration) is returned without a copy.
pub fn merge_path<'a>(pool: Pool<'_>, root: Option<&str>, file: &'a str) -> Option<Cow<'a, str>> {
    if is_merged_form(file) {
        return Some(Cow::Borrowed(file));
    }
    let root_c = root.and_then(|r| CString::new(r).ok());
    let file_c = CString::new(file).ok()?;
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: inputs are NUL-terminated; the result is allocated in `pool`.
    let rv = unsafe {
        ffi::apr_filepath_merge(
            &mut out,
            root_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            file_c.as_ptr(),
            ffi::APR_FILEPATH_NOTRELATIVE,
            pool.as_ptr(),
        )
    };
    if rv != 0 {
        return None;
    }
    unsafe { opt_cstr(out) }.map(|s| Cow::Owned(s.to_string_lossy().into_owned()))
}

/// Whether apr_filepath_merge returns `file` unchanged whatever the root: an absolute path
/// without empty, `.` or `..` segments, within APR_PATH_MAX. (It drops those segments, folds
/// leading slashes, and copies every other segment as it is.)
pub fn is_merged_form(file: &str) -> bool {
    const APR_PATH_MAX: usize = 4096;
    let b = file.as_bytes();
    if b.first() != Some(&b'/') || b.len() + 4 > APR_PATH_MAX {
        return false;
    }
    // One pass over the bytes (every hook, filter and mapped handler call asks this of its
    // script's path): an empty segment is dropped unless it is the last (a trailing slash is
    // kept), and so are `.` and `..`.
    const NOT_DOTS: u8 = 3;
    let mut after_slash = true;
    let mut dots = 0u8;
    for &c in &b[1..] {
        match c {
            0 => return false,
            b'/' => {
                if after_slash || dots == 1 || dots == 2 {
                    return false;
                }
                after_slash = true;
                dots = 0;
            }
            b'.' => {
                after_slash = false;
                dots = (dots + 1).min(NOT_DOTS);
            }
            _ => {
                after_slash = false;
                dots = NOT_DOTS;
            }
        }
    }
    !(dots == 1 || dots == 2)
}

/// Which request handles of one Lua VM may still be used: the tokens of the calls (and filter
/// coroutines) now running. Owned by the VM's request API (see `luac::RequestFns`), so it
/// lives exactly as long as the Lua state whose `r` values point at it, and it is only touched
/// by the thread that holds the VM.
pub struct Liveness {
    next: std::cell::Cell<u64>,
    live: std::cell::RefCell<Vec<u64>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            next: std::cell::Cell::new(1),
            live: std::cell::RefCell::new(Vec::with_capacity(4)),
        }
    }
}

impl Liveness {
    fn begin(&self) -> u64 {
        let token = self.next.get();
        self.next.set(token + 1);
        self.live.borrow_mut().push(token);
        token
    }

    fn end(&self, token: u64) {
        let mut live = self.live.borrow_mut();
        if let Some(i) = live.iter().rposition(|&t| t == token) {
            live.swap_remove(i);
        }
    }

    fn is_live(&self, token: u64) -> bool {
        self.live.borrow().contains(&token)
    }

    /// A handle for `r`, valid until the returned guard is dropped; the guard cannot outlive
    /// `r`.
    pub fn enter<'r>(self: &std::rc::Rc<Self>, r: Request<'r>) -> (LiveRequest, AliveGuard<'r>) {
        self.handle(r)
    }

    /// A handle for Lua code that outlives one call (a filter's coroutine): valid until the
    /// guard is dropped, which its holder must do before the request ends (filter state lives
    /// in the request pool).
    pub fn enter_for_request(
        self: &std::rc::Rc<Self>,
        r: Request<'_>,
    ) -> (LiveRequest, AliveGuard<'static>) {
        self.handle(r)
    }

    fn handle<'g>(self: &std::rc::Rc<Self>, r: Request<'_>) -> (LiveRequest, AliveGuard<'g>) {
        let token = self.begin();
        (
            LiveRequest {
                raw: r.raw,
                token,
                liveness: NonNull::from(&**self),
            },
            AliveGuard {
                liveness: self.clone(),
                token,
                _req: PhantomData,
            },
        )
    }
}

/// A request handle that Lua values may hold (`r`, its header tables). It only yields the
/// request while the call that created it runs; afterwards every use fails cleanly, so a
/// script that stashes `r` in a global gets an error on a later request, never a dangling
/// pointer. Plain data (no destructor), so the userdata holding it need no finalizer.
#[derive(Clone, Copy)]
pub struct LiveRequest {
    raw: NonNull<ffi::request_rec>,
    token: u64,
    /// The VM's [`Liveness`]: every `LiveRequest` lives in that VM's Lua values or in a Rust
    /// frame of a call on it, and the Liveness lives as long as the VM's Lua state (mlua
    /// drops app data only after `lua_close`, so finalizers that run at close, such as a db
    /// handle's, still find it).
    liveness: NonNull<Liveness>,
}

/// Ends a [`LiveRequest`]'s validity when dropped.
pub struct AliveGuard<'a> {
    liveness: std::rc::Rc<Liveness>,
    token: u64,
    _req: PhantomData<Request<'a>>,
}

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.liveness.end(self.token);
    }
}

impl LiveRequest {
    /// The request, while the call that made this handle is still running.
    pub fn get(&self) -> Option<Request<'_>> {
        // SAFETY: `liveness` outlives every handle that points at it (see the field); the
        // token is live only while its AliveGuard lives, and a guard is bounded by the
        // request it was made for, so the request_rec is live here.
        unsafe {
            self.liveness
                .as_ref()
                .is_live(self.token)
                .then(|| Request::from_raw(self.raw.as_ptr()))
                .flatten()
        }
    }
}

/// What kind of bucket a brigade holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketKind {
    Data,
    Eos,
    Flush,
    Metadata,
}

/// apr's end-of-file status (APR_OS_START_STATUS + 14).
const APR_EOF: ffi::apr_status_t = 70014;

/// A bucket brigade (borrowed; owned by its pool).
#[derive(Clone, Copy)]
pub struct Brigade<'a> {
    raw: NonNull<ffi::apr_bucket_brigade>,
    _life: PhantomData<&'a mut ffi::apr_bucket_brigade>,
}

/// One bucket of a brigade.
#[derive(Clone, Copy)]
pub struct Bucket<'a> {
    raw: NonNull<ffi::apr_bucket>,
    _life: PhantomData<&'a mut ffi::apr_bucket>,
}

impl<'a> Brigade<'a> {
    /// # Safety
    /// `raw` must be a live brigade for `'a`, used by the calling thread only.
    pub unsafe fn from_raw(raw: *mut ffi::apr_bucket_brigade) -> Option<Self> {
        NonNull::new(raw).map(|raw| Brigade {
            raw,
            _life: PhantomData,
        })
    }

    pub fn as_ptr(self) -> *mut ffi::apr_bucket_brigade {
        self.raw.as_ptr()
    }

    pub fn first(self) -> Option<Bucket<'a>> {
        // SAFETY: live brigade.
        NonNull::new(unsafe { ffi::lua_shim_bb_first(self.as_ptr()) }).map(|raw| Bucket {
            raw,
            _life: PhantomData,
        })
    }

    pub fn is_empty(self) -> bool {
        // SAFETY: live brigade.
        unsafe { ffi::lua_shim_bb_empty(self.as_ptr()) != 0 }
    }

    /// Appends a copy of `data` (a heap bucket; nothing for no data).
    pub fn append(self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // SAFETY: the bucket copies `data`.
        unsafe {
            ffi::lua_shim_bb_append_copy(
                self.as_ptr(),
                data.as_ptr().cast(),
                data.len() as ffi::apr_size_t,
            )
        }
    }

    pub fn append_eos(self) {
        // SAFETY: live brigade.
        unsafe { ffi::lua_shim_bb_append_eos(self.as_ptr()) }
    }

    pub fn append_flush(self) {
        // SAFETY: live brigade.
        unsafe { ffi::lua_shim_bb_append_flush(self.as_ptr()) }
    }

    /// Destroys every bucket.
    pub fn clear(self) {
        // SAFETY: live brigade.
        unsafe {
            ffi::apr_brigade_cleanup(self.as_ptr().cast());
        }
    }
}

impl<'a> Bucket<'a> {
    pub fn kind(self) -> BucketKind {
        // SAFETY: live bucket.
        match unsafe { ffi::lua_shim_bucket_kind(self.raw.as_ptr()) } {
            0 => BucketKind::Data,
            1 => BucketKind::Eos,
            2 => BucketKind::Flush,
            _ => BucketKind::Metadata,
        }
    }

    /// The next bucket of `bb` (which holds this one).
    pub fn next(self, bb: Brigade<'a>) -> Option<Bucket<'a>> {
        // SAFETY: both are live and `self` is in `bb`.
        NonNull::new(unsafe { ffi::lua_shim_bucket_next(bb.as_ptr(), self.raw.as_ptr()) }).map(
            |raw| Bucket {
                raw,
                _life: PhantomData,
            },
        )
    }

    /// The bucket's bytes (reading a file or pipe bucket turns it into memory, a piece at a
    /// time: the bucket may split, leaving the rest in a following bucket).
    pub fn read(self) -> Result<&'a [u8], ffi::apr_status_t> {
        let mut p: *const c_char = std::ptr::null();
        let mut len: ffi::apr_size_t = 0;
        // SAFETY: apr_bucket_read on a live bucket; the data stays valid while the bucket does.
        unsafe {
            let rv = ffi::lua_shim_bucket_read(self.raw.as_ptr(), &mut p, &mut len, 1);
            if rv != 0 {
                return Err(rv);
            }
            if p.is_null() || len == 0 {
                return Ok(&[]);
            }
            Ok(std::slice::from_raw_parts(p.cast(), len as usize))
        }
    }

    /// [`Bucket::read`], except that a file bucket apr would map into memory (`EnableMMAP on`)
    /// is read into `buf` instead, in the same pieces: mapping a file for each response costs
    /// page faults and, at unmap, a TLB shootdown across every CPU running the process.
    pub fn read_unmapped<'s>(self, buf: &'s mut Vec<u8>) -> Result<&'s [u8], ffi::apr_status_t>
    where
        'a: 's,
    {
        let (mut fd, mut offset, mut len) = (0, 0, 0);
        // SAFETY: a live bucket; the shim only reads it (and may split it).
        if unsafe {
            ffi::lua_shim_bucket_file_piece(self.raw.as_ptr(), &mut fd, &mut offset, &mut len)
        } == 0
        {
            return self.read();
        }
        buf.clear();
        buf.reserve(len);
        while buf.len() < len {
            let done = buf.len();
            // SAFETY: pread into the reserved, unused part of `buf` (at most len - done bytes).
            let n = unsafe {
                libc::pread(
                    fd,
                    buf.as_mut_ptr().add(done).cast(),
                    len - done,
                    offset + done as libc::off_t,
                )
            };
            match n {
                // The file shrank since the bucket was made.
                0 => return Err(APR_EOF),
                n if n < 0 => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e.raw_os_error().unwrap_or(libc::EIO));
                }
                // SAFETY: pread initialised these n bytes.
                n => unsafe { buf.set_len(done + n as usize) },
            }
        }
        Ok(&buf[..])
    }

    /// Moves this bucket to the end of `to`.
    pub fn move_to(self, to: Brigade<'_>) {
        // SAFETY: both live; the bucket leaves its brigade before joining `to`.
        unsafe { ffi::lua_shim_bucket_move(to.as_ptr(), self.raw.as_ptr()) }
    }

    pub fn delete(self) {
        // SAFETY: removes and destroys a live bucket.
        unsafe { ffi::lua_shim_bucket_delete(self.raw.as_ptr()) }
    }
}

/// Bytes that stay at one address while the value lives, even when the value itself moves.
///
/// # Safety
/// Implementors guarantee it: the bytes are not inside the value and cannot change or be
/// freed while it lives.
pub unsafe trait StableBytes: std::ops::Deref<Target = [u8]> {}

/// An output brigade whose buckets may borrow the bytes of values it holds, instead of
/// copying them: each [`Outgoing::borrow`] appends a transient bucket over the value's bytes
/// and keeps the value until the brigade has been passed on and emptied (filters further down
/// copy — set aside — whatever they keep past `ap_pass_brigade`). Dropping it empties the
/// brigade before the values go.
pub struct Outgoing<'a, T: StableBytes> {
    bb: Brigade<'a>,
    held: Vec<T>,
}

impl<'a, T: StableBytes> Outgoing<'a, T> {
    pub fn new(bb: Brigade<'a>) -> Self {
        Outgoing {
            bb,
            held: Vec::new(),
        }
    }

    /// Appends `value`'s bytes without copying them (nothing for no bytes).
    pub fn borrow(&mut self, value: T) -> usize {
        let n = value.len();
        if n > 0 {
            // SAFETY: the bytes stay put while `value` lives (StableBytes), and `value` is
            // kept until the bucket is gone: `pass` and `drop` empty the brigade first.
            unsafe {
                ffi::lua_shim_bb_append_transient(self.bb.as_ptr(), value.as_ptr().cast(), n)
            };
            self.held.push(value);
        }
        n
    }

    /// Appends a copy of `data` (nothing for no bytes).
    pub fn copy(&mut self, data: &[u8]) -> usize {
        self.bb.append(data);
        data.len()
    }

    /// Moves `b` to the end of the brigade.
    pub fn take(&mut self, b: Bucket<'_>) {
        b.move_to(self.bb);
    }

    pub fn is_empty(&self) -> bool {
        self.bb.is_empty()
    }

    /// Passes the brigade to `f`'s next filter, then empties it and lets the values go.
    pub fn pass(&mut self, f: Filter<'_>) -> ffi::apr_status_t {
        let rv = f.pass(self.bb);
        self.discard();
        rv
    }

    /// Empties the brigade without passing it and lets the values go.
    pub fn discard(&mut self) {
        self.bb.clear();
        self.held.clear();
    }
}

impl<T: StableBytes> Drop for Outgoing<'_, T> {
    fn drop(&mut self) {
        self.bb.clear();
    }
}

/// A filter instance in a request's (or connection's) filter chain.
#[derive(Clone, Copy)]
pub struct Filter<'a> {
    raw: NonNull<ffi::ap_filter_t>,
    _life: PhantomData<&'a mut ffi::ap_filter_t>,
}

impl<'a> Filter<'a> {
    /// # Safety
    /// `raw` must be the filter httpd is calling, live for `'a`.
    pub unsafe fn from_raw(raw: *mut ffi::ap_filter_t) -> Option<Self> {
        NonNull::new(raw).map(|raw| Filter {
            raw,
            _life: PhantomData,
        })
    }

    fn rec(self) -> &'a mut ffi::ap_filter_t {
        // SAFETY: see from_raw.
        unsafe { &mut *self.raw.as_ptr() }
    }

    /// The registered filter name (as `SetOutputFilter` names it).
    pub fn name(self) -> String {
        // SAFETY: frec and its name live for the configuration's lifetime.
        unsafe { self.rec().frec.as_ref().and_then(|f| opt_cstr(f.name)) }
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Added through mod_filter (a provider) rather than directly.
    pub fn via_mod_filter(self) -> bool {
        // SAFETY: frec lives for the configuration's lifetime.
        unsafe {
            self.rec()
                .frec
                .as_ref()
                .map(|f| !f.providers.is_null())
                .unwrap_or(false)
        }
    }

    pub fn request(self) -> Option<Request<'a>> {
        // SAFETY: a request filter's `r` is live while it is called.
        unsafe { Request::from_raw(self.rec().r) }
    }

    /// This module's state for the filter instance (attached to the request pool).
    pub fn state<T>(self) -> Option<&'a mut T> {
        // SAFETY: the module stores only a `T` made by `set_state` in ctx (or NULL).
        unsafe { (self.rec().ctx as *mut T).as_mut() }
    }

    pub fn set_state<T: 'static>(self, r: Request<'_>, value: T) -> &'a mut T {
        let p = r.pool().attach(value);
        self.rec().ctx = p.cast();
        // SAFETY: `p` lives as long as the request's pool, longer than the filter's calls.
        unsafe { &mut *p }
    }

    /// A new brigade in the request's pool.
    pub fn brigade(self) -> Brigade<'a> {
        let f = self.rec();
        // SAFETY: request pool and the connection's bucket allocator are live.
        unsafe {
            let pool = if f.r.is_null() {
                (*f.c).pool
            } else {
                (*f.r).pool
            };
            Brigade::from_raw(ffi::apr_brigade_create(pool, (*f.c).bucket_alloc)).expect("brigade")
        }
    }

    /// Passes `bb` to the next output filter.
    pub fn pass(self, bb: Brigade<'_>) -> ffi::apr_status_t {
        // SAFETY: live filter chain.
        unsafe { ffi::ap_pass_brigade(self.rec().next, bb.as_ptr()) }
    }

    /// Reads from the next input filter into `bb`.
    pub fn get(
        self,
        bb: Brigade<'_>,
        mode: ffi::ap_input_mode_t,
        block: ffi::apr_read_type_e,
        n: ffi::apr_off_t,
    ) -> ffi::apr_status_t {
        // SAFETY: live filter chain.
        unsafe { ffi::ap_get_brigade(self.rec().next, bb.as_ptr(), mode, block, n) }
    }

    pub fn remove_output(self) {
        // SAFETY: removes this filter from its chain; httpd keeps calling the rest.
        unsafe { ffi::ap_remove_output_filter(self.raw.as_ptr()) }
    }

    pub fn remove_input(self) {
        // SAFETY: as above.
        unsafe { ffi::ap_remove_input_filter(self.raw.as_ptr()) }
    }
}

impl<'a> Request<'a> {
    /// Adds a registered output filter by name (ctx NULL, unlike mod_lua); false if unknown.
    pub fn add_output_filter(self, name: &CStr) -> bool {
        // SAFETY: live request; ap_add_output_filter returns NULL for unknown names.
        unsafe {
            !ffi::ap_add_output_filter(
                name.as_ptr(),
                std::ptr::null_mut(),
                self.as_ptr(),
                self.rec().connection,
            )
            .is_null()
        }
    }

    /// Adds a registered input filter by name; false if unknown.
    pub fn add_input_filter(self, name: &CStr) -> bool {
        // SAFETY: live request.
        unsafe {
            if ffi::ap_get_input_filter_handle(name.as_ptr()).is_null() {
                return false;
            }
            !ffi::ap_add_input_filter(
                name.as_ptr(),
                std::ptr::null_mut(),
                self.as_ptr(),
                self.rec().connection,
            )
            .is_null()
        }
    }
}

/// A brigade kept across filter calls, in the request pool; store it only in state that lives
/// in the same pool (a filter's state), so it never outlives its memory.
pub struct PoolBrigade(NonNull<ffi::apr_bucket_brigade>);

impl PoolBrigade {
    pub fn new(bb: Brigade<'_>) -> PoolBrigade {
        PoolBrigade(bb.raw)
    }

    pub fn get(&self) -> Brigade<'_> {
        // SAFETY: see the type's contract: the brigade lives as long as `self`.
        Brigade {
            raw: self.0,
            _life: PhantomData,
        }
    }
}

impl<'a> Conn<'a> {
    /// Writes `parts` through the connection's output filters (below HTTP framing, above TLS)
    /// and flushes them to the client.
    pub fn write_flush(self, bb: Brigade<'_>, parts: &[&[u8]]) -> Result<(), ffi::apr_status_t> {
        for p in parts {
            bb.append(p);
        }
        bb.append_flush();
        // SAFETY: live connection filter chain.
        let rv = unsafe { ffi::ap_pass_brigade(self.rec().output_filters, bb.as_ptr()) };
        bb.clear();
        if rv == 0 {
            Ok(())
        } else {
            Err(rv)
        }
    }

    /// Reads exactly `n` bytes through the connection's input filters (blocking).
    pub fn read_exact(self, bb: Brigade<'_>, n: usize) -> Result<Vec<u8>, ffi::apr_status_t> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            // SAFETY: live connection filter chain; `bb` is emptied after each read.
            let rv = unsafe {
                ffi::ap_get_brigade(
                    self.rec().input_filters,
                    bb.as_ptr(),
                    ffi::ap_input_mode_t_AP_MODE_READBYTES,
                    ffi::apr_read_type_e_APR_BLOCK_READ,
                    (n - out.len()) as ffi::apr_off_t,
                )
            };
            if rv != 0 {
                bb.clear();
                return Err(rv);
            }
            let before = out.len();
            let mut eos = false;
            let mut b = bb.first();
            while let Some(bucket) = b {
                match bucket.kind() {
                    BucketKind::Data => match bucket.read() {
                        Ok(d) => out.extend_from_slice(d),
                        Err(rv) => {
                            bb.clear();
                            return Err(rv);
                        }
                    },
                    BucketKind::Eos => eos = true,
                    _ => {}
                }
                b = bucket.next(bb);
            }
            bb.clear();
            if out.len() == before {
                // Blocking reads return data, or nothing at the end of the stream.
                let _ = eos;
                return Err(APR_EOF);
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// Is there input waiting (a non-blocking, non-consuming peek of one byte)?
    pub fn input_pending(self, bb: Brigade<'_>) -> bool {
        // SAFETY: live connection filter chain; speculative reads consume nothing.
        let rv = unsafe {
            ffi::ap_get_brigade(
                self.rec().input_filters,
                bb.as_ptr(),
                ffi::ap_input_mode_t_AP_MODE_SPECULATIVE,
                ffi::apr_read_type_e_APR_NONBLOCK_READ,
                1,
            )
        };
        let pending = rv == 0 && bb.first().is_some_and(|b| b.kind() == BucketKind::Data);
        bb.clear();
        pending
    }

    /// A brigade in the connection's pool for its bucket allocator.
    pub fn brigade(self, pool: Pool<'_>) -> Brigade<'a> {
        // SAFETY: pool and the connection's bucket allocator are live.
        unsafe {
            Brigade::from_raw(ffi::apr_brigade_create(
                pool.as_ptr(),
                self.rec().bucket_alloc,
            ))
            .expect("brigade")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files, utilities and server information for the issue-6 `r` methods.

/// What `apr_stat` found, for the fields a caller asked for (`wanted` APR_FINFO_* bits).
pub struct StatInfo {
    pub valid: i32,
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
    pub size: i64,
    pub filetype: i32,
    pub protection: i32,
}

pub fn stat(pool: Pool<'_>, path: &CStr, wanted: i32) -> Option<StatInfo> {
    // SAFETY: apr_stat fills a local finfo; strings it sets live in `pool`.
    unsafe {
        let mut f: ffi::apr_finfo_t = std::mem::zeroed();
        if ffi::apr_stat(&mut f, path.as_ptr(), wanted, pool.as_ptr()) != 0 {
            return None;
        }
        Some(StatInfo {
            valid: f.valid,
            mtime: f.mtime,
            atime: f.atime,
            ctime: f.ctime,
            size: f.size,
            filetype: f.filetype as i32,
            protection: f.protection,
        })
    }
}

/// Names in a directory in readdir order, `.` and `..` included (None if unreadable).
pub fn dir_entries(pool: Pool<'_>, path: &CStr) -> Option<Vec<Vec<u8>>> {
    // SAFETY: APR directory iteration with pool-allocated handle and names.
    unsafe {
        let mut dir: *mut ffi::apr_dir_t = std::ptr::null_mut();
        if ffi::apr_dir_open(&mut dir, path.as_ptr(), pool.as_ptr()) != 0 {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let mut f: ffi::apr_finfo_t = std::mem::zeroed();
            let rv = ffi::apr_dir_read(&mut f, ffi::APR_FINFO_NAME, dir);
            if rv != 0 && rv != 70008 {
                // 70008 = APR_INCOMPLETE: the name is there even if other fields are not.
                break;
            }
            if let Some(n) = opt_cstr(f.name) {
                out.push(n.to_bytes().to_vec());
            }
        }
        ffi::apr_dir_close(dir);
        Some(out)
    }
}

pub fn mkdir(pool: Pool<'_>, path: &CStr, perms: i32, recursive: bool) -> bool {
    // SAFETY: plain APR calls with a NUL-terminated path.
    unsafe {
        if recursive {
            ffi::apr_dir_make_recursive(path.as_ptr(), perms, pool.as_ptr()) == 0
        } else {
            ffi::apr_dir_make(path.as_ptr(), perms, pool.as_ptr()) == 0
        }
    }
}

pub fn rmdir(pool: Pool<'_>, path: &CStr) -> bool {
    // SAFETY: plain APR call.
    unsafe { ffi::apr_dir_remove(path.as_ptr(), pool.as_ptr()) == 0 }
}

/// Sets a file's modification time (apr_time_t, microseconds).
pub fn touch(pool: Pool<'_>, path: &CStr, mtime_us: i64) -> bool {
    // SAFETY: plain APR call.
    unsafe { ffi::apr_file_mtime_set(path.as_ptr(), mtime_us, pool.as_ptr()) == 0 }
}

pub fn now_us() -> i64 {
    // SAFETY: pure query.
    unsafe { ffi::apr_time_now() }
}

pub fn sleep_us(us: i64) {
    // SAFETY: blocks this thread only.
    unsafe { ffi::apr_sleep(us.max(0)) }
}

/// `apr_date_parse_rfc`: seconds since the epoch, or None when the date is not understood.
pub fn parse_rfc_date(s: &CStr) -> Option<i64> {
    // SAFETY: pure parse of a NUL-terminated string.
    match unsafe { ffi::apr_date_parse_rfc(s.as_ptr()) } {
        0 => None,
        t => Some(t / 1_000_000),
    }
}

/// httpd's shell-style match (`*`, `?`); true on a match.
pub fn strcmp_match(s: &CStr, pattern: &CStr, icase: bool) -> bool {
    // SAFETY: pure comparison of NUL-terminated strings.
    unsafe {
        if icase {
            ffi::ap_strcasecmp_match(s.as_ptr(), pattern.as_ptr()) == 0
        } else {
            ffi::ap_strcmp_match(s.as_ptr(), pattern.as_ptr()) == 0
        }
    }
}

pub fn mpm_query(code: i32) -> i32 {
    let mut v: c_int = 0;
    // SAFETY: out pointer to a local.
    unsafe { ffi::ap_mpm_query(code, &mut v) };
    v
}

pub fn state_query(code: i32) -> i32 {
    // SAFETY: pure query.
    unsafe { ffi::ap_state_query(code) }
}

/// Names of the loaded modules (`mod_xxx.c`), in httpd's order.
pub fn loaded_modules() -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: ap_loaded_modules is a NULL-terminated array of module pointers.
    unsafe {
        let mut p = ffi::ap_loaded_modules;
        while !p.is_null() && !(*p).is_null() {
            if let Some(n) = opt_cstr((**p).name) {
                out.push(n.to_string_lossy().into_owned());
            }
            p = p.add(1);
        }
    }
    out
}

/// A linked module's directives and their help texts.
pub fn module_commands(name: &CStr) -> Option<Vec<(String, String)>> {
    // SAFETY: ap_find_linked_module returns NULL or a live module; cmds ends with a NULL name.
    unsafe {
        let m = ffi::ap_find_linked_module(name.as_ptr());
        if m.is_null() || (*m).cmds.is_null() {
            return None;
        }
        let mut out = Vec::new();
        let mut c = (*m).cmds;
        while !(*c).name.is_null() {
            let n = opt_cstr((*c).name)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let h = opt_cstr((*c).errmsg)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((n, h));
            c = c.add(1);
        }
        Some(out)
    }
}

/// (server_executable, server_root, scoreboard_fname, server_mpm); None where httpd has no
/// value (no `ScoreBoardFile`: an anonymous scoreboard).
pub fn server_info() -> [Option<String>; 4] {
    // SAFETY: process-wide strings set by httpd at startup (possibly NULL).
    unsafe {
        let s = |p: *const c_char| opt_cstr(p).map(|s| s.to_string_lossy().into_owned());
        [
            s(ffi::ap_server_argv0),
            s(ffi::ap_server_root),
            s(ffi::ap_scoreboard_fname),
            s(ffi::ap_show_mpm()),
        ]
    }
}

/// One child process's scoreboard record (None when `i` is out of range); numbers as Lua
/// floats, as mod_lua pushes them.
pub fn scoreboard_process(i: i64) -> Option<[(&'static str, f64); 9]> {
    let limit = mpm_query(ffi::AP_MPMQ_HARD_LIMIT_DAEMONS) as i64;
    if i < 0 || i >= limit {
        return None;
    }
    // SAFETY: index checked against the scoreboard's size.
    unsafe {
        let p = ffi::ap_get_scoreboard_process(i as c_int);
        let p = p.as_ref()?;
        Some([
            ("connections", f64::from(p.connections)),
            ("keepalive", f64::from(p.keep_alive)),
            ("lingering_close", f64::from(p.lingering_close)),
            ("pid", f64::from(p.pid)),
            ("suspended", f64::from(p.suspended)),
            ("write_completion", f64::from(p.write_completion)),
            ("not_accepting", f64::from(p.not_accepting)),
            ("quiescing", f64::from(p.quiescing)),
            ("wait_io", f64::from(p.wait_io)),
        ])
    }
}

impl<'a> Request<'a> {
    pub fn runtime_dir_relative(self, file: &CStr) -> Option<&'a CStr> {
        // SAFETY: result allocated in the request pool.
        unsafe {
            opt_cstr(ffi::ap_runtime_dir_relative(
                self.pool().as_ptr(),
                file.as_ptr(),
            ))
        }
    }

    pub fn ssl_var_lookup(self, name: &CStr) -> Option<&'a CStr> {
        // SAFETY: mod_ssl's lookup through httpd's ap_ssl_var_lookup; result in the request pool.
        unsafe {
            opt_cstr(ffi::ap_ssl_var_lookup(
                self.pool().as_ptr(),
                self.rec().server,
                self.rec().connection,
                self.as_ptr(),
                name.as_ptr(),
            ))
        }
    }

    pub fn set_keepalive(self) -> bool {
        // SAFETY: live request.
        unsafe { ffi::ap_set_keepalive(self.as_ptr()) != 0 }
    }

    pub fn custom_response(self, status: c_int, text: &CStr) {
        // SAFETY: ap_custom_response copies the string into the request pool.
        unsafe { ffi::ap_custom_response(self.as_ptr(), status, text.as_ptr()) }
    }

    pub fn send_interim_response(self, send_headers: bool) {
        // SAFETY: live request; httpd checks that the status is 1xx.
        unsafe { ffi::ap_send_interim_response(self.as_ptr(), send_headers as c_int) }
    }
}

/// A regular expression compiled by httpd for r:regex, freed on drop.
pub struct OwnedRegex(Box<ffi::ap_regex_t>);

impl OwnedRegex {
    /// Compiles with httpd's flags; Err carries the compiler's message.
    pub fn compile(pattern: &CStr, flags: c_int) -> Result<OwnedRegex, String> {
        // SAFETY: ap_regcomp initialises the zeroed struct; on failure ap_regerror formats it.
        unsafe {
            let mut re: Box<ffi::ap_regex_t> = Box::new(std::mem::zeroed());
            let rc = ffi::ap_regcomp(&mut *re, pattern.as_ptr(), flags);
            if rc != 0 {
                let mut buf = [0 as c_char; 256];
                ffi::ap_regerror(rc, &*re, buf.as_mut_ptr(), buf.len() as ffi::apr_size_t);
                return Err(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned());
            }
            Ok(OwnedRegex(re))
        }
    }

    pub fn groups(&self) -> usize {
        self.0.re_nsub as usize
    }

    /// Groups 0..=groups() of the first match (None for groups that did not take part).
    pub fn captures<'s>(&self, subject: &'s CStr) -> Option<Vec<Option<&'s [u8]>>> {
        let n = self.groups() + 1;
        let mut m: Vec<ffi::ap_regmatch_t> = vec![
            ffi::ap_regmatch_t {
                rm_so: -1,
                rm_eo: -1
            };
            n
        ];
        // SAFETY: the regex is compiled; `m` has `n` slots.
        let rc = unsafe {
            ffi::ap_regexec(
                &*self.0,
                subject.as_ptr(),
                n as ffi::apr_size_t,
                m.as_mut_ptr(),
                0,
            )
        };
        if rc != 0 {
            return None;
        }
        Some(match_groups(&m, subject.to_bytes()))
    }
}

impl Drop for OwnedRegex {
    fn drop(&mut self) {
        // SAFETY: compiled by ap_regcomp, freed once.
        unsafe { ffi::ap_regfree(&mut *self.0) }
    }
}

/// A scoreboard field as mod_lua pushes it: counters and times are Lua floats, the thread
/// id an integer, the text slots strings.
pub enum ScoreValue {
    Int(i64),
    Number(f64),
    Text(String),
}

/// Text from a fixed-size scoreboard slot. The scoreboard is shared memory that other
/// processes write while we read, so the slot is bounded by its size, never by a NUL alone.
fn score_text(slot: &[c_char]) -> ScoreValue {
    let bytes: Vec<u8> = slot
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    ScoreValue::Text(String::from_utf8_lossy(&bytes).into_owned())
}

/// One worker's scoreboard record (None when `i` or `j` is out of range, where mod_lua
/// reads whatever memory lies there).
pub fn scoreboard_worker(i: i64, j: i64) -> Option<Vec<(&'static str, ScoreValue)>> {
    let daemons = mpm_query(ffi::AP_MPMQ_HARD_LIMIT_DAEMONS) as i64;
    let threads = mpm_query(ffi::AP_MPMQ_HARD_LIMIT_THREADS).max(1) as i64;
    if !(0..daemons).contains(&i) || !(0..threads).contains(&j) {
        return None;
    }
    // SAFETY: both indexes are checked against the scoreboard's dimensions, and httpd
    // checks them again; the record lives in the scoreboard for the process lifetime.
    let w = unsafe { ffi::ap_get_scoreboard_worker_from_indexes(i as c_int, j as c_int).as_ref()? };
    use ScoreValue::{Int, Number};
    Some(vec![
        ("access_count", Number(w.access_count as f64)),
        ("bytes_served", Number(w.bytes_served as f64)),
        ("client", score_text(&w.client)),
        ("client64", score_text(&w.client64)),
        ("conn_bytes", Number(w.conn_bytes as f64)),
        ("conn_count", Number(w.conn_count as f64)),
        ("generation", Number(w.generation as f64)),
        ("last_used", Number(w.last_used as f64)),
        ("pid", Number(w.pid as f64)),
        ("request", score_text(&w.request)),
        ("start_time", Number(w.start_time as f64)),
        ("status", Number(w.status as f64)),
        ("stop_time", Number(w.stop_time as f64)),
        ("tid", Int(w.tid as i64)),
        ("vhost", score_text(&w.vhost)),
        ("protocol", score_text(&w.protocol)),
        ("stimes", Number(clock_ticks(w.times.tms_stime) as f64)),
        ("utimes", Number(clock_ticks(w.times.tms_utime) as f64)),
    ])
}

/// clock_t is `long`: i64 on the 64-bit targets we build for, narrower elsewhere.
#[allow(clippy::useless_conversion)]
fn clock_ticks(t: libc::clock_t) -> i64 {
    i64::from(t)
}

/// One node of httpd's parsed configuration (`ap_conftree`).
pub struct ConfNode {
    /// `"<Name> <args>"` as mod_lua reports it.
    pub directive: String,
    pub file: String,
    pub line: i64,
    pub children: Vec<ConfNode>,
}

/// Copies a sibling list of the config tree (and everything below it).
///
/// # Safety
/// `node` is NULL or a node of a tree that outlives the call (ap_conftree lives in pconf).
unsafe fn conf_list(mut node: *const ffi::ap_directive_t) -> Vec<ConfNode> {
    let text = |p: *const c_char| {
        // SAFETY: NULL or a NUL-terminated string in pconf.
        unsafe { opt_cstr(p) }
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    // SAFETY: per the function contract.
    while let Some(d) = unsafe { node.as_ref() } {
        out.push(ConfNode {
            directive: format!("{} {}", text(d.directive), text(d.args)),
            file: text(d.filename),
            line: d.line_num as i64,
            // SAFETY: children belong to the same tree.
            children: unsafe { conf_list(d.first_child) },
        });
        node = d.next;
    }
    out
}

/// The whole configuration tree, in file order.
pub fn config_tree() -> Vec<ConfNode> {
    // SAFETY: ap_conftree is set while the configuration is read and stays valid (in pconf)
    // for the lifetime of this generation's children.
    unsafe { conf_list(ffi::ap_conftree) }
}

impl<'a> Request<'a> {
    /// The configuration inside the `<VirtualHost>` that serves this request, found by where
    /// that virtual host was defined (file and line), or None for the main server.
    pub fn active_config(self) -> Option<Vec<ConfNode>> {
        // SAFETY: r->server is the live server_rec; defn_name lives in pconf.
        let (file, line) = unsafe {
            let s = self.rec().server.as_ref()?;
            if s.is_virtual == 0 {
                return None;
            }
            (opt_cstr(s.defn_name)?, s.defn_line_number as c_int)
        };
        fn find(
            mut node: *const ffi::ap_directive_t,
            file: &CStr,
            line: c_int,
        ) -> Option<*const ffi::ap_directive_t> {
            // SAFETY: walks ap_conftree, which lives in pconf.
            while let Some(d) = unsafe { node.as_ref() } {
                let here = unsafe { opt_cstr(d.filename) } == Some(file) && d.line_num == line;
                if here && !d.first_child.is_null() {
                    return Some(d.first_child);
                }
                if let Some(found) = find(d.first_child, file, line) {
                    return Some(found);
                }
                node = d.next;
            }
            None
        }
        // SAFETY: ap_conftree as in config_tree().
        let children = find(unsafe { ffi::ap_conftree }, file, line)?;
        // SAFETY: a node list of the same tree.
        Some(unsafe { conf_list(children) })
    }
}

#[cfg(test)]
mod tests {
    use super::{is_merged_form, Liveness};

    #[test]
    fn liveness_tokens_end_alone_and_are_never_reused() {
        let l = Liveness::default();
        let outer = l.begin();
        let inner = l.begin();
        assert!(l.is_live(outer) && l.is_live(inner) && outer != inner);
        // Calls may end in any order (a filter's coroutine outlives the calls around it).
        l.end(outer);
        assert!(!l.is_live(outer) && l.is_live(inner));
        let next = l.begin();
        assert!(next != outer && next != inner && l.is_live(next));
        l.end(inner);
        l.end(next);
        assert!(!l.is_live(inner) && !l.is_live(next));
        // Ending a token twice, or one never given, changes nothing.
        l.end(next);
        l.end(12345);
        let again = l.begin();
        assert!(l.is_live(again) && !l.is_live(outer));
    }

    #[test]
    fn paths_merging_would_keep_as_they_are() {
        for kept in [
            "/",
            "/a",
            "/srv/www/hooks.lua",
            "/a/b/",
            "/a.b/..c/.d",
            "/.../x/...",
            "/a/b./c../",
            "/x y/é.lua",
        ] {
            assert!(is_merged_form(kept), "{kept}");
        }
        // Relative, or with segments apr_filepath_merge drops or folds.
        for changed in [
            "", "a.lua", "./a.lua", "//a", "/a//b", "/a/./b", "/a/../b", "/a/.", "/a/..", "/a//",
            "/a/./", "/a/../", "/.", "/..", "/a\0b", "/a/\0",
        ] {
            assert!(!is_merged_form(changed), "{changed}");
        }
        assert!(!is_merged_form(&format!("/{}", "x".repeat(4092))));
        assert!(is_merged_form(&format!("/{}", "x".repeat(4090))));
    }
}
