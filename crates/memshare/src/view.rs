//! Views: mapped windows of a segment. The rules for accessing them are on
//! [`View`].

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::{fmt, ops, ptr};

use crate::sys::{self, Access, Mapping, Object, Prefault};
use crate::{Error, Result};

/// A read-only view of part of a segment. Made by
/// [`Segment::map_readonly`](crate::Segment::map_readonly).
///
/// # Access, and why it is safe (every view)
///
/// The bytes of a view may be written at any moment by another process
/// (or by another view of the same segment in this process). Rust's
/// reference rules cannot describe that: a `&[u8]` promises that nobody
/// changes the bytes while it lives, a `&mut [u8]` that nobody else even
/// reads them. So memshare draws the line where rust-vmm's `vm-memory`
/// (guest memory shared with a hypervisor) draws it:
///
/// - **Safe**: copies in and out ([`View::read_at`], [`ViewMut::write_at`])
///   and atomics ([`ViewMut::atomic_u32`], [`View::atomic_u64`]...). A copy
///   goes through raw pointers with one `memcpy` and never creates a
///   reference to the shared bytes; a racing writer can make the bytes you
///   read a mix of old and new (a torn read), which you must validate as you
///   would any input, but never undefined behaviour in your process. Atomic
///   types are made for concurrent access by definition.
/// - **`unsafe`**: slices ([`View::as_slice`], [`ViewMut::as_mut_slice`]).
///   Borrowing the bytes as a slice is only sound while nobody else writes
///   them (for `&mut`: nor reads them) for as long as the slice lives: a
///   region your protocol gives to one side alone, or a segment nobody else
///   can write (a sealed read-only segment). The caller states that by
///   writing `unsafe`.
///
/// A view holds the segment's object alive: it works after every
/// [`Segment`](crate::Segment) handle was dropped, and a named segment's name
/// stays valid while a view of it exists, as on Windows.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// let segment = memshare::Segment::create(4096)?;
/// let view = segment.map_readonly(100..200)?;
/// assert_eq!(view.len(), 100);
/// assert_eq!(view.offset(), 100);
/// # Ok(())
/// # }
/// ```
pub struct View {
    /// Owns the mapping; `ptr` points into it.
    mapping: Mapping,
    /// The first byte of the view: the mapping's start plus the distance
    /// from the aligned window start to the requested offset.
    ptr: *mut u8,
    len: usize,
    offset: u64,
    /// Keeps the object (and its name) alive as long as the view.
    object: Arc<Object>,
}

/// A writable view of part of a segment. Made by
/// [`Segment::map`](crate::Segment::map). Everything a [`View`] offers is
/// available through `Deref`.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// let segment = memshare::Segment::create(4096)?;
/// let view = segment.map(..)?;
/// view.write_at(0, b"ping")?;
/// let mut buf = [0; 4];
/// view.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"ping");
/// # Ok(())
/// # }
/// ```
pub struct ViewMut {
    view: View,
}

// SAFETY: a view is an owned mapping plus an `Arc`; all access through
// `&View` is by copies through raw pointers or atomics, which are fine from
// any thread (see the module docs on concurrent writers).
unsafe impl Send for View {}
// SAFETY: as for `Send`: `&View` gives no non-atomic reference into the
// mapping, only copies and atomics.
unsafe impl Sync for View {}

macro_rules! read_only_atomic {
    ($(#[$doc:meta])* $name:ident, $atomic:ty, $int:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a>(&'a $atomic);

        impl $name<'_> {
            /// Loads the value with the given ordering.
            pub fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.load(Ordering::Relaxed).fmt(f)
            }
        }
    };
}

read_only_atomic!(
    /// A 32-bit word of a read-only view that can be loaded atomically
    /// (there is no store: the page is mapped read-only).
    ReadOnlyU32,
    AtomicU32,
    u32
);
read_only_atomic!(
    /// A 64-bit word of a read-only view that can be loaded atomically
    /// (there is no store: the page is mapped read-only).
    ReadOnlyU64,
    AtomicU64,
    u64
);

