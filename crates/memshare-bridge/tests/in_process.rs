//! A bridge in this process, and a plain Zenoh session talking to it over
//! TCP on 127.0.0.1: what needs no second machine (no root, no namespace).
//! Every name a test makes here is its own (the process id is in it) and
//! gone when it ends.
#![cfg(target_os = "linux")]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use memshare::rpc::{Server, ServerConfig};
use memshare_bridge::config::ServerSide;
use memshare_bridge::{Bridge, Config, RpcConfig};
use zenoh::Wait;

/// How many queries may wait for a served service's workers (the
/// bridge's, documented in docs/bridge.md).
const QUEUED: usize = 256;

/// A TCP port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Zenoh session that connects to `endpoint` only.
fn peer(endpoint: &str) -> zenoh::Session {
    let mut config = Config::default();
    config.zenoh.listen = Some(Vec::new());
    config.zenoh.connect = vec![endpoint.to_owned()];
    zenoh::open(config.zenoh_config().unwrap()).wait().unwrap()
}

/// Stopping a served service with many idle workers takes about one idle
/// wait (20 ms), not one per worker: they took turns at the queue's lock,
/// each waiting out a whole idle wait after the stop (256 workers: 5 s).
#[test]
fn stopping_many_idle_workers_takes_one_idle_wait_not_one_each() {
    let service = format!("bip-{}-idle", std::process::id());
    let server = Server::create(&service, ServerConfig::new().max_clients(256)).unwrap();
    let mut config = Config::default();
    config.zenoh.listen = Some(vec![format!("tcp/127.0.0.1:{}", free_port())]);
    let mut rpc = RpcConfig::new(&service, ServerSide::Local);
    rpc.clients = Some(256);
    config.rpc.push(rpc);
    let bridge = Bridge::start(&config, false).unwrap();
    // The workers up and idle, taking turns at the queue.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    drop(bridge.stop());
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "stopping 256 idle workers took {took:?}"
    );
    drop(server);
    assert!(!std::path::Path::new(&format!("/dev/shm/{service}")).exists());
}

#[test]
fn stopping_does_not_wait_for_a_call_the_local_server_sits_on() {
    let service = format!("bip-{}-calc", std::process::id());
    let server = Server::create(&service, ServerConfig::new()).unwrap();
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut config = Config::default();
    config.zenoh.listen = Some(vec![endpoint.clone()]);
    let mut rpc = RpcConfig::new(&service, ServerSide::Local);
    rpc.timeout_ms = Some(10_000);
    config.rpc.push(rpc);
    let bridge = Bridge::start(&config, false).unwrap();
    let other = peer(&endpoint);
    let key = format!("memshare/{service}");
    // Ask until a query reaches the server (the link and the queryable's
    // declaration take a moment), and keep it unanswered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let request = loop {
        assert!(Instant::now() < deadline, "no query reached the server");
        other
            .get(key.as_str())
            .payload("2+2")
            .timeout(Duration::from_secs(30))
            .callback(|_| {})
            .wait()
            .unwrap();
        if let Ok(request) = server.recv_timeout(Duration::from_millis(200)) {
            break request;
        }
    };
    let started = Instant::now();
    let stats = bridge.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "stopping took {took:?} (timeout_ms = 10000)"
    );
    // Each query the loop sent that a worker was calling with when the
    // bridge stopped is declined: one at least (more if a query took over
    // 200 ms to reach the server on a loaded machine and the loop sent
    // another).
    assert!(stats[0].declined >= 1, "{}", stats[0]);
    drop(request);
    drop(server);
    other.close().wait().unwrap();
    assert!(!std::path::Path::new(&format!("/dev/shm/{service}")).exists());
}

#[test]
fn a_flood_of_queries_for_a_slow_server_is_answered_busy_and_stalls_no_other_service() {
    let pid = std::process::id();
    let (slow, echo) = (format!("bip-{pid}-slow"), format!("bip-{pid}-echo"));
    let slow_server = Server::create(&slow, ServerConfig::new()).unwrap();
    let echo_server = Server::create(&echo, ServerConfig::new()).unwrap();
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut config = Config::default();
    config.zenoh.listen = Some(vec![endpoint.clone()]);
    let mut rpc = RpcConfig::new(&slow, ServerSide::Local);
    rpc.clients = Some(1);
    config.rpc.push(rpc);
    config.rpc.push(RpcConfig::new(&echo, ServerSide::Local));
    let bridge = Bridge::start(&config, false).unwrap();
    let other = peer(&endpoint);
    // The slow server takes one request and sits on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        assert!(Instant::now() < deadline, "no query reached the server");
        other
            .get(format!("memshare/{slow}"))
            .timeout(Duration::from_secs(30))
            .callback(|_| {})
            .wait()
            .unwrap();
        if let Ok(request) = slow_server.recv_timeout(Duration::from_millis(200)) {
            break request;
        }
    };
    // The flood: more than can wait.
    let flood = 2 * QUEUED;
    let (busy, said_busy) = mpsc::channel();
    for _ in 0..flood {
        let busy = busy.clone();
        other
            .get(format!("memshare/{slow}"))
            .timeout(Duration::from_secs(30))
            .callback(move |reply| {
                if let Err(e) = reply.result() {
                    let text = e.payload().try_to_string().unwrap_or_default().into_owned();
                    if text.contains("busy") {
                        let _ = busy.send(());
                    }
                }
            })
            .wait()
            .unwrap();
    }
    // Another service on the link still works.
    let (echoed, got_echo) = mpsc::channel();
    other
        .get(format!("memshare/{echo}"))
        .payload("ping")
        .timeout(Duration::from_secs(10))
        .callback(move |reply| {
            if let Ok(sample) = reply.result() {
                let _ = echoed.send(sample.payload().to_bytes().into_owned());
            }
        })
        .wait()
        .unwrap();
    let request = echo_server
        .recv_timeout(Duration::from_secs(10))
        .expect("the other service's query reaches its server");
    request.respond(b"pong").unwrap();
    let response = got_echo.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(response, b"pong");
    // What could not wait was answered at once.
    let answered = (0..flood - QUEUED)
        .take_while(|_| said_busy.recv_timeout(Duration::from_secs(10)).is_ok())
        .count();
    assert!(answered >= flood - QUEUED - 1, "{answered} busy replies");
    let started = Instant::now();
    drop(bridge);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
    drop((slow_server, echo_server));
    other.close().wait().unwrap();
    for name in [slow, echo] {
        assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    }
}
