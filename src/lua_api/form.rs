//! Pure parsers for query strings and urlencoded bodies, in document order with every value
//! kept (mod_lua's parseargs collapses repeated keys and its parsebody reverses them).
#![forbid(unsafe_code)]

use std::borrow::Cow;

/// A decoded key and value (borrowed from the input when nothing needed decoding).
pub type Pair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// Decodes `%XX` escapes as httpd's `ap_unescape_url` does for parseargs: a malformed escape
/// stays literally, and `%00` ends the value (a C string ends there). With `plus`, `+` becomes a
/// space first (form bodies, `ap_unescape_urlencoded`). Text without escapes is borrowed.
pub fn unescape(s: &[u8], plus: bool) -> Cow<'_, [u8]> {
    let special = if plus { b'+' } else { b'%' };
    if find_either(s, b'%', special).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' && i + 2 < s.len() {
            let (h, l) = (hex(s[i + 1]), hex(s[i + 2]));
            if let (Some(h), Some(l)) = (h, l) {
                let v = h * 16 + l;
                if v == 0 {
                    break;
                }
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b'%');
            i += 1;
        } else if b == b'+' && plus {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const LOWS: u64 = u64::from_ne_bytes([0x7f; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of every byte of `word` that equals `b` (exactly: no carry crosses bytes).
fn matches(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * b as u64);
    // A byte of `x` has its high bit set in `nonzero` unless it is zero.
    let nonzero = ((x & LOWS) + LOWS) | x;
    !nonzero & HIGHS
}

/// The first index of `b` in `s`.
fn find_byte(s: &[u8], b: u8) -> Option<usize> {
    find_either(s, b, b)
}

/// The first index of `a` or `b` in `s`, eight bytes at a time (forms are kilobytes long and
/// these scans were most of their parsing).
fn find_either(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let hits = matches(word, a) | matches(word, b);
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter().position(|&c| c == a || c == b).map(|i| at + i)
}

/// The pieces of `s` between `sep` bytes, like `s.split(|&c| c == sep)`.
fn split(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_byte(r, sep) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Splits a query string like httpd's `ap_args_to_table`: pairs separated by `&` (empty ones
/// skipped), a key without `=` gets the value "1", `+` stays `+`.
pub fn parse_args(args: &[u8]) -> impl Iterator<Item = Pair<'_>> {
    split(args, b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match find_byte(p, b'=') {
            Some(eq) => (unescape(&p[..eq], false), unescape(&p[eq + 1..], false)),
            None => (unescape(p, false), Cow::Borrowed(&b"1"[..])),
        })
}

/// At least as many as the pairs of a query string or form body (to size tables up front):
/// one more than its `&` bytes, counted eight at a time.
pub fn pair_count(s: &[u8]) -> usize {
    let mut chunks = s.chunks_exact(8);
    let mut n = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        n += matches(word, b'&').count_ones() as usize;
    }
    n + chunks.remainder().iter().filter(|&&c| c == b'&').count() + 1
}

/// Parses an `application/x-www-form-urlencoded` body like httpd's `ap_parse_form_data`:
/// pairs separated by `&`, `+` is a space, pairs without `=` are dropped (an empty name is
/// kept, as httpd keeps it).
pub fn parse_urlencoded(body: &[u8]) -> impl Iterator<Item = Pair<'_>> {
    split(body, b'&').filter_map(|p| {
        let eq = find_byte(p, b'=')?;
        Some((unescape(&p[..eq], true), unescape(&p[eq + 1..], true)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[Pair<'_>]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into(),
                    String::from_utf8_lossy(v).into(),
                )
            })
            .collect()
    }

    #[test]
    fn args_keep_order_and_duplicates() {
        assert_eq!(
            s(&parse_args(b"a=1&b=x%20y&a=2&&flag&c=1+1").collect::<Vec<_>>()),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("a".into(), "2".into()),
                ("flag".into(), "1".into()),
                ("c".into(), "1+1".into())
            ]
        );
    }

    #[test]
    fn escapes_like_httpd() {
        assert_eq!(&*unescape(b"100%", false), b"100%");
        assert_eq!(&*unescape(b"%zz%4", false), b"%zz%4");
        assert_eq!(&*unescape(b"ab%00cd", false), b"ab");
        assert_eq!(&*unescape(b"a+b%2B", true), b"a b+");
        assert_eq!(&*unescape(b"%e2%82%ac", false), "€".as_bytes());
    }

    #[test]
    fn scans_find_the_first_match_at_any_offset() {
        for len in 0..40 {
            for at in 0..len {
                let mut v = vec![b'x'; len];
                v[at] = b'&';
                if at + 3 < len {
                    v[at + 3] = b'=';
                }
                assert_eq!(find_either(&v, b'&', b'&'), Some(at), "{len} {at}");
                assert_eq!(find_either(&v, b'=', b'&'), Some(at), "{len} {at}");
                assert_eq!(find_either(&v, b'%', b'+'), None);
            }
        }
        // A byte one above the needle after a match (where a borrowing bit trick errs).
        assert_eq!(find_either(b"ab&'&x", b'&', b'&'), Some(2));
        assert_eq!(find_either(b"\x80\x81&", b'&', b'&'), Some(2));
        for text in [
            &b""[..],
            b"&",
            b"a=1&&b&",
            b"&&&&&&&&&&&&&&&&&x",
            b"\xa6&'%&\x26\x27&&",
        ] {
            let naive = text.iter().filter(|&&c| c == b'&').count() + 1;
            assert_eq!(pair_count(text), naive, "{text:?}");
        }
        // Bytes next to '&' in value (0x25-0x27, 0xa6) at every position and length.
        let mut seed = 12345u32;
        for len in 0..70 {
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    [b'&', b'%', b'\'', 0xa6, 0, b'a'][(seed >> 16) as usize % 6]
                })
                .collect();
            let naive = text.iter().filter(|&&c| c == b'&').count() + 1;
            assert_eq!(pair_count(&text), naive, "{text:?}");
        }
        let pieces: Vec<&[u8]> = split(b"&a&&bc&", b'&').collect();
        assert_eq!(pieces, [&b""[..], b"a", b"", b"bc", b""]);
        assert_eq!(split(b"", b'&').count(), 1);
    }

    #[test]
    fn urlencoded_bodies() {
        assert_eq!(
            s(&parse_urlencoded(b"hello=7&hello=1&novalue&x=a+b&=v&&").collect::<Vec<_>>()),
            vec![
                ("hello".into(), "7".into()),
                ("hello".into(), "1".into()),
                ("x".into(), "a b".into()),
                ("".into(), "v".into())
            ]
        );
    }
}

