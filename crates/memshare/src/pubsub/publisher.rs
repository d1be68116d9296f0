//! The publishing end.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::config::ServiceConfig;
use super::layout::{self, Header};
use super::ring::{park_publisher, Limits, PubCore, SubView};
use super::service::{Role, Service};
use crate::endpoint::{new_instance, Liveness, Routes};
use crate::sys::ByteLock;
use crate::waiting::{Rounds, Step, WaitStrategy, LIVENESS_INTERVAL};
use crate::{Error, Result, Segment};

/// A publisher of a named service: lends buffers in shared memory
/// ([`Publisher::loan`]) and publishes them to every subscriber at once,
/// without copying. See the [module docs](super).
///
/// ```
/// use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-pub-{}", std::process::id());
/// let mut publisher = Publisher::create(&name, ServiceConfig::new())?;
/// let subscriber = Subscriber::open(&name)?; // in another process, usually
/// let mut sample = publisher.loan(5)?;
/// sample.copy_from_slice(b"frame");
/// sample.publish();
/// assert_eq!(&*subscriber.recv()?, b"frame");
/// # Ok(()) }
/// ```
pub struct Publisher {
    core: PubCore,
    strategy: WaitStrategy,
    /// The subscribers' liveness, asked at most once per liveness interval.
    subscribers: Liveness,
    _routes: Routes,
    _lock: ByteLock,
    // Declared last: dropped after everything that points into it.
    service: Service,
}

/// A buffer lent by [`Publisher::loan`]: write the message into it
/// (`DerefMut<Target = [u8]>`), then [`Loan::publish`]. Dropped without
/// publishing, it goes back to the pool and nothing is sent.
pub struct Loan<'a> {
    publisher: &'a mut Publisher,
    buffer: u32,
    len: usize,
    published: bool,
}

impl Publisher {
    /// Creates the service `name` with `config` and attaches as its first
    /// publisher. The service's segment is named like any segment
    /// ([`Segment::create_named`]): it lives while any publisher or
    /// subscriber holds it. Fails with `AlreadyExists` if the name is taken,
    /// and with `OutOfRange` if `config` breaks a limit.
    pub fn create(name: &str, config: ServiceConfig) -> Result<Publisher> {
        let geometry = config.geometry(name)?;
        let segment = match Segment::options()
            .reserve(true)
            .create_named(name, geometry.total_len)
        {
            // Systems that cannot reserve make it sparse.
            Err(Error::Unsupported { .. }) => Segment::create_named(name, geometry.total_len)?,
            other => other?,
        };
        let view = segment.map(..layout::HEADER_LEN)?;
        // SAFETY: the first page of a new segment, page-aligned; `Header`
        // is atomics and padding; only this process can see the segment's
        // header before the magic is stored.
        let h: &Header = unsafe { &*view.as_mut_ptr().cast::<Header>() };
        geometry.store(h);
        // Attach before the magic is stored: a subscriber that sees the
        // service sees its first publisher, never a service without one
        // (which it would report as Disconnected).
        let publisher = Publisher::attach_with(&segment, true)?;
        // Publish: whoever sees the magic (Acquire) sees the header and the
        // publisher's block written above.
        h.fixed
            .magic
            .store(u64::from_le_bytes(layout::MAGIC), Ordering::Release);
        view.check_intact()?;
        Ok(publisher)
    }

    /// Attaches as a publisher of the existing service `name`. Fails with
    /// `NotFound` if there is none and with `LimitReached` if it has its
    /// maximum of publishers.
    /// A service whose creator has not written its header yet (the name
    /// appears a moment before) is waited for, up to 2 s.
    pub fn open(name: &str) -> Result<Publisher> {
        crate::waiting::once_formatted(&Segment::open(name)?, Publisher::attach)
    }

