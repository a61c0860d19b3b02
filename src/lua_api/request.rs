//! The request object `r` (mod_lua's `Apache2.Request`) and its header/notes tables
//! (`Apr.Table`). Fields are read live from the request on every access; methods check their
//! arguments with Lua's wording. Safe code over `httpd::LiveRequest`.
#![forbid(unsafe_code)]

use super::args::{arg_error, caller_position, Args};
use crate::apr::{has_nul, Table as AprTable};
use crate::httpd::{Level, LiveRequest, Request};
use mlua::{Lua, MetaMethod, MultiValue, UserData, UserDataMethods, Value};
use std::ffi::{CStr, CString};

/// `r` as a Lua userdata.
pub struct RequestHandle {
    live: LiveRequest,
}

impl RequestHandle {
    pub fn new(live: LiveRequest) -> Self {
        RequestHandle { live }
    }
}

fn gone() -> mlua::Error {
    mlua::Error::RuntimeError(
        "request object used after its request ended (do not keep 'r' in globals or upvalues)"
            .into(),
    )
}

fn req(live: &LiveRequest) -> mlua::Result<Request<'_>> {
    live.get().ok_or_else(gone)
}

fn cstr_value(lua: &Lua, s: Option<&CStr>) -> mlua::Result<Value> {
    match s {
        Some(s) => lua.create_string(s.to_bytes()).map(Value::String),
        None => Ok(Value::Nil),
    }
}

/// Which of the request's tables a [`TableHandle`] refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TableKind {
    HeadersIn,
    HeadersOut,
    ErrHeadersOut,
    Notes,
    SubprocessEnv,
}

impl TableKind {
    fn name(self) -> &'static str {
        match self {
            TableKind::HeadersIn => "headers_in",
            TableKind::HeadersOut => "headers_out",
            TableKind::ErrHeadersOut => "err_headers_out",
            TableKind::Notes => "notes",
            TableKind::SubprocessEnv => "subprocess_env",
        }
    }

    fn of<'a>(self, r: Request<'a>) -> AprTable<'a> {
        match self {
            TableKind::HeadersIn => r.headers_in(),
            TableKind::HeadersOut => r.headers_out(),
            TableKind::ErrHeadersOut => r.err_headers_out(),
            TableKind::Notes => r.notes(),
            TableKind::SubprocessEnv => r.subprocess_env(),
        }
    }
}

/// One of the request's APR tables as a Lua userdata (`r.headers_out` etc.).
pub struct TableHandle {
    live: LiveRequest,
    kind: TableKind,
}

/// Keys and values that would let a script split a response or truncate a value are refused
/// (mod_lua turns `\n` into a space and lets `\r` through).
fn checked(lua: &Lua, what: &str, kind: TableKind, bytes: Vec<u8>) -> mlua::Result<CString> {
    if bytes.iter().any(|&b| b == b'\r' || b == b'\n') || has_nul(&bytes) {
        let shown = String::from_utf8_lossy(&bytes).escape_default().to_string();
        return Err(mlua::Error::RuntimeError(format!(
            "{}{what} '{shown}' for table '{}' contains CR, LF or NUL: refused",
            super::args::caller_where(lua),
            kind.name()
        )));
    }
    Ok(CString::new(bytes).expect("NUL checked above"))
}

