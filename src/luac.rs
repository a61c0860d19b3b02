//! The Lua C API, for what runs on every request: `r`'s field access and output methods, its
//! header tables and the form parsers are plain Lua C functions over a [`Stack`], and `r` and
//! its tables are plain userdata. mlua's callbacks cost about 4,000 instructions a call
//! (argument marshalling into references, error wrapping); these cost a few hundred. All raw
//! Lua stack work of the crate is in this module; what it offers is safe.
//!
//! Errors: a [`RawFn`] returns `Err(message)`; the C entry point raises it with `lua_error` only
//! after every Rust value of the call is gone, so the longjmp crosses no frame with a
//! destructor. Panics are caught and raised as Lua errors. Pushing cannot raise: mlua's
//! allocator aborts on exhaustion instead of returning NULL, so Lua raises no memory errors
//! here (a future memory cap must keep that so on this path, or run these functions protected).
#![allow(unsafe_code)]

use crate::httpd::{LiveRequest, Liveness};
use crate::lua_api::request::{RequestHandle, TableHandle};
use mlua::ffi::{self, lua_State};
use mlua::{AnyUserData, Function, IntoLua, LightUserData, Lua, Table, Value};
use std::ffi::{c_int, c_void, CStr};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A function scripts call: reads its arguments from the stack, pushes its results and returns
/// how many, or returns the error message to raise.
pub type RawFn = fn(&Stack<'_>) -> Returned;

/// How many results a [`RawFn`] pushed, or the error to raise. The count is a full machine word
/// on purpose: LuaJIT's interpreter reads a C function's result from all of RAX, although the
/// ABI defines only EAX for an `int`; a 32-bit count loaded together with its padding made
/// LuaJIT see garbage (found under valgrind: "uninitialised value ... stack allocation").
pub type Returned = Result<usize, String>;

/// `Ok(DELEGATE)`: instead of returning results, call the function's upvalue 2 with the
/// arguments and return what it returns (a fast path falling back to the function it
/// replaces; see [`delegating`]). Whatever the RawFn pushed is dropped first.
pub const DELEGATE: usize = usize::MAX;

/// `Ok(DELEGATE_AS_IS)`: as [`DELEGATE`], but the original gets the stack as the RawFn left it
/// (the arguments, adjusted, and what it pushed after them).
pub const DELEGATE_AS_IS: usize = usize::MAX - 1;

/// `Ok(CALL_FIRST)`: the RawFn left a function and its arguments on the stack; call it and
/// return all it returns (its errors propagate as they are).
pub const CALL_FIRST: usize = usize::MAX - 2;

/// A Lua number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

/// A table's elements, read by [`Stack::arg_push_elements`].
pub enum Elements<'l> {
    Strs(Vec<LuaStr<'l>>),
    Numbers(Vec<Number>),
    /// Mixed, or of another kind.
    Other,
}

/// The bytes of a Lua string, which Lua follows with a NUL, compared as Lua's `<` compares
/// strings (`l_strcmp`: `strcoll` in the current locale, segment by segment around embedded
/// NULs).
#[derive(Clone, Copy)]
pub struct LuaStr<'l>(&'l [u8]);

/// Whether `strcoll` in the calling thread's locale orders strings as `strcmp` does (the "C"
/// or "POSIX" collation, which httpd runs under unless a script calls os.setlocale): then
/// Lua's string order is plain byte order, embedded NULs included.
pub fn collation_is_bytewise() -> bool {
    // glibc's value of LC_GLOBAL_LOCALE.
    const GLOBAL: libc::locale_t = -1isize as libc::locale_t;
    // SAFETY: uselocale(0) only reads the thread's locale; setlocale with a NULL locale only
    // returns the current name (a concurrent os.setlocale in another thread races with it
    // exactly as it does with Lua's own os.setlocale queries).
    unsafe {
        if libc::uselocale(std::ptr::null_mut()) != GLOBAL {
            return false;
        }
        let name = libc::setlocale(libc::LC_COLLATE, std::ptr::null());
        !name.is_null() && matches!(CStr::from_ptr(name).to_bytes(), b"C" | b"POSIX")
    }
}

impl<'l> LuaStr<'l> {
    pub fn bytes(&self) -> &'l [u8] {
        self.0
    }

    pub fn coll_cmp(&self, other: &LuaStr<'_>) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let (mut a, mut b) = (self.0, other.0);
        loop {
            // SAFETY: `a` and `b` are tails of Lua strings starting after a NUL or at the
            // start, so a NUL ends each segment within the string's allocation (Lua keeps
            // one after the last byte).
            let c = unsafe { libc::strcoll(a.as_ptr().cast(), b.as_ptr().cast()) };
            if c != 0 {
                return c.cmp(&0);
            }
            let za = a.iter().position(|&x| x == 0).unwrap_or(a.len());
            let zb = b.iter().position(|&x| x == 0).unwrap_or(b.len());
            if zb == b.len() {
                return if za == a.len() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
            }
            if za == a.len() {
                return Ordering::Less;
            }
            a = &a[za + 1..];
            b = &b[zb + 1..];
        }
    }
}

/// A string or number argument as it is, or the kind of anything else.
pub enum Scalar<'l> {
    Str(&'l [u8]),
    Num(Number),
    Other(Kind),
}

/// Which value of a repeated key the simple table of [`Stack::push_form_tables`] holds (the
/// second table holds them all, in order).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Repeated {
    KeepFirst,
    KeepLast,
}

/// Lua's value types, as `lua_type` tells them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    None,
    Nil,
    Boolean,
    LightUserData,
    Number,
    String,
    Table,
    Function,
    UserData,
    Thread,
}

impl Kind {
    /// The name Lua's auxiliary library prints.
    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "no value",
            Kind::Nil => "nil",
            Kind::Boolean => "boolean",
            Kind::LightUserData | Kind::UserData => "userdata",
            Kind::Number => "number",
            Kind::String => "string",
            Kind::Table => "table",
            Kind::Function => "function",
            Kind::Thread => "thread",
        }
    }

    fn of(t: c_int) -> Kind {
        match t {
            ffi::LUA_TNIL => Kind::Nil,
            ffi::LUA_TBOOLEAN => Kind::Boolean,
            ffi::LUA_TLIGHTUSERDATA => Kind::LightUserData,
            ffi::LUA_TNUMBER => Kind::Number,
            ffi::LUA_TSTRING => Kind::String,
            ffi::LUA_TTABLE => Kind::Table,
            ffi::LUA_TFUNCTION => Kind::Function,
            ffi::LUA_TUSERDATA => Kind::UserData,
            ffi::LUA_TTHREAD => Kind::Thread,
            _ => Kind::None,
        }
    }
}

/// The stack of one call of a [`RawFn`]. Arguments are slots `1..=len()`; they are never
/// popped or overwritten while the call runs, so strings and userdata borrowed from them live
/// as long as the `Stack`. Values pushed above them may be popped.
pub struct Stack<'l> {
    l: *mut lua_State,
    args: c_int,
    _call: PhantomData<&'l mut lua_State>,
}

impl<'l> Stack<'l> {
    /// How many arguments the function was called with.
    pub fn len(&self) -> c_int {
        self.args
    }

    pub fn is_empty(&self) -> bool {
        self.args == 0
    }

    pub fn kind(&self, i: c_int) -> Kind {
        if i < 1 || i > self.args {
            return Kind::None;
        }
        // SAFETY: an argument's slot (no lua_gettop needed: arguments stay where they are).
        Kind::of(unsafe { ffi::lua_type(self.l, i) })
    }

