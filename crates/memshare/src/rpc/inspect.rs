//! Reading a service's state from outside, without connecting: what
//! `memshare info` shows.

use super::layout::{
    self, phase_of, CLIENT_ATTACHED, CLIENT_DETACHED, CLIENT_EVICTED, CLIENT_FREE, SERVER_ATTACHED,
    SERVER_DETACHED, SERVER_LOCK_BYTE, SERVER_NEW, SLOT_REQUESTED, SLOT_TAKEN,
};
use super::service::{Role, Service};
use super::{ClientId, ServerConfig};
use crate::channel::EndpointState;
use crate::primitive::Ordering;
use crate::{Result, Segment};

/// A snapshot of a request/response service, read without connecting
/// (and without trusting it: only what the header's checked geometry
/// bounds is read).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcState {
    /// The service's configuration.
    pub config: ServerConfig,
    /// Its server.
    pub server: ServerState,
    /// Every client region in use (free ones are left out).
    pub clients: Vec<ClientState>,
}

/// The server of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerState {
    /// Attached and alive, dead, or detached.
    pub state: EndpointState,
    /// Its process id, as it wrote it (informational).
    pub pid: u32,
    /// Whether a newer server replaced this service (the name now names
    /// another segment).
    pub retired: bool,
}

/// One client region in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientState {
    /// Which client.
    pub id: ClientId,
    /// Attached and alive, dead, or detached (not reset yet).
    pub state: EndpointState,
    /// Whether the server stopped serving it (it broke the protocol).
    pub evicted: bool,
    /// Its process id, as it wrote it (informational).
    pub pid: u32,
    /// Requests it sent.
    pub sent: u64,
    /// Requests in flight: sent, and not answered yet.
    pub in_flight: u32,
}

fn endpoint_state(segment: &Segment, attached: bool, byte: u64) -> Result<EndpointState> {
    Ok(if !attached {
        EndpointState::Detached
    } else if segment.object().byte_locked(byte)? {
        EndpointState::Attached
    } else {
        EndpointState::Dead
    })
}

/// Reads the state of the service in `segment` without connecting (its
/// control parts are mapped read-only).
///
/// ```
/// use memshare::channel::EndpointState;
/// use memshare::rpc::{self, Client, Server, ServerConfig};
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-rpcinspect-{}", std::process::id());
/// let server = Server::create(&name, ServerConfig::new())?;
/// let mut client = Client::connect(&name)?;
/// let _pending = client.send_request(b"hello")?;
/// let state = rpc::inspect(server.segment())?;
/// assert_eq!(state.server.state, EndpointState::Attached);
/// assert_eq!(state.clients.len(), 1);
/// assert_eq!(state.clients[0].in_flight, 1);
/// # Ok(()) }
/// ```
pub fn inspect(segment: &Segment) -> Result<RpcState> {
    let service = Service::open(segment, Role::Observer)?;
    let h = service.header();
    let server_state = h.server.state.load(Ordering::Acquire);
    let server = ServerState {
        state: match server_state {
            SERVER_NEW => EndpointState::New,
            SERVER_DETACHED => EndpointState::Detached,
            SERVER_ATTACHED => endpoint_state(segment, true, SERVER_LOCK_BYTE)?,
            other => EndpointState::Invalid(other),
        },
        pid: h.server.pid.load(Ordering::Relaxed),
        retired: h.server.retired.load(Ordering::Acquire) != 0,
    };
    let mut clients = Vec::new();
    for c in 0..service.geometry.shape.max_clients {
        let block = service.block(c);
        let state = block.state.load(Ordering::Acquire);
        if state == CLIENT_FREE {
            continue;
        }
        let region = service.region(c);
        clients.push(ClientState {
            id: ClientId {
                slot: c,
                instance: block.instance.load(Ordering::Relaxed),
            },
            state: match state {
                CLIENT_ATTACHED | CLIENT_EVICTED => {
                    endpoint_state(segment, true, layout::client_lock_byte(c))?
                }
                CLIENT_DETACHED => EndpointState::Detached,
                other => EndpointState::Invalid(other),
            },
            evicted: state == CLIENT_EVICTED,
            pid: block.pid.load(Ordering::Relaxed),
            sent: block.head.load(Ordering::Relaxed),
            in_flight: region
                .slots
                .iter()
                .filter(|s| {
                    matches!(
                        phase_of(s.state.load(Ordering::Relaxed)),
                        SLOT_REQUESTED | SLOT_TAKEN
                    )
                })
                .count() as u32,
        });
    }
    service.check_intact()?;
    Ok(RpcState {
        config: ServerConfig::from_shape(&service.geometry.shape),
        server,
        clients,
    })
}