impl UserData for TableHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: Value| {
            let r = req(&this.live)?;
            let key = Args::new(lua, "get", MultiValue::from_iter([key])).string(1)?;
            if has_nul(&key) {
                return Ok(Value::Nil);
            }
            let key = CString::new(key).expect("NUL checked");
            cstr_value(lua, this.kind.of(r).get(&key))
        });
        methods.add_meta_method(
            MetaMethod::NewIndex,
            |lua, this, (key, value): (Value, Value)| {
                let r = req(&this.live)?;
                let args = Args::new(lua, "set", MultiValue::from_iter([key, value]));
                let key = args.string(1)?;
                let name = String::from_utf8_lossy(&key).into_owned();
                let key = checked(lua, "key", this.kind, key)?;
                let table = this.kind.of(r);
                match args.opt_string(2)? {
                    None => table.unset(&key),
                    Some(v) => {
                        let v = checked(lua, &format!("value of '{name}'"), this.kind, v)?;
                        table.set(&key, &v);
                    }
                }
                Ok(())
            },
        );
        // Beyond mod_lua: `pairs(r.headers_in)` iterates a snapshot of every entry in order
        // (Lua 5.2+; LuaJIT has no __pairs).
        #[cfg(not(feature = "luajit"))]
        methods.add_meta_method(MetaMethod::Pairs, |lua, this, ()| {
            let r = req(&this.live)?;
            let mut entries: Vec<(Vec<u8>, Vec<u8>)> = this
                .kind
                .of(r)
                .entries()
                .into_iter()
                .map(|(k, v)| (k.to_bytes().to_vec(), v.to_bytes().to_vec()))
                .collect();
            entries.reverse();
            let next = lua.create_function_mut(move |lua, _: MultiValue| match entries.pop() {
                Some((k, v)) => Ok((
                    Value::String(lua.create_string(k)?),
                    Value::String(lua.create_string(v)?),
                )),
                None => Ok((Value::Nil, Value::Nil)),
            })?;
            Ok((next, Value::Nil, Value::Nil))
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("Apr.Table({})", this.kind.name()))
        });
    }
}

/// Field names whose value is a request string (nil when unset).
fn string_field<'a>(r: Request<'a>, key: &[u8]) -> Option<Option<&'a CStr>> {
    Some(match key {
        b"method" => r.method(),
        b"uri" => r.uri(),
        b"args" => r.args(),
        b"filename" => r.filename(),
        b"hostname" => r.hostname(),
        b"handler" => r.handler(),
        b"content_type" => r.content_type(),
        b"content_encoding" => r.content_encoding(),
        b"protocol" => r.protocol(),
        b"the_request" => r.the_request(),
        b"unparsed_uri" => r.unparsed_uri(),
        b"path_info" => r.path_info(),
        b"user" => r.user(),
        b"ap_auth_type" => r.ap_auth_type(),
        b"canonical_filename" => r.canonical_filename(),
        b"range" => r.range(),
        b"log_id" => r.log_id(),
        b"useragent_ip" => r.useragent_ip(),
        b"document_root" => r.document_root(),
        _ => return None,
    })
}

fn table_field(key: &[u8]) -> Option<TableKind> {
    Some(match key {
        b"headers_in" => TableKind::HeadersIn,
        b"headers_out" => TableKind::HeadersOut,
        b"err_headers_out" => TableKind::ErrHeadersOut,
        b"notes" => TableKind::Notes,
        b"subprocess_env" => TableKind::SubprocessEnv,
        _ => return None,
    })
}

fn index(lua: &Lua, this: &RequestHandle, key: &[u8]) -> mlua::Result<Value> {
    let r = req(&this.live)?;
    if let Some(s) = string_field(r, key) {
        return cstr_value(lua, s);
    }
    if let Some(kind) = table_field(key) {
        return lua
            .create_userdata(TableHandle {
                live: this.live.clone(),
                kind,
            })
            .map(Value::UserData);
    }
    Ok(match key {
        b"status" => Value::Integer(r.status() as i64),
        b"port" => Value::Integer(r.server_port() as i64),
        b"remaining" => Value::Integer(r.remaining()),
        b"server_name" => {
            return cstr_value(lua, Some(r.server_name().unwrap_or(c"localhost")));
        }
        b"assbackwards" => Value::Boolean(r.assbackwards()),
        b"is_initial_req" => Value::Boolean(r.is_initial_req()),
        b"header_only" => Value::Boolean(r.header_only()),
        b"proxyreq" => {
            let name = match r.proxyreq() {
                0 => "PROXYREQ_NONE",
                1 => "PROXYREQ_PROXY",
                2 => "PROXYREQ_REVERSE",
                3 => "PROXYREQ_RESPONSE",
                _ => return Ok(Value::Nil),
            };
            Value::String(lua.create_string(name)?)
        }
        _ => Value::Nil,
    })
}

