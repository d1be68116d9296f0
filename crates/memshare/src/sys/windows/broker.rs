//! The broker that gives an offered section to exactly one child.
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
//! 3. The child's `Segment::inherited` connects, sends the token; the
//!    broker asks the pipe for the client's process id, checks that this
//!    process is its parent, `DuplicateHandle`s the section into exactly
//!    that process and answers with the handle's value there. The offer is
//!    then gone: a token works once.
//!
//! A child that never asks leaves its offer (one handle) in the parent
//! until the parent exits.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, GENERIC_READ, GENERIC_WRITE,
    HANDLE,
};
use windows_sys::Win32::Security::Cryptography::{
    BCryptGenRandom, BCRYPT_USE_SYSTEM_PREFERRED_RNG,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FlushFileBuffers, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE,
    OPEN_EXISTING, PIPE_ACCESS_DUPLEX,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, GetNamedPipeClientProcessId,
    WaitNamedPipeW, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE};

use super::handle::{self, Handle};
use super::last_error;
use super::security::Descriptor;
use super::share::parent_of;

/// The longest answer, in bytes.
const MAX_ANSWER: usize = 512;

/// A section waiting for its child, with the access to give it.
struct Offer {
    handle: Handle,
    access: u32,
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

/// Registers `handle` under a new token and returns the token.
pub(crate) fn offer(handle: Handle, access: u32) -> Result<u128, String> {
    let broker = BROKER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let token = random_token()?;
    broker
        .offers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token, Offer { handle, access });
    Ok(token)
}

fn random_token() -> Result<u128, String> {
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

/// Creates the pipe and starts the thread that serves it.
fn start() -> Result<Broker, String> {
    let descriptor = Descriptor::current_user_only()
        .map_err(|code| format!("the broker pipe's security descriptor: error {code}"))?;
    let name = pipe_name(std::process::id());
    // SAFETY: `name` is NUL-terminated and the attributes outlive the call.
    let pipe = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            MAX_ANSWER as u32,
            64,
            0,
            descriptor.attributes(),
        )
    };
    let pipe = Handle::from_raw(pipe).ok_or_else(|| {
        format!(
            "cannot create the broker pipe memshare-broker-{} (error {}): another program holds the name",
            std::process::id(),
            last_error()
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

/// Answers one child after another, for the life of the process.
fn serve(pipe: Handle) {
    loop {
        // SAFETY: a pipe handle this thread owns; synchronous (no OVERLAPPED).
        let connected = unsafe { ConnectNamedPipe(pipe.raw(), std::ptr::null_mut()) } != 0
            || last_error() == ERROR_PIPE_CONNECTED;
        if connected {
            let answer = match read_token(pipe.raw()) {
                Ok(token) => grant(pipe.raw(), token),
                Err(e) => Err(e),
            };
            let text = match answer {
                Ok(value) => format!("ok {value}"),
                Err(reason) => format!("err {reason}"),
            };
            let mut text = text.into_bytes();
            text.truncate(MAX_ANSWER - 1);
            text.push(b'\n');
            if write_all(pipe.raw(), &text).is_ok() {
                // Disconnecting discards what the client has not read yet
                // (and Wine's FlushFileBuffers does not wait for it), so
                // wait for the client to close its end after reading the
                // line: the read fails with ERROR_BROKEN_PIPE then.
                // SAFETY: as above.
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
        }
        // SAFETY: as above.
        unsafe { DisconnectNamedPipe(pipe.raw()) };
    }
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

/// Gives the offer `token` to the client of `pipe`, if it is our child.
fn grant(pipe: HANDLE, token: u128) -> Result<u64, String> {
    let mut pid = 0u32;
    // SAFETY: a connected pipe; `pid` is a valid place for the result.
    if unsafe { GetNamedPipeClientProcessId(pipe, &mut pid) } == 0 {
        return Err(format!("cannot tell who asked (error {})", last_error()));
    }
    let me = std::process::id();
    let mut offers = BROKER
        .get()
        .and_then(|b| b.as_ref().ok())
        .ok_or("the broker is not running")?
        .offers
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let Some(offer) = offers.get(&token) else {
        return Err(format!(
            "process {me} has no segment under this token: it was taken already (a token works once), or never offered"
        ));
    };
    let parent = parent_of(pid);
    if parent != me {
        return Err(format!(
            "the segment was offered to a child of process {me}, and process {pid} is a child of {parent}"
        ));
    }
    // SAFETY: opens the child for duplicating handles into it; `Handle`
    // closes it.
    let child = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
    let child = Handle::from_raw(child)
        .ok_or_else(|| format!("cannot open process {pid} (error {})", last_error()))?;
    // SAFETY: the current-process pseudo-handle.
    let here = unsafe { GetCurrentProcess() };
    let value = handle::duplicate_raw(here, offer.handle.raw(), child.raw(), offer.access)
        .map_err(|code| format!("DuplicateHandle into process {pid} failed (error {code})"))?;
    offers.remove(&token);
    Ok(value as usize as u64)
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
/// handle's value in this process.
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
                0,
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
