//! Waiting on a 32-bit word in shared memory where there is no Linux
//! futex: macOS and FreeBSD have their own shared-address waits; other
//! systems sleep briefly (the caller re-checks, so that is correct, only
//! slower). Compiled for macOS and FreeBSD by `scripts/cross-check`; no
//! machine here runs them.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Where a system has no wait on an address (or, on macOS, none was
/// found): the longest sleep of one wait (the caller re-checks after it).
#[cfg(not(target_os = "freebsd"))]
const POLL: Duration = Duration::from_micros(200);

#[cfg(target_vendor = "apple")]
pub(super) use apple::{wait, wake};
#[cfg(target_os = "freebsd")]
pub(super) use freebsd::{wait, wake};

#[cfg(not(any(target_vendor = "apple", target_os = "freebsd")))]
pub(super) fn wait(_word: &AtomicU32, _expected: u32, timeout: Duration) {
    std::thread::sleep(timeout.min(POLL));
}

#[cfg(not(any(target_vendor = "apple", target_os = "freebsd")))]
pub(super) fn wake(_word: &AtomicU32, _n: u32) {}

/// macOS: `os_sync_wait_on_address_with_timeout` /
/// `os_sync_wake_by_address_{any,all}` with the `..._SHARED` flags (macOS
/// 14.4 on, `<os/os_sync_wait_on_address.h>`: the kernel keys a shared
/// wait by the memory object and offset, so it works between processes
/// that map the page at different addresses). Before 14.4, what libc++'s
/// `std::atomic::wait` and Chromium use: `__ulock_wait2` (macOS 11 on) or
/// `__ulock_wait`, and `__ulock_wake`, with `UL_COMPARE_AND_WAIT_SHARED`
/// (xnu's `bsd/sys/ulock.h`: private, but stable since macOS 10.12). Every
/// one is looked up with `dlsym` at the first wait, so a program built for
/// an older macOS still loads, and uses the newest that is there.
#[cfg(target_vendor = "apple")]
mod apple {
    use super::*;
    use std::ffi::{c_int, c_void, CStr};
    use std::sync::OnceLock;

    // xnu bsd/sys/ulock.h (not in the libc crate: a private header).
    /// `UL_COMPARE_AND_WAIT_SHARED`: compare a 32-bit word and wait, keyed
    /// by the shared memory object rather than the address.
    const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
    /// `ULF_WAKE_ALL`: wake every waiter, not one.
    const ULF_WAKE_ALL: u32 = 0x0000_0100;
    /// `ULF_NO_ERRNO`: return `-errno` instead of setting `errno`.
    const ULF_NO_ERRNO: u32 = 0x0100_0000;

    /// `os_sync_wait_on_address_with_timeout(addr, value, size, flags,
    /// clockid, timeout_ns)`.
    type OsSyncWait = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
    /// `os_sync_wake_by_address_any` / `_all(addr, size, flags)`.
    type OsSyncWake = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;
    /// `__ulock_wait2(operation, addr, value, timeout_ns, value2)`.
    type UlockWait2 = unsafe extern "C" fn(u32, *mut c_void, u64, u64, u64) -> c_int;
    /// `__ulock_wait(operation, addr, value, timeout_us)`.
    type UlockWait = unsafe extern "C" fn(u32, *mut c_void, u64, u32) -> c_int;
    /// `__ulock_wake(operation, addr, wake_value)`.
    type UlockWake = unsafe extern "C" fn(u32, *mut c_void, u64) -> c_int;

    enum Api {
        OsSync {
            wait: OsSyncWait,
            wake_any: OsSyncWake,
            wake_all: OsSyncWake,
        },
        Ulock2 {
            wait: UlockWait2,
            wake: UlockWake,
        },
        Ulock {
            wait: UlockWait,
            wake: UlockWake,
        },
        Sleep,
    }

    /// The address of `name` in the process's images, if any.
    fn symbol(name: &CStr) -> Option<*mut c_void> {
        // SAFETY: RTLD_DEFAULT searches every loaded image; `name` is a
        // NUL-terminated string that outlives the call.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }

    fn api() -> &'static Api {
        static API: OnceLock<Api> = OnceLock::new();
        API.get_or_init(|| {
            // SAFETY: (each transmute) the symbol is the libSystem function
            // of that name, whose C signature the type spells out (from
            // <os/os_sync_wait_on_address.h> and xnu's bsd/sys/ulock.h).
            unsafe {
                if let (Some(wait), Some(any), Some(all)) = (
                    symbol(c"os_sync_wait_on_address_with_timeout"),
                    symbol(c"os_sync_wake_by_address_any"),
                    symbol(c"os_sync_wake_by_address_all"),
                ) {
                    return Api::OsSync {
                        wait: std::mem::transmute::<*mut c_void, OsSyncWait>(wait),
                        wake_any: std::mem::transmute::<*mut c_void, OsSyncWake>(any),
                        wake_all: std::mem::transmute::<*mut c_void, OsSyncWake>(all),
                    };
                }
                let wake = symbol(c"__ulock_wake");
                if let (Some(wait), Some(wake)) = (symbol(c"__ulock_wait2"), wake) {
                    return Api::Ulock2 {
                        wait: std::mem::transmute::<*mut c_void, UlockWait2>(wait),
                        wake: std::mem::transmute::<*mut c_void, UlockWake>(wake),
                    };
                }
                if let (Some(wait), Some(wake)) = (symbol(c"__ulock_wait"), wake) {
                    return Api::Ulock {
                        wait: std::mem::transmute::<*mut c_void, UlockWait>(wait),
                        wake: std::mem::transmute::<*mut c_void, UlockWake>(wake),
                    };
                }
            }
            Api::Sleep
        })
    }

