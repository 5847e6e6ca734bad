//! Checks on untrusted input that every API applies the same way.

/// Whether JSON text carries a NUL character: the escape `\u0000` in a string, or a raw NUL
/// byte. PostgreSQL cannot store NUL in text, and SQLite would store what PostgreSQL refuses,
/// so both profiles refuse it up front with the same answer.
pub fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            0 => return true,
            b'\\' => {
                if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                    return true;
                }
                // Skip the escaped character, so that `\\u0000` (a backslash, then `u0000`)
                // is not taken for an escape.
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Whether a decoded path segment, query value or other text carries a NUL character.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::json_has_nul;

    #[test]
    fn finds_escaped_and_raw_nul_only() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul(b"{\"a\":\"\0\"}"));
        assert!(json_has_nul(br#"{"a\u0000":1}"#));
        assert!(!json_has_nul(br#"{"a":"\\u0000"}"#), "an escaped backslash");
        assert!(
            json_has_nul(br#"{"a":"\\\u0000"}"#),
            "a backslash, then NUL"
        );
        assert!(!json_has_nul(br#"{"a":"\u0001 \n \"0000"}"#));
        assert!(!json_has_nul(br#"{"a":"trailing\"#));
    }
}
