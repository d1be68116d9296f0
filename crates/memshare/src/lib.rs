//! memshare: shared memory between processes, portable and safe.
//!
//! The model is the Win32 file mapping: a [`Segment`] is a shared-memory
//! object (anonymous, or with a name other processes open), and views of it
//! ([`View`], [`ViewMut`]) are mapped at any offset. Handles are reference
//! counted: a view keeps its segment alive, and a named segment's name lives
//! as long as some process holds it, even when holders crash.
//!
//! | Win32 (what memshare calls on Windows) | memshare | Linux |
//! |---|---|---|
//! | `CreateFileMapping(INVALID_HANDLE_VALUE, …)` | [`Segment::create`] | `memfd_create` + seals |
//! | `CreateFileMapping(…, name)` / `OpenFileMapping` | [`Segment::create_named`] / [`Segment::open`] | `shm_open(O_CREAT\|O_EXCL, 0600)` / `shm_open` |
//! | `MapViewOfFile` / `UnmapViewOfFile` | [`Segment::map`] / dropping the view | `mmap` / `munmap` |
//! | `CloseHandle` | dropping the [`Segment`] | `close` |
//!
//! Linux and Windows are tested (Windows under Wine), macOS and FreeBSD
//! compile; inspection of the machine's named segments is Unix-only. The
//! platform differences are listed in the repository's `docs/platforms.md`.
//!
//! On top of segments: `channel` (a ring of messages between two
//! processes), `pubsub` (many publishers to many subscribers), `rpc` (a
//! server for many clients), and, on Unix, `WaitSet` (one thread waiting
//! on many of their endpoints at once).
//!
//! ```
//! use memshare::Segment;
//!
//! # fn main() -> memshare::Result<()> {
//! let name = format!("doc-lib-{}", std::process::id());
//! let writer = Segment::create_named(&name, 1 << 20)?;
//! writer.map(..)?.write_at(0, b"hello")?;
//!
//! // Another process would do this:
//! let reader = Segment::open_readonly(&name)?;
//! let mut buf = [0u8; 5];
//! reader.map_readonly(..5)?.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Lifetimes
//!
//! - An anonymous segment lives while any process holds a handle or a view
//!   of it; it has no name to leak.
//! - A named segment's name lives while any process holds a handle or a
//!   view made by [`Segment::create_named`] or [`Segment::open`]. When the
//!   last one is dropped, or its process dies, the name is gone:
//!   [`Segment::open`] says [`Error::NotFound`] and [`Segment::create_named`]
//!   succeeds (a name whose holders all died is reclaimed by the next
//!   `open`/`create_named`). On Linux every holder keeps a shared `flock` on
//!   the object and the lifetime is recorded in the extended attribute
//!   `user.memshare.lifetime` (values `shared` / `persist`); objects without it
//!   (made by Python, C…) are never removed behind their owners' backs.
//!   Where the file system cannot hold the attribute (tmpfs before Linux 6.6,
//!   other Unixes), the creator removes the name when it drops its segment.
//! - [`SegmentOptions::persist`] makes the name live like a file, until
//!   [`Segment::remove`].
//!
//! # Inspection
//!
//! [`inspect::list_named`](inspect/fn.list_named.html) and
//! [`inspect::named_info`](inspect/fn.named_info.html) describe the machine's
//! named segments (size, owner, holders, lifetime, kind) without taking part
//! in their lifetimes; [`inspect::reclaim_stale`](inspect/fn.reclaim_stale.html)
//! removes a name whose holders all died (Unix: plain links, since Windows
//! documentation has no `inspect`). The `memshare` command-line tool
//! (`memshare ls`, `memshare gc`) is built on them.

#![warn(missing_docs)]
// On docs.rs, items that exist on some platforms only say which ones
// (doc_cfg; since Rust 1.92 it also does what doc_auto_cfg did). The
// cfgs of the loom model and the fuzz seams are not the reader's concern.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(docsrs, doc(auto_cfg(hide(loom, fuzzing))))]
// `--cfg loom` builds the channel's protocol core for its loom model
// (src/channel/loom_model.rs) and leaves the endpoints out, so what only
// they use is unused there.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(all(not(loom), feature = "async"))]
pub mod aio;
pub mod channel;
#[cfg(not(loom))]
mod endpoint;
mod error;
#[cfg(unix)]
pub mod inspect;
mod name;
mod primitive;
pub mod pubsub;
pub mod rpc;
mod segment;
pub mod share;
pub mod sync;
mod sys;
mod view;
pub mod wait_set;
mod waiting;

pub use error::{Error, Result};
pub use name::{validate_name, MAX_NAME_LEN};
pub use segment::{Segment, SegmentOptions};
pub use share::inherit::CommandExt;
#[cfg(unix)]
pub use share::socket::{recv_segments, send_segments};
pub use view::{ReadOnlyU32, ReadOnlyU64, View, ViewMut};
#[cfg(not(loom))]
pub use wait_set::WaitSet;

/// The alignment of view windows on this system: the page size on Unix,
/// 64 KiB on Windows. Views may start at any offset; memshare maps from the
/// offset aligned down to this.
///
/// ```
/// assert!(memshare::allocation_granularity().is_power_of_two());
/// ```
pub fn allocation_granularity() -> usize {
    sys::allocation_granularity()
}
