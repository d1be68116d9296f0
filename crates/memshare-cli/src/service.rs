//! What `pub`, `sub`, `call`, `serve`, `ls` and `info` share about
//! services: publish-subscribe (`pubsub`) and request/response (`rpc`).

use memshare::channel::EndpointState;
use memshare::inspect::{NamedInfo, SegmentKind};
use memshare::pubsub;
use memshare::rpc::RpcState;
use memshare::Segment;

/// A service's state, read without attaching.
#[derive(Debug)]
pub enum ServiceState {
    Pubsub(pubsub::ServiceState),
    Rpc(RpcState),
}

/// Whether `info` is a service of either kind.
fn is_service(info: &NamedInfo) -> bool {
    matches!(info.kind, Some(SegmentKind::Pubsub | SegmentKind::Rpc))
}

/// The state of the service `info` describes, read without attaching;
/// `None` if it is not a service, or if it is stale: opening a stale name
/// removes it, and removing is `memshare gc`'s business.
pub fn service_state(info: &NamedInfo) -> Option<Result<ServiceState, String>> {
    if !is_service(info) || info.is_stale() {
        return None;
    }
    let rpc = info.kind == Some(SegmentKind::Rpc);
    Some(
        Segment::open_readonly(&info.name)
            .and_then(|segment| {
                if rpc {
                    memshare::rpc::inspect(&segment).map(ServiceState::Rpc)
                } else {
                    memshare::pubsub::inspect(&segment).map(ServiceState::Pubsub)
                }
            })
            .map_err(|e| e.to_string()),
    )
}

/// The endpoints of a service that are attached and alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alive {
    Pubsub {
        publishers: usize,
        subscribers: usize,
    },
    Rpc {
        server: bool,
        clients: usize,
    },
}

/// Which endpoints of a service are attached and alive: `None` if not a
/// service, or if its state could not be read. A stale service has none
/// (every holder died).
pub fn alive_counts(
    info: &NamedInfo,
    state: Option<&Result<ServiceState, String>>,
) -> Option<Alive> {
    let alive = |s: EndpointState| s == EndpointState::Attached;
    match info.kind {
        Some(SegmentKind::Pubsub) if info.is_stale() => Some(Alive::Pubsub {
            publishers: 0,
            subscribers: 0,
        }),
        Some(SegmentKind::Rpc) if info.is_stale() => Some(Alive::Rpc {
            server: false,
            clients: 0,
        }),
        Some(SegmentKind::Pubsub | SegmentKind::Rpc) => match state?.as_ref().ok()? {
            ServiceState::Pubsub(state) => Some(Alive::Pubsub {
                publishers: state.publishers.iter().filter(|p| alive(p.state)).count(),
                subscribers: state.subscribers.iter().filter(|s| alive(s.state)).count(),
            }),
            // A client the server evicted is still connected (its process
            // holds its region): it counts.
            ServiceState::Rpc(state) => Some(Alive::Rpc {
                server: alive(state.server.state),
                clients: state.clients.iter().filter(|c| alive(c.state)).count(),
            }),
        },
        _ => None,
    }
}
