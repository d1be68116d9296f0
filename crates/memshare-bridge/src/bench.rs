//! `memshare-bridge bench`: what the bridge costs, against Zenoh alone.
//!
//! Every case runs twice over the same Zenoh configuration (peer mode, TCP
//! on 127.0.0.1, multicast scouting off, one listening endpoint, the other
//! side connecting to it), in separate processes:
//!
//! - **Zenoh alone**: process A puts on a key, process B subscribes to it
//!   (for latency B answers each ping on a second key).
//! - **bridged**: a memshare publisher → bridge A (a memshare-bridge
//!   process listening on that endpoint) → Zenoh → bridge B (connecting to
//!   it) → a memshare subscriber; for latency the pong comes back the same
//!   way through two more services.
//!
//! Throughput is what the receiving process counts over the measured
//! seconds, after a warm-up, with both sides blocking (memshare
//! `Overflow::Block`, Zenoh `CongestionControl::Block`): nothing is dropped,
//! the sender goes as fast as the path lets it. Latency is the round trip
//! of a 64-byte ping, its median and 99th percentile. Each case runs
//! `--runs` times, Zenoh alone then bridged; the table gives the median of
//! each, and the median of the runs' ratios (bridged / Zenoh alone of the
//! same run, under the same load).
//!
//! The bridge puts with Zenoh's express flag, a batch of what its local
//! subscriber had waiting at a time (src/pubsub.rs); Zenoh alone puts one
//! message at a time with Zenoh's default batching, or with the express
//! flag too under `--zenoh-express`.
//!
//! The bench's memshare endpoints park while they wait, as the bridge's do
//! (a spinning wait takes the CPU the Zenoh threads need), and Zenoh's own
//! wait in its runtime: neither side spins.
//!
//! Both sides share this machine's /dev/shm, so the services are named per
//! side (`msb-bench-a-…`, `msb-bench-b-…`) and mapped to one key each.
//!
//! Each side runs on a CPU of its own (`--placement machines`, the default
//! where there are two CPUs): side A is the sender (the source or pinger, and
//! bridge A), side B the receiver (bridge B and the sink or echo), and Zenoh
//! alone's two processes are placed the same way. That is the deployment the
//! bridge is for, two machines, each side's hand-offs staying on its own
//! CPU; `--placement any` leaves the placement to the scheduler, which on a
//! small machine moves the six processes of a bridged round trip between
//! CPUs at every hop.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use memshare::channel::WaitStrategy;
use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

/// Options of `memshare-bridge bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A few seconds in all: figures to look at, not to quote
    #[arg(long)]
    quick: bool,
    /// Measured seconds of each throughput run (default 3; --quick 1)
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Runs of each case; the median is reported (default 3; --quick 1)
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Round trips measured per latency run (default 5000; --quick 500)
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Only the throughput cases, or only the latency ones
    #[arg(long, value_parser = ["throughput", "latency"])]
    only: Option<String>,
    /// Zenoh alone puts with the express flag, as the bridge does (default:
    /// Zenoh's default, batching)
    #[arg(long)]
    zenoh_express: bool,
    /// Where the processes run: `machines` puts each side (its bridge and
    /// its memshare endpoint, or its Zenoh process) on a CPU of its own, as
    /// on two machines; `any` lets the scheduler place them
    #[arg(long, value_parser = ["machines", "any"], default_value = "machines")]
    placement: String,
}

