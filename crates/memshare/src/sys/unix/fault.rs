//! Surviving a peer that shrinks an object under our views.
//!
//! A process that maps a shared object and touches a page beyond the
//! object's end gets `SIGBUS`, which kills it. Any process of the same user
//! can `ftruncate` a named object, and a peer holding a writable descriptor
//! of a huge-page object can punch a hole into it (`fallocate`), which the
//! pool may not be able to fill again; a full `/dev/shm` has the same effect
//! on a page touched for the first time. So memshare installs a process-wide
//! `SIGBUS` handler, as Wayland compositors do for client memory pools:
//!
//! - Every mapping memshare makes is registered here ([`register`]): its
//!   address range and protection, in a table the handler can read without
//!   taking a lock or allocating (fixed chunks of atomic slots, never freed).
//! - On a `SIGBUS` raised by the kernel for an address inside a registered
//!   mapping, the handler maps private zero pages over the whole mapping
//!   (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS)`, async-signal-safe),
//!   marks the mapping as faulted and returns: the faulting instruction runs
//!   again on a zero page. Nothing else runs in the handler (it saves and
//!   restores `errno`).
//! - The safe calls that touch a view (`read_at`, `write_at`, channel
//!   `send`/`recv`) look at the mark after touching it and return an error
//!   instead of data: the object was truncated, or memory ran out.
//! - Any other `SIGBUS` (an address outside memshare's mappings, or a signal
//!   sent with `kill`) goes to the handler that was installed before
//!   memshare's, exactly as the kernel would have delivered it: a handler is
//!   called with the same arguments, the default action is taken by
//!   restoring it and raising the signal again, an ignored fault kills as
//!   the kernel would.
//!
//! Several threads may fault at once: each maps the zero pages (the second
//! map replaces the first, which is harmless: the view is dead either way)
//! and returns. A mapping is unregistered before it is unmapped, so the
//! handler never maps over an address range that memshare no longer owns.
//!
//! The handler is installed once, when memshare maps its first view. A
//! program that installs its own `SIGBUS` handler later, without passing
//! unknown faults on to the previous one, turns this protection off; the
//! crate docs say so.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Slots per chunk of the table.
const CHUNK: usize = 64;
/// A slot's `start` while its owner fills it in (no mapping starts at 1).
const CLAIMED: usize = 1;

/// One registered mapping.
struct Slot {
    /// The mapping's first address; 0 if the slot is free.
    start: AtomicUsize,
    len: AtomicUsize,
    /// The `PROT_*` bits the zero pages get (a read-only view stays
    /// read-only).
    prot: AtomicI32,
    /// Set by the handler once it replaced the mapping.
    faulted: AtomicBool,
}

/// A fixed group of slots; chunks are linked, added when all are taken,
/// and never freed (the handler may be walking them at any moment).
struct Chunk {
    slots: [Slot; CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        #[allow(clippy::declare_interior_mutable_const)] // a template, copied into each slot
        const FREE: Slot = Slot {
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            prot: AtomicI32::new(0),
            faulted: AtomicBool::new(false),
        };
        Chunk {
            slots: [FREE; CHUNK],
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn next(&self) -> Option<&'static Chunk> {
        let next = self.next.load(Ordering::Acquire);
        // SAFETY: a non-null `next` was made by `Box::into_raw` in
        // `register` and is never freed.
        (!next.is_null()).then(|| unsafe { &*next })
    }
}

static TABLE: Chunk = Chunk::new();

/// Faults the handler caught in this process so far (in any mapping): while
/// it is 0, no mapping has faulted, and [`any_caught`] answers for all of
/// them with one load.
static CAUGHT: AtomicUsize = AtomicUsize::new(0);

/// Whether the handler ever caught a fault in this process. While it has
/// not, every registered mapping is intact; once it has, ask each mapping
/// ([`Registration::faulted`]).
#[inline]
pub(crate) fn any_caught() -> bool {
    CAUGHT.load(Ordering::Acquire) != 0
}

/// The `SIGBUS` action that was in place before memshare's.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static INSTALL: Once = Once::new();

/// A registered mapping. [`Registration::unregister`] must be called before
/// the mapping is unmapped.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: &'static Slot,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("faulted", &self.faulted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Whether a fault in the mapping was caught: its pages were replaced by
    /// private zero pages, and nothing read from or written to it since is
    /// the shared object's.
    #[inline]
    pub(crate) fn faulted(&self) -> bool {
        self.slot.faulted.load(Ordering::Acquire)
    }

    /// Frees the slot: from now on the handler does not touch the range.
    pub(crate) fn unregister(&self) {
        self.slot.start.store(0, Ordering::Release);
    }
}

