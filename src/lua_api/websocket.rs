//! WebSocket (RFC 6455) pieces that need no I/O: the handshake check and accept key, frame
//! headers, and close payloads. The request methods in `request.rs` do the I/O through the
//! connection filters (so TLS works) with these.
#![forbid(unsafe_code)]

use super::encode::base64_encode;

/// The GUID of RFC 6455 §1.3.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest message payload r:wsread accepts (larger frames close the connection with 1009).
pub const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Why an upgrade request is refused.
pub fn check_handshake(
    method: &[u8],
    upgrade: Option<&[u8]>,
    connection: Option<&[u8]>,
    version: Option<&[u8]>,
    key: Option<&[u8]>,
) -> Result<(), &'static str> {
    if method != b"GET" {
        return Err("the method must be GET");
    }
    if !upgrade.is_some_and(|u| u.trim_ascii().eq_ignore_ascii_case(b"websocket")) {
        return Err("no 'Upgrade: websocket' header");
    }
    let has_upgrade_token = connection.is_some_and(|c| {
        c.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !has_upgrade_token {
        return Err("no 'Connection: Upgrade' header");
    }
    if version.map(|v| v.trim_ascii()) != Some(b"13") {
        return Err("Sec-WebSocket-Version must be 13");
    }
    match key {
        Some(k) if super::encode::base64_decode(k.trim_ascii()).len() == 16 => Ok(()),
        _ => Err("missing or malformed Sec-WebSocket-Key"),
    }
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)), with the SHA-1 supplied.
pub fn accept_key(key: &[u8], sha1: impl Fn(&[u8]) -> [u8; 20]) -> String {
    let mut input = key.trim_ascii().to_vec();
    input.extend_from_slice(GUID);
    String::from_utf8(base64_encode(&sha1(&input))).expect("base64 is ASCII")
}

/// A server frame header (never masked) for a payload of `len` bytes.
pub fn frame_header(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    h.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    if len < 126 {
        h.push(len as u8);
    } else if len <= 0xFFFF {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&(len as u64).to_be_bytes());
    }
    h
}

/// The fixed part of a frame header: (fin, opcode, masked, 7-bit length).
pub fn parse_first_two(b: [u8; 2]) -> (bool, u8, bool, u8) {
    (b[0] & 0x80 != 0, b[0] & 0x0F, b[1] & 0x80 != 0, b[1] & 0x7F)
}

/// Reserved bits must be zero without negotiated extensions.
pub fn reserved_bits(b0: u8) -> bool {
    b0 & 0x70 != 0
}

pub fn unmask(payload: &mut [u8], key: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// A close frame's payload: the status code (and no reason text).
pub fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        assert_eq!(frame_header(true, OP_TEXT, 5), vec![0x81, 5]);
        assert_eq!(frame_header(true, OP_BINARY, 125), vec![0x82, 125]);
        assert_eq!(frame_header(true, OP_TEXT, 126), vec![0x81, 126, 0, 126]);
        assert_eq!(
            frame_header(true, OP_TEXT, 65535),
            vec![0x81, 126, 0xFF, 0xFF]
        );
        assert_eq!(
            frame_header(true, OP_TEXT, 65536),
            vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(frame_header(false, OP_CONTINUATION, 0), vec![0x00, 0]);
        assert_eq!(parse_first_two([0x89, 0x85]), (true, OP_PING, true, 5));
        assert!(reserved_bits(0xC1));
    }

    #[test]
    fn handshake_checks() {
        let key = Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]);
        let ok = check_handshake(
            b"GET",
            Some(b"websocket"),
            Some(b"keep-alive, Upgrade"),
            Some(b"13"),
            key,
        );
        assert_eq!(ok, Ok(()));
        assert!(check_handshake(
            b"POST",
            Some(b"websocket"),
            Some(b"Upgrade"),
            Some(b"13"),
            key
        )
        .is_err());
        assert!(check_handshake(b"GET", None, Some(b"Upgrade"), Some(b"13"), key).is_err());
        assert!(
            check_handshake(b"GET", Some(b"websocket"), Some(b"close"), Some(b"13"), key).is_err()
        );
        assert!(check_handshake(
            b"GET",
            Some(b"websocket"),
            Some(b"Upgrade"),
            Some(b"8"),
            key
        )
        .is_err());
        assert!(check_handshake(
            b"GET",
            Some(b"websocket"),
            Some(b"Upgrade"),
            Some(b"13"),
            Some(b"short")
        )
        .is_err());
        let mut p = *b"Hello";
        unmask(&mut p, [0x37, 0xfa, 0x21, 0x3d]);
        unmask(&mut p, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&p, b"Hello");
        assert_eq!(close_payload(1009), [0x03, 0xF1]);
    }
}
