//! The per-process notifier: threads that sleep on the futex words of
//! every endpoint an async task (or a readiness descriptor) waits on, and
//! wake the task (or signal the descriptor) when the endpoint has
//! something, its peer is gone, or it was dropped.
//!
//! Each endpoint that ever waited has one [`Registration`], kept in its
//! link (so shared by all its futures and by the wait sets it is a member
//! of), holding a slot in one worker: a wait set member of its own (its
//! own mapping of the endpoint's shared words) and the listeners waiting
//! on it (wakers, descriptors). A worker holds up to 127 slots; with its
//! control word that is the 128 words one `futex_waitv` sleeps on. Workers
//! are started when the first slot needs one, and sleep on their control
//! word alone (no CPU, no timer) while none of their slots has a listener.
//!
//! A worker's round, with the slots that have listeners:
//!
//! 1. (locked) Every liveness interval, ask whether their peers live (the
//!    wait set's `check_peers`); report those that are gone.
//! 2. (locked) `watch::prepare`: snapshot each member's word, set its flag
//!    or bit as the endpoint's own park does, SeqCst fence, look. Report
//!    the members found ready: their listeners are taken and woken (after
//!    the lock), their flags cleared. A listener may wait for less than
//!    anything its member reports (an rpc client's call, for its own
//!    slot's answer: `Listening::answers`): the member is looked at for
//!    what its listeners wait for together, and each is woken only if the
//!    member is ready for what it waits for (the others listen on).
//! 3. (unlocked) If none was ready, sleep on all the words and the control
//!    word at once, until the next liveness round at most.
//! 4. (locked) Clear the flags of the members armed in step 2; the next
//!    round looks again.
//!
//! A future that finds nothing adds its waker to its endpoint's slot under
//! the worker's lock and bumps the control word if the worker sleeps (the
//! worker snapshots it under the same lock before it sleeps), so the
//! worker's next step 2 covers the slot; if the message came before that
//! step's fence, its look sees it; if after, the peer sees the flag and
//! bumps the word the worker sleeps on. This is the wait set's argument
//! (`wait_set/watch.rs`, loom-checked there and, with the registration, in
//! `loom_model.rs` here).
//!
//! A forked child has a copy of the workers and of the endpoints'
//! registrations, without the threads: each worker remembers the count of
//! forks it was started under (`FORKS`, counted in the child by a
//! `pthread_atfork` handler), and a child makes workers and registrations
//! of its own, leaving the parent's alone (`Worker::here`). The forking
//! thread holds every worker's lock across the fork (`fork`).

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::primitive::{FutexWord, ManyWaiter};
use crate::wait_set::liveness::{PeerWatch, SLOW_ROUND};
use crate::wait_set::member::Member;
use crate::wait_set::watch::{prepare, Watch};
use crate::waiting::LIVENESS_INTERVAL;
use crate::Result;

/// Slots per worker: one `futex_waitv` sleeps on 128 words, one of which
/// is the worker's control word.
pub(crate) const SLOTS_PER_WORKER: usize = crate::sys::WAIT_MANY_MAX - 1;

/// The shortest sleep: a futex wait that returns at once is a spin with
/// system calls.
const MIN_SLICE: Duration = Duration::from_micros(100);

/// Who waits on a slot, taken (and woken) when the slot is reported.
pub(crate) enum Listener {
    /// A task: woken.
    Waker(Waker),
    /// A readiness descriptor: made readable.
    Event(Arc<crate::sys::Event>),
}

impl Listener {
    fn fire(self) {
        match self {
            Listener::Waker(w) => w.wake(),
            Listener::Event(e) => e.signal(),
        }
    }
}

/// A new listener id (futures and descriptors each take one, to find their
/// own listener again).
pub(crate) fn listener_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Relaxed)
}

/// A listener in a slot: its id, what it is, and what it waits for.
struct Listening {
    id: u64,
    listener: Listener,
    /// `None`: anything the member reports. `Some`: an rpc client's call,
    /// which waits for the answers in these slots (a bit each) only; the
    /// answer to another request in flight, not read yet, would otherwise
    /// wake it at every round, and it would find nothing for it and listen
    /// again: a spin until its own answer came.
    answers: Option<u64>,
}

