//! What both ends of a channel share: attaching to a segment, liveness of
//! the peer, and waiting (spin, then park on a futex word).

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout::{self, Header, Side};
use super::ring::{self, Corruption, Ring};
use crate::endpoint::{Link, Routes};
use crate::sys::ByteLock;
use crate::waiting::{CoarseInstant, Rounds, Step, WaitStrategy, LIVENESS_INTERVAL};
use crate::{Error, Result, Segment, ViewMut};

/// An attached end of a channel: the mapping, the header, the lock that
/// says this end is alive, and the capacity as validated at attach time
/// (never re-read from shared memory).
pub(crate) struct Endpoint {
    header: NonNull<Header>,
    pub(crate) ring: Ring,
    pub(crate) side: Side,
    pub(crate) strategy: WaitStrategy,
    /// When the peer's liveness was last asked with a system call.
    last_liveness: CoarseInstant,
    /// Whether this side has seen a peer: its state said attached, or it
    /// moved its position. From then on the peer's lock is asked whatever
    /// its state word says (a peer that zeroes it before dying must not
    /// look like one that never came).
    peer_seen: bool,
    /// What the wait sets this endpoint is a member of share with it; its
    /// state, for a sender, is the frame length its pending
    /// `reserve_async` waits for room for (0: none), so that the async
    /// notifier reports the sender when that frame fits rather than when
    /// the smallest does (which a future waiting for more would take for
    /// a wake-up at every look: a spin).
    pub(crate) link: Arc<Link<std::sync::atomic::AtomicU64>>,
    segment: Segment,
    /// The futex words it parks on (its own) and wakes (the peer's).
    _routes: Routes,
    _lock: ByteLock,
    // Declared last: dropped after everything that points into it.
    view: ViewMut,
}

