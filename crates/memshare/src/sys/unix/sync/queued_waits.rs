//! Futex waits that stay queued between sleeps (Linux 6.7 and later): a
//! wait set's sleep on its members' words, through an `io_uring` of its
//! own.
//!
//! `futex_waitv` queues the caller on every word at each call and takes it
//! off every queue before it returns: for 128 words, the kernel's walk of
//! 128 hash buckets on the way back from every wake-up, which made a set's
//! wake-up 1.5–3x a single endpoint's. Here each word's wait is an
//! `IORING_OP_FUTEX_WAIT` request, queued once and left queued: a wake of
//! the word completes it (one completion), the sleep is one `io_uring_enter`
//! that waits for any completion, and only the words whose waits completed
//! are queued again at the next sleep. A wake-up costs about what a single
//! futex wait's costs, whatever the number of words.
//!
//! Why a queued wait never loses a wake-up: a wait queued (the kernel
//! compared the word with the caller's snapshot and queued it) before this
//! sleep's snapshot sees every `FUTEX_WAKE` of its word from its queueing
//! until it completes, and a completion not yet looked at makes the sleep
//! return at once. A word with no wait queued is queued with this sleep's
//! snapshot, which the kernel compares (a wake between the snapshot and
//! the queueing changed the word: the request completes at once). Every
//! word is also compared with its snapshot just before the sleep, as
//! `futex_waitv` would (a word that moved returns at once).
//!
//! The waits are keyed by the word's address: a caller that stops waiting
//! on a word whose memory may be unmapped (and the address reused by
//! another mapping) calls [`QueuedWaits::forget`] first, which cancels
//! every queued wait (their late completions are told apart by a
//! generation in their `user_data`).
//!
//! The ring is `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
//! (completions are posted when its task waits for them, without
//! interrupting it meanwhile), so only the thread that made it may use it:
//! a sleep from another thread (or process, after a `fork`) makes a new one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::time::Duration;

use io_uring::{opcode, types, IoUring, Probe};

/// Entries of the submission queue: a wait set's words (at most
/// `WAIT_MANY_MAX`) and a cancel fit at once; a sleep that queues more (the
/// async notifier's may) submits what is queued to make room (`push`).
const ENTRIES: u32 = 256;

/// `FUTEX2_SIZE_U32`: a 32-bit futex, shared (no `FUTEX2_PRIVATE`): the
/// words are in memory other processes map.
const FUTEX2_SIZE_U32: u32 = 0x02;

/// The wait's bitset: any wake (`FUTEX_BITSET_MATCH_ANY`).
const MATCH_ANY: u64 = 0xffff_ffff;

/// The bits of `user_data` that hold the word's address; the generation
/// is above them (user-space addresses fit in 48 bits on every Linux
/// architecture with `io_uring`'s futex operations).
const ADDRESS_BITS: u32 = 48;

/// Set once this process was refused a ring for good (a kernel before 6.7,
/// `kernel.io_uring_disabled`, a seccomp filter): later sleeps do not ask
/// again (a wait set made per request would otherwise pay an
/// `io_uring_setup` each time). A refusal that may pass (no memory, no
/// descriptor left) is not remembered.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether `io_uring_setup`'s or the probe's error says the ring will never
/// be had here.
fn refused_for_good(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EINVAL | libc::EPERM | libc::EACCES | libc::EOPNOTSUPP)
    )
}

/// A ring and the words whose waits are queued in it.
pub(crate) struct QueuedWaits {
    ring: IoUring,
    /// Who made the ring (the only task that may use it).
    owner: (u32, std::thread::ThreadId),
    /// The addresses of the words whose waits are queued and have not been
    /// seen to complete.
    queued: HashSet<usize>,
    /// Bumped by [`QueuedWaits::forget`]: completions of an older
    /// generation are of cancelled waits.
    generation: u64,
    /// Whether a wait completed with an error other than "the word
    /// differed" or "cancelled": the ring cannot wait on these words, and
    /// the next sleep says so (the caller falls back to `futex_waitv`,
    /// rather than return at once at every sleep).
    failed: bool,
}

/// The task that runs this code now.
fn task() -> (u32, std::thread::ThreadId) {
    (std::process::id(), std::thread::current().id())
}

impl QueuedWaits {
    /// A ring, if this kernel has `io_uring` with futex waits (6.7) and
    /// lets this process use it (`kernel.io_uring_disabled`, seccomp).
    pub(crate) fn new() -> Option<QueuedWaits> {
        use std::sync::atomic::Ordering::Relaxed;
        if REFUSED.load(Relaxed) {
            return None;
        }
        let refused = |e: std::io::Error| {
            if refused_for_good(&e) {
                REFUSED.store(true, Relaxed);
            }
        };
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(ENTRIES)
            .map_err(refused)
            .ok()?;
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(refused)
            .ok()?;
        if !probe.is_supported(opcode::FutexWait::CODE)
            || !probe.is_supported(opcode::AsyncCancel2::CODE)
        {
            REFUSED.store(true, Relaxed);
            return None;
        }
        Some(QueuedWaits {
            ring,
            owner: task(),
            queued: HashSet::new(),
            generation: 0,
            failed: false,
        })
    }