struct Slot {
    member: Member,
    listeners: Vec<Listening>,
    /// The worker set the member's flag in its last step 2 and has not
    /// cleared it yet.
    armed: bool,
    /// The member's words are in the worker's current sleep: the member
    /// (and its mapping) is not dropped before the worker returns.
    in_sleep: bool,
    /// Its registration was dropped: freed once not in a sleep.
    dead: bool,
    /// The watches of its peers' processes.
    peers: PeerWatch,
    /// Whether the pids were looked at since the slot became active.
    fresh: bool,
}

impl Slot {
    /// Watches the processes the member's words name as its peers
    /// (`PeerWatch::refresh`); whether anything changed.
    fn refresh_pids(&mut self) -> bool {
        self.fresh = true;
        self.peers.refresh(&self.member)
    }

    /// Hands its listeners to `fired`, after a look at the pids its words
    /// name now. A peer that detached (often why it fires) is then no
    /// longer wanted, so that a peer attached by the time the slot is
    /// active again is asked about, though it names the same pid: a
    /// process that wrote "attached" back into the word of a peer that
    /// left (holding no lock) is found gone at the next round, not at the
    /// next slow round, 5 s later.
    fn fire(&mut self, fired: &mut Vec<Listener>) {
        self.refresh_pids();
        fired.extend(self.listeners.drain(..).map(|l| l.listener));
    }

    /// What the slot's listeners wait for, together: anything the member
    /// reports if one of them does, else the answers any of them waits
    /// for. The member is looked at for that in step 2.
    fn answers(&self) -> Option<u64> {
        self.listeners
            .iter()
            .try_fold(0, |all, l| l.answers.map(|a| all | a))
    }

    /// The member was found ready for what its listeners wait for
    /// together: hands to `fired` those it is ready for (all of them
    /// unless one waits for some answers only), as [`Slot::fire`]. A
    /// listener left waits on: it is looked at again in the next round.
    fn fire_ready(&mut self, fired: &mut Vec<Listener>) {
        if self.listeners.iter().all(|l| l.answers.is_none()) {
            return self.fire(fired);
        }
        let member = &self.member;
        let before = fired.len();
        let mut i = 0;
        while i < self.listeners.len() {
            if member.ready_for(self.listeners[i].answers) {
                fired.push(self.listeners.swap_remove(i).listener);
            } else {
                i += 1;
            }
        }
        if fired.len() != before {
            self.refresh_pids();
        }
    }

    fn unwatch(&mut self) {
        self.peers.unwatch();
    }

    fn active(&self) -> bool {
        !self.dead && !self.listeners.is_empty()
    }

    /// Clears the member's flag if the worker set it.
    fn disarm(&mut self) {
        if self.armed {
            self.member.disarm();
            self.armed = false;
        }
    }
}

#[derive(Default)]
struct State {
    slots: Vec<Option<Slot>>,
    /// Slots taken (registrations alive or not yet freed).
    taken: usize,
    /// The worker is between its step 2 and its step 4: it sleeps, or is
    /// about to. A registrant then bumps the control word.
    sleeping: bool,
    /// When the peers of the active slots that no pid watch covers were
    /// last asked about.
    last_round: Option<Instant>,
    /// When the peers of every active slot were last asked about (the
    /// safety net under the pid watches).
    last_slow: Option<Instant>,
    /// `sys::deaths()` as of the last full round.
    deaths: u64,
    /// Bumped at every slot freed (by the worker, or by a registration's
    /// drop): the worker's sleep then forgets the waits it left queued
    /// (a member mapped later at a freed one's address must not pass for
    /// one waited on). In practice the endpoint's drop wakes its word,
    /// which completes the wait first; this holds whatever the endpoint
    /// does.
    freed: u64,
}

/// One notifier thread and what it watches.
struct Worker {
    control: FutexWord,
    state: Mutex<State>,
    /// The count of forks it was started under (see [`forks`]).
    forks: u64,
}