// SAFETY: `header` and `ring` point into `view`, which the endpoint owns
// and which is itself `Send`; everything reached through them is atomic or
// owned by this endpoint by protocol.
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

    /// Attaches `attach` to the named channel `name`: opened if it exists,
    /// created (with a ring of at least `capacity`) if not. Two processes
    /// that both call this, in any order, end up on one channel. A segment
    /// found before its creator wrote the header (the name appears before
    /// the format) is waited for, up to 2 s.
    pub(crate) fn open_or_create<T>(
        name: &str,
        capacity: usize,
        attach: impl Fn(&Segment) -> Result<T>,
    ) -> Result<T> {
        let segment = loop {
            match Segment::open(name) {
                Err(Error::NotFound { .. }) => {}
                other => break other?,
            }
            match Endpoint::new_segment(Some(name), capacity) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => break other?,
            }
        };
        crate::waiting::once_formatted(&segment, attach)
    }

    /// Formats `segment` as an empty channel whose ring fills the rest of it.
    pub(crate) fn format(segment: &Segment) -> Result<()> {
        let capacity = ring_capacity(segment)?;
        let view = segment.map(..)?;
        let h = header_of(&view);
        h.fixed.version.store(layout::VERSION, Ordering::Relaxed);
        h.fixed
            .header_len
            .store(layout::HEADER_LEN as u32, Ordering::Relaxed);
        h.fixed.capacity.store(capacity, Ordering::Relaxed);
        // Publish: whoever sees the magic (Acquire) sees the fields above.
        h.fixed
            .magic
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
            return Err(Error::NotAChannel {
                object: object.clone(),
                detail: format!(
                    "{} bytes: too small to be a channel (the header alone is {})",
                    segment.len(),
                    layout::HEADER_LEN
                ),
            });
        }
        let view = segment.map(..)?;
        let h = header_of(&view);
        if h.fixed.magic.load(Ordering::Acquire) != u64::from_le_bytes(layout::MAGIC) {
            view.check_intact()?;
            return Err(Error::NotAChannel {
                object: object.clone(),
                detail: "it does not start with the channel magic \"MSCHAN01\"".into(),
            });
        }
        let version = h.fixed.version.load(Ordering::Relaxed);
        if version != layout::VERSION {
            return Err(Error::Unsupported {
                what: format!(
                    "{object}: channel layout version {version} (this library speaks {})",
                    layout::VERSION
                ),
            });
        }
        let header_len = h.fixed.header_len.load(Ordering::Relaxed);
        if header_len as usize != layout::HEADER_LEN {
            return Err(corrupt(format!(
                "header length {header_len}, expected {}",
                layout::HEADER_LEN
            )));
        }
        let capacity = checked_capacity(segment, h.fixed.capacity.load(Ordering::Relaxed))?;
        let lock = segment
            .object()
            .lock_byte(layout::lock_byte(side))?
            .ok_or_else(|| Error::AlreadyAttached {
                object: object.clone(),
                side: side.name(),
            })?;
        let mut routes = Routes::default();
        routes.parks(segment, h, &h.park(side).futex)?;
        routes.wakes(segment, h, [&h.park(side.peer()).futex])?;
        let peer_seen = h.state(side.peer()).load(Ordering::Acquire) != layout::STATE_NEW;
        // SAFETY: the view maps the whole segment, which is the header plus
        // `capacity` bytes (checked above), page-aligned; the endpoint keeps
        // the view alive as long as the ring.
        let ring = unsafe { Ring::new(view.as_mut_ptr().add(layout::HEADER_LEN), capacity) };
        let endpoint = Endpoint {
            header: NonNull::from(h),
            ring,
            side,
            strategy: WaitStrategy::default(),
            last_liveness: CoarseInstant::now(),
            peer_seen,
            link: Link::new(std::sync::atomic::AtomicU64::new(0)),
            segment: segment.clone(),
            _routes: routes,
            _lock: lock,
            view,
        };
        // Before the state: a peer that sees this side attached sees its
        // pid (a hint for watching its death, see docs/channel-layout.md).
        endpoint
            .header()
            .pid(side)
            .store(std::process::id(), Ordering::Relaxed);
        endpoint
            .header()
            .state(side)
            .store(layout::STATE_ATTACHED, Ordering::Release);
        endpoint.check_intact()?;
        Ok(endpoint)
    }

    /// The positions `(read_pos, write_pos)` found at attach, checked:
    /// 8-aligned, read not past write, at most a ring apart, and below
    /// [`layout::MAX_POSITION`] so that no later arithmetic can overflow.
    pub(crate) fn positions_at_attach(&self) -> Result<(u64, u64)> {
        let h = self.header();
        let read = h.position(Side::Receiver).load(Ordering::Acquire);
        let write = h.position(Side::Sender).load(Ordering::Acquire);
        if write % layout::FRAME_ALIGN != 0
            || read % layout::FRAME_ALIGN != 0
            || read > write
            || write - read > self.capacity()
            || write >= layout::MAX_POSITION
        {
            return Err(self.corrupted(Corruption(format!(
                "positions read {read} and write {write} are inconsistent"
            ))));
        }
        Ok((read, write))
    }

    /// The header, mapped at the start of the endpoint's view.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: points into `view`, which lives as long as `self`; the
        // header is all atomics.
        unsafe { self.header.as_ref() }
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

    /// Whether this side has seen a peer (see `peer_gone`).
    pub(crate) fn peer_seen(&self) -> bool {
        self.peer_seen
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    pub(crate) fn describe(&self) -> String {
        self.segment.describe()
    }

    /// The error for what the ring core found, unless the memory under the
    /// ring is gone, which explains it better (a truncated ring reads as
    /// zeros).
    pub(crate) fn corrupted(&self, corruption: Corruption) -> Error {
        match self.check_intact() {
            Err(e) => e,
            Ok(()) => Error::Corrupted {
                object: self.describe(),
                detail: corruption.0,
            },
        }
    }

    pub(crate) fn disconnected(&self) -> Error {
        Error::Disconnected {
            object: self.describe(),
            peer: self.side.peer().name(),
        }
    }

    /// Puts this side's true position (`own`) back into the header if a
    /// peer wrote over it. Only this side writes its published position,
    /// and wait sets and the async notifier read it as this side's truth
    /// (`ChannelWatch::ready`): a peer that wrote another value there
    /// would have them report this side ready at every look while its
    /// `try_` form finds nothing, and a future would spin through the
    /// notifier. Called by the `try_` forms when they find nothing: one
    /// load of a line this side writes, a store only after such a write.
    pub(crate) fn restore_position(&self, own: u64) {
        let published = self.header().position(self.side);
        if published.load(Ordering::Relaxed) != own {
            // Release, as every publication of the position: it orders
            // nothing new (the frames it covers were released when it was
            // first published), but the peer loads it with Acquire.
            published.store(own, Ordering::Release);
        }
    }

    /// Whether the peer is known to be gone: it detached, or it was seen
    /// (attached, or moving its position: `peer_moved`) and its process no
    /// longer holds its endpoint lock, whatever its state word says now.
    /// The lock is asked with a system call at most every
    /// [`LIVENESS_INTERVAL`].
    pub(crate) fn peer_gone(&mut self, peer_moved: bool) -> Result<bool> {
        let peer = self.side.peer();
        self.peer_seen = self.link.peer_seen(self.peer_seen || peer_moved);
        match self.header().state(peer).load(Ordering::Acquire) {
            layout::STATE_DETACHED => Ok(true),
            layout::STATE_NEW if !self.peer_seen => {
                // Nothing to ask: no peer yet. (Counts as an answer, so
                // that a park is not cut short for one.)
                self.last_liveness = CoarseInstant::now();
                Ok(false)
            }
            state => {
                if state != layout::STATE_NEW {
                    self.peer_seen = self.link.peer_seen(true);
                }
                // (A wait set that found the peer's lock free asks for a
                // fresh answer: the endpoint then reports what it did. The
                // request is taken whether or not the answer was due
                // anyway: left standing, it would have a woken async wait
                // set ask again at every wake.)
                let recheck = self.link.take_recheck();
                if self.last_liveness.elapsed() < LIVENESS_INTERVAL && !recheck {
                    return Ok(false);
                }
                self.last_liveness = CoarseInstant::now();
                Ok(!self.segment.object().byte_locked(layout::lock_byte(peer))?)
            }
        }
    }

    /// Whether the peer detached cleanly (one atomic load, no system call).
    #[inline]
    pub(crate) fn peer_gone_cheap(&self) -> bool {
        self.header()
            .state(self.side.peer())
            .load(Ordering::Acquire)
            == layout::STATE_DETACHED
    }

    /// One round of waiting while `blocked()` holds (see [`Rounds`]):
    /// `Err(TimedOut)` once the deadline has passed.
    pub(crate) fn idle(
        &mut self,
        rounds: &mut Rounds,
        op: &'static str,
        blocked: impl Fn(&Header) -> bool,
    ) -> Result<()> {
        let last = self.last_liveness;
        match rounds.next_within(|| LIVENESS_INTERVAL.saturating_sub(last.elapsed())) {
            Some(Step::Spin) => std::hint::spin_loop(),
            Some(Step::Park(slice)) => {
                ring::park(self.header(), self.side, &self.link.parkers, slice, blocked)
            }
            None => {
                return Err(Error::TimedOut {
                    object: self.describe(),
                    op,
                })
            }
        }
        Ok(())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.link.set_dropped();
        let h = self.header();
        h.state(self.side)
            .store(layout::STATE_DETACHED, Ordering::Release);
        // Wake a parked peer so that it sees the detach at once.
        ring::wake_peer(h, self.side);
    }
}

