//! The buffer protocol, both ways: Python objects that lend shared memory
//! to `memoryview`/numpy ([`Lent`]), and bytes-like arguments read in
//! place ([`BytesIn`]).
//!
//! The rule that keeps lent memory valid: every object that exports a
//! buffer into shared memory keeps what owns the mapping alive (a buffer
//! holds a reference to its exporter, the exporter to the endpoint or
//! view), and counts its exports. Whatever would end the memory's validity
//! (releasing a message, committing a reservation, unmapping a view) is
//! refused with `BufferError` while a buffer is exported, as Python's own
//! `mmap.close()` is.

use std::os::raw::c_int;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

/// The state of lent memory: how many buffers are exported, and whether
/// the memory is gone (released, committed, unmapped).
#[derive(Debug, Default)]
pub(crate) struct FlagState {
    /// Buffers exported and not yet released.
    pub exports: usize,
    /// Set once the memory may no longer be touched; never cleared.
    pub released: bool,
}

/// [`FlagState`], shared by the exporting Python object and whatever
/// releases the memory (an endpoint, which may do it from another thread).
#[derive(Debug, Default)]
pub(crate) struct Flags(Mutex<FlagState>);

impl Flags {
    /// New flags: nothing exported, not released.
    pub(crate) fn new() -> Arc<Flags> {
        Arc::new(Flags::default())
    }

    /// The state, locked (never held across a wait).
    pub(crate) fn lock(&self) -> MutexGuard<'_, FlagState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the memory released if no buffer is exported; `what` names
    /// it in the error. Returns false if it was released already.
    pub(crate) fn try_release(&self, what: &str) -> PyResult<bool> {
        let mut f = self.lock();
        if f.released {
            return Ok(false);
        }
        if f.exports > 0 {
            return Err(exported(what, f.exports));
        }
        f.released = true;
        Ok(true)
    }

    /// Marks the memory released whatever is exported (the exporter is
    /// being destroyed, so nothing is). Returns false if it was already.
    pub(crate) fn force_release(&self) -> bool {
        let mut f = self.lock();
        !std::mem::replace(&mut f.released, true)
    }

    /// Whether the memory is released.
    pub(crate) fn released(&self) -> bool {
        self.lock().released
    }
}

/// The `BufferError` for memory that cannot go while buffers of it exist.
pub(crate) fn exported(what: &str, n: usize) -> PyErr {
    PyBufferError::new_err(format!(
        "{what}: {n} buffer(s) of it are still exported (a memoryview or a numpy array): \
         release them first (memoryview.release(), or del the array)"
    ))
}

/// A region of shared memory a Python object lends through the buffer
/// protocol: where it is, whether it may be written, and its [`Flags`].
#[derive(Debug)]
pub(crate) struct Lent {
    /// The first byte (an address in a mapping the exporter keeps alive).
    pub ptr: usize,
    pub len: usize,
    pub readonly: bool,
    pub flags: Arc<Flags>,
    /// What it is, for error messages ("message of channel ...").
    pub what: String,
}

impl Lent {
    /// A new lent region with fresh flags.
    pub(crate) fn new(ptr: *const u8, len: usize, readonly: bool, what: String) -> Lent {
        Lent {
            ptr: ptr as usize,
            len,
            readonly,
            flags: Flags::new(),
            what,
        }
    }