impl Worker {
    /// Whether its thread runs in this process: not in a child forked
    /// since it started (the child has a copy of it, without the thread,
    /// and with its lock taken: see `fork`). A child leaves such a worker,
    /// and the registrations in it, alone.
    fn here(&self) -> bool {
        self.forks == forks()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a worker's round (none is expected) must not make
        // every later future panic too: the state is consistent between
        // statements that hold the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the worker out of its sleep (it then looks at its slots).
    fn kick(&self) {
        self.control.bump_and_wake();
    }

    fn run(&self) {
        let mut fired: Vec<Listener> = Vec::new();
        // The sleep, whose waits on the words may stay queued from one
        // round to the next (see `primitive::ManyWaiter`): this thread is
        // its only user.
        let mut waiter = ManyWaiter::default();
        // `State::freed` as of the last look, and whether a slot was freed
        // since the last forget (done before the next sleep, unlocked).
        let mut forgotten = 0;
        let mut forget = false;
        loop {
            let mut guard = self.lock();
            let st = &mut *guard;
            // Snapshot under the lock: a registrant that changes a slot
            // after the unlock below bumps the word after this.
            let control = self.control.load();
            // Free the slots of dropped registrations.
            for s in st.slots.iter_mut() {
                if s.as_ref().is_some_and(|s| s.dead && !s.in_sleep) {
                    if let Some(mut slot) = s.take() {
                        slot.unwatch();
                        st.freed += 1;
                    }
                }
            }
            if st.freed != forgotten {
                forget = true;
                forgotten = st.freed;
            }
            st.taken = st.slots.iter().flatten().count();
            // Step 1: the peers: those no pid watch covers every liveness
            // interval; all of them after a watched process died, and
            // every slow round.
            let now = Instant::now();
            let due = |last: Option<Instant>, every: Duration| {
                last.is_none_or(|t| now.duration_since(t) >= every)
            };
            let round = due(st.last_round, LIVENESS_INTERVAL);
            let deaths = crate::sys::deaths();
            let slow = due(st.last_slow, SLOW_ROUND) || deaths != st.deaths;
            let mut any_active = false;
            let mut any_uncovered = false;
            for s in st.slots.iter_mut().flatten() {
                if !s.active() {
                    s.fresh = false;
                    if slow {
                        // Not asked in this round, whose death count is
                        // taken as seen to (another slot is active): asked
                        // once it listens again. Else a peer that died
                        // while its task handled a message (the slot
                        // without listener), its pids unchanged and
                        // watched, was told at the next slow round, 5 s
                        // later, the endpoint's own look trusting an
                        // answer younger than the liveness interval.
                        s.peers.asked = false;
                    }
                    continue;
                }
                any_active = true;
                // (The pids of peers that come and go are looked at in
                // step 2 too, every round.)
                if slow || !s.fresh {
                    s.refresh_pids();
                }
                let ask =
                    slow || !s.peers.asked || (round && !s.peers.covered()) || s.member.gone();
                // An error asking (the kernel refused a lock query) is
                // reported too: the endpoint's own look says what.
                if ask {
                    PEER_LOOKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                s.peers.asked |= ask;
                if ask && s.member.check_peers().unwrap_or(true) {
                    s.fire(&mut fired);
                }
                any_uncovered |= !s.peers.covered();
            }
            if !any_active {
                // Nothing to watch, nothing to ask: no timer.
                st.last_round = None;
                st.last_slow = None;
            } else {
                if round {
                    st.last_round = Some(now);
                }
                if slow {
                    st.last_slow = Some(now);
                    st.deaths = deaths;
                }
            }
            // Step 2: arm and look.
            let active: Vec<usize> = (0..st.slots.len())
                .filter(|&i| st.slots[i].as_ref().is_some_and(Slot::active))
                .collect();
            let (ready, mut sleep) = {
                let members: Vec<Awaited<'_>> = active
                    .iter()
                    .filter_map(|&i| {
                        st.slots[i].as_ref().map(|s| Awaited {
                            member: &s.member,
                            answers: s.answers(),
                        })
                    })
                    .collect();
                let (ready, words) = prepare(&members);
                // Raw pointers: the words stay valid through the sleep
                // (members are dropped by this thread alone, at the top of
                // a round, never while `in_sleep`), but the lock is not
                // held then.
                let sleep: Vec<(*const FutexWord, u32)> = words
                    .iter()
                    .map(|&(w, seq)| (w as *const FutexWord, seq))
                    .collect();
                (ready, sleep)
            };
            // A subscriber's publishers and a server's clients come and go:
            // their pids are looked at every round, here, after the flags
            // and the fence (a load per peer slot), so that one that came
            // while the flags were set (its attach looked at the flag
            // before it was set, and did not wake this thread) is seen to
            // before any sleep: a change makes another round, which asks
            // about the new peers.
            let mut came = false;
            for (bit, &i) in active.iter().enumerate() {
                let Some(s) = st.slots[i].as_mut() else {
                    continue;
                };
                s.armed = true;
                if ready & 1 << bit != 0 {
                    s.fire_ready(&mut fired);
                } else if s.member.peers_come_and_go() {
                    came |= s.refresh_pids();
                }
            }
            if !fired.is_empty() || came {
                for s in st.slots.iter_mut().flatten() {
                    s.disarm();
                }
                drop(guard);
                for l in fired.drain(..) {
                    l.fire();
                }
                continue;
            }
            for &i in &active {
                if let Some(s) = st.slots[i].as_mut() {
                    s.in_sleep = true;
                }
            }
            st.sleeping = true;
            let slice = if active.is_empty() {
                Duration::MAX
            } else {
                let left = |last: Option<Instant>, every: Duration| {
                    every.saturating_sub(last.map_or(Duration::ZERO, |t| t.elapsed()))
                };
                let mut slice = left(st.last_slow, SLOW_ROUND);
                if any_uncovered {
                    slice = slice.min(left(st.last_round, LIVENESS_INTERVAL));
                }
                slice.max(MIN_SLICE)
            };
            drop(guard);
            // Step 3: sleep.
            if std::mem::take(&mut forget) {
                waiter.forget();
            }
            sleep.push((&self.control as *const FutexWord, control));
            {
                // SAFETY: each pointer is a member's word, in a mapping its
                // slot owns, and slots marked `in_sleep` are not dropped
                // until step 4 below clears the mark; or it is the control
                // word, which lives as long as the worker.
                let words: Vec<(&FutexWord, u32)> = sleep
                    .iter()
                    // SAFETY: as said above: a word in a mapping an
                    // `in_sleep` slot keeps, or the worker's control word.
                    .map(|&(w, seq)| (unsafe { &*w }, seq))
                    .collect();
                waiter.wait(&words, slice);
            }
            // Step 4: take the flags back.
            let mut st = self.lock();
            st.sleeping = false;
            for s in st.slots.iter_mut().flatten() {
                s.in_sleep = false;
                s.disarm();
            }
        }
    }
}

/// A slot's member as step 2 arms it and looks at it: for what the slot's
/// listeners wait for (`Slot::answers`).
struct Awaited<'a> {
    member: &'a Member,
    answers: Option<u64>,
}

impl Watch for Awaited<'_> {
    fn word(&self) -> &FutexWord {
        self.member.word()
    }
    fn arm(&self) {
        self.member.arm()
    }
    fn disarm(&self) {
        self.member.disarm()
    }
    fn ready(&self) -> bool {
        self.member.ready_for(self.answers)
    }
}

