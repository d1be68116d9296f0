//! The async notifier against hostile peers (the fuzzer): every endpoint's
//! future (`Receiver::recv_async`, `Sender::reserve_async` and
//! `send_async`, `Subscriber::recv_async`, `Server::recv_async`,
//! `Client::call_async`, `WaitSet::wait_async`) polled by hand with a
//! counting waker, and readiness descriptors, while the fuzzer writes the
//! words the notifier's members read (as in `wait_set_hostile`: states,
//! positions, futex and waiting words, cursors, entries, slot words) and
//! the pid hints the notifier watches peers' deaths through (channel
//! header bytes 72/76, the rpc server's pid): this process's own pid, 0,
//! 1, `u32::MAX`, a dead process's, anything.
//!
//! Each future is polled for a bounded window (≤ 3 ms), with writes in
//! the middle of it while it listens. It must complete (a value within
//! the endpoint's limits, or an error) or stay pending without burning
//! CPU: woken at most a few times in a window where nothing changes.
//! Nothing may panic or hang. A descriptor whose endpoint is dropped
//! becomes readable (at once; the bound is 3 s, for loaded machines:
//! before the drop woke the notifier it took up to 5 s). At the end
//! of every run, every registration with the notifier is given up (its
//! slot count is back to zero) and no descriptor is left open: nothing
//! grows from run to run.
#![no_main]

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use memshare::aio::{notifier_slots, notifier_threads, Readiness};
use memshare::{ViewMut, WaitSet};

mod hostile;
use hostile::*;

/// A waker that counts its wakes and unparks the fuzzing thread.
struct Count {
    wakes: AtomicUsize,
    thread: Thread,
}

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Wakes that a future pending in a window where nothing changes may see
/// (the notifier fires each listener once per report; a report that its
/// endpoint's `try_` form does not confirm is spurious, and a few in a row
/// are allowed). More is a future that spins through the notifier.
const MAX_WAKES: usize = 16;

