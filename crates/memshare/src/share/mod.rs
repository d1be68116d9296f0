//! Giving segments to other processes: children inherit them, running
//! processes receive them over a socket, and read-only handles are enforced
//! by the kernel.
//!
//! # Inheritance, scoped to one child
//!
//! [`CommandExt::share`] gives one segment to the one child that a
//! `Command` spawns, under a key; the child calls [`Segment::inherited`]
//! with the same key. Descriptors stay close-on-exec in the parent at all
//! times, so children spawned at the same moment by other threads get
//! nothing: the descriptor is made inheritable only inside the forked child,
//! between `fork` and `exec` (an async-signal-safe `fcntl`). The child's
//! [`Segment::inherited`] makes it close-on-exec again, so grandchildren
//! get nothing unless it is shared again.
//!
//! The value travels in the environment variable `MEMSHARE_SEGMENT_<KEY>`
//! (`<KEY>` is the key in upper case; keys are 1 to 64 ASCII letters,
//! digits and `_`, and case-insensitive). The value is a list of
//! `field=value` pairs separated by `;`, starting with the version:
//!
//! ```text
//! v1;handle=7;id=43:1187;len=4096;access=rw;parent=5123;name=camera-frames
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `handle` | the descriptor number in the child |
//! | `id` | the object's identity, `device:inode`: a descriptor that is open but is another object is refused |
//! | `len` | the size in bytes; checked against the object's real size |
//! | `access` | `rw` or `ro`; a read-only claim is checked against the descriptor and, for anonymous segments, the seals |
//! | `parent` | the process id of the parent that shared it: a grandchild that inherited the environment but not the descriptor is told so |
//! | `name` | present for named segments; checked to refer to the same object |
//!
//! A missing, malformed or lying value is an [`Error::InvalidHandle`]
//! naming the key, never a crash. The same value can be passed any other
//! way (a command-line argument) and taken with [`Segment::inherited_from`].
//!
//! A child that something else spawns (Python's `subprocess`,
//! `posix_spawn`) gets the same from [`Segment::offer_to_child`] (Unix): a
//! [`ChildOffer`] holds the descriptor to keep open in the child and the
//! variable and value to set. (The Unix-only items are plain links, which
//! the Windows documentation has no target for.)
//!
//! ## On Windows
//!
//! The same `share`/`inherited` pair works, without inheritable handles:
//! `share` registers a duplicate of the handle with this process's broker
//! under a random one-time token (the `id` field of the value), and the
//! child's [`Segment::inherited`] asks the broker over a named pipe; the
//! broker checks that the asker is its direct child and `DuplicateHandle`s
//! the section into exactly that process. Why, and the limits:
//! `docs/platforms.md`.
//!
//! # Handle passing to a running process
//!
//! [`send_segments`] sends several segments in one message over a connected
//! Unix socket (`SCM_RIGHTS`), each under a key; [`recv_segments`] receives
//! them. The message's payload (documented on [`encode_message`]) tells the
//! receiver which descriptor is which. The receiver trusts nothing it is
//! told: descriptors arrive close-on-exec (`MSG_CMSG_CLOEXEC`), truncated
//! control data is refused, descriptors beyond those the payload describes
//! are closed and refused, and each descriptor must be a shared-memory
//! object of the claimed size and access.
//!
//! On Windows, `Segment::duplicate_into` offers the segment to one running
//! process (any process handle, a [`std::process::Child`] for one) and
//! returns a value with `to=<pid>` for the caller to deliver by any means;
//! the receiver's [`Segment::inherited_from`] claims it from the sender's
//! broker, which duplicates the section into exactly that process, and
//! checks that the handle is an open section of the claimed size and
//! access.
//!
//! # Lifetimes
//!
//! In each process, a segment lives while a [`Segment`] handle or a view of
//! it exists. A named segment given to a child or sent to a process is
//! given a holder of its own: the receiver counts as a holder from the
//! moment the descriptor is made for it (a message in flight, a `Command`
//! not yet spawned) until it drops the segment or dies, so the name stays
//! valid if the sender goes away first, and goes once every holder is gone.
//!
//! [`CommandExt::share`]: crate::CommandExt::share
//! [`Segment`]: crate::Segment
//! [`Segment::inherited`]: crate::Segment::inherited
//! [`Segment::inherited_from`]: crate::Segment::inherited_from
//! [`Segment::offer_to_child`]: ../struct.Segment.html#method.offer_to_child
//! [`ChildOffer`]: struct.ChildOffer.html
//! [`Error::InvalidHandle`]: crate::Error::InvalidHandle
//! [`send_segments`]: ../fn.send_segments.html
//! [`recv_segments`]: ../fn.recv_segments.html

// `CommandExt`, `send_segments` and `recv_segments` are used through the
// crate root (`memshare::CommandExt`); the rest of sharing lives here.
pub(crate) mod inherit;
mod message;
#[cfg(unix)]
pub(crate) mod socket;

#[cfg(fuzzing)]
pub use inherit::__fuzz_parse_inherit_value;
#[cfg(unix)]
pub use inherit::ChildOffer;
pub use inherit::{inherit_env_var, INHERIT_ENV_PREFIX, MAX_KEY_LEN};
pub use message::{
    decode_message, encode_message, MessageEntry, MAX_ENTRIES, MAX_MESSAGE_LEN, MESSAGE_MAGIC,
    MESSAGE_VERSION,
};
