//! Async: every endpoint awaited from any executor, and readiness
//! descriptors for event loops (the `async` feature).
//!
//! | endpoint | future | output |
//! |---|---|---|
//! | [`channel::Receiver`](crate::channel::Receiver) | [`recv_async`](crate::channel::Receiver::recv_async) | [`RecvGuard`](crate::channel::RecvGuard), in place |
//! | [`channel::Sender`](crate::channel::Sender) | [`reserve_async`](crate::channel::Sender::reserve_async), [`send_async`](crate::channel::Sender::send_async) | [`SendGuard`](crate::channel::SendGuard), `()` |
//! | [`pubsub::Subscriber`](crate::pubsub::Subscriber) | [`recv_async`](crate::pubsub::Subscriber::recv_async) | [`Sample`](crate::pubsub::Sample), in place |
//! | [`rpc::Client`](crate::rpc::Client) | [`call_async`](crate::rpc::Client::call_async) | [`Response`](crate::rpc::Response), in place |
//! | [`rpc::Server`](crate::rpc::Server) | [`recv_async`](crate::rpc::Server::recv_async) | [`Request`](crate::rpc::Request), in place |
//! | [`WaitSet`](crate::WaitSet) | [`wait_async`](crate::WaitSet::wait_async) | [`Ready`](crate::wait_set::Ready) |
//! | [`channel::TypedReceiver`](crate::channel::TypedReceiver) | [`recv_async`](crate::channel::TypedReceiver::recv_async) | `T`, a copy |
//! | [`channel::TypedSender`](crate::channel::TypedSender) | [`send_async`](crate::channel::TypedSender::send_async) | `()` |
//! | [`pubsub::TypedSubscriber`](crate::pubsub::TypedSubscriber) | [`recv_async`](crate::pubsub::TypedSubscriber::recv_async) | `T`, a copy |
//!
//! The futures are plain [`std::future::Future`]s driven by
//! [`Waker`](std::task::Waker)s: tokio (either runtime), smol,
//! `futures::executor`, or any other. Receivers and subscribers are also
//! [`futures_core::Stream`]s of owned copies ([`Receiver::stream`](crate::channel::Receiver::stream),
//! [`Subscriber::stream`](crate::pubsub::Subscriber::stream); the typed
//! endpoints have no streams: loop on their `recv_async`); a stream ends
//! once its peers are gone and everything was received, and after
//! yielding an error that stays (`Corrupted`, `Truncated`, `NoSpace`:
//! [`RecvStream`], [`SampleStream`]). The futures
//! borrow their endpoint mutably, so they are `Send` whenever the endpoint
//! is (every endpoint is `Send`), and can be spawned on a multi-thread
//! runtime.
//!
//! ```
//! use memshare::channel::{Receiver, Sender};
//! # fn main() -> memshare::Result<()> {
//! let mut rx = Receiver::create(4096)?;
//! let mut tx = Sender::attach(rx.segment())?; // another process, usually
//! futures::executor::block_on(async {
//!     tx.send_async(b"hello").await?;
//!     let msg = rx.recv_async().await?;
//!     assert_eq!(&*msg, b"hello");
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Cost
//!
//! - When the endpoint has something (the peer is ahead), a future is
//!   ready at its first poll: its endpoint's `try_` form, no system call,
//!   no lock, as the blocking calls.
//! - Otherwise the task parks on the *notifier*: this process's notifier
//!   threads (one per 127 endpoints that ever waited, started when first
//!   needed) sleep in one `futex_waitv` on the futex words of every
//!   endpoint a task waits on, parked exactly as a [`WaitSet`](crate::WaitSet)
//!   parks on its members, so the peers, unchanged, wake them; they wake
//!   the tasks' wakers. A parked future costs no CPU; a notifier with no
//!   parked future sleeps without a timer.
//! - A peer's death wakes its futures with
//!   [`Error::Disconnected`](crate::Error::Disconnected) within the
//!   [liveness interval](crate::channel::LIVENESS_INTERVAL) (20 ms): on
//!   Linux the kernel tells the deaths of the peers whose process id the
//!   layout publishes (channel ends, a subscriber's publishers, an rpc
//!   client's server, a server's clients) through pidfds, and their locks
//!   are asked only every 5 s besides.
//! - On Windows the notifier threads wait on the auto-reset events the
//!   endpoints park on (`WaitForMultipleObjects`: 63 endpoints and a
//!   control word per thread) and no process death is told by the
//!   kernel: every peer is asked every interval, one lock query each (the
//!   repository's `docs/platforms.md`).
//! - No thread per endpoint, and no polling with sleeps.
//!
//! # Cancel safety
//!
//! Dropping a future before it is ready is always safe, and loses nothing:
//!
//! | future | dropped before it is ready |
//! |---|---|
//! | `Receiver::recv_async` | no message is taken: the next receive gets it |
//! | `Sender::reserve_async` | nothing is reserved; no frame is started (a frame is written only once the guard exists, and published only by `commit`) |
//! | `Sender::send_async` | nothing is sent, or the whole message is (it is copied and committed in the poll that finds room) |
//! | `Subscriber::recv_async` | no message is taken |
//! | `Server::recv_async` | no request is taken |
//! | `Client::call_async` | once polled, the request is sent; its response is discarded when it comes (its slot is busy until then), as after `call_timeout` |
//! | `WaitSet::wait_async` | nothing (a wait takes nothing from its members) |
//! | the typed endpoints' futures | as their byte endpoint's (the value is copied out in the poll that finds it) |
//!
//! Dropping a future that is waiting costs a lock and, if the notifier
//! sleeps on its endpoint, a wake of the notifier (so that it stops
//! sleeping on the endpoint's word before the endpoint's own blocking
//! calls park on it).
//!
//! # Readiness descriptors
//!
//! For event loops that wait on descriptors (epoll, mio, calloop, asyncio's
//! `add_reader`): `readiness()` on every endpoint (and on a wait set) gives
//! a [`Readiness`], an `AsFd` (an `eventfd` on Linux, a pipe on other
//! Unixes; on Windows an `AsRawHandle`, a manual-reset event) that becomes
//! readable (set) when the endpoint has something, its peer is gone, or it
//! was dropped. It stays readable until re-armed: receive with the endpoint's
//! `try_` form until it says `None`, then call [`Readiness::rearm`], which
//! reads the descriptor empty and watches again (it becomes readable again
//! at once if the endpoint already has something: no message is missed
//! between the last `try_` and the re-arm).
//!
//! # Threads, and the endpoint's own blocking calls
//!
//! An endpoint's futures and its blocking calls can be used in turn (a
//! future dropped, then `recv`): the future's drop gives the endpoint's
//! flag back. The notifier's thread, blocking wait sets and the endpoint's
//! own blocking call may also park on one endpoint at once: they share its
//! flag, which stays raised until the last of them leaves, and every wake
//! reaches all of them (see the wait set's module docs for Windows). A wait
//! set's future and its members' own futures share the endpoint's one
//! registration with the notifier and are all woken.
//!
//! # Fork
//!
//! A child forked (without `exec`) from a process whose futures or
//! descriptors waited has a copy of the parent's notifier, without its
//! threads. The notifier counts forks (a `pthread_atfork` handler): the
//! child starts notifier threads of its own at its first wait, and an
//! endpoint it inherited gets a registration of its own there; what it
//! copied of the parent's notifier it leaves alone (never freed: its
//! mappings stay until the child exits). The thread that forks first waits
//! for the notifier threads' rounds under way to end, so that none holds
//! an endpoint's lock at the fork. What does not carry over:
//!
//! - a [`Readiness`] made before the fork: it listens on the parent's
//!   notifier, whose eventfd the child shares; make new ones in the child;
//! - the kernel's word of deaths: the child's notifier asks its peers'
//!   locks every liveness interval (as where no pidfd exists);
//! - a flag the parent's notifier had raised on an endpoint (a future
//!   waited on it at the fork) stays raised for the child's copy: its
//!   peer wakes it at every message, a system call each, correct but not
//!   free;
//! - as after any fork of a process with threads, a lock another thread
//!   of the parent held at the fork (one of yours, in a call on an
//!   endpoint) stays held in the child: fork while no other thread is in
//!   a call on an endpoint the child uses;
//! - a fork from a signal handler that interrupted this library's own code
//!   in the forking thread may wait for ever in that handler (it takes the
//!   notifier's locks, which that thread may hold). `fork` is not
//!   async-signal-safe in a process with threads for the same reason
//!   (glibc's own handlers take locks); POSIX.1-2024's `_Fork`, which runs
//!   no handlers, is the call for that.

