//! Named objects with Windows lifetimes on POSIX shared memory.
//!
//! A POSIX name outlives every process that used it; a Windows name goes
//! away with its last handle. memshare gives the Windows behaviour:
//!
//! - Every holder keeps a shared `flock` on its descriptor. The kernel drops
//!   the lock when the process dies, however it dies.
//! - A holder that drops its last handle converts its lock to exclusive
//!   without blocking. Only the last holder can; it removes the name (after
//!   checking that the name still refers to its object).
//! - Creating or opening a name whose object nobody holds finds it *stale*
//!   (every holder died) and removes it first.
//! - An opener locks after it opened, so between the two the last holder
//!   may have removed the name: after locking, the opener checks that the
//!   name still refers to the object it locked, and starts again if not.
//! - Only objects memshare created with a shared lifetime take part: the
//!   lifetime is recorded on the object (an extended attribute, see
//!   `platform::Marker`). Objects made by other programs (Python, C) and
//!   persistent ones are never removed behind anyone's back.
//!
//! The creator sets the marker *after* taking its lock, so no other process
//! can ever see a marked object that nobody holds while it is being made;
//! on Linux it names the object only after that (`O_TMPFILE` + `linkat`),
//! so nobody sees a half-made object at all.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::fs::{self, FlockOperation, Mode};
use rustix::io::Errno;
use rustix::shm;

use super::platform::{self, Marker};
use super::{describe, os_error, size_object, CreateOptions, Lifetime, Object};
use crate::sys::{Access, Owner};
use crate::{Error, Result};

/// How long an opener waits for a name that is being created or removed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

fn path(name: &str) -> String {
    format!("/{name}")
}

/// The `open` access flags for a handle.
fn oflags(access: Access) -> fs::OFlags {
    match access {
        Access::ReadWrite => fs::OFlags::RDWR,
        Access::ReadOnly => fs::OFlags::RDONLY,
    }
}

/// Opens the object called `name`, and refuses what is not a shared-memory
/// object this process may trust: a symbolic link (never followed), a FIFO,
/// a directory, a device or socket (never waited on), a file outside the
/// shared-memory file systems, and, unless `owner` is [`Owner::Anyone`],
/// an object that another user owns.
pub(super) fn open_checked(name: &str, access: Access, owner: Owner) -> Result<OwnedFd> {
    let fd = platform::open_shm_object(name, oflags(access)).map_err(|e| match e {
        // O_NOFOLLOW on a link, a directory opened for writing, a socket
        // or a FIFO without a reader: say what is there.
        Errno::LOOP | Errno::ISDIR | Errno::NXIO | Errno::NODEV | Errno::OPNOTSUPP => {
            not_shared_memory(name, &what_is_at(name))
        }
        e => os_error(Some(name), "open", e),
    })?;
    check_object(name, &fd, owner)?;
    Ok(fd)
}