/// How many times a `fork` copied this process into the one running now
/// (0 in a process started by `exec`), counted by a `pthread_atfork`
/// handler set up before the first worker starts (`hook_once`): the
/// workers, and the registrations in them, belong to the count they were
/// made under.
static FORKS: AtomicU64 = AtomicU64::new(0);

fn forks() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// Sets up, once per process (a forked child inherits both): the count
/// of forks, and the wake of every worker at a watched process's death.
fn hook_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The parent's handlers take and release this module's locks, in
        // the order its other code does (the list, then each worker's); the
        // child's does only what a forked child may (an atomic add). If the
        // handlers cannot be set (no memory), forks are not told, as
        // before the count existed.
        crate::sys::on_fork(fork::prepare, fork::parent, fork::child);
        // (Once: `on_death` takes a lock the reaper's thread takes, which
        // a child forked while it held it would wait on for ever.)
        crate::sys::on_death(kick_all);
    });
}

/// The `pthread_atfork` handlers. The thread that forks takes the workers'
/// locks first, so that no worker is in a round at the fork: a round takes
/// its endpoints' own locks (their `Parkers`), which the child's copy of
/// an endpoint takes too, and would wait on for ever had a worker held
/// one at the fork. (Set on every system; Windows has no fork and never
/// runs them.)
mod fork {
    use std::cell::RefCell;
    use std::sync::MutexGuard;

