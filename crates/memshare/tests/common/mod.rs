//! Helpers for tests that use real processes: the test binary re-runs
//! itself as the child, running only the test that spawned it, with
//! `MEMSHARE_TEST_CHILD` telling it which role to play.

#![allow(dead_code)] // each test binary uses its own subset

#[cfg(target_os = "linux")]
pub mod census;
pub mod chan;
pub mod privileged;
#[cfg(target_os = "linux")]
pub mod procs;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROLE_VAR: &str = "MEMSHARE_TEST_CHILD";

/// The role this process plays if it is a child spawned by `child`.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// A command that re-runs this test binary as a child playing `role` in the
/// test `test` (the test's name, as libtest knows it).
pub fn child(test: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// A child process that is killed and reaped when dropped, so that no test
/// leaves a process behind, whatever happens.
pub struct Reaped(pub Option<Child>);

impl Reaped {
    pub fn spawn(mut cmd: Command) -> Reaped {
        Reaped(Some(cmd.spawn().expect("spawn child")))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Waits for the child to exit (at most `timeout`) and asserts success.
    pub fn wait_success(self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(status.success(), "child failed: {status}");
    }

    /// Waits for the child to exit (at most `timeout`; killed and the test
    /// failed after that) and returns how it ended.
    pub fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the child with SIGKILL and reaps it. Returns when it was
    /// reaped: the moment the test knows it dead, its memory, descriptors
    /// and locks freed (the kernel frees the memory first: under ASan, whose
    /// shadow maps terabytes, that alone can take ten milliseconds).
    pub fn kill(mut self) -> Instant {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        Instant::now()
    }
}

/// Runs its closure when dropped, however the scope it lives in ends (a
/// panic too): e.g. tells a helper thread to stop, so that a failed
/// assertion fails the test instead of leaving a join waiting for ever.
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Ends this process at once, as a kill from outside would: SIGKILL on
/// Unix, `TerminateProcess` on Windows (no unwinding, no destructors, no
/// exit handlers).
pub fn die_now() -> ! {
    #[cfg(unix)]
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        // SAFETY: the current-process pseudo-handle; the call does not
        // return when it succeeds.
        unsafe { TerminateProcess(GetCurrentProcess(), 9) };
    }
    unreachable!("the kill returned");
}

/// Serializes the tests of one binary that hold it (a census of
/// descriptors, tests that time detections with both CPUs busy). A test
/// that failed (poisoning the lock) does not stop the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name no other test or run uses: `tag` plus this process's id and a counter.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "mst-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    assert!(
        name.len() <= memshare::MAX_NAME_LEN,
        "test name too long: {name}"
    );
    name
}

