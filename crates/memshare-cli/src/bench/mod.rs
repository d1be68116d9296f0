//! `memshare bench`: memshare's channels and request/response services
//! (and, with `--pubsub`, its publish-subscribe services) against the
//! operating system's own IPC and the raw limits of the machine, two real
//! processes per case.
//!
//! Every case runs in a fresh peer process (this binary, re-run as
//! `memshare bench-peer`), the two pinned to different CPUs where the
//! machine allows. A publish-subscribe case has one peer per subscriber
//! (the benchmark publishes), a request/response throughput case one per
//! client (the benchmark serves), pinned to the other CPUs in turn. Before each case both sides idle (the host may move
//! virtual CPUs around; idling lets it settle), then a short raw spin
//! ping-pong — the probe — records where the CPUs are; once every peer has
//! measured, a second probe records where they were at the end. Every
//! memshare figure is reported as a ratio to its baseline measured in the
//! same run, and a ratio whose two cases' probes differ by more than
//! [`report::MOVED`] times is marked: the vCPUs moved between or during
//! them, and the two figures were not measured alike.

mod asynch;
mod case;
mod idle;
mod link;
mod output;
mod raw_rpc;
mod report;
mod rpc;
mod run;
mod waitset;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::fail::Failure;
use crate::os;
use case::{Case, Kind, Transport};
use output::Output;
use report::Report;
use run::Timing;

/// Measure memshare against pipes, sockets, TCP, and the raw limits.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Latency: ping-pong between two processes, one-way = round trip / 2 \
(channel-wakeup, waitset-wakeup: from a send to a parked receiver, alone or in a wait set of \
128, holding the message; raw-wakeup, raw-wakeup-waitv: their raw forms, a futex word woken, \
slept on alone or with 127 more in one futex_waitv), \
median/p99/p99.9 from a histogram. Throughput: one way, the receiver reads every byte. \
Publish-subscribe (--pubsub): 1 -> 1 and 1 -> 3 subscribers, one process each, overflow \
\"block\"; messages/s is the slowest subscriber's, bytes/s what all of them received. \
Request/response: a 64-byte call's latency, client and server spinning (rpc-spin), against \
two channels carrying the same bytes (rpc-channels-spin); 4 client processes pipelining calls \
to one server thread (rpc-pipeline), against a Unix-socket server with epoll (rpc-unix-socket) \
and against its raw form, bare rings of stamped slots with the clients parking (rpc-raw-pipeline) \
or spinning first (rpc-raw-pipeline-spin). \
Each case runs in new peer processes; the probe column is a raw spin ping-pong's one-way \
latency before/after the case (where the two CPUs were); the table compares every memshare \
figure with its baseline from the same run, and marks a ratio whose cases' probes differ by \
more than 1.5x (the CPUs moved)."
)]
pub struct Args {
    /// A few seconds in all: short idles and measurements.
    #[arg(long)]
    quick: bool,
    /// Only latency or only throughput.
    #[arg(long, value_enum)]
    only: Option<Kind>,
    /// Only these transports (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    transports: Vec<Transport>,
    /// Also the publish-subscribe cases (every `pubsub-*` transport, which
    /// only run when named in --transports otherwise).
    #[arg(long)]
    pubsub: bool,
    /// Throughput message sizes (comma-separated, suffixes allowed:
    /// 64,4K,64K,1M).
    #[arg(long, value_delimiter = ',', value_parser = crate::size::parse_size)]
    sizes: Vec<u64>,
    /// Seconds to measure each case, more than 0 (default 1, or 0.1 with
    /// --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds to idle before each case (default 1, or 0.05 with --quick).
    #[arg(long)]
    idle: Option<f64>,
    /// Also write the results as JSON to this file; `-`: to standard output,
    /// instead of the table. Checked before anything runs.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Instead of the cases: the CPU time of this process while N channel
    /// receivers are awaited by parked `recv_async` futures, over
    /// --duration seconds (default 10), against as long with none pending.
    #[arg(long, value_name = "N")]
    async_idle: Option<usize>,
    /// Also draw the results as an SVG plot in this file; `-`: to standard
    /// output, instead of the table. Checked before anything runs.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// The hidden peer side of one case.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// kind:transport:size
    case: Case,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    port: Option<u16>,
    /// The CPU to pin the peer to.
    #[arg(long)]
    cpu: Option<usize>,
    /// The service a request/response latency peer serves (it creates it).
    #[arg(long)]
    service: Option<String>,
    /// Which peer of a case with several this is (a publish-subscribe
    /// case's subscribers, a request/response case's clients; 0, the
    /// default, answers the probe).
    #[arg(long, default_value_t = 0)]
    index: usize,
}

fn seconds(v: Option<f64>, default: f64, what: &str) -> Result<Duration, Failure> {
    let v = v.unwrap_or(default);
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| *d <= Duration::from_secs(3600))
        .ok_or_else(|| Failure::usage(format!("invalid --{what}: {v} is not 0 to 3600 seconds")))
}

