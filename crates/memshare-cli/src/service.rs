//! What `pub`, `sub`, `ls` and `info` share about publish-subscribe
//! services.

use std::time::{Duration, Instant};

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
