//! `memshare.Sender` / `memshare.Receiver`: the single-producer,
//! single-consumer channel, with zero-copy `reserve` and `recv`.

use std::sync::Arc;

use memshare::channel::{self, RecvGuard, SendGuard};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::buffer::{BytesIn, Flags, Lent};
use crate::errors::{FResult, Fail, IntoPyResult};
use crate::lend::lender;
use crate::segment::Segment;
use crate::shared::{timeout_arg, Shared, State};

type RxShared = Shared<channel::Receiver, RecvGuard<'static>>;
type TxShared = Shared<channel::Sender, SendGuard<'static>>;

/// Above this many bytes, a copy in or out runs detached (other Python
/// threads run meanwhile).
const BIG: usize = 64 << 10;

/// A description of a channel endpoint for error messages.
fn describe(side: &str, segment: &memshare::Segment) -> String {
    match segment.name() {
        Some(n) => format!("{side} of channel {n:?}"),
        None => format!("{side} of an anonymous channel"),
    }
}

/// The receiving end of a channel: messages in place in shared memory.
///
/// `recv()` returns a `Message` that lends the bytes read-only (zero-copy,
/// e.g. `numpy.frombuffer(msg, numpy.uint8)`) until it is released:
/// `msg.release()`, the end of a `with` block, the next `recv()`, or the
/// message object going away. Releasing (and so the next `recv()`) is
/// refused with `BufferError` while a buffer of it is exported.
#[pyclass(module = "memshare", frozen)]
pub struct Receiver {
    shared: Arc<RxShared>,
    capacity: usize,
}

impl Receiver {
    fn wrap(py: Python<'_>, rx: memshare::Result<channel::Receiver>) -> PyResult<Receiver> {
        let rx = rx.py_err(py)?;
        let segment = rx.segment().clone();
        let capacity = rx.capacity();
        Ok(Receiver {
            shared: Shared::new(rx, describe("receiver", &segment), segment),
            capacity,
        })
    }

    /// Keeps a received message for a Python `Message`.
    /// (The receiver is not used again before this guard is released:
    /// every call releases it first.)
    fn keep(s: &mut State<channel::Receiver, RecvGuard<'static>>, g: RecvGuard<'static>) -> Kept {
        let (ptr, len) = (g.as_ptr(), g.len());
        let flags = Flags::new();
        let id = s.hold(g, vec![Arc::clone(&flags)]);
        Kept {
            id,
            ptr: ptr as usize,
            len,
            flags,
        }
    }

    fn message(&self, k: Kept) -> Message {
        Message {
            shared: Arc::clone(&self.shared),
            id: k.id,
            lent: Lent {
                ptr: k.ptr,
                len: k.len,
                readonly: true,
                flags: k.flags,
                what: format!("message from the {}", self.shared.what),
            },
        }
    }

    /// Receives (waiting up to `timeout`) and applies `f` to the message
    /// under the lock; `f` gets the state so that it may keep the guard.
    fn recv_with<R: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        f: impl Fn(&mut State<channel::Receiver, RecvGuard<'static>>, RecvGuard<'static>) -> R
            + Send
            + Sync,
    ) -> PyResult<R> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        let fast = self.shared.try_with(|s| -> FResult<Option<R>> {
            s.release_all(what)?;
            // SAFETY: under the lock, no guard held (released above); a
            // message is stored in the state by `f` or dropped before the
            // lock is released.
            let rx = unsafe { s.ep_mut(what)? };
            match rx.try_recv()? {
                Some(g) => Ok(Some(f(s, g))),
                None => Ok(None),
            }
        });
        match fast {
            Some(Ok(Some(r))) => return Ok(r),
            Some(Err(e)) => return Err(e.into_py(py)),
            Some(Ok(None)) if timeout == Some(std::time::Duration::ZERO) => {
                return Err(Fail::Ms(memshare::Error::TimedOut {
                    object: what.clone(),
                    op: "receive",
                })
                .into_py(py))
            }
            _ => {}
        }
        self.shared.wait(py, timeout, |s, slice| {
            s.release_all(what)?;
            // SAFETY: as above.
            let rx = unsafe { s.ep_mut(what)? };
            let g = rx.recv_timeout(slice)?;
            Ok(Some(f(s, g)))
        })
    }
}

/// A received message kept for Python: its guard's id and where it is.
struct Kept {
    id: u64,
    ptr: usize,
    len: usize,
    flags: Arc<Flags>,
}

