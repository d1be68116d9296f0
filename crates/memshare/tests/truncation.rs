//! A peer that shrinks a named segment (`ftruncate`) under another
//! process's views would kill that process with SIGBUS at its next access.
//! memshare catches the fault in its own mappings: the access returns an
//! error (`Truncated`), the process lives. SIGBUS anywhere else still goes
//! where it went before (a handler installed earlier, or death).
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{child, role, unique_name, Reaped, TIMEOUT};
use memshare::channel::{Receiver, Sender};
use memshare::{Error, Segment};

/// In a child: opens `MST_NAME` and truncates it to `MST_LEN` bytes.
fn truncate_in_child(test: &str, name: &str, len: u64) {
    let mut cmd = child(test, "truncate");
    cmd.env("MST_NAME", name).env("MST_LEN", len.to_string());
    Reaped::spawn(cmd).wait_success(TIMEOUT);
}

/// The child's side of [`truncate_in_child`]; true if this is that child.
fn truncator() -> bool {
    if role().as_deref() != Some("truncate") {
        return false;
    }
    let name = std::env::var("MST_NAME").unwrap();
    let len = std::env::var("MST_LEN").unwrap().parse().unwrap();
    let segment = Segment::open(&name).unwrap();
    rustix::fs::ftruncate(segment.as_fd(), len).unwrap();
    true
}

fn truncated<T: std::fmt::Debug>(result: memshare::Result<T>, len: u64) {
    match result {
        Err(Error::Truncated { len: now, .. }) => assert_eq!(now, len),
        other => panic!("expected Truncated to {len} bytes, got {other:?}"),
    }
}

#[test]
fn views_of_a_segment_truncated_by_another_process_give_errors() {
    const TEST: &str = "views_of_a_segment_truncated_by_another_process_give_errors";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-view");
    let segment = Segment::create_named(&name, 64 << 10).unwrap();
    let view = segment.map(..).unwrap();
    let tail = segment.map_readonly(32 << 10..).unwrap();
    view.write_at(0, &[1; 64 << 10]).unwrap();
    truncate_in_child(TEST, &name, 4096);

    // The first page is still there: reads of it work.
    let mut buf = [0u8; 16];
    view.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [1; 16]);
    // Beyond the new end: an error, not a SIGBUS.
    truncated(view.read_at(8192, &mut buf), 4096);
    truncated(view.write_at(40 << 10, b"lost"), 4096);
    truncated(tail.read_at(0, &mut buf), 4096);
    // From now on the faulted view reads zeros, and says why on every call.
    assert_eq!(
        view.atomic_u32(16 << 10).unwrap().load(Ordering::Relaxed),
        0
    );
    truncated(view.check_intact(), 4096);
    truncated(view.read_at(0, &mut buf), 4096);
    // A new view of what is left works.
    let fresh = segment.map(..4096).unwrap();
    fresh.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [1; 16]);
    fresh.check_intact().unwrap();
}

