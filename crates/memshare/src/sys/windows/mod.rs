//! Windows: pagefile-backed sections (`CreateFileMappingW` with no file),
//! `MapViewOfFile`, names in the `Local\` (or `Global\`) namespace, and the
//! kernel's own reference counting for lifetimes.
//!
//! memshare's model *is* the Win32 file mapping, so this backend is thin:
//! a segment is a section handle, a view is a mapped view, a name lives
//! while any handle or view of the section exists.

mod broker;
#[cfg(feature = "async")]
mod event;
mod handle;
mod reaper;
mod security;
mod share;
mod sync;

use std::ffi::c_void;
use std::ptr::NonNull;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ALREADY_EXISTS, ERROR_COMMITMENT_LIMIT, ERROR_INVALID_HANDLE,
    ERROR_NOT_ENOUGH_MEMORY, ERROR_NO_SYSTEM_RESOURCES, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, FILE_MAP_READ,
    FILE_MAP_WRITE, MEMORY_MAPPED_VIEW_ADDRESS, PAGE_READWRITE, SECTION_MAP_READ,
    SECTION_MAP_WRITE, SECTION_QUERY, SEC_COMMIT,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};

use crate::{Error, Result};

use super::{describe, Access, Meta, Owner, Prefault};
#[cfg(feature = "async")]
pub(crate) use event::Event;
pub(crate) use handle::Handle;
/// The notifier's (`crate::aio`) only.
#[cfg(feature = "async")]
pub(crate) use reaper::on_fork;
pub(crate) use reaper::{deaths, on_death, unwatch_pid, watch_pid};
pub(crate) use share::{adopt_duplicated, adopt_inherited, fail_share, offer_to_child, parent_pid};
#[cfg(feature = "async")]
pub(crate) use sync::route_local;
pub(crate) use sync::{
    wait, wait_many, wake, wake_waiters, ByteLock, ManyWaiter, WordRoute, WAIT_MANY_MAX,
};

/// What a creator asks for beyond the size.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CreateOptions {
    /// Large pages: not offered on Windows yet (`Unsupported`).
    pub huge_pages: bool,
    /// Commit every page at creation: sections are always created with
    /// `SEC_COMMIT`, so this changes nothing on Windows.
    pub reserve: bool,
    /// Keep the name after the last holder is gone: impossible on Windows.
    pub persist: bool,
    /// Create the name in the `Global\` namespace instead of `Local\`.
    pub global: bool,
}

/// The access a holder of a writable section handle keeps: map for reading
/// and writing, and query the size. Never `WRITE_DAC`/`WRITE_OWNER`, so
/// the handle cannot be used to grant itself more.
const RW_ACCESS: u32 = SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY;
/// The access of a read-only handle.
const RO_ACCESS: u32 = SECTION_MAP_READ | SECTION_QUERY;

/// An open section: its handle, the name it was opened by, and its size.
#[derive(Debug)]
pub(crate) struct Object {
    handle: Handle,
    meta: Meta,
    /// The size the system reports for the section (a whole number of
    /// pages): views may reach up to here.
    section_len: u64,
    /// Made by this process's memshare, with memshare's security
    /// descriptor (which `to_readonly` relies on).
    created_here: bool,
    /// Whether `meta.len` is the size the section was made with (made
    /// here, or handed over with its size), not the whole pages
    /// `NtQuerySection` reports (a section opened by name).
    len_exact: bool,
    /// The section's kernel name, which names its wake and lock objects
    /// (`sync.rs`): `memshare.<name>`, or `memshare-anon.<random>` for an
    /// anonymous section made by memshare, `g.` in front in the global
    /// namespace; `None` for a section without a name.
    sync_id: Option<String>,
}

impl std::ops::Deref for Object {
    type Target = Meta;

    fn deref(&self) -> &Meta {
        &self.meta
    }
}

/// A Win32 error for the object `name`, as the crate's error.
pub(crate) fn win_error(name: Option<&str>, op: &'static str, code: u32) -> Error {
    Error::from_io(name, op, std::io::Error::from_raw_os_error(code as i32))
}

/// The last Win32 error of this thread.
pub(crate) fn last_error() -> u32 {
    // SAFETY: reads the calling thread's last-error value; no arguments.
    unsafe { GetLastError() }
}

