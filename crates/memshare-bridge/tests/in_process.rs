//! A bridge in this process, and a plain Zenoh session talking to it over
//! TCP on 127.0.0.1: what needs no second machine (no root, no namespace).
//! Every name a test makes here is its own (the process id is in it) and
//! gone when it ends.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use memshare::rpc::{Server, ServerConfig};
use memshare_bridge::config::ServerSide;
use memshare_bridge::{Bridge, Config, RpcConfig};
use zenoh::Wait;

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
    assert_eq!(stats[0].declined, 1, "{}", stats[0]);
    drop(request);
    drop(server);
    other.close().wait().unwrap();
    assert!(!std::path::Path::new(&format!("/dev/shm/{service}")).exists());
}
