//! Two bridges, each on its own "machine" (a mount namespace with a private
//! /dev/shm: support/mod.rs), Zenoh in peer mode over TCP on 127.0.0.1 with
//! multicast scouting off and explicit endpoints: machine A's bridge
//! listens, machine B's listens too and connects to A's.
//!
//! - every message of a publisher on A reaches a subscriber on B, in order,
//!   with its contents, 64 B to 1 MiB, its origin (publisher, sequence) in
//!   the origin header;
//! - calls of several clients on B reach the server on A, and each
//!   response its own client;
//! - a bridge killed and restarted (B, then A, whose link B must build
//!   again) resumes the stream; so does a link cut (through a relay) and
//!   mended, both bridges running;
//! - a killed publisher on A is `Disconnected` on B once the bridges notice;
//! - with both directions bridged on both sides, nothing loops back.
//!
//! Each test stops its bridges with SIGTERM, ends its processes and checks
//! that both machines' /dev/shm are empty; processes are killed by their
//! guards whatever happens.
#![cfg(target_os = "linux")]

mod support;

use std::time::{Duration, Instant};

use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
use memshare::rpc::{Client, Server, ServerConfig};
use memshare_bridge::wire::Origin;
use support::{free_port, one_at_a_time, Machine, TempDir, PATIENCE, ROLE};

/// The one way a test may skip (shared with the library's tests).
#[path = "../../memshare/tests/common/privileged.rs"]
mod privileged;

/// The sizes the messages cycle through: 64 B to 1 MiB.
const SIZES: [usize; 7] = [64, 100, 4096, 65_535, 65_536, 300_000, 1 << 20];

/// Whether the test must skip (saying why), or this process plays a role
/// (and has played it: the test function returns).
fn skip_or_role(test: &str) -> bool {
    if let Ok(role) = std::env::var(ROLE) {
        roles::play(&role);
        return true;
    }
    if let Some(why) = support::missing_privileges() {
        privileged::skip(test, why);
        return true;
    }
    false
}

/// Asserts that a line of what a bridge said (`said`) holds `text`.
fn assert_said(said: &[String], text: &str) {
    assert!(
        said.iter().any(|l| l.contains(text)),
        "no {text:?} in {said:?}"
    );
}

/// What every test here starts from: nothing if it skips or this process
/// plays a role (see [`skip_or_role`]), else the two "machines", with the
/// lock that runs these tests one at a time (dropped after them).
fn machines(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Machine, Machine)> {
    if skip_or_role(test) {
        return None;
    }
    let one = one_at_a_time();
    Some((one, Machine::new("A"), Machine::new("B")))
}

/// Configuration files for a pair of bridges: A listens on one port; B
/// listens on another and connects to A.
struct Pair {
    dir: TempDir,
    a_port: u16,
    b_port: u16,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        Pair {
            dir: TempDir::new(tag),
            a_port: free_port(),
            b_port: free_port(),
        }
    }

    /// A's configuration file, with `services` (TOML tables) after its
    /// `[zenoh]` table.
    fn a(&self, services: &str) -> std::path::PathBuf {
        self.dir.write(
            "a.toml",
            &format!(
                "[zenoh]\nlisten = [\"tcp/127.0.0.1:{}\"]\n\n{services}",
                self.a_port
            ),
        )
    }

    fn b(&self, services: &str) -> std::path::PathBuf {
        self.dir.write(
            "b.toml",
            &format!(
                "[zenoh]\nlisten = [\"tcp/127.0.0.1:{}\"]\nconnect = [\"tcp/127.0.0.1:{}\"]\n\n{services}",
                self.b_port, self.a_port
            ),
        )
    }
}

/// The `[pubsub.create]` table of a blocking service for messages up to
/// `max` bytes.
fn blocking_shape(max: usize, publishers: u32) -> String {
    format!(
        "[pubsub.create]\nmax_message_len = {max}\nmax_publishers = {publishers}\ndepth = 16\noverflow = \"block\"\n"
    )
}

