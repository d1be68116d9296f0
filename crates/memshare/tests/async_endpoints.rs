//! Async (the `async` feature): every endpoint's future on tokio's
//! current-thread and multi-thread runtimes and on `futures::executor`;
//! both ends of a small channel parked on each other through the notifier
//! for thousands of messages (a lost wake-up is a hang, caught by the
//! timeout); wake-ups from other processes, and peers SIGKILLed there
//! (every kind's future says `Disconnected` within about a liveness
//! interval); cancel safety (futures dropped at every point lose and
//! duplicate nothing, and leave the endpoint's own blocking calls
//! unharmed); readiness descriptors in a raw event loop (poll(2) on Unix,
//! `WaitForSingleObject` on Windows); wait sets;
//! the typed endpoints' futures on smol's executor (async-executor).
//! The test binary re-runs itself as the peers.
#![cfg(feature = "async")]

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::chan::{message, rng};
use common::{env, role, spawn, unique_name, Detections, TIMEOUT};
use futures::StreamExt;
use memshare::channel::{Receiver, Sender, TypedReceiver, TypedSender, LIVENESS_INTERVAL};
use memshare::pubsub::{
    Overflow, Publisher, ServiceConfig, Subscriber, TypedPublisher, TypedSubscriber,
};
use memshare::rpc::{Client, Server, ServerConfig};
use memshare::{Error, WaitSet};

/// Runs `f` to completion on a tokio current-thread runtime, failing the
/// test after `TIMEOUT` (a lost wake-up hangs).
fn current_thread<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(TIMEOUT, f).await.expect("hung") })
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

const COUNT: u64 = 20_000;

/// A sender task and a receiver task on one current-thread runtime, on a
/// 512-byte ring: each waits for the other through the notifier at almost
/// every message. Every message arrives once, in order, intact.
#[test]
fn both_ends_of_a_small_ring_wait_on_each_other_on_a_current_thread_runtime() {
    let mut rx = Receiver::create(512).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    let max = tx.max_message_len();
    current_thread(async move {
        let sending = async {
            let mut buf = Vec::new();
            for seq in 0..COUNT {
                message(seq, max, &mut buf);
                tx.send_async(&buf).await.unwrap();
            }
            drop(tx);
        };
        let receiving = async {
            let mut buf = Vec::new();
            for seq in 0..COUNT {
                let msg = rx.recv_async().await.unwrap();
                message(seq, max, &mut buf);
                assert_eq!(&*msg, &buf[..], "message {seq}");
            }
            assert!(matches!(
                rx.recv_async().await,
                Err(Error::Disconnected { .. })
            ));
        };
        futures::join!(sending, receiving);
    });
}

/// The same on tokio's multi-thread runtime, each end spawned (the futures
/// are `Send`), the sender reserving in place.
#[test]
fn both_ends_spawned_on_a_multi_thread_runtime() {
    let mut rx = Receiver::create(256).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    let rt = multi_thread();
    let sending = rt.spawn(async move {
        for seq in 0..COUNT {
            let mut slot = tx.reserve_async(8).await.unwrap();
            slot.copy_from_slice(&seq.to_le_bytes());
            slot.commit();
        }
    });
    let receiving = rt.spawn(async move {
        let mut seq = 0u64;
        let mut stream = rx.stream();
        while let Some(msg) = stream.next().await {
            assert_eq!(msg.unwrap(), seq.to_le_bytes(), "message {seq}");
            seq += 1;
        }
        seq
    });
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, sending)
            .await
            .expect("hung")
            .unwrap();
        let got = tokio::time::timeout(TIMEOUT, receiving)
            .await
            .expect("hung")
            .unwrap();
        assert_eq!(got, COUNT);
    });
}

/// Publish-subscribe and request/response on `futures::executor`, with
/// their peers in threads: subscribers of one service (sharing its word),
/// a server and a client each waiting through the notifier.
#[test]
fn pubsub_and_rpc_futures_on_the_futures_executor() {
    let name = unique_name("async-ps");
    let config = ServiceConfig::new().depth(4).overflow(Overflow::Block);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let mut a = Subscriber::open(&name).unwrap();
    let mut b = Subscriber::open(&name).unwrap();
    let publishing = std::thread::spawn(move || {
        for i in 0..2000u32 {
            publisher.publish_copy(&i.to_le_bytes()).unwrap();
        }
    });
    futures::executor::block_on(async {
        for i in 0..2000u32 {
            let x = a.recv_async().await.unwrap();
            assert_eq!(&*x, i.to_le_bytes());
            drop(x);
            let y = b.recv_async().await.unwrap();
            assert_eq!(&*y, i.to_le_bytes());
        }
        assert!(matches!(
            a.recv_async().await,
            Err(Error::Disconnected { .. })
        ));
        let rest: Vec<_> = b.stream().collect().await;
        assert!(rest.is_empty());
    });
    publishing.join().unwrap();

    let name = unique_name("async-rpc");
    let mut server = Server::create(&name, ServerConfig::new()).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let calling = std::thread::spawn(move || {
        futures::executor::block_on(async {
            for i in 0..2000u32 {
                let reply = client.call_async(&i.to_le_bytes()).await.unwrap();
                assert_eq!(&*reply, (i * 2).to_le_bytes());
            }
        })
    });
    futures::executor::block_on(async {
        for _ in 0..2000u32 {
            let request = server.recv_async().await.unwrap();
            let i = u32::from_le_bytes((*request).try_into().unwrap());
            request.respond(&(i * 2).to_le_bytes()).unwrap();
        }
    });
    calling.join().unwrap();
}

/// A value of the typed tests: 16 bytes, so that a 256-byte ring holds
/// only a few (each frame takes 24).
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Tick {
    seq: u64,
    check: u64,
}

