//! Faster standard library functions: the same results and errors, less work.
//!
//! - `string.upper` / `string.lower` (PUC Lua 5.3, 5.4): PUC Lua maps a string one byte at a
//!   time through the C library's `toupper`/`tolower` into a `luaL_Buffer`, about eight
//!   instructions a byte, which made upper-casing a 64 KB response in an output filter cost
//!   more than the rest of the request. These give the same bytes in whatever C locale the
//!   thread runs under: a short string through the C library into a buffer on the stack (no
//!   heap block per call), a long one through a 256-entry table read from the C library on
//!   each call, and when that table is plain ASCII case mapping (the "C" locale httpd runs in
//!   unless a script calls os.setlocale) through a branch-free loop the compiler vectorises.
//!   LuaJIT keeps its own, which are ASCII fast functions its JIT compiles.
//! - `table.sort` without a comparison function, on a table whose elements are all strings,
//!   all integers or all floats (no NaN): sorted in Rust with the order Lua's `<` gives
//!   (strings through `strcoll` as PUC Lua compares them, or by bytes in the "C" collation and
//!   in LuaJIT, where that is the same order); the interpreters' sorts go through a C API call
//!   or a comparison per step. PUC Lua tables with a metatable, a comparison function, or
//!   mixed or other values are handed to the original. Only which of several equal elements
//!   lands where can differ (Lua's sort is not stable either); equal strings are
//!   indistinguishable, and integer/float mixes go to the original.
//! - `string.format` and `table.concat` (PUC Lua 5.3, 5.4): the common cases in Rust, the
//!   rest handed to the original with the same arguments (see [`text`]). PUC Lua formats every
//!   `%d` and `%s` through `snprintf` with a format it assembles per item, and concatenates
//!   through a C API call per element; a handler building a page from a few hundred formatted
//!   items spent a fifth of its time there. LuaJIT keeps its own, which its JIT compiles.
//! - `string.rep` (PUC Lua 5.3, 5.4) with a string, an integer count and a string or no
//!   separator: PUC Lua sets up a `luaL_Buffer` even for `string.rep("x", 4)`, about 600
//!   instructions; here a short result is built in place. Anything else goes to the original.

use crate::luac::{self, Elements, Kind, Returned, Stack, DELEGATE};
use mlua::{Lua, Table};
use std::cmp::Ordering;

/// The positions of `items` (each with its position) in sorted order.
fn sorted<K>(
    mut items: Vec<(K, u32)>,
    cmp: impl Fn(&(K, u32), &(K, u32)) -> Ordering,
) -> impl Iterator<Item = u32> {
    items.sort_unstable_by(cmp);
    items.into_iter().map(|(_, i)| i)
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
        _ => return Err(st.type_error(1, "table.sort", "table")),
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
        _ => return Err(st.type_error(1, "table.sort", "table")),
    }
    Ok(comparator(st)?.then(|| st.arg_raw_len(1)))
}

/// True when no comparison function was given; an error for a value that is not one.
fn comparator(st: &Stack<'_>) -> Result<bool, String> {
    match st.kind(2) {
        Kind::None | Kind::Nil => Ok(true),
        Kind::Function => Ok(false),
        _ => Err(st.type_error(2, "table.sort", "function")),
    }
}

/// Whether strings sort by their bytes: always in LuaJIT (it compares strings with memcmp),
/// in PUC Lua when the collation is "C".
fn strings_bytewise() -> bool {
    cfg!(feature = "luajit") || luac::collation_is_bytewise()
}

/// The first eight bytes of `s` (zeros past its end) as a big-endian number: where two
/// strings' keys differ they order as the strings do by bytes (a string that ends sorts before
/// any byte but NUL, which ties with the padding and leaves it to the full comparison).
fn prefix_key(s: &[u8]) -> u64 {
    if let Some(head) = s.first_chunk::<8>() {
        // The common case, one load (a copy of a variable length is a call to memcpy).
        return u64::from_be_bytes(*head);
    }
    s.iter()
        .enumerate()
        .fold(0, |k, (i, &b)| k | u64::from(b) << (56 - 8 * i))
}

