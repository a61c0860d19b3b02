//! Query strings and urlencoded bodies: never panic, and every decoded pair comes from the
//! input's `&`-separated pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_lua_rs_fuzz::{encode, form};

fuzz_target!(|data: &[u8]| {
    let pieces = data.split(|&b| b == b'&').filter(|p| !p.is_empty()).count();
    assert!(form::parse_args(data).count() <= pieces);
    assert!(form::parse_urlencoded(data).count() <= pieces);
    if let Some(decoded) = encode::unescape_urlencoded(data) {
        assert!(decoded.len() <= data.len());
        // `%00` is refused on purpose, so only NUL-free text round-trips.
        if !decoded.contains(&0) {
            assert_eq!(
                encode::unescape_urlencoded(&encode::escape_urlencoded(&decoded)),
                Some(decoded)
            );
        }
    }
    let b64 = encode::base64_encode(data);
    assert_eq!(encode::base64_decode(&b64), data);
});
