//! `memshare.Server` / `memshare.Client`: request/response, zero-copy both
//! ways.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memshare::rpc::{
    self, Request as RsRequest, Response as RsResponse, ResponseLoan as RsLoan, ServerConfig,
};
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::buffer::{BytesIn, Flags, Lent};
use crate::errors::{FResult, Fail, IntoPyResult};
use crate::lend::lender;
use crate::segment::Segment;
use crate::shared::{closed, timeout_arg, wait_for_service, Held, Shared, State};

/// What the server holds for a Python `Request`: the request, or the
/// response being written in place for it.
pub(crate) enum Owed {
    Request(RsRequest<'static>),
    Loan(RsLoan<'static>),
}

type ServerShared = Shared<rpc::Server, Owed>;
type ClientShared = Shared<rpc::Client, RsResponse<'static>>;

fn config_dict<'py>(py: Python<'py>, c: &ServerConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("max_clients", c.get_max_clients())?;
    d.set_item("max_in_flight", c.get_max_in_flight())?;
    d.set_item("max_request_len", c.get_max_request_len())?;
    d.set_item("max_response_len", c.get_max_response_len())?;
    Ok(d)
}

/// The server of a request/response service: `recv()` gives each request
/// in place (a `Request`), answered with `respond(data)` or zero-copy with
/// `loan_response(n)`, in any order. A request dropped unanswered is
/// declined (the client gets `NoResponse`).
#[pyclass(module = "memshare", frozen)]
pub struct Server {
    shared: Arc<ServerShared>,
    config: ServerConfig,
}

/// A request kept for Python: id, where, flags, client, request id.
type KeptRequest = (u64, usize, usize, Arc<Flags>, (u32, u64), u64);

fn keep_request(s: &mut State<rpc::Server, Owed>, r: RsRequest<'static>) -> KeptRequest {
    let (ptr, len) = (r.as_ptr() as usize, r.len());
    let client = (r.client().slot(), r.client().instance());
    let rid = r.id();
    let flags = Flags::new();
    let id = s.hold(Owed::Request(r), vec![Arc::clone(&flags)]);
    (id, ptr, len, flags, client, rid)
}

#[pymethods]
impl Server {
    /// Creates the service `name` and attaches as its server (a service
    /// whose server died is retired and replaced). `AlreadyAttached` if a
    /// live server serves the name.
    #[staticmethod]
    #[pyo3(signature = (name, *, max_clients=16, max_in_flight=8, max_request_len=4096, max_response_len=4096))]
    fn create(
        py: Python<'_>,
        name: &str,
        max_clients: u32,
        max_in_flight: u32,
        max_request_len: u64,
        max_response_len: u64,
    ) -> PyResult<Server> {
        let c = ServerConfig::new()
            .max_clients(max_clients)
            .max_in_flight(max_in_flight)
            .max_request_len(max_request_len)
            .max_response_len(max_response_len);
        let name = name.to_owned();
        let server = py
            .detach(move || rpc::Server::create(&name, c))
            .py_err(py)?;
        let segment = server.segment().clone();
        let what = format!("server of service {:?}", segment.name().unwrap_or_default());
        Ok(Server {
            config: server.config(),
            shared: Shared::new(server, what, segment),
        })
    }

