//! Segment names: what is allowed, and why.

use crate::{Error, Result};

/// The longest name memshare accepts, in bytes.
///
/// macOS limits a POSIX shared-memory name to 31 bytes including the leading
/// slash that memshare adds, so 30 bytes is the longest name that works on
/// every supported platform.
pub const MAX_NAME_LEN: usize = 30;

/// Checks that `name` is a valid segment name, and says which rule it breaks
/// if it is not.
///
/// A name is 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `.`, `_`
/// and `-`, and does not start with `.` (so it is never `.` or `..`, nor a
/// hidden file where the system shows names as files). memshare adds the
/// platform's prefix itself (`/` for POSIX `shm_open`, `Local\` on Windows):
/// the name you give is the name other programs use, for example Python's
/// `multiprocessing.shared_memory.SharedMemory(name=...)`.
///
/// ```
/// use memshare::{validate_name, Error};
///
/// assert!(validate_name("camera-frames.0").is_ok());
/// assert!(matches!(validate_name("a/b"), Err(Error::InvalidName { .. })));
/// assert!(matches!(validate_name(""), Err(Error::InvalidName { .. })));
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("a name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("a name must be at most 30 bytes long (the portable limit, set by macOS)");
    }
    if name.starts_with('.') {
        return invalid("a name must not start with '.'");
    }
    if name.bytes().any(|b| b == b'/' || b == b'\\') {
        return invalid("a name must not contain a path separator ('/' or '\\')");
    }
    if name.bytes().any(|b| b == 0) {
        return invalid("a name must not contain a NUL byte");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("a name may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> &'static str {
        match validate_name(name) {
            Err(Error::InvalidName { reason, .. }) => reason,
            other => panic!("{name:?} gave {other:?}"),
        }
    }

    #[test]
    fn accepts_the_portable_alphabet() {
        for name in ["a", "A-Z_0.9", "x".repeat(MAX_NAME_LEN).as_str(), "seg.."] {
            validate_name(name).unwrap();
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert!(reason("").contains("empty"));
        assert!(reason(&"x".repeat(MAX_NAME_LEN + 1)).contains("30 bytes"));
        assert!(reason(".").contains("start with '.'"));
        assert!(reason("..").contains("start with '.'"));
        assert!(reason("a/b").contains("separator"));
        assert!(reason("/a").contains("separator"));
        assert!(reason("a\\b").contains("separator"));
        assert!(reason("a\0b").contains("NUL"));
        assert!(reason("a b").contains("only contain"));
        assert!(reason("é").contains("only contain"));
    }
}
