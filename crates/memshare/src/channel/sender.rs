//! The sending end.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::endpoint::Endpoint;
use super::layout::{frame_len, max_message, Header, Side, FRAME_HEADER};
use super::ring::Producer;
use crate::waiting::{Rounds, WaitStrategy};
use crate::{Error, Result, Segment};

/// The sending end of a channel. See the [module docs](super).
///
/// ```
/// use memshare::channel::{Receiver, Sender};
/// # fn main() -> memshare::Result<()> {
/// let mut tx = Sender::create(1 << 16)?;
/// let mut rx = Receiver::attach(tx.segment())?; // in another process, usually
/// tx.send(b"hello")?;
/// assert_eq!(&*rx.recv()?, b"hello");
/// # Ok(()) }
/// ```
pub struct Sender {
    ep: Endpoint,
    /// Where the next frame goes (the truth, only ever published) and the
    /// receiver's position as last read.
    core: Producer,
}

/// Space reserved in the ring for one message; write into it through
/// `Deref<Target = [u8]>`, then [`SendGuard::commit`]. Dropped without
/// commit, nothing is sent.
pub struct SendGuard<'a> {
    tx: &'a mut Sender,
    /// Ring offset of the frame header, and the frame's position.
    slot: (u64, u64),
    len: usize,
}

impl Sender {
    /// Creates a channel in a new anonymous segment whose ring holds at
    /// least `capacity` bytes (rounded up to a power of two, 64 at least),
    /// and attaches as its sender. Give [`Sender::segment`] to the other
    /// process (inheritance or handle passing).
    pub fn create(capacity: usize) -> Result<Sender> {
        let segment = Endpoint::new_segment(None, capacity)?;
        Sender::attach(&segment)
    }

    /// Creates a channel in a new named segment, and attaches as its sender.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-chan-{}", std::process::id());
    /// let tx = memshare::channel::Sender::create_named(&name, 4096)?;
    /// let rx = memshare::channel::Receiver::open(&name)?;
    /// # drop((tx, rx)); Ok(()) }
    /// ```
    pub fn create_named(name: &str, capacity: usize) -> Result<Sender> {
        let segment = Endpoint::new_segment(Some(name), capacity)?;
        Sender::attach(&segment)
    }

    /// Attaches as the sender of the channel in `segment`. Fails with
    /// [`Error::AlreadyAttached`] if a sender is attached, with
    /// [`Error::NotAChannel`] if the segment is not a channel (too small,
    /// no channel magic, a ring size the layout does not allow), and with
    /// [`Error::Corrupted`] if its header breaks the layout.
    pub fn attach(segment: &Segment) -> Result<Sender> {
        let ep = Endpoint::attach(segment, Side::Sender)?;
        let (read, write) = ep.positions_at_attach()?;
        let core = Producer {
            write,
            read,
            peer_moved: false,
        };
        Ok(Sender { ep, core })
    }

    /// Opens the named segment `name` and attaches as its sender. A
    /// channel whose creator has not written its header yet (the name
    /// appears a moment before) is waited for, up to 2 s.
    pub fn open(name: &str) -> Result<Sender> {
        crate::waiting::once_formatted(&Segment::open(name)?, Sender::attach)
    }

    /// Opens the named channel `name` if it exists, else creates it with a
    /// ring of at least `capacity` bytes, and attaches as its sender: the
    /// sender and the receiver may start in any order, without a retry
    /// loop. (A channel that exists keeps its capacity.)
    ///
    /// ```
    /// use memshare::channel::{Receiver, Sender};
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-chan-ooc-{}", std::process::id());
    /// let mut rx = Receiver::open_or_create(&name, 4096)?; // whichever comes first
    /// let mut tx = Sender::open_or_create(&name, 4096)?;
    /// tx.send(b"hi")?;
    /// assert_eq!(&*rx.recv()?, b"hi");
    /// # Ok(()) }
    /// ```
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Sender> {
        Endpoint::open_or_create(name, capacity, Sender::attach)
    }

    /// The segment the channel lives in, to share with the receiver.
    pub fn segment(&self) -> &Segment {
        self.ep.segment()
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ep.capacity() as usize
    }

    /// The largest message this channel can carry.
    pub fn max_message_len(&self) -> usize {
        max_message(self.ep.capacity()) as usize
    }

