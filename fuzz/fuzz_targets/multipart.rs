//! Multipart bodies: never panic, never exceed the part limit, and every part's value is a
//! slice of the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_lua_rs_fuzz::form;

fuzz_target!(|data: &[u8]| {
    // First line: the Content-Type; the rest: the body. Also try a fixed, valid boundary.
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..], &b""[..]),
    };
    for ct in [ct, &b"multipart/form-data; boundary=B"[..]] {
        if let Ok(parts) = form::parse_multipart(ct, body, 50) {
            assert!(parts.len() <= 50);
            for p in parts {
                assert!(p.value.len() <= body.len());
                assert!(
                    p.value.is_empty()
                        || body.windows(p.value.len()).any(|w| w == p.value.as_slice())
                );
            }
        }
    }
});
