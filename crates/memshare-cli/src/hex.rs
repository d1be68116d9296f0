//! Bytes as hex text, for `pub --hex` and `sub --hex`/`--json`.

/// `bytes` as lowercase hex, two digits per byte, nothing between.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

/// Decodes hex text fed a piece at a time (a line that is still being
/// read): pairs of digits, in either case, with whitespace allowed between
/// the pairs.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The first digit of a pair, waiting for the second.
    high: Option<u8>,
    /// How many bytes of text were fed, for the column in errors.
    fed: usize,
}

impl Decoder {
    /// Decodes `text`, appending the bytes to `out`. The error says what
    /// is wrong and at which column (counted in bytes from 1).
    pub fn feed(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        for &c in text {
            self.fed += 1;
            if c.is_ascii_whitespace() {
                if self.high.is_some() {
                    return Err(format!(
                        "whitespace at column {} splits a byte (hex digits go in pairs)",
                        self.fed
                    ));
                }
                continue;
            }
            let Some(digit) = char::from(c).to_digit(16) else {
                return Err(format!(
                    "{} at column {} is not a hex digit",
                    shown(c),
                    self.fed
                ));
            };
            // A hex digit is below 16.
            let digit = digit as u8;
            match self.high.take() {
                None => self.high = Some(digit),
                Some(high) => out.push(high << 4 | digit),
            }
        }
        Ok(())
    }

    /// Ends the text: an error if a digit is left without its pair.
    pub fn finish(self) -> Result<(), String> {
        match self.high {
            None => Ok(()),
            Some(_) => Err("an odd number of hex digits (each byte is two)".to_owned()),
        }
    }
}

/// A byte for an error message: a printable ASCII character quoted, any
/// other byte as `byte 0xNN`.
fn shown(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("{:?}", char::from(c))
    } else {
        format!("byte 0x{c:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(pieces: &[&str]) -> Result<Vec<u8>, String> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for piece in pieces {
            decoder.feed(piece.as_bytes(), &mut out)?;
        }
        decoder.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&[&encode(&all)]), Ok(all));
        assert_eq!(encode(b"\x00\xffA"), "00ff41");
        assert_eq!(decode(&[""]), Ok(vec![]));
    }

    #[test]
    fn whitespace_between_pairs_either_case_any_pieces() {
        assert_eq!(
            decode(&[" DE ad\tbe", "Ef \r"]),
            Ok(vec![0xde, 0xad, 0xbe, 0xef])
        );
        assert_eq!(decode(&["d", "e"]), Ok(vec![0xde]));
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            decode(&["00", " 1g"]).unwrap_err(),
            "'g' at column 5 is not a hex digit"
        );
        assert_eq!(
            decode(&["\u{e9}"]).unwrap_err(),
            "byte 0xc3 at column 1 is not a hex digit"
        );
        assert_eq!(
            decode(&["a b"]).unwrap_err(),
            "whitespace at column 2 splits a byte (hex digits go in pairs)"
        );
        assert!(decode(&["abc"]).unwrap_err().contains("odd number"));
    }
}
