//! The one error type of the crate.

use std::io;

/// What went wrong, in a form a caller can match on.
///
/// Every message names the object involved: a segment's name (or
/// `anonymous segment` for one without a name), a view range, a key.
///
/// ```
/// use memshare::{Error, Segment};
///
/// match Segment::open("memshare-doc-absent") {
///     Err(Error::NotFound { name, .. }) => assert_eq!(name, "memshare-doc-absent"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
///
/// Code that speaks `std::io` gets an [`io::Error`] with the matching
/// [`io::ErrorKind`] ([`Error::kind`]); the memshare error stays inside it,
/// and an operating-system error stays the [`source`](std::error::Error::source)
/// of the variant it became.
///
/// ```
/// use std::io;
/// fn open_io(name: &str) -> io::Result<memshare::Segment> {
///     Ok(memshare::Segment::open(name)?)
/// }
/// let err = open_io("memshare-doc-absent-io").unwrap_err();
/// assert_eq!(err.kind(), io::ErrorKind::NotFound);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment of that name exists (or its last holder is gone).
    #[error("segment {name:?} not found")]
    #[non_exhaustive]
    NotFound {
        /// The name that was looked up.
        name: String,
        /// The operating system's error, when it said so.
        #[source]
        source: Option<io::Error>,
    },

    /// A live segment of that name already exists.
    #[error("segment {name:?} already exists")]
    #[non_exhaustive]
    AlreadyExists {
        /// The name that was asked for.
        name: String,
        /// The operating system's error, when it said so.
        #[source]
        source: Option<io::Error>,
    },

    /// The name breaks the naming rules (see [`crate::validate_name`]).
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (lossily printable).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// An offset, length or range falls outside the object it addresses,
    /// or a size is zero or too large.
    #[error("{object}: {detail}")]
    OutOfRange {
        /// The segment or view addressed.
        object: String,
        /// What was out of range, with the numbers.
        detail: String,
    },

    /// An atomic access at an offset that is not a multiple of the word size.
    #[error("{object}: offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// The view addressed.
        object: String,
        /// The offset asked for, relative to the view.
        offset: usize,
        /// The alignment the access needs.
        align: usize,
    },

    /// The operating system or the segment's own protection refuses the
    /// operation (a read-only segment mapped writable, another user's
    /// segment, a sealed segment).
    #[error("{object}: permission denied: {op}")]
    #[non_exhaustive]
    PermissionDenied {
        /// The segment involved.
        object: String,
        /// What was attempted.
        op: String,
        /// The operating system's error, when it said so.
        #[source]
        source: Option<io::Error>,
    },

    /// What is at a segment's name is not a shared-memory object (a
    /// symbolic link, a FIFO, a directory, a device, a file on disk):
    /// memshare never follows, opens or waits on it.
    #[error("{object}: not a shared-memory object: {what}; refused")]
    NotSharedMemory {
        /// The segment name involved.
        object: String,
        /// What was found there.
        what: String,
    },

    /// The platform or the running kernel does not offer the feature.
    #[error("unsupported: {what}")]
    Unsupported {
        /// The feature and why it is missing.
        what: String,
    },

    /// Not enough memory or shared-memory space for the segment (a
    /// reservation failed, huge pages are exhausted).
    #[error("{object}: not enough memory for {len} bytes: {detail}")]
    NoSpace {
        /// The segment being created.
        object: String,
        /// How many bytes were asked for.
        len: u64,
        /// What the system said.
        detail: String,
    },

    /// A handle, descriptor or value received from another process (an
    /// inherited descriptor, an environment value, a descriptor sent over
    /// a socket) is not what it claims to be.
    #[error("{object}: invalid handle: {reason}")]
    InvalidHandle {
        /// The key, message or descriptor involved.
        object: String,
        /// Why it was refused.
        reason: String,
    },

    /// The segment does not hold a channel: too small, not starting with
    /// the channel magic, or a ring size no channel has (a power of two
    /// from 64 bytes to 1 TiB after the 1024-byte header).
    #[error("{object}: not a channel: {detail}")]
    NotAChannel {
        /// The segment involved.
        object: String,
        /// What does not fit a channel.
        detail: String,
    },

    /// An argument breaks a rule of the call (an inheritance key that is
    /// not 1 to 64 ASCII letters, digits and `_`, or that no segment was
    /// shared under).
    #[error("{object}: {reason}")]
    InvalidInput {
        /// What the argument names.
        object: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// The segment does not hold the kind of service asked for (a
    /// publish-subscribe service, a request/response service).
    #[error("{object}: not a {kind} service: {detail}")]
    NotAService {
        /// The segment involved.
        object: String,
        /// The kind of service that was expected.
        kind: &'static str,
        /// What does not fit.
        detail: String,
    },

    /// A service's limit is reached: all its publisher or subscriber slots
    /// are taken, or a subscriber already holds as many samples as it may.
    #[error("{object}: {what}: the limit is {limit}")]
    LimitReached {
        /// The service or endpoint involved.
        object: String,
        /// What ran out, in words.
        what: String,
        /// The configured limit.
        limit: u64,
    },

    /// An endpoint of that side is already attached (a channel's sender or
    /// receiver, a request/response service's server: one at a time).
    #[error("{object}: a {side} is already attached")]
    AlreadyAttached {
        /// The channel or service.
        object: String,
        /// `"sender"`, `"receiver"` or `"server"`.
        side: &'static str,
    },

    /// The other side of a channel is gone: it dropped its endpoint or its
    /// process died, and everything it committed has been received.
    #[error("{object}: the {peer} is gone")]
    Disconnected {
        /// The channel or service.
        object: String,
        /// `"sender"`, `"receiver"`, `"publisher"`, `"server"`, ...
        peer: &'static str,
    },

    /// A request/response server dropped the request without responding
    /// (its `Request` went out of scope unanswered, or its response was
    /// larger than the service allows).
    #[error("{object}: the server dropped request {id} without a response")]
    NoResponse {
        /// The service.
        object: String,
        /// The request's id.
        id: u64,
    },

    /// Shared state contradicts itself: the other process is buggy or
    /// hostile, or the segment is not what it claims to be.
    #[error("{object}: corrupted: {detail}")]
    Corrupted {
        /// The channel's segment.
        object: String,
        /// What contradiction was found, with the numbers.
        detail: String,
    },

    /// A wait with a deadline ran out.
    #[error("{object}: timed out waiting to {op}")]
    TimedOut {
        /// The channel's segment.
        object: String,
        /// What the wait was for.
        op: &'static str,
    },

    /// A message larger than the channel or service can ever hold.
    #[error("{object}: a message of {len} bytes is larger than the {max} bytes it can hold")]
    TooLarge {
        /// The channel or service.
        object: String,
        /// The message's length.
        len: usize,
        /// The largest message it takes.
        max: usize,
    },

    /// Another process shrank the segment under this view or channel
    /// (`ftruncate`): the pages past the new end are gone. memshare caught
    /// the `SIGBUS` this would have been, and the view now holds private
    /// zero pages (see [`View::check_intact`](crate::View::check_intact)).
    #[error("{object}: the segment was truncated to {len} bytes by another process: the memory under this view is gone")]
    Truncated {
        /// The view or channel involved.
        object: String,
        /// The segment's size now.
        len: u64,
    },

    /// Any other error from the operating system.
    #[error("{object}: {op} failed: {source}")]
    Io {
        /// The segment involved.
        object: String,
        /// The system call or step that failed.
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Turns an operating-system error into the variant a caller can match
    /// on: not found, already exists and permission denied get their own
    /// variants, anything else is [`Error::Io`].
    pub(crate) fn from_io(name: Option<&str>, op: &'static str, source: io::Error) -> Error {
        let object = || describe(name);
        match (source.kind(), name) {
            (io::ErrorKind::NotFound, Some(name)) => Error::NotFound {
                name: name.to_owned(),
                source: Some(source),
            },
            (io::ErrorKind::AlreadyExists, Some(name)) => Error::AlreadyExists {
                name: name.to_owned(),
                source: Some(source),
            },
            (io::ErrorKind::PermissionDenied, _) => Error::PermissionDenied {
                object: object(),
                op: op.to_owned(),
                source: Some(source),
            },
            _ => Error::Io {
                object: object(),
                op,
                source,
            },
        }
    }
}

impl Error {
    /// No segment called `name` (without an operating-system error behind it).
    // Windows reports every such case with an error code (the `_because`
    // forms): only the Unix backend and services use the bare ones.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn not_found(name: &str) -> Error {
        Error::NotFound {
            name: name.to_owned(),
            source: None,
        }
    }

    /// No segment (or process) called `name`, as the operating system said
    /// with `source`, which stays the error's source.
    pub(crate) fn not_found_because(name: &str, source: impl Into<io::Error>) -> Error {
        Error::NotFound {
            name: name.to_owned(),
            source: Some(source.into()),
        }
    }

    /// A live segment called `name` (without an operating-system error).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn already_exists(name: &str) -> Error {
        Error::AlreadyExists {
            name: name.to_owned(),
            source: None,
        }
    }

    /// A live segment called `name`, as the operating system said with
    /// `source`, which stays the error's source.
    pub(crate) fn already_exists_because(name: &str, source: impl Into<io::Error>) -> Error {
        Error::AlreadyExists {
            name: name.to_owned(),
            source: Some(source.into()),
        }
    }

    /// The [`io::ErrorKind`] that fits: what an [`io::Error`] made from this
    /// error says (`impl From<Error> for io::Error`).
    ///
    /// ```
    /// use std::io::ErrorKind;
    /// let err = memshare::Segment::create(0).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidInput);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::NotFound { .. } => K::NotFound,
            Error::AlreadyExists { .. } => K::AlreadyExists,
            Error::InvalidName { .. }
            | Error::OutOfRange { .. }
            | Error::Misaligned { .. }
            | Error::InvalidInput { .. }
            | Error::TooLarge { .. } => K::InvalidInput,
            Error::PermissionDenied { .. } => K::PermissionDenied,
            Error::NotSharedMemory { .. }
            | Error::InvalidHandle { .. }
            | Error::NotAChannel { .. }
            | Error::NotAService { .. }
            | Error::Corrupted { .. } => K::InvalidData,
            Error::Unsupported { .. } => K::Unsupported,
            Error::NoSpace { .. } => K::StorageFull,
            Error::AlreadyAttached { .. } | Error::LimitReached { .. } => K::ResourceBusy,
            Error::Disconnected { .. } => K::BrokenPipe,
            Error::NoResponse { .. } => K::ConnectionAborted,
            Error::TimedOut { .. } => K::TimedOut,
            Error::Truncated { .. } => K::UnexpectedEof,
            Error::Io { source, .. } => source.kind(),
        }
    }
}

/// An [`io::Error`] of [`Error::kind`], carrying the memshare error (its
/// message, and its source chain).
impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        io::Error::new(error.kind(), error)
    }
}

/// How a segment is described in error messages: `segment "name"`, or
/// `anonymous segment`.
pub(crate) fn describe(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("segment {name:?}"),
        None => "anonymous segment".to_owned(),
    }
}
