//! `r:dbacquire` and mod_lua's database objects (§10): a db object, prepared statements and
//! result sets, with mod_lua's shapes — Lua tables holding their handle at `[0]` and plain
//! functions called with `:` — over the connection layer in `crate::dbd`.
#![forbid(unsafe_code)]

use super::args::{arg_error, Args};
use super::request::{api_fn, c_arg, lua_bytes, method_with_handle, raising, request_arg, Methods};
use crate::dbd::{Conn, Rows, Statement};
use crate::httpd::LiveRequest;
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, MultiValue, Table, UserData, Value};
use std::ffi::CString;

/// A connection as scripts hold it: usable only while the call that acquired it runs (like
/// `r` itself). Afterwards the request's pool may be being destroyed on another thread, so a
/// db object kept in a global must not touch the connection, not even to close it: the end of
/// the request gives it back.
#[derive(Clone)]
struct Bound {
    conn: Conn,
    call: LiveRequest,
}

impl Bound {
    fn usable(&self) -> Option<&Conn> {
        self.call.get().map(|_| &self.conn)
    }

    /// The connection while usable, else one that reports itself closed.
    fn conn(&self) -> Conn {
        self.usable().cloned().unwrap_or_else(Conn::closed)
    }
}

/// The handle at a db object's `[0]`. Collecting it closes the connection, as in mod_lua.
struct DbHandle(Bound);
impl UserData for DbHandle {}
impl Drop for DbHandle {
    fn drop(&mut self) {
        if let Some(c) = self.0.usable() {
            c.close();
        }
    }
}

struct StmtHandle {
    db: Bound,
    stmt: Statement,
}
impl UserData for StmtHandle {}

struct RowsHandle {
    db: Bound,
    rows: Rows,
}
impl UserData for RowsHandle {}

const CLOSED: &str = "Database connection seems to be closed, please reacquire it.";

