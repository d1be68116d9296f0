//! The wait set itself: its members, tokens, and the wait loop (look,
//! ask about the peers now and then, park).

use std::time::{Duration, Instant};

use super::liveness::{Parked, PeerWatch, SLOW_ROUND};
use super::member::Member;
use super::watch::{levels, park, Watch};
use crate::channel::{Receiver, Sender, TypedReceiver, TypedSender};
use crate::primitive::ManyWaiter;
use crate::pubsub::{Subscriber, TypedSubscriber};
use crate::rpc::{Client, Server};
use crate::waiting::LIVENESS_INTERVAL;
use crate::{Error, Result};

/// The most members a [`WaitSet`] holds: what one `futex_waitv` call
/// sleeps on (128), or one `WaitForMultipleObjects` on Windows (64) (see
/// the [module docs](super#the-limit-of-members)).
pub const MAX_MEMBERS: usize = crate::sys::WAIT_MANY_MAX;

/// The shortest park (unless the deadline is nearer): a futex wait that
/// returns at once is a spin with system calls.
const MIN_SLICE: Duration = Duration::from_micros(100);

/// Names a member of a [`WaitSet`]: what [`WaitSet::add`] returned, and
/// what a wait reports when that member is ready. Unique within its set
/// (a token is never reused, even after [`WaitSet::remove`]).
///
/// ```
/// use std::collections::HashMap;
/// use memshare::channel::Receiver;
/// use memshare::WaitSet;
/// # fn main() -> memshare::Result<()> {
/// let mut set = WaitSet::new()?;
/// let mut receivers = HashMap::new();
/// for _ in 0..3 {
///     let rx = Receiver::create(4096)?;
///     receivers.insert(set.add(&rx)?, rx);
/// }
/// assert_eq!(receivers.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl Token {
    /// The token as a number (the count of members added to its set
    /// before it).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The members a wait found ready: an iterator of their [`Token`]s, in the
/// order they were added. It owns its tokens (no borrow of the set), so
/// the set can be changed while it is walked.
///
/// ```
/// use std::time::Duration;
/// use memshare::channel::{Receiver, Sender};
/// use memshare::WaitSet;
/// # fn main() -> memshare::Result<()> {
/// let rx = Receiver::create(4096)?;
/// let mut tx = Sender::attach(rx.segment())?;
/// let mut set = WaitSet::new()?;
/// let token = set.add(&rx)?;
/// tx.send(b"hi")?;
/// let ready = set.wait_timeout(Duration::from_secs(5))?;
/// assert_eq!(ready.len(), 1);
/// assert!(ready.contains(token));
/// assert_eq!(ready.collect::<Vec<_>>(), [token]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Ready {
    tokens: [Token; MAX_MEMBERS],
    next: usize,
    end: usize,
}

impl Ready {
    fn empty() -> Ready {
        Ready {
            tokens: [Token(0); MAX_MEMBERS],
            next: 0,
            end: 0,
        }
    }

    /// How many members are left to walk.
    pub fn len(&self) -> usize {
        self.end - self.next
    }

    /// Whether none is left (the wait timed out, if nothing was walked).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `token`'s member is among those left to walk.
    pub fn contains(&self, token: Token) -> bool {
        self.tokens[self.next..self.end].contains(&token)
    }
}

impl Iterator for Ready {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if self.next == self.end {
            return None;
        }
        self.next += 1;
        Some(self.tokens[self.next - 1])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Ready {}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(&self.tokens[self.next..self.end])
            .finish()
    }
}

mod sealed {
    /// Makes the member a set holds of an endpoint.
    pub trait Readiness {
        fn member(&self) -> crate::Result<super::Member>;
    }

    /// As [`Readiness`], for a sender waiting for room.
    pub trait Room {
        fn member(&self) -> crate::Result<super::Member>;
    }
}

