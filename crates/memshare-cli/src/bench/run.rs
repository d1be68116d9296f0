//! Running one case: the benchmark's side (spawn the peer, idle, probe,
//! measure) and the peer's side (`memshare bench-peer`).

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memshare::{CommandExt, Segment, ViewMut};

use super::case::{Case, Kind, Measured, Transport};
use super::link::{self, io, wait_for, Given, Link};
use super::rpc::{self, Served};
use super::watch;
use crate::fail::Failure;
use crate::os;

/// Control words in the "ctl" segment, each on its own cache-line pair:
/// READY counts the peers that are set up; GO is 1 for the probe, 2 when
/// a publish-subscribe case's publisher starts.
const READY: usize = 0;
const GO: usize = 128;
const PROBE_PING: usize = 256;
const PROBE_PONG: usize = 384;
const SPARE: usize = 512;
/// Where publish-subscribe subscriber `i` reports, at `RESULTS + 128 * i`:
/// the messages it received after its first, and the nanoseconds from its
/// first message to the end marker.
const RESULTS: usize = 1024;
/// At most this many subscribers report in the 4 KiB control segment.
const MAX_SUBSCRIBERS: usize = (4096 - RESULTS) / 128;

/// Round trips of the spin probe taken before each case.
const PROBE_ROUNDS: u32 = 2000;
/// Round trips before latency is recorded.
const WARMUP_ROUNDS: u32 = 1000;
/// `pubsub-publish` publishes at most one message per period: several
/// times what a subscriber takes per message, so that it keeps up.
const PUBLISH_PERIOD: Duration = Duration::from_micros(2);
/// A publish-subscribe publisher publishes at least this many messages,
/// so that every subscriber has some to time, however short the run.
const MIN_MESSAGES: u64 = 16;
/// How long a peer waits for anything before it gives up.
const PEER_PATIENCE: Duration = Duration::from_secs(120);

/// How long to idle and to measure.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub idle: Duration,
    pub measure: Duration,
}

/// A peer process that is killed and reaped if the benchmark stops early.
struct Peer {
    child: Option<Child>,
    /// Which it is, for messages: "peer 0 of CASE".
    name: String,
}

