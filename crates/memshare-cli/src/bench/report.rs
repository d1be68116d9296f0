//! Presenting results: the table with ratios to the baselines, JSON, and an
//! SVG plot.

use std::fmt::Write as _;

use serde::Serialize;

use super::case::{Kind, Measured, Transport, RPC_CLIENTS};
use crate::table::{
    Align::{Left, Right},
    Table,
};

/// A memshare figure set against the baseline it is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub what: String,
    pub memshare: String,
    pub baseline: String,
    /// memshare / baseline: for latency lower is better, for throughput
    /// higher is better.
    pub ratio: f64,
    /// The lowest and highest probe of the two cases (before and after
    /// each): where the two vCPUs were while they ran. None for a case in
    /// one process (memcpy, rpc-one-thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes_ns: Option<[f64; 2]>,
    /// Whether the probes say that the vCPUs moved between or during the
    /// two cases (the highest more than [`MOVED`] times the lowest): the
    /// two figures were then not measured alike, and the ratio says more
    /// about the placement than about memshare.
    pub placement_moved: bool,
}

/// How much the probes of two compared cases may differ before the ratio
/// is marked: a cache line's transfer between near vCPUs against far ones
/// (100 against 320 ns on the AMD EPYC guest) is well beyond it, the
/// jitter of one placement (a few tens of percent) within it.
pub const MOVED: f64 = 1.5;

impl Comparison {
    /// `ours` against `base`, `ratio` their figures' quotient, the two
    /// named `memshare` and `baseline`.
    fn between(
        what: String,
        (ours, memshare): (&Measured, String),
        (base, baseline): (&Measured, String),
        ratio: f64,
    ) -> Comparison {
        let probes: Vec<f64> = [ours, base]
            .into_iter()
            .flat_map(|m| [Some(m.probe_ns), m.probe_after_ns])
            .flatten()
            .filter(|&p| p > 0.0)
            .collect();
        let lowest = probes.iter().copied().reduce(f64::min);
        let highest = probes.iter().copied().reduce(f64::max);
        let probes_ns = lowest.zip(highest).map(|(l, h)| [l, h]);
        Comparison {
            what,
            memshare,
            baseline,
            ratio,
            probes_ns,
            placement_moved: probes_ns.is_some_and(|[l, h]| h > MOVED * l),
        }
    }
}

/// Everything one run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: String,
    pub command: String,
    pub results: Vec<Measured>,
    pub comparisons: Vec<Comparison>,
}

/// A case and its transport's name, for [`Comparison::between`].
fn named(m: &Measured) -> (&Measured, String) {
    (m, m.case.transport.name().to_owned())
}

fn find(results: &[Measured], kind: Kind, t: Transport, size: usize) -> Option<&Measured> {
    results
        .iter()
        .find(|m| m.case.kind == kind && m.case.transport == t && m.case.size == size)
}

