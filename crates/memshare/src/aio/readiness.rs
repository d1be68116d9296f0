//! Readiness descriptors, for event loops that wait on descriptors (a
//! waitable event handle on Windows).

#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
#[cfg(windows)]
use std::os::windows::io::{AsRawHandle, RawHandle};
use std::sync::Arc;

use super::notifier::{listener_id, Listener, Registration};
use crate::Result;

/// A descriptor (an `eventfd` on Linux, a pipe elsewhere) that becomes
/// readable when its endpoint has something, its peer is gone, or it was
/// dropped: for event loops that wait on descriptors (epoll, mio,
/// calloop, asyncio's `add_reader`). Made by each endpoint's
/// `readiness()`. On Windows it is a manual-reset event handle
/// (`std::os::windows::io::AsRawHandle`) that becomes set,
/// for `WaitForMultipleObjects` loops.
///
/// It stays readable until [`Readiness::rearm`]: when it is readable,
/// receive with the endpoint's `try_` form until it says `None` (or there
/// is room no more, for a sender), then `rearm`, which reads the
/// descriptor empty and watches again. A message that came between the
/// last `try_` and the re-arm makes it readable again at once: none is
/// missed. The notifier (see the [`aio`](super) module) signals it: no
/// thread per descriptor.
///
/// ```
/// # #[cfg(unix)]
/// # fn main() -> memshare::Result<()> {
/// use std::os::fd::AsFd;
/// use memshare::channel::{Receiver, Sender};
/// use rustix::event::{poll, PollFd, PollFlags};
/// let mut rx = Receiver::create(4096)?;
/// let mut tx = Sender::attach(rx.segment())?;
/// let ready = rx.readiness()?;
/// tx.send(b"hi")?;
/// // The event loop: wait until readable (here with poll(2)).
/// let mut fds = [PollFd::new(&ready, PollFlags::IN)];
/// poll(&mut fds, None).expect("poll");
/// while let Some(msg) = rx.try_recv()? {
///     assert_eq!(&*msg, b"hi");
/// }
/// ready.rearm(); // nothing left: not readable until the next message
/// # let _ = ready.as_fd();
/// # Ok(()) }
/// # #[cfg(not(unix))]
/// # fn main() {}
/// ```
pub struct Readiness {
    event: Arc<crate::sys::Event>,
    on: Vec<Arc<Registration>>,
    id: u64,
}

impl Readiness {
    pub(crate) fn new(on: Vec<Arc<Registration>>) -> Result<Readiness> {
        let readiness = Readiness {
            event: Arc::new(crate::sys::Event::new()?),
            on,
            id: listener_id(),
        };
        readiness.watch();
        Ok(readiness)
    }

    fn watch(&self) {
        for r in &self.on {
            r.listen(self.id, Listener::Event(Arc::clone(&self.event)), None);
        }
    }

    /// Reads the descriptor empty and watches the endpoint again: call it
    /// once the endpoint's `try_` form found nothing more. If the endpoint
    /// has something by now, the descriptor is readable again at once.
    pub fn rearm(&self) {
        self.event.clear();
        self.watch();
    }
}

#[cfg(unix)]
impl AsFd for Readiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.event.as_fd()
    }
}

#[cfg(unix)]
impl AsRawFd for Readiness {
    fn as_raw_fd(&self) -> RawFd {
        self.event.as_fd().as_raw_fd()
    }
}

#[cfg(windows)]
impl AsRawHandle for Readiness {
    fn as_raw_handle(&self) -> RawHandle {
        self.event.as_raw_handle()
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        for r in &self.on {
            r.forget(self.id);
        }
    }
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