    /// The bytes of argument `i` if it is a string (numbers are not converted).
    pub fn str(&self, i: c_int) -> Option<&'l [u8]> {
        (self.kind(i) == Kind::String).then(|| self.tostring(i))
    }

    /// lua_tolstring on an argument known to be a string or number: numbers are converted in
    /// place, as luaL_checklstring does.
    fn tostring(&self, i: c_int) -> &'l [u8] {
        let mut len = 0usize;
        // SAFETY: slot `i` is an argument holding a string or number, so lua_tolstring returns
        // a pointer to `len` bytes owned by the string in that slot, which stays there (and
        // reachable) for the whole call ('l).
        unsafe {
            let p = ffi::lua_tolstring(self.l, i, &mut len);
            std::slice::from_raw_parts(p.cast::<u8>(), len)
        }
    }

    /// Argument `i` (a string, or a number converted to one) as a C string: Lua keeps a NUL
    /// after every string's bytes. None when the bytes hold a NUL, or for other types.
    pub fn cstr(&self, i: c_int) -> Option<&'l CStr> {
        if !matches!(self.kind(i), Kind::String | Kind::Number) {
            return None;
        }
        let b = self.tostring(i);
        // SAFETY: Lua strings are followed by a NUL byte, within the same allocation.
        let with_nul = unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len() + 1) };
        CStr::from_bytes_with_nul(with_nul).ok()
    }

    /// luaL_checklstring: a string, or a number converted to one.
    pub fn string_arg(&self, i: c_int, fname: &str) -> Result<&'l [u8], String> {
        match self.kind(i) {
            Kind::String | Kind::Number => Ok(self.tostring(i)),
            _ => Err(self.type_error(i, fname, "string")),
        }
    }

    /// luaL_checktype(i, LUA_TSTRING), then the bytes: numbers are refused.
    pub fn strict_string_arg(&self, i: c_int, fname: &str) -> Result<&'l [u8], String> {
        match self.kind(i) {
            Kind::String => Ok(self.tostring(i)),
            _ => Err(self.type_error(i, fname, "string")),
        }
    }

    /// The C string of argument `i` after luaL_checklstring (a number is converted), or the
    /// error a NUL in it gives (`what` names the value in that message).
    pub fn cstr_arg(&self, i: c_int, fname: &str, what: &str) -> Result<&'l CStr, String> {
        self.string_arg(i, fname)?;
        self.nul_free(i, what)
    }

    /// [`Stack::cstr_arg`] after luaL_checktype(i, LUA_TSTRING): numbers are refused.
    pub fn strict_cstr_arg(&self, i: c_int, fname: &str, what: &str) -> Result<&'l CStr, String> {
        self.strict_string_arg(i, fname)?;
        self.nul_free(i, what)
    }

    /// Argument `i`, a string, as a C string for httpd, or the error a NUL in it gives.
    fn nul_free(&self, i: c_int, what: &str) -> Result<&'l CStr, String> {
        self.cstr(i)
            .ok_or_else(|| format!("{}{what} contains a NUL byte", self.caller_where()))
    }

    /// luaL_checktype(i, LUA_TNUMBER) (strings refused), then lua_tointeger: 0 for a float
    /// without an integer value, as mod_lua's functions read it.
    pub fn strict_integer_arg(&self, i: c_int, fname: &str) -> Result<i64, String> {
        match self.kind(i) {
            Kind::Number => Ok(self.integer(i).unwrap_or(0)),
            _ => Err(self.type_error(i, fname, "number")),
        }
    }

    /// lua_isboolean(i) && lua_toboolean(i): the flags mod_lua reads only from booleans.
    pub fn boolean_flag(&self, i: c_int) -> bool {
        self.kind(i) == Kind::Boolean && self.truthy(i)
    }

    /// luaL_typeerror's message for argument `i`, which is not the `expected` type.
    pub fn type_error(&self, i: c_int, fname: &str, expected: &str) -> String {
        let detail = format!("{expected} expected, got {}", self.type_name(i));
        self.arg_error(i, fname, &detail)
    }

    /// Replaces the sequence on top of the stack (alternating keys and values, as
    /// [`Stack::push_sequence`] makes it from 1) with a function that returns its next key and
    /// value on each call, then nil: a `__pairs` iterator over a snapshot.
    pub fn push_pair_iterator(&self) -> Result<(), String> {
        self.reserve(2)?;
        // SAFETY: two free slots reserved above the sequence; the closure takes the three
        // values (function, sequence, position) as its upvalues, as `trampoline` expects.
        unsafe {
            ffi::lua_pushlightuserdata(self.l, next_pair as RawFn as *mut c_void);
            ffi::lua_rotate(self.l, -2, 1);
            ffi::lua_pushinteger(self.l, 0);
            ffi::lua_pushcclosure(self.l, trampoline, 3);
        }
        Ok(())
    }

    /// What `tostring` shows of a value with a metatable `__name` and no `__tostring` in Lua
    /// 5.3+ (luaL_tolstring's "%s: %p"): `name` and argument `i`'s address.
    pub fn default_tostring(&self, i: c_int, name: &str) -> String {
        // SAFETY: lua_topointer accepts any index; the address is only printed.
        let p = unsafe { ffi::lua_topointer(self.l, i) };
        format!("{name}: {p:p}")
    }

    /// The name luaL_typeerror gives the value at `i` (an argument, or a value this call
    /// pushed; negative indices count from the top): in Lua 5.3+ its metatable's `__name`
    /// when that is a string (`Apache2.Request`, `Apr.Table`), "light userdata" for one, else
    /// the type's name.
    pub fn type_name(&self, i: c_int) -> String {
        let i = if i < 0 { self.top() + 1 + i } else { i };
        let kind = if i <= self.args {
            self.kind(i)
        } else {
            self.kind_on_stack(i)
        };
        if kind == Kind::None {
            return kind.name().into();
        }
        // SAFETY: `i` is a valid index of this call's stack.
        unsafe { typeerror_name(self.l, i) }
    }

    /// luaL_checkinteger.
    pub fn integer_arg(&self, i: c_int, fname: &str) -> Result<i64, String> {
        self.integer(i)
            .map_err(|detail| self.arg_error(i, fname, &detail))
    }

    /// Argument `i` as an integer as luaL_checkinteger converts it, or what luaL_checkinteger
    /// would say in parentheses.
    pub fn integer(&self, i: c_int) -> Result<i64, String> {
        let kind = self.kind(i);
        if matches!(kind, Kind::Number | Kind::String) {
            let mut ok = 0;
            // SAFETY: a valid argument index.
            let v = unsafe { ffi::lua_tointegerx(self.l, i, &mut ok) };
            if ok != 0 {
                return Ok(v);
            }
            // SAFETY: as above.
            if unsafe { ffi::lua_isnumber(self.l, i) } != 0 {
                return Err("number has no integer representation".into());
            }
        }
        Err(format!("number expected, got {}", self.type_name(i)))
    }

    /// Pushes `t[name]` for each of `names` (argument `t` must be a table; metamethods run, as
    /// `t.name` does in Lua) and returns the stack with those values as its last N arguments
    /// (everything below them stays where it was). An error raised on the way comes back as
    /// its message, with the stack as it was.
    pub fn fields<const N: usize>(
        &self,
        t: c_int,
        names: &'static [&'static CStr; N],
    ) -> Result<Stack<'l>, String> {
        // read_fields pushes the N values within the 20 slots Lua guarantees a C function.
        const { assert!(N <= 16) };
        self.reserve(N as c_int + 4)?;
        let top = self.top();
        // SAFETY: `read_fields` is called through lua_pcall with (table, names, N), so the
        // errors it may raise (from metamethods) stop at that pcall, and it leaves N values.
        unsafe {
            ffi::lua_pushcfunction(self.l, read_fields);
            ffi::lua_pushvalue(self.l, t);
            ffi::lua_pushlightuserdata(self.l, names.as_ptr().cast_mut().cast());
            ffi::lua_pushinteger(self.l, N as ffi::lua_Integer);
            if ffi::lua_pcall(self.l, 3, N as c_int, 0) != ffi::LUA_OK {
                let message = lossy_string_at(self.l, -1)
                    .unwrap_or_else(|| "error reading a table field".to_string());
                ffi::lua_settop(self.l, top);
                return Err(message);
            }
        }
        Ok(Stack {
            l: self.l,
            args: top + N as c_int,
            _call: PhantomData,
        })
    }

    /// luaL_optinteger.
    pub fn opt_integer_arg(&self, i: c_int, fname: &str, default: i64) -> Result<i64, String> {
        match self.kind(i) {
            Kind::None | Kind::Nil => Ok(default),
            _ => self.integer_arg(i, fname),
        }
    }

    /// lua_toboolean: false for nil, false and missing arguments.
    pub fn truthy(&self, i: c_int) -> bool {
        // SAFETY: lua_toboolean accepts any index of the running function's stack.
        i <= self.args && unsafe { ffi::lua_toboolean(self.l, i) } != 0
    }

    /// Argument `i` as the Rust value behind a userdata of type `T`.
    pub fn userdata<T: RawUserData>(&self, i: c_int) -> Option<&'l T> {
        if self.kind(i) != Kind::UserData {
            return None;
        }
        // SAFETY: slot `i` holds a full userdata that stays there for 'l; see `block_of`.
        unsafe { block_of::<T>(self.l, i) }
    }

    /// luaL_where(L, 1): `file:line: ` of the code that called this function.
    pub fn caller_where(&self) -> String {
        // SAFETY: level 1 of a running C function's stack.
        unsafe { where_at(self.l, 1) }
    }

    /// The chunk source (as Lua names it: `@/path/script.lua`) and the current line of the
    /// code that called this function, as mod_lua hands them to httpd's logger; `=?` and 0
    /// when there is no such frame.
    pub fn caller_source(&self) -> (&'l CStr, c_int) {
        // SAFETY: level 1 is the caller's frame, which (with its function's prototype and so
        // its source string) stays alive while this function runs ('l). lua_getinfo("S")
        // points `source` at that NUL-terminated string.
        unsafe {
            match debug_at(self.l, 1, c"Sl") {
                Some(ar) if !ar.source.is_null() => (CStr::from_ptr(ar.source), ar.currentline),
                _ => (c"=?", 0),
            }
        }
    }

    /// luaL_argerror's text: arguments numbered as the caller sees them (a `:` call hides
    /// `self`), the function named as the call site names it (`fname` when it has no name, as
    /// in `pcall(f)`), with the caller's position.
    pub fn arg_error(&self, n: c_int, fname: &str, msg: &str) -> String {
        // SAFETY: level 0 is this running function.
        let text = unsafe { arg_error_at(self.l, 0, n, fname, msg.as_bytes()) };
        String::from_utf8_lossy(&text).into_owned()
    }

    pub fn top(&self) -> c_int {
        // SAFETY: always valid in a C function.
        unsafe { ffi::lua_gettop(self.l) }
    }

    /// Makes room for `n` more values (a C function is guaranteed 20).
    pub fn reserve(&self, n: c_int) -> Result<(), String> {
        // SAFETY: lua_checkstack never raises.
        match unsafe { ffi::lua_checkstack(self.l, n) } {
            0 => Err("stack overflow".into()),
            _ => Ok(()),
        }
    }

    pub fn push_nil(&self) {
        // SAFETY: pushing within the stack space a C function has (see `reserve`).
        unsafe { ffi::lua_pushnil(self.l) }
    }

    pub fn push_bool(&self, b: bool) {
        // SAFETY: as push_nil.
        unsafe { ffi::lua_pushboolean(self.l, b as c_int) }
    }

    pub fn push_int(&self, i: i64) {
        // SAFETY: as push_nil.
        unsafe { ffi::lua_pushinteger(self.l, i as ffi::lua_Integer) }
    }

    pub fn push_number(&self, n: f64) {
        // SAFETY: as push_nil.
        unsafe { ffi::lua_pushnumber(self.l, n) }
    }

    /// Pushes a new table holding `items` at consecutive integer keys from `first` (a None
    /// leaves its key unset).
    pub fn push_sequence<'b>(
        &self,
        first: i64,
        items: impl ExactSizeIterator<Item = Option<&'b [u8]>>,
    ) -> Result<(), String> {
        self.reserve(2)?;
        // Keys below 1 live in the hash part: sized for them up front, a key 0 (r:regex's whole
        // match) does not make Lua rehash the table.
        let len = items.len().min(c_int::MAX as usize);
        let below = usize::try_from(1i64.saturating_sub(first)).map_or(len, |n| n.min(len));
        // SAFETY: two free slots reserved; the table stays at the top while it is filled.
        unsafe {
            ffi::lua_createtable(self.l, (len - below) as c_int, below as c_int);
            for (i, item) in items.enumerate() {
                if let Some(b) = item {
                    ffi::lua_pushlstring(self.l, b.as_ptr().cast(), b.len());
                    ffi::lua_rawseti(self.l, -2, (first + i as i64) as ffi::lua_Integer);
                }
            }
        }
        Ok(())
    }

    /// Pushes a new table holding `entries` under their names.
    pub fn push_record(&self, entries: &[(&CStr, Number)]) -> Result<(), String> {
        self.reserve(2)?;
        // SAFETY: two free slots reserved; the new table has no metatable, so lua_setfield
        // runs no metamethod.
        unsafe {
            ffi::lua_createtable(self.l, 0, entries.len().min(c_int::MAX as usize) as c_int);
            for (name, value) in entries {
                match *value {
                    Number::Int(i) => ffi::lua_pushinteger(self.l, i as ffi::lua_Integer),
                    Number::Float(f) => ffi::lua_pushnumber(self.l, f),
                }
                ffi::lua_setfield(self.l, -2, name.as_ptr());
            }
        }
        Ok(())
    }

    /// The `T` held by upvalue 2 of this function (see [`closure`] and [`new_userdata`]).
    pub fn upvalue<T: RawUserData>(&self) -> Option<&'l T> {
        // SAFETY: the upvalue lives as long as the running closure ('l); block_of checks the
        // value is a T.
        unsafe {
            match ffi::lua_type(self.l, ffi::lua_upvalueindex(2)) {
                ffi::LUA_TUSERDATA => block_of::<T>(self.l, ffi::lua_upvalueindex(2)),
                _ => None,
            }
        }
    }

    pub fn push_bytes(&self, b: &[u8]) {
        // SAFETY: as push_nil; Lua copies the bytes.
        unsafe {
            ffi::lua_pushlstring(self.l, b.as_ptr().cast(), b.len());
        }
    }

    /// Pushes a new userdata holding `value` with `T`'s metatable (see [`define`]).
    pub fn push_userdata<T: RawUserData>(&self, value: T) {
        // SAFETY: see `push_block`.
        unsafe { push_block(self.l, value) }
    }

    /// Pushes two new tables made from `pairs` the way parseargs shapes them: `simple[k]` is
    /// the first value of `k`, `multi[k]` the list of all its values in order. Both are
    /// sized for `size` keys up front. (One primitive rather than a dozen checked stack
    /// operations a pair: query strings and form bodies go through here on every request.)
    pub fn push_form_tables<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        size: usize,
        pairs: impl Iterator<Item = (K, V)>,
        repeated: Repeated,
    ) -> Result<(), String> {
        self.reserve(8)?;
        let size = size.min(1 << 16) as c_int;
        let l = self.l;
        // SAFETY: room for 8 values was made; every index used is one of the two tables
        // pushed here or a negative index to a value pushed in the same iteration, and each
        // iteration leaves the stack as it found it.
        unsafe {
            ffi::lua_createtable(l, 0, size);
            let simple = ffi::lua_gettop(l);
            ffi::lua_createtable(l, 0, size);
            let multi = simple + 1;
            for (k, v) in pairs {
                let (k, v) = (k.as_ref(), v.as_ref());
                ffi::lua_pushlstring(l, k.as_ptr().cast(), k.len()); // k
                ffi::lua_pushvalue(l, -1); // k k
                if ffi::lua_rawget(l, multi) == ffi::LUA_TNIL {
                    ffi::lua_settop(l, -2); // k
                    ffi::lua_pushlstring(l, v.as_ptr().cast(), v.len()); // k v
                    ffi::lua_createtable(l, 1, 0); // k v list
                    ffi::lua_pushvalue(l, -2);
                    ffi::lua_rawseti(l, -2, 1); // k v list
                    ffi::lua_pushvalue(l, -3);
                    ffi::lua_pushvalue(l, -2);
                    ffi::lua_rawset(l, multi); // k v list
                    ffi::lua_settop(l, -2); // k v
                    ffi::lua_rawset(l, simple);
                } else {
                    // k list: a repeated key.
                    let n = ffi::lua_rawlen(l, -1);
                    ffi::lua_pushlstring(l, v.as_ptr().cast(), v.len()); // k list v
                    ffi::lua_pushvalue(l, -1);
                    ffi::lua_rawseti(l, -3, (n + 1) as _); // k list v
                    if repeated == Repeated::KeepLast {
                        ffi::lua_pushvalue(l, -3);
                        ffi::lua_pushvalue(l, -2);
                        ffi::lua_rawset(l, simple); // k list v
                    }
                    ffi::lua_settop(l, -4);
                }
            }
        }
        Ok(())
    }

    fn check_arg_table(&self, t: c_int) {
        assert!(
            t >= 1 && t <= self.args && self.kind(t) == Kind::Table,
            "not a table argument"
        );
    }

    /// Calls `f` with `t[i]` (raw) of the table argument `t` for `i` in `from..=to` while it
    /// returns true; returns whether it always did. Strings are lent for the one call.
    pub fn arg_raw_each(
        &self,
        t: c_int,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, Scalar<'_>) -> bool,
    ) -> bool {
        self.check_arg_table(t);
        if from > to {
            return true;
        }
        if self.reserve(1).is_err() {
            return false;
        }
        let mut i = from;
        loop {
            // SAFETY: `t` is a table argument and there is room for one value, which is read
            // (a string's bytes stay valid while it is on the stack, i.e. during `f`, which
            // cannot keep them) and popped.
            let more = unsafe {
                let kind = Kind::of(ffi::lua_rawgeti(self.l, t, i as _));
                let more = f(i, self.scalar_at(self.top(), kind));
                ffi::lua_settop(self.l, -2);
                more
            };
            if !more {
                return false;
            }
            if i == to {
                return true;
            }
            i += 1;
        }
    }

    /// Pushes `t[1..=n]` (raw) of the table argument `t` and reads them when all are strings
    /// or all are numbers (the strings' bytes live as long as the pushed values do). At the
    /// first element of another kind it stops, with what it read left pushed, and returns
    /// `Other`; None, with nothing pushed, when the stack cannot take `n` values.
    pub fn arg_push_elements(&self, t: c_int, n: usize) -> Option<Elements<'l>> {
        self.check_arg_table(t);
        let top = self.top();
        let room = c_int::try_from(n)
            .ok()
            .filter(|&n| n < c_int::MAX - top - 1)?;
        self.reserve(room + 1).ok()?;
        // SAFETY: `t` is a table argument and there is room for `n` values; each is read in
        // its own slot (top + i) once pushed, as its kind says it may be.
        let push = |i: usize| Kind::of(unsafe { ffi::lua_rawgeti(self.l, t, i as _) });
        // Every element as `read` reads its slot while all are of `kind` (the first one is).
        fn all<T>(
            n: usize,
            kind: Kind,
            push: impl Fn(usize) -> Kind,
            read: impl Fn(usize) -> T,
        ) -> Option<Vec<T>> {
            let mut out = Vec::with_capacity(n);
            out.push(read(1));
            for i in 2..=n {
                if push(i) != kind {
                    return None;
                }
                out.push(read(i));
            }
            Some(out)
        }
        let slot = |i: usize| top + i as c_int;
        Some(match push(1) {
            Kind::String => all(n, Kind::String, push, |i| LuaStr(self.tostring(slot(i))))
                .map_or(Elements::Other, Elements::Strs),
            Kind::Number => all(n, Kind::Number, push, |i| self.number_at(slot(i)))
                .map_or(Elements::Other, Elements::Numbers),
            _ => Elements::Other,
        })
    }

    /// Stores the values this call pushed from slot `first` into the table argument `t`
    /// (raw), slot `first + order[i]` as `t[i + 1]`, and pops everything from `first` up.
    pub fn arg_store_ordered(&self, t: c_int, first: c_int, order: impl Iterator<Item = u32>) {
        self.check_arg_table(t);
        let pushed = self.top() - first + 1;
        assert!(
            first > self.args && pushed >= 0,
            "not values this call pushed"
        );
        assert!(self.reserve(1).is_ok(), "no room for a copy");
        for (i, k) in order.enumerate() {
            assert!((k as c_int) < pushed, "not a pushed value");
            // SAFETY: slot `first + k` holds a pushed value; there is room for its copy, which
            // rawseti pops into the table argument.
            unsafe {
                ffi::lua_pushvalue(self.l, first + k as c_int);
                ffi::lua_rawseti(self.l, t, (i + 1) as _);
            }
        }
        // SAFETY: only values this call pushed are removed.
        unsafe { ffi::lua_settop(self.l, first - 1) }
    }

    /// The raw length of the table argument `t`.
    pub fn arg_raw_len(&self, t: c_int) -> usize {
        self.check_arg_table(t);
        // SAFETY: `t` is a table argument.
        unsafe { ffi::lua_rawlen(self.l, t) }
    }

    /// Whether the value at `i` has a metatable.
    pub fn has_metatable(&self, i: c_int) -> bool {
        if self.kind(i) == Kind::None {
            return false;
        }
        // SAFETY: a valid index; lua_getmetatable pushes only when it returns non-zero, and
        // that value is popped at once.
        unsafe {
            if ffi::lua_getmetatable(self.l, i) == 0 {
                return false;
            }
            ffi::lua_settop(self.l, -2);
        }
        true
    }

    /// Whether argument `i`'s metatable has a (non-nil) field `name`, as luaL_getmetafield
    /// finds it.
    pub fn has_metafield(&self, i: c_int, name: &CStr) -> bool {
        if self.kind(i) == Kind::None {
            return false;
        }
        // SAFETY: a valid index; luaL_getmetafield pushes only when the field is there, and
        // that value is popped at once.
        unsafe {
            if ffi::luaL_getmetafield(self.l, i, name.as_ptr()) == ffi::LUA_TNIL {
                return false;
            }
            ffi::lua_settop(self.l, -2);
        }
        true
    }

    /// The kind of any value on this call's stack (arguments and values it pushed).
    fn kind_on_stack(&self, i: c_int) -> Kind {
        if i < 1 || i > self.top() {
            return Kind::None;
        }
        // SAFETY: a valid index of this call's stack.
        Kind::of(unsafe { ffi::lua_type(self.l, i) })
    }

    /// The string at `i` (an argument or a value this call pushed, which must stay on the
    /// stack while the result is used; numbers are not converted), ordered as Lua orders
    /// strings.
    pub fn lua_str(&self, i: c_int) -> Option<LuaStr<'l>> {
        (self.kind_on_stack(i) == Kind::String).then(|| LuaStr(self.tostring(i)))
    }

    /// Argument `i` read with one type check: its bytes if it is a string, its value if it is
    /// a number (neither converted), else its kind.
    pub fn scalar(&self, i: c_int) -> Scalar<'l> {
        self.scalar_at(i, self.kind(i))
    }

    /// The value in slot `i`, of kind `kind`, as a [`Scalar`].
    fn scalar_at(&self, i: c_int, kind: Kind) -> Scalar<'l> {
        match kind {
            Kind::String => Scalar::Str(self.tostring(i)),
            Kind::Number => Scalar::Num(self.number_at(i)),
            k => Scalar::Other(k),
        }
    }

    /// The number at `i` (an argument or a value this call pushed), keeping Lua 5.3+'s
    /// integer/float distinction.
    /// (LuaJIT has no integer subtype: every number is a float.)
    pub fn number(&self, i: c_int) -> Option<Number> {
        (self.kind_on_stack(i) == Kind::Number).then(|| self.number_at(i))
    }

    /// The number in slot `i`, which holds one.
    fn number_at(&self, i: c_int) -> Number {
        // SAFETY: slot `i` holds a number.
        unsafe {
            #[cfg(not(feature = "luajit"))]
            if ffi::lua_isinteger(self.l, i) != 0 {
                return Number::Int(ffi::lua_tointegerx(self.l, i, std::ptr::null_mut()));
            }
            Number::Float(ffi::lua_tonumberx(self.l, i, std::ptr::null_mut()))
        }
    }

    /// Pushes a copy of the value at `i` (pushed by this call, or an argument).
    pub fn push_copy(&self, i: c_int) {
        assert!(i >= 1 && i <= self.top(), "invalid index");
        // SAFETY: a valid index.
        unsafe { ffi::lua_pushvalue(self.l, i) }
    }

    /// Pops `n` values pushed by this call.
    pub fn pop(&self, n: c_int) {
        assert!(self.top() - n >= self.args, "would pop an argument");
        // SAFETY: only values above the arguments are removed.
        unsafe { ffi::lua_settop(self.l, -n - 1) }
    }

    /// Fills the arguments up with nils to `n` values (when fewer were given and nothing was
    /// pushed yet), for an original that then gets more arguments (see [`DELEGATE_AS_IS`]).
    pub fn pad_args(&self, n: c_int) -> Result<(), String> {
        assert!(self.top() == self.args, "values were pushed");
        if n > self.args {
            self.reserve(n - self.args)?;
            // SAFETY: room was made; the new slots are nils.
            unsafe { ffi::lua_settop(self.l, n) }
        }
        Ok(())
    }

    /// Pushes the global environment of the Lua function that called this one — the nearest
    /// Lua function up the stack, past C functions such as `pcall` — and returns true, when it
    /// has one (its `_ENV` upvalue; its function environment in LuaJIT) and that is not the
    /// global table; otherwise pushes nothing and returns false.
    pub fn push_caller_env(&self) -> bool {
        if self.reserve(3).is_err() {
            return false;
        }
        let l = self.l;
        // SAFETY: room for the three values pushed at a time (the function, an upvalue or
        // environment, the global table), each popped again unless it is the one returned.
        unsafe {
            for level in 1..=12 {
                // ("f" pushes the frame's function.)
                let Some(ar) = debug_at(l, level, c"fS") else {
                    return false;
                };
                let c_function = !ar.what.is_null() && CStr::from_ptr(ar.what).to_bytes() == b"C";
                if c_function {
                    ffi::lua_settop(l, -2);
                    continue;
                }
                if !push_environment_of_top(l) {
                    ffi::lua_settop(l, -2); // the function
                    return false;
                }
                ffi::lua_remove(l, -2); // the function
                #[cfg(feature = "luajit")]
                ffi::lua_pushvalue(l, ffi::LUA_GLOBALSINDEX);
                #[cfg(not(feature = "luajit"))]
                ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_GLOBALS);
                let usable =
                    ffi::lua_type(l, -2) == ffi::LUA_TTABLE && ffi::lua_rawequal(l, -1, -2) == 0;
                ffi::lua_settop(l, if usable { -2 } else { -3 });
                return usable;
            }
        }
        false
    }

    /// Leaves only the value on top of the stack, in slot 1 (the arguments and everything
    /// else this call pushed are dropped).
    pub fn keep_only_top(&self) {
        assert!(self.top() >= 1, "an empty stack");
        // SAFETY: slot 1 exists; the top value replaces it and the rest is cut off.
        unsafe {
            if self.top() > 1 {
                ffi::lua_replace(self.l, 1);
            }
            ffi::lua_settop(self.l, 1);
        }
    }

    /// Loads the file `path` (as luaL_loadfilex with no mode) and gives the chunk the table on
    /// top of the stack as its environment, replacing that table with the chunk; on failure
    /// pops the table and returns Lua's message.
    pub fn load_file_in_env(&self, path: &CStr) -> Result<(), Vec<u8>> {
        assert!(
            self.kind_on_stack(self.top()) == Kind::Table,
            "no environment on top"
        );
        let l = self.l;
        // SAFETY: luaL_loadfilex pushes the chunk or a message; the environment below it is
        // moved into the chunk (or popped).
        unsafe {
            #[cfg(feature = "luajit")]
            let status = ffi::luaL_loadfile(l, path.as_ptr());
            #[cfg(not(feature = "luajit"))]
            let status = ffi::luaL_loadfilex(l, path.as_ptr(), std::ptr::null());
            if status != ffi::LUA_OK {
                let message = self.tostring(self.top()).to_vec();
                ffi::lua_settop(l, -3);
                return Err(message);
            }
            ffi::lua_insert(l, -2); // chunk env
            #[cfg(feature = "luajit")]
            ffi::lua_setfenv(l, -2);
            #[cfg(not(feature = "luajit"))]
            if ffi::lua_setupvalue(l, -2, 1).is_null() {
                ffi::lua_settop(l, -2);
            }
        }
        Ok(())
    }

    /// Looks argument `key` up (raw) in the table that is upvalue 2 of this function; pushes
    /// the value and returns true when it is not nil.
    pub fn lookup_upvalue(&self, key: c_int) -> bool {
        assert!(key >= 1 && key <= self.args, "not an argument");
        // SAFETY: functions made by `closure` carry a table as upvalue 2.
        unsafe {
            ffi::lua_pushvalue(self.l, key);
            if ffi::lua_rawget(self.l, ffi::lua_upvalueindex(2)) == ffi::LUA_TNIL {
                ffi::lua_settop(self.l, -2);
                return false;
            }
        }
        true
    }
}

