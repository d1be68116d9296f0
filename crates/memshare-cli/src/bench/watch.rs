//! Watching the peers of the case being measured: a peer that fails
//! (killed, or exits with an error) ends the benchmark's waits for it at
//! once, instead of at their deadline (the measurement and half a minute
//! more), and the case reports the peer's failure, not the silence it left.
//!
//! The waits that need this are those no library liveness check ends: raw
//! words (the probe, the raw transports), and the request/response servers
//! waiting for their clients' end markers. A memshare channel, subscriber
//! or client sees its peer's death by itself and says `Disconnected`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether a peer of the case being measured has failed (one case at a
/// time runs in a benchmark process).
static PEER_FAILED: AtomicBool = AtomicBool::new(false);

/// How often the watcher looks at the peers, and the longest a wait that
/// can only be ended by its deadline sleeps before it looks again.
pub const LOOK: Duration = Duration::from_millis(20);

/// Whether a peer of the case being measured has failed.
pub fn peer_failed() -> bool {
    PEER_FAILED.load(Ordering::Relaxed)
}

/// Whether a wait that gives up at `deadline` gives up now: the deadline
/// passed, or a peer failed.
pub fn expired(deadline: Instant) -> bool {
    peer_failed() || Instant::now() > deadline
}

/// How long a wait may sleep before it looks at [`expired`] again: until
/// `deadline`, at most [`LOOK`]; zero once expired.
pub fn slice(deadline: Instant) -> Duration {
    if peer_failed() {
        return Duration::ZERO;
    }
    deadline.saturating_duration_since(Instant::now()).min(LOOK)
}

/// Runs `body` while a thread asks `failed` every [`LOOK`] whether a peer
/// failed, and if one did, makes [`expired`] true until `body` returns.
pub fn while_watching<R>(failed: impl Fn() -> bool + Sync, body: impl FnOnce() -> R) -> R {
    PEER_FAILED.store(false, Ordering::Relaxed);
    let done = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if failed() {
                    PEER_FAILED.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::park_timeout(LOOK);
            }
        });
        let out = body();
        done.store(true, Ordering::Relaxed);
        watcher.thread().unpark();
        out
    });
    PEER_FAILED.store(false, Ordering::Relaxed);
    out
}
