//! The atomics and the futex word the shared-memory protocols (the channel,
//! publish-subscribe, request/response, the wait set) are written against: the real ones, or loom's under
//! `--cfg loom`, so that the loom models run the protocols' own code (as
//! crossbeam does).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

/// A 32-bit word in shared memory that an endpoint parks on: a shared
/// futex on Linux (see `sync`). Its value is a sequence number that every
/// wake bumps. An endpoint routes each word it parks on or wakes when it
/// attaches ([`FutexWord::route`]): nothing on Linux, the kernel events
/// behind the word on Windows.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct FutexWord(AtomicU32);

#[cfg(not(loom))]
impl FutexWord {
    /// A word in this process's own memory (the async notifier's control
    /// word), at 0.
    #[cfg_attr(not(all(unix, feature = "async")), allow(dead_code))]
    pub(crate) fn new() -> FutexWord {
        FutexWord(AtomicU32::new(0))
    }

    /// The current sequence number.
    pub(crate) fn load(&self) -> u32 {
        // Acquire: what the waker did before its bump is visible to a
        // parker that sees the new value (the parker re-checks anyway).
        self.0.load(Ordering::Acquire)
    }

    /// Sleeps while the word is `expected`, for at most `timeout`; returns
    /// early on a wake, a signal, or spuriously.
    pub(crate) fn wait(&self, expected: u32, timeout: Duration) {
        crate::sys::wait(&self.0, expected, timeout);
    }

    /// Bumps the word, then wakes the endpoint that parks on it (waiter 0:
    /// there is one per word). Where the system waits on the word itself
    /// (a futex), every thread asleep on it: the endpoint's process may
    /// park on the word from several threads at once (its own blocking
    /// call, a wait set, the async notifier: see [`Parkers`]).
    pub(crate) fn bump_and_wake(&self) {
        self.0.fetch_add(1, Ordering::Release);
        crate::sys::wake_waiters(&self.0, 1);
    }

    /// Bumps the word, then wakes every waiter.
    pub(crate) fn bump_and_wake_all(&self) {
        self.0.fetch_add(1, Ordering::Release);
        crate::sys::wake(&self.0, u32::MAX);
    }

    /// Bumps the word, then wakes the waiters whose bits are set in
    /// `waiters` (bit `i`: the endpoint that parks as waiter `i`). Where
    /// the system waits on the word itself (a futex), every waiter.
    pub(crate) fn bump_and_wake_waiters(&self, waiters: u64) {
        self.0.fetch_add(1, Ordering::Release);
        crate::sys::wake_waiters(&self.0, waiters);
    }

    /// Prepares this word, in this process's own memory, for waits and
    /// wakes between its threads (see `sys::route_local`); kept as long as
    /// the word is used.
    #[cfg(feature = "async")]
    pub(crate) fn route_local(&self) -> crate::Result<crate::sys::WordRoute> {
        crate::sys::route_local(&self.0)
    }

    /// Prepares this word, at byte `offset` of `segment`, for an endpoint
    /// that uses it as `role`; kept as long as the endpoint (see
    /// `sys::WordRole`).
    pub(crate) fn route(
        &self,
        segment: &crate::Segment,
        offset: u64,
        role: crate::sys::WordRole,
    ) -> crate::Result<crate::sys::WordRoute> {
        segment.object().route_word(&self.0, offset, role)
    }
}

/// One thread's sleeps on many words (a wait set's, the async notifier's),
/// keeping what it can between them: on Linux 6.7 and later each word's
/// wait stays queued in an `io_uring` until a wake completes it (see
/// `sys::ManyWaiter`), so a wake-up costs about a single wait's whatever
/// the number of words.
/// [`ManyWaiter::forget`] before a word waited on may be unmapped.
#[cfg(not(loom))]
#[derive(Default)]
pub(crate) struct ManyWaiter(crate::sys::ManyWaiter);

#[cfg(not(loom))]
impl ManyWaiter {
    /// How many words' waits stay queued (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.0.queued()
    }

    /// Whether the sleeps' waits stay queued in a ring here (tests).
    #[cfg(test)]
    pub(crate) fn uses_ring(&self) -> bool {
        self.0.uses_ring()
    }

    /// Sleeps while every word of `words` holds the value paired with it
    /// (and no word a sleep before waited on, not forgotten since, was
    /// woken), for at most `timeout`; returns early on a wake of one of
    /// them, a signal, or spuriously (callers re-check).
    pub(crate) fn wait(&mut self, words: &[(&FutexWord, u32)], timeout: Duration) {
        self.0.wait(words.iter().map(|&(w, v)| (&w.0, v)), timeout);
    }

    /// Stops the waits earlier sleeps left queued.
    pub(crate) fn forget(&mut self) {
        self.0.forget();
    }
}

