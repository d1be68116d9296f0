//! Request/response within one process: calls, pipelining, answers in any
//! order, declines, limits, reconnects, a client that breaks the protocol,
//! inspection. (Between processes, with kills: `rpc_processes.rs`.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{in_dev_shm, unique_name};
use memshare::channel::EndpointState;
use memshare::rpc::{self, Client, Server, ServerConfig};
use memshare::{Error, Segment};

fn small() -> ServerConfig {
    ServerConfig::new()
        .max_clients(4)
        .max_in_flight(4)
        .max_request_len(256)
        .max_response_len(1024)
}

fn reversed(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().rev().copied().collect()
}

/// Runs `body` with a server thread answering every request with its
/// bytes reversed until `body` returns.
fn with_echo_server<T>(server: &Server, body: impl FnOnce() -> T + Send) -> T
where
    T: Send,
{
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let result = body();
            done.store(true, Ordering::Relaxed);
            result
        });
        while !done.load(Ordering::Relaxed) {
            match server.recv_timeout(Duration::from_millis(5)) {
                Ok(request) => {
                    let answer = reversed(&request);
                    request.respond(&answer).unwrap();
                }
                Err(Error::TimedOut { .. }) => {}
                Err(e) => panic!("server: {e}"),
            }
        }
        worker.join().unwrap()
    })
}

#[test]
fn responses_in_any_order_reach_the_request_they_answer() {
    let name = unique_name("rpc-order");
    let server = Server::create(&name, small()).unwrap();
    let mut a = Client::connect(&name).unwrap();
    let mut b = Client::connect(&name).unwrap();
    for round in 0..50u32 {
        // Each client pipelines four requests; the server answers all
        // eight in reverse order, each with its request reversed.
        let mut pending = Vec::new();
        for i in 0..4u32 {
            let pa = a.send_request(format!("a{round}.{i}").as_bytes()).unwrap();
            let pb = b.send_request(format!("b{round}.{i}").as_bytes()).unwrap();
            pending.push((pa, pb));
        }
        let mut requests: Vec<_> = (0..8).map(|_| server.recv().unwrap()).collect();
        assert!(server.try_recv().unwrap().is_none());
        // Clients take turns: a and b alternate.
        let order: Vec<_> = requests.iter().map(|r| r.client()).collect();
        assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
        while let Some(request) = requests.pop() {
            let answer = reversed(&request);
            request.respond(&answer).unwrap();
        }
        for (i, (pa, pb)) in pending.iter().enumerate().rev() {
            let expected = |c: &str| reversed(format!("{c}{round}.{i}").as_bytes());
            assert_eq!(&*b.receive_response(pb).unwrap(), &expected("b")[..]);
            assert_eq!(&*a.receive_response(pa).unwrap(), &expected("a")[..]);
        }
    }
}

#[test]
fn calls_from_threads_each_get_their_own_answer() {
    let name = unique_name("rpc-calls");
    let server = Server::create(&name, small()).unwrap();
    with_echo_server(&server, || {
        std::thread::scope(|s| {
            for t in 0..3 {
                let name = &name;
                s.spawn(move || {
                    let mut client = Client::connect(name).unwrap();
                    for i in 0..500u32 {
                        let request = format!("{t}:{i}:{}", "x".repeat((i % 200) as usize));
                        let response = client
                            .call_timeout(request.as_bytes(), Duration::from_secs(10))
                            .unwrap();
                        assert_eq!(&*response, &reversed(request.as_bytes())[..]);
                    }
                });
            }
        });
    });
}

#[test]
fn zero_copy_responses_and_declines() {
    let name = unique_name("rpc-loan");
    let server = Server::create(&name, small()).unwrap();
    let mut client = Client::connect(&name).unwrap();
    // Computed in place from the request.
    let p = client.send_request(b"abc").unwrap();
    let request = server.recv().unwrap();
    assert_eq!(request.id(), p.id());
    assert_eq!(request.client(), client.id());
    let mut out = request.loan_response(3).unwrap();
    let (req, resp) = out.split();
    for (o, i) in resp.iter_mut().zip(req) {
        *o = i.to_ascii_uppercase();
    }
    out.send().unwrap();
    assert_eq!(&*client.receive_response(&p).unwrap(), b"ABC");
    // Dropped unanswered, a loan dropped unsent, a response too large: the
    // client gets NoResponse for each, and its slot back.
    for how in 0..3 {
        let p = client.send_request(b"q").unwrap();
        let request = server.recv().unwrap();
        match how {
            0 => drop(request),
            1 => drop(request.loan_response(10).unwrap()),
            _ => assert!(matches!(
                request.respond(&[0; 1025]),
                Err(Error::TooLarge {
                    len: 1025,
                    max: 1024,
                    ..
                })
            )),
        }
        match client.receive_response(&p) {
            Err(Error::NoResponse { id, .. }) => assert_eq!(id, p.id()),
            other => panic!("{how}: {other:?}"),
        }
    }
    assert_eq!(client.in_flight(), 0);
    // A request too large never leaves.
    assert!(matches!(
        client.send_request(&[0; 257]),
        Err(Error::TooLarge {
            len: 257,
            max: 256,
            ..
        })
    ));
    assert!(server.try_recv().unwrap().is_none());
}

