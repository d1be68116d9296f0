//! Wait sets: one thread waits on many endpoints at once.
//!
//! A [`WaitSet`] holds up to [`MAX_MEMBERS`] endpoints of any kind (channel
//! receivers, channel senders waiting for room, publish-subscribe
//! subscribers, request/response servers and clients) and waits until
//! one of them has something, reporting which by the [`Token`] its
//! [`add`](WaitSet::add) returned. The endpoint itself is not borrowed:
//! receive from it with its own `try_` form once it is reported.
//!
//! ```
//! use memshare::channel::{Receiver, Sender};
//! use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
//! use memshare::WaitSet;
//! use std::time::Duration;
//! # fn main() -> memshare::Result<()> {
//! let mut receiver = Receiver::create(4096)?;
//! let mut sender = Sender::attach(receiver.segment())?; // another process, usually
//! let name = format!("doc-waitset-{}", std::process::id());
//! let mut publisher = Publisher::create(&name, ServiceConfig::new())?;
//! let subscriber = Subscriber::open(&name)?;
//!
//! let mut set = WaitSet::new()?;
//! let a = set.add(&receiver)?;
//! let b = set.add(&subscriber)?;
//!
//! sender.send(b"to a")?;
//! publisher.publish_copy(b"to b")?;
//! let mut seen = Vec::new();
//! while seen.len() < 2 {
//!     for token in set.wait_timeout(Duration::from_secs(5))? {
//!         if token == a {
//!             let msg = receiver.try_recv()?.expect("reported: a message");
//!             seen.push(msg.to_vec());
//!         } else if token == b {
//!             let sample = subscriber.try_recv()?.expect("reported: a message");
//!             seen.push(sample.to_vec());
//!         }
//!     }
//! }
//! seen.sort();
//! assert_eq!(seen, [b"to a".to_vec(), b"to b".to_vec()]);
//! assert!(set.remove(a));
//! assert_eq!(set.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # What "ready" means
//!
//! A wait reports the members that are ready *now* (level-triggered): a
//! member stays reported at every wait for as long as it stays ready (a
//! message not received yet, a peer gone). After a member is reported,
//! its endpoint's `try_` form returns a message or an error (such as
//! [`Error::Disconnected`](crate::Error::Disconnected)), not "nothing",
//! except in the benign cases listed.
//!
//! | member | added with | ready when | benign "nothing" |
//! |---|---|---|---|
//! | [`channel::Receiver`](crate::channel::Receiver) (and typed) | [`add`](WaitSet::add) | a message is published, or the sender is gone | the sender published only the padding frame before a wrapped message it is about to publish: `try_recv` consumes the padding |
//! | [`channel::Sender`](crate::channel::Sender) (and typed) | [`add_writable`](WaitSet::add_writable) | there is room for the smallest message (an empty one; a larger one may still not fit), or the receiver is gone | — |
//! | [`pubsub::Subscriber`](crate::pubsub::Subscriber) (and typed) | [`add`](WaitSet::add) | a publisher has a message for it (or lapped it), or every publisher is gone and everything was received, as `try_recv` reports `Disconnected` (also before any publisher came) | — (a subscriber that holds `max_held` samples gets `LimitReached` from `try_recv` until it drops one) |
//! | [`rpc::Server`](crate::rpc::Server) | [`add`](WaitSet::add) | a client pushed a request the server has not taken; or a client left or died and the server should reclaim its slot | a client left or died: `try_recv` reclaims its slot and may return `None` (it does so at once for a reported death, not a liveness interval later) |
//! | [`rpc::Client`](crate::rpc::Client) | [`add`](WaitSet::add) | a response (or a decline) to a request in flight came, or the server is gone | — (with nothing in flight, a report means the server is gone: `send_request` says `Disconnected`) |
//!
//! A member whose endpoint was dropped is reported at every wait until it
//! is [removed](WaitSet::remove). A member holds its endpoint's segment
//! (and so a named one's name, as any holder does) until it is removed or
//! the set dropped. Remove a member whose endpoint reported
//! `Disconnected`, too: it would be reported at every wait.
//!
//! # Cost
//!
//! - While members are ready, a wait is loads of each member's shared
//!   words: no system call (but see liveness below).
//! - Otherwise the set parks, as an endpoint does: for each member it sets
//!   the flag (or bit) the member's own park sets, so that the member's
//!   peers, unchanged, wake it; then it sleeps on every member's word at
//!   once, costing no CPU until a peer wakes it. On Linux 6.7 and later
//!   each word's wait is a futex wait queued in an `io_uring` of the set's
//!   own (one file descriptor, made at the set's first park) and left
//!   queued from one park to the next: a wake-up costs about what a single
//!   endpoint's does (1.2–1.4x on a 2-vCPU VM with 128 members;
//!   `docs/benchmarks.md`), and a park queues again only the words that
//!   were woken. Where `io_uring` is older or refused (a seccomp filter,
//!   `kernel.io_uring_disabled`), one `futex_waitv` sleeps on every word
//!   instead: waking from it costs more, because the kernel takes every
//!   word's entry off its queue before the call returns (1.5–1.9x with
//!   128 members).
//! - Liveness: the set asks the kernel whether each member's peers are
//!   alive (one lock query per peer, as the endpoints do) when it first
//!   waits on the member, and then as the kernel tells it to. On Linux
//!   5.3 and later it watches the processes the peers' shared words name
//!   (a pidfd each, in one `epoll` slept on by one thread of the process,
//!   started at the first watch): a watched process's death wakes every
//!   parked set of the process, which then asks about every member's
//!   peers, so a peer that dies, however it dies, is reported at once;
//!   and a parked set whose members' peers are all watched has no timer
//!   but a safety net: every 5 s it asks anyway (for a pid that is not
//!   the peer's, such as a peer in another pid namespace). A member whose
//!   peers cannot all be watched (one wrote no pid, no pidfd, other
//!   systems) has its peers asked every
//!   [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL) (20 ms),
//!   whether the set is parked or busy, so that such a peer's death is
//!   reported within about that interval. The watches cost a descriptor
//!   (a pidfd) per distinct peer process, shared by every set and the
//!   async notifier of the process, held while a member names it, and
//!   one `epoll` descriptor and one thread for the process's life. Where
//!   descriptors run out, a peer that cannot be watched is asked every
//!   liveness interval instead.
//!
//! # The limit of members
//!
//! `futex_waitv` (Linux 5.16, the set's sleep where `io_uring` is not
//! available) sleeps on at most 128 words in one call, and Windows'
//! `WaitForMultipleObjects` on at most 64 handles (there the
//! set waits on the auto-reset events its members' endpoints park on).
//! More members would need a thread per call or a poll over slices, each a
//! cost on every wake-up; the set refuses one more than
//! [`MAX_MEMBERS`] (128 on Unix, 64 on Windows) instead
//! ([`Error::LimitReached`](crate::Error::LimitReached)). Use several sets
//! in several threads for more. On Linux before 5.16 (`ENOSYS`), and on
//! other Unix systems, the set polls: it sleeps 200 µs at a time and looks
//! again (correct, slower to wake, and not free while parked).
//!
//! # Threads
//!
//! A wait set is used from one thread at a time (`wait` takes `&mut
//! self`); it is `Send`. (Its `io_uring` takes requests from the thread
//! that made it: a set moved to another thread makes a new one at its
//! next park there.) Its members are usually used from the same
//! thread, between waits. An endpoint may also be used from another thread
//! while a set waits on it, its own blocking calls included: the endpoint's
//! call and the set (and other sets, and the async notifier) then park on
//! the endpoint's word at once, sharing its one flag, which stays raised
//! until the last of them leaves, and a peer's wake reaches all of them.
//! (On Windows they share the endpoint's one auto-reset event, which wakes
//! one of them; the others look again at the end of their park slice, at
//! most a liveness interval later.)
//!
//! # Trust
//!
//! Everything the set reads of a member is in shared memory a peer may
//! write; every index is bounded by the geometry the endpoint validated
//! when it attached, copied into the member. A hostile peer can make a
//! member reported when it has nothing (its endpoint then says so), or
//! not reported while it breaks the protocol (as it can stall the endpoint
//! itself); it cannot make the set read out of bounds or crash. By writing
//! the pid of another live process as its own, a peer can delay the report
//! of its death to the set's next safety-net round (5 s); a pid that names
//! no process makes its member's peers asked every liveness interval.

#[cfg(not(loom))]
pub(crate) mod liveness;
#[cfg(not(loom))]
pub(crate) mod member;
#[cfg(not(loom))]
mod set;
pub(crate) mod watch;

#[cfg(all(test, loom))]
mod loom_model;

#[cfg(not(loom))]
pub use set::{peer_looks, Ready, Token, WaitSet, Waitable, Writable, MAX_MEMBERS};
