//! Handing objects to other processes on Unix: inheritance across
//! fork+exec, `SCM_RIGHTS` over a Unix socket, `pidfd_getfd`, and
//! read-only handles sealed by the kernel.

use std::collections::BTreeSet;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Mutex;

use rustix::fs::{self, OFlags};
use rustix::io::{self as rio, Errno, FdFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage,
};

use super::platform::{self, Marker};
use super::{names, os_error, Lifetime, Object};
use crate::sys::{Access, Claim, Owner};
use crate::{Error, Result};

impl Object {
    /// The object's identity: device and inode numbers.
    pub(crate) fn identity(&self) -> Result<(u64, u64)> {
        let st = fs::fstat(&self.fd).map_err(|e| os_error(self.name(), "fstat", e))?;
        Ok(identity_of(&st))
    }

    /// Whether the kernel forbids new writes and writable mappings of the
    /// object, through any descriptor (seals).
    pub(crate) fn write_sealed(&self) -> bool {
        platform::seals(&self.fd).is_some_and(|s| s.no_writes)
    }

    /// The descriptor's number in this process.
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A new close-on-exec descriptor of the same object, to give away.
    ///
    /// For a named object whose holders are counted, it is a new open file
    /// description with a shared lock of its own: the receiver becomes a
    /// holder by itself, independent of this process (a `dup` would share
    /// this process's lock, and whichever side dropped first would think it
    /// was the last). Dropping the returned object never removes a name:
    /// its lock belongs to the receiver.
    ///
    /// The object is already this process's, whoever owns it (another
    /// user's, opened with `allow_foreign_owner`): the reopened name must
    /// lead to it, so its owner is not asked again.
    pub(crate) fn handover(&self) -> Result<Object> {
        let fd = match (&self.meta.name, self.lifetime) {
            (Some(n), Lifetime::Counted) => {
                names::reopen_as_holder(n, self.meta.access, Owner::Anyone, &self.fd)?
            }
            _ => rio::fcntl_dupfd_cloexec(&self.fd, 3)
                .map_err(|e| os_error(self.name(), "fcntl(F_DUPFD_CLOEXEC)", e))?,
        };
        Ok(Object {
            fd,
            meta: self.meta.clone(),
            granularity: self.granularity,
            lifetime: Lifetime::Unmanaged,
        })
    }

    /// A read-only handle that no process can ever write through, sealed
    /// by the kernel (`F_SEAL_FUTURE_WRITE`). Writable views that exist keep
    /// working; no new writable view can be made, through any handle.
    pub(crate) fn to_readonly(&self) -> Result<Object> {
        if let Some(name) = &self.meta.name {
            return Err(Error::Unsupported {
                what: format!(
                    "a kernel-enforced read-only handle of named segment {name:?}: anyone who knows the name can open it writable; share an anonymous segment instead"
                ),
            });
        }
        let reopened = platform::reopen_readonly(&self.fd).map_err(|e| match e {
            Errno::NOSYS | Errno::NOTSUP => Error::Unsupported {
                what: "read-only anonymous segments (memfd seals)".into(),
            },
            e => os_error(None, "open(/proc/self/fd)", e),
        })?;
        platform::seal_future_writes(&self.fd).map_err(|e| match e {
            Errno::NOSYS | Errno::NOTSUP | Errno::INVAL => Error::Unsupported {
                what: "read-only anonymous segments (F_SEAL_FUTURE_WRITE needs Linux 5.1)".into(),
            },
            e => os_error(None, "fcntl(F_ADD_SEALS)", e),
        })?;
        Object::new(reopened, None, Access::ReadOnly, Lifetime::Unmanaged)
    }

