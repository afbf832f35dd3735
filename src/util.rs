//! Small helpers shared by every module.

/// Renders bytes for a human: printable ASCII as is, everything else as `\xNN`
/// (and `\\`, `\n`, `\r`, `\t`), the way `redis-cli` shows binary keys.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_binary() {
        assert_eq!(super::escape_bytes(b"a\r\n\x00b"), "a\\r\\n\\x00b");
    }
}
