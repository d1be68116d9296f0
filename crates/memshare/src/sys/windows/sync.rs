//! Cross-process waiting and liveness on Windows, with kernel objects
//! named after the section.
//!
//! Windows cannot wait on an address across processes (`WaitOnAddress` is
//! per process), and has no byte locks on sections. So:
//!
//! - **Wake-ups**: every endpoint that parks on a word of a section has an
//!   auto-reset event of its own, `Local\memshare-wake.<section>.<offset>.<waiter>`
//!   (`<section>`: the section's kernel name, see [`Object::sync_id`];
//!   `<offset>`: the word's byte offset in the section; `<waiter>`: which of
//!   the word's waiters). It creates the event when it attaches
//!   ([`Object::route_word`] with `WordRole::Parks`), before it can park.
//!   An endpoint that wakes the word opens the waiters' events when it
//!   first wakes them (a waiter whose event does not exist has never
//!   attached, so is not asleep) and keeps them open. The word stays the
//!   protocol's wake-up counter: [`wait`] returns at once when the word no
//!   longer holds the value the parker saw, else waits on the event; the
//!   waker bumps the word, then sets the event. An event that is set while
//!   nobody waits stays set, so the next wait returns at once: a wake-up
//!   that comes between the parker's last look and its wait is not lost,
//!   and a stale one is one spurious return (callers re-check).
//! - **Which event**: the protocols call [`wait`] and [`wake`] with the
//!   word, as on Linux; the endpoint registered, for that address in this
//!   process, the events behind it (a process-wide table: one lookup on the
//!   slow path, which makes a system call anyway). Every endpoint maps its
//!   own view, so an address belongs to one endpoint.
//! - **Liveness**: an endpoint holds a named mutex,
//!   `Local\memshare-lock.<section>.<byte>` (the byte Unix locks). A mutex
//!   belongs to a thread and is abandoned when that thread ends, so one
//!   thread per process, started at the first lock, owns all of this
//!   process's (endpoints move between threads; that thread lives as long as
//!   the process). When the process dies, however it dies, the kernel
//!   abandons them. Others ask without taking it: `NtQueryMutant` says
//!   whether it is owned (a free, abandoned or missing mutex: nobody holds
//!   the byte). Asking never disturbs a holder or an endpoint that attaches
//!   at the same time.
//!
//! Every object is created with the same descriptor as named sections
//! (this user only) and is never inheritable. They live in the session's
//! namespace (`Local\`): the endpoints of one channel or service must be in
//! one session.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_GEN_FAILURE, ERROR_INVALID_HANDLE, HANDLE,
    NTSTATUS, WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, OpenEventW, OpenMutexW, ReleaseMutex, SetEvent,
    WaitForMultipleObjects, WaitForSingleObject, EVENT_MODIFY_STATE, INFINITE,
};

/// `MAXIMUM_WAIT_OBJECTS` (winnt.h).
const MAXIMUM_WAIT_OBJECTS: u32 = 64;

use super::handle::Handle;
use super::security::Descriptor;
use super::{last_error, win_error, Object};
use crate::sys::WordRole;
use crate::{Error, Result};

// Not in windows-sys: the state of a mutex without taking it. Documented
// with `MUTANT_BASIC_INFORMATION` in the Windows Driver Kit (ntddk.h,
// `ZwQueryMutant`); Wine implements it (dlls/ntdll/unix/sync.c).
windows_link::link!("ntdll.dll" "system" fn NtQueryMutant(
    mutant : HANDLE,
    class : i32,
    info : *mut c_void,
    info_len : u32,
    return_len : *mut u32
) -> NTSTATUS);

/// `MutantBasicInformation`, the class of `NtQueryMutant`.
const MUTANT_BASIC_INFORMATION_CLASS: i32 = 0;

/// `MUTANT_QUERY_STATE` (winnt.h): the access `NtQueryMutant` needs.
const MUTANT_QUERY_STATE: u32 = 0x0001;

/// `MUTANT_BASIC_INFORMATION`.
#[repr(C)]
#[derive(Default)]
struct MutantBasicInformation {
    /// 1 when free; 0 or less while owned (by as many acquisitions).
    current_count: i32,
    owned_by_caller: u8,
    abandoned_state: u8,
}

