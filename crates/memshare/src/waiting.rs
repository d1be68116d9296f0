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

/// A moment read from the coarse clock (`sys::coarse_clock`), for a
/// throttle looked at on every call: a few nanoseconds a read, where
/// [`Instant::now`] reads the time-stamp counter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoarseInstant(u64);

impl CoarseInstant {
    /// Now, as the coarse clock reads it.
    pub(crate) fn now() -> CoarseInstant {
        CoarseInstant(crate::sys::coarse_clock().0)
    }

    /// The time since this moment, never less than what really passed:
    /// each of the two readings may be up to one resolution behind, so
    /// the difference is rounded up by the resolution (it may then be up
    /// to two resolutions more than what passed).
    pub(crate) fn elapsed(self) -> Duration {
        let (now, resolution) = crate::sys::coarse_clock();
        Duration::from_nanos(now.saturating_sub(self.0).saturating_add(resolution))
    }
}

/// The shortest park slice (unless the deadline is nearer).
const MIN_SLICE: Duration = Duration::from_micros(100);

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
    /// interval, at most what is left before the deadline, and ending no
    /// later than `due()` (asked only before a park): when the caller's last answer about its peer's
    /// liveness expires; the caller asks afresh after every park, so a peer
    /// that dies is noticed within [`LIVENESS_INTERVAL`] of its death, not
    /// a whole slice after an answer that was still fresh when the wait
    /// began). `None` once the deadline has passed (the clock is read only
    /// now and then while spinning).
    pub(crate) fn next_within(&mut self, due: impl FnOnce() -> Duration) -> Option<Step> {
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
        // Never a zero park (a futex wait that returns at once is a spin
        // with system calls).
        let slice = due().clamp(MIN_SLICE, LIVENESS_INTERVAL);
        let slice = self.deadline.map_or(slice, |d| {
            d.saturating_duration_since(Instant::now()).min(slice)
        });
        Some(Step::Park(slice))
    }
}

/// How long opening a channel or a service by name waits for its creator to
/// write the header. The name appears when the segment is created and the
/// magic a few microseconds later; an open in between finds zeros. A
/// segment still zero after this long is not one (or its creator died
/// before formatting it).
pub(crate) const FORMAT_GRACE: Duration = Duration::from_secs(2);

/// Runs `attach` on the segment `name` just opened, again every millisecond
/// (for at most [`FORMAT_GRACE`]) while it is refused as not a channel or
/// service and its first 8 bytes, where every magic goes, are still zero.
pub(crate) fn once_formatted<T>(
    segment: &crate::Segment,
    attach: impl FnMut(&crate::Segment) -> crate::Result<T>,
) -> crate::Result<T> {
    once_formatted_until(segment, Instant::now() + FORMAT_GRACE, attach)
}

/// [`once_formatted`], waiting until `deadline` at the latest (an open
/// with a timeout: whichever comes first).
pub(crate) fn once_formatted_until<T>(
    segment: &crate::Segment,
    deadline: Instant,
    mut attach: impl FnMut(&crate::Segment) -> crate::Result<T>,
) -> crate::Result<T> {
    use crate::Error;
    let deadline = deadline.min(Instant::now() + FORMAT_GRACE);
    // The magic may be written between a refusal and the look at it:
    // a refusal with the magic there is final only at the second try.
    let mut last_try = false;
    loop {
        match attach(segment) {
            Err(Error::NotAChannel { .. } | Error::NotAService { .. })
                if !last_try && Instant::now() < deadline =>
            {
                if magic_unwritten(segment) {
                    std::thread::sleep(Duration::from_millis(1));
                } else {
                    last_try = true;
                }
            }
            other => return other,
        }
    }
}

/// Whether `segment` starts with 8 zero bytes (no magic written yet).
fn magic_unwritten(segment: &crate::Segment) -> bool {
    segment.len() >= 8
        && segment
            .map_readonly(..8)
            .and_then(|view| view.read_pod::<u64>(0))
            .is_ok_and(|magic| magic == 0)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::CoarseInstant;
    use std::time::{Duration, Instant};

    /// The coarse clock's elapsed time is never less than what passed (the
    /// liveness throttle must not ask a peer later than every interval),
    /// whatever the phase of the timer tick: over many short waits of
    /// different lengths, some cross a tick and some do not.
    #[test]
    fn coarse_elapsed_is_never_less_than_what_passed() {
        for n in 0..200u64 {
            let coarse = CoarseInstant::now();
            let precise = Instant::now();
            let wait = Duration::from_micros(37 * (n % 97));
            while precise.elapsed() < wait {
                std::hint::spin_loop();
            }
            let passed = precise.elapsed();
            let said = coarse.elapsed();
            assert!(
                said >= passed,
                "round {n}: {said:?} said, {passed:?} passed"
            );
            // And not far more: two resolutions at most (a tick is 1-10 ms).
            assert!(
                said <= passed + Duration::from_millis(25),
                "round {n}: {said:?} said, {passed:?} passed"
            );
        }
    }
}
