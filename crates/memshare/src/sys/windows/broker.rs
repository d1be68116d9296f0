//! The broker that gives an offered section to exactly one process: a
//! child (`CommandExt::share`) or a running process (`duplicate_into`).
//!
//! std's `Command` on Windows spawns with `bInheritHandles = TRUE` and has no
//! hook around the spawn, so an inheritable handle would leak into every
//! child spawned at that moment by any thread. memshare keeps every handle
//! non-inheritable instead, and the child *asks* for its section:
//!
//! 1. `CommandExt::share` duplicates the handle (not inheritable) and
//!    registers it here under a random 128-bit token; the token is in the
//!    child's environment value only.
//! 2. The first offer starts one thread serving the named pipe
//!    `\\.\pipe\memshare-broker-<pid>` (created first-instance-only, local
//!    clients only, this user only).
//! 3. The child's `Segment::inherited` connects (asking the pipe's server
//!    for identification only, and checking that the server is the process
//!    named in its value), sends the token; the broker asks the pipe for
//!    the client's process id, checks that it is the recipient of the
//!    offer (a direct child created after the offer; or, for
//!    `duplicate_into`, the one process with that id and creation time),
//!    `DuplicateHandle`s the section into exactly that process and answers
//!    with the handle's value there. The offer is then gone: a token works
//!    once. Every connection is served by a thread of its own, so a client
//!    that stalls holds up nobody else.
//!
//! Since the handle is made for the claimant at the moment it claims, the
//! value it receives is a fresh handle that nothing else in it owns.
//! A recipient that never asks leaves its offer (one handle) in the
//! offering process until that process exits.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, FILETIME, GENERIC_READ,
    GENERIC_WRITE, HANDLE,
};
use windows_sys::Win32::Security::Cryptography::{
    BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FlushFileBuffers, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE,
    OPEN_EXISTING, PIPE_ACCESS_DUPLEX, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, GetNamedPipeClientProcessId,
    GetNamedPipeServerProcessId, WaitNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS,
    PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::SystemInformation::GetSystemTimeAsFileTime;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessTimes, OpenProcess, PROCESS_DUP_HANDLE,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::handle::{self, Handle};
use super::last_error;
use super::security::Descriptor;
use super::share::parent_of;

/// The longest answer, in bytes.
const MAX_ANSWER: usize = 512;

/// Who may claim an offer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Recipient {
    /// A direct child of this process, created at or after `offered_at`
    /// (a FILETIME): the child a `Command` spawns.
    Child { offered_at: u64 },
    /// Exactly the process with this id and creation time (a FILETIME).
    Process { pid: u32, created: u64 },
}

/// A section waiting for its recipient, with the access to give it.
struct Offer {
    handle: Handle,
    access: u32,
    to: Recipient,
}

/// This process's broker: its offers, and whether its thread runs.
struct Broker {
    offers: Mutex<HashMap<u128, Offer>>,
}

static BROKER: OnceLock<Result<Broker, String>> = OnceLock::new();

fn pipe_name(pid: u32) -> Vec<u16> {
    format!("\\\\.\\pipe\\memshare-broker-{pid}")
        .encode_utf16()
        .chain(Some(0))
        .collect()
}

/// Registers `handle` for `to` under a new token and returns the token.
pub(crate) fn offer(handle: Handle, access: u32, to: Recipient) -> Result<u128, String> {
    let broker = BROKER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let token = random_token()?;
    broker
        .offers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token, Offer { handle, access, to });
    Ok(token)
}

/// 128 random bits from the system's generator.
pub(super) fn random_token() -> Result<u128, String> {
    let mut bytes = [0u8; 16];
    // SAFETY: `bytes` is writable and of the length passed.
    let status = unsafe {
        BCryptGenRandom(
            std::ptr::null_mut(),
            bytes.as_mut_ptr(),
            bytes.len() as u32,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    if status < 0 {
        return Err(format!("BCryptGenRandom failed ({status:#x})"));
    }
    Ok(u128::from_le_bytes(bytes))
}

/// Creates one instance of this process's broker pipe (the first one with
/// `FILE_FLAG_FIRST_PIPE_INSTANCE`, so that a name someone else created is
/// refused, not joined).
fn create_instance(first: bool) -> Result<Handle, u32> {
    let descriptor = Descriptor::current_user_only()?;
    let name = pipe_name(std::process::id());
    let mut open_mode = PIPE_ACCESS_DUPLEX;
    if first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    // SAFETY: `name` is NUL-terminated and the attributes outlive the call.
    let pipe = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            open_mode,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            MAX_ANSWER as u32,
            64,
            0,
            descriptor.attributes(),
        )
    };
    Handle::from_raw(pipe).ok_or_else(last_error)
}

/// Creates the pipe and starts the thread that serves it.
fn start() -> Result<Broker, String> {
    let pipe = create_instance(true).map_err(|code| {
        format!(
            "cannot create the broker pipe memshare-broker-{} (error {code}): another program holds the name",
            std::process::id()
        )
    })?;
    std::thread::Builder::new()
        .name("memshare-broker".into())
        .spawn(move || serve(pipe))
        .map_err(|e| format!("cannot start the broker thread: {e}"))?;
    Ok(Broker {
        offers: Mutex::new(HashMap::new()),
    })
}