    use super::{lock_list, workers, State, Worker, FORKS};

    /// The locks the forking thread holds across the fork.
    struct Held {
        _list: MutexGuard<'static, Vec<&'static Worker>>,
        _states: Vec<MutexGuard<'static, State>>,
    }

    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    /// Before the fork, in the parent: takes the list's lock, then every
    /// worker's, waiting for a round under way to end.
    pub(super) extern "C" fn prepare() {
        let Some(workers) = workers(false) else {
            return;
        };
        let list = lock_list(workers);
        let states = list.iter().map(|&w| w.lock()).collect();
        let held = Held {
            _list: list,
            _states: states,
        };
        // (A thread that is exiting has no thread-locals left: the locks
        // are then released at once, as before these handlers.)
        let _ = HELD.try_with(|h| *h.borrow_mut() = Some(held));
    }

    /// After the fork, in the parent: releases them.
    pub(super) extern "C" fn parent() {
        let _ = HELD.try_with(|h| drop(h.borrow_mut().take()));
    }

    /// After the fork, in the child, before `fork` returns there (on its
    /// one thread): counts the fork, and nothing else (an atomic add,
    /// async-signal-safe). The child's copies of the locks stay taken:
    /// it never takes them (its workers are its own).
    pub(super) extern "C" fn child() {
        FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The workers of a process, and the count of forks it has.
struct Workers {
    forks: u64,
    list: Mutex<Vec<&'static Worker>>,
}

/// The workers of this process: null until the first registration, then
/// a `Workers` leaked when made (never freed). A child forked since has
/// the parent's, whose threads it does not have (and whose locks its copy
/// holds: see `fork`): it makes its own, and leaves the parent's (and the
/// workers in it) alone for good.
static WORKERS: AtomicPtr<Workers> = AtomicPtr::new(std::ptr::null_mut());

/// This process's workers; made (empty) if there are none yet and `make`.
fn workers(make: bool) -> Option<&'static Workers> {
    let forks = forks();
    let current = WORKERS.load(Ordering::Acquire);
    // SAFETY: null, or a `Workers` leaked below, never freed.
    if let Some(w) = unsafe { current.as_ref() } {
        if w.forks == forks {
            return Some(w);
        }
    }
    if !make {
        return None;
    }
    let made: &'static Workers = Box::leak(Box::new(Workers {
        forks,
        list: Mutex::new(Vec::new()),
    }));
    let made_ptr = made as *const Workers as *mut Workers;
    match WORKERS.compare_exchange(current, made_ptr, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(made),
        // Another thread of this process made them first (`made`, a few
        // bytes, is lost).
        // SAFETY: a `Workers` leaked above by that thread, never freed.
        Err(theirs) => unsafe { theirs.as_ref() },
    }
}

fn lock_list(workers: &Workers) -> MutexGuard<'_, Vec<&'static Worker>> {
    workers.list.lock().unwrap_or_else(|e| e.into_inner())
}