fn tick(seq: u64) -> Tick {
    Tick {
        seq,
        check: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// Runs `f` on smol's executor `ex` (on this thread), failing the test
/// after `TIMEOUT` (a lost wake-up hangs): the deadline is a thread that
/// sleeps, then wakes a future of its own.
fn on_smol<T>(ex: &async_executor::Executor<'_>, f: impl Future<Output = T>) -> T {
    use std::sync::{Arc, Mutex};
    let due: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
    let alarm = Arc::clone(&due);
    std::thread::spawn(move || {
        std::thread::sleep(TIMEOUT);
        let mut due = alarm.lock().unwrap();
        due.0 = true;
        if let Some(waker) = due.1.take() {
            waker.wake();
        }
    });
    let deadline = std::future::poll_fn(|cx| {
        let mut due = due.lock().unwrap();
        if due.0 {
            return Poll::Ready(None);
        }
        due.1 = Some(cx.waker().clone());
        Poll::Pending
    });
    futures_lite::future::block_on(
        ex.run(futures_lite::future::or(async { Some(f.await) }, deadline)),
    )
    .expect("hung")
}

/// The typed endpoints' futures on another executor: smol's
/// (`async_executor`, run by `futures_lite::future::block_on` on this one
/// thread). A typed sender task and a typed receiver task on a 256-byte
/// ring wait on each other through the notifier at almost every value;
/// then a typed subscriber task receives a publisher thread's values; a
/// value of the wrong size is `Corrupted`, as for the blocking `recv`.
/// The typed futures are `Send` (spawned on the multi-thread executor).
#[test]
fn typed_endpoints_on_smol_s_executor() {
    const N: u64 = 5000;
    let mut rx = TypedReceiver::<Tick>::create(256).unwrap();
    let mut tx = TypedSender::<Tick>::attach(rx.segment()).unwrap();
    let ex = async_executor::Executor::new();
    let sending = ex.spawn(assert_send(async move {
        for seq in 0..N {
            tx.send_async(&tick(seq)).await.unwrap();
        }
        tx.inner_mut().send_async(b"short").await.unwrap();
    }));
    let receiving = ex.spawn(assert_send(async move {
        for seq in 0..N {
            assert_eq!(rx.recv_async().await.unwrap(), tick(seq));
        }
        assert!(matches!(
            rx.recv_async().await,
            Err(Error::Corrupted { .. })
        ));
        // The sender is gone (its task ended and dropped it).
        assert!(matches!(
            rx.recv_async().await,
            Err(Error::Disconnected { .. })
        ));
    }));
    on_smol(&ex, async {
        sending.await;
        receiving.await;
    });

    let name = unique_name("async-typed-ps");
    let config = ServiceConfig::new().depth(4).overflow(Overflow::Block);
    let mut publisher = TypedPublisher::<Tick>::create(&name, config).unwrap();
    let mut subscriber = TypedSubscriber::<Tick>::open(&name).unwrap();
    let publishing = std::thread::spawn(move || {
        for seq in 0..N {
            publisher.publish(&tick(seq)).unwrap();
        }
    });
    let receiving = ex.spawn(assert_send(async move {
        for seq in 0..N {
            assert_eq!(subscriber.recv_async().await.unwrap(), tick(seq));
        }
        assert!(matches!(
            subscriber.recv_async().await,
            Err(Error::Disconnected { .. })
        ));
    }));
    on_smol(&ex, receiving);
    publishing.join().unwrap();
}

/// A wait set's future, woken by either member, on tokio.
#[test]
fn a_wait_set_future_is_woken_by_any_member() {
    let mut a = Receiver::create(4096).unwrap();
    let mut b = Receiver::create(4096).unwrap();
    let mut ta = Sender::attach(a.segment()).unwrap();
    let mut tb = Sender::attach(b.segment()).unwrap();
    let mut set = WaitSet::new().unwrap();
    let token_a = set.add(&a).unwrap();
    let token_b = set.add(&b).unwrap();
    let sending = std::thread::spawn(move || {
        for i in 0..500u32 {
            std::thread::sleep(Duration::from_micros(50));
            if i % 2 == 0 { &mut ta } else { &mut tb }
                .send(&i.to_le_bytes())
                .unwrap();
        }
        (ta, tb)
    });
    current_thread(async {
        let mut got = 0;
        while got < 500 {
            for token in set.wait_async().await.unwrap() {
                let rx = if token == token_a {
                    &mut a
                } else {
                    assert_eq!(token, token_b);
                    &mut b
                };
                while rx.try_recv().unwrap().is_some() {
                    got += 1;
                }
            }
        }
    });
    sending.join().unwrap();
    assert!(matches!(
        futures::executor::block_on(WaitSet::new().unwrap().wait_async()),
        Err(Error::InvalidInput { .. })
    ));
}

/// Endpoints made and dropped again and again: each new one's future is
/// woken through the notifier at once. The notifier's sleep leaves its
/// waits on the words queued from one round to the next, and a new
/// endpoint's member is mapped where the dropped one's was (seen here:
/// the same address every round). Planted, a completed wait never queued
/// again: the second round's future hangs. (The forget at a freed slot is
/// not what this shows: an endpoint's drop wakes its own word, which
/// completes the wait left on it.)
#[test]
fn endpoints_made_again_and_again_are_each_woken_through_the_notifier() {
    let mut lateness = Vec::new();
    let mut senders = Vec::new();
    for round in 0..30 {
        let mut rx = Receiver::create(4096).unwrap();
        let mut tx = Sender::attach(rx.segment()).unwrap();
        let sending = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            let sent = Instant::now();
            tx.send(b"hello").unwrap();
            (tx, sent)
        });
        let received = current_thread(async {
            let msg = rx.recv_async().await.unwrap();
            assert_eq!(&*msg, b"hello", "round {round}");
            Instant::now()
        });
        let (tx, sent) = sending.join().unwrap();
        lateness.push(received.saturating_duration_since(sent));
        // The receiver goes first, and its sender stays: no wake of the
        // old word completes the wait left queued on it.
        drop(rx);
        senders.push(tx);
        // The worker's round that frees the slot.
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(senders);
    lateness.sort();
    let (median, worst) = (lateness[lateness.len() / 2], lateness[lateness.len() - 1]);
    // A lost wake-up waits for the notifier's next round: a liveness
    // interval, or 5 s where the peer's process is watched, as here.
    assert!(
        median < LIVENESS_INTERVAL / 2 && worst < Duration::from_secs(2),
        "woken {median:?} after the send (median), {worst:?} at worst"
    );
}

/// Cancel safety: receives raced against short timeouts (each lost race
/// drops a pending `recv_async`) take every message exactly once, in
/// order; sends raced the same way send each message once or not at all.
/// After a pending future is dropped, the endpoint's own blocking `recv`
/// is woken by the next message at once (the notifier gave its flag back),
/// not a liveness interval later.
#[test]
fn futures_dropped_while_waiting_lose_and_duplicate_nothing() {
    let mut rx = Receiver::create(128).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    let rt = multi_thread();
    let sending = rt.spawn(async move {
        let mut seq = 0u64;
        let mut next = rng(7);
        let mut cancelled = 0;
        while seq < 3000 {
            let wait = Duration::from_micros(next() % 300);
            if next() % 4 == 0 {
                tokio::time::sleep(Duration::from_micros(300)).await; // let the ring empty
            }
            match tokio::time::timeout(wait, tx.send_async(&seq.to_le_bytes())).await {
                Ok(sent) => {
                    sent.unwrap();
                    seq += 1;
                }
                Err(_) => cancelled += 1,
            }
        }
        cancelled
    });
    let receiving = rt.spawn(async move {
        let mut seq = 0u64;
        let mut next = rng(11);
        let mut cancelled = 0;
        while seq < 3000 {
            let wait = Duration::from_micros(next() % 300);
            if next() % 8 == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await; // let the ring fill
            }
            match tokio::time::timeout(wait, rx.recv_async()).await {
                Ok(msg) => {
                    assert_eq!(&*msg.unwrap(), seq.to_le_bytes(), "message {seq}");
                    seq += 1;
                }
                Err(_) => cancelled += 1,
            }
        }
        (rx, cancelled)
    });
    let (mut rx, sends_cancelled, receives_cancelled) = rt.block_on(async {
        let s = tokio::time::timeout(TIMEOUT, sending).await.expect("hung");
        let r = tokio::time::timeout(TIMEOUT, receiving)
            .await
            .expect("hung");
        let (rx, rc) = r.unwrap();
        (rx, s.unwrap(), rc)
    });
    eprintln!("cancelled: {sends_cancelled} sends, {receives_cancelled} receives");
    assert!(
        receives_cancelled > 0,
        "no receive was cancelled: the test tested nothing"
    );
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected { .. })));

    // A pending future dropped, then the blocking call on the same
    // endpoint, parked at once: woken by the message without delay.
    let mut rx = Receiver::create(4096).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    rx.set_wait_strategy(memshare::channel::WaitStrategy::Park);
    let mut slow = Vec::new();
    for _ in 0..20 {
        {
            let mut f = rx.recv_async();
            assert!(poll_once(&mut f).is_pending());
        }
        let sending = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            let sent = Instant::now();
            tx.send(b"x").unwrap();
            (tx, sent)
        });
        let msg = rx.recv().unwrap();
        let got = Instant::now();
        drop(msg);
        let (t, sent) = sending.join().unwrap();
        tx = t;
        slow.push(got.duration_since(sent));
    }
    slow.sort();
    assert!(
        slow[slow.len() / 2] < LIVENESS_INTERVAL / 2,
        "blocking receives after a dropped future: {slow:?}"
    );
}

/// A pending future dropped takes its listener back from the notifier at
/// once: the receiver's `recv_waiting` flag (bytes 260..264 of the
/// channel's header, docs/channel-layout.md), which the notifier raised
/// for the future, is down when the drop returns, so the sender's sends
/// make no wake-up call for a future that is gone. (Planted, a `forget`
/// that leaves the flag to the notifier's next round: it stays up.)
#[test]
fn a_dropped_pending_future_lowers_the_flag_the_notifier_raised_for_it() {
    const RECV_WAITING: usize = 260;
    let mut rx = Receiver::create(4096).unwrap();
    let _tx = Sender::attach(rx.segment()).unwrap();
    let header = rx.segment().map(..4096).unwrap();
    let flag = header.atomic_u32(RECV_WAITING).unwrap();
    for round in 0..5 {
        let mut f = rx.recv_async();
        assert!(poll_once(&mut f).is_pending());
        // The notifier's worker arms the member in its next round.
        let deadline = Instant::now() + TIMEOUT;
        while flag.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the notifier never raised the flag for the pending future"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        drop(f);
        assert_eq!(
            flag.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "round {round}: the flag stayed up after the future was dropped"
        );
    }
}

/// `reserve_async` dropped after it is ready (its guard dropped
/// uncommitted) sends nothing; a `call_async` dropped after it sent is
/// answered into the void and its slot comes back.
#[test]
fn an_uncommitted_reservation_and_an_abandoned_call_leave_nothing_behind() {
    let mut tx = Sender::create(4096).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    futures::executor::block_on(async {
        {
            let mut slot = tx.reserve_async(5).await.unwrap();
            slot.copy_from_slice(b"never");
        } // dropped uncommitted
        tx.send_async(b"sent").await.unwrap();
    });
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"sent");
    assert!(rx.try_recv().unwrap().is_none());

    let name = unique_name("async-abandon");
    let config = ServerConfig::new().max_in_flight(1);
    let server = Server::create(&name, config).unwrap();
    let mut client = Client::connect(&name).unwrap();
    {
        let mut call = pin!(client.call_async(b"first"));
        assert!(call
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
    }
    server.recv().unwrap().respond(b"late").unwrap();
    let serving = std::thread::spawn(move || {
        let request = server.recv().unwrap();
        assert_eq!(&*request, b"second");
        request.respond(b"ok").unwrap();
        server
    });
    let reply = futures::executor::block_on(client.call_async(b"second")).unwrap();
    assert_eq!(&*reply, b"ok");
    drop(reply);
    serving.join().unwrap();
}

/// Whether `ready` becomes readable (set, on Windows) within `ms`: the
/// event loop's wait, poll(2) on Unix.
#[cfg(unix)]
fn readable(ready: &memshare::aio::Readiness, ms: i32) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(ready, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: i64::from(ms / 1000),
        tv_nsec: i64::from(ms % 1000) * 1_000_000,
    };
    poll(&mut fds, Some(&timeout)).unwrap() == 1
}