/// Each memshare figure set against its baseline: a latency against the
/// raw ping-pong that waits the same way (publish-subscribe: against the
/// channel; a request/response call: against two channels carrying the
/// same bytes), a message rate against the pipe (64 B) or the best of the
/// operating system's IPC; publish-subscribe fan-out against 1 → 1 of the
/// same run, and the cost of publishing at each size against the smallest;
/// pipelined calls against the Unix-socket server and against their raw
/// form (and the raw forms against that server); the wake-up of a wait
/// set of 128 against a single parked receiver's, and each wake-up against
/// its raw form (a futex word woken, slept on alone or with 127 more).
pub fn compare(results: &[Measured]) -> Vec<Comparison> {
    let mut out = Vec::new();
    let lat = |t: Transport| {
        find(results, Kind::Latency, t, t.latency_size()).and_then(|m| m.median_ns.map(|v| (m, v)))
    };
    for (ours, base) in [
        (Transport::ChannelSpin, Transport::RawSpin),
        (Transport::ChannelSpinPark, Transport::RawSpinFutex),
        (Transport::ChannelPark, Transport::RawFutex),
        (Transport::PubsubSpin, Transport::ChannelSpin),
        (Transport::RpcSpin, Transport::RpcChannelsSpin),
        // Each wake-up against its raw form: what memshare adds to the
        // kernel's wake-up of one word, and of 128 in one futex_waitv.
        (Transport::ChannelWakeup, Transport::RawWakeup),
        (Transport::WaitsetWakeup, Transport::RawWakeupWaitv),
        // A parked wait set of 128 woken, against one parked receiver.
        (Transport::WaitsetWakeup, Transport::ChannelWakeup),
        // A task parked in recv_async, against one parked receiver.
        (Transport::AsyncWakeup, Transport::ChannelWakeup),
    ] {
        if let (Some((a, x)), Some((b, y))) = (lat(ours), lat(base)) {
            let what = if ours.is_rpc() {
                // The same ratio as one way's: both are halved.
                format!(
                    "{} call round trip, median",
                    size_label(ours.latency_size())
                )
            } else if ours.name().ends_with("-wakeup") {
                "wake-up latency, median".into()
            } else {
                "one-way latency, median".into()
            };
            out.push(Comparison::between(what, named(a), named(b), x / y));
        }
    }
    let rate = |t, size| {
        find(results, Kind::Throughput, t, size).and_then(|m| m.msgs_per_sec.map(|v| (m, v)))
    };
    for (what, ours, base) in [
        (
            "64 B messages/s, received with recv_async",
            Transport::ChannelRecvAsync,
            Transport::ChannelSend,
        ),
        ("64 B messages/s", Transport::ChannelSend, Transport::Pipe),
    ] {
        if let (Some((a, x)), Some((b, y))) = (rate(ours, 64), rate(base, 64)) {
            out.push(Comparison::between(what.into(), named(a), named(b), x / y));
        }
    }
    for size in [4096, 65536, 1 << 20] {
        let best = [Transport::Pipe, Transport::UnixSocket, Transport::Tcp]
            .into_iter()
            .filter_map(|t| rate(t, size))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((b, y)) = best else { continue };
        for ours in [Transport::ChannelReserve, Transport::ChannelSend] {
            if let Some((a, x)) = rate(ours, size) {
                let baseline = format!("best of pipe/unix/tcp ({})", b.case.transport.name());
                out.push(Comparison::between(
                    format!("{} messages/s", size_label(size)),
                    named(a),
                    (b, baseline),
                    x / y,
                ));
            }
        }
    }
    compare_pubsub(results, &mut out);
    for size in sizes(results) {
        // memshare against the socket server and against its raw form; and
        // the raw forms against the socket server: what a shared-memory
        // service could reach here at most.
        for (ours, base) in [
            (Transport::RpcPipeline, Transport::RpcUnixSocket),
            (Transport::RpcPipeline, Transport::RpcRawPipeline),
            (Transport::RpcRawPipeline, Transport::RpcUnixSocket),
            (Transport::RpcRawPipelineSpin, Transport::RpcUnixSocket),
        ] {
            if let (Some((a, x)), Some((b, y))) = (rate(ours, size), rate(base, size)) {
                out.push(Comparison::between(
                    format!("{} calls/s, {RPC_CLIENTS} clients", size_label(size)),
                    named(a),
                    named(b),
                    x / y,
                ));
            }
        }
    }
    out
}

