//! `memshare.Segment`, `memshare.View`, sharing with children
//! (`memshare.Offer`) and with running processes (`send_segments`,
//! `recv_segments`).

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};

use memshare::share::ChildOffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::buffer::{BytesIn, Lent};
use crate::errors::IntoPyResult;
use crate::lend::lender;

/// A shared-memory segment: a handle, like Win32's file mapping.
///
/// Named segments live while some process holds them (this Python process
/// counts as a holder, exactly as a Rust one does, until the segment and
/// its views are closed or garbage-collected, or the process dies), then
/// the name goes. No resource tracker is involved.
#[pyclass(module = "memshare", frozen)]
pub struct Segment {
    inner: Mutex<Option<memshare::Segment>>,
}

impl Segment {
    /// Wraps a Rust segment.
    pub(crate) fn from_rust(segment: memshare::Segment) -> Segment {
        Segment {
            inner: Mutex::new(Some(segment)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<memshare::Segment>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Rust segment (a clone of the handle), or `ValueError` if closed.
    pub(crate) fn handle(&self, _py: Python<'_>) -> PyResult<memshare::Segment> {
        self.lock()
            .clone()
            .ok_or_else(|| PyValueError::new_err("segment is closed"))
    }

    fn options(
        reserve: bool,
        populate: bool,
        persist: bool,
        foreign: bool,
    ) -> memshare::SegmentOptions {
        let mut o = memshare::Segment::options();
        o.reserve(reserve)
            .populate(populate)
            .persist(persist)
            .allow_foreign_owner(foreign);
        o
    }

    fn map_impl(
        &self,
        py: Python<'_>,
        offset: u64,
        length: Option<u64>,
        readonly: bool,
    ) -> PyResult<View> {
        let seg = self.handle(py)?;
        let end = match length {
            Some(l) => offset.checked_add(l).ok_or_else(|| {
                PyValueError::new_err(format!("offset {offset} + length {l} overflows"))
            })?,
            None => seg.len(),
        };
        let what = match seg.name() {
            Some(n) => format!("view {offset}..{end} of segment {n:?}"),
            None => format!("view {offset}..{end} of an anonymous segment"),
        };
        let (kind, ptr, len) = if readonly {
            let v = seg.map_readonly(offset..end).py_err(py)?;
            let (p, l) = (v.as_ptr(), v.len());
            (ViewKind::Ro(v), p, l)
        } else {
            let v = seg.map(offset..end).py_err(py)?;
            let (p, l) = (v.as_mut_ptr() as *const u8, v.len());
            (ViewKind::Rw(v), p, l)
        };
        Ok(View {
            view: Mutex::new(Some(kind)),
            offset,
            lent: Lent::new(ptr, len, readonly, what),
        })
    }
}

#[pymethods]
impl Segment {
    /// Creates an anonymous segment of `size` zero bytes (a sealed memfd on
    /// Linux): other processes get it by inheritance or `send_segments`.
    /// `reserve` allocates the memory now (an error now instead of SIGBUS
    /// later), `populate` prefaults views.
    #[staticmethod]
    #[pyo3(signature = (size, *, reserve=false, populate=false))]
    fn create(py: Python<'_>, size: u64, reserve: bool, populate: bool) -> PyResult<Segment> {
        let s = Segment::options(reserve, populate, false, false)
            .create(size)
            .py_err(py)?;
        Ok(Segment::from_rust(s))
    }

    /// Creates a segment of `size` zero bytes that other processes open by
    /// `name` (mode 0600). `AlreadyExists` if a live one has that name. The
    /// name goes with its last holder, unless `persist` (then: `remove`).
    #[staticmethod]
    #[pyo3(signature = (name, size, *, persist=false, reserve=false, populate=false))]
    fn create_named(
        py: Python<'_>,
        name: &str,
        size: u64,
        persist: bool,
        reserve: bool,
        populate: bool,
    ) -> PyResult<Segment> {
        let s = Segment::options(reserve, populate, persist, false)
            .create_named(name, size)
            .py_err(py)?;
        Ok(Segment::from_rust(s))
    }

    /// Opens the live segment `name` for reading and writing (also one
    /// made by another program, e.g. `multiprocessing.shared_memory`).
    /// `NotFound` if there is none; `PermissionDenied` if another user
    /// owns it, unless `allow_foreign_owner`.
    #[staticmethod]
    #[pyo3(signature = (name, *, allow_foreign_owner=false))]
    fn open(py: Python<'_>, name: &str, allow_foreign_owner: bool) -> PyResult<Segment> {
        let s = Segment::options(false, false, false, allow_foreign_owner)
            .open(name)
            .py_err(py)?;
        Ok(Segment::from_rust(s))
    }

    /// Opens the live segment `name` for reading only: its views are
    /// read-only buffers.
    #[staticmethod]
    #[pyo3(signature = (name, *, allow_foreign_owner=false))]
    fn open_readonly(py: Python<'_>, name: &str, allow_foreign_owner: bool) -> PyResult<Segment> {
        let s = Segment::options(false, false, false, allow_foreign_owner)
            .open_readonly(name)
            .py_err(py)?;
        Ok(Segment::from_rust(s))
    }

    /// Removes the name now (like deleting a file): holders keep the
    /// segment. The same as `memshare.remove(name)`.
    #[staticmethod]
    fn remove(py: Python<'_>, name: &str) -> PyResult<()> {
        memshare::Segment::remove(name).py_err(py)
    }

    /// Takes the segment a parent shared with this process under `key`
    /// (Rust: `Command::share`; Python: `Segment.share` + `subprocess`).
    /// Each key can be taken once.
    #[staticmethod]
    fn inherited(py: Python<'_>, key: &str) -> PyResult<Segment> {
        Ok(Segment::from_rust(
            memshare::Segment::inherited(key).py_err(py)?,
        ))
    }

    /// Takes an inherited segment whose value reached this process another
    /// way than the environment (a command-line argument...).
    #[staticmethod]
    fn inherited_from(py: Python<'_>, key: &str, value: &str) -> PyResult<Segment> {
        Ok(Segment::from_rust(
            memshare::Segment::inherited_from(key, value).py_err(py)?,
        ))
    }

    /// Maps `length` bytes from `offset` (default: to the end) and returns a
    /// `View`, a buffer (`memoryview(view)`, `numpy.frombuffer(view, dtype)`:
    /// zero-copy). Writable, unless the segment is read-only or `readonly`
    /// is true.
    #[pyo3(signature = (offset=0, length=None, *, readonly=None))]
    fn map(
        &self,
        py: Python<'_>,
        offset: u64,
        length: Option<u64>,
        readonly: Option<bool>,
    ) -> PyResult<View> {
        let ro = match readonly {
            Some(r) => r,
            None => self.handle(py)?.is_readonly(),
        };
        self.map_impl(py, offset, length, ro)
    }

    /// Maps a read-only view (`map(..., readonly=True)`).
    #[pyo3(signature = (offset=0, length=None))]
    fn map_readonly(&self, py: Python<'_>, offset: u64, length: Option<u64>) -> PyResult<View> {
        self.map_impl(py, offset, length, true)
    }

    /// A handle through which no process can ever write (anonymous
    /// segments; the kernel enforces it with memfd seals). Views that exist
    /// keep working: map what you will write first.
    fn to_readonly(&self, py: Python<'_>) -> PyResult<Segment> {
        Ok(Segment::from_rust(
            self.handle(py)?.to_readonly().py_err(py)?,
        ))
    }

    /// Whether the kernel forbids every new write to this segment.
    #[getter]
    fn write_sealed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.handle(py)?.is_write_sealed())
    }

    /// The name (`None` for an anonymous segment).
    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.handle(py)?.name().map(str::to_owned))
    }

    /// The size in bytes.
    #[getter]
    fn size(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.handle(py)?.len())
    }

    /// Whether this handle is read-only.
    #[getter]
    fn readonly(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.handle(py)?.is_readonly())
    }

    /// The descriptor, for calls memshare does not wrap (`os.fstat`...).
    /// It stays this segment's: do not close it.
    fn fileno(&self, py: Python<'_>) -> PyResult<RawFd> {
        let g = self.lock();
        let s = g
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("segment is closed"))?;
        let _ = py;
        Ok(s.as_fd().as_raw_fd())
    }

    /// Prepares this segment for one child process under `key`: an
    /// `Offer` with the descriptor to pass and the environment variable to
    /// set. With `subprocess`:
    ///
    ///     with segment.share("frames") as offer:
    ///         child = subprocess.Popen(cmd, **offer.popen_kwargs())
    ///
    /// The child calls `memshare.Segment.inherited("frames")` (Python) or
    /// `Segment::inherited("frames")` (Rust).
    fn share(&self, py: Python<'_>, key: &str) -> PyResult<Offer> {
        let offer = self.handle(py)?.offer_to_child(key).py_err(py)?;
        Ok(Offer {
            inner: Mutex::new(Some(offer)),
        })
    }

    /// Drops this handle. Views keep the segment alive (as on Windows); a
    /// named segment's name goes when its last holder in any process is
    /// gone. Closing twice is nothing.
    fn close(&self) {
        self.lock().take();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match &*self.lock() {
            None => "<memshare.Segment closed>".into(),
            Some(s) => format!(
                "<memshare.Segment {} {} bytes{}>",
                match s.name() {
                    Some(n) => format!("{n:?}"),
                    None => "anonymous".into(),
                },
                s.len(),
                if s.is_readonly() { " read-only" } else { "" }
            ),
        }
    }
}