/// Checks that the open `fd` (found at `name`) is a shared-memory object:
/// a regular file on tmpfs or hugetlbfs, owned by this process's effective
/// user unless `owner` is [`Owner::Anyone`].
pub(super) fn check_object(name: &str, fd: impl AsFd, owner: Owner) -> Result<()> {
    let st = fs::fstat(fd.as_fd()).map_err(|e| os_error(Some(name), "fstat", e))?;
    let file_type = fs::FileType::from_raw_mode(st.st_mode);
    if file_type != fs::FileType::RegularFile {
        return Err(not_shared_memory(name, type_name(file_type)));
    }
    if !platform::is_shared_memory_fs(fd.as_fd()) {
        return Err(not_shared_memory(
            name,
            "a regular file outside the shared-memory file systems",
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if owner == Owner::Me && st.st_uid != me {
        return Err(Error::PermissionDenied {
            source: None,
            object: describe(Some(name)),
            op: format!(
                "open: the object belongs to {}, not to this process's {}; it was \
                 refused, because writing into it would hand data to that user (use \
                 SegmentOptions::allow_foreign_owner(true) to open it anyway)",
                user_description(st.st_uid),
                user_description(me)
            ),
        });
    }
    Ok(())
}

fn not_shared_memory(name: &str, what: &str) -> Error {
    Error::NotSharedMemory {
        object: describe(Some(name)),
        what: format!("{} is {what}", platform::shm_path(name)),
    }
}

/// What is at `name`, for a message (an `lstat`, which never blocks).
fn what_is_at(name: &str) -> String {
    match platform::stat_shm_name(name) {
        Ok(st) => type_name(fs::FileType::from_raw_mode(st.st_mode)).to_owned(),
        Err(e) => format!("something that cannot be opened ({e})"),
    }
}

fn type_name(file_type: fs::FileType) -> &'static str {
    match file_type {
        fs::FileType::RegularFile => "a regular file",
        fs::FileType::Directory => "a directory",
        fs::FileType::Symlink => "a symbolic link (never followed)",
        fs::FileType::Fifo => "a FIFO",
        fs::FileType::Socket => "a socket",
        fs::FileType::CharacterDevice => "a character device",
        fs::FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    }
}

/// `uid N (name)`, or `uid N` where the user database does not know it.
fn user_description(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("user {uid} ({name})"),
        None => format!("user {uid}"),
    }
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: `passwd` is a plain C struct for which all-zero is valid.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `pwd` and `result` are
    // exclusively borrowed locals, `buf` is `buf.len()` bytes long.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success `pw_name` points at a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

pub(super) fn create(name: &str, len: u64, opts: &CreateOptions) -> Result<Object> {
    if opts.huge_pages {
        return Err(Error::Unsupported {
            what: format!(
                "huge pages for named segment {name:?}: POSIX shared memory lives on tmpfs; use an anonymous segment and share it"
            ),
        });
    }
    let mode = Mode::RUSR | Mode::WUSR;
    match platform::unnamed_shm_object(mode) {
        Ok(fd) => create_then_name(name, fd, len, opts),
        Err(Errno::NOTSUP) => create_by_name(name, len, opts),
        Err(e) => Err(os_error(Some(name), "open(O_TMPFILE)", e)),
    }
}

/// Makes the object ready (locked, 0600, marked, sized) while it has no
/// name, then names it in one step (`linkat`): no process, not even one
/// killed half-way, can leave a half-made object under the name.
fn create_then_name(name: &str, fd: OwnedFd, len: u64, opts: &CreateOptions) -> Result<Object> {
    let (fd, lifetime) = prepare(name, fd, len, opts, &|err| err)?;
    match claim_name(name, "linkat", || platform::publish_shm_object(&fd, name)) {
        Ok(()) => Object::new(fd, Some(name.to_owned()), Access::ReadWrite, lifetime),
        // No /proc: the unnamed object is dropped, and made by name.
        Err(Claimed::NotSupported) => create_by_name(name, len, opts),
        Err(Claimed::Failed(e)) => Err(e),
    }
}

/// Where an object cannot be made unnamed first: `shm_open(O_EXCL)`, then
/// lock, mark and size it under its name, removing the name on failure.
/// A creator killed in between leaves an empty, unmarked object (which
/// [`open`] refuses and the other Unixes' users know from `shm_open`).
fn create_by_name(name: &str, len: u64, opts: &CreateOptions) -> Result<Object> {
    let path = path(name);
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    let mode = Mode::RUSR | Mode::WUSR;
    let fd = claim_name(name, "shm_open", || shm::open(path.as_str(), flags, mode)).map_err(
        |claimed| match claimed {
            Claimed::Failed(e) => e,
            Claimed::NotSupported => os_error(Some(name), "shm_open", Errno::NOTSUP),
        },
    )?;
    // From here on, a failure must not leave the name behind.
    let undo = |err: Error| {
        let _ = shm::unlink(path.as_str());
        err
    };
    let (fd, lifetime) = prepare(name, fd, len, opts, &undo)?;
    Object::new(fd, Some(name.to_owned()), Access::ReadWrite, lifetime).map_err(undo)
}

/// Why [`claim_name`] did not get the name.
enum Claimed {
    /// The system cannot do it this way (`NOTSUP`): try another.
    NotSupported,
    /// Taken by a live object, or another error.
    Failed(Error),
}

/// Runs `attempt` (which takes the name exclusively: `EXIST` if it is
/// taken) until it succeeds. A stale name (its holders all died) is
/// reclaimed and tried again; a name that turns up again and again, or a
/// live one, is `AlreadyExists`.
fn claim_name<T>(
    name: &str,
    op: &'static str,
    mut attempt: impl FnMut() -> std::result::Result<T, Errno>,
) -> std::result::Result<T, Claimed> {
    let mut attempts = 0;
    loop {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(Errno::EXIST) => {
                attempts += 1;
                if attempts > 16
                    || reclaim_if_stale(name).map_err(Claimed::Failed)? == Reclaim::Live
                {
                    return Err(Claimed::Failed(Error::already_exists_because(
                        name,
                        Errno::EXIST,
                    )));
                }
            }
            Err(Errno::NOTSUP) => return Err(Claimed::NotSupported),
            Err(e) => return Err(Claimed::Failed(os_error(Some(name), op, e))),
        }
    }
}

/// Locks a new object shared, makes its mode exactly 0600, records its
/// lifetime and sizes it. `undo` runs on every error.
fn prepare(
    name: &str,
    fd: OwnedFd,
    len: u64,
    opts: &CreateOptions,
    undo: &dyn Fn(Error) -> Error,
) -> Result<(OwnedFd, Lifetime)> {
    // A new object: nobody else can hold a lock on it yet.
    fs::flock(&fd, FlockOperation::NonBlockingLockShared)
        .map_err(|e| undo(os_error(Some(name), "flock", e)))?;
    // The creation mode is filtered through the umask; make it exactly 0600.
    fs::fchmod(&fd, Mode::RUSR | Mode::WUSR)
        .map_err(|e| undo(os_error(Some(name), "fchmod", e)))?;
    let marker = if opts.persist {
        Marker::Persist
    } else {
        Marker::Shared
    };
    let recorded = platform::set_marker(&fd, marker)
        .map_err(|e| undo(os_error(Some(name), "fsetxattr", e)))?;
    size_object(&fd, Some(name), len, opts).map_err(undo)?;
    let lifetime = match (opts.persist, recorded) {
        (true, _) => Lifetime::Unmanaged,
        (false, true) => Lifetime::Counted,
        (false, false) => Lifetime::CreatorRemoves,
    };
    Ok((fd, lifetime))
}

pub(super) fn open(name: &str, access: Access, owner: Owner) -> Result<Object> {
    let path = path(name);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let fd = open_checked(name, access, owner)?;
        match platform::get_marker(&fd) {
            Marker::Shared => {}
            // Foreign and persistent objects live like files: no counting.
            Marker::Foreign | Marker::Persist => {
                if is_empty(&fd) {
                    if Instant::now() < deadline {
                        // A creator between shm_open and ftruncate.
                        settle();
                        continue;
                    }
                    return Err(never_sized(name));
                }
                return Object::new(fd, Some(name.to_owned()), access, Lifetime::Unmanaged);
            }
        }
        // Nobody holds it: every holder died. Remove the stale name.
        if fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            if same_object(name, &fd) {
                let _ = shm::unlink(path.as_str());
            }
            return Err(Error::not_found(name));
        }
        match fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
            // Someone holds it exclusively: a last holder removing the name,
            // or another process reclaiming it. Wait for the outcome.
            Err(Errno::WOULDBLOCK) => {}
            Err(e) => return Err(os_error(Some(name), "flock", e)),
            Ok(()) => {
                // The name may have been removed (and even created anew)
                // between our open and our lock.
                if same_object(name, &fd) {
                    if is_empty(&fd) {
                        if Instant::now() < deadline {
                            // Marked and locked, not yet sized: a creator
                            // at work (only where objects are made by name).
                            drop(fd);
                            settle();
                            continue;
                        }
                        return Err(never_sized(name));
                    }
                    return Object::new(fd, Some(name.to_owned()), access, Lifetime::Counted);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Io {
                object: describe(Some(name)),
                op: "open",
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the name kept changing hands: another process holds an exclusive lock on it",
                ),
            });
        }
        settle();
    }
}