impl View {
    /// Maps `len` bytes at the unaligned `offset` of `object`: the window
    /// starts at `offset` aligned down to the object's granularity.
    pub(crate) fn map(
        object: &Arc<Object>,
        offset: u64,
        len: usize,
        access: Access,
        prefault: Prefault,
    ) -> Result<View> {
        let granularity = object.granularity();
        let delta = (offset % granularity as u64) as usize;
        let window_len = delta
            .checked_add(len)
            .and_then(|n| n.checked_next_multiple_of(granularity))
            .ok_or_else(|| Error::OutOfRange {
                object: sys::describe(object.name()),
                detail: format!("a view of {len} bytes does not fit in this address space"),
            })?;
        let mapping = object.map(offset - delta as u64, window_len, access, prefault)?;
        // SAFETY: `delta < granularity <= window_len`, so the result points
        // into the mapping.
        let ptr = unsafe { mapping.ptr().as_ptr().add(delta) };
        Ok(View {
            mapping,
            ptr,
            len,
            offset,
            object: Arc::clone(object),
        })
    }

    /// The number of bytes in the view.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: views are at least one byte long.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the view starts in the segment, in bytes.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The address of the view's first byte in this process.
    ///
    /// Reading through it is subject to the rules in the [`View`]
    /// docs; the pointer is valid as long as the view.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Copies `buf.len()` bytes from `offset` (relative to the view) into
    /// `buf`. Fails with [`Error::OutOfRange`] if they are not all inside
    /// the view.
    ///
    /// If another process writes the same bytes at the same time, `buf` may
    /// hold a mix of old and new bytes: validate what you read. If another
    /// process shrank the object under the view, [`Error::Truncated`] (see
    /// [`View::check_intact`]), never a crash.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: `check` put `offset..offset+len` inside the mapping; `buf`
        // is a private buffer that cannot overlap a shared mapping; no
        // reference to the shared bytes is created.
        unsafe { ptr::copy_nonoverlapping(self.ptr.add(offset), buf.as_mut_ptr(), buf.len()) };
        self.check_intact()
    }

    /// `Ok` unless an access to this view faulted because the memory under
    /// it is gone: another process shrank the object
    /// ([`Error::Truncated`]), or a page could not be allocated when it was
    /// first touched ([`Error::NoSpace`]: the shared-memory file system is
    /// full, or a peer punched a hole into a huge-page segment and the pool
    /// is empty).
    ///
    /// Such a fault would kill the process with `SIGBUS`; memshare catches
    /// it in its own mappings, puts private zero pages in the view's place
    /// and marks the view. From then on the view reads zeros and its writes
    /// go nowhere: [`View::read_at`] and [`ViewMut::write_at`] report the
    /// error, and so does this for accesses made through atomics or
    /// pointers. Map the segment again to see what is left of it. (Bytes of
    /// the last page that lie past a new end that is not page-aligned read
    /// as zeros without a fault: the kernel raises none there.)
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// let view = segment.map(..)?;
    /// view.atomic_u32(0)?.store(1, std::sync::atomic::Ordering::Relaxed);
    /// view.check_intact()?; // anonymous segments are sealed: they cannot shrink
    /// # Ok(()) }
    /// ```
    pub fn check_intact(&self) -> Result<()> {
        if !self.mapping.faulted() {
            return Ok(());
        }
        Err(self.fault_error())
    }

    /// The error for a faulted view: truncation if the object is shorter
    /// than the view now, else a page that could not be allocated.
    #[cold]
    fn fault_error(&self) -> Error {
        let end = self.offset + self.len as u64;
        match self.object.current_len() {
            Ok(now) if now < end => Error::Truncated {
                object: self.describe(),
                len: now,
            },
            Ok(_) => Error::NoSpace {
                object: self.describe(),
                len: self.len as u64,
                detail: "a page of the view could not be allocated when it was first touched \
                         (the shared-memory file system is full, or a hole was punched into a \
                         huge-page segment and the pool is empty); the view now holds zeros: \
                         map the segment again"
                    .into(),
            },
            Err(e) => e,
        }
    }

    /// A copy of the plain-data value of type `T` at `offset` (relative to
    /// the view): `size_of::<T>()` bytes, read as [`View::read_at`] reads
    /// them (any alignment; a racing writer can tear it, like any read).
    /// `T: bytemuck::Pod` means every bit pattern is a valid `T`.
    ///
    /// ```
    /// #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    /// #[repr(C)]
    /// struct Header { magic: u32, version: u16, flags: u16, len: u64 }
    ///
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// let view = segment.map(..)?;
    /// let header = Header { magic: 0x4d53, version: 1, flags: 0, len: 4080 };
    /// view.write_pod(0, &header)?;
    /// assert_eq!(segment.map_readonly(..)?.read_pod::<Header>(0)?, header);
    /// # Ok(()) }
    /// ```
    pub fn read_pod<T: bytemuck::Pod>(&self, offset: usize) -> Result<T> {
        let mut value = T::zeroed();
        self.read_at(offset, bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }

    /// A 32-bit word at `offset` (relative to the view), for atomic loads.
    /// `offset` must be a multiple of 4 (the view's start is taken into
    /// account: it is the address that must be aligned).
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// use std::sync::atomic::Ordering;
    /// let segment = memshare::Segment::create(4096)?;
    /// segment.map(..)?.atomic_u32(8)?.store(42, Ordering::Release);
    /// let view = segment.map_readonly(..)?;
    /// assert_eq!(view.atomic_u32(8)?.load(Ordering::Acquire), 42);
    /// assert!(view.atomic_u32(6).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn atomic_u32(&self, offset: usize) -> Result<ReadOnlyU32<'_>> {
        Ok(ReadOnlyU32(self.atomic(offset)?))
    }

    /// A 64-bit word at `offset` (relative to the view), for atomic loads.
    /// `offset` must be a multiple of 8 (as an address).
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// use std::sync::atomic::Ordering;
    /// let segment = memshare::Segment::create(4096)?;
    /// let view = segment.map_readonly(..)?;
    /// assert_eq!(view.atomic_u64(16)?.load(Ordering::Relaxed), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn atomic_u64(&self, offset: usize) -> Result<ReadOnlyU64<'_>> {
        Ok(ReadOnlyU64(self.atomic(offset)?))
    }

    /// The view's bytes as a slice.
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no process (this one included) may
    /// write these bytes: for example a region the protocol gives to this
    /// side alone, or a segment that nobody can write any more (sealed
    /// read-only). Otherwise the slice would change under a shared
    /// reference, which is undefined behaviour.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// let view = segment.map_readonly(..)?;
    /// // SAFETY: nobody else holds this anonymous segment.
    /// let bytes = unsafe { view.as_slice() };
    /// assert!(bytes.iter().all(|&b| b == 0));
    /// # Ok(())
    /// # }
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the pointer and length describe the mapped view; the
        // caller guarantees nobody writes it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// A reference to an atomic `A` at `offset`, checked for range and
    /// alignment.
    fn atomic<A>(&self, offset: usize) -> Result<&A> {
        let size = std::mem::size_of::<A>();
        self.check_range(offset, size)?;
        // SAFETY: in range, by `check`.
        let addr = unsafe { self.ptr.add(offset) };
        if (addr as usize) % std::mem::align_of::<A>() != 0 {
            return Err(Error::Misaligned {
                object: self.describe(),
                offset,
                align: std::mem::align_of::<A>(),
            });
        }
        // `A` is an atomic integer type: other threads and processes may
        // read and write it concurrently.
        // SAFETY: in the mapping and aligned for `A` (both checked); the
        // mapping lives as long as `&self`.
        Ok(unsafe { &*addr.cast::<A>() })
    }

    /// Checks that `offset..offset+len` is inside the view.
    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfRange {
                object: self.describe(),
                detail: format!(
                    "bytes {offset}..{} are outside the view's {} bytes",
                    offset as u128 + len as u128,
                    self.len
                ),
            }),
        }
    }

    fn describe(&self) -> String {
        format!(
            "view {}..{} of {}",
            self.offset,
            self.offset + self.len as u64,
            sys::describe(self.object.name())
        )
    }
}