/// How many bytes `a` and `b` share at their start, up to `limit`: compared eight at a time
/// wherever both have eight bytes left (even past `limit`, which only caps the answer), so a
/// short shared prefix of long strings takes one comparison.
fn common_prefix(a: &[u8], b: &[u8], limit: usize) -> usize {
    let n = a.len().min(b.len());
    let mut done = 0;
    while done < limit {
        let (Some(x), Some(y)) = (a[done..n].first_chunk::<8>(), b[done..n].first_chunk::<8>())
        else {
            break;
        };
        let (x, y) = (u64::from_le_bytes(*x), u64::from_le_bytes(*y));
        if x != y {
            // The lowest differing bit is in the first differing byte (little-endian).
            return limit.min(done + ((x ^ y).trailing_zeros() / 8) as usize);
        }
        done += 8;
    }
    if done >= limit {
        return limit;
    }
    let end = n.min(limit);
    done + a[done..end]
        .iter()
        .zip(&b[done..end])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Below this many items a comparison sort beats [`radix_sort`]'s fixed costs.
const RADIX_FROM: usize = 64;

/// Sorts `items` by their keys (stably: equal keys keep their order): one counting pass per
/// key byte, least significant first, skipping the bytes all keys share.
fn radix_sort(items: &mut Vec<(u64, u32)>) {
    let n = items.len();
    if n < RADIX_FROM {
        items.sort_by_key(|&(k, _)| k);
        return;
    }
    // Only the bytes in which some keys differ take a pass (or are counted at all).
    let (any, all) = items
        .iter()
        .fold((0u64, u64::MAX), |(any, all), &(k, _)| (any | k, all & k));
    let mut varying = [0usize; 8];
    let mut passes = 0;
    for byte in 0..8 {
        if ((any ^ all) >> (8 * byte)) as u8 != 0 {
            varying[passes] = byte;
            passes += 1;
        }
    }
    let varying = &varying[..passes];
    let mut counts = [[0u32; 256]; 8];
    for &(k, _) in items.iter() {
        for (&byte, count) in varying.iter().zip(counts.iter_mut()) {
            count[usize::from((k >> (8 * byte)) as u8)] += 1;
        }
    }
    let mut spare = vec![(0u64, 0u32); n];
    for (&byte, count) in varying.iter().zip(counts.iter_mut()) {
        let mut next = 0;
        for c in count.iter_mut() {
            (*c, next) = (next, next + *c);
        }
        for &(k, i) in items.iter() {
            let slot = &mut count[usize::from((k >> (8 * byte)) as u8)];
            spare[*slot as usize] = (k, i);
            *slot += 1;
        }
        std::mem::swap(items, &mut spare);
    }
}

fn sort(st: &Stack<'_>) -> Returned {
    use luac::Number;
    let n = match sort_args(st)? {
        Some(n) if n < 2 => return Ok(0),
        Some(n) => n,
        None => return Ok(DELEGATE),
    };
    let first = st.top() + 1;
    let Some(elements) = st.arg_push_elements(1, n) else {
        return Ok(DELEGATE);
    };
    match elements {
        Elements::Strs(strs) => {
            if strings_bytewise() {
                // Past the bytes all share, eight bytes as a number decide most comparisons
                // without a memcmp; the positions ride along in sixteen-byte items.
                let head = strs[0].bytes();
                let shared = strs
                    .iter()
                    .fold(head.len(), |n, s| common_prefix(head, s.bytes(), n));
                let tail = |i: u32| &strs[i as usize].bytes()[shared..];
                let mut keys: Vec<(u64, u32)> =
                    (0..n as u32).map(|i| (prefix_key(tail(i)), i)).collect();
                // The keys alone first, then each run of equal keys by the rest of its bytes.
                radix_sort(&mut keys);
                for run in keys.chunk_by_mut(|a, b| a.0 == b.0) {
                    if run.len() > 1 {
                        run.sort_unstable_by(|a, b| tail(a.1).cmp(tail(b.1)));
                    }
                }
                st.arg_store_ordered(1, first, keys.into_iter().map(|(_, i)| i));
            } else {
                let keys = strs.into_iter().zip(0..).collect();
                st.arg_store_ordered(1, first, sorted(keys, |a, b| a.0.coll_cmp(&b.0)));
            }
        }
        Elements::Numbers(nums) => {
            let ints = || -> Option<Vec<(i64, u32)>> {
                nums.iter()
                    .zip(0..)
                    .map(|(&v, i)| match v {
                        Number::Int(v) => Some((v, i)),
                        Number::Float(_) => None,
                    })
                    .collect()
            };
            let floats = || -> Option<Vec<(f64, u32)>> {
                nums.iter()
                    .zip(0..)
                    .map(|(&v, i)| match v {
                        Number::Float(f) if !f.is_nan() => Some((f, i)),
                        _ => None,
                    })
                    .collect()
            };
            if let Some(ints) = ints() {
                st.arg_store_ordered(1, first, sorted(ints, |a, b| a.0.cmp(&b.0)));
            } else if let Some(floats) = floats() {
                // Without NaN, floats are totally ordered (0.0 and -0.0 equal, as in Lua).
                let order = sorted(floats, |a, b| {
                    a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal)
                });
                st.arg_store_ordered(1, first, order);
            } else {
                // Integers mixed with floats, or NaN: Lua's own comparisons decide.
                return Ok(DELEGATE);
            }
        }
        Elements::Other => return Ok(DELEGATE),
    }
    Ok(0)
}

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let table: Table = lua.globals().get("table")?;
    #[cfg(not(feature = "luajit"))]
    {
        let string: Table = lua.globals().get("string")?;
        string.raw_set("upper", luac::function(lua, case::upper)?)?;
        string.raw_set("lower", luac::function(lua, case::lower)?)?;
        let original: mlua::Function = string.raw_get("format")?;
        let format = luac::delegating(lua, text::format, original, "string.format")?;
        string.raw_set("format", format)?;
        let original: mlua::Function = string.raw_get("rep")?;
        string.raw_set(
            "rep",
            luac::delegating(lua, text::rep, original, "string.rep")?,
        )?;
        let original: mlua::Function = table.raw_get("concat")?;
        let concat = luac::delegating(lua, text::concat, original, "table.concat")?;
        table.raw_set("concat", concat)?;
    }
    let original: mlua::Function = table.raw_get("sort")?;
    table.raw_set("sort", luac::delegating(lua, sort, original, "table.sort")?)?;
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

        /// A string shorter than [`TABLE_FROM`] mapped into `out`, byte by byte through the C
        /// library.
        fn map_short<'o>(self, s: &[u8], out: &'o mut [u8; TABLE_FROM]) -> &'o [u8] {
            let out = &mut out[..s.len()];
            for (o, &b) in out.iter_mut().zip(s) {
                *o = self.libc(b);
            }
            out
        }

        /// A string of at least [`TABLE_FROM`] bytes mapped.
        fn map_long(self, s: &[u8]) -> Vec<u8> {
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
        if s.len() < TABLE_FROM {
            // Short strings (words, header names, methods: most calls) are mapped on the
            // stack; a heap block per call cost more than the mapping.
            let mut out = [0u8; TABLE_FROM];
            st.push_bytes(case.map_short(s, &mut out));
        } else {
            st.push_bytes(&case.map_long(s));
        }
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
        use super::{Case, TABLE_FROM};

        #[test]
        fn matches_the_c_library_byte_for_byte() {
            let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
            for case in [Case::Upper, Case::Lower] {
                let expected: Vec<u8> = all.iter().map(|&b| case.libc(b)).collect();
                assert_eq!(case.map_long(&all), expected);
                let mut out = [0; TABLE_FROM];
                assert_eq!(case.map_short(&all[..50], &mut out), &expected[..50]);
                let short = &all[..TABLE_FROM - 1];
                assert_eq!(case.map_short(short, &mut out), &expected[..short.len()]);
            }
            assert_eq!(
                Case::Upper.map_long(&b"abc-XYZ{}`@".repeat(20)),
                b"ABC-XYZ{}`@".repeat(20)
            );
            assert_eq!(
                Case::Lower.map_long(&b"abc-XYZ[]`@".repeat(20)),
                b"abc-xyz[]`@".repeat(20)
            );
        }
    }
}