/// An endpoint a [`WaitSet`] can wait on for something to receive:
/// [`channel::Receiver`](crate::channel::Receiver),
/// [`TypedReceiver`](crate::channel::TypedReceiver),
/// [`pubsub::Subscriber`](crate::pubsub::Subscriber),
/// [`TypedSubscriber`](crate::pubsub::TypedSubscriber),
/// [`rpc::Server`](crate::rpc::Server) and [`rpc::Client`](crate::rpc::Client).
/// (Sealed: implemented by memshare's endpoints only.)
pub trait Waitable: sealed::Readiness {}

/// An endpoint a [`WaitSet`] can wait on for room to send:
/// [`channel::Sender`](crate::channel::Sender) and
/// [`TypedSender`](crate::channel::TypedSender). (Sealed.)
pub trait Writable: sealed::Room {}

macro_rules! waitable {
    ($($ty:ty => |$e:ident| $make:expr;)*) => {$(
        impl sealed::Readiness for $ty {
            fn member(&self) -> Result<Member> {
                let $e = self;
                $make
            }
        }
        impl Waitable for $ty {}
    )*};
}

waitable! {
    Receiver => |rx| Member::receiver(rx);
    Subscriber => |sub| Member::subscriber(sub);
    Server => |server| Member::server(server);
    Client => |client| Member::client(client);
}

impl<T: bytemuck::Pod> sealed::Readiness for TypedReceiver<T> {
    fn member(&self) -> Result<Member> {
        Member::receiver(self.inner_ref())
    }
}
impl<T: bytemuck::Pod> Waitable for TypedReceiver<T> {}

impl<T: bytemuck::Pod> sealed::Readiness for TypedSubscriber<T> {
    fn member(&self) -> Result<Member> {
        Member::subscriber(self.inner())
    }
}
impl<T: bytemuck::Pod> Waitable for TypedSubscriber<T> {}

impl sealed::Room for Sender {
    fn member(&self) -> Result<Member> {
        Member::sender(self)
    }
}
impl Writable for Sender {}

impl<T: bytemuck::Pod> sealed::Room for TypedSender<T> {
    fn member(&self) -> Result<Member> {
        Member::sender(self.inner_ref())
    }
}
impl<T: bytemuck::Pod> Writable for TypedSender<T> {}

/// One thread waiting on many endpoints: see the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use memshare::rpc::{Client, Server, ServerConfig};
/// use memshare::WaitSet;
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-waitset-rpc-{}", std::process::id());
/// let server = Server::create(&name, ServerConfig::new())?;
/// let mut client = Client::connect(&name)?; // another process, usually
///
/// let mut set = WaitSet::new()?;
/// let s = set.add(&server)?;
/// let c = set.add(&client)?;
/// assert!(set.wait_timeout(Duration::from_millis(1))?.is_empty());
///
/// let pending = client.send_request(b"ping")?;
/// assert!(set.wait()?.contains(s));
/// server.try_recv()?.expect("reported: a request").respond(b"pong")?;
/// assert!(set.wait()?.contains(c));
/// assert_eq!(&*client.try_receive_response(&pending)?.expect("reported"), b"pong");
/// # Ok(()) }
/// ```
pub struct WaitSet {
    tokens: Vec<Token>,
    members: Vec<Member>,
    /// Per member, the watches of its peers' processes.
    watches: Vec<PeerWatch>,
    /// The members the last wait reported (a bit each): their peers'
    /// pids are looked at again at the next (a peer that left, often why
    /// a member is reported, may be followed by another).
    reported: u128,
    /// The next token's number.
    next: u64,
    /// When the peers of the members no watch covers were last asked
    /// about (all at once).
    last_round: Option<Instant>,
    /// When the peers of every member were last asked about.
    last_slow: Option<Instant>,
    /// `sys::deaths()` when they were.
    deaths: u64,
    /// The sleep on the members' words (whose waits may stay queued from
    /// one park to the next: see `primitive::ManyWaiter`).
    waiter: ManyWaiter,
}

impl WaitSet {
    /// An empty wait set.
    pub fn new() -> Result<WaitSet> {
        Ok(WaitSet {
            tokens: Vec::new(),
            members: Vec::new(),
            watches: Vec::new(),
            reported: 0,
            next: 0,
            last_round: None,
            last_slow: None,
            deaths: 0,
            waiter: ManyWaiter::default(),
        })
    }

