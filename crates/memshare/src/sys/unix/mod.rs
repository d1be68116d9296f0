//! Linux and the other Unixes: `memfd_create`/`shm_open`, `mmap`, `flock`.
//!
//! The Linux-only pieces (memfd, seals, the lifetime marker in an extended
//! attribute) live in `platform`, with a fallback for the other Unixes.

#[cfg(feature = "async")]
mod event;
mod fault;
mod inspect;
mod names;
mod platform;
mod reaper;
mod share;
mod sync;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::{self, NonNull};

use rustix::fs;
use rustix::io::Errno;
use rustix::mm;

use super::{describe, Access, Meta, Owner, Prefault, WordRole};
use crate::{Error, Result};

#[cfg(feature = "async")]
pub(crate) use event::Event;
pub(crate) use inspect::{holder_pids, list_named, named_capacity, stat_named};
pub use inspect::{NamedInfo, NamedLifetime, SegmentKind};
pub(crate) use names::{reclaim_if_stale, remove_named, Reclaim};
/// The notifier's (`crate::aio`) only.
#[cfg(feature = "async")]
pub(crate) use reaper::on_fork;
pub(crate) use reaper::{deaths, on_death, unwatch_pid, watch_pid};
pub(crate) use share::{
    adopt_duplicated, adopt_inherited, fail_share, offer_to_child, parent_pid, recv_with_fds,
    send_with_fds,
};
#[cfg(feature = "async")]
pub(crate) use sync::route_local;
pub(crate) use sync::{
    wait, wait_many, wake, wake_waiters, ByteLock, ManyWaiter, WordRoute, WAIT_MANY_MAX,
};

/// What a creator asks for beyond the size.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CreateOptions {
    /// Back the segment with huge pages.
    pub huge_pages: bool,
    /// Allocate every page at creation (`fallocate`).
    pub reserve: bool,
    /// Keep the name after the last holder is gone.
    pub persist: bool,
    /// Windows' `Global\` namespace: Unix has one namespace.
    pub global: bool,
}

/// How this holder takes part in the name's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Anonymous, persistent or foreign: dropping never removes a name.
    Unmanaged,
    /// This holder keeps a shared `flock`; the last one removes the name.
    Counted,
    /// The system cannot count holders (no lifetime marker): the creator
    /// removes the name when it drops, as most POSIX libraries do.
    CreatorRemoves,
}

/// An open shared-memory object: one descriptor, the name it was opened by,
/// and this process's part in the name's lifetime.
#[derive(Debug)]
pub(crate) struct Object {
    fd: OwnedFd,
    meta: Meta,
    granularity: usize,
    lifetime: Lifetime,
}

impl std::ops::Deref for Object {
    type Target = Meta;

    fn deref(&self) -> &Meta {
        &self.meta
    }
}

/// Converts a rustix error into the crate's error for the object `name`.
pub(crate) fn os_error(name: Option<&str>, op: &'static str, errno: Errno) -> Error {
    Error::from_io(name, op, std::io::Error::from(errno))
}

/// The page size: the granularity of mapping offsets on Unix.
pub(crate) fn allocation_granularity() -> usize {
    rustix::param::page_size()
}

/// Whether any mapping of this process may have faulted: false while the
/// `SIGBUS` handler has caught none (one load), so that an endpoint with
/// several windows checks them all at once.
#[inline]
pub(crate) fn any_mapping_faulted() -> bool {
    fault::any_caught()
}

impl Object {
    fn new(
        fd: OwnedFd,
        name: Option<String>,
        access: Access,
        lifetime: Lifetime,
    ) -> Result<Object> {
        let stat = fs::fstat(&fd).map_err(|e| os_error(name.as_deref(), "fstat", e))?;
        let granularity = if platform::is_huge_page_object(&fd) {
            // hugetlbfs reports its page size as the block size; views of it
            // must be aligned to that, not to the base page size.
            usize::try_from(stat.st_blksize).unwrap_or(usize::MAX)
        } else {
            allocation_granularity()
        };
        Ok(Object {
            meta: Meta {
                name,
                access,
                len: u64::try_from(stat.st_size).unwrap_or(0),
            },
            fd,
            granularity,
            lifetime,
        })
    }