/// string.format and table.concat for the cases scripts use most (PUC Lua only): the same bytes
/// as the originals, which get every other case — floats, `%q`, `%c`, flags or widths outside
/// what both Lua 5.3 and 5.4 accept, values with `__tostring`, tables with metatables, and
/// every error — with the same arguments.
#[cfg(not(feature = "luajit"))]
mod text {
    use crate::luac::{Kind, Number, Returned, Scalar, Stack, DELEGATE};

    /// A call's result: in place up to [`Out::INLINE`] bytes (most formatted items), then on
    /// the heap.
    struct Out {
        inline: [u8; Out::INLINE],
        len: usize,
        heap: Vec<u8>,
    }

    impl Out {
        const INLINE: usize = 64;

        fn new() -> Out {
            Out {
                inline: [0; Out::INLINE],
                len: 0,
                heap: Vec::new(),
            }
        }

        /// Makes room for `n` more bytes: on the heap at once when they will not fit in place.
        fn reserve(&mut self, n: usize) {
            if self.heap.is_empty() && self.len + n > Out::INLINE {
                self.spill(n);
            }
        }

        #[inline(always)]
        fn extend(&mut self, b: &[u8]) {
            if self.heap.is_empty() {
                if let Some(dst) = self.inline.get_mut(self.len..self.len + b.len()) {
                    dst.copy_from_slice(b);
                    self.len += b.len();
                    return;
                }
                self.spill(b.len());
            }
            self.heap.extend_from_slice(b);
        }

