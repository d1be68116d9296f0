//! Reading a channel's state from outside, without attaching: what
//! `memshare info` shows.

use std::sync::atomic::Ordering;

use super::endpoint::checked_capacity;
use super::layout::{self, frame_len, Header, Side};
use crate::{Error, Result, Segment};

/// What is known about one end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Never attached.
    New,
    /// Attached, and its process holds its endpoint lock.
    Attached,
    /// Marked attached, but nobody holds its lock: its process died.
    Dead,
    /// Detached cleanly.
    Detached,
    /// The state word holds a value no version-1 endpoint writes.
    Invalid(u32),
}

/// A snapshot of a channel's header, read without attaching (and without
/// trusting it: positions that contradict each other are reported as
/// such, not used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelState {
    /// The ring's size in bytes.
    pub capacity: u64,
    /// Bytes ever committed by senders.
    pub write_pos: u64,
    /// Bytes ever consumed by receivers.
    pub read_pos: u64,
    /// Bytes published and not yet consumed (frame headers and padding
    /// included); `None` if the positions contradict each other.
    pub bytes_pending: Option<u64>,
    /// Messages published and not yet consumed; `None` if the frames
    /// between the positions do not parse.
    pub messages_pending: Option<u64>,
    /// The sending end.
    pub sender: EndpointState,
    /// The receiving end.
    pub receiver: EndpointState,
    /// Whether the sender has said it is parked (waiting for space).
    pub sender_parked: bool,
    /// Whether the receiver has said it is parked (waiting for messages).
    pub receiver_parked: bool,
}

/// Reads the state of the channel in `segment` without attaching to it.
/// [`Error::NotAChannel`] if the segment is not a channel,
/// [`Error::Corrupted`] if its header breaks the layout.
///
/// ```
/// use memshare::channel::{inspect, EndpointState, Sender};
/// # fn main() -> memshare::Result<()> {
/// let mut tx = Sender::create(4096)?;
/// tx.send(b"pending")?;
/// let state = inspect(tx.segment())?;
/// assert_eq!(state.messages_pending, Some(1));
/// assert_eq!(state.sender, EndpointState::Attached);
/// assert_eq!(state.receiver, EndpointState::New);
/// # Ok(()) }
/// ```
pub fn inspect(segment: &Segment) -> Result<ChannelState> {
    let not_a_channel = |detail: String| Error::NotAChannel {
        object: segment.describe(),
        detail,
    };
    if segment.len() < layout::HEADER_LEN as u64 {
        return Err(not_a_channel("too small to be a channel".into()));
    }
    let view = segment.map_readonly(..)?;
    // SAFETY: the view maps the whole segment from offset 0 (page-aligned) and is at least
    // HEADER_LEN bytes; `Header` is atomics and padding, valid for any bytes; only loads are made
    // through it (the pages are read-only); it borrows the view.
    let h: &Header = unsafe { &*view.as_ptr().cast::<Header>() };
    let magic = h.fixed.magic.load(Ordering::Acquire);
    if magic != u64::from_le_bytes(layout::MAGIC) {
        view.check_intact()?;
        return Err(not_a_channel(
            "it does not start with the channel magic \"MSCHAN01\"".into(),
        ));
    }
    let version = h.fixed.version.load(Ordering::Relaxed);
    if version != layout::VERSION {
        return Err(Error::Unsupported {
            what: format!(
                "{}: channel layout version {version} (this library speaks {})",
                segment.describe(),
                layout::VERSION
            ),
        });
    }
    let capacity = checked_capacity(segment, h.fixed.capacity.load(Ordering::Relaxed))?;
    let write_pos = h.position(Side::Sender).load(Ordering::Acquire);
    let read_pos = h.position(Side::Receiver).load(Ordering::Acquire);
    let bytes_pending = write_pos
        .checked_sub(read_pos)
        .filter(|&n| n <= capacity && n % layout::FRAME_ALIGN == 0);
    let messages_pending =
        bytes_pending.and_then(|_| count_frames(&view, capacity, read_pos, write_pos));
    let state = |side: Side| -> Result<EndpointState> {
        Ok(match h.state(side).load(Ordering::Acquire) {
            layout::STATE_NEW => EndpointState::New,
            layout::STATE_DETACHED => EndpointState::Detached,
            layout::STATE_ATTACHED => {
                if segment.object().byte_locked(layout::lock_byte(side))? {
                    EndpointState::Attached
                } else {
                    EndpointState::Dead
                }
            }
            other => EndpointState::Invalid(other),
        })
    };
    let parked = |side: Side| h.park(side).waiting.load(Ordering::Relaxed) != 0;
    let state = ChannelState {
        capacity,
        write_pos,
        read_pos,
        bytes_pending,
        messages_pending,
        sender: state(Side::Sender)?,
        receiver: state(Side::Receiver)?,
        sender_parked: parked(Side::Sender),
        receiver_parked: parked(Side::Receiver),
    };
    view.check_intact()?;
    Ok(state)
}

/// Walks the frames from `read` to `write` the way a receiver would;
/// `None` at the first frame that does not parse.
fn count_frames(view: &crate::View, capacity: u64, mut read: u64, write: u64) -> Option<u64> {
    let mut count = 0;
    // Each frame is at least 8 bytes, so this loop ends.
    while read < write {
        let offset = read % capacity;
        let mut len = [0u8; 4];
        view.read_at(layout::HEADER_LEN + offset as usize, &mut len)
            .ok()?;
        let len = u32::from_le_bytes(len);
        let frame = if len == layout::PAD {
            capacity - offset
        } else {
            let frame = frame_len(u64::from(len))?;
            if offset + frame > capacity {
                return None;
            }
            count += 1;
            frame
        };
        if frame == 0 || read.checked_add(frame)? > write {
            return None;
        }
        read += frame;
    }
    Some(count)
}