fn is_empty(fd: &OwnedFd) -> bool {
    fs::fstat(fd).is_ok_and(|st| st.st_size == 0)
}

/// An object that stayed empty: its creator died before sizing it, or a
/// program made it and never gave it a size. A segment is at least 1 byte.
fn never_sized(name: &str) -> Error {
    Error::InvalidHandle {
        object: describe(Some(name)),
        reason: format!(
            "the object is empty: its creator never gave it a size (it may have died while \
             creating it); remove it with Segment::remove or `memshare rm {name}`"
        ),
    }
}

fn settle() {
    std::thread::sleep(Duration::from_millis(1));
}

/// What [`reclaim_if_stale`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reclaim {
    /// The object was stale and this call removed its name.
    Removed,
    /// There is no such name (any more): someone else removed it, or it
    /// now names another object.
    Gone,
    /// The name is someone's: a live holder, a persistent or foreign object.
    Live,
}

/// Removes `name` if its object is marked shared and nobody holds it.
pub(crate) fn reclaim_if_stale(name: &str) -> Result<Reclaim> {
    let path = path(name);
    let fd = match open_checked(name, Access::ReadOnly, Owner::Me) {
        Ok(fd) => fd,
        Err(Error::NotFound { .. }) => return Ok(Reclaim::Gone),
        // Another user's object, or something that is not a shared-memory
        // object: not ours to judge, and it exists.
        Err(Error::PermissionDenied { .. } | Error::NotSharedMemory { .. }) => {
            return Ok(Reclaim::Live)
        }
        Err(e) => return Err(e),
    };
    if platform::get_marker(&fd) != Marker::Shared {
        return Ok(Reclaim::Live);
    }
    if fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Reclaim::Live);
    }
    if !same_object(name, &fd) {
        return Ok(Reclaim::Gone);
    }
    match shm::unlink(path.as_str()) {
        Ok(()) => Ok(Reclaim::Removed),
        Err(Errno::NOENT) => Ok(Reclaim::Gone),
        Err(e) => Err(os_error(Some(name), "shm_unlink", e)),
    }
}