/// Why a multipart body could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum MultipartError {
    NoBoundary,
    /// The body does not start with the boundary, or a part is cut short.
    Malformed(&'static str),
    /// The closing `--boundary--` never came.
    Unterminated,
    TooManyParts(usize),
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::NoBoundary => write!(f, "multipart/form-data without a boundary"),
            MultipartError::Malformed(why) => write!(f, "malformed multipart body: {why}"),
            MultipartError::Unterminated => {
                write!(f, "multipart body ends before its closing boundary")
            }
            MultipartError::TooManyParts(n) => write!(f, "multipart body has more than {n} parts"),
        }
    }
}

/// The value of parameter `name` in a header like `form-data; name="a"; filename=b`
/// (case-insensitive name, quoted or bare value, backslash escapes in quotes).
pub fn header_param(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut rest = header;
    // Skip the leading token (e.g. the media type).
    match rest.iter().position(|&b| b == b';') {
        Some(i) => rest = &rest[i + 1..],
        None => return None,
    }
    loop {
        while let [b' ' | b'\t' | b';', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return None;
        }
        let eq = rest.iter().position(|&b| b == b'=' || b == b';')?;
        let key = trim(&rest[..eq]);
        if rest[eq] == b';' {
            rest = &rest[eq..];
            continue;
        }
        rest = &rest[eq + 1..];
        let value;
        if rest.first() == Some(&b'"') {
            let mut v = Vec::new();
            let mut i = 1;
            while i < rest.len() && rest[i] != b'"' {
                if rest[i] == b'\\' && i + 1 < rest.len() {
                    i += 1;
                }
                v.push(rest[i]);
                i += 1;
            }
            value = v;
            rest = &rest[(i + 1).min(rest.len())..];
        } else {
            let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            value = trim(&rest[..end]).to_vec();
            rest = &rest[end..];
        }
        if key.eq_ignore_ascii_case(name.as_bytes()) {
            return Some(value);
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// One field of a multipart form: name, value (file contents for uploads), file name.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    pub filename: Option<Vec<u8>>,
}

/// Parses a `multipart/form-data` body (RFC 7578) for the boundary in `content_type`:
/// a quoted boundary and other parameters in any order, part headers in any order and case,
/// empty fields, binary content. Parts without a `name` are skipped. At most `max_parts`.
pub fn parse_multipart(
    content_type: &[u8],
    body: &[u8],
    max_parts: usize,
) -> Result<Vec<Part>, MultipartError> {
    let boundary = header_param(content_type, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or(MultipartError::NoBoundary)?;
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&boundary);
    // The first delimiter may be preceded by a preamble.
    let first = if body.starts_with(&delim) {
        0
    } else {
        let mut d = b"\r\n".to_vec();
        d.extend_from_slice(&delim);
        find(body, &d, 0)
            .map(|i| i + 2)
            .ok_or(MultipartError::Malformed("no opening boundary"))?
    };
    let mut next_delim = b"\r\n".to_vec();
    next_delim.extend_from_slice(&delim);
    let mut parts = Vec::new();
    let mut pos = first + delim.len();
    loop {
        // After a delimiter: `--` ends the body, CRLF starts a part.
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces/tabs) may follow the delimiter.
        while pos < body.len() && (body[pos] == b' ' || body[pos] == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(if pos >= body.len() {
                MultipartError::Unterminated
            } else {
                MultipartError::Malformed("bad delimiter line")
            });
        }
        pos += 2;
        if parts.len() >= max_parts {
            return Err(MultipartError::TooManyParts(max_parts));
        }
        let head_end = if body[pos..].starts_with(b"\r\n") {
            pos
        } else {
            find(body, b"\r\n\r\n", pos)
                .map(|i| i + 2)
                .ok_or(MultipartError::Unterminated)?
        };
        let headers = &body[pos..head_end];
        let content_start = head_end + 2;
        let end = find(body, &next_delim, content_start).ok_or(MultipartError::Unterminated)?;
        let mut name = None;
        let mut filename = None;
        for line in headers.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                if trim(&line[..colon]).eq_ignore_ascii_case(b"content-disposition") {
                    let v = trim(&line[colon + 1..]);
                    name = header_param(v, "name");
                    filename = header_param(v, "filename");
                }
            }
        }
        if let Some(name) = name {
            parts.push(Part {
                name,
                value: body[content_start..end].to_vec(),
                filename,
            });
        }
        pos = end + next_delim.len();
    }
}