#[pymethods]
impl Receiver {
    /// Creates a channel in a new anonymous segment with a ring of at
    /// least `capacity` bytes, and attaches as its receiver. Give
    /// `receiver.segment` to the sender (inheritance, `send_segments`).
    #[staticmethod]
    fn create(py: Python<'_>, capacity: usize) -> PyResult<Receiver> {
        Receiver::wrap(py, channel::Receiver::create(capacity))
    }

    /// Creates a channel in a new named segment, and attaches as its
    /// receiver.
    #[staticmethod]
    fn create_named(py: Python<'_>, name: &str, capacity: usize) -> PyResult<Receiver> {
        Receiver::wrap(py, channel::Receiver::create_named(name, capacity))
    }

    /// Opens the named channel and attaches as its receiver.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Receiver> {
        let name = name.to_owned();
        let r = py.detach(move || channel::Receiver::open(&name));
        Receiver::wrap(py, r)
    }

    /// Opens the named channel if it exists, else creates it with a ring of
    /// at least `capacity` bytes; attaches as its receiver.
    #[staticmethod]
    fn open_or_create(py: Python<'_>, name: &str, capacity: usize) -> PyResult<Receiver> {
        let name = name.to_owned();
        let r = py.detach(move || channel::Receiver::open_or_create(&name, capacity));
        Receiver::wrap(py, r)
    }

    /// Attaches as the receiver of the channel in `segment` (one received
    /// from another process).
    #[staticmethod]
    fn attach(py: Python<'_>, segment: &Segment) -> PyResult<Receiver> {
        let seg = segment.handle(py)?;
        Receiver::wrap(py, channel::Receiver::attach(&seg))
    }

    /// Receives the next message, waiting up to `timeout` seconds (`None`:
    /// forever; the interpreter is released while waiting). Raises
    /// `Disconnected` once the sender is gone and everything it sent was
    /// received, `TimedOut` after `timeout`.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Message> {
        let k = self.recv_with(py, timeout, Receiver::keep)?;
        Ok(self.message(k))
    }

    /// The next message if there is one now, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Message>> {
        match self.recv(py, Some(0.0)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTimeoutError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives the next message as `bytes` (a copy; the message is
    /// released at once).
    #[pyo3(signature = (timeout=None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.recv_with(py, timeout, |_, g| g.to_vec())?;
        Ok(PyBytes::new(py, &v))
    }

    /// The segment the channel lives in (to share with the sender).
    #[getter]
    fn segment(&self) -> PyResult<Segment> {
        self.shared.segment()
    }

    /// The channel's name (`None` if anonymous).
    #[getter]
    fn name(&self) -> Option<String> {
        self.shared.name.clone()
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// Detaches: the sender sees `Disconnected` once it has nothing more
    /// to say. A message still lent (its buffer exported) makes this a
    /// `BufferError`. Closing twice is nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.close(py)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.shared.is_closed(py)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<memshare.Receiver: {}, {} bytes>",
            self.shared.what, self.capacity
        )
    }
}

/// A received message, in place in the channel's ring: a read-only
/// buffer (`memoryview(msg)`, `numpy.frombuffer(msg, dtype)`, `bytes(msg)`)
/// valid until the message is released (`release()`, the end of a `with`
/// block, the receiver's next `recv`, or the message going away). After
/// that, taking a buffer raises `BufferError` and `tobytes()` `ValueError`;
/// releasing while a buffer is exported raises `BufferError`.
#[pyclass(module = "memshare", frozen)]
pub struct Message {
    shared: Arc<RxShared>,
    id: u64,
    lent: Lent,
}

impl Message {
    fn release_impl(&self, _py: Python<'_>) -> PyResult<()> {
        if self.lent.flags.try_release(&self.lent.what)? {
            self.shared.release(self.id);
        }
        Ok(())
    }

    fn exit_impl(&self, py: Python<'_>, _ok: bool) -> PyResult<()> {
        self.release_impl(py)
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if self.lent.flags.force_release() {
            self.shared.release(self.id);
        }
    }
}

lender!(Message, "Message", {
    /// Gives the message's space back to the sender. `BufferError` if a
    /// buffer of it is still exported; releasing twice is nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }
});

/// The sending end of a channel.
///
/// `send(data)` copies a bytes-like object in; `reserve(n)` lends `n`
/// writable bytes in the ring to fill in place (zero-copy), then
/// `commit()` sends them.
#[pyclass(module = "memshare", frozen)]
pub struct Sender {
    shared: Arc<TxShared>,
    capacity: usize,
    max_message_len: usize,
}

impl Sender {
    fn wrap(py: Python<'_>, tx: memshare::Result<channel::Sender>) -> PyResult<Sender> {
        let tx = tx.py_err(py)?;
        let segment = tx.segment().clone();
        let (capacity, max_message_len) = (tx.capacity(), tx.max_message_len());
        Ok(Sender {
            shared: Shared::new(tx, describe("sender", &segment), segment),
            capacity,
            max_message_len,
        })
    }

