//! Test harness: starts a real httpd (`apache2 -d ROOT -f CONF -DFOREGROUND`) with a
//! self-contained config on 127.0.0.1 and a free port, loads our freshly built module (or
//! Debian's mod_lua for differential tests), talks HTTP/1.1 to it, and stops exactly the
//! process it started.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const HTTPD: &str = "/usr/sbin/apache2";
pub const MODULES: &str = "/usr/lib/apache2/modules";
pub const DEBIAN_MOD_LUA: &str = "/usr/lib/apache2/modules/mod_lua.so";

/// Which Lua module the server loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    Ours,
    DebianModLua,
}

/// True when httpd is installed; otherwise the test is skipped locally and fails under CI.
pub fn httpd_available() -> bool {
    if Path::new(HTTPD).exists() {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{HTTPD} is missing: under CI=true the integration tests must run (scripts/install-deps.sh installs it)");
    }
    eprintln!("skipped: {HTTPD} not installed (run scripts/install-deps.sh)");
    false
}

/// `MOD_LUA_RS_MEMCHECK=1`: every httpd loading our module runs under valgrind's memcheck (its
/// children are forks, so they are checked too), each process logging to
/// `ROOT/logs/memcheck.<pid>.log`; when the server is dropped, any memcheck error fails the test.
/// A few tests bound how long something may take and fail at valgrind's speed.
pub fn memcheck() -> bool {
    std::env::var("MOD_LUA_RS_MEMCHECK").is_ok_and(|v| v == "1")
}

/// Asserts that the error log text `log` contains every one of `parts`.
pub fn assert_logged(log: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            log.contains(part),
            "{part:?} is not in the error log:\n{log}"
        );
    }
}

/// Starts the configuration `config` makes with our module, then with Debian's mod_lua, runs
/// `check` against each server in turn and returns both results (ours first); None, with
/// nothing started, where httpd or Debian's mod_lua is missing.
pub fn on_both<T>(
    config: impl Fn() -> Config,
    mut check: impl FnMut(Module, &Server) -> T,
) -> Option<(T, T)> {
    if !httpd_available() || !Path::new(DEBIAN_MOD_LUA).exists() {
        return None;
    }
    let mut run = |m: Module| check(m, &config().module(m).start());
    Some((run(Module::Ours), run(Module::DebianModLua)))
}