    /// The next request from any client, waiting up to `timeout` seconds
    /// (`None`: forever, the interpreter released).
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Request> {
        let timeout = timeout_arg(timeout)?;
        let what = &self.shared.what;
        let fast = self.shared.try_with(|s| -> FResult<Option<KeptRequest>> {
            // SAFETY: under the lock; requests hold shared references only;
            // stored in the state before unlocking.
            let server = unsafe { s.ep(what)? };
            Ok(server.try_recv()?.map(|r| keep_request(s, r)))
        });
        let k = match fast {
            Some(Ok(Some(k))) => k,
            Some(Err(e)) => return Err(e.into_py(py)),
            Some(Ok(None)) if timeout == Some(Duration::ZERO) => {
                return Err(Fail::Ms(memshare::Error::TimedOut {
                    object: what.clone(),
                    op: "receive",
                })
                .into_py(py))
            }
            _ => self.shared.wait(py, timeout, |s, slice| {
                // SAFETY: as above.
                let server = unsafe { s.ep(what)? };
                let r = server.recv_timeout(slice)?;
                Ok(Some(keep_request(s, r)))
            })?,
        };
        let (id, ptr, len, flags, client, rid) = k;
        Ok(Request {
            shared: Arc::clone(&self.shared),
            id,
            client,
            request_id: rid,
            max_response_len: usize::try_from(self.config.get_max_response_len())
                .unwrap_or(usize::MAX),
            stage: AtomicU8::new(OPEN),
            lent: Lent {
                ptr,
                len,
                readonly: true,
                flags,
                what: format!("request {rid} to the {what}"),
            },
        })
    }

    /// The next request if one is waiting, else `None`.
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Request>> {
        match self.recv(py, Some(0.0)) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_instance_of::<PyTimeoutError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The clients connected now: a list of dicts (`slot`, `instance`,
    /// `pid`, `owed`, `served`, `evicted`).
    fn clients<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let what = &self.shared.what;
        let list = self
            .shared
            .with(py, |s| -> FResult<Vec<rpc::ClientInfo>> {
                // SAFETY: under the lock; shared access only.
                Ok(unsafe { s.ep(what)? }.clients()?)
            })
            .py_err(py)?;
        let out = PyList::empty(py);
        for c in list {
            let d = PyDict::new(py);
            d.set_item("slot", c.id.slot())?;
            d.set_item("instance", c.id.instance())?;
            d.set_item("pid", c.pid)?;
            d.set_item("owed", c.owed)?;
            d.set_item("served", c.served)?;
            d.set_item("evicted", c.evicted)?;
            out.append(d)?;
        }
        Ok(out)
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

    /// Stops serving: pending calls get `Disconnected`; requests held are
    /// declined (`BufferError` if a buffer of one is exported). Closing
    /// twice is nothing.
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
        format!("<memshare.Server: {}>", self.shared.what)
    }
}

/// A request taken by `Server.recv()`: its bytes in place (a read-only
/// buffer), who sent it (`client`: slot and instance) and its `id`. Answer
/// with `respond(data)` or `loan_response(n)`; `decline()` (or the object
/// going away unanswered) makes the client's call fail with `NoResponse`.
/// As a context manager, a request still unanswered at the end of the
/// block is declined. The buffer stays valid until the response is sent.
///
/// Once its response is on loan (`loan_response(n)`), the `ResponseLoan`
/// answers it: `respond()` and `decline()` raise `ValueError` while the
/// loan lives, the end of a `with` block of the request leaves it alone,
/// and the loan keeps this object alive. A loan dropped unsent declines
/// the request, or, if a buffer of the request is still exported, leaves
/// that to `decline()` or to this object going away.
#[pyclass(module = "memshare", frozen)]
pub struct Request {
    shared: Arc<ServerShared>,
    id: u64,
    client: (u32, u64),
    request_id: u64,
    /// The service's `max_response_len` (checked before the request is
    /// touched: see `too_large`).
    max_response_len: usize,
    /// Where the answer is (`OPEN`...), beside the flags: the flags say
    /// whether the request's memory is gone, this who may end it.
    stage: AtomicU8,
    lent: Lent,
}

/// Unanswered (the guard is `Owed::Request`).
const OPEN: u8 = 0;
/// A live `ResponseLoan` answers the request (the guard is `Owed::Loan`).
const ON_LOAN: u8 = 1;
/// Its loan went unsent while a buffer of the request was exported: only
/// declining is left (the guard is still `Owed::Loan`).
const LOAN_DROPPED: u8 = 2;
/// Answered or declined (or being, by the call that set it).
const DONE: u8 = 3;

/// The outcome of [`Request::claim`].
enum Claim {
    /// The caller moved the stage from this one, and goes on (or puts it
    /// back).
    Claimed(u8),
    /// Answered or declined already.
    Answered,
}

impl Request {
    /// Moves the stage to `next` for the caller, from `OPEN` (or from
    /// `LOAN_DROPPED` too, to decline). `ValueError` while the response is
    /// on loan, or for `respond`/`loan_response` after a loan went unsent.
    fn claim(&self, next: u8, to_decline: bool) -> PyResult<Claim> {
        let mut cur = self.stage.load(Ordering::Acquire);
        loop {
            if !(cur == OPEN || (to_decline && cur == LOAN_DROPPED)) {
                return match cur {
                    // Released by the server's close, or by the loan.
                    _ if self.lent.flags.released() => Ok(Claim::Answered),
                    ON_LOAN => Err(self.on_loan()),
                    LOAN_DROPPED => Err(PyValueError::new_err(format!(
                        "{}: a response loaned for it was dropped unsent: decline() it",
                        self.lent.what
                    ))),
                    _ => Ok(Claim::Answered),
                };
            }
            match self
                .stage
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(Claim::Claimed(cur)),
                Err(now) => cur = now,
            }
        }
    }

