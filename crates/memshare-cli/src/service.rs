//! What `pub`, `sub`, `ls` and `info` share about publish-subscribe
//! services.

use std::time::{Duration, Instant};

use memshare::channel::EndpointState;
use memshare::inspect::{NamedInfo, SegmentKind};
use memshare::pubsub::ServiceState;
use memshare::{Error, Segment};

/// How long `pub`, and `sub` without `--timeout`, wait for a creator to
/// write the header of a service whose name is already there.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Runs `attach` (an open of the service `name`) until it succeeds or fails
/// for good.
///
/// `Publisher::create` names the segment first and writes the service's
/// header (its magic) just after: an open in between fails with
/// `NotAService`. If the segment still starts with zeros where the magic
/// goes, that is a creator at work, and `attach` is tried again every
/// millisecond until `deadline`.
pub fn settled<T>(
    name: &str,
    deadline: Instant,
    mut attach: impl FnMut() -> memshare::Result<T>,
) -> memshare::Result<T> {
    loop {
        match attach() {
            Err(e @ Error::NotAService { .. }) => {
                if Instant::now() >= deadline || !header_unwritten(name) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// Whether the segment `name` starts with 8 zero bytes (no magic yet), or
/// is gone (worth another look as well).
fn header_unwritten(name: &str) -> bool {
    let segment = match Segment::open_readonly(name) {
        Ok(segment) => segment,
        Err(Error::NotFound { .. }) => return true,
        Err(_) => return false,
    };
    let mut magic = [0u8; 8];
    segment.len() >= 8
        && segment
            .map_readonly(..8)
            .and_then(|view| view.read_at(0, &mut magic))
            .is_ok()
        && magic == [0; 8]
}

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
