//! Handing sections to other processes on Windows: `DuplicateHandle` into
//! exactly the process that is meant to have the section, and validation of
//! every handle value another process hands this one.

use std::process::Command;

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_INVALID_HANDLE, ERROR_INVALID_PARAMETER, HANDLE,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Memory::{
    SECTION_MAP_READ, SECTION_MAP_WRITE, SECTION_QUERY, SEC_FILE, SEC_IMAGE, SEC_RESERVE,
};
use windows_sys::Win32::System::Threading::{GetProcessId, OpenProcess, PROCESS_DUP_HANDLE};

use super::handle::{self, Handle};
use super::{broker, page_size, win_error, Object, RO_ACCESS, RW_ACCESS};
use crate::sys::{describe, Access, Claim, Meta};
use crate::{Error, Result};

impl Object {
    /// The access a handle given away carries: this handle's own.
    fn access(&self) -> u32 {
        if self.writable() {
            RW_ACCESS
        } else {
            RO_ACCESS
        }
    }

    /// A read-only handle of an anonymous section: `SECTION_MAP_READ |
    /// SECTION_QUERY` only. The section's security descriptor grants no
    /// access (see `security`), so nobody can duplicate it back to more.
    pub(crate) fn to_readonly(&self) -> Result<Object> {
        if let Some(name) = self.name() {
            return Err(Error::Unsupported {
                what: format!(
                    "a read-only handle of named segment {name:?}: anyone who knows the name \
                     may open it writable"
                ),
            });
        }
        if !self.created_here {
            return Err(Error::Unsupported {
                what: "a read-only handle of a section this process received: only a section \
                       memshare created here has the security descriptor that keeps a read-only \
                       handle from being duplicated back to write access"
                    .into(),
            });
        }
        let handle = self
            .handle
            .duplicate_here(RO_ACCESS)
            .map_err(|code| win_error(None, "DuplicateHandle", code))?;
        Ok(Object {
            handle,
            meta: Meta {
                name: None,
                access: Access::ReadOnly,
                len: self.meta.len,
            },
            section_len: self.section_len,
            created_here: true,
            len_exact: self.len_exact,
            sync_id: self.sync_id.clone(),
        })
    }

    /// Windows has no seals: a writable handle elsewhere can always write.
    pub(crate) fn write_sealed(&self) -> bool {
        false
    }

    /// Offers this section to the running process `process` (a process
    /// handle with query access): the broker duplicates it into exactly
    /// that process (same id and creation time) when it claims it. Returns
    /// this process's handle value (for the record), the token and the
    /// process id.
    pub(crate) fn duplicate_into(&self, process: HANDLE) -> Result<(u64, (u64, u64), u32)> {
        // SAFETY: reads the id of a process handle the caller lent us.
        let pid = unsafe { GetProcessId(process) };
        if pid == 0 {
            return Err(Error::InvalidHandle {
                object: describe(self.name()),
                reason: "the target is not a process handle".into(),
            });
        }
        let created = broker::creation_time(process)
            .map_err(|code| win_error(self.name(), "GetProcessTimes of the target", code))?;
        let (raw, token) = self.offer(broker::Recipient::Process { pid, created })?;
        Ok((raw, token, pid))
    }

    /// Registers a duplicate of this handle with the broker for `to`.
    fn offer(&self, to: broker::Recipient) -> Result<(u64, (u64, u64))> {
        let given = self
            .handle
            .duplicate_here(self.access())
            .map_err(|code| win_error(self.name(), "DuplicateHandle", code))?;
        let raw = given.value();
        let token =
            broker::offer(given, self.access(), to).map_err(|reason| Error::InvalidHandle {
                object: describe(self.name()),
                reason,
            })?;
        Ok((raw, ((token >> 64) as u64, token as u64)))
    }
}

