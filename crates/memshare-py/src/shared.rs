//! The machinery every endpoint shares: a Rust endpoint at a fixed heap
//! address, the guards that borrow it (a received message, a reservation,
//! a sample...) held on behalf of Python objects, one lock that serializes
//! every use of both, and waiting with the interpreter detached.
//!
//! Why this shape. memshare's guards borrow their endpoint (`RecvGuard<'a>`
//! holds `&'a mut Receiver`, `Sample<'a>` holds `&'a Subscriber`), which a
//! Python object cannot express. So the endpoint lives in a `Box` whose
//! address never changes, its guards are stored beside it with the
//! borrow's lifetime extended to `'static`, and the Python objects keep
//! the whole thing alive through an `Arc`; the guards are dropped before
//! the endpoint (see `State`'s `Drop`). Rust's borrow rules are kept by
//! hand: an endpoint with an exclusive guard outstanding is not touched
//! (the guard is released first, or the call refused), and every use of
//! the endpoint or of a guard happens under one lock, so that endpoints
//! that are not `Sync` (their `RefCell`s) are only ever used by one thread
//! at a time.
//!
//! The lock is never waited for with the interpreter attached: a thread
//! that holds it may be parked in a receive (detached) for a while, and a
//! thread blocking on it while attached would stall every Python thread.
//! Calls try the lock while attached and wait for it detached; a Python
//! object that goes away while the lock is busy leaves its guard's id in
//! `deferred`, and whoever holds the lock releases it before unlocking.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::buffer::Flags;
use crate::errors::{FResult, Fail};

/// The longest a blocking call waits detached before it attaches again to
/// let Python handle signals (Ctrl-C) and deferred releases go.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// A guard held for a Python object: its id, the flags of the memory it
/// lends (one set per Python object lending it), and the Rust guard.
pub(crate) struct Held<G> {
    pub id: u64,
    pub flags: Vec<Arc<Flags>>,
    pub guard: G,
}

/// The endpoint and its guards (behind [`Shared`]'s lock).
pub(crate) struct State<T, G> {
    /// The endpoint (from `Box::into_raw`), `None` once closed.
    ep: Option<NonNull<T>>,
    /// Guards held for Python objects; dropped before the endpoint.
    pub held: Vec<Held<G>>,
    next_id: u64,
}

// `T` is the endpoint, `G` guards that borrow it. They are only used under `Shared`'s mutex
// (every method takes `&mut State` from it), so however many threads share a `Shared`, one at a
// time touches the endpoint and its guards.
// SAFETY: as just said, the endpoints' non-thread-safe parts (`Cell`, `RefCell`) are never used
// concurrently; `T: Send` lets the endpoint move between threads; guards are plain data.
unsafe impl<T: Send, G> Send for State<T, G> {}

impl<T, G> State<T, G> {
    /// The endpoint, shared, for the lifetime the caller picks (a guard
    /// made from it is stored in this state).
    ///
    /// # Safety
    ///
    /// The reference is used only while the caller holds the lock (it has
    /// `&self` from it), or by a guard stored in `held` before the lock is
    /// released (guards are dropped before the endpoint); no `&mut` to the
    /// endpoint exists meanwhile (no exclusive guard is held).
    pub(crate) unsafe fn ep<'a>(&self, what: &str) -> FResult<&'a T> {
        let p = self.ep.ok_or_else(|| closed(what))?;
        // SAFETY: `p` came from `Box::into_raw` and is freed only when the
        // state drops or closes, after every guard; the caller keeps the
        // contract above.
        Ok(unsafe { &*p.as_ptr() })
    }

    /// The endpoint, exclusive, for the lifetime the caller picks.
    ///
    /// # Safety
    ///
    /// As for [`State::ep`], and no other reference to the endpoint exists
    /// while this one lives: no guard of it is held (`held` is empty) and
    /// the caller makes one call at a time.
    pub(crate) unsafe fn ep_mut<'a>(&mut self, what: &str) -> FResult<&'a mut T> {
        let p = self.ep.ok_or_else(|| closed(what))?;
        debug_assert!(self.held.is_empty(), "an exclusive guard is outstanding");
        // SAFETY: as in `ep`; the caller keeps the contract above.
        Ok(unsafe { &mut *p.as_ptr() })
    }

    /// Stores a guard for a Python object: its id.
    pub(crate) fn hold(&mut self, guard: G, flags: Vec<Arc<Flags>>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.held.push(Held { id, flags, guard });
        id
    }

    /// Takes the guard `id` out (to consume it: commit, publish...).
    pub(crate) fn take(&mut self, id: u64) -> Option<Held<G>> {
        let i = self.held.iter().position(|h| h.id == id)?;
        Some(self.held.remove(i))
    }

    /// Puts a guard taken out with [`State::take`] back, under its id.
    pub(crate) fn put_back(&mut self, held: Held<G>) {
        self.held.push(held);
    }