    /// A new anonymous object of `len` zero bytes, fixed in size.
    pub(crate) fn create_anonymous(len: u64, opts: &CreateOptions) -> Result<Object> {
        let fail = |op, e| os_error(None, op, e);
        let fd = platform::anonymous_fd(opts.huge_pages).map_err(|e| match e {
            Errno::INVAL | Errno::NOSYS if opts.huge_pages => Error::Unsupported {
                what: "huge pages for anonymous segments (memfd_create with MFD_HUGETLB)".into(),
            },
            e => fail("memfd_create", e),
        })?;
        size_object(&fd, None, len, opts)?;
        platform::seal_fixed_size(&fd).map_err(|e| fail("fcntl(F_ADD_SEALS)", e))?;
        Object::new(fd, None, Access::ReadWrite, Lifetime::Unmanaged)
    }

    /// A new named object, created exclusively with mode 0600.
    pub(crate) fn create_named(name: &str, len: u64, opts: &CreateOptions) -> Result<Object> {
        let _one_namespace = opts.global;
        names::create(name, len, opts)
    }

    /// Opens the live object called `name`, if it is a shared-memory object
    /// of an owner `owner` accepts.
    pub(crate) fn open_named(name: &str, access: Access, owner: Owner) -> Result<Object> {
        names::open(name, access, owner)
    }

    /// The size is exact (`fstat`): no slack.
    pub(crate) fn len_slack(&self) -> u64 {
        0
    }

    /// Removes this object's name, if the name still refers to this object
    /// (`Ok(false)` if it names another one now, or nothing).
    pub(crate) fn remove_name_if_current(&self) -> Result<bool> {
        let Some(name) = self.meta.name.as_deref() else {
            return Ok(false);
        };
        if !names::same_object(name, &self.fd) {
            return Ok(false);
        }
        match names::remove_named(name, Owner::Me) {
            Ok(()) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Offsets of views are aligned down to this.
    pub(crate) fn granularity(&self) -> usize {
        self.granularity
    }

    /// The descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Maps `len` bytes from `offset`, which must be a multiple of
    /// [`Object::granularity`].
    pub(crate) fn map(
        &self,
        offset: u64,
        len: usize,
        access: Access,
        prefault: Prefault,
    ) -> Result<Mapping> {
        let writable = access.writable();
        let mut prot = mm::ProtFlags::READ;
        if writable {
            prot |= mm::ProtFlags::WRITE;
        }
        let mut flags = mm::MapFlags::SHARED;
        if prefault == Prefault::Yes {
            flags |= platform::populate_flag();
        }
        // SAFETY: a new shared mapping at an address the kernel chooses
        // aliases no Rust object; `Mapping` owns it and unmaps it on drop.
        let ptr = unsafe { mm::mmap(ptr::null_mut(), len, prot, flags, &self.fd, offset) }
            .map_err(|e| match e {
                Errno::ACCESS | Errno::PERM => Error::PermissionDenied {
                    source: Some(e.into()),
                    object: describe(self.name()),
                    op: format!(
                        "map {} bytes at offset {offset} {}: the object does not allow it ({e})",
                        len,
                        if writable { "writable" } else { "read-only" }
                    ),
                },
                Errno::NOMEM => Error::NoSpace {
                    object: describe(self.name()),
                    len: len as u64,
                    detail: format!("mmap: {}", std::io::Error::from(e)),
                },
                e => os_error(self.name(), "mmap", e),
            })?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| Error::Io {
            object: describe(self.name()),
            op: "mmap",
            source: std::io::Error::other("the kernel returned a null mapping"),
        })?;
        let registration = fault::register(ptr.as_ptr(), len, prot.bits() as i32);
        Ok(Mapping {
            ptr,
            len,
            registration,
        })
    }

    /// Allocates the memory of `offset..offset + len` now, so that touching
    /// it cannot run out of memory later.
    pub(crate) fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        allocate(
            &self.fd,
            self.name(),
            offset,
            len,
            platform::is_huge_page_object(&self.fd),
        )
    }

