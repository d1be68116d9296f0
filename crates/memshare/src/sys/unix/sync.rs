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
//!   operation): there a holder takes an `flock` on a lock file of its own
//!   per (object, byte), which belongs to the open file description just
//!   as an OFD lock does (`sync/lock_file.rs`).

use std::os::fd::AsFd;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{Object, WordRole};
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

/// The route of `word`, a word of this process's own memory that its
/// threads wait on and wake: nothing to prepare (the word is waited on).
#[cfg(feature = "async")]
pub(crate) fn route_local(_word: &AtomicU32) -> Result<WordRoute> {
    Ok(WordRoute)
}

/// The most words [`wait_many`] waits on at once: what `futex_waitv`
/// takes (`FUTEX_WAITV_MAX` in the kernel).
pub(crate) const WAIT_MANY_MAX: usize = 128;

/// How long one sleep of [`wait_many`] lasts at most where it cannot wait
/// on the words themselves (Linux before 5.16, other systems): it polls.
pub(crate) const WAIT_MANY_POLL: Duration = Duration::from_micros(200);

/// Waits while every word of `words` holds the value paired with it, for
/// at most `timeout`. Returns on a wake of any of them, a timeout, a
/// signal, at once if one differs, or after [`WAIT_MANY_POLL`] where the
/// system cannot wait on these words together (more than
/// [`WAIT_MANY_MAX`], or no `futex_waitv`): callers re-check their
/// conditions after every return. One word is [`wait`], which every
/// system here has: an idle async notifier, asleep on its control word
/// alone, sleeps without a timer where `futex_waitv` is missing too.
pub(crate) fn wait_many<'a>(
    words: impl ExactSizeIterator<Item = (&'a AtomicU32, u32)>,
    timeout: Duration,
) {
    wait_words(words, timeout, imp::wait_many)
}

/// [`wait_many`], with `many` for more than one word.
fn wait_words<'a, I: ExactSizeIterator<Item = (&'a AtomicU32, u32)>>(
    mut words: I,
    timeout: Duration,
    many: impl FnOnce(I, Duration),
) {
    if words.len() == 1 {
        if let Some((word, expected)) = words.next() {
            return imp::wait(word, expected, timeout);
        }
    }
    many(words, timeout)
}

/// One thread's sleeps on many words, keeping what it can between them:
/// on Linux 6.7 and later the words' waits stay queued in an `io_uring`
/// of its own (`sync/queued_waits.rs`: a wake-up costs about a single
/// futex wait's, not a walk of every word's queue as `futex_waitv`'s
/// return does); elsewhere, or where `io_uring` is refused, each sleep is
/// [`wait_many`]. Callers re-check their conditions after every return,
/// and call [`ManyWaiter::forget`] before the memory of a word they waited
/// on may be unmapped.
#[derive(Default)]
pub(crate) struct ManyWaiter {
    #[cfg(target_os = "linux")]
    ring: RingState,
}

#[cfg(target_os = "linux")]
#[derive(Default)]
enum RingState {
    /// Not tried yet: made at the first sleep, by the thread that sleeps.
    #[default]
    Untried,
    Ready(Box<queued_waits::QueuedWaits>),
    /// Refused or failed: every sleep is [`wait_many`].
    Unavailable,
}

impl ManyWaiter {
    /// A waiter that never uses a ring: every sleep is [`wait_many`].
    #[cfg(test)]
    pub(crate) fn without_ring() -> ManyWaiter {
        ManyWaiter {
            #[cfg(target_os = "linux")]
            ring: RingState::Unavailable,
        }
    }

    /// Sleeps while every word of `words` holds the value paired with it
    /// (and no word waited on by an earlier sleep, not forgotten since, was
    /// woken), for at most `timeout`: as [`wait_many`], whose returns it
    /// has.
    pub(crate) fn wait<'a>(
        &mut self,
        words: impl ExactSizeIterator<Item = (&'a AtomicU32, u32)> + Clone,
        timeout: Duration,
    ) {
        #[cfg(target_os = "linux")]
        {
            if let RingState::Ready(ring) = &self.ring {
                if !ring.usable_here() {
                    self.ring = RingState::Untried;
                }
            }
            if let RingState::Untried = self.ring {
                self.ring = match queued_waits::QueuedWaits::new() {
                    Some(ring) => RingState::Ready(Box::new(ring)),
                    None => RingState::Unavailable,
                };
            }
            if let RingState::Ready(ring) = &mut self.ring {
                if ring.wait(words.clone(), timeout).is_ok() {
                    return;
                }
                self.ring = RingState::Unavailable;
            }
        }
        wait_many(words, timeout)
    }

