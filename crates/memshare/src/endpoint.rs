//! What every kind of endpoint (publish-subscribe, request/response)
//! shares: windows of its segment, what it knows of the other endpoints'
//! liveness, the routes of its wake words, and instance ids.

use std::time::{Duration, Instant};

use crate::primitive::FutexWord;
use crate::sys::{WordRole, WordRoute};
use crate::waiting::LIVENESS_INTERVAL;
use crate::{Result, Segment, View};

/// A mapped region: writable or not, the pointer to its first byte.
pub(crate) enum Window {
    ReadOnly(View),
    Writable(crate::ViewMut),
}

impl Window {
    pub(crate) fn ptr(&self) -> *mut u8 {
        match self {
            // Never written through: the pages are read-only.
            Window::ReadOnly(v) => v.as_ptr().cast_mut(),
            Window::Writable(v) => v.as_mut_ptr(),
        }
    }

    pub(crate) fn check_intact(&self) -> Result<()> {
        match self {
            Window::ReadOnly(v) => v.check_intact(),
            Window::Writable(v) => v.check_intact(),
        }
    }

    /// `Ok` unless the memory under one of `windows` is gone (another
    /// process truncated the segment): one load while no mapping of the
    /// process ever faulted, a look at each window after.
    #[inline]
    pub(crate) fn check_all<'a>(windows: impl IntoIterator<Item = &'a Window>) -> Result<()> {
        if !crate::sys::any_mapping_faulted() {
            return Ok(());
        }
        windows.into_iter().try_for_each(Window::check_intact)
    }
}

/// Reads the last of the `len` bytes at `ptr` (nothing if `len` is 0),
/// so that memory another process truncated away under them faults now:
/// an endpoint about to hand out a message asks this, then whether its
/// windows are intact, and reports `Truncated` instead of handing out
/// bytes that are gone (they read as zeros). A cut removes everything
/// from a page boundary to the end, so if the last byte is there, every
/// byte before it is. (A cut after the look is the documented race: the
/// bytes held read as zeros from then on, and the next call says why.)
///
/// # Safety
///
/// The `len` bytes at `ptr` lie in one mapping that lives through the
/// call.
#[inline]
pub(crate) unsafe fn touch_last(ptr: *const u8, len: usize) {
    if let Some(last) = len.checked_sub(1) {
        // A volatile read, so that it is not elided (its value does not
        // matter).
        // SAFETY: inside the bytes the caller vouches for.
        unsafe { std::ptr::read_volatile(ptr.add(last)) };
    }
}

/// What an endpoint last learnt of the other endpoints' liveness, so that
/// it asks the kernel (a lock query) at most once per liveness interval per
/// endpoint, and asks again at once when a slot changes hands.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// Per slot: the instance last asked about, the answer, when.
    known: Vec<Option<(u64, bool, Instant)>>,
}

impl Liveness {
    /// How long until the oldest answer "alive" still in force expires:
    /// when a waiting endpoint should ask again ([`LIVENESS_INTERVAL`] if
    /// it relies on none).
    pub(crate) fn due(&self) -> Duration {
        self.known
            .iter()
            .flatten()
            .filter(|(_, alive, _)| *alive)
            .map(|(_, _, at)| LIVENESS_INTERVAL.saturating_sub(at.elapsed()))
            // Expired answers are no longer relied on (a slot not asked
            // again: not the one keeping the waiter waiting).
            .filter(|due| !due.is_zero())
            .min()
            .unwrap_or(LIVENESS_INTERVAL)
    }

    pub(crate) fn new(slots: u32) -> Liveness {
        Liveness {
            known: vec![None; slots as usize],
        }
    }

    /// Whether the endpoint in `slot`, instance `instance`, was found dead
    /// (its lock free) when last asked: final, as a dead process takes no
    /// lock again and a new endpoint in the slot writes a new instance.
    pub(crate) fn known_dead(&self, slot: u32, instance: u64) -> bool {
        matches!(self.known.get(slot as usize), Some(Some((known, false, _))) if *known == instance)
    }

    /// Whether the endpoint in `slot` (`attached` by its state word,
    /// instance `instance`, locking byte `byte`) is alive: attached and
    /// holding its lock. The kernel is asked unless the last answer for
    /// this instance is younger than `max_age` (at most
    /// [`LIVENESS_INTERVAL`]).
    pub(crate) fn alive(
        &mut self,
        segment: &Segment,
        slot: u32,
        attached: bool,
        instance: u64,
        byte: u64,
        max_age: Duration,
    ) -> Result<bool> {
        if !attached {
            return Ok(false);
        }
        let entry = &mut self.known[slot as usize];
        if let Some((known, alive, at)) = *entry {
            if known == instance && at.elapsed() < max_age.min(LIVENESS_INTERVAL) {
                return Ok(alive);
            }
        }
        let alive = segment.object().byte_locked(byte)?;
        *entry = Some((instance, alive, Instant::now()));
        Ok(alive)
    }
}

