//! How the tool fails: one line on standard error and an exit status that
//! says what kind of failure it was.

use std::fmt;

/// The exit statuses, as `memshare --help` lists them.
pub mod status {
    /// Any other failure: a system error, not enough memory, unsupported.
    pub const OTHER: u8 = 1;
    /// A bad command line (clap uses 2 as well): invalid name, size,
    /// offset or length, input that does not fit.
    pub const USAGE: u8 = 2;
    /// No segment of that name.
    pub const NOT_FOUND: u8 = 3;
    /// A segment of that name already exists.
    pub const ALREADY_EXISTS: u8 = 4;
    /// Permission denied.
    pub const PERMISSION_DENIED: u8 = 5;
    /// `call`: the service has no server (it died or left).
    pub const NO_SERVER: u8 = 6;
    /// `call`: the service has its maximum of clients connected.
    pub const LIMIT_REACHED: u8 = 7;
    /// `call`: the server declined the request (dropped it unanswered).
    pub const DECLINED: u8 = 8;
    /// `call`: no response within `--timeout`.
    pub const TIMED_OUT: u8 = 9;
}

/// The exit statuses, for `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  any other failure (a system error, not enough memory, unsupported here)
  2  bad command line: unknown option, invalid name, size, offset or length,
     input that does not fit
  3  no segment of that name
  4  a segment of that name already exists
  5  permission denied (for example another user's segment)
  6  call: the service has no server (it died or left)
  7  call: the service has its maximum of clients (max_clients) connected
  8  call: the server declined the request (answered it with no response)
  9  call: no response within --timeout";

/// A failed command: what to print, and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The exit status, one of [`status`].
    pub status: u8,
    /// The message; empty when it was already printed (see [`Failure::reported`]).
    pub message: String,
}

impl Failure {
    /// A bad command line.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            status: status::USAGE,
            message: message.into(),
        }
    }

    /// Any other failure.
    pub fn other(message: impl Into<String>) -> Failure {
        Failure {
            status: status::OTHER,
            message: message.into(),
        }
    }

    /// A failure whose messages were printed already (commands that go on
    /// after a failure, like `rm` with several names).
    pub fn reported(status: u8) -> Failure {
        Failure {
            status,
            message: String::new(),
        }
    }

    /// The kind of failure, one word for JSON: `not_found`,
    /// `already_exists`, `permission_denied`, `bad_input`, `no_server`,
    /// `limit_reached`, `declined`, `timed_out` or `other`. (For `ls` and
    /// `info`'s JSON: Unix's.)
    #[cfg_attr(not(unix), allow(dead_code))]
    pub fn kind(&self) -> &'static str {
        match self.status {
            status::USAGE => "bad_input",
            status::NOT_FOUND => "not_found",
            status::ALREADY_EXISTS => "already_exists",
            status::PERMISSION_DENIED => "permission_denied",
            status::NO_SERVER => "no_server",
            status::LIMIT_REACHED => "limit_reached",
            status::DECLINED => "declined",
            status::TIMED_OUT => "timed_out",
            _ => "other",
        }
    }

    /// Prints the message, if there is one, as `memshare: error: ...`.
    pub fn print(&self) {
        if !self.message.is_empty() {
            eprintln!("memshare: error: {}", self.message);
        }
    }
}

impl Failure {
    /// The failure for a command line clap refused, as one line; `None` for
    /// what is no failure but a request (`--help`, `--version`, and the
    /// help a bare `memshare` prints), which clap prints itself.
    pub fn from_parse_error(err: &clap::Error) -> Option<Failure> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        match err.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => return None,
            // A value our parsers refused (a size, an offset): their reason.
            ErrorKind::ValueValidation => {
                if let Some(reason) = std::error::Error::source(err) {
                    let arg = match err.get(ContextKind::InvalidArg) {
                        Some(ContextValue::String(arg)) => arg.as_str(),
                        _ => "argument",
                    };
                    return Some(Failure::usage(format!("invalid {arg}: {reason}")));
                }
            }
            _ => {}
        }
        Some(Failure::usage(one_line(&err.render().to_string())))
    }
}