/// The sizes the throughput results have, smallest first.
fn sizes(results: &[Measured]) -> Vec<usize> {
    let mut sizes: Vec<usize> = results
        .iter()
        .filter(|m| m.case.kind == Kind::Throughput)
        .map(|m| m.case.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Publish-subscribe: 1 → 3 against 1 → 1 (the slowest subscriber's
/// messages/s, and the bytes delivered to all), and the median cost of a
/// publication at each size against the smallest size's.
fn compare_pubsub(results: &[Measured], out: &mut Vec<Comparison>) {
    let get = |t, size| find(results, Kind::Throughput, t, size);
    for size in sizes(results) {
        // Zero-copy both, every byte written and read.
        let one = get(Transport::Pubsub1To1, size);
        let channel = get(Transport::ChannelReserve, size);
        if let (Some(a), Some(b)) = (one, channel) {
            if let (Some(x), Some(y)) = (a.msgs_per_sec, b.msgs_per_sec) {
                out.push(Comparison::between(
                    format!("{} messages/s", size_label(size)),
                    named(a),
                    named(b),
                    x / y,
                ));
            }
        }
        for (ours, base) in [
            (Transport::Pubsub1To3, Transport::Pubsub1To1),
            (Transport::Pubsub1To3Spin, Transport::Pubsub1To1Spin),
        ] {
            let (Some(a), Some(b)) = (get(ours, size), get(base, size)) else {
                continue;
            };
            let label = size_label(size);
            for (what, x, y) in [
                (
                    format!("{label} slowest sub msgs/s"),
                    a.msgs_per_sec,
                    b.msgs_per_sec,
                ),
                (
                    format!("{label} bytes/s to 3 subs"),
                    a.bytes_per_sec,
                    b.bytes_per_sec,
                ),
            ] {
                if let (Some(x), Some(y)) = (x, y) {
                    out.push(Comparison::between(what, named(a), named(b), x / y));
                }
            }
        }
    }
    let cost: Vec<(&Measured, f64)> = sizes(results)
        .into_iter()
        .filter_map(|size| {
            get(Transport::PubsubPublish, size).and_then(|m| m.publish_ns.map(|ns| (m, ns)))
        })
        .collect();
    if let Some((&(smallest, base), rest)) = cost.split_first() {
        for &(m, ns) in rest {
            out.push(Comparison::between(
                "publish cost, median".into(),
                (m, format!("pubsub-publish {}", size_label(m.case.size))),
                (
                    smallest,
                    format!("pubsub-publish {}", size_label(smallest.case.size)),
                ),
                ns / base,
            ));
        }
    }
}

pub fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1024 && s % 1024 == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn ns(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.2} us", v / 1e3),
        Some(v) => format!("{v:.0} ns"),
        None => "-".into(),
    }
}

/// The probes of a case, before and after it ("110/326 ns"); "-" for a
/// case in one process.
fn probe_label(m: &Measured) -> String {
    if m.case.transport.in_one_process() {
        return "-".into();
    }
    match m.probe_after_ns {
        Some(after) => format!("{:.0}/{after:.0} ns", m.probe_ns),
        None => ns(Some(m.probe_ns)),
    }
}

fn rate_label(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} K/s", v / 1e3),
        Some(v) => format!("{v:.0} /s"),
        None => "-".into(),
    }
}

fn bytes_label(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{:.2} GB/s", v / 1e9),
        None => "-".into(),
    }
}

/// Appends `table` to `s`, each line indented by two spaces.
fn indented(s: &mut String, table: &Table) {
    for line in table.render().lines() {
        let _ = writeln!(s, "  {line}");
    }
}

/// The report as text tables for people, each column as wide as its
/// widest cell.
pub fn table(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "machine: {}", report.machine);
    let lat: Vec<_> = report
        .results
        .iter()
        .filter(|m| m.case.kind == Kind::Latency)
        .collect();
    if !lat.is_empty() {
        let _ = writeln!(
            s,
            "\nLatency (one way = round trip / 2; *-wakeup: from the send to the parked receiver holding it)"
        );
        let mut t = Table::new(&[
            ("transport", Left),
            ("size", Right),
            ("median", Right),
            ("p99", Right),
            ("p99.9", Right),
            ("probe", Right),
            ("samples", Right),
        ]);
        for m in lat {
            t.push(vec![
                m.case.transport.name().into(),
                size_label(m.case.size),
                ns(m.median_ns),
                ns(m.p99_ns),
                ns(m.p999_ns),
                probe_label(m),
                m.samples.to_string(),
            ]);
        }
        indented(&mut s, &t);
    }
    let thr: Vec<_> = report
        .results
        .iter()
        .filter(|m| {
            m.case.kind == Kind::Throughput
                && !m.case.transport.is_pubsub()
                && !m.case.transport.is_rpc()
        })
        .collect();
    if !thr.is_empty() {
        let _ = writeln!(s, "\nThroughput (one way, receiver reads every byte)");
        let mut t = Table::new(&[
            ("transport", Left),
            ("size", Right),
            ("messages", Right),
            ("bytes", Right),
            ("probe", Right),
        ]);
        for m in thr {
            t.push(vec![
                m.case.transport.name().into(),
                size_label(m.case.size),
                rate_label(m.msgs_per_sec),
                bytes_label(m.bytes_per_sec),
                probe_label(m),
            ]);
        }
        indented(&mut s, &t);
    }
    pubsub_tables(&mut s, report);
    rpc_table(&mut s, report);
    comparison_table(&mut s, report);
    s
}