/// One process of the bench.
#[derive(clap::Args)]
pub struct RoleArgs {
    /// What to be
    #[arg(long)]
    role: String,
    /// Its settings, KEY=VALUE
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

/// The message sizes of the throughput cases.
const SIZES: [usize; 2] = [64, 64 << 10];
/// The size of a ping.
const PING: usize = 64;
/// The depth of the bench's memshare services.
const DEPTH: u32 = 128;
/// The floors the issue sets: bridged throughput at least this share of
/// Zenoh's, bridged latency at most this multiple.
const THROUGHPUT_FLOOR: f64 = 0.8;
const LATENCY_CEILING: f64 = 1.3;

struct Plan {
    only: Option<String>,
    zenoh_express: bool,
    seconds: f64,
    runs: usize,
    rounds: usize,
    warmup: f64,
    /// The CPU of side A and of side B, or none (not pinned).
    sides: Option<[usize; 2]>,
}

impl Plan {
    fn side(&self, which: usize) -> Option<usize> {
        self.sides.map(|s| s[which])
    }
}

/// Side A's and side B's processes, as `Plan::side` takes them.
const A: usize = 0;
const B: usize = 1;

pub fn run(args: &BenchArgs) -> i32 {
    let plan = Plan {
        only: args.only.clone(),
        zenoh_express: args.zenoh_express,
        seconds: args.seconds.unwrap_or(if args.quick { 1.0 } else { 3.0 }),
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        rounds: args.rounds.unwrap_or(if args.quick { 500 } else { 5000 }),
        warmup: if args.quick { 0.3 } else { 1.0 },
        sides: if args.placement == "machines" {
            two_cpus()
        } else {
            None
        },
    };
    match bench(&plan) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("memshare-bridge bench: {e}");
            1
        }
    }
}

/// One figure of one case: Zenoh alone and bridged.
struct Row {
    case: String,
    unit: &'static str,
    zenoh: Vec<f64>,
    bridged: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn bench(plan: &Plan) -> Result<(), String> {
    // What else runs here matters on a small machine: say it.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "memshare-bridge bench: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if plan.zenoh_express {
        eprintln!("  Zenoh alone puts with the express flag (--zenoh-express), as the bridge does");
    }
    match plan.sides {
        Some([a, b]) => eprintln!(
            "  placement: side A (the sender, its bridge) on CPU {a}, side B on CPU {b}, \
             as on two machines (--placement any: unpinned)"
        ),
        None => eprintln!("  placement: not pinned"),
    }
    let mut rows = Vec::new();
    let wanted = |what: &str| plan.only.as_deref().is_none_or(|o| o == what);
    let sizes: &[usize] = if wanted("throughput") { &SIZES } else { &[] };
    for &size in sizes {
        let mut row = Row {
            case: format!("throughput {}", human(size)),
            unit: "msg/s",
            zenoh: Vec::new(),
            bridged: Vec::new(),
        };
        for run in 0..plan.runs {
            let z = throughput(plan, size, false)?;
            let b = throughput(plan, size, true)?;
            eprintln!(
                "  throughput {} run {}: zenoh {:.0} msg/s, bridged {:.0} msg/s",
                human(size),
                run + 1,
                z,
                b
            );
            row.zenoh.push(z);
            row.bridged.push(b);
        }
        rows.push(row);
    }
    let mut p50 = Row {
        case: format!("latency {} (median round trip)", human(PING)),
        unit: "us",
        zenoh: Vec::new(),
        bridged: Vec::new(),
    };
    let mut p99 = Row {
        case: format!("latency {} (99th percentile)", human(PING)),
        unit: "us",
        zenoh: Vec::new(),
        bridged: Vec::new(),
    };
    let latency_runs = if wanted("latency") { plan.runs } else { 0 };
    for run in 0..latency_runs {
        let z = latency(plan, false)?;
        let b = latency(plan, true)?;
        eprintln!(
            "  latency run {}: zenoh {:.1}/{:.1} us, bridged {:.1}/{:.1} us (median/p99)",
            run + 1,
            z.0,
            z.1,
            b.0,
            b.1
        );
        p50.zenoh.push(z.0);
        p50.bridged.push(b.0);
        p99.zenoh.push(z.1);
        p99.bridged.push(b.1);
    }
    if latency_runs > 0 {
        rows.push(p50);
        rows.push(p99);
    }
    println!(
        "{:<34} {:>14} {:>14} {:>7}  floor",
        "case", "zenoh alone", "bridged", "ratio"
    );
    for r in &rows {
        let (z, b) = (median(&r.zenoh), median(&r.bridged));
        // Same-run ratios: each bridged run against the Zenoh run just
        // before it, under the same load; their median.
        let ratios: Vec<f64> = r.bridged.iter().zip(&r.zenoh).map(|(b, z)| b / z).collect();
        let ratio = median(&ratios);
        let floor = if r.case.starts_with("throughput") {
            format!(
                ">= {THROUGHPUT_FLOOR}: {}",
                if ratio >= THROUGHPUT_FLOOR {
                    "met"
                } else {
                    "MISSED"
                }
            )
        } else if r.case.contains("median") {
            format!(
                "<= {LATENCY_CEILING}: {}",
                if ratio <= LATENCY_CEILING {
                    "met"
                } else {
                    "MISSED"
                }
            )
        } else {
            "(none)".into()
        };
        println!(
            "{:<34} {:>8.1} {:<5} {:>8.1} {:<5} {:>6.2}x  {floor}",
            r.case, z, r.unit, b, r.unit, ratio
        );
    }
    Ok(())
}

