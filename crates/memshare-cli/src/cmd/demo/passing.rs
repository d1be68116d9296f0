//! Step 3: handles sent to a process that was already running, over a Unix
//! socket (`send_segments` / `recv_segments`), one of them read-only and
//! sealed by the kernel (`Segment::to_readonly`).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Instant;

use memshare::{Error, Segment};

use super::out::{io_failure, read_text, Out, LINUX};
use super::peer::{self, Peer, TempDir, POLL, TIMEOUT};
use crate::fail::Failure;

/// Each segment's size.
const LEN: u64 = 4096;
/// Where the peer writes its reply in the "data" segment.
const REPLY_AT: usize = 1024;
/// What the peer says on the socket once it is done.
const DONE: &str = "done";

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    let dir = TempDir::new()?;
    let socket = dir.path().join("peer.sock");
    out.say(format!(
        "start `memshare demo-peer 3 --socket {}` first: a process that knows nothing \
         of our segments",
        socket.display()
    ));
    let mut cmd = peer::command(3)?;
    cmd.arg("--socket").arg(&socket);
    let mut peer = Peer::spawn(&mut cmd)?;
    let stream = connect(&socket, &mut peer)?;
    out.say(format!(
        "connected to the running peer (pid {})",
        peer.pid()
    ));
    out.os("socket(AF_UNIX, SOCK_STREAM), connect");

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
    let readonly = match config.to_readonly() {
        Ok(readonly) => {
            out.os(format!(
                "open(\"/proc/self/fd/{}\", O_RDONLY): a read-only descriptor; \
                 fcntl(F_ADD_SEALS, F_SEAL_FUTURE_WRITE): from now on no new write or writable \
                 mapping, through any descriptor, in any process",
                config.as_fd().as_raw_fd()
            ));
            readonly
        }
        Err(Error::Unsupported { what }) => {
            out.note(format!("not here: {what}; sending it read-write instead"));
            config.clone()
        }
        Err(e) => return Err(e.into()),
    };

    out.say("send_segments: both handles in one message");
    out.os(
        "sendmsg with SCM_RIGHTS: two new descriptors (F_DUPFD_CLOEXEC copies, closed once \
         sent) and a payload that names them: key, size, access",
    );
    memshare::send_segments(&stream, &[("data", &data), ("config", &readonly)])?;

    let answer = read_answer(&stream).map_err(|e| peer.explain(e))?;
    let reply = read_text(&data_view, REPLY_AT)?;
    out.say(format!(
        "the peer said {answer:?} on the socket; its reply in \"data\": {reply:?}"
    ));
    drop(stream);
    peer.wait()?;

    let path = dir.path().to_owned();
    drop(dir);
    if path.exists() {
        return Err(Failure::other(format!(
            "could not remove {}",
            path.display()
        )));
    }
    out.say(format!("the peer exited; removed {}", path.display()));
    Ok(())
}

/// Connects to the peer's socket once it listens.
fn connect(socket: &Path, peer: &mut Peer) -> Result<UnixStream, Failure> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            // Not bound yet, or bound and not yet listening.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                peer.check_running()?;
                std::thread::sleep(POLL);
            }
            Err(e) => {
                return Err(
                    peer.explain(io_failure(format!("connecting to {}", socket.display()), e))
                )
            }
        }
    }
}

/// The peer's one-line answer.
fn read_answer(stream: &UnixStream) -> Result<String, Failure> {
    let fail = |e| io_failure("waiting for the peer's answer", e);
    stream.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(fail)?;
    match line.trim_end() {
        DONE => Ok(DONE.to_owned()),
        "" => Err(Failure::other(
            "the peer closed the connection without an answer",
        )),
        other => Err(Failure::other(format!(
            "the peer answered {other:?}, not {DONE:?}"
        ))),
    }
}

