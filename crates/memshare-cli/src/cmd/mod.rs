//! The subcommands, one module each.

pub mod call;
pub mod cat;
pub mod create;
pub mod demo;
#[cfg(unix)]
pub mod gc;
#[cfg(unix)]
pub mod info;
#[cfg(unix)]
pub mod ls;
pub mod publish;
pub mod rm;
pub mod serve;
pub mod subscribe;
pub mod write;

use std::io::Write;

use crate::fail::Failure;

/// Prints `value` as pretty JSON and a newline.
#[cfg(unix)]
fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::other(format!("encoding JSON: {e}")))?;
    print_stdout(&format!("{text}\n"))
}

/// For a command asked for JSON: prints `failure` as a JSON object too,
/// `{"error": {"kind": ..., "message": ...}}` (see [`Failure::kind`]), so
/// that a script reading standard output gets JSON either way; returns the
/// failure, for its error line and status.
#[cfg(unix)]
fn json_failure(failure: Failure) -> Failure {
    let error = serde_json::json!({
        "error": { "kind": failure.kind(), "message": failure.message }
    });
    match print_json(&error) {
        Ok(()) => failure,
        Err(printing) => printing,
    }
}

/// Writes `text` to standard output. A reader that went away (`| head`)
/// is not an error.
pub fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::other(format!("writing to standard output: {e}"))),
    }
}

/// Bytes as one line of text, safe to show on a terminal (`sub`'s
/// messages, `call`'s responses): invalid UTF-8 replaced, control
/// characters but tab escaped (`\n`, `\u{1b}`).
fn text(bytes: &[u8]) -> String {
    let mut line = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() && c != '\t' {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_safe_line() {
        assert_eq!(text(b"plain text"), "plain text");
        assert_eq!(text(b"a\tb"), "a\tb");
        assert_eq!(text(b"two\nlines\r"), "two\\nlines\\r");
        assert_eq!(text(b"\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(text(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
    }
}
