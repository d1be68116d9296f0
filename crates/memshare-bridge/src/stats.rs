//! What a bridge counts, per service.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one carried service (all start at 0 when the bridge
/// starts). Relaxed atomics: each is a count read for reporting, ordered
/// with nothing.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub puts: AtomicU64,
    pub published: AtomicU64,
    pub lost: AtomicU64,
    pub refused: AtomicU64,
    pub too_large: AtomicU64,
    pub calls: AtomicU64,
    pub declined: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self, service: &str, kind: &'static str) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            service: service.to_owned(),
            kind,
            sent: get(&self.sent),
            puts: get(&self.puts),
            published: get(&self.published),
            lost: get(&self.lost),
            refused: get(&self.refused),
            too_large: get(&self.too_large),
            calls: get(&self.calls),
            declined: get(&self.declined),
        }
    }
}

/// A snapshot of one service's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The service.
    pub service: String,
    /// `"pubsub"` or `"rpc"`.
    pub kind: &'static str,
    /// Publish-subscribe: local messages sent to Zenoh.
    pub sent: u64,
    /// Publish-subscribe: the Zenoh publications they went out in (fewer
    /// than `sent` when messages waiting together went in one).
    pub puts: u64,
    /// Publish-subscribe: remote messages published into the local service.
    pub published: u64,
    /// Publish-subscribe: remote messages that never came, by the gaps in
    /// their publishers' sequence numbers (lost on the origin machine by
    /// `DropOldest`, or in between).
    pub lost: u64,
    /// Publications and queries refused: not in the bridge's wire format,
    /// or sent by this bridge itself.
    pub refused: u64,
    /// Remote messages or responses too long for the local service.
    pub too_large: u64,
    /// Request/response: calls answered.
    pub calls: u64,
    /// Request/response: calls declined (no server, an error, a timeout).
    pub declined: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == "rpc" {
            write!(
                f,
                "rpc {}: {} calls answered, {} declined, {} refused, {} too large",
                self.service, self.calls, self.declined, self.refused, self.too_large
            )
        } else {
            write!(
                f,
                "pubsub {}: {} sent, {} published, {} lost, {} refused, {} too large, {} puts",
                self.service,
                self.sent,
                self.published,
                self.lost,
                self.refused,
                self.too_large,
                self.puts
            )
        }
    }
}
