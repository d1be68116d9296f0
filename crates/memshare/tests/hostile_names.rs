//! What another process leaves at a name, or hands over, cannot crash,
//! hang or fool memshare: symbolic links are never followed, FIFOs never
//! waited on, directories refused; another user's object is refused by
//! default, and one handed over is used without claiming its name; a
//! descriptor this process opened itself is never adopted as
//! inherited; an unsealed memfd taken from a process is refused.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use common::{child, in_dev_shm, invalid_handle, role, unique_name, wait_for, Reaped, TIMEOUT};
use memshare::{Error, Segment};

/// Something a test put at `/dev/shm/<name>`, removed when dropped.
struct Planted {
    path: PathBuf,
}

impl Planted {
    fn new(name: &str, make: impl FnOnce(&std::path::Path)) -> Planted {
        let path = PathBuf::from("/dev/shm").join(name);
        make(&path);
        Planted { path }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

/// Runs `f` on a thread and returns its result, failing the test if it
/// does not return within a few seconds (it would be blocked on the name).
fn without_blocking<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} blocked on what is at the name"))
}

fn not_shared_memory<T: std::fmt::Debug>(result: memshare::Result<T>, expect: &str) {
    match result {
        Err(e @ Error::NotSharedMemory { .. }) => {
            let text = e.to_string();
            assert!(text.contains(expect), "{text}");
        }
        other => panic!("expected NotSharedMemory ({expect}), got {other:?}"),
    }
}