/// The cases the arguments ask for, in the order they run.
fn plan(args: &Args) -> Result<Vec<Case>, Failure> {
    let sizes: Vec<usize> = if args.sizes.is_empty() {
        vec![64, 4096, 65536, 1 << 20]
    } else {
        args.sizes
            .iter()
            .map(|&s| {
                usize::try_from(s)
                    .ok()
                    .filter(|&s| (1..=64 << 20).contains(&s))
                    .ok_or_else(|| {
                        Failure::usage(format!("invalid --sizes: {s} is not 1 byte to 64 MiB"))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    // The default transports (or those named), and with --pubsub the
    // publish-subscribe ones too.
    let wanted = |t: &Transport| {
        let named = if args.transports.is_empty() {
            !t.is_pubsub()
        } else {
            args.transports.contains(t)
        };
        named || (args.pubsub && t.is_pubsub())
    };
    let mut cases = Vec::new();
    if args.only != Some(Kind::Throughput) {
        for t in Transport::LATENCY
            .iter()
            .chain(&Transport::PUBSUB_LATENCY)
            .chain(&Transport::RPC_LATENCY)
            .filter(|t| wanted(t))
        {
            cases.push(Case {
                kind: Kind::Latency,
                transport: *t,
                size: t.latency_size(),
            });
        }
    }
    if args.only != Some(Kind::Latency) {
        for &size in &sizes {
            for t in Transport::THROUGHPUT
                .iter()
                .chain(&Transport::PUBSUB_THROUGHPUT)
                .chain(&Transport::RPC_THROUGHPUT)
                .filter(|t| wanted(t))
            {
                cases.push(Case {
                    kind: Kind::Throughput,
                    transport: *t,
                    size,
                });
            }
        }
    }
    if cases.is_empty() {
        return Err(Failure::usage(
            "no case left to run: check --only and --transports",
        ));
    }
    Ok(cases)
}

/// Opens the outputs of `--json` and `--plot`; at most one may be `-`.
fn outputs(args: &Args) -> Result<(Option<Output>, Option<Output>), Failure> {
    let json = args
        .json
        .as_deref()
        .map(|path| Output::open(path, "json"))
        .transpose()?;
    let plot = args
        .plot
        .as_deref()
        .map(|path| Output::open(path, "plot"))
        .transpose()?;
    if json.as_ref().is_some_and(Output::is_stdout) && plot.as_ref().is_some_and(Output::is_stdout)
    {
        return Err(Failure::usage(
            "--json and --plot cannot both go to standard output (-)",
        ));
    }
    Ok((json, plot))
}

pub fn run(args: Args) -> Result<(), Failure> {
    if let Some(n) = args.async_idle {
        return idle::run(n, seconds(args.duration, 10.0, "duration")?);
    }
    let timing = Timing {
        measure: seconds(
            args.duration,
            if args.quick { 0.1 } else { 1.0 },
            "duration",
        )?,
        idle: seconds(args.idle, if args.quick { 0.05 } else { 1.0 }, "idle")?,
    };
    if timing.measure.is_zero() {
        return Err(Failure::usage(
            "invalid --duration: 0 seconds would measure nothing (give more than 0, at most 3600)",
        ));
    }
    let cases = plan(&args)?;
    let (mut json, mut plot) = outputs(&args)?;
    let machine = os::machine();
    // The benchmark on one CPU, each peer on another: a case's peers on
    // the other CPUs in turn, then on the benchmark's own (a 1 → 3
    // publish-subscribe case on two CPUs: the publisher and subscriber 1
    // on one, subscribers 0 and 2 on the other); a request/response
    // throughput case's clients on the other CPUs only (`run::placement`).
    let cpus = os::cpu_ids();
    let peer_cpus: Vec<usize> = match cpus.as_slice() {
        [mine, others @ ..] if !others.is_empty() && os::pin_to_cpu(*mine) => {
            others.iter().copied().chain([*mine]).collect()
        }
        _ => {
            eprintln!(
                "memshare: warning: fewer than two CPUs to pin to: spinning cases will be slow and their figures meaningless"
            );
            Vec::new()
        }
    };
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .map_err(|e| Failure::other(format!("progress bar: {e}")))?,
    );
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        bar.set_message(case.to_string());
        results.push(run::measure(case, timing, &peer_cpus)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = Report {
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        comparisons: report::compare(&results),
        results,
    };
    if ![&json, &plot].into_iter().flatten().any(Output::is_stdout) {
        super::cmd::print_stdout(&report::table(&report))?;
    }
    if let Some(out) = &mut json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::other(format!("encoding JSON: {e}")))?;
        out.write(&(text + "\n"))?;
    }
    if let Some(out) = &mut plot {
        out.write(&report::svg(&report))?;
    }
    Ok(())
}

pub fn peer(args: PeerArgs) -> Result<(), Failure> {
    run::peer(
        args.case,
        args.seconds,
        link::Given {
            port: args.port,
            service: args.service,
        },
        args.cpu,
        args.index,
    )
}
