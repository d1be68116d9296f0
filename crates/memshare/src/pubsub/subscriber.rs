//! The subscribing end.

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout;
use super::ring::{park_subscriber, Got, Limits, SubCore};
use super::service::{Role, Service};
use super::PublisherId;
use crate::endpoint::{new_instance, Link, Liveness, Routes};
use crate::sys::ByteLock;
use crate::waiting::{Rounds, Step, WaitStrategy};
use crate::{Error, Result, Segment};

/// A subscriber of a named service: receives every message of every
/// publisher, each publisher's in order, in place in shared memory (the
/// [`Sample`] guard lends the bytes; nothing is copied). See the
/// [module docs](super).
///
/// Receiving takes `&self`, so several samples can be held at once (up to
/// the service's `max_held`; one more is [`Error::LimitReached`] until one
/// is dropped).
///
/// ```
/// use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-sub-{}", std::process::id());
/// let mut publisher = Publisher::create(&name, ServiceConfig::new().history(1))?;
/// publisher.publish_copy(b"before")?;
/// let subscriber = Subscriber::open(&name)?; // a late joiner: gets history
/// publisher.publish_copy(b"after")?;
/// let first = subscriber.recv()?;
/// let second = subscriber.recv()?; // both held at once
/// assert_eq!((&*first, &*second), (&b"before"[..], &b"after"[..]));
/// assert_eq!((first.sequence(), second.sequence()), (0, 1));
/// assert_eq!(first.publisher(), publisher.id());
/// # Ok(()) }
/// ```
pub struct Subscriber {
    index: u32,
    core: RefCell<SubCore>,
    max_held: usize,
    strategy: WaitStrategy,
    /// The publishers' liveness, asked at most once per liveness interval.
    publishers: RefCell<Liveness>,
    /// What the wait sets this subscriber is a member of share with it.
    link: Arc<Link>,
    _routes: Routes,
    _lock: ByteLock,
    // Declared last: dropped after everything that points into it.
    service: Service,
}

/// A received message, in place in the publisher's buffer (zero-copy). The
/// buffer is held for this subscriber until the guard is dropped: no
/// publisher reuses it meanwhile, so the bytes do not change under it
/// (unless a publisher breaks the protocol: treat them as input to
/// validate). Subscribers map the buffers read-only.
pub struct Sample<'a> {
    subscriber: &'a Subscriber,
    got: Got,
}

impl Subscriber {
    /// Attaches as a subscriber of the service `name`. Fails with
    /// `NotFound` if there is none and with `LimitReached` if it has its
    /// maximum of subscribers. A new subscriber receives the service's
    /// `history` most recent messages of each publisher first. A service
    /// whose creator has not written its header yet (the name appears a
    /// moment before) is waited for, up to 2 s.
    pub fn open(name: &str) -> Result<Subscriber> {
        crate::waiting::once_formatted(&Segment::open(name)?, Subscriber::attach)
    }