/// Whether `/dev/shm` holds an object called `name`.
#[cfg(unix)]
pub fn in_dev_shm(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Whether a section called `name` exists (Windows has no directory to
/// look in: opening it, briefly, is the test).
#[cfg(windows)]
pub fn in_dev_shm(name: &str) -> bool {
    memshare::Segment::open_readonly(name).is_ok()
}

/// Makes the client in region `slot` of `server`'s service break the
/// protocol, as the server's next look finds it: its ring's head far ahead
/// of what it sent, and its pending bit rung (where docs/rpc-layout.md puts
/// them: the header page, then regions of `region_len` bytes, which the
/// header holds at byte 72; the pending mask at byte 384).
pub fn break_the_protocol_of(server: &memshare::rpc::Server, slot: u32) {
    let slot = u64::from(slot);
    let region_len = {
        let view = server.segment().map_readonly(..4096).unwrap();
        view.read_pod::<u64>(72).unwrap()
    };
    let view = server.segment().map(..).unwrap();
    view.write_pod::<u64>((4096 + slot * region_len + 128) as usize, &1_000_000)
        .unwrap();
    view.write_pod::<u64>((384 + slot / 64 * 8) as usize, &(1 << (slot % 64)))
        .unwrap();
}

/// Writes `head` into the block of publisher slot `slot` of the
/// publish-subscribe service `service`, as a hostile process would
/// (`docs/pubsub-layout.md`: publisher region `slot` starts at
/// `publishers_at + slot * publisher_region`; its block's head is at byte
/// 128 of it).
pub fn write_publisher_head(service: &memshare::Segment, slot: u64, head: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let view = service.map(..).unwrap();
    let subscribers = u64::from(view.atomic_u32(20).unwrap().load(Relaxed));
    let subscriber_block = u64::from(view.atomic_u32(52).unwrap().load(Relaxed));
    let publishers_at = (4096 + subscribers * subscriber_block).next_multiple_of(4096);
    let region = view.atomic_u64(64).unwrap().load(Relaxed);
    let at = (publishers_at + slot * region + 128) as usize;
    view.atomic_u64(at).unwrap().store(head, Relaxed);
}

/// Waits for the child `pid` that this process forked itself (`fork`, not
/// a `Command`) for at most `timeout`: its wait status. One that has not
/// finished by then is killed and reaped, and the test panics.
#[cfg(unix)]
pub fn wait_forked(pid: libc::pid_t, timeout: Duration) -> libc::c_int {
    let mut status = 0;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: waits for our own child, whose pid fork gave.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid failed");
        if r == pid {
            return status;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The message of an `InvalidHandle` error; panics on anything else.
pub fn invalid_handle(result: memshare::Result<memshare::Segment>) -> String {
    match result {
        Err(e @ memshare::Error::InvalidHandle { .. }) => e.to_string(),
        other => panic!("expected InvalidHandle, got {other:?}"),
    }
}

/// Whether `fd` has something to read (or was closed) within `timeout`.
#[cfg(unix)]
pub fn readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid `pollfd` that outlives the call; the descriptor is
    // open (it is borrowed) and poll only reports on it.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// Reads what `out` says until it contains `needle` and then a newline,
/// for at most `timeout`; returns the text after `needle` on that line.
/// Panics at the end of the output or of the time.
#[cfg(unix)]
pub fn read_after(
    out: &mut (impl std::io::Read + std::os::fd::AsFd),
    needle: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut said = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&said);
        if let Some(at) = text.find(needle) {
            let rest = &text[at + needle.len()..];
            if let Some(end) = rest.find('\n') {
                return rest[..end].to_owned();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{needle:?} not said within {timeout:?}");
        if readable(out.as_fd(), left) {
            let mut buf = [0u8; 256];
            let n = out.read(&mut buf).expect("read");
            assert!(n > 0, "the output ended before {needle:?}");
            said.extend_from_slice(&buf[..n]);
        }
    }
}

/// The huge page pool as `/proc/meminfo` reports it.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugePool {
    pub total: u64,
    pub free: u64,
    /// The default huge page size, in bytes (what `MFD_HUGETLB` uses).
    pub page: u64,
    /// How many more pages the kernel would make beyond the pool ("surplus"
    /// pages, `/proc/sys/vm/nr_overcommit_hugepages`): usually none.
    pub overcommit: u64,
}

#[cfg(target_os = "linux")]
impl HugePool {
    /// How many pages a new segment can get at most.
    pub fn available(&self) -> u64 {
        self.free + self.overcommit
    }
}

/// The huge page pool now; `None` if the kernel has no huge pages.
#[cfg(target_os = "linux")]
pub fn huge_pool() -> Option<HugePool> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let overcommit_max: u64 = std::fs::read_to_string("/proc/sys/vm/nr_overcommit_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(HugePool {
        total: field("HugePages_Total:")?,
        free: field("HugePages_Free:")?,
        page: field("Hugepagesize:")? * 1024,
        overcommit: overcommit_max.saturating_sub(field("HugePages_Surp:")?),
    })
}

/// Whether `memfd_create(MFD_HUGETLB)` exists here (Linux 4.14, and a
/// kernel with huge pages): where it does not, `huge_pages(true)` is
/// `Unsupported`, and only there.
#[cfg(target_os = "linux")]
pub fn hugetlb_memfd_supported() -> bool {
    kernel_version() >= (4, 14) && huge_pool().is_some()
}

/// The page size the kernel backs the mapping at `addr` with
/// (`KernelPageSize` in `/proc/self/smaps`), in bytes.
#[cfg(target_os = "linux")]
pub fn kernel_page_size(addr: *const u8) -> u64 {
    let addr = addr as usize;
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                inside = (start..end).contains(&addr);
                continue;
            }
        }
        if let Some(kb) = line.strip_prefix("KernelPageSize:") {
            if inside {
                let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap();
                return kb * 1024;
            }
        }
    }
    panic!("no mapping of {addr:#x} in /proc/self/smaps")
}

