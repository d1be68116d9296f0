//! Segments: the shared-memory object, its name and its lifetime.

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::sys::{self, Access, CreateOptions, Object, Owner, Prefault};
use crate::view::{View, ViewMut};
use crate::{validate_name, Error, Result};

/// A shared-memory object: the Win32 file mapping made portable.
///
/// A segment is a handle. Cloning it is cheap and shares the handle (like
/// `DuplicateHandle` into the same process); views made from it keep the
/// object alive after every `Segment` is dropped, as `MapViewOfFile` views
/// do after `CloseHandle`.
///
/// A segment is raw bytes: memshare puts no header in it, so a named
/// segment is the same object Python's `multiprocessing.shared_memory`,
/// Boost.Interprocess or C's `shm_open` see.
///
/// ```
/// use memshare::Segment;
///
/// # fn main() -> memshare::Result<()> {
/// let segment = Segment::create(4096)?;
/// let view = segment.map(..)?;
/// view.write_at(0, b"hello")?;
/// drop(segment); // the view keeps the memory alive
/// let mut buf = [0u8; 5];
/// view.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Segment {
    object: Arc<Object>,
    prefault: Prefault,
}

/// How a segment is created or opened: huge pages, reservation,
/// prefaulting and persistence. Start from [`Segment::options`].
///
/// | option | Linux | other Unixes |
/// |---|---|---|
/// | [`huge_pages`](Self::huge_pages) | `memfd_create(MFD_HUGETLB)`, anonymous segments only; pages are reserved at creation | `Unsupported` |
/// | [`reserve`](Self::reserve) | `fallocate` over the whole size | `Unsupported` |
/// | [`populate`](Self::populate) | `MAP_POPULATE` on every view | no effect |
/// | [`persist`](Self::persist) | the name stays until [`Segment::remove`] | the same |
///
/// **When to reserve.** Shared memory on Linux is sparse: creating a segment
/// allocates nothing, and each page is allocated when first touched. If the
/// memory (or the `/dev/shm` file system, 64 MiB in a default Docker
/// container) is exhausted at that moment, the kernel kills the process
/// that touched the page with `SIGBUS`. `reserve(true)` allocates every page
/// at creation, so exhaustion is a clean [`Error::NoSpace`] then, at the cost
/// of really using the memory from the start. Reserve when the segment will
/// be filled anyway (ring buffers, frame pools) or when a crash later is
/// unacceptable; don't for large, mostly empty segments.
///
/// **When to populate.** Reservation allocates pages; `populate(true)`
/// also maps them into each view, so the first access to each page costs no
/// page fault. Use it for latency-sensitive views of memory that is used at
/// once; it makes `map` take time proportional to the view's size.
///
/// **Huge pages** cut TLB misses for large segments. They come from a pool
/// the administrator sets up (`/proc/sys/vm/nr_hugepages`); where it is
/// empty, creation fails with [`Error::NoSpace`], never later.
///
/// ```
/// use memshare::Segment;
///
/// # fn main() -> memshare::Result<()> {
/// let segment = Segment::options().reserve(true).populate(true).create(1 << 20)?;
/// assert_eq!(segment.len(), 1 << 20);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct SegmentOptions {
    create: CreateOptions,
    prefault: Prefault,
    owner: Owner,
}

impl SegmentOptions {
    /// The defaults: base pages, sparse, no prefaulting, name removed with
    /// its last holder.
    pub fn new() -> SegmentOptions {
        SegmentOptions::default()
    }

    /// Back the segment with huge pages (anonymous segments on Linux).
    pub fn huge_pages(&mut self, yes: bool) -> &mut SegmentOptions {
        self.create.huge_pages = yes;
        self
    }

    /// Allocate all of the segment's memory at creation, so that running
    /// out is an error then and not a `SIGBUS` later.
    pub fn reserve(&mut self, yes: bool) -> &mut SegmentOptions {
        self.create.reserve = yes;
        self
    }

    /// Prefault every view of this segment (`MAP_POPULATE`).
    pub fn populate(&mut self, yes: bool) -> &mut SegmentOptions {
        self.prefault = if yes { Prefault::Yes } else { Prefault::No };
        self
    }

