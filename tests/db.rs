//! r:dbacquire and the database objects against real databases: SQLite through an apr_dbd
//! driver directly and through mod_dbd's connection pool (connections are returned also when
//! the script fails), and PostgreSQL when the suite can start a server.
mod common;
use common::*;

const DB: &str = r##"
local ops = {}
-- db:query's counts are floats, as mod_lua pushes them (on LuaJIT every number is).
local mtype = math.type or function() return "float" end
local function count(n) return string.format("%d", n) .. (mtype(n) == "float" and "" or "(integer)") end
local function dir(r) return r.document_root .. "/../db" end

function ops.direct(r)
  local q = r:parseargs()
  local db, err = r:dbacquire(q.driver or "sqlite3", q.params or (dir(r) .. "/direct.db"))
  if not db then return r:puts("ERR ", err) end
  db:query(r, "DROP TABLE IF EXISTS people")
  local c = db:query(r, "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
  local n1 = db:query(r, "INSERT INTO people VALUES (1, 'Ann', NULL)")
  local n2 = db:query(r, "INSERT INTO people VALUES (2, '" .. db:escape(r, "O'Brien") .. "', 'x')")
  local sel, sel_err = db:select(r, "SELECT id, name, note FROM people ORDER BY id")
  if not sel then return r:puts("select failed: ", tostring(sel_err), " ", tostring(n1), tostring(n2)) end
  local all = sel(0)
  local named = db:select(r, "SELECT id, name FROM people ORDER BY id")(-1, true)
  local st = db:prepare(r, "SELECT name FROM people WHERE id = %d")
  local one = st:select(2)(-1)
  local few, few_err = st:select()
  local ins = db:prepare(r, "INSERT INTO people (id, name) VALUES (%d, %s)")
  local n3 = ins:query(3, "Zoë")
  local bad, bad_err = db:query(r, "SELEC nonsense")
  local active = db:active()
  db:close()
  local after = db:query(r, "SELECT 1")
  local after_sel = db:select(r, "SELECT 1")
  local after_st, after_st_err = st:select(1)
  r:puts(count(c), ",", count(n1), ",", count(n2), "|", #all, ":", all[1][1], all[1][2], tostring(all[1][3]), ":", all[2][2], all[2][3],
    "|", named.id, named.name, "|", one[1], "|", tostring(few), ",", few_err, "|", n3, "|", tostring(bad), ",",
    tostring(type(bad_err) == "string"), "|", tostring(active), "|", count(after), ",", tostring(after_sel), ",",
    tostring(after_st), ",", after_st_err)
end

function ops.nodriver(r)
  local db, err, rc = r:dbacquire("nosuchdriver", "x")
  local db2, err2 = r:dbacquire("sqlite3", "")
  r:puts(tostring(db), ",", err, ",", type(rc), "|", tostring(db2), ",", err2)
end

function ops.pool(r)
  local db, err = r:dbacquire()
  if not db then return r:puts("ERR ", err) end
  db:query(r, "CREATE TABLE IF NOT EXISTS hits (n INTEGER)")
  db:query(r, "INSERT INTO hits VALUES (1)")
  local count = db:select(r, "SELECT count(*) FROM hits")(-1)[1]
  local shout = db:prepared(r, "shout"):select("hi")(-1)[1]
  local none, none_err = db:prepared(r, "nope")
  db:close()
  r:puts(count, "|", shout, "|", tostring(none), ",", none_err)
end

function ops.leak(r)
  local db = assert(r:dbacquire())
  db:query(r, "INSERT INTO hits VALUES (1)")
  error("script failed while holding a connection")
end

function handle(r) return ops[r:parseargs().op](r) end
"##;

/// mod_dbd's settings for a driver and its connection parameters.
enum Pool<'a> {
    None,
    Dbd(&'a str, &'a str),
}

fn db_server(pool: Pool<'_>) -> Option<Server> {
    if !httpd_available() {
        return None;
    }
    let mut cfg = Config::new().file("htdocs/db.lua", DB).file("db/.keep", "");
    if let Pool::Dbd(driver, params) = pool {
        cfg = cfg.load("dbd_module", "mod_dbd.so").directives(&format!(
            "DBDriver {driver}\nDBDParams \"{params}\"\nDBDMin 0\nDBDKeep 1\nDBDMax 2\nDBDExptime 10\n\
             DBDPrepareSQL \"SELECT CAST(%s AS text) || '!'\" shout",
        ));
    }
    let s = cfg.start();
    make_writable(s.root.join("db"));
    Some(s)
}