        /// Moves what is in place to the heap, with room for `more` bytes after it (later
        /// growth is the Vec's own, amortised).
        #[cold]
        fn spill(&mut self, more: usize) {
            self.heap.reserve(self.len + more);
            self.heap.extend_from_slice(&self.inline[..self.len]);
        }

        /// Appends `n` copies of `b`.
        #[inline(always)]
        fn fill(&mut self, b: u8, n: usize) {
            if self.heap.is_empty() {
                if let Some(dst) = self.inline.get_mut(self.len..self.len + n) {
                    dst.fill(b);
                    self.len += n;
                    return;
                }
                self.spill(n);
            }
            self.heap.resize(self.heap.len() + n, b);
        }

        fn bytes(&self) -> &[u8] {
            if self.heap.is_empty() {
                &self.inline[..self.len]
            } else {
                &self.heap
            }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Conv {
        /// `%d`, `%i`
        Dec,
        /// `%x`
        Hex,
        /// `%X`
        HexUpper,
        /// `%s`
        Str,
    }

    /// One conversion specification: `%[flags][width][.precision]conv`.
    #[derive(Clone, Copy, Debug)]
    struct Spec {
        minus: bool,
        zero: bool,
        plus: bool,
        space: bool,
        alt: bool,
        width: usize,
        precision: Option<usize>,
        conv: Conv,
        /// Anything between `%` and the conversion (Lua keeps a bare `%s` string whole).
        modified: bool,
    }

    /// Parses the specification after a `%`; returns it and the bytes it took. None for
    /// anything outside the subset handled here: Lua 5.4's per-conversion flag sets (`-+ 0`
    /// for `%d`, `-#0` for `%x`, `-` for `%s`), each flag once, at most two digits of width and
    /// of precision (Lua 5.3 accepts a superset of that).
    fn parse(fmt: &[u8]) -> Option<(Spec, usize)> {
        let mut spec = Spec {
            minus: false,
            zero: false,
            plus: false,
            space: false,
            alt: false,
            width: 0,
            precision: None,
            conv: Conv::Str,
            modified: false,
        };
        let mut i = 0;
        loop {
            let flag = match fmt.get(i) {
                Some(b'-') => &mut spec.minus,
                Some(b'0') => &mut spec.zero,
                Some(b'+') => &mut spec.plus,
                Some(b' ') => &mut spec.space,
                Some(b'#') => &mut spec.alt,
                _ => break,
            };
            if *flag {
                return None;
            }
            *flag = true;
            i += 1;
        }
        let digits = |i: &mut usize| -> Option<usize> {
            let mut n = 0;
            let start = *i;
            while let Some(d) = fmt.get(*i).filter(|b| b.is_ascii_digit()) {
                if *i - start == 2 {
                    return None;
                }
                n = n * 10 + (d - b'0') as usize;
                *i += 1;
            }
            Some(n)
        };
        spec.width = digits(&mut i)?;
        if fmt.get(i) == Some(&b'.') {
            i += 1;
            spec.precision = Some(digits(&mut i)?);
        }
        spec.conv = match fmt.get(i)? {
            b'd' | b'i' => Conv::Dec,
            b'x' => Conv::Hex,
            b'X' => Conv::HexUpper,
            b's' => Conv::Str,
            _ => return None,
        };
        let allowed = match spec.conv {
            Conv::Dec => !spec.alt,
            Conv::Hex | Conv::HexUpper => !(spec.plus || spec.space),
            Conv::Str => !(spec.zero || spec.plus || spec.space || spec.alt),
        };
        spec.modified = i > 0;
        allowed.then_some((spec, i + 1))
    }

    /// The digits of `v` in base 10 or 16, right-aligned in `buf`; returns where they start.
    fn digits(buf: &mut [u8; 24], mut v: u64, conv: Conv) -> usize {
        let mut at = buf.len();
        let set: &[u8; 16] = match conv {
            Conv::HexUpper => b"0123456789ABCDEF",
            _ => b"0123456789abcdef",
        };
        loop {
            at -= 1;
            // Constant divisors: shifts and multiplications, not divisions.
            if matches!(conv, Conv::Hex | Conv::HexUpper) {
                buf[at] = set[(v & 15) as usize];
                v >>= 4;
            } else {
                buf[at] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            if v == 0 {
                return at;
            }
        }
    }

    /// Appends the decimal form Lua gives an integer (`%lld`).
    fn decimal(out: &mut Out, v: i64) {
        let mut buf = [0u8; 24];
        let at = digits(&mut buf, v.unsigned_abs(), Conv::Dec);
        if v < 0 {
            out.extend(b"-");
        }
        out.extend(&buf[at..]);
    }

    /// C's `%lld` / `%llx` / `%llX` with the spec's flags, width and precision.
    fn format_int(out: &mut Out, spec: &Spec, v: i64) {
        let (negative, magnitude) = match spec.conv {
            Conv::Dec => (v < 0, v.unsigned_abs()),
            _ => (false, v as u64),
        };
        let mut buf = [0u8; 24];
        // A zero precision prints no digits for zero.
        let body = if spec.precision == Some(0) && magnitude == 0 {
            &buf[..0]
        } else {
            let at = digits(&mut buf, magnitude, spec.conv);
            &buf[at..]
        };
        let prefix: &[u8] = match spec.conv {
            Conv::Dec if negative => b"-",
            Conv::Dec if spec.plus => b"+",
            Conv::Dec if spec.space => b" ",
            Conv::Hex if spec.alt && magnitude != 0 => b"0x",
            Conv::HexUpper if spec.alt && magnitude != 0 => b"0X",
            _ => b"",
        };
        let zeros = spec.precision.unwrap_or(0).saturating_sub(body.len());
        let pad = spec.width.saturating_sub(prefix.len() + zeros + body.len());
        if spec.minus {
            out.extend(prefix);
            out.fill(b'0', zeros);
            out.extend(body);
            out.fill(b' ', pad);
        } else if spec.zero && spec.precision.is_none() {
            out.extend(prefix);
            out.fill(b'0', zeros + pad);
            out.extend(body);
        } else {
            out.fill(b' ', pad);
            out.extend(prefix);
            out.fill(b'0', zeros);
            out.extend(body);
        }
    }

    /// Lua's `%s` of a string: kept whole without modifiers (or when too long to format, as
    /// Lua does), else C's `%-W.Ps`. False for a string with a NUL under modifiers (an error).
    fn format_str(out: &mut Out, spec: &Spec, s: &[u8]) -> bool {
        if !spec.modified || (spec.precision.is_none() && s.len() >= 100) {
            out.extend(s);
            return !spec.modified || !s.contains(&0);
        }
        if s.contains(&0) {
            return false;
        }
        let s = &s[..spec.precision.map_or(s.len(), |p| p.min(s.len()))];
        let pad = spec.width.saturating_sub(s.len());
        if !spec.minus {
            out.fill(b' ', pad);
        }
        out.extend(s);
        if spec.minus {
            out.fill(b' ', pad);
        }
        true
    }

    /// Formats argument `arg` by `spec`; false when the original must do it.
    fn convert(st: &Stack<'_>, arg: i32, spec: &Spec, out: &mut Out) -> bool {
        match (spec.conv, st.scalar(arg)) {
            (Conv::Str, Scalar::Str(s)) if !st.has_metafield(arg, c"__tostring") => {
                format_str(out, spec, s)
            }
            (Conv::Str, Scalar::Num(Number::Int(v))) if !st.has_metafield(arg, c"__tostring") => {
                let mut text = Out::new();
                decimal(&mut text, v);
                format_str(out, spec, text.bytes())
            }
            (Conv::Dec | Conv::Hex | Conv::HexUpper, Scalar::Num(Number::Int(v))) => {
                format_int(out, spec, v);
                true
            }
            _ => false,
        }
    }

    pub fn format(st: &Stack<'_>) -> Returned {
        let Some(mut rest) = st.str(1) else {
            return Ok(DELEGATE);
        };
        let mut out = Out::new();
        let mut arg = 1;
        while let Some(p) = rest.iter().position(|&b| b == b'%') {
            out.extend(&rest[..p]);
            rest = &rest[p + 1..];
            if rest.first() == Some(&b'%') {
                out.extend(b"%");
                rest = &rest[1..];
                continue;
            }
            let Some((spec, used)) = parse(rest) else {
                return Ok(DELEGATE);
            };
            rest = &rest[used..];
            arg += 1;
            if !convert(st, arg, &spec, &mut out) {
                return Ok(DELEGATE);
            }
        }
        out.extend(rest);
        st.push_bytes(out.bytes());
        Ok(1)
    }

    /// Results above this size are left to the original, which also raises "resulting string
    /// too large" and memory errors in its own words.
    const REP_MOST: usize = 1 << 26;

    /// Appends the bytes of `string.rep(s, n, sep)` for `n >= 1` to `out`; false (and nothing
    /// appended) above [`REP_MOST`].
    fn repeat(out: &mut Out, s: &[u8], n: usize, sep: &[u8]) -> bool {
        let total = s
            .len()
            .checked_add(sep.len())
            .and_then(|each| each.checked_mul(n))
            .and_then(|all| all.checked_sub(sep.len()));
        let Some(total) = total.filter(|&t| t <= REP_MOST) else {
            return false;
        };
        out.reserve(total);
        match (s, sep) {
            // Nothing to repeat, however often (PUC Lua loops `n` times over empty copies).
            ([], []) => {}
            ([b], []) => out.fill(*b, n),
            _ => {
                out.extend(s);
                for _ in 1..n {
                    out.extend(sep);
                    out.extend(s);
                }
            }
        }
        true
    }

    /// string.rep(s, n [, sep]) with a string `s`, an integer `n` and a string or no `sep`;
    /// PUC Lua builds even a four-byte result through a `luaL_Buffer`. Numbers to convert,
    /// float counts and huge results go to the original.
    pub fn rep(st: &Stack<'_>) -> Returned {
        let (Some(s), Some(Number::Int(n))) = (st.str(1), st.number(2)) else {
            return Ok(DELEGATE);
        };
        let sep: &[u8] = match st.kind(3) {
            Kind::None | Kind::Nil => b"",
            Kind::String => st.str(3).expect("a string"),
            _ => return Ok(DELEGATE),
        };
        if n <= 0 {
            st.push_bytes(b"");
            return Ok(1);
        }
        let mut out = Out::new();
        if !usize::try_from(n).is_ok_and(|n| repeat(&mut out, s, n, sep)) {
            return Ok(DELEGATE);
        }
        st.push_bytes(out.bytes());
        Ok(1)
    }

    /// An optional integer argument (nil or absent: `default`); None for anything else,
    /// which the original converts or rejects.
    fn opt_int(st: &Stack<'_>, i: i32, default: impl FnOnce() -> i64) -> Option<i64> {
        match st.scalar(i) {
            Scalar::Other(Kind::None | Kind::Nil) => Some(default()),
            Scalar::Num(Number::Int(v)) => Some(v),
            _ => None,
        }
    }

    /// table.concat of a table without a metatable whose elements in range are strings or
    /// integers, with a string separator.
    pub fn concat(st: &Stack<'_>) -> Returned {
        if st.kind(1) != Kind::Table || st.has_metatable(1) {
            return Ok(DELEGATE);
        }
        let sep: &[u8] = match st.kind(2) {
            Kind::None | Kind::Nil => b"",
            Kind::String => st.str(2).expect("a string"),
            _ => return Ok(DELEGATE),
        };
        let (Some(i), Some(last)) = (
            opt_int(st, 3, || 1),
            opt_int(st, 4, || st.arg_raw_len(1) as i64),
        ) else {
            return Ok(DELEGATE);
        };
        let mut out = Out::new();
        let all = st.arg_raw_each(1, i, last, |at, item| {
            match item {
                Scalar::Str(s) => out.extend(s),
                Scalar::Num(Number::Int(v)) => decimal(&mut out, v),
                _ => return false,
            }
            if at != last {
                out.extend(sep);
            }
            true
        });
        if !all {
            return Ok(DELEGATE);
        }
        st.push_bytes(out.bytes());
        Ok(1)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::ffi::CString;

        fn c_format(spec: &str, conv: u8, v: i64) -> Vec<u8> {
            let full = CString::new(format!("%{spec}ll{}", conv as char)).unwrap();
            let mut buf = [0u8; 256];
            // SAFETY: a valid buffer and a format with one long long conversion.
            let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), full.as_ptr(), v) };
            buf[..n as usize].to_vec()
        }

