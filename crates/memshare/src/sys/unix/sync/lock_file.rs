//! Endpoint liveness where shared-memory objects take no record locks
//! (macOS, FreeBSD and other Unixes without Linux's OFD locks): one lock
//! file per (object, byte), locked with `flock`.
//!
//! - The files live in a directory of this user's own,
//!   `/tmp/memshare-locks-<uid>` (mode 0700, refused unless it is a real
//!   directory owned by this user with no access for anyone else). Not
//!   `$TMPDIR`: every process of the user must find the same files.
//! - A file is named `<object key>.<byte>`: the key says which object
//!   ([`object_key`]: the POSIX name on macOS, `st_dev`/`st_ino`
//!   elsewhere), the byte which endpoint of it.
//! - A holder opens (or creates) the file and takes an exclusive `flock`
//!   on it, non-blocking. `flock` locks belong to the open file
//!   description, as Linux's OFD locks do: a second description in the
//!   same process conflicts, and the kernel drops the lock when the
//!   description is closed, whether the holder dropped it or its process
//!   died, however it died.
//! - A dropping holder unlinks its file *before* it lets the lock go, so a
//!   new holder that locked a file must check that the file is still the
//!   one at the name (the classic lock-file race); otherwise it tries
//!   again with a fresh file.
//! - Whether a byte is held: open the file (missing: not held) and ask for
//!   a shared `flock`, non-blocking: refused means an exclusive holder
//!   exists. Granted, it is released at once. Such a probe can make a
//!   concurrent attach's exclusive lock fail for a moment, so [`lock`]
//!   tries a few times, 1 ms apart, before it answers "held".
//!
//! A dead holder's file stays (unlocked) until the next holder of that byte
//! drops it; a file of an object that is gone stays until the directory is
//! cleaned. Files are empty.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::fs::{self, AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::{Error, Result};

/// How many times [`lock`] asks for a lock another process may hold for a
/// moment (a probe), 1 ms apart.
const ATTEMPTS: u32 = 8;

/// An exclusive lock on one lock file: released (the file unlinked first)
/// when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub(crate) struct FileLock<'d> {
    /// Holds the lock; closed after the unlink in `drop`.
    _fd: OwnedFd,
    dir: BorrowedFd<'d>,
    name: String,
}

#[cfg(test)]
impl FileLock<'_> {
    /// The locked file's identity.
    fn stat(&self) -> Result<fs::Stat, Errno> {
        fs::fstat(&self._fd)
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Unlinked while still locked: whoever opens the name from now on
        // gets a new file, and a holder that locked the old one notices.
        // The lock goes when `fd` is closed, just after.
        let _ = fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
    }
}

/// This user's lock directory, opened once per process. (Not on Linux,
/// whose OFD locks need none; the tests there use directories of their own.)
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn directory() -> Result<&'static OwnedFd> {
    static DIR: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir);
    }
    let uid = rustix::process::geteuid().as_raw();
    let fd = open_directory(&format!("/tmp/memshare-locks-{uid}"), uid)?;
    // Two threads may both open it: one descriptor is kept, the other closed.
    let _ = DIR.set(fd);
    Ok(DIR.get().expect("set above"))
}

/// Creates (mode 0700) or opens the directory `path` and checks that it is
/// this user's alone: a directory, not a link, owned by `uid`, no access
/// for group or others.
pub(crate) fn open_directory(path: &str, uid: u32) -> Result<OwnedFd> {
    let failed = |op: &'static str, e: Errno| Error::Io {
        object: format!("the lock directory {path}"),
        op,
        source: std::io::Error::from(e),
    };
    match fs::mkdir(path, Mode::RWXU) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(failed("mkdir", e)),
    }
    let fd = fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| failed("open", e))?;
    let st = fs::fstat(&fd).map_err(|e| failed("fstat", e))?;
    #[allow(clippy::unnecessary_cast)] // u16 on macOS and FreeBSD
    let mode = st.st_mode as u32;
    if st.st_uid != uid || mode & 0o077 != 0 {
        return Err(Error::PermissionDenied {
            object: format!("the lock directory {path}"),
            op: format!(
                "use it for endpoint liveness: it must belong to uid {uid} with mode 0700, \
                 it belongs to uid {} with mode {:o}",
                st.st_uid,
                mode & 0o7777
            ),
            source: None,
        });
    }
    Ok(fd)
}

