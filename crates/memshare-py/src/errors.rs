//! memshare's errors as Python exceptions: one class per [`memshare::Error`]
//! kind, all under `memshare.Error`, each also under the built-in exception
//! a Python programmer would catch (`NotFound` is a `FileNotFoundError`,
//! `TimedOut` a `TimeoutError`...). The message is the Rust error's.

use pyo3::exceptions::{
    PyBrokenPipeError, PyException, PyFileExistsError, PyFileNotFoundError, PyMemoryError,
    PyPermissionError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// The exception classes, made once (see [`classes`]).
struct Classes {
    base: Py<PyType>,
    kinds: Vec<(&'static str, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// Each class: its Python name, the built-in it also derives from (if
/// any), and its docstring.
type Spec = (
    &'static str,
    Option<fn(Python<'_>) -> Bound<'_, PyType>>,
    &'static str,
);

const SPECS: &[Spec] = &[
    (
        "NotFound",
        Some(|py| py.get_type::<PyFileNotFoundError>()),
        "No segment or service of that name exists (or its last holder is gone).",
    ),
    (
        "AlreadyExists",
        Some(|py| py.get_type::<PyFileExistsError>()),
        "A live segment or service of that name already exists.",
    ),
    (
        "InvalidName",
        Some(|py| py.get_type::<PyValueError>()),
        "The name breaks the naming rules (1 to 255 bytes of letters, digits, '.', '_', '-').",
    ),
    (
        "OutOfRange",
        Some(|py| py.get_type::<PyValueError>()),
        "An offset, length, range or size falls outside what it addresses, or a limit is broken.",
    ),
    (
        "Misaligned",
        Some(|py| py.get_type::<PyValueError>()),
        "An atomic access at an offset that is not a multiple of the word size.",
    ),
    (
        "PermissionDenied",
        Some(|py| py.get_type::<PyPermissionError>()),
        "The system or the segment's protection refuses the operation.",
    ),
    (
        "NotSharedMemory",
        None,
        "What is at a segment's name is not a shared-memory object.",
    ),
    (
        "Unsupported",
        None,
        "The platform or the running kernel does not offer the feature.",
    ),
    (
        "NoSpace",
        Some(|py| py.get_type::<PyMemoryError>()),
        "Not enough memory or shared-memory space.",
    ),
    (
        "InvalidHandle",
        None,
        "A handle, descriptor or value received from another process is not what it claims to be.",
    ),
    (
        "NotAChannel",
        None,
        "The segment does not hold a channel.",
    ),
    (
        "InvalidInput",
        Some(|py| py.get_type::<PyValueError>()),
        "An argument breaks a rule of the call.",
    ),
    (
        "NotAService",
        None,
        "The segment does not hold the kind of service asked for.",
    ),
    (
        "LimitReached",
        None,
        "A limit of a service or endpoint is reached (slots, samples held, requests in flight).",
    ),
    (
        "AlreadyAttached",
        None,
        "An endpoint of that side is already attached (a channel's sender or receiver, a server).",
    ),
    (
        "Disconnected",
        Some(|py| py.get_type::<PyBrokenPipeError>()),
        "The other side is gone (it closed its endpoint or its process died), and everything it sent was received.",
    ),
    (
        "NoResponse",
        None,
        "The server dropped the request without a response.",
    ),
    (
        "Corrupted",
        None,
        "Shared state contradicts itself: the other process is buggy or hostile.",
    ),
    (
        "TimedOut",
        Some(|py| py.get_type::<PyTimeoutError>()),
        "A wait with a timeout ran out.",
    ),
    (
        "TooLarge",
        Some(|py| py.get_type::<PyValueError>()),
        "A message larger than the channel or service can ever hold.",
    ),
    (
        "Truncated",
        None,
        "Another process shrank the segment under a view or channel.",
    ),
    (
        "IoError",
        None,
        "Any other error from the operating system.",
    ),
];

/// Makes (once) and returns the classes.
fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let type_ = builtins.getattr("type")?;
        let make = |name: &str, bases: Bound<'_, PyTuple>, doc: &str| -> PyResult<Py<PyType>> {
            let ns = PyDict::new(py);
            ns.set_item("__module__", "memshare")?;
            ns.set_item("__doc__", doc)?;
            let class = type_.call1((name, bases, ns))?;
            Ok(class.cast_into::<PyType>()?.unbind())
        };
        let base = make(
            "Error",
            PyTuple::new(py, [py.get_type::<PyException>()])?,
            "The base of every memshare error. `kind` names the Rust error variant \
             (\"not_found\", \"timed_out\"...).",
        )?;
        let mut kinds = Vec::new();
        for (name, builtin, doc) in SPECS {
            let bases = match builtin {
                Some(b) => PyTuple::new(py, [base.bind(py).clone(), b(py)])?,
                None => PyTuple::new(py, [base.bind(py).clone()])?,
            };
            kinds.push((*name, make(name, bases, doc)?));
        }
        Ok(Classes { base, kinds })
    })
}