    /// How this sender waits while the ring is full.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.ep.strategy
    }

    /// Sets how this sender waits while the ring is full.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.ep.strategy = strategy;
    }

    /// Sends a copy of `msg`, waiting while the ring is full.
    /// [`Error::Disconnected`] if the receiver is gone, [`Error::TooLarge`]
    /// at once if the message can never fit.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_until(msg, None)
    }

    /// Sends a copy of `msg` if there is room now: `Ok(false)` if the ring
    /// is full.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let mut tx = memshare::channel::Sender::create(64)?;
    /// let _rx = memshare::channel::Receiver::attach(tx.segment())?;
    /// assert!(tx.try_send(&[1; 40])?);
    /// assert!(!tx.try_send(&[2; 40])?); // full until the receiver reads
    /// # Ok(()) }
    /// ```
    pub fn try_send(&mut self, msg: &[u8]) -> Result<bool> {
        match self.try_reserve(msg.len())? {
            Some(mut guard) => {
                guard.copy_from_slice(msg);
                guard.commit();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Like [`Sender::send`], giving up with [`Error::TimedOut`] after `timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(msg, Some(Instant::now() + timeout))
    }

    fn send_until(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        let mut guard = self.reserve_until(msg.len(), deadline)?;
        guard.copy_from_slice(msg);
        guard.commit();
        Ok(())
    }

    /// Reserves `len` bytes in the ring, waiting while it is full: write the
    /// message in place (zero-copy), then [`SendGuard::commit`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let mut tx = memshare::channel::Sender::create(4096)?;
    /// let mut rx = memshare::channel::Receiver::attach(tx.segment())?;
    /// let mut slot = tx.reserve(3)?;
    /// slot.copy_from_slice(b"abc");
    /// slot.commit();
    /// assert_eq!(&*rx.recv()?, b"abc");
    /// # Ok(()) }
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<SendGuard<'_>> {
        self.reserve_until(len, None)
    }

    /// Like [`Sender::reserve`], giving up with [`Error::TimedOut`] after `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<SendGuard<'_>> {
        self.reserve_until(len, Some(Instant::now() + timeout))
    }

    /// Reserves `len` bytes if there is room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Option<SendGuard<'_>>> {
        Ok(self.try_slot(len)?.map(|slot| self.guard(slot, len)))
    }

    /// What `try_reserve` finds: room for `len` bytes now, if there is
    /// (the async reserve's look).
    pub(crate) fn try_slot(&mut self, len: usize) -> Result<Option<(u64, u64)>> {
        match self.poll_space(len)? {
            Some(slot) => Ok(Some(slot)),
            None => {
                self.ep.restore_position(self.core.write);
                if self.ep.peer_gone(self.core.peer_moved)? {
                    return Err(self.ep.disconnected());
                }
                Ok(None)
            }
        }
    }

    fn reserve_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<SendGuard<'_>> {
        let mut rounds = Rounds::new(self.ep.strategy, deadline);
        let slot = loop {
            if let Some(slot) = self.poll_space(len)? {
                break slot;
            }
            // Full. Is anyone going to empty it? (A system call at most
            // every LIVENESS_INTERVAL, and only while waiting.)
            if rounds.check_peer() && self.ep.peer_gone(self.core.peer_moved)? {
                return Err(self.ep.disconnected());
            }
            let (write, capacity) = (self.core.write, self.ep.capacity());
            let frame = frame_len(len as u64).unwrap_or(u64::MAX);
            self.ep.idle(&mut rounds, "send", |h: &Header| {
                Producer::still_full(h, capacity, write, frame)
            })?;
        };
        Ok(self.guard(slot, len))
    }

    /// What a wait set needs of this sender: its endpoint, and whether it
    /// saw the receiver move its position.
    pub(crate) fn wait_parts(&self) -> (&Endpoint, bool) {
        (&self.ep, self.core.peer_moved)
    }

    pub(crate) fn guard(&mut self, slot: (u64, u64), len: usize) -> SendGuard<'_> {
        SendGuard {
            tx: self,
            slot,
            len,
        }
    }

    /// Finds room for a frame of `len` payload bytes (see
    /// [`Producer::poll_space`]): `(ring offset, position)`, or `None` if
    /// the ring is too full. An error, whatever the ring seemed to say, if
    /// the memory under it is gone (a truncated segment reads as zeros).
    fn poll_space(&mut self, len: usize) -> Result<Option<(u64, u64)>> {
        let capacity = self.ep.capacity();
        let frame = frame_len(len as u64)
            .filter(|&f| f <= capacity && len as u64 <= max_message(capacity))
            .ok_or_else(|| Error::TooLarge {
                object: self.ep.describe(),
                len,
                max: max_message(capacity) as usize,
            })?;
        if self.ep.peer_gone_cheap() {
            return Err(self.ep.disconnected());
        }
        let found = self.core.poll_space(self.ep.header(), &self.ep.ring, frame);
        self.ep.check_intact()?;
        found.map_err(|c| self.ep.corrupted(c))
    }
}

impl SendGuard<'_> {
    /// Publishes the message: the receiver may see it from now on.
    pub fn commit(self) {
        let tx = &mut *self.tx;
        tx.core
            .commit(tx.ep.header(), &tx.ep.ring, self.slot, self.len as u32);
    }

    fn payload(&self) -> *mut u8 {
        self.tx.ep.ring.at(self.slot.0 + FRAME_HEADER)
    }
}

impl Deref for SendGuard<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the payload range lies inside the ring (checked by
        // `poll_space`) and is owned by the sender until committed: the
        // receiver does not read past the published position.
        unsafe { std::slice::from_raw_parts(self.payload(), self.len) }
    }
}

impl DerefMut for SendGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.payload(), self.len) }
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("segment", self.segment())
            .field("capacity", &self.capacity())
            .field("write", &self.core.write)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SendGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGuard").field("len", &self.len).finish()
    }
}
