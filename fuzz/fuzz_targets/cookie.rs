//! Cookie headers: never panic; a found value is a substring of the header lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mod_lua_rs_fuzz::form;

fuzz_target!(|data: &[u8]| {
    // First byte chooses the name length; the rest is split into header lines.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize).min(rest.len()).min(16);
    let (name, header) = rest.split_at(n);
    if name.is_empty() {
        return;
    }
    let lines: Vec<&[u8]> = header.split(|&b| b == b'\n').collect();
    if let Ok(Some(v)) = form::cookie_value(lines.iter().copied(), name) {
        assert!(lines
            .iter()
            .any(|l| v.is_empty() || l.windows(v.len()).any(|w| w == v.as_slice())));
    }
});