/// The ratios of memshare's figures to their baselines'.
fn comparison_table(s: &mut String, report: &Report) {
    if report.comparisons.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nmemshare against its baselines in this run (ratio: memshare / baseline; \
         latency: lower is better, messages/s: higher is better)"
    );
    let mut t = Table::new(&[
        ("figure", Left),
        ("memshare", Left),
        ("baseline", Left),
        ("ratio", Right),
        ("", Left),
    ]);
    for c in &report.comparisons {
        let moved = match c.probes_ns {
            Some([low, high]) if c.placement_moved => {
                format!("(vCPUs moved: probes {low:.0}-{high:.0} ns)")
            }
            _ => String::new(),
        };
        t.push(vec![
            c.what.clone(),
            c.memshare.clone(),
            c.baseline.clone(),
            format!("{:.2}x", c.ratio),
            moved,
        ]);
    }
    indented(s, &t);
    if report.comparisons.iter().any(|c| c.placement_moved) {
        let _ = writeln!(
            s,
            "  (A ratio so marked pairs figures measured with the vCPUs placed differently: \
             compare it only with care.)"
        );
    }
}

/// The publish-subscribe throughput and publish-cost tables.
fn pubsub_tables(s: &mut String, report: &Report) {
    let thr = |m: &&Measured| m.case.kind == Kind::Throughput && m.case.transport.is_pubsub();
    let fan: Vec<_> = report
        .results
        .iter()
        .filter(thr)
        .filter(|m| m.case.transport != Transport::PubsubPublish)
        .collect();
    if !fan.is_empty() {
        let _ = writeln!(
            s,
            "\nPublish-subscribe (loan, every byte written, publish; each subscriber reads every byte; overflow \"block\")"
        );
        let mut t = Table::new(&[
            ("transport", Left),
            ("size", Right),
            ("slowest sub", Right),
            ("delivered", Right),
            ("probe", Right),
            ("each subscriber", Left),
        ]);
        for m in fan {
            t.push(vec![
                m.case.transport.name().into(),
                size_label(m.case.size),
                rate_label(m.msgs_per_sec),
                bytes_label(m.bytes_per_sec),
                probe_label(m),
                each_label(m.subscriber_msgs_per_sec.as_deref()),
            ]);
        }
        indented(s, &t);
    }
    let cost: Vec<_> = report
        .results
        .iter()
        .filter(thr)
        .filter(|m| m.case.transport == Transport::PubsubPublish)
        .collect();
    if !cost.is_empty() {
        let _ = writeln!(
            s,
            "\nPublish cost (try_loan + 8-byte header + publish, payload not written; 1 subscriber reading the header)"
        );
        let mut t = Table::new(&[
            ("transport", Left),
            ("size", Right),
            ("median", Right),
            ("p99", Right),
            ("clock", Right),
            ("subscriber", Right),
            ("probe", Right),
        ]);
        for m in cost {
            t.push(vec![
                m.case.transport.name().into(),
                size_label(m.case.size),
                ns(m.publish_ns),
                ns(m.publish_p99_ns),
                ns(m.clock_ns),
                rate_label(m.msgs_per_sec),
                probe_label(m),
            ]);
        }
        indented(s, &t);
    }
}

/// The request/response throughput table.
fn rpc_table(s: &mut String, report: &Report) {
    let rpc: Vec<_> = report
        .results
        .iter()
        .filter(|m| m.case.kind == Kind::Throughput && m.case.transport.is_rpc())
        .collect();
    if rpc.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nRequest/response ({RPC_CLIENTS} client processes pipelining calls to one server thread, \
         which echoes each request; every response byte read)"
    );
    let mut t = Table::new(&[
        ("transport", Left),
        ("size", Right),
        ("calls", Right),
        ("requests", Right),
        ("probe", Right),
        ("each client", Left),
    ]);
    for m in rpc {
        t.push(vec![
            m.case.transport.name().into(),
            size_label(m.case.size),
            rate_label(m.msgs_per_sec),
            bytes_label(m.bytes_per_sec),
            probe_label(m),
            each_label(m.client_calls_per_sec.as_deref()),
        ]);
    }
    indented(s, &t);
}