enum ViewKind {
    Ro(memshare::View),
    Rw(memshare::ViewMut),
}

/// A mapped window of a segment: a buffer (read-only for read-only views)
/// valid until `close()` (refused with `BufferError` while a buffer of it
/// is exported) or until the view goes away. A view keeps its segment
/// alive.
#[pyclass(module = "memshare", frozen)]
pub struct View {
    view: Mutex<Option<ViewKind>>,
    offset: u64,
    lent: Lent,
}

impl View {
    fn release_impl(&self, _py: Python<'_>) -> PyResult<()> {
        if self.lent.flags.try_release(&self.lent.what)? {
            // Unmapped only now: nothing can reach it any more.
            self.view.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        Ok(())
    }

    fn exit_impl(&self, py: Python<'_>, _ok: bool) -> PyResult<()> {
        self.release_impl(py)
    }
}

lender!(View, "View", {
    /// Unmaps the view. `BufferError` while a buffer of it is exported;
    /// closing twice is nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.release_impl(py)
    }

    /// Whether the view is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.lent.flags.released()
    }

    /// Where the view starts in the segment.
    #[getter]
    fn offset(&self) -> u64 {
        self.offset
    }

    /// The view's length in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.lent.len
    }

    /// A copy of `length` bytes from `offset` (default: to the end).
    /// `OutOfRange` if they are not all inside the view.
    #[pyo3(signature = (offset=0, length=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        offset: usize,
        length: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let length = length.unwrap_or_else(|| self.lent.len.saturating_sub(offset));
        let g = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let v = match &*g {
            None => return Err(PyValueError::new_err(format!("{}: closed", self.lent.what))),
            Some(ViewKind::Ro(v)) => v,
            Some(ViewKind::Rw(v)) => v,
        };
        // The range first: `length` is the caller's, and may be more than
        // any allocation can hold (an abort, not an error).
        if offset
            .checked_add(length)
            .is_none_or(|end| end > self.lent.len)
        {
            return Err(memshare::Error::OutOfRange {
                object: self.lent.what.clone(),
                detail: format!(
                    "bytes {offset}..{} are outside the view's {} bytes",
                    offset as u128 + length as u128,
                    self.lent.len
                ),
            })
            .py_err(py);
        }
        let mut out = vec![0u8; length];
        v.read_at(offset, &mut out).py_err(py)?;
        Ok(PyBytes::new(py, &out))
    }

    /// Copies `data` (bytes-like) into the view at `offset`.
    #[pyo3(signature = (data, offset=0))]
    fn write(&self, data: BytesIn, offset: usize) -> PyResult<()> {
        self.lent.write(offset, &data)
    }
});