    /// Keep the name after the last holder is gone, like a file, until
    /// [`Segment::remove`]. Unix only: on Windows a name lives exactly as
    /// long as its holders, and creating fails with [`Error::Unsupported`].
    pub fn persist(&mut self, yes: bool) -> &mut SegmentOptions {
        self.create.persist = yes;
        self
    }

    /// Windows: create the name in the `Global\` namespace, visible from
    /// every session (needs `SeCreateGlobalPrivilege`), instead of the
    /// session's `Local\` one. [`Segment::open`] looks in `Local\`, then
    /// `Global\`. Unix has one namespace: no effect there.
    pub fn global_namespace(&mut self, yes: bool) -> &mut SegmentOptions {
        self.create.global = yes;
        self
    }

    /// Open (or remove) a named segment even when another user owns it.
    ///
    /// By default [`open`](Self::open), [`open_readonly`](Self::open_readonly)
    /// and [`remove`](Self::remove) refuse a name whose object belongs to
    /// another user with [`Error::PermissionDenied`] (saying who owns it):
    /// on Linux `/dev/shm` is shared by every user, so another user can
    /// create the name first, and a process that then opens it would write
    /// its data into an object that user reads. Set this only when the
    /// other user is meant to own it. (Windows: a section's DACL decides.)
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-foreign-{}", std::process::id());
    /// let mine = memshare::Segment::create_named(&name, 4096)?;
    /// // Our own object: opens either way.
    /// let again = memshare::Segment::options().allow_foreign_owner(true).open(&name)?;
    /// # drop((mine, again)); Ok(())
    /// # }
    /// ```
    pub fn allow_foreign_owner(&mut self, yes: bool) -> &mut SegmentOptions {
        self.owner = if yes { Owner::Anyone } else { Owner::Me };
        self
    }

    /// Removes the name `name` with these options (see [`Segment::remove`]):
    /// with [`allow_foreign_owner`](Self::allow_foreign_owner), also a name
    /// whose object another user owns (where the system lets this process
    /// remove it at all).
    pub fn remove(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        sys::remove_named(name, self.owner)
    }

    /// Creates an anonymous segment with these options (see [`Segment::create`]).
    pub fn create(&self, len: u64) -> Result<Segment> {
        check_len(None, len)?;
        Ok(self.wrap(Object::create_anonymous(len, &self.create)?))
    }

    /// Creates a named segment with these options (see [`Segment::create_named`]).
    pub fn create_named(&self, name: &str, len: u64) -> Result<Segment> {
        validate_name(name)?;
        check_len(Some(name), len)?;
        Ok(self.wrap(Object::create_named(name, len, &self.create)?))
    }

    /// Opens a named segment with these options (see [`Segment::open`]).
    pub fn open(&self, name: &str) -> Result<Segment> {
        validate_name(name)?;
        Ok(self.wrap(Object::open_named(name, Access::ReadWrite, self.owner)?))
    }

    /// Opens a named segment read-only with these options (see
    /// [`Segment::open_readonly`]).
    pub fn open_readonly(&self, name: &str) -> Result<Segment> {
        validate_name(name)?;
        Ok(self.wrap(Object::open_named(name, Access::ReadOnly, self.owner)?))
    }

    fn wrap(&self, object: Object) -> Segment {
        Segment {
            object: Arc::new(object),
            prefault: self.prefault,
        }
    }
}

fn check_len(name: Option<&str>, len: u64) -> Result<()> {
    if len == 0 {
        return Err(Error::OutOfRange {
            object: sys::describe(name),
            detail: "size 0: a segment must be at least 1 byte long".into(),
        });
    }
    if len > i64::MAX as u64 {
        return Err(Error::OutOfRange {
            object: sys::describe(name),
            detail: format!(
                "size {len} is larger than the largest file size ({})",
                i64::MAX
            ),
        });
    }
    Ok(())
}

impl Segment {
    /// Options for creating or opening a segment.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::options().reserve(true).create(8192)?;
    /// # drop(segment); Ok(())
    /// # }
    /// ```
    pub fn options() -> SegmentOptions {
        SegmentOptions::new()
    }