#[test]
fn in_flight_is_limited_and_dropped_pendings_free_their_slot_when_answered() {
    let name = unique_name("rpc-limit");
    let server = Server::create(&name, small()).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let pending: Vec<_> = (0..4).map(|_| client.send_request(b"p").unwrap()).collect();
    match client.send_request(b"one too many") {
        Err(e @ Error::LimitReached { limit: 4, .. }) => {
            assert!(e.to_string().contains("max_in_flight"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A pending received twice, or another client's: refused.
    let mut other = Client::connect(&name).unwrap();
    let r = server.recv().unwrap();
    r.respond(b"r").unwrap();
    drop(client.receive_response(&pending[0]).unwrap());
    assert!(matches!(
        client.receive_response(&pending[0]),
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        other.try_receive_response(&pending[1]),
        Err(Error::InvalidInput { .. })
    ));
    // Abandoned: the slot stays busy until the answer comes.
    drop(pending);
    let _p1 = client.send_request(b"p").unwrap();
    assert!(matches!(
        client.send_request(b"p"),
        Err(Error::LimitReached { .. })
    ));
    for _ in 0..4 {
        server.recv().unwrap().respond(b"late").unwrap();
    }
    let again: Vec<_> = (0..3).map(|_| client.send_request(b"p").unwrap()).collect();
    assert_eq!(client.in_flight(), 4);
    drop(again);
}

#[test]
fn max_clients_is_a_clear_error_and_a_leaving_client_makes_room() {
    let name = unique_name("rpc-clients");
    let server = Server::create(&name, small().max_clients(2)).unwrap();
    let a = Client::connect(&name).unwrap();
    let b = Client::connect(&name).unwrap();
    match Client::connect(&name) {
        Err(e @ Error::LimitReached { limit: 2, .. }) => {
            let text = e.to_string();
            assert!(text.contains("max_clients") && text.contains('2'), "{text}")
        }
        other => panic!("{other:?}"),
    }
    let ids: Vec<_> = server.clients().unwrap().iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![a.id(), b.id()]);
    drop(a);
    // The server resets the region at its next look.
    assert!(server.try_recv().unwrap().is_none());
    let ids: Vec<_> = server.clients().unwrap().iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![b.id()]);
    let c = Client::connect(&name).unwrap();
    assert_ne!(c.id(), b.id());
    assert_eq!(server.clients().unwrap().len(), 2);
}

/// A leaving client rings the server once its lock is free: the look
/// that ring brings resets its region. (A server that waits through a
/// wait set or `recv_async` looks only when rung while idle; its upkeep,
/// which would find the region later, does not run then.)
#[test]
fn the_look_a_leaving_client_rings_for_resets_its_region() {
    let name = unique_name("rpc-leave-ring");
    let server = Server::create(&name, small().max_clients(1)).unwrap();
    for round in 0..100 {
        let client = Client::connect(&name).unwrap();
        // An upkeep now: the next is not due for half a liveness interval
        // (the server's looks below do not reach it).
        server.clients().unwrap();
        let gone = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                drop(client);
                gone.store(true, Ordering::SeqCst);
            });
            // Looking as fast as it can, as a server rung awake does.
            while !gone.load(Ordering::SeqCst) {
                assert!(server.try_recv().unwrap().is_none());
            }
        });
        // One more look, for a ring the loop may not have seen yet.
        assert!(server.try_recv().unwrap().is_none());
        match Client::connect(&name) {
            Ok(next) => drop(next),
            Err(e) => panic!("round {round}: the region of the client that left is not free: {e}"),
        }
        assert!(server.try_recv().unwrap().is_none());
    }
}

