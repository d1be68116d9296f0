//! `memshare.Publisher` / `memshare.Subscriber`: publish-subscribe with
//! zero-copy loans and samples.

use std::sync::Arc;

use memshare::pubsub::{self, Loan as RsLoan, Overflow, Sample as RsSample, ServiceConfig};
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::buffer::{BytesIn, Flags, Lent};
use crate::errors::{FResult, Fail, IntoPyResult};
use crate::lend::lender;
use crate::segment::Segment;
use crate::shared::{timeout_arg, wait_for_service, Shared, State};

type PubShared = Shared<pubsub::Publisher, RsLoan<'static>>;
type SubShared = Shared<pubsub::Subscriber, RsSample<'static>>;

/// A service configuration from keyword arguments.
fn config(
    max_publishers: u32,
    max_subscribers: u32,
    max_message_len: u64,
    depth: u32,
    history: u32,
    max_held: u32,
    overflow: &str,
) -> PyResult<ServiceConfig> {
    let overflow = match overflow {
        "block" => Overflow::Block,
        "drop_oldest" => Overflow::DropOldest,
        other => {
            return Err(PyValueError::new_err(format!(
                "overflow must be \"block\" or \"drop_oldest\", not {other:?}"
            )))
        }
    };
    Ok(ServiceConfig::new()
        .max_publishers(max_publishers)
        .max_subscribers(max_subscribers)
        .max_message_len(max_message_len)
        .depth(depth)
        .history(history)
        .max_held(max_held)
        .overflow(overflow))
}

/// A configuration as a dict.
fn config_dict<'py>(py: Python<'py>, c: &ServiceConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("max_publishers", c.get_max_publishers())?;
    d.set_item("max_subscribers", c.get_max_subscribers())?;
    d.set_item("max_message_len", c.get_max_message_len())?;
    d.set_item("depth", c.get_depth())?;
    d.set_item("history", c.get_history())?;
    d.set_item("max_held", c.get_max_held())?;
    d.set_item(
        "overflow",
        match c.get_overflow() {
            Overflow::Block => "block",
            _ => "drop_oldest",
        },
    )?;
    Ok(d)
}

/// A publisher of a named service: `loan(n)` lends a writable buffer in
/// shared memory, `publish()` hands it to every subscriber, zero-copy;
/// `publish_copy(data)` copies bytes in.
#[pyclass(module = "memshare", frozen)]
pub struct Publisher {
    shared: Arc<PubShared>,
    config: ServiceConfig,
    id: u64,
}

impl Publisher {
    fn wrap(py: Python<'_>, p: memshare::Result<pubsub::Publisher>) -> PyResult<Publisher> {
        let p = p.py_err(py)?;
        let segment = p.segment().clone();
        let what = format!(
            "publisher of service {:?}",
            segment.name().unwrap_or_default()
        );
        Ok(Publisher {
            config: p.config(),
            id: p.id().0,
            shared: Shared::new(p, what, segment),
        })
    }

    /// Refuses a call while a loan is open; drops loans already published
    /// or discarded.
    fn check_idle(s: &mut State<pubsub::Publisher, RsLoan<'static>>, what: &str) -> FResult<()> {
        if s.held.iter().any(|h| !h.flags.iter().all(|f| f.released())) {
            return Err(Fail::Py(PyValueError::new_err(format!(
                "{what}: a loan is still open: publish() or discard() it first"
            ))));
        }
        s.held.clear();
        Ok(())
    }
}