fn newindex(lua: &Lua, this: &RequestHandle, key: &[u8], value: Value) -> mlua::Result<()> {
    let r = req(&this.live)?;
    let fname: &'static str = "newindex";
    let args = Args::new(
        lua,
        fname,
        MultiValue::from_iter([Value::Nil, Value::Nil, value]),
    );
    let no_nul = |v: Vec<u8>| -> mlua::Result<Vec<u8>> {
        if has_nul(&v) {
            Err(mlua::Error::RuntimeError(format!(
                "{}value for request field '{}' contains a NUL byte",
                super::args::caller_where(lua),
                String::from_utf8_lossy(key)
            )))
        } else {
            Ok(v)
        }
    };
    match key {
        b"status" => r.set_status(args.integer(3)? as i32),
        b"uri" => r.set_uri(&no_nul(args.string(3)?)?),
        b"args" => r.set_args(Some(&no_nul(args.string(3)?)?)),
        b"filename" => r.set_filename(&no_nul(args.string(3)?)?),
        b"handler" => r.set_handler(Some(&no_nul(args.string(3)?)?)),
        b"user" => r.set_user(Some(&no_nul(args.string(3)?)?)),
        b"content_type" => r.set_content_type(&no_nul(args.string(3)?)?),
        b"proxyreq" => r.set_proxyreq(args.integer(3)? as i32),
        _ => {
            return Err(mlua::Error::RuntimeError(format!(
                "Property [{}] may not be set on a request_rec",
                String::from_utf8_lossy(key)
            )))
        }
    }
    Ok(())
}

/// mod_lua's default `max` for r:parsebody().
const DEFAULT_PARSEBODY_MAX: i64 = 8192;

/// Builds parseargs/parsebody's two tables: first value per key, and every value in order.
fn form_tables(
    lua: &Lua,
    pairs: &[(Vec<u8>, Vec<u8>)],
) -> mlua::Result<(mlua::Table, mlua::Table)> {
    let simple = lua.create_table()?;
    let multi = lua.create_table()?;
    for (k, v) in pairs {
        let key = lua.create_string(k)?;
        let val = lua.create_string(v)?;
        let list = match multi.raw_get::<Option<mlua::Table>>(&key)? {
            Some(t) => t,
            None => {
                simple.raw_set(&key, &val)?;
                let t = lua.create_table()?;
                multi.raw_set(&key, &t)?;
                t
            }
        };
        list.raw_push(val)?;
    }
    Ok((simple, multi))
}

/// `self` of a method call, with luaL_checkudata's message when it is not a request.
fn this(
    lua: &Lua,
    fname: &'static str,
    args: &MultiValue,
) -> mlua::Result<mlua::UserDataRef<RequestHandle>> {
    match args.front() {
        Some(Value::UserData(ud)) if ud.is::<RequestHandle>() => ud.borrow::<RequestHandle>(),
        other => {
            let got = other.map(|v| v.type_name()).unwrap_or("no value");
            Err(arg_error(
                lua,
                1,
                fname,
                &format!("Apache2.Request expected, got {got}"),
            ))
        }
    }
}

fn log_method(methods: &mut impl UserDataMethods<RequestHandle>, name: &'static str, level: Level) {
    methods.add_function(name, move |lua, args: MultiValue| {
        let h = this(lua, name, &args)?;
        let r = req(&h.live)?;
        let msg = Args::new(lua, name, args.clone()).string(2)?;
        let (file, line) = caller_position(lua);
        let file = CString::new(file.replace('\0', " ")).unwrap_or_default();
        r.log_at(level, &file, line, &String::from_utf8_lossy(&msg));
        Ok(())
    });
}