    /// Releases every guard whose memory is not exported (all of them, or
    /// a `BufferError` naming `what` if one is).
    pub(crate) fn release_all(&mut self, what: &str) -> FResult<()> {
        for h in &self.held {
            for f in &h.flags {
                let f = f.lock();
                if f.exports > 0 && !f.released {
                    return Err(crate::buffer::exported(what, f.exports).into());
                }
            }
        }
        for h in &self.held {
            for f in &h.flags {
                f.force_release();
            }
        }
        self.held.clear();
        Ok(())
    }

    /// Whether the endpoint is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.ep.is_none()
    }
}

impl<T, G> Drop for State<T, G> {
    fn drop(&mut self) {
        for h in &self.held {
            for f in &h.flags {
                f.force_release();
            }
        }
        // Guards first: they point into the endpoint.
        self.held.clear();
        if let Some(p) = self.ep.take() {
            // SAFETY: from `Box::into_raw` in `Shared::new`; nothing
            // borrows it any more (the guards are gone).
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }
}

/// The `ValueError` for a closed endpoint.
pub(crate) fn closed(what: &str) -> Fail {
    Fail::Py(PyValueError::new_err(format!("{what}: closed")))
}

/// An endpoint and its guards, shared by the Python endpoint object and
/// the Python objects its guards lend memory to.
pub(crate) struct Shared<T, G> {
    state: Mutex<State<T, G>>,
    /// Ids of guards whose Python objects went away while the lock was
    /// busy: released by the lock's holder.
    deferred: Mutex<Vec<u64>>,
    /// What the endpoint is, for error messages.
    pub what: String,
    /// The endpoint's segment (a handle of its own, for `.segment`),
    /// dropped on close with the endpoint.
    segment: Mutex<Option<memshare::Segment>>,
    /// The segment's name.
    pub name: Option<String>,
}

impl<T: Send, G> Shared<T, G> {
    /// Shares `ep`.
    pub(crate) fn new(ep: T, what: String, segment: memshare::Segment) -> Arc<Shared<T, G>> {
        let name = segment.name().map(str::to_owned);
        let ep = NonNull::from(Box::leak(Box::new(ep)));
        Arc::new(Shared {
            state: Mutex::new(State {
                ep: Some(ep),
                held: Vec::new(),
                next_id: 0,
            }),
            deferred: Mutex::new(Vec::new()),
            what,
            segment: Mutex::new(Some(segment)),
            name,
        })
    }

    fn deferred(&self) -> MutexGuard<'_, Vec<u64>> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases the deferred guards (the caller holds the state lock).
    fn drain(&self, state: &mut State<T, G>) {
        let ids = std::mem::take(&mut *self.deferred());
        for id in ids {
            drop(state.take(id));
        }
    }

    /// Unlocks, then releases what was deferred meanwhile (a releaser that
    /// found the lock busy counts on its holder to look after unlocking).
    fn unlock(&self, mut guard: MutexGuard<'_, State<T, G>>) {
        self.drain(&mut guard);
        drop(guard);
        if !self.deferred().is_empty() {
            if let Ok(mut g) = self.state.try_lock() {
                self.drain(&mut g);
            }
        }
    }

    /// Runs `f` on the state if the lock is free now, attached (the fast
    /// path: no detach, no wait). `None` if it is busy.
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut State<T, G>) -> R) -> Option<R> {
        let mut g = match self.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let r = f(&mut g);
        self.unlock(g);
        Some(r)
    }

    /// Runs `f` on the state: at once if the lock is free, else waiting
    /// for it detached.
    pub(crate) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut State<T, G>) -> R + Send,
    ) -> R
    where
        T: Send,
    {
        let mut f = Some(f);
        if let Some(r) = self.try_with(|s| (f.take().expect("once"))(s)) {
            return r;
        }
        let f = f.take().expect("not run yet");
        py.detach(|| self.locked(f))
    }

    /// Runs `f` on the state, waiting for the lock (the caller is
    /// detached).
    fn locked<R>(&self, f: impl FnOnce(&mut State<T, G>) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut g);
        self.unlock(g);
        r
    }

    /// Releases guard `id` for a Python object that is done with it or
    /// going away (its flags are marked released already): now if the
    /// lock is free, else by the lock's holder.
    pub(crate) fn release(&self, id: u64) {
        if self.try_with(|s| drop(s.take(id))).is_some() {
            return;
        }
        self.deferred().push(id);
        // The holder may have unlocked before seeing it: look once more.
        let _ = self.try_with(|_| ());
    }

    /// Closes the endpoint: releases every guard (a `BufferError` if one's
    /// memory is exported), then drops the endpoint. Closing twice is
    /// nothing.
    pub(crate) fn close(&self, py: Python<'_>) -> PyResult<()> {
        let what = self.what.clone();
        let r: FResult<Option<ClosedEp<T>>> = self.with(py, move |s| {
            if s.ep.is_none() {
                return Ok(None);
            }
            s.release_all(&what)?;
            Ok(s.ep.take().map(ClosedEp))
        });
        match r {
            // Dropped detached: an endpoint's drop may wake peers.
            Ok(ep) => {
                let seg = self
                    .segment
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                py.detach(move || drop((ep, seg)));
                Ok(())
            }
            Err(e) => Err(e.into_py(py)),
        }
    }

    /// The endpoint's segment, as a Python `Segment` (`ValueError` once
    /// closed).
    pub(crate) fn segment(&self) -> PyResult<crate::segment::Segment> {
        self.segment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(crate::segment::Segment::from_rust)
            .ok_or_else(|| PyValueError::new_err(format!("{}: closed", self.what)))
    }

    /// Whether the endpoint is closed (a lock-free look is not needed:
    /// this is for `repr` and properties).
    pub(crate) fn is_closed(&self, py: Python<'_>) -> bool {
        self.with(py, |s| s.is_closed())
    }

    /// Waits for `attempt` to give something, in slices (see
    /// [`in_slices`]); `attempt` gets the state, under the lock, and the
    /// longest it may wait.
    pub(crate) fn wait<R: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut State<T, G>, Duration) -> FResult<Option<R>> + Send,
    ) -> PyResult<R> {
        in_slices(py, timeout, &self.what, |slice| {
            self.locked(|s| attempt(s, slice))
        })
    }
}

