//! Pure encoders matching httpd/APR byte for byte: `ap_escape_urlencoded`,
//! `ap_unescape_urlencoded`, `ap_escape_html`, `apr_base64_encode` / `apr_base64_decode`
//! (without mod_lua's loss of a trailing NUL byte).
#![forbid(unsafe_code)]

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of a digest (`ap_md5_binary`'s and mod_lua's r:sha1 format) into `out`,
/// which must be twice as long as `digest`.
pub fn hex_lower<'o>(digest: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let out = &mut out[..digest.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 15) as usize];
    }
    out
}

/// `ap_escape_urlencoded`: alphanumerics and `.-*_` stay, space becomes `+`, everything else
/// `%xx` with lowercase hex.
pub fn escape_urlencoded(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3);
    for &b in s {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
    }
    out
}

/// `ap_unescape_urlencoded`: `+` becomes a space, `%xx` is decoded; a malformed escape or an
/// encoded NUL makes it fail (None), as httpd reports HTTP_BAD_REQUEST / NOT_FOUND.
pub fn unescape_urlencoded(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (h, l) = (
                    s.get(i + 1).and_then(|&b| hex(b))?,
                    s.get(i + 2).and_then(|&b| hex(b))?,
                );
                let v = (h * 16 + l) as u8;
                if v == 0 {
                    return None;
                }
                out.push(v);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// `ap_escape_html`: `<`, `>`, `&` and `"` become entities.
pub fn escape_html(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 16);
    for &b in s {
        match b {
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            _ => out.push(b),
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks a byte outside the alphabet in [`B64_VALUE`].
const NOT_B64: u8 = 0xff;

/// Each byte's value in the base64 alphabet, or [`NOT_B64`].
const B64_VALUE: [u8; 256] = {
    let mut table = [NOT_B64; 256];
    let mut i = 0;
    while i < 64 {
        table[B64[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Standard padded base64 without line breaks, binary-safe.
pub fn base64_encode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len().div_ceil(3) * 4);
    for c in s.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(B64[(n >> 18) as usize & 63]);
        out.push(B64[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            B64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            B64[n as usize & 63]
        } else {
            b'='
        });
    }
    out
}

/// `apr_base64_decode`: decodes the leading run of base64 characters (stopping at `=` or the
/// first character outside the alphabet); a final lone character is ignored. Every decoded
/// byte is kept, including a trailing NUL.
pub fn base64_decode(s: &[u8]) -> Vec<u8> {
    let digits: Vec<u32> = s
        .iter()
        .map_while(|&b| match B64_VALUE[usize::from(b)] {
            NOT_B64 => None,
            v => Some(u32::from(v)),
        })
        .collect();
    let n = digits.len();
    let mut out = Vec::with_capacity(n / 4 * 3 + 2);
    for g in digits.chunks(4) {
        if g.len() > 1 {
            out.push((g[0] << 2 | g[1] >> 4) as u8);
        }
        if g.len() > 2 {
            out.push((g[1] << 4 | g[2] >> 2) as u8);
        }
        if g.len() > 3 {
            out.push((g[2] << 6 | g[3]) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_round_trips_like_httpd() {
        assert_eq!(
            escape_urlencoded(b"a b&c=d/e.f-g*h_i~\xff"),
            b"a+b%26c%3dd%2fe.f-g*h_i%7e%ff"
        );
        assert_eq!(
            unescape_urlencoded(b"a+b%26c%3Dd"),
            Some(b"a b&c=d".to_vec())
        );
        assert_eq!(unescape_urlencoded(b"bad%zz"), None);
        assert_eq!(unescape_urlencoded(b"cut%4"), None);
        assert_eq!(unescape_urlencoded(b"nul%00"), None);
        for s in [&b"plain"[..], b"sp ace", b"\x00\x01\xfe", b"%+&="] {
            if !s.contains(&0) {
                assert_eq!(
                    unescape_urlencoded(&escape_urlencoded(s)).as_deref(),
                    Some(s)
                );
            }
        }
    }

    #[test]
    fn hex_of_digests() {
        let mut out = [0u8; 40];
        assert_eq!(hex_lower(&[0x00, 0x0f, 0xa5, 0xff], &mut out), b"000fa5ff");
        assert_eq!(hex_lower(&[], &mut out), b"");
        assert_eq!(hex_lower(&[0xab; 20], &mut out).len(), 40);
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html(b"<a href=\"x\">&'</a>"),
            b"&lt;a href=&quot;x&quot;&gt;&amp;'&lt;/a&gt;"
        );
    }

    #[test]
    fn base64_is_binary_safe_and_keeps_trailing_nul() {
        assert_eq!(base64_encode(b""), b"");
        assert_eq!(base64_encode(b"f"), b"Zg==");
        assert_eq!(base64_encode(b"fo"), b"Zm8=");
        assert_eq!(base64_encode(b"foo"), b"Zm9v");
        let bin = b"\x00\xffab\x00";
        assert_eq!(base64_decode(&base64_encode(bin)), bin);
        assert_eq!(base64_decode(b"Zm9vYg=="), b"foob");
        assert_eq!(base64_decode(b"Zm9v!!!"), b"foo");
        assert_eq!(base64_decode(b"Zm9vY"), b"foo");
        // Every byte value, at each of the three padding lengths.
        let all: Vec<u8> = (0..=255).collect();
        for len in 254..=256 {
            assert_eq!(base64_decode(&base64_encode(&all[..len])), &all[..len]);
        }
        // '-' and '_' (the URL-safe alphabet) are outside apr's: decoding stops there.
        assert_eq!(base64_decode(b"Zm9v-_"), b"foo");
    }
}
