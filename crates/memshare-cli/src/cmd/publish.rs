//! `memshare pub NAME`: each line of standard input, published.

use std::io::BufRead;

use memshare::pubsub::{Overflow, Publisher, ServiceConfig};

use crate::fail::Failure;
use crate::hex;
use crate::size::parse_size;

/// Publish each line of standard input to a publish-subscribe service
///
/// Attaches as a publisher of the service NAME and publishes every line of
/// standard input as one message, without its newline (an empty line is an
/// empty message; with --hex each line is hex bytes). Each message reaches
/// every subscriber attached at the time (and, with --history, later ones).
/// At the end of the input the publisher detaches: subscribers receive what
/// is left, then see that no publisher is there.
///
/// A line longer than the service's maximum message length, or a line that
/// is not hex with --hex, stops the command: an error line naming the line
/// number, status 2; the lines before it were published, none after.
/// Under the overflow policy "block", publishing waits while a subscriber
/// has `depth` messages waiting. Prints nothing on success (see --verbose).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service's name
    name: String,
    /// Create the service if it does not exist, with the configuration
    /// below (an existing service is joined as it is: its configuration
    /// stays)
    #[arg(long)]
    create: bool,
    /// Each line is hex bytes (pairs of digits, either case, whitespace
    /// between the pairs allowed), not the message itself
    #[arg(long)]
    hex: bool,
    /// On standard error, one line per message published: its sequence
    /// number and length
    #[arg(short, long)]
    verbose: bool,
    /// With --create: how many publishers may be attached at once, 1 to 64
    #[arg(long, value_name = "N", requires = "create",
          default_value_t = ServiceConfig::new().get_max_publishers())]
    max_publishers: u32,
    /// With --create: how many subscribers may be attached at once, 1 to 64
    #[arg(long, value_name = "N", requires = "create",
          default_value_t = ServiceConfig::new().get_max_subscribers())]
    max_subscribers: u32,
    /// With --create: the largest message, at most 4G - 1 (units as for
    /// sizes: 4K, 1M…; every buffer of the publisher's pool is this large)
    #[arg(long, value_name = "SIZE", requires = "create", value_parser = parse_size,
          default_value_t = ServiceConfig::new().get_max_message_len())]
    max_message_len: u64,
    /// With --create: how many messages each subscriber can have waiting,
    /// 1 to 1048576
    #[arg(long, value_name = "N", requires = "create",
          default_value_t = ServiceConfig::new().get_depth())]
    depth: u32,
    /// With --create: how many of the latest messages a subscriber that
    /// attaches later receives first (0 to --depth)
    #[arg(long, value_name = "N", requires = "create",
          default_value_t = ServiceConfig::new().get_history())]
    history: u32,
    /// With --create: how many messages a subscriber may hold at once
    /// (1 to 64)
    #[arg(long, value_name = "N", requires = "create",
          default_value_t = ServiceConfig::new().get_max_held())]
    max_held: u32,
    /// With --create: when a subscriber has --depth messages waiting, the
    /// publisher waits (block) or the subscriber loses its oldest
    /// (drop-oldest)
    #[arg(long, value_enum, requires = "create",
          default_value_t = OverflowArg::from(ServiceConfig::new().get_overflow()))]
    overflow: OverflowArg,
}

/// `--overflow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OverflowArg {
    /// The publisher waits: nothing is lost, the slowest subscriber sets
    /// the pace
    Block,
    /// The publisher never waits: a subscriber that falls behind loses its
    /// oldest messages
    DropOldest,
}

impl From<Overflow> for OverflowArg {
    fn from(policy: Overflow) -> OverflowArg {
        match policy {
            Overflow::Block => OverflowArg::Block,
            Overflow::DropOldest => OverflowArg::DropOldest,
        }
    }
}

impl std::fmt::Display for OverflowArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let value = self.to_possible_value().expect("no value is skipped");
        f.write_str(value.get_name())
    }
}