/// Waits for clients, for the life of the process; each connected client
/// is answered by a thread of its own while the next instance waits.
fn serve(mut pipe: Handle) {
    loop {
        // SAFETY: a pipe handle this thread owns; synchronous (no OVERLAPPED).
        let connected = unsafe { ConnectNamedPipe(pipe.raw(), std::ptr::null_mut()) } != 0
            || last_error() == ERROR_PIPE_CONNECTED;
        if !connected {
            // SAFETY: as above.
            unsafe { DisconnectNamedPipe(pipe.raw()) };
            continue;
        }
        let next = loop {
            match create_instance(false) {
                Ok(next) => break next,
                // Out of instances (clients that stall): try again soon.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let client = std::mem::replace(&mut pipe, next);
        let spawned = std::thread::Builder::new()
            .name("memshare-broker-client".into())
            .spawn(move || answer(client));
        // Without a thread, the client's pipe was dropped (closed): it sees
        // the broker hang up and says so.
        drop(spawned);
    }
}

/// Reads one request from a connected client, answers it, and waits for
/// the client to hang up.
fn answer(pipe: Handle) {
    let answer = read_token(pipe.raw()).and_then(|token| grant(pipe.raw(), token));
    let text = match answer {
        Ok(value) => format!("ok {value}"),
        Err(reason) => format!("err {reason}"),
    };
    let mut text = text.into_bytes();
    text.truncate(MAX_ANSWER - 1);
    text.push(b'\n');
    if write_all(pipe.raw(), &text).is_ok() {
        // Closing discards what the client has not read yet (and Wine's
        // FlushFileBuffers does not wait for it), so wait for the client to
        // close its end after reading the line: the read fails then.
        // SAFETY: a pipe handle this thread owns; synchronous calls.
        unsafe { FlushFileBuffers(pipe.raw()) };
        let mut byte = [0u8; 1];
        let mut n = 0u32;
        // SAFETY: `byte` is writable; synchronous read.
        unsafe {
            ReadFile(
                pipe.raw(),
                byte.as_mut_ptr(),
                1,
                &mut n,
                std::ptr::null_mut(),
            )
        };
    }
    // SAFETY: as above.
    unsafe { DisconnectNamedPipe(pipe.raw()) };
}

fn read_token(pipe: HANDLE) -> Result<u128, String> {
    let mut bytes = [0u8; 16];
    let mut have = 0;
    while have < bytes.len() {
        let mut n = 0u32;
        // SAFETY: the rest of `bytes` is writable; synchronous read.
        let ok = unsafe {
            ReadFile(
                pipe,
                bytes[have..].as_mut_ptr(),
                (bytes.len() - have) as u32,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || n == 0 {
            return Err("the request was cut short".into());
        }
        have += n as usize;
    }
    Ok(u128::from_le_bytes(bytes))
}

/// Gives the offer `token` to the client of `pipe`, if it is the offer's
/// recipient.
fn grant(pipe: HANDLE, token: u128) -> Result<u64, String> {
    let mut pid = 0u32;
    // SAFETY: a connected pipe; `pid` is a valid place for the result.
    if unsafe { GetNamedPipeClientProcessId(pipe, &mut pid) } == 0 {
        return Err(format!("cannot tell who asked (error {})", last_error()));
    }
    let me = std::process::id();
    let broker = BROKER
        .get()
        .and_then(|b| b.as_ref().ok())
        .ok_or("the broker is not running")?;
    // Look the offer up without holding the lock across system calls.
    let (to, access) = {
        let offers = broker.offers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(offer) = offers.get(&token) else {
            return Err(format!(
                "process {me} has no segment under this token: it was taken already (a token works once), or never offered"
            ));
        };
        (offer.to, offer.access)
    };
    // SAFETY: opens the client to check its age and to duplicate into it;
    // `Handle` closes it.
    let client = unsafe {
        OpenProcess(
            PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    };
    let client = Handle::from_raw(client)
        .ok_or_else(|| format!("cannot open process {pid} (error {})", last_error()))?;
    let created = creation_time(client.raw())
        .map_err(|code| format!("cannot tell when process {pid} started (error {code})"))?;
    match to {
        Recipient::Child { offered_at } => {
            let parent = parent_of(pid);
            if parent != me {
                return Err(format!(
                    "the segment was offered to a child of process {me}, and process {pid} is a child of {parent}"
                ));
            }
            // A process that has our id as its recorded parent but is older
            // than the offer is not the child it was made for (a leftover
            // child of an earlier process with our id).
            if created < offered_at {
                return Err(format!(
                    "process {pid} started before the segment was offered: not the child it was offered to"
                ));
            }
        }
        Recipient::Process {
            pid: wanted,
            created: wanted_created,
        } => {
            if pid != wanted || created != wanted_created {
                return Err(format!(
                    "the segment was offered to process {wanted}, and process {pid} asked"
                ));
            }
        }
    }
    let mut offers = broker.offers.lock().unwrap_or_else(|e| e.into_inner());
    // Taken out of the table first: of two concurrent claims, one wins.
    let Some(offer) = offers.remove(&token) else {
        return Err("the segment was taken meanwhile (a token works once)".into());
    };
    drop(offers);
    // SAFETY: the current-process pseudo-handle.
    let here = unsafe { GetCurrentProcess() };
    let value = handle::duplicate_raw(here, offer.handle.raw(), client.raw(), access)
        .map_err(|code| format!("DuplicateHandle into process {pid} failed (error {code})"))?;
    Ok(value as usize as u64)
}

/// When process `process` started, as a FILETIME.
pub(crate) fn creation_time(process: HANDLE) -> Result<u64, u32> {
    let (mut created, mut exited, mut kernel, mut user) =
        (ZERO_TIME, ZERO_TIME, ZERO_TIME, ZERO_TIME);
    // SAFETY: a process handle with query access; four valid FILETIMEs.
    let ok = unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(ticks(created))
}

/// Now, as a FILETIME.
pub(crate) fn now() -> u64 {
    let mut t = ZERO_TIME;
    // SAFETY: `t` is a valid FILETIME.
    unsafe { GetSystemTimeAsFileTime(&mut t) };
    ticks(t)
}

const ZERO_TIME: FILETIME = FILETIME {
    dwLowDateTime: 0,
    dwHighDateTime: 0,
};

fn ticks(t: FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

fn write_all(pipe: HANDLE, mut bytes: &[u8]) -> Result<(), u32> {
    while !bytes.is_empty() {
        let mut n = 0u32;
        // SAFETY: `bytes` is readable; synchronous write.
        let ok = unsafe {
            WriteFile(
                pipe,
                bytes.as_ptr(),
                bytes.len() as u32,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Asks the broker of process `parent` for the offer `token`; returns the
/// handle's value in this process: a handle made for this claim, owned by
/// nothing else here (the pipe's server is checked to be `parent`).
pub(crate) fn claim(parent: u32, token: u128) -> Result<u64, String> {
    let name = pipe_name(parent);
    let deadline = Instant::now() + Duration::from_secs(10);
    let pipe = loop {
        // SAFETY: `name` is NUL-terminated; the handle is owned below.
        let raw = unsafe {
            CreateFileW(
                name.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                0,
                std::ptr::null(),
                OPEN_EXISTING,
                // The server may identify us, never act as us.
                SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                std::ptr::null_mut(),
            )
        };
        if let Some(pipe) = Handle::from_raw(raw) {
            break pipe;
        }
        match last_error() {
            ERROR_PIPE_BUSY if Instant::now() < deadline => {
                // SAFETY: `name` is NUL-terminated.
                unsafe { WaitNamedPipeW(name.as_ptr(), 1000) };
            }
            ERROR_FILE_NOT_FOUND => {
                return Err(format!(
                    "process {parent} offers no segments: it has exited, or never shared one"
                ))
            }
            code => {
                return Err(format!(
                    "cannot reach process {parent}'s broker (error {code})"
                ))
            }
        }
    };
    let mut server = 0u32;
    // SAFETY: a connected pipe; `server` is a valid place for the result.
    if unsafe { GetNamedPipeServerProcessId(pipe.raw(), &mut server) } == 0 {
        return Err(format!(
            "cannot tell who serves process {parent}'s broker pipe (error {})",
            last_error()
        ));
    }
    if server != parent {
        return Err(format!(
            "the pipe memshare-broker-{parent} is served by process {server}, not {parent}: refused"
        ));
    }
    write_all(pipe.raw(), &token.to_le_bytes())
        .map_err(|code| format!("cannot ask process {parent}'s broker (error {code})"))?;
    // One line, at most MAX_ANSWER bytes; closing our end (dropping
    // `pipe`) tells the broker we have it.
    let mut answer = Vec::with_capacity(MAX_ANSWER);
    let mut buf = [0u8; MAX_ANSWER];
    while !answer.ends_with(b"\n") {
        let mut n = 0u32;
        // SAFETY: `buf` is writable; synchronous read.
        let ok = unsafe {
            ReadFile(
                pipe.raw(),
                buf.as_mut_ptr(),
                buf.len() as u32,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || n == 0 {
            let code = last_error();
            return Err(format!(
                "process {parent}'s broker hung up without answering (error {code})"
            ));
        }
        answer.extend_from_slice(&buf[..n as usize]);
        if answer.len() > MAX_ANSWER {
            return Err(format!("process {parent}'s broker answered too much"));
        }
    }
    drop(pipe);
    answer.pop();
    let text = String::from_utf8_lossy(&answer);
    if let Some(value) = text.strip_prefix("ok ") {
        value
            .parse()
            .map_err(|_| format!("process {parent}'s broker answered {text:?}"))
    } else if let Some(reason) = text.strip_prefix("err ") {
        Err(reason.to_owned())
    } else {
        Err(format!("process {parent}'s broker answered {text:?}"))
    }
}
