//! Owned kernel handles, and what the kernel says about a section handle:
//! its type, the access it grants, the section's size.

use std::ffi::c_void;
use std::os::windows::io::{AsRawHandle, RawHandle};

use windows_sys::Wdk::Foundation::{NtQueryObject, ObjectBasicInformation, ObjectTypeInformation};
use windows_sys::Win32::Foundation::{
    CloseHandle, DuplicateHandle, GetHandleInformation, DUPLICATE_SAME_ACCESS,
    ERROR_INVALID_HANDLE, HANDLE, INVALID_HANDLE_VALUE, NTSTATUS, UNICODE_STRING,
};
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use super::last_error;

// The one ntdll call windows-sys does not declare.
windows_link::link!("ntdll.dll" "system" fn NtQuerySection(
    section : HANDLE,
    class : i32,
    info : *mut c_void,
    info_len : usize,
    return_len : *mut usize
) -> NTSTATUS);

/// `SectionBasicInformation`, the class of `NtQuerySection`.
const SECTION_BASIC_INFORMATION_CLASS: i32 = 0;

/// `SECTION_BASIC_INFORMATION`.
#[repr(C)]
struct SectionBasicInformation {
    base_address: *mut c_void,
    attributes: u32,
    maximum_size: i64,
}

/// `PUBLIC_OBJECT_BASIC_INFORMATION`.
#[repr(C)]
struct ObjectBasic {
    attributes: u32,
    granted_access: u32,
    handle_count: u32,
    pointer_count: u32,
    reserved: [u32; 10],
}

/// A handle this process owns; closed when dropped.
#[derive(Debug)]
pub(crate) struct Handle(HANDLE);

// SAFETY: a kernel handle is a process-wide value; any thread may use or
// close it.
unsafe impl Send for Handle {}
// SAFETY: `&Handle` only reads the value; the calls made with it are
// thread-safe in the kernel.
unsafe impl Sync for Handle {}

impl Handle {
    /// Takes ownership of `raw`, unless it is null or `INVALID_HANDLE_VALUE`
    /// (what failing Win32 calls return).
    pub(crate) fn from_raw(raw: HANDLE) -> Option<Handle> {
        (!raw.is_null() && raw != INVALID_HANDLE_VALUE).then_some(Handle(raw))
    }

    /// The raw value.
    pub(crate) fn raw(&self) -> HANDLE {
        self.0
    }

    /// The handle's value as a number (what is written into a value that
    /// travels to another process).
    pub(crate) fn value(&self) -> u64 {
        self.0 as usize as u64
    }

    /// A new handle to the same object in this process, with `access` only.
    pub(crate) fn duplicate_here(&self, access: u32) -> Result<Handle, u32> {
        // SAFETY: the pseudo-handle of the current process needs no closing.
        let me = unsafe { GetCurrentProcess() };
        let raw = duplicate_raw(me, self.0, me, access)?;
        Handle::from_raw(raw).ok_or(ERROR_INVALID_HANDLE)
    }
}

impl AsRawHandle for Handle {
    fn as_raw_handle(&self) -> RawHandle {
        self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: this value owns the handle, and nothing uses it after.
        unsafe { CloseHandle(self.0) };
    }
}

/// `DuplicateHandle` from `source_process` to `target_process`, with
/// exactly `access`, not inheritable. Returns the handle's value in the
/// target process: owned by this process only when the target is this one.
pub(crate) fn duplicate_raw(
    source_process: HANDLE,
    source: HANDLE,
    target_process: HANDLE,
    access: u32,
) -> Result<HANDLE, u32> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: the process handles and `source` are valid for the call, and
    // `out` is a valid place for the result.
    let ok = unsafe {
        DuplicateHandle(
            source_process,
            source,
            target_process,
            &mut out,
            access,
            0,
            0,
        )
    };
    if ok == 0 {
        Err(last_error())
    } else {
        Ok(out)
    }
}