impl Args {
    fn config(&self) -> ServiceConfig {
        ServiceConfig::new()
            .max_publishers(self.max_publishers)
            .max_subscribers(self.max_subscribers)
            .max_message_len(self.max_message_len)
            .depth(self.depth)
            .history(self.history)
            .max_held(self.max_held)
            .overflow(match self.overflow {
                OverflowArg::Block => Overflow::Block,
                OverflowArg::DropOldest => Overflow::DropOldest,
            })
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let name = args.name.as_str();
    let config = args.config();
    let mut publisher = if args.create {
        Publisher::open_or_create(name, config)
    } else {
        Publisher::open(name)
    }?;
    let max = usize::try_from(publisher.config().get_max_message_len()).unwrap_or(usize::MAX);
    let mut input = std::io::stdin().lock();
    let mut message = Vec::new();
    let mut number: u64 = 0;
    loop {
        number += 1;
        let line = read_line(&mut input, args.hex, max, &mut message).map_err(|e| match e {
            LineError::Io(e) => Failure::other(format!("reading standard input: {e}")),
            LineError::TooLong => Failure::usage(format!(
                "line {number}: the message is longer than the service's maximum of {max} \
                 bytes; it was not published, nor anything after it"
            )),
            LineError::Hex(reason) => Failure::usage(format!(
                "line {number}: invalid hex: {reason}; it was not published, nor anything \
                 after it"
            )),
        })?;
        if line == Line::End {
            return Ok(());
        }
        let sequence = publisher.next_sequence();
        publisher.publish_copy(&message)?;
        if args.verbose {
            eprintln!(
                "memshare: published sequence {sequence}, {} bytes",
                message.len()
            );
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A message (perhaps empty).
    Message,
    /// The end of the input.
    End,
}

/// Why a line is not a message.
#[derive(Debug)]
enum LineError {
    Io(std::io::Error),
    /// More than `max` bytes.
    TooLong,
    /// Not hex (`--hex`).
    Hex(String),
}

/// Reads the next line of `input` into `message`, without its newline
/// (decoded with `hex`). The input is read a buffer at a time: a line
/// longer than `max` is refused without holding all of it.
fn read_line(
    input: &mut impl BufRead,
    hex: bool,
    max: usize,
    message: &mut Vec<u8>,
) -> Result<Line, LineError> {
    message.clear();
    let mut decoder = hex.then(hex::Decoder::default);
    let mut read_any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            // The last line may lack its newline.
            if !read_any {
                return Ok(Line::End);
            }
            break;
        }
        read_any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let piece = &buf[..newline.unwrap_or(buf.len())];
        match &mut decoder {
            Some(decoder) => decoder.feed(piece, message).map_err(LineError::Hex)?,
            None => message.extend_from_slice(piece),
        }
        if message.len() > max {
            return Err(LineError::TooLong);
        }
        let used = piece.len() + usize::from(newline.is_some());
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if let Some(decoder) = decoder {
        decoder.finish().map_err(LineError::Hex)?;
    }
    Ok(Line::Message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], hex: bool, max: usize) -> Vec<Result<Vec<u8>, String>> {
        // A tiny buffer: lines arrive in many pieces.
        let mut input = std::io::BufReader::with_capacity(3, input);
        let mut message = Vec::new();
        let mut all = Vec::new();
        loop {
            match read_line(&mut input, hex, max, &mut message) {
                Ok(Line::End) => return all,
                Ok(Line::Message) => all.push(Ok(message.clone())),
                Err(e) => {
                    all.push(Err(format!("{e:?}")));
                    return all;
                }
            }
        }
    }

    #[test]
    fn lines_without_their_newlines() {
        let ok = |s: &str| Ok(s.as_bytes().to_vec());
        assert_eq!(lines(b"", false, 100), []);
        assert_eq!(lines(b"\n", false, 100), [ok("")]);
        assert_eq!(
            lines(b"one\ntwo\r\n\nlast", false, 100),
            [ok("one"), ok("two\r"), ok(""), ok("last")]
        );
        assert_eq!(lines(b"longer line\n", false, 100), [ok("longer line")]);
        assert_eq!(
            lines(b"6869 21\n\n ff \n", true, 100),
            [ok("hi!"), ok(""), Ok(vec![0xff])]
        );
    }

    #[test]
    fn too_long_and_bad_hex_stop() {
        assert_eq!(
            lines(b"1234\n12345\nnever", false, 4),
            [Ok(b"1234".to_vec()), Err("TooLong".into())]
        );
        assert_eq!(
            lines(b"00 01 02 03\n00 01 02 03 04\n", true, 4),
            [Ok(vec![0, 1, 2, 3]), Err("TooLong".into())]
        );
        let bad = lines(b"00\n0x\n", true, 4);
        assert_eq!(bad[0], Ok(vec![0]));
        assert!(bad[1].as_ref().unwrap_err().contains("column 2"), "{bad:?}");
        let odd = lines(b"abc", true, 4);
        assert!(odd[0].as_ref().unwrap_err().contains("odd"), "{odd:?}");
    }
}