    /// Like [`Subscriber::open`], but waits (in 1 ms steps) for the service
    /// to appear, for at most `timeout`: `TimedOut` after that. (The wait
    /// for a creator to write the header is bounded by `timeout` too.)
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Subscriber> {
        let deadline = Instant::now() + timeout;
        let segment = loop {
            match Segment::open(name) {
                Err(Error::NotFound { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Error::NotFound { .. }) => {
                    return Err(Error::TimedOut {
                        object: format!("service {name:?}"),
                        op: "open (waiting for the service to appear)",
                    })
                }
                other => break other?,
            }
        };
        crate::waiting::once_formatted_until(&segment, deadline, Subscriber::attach)
    }

    /// Attaches as a subscriber of the service in `segment`: takes a free
    /// subscriber slot (never used, detached, or whose subscriber died).
    pub fn attach(segment: &Segment) -> Result<Subscriber> {
        let service = Service::open(segment, Role::Subscriber)?;
        let slots = service.geometry.shape.max_subscribers;
        let mut taken = None;
        for i in 0..slots {
            if let Some(lock) = segment
                .object()
                .lock_byte(layout::subscriber_lock_byte(i))?
            {
                taken = Some((i, lock));
                break;
            }
        }
        let Some((index, lock)) = taken else {
            return Err(Error::LimitReached {
                object: service.describe(),
                what: "every subscriber slot is taken".into(),
                limit: u64::from(slots),
            });
        };
        // It parks on the service's word as waiter `index` (its parked
        // bit) and wakes publishers waiting for room.
        let h = service.header();
        let mut routes = Routes::default();
        routes.add(
            segment,
            h,
            &h.wake.futex,
            crate::sys::WordRole::Parks { waiter: index },
        )?;
        let publishers_words = &h.publisher_wake[..service.geometry.shape.max_publishers as usize];
        routes.wakes(segment, h, publishers_words.iter().map(|w| &w.futex))?;
        let limits = Limits::from(&service.geometry);
        let core = SubCore::new(limits, service.publishers());
        let sub = service.subscriber(index);
        // A slot whose subscriber died: nothing of it stays.
        for h in sub.holds {
            h.store(0, Ordering::Relaxed);
        }
        for (p, &c) in core.cursors.iter().enumerate() {
            sub.cursors[p].store(c, Ordering::Relaxed);
        }
        sub.head.missed.store(0, Ordering::Relaxed);
        sub.head.received.store(0, Ordering::Relaxed);
        sub.head.instance.store(new_instance(), Ordering::Relaxed);
        service
            .header()
            .wake
            .parked
            .fetch_and(!(1 << index), Ordering::Relaxed);
        // Release: a publisher that sees the state sees the fields above.
        sub.head
            .state
            .store(layout::STATE_ATTACHED, Ordering::Release);
        service.check_intact()?;
        let publishers = Liveness::new(service.geometry.shape.max_publishers);
        Ok(Subscriber {
            index,
            core: RefCell::new(core),
            max_held: service.geometry.shape.max_held as usize,
            strategy: WaitStrategy::default(),
            publishers: RefCell::new(publishers),
            link: Link::new(()),
            _routes: routes,
            _lock: lock,
            service,
        })
    }

    /// The service's segment.
    pub fn segment(&self) -> &Segment {
        self.service.segment()
    }

    /// The subscriber slot this subscriber took (its block in the segment:
    /// docs/pubsub-layout.md).
    pub fn slot(&self) -> u32 {
        self.index
    }

    /// The service's configuration.
    pub fn config(&self) -> super::ServiceConfig {
        super::ServiceConfig::from_shape(&self.service.geometry.shape)
    }

    /// How many messages this subscriber lost because it fell more than
    /// `depth` behind (overflow policy "drop oldest"). Under "block" a
    /// publisher waits for an attached subscriber, so it is 0, except for
    /// what a publisher overwrote while this subscriber attached: between
    /// the subscriber's look at the publisher's head (where its history
    /// starts) and its slot's state reaching the publisher, a publisher
    /// that does not see it yet may lap the history it picked (at most a
    /// ring's worth, and only if the attach was held up that long).
    pub fn missed(&self) -> u64 {
        self.core.borrow().missed
    }

    /// How many messages this subscriber received.
    pub fn received(&self) -> u64 {
        self.core.borrow().received
    }

    /// How this subscriber waits while there is nothing to receive.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Sets how this subscriber waits while there is nothing to receive.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Receives the next message, waiting while there is none. Once every
    /// publisher is gone (dropped or dead) and this subscriber has received
    /// everything they published, [`Error::Disconnected`]; a publisher that
    /// attaches later makes receiving work again.
    pub fn recv(&self) -> Result<Sample<'_>> {
        self.recv_until(None)
    }