#[test]
fn sqlite_through_a_driver() {
    let Some(s) = db_server(Pool::None) else {
        return;
    };
    let t = s.get("/db.lua?op=direct").text();
    assert_eq!(t, EXPECTED_DIRECT);
    let t = s.get("/db.lua?op=nodriver").text();
    assert_eq!(
        t,
        "nil,can't find driver for nosuchdriver,number|nil,No database connection string was specified."
    );
    // Without mod_dbd the default type says so.
    let t = s.get("/db.lua?op=pool").text();
    assert_eq!(t, "ERR mod_dbd doesn't seem to have been loaded.");
    s.assert_no_crash();
}

#[test]
fn sqlite_through_mod_dbd() {
    let Some(s) = db_server(Pool::Dbd("sqlite3", "{root}/db/pool.db")) else {
        return;
    };
    pool_behaviour(&s);
}

/// The mod_dbd checks shared by every driver.
fn pool_behaviour(s: &Server) {
    let t = s.get("/db.lua?op=pool").text();
    assert_eq!(
        t,
        "1|hi!|nil,Could not find any prepared statement called nope!"
    );
    // DBDMax 2 per process: scripts that fail while holding a connection must give it back,
    // or the pool would run dry after two of them.
    for _ in 0..8 {
        assert_eq!(s.get("/db.lua?op=leak").status, 500);
    }
    let t = s.get("/db.lua?op=pool").text();
    assert!(t.starts_with("10|hi!|"), "{t}");
    assert!(s
        .error_log()
        .contains("script failed while holding a connection"));
    s.assert_no_crash();
}

const EXPECTED_DIRECT: &str =
    "0,1,1|2:1Annnil:O'Brienx|1Ann|O'Brien|false,Error in executing prepared statement: \
     Expected 1 arguments, got 0.|1|nil,true|true|-1,false,false,\
     Database connection seems to be closed, please reacquire it.";

/// A private PostgreSQL server for one test: initdb in a scratch directory, 127.0.0.1 on a
/// free port, trust authentication; stopped (only this one) when dropped.
struct Postgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("pg_ctl").exists())?;
        let home = scratch_dir("pg");
        let data = home.join("data");
        let port = free_port();
        let pg = Postgres { bin, data, port };
        // PostgreSQL refuses to run as root: run it as the postgres account then.
        if is_root() {
            let st = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&home)
                .status()
                .ok()?;
            assert!(st.success());
        }
        pg.run(
            "initdb",
            &["-A", "trust", "-U", "lua", "-E", "UTF8", "--no-sync", "-D"],
            true,
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            home.display()
        );
        let log = home.join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-w",
                "-l",
                &log.display().to_string(),
                "-o",
                &opts,
                "start",
                "-D",
            ],
            true,
        );
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "lua",
                "luatest",
            ],
            false,
        );
        Some(pg)
    }

    fn run(&self, tool: &str, args: &[&str], with_data_dir: bool) {
        let out = self.try_run(tool, args, with_data_dir);
        assert!(
            out.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn try_run(&self, tool: &str, args: &[&str], with_data_dir: bool) -> std::process::Output {
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            std::process::Command::new(self.bin.join(tool))
        };
        cmd.args(args);
        if with_data_dir {
            cmd.arg(&self.data);
        }
        cmd.output().expect("run a PostgreSQL tool")
    }

    fn params(&self) -> String {
        format!("host=127.0.0.1 port={} user=lua dbname=luatest", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Stops the server of this data directory only (pg_ctl reads its postmaster.pid).
        let _ = self.try_run("pg_ctl", &["-m", "fast", "-w", "stop", "-D"], true);
    }
}

#[test]
fn postgresql_through_a_driver_and_mod_dbd() {
    if !httpd_available() {
        return;
    }
    let have_driver =
        std::path::Path::new("/usr/lib/x86_64-linux-gnu/apr-util-1/apr_dbd_pgsql.so").exists();
    let pg = if have_driver { Postgres::start() } else { None };
    let Some(pg) = pg else {
        assert!(
            std::env::var("CI").is_err(),
            "PostgreSQL or APR's pgsql driver missing under CI (scripts/install-deps.sh installs them)"
        );
        eprintln!("skipped: PostgreSQL or APR's pgsql driver is not installed");
        return;
    };
    let params = pg.params();
    let s = db_server(Pool::Dbd("pgsql", &params)).unwrap();
    let q = params.replace(' ', "%20").replace('=', "%3D");
    let t = s
        .get(&format!("/db.lua?op=direct&driver=pgsql&params={q}"))
        .text();
    assert_eq!(t, EXPECTED_DIRECT, "{}", s.error_log());
    pool_behaviour(&s);
}

#[test]
fn a_kept_db_object_is_closed_after_its_request() {
    if !httpd_available() {
        return;
    }
    // One server-scope VM, so a global survives into the next request.
    let s = Config::new()
        .directives("LuaScope server 1 1")
        .file(
            "htdocs/stash.lua",
            "function handle(r)\n\
               if STASHED then\n\
                 local n = STASHED:query(r, 'SELECT 1')\n\
                 local sel = STASHED:select(r, 'SELECT 1')\n\
                 return r:puts(string.format('%d', n), ',', tostring(sel), ',', tostring(STASHED:active()), ',', select('#', ROWS(-1)))\n\
               end\n\
               STASHED = assert(r:dbacquire('sqlite3', ':memory:'))\n\
               ROWS = STASHED:select(r, 'SELECT 1 UNION SELECT 2')\n\
               r:puts('stashed ', ROWS(-1)[1])\n\
             end\n",
        )
        .start();
    // Two child processes, one VM each: the first request in each stashes, later ones see
    // their stash closed.
    let answers: Vec<String> = (0..12).map(|_| s.get("/stash.lua").text()).collect();
    assert!(
        answers
            .iter()
            .all(|a| a == "stashed 1" || a == "-1,false,false,0"),
        "{answers:?}"
    );
    assert!(
        answers.iter().filter(|a| *a == "stashed 1").count() <= 2,
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a == "-1,false,false,0"),
        "{answers:?}"
    );
    s.assert_no_crash();
}