    /// Creates an anonymous segment of `len` zero bytes.
    ///
    /// It has no name: other processes get it by inheritance or handle
    /// passing. On Linux it is a `memfd` sealed against shrinking and
    /// growing, so no holder can truncate it under another holder's views.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(1 << 16)?;
    /// assert_eq!(segment.len(), 1 << 16);
    /// assert_eq!(segment.name(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(len: u64) -> Result<Segment> {
        SegmentOptions::new().create(len)
    }

    /// Creates a segment of `len` zero bytes that other processes can open
    /// by `name`.
    ///
    /// Fails with [`Error::AlreadyExists`] if a live segment has that name.
    /// The object is created exclusively with mode 0600 (this user only).
    /// The name goes away when the last process holding the segment drops
    /// it or dies, as on Windows; [`SegmentOptions::persist`] keeps it.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// use memshare::{Error, Segment};
    /// let name = format!("doc-create-{}", std::process::id());
    /// let segment = Segment::create_named(&name, 4096)?;
    /// assert!(matches!(Segment::create_named(&name, 4096), Err(Error::AlreadyExists { .. })));
    /// drop(segment);
    /// assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_named(name: &str, len: u64) -> Result<Segment> {
        SegmentOptions::new().create_named(name, len)
    }

    /// Opens the live segment called `name` for reading and writing.
    ///
    /// Fails with [`Error::NotFound`] if there is none, with
    /// [`Error::PermissionDenied`] if it belongs to another user (see
    /// [`SegmentOptions::allow_foreign_owner`]), and with
    /// [`Error::NotSharedMemory`] if the name holds something else (a
    /// symbolic link, which is never followed; a FIFO, which is never
    /// waited on; a directory). Opening never blocks on what is at a name.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-open-{}", std::process::id());
    /// let creator = memshare::Segment::create_named(&name, 4096)?;
    /// let other = memshare::Segment::open(&name)?;
    /// assert_eq!(other.len(), 4096);
    /// # drop(creator); Ok(())
    /// # }
    /// ```
    pub fn open(name: &str) -> Result<Segment> {
        SegmentOptions::new().open(name)
    }

    /// Opens the live segment called `name` for reading only: views of it
    /// are read-only, and [`Segment::map`] fails with
    /// [`Error::PermissionDenied`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-open-ro-{}", std::process::id());
    /// let creator = memshare::Segment::create_named(&name, 4096)?;
    /// let reader = memshare::Segment::open_readonly(&name)?;
    /// assert!(reader.is_readonly());
    /// assert!(reader.map(..).is_err());
    /// # drop(creator); Ok(())
    /// # }
    /// ```
    pub fn open_readonly(name: &str) -> Result<Segment> {
        SegmentOptions::new().open_readonly(name)
    }

    /// Removes the name now, like deleting a file: processes that hold the
    /// segment keep it and its contents, but nobody can open it by name any
    /// more. This is how a persistent name is removed. A name whose object
    /// another user owns is refused with [`Error::PermissionDenied`] (see
    /// [`SegmentOptions::allow_foreign_owner`]); a name that holds no
    /// shared-memory object with [`Error::NotSharedMemory`].
    ///
    /// On Windows a name cannot be removed (it goes with its last handle):
    /// [`Error::Unsupported`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// # #[cfg(unix)] {
    /// let name = format!("doc-remove-{}", std::process::id());
    /// let segment = memshare::Segment::options().persist(true).create_named(&name, 4096)?;
    /// drop(segment); // persistent: the name stays
    /// memshare::Segment::remove(&name)?;
    /// assert!(memshare::Segment::open(&name).is_err());
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove(name: &str) -> Result<()> {
        SegmentOptions::new().remove(name)
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.object.len()
    }

    /// How much longer than the structure in it the segment may be because
    /// the system reports its size only in whole pages: 0 where the size is
    /// exact (Unix; Windows sections made here or handed over with their
    /// size), a page less one byte for a Windows section opened by name
    /// (`NtQuerySection`). Channel and service headers say their own
    /// length; it must be the segment's to within this.
    pub(crate) fn len_slack(&self) -> u64 {
        self.object.len_slack()
    }

    /// Whether a structure of `declared` bytes fills this segment, as far
    /// as the system tells its size ([`Segment::len_slack`]).
    pub(crate) fn len_fits(&self, declared: u64) -> bool {
        declared <= self.len() && self.len() - declared <= self.len_slack()
    }

    /// Always false: a segment is at least one byte long. (Here for the
    /// `len`/`is_empty` convention.)
    pub fn is_empty(&self) -> bool {
        self.object.len() == 0
    }

    /// The name, for a named segment.
    pub fn name(&self) -> Option<&str> {
        self.object.name()
    }

    /// Whether this handle is read-only: it can only make read-only views.
    pub fn is_readonly(&self) -> bool {
        !self.object.writable()
    }

    /// Maps `range` of the segment for reading and writing.
    ///
    /// `range` is any range of byte offsets (`..` is the whole segment); its
    /// start need not be aligned. Fails with [`Error::OutOfRange`] if the
    /// range is empty or goes past the end, and with
    /// [`Error::PermissionDenied`] on a read-only segment.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(1 << 20)?;
    /// let view = segment.map(12345..12345 + 100)?;
    /// assert_eq!((view.offset(), view.len()), (12345, 100));
    /// # Ok(())
    /// # }
    /// ```
    pub fn map(&self, range: impl RangeBounds<u64>) -> Result<ViewMut> {
        if self.is_readonly() {
            return Err(Error::PermissionDenied {
                source: None,
                object: self.describe(),
                op: "map writable: the segment is read-only".into(),
            });
        }
        let (offset, len) = self.check_range(range)?;
        View::map(&self.object, offset, len, Access::ReadWrite, self.prefault).map(ViewMut::new)
    }

    /// Maps `range` of the segment for reading only.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// segment.map(..)?.write_at(10, &[7])?;
    /// let view = segment.map_readonly(10..)?;
    /// let mut byte = [0];
    /// view.read_at(0, &mut byte)?;
    /// assert_eq!(byte, [7]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_readonly(&self, range: impl RangeBounds<u64>) -> Result<View> {
        let (offset, len) = self.check_range(range)?;
        View::map(&self.object, offset, len, Access::ReadOnly, self.prefault)
    }

    /// Allocates the memory behind `range` now (Linux: `fallocate`), so that
    /// writing it cannot run out of memory later.
    ///
    /// Shared memory on Linux is sparse: a page is allocated when it is
    /// first touched, and if the shared-memory file system is full then,
    /// the access faults (memshare turns that fault into an error on the
    /// view, see [`View::check_intact`](crate::View::check_intact), but
    /// what was written is lost). Allocating first makes a full file system
    /// a clean [`Error::NoSpace`] before anything is written.
    /// [`SegmentOptions::reserve`] does this for the whole segment at
    /// creation. Windows: nothing to do (sections are committed at
    /// creation). Other Unixes: [`Error::Unsupported`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(1 << 20)?;
    /// # #[cfg(target_os = "linux")]
    /// segment.allocate(4096..8192)?;
    /// segment.map(4096..8192)?.write_at(0, &[1; 4096])?;
    /// # Ok(()) }
    /// ```
    pub fn allocate(&self, range: impl RangeBounds<u64>) -> Result<()> {
        let (offset, len) = self.check_range(range)?;
        self.object.allocate(offset, len as u64)
    }

    /// Turns `range` into an offset and a length inside the segment.
    fn check_range(&self, range: impl RangeBounds<u64>) -> Result<(u64, usize)> {
        let seg_len = self.len();
        let out_of_range = |detail: String| Error::OutOfRange {
            object: self.describe(),
            detail,
        };
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s
                .checked_add(1)
                .ok_or_else(|| out_of_range("range start overflows".into()))?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e
                .checked_add(1)
                .ok_or_else(|| out_of_range("range end overflows".into()))?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => seg_len,
        };
        if start > end || end > seg_len {
            return Err(out_of_range(format!(
                "range {start}..{end} is outside the segment's {seg_len} bytes"
            )));
        }
        if start == end {
            return Err(out_of_range(format!("range {start}..{end} is empty")));
        }
        let len = usize::try_from(end - start).map_err(|_| {
            out_of_range(format!(
                "a view of {} bytes does not fit in this address space",
                end - start
            ))
        })?;
        Ok((start, len))
    }

    /// A segment handle for an object opened by the layers below.
    pub(crate) fn from_object(object: Object) -> Segment {
        Segment {
            object: Arc::new(object),
            prefault: Prefault::No,
        }
    }

    /// The shared object behind this handle.
    pub(crate) fn object(&self) -> &Object {
        &self.object
    }

    /// The segment as it appears in error messages.
    pub(crate) fn describe(&self) -> String {
        sys::describe(self.name())
    }
}