/// Per-subscriber or per-client rates, comma-separated.
fn each_label(rates: Option<&[f64]>) -> String {
    let each: Vec<String> = rates
        .into_iter()
        .flatten()
        .map(|&r| rate_label(Some(r)))
        .collect();
    each.join(", ")
}

/// An SVG with two charts: median one-way latency per transport (log
/// scale) and throughput against message size per transport (log-log).
pub fn svg(report: &Report) -> String {
    let (w, h) = (960.0, 900.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="20" y="24" font-size="16">memshare bench — {}</text>"#,
        escape(&report.machine)
    );
    latency_chart(&mut s, report, 20.0, 50.0, 920.0, 380.0);
    throughput_chart(&mut s, report, 20.0, 480.0, 920.0, 400.0);
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const COLORS: [&str; 13] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#17becf", "#bcbd22", "#393b79", "#637939", "#843c39",
];

fn latency_chart(s: &mut String, report: &Report, x: f64, y: f64, w: f64, h: f64) {
    let bars: Vec<_> = report
        .results
        .iter()
        .filter(|m| m.case.kind == Kind::Latency)
        .filter_map(|m| {
            m.median_ns
                .map(|v| (m.case.transport, v, m.p99_ns.unwrap_or(v)))
        })
        .collect();
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{}" font-size="14">One-way latency, median (bar) and p99 (tick), log scale</text>"#,
        y - 8.0
    );
    if bars.is_empty() {
        return;
    }
    let label_w = 150.0;
    let (lo, hi) = (10f64, bars.iter().map(|b| b.2).fold(100.0, f64::max) * 2.0);
    let scale = |v: f64| {
        label_w
            + (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * (w - label_w - 20.0)
    };
    let row = (h - 30.0) / bars.len() as f64;
    for decade in 1..=10 {
        let v = 10f64.powi(decade);
        if v > hi {
            break;
        }
        let gx = x + scale(v);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{y}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y + h - 25.0,
            y + h - 10.0,
            ns(Some(v))
        );
    }
    for (i, (t, median, p99)) in bars.iter().enumerate() {
        let by = y + i as f64 * row;
        let color = if t.is_memshare() { "#1f77b4" } else { "#999" };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x,
            by + row * 0.6,
            t.name(),
            x + label_w,
            by + row * 0.15,
            (scale(*median) - label_w).max(1.0),
            row * 0.7,
            x + scale(*p99),
            by + row * 0.1,
            x + scale(*p99),
            by + row * 0.9,
            x + scale(*p99) + 4.0,
            by + row * 0.6,
            ns(Some(*median))
        );
    }
}

