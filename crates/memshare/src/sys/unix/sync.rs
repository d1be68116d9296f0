//! Cross-process waiting and liveness on Unix.
//!
//! - Wait/wake on a 32-bit word in shared memory: a *shared* (not
//!   `FUTEX_PRIVATE_FLAG`) futex on Linux, keyed by the physical page, so it
//!   works between processes that map the page at different addresses;
//!   on macOS `os_sync_wait_on_address` (or `__ulock_wait2`) and on
//!   FreeBSD `_umtx_op(UMTX_OP_WAIT_UINT)`, shared too
//!   (`sync/address_wait.rs`). Elsewhere a short sleep stands in for the
//!   wait (correct, slower).
//!   The word itself is what is waited on, so an endpoint's routes
//!   (`Object::route_word`, which Windows needs) are nothing here.
//! - Liveness: a holder takes a write lock on one byte of the object
//!   through an open file description of its own (`F_OFD_SETLK` on Linux).
//!   The kernel drops the lock when that description is closed, which
//!   happens when the holder drops it or its process dies, however it
//!   dies; others ask with `F_OFD_GETLK`. Unlike a pid in shared memory,
//!   this cannot be fooled by pid reuse. (Which byte means what is the
//!   business of the layer above: the channel's endpoints.) Other Unixes
//!   have no OFD locks, and macOS and FreeBSD take no record locks on
//!   shared-memory objects at all (`fcntl(F_SETLK)` is `EBADF` there: xnu's
//!   fcntl wants a vnode, FreeBSD's shm objects have no advisory-lock
//!   operation), so endpoints cannot attach there: `Unsupported`, named.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{os_error, Object, WordRole};
use crate::Result;

/// Waits while `*word == expected`, for at most `timeout`. Returns on a
/// wake, a timeout, a signal, or at once if the word differs: callers
/// re-check their condition after every return.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    imp::wait(word, expected, timeout)
}

/// Wakes up to `n` waiters on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    imp::wake(word, n)
}

/// Wakes the waiters of `word` whose bits are set in `waiters` (bit `i`:
/// the endpoint that parks as waiter `i`): a futex does not know who
/// waits, so every waiter.
pub(crate) fn wake_waiters(word: &AtomicU32, _waiters: u64) {
    imp::wake(word, u32::MAX)
}

/// How an endpoint's wait and wake on a word reach the other processes:
/// through the word itself here, so nothing to hold.
#[derive(Debug)]
pub(crate) struct WordRoute;

/// A write lock on one byte of an object, held through an open file
/// description of its own. Dropping it releases the lock; so does the
/// death of the process, however it dies.
#[derive(Debug)]
pub(crate) struct ByteLock {
    _fd: OwnedFd,
}

impl Object {
    /// Locks byte `byte` of the object (`F_OFD_SETLK` on a new open file
    /// description, so that the lock is this holder's alone, not shared
    /// with every `dup` of the segment). `Ok(None)` if someone holds it.
    pub(crate) fn lock_byte(&self, byte: u64) -> Result<Option<ByteLock>> {
        let byte = lock_offset(byte);
        let fd = imp::reopen(self.fd()).map_err(|e| os_error(self.name(), "reopen", e))?;
        match imp::set_lock(fd.as_fd(), byte) {
            Ok(true) => Ok(Some(ByteLock { _fd: fd })),
            Ok(false) => Ok(None),
            Err(e) => Err(self.lock_error("fcntl(F_OFD_SETLK)", e)),
        }
    }

    /// The error of a lock call: where the system takes no record locks on
    /// shared-memory objects (`EBADF`: macOS, FreeBSD), `Unsupported`
    /// saying so.
    fn lock_error(&self, op: &'static str, e: rustix::io::Errno) -> crate::Error {
        if e == rustix::io::Errno::BADF {
            return crate::Error::Unsupported {
                what: format!(
                    "{}: channel and service endpoints on this system: its shared-memory \
                     objects take no record locks (fcntl(F_SETLK) says EBADF), which their \
                     liveness needs",
                    super::describe(self.name())
                ),
            };
        }
        os_error(self.name(), op, e)
    }

