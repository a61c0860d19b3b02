//! Faster standard library functions: the same results and errors, less work.
//!
//! - `string.upper` / `string.lower` (PUC Lua 5.3, 5.4): PUC Lua maps a string one byte at a
//!   time through the C library's `toupper`/`tolower` into a `luaL_Buffer`, about eight
//!   instructions a byte, which made upper-casing a 64 KB response in an output filter cost
//!   more than the rest of the request. These give the same bytes in whatever C locale the
//!   thread runs under: a long string is mapped through a 256-entry table read from the C
//!   library on each call, and when that table is plain ASCII case mapping (the "C" locale
//!   httpd runs in unless a script calls os.setlocale) through a branch-free loop the
//!   compiler vectorises. LuaJIT keeps its own, which are ASCII fast functions its JIT
//!   compiles.
//! - `table.sort` without a comparison function, on a table whose elements are all strings,
//!   all integers or all floats (no NaN): sorted in Rust with the order Lua's `<` gives
//!   (strings through `strcoll` as PUC Lua compares them, or by bytes in the "C" collation and
//!   in LuaJIT, where that is the same order); the interpreters' sorts go through a C API call
//!   or a comparison per step. PUC Lua tables with a metatable, a comparison function, or
//!   mixed or other values are handed to the original. Only which of several equal elements
//!   lands where can differ (Lua's sort is not stable either); equal strings are
//!   indistinguishable, and integer/float mixes go to the original.

use crate::luac::{self, Kind, Returned, Stack, DELEGATE};
use mlua::{Lua, Table};
use std::cmp::Ordering;

/// Sorts a table argument's elements 1..n given as stack slots with their keys.
fn sort_slots<K>(st: &Stack<'_>, mut items: Vec<(i32, K)>, cmp: impl Fn(&K, &K) -> Ordering) {
    items.sort_unstable_by(|a, b| cmp(&a.1, &b.1));
    for (i, (slot, _)) in items.iter().enumerate() {
        st.push_copy(*slot);
        st.arg_raw_seti(1, i as i64 + 1);
    }
}

/// table.sort's own argument checks: `Ok(Some(n))` to sort `n` elements here, `Ok(None)`
/// for Lua's sort to do it. PUC Lua reads and writes through metamethods and checks nothing
/// more for fewer than two elements.
#[cfg(not(feature = "luajit"))]
fn sort_args(st: &Stack<'_>) -> Result<Option<usize>, String> {
    match st.kind(1) {
        Kind::Table if !st.has_metatable(1) => {}
        // A table with metamethods, or a value whose metatable may make it table-like.
        Kind::Table => return Ok(None),
        _ if st.has_metatable(1) => return Ok(None),
        k => return Err(type_error(st, 1, "table", k)),
    }
    let n = st.arg_raw_len(1);
    if n < 2 {
        return Ok(Some(n));
    }
    comparator(st).map(|none| none.then_some(n))
}

/// LuaJIT's: a real table (it sorts with raw reads and writes), and the comparison function
/// checked first.
#[cfg(feature = "luajit")]
fn sort_args(st: &Stack<'_>) -> Result<Option<usize>, String> {
    match st.kind(1) {
        Kind::Table => {}
        k => return Err(type_error(st, 1, "table", k)),
    }
    Ok(comparator(st)?.then(|| st.arg_raw_len(1)))
}

/// True when no comparison function was given; an error for a value that is not one.
fn comparator(st: &Stack<'_>) -> Result<bool, String> {
    match st.kind(2) {
        Kind::None | Kind::Nil => Ok(true),
        Kind::Function => Ok(false),
        k => Err(type_error(st, 2, "function", k)),
    }
}

fn type_error(st: &Stack<'_>, arg: i32, expected: &str, got: Kind) -> String {
    let msg = format!("{expected} expected, got {}", got.name());
    st.arg_error(arg, "table.sort", &msg)
}

/// Whether strings sort by their bytes: always in LuaJIT (it compares strings with memcmp),
/// in PUC Lua when the collation is "C".
fn strings_bytewise() -> bool {
    cfg!(feature = "luajit") || luac::collation_is_bytewise()
}

fn sort(st: &Stack<'_>) -> Returned {
    use luac::Number;
    let n = match sort_args(st)? {
        Some(n) if n < 2 => return Ok(0),
        Some(n) => n,
        None => return Ok(DELEGATE),
    };
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
            if strings_bytewise() {
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
    #[cfg(not(feature = "luajit"))]
    {
        let string: Table = lua.globals().get("string")?;
        string.raw_set("upper", luac::function(lua, case::upper)?)?;
        string.raw_set("lower", luac::function(lua, case::lower)?)?;
    }
    let table: Table = lua.globals().get("table")?;
    let original: mlua::Function = table.raw_get("sort")?;
    table.raw_set("sort", luac::closure(lua, sort, original)?)?;
    Ok(())
}

/// string.upper / string.lower (PUC Lua only).
#[cfg(not(feature = "luajit"))]
mod case {
    use crate::luac::{Returned, Stack};

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

    pub fn upper(st: &Stack<'_>) -> Returned {
        convert(st, Case::Upper)
    }

    pub fn lower(st: &Stack<'_>) -> Returned {
        convert(st, Case::Lower)
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
}
