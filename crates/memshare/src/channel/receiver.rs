//! The receiving end.

use std::ops::Deref;
use std::time::{Duration, Instant};

use super::endpoint::Endpoint;
use super::layout::{Header, Side};
use super::ring::{Consumer, Frame};
use crate::waiting::{Rounds, WaitStrategy};
use crate::{Result, Segment};

/// The receiving end of a channel. See the [module docs](super).
///
/// ```
/// use memshare::channel::{Receiver, Sender};
/// # fn main() -> memshare::Result<()> {
/// let mut rx = Receiver::create(1 << 16)?;
/// let mut tx = Sender::attach(rx.segment())?; // in another process, usually
/// tx.send(b"one")?;
/// tx.send(b"two")?;
/// let mut buf = Vec::new();
/// rx.recv_into(&mut buf)?;
/// assert_eq!(buf, b"one");
/// assert_eq!(&*rx.recv()?, b"two");
/// assert!(rx.try_recv()?.is_none());
/// # Ok(()) }
/// ```
pub struct Receiver {
    ep: Endpoint,
    /// Where the next frame starts (the truth, only ever published) and the
    /// sender's position as last read.
    core: Consumer,
}

/// A received message, in place in the ring (zero-copy). Its space is
/// given back to the sender when the guard is dropped.
///
/// The protocol gives these bytes to the receiver until then; a sender
/// that breaks the protocol could still change them under the guard, so
/// treat the contents as input to validate, like any message. Likewise, if
/// another process truncates the segment while you hold the guard, the
/// bytes past the new end read as zeros from that moment on (memshare
/// catches the `SIGBUS` that would have killed the process), and the
/// receiver's next call says [`Error::Truncated`](crate::Error::Truncated).
/// (Bytes of the last page that lie past a new end that is not a multiple of
/// the page size read as zeros without a fault: the kernel gives no signal
/// there, so that case looks exactly like a peer that wrote zeros.)
pub struct RecvGuard<'a> {
    rx: &'a mut Receiver,
    frame: Frame,
}

impl Receiver {
    /// Creates a channel in a new anonymous segment whose ring holds at
    /// least `capacity` bytes (rounded up to a power of two, 64 at least),
    /// and attaches as its receiver.
    pub fn create(capacity: usize) -> Result<Receiver> {
        let segment = Endpoint::new_segment(None, capacity)?;
        Receiver::attach(&segment)
    }

    /// Creates a channel in a new named segment, and attaches as its receiver.
    pub fn create_named(name: &str, capacity: usize) -> Result<Receiver> {
        let segment = Endpoint::new_segment(Some(name), capacity)?;
        Receiver::attach(&segment)
    }

    /// Attaches as the receiver of the channel in `segment`. Fails with
    /// [`Error::AlreadyAttached`](crate::Error::AlreadyAttached) if a
    /// receiver is attached, and otherwise as
    /// [`Sender::attach`](crate::channel::Sender::attach) does
    /// ([`Error::NotAChannel`](crate::Error::NotAChannel) if the segment is
    /// not a channel).
    pub fn attach(segment: &Segment) -> Result<Receiver> {
        let ep = Endpoint::attach(segment, Side::Receiver)?;
        let (read, write) = ep.positions_at_attach()?;
        let core = Consumer {
            read,
            write,
            peer_moved: false,
        };
        Ok(Receiver { ep, core })
    }

    /// Opens the named segment `name` and attaches as its receiver. A
    /// channel whose creator has not written its header yet (the name
    /// appears a moment before) is waited for, up to 2 s.
    pub fn open(name: &str) -> Result<Receiver> {
        crate::waiting::once_formatted(&Segment::open(name)?, Receiver::attach)
    }

    /// Opens the named channel `name` if it exists, else creates it with a
    /// ring of at least `capacity` bytes, and attaches as its receiver (see
    /// [`Sender::open_or_create`](super::Sender::open_or_create)).
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Receiver> {
        Endpoint::open_or_create(name, capacity, Receiver::attach)
    }

    /// The segment the channel lives in, to share with the sender.
    pub fn segment(&self) -> &Segment {
        self.ep.segment()
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.ep.capacity() as usize
    }