/// Per-VM pieces: the functions of each object kind and the result-set metatable.
struct Kit {
    db: Vec<(&'static str, Function)>,
    stmt: Vec<(&'static str, Function)>,
    rows_meta: Table,
}

fn handle<T: UserData + 'static>(
    lua: &Lua,
    fname: &'static str,
    args: &MultiValue,
) -> mlua::Result<AnyUserData> {
    let bad = || arg_error(lua, 1, fname, "database object expected");
    let Some(Value::Table(t)) = args.front() else {
        return Err(bad());
    };
    match t.raw_get::<Value>(0)? {
        Value::UserData(u) if u.is::<T>() => Ok(u),
        _ => Err(bad()),
    }
}

fn db_fn<F, R>(lua: &Lua, name: &'static str, f: F) -> mlua::Result<(&'static str, Function)>
where
    F: Fn(&Lua, &Bound, &Conn, &Args<'_>) -> mlua::Result<R> + 'static,
    R: IntoLuaMulti,
{
    let raw = api_fn(lua, move |lua, args: MultiValue| {
        let u = handle::<DbHandle>(lua, name, &args)?;
        let db = u.borrow::<DbHandle>()?.0.clone();
        f(lua, &db, &db.conn(), &Args::new(lua, name, args))
    })?;
    Ok((name, raising(lua, raw)?))
}

fn rows_value(
    lua: &Lua,
    kit: &Kit,
    db: &Bound,
    found: Option<Result<(Rows, usize), String>>,
) -> mlua::Result<MultiValue> {
    match found {
        None => false.into_lua_multi(lua),
        Some(Err(e)) => (Value::Nil, e).into_lua_multi(lua),
        Some(Ok((_, 0))) => Ok(MultiValue::new()),
        Some(Ok((rows, _))) => {
            let t = lua.create_table()?;
            t.raw_set(
                0,
                lua.create_userdata(RowsHandle {
                    db: db.clone(),
                    rows,
                })?,
            )?;
            t.set_metatable(Some(kit.rows_meta.clone()))?;
            t.into_lua_multi(lua)
        }
    }
}

/// The statement argument `n`: a string (luaL_checktype: numbers refused, as in mod_lua).
fn sql_arg(lua: &Lua, a: &Args<'_>, n: usize) -> mlua::Result<CString> {
    c_arg(lua, "SQL", a.strict_string(n)?)
}

/// mod_lua's ap_lua_check_request_rec(L, 2) in db:escape, db:select and db:prepare: their
/// second argument must be the request, checked before the statement.
fn check_request(lua: &Lua, a: &Args<'_>) -> mlua::Result<()> {
    request_arg(lua, a.fname, 2, (a.len() >= 2).then(|| a.get(2))).map(|_| ())
}

fn stmt_value(lua: &Lua, kit: &Kit, db: &Bound, stmt: Statement) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(
        0,
        lua.create_userdata(StmtHandle {
            db: db.clone(),
            stmt,
        })?,
    )?;
    for (name, f) in &kit.stmt {
        t.raw_set(*name, f.clone())?;
    }
    Ok(Value::Table(t))
}

fn kit(lua: &Lua) -> mlua::Result<std::rc::Rc<Kit>> {
    if let Some(k) = lua.app_data_ref::<std::rc::Rc<Kit>>() {
        return Ok(k.clone());
    }
    let rows_meta = lua.create_table()?;
    let call = api_fn(lua, |lua, args: MultiValue| {
        let u = handle::<RowsHandle>(lua, "resultset", &args)?;
        let a = Args::new(lua, "resultset", args);
        let n = a.opt_integer(2, 0)?;
        let named = a.truthy(3);
        let h = u.borrow::<RowsHandle>()?;
        // Rows of a connection whose call has ended are gone.
        let usable = h.db.usable().is_some();
        let row = |n: i32| if usable { h.rows.row(n) } else { None };
        let to_table = |row: crate::dbd::Row| -> mlua::Result<Table> {
            let t = lua.create_table()?;
            for (col, name, v) in row {
                if named {
                    t.raw_set(name, lua_bytes(lua, v)?)?;
                } else {
                    t.raw_set(col + 1, lua_bytes(lua, v)?)?;
                }
            }
            Ok(t)
        };
        if n == 0 {
            let all = lua.create_table()?;
            while let Some(r) = row(-1) {
                all.raw_push(to_table(r)?)?;
            }
            return all.into_lua_multi(lua);
        }
        match row(n.clamp(-1, i32::MAX as i64) as i32) {
            Some(r) => to_table(r)?.into_lua_multi(lua),
            None => Ok(MultiValue::new()),
        }
    })?;
    rows_meta.raw_set("__call", raising(lua, call)?)?;
    // tostring(rows) reads "lua_apr.dbselect: 0x…", as mod_lua's.
    rows_meta.raw_set("__name", "lua_apr.dbselect")?;

    let stmt_fn = |name: &'static str, select: bool| -> mlua::Result<(&'static str, Function)> {
        let raw = api_fn(lua, move |lua, args: MultiValue| {
            let u = handle::<StmtHandle>(lua, name, &args)?;
            let h = u.borrow::<StmtHandle>()?;
            let mut values = Vec::new();
            for (i, v) in args.iter().enumerate().skip(1) {
                let bytes = match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Integer(n) => n.to_string().into_bytes(),
                    Value::Number(n) => n.to_string().into_bytes(),
                    other => {
                        return Err(arg_error(
                            lua,
                            i + 1,
                            name,
                            &format!(
                                "string expected, got {}",
                                crate::luac::value_type_name(lua, other)
                            ),
                        ))
                    }
                };
                values.push(c_arg(lua, "argument", bytes)?);
            }
            if let Some(want) = h.stmt.nargs {
                if values.len() < want {
                    let msg = format!(
                        "Error in executing prepared statement: Expected {want} arguments, got {}.",
                        values.len()
                    );
                    return (false, msg).into_lua_multi(lua);
                }
            }
            let conn = h.db.conn();
            if !conn.is_open() {
                return (false, CLOSED).into_lua_multi(lua);
            }
            if select {
                let kit = kit(lua)?;
                rows_value(lua, &kit, &h.db, conn.pselect(&h.stmt, &values))
            } else {
                match conn.pquery(&h.stmt, &values) {
                    None => (false, CLOSED).into_lua_multi(lua),
                    Some(Ok(n)) => n.into_lua_multi(lua),
                    Some(Err(e)) => (Value::Nil, e).into_lua_multi(lua),
                }
            }
        })?;
        Ok((name, raising(lua, raw)?))
    };
    let stmt = vec![stmt_fn("select", true)?, stmt_fn("query", false)?];

    let db = vec![
        db_fn(lua, "close", |_, _, c, _| {
            c.close();
            // apr_dbd_close's status as a float, as mod_lua pushes it.
            Ok(0.0)
        })?,
        db_fn(lua, "active", |_, _, c, _| Ok(c.active()))?,
        db_fn(lua, "query", |lua, _, c, a| {
            let sql = sql_arg(lua, a, 3)?;
            // Floats, as mod_lua pushes them (prepared statements' counts are integers).
            match c.query(&sql) {
                None => (-1.0).into_lua_multi(lua),
                Some(Ok(n)) => (n as f64).into_lua_multi(lua),
                Some(Err(e)) => (Value::Nil, e).into_lua_multi(lua),
            }
        })?,
        db_fn(lua, "select", |lua, db, c, a| {
            check_request(lua, a)?;
            let sql = sql_arg(lua, a, 3)?;
            let kit = kit(lua)?;
            rows_value(lua, &kit, db, c.select(&sql))
        })?,
        db_fn(lua, "escape", |lua, _, c, a| {
            check_request(lua, a)?;
            let s = c_arg(lua, "string", a.strict_string(3)?)?;
            match c.escape(&s).flatten() {
                Some(e) => lua_bytes(lua, e),
                None => Ok(Value::Nil),
            }
        })?,
        db_fn(lua, "prepare", |lua, db, c, a| {
            check_request(lua, a)?;
            let sql = sql_arg(lua, a, 3)?;
            match c.prepare(&sql) {
                None => (false, CLOSED).into_lua_multi(lua),
                Some(Err(e)) => (Value::Nil, e).into_lua_multi(lua),
                Some(Ok(st)) => {
                    let kit = kit(lua)?;
                    stmt_value(lua, &kit, db, st)?.into_lua_multi(lua)
                }
            }
        })?,
        db_fn(lua, "prepared", |lua, db, c, a| {
            let tag = c_arg(lua, "tag", a.string(3)?)?;
            match c.prepared(&tag) {
                None => (false, CLOSED).into_lua_multi(lua),
                Some(Some(st)) => {
                    let kit = kit(lua)?;
                    stmt_value(lua, &kit, db, st)?.into_lua_multi(lua)
                }
                Some(None) => {
                    let msg = format!(
                        "Could not find any prepared statement called {}!",
                        tag.to_string_lossy()
                    );
                    (Value::Nil, msg).into_lua_multi(lua)
                }
            }
        })?,
    ];
    let k = std::rc::Rc::new(Kit {
        db,
        stmt,
        rows_meta,
    });
    lua.set_app_data(k.clone());
    Ok(k)
}

