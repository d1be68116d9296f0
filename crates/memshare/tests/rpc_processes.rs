//! Request/response between real processes (the test binary re-runs itself
//! as the others): client processes pipelining calls while some are
//! SIGKILLed (each response reaches the request it answers; a dead
//! client's region is reset within the liveness interval, by a server
//! that waits and by one kept busy that never parks), a server
//! SIGKILLed at random points (every pending call ends `Disconnected`
//! within the interval, and a new server takes the name), a client that
//! scribbles over everything a client may write, and a server that
//! scribbles over its answers. The tests run one at a time (each keeps
//! both CPUs of the machine busy, and some time detections).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::chan::rng;
use common::{env, role, spawn, unique_name, wait_for, Detections, TIMEOUT};
use memshare::channel::LIVENESS_INTERVAL;
use memshare::rpc::{self, Client, Server, ServerConfig};
use memshare::Error;

fn config() -> ServerConfig {
    ServerConfig::new()
        .max_clients(8)
        .max_in_flight(4)
        .max_request_len(512)
        .max_response_len(600)
}

/// What a correct server answers to `request`: a tag, then the request
/// reversed (so a response given to the wrong request or client shows).
fn answer_to(request: &[u8]) -> Vec<u8> {
    let mut answer = b"re:".to_vec();
    answer.extend(request.iter().rev());
    answer
}

/// Request `i` of the client process `pid`: names both, and a length that
/// varies with `i`.
fn request(pid: u32, i: u64) -> Vec<u8> {
    let mut r = format!("{pid}/{i}/").into_bytes();
    let mut next = rng(u64::from(pid) << 32 | i);
    let len = (next() % 400) as usize;
    r.extend((0..len).map(|_| b'a' + (next() % 26) as u8));
    r
}

/// Runs `body` on another thread while this one serves: answers each
/// request correctly, holding up to three and answering those in reverse
/// order. Returns what `body` returned and how many requests were answered.
fn serving<T: Send>(server: &Server, body: impl FnOnce() -> T + Send) -> (T, u64) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let result = body();
            stop.store(true, Ordering::Relaxed);
            result
        });
        let mut answered = 0;
        let mut held = Vec::new();
        let mut pick = rng(7);
        let mut answer_held = |held: &mut Vec<rpc::Request<'_>>| {
            while let Some(r) = held.pop() {
                let answer = answer_to(&r);
                r.respond(&answer).unwrap();
                answered += 1;
            }
        };
        // (A body that panics ends the loop too: the panic fails the test
        // at the join, instead of leaving this loop serving for ever.)
        while !stop.load(Ordering::Relaxed) && !worker.is_finished() {
            match server.recv_timeout(Duration::from_millis(2)) {
                Ok(request) => {
                    held.push(request);
                    if held.len() >= 3 || pick() % 3 == 0 {
                        answer_held(&mut held);
                    }
                }
                Err(Error::TimedOut { .. }) => answer_held(&mut held),
                Err(e) => panic!("server: {e}"),
            }
        }
        answer_held(&mut held);
        (worker.join().unwrap(), answered)
    })
}

/// The caller child: pipelines up to four calls at a time, checking each
/// response against its request, `MST_CALLS` of them, then prints `done=`.
fn caller() {
    let calls: u64 = env("MST_CALLS").parse().unwrap();
    let mut client = Client::connect_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
    println!("ready={}", client.id());
    let pid = std::process::id();
    let mut in_flight = std::collections::VecDeque::new();
    let mut sent = 0;
    let mut checked = 0;
    while checked < calls {
        while sent < calls && in_flight.len() < 4 {
            let r = request(pid, sent);
            let p = client.send_request(&r).unwrap();
            in_flight.push_back((p, r));
            sent += 1;
        }
        // Oldest first, though the server answers in any order.
        let (p, r) = in_flight.pop_front().unwrap();
        let response = client.receive_response_timeout(&p, TIMEOUT).unwrap();
        assert_eq!(&*response, &answer_to(&r)[..], "call {checked}");
        checked += 1;
        if checked % 100 == 0 {
            println!("calls={checked}");
        }
    }
    println!("done={checked}");
}

