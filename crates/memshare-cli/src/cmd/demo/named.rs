//! Step 2: a named segment. The child gets only the name; the name lives
//! while someone holds the segment, and goes with the last holder.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Instant;

use memshare::{Error, Segment};

use super::out::{read_text, Out, WINDOWS};
use super::peer::{self, Peer, POLL, TIMEOUT};
use crate::fail::Failure;

/// The segment's size.
const LEN: u64 = 4096;
/// Where the child writes its reply.
const REPLY_AT: usize = 1024;
/// A word the child sets to 1 once its reply is written.
const REPLIED_AT: usize = 2048;

/// Removes the name if the step fails half-way, once everything declared
/// after it (our handle, the peer, killed) is gone; on success the name is
/// gone already.
pub(super) struct NameGuard<'a> {
    // (Windows: nothing to remove, a name goes with its last holder.)
    #[cfg_attr(not(unix), allow(dead_code))]
    name: &'a str,
    armed: bool,
}

impl<'a> NameGuard<'a> {
    /// A guard for `name`, which does nothing until armed.
    pub(super) fn new(name: &'a str) -> NameGuard<'a> {
        NameGuard { name, armed: false }
    }

    /// Call once the name exists: from now on it is ours to remove.
    pub(super) fn arm(&mut self) {
        self.armed = true;
    }
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        // (Windows: a name goes with its last holder, nothing to remove.)
        #[cfg(unix)]
        if self.armed && memshare::inspect::named_info(self.name).is_ok() {
            let _ = Segment::remove(self.name);
        }
    }
}