/// Serializes, across every test process on this machine, the tests that
/// read or change the huge page pool (a machine-wide setting): an exclusive
/// `flock` on `/proc/sys/vm/nr_hugepages` itself, held until the returned
/// file is dropped. (A test that sets up a pool of its own would otherwise
/// surprise one that reads the pool, in a suite running at the same time.)
#[cfg(target_os = "linux")]
pub fn huge_page_pool_lock() -> std::fs::File {
    use rustix::fs::{flock, FlockOperation};
    const POOL: &str = "/proc/sys/vm/nr_hugepages";
    let file = std::fs::File::open(POOL).expect(POOL);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return file,
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("flock {POOL}: {e}"),
        }
    }
}

/// The running kernel's version: (major, minor).
#[cfg(target_os = "linux")]
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().expect("a kernel version number"));
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// What `Segment::take_from_process` gives a process taking a descriptor
/// of one of its own children (same user, dumpable), on this machine.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeFromChild {
    Allowed,
    PermissionDenied,
    Unsupported,
}

/// Works out [`TakeFromChild`] from the machine: `pidfd_getfd` needs Linux
/// 5.6, and the right to ptrace the child (`PTRACE_MODE_ATTACH_REALCREDS`):
/// with Yama's `ptrace_scope` 0 or 1 (or no Yama) a parent has it over its
/// child; with 2 only with `CAP_SYS_PTRACE`; with 3 nobody has it.
#[cfg(target_os = "linux")]
pub fn take_from_child_expected() -> TakeFromChild {
    if kernel_version() < (5, 6) {
        return TakeFromChild::Unsupported;
    }
    let scope: Option<u32> = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().parse().expect("ptrace_scope is a number"));
    let allowed = match scope {
        None | Some(0) | Some(1) => true,
        Some(2) => has_capability(CAP_SYS_PTRACE),
        Some(_) => false,
    };
    if allowed {
        TakeFromChild::Allowed
    } else {
        TakeFromChild::PermissionDenied
    }
}

/// The capability number of `CAP_SYS_PTRACE` (linux/capability.h).
#[cfg(target_os = "linux")]
pub const CAP_SYS_PTRACE: u32 = 19;

/// Whether this process has capability `cap` in its effective set.
#[cfg(target_os = "linux")]
pub fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/self/status");
    u64::from_str_radix(hex.trim(), 16).expect("CapEff is hexadecimal") & (1 << cap) != 0
}

/// How late a killed peer was noticed, over the rounds of a test.
///
/// The promise is `LIVENESS_INTERVAL`: a waiting endpoint asks whether its
/// peer lives at least that often, so with the death at a random instant
/// it notices within one interval (half of one, typically), plus the
/// scheduler's time to run the waiter again. Each round is timed from the
/// peer's death, the instant [`Reaped::kill`] returns, not from the
/// signal: a dying process holds its locks until the kernel has freed its
/// memory, which is no part of the protocol (under ASan, 5 to 10 ms of a
/// 20 ms interval). On this busy 2-vCPU machine one round can be delayed
/// by tens of milliseconds for reasons that have nothing to do with the
/// protocol, so one late round proves nothing; the rounds together do.
/// Checked: the median is within one interval (an endpoint that asks every
/// other interval has a median of one interval plus the noise), and no
/// round took more than five (an endpoint that skips its check waits for a
/// deadline, or forever).
pub struct Detections {
    what: &'static str,
    interval: Duration,
    rounds: Vec<(String, Duration)>,
}