/// Whether any mapping of this process may have faulted: never on
/// Windows, where a view of a pagefile-backed section cannot shrink under
/// its holder (see `Mapping::faulted`).
#[inline]
pub(crate) fn any_mapping_faulted() -> bool {
    false
}

/// The allocation granularity: view offsets are multiples of it (64 KiB).
pub(crate) fn allocation_granularity() -> usize {
    usize::try_from(system_info().dwAllocationGranularity)
        .ok()
        .filter(|g| g.is_power_of_two())
        .unwrap_or(65536)
}

/// The page size: section sizes are reported rounded up to it.
fn page_size() -> u64 {
    u64::from(system_info().dwPageSize).max(4096)
}

fn system_info() -> SYSTEM_INFO {
    // SAFETY: all-zero is a valid SYSTEM_INFO, which GetSystemInfo fills.
    let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable SYSTEM_INFO.
    unsafe { GetSystemInfo(&mut info) };
    info
}

/// The part of a section's full kernel name (`\\Sessions\\1\\BaseNamedObjects\\x`
/// or, in the global namespace, `\\BaseNamedObjects\\x`) that names its
/// wake and lock objects: `x`, or `g.x` for a global one.
fn sync_id(full: &str) -> Option<String> {
    let (directory, leaf) = full.rsplit_once('\\')?;
    if leaf.is_empty() {
        return None;
    }
    Some(if directory == "\\BaseNamedObjects" {
        format!("g.{leaf}")
    } else {
        leaf.to_owned()
    })
}

/// The [`sync_id`] of the section `handle` refers to (`None` if it has no
/// name, or the system does not say).
pub(crate) fn sync_id_of(handle: &Handle) -> Option<String> {
    handle::object_name(handle.raw())
        .ok()
        .flatten()
        .and_then(|full| sync_id(&full))
}

/// The kernel object name for `name`: `Local\name` or `Global\name`.
fn kernel_name(name: &str, global: bool) -> Vec<u16> {
    let prefix = if global { "Global\\" } else { "Local\\" };
    format!("{prefix}memshare.{name}")
        .encode_utf16()
        .chain(Some(0))
        .collect()
}

impl Object {
    fn from_handle(
        handle: Handle,
        name: Option<String>,
        access: Access,
        len: Option<u64>,
    ) -> Result<Object> {
        let section_len = handle::section_size(&handle)
            .map_err(|code| win_error(name.as_deref(), "NtQuerySection", code))?;
        Ok(Object {
            len_exact: len.is_some(),
            sync_id: sync_id_of(&handle),
            meta: Meta {
                name,
                access,
                len: len.unwrap_or(section_len),
            },
            handle,
            section_len,
            created_here: false,
        })
    }

    /// A new anonymous section of `len` zero bytes.
    pub(crate) fn create_anonymous(len: u64, opts: &CreateOptions) -> Result<Object> {
        let handle = create_section(None, len, opts)?;
        let mut object = Object::from_handle(handle, None, Access::ReadWrite, Some(len))?;
        object.created_here = true;
        Ok(object)
    }

    /// A new named section, `Local\memshare.<name>` (or `Global\`), that
    /// only this user can open.
    pub(crate) fn create_named(name: &str, len: u64, opts: &CreateOptions) -> Result<Object> {
        if opts.persist {
            return Err(Error::Unsupported {
                what: format!(
                    "a persistent name for segment {name:?}: on Windows a section's name \
                     lives exactly as long as some handle or view of it"
                ),
            });
        }
        let handle = create_section(Some((name, opts.global)), len, opts)?;
        Object::from_handle(handle, Some(name.to_owned()), Access::ReadWrite, Some(len))
    }