#[cfg(loom)]
use loom::sync::Mutex;
#[cfg(not(loom))]
use std::sync::Mutex;

/// The threads of this process parked on one endpoint's word at once: the
/// endpoint's own blocking call, the wait sets it is a member of, the
/// async notifier. They share the endpoint's one "waiting" flag (or bit)
/// in shared memory, which its wakers look at: the first to park raises
/// it, and only the last to leave lowers it. (Each lowering its own would
/// lower it for all: the others, still asleep, would miss every wake-up
/// until their slice ended.) Every park raises it, even when others are
/// parked: a waker may have lowered it (the request/response server
/// lowers a client's as it wakes it). Once the endpoint is dropped
/// ([`Parkers::close`]) nobody touches the flag again: its slot may belong
/// to another endpoint by then.
#[derive(Debug, Default)]
pub(crate) struct Parkers {
    state: Mutex<ParkersState>,
}

#[derive(Debug, Default)]
struct ParkersState {
    count: u32,
    closed: bool,
}

impl Parkers {
    /// Counts one more parker and raises the flag (`raise`), under the
    /// lock: a parker that leaves meanwhile does not lower it.
    pub(crate) fn arm(&self, raise: impl FnOnce()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.closed {
            state.count = state.count.saturating_add(1);
            raise();
        }
    }

    /// Counts one parker less, and lowers the flag (`lower`) if it was the
    /// last.
    pub(crate) fn disarm(&self, lower: impl FnOnce()) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.closed {
            state.count = state.count.saturating_sub(1);
            if state.count == 0 {
                lower();
            }
        }
    }

    /// [`Parkers::arm`] for a 0/1 flag (a channel side's, a request/response
    /// endpoint's `waiting` word): stores 1.
    pub(crate) fn arm_flag(&self, flag: &AtomicU32) {
        self.arm(|| flag.store(1, Ordering::Relaxed));
    }

    /// [`Parkers::disarm`] for a 0/1 flag: stores 0 if it was the last.
    pub(crate) fn disarm_flag(&self, flag: &AtomicU32) {
        self.disarm(|| flag.store(0, Ordering::Relaxed));
    }

    /// The endpoint is dropped: from now on nobody raises or lowers its
    /// flag (a wait-set member of the endpoint lowered the bit of the
    /// subscriber that took its slot next). Waits for an arm or a disarm
    /// under way, so that the endpoint's drop, which clears its flag
    /// itself, comes after it.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    }
}

/// The model of a futex word: `wait` sleeps only if the word still holds
/// `expected`, checked under the lock that the wake takes, as the kernel's
/// bucket lock does. It has no timeout (the real one wakes every liveness
/// interval), so a lost wake-up is a deadlock, which loom reports.
///
/// Every word of a model shares one "kernel" (a loom mutex over the queue
/// of sleepers, and a condvar), so that a waiter can sleep on several words
/// at once ([`wait_many`], the model of `futex_waitv`). A wake marks the
/// sleepers queued on its word (up to `n`, first come first woken) and
/// only those return: there are no spurious wake-ups in the model, which
/// would hide a lost one.
#[cfg(loom)]
pub(crate) struct FutexWord {
    word: AtomicU32,
}

/// The modelled kernel's queue of sleepers.
#[cfg(loom)]
struct Kernel {
    queue: loom::sync::Mutex<Sleepers>,
    cond: loom::sync::Condvar,
}

#[cfg(loom)]
#[derive(Default)]
struct Sleepers {
    next: u64,
    /// Per sleeper: its ticket, the addresses of the words it sleeps on,
    /// and whether a wake picked it.
    queued: Vec<(u64, Vec<usize>, bool)>,
}

#[cfg(loom)]
loom::lazy_static! {
    static ref KERNEL: Kernel = Kernel {
        queue: loom::sync::Mutex::new(Sleepers::default()),
        cond: loom::sync::Condvar::new(),
    };
}

#[cfg(loom)]
impl FutexWord {
    pub(crate) fn new() -> FutexWord {
        FutexWord {
            word: AtomicU32::new(0),
        }
    }

    pub(crate) fn load(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }

    fn addr(&self) -> usize {
        self as *const FutexWord as usize
    }

    pub(crate) fn wait(&self, expected: u32, timeout: Duration) {
        wait_many(&[(self, expected)], timeout);
    }