/// Whether `ready` becomes readable (set, on Windows) within `ms`:
/// `WaitForSingleObject` on the event handle.
#[cfg(windows)]
fn readable(ready: &memshare::aio::Readiness, ms: i32) -> bool {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
    use windows_sys::Win32::System::Threading::WaitForSingleObject;
    // SAFETY: the readiness handle is open while `ready` lives.
    let r = unsafe { WaitForSingleObject(ready.as_raw_handle(), ms as u32) };
    r == WAIT_OBJECT_0
}

/// The readiness descriptor in a raw event loop: readable when a message
/// comes, not after `rearm` with nothing left, readable again at the next
/// message, and at the sender's drop.
#[test]
fn a_readiness_descriptor_in_a_raw_event_loop() {
    let mut rx = Receiver::create(4096).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    let ready = rx.readiness().unwrap();
    assert!(!readable(&ready, 30), "readable with nothing to receive");
    let sending = std::thread::spawn(move || {
        for i in 0..100u32 {
            std::thread::sleep(Duration::from_micros(300));
            tx.send(&i.to_le_bytes()).unwrap();
        }
        tx
    });
    let mut got = 0u32;
    let deadline = Instant::now() + TIMEOUT;
    while got < 100 {
        assert!(Instant::now() < deadline, "stalled at {got}");
        if !readable(&ready, 1000) {
            continue;
        }
        while let Some(msg) = rx.try_recv().unwrap() {
            assert_eq!(&*msg, got.to_le_bytes());
            got += 1;
        }
        ready.rearm();
    }
    let tx = sending.join().unwrap();
    assert!(
        !readable(&ready, 30),
        "readable after rearm with nothing left"
    );
    drop(tx);
    assert!(
        readable(&ready, 1000),
        "not readable after the sender's drop"
    );
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected { .. })));
}

/// A descriptor (and a wait set's future) whose endpoint is dropped while
/// the notifier sleeps becomes readable at once. The peers' pids are
/// watched here (all in this process), so the notifier's own next look
/// would come only with its slow round, 5 s later: the endpoint's drop
/// wakes it. (Found by the fuzz target `notifier_hostile`.)
#[test]
fn a_descriptor_of_a_dropped_endpoint_is_readable_at_once() {
    let rx = Receiver::create(4096).unwrap();
    let _tx = Sender::attach(rx.segment()).unwrap();
    let name = unique_name("aio-drop");
    let server = Server::create(&name, ServerConfig::new()).unwrap();
    let client = Client::connect(&name).unwrap();
    let on_rx = rx.readiness().unwrap();
    let on_client = client.readiness().unwrap();
    let mut set = WaitSet::new().unwrap();
    set.add(&client).unwrap();
    let on_set = set.readiness().unwrap();
    // Past the notifier's first looks at the peers: it sleeps.
    assert!(!readable(&on_rx, 100));
    assert!(!readable(&on_client, 0));
    let start = Instant::now();
    drop(rx);
    assert!(
        readable(&on_rx, 900),
        "not readable {:?} after the receiver's drop",
        start.elapsed()
    );
    let start = Instant::now();
    drop(client);
    assert!(
        readable(&on_client, 900),
        "not readable {:?} after the client's drop",
        start.elapsed()
    );
    assert!(
        readable(&on_set, 900),
        "the wait set's descriptor (the same registration as the client's)"
    );
    drop(server);
}

/// A waker that counts its wakes.
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Wakes {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (at most `TIMEOUT` from `since`) for a wake after the first
    /// `seen`; how long after `since` it came.
    fn after(&self, seen: usize, since: Instant) -> Duration {
        while self.count() == seen && since.elapsed() < TIMEOUT {
            std::thread::sleep(Duration::from_micros(200));
        }
        since.elapsed()
    }
}

/// Kills `child`, the peer of `fut` (pending, polled with `cx`, whose
/// waker counts into `wakes`), and asserts that the notifier's wake alone
/// (the future is not polled meanwhile) tells it within 2 s, and that it
/// then ends with `Disconnected`. `peer` names the child in a failure.
fn assert_kill_wakes_with_disconnected<F, T>(
    child: common::Reaped,
    wakes: &Wakes,
    mut fut: std::pin::Pin<&mut F>,
    cx: &mut Context<'_>,
    peer: &str,
) where
    F: Future<Output = Result<T, Error>>,
    T: std::fmt::Debug,
{
    let seen = wakes.count();
    let killed = child.kill();
    let took = wakes.after(seen, killed);
    assert!(
        took < Duration::from_secs(2),
        "the future was woken {took:?} after {peer}'s kill"
    );
    let out = fut.as_mut().poll(cx);
    assert!(
        matches!(out, Poll::Ready(Err(Error::Disconnected { .. }))),
        "not Disconnected: {out:?}"
    );
}

/// Polls `fut` for `window`, again at every wake: its output if it
/// completed, and how many times it was polled.
fn poll_for<F: Future>(fut: std::pin::Pin<&mut F>, window: Duration) -> (Option<F::Output>, usize) {
    let wakes = std::sync::Arc::new(Wakes(Default::default()));
    let waker = Waker::from(std::sync::Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let mut fut = fut;
    let mut polls = 0;
    let mut seen = usize::MAX;
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        let now = wakes.0.load(std::sync::atomic::Ordering::SeqCst);
        if now != seen {
            seen = now;
            polls += 1;
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return (Some(out), polls);
            }
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    (None, polls)
}

/// A pending future is not woken again and again while its endpoint has
/// nothing for it: a sender waiting for room for a message larger than
/// the room there is (the notifier reported room for the smallest
/// message, at every look, and the future spun through it), and a
/// receiver whose published position a peer wrote over (the notifier
/// read the ring as not empty, at every look). Found by the fuzz target
/// `notifier_hostile`.
#[test]
fn a_pending_future_is_not_woken_again_and_again_with_nothing_for_it() {
    let mut tx = Sender::create(64).unwrap();
    let mut rx = Receiver::attach(tx.segment()).unwrap();
    // A 16-byte frame received, then a 40-byte one: the next 24-byte
    // frame needs the padding at the end (8 bytes), then finds 16 bytes
    // free at the start, room for an 8-byte message only.
    assert!(tx.try_send(&[0; 8]).unwrap());
    assert_eq!(rx.try_recv().unwrap().unwrap().len(), 8);
    assert!(tx.try_send(&[1; 32]).unwrap());
    {
        let mut fut = pin!(tx.reserve_async(16));
        let (out, polls) = poll_for(fut.as_mut(), Duration::from_millis(200));
        assert!(out.is_none(), "room for 24 bytes in 16");
        assert!(
            polls <= 3,
            "the sender's future was polled {polls} times in 200 ms"
        );
        assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[1; 32]);
        let (out, _) = poll_for(fut, Duration::from_secs(5));
        let mut slot = out.expect("room after a receive").unwrap();
        slot.copy_from_slice(&[2; 16]);
        slot.commit();
    }
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), &[2; 16]);
    // The sender (the peer) writes the receiver's published position.
    let view = rx.segment().map(..).unwrap();
    let mut read_pos = [0; 8];
    view.read_at(384, &mut read_pos).unwrap();
    let truth = u64::from_le_bytes(read_pos);
    view.write_at(384, &(truth + 8).to_le_bytes()).unwrap();
    let (out, polls) = poll_for(pin!(rx.recv_async()), Duration::from_millis(200));
    assert!(out.is_none(), "a message out of nothing");
    drop(out);
    assert!(
        polls <= 3,
        "the receiver's future was polled {polls} times in 200 ms"
    );
    view.read_at(384, &mut read_pos).unwrap();
    assert_eq!(
        u64::from_le_bytes(read_pos),
        truth,
        "the true position, restored"
    );
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.try_recv().unwrap().unwrap(), b"after");
}

/// A pending subscriber's future is not woken again and again when a
/// peer wrote over the cursor the subscriber publishes: the notifier read
/// news at the written cursor (a message already received) at every look,
/// while the subscriber's own cursor found nothing, and the future spun
/// through it. Its `try_` form now puts the true cursor back. Found by the
/// fuzz target `notifier_hostile`.
#[test]
fn a_pending_subscriber_whose_cursor_a_peer_wrote_over_is_not_woken_again_and_again() {
    let name = unique_name("aio-cursor");
    let mut publisher = Publisher::create(&name, ServiceConfig::new()).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    assert_eq!(sub.slot(), 0);
    publisher.publish_copy(b"first").unwrap();
    assert_eq!(&*sub.try_recv().unwrap().unwrap(), b"first");
    // The subscriber block of slot 0 starts at 4096; its cursors follow its
    // 32-byte head and one hold word per held sample, 8-aligned
    // (docs/pubsub-layout.md).
    let held = sub.config().get_max_held() as usize;
    let cursor_at = 4096 + (32 + 4 * held).next_multiple_of(8);
    let view = sub.segment().map(..).unwrap();
    let mut cursor = [0; 8];
    view.read_at(cursor_at, &mut cursor).unwrap();
    assert_eq!(u64::from_le_bytes(cursor), 1, "the cursor past \"first\"");
    view.write_at(cursor_at, &0u64.to_le_bytes()).unwrap();
    let (out, polls) = poll_for(pin!(sub.recv_async()), Duration::from_millis(200));
    assert!(out.is_none(), "a message out of nothing");
    drop(out);
    assert!(
        polls <= 3,
        "the subscriber's future was polled {polls} times in 200 ms"
    );
    view.read_at(cursor_at, &mut cursor).unwrap();
    assert_eq!(u64::from_le_bytes(cursor), 1, "the true cursor, restored");
    publisher.publish_copy(b"after").unwrap();
    assert_eq!(&*sub.try_recv().unwrap().unwrap(), b"after");
}