    /// Checks a descriptor received from another process against what that
    /// process claims about it, and makes an object of it.
    pub(crate) fn from_received(fd: OwnedFd, claim: &Claim, origin: &str) -> Result<Object> {
        let (access, lifetime) = check_claim(fd.as_fd(), claim, origin)?;
        let fd = match (&claim.name, lifetime) {
            // Become a holder of our own; the received copy (shared with
            // the sender and its other receivers) is closed.
            (Some(name), Lifetime::Counted) => {
                match names::reopen_as_holder(name, access, Owner::Me, &fd) {
                    Ok(own) => own,
                    // Another user's segment handed to us: the sender chose
                    // to give us the object, not its name. We use the
                    // descriptor we were given (its lock keeps the object
                    // held) but never claim the name: we do not count as a
                    // holder of our own, and our drop never removes it.
                    Err(Error::PermissionDenied { .. }) => {
                        return Object::new(fd, claim.name.clone(), access, Lifetime::Unmanaged)
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => fd,
        };
        Object::new(fd, claim.name.clone(), access, lifetime)
    }

    /// Takes the descriptor `fd` of process `pid` (`pidfd_getfd`), which
    /// needs the right to ptrace it. The object has no name (a taken
    /// descriptor shares the target's open file, so it never removes a name).
    pub(crate) fn take_from_process(pid: u32, fd: i32) -> Result<Object> {
        let origin = format!("descriptor {fd} of process {pid}");
        let taken = platform::take_fd(pid, fd).map_err(|e| match e {
            Errno::PERM | Errno::ACCESS => Error::PermissionDenied {
                source: Some(e.into()),
                object: origin.clone(),
                op: format!("pidfd_getfd: not allowed to ptrace the process ({e})"),
            },
            Errno::SRCH => Error::not_found_because(&format!("process {pid}"), e),
            Errno::BADF => Error::InvalidHandle {
                object: origin.clone(),
                reason: "the process has no such descriptor".into(),
            },
            Errno::NOSYS | Errno::NOTSUP => Error::Unsupported {
                what: "pidfd_getfd (Linux 5.6)".into(),
            },
            e => Error::Io {
                object: origin.clone(),
                op: "pidfd_getfd",
                source: e.into(),
            },
        })?;
        // Checked exactly as a received descriptor is, against a claim made
        // from the descriptor itself: a shared-memory object; an anonymous
        // one (a memfd) sealed against shrinking, so that its owner cannot
        // truncate it under our views; a named one still at its name.
        let bad = |reason: String| Error::InvalidHandle {
            object: origin.clone(),
            reason,
        };
        check_is_shared_memory(taken.as_fd()).map_err(bad)?;
        let st = fs::fstat(&taken).map_err(|e| bad(format!("fstat: {e}")))?;
        let access = fs::fcntl_getfl(&taken).map_err(|e| bad(format!("fcntl(F_GETFL): {e}")))?
            & OFlags::RWMODE;
        let name = platform::name_of(taken.as_fd()).filter(|name| names::same_object(name, &taken));
        let claim = Claim {
            name,
            len: u64::try_from(st.st_size).unwrap_or(0),
            readonly: access != OFlags::RDWR,
            identity: Some(identity_of(&st)),
        };
        Object::from_received(taken, &claim, &origin)
    }
}

/// An object's device and inode numbers, as the inheritance value spells
/// them (`dev_t` is signed on Apple, `ino_t` 32-bit on some systems).
#[allow(clippy::unnecessary_cast)]
fn identity_of(st: &fs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Checks a descriptor from another process against what that process
/// claims about it: a shared-memory object, of that identity, size, access
/// and name, sealed as an anonymous segment must be. Returns whether it may
/// be mapped writable and how it takes part in the name's lifetime.
fn check_claim(fd: BorrowedFd<'_>, claim: &Claim, origin: &str) -> Result<(Access, Lifetime)> {
    let bad = |reason: String| Error::InvalidHandle {
        object: origin.to_owned(),
        reason,
    };
    check_is_shared_memory(fd).map_err(bad)?;
    let st = fs::fstat(fd).map_err(|e| bad(format!("fstat: {e}")))?;
    if let Some((dev, ino)) = claim.identity {
        let (real_dev, real_ino) = identity_of(&st);
        if (real_dev, real_ino) != (dev, ino) {
            return Err(bad(format!(
                "descriptor refers to object {real_dev}:{real_ino}, not the {dev}:{ino} that was shared"
            )));
        }
    }
    let real_len = u64::try_from(st.st_size).unwrap_or(0);
    if real_len != claim.len {
        return Err(bad(format!(
            "the object is {real_len} bytes long, not the {} that was claimed",
            claim.len
        )));
    }
    let access =
        fs::fcntl_getfl(fd).map_err(|e| bad(format!("fcntl(F_GETFL): {e}")))? & OFlags::RWMODE;
    let writable = access == OFlags::RDWR;
    if !claim.readonly && !writable {
        return Err(bad(
            "claimed writable, but the descriptor is read-only".into()
        ));
    }
    let seals = platform::seals(fd);
    if claim.name.is_none() {
        // An anonymous object must be fixed in size, or the sender
        // could truncate it under our views (SIGBUS).
        if let Some(seals) = seals {
            if !seals.fixed_size {
                return Err(bad(
                    "anonymous segment is not sealed against shrinking: the sender could truncate it under our views".into(),
                ));
            }
            if claim.readonly && writable && !seals.no_writes {
                return Err(bad(
                    "claimed read-only, but it is neither a read-only descriptor nor sealed against writes".into(),
                ));
            }
        }
    }
    if let Some(name) = &claim.name {
        // (The name was validated where the claim was parsed.) It must lead to this very object: otherwise a sender
        // could pass off any tmpfs file as a named segment.
        if !names::same_object(name, fd) {
            return Err(bad(format!(
                "the name {name:?} does not refer to the object that was sent"
            )));
        }
    }
    let lifetime = match (&claim.name, platform::get_marker(fd)) {
        (Some(_), Marker::Shared) => Lifetime::Counted,
        _ => Lifetime::Unmanaged,
    };
    Ok((Access::from_writable(writable && !claim.readonly), lifetime))
}

/// Refuses anything that is not a shared-memory object: pipes, sockets,
/// directories, files on disk.
fn check_is_shared_memory(fd: BorrowedFd<'_>) -> Result<(), String> {
    let st = fs::fstat(fd).map_err(|e| format!("not an open descriptor ({e})"))?;
    let file_type = fs::FileType::from_raw_mode(st.st_mode);
    if file_type != fs::FileType::RegularFile {
        return Err(format!(
            "not a shared-memory object: the descriptor is a {file_type:?}"
        ));
    }
    if !platform::is_shared_memory_fs(fd) {
        return Err(
            "not a shared-memory object: a regular file outside the shared-memory file systems"
                .into(),
        );
    }
    Ok(())
}

/// Descriptors adopted from the environment, so that none is adopted twice
/// (which would close it twice).
static ADOPTED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

/// Adopts the inherited descriptor `raw` after checking it against `claim`,
/// and makes it close-on-exec again.
pub(crate) fn adopt_inherited(
    raw: u64,
    _parent: u32,
    claim: &Claim,
    origin: &str,
) -> Result<Object> {
    let bad = |reason: String| Error::InvalidHandle {
        object: origin.to_owned(),
        reason,
    };
    let raw = RawFd::try_from(raw).map_err(|_| bad(format!("{raw} is not a descriptor number")))?;
    if raw <= 2 {
        return Err(bad(format!(
            "descriptor {raw} is standard input, output or error"
        )));
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|e| e.into_inner());
    if adopted.contains(&raw) {
        return Err(bad(format!("descriptor {raw} was already taken")));
    }
    // SAFETY: borrowed only for the checks below, which leave it exactly as
    // it was if they fail; fcntl and fstat tell whether it is open at all.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    // Check everything before taking ownership: a wrong descriptor must be
    // left exactly as it was.
    //
    // A descriptor that came through `exec` is not close-on-exec (the
    // parent cleared the flag for exactly this child). Every descriptor this
    // process opened itself is (memshare's, and std's `File`s and sockets):
    // adopting one of those would make two owners close it.
    check_claim(borrowed, claim, origin)?;
    let fd_flags = rio::fcntl_getfd(borrowed)
        .map_err(|e| bad(format!("descriptor {raw} is not an open descriptor ({e})")))?;
    if fd_flags.contains(FdFlags::CLOEXEC) {
        return Err(bad(format!(
            "descriptor {raw} is close-on-exec, so it did not come through exec: this \
             process opened it itself (it may be owned already); refused"
        )));
    }
    rio::fcntl_setfd(borrowed, FdFlags::CLOEXEC)
        .map_err(|e| bad(format!("fcntl(F_SETFD): {e}")))?;
    // The parent put this descriptor here for us: the value names our
    // parent, and the object's identity, size and access match its claim.
    // SAFETY: open, and owned by no other memshare object (the ADOPTED
    // set); from now on the object owns it and closes it on drop.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    adopted.insert(raw);
    Object::from_received(fd, claim, origin)
}

/// Values made for one process (Windows' `Segment::duplicate_into`) do
/// not exist on Unix, where descriptors travel over a socket.
pub(crate) fn adopt_duplicated(
    _raw: u64,
    _parent: u32,
    _claim: &Claim,
    origin: &str,
) -> Result<Object> {
    Err(Error::InvalidHandle {
        object: origin.to_owned(),
        reason: "a value duplicated into a process (field \"to\") is a Windows handle; \
                 on Unix segments reach a running process with send_segments"
            .into(),
    })
}

/// Gives `object` to the child `cmd` spawns: a new close-on-exec
/// descriptor (see [`Object::handover`]) that only the forked child makes
/// inheritable, between `fork` and `exec`. Returns the descriptor's number
/// and the object's identity (`device:inode`).
pub(crate) fn offer_to_child(cmd: &mut Command, object: &Object) -> Result<(u64, (u64, u64))> {
    let given = object.handover()?;
    let identity = given.identity()?;
    let raw = given.raw();
    let clear = move || {
        // `given` lives in the closure, so the descriptor stays open for as
        // long as the command can spawn children.
        let _ = &given;
        clear_cloexec(raw)
    };
    // SAFETY: `clear_cloexec` is one `fcntl` system call on a descriptor
    // the closure keeps open: async-signal-safe, no allocation, no lock.
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, clear) };
    Ok((raw as u64, identity))
}

/// Makes spawning `cmd` fail with `InvalidInput`: sharing could not be
/// prepared.
pub(crate) fn fail_share(cmd: &mut Command, _var: &str, _reason: &str) {
    let fail = || Err(std::io::ErrorKind::InvalidInput.into());
    // SAFETY: the closure only returns an error (no allocation, no lock),
    // which is async-signal-safe.
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, fail) };
}