    pub(in super::super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        // A zero timeout means "forever" to __ulock_wait: never ask for one.
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return;
        }
        let addr = word.as_ptr().cast::<c_void>();
        // Every return (woken, timed out, the word differed, interrupted,
        // or an error) means "re-check": the results are not looked at.
        // SAFETY (each call): `addr` is a 4-byte aligned u32 in memory this
        // process maps for the whole call (the caller holds the mapping),
        // the size and flags are those the header documents.
        match *api() {
            // SAFETY: as said above the match.
            Api::OsSync { wait, .. } => unsafe {
                wait(
                    addr,
                    u64::from(expected),
                    4,
                    libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                    libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                    nanos,
                );
            },
            // SAFETY: as said above the match.
            Api::Ulock2 { wait, .. } => unsafe {
                wait(
                    UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
                    addr,
                    u64::from(expected),
                    nanos,
                    0,
                );
            },
            // SAFETY: as said above the match.
            Api::Ulock { wait, .. } => unsafe {
                let micros = u32::try_from(timeout.as_micros())
                    .unwrap_or(u32::MAX)
                    .max(1);
                wait(
                    UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
                    addr,
                    u64::from(expected),
                    micros,
                );
            },
            Api::Sleep => std::thread::sleep(timeout.min(POLL)),
        }
    }

    pub(in super::super) fn wake(word: &AtomicU32, n: u32) {
        let addr = word.as_ptr().cast::<c_void>();
        // No waiter (ENOENT) is not an error here.
        // SAFETY (each call): as in `wait`; a wake only looks the address
        // up.
        match *api() {
            Api::OsSync {
                wake_any, wake_all, ..
            } => {
                let wake = if n == 1 { wake_any } else { wake_all };
                // SAFETY: as said above the match.
                unsafe { wake(addr, 4, libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED) };
            }
            // SAFETY: as said above the match.
            Api::Ulock2 { wake, .. } | Api::Ulock { wake, .. } => unsafe {
                let all = if n == 1 { 0 } else { ULF_WAKE_ALL };
                wake(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all, addr, 0);
            },
            Api::Sleep => {}
        }
    }
}

/// FreeBSD: `_umtx_op(2)` with `UMTX_OP_WAIT_UINT` and `UMTX_OP_WAKE`, not
/// their `_PRIVATE` forms: those use the process-private sleep queue,
/// these pick the queue from the mapping, a shared one for a `MAP_SHARED`
/// mapping (the man page's SLEEP QUEUES), so processes that map the page
/// at different addresses meet.
#[cfg(target_os = "freebsd")]
mod freebsd {
    use super::*;
    use std::ffi::{c_ulong, c_void};

    pub(in super::super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
        if timeout.is_zero() {
            return;
        }
        // A relative timeout on the monotonic clock (`_flags` 0, not
        // UMTX_ABSTIME); `uaddr` carries the structure's size, which tells
        // the kernel it is a `struct _umtx_time` (the man page's "Timeouts").
        let mut time = libc::_umtx_time {
            _timeout: libc::timespec {
                tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            },
            _flags: 0,
            _clockid: libc::CLOCK_MONOTONIC as u32,
        };
        // SAFETY: `word` is a u32 in memory this process maps for the whole call; `time` is a valid
        // `_umtx_time` whose size is passed as the man page says. EINTR, ETIMEDOUT, or the word
        // differing: the caller re-checks, so the result is not looked at.
        unsafe {
            libc::_umtx_op(
                word.as_ptr().cast::<c_void>(),
                libc::UMTX_OP_WAIT_UINT,
                c_ulong::from(expected),
                std::mem::size_of::<libc::_umtx_time>() as *mut c_void,
                (&mut time as *mut libc::_umtx_time).cast::<c_void>(),
            );
        }
    }

    pub(in super::super) fn wake(word: &AtomicU32, n: u32) {
        // SAFETY: `word` is a u32 this process maps; `val` is how many
        // waiters to wake (at most INT_MAX, as the kernel takes an int).
        unsafe {
            libc::_umtx_op(
                word.as_ptr().cast::<c_void>(),
                libc::UMTX_OP_WAKE,
                c_ulong::from(n.min(i32::MAX as u32)),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
}
