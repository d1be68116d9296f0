//! Typed messages: plain-data values (`bytemuck::Pod`) sent by copy.

use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use super::{Receiver, RecvGuard, Sender};
use crate::{Error, Result, Segment};

/// Sends values of type `T`, each as one message of exactly
/// `size_of::<T>()` bytes, written in place in the ring.
///
/// `T: Pod` means every bit pattern is a valid `T` and it has no padding
/// and no pointers, which is what makes a value safe to give to and take
/// from another process.
///
/// ```
/// use memshare::channel::{TypedReceiver, TypedSender};
///
/// #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Tick { seq: u64, price: f64 }
///
/// # fn main() -> memshare::Result<()> {
/// let mut tx = TypedSender::<Tick>::create(4096)?;
/// let mut rx = TypedReceiver::<Tick>::attach(tx.segment())?;
/// tx.send(&Tick { seq: 1, price: 99.5 })?;
/// assert_eq!(rx.recv()?, Tick { seq: 1, price: 99.5 });
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TypedSender<T: Pod> {
    inner: Sender,
    _type: PhantomData<fn(T)>,
}

/// Receives values of type `T` sent by a [`TypedSender`]. A message whose
/// size is not `size_of::<T>()` is [`Error::Corrupted`]; values are copied
/// out, so `T`'s alignment never depends on where the frame lies.
#[derive(Debug)]
pub struct TypedReceiver<T: Pod> {
    inner: Receiver,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> TypedSender<T> {
    /// Creates a channel in a new anonymous segment (see [`Sender::create`]).
    pub fn create(capacity: usize) -> Result<Self> {
        Ok(Self::from_sender(Sender::create(capacity)?))
    }

    /// Creates a channel in a new named segment (see [`Sender::create_named`]).
    ///
    /// ```
    /// use memshare::channel::{TypedReceiver, TypedSender};
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-typed-{}", std::process::id());
    /// let mut tx = TypedSender::<u64>::create_named(&name, 4096)?;
    /// let mut rx = TypedReceiver::<u64>::open(&name)?; // another process, usually
    /// tx.send(&7)?;
    /// assert_eq!(rx.recv()?, 7);
    /// # Ok(()) }
    /// ```
    pub fn create_named(name: &str, capacity: usize) -> Result<Self> {
        Ok(Self::from_sender(Sender::create_named(name, capacity)?))
    }

    /// Attaches to the channel in `segment` (see [`Sender::attach`]).
    pub fn attach(segment: &Segment) -> Result<Self> {
        Ok(Self::from_sender(Sender::attach(segment)?))
    }

    /// Opens the named channel `name` as its sender (see [`Sender::open`]).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self::from_sender(Sender::open(name)?))
    }

    /// Wraps a byte sender.
    pub fn from_sender(inner: Sender) -> Self {
        TypedSender {
            inner,
            _type: PhantomData,
        }
    }

    /// The segment the channel lives in.
    pub fn segment(&self) -> &Segment {
        self.inner.segment()
    }

    /// The byte sender underneath, for a wait set.
    pub(crate) fn inner_ref(&self) -> &Sender {
        &self.inner
    }

    /// The byte sender underneath (wait strategy, capacity...).
    pub fn inner_mut(&mut self) -> &mut Sender {
        &mut self.inner
    }

    /// Sends a copy of `value`, waiting while the ring is full.
    pub fn send(&mut self, value: &T) -> Result<()> {
        self.inner.send(bytemuck::bytes_of(value))
    }

    /// Sends a copy of `value` if there is room now.
    pub fn try_send(&mut self, value: &T) -> Result<bool> {
        self.inner.try_send(bytemuck::bytes_of(value))
    }

    /// Like [`TypedSender::send`], with a timeout.
    pub fn send_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.inner.send_timeout(bytemuck::bytes_of(value), timeout)
    }
}

impl<T: Pod> TypedReceiver<T> {
    /// Creates a channel in a new anonymous segment (see [`Receiver::create`]).
    pub fn create(capacity: usize) -> Result<Self> {
        Ok(Self::from_receiver(Receiver::create(capacity)?))
    }

    /// Creates a channel in a new named segment (see
    /// [`Receiver::create_named`]).
    pub fn create_named(name: &str, capacity: usize) -> Result<Self> {
        Ok(Self::from_receiver(Receiver::create_named(name, capacity)?))
    }

    /// Attaches to the channel in `segment` (see [`Receiver::attach`]).
    pub fn attach(segment: &Segment) -> Result<Self> {
        Ok(Self::from_receiver(Receiver::attach(segment)?))
    }

    /// Opens the named channel `name` as its receiver (see
    /// [`Receiver::open`]).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self::from_receiver(Receiver::open(name)?))
    }

    /// Wraps a byte receiver.
    pub fn from_receiver(inner: Receiver) -> Self {
        TypedReceiver {
            inner,
            _type: PhantomData,
        }
    }

    /// The segment the channel lives in.
    pub fn segment(&self) -> &Segment {
        self.inner.segment()
    }

    /// The byte receiver underneath, for a wait set.
    pub(crate) fn inner_ref(&self) -> &Receiver {
        &self.inner
    }

    /// The byte receiver underneath (wait strategy, capacity...).
    pub fn inner_mut(&mut self) -> &mut Receiver {
        &mut self.inner
    }

    /// Receives the next value, waiting while there is none.
    pub fn recv(&mut self) -> Result<T> {
        value_of(self.inner.recv()?)
    }

    /// Receives the next value if there is one now.
    pub fn try_recv(&mut self) -> Result<Option<T>> {
        self.inner.try_recv()?.map(value_of).transpose()
    }

    /// Like [`TypedReceiver::recv`], with a timeout.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        value_of(self.inner.recv_timeout(timeout)?)
    }
}

/// The value a message holds: a copy (the frame's address need not be
/// aligned for `T`). A message of another size is consumed all the same and
/// reported as [`Error::Corrupted`].
pub(crate) fn value_of<T: Pod>(msg: RecvGuard<'_>) -> Result<T> {
    if msg.len() == std::mem::size_of::<T>() {
        return Ok(bytemuck::pod_read_unaligned(&msg));
    }
    Err(Error::Corrupted {
        object: msg.describe(),
        detail: format!(
            "a message of {} bytes where a {} of {} bytes was expected",
            msg.len(),
            std::any::type_name::<T>(),
            std::mem::size_of::<T>()
        ),
    })
}