    /// Attaches to the service `name` if it exists (whatever its
    /// configuration: see [`Publisher::config`]), or creates it with
    /// `config`. Two processes that start in any order end up on one
    /// service.
    pub fn open_or_create(name: &str, config: ServiceConfig) -> Result<Publisher> {
        loop {
            match Publisher::open(name) {
                Err(Error::NotFound { .. }) => {}
                other => return other,
            }
            match Publisher::create(name, config) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Attaches as a publisher of the service in `segment`: takes a free
    /// publisher slot (one never used, detached, or whose publisher died;
    /// a dead publisher's messages are kept and its sequence continued).
    pub fn attach(segment: &Segment) -> Result<Publisher> {
        Publisher::attach_with(segment, false)
    }

    /// [`Publisher::attach`]; `creating`: by the creator, before the magic
    /// is stored.
    fn attach_with(segment: &Segment, creating: bool) -> Result<Publisher> {
        let open = if creating {
            Service::open_unpublished
        } else {
            Service::open
        };
        // Check the header with a subscriber's view first: which slot is
        // ours is known only once its lock is taken.
        let probe = open(segment, Role::Observer)?;
        let slots = probe.geometry.shape.max_publishers;
        drop(probe);
        let mut taken = None;
        for p in 0..slots {
            if let Some(lock) = segment.object().lock_byte(layout::publisher_lock_byte(p))? {
                taken = Some((p, lock));
                break;
            }
        }
        let Some((index, lock)) = taken else {
            return Err(Error::LimitReached {
                object: format!("service {:?}", segment.name().unwrap_or("(anonymous)")),
                what: "every publisher slot is taken".into(),
                limit: u64::from(slots),
            });
        };
        let service = open(segment, Role::Publisher(index))?;
        // It parks on its own word when waiting for room, and wakes the
        // subscribers (waiters of the service's word, one per slot).
        let h = service.header();
        let mut routes = Routes::default();
        routes.parks(segment, h, &h.publisher_wake[index as usize].futex)?;
        routes.add(
            segment,
            h,
            &h.wake.futex,
            crate::sys::WordRole::Wakes {
                waiters: service.geometry.shape.max_subscribers,
            },
        )?;
        let view = service.publisher(index).expect("our own region is mapped");
        let instance = new_instance();
        let core = PubCore::new(index, instance, Limits::from(&service.geometry), &view);
        view.block.instance.store(instance, Ordering::Relaxed);
        view.block.head.store(core.head, Ordering::Release);
        // Before the state: a subscriber that sees this publisher attached
        // sees its pid (a hint for watching its death).
        view.block.pid.store(std::process::id(), Ordering::Relaxed);
        view.block
            .state
            .store(layout::STATE_ATTACHED, Ordering::Release);
        let subscribers = Liveness::new(service.geometry.shape.max_subscribers);
        service.check_intact()?;
        Ok(Publisher {
            core,
            strategy: WaitStrategy::default(),
            subscribers,
            _routes: routes,
            _lock: lock,
            service,
        })
    }

    /// The service's segment.
    pub fn segment(&self) -> &Segment {
        self.service.segment()
    }

    /// The publisher slot this publisher took (its region in the segment:
    /// docs/pubsub-layout.md).
    pub fn slot(&self) -> u32 {
        self.core.index
    }

    /// The service's configuration (as its creator made it).
    pub fn config(&self) -> ServiceConfig {
        ServiceConfig::from_shape(&self.service.geometry.shape)
    }

    /// This publisher's identity, as subscribers see it
    /// ([`Sample::publisher`](super::Sample::publisher)).
    pub fn id(&self) -> super::PublisherId {
        super::PublisherId(self.core.instance)
    }

    /// The sequence number the next message will have.
    pub fn next_sequence(&self) -> u64 {
        self.core.head
    }

    /// How this publisher waits for room ([`super::Overflow::Block`]).
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Sets how this publisher waits for room.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Lends a buffer of `len` bytes in shared memory (zero-filled only if
    /// never used: write all of it). Under [`super::Overflow::Block`] this
    /// is where the publisher waits while a live subscriber has `depth`
    /// messages waiting. [`Error::TooLarge`] if `len` is more than the
    /// service's `max_message_len`.
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>> {
        self.loan_until(len, None)
    }

    /// Like [`Publisher::loan`], giving up with [`Error::TimedOut`] after
    /// `timeout`.
    pub fn loan_timeout(&mut self, len: usize, timeout: Duration) -> Result<Loan<'_>> {
        self.loan_until(len, Some(Instant::now() + timeout))
    }

    /// Like [`Publisher::loan`], but `Ok(None)` at once if a subscriber's
    /// queue is full (overflow policy "block").
    pub fn try_loan(&mut self, len: usize) -> Result<Option<Loan<'_>>> {
        self.check_len(len)?;
        if !self.room(false)? {
            return Ok(None);
        }
        self.lend(len).map(Some)
    }

    /// Publishes a copy of `msg` (one copy into shared memory).
    pub fn publish_copy(&mut self, msg: &[u8]) -> Result<()> {
        let mut loan = self.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.publish();
        Ok(())
    }

    /// Like [`Publisher::publish_copy`], giving up with [`Error::TimedOut`]
    /// after `timeout`.
    pub fn publish_copy_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        let mut loan = self.loan_timeout(msg.len(), timeout)?;
        loan.copy_from_slice(msg);
        loan.publish();
        Ok(())
    }