/// An endpoint's slot in a worker, for as long as the endpoint (or a wait
/// set that has it as a member, or a readiness descriptor) lives.
pub(crate) struct Registration {
    worker: &'static Worker,
    index: usize,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("slot", &self.index)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Gives `member` a slot in a worker with room (started if none has).
    pub(crate) fn new(member: Member) -> Result<Registration> {
        // A watched process's death wakes every worker to ask at once;
        // a fork is told to the child.
        hook_once();
        let workers = workers(true).expect("made if missing");
        let forks = workers.forks;
        let mut workers = lock_list(workers);
        let slot = Slot {
            member,
            listeners: Vec::new(),
            armed: false,
            in_sleep: false,
            dead: false,
            peers: PeerWatch::default(),
            fresh: false,
        };
        for &worker in workers.iter() {
            let mut st = worker.lock();
            if st.taken < SLOTS_PER_WORKER {
                st.taken += 1;
                let index = match st.slots.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => {
                        st.slots.push(None);
                        st.slots.len() - 1
                    }
                };
                st.slots[index] = Some(slot);
                return Ok(Registration { worker, index });
            }
        }
        // Never freed once its thread runs: it lives as long as the process
        // (and is left alone in a forked child, whose copy some
        // registrations still name).
        let raw: *mut Worker = Box::into_raw(Box::new(Worker {
            control: FutexWord::new(),
            state: Mutex::new(State {
                slots: vec![Some(slot)],
                taken: 1,
                ..State::default()
            }),
            forks,
        }));
        // SAFETY: made from a box just above, and freed only below, if no
        // thread was started with it.
        let worker: &'static Worker = unsafe { &*raw };
        let started = worker
            .control
            // The control word's route (an event of its own on Windows;
            // nothing on Unix), registered before any wait on it; the
            // worker lives as long as the process, so does the route.
            .route_local()
            .and_then(|route| {
                std::thread::Builder::new()
                    .name("memshare-notifier".into())
                    .spawn(move || {
                        let _route = route;
                        worker.run()
                    })
                    .map_err(|e| crate::Error::from_io(None, "spawn the notifier thread", e))
            });
        if let Err(e) = started {
            // A worker that never ran is freed, with its member (the thread
            // limit reached again and again would leak one per try).
            // SAFETY: made by `Box::into_raw` above; no thread got `worker`
            // (a spawn that fails drops its closure unrun), and it is in no
            // list: this was the only reference.
            drop(unsafe { Box::from_raw(raw) });
            return Err(e);
        }
        workers.push(worker);
        Ok(Registration { worker, index: 0 })
    }

    /// Adds (or replaces) listener `id`: it is fired the next time the
    /// worker finds the endpoint ready (at once if it is now), its peer
    /// gone, or it dropped. One-shot: add it again to wait again.
    /// `answers`: `None` for anything the member reports; for an rpc
    /// client's call, the slots whose answers it waits for (a bit each):
    /// the answers to other requests do not fire it.
    pub(crate) fn listen(&self, id: u64, listener: Listener, answers: Option<u64>) {
        if !self.worker.here() {
            // The parent's, in a forked child: nothing runs it (only a
            // readiness descriptor made before the fork listens on one).
            return;
        }
        let mut st = self.worker.lock();
        let sleeping = st.sleeping;
        let slot = st.slots[self.index]
            .as_mut()
            .expect("a live registration has its slot");
        let was_active = slot.active();
        let before = slot.answers();
        match slot.listeners.iter_mut().find(|l| l.id == id) {
            Some(l) => {
                if let (Listener::Waker(old), Listener::Waker(new)) = (&l.listener, &listener) {
                    if old.will_wake(new) && l.answers == answers {
                        return;
                    }
                }
                l.listener = listener;
                l.answers = answers;
            }
            None => slot.listeners.push(Listening {
                id,
                listener,
                answers,
            }),
        }
        let changed = slot.answers() != before;
        drop(st);
        if (!was_active || changed) && sleeping {
            // The worker sleeps without this slot's word, or after a look
            // for other answers than its listeners wait for now (a
            // descriptor re-armed while a call waits for its own answer:
            // another answer may be there already): it must arm the word,
            // or look again.
            self.worker.kick();
        }
    }

    /// Removes listener `id` (a future done or dropped, a descriptor
    /// dropped). If that leaves the slot without listeners, the member's
    /// flag is cleared now, so that the endpoint's own blocking calls park
    /// alone, and the worker is woken to sleep without the member's word.
    pub(crate) fn forget(&self, id: u64) {
        if !self.worker.here() {
            return;
        }
        let mut st = self.worker.lock();
        let slot = st.slots[self.index]
            .as_mut()
            .expect("a live registration has its slot");
        let before = slot.listeners.len();
        slot.listeners.retain(|l| l.id != id);
        if before == slot.listeners.len() || slot.active() {
            return;
        }
        slot.disarm();
        let in_sleep = slot.in_sleep;
        drop(st);
        if in_sleep {
            self.worker.kick();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.worker.here() {
            // The parent's, in a forked child: left as it is (its member,
            // with the mapping and the name it holds, too).
            return;
        }
        let mut st = self.worker.lock();
        let mut in_sleep = false;
        if let Some(slot) = st.slots[self.index].as_mut() {
            slot.listeners.clear();
            slot.disarm();
            slot.dead = true;
            in_sleep = slot.in_sleep;
            if !in_sleep {
                slot.unwatch();
                st.slots[self.index] = None;
                st.taken -= 1;
                st.freed += 1;
            }
        }
        drop(st);
        // The worker frees a slot it sleeps on when it wakes: now, so that
        // the member's mapping (and a named segment's name, which its last
        // holder removes) does not outlive the endpoint.
        if in_sleep {
            self.worker.kick();
        }
    }
}