fn var(name: &str, value: impl ToString) -> (&str, String) {
    (name, value.to_string())
}

#[test]
fn messages_from_64_bytes_to_1_mib_arrive_in_order_with_their_contents_and_origin() {
    const TEST: &str =
        "messages_from_64_bytes_to_1_mib_arrive_in_order_with_their_contents_and_origin";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let pair = Pair::new("order");
    let count = 140; // 20 rounds of the 7 sizes: 28 MiB in all
    let bridge_a = a.bridge(&pair.a("[[pubsub]]\nservice = \"camera\"\ndirection = \"out\"\n"));
    let header = 32;
    let bridge_b = b.bridge(&pair.b(&format!(
        "[[pubsub]]\nservice = \"camera\"\ndirection = \"in\"\norigin_header = true\n{}",
        blocking_shape((1 << 20) + header, 1)
    )));
    let subscriber = b.role(
        TEST,
        "subscriber",
        &[
            var("SERVICE", "camera"),
            var("COUNT", count),
            var("ORIGIN_HEADER", 1),
            var("EXPECT_DISCONNECT", 1),
        ],
    );
    subscriber.wait_for("subscribed", PATIENCE);
    let publisher = a.role(
        TEST,
        "publisher",
        &[
            var("SERVICE", "camera"),
            var("COUNT", count),
            var("POLICY", "block"),
        ],
    );
    let id = publisher.value("publisher-id");
    publisher.finish();
    subscriber.wait_for(&format!("received {count}"), PATIENCE);
    assert_eq!(subscriber.value("origin-publisher"), id);
    // The publisher is gone: B's subscriber is told, once it has all.
    subscriber.wait_for("publishers-gone", PATIENCE);
    subscriber.finish();
    let said_a = bridge_a.stop();
    let said_b = bridge_b.stop();
    assert_said(&said_a, &format!("pubsub camera: {count} sent"));
    assert_said(&said_b, &format!("0 sent, {count} published, 0 lost"));
    a.assert_clean();
    b.assert_clean();
}