/// Takes handle `source` of `source_process` into this process, with the
/// access it has there (`DUPLICATE_SAME_ACCESS`), not inheritable.
pub(crate) fn take_same_access(source_process: HANDLE, source: HANDLE) -> Result<Handle, u32> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: the process handles and `source` are valid for the call, and
    // `out` is a valid place for the result, which `Handle` then owns.
    let ok = unsafe {
        DuplicateHandle(
            source_process,
            source,
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    Handle::from_raw(out).ok_or(ERROR_INVALID_HANDLE)
}

/// Whether `raw` is an open handle of this process.
pub(crate) fn is_open(raw: HANDLE) -> bool {
    let mut flags = 0u32;
    // SAFETY: GetHandleInformation only looks the value up in this
    // process's handle table; `flags` is a valid place for the result.
    unsafe { GetHandleInformation(raw, &mut flags) != 0 }
}

/// The section's size, as the system reports it (a whole number of pages).
pub(crate) fn section_size(handle: &Handle) -> Result<u64, u32> {
    section_size_raw(handle.raw()).map(|(size, _)| size)
}

/// The section's size and its `SEC_*` attributes.
pub(crate) fn section_size_raw(raw: HANDLE) -> Result<(u64, u32), u32> {
    let mut info = SectionBasicInformation {
        base_address: std::ptr::null_mut(),
        attributes: 0,
        maximum_size: 0,
    };
    let mut written = 0usize;
    // SAFETY: `info` is a writable SECTION_BASIC_INFORMATION of the size
    // passed; `written` is a valid place for the result.
    let status = unsafe {
        NtQuerySection(
            raw,
            SECTION_BASIC_INFORMATION_CLASS,
            (&mut info as *mut SectionBasicInformation).cast(),
            std::mem::size_of::<SectionBasicInformation>(),
            &mut written,
        )
    };
    if status < 0 {
        return Err(nt_error(status));
    }
    let size = u64::try_from(info.maximum_size).map_err(|_| ERROR_INVALID_HANDLE)?;
    Ok((size, info.attributes))
}

/// The access `raw` grants.
pub(crate) fn granted_access(raw: HANDLE) -> Result<u32, u32> {
    // SAFETY: all-zero is a valid ObjectBasic.
    let mut info: ObjectBasic = unsafe { std::mem::zeroed() };
    let mut written = 0u32;
    // SAFETY: `info` is writable and of the size passed.
    let status = unsafe {
        NtQueryObject(
            raw,
            ObjectBasicInformation,
            (&mut info as *mut ObjectBasic).cast(),
            std::mem::size_of::<ObjectBasic>() as u32,
            &mut written,
        )
    };
    if status < 0 {
        return Err(nt_error(status));
    }
    Ok(info.granted_access)
}

/// The kernel type of the object `raw` refers to ("Section", "Event"...).
pub(crate) fn type_name(raw: HANDLE) -> Result<String, u32> {
    query_string(raw, ObjectTypeInformation).map(Option::unwrap_or_default)
}

/// `ObjectNameInformation`, the class of `NtQueryObject` that gives an
/// object's name (winternl.h's `OBJECT_INFORMATION_CLASS`; windows-sys
/// lacks the constant).
const OBJECT_NAME_INFORMATION: i32 = 1;

/// The full kernel name of the object `raw` refers to
/// (`\Sessions\1\BaseNamedObjects\memshare.x`), `None` if it has none.
pub(crate) fn object_name(raw: HANDLE) -> Result<Option<String>, u32> {
    query_string(raw, OBJECT_NAME_INFORMATION)
}

/// What `NtQueryObject` says for a class that answers with a
/// `UNICODE_STRING`: `None` for an empty one.
fn query_string(raw: HANDLE, class: i32) -> Result<Option<String>, u32> {
    // A UNICODE_STRING followed by its characters; u64 for alignment.
    let mut buf = [0u64; 128];
    let mut written = 0u32;
    // SAFETY: `buf` is writable and of the size passed.
    let status = unsafe {
        NtQueryObject(
            raw,
            class,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(&buf) as u32,
            &mut written,
        )
    };
    if status < 0 {
        return Err(nt_error(status));
    }
    // SAFETY: on success the buffer starts with a UNICODE_STRING.
    let name: UNICODE_STRING = unsafe { std::ptr::read(buf.as_ptr().cast()) };
    let chars = usize::from(name.Length) / 2;
    if chars == 0 {
        return Ok(None);
    }
    let start = buf.as_ptr() as usize;
    let end = start + std::mem::size_of_val(&buf);
    let text = name.Buffer as usize;
    // The kernel points the string into our buffer; anything else is refused.
    if name.Buffer.is_null() || text < start || text + chars * 2 > end || text % 2 != 0 {
        return Err(ERROR_INVALID_HANDLE);
    }
    // SAFETY: checked just above: `chars` UTF-16 units inside `buf`, at an
    // even offset; the pointer is derived from `buf` itself.
    let units = unsafe {
        std::slice::from_raw_parts(
            buf.as_ptr().cast::<u8>().add(text - start).cast::<u16>(),
            chars,
        )
    };
    Ok(Some(String::from_utf16_lossy(units)))
}

/// An NTSTATUS as the Win32 error a caller sees (`RtlNtStatusToDosError`
/// for the statuses that matter here).
fn nt_error(status: NTSTATUS) -> u32 {
    match status as u32 {
        0xC000_0008 => ERROR_INVALID_HANDLE, // STATUS_INVALID_HANDLE
        0xC000_0022 => windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED, // STATUS_ACCESS_DENIED
        0xC000_0024 => ERROR_INVALID_HANDLE, // STATUS_OBJECT_TYPE_MISMATCH
        _ => windows_sys::Win32::Foundation::ERROR_GEN_FAILURE,
    }
}