/// A Rust type Lua holds as plain userdata, identified by a tag stored beside the value.
///
/// # Safety
/// `TAG` must be unique among the types implementing this trait.
pub unsafe trait RawUserData: Sized + 'static {
    const TAG: u64;
    /// The registry name of the type's metatable.
    const METATABLE: &'static CStr;
    /// The type's name in Lua's messages (the metatable's `__name`, as mod_lua's
    /// luaL_newmetatable sets it): "attempt to index a Apr.Table value".
    const NAME: &'static str;
}

// SAFETY: tags are distinct.
unsafe impl RawUserData for RequestHandle {
    const TAG: u64 = 0x6d6f_645f_6c75_6101;
    const METATABLE: &'static CStr = c"mod_lua_rs.Apache2.Request";
    const NAME: &'static str = "Apache2.Request";
}

// SAFETY: tags are distinct.
unsafe impl RawUserData for TableHandle {
    const TAG: u64 = 0x6d6f_645f_6c75_6102;
    const METATABLE: &'static CStr = c"mod_lua_rs.Apr.Table";
    const NAME: &'static str = "Apr.Table";
}

// SAFETY: tags are distinct.
unsafe impl RawUserData for crate::lua_api::server::RegexCache {
    const TAG: u64 = 0x6d6f_645f_6c75_6103;
    const METATABLE: &'static CStr = c"mod_lua_rs.regex_cache";
    const NAME: &'static str = "mod_lua_rs.regex_cache";
}

