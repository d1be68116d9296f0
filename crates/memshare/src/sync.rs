//! Cross-process wait and wake on a 32-bit word in shared memory.
//!
//! The building block of blocking wake-ups between processes: a *shared*
//! futex on Linux (keyed by the physical page, so it works between
//! processes that map the page at different addresses), the shared forms
//! of `os_sync_wait_on_address` on macOS and `_umtx_op` on FreeBSD. On
//! Windows no wait on an address works across processes: there a short
//! sleep stands in for [`wait`] on an arbitrary word (memshare's channels
//! and services put a kernel event behind the words they use), and on
//! other systems too. Process-local primitives (`std`'s `Mutex`/`Condvar`,
//! `WaitOnAddress`, private futexes) do not work across processes.
//!
//! [`wait`] returns on a wake, on a timeout, on a signal, at once if the word
//! no longer holds `expected`, and possibly spuriously: always re-check your
//! condition in a loop. To never lose a wake-up, change the word *before*
//! calling [`wake`], and have the waiter read the word *before* it checks
//! its condition (the channel module shows the full handshake).
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! # fn main() -> memshare::Result<()> {
//! let segment = memshare::Segment::create(4096)?;
//! let view = segment.map(..)?;
//! let word: &AtomicU32 = view.atomic_u32(0)?;
//! std::thread::scope(|s| {
//!     s.spawn(|| {
//!         while word.load(Ordering::Acquire) == 0 {
//!             memshare::sync::wait(word, 0, Duration::from_millis(100));
//!         }
//!     });
//!     word.store(1, Ordering::Release);
//!     memshare::sync::wake(word, u32::MAX);
//! });
//! # Ok(()) }
//! ```

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::sys;

/// Waits while `*word == expected`, for at most `timeout` (see the module
/// docs for when it returns).
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    sys::wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads waiting on `word`.
pub fn wake(word: &AtomicU32, n: u32) {
    sys::wake(word, n)
}

/// The most words [`wait_many`] sleeps on at once where it sleeps on them
/// in the kernel: 128 on Linux (what one `futex_waitv` takes). Elsewhere
/// it polls (see [`wait_many`]); the value there is the bound memshare's
/// own wait sets keep to (64 on Windows, `WaitForMultipleObjects`' limit).
///
/// ```
/// assert!(memshare::sync::WAIT_MANY_MAX >= 64);
/// ```
pub const WAIT_MANY_MAX: usize = sys::WAIT_MANY_MAX;

/// Waits while every word of `words` holds the value paired with it, for
/// at most `timeout`: one sleep on all of them (`futex_waitv` on Linux
/// 5.16 and later). Returns on a [`wake`] of any of them, a timeout, a
/// signal, at once if one differs, or possibly spuriously, as [`wait`].
///
/// Where the system cannot sleep on these words together (more than
/// [`WAIT_MANY_MAX`] of them, Linux before 5.16, other systems: on
/// Windows only the words of memshare's own endpoints have the kernel
/// events such a sleep needs) it sleeps for at most 200 µs and returns: a
/// caller that re-checks in a loop, as it must anyway, still sees every
/// change, later.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// # fn main() -> memshare::Result<()> {
/// let segment = memshare::Segment::create(4096)?;
/// let view = segment.map(..)?;
/// let (a, b) = (view.atomic_u32(0)?, view.atomic_u32(64)?);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         b.store(1, Ordering::Release);
///         memshare::sync::wake(b, 1);
///     });
///     // Until either word moves from 0.
///     while a.load(Ordering::Acquire) == 0 && b.load(Ordering::Acquire) == 0 {
///         memshare::sync::wait_many(&[(a, 0), (b, 0)], Duration::from_millis(100));
///     }
/// });
/// assert_eq!(b.load(Ordering::Acquire), 1);
/// # Ok(())
/// # }
/// ```
pub fn wait_many(words: &[(&AtomicU32, u32)], timeout: Duration) {
    // Looked at first, so that a moved word returns at once where the
    // system polls too.
    if words
        .iter()
        .any(|&(word, expected)| word.load(std::sync::atomic::Ordering::Acquire) != expected)
    {
        return;
    }
    sys::wait_many(words.iter().copied(), timeout)
}