/// The name of the lock file of `byte` of the object `key`.
fn file_name(key: &str, byte: u64) -> String {
    format!("{key}.{byte}")
}

fn io_error(key: &str, op: &'static str, e: Errno) -> Error {
    Error::Io {
        object: format!("the lock file of object {key}"),
        op,
        source: std::io::Error::from(e),
    }
}

/// Locks `byte` of object `key` in `dir`: `Ok(None)` if another open file
/// description (of this process or another) holds it.
pub(crate) fn lock<'d>(dir: BorrowedFd<'d>, key: &str, byte: u64) -> Result<Option<FileLock<'d>>> {
    let name = file_name(key, byte);
    for attempt in 1..=ATTEMPTS {
        let fd = fs::openat(
            dir,
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| io_error(key, "open", e))?;
        match lock_opened(dir, &name, fd).map_err(|(op, e)| io_error(key, op, e))? {
            Attempt::Locked(lock) => return Ok(Some(lock)),
            Attempt::Busy if attempt < ATTEMPTS => std::thread::sleep(Duration::from_millis(1)),
            Attempt::Busy => return Ok(None),
            // Unlinked under us: a fresh file at once.
            Attempt::Stale => {}
        }
    }
    Ok(None)
}

/// What one attempt of [`lock`] found.
enum Attempt<'d> {
    Locked(FileLock<'d>),
    /// Another description holds the file.
    Busy,
    /// Locked, but the file is no longer the one at the name: a dropping
    /// holder unlinked it between our open and our lock.
    Stale,
}

/// Takes the exclusive lock on `fd`, opened at `name` in `dir`, and checks
/// that the file is still the one at the name.
fn lock_opened<'d>(
    dir: BorrowedFd<'d>,
    name: &str,
    fd: OwnedFd,
) -> Result<Attempt<'d>, (&'static str, Errno)> {
    match fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(Attempt::Busy),
        Err(e) => return Err(("flock", e)),
    }
    let mine = fs::fstat(&fd).map_err(|e| ("fstat", e))?;
    match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(now) if now.st_dev == mine.st_dev && now.st_ino == mine.st_ino => {
            Ok(Attempt::Locked(FileLock {
                _fd: fd,
                dir,
                name: name.to_owned(),
            }))
        }
        Ok(_) | Err(Errno::NOENT) => Ok(Attempt::Stale),
        Err(e) => Err(("stat", e)),
    }
}