/// A segment offered to one child process (`Segment.share(key)`): the
/// descriptor the child must get at the same number (`fd`, for
/// `subprocess`'s `pass_fds`) and the environment variable to set
/// (`env_var` = `value`). `popen_kwargs()` gives both as `subprocess.Popen`
/// arguments. Close the offer once the child is started (a `with` block
/// does): the child's copy stays, this process's goes. An offer closed or
/// collected before a child took it holds nothing.
#[pyclass(module = "memshare", frozen)]
pub struct Offer {
    inner: Mutex<Option<ChildOffer>>,
}

impl Offer {
    fn get<R>(&self, f: impl FnOnce(&ChildOffer) -> R) -> PyResult<R> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .map(f)
            .ok_or_else(|| PyValueError::new_err("the offer is closed"))
    }
}

#[pymethods]
impl Offer {
    /// The descriptor to keep open in the child (`pass_fds=[offer.fd]`).
    #[getter]
    fn fd(&self) -> PyResult<RawFd> {
        self.get(|o| o.as_fd().as_raw_fd())
    }

    /// The environment variable the child reads (`MEMSHARE_SEGMENT_<KEY>`).
    #[getter]
    fn env_var(&self) -> PyResult<String> {
        self.get(|o| o.env_var().to_owned())
    }

    /// The value of `env_var`.
    #[getter]
    fn value(&self) -> PyResult<String> {
        self.get(|o| o.value().to_owned())
    }