/// Waits while `*word == expected`, for at most `timeout`: on the event of
/// the endpoint that parks on `word` in this process, or, for a word no
/// endpoint routed (the public `sync::wait`), a sleep of at most 200 µs.
/// Returns on a wake, a timeout, or at once if the word differs (or the
/// event was set while nobody waited): callers re-check.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    if word.load(Ordering::Acquire) != expected {
        return;
    }
    let Some(event) = routes().parker(address(word)) else {
        std::thread::sleep(timeout.min(Duration::from_micros(200)));
        return;
    };
    // SAFETY: `event` is an open event handle, kept open by the `Arc` for
    // the duration of the call.
    let r = unsafe { WaitForSingleObject(event.raw(), wait_ms(timeout)) };
    debug_assert!(
        r == WAIT_OBJECT_0 || r == WAIT_TIMEOUT,
        "WaitForSingleObject on a wake event: {r:#x} (error {})",
        last_error()
    );
}

/// Wakes up to `n` waiters of `word` (waiters `0..n`), through the events
/// the waking endpoint routed; nothing for a word no endpoint routed.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    wake_waiters(word, mask);
}

/// Wakes the waiters of `word` whose bits are set in `waiters` (bit `i`:
/// the endpoint parked as waiter `i`).
pub(crate) fn wake_waiters(word: &AtomicU32, waiters: u64) {
    if let Some(route) = routes().waker(address(word)) {
        route.wake(waiters);
    }
}

/// One thread's sleeps on many words: each is [`wait_many`] (the events
/// hold nothing between sleeps to keep).
#[derive(Default)]
pub(crate) struct ManyWaiter;

impl ManyWaiter {
    /// Nothing stays queued (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        0
    }

    /// No ring here (tests).
    #[cfg(test)]
    pub(crate) fn uses_ring(&self) -> bool {
        false
    }

    /// [`wait_many`].
    pub(crate) fn wait<'a>(
        &mut self,
        words: impl ExactSizeIterator<Item = (&'a AtomicU32, u32)> + Clone,
        timeout: Duration,
    ) {
        wait_many(words, timeout)
    }

    /// Nothing to stop.
    pub(crate) fn forget(&mut self) {}
}

/// The most words [`wait_many`] waits on at once: what
/// `WaitForMultipleObjects` takes (`MAXIMUM_WAIT_OBJECTS`).
pub(crate) const WAIT_MANY_MAX: usize = MAXIMUM_WAIT_OBJECTS as usize;

/// How long one sleep of [`wait_many`] lasts at most when a word has no
/// event behind it (a word no endpoint of this process parks on): it polls.
const WAIT_MANY_POLL: Duration = Duration::from_micros(200);

/// Waits while every word of `words` (at most [`WAIT_MANY_MAX`]) holds
/// the value paired with it, for at most `timeout`: on the events of the
/// endpoints that park on them in this process, all at once
/// (`WaitForMultipleObjects`, any one). Returns on a wake of any of them,
/// a timeout, at once if a word differs (or an event was set while nobody
/// waited), or after [`WAIT_MANY_POLL`] if a word has no event: callers
/// re-check their conditions after every return.
pub(crate) fn wait_many<'a>(words: impl Iterator<Item = (&'a AtomicU32, u32)>, timeout: Duration) {
    let mut events = Vec::with_capacity(WAIT_MANY_MAX);
    let mut poll = false;
    {
        let table = routes();
        for (word, expected) in words {
            if word.load(Ordering::Acquire) != expected {
                return;
            }
            match table.parker(address(word)) {
                Some(event) if events.len() < WAIT_MANY_MAX => events.push(event),
                _ => poll = true,
            }
        }
    }
    if poll || events.is_empty() {
        std::thread::sleep(timeout.min(WAIT_MANY_POLL));
        return;
    }
    let handles: Vec<HANDLE> = events.iter().map(|e| e.raw()).collect();
    // SAFETY: `handles` holds `handles.len()` (1..=64) open event handles,
    // kept open by `events` for the duration of the call.
    let r = unsafe {
        WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, wait_ms(timeout))
    };
    debug_assert!(
        (WAIT_OBJECT_0..WAIT_OBJECT_0 + handles.len() as u32).contains(&r) || r == WAIT_TIMEOUT,
        "WaitForMultipleObjects on wake events: {r:#x} (error {})",
        last_error()
    );
}

/// A wait's timeout in whole milliseconds, rounded up (a park slice is at
/// least 100 µs: a zero wait would make the caller's loop spin with system
/// calls), below `INFINITE`.
fn wait_ms(timeout: Duration) -> u32 {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
}

