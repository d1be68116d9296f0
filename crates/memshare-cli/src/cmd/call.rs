//! `memshare call NAME [REQUEST]`: one request to a request/response
//! service, and its response.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use memshare::rpc::Client;
use memshare::Error;

use crate::duration::{format_duration, parse_duration};
use crate::fail::{status, Failure};
use crate::hex;

use super::text;

/// Send one request to a request/response service and print the response
///
/// Connects to the service NAME as a client, sends REQUEST (without it:
/// all of standard input) as one request, waits for the response and
/// prints it. With --hex the request is hex bytes and the response is
/// printed as lowercase hex and a newline. Otherwise the response is
/// written exactly as it is to a pipe or a file, and to a terminal as one
/// line of text: invalid UTF-8 replaced by U+FFFD, control characters
/// (newlines, escape sequences) written escaped as \n, \u{1b}..., so that
/// it cannot drive the terminal.
///
/// A request longer than the service's largest (its max_request_len) is
/// refused before anything is sent (status 2). Without --timeout, a
/// missing service fails at once (status 3) and the response is waited
/// for as long as it takes; with it, a server is waited for (one that
/// starts within the timeout is used) and then the response.
///
/// Exit status: 0 the response was printed; 2 bad command line, a request
/// too long or not hex; 3 no service of that name (with --timeout: none
/// appeared); 6 the service has no server (it died or left, before or
/// during the call); 7 the service has its max_clients clients connected;
/// 8 the server declined the request (dropped it without a response:
/// `memshare serve --exec` does when its command fails); 9 no response
/// within --timeout; 1 anything else.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service's name
    name: String,
    /// The request (default: standard input, all of it)
    #[arg(value_name = "REQUEST")]
    request: Option<OsString>,
    /// The request is hex bytes (pairs of digits, either case, whitespace
    /// between the pairs allowed); the response is printed as lowercase
    /// hex, two digits per byte, and a newline
    #[arg(long)]
    hex: bool,
    /// Wait at most this long for a server to connect to, then at most
    /// this long for the response: 500ms, 2s, 1.5s, 3m (a bare number is
    /// seconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let name = args.name.as_str();
    let mut client = connect(name, args.timeout)?;
    let max = usize::try_from(client.config().get_max_request_len()).unwrap_or(usize::MAX);
    let request = match &args.request {
        Some(request) => from_argument(request.as_encoded_bytes(), args.hex, max),
        None => from_stdin(&mut std::io::stdin().lock(), args.hex, max),
    }
    .map_err(|problem| problem.failure(name, max))?;
    let response = match args.timeout {
        Some(timeout) => client.call_timeout(&request, timeout),
        None => client.call(&request),
    }
    .map_err(|e| call_failure(name, e, args.timeout))?;
    let mut out = std::io::stdout().lock();
    let written = if args.hex {
        writeln!(out, "{}", hex::encode(&response))
    } else if out.is_terminal() {
        writeln!(out, "{}", text(&response))
    } else {
        out.write_all(&response)
    };
    drop(response);
    match written.and_then(|()| out.flush()) {
        // The reader went away (`| head -c 10`): nothing more to do.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::other(format!("writing to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// Connects to the service `name`: at once, or waiting at most `timeout`
/// for a server.
fn connect(name: &str, timeout: Option<Duration>) -> Result<Client, Failure> {
    let Some(timeout) = timeout else {
        return Client::connect(name).map_err(|e| connect_failure(name, e, None));
    };
    match Client::connect_timeout(name, timeout) {
        // Waited for the name or for its server: one more look says which
        // (and takes a server that came just now).
        Err(Error::TimedOut { .. }) => {
            Client::connect(name).map_err(|e| connect_failure(name, e, Some(timeout)))
        }
        other => other.map_err(|e| connect_failure(name, e, Some(timeout))),
    }
}

/// Why connecting failed, with its status.
fn connect_failure(name: &str, err: Error, waited: Option<Duration>) -> Failure {
    let waited = waited.map(format_duration);
    match (err, waited) {
        (Error::NotFound { .. }, None) => Failure {
            status: status::NOT_FOUND,
            message: format!("no service {name:?} (nothing of that name)"),
        },
        (Error::NotFound { .. }, Some(waited)) => Failure {
            status: status::NOT_FOUND,
            message: format!("no service {name:?} appeared within {waited}"),
        },
        (Error::Disconnected { .. }, None) => Failure {
            status: status::NO_SERVER,
            message: format!("service {name:?} has no server (it died or left)"),
        },
        (Error::Disconnected { .. }, Some(waited)) => Failure {
            status: status::NO_SERVER,
            message: format!(
                "service {name:?} has no server (it died or left), and none came within {waited}"
            ),
        },
        (err @ Error::LimitReached { .. }, _) => Failure {
            status: status::LIMIT_REACHED,
            message: format!("{err}; try again when a client has left"),
        },
        (err, _) => err.into(),
    }
}

/// Why the call failed, with its status.
fn call_failure(name: &str, err: Error, timeout: Option<Duration>) -> Failure {
    match err {
        Error::Disconnected { .. } => Failure {
            status: status::NO_SERVER,
            message: format!("the server of service {name:?} went away before it answered"),
        },
        Error::NoResponse { .. } => Failure {
            status: status::DECLINED,
            message: format!(
                "the server of service {name:?} declined the request (it dropped it without a \
                 response)"
            ),
        },
        Error::TimedOut { .. } => Failure {
            status: status::TIMED_OUT,
            message: format!(
                "timed out: no response from service {name:?} within {}",
                format_duration(timeout.unwrap_or_default())
            ),
        },
        err => err.into(),
    }
}

/// Why the request was not sent.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    /// Longer than the service's `max_request_len`: `len` bytes (`None`:
    /// standard input, not read further).
    TooLong {
        len: Option<usize>,
    },
    Hex(String),
    Io(String),
}