impl ViewMut {
    pub(crate) fn new(view: View) -> ViewMut {
        ViewMut { view }
    }

    /// The address of the view's first byte, for writing (see the [`View`]
    /// docs for the rules).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.view.ptr
    }

    /// Copies `data` into the view at `offset` (relative to the view).
    /// Fails with [`Error::OutOfRange`] if it does not fit, and with
    /// [`Error::Truncated`] or [`Error::NoSpace`] if the memory under the
    /// view is gone (see [`View::check_intact`]): the data then went
    /// nowhere.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.view.check_range(offset, data.len())?;
        // A `ViewMut` is only made from a writable mapping.
        // SAFETY: in range by `check`, writable; `data` is private and does
        // not overlap the mapping; no reference to the shared bytes is made.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.view.ptr.add(offset), data.len()) };
        self.view.check_intact()
    }

    /// Copies the plain-data value `value` into the view at `offset`
    /// (relative to the view): its `size_of::<T>()` bytes, as
    /// [`ViewMut::write_at`] writes them (any alignment). See
    /// [`View::read_pod`] for an example.
    pub fn write_pod<T: bytemuck::Pod>(&self, offset: usize, value: &T) -> Result<()> {
        self.write_at(offset, bytemuck::bytes_of(value))
    }

    /// The 32-bit word at `offset` (relative to the view) as an atomic.
    /// `offset` must be a multiple of 4 (as an address).
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// use std::sync::atomic::Ordering;
    /// let segment = memshare::Segment::create(4096)?;
    /// let view = segment.map(..)?;
    /// view.atomic_u32(0)?.fetch_add(1, Ordering::AcqRel);
    /// assert!(matches!(view.atomic_u32(2), Err(memshare::Error::Misaligned { .. })));
    /// assert!(matches!(view.atomic_u32(4096), Err(memshare::Error::OutOfRange { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.view.atomic(offset)
    }

    /// The 64-bit word at `offset` (relative to the view) as an atomic.
    /// `offset` must be a multiple of 8 (as an address).
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// use std::sync::atomic::Ordering;
    /// let segment = memshare::Segment::create(4096)?;
    /// let view = segment.map(..)?;
    /// view.atomic_u64(8)?.store(u64::MAX, Ordering::Relaxed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.view.atomic(offset)
    }

    /// The view's bytes as a mutable slice.
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no process (this one included) may
    /// read or write these bytes through any other view or pointer: a
    /// region the protocol gives to this side alone.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let segment = memshare::Segment::create(4096)?;
    /// let mut view = segment.map(..)?;
    /// // SAFETY: nobody else holds this anonymous segment.
    /// let bytes = unsafe { view.as_mut_slice() };
    /// bytes[..3].copy_from_slice(b"abc");
    /// # Ok(())
    /// # }
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the pointer and length describe the writable mapping; the
        // caller guarantees exclusive access while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.view.ptr, self.view.len) }
    }
}

impl ops::Deref for ViewMut {
    type Target = View;

    fn deref(&self) -> &View {
        &self.view
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("segment", &self.object.name())
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("mapping", &self.mapping)
            .finish()
    }
}

impl fmt::Debug for ViewMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ViewMut").field(&self.view).finish()
    }
}
