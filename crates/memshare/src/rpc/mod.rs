//! Request/response: a server answers many clients over one named
//! service, zero-copy both ways.
//!
//! A [`Server`] creates the service; [`Client`]s connect to it by name (up
//! to `max_clients` at once). A client writes a request in place in its own
//! region of the service and pushes it onto its ring; the server takes the
//! requests of all clients in turn ([`Server::recv`] gives a [`Request`]
//! guard over the bytes in place) and writes each response into the
//! response buffer of the slot the request came in, so it reaches the
//! client and request it answers, in whatever order the server answers.
//!
//! ```
//! use memshare::rpc::{Client, Server, ServerConfig};
//! # fn main() -> memshare::Result<()> {
//! let name = format!("doc-calc-{}", std::process::id());
//! let server = Server::create(&name, ServerConfig::new()
//!     .max_clients(16).max_request_len(4096).max_response_len(64 << 10).max_in_flight(8))?;
//! // In a client process:
//! let mut client = Client::connect(&name)?;
//! let pending = client.send_request(b"2+2")?;
//!
//! // In the server process:
//! let request = server.recv()?;
//! let answer = if &*request == b"2+2" { &b"4"[..] } else { b"?" };
//! let mut out = request.loan_response(answer.len())?; // zero-copy
//! out.copy_from_slice(answer);
//! out.send()?;
//!
//! // Back in the client:
//! assert_eq!(&*client.receive_response(&pending)?, b"4");
//! # Ok(()) }
//! ```
//!
//! # The service
//!
//! A service is a named segment: a header page (configuration, the
//! server's block, the pending mask, every client's wake words), then one
//! region per client slot: a control part (the client's block, its request
//! ring, `max_in_flight` slot descriptors), the request buffers and the
//! response buffers. The byte-level layout, precise enough to implement in
//! another language, is `docs/rpc-layout.md`.
//!
//! - **Speed**: a call is a request buffer, a slot word and the ring's head
//!   one way, the response buffer and the slot word back. No system call
//!   happens while the other side is awake.
//! - **Crashes**: the server and every client hold a lock the kernel drops
//!   when their process dies. A dead client's region (its queued requests,
//!   its buffers) is reset within
//!   [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL) once the
//!   server owes it nothing, and it leaves [`Server::clients`]. A dead
//!   server: every pending and later call is
//!   [`Error::Disconnected`](crate::Error::Disconnected), and
//!   [`Server::create`] under the same name retires the old service and
//!   starts a new one.
//! - **Hostile peers**: every index, length and position read from the
//!   segment is checked. A client that breaks the protocol is evicted (not
//!   served any more; its calls fail with `Corrupted`); it cannot make the
//!   server or other clients crash, hang or read out of bounds. A server
//!   that breaks it can only send bad responses (or `Corrupted`).

#[cfg(not(loom))]
pub(crate) mod client;
mod config;
#[cfg(not(loom))]
mod inspect;
pub mod layout;
#[cfg(all(test, loom))]
pub(crate) mod loom_model;
pub(crate) mod protocol;
#[cfg(not(loom))]
pub(crate) mod server;
#[cfg(not(loom))]
pub(crate) mod service;

#[cfg(not(loom))]
pub use client::{Client, Pending, RequestBatch, Response};
pub use config::ServerConfig;
#[cfg(not(loom))]
pub use inspect::{inspect, ClientState, RpcState, ServerState};
#[cfg(not(loom))]
pub use server::{ClientInfo, Request, ResponseLoan, Server};

/// Which client sent a request: its slot (region) in the service and the
/// random id it drew when it connected (so a client that reconnects is a
/// new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    slot: u32,
    instance: u64,
}

impl ClientId {
    /// The client's slot: which region of the service it uses.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The id the client drew when it connected.
    pub fn instance(&self) -> u64 {
        self.instance
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:016x}", self.slot, self.instance)
    }
}
