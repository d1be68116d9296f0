//! A census around a representative session: one test, alone in its binary
//! and run step after step, so that this process's descriptors can be
//! counted exactly. Every kind of object memshare makes is made, shared with
//! children and dropped; afterwards this process holds exactly the
//! descriptors it held before, `/dev/shm` holds none of its names, and it has
//! no child left, running or unreaped.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::census::{self, Descriptors, NameSweeper};
use common::{
    child, in_dev_shm, read_after, role, take_from_child_expected, unique_name, Reaped,
    TakeFromChild, TIMEOUT,
};
use memshare::channel::{Receiver, Sender};
use memshare::{recv_segments, send_segments, CommandExt, Error, Segment};

const TEST: &str = "a_whole_session_leaves_no_descriptor_name_or_child_behind";

/// The child's side of each step that needs one.
fn child_role(role: &str) {
    match role {
        "inheritor" => {
            let named = Segment::inherited("named").unwrap();
            let anon = Segment::inherited("anon").unwrap();
            let readonly = Segment::inherited("readonly").unwrap();
            assert!(readonly.is_readonly() && readonly.map(..).is_err());
            let mut buf = [0u8; 6];
            readonly
                .map_readonly(..)
                .unwrap()
                .read_at(0, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"sealed");
            named.map(..).unwrap().write_at(0, b"child").unwrap();
            anon.map(..).unwrap().write_at(0, b"child").unwrap();
        }
        "peer" => {
            // Receives two segments, answers in them, sends one of its own.
            let stream = UnixStream::connect(std::env::var("MST_SOCKET").unwrap()).unwrap();
            let got = recv_segments(&stream).unwrap();
            for (_, segment) in &got {
                segment.map(..).unwrap().write_at(0, b"peer").unwrap();
            }
            let mine = Segment::create(4096).unwrap();
            mine.map(..).unwrap().write_at(0, b"from the peer").unwrap();
            send_segments(&stream, &[("mine", &mine)]).unwrap();
            // Keep everything until the parent has looked.
            let mut done = [0u8; 1];
            (&stream).read_exact(&mut done).unwrap();
        }
        "sender" => {
            let segment = Segment::inherited("chan").unwrap();
            let mut tx = Sender::attach(&segment).unwrap();
            for i in 0u32..100 {
                tx.send(&i.to_le_bytes()).unwrap();
            }
        }
        "named-sender" => {
            let mut tx = Sender::open(&std::env::var("MST_NAME").unwrap()).unwrap();
            tx.send(b"by name").unwrap();
        }
        "subscriber" => {
            use memshare::pubsub::Subscriber;
            let sub = Subscriber::open(&std::env::var("MST_NAME").unwrap()).unwrap();
            println!("ready=1");
            for i in 0u32..50 {
                let msg = sub.recv().unwrap();
                assert_eq!(&*msg, &i.to_le_bytes());
            }
            assert!(matches!(sub.recv(), Err(Error::Disconnected { .. })));
        }
        "caller" => {
            use memshare::rpc::Client;
            let mut client = Client::connect(&std::env::var("MST_NAME").unwrap()).unwrap();
            for i in 0u32..20 {
                let response = client.call(&i.to_le_bytes()).unwrap();
                assert_eq!(&*response, &(i * 2).to_le_bytes());
            }
            // One left unanswered when the server leaves.
            let pending = client.send_request(b"last").unwrap();
            println!("sent=1");
            assert!(matches!(
                client.receive_response(&pending),
                Err(Error::Disconnected { .. })
            ));
        }
        "holder" => {
            let segment = Segment::create(4096).unwrap();
            segment.map(..).unwrap().write_at(0, b"taken").unwrap();
            println!("fd={}", segment.as_fd().as_raw_fd());
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str) -> std::process::Command {
    child(TEST, role)
}

#[test]
fn a_whole_session_leaves_no_descriptor_name_or_child_behind() {
    if let Some(role) = role() {
        child_role(&role);
        return;
    }
    let sweeper = NameSweeper::for_tag("cs");
    census::assert_no_children("at the start");
    // memshare's one watcher of peers' deaths for the whole process (an
    // epoll descriptor and a thread, made at the first wait of a wait set,
    // or of the async notifier, on an endpoint whose peer published its
    // pid, and kept for the process's life): made before the count, which
    // then sees what each object leaves (the watches' pidfds among them).
    let before_watcher = Descriptors::take();
    {
        use memshare::WaitSet;
        let rx = Receiver::create(4096).unwrap();
        let _tx = Sender::attach(rx.segment()).unwrap();
        let mut set = WaitSet::new().unwrap();
        set.add(&rx).unwrap();
        assert!(set
            .wait_timeout(Duration::from_millis(1))
            .unwrap()
            .is_empty());
    }
    let start = Descriptors::take();
    let made = start.opened_since(&before_watcher);
    assert_eq!(
        made,
        ["anon_inode:[eventpoll]"],
        "the watcher of deaths: one epoll, and nothing else left"
    );
    let shm_before = census::dev_shm_names("");

    // Anonymous segments: create, map at offsets, clone, read-only handles.
    {
        let segment = Segment::options()
            .reserve(true)
            .populate(true)
            .create(1 << 20)
            .unwrap();
        let view = segment.map(12345..12345 + 100).unwrap();
        view.write_at(0, b"anon").unwrap();
        let clone = segment.clone();
        let readonly = clone.to_readonly().unwrap();
        drop(readonly.map_readonly(..).unwrap());
        drop((segment, clone));
        view.write_at(10, b"the view outlives its segment").unwrap();
    }
    start.assert_unchanged("after anonymous segments");

    // Named segments: create, open, open read-only, persist and remove.
    {
        let name = unique_name("cs");
        let created = Segment::create_named(&name, 8192).unwrap();
        let opened = Segment::open(&name).unwrap();
        let readonly = Segment::open_readonly(&name).unwrap();
        created.map(..).unwrap().write_at(0, b"named").unwrap();
        let mut buf = [0u8; 5];
        readonly
            .map_readonly(..)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"named");
        assert!(matches!(
            Segment::create_named(&name, 1),
            Err(Error::AlreadyExists { .. })
        ));
        drop((created, opened, readonly));
        assert!(!in_dev_shm(&name));

        let kept = unique_name("cs");
        drop(
            Segment::options()
                .persist(true)
                .create_named(&kept, 4096)
                .unwrap(),
        );
        assert!(in_dev_shm(&kept));
        Segment::remove(&kept).unwrap();
        assert!(!in_dev_shm(&kept));
    }
    start.assert_unchanged("after named segments");

    // Sharing with a child: named, anonymous and read-only, reaped.
    {
        let name = unique_name("cs");
        let named = Segment::create_named(&name, 4096).unwrap();
        let anon = Segment::create(4096).unwrap();
        let sealed = Segment::create(4096).unwrap();
        sealed.map(..).unwrap().write_at(0, b"sealed").unwrap();
        let readonly = sealed.to_readonly().unwrap();
        let mut cmd = spawn("inheritor");
        cmd.share("named", &named)
            .share("anon", &anon)
            .share("readonly", &readonly);
        Reaped::spawn(cmd).wait_success(TIMEOUT);
        for segment in [&named, &anon] {
            let mut buf = [0u8; 5];
            segment
                .map_readonly(..)
                .unwrap()
                .read_at(0, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"child");
        }
        drop((named, anon, sealed, readonly));
        assert!(!in_dev_shm(&name));
    }
    start.assert_unchanged("after sharing with a child");

    // Segments over a socket, both ways, with a child; and within this
    // process over a socket pair.
    {
        let dir = std::env::temp_dir().join(unique_name("cs-sock"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let name = unique_name("cs");
        let named = Segment::create_named(&name, 4096).unwrap();
        let anon = Segment::create(4096).unwrap();
        let mut cmd = spawn("peer");
        cmd.env("MST_SOCKET", &path);
        let peer = Reaped::spawn(cmd);
        let (stream, _) = listener.accept().unwrap();
        send_segments(&stream, &[("named", &named), ("anon", &anon)]).unwrap();
        let got = recv_segments(&stream).unwrap();
        let mut buf = [0u8; 13];
        got[0]
            .1
            .map_readonly(..)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"from the peer");
        for segment in [&named, &anon] {
            let mut buf = [0u8; 4];
            segment
                .map_readonly(..)
                .unwrap()
                .read_at(0, &mut buf)
                .unwrap();
            assert_eq!(&buf, b"peer");
        }
        (&stream).write_all(b"d").unwrap();
        peer.wait_success(TIMEOUT);
        drop((got, stream, listener, named, anon));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!in_dev_shm(&name));

        let (a, b) = UnixStream::pair().unwrap();
        let segment = Segment::create(4096).unwrap();
        send_segments(&a, &[("x", &segment)]).unwrap();
        let got = recv_segments(&b).unwrap();
        assert_eq!(got[0].1.len(), 4096);
        // A message never received: its descriptors go with the socket.
        send_segments(&a, &[("y", &segment)]).unwrap();
        drop((got, a, b, segment));
    }
    start.assert_unchanged("after sending and receiving segments");

    // Channels with a child: anonymous (inherited) and named (opened).
    {
        let mut rx = Receiver::create(1 << 12).unwrap();
        let mut cmd = spawn("sender");
        cmd.share("chan", rx.segment());
        let sender = Reaped::spawn(cmd);
        for i in 0u32..100 {
            assert_eq!(&*rx.recv().unwrap(), &i.to_le_bytes());
        }
        assert!(matches!(rx.recv(), Err(Error::Disconnected { .. })));
        sender.wait_success(TIMEOUT);
        drop(rx);

        let name = unique_name("cs");
        let mut rx = Receiver::create_named(&name, 1 << 12).unwrap();
        let mut cmd = spawn("named-sender");
        cmd.env("MST_NAME", &name);
        let sender = Reaped::spawn(cmd);
        assert_eq!(&*rx.recv().unwrap(), b"by name");
        sender.wait_success(TIMEOUT);
        drop(rx);
        assert!(!in_dev_shm(&name));
    }
    start.assert_unchanged("after channels");

    // Publish-subscribe: a service, a subscriber in a child and one here,
    // holding samples, a publisher that leaves.
    {
        use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
        let name = unique_name("cs");
        let mut publisher = Publisher::create(&name, ServiceConfig::new().depth(64)).unwrap();
        let mine = Subscriber::open(&name).unwrap();
        let mut cmd = spawn("subscriber");
        cmd.env("MST_NAME", &name)
            .stdout(std::process::Stdio::piped());
        let mut subscriber = Reaped::spawn(cmd);
        let mut out = subscriber.0.as_mut().unwrap().stdout.take().unwrap();
        read_after(&mut out, "ready=", TIMEOUT);
        for i in 0u32..50 {
            publisher.publish_copy(&i.to_le_bytes()).unwrap();
        }
        let held = (mine.recv().unwrap(), mine.recv().unwrap());
        assert_eq!(
            (&*held.0, &*held.1),
            (&0u32.to_le_bytes()[..], &1u32.to_le_bytes()[..])
        );
        drop(held);
        drop(publisher);
        subscriber.wait_success(TIMEOUT);
        drop((out, mine));
        assert!(!in_dev_shm(&name));
    }
    start.assert_unchanged("after publish-subscribe");

    // Request/response: a server here, a client in a child and one here, a
    // request left unanswered, the server leaving first.
    {
        use memshare::rpc::{Client, Server, ServerConfig};
        let name = unique_name("cs");
        let server = Server::create(&name, ServerConfig::new()).unwrap();
        let mut mine = Client::connect(&name).unwrap();
        let mut cmd = spawn("caller");
        cmd.env("MST_NAME", &name)
            .stdout(std::process::Stdio::piped());
        let mut caller = Reaped::spawn(cmd);
        let mut out = caller.0.as_mut().unwrap().stdout.take().unwrap();
        let mine_pending = mine.send_request(b"mine").unwrap();
        let mut answered = 0;
        while answered < 21 {
            let request = server.recv_timeout(TIMEOUT).unwrap();
            if request.client() == mine.id() {
                request.respond(b"yours").unwrap();
            } else {
                let i = u32::from_le_bytes(request[..4].try_into().unwrap());
                request.respond(&(i * 2).to_le_bytes()).unwrap();
            }
            answered += 1;
        }
        assert_eq!(&*mine.receive_response(&mine_pending).unwrap(), b"yours");
        read_after(&mut out, "sent=", TIMEOUT);
        let unanswered = server.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(&*unanswered, b"last");
        // Not answered, not declined: the server leaves owing it.
        std::mem::forget(unanswered);
        drop(server);
        caller.wait_success(TIMEOUT);
        drop((out, mine));
        assert!(!in_dev_shm(&name));
    }
    start.assert_unchanged("after request/response");

    // A wait set over a named channel whose sender is a child, a
    // subscriber and a server here: reported, then everything dropped, the
    // set last (its members hold the segments and names until then).
    {
        use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
        use memshare::rpc::{Server, ServerConfig};
        use memshare::WaitSet;
        let (chan, service, calls) = (unique_name("cs"), unique_name("cs"), unique_name("cs"));
        let mut rx = Receiver::create_named(&chan, 1 << 12).unwrap();
        let publisher = Publisher::create(&service, ServiceConfig::new()).unwrap();
        let sub = Subscriber::open(&service).unwrap();
        let server = Server::create(&calls, ServerConfig::new()).unwrap();
        let mut set = WaitSet::new().unwrap();
        let r = set.add(&rx).unwrap();
        set.add(&sub).unwrap();
        set.add(&server).unwrap();
        let mut cmd = spawn("named-sender");
        cmd.env("MST_NAME", &chan);
        let sender = Reaped::spawn(cmd);
        assert!(set.wait().unwrap().contains(r));
        assert_eq!(&*rx.recv().unwrap(), b"by name");
        sender.wait_success(TIMEOUT);
        assert!(set.wait().unwrap().contains(r));
        assert!(matches!(rx.try_recv(), Err(Error::Disconnected { .. })));
        drop((rx, publisher, sub, server));
        assert!(in_dev_shm(&chan));
        drop(set);
        for name in [&chan, &service, &calls] {
            assert!(!in_dev_shm(name), "{name}");
        }
    }
    start.assert_unchanged("after a wait set");

    // A descriptor taken from a child with pidfd_getfd, then the child killed.
    {
        let mut cmd = spawn("holder");
        cmd.stdout(std::process::Stdio::piped());
        let mut holder = Reaped::spawn(cmd);
        let mut out = holder.0.as_mut().unwrap().stdout.take().unwrap();
        // libtest prints its own words first, on the same line.
        let fd = read_after(&mut out, "fd=", TIMEOUT);
        // What this machine must answer (kernel version, Yama, capabilities).
        let expected = take_from_child_expected();
        match (
            expected,
            Segment::take_from_process(holder.pid(), fd.trim().parse().unwrap()),
        ) {
            (TakeFromChild::Allowed, Ok(taken)) => {
                let mut buf = [0u8; 5];
                taken
                    .map_readonly(..)
                    .unwrap()
                    .read_at(0, &mut buf)
                    .unwrap();
                assert_eq!(&buf, b"taken");
            }
            (TakeFromChild::PermissionDenied, Err(Error::PermissionDenied { .. }))
            | (TakeFromChild::Unsupported, Err(Error::Unsupported { .. })) => {}
            (expected, got) => panic!("take_from_process: expected {expected:?}, got {got:?}"),
        }
        holder.kill();
        drop(out);
    }
    start.assert_unchanged("after pidfd_getfd");

    // Everything is as it was.
    census::assert_no_children("at the end");
    let left = sweeper.left();
    assert!(left.is_empty(), "names left in /dev/shm: {left:?}");
    let appeared: Vec<_> = census::dev_shm_names("")
        .difference(&shm_before)
        .cloned()
        .collect();
    let ours: Vec<_> = appeared
        .iter()
        .filter(|n| n.contains(&format!("-{}-", std::process::id())))
        .collect();
    assert!(ours.is_empty(), "this process left {ours:?} in /dev/shm");
    if !appeared.is_empty() {
        eprintln!("appeared in /dev/shm meanwhile (other processes): {appeared:?}");
    }
    eprintln!(
        "{} descriptors before and after; no child left",
        start.count()
    );
}
