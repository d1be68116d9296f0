//! A readiness descriptor for event loops (the `async` feature's
//! `Readiness`): a descriptor that a thread of this process makes readable
//! and the loop's owner reads empty again. An `eventfd` on Linux; a pipe
//! elsewhere. Both non-blocking and close-on-exec.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use super::os_error;
use crate::Result;

/// The descriptor, and (for a pipe) its write end.
#[derive(Debug)]
pub(crate) struct Event {
    read: OwnedFd,
    #[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
    write: Option<OwnedFd>,
}

impl Event {
    /// A new descriptor, not readable.
    pub(crate) fn new() -> Result<Event> {
        imp::new().map_err(|e| os_error(None, imp::CREATE, e))
    }

    /// Makes the descriptor readable (it stays so until [`Event::clear`]).
    pub(crate) fn signal(&self) {
        imp::signal(self);
    }

    /// Reads the descriptor empty: not readable until the next
    /// [`Event::signal`].
    pub(crate) fn clear(&self) {
        imp::clear(self);
    }
}

impl AsFd for Event {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use rustix::event::{eventfd, EventfdFlags};

    pub(super) const CREATE: &str = "eventfd";

    pub(super) fn new() -> Result<Event, Errno> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Event {
            read: fd,
            write: None,
        })
    }

    pub(super) fn signal(event: &Event) {
        // Adds 1 to the counter: EAGAIN only if it would overflow, which
        // leaves it readable anyway.
        let _ = rustix::io::write(&event.read, &1u64.to_ne_bytes());
    }

    pub(super) fn clear(event: &Event) {
        // One read takes the whole counter (no EFD_SEMAPHORE); EAGAIN if
        // it was 0.
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&event.read, &mut buf);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::*;
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use rustix::io::{fcntl_setfd, FdFlags};

    pub(super) const CREATE: &str = "pipe";

    pub(super) fn new() -> Result<Event, Errno> {
        // `pipe` and then the flags: macOS has no `pipe2` (a child forked
        // by another thread in between may inherit the ends, as with
        // descriptors received on macOS, `platform::received_cloexec`).
        let (read, write) = rustix::pipe::pipe()?;
        for fd in [&read, &write] {
            fcntl_setfd(fd, FdFlags::CLOEXEC)?;
            fcntl_setfl(fd, fcntl_getfl(fd)? | OFlags::NONBLOCK)?;
        }
        Ok(Event {
            read,
            write: Some(write),
        })
    }

    pub(super) fn signal(event: &Event) {
        if let Some(w) = &event.write {
            // EAGAIN: the pipe is full, so readable already.
            let _ = rustix::io::write(w, &[1]);
        }
    }

    pub(super) fn clear(event: &Event) {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(&event.read, &mut buf), Ok(n) if n > 0) {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Event;
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use std::os::fd::AsFd;

    fn readable(event: &Event) -> bool {
        let mut fds = [PollFd::new(event, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&zero)).unwrap() == 1
    }

    #[test]
    fn an_event_is_readable_from_signal_to_clear() {
        let event = Event::new().unwrap();
        assert!(!readable(&event));
        event.signal();
        event.signal();
        assert!(readable(&event));
        event.clear();
        assert!(!readable(&event));
        event.clear();
        assert!(!readable(&event));
        let _ = event.as_fd();
    }
}