    /// The route of `word`, at byte `offset` of this object, for an
    /// endpoint that uses it as `role`: nothing to prepare (see the module
    /// docs).
    pub(crate) fn route_word(
        &self,
        _word: &AtomicU32,
        _offset: u64,
        _role: WordRole,
    ) -> Result<WordRoute> {
        Ok(WordRoute)
    }

    /// Whether some holder other than this process's own locks holds byte
    /// `byte`.
    pub(crate) fn byte_locked(&self, byte: u64) -> Result<bool> {
        imp::lock_held(self.fd(), lock_offset(byte))
            .map_err(|e| self.lock_error("fcntl(F_OFD_GETLK)", e))
    }
}

/// A byte offset as `fcntl` takes it (callers use offsets below 2^63).
fn lock_offset(byte: u64) -> i64 {
    i64::try_from(byte).unwrap_or(i64::MAX)
}

fn flock_for(byte: i64, kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = byte as _;
    lock.l_len = 1;
    lock
}

fn fcntl_lock(
    fd: BorrowedFd<'_>,
    cmd: libc::c_int,
    lock: &mut libc::flock,
) -> rustix::io::Result<()> {
    // SAFETY: `fd` is open for the duration of the call and `lock` is a
    // valid, exclusively borrowed `struct flock`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, lock as *mut libc::flock) };
    if r == -1 {
        Err(
            rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                .unwrap_or(rustix::io::Errno::IO),
        )
    } else {
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use rustix::io::Errno;
    use rustix::thread::futex;

    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        let ts = futex::Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // EAGAIN (the word changed), ETIMEDOUT, EINTR: all mean "re-check".
        let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
    }

    pub(super) fn wake(word: &AtomicU32, n: u32) {
        let _ = futex::wake(word, futex::Flags::empty(), n);
    }

    /// A new open file description of the same object: the lock must be
    /// this endpoint's own, not shared with every `dup` of the segment.
    pub(super) fn reopen(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
    }

    pub(super) fn set_lock(fd: BorrowedFd<'_>, byte: i64) -> Result<bool, Errno> {
        let mut lock = flock_for(byte, libc::F_WRLCK);
        match fcntl_lock(fd, libc::F_OFD_SETLK, &mut lock) {
            Ok(()) => Ok(true),
            Err(Errno::AGAIN | Errno::ACCESS) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn lock_held(fd: BorrowedFd<'_>, byte: i64) -> Result<bool, Errno> {
        let mut lock = flock_for(byte, libc::F_WRLCK);
        fcntl_lock(fd, libc::F_OFD_GETLK, &mut lock)?;
        Ok(i32::from(lock.l_type) != libc::F_UNLCK)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "sync/address_wait.rs"]
mod address_wait;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    //! No futex: the system's own wait on an address (`address_wait`). No
    //! OFD locks: process-associated record locks, where the system takes
    //! them on shared-memory objects (see the module docs: macOS and
    //! FreeBSD do not).
    use super::*;
    use rustix::io::Errno;

    pub(super) use super::address_wait::{wait, wake};

    pub(super) fn reopen(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
        rustix::io::fcntl_dupfd_cloexec(fd, 3)
    }

    pub(super) fn set_lock(fd: BorrowedFd<'_>, byte: i64) -> Result<bool, Errno> {
        let mut lock = flock_for(byte, libc::F_WRLCK.into());
        match fcntl_lock(fd, libc::F_SETLK, &mut lock) {
            Ok(()) => Ok(true),
            Err(Errno::AGAIN | Errno::ACCESS) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn lock_held(fd: BorrowedFd<'_>, byte: i64) -> Result<bool, Errno> {
        let mut lock = flock_for(byte, libc::F_WRLCK.into());
        fcntl_lock(fd, libc::F_GETLK, &mut lock)?;
        Ok(i32::from(lock.l_type) != i32::from(libc::F_UNLCK))
    }
}