    /// How this receiver waits while the ring is empty.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.ep.strategy
    }

    /// Sets how this receiver waits while the ring is empty.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.ep.strategy = strategy;
    }

    /// Receives the next message, waiting while there is none. After the
    /// sender is gone (dropped, or its process died), the messages it
    /// committed are still received, then [`Error::Disconnected`](crate::Error::Disconnected).
    pub fn recv(&mut self) -> Result<RecvGuard<'_>> {
        self.recv_until(None)
    }

    /// Like [`Receiver::recv`], giving up with
    /// [`Error::TimedOut`](crate::Error::TimedOut) after `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> memshare::Result<()> {
    /// let mut rx = memshare::channel::Receiver::create(4096)?;
    /// let _tx = memshare::channel::Sender::attach(rx.segment())?;
    /// let err = rx.recv_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(err, memshare::Error::TimedOut { .. }));
    /// # Ok(()) }
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<RecvGuard<'_>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// Receives the next message if there is one now.
    pub fn try_recv(&mut self) -> Result<Option<RecvGuard<'_>>> {
        Ok(self.try_frame()?.map(|frame| self.guard(frame)))
    }

    /// What `try_recv` finds: the next frame, if there is one now (the
    /// async receive's look).
    #[inline]
    pub(crate) fn try_frame(&mut self) -> Result<Option<Frame>> {
        match self.poll()? {
            Some(frame) => Ok(Some(frame)),
            None => {
                self.ep.restore_position(self.core.read);
                self.check_disconnected()
            }
        }
    }

    /// Receives the next message into `buf` (replacing its contents),
    /// waiting while there is none; returns its length.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let msg = self.recv()?;
        buf.clear();
        buf.extend_from_slice(&msg);
        Ok(buf.len())
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<RecvGuard<'_>> {
        let mut rounds = Rounds::new(self.ep.strategy, deadline);
        let frame = loop {
            if let Some(frame) = self.poll()? {
                break frame;
            }
            if rounds.check_peer() {
                if let Some(frame) = self.check_disconnected()? {
                    break frame;
                }
            }
            let read = self.core.read;
            self.ep.idle(&mut rounds, "receive", |h: &Header| {
                Consumer::still_empty(h, read)
            })?;
        };
        Ok(self.guard(frame))
    }

    /// The ring is empty: if the sender is gone, the last messages it
    /// committed may still be on their way; look once more, then report
    /// [`Error::Disconnected`](crate::Error::Disconnected).
    fn check_disconnected(&mut self) -> Result<Option<Frame>> {
        if !self.ep.peer_gone(self.core.peer_moved)? {
            return Ok(None);
        }
        // The sender's death (or detach) was observed after its last
        // commit, so this load sees every position it published.
        match self.poll()? {
            Some(frame) => Ok(Some(frame)),
            None => Err(self.ep.disconnected()),
        }
    }

    /// What a wait set needs of this receiver: its endpoint, and whether
    /// it saw the sender move its position.
    pub(crate) fn wait_parts(&self) -> (&Endpoint, bool) {
        (&self.ep, self.core.peer_moved)
    }

    pub(crate) fn guard(&mut self, frame: Frame) -> RecvGuard<'_> {
        RecvGuard { rx: self, frame }
    }

    /// The next complete frame, validated (see [`Consumer::poll`]), or
    /// `None` if the ring is empty; an error, whatever the ring seemed to
    /// say, if the memory under it is gone (a truncated segment reads as
    /// zeros).
    fn poll(&mut self) -> Result<Option<Frame>> {
        let found = self.core.poll(self.ep.header(), &self.ep.ring);
        if let Ok(Some(frame)) = &found {
            // `poll` validated the frame: its payload lies inside the ring.
            // SAFETY: inside the ring, mapped while `self` lives.
            unsafe { crate::endpoint::touch_last(self.ep.ring.at(frame.offset), frame.len) };
        }
        self.ep.check_intact()?;
        found.map_err(|c| self.ep.corrupted(c))
    }
}

impl RecvGuard<'_> {
    /// The channel, as it appears in error messages.
    pub(crate) fn describe(&self) -> String {
        self.rx.ep.describe()
    }
}

impl Deref for RecvGuard<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the payload lies inside the ring (validated by `poll`),
        // and the protocol gives it to the receiver until the guard drops:
        // the sender does not write below the published read position.
        unsafe { std::slice::from_raw_parts(self.rx.ep.ring.at(self.frame.offset), self.frame.len) }
    }
}

impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        let rx = &mut *self.rx;
        rx.core.release(rx.ep.header(), self.frame.next);
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("segment", self.segment())
            .field("capacity", &self.capacity())
            .field("read", &self.core.read)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RecvGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvGuard")
            .field("len", &self.frame.len)
            .finish()
    }
}
