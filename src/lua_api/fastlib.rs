//! Faster standard library functions for PUC Lua (5.3, 5.4): the same results and errors,
//! less work.
//!
//! - `string.upper` / `string.lower`: PUC Lua maps a string one byte at a time through the C
//!   library's `toupper`/`tolower` into a `luaL_Buffer`, about eight instructions a byte,
//!   which made upper-casing a 64 KB response in an output filter cost more than the rest of
//!   the request. These give the same bytes in whatever C locale the thread runs under: a
//!   long string is mapped through a 256-entry table read from the C library on each call,
//!   and when that table is plain ASCII case mapping (the "C" locale httpd runs in unless a
//!   script calls os.setlocale) through a branch-free loop the compiler vectorises.
//! - `table.sort` without a comparison function, on a table without a metatable whose
//!   elements are all strings, all integers or all floats (no NaN): sorted in Rust with the
//!   order Lua's `<` gives (strings through `strcoll` as Lua compares them, or by bytes in the
//!   "C" collation, where that is the same order); PUC Lua's sort
//!   goes through `lua_geti`/`lua_compare`/`lua_seti` for every step. Anything else (a
//!   comparison function, metatables, mixed or other values) is handed to the original.
//!   Only which of several equal elements lands where can differ (Lua's sort is not stable
//!   either); equal strings are indistinguishable, and integer/float mixes go to the original.
//!
//! LuaJIT keeps its own functions: its string functions are ASCII fast functions the JIT
//! compiles.

use crate::luac::{self, Kind, Returned, Stack, DELEGATE};
use mlua::{Lua, Table};
use std::cmp::Ordering;

/// Below this length the per-byte C library call is cheaper than building the table.
const TABLE_FROM: usize = 128;

#[derive(Clone, Copy)]
enum Case {
    Upper,
    Lower,
}

impl Case {
    /// The name an argument error gives when the call site has none (luaL_argerror's lookup
    /// in package.loaded).
    fn name(self) -> &'static str {
        match self {
            Case::Upper => "string.upper",
            Case::Lower => "string.lower",
        }
    }

    /// The C library's mapping of one byte under the thread's current locale.
    fn libc(self, b: u8) -> u8 {
        // SAFETY: toupper/tolower accept any value of unsigned char.
        (unsafe {
            match self {
                Case::Upper => libc::toupper(b as libc::c_int),
                Case::Lower => libc::tolower(b as libc::c_int),
            }
        }) as u8
    }

    fn ascii(self, b: u8) -> u8 {
        match self {
            Case::Upper => b ^ (((b.wrapping_sub(b'a') < 26) as u8) << 5),
            Case::Lower => b ^ (((b.wrapping_sub(b'A') < 26) as u8) << 5),
        }
    }

    fn map(self, s: &[u8]) -> Vec<u8> {
        if s.len() < TABLE_FROM {
            return s.iter().map(|&b| self.libc(b)).collect();
        }
        let mut table = [0u8; 256];
        let mut ascii = true;
        for (i, t) in table.iter_mut().enumerate() {
            *t = self.libc(i as u8);
            ascii &= *t == self.ascii(i as u8);
        }
        if ascii {
            s.iter().map(|&b| self.ascii(b)).collect()
        } else {
            s.iter().map(|&b| table[b as usize]).collect()
        }
    }
}

fn convert(st: &Stack<'_>, case: Case) -> Returned {
    let s = st.string_arg(1, case.name())?;
    st.push_bytes(&case.map(s));
    Ok(1)
}

fn upper(st: &Stack<'_>) -> Returned {
    convert(st, Case::Upper)
}

fn lower(st: &Stack<'_>) -> Returned {
    convert(st, Case::Lower)
}

/// Sorts a table argument's elements 1..n given as stack slots with their keys.
fn sort_slots<K>(st: &Stack<'_>, mut items: Vec<(i32, K)>, cmp: impl Fn(&K, &K) -> Ordering) {
    items.sort_unstable_by(|a, b| cmp(&a.1, &b.1));
    for (i, (slot, _)) in items.iter().enumerate() {
        st.push_copy(*slot);
        st.arg_raw_seti(1, i as i64 + 1);
    }
}