fn throughput_chart(s: &mut String, report: &Report, x: f64, y: f64, w: f64, h: f64) {
    let points: Vec<_> = report
        .results
        .iter()
        .filter(|m| m.case.kind == Kind::Throughput)
        .filter_map(|m| {
            m.bytes_per_sec
                .map(|b| (m.case.transport, m.case.size as f64, b))
        })
        .collect();
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{}" font-size="14">Throughput (bytes/s; publish-subscribe: delivered to all subscribers; request/response: requests) against message size, log-log</text>"#,
        y - 8.0
    );
    if points.is_empty() {
        return;
    }
    let (plot_x, plot_w, plot_h) = (x + 70.0, w - 260.0, h - 40.0);
    let (smin, smax) = points
        .iter()
        .fold((f64::MAX, 0f64), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let (bmin, bmax) = points
        .iter()
        .fold((f64::MAX, 0f64), |a, p| (a.0.min(p.2), a.1.max(p.2)));
    let (smin, smax) = (smin / 2.0, smax * 2.0);
    let (bmin, bmax) = (bmin / 2.0, bmax * 2.0);
    let sx = |v: f64| plot_x + (v.log10() - smin.log10()) / (smax.log10() - smin.log10()) * plot_w;
    let sy =
        |v: f64| y + plot_h - (v.log10() - bmin.log10()) / (bmax.log10() - bmin.log10()) * plot_h;
    let _ = writeln!(
        s,
        r#"<rect x="{plot_x}" y="{y}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let mut e = bmin.log10().ceil() as i32;
    while 10f64.powi(e) <= bmax {
        let v = 10f64.powi(e);
        let _ = writeln!(
            s,
            r##"<line x1="{plot_x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            sy(v),
            plot_x + plot_w,
            sy(v),
            plot_x - 4.0,
            sy(v) + 4.0,
            bytes_label(Some(v))
        );
        e += 1;
    }
    let mut sizes: Vec<f64> = points.iter().map(|p| p.1).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    for size in sizes {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            sx(size),
            y + plot_h + 16.0,
            size_label(size as usize)
        );
    }
    // pubsub-publish has no byte rate: it draws no line.
    for (i, t) in Transport::THROUGHPUT
        .iter()
        .chain(&Transport::PUBSUB_THROUGHPUT)
        .chain(&Transport::RPC_THROUGHPUT)
        .enumerate()
    {
        let mut line: Vec<_> = points.iter().filter(|p| p.0 == *t).collect();
        if line.is_empty() {
            continue;
        }
        line.sort_by(|a, b| a.1.total_cmp(&b.1));
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = line
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.1), sy(p.2)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for p in &line {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                sx(p.1),
                sy(p.2)
            );
        }
        let ly = y + 20.0 + i as f64 * 18.0;
        let lx = plot_x + plot_w + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            t.name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::case::Case;

    fn throughput(transport: Transport, msgs_per_sec: f64) -> Measured {
        Measured {
            case: Case {
                kind: Kind::Throughput,
                transport,
                size: 64,
            },
            probe_ns: 70.0,
            probe_after_ns: Some(75.0),
            median_ns: None,
            p99_ns: None,
            p999_ns: None,
            samples: 0,
            msgs_per_sec: Some(msgs_per_sec),
            bytes_per_sec: Some(msgs_per_sec * 64.0),
            subscriber_msgs_per_sec: None,
            publish_ns: None,
            publish_p99_ns: None,
            clock_ns: None,
            client_calls_per_sec: transport.is_rpc().then(|| vec![msgs_per_sec / 4.0; 4]),
        }
    }

    /// Where, in each line of the table that follows the line starting
    /// with `title`, the column whose header is `header` ends.
    fn column_ends(text: &str, title: &str, header: &str) -> Vec<usize> {
        let mut lines = text.lines().skip_while(|l| !l.starts_with(title)).skip(1);
        let head = lines.next().expect("a header row");
        let end = head.find(header).expect("the header") + header.len();
        let mut ends = vec![end];
        for row in lines.take_while(|l| l.starts_with("  ") && !l.starts_with("  (")) {
            // The cell ending nearest the header's end, right-aligned to it.
            let cut = row[..end.min(row.len())].trim_end().len();
            ends.push(cut);
        }
        ends
    }

    #[test]
    fn columns_stay_aligned_past_long_labels() {
        let results = vec![
            throughput(Transport::ChannelSend, 30e6),
            throughput(Transport::ChannelRecvAsync, 33e6),
            throughput(Transport::Pipe, 2e6),
            throughput(Transport::RpcRawPipelineSpin, 15e6),
            throughput(Transport::RpcUnixSocket, 1e6),
        ];
        let report = Report {
            machine: "test".into(),
            command: "memshare bench".into(),
            comparisons: compare(&results),
            results,
        };
        let text = table(&report);
        for (title, header, rows) in [
            ("memshare against", "ratio", 3),
            ("Request/response", "size", 2),
            ("Request/response", "probe", 2),
        ] {
            let ends = column_ends(&text, title, header);
            assert_eq!(ends.len(), 1 + rows, "{title}: {ends:?}\n{text}");
            assert!(
                ends.iter().all(|&e| e == ends[0]),
                "{title}: column {header:?} ends at {ends:?}\n{text}"
            );
        }
    }
}