#[test]
fn several_threads_faulting_at_once_all_get_the_error() {
    const TEST: &str = "several_threads_faulting_at_once_all_get_the_error";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-threads");
    let segment = Segment::create_named(&name, 1 << 20).unwrap();
    let view = segment.map(..).unwrap();
    let views: Vec<_> = (0..3).map(|_| segment.map(..).unwrap()).collect();
    // Each thread gives up at the deadline, so that a fault the views miss
    // fails the test (its segment dropped) instead of hanging it.
    let deadline = Instant::now() + TIMEOUT;
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for (i, v) in views.iter().chain(std::iter::once(&view)).enumerate() {
            threads.push(s.spawn(move || {
                // Sweep the whole view until the memory is gone.
                let mut buf = [0u8; 4096];
                let mut offset = i * 4096;
                while Instant::now() < deadline {
                    let result = if i % 2 == 0 {
                        v.read_at(offset, &mut buf)
                    } else {
                        v.write_at(offset, &buf)
                    };
                    if let Err(e) = result {
                        return Some(e);
                    }
                    offset = (offset + 4096) % (1 << 20);
                }
                None
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
        truncate_in_child(TEST, &name, 0);
        for (i, t) in threads.into_iter().enumerate() {
            match t.join().unwrap() {
                Some(Error::Truncated { len: 0, .. }) => {}
                Some(e) => panic!("thread {i}: expected Truncated to 0 bytes, got {e}"),
                None => panic!("thread {i}: no error within {TIMEOUT:?} of the start (the cut came after some traffic)"),
            }
        }
    });
}

#[test]
fn channel_ends_whose_segment_is_truncated_get_errors() {
    const TEST: &str = "channel_ends_whose_segment_is_truncated_get_errors";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-chan");
    let tx = Sender::create_named(&name, 64 << 10).unwrap();
    let rx = Receiver::attach(tx.segment()).unwrap();
    let (tx_result, rx_result) = std::thread::scope(|s| {
        let sending = s.spawn(move || {
            let mut tx = tx;
            loop {
                if let Err(e) = tx.send_timeout(&[5u8; 1000], TIMEOUT) {
                    return e;
                }
            }
        });
        let receiving = s.spawn(move || {
            let mut rx = rx;
            let mut zeros_seen = false;
            loop {
                match rx.recv_timeout(TIMEOUT) {
                    Ok(msg) => {
                        // A message held while the memory goes reads as
                        // zeros from then on (documented on RecvGuard);
                        // the next call must say why.
                        assert!(msg.iter().all(|&b| b == 5 || b == 0), "{msg:?}");
                        assert!(!zeros_seen, "a call after zeros did not fail");
                        zeros_seen = msg.contains(&0);
                    }
                    Err(e) => return e,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        // Cut the segment in the middle of the ring, at a page boundary
        // (bytes past the end of the last, partial page would read as zeros
        // without a fault: the same as a peer writing zeros there).
        truncate_in_child(TEST, &name, 20 << 10);
        (sending.join().unwrap(), receiving.join().unwrap())
    });
    // Each end finds the memory gone, or its peer gone after that.
    for (end, e) in [("sender", tx_result), ("receiver", rx_result)] {
        assert!(
            matches!(e, Error::Truncated { .. } | Error::Disconnected { .. }),
            "{end}: {e}"
        );
    }
}

/// What an endpoint may say once its segment is cut: the memory is gone,
/// or its peer is (which found the memory gone first).
fn gone_or_peer_gone(end: &str, e: &Error) {
    assert!(
        matches!(e, Error::Truncated { .. } | Error::Disconnected { .. }),
        "{end}: expected Truncated or Disconnected, got {e}"
    );
}

/// Waits until a few messages went through (`progress` counts them), so
/// that the cut comes in the middle of the traffic however slow the build.
fn wait_for_progress(progress: &AtomicU64, deadline: Instant) {
    while progress.load(Ordering::Relaxed) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn rpc_server_and_client_whose_segment_is_truncated_get_errors() {
    const TEST: &str = "rpc_server_and_client_whose_segment_is_truncated_get_errors";
    if truncator() {
        return;
    }
    use memshare::rpc::{Client, Server, ServerConfig};
    let name = unique_name("trunc-rpc");
    let config = ServerConfig::new()
        .max_clients(2)
        .max_in_flight(4)
        .max_request_len(4096)
        .max_response_len(4096);
    let server = Server::create(&name, config).unwrap();
    let mut client = Client::connect(&name).unwrap();
    // Each side gives up at the deadline, so that a cut it misses fails
    // the test instead of hanging it.
    let deadline = Instant::now() + TIMEOUT;
    let progress = AtomicU64::new(0);
    let (served, called) = std::thread::scope(|s| {
        let progress = &progress;
        let serving = s.spawn(move || {
            let mut answered = 0u64;
            while Instant::now() < deadline {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(request) => {
                        let echo = request.to_vec();
                        if let Err(e) = request.respond(&echo) {
                            return (answered, Some(e));
                        }
                        answered += 1;
                        progress.store(answered, Ordering::Relaxed);
                    }
                    Err(Error::TimedOut { .. }) => {}
                    Err(e) => return (answered, Some(e)),
                }
            }
            (answered, None)
        });
        let calling = s.spawn(move || {
            let request = [7u8; 3000];
            let mut zeros_seen = false;
            loop {
                match client.call_timeout(&request, TIMEOUT) {
                    Ok(reply) => {
                        // A response held while the memory goes reads as
                        // zeros from then on; the next call must say why.
                        assert!(reply.iter().all(|&b| b == 7 || b == 0));
                        assert!(!zeros_seen, "a call after zeros did not fail");
                        zeros_seen = reply.contains(&0) || reply.len() != request.len();
                    }
                    Err(e) => return e,
                }
            }
        });
        wait_for_progress(progress, deadline);
        // The header page (the first 4096 bytes, docs/rpc-layout.md §1)
        // stays, every client region goes: the server's next look at the
        // client's ring, and the client's at its slot, fault.
        truncate_in_child(TEST, &name, 4096);
        (serving.join().unwrap(), calling.join().unwrap())
    });
    assert!(served.0 > 0, "no call was answered before the cut");
    match served.1 {
        Some(e) => gone_or_peer_gone("server", &e),
        None => panic!(
            "server: no error within {TIMEOUT:?} of the start (the cut came after some traffic)"
        ),
    }
    gone_or_peer_gone("client", &called);
}

#[test]
fn publisher_and_subscriber_whose_segment_is_truncated_get_errors() {
    const TEST: &str = "publisher_and_subscriber_whose_segment_is_truncated_get_errors";
    if truncator() {
        return;
    }
    use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
    let name = unique_name("trunc-pubsub");
    let mut publisher = Publisher::create(&name, ServiceConfig::new().depth(64)).unwrap();
    let subscriber = Subscriber::open(&name).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let progress = AtomicU64::new(0);
    let (published, received) = std::thread::scope(|s| {
        let progress = &progress;
        let publishing = s.spawn(move || {
            let mut sent = 0u64;
            while Instant::now() < deadline {
                if let Err(e) = publisher.publish_copy(&[9u8; 1000]) {
                    return (sent, Some(e));
                }
                sent += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            (sent, None)
        });
        let receiving = s.spawn(move || {
            let mut got = 0u64;
            let mut zeros_seen = false;
            while Instant::now() < deadline {
                match subscriber.recv_timeout(Duration::from_millis(100)) {
                    Ok(msg) => {
                        assert!(msg.iter().all(|&b| b == 9 || b == 0));
                        assert!(!zeros_seen, "a receive after zeros did not fail");
                        zeros_seen = msg.contains(&0) || msg.len() != 1000;
                        got += 1;
                        progress.store(got, Ordering::Relaxed);
                    }
                    Err(Error::TimedOut { .. }) => {}
                    Err(e) => return (got, Some(e)),
                }
            }
            (got, None)
        });
        wait_for_progress(progress, deadline);
        // The first page stays (the service's header begins there), the
        // rest goes.
        truncate_in_child(TEST, &name, 4096);
        (publishing.join().unwrap(), receiving.join().unwrap())
    });
    assert!(
        published.0 > 0 && received.0 > 0,
        "nothing went through before the cut"
    );
    for (end, (_, e)) in [("publisher", published), ("subscriber", received)] {
        match e {
            Some(e) => gone_or_peer_gone(end, &e),
            None => panic!(
                "{end}: no error within {TIMEOUT:?} of the start (the cut came after some traffic)"
            ),
        }
    }
}

#[test]
fn a_named_segment_shared_with_a_child_that_truncates_it_gives_errors() {
    const TEST: &str = "a_named_segment_shared_with_a_child_that_truncates_it_gives_errors";
    if role().as_deref() == Some("inheritor") {
        let segment = Segment::inherited("victim").unwrap();
        rustix::fs::ftruncate(segment.as_fd(), 0).unwrap();
        return;
    }
    use memshare::CommandExt;
    let name = unique_name("trunc-share");
    let segment = Segment::create_named(&name, 16 << 10).unwrap();
    let view = segment.map(..).unwrap();
    let mut cmd = child(TEST, "inheritor");
    cmd.share("victim", &segment);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    truncated(view.write_at(0, b"x"), 0);
}

/// The child's side of the chaining tests: makes a SIGBUS that has nothing
/// to do with memshare (a memfd of its own, mapped and then truncated),
/// after memshare installed its handler.
fn fault_outside_memshare() -> ! {
    use rustix::fs::{ftruncate, memfd_create, MemfdFlags};
    use rustix::mm::{mmap, MapFlags, ProtFlags};
    // memshare's handler is installed by its first view.
    let segment = Segment::create(4096).unwrap();
    let _view = segment.map(..).unwrap();
    let fd = memfd_create("mst-outside", MemfdFlags::CLOEXEC).unwrap();
    ftruncate(&fd, 4096).unwrap();
    // SAFETY: a new shared mapping of our own memfd, read once below.
    let p = unsafe {
        mmap(
            std::ptr::null_mut(),
            4096,
            ProtFlags::READ,
            MapFlags::SHARED,
            &fd,
            0,
        )
    }
    .unwrap();
    ftruncate(&fd, 0).unwrap();
    // SAFETY: mapped above; the page is beyond the end now, so this read
    // raises SIGBUS, which is the point.
    let byte = unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
    panic!("read {byte} past the end of a truncated memfd without a SIGBUS");
}

extern "C" fn exit_42(_sig: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe.
    unsafe { libc::_exit(42) };
}

/// Installs a handler that exits with status 42, as a program might
/// before it uses memshare.
fn install_exit_42() {
    // SAFETY: plain C data; a valid one-argument handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = exit_42 as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// The child's side of the sent-signal tests: memshare's handler in place,
/// then waits to be signalled.
fn wait_for_a_signal() -> ! {
    let segment = Segment::create(4096).unwrap();
    let _view = segment.map(..).unwrap();
    println!("ready=1");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Spawns `role`, waits until it says it is ready, sends it SIGBUS and
/// returns how it ended.
fn sigbus_sent_to(test: &str, role: &str) -> std::process::ExitStatus {
    let mut cmd = child(test, role);
    cmd.stdout(std::process::Stdio::piped());
    let mut waiter = Reaped::spawn(cmd);
    let mut out = waiter.0.as_mut().unwrap().stdout.take().unwrap();
    common::read_after(&mut out, "ready=", TIMEOUT);
    let pid = rustix::process::Pid::from_raw(waiter.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::BUS).unwrap();
    waiter.wait(TIMEOUT)
}

#[test]
fn sigbus_outside_memshare_goes_to_the_handler_installed_before() {
    const TEST: &str = "sigbus_outside_memshare_goes_to_the_handler_installed_before";
    match role().as_deref() {
        Some("faulter") => {
            install_exit_42();
            fault_outside_memshare();
        }
        Some("waiter") => {
            install_exit_42();
            wait_for_a_signal();
        }
        _ => {}
    }
    // A fault outside memshare's mappings, and a SIGBUS sent with kill():
    // both reach the program's own handler.
    let status = Reaped::spawn(child(TEST, "faulter")).wait(TIMEOUT);
    assert_eq!(status.code(), Some(42), "fault: {status}");
    let status = sigbus_sent_to(TEST, "waiter");
    assert_eq!(status.code(), Some(42), "kill: {status}");
}

#[test]
fn sigbus_outside_memshare_still_kills_by_default() {
    const TEST: &str = "sigbus_outside_memshare_still_kills_by_default";
    if role().as_deref() == Some("faulter") {
        fault_outside_memshare();
    }
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = child(TEST, "faulter");
    // Under AddressSanitizer (scripts/sanitize) the disposition before
    // memshare is ASan's SIGBUS reporter, which aborts; the default this
    // test is about is the one a program has without it.
    if let Some(options) = std::env::var_os("ASAN_OPTIONS") {
        let mut options = options;
        options.push(":handle_sigbus=0");
        cmd.env("ASAN_OPTIONS", options);
    }
    let status = Reaped::spawn(cmd).wait(TIMEOUT);
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{status}");
}

/// A receiver whose next message lies beyond a cut made before it looks
/// gets `Truncated`, not the message's bytes read as zeros: the ring's
/// first 20 KiB (the header and the messages already received) stay,
/// the message it takes next crosses the cut.
#[test]
fn a_channel_receiver_gets_truncated_not_zeros_for_a_message_beyond_the_cut() {
    const TEST: &str = "a_channel_receiver_gets_truncated_not_zeros_for_a_message_beyond_the_cut";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-chan-poll");
    let mut tx = Sender::create_named(&name, 64 << 10).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    for _ in 0..40 {
        tx.send(&[5u8; 1000]).unwrap();
    }
    for _ in 0..10 {
        assert!(rx.try_recv().unwrap().unwrap().iter().all(|&b| b == 5));
    }
    truncate_in_child(TEST, &name, 20 << 10);
    let result = loop {
        match rx.try_recv() {
            // Messages wholly before the cut are still good.
            Ok(Some(m)) => assert!(m.iter().all(|&b| b == 5), "zeros handed out"),
            other => break other.map(|m| m.map(|m| m.len())),
        }
    };
    truncated(result, 20 << 10);
}

/// A receiver's stream whose segment a peer truncated yields `Truncated`
/// once, then ends: the memory under the receiver is gone for good, and
/// before, the stream yielded the error at every poll (a spin in
/// `while let Some(r) = stream.next().await`).
#[cfg(feature = "async")]
#[test]
fn a_receivers_stream_ends_after_truncated() {
    const TEST: &str = "a_receivers_stream_ends_after_truncated";
    if truncator() {
        return;
    }
    use futures::stream::{FusedStream, StreamExt};
    let name = unique_name("trunc-chan-stream");
    let mut tx = Sender::create_named(&name, 64 << 10).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    for _ in 0..40 {
        tx.send(&[5u8; 1000]).unwrap();
    }
    truncate_in_child(TEST, &name, 20 << 10);
    let mut stream = rx.stream();
    let mut errors = Vec::new();
    let ended = loop {
        let next =
            stream.poll_next_unpin(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        match next {
            // Messages wholly before the cut are still good.
            std::task::Poll::Ready(Some(Ok(m))) => {
                assert!(m.iter().all(|&b| b == 5), "zeros handed out")
            }
            std::task::Poll::Ready(Some(Err(e))) => {
                errors.push(e);
                if errors.len() > 100 {
                    break false;
                }
            }
            std::task::Poll::Ready(None) => break true,
            std::task::Poll::Pending => panic!("pending after the cut"),
        }
    };
    assert!(
        ended && errors.len() == 1,
        "{} errors, ended {ended}",
        errors.len()
    );
    truncated(Err::<(), _>(errors.remove(0)), 20 << 10);
    assert!(stream.is_terminated());
}

/// A subscriber whose next message's buffer was cut away (its ring entry
/// stays) gets `Truncated`, not the buffer read as zeros. With one
/// publisher, one subscriber, messages of 4 KiB, depth 4, one sample held:
/// the publisher region starts at 8192, its buffers 4096 bytes into it
/// (`docs/pubsub-layout.md`, derived sizes): the cut at 12288 keeps the
/// entries and removes every buffer.
#[test]
fn a_subscriber_gets_truncated_not_zeros_for_a_buffer_beyond_the_cut() {
    const TEST: &str = "a_subscriber_gets_truncated_not_zeros_for_a_buffer_beyond_the_cut";
    if truncator() {
        return;
    }
    use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
    let name = unique_name("trunc-sub-poll");
    let config = ServiceConfig::new()
        .max_publishers(1)
        .max_subscribers(1)
        .max_message_len(4096)
        .depth(4)
        .history(0)
        .max_held(1);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let subscriber = Subscriber::open(&name).unwrap();
    publisher.publish_copy(&[9u8; 4096]).unwrap();
    truncate_in_child(TEST, &name, 12288);
    let result = subscriber.try_recv().map(|s| s.map(|s| s.len()));
    truncated(result, 12288);
}

/// The request/response service with one client, 2 requests in flight, 4
/// KiB requests and responses: client 0's region at 4096, its control part
/// one page, its request buffers at 8192, its response buffers at 16384
/// (`docs/rpc-layout.md`, derived sizes).
fn small_service(name: &str) -> (memshare::rpc::Server, memshare::rpc::Client) {
    use memshare::rpc::{Client, Server, ServerConfig};
    let config = ServerConfig::new()
        .max_clients(1)
        .max_in_flight(2)
        .max_request_len(4096)
        .max_response_len(4096);
    let server = Server::create(name, config).unwrap();
    assert_eq!(server.segment().len(), 24576);
    let client = Client::connect(name).unwrap();
    (server, client)
}

/// A server taking a request whose buffer was cut away (the slot and ring
/// stay) gets `Truncated`, not the request read as zeros.
#[test]
fn an_rpc_server_gets_truncated_not_zeros_for_a_request_beyond_the_cut() {
    const TEST: &str = "an_rpc_server_gets_truncated_not_zeros_for_a_request_beyond_the_cut";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-rpc-req");
    let (server, mut client) = small_service(&name);
    let _pending = client.send_request(&[3u8; 4096]).unwrap();
    truncate_in_child(TEST, &name, 8192);
    let result = server.try_recv().map(|r| r.map(|r| r.len()));
    truncated(result, 8192);
}

/// A client receiving a response whose buffer was cut away after the
/// server wrote it (the slot says answered) gets `Truncated`, not the
/// response read as zeros.
#[test]
fn an_rpc_client_gets_truncated_not_zeros_for_a_response_beyond_the_cut() {
    const TEST: &str = "an_rpc_client_gets_truncated_not_zeros_for_a_response_beyond_the_cut";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-rpc-resp");
    let (server, mut client) = small_service(&name);
    let pending = client.send_request(b"ask").unwrap();
    server.recv().unwrap().respond(&[4u8; 4096]).unwrap();
    truncate_in_child(TEST, &name, 16384);
    let result = client
        .try_receive_response(&pending)
        .map(|r| r.map(|r| r.len()));
    truncated(result, 16384);
}

/// A server that only polls (`try_recv`, never parking) learns of the cut
/// too: a request was published before it, the client regions are gone
/// (the header page stays, its pending bit set), and `try_recv` says
/// `Truncated` instead of `None` for ever.
#[test]
fn an_rpc_server_that_only_polls_gets_truncated_after_a_cut() {
    const TEST: &str = "an_rpc_server_that_only_polls_gets_truncated_after_a_cut";
    if truncator() {
        return;
    }
    let name = unique_name("trunc-rpc-poll");
    let (server, mut client) = small_service(&name);
    let _pending = client.send_request(b"before the cut").unwrap();
    truncate_in_child(TEST, &name, 4096);
    let deadline = Instant::now() + Duration::from_secs(2);
    let result = loop {
        match server.try_recv() {
            Ok(None) if Instant::now() < deadline => std::thread::yield_now(),
            other => break other.map(|r| r.map(|r| r.len())),
        }
    };
    truncated(result, 4096);
}
