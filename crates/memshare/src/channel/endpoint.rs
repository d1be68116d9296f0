//! What both ends of a channel share: attaching to a segment, liveness of
//! the peer, and waiting (spin, then park on a futex word).

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::layout::{self, Header};
use crate::sys::{self, EndpointLock};
use crate::{Error, Result, Segment, ViewMut};

/// How an endpoint waits when it cannot proceed (receiver: the ring is
/// empty; sender: the ring is full).
///
/// | strategy | latency | CPU while waiting |
/// |---|---|---|
/// | `Spin` | lowest: a cache-line transfer | one core at 100 % |
/// | `SpinThenPark` (default) | as `Spin` if the peer answers within the spin, else a futex wake-up (microseconds) | bounded spin, then none |
/// | `Park` | a futex wake-up | none |
///
/// Whatever the strategy, a parked endpoint wakes at least every
/// [`LIVENESS_INTERVAL`] to check whether its peer is still alive, so a
/// peer that dies is noticed within that bound, and a spinning endpoint
/// checks as often.
///
/// ```
/// use memshare::channel::{Receiver, WaitStrategy};
/// # fn main() -> memshare::Result<()> {
/// let mut rx = Receiver::create(4096)?;
/// rx.set_wait_strategy(WaitStrategy::Spin);
/// assert_eq!(rx.wait_strategy(), WaitStrategy::Spin);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin: never sleep.
    Spin,
    /// Spin this many times (each a CPU spin-loop hint), then park.
    SpinThenPark {
        /// Spin iterations before parking.
        spins: u32,
    },
    /// Park at once.
    Park,
}

/// The default spin of [`WaitStrategy::SpinThenPark`]: a few microseconds.
pub const DEFAULT_SPINS: u32 = 4000;

/// How often a waiting endpoint checks that its peer is alive.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

impl Default for WaitStrategy {
    fn default() -> WaitStrategy {
        WaitStrategy::SpinThenPark {
            spins: DEFAULT_SPINS,
        }
    }
}

/// Which end this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Sender,
    Receiver,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Sender => "sender",
            Side::Receiver => "receiver",
        }
    }

    fn peer(self) -> Side {
        match self {
            Side::Sender => Side::Receiver,
            Side::Receiver => Side::Sender,
        }
    }

    fn slot(self) -> u8 {
        match self {
            Side::Sender => layout::SLOT_SENDER,
            Side::Receiver => layout::SLOT_RECEIVER,
        }
    }
}

/// An attached end of a channel: the mapping, the header, the lock that
/// says this end is alive, and the capacity as validated at attach time
/// (never re-read from shared memory).
pub(crate) struct Endpoint {
    pub(crate) header: Header,
    pub(crate) capacity: u64,
    pub(crate) side: Side,
    pub(crate) strategy: WaitStrategy,
    /// When the peer's liveness was last checked with a system call.
    last_liveness: Instant,
    /// Whether this side has seen a peer: its state said attached, or it
    /// moved its position. From then on the peer's lock is asked whatever
    /// its state word says (a peer that zeroes it before dying must not
    /// look like one that never came).
    pub(crate) peer_seen: bool,
    segment: Segment,
    _lock: EndpointLock,
    // Declared last: dropped after everything that points into it.
    view: ViewMut,
}

// SAFETY: the raw pointers in `header` point into `_view`, which is owned
// by the endpoint and is itself `Send`; everything reached through them is
// atomic or owned by this endpoint by protocol.
unsafe impl Send for Endpoint {}

impl Endpoint {
    /// A new segment (anonymous, or called `name`) formatted as an empty
    /// channel whose ring holds at least `capacity` bytes.
    pub(crate) fn new_segment(name: Option<&str>, capacity: usize) -> Result<Segment> {
        let len = segment_len_for(capacity)?;
        // Reserved: a ring is filled anyway, and a full shared-memory file
        // system is then an error here, not a fault at the first message.
        let create = |options: &crate::SegmentOptions| match name {
            Some(name) => options.create_named(name, len),
            None => options.create(len),
        };
        let segment = match create(Segment::options().reserve(true)) {
            // Systems that cannot reserve (not Linux) make it sparse.
            Err(Error::Unsupported { .. }) => create(&Segment::options())?,
            other => other?,
        };
        Endpoint::format(&segment)?;
        Ok(segment)
    }

    /// Formats `segment` as an empty channel whose ring fills the rest of it.
    pub(crate) fn format(segment: &Segment) -> Result<()> {
        let view = segment.map(..)?;
        let capacity = ring_capacity(segment)?;
        let h = view_header(&view);
        h.version().store(layout::VERSION, Ordering::Relaxed);
        h.header_len()
            .store(layout::HEADER_LEN as u32, Ordering::Relaxed);
        h.capacity().store(capacity, Ordering::Relaxed);
        // Publish: whoever sees the magic (Acquire) sees the fields above.
        h.magic()
            .store(u64::from_le_bytes(layout::MAGIC), Ordering::Release);
        view.check_intact()
    }