/// Adds `Error` and every kind to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let c = classes(m.py())?;
    m.add("Error", c.base.bind(m.py()))?;
    for (name, class) in &c.kinds {
        m.add(*name, class.bind(m.py()))?;
    }
    Ok(())
}

/// The class name and the `kind` attribute of a Rust error.
fn kind_of(e: &memshare::Error) -> (&'static str, &'static str) {
    use memshare::Error as E;
    match e {
        E::NotFound { .. } => ("NotFound", "not_found"),
        E::AlreadyExists { .. } => ("AlreadyExists", "already_exists"),
        E::InvalidName { .. } => ("InvalidName", "invalid_name"),
        E::OutOfRange { .. } => ("OutOfRange", "out_of_range"),
        E::Misaligned { .. } => ("Misaligned", "misaligned"),
        E::PermissionDenied { .. } => ("PermissionDenied", "permission_denied"),
        E::NotSharedMemory { .. } => ("NotSharedMemory", "not_shared_memory"),
        E::Unsupported { .. } => ("Unsupported", "unsupported"),
        E::NoSpace { .. } => ("NoSpace", "no_space"),
        E::InvalidHandle { .. } => ("InvalidHandle", "invalid_handle"),
        E::NotAChannel { .. } => ("NotAChannel", "not_a_channel"),
        E::InvalidInput { .. } => ("InvalidInput", "invalid_input"),
        E::NotAService { .. } => ("NotAService", "not_a_service"),
        E::LimitReached { .. } => ("LimitReached", "limit_reached"),
        E::AlreadyAttached { .. } => ("AlreadyAttached", "already_attached"),
        E::Disconnected { .. } => ("Disconnected", "disconnected"),
        E::NoResponse { .. } => ("NoResponse", "no_response"),
        E::Corrupted { .. } => ("Corrupted", "corrupted"),
        E::TimedOut { .. } => ("TimedOut", "timed_out"),
        E::TooLarge { .. } => ("TooLarge", "too_large"),
        E::Truncated { .. } => ("Truncated", "truncated"),
        _ => ("IoError", "io"),
    }
}

/// The Python exception for a Rust error: its class, its message, and the
/// attributes `kind` (and `name` for `NotFound`/`AlreadyExists`, `os_errno`
/// for an operating-system error).
pub(crate) fn to_py(py: Python<'_>, e: memshare::Error) -> PyErr {
    let (class_name, kind) = kind_of(&e);
    let message = e.to_string();
    let made = (|| -> PyResult<PyErr> {
        let c = classes(py)?;
        let class = c
            .kinds
            .iter()
            .find(|(n, _)| *n == class_name)
            .map(|(_, c)| c.bind(py))
            .unwrap_or_else(|| c.base.bind(py));
        let exc = class.call1((message.clone(),))?;
        exc.setattr("kind", kind)?;
        if let memshare::Error::NotFound { name, .. }
        | memshare::Error::AlreadyExists { name, .. } = &e
        {
            // Not `filename`: OSError would print "[Errno None] None: ..." then.
            exc.setattr("name", name.as_str())?;
        }
        if let memshare::Error::Io { source, .. } = &e {
            if let Some(errno) = source.raw_os_error() {
                exc.setattr("os_errno", errno)?;
            }
        }
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|err| err)
}

/// Where a call failed: in memshare (a Rust error to convert with the
/// interpreter attached) or with a Python exception made already.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A memshare error.
    Ms(memshare::Error),
    /// A Python exception (made lazily; no interpreter needed).
    Py(PyErr),
}

impl From<memshare::Error> for Fail {
    fn from(e: memshare::Error) -> Fail {
        Fail::Ms(e)
    }
}

impl From<PyErr> for Fail {
    fn from(e: PyErr) -> Fail {
        Fail::Py(e)
    }
}

impl Fail {
    /// The Python exception.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Fail::Ms(e) => to_py(py, e),
            Fail::Py(e) => e,
        }
    }

    /// Whether this is memshare's `TimedOut`.
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Fail::Ms(memshare::Error::TimedOut { .. }))
    }
}

/// `Result` with [`Fail`].
pub(crate) type FResult<T> = Result<T, Fail>;

/// Converts a memshare result, with the interpreter attached.
pub(crate) trait IntoPyResult<T> {
    /// The Python form of the result.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for memshare::Result<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

impl<T> IntoPyResult<T> for FResult<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| e.into_py(py))
    }
}
