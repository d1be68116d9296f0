//! Step 1: an anonymous segment, given to exactly one child
//! (`CommandExt::share` in the parent, `Segment::inherited` in the child).

use memshare::{CommandExt, Segment};

use super::out::{
    fd_target, handle_number, handle_text, is_cloexec, open_descriptors, read_text, Out, LINUX,
    WINDOWS,
};
use super::peer::{self, Peer};
use crate::fail::Failure;

/// The key the segment is shared under.
const KEY: &str = "greeting";
/// The segment's size.
const LEN: u64 = 4096;
/// Where the child writes its reply.
const REPLY_AT: usize = 1024;

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    let segment = Segment::create(LEN)?;
    let fd = handle_number(&segment);
    out.say(format!(
        "Segment::create({LEN}): an anonymous segment, no name anywhere; our {}{}",
        handle_text(&segment),
        target_suffix(fd)
    ));
    if WINDOWS {
        out.os(format!(
            "CreateFileMappingW(INVALID_HANDLE_VALUE, empty DACL, PAGE_READWRITE|SEC_COMMIT, 0, \
             {LEN}, \"Local\\memshare-anon.<128 random bits>\"), DuplicateHandle to \
             SECTION_MAP_READ|SECTION_MAP_WRITE|SECTION_QUERY"
        ));
        out.note(
            "nobody may open that kernel name (the DACL grants nothing); it only names the \
             events and mutexes of channels in it",
        );
    } else if LINUX {
        out.os(format!(
            "memfd_create(\"memshare\", MFD_CLOEXEC|MFD_ALLOW_SEALING), ftruncate({LEN}), \
             fcntl(F_ADD_SEALS, F_SEAL_SHRINK|F_SEAL_GROW)"
        ));
        out.note("sealed: nobody can shrink it under someone else's view (SIGBUS) or grow it");
    } else {
        out.os(format!(
            "shm_open of a random name, shm_unlink at once, ftruncate({LEN})"
        ));
    }

    let view = segment.map(..)?;
    let message = format!("Hello from the parent, pid {}", std::process::id());
    view.write_at(0, message.as_bytes())?;
    out.say(format!("map(..), then write {message:?} at offset 0"));
    out.os(if WINDOWS {
        format!("MapViewOfFile({fd:#x}, FILE_MAP_READ|FILE_MAP_WRITE, 0, 0, {LEN})")
    } else {
        format!("mmap(NULL, {LEN}, PROT_READ|PROT_WRITE, MAP_SHARED, {fd}, 0)")
    });

    let mut cmd = peer::command(1)?;
    cmd.share(KEY, &segment);
    let var = memshare::share::inherit_env_var(KEY)?;
    let value = cmd
        .get_envs()
        .find(|(k, _)| *k == var.as_str())
        .and_then(|(_, v)| v)
        .map(|v| v.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::other(format!("cmd.share did not set {var}")))?;
    out.say(format!(
        "start `memshare demo-peer 1` with cmd.share({KEY:?}, &segment); its environment gets"
    ));
    out.say(format!("    {var}={value}"));
    out.os(if WINDOWS {
        "DuplicateHandle (not inheritable) into an offer of this process's broker, under a \
         random token; CreateProcessW: the child claims it over \\\\.\\pipe\\memshare-broker-<pid>"
    } else {
        "fcntl(F_DUPFD_CLOEXEC): a copy for the child; fork; in the child only: \
         fcntl(copy, F_SETFD, 0), execve"
    });
    let child = Peer::spawn(&mut cmd)?;
    // The command kept the copy open for the child; the child has it now.
    drop(cmd);
    child.wait()?;

    let reply = read_text(&view, REPLY_AT)?;
    if reply.is_empty() {
        return Err(Failure::other("the child exited without writing its reply"));
    }
    out.say(format!(
        "the child exited; read its reply at offset {REPLY_AT}: {reply:?}"
    ));
    if WINDOWS {
        out.say(format!(
            "our handle {fd:#x} is not inheritable, and the broker gave the section to that one \
             child (its pid and creation time): any other child, even one started by another \
             thread at the same moment, gets nothing"
        ));
    }
    if let Some(true) = is_cloexec(fd) {
        out.say(format!(
            "our own descriptor {fd} is close-on-exec (O_CLOEXEC in /proc/self/fdinfo/{fd}): \
             any other child, even one started by another thread at the same moment, gets nothing"
        ));
    }
    Ok(())
}

pub(super) fn child(out: &Out) -> Result<(), Failure> {
    let segment = Segment::inherited(KEY)?;
    let fd = handle_number(&segment);
    out.say(format!(
        "pid {}: Segment::inherited({KEY:?}) took {}{}",
        std::process::id(),
        handle_text(&segment),
        target_suffix(fd)
    ));
    if WINDOWS {
        out.os(format!(
            "GetEnvironmentVariableW({}), CreateFileW of the parent's broker pipe \
             (GetNamedPipeServerProcessId: the parent), the token sent; the broker \
             DuplicateHandles the section into exactly this process; checked: NtQueryObject \
             (a Section), NtQuerySection (its size, committed)",
            memshare::share::inherit_env_var(KEY)?
        ));
    } else {
        out.os(format!(
            "getenv({}), getppid (the value names our parent), fstat + fstatfs (a shared-memory \
             object of that identity and size){}, fcntl(F_SETFD, FD_CLOEXEC)",
            memshare::share::inherit_env_var(KEY)?,
            if LINUX { ", fcntl(F_GET_SEALS)" } else { "" }
        ));
    }

    let view = segment.map(..)?;
    let message = read_text(&view, 0)?;
    out.say(format!("map(..), read {message:?}"));
    let reply = format!("Hello back from the child, pid {}", std::process::id());
    view.write_at(REPLY_AT, reply.as_bytes())?;
    out.say(format!("wrote the reply {reply:?} at offset {REPLY_AT}"));

    if let Some(fds) = open_descriptors() {
        let others: Vec<String> = fds
            .iter()
            .filter(|(n, _)| *n > 2)
            .map(|(n, target)| {
                let what = if *n == fd { ", the segment" } else { "" };
                format!("{n} ({target}{what})")
            })
            .collect();
        out.say(format!(
            "descriptors open in this process: 0 1 2 (standard streams), {}",
            others.join(", ")
        ));
        if others.len() == 1 {
            out.note("apart from the standard streams, the segment is all the parent passed on");
        } else {
            out.note(
                "the others came from whatever started `memshare demo`: \
                 it left them open without close-on-exec",
            );
        }
    }
    out.say(if WINDOWS {
        "exit: the kernel closes the handle and unmaps the view"
    } else {
        "exit: the kernel closes the descriptor and unmaps the view"
    });
    Ok(())
}

/// ` (/memfd:memshare (deleted))`: what the descriptor is, where `/proc` says.
fn target_suffix(fd: i64) -> String {
    fd_target(fd).map_or_else(String::new, |t| format!(" → {t}"))
}
