//! Channels: a single-producer, single-consumer ring of variable-length
//! byte messages in a segment, between two processes.
//!
//! One side creates the channel ([`Sender::create`], [`Receiver::create`],
//! or their `_named` forms) and gives the segment to the other side, which
//! attaches ([`Sender::attach`], [`Receiver::attach`], or `open` by name).
//! Each side may be attached once at a time.
//!
//! ```
//! use memshare::channel::{Receiver, Sender};
//! # fn main() -> memshare::Result<()> {
//! let mut tx = Sender::create(1 << 20)?;
//! let mut rx = Receiver::attach(tx.segment())?; // usually in another process
//!
//! // One copy in...
//! tx.send(b"hello")?;
//! // ...or none: write in place, then commit.
//! let mut slot = tx.reserve(5)?;
//! slot.copy_from_slice(b"world");
//! slot.commit();
//!
//! assert_eq!(&*rx.recv()?, b"hello"); // read in place
//! let mut buf = Vec::new();
//! rx.recv_into(&mut buf)?;
//! assert_eq!(buf, b"world");
//! # Ok(()) }
//! ```
//!
//! # The protocol
//!
//! The full layout, precise enough to implement in another language, is
//! `docs/channel-layout.md`. In short:
//!
//! - A 1024-byte header (magic `MSCHAN01`, version, capacity, endpoint
//!   states, and one 128-byte block per field that one side writes often),
//!   then a ring whose size is a power of two.
//! - `write_pos` and `read_pos` are byte positions that only grow; a
//!   frame's place in the ring is its position modulo the capacity. Each
//!   side keeps the true value of its own position privately and only
//!   publishes it, so a peer cannot move it.
//! - A frame is an 8-byte header (length, reserved) and the payload, padded
//!   to 8 bytes. Frames never wrap: a padding frame (length `u32::MAX`)
//!   fills the end of the ring and the frame starts at offset 0.
//! - The sender writes the frame, then publishes `write_pos` with a
//!   `Release` store; the receiver loads it with `Acquire`, so the frame's
//!   bytes are visible. The receiver publishes `read_pos` with `Release`
//!   after it is done with a frame; the sender's `Acquire` load makes the
//!   space reusable.
//! - Waiting: spin, then park on a futex word (`recv_futex` / `send_futex`)
//!   after setting a "waiting" flag. After publishing, the other side
//!   issues a `SeqCst` fence, reads the flag and, if set, bumps the word and
//!   wakes it. The parker also fences after setting the flag and re-checks
//!   the ring before sleeping, and the futex wait compares the word, so no
//!   wake-up is lost. No system call happens while the peer is awake. (On
//!   Windows an auto-reset event per parked end carries the wake, which
//!   stays set until consumed: the same argument holds.)
//!
//! # Crashes and hostile peers
//!
//! - Each endpoint holds a lock on a byte of the segment (an `F_OFD_SETLK`
//!   lock on its own open file description; on Windows a named mutex) that
//!   the kernel drops when the process dies. A waiting endpoint checks it at least every
//!   [`LIVENESS_INTERVAL`], so a killed peer is noticed within that bound.
//!   A frame is published only after it is complete, so a sender killed
//!   mid-message never shows a partial message; everything it committed is
//!   still received, then [`Error::Disconnected`](crate::Error::Disconnected).
//!   A peer that has never attached cannot be watched: an endpoint waiting
//!   for a peer that may die before it attaches should use the `_timeout`
//!   forms (or watch that process itself).
//! - Every position, length and flag read from the segment is read once,
//!   checked (positions only move forward, by at most a ring; frames lie
//!   inside the ring and inside what was published; lengths are within the
//!   maximum), and a contradiction is [`Error::Corrupted`](crate::Error::Corrupted).
//!   Loops are bounded and waits have deadlines or liveness checks.

#[cfg(not(loom))]
pub(crate) mod endpoint;
#[cfg(not(loom))]
mod inspect;
pub mod layout;
#[cfg(all(test, loom))]
pub(crate) mod loom_model;
#[cfg(not(loom))]
pub(crate) mod receiver;
pub(crate) mod ring;
#[cfg(not(loom))]
pub(crate) mod sender;
#[cfg(not(loom))]
pub(crate) mod typed;

pub use crate::waiting::{WaitStrategy, DEFAULT_SPINS, LIVENESS_INTERVAL};
#[cfg(not(loom))]
pub use inspect::{inspect, ChannelState, EndpointState};
#[cfg(not(loom))]
pub use receiver::{Receiver, RecvGuard};
#[cfg(not(loom))]
pub use sender::{SendGuard, Sender};
#[cfg(not(loom))]
pub use typed::{TypedReceiver, TypedSender};
