//! Step 3 on Windows: handles given to a process that was already running
//! (`Segment::duplicate_into`: the broker `DuplicateHandle`s each section
//! into exactly that process), one of them read-only (`to_readonly`: a
//! `SECTION_MAP_READ` handle that cannot be duplicated back to write
//! access). The values travel on the peer's standard input; the peer
//! claims them with `Segment::inherited_from`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Instant;

use memshare::{Error, Segment};

use super::out::{handle_text, io_failure, read_text, Out};
use super::peer::{self, Peer, POLL, TIMEOUT};
use crate::fail::Failure;

/// Each segment's size.
const LEN: u64 = 4096;
/// Where the peer writes its reply in the "data" segment.
const REPLY_AT: usize = 1024;
/// A word of "data" the peer sets to 1 once it is done.
const DONE_AT: usize = 2048;

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    out.say(
        "start `memshare demo-peer 3` first: a process that knows nothing of our segments \
         (its standard input is a pipe from us)",
    );
    let mut cmd = peer::command(3)?;
    cmd.stdin(Stdio::piped());
    let mut peer = Peer::spawn(&mut cmd)?;
    let mut stdin = peer
        .take_stdin()
        .ok_or_else(|| Failure::other("the peer's standard input is not a pipe"))?;

    let data = Segment::create(LEN)?;
    let data_view = data.map(..)?;
    let message = format!("Data from pid {}", std::process::id());
    data_view.write_at(0, message.as_bytes())?;
    out.say(format!(
        "Segment::create({LEN}) \"data\", map it, write {message:?}"
    ));
    let config = Segment::create(LEN)?;
    let config_text = "threshold=42 (read-only for you)";
    config.map(..)?.write_at(0, config_text.as_bytes())?;
    out.say(format!(
        "Segment::create({LEN}) \"config\", write {config_text:?}, then to_readonly()"
    ));
    let readonly = config.to_readonly()?;
    out.os(
        "DuplicateHandle(…, SECTION_MAP_READ|SECTION_QUERY): a read-only handle; the section's \
         empty DACL refuses any duplication that asks for more",
    );

    out.say(format!(
        "duplicate_into(the peer's process, pid {}) for each: two values for it to claim",
        peer.pid()
    ));
    out.os(
        "DuplicateHandle into an offer of this process's broker under a random token, for \
         exactly that process (its id and creation time)",
    );
    let values = [
        ("data", data.duplicate_into(peer.process())?),
        ("config", readonly.duplicate_into(peer.process())?),
    ];
    // Said before writing: from then on the peer talks, and we wait.
    out.say("write the two values to the peer's standard input, one line each");
    for (key, value) in &values {
        writeln!(stdin, "{key} {value}")
            .and_then(|()| stdin.flush())
            .map_err(|e| peer.explain(io_failure("writing to the peer", e)))?;
    }

    let done = data_view.atomic_u32(DONE_AT)?;
    let deadline = Instant::now() + TIMEOUT;
    while done.load(Ordering::Acquire) != 1 {
        peer.check_running()?;
        if Instant::now() > deadline {
            return Err(Failure::other(format!(
                "no answer from the peer (pid {}) within {} s",
                peer.pid(),
                TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
    let reply = read_text(&data_view, REPLY_AT)?;
    out.say(format!(
        "the word at offset {DONE_AT} of \"data\" turned 1; the peer's reply: {reply:?}"
    ));
    drop(stdin);
    peer.wait()?;
    out.say("the peer exited");
    Ok(())
}

pub(super) fn child(out: &Out, _socket: Option<&Path>) -> Result<(), Failure> {
    // Nothing said before the values come: the parent is talking.
    let stdin = std::io::stdin();
    let mut received = Vec::new();
    for line in stdin.lock().lines().take(2) {
        let line = line.map_err(|e| io_failure("reading standard input", e))?;
        let (key, value) = line
            .split_once(' ')
            .ok_or_else(|| Failure::other(format!("not a key and a value: {line:?}")))?;
        let segment = Segment::inherited_from(key, value)?;
        received.push((key.to_owned(), segment));
    }
    let list: Vec<String> = received
        .iter()
        .map(|(key, segment)| {
            format!(
                "{key:?} ({} bytes, {}, our {})",
                segment.len(),
                if segment.is_readonly() {
                    "read-only"
                } else {
                    "read-write"
                },
                handle_text(segment)
            )
        })
        .collect();
    out.say(format!(
        "pid {}: read two values on standard input; Segment::inherited_from for each: {}",
        std::process::id(),
        list.join(", ")
    ));
    out.os(
        "CreateFileW of the parent's broker pipe (GetNamedPipeServerProcessId: the parent), the \
         token sent, the handle received; each checked: NtQueryObject (a Section, the access \
         claimed), NtQuerySection (the size claimed, committed)",
    );
    let find = |key: &str| {
        received
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, segment)| segment)
            .ok_or_else(|| Failure::other(format!("no segment {key:?} was given")))
    };

    let config = find("config")?;
    let text = read_text(&config.map_readonly(..)?, 0)?;
    out.say(format!("\"config\": read {text:?}"));
    match config.map(..) {
        Err(e @ Error::PermissionDenied { .. }) => {
            out.say(format!("config.map(..) (writable) → PermissionDenied: {e}"));
            out.note(
                "the handle has no SECTION_MAP_WRITE: MapViewOfFile(FILE_MAP_WRITE) would fail \
                 with ERROR_ACCESS_DENIED",
            );
        }
        Ok(_) => return Err(Failure::other("a read-only handle gave a writable view")),
        Err(e) => return Err(e.into()),
    }

    let data = find("data")?;
    let view = data.map(..)?;
    let message = read_text(&view, 0)?;
    let reply = format!("Handled by pid {}", std::process::id());
    view.write_at(REPLY_AT, reply.as_bytes())?;
    out.say(format!(
        "\"data\": read {message:?}, wrote the reply {reply:?}, set the word at offset \
         {DONE_AT} to 1"
    ));
    view.atomic_u32(DONE_AT)?.store(1, Ordering::Release);
    // Until the parent closes our standard input (also if it dies).
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    Ok(())
}
