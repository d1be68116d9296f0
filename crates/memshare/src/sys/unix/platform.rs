//! What differs between Linux and the other Unixes.
//!
//! Linux (and Android) have `memfd_create`, file seals, `MAP_POPULATE`,
//! `fallocate` and extended attributes on tmpfs; the other Unixes get an
//! anonymous object from `shm_open` of a random name unlinked at once, and
//! no seals, reservation or lifetime marker.

use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::mm;
use rustix::net::{RecvFlags, SendFlags};

/// The seals on an object that matter to a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seals {
    /// Sealed against shrinking (and so against the SIGBUS attack).
    pub fixed_size: bool,
    /// Sealed against writes (`F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE`).
    pub no_writes: bool,
}

/// The lifetime a named object was created with, recorded on the object
/// itself so that every process that opens it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// Not created by memshare, or the system cannot record it.
    Foreign,
    /// The name goes away when the last holder drops it.
    Shared,
    /// The name stays until removed explicitly.
    Persist,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use rustix::fs::{self, MemfdFlags, SealFlags, XattrFlags};

    /// The extended attribute that carries the [`Marker`].
    const MARKER_XATTR: &str = "user.memshare.lifetime";

    /// A peer that closed its end is an error, not a `SIGPIPE`.
    pub(crate) const SEND_FLAGS: SendFlags = SendFlags::NOSIGNAL;
    /// Received descriptors are close-on-exec from the first instant.
    pub(crate) const RECV_FLAGS: RecvFlags = RecvFlags::CMSG_CLOEXEC;

    /// Makes a received descriptor close-on-exec: already done by
    /// [`RECV_FLAGS`].
    pub(crate) fn received_cloexec(_fd: &OwnedFd) -> Result<(), Errno> {
        Ok(())
    }

    pub(crate) fn anonymous_fd(huge_pages: bool) -> Result<OwnedFd, Errno> {
        let mut flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        if huge_pages {
            flags |= MemfdFlags::HUGETLB;
        }
        // MFD_NOEXEC_SEAL (Linux 6.3) makes the object non-executable for
        // good; older kernels reject the flag with EINVAL, so fall back.
        match fs::memfd_create("memshare", flags | MemfdFlags::NOEXEC_SEAL) {
            Err(Errno::INVAL) => fs::memfd_create("memshare", flags),
            other => other,
        }
    }

    pub(crate) fn seal_fixed_size(fd: &OwnedFd) -> Result<(), Errno> {
        fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW)
    }

    /// Where `shm_open` keeps its objects on Linux (glibc, musl, rustix).
    const SHM_DIR: &str = "/dev/shm";

    /// Opens the object called `name` in the shared-memory directory with
    /// `flags` (the access mode): never through a symbolic link
    /// (`O_NOFOLLOW`: `ELOOP`), never waiting on a FIFO (`O_NONBLOCK`),
    /// never becoming a controlling terminal, close-on-exec. rustix's and
    /// glibc's `shm_open` add only `O_CLOEXEC`, so this opens the path
    /// itself. The caller checks what it opened ([`fs::fstat`]).
    pub(crate) fn open_shm_object(name: &str, flags: fs::OFlags) -> Result<OwnedFd, Errno> {
        let path = format!("{SHM_DIR}/{name}");
        let flags = flags
            | fs::OFlags::NOFOLLOW
            | fs::OFlags::NONBLOCK
            | fs::OFlags::NOCTTY
            | fs::OFlags::CLOEXEC;
        fs::open(path.as_str(), flags, fs::Mode::empty())
    }

    /// What is at `name` in the shared-memory directory, without following
    /// a link or opening it (so it never blocks).
    pub(crate) fn stat_shm_name(name: &str) -> Result<fs::Stat, Errno> {
        fs::lstat(format!("{SHM_DIR}/{name}").as_str())
    }

    /// Where the object called `name` would be, for messages.
    pub(crate) fn shm_path(name: &str) -> String {
        format!("{SHM_DIR}/{name}")
    }

    /// The name under which the open object `fd` was found in the
    /// shared-memory directory, as `/proc/self/fd` shows it; `None` for an
    /// anonymous object or one whose name was removed. (The caller checks
    /// that the name still refers to this object.)
    pub(crate) fn name_of(fd: std::os::fd::BorrowedFd<'_>) -> Option<String> {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let name = link.to_str()?.strip_prefix(SHM_DIR)?.strip_prefix('/')?;
        (!name.contains('/') && !name.ends_with(" (deleted)")).then(|| name.to_owned())
    }

    /// A new object in the shared-memory directory with no name yet
    /// (`O_TMPFILE`), so that it can be locked, marked and sized before
    /// anyone can see it. `NOTSUP` where the system cannot do that.
    pub(crate) fn unnamed_shm_object(mode: fs::Mode) -> Result<OwnedFd, Errno> {
        let flags = fs::OFlags::TMPFILE | fs::OFlags::RDWR | fs::OFlags::CLOEXEC;
        match fs::open(SHM_DIR, flags, mode) {
            // No O_TMPFILE support (old kernel or file system), or no
            // /dev/shm: the caller creates the object by name instead.
            Err(Errno::ISDIR | Errno::OPNOTSUPP | Errno::NOENT | Errno::INVAL) => {
                Err(Errno::NOTSUP)
            }
            other => other,
        }
    }

    /// Gives the unnamed object `fd` its name, atomically: `EXIST` if the
    /// name is taken. `NOTSUP` where `/proc` is missing (the object is then
    /// made by name instead).
    pub(crate) fn publish_shm_object(fd: &OwnedFd, name: &str) -> Result<(), Errno> {
        use std::os::fd::AsRawFd;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let target = format!("{SHM_DIR}/{name}");
        match fs::linkat(
            fs::CWD,
            source.as_str(),
            fs::CWD,
            target.as_str(),
            fs::AtFlags::SYMLINK_FOLLOW,
        ) {
            Err(Errno::NOENT) if !std::path::Path::new("/proc/self/fd").exists() => {
                Err(Errno::NOTSUP)
            }
            other => other,
        }
    }

    pub(crate) fn reserve(fd: &OwnedFd, offset: u64, len: u64) -> Result<(), Errno> {
        fs::fallocate(fd, fs::FallocateFlags::empty(), offset, len)
    }

    pub(crate) fn populate_flag() -> mm::MapFlags {
        mm::MapFlags::POPULATE
    }

    pub(crate) fn is_huge_page_object(fd: &OwnedFd) -> bool {
        fs::fstatfs(fd).is_ok_and(|st| st.f_type as u64 == HUGETLBFS_MAGIC)
    }

    const HUGETLBFS_MAGIC: u64 = 0x9584_58f6;
    const TMPFS_MAGIC: u64 = 0x0102_1994;

    /// tmpfs (memfd, /dev/shm) or hugetlbfs: where shared memory lives.
    pub(crate) fn is_shared_memory_fs(fd: impl AsFd) -> bool {
        fs::fstatfs(fd).is_ok_and(|st| {
            let t = st.f_type as u64;
            t == TMPFS_MAGIC || t == HUGETLBFS_MAGIC
        })
    }

    /// The object's seals, as the kernel reports them (`F_GET_SEALS`).
    pub(crate) fn seals(fd: impl AsFd) -> Option<Seals> {
        let seals = fs::fcntl_get_seals(fd).ok()?;
        Some(Seals {
            fixed_size: seals.contains(SealFlags::SHRINK),
            no_writes: seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE),
        })
    }

    /// Forbids every future write and writable mapping, through any
    /// descriptor, while existing writable mappings keep working.
    pub(crate) fn seal_future_writes(fd: &OwnedFd) -> Result<(), Errno> {
        let seals = fs::fcntl_get_seals(fd)?;
        if seals.contains(SealFlags::FUTURE_WRITE) {
            return Ok(());
        }
        fs::fcntl_add_seals(fd, SealFlags::FUTURE_WRITE)
    }

    /// A new read-only open file description of the same object.
    pub(crate) fn reopen_readonly(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        fs::open(
            path.as_str(),
            fs::OFlags::RDONLY | fs::OFlags::CLOEXEC,
            fs::Mode::empty(),
        )
    }

    /// `pidfd_getfd`: a copy of descriptor `fd` of process `pid`.
    pub(crate) fn take_fd(pid: u32, fd: i32) -> Result<OwnedFd, Errno> {
        let pid = rustix::process::Pid::from_raw(pid as i32).ok_or(Errno::SRCH)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
        rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
    }

    pub(crate) fn get_marker(fd: impl AsFd) -> Marker {
        let mut buf = [0u8; 16];
        match fs::fgetxattr(fd, MARKER_XATTR, &mut buf[..]) {
            Ok(n) if &buf[..n] == b"shared" => Marker::Shared,
            Ok(n) if &buf[..n] == b"persist" => Marker::Persist,
            _ => Marker::Foreign,
        }
    }

    /// Records the marker; `Ok(false)` where the file system cannot hold it
    /// (tmpfs before Linux 6.6 has no `user.` attributes).
    pub(crate) fn set_marker(fd: impl AsFd, marker: Marker) -> Result<bool, Errno> {
        let value: &[u8] = match marker {
            Marker::Shared => b"shared",
            Marker::Persist => b"persist",
            Marker::Foreign => return Ok(true),
        };
        match fs::fsetxattr(fd, MARKER_XATTR, value, XattrFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOTSUP | Errno::PERM) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::*;
    use rustix::fs::Mode;
    use rustix::shm;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// No `MSG_NOSIGNAL` on Apple: a closed peer raises `SIGPIPE`, which
    /// Rust programs ignore from startup, so `send` fails with `EPIPE`.
    pub(crate) const SEND_FLAGS: SendFlags = SendFlags::empty();
    /// No `MSG_CMSG_CLOEXEC` everywhere: see [`received_cloexec`].
    pub(crate) const RECV_FLAGS: RecvFlags = RecvFlags::empty();

    /// Makes a received descriptor close-on-exec. Between `recvmsg` and
    /// this call, a child spawned by another thread could inherit it.
    pub(crate) fn received_cloexec(fd: &OwnedFd) -> Result<(), Errno> {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
    }

    pub(crate) fn anonymous_fd(huge_pages: bool) -> Result<OwnedFd, Errno> {
        if huge_pages {
            return Err(Errno::INVAL);
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            // Short enough for macOS's 31-byte limit.
            let name = format!(
                "/msa{:x}.{:x}.{:x}",
                std::process::id(),
                nanos,
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
            match shm::open(name.as_str(), flags, Mode::RUSR | Mode::WUSR) {
                Ok(fd) => {
                    // The name existed for an instant only; nobody else
                    // can reach the object now.
                    shm::unlink(name.as_str())?;
                    return Ok(fd);
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn seal_fixed_size(_fd: &OwnedFd) -> Result<(), Errno> {
        Ok(())
    }

    /// Opens the object called `name` (`shm_open`). Names here live in the
    /// kernel's own name space, not in a directory: nothing but
    /// shared-memory objects can be found at one.
    pub(crate) fn open_shm_object(name: &str, flags: rustix::fs::OFlags) -> Result<OwnedFd, Errno> {
        let flags = shm::OFlags::from_bits_truncate(flags.bits());
        shm::open(format!("/{name}").as_str(), flags, Mode::empty())
    }

    /// What is at `name` (`shm_open` read-only, then `fstat`).
    pub(crate) fn stat_shm_name(name: &str) -> Result<rustix::fs::Stat, Errno> {
        let fd = shm::open(
            format!("/{name}").as_str(),
            shm::OFlags::RDONLY,
            Mode::empty(),
        )?;
        rustix::fs::fstat(&fd)
    }

    /// Where the object called `name` would be, for messages.
    pub(crate) fn shm_path(name: &str) -> String {
        format!("/{name}")
    }

    /// The name of an open object: not known here.
    pub(crate) fn name_of(_fd: std::os::fd::BorrowedFd<'_>) -> Option<String> {
        None
    }

    /// No unnamed objects in the shared-memory name space here.
    pub(crate) fn unnamed_shm_object(_mode: Mode) -> Result<OwnedFd, Errno> {
        Err(Errno::NOTSUP)
    }

    /// See [`unnamed_shm_object`].
    pub(crate) fn publish_shm_object(_fd: &OwnedFd, _name: &str) -> Result<(), Errno> {
        Err(Errno::NOTSUP)
    }

    pub(crate) fn reserve(_fd: &OwnedFd, _offset: u64, _len: u64) -> Result<(), Errno> {
        Err(Errno::NOTSUP)
    }

    pub(crate) fn populate_flag() -> mm::MapFlags {
        mm::MapFlags::empty()
    }

    pub(crate) fn is_huge_page_object(_fd: &OwnedFd) -> bool {
        false
    }

    pub(crate) fn get_marker(_fd: impl AsFd) -> Marker {
        Marker::Foreign
    }

    pub(crate) fn is_shared_memory_fs(_fd: impl AsFd) -> bool {
        true
    }

    pub(crate) fn seals(_fd: impl AsFd) -> Option<Seals> {
        None
    }

    pub(crate) fn seal_future_writes(_fd: &OwnedFd) -> Result<(), Errno> {
        Err(Errno::NOTSUP)
    }

    pub(crate) fn reopen_readonly(_fd: &OwnedFd) -> Result<OwnedFd, Errno> {
        Err(Errno::NOTSUP)
    }

    pub(crate) fn take_fd(_pid: u32, _fd: i32) -> Result<OwnedFd, Errno> {
        Err(Errno::NOSYS)
    }

    pub(crate) fn set_marker(_fd: impl AsFd, _marker: Marker) -> Result<bool, Errno> {
        Ok(false)
    }
}

pub(crate) use imp::*;