#[pymethods]
impl Publisher {
    /// Creates the service `name` and attaches as its first publisher.
    /// `AlreadyExists` if the name is taken. The service lives while any
    /// publisher or subscriber holds it.
    #[staticmethod]
    #[pyo3(signature = (name, *, max_publishers=1, max_subscribers=8, max_message_len=4096, depth=16, history=0, max_held=2, overflow="drop_oldest"))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        name: &str,
        max_publishers: u32,
        max_subscribers: u32,
        max_message_len: u64,
        depth: u32,
        history: u32,
        max_held: u32,
        overflow: &str,
    ) -> PyResult<Publisher> {
        let c = config(
            max_publishers,
            max_subscribers,
            max_message_len,
            depth,
            history,
            max_held,
            overflow,
        )?;
        let name = name.to_owned();
        let r = py.detach(move || pubsub::Publisher::create(&name, c));
        Publisher::wrap(py, r)
    }

    /// Attaches as a publisher of the existing service `name`.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Publisher> {
        let name = name.to_owned();
        let r = py.detach(move || pubsub::Publisher::open(&name));
        Publisher::wrap(py, r)
    }

    /// Attaches to the service `name` if it exists (whatever its
    /// configuration), else creates it with this one.
    #[staticmethod]
    #[pyo3(signature = (name, *, max_publishers=1, max_subscribers=8, max_message_len=4096, depth=16, history=0, max_held=2, overflow="drop_oldest"))]
    #[allow(clippy::too_many_arguments)]
    fn open_or_create(
        py: Python<'_>,
        name: &str,
        max_publishers: u32,
        max_subscribers: u32,
        max_message_len: u64,
        depth: u32,
        history: u32,
        max_held: u32,
        overflow: &str,
    ) -> PyResult<Publisher> {
        let c = config(
            max_publishers,
            max_subscribers,
            max_message_len,
            depth,
            history,
            max_held,
            overflow,
        )?;
        let name = name.to_owned();
        let r = py.detach(move || pubsub::Publisher::open_or_create(&name, c));
        Publisher::wrap(py, r)
    }

    /// Lends a buffer of `n` bytes in shared memory (waiting up to
    /// `timeout` seconds under the "block" overflow policy): a `Loan`,
    /// writable; fill it, then `publish()` (or use `with`: published at the
    /// end of the block, discarded on an exception).
    #[pyo3(signature = (n, timeout=None))]
    fn loan(&self, py: Python<'_>, n: usize, timeout: Option<f64>) -> PyResult<Loan> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        let keep = |s: &mut State<pubsub::Publisher, RsLoan<'static>>, mut l: RsLoan<'static>| {
            let (ptr, len, seq) = (l.as_mut_ptr() as usize, l.len(), l.sequence());
            let flags = Flags::new();
            let id = s.hold(l, vec![Arc::clone(&flags)]);
            (id, ptr, len, flags, seq)
        };
        let fast = self.shared.try_with(|s| -> FResult<Option<_>> {
            Publisher::check_idle(s, what)?;
            // SAFETY: under the lock, no loan held (`check_idle`); the loan
            // is stored in the state by `keep`.
            let l = unsafe { s.ep_mut(what)? }.try_loan(n)?;
            Ok(l.map(|l| keep(s, l)))
        });
        let (id, ptr, len, flags, sequence) = match fast {
            Some(Ok(Some(k))) => k,
            Some(Err(e)) => return Err(e.into_py(py)),
            _ => self.shared.wait(py, timeout, |s, slice| {
                Publisher::check_idle(s, what)?;
                // SAFETY: as above.
                let l = unsafe { s.ep_mut(what)? }.loan_timeout(n, slice)?;
                Ok(Some(keep(s, l)))
            })?,
        };
        Ok(Loan {
            shared: Arc::clone(&self.shared),
            id,
            sequence,
            lent: Lent {
                ptr,
                len,
                readonly: false,
                flags,
                what: format!("loan of the {what}"),
            },
        })
    }

    /// Publishes a copy of `data` (bytes-like), waiting up to `timeout`
    /// seconds under the "block" overflow policy.
    #[pyo3(signature = (data, timeout=None))]
    fn publish_copy(&self, py: Python<'_>, data: BytesIn, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        let data = &data;
        let put = |mut l: RsLoan<'_>| {
            // SAFETY: the loan is `data.len()` writable bytes of the
            // publisher's pool, its alone until published; `data` is
            // another object's memory.
            unsafe { data.copy_to(l.as_mut_ptr()) };
            l.publish();
        };
        let fast = self.shared.try_with(|s| -> FResult<bool> {
            Publisher::check_idle(s, what)?;
            // SAFETY: under the lock, no loan held; published before unlocking.
            match unsafe { s.ep_mut(what)? }.try_loan(data.len())? {
                Some(l) => {
                    put(l);
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
        self.shared.wait(py, timeout, |s, slice| {
            Publisher::check_idle(s, what)?;
            // SAFETY: as above.
            let l = unsafe { s.ep_mut(what)? }.loan_timeout(data.len(), slice)?;
            put(l);
            Ok(Some(()))
        })
    }

    /// Publishes a copy of `data` if there is room now: `False` if a
    /// subscriber's queue is full ("block" policy).
    fn try_publish_copy(&self, py: Python<'_>, data: BytesIn) -> PyResult<bool> {
        let what = &self.shared.what;
        let data = &data;
        self.shared
            .with(py, |s| -> FResult<bool> {
                Publisher::check_idle(s, what)?;
                // SAFETY: as in `publish_copy`.
                match unsafe { s.ep_mut(what)? }.try_loan(data.len())? {
                    Some(mut l) => {
                        // SAFETY: as in `publish_copy`.
                        unsafe { data.copy_to(l.as_mut_ptr()) };
                        l.publish();
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .py_err(py)
    }

    /// This publisher's id (drawn at random when it attached), as samples
    /// report it (`Sample.publisher`).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// The sequence number the next message will have.
    #[getter]
    fn next_sequence(&self, py: Python<'_>) -> PyResult<u64> {
        let what = &self.shared.what;
        self.shared
            .with(py, |s| -> FResult<u64> {
                Publisher::check_idle(s, what)?;
                // SAFETY: under the lock, no loan held.
                Ok(unsafe { s.ep(what)? }.next_sequence())
            })
            .py_err(py)
    }

    /// The service's configuration (a dict).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, &self.config)
    }

    /// The service's segment.
    #[getter]
    fn segment(&self) -> PyResult<Segment> {
        self.shared.segment()
    }

    /// The service's name.
    #[getter]
    fn name(&self) -> Option<String> {
        self.shared.name.clone()
    }

    /// Detaches (subscribers get what was published, then `Disconnected`
    /// once no publisher is left). An open loan is discarded (`BufferError`
    /// if a buffer of it is exported). Closing twice is nothing.
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
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<memshare.Publisher: {}>", self.shared.what)
    }
}

/// A buffer lent by `Publisher.loan(n)`: writable; `publish()` hands it to
/// every subscriber, `discard()` (or the object going away) gives it back.
/// Both are refused with `BufferError` while a buffer of it is exported.
/// As a context manager it publishes at the end of the block, or discards
/// if the block raised.
#[pyclass(module = "memshare", frozen)]
pub struct Loan {
    shared: Arc<PubShared>,
    id: u64,
    sequence: u64,
    lent: Lent,
}

impl Loan {
    fn release_impl(&self, py: Python<'_>) -> PyResult<()> {
        if !self.lent.flags.try_release(&self.lent.what)? {
            return Err(PyValueError::new_err(format!(
                "{}: already published or discarded",
                self.lent.what
            )));
        }
        let id = self.id;
        let done = self.shared.with(py, move |s| match s.take(id) {
            Some(h) => {
                h.guard.publish();
                true
            }
            None => false,
        });
        if !done {
            return Err(PyValueError::new_err(format!(
                "{}: the publisher is closed: nothing was published",
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

impl Drop for Loan {
    fn drop(&mut self) {
        if self.lent.flags.force_release() {
            self.shared.release(self.id);
        }
    }
}

lender!(Loan, "Loan", {
    /// Publishes the message to every subscriber (zero-copy: they read it
    /// in place).
    fn publish(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }

    /// Gives the buffer back unpublished. Discarding twice is nothing.
    #[pyo3(name = "discard")]
    fn py_discard(&self) -> PyResult<()> {
        self.discard()
    }

    /// The sequence number this message will have.
    #[getter]
    fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Copies `data` into the loan at `offset`.
    #[pyo3(signature = (data, offset=0))]
    fn write(&self, data: BytesIn, offset: usize) -> PyResult<()> {
        self.lent.write(offset, &data)
    }
});

/// A subscriber of a named service: each message of every publisher, in
/// place in shared memory (`recv()` gives a `Sample`). Several samples may
/// be held at once, up to the service's `max_held`.
#[pyclass(module = "memshare", frozen)]
pub struct Subscriber {
    shared: Arc<SubShared>,
    config: ServiceConfig,
}

impl Subscriber {
    fn wrap(py: Python<'_>, s: memshare::Result<pubsub::Subscriber>) -> PyResult<Subscriber> {
        let s = s.py_err(py)?;
        let segment = s.segment().clone();
        let what = format!(
            "subscriber of service {:?}",
            segment.name().unwrap_or_default()
        );
        Ok(Subscriber {
            config: s.config(),
            shared: Shared::new(s, what, segment),
        })
    }

    fn sample(&self, k: (u64, usize, usize, Arc<Flags>, u64, u64)) -> Sample {
        let (id, ptr, len, flags, publisher, sequence) = k;
        Sample {
            shared: Arc::clone(&self.shared),
            id,
            publisher,
            sequence,
            lent: Lent {
                ptr,
                len,
                readonly: true,
                flags,
                what: format!("sample {sequence} from the {}", self.shared.what),
            },
        }
    }
}

/// Keeps a sample for a Python `Sample`.
fn keep_sample(
    s: &mut State<pubsub::Subscriber, RsSample<'static>>,
    g: RsSample<'static>,
) -> (u64, usize, usize, Arc<Flags>, u64, u64) {
    let (ptr, len) = (g.as_ptr() as usize, g.len());
    let (publisher, sequence) = (g.publisher().0, g.sequence());
    let flags = Flags::new();
    let id = s.hold(g, vec![Arc::clone(&flags)]);
    (id, ptr, len, flags, publisher, sequence)
}

#[pymethods]
impl Subscriber {
    /// Attaches as a subscriber of the service `name` (`NotFound` if there
    /// is none). A new subscriber gets the service's `history` first.
    #[staticmethod]
    fn open(py: Python<'_>, name: &str) -> PyResult<Subscriber> {
        let name = name.to_owned();
        let r = py.detach(move || pubsub::Subscriber::open(&name));
        Subscriber::wrap(py, r)
    }

    /// Like `open`, but waits up to `timeout` seconds for the service to
    /// appear (`TimedOut` after that), the interpreter released; Ctrl-C
    /// interrupts the wait.
    #[staticmethod]
    fn open_timeout(py: Python<'_>, name: &str, timeout: f64) -> PyResult<Subscriber> {
        let t = timeout_arg(Some(timeout))?;
        let s = wait_for_service(py, t, &format!("service {name:?}"), |slice| {
            pubsub::Subscriber::open_timeout(name, slice)
        })?;
        Subscriber::wrap(py, Ok(s))
    }

    /// Receives the next message, waiting up to `timeout` seconds (`None`:
    /// forever, the interpreter released): a `Sample`. `Disconnected` once
    /// every publisher is gone and everything was received; `LimitReached`
    /// if `max_held` samples are held (release one).
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        let fast = self.shared.try_with(|s| -> FResult<Option<_>> {
            // SAFETY: under the lock; samples hold shared references only;
            // a sample is stored in the state before unlocking.
            let sub = unsafe { s.ep(what)? };
            Ok(sub.try_recv()?.map(|g| keep_sample(s, g)))
        });
        let k = match fast {
            Some(Ok(Some(k))) => k,
            Some(Err(e)) => return Err(e.into_py(py)),
            Some(Ok(None)) if timeout == Some(std::time::Duration::ZERO) => {
                return Err(Fail::Ms(memshare::Error::TimedOut {
                    object: what.clone(),
                    op: "receive",
                })
                .into_py(py))
            }
            _ => self.shared.wait(py, timeout, |s, slice| {
                // SAFETY: as above.
                let sub = unsafe { s.ep(what)? };
                let g = sub.recv_timeout(slice)?;
                Ok(Some(keep_sample(s, g)))
            })?,
        };
        Ok(self.sample(k))
    }

    /// The next message if there is one now, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Sample>> {
        match self.recv(py, Some(0.0)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_instance_of::<PyTimeoutError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives the next message as `bytes` (a copy; released at once).
    #[pyo3(signature = (timeout=None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let sample = self.recv(py, timeout)?;
        let v = sample.lent.to_vec()?;
        drop(sample);
        Ok(PyBytes::new(py, &v))
    }

    /// How many messages this subscriber lost by falling more than `depth`
    /// behind ("drop_oldest" policy).
    #[getter]
    fn missed(&self, py: Python<'_>) -> PyResult<u64> {
        let what = &self.shared.what;
        self.shared
            .with(py, |s| -> FResult<u64> {
                // SAFETY: under the lock; shared access only.
                Ok(unsafe { s.ep(what)? }.missed())
            })
            .py_err(py)
    }

    /// How many messages this subscriber received.
    #[getter]
    fn received(&self, py: Python<'_>) -> PyResult<u64> {
        let what = &self.shared.what;
        self.shared
            .with(py, |s| -> FResult<u64> {
                // SAFETY: under the lock; shared access only.
                Ok(unsafe { s.ep(what)? }.received())
            })
            .py_err(py)
    }

    /// The service's configuration (a dict).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, &self.config)
    }

    /// The service's segment.
    #[getter]
    fn segment(&self) -> PyResult<Segment> {
        self.shared.segment()
    }

    /// The service's name.
    #[getter]
    fn name(&self) -> Option<String> {
        self.shared.name.clone()
    }

    /// Detaches. Held samples are released (`BufferError` if a buffer of
    /// one is exported). Closing twice is nothing.
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
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<memshare.Subscriber: {}>", self.shared.what)
    }
}

/// A received message, in place in the publisher's buffer: a read-only
/// buffer valid until released (`release()`, the end of a `with` block, or
/// the object going away; refused with `BufferError` while a buffer of it
/// is exported). No publisher reuses the buffer meanwhile.
#[pyclass(module = "memshare", frozen)]
pub struct Sample {
    shared: Arc<SubShared>,
    id: u64,
    publisher: u64,
    sequence: u64,
    lent: Lent,
}

impl Sample {
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

impl Drop for Sample {
    fn drop(&mut self) {
        if self.lent.flags.force_release() {
            self.shared.release(self.id);
        }
    }
}

lender!(Sample, "Sample", {
    /// Gives the buffer back. `BufferError` while a buffer of it is
    /// exported; releasing twice is nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }

    /// The id of the publisher that published it (`Publisher.id`).
    #[getter]
    fn publisher(&self) -> u64 {
        self.publisher
    }

    /// Its sequence number: its publisher's count of messages before it.
    #[getter]
    fn sequence(&self) -> u64 {
        self.sequence
    }
});
