//! Channels, async: `Receiver::recv_async`, its stream, and
//! `Sender::reserve_async` / `send_async`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::notifier::Registration;
use super::readiness::Readiness;
use super::Wait;
use crate::channel::layout::frame_len;
use crate::channel::ring::Frame;
use crate::channel::{Receiver, RecvGuard, SendGuard, Sender, TypedReceiver, TypedSender};
use crate::wait_set::member::Member;
use crate::{Error, Result};

fn receiver_registration(rx: &Receiver) -> Result<Arc<Registration>> {
    super::registration(&rx.wait_parts().0.link.aio, || Member::receiver(rx))
}

fn sender_registration(tx: &Sender) -> Result<Arc<Registration>> {
    super::registration(&tx.wait_parts().0.link.aio, || Member::sender(tx))
}

/// One poll of a receive: the next frame, or `Pending` with the task
/// listening on the notifier.
#[inline]
fn poll_frame(rx: &mut Receiver, wait: &mut Wait, cx: &mut Context<'_>) -> Poll<Result<Frame>> {
    match rx.try_frame() {
        Ok(Some(frame)) => {
            wait.done();
            Poll::Ready(Ok(frame))
        }
        Ok(None) => wait.park(receiver_registration(rx), cx),
        Err(e) => {
            wait.done();
            Poll::Ready(Err(e))
        }
    }
}

impl Receiver {
    /// Receives the next message, waiting (asynchronously) while there is
    /// none: [`Receiver::recv`] as a future. The message is in place in
    /// the ring, as `recv`'s; after the sender is gone, the messages it
    /// committed are still received, then [`Error::Disconnected`]
    /// (within the liveness interval of its death).
    ///
    /// Cancel safe: dropped before it is ready, it has taken no message.
    /// (See the [`aio`](crate::aio) module for how it waits.)
    ///
    /// ```
    /// use memshare::channel::{Receiver, Sender};
    /// # fn main() -> memshare::Result<()> {
    /// let mut rx = Receiver::create(4096)?;
    /// let mut tx = Sender::attach(rx.segment())?;
    /// let sender = std::thread::spawn(move || tx.send(b"from a thread"));
    /// let msg = futures::executor::block_on(rx.recv_async())?;
    /// assert_eq!(&*msg, b"from a thread");
    /// # drop(msg); sender.join().unwrap()?; Ok(()) }
    /// ```
    #[inline]
    pub fn recv_async(&mut self) -> RecvFuture<'_> {
        RecvFuture {
            rx: Some(self),
            wait: Wait::new(),
        }
    }

    /// The messages as a [`futures_core::Stream`] of owned copies, which
    /// ends when the sender is gone and everything it sent was received,
    /// or after an error that stays (see [`RecvStream`]).
    /// (Zero-copy: loop on [`Receiver::recv_async`] instead.)
    ///
    /// Cancel safe: a `next()` dropped before it is ready has taken no
    /// message.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use memshare::channel::{Receiver, Sender};
    /// # fn main() -> memshare::Result<()> {
    /// let mut rx = Receiver::create(4096)?;
    /// let mut tx = Sender::attach(rx.segment())?;
    /// for m in [&b"a"[..], b"b", b"c"] {
    ///     tx.send(m)?;
    /// }
    /// drop(tx); // the stream ends after the last message
    /// let all: Vec<Vec<u8>> = futures::executor::block_on(
    ///     rx.stream().map(|m| m.expect("a message")).collect(),
    /// );
    /// assert_eq!(all, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn stream(&mut self) -> RecvStream<'_> {
        RecvStream {
            rx: self,
            wait: Wait::new(),
            ended: false,
        }
    }

    /// A descriptor that becomes readable when this receiver has a
    /// message, its sender is gone, or it was dropped: for event loops
    /// (see [`Readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::new(vec![receiver_registration(self)?])
    }
}

/// The future of [`Receiver::recv_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct RecvFuture<'a> {
    rx: Option<&'a mut Receiver>,
    wait: Wait,
}