/// The wake words an endpoint parks on and wakes, routed when it attaches
/// (`sys::WordRole`: nothing on Linux, kernel events on Windows) and kept
/// as long as the endpoint. Every endpoint maps its own view of the
/// header, so a word's address belongs to one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Routes(Vec<WordRoute>);

impl Routes {
    /// Routes `word`, a field of `header`, which this endpoint maps from
    /// byte 0 of `segment`, for `role`.
    pub(crate) fn add<H>(
        &mut self,
        segment: &Segment,
        header: &H,
        word: &FutexWord,
        role: WordRole,
    ) -> Result<()> {
        let offset = (word as *const FutexWord as usize).wrapping_sub(header as *const H as usize);
        debug_assert!(offset < std::mem::size_of::<H>(), "a word of the header");
        self.0.push(word.route(segment, offset as u64, role)?);
        Ok(())
    }

    /// [`Routes::add`] for the word this endpoint parks on (its only
    /// waiter).
    pub(crate) fn parks<H>(
        &mut self,
        segment: &Segment,
        header: &H,
        word: &FutexWord,
    ) -> Result<()> {
        self.add(segment, header, word, WordRole::Parks { waiter: 0 })
    }

    /// [`Routes::add`] for words this endpoint wakes (one waiter each).
    pub(crate) fn wakes<'a, H>(
        &mut self,
        segment: &Segment,
        header: &H,
        words: impl IntoIterator<Item = &'a FutexWord>,
    ) -> Result<()> {
        words
            .into_iter()
            .try_for_each(|word| self.add(segment, header, word, WordRole::Wakes { waiters: 1 }))
    }
}

/// A random, nonzero instance id for a new endpoint.
pub(crate) fn new_instance() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() | 1
}

/// What an endpoint shares, inside this process, with the wait sets it is
/// a member of ([`crate::WaitSet`]), which hold no borrow of it: whether
/// it was dropped, a request to ask about its peers afresh, and what the
/// kind needs of its private state (`T`).
#[derive(Debug, Default)]
pub(crate) struct Link<T = ()> {
    dropped: std::sync::atomic::AtomicBool,
    recheck: std::sync::atomic::AtomicBool,
    /// A channel's peer was seen (attached, or moving its position) by the
    /// endpoint or one of its wait-set or notifier members: from then on
    /// all of them ask its lock. Shared, so that they agree: a peer that
    /// moved its position and put it back is "seen" for every observer,
    /// not only for the one that looked at the time (a notifier member
    /// that thought the peer gone while the set's member did not woke the
    /// set's future again and again: found by `notifier_hostile`).
    peer_seen: std::sync::atomic::AtomicBool,
    /// The threads parked on the endpoint's word: the endpoint's own
    /// blocking call, its wait-set members, the async notifier.
    pub(crate) parkers: crate::primitive::Parkers,
    pub(crate) state: T,
    /// The endpoint's registration with the async notifier, made the first
    /// time a future or a readiness descriptor waits on it (see
    /// `crate::aio`), shared by every future of the endpoint and of the
    /// wait sets it is a member of. (The notifier is Unix's: on Windows
    /// the feature adds nothing.)
    #[cfg(feature = "async")]
    pub(crate) aio: crate::aio::notifier::RegistrationSlot,
}

impl<T> Link<T> {
    pub(crate) fn new(state: T) -> std::sync::Arc<Link<T>> {
        std::sync::Arc::new(Link {
            dropped: Default::default(),
            recheck: Default::default(),
            peer_seen: Default::default(),
            parkers: Default::default(),
            state,
            #[cfg(feature = "async")]
            aio: Default::default(),
        })
    }

    /// Records that the channel's peer was seen (see the field), and says
    /// whether it was, by this observer (`now`) or any other before.
    pub(crate) fn peer_seen(&self, now: bool) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        // Relaxed: a monotonic hint; the lock query that follows is what
        // is trusted.
        if now {
            self.peer_seen.store(true, Relaxed);
            return true;
        }
        self.peer_seen.load(Relaxed)
    }

    /// Said by the endpoint's `drop`.
    pub(crate) fn set_dropped(&self) {
        // Relaxed: a hint for the wait sets, which read nothing it orders.
        self.dropped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.parkers.close();
        // The registration's member holds this link: kept here, it would
        // never be dropped (nor the mapping and name it holds).
        #[cfg(feature = "async")]
        self.aio.close();
    }

    pub(crate) fn dropped(&self) -> bool {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A wait set saw a peer of the endpoint gone (its lock free): the
    /// endpoint's next look asks the kernel itself rather than trust an
    /// answer younger than [`LIVENESS_INTERVAL`], so that it reports what
    /// the set reported.
    pub(crate) fn request_recheck(&self) {
        self.recheck
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a recheck was requested, leaving the request for the
    /// endpoint: a wait set's async wait asks about the member's peers
    /// itself when the notifier found one gone (`WaitSet::try_wait_asking`).
    pub(crate) fn recheck_requested(&self) -> bool {
        self.recheck.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a recheck was requested (and clears the request). One load
    /// when none was.
    pub(crate) fn take_recheck(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.recheck.load(Relaxed) && self.recheck.swap(false, Relaxed)
    }
}