    /// The error for answering a request whose response is on loan.
    fn on_loan(&self) -> PyErr {
        PyValueError::new_err(format!(
            "{}: its response is on loan (loan_response): send() or discard() the ResponseLoan",
            self.lent.what
        ))
    }

    /// `TooLarge` if a response of `n` bytes does not fit. Checked before
    /// anything is done: the request is left as it was (the Rust
    /// `Request::loan_response`, which takes the request, declines it).
    fn too_large(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        if n <= self.max_response_len {
            return Ok(());
        }
        Err(Fail::Ms(memshare::Error::TooLarge {
            object: format!(
                "service {:?}",
                self.shared.name.as_deref().unwrap_or("(anonymous)")
            ),
            len: n,
            max: self.max_response_len,
        })
        .into_py(py))
    }

    fn exit_impl(&self, _py: Python<'_>, _ok: bool) -> PyResult<()> {
        if self.stage.load(Ordering::Acquire) == ON_LOAN {
            return Ok(()); // the loan answers it
        }
        self.decline()
    }

    fn decline(&self) -> PyResult<()> {
        let Claim::Claimed(before) = self.claim(DONE, true)? else {
            return Ok(());
        };
        match self.lent.flags.try_release(&self.lent.what) {
            Ok(true) => self.shared.release(self.id),
            Ok(false) => {} // released by the server's close
            Err(e) => {
                self.stage.store(before, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // A loan keeps its request alive: none lives now, and the guard
        // (whatever it is) is this object's to decline.
        if self.lent.flags.force_release() {
            self.shared.release(self.id);
        }
    }
}

lender!(Request, "Request", {
    /// Answers with a copy of `data` (bytes-like). `TooLarge` if it is
    /// longer than `max_response_len`, looked at first (the request is
    /// left as it was: answer it otherwise or decline it); `ValueError` if
    /// it was answered
    /// or declined, or while its response is on loan; `BufferError` while a
    /// buffer of it is exported.
    fn respond(&self, py: Python<'_>, data: BytesIn) -> PyResult<()> {
        self.too_large(py, data.len())?;
        let Claim::Claimed(before) = self.claim(DONE, false)? else {
            return Err(PyValueError::new_err(format!(
                "{}: already answered or declined",
                self.lent.what
            )));
        };
        match self.lent.flags.try_release(&self.lent.what) {
            Ok(true) => {}
            Ok(false) => return Err(closed(&self.shared.what).into_py(py)),
            Err(e) => {
                self.stage.store(before, Ordering::Release);
                return Err(e);
            }
        }
        let id = self.id;
        let what = &self.shared.what;
        let data = &data;
        self.shared
            .with(py, move |s| -> FResult<()> {
                match s.take(id).map(|h| h.guard) {
                    Some(Owed::Request(r)) => {
                        let mut out = r.loan_response(data.len())?;
                        // SAFETY: the loan is `data.len()` writable bytes of
                        // the slot's response buffer; `data` is another
                        // object's memory.
                        unsafe { data.copy_to(out.as_mut_ptr()) };
                        Ok(out.send()?)
                    }
                    // The stage was OPEN: no loan was made.
                    Some(Owed::Loan(_)) | None => Err(closed(what)),
                }
            })
            .py_err(py)
    }

    /// Lends `n` bytes of the response buffer to write the response in
    /// place: a `ResponseLoan` (writable); `send()` answers. The request's
    /// own buffer stays valid until then (compute one from the other).
    /// `TooLarge` if `n` is more than `max_response_len` (the request is
    /// left unanswered); `ValueError` if it was answered or declined, or
    /// its response is on loan already.
    fn loan_response(slf: &Bound<'_, Self>, n: usize) -> PyResult<ResponseLoan> {
        let py = slf.py();
        let this = slf.get();
        this.too_large(py, n)?;
        if let Claim::Answered = this.claim(ON_LOAN, false)? {
            this.lent.check()?;
            return Err(PyValueError::new_err(format!(
                "{}: already answered or declined",
                this.lent.what
            )));
        }
        let id = this.id;
        let flags = Flags::new();
        let loan_flags = Arc::clone(&flags);
        let what = this.shared.what.clone();
        let r = this.shared.with(py, move |s| -> FResult<(usize, usize)> {
            // The stage was OPEN: the guard is the request (or gone with
            // the server's close).
            let (mut flags, r) = match s.take(id) {
                Some(Held {
                    flags,
                    guard: Owed::Request(r),
                    ..
                }) => (flags, r),
                Some(h) => {
                    s.put_back(h);
                    return Err(Fail::Py(PyValueError::new_err(
                        "a response was loaned for this request already",
                    )));
                }
                None => return Err(closed(&what)),
            };
            // The library's only check is the length, done above (so that
            // a failure leaves the request as it was, which the library,
            // taking the request, cannot).
            let mut l = r
                .loan_response(n)
                .expect("n <= max_response_len, checked above");
            let (ptr, len) = (l.as_mut_ptr() as usize, l.len());
            flags.push(loan_flags);
            s.put_back(Held {
                id,
                flags,
                guard: Owed::Loan(l),
            });
            Ok((ptr, len))
        });
        let (ptr, len) = match r {
            Ok(v) => v,
            Err(e) => {
                // Closed (the request is gone); or the guard was a loan
                // already, which no loan object owns: as after a loan
                // dropped unsent.
                let back = if this.lent.flags.released() {
                    DONE
                } else {
                    LOAN_DROPPED
                };
                this.stage.store(back, Ordering::Release);
                return Err(e.into_py(py));
            }
        };
        Ok(ResponseLoan {
            shared: Arc::clone(&this.shared),
            id,
            request: slf.clone().unbind(),
            lent: Lent {
                ptr,
                len,
                readonly: false,
                flags,
                what: format!("response to {}", this.lent.what),
            },
        })
    }

    /// Declines the request: the client gets `NoResponse`. `BufferError`
    /// while a buffer of it is exported, `ValueError` while its response is
    /// on loan (`ResponseLoan.discard()` declines then); declining twice, or
    /// an answered request, is nothing.
    #[pyo3(name = "decline")]
    fn py_decline(&self) -> PyResult<()> {
        self.decline()
    }

    /// The client that sent it: `(slot, instance)`.
    #[getter]
    fn client(&self) -> (u32, u64) {
        self.client
    }

    /// The request's id, as the client's `Pending.id` knows it.
    #[getter]
    #[allow(clippy::misnamed_getters)] // `id` is the guard's; this is the request's
    fn id(&self) -> u64 {
        self.request_id
    }
});

/// A response being written in place (`Request.loan_response(n)`): a
/// writable buffer; `send()` answers the request, `discard()` declines it.
/// Both are refused with `BufferError` while a buffer of it or of its
/// request is exported. The loan answers the request whatever becomes of
/// the `Request` object (it keeps it alive). Gone unsent, it declines the
/// request, unless a buffer of the request is still exported: the request
/// is declined when that `Request` is (`decline()`, or its going away). As
/// a context manager it sends at the end of the block, or discards if the
/// block raised.
#[pyclass(module = "memshare", frozen)]
pub struct ResponseLoan {
    shared: Arc<ServerShared>,
    id: u64,
    /// The request answered: alive as long as the loan, so that only the
    /// loan ends the guard while it lives.
    request: Py<Request>,
    lent: Lent,
}

impl ResponseLoan {
    /// Marks both the response's and the request's memory released
    /// (refused while either is exported). False if already.
    fn mark(&self) -> PyResult<bool> {
        let request = self.request.get();
        // Held throughout, so that no buffer of the request is taken
        // between the look and the release.
        let mut r = request.lent.flags.lock();
        if r.exports > 0 && !r.released {
            return Err(crate::buffer::exported(
                &format!("the request behind {}", self.lent.what),
                r.exports,
            ));
        }
        let first = self.lent.flags.try_release(&self.lent.what)?;
        r.released = true;
        drop(r);
        request.stage.store(DONE, Ordering::Release);
        Ok(first)
    }

    fn release_impl(&self, py: Python<'_>) -> PyResult<()> {
        if !self.mark()? {
            return Err(PyValueError::new_err(format!(
                "{}: already sent or discarded",
                self.lent.what
            )));
        }
        let id = self.id;
        self.shared
            .with(py, move |s| -> FResult<()> {
                match s.take(id).map(|h| h.guard) {
                    Some(Owed::Loan(l)) => Ok(l.send()?),
                    _ => Err(Fail::Py(PyValueError::new_err("the server is closed"))),
                }
            })
            .py_err(py)
    }

    fn exit_impl(&self, py: Python<'_>, ok: bool) -> PyResult<()> {
        if ok {
            self.release_impl(py)
        } else {
            self.discard()
        }
    }

    fn discard(&self) -> PyResult<()> {
        if self.mark()? {
            self.shared.release(self.id);
        }
        Ok(())
    }
}

impl Drop for ResponseLoan {
    fn drop(&mut self) {
        if !self.lent.flags.force_release() {
            return; // sent or discarded
        }
        let request = self.request.get();
        let declined = {
            let mut f = request.lent.flags.lock();
            let now = !f.released && f.exports == 0;
            f.released |= now;
            now
        };
        if declined {
            request.stage.store(DONE, Ordering::Release);
            self.shared.release(self.id);
        } else if !request.lent.flags.released() {
            // A buffer of the request is exported: its memory must stay,
            // so the request is declined when its object is (`decline()`,
            // or going away, which the buffer delays).
            request.stage.store(LOAN_DROPPED, Ordering::Release);
        }
    }
}

lender!(ResponseLoan, "ResponseLoan", {
    /// Sends the response to the client.
    fn send(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }

    /// Declines the request instead (the client gets `NoResponse`).
    #[pyo3(name = "discard")]
    fn py_discard(&self) -> PyResult<()> {
        self.discard()
    }

    /// Copies `data` into the response at `offset`.
    #[pyo3(signature = (data, offset=0))]
    fn write(&self, data: BytesIn, offset: usize) -> PyResult<()> {
        self.lent.write(offset, &data)
    }
});

/// A client of a request/response service: `call(data)` sends a request
/// and waits for its response (a `Response`, in place); `send_request` /
/// `receive_response` pipeline several.
///
/// A `Response` is valid until released (`release()`, a `with` block, the
/// object going away, or the client's next call, which releases it first:
/// `BufferError` then if a buffer of it is still exported).
#[pyclass(module = "memshare", frozen)]
pub struct Client {
    shared: Arc<ClientShared>,
    config: ServerConfig,
    id: (u32, u64),
}

impl Client {
    fn wrap(py: Python<'_>, c: memshare::Result<rpc::Client>) -> PyResult<Client> {
        let c = c.py_err(py)?;
        let segment = c.segment().clone();
        let what = format!("client of service {:?}", segment.name().unwrap_or_default());
        Ok(Client {
            config: c.config(),
            id: (c.id().slot(), c.id().instance()),
            shared: Shared::new(c, what, segment),
        })
    }

    fn response(&self, k: (u64, usize, usize, Arc<Flags>)) -> Response {
        let (id, ptr, len, flags) = k;
        Response {
            shared: Arc::clone(&self.shared),
            id,
            lent: Lent {
                ptr,
                len,
                readonly: true,
                flags,
                what: format!("response to the {}", self.shared.what),
            },
        }
    }

    /// Waits up to `timeout` for the response to `pending`, in slices.
    fn receive(
        &self,
        py: Python<'_>,
        pending: &Mutex<Option<rpc::Pending>>,
        timeout: Option<Duration>,
    ) -> PyResult<Response> {
        let what = &self.shared.what;
        let k = self.shared.wait(py, timeout, |s, slice| {
            s.release_all(what)?;
            let p = pending.lock().unwrap_or_else(|e| e.into_inner());
            let Some(p) = p.as_ref() else {
                return Err(Fail::Py(PyValueError::new_err(
                    "this request's response was received already",
                )));
            };
            // SAFETY: under the lock, no response held (released above);
            // the response is stored in the state before unlocking.
            let c = unsafe { s.ep_mut(what)? };
            let r = if slice.is_zero() {
                match c.try_receive_response(p)? {
                    Some(r) => r,
                    None => {
                        return Err(Fail::Ms(memshare::Error::TimedOut {
                            object: what.clone(),
                            op: "receive the response",
                        }))
                    }
                }
            } else {
                c.receive_response_timeout(p, slice)?
            };
            Ok(Some(keep_response(s, r)))
        })?;
        Ok(self.response(k))
    }
}

fn keep_response(
    s: &mut State<rpc::Client, RsResponse<'static>>,
    r: RsResponse<'static>,
) -> (u64, usize, usize, Arc<Flags>) {
    let (ptr, len) = (r.as_ptr() as usize, r.len());
    let flags = Flags::new();
    let id = s.hold(r, vec![Arc::clone(&flags)]);
    (id, ptr, len, flags)
}

#[pymethods]
impl Client {
    /// Connects to the service `name`. `NotFound` if there is none,
    /// `Disconnected` if its server is gone, `LimitReached` if it has its
    /// `max_clients`.
    #[staticmethod]
    fn connect(py: Python<'_>, name: &str) -> PyResult<Client> {
        let name = name.to_owned();
        let r = py.detach(move || rpc::Client::connect(&name));
        Client::wrap(py, r)
    }

    /// Like `connect`, but waits up to `timeout` seconds for a server
    /// (`TimedOut` after that), the interpreter released; Ctrl-C
    /// interrupts the wait.
    #[staticmethod]
    fn connect_timeout(py: Python<'_>, name: &str, timeout: f64) -> PyResult<Client> {
        let t = timeout_arg(Some(timeout))?;
        let c = wait_for_service(py, t, &format!("service {name:?}"), |slice| {
            rpc::Client::connect_timeout(name, slice)
        })?;
        Client::wrap(py, Ok(c))
    }

    /// Sends `data` (bytes-like) and waits up to `timeout` seconds for the
    /// response (`None`: forever, the interpreter released): a `Response`.
    /// `NoResponse` if the server declined, `Disconnected` if it is gone,
    /// `TimedOut` (the late response is discarded when it comes).
    #[pyo3(signature = (data, timeout=None))]
    fn call(&self, py: Python<'_>, data: BytesIn, timeout: Option<f64>) -> PyResult<Response> {
        let timeout = timeout_arg(timeout)?;
        let start = Instant::now();
        let pending = Mutex::new(Some(self.send_pending(py, &data)?));
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        self.receive(py, &pending, left)
    }

    /// Sends `data` without waiting: a `Pending` to give to
    /// `receive_response`. Up to the service's `max_in_flight` may be in
    /// flight (`LimitReached` beyond).
    fn send_request(&self, py: Python<'_>, data: BytesIn) -> PyResult<Pending> {
        let p = self.send_pending(py, &data)?;
        Ok(Pending {
            id: p.id(),
            inner: Mutex::new(Some(p)),
        })
    }

    /// Waits up to `timeout` seconds for the response to `pending` (then
    /// `TimedOut`, and `pending` stays valid: ask again).
    #[pyo3(signature = (pending, timeout=None))]
    fn receive_response(
        &self,
        py: Python<'_>,
        pending: &Pending,
        timeout: Option<f64>,
    ) -> PyResult<Response> {
        let timeout = timeout_arg(timeout)?;
        let r = self.receive(py, &pending.inner, timeout);
        let timed_out = matches!(&r, Err(e) if e.is_instance_of::<PyTimeoutError>(py));
        if !timed_out {
            // Received (or failed for good): the Rust `Pending` is spent.
            pending
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        }
        r
    }

    /// The response to `pending` if it has come, else `None`.
    fn try_receive_response(
        &self,
        py: Python<'_>,
        pending: &Pending,
    ) -> PyResult<Option<Response>> {
        match self.receive_response(py, pending, Some(0.0)) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_instance_of::<PyTimeoutError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Requests sent whose responses were not received yet.
    #[getter]
    fn in_flight(&self, py: Python<'_>) -> PyResult<usize> {
        let what = &self.shared.what;
        self.shared
            .with(py, |s| -> FResult<usize> {
                s.release_all(what)?;
                // SAFETY: under the lock, no response held.
                Ok(unsafe { s.ep(what)? }.in_flight())
            })
            .py_err(py)
    }

    /// This client's id: `(slot, instance)`, as `Request.client` says it.
    #[getter]
    fn id(&self) -> (u32, u64) {
        self.id
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

    /// Disconnects (a held response is released: `BufferError` if a buffer
    /// of it is exported). Closing twice is nothing.
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
        format!("<memshare.Client: {}>", self.shared.what)
    }
}

impl Client {
    fn send_pending(&self, py: Python<'_>, data: &BytesIn) -> PyResult<rpc::Pending> {
        let what = &self.shared.what;
        self.shared
            .with(py, |s| -> FResult<rpc::Pending> {
                s.release_all(what)?;
                // SAFETY: under the lock, no response held (released above).
                let c = unsafe { s.ep_mut(what)? };
                let mut buf = vec![0u8; data.len()];
                // SAFETY: `buf` is `data.len()` bytes of our own.
                unsafe { data.copy_to(buf.as_mut_ptr()) };
                Ok(c.send_request(&buf)?)
            })
            .py_err(py)
    }
}

/// A request in flight (`Client.send_request`): give it to
/// `Client.receive_response`. Dropped before its response is received, the
/// response is discarded when it comes.
#[pyclass(module = "memshare", frozen)]
pub struct Pending {
    id: u64,
    inner: Mutex<Option<rpc::Pending>>,
}

#[pymethods]
impl Pending {
    /// The request's id (what the server's `Request.id` says).
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Whether its response was received (or the request failed).
    #[getter]
    fn done(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "<memshare.Pending id={}{}>",
            self.id,
            if self.done() { ", done" } else { "" }
        )
    }
}

/// A response, in place in the client's region: a read-only buffer valid
/// until released (`release()`, a `with` block, the object going away, or
/// the client's next call).
#[pyclass(module = "memshare", frozen)]
pub struct Response {
    shared: Arc<ClientShared>,
    id: u64,
    lent: Lent,
}

impl Response {
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

impl Drop for Response {
    fn drop(&mut self) {
        if self.lent.flags.force_release() {
            self.shared.release(self.id);
        }
    }
}

lender!(Response, "Response", {
    /// Gives the response's slot back. `BufferError` while a buffer of it
    /// is exported; releasing twice is nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }
});