    /// Publishes a copy of `msg` if there is room now: `Ok(false)` if a
    /// subscriber's queue is full (overflow policy "block").
    pub fn try_publish_copy(&mut self, msg: &[u8]) -> Result<bool> {
        match self.try_loan(msg.len())? {
            Some(mut loan) => {
                loan.copy_from_slice(msg);
                loan.publish();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn check_len(&self, len: usize) -> Result<()> {
        let max = self.service.geometry.shape.max_message_len;
        if len as u64 > max {
            return Err(Error::TooLarge {
                object: self.service.describe(),
                len,
                max: max as usize,
            });
        }
        Ok(())
    }

    fn loan_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<Loan<'_>> {
        self.check_len(len)?;
        let mut rounds = Rounds::new(self.strategy, deadline);
        while !self.room(rounds.parked())? {
            let subscribers = &self.subscribers;
            match rounds.next_within(|| subscribers.due()) {
                Some(Step::Spin) => std::hint::spin_loop(),
                Some(Step::Park(slice)) => self.park(slice)?,
                None => {
                    return Err(Error::TimedOut {
                        object: self.service.describe(),
                        op: "lend a buffer (a subscriber's queue is full)",
                    })
                }
            }
        }
        self.lend(len)
    }

    /// Whether the next message may be published now (always, under
    /// "drop oldest"). After a park, the subscribers' liveness is asked
    /// afresh: one that died during it must not hold us back another slice.
    fn room(&mut self, after_park: bool) -> Result<bool> {
        if self.core.limits.drop_oldest || self.core.room_as_last_seen() {
            return Ok(true);
        }
        let max_age = if after_park {
            Duration::ZERO
        } else {
            LIVENESS_INTERVAL
        };
        let live = self.live_subscribers(max_age)?;
        let room = self
            .core
            .room(live.iter().map(|&i| self.service.subscriber(i)));
        self.service.check_intact()?;
        Ok(room)
    }

    fn park(&mut self, slice: Duration) -> Result<()> {
        let live = self.live_subscribers(LIVENESS_INTERVAL)?;
        let view = self.service.publisher(self.core.index).expect("mapped");
        let (head, depth, index) = (self.core.head, self.core.limits.depth, self.core.index);
        let service = &self.service;
        park_publisher(view.wake, slice, || {
            PubCore::still_full(
                head,
                depth,
                index,
                live.iter().map(|&i| service.subscriber(i)),
            )
        });
        Ok(())
    }

    /// The subscribers that are attached and alive (their lock is held),
    /// asked at most once per liveness interval each. A dead subscriber
    /// holds nobody back and pins no buffer, and its parked bit is cleared.
    fn live_subscribers(&mut self, max_age: Duration) -> Result<Vec<u32>> {
        let mut live = Vec::new();
        let segment = self.service.segment().clone();
        for (i, sub) in self.service.subscribers() {
            let state = sub.head.state.load(Ordering::Acquire);
            let instance = sub.head.instance.load(Ordering::Acquire);
            let byte = layout::subscriber_lock_byte(i);
            if self.subscribers.alive(
                &segment,
                i,
                state == layout::STATE_ATTACHED,
                instance,
                byte,
                max_age,
            )? {
                live.push(i);
            } else if state == layout::STATE_ATTACHED {
                // Died parked: stop waking it on every message.
                self.service
                    .header()
                    .wake
                    .parked
                    .fetch_and(!(1 << i), Ordering::Relaxed);
            }
        }
        Ok(live)
    }

    fn lend(&mut self, len: usize) -> Result<Loan<'_>> {
        // Only when no buffer is free: the live subscribers' holds are
        // scanned (once per `RECLAIM_BATCH` messages or so).
        let buffer = match self.core.pop_free() {
            Some(b) => Some(b),
            None => {
                let live = self.live_subscribers(LIVENESS_INTERVAL)?;
                let service = &self.service;
                let subs: Vec<SubView<'_>> = live.iter().map(|&i| service.subscriber(i)).collect();
                self.core.take_buffer(subs.into_iter())
            }
        };
        self.service.check_intact()?;
        let Some(buffer) = buffer else {
            return Err(self.service.corrupted(super::ring::Corruption(
                "every buffer of the pool is held: subscribers hold more than they may".into(),
            )));
        };
        Ok(Loan {
            publisher: self,
            buffer,
            len,
            published: false,
        })
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(view) = self.service.publisher(self.core.index) {
            view.block
                .state
                .store(layout::STATE_DETACHED, Ordering::Release);
        }
        // Wake parked subscribers so that they see the detach at once.
        self.service.header().wake.futex.bump_and_wake_all();
    }
}

impl Loan<'_> {
    /// Publishes the message to every subscriber, zero-copy: they read it in
    /// place. Never waits (under "block" the wait happened in `loan`).
    pub fn publish(mut self) {
        self.published = true;
        let p = &mut *self.publisher;
        let view = p.service.publisher(p.core.index).expect("mapped");
        p.core.publish(
            &view,
            &p.service.header().wake,
            self.buffer,
            self.len as u32,
        );
    }

    /// The sequence number this message will have.
    pub fn sequence(&self) -> u64 {
        self.publisher.core.head
    }

    fn data(&self) -> *mut u8 {
        let p = &self.publisher;
        p.service
            .publisher(p.core.index)
            .expect("mapped")
            .buffers
            .at(self.buffer)
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.publisher.core.return_buffer(self.buffer);
        }
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the buffer lies in the publisher's pool (taken from it by index below
        // `pool_len`), `len <= max_message_len <= stride`, and it is this publisher's alone until
        // published: no entry names it and no subscriber holds it (checked when it was freed).
        unsafe { std::slice::from_raw_parts(self.data(), self.len) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.data(), self.len) }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("service", &self.service.describe())
            .field("slot", &self.core.index)
            .field("next_sequence", &self.core.head)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len)
            .field("buffer", &self.buffer)
            .finish()
    }
}