/// A call's future is woken for its own answer, not for another request's:
/// with a request `a` sent first and answered at once but not read yet,
/// and the call's `b` answered 300 ms later, the future is polled a few
/// times, not at every round of the notifier (before: the notifier's
/// member for the client was ready when any awaited request was answered,
/// so it woke the future at every look, which found nothing for it and
/// parked again, until `b`'s answer: the task and the notifier thread
/// spun for 300 ms). A readiness descriptor on the client keeps its
/// meaning, in an event loop of its own meanwhile: readable whenever any
/// request in flight is answered, so again at each re-arm while `a`'s
/// answer is unread; and those firings, on the same registration, do not
/// wake the future either. So does a wait set.
#[test]
fn a_call_is_not_woken_again_and_again_by_the_answer_to_another_request() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let name = unique_name("aio-call-other");
    let server = Server::create(&name, ServerConfig::new()).unwrap();
    let mut client = Client::connect(&name).unwrap();
    let ready = client.readiness().unwrap();
    let mut set = WaitSet::new().unwrap();
    let token = set.add(&client).unwrap();
    let serving = std::thread::spawn(move || {
        let a = server.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(&*a, b"a");
        a.respond(b"answer a").unwrap();
        let b = server.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(&*b, b"b");
        std::thread::sleep(Duration::from_millis(300));
        b.respond(b"answer b").unwrap();
        server
    });
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let event_loop = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut fired = 0;
            while !stop.load(SeqCst) {
                if readable(&ready, 10) {
                    fired += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    ready.rearm();
                }
            }
            (ready, fired)
        })
    };
    let first = client.send_request(b"a").unwrap();
    let start = Instant::now();
    let (out, polls) = poll_for(pin!(client.call_async(b"b")), TIMEOUT);
    let took = start.elapsed();
    stop.store(true, SeqCst);
    let (ready, fired) = event_loop.join().unwrap();
    assert_eq!(&*out.expect("b answered").unwrap(), b"answer b");
    assert!(
        took >= Duration::from_millis(300),
        "b answered after {took:?}"
    );
    assert!(
        polls <= 3,
        "the call's future was polled {polls} times in {took:?} while another request's answer waited"
    );
    // `a`'s answer, unread: the descriptor fired again at each re-arm,
    // and still does; the wait set reports it.
    assert!(
        fired >= 5,
        "the descriptor fired {fired} times in {took:?} for a's answer"
    );
    assert!(readable(&ready, 1000), "the descriptor missed a's answer");
    assert!(set.try_wait().unwrap().contains(token));
    assert_eq!(&*client.receive_response(&first).unwrap(), b"answer a");
    ready.rearm();
    assert!(!readable(&ready, 50), "readable with nothing in flight");
    assert!(set.try_wait().unwrap().is_empty());
    drop(serving.join().unwrap());
}

/// Takes up to `max` items from `stream`, each ready at once or the
/// stream `Pending` (then it stops): what it yielded, and whether it
/// ended (`None`).
fn drain<S: futures::Stream + Unpin>(stream: &mut S, max: usize) -> (Vec<S::Item>, bool) {
    let mut items = Vec::new();
    while items.len() < max {
        match stream.poll_next_unpin(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(item)) => items.push(item),
            Poll::Ready(None) => return (items, true),
            Poll::Pending => break,
        }
    }
    (items, false)
}

/// A receiver's stream whose sender wrote a position no honest sender
/// writes yields `Corrupted` once, then ends: before, it yielded the same
/// error at every poll, so `while let Some(r) = stream.next().await`
/// spun at 100 % CPU for as long as the hostile peer let it. (The
/// receiver itself still says `Corrupted`, at every call.)
#[test]
fn a_receivers_stream_ends_after_corrupted() {
    use futures::stream::FusedStream;
    const WRITE_POS: usize = 128;
    let mut rx = Receiver::create(4096).unwrap();
    let mut tx = Sender::attach(rx.segment()).unwrap();
    tx.send(b"before").unwrap();
    let view = tx.segment().map(..).unwrap();
    {
        let mut stream = rx.stream();
        let (items, ended) = drain(&mut stream, 1);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_deref().unwrap(), b"before");
        assert!(!ended && !stream.is_terminated());
        // Past a whole ring ahead of the receiver.
        let write = view.atomic_u64(WRITE_POS).unwrap();
        write.fetch_add(8192, std::sync::atomic::Ordering::Relaxed);
        let (items, ended) = drain(&mut stream, 100);
        assert!(
            matches!(items.as_slice(), [Err(Error::Corrupted { .. })]),
            "{} items, ended {ended}: {:?}",
            items.len(),
            items.first()
        );
        assert!(ended, "the stream goes on after Corrupted");
        assert!(stream.is_terminated());
        assert!(drain(&mut stream, 1).1, "not ended for good");
    }
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    drop(tx);
}

/// A subscriber's stream whose publisher wrote an entry no honest
/// publisher writes (a message longer than the service allows) yields
/// `Corrupted` once, then ends (before: at every poll, a spin).
#[test]
fn a_subscribers_stream_ends_after_corrupted() {
    use futures::stream::FusedStream;
    let name = unique_name("aio-sample-stream");
    let config = ServiceConfig::new().max_publishers(1).max_message_len(64);
    let mut publisher = Publisher::create(&name, config).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    publisher.publish_copy(b"first").unwrap();
    publisher.publish_copy(b"second").unwrap();
    // Entry 1 of publisher 0 (docs/pubsub-layout.md: the region at
    // total_len - publisher_region with one publisher, entry e at
    // 256 + 32e, its len at 12).
    let view = publisher.segment().map(..).unwrap();
    let mut word = [0; 8];
    view.read_at(64, &mut word).unwrap();
    let region = u64::from_le_bytes(word);
    view.read_at(72, &mut word).unwrap();
    let total = u64::from_le_bytes(word);
    let len_at = usize::try_from(total - region).unwrap() + 256 + 32 + 12;
    let mut len = [0; 4];
    view.read_at(len_at, &mut len).unwrap();
    assert_eq!(u32::from_le_bytes(len), 6, "entry 1's len (\"second\")");
    view.write_at(len_at, &u32::MAX.to_le_bytes()).unwrap();
    let mut stream = sub.stream();
    let (items, ended) = drain(&mut stream, 100);
    assert!(
        matches!(items.as_slice(), [Ok(first), Err(Error::Corrupted { .. })] if first == b"first"),
        "{} items, ended {ended}: {:?}",
        items.len(),
        items.iter().take(2).collect::<Vec<_>>()
    );
    assert!(ended, "the stream goes on after Corrupted");
    assert!(stream.is_terminated());
}

/// A parked subscriber's future does not poll its publishers' liveness:
/// each publisher publishes its pid, and the notifier watches that
/// process's death instead of asking the publisher's lock every liveness
/// interval (20 lock queries in the 400 ms before). The subscriber runs in
/// a child of its own, where no other test's future counts. Linux only:
/// elsewhere no kernel tells the notifier of a death (docs/platforms.md),
/// and every peer is asked every interval.
#[cfg(target_os = "linux")]
#[test]
fn a_parked_subscriber_watches_its_publishers_process_instead_of_polling_it() {
    const TEST: &str = "a_parked_subscriber_watches_its_publishers_process_instead_of_polling_it";
    if role().is_some() {
        count_parked_subscriber_looks();
        return;
    }
    let name = unique_name("aio-pub-pid");
    let publisher = Publisher::create(&name, ServiceConfig::new()).unwrap();
    let (child, mut out) = spawn(TEST, "subscriber", &[("MST_NAME", name.clone())]);
    let looks: u64 = out.after("looks ").parse().unwrap();
    child.wait_success(TIMEOUT);
    drop(publisher);
    assert!(
        looks <= 3,
        "the notifier asked about the publisher {looks} times in 400 ms"
    );
}

/// A stream whose wait cannot register with the notifier (its thread
/// cannot start: the address space is full, `RLIMIT_AS` set in a child of
/// its own, which binds root too) yields the error once and ends. It
/// returned the error at every poll, at once (a `while let` loop over the
/// stream spun), and each try leaked a worker that never ran.
#[cfg(target_os = "linux")]
#[test]
fn a_stream_that_cannot_register_for_wake_ups_ends_after_the_error() {
    const TEST: &str = "a_stream_that_cannot_register_for_wake_ups_ends_after_the_error";
    if role().is_some() {
        use futures::stream::FusedStream;
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let mut rx = Receiver::create(4096).unwrap();
        let _tx = Sender::attach(rx.segment()).unwrap();
        let mut stream = rx.stream();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let old = getrlimit(Resource::As);
        // The address space as it is, and 1 MiB: no room for a thread's
        // stack (2 MiB), room for the rest.
        let tight = Rlimit {
            current: Some(kib * 1024 + (1 << 20)),
            maximum: old.maximum,
        };
        setrlimit(Resource::As, tight).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let first = stream.poll_next_unpin(&mut cx);
        let second = stream.poll_next_unpin(&mut cx);
        let ended = stream.is_terminated();
        setrlimit(Resource::As, old).unwrap();
        assert!(matches!(first, Poll::Ready(Some(Err(_)))), "{first:?}");
        assert!(matches!(second, Poll::Ready(None)), "{second:?}");
        assert!(ended);
        println!("ended=1");
        return;
    }
    let (child, mut out) = spawn(TEST, "stream", &[]);
    out.after("ended=");
    child.wait_success(TIMEOUT);
}