/// Whether `name` still names the object open as `fd` (found without
/// opening the name: a FIFO swapped in cannot block this).
pub(super) fn same_object(name: &str, fd: impl AsFd) -> bool {
    match (fs::fstat(fd.as_fd()), platform::stat_shm_name(name)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// A holder of its own for the object called `name` that `like` is open
/// on: a new open file description (same access) with a shared lock.
/// The name is refused (`PermissionDenied`) if another user owns the
/// object, unless `owner` is [`Owner::Anyone`].
///
/// A descriptor received from another process (inherited, sent over a
/// socket) shares its open file description, and so its `flock`, with
/// every other copy of it: with the sender's, and with every child a
/// `Command` spawned. Counting holders needs one description per holder.
pub(super) fn reopen_as_holder(
    name: &str,
    access: Access,
    owner: Owner,
    like: impl AsFd,
) -> Result<OwnedFd> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let fd = open_checked(name, access, owner)?;
        if !same_object(name, like.as_fd()) || !same_object(name, &fd) {
            return Err(Error::not_found(name));
        }
        match fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return Ok(fd),
            // A holder is converting its lock to drop the object: wait for
            // the outcome (the name survives if we hold the received copy).
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => settle(),
            Err(e) => return Err(os_error(Some(name), "flock", e)),
        }
    }
}

/// Called when the last handle of an object in this process drops.
pub(super) fn release(name: &str, fd: &OwnedFd, lifetime: Lifetime) {
    let path = path(name);
    match lifetime {
        Lifetime::Unmanaged => {}
        Lifetime::CreatorRemoves => {
            if same_object(name, fd) {
                let _ = shm::unlink(path.as_str());
            }
        }
        Lifetime::Counted => {
            // Converting to exclusive succeeds only if no other holder is
            // left. (A failed conversion drops our shared lock, which is
            // fine: the descriptor is about to be closed.)
            if fs::flock(fd, FlockOperation::NonBlockingLockExclusive).is_ok()
                && same_object(name, fd)
            {
                let _ = shm::unlink(path.as_str());
            }
        }
    }
}

/// Removes the name now, whoever holds the object (they keep their
/// mappings), like deleting a file. What is at the name must be a
/// shared-memory object, and this user's unless `owner` is
/// [`Owner::Anyone`]. (In the sticky `/dev/shm`, nobody else can swap
/// this user's object for another between the check and the unlink.)
pub(crate) fn remove_named(name: &str, owner: Owner) -> Result<()> {
    let st = platform::stat_shm_name(name).map_err(|e| os_error(Some(name), "stat", e))?;
    let file_type = fs::FileType::from_raw_mode(st.st_mode);
    if file_type != fs::FileType::RegularFile {
        return Err(not_shared_memory(name, type_name(file_type)));
    }
    let me = rustix::process::geteuid().as_raw();
    if owner == Owner::Me && st.st_uid != me {
        return Err(Error::PermissionDenied {
            source: None,
            object: describe(Some(name)),
            op: format!(
                "remove: the object belongs to {}, not to this process's {} (use \
                 SegmentOptions::allow_foreign_owner(true) to remove it anyway)",
                user_description(st.st_uid),
                user_description(me)
            ),
        });
    }
    shm::unlink(path(name).as_str()).map_err(|e| os_error(Some(name), "shm_unlink", e))
}