    /// How many words' waits stay queued in the ring (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        #[cfg(target_os = "linux")]
        if let RingState::Ready(ring) = &self.ring {
            return ring.queued();
        }
        0
    }

    /// Whether the sleeps go through a ring now (tests).
    #[cfg(test)]
    pub(crate) fn uses_ring(&self) -> bool {
        #[cfg(target_os = "linux")]
        return matches!(self.ring, RingState::Ready(_));
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// Stops every wait queued by earlier sleeps: the caller will not wait
    /// on some of their words again, and their memory may go (a new
    /// mapping at the same address must not pass for a word waited on).
    pub(crate) fn forget(&mut self) {
        #[cfg(target_os = "linux")]
        if let RingState::Ready(ring) = &mut self.ring {
            ring.forget();
        }
    }
}

/// A write lock on one byte of an object, held through an open file
/// description of its own. Dropping it releases the lock; so does the
/// death of the process, however it dies.
#[derive(Debug)]
pub(crate) struct ByteLock {
    _held: imp::Held,
}

impl Object {
    /// Locks byte `byte` of the object through a new open file description,
    /// so that the lock is this holder's alone, not shared with every `dup`
    /// of the segment. `Ok(None)` if someone holds it.
    pub(crate) fn lock_byte(&self, byte: u64) -> Result<Option<ByteLock>> {
        Ok(imp::lock_byte(self, byte)?.map(|held| ByteLock { _held: held }))
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

    /// Whether some holder (this process's other descriptions included)
    /// holds byte `byte`.
    pub(crate) fn byte_locked(&self, byte: u64) -> Result<bool> {
        imp::byte_locked(self, byte)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use crate::sys::unix::os_error;
    use rustix::io::Errno;
    use rustix::thread::futex;
    use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        let ts = futex::Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // EAGAIN (the word changed), ETIMEDOUT, EINTR: all mean "re-check".
        let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
    }

    pub(super) fn wake(word: &AtomicU32, n: u32) {
        // The kernel reads the count as an int: u32::MAX would be -1,
        // which wakes one waiter, not all.
        let _ = futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32));
    }

    /// Set once `futex_waitv` said ENOSYS (Linux before 5.16): from then
    /// on `wait_many` polls.
    static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    pub(super) fn wait_many<'a>(
        words: impl ExactSizeIterator<Item = (&'a AtomicU32, u32)>,
        timeout: Duration,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        // More words than one call takes: polled, as below.
        if !NO_WAITV.load(Relaxed) && words.len() <= WAIT_MANY_MAX {
            let waiters: Vec<futex::Wait> = words
                .map(|(word, expected)| {
                    let mut w = futex::Wait::new();
                    w.val = u64::from(expected);
                    w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
                    // Shared (no FUTEX2_PRIVATE): the words are in memory
                    // other processes map, as for `wait`.
                    w.flags = futex::WaitFlags::SIZE_U32;
                    w
                })
                .collect();
            // futex_waitv takes an absolute time on the clock it is given.
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
            let deadline = futex::Timespec {
                tv_sec: now
                    .tv_sec
                    .saturating_add(timeout.as_secs().min(i64::MAX as u64) as i64)
                    .saturating_add((nanos / 1_000_000_000) as i64),
                tv_nsec: (nanos % 1_000_000_000) as i64,
            };
            match futex::waitv(
                &waiters,
                futex::WaitvFlags::empty(),
                Some(&deadline),
                futex::ClockId::Monotonic,
            ) {
                // Woken, a word differed (EAGAIN), the time is up, a
                // signal: all mean "re-check".
                Ok(_) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => return,
                Err(Errno::NOSYS) => NO_WAITV.store(true, Relaxed),
                // Anything else (EINVAL, EFAULT: not expected with words
                // we map ourselves): poll this once rather than return at
                // once, which would make the caller's loop a busy one.
                Err(_) => {}
            }
        }
        std::thread::sleep(timeout.min(WAIT_MANY_POLL));
    }

    /// What a [`ByteLock`] holds: the open file description with the lock.
    pub(super) type Held = OwnedFd;

    pub(super) fn lock_byte(object: &Object, byte: u64) -> Result<Option<Held>> {
        let fd = reopen(object.fd()).map_err(|e| os_error(object.name(), "reopen", e))?;
        let mut lock = flock_for(lock_offset(byte), libc::F_WRLCK);
        match fcntl_lock(fd.as_fd(), libc::F_OFD_SETLK, &mut lock) {
            Ok(()) => Ok(Some(fd)),
            Err(Errno::AGAIN | Errno::ACCESS) => Ok(None),
            Err(e) => Err(os_error(object.name(), "fcntl(F_OFD_SETLK)", e)),
        }
    }

    pub(super) fn byte_locked(object: &Object, byte: u64) -> Result<bool> {
        let mut lock = flock_for(lock_offset(byte), libc::F_WRLCK);
        fcntl_lock(object.fd(), libc::F_OFD_GETLK, &mut lock)
            .map_err(|e| os_error(object.name(), "fcntl(F_OFD_GETLK)", e))?;
        Ok(i32::from(lock.l_type) != libc::F_UNLCK)
    }

    /// A new open file description of the same object: the lock must be
    /// this endpoint's own, not shared with every `dup` of the segment.
    fn reopen(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
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
    ) -> Result<(), Errno> {
        // SAFETY: `fd` is open for the duration of the call and `lock` is a
        // valid, exclusively borrowed `struct flock`.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, lock as *mut libc::flock) };
        if r == -1 {
            Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
        } else {
            Ok(())
        }
    }
}