/// Waits for `attempt` to give something, in slices of at most [`SLICE`]
/// detached, until `timeout` (forever if `None`, or too far to be an
/// `Instant`). `attempt` gets the
/// longest it may wait, and returns `Ok(None)` (or memshare's `TimedOut`)
/// if nothing came in that time. Between slices, Python's signal handlers
/// run (Ctrl-C raises `KeyboardInterrupt`). The last slice's `TimedOut` is
/// the error (`what` names the object in one of ours).
pub(crate) fn in_slices<R: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    what: &str,
    mut attempt: impl FnMut(Duration) -> FResult<Option<R>> + Send,
) -> PyResult<R> {
    // A deadline past what an `Instant` holds is none.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let now = Instant::now();
        let (slice, last) = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(now);
                (left.min(SLICE), left <= SLICE)
            }
            None => (SLICE, false),
        };
        let r = py.detach(|| attempt(slice));
        match r {
            Ok(Some(v)) => return Ok(v),
            Err(e) if e.is_timeout() && last => return Err(e.into_py(py)),
            Ok(None) if last => {
                return Err(Fail::Ms(memshare::Error::TimedOut {
                    object: what.to_owned(),
                    op: "wait",
                })
                .into_py(py))
            }
            Err(e) if !e.is_timeout() => return Err(e.into_py(py)),
            _ => py.check_signals()?,
        }
    }
}

/// How long memshare waits for a segment just created to get its header
/// (`waiting::FORMAT_GRACE` in the library, which does not export it).
const FORMAT_GRACE: Duration = Duration::from_secs(2);

/// Waits up to `timeout` (forever if `None`) for the service `what` to
/// appear and attaches to it, Ctrl-C interrupting the wait:
/// `attach_timeout` is the library's own waiting call
/// (`Client::connect_timeout`, `Subscriber::open_timeout`), run one slice
/// at a time. A slice that ends while the segment's header is still being
/// written ends in `NotAService`/`NotAChannel` (the library's wait for it
/// is bounded by the slice): that refusal, which took the whole slice, is
/// waited out for [`FORMAT_GRACE`] as the library does, in further slices;
/// one that comes sooner (a header that is not memshare's) is final.
pub(crate) fn wait_for_service<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    what: &str,
    attach_timeout: impl Fn(Duration) -> memshare::Result<T> + Sync,
) -> PyResult<T> {
    let mut unformatted_since: Option<Instant> = None;
    in_slices(py, timeout, what, |slice| {
        let start = Instant::now();
        match attach_timeout(slice) {
            Ok(v) => Ok(Some(v)),
            Err(memshare::Error::NotAService { .. } | memshare::Error::NotAChannel { .. })
                if !slice.is_zero()
                    && start.elapsed() >= slice
                    && unformatted_since.get_or_insert(start).elapsed() < FORMAT_GRACE =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// An endpoint taken out of its state by `close`, to drop detached.
struct ClosedEp<T>(NonNull<T>);

// SAFETY: the endpoint is `Send`, and this is its only owner now.
unsafe impl<T: Send> Send for ClosedEp<T> {}

impl<T> Drop for ClosedEp<T> {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw` in `Shared::new`, taken out of the
        // state with no guard left: this is its last owner.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A timeout argument in seconds: `None` for no deadline, which is also
/// what a timeout too large for a `Duration` (about 584 billion years, or
/// infinite) means. Negative or NaN: `ValueError`.
pub(crate) fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        // `try_from_secs_f64` refuses only what is too large, here.
        Some(t) if t >= 0.0 => Ok(Duration::try_from_secs_f64(t).ok()),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be a number of seconds >= 0 or None, not {t}"
        ))),
    }
}