/// A publisher faster than the link: what waits together crosses in one
/// Zenoh publication ("messages"), and every message still arrives once,
/// in order, with its contents, its origin publisher and sequence number.
#[test]
fn a_burst_of_small_messages_crosses_batched_in_order_with_its_origins() {
    const TEST: &str = "a_burst_of_small_messages_crosses_batched_in_order_with_its_origins";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let pair = Pair::new("burst");
    let count = 3000;
    let bridge_a = a.bridge(&pair.a("[[pubsub]]\nservice = \"ticks\"\ndirection = \"out\"\n"));
    let bridge_b = b.bridge(&pair.b(&format!(
        "[[pubsub]]\nservice = \"ticks\"\ndirection = \"in\"\norigin_header = true\n{}",
        blocking_shape(64 + 32, 1)
    )));
    let small = [var("SIZE", 64)];
    let subscriber = b.role(
        TEST,
        "subscriber",
        &[
            var("SERVICE", "ticks"),
            var("COUNT", count),
            var("ORIGIN_HEADER", 1),
            var("EXPECT_DISCONNECT", 1),
            small[0].clone(),
        ],
    );
    subscriber.wait_for("subscribed", PATIENCE);
    let publisher = a.role(
        TEST,
        "publisher",
        &[
            var("SERVICE", "ticks"),
            var("COUNT", count),
            var("POLICY", "block"),
            small[0].clone(),
        ],
    );
    let id = publisher.value("publisher-id");
    publisher.finish();
    subscriber.wait_for(&format!("received {count}"), PATIENCE);
    assert_eq!(subscriber.value("origin-publisher"), id);
    subscriber.wait_for("publishers-gone", PATIENCE);
    subscriber.finish();
    let said_a = bridge_a.stop();
    let said_b = bridge_b.stop();
    let line = said_a
        .iter()
        .find(|l| l.contains(&format!("pubsub ticks: {count} sent")))
        .unwrap_or_else(|| panic!("{said_a:?}"));
    let puts: u64 = line
        .rsplit(", ")
        .next()
        .and_then(|p| p.strip_suffix(" puts"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no puts in {line:?}"));
    assert!(
        (1..count).contains(&puts),
        "{count} messages in {puts} puts: none batched ({line})"
    );
    assert_said(
        &said_b,
        &format!("0 sent, {count} published, 0 lost, 0 refused"),
    );
    a.assert_clean();
    b.assert_clean();
}

#[test]
fn rpc_calls_from_b_reach_the_server_behind_a_and_each_response_its_own_client() {
    const TEST: &str =
        "rpc_calls_from_b_reach_the_server_behind_a_and_each_response_its_own_client";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let pair = Pair::new("rpc");
    let (clients, calls) = (3, 40);
    let server = a.role(
        TEST,
        "server",
        &[var("SERVICE", "calc"), var("COUNT", clients * calls)],
    );
    server.wait_for("serving", PATIENCE);
    let bridge_a =
        a.bridge(&pair.a("[[rpc]]\nservice = \"calc\"\nserver = \"local\"\nclients = 4\n"));
    let bridge_b = b.bridge(&pair.b(
        "[[rpc]]\nservice = \"calc\"\nserver = \"remote\"\ntimeout_ms = 20000\n\n[rpc.create]\nmax_clients = 8\nmax_in_flight = 4\n",
    ));
    let callers: Vec<_> = (0..clients)
        .map(|c| {
            b.role(
                TEST,
                "client",
                &[
                    var("SERVICE", "calc"),
                    var("TAG", format!("client{c}")),
                    var("CALLS", calls),
                ],
            )
        })
        .collect();
    for c in callers {
        let said = c.finish();
        assert!(
            said.iter()
                .any(|l| l.contains(&format!("calls ok {calls}"))),
            "{said:?}"
        );
    }
    server.finish();
    let said_a = bridge_a.stop();
    let said_b = bridge_b.stop();
    let answered = format!("rpc calc: {} calls answered, 0 declined", clients * calls);
    assert_said(&said_a, &answered);
    assert_said(&said_b, &answered);
    a.assert_clean();
    b.assert_clean();
}

#[test]
fn a_killed_and_restarted_bridge_resumes_the_stream_on_either_side() {
    const TEST: &str = "a_killed_and_restarted_bridge_resumes_the_stream_on_either_side";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let pair = Pair::new("restart");
    let config_a = pair.a("[[pubsub]]\nservice = \"ticks\"\ndirection = \"out\"\n");
    let config_b = pair.b(&format!(
        "[[pubsub]]\nservice = \"ticks\"\ndirection = \"in\"\n{}",
        blocking_shape(64, 1)
    ));
    let mut bridge_a = a.bridge(&config_a);
    let mut bridge_b = b.bridge(&config_b);
    let subscriber = b.role(
        TEST,
        "subscriber",
        &[
            var("SERVICE", "ticks"),
            var("RESUME", 1),
            var("COUNT", 1_000_000),
            var("SIZE", 64),
        ],
    );
    subscriber.wait_for("subscribed", PATIENCE);
    let publisher = a.role(
        TEST,
        "publisher",
        &[
            var("SERVICE", "ticks"),
            var("COUNT", 1_000_000),
            var("POLICY", "block"),
            var("PACE_US", 2000),
            var("SIZE", 64),
        ],
    );
    // Messages flow; kill bridge B, start it again: they flow again.
    subscriber.wait_for("progress 50", PATIENCE);
    bridge_b.kill();
    let seen = progress(&subscriber);
    bridge_b = b.bridge(&config_b);
    wait_progress(&subscriber, seen + 50);
    // The same with bridge A, which B connects to: B's Zenoh session must
    // build the link again.
    bridge_a.kill();
    let seen = progress(&subscriber);
    bridge_a = a.bridge(&config_a);
    wait_progress(&subscriber, seen + 50);
    // The subscriber checks that what it receives only ever goes forward
    // (gaps are what was in flight when a bridge died).
    publisher.kill();
    let said = subscriber.stop();
    let said_a = bridge_a.stop();
    let said_b = bridge_b.stop();
    eprintln!("B's subscriber: {said:?}\nbridge A: {said_a:?}\nbridge B: {said_b:?}");
    // The publisher was killed, so its name is stale on A: nobody but the
    // test removes it.
    let _ = a
        .command(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "remove")
        .env("SERVICE", "ticks")
        .output();
    a.assert_clean();
    b.assert_clean();
}

/// The highest "progress N" the subscriber said.
fn progress(subscriber: &support::Proc) -> u64 {
    subscriber
        .said()
        .iter()
        .filter_map(|l| l.strip_prefix("progress "))
        .filter_map(|n| n.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

fn wait_progress(subscriber: &support::Proc, at_least: u64) {
    let deadline = Instant::now() + PATIENCE;
    while progress(subscriber) < at_least {
        assert!(
            Instant::now() < deadline,
            "the stream did not resume: {:?}",
            subscriber.said()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dropped_link_resumes_when_it_comes_back() {
    const TEST: &str = "a_dropped_link_resumes_when_it_comes_back";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let dir = TempDir::new("link");
    let a_port = free_port();
    // B reaches A only through the relay, and does not listen: the link
    // cannot go around it.
    let relay = support::Relay::new(a_port);
    let bridge_a = a.bridge(&dir.write(
        "a.toml",
        &format!(
            "[zenoh]\nlisten = [\"tcp/127.0.0.1:{a_port}\"]\n\n[[pubsub]]\nservice = \"ticks\"\ndirection = \"out\"\n"
        ),
    ));
    let bridge_b = b.bridge(&dir.write(
        "b.toml",
        &format!(
            "[zenoh]\nlisten = []\nconnect = [\"tcp/127.0.0.1:{}\"]\n\n[[pubsub]]\nservice = \"ticks\"\ndirection = \"in\"\n{}",
            relay.port(),
            blocking_shape(64, 1)
        ),
    ));
    let subscriber = b.role(
        TEST,
        "subscriber",
        &[
            var("SERVICE", "ticks"),
            var("RESUME", 1),
            var("COUNT", 1_000_000),
            var("SIZE", 64),
        ],
    );
    subscriber.wait_for("subscribed", PATIENCE);
    let publisher = a.role(
        TEST,
        "publisher",
        &[
            var("SERVICE", "ticks"),
            var("COUNT", 1_000_000),
            var("POLICY", "block"),
            var("PACE_US", 2000),
            var("SIZE", 64),
        ],
    );
    subscriber.wait_for("progress 50", PATIENCE);
    relay.cut();
    // B's bridge notices (the connection is reset) and lets its publisher
    // go: its subscriber is told, and the stream stops.
    subscriber.wait_for("waiting: Disconnected", PATIENCE);
    let stalled = progress(&subscriber);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        progress(&subscriber) <= stalled + 10,
        "{:?}",
        subscriber.said()
    );
    // Zenoh on B keeps trying its connect endpoint: once the link is
    // back, the stream resumes.
    relay.mend();
    wait_progress(&subscriber, stalled + 50);
    publisher.kill();
    subscriber.stop();
    let said_b = bridge_b.stop();
    bridge_a.stop();
    eprintln!("bridge B: {said_b:?}");
    let _ = a
        .command(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "remove")
        .env("SERVICE", "ticks")
        .output();
    a.assert_clean();
    b.assert_clean();
}

#[test]
fn a_killed_publisher_is_disconnected_on_the_far_side_once_the_bridges_notice() {
    const TEST: &str = "a_killed_publisher_is_disconnected_on_the_far_side_once_the_bridges_notice";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let pair = Pair::new("killed");
    let bridge_a = a.bridge(&pair.a("[[pubsub]]\nservice = \"feed\"\n"));
    let bridge_b = b.bridge(&pair.b(&format!(
        "[[pubsub]]\nservice = \"feed\"\n{}",
        // Both directions (the default): room for a local publisher too.
        blocking_shape(64, 2)
    )));
    let subscriber = b.role(
        TEST,
        "subscriber",
        &[
            var("SERVICE", "feed"),
            var("COUNT", 10),
            var("SIZE", 64),
            var("EXPECT_DISCONNECT", 1),
        ],
    );
    subscriber.wait_for("subscribed", PATIENCE);
    let publisher = a.role(
        TEST,
        "publisher",
        &[
            var("SERVICE", "feed"),
            var("COUNT", 10),
            var("POLICY", "block"),
            var("SIZE", 64),
            var("HOLD", 1),
        ],
    );
    subscriber.wait_for("received 10", PATIENCE);
    // The publisher is alive and idle: nothing is said.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !subscriber
            .said()
            .iter()
            .any(|l| l.contains("publishers-gone")),
        "{:?}",
        subscriber.said()
    );
    let killed = Instant::now();
    publisher.kill();
    let line = subscriber.wait_for("publishers-gone", PATIENCE);
    let took = killed.elapsed();
    subscriber.finish();
    eprintln!("B's subscriber: {line}, {took:?} after the kill");
    assert!(took < Duration::from_secs(5), "{took:?}");
    bridge_a.stop();
    bridge_b.stop();
    a.assert_clean();
    b.assert_clean();
}

#[test]
fn nothing_loops_back_when_both_directions_are_bridged() {
    const TEST: &str = "nothing_loops_back_when_both_directions_are_bridged";
    let Some((_one, a, b)) = machines(TEST) else {
        return;
    };
    let pair = Pair::new("loop");
    // Both sides: both directions (the default); the service has room for
    // a local publisher and the bridge's.
    let service = format!("[[pubsub]]\nservice = \"chat\"\n{}", blocking_shape(64, 2));
    let bridge_a = a.bridge(&pair.a(&service));
    let bridge_b = b.bridge(&pair.b(&service));
    let count = 20;
    let listeners: Vec<_> = [&a, &b]
        .iter()
        .map(|m| {
            let s = m.role(
                TEST,
                "subscriber",
                &[
                    var("SERVICE", "chat"),
                    var("COUNT", 2 * count),
                    var("ANY_ORDER", 1),
                    var("QUIET_MS", 1000),
                ],
            );
            s.wait_for("subscribed", PATIENCE);
            s
        })
        .collect();
    let publishers: Vec<_> = [(&a, 0), (&b, 1_000_000)]
        .iter()
        .map(|(m, first)| {
            m.role(
                TEST,
                "publisher",
                &[
                    var("SERVICE", "chat"),
                    var("COUNT", count),
                    var("FIRST", first),
                    var("POLICY", "block"),
                    var("SIZE", 64),
                    var("OPEN", 1),
                    // The local listener and the bridge.
                    var("SUBSCRIBERS", 2),
                ],
            )
        })
        .collect();
    for p in publishers {
        p.finish();
    }
    // Each side receives its own 20 and the other's 20, each once, and
    // then nothing for a second.
    for l in listeners {
        let said = l.finish();
        assert!(
            said.iter()
                .any(|l| l.contains(&format!("received {}", 2 * count))),
            "{said:?}"
        );
    }
    for bridge in [bridge_a, bridge_b] {
        let said = bridge.stop();
        let line = format!("pubsub chat: {count} sent, {count} published, 0 lost");
        assert!(said.iter().any(|l| l.contains(&line)), "{said:?}");
    }
    a.assert_clean();
    b.assert_clean();
}

/// The processes the tests start, each on its machine.
mod roles {
    use super::*;

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn num(name: &str, default: u64) -> u64 {
        env(name).map_or(default, |v| v.parse().expect("a number"))
    }

    pub fn play(role: &str) {
        match role {
            "publisher" => publisher(),
            "subscriber" => subscriber(),
            "server" => server(),
            "client" => client(),
            "remove" => {
                let _ = memshare::Segment::remove(&env("SERVICE").unwrap());
            }
            other => panic!("no role {other:?}"),
        }
    }

    /// Message `i`: `len` bytes, `i` in the first 8, then bytes that
    /// depend on `i` and their position.
    pub fn fill(i: u64, out: &mut [u8]) {
        out[..8].copy_from_slice(&i.to_le_bytes());
        for (j, b) in out[8..].iter_mut().enumerate() {
            *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
        }
    }

    /// The index of a message, checked against what `fill` makes.
    pub fn check(message: &[u8]) -> u64 {
        assert!(message.len() >= 8, "a message of {} bytes", message.len());
        let i = u64::from_le_bytes(message[..8].try_into().unwrap());
        let mut want = vec![0u8; message.len()];
        fill(i, &mut want);
        assert!(want == message, "message {i}: its contents differ");
        i
    }

    /// The size of message `i`.
    pub fn size(i: u64) -> usize {
        match env("SIZE") {
            Some(s) => s.parse().unwrap(),
            None => SIZES[i as usize % SIZES.len()],
        }
    }

    fn publisher() {
        let service = env("SERVICE").unwrap();
        let count = num("COUNT", 10);
        let first = num("FIRST", 0);
        let pace = Duration::from_micros(num("PACE_US", 0));
        let mut p = if env("OPEN").is_some() {
            // The service exists already (made by the bridge).
            Publisher::open(&service).unwrap()
        } else {
            let max = (0..SIZES.len() as u64).map(size).max().unwrap();
            let policy = match env("POLICY").as_deref() {
                Some("block") => Overflow::Block,
                _ => Overflow::DropOldest,
            };
            let config = ServiceConfig::new()
                .max_message_len(max as u64)
                .depth(16)
                .overflow(policy);
            Publisher::create(&service, config).unwrap()
        };
        // Wait for the subscribers (the bridge's among them) to attach: a
        // message published before a subscriber attaches is not its.
        let subscribers = num("SUBSCRIBERS", 1) as usize;
        let deadline = Instant::now() + PATIENCE;
        while memshare::pubsub::inspect(p.segment())
            .unwrap()
            .subscribers
            .iter()
            .filter(|s| s.state == memshare::channel::EndpointState::Attached)
            .count()
            < subscribers
        {
            assert!(Instant::now() < deadline, "the subscribers did not attach");
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("publisher-id {}", p.id());
        for i in first..first + count {
            let mut loan = p.loan(size(i)).unwrap();
            fill(i, &mut loan);
            loan.publish();
            if !pace.is_zero() {
                std::thread::sleep(pace);
            }
        }
        println!("published {count}");
        if env("HOLD").is_some() {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    fn subscriber() {
        let service = env("SERVICE").unwrap();
        let count = num("COUNT", 10);
        let header = env("ORIGIN_HEADER").is_some();
        let resume = env("RESUME").is_some();
        let any_order = env("ANY_ORDER").is_some();
        // SIGTERM ends it cleanly (detached, nothing left behind).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone()).unwrap();
        let s = Subscriber::open_timeout(&service, PATIENCE).unwrap();
        println!("subscribed");
        let mut next = 0u64;
        let mut last: Option<u64> = None;
        let mut seen = std::collections::HashSet::new();
        let mut origin_publisher = None;
        let mut received = 0u64;
        let mut last_at = Instant::now();
        let mut waited = Duration::ZERO;
        let mut gone = false;
        while received < count && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let message = match s.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(memshare::Error::TimedOut { .. }) if waited < PATIENCE => {
                    waited += Duration::from_millis(100);
                    continue;
                }
                // A restarted bridge, a cut link: the bridge's publisher is
                // gone for a while. Said once per episode.
                Err(memshare::Error::Disconnected { .. }) if resume => {
                    if !std::mem::replace(&mut gone, true) {
                        println!("waiting: Disconnected after {received}");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => panic!("after {received} messages: {e}"),
            };
            let payload = if header {
                let (origin, payload) = Origin::split(&message).unwrap();
                let id = origin.publisher.to_string();
                if origin_publisher.is_none() {
                    println!("origin-publisher {id}");
                    origin_publisher = Some(id.clone());
                }
                assert_eq!(Some(&id), origin_publisher.as_ref());
                // The publisher's sequence numbers start at 0, as the
                // messages' indices do.
                assert_eq!(origin.sequence, check(payload));
                payload
            } else {
                &message[..]
            };
            let i = check(payload);
            if any_order {
                assert!(seen.insert(i), "message {i} came twice");
            } else if resume {
                assert!(last.is_none_or(|l| i > l), "{i} after {last:?}");
                last = Some(i);
            } else {
                assert_eq!(i, next, "out of order");
                assert_eq!(payload.len(), size(i), "message {i}'s length");
                next += 1;
            }
            received += 1;
            waited = Duration::ZERO;
            gone = false;
            last_at = Instant::now();
            if resume && received.is_multiple_of(10) {
                println!("progress {received}");
            }
        }
        println!("received {received}");
        if let Some(ms) = env("QUIET_MS") {
            // Nothing more may come (no copy, no loop).
            let quiet = Duration::from_millis(ms.parse().unwrap());
            match s.recv_timeout(quiet) {
                Err(memshare::Error::TimedOut { .. } | memshare::Error::Disconnected { .. }) => {}
                Ok(m) => panic!("one more message came: {}", check(&m)),
                Err(e) => panic!("{e}"),
            }
        }
        if env("EXPECT_DISCONNECT").is_some() {
            match s.recv_timeout(PATIENCE) {
                Err(memshare::Error::Disconnected { .. }) => {
                    println!(
                        "publishers-gone: Disconnected {:?} after the last message",
                        last_at.elapsed()
                    )
                }
                Ok(m) => panic!("one more message came: {}", check(&m)),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The server's answer to `request`.
    pub fn answer(request: &[u8]) -> Vec<u8> {
        let mut r = b"re:".to_vec();
        r.extend(request.iter().rev());
        r
    }

    fn server() {
        let service = env("SERVICE").unwrap();
        let count = num("COUNT", 1);
        let server = Server::create(&service, ServerConfig::new()).unwrap();
        println!("serving");
        for _ in 0..count {
            let request = server.recv_timeout(PATIENCE).unwrap();
            let response = answer(&request);
            request.respond(&response).unwrap();
        }
        println!("served {count}");
    }

    fn client() {
        let service = env("SERVICE").unwrap();
        let tag = env("TAG").unwrap();
        let calls = num("CALLS", 1);
        let mut client = Client::connect_timeout(&service, PATIENCE).unwrap();
        // Pipelined, 3 at a time: answers come back in any order, each to
        // its own request.
        let mut done = 0;
        let mut k = 0;
        while done < calls {
            let mut pending = Vec::new();
            while pending.len() < 3 && k < calls {
                let request = format!("{tag}-{k}-{}", "x".repeat(k as usize * 7));
                pending.push((client.send_request(request.as_bytes()).unwrap(), request));
                k += 1;
            }
            for (p, request) in pending.iter().rev() {
                let response = client.receive_response_timeout(p, PATIENCE).unwrap();
                assert_eq!(&*response, &answer(request.as_bytes())[..], "{request}");
                done += 1;
            }
        }
        println!("calls ok {done}");
    }
}