impl<'a> Future for RecvFuture<'a> {
    type Output = Result<RecvGuard<'a>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let rx = this
            .rx
            .as_deref_mut()
            .expect("RecvFuture polled after it was ready");
        match poll_frame(rx, &mut this.wait, cx) {
            Poll::Ready(Ok(frame)) => {
                let rx = this.rx.take().expect("checked above");
                Poll::Ready(Ok(rx.guard(frame)))
            }
            Poll::Ready(Err(e)) => {
                this.rx = None;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for RecvFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture")
            .field("done", &self.rx.is_none())
            .finish_non_exhaustive()
    }
}

/// The stream of [`Receiver::stream`]: owned copies of the messages.
///
/// It ends (`None`, and [`is_terminated`](futures_core::FusedStream::is_terminated))
/// when the sender is gone and everything it sent was received, and
/// after yielding an error that stays, as tokio-util's `FramedRead` does:
/// [`Error::Corrupted`] (the sender broke the protocol: nothing it sends
/// can be trusted, and the receiver does not move past what it wrote),
/// [`Error::Truncated`] and [`Error::NoSpace`] (the memory under the
/// receiver is gone: it reads zeros for good), and any error in
/// registering for wake-ups (the notifier's thread could not start, the
/// receiver's header could not be mapped once more: the stream cannot
/// wait; the receiver works on, and a new stream may be made). Each is
/// yielded once, then the stream ends, so that `while let Some(r) =
/// stream.next().await` does not spin on it. Other errors (an
/// [`Error::Io`] asking the system whether the sender lives) are yielded
/// and the stream goes on. The receiver itself still reports an error of
/// its own at every call.
#[must_use = "streams do nothing unless polled"]
pub struct RecvStream<'a> {
    rx: &'a mut Receiver,
    wait: Wait,
    ended: bool,
}

impl futures_core::Stream for RecvStream<'_> {
    type Item = Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match poll_frame(this.rx, &mut this.wait, cx) {
            Poll::Ready(Ok(frame)) => Poll::Ready(Some(Ok(this.rx.guard(frame).to_vec()))),
            Poll::Ready(Err(Error::Disconnected { .. })) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                // Yielded once: an error that stays ends the stream.
                this.ended = super::ends_stream(&e, &this.wait);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_core::FusedStream for RecvStream<'_> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl std::fmt::Debug for RecvStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Reserves `len` bytes in the ring, waiting (asynchronously) while it
    /// is full: [`Sender::reserve`] as a future. Write the message in
    /// place, then [`SendGuard::commit`]. [`Error::Disconnected`] if the
    /// receiver is gone, [`Error::TooLarge`] at once if the message can
    /// never fit.
    ///
    /// Cancel safe: dropped before it is ready, nothing is reserved and no
    /// frame is begun (the guard, once it exists, publishes only at
    /// `commit`; a guard dropped uncommitted sends nothing).
    ///
    /// ```
    /// use memshare::channel::{Receiver, Sender};
    /// # fn main() -> memshare::Result<()> {
    /// let mut tx = Sender::create(4096)?;
    /// let mut rx = Receiver::attach(tx.segment())?;
    /// futures::executor::block_on(async {
    ///     let mut slot = tx.reserve_async(3).await?;
    ///     slot.copy_from_slice(b"abc");
    ///     slot.commit();
    ///     memshare::Result::Ok(())
    /// })?;
    /// assert_eq!(&*rx.recv()?, b"abc");
    /// # Ok(()) }
    /// ```
    pub fn reserve_async(&mut self, len: usize) -> ReserveFuture<'_> {
        ReserveFuture {
            tx: Some(self),
            len,
            wait: Wait::new(),
        }
    }

    /// Sends a copy of `msg`, waiting (asynchronously) while the ring is
    /// full: [`Sender::send`] as a future.
    ///
    /// Cancel safe: dropped before it is ready, nothing was sent (the
    /// message is copied and committed in the one poll that finds room).
    ///
    /// ```
    /// use memshare::channel::{Receiver, Sender};
    /// # fn main() -> memshare::Result<()> {
    /// let mut tx = Sender::create(64)?;
    /// let mut rx = Receiver::attach(tx.segment())?;
    /// let reader = std::thread::spawn(move || -> memshare::Result<usize> {
    ///     let mut n = 0;
    ///     while n < 100 {
    ///         rx.recv()?;
    ///         n += 1;
    ///     }
    ///     Ok(n)
    /// });
    /// futures::executor::block_on(async {
    ///     for i in 0..100u32 {
    ///         tx.send_async(&i.to_le_bytes()).await?; // waits for room
    ///     }
    ///     memshare::Result::Ok(())
    /// })?;
    /// assert_eq!(reader.join().unwrap()?, 100);
    /// # Ok(()) }
    /// ```
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<()> {
        let mut guard = self.reserve_async(msg.len()).await?;
        guard.copy_from_slice(msg);
        guard.commit();
        Ok(())
    }

    /// A descriptor that becomes readable when this sender has room for
    /// the smallest message (a larger one may still not fit), its
    /// receiver is gone, or it was dropped: for event loops (see
    /// [`Readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::new(vec![sender_registration(self)?])
    }
}