/// The subscriber child of the tests above and below: parks a future on
/// `MST_NAME` and prints how many times the notifier asked about its
/// publishers in the 400 ms after its first rounds.
#[cfg(target_os = "linux")]
fn count_parked_subscriber_looks() {
    let mut sub = Subscriber::open(&env("MST_NAME")).unwrap();
    let mut fut = Box::pin(sub.recv_async());
    assert!(poll_once(&mut fut).is_pending());
    // The first rounds watch the publishers' processes and ask their
    // locks, to trust the watches.
    std::thread::sleep(Duration::from_millis(50));
    let before = memshare::aio::notifier_peer_looks();
    std::thread::sleep(Duration::from_millis(400));
    let looks = memshare::aio::notifier_peer_looks() - before;
    println!("looks {looks}");
}

/// Dead publishers whose blocks still say "attached" (SIGKILLed, no
/// subscriber or publisher has cleaned up after them) neither make the
/// notifier spin nor keep the live publisher polled. One was reaped (its
/// pid can no longer be watched), one is a zombie (its pidfd is readable
/// from the start). Before: every round tried the unwatchable pid again and
/// re-watched the others with it, so the zombie's pidfd told a death at
/// every round and the notifier spun (thousands of looks in 400 ms); and a
/// publisher found dead kept its pid among those to watch, so the reaped
/// one kept every publisher polled every liveness interval (20 looks).
#[cfg(target_os = "linux")]
#[test]
fn dead_publishers_neither_make_the_notifier_spin_nor_keep_it_polling() {
    const TEST: &str = "dead_publishers_neither_make_the_notifier_spin_nor_keep_it_polling";
    match role().as_deref() {
        Some("peer") => return peer(),
        Some(_) => return count_parked_subscriber_looks(),
        None => {}
    }
    let name = unique_name("aio-dead-pubs");
    let publisher = Publisher::create(&name, ServiceConfig::new().max_publishers(3)).unwrap();
    let vars = [
        ("MST_KIND", "publisher-open".to_string()),
        ("MST_NAME", name.clone()),
    ];
    let (reaped, mut out) = spawn(TEST, "peer", &vars);
    out.after("ready");
    let (mut zombie, mut out) = spawn(TEST, "peer", &vars);
    out.after("ready");
    reaped.kill();
    // SIGKILL without a wait: a zombie until the guard reaps it below.
    zombie.0.as_mut().unwrap().kill().unwrap();
    // Their blocks still say attached; their locks are free.
    common::wait_for(TIMEOUT, || {
        let state = memshare::pubsub::inspect(publisher.segment()).unwrap();
        let dead = state
            .publishers
            .iter()
            .filter(|p| p.state == memshare::channel::EndpointState::Dead)
            .count();
        (dead == 2).then_some(())
    });
    let (child, mut out) = spawn(TEST, "subscriber", &[("MST_NAME", name.clone())]);
    let looks: u64 = out.after("looks ").parse().unwrap();
    child.wait_success(TIMEOUT);
    drop(zombie);
    drop(publisher);
    assert!(
        looks <= 3,
        "the notifier asked about the publishers {looks} times in 400 ms"
    );
}

/// A pid number that died while watched and came back as another peer's
/// process (pids are reused) is watched afresh: the new process's death
/// wakes its peer's future at once. Before, the new watch joined the dead
/// process's pidfd (told long ago, out of the reaper's set), and the death
/// was told only by the notifier's 5 s safety-net round. The number is
/// handed out again on purpose, through /proc/sys/kernel/ns_last_pid
/// (root).
#[cfg(target_os = "linux")]
#[test]
fn a_pid_number_reused_by_a_new_peer_is_watched_afresh() {
    const TEST: &str = "a_pid_number_reused_by_a_new_peer_is_watched_afresh";
    const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    if role().is_some() {
        peer();
        return;
    }
    if std::fs::OpenOptions::new()
        .write(true)
        .open(LAST_PID)
        .is_err()
    {
        return common::privileged::skip(TEST, "cannot write /proc/sys/kernel/ns_last_pid");
    }
    let wakes = std::sync::Arc::new(Wakes(Default::default()));
    let waker = Waker::from(std::sync::Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let sender = |name: &str| {
        let vars = [("MST_KIND", "sender".into()), ("MST_NAME", name.into())];
        spawn(TEST, "peer", &vars)
    };
    // The first peer dies while watched; its receiver stays (and with it
    // the watch of the dead process).
    let name = unique_name("aio-pid-first");
    let mut first = Receiver::create_named(&name, 256).unwrap();
    let (child, mut out) = sender(&name);
    out.after("ready");
    let pid = child.pid();
    {
        let mut fut = pin!(first.recv_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(Duration::from_millis(50));
        let seen = wakes.count();
        child.kill();
        wakes.after(seen, Instant::now());
        let out = fut.as_mut().poll(&mut cx);
        assert!(
            matches!(out, Poll::Ready(Err(Error::Disconnected { .. }))),
            "{out:?}"
        );
    }
    // The second peer under the same number (a process started between
    // the write and the spawn takes it: then again, once that process,
    // another test's child perhaps, has left the number free).
    let deadline = Instant::now() + 3 * TIMEOUT;
    let (mut second, child, mut out) = loop {
        assert!(
            Instant::now() < deadline,
            "the pid number {pid} was not free again within {:?}",
            3 * TIMEOUT
        );
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let name = unique_name("aio-pid-second");
        let rx = Receiver::create_named(&name, 256).unwrap();
        std::fs::write(LAST_PID, (pid - 1).to_string()).unwrap();
        let (child, out) = sender(&name);
        if child.pid() == pid {
            break (rx, child, out);
        }
        // The child first (killed and reaped), then the receiver: the last
        // holder of the name, which it removes.
        drop(child);
        drop(rx);
    };
    out.after("ready");
    let mut fut = pin!(second.recv_async());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    // The notifier's first round watches the new process.
    std::thread::sleep(Duration::from_millis(100));
    assert_kill_wakes_with_disconnected(child, &wakes, fut, &mut cx, "its peer");
    drop(first);
}

/// A publisher that attaches while a subscriber's future is parked is
/// watched too: the notifier looks at the publishers' pids at every round
/// (here the round the first publisher's detach causes). Here the first publisher
/// (this process's) detaches once the second (a child's) has attached,
/// and the child is SIGKILLed: `Disconnected` comes at once, not at the
/// notifier's next 5 s safety-net round, as it did when only the pids seen
/// when the wait began were watched.
#[test]
fn a_publisher_that_attaches_while_a_subscriber_waits_is_watched_too() {
    const TEST: &str = "a_publisher_that_attaches_while_a_subscriber_waits_is_watched_too";
    if role().is_some() {
        peer();
        return;
    }
    let name = unique_name("aio-pub-later");
    let first = Publisher::create(&name, ServiceConfig::new().max_publishers(2)).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    let mut fut = pin!(sub.recv_async());
    let wakes = std::sync::Arc::new(Wakes(Default::default()));
    let waker = Waker::from(std::sync::Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let (child, mut out) = spawn(
        TEST,
        "peer",
        &[("MST_KIND", "publisher-open".into()), ("MST_NAME", name)],
    );
    out.after("ready");
    // The notifier's round after the attach's wake; the first publisher's
    // detach wakes the future (it looks: the second is attached).
    std::thread::sleep(Duration::from_millis(100));
    drop(first);
    std::thread::sleep(Duration::from_millis(50));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_kill_wakes_with_disconnected(child, &wakes, fut, &mut cx, "the publisher");
}

/// A server whose future waits watches its clients' processes for their
/// deaths instead of asking their locks every liveness interval (20 lock
/// queries per client in the 400 ms before: an idle async server cost a
/// system call per client 50 times a second). The server runs in a child
/// of its own, where no other test's future counts.
#[cfg(target_os = "linux")]
#[test]
fn a_parked_server_watches_its_clients_processes_instead_of_polling_them() {
    const TEST: &str = "a_parked_server_watches_its_clients_processes_instead_of_polling_them";
    if role().is_some() {
        let mut server = Server::create(&env("MST_NAME"), ServerConfig::new()).unwrap();
        println!("ready");
        common::wait_for(TIMEOUT, || {
            (server.clients().unwrap().len() == 2).then_some(())
        });
        let mut fut = Box::pin(server.recv_async());
        assert!(poll_once(&mut fut).is_pending());
        // The first rounds watch the clients' process and ask their locks.
        std::thread::sleep(Duration::from_millis(50));
        let before = memshare::aio::notifier_peer_looks();
        std::thread::sleep(Duration::from_millis(400));
        let looks = memshare::aio::notifier_peer_looks() - before;
        println!("looks {looks}");
        return;
    }
    let name = unique_name("aio-server-pids");
    let (child, mut out) = spawn(TEST, "server", &[("MST_NAME", name.clone())]);
    out.after("ready");
    let clients = [
        Client::connect(&name).unwrap(),
        Client::connect(&name).unwrap(),
    ];
    let looks: u64 = out.after("looks ").parse().unwrap();
    child.wait_success(TIMEOUT);
    drop(clients);
    assert!(
        looks <= 3,
        "the notifier asked about the clients {looks} times in 400 ms"
    );
}

/// A client that connects while the server's future waits, and is
/// SIGKILLed before it sends anything, is watched too: the server's future
/// is woken by its death and resets its region at once, so the next client
/// can connect (the service has room for one). The client's attach wakes
/// the server's word; without that the notifier, watching no client, would
/// learn of the death only at its 5 s safety-net round.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_connects_while_a_server_waits_is_watched_too() {
    const TEST: &str = "a_client_that_connects_while_a_server_waits_is_watched_too";
    if role().is_some() {
        peer();
        return;
    }
    let name = unique_name("aio-server-late");
    let server = Server::create(&name, ServerConfig::new().max_clients(1)).unwrap();
    let serving = serve_one_echo(server);
    // The server's future parked, the notifier asleep with no client.
    std::thread::sleep(Duration::from_millis(100));
    let (child, mut out) = spawn(
        TEST,
        "peer",
        &[("MST_KIND", "client".into()), ("MST_NAME", name.clone())],
    );
    out.after("ready");
    // Its attach's wake, and the notifier's round that watches it.
    std::thread::sleep(Duration::from_millis(100));
    let took = kill_then_connect(child, &name, serving);
    assert!(
        took < Duration::from_secs(2),
        "the dead client's region was reset {took:?} after its death"
    );
}

/// A client the server evicted (it broke the protocol), SIGKILLed while
/// the server's task waits in `recv_async`: its death wakes the task,
/// whose look resets the region, so that the service's one client slot is
/// free again within the liveness interval. (The notifier watched only the
/// clients the server still served: the slot stayed taken.)
#[cfg(target_os = "linux")]
#[test]
fn an_evicted_client_killed_while_a_server_waits_frees_its_slot() {
    const TEST: &str = "an_evicted_client_killed_while_a_server_waits_frees_its_slot";
    if role().is_some() {
        peer();
        return;
    }
    let name = unique_name("aio-server-evict");
    let server = Server::create(&name, ServerConfig::new().max_clients(1)).unwrap();
    let (child, mut out) = spawn(
        TEST,
        "peer",
        &[("MST_KIND", "client".into()), ("MST_NAME", name.clone())],
    );
    out.after("ready");
    common::break_the_protocol_of(&server, server.clients().unwrap()[0].id.slot());
    assert!(server.try_recv().unwrap().is_none());
    assert!(server.clients().unwrap()[0].evicted.is_some());
    let serving = serve_one_echo(server);
    // The server's future parked, the notifier watching.
    std::thread::sleep(Duration::from_millis(100));
    let took = kill_then_connect(child, &name, serving);
    assert!(
        took < Duration::from_secs(2),
        "the evicted client's region was reset {took:?} after its death"
    );
}

/// A thread whose task awaits `server.recv_async()` and echoes that one
/// request. Bounded (`current_thread` fails the test after TIMEOUT): a lost
/// wake-up fails the test instead of hanging the binary, and the server is
/// dropped (its name removed) either way.
#[cfg(target_os = "linux")]
fn serve_one_echo(mut server: Server) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        current_thread(async {
            let request = server.recv_async().await.unwrap();
            let echo = request.to_vec();
            request.respond(&echo).unwrap();
        });
    })
}