fn human(size: usize) -> String {
    if size >= 1 << 10 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// A free TCP port on 127.0.0.1 (free a moment ago).
/// Two CPUs this process may run on, one per side, or none if it has one.
#[cfg(target_os = "linux")]
fn two_cpus() -> Option<[usize; 2]> {
    let set = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c));
    Some([cpus.next()?, cpus.next()?])
}

/// Pinning is Linux's `sched_setaffinity` here: elsewhere nothing is pinned.
#[cfg(not(target_os = "linux"))]
fn two_cpus() -> Option<[usize; 2]> {
    None
}

/// Makes `cmd`'s process (and every thread it starts) run on `cpu` alone.
#[cfg(target_os = "linux")]
fn pin(cmd: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    // SAFETY: the closure runs in the forked child before exec; it only
    // makes the sched_setaffinity system call on a set built beforehand (no
    // allocation, no lock), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || rustix::thread::sched_setaffinity(None, &set).map_err(Into::into));
    }
}

#[cfg(not(target_os = "linux"))]
fn pin(_cmd: &mut Command, _cpu: usize) {}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(17447)
}

/// Messages per second, one run.
fn throughput(plan: &Plan, size: usize, bridged: bool) -> Result<f64, String> {
    let port = free_port();
    let listen = format!("tcp/127.0.0.1:{port}");
    let timing = [
        format!("seconds={}", plan.seconds),
        format!("warmup={}", plan.warmup),
        format!("size={size}"),
    ];
    let result = if bridged {
        let tag = std::process::id();
        let (a, b) = (format!("msb-bench-a-{tag}"), format!("msb-bench-b-{tag}"));
        let dir = TempDir::new()?;
        let _bridge_a = Proc::bridge(
            &dir,
            "a",
            &listen,
            None,
            &[(&a, "bench/thr", "out", size)],
            plan.side(A),
        )?;
        let _bridge_b = Proc::bridge(
            &dir,
            "b",
            &format!("tcp/127.0.0.1:{}", free_port()),
            Some(&listen),
            &[(&b, "bench/thr", "in", size)],
            plan.side(B),
        )?;
        let mut sink = Proc::role(
            "shm-sink",
            &[&[format!("service={b}")], &timing[..]].concat(),
            plan.side(B),
        )?;
        sink.wait_for("ready")?;
        let _source = Proc::role(
            "shm-source",
            &[format!("service={a}"), format!("size={size}")],
            plan.side(A),
        )?;
        sink.wait_for("result")?
    } else {
        let mut sink = Proc::role(
            "zenoh-sink",
            &[&[format!("listen={listen}")], &timing[..]].concat(),
            plan.side(B),
        )?;
        sink.wait_for("ready")?;
        let _source = Proc::role(
            "zenoh-source",
            &[
                format!("connect={listen}"),
                format!("size={size}"),
                format!("express={}", plan.zenoh_express),
            ],
            plan.side(A),
        )?;
        sink.wait_for("result")?
    };
    field(&result, "rate")
}