pub(crate) mod notifier;

mod channel;
mod pubsub;
mod readiness;
mod rpc;
mod wait_set;

pub use channel::{RecvFuture, RecvStream, ReserveFuture};
pub use pubsub::{SampleStream, SubscriberRecvFuture};
pub use readiness::Readiness;
pub use rpc::ServerRecvFuture;
pub use wait_set::WaitFuture;

#[doc(hidden)]
pub use notifier::{notifier_peer_looks, notifier_slots, notifier_threads};

use std::sync::Arc;
use std::task::{Context, Poll};

use notifier::{listener_id, Listener, Registration};

/// A future's wait on the notifier: its listener id, and the registrations
/// it listens on (one per endpoint; a wait set's future, one per member).
/// Dropped, it stops listening. Free to make: a future ready at its first
/// poll never takes an id nor allocates.
pub(crate) struct Wait {
    /// 0 until the first park.
    id: u64,
    on: Vec<Arc<Registration>>,
    /// Its last park could not register with the notifier (no thread, no
    /// mapping): it cannot wait.
    failed: bool,
}

impl Wait {
    #[inline]
    pub(crate) fn new() -> Wait {
        Wait {
            id: 0,
            on: Vec::new(),
            failed: false,
        }
    }

    /// Whether its last park failed to register with the notifier (the
    /// error it returned was about waiting, not about the endpoint).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Whether it listened on the notifier before (the future was pending).
    pub(crate) fn listened(&self) -> bool {
        self.id != 0
    }

