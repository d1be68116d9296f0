//! What every Python object that lends shared memory has in common: the
//! buffer protocol, `len()`, `tobytes()`, `address`, `released`, and the
//! context manager that releases it. One macro, so that they all behave
//! alike; each class adds its own methods.

/// Defines the `#[pymethods]` of a lending class: the common methods,
/// then `$extra`. The class has a field `lent: Lent` and an inherent
/// method `exit_impl(&self, py, ok: bool) -> PyResult<()>` for `__exit__`
/// (most also have a `release_impl(&self, py)`, what their `release()`
/// and a clean `__exit__` do; a `Request` declines instead).
macro_rules! lender {
    ($ty:ident, $pyname:literal, { $($extra:tt)* }) => {
        // pyo3's wrappers of the buffer slots call the `unsafe fn`s below
        // from its own `unsafe fn` without an inner `unsafe` block; the
        // workspace denies that in our code, and the wrappers carry our
        // spans. Allowed here only, for the generated code.
        #[allow(unsafe_op_in_unsafe_fn)]
        const _: () = {
        #[pyo3::pymethods]
        impl $ty {
            /// Lends the memory (the buffer protocol): `memoryview(obj)`,
            /// `numpy.frombuffer(obj, dtype)`... see the class docs for
            /// how long it stays valid.
            unsafe fn __getbuffer__(
                slf: pyo3::Bound<'_, Self>,
                view: *mut pyo3::ffi::Py_buffer,
                flags: std::os::raw::c_int,
            ) -> pyo3::PyResult<()> {
                let owner = slf.clone().into_any();
                // SAFETY: `view` is the Py_buffer CPython passed in; this object keeps the endpoint
                // (and its mapping) alive through its `Arc`, and the memory is not released while
                // the export count is above zero.
                unsafe { slf.get().lent.get_buffer(owner, view, flags) }
            }

            unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
                self.lent.release_buffer();
            }

            fn __len__(&self) -> usize {
                self.lent.len
            }

            /// A copy of the bytes.
            fn tobytes<'py>(
                &self,
                py: pyo3::Python<'py>,
            ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::types::PyBytes>> {
                let v = self.lent.to_vec()?;
                Ok(pyo3::types::PyBytes::new(py, &v))
            }

            /// The address of the first byte in this process (to check
            /// that a numpy array is a view of it, not a copy).
            #[getter]
            fn address(&self) -> usize {
                self.lent.ptr
            }

            /// Whether the memory is no longer lent (released, committed,
            /// published, sent...).
            #[getter]
            fn released(&self) -> bool {
                self.lent.flags.released()
            }

            /// Whether the buffer is read-only.
            #[getter]
            fn readonly(&self) -> bool {
                self.lent.readonly
            }

            fn __enter__(slf: pyo3::PyRef<'_, Self>) -> pyo3::PyRef<'_, Self> {
                slf
            }

            #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
            fn __exit__(
                &self,
                py: pyo3::Python<'_>,
                exc_type: Option<pyo3::Bound<'_, pyo3::PyAny>>,
                _exc: Option<pyo3::Bound<'_, pyo3::PyAny>>,
                _tb: Option<pyo3::Bound<'_, pyo3::PyAny>>,
            ) -> pyo3::PyResult<bool> {
                self.exit_impl(py, exc_type.is_none())?;
                Ok(false)
            }

            fn __repr__(&self) -> String {
                format!(
                    "<memshare.{} {} bytes{} at {:#x}{}>",
                    $pyname,
                    self.lent.len,
                    if self.lent.readonly { " read-only" } else { "" },
                    self.lent.ptr,
                    if self.lent.flags.released() { ", released" } else { "" },
                )
            }

            $($extra)*
        }
        };
    };
}

pub(crate) use lender;