/// The same calls through an apr_dbd driver under Debian's mod_lua give the same values,
/// number subtypes included (db:query's counts and db:close's status are floats there; a
/// prepared statement's count an integer), and the same argument errors (db:escape, db:select
/// and db:prepare check for the request first; statements must be strings).
#[test]
fn same_values_as_debian_mod_lua() {
    const SCRIPT: &str = "function handle(r)\n\
        local db = assert(r:dbacquire('sqlite3', r.document_root .. '/../db/t.db'))\n\
        local c = db:query(r, 'CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)')\n\
        local n = db:query(r, \"INSERT INTO t VALUES (1, 'Ann'), (2, 'Bo')\")\n\
        local rows = db:select(r, 'SELECT id, name FROM t ORDER BY id')(0)\n\
        local ins = db:prepare(r, 'INSERT INTO t (id, name) VALUES (%d, %s)')\n\
        local p = ins:query(3, 'Cy')\n\
        local bad, err = db:query(r, 'SELEC nonsense')\n\
        local active = db:active()\n\
        local function msg(ok, e) return (tostring(e):gsub('^.-:%d+: ', '')) end\n\
        local e1 = msg(pcall(function() return db:escape('x') end))\n\
        local e2 = msg(pcall(function() return db:query(r, 5) end))\n\
        local e3 = msg(pcall(function() return db:prepare(r) end))\n\
        local rs = tostring(db:select(r, 'SELECT 1')):match('^[^:]+')\n\
        local closed = db:close()\n\
        local after = db:query(r, 'SELECT 1')\n\
        r:puts(tostring(c), '|', tostring(n), '|', #rows, rows[2][1], rows[2][2], '|', tostring(p), '|', \
        tostring(bad), type(err), '|', tostring(active), '|', tostring(after), '|', tostring(closed), '#', \
        e1, '|', e2, '|', e3, '|', rs)\n\
      end\n";
    let config = || {
        Config::new()
            .file("htdocs/t.lua", SCRIPT)
            .file("db/.keep", "")
    };
    let Some((ours, mut theirs)) = on_both(config, |_, s| {
        make_writable(s.root.join("db"));
        s.get("/t.lua").text()
    }) else {
        return;
    };
    if !runs_puc_lua() {
        // LuaJIT writes every number without ".0", numbers a method's arguments from self and
        // shows no __name in tostring: the values only.
        theirs = theirs.replace(".0", "");
        let values = |t: &str| t.split('#').next().unwrap_or_default().to_string();
        assert_eq!(values(&ours), values(&theirs));
        return;
    }
    assert_eq!(ours, theirs);
    assert!(ours.starts_with("0"), "{ours}");
    assert!(
        ours.contains("#bad argument #1 to 'escape' (Apache2.Request expected, got string)|"),
        "{ours}"
    );
    assert!(ours.ends_with("|lua_apr.dbselect"), "{ours}");
}