    /// Refuses a call while a reservation is open; drops the guards of
    /// reservations already committed or discarded.
    fn check_idle(s: &mut State<channel::Sender, SendGuard<'static>>, what: &str) -> FResult<()> {
        if s.held.iter().any(|h| !h.flags.iter().all(|f| f.released())) {
            return Err(Fail::Py(PyValueError::new_err(format!(
                "{what}: a reservation is still open: commit() or discard() it first"
            ))));
        }
        s.held.clear();
        Ok(())
    }
}

#[pymethods]
impl Sender {
    /// Creates a channel in a new anonymous segment with a ring of at
    /// least `capacity` bytes, and attaches as its sender. Give
    /// `sender.segment` to the receiver.
    #[staticmethod]
    fn create(py: Python<'_>, capacity: usize) -> PyResult<Sender> {
        Sender::wrap(py, channel::Sender::create(capacity))
    }

    /// Creates a channel in a new named segment, and attaches as its sender.
    #[staticmethod]
    fn create_named(py: Python<'_>, name: &str, capacity: usize) -> PyResult<Sender> {
        Sender::wrap(py, channel::Sender::create_named(name, capacity))
    }

    /// Opens the named channel and attaches as its sender.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Sender> {
        let name = name.to_owned();
        let r = py.detach(move || channel::Sender::open(&name));
        Sender::wrap(py, r)
    }

    /// Opens the named channel if it exists, else creates it with a ring of
    /// at least `capacity` bytes; attaches as its sender.
    #[staticmethod]
    fn open_or_create(py: Python<'_>, name: &str, capacity: usize) -> PyResult<Sender> {
        let name = name.to_owned();
        let r = py.detach(move || channel::Sender::open_or_create(&name, capacity));
        Sender::wrap(py, r)
    }

    /// Attaches as the sender of the channel in `segment`.
    #[staticmethod]
    fn attach(py: Python<'_>, segment: &Segment) -> PyResult<Sender> {
        let seg = segment.handle(py)?;
        Sender::wrap(py, channel::Sender::attach(&seg))
    }

    /// Sends a copy of `data` (any bytes-like object), waiting up to
    /// `timeout` seconds for room (`None`: forever, the interpreter
    /// released). `TooLarge` if it can never fit, `Disconnected` if the
    /// receiver is gone.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: BytesIn, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        let data = &data;
        let put = |g: SendGuard<'_>| {
            let mut g = g;
            // SAFETY: the guard's slice is `data.len()` writable bytes of
            // the ring, the sender's alone until committed; `data` is
            // another object's memory (no overlap).
            unsafe { data.copy_to(g.as_mut_ptr()) };
            g.commit();
        };
        if data.len() <= BIG {
            let fast = self.shared.try_with(|s| -> FResult<bool> {
                Sender::check_idle(s, what)?;
                // SAFETY: under the lock, no reservation held
                // (`check_idle`); the guard is committed before unlocking.
                match unsafe { s.ep_mut(what)? }.try_reserve(data.len())? {
                    Some(g) => {
                        put(g);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            });
            match fast {
                Some(Ok(true)) => return Ok(()),
                Some(Err(e)) => return Err(e.into_py(py)),
                _ => {}
            }
        }
        self.shared.wait(py, timeout, |s, slice| {
            Sender::check_idle(s, what)?;
            // SAFETY: as above.
            let g = unsafe { s.ep_mut(what)? }.reserve_timeout(data.len(), slice)?;
            put(g);
            Ok(Some(()))
        })
    }

    /// Sends a copy of `data` if there is room now: `False` if the ring is
    /// full.
    fn try_send(&self, py: Python<'_>, data: BytesIn) -> PyResult<bool> {
        let what = &self.shared.what;
        let data = &data;
        let r = self.shared.with(py, |s| -> FResult<bool> {
            Sender::check_idle(s, what)?;
            // SAFETY: as in `send`.
            match unsafe { s.ep_mut(what)? }.try_reserve(data.len())? {
                Some(mut g) => {
                    // SAFETY: as in `send`.
                    unsafe { data.copy_to(g.as_mut_ptr()) };
                    g.commit();
                    Ok(true)
                }
                None => Ok(false),
            }
        });
        r.py_err(py)
    }

    /// Reserves `n` bytes in the ring, waiting up to `timeout` seconds for
    /// room: a `Reservation` that lends them writable (`memoryview(r)`,
    /// `numpy.frombuffer(r, dtype)`); fill them, then `commit()` (or use
    /// `with`: committed at the end of the block, discarded on an
    /// exception).
    #[pyo3(signature = (n, timeout=None))]
    fn reserve(&self, py: Python<'_>, n: usize, timeout: Option<f64>) -> PyResult<Reservation> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        // The sender is not used while a reservation is open (`check_idle`).
        let keep = |s: &mut State<channel::Sender, SendGuard<'static>>,
                    mut g: SendGuard<'static>| {
            let (ptr, len) = (g.as_mut_ptr(), g.len());
            let flags = Flags::new();
            let id = s.hold(g, vec![Arc::clone(&flags)]);
            (id, ptr as usize, len, flags)
        };
        let fast = self.shared.try_with(|s| -> FResult<Option<_>> {
            Sender::check_idle(s, what)?;
            // SAFETY: under the lock, no reservation held (`check_idle`);
            // the guard is stored in the state by `keep`.
            let g = unsafe { s.ep_mut(what)? }.try_reserve(n)?;
            Ok(g.map(|g| keep(s, g)))
        });
        let (id, ptr, len, flags) = match fast {
            Some(Ok(Some(k))) => k,
            Some(Err(e)) => return Err(e.into_py(py)),
            _ => self.shared.wait(py, timeout, |s, slice| {
                Sender::check_idle(s, what)?;
                // SAFETY: as above.
                let g = unsafe { s.ep_mut(what)? }.reserve_timeout(n, slice)?;
                Ok(Some(keep(s, g)))
            })?,
        };
        Ok(Reservation {
            shared: Arc::clone(&self.shared),
            id,
            lent: Lent {
                ptr,
                len,
                readonly: false,
                flags,
                what: format!("reservation of the {what}"),
            },
        })
    }

    /// The segment the channel lives in (to share with the receiver).
    #[getter]
    fn segment(&self) -> PyResult<Segment> {
        self.shared.segment()
    }

    /// The channel's name (`None` if anonymous).
    #[getter]
    fn name(&self) -> Option<String> {
        self.shared.name.clone()
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest message this channel carries.
    #[getter]
    fn max_message_len(&self) -> usize {
        self.max_message_len
    }

    /// Detaches: the receiver gets what was sent, then `Disconnected`. An
    /// open reservation is discarded (a `BufferError` if a buffer of it is
    /// exported). Closing twice is nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.close(py)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.shared.is_closed(py)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<memshare.Sender: {}, {} bytes>",
            self.shared.what, self.capacity
        )
    }
}

