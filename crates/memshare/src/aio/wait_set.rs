//! Wait sets, async: `WaitSet::wait_async`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::readiness::Readiness;
use super::Wait;
use crate::wait_set::Ready;
use crate::{Error, Result, WaitSet};

impl WaitSet {
    /// Waits (asynchronously) until a member is ready; returns the ones
    /// that are: [`WaitSet::wait`] as a future. [`Error::InvalidInput`] if
    /// the set is empty.
    ///
    /// While it waits, the notifier sleeps on the members' words (each
    /// member's endpoint has one registration with the notifier, shared
    /// with the endpoint's own futures), and asks about their peers as a
    /// blocking wait does (see the [wait set's cost](crate::wait_set#cost)).
    /// Woken, the future asks about the peers of the members the notifier
    /// found one of gone, and the others' only when that is due: no system
    /// call when a message woke it.
    ///
    /// Cancel safe: a wait takes nothing from its members.
    ///
    /// ```
    /// use memshare::channel::{Receiver, Sender};
    /// use memshare::WaitSet;
    /// # fn main() -> memshare::Result<()> {
    /// let mut a = Receiver::create(4096)?;
    /// let b = Receiver::create(4096)?;
    /// let mut tx = Sender::attach(a.segment())?;
    /// let _tx_b = Sender::attach(b.segment())?;
    /// let mut set = WaitSet::new()?;
    /// let token_a = set.add(&a)?;
    /// set.add(&b)?;
    /// let sender = std::thread::spawn(move || tx.send(b"to a"));
    /// let ready = futures::executor::block_on(set.wait_async())?;
    /// assert!(ready.contains(token_a));
    /// assert_eq!(&*a.try_recv()?.expect("reported"), b"to a");
    /// # sender.join().unwrap()?; Ok(()) }
    /// ```
    pub fn wait_async(&mut self) -> WaitFuture<'_> {
        WaitFuture {
            set: Some(self),
            wait: Wait::new(),
        }
    }

    /// A descriptor that becomes readable when a member is ready: for
    /// event loops (see [`Readiness`]). It watches the members the set has
    /// now (not those added later); after it is readable, `try_wait` says
    /// which are ready.
    pub fn readiness(&self) -> Result<Readiness> {
        let regs = self
            .members()
            .iter()
            .map(|m| m.registration())
            .collect::<Result<Vec<_>>>()?;
        Readiness::new(regs)
    }
}

/// The future of [`WaitSet::wait_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFuture<'a> {
    set: Option<&'a mut WaitSet>,
    wait: Wait,
}

impl Future for WaitFuture<'_> {
    type Output = Result<Ready>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let set = this
            .set
            .as_deref_mut()
            .expect("WaitFuture polled after it was ready");
        if set.is_empty() {
            this.set = None;
            return Poll::Ready(Err(Error::InvalidInput {
                object: "wait set".into(),
                reason: "it has no members: a wait would never return".into(),
            }));
        }
        // Woken by the notifier (it listened before): its members may have
        // found a peer gone that the set has not asked about yet.
        let look = if this.wait.listened() {
            set.try_wait_asking()
        } else {
            set.try_wait()
        };
        let result = look.and_then(|ready| {
            if !ready.is_empty() {
                return Ok(Some(ready));
            }
            let regs = set
                .members()
                .iter()
                .map(|m| m.registration())
                .collect::<Result<Vec<_>>>()?;
            this.wait.park_all(regs, cx);
            Ok(None)
        });
        match result {
            Ok(None) => Poll::Pending,
            done => {
                this.wait.done();
                this.set = None;
                Poll::Ready(done.map(|r| r.expect("checked above")))
            }
        }
    }
}

impl std::fmt::Debug for WaitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFuture")
            .field("done", &self.set.is_none())
            .finish_non_exhaustive()
    }
}