/// The future of [`Sender::reserve_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct ReserveFuture<'a> {
    tx: Option<&'a mut Sender>,
    len: usize,
    wait: Wait,
}

/// Tells the notifier (through the sender's link) which frame the sender's
/// future waits for room for: `frame` bytes, or 0 when none waits. Without
/// it the notifier would report room for the smallest frame, which a
/// future waiting for a larger one takes for a wake-up and parks again at
/// once, round after round.
fn wanted(tx: &Sender, frame: u64) {
    // Relaxed: the store comes before the future's `listen`, and the
    // notifier reads it under the lock that `listen` takes.
    tx.wait_parts()
        .0
        .link
        .state
        .store(frame, std::sync::atomic::Ordering::Relaxed);
}

impl<'a> Future for ReserveFuture<'a> {
    type Output = Result<SendGuard<'a>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let tx = this
            .tx
            .as_deref_mut()
            .expect("ReserveFuture polled after it was ready");
        match tx.try_slot(this.len) {
            Ok(Some(slot)) => {
                this.wait.done();
                wanted(tx, 0);
                let tx = this.tx.take().expect("checked above");
                Poll::Ready(Ok(tx.guard(slot, this.len)))
            }
            Ok(None) => {
                // (try_slot refused a length whose frame overflows.)
                wanted(tx, frame_len(this.len as u64).unwrap_or(0));
                let r = sender_registration(tx);
                let p = this.wait.park(r, cx);
                if p.is_ready() {
                    wanted(tx, 0);
                    this.tx = None;
                }
                p
            }
            Err(e) => {
                this.wait.done();
                wanted(tx, 0);
                this.tx = None;
                Poll::Ready(Err(e))
            }
        }
    }
}

impl Drop for ReserveFuture<'_> {
    fn drop(&mut self) {
        if let Some(tx) = &self.tx {
            // Dropped while waiting: the sender waits for nothing now.
            wanted(tx, 0);
        }
    }
}

impl std::fmt::Debug for ReserveFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReserveFuture")
            .field("len", &self.len)
            .field("done", &self.tx.is_none())
            .finish_non_exhaustive()
    }
}

impl<T: bytemuck::Pod> TypedReceiver<T> {
    /// Receives the next value, waiting (asynchronously) while there is
    /// none: [`TypedReceiver::recv`] as a future, the byte receiver's
    /// [`Receiver::recv_async`] with the value copied out when it comes. A
    /// message of another size is consumed and reported as
    /// [`Error::Corrupted`], as by `recv`.
    ///
    /// Cancel safe: dropped before it is ready, it has taken no message
    /// (the value is copied out in the poll that finds the message).
    ///
    /// ```
    /// use memshare::channel::{TypedReceiver, TypedSender};
    /// # fn main() -> memshare::Result<()> {
    /// let mut rx = TypedReceiver::<u64>::create(4096)?;
    /// let mut tx = TypedSender::<u64>::attach(rx.segment())?;
    /// let sender = std::thread::spawn(move || tx.send(&7));
    /// assert_eq!(futures::executor::block_on(rx.recv_async())?, 7);
    /// # sender.join().unwrap()?; Ok(()) }
    /// ```
    pub async fn recv_async(&mut self) -> Result<T> {
        crate::channel::typed::value_of(self.inner_mut().recv_async().await?)
    }

    /// A descriptor that becomes readable when this receiver has a value,
    /// its sender is gone, or it was dropped (see
    /// [`Receiver::readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        self.inner_ref().readiness()
    }
}

impl<T: bytemuck::Pod> TypedSender<T> {
    /// Sends a copy of `value`, waiting (asynchronously) while the ring is
    /// full: [`TypedSender::send`] as a future ([`Sender::send_async`] of
    /// its bytes).
    ///
    /// Cancel safe: dropped before it is ready, nothing was sent.
    pub async fn send_async(&mut self, value: &T) -> Result<()> {
        self.inner_mut().send_async(bytemuck::bytes_of(value)).await
    }

    /// A descriptor that becomes readable when this sender has room, its
    /// receiver is gone, or it was dropped (see [`Sender::readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        self.inner_ref().readiness()
    }
}