// SAFETY: BorrowedBytes holds a reference to its Lua string, so the string is not collected
// while it lives; Lua strings are immutable and never move, and the bytes are the string's,
// not the handle's.
unsafe impl crate::httpd::StableBytes for mlua::BorrowedBytes {}

/// A tag written over a block whose value was dropped by `__gc`.
const DEAD: u64 = 0;

#[repr(C)]
struct Block<T> {
    tag: u64,
    value: T,
}

/// Pushes a new userdata holding `value`.
///
/// # Safety
/// `l` is a running Lua state with a free stack slot.
unsafe fn push_block<T: RawUserData>(l: *mut lua_State, value: T) {
    const { assert!(std::mem::align_of::<Block<T>>() <= 8) };
    let p = ffi::lua_newuserdata(l, std::mem::size_of::<Block<T>>()).cast::<Block<T>>();
    // Lua aligns userdata memory for any C type (LUAI_MAXALIGN), so `p` is aligned for Block.
    p.write(Block { tag: T::TAG, value });
    ffi::lua_getfield(l, ffi::LUA_REGISTRYINDEX, T::METATABLE.as_ptr());
    ffi::lua_setmetatable(l, -2);
}

/// The value in the userdata at `i`, if it is a live `T`.
///
/// # Safety
/// `i` holds a full userdata that stays reachable while the reference is used.
unsafe fn block_of<'a, T: RawUserData>(l: *mut lua_State, i: c_int) -> Option<&'a T> {
    if ffi::lua_rawlen(l, i) != std::mem::size_of::<Block<T>>() {
        return None;
    }
    // A block of exactly Block<T>'s size: its first word is readable, and only our blocks
    // carry T's tag there.
    let p = ffi::lua_touserdata(l, i).cast::<Block<T>>();
    (!p.is_null() && (*p).tag == T::TAG).then(|| &(*p).value)
}