impl Object {
    /// Takes handle `raw` of process `pid` (`OpenProcess(PROCESS_DUP_HANDLE)`
    /// + `DuplicateHandle` with the same access). It must be a section
    /// handle; the segment's size is the section's (whole pages), and it is
    /// writable if the handle allows writing.
    pub(crate) fn take_from_process(pid: u32, raw: i32) -> Result<Object> {
        let origin = format!("handle {raw} of process {pid}");
        let bad = |reason: String| Error::InvalidHandle {
            object: origin.clone(),
            reason,
        };
        if raw <= 0 || raw % 4 != 0 {
            return Err(bad(format!("{raw} is not a handle value")));
        }
        // SAFETY: opens the process for taking handles; `Handle` closes it.
        let process = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
        let process = Handle::from_raw(process).ok_or_else(|| match super::last_error() {
            ERROR_ACCESS_DENIED => Error::PermissionDenied {
                object: origin.clone(),
                op: "OpenProcess(PROCESS_DUP_HANDLE): not allowed".into(),
                source: Some(std::io::Error::from_raw_os_error(
                    ERROR_ACCESS_DENIED as i32,
                )),
            },
            ERROR_INVALID_PARAMETER => Error::not_found_because(
                &format!("process {pid}"),
                std::io::Error::from_raw_os_error(ERROR_INVALID_PARAMETER as i32),
            ),
            code => win_error(None, "OpenProcess", code),
        })?;
        let taken =
            handle::take_same_access(process.raw(), raw as isize as HANDLE).map_err(|code| {
                match code {
                    ERROR_INVALID_HANDLE => bad("the process has no such handle".into()),
                    code => win_error(None, "DuplicateHandle from the process", code),
                }
            })?;
        // `taken` is ours: it is closed if any check below fails.
        let (access, size) = check_section(taken.raw(), raw as u64).map_err(bad)?;
        let writable = access & SECTION_MAP_WRITE != 0;
        // Keep only what memshare's own handles carry (never WRITE_DAC or
        // WRITE_OWNER), whatever the source handle had.
        let handle = taken
            .duplicate_here(if writable { RW_ACCESS } else { RO_ACCESS })
            .map_err(|code| win_error(None, "DuplicateHandle", code))?;
        Ok(Object {
            len_exact: true,
            sync_id: super::sync_id_of(&handle),
            handle,
            meta: Meta {
                name: None,
                access: Access::from_writable(writable),
                len: size,
            },
            section_len: size,
            created_here: false,
        })
    }
}

/// Checks that `h` is a section handle that can be mapped and measured;
/// returns its access and the section's size.
fn check_section(h: HANDLE, raw: u64) -> std::result::Result<(u32, u64), String> {
    let kind = handle::type_name(h)
        .map_err(|code| format!("handle {raw}: NtQueryObject failed ({code})"))?;
    if kind != "Section" {
        return Err(format!("handle {raw} is a {kind} handle, not a section"));
    }
    let access = handle::granted_access(h)
        .map_err(|code| format!("handle {raw}: NtQueryObject failed ({code})"))?;
    if access & (SECTION_MAP_READ | SECTION_QUERY) != SECTION_MAP_READ | SECTION_QUERY {
        return Err(format!(
            "handle {raw} grants access {access:#x}: it cannot be mapped and measured"
        ));
    }
    let (size, attributes) = handle::section_size_raw(h)
        .map_err(|code| format!("handle {raw}: NtQuerySection failed ({code})"))?;
    // Only committed, pagefile-backed sections: pages of a SEC_RESERVE
    // section fault until committed, a file's can fail to page in, an
    // image is code. Any of those could crash this process on access.
    if attributes & (SEC_RESERVE | SEC_FILE | SEC_IMAGE) != 0 {
        return Err(format!(
            "handle {raw} is a section with attributes {attributes:#x} (reserved, file- or \
             image-backed): only committed, pagefile-backed sections are taken"
        ));
    }
    Ok((access, size))
}

/// Registers `object` with this process's broker for the child `cmd` will
/// spawn: returns the value of this process's handle (for the record) and
/// the one-time token the child presents.
pub(crate) fn offer_to_child(_cmd: &mut Command, object: &Object) -> Result<(u64, (u64, u64))> {
    object.offer(broker::Recipient::Child {
        offered_at: broker::now(),
    })
}

/// Makes `cmd`'s child fail to take the segment under `var`, with `reason`
/// (std's `Command` on Windows has no hook that can fail the spawn).
pub(crate) fn fail_share(cmd: &mut Command, var: &str, reason: &str) {
    cmd.env(var, format!("error;{reason}"));
}