/// A cookie sent twice with different values (httpd's AH00011).
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateCookie;

/// The value of cookie `name` as httpd's `ap_cookie_read` finds it in the `Cookie` header
/// lines: pairs separated by `;` or `,`, leading spaces skipped, the value returned raw (not
/// URL-decoded). The same name twice with different values is an error.
pub fn cookie_value<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    name: &[u8],
) -> Result<Option<Vec<u8>>, DuplicateCookie> {
    let mut found: Option<Vec<u8>> = None;
    for line in lines {
        for token in line.split(|&b| b == b';' || b == b',') {
            let token = {
                let s = token
                    .iter()
                    .position(|b| !b.is_ascii_whitespace() && *b != 0x0b)
                    .unwrap_or(token.len());
                &token[s..]
            };
            if token.len() > name.len() && token.starts_with(name) && token[name.len()] == b'=' {
                // `name=` with an empty value counts too (httpd returns "").
                let value = &token[name.len() + 1..];
                match &found {
                    Some(v) if v != value => return Err(DuplicateCookie),
                    Some(_) => {}
                    None => found = Some(value.to_vec()),
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod multipart_tests {
    use super::*;

    const CT: &[u8] = b"multipart/form-data; boundary=XyZ";

    fn body(parts: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for p in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            b.extend_from_slice(p.as_bytes());
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    #[test]
    fn parses_fields_files_and_empty_values() {
        let b = body(&[
            "Content-Disposition: form-data; name=\"a\"\r\n\r\nfirst",
            "content-type: text/plain\r\ncontent-disposition: form-data; filename=\"f.txt\"; name=\"up\"\r\n\r\nbin\0ary\r\nline",
            "Content-Disposition: form-data; name=\"empty\"\r\n\r\n",
            "Content-Disposition: form-data; name=a\r\n\r\nsecond",
        ]);
        let parts = parse_multipart(CT, &b, 100).unwrap();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0].name.as_slice(), parts[0].value.as_slice()),
            (&b"a"[..], &b"first"[..])
        );
        assert_eq!(parts[1].value, b"bin\0ary\r\nline");
        assert_eq!(parts[1].filename.as_deref(), Some(&b"f.txt"[..]));
        assert_eq!(parts[2].value, b"");
        assert_eq!(parts[3].value, b"second");
    }

    #[test]
    fn quoted_boundary_and_parameters_in_any_order() {
        let ct = b"multipart/form-data; charset=utf-8; BOUNDARY=\"XyZ\"";
        let b = body(&["Content-Disposition: form-data; name=\"k\"\r\n\r\nv"]);
        assert_eq!(parse_multipart(ct, &b, 10).unwrap()[0].value, b"v");
    }

    #[test]
    fn limits_and_malformed_bodies() {
        let many: Vec<String> = (0..20)
            .map(|i| format!("Content-Disposition: form-data; name=\"f{i}\"\r\n\r\nx"))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            parse_multipart(CT, &body(&refs), 10),
            Err(MultipartError::TooManyParts(10))
        );
        let mut open = body(&["Content-Disposition: form-data; name=\"a\"\r\n\r\nv"]);
        open.truncate(open.len() - 9);
        assert_eq!(
            parse_multipart(CT, &open, 10),
            Err(MultipartError::Unterminated)
        );
        assert_eq!(
            parse_multipart(b"multipart/form-data", b"", 10),
            Err(MultipartError::NoBoundary)
        );
        assert!(parse_multipart(CT, b"garbage", 10).is_err());
        assert!(parse_multipart(CT, b"--XyZ", 10).is_err());
        assert!(parse_multipart(CT, b"--XyZ\r\n", 10).is_err());
    }

    #[test]
    fn cookies_like_httpd() {
        let lines: [&[u8]; 2] = [b"a=1; session=abc%20d; b=2", b"other=x, session=abc%20d"];
        assert_eq!(
            cookie_value(lines, b"session"),
            Ok(Some(b"abc%20d".to_vec()))
        );
        assert_eq!(cookie_value(lines, b"sess"), Ok(None));
        let dup: [&[u8]; 1] = [b"s=1; s=2"];
        assert_eq!(cookie_value(dup, b"s"), Err(DuplicateCookie));
        let empty: [&[u8]; 1] = [b"s="];
        assert_eq!(cookie_value(empty, b"s"), Ok(Some(Vec::new())));
    }
}
