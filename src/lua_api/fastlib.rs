//! Faster `string.upper` / `string.lower` for PUC Lua (5.3, 5.4).
//!
//! PUC Lua maps a string one byte at a time through the C library's `toupper`/`tolower` into a
//! `luaL_Buffer`: about eight instructions a byte, which made upper-casing a 64 KB response in
//! an output filter cost more than the rest of the request. These replacements give the same
//! result byte for byte, in whatever C locale the thread runs under: a long string is mapped
//! through a 256-entry table read from the C library on each call, and when that table is
//! plain ASCII case mapping (the "C" locale httpd runs in unless a script calls os.setlocale)
//! through a branch-free loop the compiler vectorises. Errors read as PUC Lua's.
//! LuaJIT keeps its own (ASCII) fast functions, which its JIT compiles.

use crate::luac::{self, Returned, Stack};
use mlua::{Lua, Table};

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

pub fn install(lua: &Lua) -> mlua::Result<()> {
    if cfg!(feature = "luajit") {
        return Ok(());
    }
    let string: Table = lua.globals().get("string")?;
    string.raw_set("upper", luac::function(lua, upper)?)?;
    string.raw_set("lower", luac::function(lua, lower)?)?;
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