/// What inspection says of the name: its mode, its holders, whether its
/// lifetime is counted. `None` where the machine's names cannot be
/// inspected (not Unix) or the name is not there.
fn look(name: &str) -> Option<(u32, u64, bool)> {
    #[cfg(unix)]
    {
        use memshare::inspect::NamedLifetime;
        let info = memshare::inspect::named_info(name).ok()?;
        Some((
            info.mode,
            info.holders as u64,
            info.lifetime == Some(NamedLifetime::Shared),
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        None
    }
}

/// Whether the name is there, as inspection says: `None` where it cannot
/// say (not Unix).
fn still_named(name: &str) -> Option<Result<Option<u64>, Error>> {
    #[cfg(unix)]
    {
        Some(match memshare::inspect::named_info(name) {
            Ok(info) => Ok(Some(info.holders as u64)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(Error::Unsupported { .. }) => return None,
            Err(e) => Err(e),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        None
    }
}

/// The step's segment name: the demo's prefix and this process's id.
pub(super) fn segment_name() -> String {
    format!("memshare-demo-{}", std::process::id())
}

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    let name = segment_name();
    let mut guard = NameGuard::new(&name);
    let segment = Segment::create_named(&name, LEN)?;
    guard.arm();
    if WINDOWS {
        out.say(format!(
            "Segment::create_named({name:?}, {LEN}): anyone of this user may open \
             Local\\memshare.{name}"
        ));
        out.os(format!(
            "CreateFileMappingW(INVALID_HANDLE_VALUE, D:P(A;;GA;;;<your SID>), \
             PAGE_READWRITE|SEC_COMMIT, 0, {LEN}, \"Local\\memshare.{name}\") → not \
             ERROR_ALREADY_EXISTS"
        ));
        out.note("the kernel counts the handles and views; the name goes with the last one");
    } else {
        out.say(format!(
            "Segment::create_named({name:?}, {LEN}): anyone of this user may open /dev/shm/{name}"
        ));
        out.os(format!(
            "shm_open(\"/{name}\", O_CREAT|O_EXCL|O_RDWR, 0600), flock(LOCK_SH), fchmod(0600), \
             fsetxattr(\"user.memshare.lifetime\", \"shared\"), ftruncate({LEN})"
        ));
    }
    // Inspection (/dev/shm, /proc/locks) is Linux's; elsewhere these lines
    // are left out.
    let info = look(&name);
    let counted = info.is_some_and(|(_, _, counted)| counted);
    if let Some((mode, holders, _)) = info {
        out.note(format!(
            "mode {mode:04o}, {holders} holder; every holder keeps a shared flock on the object"
        ));
    }

    let view = segment.map(..)?;
    let message = format!("Hello by name, from pid {}", std::process::id());
    view.write_at(0, message.as_bytes())?;
    out.say(format!("map(..), write {message:?}"));
    out.say(format!(
        "start `memshare demo-peer 2 --name {name}`: it gets the name and nothing else"
    ));
    let mut cmd = peer::command(2)?;
    cmd.arg("--name").arg(&name).stdin(Stdio::piped());
    let mut child = Peer::spawn(&mut cmd)?;
    let go_on = child.take_stdin();

    let replied = view.atomic_u32(REPLIED_AT)?;
    let deadline = Instant::now() + TIMEOUT;
    while replied.load(Ordering::Acquire) != 1 {
        child.check_running()?;
        if Instant::now() > deadline {
            return Err(Failure::other(format!(
                "no reply from the peer (pid {}) within {} s",
                child.pid(),
                TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
    let reply = read_text(&view, REPLY_AT)?;
    out.say(format!(
        "the word at offset {REPLIED_AT} turned 1 (an Acquire load); read the reply: {reply:?}"
    ));
    #[cfg(unix)]
    if let Ok(info) = memshare::inspect::named_info(&name) {
        let pids = memshare::inspect::holder_pids(&name).unwrap_or_default();
        out.say(format!(
            "holders now: {} (processes with it open: {}), as `memshare info {name}` shows",
            info.holders,
            pids.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.note("counted from the FLOCK entries of /proc/locks; pids from /proc/*/fd");
    }

    drop(view);
    drop(segment);
    out.say("drop our view and our handle: the creator is gone");
    match still_named(&name) {
        Some(Ok(Some(holders))) => {
            out.os("munmap, flock(LOCK_EX|LOCK_NB) → EWOULDBLOCK (someone else holds it), close");
            out.note(format!(
                "the name stays: /dev/shm/{name} has {holders} holder, the child"
            ));
        }
        Some(Ok(None)) if counted => {
            return Err(Failure::other(format!(
                "segment {name:?} vanished while the child still held it"
            )))
        }
        Some(Ok(None)) => {
            out.os(format!("munmap, shm_unlink(\"/{name}\"), close"));
            out.note(
                "this file system cannot record lifetimes (tmpfs before Linux 6.6): the creator \
                 removes the name when it lets go, as most POSIX libraries do",
            );
        }
        Some(Err(e)) => return Err(e.into()),
        None if WINDOWS => {
            out.os(
                "UnmapViewOfFile, CloseHandle: the child's handle keeps the section and its name",
            );
        }
        None => {}
    }

    out.say("close the child's standard input: its cue to let go too");
    drop(go_on);
    child.wait()?;

    match Segment::open(&name) {
        Err(Error::NotFound { .. }) => {
            out.say(format!(
                "Segment::open({name:?}) → NotFound: the name went with its last holder, \
                 as a Windows name goes with its last handle"
            ));
            out.os(if WINDOWS {
                format!(
                    "OpenFileMappingW(\"Local\\memshare.{name}\"), then Global\\ → \
                     ERROR_FILE_NOT_FOUND"
                )
            } else {
                format!("shm_open(\"/{name}\", O_RDWR) → ENOENT")
            });
            Ok(())
        }
        Ok(_) => Err(Failure::other(format!(
            "segment {name:?} outlived every holder"
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn child(out: &Out, name: Option<&str>) -> Result<(), Failure> {
    let name = name.ok_or_else(|| Failure::usage("demo-peer 2 needs --name"))?;
    let segment = Segment::open(name)?;
    out.say(format!(
        "pid {}: Segment::open({name:?}): one more holder",
        std::process::id()
    ));
    out.os(if WINDOWS {
        format!(
            "OpenFileMappingW(SECTION_MAP_READ|SECTION_MAP_WRITE|SECTION_QUERY, \
             \"Local\\memshare.{name}\"), NtQuerySection (its size, in whole pages)"
        )
    } else {
        format!(
            "shm_open(\"/{name}\", O_RDWR), fgetxattr(\"user.memshare.lifetime\"), \
             flock(LOCK_SH|LOCK_NB), then a check that the name still leads to what we locked"
        )
    });
    let view = segment.map(..)?;
    let message = read_text(&view, 0)?;
    out.say(format!("map(..), read {message:?}"));
    let reply = format!("Got it by name, pid {}", std::process::id());
    view.write_at(REPLY_AT, reply.as_bytes())?;
    out.say(format!(
        "wrote the reply {reply:?}, set the word at offset {REPLIED_AT} to 1 (a Release store); \
         holding on until told"
    ));
    view.atomic_u32(REPLIED_AT)?.store(1, Ordering::Release);

    // Wait for the parent's cue: our standard input closes (also if the
    // parent dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(view);
    drop(segment);
    out.say("standard input closed: drop the view and the handle");
    match still_named(name) {
        Some(Ok(None)) => {
            out.os(format!(
                "munmap, flock(LOCK_EX|LOCK_NB) succeeds (no other holder), \
                 shm_unlink(\"/{name}\"), close"
            ));
            out.note("we were the last holder: the name is gone");
        }
        Some(Ok(Some(holders))) => out.note(format!("the name is still there ({holders} holders)")),
        None if WINDOWS => {
            out.os("UnmapViewOfFile, CloseHandle: the last handle, so the kernel drops the name");
        }
        // Cannot look from outside here: the parent's open tells.
        _ => {}
    }
    Ok(())
}
