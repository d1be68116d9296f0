//! Publish-subscribe, async: `Subscriber::recv_async` and its stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::notifier::Registration;
use super::readiness::Readiness;
use super::Wait;
use crate::pubsub::ring::Got;
use crate::pubsub::{Sample, Subscriber, TypedSubscriber};
use crate::wait_set::member::Member;
use crate::{Error, Result};

fn registration(sub: &Subscriber) -> Result<Arc<Registration>> {
    super::registration(&sub.wait_parts().2.aio, || Member::subscriber(sub))
}

/// One poll of a receive: the next message (held), or `Pending` with the
/// task listening on the notifier.
fn poll_got(sub: &Subscriber, wait: &mut Wait, cx: &mut Context<'_>) -> Poll<Result<Got>> {
    match sub.try_got().transpose() {
        Some(done) => {
            wait.done();
            Poll::Ready(done)
        }
        None => wait.park(registration(sub), cx),
    }
}

impl Subscriber {
    /// Receives the next message, waiting (asynchronously) while there is
    /// none: [`Subscriber::recv`] as a future, the message in place.
    /// [`Error::Disconnected`] once every publisher is gone and everything
    /// they published was received.
    ///
    /// It borrows the subscriber mutably (where `recv` borrows it shared),
    /// so that the future is `Send` (a subscriber is not `Sync`); the
    /// [`Sample`] it gives still borrows it, so one is held at a time this
    /// way. To hold several: `recv_async` for the first, then
    /// [`Subscriber::try_recv`] (after dropping nothing), or the
    /// [stream](Subscriber::stream) of copies.
    ///
    /// Cancel safe: dropped before it is ready, it has taken no message.
    ///
    /// ```
    /// use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-sub-async-{}", std::process::id());
    /// let mut publisher = Publisher::create(&name, ServiceConfig::new())?;
    /// let mut subscriber = Subscriber::open(&name)?;
    /// publisher.publish_copy(b"tick")?;
    /// let sample = futures::executor::block_on(subscriber.recv_async())?;
    /// assert_eq!(&*sample, b"tick");
    /// # Ok(()) }
    /// ```
    pub fn recv_async(&mut self) -> SubscriberRecvFuture<'_> {
        SubscriberRecvFuture {
            sub: Some(self),
            wait: Wait::new(),
        }
    }

    /// The messages as a [`futures_core::Stream`] of owned copies, which
    /// ends when every publisher is gone and everything they published was
    /// received, or after an error that stays (see [`SampleStream`]).
    ///
    /// Cancel safe: a `next()` dropped before it is ready has taken no
    /// message.
    pub fn stream(&mut self) -> SampleStream<'_> {
        SampleStream {
            sub: self,
            wait: Wait::new(),
            ended: false,
        }
    }

    /// A descriptor that becomes readable when this subscriber has a
    /// message, every publisher is gone (and everything was received), or
    /// it was dropped: for event loops (see [`Readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::new(vec![registration(self)?])
    }
}

/// The future of [`Subscriber::recv_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct SubscriberRecvFuture<'a> {
    sub: Option<&'a mut Subscriber>,
    wait: Wait,
}

impl<'a> Future for SubscriberRecvFuture<'a> {
    type Output = Result<Sample<'a>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let sub = this
            .sub
            .as_deref()
            .expect("SubscriberRecvFuture polled after it was ready");
        match poll_got(sub, &mut this.wait, cx) {
            Poll::Ready(Ok(got)) => {
                let sub: &'a Subscriber = this.sub.take().expect("checked above");
                Poll::Ready(Ok(sub.sample(got)))
            }
            Poll::Ready(Err(e)) => {
                this.sub = None;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for SubscriberRecvFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberRecvFuture")
            .field("done", &self.sub.is_none())
            .finish_non_exhaustive()
    }
}

/// The stream of [`Subscriber::stream`]: owned copies of the messages.
///
/// It ends (`None`, and [`is_terminated`](futures_core::FusedStream::is_terminated))
/// when every publisher is gone and everything they published was
/// received, and after yielding an error that stays, as tokio-util's
/// `FramedRead` does: [`Error::Corrupted`] (a publisher broke the
/// protocol: the subscriber does not move past what it wrote),
/// [`Error::Truncated`] and [`Error::NoSpace`] (the memory under the
/// subscriber is gone: it reads zeros for good), and any error in
/// registering for wake-ups (the notifier's thread could not start, the
/// service's header could not be mapped once more: the stream cannot wait;
/// the subscriber works on, and a new stream may be made). Each is yielded
/// once, then the stream ends, so that `while let Some(r) =
/// stream.next().await` does not spin on it. Other errors (an
/// [`Error::Io`] asking the system whether the publishers live) are
/// yielded and the stream goes on. The subscriber itself still reports an
/// error of its own at every call.
#[must_use = "streams do nothing unless polled"]
pub struct SampleStream<'a> {
    sub: &'a mut Subscriber,
    wait: Wait,
    ended: bool,
}

impl futures_core::Stream for SampleStream<'_> {
    type Item = Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match poll_got(this.sub, &mut this.wait, cx) {
            Poll::Ready(Ok(got)) => Poll::Ready(Some(Ok(this.sub.sample(got).to_vec()))),
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

impl futures_core::FusedStream for SampleStream<'_> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl std::fmt::Debug for SampleStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T: bytemuck::Pod> TypedSubscriber<T> {
    /// Receives the next value, waiting (asynchronously) while there is
    /// none: [`TypedSubscriber::recv`] as a future, the byte subscriber's
    /// [`Subscriber::recv_async`] with the value copied out when it comes
    /// (so the sample is released at once). Like that one, it borrows the
    /// subscriber mutably, so that the future is `Send`.
    ///
    /// Cancel safe: dropped before it is ready, it has taken no message.
    pub async fn recv_async(&mut self) -> Result<T> {
        crate::pubsub::typed::value_of(self.inner_mut().recv_async().await?)
    }

    /// A descriptor that becomes readable when this subscriber has a
    /// message, every publisher is gone, or it was dropped (see
    /// [`Subscriber::readiness`]).
    pub fn readiness(&self) -> Result<Readiness> {
        self.inner().readiness()
    }
}