    /// The object's size now, as the system reports it (another process may
    /// have changed it since it was opened).
    pub(crate) fn current_len(&self) -> Result<u64> {
        let st = fs::fstat(&self.fd).map_err(|e| os_error(self.name(), "fstat", e))?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        if let Some(name) = &self.meta.name {
            names::release(name, &self.fd, self.lifetime);
        }
    }
}

/// Gives a new object its size, and its pages if asked to reserve them.
fn size_object(fd: &OwnedFd, name: Option<&str>, len: u64, opts: &CreateOptions) -> Result<()> {
    fs::ftruncate(fd, len).map_err(|e| match e {
        // hugetlbfs takes whole huge pages only.
        Errno::INVAL if opts.huge_pages => Error::OutOfRange {
            object: describe(name),
            detail: format!(
                "size {len} is not a whole number of huge pages ({} bytes each)",
                fs::fstat(fd).map_or(0, |st| st.st_blksize)
            ),
        },
        Errno::INVAL | Errno::FBIG => Error::OutOfRange {
            object: describe(name),
            detail: format!("size {len} is larger than the system allows"),
        },
        e => os_error(name, "ftruncate", e),
    })?;
    // Huge pages are always reserved: a hugetlb page that cannot be found
    // at fault time kills the process with SIGBUS, and there is no
    // overcommit for them, so finding out at creation is the only sane way.
    if opts.reserve || opts.huge_pages {
        allocate(fd, name, 0, len, opts.huge_pages)?;
    }
    Ok(())
}

/// Allocates the pages of `offset..offset + len` of `fd` (`fallocate`), so
/// that touching them cannot fail for want of memory.
fn allocate(fd: &OwnedFd, name: Option<&str>, offset: u64, len: u64, huge: bool) -> Result<()> {
    platform::reserve(fd, offset, len).map_err(|e| match e {
        Errno::NOSPC | Errno::NOMEM => Error::NoSpace {
            object: describe(name),
            len,
            detail: if huge {
                format!(
                    "{} (huge pages: see /proc/sys/vm/nr_hugepages)",
                    std::io::Error::from(e)
                )
            } else {
                format!(
                    "{} (the shared-memory file system is full)",
                    std::io::Error::from(e)
                )
            },
        },
        Errno::NOTSUP | Errno::NOSYS => Error::Unsupported {
            what: format!("reserving memory for {} (fallocate)", describe(name)),
        },
        Errno::BADF => Error::PermissionDenied {
            source: Some(std::io::Error::from(Errno::BADF)),
            object: describe(name),
            op: "allocate memory: the segment is read-only".into(),
        },
        e => os_error(name, "fallocate", e),
    })
}

/// One mapped window of an object, registered with the `SIGBUS` handler
/// (see `fault`). Unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    registration: fault::Registration,
}

impl Mapping {
    /// The first byte of the window.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Whether an access to the window faulted (the object shrank under
    /// it, or a page could not be allocated) and the window now holds
    /// private zero pages instead of the object.
    #[inline]
    pub(crate) fn faulted(&self) -> bool {
        fault::any_caught() && self.registration.faulted()
    }
}

// SAFETY: a mapping is plain memory addresses owned by this value; nothing
// in it is tied to the thread that created it.
unsafe impl Send for Mapping {}
// SAFETY: `Mapping` offers no access of its own through `&self`; the views
// that use it synchronize their accesses.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // First out of the fault handler's table, so that it never maps
        // over an address range that is no longer ours.
        self.registration.unregister();
        // SAFETY: `ptr`/`len` are exactly what `mmap` returned and nothing
        // refers to the window any more: the view that owned it is gone.
        let result = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        debug_assert!(result.is_ok(), "munmap failed: {result:?}");
    }
}