        fn ours(text: &str, f: impl FnOnce(&mut Out, &Spec)) -> Option<Vec<u8>> {
            let (spec, used) = parse(text.as_bytes())?;
            assert_eq!(used, text.len(), "{text}");
            let mut out = Out::new();
            out.extend(b"<");
            f(&mut out, &spec);
            Some(out.bytes()[1..].to_vec())
        }

        #[test]
        fn integers_match_the_c_library() {
            let values = [
                0,
                1,
                -1,
                7,
                42,
                -42,
                99_999,
                i64::MAX,
                i64::MIN,
                0x7fff_ffff,
                -0x1234_5678,
            ];
            let flag_sets = [
                "", "-", "0", "+", " ", "#", "-0", "+0", "- ", "-#", "#0", "+ ",
            ];
            let widths = ["", "1", "5", "12", "40"];
            let precisions = ["", ".", ".0", ".1", ".3", ".25"];
            let mut checked = 0;
            for conv in [b'd', b'i', b'x', b'X'] {
                for flags in flag_sets {
                    for width in widths {
                        for precision in precisions {
                            let spec = format!("{flags}{width}{precision}");
                            let text = format!("{spec}{}", conv as char);
                            for v in values {
                                let Some(got) = ours(&text, |out, s| format_int(out, s, v)) else {
                                    continue;
                                };
                                assert_eq!(
                                    String::from_utf8_lossy(&got),
                                    String::from_utf8_lossy(&c_format(&spec, conv, v)),
                                    "%{text} of {v}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
            assert!(checked > 3000, "{checked}");
        }

        #[test]
        fn strings_match_the_c_library() {
            for s in ["", "a", "hello", "a longer string of text"] {
                for spec in ["", "-", "5", "-5", "30", ".0", ".3", "8.2", "-8.2", "-.10"] {
                    let full = CString::new(format!("%{spec}s")).unwrap();
                    let arg = CString::new(s).unwrap();
                    let mut buf = [0u8; 256];
                    // SAFETY: a valid buffer and a format with one string conversion.
                    let n = unsafe {
                        libc::snprintf(
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            full.as_ptr(),
                            arg.as_ptr(),
                        )
                    };
                    let got = ours(&format!("{spec}s"), |out, sp| {
                        assert!(format_str(out, sp, s.as_bytes()));
                    })
                    .expect("in the subset");
                    assert_eq!(got, &buf[..n as usize], "%{spec}s of {s:?}");
                }
            }
        }

        #[test]
        fn strings_follow_lua_rules_beyond_c() {
            let long = "y".repeat(150);
            let run = |text: &str, s: &[u8]| {
                let (spec, _) = parse(text.as_bytes()).unwrap();
                let mut out = Out::new();
                format_str(&mut out, &spec, s).then(|| out.bytes().to_vec())
            };
            // Kept whole: bare %s (NULs too), and long strings without a precision.
            assert_eq!(run("s", b"a\0b"), Some(b"a\0b".to_vec()));
            assert_eq!(run("5s", long.as_bytes()), Some(long.clone().into_bytes()));
            assert_eq!(run(".3s", long.as_bytes()), Some(b"yyy".to_vec()));
            // A NUL under modifiers is Lua's error: the original raises it.
            assert_eq!(run("5s", b"a\0b"), None);
        }

        #[test]
        fn rep_builds_what_lua_builds() {
            let lua = |s: &[u8], n: usize, sep: &[u8]| -> Vec<u8> {
                let mut v = Vec::new();
                for i in 0..n {
                    if i > 0 {
                        v.extend_from_slice(sep);
                    }
                    v.extend_from_slice(s);
                }
                v
            };
            for (s, sep) in [
                (&b"x"[..], &b""[..]),
                (b"ab", b""),
                (b"ab", b", "),
                (b"", b","),
                (b"", b""),
                (b"a\0", b"\0"),
            ] {
                for n in [1, 2, 4, 31, 32, 33, 64, 65, 100, 5000] {
                    let mut got = Out::new();
                    assert!(repeat(&mut got, s, n, sep));
                    assert_eq!(got.bytes(), &lua(s, n, sep)[..], "{s:?} {n} {sep:?}");
                }
            }
            let rep = |s: &[u8], n, sep: &[u8]| {
                let mut out = Out::new();
                repeat(&mut out, s, n, sep).then(|| out.bytes().len())
            };
            assert_eq!(rep(b"ab", usize::MAX / 2, b""), None);
            assert_eq!(rep(b"ab", REP_MOST, b""), None);
            assert_eq!(rep(b"a", REP_MOST, b""), Some(REP_MOST));
            assert_eq!(rep(b"", usize::MAX, b""), Some(0));
        }

        #[test]
        fn output_moves_to_the_heap_intact() {
            let mut out = Out::new();
            let mut expected = Vec::new();
            for i in 0..40u8 {
                let piece = vec![b'a' + i % 26; i as usize];
                out.extend(&piece);
                out.fill(b'-', 3);
                expected.extend_from_slice(&piece);
                expected.extend_from_slice(b"---");
            }
            assert!(expected.len() > Out::INLINE);
            assert_eq!(out.bytes(), &expected[..]);
        }

        #[test]
        fn only_the_common_subset_is_parsed() {
            for outside in [
                "f", "5.2f", "q", "c", "ld", "100d", "5.100d", "--d", "00d", "+s", "05s", "#d",
                "+x", " x", "", "-",
            ] {
                assert!(parse(outside.as_bytes()).is_none(), "{outside}");
            }
            let (spec, used) = parse(b"-08.3dtail").unwrap();
            assert_eq!(used, 6);
            assert_eq!(
                (spec.width, spec.precision, spec.conv),
                (8, Some(3), Conv::Dec)
            );
            assert!(spec.minus && spec.zero && spec.modified);
            assert!(!parse(b"s").unwrap().0.modified);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{common_prefix, prefix_key, radix_sort, RADIX_FROM};

    /// Byte strings around the edges of the sort keys: empty, NULs, eight bytes and one past,
    /// shared prefixes of both sides of a word.
    const WORDS: &[&[u8]] = &[
        b"",
        b"\0",
        b"\0\0",
        b"a",
        b"a\0",
        b"a\0\0b",
        b"ab",
        b"abcdefgh",
        b"abcdefgh\0",
        b"abcdefghi",
        b"abcdefgg\xff",
        b"abcdefgx",
        b"abcdefg",
        b"abcdefghijklmnopq",
        b"abcdefghijklmnopr",
        b"abcdefghijklmno",
        b"xbcdefghijklmnopq",
        b"\xff",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        b"item-00123:xxxx",
        b"item-00124",
        b"item-0012",
    ];

    fn word_pairs() -> impl Iterator<Item = (&'static [u8], &'static [u8])> {
        WORDS
            .iter()
            .flat_map(|&a| WORDS.iter().map(move |&b| (a, b)))
    }

    #[test]
    fn common_prefixes_match_a_byte_loop() {
        for (a, b) in word_pairs() {
            let slow = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            for limit in [0, 1, 3, 5, 7, 8, 9, 15, 16, 17, 40, usize::MAX] {
                assert_eq!(
                    common_prefix(a, b, limit),
                    slow.min(limit),
                    "{a:?} vs {b:?} up to {limit}"
                );
            }
        }
    }

    #[test]
    fn radix_sort_orders_keys_stably() {
        for n in [0, 1, 5, RADIX_FROM - 1, RADIX_FROM, 1000] {
            // Keys that differ in a few bytes only, with repeats, some at the extremes.
            let mut items: Vec<(u64, u32)> = (0..n as u32)
                .map(|i| {
                    let k = match i % 7 {
                        0 => u64::MAX,
                        1 => 0,
                        _ => (u64::from(i).wrapping_mul(7919) % 613) << 40 | 0x3a78_7878,
                    };
                    (k, i)
                })
                .collect();
            let mut expected = items.clone();
            expected.sort_by_key(|&(k, _)| k);
            radix_sort(&mut items);
            assert_eq!(items, expected, "{n} items");
        }
    }

    #[test]
    fn prefix_keys_are_the_first_eight_bytes_zero_padded() {
        let bytes: Vec<u8> = (0..12u32).map(|i| (i * 23 + 200) as u8).collect();
        for n in 0..=bytes.len() {
            let mut word = [0u8; 8];
            let k = n.min(8);
            word[..k].copy_from_slice(&bytes[..k]);
            assert_eq!(
                prefix_key(&bytes[..n]),
                u64::from_be_bytes(word),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn prefix_keys_never_contradict_byte_order() {
        for (a, b) in word_pairs() {
            let (ka, kb) = (prefix_key(a), prefix_key(b));
            if ka != kb {
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