/// Median and 99th percentile round trip in µs, one run.
fn latency(plan: &Plan, bridged: bool) -> Result<(f64, f64), String> {
    let port = free_port();
    let listen = format!("tcp/127.0.0.1:{port}");
    let rounds = [format!("rounds={}", plan.rounds), format!("size={PING}")];
    let result = if bridged {
        let tag = std::process::id();
        let name = |side: &str, what: &str| format!("msb-bench-{side}-{what}-{tag}");
        let dir = TempDir::new()?;
        let _bridge_a = Proc::bridge(
            &dir,
            "a",
            &listen,
            None,
            &[
                (&name("a", "ping"), "bench/ping", "out", PING),
                (&name("a", "pong"), "bench/pong", "in", PING),
            ],
            plan.side(A),
        )?;
        let _bridge_b = Proc::bridge(
            &dir,
            "b",
            &format!("tcp/127.0.0.1:{}", free_port()),
            Some(&listen),
            &[
                (&name("b", "ping"), "bench/ping", "in", PING),
                (&name("b", "pong"), "bench/pong", "out", PING),
            ],
            plan.side(B),
        )?;
        let mut echo = Proc::role(
            "shm-echo",
            &[
                format!("in={}", name("b", "ping")),
                format!("out={}", name("b", "pong")),
            ],
            plan.side(B),
        )?;
        echo.wait_for("ready")?;
        let mut ping = Proc::role(
            "shm-ping",
            &[
                &[
                    format!("out={}", name("a", "ping")),
                    format!("in={}", name("a", "pong")),
                ],
                &rounds[..],
            ]
            .concat(),
            plan.side(A),
        )?;
        ping.wait_for("result")?
    } else {
        let express = format!("express={}", plan.zenoh_express);
        let mut echo = Proc::role(
            "zenoh-echo",
            &[format!("listen={listen}"), express.clone()],
            plan.side(B),
        )?;
        echo.wait_for("ready")?;
        let mut ping = Proc::role(
            "zenoh-ping",
            &[&[format!("connect={listen}"), express], &rounds[..]].concat(),
            plan.side(A),
        )?;
        ping.wait_for("result")?
    };
    Ok((field(&result, "p50_us")?, field(&result, "p99_us")?))
}

/// The value of `key=` in a result line.
fn field(line: &str, key: &str) -> Result<f64, String> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in {line:?}"))
}

/// A directory for the bridges' configuration files.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "memshare-bridge-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process of the bench, its output lines collected; stopped when
/// dropped.
struct Proc {
    what: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    news: mpsc::Receiver<()>,
}