    /// Opens the section called `name` (in `Local\`, then `Global\`).
    /// The owner is not checked here: a section's DACL decides who may
    /// open it (memshare's own admit this user only; see
    /// docs/platforms.md for what that leaves).
    pub(crate) fn open_named(name: &str, access: Access, _owner: Owner) -> Result<Object> {
        let rights = if access.writable() {
            RW_ACCESS
        } else {
            RO_ACCESS
        };
        let mut first_error = 0;
        for global in [false, true] {
            let wide = kernel_name(name, global);
            // SAFETY: `wide` is a NUL-terminated UTF-16 string that lives
            // across the call.
            let raw = unsafe { OpenFileMappingW(rights, 0, wide.as_ptr()) };
            match Handle::from_raw(raw) {
                Some(handle) => {
                    return Object::from_handle(handle, Some(name.to_owned()), access, None)
                }
                None if !global => first_error = last_error(),
                None => {}
            }
        }
        // Windows says ERROR_FILE_NOT_FOUND for a missing name and
        // ERROR_INVALID_HANDLE for a name held by another kind of object
        // (an event, a mutex); Wine says ERROR_INVALID_HANDLE for both.
        // Either way there is no section by that name.
        Err(match first_error {
            ERROR_INVALID_HANDLE => Error::NotFound {
                name: name.to_owned(),
                source: Some(std::io::Error::from_raw_os_error(first_error as i32)),
            },
            code => win_error(Some(name), "OpenFileMappingW", code),
        })
    }

    /// Nothing to do: a committed section's pages are charged at creation.
    pub(crate) fn allocate(&self, _offset: u64, _len: u64) -> Result<()> {
        Ok(())
    }

    /// How much longer than its real size the section may be said to be:
    /// `NtQuerySection` reports whole pages.
    pub(crate) fn len_slack(&self) -> u64 {
        if self.len_exact {
            0
        } else {
            page_size() - 1
        }
    }

    /// The size now: a section never changes size.
    pub(crate) fn current_len(&self) -> Result<u64> {
        Ok(self.meta.len)
    }

    /// Nothing to remove: on Windows a name goes with the last handle or
    /// view of its section, and not before. `Ok(false)`, as for a name that
    /// no longer leads here (a request/response service retired by a new
    /// server keeps its name until its old clients let go).
    pub(crate) fn remove_name_if_current(&self) -> Result<bool> {
        Ok(false)
    }

    /// Offsets of views are aligned down to this.
    pub(crate) fn granularity(&self) -> usize {
        allocation_granularity()
    }

    /// The section handle, borrowed.
    pub(crate) fn borrowed_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        // SAFETY: the handle is open for as long as `self` lives, which the
        // borrow's lifetime ties it to.
        unsafe { std::os::windows::io::BorrowedHandle::borrow_raw(self.handle.raw()) }
    }

    /// Maps `len` bytes from `offset`, a multiple of the granularity. A
    /// window that would reach past the section's end is cut there
    /// (Windows refuses views beyond the end; Unix maps them).
    pub(crate) fn map(
        &self,
        offset: u64,
        len: usize,
        access: Access,
        _prefault: Prefault,
    ) -> Result<Mapping> {
        let writable = access.writable();
        let available = self.section_len.saturating_sub(offset);
        let len = len.min(usize::try_from(available).unwrap_or(usize::MAX));
        let access = if writable {
            FILE_MAP_READ | FILE_MAP_WRITE
        } else {
            FILE_MAP_READ
        };
        // SAFETY: maps a view of a section handle this object owns, at an
        // address the system chooses: it aliases no Rust object. `Mapping`
        // owns the view and unmaps it on drop.
        let view = unsafe {
            MapViewOfFile(
                self.handle.raw(),
                access,
                (offset >> 32) as u32,
                offset as u32,
                len,
            )
        };
        let Some(ptr) = NonNull::new(view.Value.cast::<u8>()) else {
            let code = last_error();
            return Err(match code {
                windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED => Error::PermissionDenied {
                    source: Some(std::io::Error::from_raw_os_error(code as i32)),
                    object: describe(self.name()),
                    op: format!(
                        "map {len} bytes at offset {offset} {}: the handle does not allow it",
                        if writable { "writable" } else { "read-only" }
                    ),
                },
                ERROR_NOT_ENOUGH_MEMORY | ERROR_NO_SYSTEM_RESOURCES => Error::NoSpace {
                    object: describe(self.name()),
                    len: len as u64,
                    detail: format!(
                        "MapViewOfFile: {}",
                        std::io::Error::from_raw_os_error(code as i32)
                    ),
                },
                code => win_error(self.name(), "MapViewOfFile", code),
            });
        };
        Ok(Mapping { ptr })
    }
}