impl Peer {
    fn finish(mut self, patience: Duration) -> Result<(), Failure> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = child.try_wait().map_err(io("wait"))? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(Failure::other(format!(
                        "bench: {} failed ({status})",
                        self.name
                    )))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::other(format!(
                    "bench: {} did not finish",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// How the peer stands, for ranking failures: 0 ended by a signal
    /// (killed: the root cause when several failed), 1 exited with an
    /// error (often because another peer died), 2 succeeded, 3 running. A
    /// peer that ended is reaped; `finish` still reports how.
    fn standing(&mut self) -> u8 {
        match self.child.as_mut().map(|child| child.try_wait()) {
            Some(Ok(Some(status))) if status.code().is_none() => 0,
            Some(Ok(Some(status))) if !status.success() => 1,
            Some(Err(_)) => 1,
            Some(Ok(None)) => 3,
            _ => 2,
        }
    }

    /// Whether the peer has failed: exited unsuccessfully or was killed.
    fn failed(&mut self) -> bool {
        self.standing() < 2
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long, once a peer failed, the others get to end of it before the
/// failures are ranked: a peer killed by a signal is why the others exit
/// with "the server is gone", and its death may be reaped a moment after
/// theirs.
const SETTLE: Duration = Duration::from_millis(200);

/// The peers, failed ones first (killed by a signal before exited with an
/// error), finished in that order: a failed peer's failure is the case's
/// error (the others may wait for what it no longer sends, or exit with an
/// error because it died).
fn finish_all(peers: Vec<Peer>) -> Result<(), Failure> {
    let mut peers = peers;
    if peers.iter_mut().any(Peer::failed) {
        let settled = Instant::now() + SETTLE;
        while Instant::now() < settled && peers.iter_mut().any(|p| p.standing() == 3) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut peers: Vec<(u8, Peer)> = peers.into_iter().map(|mut p| (p.standing(), p)).collect();
    peers.sort_by_key(|(standing, _)| *standing);
    for (_, peer) in peers {
        peer.finish(Duration::from_secs(30))?;
    }
    Ok(())
}

fn ctl_words(view: &ViewMut) -> Result<[&AtomicU32; 5], Failure> {
    Ok([
        view.atomic_u32(READY)?,
        view.atomic_u32(GO)?,
        view.atomic_u32(PROBE_PING)?,
        view.atomic_u32(PROBE_PONG)?,
        view.atomic_u32(SPARE)?,
    ])
}

/// Where the peers of each case run: peer `i` on `cpus[i % len]`, or
/// wherever the system puts it if `cpus` is empty.
fn peer_cpu(cpus: &[usize], i: usize) -> Option<usize> {
    (!cpus.is_empty()).then(|| cpus[i % cpus.len()])
}

/// The CPUs the peers of `case` take in turn: `cpus` (the other CPUs, then
/// the benchmark's own), but for a request/response throughput case only
/// the other CPUs, so that the server thread has its CPU to itself (it does
/// as much work per call as the client that made it: on two CPUs the work
/// is balanced with the server on one and the four clients on the other).
fn placement<'a>(case: &Case, cpus: &'a [usize]) -> &'a [usize] {
    match cpus {
        [others @ .., _mine]
            if case.kind == Kind::Throughput && case.transport.is_rpc() && !others.is_empty() =>
        {
            others
        }
        _ => cpus,
    }
}

/// The command of peer `index` of `case` (a publish-subscribe case's
/// subscribers, a request/response case's clients are peers 0, 1, ...;
/// peer 0 answers the probe).
fn peer_command(
    case: &Case,
    timing: Timing,
    cpu: Option<usize>,
    index: usize,
    ctl: &Segment,
) -> Result<Command, Failure> {
    let exe = std::env::current_exe().map_err(io("current_exe"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("bench-peer")
        .arg(case.to_string())
        .arg("--seconds")
        .arg(timing.measure.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(cpu) = cpu {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    if index > 0 {
        cmd.arg("--index").arg(index.to_string());
    }
    cmd.try_share("ctl", ctl)?;
    Ok(cmd)
}

/// What the benchmark's side of a case measured, before the peers finish.
enum Outcome {
    Latency(Histogram<u64>),
    Received(f64),
    /// Publish-subscribe: the subscribers report in the control segment;
    /// `pubsub-publish` also measured the cost of publishing.
    Published(Option<PublishCost>),
    /// Request/response throughput: the calls the benchmark served.
    Served(Served),
}

/// Measures `case`: in this process for `memcpy` and `rpc-one-thread`,
/// else with peers, peer
/// `i` pinned to `cpus[i % cpus.len()]` (not pinned if `cpus` is empty).
pub fn measure(case: Case, timing: Timing, cpus: &[usize]) -> Result<Measured, Failure> {
    if case.transport == Transport::Memcpy {
        std::thread::sleep(timing.idle);
        let rate = memcpy_rate(case.size, timing.measure);
        return Ok(throughput_result(case, 0.0, rate));
    }
    if case.transport == Transport::RpcOneThread {
        std::thread::sleep(timing.idle);
        let served = rpc::one_thread(case, timing.measure)?;
        return rpc_result(case, 0.0, &served);
    }
    let ctl = Segment::create(4096)?;
    let ctl_view = ctl.map(..)?;
    let [ready, go, probe_ping, probe_pong, spare] = ctl_words(&ctl_view)?;
    let n = case.transport.peers();
    let mut cmds = (0..n)
        .map(|i| peer_command(&case, timing, peer_cpu(placement(&case, cpus), i), i, &ctl))
        .collect::<Result<Vec<_>, _>>()?;
    let (link, later, names) = link::parent_side(&case, &mut cmds)?;
    let mut peers = Vec::with_capacity(n);
    // The peers' ends of pipes and sockets are in the commands: each is
    // closed here once its peer is spawned.
    for (i, mut cmd) in cmds.into_iter().enumerate() {
        peers.push(Peer {
            child: Some(cmd.spawn().map_err(io("spawn the peer"))?),
            name: format!("peer {i} of {case}"),
        });
    }
    let peers = Mutex::new(peers);
    let lock = || peers.lock().unwrap_or_else(PoisonError::into_inner);
    let words = [ready, go, probe_ping, probe_pong, spare];
    let run = watch::while_watching(
        || lock().iter_mut().any(Peer::failed),
        || run_case(case, timing, link, later, names, words),
    );
    let mut peers = peers.into_inner().unwrap_or_else(PoisonError::into_inner);
    let (probe_ns, outcome, probe_after_ns) = match run {
        Ok(done) => done,
        // A peer that failed is what went wrong (the benchmark's side
        // then only saw it stop): its failure is the error.
        Err(e) => {
            if peers.iter_mut().any(Peer::failed) {
                return Err(finish_all(peers).err().unwrap_or(e));
            }
            return Err(e);
        }
    };
    finish_all(peers)?;
    let mut measured = match outcome {
        Outcome::Latency(hist) => latency_result(case, probe_ns, &hist),
        Outcome::Received(rate) => throughput_result(case, probe_ns, rate),
        Outcome::Published(cost) => pubsub_result(case, probe_ns, &ctl_view, n, cost)?,
        Outcome::Served(served) => rpc_result(case, probe_ns, &served)?,
    };
    measured.probe_after_ns = probe_after_ns;
    Ok(measured)
}

/// The benchmark's side of a case with peers, once they are spawned:
/// waits for them to set up, probes, measures, probes again. Returns the
/// probe before, what was measured, and the probe after.
fn run_case(
    case: Case,
    timing: Timing,
    mut link: Link,
    later: Option<link::Later>,
    names: link::Names,
    [ready, go, probe_ping, probe_pong, spare]: [&AtomicU32; 5],
) -> Result<(f64, Outcome, Option<f64>), Failure> {
    let n = case.transport.peers();
    let start_deadline = Instant::now() + Duration::from_secs(30);
    wait_for(ready, spare, |v| v == n as u32, 0, start_deadline)?;
    if let Some(later) = later {
        link = later.link()?;
    }
    // Every peer has attached (and the benchmark to a peer's service): the
    // services need their names no more.
    drop(names);

    // Let the vCPUs settle, then see where they are.
    std::thread::sleep(timing.idle);
    go.store(1, Ordering::Release);
    memshare::sync::wake(go, n as u32);
    let deadline = Instant::now() + timing.measure + Duration::from_secs(30);
    let probe_ns = probe([probe_ping, probe_pong, spare], false, deadline)?;

    let outcome = match case.kind {
        Kind::Latency => {
            let hist = match &mut link {
                Link::Wakeup(wakeups) => wakeups.measure(timing.measure, deadline)?,
                _ => ping_pong(&mut link, case, timing.measure, deadline)?,
            };
            link.stop_pong(case.transport)?;
            Outcome::Latency(hist)
        }
        Kind::Throughput if case.transport.is_pubsub() || case.transport.is_rpc() => {
            // The other subscribers (clients) start now (not during the
            // probe, whose CPU some of them share).
            go.store(2, Ordering::Release);
            memshare::sync::wake(go, n as u32);
            if case.transport.is_rpc() {
                Outcome::Served(rpc::serve_all(&mut link, case, deadline)?)
            } else {
                Outcome::Published(publish_all(&mut link, case, timing.measure)?)
            }
        }
        Kind::Throughput => {
            let (bytes, secs) = receive_all(&mut link, case.transport, case.size)?;
            Outcome::Received(bytes as f64 / secs)
        }
    };
    drop(link);
    let probe_after_ns = probe_after(n, [ready, go, probe_ping, probe_pong, spare], deadline)?;
    Ok((probe_ns, outcome, probe_after_ns))
}

/// A raw spin ping-pong on the control segment: the one-way latency
/// (median) that says where the two vCPUs are right now.
/// `after`: the probe after the case (its pings go on from the first's).
fn probe(
    [ping, pong, spare]: [&AtomicU32; 3],
    after: bool,
    deadline: Instant,
) -> Result<f64, Failure> {
    let mut rtts = Vec::with_capacity(PROBE_ROUNDS as usize);
    for i in probe_pings(after) {
        let t0 = Instant::now();
        ping.store(i, Ordering::Release);
        wait_for(pong, spare, |v| v == i, u32::MAX, deadline)?;
        rtts.push(t0.elapsed().as_nanos() as u64);
    }
    rtts.sort_unstable();
    Ok(rtts[rtts.len() / 2] as f64 / 2.0)
}

/// The values of the probe's pings: 1 to `PROBE_ROUNDS`, then as many
/// more for the probe after the case.
fn probe_pings(after: bool) -> std::ops::RangeInclusive<u32> {
    let first = if after { PROBE_ROUNDS + 1 } else { 1 };
    first..=first + PROBE_ROUNDS - 1
}

/// What the probe after a case found: once the `n` peers have measured
/// (each counts itself in `ready` again), peer 0 answers a second probe.
/// `None` if a peer failed first (`Peer::finish` reports why).
fn probe_after(
    n: usize,
    [ready, go, ping, pong, spare]: [&AtomicU32; 5],
    deadline: Instant,
) -> Result<Option<f64>, Failure> {
    let measured = 2 * n as u32;
    loop {
        let counted = ready.load(Ordering::Acquire);
        if counted >= measured {
            break;
        }
        if watch::peer_failed() {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(Failure::other("bench: a peer never finished measuring"));
        }
        memshare::sync::wait(ready, counted, Duration::from_millis(2));
    }
    go.store(3, Ordering::Release);
    memshare::sync::wake(go, n as u32);
    probe([ping, pong, spare], true, deadline).map(Some)
}

fn probe_answer(
    [ping, pong, spare]: [&AtomicU32; 3],
    after: bool,
    deadline: Instant,
) -> Result<(), Failure> {
    for i in probe_pings(after) {
        wait_for(ping, spare, |v| v == i, u32::MAX, deadline)?;
        pong.store(i, Ordering::Release);
    }
    Ok(())
}

fn ping_pong(
    link: &mut Link,
    case: Case,
    duration: Duration,
    deadline: Instant,
) -> Result<Histogram<u64>, Failure> {
    let t = case.transport;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| Failure::other(format!("bench: histogram: {e}")))?;
    let mut msg: Vec<u8> = (0..case.size).map(|i| i as u8).collect();
    let mut seq = 1;
    for _ in 0..WARMUP_ROUNDS {
        link.round_trip(t, seq, &mut msg, deadline)?;
        seq += 1;
    }
    let end = Instant::now() + duration;
    loop {
        let t0 = Instant::now();
        link.round_trip(t, seq, &mut msg, deadline)?;
        let rtt = t0.elapsed();
        hist.saturating_record((rtt.as_nanos() as u64 / 2).max(1));
        seq += 1;
        if t0 > end {
            break;
        }
    }
    Ok(hist)
}

/// Folds every 8-byte word of `bytes` (and the tail) into one value, so
/// that the receiver really reads every byte it counts.
pub fn touch(bytes: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        acc ^= u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    }
    for &b in chunks.remainder() {
        acc = acc.rotate_left(8) ^ u64::from(b);
    }
    acc
}

/// Receives until the peer says it is done; returns bytes and seconds.
fn receive_all(link: &mut Link, t: Transport, size: usize) -> Result<(u64, f64), Failure> {
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut acc = 0u64;
    match link {
        Link::ChannelIn(rx) if t == Transport::ChannelRecvAsync => {
            // Every message through the future, in one task on this
            // thread, as an application's receive loop is: ready at once
            // while the sender keeps the ring busy, parked on the notifier
            // when it is empty.
            let waker = super::asynch::waker();
            let deadline = Instant::now() + Duration::from_secs(3600);
            let task = async {
                loop {
                    let msg = rx.recv_async().await?;
                    if msg.is_empty() {
                        return Ok::<_, memshare::Error>(());
                    }
                    acc ^= touch(&msg);
                    bytes += msg.len() as u64;
                }
            };
            super::asynch::block_on_until(&waker, task, deadline)
                .ok_or_else(|| Failure::other("bench: the sender stopped sending"))??;
        }
        Link::ChannelIn(rx) => loop {
            let msg = rx.recv()?;
            if msg.is_empty() {
                break;
            }
            acc ^= touch(&msg);
            bytes += msg.len() as u64;
        },
        Link::Stream(s) => {
            let mut buf = vec![0u8; size.max(64 * 1024)];
            loop {
                let n = s.read(&mut buf).map_err(io("read"))?;
                if n == 0 {
                    break;
                }
                acc ^= touch(&buf[..n]);
                bytes += n as u64;
            }
        }
        _ => return Err(Failure::other("bench: not a throughput link")),
    }
    black_box(acc);
    Ok((bytes, start.elapsed().as_secs_f64()))
}

/// Sends messages of `size` bytes for `duration`, then the end marker.
fn send_all(link: &mut Link, t: Transport, size: usize, duration: Duration) -> Result<(), Failure> {
    let buf: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let end = Instant::now() + duration;
    let check_every = if size >= 65_536 { 1 } else { 64 };
    let mut seq = 0u64;
    match link {
        Link::ChannelOut(tx) => {
            loop {
                if t == Transport::ChannelReserve {
                    // Zero-copy: the producer writes every byte of the
                    // message in place (no source buffer to copy from).
                    let mut slot = tx.reserve(size)?;
                    slot.fill(seq as u8);
                    slot.commit();
                } else {
                    tx.send(&buf)?;
                }
                seq += 1;
                if seq % check_every == 0 && Instant::now() > end {
                    break;
                }
            }
            tx.send(&[])?;
        }
        Link::Stream(s) => {
            loop {
                s.write_all(&buf).map_err(io("write"))?;
                seq += 1;
                if seq % check_every == 0 && Instant::now() > end {
                    break;
                }
            }
            s.close_write();
        }
        _ => return Err(Failure::other("bench-peer: not a throughput link")),
    }
    Ok(())
}

/// What one zero-copy publication costs (`pubsub-publish`), in
/// nanoseconds: the median and p99 of `try_loan` + header + `publish`
/// when there was room, timed with two clock reads, whose own cost
/// (`clock_ns`, median) is included.
#[derive(Clone, Copy, Debug)]
struct PublishCost {
    median_ns: f64,
    p99_ns: f64,
    clock_ns: f64,
}

/// The median cost of timing nothing: two clock reads.
fn clock_cost() -> f64 {
    let mut ns: Vec<u64> = (0..10_000)
        .map(|_| {
            let t0 = Instant::now();
            t0.elapsed().as_nanos() as u64
        })
        .collect();
    ns.sort_unstable();
    ns[ns.len() / 2] as f64
}

/// The publisher of a publish-subscribe throughput case: publishes
/// messages of the case's size for `duration`, then the end marker (an
/// empty message). Every case but `pubsub-publish` writes every byte of
/// each loan; `pubsub-publish` writes an 8-byte header only and times
/// each publication made without waiting.
fn publish_all(
    link: &mut Link,
    case: Case,
    duration: Duration,
) -> Result<Option<PublishCost>, Failure> {
    let Link::PubOut(publisher) = link else {
        return Err(Failure::other("bench: not a publishing link"));
    };
    let size = case.size;
    let mut seq = 0u64;
    let cost = if case.transport == Transport::PubsubPublish {
        let clock_ns = clock_cost();
        let header = size.min(8);
        // Warm up: every buffer of the pool lent, and its page touched.
        for _ in 0..WARMUP_ROUNDS {
            let mut loan = publisher.loan(size)?;
            loan[..header].copy_from_slice(&seq.to_le_bytes()[..header]);
            loan.publish();
            seq += 1;
        }
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| Failure::other(format!("bench: histogram: {e}")))?;
        let end = Instant::now() + duration;
        let mut next = Instant::now();
        loop {
            // Paced, so that the subscriber keeps up: one message per
            // PUBLISH_PERIOD at most.
            let mut t0 = Instant::now();
            while t0 < next {
                std::hint::spin_loop();
                t0 = Instant::now();
            }
            if t0 > end {
                break;
            }
            next = t0 + PUBLISH_PERIOD;
            // Without waiting: a full queue is not a publication's cost.
            match publisher.try_loan(size)? {
                Some(mut loan) => {
                    loan[..header].copy_from_slice(&seq.to_le_bytes()[..header]);
                    loan.publish();
                    hist.saturating_record((t0.elapsed().as_nanos() as u64).max(1));
                    seq += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        Some(PublishCost {
            median_ns: hist.value_at_quantile(0.5) as f64,
            p99_ns: hist.value_at_quantile(0.99) as f64,
            clock_ns,
        })
    } else {
        let end = Instant::now() + duration;
        let check_every = if size >= 65_536 { 1 } else { 64 };
        loop {
            // Zero-copy: the publisher writes every byte in place.
            let mut loan = publisher.loan(size)?;
            loan.fill(seq as u8);
            loan.publish();
            seq += 1;
            if seq >= MIN_MESSAGES && seq % check_every == 0 && Instant::now() > end {
                break;
            }
        }
        None
    };
    publisher.publish_copy(&[])?;
    Ok(cost)
}

/// A subscriber of a publish-subscribe throughput case: receives until
/// the end marker, reading every byte (`whole`) or the 8-byte header.
/// Returns the messages after the first and the time from the first to
/// the end marker.
fn receive_samples(link: &Link, whole: bool) -> Result<(u64, Duration), Failure> {
    let Link::SubIn(rx) = link else {
        return Err(Failure::other("bench-peer: not a subscribing link"));
    };
    let read = |msg: &[u8]| {
        if whole {
            touch(msg)
        } else {
            touch(&msg[..msg.len().min(8)])
        }
    };
    let mut acc;
    {
        let first = rx.recv()?;
        if first.is_empty() {
            return Ok((0, Duration::ZERO));
        }
        acc = read(&first);
    }
    let start = Instant::now();
    let mut msgs = 0u64;
    loop {
        let msg = rx.recv()?;
        if msg.is_empty() {
            break;
        }
        acc ^= read(&msg);
        msgs += 1;
    }
    let elapsed = start.elapsed();
    black_box(acc);
    Ok((msgs, elapsed))
}

/// Single-core memcpy bandwidth copying `size`-byte blocks through a
/// working set as large as the channel's ring for that size.
fn memcpy_rate(size: usize, duration: Duration) -> f64 {
    let working = (size * 4).max(1 << 20);
    let src: Vec<u8> = (0..working).map(|i| i as u8).collect();
    let mut dst = vec![0u8; working];
    let blocks = working / size;
    let start = Instant::now();
    let mut copied = 0u64;
    let mut i = 0;
    loop {
        let at = (i % blocks) * size;
        dst[at..at + size].copy_from_slice(&src[at..at + size]);
        black_box(&mut dst);
        copied += size as u64;
        i += 1;
        if i % 64 == 0 && start.elapsed() > duration {
            break;
        }
    }
    copied as f64 / start.elapsed().as_secs_f64()
}

fn latency_result(case: Case, probe_ns: f64, hist: &Histogram<u64>) -> Measured {
    Measured {
        case,
        probe_ns,
        probe_after_ns: None,
        median_ns: Some(hist.value_at_quantile(0.5) as f64),
        p99_ns: Some(hist.value_at_quantile(0.99) as f64),
        p999_ns: Some(hist.value_at_quantile(0.999) as f64),
        samples: hist.len(),
        msgs_per_sec: None,
        bytes_per_sec: None,
        subscriber_msgs_per_sec: None,
        publish_ns: None,
        publish_p99_ns: None,
        clock_ns: None,
        client_calls_per_sec: None,
    }
}

fn throughput_result(case: Case, probe_ns: f64, bytes_per_sec: f64) -> Measured {
    Measured {
        case,
        probe_ns,
        probe_after_ns: None,
        median_ns: None,
        p99_ns: None,
        p999_ns: None,
        samples: 0,
        msgs_per_sec: Some(bytes_per_sec / case.size as f64),
        bytes_per_sec: Some(bytes_per_sec),
        subscriber_msgs_per_sec: None,
        publish_ns: None,
        publish_p99_ns: None,
        clock_ns: None,
        client_calls_per_sec: None,
    }
}

/// The two words where subscriber `i` reports (see [`RESULTS`]).
fn result_words(view: &ViewMut, i: usize) -> Result<[&AtomicU64; 2], Failure> {
    if i >= MAX_SUBSCRIBERS {
        return Err(Failure::other(format!(
            "bench: subscriber {i}: at most {MAX_SUBSCRIBERS} can report"
        )));
    }
    let at = RESULTS + 128 * i;
    Ok([view.atomic_u64(at)?, view.atomic_u64(at + 8)?])
}

/// A publish-subscribe case's result, from the `n` subscribers' reports
/// (read once they have exited) and the publisher's cost, if measured.
fn pubsub_result(
    case: Case,
    probe_ns: f64,
    ctl: &ViewMut,
    n: usize,
    cost: Option<PublishCost>,
) -> Result<Measured, Failure> {
    let mut rates = Vec::with_capacity(n);
    for i in 0..n {
        let [msgs, nanos] = result_words(ctl, i)?;
        let (msgs, nanos) = (msgs.load(Ordering::Acquire), nanos.load(Ordering::Acquire));
        if msgs == 0 || nanos == 0 {
            return Err(Failure::other(format!(
                "bench: {case}: subscriber {i} received too few messages to time (give a longer --duration)"
            )));
        }
        rates.push(msgs as f64 * 1e9 / nanos as f64);
    }
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    // pubsub-publish moves no payload: it has no byte rate.
    let delivered = (case.transport != Transport::PubsubPublish)
        .then(|| rates.iter().sum::<f64>() * case.size as f64);
    Ok(Measured {
        case,
        probe_ns,
        probe_after_ns: None,
        median_ns: None,
        p99_ns: None,
        p999_ns: None,
        samples: 0,
        msgs_per_sec: Some(slowest),
        bytes_per_sec: delivered,
        subscriber_msgs_per_sec: Some(rates),
        publish_ns: cost.map(|c| c.median_ns),
        publish_p99_ns: cost.map(|c| c.p99_ns),
        clock_ns: cost.map(|c| c.clock_ns),
        client_calls_per_sec: None,
    })
}

/// A request/response throughput case's result: the calls of all clients
/// per second of the server's time, and each client's.
fn rpc_result(case: Case, probe_ns: f64, served: &Served) -> Result<Measured, Failure> {
    let secs = served.elapsed.as_secs_f64();
    if served.calls.contains(&0) || secs == 0.0 {
        return Err(Failure::other(format!(
            "bench: {case}: a client made no call in time (give a longer --duration)"
        )));
    }
    let each: Vec<f64> = served.calls.iter().map(|&c| c as f64 / secs).collect();
    let calls = each.iter().sum::<f64>();
    Ok(Measured {
        case,
        probe_ns,
        probe_after_ns: None,
        median_ns: None,
        p99_ns: None,
        p999_ns: None,
        samples: 0,
        msgs_per_sec: Some(calls),
        bytes_per_sec: Some(calls * case.size as f64),
        subscriber_msgs_per_sec: None,
        publish_ns: None,
        publish_p99_ns: None,
        clock_ns: None,
        client_calls_per_sec: Some(each),
    })
}

/// `memshare bench-peer`: the other process of one case (for a
/// publish-subscribe case, subscriber `index`; for a request/response
/// throughput case, client `index`; 0 answers the probe).
pub fn peer(
    case: Case,
    seconds: f64,
    given: Given,
    cpu: Option<usize>,
    index: usize,
) -> Result<(), Failure> {
    os::die_with_parent();
    if let Some(cpu) = cpu {
        os::pin_to_cpu(cpu);
    }
    let deadline = Instant::now() + PEER_PATIENCE;
    let ctl = Segment::inherited("ctl")?;
    let view = ctl.map(..)?;
    let [ready, go, probe_ping, probe_pong, spare] = ctl_words(&view)?;
    let mut link = link::peer_side(&case, given)?;
    ready.fetch_add(1, Ordering::Release);
    memshare::sync::wake(ready, 1);
    // Idle while the benchmark idles: sleep, don't spin.
    if index == 0 {
        wait_for(go, spare, |v| v >= 1, 0, deadline)?;
        probe_answer([probe_ping, probe_pong, spare], false, deadline)?;
    } else {
        wait_for(go, spare, |v| v >= 2, 0, deadline)?;
    }
    let duration = || {
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| Failure::usage("bench-peer: bad --seconds"))
    };
    let part = match case.kind {
        Kind::Latency => link.pong(case.transport, case.size, deadline),
        Kind::Throughput if case.transport.is_pubsub() => {
            let whole = case.transport != Transport::PubsubPublish;
            let (msgs, elapsed) = receive_samples(&link, whole)?;
            let [msgs_word, nanos_word] = result_words(&view, index)?;
            msgs_word.store(msgs, Ordering::Release);
            nanos_word.store(elapsed.as_nanos() as u64, Ordering::Release);
            Ok(())
        }
        Kind::Throughput if case.transport.is_rpc() => {
            rpc::call_all(&mut link, case, index, duration()?)
        }
        Kind::Throughput => send_all(&mut link, case.transport, case.size, duration()?),
    };
    // (Closed first: a stream's reader may be waiting for its end.)
    drop(link);
    part?;
    // Measured: counted in `ready` again; peer 0 answers the probe after
    // the case once every peer has measured.
    ready.fetch_add(1, Ordering::Release);
    memshare::sync::wake(ready, 1);
    if index == 0 {
        wait_for(go, spare, |v| v >= 3, 0, deadline)?;
        probe_answer([probe_ping, probe_pong, spare], true, deadline)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which child `child` makes: the test binary re-run on this test.
    const CHILD: &str = "MEMSHARE_BENCH_RUN_TEST_CHILD";

    /// Nothing when the suite runs it; as a child, exits with an error or
    /// waits to be killed.
    #[test]
    fn child_of_finish_all_tests() {
        match std::env::var(CHILD).as_deref() {
            Ok("fail") => std::process::exit(1),
            Ok("wait") => std::thread::sleep(Duration::from_secs(60)),
            _ => {}
        }
    }

    fn child(what: &str, name: &str) -> Peer {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args(["--exact", "bench::run::tests::child_of_finish_all_tests"])
            .env(CHILD, what)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Peer {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    #[test]
    fn a_killed_peer_is_the_error_before_one_that_exited_because_of_it() {
        // Peer 0 exits with an error first (as a client does once its
        // server is gone); peer 1 is killed after it and not yet reaped.
        let mut exited = child("fail", "peer 0 of a case");
        let mut killed = child("wait", "peer 1 of a case");
        while exited.standing() == 3 {
            std::thread::sleep(Duration::from_millis(2));
        }
        killed.child.as_mut().unwrap().kill().unwrap();
        let e = finish_all(vec![exited, killed]).unwrap_err().to_string();
        assert!(
            e.contains("peer 1 of a case") && e.contains("signal: 9"),
            "{e}"
        );
    }

    #[test]
    fn a_peer_that_exited_with_an_error_is_the_error_when_none_was_killed() {
        // The other peer still runs: it gets a moment to end, then goes
        // after the failure (and is killed with the case).
        let mut exited = child("fail", "peer 0 of a case");
        let waits = child("wait", "peer 1 of a case");
        while exited.standing() == 3 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let e = finish_all(vec![waits, exited]).unwrap_err().to_string();
        assert!(
            e.contains("peer 0 of a case") && e.contains("exit status: 1"),
            "{e}"
        );
    }
}
