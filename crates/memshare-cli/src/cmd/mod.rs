//! The subcommands, one module each.

pub mod cat;
pub mod create;
pub mod demo;
pub mod gc;
pub mod info;
pub mod ls;
pub mod publish;
pub mod rm;
pub mod subscribe;
pub mod write;

use std::io::Write;

use crate::fail::Failure;

/// Prints `value` as pretty JSON and a newline.
fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::other(format!("encoding JSON: {e}")))?;
    print_stdout(&format!("{text}\n"))
}

/// For a command asked for JSON: prints `failure` as a JSON object too,
/// `{"error": {"kind": ..., "message": ...}}` (see [`Failure::kind`]), so
/// that a script reading standard output gets JSON either way; returns the
/// failure, for its error line and status.
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