/// Takes the section process `parent` offered to this process under
/// `claim`'s token (`CommandExt::share` to a child): its broker duplicates
/// it into this process now.
pub(crate) fn adopt_inherited(
    _raw: u64,
    parent: u32,
    claim: &Claim,
    origin: &str,
) -> Result<Object> {
    let (hi, lo) = claim.identity.ok_or_else(|| Error::InvalidHandle {
        object: origin.to_owned(),
        reason: "the value carries no token".into(),
    })?;
    let token = (u128::from(hi) << 64) | u128::from(lo);
    let value = broker::claim(parent, token).map_err(|reason| Error::InvalidHandle {
        object: origin.to_owned(),
        reason,
    })?;
    adopt_fresh(value, claim, origin)
}

/// Takes the section process `parent` offered to this very process with
/// `duplicate_into`: the same claim, which the broker checks against this
/// process's id and creation time.
pub(crate) fn adopt_duplicated(
    raw: u64,
    parent: u32,
    claim: &Claim,
    origin: &str,
) -> Result<Object> {
    adopt_inherited(raw, parent, claim, origin)
}

/// Owns the handle `raw` that the offering process's broker has just made
/// in this process for this claim (so nothing else here owns it), after
/// checking it is what `claim` says: an open section handle (not a
/// pseudo-handle, not an event or a file), committed and pagefile-backed,
/// with the claimed access, of the claimed size. A refused handle is
/// closed: it was made for this call and nobody else knows it.
fn adopt_fresh(raw: u64, claim: &Claim, origin: &str) -> Result<Object> {
    let bad = |reason: String| Error::InvalidHandle {
        object: origin.to_owned(),
        reason,
    };
    // Handle values are small multiples of 4; negative ones are the
    // pseudo-handles (-1 is this process, -2 this thread...).
    if raw == 0 || raw > u64::from(u32::MAX) || raw % 4 != 0 {
        return Err(bad(format!(
            "the broker answered {}, which is not a handle value",
            raw as i64
        )));
    }
    let h = raw as usize as HANDLE;
    if !handle::is_open(h) {
        return Err(bad(format!("handle {raw} is not open in this process")));
    }
    // Owned from here on (closed on every error below).
    let handle = Handle::from_raw(h).ok_or_else(|| bad(format!("handle {raw} is not valid")))?;
    let (access, size) = check_section(handle.raw(), raw).map_err(bad)?;
    let can_write = access & SECTION_MAP_WRITE != 0;
    if claim.readonly && can_write {
        return Err(bad(format!(
            "handle {raw} was claimed read-only but grants writing ({access:#x})"
        )));
    }
    if !claim.readonly && !can_write {
        return Err(bad(format!(
            "handle {raw} was claimed writable but is read-only"
        )));
    }
    if claim.len == 0 || claim.len > size || size - claim.len >= page_size() {
        return Err(bad(format!(
            "the section is {size} bytes (whole pages), not the {} that was claimed",
            claim.len
        )));
    }
    Ok(Object {
        len_exact: true,
        sync_id: super::sync_id_of(&handle),
        handle,
        meta: Meta {
            name: claim.name.clone(),
            access: Access::from_writable(!claim.readonly),
            len: claim.len,
        },
        section_len: size,
        created_here: false,
    })
}

/// The id of the process that created `pid` (0 if unknown).
pub(crate) fn parent_of(pid: u32) -> u32 {
    // SAFETY: a snapshot of the process list; closed below.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    let Some(snapshot) = Handle::from_raw(snapshot) else {
        return 0;
    };
    // SAFETY: all-zero is a valid PROCESSENTRY32W; dwSize is set below.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: `entry` is a valid PROCESSENTRY32W with its size set.
    let mut more = unsafe { Process32FirstW(snapshot.raw(), &mut entry) } != 0;
    while more {
        if entry.th32ProcessID == pid {
            return entry.th32ParentProcessID;
        }
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot.raw(), &mut entry) } != 0;
    }
    0
}

/// This process's parent.
pub(crate) fn parent_pid() -> u32 {
    parent_of(std::process::id())
}