    /// How many words' waits are queued (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Whether this task may use the ring (else the caller makes a new one).
    pub(crate) fn usable_here(&self) -> bool {
        self.owner == task()
    }

    /// Sleeps until a wake of one of `words` (or of a word whose wait was
    /// queued by an earlier sleep and not forgotten), for at most
    /// `timeout`; at once if a word differs from its snapshot. `Err` if the
    /// ring failed (the caller falls back to `futex_waitv`).
    pub(crate) fn wait<'a>(
        &mut self,
        words: impl Iterator<Item = (&'a AtomicU32, u32)> + Clone,
        timeout: Duration,
    ) -> Result<(), rustix::io::Errno> {
        use std::sync::atomic::Ordering::Relaxed;
        self.reap();
        if self.failed {
            // Not a sleep here and another in the fallback: the caller
            // falls back now.
            return Err(rustix::io::Errno::IO);
        }
        for (word, expected) in words.clone() {
            if word.load(Relaxed) != expected {
                return Ok(());
            }
        }
        for (word, expected) in words {
            let address = word.as_ptr() as usize;
            if address >> ADDRESS_BITS != 0 {
                return Err(rustix::io::Errno::INVAL);
            }
            if self.queued.contains(&address) {
                continue;
            }
            let entry = opcode::FutexWait::new(
                word.as_ptr().cast_const(),
                u64::from(expected),
                MATCH_ANY,
                FUTEX2_SIZE_U32,
            )
            .build()
            .user_data(self.generation << ADDRESS_BITS | address as u64);
            self.push(&entry)?;
            self.queued.insert(address);
        }
        let ts = types::Timespec::new()
            .sec(timeout.as_secs().min(i64::MAX as u64 / 2))
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) => match rustix::io::Errno::from_io_error(&e) {
                // The time is up, a signal: "re-check", as any return.
                Some(rustix::io::Errno::TIME | rustix::io::Errno::INTR) => Ok(()),
                Some(errno) => Err(errno),
                None => Err(rustix::io::Errno::IO),
            },
        }
    }

    /// Cancels every queued wait: the caller stops waiting on a word whose
    /// memory may go.
    pub(crate) fn forget(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        self.queued.clear();
        self.generation = (self.generation + 1) & ((1 << (64 - ADDRESS_BITS)) - 1);
        // Every request: with `any` alone the kernel stops at the first it
        // matches, cancelled or not (`io_cancel_remove`), and the first is
        // often a wait already woken whose completion is not posted yet
        // (`DEFER_TASKRUN`): the others would stay queued. (The crate's
        // docs say `all` changes nothing with `any`; the kernel's code says
        // otherwise.)
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any().all())
            .build()
            .user_data(u64::MAX);
        // A ring that cannot take the cancel: the caller's next sleep
        // finds it failing (or not); its waits are forgotten here either
        // way, and a late completion of one only makes a sleep return.
        if self.push(&cancel).is_ok() {
            let _ = self.ring.submit();
        }
    }

    /// Queues `entry`, making room by submitting what is queued if the
    /// submission queue is full.
    fn push(&mut self, entry: &io_uring::squeue::Entry) -> Result<(), rustix::io::Errno> {
        for _ in 0..2 {
            // The entries memshare queues hold no buffer: a futex wait's
            // address is read while the request is issued (inside the
            // `io_uring_enter` that submits it) and only its key is kept;
            // the word's mapping outlives that call, and the caller forgets
            // the waits before the mapping goes. A cancel holds no pointer.
            // SAFETY: so no entry points at memory freed while queued.
            let pushed = unsafe { self.ring.submission().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.ring.submit().map_err(|e| {
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)
            })?;
        }
        Err(rustix::io::Errno::AGAIN)
    }

    /// Takes the completions posted so far off the ring: their words are
    /// queued again at the next sleep.
    fn reap(&mut self) {
        let generation = self.generation;
        for cqe in self.ring.completion() {
            let data = cqe.user_data();
            if data == u64::MAX {
                continue; // a cancel's own completion
            }
            let result = cqe.result();
            if result < 0 && ![libc::EAGAIN, libc::ECANCELED, libc::EINTR].contains(&-result) {
                self.failed = true;
            }
            if data >> ADDRESS_BITS == generation {
                let address = (data & ((1 << ADDRESS_BITS) - 1)) as usize;
                self.queued.remove(&address);
            }
        }
    }
}