/// Kills the one client `child`, connects to `name` as soon as its slot is
/// free, and calls the server that `serving` runs (it echoes one request,
/// then ends): how long after the kill the slot was free.
#[cfg(target_os = "linux")]
fn kill_then_connect(
    child: common::Reaped,
    name: &str,
    serving: std::thread::JoinHandle<()>,
) -> Duration {
    let killed = child.kill();
    let mut client = common::wait_for(TIMEOUT, || match Client::connect(name) {
        Ok(client) => Some(client),
        Err(Error::LimitReached { .. }) => None,
        Err(e) => panic!("connect: {e}"),
    });
    let took = killed.elapsed();
    assert_eq!(&*client.call_timeout(b"after", TIMEOUT).unwrap(), b"after");
    serving.join().unwrap();
    took
}

/// A wait set's future woken because the notifier found a member's peer
/// gone completes at once, though the set itself has not asked about that
/// peer yet (before: it was woken again and again until the set's own
/// next round of questions, up to a liveness interval later). Here the
/// sender detached, and a peer then wrote "attached" into its state word:
/// only its lock, free, says it is gone. Found by the fuzz target
/// `notifier_hostile`.
#[test]
fn a_wait_set_future_woken_for_a_peer_gone_completes_at_once() {
    // Another endpoint waited on all along, as in a busy process: the
    // notifier is never idle, so it never starts a round of questions
    // about every peer when the set's member becomes active (which hid
    // the member's own missing question).
    let other = Receiver::create(4096).unwrap();
    let _other_tx = Sender::attach(other.segment()).unwrap();
    let _other_ready = other.readiness().unwrap();
    let rx = Receiver::create(4096).unwrap();
    let tx = Sender::attach(rx.segment()).unwrap();
    let view = rx.segment().map(..).unwrap();
    let mut set = WaitSet::new().unwrap();
    let token = set.add(&rx).unwrap();
    let ready = rx.readiness().unwrap();
    // The notifier's round with the sender attached: it watches this
    // process (the sender's pid), the pid the peer writes back below.
    std::thread::sleep(Duration::from_millis(50));
    drop(tx);
    assert!(
        readable(&ready, 5000),
        "not readable after the sender's drop"
    );
    // The set sees the detached state (no question asked).
    assert!(set.try_wait().unwrap().contains(token));
    view.write_at(64, &1u32.to_le_bytes()).unwrap();
    let start = Instant::now();
    let (out, polls) = poll_for(pin!(set.wait_async()), Duration::from_secs(1));
    let ready = out.expect("the set reports the member").unwrap();
    assert!(ready.contains(token));
    assert!(
        polls <= 3,
        "the wait set's future was polled {polls} times in {:?}",
        start.elapsed()
    );
}

/// The peer child: attaches to `MST_NAME` as `MST_KIND` says, says
/// `ready`, then sends (a channel sender: `MST_COUNT` messages, one every
/// 200 µs; `sender-on-cue`: one, when told) or waits to be killed.
fn peer() {
    let name = env("MST_NAME");
    let kind = env("MST_KIND");
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match kind.as_str() {
        "sender" => {
            let mut tx = Sender::open(&name).unwrap();
            println!("ready");
            let count: u64 = std::env::var("MST_COUNT").map_or(0, |c| c.parse().unwrap());
            for seq in 0..count {
                std::thread::sleep(Duration::from_micros(200));
                tx.send(&seq.to_le_bytes()).unwrap();
            }
            keep.push(Box::new(tx));
        }
        "sender-on-cue" => {
            // Sends "go" once the parent says so on the channel `MST_CUE`.
            let mut tx = Sender::open(&name).unwrap();
            let mut cue = Receiver::open(&env("MST_CUE")).unwrap();
            println!("ready");
            drop(cue.recv().unwrap());
            tx.send(b"go").unwrap();
            keep.push(Box::new(tx));
            keep.push(Box::new(cue));
        }
        "receiver" => keep.push(Box::new(Receiver::open(&name).unwrap())),
        "publisher" => keep.push(Box::new(
            Publisher::create(&name, ServiceConfig::new()).unwrap(),
        )),
        "publisher-open" => keep.push(Box::new(Publisher::open(&name).unwrap())),
        "server" => keep.push(Box::new(
            Server::create(&name, ServerConfig::new()).unwrap(),
        )),
        "client" => keep.push(Box::new(Client::connect(&name).unwrap())),
        other => panic!("unknown kind {other}"),
    }
    println!("ready");
    std::thread::sleep(TIMEOUT);
    drop(keep);
}

/// Messages from another process wake a task parked in `recv_async`, all
/// of them, in order.
#[test]
fn a_sender_in_another_process_wakes_a_parked_task() {
    const TEST: &str = "a_sender_in_another_process_wakes_a_parked_task";
    if role().is_some() {
        peer();
        return;
    }
    let name = unique_name("async-xproc");
    let mut rx = Receiver::create_named(&name, 4096).unwrap();
    let (_child, mut out) = spawn(
        TEST,
        "peer",
        &[
            ("MST_NAME", name.clone()),
            ("MST_KIND", "sender".into()),
            ("MST_COUNT", "2000".into()),
        ],
    );
    out.after("ready");
    current_thread(async {
        for seq in 0..2000u64 {
            let msg = rx.recv_async().await.unwrap();
            assert_eq!(&*msg, seq.to_le_bytes());
        }
    });
}