fn address(word: &AtomicU32) -> usize {
    word as *const AtomicU32 as usize
}

/// The route of one word for one endpoint; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct WordRoute {
    address: usize,
    id: u64,
}

impl Drop for WordRoute {
    fn drop(&mut self) {
        routes().remove(self.address, self.id);
    }
}

/// What an endpoint registered for an address.
#[derive(Debug)]
enum Route {
    /// It parks here: its event.
    Parks(Arc<Handle>),
    /// It wakes the waiters here: their events, opened when first woken.
    Wakes(Wakes),
    /// A word in this process's own memory (the async notifier's control
    /// word): one unnamed event that its waits wait on and its wakes set.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    Local(Arc<Handle>),
}

#[derive(Debug)]
struct Wakes {
    /// `Local\memshare-wake.<section>.<offset>.` (the waiter follows).
    prefix: String,
    /// Per waiter: its event, once opened.
    events: Mutex<Vec<Option<Handle>>>,
}

impl Wakes {
    fn wake(&self, mut waiters: u64) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        while waiters != 0 {
            let i = waiters.trailing_zeros() as usize;
            waiters &= waiters - 1;
            let Some(slot) = events.get_mut(i) else {
                break;
            };
            if slot.is_none() {
                let name = wide(&format!("{}{i}", self.prefix));
                // SAFETY: `name` is NUL-terminated and outlives the call.
                let raw = unsafe { OpenEventW(EVENT_MODIFY_STATE, 0, name.as_ptr()) };
                // No event: that waiter never attached, so it is not asleep
                // (asked again at the next wake).
                *slot = Handle::from_raw(raw);
            }
            if let Some(event) = slot {
                // SAFETY: an open event handle with EVENT_MODIFY_STATE.
                let ok = unsafe { SetEvent(event.raw()) };
                debug_assert!(ok != 0, "SetEvent: error {}", last_error());
            }
        }
    }
}

/// The process's routes: per address, the routes registered there (one
/// endpoint's: it may both park on and wake a word), with their ids.
#[derive(Default)]
struct Routes {
    next: AtomicU64,
    table: Mutex<HashMap<usize, Vec<(u64, Arc<Route>)>>>,
}

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(Routes::default)
}

impl Routes {
    fn add(&self, address: usize, route: Route) -> WordRoute {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(address)
            .or_default()
            .push((id, Arc::new(route)));
        WordRoute { address, id }
    }

    fn remove(&self, address: usize, id: u64) {
        let mut table = self.lock();
        if let Some(list) = table.get_mut(&address) {
            list.retain(|(i, _)| *i != id);
            if list.is_empty() {
                table.remove(&address);
            }
        }
    }

    /// The event of the endpoint parking at `address` (the newest).
    fn parker(&self, address: usize) -> Option<Arc<Handle>> {
        self.lock()
            .get(&address)?
            .iter()
            .rev()
            .find_map(|(_, r)| match &**r {
                Route::Parks(event) | Route::Local(event) => Some(event.clone()),
                Route::Wakes(_) => None,
            })
    }

    /// The waker's route at `address` (the newest).
    fn waker(&self, address: usize) -> Option<Arc<Route>> {
        let table = self.lock();
        let list = table.get(&address)?;
        list.iter()
            .rev()
            .find(|(_, r)| matches!(**r, Route::Wakes(_) | Route::Local(_)))
            .map(|(_, r)| r.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Vec<(u64, Arc<Route>)>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Route {
    fn wake(&self, waiters: u64) {
        match self {
            Route::Wakes(wakes) => wakes.wake(waiters),
            Route::Local(event) => {
                // SAFETY: an open event handle, kept open by the `Arc`.
                let ok = unsafe { SetEvent(event.raw()) };
                debug_assert!(ok != 0, "SetEvent: error {}", last_error());
            }
            Route::Parks(_) => {}
        }
    }
}

/// The route of `word`, a word of this process's own memory that threads
/// of this process wait on ([`wait`], [`wait_many`]) and wake: an unnamed
/// auto-reset event of its own. Kept as long as the word is used.
#[cfg(feature = "async")]
pub(crate) fn route_local(word: &AtomicU32) -> Result<WordRoute> {
    // SAFETY: no attributes (not inheritable), no name; auto-reset, not
    // set.
    let raw = unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) };
    let event = Handle::from_raw(raw)
        .ok_or_else(|| win_error(None, "CreateEventW (local)", last_error()))?;
    Ok(routes().add(address(word), Route::Local(Arc::new(event))))
}

/// Holds a byte of an object (a named mutex owned by this process's lock
/// thread). Dropping it releases the byte; so does the death of the
/// process, however it dies (the kernel abandons the mutex).
#[derive(Debug)]
pub(crate) struct ByteLock {
    mutex: Handle,
}

impl Drop for ByteLock {
    fn drop(&mut self) {
        // Released by the thread that owns it (a mutex is a thread's); the
        // handle closes after.
        keeper_call(|reply| Job::Release(self.mutex.raw() as usize, reply));
    }
}

impl Object {
    /// The section's kernel name, which the names of its wake and lock
    /// objects start with: `memshare.<name>` for a named segment,
    /// `memshare-anon.<random>` for an anonymous one made by memshare
    /// (`g.` in front for a section in the global namespace). A section
    /// with no name (made by other code) has none: it cannot carry
    /// channels or services.
    fn sync_id(&self) -> Result<&str> {
        self.sync_id.as_deref().ok_or_else(|| Error::Unsupported {
            what: format!(
                "{}: waking and watching endpoints on Windows needs a section with a kernel \
                 name, and this one has none (sections made by memshare all have one)",
                crate::sys::describe(self.name())
            ),
        })
    }