#[test]
fn client_processes_get_their_own_responses_while_some_are_killed() {
    const TEST: &str = "client_processes_get_their_own_responses_while_some_are_killed";
    if role().is_some() {
        caller();
        return;
    }
    // One at a time: each keeps both CPUs busy, and they time detections.
    let _serial = common::serial();
    let name = unique_name("rpc-kill-clients");
    let server = Server::create(&name, config()).unwrap();
    let mut pick = rng(0xc0ffee);
    let mut detections = Detections::new("a killed client's region reset", LIVENESS_INTERVAL);
    let segment = server.segment().clone();
    let ((), answered) = serving(&server, || {
        for round in 0..6 {
            // Four callers; two are killed mid-way.
            let mut kids: Vec<_> = (0..4)
                .map(|_| {
                    spawn(
                        TEST,
                        "caller",
                        &[("MST_NAME", name.clone()), ("MST_CALLS", "3000".into())],
                    )
                })
                .collect();
            let ids: Vec<String> = kids
                .iter_mut()
                .map(|(_, out)| out.after("ready="))
                .collect();
            for ((kid, mut out), id) in kids.drain(2..).zip(&ids[2..]) {
                out.after("calls=");
                std::thread::sleep(Duration::from_micros(pick() % 5000));
                let killed = kid.kill();
                // Reset by the server's own upkeep (the test only watches).
                wait_for(TIMEOUT, || {
                    let state = rpc::inspect(&segment).unwrap();
                    (!state.clients.iter().any(|c| &c.id.to_string() == id)).then_some(())
                });
                detections.record(round, killed.elapsed());
            }
            for (kid, mut out) in kids {
                assert_eq!(out.after("done="), "3000", "round {round}");
                kid.wait_success(TIMEOUT);
            }
            // Everyone gone: every region is reset.
            wait_for(TIMEOUT, || {
                rpc::inspect(&segment)
                    .unwrap()
                    .clients
                    .is_empty()
                    .then_some(())
            });
        }
    });
    assert!(answered >= 6 * 2 * 3000, "{answered}");
    detections.check();
    drop(segment);
    drop(server);
    assert!(!common::in_dev_shm(&name));
}

/// The server child: serves correctly, except that requests starting
/// with `hold` are never answered.
fn holding_server() {
    let name = env("MST_NAME");
    let server = Server::create(&name, config()).unwrap();
    println!("serving={name}");
    let mut held = Vec::new();
    loop {
        let request = server.recv().unwrap();
        if request.starts_with(b"hold") {
            held.push(request);
        } else {
            let answer = answer_to(&request);
            request.respond(&answer).unwrap();
        }
    }
}

#[test]
fn a_killed_server_ends_every_pending_call_and_a_new_one_takes_the_name() {
    const TEST: &str = "a_killed_server_ends_every_pending_call_and_a_new_one_takes_the_name";
    if role().is_some() {
        holding_server();
        return;
    }
    // One at a time: each keeps both CPUs busy, and they time detections.
    let _serial = common::serial();
    let name = unique_name("rpc-kill-server");
    let mut pick = rng(0xbad5eed);
    let mut detections = Detections::new("a killed server", LIVENESS_INTERVAL);
    for round in 0..8 {
        let (server, mut out) = spawn(TEST, "server", &[("MST_NAME", name.clone())]);
        out.after("serving=");
        let killed_at = std::sync::Mutex::new(None);
        let connected = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            // Three clients: calls that are answered, and one held call
            // pending each, while the server is killed.
            let clients: Vec<_> = (0..3u32)
                .map(|c| {
                    let name = &name;
                    let (killed_at, connected) = (&killed_at, &connected);
                    s.spawn(move || {
                        let mut client = Client::connect(name).unwrap();
                        let held = client.send_request(format!("hold {c}").as_bytes()).unwrap();
                        connected.wait();
                        let mut i = 0u64;
                        let end = loop {
                            let r = request(c, i);
                            match client.call_timeout(&r, TIMEOUT) {
                                Ok(response) => assert_eq!(&*response, &answer_to(&r)[..]),
                                Err(e) => break e,
                            }
                            i += 1;
                        };
                        let noticed = Instant::now();
                        assert!(
                            matches!(end, Error::Disconnected { peer: "server", .. }),
                            "round {round} client {c}: {end}"
                        );
                        // The held call, and any later one: Disconnected.
                        assert!(matches!(
                            client.receive_response_timeout(&held, TIMEOUT),
                            Err(Error::Disconnected { .. })
                        ));
                        assert!(matches!(client.call(b"x"), Err(Error::Disconnected { .. })));
                        let killed: Instant = wait_for(TIMEOUT, || *killed_at.lock().unwrap());
                        noticed.saturating_duration_since(killed)
                    })
                })
                .collect();
            connected.wait();
            std::thread::sleep(Duration::from_micros(pick() % 20_000));
            *killed_at.lock().unwrap() = Some(server.kill());
            for c in clients {
                detections.record(round, c.join().unwrap());
            }
        });
        // A new server takes the name (the old service is retired); a new
        // client is served.
        let (server, mut out) = spawn(TEST, "server", &[("MST_NAME", name.clone())]);
        out.after("serving=");
        let mut client = Client::connect(&name).unwrap();
        assert_eq!(&*client.call(b"again").unwrap(), b"re:niaga");
        drop(client);
        server.kill();
    }
    detections.check();
    // The killed server's name: stale once nobody holds it.
    assert!(matches!(
        Client::connect(&name),
        Err(Error::NotFound { .. }) | Err(Error::Disconnected { .. })
    ));
    let _ = memshare::Segment::remove(&name);
}

