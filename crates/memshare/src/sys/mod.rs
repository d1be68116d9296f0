//! The one place that talks to the operating system.
//!
//! Each platform family is a module that offers the same small set of items
//! to the layers above: [`Object`] (an open shared-memory object with its
//! name and lifetime bookkeeping), [`Mapping`] (one mapped window of it) and
//! a few free functions. Nothing outside this module uses `cfg(target_os)`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;
/// What inspection reports, built here (where the system is asked) and
/// shown by `crate::inspect`.
#[cfg(unix)]
pub use unix::{NamedInfo, NamedLifetime, SegmentKind};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;

/// How an endpoint uses a 32-bit wake word of an object it maps
/// (`Object::route_word`): the words are the same on every system, what
/// carries a wake-up between processes is not. Linux, macOS and FreeBSD
/// wait on the word itself (a shared futex, `os_sync_wait_on_address`,
/// `_umtx_op`), so a route is nothing there; Windows cannot wait on an
/// address across processes, so a route names the kernel events that do
/// (`sys/windows/sync.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WordRole {
    /// This endpoint sleeps on the word, as waiter `waiter` (0 for a word
    /// with one waiter; a subscriber's slot for the word all subscribers
    /// share).
    Parks {
        /// Which of the word's waiters this endpoint is.
        waiter: u32,
    },
    /// This endpoint wakes the word's waiters `0..waiters`.
    Wakes {
        /// How many waiters the word can have.
        waiters: u32,
    },
}

/// What a handle may do with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Map and read only.
    ReadOnly,
    /// Map, read and write.
    ReadWrite,
}

impl Access {
    /// `ReadWrite` if `writable`.
    pub(crate) fn from_writable(writable: bool) -> Access {
        if writable {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        }
    }

    /// Whether this access includes writing.
    pub(crate) fn writable(self) -> bool {
        self == Access::ReadWrite
    }
}

/// Whether a new view faults its pages in at once (`MAP_POPULATE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Prefault {
    /// Pages are faulted in on first touch (the default).
    #[default]
    No,
    /// Every page of the view is faulted in when it is mapped.
    Yes,
}

/// What an open object is, the same on every backend: the name it was
/// opened by, what this handle may do, and its size. Each backend's
/// `Object` holds one and dereferences to it.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) name: Option<String>,
    pub(crate) access: Access,
    pub(crate) len: u64,
}

impl Meta {
    /// The name, if the object has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The size in bytes, as the system reported it when the object was
    /// opened.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether this handle may map the object writable.
    pub(crate) fn writable(&self) -> bool {
        self.access.writable()
    }
}

/// Whose named objects an open accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Only objects owned by this process's effective user (the default).
    #[default]
    Me,
    /// Any owner (`SegmentOptions::allow_foreign_owner`).
    Anyone,
}

pub(crate) use crate::error::describe;

/// What the sender or parent says about an object it hands over; the
/// receiver checks every word of it against the handle itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub name: Option<String>,
    pub len: u64,
    pub readonly: bool,
    /// Unix: the object's device and inode, where the sender knows them
    /// (inheritance). Windows: the broker's one-time token for the offer.
    pub identity: Option<(u64, u64)>,
}

/// A monotonic clock for throttles read on every call (a client's
/// question whether its server lives): where the system has one, its coarse
/// clock, which reads the time of the last timer tick without the
/// time-stamp counter (Linux's `CLOCK_MONOTONIC_COARSE`: 6 ns a read
/// against 25 for `CLOCK_MONOTONIC` on the benchmark machine; in
/// `rpc-pipeline` the precise clock's reads were a fifth of the clients'
/// CPU). Returns nanoseconds since an arbitrary start, and the clock's
/// resolution in nanoseconds: a reading is up to one resolution behind the
/// precise clock.
pub(crate) fn coarse_clock() -> (u64, u64) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::time::{clock_getres, clock_gettime, ClockId, Timespec};
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        fn nanos(t: Timespec) -> u64 {
            (t.tv_sec as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(t.tv_nsec as u64)
        }
        /// The resolution, asked once (0: not yet).
        static RESOLUTION: AtomicU64 = AtomicU64::new(0);
        let mut resolution = RESOLUTION.load(Relaxed);
        if resolution == 0 {
            resolution = nanos(clock_getres(ClockId::MonotonicCoarse)).max(1);
            RESOLUTION.store(resolution, Relaxed);
        }
        (nanos(clock_gettime(ClockId::MonotonicCoarse)), resolution)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        let since = START.get_or_init(Instant::now).elapsed();
        (u64::try_from(since.as_nanos()).unwrap_or(u64::MAX), 0)
    }
}