#[test]
fn a_server_that_leaves_disconnects_its_clients_and_a_new_one_takes_the_name() {
    let name = unique_name("rpc-restart");
    let server = Server::create(&name, small()).unwrap();
    let mut old = Client::connect(&name).unwrap();
    let pending = old.send_request(b"never answered").unwrap();
    // A second server while the first lives: refused.
    assert!(matches!(
        Server::create(&name, small()),
        Err(Error::AlreadyAttached { side: "server", .. })
    ));
    drop(server);
    assert!(matches!(
        old.receive_response(&pending),
        Err(Error::Disconnected { peer: "server", .. })
    ));
    assert!(matches!(old.call(b"x"), Err(Error::Disconnected { .. })));
    // Unix: the name went with the server; the old client still holds its
    // segment.
    #[cfg(unix)]
    {
        assert!(!in_dev_shm(&name));
        assert!(matches!(
            Client::connect(&name),
            Err(Error::NotFound { .. })
        ));
    }
    // Windows: a name lives as long as its holders, so the old client
    // keeps the retired service's name: a new client finds it and is told
    // the server is gone, and a new server waits (up to 2 s) for the name,
    // which is free once the old client lets go.
    #[cfg(windows)]
    {
        assert!(matches!(
            Client::connect(&name),
            Err(Error::Disconnected { .. })
        ));
        match Server::create(&name, small()) {
            Err(e @ Error::AlreadyExists { .. }) => {
                let why = std::error::Error::source(&e).map(|s| s.to_string());
                assert!(
                    why.as_deref().is_some_and(|w| w.contains("still hold")),
                    "{e}: {why:?}"
                );
            }
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        drop(old);
        assert!(!in_dev_shm(&name));
    }
    let server = Server::create(&name, small()).unwrap();
    let mut new = Client::connect(&name).unwrap();
    with_echo_server(&server, || {
        assert_eq!(&*new.call(b"hello").unwrap(), b"olleh");
    });
    #[cfg(unix)]
    assert!(matches!(old.call(b"x"), Err(Error::Disconnected { .. })));
    // Not a service at all: the name is taken.
    let plain = unique_name("rpc-plain");
    let segment = Segment::create_named(&plain, 1 << 16).unwrap();
    // (Not zeros: those would be waited on as a service being created.)
    segment
        .map(..)
        .unwrap()
        .write_at(0, b"plain bytes")
        .unwrap();
    assert!(matches!(
        Server::create(&plain, small()),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Client::connect(&plain),
        Err(Error::NotAService { .. })
    ));
    drop(segment);
}

#[test]
fn connect_timeout_waits_for_a_server() {
    let name = unique_name("rpc-wait");
    assert!(matches!(
        Client::connect_timeout(&name, Duration::from_millis(20)),
        Err(Error::TimedOut { .. })
    ));
    let waiting = {
        let name = name.clone();
        std::thread::spawn(move || Client::connect_timeout(&name, Duration::from_secs(10)))
    };
    std::thread::sleep(Duration::from_millis(30));
    let server = Server::create(&name, small()).unwrap();
    let mut client = waiting.join().unwrap().unwrap();
    with_echo_server(&server, || {
        assert_eq!(&*client.call(b"ab").unwrap(), b"ba");
    });
}

#[test]
fn a_client_that_breaks_the_protocol_is_evicted_and_the_others_are_served() {
    let name = unique_name("rpc-evict");
    let server = Server::create(&name, small()).unwrap();
    let mut good = Client::connect(&name).unwrap();
    let mut bad = Client::connect(&name).unwrap();
    let p = bad.send_request(b"fine").unwrap();
    server.recv().unwrap().respond(b"ok").unwrap();
    drop(bad.receive_response(&p).unwrap());
    // Its ring head jumps far ahead of what it sent.
    common::break_the_protocol_of(&server, bad.id().slot());
    assert!(server.try_recv().unwrap().is_none());
    let info = server.clients().unwrap();
    let evicted = info.iter().find(|c| c.id == bad.id()).unwrap();
    assert!(evicted.evicted.unwrap().contains("ring"), "{info:?}");
    match bad.call(b"again") {
        Err(e @ Error::Corrupted { .. }) => {
            assert!(e.to_string().contains("stopped serving"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    with_echo_server(&server, || {
        assert_eq!(&*good.call(b"still").unwrap(), b"llits");
    });
}

#[test]
fn inspection_shows_the_server_and_each_client() {
    let name = unique_name("rpc-inspect");
    let server = Server::create(&name, small()).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let a = client.send_request(b"a").unwrap();
    let b = client.send_request(b"b").unwrap();
    let state = rpc::inspect(server.segment()).unwrap();
    assert_eq!(state.config, small());
    assert_eq!(state.server.state, EndpointState::Attached);
    assert_eq!(state.server.pid, std::process::id());
    assert_eq!(state.clients.len(), 1);
    let c = state.clients[0];
    assert_eq!(
        (c.id, c.state, c.sent, c.in_flight),
        (client.id(), EndpointState::Attached, 2, 2)
    );
    // Answered and received (or declined): no longer in flight.
    server.recv().unwrap().respond(b"A").unwrap();
    drop(server.recv().unwrap());
    drop(client.receive_response(&a).unwrap());
    assert!(matches!(
        client.receive_response(&b),
        Err(Error::NoResponse { .. })
    ));
    assert_eq!(
        rpc::inspect(server.segment()).unwrap().clients[0].in_flight,
        0
    );
    // The machine's list knows the kind (Unix: Windows has no list).
    #[cfg(unix)]
    {
        let info = memshare::inspect::named_info(&name).unwrap();
        assert_eq!(info.kind, Some(memshare::inspect::SegmentKind::Rpc));
    }
}

#[test]
fn a_bad_configuration_names_the_limit() {
    let name = unique_name("rpc-config");
    for (config, needle) in [
        (ServerConfig::new().max_clients(0), "max_clients"),
        (ServerConfig::new().max_clients(257), "max_clients"),
        (ServerConfig::new().max_in_flight(65), "max_in_flight"),
        (ServerConfig::new().max_request_len(0), "max_request_len"),
        (
            ServerConfig::new().max_response_len(1 << 33),
            "max_response_len",
        ),
    ] {
        match Server::create(&name, config) {
            Err(e @ Error::OutOfRange { .. }) => assert!(e.to_string().contains(needle), "{e}"),
            other => panic!("{config:?}: {other:?}"),
        }
    }
    assert!(!in_dev_shm(&name));
}

/// A client that keeps the server busy while it wipes the other clients'
/// pending bits (stores its own bit over the whole word) cannot starve
/// them: the server looks at every client's head at its upkeep (the 64th
/// look for a request after half a liveness interval), not only before it
/// parks (it never parks here).
/// Planted (no look at the heads while busy): the other client's request
/// is never taken.
#[test]
fn a_client_wiping_the_pending_bits_of_others_while_busy_cannot_starve_them() {
    use std::sync::atomic::Ordering::Relaxed;
    let name = unique_name("rpc-wipe");
    let server = Server::create(&name, small()).unwrap();
    let mut honest = Client::connect(&name).unwrap();
    let mut hostile = Client::connect(&name).unwrap();
    let (h, b) = (honest.id().slot(), hostile.id().slot());
    assert_eq!(h / 64, b / 64, "the two share a word of the mask");
    // docs/rpc-layout.md: pending[w] at byte 384 + 8w of the header.
    let view = server.segment().map(..).unwrap();
    let pending = view.atomic_u64(384 + 8 * (b / 64) as usize).unwrap();
    let honest_call = honest.send_request(b"me too").unwrap();
    let mut queued = hostile.send_request(b"busy").unwrap();
    let start = std::time::Instant::now();
    let mut served_honest = None;
    while served_honest.is_none() && start.elapsed() < Duration::from_secs(2) {
        pending.store(1 << (b % 64), Relaxed);
        // The hostile client always has a request queued when the server
        // looks: the server never runs out of work, so never parks.
        let next = hostile.send_request(b"busy").unwrap();
        let request = server.try_recv().unwrap().expect("a request is queued");
        if request.client().slot() == h {
            served_honest = Some(start.elapsed());
        }
        let answer = reversed(&request);
        request.respond(&answer).unwrap();
        if served_honest.is_none() {
            hostile
                .receive_response_timeout(&queued, Duration::from_secs(5))
                .unwrap();
            queued = next;
        }
    }
    // (Within a few liveness intervals; a loaded machine may take longer,
    // so the bound is loose: without the look it is never taken.)
    let after = served_honest.expect("the honest client's request was never taken");
    assert!(
        after < Duration::from_secs(1),
        "taken {after:?} after it was sent"
    );
    assert_eq!(
        &*honest
            .receive_response_timeout(&honest_call, Duration::from_secs(5))
            .unwrap(),
        b"oot em"
    );
}