    /// Fills `view` for `owner` (`__getbuffer__`).
    ///
    /// # Safety
    ///
    /// `view` is the `Py_buffer` CPython passed to `__getbuffer__`, and
    /// `owner` is the Python object that owns this `Lent` and keeps its
    /// memory mapped for as long as it lives.
    pub(crate) unsafe fn get_buffer(
        &self,
        owner: Bound<'_, PyAny>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("View is null"));
        }
        let mut f = self.flags.lock();
        if f.released {
            return Err(PyBufferError::new_err(format!(
                "{}: released: its memory is no longer lent",
                self.what
            )));
        }
        if self.readonly && (flags & ffi::PyBUF_WRITABLE) != 0 {
            return Err(PyBufferError::new_err(format!(
                "{}: read-only: a writable buffer was asked for",
                self.what
            )));
        }
        let len = ffi::Py_ssize_t::try_from(self.len)
            .map_err(|_| PyValueError::new_err("length does not fit Py_ssize_t"))?;
        // PyBuffer_FillInfo takes a new reference to `owner` into `view.obj`, which CPython
        // releases with the buffer.
        // SAFETY: `view` is the caller's valid Py_buffer (checked non-null above); `ptr..ptr+len`
        // is mapped memory that `owner` keeps alive and that is not released while the export
        // count (incremented below, under the same lock as `released`) is above zero.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                owner.as_ptr(),
                self.ptr as *mut std::ffi::c_void,
                len,
                c_int::from(self.readonly),
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(owner.py()));
        }
        f.exports += 1;
        Ok(())
    }

    /// `__releasebuffer__`: one export fewer.
    pub(crate) fn release_buffer(&self) {
        let mut f = self.flags.lock();
        f.exports = f.exports.saturating_sub(1);
    }

    /// Fails with `ValueError` if the memory is released.
    pub(crate) fn check(&self) -> PyResult<()> {
        if self.flags.released() {
            return Err(PyValueError::new_err(format!(
                "{}: released: its memory is no longer lent",
                self.what
            )));
        }
        Ok(())
    }

    /// A copy of the bytes (`tobytes()`).
    pub(crate) fn to_vec(&self) -> PyResult<Vec<u8>> {
        let f = self.flags.lock();
        if f.released {
            return Err(PyValueError::new_err(format!(
                "{}: released: its memory is no longer lent",
                self.what
            )));
        }
        let mut out = vec![0u8; self.len];
        // SAFETY: the region is mapped and not released (checked under the
        // lock, held during the copy); a raw copy, never a reference into
        // memory another process may write.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr as *const u8, out.as_mut_ptr(), self.len) };
        drop(f);
        Ok(out)
    }

    /// Copies `data` into the region at `offset` (writable regions).
    pub(crate) fn write(&self, offset: usize, data: &BytesIn) -> PyResult<()> {
        if self.readonly {
            return Err(PyBufferError::new_err(format!("{}: read-only", self.what)));
        }
        let end = offset.checked_add(data.len()).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(PyValueError::new_err(format!(
                "{}: {} bytes at offset {offset} do not fit in its {} bytes",
                self.what,
                data.len(),
                self.len
            )));
        }
        let f = self.flags.lock();
        if f.released {
            return Err(PyValueError::new_err(format!(
                "{}: released: its memory is no longer lent",
                self.what
            )));
        }
        // SAFETY: offset + len is within the region (checked above), which
        // is mapped writable and not released (checked under the lock, held
        // during the copy); `data` is a buffer held for this call.
        unsafe { data.copy_to((self.ptr + offset) as *mut u8) };
        drop(f);
        Ok(())
    }
}

/// A bytes-like argument (`bytes`, `bytearray`, `memoryview`, a numpy
/// array...), held through the buffer protocol for the length of a call
/// and read in place: C-contiguous bytes, no copy made to get them.
pub(crate) struct BytesIn {
    view: Box<ffi::Py_buffer>,
}

// SAFETY: the buffer's memory stays valid while the Py_buffer is held (exporters refuse to resize
// or free exported memory); it is only read with raw copies, from whichever thread. Releasing it
// (Drop) needs the interpreter, which `Drop` attaches.
unsafe impl Send for BytesIn {}
// SAFETY: as for Send: `&BytesIn` only gives the pointer and the length.
unsafe impl Sync for BytesIn {}

impl BytesIn {
    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.view.len as usize
    }

    /// Copies the bytes to `dst`.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writing `self.len()` bytes and does not overlap
    /// the argument's memory.
    pub(crate) unsafe fn copy_to(&self, dst: *mut u8) {
        if self.len() > 0 {
            // SAFETY: the source is the held buffer, `len` bytes
            // (C-contiguous: asked for with PyBUF_C_CONTIGUOUS... see
            // `extract`); the destination is the caller's promise.
            unsafe { std::ptr::copy_nonoverlapping(self.view.buf as *const u8, dst, self.len()) };
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for BytesIn {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let mut view = Box::new(ffi::Py_buffer::new());
        // SAFETY: `view` is a fresh Py_buffer; on success CPython fills it
        // and we release it exactly once, in Drop. PyBUF_ND | C-contiguous
        // gives a contiguous region of `len` bytes (or an error).
        let rc =
            // SAFETY: as just said.
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_C_CONTIGUOUS) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(BytesIn { view })
    }
}

impl Drop for BytesIn {
    fn drop(&mut self) {
        Python::attach(|_py| {
            // SAFETY: obtained by a successful PyObject_GetBuffer in
            // `extract`, released once, with the interpreter attached.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) };
        });
    }
}