impl UserData for RequestHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: Value| match key {
            Value::String(s) => index(lua, this, &s.as_bytes()),
            _ => Ok(Value::Nil),
        });
        methods.add_meta_method(
            MetaMethod::NewIndex,
            |lua, this, (key, value): (Value, Value)| {
                let key = match &key {
                    Value::String(s) => s.as_bytes().to_vec(),
                    other => other.to_string()?.into_bytes(),
                };
                newindex(lua, this, &key, value)
            },
        );
        methods.add_meta_method(MetaMethod::ToString, |_, _, ()| Ok("Apache2.Request"));

        // M01: r:puts(s, ...) — every argument must be a string or a number.
        methods.add_function("puts", |lua, args: MultiValue| {
            let h = this(lua, "puts", &args)?;
            let r = req(&h.live)?;
            let a = Args::new(lua, "puts", args.clone());
            for n in 2..=a.len().max(2) {
                let s = a.string(n)?;
                r.write(&s);
            }
            Ok(())
        });
        // M02: r:write(s) → bytes written (binary-safe).
        methods.add_function("write", |lua, args: MultiValue| {
            let h = this(lua, "write", &args)?;
            let r = req(&h.live)?;
            let s = Args::new(lua, "write", args.clone()).string(2)?;
            Ok(r.write(&s))
        });
        // M03: r:flush() → true on success.
        methods.add_function("flush", |lua, args: MultiValue| {
            let h = this(lua, "flush", &args)?;
            Ok(req(&h.live)?.flush())
        });
        // M04: r:sendfile(path) → bytes sent, or false.
        methods.add_function("sendfile", |lua, args: MultiValue| {
            let h = this(lua, "sendfile", &args)?;
            let r = req(&h.live)?;
            let path = match args.get(1) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                other => {
                    let got = other.map(|v| v.type_name()).unwrap_or("no value");
                    return Err(arg_error(
                        lua,
                        2,
                        "sendfile",
                        &format!("string expected, got {got}"),
                    ));
                }
            };
            if has_nul(&path) {
                return Ok(Value::Boolean(false));
            }
            let path = CString::new(path).expect("NUL checked");
            Ok(match r.sendfile(&path) {
                Some(n) => Value::Integer(n),
                None => Value::Boolean(false),
            })
        });

        // M15: r:parseargs() → simple (first value of each key), multi (every value, in order).
        methods.add_function("parseargs", |lua, args: MultiValue| {
            let h = this(lua, "parseargs", &args)?;
            let r = req(&h.live)?;
            let pairs = super::form::parse_args(r.args().map(|a| a.to_bytes()).unwrap_or(b""));
            form_tables(lua, &pairs)
        });
        // M16: r:parsebody([max=8192]) → simple, multi (urlencoded bodies). On a failure both
        // tables are empty, as in mod_lua, and a third value says why.
        methods.add_function("parsebody", |lua, args: MultiValue| {
            let h = this(lua, "parsebody", &args)?;
            let r = req(&h.live)?;
            let a = Args::new(lua, "parsebody", args.clone());
            let max = match a.get(2) {
                Value::Nil => DEFAULT_PARSEBODY_MAX,
                _ => a.integer(2)?,
            };
            let limit = if max <= 0 { r.limit_req_body() } else { max };
            let limit = if limit <= 0 {
                usize::MAX
            } else {
                limit as usize
            };
            let ctype = r
                .headers_in()
                .get(c"Content-Type")
                .map(|c| c.to_bytes().to_ascii_lowercase())
                .unwrap_or_default();
            let (simple, multi) = form_tables(lua, &[])?;
            if !ctype.starts_with(b"application/x-www-form-urlencoded") {
                return Ok((simple, multi, Value::Nil));
            }
            match r.read_body(limit) {
                Ok(body) => {
                    let (simple, multi) = form_tables(lua, &super::form::parse_urlencoded(&body))?;
                    Ok((simple, multi, Value::Nil))
                }
                Err(e) => {
                    let why = match e {
                        crate::httpd::BodyError::TooLarge => {
                            format!("request body is larger than {limit} bytes")
                        }
                        crate::httpd::BodyError::Status(s) => {
                            format!("request body refused (HTTP {s})")
                        }
                        crate::httpd::BodyError::Read => {
                            "request body could not be read".to_string()
                        }
                    };
                    Ok((simple, multi, Value::String(lua.create_string(why)?)))
                }
            }
        });

        for (name, level) in [
            ("emerg", Level::Emerg),
            ("alert", Level::Alert),
            ("crit", Level::Crit),
            ("err", Level::Err),
            ("warn", Level::Warn),
            ("notice", Level::Notice),
            ("info", Level::Info),
            ("debug", Level::Debug),
            ("trace1", Level::Trace1),
            ("trace2", Level::Trace2),
            ("trace3", Level::Trace3),
            ("trace4", Level::Trace4),
            ("trace5", Level::Trace5),
            ("trace6", Level::Trace6),
            ("trace7", Level::Trace7),
            ("trace8", Level::Trace8),
        ] {
            log_method(methods, name, level);
        }
    }
}