/// Makes `fd` inheritable. Runs in the child between fork and exec, so it
/// must be async-signal-safe: one `fcntl` system call, no allocation.
fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: the descriptor is kept open by the `Command` that runs this.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    rio::fcntl_setfd(fd, FdFlags::empty()).map_err(std::io::Error::from)
}

/// The id of this process's parent, as the inheritance value records it.
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

/// Sends `payload` with `objects`' descriptors in one message.
pub(crate) fn send_with_fds(stream: &UnixStream, payload: &[u8], objects: &[Object]) -> Result<()> {
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.fd.as_fd()).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Error::OutOfRange {
            object: "segment message".into(),
            detail: format!("{} descriptors do not fit in one message", fds.len()),
        });
    }
    let mut sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(payload)],
        &mut control,
        platform::SEND_FLAGS,
    )
    .map_err(|e| socket_error("sendmsg", e))?;
    // The descriptors went with the first byte; send the rest plainly.
    while sent < payload.len() {
        sent += rustix::net::send(stream, &payload[sent..], platform::SEND_FLAGS)
            .map_err(|e| socket_error("send", e))?;
    }
    Ok(())
}

/// Receives one message: its payload (read until `wanted` says it is
/// complete; `wanted(&[])` is the header's length, the most the first read
/// takes) and the descriptors that came with it (at most `max_fds`; more is
/// truncated control data, refused), all close-on-exec. Reads nothing of
/// the next message.
pub(crate) fn recv_with_fds(
    stream: &UnixStream,
    buf: &mut Vec<u8>,
    max_fds: usize,
    wanted: impl Fn(&[u8]) -> Result<usize>,
) -> Result<Vec<OwnedFd>> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(max_fds))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // The first read takes no more than the header: a stream socket may
    // hand over the next message's bytes with this one's (Linux joins a
    // message without descriptors to the next one in one read), and what is
    // read past this message would be lost. Nothing past `wanted` is read.
    buf.clear();
    buf.resize(wanted(&[])?, 0);
    let msg = rustix::net::recvmsg(
        stream,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        platform::RECV_FLAGS,
    )
    .map_err(|e| socket_error("recvmsg", e))?;
    // Take the descriptors first, so that they are closed whatever happens.
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    for fd in &fds {
        platform::received_cloexec(fd).map_err(|e| socket_error("fcntl(F_SETFD)", e))?;
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(Error::InvalidHandle {
            object: "segment message".into(),
            reason: format!(
                "the control data was truncated (more than {max_fds} descriptors?): refused"
            ),
        });
    }
    if msg.bytes == 0 {
        return Err(Error::Io {
            object: "segment message".into(),
            op: "recvmsg",
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    }
    let mut have = msg.bytes;
    buf.truncate(have);
    // Read the rest of a payload that arrived in pieces: `wanted` says how
    // long the message is (bounded) once it has seen the header.
    loop {
        let want = wanted(buf)?;
        if have >= want {
            buf.truncate(want);
            break;
        }
        buf.resize(want, 0);
        let n = rustix::net::recv(stream, &mut buf[have..want], RecvFlags::empty())
            .map_err(|e| socket_error("recv", e))?
            .0;
        if n == 0 {
            return Err(Error::Io {
                object: "segment message".into(),
                op: "recv",
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        have += n;
        buf.truncate(have);
    }
    Ok(fds)
}

fn socket_error(op: &'static str, e: Errno) -> Error {
    Error::Io {
        object: "segment message".into(),
        op,
        source: e.into(),
    }
}
