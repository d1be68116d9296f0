//! Step 2: a named segment. The child gets only the name; the name lives
//! while someone holds the segment, and goes with the last holder.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Instant;

use memshare::inspect::NamedLifetime;
use memshare::{Error, Segment};

use super::out::{read_text, Out};
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
        if self.armed && memshare::inspect::named_info(self.name).is_ok() {
            let _ = Segment::remove(self.name);
        }
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
    out.say(format!(
        "Segment::create_named({name:?}, {LEN}): anyone of this user may open /dev/shm/{name}"
    ));
    out.os(format!(
        "shm_open(\"/{name}\", O_CREAT|O_EXCL|O_RDWR, 0600), flock(LOCK_SH), fchmod(0600), \
         fsetxattr(\"user.memshare.lifetime\", \"shared\"), ftruncate({LEN})"
    ));
    // Inspection (/dev/shm, /proc/locks) is Linux's; elsewhere these lines
    // are left out.
    let info = memshare::inspect::named_info(&name).ok();
    let counted = info
        .as_ref()
        .is_some_and(|info| info.lifetime == Some(NamedLifetime::Shared));
    if let Some(info) = &info {
        out.note(format!(
            "mode {:04o}, {} holder; every holder keeps a shared flock on the object",
            info.mode, info.holders
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
    match memshare::inspect::named_info(&name) {
        Ok(info) => {
            out.os("munmap, flock(LOCK_EX|LOCK_NB) → EWOULDBLOCK (someone else holds it), close");
            out.note(format!(
                "the name stays: /dev/shm/{name} has {} holder, the child",
                info.holders
            ));
        }
        Err(Error::NotFound { .. }) if counted => {
            return Err(Failure::other(format!(
                "segment {name:?} vanished while the child still held it"
            )))
        }
        Err(Error::NotFound { .. }) => {
            out.os(format!("munmap, shm_unlink(\"/{name}\"), close"));
            out.note(
                "this file system cannot record lifetimes (tmpfs before Linux 6.6): the creator \
                 removes the name when it lets go, as most POSIX libraries do",
            );
        }
        Err(Error::Unsupported { .. }) => {}
        Err(e) => return Err(e.into()),
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
            out.os(format!("shm_open(\"/{name}\", O_RDWR) → ENOENT"));
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
    out.os(format!(
        "shm_open(\"/{name}\", O_RDWR), fgetxattr(\"user.memshare.lifetime\"), \
         flock(LOCK_SH|LOCK_NB), then a check that the name still leads to what we locked"
    ));
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
    match memshare::inspect::named_info(name) {
        Err(Error::NotFound { .. }) => {
            out.os(format!(
                "munmap, flock(LOCK_EX|LOCK_NB) succeeds (no other holder), \
                 shm_unlink(\"/{name}\"), close"
            ));
            out.note("we were the last holder: the name is gone");
        }
        Ok(info) => out.note(format!(
            "the name is still there ({} holders)",
            info.holders
        )),
        // Cannot look from outside here: the parent's open tells.
        Err(_) => {}
    }
    Ok(())
}