pub(super) fn child(out: &Out, socket: Option<&Path>) -> Result<(), Failure> {
    let socket = socket.ok_or_else(|| Failure::usage("demo-peer 3 needs --socket"))?;
    // Said before binding: once the parent can connect, this line is out.
    out.say(format!(
        "pid {}: running, and listening on {}",
        std::process::id(),
        socket.display()
    ));
    out.os("socket(AF_UNIX, SOCK_STREAM), bind, listen, accept");
    let listener = UnixListener::bind(socket)
        .map_err(|e| io_failure(format!("listening on {}", socket.display()), e))?;
    let stream = accept(&listener)?;
    // Connected: the socket's name is no longer needed.
    let _ = std::fs::remove_file(socket);
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| io_failure("setting a timeout on the socket", e))?;

    let received = memshare::recv_segments(&stream)?;
    let list: Vec<String> = received
        .iter()
        .map(|(key, segment)| {
            format!(
                "{key:?} ({} bytes, {}, our descriptor {})",
                segment.len(),
                if segment.is_readonly() {
                    "read-only"
                } else {
                    "read-write"
                },
                segment.as_fd().as_raw_fd()
            )
        })
        .collect();
    out.say(format!(
        "recv_segments: {} segments in one message: {}",
        received.len(),
        list.join(", ")
    ));
    out.os(if LINUX {
        "recvmsg(MSG_CMSG_CLOEXEC) with SCM_RIGHTS; each descriptor checked against the payload: \
         fstat + fstatfs (a tmpfs file of the claimed size), fcntl(F_GETFL) (the claimed access), \
         fcntl(F_GET_SEALS)"
    } else {
        "recvmsg with SCM_RIGHTS; each descriptor checked against the payload: fstat (a file of \
         the claimed size), fcntl(F_GETFL) (the claimed access)"
    });
    let find = |key: &str| {
        received
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, segment)| segment)
            .ok_or_else(|| Failure::other(format!("no segment {key:?} in the message")))
    };

    let data = find("data")?;
    let view = data.map(..)?;
    let message = read_text(&view, 0)?;
    let reply = format!("Handled by pid {}", std::process::id());
    view.write_at(REPLY_AT, reply.as_bytes())?;
    out.say(format!(
        "\"data\": read {message:?}, wrote the reply {reply:?}"
    ));

    let config = find("config")?;
    let text = read_text(&config.map_readonly(..)?, 0)?;
    out.say(format!(
        "\"config\": read {text:?}; is_write_sealed() = {}",
        config.is_write_sealed()
    ));
    if config.is_readonly() {
        try_to_write(out, config)?;
    }

    (&stream)
        .write_all(format!("{DONE}\n").as_bytes())
        .map_err(|e| io_failure("answering on the socket", e))?;
    Ok(())
}

/// Waits for the parent's connection: at most [`TIMEOUT`], and only while
/// the parent is alive.
fn accept(listener: &UnixListener) -> Result<UnixStream, Failure> {
    let fail = |e| io_failure("waiting for the parent to connect", e);
    let parent = std::os::unix::process::parent_id();
    let deadline = Instant::now() + TIMEOUT;
    listener.set_nonblocking(true).map_err(fail)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(fail)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::os::unix::process::parent_id() != parent {
                    return Err(Failure::other("the parent is gone"));
                }
                if Instant::now() > deadline {
                    return Err(Failure::other(format!(
                        "the parent did not connect within {} s",
                        TIMEOUT.as_secs()
                    )));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(fail(e)),
        }
    }
}

/// Tries to write to the read-only segment: memshare refuses a writable
/// view of a read-only handle, and the kernel refuses one through a
/// writable descriptor of the same (sealed) object.
fn try_to_write(out: &Out, config: &Segment) -> Result<(), Failure> {
    match config.map(..) {
        Err(e @ Error::PermissionDenied { .. }) => {
            out.say(format!("config.map(..) (writable) → PermissionDenied: {e}"));
            out.note(
                "the handle is O_RDONLY: memshare refuses before mmap, which would fail with EACCES",
            );
        }
        Ok(_) => return Err(Failure::other("a read-only handle gave a writable view")),
        Err(e) => return Err(e.into()),
    }
    if !LINUX {
        return Ok(());
    }
    // A writable descriptor of the same object: the kernel allows the open
    // (the object's mode is 0600, we are its owner); the seal is what stops
    // the writes.
    let fd = config.as_fd().as_raw_fd();
    let path = format!("/proc/self/fd/{fd}");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) => {
            out.say(format!(
                "reopen it through {path}, read-write → refused: {e}"
            ));
            return Ok(());
        }
    };
    out.say(format!(
        "reopen it read-write: open(\"{path}\", O_RDWR) works (descriptor {})",
        file.as_raw_fd()
    ));
    // A memshare handle of that descriptor, to ask for a writable view.
    match Segment::take_from_process(std::process::id(), file.as_raw_fd()) {
        Ok(writable) => {
            out.note("Segment::take_from_process(our own pid, it): a handle that may ask for writable views (pidfd_open, pidfd_getfd)");
            match writable.map(..) {
                Err(e @ Error::PermissionDenied { .. }) => {
                    out.say(format!(
                        "map(..) (writable) → PermissionDenied, from the kernel: {e}"
                    ));
                    out.os("mmap(PROT_READ|PROT_WRITE, MAP_SHARED) → EPERM: the seal F_SEAL_FUTURE_WRITE");
                }
                Ok(_) => {
                    return Err(Failure::other(
                        "the kernel let us map a write-sealed segment writable",
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => out.note(format!("(no memshare handle of it here: {e})")),
    }
    match file.write_at(b"x", 0) {
        Err(e) => out.say(format!("pwrite through it → {e}: the seal again")),
        Ok(_) => {
            return Err(Failure::other(
                "the kernel let us write to a write-sealed segment",
            ))
        }
    }
    Ok(())
}
