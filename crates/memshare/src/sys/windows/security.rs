//! Security descriptors for the sections memshare creates.
//!
//! - Named sections: the current user only (`D:P(A;;GA;;;<user SID>)`), so
//!   other users cannot open them by name.
//! - Anonymous sections: an empty DACL plus an `OWNER RIGHTS` entry that
//!   grants only `READ_CONTROL`. Nobody can open them (they have no name),
//!   and, which is the point, nobody can `DuplicateHandle` a handle to them
//!   with *more* access than it has: a duplication that asks for access the
//!   source handle lacks is checked against this descriptor, which grants
//!   nothing, and the `OWNER RIGHTS` entry takes away the owner's implicit
//!   `WRITE_DAC` (Chromium uses the empty DACL the same way; the owner entry
//!   closes the owner's way around it). Together with handles that never
//!   carry `WRITE_DAC`/`WRITE_OWNER`, a read-only handle stays read-only.

use std::ffi::c_void;

use windows_sys::Win32::Foundation::{LocalFree, HANDLE, HLOCAL};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::handle::Handle;
use super::last_error;

/// A security descriptor made from SDDL, with the attributes that point at
/// it. Freed when dropped.
pub(crate) struct Descriptor {
    descriptor: PSECURITY_DESCRIPTOR,
    attributes: SECURITY_ATTRIBUTES,
}

impl Descriptor {
    /// Only the current user may open the object.
    pub(crate) fn current_user_only() -> Result<Descriptor, u32> {
        Descriptor::from_sddl(&format!("D:P(A;;GA;;;{})", current_user_sid()?))
    }

    /// No handle to the object can be given more access than it has.
    pub(crate) fn nobody_may_add_access() -> Result<Descriptor, u32> {
        // Systems without the OWNER RIGHTS SID (Wine, Windows before
        // Vista) take the plain empty DACL.
        Descriptor::from_sddl("D:P(A;;RC;;;OW)").or_else(|_| Descriptor::from_sddl("D:P"))
    }

    fn from_sddl(sddl: &str) -> Result<Descriptor, u32> {
        let wide: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; `descriptor` receives a
        // LocalAlloc'd descriptor that `Drop` frees.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        Ok(Descriptor {
            descriptor,
            attributes: SECURITY_ATTRIBUTES {
                nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
                lpSecurityDescriptor: descriptor,
                bInheritHandle: 0,
            },
        })
    }

    /// The attributes to pass to a create call (handles not inheritable).
    pub(crate) fn attributes(&self) -> &SECURITY_ATTRIBUTES {
        &self.attributes
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptor..., freed once.
        unsafe { LocalFree(self.descriptor as HLOCAL) };
    }
}

/// The current user's SID as a string (`S-1-5-21-...`).
fn current_user_sid() -> Result<String, u32> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the current-process pseudo-handle; `token` receives a handle
    // that `Handle` closes.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(last_error());
    }
    let token =
        Handle::from_raw(token).ok_or(windows_sys::Win32::Foundation::ERROR_INVALID_HANDLE)?;
    // TOKEN_USER followed by the SID it points to; u64 for alignment.
    let mut buf = [0u64; 64];
    let mut needed = 0u32;
    // SAFETY: `buf` is writable and of the size passed.
    let ok = unsafe {
        GetTokenInformation(
            token.raw(),
            TokenUser,
            buf.as_mut_ptr().cast::<c_void>(),
            std::mem::size_of_val(&buf) as u32,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID
    // pointer points into the buffer.
    let user: TOKEN_USER = unsafe { std::ptr::read(buf.as_ptr().cast()) };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the SID is valid while `buf` lives; `text` receives a
    // LocalAlloc'd string freed below.
    if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
        return Err(last_error());
    }
    // SAFETY: `text` is a NUL-terminated UTF-16 string from the system.
    let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `len` units before the NUL, read just above.
    let sid = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, len) });
    // SAFETY: allocated by ConvertSidToStringSidW, freed once.
    unsafe { LocalFree(text as HLOCAL) };
    Ok(sid)
}
