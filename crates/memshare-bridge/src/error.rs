//! The bridge's one error type.

use std::path::PathBuf;

/// What can go wrong in the bridge. Each variant names the object involved:
/// the configuration file, the service, the Zenoh operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("configuration file {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// The configuration (a file, the flags, or both) breaks a rule.
    #[error("configuration {origin}: {detail}")]
    Config {
        /// Where the setting came from: a file's path, or "flags".
        origin: String,
        /// Which rule it breaks, with the offending value.
        detail: String,
    },

    /// A memshare call on a local service failed.
    #[error("service {service:?}: {source}")]
    Memshare {
        /// The local service.
        service: String,
        /// memshare's error.
        #[source]
        source: memshare::Error,
    },

    /// A Zenoh call failed.
    #[error("zenoh: {op}: {source}")]
    Zenoh {
        /// What was being done (opening the session, declaring a publisher
        /// on a key expression...).
        op: String,
        /// Zenoh's error.
        #[source]
        source: zenoh::Error,
    },

    /// What came from the network is not what the bridge's wire format
    /// (docs/bridge.md, "Wire format") says: a missing, short or foreign
    /// attachment, or an unknown version.
    #[error("{key}: {detail}")]
    Wire {
        /// The key expression it came on (or the header's owner).
        key: String,
        /// What is wrong with it.
        detail: String,
    },

    /// A signal handler could not be installed.
    #[error("installing the handler of signal {signal}: {source}")]
    Signal {
        /// The signal's number.
        signal: i32,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// The bridge's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn zenoh(op: impl Into<String>, source: zenoh::Error) -> Error {
        Error::Zenoh {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn memshare(service: &str, source: memshare::Error) -> Error {
        Error::Memshare {
            service: service.to_owned(),
            source,
        }
    }
}