    fn id(&mut self) -> u64 {
        if self.id == 0 {
            self.id = listener_id();
        }
        self.id
    }

    /// Listens on `registration` with the task's waker (the endpoint found
    /// nothing): the task is woken when the notifier finds it has
    /// something. `Pending`, unless the registration failed.
    pub(crate) fn park<T>(
        &mut self,
        registration: Result<Arc<Registration>, crate::Error>,
        cx: &mut Context<'_>,
    ) -> Poll<crate::Result<T>> {
        self.park_for(registration, None, cx)
    }

    /// As [`Wait::park`], for the answers in `answers` only (a bit per
    /// slot; `None`: anything): an rpc client's call waits for its own
    /// answer, not for the others in flight.
    pub(crate) fn park_for<T>(
        &mut self,
        registration: Result<Arc<Registration>, crate::Error>,
        answers: Option<u64>,
        cx: &mut Context<'_>,
    ) -> Poll<crate::Result<T>> {
        self.failed = registration.is_err();
        match registration {
            Ok(r) => {
                r.listen(self.id(), Listener::Waker(cx.waker().clone()), answers);
                if !self.on.iter().any(|o| Arc::ptr_eq(o, &r)) {
                    self.on.push(r);
                }
                Poll::Pending
            }
            Err(e) => {
                self.done();
                Poll::Ready(Err(e))
            }
        }
    }

    /// Listens on every registration of `all` (a wait set's members).
    pub(crate) fn park_all(&mut self, all: Vec<Arc<Registration>>, cx: &mut Context<'_>) {
        let id = self.id();
        for r in &all {
            r.listen(id, Listener::Waker(cx.waker().clone()), None);
        }
        for r in all {
            if !self.on.iter().any(|o| Arc::ptr_eq(o, &r)) {
                self.on.push(r);
            }
        }
    }

    /// Stops listening (the future is done). Inline, for the future that
    /// was ready at its first poll and listened on nothing: the per-message
    /// path of a receiver kept busy.
    #[inline]
    pub(crate) fn done(&mut self) {
        if !self.on.is_empty() {
            self.forget_all();
        }
    }

    #[cold]
    fn forget_all(&mut self) {
        for r in self.on.drain(..) {
            r.forget(self.id);
        }
    }
}

impl Drop for Wait {
    #[inline]
    fn drop(&mut self) {
        self.done();
    }
}

/// Whether a stream ends after yielding `e`, which `wait` returned: an
/// error that stays, which its endpoint would report at every poll from
/// now on (a stream yielding it again and again would make `while let
/// Some(r) = stream.next().await` spin). `Corrupted`: the peer broke the
/// protocol, nothing it sends can be trusted, and the endpoint does not
/// move past what it wrote (it says the same at the next look, as a rule);
/// `Truncated` and `NoSpace`: the memory under the endpoint is gone, its
/// view reads zeros for good. And any error in registering with the
/// notifier (its thread could not start, the endpoint's header could not
/// be mapped again): the stream cannot wait, and would return it at once
/// at every poll. (`Disconnected` ends a stream with no error.) Any other
/// (an `Io` error asking about the peer, which is asked again only a
/// liveness interval later) is yielded and the stream goes on.
fn ends_stream(e: &crate::Error, wait: &Wait) -> bool {
    wait.failed()
        || matches!(
            e,
            crate::Error::Corrupted { .. }
                | crate::Error::Truncated { .. }
                | crate::Error::NoSpace { .. }
        )
}

/// The registration of an endpoint whose link slot is `slot`, made with
/// `member()` the first time.
pub(crate) fn registration(
    slot: &notifier::RegistrationSlot,
    member: impl FnOnce() -> crate::Result<crate::wait_set::member::Member>,
) -> crate::Result<Arc<Registration>> {
    slot.get_or_make(|| Registration::new(member()?))
}
