//! `memshare cat NAME`: a segment's bytes to standard output.

use std::io::{IsTerminal, Write};

use memshare::Segment;

use crate::fail::Failure;
use crate::size::{parse_offset, parse_size};

/// Write a segment's bytes to standard output
///
/// Opens the segment read-only and copies its bytes, a window at a time
/// (any size works). With --offset and --len, only that range.
///
/// The bytes are written as they are, so standard output must not be a
/// terminal (the terminal would take them for text and escape sequences):
/// to a terminal, cat refuses with an error line; pipe the bytes
/// (`memshare cat NAME | xxd`), redirect them to a file, or pass --raw.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The segment's name
    name: String,
    /// Start at this byte (units as for sizes: 4K, 1M…)
    #[arg(long, value_parser = parse_offset, default_value = "0")]
    offset: u64,
    /// Copy this many bytes (default: up to the end)
    #[arg(long, value_parser = parse_size)]
    len: Option<u64>,
    /// Write the raw bytes even when standard output is a terminal
    #[arg(long)]
    raw: bool,
}

/// How many bytes are copied through the buffer at a time.
const PIECE: usize = 1 << 20;

pub fn run(args: Args) -> Result<(), Failure> {
    let segment = Segment::open_readonly(&args.name)?;
    let len = checked_range(&segment, args.offset, args.len)?;
    let mut out = std::io::stdout().lock();
    if !args.raw && out.is_terminal() {
        return Err(Failure::usage(
            "standard output is a terminal, and cat writes raw bytes: pipe them \
             (memshare cat NAME | xxd) or redirect them to a file, or pass --raw",
        ));
    }
    let mut buf = vec![0u8; PIECE.min(usize::try_from(len).unwrap_or(PIECE))];
    let mut done = 0u64;
    while done < len {
        let n = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        read_exact_at(&segment, args.offset + done, &mut buf[..n])?;
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            // The reader went away (`| head`): nothing more to do.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Failure::other(format!("writing to standard output: {e}"))),
        }
        done += n as u64;
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::other(format!("writing to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// Reads `buf.len()` bytes at `offset` with `pread`, not through a
/// mapping: a page that was never written reads as zeros without being
/// allocated, so `cat` works on a full /dev/shm, and a segment shrunk
/// meanwhile ends early instead of faulting.
#[cfg(unix)]
fn read_exact_at(segment: &Segment, offset: u64, buf: &mut [u8]) -> Result<(), Failure> {
    use std::os::fd::AsFd;
    let name = segment.name().unwrap_or_default();
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::io::pread(segment.as_fd(), &mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(Failure::other(format!(
                    "segment {name:?}: it ended at byte {} while being read (another process \
                     truncated it)",
                    offset + filled as u64
                )))
            }
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Failure::other(format!("segment {name:?}: pread: {e}"))),
        }
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset` through a read-only view: a
/// Windows section cannot shrink, and its pages are committed when it is
/// made, so a view never faults.
#[cfg(not(unix))]
fn read_exact_at(segment: &Segment, offset: u64, buf: &mut [u8]) -> Result<(), Failure> {
    let end = offset + buf.len() as u64;
    segment.map_readonly(offset..end)?.read_at(0, buf)?;
    Ok(())
}

/// The number of bytes to copy from `offset`, checked against the segment.
fn checked_range(segment: &Segment, offset: u64, len: Option<u64>) -> Result<u64, Failure> {
    let size = segment.len();
    let name = segment.name().unwrap_or_default();
    if offset > size {
        return Err(Failure::usage(format!(
            "segment {name:?}: offset {offset} is past the end (the segment has {size} bytes)"
        )));
    }
    let available = size - offset;
    match len {
        None => Ok(available),
        Some(len) if len <= available => Ok(len),
        Some(len) => Err(Failure::usage(format!(
            "segment {name:?}: {len} bytes from offset {offset} go past the end \
             (the segment has {size} bytes, {available} from that offset)"
        ))),
    }
}