impl Problem {
    fn failure(self, name: &str, max: usize) -> Failure {
        match self {
            Problem::TooLong { len } => Failure::usage(format!(
                "{} more than the {max} bytes service {name:?} takes in a request (its \
                 max_request_len); nothing was sent",
                match len {
                    Some(len) => format!("the request is {len} bytes,"),
                    None => "standard input holds".to_owned(),
                }
            )),
            Problem::Hex(reason) => {
                Failure::usage(format!("invalid hex request: {reason}; nothing was sent"))
            }
            Problem::Io(e) => Failure::other(format!("reading standard input: {e}")),
        }
    }
}

/// The request given on the command line.
fn from_argument(argument: &[u8], hex: bool, max: usize) -> Result<Vec<u8>, Problem> {
    let request = if hex {
        let mut decoder = hex::Decoder::default();
        let mut request = Vec::new();
        decoder.feed(argument, &mut request).map_err(Problem::Hex)?;
        decoder.finish().map_err(Problem::Hex)?;
        request
    } else {
        argument.to_vec()
    };
    if request.len() > max {
        return Err(Problem::TooLong {
            len: Some(request.len()),
        });
    }
    Ok(request)
}

/// The request on standard input, all of it; reading stops as soon as it
/// is longer than `max`.
fn from_stdin(input: &mut impl Read, hex: bool, max: usize) -> Result<Vec<u8>, Problem> {
    let mut decoder = hex.then(hex::Decoder::default);
    let mut request = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Problem::Io(e.to_string())),
        };
        match &mut decoder {
            Some(decoder) => decoder
                .feed(&buf[..n], &mut request)
                .map_err(Problem::Hex)?,
            None => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > max {
            return Err(Problem::TooLong { len: None });
        }
    }
    if let Some(decoder) = decoder {
        decoder.finish().map_err(Problem::Hex)?;
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` a few bytes at a time.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn requests_from_the_argument() {
        assert_eq!(from_argument(b"2+2", false, 3), Ok(b"2+2".to_vec()));
        assert_eq!(from_argument(b"", false, 3), Ok(Vec::new()));
        assert_eq!(from_argument(b"de AD\n", true, 2), Ok(vec![0xde, 0xad]));
        assert_eq!(
            from_argument(b"2+22", false, 3),
            Err(Problem::TooLong { len: Some(4) })
        );
        assert_eq!(
            from_argument(b"000102", true, 2),
            Err(Problem::TooLong { len: Some(3) })
        );
        assert!(
            matches!(from_argument(b"abc", true, 9), Err(Problem::Hex(r)) if r.contains("odd"))
        );
    }

    #[test]
    fn requests_from_stdin() {
        assert_eq!(
            from_stdin(&mut Trickle(b"all of\nit"), false, 9),
            Ok(b"all of\nit".to_vec())
        );
        assert_eq!(
            from_stdin(&mut Trickle(b"0a 0b\n0c\n"), true, 3),
            Ok(vec![10, 11, 12])
        );
        assert_eq!(
            from_stdin(&mut Trickle(b"0123456789"), false, 9),
            Err(Problem::TooLong { len: None })
        );
        assert!(matches!(
            from_stdin(&mut Trickle(b"0a 0x"), true, 9),
            Err(Problem::Hex(r)) if r.contains("column 5")
        ));
    }
}