unsafe extern "C-unwind" fn gc<T: RawUserData>(l: *mut lua_State) -> c_int {
    if block_of::<T>(l, 1).is_some() {
        let p = ffi::lua_touserdata(l, 1).cast::<Block<T>>();
        // Marked dead first: a finalizer running later must not reach the value.
        (*p).tag = DEAD;
        std::ptr::drop_in_place(&raw mut (*p).value);
    }
    0
}

/// Creates `T`'s metatable with these entries (plus `__gc` when `T` has a destructor: a
/// finalizer costs a call and keeps the object one more collector cycle), and keeps it in the
/// registry.
pub fn define<T: RawUserData>(lua: &Lua, entries: &[(&str, Function)]) -> mlua::Result<()> {
    let mt = lua.create_table()?;
    for (k, f) in entries {
        mt.raw_set(*k, f)?;
    }
    mt.raw_set("__name", T::NAME)?;
    if std::mem::needs_drop::<T>() {
        // SAFETY: gc::<T> only drops blocks carrying T's tag.
        mt.raw_set("__gc", unsafe { lua.create_c_function(gc::<T>)? })?;
    }
    lua.set_named_registry_value(
        T::METATABLE.to_str().expect("metatable names are ASCII"),
        mt,
    )
}

/// A new userdata holding `value`, with `T`'s metatable (made by [`define`]).
pub fn new_userdata<T: RawUserData>(lua: &Lua, value: T) -> mlua::Result<AnyUserData> {
    // SAFETY: the closure runs protected with stack room (exec_raw) and leaves exactly the
    // one new userdata on the stack.
    unsafe { lua.exec_raw((), move |l| push_block(l, value)) }
}

/// The `T` behind a userdata an mlua function was given.
pub fn userdata_of<'u, T: RawUserData>(lua: &Lua, ud: &'u AnyUserData) -> Option<&'u T> {
    // SAFETY: the closure checks the value exec_raw pushed and leaves one light userdata.
    let p: LightUserData = unsafe {
        lua.exec_raw(ud, |l| {
            let v = block_of::<T>(l, 1).map_or(std::ptr::null(), |v| v as *const T);
            ffi::lua_settop(l, 0);
            ffi::lua_pushlightuserdata(l, v.cast_mut().cast());
        })
    }
    .ok()?;
    // SAFETY: a live T inside the userdata `ud` keeps reachable for 'u.
    (!p.0.is_null()).then(|| unsafe { &*p.0.cast::<T>() })
}

/// (table, names, n) → table[names[0]], …, table[names[n - 1]] (see [`Stack::fields`]).
/// Holds no Rust values, so a metamethod's error may unwind through it.
unsafe extern "C-unwind" fn read_fields(l: *mut lua_State) -> c_int {
    let names = ffi::lua_touserdata(l, 2).cast::<&CStr>();
    let n = ffi::lua_tointegerx(l, 3, std::ptr::null_mut()) as c_int;
    for i in 0..n {
        // SAFETY: `names` points at the `n` names `Stack::fields` passed (at most 16: a C
        // function may push 20 values without lua_checkstack).
        let name: &CStr = *names.add(i as usize);
        ffi::lua_getfield(l, 1, name.as_ptr());
    }
    n
}

unsafe extern "C-unwind" fn trampoline(l: *mut lua_State) -> c_int {
    let args = ffi::lua_gettop(l);
    match run(l) {
        // Every Rust value of the call is gone: this frame has nothing to drop when Lua
        // raises (here or in the delegate).
        FAILED => ffi::lua_error(l),
        CALLED => {
            ffi::lua_call(l, ffi::lua_gettop(l) - 1, ffi::LUA_MULTRET);
            ffi::lua_gettop(l)
        }
        delegated @ (DELEGATED | DELEGATED_AS_IS) => {
            // (handler, original, args…); closures made by `closure` have no handler (nil),
            // which only `delegating` ones need.
            let args = if delegated == DELEGATED {
                ffi::lua_settop(l, args);
                args
            } else {
                ffi::lua_gettop(l)
            };
            ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
            ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
            ffi::lua_rotate(l, 1, 2);
            let handler = match ffi::lua_type(l, 1) {
                ffi::LUA_TFUNCTION => 1,
                _ => 0,
            };
            if ffi::lua_pcall(l, args, ffi::LUA_MULTRET, handler) != ffi::LUA_OK {
                ffi::lua_error(l);
            }
            ffi::lua_gettop(l) - 1
        }
        n => n as c_int,
    }
}

