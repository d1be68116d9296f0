//! `memshare bench --async-idle N`: what N futures parked in `recv_async`
//! cost while nothing comes. N channel receivers (their senders attached
//! in this process, quiet), each with a future polled once and left
//! pending, so that the memshare notifier watches all N; then this
//! process's CPU time (user + system, all threads: the clock
//! `CLOCK_PROCESS_CPUTIME_ID`, what `getrusage(RUSAGE_SELF)` sums) over
//! the measured seconds, against the same seconds with no future pending
//! (the same endpoints, idle). The notifier sleeps in `futex_waitv` and
//! wakes only to ask whether the senders live, every liveness interval.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use memshare::channel::{Receiver, Sender};

use crate::fail::Failure;

fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time used by this process over `seconds` of sleep.
fn cpu_over(seconds: Duration) -> (Duration, Duration) {
    let (cpu, wall) = (cpu_time(), Instant::now());
    std::thread::sleep(seconds);
    (cpu_time() - cpu, wall.elapsed())
}

pub fn run(n: usize, seconds: Duration) -> Result<(), Failure> {
    let mut ends: Vec<(Receiver, Sender)> = Vec::with_capacity(n);
    for _ in 0..n {
        let rx = Receiver::create(64)?;
        let tx = Sender::attach(rx.segment())?;
        ends.push((rx, tx));
    }
    let (idle_cpu, idle_wall) = cpu_over(seconds);
    let mut cx = Context::from_waker(Waker::noop());
    let mut futures = Vec::with_capacity(n);
    for (rx, _) in ends.iter_mut() {
        let mut f = Box::pin(rx.recv_async());
        if Pin::new(&mut f).poll(&mut cx).is_ready() {
            return Err(Failure::other("bench: a quiet receiver had a message"));
        }
        futures.push(f);
    }
    // Let the notifier threads start and settle.
    std::thread::sleep(Duration::from_millis(100));
    let (parked_cpu, parked_wall) = cpu_over(seconds);
    let threads = memshare::aio::notifier_threads();
    drop(futures);
    let pct = |cpu: Duration, wall: Duration| 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    let text = format!(
        "{n} receivers awaited by parked recv_async futures ({threads} notifier threads)\n  \
         idle, no future pending: {:>9.3} ms CPU in {:.1} s ({:.3} % of one CPU)\n  \
         {n} futures pending:     {:>9.3} ms CPU in {:.1} s ({:.3} % of one CPU)\n",
        idle_cpu.as_secs_f64() * 1e3,
        idle_wall.as_secs_f64(),
        pct(idle_cpu, idle_wall),
        parked_cpu.as_secs_f64() * 1e3,
        parked_wall.as_secs_f64(),
        pct(parked_cpu, parked_wall),
    );
    super::super::cmd::print_stdout(&text)?;
    Ok(())
}