/// Where an endpoint keeps its registration (in its `Link`, shared with
/// the wait sets it is a member of): made the first time something waits
/// on the endpoint, given up when the endpoint drops. The slot's member
/// holds the link, so a registration kept past the endpoint's drop would
/// keep itself, the member's mapping and a named segment's name alive for
/// as long as the process (the name left behind at exit).
#[derive(Debug)]
pub(crate) struct RegistrationSlot {
    /// `None` once closed: the endpoint dropped.
    inner: std::sync::Mutex<Option<Option<Arc<Registration>>>>,
}

impl Default for RegistrationSlot {
    fn default() -> RegistrationSlot {
        RegistrationSlot {
            inner: std::sync::Mutex::new(Some(None)),
        }
    }
}

impl RegistrationSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Option<Arc<Registration>>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registration, made with `make` the first time. After [`close`]
    /// a new one is made for the caller alone (a wait set waiting on a
    /// member whose endpoint dropped), never kept here.
    ///
    /// [`close`]: RegistrationSlot::close
    pub(crate) fn get_or_make(
        &self,
        make: impl FnOnce() -> crate::Result<Registration>,
    ) -> crate::Result<Arc<Registration>> {
        let mut guard = self.lock();
        match &mut *guard {
            Some(Some(r)) if r.worker.here() => Ok(Arc::clone(r)),
            // None yet, or the parent's in a forked child (replaced).
            Some(empty) => {
                let r = Arc::new(make()?);
                *empty = Some(Arc::clone(&r));
                Ok(r)
            }
            None => {
                drop(guard);
                Ok(Arc::new(make()?))
            }
        }
    }

    /// The endpoint dropped: gives up its registration (freed once no
    /// future or descriptor holds it) and keeps none from now on. The
    /// registration's worker is woken: its member now reads as ready
    /// (dropped), and the descriptors and wait set futures still listening
    /// on it are told at once, not when the worker next wakes by itself
    /// (up to `SLOW_ROUND` later when the peers' pids are watched).
    pub(crate) fn close(&self) {
        let taken = self.lock().take();
        if let Some(Some(r)) = &taken {
            if r.worker.here() {
                r.worker.kick();
            }
        }
        drop(taken);
    }
}

/// Wakes every worker (a watched process died: they ask about their
/// peers now).
fn kick_all() {
    if let Some(workers) = workers(false) {
        for w in lock_list(workers).iter() {
            w.kick();
        }
    }
}

/// How many notifier threads this process has started (for tests and the
/// idle measurement).
#[doc(hidden)]
pub fn notifier_threads() -> usize {
    workers(false).map_or(0, |w| lock_list(w).len())
}

/// How many endpoint registrations this process's notifier threads hold
/// (a registration dropped while its thread sleeps on it counts until the
/// thread wakes and frees it): for tests and fuzz targets, which check
/// that dropped futures, descriptors and endpoints give theirs up.
#[doc(hidden)]
pub fn notifier_slots() -> usize {
    workers(false).map_or(0, |workers| {
        lock_list(workers)
            .iter()
            .map(|w| w.lock().slots.iter().flatten().count())
            .sum()
    })
}

/// How many times this process's notifier threads asked about an
/// endpoint's peers (a lock query per peer each time).
static PEER_LOOKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times this process's notifier threads have asked about an
/// endpoint's peers (each time, a lock query per peer): for tests, which
/// check that a parked future whose peers' processes are watched does not
/// poll them.
#[doc(hidden)]
pub fn notifier_peer_looks() -> u64 {
    PEER_LOOKS.load(std::sync::atomic::Ordering::Relaxed)
}