    /// Takes byte `byte` of the object for this holder. `Ok(None)` if
    /// another holder (in this process or another) has it.
    pub(crate) fn lock_byte(&self, byte: u64) -> Result<Option<ByteLock>> {
        let name = format!("Local\\memshare-lock.{}.{byte}", self.sync_id()?);
        let descriptor = Descriptor::current_user_only()
            .map_err(|code| win_error(self.name(), "security descriptor", code))?;
        let wide_name = wide(&name);
        // SAFETY: the attributes and the name outlive the call. Not owned
        // at creation: ownership is taken by the lock thread below.
        let raw = unsafe { CreateMutexW(descriptor.attributes(), 0, wide_name.as_ptr()) };
        let Some(mutex) = Handle::from_raw(raw) else {
            return Err(self.sync_error("CreateMutexW", &name, last_error()));
        };
        let taken = keeper_call(|reply| Job::Take(mutex.raw() as usize, reply))
            .ok_or_else(|| self.sync_error("lock thread", &name, ERROR_GEN_FAILURE))?
            .map_err(|code| self.sync_error("WaitForSingleObject", &name, code))?;
        // (Not `then_some`: a `ByteLock` made for nothing would release,
        // when dropped, the mutex another endpoint holds.)
        Ok(if taken {
            Some(ByteLock { mutex })
        } else {
            None
        })
    }

    /// Whether some holder holds byte `byte` (asked without taking it).
    pub(crate) fn byte_locked(&self, byte: u64) -> Result<bool> {
        let name = format!("Local\\memshare-lock.{}.{byte}", self.sync_id()?);
        let wide_name = wide(&name);
        // SAFETY: the name outlives the call.
        let raw = unsafe { OpenMutexW(MUTANT_QUERY_STATE, 0, wide_name.as_ptr()) };
        let Some(mutex) = Handle::from_raw(raw) else {
            return match last_error() {
                // Nobody ever took it, or every holder is gone. (Windows
                // says ERROR_INVALID_HANDLE for a name held by another
                // kind of object, which no holder made either; Wine says
                // it for a missing name too.)
                ERROR_FILE_NOT_FOUND | ERROR_INVALID_HANDLE => Ok(false),
                code => Err(self.sync_error("OpenMutexW", &name, code)),
            };
        };
        let info = query_mutant(mutex.raw())
            .map_err(|code| self.sync_error("NtQueryMutant", &name, code))?;
        // Free (1) or abandoned (its owner died; then also free): nobody.
        Ok(info.current_count <= 0)
    }