    /// Adds `endpoint`, to be reported when it has something to receive
    /// (see the [module docs](super#what-ready-means) for each kind). The
    /// endpoint is not borrowed: the set keeps its own reference to the
    /// shared memory. [`Error::LimitReached`] if the set has
    /// [`MAX_MEMBERS`] already.
    pub fn add<E: Waitable + ?Sized>(&mut self, endpoint: &E) -> Result<Token> {
        self.insert(|| endpoint.member())
    }

    /// Adds a channel sender, to be reported when there is room in its
    /// ring for the smallest message (or its receiver is gone): a sender
    /// waiting for room alongside other endpoints.
    ///
    /// ```
    /// use std::time::Duration;
    /// use memshare::channel::{Receiver, Sender};
    /// use memshare::WaitSet;
    /// # fn main() -> memshare::Result<()> {
    /// let mut tx = Sender::create(64)?;
    /// let mut rx = Receiver::attach(tx.segment())?;
    /// while tx.try_send(&[7; 16])? {} // full
    /// let mut set = WaitSet::new()?;
    /// let room = set.add_writable(&tx)?;
    /// assert!(set.wait_timeout(Duration::from_millis(1))?.is_empty());
    /// drop(rx.recv()?); // frees room
    /// assert!(set.wait()?.contains(room));
    /// assert!(tx.try_send(&[8; 16])?);
    /// # Ok(()) }
    /// ```
    pub fn add_writable<S: Writable + ?Sized>(&mut self, sender: &S) -> Result<Token> {
        self.insert(|| sender.member())
    }

    fn insert(&mut self, member: impl FnOnce() -> Result<Member>) -> Result<Token> {
        if self.members.len() >= MAX_MEMBERS {
            return Err(Error::LimitReached {
                object: "wait set".into(),
                what: format!(
                    "a wait set holds at most {MAX_MEMBERS} members (what one wait of this \
                     system sleeps on at once): use another set, in another thread"
                ),
                limit: MAX_MEMBERS as u64,
            });
        }
        let member = member()?;
        let token = Token(self.next);
        self.next += 1;
        self.tokens.push(token);
        self.members.push(member);
        self.watches.push(PeerWatch::default());
        // Its peers' pids are looked at in the next wait.
        self.reported |= 1 << (self.members.len() - 1);
        Ok(token)
    }