/// The fuzzer's writes between two polls of a pending future.
struct Scribble<'a, 'b> {
    input: &'a mut Input<'b>,
    views: [&'a ViewMut; 4],
    ps: &'a PubsubLayout,
    sub_slot: usize,
    client_slot: usize,
}

impl Scribble<'_, '_> {
    /// One write, as the next input bytes say (nothing once they end).
    fn once(&mut self) {
        let Some(op) = self.input.byte() else { return };
        let sel = self.input.byte().unwrap_or(0);
        match op % 4 {
            0 => poke_channel(self.input, self.views[0], sel),
            1 => poke_channel(self.input, self.views[1], sel),
            2 => poke_pubsub(self.input, self.views[2], self.ps, sel, self.sub_slot),
            _ => poke_rpc(self.input, self.views[3], self.client_slot, sel),
        }
    }
}

/// Polls `fut` for `window`: at once, then after `writes` writes of the
/// fuzzer, then whenever it is woken. Its output if it completed.
fn drive<F: Future>(
    mut fut: Pin<&mut F>,
    count: &Arc<Count>,
    window: Duration,
    writes: u8,
    scribble: &mut Scribble,
    what: &str,
) -> Option<F::Output> {
    let waker = Waker::from(Arc::clone(count));
    let mut cx = Context::from_waker(&waker);
    if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
        return Some(out);
    }
    // Pending: it listens on the notifier. The peer writes meanwhile.
    for _ in 0..writes {
        scribble.once();
    }
    if writes > 0 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    let start = Instant::now();
    let deadline = start + window;
    let mut seen = count.wakes.load(Ordering::SeqCst);
    let mut polls = 0;
    loop {
        // Until woken, or the window ends.
        loop {
            let now = count.wakes.load(Ordering::SeqCst);
            if now != seen {
                seen = now;
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            std::thread::park_timeout(left);
        }
        polls += 1;
        assert!(
            polls <= MAX_WAKES,
            "a pending {what} was woken {polls} times in {:?} with nothing changed: it spins",
            start.elapsed()
        );
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
}

/// Whether `fd` is readable within `timeout`.
fn readable(fd: &Readiness, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, for the length given; the descriptor is
    // open (borrowed from `fd` for the call).
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// Descriptors open in this process: what each is.
/// Whether an entry of [`open_fds`] is an `io_uring` (a wait set's or a
/// notifier thread's sleep).
fn is_ring(fd: &str) -> bool {
    fd.ends_with("anon_inode:[io_uring]")
}

fn open_fds() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| match std::fs::read_link(e.path()) {
            Ok(to) => format!("{} -> {}", e.file_name().to_string_lossy(), to.display()),
            Err(_) => e.file_name().to_string_lossy().into_owned(),
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Receiver,
    Sender,
    Subscriber,
    Server,
    Client,
    Set,
}

const KINDS: [Kind; 6] = [
    Kind::Receiver,
    Kind::Sender,
    Kind::Subscriber,
    Kind::Server,
    Kind::Client,
    Kind::Set,
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte().unwrap_or(0);
    let capacity = 64usize << (mode & 3); // 64..=512
    let pid = std::process::id();
    let ps_name = format!("fz-aio-ps-{pid}");
    let rpc_name = format!("fz-aio-rpc-{pid}");
    let _ = memshare::Segment::remove(&ps_name);
    let _ = memshare::Segment::remove(&rpc_name);
    let fds_before = open_fds().iter().filter(|fd| !is_ring(fd)).count();
    let count = Arc::new(Count {
        wakes: AtomicUsize::new(0),
        thread: std::thread::current(),
    });

    {
        // Awaited: channel A's receiver, room on channel B's sender, the
        // subscriber, the server and the client.
        let Some(Endpoints {
            rx_a,
            tx_a,
            view_a,
            tx_b,
            rx_b,
            view_b,
            publisher,
            subscriber,
            view_ps,
            ps_layout,
            sub_slot,
            server,
            client,
            view_rpc,
            client_slot,
        }) = Endpoints::build(capacity, mode, &ps_name, &rpc_name)
        else {
            return;
        };

        let mut set = WaitSet::new().unwrap();
        set.add(&rx_a).unwrap();
        set.add(&subscriber).unwrap();
        set.add(&client).unwrap();
        if mode & 8 != 0 {
            set.add_writable(&tx_b).unwrap();
            set.add(&server).unwrap();
        }

        let mut tx_a = Some(tx_a);
        let mut rx_b = Some(rx_b);
        let mut publisher = Some(publisher);
        let mut rx_a = Some(rx_a);
        let mut tx_b = Some(tx_b);
        let mut subscriber = Some(subscriber);
        let mut server = Some(server);
        let mut client = Some(client);
        let mut set = Some(set);
        let mut descriptors: Vec<(Kind, Readiness)> = Vec::new();

        let mut steps = 0;
        while let Some(op) = input.byte() {
            steps += 1;
            if steps > 64 {
                break;
            }
            let sel = input.byte().unwrap_or(0);
            let kind = KINDS[usize::from(sel) % KINDS.len()];
            match op % 8 {
                0 => poke_channel(&mut input, &view_a, sel),
                1 => poke_channel(&mut input, &view_b, sel),
                2 => poke_pubsub(&mut input, &view_ps, &ps_layout, sel, sub_slot),
                3 => poke_rpc(&mut input, &view_rpc, client_slot, sel),
                4 => {
                    // Honest peers.
                    match sel % 5 {
                        0 => {
                            if let Some(tx) = tx_a.as_mut() {
                                let _ = tx.try_send(&vec![sel; usize::from(sel >> 3)]);
                            }
                        }
                        1 => {
                            if let Some(rx) = rx_b.as_mut() {
                                let _ = rx.try_recv().map(|m| m.map(|m| m.len()));
                            }
                        }
                        2 => {
                            if let Some(p) = publisher.as_mut() {
                                let _ = p.try_publish_copy(&[sel; 8]);
                            }
                        }
                        3 => {
                            // The server answers what the client's
                            // futures left behind.
                            if let Some(s) = server.as_ref() {
                                while let Ok(Some(r)) = s.try_recv() {
                                    let _ = r.respond(&[sel; 5]);
                                }
                            }
                        }
                        _ => match sel >> 3 & 3 {
                            // A peer goes, cleanly.
                            0 => drop(tx_a.take()),
                            1 => drop(rx_b.take()),
                            _ => drop(publisher.take()),
                        },
                    }
                }
                5 | 6 => {
                    // A future, polled for a window with writes while it
                    // listens.
                    let window = Duration::from_micros(u64::from(sel >> 3 & 3) * 1000);
                    let writes = op >> 5;
                    let views = [&view_a, &view_b, &view_ps, &view_rpc];
                    let mut scribble = Scribble {
                        input: &mut input,
                        views,
                        ps: &ps_layout,
                        sub_slot,
                        client_slot,
                    };
                    let s = &mut scribble;
                    match kind {
                        Kind::Receiver => {
                            if let Some(rx) = rx_a.as_mut() {
                                let fut = pin!(rx.recv_async());
                                if let Some(Ok(m)) =
                                    drive(fut, &count, window, writes, s, "Receiver::recv_async")
                                {
                                    assert!(m.len() <= capacity - 8, "a message beyond the ring");
                                }
                            }
                        }
                        Kind::Sender => {
                            if let Some(tx) = tx_b.as_mut() {
                                if op & 1 == 0 {
                                    let len = usize::from(sel >> 5) * 10;
                                    let fut = pin!(tx.reserve_async(len));
                                    if let Some(Ok(mut g)) = drive(
                                        fut,
                                        &count,
                                        window,
                                        writes,
                                        s,
                                        "Sender::reserve_async",
                                    ) {
                                        assert_eq!(g.len(), len);
                                        g.fill(op);
                                        if sel & 4 != 0 {
                                            g.commit();
                                        }
                                    }
                                } else {
                                    let msg = [op; 12];
                                    let fut = pin!(tx.send_async(&msg));
                                    let _ =
                                        drive(fut, &count, window, writes, s, "Sender::send_async");
                                }
                            }
                        }
                        Kind::Subscriber => {
                            if let Some(sub) = subscriber.as_mut() {
                                let fut = pin!(sub.recv_async());
                                if let Some(Ok(m)) =
                                    drive(fut, &count, window, writes, s, "Subscriber::recv_async")
                                {
                                    assert!(m.len() <= MAX_MESSAGE, "a sample beyond the limit");
                                }
                            }
                        }
                        Kind::Server => {
                            if let Some(srv) = server.as_mut() {
                                let fut = pin!(srv.recv_async());
                                if let Some(Ok(r)) =
                                    drive(fut, &count, window, writes, s, "Server::recv_async")
                                {
                                    assert!(
                                        r.len() as u64 <= MAX_REQUEST,
                                        "a request beyond the limit"
                                    );
                                    let _ = r.respond(&[op; 6]);
                                }
                            }
                        }
                        Kind::Client => {
                            if let Some(c) = client.as_mut() {
                                let request = [op; 8];
                                let fut = pin!(c.call_async(&request));
                                if let Some(Ok(r)) =
                                    drive(fut, &count, window, writes, s, "Client::call_async")
                                {
                                    assert!(
                                        r.len() as u64 <= MAX_RESPONSE,
                                        "a response beyond the limit"
                                    );
                                }
                            }
                        }
                        Kind::Set => {
                            if let Some(set) = set.as_mut() {
                                let members: Vec<_> = set.tokens().collect();
                                let fut = pin!(set.wait_async());
                                if let Some(Ok(ready)) =
                                    drive(fut, &count, window, writes, s, "WaitSet::wait_async")
                                {
                                    for t in ready {
                                        assert!(members.contains(&t), "reported {t}, not a member");
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {
                    match sel >> 3 & 3 {
                        0 if descriptors.len() < 4 => {
                            // A descriptor, watching.
                            let made = match kind {
                                Kind::Receiver => rx_a.as_ref().map(|e| e.readiness()),
                                Kind::Sender => tx_b.as_ref().map(|e| e.readiness()),
                                Kind::Subscriber => subscriber.as_ref().map(|e| e.readiness()),
                                Kind::Server => server.as_ref().map(|e| e.readiness()),
                                Kind::Client => client.as_ref().map(|e| e.readiness()),
                                Kind::Set => set.as_ref().map(|e| e.readiness()),
                            };
                            if let Some(Ok(r)) = made {
                                descriptors.push((kind, r));
                            }
                        }
                        1 => {
                            // Look at the descriptors; re-arm or drop one.
                            let ms = Duration::from_millis(u64::from(sel >> 6));
                            for (_, d) in &descriptors {
                                if readable(d, ms) && sel & 4 != 0 {
                                    d.rearm();
                                }
                            }
                            if sel & 2 != 0 && !descriptors.is_empty() {
                                descriptors.remove(usize::from(sel) % descriptors.len());
                            }
                        }
                        2 => {
                            // An endpoint dropped: its descriptors become
                            // readable.
                            let dropped = match kind {
                                Kind::Receiver => rx_a.take().is_some(),
                                Kind::Sender => tx_b.take().is_some(),
                                Kind::Subscriber => subscriber.take().is_some(),
                                Kind::Server => false,
                                Kind::Client => client.take().is_some(),
                                Kind::Set => {
                                    // (Its descriptors watch members, which
                                    // live on.)
                                    drop(set.take());
                                    false
                                }
                            };
                            if dropped {
                                for (k, d) in &descriptors {
                                    if *k == kind {
                                        assert!(
                                            readable(d, Duration::from_secs(3)),
                                            "a descriptor of a dropped {kind:?} is not readable"
                                        );
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        drop(descriptors);
        drop(set);
        drop((rx_a, tx_a, tx_b, rx_b, subscriber, publisher, client));
        drop((view_a, view_b, view_ps, view_rpc));
        drop(server);
    }
    let _ = memshare::Segment::remove(&ps_name);
    let _ = memshare::Segment::remove(&rpc_name);

    // Every registration given up (a slot the notifier sleeps on is freed
    // when it wakes: at once, it is kicked), and no descriptor left open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while notifier_slots() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} notifier registrations outlive their endpoints",
            notifier_slots()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // (One more than before the run, once per process: the reaper's epoll
    // set, made at the first pid watch; a few more than the fewest seen,
    // for libFuzzer's own. A descriptor's eventfd the notifier is firing as its
    // registration goes is closed a moment later: wait for that. Rings
    // apart: each notifier thread keeps one for the process's life, where
    // the kernel gives it; the wait set's went with the set.)
    static FEWEST: AtomicUsize = AtomicUsize::new(usize::MAX);
    loop {
        let fds = open_fds();
        let rings = fds.iter().filter(|fd| is_ring(fd)).count();
        let others = fds.len() - rings;
        let fewest = FEWEST.fetch_min(others, Ordering::Relaxed).min(others);
        let threads = notifier_threads();
        if others <= fewest + 4 && others <= fds_before + 1 && rings <= threads {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{others} descriptors open after a run (and {rings} rings, {threads} notifier \
             threads), {fds_before} before it, {fewest} after another: they grow: {fds:#?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
});
