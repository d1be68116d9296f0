//! Deaths of processes, told by the kernel: for the liveness of the wait
//! sets and of the async notifier. A process id is watched through a pidfd
//! (`pidfd_open`, Linux 5.3), which becomes readable when the process
//! exits; one thread of this process (started with the first watch)
//! sleeps in `epoll_wait` on every watched pidfd, without a timeout, and
//! on a death counts it and calls the hooks its users set (which wake
//! their parked threads to ask about their peers now). Elsewhere (and
//! where `pidfd_open` fails) nothing is watched: the callers poll.
//!
//! A pid says nothing by itself (it may be reused, or be what a peer
//! claims): the caller asks the peer's lock after the watch begins, and
//! trusts the watch only while the lock is held.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Deaths seen so far (of watched processes).
static DEATHS: AtomicU64 = AtomicU64::new(0);

/// What to call on a death (each hook once: the wait sets', the
/// notifier's).
static HOOKS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Adds `hook`, called after each death (from then on; adding it again
/// changes nothing). It runs on the watching thread, after the count of
/// deaths went up: a caller that reads [`deaths`] after the hook ran sees
/// the new count.
pub(crate) fn on_death(hook: fn()) {
    let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    if !hooks.iter().any(|&h| std::ptr::fn_addr_eq(h, hook)) {
        hooks.push(hook);
    }
}

/// Sets fork handlers, as `pthread_atfork`: `prepare` runs in the forking
/// thread before the fork, `parent` after it in the parent, `child` after it
/// in the child (its one thread; only what a forked child may do).
/// Handlers are never removed: set them once per process.
#[cfg(feature = "async")]
pub(crate) fn on_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // What the handlers do at a fork is their caller's to make sound (it
    // says so at theirs). pthread_atfork fails only for lack of memory:
    // forks are then not told, which its caller tolerates.
    // SAFETY: the handlers are functions that live as long as the process.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

/// How many watched processes have died so far.
pub(crate) fn deaths() -> u64 {
    DEATHS.load(Relaxed)
}

// Only Linux watches (the other systems' callers poll).
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
fn died() {
    DEATHS.fetch_add(1, Relaxed);
    // Called unlocked (a hook may add another).
    let hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for hook in hooks {
        hook();
    }
}

/// Watches process `pid` (one more watcher): `false` if it cannot be
/// watched (no such process now, no pidfd here, out of descriptors).
pub(crate) fn watch_pid(pid: u32) -> bool {
    imp::watch(pid)
}

/// One watcher fewer of `pid` (after a `true` from [`watch_pid`]).
pub(crate) fn unwatch_pid(pid: u32) {
    imp::unwatch(pid)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::collections::HashMap;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::{Mutex, OnceLock};

    use rustix::event::epoll;
    use rustix::process::{pidfd_open, Pid, PidfdFlags};

    struct Reaper {
        /// The process that made it (a child forked since has the
        /// statics but not the thread, and shares the epoll instance).
        owner: u32,
        epoll: OwnedFd,
        /// Per pid: what is known of it.
        pids: Mutex<HashMap<u32, Watched>>,
    }

    struct Watched {
        /// The pidfd: in the epoll set until its process died.
        fd: OwnedFd,
        /// How many watch it.
        watchers: usize,
        /// Its process died (the pidfd was readable).
        died: bool,
        /// Which pidfd of this pid it is (its epoll event carries it): an
        /// event read before the lock, of a pidfd since dropped and
        /// replaced by a new one for the same number (unwatched, then
        /// watched again: maybe a new process), is not the new one's.
        generation: u32,
    }

    /// The generation of the next pidfd opened (wraps; two pidfds of one
    /// pid 2^32 opens apart never meet in one epoll wait).
    static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    static REAPER: OnceLock<Option<Reaper>> = OnceLock::new();

    /// The reaper of this process: `None` where none can be made, and in
    /// a child forked after it was made (whose watches would be told to
    /// the parent's thread, through the epoll instance they share: the
    /// child's callers poll instead).
    fn reaper() -> Option<&'static Reaper> {
        REAPER
            .get_or_init(|| {
                let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).ok()?;
                std::thread::Builder::new()
                    .name("memshare-reaper".into())
                    .spawn(run)
                    .ok()?;
                Some(Reaper {
                    owner: std::process::id(),
                    epoll,
                    pids: Mutex::new(HashMap::new()),
                })
            })
            .as_ref()
            .filter(|r| r.owner == std::process::id())
    }

    fn run() {
        // The reaper is set before this thread looks (it waits for it).
        let reaper = loop {
            if let Some(r) = REAPER.get() {
                match r {
                    Some(r) => break r,
                    None => return,
                }
            }
            std::thread::yield_now();
        };
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            match epoll::wait(
                &reaper.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                // Not expected (the set is ours): stop watching rather
                // than spin; the callers' slow polls still see deaths.
                Err(_) => return,
            }
            let mut pids = reaper.pids.lock().unwrap_or_else(|e| e.into_inner());
            for event in &events {
                let data = event.data.u64();
                let (pid, generation) = (data as u32, (data >> 32) as u32);
                if let Some(w) = pids.get_mut(&pid).filter(|w| w.generation == generation) {
                    // Readable for good: out of the set.
                    let _ = epoll::delete(&reaper.epoll, w.fd.as_fd());
                    w.died = true;
                }
            }
            drop(pids);
            if !events.is_empty() {
                super::died();
            }
        }
    }

    pub(super) fn watch(pid: u32) -> bool {
        let Some(reaper) = reaper() else {
            return false;
        };
        let mut pids = reaper.pids.lock().unwrap_or_else(|e| e.into_inner());
        let watchers = match pids.get_mut(&pid) {
            Some(w) if !w.died => {
                w.watchers += 1;
                return true;
            }
            // The number may name a new process now (pids are reused):
            // the watch of the dead one would never tell of its death. A
            // fresh pidfd does (readable at once if the number still
            // names the dead process, a zombie: one death more, told).
            Some(w) => w.watchers,
            None => 0,
        };
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(fd) = open(reaper, pid, generation) else {
            return false;
        };
        pids.insert(
            pid,
            Watched {
                fd,
                watchers: watchers + 1,
                died: false,
                generation,
            },
        );
        true
    }

    /// A pidfd of `pid`, in the reaper's epoll set, its events carrying
    /// the pid and `generation`.
    fn open(reaper: &Reaper, pid: u32, generation: u32) -> Option<OwnedFd> {
        let p = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
        let fd = pidfd_open(p, PidfdFlags::empty()).ok()?;
        epoll::add(
            &reaper.epoll,
            &fd,
            epoll::EventData::new_u64(u64::from(generation) << 32 | u64::from(pid)),
            epoll::EventFlags::IN,
        )
        .ok()?;
        Some(fd)
    }

    pub(super) fn unwatch(pid: u32) {
        let Some(reaper) = reaper() else { return };
        let mut pids = reaper.pids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = pids.get_mut(&pid) {
            w.watchers -= 1;
            if w.watchers == 0 {
                // (Already out of the set if its process died.)
                let _ = epoll::delete(&reaper.epoll, w.fd.as_fd());
                pids.remove(&pid);
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    pub(super) fn watch(_pid: u32) -> bool {
        false
    }

    pub(super) fn unwatch(_pid: u32) {}
}