#[test]
fn a_symbolic_link_at_a_name_is_never_followed() {
    let dir = std::env::temp_dir().join(format!("mst-link-target-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("precious");
    std::fs::write(&target, b"precious file on disk").unwrap();
    let name = unique_name("link");
    let _link = Planted::new(&name, |p| std::os::unix::fs::symlink(&target, p).unwrap());

    not_shared_memory(Segment::open(&name), "symbolic link");
    not_shared_memory(Segment::open_readonly(&name), "symbolic link");
    // Not reclaimed as stale, not replaced: the name is taken.
    assert!(matches!(
        Segment::create_named(&name, 4096),
        Err(Error::AlreadyExists { .. })
    ));
    not_shared_memory(Segment::remove(&name), "symbolic link");
    not_shared_memory(
        Segment::options().allow_foreign_owner(true).open(&name),
        "symbolic link",
    );
    assert_eq!(memshare::inspect::reclaim_stale(&name).ok(), Some(false));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious file on disk");
    assert!(std::fs::symlink_metadata(PathBuf::from("/dev/shm").join(&name)).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fifo_at_a_name_never_blocks_an_opener() {
    let name = unique_name("fifo");
    let _fifo = Planted::new(&name, mkfifo);
    for access in ["rw", "ro"] {
        let n = name.clone();
        let result = without_blocking("open", move || match access {
            "rw" => Segment::open(&n),
            _ => Segment::open_readonly(&n),
        });
        not_shared_memory(result, "FIFO");
    }
    let n = name.clone();
    let created = without_blocking("create_named", move || Segment::create_named(&n, 4096));
    assert!(
        matches!(created, Err(Error::AlreadyExists { .. })),
        "{created:?}"
    );
    let n = name.clone();
    let reclaimed = without_blocking("reclaim_stale", move || {
        memshare::inspect::reclaim_stale(&n)
    });
    assert!(!matches!(reclaimed, Ok(true)), "{reclaimed:?}");
    not_shared_memory(Segment::remove(&name), "FIFO");
}

#[test]
fn a_last_holder_whose_name_became_a_fifo_drops_without_blocking() {
    let name = unique_name("fifo-last");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let view = segment.map(..).unwrap();
    Segment::remove(&name).unwrap();
    let fifo = Planted::new(&name, mkfifo);
    without_blocking("dropping the last holder", move || drop((view, segment)));
    // The FIFO is someone else's: left where it is.
    let kind = std::fs::symlink_metadata(&fifo.path).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind));
}

#[test]
fn a_directory_at_a_name_is_refused_at_open() {
    let name = unique_name("dir");
    let _dir = Planted::new(&name, |p| std::fs::create_dir(p).unwrap());
    not_shared_memory(Segment::open_readonly(&name), "directory");
    // Writable opens of a directory fail in the kernel already; the error
    // still says what is there.
    not_shared_memory(Segment::open(&name), "directory");
}

#[test]
fn another_users_object_at_a_name_is_refused_unless_allowed() {
    const TEST: &str = "another_users_object_at_a_name_is_refused_unless_allowed";
    if role().as_deref() == Some("nobody") {
        // As user nobody: a persistent object under the name, then exit.
        let name = std::env::var("MST_NAME").unwrap();
        let segment = Segment::options()
            .persist(true)
            .create_named(&name, 4096)
            .unwrap();
        segment.map(..).unwrap().write_at(0, b"nobody's").unwrap();
        return;
    }
    if !rustix::process::geteuid().is_root() {
        return common::privileged::skip(TEST, "not root: cannot run a process as user nobody");
    }
    use std::os::unix::process::CommandExt as _;
    let name = unique_name("foreign");
    let mut cmd = child(TEST, "nobody");
    cmd.uid(65534).gid(65534).env("MST_NAME", &name);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    assert!(in_dev_shm(&name));
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Segment::options().allow_foreign_owner(true).remove(&self.0);
        }
    }
    let _cleanup = Cleanup(name.clone());

    for result in [Segment::open(&name), Segment::open_readonly(&name)] {
        match result {
            Err(e @ Error::PermissionDenied { .. }) => {
                let text = e.to_string();
                assert!(text.contains("65534"), "{text}");
                assert!(text.contains("allow_foreign_owner"), "{text}");
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
    }
    // Not reclaimed, not removed, not replaced.
    assert!(matches!(
        Segment::create_named(&name, 4096),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(memshare::inspect::reclaim_stale(&name).ok(), Some(false));
    assert!(matches!(
        Segment::remove(&name),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(in_dev_shm(&name));
    // Asked for explicitly, it opens.
    let opened = Segment::options()
        .allow_foreign_owner(true)
        .open_readonly(&name)
        .unwrap();
    let mut buf = [0u8; 8];
    opened
        .map_readonly(..8)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"nobody's");
    drop(opened);
    Segment::options()
        .allow_foreign_owner(true)
        .remove(&name)
        .unwrap();
    assert!(!in_dev_shm(&name));
}

/// The inheritance value a parent would give for `segment` at `fd`.
fn value_for(fd: i32, segment: &Segment) -> String {
    let st = rustix::fs::fstat(segment.as_fd()).unwrap();
    format!(
        "v1;handle={fd};id={}:{};len={};access=rw;parent={}",
        st.st_dev,
        st.st_ino,
        segment.len(),
        rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
    )
}

#[test]
fn a_value_naming_a_descriptor_this_process_opened_is_not_adopted() {
    let segment = Segment::create(4096).unwrap();
    segment.map(..).unwrap().write_at(0, b"mine").unwrap();
    let fd = segment.as_fd().as_raw_fd();
    let err = invalid_handle(Segment::inherited_from("k", &value_for(fd, &segment)));
    assert!(err.contains("close-on-exec"), "{err}");
    // Still ours alone: open, and the segment works.
    assert!(rustix::fs::fstat(segment.as_fd()).is_ok());
    let mut buf = [0u8; 4];
    segment.map(..4).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"mine");
    // A File's descriptor is not adopted either (it would be closed twice).
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let err = invalid_handle(Segment::inherited_from(
        "k",
        &value_for(file.as_raw_fd(), &segment),
    ));
    assert!(err.contains("not a shared-memory object") || err.contains("close-on-exec"));
    drop(file);
}

#[test]
fn an_unsealed_memfd_taken_from_a_process_is_refused() {
    const TEST: &str = "an_unsealed_memfd_taken_from_a_process_is_refused";
    if role().as_deref() == Some("holder") {
        use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
        let fd = memfd_create("mst-unsealed", MemfdFlags::CLOEXEC).unwrap();
        ftruncate(&fd, 4096).unwrap();
        println!("fd={}", fd.as_raw_fd());
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let mut cmd = child(TEST, "holder");
    cmd.stdout(std::process::Stdio::piped());
    let mut holder = Reaped::spawn(cmd);
    let mut out = holder.0.as_mut().unwrap().stdout.take().unwrap();
    let fd: i32 = common::read_after(&mut out, "fd=", TIMEOUT)
        .parse()
        .unwrap();
    let pid = holder.pid();
    // The holder's memfd can be truncated by its owner at any time: refused
    // as a received one would be.
    let err = invalid_handle(Segment::take_from_process(pid, fd));
    assert!(err.contains("not sealed against shrinking"), "{err}");
    holder.kill();
}

#[test]
fn another_users_object_handed_over_is_used_but_its_name_never_claimed() {
    const TEST: &str = "another_users_object_handed_over_is_used_but_its_name_never_claimed";
    use std::io::{Read as _, Write as _};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    if role().as_deref() == Some("nobody") {
        // As user nobody: a segment whose holders are counted (not
        // persistent), sent to the test over the socket on stdin; then held
        // until the test says so.
        let name = std::env::var("MST_NAME").unwrap();
        let stream = UnixStream::from(rustix::io::dup(std::io::stdin()).unwrap());
        let segment = Segment::create_named(&name, 4096).unwrap();
        segment.map(..).unwrap().write_at(0, b"nobody's").unwrap();
        memshare::send_segments(&stream, &[("theirs", &segment)]).unwrap();
        let mut go = [0u8; 1];
        (&stream).read_exact(&mut go).unwrap();
        return;
    }
    if !rustix::process::geteuid().is_root() {
        return common::privileged::skip(TEST, "not root: cannot run a process as user nobody");
    }
    use std::os::unix::process::CommandExt as _;
    let name = unique_name("handed");
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Segment::options().allow_foreign_owner(true).remove(&self.0);
        }
    }
    let _cleanup = Cleanup(name.clone());
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut cmd = child(TEST, "nobody");
    cmd.uid(65534)
        .gid(65534)
        .env("MST_NAME", &name)
        .stdin(std::process::Stdio::from(OwnedFd::from(theirs)));
    let sender = Reaped::spawn(cmd);
    let mut got = memshare::recv_segments(&ours).unwrap();
    let (key, received) = got.pop().unwrap();
    assert_eq!(key, "theirs");
    assert_eq!(received.name(), Some(name.as_str()));
    // The sender chose to hand it over: usable, data and all.
    let mut buf = [0u8; 8];
    received
        .map_readonly(..8)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"nobody's");
    received.map(..).unwrap().write_at(8, b"+root").unwrap();
    // Opened here by name (allowed explicitly: a holder of its own) and
    // sent on, to this process: received, it is used the same way.
    let opened = Segment::options()
        .allow_foreign_owner(true)
        .open(&name)
        .unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    memshare::send_segments(&a, &[("again", &opened)]).unwrap();
    let again = memshare::recv_segments(&b).unwrap().pop().unwrap().1;
    let mut buf = [0u8; 13];
    again
        .map_readonly(..13)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"nobody's+root");
    drop((opened, again));
    // The sender goes away; the descriptor it handed over keeps the object
    // held, so its name stays.
    (&ours).write_all(b"x").unwrap();
    sender.wait_success(TIMEOUT);
    assert!(in_dev_shm(&name));
    assert_eq!(memshare::inspect::named_info(&name).unwrap().holders, 1);
    // The name was never claimed: dropping the last handle of it here does
    // not remove another user's name (it stays, stale, for its owner to
    // reclaim), where a holder of its own would have removed it.
    drop(received);
    assert!(
        in_dev_shm(&name),
        "the receiver removed another user's name: it claimed it as a holder of its own"
    );
    // (Not at once: a process another test of this binary spawns holds a
    // copy of the descriptor, and so its lock, from its fork to its exec.)
    wait_for(TIMEOUT, || {
        memshare::inspect::named_info(&name)
            .ok()
            .filter(|info| info.holders == 0)
    });
}
