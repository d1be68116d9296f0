//! Waiting for a peer, the same way for every kind of endpoint: spin, then
//! park on a futex word in slices of at most [`LIVENESS_INTERVAL`], with an
//! optional deadline. What to park on and what "blocked" means is each
//! protocol's business; the policy is here.

use std::time::{Duration, Instant};

/// How an endpoint waits when it cannot proceed (receiver: the ring is
/// empty; sender: the ring is full).
///
/// | strategy | latency | CPU while waiting |
/// |---|---|---|
/// | `Spin` | lowest: a cache-line transfer | one core at 100 % |
/// | `SpinThenPark` (default) | as `Spin` if the peer answers within the spin, else a futex wake-up (microseconds) | bounded spin, then none |
/// | `Park` | a futex wake-up | none |
///
/// Whatever the strategy, a parked endpoint wakes at least every
/// [`LIVENESS_INTERVAL`] to check whether its peer is still alive, so a
/// peer that dies is noticed within that bound, and a spinning endpoint
/// checks as often.
///
/// ```
/// use memshare::channel::{Receiver, WaitStrategy};
/// # fn main() -> memshare::Result<()> {
/// let mut rx = Receiver::create(4096)?;
/// rx.set_wait_strategy(WaitStrategy::Spin);
/// assert_eq!(rx.wait_strategy(), WaitStrategy::Spin);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin: never sleep.
    Spin,
    /// Spin this many times (each a CPU spin-loop hint), then park.
    SpinThenPark {
        /// Spin iterations before parking.
        spins: u32,
    },
    /// Park at once.
    Park,
}

/// The default spin of [`WaitStrategy::SpinThenPark`]: a few microseconds.
pub const DEFAULT_SPINS: u32 = 4000;

/// How often a waiting endpoint checks that its peer is alive.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

impl Default for WaitStrategy {
    fn default() -> WaitStrategy {
        WaitStrategy::SpinThenPark {
            spins: DEFAULT_SPINS,
        }
    }
}

/// The rounds of one blocking call: how many spins are left, the deadline,
/// and whether the last round parked.
#[derive(Debug)]
pub(crate) struct Rounds {
    round: u64,
    spins: u64,
    deadline: Option<Instant>,
    parked: bool,
}

/// What to do in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Spin once (a CPU spin-loop hint), then look again.
    Spin,
    /// Park for at most this long, then look again.
    Park(Duration),
}

impl Rounds {
    pub(crate) fn new(strategy: WaitStrategy, deadline: Option<Instant>) -> Rounds {
        let spins = match strategy {
            WaitStrategy::Spin => u64::MAX,
            WaitStrategy::SpinThenPark { spins } => u64::from(spins),
            WaitStrategy::Park => 0,
        };
        Rounds {
            round: 0,
            spins,
            deadline,
            parked: false,
        }
    }

    /// Whether the caller should ask whether its peer is alive before this
    /// round: at the first round, every 256 rounds, and after every park
    /// (the ask itself is rate-limited to one system call per
    /// [`LIVENESS_INTERVAL`] by the caller).
    pub(crate) fn check_peer(&self) -> bool {
        self.parked || self.round % 256 == 0
    }

    /// Whether the last round parked: a peer's liveness asked now must not
    /// come from before the park (its death would be noticed a slice late).
    pub(crate) fn parked(&self) -> bool {
        self.parked
    }

    /// The next round: spin, or park for a slice (at most the liveness
    /// interval, at most what is left before the deadline). `None` once the
    /// deadline has passed (the clock is read only now and then while
    /// spinning).
    pub(crate) fn next(&mut self) -> Option<Step> {
        // A u64 count of rounds never wraps in practice (a round is at
        // least a spin-loop hint).
        self.round += 1;
        let parking = self.round > self.spins;
        if parking || self.round % 256 == 0 {
            if let Some(deadline) = self.deadline {
                if Instant::now() >= deadline {
                    return None;
                }
            }
        }
        self.parked = parking;
        if !parking {
            return Some(Step::Spin);
        }
        let slice = self.deadline.map_or(LIVENESS_INTERVAL, |d| {
            d.saturating_duration_since(Instant::now())
                .min(LIVENESS_INTERVAL)
        });
        Some(Step::Park(slice))
    }
}