/// Clap's rendering of an error (`error: ...`, its continuation lines, then
/// paragraphs of tips and usage, then `For more information...`) as one
/// line: `MESSAGE; TIP (usage: USAGE)`.
fn one_line(rendered: &str) -> String {
    let flat = |paragraph: &str| {
        paragraph
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut message = String::new();
    let mut usage = None;
    for paragraph in rendered.split("\n\n").map(flat) {
        if let Some(text) = paragraph.strip_prefix("error: ") {
            message.push_str(text);
        } else if let Some(text) = paragraph.strip_prefix("tip: ") {
            message.push_str("; ");
            message.push_str(text);
        } else if let Some(text) = paragraph.strip_prefix("Usage: ") {
            usage = Some(text.to_owned());
        }
    }
    if let Some(usage) = usage {
        message.push_str(&format!(" (usage: {usage})"));
    }
    message
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<memshare::Error> for Failure {
    fn from(err: memshare::Error) -> Failure {
        use memshare::Error;
        let status = match &err {
            Error::NotFound { .. } => status::NOT_FOUND,
            Error::AlreadyExists { .. } => status::ALREADY_EXISTS,
            Error::PermissionDenied { .. } => status::PERMISSION_DENIED,
            Error::InvalidName { .. } | Error::OutOfRange { .. } | Error::InvalidInput { .. } => {
                status::USAGE
            }
            _ => status::OTHER,
        };
        Failure {
            status,
            message: err.to_string(),
        }
    }
}

/// Remembers the failures of a command that goes on after each one, and
/// gives the exit status of the whole: the common status if they all agree,
/// [`status::OTHER`] if they differ.
#[derive(Debug, Default)]
pub struct Failures {
    status: Option<u8>,
}

impl Failures {
    /// Prints `failure` and remembers its status.
    pub fn add(&mut self, failure: Failure) {
        failure.print();
        self.status = Some(match self.status {
            None => failure.status,
            Some(s) if s == failure.status => s,
            Some(_) => status::OTHER,
        });
    }

    /// Whether nothing failed so far.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
    }

    /// `Ok` if nothing failed.
    pub fn finish(self) -> Result<(), Failure> {
        match self.status {
            None => Ok(()),
            Some(status) => Err(Failure::reported(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_get_their_status() {
        let not_found = memshare::Segment::open("memshare-cli-unit-absent").unwrap_err();
        assert_eq!(Failure::from(not_found).status, status::NOT_FOUND);
        let invalid = memshare::validate_name("a/b").unwrap_err();
        assert_eq!(Failure::from(invalid).status, status::USAGE);
    }

    #[test]
    fn clap_errors_are_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <SIZE>\n\n\
                        Usage: memshare create <NAME> <SIZE>\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <SIZE> \
             (usage: memshare create <NAME> <SIZE>)"
        );
        let rendered = "error: unexpected argument '--jsn' found\n\n  \
                        tip: a similar argument exists: '--json'\n\n\
                        Usage: memshare ls --json\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "unexpected argument '--jsn' found; a similar argument exists: '--json' \
             (usage: memshare ls --json)"
        );
    }

    #[test]
    fn mixed_failures_are_other() {
        let mut all = Failures::default();
        all.add(Failure::reported(status::NOT_FOUND));
        all.add(Failure::reported(status::NOT_FOUND));
        assert_eq!(all.finish().unwrap_err().status, status::NOT_FOUND);
        let mut all = Failures::default();
        all.add(Failure::reported(status::NOT_FOUND));
        all.add(Failure::reported(status::PERMISSION_DENIED));
        assert_eq!(all.finish().unwrap_err().status, status::OTHER);
        assert!(Failures::default().finish().is_ok());
    }
}