    /// Attaches `side` to the channel in `segment`.
    pub(crate) fn attach(segment: &Segment, side: Side) -> Result<Endpoint> {
        let object = segment.describe();
        let corrupt = |detail: String| Error::Corrupted {
            object: object.clone(),
            detail,
        };
        if segment.len() < layout::HEADER_LEN as u64 {
            return Err(corrupt(format!(
                "{} bytes: too small to be a channel",
                segment.len()
            )));
        }
        let view = segment.map(..)?;
        let h = view_header(&view);
        if h.magic().load(Ordering::Acquire) != u64::from_le_bytes(layout::MAGIC) {
            return Err(corrupt("not a memshare channel (bad magic)".into()));
        }
        let version = h.version().load(Ordering::Relaxed);
        if version != layout::VERSION {
            return Err(Error::Unsupported {
                what: format!(
                    "{object}: channel layout version {version} (this library speaks {})",
                    layout::VERSION
                ),
            });
        }
        let header_len = h.header_len().load(Ordering::Relaxed);
        if header_len as usize != layout::HEADER_LEN {
            return Err(corrupt(format!(
                "header length {header_len}, expected {}",
                layout::HEADER_LEN
            )));
        }
        let capacity = h.capacity().load(Ordering::Relaxed);
        let expected = ring_capacity(segment).map_err(|e| corrupt(e.to_string()))?;
        if capacity != expected {
            return Err(corrupt(format!(
                "capacity {capacity} does not match the segment's ring of {expected} bytes"
            )));
        }
        let lock = segment
            .object()
            .lock_endpoint(side.slot())?
            .ok_or_else(|| Error::AlreadyAttached {
                object: object.clone(),
                side: side.name(),
            })?;
        let peer_seen = h_state(&h, side.peer()).load(Ordering::Acquire) != layout::STATE_NEW;
        let endpoint = Endpoint {
            header: h,
            capacity,
            side,
            strategy: WaitStrategy::default(),
            last_liveness: Instant::now(),
            peer_seen,
            segment: segment.clone(),
            _lock: lock,
            view,
        };
        endpoint
            .state(side)
            .store(layout::STATE_ATTACHED, Ordering::Release);
        endpoint.check_intact()?;
        Ok(endpoint)
    }