/// The scribbler child: connects, then writes random and chosen values
/// everywhere a client may write (its region's control part and request
/// buffers: ring head and entries, slot words with valid-looking phases,
/// request lengths up to 2^32 - 1; the pending mask; the wake words) while
/// it sends requests, until told to stop (stdin closes). Evicted, it
/// connects again.
fn scribbler() {
    let name = env("MST_NAME");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = std::io::Read::read(&mut std::io::stdin(), &mut b);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut next = rng(u64::from(std::process::id()));
    let mut said_ready = false;
    let mut reconnects = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut client = match Client::connect(&name) {
            Ok(client) => client,
            // The server has not reset the last region yet.
            Err(Error::LimitReached { .. }) => continue,
            Err(e) => panic!("{e}"),
        };
        reconnects += 1;
        let slot = u64::from(client.id().slot());
        let segment = client.segment().clone();
        let view = segment.map(..).unwrap();
        let header = view.read_pod::<[u64; 16]>(0).unwrap();
        let in_flight = header[2] >> 32;
        let ring_len = in_flight.next_power_of_two();
        let slots_at = (136 + 4 * ring_len).next_multiple_of(64);
        let (stride, control_len, region_len) = (header[6], header[8], header[9]);
        let responses_at = control_len + (in_flight * stride).next_multiple_of(4096);
        let region = 4096 + slot * region_len;
        if !said_ready {
            println!("ready=1");
            said_ready = true;
        }
        while !stop.load(Ordering::Relaxed) {
            let sent = client.send_request(b"scribble");
            for _ in 0..8 {
                let r = next();
                let s = (r >> 8) % in_flight;
                let (offset, value): (u64, u64) = match r % 8 {
                    0 => (region + (r >> 16) % responses_at, next()),
                    // A slot word claiming REQUESTED, with any id.
                    1 => (region + slots_at + 64 * s, next() << 3 | 1),
                    // A request length up to 2^32 - 1 (the u32 at +8).
                    2 => (region + slots_at + 64 * s + 8, next() & 0xffff_ffff),
                    // The ring's head and entries.
                    3 => (region + 128, next() % 8),
                    4 => (
                        region + 136 + 8 * ((r >> 16) % (ring_len / 2).max(1)),
                        next() % (2 * in_flight),
                    ),
                    5 => (384 + ((r >> 16) % 4) * 8, next()),
                    6 => (1024 + slot * 8, next()),
                    _ => (256, next()),
                };
                let _ = view.write_pod::<u64>((offset & !7) as usize, &value);
            }
            let outcome = match sent {
                Ok(p) => client
                    .receive_response_timeout(&p, Duration::from_millis(1))
                    .map(|r| r.len()),
                Err(e) => Err(e),
            };
            if matches!(outcome, Err(Error::Corrupted { .. })) {
                break;
            }
        }
    }
    eprintln!("scribbler: {reconnects} connections");
}

#[test]
fn a_scribbling_client_cannot_disturb_the_server_or_other_clients() {
    const TEST: &str = "a_scribbling_client_cannot_disturb_the_server_or_other_clients";
    if role().is_some() {
        scribbler();
        return;
    }
    // One at a time: each keeps both CPUs busy, and they time detections.
    let _serial = common::serial();
    let name = unique_name("rpc-scribbler");
    let server = Server::create(&name, config()).unwrap();
    serving(&server, || {
        let mut cmd = common::child(TEST, "scribbler");
        cmd.stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::piped())
            .env("MST_NAME", &name);
        let mut kid = common::Reaped::spawn(cmd);
        let out = kid.0.as_mut().unwrap().stdout.take().unwrap();
        let mut out = common::Output::new(out);
        out.after("ready=");
        let mut honest = Client::connect(&name).unwrap();
        let pid = std::process::id();
        for i in 0..5000u64 {
            let r = request(pid, i);
            let response = honest.call_timeout(&r, TIMEOUT).unwrap();
            assert_eq!(&*response, &answer_to(&r)[..], "call {i}");
        }
        // Stopped: the server still serves.
        drop(kid.0.as_mut().unwrap().stdin.take());
        kid.wait_success(TIMEOUT);
        assert_eq!(&*honest.call(b"after").unwrap(), b"re:retfa");
    });
}

