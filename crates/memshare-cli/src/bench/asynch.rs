//! The async cases' executor: the smallest one there is, a future polled
//! on the benchmark's own thread, which parks while it is pending and is
//! unparked by the waker (the memshare notifier's thread calls it). What
//! `futures::executor::block_on` does, without the dependency, and with a
//! deadline.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker for this thread.
pub fn waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// Polls `fut` on this thread until it is ready (`None` if `deadline`
/// passes first), parking while it is pending.
pub fn block_on_until<F: Future>(waker: &Waker, fut: F, deadline: Instant) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}