    /// Removes the member `token` names: `false` if it is not a member
    /// (removed already, or another set's).
    ///
    /// ```
    /// use memshare::channel::Receiver;
    /// use memshare::WaitSet;
    /// # fn main() -> memshare::Result<()> {
    /// let rx = Receiver::create(4096)?;
    /// let mut set = WaitSet::new()?;
    /// let token = set.add(&rx)?;
    /// assert!(set.contains(token));
    /// assert!(set.remove(token));
    /// assert!(!set.remove(token));
    /// assert!(set.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn remove(&mut self, token: Token) -> bool {
        match self.tokens.iter().position(|&t| t == token) {
            Some(i) => {
                // Before the member's mappings go: a wait queued on its
                // word must not pass for one on a word mapped there later.
                self.waiter.forget();
                self.tokens.remove(i);
                self.members.remove(i);
                self.watches.remove(i);
                // (The bits after it moved: look at every member's pids.)
                self.reported = u128::MAX;
                true
            }
            None => false,
        }
    }

    /// Whether `token` names a member of this set.
    pub fn contains(&self, token: Token) -> bool {
        self.tokens.contains(&token)
    }

    /// How many members the set has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members' tokens, in the order they were added.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.tokens.iter().copied()
    }

    /// Waits until a member is ready; returns the ones that are.
    /// [`Error::InvalidInput`] if the set is empty (it would never
    /// return).
    pub fn wait(&mut self) -> Result<Ready> {
        if self.members.is_empty() {
            return Err(Error::InvalidInput {
                object: "wait set".into(),
                reason: "it has no members: a wait would never return".into(),
            });
        }
        self.wait_until(None, true, false)
    }

    /// Like [`WaitSet::wait`], for at most `timeout`: empty if no member
    /// became ready meanwhile. (An empty set sleeps for `timeout`.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use memshare::channel::{Receiver, Sender};
    /// use memshare::WaitSet;
    /// # fn main() -> memshare::Result<()> {
    /// let rx = Receiver::create(4096)?;
    /// let _tx = Sender::attach(rx.segment())?;
    /// let mut set = WaitSet::new()?;
    /// set.add(&rx)?;
    /// assert!(set.wait_timeout(Duration::from_millis(5))?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Ready> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_until(deadline, true, false)
    }

    /// The members ready now, without waiting (empty if none).
    pub fn try_wait(&mut self) -> Result<Ready> {
        self.wait_until(None, false, false)
    }

    /// [`WaitSet::try_wait`], asking also about the peers of the members
    /// whose endpoint was asked to look afresh (the recheck request the
    /// notifier's member sets when it finds a peer gone) whether or not a
    /// question about them is due: the async wait, woken by the notifier,
    /// whose own members may have found a peer gone that this set has not
    /// asked about yet (a wrong pid, which no watch tells of: the set would
    /// otherwise report nothing until its next round of questions, up to
    /// 5 s later, and the future would be woken again and again
    /// meanwhile). The other members' peers are asked only when due, as in
    /// any wait: the woken poll asked every member's, one lock query per
    /// peer (127 for a set of 128 woken by one message).
    #[cfg(feature = "async")]
    pub(crate) fn try_wait_asking(&mut self) -> Result<Ready> {
        self.wait_until(None, false, true)
    }

    /// Looks at the members, asks about their peers when that is due,
    /// parks while none is ready.
    ///
    /// Asking about a member's peers is a lock query per peer. Those of a
    /// member whose peers' processes are all watched (`PeerWatch`) are
    /// asked when the watches change, after a watched process died
    /// (anywhere in this process: the death wakes every parked set), and
    /// every `SLOW_ROUND`; the others every liveness interval. So a set
    /// whose members' peers are all watched sleeps without a timer of its
    /// own but the slow round's. `asking`: those of the members whose
    /// endpoint was asked to look afresh too (`try_wait_asking`).
    fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        block: bool,
        asking: bool,
    ) -> Result<Ready> {
        loop {
            let mut ready = levels(&self.members);
            let now = Instant::now();
            let due = |last: Option<Instant>, every: Duration| {
                last.is_none_or(|t| now.duration_since(t) >= every)
            };
            let round = due(self.last_round, LIVENESS_INTERVAL);
            let deaths = crate::sys::deaths();
            let slow = due(self.last_slow, SLOW_ROUND) || deaths != self.deaths;
            let (mut uncovered, mut covered) = (false, false);
            let looks = std::mem::take(&mut self.reported) | if round { u128::MAX } else { 0 };
            for (i, (m, w)) in self.members.iter_mut().zip(&mut self.watches).enumerate() {
                if ready & 1 << i != 0 {
                    if slow {
                        // Not asked in this round, whose death count is
                        // taken as seen to: asked once it is not ready
                        // (a dead peer's last messages, being received).
                        w.asked = false;
                    }
                    continue;
                }
                if slow || looks & 1 << i != 0 {
                    w.refresh(m);
                }
                let ask = slow
                    || !w.asked
                    || (round && !w.covered())
                    || m.gone()
                    || (asking && m.recheck_requested());
                if ask {
                    PEER_LOOKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let gone = m.check_peers()?;
                    // (Trusted only once asked: an error asks again.)
                    w.asked = true;
                    if gone {
                        ready |= 1 << i;
                    }
                }
                uncovered |= !w.covered();
                covered |= w.covered();
            }
            if round {
                self.last_round = Some(now);
            }
            if slow {
                self.last_slow = Some(now);
                self.deaths = deaths;
            }
            if ready != 0 {
                self.reported = ready;
                return Ok(self.report(ready));
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if !block || left.is_zero() {
                return Ok(Ready::empty());
            }
            // Until the next round of questions is due (the members' no
            // watch covers, or every member's), or the deadline.
            let until = |last: Option<Instant>, every: Duration| {
                every.saturating_sub(last.map_or(Duration::ZERO, |t| t.elapsed()))
            };
            let mut slice = until(self.last_slow, SLOW_ROUND);
            if uncovered {
                slice = slice.min(until(self.last_round, LIVENESS_INTERVAL));
            }
            let slice = slice.max(MIN_SLICE).min(left);
            let Some(first) = self.members.first() else {
                std::thread::sleep(slice);
                continue;
            };
            // Registered before the snapshots, the count of deaths read
            // after them (`Parked`): a death from here on wakes the sleep.
            // (Only when a member relies on watches: the others are asked
            // every round anyway.)
            let parked = covered.then(|| Parked::new(first.word()));
            let (members, watches, deaths) = (&self.members, &mut self.watches, self.deaths);
            park(members, slice, &mut self.waiter, || {
                // Peers come and go (a server's clients, a subscriber's
                // publishers, a channel's peer replaced): the pids are
                // looked at with the flags set, so that one that came
                // before (a client's connect rang while no flag was up) is
                // watched before the sleep; a change makes another round,
                // which asks about it. (Loads, and no allocation when the
                // pids are the same.)
                let mut came = false;
                for (m, w) in members.iter().zip(watches.iter_mut()) {
                    came |= w.refresh(m);
                }
                !came && crate::sys::deaths() == deaths
            });
            drop(parked);
        }
    }

    /// The members (the async wait listens on each).
    #[cfg(feature = "async")]
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    fn report(&self, ready: u128) -> Ready {
        let mut out = Ready::empty();
        let mut bits = ready;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            out.tokens[out.end] = self.tokens[i];
            out.end += 1;
        }
        out
    }
}