    /// The route of `word`, at byte `offset` of this object, for an
    /// endpoint that uses it as `role` (see the module docs).
    pub(crate) fn route_word(
        &self,
        word: &AtomicU32,
        offset: u64,
        role: WordRole,
    ) -> Result<WordRoute> {
        let prefix = format!("Local\\memshare-wake.{}.{offset}.", self.sync_id()?);
        let route = match role {
            WordRole::Parks { waiter } => {
                let name = format!("{prefix}{waiter}");
                let descriptor = Descriptor::current_user_only()
                    .map_err(|code| win_error(self.name(), "security descriptor", code))?;
                let wide_name = wide(&name);
                // SAFETY: the attributes and the name outlive the call.
                // Auto-reset (a wait consumes the wake-up), not set.
                let raw =
                    // SAFETY: as just said: both outlive the call.
                    unsafe { CreateEventW(descriptor.attributes(), 0, 0, wide_name.as_ptr()) };
                let event = Handle::from_raw(raw)
                    .ok_or_else(|| self.sync_error("CreateEventW", &name, last_error()))?;
                Route::Parks(Arc::new(event))
            }
            WordRole::Wakes { waiters } => Route::Wakes(Wakes {
                prefix,
                events: Mutex::new((0..waiters.min(64)).map(|_| None).collect()),
            }),
        };
        Ok(routes().add(address(word), route))
    }

    fn sync_error(&self, op: &'static str, object: &str, code: u32) -> Error {
        if code == ERROR_ACCESS_DENIED {
            return Error::PermissionDenied {
                source: Some(std::io::Error::from_raw_os_error(code as i32)),
                object: crate::sys::describe(self.name()),
                op: format!(
                    "{op} of {object}: another user holds that name (the wake and lock objects \
                     of a segment are this user's)"
                ),
            };
        }
        win_error(self.name(), op, code)
    }
}

fn query_mutant(mutex: HANDLE) -> std::result::Result<MutantBasicInformation, u32> {
    let mut info = MutantBasicInformation::default();
    let mut written = 0u32;
    // SAFETY: `info` is a writable MUTANT_BASIC_INFORMATION of the size
    // passed; `mutex` is open with MUTANT_QUERY_STATE (or all access).
    let status = unsafe {
        NtQueryMutant(
            mutex,
            MUTANT_BASIC_INFORMATION_CLASS,
            (&mut info as *mut MutantBasicInformation).cast(),
            std::mem::size_of::<MutantBasicInformation>() as u32,
            &mut written,
        )
    };
    if status < 0 {
        return Err(ERROR_GEN_FAILURE);
    }
    Ok(info)
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// What the lock thread is asked to do, with a mutex handle's value (the
/// caller keeps the handle open until the answer).
enum Job {
    /// Take the mutex unless someone owns it: `Ok(true)` if taken.
    Take(usize, mpsc::SyncSender<std::result::Result<bool, u32>>),
    /// Release a mutex this thread owns.
    Release(usize, mpsc::SyncSender<std::result::Result<bool, u32>>),
}

/// Sends a job to the lock thread (started at the first call) and waits
/// for its answer; `None` if the thread cannot be reached.
fn keeper_call(
    job: impl FnOnce(mpsc::SyncSender<std::result::Result<bool, u32>>) -> Job,
) -> Option<std::result::Result<bool, u32>> {
    static KEEPER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (send, jobs) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("memshare-locks".into())
            .spawn(move || keep(jobs))
            .ok()
            .map(|_| send)
    });
    let (reply, answer) = mpsc::sync_channel(1);
    keeper.as_ref()?.send(job(reply)).ok()?;
    answer.recv().ok()
}

/// The lock thread: owns every mutex this process's endpoints hold, for
/// as long as the process lives.
fn keep(jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Take(raw, reply) => {
                let _ = reply.send(take(raw as HANDLE));
            }
            Job::Release(raw, reply) => {
                // SAFETY: a mutex handle the caller keeps open, owned by
                // this thread (taken by `take`).
                let ok = unsafe { ReleaseMutex(raw as HANDLE) };
                debug_assert!(ok != 0, "ReleaseMutex: error {}", last_error());
                let _ = reply.send(Ok(true));
            }
        }
    }
}

