//! Peers' deaths told by the kernel, for the wait sets and the async
//! notifier: the pid watches of a member's peers ([`PeerWatch`]), and the
//! sleepers a watched death wakes ([`Parked`]).
//!
//! A member whose peers' processes are all watched (`sys::watch_pid`, a
//! pidfd on Linux) needs no lock query while it waits: a death wakes
//! whoever sleeps on it, which then asks every member's peers. Its peers
//! are asked every [`SLOW_ROUND`] anyway (the safety net for a pid that
//! is not the peer's: a peer in another pid namespace, one that wrote a
//! wrong pid). A member whose peers cannot all be watched (one wrote no
//! pid, no pidfd here, Windows) is asked every liveness interval, as
//! before.

use std::sync::Mutex;
use std::time::Duration;

use super::member::Member;
use crate::primitive::FutexWord;

/// How often the peers of members whose peers' deaths the kernel tells
/// (a pidfd per peer process) are asked anyway: the safety net for a pid
/// that is not the peer's (a peer in another pid namespace, or one that
/// wrote a wrong pid).
pub(crate) const SLOW_ROUND: Duration = Duration::from_secs(5);

/// The pid watches of one member's peers.
#[derive(Default)]
pub(crate) struct PeerWatch {
    /// The processes the member's words named as its peers at the last
    /// look (sorted), or `None` if they could not all be named.
    wanted: Option<Vec<u32>>,
    /// Those of them watched (`sys::watch_pid`): all but the ones that
    /// could not be (no such process, no pidfd here).
    pids: Vec<u32>,
    /// Whether those watches cover every peer (else the peers are asked
    /// every liveness interval), as of the last look at the pids.
    covered: bool,
    /// Whether the peers' locks were asked since the pids last changed (a
    /// new watch is trusted only after that: the pid may name another
    /// process, or a peer that died before the watch began).
    pub(crate) asked: bool,
    /// The pids named at this look (a buffer kept between looks).
    scratch: Vec<u32>,
}

impl PeerWatch {
    /// Watches the processes `member`'s words name as its peers now;
    /// whether anything changed (then `asked` is cleared: the caller asks
    /// the peers' locks before it trusts the watches).
    ///
    /// Compared with what the words named at the last look, not with what
    /// is watched: a pid that cannot be watched is not tried again at every
    /// look (which re-watched every other pid too, and a zombie's pidfd,
    /// readable from the start, counted a death at each: the notifier
    /// spun). Only the pids that came or went change watches.
    pub(crate) fn refresh(&mut self, member: &Member) -> bool {
        let named = member.peer_pids_into(&mut self.scratch);
        self.scratch.sort_unstable();
        self.scratch.dedup();
        if named == self.wanted.is_some()
            && self.wanted.as_deref().is_none_or(|w| *w == *self.scratch)
        {
            return false;
        }
        let named = named.then(|| self.scratch.clone());
        let now = named.as_deref().unwrap_or_default();
        let mut watched = Vec::with_capacity(now.len());
        // Every peer named and watched (none at all: nothing to ask).
        let mut covered = named.is_some();
        for &pid in now {
            if self.pids.contains(&pid) || crate::sys::watch_pid(pid) {
                watched.push(pid);
            } else {
                covered = false;
            }
        }
        for &pid in &self.pids {
            if !watched.contains(&pid) {
                crate::sys::unwatch_pid(pid);
            }
        }
        self.pids = watched;
        self.wanted = named;
        self.covered = covered;
        self.asked = false;
        true
    }

    /// Whether the watches cover every peer (as of the last
    /// [`refresh`](PeerWatch::refresh)): the member's peers need not be
    /// asked every liveness interval.
    pub(crate) fn covered(&self) -> bool {
        self.covered
    }

    /// Gives up every watch (the member is no longer waited on).
    pub(crate) fn unwatch(&mut self) {
        for pid in self.pids.drain(..) {
            crate::sys::unwatch_pid(pid);
        }
        self.wanted = None;
        self.covered = false;
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        self.unwatch();
    }
}

/// The sleepers a death wakes: per parked wait set, a word of its sleep,
/// by the address of the word (in a mapping its [`Parked`] borrows).
static PARKED: Mutex<Vec<(u64, usize)>> = Mutex::new(Vec::new());

/// A wait set about to sleep, registered so that a watched process's
/// death wakes it; unregistered when dropped.
///
/// The handshake with [`wake_parked`] (which runs after the count of
/// deaths went up): the set registers, snapshots its words, then reads
/// the count of deaths, and sleeps only if the count is the one it asked
/// its members' peers under. A death counted after that read bumps a word
/// the set snapshotted (through this registration, made before), so its
/// sleep returns at once or is woken; one counted before it, the read
/// sees. Bumping a member's word is what every peer's wake does (its value
/// is only a wake count), so the member's other sleepers (its endpoint's
/// own call, the notifier, other processes' sets) at most look again.
pub(crate) struct Parked<'a> {
    id: u64,
    _word: std::marker::PhantomData<&'a FutexWord>,
}

impl<'a> Parked<'a> {
    /// Registers a sleeper on `word` (one of the words it will sleep on).
    pub(crate) fn new(word: &'a FutexWord) -> Parked<'a> {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static HOOKED: std::sync::Once = std::sync::Once::new();
        HOOKED.call_once(|| crate::sys::on_death(wake_parked));
        let id = NEXT.fetch_add(1, Relaxed);
        let addr = word as *const FutexWord as usize;
        lock().push((id, addr));
        Parked {
            id,
            _word: std::marker::PhantomData,
        }
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        lock().retain(|&(id, _)| id != self.id);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, usize)>> {
    // Entries are pushed and removed whole: a panic elsewhere leaves the
    // list consistent.
    PARKED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A watched process died: wakes every parked set, by a word it sleeps on.
fn wake_parked() {
    for &(_, addr) in lock().iter() {
        // The word is in a mapping borrowed by the `Parked` that registered
        // it, which removes it (under this lock) before the borrow ends.
        // SAFETY: so it is mapped; a `FutexWord` is an atomic, bumped from any thread.
        let word = unsafe { &*(addr as *const FutexWord) };
        word.bump_and_wake();
    }
}