    /// `Ok` unless the segment's memory under this endpoint is gone (a
    /// peer truncated it): [`Error::Truncated`] or [`Error::NoSpace`]. One
    /// load of a process-local flag; see `View::check_intact`.
    #[inline]
    pub(crate) fn check_intact(&self) -> Result<()> {
        self.view.check_intact()
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    fn state(&self, side: Side) -> &AtomicU32 {
        h_state(&self.header, side)
    }

    pub(crate) fn describe(&self) -> String {
        self.segment.describe()
    }

    pub(crate) fn corrupted(&self, detail: String) -> Error {
        Error::Corrupted {
            object: self.describe(),
            detail,
        }
    }

    pub(crate) fn disconnected(&self) -> Error {
        Error::Disconnected {
            object: self.describe(),
            peer: self.side.peer().name(),
        }
    }

    /// Whether the peer is known to be gone: it detached, or it was seen
    /// (attached, or moving its position) and its process no longer holds
    /// its endpoint lock, whatever its state word says now. The lock is
    /// asked with a system call at most every [`LIVENESS_INTERVAL`].
    pub(crate) fn peer_gone(&mut self) -> Result<bool> {
        let peer = self.side.peer();
        match self.state(peer).load(Ordering::Acquire) {
            layout::STATE_DETACHED => Ok(true),
            layout::STATE_NEW if !self.peer_seen => Ok(false),
            state => {
                if state != layout::STATE_NEW {
                    self.peer_seen = true;
                }
                if self.last_liveness.elapsed() < LIVENESS_INTERVAL {
                    return Ok(false);
                }
                self.last_liveness = Instant::now();
                Ok(!self.segment.object().endpoint_held(peer.slot())?)
            }
        }
    }

    /// Whether the peer detached cleanly (one atomic load, no system call).
    #[inline]
    pub(crate) fn peer_gone_cheap(&self) -> bool {
        self.state(self.side.peer()).load(Ordering::Acquire) == layout::STATE_DETACHED
    }

    /// The futex word and "waiting" flag this side parks on.
    fn park_words(&self) -> (&AtomicU32, &AtomicU32) {
        match self.side {
            Side::Sender => (self.header.send_futex(), self.header.send_waiting()),
            Side::Receiver => (self.header.recv_futex(), self.header.recv_waiting()),
        }
    }

    /// Publishes `value` in `position` (this side's `write_pos` or
    /// `read_pos`) and wakes the peer if it is parked.
    ///
    /// The `Release` store publishes the frame (or the freed space). The
    /// SeqCst fence here and the one in [`Endpoint::park`] make a
    /// store-buffering pair: either this side sees the peer's "waiting"
    /// flag, or the peer, after setting it, sees the new position and does
    /// not sleep. So no wake-up is lost (checked by the loom model in
    /// `tests/loom_protocol.rs`; SeqCst read-modify-writes instead of the
    /// fences would be cheaper on x86, but loom cannot check those).
    #[inline]
    pub(crate) fn publish(&self, position: &AtomicU64, value: u64) {
        position.store(value, Ordering::Release);
        fence(Ordering::SeqCst);
        let (futex, waiting) = match self.side {
            Side::Sender => (self.header.recv_futex(), self.header.recv_waiting()),
            Side::Receiver => (self.header.send_futex(), self.header.send_waiting()),
        };
        if waiting.load(Ordering::Relaxed) != 0 {
            futex.fetch_add(1, Ordering::Release);
            sys::wake(futex, 1);
        }
    }

    /// One round of waiting while `blocked()` holds. Returns when the
    /// caller should look again: the peer made progress, a spin or a park
    /// slice ended, or the peer may be gone (the caller checks); `Ok(true)`
    /// if it parked. `Err(TimedOut)` once `deadline` has passed.
    pub(crate) fn idle(
        &mut self,
        round: &mut u64,
        deadline: Option<Instant>,
        op: &'static str,
        blocked: impl Fn(&Header) -> bool,
    ) -> Result<bool> {
        let spins = match self.strategy {
            WaitStrategy::Spin => u64::MAX,
            WaitStrategy::SpinThenPark { spins } => u64::from(spins),
            WaitStrategy::Park => 0,
        };
        // A u64 count of rounds never wraps in practice (a round is at
        // least a spin-loop hint).
        *round += 1;
        // Look at the clock only now and then while spinning.
        let check_clock = *round > spins || *round % 256 == 0;
        if check_clock {
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    return Err(Error::TimedOut {
                        object: self.describe(),
                        op,
                    });
                }
            }
        }
        if *round <= spins {
            std::hint::spin_loop();
            return Ok(false);
        }
        self.park(deadline, blocked);
        Ok(true)
    }

    /// Parks on this side's futex word for one slice (at most
    /// [`LIVENESS_INTERVAL`]) unless `blocked()` is already false.
    fn park(&self, deadline: Option<Instant>, blocked: impl Fn(&Header) -> bool) {
        let (futex, waiting) = self.park_words();
        // Snapshot the word first: a wake after this point changes it, and
        // the futex wait below then returns at once.
        let seq = futex.load(Ordering::Acquire);
        waiting.store(1, Ordering::Relaxed);
        // The other half of the store-buffering pair in `Endpoint::publish`.
        fence(Ordering::SeqCst);
        if blocked(&self.header) {
            let slice = deadline.map_or(LIVENESS_INTERVAL, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(LIVENESS_INTERVAL)
            });
            if !slice.is_zero() {
                sys::wait(futex, seq, slice);
            }
        }
        waiting.store(0, Ordering::Relaxed);
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.state(self.side)
            .store(layout::STATE_DETACHED, Ordering::Release);
        // Wake a parked peer so that it sees the detach at once.
        let (futex, _) = match self.side {
            Side::Sender => (self.header.recv_futex(), ()),
            Side::Receiver => (self.header.send_futex(), ()),
        };
        futex.fetch_add(1, Ordering::Release);
        sys::wake(futex, 1);
    }
}

/// The ring capacity a segment gives: everything after the header, which
/// must be a power of two within the limits.
pub(crate) fn ring_capacity(segment: &Segment) -> Result<u64> {
    let ring = segment.len().saturating_sub(layout::HEADER_LEN as u64);
    if !(layout::MIN_CAPACITY..=layout::MAX_CAPACITY).contains(&ring) || !ring.is_power_of_two() {
        return Err(Error::OutOfRange {
            object: segment.describe(),
            detail: format!(
                "a channel segment is {} header bytes plus a ring whose size is a power of two from {} to {}; this one has {ring} ring bytes",
                layout::HEADER_LEN,
                layout::MIN_CAPACITY,
                layout::MAX_CAPACITY
            ),
        });
    }
    Ok(ring)
}

/// The segment size for a channel whose ring holds at least `capacity`
/// bytes (rounded up to a power of two, at least the minimum).
fn segment_len_for(capacity: usize) -> Result<u64> {
    let ring = (capacity as u64)
        .max(layout::MIN_CAPACITY)
        .checked_next_power_of_two()
        .filter(|&r| r <= layout::MAX_CAPACITY)
        .ok_or_else(|| Error::OutOfRange {
            object: "channel".into(),
            detail: format!(
                "capacity {capacity} is larger than the largest ring ({} bytes)",
                layout::MAX_CAPACITY
            ),
        })?;
    Ok(layout::HEADER_LEN as u64 + ring)
}

/// The state word of `side`.
fn h_state(h: &Header, side: Side) -> &AtomicU32 {
    match side {
        Side::Sender => h.sender_state(),
        Side::Receiver => h.receiver_state(),
    }
}

fn view_header(view: &ViewMut) -> Header {
    // SAFETY: a view of a whole segment starts page-aligned (offset 0) and
    // is at least HEADER_LEN bytes long (checked by the callers); the
    // endpoint keeps the view alive as long as the header.
    unsafe { Header::new(view.as_mut_ptr()) }
}