    /// `subprocess.Popen` keyword arguments that give the segment to the
    /// child: `pass_fds` with this descriptor added, and `env` (a copy of
    /// `base["env"]`, or of `os.environ`) with the variable set. Other keys
    /// of `base` are kept, so offers chain:
    /// `kw = b.popen_kwargs(a.popen_kwargs())`.
    #[pyo3(signature = (base=None))]
    fn popen_kwargs<'py>(
        &self,
        py: Python<'py>,
        base: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (fd, var, value) = self.get(|o| {
            (
                o.as_fd().as_raw_fd(),
                o.env_var().to_owned(),
                o.value().to_owned(),
            )
        })?;
        let kw = match &base {
            Some(b) => b.copy()?,
            None => PyDict::new(py),
        };
        let mut fds: Vec<RawFd> = match kw.get_item("pass_fds")? {
            Some(f) if !f.is_none() => f
                .try_iter()?
                .map(|x| x?.extract())
                .collect::<PyResult<_>>()?,
            _ => Vec::new(),
        };
        fds.push(fd);
        kw.set_item("pass_fds", PyTuple::new(py, fds)?)?;
        let env = PyDict::new(py);
        match kw.get_item("env")? {
            Some(e) if !e.is_none() => env.call_method1("update", (e,))?,
            _ => env.call_method1("update", (py.import("os")?.getattr("environ")?,))?,
        };
        env.set_item(var, value)?;
        kw.set_item("env", env)?;
        Ok(kw)
    }

    /// Closes this process's copy of the descriptor (do it once the child
    /// is started). Closing twice is nothing.
    fn close(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match &*self.inner.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(o) => format!(
                "<memshare.Offer fd={} {}>",
                o.as_fd().as_raw_fd(),
                o.env_var()
            ),
            None => "<memshare.Offer closed>".into(),
        }
    }
}

/// The descriptor of a Python `socket.socket` of family `AF_UNIX` (or an
/// int descriptor).
fn unix_socket_fd(sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    if let Ok(fd) = sock.extract::<RawFd>() {
        return Ok(fd);
    }
    let socket = sock.py().import("socket")?;
    let af_unix = socket.getattr("AF_UNIX")?;
    match sock.getattr("family") {
        Ok(f) if f.eq(&af_unix)? => {}
        _ => {
            return Err(PyTypeError::new_err(
                "expected a socket.socket of family AF_UNIX (or its descriptor)",
            ))
        }
    }
    let fd: RawFd = sock.call_method0("fileno")?.extract()?;
    if fd < 0 {
        return Err(PyValueError::new_err("the socket is closed"));
    }
    Ok(fd)
}

/// Borrows descriptor `fd` as a `UnixStream` for one call, without taking
/// ownership (it is never closed here).
fn borrow_stream(fd: RawFd) -> ManuallyDrop<UnixStream> {
    // SAFETY: `fd` is an open socket descriptor owned by the caller's
    // Python socket, which the caller holds for the whole call; wrapped in
    // ManuallyDrop, the stream never closes it.
    ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(fd) })
}

/// Sends segments to the process at the other end of a connected `AF_UNIX`
/// socket, in one message (`SCM_RIGHTS`), each under a key:
/// `send_segments(sock, {"frames": seg, "control": other})`. The socket
/// must be blocking (no timeout set).
#[pyfunction]
pub fn send_segments(
    py: Python<'_>,
    sock: &Bound<'_, PyAny>,
    segments: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let fd = unix_socket_fd(sock)?;
    let items = if let Ok(d) = segments.cast::<PyDict>() {
        d.items().into_any()
    } else {
        segments.clone()
    };
    let mut list: Vec<(String, memshare::Segment)> = Vec::new();
    for item in items.try_iter()? {
        let (k, v): (String, Bound<'_, Segment>) = item?.extract()?;
        list.push((k, v.get().handle(py)?));
    }
    let r = py.detach(move || {
        let stream = borrow_stream(fd);
        let refs: Vec<(&str, &memshare::Segment)> =
            list.iter().map(|(k, s)| (k.as_str(), s)).collect();
        memshare::send_segments(&stream, &refs)
    });
    r.py_err(py)
}

/// Receives the segments one `send_segments` sent (from Python or Rust),
/// waiting for them: a dict of key to `Segment`. Each descriptor is checked
/// against what the sender claims (size, access, name).
#[pyfunction]
pub fn recv_segments<'py>(
    py: Python<'py>,
    sock: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let fd = unix_socket_fd(sock)?;
    let got = py
        .detach(move || {
            let stream = borrow_stream(fd);
            memshare::recv_segments(&stream)
        })
        .py_err(py)?;
    let out = PyDict::new(py);
    for (k, s) in got {
        out.set_item(k, Segment::from_rust(s))?;
    }
    Ok(out)
}

/// Removes the name `name` now (see `Segment.remove`).
#[pyfunction]
pub fn remove(py: Python<'_>, name: &str) -> PyResult<()> {
    memshare::Segment::remove(name).py_err(py)
}

/// Checks `name` against memshare's naming rules: `InvalidName` if it
/// breaks one.
#[pyfunction]
pub fn validate_name(py: Python<'_>, name: &str) -> PyResult<()> {
    memshare::validate_name(name).py_err(py)
}