    fn wake(&self, n: usize) {
        let mut sleepers = KERNEL.queue.lock().unwrap();
        let mut woken = 0;
        for (_, words, picked) in sleepers.queued.iter_mut() {
            if woken < n && !*picked && words.contains(&self.addr()) {
                *picked = true;
                woken += 1;
            }
        }
        drop(sleepers);
        if woken > 0 {
            KERNEL.cond.notify_all();
        }
    }

    /// Every sleeper, as the real one wakes every thread asleep on a
    /// futex.
    pub(crate) fn bump_and_wake(&self) {
        self.word.fetch_add(1, Ordering::Release);
        self.wake(usize::MAX);
    }

    pub(crate) fn bump_and_wake_all(&self) {
        self.word.fetch_add(1, Ordering::Release);
        self.wake(usize::MAX);
    }

    pub(crate) fn bump_and_wake_waiters(&self, _waiters: u64) {
        self.bump_and_wake_all();
    }
}

/// The model of `futex_waitv`: sleeps, under the kernel's lock, only if
/// every word still holds its value (else returns at once, as EAGAIN),
/// until a wake of one of the words picks this sleeper.
#[cfg(loom)]
pub(crate) fn wait_many(words: &[(&FutexWord, u32)], _timeout: Duration) {
    let mut sleepers = KERNEL.queue.lock().unwrap();
    if words
        .iter()
        .any(|(w, expected)| w.word.load(Ordering::Relaxed) != *expected)
    {
        return; // EAGAIN
    }
    let ticket = sleepers.next;
    sleepers.next += 1;
    let addrs = words.iter().map(|(w, _)| w.addr()).collect();
    sleepers.queued.push((ticket, addrs, false));
    loop {
        sleepers = KERNEL.cond.wait(sleepers).unwrap();
        let at = sleepers
            .queued
            .iter()
            .position(|(t, _, _)| *t == ticket)
            .expect("a sleeper stays queued until it returns");
        if sleepers.queued[at].2 {
            sleepers.queued.remove(at);
            return;
        }
    }
}

/// The model of the queued waits (`sys/unix/sync/queued_waits.rs`): each
/// word's wait is a sleeper of its own in the model's kernel, queued (under
/// the kernel's lock, if the word still holds the snapshot) by the first
/// sleep that waits on the word and left queued until a wake picks it; a
/// sleep takes the picked ones off first (the ring's completions), then
/// sleeps until a wake picks one of its words' waits. No spurious
/// returns: a lost wake-up is a deadlock.
#[cfg(loom)]
#[derive(Default)]
pub(crate) struct ManyWaiter {
    /// Per word queued: its address and its sleeper's ticket.
    queued: Vec<(usize, u64)>,
}

#[cfg(loom)]
impl ManyWaiter {
    pub(crate) fn wait(&mut self, words: &[(&FutexWord, u32)], _timeout: Duration) {
        let mut sleepers = KERNEL.queue.lock().unwrap();
        // The completions: picked waits are queued no more.
        self.queued.retain(|&(_, ticket)| {
            match sleepers.queued.iter().position(|(t, _, _)| *t == ticket) {
                Some(at) if sleepers.queued[at].2 => {
                    sleepers.queued.remove(at);
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
        // The look at every snapshot before the sleep.
        if words
            .iter()
            .any(|(w, expected)| w.word.load(Ordering::Relaxed) != *expected)
        {
            return;
        }
        // A word with no wait queued: queued with this sleep's snapshot
        // (just compared, under the same lock).
        for (w, _) in words {
            if !self.queued.iter().any(|&(a, _)| a == w.addr()) {
                let ticket = sleepers.next;
                sleepers.next += 1;
                sleepers.queued.push((ticket, vec![w.addr()], false));
                self.queued.push((w.addr(), ticket));
            }
        }
        loop {
            let picked = self.queued.iter().any(|&(_, ticket)| {
                sleepers
                    .queued
                    .iter()
                    .any(|(t, _, picked)| *t == ticket && *picked)
            });
            if picked {
                return;
            }
            sleepers = KERNEL.cond.wait(sleepers).unwrap();
        }
    }

    pub(crate) fn forget(&mut self) {
        let mut sleepers = KERNEL.queue.lock().unwrap();
        for (_, ticket) in self.queued.drain(..) {
            sleepers.queued.retain(|(t, _, _)| *t != ticket);
        }
    }
}

#[cfg(all(test, loom))]
/// Explores every execution of `f` with at most `preemption_bound`
/// preemptions (`LOOM_MAX_PREEMPTIONS` overrides it), and prints how many
/// there were (seen with `--nocapture`).
pub(crate) fn check(preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemption_bound);
    }
    // A plain counter, outside the model.
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "{} executions with at most {} preemptions",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound.unwrap()
    );
}