/// The message handler of a delegated call (upvalues: the original function and the name to
/// give it where the call site gives none). An error the original raised itself is worded as
/// if the function scripts called had raised it — what the original would have said called
/// directly: its position is that of the script's call (the original, called from C, found
/// none) and a bad argument is numbered and named as the call site sees it (the original
/// found itself unnamed: `bad argument #2 to '?'`). Errors from code the original called
/// (a comparison function, a metamethod) pass unchanged.
unsafe extern "C-unwind" fn delegate_error(l: *mut lua_State) -> c_int {
    ffi::lua_settop(l, 1);
    // lua_getinfo("f") pushes the function that raised (level 1).
    if ffi::lua_type(l, 1) != ffi::LUA_TSTRING || debug_at(l, 1, c"f").is_none() {
        return 1;
    }
    let direct = ffi::lua_rawequal(l, -1, ffi::lua_upvalueindex(1)) != 0;
    ffi::lua_settop(l, 1);
    if !direct {
        return 1;
    }
    let bytes = |i: c_int| {
        let mut len = 0usize;
        let p = ffi::lua_tolstring(l, i, &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    };
    // Both strings stay on the stack (slot 1, the upvalue) while they are read.
    let (message, fallback) = (bytes(1), bytes(ffi::lua_upvalueindex(2)));
    let reworded = catch_unwind(AssertUnwindSafe(|| {
        let fallback = String::from_utf8_lossy(fallback);
        // Level 2 is the function scripts called (the trampoline), level 3 its caller.
        match bad_argument(message) {
            Some((n, detail)) => arg_error_at(l, 2, n, &fallback, detail),
            None => [where_at(l, 3).as_bytes(), message].concat(),
        }
    }));
    // On a panic (there is none to expect) the original message stands.
    if let Ok(text) = reworded {
        ffi::lua_pushlstring(l, text.as_ptr().cast(), text.len());
    }
    1
}

/// `bad argument #N to 'NAME' (DETAIL)` → (N, DETAIL).
fn bad_argument(message: &[u8]) -> Option<(c_int, &[u8])> {
    let rest = message.strip_prefix(b"bad argument #")?;
    let digits = rest.iter().position(|c| !c.is_ascii_digit())?;
    let n = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b" to '")?;
    let open = rest.windows(3).position(|w| w == b"' (")?;
    Some((n, rest[open + 3..].strip_suffix(b")")?))
}

/// The iterator [`Stack::push_pair_iterator`] makes: upvalue 2 holds the sequence, upvalue 3
/// how many of its values were returned.
fn next_pair(s: &Stack<'_>) -> Returned {
    s.reserve(2)?;
    // SAFETY: a closure made by push_pair_iterator, whose upvalue 2 is a table and upvalue 3
    // an integer; lua_rawgeti pushes one value each, into the reserved slots.
    unsafe {
        let done = ffi::lua_tointegerx(s.l, ffi::lua_upvalueindex(3), std::ptr::null_mut());
        ffi::lua_rawgeti(s.l, ffi::lua_upvalueindex(2), done + 1);
        if ffi::lua_type(s.l, -1) == ffi::LUA_TNIL {
            return Ok(1);
        }
        ffi::lua_rawgeti(s.l, ffi::lua_upvalueindex(2), done + 2);
        ffi::lua_pushinteger(s.l, done + 2);
        ffi::lua_replace(s.l, ffi::lua_upvalueindex(3));
    }
    Ok(2)
}

/// The string (or number, converted) at `i` as Rust text; None for other values.
///
/// # Safety
/// `i` is a valid index of `l`'s running function; the value stays there while this runs.
unsafe fn lossy_string_at(l: *mut lua_State, i: c_int) -> Option<String> {
    let mut len = 0usize;
    let p = ffi::lua_tolstring(l, i, &mut len);
    (!p.is_null()).then(|| {
        String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len)).into_owned()
    })
}

/// The name luaL_typeerror gives the value at `i`: Lua 5.3+ use the metatable's `__name` when
/// it is a string and say "light userdata" for one; LuaJIT (5.1) names the type.
///
/// # Safety
/// `i` is a valid, non-pseudo index of `l`'s running function.
unsafe fn typeerror_name(l: *mut lua_State, i: c_int) -> String {
    let t = ffi::lua_type(l, i);
    #[cfg(not(feature = "luajit"))]
    {
        // luaL_getmetafield pushes the field only when it is there (not nil).
        if ffi::lua_checkstack(l, 1) != 0
            && ffi::luaL_getmetafield(l, i, c"__name".as_ptr()) != ffi::LUA_TNIL
        {
            let name = (ffi::lua_type(l, -1) == ffi::LUA_TSTRING)
                .then(|| lossy_string_at(l, -1))
                .flatten();
            ffi::lua_settop(l, -2);
            if let Some(name) = name {
                return name;
            }
        }
        if t == ffi::LUA_TLIGHTUSERDATA {
            return "light userdata".into();
        }
    }
    Kind::of(t).name().into()
}

/// The name luaL_typeerror gives `v` (see [`Stack::type_name`]), for messages of functions
/// written with mlua.
pub fn value_type_name(lua: &Lua, v: &Value) -> String {
    match v {
        Value::Integer(_) | Value::Number(_) => "number".into(),
        Value::UserData(_) | Value::LightUserData(_) | Value::Table(_) => {
            let mut name = None;
            // SAFETY: the closure reads the one value exec_raw pushed and leaves the stack
            // as it found it.
            let _ = unsafe {
                lua.exec_raw::<()>(v, |l| {
                    name = Some(typeerror_name(l, 1));
                    ffi::lua_settop(l, 0);
                })
            };
            name.unwrap_or_else(|| v.type_name().into())
        }
        other => other.type_name().into(),
    }
}

/// The frame `level` levels up from the running function, with `what` filled in.
unsafe fn debug_at(l: *mut lua_State, level: c_int, what: &CStr) -> Option<ffi::lua_Debug> {
    let mut ar: ffi::lua_Debug = std::mem::zeroed();
    if ffi::lua_getstack(l, level, &mut ar) == 0 {
        return None;
    }
    ffi::lua_getinfo(l, what.as_ptr(), &mut ar);
    Some(ar)
}

/// Pushes the global environment of the Lua function on top of the stack and returns true, or
/// pushes nothing and returns false when it has none (a Lua 5.2+ function that reads no global
/// has no `_ENV` upvalue).
unsafe fn push_environment_of_top(l: *mut lua_State) -> bool {
    #[cfg(feature = "luajit")]
    {
        ffi::lua_getfenv(l, -1);
        true
    }
    #[cfg(not(feature = "luajit"))]
    {
        let mut i = 1;
        loop {
            let name = ffi::lua_getupvalue(l, -1, i);
            if name.is_null() {
                return false;
            }
            if CStr::from_ptr(name).to_bytes() == b"_ENV" {
                return true;
            }
            ffi::lua_settop(l, -2);
            i += 1;
        }
    }
}

/// luaL_where for the frame `level` levels up: `file:line: `, or nothing for a C function.
unsafe fn where_at(l: *mut lua_State, level: c_int) -> String {
    match debug_at(l, level, c"Sl") {
        Some(ar) if ar.currentline > 0 => {
            // SAFETY: lua_getinfo("S") leaves short_src NUL-terminated.
            let src = CStr::from_ptr(ar.short_src.as_ptr());
            format!("{}:{}: ", src.to_string_lossy(), ar.currentline)
        }
        _ => String::new(),
    }
}

/// luaL_argerror's text for the function `level` levels up: arguments numbered as its call
/// site sees them (a `:` call hides `self`), the function named as the call site names it
/// (`fname` when it has no name, as in `pcall(f)`), with its caller's position.
unsafe fn arg_error_at(
    l: *mut lua_State,
    level: c_int,
    n: c_int,
    fname: &str,
    msg: &[u8],
) -> Vec<u8> {
    // lua_getinfo("n") sets namewhat to a static NUL-terminated string and name to NULL or a
    // string that the calling frame keeps alive while it runs.
    let (method, called) = debug_at(l, level, c"n").map_or((false, None), |ar| {
        let method = !ar.namewhat.is_null() && CStr::from_ptr(ar.namewhat).to_bytes() == b"method";
        let called =
            (!ar.name.is_null()).then(|| CStr::from_ptr(ar.name).to_string_lossy().into_owned());
        (method, called)
    });
    let fname = called.as_deref().unwrap_or(fname);
    let head = if method && n == 1 {
        format!("calling '{fname}' on bad self (")
    } else {
        let n = if method { n - 1 } else { n };
        format!("bad argument #{n} to '{fname}' (")
    };
    [
        where_at(l, level + 1).as_bytes(),
        head.as_bytes(),
        msg,
        b")",
    ]
    .concat()
}

const FAILED: isize = -1;
const DELEGATED: isize = -2;
const DELEGATED_AS_IS: isize = -3;
const CALLED: isize = -4;

/// Runs the RawFn in upvalue 1; on failure pushes the message and returns -1.
unsafe fn run(l: *mut lua_State) -> isize {
    let f = ffi::lua_touserdata(l, ffi::lua_upvalueindex(1));
    // SAFETY: upvalue 1 of a trampoline closure is a RawFn stored by `closure`.
    let f: RawFn = std::mem::transmute::<*mut c_void, RawFn>(f);
    let stack = Stack {
        l,
        args: ffi::lua_gettop(l),
        _call: PhantomData,
    };
    let message = match catch_unwind(AssertUnwindSafe(|| f(&stack))) {
        Ok(Ok(DELEGATE)) => return DELEGATED,
        Ok(Ok(DELEGATE_AS_IS)) => return DELEGATED_AS_IS,
        Ok(Ok(CALL_FIRST)) => return CALLED,
        Ok(Ok(n)) => return n.min(c_int::MAX as usize) as isize,
        Ok(Err(m)) => m,
        Err(panic) => format!(
            "Rust panic: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into())
        ),
    };
    ffi::lua_pushlstring(l, message.as_ptr().cast(), message.len());
    FAILED
}

