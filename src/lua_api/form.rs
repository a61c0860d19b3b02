//! Pure parsers for query strings and urlencoded bodies, in document order with every value
//! kept (mod_lua's parseargs collapses repeated keys and its parsebody reverses them).
#![forbid(unsafe_code)]

/// Decodes `%XX` escapes as httpd's `ap_unescape_url` does for parseargs: a malformed escape
/// stays literally, and `%00` ends the value (a C string ends there). With `plus`, `+` becomes a
/// space first (form bodies, `ap_unescape_urlencoded`).
pub fn unescape(s: &[u8], plus: bool) -> Vec<u8> {
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
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a query string like httpd's `ap_args_to_table`: pairs separated by `&` (empty ones
/// skipped), a key without `=` gets the value "1", `+` stays `+`.
pub fn parse_args(args: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    args.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(eq) => (unescape(&p[..eq], false), unescape(&p[eq + 1..], false)),
            None => (unescape(p, false), b"1".to_vec()),
        })
        .collect()
}

/// Parses an `application/x-www-form-urlencoded` body like httpd's `ap_parse_form_data`:
/// pairs separated by `&`, `+` is a space, pairs without `=` are dropped.
pub fn parse_urlencoded(body: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    body.split(|&b| b == b'&')
        .filter_map(|p| {
            let eq = p.iter().position(|&b| b == b'=')?;
            Some((unescape(&p[..eq], true), unescape(&p[eq + 1..], true)))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, String)> {
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
            s(&parse_args(b"a=1&b=x%20y&a=2&&flag&c=1+1")),
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
        assert_eq!(unescape(b"100%", false), b"100%");
        assert_eq!(unescape(b"%zz%4", false), b"%zz%4");
        assert_eq!(unescape(b"ab%00cd", false), b"ab");
        assert_eq!(unescape(b"a+b%2B", true), b"a b+");
        assert_eq!(unescape(b"%e2%82%ac", false), "€".as_bytes());
    }

    #[test]
    fn urlencoded_bodies() {
        assert_eq!(
            s(&parse_urlencoded(b"hello=7&hello=1&novalue&x=a+b")),
            vec![
                ("hello".into(), "7".into()),
                ("hello".into(), "1".into()),
                ("x".into(), "a b".into())
            ]
        );
    }
}
