//! What `pub`, `sub`, `ls` and `info` share about publish-subscribe
//! services.

use memshare::channel::EndpointState;
use memshare::inspect::{NamedInfo, SegmentKind};
use memshare::pubsub::ServiceState;
use memshare::Segment;

/// The state of the service `info` describes, read without attaching;
/// `None` if it is not a service, or if it is stale: opening a stale name
/// removes it, and removing is `memshare gc`'s business.
pub fn service_state(info: &NamedInfo) -> Option<Result<ServiceState, String>> {
    if info.kind != Some(SegmentKind::Pubsub) || info.is_stale() {
        return None;
    }
    Some(
        Segment::open_readonly(&info.name)
            .and_then(|segment| memshare::pubsub::inspect(&segment))
            .map_err(|e| e.to_string()),
    )
}

/// How many publishers and subscribers of a service are attached and
/// alive: `None` if not a service, or if its state could not be read. A
/// stale service has none (every holder died).
pub fn alive_counts(
    info: &NamedInfo,
    state: Option<&Result<ServiceState, String>>,
) -> Option<(usize, usize)> {
    if info.kind != Some(SegmentKind::Pubsub) {
        return None;
    }
    if info.is_stale() {
        return Some((0, 0));
    }
    let state = state?.as_ref().ok()?;
    let alive = |s: EndpointState| s == EndpointState::Attached;
    Some((
        state.publishers.iter().filter(|p| alive(p.state)).count(),
        state.subscribers.iter().filter(|s| alive(s.state)).count(),
    ))
}
