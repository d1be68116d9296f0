//! `memshare write NAME`: standard input into a segment.

use std::io::Read;

use memshare::Segment;

use crate::fail::Failure;
use crate::size::parse_offset;
use crate::window::windows;

/// Copy standard input into a segment
///
/// Reads all of standard input first (holding it in memory) and writes
/// nothing if it does not fit between --offset and the end of the segment.
/// A segment that holds a channel, a publish-subscribe or a
/// request/response service is refused unless --force: its header and
/// messages belong to the processes that use it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The segment's name
    name: String,
    /// Write from this byte on (units as for sizes: 4K, 1M…)
    #[arg(long, value_parser = parse_offset, default_value = "0")]
    offset: u64,
    /// Write even into a segment that holds a channel or a service (this
    /// overwrites its header or messages under the processes that use it)
    #[arg(long)]
    force: bool,
}

/// What the segment `name` holds whose header and messages belong to the
/// processes that use it (a channel or a service), if anything: as
/// `memshare ls` tells.
#[cfg(unix)]
fn endpoints_kind(segment: &Segment) -> Result<Option<String>, Failure> {
    use memshare::inspect::SegmentKind;
    let name = segment.name().unwrap_or_default();
    Ok(match memshare::inspect::named_info(name)?.kind {
        Some(SegmentKind::Bytes) | None => None,
        Some(SegmentKind::Channel) => Some("a channel".into()),
        Some(SegmentKind::Pubsub) => Some("a publish-subscribe service".into()),
        Some(SegmentKind::Rpc) => Some("a request/response service".into()),
        // A kind added later is memshare's too.
        Some(other) => Some(format!("a memshare {other}")),
    })
}

/// As on Unix, where there is no list of names: as the segment's own
/// header tells.
#[cfg(not(unix))]
fn endpoints_kind(segment: &Segment) -> Result<Option<String>, Failure> {
    use memshare::Error::{NotAChannel, NotAService};
    if !matches!(memshare::channel::inspect(segment), Err(NotAChannel { .. })) {
        return Ok(Some("a channel".into()));
    }
    if !matches!(memshare::pubsub::inspect(segment), Err(NotAService { .. })) {
        return Ok(Some("a publish-subscribe service".into()));
    }
    if !matches!(memshare::rpc::inspect(segment), Err(NotAService { .. })) {
        return Ok(Some("a request/response service".into()));
    }
    Ok(None)
}

pub fn run(args: Args) -> Result<(), Failure> {
    let segment = Segment::open(&args.name)?;
    let size = segment.len();
    let name = &args.name;
    if !args.force {
        if let Some(kind) = endpoints_kind(&segment)? {
            return Err(Failure::usage(format!(
                "segment {name:?} holds {kind}: writing would overwrite its header or messages \
                 under the processes that use it; nothing was written (--force writes anyway)"
            )));
        }
    }
    let offset = args.offset;
    if offset > size {
        return Err(Failure::usage(format!(
            "segment {name:?}: offset {offset} is past the end (the segment has {size} bytes)"
        )));
    }
    let room = size - offset;
    // One byte more than fits tells that the input is too long.
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(room.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| Failure::other(format!("reading standard input: {e}")))?;
    if data.len() as u64 > room {
        return Err(Failure::usage(format!(
            "segment {name:?}: the input does not fit: there are {room} bytes from offset \
             {offset} to the end (the segment has {size} bytes); nothing was written"
        )));
    }
    if data.is_empty() {
        return Ok(());
    }
    // Allocate the pages first: on a full shared-memory file system this is
    // a clean NoSpace with nothing written, not a fault half-way.
    match segment.allocate(offset..offset + data.len() as u64) {
        Ok(()) | Err(memshare::Error::Unsupported { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut written = 0;
    for (start, window_len) in windows(offset, data.len() as u64) {
        let view = segment.map(start..start + window_len)?;
        let piece = &data[written..written + view.len()];
        view.write_at(0, piece)?;
        written += piece.len();
    }
    Ok(())
}