/// Registers the mapping `start..start + len` (protection `prot`), and
/// installs the handler if this is the first mapping.
pub(crate) fn register(start: *mut u8, len: usize, prot: i32) -> Registration {
    INSTALL.call_once(install);
    let mut chunk: &'static Chunk = &TABLE;
    loop {
        for slot in &chunk.slots {
            if slot
                .start
                .compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.len.store(len, Ordering::Relaxed);
                slot.prot.store(prot, Ordering::Relaxed);
                slot.faulted.store(false, Ordering::Relaxed);
                // Release: the handler that sees `start` sees the rest.
                slot.start.store(start as usize, Ordering::Release);
                return Registration { slot };
            }
        }
        chunk = match chunk.next() {
            Some(next) => next,
            None => {
                let new = Box::into_raw(Box::new(Chunk::new()));
                match chunk.next.compare_exchange(
                    ptr::null_mut(),
                    new,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    // SAFETY: just made by `Box::into_raw`; linked, so it
                    // lives for the rest of the process.
                    Ok(_) => unsafe { &*new },
                    Err(other) => {
                        // SAFETY: `new` was never shared: we still own it.
                        drop(unsafe { Box::from_raw(new) });
                        // SAFETY: linked by another thread, never freed.
                        unsafe { &*other }
                    }
                }
            }
        };
    }
}

fn install() {
    // SAFETY: `sigaction` structs are plain C data for which all-zero is
    // valid; the calls get valid pointers. The previous action is read and
    // kept before ours is installed, so the handler always finds it.
    unsafe {
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, ptr::null(), &mut previous) != 0 {
            return;
        }
        let _ = PREVIOUS.set(previous);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, ptr::null_mut());
    }
}

/// The registered slot whose mapping contains `addr`.
fn find(addr: usize) -> Option<(&'static Slot, usize, usize)> {
    let mut chunk: &'static Chunk = &TABLE;
    loop {
        for slot in &chunk.slots {
            let start = slot.start.load(Ordering::Acquire);
            if start <= CLAIMED {
                continue;
            }
            let len = slot.len.load(Ordering::Relaxed);
            if addr >= start && addr - start < len {
                return Some((slot, start, len));
            }
        }
        chunk = chunk.next()?;
    }
}

/// The `SIGBUS` handler. Async-signal-safe: atomic loads and stores, and the
/// `mmap`, `sigaction` and `raise` system calls.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    let saved_errno = errno::get();
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only faults the kernel raised (si_code > 0) carry a faulting address.
    if code > 0 {
        if let Some((slot, start, len)) = find(addr) {
            let prot = slot.prot.load(Ordering::Relaxed);
            let flags = libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANON;
            // SAFETY: `start..start + len` is a mapping memshare owns and has not unmapped (it
            // unregisters first); replacing it with zero pages changes no Rust object's memory but
            // the view's, whose owner learns of it through `faulted`.
            let replaced = unsafe { libc::mmap(start as *mut c_void, len, prot, flags, -1, 0) };
            if replaced != libc::MAP_FAILED {
                slot.faulted.store(true, Ordering::Release);
                // After the mark: whoever sees the count sees the mark.
                CAUGHT.fetch_add(1, Ordering::Release);
                errno::set(saved_errno);
                return;
            }
        }
    }
    pass_on(sig, info, context, code > 0);
    errno::set(saved_errno);
}

/// Delivers a `SIGBUS` that is not memshare's as it would have been
/// delivered without memshare's handler.
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut c_void, fault: bool) {
    let handler = PREVIOUS.get().map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    let flags = PREVIOUS.get().map_or(0, |p| p.sa_flags);
    match handler {
        libc::SIG_DFL => default_action(sig),
        // An ignored fault cannot be ignored: the kernel kills the process.
        libc::SIG_IGN if fault => default_action(sig),
        libc::SIG_IGN => {}
        handler if flags & libc::SA_SIGINFO != 0 => {
            type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);
            // SAFETY: installed with SA_SIGINFO, so it is a three-argument
            // handler; it gets exactly what the kernel gave us.
            let handler: Action = unsafe { std::mem::transmute(handler) };
            handler(sig, info, context);
        }
        handler => {
            // SAFETY: installed without SA_SIGINFO: a one-argument handler.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            handler(sig);
        }
    }
}

/// Restores the default action and raises the signal again: it is
/// delivered (and kills the process) as soon as the handler returns.
fn default_action(sig: libc::c_int) {
    // SAFETY: plain C data, all-zero valid; `sigaction` and `raise` are
    // async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, ptr::null_mut());
        libc::raise(sig);
    }
}

/// `errno`, saved and restored around the handler.
mod errno {
    #[cfg(target_os = "linux")]
    fn location() -> *mut libc::c_int {
        // SAFETY: always valid for the calling thread.
        unsafe { libc::__errno_location() }
    }

    #[cfg(target_os = "android")]
    fn location() -> *mut libc::c_int {
        // SAFETY: always valid for the calling thread.
        unsafe { libc::__errno() }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn location() -> *mut libc::c_int {
        // SAFETY: always valid for the calling thread.
        unsafe { libc::__error() }
    }

    pub(super) fn get() -> libc::c_int {
        // SAFETY: the thread's own errno.
        unsafe { *location() }
    }

    pub(super) fn set(value: libc::c_int) {
        // SAFETY: the thread's own errno.
        unsafe { *location() = value }
    }
}
