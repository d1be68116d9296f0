//! Sharing segments with real processes: inheritance scoped to one child,
//! handle passing over a Unix socket, pidfd_getfd, and read-only handles
//! enforced by the kernel.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use common::{
    child, in_dev_shm, invalid_handle, role, take_from_child_expected, unique_name, wait_for,
    Reaped, TakeFromChild, TIMEOUT,
};
use memshare::{recv_segments, send_segments, CommandExt, Error, Segment};

/// The shared-memory descriptors this process holds: (fd, link target).
fn shm_fds() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // the directory's own descriptor, closed by now
        };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("/memfd:") || target.starts_with("/dev/shm/") {
            out.push((entry.file_name().to_string_lossy().parse().unwrap(), target));
        }
    }
    out
}

fn handle_in(value: &str) -> i32 {
    value
        .split(';')
        .find_map(|f| f.strip_prefix("handle="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_child_inherits_a_segment_reads_and_writes_it() {
    if role().is_some() {
        let segment = Segment::inherited("data").unwrap();
        assert_eq!(segment.len(), 1 << 16);
        assert!(!segment.is_readonly());
        assert_eq!(segment.name(), None);
        let view = segment.map(..).unwrap();
        let mut buf = [0u8; 6];
        view.read_at(1000, &mut buf).unwrap();
        assert_eq!(&buf, b"parent");
        view.write_at(2000, b"child").unwrap();
        // Taken once: the key cannot be taken again.
        let again = invalid_handle(Segment::inherited("data"));
        assert!(again.contains("already taken"), "{again}");
        return;
    }
    let segment = Segment::create(1 << 16).unwrap();
    let view = segment.map(..).unwrap();
    view.write_at(1000, b"parent").unwrap();
    let mut cmd = child("a_child_inherits_a_segment_reads_and_writes_it", "child");
    cmd.share("data", &segment);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    let mut buf = [0u8; 5];
    view.read_at(2000, &mut buf).unwrap();
    assert_eq!(&buf, b"child");
}

#[test]
fn named_and_readonly_segments_are_inherited_with_their_name_length_and_flag() {
    if role().is_some() {
        let name = std::env::var("MST_NAME").unwrap();
        let named = Segment::inherited("named").unwrap();
        assert_eq!(
            (named.name(), named.len(), named.is_readonly()),
            (Some(name.as_str()), 8192, false)
        );
        let ro_named = Segment::inherited("RO_NAMED").unwrap(); // keys are case-insensitive
        assert_eq!(
            (ro_named.name(), ro_named.len(), ro_named.is_readonly()),
            (Some(name.as_str()), 8192, true)
        );
        let sealed = Segment::inherited("sealed").unwrap();
        assert_eq!(
            (sealed.name(), sealed.len(), sealed.is_readonly()),
            (None, 4096, true)
        );
        let mut buf = [0u8; 5];
        ro_named
            .map_readonly(..)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"named");
        sealed
            .map_readonly(..)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"seal!");
        assert!(matches!(
            ro_named.map(..),
            Err(Error::PermissionDenied { .. })
        ));
        assert!(matches!(
            sealed.map(..),
            Err(Error::PermissionDenied { .. })
        ));
        return;
    }
    let name = unique_name("inhname");
    let named = Segment::create_named(&name, 8192).unwrap();
    named.map(..).unwrap().write_at(0, b"named").unwrap();
    let ro_named = Segment::open_readonly(&name).unwrap();
    let anon = Segment::create(4096).unwrap();
    anon.map(..).unwrap().write_at(0, b"seal!").unwrap();
    let sealed = anon.to_readonly().unwrap();

    let mut cmd = child(
        "named_and_readonly_segments_are_inherited_with_their_name_length_and_flag",
        "child",
    );
    cmd.env("MST_NAME", &name)
        .share("named", &named)
        .share("ro_named", &ro_named)
        .share("sealed", &sealed);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    drop((named, ro_named));
    assert!(!in_dev_shm(&name));
}

#[test]
fn a_named_segment_given_to_a_child_outlives_the_parents_handles() {
    if role().is_some() {
        let segment = Segment::inherited("named").unwrap();
        let name = segment.name().unwrap().to_owned();
        let view = segment.map(..).unwrap();
        // The parent drops everything, then tells us.
        wait_for(TIMEOUT, || {
            (view.atomic_u32(0).unwrap().load(Ordering::Acquire) == 1).then_some(())
        });
        // We are the only holder now, and the name still works.
        let again = Segment::open(&name).unwrap();
        drop(again);
        return;
    }
    let name = unique_name("inhlife");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let mut cmd = child(
        "a_named_segment_given_to_a_child_outlives_the_parents_handles",
        "child",
    );
    cmd.share("named", &segment);
    let running = Reaped::spawn(cmd);
    let view = segment.map(..).unwrap();
    drop(segment);
    view.atomic_u32(0).unwrap().store(1, Ordering::Release);
    drop(view);
    running.wait_success(TIMEOUT);
    assert!(!in_dev_shm(&name), "{name} left behind");
}

#[test]
fn inheritance_is_scoped_to_one_child_and_not_passed_to_grandchildren() {
    const TEST: &str = "inheritance_is_scoped_to_one_child_and_not_passed_to_grandchildren";
    match role().as_deref() {
        Some("child") => {
            let var = memshare::share::inherit_env_var("mine").unwrap();
            let value = std::env::var(&var).unwrap();
            // Exactly the one descriptor we were given, before taking it...
            let held = shm_fds();
            assert_eq!(held.len(), 1, "holds {held:?}");
            assert_eq!(held[0].0, handle_in(&value));
            let segment = Segment::inherited("mine").unwrap();
            let id = std::env::var("MST_ID").unwrap();
            let mut buf = [0u8; 8];
            segment
                .map_readonly(..)
                .unwrap()
                .read_at(0, &mut buf)
                .unwrap();
            assert_eq!(buf, id.parse::<u64>().unwrap().to_le_bytes());
            // ...and after taking it, it is close-on-exec again.
            let flags = rustix::io::fcntl_getfd(segment.as_fd()).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
            let mut grandchild = child(TEST, "grandchild");
            let status = grandchild.status().unwrap();
            assert!(status.success(), "grandchild failed: {status}");
        }
        Some("grandchild") => {
            assert_eq!(shm_fds(), vec![], "a grandchild holds shared memory");
            let err = invalid_handle(Segment::inherited("mine"));
            assert!(err.contains("its child"), "{err}");
        }
        Some(other) => panic!("unknown role {other}"),
        None => {
            let start = Arc::new(Barrier::new(8));
            let threads: Vec<_> = (0..8u64)
                .map(|id| {
                    let start = Arc::clone(&start);
                    std::thread::spawn(move || {
                        let segment = Segment::create(4096).unwrap();
                        segment
                            .map(..)
                            .unwrap()
                            .write_at(0, &id.to_le_bytes())
                            .unwrap();
                        let mut cmd = child(TEST, "child");
                        cmd.env("MST_ID", id.to_string()).share("mine", &segment);
                        start.wait();
                        Reaped::spawn(cmd).wait_success(TIMEOUT);
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
    }
}

/// A value for `Segment::inherited_from` that is right in every field but
/// the ones a test changes.
fn value_for(fd: i32, segment: Option<&Segment>) -> String {
    let (dev, ino, len) = match segment {
        Some(s) => {
            let st = rustix::fs::fstat(s.as_fd()).unwrap();
            (st.st_dev, st.st_ino, s.len())
        }
        None => (0, 0, 4096),
    };
    let parent = rustix::process::getppid().unwrap().as_raw_nonzero().get();
    format!("v1;handle={fd};id={dev}:{ino};len={len};access=rw;parent={parent}")
}

/// The object descriptor `fd` of this process refers to now, as (device,
/// inode); `None` if it is not open.
fn object_at(fd: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    Some((m.dev(), m.ino()))
}

#[test]
fn a_missing_variable_is_a_clear_error() {
    // An unknown key is the caller's mistake: InvalidInput, naming it.
    let err = match Segment::inherited("never_shared_key") {
        Err(e @ Error::InvalidInput { .. }) => e.to_string(),
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert!(
        err.contains("MEMSHARE_SEGMENT_NEVER_SHARED_KEY") && err.contains("not set"),
        "{err}"
    );
}

#[test]
fn a_non_numeric_handle_is_a_clear_error() {
    let value = value_for(7, None).replace("handle=7", "handle=seven");
    let err = invalid_handle(Segment::inherited_from("k", &value));
    assert!(
        err.contains("\"k\"") && err.contains("not a number"),
        "{err}"
    );
}

#[test]
fn malformed_values_are_clear_errors() {
    for (value, expect) in [
        ("", "version"),
        ("v2;handle=3", "version"),
        ("v1;handle", "name=value"),
        ("v1;handle=3;handle=4", "twice"),
        ("v1;color=red", "unknown field"),
        (
            "v1;handle=3;id=1:2;len=4096;access=rw",
            "\"parent\" is missing",
        ),
        ("v1;handle=3;id=12;len=1;access=rw;parent=1", "device:inode"),
        ("v1;handle=3;id=1:2;len=1;access=rwx;parent=1", "ro or rw"),
        (
            "v1;handle=99999999999999999999999;id=1:2;len=1;access=rw;parent=1",
            "out of range",
        ),
        (
            "v1;handle=-3;id=1:2;len=1;access=rw;parent=1",
            "not a number",
        ),
    ] {
        let err = invalid_handle(Segment::inherited_from("k", value));
        assert!(err.contains(expect), "{value:?}: {err}");
    }
    let long = format!("v1;name={}", "x".repeat(600));
    assert!(invalid_handle(Segment::inherited_from("k", &long)).contains("too long"));
    // A name no segment can have is a malformed value too (as the module
    // says), not an invalid name of the caller's.
    let bad_name = value_for(3, None) + ";name=a/b";
    let err = invalid_handle(Segment::inherited_from("k", &bad_name));
    assert!(
        err.contains("field \"name\"") && err.contains("a/b"),
        "{err}"
    );
}

#[test]
fn a_value_meant_for_another_process_is_refused() {
    let segment = Segment::create(4096).unwrap();
    let fd = segment.as_fd().as_raw_fd();
    let value = value_for(fd, Some(&segment)).replace("parent=", "parent=1");
    let err = invalid_handle(Segment::inherited_from("k", &value));
    assert!(err.contains("its child"), "{err}");
}

#[test]
fn a_descriptor_that_is_not_open_is_refused() {
    let err = invalid_handle(Segment::inherited_from("k", &value_for(19_999, None)));
    assert!(err.contains("not an open descriptor"), "{err}");
    let err = invalid_handle(Segment::inherited_from("k", &value_for(1, None)));
    assert!(err.contains("standard"), "{err}");
}

#[test]
fn descriptors_that_are_not_shared_memory_are_refused_and_left_open() {
    let (pipe_r, _pipe_w) = rustix::pipe::pipe().unwrap();
    let (sock, _other) = UnixStream::pair().unwrap();
    let dir = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    let file = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    for (what, fd, expect) in [
        ("pipe", pipe_r.as_raw_fd(), "Fifo"),
        ("socket", sock.as_raw_fd(), "Socket"),
        ("directory", dir.as_raw_fd(), "Directory"),
        (
            "file on disk",
            file.as_raw_fd(),
            "outside the shared-memory file systems",
        ),
    ] {
        let before = object_at(fd);
        let err = invalid_handle(Segment::inherited_from("k", &value_for(fd, None)));
        assert!(err.contains(expect), "{what}: {err}");
        // Refused, and not closed: it was never ours. (By what the number
        // refers to: the tests running alongside reuse a closed number.)
        assert_eq!(object_at(fd), before, "{what}: descriptor {fd} was closed");
    }
}

#[test]
fn another_object_or_a_wrong_size_is_refused() {
    let segment = Segment::create(4096).unwrap();
    let other = Segment::create(4096).unwrap();
    let fd = segment.as_fd().as_raw_fd();
    let before = object_at(fd);
    let wrong_id = value_for(fd, Some(&other)).replace(
        &format!("handle={}", other.as_fd().as_raw_fd()),
        &format!("handle={fd}"),
    );
    let err = invalid_handle(Segment::inherited_from("k", &wrong_id));
    assert!(
        err.contains("not the") && err.contains("that was shared"),
        "{err}"
    );
    let wrong_len = value_for(fd, Some(&segment)).replace("len=4096", "len=8192");
    let err = invalid_handle(Segment::inherited_from("k", &wrong_len));
    assert!(err.contains("4096 bytes long, not the 8192"), "{err}");
    // Both refusals left the segment's own descriptor alone: the number
    // still refers to the same object (a closed number is soon reused by
    // the tests running alongside).
    assert_eq!(object_at(fd), before, "descriptor {fd} was closed");
    segment.map(..).unwrap().write_at(0, b"fine").unwrap();
}

#[test]
fn segments_pass_over_a_socket_to_a_process_the_sender_did_not_start() {
    const TEST: &str = "segments_pass_over_a_socket_to_a_process_the_sender_did_not_start";
    match role().as_deref() {
        Some("receiver") => {
            let path = std::env::var("MST_SOCKET").unwrap();
            let listener = UnixListener::bind(&path).unwrap();
            std::fs::write(format!("{path}.ready"), b"").unwrap();
            let (stream, _) = listener.accept().unwrap();
            let received = recv_segments(&stream).unwrap();
            let keys: Vec<_> = received.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["anon", "named", "sealed"]);
            let mut buf = [0u8; 4];
            for (key, segment) in &received {
                segment
                    .map_readonly(..)
                    .unwrap()
                    .read_at(0, &mut buf)
                    .unwrap();
                assert_eq!(&buf, &key.as_bytes()[..4]);
            }
            let (anon, named, sealed) = (&received[0].1, &received[1].1, &received[2].1);
            assert!(named.name().unwrap().starts_with("mst-sock"));
            assert!(sealed.is_readonly() && sealed.map(..).is_err());
            anon.map(..).unwrap().write_at(100, b"ack").unwrap();
            (&stream).write_all(b"k").unwrap();
            // Keep the named one until the sender has dropped its own.
            let mut done = [0u8; 1];
            (&stream).read_exact(&mut done).unwrap();
            drop(received);
        }
        Some("sender") => {
            let path = std::env::var("MST_SOCKET").unwrap();
            let stream = UnixStream::connect(&path).unwrap();
            let anon = Segment::create(4096).unwrap();
            anon.map(..).unwrap().write_at(0, b"anon").unwrap();
            let named = Segment::create_named(&std::env::var("MST_NAME").unwrap(), 4096).unwrap();
            named.map(..).unwrap().write_at(0, b"name").unwrap();
            let base = Segment::create(4096).unwrap();
            base.map(..).unwrap().write_at(0, b"seal").unwrap();
            let sealed = base.to_readonly().unwrap();
            send_segments(
                &stream,
                &[("anon", &anon), ("named", &named), ("sealed", &sealed)],
            )
            .unwrap();
            let mut ack = [0u8; 1];
            (&stream).read_exact(&mut ack).unwrap();
            let mut buf = [0u8; 3];
            anon.map_readonly(..)
                .unwrap()
                .read_at(100, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"ack");
            drop(named);
            (&stream).write_all(b"d").unwrap();
        }
        Some(other) => panic!("unknown role {other}"),
        None => {
            let dir = std::env::temp_dir().join(unique_name("sock"));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s");
            let name = unique_name("sock");
            let spawn = |role| {
                let mut cmd = child(TEST, role);
                cmd.env("MST_SOCKET", &path).env("MST_NAME", &name);
                Reaped::spawn(cmd)
            };
            let receiver = spawn("receiver");
            wait_for(TIMEOUT, || dir.join("s.ready").exists().then_some(()));
            let sender = spawn("sender");
            sender.wait_success(TIMEOUT);
            receiver.wait_success(TIMEOUT);
            std::fs::remove_dir_all(&dir).unwrap();
            assert!(!in_dev_shm(&name), "{name} left behind");
        }
    }
}

/// Sends `payload` with `fds` as raw `SCM_RIGHTS`, as a hostile sender would.
fn send_raw(stream: &UnixStream, payload: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    rustix::net::sendmsg(
        stream,
        &[std::io::IoSlice::new(payload)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
}

fn entry(key: &str, len: u64, readonly: bool) -> memshare::share::MessageEntry {
    memshare::share::MessageEntry {
        key: key.into(),
        name: None,
        len,
        readonly,
    }
}

/// How many descriptors of this process refer to the objects behind `fds`
/// (other tests run in parallel in this process, so a plain count would not do).
fn open_fd_count(fds: &[std::os::fd::BorrowedFd<'_>]) -> usize {
    use std::os::unix::fs::MetadataExt;
    let ids: Vec<_> = fds
        .iter()
        .map(|fd| {
            let st = rustix::fs::fstat(fd).unwrap();
            (st.st_dev, st.st_ino)
        })
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::metadata(e.ok()?.path()).ok())
        .filter(|m| ids.contains(&(m.dev(), m.ino())))
        .count()
}

fn recv_err(stream: &UnixStream) -> String {
    match recv_segments(stream) {
        Err(e @ Error::InvalidHandle { .. }) => e.to_string(),
        other => panic!("expected InvalidHandle, got {other:?}"),
    }
}

#[test]
fn a_hostile_sender_is_refused_and_its_descriptors_closed() {
    let (a, b) = UnixStream::pair().unwrap();
    let good = Segment::create(4096).unwrap();
    let payload = memshare::share::encode_message(&[entry("x", 4096, false)]).unwrap();
    let (pipe_r, _pipe_w) = rustix::pipe::pipe().unwrap();
    let file = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let dir = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    let (sock, _) = UnixStream::pair().unwrap();
    let watched = [
        good.as_fd(),
        pipe_r.as_fd(),
        file.as_fd(),
        dir.as_fd(),
        sock.as_fd(),
    ];
    let before = open_fd_count(&watched);

    for (what, fd, expect) in [
        ("pipe", pipe_r.as_fd(), "Fifo"),
        ("socket", sock.as_fd(), "Socket"),
        ("directory", dir.as_fd(), "Directory"),
        ("file on disk", file.as_fd(), "outside the shared-memory"),
    ] {
        send_raw(&a, &payload, &[fd]);
        let err = recv_err(&b);
        assert!(err.contains(expect), "{what}: {err}");
    }
    // Extra descriptors beyond what the payload describes.
    send_raw(&a, &payload, &[good.as_fd(), good.as_fd(), good.as_fd()]);
    assert!(recv_err(&b).contains("carries 3 descriptors but describes 1"));
    // Lies about the size, about being read-only, garbage payloads.
    let lie = memshare::share::encode_message(&[entry("x", 8192, false)]).unwrap();
    send_raw(&a, &lie, &[good.as_fd()]);
    assert!(recv_err(&b).contains("not the 8192"));
    let ro_lie = memshare::share::encode_message(&[entry("x", 4096, true)]).unwrap();
    send_raw(&a, &ro_lie, &[good.as_fd()]);
    assert!(recv_err(&b).contains("claimed read-only"));
    // A name no segment can have: a lie about the message, not a name of
    // the receiver's.
    let mut bad_name = b"MSHS\x01\x00\x01\x00\x00\x00\x00\x00\x01x\x03a/b\x00".to_vec();
    bad_name.extend_from_slice(&4096u64.to_le_bytes());
    let total = bad_name.len() as u32;
    bad_name[8..12].copy_from_slice(&total.to_le_bytes());
    send_raw(&a, &bad_name, &[good.as_fd()]);
    let err = recv_err(&b);
    assert!(err.contains("name \"a/b\""), "{err}");
    // A header that is not one: the stream is out of step after it (the
    // receiver reads no further than a header), so on a stream of its own.
    let (garbage_a, garbage_b) = UnixStream::pair().unwrap();
    send_raw(&garbage_a, b"GARBAGE-GARBAGE!", &[good.as_fd()]);
    assert!(recv_err(&garbage_b).contains("magic"));
    drop((garbage_a, garbage_b));
    // A memfd that is not sealed against shrinking.
    let unsealed = rustix::fs::memfd_create("hostile", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&unsealed, 4096).unwrap();
    send_raw(&a, &payload, &[unsealed.as_fd()]);
    assert!(recv_err(&b).contains("not sealed against shrinking"));
    drop(unsealed);

    assert_eq!(
        open_fd_count(&watched),
        before,
        "received descriptors were not all closed"
    );
}

/// Messages queued back to back are received one by one, each whole, with
/// its own descriptors: one without segments before one with (Linux hands
/// both over in one read; the second was lost, its descriptor closed, and
/// the first refused as carrying a descriptor it did not describe), two
/// without, and one with before one without.
#[test]
fn messages_queued_back_to_back_are_received_one_by_one() {
    let (a, b) = UnixStream::pair().unwrap();
    let segment = Segment::create(4096).unwrap();
    segment.map(..).unwrap().write_at(0, b"mark").unwrap();
    let keys = |received: &[(String, Segment)]| -> Vec<String> {
        received.iter().map(|(k, _)| k.clone()).collect()
    };
    send_segments(&a, &[]).unwrap();
    send_segments(&a, &[("one", &segment)]).unwrap();
    send_segments(&a, &[]).unwrap();
    send_segments(&a, &[]).unwrap();
    send_segments(&a, &[("two", &segment), ("three", &segment)]).unwrap();
    send_segments(&a, &[]).unwrap();
    let expected: [&[&str]; 6] = [&[], &["one"], &[], &[], &["two", "three"], &[]];
    for (n, expect) in expected.iter().enumerate() {
        let received = recv_segments(&b).unwrap_or_else(|e| panic!("message {n}: {e}"));
        assert_eq!(keys(&received), *expect, "message {n}");
        for (key, got) in &received {
            let mut buf = [0u8; 4];
            got.map_readonly(..).unwrap().read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"mark", "message {n}, {key}");
        }
    }
    // Nothing is left in the stream.
    b.set_nonblocking(true).unwrap();
    let mut rest = [0u8; 1];
    assert_eq!(
        (&b).read(&mut rest).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
}

#[test]
fn truncated_control_data_is_refused() {
    let (a, b) = UnixStream::pair().unwrap();
    // Credentials take control space too: with them, 253 descriptors no
    // longer fit in the receiver's buffer and the kernel sets MSG_CTRUNC.
    rustix::net::sockopt::set_socket_passcred(&b, true).unwrap();
    let segment = Segment::create(4096).unwrap();
    let fds: Vec<_> = (0..253).map(|_| segment.as_fd()).collect();
    let entries: Vec<_> = (0..253)
        .map(|i| entry(&format!("k{i}"), 4096, false))
        .collect();
    let before = open_fd_count(&[segment.as_fd()]);
    send_raw(
        &a,
        &memshare::share::encode_message(&entries).unwrap(),
        &fds,
    );
    let err = recv_err(&b);
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(
        open_fd_count(&[segment.as_fd()]),
        before,
        "received descriptors were not all closed"
    );
}

#[test]
fn a_readonly_handle_is_enforced_by_the_kernel_in_the_receiver() {
    if role().is_some() {
        let segment = Segment::inherited("ro").unwrap();
        assert!(segment.is_readonly());
        assert!(matches!(
            segment.map(..),
            Err(Error::PermissionDenied { .. })
        ));
        let view = segment.map_readonly(..).unwrap();
        let fd = segment.as_fd();
        let rw = rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE;
        // A writable mapping through the descriptor itself.
        // SAFETY: a new mapping, refused by the kernel.
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                4096,
                rw,
                rustix::mm::MapFlags::SHARED,
                fd,
                0,
            )
        };
        assert!(
            raw.is_err(),
            "writable mmap of a read-only handle succeeded"
        );
        // Upgrading the read-only view with mprotect.
        let page = (view.as_ptr() as usize) & !(4095);
        // SAFETY: the page belongs to `view`; the kernel refuses the change.
        let up = unsafe {
            rustix::mm::mprotect(
                page as *mut _,
                4096,
                rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
            )
        };
        assert!(up.is_err(), "mprotect upgraded a read-only view");
        // Reopening it writable through /proc.
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        if let Ok(reopened) = rustix::fs::open(
            path.as_str(),
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        ) {
            // SAFETY: as above.
            let raw = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    4096,
                    rw,
                    rustix::mm::MapFlags::SHARED,
                    &reopened,
                    0,
                )
            };
            assert_eq!(raw.unwrap_err(), rustix::io::Errno::PERM);
            assert_eq!(
                rustix::io::write(&reopened, b"x").unwrap_err(),
                rustix::io::Errno::PERM
            );
        }
        // The creator still writes, and we see it.
        view.atomic_u32(0).map(|_| ()).unwrap();
        wait_for(TIMEOUT, || {
            (view.atomic_u32(0).unwrap().load(Ordering::Acquire) == 7).then_some(())
        });
        return;
    }
    let segment = Segment::create(4096).unwrap();
    let writer = segment.map(..).unwrap();
    let readonly = segment.to_readonly().unwrap();
    let mut cmd = child(
        "a_readonly_handle_is_enforced_by_the_kernel_in_the_receiver",
        "child",
    );
    cmd.share("ro", &readonly);
    let running = Reaped::spawn(cmd);
    writer.atomic_u32(0).unwrap().store(7, Ordering::Release);
    running.wait_success(TIMEOUT);
    // From now on nobody makes a writable view, the creator included.
    assert!(matches!(
        segment.map(..),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        Segment::create_named(&unique_name("x"), 1).map(|s| s.to_readonly()),
        Ok(Err(Error::Unsupported { .. }))
    ));
}

#[test]
fn pidfd_getfd_takes_a_segment_from_a_child_or_says_why_not() {
    const TEST: &str = "pidfd_getfd_takes_a_segment_from_a_child_or_says_why_not";
    match role().as_deref() {
        Some("holder") => {
            let segment = Segment::create(4096).unwrap();
            segment.map(..).unwrap().write_at(0, b"taken").unwrap();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Some("unprivileged") => {
            let pid = std::env::var("MST_PID").unwrap().parse().unwrap();
            let fd = std::env::var("MST_FD").unwrap().parse().unwrap();
            match Segment::take_from_process(pid, fd) {
                Err(e @ Error::PermissionDenied { .. }) => {
                    assert!(e.to_string().contains("ptrace"), "{e}")
                }
                other => panic!("expected PermissionDenied, got {other:?}"),
            }
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if rustix::process::geteuid().is_root() {
        // Another user may not take our descriptors.
        use std::os::unix::process::CommandExt as _;
        let mine = Segment::create(4096).unwrap();
        let mut cmd = child(TEST, "unprivileged");
        cmd.uid(65534)
            .gid(65534)
            .env("MST_PID", std::process::id().to_string())
            .env("MST_FD", mine.as_fd().as_raw_fd().to_string());
        Reaped::spawn(cmd).wait_success(TIMEOUT);
    } else {
        common::privileged::skip(
            "pidfd_getfd by another user",
            "not root: cannot run a process as another user",
        );
    }
    let child_proc = Reaped::spawn(child(TEST, "holder"));
    let pid = child_proc.pid();
    let fd: i32 = wait_for(TIMEOUT, || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()?
            .find_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                target
                    .to_string_lossy()
                    .starts_with("/memfd:memshare")
                    .then(|| e.file_name().to_string_lossy().parse().unwrap())
            })
    });
    // What this machine must answer: worked out from the kernel's version,
    // Yama's ptrace_scope and our capabilities, not taken from the answer.
    let expected = take_from_child_expected();
    match (expected, Segment::take_from_process(pid, fd)) {
        (TakeFromChild::Allowed, Ok(segment)) => {
            let mut buf = [0u8; 5];
            segment
                .map_readonly(..)
                .unwrap()
                .read_at(0, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"taken");
            assert_eq!(segment.name(), None);
        }
        (TakeFromChild::PermissionDenied, Err(e @ Error::PermissionDenied { .. })) => {
            assert!(e.to_string().contains("ptrace"), "{e}")
        }
        (TakeFromChild::Unsupported, Err(Error::Unsupported { .. })) => {}
        (expected, got) => {
            panic!("taking a descriptor of our child: expected {expected:?}, got {got:?}")
        }
    }
    // Descriptor 0 of the child is not shared memory, 9999 is not open; a
    // process that does not exist (any more) is NotFound.
    for bad in [0, 9999] {
        let got = Segment::take_from_process(pid, bad);
        match expected {
            TakeFromChild::Allowed => assert!(
                matches!(got, Err(Error::InvalidHandle { .. })),
                "descriptor {bad}: {got:?}"
            ),
            TakeFromChild::PermissionDenied => assert!(
                matches!(got, Err(Error::PermissionDenied { .. })),
                "descriptor {bad}: {got:?}"
            ),
            TakeFromChild::Unsupported => assert!(
                matches!(got, Err(Error::Unsupported { .. })),
                "descriptor {bad}: {got:?}"
            ),
        }
    }
    child_proc.kill();
    let gone = Segment::take_from_process(pid, fd);
    assert!(
        match expected {
            TakeFromChild::Unsupported => matches!(
                gone,
                Err(Error::Unsupported { .. } | Error::NotFound { .. })
            ),
            _ => matches!(gone, Err(Error::NotFound { .. })),
        },
        "a process that is gone: {gone:?}"
    );
}

#[test]
fn children_of_one_command_spawned_twice_are_holders_each() {
    if role().is_some() {
        let segment = Segment::inherited("named").unwrap();
        let view = segment.map(..).unwrap();
        view.atomic_u32(0).unwrap().fetch_add(1, Ordering::AcqRel);
        // Hold on until standard input closes.
        let mut byte = [0u8; 1];
        let _ = std::io::stdin().read(&mut byte);
        return;
    }
    let name = unique_name("twice");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let view = segment.map(..).unwrap();
    let mut cmd = child(
        "children_of_one_command_spawned_twice_are_holders_each",
        "holder",
    );
    cmd.share("named", &segment)
        .stdin(std::process::Stdio::piped());
    let mut first = Reaped(Some(cmd.spawn().unwrap()));
    let mut second = Reaped(Some(cmd.spawn().unwrap()));
    drop(cmd);
    wait_for(TIMEOUT, || {
        (view.atomic_u32(0).unwrap().load(Ordering::Acquire) == 2).then_some(())
    });
    // The first child lets go, then the parent: the second still holds it.
    drop(first.0.as_mut().unwrap().stdin.take());
    first.wait_success(TIMEOUT);
    drop((view, segment));
    assert!(
        in_dev_shm(&name),
        "the name went while a child still held it"
    );
    let probe = Segment::open(&name).unwrap();
    drop(probe);
    drop(second.0.as_mut().unwrap().stdin.take());
    second.wait_success(TIMEOUT);
    assert!(!in_dev_shm(&name), "{name} left behind");
}