/// Lua for comparison scripts: `local t = probe(r)`, then `t(name, f)` calls `f` protected and
/// writes one line: the name, whether it succeeded, how many values it gave and each value
/// (tables as `{k=v,...}` sorted).
pub const LUA_PROBE: &str = r##"
local function show(v)
  if type(v) ~= "table" then return tostring(v) end
  local ks = {}
  for k, x in pairs(v) do ks[#ks + 1] = tostring(k) .. "=" .. tostring(x) end
  table.sort(ks)
  return "{" .. table.concat(ks, ",") .. "}"
end
local function pack(...) return {n = select("#", ...), ...} end
function probe(r)
  r.content_type = "text/plain"
  return function(name, f)
    local res = pack(pcall(f))
    local parts = {}
    for i = 2, res.n do parts[#parts + 1] = show(res[i]) end
    r:puts(name, " ", tostring(res[1]), " n=", res.n - 1, " ", table.concat(parts, ","), "\n")
  end
end
"##;

/// What a comparison request answered: status, body (the server root shown as ROOT) and the
/// values of the headers asked for.
pub type Answer = (u16, String, Vec<String>);

/// Whether our module runs PUC Lua (5.3/5.4), as Debian's mod_lua does; scripts that depend on
/// the language's details (integer subtypes, `math.type`, a caller's frame kept through a tail
/// call to a C function, which LuaJIT drops) compare with mod_lua only then.
pub fn runs_puc_lua() -> bool {
    !std::env::var("MOD_LUA_RS_FEATURES").is_ok_and(|f| f.contains("luajit"))
}

/// Serves `handler` (Lua defining `handle(r)`, with [`LUA_PROBE`] before it) at /probe.lua
/// under our module and under Debian's mod_lua, asserts that both answer a GET with
/// `request_headers` alike (status, body and the `headers` named) and neither crashed, and
/// returns the answer; None where httpd or Debian's mod_lua is missing, or where our module
/// runs LuaJIT (error positions from tail calls differ by language there, see
/// [`runs_puc_lua`]).
pub fn same_on_both(
    handler: &str,
    request_headers: &[(&str, &str)],
    headers: &[&str],
) -> Option<Answer> {
    if !runs_puc_lua() {
        return None;
    }
    let script = format!("{LUA_PROBE}{handler}");
    let (ours, theirs) = on_both(
        || Config::new().file("htdocs/probe.lua", &script),
        |_, s| {
            let r = s.request("GET", "/probe.lua", request_headers, b"");
            let root = s.docroot().parent().unwrap().display().to_string();
            s.assert_no_crash();
            let values = headers
                .iter()
                .flat_map(|h| {
                    r.headers
                        .get(&h.to_ascii_lowercase())
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            (r.status, r.text().replace(&root, "ROOT"), values)
        },
    )?;
    assert_eq!(ours, theirs);
    Some(ours)
}

/// Builds the cdylib once per test binary (cargo test does not rebuild it) and returns it.
pub fn module_path() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/<test> → target/<profile>
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let release = profile_dir
                .file_name()
                .map(|n| n == "release")
                .unwrap_or(false);
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--lib", "--quiet"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cmd.arg("--release");
            }
            if let Ok(features) = std::env::var("MOD_LUA_RS_FEATURES") {
                cmd.args(["--no-default-features", "--features", &features]);
            }
            let st = cmd.status().expect("cannot run cargo build");
            assert!(st.success(), "cargo build --lib failed");
            let so = profile_dir.join("libmod_lua_rs.so");
            assert!(so.exists(), "{} not built", so.display());
            so
        })
        .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A server configuration to start.
pub struct Config {
    pub module: Module,
    /// Directives appended after the base config (may use `{root}` and `{docroot}`).
    pub extra: String,
    /// Files written below the server root before start (`htdocs/x.lua`, …).
    pub files: Vec<(String, String)>,
    pub defines: Vec<String>,
    pub log_level: String,
    /// Extra LoadModule lines (module name, file).
    pub modules: Vec<(String, String)>,
}

impl Config {
    pub fn new() -> Self {
        Config {
            module: Module::Ours,
            extra: String::new(),
            files: Vec::new(),
            defines: vec!["MOD_LUA_RS_TESTING".into()],
            log_level: "info".into(),
            modules: Vec::new(),
        }
    }
    pub fn module(mut self, m: Module) -> Self {
        self.module = m;
        self
    }
    pub fn directives(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }
    pub fn file(mut self, path: &str, content: &str) -> Self {
        self.files.push((path.into(), content.into()));
        self
    }
    pub fn log_level(mut self, l: &str) -> Self {
        self.log_level = l.into();
        self
    }
    pub fn load(mut self, name: &str, file: &str) -> Self {
        self.modules.push((name.into(), file.into()));
        self
    }
    pub fn start(self) -> Server {
        Server::start(self)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Server {
    pub root: PathBuf,
    pub port: u16,
    child: Option<Child>,
    conf: PathBuf,
    /// Runs under memcheck (see [`memcheck`]).
    memcheck: bool,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one server (readable by www-data, which the children run as).
pub fn scratch_dir(tag: &str) -> PathBuf {
    // Below /tmp: the children run as www-data and must be able to read the scripts.
    let base = std::env::temp_dir().join("mod_lua_rs-tests");
    let dir = base.join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["htdocs", "logs", "run", "conf"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    dir
}

/// Lets the children (www-data) create files in `dir`, as /tmp does (mode 1777).
pub fn make_writable(dir: impl AsRef<Path>) {
    let st = Command::new("chmod")
        .arg("1777")
        .arg(dir.as_ref())
        .status()
        .expect("chmod");
    assert!(st.success(), "chmod 1777 {}", dir.as_ref().display());
}

pub fn chmod_tree(p: &Path) {
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(p).status();
    if let Some(parent) = p.parent() {
        let _ = Command::new("chmod").arg("a+rx").arg(parent).status();
    }
}

impl Server {
    pub fn base_config(cfg: &Config, root: &Path, port: u16) -> String {
        let module = match cfg.module {
            Module::Ours => module_path(),
            Module::DebianModLua => PathBuf::from(DEBIAN_MOD_LUA),
        };
        let user = if is_root() {
            "User www-data\nGroup www-data\n"
        } else {
            ""
        };
        let mut extra_modules = String::new();
        for (name, file) in &cfg.modules {
            extra_modules.push_str(&format!("LoadModule {name} {MODULES}/{file}\n"));
        }
        let r = root.display();
        let body = cfg
            .extra
            .replace("{root}", &r.to_string())
            .replace("{docroot}", &format!("{r}/htdocs"));
        format!(
            "ServerRoot {r}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\nPidFile {r}/run/httpd.pid\n\
             DefaultRuntimeDir {r}/run\nMutex file:{r}/run default\nErrorLog {r}/logs/error_log\n\
             LogLevel {lvl}\n{user}\
             LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n\
             StartServers 2\nServerLimit 2\nThreadLimit 25\nThreadsPerChild 25\nMaxRequestWorkers 50\n\
             MinSpareThreads 25\nMaxSpareThreads 50\nMaxConnectionsPerChild 0\n\
             LoadModule authz_core_module {MODULES}/mod_authz_core.so\n\
             LoadModule mime_module {MODULES}/mod_mime.so\n{extra_modules}\
             LoadModule lua_module {module}\n\
             TypesConfig /etc/mime.types\nDocumentRoot {r}/htdocs\n\
             <Directory {r}/htdocs>\n  Require all granted\n</Directory>\n\
             AddHandler lua-script .lua\nKeepAliveTimeout 5\n\n{body}\n",
            module = module.display(),
            lvl = cfg.log_level,
        )
    }

    /// Writes the config and files, and runs `apache2 -t`: Ok(output) or Err(output).
    pub fn config_test(cfg: &Config) -> Result<String, String> {
        let root = scratch_dir("conftest");
        let (conf, _) = Self::prepare(cfg, &root, free_port());
        let out = Command::new(HTTPD)
            .args(["-t", "-d"])
            .arg(&root)
            .arg("-f")
            .arg(&conf)
            .args(cfg.defines.iter().flat_map(|d| ["-D", d.as_str()]))
            .output()
            .expect("run apache2 -t");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&root);
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    fn prepare(cfg: &Config, root: &Path, port: u16) -> (PathBuf, String) {
        for (path, content) in &cfg.files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content.replace("{root}", &root.display().to_string())).unwrap();
        }
        let text = Self::base_config(cfg, root, port);
        let conf = root.join("conf/httpd.conf");
        std::fs::write(&conf, &text).unwrap();
        chmod_tree(root);
        (conf, text)
    }

    pub fn start(cfg: Config) -> Server {
        let tag = match cfg.module {
            Module::Ours => "ours",
            Module::DebianModLua => "modlua",
        };
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let root = scratch_dir(tag);
            let port = free_port();
            let (conf, _) = Self::prepare(&cfg, &root, port);
            let memcheck = memcheck() && cfg.module == Module::Ours;
            let mut cmd = if memcheck {
                let mut c = Command::new("valgrind");
                c.arg("--tool=memcheck")
                    .arg("--num-callers=40")
                    .arg(format!(
                        "--log-file={}",
                        root.join("logs/memcheck.%p.log").display()
                    ))
                    .arg(HTTPD);
                c
            } else {
                Command::new(HTTPD)
            };
            let child = cmd
                .arg("-d")
                .arg(&root)
                .arg("-f")
                .arg(&conf)
                .arg("-DFOREGROUND")
                .args(cfg.defines.iter().flat_map(|d| ["-D", d.as_str()]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn apache2");
            let mut server = Server {
                root,
                port,
                child: Some(child),
                conf,
                memcheck,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("httpd did not start: {last_err}");
    }

    /// How long starting and stopping may take (valgrind is some 20 times slower).
    fn patience(&self) -> Duration {
        Duration::from_secs(if self.memcheck { 120 } else { 15 })
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.patience();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    self.child = None;
                    return Err(format!("exited with {status}: {err}\n{}", self.error_log()));
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("timeout waiting for the port".into())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.root.join("logs/error_log")).unwrap_or_default()
    }

    pub fn docroot(&self) -> PathBuf {
        self.root.join("htdocs")
    }

    /// Writes a file below the docroot while the server runs.
    pub fn write_doc(&self, rel: &str, content: &str) {
        let p = self.docroot().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        chmod_tree(&p);
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut c = self.connect();
        c.send(method, path, headers, body, true)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Asserts the children never crashed (no "exit signal" lines).
    pub fn assert_no_crash(&self) {
        let log = self.error_log();
        assert!(!log.contains("exit signal"), "a child crashed:\n{log}");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Stop exactly the httpd we started (its children follow their parent).
            // SAFETY: kill(2) on the PID of our own child process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + self.patience();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

impl Server {
    /// Under memcheck: the first report of every process that had errors ("" when none).
    fn memcheck_errors(&self) -> String {
        let mut found = String::new();
        let Ok(dir) = std::fs::read_dir(self.root.join("logs")) else {
            return found;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("memcheck.") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let clean = text.contains("ERROR SUMMARY: 0 errors");
            if !clean && text.contains("ERROR SUMMARY:") {
                found.push_str(&format!("--- {name}\n{text}\n"));
            }
        }
        found
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if self.memcheck && !std::thread::panicking() {
            let errors = self.memcheck_errors();
            assert!(errors.is_empty(), "memcheck found errors:\n{errors}");
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive capable HTTP/1.1 client connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            reader: BufReader::new(s),
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        close: bool,
    ) -> Response {
        self.try_send(method, path, headers, body, close)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A keep-alive GET as browsers do it: if the server closed the idle connection before
    /// answering (mpm_event does that to busy workers' keep-alive connections), reconnect and
    /// send it again.
    pub fn send_retrying(&mut self, port: u16, path: &str) -> Response {
        for _ in 0..3 {
            match self.try_send("GET", path, &[], b"", false) {
                Ok(r) => return r,
                Err(e)
                    if e == "connection closed"
                        || e.contains("reset")
                        || e.contains("Broken pipe") =>
                {
                    *self = Client::connect(port);
                }
                Err(e) => panic!("GET {path}: {e}"),
            }
        }
        self.send("GET", path, &[], b"", false)
    }

    pub fn try_send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        close: bool,
    ) -> Result<Response, String> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        let mut has_len = false;
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                has_len = true;
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_len && (!body.is_empty() || method == "POST" || method == "PUT") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if close {
            req.push_str("Connection: close\r\n");
        }
        req.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        s.write_all(body).map_err(|e| e.to_string())?;
        read_response(&mut self.reader, method == "HEAD")
    }
}

fn read_line(r: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> Result<Response, String> {
    let status_line = read_line(r)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    let get =
        |h: &BTreeMap<String, Vec<String>>, k: &str| h.get(k).and_then(|v| v.first()).cloned();
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if get(&headers, "transfer-encoding")
        .map(|v| v.eq_ignore_ascii_case("chunked"))
        .unwrap_or(false)
    {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                loop {
                    if read_line(r)?.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk)
                .map_err(|e| format!("truncated chunk: {e}"))?;
            body.extend_from_slice(&chunk);
            read_line(r)?;
        }
    } else if let Some(len) = get(&headers, "content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        body.resize(len, 0);
        r.read_exact(&mut body)
            .map_err(|e| format!("truncated body: {e}"))?;
    } else {
        r.read_to_end(&mut body).map_err(|e| e.to_string())?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Runs `f` on `threads` threads, `per_thread` times each, with one keep-alive connection
/// per thread; returns every response.
pub fn hammer(port: u16, threads: usize, per_thread: usize, path: &str) -> Vec<Response> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut out = Vec::with_capacity(per_thread);
                for _ in 0..per_thread {
                    out.push(c.send_retrying(port, &path));
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

impl Config {
    /// Adds mod_ssl and a TLS virtual host on 127.0.0.1:`port` with a fresh self-signed
    /// certificate (made with openssl).
    pub fn tls(self, port: u16) -> Self {
        let mut cfg = self;
        let dir = scratch_dir("cert");
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let key = std::fs::read_to_string(dir.join("key.pem")).unwrap();
        let cert = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
        cfg = cfg
        .load("socache_shmcb_module", "mod_socache_shmcb.so")
        .load("ssl_module", "mod_ssl.so")
        .file("conf/key.pem", &key)
        .file("conf/cert.pem", &cert)
        .directives(&format!(
            "Listen 127.0.0.1:{port}\n<VirtualHost 127.0.0.1:{port}>\n SSLEngine on\n \
             SSLCertificateFile {{root}}/conf/cert.pem\n SSLCertificateKeyFile {{root}}/conf/key.pem\n</VirtualHost>\n"
        ));
        cfg
    }
}