/// Whether some open file description holds `byte` of object `key`.
pub(crate) fn held(dir: BorrowedFd<'_>, key: &str, byte: u64) -> Result<bool> {
    let fd = match fs::openat(
        dir,
        file_name(key, byte).as_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(io_error(key, "open", e)),
    };
    match fs::flock(fd.as_fd(), FlockOperation::NonBlockingLockShared) {
        // Granted: nobody holds it; closing `fd` releases it at once.
        Ok(()) => Ok(false),
        Err(Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(io_error(key, "flock", e)),
    }
}

/// The key of the object behind `fd`, the same in every process that
/// holds it: its POSIX name on macOS (whose `fstat` of a shared-memory
/// object gives no inode), its device and inode elsewhere (FreeBSD numbers
/// its shared-memory objects uniquely).
pub(crate) fn object_key(fd: BorrowedFd<'_>) -> Result<String> {
    imp::object_key(fd).map_err(|e| Error::Io {
        object: "a shared-memory object".into(),
        op: "tell its identity for its lock files",
        source: std::io::Error::from(e),
    })
}

#[cfg(not(any(target_os = "macos", target_os = "ios")))]
mod imp {
    use super::*;

    pub(super) fn object_key(fd: BorrowedFd<'_>) -> Result<String, Errno> {
        let st = fs::fstat(fd)?;
        #[allow(clippy::unnecessary_cast)] // signed or narrower on some systems
        Ok(format!("i{:x}-{:x}", st.st_dev as u64, st.st_ino as u64))
    }
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
mod imp {
    //! `proc_pidfdinfo(PROC_PIDFDPSHMINFO)` on our own descriptor, as
    //! `lsof` does: xnu's `<sys/proc_info.h>`, declared here because the
    //! `libc` crate has not got `pshm_fdinfo`.
    use super::*;
    use std::os::fd::AsRawFd;

    const PROC_PIDFDPSHMINFO: libc::c_int = 5;
    const MAXPATHLEN: usize = 1024;

    #[repr(C)]
    struct ProcFileinfo {
        fi_openflags: u32,
        fi_status: u32,
        fi_offset: libc::off_t,
        fi_type: i32,
        fi_guardflags: u32,
    }

    #[repr(C)]
    struct PshmInfo {
        pshm_stat: libc::vinfo_stat,
        pshm_mappaddr: u64,
        pshm_name: [libc::c_char; MAXPATHLEN],
    }

    #[repr(C)]
    struct PshmFdinfo {
        pfi: ProcFileinfo,
        pshminfo: PshmInfo,
    }

    pub(super) fn object_key(fd: BorrowedFd<'_>) -> Result<String, Errno> {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut info: PshmFdinfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<PshmFdinfo>() as libc::c_int;
        // SAFETY: `info` is a writable buffer of `size` bytes that outlives
        // the call; the kernel writes at most `size` bytes into it.
        let got = unsafe {
            libc::proc_pidfdinfo(
                libc::getpid(),
                fd.as_raw_fd(),
                PROC_PIDFDPSHMINFO,
                (&mut info as *mut PshmFdinfo).cast(),
                size,
            )
        };
        if got != size {
            return Err(
                Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::NOTSUP)
            );
        }
        let name: Vec<u8> = info
            .pshminfo
            .pshm_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if name.is_empty() {
            return Err(Errno::NOTSUP);
        }
        // Hex: a name may hold any byte but NUL, a file name may not.
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("n{hex}"))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The lock files on Linux, where they are not used but run: the same
    //! code as on macOS and FreeBSD but for [`object_key`]'s macOS form.
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const DIR_VAR: &str = "MEMSHARE_LOCK_FILE_TEST_DIR";

    /// A directory of this test's own, removed with everything in it.
    struct TestDir {
        path: String,
        fd: OwnedFd,
    }

    impl TestDir {
        fn fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }
    }

    impl TestDir {
        fn new(tag: &str) -> TestDir {
            let path = format!(
                "{}/memshare-lock-test-{tag}-{}",
                std::env::temp_dir().display(),
                std::process::id()
            );
            let uid = rustix::process::geteuid().as_raw();
            let fd = open_directory(&path, uid).unwrap();
            TestDir { path, fd }
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    #[test]
    fn a_byte_is_held_by_one_holder_at_a_time_and_free_once_dropped() {
        let dir = TestDir::new("one");
        assert!(!held(dir.fd(), "k", 3).unwrap(), "nothing there yet");
        let first = lock(dir.fd(), "k", 3).unwrap().expect("a free byte locks");
        assert!(held(dir.fd(), "k", 3).unwrap());
        // Another description, even in this process, is refused.
        assert!(lock(dir.fd(), "k", 3).unwrap().is_none());
        // Other bytes and other objects are not affected.
        assert!(!held(dir.fd(), "k", 4).unwrap());
        assert!(!held(dir.fd(), "other", 3).unwrap());
        let fourth = lock(dir.fd(), "k", 4).unwrap().expect("another byte");
        drop(first);
        assert!(!held(dir.fd(), "k", 3).unwrap(), "dropped");
        let again = lock(dir.fd(), "k", 3).unwrap().expect("free again");
        assert!(held(dir.fd(), "k", 3).unwrap());
        drop((again, fourth));
        // Dropped holders leave no files.
        assert_eq!(std::fs::read_dir(&dir.path).unwrap().count(), 0);
    }

    #[test]
    fn a_lock_waits_out_a_probe_and_ends_on_the_file_at_the_name() {
        let dir = TestDir::new("race");
        // A probe holds the file shared, so the lock must retry; meanwhile
        // the old file is unlinked (as a dropping holder does): the lock
        // that succeeds must be on the file now at the name.
        let name = file_name("k", 0);
        let stale = fs::openat(
            dir.fd(),
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .unwrap();
        fs::flock(&stale, FlockOperation::NonBlockingLockShared).unwrap();
        let unlinker = std::thread::spawn({
            let path = format!("{}/{name}", dir.path);
            move || {
                std::thread::sleep(Duration::from_millis(2));
                std::fs::remove_file(path).unwrap();
            }
        });
        let got = lock(dir.fd(), "k", 0).unwrap().expect("a fresh file locks");
        unlinker.join().unwrap();
        let at_name = fs::statat(dir.fd(), name.as_str(), AtFlags::empty()).unwrap();
        let locked = got.stat().unwrap();
        assert_eq!(
            at_name.st_ino, locked.st_ino,
            "locked a file no longer named"
        );
        assert!(held(dir.fd(), "k", 0).unwrap());
        drop((got, stale));
    }

    #[test]
    fn a_file_unlinked_between_open_and_lock_is_not_taken_for_the_lock() {
        let dir = TestDir::new("stale");
        let name = file_name("k", 1);
        let open = || {
            fs::openat(
                dir.fd(),
                name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            )
            .unwrap()
        };
        // Opened, then unlinked by a dropping holder before the lock.
        let old = open();
        fs::unlinkat(dir.fd(), name.as_str(), AtFlags::empty()).unwrap();
        assert!(matches!(
            lock_opened(dir.fd(), &name, old),
            Ok(Attempt::Stale)
        ));
        // Replaced by another file meanwhile: stale too.
        let old = open();
        fs::unlinkat(dir.fd(), name.as_str(), AtFlags::empty()).unwrap();
        let new = open();
        assert!(matches!(
            lock_opened(dir.fd(), &name, old),
            Ok(Attempt::Stale)
        ));
        assert!(matches!(
            lock_opened(dir.fd(), &name, new),
            Ok(Attempt::Locked(_))
        ));
    }

    /// The child of the next test: holds byte 7 of object "kid" until it
    /// is killed.
    #[test]
    fn lock_file_holder() {
        let Ok(path) = std::env::var(DIR_VAR) else {
            return; // only as the child
        };
        let uid = rustix::process::geteuid().as_raw();
        let fd = open_directory(&path, uid).unwrap();
        let _held = lock(fd.as_fd(), "kid", 7)
            .unwrap()
            .expect("the byte is free");
        println!("locked");
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn a_killed_holders_byte_is_free_at_once() {
        let dir = TestDir::new("kill");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::unix::sync::lock_file::tests::lock_file_holder",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, &dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let locked = lines.any(|line| line.map(|l| l.contains("locked")).unwrap_or(false));
        let alive = held(dir.fd(), "kid", 7);
        let refused = lock(dir.fd(), "kid", 7).map(|l| l.is_none());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(locked, "the child did not lock");
        assert!(alive.unwrap(), "a live holder's byte looks free");
        assert!(refused.unwrap(), "a live holder's byte was locked again");
        // SIGKILL: no destructor ran, the file stays, but unlocked.
        assert!(!held(dir.fd(), "kid", 7).unwrap(), "dead but held");
        let mine = lock(dir.fd(), "kid", 7)
            .unwrap()
            .expect("free after the kill");
        drop(mine);
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let dir = TestDir::new("mode");
        let uid = rustix::process::geteuid().as_raw();
        std::fs::set_permissions(
            &dir.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let err = open_directory(&dir.path, uid).unwrap_err();
        assert!(
            matches!(err, Error::PermissionDenied { .. }) && err.to_string().contains("0700"),
            "{err}"
        );
        let err = open_directory(&dir.path, uid.wrapping_add(1)).unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn keys_tell_objects_apart_and_agree_across_descriptors() {
        let a = rustix::fs::memfd_create("a", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let b = rustix::fs::memfd_create("b", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let a2 = rustix::io::fcntl_dupfd_cloexec(&a, 3).unwrap();
        let ka = object_key(a.as_fd()).unwrap();
        assert_eq!(ka, object_key(a2.as_fd()).unwrap());
        assert_ne!(ka, object_key(b.as_fd()).unwrap());
    }
}