/// How many times this process's wait sets asked about a member's peers
/// (each time, a lock query per peer).
static PEER_LOOKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times this process's wait sets have asked about a member's
/// peers (each time, a lock query per peer): for tests, which check that
/// a parked set whose members' peers are watched does not poll them.
#[doc(hidden)]
pub fn peer_looks() -> u64 {
    PEER_LOOKS.load(std::sync::atomic::Ordering::Relaxed)
}

impl std::fmt::Debug for WaitSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitSet")
            .field("members", &self.tokens)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::WaitSet;
    use crate::channel::{Receiver, Sender};
    use std::time::Duration;

    /// A removed member's word is no longer waited on: its waits are
    /// cancelled before its mappings go (a new member mapped at the same
    /// address would otherwise pass for one waited on, and its wakes would
    /// be lost). Planted, `remove` without the forget: 2 waits still
    /// queued.
    #[test]
    fn remove_stops_the_waits_the_sets_sleeps_left_queued() {
        let rx = Receiver::create(4096).unwrap();
        let _tx = Sender::attach(rx.segment()).unwrap();
        let other = Receiver::create(4096).unwrap();
        let _other_tx = Sender::attach(other.segment()).unwrap();
        let mut set = WaitSet::new().unwrap();
        let token = set.add(&rx).unwrap();
        set.add(&other).unwrap();
        assert!(set
            .wait_timeout(Duration::from_millis(2))
            .unwrap()
            .is_empty());
        // (Where the machine gives the ring: `sys`'s tests say whether.)
        if set.waiter.uses_ring() {
            assert_eq!(set.waiter.queued(), 2, "the sleep's waits, left queued");
        }
        assert!(set.remove(token));
        assert_eq!(set.waiter.queued(), 0);
        assert!(set
            .wait_timeout(Duration::from_millis(2))
            .unwrap()
            .is_empty());
        if set.waiter.uses_ring() {
            assert_eq!(set.waiter.queued(), 1, "the member left, queued again");
        }
    }
}
