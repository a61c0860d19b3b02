//! Argument checking for functions scripts call, with the Lua auxiliary library's wording
//! (`bad argument #1 to 'puts' (string expected, got nil)`), as mod_lua's luaL_check* give.
#![forbid(unsafe_code)]

use mlua::{Lua, MultiValue, Value};

/// Stack level of the script code that called an API function: the Rust function runs at
/// level 0, the C wrapper that raises its failures (`luac::raising`) at level 1.
const SCRIPT_LEVEL: usize = 2;

/// `file:line: ` of the script code that called the API function (luaL_where in mod_lua).
pub fn caller_where(lua: &Lua) -> String {
    lua.inspect_stack(SCRIPT_LEVEL, |d| {
        let line = d.current_line();
        let src = d.source().short_src.map(|s| s.into_owned());
        match (src, line) {
            (Some(s), Some(l)) => format!("{s}:{l}: "),
            _ => String::new(),
        }
    })
    .unwrap_or_default()
}

/// luaL_argerror: numbers arguments as the caller sees them (a `:` call hides `self`) and
/// names the function as the call site does (`fname` where it gives no name, as in
/// `pcall(f)`).
pub fn arg_error(lua: &Lua, n: usize, fname: &str, msg: &str) -> mlua::Error {
    let (method, called) = lua
        .inspect_stack(SCRIPT_LEVEL - 1, |d| {
            let names = d.names();
            (
                names.name_what == Some("method"),
                names.name.map(|n| n.into_owned()),
            )
        })
        .unwrap_or((false, None));
    let fname = called.as_deref().unwrap_or(fname);
    let text = if method && n == 1 {
        format!("calling '{fname}' on bad self ({msg})")
    } else {
        let n = if method { n - 1 } else { n };
        format!("bad argument #{n} to '{fname}' ({msg})")
    };
    mlua::Error::RuntimeError(format!("{}{text}", caller_where(lua)))
}

/// Positional access to a call's arguments, 1-based as in Lua.
pub struct Args<'a> {
    pub lua: &'a Lua,
    pub fname: &'static str,
    vals: MultiValue,
}

impl<'a> Args<'a> {
    pub fn new(lua: &'a Lua, fname: &'static str, vals: MultiValue) -> Self {
        Args { lua, fname, vals }
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    pub fn get(&self, n: usize) -> &Value {
        self.vals.get(n - 1).unwrap_or(&Value::Nil)
    }

    /// luaL_checklstring: a string, or a number converted to one.
    pub fn string(&self, n: usize) -> mlua::Result<Vec<u8>> {
        match self.get(n) {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Integer(i) => Ok(i.to_string().into_bytes()),
            Value::Number(f) => Ok(crate::lua_api::number_to_string(*f).into_bytes()),
            v => Err(self.missing_or(n, "string", v)),
        }
    }

    /// luaL_checktype(n, LUA_TSTRING) then the bytes: numbers are refused.
    pub fn strict_string(&self, n: usize) -> mlua::Result<Vec<u8>> {
        match self.get(n) {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            v => Err(self.missing_or(n, "string", v)),
        }
    }

    /// luaL_optinteger.
    pub fn opt_integer(&self, n: usize, default: i64) -> mlua::Result<i64> {
        match self.get(n) {
            Value::Nil => Ok(default),
            _ => self.integer(n),
        }
    }

    /// lua_toboolean.
    pub fn truthy(&self, n: usize) -> bool {
        !matches!(self.get(n), Value::Nil | Value::Boolean(false))
    }

    /// luaL_optlstring.
    pub fn opt_string(&self, n: usize) -> mlua::Result<Option<Vec<u8>>> {
        match self.get(n) {
            Value::Nil => Ok(None),
            _ => self.string(n).map(Some),
        }
    }

    /// luaL_checktype(n, LUA_TNUMBER) (strings refused), then lua_tointeger: 0 for a float
    /// without an integer value, as mod_lua's functions read it.
    pub fn strict_integer(&self, n: usize) -> mlua::Result<i64> {
        match self.get(n) {
            Value::Integer(i) => Ok(*i),
            Value::Number(f) if f.fract() == 0.0 && f.is_finite() => Ok(*f as i64),
            Value::Number(_) => Ok(0),
            v => Err(self.missing_or(n, "number", v)),
        }
    }

    /// luaL_checkinteger.
    pub fn integer(&self, n: usize) -> mlua::Result<i64> {
        match self.get(n) {
            Value::Integer(i) => Ok(*i),
            Value::Number(f) if f.fract() == 0.0 && f.is_finite() => Ok(*f as i64),
            Value::Number(_) => Err(arg_error(
                self.lua,
                n,
                self.fname,
                "number has no integer representation",
            )),
            Value::String(s) => match crate::lua_api::parse_number(&s.as_bytes()) {
                Some(v) => Ok(v),
                None => Err(self.missing_or(n, "number", self.get(n))),
            },
            v => Err(self.missing_or(n, "number", v)),
        }
    }

    fn missing_or(&self, n: usize, expected: &str, v: &Value) -> mlua::Error {
        if n > self.vals.len() {
            arg_error(
                self.lua,
                n,
                self.fname,
                &format!("{expected} expected, got no value"),
            )
        } else {
            arg_error(
                self.lua,
                n,
                self.fname,
                &format!(
                    "{expected} expected, got {}",
                    crate::luac::value_type_name(self.lua, v)
                ),
            )
        }
    }
}