/// The hostile server child: takes requests and answers them, but writes
/// random values over the slots and response buffers of every region
/// first (everything a server may write).
fn hostile_server() {
    let name = env("MST_NAME");
    let server = Server::create(&name, config()).unwrap();
    let segment = server.segment().clone();
    let view = segment.map(..).unwrap();
    let len = segment.len();
    println!("serving={name}");
    let mut next = rng(u64::from(std::process::id()));
    loop {
        let request = match server.recv_timeout(Duration::from_millis(1)) {
            Ok(r) => Some(r),
            Err(Error::TimedOut { .. }) => None,
            Err(e) => panic!("{e}"),
        };
        for _ in 0..16 {
            let offset = (4096 + next() % (len - 4096 - 8)) & !7;
            let _ = view.write_pod::<u64>(offset as usize, &next());
        }
        if let Some(r) = request {
            let _ = match next() % 3 {
                0 => r.respond(b"junk"),
                1 => {
                    let answer = answer_to(&r);
                    r.respond(&answer)
                }
                _ => {
                    drop(r);
                    Ok(())
                }
            };
        }
    }
}

#[test]
fn a_scribbling_server_gets_errors_or_answers_never_a_crash_or_hang() {
    const TEST: &str = "a_scribbling_server_gets_errors_or_answers_never_a_crash_or_hang";
    if role().is_some() {
        hostile_server();
        return;
    }
    // One at a time: each keeps both CPUs busy, and they time detections.
    let _serial = common::serial();
    let name = unique_name("rpc-hostile-server");
    let (server, mut out) = spawn(TEST, "server", &[("MST_NAME", name.clone())]);
    out.after("serving=");
    let mut client = Client::connect(&name).unwrap();
    let started = Instant::now();
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..3000u64 {
        let r = request(1, i);
        let result = client
            .call_timeout(&r, Duration::from_millis(50))
            .map(|response| response.len());
        let outcome = match result {
            Ok(len) => {
                assert!(len <= 600);
                "answered"
            }
            Err(Error::NoResponse { .. }) => "declined",
            Err(Error::TimedOut { .. }) => "timed out",
            // Its slot is lost, it was evicted, or every slot is lost or
            // waiting: start afresh.
            Err(e @ (Error::Corrupted { .. } | Error::LimitReached { .. })) => {
                client = Client::connect(&name).unwrap_or_else(|e| panic!("reconnect: {e}"));
                if matches!(e, Error::Corrupted { .. }) {
                    "corrupted"
                } else {
                    "reconnected"
                }
            }
            Err(e) => panic!("call {i}: {e}"),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    eprintln!("outcomes: {outcomes:?} in {:?}", started.elapsed());
    assert!(
        outcomes.get("answered").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    drop(client);
    server.kill();
    let _ = memshare::Segment::remove(&name);
}

/// The queuing child: pushes three requests, says so, and waits to be
/// killed.
#[cfg(target_os = "linux")]
fn queuer() {
    let mut client = Client::connect_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
    let pending: Vec<_> = (0..3)
        .map(|i| client.send_request(format!("q{i}").as_bytes()).unwrap())
        .collect();
    println!("queued={}", pending.len());
    std::thread::sleep(TIMEOUT);
}

// (Linux: the thread's CPU time is read with CLOCK_THREAD_CPUTIME_ID.)
#[cfg(target_os = "linux")]
#[test]
fn a_server_that_owes_a_dead_client_parks_instead_of_spinning_on_its_queue() {
    const TEST: &str = "a_server_that_owes_a_dead_client_parks_instead_of_spinning_on_its_queue";
    if role().is_some() {
        queuer();
        return;
    }
    let name = unique_name("rpc-owed");
    let server = Server::create(&name, config()).unwrap();
    server.set_wait_strategy(memshare::channel::WaitStrategy::Park);
    let (child, mut out) = spawn(TEST, "queuer", &[("MST_NAME", name.clone())]);
    out.after("queued=");
    // The server takes one request and holds it; two more stay queued.
    let owed = server.recv_timeout(TIMEOUT).unwrap();
    child.kill();
    // The server sees the client dead (it still owes it an answer, so its
    // region is not reset yet).
    assert!(server.clients().unwrap().is_empty());
    let cpu = common::thread_cpu_time();
    let end = server.recv_timeout(Duration::from_millis(300));
    let spent = common::thread_cpu_time() - cpu;
    assert!(matches!(end, Err(Error::TimedOut { .. })), "{end:?}");
    // Parked, it wakes every liveness interval; spinning, it would burn
    // the whole 300 ms.
    assert!(
        spent < Duration::from_millis(60),
        "the server used {spent:?} of CPU in a 300 ms wait"
    );
    drop(owed);
}

/// The idle child: connects, makes one call, says so, and waits to be
/// killed.
fn idler() {
    let mut client = Client::connect_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
    assert_eq!(&*client.call(b"hello").unwrap(), &answer_to(b"hello")[..]);
    println!("ready={}", client.id());
    std::thread::sleep(TIMEOUT);
}

#[test]
fn a_busy_server_resets_a_killed_clients_region_within_the_liveness_interval_at_the_median() {
    const TEST: &str =
        "a_busy_server_resets_a_killed_clients_region_within_the_liveness_interval_at_the_median";
    if role().is_some() {
        idler();
        return;
    }
    // One at a time: it keeps both CPUs busy, and it times detections.
    let _serial = common::serial();
    let name = unique_name("rpc-busy-upkeep");
    let server = Server::create(&name, config()).unwrap();
    // Never parked: a region is reset by the upkeep the server does
    // between requests, not by the one after a park slice (the other
    // tests' servers wait, and would reset it there).
    server.set_wait_strategy(memshare::channel::WaitStrategy::Spin);
    let segment = server.segment().clone();
    let stop = AtomicBool::new(false);
    // The busy client's calls so far, and the rounds during which it made
    // none (each round lasts tens of milliseconds, a call a few).
    let made = std::sync::atomic::AtomicU64::new(0);
    let mut idle_rounds = Vec::new();
    let mut pick = rng(0xb05e);
    let mut detections = Detections::new(
        "a killed client's region reset by a busy server",
        LIVENESS_INTERVAL,
    );
    let (calls, answered) = serving(&server, || {
        std::thread::scope(|s| {
            // A client that keeps the server busy.
            let busy = s.spawn(|| {
                let mut client = Client::connect(&name).unwrap();
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = request(0, calls);
                    let response = client.call_timeout(&r, TIMEOUT).unwrap();
                    assert_eq!(&*response, &answer_to(&r)[..]);
                    calls += 1;
                    made.store(calls, Ordering::Relaxed);
                }
                calls
            });
            // Stops the busy client however the rounds end (a panic too).
            let stop_busy = common::OnDrop(|| stop.store(true, Ordering::Relaxed));
            for round in 0..8 {
                let before = made.load(Ordering::Relaxed);
                let (kid, mut out) = spawn(TEST, "idler", &[("MST_NAME", name.clone())]);
                let id = out.after("ready=");
                std::thread::sleep(Duration::from_micros(pick() % 20_000));
                let died = kid.kill();
                wait_for(TIMEOUT, || {
                    let state = rpc::inspect(&segment).unwrap();
                    (!state.clients.iter().any(|c| c.id.to_string() == id)).then_some(())
                });
                detections.record(round, died.elapsed());
                if made.load(Ordering::Relaxed) == before {
                    idle_rounds.push(round);
                }
            }
            drop(stop_busy);
            busy.join().unwrap()
        })
    });
    // The server was busy through every round: the busy client's calls
    // went on while each idle client started, was killed and was found
    // dead. (Their number depends on the machine's load: about 100 here,
    // most waiting out the serving loop's 2 ms hold.) Every call was
    // answered: the busy client's and the idle clients' one each.
    assert!(
        idle_rounds.is_empty(),
        "no busy call in rounds {idle_rounds:?} ({calls} calls)"
    );
    assert_eq!(answered, calls + 8, "{calls} calls");
    detections.check();
    drop(segment);
    drop(server);
    assert!(!common::in_dev_shm(&name));
}

/// The child that leaves things behind: connects, sends one request, says
/// which region it has, and waits to be killed.
fn one_request() {
    let mut client = Client::connect_timeout(&env("MST_NAME"), TIMEOUT).unwrap();
    let _pending = client.send_request(b"held").unwrap();
    println!("region={}", client.id().slot());
    std::thread::sleep(TIMEOUT);
}

/// What a hostile client left in its region before it died never reaches
/// the next client of the region (found by a review):
/// - it changed its `instance` under a request the server holds: the
///   region is not reset (no other client takes it) until that request is
///   answered or dropped, and then the next client's calls work (before:
///   the server forgot what it owed, reset the region under the held slot,
///   and the next client's first request, in that slot, got it evicted;
///   in a debug build, answering the held request underflowed the count);
/// - it wrote its region free itself, with a head no reset leaves: the next
///   client starts from a clean region (before: it built on that head, and
///   its first request overflowed it);
/// - it wrote its region free under a request the server holds: the next
///   client's request in that slot waits for the held one's answer (before:
///   the next client was evicted).
#[test]
fn what_a_dead_client_left_in_its_region_never_reaches_the_next_client() {
    const TEST: &str = "what_a_dead_client_left_in_its_region_never_reaches_the_next_client";
    use std::sync::atomic::Ordering::Relaxed;
    if role().is_some() {
        one_request();
        return;
    }
    let name = unique_name("rpc-left");
    let server = Server::create(&name, config().max_clients(1)).unwrap();
    // docs/rpc-layout.md: region 0 starts at 4096; `state` at its byte 0,
    // `instance` at 8, `head` at 128.
    let view = server.segment().map(..).unwrap();
    let (state, instance, head) = (4096, 4096 + 8, 4096 + 128);
    let call = |client: &mut Client, request: &[u8]| {
        let (answer, _) = serving(&server, || client.call(request).map(|r| r.to_vec()));
        assert_eq!(answer.unwrap(), answer_to(request));
    };
    // A child that sent one request, in region 0.
    let leaving = || {
        let (child, mut out) = spawn(TEST, "one", &[("MST_NAME", name.clone())]);
        assert_eq!(out.after("region="), "0");
        child
    };
    // The server resets the region the last client left (its upkeep).
    let freed = || {
        wait_for(TIMEOUT, || {
            server.clients().unwrap();
            (view.atomic_u32(state).unwrap().load(Relaxed) == 0).then_some(())
        })
    };

    let child = leaving();
    let held = server.recv_timeout(TIMEOUT).unwrap();
    view.atomic_u64(instance).unwrap().fetch_xor(1, Relaxed);
    child.kill();
    wait_for(TIMEOUT, || {
        server.clients().unwrap().is_empty().then_some(())
    });
    match Client::connect(&name) {
        Err(Error::LimitReached { .. }) => {}
        other => panic!(
            "a region whose request the server still holds was taken: {:?}",
            other.map(|c| c.id())
        ),
    }
    drop(held);
    let mut next = Client::connect_timeout(&name, TIMEOUT).unwrap();
    call(&mut next, b"after a changed instance");
    drop(next);
    freed();

    let child = leaving();
    view.atomic_u64(head).unwrap().store(u64::MAX, Relaxed);
    view.atomic_u32(state).unwrap().store(0, Relaxed);
    child.kill();
    let mut next = Client::connect_timeout(&name, TIMEOUT).unwrap();
    call(&mut next, b"after a region left free");
    call(&mut next, b"and again");
    drop(next);
    freed();

    // Written free under a request the server holds (in slot 0, the one
    // the next client's first request takes): that request waits for the
    // held one's answer; the next client is not evicted.
    let child = leaving();
    let held = server.recv_timeout(TIMEOUT).unwrap();
    view.atomic_u32(state).unwrap().store(0, Relaxed);
    child.kill();
    let mut next = Client::connect_timeout(&name, TIMEOUT).unwrap();
    let pending = next.send_request(b"behind a held slot").unwrap();
    assert!(matches!(
        server.recv_timeout(Duration::from_millis(50)),
        Err(Error::TimedOut { .. })
    ));
    assert!(next.try_receive_response(&pending).unwrap().is_none());
    drop(held);
    let request = server.recv_timeout(TIMEOUT).unwrap();
    let answer = answer_to(&request);
    request.respond(&answer).unwrap();
    assert_eq!(
        &*next.receive_response_timeout(&pending, TIMEOUT).unwrap(),
        &answer_to(b"behind a held slot")[..]
    );
    call(&mut next, b"and after it");
}
