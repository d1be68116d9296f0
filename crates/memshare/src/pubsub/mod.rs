//! Publish-subscribe: many publishers to many subscribers of a named
//! service, zero-copy.
//!
//! A publisher lends a buffer in shared memory ([`Publisher::loan`]),
//! writes the message into it and publishes it: every subscriber reads it
//! in place ([`Subscriber::recv`] gives a [`Sample`] guard), and the
//! buffer is reused only once no subscriber holds it. A late subscriber
//! receives the service's `history` most recent messages first. When a
//! subscriber falls `depth` messages behind, the [`Overflow`] policy
//! decides: the publisher waits ([`Overflow::Block`]), or the subscriber
//! loses its oldest ([`Overflow::DropOldest`], counted by
//! [`Subscriber::missed`]).
//!
//! ```
//! use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
//! # fn main() -> memshare::Result<()> {
//! let name = format!("doc-camera-{}", std::process::id());
//! let config = ServiceConfig::new()
//!     .max_subscribers(8)
//!     .max_message_len(64 << 10)
//!     .depth(16)
//!     .overflow(Overflow::Block);
//! let mut publisher = Publisher::create(&name, config)?;
//! // Subscribers, usually in other processes:
//! let a = Subscriber::open(&name)?;
//! let b = Subscriber::open(&name)?;
//!
//! let mut sample = publisher.loan(4)?; // zero-copy: write in place
//! sample.copy_from_slice(b"tick");
//! sample.publish();
//! publisher.publish_copy(b"tock")?; // or one copy in
//!
//! for subscriber in [&a, &b] {
//!     assert_eq!(&*subscriber.recv()?, b"tick");
//!     assert_eq!(&*subscriber.recv()?, b"tock");
//! }
//! # Ok(()) }
//! ```
//!
//! # The service
//!
//! A service is a named segment ([`Segment::create_named`](crate::Segment::create_named)),
//! with the same Windows lifetimes: it lives while any publisher or
//! subscriber holds it, and goes with the last (also when they crash). It
//! holds a header with the configuration, a block per subscriber slot
//! (its cursors and the buffers it holds), and a region per publisher slot
//! (a ring of entries naming buffers of the publisher's own pool). Its
//! byte-level layout, precise enough to implement in another language, is
//! `docs/pubsub-layout.md`.
//!
//! - **Speed**: a subscriber polls the sequence word of the entry it
//!   expects next; a small message costs the entry's cache line and the
//!   buffer's. No system call happens while the other side is awake.
//! - **Crashes**: every endpoint holds a lock that the kernel drops when
//!   its process dies. A dead subscriber holds no publisher back and pins
//!   no buffer within [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL);
//!   a dead publisher's messages are still received, then
//!   [`Error::Disconnected`](crate::Error::Disconnected) once no publisher
//!   is left. A new publisher continues a dead one's sequence.
//! - **Hostile peers**: every index, length and sequence read from the
//!   segment is checked; subscribers map the buffers read-only and write
//!   only their own block; a contradiction is
//!   [`Error::Corrupted`](crate::Error::Corrupted).

mod config;
#[cfg(not(loom))]
mod inspect;
pub mod layout;
#[cfg(all(test, loom))]
pub(crate) mod loom_model;
#[cfg(not(loom))]
mod publisher;
pub(crate) mod ring;
#[cfg(not(loom))]
pub(crate) mod service;
#[cfg(not(loom))]
mod subscriber;
#[cfg(not(loom))]
pub(crate) mod typed;

pub use config::{Overflow, ServiceConfig};
#[cfg(not(loom))]
pub use inspect::{inspect, PublisherState, ServiceState, SubscriberState};
#[cfg(not(loom))]
pub use publisher::{Loan, Publisher};
#[cfg(not(loom))]
pub use subscriber::{Sample, Subscriber};
#[cfg(not(loom))]
pub use typed::{TypedPublisher, TypedSubscriber};

/// Which publisher published a message: an id each publisher draws at
/// random when it attaches (so a publisher that restarts is a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherId(pub u64);

impl std::fmt::Display for PublisherId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