/// Creates a pagefile-backed section; `named` is the name and namespace.
fn create_section(named: Option<(&str, bool)>, len: u64, opts: &CreateOptions) -> Result<Handle> {
    let name = named.map(|(n, _)| n);
    let descriptor = if named.is_some() {
        security::Descriptor::current_user_only()
    } else {
        security::Descriptor::nobody_may_add_access()
    }
    .map_err(|code| win_error(name, "security descriptor", code))?;
    // Anonymous sections get a random kernel name that nobody opens (the
    // descriptor grants nobody access): it is what names their wake and
    // lock objects in every process that holds them (`sync.rs`).
    let wide = match named {
        Some((n, global)) => kernel_name(n, global),
        None => {
            let id = broker::random_token().map_err(|detail| {
                Error::from_io(None, "BCryptGenRandom", std::io::Error::other(detail))
            })?;
            format!("Local\\memshare-anon.{id:032x}")
                .encode_utf16()
                .chain(Some(0))
                .collect()
        }
    };
    if opts.huge_pages {
        // SEC_LARGE_PAGES needs the SeLockMemoryPrivilege *enabled*, sizes
        // in multiples of GetLargePageMinimum(), and (Windows 10 1703 on)
        // FILE_MAP_LARGE_PAGES on every view with that granularity: not
        // offered yet rather than offered half-way.
        return Err(Error::Unsupported {
            what: format!("large pages for {} on Windows", describe(name)),
        });
    }
    let protect = PAGE_READWRITE | SEC_COMMIT;
    // SAFETY: no file handle (a pagefile-backed section); the security
    // attributes and the name outlive the call.
    let raw = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            descriptor.attributes(),
            protect,
            (len >> 32) as u32,
            len as u32,
            wide.as_ptr(),
        )
    };
    let code = last_error();
    let Some(created) = Handle::from_raw(raw) else {
        return Err(match code {
            // A name taken by an event, a mutex...: CreateFileMapping says
            // "invalid handle".
            ERROR_INVALID_HANDLE if name.is_some() => Error::already_exists_because(
                name.unwrap_or_default(),
                std::io::Error::from_raw_os_error(code as i32),
            ),
            ERROR_NOT_ENOUGH_MEMORY | ERROR_COMMITMENT_LIMIT | ERROR_NO_SYSTEM_RESOURCES => {
                Error::NoSpace {
                    object: describe(name),
                    len,
                    detail: format!(
                        "CreateFileMappingW: {} (the system's commit limit)",
                        std::io::Error::from_raw_os_error(code as i32)
                    ),
                }
            }
            code => win_error(name, "CreateFileMappingW", code),
        });
    };
    if code == ERROR_ALREADY_EXISTS {
        // The call opened the existing section instead: not ours (for an
        // anonymous one, a random name someone else took: refused too).
        return Err(match name {
            Some(name) => {
                Error::already_exists_because(name, std::io::Error::from_raw_os_error(code as i32))
            }
            None => win_error(None, "CreateFileMappingW", code),
        });
    }
    // Keep only the access memshare needs: without WRITE_DAC/WRITE_OWNER,
    // no handle derived from this one can rewrite the security descriptor.
    created
        .duplicate_here(RW_ACCESS)
        .map_err(|code| win_error(name, "DuplicateHandle", code))
}

/// Names cannot be removed on Windows: they go with their last handle.
pub(crate) fn remove_named(name: &str, _owner: Owner) -> Result<()> {
    Err(Error::Unsupported {
        what: format!(
            "removing the name of segment {name:?}: on Windows a name goes away with the \
             last handle or view of its section, and cannot be removed before"
        ),
    })
}

/// One mapped view. Unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
}

impl Mapping {
    /// The first byte of the view.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Never: a section cannot shrink, and a committed section's pages are
    /// charged at creation, so touching a view cannot fault.
    #[inline]
    pub(crate) fn faulted(&self) -> bool {
        false
    }
}

// SAFETY: a view is plain memory owned by this value, not tied to a thread.
unsafe impl Send for Mapping {}
// SAFETY: `Mapping` offers no access of its own through `&self`; the views
// that use it synchronize their accesses.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        let view = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.ptr.as_ptr().cast::<c_void>(),
        };
        // SAFETY: `ptr` is the base address MapViewOfFile returned, and the
        // view that used it is gone.
        let ok = unsafe { UnmapViewOfFile(view) };
        debug_assert!(ok != 0, "UnmapViewOfFile failed: {}", last_error());
    }
}