/// The ring capacity a segment gives: everything after the header, which
/// must be a power of two within the limits.
pub(crate) fn ring_capacity(segment: &Segment) -> Result<u64> {
    let ring = segment.len().saturating_sub(layout::HEADER_LEN as u64);
    if !(layout::MIN_CAPACITY..=layout::MAX_CAPACITY).contains(&ring) || !ring.is_power_of_two() {
        return Err(Error::NotAChannel {
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

/// The ring capacity of the channel in `segment` whose header says
/// `declared`: the rest of the segment after the header, which must be a
/// power of two within the limits (`NotAChannel`), and `declared`
/// (`Corrupted`). Where the system knows the segment's size only in whole
/// pages (a Windows section opened by name), `declared` if it is a valid
/// ring size that the segment holds to within that page.
pub(crate) fn checked_capacity(segment: &Segment, declared: u64) -> Result<u64> {
    let corrupt = |detail: String| Error::Corrupted {
        object: segment.describe(),
        detail,
    };
    if segment.len_slack() == 0 {
        let ring = ring_capacity(segment)?;
        if declared != ring {
            return Err(corrupt(format!(
                "capacity {declared} does not match the segment's ring of {ring} bytes"
            )));
        }
        return Ok(ring);
    }
    let valid = (layout::MIN_CAPACITY..=layout::MAX_CAPACITY).contains(&declared)
        && declared.is_power_of_two();
    if !valid || !segment.len_fits(layout::HEADER_LEN as u64 + declared) {
        return Err(corrupt(format!(
            "capacity {declared} does not match the segment of {} bytes (whole pages)",
            segment.len()
        )));
    }
    Ok(declared)
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

/// The header at the start of a view of a whole channel segment.
fn header_of(view: &ViewMut) -> &Header {
    // SAFETY: a view of a whole segment starts page-aligned (offset 0) and is at least HEADER_LEN
    // bytes long (checked by the callers); `Header` is `#[repr(C)]` atomics and padding, valid for
    // any bytes; it borrows the view.
    unsafe { &*view.as_mut_ptr().cast::<Header>() }
}