fn take(raw: HANDLE) -> std::result::Result<bool, u32> {
    // A mutex is recursive: asked first, so that this thread does not take
    // again one it owns for another endpoint of this process.
    if query_mutant(raw)?.current_count <= 0 {
        return Ok(false);
    }
    // SAFETY: a mutex handle the caller keeps open for the call.
    match unsafe { WaitForSingleObject(raw, 0) } {
        // Abandoned: its last owner died; it is this thread's now.
        WAIT_OBJECT_0 | WAIT_ABANDONED => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        _ => Err(last_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn section() -> Object {
        Object::create_anonymous(4096, &super::super::CreateOptions::default()).unwrap()
    }

    /// The async notifier's control word: a wait on several words, one of
    /// them local, sleeps on the events (the whole timeout: a wait that
    /// polled would return after 200 µs) and a wake of the local word from
    /// another thread ends it.
    #[cfg(feature = "async")]
    #[test]
    fn a_wait_on_many_words_sleeps_on_their_events_and_a_local_wake_ends_it() {
        let object = section();
        let shared = AtomicU32::new(3);
        let _parks = object
            .route_word(&shared, 64, WordRole::Parks { waiter: 0 })
            .unwrap();
        let local = AtomicU32::new(0);
        let _local = route_local(&local).unwrap();
        let start = Instant::now();
        wait_many(
            [(&shared, 3), (&local, 0)].into_iter(),
            Duration::from_millis(50),
        );
        let slept = start.elapsed();
        assert!(
            slept >= Duration::from_millis(45),
            "returned after {slept:?}"
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                local.fetch_add(1, Ordering::Release);
                wake(&local, 1);
            });
            let start = Instant::now();
            wait_many(
                [(&shared, 3), (&local, 0)].into_iter(),
                Duration::from_secs(5),
            );
            let slept = start.elapsed();
            assert!(slept < Duration::from_secs(2), "not woken: {slept:?}");
        });
    }

    #[test]
    fn a_routed_wait_sleeps_until_woken_or_the_timeout() {
        let object = section();
        let word = AtomicU32::new(7);
        let _parks = object
            .route_word(&word, 64, WordRole::Parks { waiter: 0 })
            .unwrap();
        // Nobody wakes it: the whole timeout (a wait that polled would
        // return after 200 µs).
        let start = Instant::now();
        wait(&word, 7, Duration::from_millis(30));
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "{:?}",
            start.elapsed()
        );
        // The word differs: at once.
        let start = Instant::now();
        wait(&word, 6, Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(1));
        // Woken by another route of the same word (as another process
        // would be, through the event's name).
        std::thread::scope(|s| {
            let waker = s.spawn(|| {
                let wakes = object
                    .route_word(&word, 64, WordRole::Wakes { waiters: 1 })
                    .unwrap();
                std::thread::sleep(Duration::from_millis(50));
                word.fetch_add(1, Ordering::Release);
                wake(&word, 1);
                drop(wakes);
            });
            let start = Instant::now();
            wait(&word, 7, Duration::from_secs(10));
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{:?}",
                start.elapsed()
            );
            waker.join().unwrap();
        });
        // A wake that came while nobody waited is kept: the next wait
        // returns at once (spuriously: callers re-check).
        let wakes = object
            .route_word(&word, 64, WordRole::Wakes { waiters: 1 })
            .unwrap();
        wake(&word, 1);
        drop(wakes);
        let start = Instant::now();
        wait(&word, 8, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_unrouted_wait_polls() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        wait(&word, 0, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_byte_is_held_by_one_holder_whatever_thread_took_it() {
        let object = section();
        assert!(!object.byte_locked(3).unwrap());
        // Taken on a thread that then ends: still held.
        let lock = std::thread::scope(|s| s.spawn(|| object.lock_byte(3).unwrap()).join())
            .unwrap()
            .expect("a free byte");
        assert!(object.byte_locked(3).unwrap());
        // Another holder, in this process too, is refused; asking did not
        // take it.
        assert!(object.lock_byte(3).unwrap().is_none());
        assert!(object.byte_locked(3).unwrap());
        assert!(!object.byte_locked(4).unwrap());
        // Released on yet another thread.
        std::thread::scope(|s| s.spawn(move || drop(lock)).join()).unwrap();
        assert!(!object.byte_locked(3).unwrap());
        assert!(object.lock_byte(3).unwrap().is_some());
    }

    #[test]
    fn a_section_without_a_name_cannot_carry_endpoints() {
        let mut object = section();
        object.sync_id = None;
        assert!(matches!(
            object.lock_byte(0),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn sync_ids_come_from_the_kernel_name() {
        assert_eq!(
            super::super::sync_id("\\Sessions\\1\\BaseNamedObjects\\memshare.x").as_deref(),
            Some("memshare.x")
        );
        assert_eq!(
            super::super::sync_id("\\BaseNamedObjects\\memshare.x").as_deref(),
            Some("g.memshare.x")
        );
        assert_eq!(super::super::sync_id("nothing"), None);
        let object = section();
        assert!(object
            .sync_id
            .as_deref()
            .is_some_and(|id| id.starts_with("memshare-anon.")));
    }
}
