//! How a request/response service is configured.

use super::layout::{Geometry, Shape};
use crate::{Error, Result};

/// The shape of a service, fixed when its server creates it.
///
/// ```
/// use memshare::rpc::ServerConfig;
/// let config = ServerConfig::new()
///     .max_clients(16)
///     .max_request_len(4096)
///     .max_response_len(64 << 10)
///     .max_in_flight(8);
/// assert_eq!(config.get_max_clients(), 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerConfig {
    max_clients: u32,
    max_in_flight: u32,
    max_request_len: u64,
    max_response_len: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig::new()
    }
}

impl ServerConfig {
    /// The defaults: 16 clients, 8 requests in flight per client, requests
    /// and responses of up to 4 KiB.
    pub const fn new() -> ServerConfig {
        ServerConfig {
            max_clients: 16,
            max_in_flight: 8,
            max_request_len: 4096,
            max_response_len: 4096,
        }
    }

    /// How many clients may be connected at once (1 to 256). One more
    /// gets [`Error::LimitReached`](crate::Error::LimitReached) from
    /// [`Client::connect`](super::Client::connect).
    pub const fn max_clients(mut self, n: u32) -> ServerConfig {
        self.max_clients = n;
        self
    }

    /// How many requests one client may have sent and not yet received
    /// the response of (1 to 64): each has its own request and response
    /// buffer in the client's region.
    pub const fn max_in_flight(mut self, n: u32) -> ServerConfig {
        self.max_in_flight = n;
        self
    }

    /// The largest request, in bytes (1 to `u32::MAX`).
    pub const fn max_request_len(mut self, len: u64) -> ServerConfig {
        self.max_request_len = len;
        self
    }

    /// The largest response, in bytes (1 to `u32::MAX`).
    pub const fn max_response_len(mut self, len: u64) -> ServerConfig {
        self.max_response_len = len;
        self
    }

    /// See [`ServerConfig::max_clients`].
    pub const fn get_max_clients(&self) -> u32 {
        self.max_clients
    }

    /// See [`ServerConfig::max_in_flight`].
    pub const fn get_max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// See [`ServerConfig::max_request_len`].
    pub const fn get_max_request_len(&self) -> u64 {
        self.max_request_len
    }

    /// See [`ServerConfig::max_response_len`].
    pub const fn get_max_response_len(&self) -> u64 {
        self.max_response_len
    }

    pub(crate) fn shape(&self) -> Shape {
        Shape {
            max_clients: self.max_clients,
            max_in_flight: self.max_in_flight,
            max_request_len: self.max_request_len,
            max_response_len: self.max_response_len,
        }
    }

    pub(crate) fn from_shape(shape: &Shape) -> ServerConfig {
        ServerConfig {
            max_clients: shape.max_clients,
            max_in_flight: shape.max_in_flight,
            max_request_len: shape.max_request_len,
            max_response_len: shape.max_response_len,
        }
    }

    /// The geometry of this configuration, or `OutOfRange` naming the
    /// limit it breaks.
    pub(crate) fn geometry(&self, name: &str) -> Result<Geometry> {
        Geometry::of(self.shape()).map_err(|detail| Error::OutOfRange {
            object: format!("service {name:?}"),
            detail,
        })
    }
}