    /// Like [`Subscriber::recv`], giving up with [`Error::TimedOut`] after
    /// `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Receives the next message if there is one now.
    pub fn try_recv(&self) -> Result<Option<Sample<'_>>> {
        Ok(self.try_got()?.map(|got| self.sample(got)))
    }

    /// What `try_recv` finds: the next message (held), if there is one now
    /// (the async receive's look). Finding nothing, it puts this
    /// subscriber's true cursors back where it publishes them
    /// (`SubCore::restore_cursors`) and asks whether every publisher is
    /// gone.
    pub(crate) fn try_got(&self) -> Result<Option<Got>> {
        if let Some(got) = self.poll()? {
            return Ok(Some(got));
        }
        let sub = self.service.subscriber(self.index);
        self.core.borrow().restore_cursors(&sub);
        self.check_disconnected(false)?;
        Ok(None)
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Sample<'_>> {
        let mut rounds = Rounds::new(self.strategy, deadline);
        loop {
            if let Some(got) = self.poll()? {
                return Ok(self.sample(got));
            }
            if rounds.check_peer() {
                self.check_disconnected(rounds.parked())?;
            }
            match rounds.next_within(|| self.publishers.borrow().due()) {
                Some(Step::Spin) => std::hint::spin_loop(),
                Some(Step::Park(slice)) => {
                    let pubs = self.service.publishers();
                    let cursors = self.core.borrow().cursors.clone();
                    let ring_len = self.service.geometry.ring_len;
                    park_subscriber(
                        &self.service.header().wake,
                        self.index,
                        &self.link.parkers,
                        slice,
                        || SubCore::nothing_new(&cursors, ring_len, pubs),
                    );
                }
                None => {
                    return Err(Error::TimedOut {
                        object: self.service.describe(),
                        op: "receive",
                    })
                }
            }
        }
    }

    /// What a wait set needs of this subscriber: its service (a clone
    /// sharing the mappings), its slot, and its link.
    pub(crate) fn wait_parts(&self) -> (&Service, u32, &Arc<Link>) {
        (&self.service, self.index, &self.link)
    }

    pub(crate) fn sample(&self, got: Got) -> Sample<'_> {
        Sample {
            subscriber: self,
            got,
        }
    }

    /// The next message of any publisher, held; `LimitReached` if this
    /// subscriber already holds `max_held` samples.
    pub(crate) fn poll(&self) -> Result<Option<Got>> {
        let mut core = self.core.borrow_mut();
        if !core.can_hold(self.max_held) {
            return Err(Error::LimitReached {
                object: self.service.describe(),
                what: "this subscriber holds as many samples as it may (drop one first)".into(),
                limit: self.max_held as u64,
            });
        }
        let pubs = self.service.publishers();
        let sub = self.service.subscriber(self.index);
        let found = core.poll(&sub, pubs);
        drop(core);
        if let Ok(Some(got)) = &found {
            if let Some(pv) = self.service.publisher(got.publisher) {
                // `poll` checked the buffer index against the pool and the
                // length against the buffers' size.
                // SAFETY: inside that buffer, mapped while `self` lives.
                unsafe { crate::endpoint::touch_last(pv.buffers.at(got.buffer), got.len) };
            }
        }
        self.service.check_intact()?;
        let found = found.map_err(|c| self.service.corrupted(c))?;
        if found.is_some() && self.service.geometry.shape.overflow == layout::OVERFLOW_BLOCK {
            // Room was made: wake a publisher waiting for it (once per
            // park).
            self.core.borrow_mut().wake_publishers(pubs);
        }
        Ok(found)
    }

    /// `Err(Disconnected)` if no publisher is alive and everything the
    /// publishers published was received. After a park (or when a wait
    /// set saw the publishers gone) the publishers' liveness is asked
    /// afresh.
    pub(crate) fn check_disconnected(&self, after_park: bool) -> Result<()> {
        // (The request is taken even after a park, which asks afresh
        // anyway: left standing, it would have a woken async wait set ask
        // again at every wake.)
        let recheck = self.link.take_recheck();
        let max_age = if after_park || recheck {
            Duration::ZERO
        } else {
            crate::waiting::LIVENESS_INTERVAL
        };
        let segment = self.service.segment();
        let mut liveness = self.publishers.borrow_mut();
        let core = self.core.borrow();
        let mut drained = true;
        for (p, pv) in self.service.publishers().iter() {
            let state = pv.block.state.load(Ordering::Acquire);
            let instance = pv.block.instance.load(Ordering::Acquire);
            let byte = layout::publisher_lock_byte(p);
            if liveness.alive(
                segment,
                p,
                state == layout::STATE_ATTACHED,
                instance,
                byte,
                max_age,
            )? {
                return Ok(());
            }
            // Everything it published is received when the entry at the
            // cursor holds nothing past it (its death, or its detach seen
            // with Acquire, came after its last publication). Not its
            // head: a head is the publisher's word alone, and one that no
            // entry stands behind (written by a hostile process, or into a
            // slot nobody holds) would keep this subscriber waiting for
            // ever.
            let ring_len = self.service.geometry.ring_len;
            drained &= !SubCore::news_at(&pv, core.cursors[p as usize], ring_len);
        }
        if drained {
            return Err(Error::Disconnected {
                object: self.service.describe(),
                peer: "publisher",
            });
        }
        Ok(())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.link.set_dropped();
        let sub = self.service.subscriber(self.index);
        sub.head
            .state
            .store(layout::STATE_DETACHED, Ordering::Release);
        self.service
            .header()
            .wake
            .parked
            .fetch_and(!(1 << self.index), Ordering::Relaxed);
        // A publisher waiting for this subscriber's room may go on.
        super::ring::SubCore::wake_all_publishers(self.service.publishers());
    }
}

impl Sample<'_> {
    /// The service, as it appears in error messages.
    pub(crate) fn describe(&self) -> String {
        self.subscriber.service.describe()
    }

    /// The publisher that published this message.
    pub fn publisher(&self) -> PublisherId {
        PublisherId(self.got.instance)
    }

    /// The message's sequence number: its publisher's count of messages
    /// before it (0 for its first).
    pub fn sequence(&self) -> u64 {
        self.got.seq
    }
}

impl Deref for Sample<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let pv = self
            .subscriber
            .service
            .publisher(self.got.publisher)
            .expect("a subscriber maps every publisher");
        // The buffer is held for this subscriber: no honest publisher writes it until the hold is
        // released, in `drop`.
        // SAFETY: the buffer index was checked against the pool and the length against the
        // buffers' size when the message was polled; the read-only mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(pv.buffers.at(self.got.buffer), self.got.len) }
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        let sub = self.subscriber.service.subscriber(self.subscriber.index);
        self.subscriber
            .core
            .borrow_mut()
            .release(&sub, self.got.hold);
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("service", &self.service.describe())
            .field("slot", &self.index)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample")
            .field("publisher", &self.got.publisher)
            .field("sequence", &self.got.seq)
            .field("len", &self.got.len)
            .finish()
    }
}
