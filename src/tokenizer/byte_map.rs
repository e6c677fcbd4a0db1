//! GPT-2's reversible byte ↔ "printable character" table (`bytes_to_unicode` in the original
//! encoder.py). Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte order,
//! to U+0100, U+0101, ... so that no token string contains whitespace or control characters.

/// The character that stands for `byte` in token strings (e.g. b' ' → 'Ġ').
pub fn byte_to_char(byte: u8) -> char {
    BYTE_TO_CHAR[byte as usize]
}

/// Inverse of [`byte_to_char`]; `None` for characters no byte maps to.
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x100 {
        if is_printable_latin1(cp as u8) {
            Some(cp as u8)
        } else {
            None
        }
    } else if cp < 0x100 + 68 {
        Some(SHIFTED_BYTES[(cp - 0x100) as usize])
    } else {
        None
    }
}

/// Appends the bytes a token string stands for. Characters outside the table (only possible in
/// hand-made vocabularies) contribute their own UTF-8 encoding.
pub fn token_to_bytes(token: &str, out: &mut Vec<u8>) {
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

const fn is_printable_latin1(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

const fn build_byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0usize;
    while b < 256 {
        if is_printable_latin1(b as u8) {
            table[b] = match char::from_u32(b as u32) {
                Some(c) => c,
                None => '\0',
            };
        } else {
            table[b] = match char::from_u32(next) {
                Some(c) => c,
                None => '\0',
            };
            next += 1;
        }
        b += 1;
    }
    table
}

const fn build_shifted_bytes() -> [u8; 68] {
    let mut table = [0u8; 68];
    let mut n = 0usize;
    let mut b = 0usize;
    while b < 256 {
        if !is_printable_latin1(b as u8) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
}

static BYTE_TO_CHAR: [char; 256] = build_byte_to_char();
static SHIFTED_BYTES: [u8; 68] = build_shifted_bytes();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_entries() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(byte_to_char(0xA0), 'ł');
    }

    #[test]
    fn round_trip_all_bytes() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert!(!c.is_whitespace() && !c.is_control());
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('\u{144}'), None);
        let mut out = Vec::new();
        token_to_bytes("Ġhi€", &mut out);
        assert_eq!(out, b" hi\xE2\x82\xAC");
    }
}
