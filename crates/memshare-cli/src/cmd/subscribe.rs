//! `memshare sub NAME`: the messages of a service, as they come.

use std::io::{BufWriter, Write};
use std::time::Duration;

use memshare::pubsub::{Sample, Subscriber};
use memshare::Error;

use crate::duration::{format_duration, parse_duration};
use crate::fail::{status, Failure};
use crate::hex;

use super::text;

/// Print the messages of a publish-subscribe service as they come
///
/// Attaches as a subscriber of the service NAME and prints every message
/// published from then on (after the service's history, if it keeps one),
/// one line per message. By default the line is the message as text:
/// invalid UTF-8 replaced by U+FFFD, control characters (newlines, escape
/// sequences) written escaped as \n, \u{1b}..., so that each message stays
/// one line and none can drive the terminal; --hex and --json give the
/// exact bytes.
///
/// Stops after --count messages, or once every publisher is gone and
/// everything they published was printed (status 0 both), or, with
/// --timeout, when no message came for that long (status 1, a `timed out`
/// error line). A service that no publisher has attached to yet is waited
/// on. Without --timeout a missing service is status 3 at once; with it,
/// the service is waited for (status 3 if it does not appear).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service's name
    name: String,
    /// Stop after this many messages
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Print each message as lowercase hex, two digits per byte (what
    /// `memshare pub --hex` reads)
    #[arg(long, conflicts_with = "json")]
    hex: bool,
    /// Print each message as a JSON object on one line: {"publisher": the
    /// publisher's id (16 hex digits), "sequence": its number from that
    /// publisher (0 for its first), "len": bytes, "payload_hex": the bytes
    /// as lowercase hex}. The payload is given in hex only (no base64)
    #[arg(long)]
    json: bool,
    /// Give up when the service has not appeared, or no message has come,
    /// for this long: 500ms, 2s, 1.5s, 3m (a bare number is seconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// On standard error: the subscriber slot taken, messages missed (a
    /// subscriber that falls --depth behind under drop-oldest), and why
    /// it stopped
    #[arg(short, long)]
    verbose: bool,
}

/// What a wait for the next message ended with.
enum Received<'a> {
    Sample(Sample<'a>),
    /// Every publisher is gone, and everything was received.
    Disconnected,
    /// Nothing came within `--timeout`.
    TimedOut,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let name = args.name.as_str();
    let subscriber = open(name, args.timeout)?;
    if args.verbose {
        eprintln!(
            "memshare: subscribed to {name:?} (subscriber slot {})",
            subscriber.slot()
        );
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut received: u64 = 0;
    let mut missed = 0;
    let outcome = loop {
        if args.count.is_some_and(|n| received >= n) {
            break Ok(());
        }
        let sample = match receive(&subscriber, args.timeout, &mut out)? {
            Received::Sample(sample) => sample,
            Received::Disconnected => {
                if args.verbose {
                    eprintln!(
                        "memshare: every publisher of {name:?} is gone and everything they \
                         published was received: {received} messages"
                    );
                }
                break Ok(());
            }
            Received::TimedOut => {
                break Err(Failure::other(format!(
                    "timed out: no message from service {name:?} within {} ({received} received)",
                    format_duration(args.timeout.unwrap_or_default())
                )))
            }
        };
        received += 1;
        if args.verbose && subscriber.missed() > missed {
            eprintln!(
                "memshare: missed {} messages before sequence {} (this subscriber fell more than \
                 the service's depth behind)",
                subscriber.missed() - missed,
                sample.sequence()
            );
            missed = subscriber.missed();
        }
        let line = if args.json {
            format_json(&sample)?
        } else if args.hex {
            hex::encode(&sample)
        } else {
            text(&sample)
        };
        drop(sample);
        if !written(writeln!(out, "{line}"))? {
            return Ok(());
        }
    };
    written(out.flush())?;
    outcome
}

/// Attaches to the service `name`, waiting for it for `timeout` if given.
fn open(name: &str, timeout: Option<Duration>) -> Result<Subscriber, Failure> {
    let Some(timeout) = timeout else {
        return Ok(Subscriber::open(name)?);
    };
    Subscriber::open_timeout(name, timeout).map_err(|e| match e {
        Error::TimedOut { .. } => Failure {
            status: status::NOT_FOUND,
            message: format!(
                "no service {name:?} appeared within {}",
                format_duration(timeout)
            ),
        },
        e => e.into(),
    })
}

/// The next message: at once if one is waiting; else, after flushing
/// what was printed (so that a reader sees each message as it comes, yet a
/// burst is written in few system calls), waiting for at most `timeout`.
fn receive<'a>(
    subscriber: &'a Subscriber,
    timeout: Option<Duration>,
    out: &mut impl Write,
) -> Result<Received<'a>, Failure> {
    match subscriber.try_recv() {
        Ok(Some(sample)) => return Ok(Received::Sample(sample)),
        Ok(None) | Err(Error::Disconnected { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if !written(out.flush())? {
        // Nobody reads any more: as good as the end.
        return Ok(Received::Disconnected);
    }
    let result = match timeout {
        Some(timeout) => subscriber.recv_timeout(timeout),
        None => subscriber.recv(),
    };
    match result {
        Ok(sample) => Ok(Received::Sample(sample)),
        Err(Error::TimedOut { .. }) => Ok(Received::TimedOut),
        Err(Error::Disconnected { .. }) => Ok(Received::Disconnected),
        Err(e) => Err(e.into()),
    }
}

/// `Ok(false)` if the reader of standard output went away (`| head`): not
/// an error, the end.
fn written(result: std::io::Result<()>) -> Result<bool, Failure> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::other(format!("writing to standard output: {e}"))),
    }
}

/// A message as JSON (see `--json`), its fields in this order.
#[derive(serde::Serialize)]
struct MessageJson {
    publisher: String,
    sequence: u64,
    len: usize,
    payload_hex: String,
}

/// A message as one line of JSON.
fn format_json(sample: &Sample<'_>) -> Result<String, Failure> {
    serde_json::to_string(&MessageJson {
        publisher: sample.publisher().to_string(),
        sequence: sample.sequence(),
        len: sample.len(),
        payload_hex: hex::encode(sample),
    })
    .map_err(|e| Failure::other(format!("encoding JSON: {e}")))
}