/// The descriptor, for calls memshare does not wrap (`fstat`, seals...).
/// Changing the object through it (resizing, sealing) is the caller's
/// responsibility.
#[cfg(unix)]
impl std::os::fd::AsFd for Segment {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.object.fd()
    }
}

/// The section handle, for calls memshare does not wrap. For an anonymous
/// section created in this process, duplicating it with more access than
/// it has is refused by the section's security descriptor (see
/// [`Segment::to_readonly`]); a section received from elsewhere has the
/// creator's descriptor.
#[cfg(windows)]
impl std::os::windows::io::AsHandle for Segment {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.object.borrowed_handle()
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name())
            .field("len", &self.len())
            .field("readonly", &self.is_readonly())
            .finish_non_exhaustive()
    }
}

impl Segment {
    /// A handle through which no process can ever write, enforced by the
    /// kernel (anonymous segments on Linux: `F_SEAL_FUTURE_WRITE` on the
    /// memfd, and a new read-only descriptor).
    ///
    /// Views that exist keep working, writable ones included; but from now
    /// on no writable view can be made of this segment, through any handle,
    /// in any process. So map what you will write first, then make the
    /// read-only handle to share. A receiver that tries to map it writable
    /// or to `mprotect` a view writable is refused; reopening it through
    /// `/proc/self/fd` with `O_RDWR` succeeds, but every write and writable
    /// mapping through that descriptor is refused (`EPERM`).
    /// Named segments: [`Error::Unsupported`] (anyone who knows the name
    /// may open it writable).
    ///
    /// Windows: a handle with `SECTION_MAP_READ | SECTION_QUERY` only, for
    /// anonymous sections created in this process, whose security
    /// descriptor refuses every duplication to more access. Holders of
    /// writable handles can still write (Windows has no seals: see
    /// [`Segment::is_write_sealed`]); a section received from elsewhere
    /// gives [`Error::Unsupported`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// let writer = segment.map(..)?;
    /// let readonly = segment.to_readonly()?;
    /// writer.write_at(0, b"still writable")?;
    /// assert!(readonly.is_readonly());
    /// assert!(readonly.map(..).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn to_readonly(&self) -> Result<Segment> {
        Ok(Segment::from_object(self.object().to_readonly()?))
    }

    /// Whether the kernel forbids every new write to this segment, through
    /// any handle in any process (a segment made by
    /// [`Segment::to_readonly`], or sealed by its creator). A receiver that
    /// relies on the contents not changing checks this, not what it was
    /// told.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// assert!(!segment.is_write_sealed());
    /// # #[cfg(target_os = "linux")]
    /// assert!(segment.to_readonly()?.is_write_sealed());
    /// # Ok(()) }
    /// ```
    pub fn is_write_sealed(&self) -> bool {
        self.object().write_sealed()
    }

    /// Takes descriptor `fd` of process `pid` (Linux: `pidfd_open` +
    /// `pidfd_getfd`; Windows: handle value `fd`, with
    /// `OpenProcess(PROCESS_DUP_HANDLE)` + `DuplicateHandle`). This needs
    /// the right to ptrace that process (Linux; usually: it is your child,
    /// or you are privileged) or to duplicate its handles (Windows: a
    /// process of the same user, or privileged); otherwise
    /// [`Error::PermissionDenied`]. What is taken must be a shared-memory
    /// object; the segment has no name, and on Windows its size is the
    /// section's, in whole pages. Other Unixes: [`Error::Unsupported`].
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// # let segment = memshare::Segment::create(4096)?;
    /// # #[cfg(unix)]
    /// # let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&segment));
    /// # #[cfg(windows)]
    /// # let fd = std::os::windows::io::AsRawHandle::as_raw_handle(
    /// #     &std::os::windows::io::AsHandle::as_handle(&segment)) as i32;
    /// if let Ok(taken) = memshare::Segment::take_from_process(std::process::id(), fd) {
    ///     assert_eq!(taken.len(), 4096);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn take_from_process(pid: u32, fd: i32) -> Result<Segment> {
        Ok(Segment::from_object(Object::take_from_process(pid, fd)?))
    }
}