/// A Lua function running `f`.
pub fn function(lua: &Lua, f: RawFn) -> mlua::Result<Function> {
    closure(lua, f, Value::Nil)
}

/// A Lua function running `f`, with `upvalue` as its upvalue 2 (see [`Stack::lookup_upvalue`]).
pub fn closure(lua: &Lua, f: RawFn, upvalue: impl IntoLua) -> mlua::Result<Function> {
    let f = LightUserData(f as *mut c_void);
    // SAFETY: make_closure turns its arguments into the closure's upvalues.
    let make = unsafe { lua.create_c_function(make_closure)? };
    make.call((f, upvalue))
}

/// A Lua function running `f`, a fast path of `original` that hands it the calls it does not
/// handle ([`DELEGATE`]). `name` is how `original` is known (`string.format`), for errors
/// raised where the call site gives the function no name.
pub fn delegating(lua: &Lua, f: RawFn, original: Function, name: &str) -> mlua::Result<Function> {
    // SAFETY: delegate_error is a message handler over (original, name) upvalues.
    let handler = unsafe { lua.create_c_function(make_handler)? }
        .call::<Function>((original.clone(), name))?;
    let f = LightUserData(f as *mut c_void);
    // SAFETY: as in `closure`.
    let make = unsafe { lua.create_c_function(make_closure)? };
    make.call((f, original, handler))
}

/// (RawFn, upvalue[, message handler of delegated calls]) → a trampoline closure over them.
unsafe extern "C-unwind" fn make_closure(l: *mut lua_State) -> c_int {
    ffi::lua_settop(l, 3);
    ffi::lua_pushcclosure(l, trampoline, 3);
    1
}

/// A Lua function calling `inner` — an mlua function that returns the light userdata `fail`
/// and a message instead of raising — that raises the message as a plain string, as
/// luaL_error does for mod_lua's functions; other results pass through. It is a C function,
/// so a script's tail call (`return r:stat(path)`) keeps the script's frame, and with it the
/// position and name an argument error reports.
pub fn raising(lua: &Lua, inner: Function, fail: LightUserData) -> mlua::Result<Function> {
    // SAFETY: make_raising turns its two arguments into call_raising's upvalues.
    let make = unsafe { lua.create_c_function(make_raising)? };
    make.call((inner, fail))
}

/// (inner, fail) → a `call_raising` closure over them.
unsafe extern "C-unwind" fn make_raising(l: *mut lua_State) -> c_int {
    ffi::lua_settop(l, 2);
    ffi::lua_pushcclosure(l, call_raising, 2);
    1
}

/// Calls upvalue 1 with the arguments; raises the message after a leading FAIL (upvalue 2).
/// Holds no Rust values, so the callee's errors may unwind through it.
unsafe extern "C-unwind" fn call_raising(l: *mut lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, ffi::LUA_MULTRET);
    if ffi::lua_gettop(l) >= 2
        && ffi::lua_type(l, 1) == ffi::LUA_TLIGHTUSERDATA
        && ffi::lua_touserdata(l, 1) == ffi::lua_touserdata(l, ffi::lua_upvalueindex(2))
    {
        ffi::lua_pushvalue(l, 2);
        ffi::lua_error(l);
    }
    ffi::lua_gettop(l)
}

/// (original, name) → the message handler of calls delegated to `original`.
unsafe extern "C-unwind" fn make_handler(l: *mut lua_State) -> c_int {
    ffi::lua_settop(l, 2);
    ffi::lua_pushcclosure(l, delegate_error, 2);
    1
}

/// (env, name pointer, name length, live request, args…): looks the name up in `env` as a
/// global read would (metamethods included); if it is a function, makes `r` for the request
/// and calls it with (r, args…). Returns true and the first result, or false when the name is
/// not a function.
unsafe extern "C-unwind" fn invoke(l: *mut lua_State) -> c_int {
    let name = ffi::lua_touserdata(l, 2).cast::<std::ffi::c_char>();
    let len = ffi::lua_tointeger(l, 3) as usize;
    ffi::lua_pushlstring(l, name, len);
    ffi::lua_gettable(l, 1);
    if ffi::lua_type(l, -1) != ffi::LUA_TFUNCTION {
        ffi::lua_pushboolean(l, 0);
        return 1;
    }
    ffi::lua_replace(l, 3);
    make_request(l, 4);
    ffi::lua_call(l, ffi::lua_gettop(l) - 3, 1);
    ffi::lua_pushboolean(l, 1);
    ffi::lua_insert(l, -2);
    2
}

/// (live request): returns `r` for it.
unsafe extern "C-unwind" fn new_request(l: *mut lua_State) -> c_int {
    make_request(l, 1);
    1
}

/// Replaces the light userdata at `i` (a `*const LiveRequest`) with a new `r`.
unsafe fn make_request(l: *mut lua_State, i: c_int) {
    let live = ffi::lua_touserdata(l, i).cast::<LiveRequest>().cast_const();
    assert!(!live.is_null());
    push_block(l, RequestHandle::new(*live));
    ffi::lua_replace(l, i);
}

/// The C functions that hand `r` to scripts, made once per VM.
pub struct RequestFns {
    invoke: Function,
    new_request: Function,
    /// Which of this VM's `r` values may still be used.
    pub liveness: std::rc::Rc<Liveness>,
}

impl RequestFns {
    pub fn new(lua: &Lua) -> mlua::Result<RequestFns> {
        // SAFETY: both functions take a light userdata pointing at a live LiveRequest, which
        // only `call` and `request` below pass.
        unsafe {
            Ok(RequestFns {
                invoke: lua.create_c_function(invoke)?,
                new_request: lua.create_c_function(new_request)?,
                liveness: std::rc::Rc::default(),
            })
        }
    }

    /// Calls the function `name` of `env` as `name(r)` with a new `r` for `live`; returns
    /// its first result, or None when `name` is not a function.
    pub fn call(&self, env: &Table, name: &str, live: &LiveRequest) -> mlua::Result<Option<Value>> {
        // The name is read by `invoke` during this call, while `name` is borrowed.
        let name_ptr = LightUserData(name.as_ptr().cast_mut().cast());
        let len = name.len() as ffi::lua_Integer;
        // Pushed straight, without a value list to allocate or a new reference to the
        // environment.
        let (found, result): (bool, Value) = self.invoke.call((env, name_ptr, len, light(live)))?;
        Ok(found.then_some(result))
    }

    /// As [`RequestFns::call`], as `name(r, args…)` (an authz provider's arguments). Its own
    /// function, so that the usual call's frame has no value list.
    #[inline(never)]
    pub fn call_with_args(
        &self,
        env: &Table,
        name: &str,
        live: &LiveRequest,
        args: Vec<Value>,
    ) -> mlua::Result<Option<Value>> {
        let name_ptr = LightUserData(name.as_ptr().cast_mut().cast());
        let len = name.len() as ffi::lua_Integer;
        let mut all = mlua::MultiValue::new();
        all.push_back(Value::Table(env.clone()));
        all.push_back(Value::LightUserData(name_ptr));
        all.push_back(Value::Integer(len));
        all.push_back(light(live));
        all.extend(args);
        let (found, result): (bool, Value) = self.invoke.call(all)?;
        Ok(found.then_some(result))
    }

    /// A new `r` for `live`.
    pub fn request(&self, live: &LiveRequest) -> mlua::Result<Value> {
        self.new_request.call(light(live))
    }
}

fn light(live: &LiveRequest) -> Value {
    Value::LightUserData(LightUserData(
        (live as *const LiveRequest).cast_mut().cast(),
    ))
}

/// What scripts' global environments are made of: the metatables and the module loader of the
/// VM's prelude (see `src/vm/prelude.lua`).
pub struct EnvParts {
    /// `{__index = the real globals}`, shared by environments.
    pub env_mt: Table,
    /// `{__index = package}`, for each environment's own `package` view.
    pub pkg_mt: Table,
    /// `{__index = package.loaded}`, for a per-call or per-request loaded table.
    pub loaded_mt: Table,
    /// `require_in(package view, name, env)`: `require` along the view's paths, running Lua
    /// modules in `env` (nil: the real globals).
    pub require_in: Function,
    /// `copy_globals(env)`: copies the real globals into `env`, keeping its own keys.
    pub copy_globals: Function,
}

/// Makes scripts' global environments: in C, because the default scope (`once`) makes one on
/// every call, and in Lua that took the interpreter, three `setmetatable` calls and a closure
/// with two upvalues each time.
pub struct EnvBuilder(Function);

impl EnvBuilder {
    pub fn new(lua: &Lua, parts: EnvParts) -> mlua::Result<EnvBuilder> {
        // SAFETY: make_env_builder turns its five arguments into build_env's upvalues.
        let make = unsafe { lua.create_c_function(make_env_builder)? };
        let f = make.call((
            parts.env_mt,
            parts.pkg_mt,
            parts.loaded_mt,
            parts.require_in,
            parts.copy_globals,
        ))?;
        Ok(EnvBuilder(f))
    }