/// Adds `r:dbacquire` to the request methods.
pub(super) fn install(m: &Methods) -> mlua::Result<()> {
    method_with_handle(m, "dbacquire", |lua, call, r, a| {
        let kind = a.opt_string(2)?.unwrap_or_else(|| b"mod_dbd".to_vec());
        let conn = if kind == b"mod_dbd" {
            Conn::from_mod_dbd(r).map_err(|e| (e, None))
        } else {
            // As mod_lua: the parameters are checked once the driver is loaded.
            match Conn::driver(r, &c_arg(lua, "driver", kind)?) {
                Ok(driver) => Conn::open(driver, &c_arg(lua, "params", a.strict_string(3)?)?),
                Err(e) => Err(e),
            }
        };
        match conn {
            Ok(c) => {
                let kit = kit(lua)?;
                let t = lua.create_table()?;
                let bound = Bound {
                    conn: c,
                    call: *call,
                };
                t.raw_set(0, lua.create_userdata(DbHandle(bound))?)?;
                for (name, f) in &kit.db {
                    t.raw_set(*name, f.clone())?;
                }
                t.into_lua_multi(lua)
            }
            Err((msg, None)) => (Value::Nil, msg).into_lua_multi(lua),
            Err((msg, Some(rc))) => (Value::Nil, msg, rc).into_lua_multi(lua),
        }
    })
}
