//! The atomics and the futex word the shared-memory protocols (the channel,
//! publish-subscribe) are written against: the real ones, or loom's under
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

    /// Bumps the word, then wakes the one waiter (there is one per word).
    pub(crate) fn bump_and_wake(&self) {
        self.0.fetch_add(1, Ordering::Release);
        crate::sys::wake(&self.0, 1);
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

/// The model of a futex word: `wait` sleeps only if the word still holds
/// `expected`, checked under the lock that the wake takes, as the kernel's
/// bucket lock does. It has no timeout (the real one wakes every liveness
/// interval), so a lost wake-up is a deadlock, which loom reports.
#[cfg(loom)]
pub(crate) struct FutexWord {
    word: AtomicU32,
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

#[cfg(loom)]
impl FutexWord {
    pub(crate) fn new() -> FutexWord {
        FutexWord {
            word: AtomicU32::new(0),
            lock: loom::sync::Mutex::new(()),
            cond: loom::sync::Condvar::new(),
        }
    }

    pub(crate) fn load(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }

    pub(crate) fn wait(&self, expected: u32, _timeout: Duration) {
        let guard = self.lock.lock().unwrap();
        if self.word.load(Ordering::Relaxed) != expected {
            return; // EAGAIN
        }
        drop(self.cond.wait(guard).unwrap());
    }

    pub(crate) fn bump_and_wake(&self) {
        self.word.fetch_add(1, Ordering::Release);
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }

    pub(crate) fn bump_and_wake_all(&self) {
        self.bump_and_wake();
    }

    pub(crate) fn bump_and_wake_waiters(&self, _waiters: u64) {
        self.bump_and_wake_all();
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