impl Proc {
    /// Starts `cmd`, on CPU `cpu` alone if given.
    fn spawn(what: String, mut cmd: Command, cpu: Option<usize>) -> Result<Proc, String> {
        if let Some(cpu) = cpu {
            pin(&mut cmd, cpu);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("starting {what}: {e}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, news) = mpsc::channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for stream in [out, err] {
            let (lines, tx) = (Arc::clone(&lines), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().expect("not poisoned").push(line);
                    let _ = tx.send(());
                }
            });
        }
        Ok(Proc {
            what,
            child,
            lines,
            news,
        })
    }

    /// This binary in a bench role.
    fn role(role: &str, settings: &[String], cpu: Option<usize>) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(["bench-role", "--role", role]);
        for s in settings {
            cmd.arg("--set").arg(s);
        }
        Proc::spawn(role.to_owned(), cmd, cpu)
    }

    /// A bridge `side` listening on `listen`, connecting to `connect`,
    /// carrying `services` (name, key, direction, max message length).
    fn bridge(
        dir: &TempDir,
        side: &str,
        listen: &str,
        connect: Option<&str>,
        services: &[(&str, &str, &str, usize)],
        cpu: Option<usize>,
    ) -> Result<Proc, String> {
        let mut toml = format!("[zenoh]\nlisten = [\"{listen}\"]\n");
        if let Some(c) = connect {
            toml += &format!("connect = [\"{c}\"]\n");
        }
        for (service, key, direction, max) in services {
            toml += &format!(
                "\n[[pubsub]]\nservice = \"{service}\"\nkey = \"{key}\"\ndirection = \"{direction}\"\n"
            );
            if *direction == "in" {
                toml += &format!(
                    "[pubsub.create]\nmax_message_len = {max}\ndepth = {DEPTH}\noverflow = \"block\"\n"
                );
            }
        }
        let path = dir.0.join(format!("{side}.toml"));
        std::fs::write(&path, toml).map_err(|e| format!("{}: {e}", path.display()))?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("--config").arg(&path);
        let mut p = Proc::spawn(format!("bridge {side}"), cmd, cpu)?;
        p.wait_for("memshare-bridge: ready")?;
        Ok(p)
    }

    /// The first line containing `needle`, waiting for it (60 s at most).
    fn wait_for(&mut self, needle: &str) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let said = self.lines.lock().expect("not poisoned").clone();
            if let Some(line) = said.iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{} did not say {needle:?}; it said:\n{}",
                    self.what,
                    said.join("\n")
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be on their way.
                std::thread::sleep(Duration::from_millis(50));
                let said = self.lines.lock().expect("not poisoned").clone();
                if let Some(line) = said.iter().find(|l| l.contains(needle)) {
                    return Ok(line.clone());
                }
                return Err(format!(
                    "{} ended ({status}) without saying {needle:?}; it said:\n{}",
                    self.what,
                    said.join("\n")
                ));
            }
            let _ = self.news.recv_timeout(left.min(Duration::from_millis(100)));
        }
    }
}