fn sort(st: &Stack<'_>) -> Returned {
    use luac::Number;
    const NAME: &str = "table.sort";
    match st.kind(1) {
        Kind::Table if !st.has_metatable(1) => {}
        // A table with metamethods, or a value whose metatable may make it table-like.
        Kind::Table => return Ok(DELEGATE),
        _ if st.has_metatable(1) => return Ok(DELEGATE),
        k => {
            let msg = format!("table expected, got {}", k.name());
            return Err(st.arg_error(1, NAME, &msg));
        }
    }
    // As Lua's sort: nothing is checked further for fewer than two elements.
    let n = st.arg_raw_len(1);
    if n < 2 {
        return Ok(0);
    }
    match st.kind(2) {
        Kind::None | Kind::Nil => {}
        Kind::Function => return Ok(DELEGATE),
        k => {
            let msg = format!("function expected, got {}", k.name());
            return Err(st.arg_error(2, NAME, &msg));
        }
    }
    if n >= i32::MAX as usize - st.top() as usize || st.reserve(n as i32 + 2).is_err() {
        return Ok(DELEGATE);
    }
    let base = st.top();
    let slot = |i: usize| base + i as i32 + 1;
    let first = st.arg_raw_geti(1, 1);
    for i in 2..=n {
        if st.arg_raw_geti(1, i as i64) != first {
            return Ok(DELEGATE);
        }
    }
    match first {
        Kind::String => {
            let items = (0..n).map(|i| (slot(i), st.lua_str(slot(i)).expect("a string")));
            if luac::collation_is_bytewise() {
                sort_slots(st, items.collect(), |a, b| a.bytes().cmp(b.bytes()));
            } else {
                sort_slots(st, items.collect(), |a, b| a.coll_cmp(b));
            }
        }
        Kind::Number => {
            let nums: Vec<_> = (0..n)
                .map(|i| (slot(i), st.number(slot(i)).expect("a number")))
                .collect();
            let ints: Option<Vec<(i32, i64)>> = nums
                .iter()
                .map(|&(s, v)| match v {
                    Number::Int(i) => Some((s, i)),
                    Number::Float(_) => None,
                })
                .collect();
            let floats: Option<Vec<(i32, f64)>> = nums
                .iter()
                .map(|&(s, v)| match v {
                    Number::Float(f) if !f.is_nan() => Some((s, f)),
                    _ => None,
                })
                .collect();
            match (ints, floats) {
                (Some(ints), _) => sort_slots(st, ints, |a, b| a.cmp(b)),
                // Without NaN, floats are totally ordered (0.0 and -0.0 equal, as in Lua).
                (_, Some(floats)) => sort_slots(st, floats, |a, b| {
                    a.partial_cmp(b).unwrap_or(Ordering::Equal)
                }),
                // Integers mixed with floats, or NaN: Lua's own comparisons decide.
                (None, None) => return Ok(DELEGATE),
            }
        }
        _ => return Ok(DELEGATE),
    }
    st.pop(n as i32);
    Ok(0)
}

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    string.raw_set("upper", luac::function(lua, upper)?)?;
    string.raw_set("lower", luac::function(lua, lower)?)?;
    let table: Table = lua.globals().get("table")?;
    let original: mlua::Function = table.raw_get("sort")?;
    table.raw_set("sort", luac::closure(lua, sort, original)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Case;

    #[test]
    fn matches_the_c_library_byte_for_byte() {
        let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for case in [Case::Upper, Case::Lower] {
            let expected: Vec<u8> = all.iter().map(|&b| case.libc(b)).collect();
            assert_eq!(case.map(&all), expected);
            assert_eq!(case.map(&all[..50]), expected[..50]);
        }
        assert_eq!(
            Case::Upper.map(&b"abc-XYZ{}`@".repeat(20)),
            b"ABC-XYZ{}`@".repeat(20)
        );
        assert_eq!(
            Case::Lower.map(&b"abc-XYZ[]`@".repeat(20)),
            b"abc-xyz[]`@".repeat(20)
        );
    }
}