impl Detections {
    pub fn new(what: &'static str, interval: Duration) -> Detections {
        Detections {
            what,
            interval,
            rounds: Vec::new(),
        }
    }

    /// Records one round: `late` from the death to the moment it was noticed.
    pub fn record(&mut self, round: impl std::fmt::Display, late: Duration) {
        assert!(
            late < 5 * self.interval,
            "{}: round {round}: noticed {late:?} after the death (promised: {:?})",
            self.what,
            self.interval
        );
        self.rounds.push((round.to_string(), late));
    }

    /// Checks the median over the rounds recorded (each round was held to
    /// five intervals when it was recorded).
    pub fn check(mut self) {
        assert!(!self.rounds.is_empty(), "{}: no rounds", self.what);
        self.rounds.sort_by_key(|r| r.1);
        let median = self.rounds[self.rounds.len() / 2].1;
        let worst = self.rounds.last().expect("not empty");
        eprintln!(
            "{}: noticed after the death: median {median:?}, worst {:?} (round {})",
            self.what, worst.1, worst.0
        );
        assert!(
            median <= self.interval,
            "{}: median {median:?} after the death, more than the promised {:?}: {:?}",
            self.what,
            self.interval,
            self.rounds
        );
    }
}

/// Makes a channel or service appear under `name` the way a creator does,
/// only slowly: a zero-filled segment of the same length as `formatted`
/// now, then (`after` later, from another thread) `formatted`'s bytes
/// copied in, the magic (the first 8 bytes) last. Returns that thread.
pub fn format_slowly(
    name: &str,
    formatted: &memshare::Segment,
    after: Duration,
) -> std::thread::JoinHandle<memshare::Segment> {
    let len = usize::try_from(formatted.len()).unwrap();
    let mut bytes = vec![0u8; len];
    formatted
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut bytes)
        .unwrap();
    let target = memshare::Segment::create_named(name, formatted.len()).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let view = target.map(..).unwrap();
        view.write_at(8, &bytes[8..]).unwrap();
        view.write_at(0, &bytes[..8]).unwrap();
        drop(view);
        target
    })
}

/// The value of the environment variable `var` (set by the parent for a
/// child).
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"))
}

/// What a child printed so far, kept whole: a line may arrive in the same
/// read as the one before it. A thread reads the pipe (portable: no
/// `poll`), so a wait for a line has a deadline on every system.
pub struct Output {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    said: String,
    /// Where the next search starts (after the last line found).
    from: usize,
}

impl Output {
    /// Reads what `out` says.
    pub fn new(mut out: std::process::ChildStdout) -> Output {
        let (send, chunks) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if send.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        });
        Output {
            chunks,
            said: String::new(),
            from: 0,
        }
    }

    /// The rest of the first line after `from` that contains `needle`
    /// (after it), waiting for it at most `TIMEOUT`.
    pub fn after(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(at) = self.said[self.from..].find(needle) {
                let start = self.from + at + needle.len();
                if let Some(end) = self.said[start..].find('\n') {
                    self.from = start + end + 1;
                    return self.said[start..start + end]
                        .trim_end_matches('\r')
                        .to_owned();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{needle:?} not said within {TIMEOUT:?}");
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.said.push_str(&String::from_utf8_lossy(&chunk)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the output ended before {needle:?}: {:?}", self.said)
                }
            }
        }
    }
}

/// A child whose standard output the parent reads.
pub fn spawn(test: &str, role: &str, vars: &[(&str, String)]) -> (Reaped, Output) {
    use std::process::Stdio;
    let mut cmd = child(test, role);
    cmd.stdout(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut kid = Reaped::spawn(cmd);
    let out = kid.0.as_mut().unwrap().stdout.take().unwrap();
    (kid, Output::new(out))
}

/// The CPU time the calling thread has used so far.
#[cfg(target_os = "linux")]
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec for the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