impl Drop for Proc {
    /// SIGTERM first, so that the process detaches from its services and
    /// leaves no name behind; SIGKILL after 5 s.
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("memshare-bridge bench: {} did not stop: killed", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------
// The roles.

/// Set by SIGTERM: a role stops, detaching from its services.
static STOP: std::sync::LazyLock<Arc<AtomicBool>> = std::sync::LazyLock::new(Arc::default);

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Runs one bench process.
pub fn role(args: &RoleArgs) -> i32 {
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&STOP)) {
        eprintln!("memshare-bridge bench-role: SIGTERM: {e}");
        return 1;
    }
    let get = |key: &str| -> Option<String> {
        args.settings
            .iter()
            .find_map(|s| s.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    let result = match args.role.as_str() {
        "zenoh-sink" => zenoh_sink(&get),
        "zenoh-source" => zenoh_source(&get),
        "zenoh-echo" => zenoh_echo(&get),
        "zenoh-ping" => zenoh_ping(&get),
        "shm-sink" => shm_sink(&get),
        "shm-source" => shm_source(&get),
        "shm-echo" => shm_echo(&get),
        "shm-ping" => shm_ping(&get),
        other => Err(format!("no role {other:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("memshare-bridge bench-role {}: {e}", args.role);
            1
        }
    }
}

type Get<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Whether a Zenoh role puts with the express flag (`express=true`).
fn express(get: &Get<'_>) -> bool {
    get("express").is_some_and(|v| v == "true")
}

fn setting<T: std::str::FromStr>(get: &Get<'_>, key: &str) -> Result<T, String> {
    get(key)
        .ok_or_else(|| format!("no {key}"))?
        .parse()
        .map_err(|_| format!("{key} is not a number"))
}

/// The same Zenoh configuration as a bridge's: peer, TCP on 127.0.0.1,
/// multicast scouting off.
fn zenoh_session(get: &Get<'_>) -> Result<zenoh::Session, String> {
    let mut config = memshare_bridge::Config::default();
    config.zenoh.listen = Some(get("listen").into_iter().collect());
    config.zenoh.connect = get("connect").into_iter().collect();
    let config = config.zenoh_config().map_err(|e| e.to_string())?;
    zenoh::open(config).wait().map_err(|e| e.to_string())
}

/// Counts what arrives: after the first message, `warmup` seconds, then
/// `seconds` measured. Prints `result rate=<msg/s>`.
fn measure(count: &AtomicU64, get: &Get<'_>) -> Result<(), String> {
    let seconds: f64 = setting(get, "seconds")?;
    let warmup: f64 = setting(get, "warmup")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            return Err("nothing came".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_secs_f64(warmup));
    let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (c1, t1) = (count.load(Ordering::Relaxed), Instant::now());
    println!(
        "result rate={:.1} messages={}",
        (c1 - c0) as f64 / (t1 - t0).as_secs_f64(),
        c1 - c0
    );
    // Keep receiving until stopped: a sender blocked on a receiver that
    // left would not see its own stop.
    while !stopped() {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn zenoh_sink(get: &Get<'_>) -> Result<(), String> {
    let session = zenoh_session(get)?;
    let counter = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&counter);
    let _sub = session
        .declare_subscriber("bench/thr")
        .callback(move |_sample| {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .wait()
        .map_err(|e| e.to_string())?;
    println!("ready");
    measure(&counter, get)
}

fn zenoh_source(get: &Get<'_>) -> Result<(), String> {
    let size: usize = setting(get, "size")?;
    let session = zenoh_session(get)?;
    let publisher = session
        .declare_publisher("bench/thr")
        .congestion_control(CongestionControl::Block)
        .express(express(get))
        .wait()
        .map_err(|e| e.to_string())?;
    let payload = vec![0x5au8; size];
    // As the bridge does: a fresh payload per message (it copies each one
    // out of shared memory), put until stopped.
    while !stopped() {
        publisher
            .put(zenoh::bytes::ZBytes::from(&payload[..]))
            .wait()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn zenoh_echo(get: &Get<'_>) -> Result<(), String> {
    let session = zenoh_session(get)?;
    let publisher = session
        .declare_publisher("bench/pong")
        .congestion_control(CongestionControl::Block)
        .express(express(get))
        .wait()
        .map_err(|e| e.to_string())?;
    let _sub = session
        .declare_subscriber("bench/ping")
        .callback(move |sample| {
            let _ = publisher.put(sample.payload().clone()).wait();
        })
        .wait()
        .map_err(|e| e.to_string())?;
    println!("ready");
    while !stopped() {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Median and 99th percentile of `rtts` (ns), printed as a result line.
fn report(mut rtts: Vec<u64>) {
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)] as f64 / 1e3;
    println!(
        "result p50_us={:.2} p99_us={:.2} rounds={}",
        at(0.5),
        at(0.99),
        rtts.len()
    );
}

fn zenoh_ping(get: &Get<'_>) -> Result<(), String> {
    let rounds: usize = setting(get, "rounds")?;
    let size: usize = setting(get, "size")?;
    let session = zenoh_session(get)?;
    let sub = session
        .declare_subscriber("bench/pong")
        .wait()
        .map_err(|e| e.to_string())?;
    let publisher = session
        .declare_publisher("bench/ping")
        .congestion_control(CongestionControl::Block)
        .express(express(get))
        .wait()
        .map_err(|e| e.to_string())?;
    let mut payload = vec![0u8; size];
    let warmup = rounds / 5 + 10;
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        publisher
            .put(zenoh::bytes::ZBytes::from(&payload[..]))
            .wait()
            .map_err(|e| e.to_string())?;
        // The echo may not be matched yet at first: a lost early ping is
        // sent again.
        loop {
            match sub.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(s)) if s.payload().to_bytes()[..8] == payload[..8] => break,
                Ok(Some(_)) => {}
                Ok(None) if i < warmup => {
                    publisher
                        .put(zenoh::bytes::ZBytes::from(&payload[..]))
                        .wait()
                        .map_err(|e| e.to_string())?;
                }
                Ok(None) => return Err(format!("ping {i} got no answer")),
                Err(e) => return Err(e.to_string()),
            }
        }
        if i >= warmup {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    report(rtts);
    Ok(())
}

fn bench_config(size: usize) -> ServiceConfig {
    ServiceConfig::new()
        .max_message_len(size as u64)
        .depth(DEPTH)
        .overflow(Overflow::Block)
}

/// Waits (60 s at most) until `publisher`'s service has `n` live
/// subscribers.
fn wait_subscribers(publisher: &Publisher, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = memshare::pubsub::inspect(publisher.segment()).map_err(|e| e.to_string())?;
        let live = state
            .subscribers
            .iter()
            .filter(|s| s.state == memshare::channel::EndpointState::Attached)
            .count();
        if live >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("no subscriber attached".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn shm_sink(get: &Get<'_>) -> Result<(), String> {
    let service = get("service").ok_or("no service")?;
    let mut subscriber =
        Subscriber::open_timeout(&service, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    subscriber.set_wait_strategy(WaitStrategy::Park);
    let counter = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (c, d) = (Arc::clone(&counter), Arc::clone(&done));
    let receiver = std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            match subscriber.recv_timeout(Duration::from_millis(100)) {
                Ok(_) => {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                Err(memshare::Error::TimedOut { .. } | memshare::Error::Disconnected { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });
    println!("ready");
    let measured = measure(&counter, get);
    done.store(true, Ordering::Relaxed);
    receiver.join().map_err(|_| "the receiver panicked")??;
    measured
}

fn shm_source(get: &Get<'_>) -> Result<(), String> {
    let service = get("service").ok_or("no service")?;
    let size: usize = setting(get, "size")?;
    let mut publisher =
        Publisher::create(&service, bench_config(size)).map_err(|e| e.to_string())?;
    publisher.set_wait_strategy(WaitStrategy::Park);
    wait_subscribers(&publisher, 1)?;
    let payload = vec![0x5au8; size];
    while !stopped() {
        match publisher.publish_copy_timeout(&payload, Duration::from_millis(100)) {
            Ok(()) | Err(memshare::Error::TimedOut { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn shm_echo(get: &Get<'_>) -> Result<(), String> {
    let (input, output) = (get("in").ok_or("no in")?, get("out").ok_or("no out")?);
    let mut subscriber =
        Subscriber::open_timeout(&input, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let mut publisher =
        Publisher::create(&output, bench_config(PING)).map_err(|e| e.to_string())?;
    subscriber.set_wait_strategy(WaitStrategy::Park);
    publisher.set_wait_strategy(WaitStrategy::Park);
    wait_subscribers(&publisher, 1)?;
    println!("ready");
    while !stopped() {
        match subscriber.recv_timeout(Duration::from_millis(100)) {
            Ok(ping) => publisher.publish_copy(&ping).map_err(|e| e.to_string())?,
            Err(memshare::Error::TimedOut { .. }) => {}
            Err(memshare::Error::Disconnected { .. }) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

fn shm_ping(get: &Get<'_>) -> Result<(), String> {
    let (output, input) = (get("out").ok_or("no out")?, get("in").ok_or("no in")?);
    let rounds: usize = setting(get, "rounds")?;
    let size: usize = setting(get, "size")?;
    let mut subscriber =
        Subscriber::open_timeout(&input, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let mut publisher =
        Publisher::create(&output, bench_config(size)).map_err(|e| e.to_string())?;
    subscriber.set_wait_strategy(WaitStrategy::Park);
    publisher.set_wait_strategy(WaitStrategy::Park);
    wait_subscribers(&publisher, 1)?;
    let mut payload = vec![0u8; size];
    let warmup = rounds / 5 + 10;
    let mut rtts = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let t = Instant::now();
        publisher
            .publish_copy(&payload)
            .map_err(|e| e.to_string())?;
        loop {
            match subscriber.recv_timeout(Duration::from_secs(10)) {
                Ok(pong) if pong[..8] == payload[..8] => break,
                Ok(_) => {}
                Err(memshare::Error::Disconnected { .. }) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => return Err(format!("ping {i}: {e}")),
            }
        }
        if i >= warmup {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    report(rtts);
    Ok(())
}