    /// A new environment over the module `profile` (a table with `path`, `cpath`, `loaded`):
    /// an empty table whose misses fall through to the real globals, with its own `package`
    /// view (the profile's paths), `_G` (itself) and `require`. A `persistent` one (for
    /// environments that live as long as the VM) gets the globals copied in, so hot code does
    /// not go through `__index` for `string`, `table`, … on every access, and shares the
    /// profile's loaded modules, which run in the real globals, as in a mod_lua VM of those
    /// scopes. Otherwise (`once`, `request`) it gets a loaded table of its own and its modules
    /// run in it, as in the new VM mod_lua makes for such a call, so no module state outlives
    /// the call or request.
    pub fn build(&self, profile: &Table, persistent: bool) -> mlua::Result<Table> {
        self.0.call((profile, persistent))
    }

    /// A new per-call or per-request environment (as [`EnvBuilder::build`]) with the script's
    /// top level run in it: `chunk` is a text chunk compiled to take its environment as its
    /// argument (in LuaJIT: one whose environment is set). One call where two cost twice the
    /// call overhead on every `once` call. Errors are those of the script's top level.
    pub fn build_and_run(&self, profile: &Table, chunk: &Function) -> mlua::Result<Table> {
        self.0.call((profile, false, chunk))
    }
}

/// (env_mt, pkg_mt, loaded_mt, require_in, copy_globals) → a `build_env` closure over them.
unsafe extern "C-unwind" fn make_env_builder(l: *mut lua_State) -> c_int {
    ffi::lua_settop(l, 5);
    ffi::lua_pushcclosure(l, build_env, 5);
    1
}

/// (profile, persistent[, chunk]) → a new environment (see [`EnvBuilder::build`]), with the
/// chunk run in it when one is given. Holds no Rust values, so the allocator's, a
/// metamethod's or the chunk's error may unwind through it.
unsafe extern "C-unwind" fn build_env(l: *mut lua_State) -> c_int {
    const PROFILE: c_int = 1;
    const CHUNK: c_int = 2;
    const PKG: c_int = 3;
    const ENV: c_int = 4;
    let persistent = ffi::lua_toboolean(l, 2) != 0;
    // (profile, chunk or nil)
    ffi::lua_settop(l, 3);
    ffi::lua_remove(l, 2);
    // The package view: its own path, cpath and loaded; the rest from `package`.
    ffi::lua_createtable(l, 0, 3);
    ffi::lua_getfield(l, PROFILE, c"path".as_ptr());
    ffi::lua_setfield(l, PKG, c"path".as_ptr());
    ffi::lua_getfield(l, PROFILE, c"cpath".as_ptr());
    ffi::lua_setfield(l, PKG, c"cpath".as_ptr());
    if persistent {
        ffi::lua_getfield(l, PROFILE, c"loaded".as_ptr());
    } else {
        ffi::lua_createtable(l, 0, 0);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
        ffi::lua_setmetatable(l, -2);
    }
    ffi::lua_setfield(l, PKG, c"loaded".as_ptr());
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
    ffi::lua_setmetatable(l, PKG);
    // The environment, made with room for its three own keys and the script's function; its
    // metatable goes on last, so that setting those keys looks for no __newindex.
    ffi::lua_createtable(l, 0, 4);
    ffi::lua_pushvalue(l, PKG);
    ffi::lua_setfield(l, ENV, c"package".as_ptr());
    ffi::lua_pushvalue(l, ENV);
    ffi::lua_setfield(l, ENV, c"_G".as_ptr());
    ffi::lua_pushvalue(l, PKG);
    if persistent {
        ffi::lua_pushnil(l);
    } else {
        ffi::lua_pushvalue(l, ENV);
    }
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(4));
    ffi::lua_pushcclosure(l, scoped_require, 3);
    ffi::lua_setfield(l, ENV, c"require".as_ptr());
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_setmetatable(l, ENV);
    if persistent {
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(5));
        ffi::lua_pushvalue(l, ENV);
        ffi::lua_call(l, 1, 0);
    }
    ffi::lua_settop(l, ENV);
    if ffi::lua_type(l, CHUNK) == ffi::LUA_TFUNCTION {
        ffi::lua_pushvalue(l, CHUNK);
        #[cfg(not(feature = "luajit"))]
        {
            ffi::lua_pushvalue(l, ENV);
            ffi::lua_call(l, 1, 0);
        }
        #[cfg(feature = "luajit")]
        {
            ffi::lua_pushvalue(l, ENV);
            ffi::lua_setfenv(l, -2);
            ffi::lua_call(l, 0, 0);
        }
    }
    1
}

/// An environment's `require` (upvalues: its package view, the environment its modules run in
/// or nil, `require_in`). A C function as Lua's own `require` is, so its argument error and
/// the positions of its errors read as Lua's do. Holds no Rust values, so errors may unwind
/// through it.
unsafe extern "C-unwind" fn scoped_require(l: *mut lua_State) -> c_int {
    // Lua's own check and message (a number is turned into its string, as there).
    ffi::luaL_checklstring(l, 1, std::ptr::null_mut());
    ffi::lua_settop(l, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(3));
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_pushvalue(l, 1);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
    ffi::lua_call(l, 3, ffi::LUA_MULTRET);
    ffi::lua_gettop(l) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_string_order_is_byte_order_in_the_c_locale() {
        // Test processes never call setlocale: they run in the "C" locale.
        assert!(collation_is_bytewise());
        let words: [&[u8]; 9] = [
            b"",
            b"a",
            b"a\0",
            b"a\0a",
            b"a\0b",
            b"ab",
            b"b",
            b"\xc3\xa9",
            b"Z",
        ];
        // Lua keeps a NUL after every string's bytes.
        let stored: Vec<Vec<u8>> = words.iter().map(|w| [*w, b"\0"].concat()).collect();
        let strs: Vec<LuaStr<'_>> = stored.iter().map(|s| LuaStr(&s[..s.len() - 1])).collect();
        for a in &strs {
            for b in &strs {
                assert_eq!(
                    a.coll_cmp(b),
                    a.bytes().cmp(b.bytes()),
                    "{:?} {:?}",
                    a.bytes(),
                    b.bytes()
                );
            }
        }
    }

    struct Probe(i64);

    // SAFETY: a tag of its own.
    unsafe impl RawUserData for Probe {
        const TAG: u64 = 0x6d6f_645f_6c75_61ff;
        const METATABLE: &'static CStr = c"mod_lua_rs.test.Probe";
        const NAME: &'static str = "Probe";
    }

    fn index(s: &Stack<'_>) -> Returned {
        if s.lookup_upvalue(2) {
            return Ok(1);
        }
        let p = s.userdata::<Probe>(1).ok_or("not a probe")?;
        match s.str(2) {
            Some(b"n") => s.push_int(p.0),
            Some(b"s") => s.push_bytes(b"/t2.lua"),
            _ => s.push_nil(),
        }
        Ok(1)
    }

    fn make(s: &Stack<'_>) -> Returned {
        let n = s.integer_arg(1, "make")?;
        s.push_userdata(Probe(n));
        Ok(1)
    }

    fn concat(s: &Stack<'_>) -> Returned {
        let mut out = Vec::new();
        for i in 1..=s.len() {
            out.extend_from_slice(s.string_arg(i, "concat")?);
        }
        s.push_bytes(&out);
        Ok(1)
    }

    #[test]
    fn raw_functions_and_userdata() {
        let lua = Lua::new();
        let methods = lua.create_table().unwrap();
        methods
            .set("twice", lua.create_function(|_, n: i64| Ok(n * 2)).unwrap())
            .unwrap();
        define::<Probe>(
            &lua,
            &[("__index", closure(&lua, index, &methods).unwrap())],
        )
        .unwrap();
        lua.globals()
            .set("make", function(&lua, make).unwrap())
            .unwrap();
        lua.globals()
            .set("concat", function(&lua, concat).unwrap())
            .unwrap();
        let n: i64 = lua
            .load("local p = make(21); return p.twice(p.n)")
            .eval()
            .unwrap();
        assert_eq!(n, 42);
        let s: String = lua.load("return concat('a', 1, 'b')").eval().unwrap();
        assert_eq!(s, "a1b");
        let e: String = lua
            .load("local ok, e = pcall(concat, 'a', {}); return e")
            .eval()
            .unwrap();
        assert!(
            e.contains("bad argument #2 to 'concat' (string expected, got table)"),
            "{e}"
        );
        let e: String = lua
            .load("local ok, e = pcall(make, 'x'); return e")
            .eval()
            .unwrap();
        assert!(e.contains("number expected, got string"), "{e}");
        // Collected values are dropped once; their tag dies with them.
        lua.load("for i = 1, 1000 do make(i) end").exec().unwrap();
        lua.gc_collect().unwrap();
        lua.gc_collect().unwrap();
    }

    #[test]
    fn argument_errors_are_taken_apart() {
        assert_eq!(
            bad_argument(b"bad argument #2 to '?' (number expected, got string)"),
            Some((2, &b"number expected, got string"[..]))
        );
        assert_eq!(
            bad_argument(b"bad argument #12 to 'a (b)' (x (y) \xff)"),
            Some((12, &b"x (y) \xff"[..]))
        );
        for other in [
            &b"invalid order function for sorting"[..],
            b"bad argument #x to 'f' (m)",
            b"bad argument #1 to 'f' m",
            b"bad argument #1 to 'f' (m",
        ] {
            assert_eq!(bad_argument(other), None);
        }
    }
}