// Not on Android: its apps' seccomp filter kills the process at
// `io_uring_setup` (SIGSYS), where a refusal should be an error.
#[cfg(target_os = "linux")]
#[path = "sync/queued_waits.rs"]
mod queued_waits;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "sync/address_wait.rs"]
mod address_wait;

#[cfg(any(test, not(any(target_os = "linux", target_os = "android"))))]
#[path = "sync/lock_file.rs"]
mod lock_file;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    //! No futex: the system's own wait on an address (`address_wait`). No
    //! OFD locks, and no record locks on shared-memory objects at all:
    //! lock files (`lock_file`, see the module docs).
    use super::*;

    pub(super) use super::address_wait::{wait, wake};

    pub(super) fn wait_many<'a>(
        _words: impl Iterator<Item = (&'a AtomicU32, u32)>,
        timeout: Duration,
    ) {
        std::thread::sleep(timeout.min(WAIT_MANY_POLL));
    }

    /// What a [`ByteLock`] holds: the lock file, locked.
    pub(super) type Held = lock_file::FileLock<'static>;

    pub(super) fn lock_byte(object: &Object, byte: u64) -> Result<Option<Held>> {
        let dir = lock_file::directory()?;
        lock_file::lock(dir.as_fd(), &lock_file::object_key(object.fd())?, byte)
    }

    pub(super) fn byte_locked(object: &Object, byte: u64) -> Result<bool> {
        let dir = lock_file::directory()?;
        lock_file::held(dir.as_fd(), &lock_file::object_key(object.fd())?, byte)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{wait_many, wait_words, wake, ManyWaiter};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// Whether `waiter` sleeps through a ring (after a first sleep). On
    /// Linux without one (before 6.7, `kernel.io_uring_disabled`, a seccomp
    /// filter such as a container's) a test says so on standard error and
    /// skips its ring's part, unless `MEMSHARE_REQUIRE_PRIVILEGED=1` (CI,
    /// the README's list of skips) makes that a failure.
    fn ring_here(waiter: &ManyWaiter) -> bool {
        if waiter.uses_ring() || cfg!(not(target_os = "linux")) {
            return waiter.uses_ring();
        }
        let why = "no io_uring with futex waits here (Linux 6.7 or later, \
                   kernel.io_uring_disabled = 0, no seccomp filter against it): \
                   a wait set sleeps in futex_waitv";
        assert!(
            std::env::var_os("MEMSHARE_REQUIRE_PRIVILEGED").is_none(),
            "{why}"
        );
        eprintln!("skipped the ring's part: {why}");
        false
    }

    /// One word is the system's own wait, not the wait on several words:
    /// where that one polls (Linux before 5.16 without `futex_waitv`, other
    /// Unixes; the stand-in here), a one-word wait still sleeps until its
    /// timeout. The async notifier's idle wait on its control word alone
    /// woke 5000 times a second there (found by a review).
    #[test]
    fn one_word_is_a_plain_wait_not_a_poll() {
        let word = AtomicU32::new(7);
        let polling = |_: std::vec::IntoIter<(&AtomicU32, u32)>, timeout: Duration| {
            std::thread::sleep(timeout.min(Duration::from_micros(200)))
        };
        let start = Instant::now();
        wait_words(
            vec![(&word, 7)].into_iter(),
            Duration::from_millis(100),
            polling,
        );
        let slept = start.elapsed();
        // (Where the system's own wait polls too, on Unixes with neither a
        // futex nor an address wait, it returns after 200 µs.)
        if cfg!(any(
            target_os = "linux",
            target_os = "android",
            target_os = "macos",
            target_os = "freebsd"
        )) {
            assert!(
                slept >= Duration::from_millis(50),
                "returned after {slept:?} of a 100 ms wait"
            );
        }
    }

    /// A wake of any one of the words ends the wait; a word that moved
    /// ends it at once; nothing ends it at the timeout.
    #[test]
    fn wait_many_returns_on_a_wake_of_any_word_a_moved_word_or_the_timeout() {
        let words: Vec<AtomicU32> = (0..128).map(AtomicU32::new).collect();
        let expect = |words: &[AtomicU32]| -> Vec<u32> {
            words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
        };

        let snapshot = expect(&words);
        let started = Instant::now();
        wait_many(
            words.iter().zip(snapshot.iter().copied()),
            Duration::from_millis(30),
        );
        let slept = started.elapsed();
        // (Where it polls, macOS and FreeBSD, it returns after 200 µs.)
        if cfg!(any(target_os = "linux", target_os = "android")) {
            assert!(
                slept >= Duration::from_millis(25),
                "returned after {slept:?}"
            );
        }

        let mut stale = expect(&words);
        stale[77] += 1;
        let started = Instant::now();
        wait_many(words.iter().zip(stale), Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));

        let snapshot = expect(&words);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                words[101].fetch_add(1, Ordering::Release);
                wake(&words[101], 1);
            });
            let started = Instant::now();
            wait_many(
                words.iter().zip(snapshot.iter().copied()),
                Duration::from_secs(10),
            );
            assert!(started.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn wait_many_on_more_words_than_one_call_takes_polls() {
        let words: Vec<AtomicU32> = (0..super::WAIT_MANY_MAX as u32 + 1)
            .map(AtomicU32::new)
            .collect();
        let snapshot: Vec<u32> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        for _ in 0..3 {
            let started = Instant::now();
            wait_many(
                words.iter().zip(snapshot.iter().copied()),
                Duration::from_secs(10),
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "slept {:?} on {} words instead of polling",
                started.elapsed(),
                words.len()
            );
        }
    }

    /// The ring's sleep: a wake of a word whose wait an earlier sleep
    /// queued (and left queued when it timed out) ends a later sleep, in
    /// which nothing new is queued; a word that moved ends it at once;
    /// sleeps with nothing woken last their timeout, again and again (no
    /// stale completion makes them return at once). Planted, the waits
    /// never queued again after a completion or never queued at all: the
    /// sleep lasts its 10 s.
    #[test]
    fn many_waiter_is_woken_through_waits_an_earlier_sleep_queued() {
        let words: Vec<AtomicU32> = (0..128).map(AtomicU32::new).collect();
        let snapshot = |words: &[AtomicU32]| -> Vec<u32> {
            words.iter().map(|w| w.load(Ordering::Relaxed)).collect()
        };
        let mut waiter = ManyWaiter::default();
        for _ in 0..3 {
            let now = snapshot(&words);
            let started = Instant::now();
            waiter.wait(
                words.iter().zip(now.iter().copied()),
                Duration::from_millis(30),
            );
            let slept = started.elapsed();
            assert!(
                slept >= Duration::from_millis(25),
                "returned after {slept:?}"
            );
        }
        ring_here(&waiter);
        for round in 0..3 {
            let now = snapshot(&words);
            let woken = 100;
            std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    words[woken].fetch_add(1, Ordering::Release);
                    wake(&words[woken], 1);
                });
                let started = Instant::now();
                waiter.wait(
                    words.iter().zip(now.iter().copied()),
                    Duration::from_secs(10),
                );
                let slept = started.elapsed();
                assert!(
                    slept < Duration::from_secs(5),
                    "round {round}: slept {slept:?}"
                );
            });
        }
        let mut stale = snapshot(&words);
        stale[7] += 1;
        let started = Instant::now();
        waiter.wait(words.iter().zip(stale), Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// A waiter made in one thread and moved to another sleeps there
    /// through a ring again (one ring per thread: the ring takes its
    /// requests from one task), and is woken there.
    #[test]
    fn many_waiter_moved_to_another_thread_still_wakes() {
        let word = &AtomicU32::new(0);
        let mut waiter = ManyWaiter::default();
        waiter.wait([(word, 0)].into_iter(), Duration::from_millis(1));
        let ring = ring_here(&waiter);
        let mut waiter = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                word.fetch_add(1, Ordering::Release);
                wake(word, 1);
            });
            s.spawn(move || {
                let started = Instant::now();
                waiter.wait([(word, 0)].into_iter(), Duration::from_secs(10));
                assert!(started.elapsed() < Duration::from_secs(5));
                waiter
            })
            .join()
            .unwrap()
        });
        if ring {
            assert!(
                waiter.uses_ring(),
                "the move made the waiter give up its ring"
            );
        }
        // And back in this thread: the word moved, so at once.
        let started = Instant::now();
        waiter.wait([(word, 0)].into_iter(), Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The fallback (`futex_waitv`) is woken as the ring is.
    #[test]
    fn many_waiter_without_a_ring_still_wakes() {
        let words: Vec<AtomicU32> = (0..128).map(AtomicU32::new).collect();
        let mut waiter = ManyWaiter::without_ring();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                words[5].fetch_add(1, Ordering::Release);
                wake(&words[5], 1);
            });
            let started = Instant::now();
            let now: Vec<u32> = words.iter().map(|w| w.load(Ordering::Relaxed)).collect();
            waiter.wait(words.iter().zip(now), Duration::from_secs(10));
            assert!(started.elapsed() < Duration::from_secs(5));
        });
        assert!(!waiter.uses_ring());
    }

    /// `forget` takes every queued wait off its word's futex queue, also
    /// when the wait queued last (the first the kernel's cancel looks at)
    /// was woken and its completion not yet taken: a wake of each other
    /// word then finds no waiter. Planted, the cancel without `all`: the
    /// kernel stops at the woken wait, and all three others still wait.
    #[cfg(target_os = "linux")]
    #[test]
    fn many_waiter_forget_cancels_every_queued_wait() {
        use rustix::thread::futex;
        let words: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
        let mut waiter = ManyWaiter::default();
        waiter.wait(words.iter().map(|w| (w, 0)), Duration::from_millis(1));
        if !ring_here(&waiter) {
            return;
        }
        assert_eq!(waiter.queued(), 4);
        words[3].fetch_add(1, Ordering::Release);
        let woken = futex::wake(&words[3], futex::Flags::empty(), i32::MAX as u32).unwrap();
        assert_eq!(woken, 1, "the waiter's queued wait on the last word");
        waiter.forget();
        assert_eq!(waiter.queued(), 0);
        for (i, word) in words[..3].iter().enumerate() {
            let woken = futex::wake(word, futex::Flags::empty(), i32::MAX as u32).unwrap();
            assert_eq!(woken, 0, "word {i}: a wait `forget` left queued");
        }
    }

    /// After `forget`, a word in a new mapping at the address of a word
    /// waited on before is waited on afresh: its wake ends the sleep.
    /// Planted, `forget` a no-op: the queued wait is on the old object's
    /// word, nothing waits on the new one, and the sleep lasts its 10 s.
    #[cfg(target_os = "linux")]
    #[test]
    fn many_waiter_forgets_a_word_whose_mapping_was_replaced() {
        use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};
        let map = |at: *mut std::ffi::c_void, flags: MapFlags| {
            // SAFETY: a new shared anonymous page, at `at` only with
            // MAP_FIXED over the page this test mapped and unmapped itself.
            unsafe {
                mmap_anonymous(
                    at,
                    4096,
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::SHARED | flags,
                )
            }
            .expect("mmap")
        };
        let first = map(std::ptr::null_mut(), MapFlags::empty());
        // SAFETY: the page is mapped, aligned, and lives until the munmap.
        let word = unsafe { &*first.cast::<AtomicU32>() };
        let mut waiter = ManyWaiter::default();
        waiter.wait([(word, 0)].into_iter(), Duration::from_millis(5));
        waiter.forget();
        // SAFETY: the page this test mapped; `word` is not used after.
        unsafe { munmap(first, 4096) }.expect("munmap");
        let second = map(first, MapFlags::FIXED);
        assert_eq!(second, first);
        // SAFETY: the new page, mapped at the same address until the end.
        let word = unsafe { &*second.cast::<AtomicU32>() };
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                word.fetch_add(1, Ordering::Release);
                wake(word, 1);
            });
            let started = Instant::now();
            // One return may be the cancel's: sleep until the word moved.
            while word.load(Ordering::Acquire) == 0 && started.elapsed() < Duration::from_secs(10) {
                waiter.wait([(word, 0)].into_iter(), Duration::from_secs(10));
            }
            let slept = started.elapsed();
            assert!(slept < Duration::from_secs(5), "slept {slept:?}");
        });
        // SAFETY: the page this test mapped; no reference to it is left.
        unsafe { munmap(second, 4096) }.expect("munmap");
    }
}