/// A peer SIGKILLed in another process wakes the future waiting on it
/// with `Disconnected` within about a liveness interval: a receiver's
/// sender, a full sender's receiver, a subscriber's publisher, a client's
/// server; and a readiness descriptor of the same endpoint, made before
/// the kill and not readable then, becomes readable as soon (the task
/// hands the endpoint back with its result, so that the kill, not the
/// endpoint's drop, is what the descriptor tells). Both are timed from
/// the death, every round within five intervals (`Detections::record`)
/// and the median within one (`Detections::check`).
#[test]
fn a_peer_killed_in_another_process_wakes_every_kind_of_future_with_disconnected() {
    const TEST: &str =
        "a_peer_killed_in_another_process_wakes_every_kind_of_future_with_disconnected";
    if role().is_some() {
        peer();
        return;
    }
    // Futures that stay parked meanwhile, so the notifier watches several
    // words (and asks about several peers) at once.
    let mut quiet: Vec<(Receiver, Sender)> = (0..20)
        .map(|_| {
            let rx = Receiver::create(256).unwrap();
            let tx = Sender::attach(rx.segment()).unwrap();
            (rx, tx)
        })
        .collect();
    let mut detections = Detections::new("a killed peer, through a future", LIVENESS_INTERVAL);
    let mut descriptors = Detections::new(
        "a killed peer, through a readiness descriptor",
        LIVENESS_INTERVAL,
    );
    let rt = multi_thread();
    let kinds = ["sender", "receiver", "publisher", "server"];
    for round in 0..16 {
        let kind = kinds[round % kinds.len()];
        let name = unique_name("async-kill");
        let (vars, mine): (Vec<(&str, String)>, Box<dyn std::any::Any + Send>) = match kind {
            "sender" => (
                vec![("MST_KIND", "sender".into())],
                Box::new(Receiver::create_named(&name, 256).unwrap()),
            ),
            "receiver" => (
                vec![("MST_KIND", "receiver".into())],
                Box::new(Sender::create_named(&name, 64).unwrap()),
            ),
            _ => (vec![("MST_KIND", kind.into())], Box::new(())),
        };
        let mut vars = vars;
        vars.push(("MST_NAME", name.clone()));
        let (child, mut out) = spawn(TEST, "peer", &vars);
        out.after("ready");
        let mut next = rng(round as u64 + 1);
        // The task's result: the future's, when it ended, and the endpoint.
        type Waited = (Result<(), Error>, Instant, Box<dyn std::any::Any + Send>);
        let (waiting, ready): (tokio::task::JoinHandle<Waited>, _) = match kind {
            "sender" => {
                let mut rx = *mine.downcast::<Receiver>().unwrap();
                let ready = rx.readiness().unwrap();
                let task = rt.spawn(async move {
                    let r = rx.recv_async().await.map(drop);
                    (
                        r,
                        Instant::now(),
                        Box::new(rx) as Box<dyn std::any::Any + Send>,
                    )
                });
                (task, ready)
            }
            "receiver" => {
                let mut tx = *mine.downcast::<Sender>().unwrap();
                // Full: no room for an empty message either (the
                // descriptor's readiness while no future waits).
                while tx.try_send(&[1; 16]).unwrap() {}
                while tx.try_send(&[]).unwrap() {}
                let ready = tx.readiness().unwrap();
                let task = rt.spawn(async move {
                    let r = tx.send_async(&[2; 16]).await;
                    (
                        r,
                        Instant::now(),
                        Box::new(tx) as Box<dyn std::any::Any + Send>,
                    )
                });
                (task, ready)
            }
            "publisher" => {
                let mut sub = Subscriber::open(&name).unwrap();
                let ready = sub.readiness().unwrap();
                let task = rt.spawn(async move {
                    let r = sub.recv_async().await.map(drop);
                    (
                        r,
                        Instant::now(),
                        Box::new(sub) as Box<dyn std::any::Any + Send>,
                    )
                });
                (task, ready)
            }
            _ => {
                let mut client = Client::connect_timeout(&name, TIMEOUT).unwrap();
                let ready = client.readiness().unwrap();
                let task = rt.spawn(async move {
                    let r = client.call_async(b"never answered").await.map(drop);
                    (
                        r,
                        Instant::now(),
                        Box::new(client) as Box<dyn std::any::Any + Send>,
                    )
                });
                (task, ready)
            }
        };
        let quiet_futures: Vec<_> = quiet
            .iter_mut()
            .map(|(rx, _)| {
                let mut f = Box::pin(rx.recv_async());
                assert!(poll_once(&mut f).is_pending());
                f
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5 + next() % 30));
        assert!(
            !readable(&ready, 0),
            "round {round} ({kind}): the descriptor is readable before the kill"
        );
        let killed = child.kill();
        let timeout = i32::try_from(TIMEOUT.as_millis()).unwrap();
        assert!(
            readable(&ready, timeout),
            "round {round} ({kind}): the descriptor never became readable"
        );
        descriptors.record(format!("{round} ({kind})"), killed.elapsed());
        let (result, at, endpoint) = rt
            .block_on(async { tokio::time::timeout(TIMEOUT, waiting).await })
            .expect("the future was never woken")
            .unwrap();
        assert!(
            matches!(result, Err(Error::Disconnected { .. })),
            "{kind}: {result:?}"
        );
        detections.record(
            format!("{round} ({kind})"),
            at.saturating_duration_since(killed),
        );
        drop(quiet_futures);
        drop(ready);
        drop(endpoint);
        // The endpoint the future held is gone with its task's result, and
        // its descriptor, and with them the last holder of the name: the
        // notifier must not keep it (its registration holds a mapping of
        // the segment).
        let deadline = Instant::now() + TIMEOUT;
        while common::in_dev_shm(&name) {
            assert!(
                Instant::now() < deadline,
                "{kind}: {name} is still in /dev/shm after its endpoints were dropped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    detections.check();
    descriptors.check();
}

/// A peer SIGKILLed while its endpoint's task is between two polls (woken
/// by a message and handling it: the endpoint's slot in the notifier has
/// no listener) is told to the task's next wait at once. The notifier's
/// round for the death skipped the slot (no listener) and yet took the
/// death as seen to (another slot had one); the slot, active again with
/// the same pids, asked nothing, and the receiver's own look trusted its
/// answer younger than the liveness interval: `Disconnected` came at the
/// notifier's 5 s safety-net round. Run in a child of its own, where no
/// other test's deaths make the notifier ask. The receiver asks the kernel
/// itself when its last answer is 20 ms old; an attempt whose kill and
/// death round took longer (the first poll says `Disconnected` at once) is
/// made again.
#[cfg(target_os = "linux")]
#[test]
fn a_peer_killed_while_its_task_is_between_polls_is_told_at_its_next_wait() {
    const TEST: &str = "a_peer_killed_while_its_task_is_between_polls_is_told_at_its_next_wait";
    match role().as_deref() {
        Some("peer") => peer(),
        Some(_) => killed_between_polls(TEST),
        None => spawn(TEST, "task", &[]).0.wait_success(2 * TIMEOUT),
    }
}

#[cfg(target_os = "linux")]
fn killed_between_polls(test: &str) {
    // Another endpoint waited on all along (its sender in this process):
    // the notifier's round for the death has a slot with a listener, and
    // asks about that slot's peer (counted).
    let mut other = Receiver::create(256).unwrap();
    let _other_tx = Sender::attach(other.segment()).unwrap();
    let mut other_fut = Box::pin(other.recv_async());
    assert!(poll_once(&mut other_fut).is_pending());
    let wakes = std::sync::Arc::new(Wakes(Default::default()));
    let waker = Waker::from(std::sync::Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    for _attempt in 0..20 {
        let name = unique_name("aio-between");
        let cue_name = unique_name("aio-cue");
        let mut rx = Receiver::create_named(&name, 256).unwrap();
        let mut cue = Sender::create_named(&cue_name, 64).unwrap();
        let vars = [
            ("MST_KIND", "sender-on-cue".to_string()),
            ("MST_NAME", name),
            ("MST_CUE", cue_name),
        ];
        let (child, mut out) = spawn(test, "peer", &vars);
        out.after("ready");
        {
            let mut fut = pin!(rx.recv_async());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            // The notifier's rounds with the slot: they watch the child
            // and ask its lock once.
            std::thread::sleep(Duration::from_millis(50));
            let seen = wakes.count();
            cue.send(b"go").unwrap();
            wakes.after(seen, Instant::now());
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(msg)) => assert_eq!(&*msg, b"go"),
                other => panic!("not the message: {other:?}"),
            }
        }
        // The task handles the message, and looks for the next: its
        // answer about the peer's lock is now fresh (asked: the last was
        // older than the liveness interval).
        std::thread::sleep(LIVENESS_INTERVAL + Duration::from_millis(5));
        assert!(rx.try_recv().unwrap().is_none());
        let looks = memshare::aio::notifier_peer_looks();
        child.kill();
        // The notifier's round for the death (it asks about the other
        // endpoint's peer), while this slot has no listener.
        let deadline = Instant::now() + TIMEOUT;
        while memshare::aio::notifier_peer_looks() == looks {
            assert!(Instant::now() < deadline, "no round for the death");
            std::thread::sleep(Duration::from_micros(100));
        }
        let mut fut = pin!(rx.recv_async());
        let seen = wakes.count();
        let polled = Instant::now();
        match fut.as_mut().poll(&mut cx) {
            // The receiver's answer was 20 ms old by now: it asked the
            // kernel itself. Again.
            Poll::Ready(Err(Error::Disconnected { .. })) => continue,
            Poll::Pending => {}
            other => panic!("{other:?}"),
        }
        let took = wakes.after(seen, polled);
        let out = fut.as_mut().poll(&mut cx);
        assert!(
            matches!(out, Poll::Ready(Err(Error::Disconnected { .. }))),
            "not Disconnected: {out:?}"
        );
        assert!(
            took < Duration::from_secs(1),
            "the peer's death was told {took:?} after the next wait began"
        );
        drop(other_fut);
        return;
    }
    panic!("the kill and the notifier's round took a liveness interval, 20 times");
}

/// A wait set's future woken by a message asks about no member's peers:
/// the woken poll asked every member's (a lock query per peer: 63 system
/// calls per wake for a set of 64, 1,260 over these 20 wakes), though no
/// question was due and the notifier had found no peer gone. Counted by
/// the sets' own count of questions, in a child of its own (other tests'
/// deaths make every set of their process ask).
#[cfg(target_os = "linux")]
#[test]
fn a_woken_wait_set_future_asks_about_no_peer_the_notifier_did_not_find_gone() {
    const TEST: &str = "a_woken_wait_set_future_asks_about_no_peer_the_notifier_did_not_find_gone";
    const MEMBERS: u64 = 64;
    if role().is_some() {
        woken_set_looks(MEMBERS as usize);
        return;
    }
    let (child, mut out) = spawn(TEST, "set", &[]);
    let looks: u64 = out.after("looks ").parse().unwrap();
    child.wait_success(TIMEOUT);
    // (At most one round of questions of every member, were one due.)
    assert!(
        looks <= MEMBERS,
        "the set asked about its members' peers {looks} times in 20 wakes"
    );
}

/// The set child of the test above: a set of `members` receivers, their
/// senders in this process; its future woken 20 times by a message to one
/// of them. Prints how many questions about peers the sets asked.
#[cfg(target_os = "linux")]
fn woken_set_looks(members: usize) {
    let mut ends: Vec<(Receiver, Sender)> = (0..members)
        .map(|_| {
            let rx = Receiver::create(256).unwrap();
            let tx = Sender::attach(rx.segment()).unwrap();
            (rx, tx)
        })
        .collect();
    let mut set = WaitSet::new().unwrap();
    let tokens: Vec<_> = ends.iter().map(|(rx, _)| set.add(rx).unwrap()).collect();
    // The first wait watches the peers' process and asks their locks, to
    // trust the watches.
    assert!(set
        .wait_timeout(Duration::from_millis(50))
        .unwrap()
        .is_empty());
    let wakes = std::sync::Arc::new(Wakes(Default::default()));
    let waker = Waker::from(std::sync::Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let looks = memshare::wait_set::peer_looks();
    for round in 0..20 {
        let i = round * 7 % members;
        let mut fut = pin!(set.wait_async());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let seen = wakes.count();
        ends[i].1.send(b"x").unwrap();
        wakes.after(seen, Instant::now());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(ready)) => assert_eq!(ready.collect::<Vec<_>>(), [tokens[i]]),
            other => panic!("not the member sent to: {other:?}"),
        }
        assert_eq!(&*ends[i].0.try_recv().unwrap().unwrap(), b"x");
    }
    println!("looks {}", memshare::wait_set::peer_looks() - looks);
}

/// A wait set's future woken because the notifier found a member's peer
/// gone (its lock free) asks about that member at once, though the set's
/// own answer stands (asked, the peer's pid watched): else the future was
/// woken at every round of the notifier until the set's own next round,
/// 5 s later. Here the sender detached and a peer then wrote "attached"
/// back into its state word; the set asked before, the notifier (its
/// registration new) asks after. In a child of its own, where no other
/// test's death makes the set ask.
#[cfg(target_os = "linux")]
#[test]
fn a_wait_set_future_woken_for_a_peer_the_notifier_found_gone_asks_about_it() {
    const TEST: &str = "a_wait_set_future_woken_for_a_peer_the_notifier_found_gone_asks_about_it";
    if role().is_some() {
        let rx = Receiver::create(4096).unwrap();
        let tx = Sender::attach(rx.segment()).unwrap();
        let view = rx.segment().map(..).unwrap();
        let mut set = WaitSet::new().unwrap();
        let token = set.add(&rx).unwrap();
        // The set asks the sender's lock (held), and watches its pid.
        assert!(set.try_wait().unwrap().is_empty());
        drop(tx);
        view.write_at(64, &1u32.to_le_bytes()).unwrap();
        // The set trusts its answer: the peer's pid is the same, and
        // watched.
        assert!(set.try_wait().unwrap().is_empty());
        let start = Instant::now();
        let (out, polls) = poll_for(pin!(set.wait_async()), Duration::from_secs(1));
        let ready = out.expect("the set reports the member").unwrap();
        assert!(ready.contains(token));
        assert!(
            polls <= 3,
            "the wait set's future was polled {polls} times in {:?}",
            start.elapsed()
        );
        return;
    }
    spawn(TEST, "set", &[]).0.wait_success(TIMEOUT);
}

/// Futures in a child forked (without exec) after the notifier started
/// are woken: a new endpoint's (given a slot in the parent's worker, whose
/// thread is not in the child), and an inherited endpoint's (whose
/// registration with the notifier was the parent's); and a peer's death
/// is told there too. Before, both hung: the child took the parent's
/// workers and registrations as its own. The forker runs in a child of
/// its own (a fork of the test binary's many threads would copy their
/// locks); the forked child cues and kills the peer itself once its
/// futures wait, and ends with `_exit`.
#[cfg(target_os = "linux")]
#[test]
fn futures_in_a_child_forked_after_the_notifier_started_are_woken() {
    const TEST: &str = "futures_in_a_child_forked_after_the_notifier_started_are_woken";
    match role().as_deref() {
        Some("peer") => peer(),
        Some(_) => fork_and_await(TEST),
        None => spawn(TEST, "forker", &[]).0.wait_success(2 * TIMEOUT),
    }
}

/// Polls `fut` once (it must be pending), runs `then`, and polls it again
/// at each wake only, for at most 2 s: its output, if it completed.
#[cfg(target_os = "linux")]
fn pending_then<F: Future>(fut: std::pin::Pin<&mut F>, then: impl FnOnce()) -> Option<F::Output> {
    let wakes = std::sync::Arc::new(Wakes(Default::default()));
    let waker = Waker::from(std::sync::Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let mut fut = fut;
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    then();
    let start = Instant::now();
    let mut seen = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let now = wakes.count();
        if now != seen {
            seen = now;
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return Some(out);
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

#[cfg(target_os = "linux")]
fn fork_and_await(test: &str) {
    let name = unique_name("aio-fork");
    let cue_name = unique_name("aio-fork-cue");
    let mut rx = Receiver::create_named(&name, 256).unwrap();
    let mut cue = Sender::create_named(&cue_name, 64).unwrap();
    let vars = [
        ("MST_KIND", "sender-on-cue".to_string()),
        ("MST_NAME", name),
        ("MST_CUE", cue_name),
    ];
    let (peer, mut out) = spawn(test, "peer", &vars);
    out.after("ready");
    let peer_pid = peer.pid() as i32;
    // The notifier started, the receiver registered with it, and a future
    // waiting on it at the fork.
    let mut fut = Box::pin(rx.recv_async());
    assert!(poll_once(&mut fut).is_pending());
    std::thread::sleep(Duration::from_millis(50));
    // The child only allocates (glibc makes malloc safe across fork), takes
    // no lock another thread of this process may hold (the notifier's
    // thread sleeps, the reaper's and the output reader's wait), and ends
    // with `_exit`.
    // SAFETY: the child does only what a forked child of a threaded process may (above).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(fut);
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut fresh = Receiver::create(256).unwrap();
            let mut tx = Sender::attach(fresh.segment()).unwrap();
            let out = pending_then(pin!(fresh.recv_async()), || {
                tx.send(b"fresh").unwrap();
            });
            let msg = out.expect("a new receiver's future was not woken by a message");
            assert_eq!(&*msg.unwrap(), b"fresh");
            let out = pending_then(pin!(rx.recv_async()), || cue.send(b"go").unwrap());
            let msg = out.expect("the inherited receiver's future was not woken by a message");
            assert_eq!(&*msg.unwrap(), b"go");
            let out = pending_then(pin!(rx.recv_async()), || {
                // SAFETY: a signal to the peer process, alive (the parent
                // reaps it after this process ended).
                assert_eq!(unsafe { libc::kill(peer_pid, libc::SIGKILL) }, 0);
            });
            assert!(
                matches!(out, Some(Err(Error::Disconnected { .. }))),
                "not Disconnected within 2 s of the peer's kill: {out:?}"
            );
        }));
        // SAFETY: `_exit` ends the forked child at once, as it must.
        unsafe { libc::_exit(if code.is_ok() { 0 } else { 1 }) };
    }
    let status = common::wait_forked(pid, TIMEOUT);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the forked child's futures were not woken (status {status:#x})"
    );
    drop(fut);
    drop(peer);
    drop(cue);
}