/// Space reserved in a channel's ring: a writable buffer of the reserved
/// length. `commit()` sends it; `discard()` (or the object going away)
/// sends nothing. Both are refused with `BufferError` while a buffer of it
/// is exported: `del` the numpy array (or release the memoryview) first.
/// As a context manager, it commits at the end of the block, or discards
/// if the block raised.
#[pyclass(module = "memshare", frozen)]
pub struct Reservation {
    shared: Arc<TxShared>,
    id: u64,
    lent: Lent,
}

impl Reservation {
    fn release_impl(&self, py: Python<'_>) -> PyResult<()> {
        if !self.lent.flags.try_release(&self.lent.what)? {
            return Err(PyValueError::new_err(format!(
                "{}: already committed or discarded",
                self.lent.what
            )));
        }
        let id = self.id;
        let done = self.shared.with(py, move |s| match s.take(id) {
            Some(h) => {
                h.guard.commit();
                true
            }
            None => false,
        });
        if !done {
            return Err(PyValueError::new_err(format!(
                "{}: the sender is closed: nothing was sent",
                self.lent.what
            )));
        }
        Ok(())
    }

    fn exit_impl(&self, py: Python<'_>, ok: bool) -> PyResult<()> {
        if ok {
            self.release_impl(py)
        } else {
            self.discard()
        }
    }

    fn discard(&self) -> PyResult<()> {
        if self.lent.flags.try_release(&self.lent.what)? {
            self.shared.release(self.id);
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.lent.flags.force_release() {
            self.shared.release(self.id);
        }
    }
}

lender!(Reservation, "Reservation", {
    /// Sends the reserved bytes: the receiver may see them from now on.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }

    /// Gives the space back unsent. Discarding twice is nothing.
    #[pyo3(name = "discard")]
    fn py_discard(&self) -> PyResult<()> {
        self.discard()
    }

    /// Copies `data` into the reserved bytes at `offset`.
    #[pyo3(signature = (data, offset=0))]
    fn write(&self, data: BytesIn, offset: usize) -> PyResult<()> {
        self.lent.write(offset, &data)
    }
});
