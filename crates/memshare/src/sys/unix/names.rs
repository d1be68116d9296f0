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
use crate::{Error, Result};

/// How long an opener waits for a name that is being created or removed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

fn path(name: &str) -> String {
    format!("/{name}")
}

/// The `shm_open` access flags for a writable or read-only handle.
fn access(writable: bool) -> shm::OFlags {
    if writable {
        shm::OFlags::RDWR
    } else {
        shm::OFlags::RDONLY
    }
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
    let mut attempts = 0;
    loop {
        match platform::publish_shm_object(&fd, name) {
            Ok(()) => break,
            Err(Errno::EXIST) => {
                attempts += 1;
                // A stale name is reclaimed once; a name that turns up
                // again and again is someone else's live object.
                if attempts > 16 || reclaim_if_stale(name)? == Reclaim::Live {
                    return Err(Error::AlreadyExists {
                        name: name.to_owned(),
                    });
                }
            }
            // No /proc: the unnamed object is dropped, and made by name.
            Err(Errno::NOTSUP) => return create_by_name(name, len, opts),
            Err(e) => return Err(os_error(Some(name), "linkat", e)),
        }
    }
    Object::new(fd, Some(name.to_owned()), true, lifetime)
}

/// Where an object cannot be made unnamed first: `shm_open(O_EXCL)`, then
/// lock, mark and size it under its name, removing the name on failure.
/// A creator killed in between leaves an empty, unmarked object (which
/// [`open`] refuses and the other Unixes' users know from `shm_open`).
fn create_by_name(name: &str, len: u64, opts: &CreateOptions) -> Result<Object> {
    let path = path(name);
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    let mode = Mode::RUSR | Mode::WUSR;
    let mut attempts = 0;
    let fd = loop {
        match shm::open(path.as_str(), flags, mode) {
            Ok(fd) => break fd,
            Err(Errno::EXIST) => {
                attempts += 1;
                if attempts > 16 || reclaim_if_stale(name)? == Reclaim::Live {
                    return Err(Error::AlreadyExists {
                        name: name.to_owned(),
                    });
                }
            }
            Err(e) => return Err(os_error(Some(name), "shm_open", e)),
        }
    };
    // From here on, a failure must not leave the name behind.
    let undo = |err: Error| {
        let _ = shm::unlink(path.as_str());
        err
    };
    let (fd, lifetime) = prepare(name, fd, len, opts, &undo)?;
    Object::new(fd, Some(name.to_owned()), true, lifetime).map_err(undo)
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

pub(super) fn open(name: &str, writable: bool) -> Result<Object> {
    let path = path(name);
    let flags = access(writable);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let fd = shm::open(path.as_str(), flags, Mode::empty())
            .map_err(|e| os_error(Some(name), "shm_open", e))?;
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
                return Object::new(fd, Some(name.to_owned()), writable, Lifetime::Unmanaged);
            }
        }
        // Nobody holds it: every holder died. Remove the stale name.
        if fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            if same_object(&path, &fd) {
                let _ = shm::unlink(path.as_str());
            }
            return Err(Error::NotFound {
                name: name.to_owned(),
            });
        }
        match fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
            // Someone holds it exclusively: a last holder removing the name,
            // or another process reclaiming it. Wait for the outcome.
            Err(Errno::WOULDBLOCK) => {}
            Err(e) => return Err(os_error(Some(name), "flock", e)),
            Ok(()) => {
                // The name may have been removed (and even created anew)
                // between our shm_open and our lock.
                if same_object(&path, &fd) {
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
                    return Object::new(fd, Some(name.to_owned()), writable, Lifetime::Counted);
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
    let fd = match shm::open(path.as_str(), shm::OFlags::RDONLY, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Reclaim::Gone),
        // Another user's object: not ours to judge, and it exists.
        Err(Errno::ACCESS) => return Ok(Reclaim::Live),
        Err(e) => return Err(os_error(Some(name), "shm_open", e)),
    };
    if platform::get_marker(&fd) != Marker::Shared {
        return Ok(Reclaim::Live);
    }
    if fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Reclaim::Live);
    }
    if !same_object(&path, &fd) {
        return Ok(Reclaim::Gone);
    }
    match shm::unlink(path.as_str()) {
        Ok(()) => Ok(Reclaim::Removed),
        Err(Errno::NOENT) => Ok(Reclaim::Gone),
        Err(e) => Err(os_error(Some(name), "shm_unlink", e)),
    }
}

/// Whether `path` still names the object open as `fd`.
pub(super) fn same_object(path: &str, fd: impl AsFd) -> bool {
    let Ok(current) = shm::open(path, shm::OFlags::RDONLY, Mode::empty()) else {
        return false;
    };
    match (fs::fstat(fd.as_fd()), fs::fstat(&current)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// A holder of its own for the object called `name` that `like` is open
/// on: a new open file description (same access) with a shared lock.
///
/// A descriptor received from another process (inherited, sent over a
/// socket) shares its open file description, and so its `flock`, with
/// every other copy of it: with the sender's, and with every child a
/// `Command` spawned. Counting holders needs one description per holder.
pub(super) fn reopen_as_holder(name: &str, writable: bool, like: impl AsFd) -> Result<OwnedFd> {
    let path = path(name);
    let flags = access(writable);
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let fd = shm::open(path.as_str(), flags, Mode::empty())
            .map_err(|e| os_error(Some(name), "shm_open", e))?;
        if !same_object(&path, like.as_fd()) || !same_object(&path, &fd) {
            return Err(Error::NotFound {
                name: name.to_owned(),
            });
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
            if same_object(&path, fd) {
                let _ = shm::unlink(path.as_str());
            }
        }
        Lifetime::Counted => {
            // Converting to exclusive succeeds only if no other holder is
            // left. (A failed conversion drops our shared lock, which is
            // fine: the descriptor is about to be closed.)
            if fs::flock(fd, FlockOperation::NonBlockingLockExclusive).is_ok()
                && same_object(&path, fd)
            {
                let _ = shm::unlink(path.as_str());
            }
        }
    }
}

/// Removes the name now, whoever holds the object (they keep their
/// mappings), like deleting a file.
pub(crate) fn remove_named(name: &str) -> Result<()> {
    shm::unlink(path(name).as_str()).map_err(|e| os_error(Some(name), "shm_unlink", e))
}
