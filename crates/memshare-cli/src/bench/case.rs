//! What a benchmark case is, how it is named on the command line, and what
//! it measured.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A way to move data between two processes (or, for `memcpy`, within one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Raw cache-line ping-pong on a shared word, both sides spinning.
    RawSpin,
    /// Raw futex ping-pong: every message is a wake-up of a sleeping peer.
    RawFutex,
    /// Raw spin-then-futex ping-pong: spin a while, then sleep.
    RawSpinFutex,
    /// memshare channel, busy-spin waiting.
    ChannelSpin,
    /// memshare channel, spin-then-park waiting (the default).
    ChannelSpinPark,
    /// memshare channel, park-only waiting.
    ChannelPark,
    /// The raw form of `channel-wakeup`: the peer stamps a shared word,
    /// bumps a futex word and wakes it; the benchmark sleeps on that word.
    RawWakeup,
    /// As `raw-wakeup`, the benchmark asleep on 128 words at once (that
    /// one and 127 quiet ones, a segment each) in one `futex_waitv`: the
    /// raw form of `waitset-wakeup`. (Where there is no `futex_waitv`, Linux
    /// before 5.16 and other systems, both poll every 200 µs.)
    RawWakeupWaitv,
    /// A wake-up, not a ping-pong: the time from a send (stamped with the
    /// monotonic clock) to a parked receiver (park-only waiting) holding
    /// the message, one every 200 µs.
    ChannelWakeup,
    /// As `channel-wakeup`, the receiver waiting through a wait set of 128
    /// members (it and 127 quiet channels).
    WaitsetWakeup,
    /// As `channel-wakeup`, the receiver a task awaiting `recv_async`
    /// (woken by the notifier thread through its waker).
    AsyncWakeup,
    /// memshare channel, `send(&[u8])`: one copy in.
    ChannelSend,
    /// As `channel-send`, the receiver awaiting `recv_async` for every
    /// message (the sender keeps the ring busy).
    ChannelRecvAsync,
    /// memshare channel, `reserve` + `commit`: written in place, zero-copy.
    ChannelReserve,
    /// An anonymous pipe.
    Pipe,
    /// A Unix stream socket pair.
    UnixSocket,
    /// TCP over loopback (`TCP_NODELAY`).
    Tcp,
    /// Single-core `memcpy` in one process: the ceiling for throughput.
    Memcpy,
    /// memshare publish-subscribe ping-pong over two services (one each
    /// way), publishers and subscribers busy-spinning.
    #[value(name = "pubsub-spin")]
    #[serde(rename = "pubsub-spin")]
    PubsubSpin,
    /// memshare publish-subscribe, 1 publisher to 1 subscriber: `loan`,
    /// every byte written in place, `publish`; the subscriber reads every
    /// byte. Overflow "block", spin-then-park waiting.
    #[value(name = "pubsub-1to1")]
    #[serde(rename = "pubsub-1to1")]
    Pubsub1To1,
    /// As `pubsub-1to1`, to 3 subscribers (3 subscriber processes).
    #[value(name = "pubsub-1to3")]
    #[serde(rename = "pubsub-1to3")]
    Pubsub1To3,
    /// As `pubsub-1to1`, every side busy-spinning.
    #[value(name = "pubsub-1to1-spin")]
    #[serde(rename = "pubsub-1to1-spin")]
    Pubsub1To1Spin,
    /// As `pubsub-1to3`, every side busy-spinning.
    #[value(name = "pubsub-1to3-spin")]
    #[serde(rename = "pubsub-1to3-spin")]
    Pubsub1To3Spin,
    /// The cost of one zero-copy publication: `try_loan` + an 8-byte
    /// header written + `publish`, the payload left alone, one every 2 µs
    /// at most so that its 1 subscriber (reading the header) keeps up.
    #[value(name = "pubsub-publish")]
    #[serde(rename = "pubsub-publish")]
    PubsubPublish,
    /// memshare request/response: a 64-byte `call` answered with 64 bytes
    /// (the request echoed in a loaned response), client (the benchmark)
    /// and server (the peer) busy-spinning.
    RpcSpin,
    /// The baseline of `rpc-spin`: two channels (one each way) carrying the
    /// same 64 bytes, both sides busy-spinning.
    RpcChannelsSpin,
    /// memshare request/response: 4 client processes, each pipelining
    /// calls of the case's size (`send_request` until `max_in_flight` are
    /// in flight, then `receive_response` of the oldest) to one server
    /// thread (the benchmark), which echoes each request in a loaned
    /// response. The clients park at once when they wait (as the socket
    /// baseline's block in `read`); the server waits the default way.
    RpcPipeline,
    /// The raw form of `rpc-pipeline`: the same clients and server thread,
    /// as many calls in flight, over bare rings of sequence-stamped slots
    /// (no service, no validation, no liveness): what any shared-memory
    /// service must move per call, and no more. The clients park at once
    /// (as `rpc-pipeline`'s), the server spins.
    RpcRawPipeline,
    /// As `rpc-raw-pipeline`, the clients spinning a while before they
    /// sleep (as `raw-spin-futex`): the fastest raw form found here.
    RpcRawPipelineSpin,
    /// A client and the server in the benchmark's one thread: the client
    /// sends `max_in_flight` calls as one batch, the server takes and echoes
    /// each, the client receives them. No other CPU is involved (every line
    /// stays in this CPU's cache): the library's own CPU cost of a call, the
    /// ceiling of `rpc-pipeline` as `memcpy` is of the throughput cases.
    RpcOneThread,
    /// The baseline of `rpc-pipeline`: a Unix-socket server, one thread,
    /// epoll over the 4 clients' sockets, echoing each request; each
    /// client keeps as many requests in flight over its `UnixStream`.
    RpcUnixSocket,
}

/// How many client processes the request/response throughput cases have.
pub const RPC_CLIENTS: usize = 4;

impl Transport {
    /// The transports measured for latency.
    pub const LATENCY: [Transport; 14] = [
        Transport::RawSpin,
        Transport::ChannelSpin,
        Transport::RawSpinFutex,
        Transport::ChannelSpinPark,
        Transport::RawFutex,
        Transport::ChannelPark,
        Transport::RawWakeup,
        Transport::RawWakeupWaitv,
        Transport::ChannelWakeup,
        Transport::WaitsetWakeup,
        Transport::AsyncWakeup,
        Transport::Pipe,
        Transport::UnixSocket,
        Transport::Tcp,
    ];

    /// The transports measured for throughput.
    pub const THROUGHPUT: [Transport; 7] = [
        Transport::ChannelReserve,
        Transport::ChannelSend,
        Transport::ChannelRecvAsync,
        Transport::Pipe,
        Transport::UnixSocket,
        Transport::Tcp,
        Transport::Memcpy,
    ];

    /// The publish-subscribe transports measured for latency (with
    /// `--pubsub`, or when named).
    pub const PUBSUB_LATENCY: [Transport; 1] = [Transport::PubsubSpin];

    /// The publish-subscribe transports measured at each message size
    /// (with `--pubsub`, or when named).
    pub const PUBSUB_THROUGHPUT: [Transport; 5] = [
        Transport::Pubsub1To1,
        Transport::Pubsub1To3,
        Transport::Pubsub1To1Spin,
        Transport::Pubsub1To3Spin,
        Transport::PubsubPublish,
    ];

    /// The request/response transports measured for latency (64-byte calls).
    pub const RPC_LATENCY: [Transport; 2] = [Transport::RpcChannelsSpin, Transport::RpcSpin];

    /// The request/response transports measured at each message size.
    pub const RPC_THROUGHPUT: [Transport; 5] = [
        Transport::RpcPipeline,
        Transport::RpcRawPipeline,
        Transport::RpcRawPipelineSpin,
        Transport::RpcUnixSocket,
        Transport::RpcOneThread,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::RawSpin => "raw-spin",
            Transport::RawFutex => "raw-futex",
            Transport::RawSpinFutex => "raw-spin-futex",
            Transport::ChannelSpin => "channel-spin",
            Transport::ChannelSpinPark => "channel-spin-park",
            Transport::ChannelPark => "channel-park",
            Transport::RawWakeup => "raw-wakeup",
            Transport::RawWakeupWaitv => "raw-wakeup-waitv",
            Transport::ChannelWakeup => "channel-wakeup",
            Transport::WaitsetWakeup => "waitset-wakeup",
            Transport::AsyncWakeup => "async-wakeup",
            Transport::ChannelSend => "channel-send",
            Transport::ChannelRecvAsync => "channel-recv-async",
            Transport::ChannelReserve => "channel-reserve",
            Transport::Pipe => "pipe",
            Transport::UnixSocket => "unix-socket",
            Transport::Tcp => "tcp",
            Transport::Memcpy => "memcpy",
            Transport::PubsubSpin => "pubsub-spin",
            Transport::Pubsub1To1 => "pubsub-1to1",
            Transport::Pubsub1To3 => "pubsub-1to3",
            Transport::Pubsub1To1Spin => "pubsub-1to1-spin",
            Transport::Pubsub1To3Spin => "pubsub-1to3-spin",
            Transport::PubsubPublish => "pubsub-publish",
            Transport::RpcSpin => "rpc-spin",
            Transport::RpcChannelsSpin => "rpc-channels-spin",
            Transport::RpcPipeline => "rpc-pipeline",
            Transport::RpcRawPipeline => "rpc-raw-pipeline",
            Transport::RpcRawPipelineSpin => "rpc-raw-pipeline-spin",
            Transport::RpcOneThread => "rpc-one-thread",
            Transport::RpcUnixSocket => "rpc-unix-socket",
        }
    }

    /// Whether this is a memshare transport (as opposed to a baseline).
    pub fn is_memshare(self) -> bool {
        self.name().starts_with("channel")
            || self.name().starts_with("waitset")
            || self.name().starts_with("async")
            || self.is_pubsub()
            || matches!(
                self,
                Transport::RpcSpin
                    | Transport::RpcChannelsSpin
                    | Transport::RpcPipeline
                    | Transport::RpcOneThread
            )
    }

    /// Whether the case runs in the benchmark's process alone (no peer,
    /// no probe): `memcpy`, `rpc-one-thread`.
    pub fn in_one_process(self) -> bool {
        matches!(self, Transport::Memcpy | Transport::RpcOneThread)
    }

    /// Whether this is a publish-subscribe transport (run with `--pubsub`,
    /// or when named).
    pub fn is_pubsub(self) -> bool {
        self.name().starts_with("pubsub")
    }

    /// Whether this is a request/response transport (or the baseline of
    /// one).
    pub fn is_rpc(self) -> bool {
        self.name().starts_with("rpc")
    }

    /// How many peer processes a throughput case has: a publish-subscribe
    /// case's subscribers, a request/response case's clients; 1 for every
    /// other case.
    pub fn peers(self) -> usize {
        match self {
            Transport::Pubsub1To3 | Transport::Pubsub1To3Spin => 3,
            Transport::RpcPipeline
            | Transport::RpcRawPipeline
            | Transport::RpcRawPipelineSpin
            | Transport::RpcUnixSocket => RPC_CLIENTS,
            _ => 1,
        }
    }

    /// The message size of this transport's latency case: 64 bytes for a
    /// request/response call and its baseline, 8 for the others.
    pub fn latency_size(self) -> usize {
        if self.is_rpc() {
            64
        } else {
            8
        }
    }
}

/// Latency (ping-pong) or throughput (one way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Round trips of a small message; one-way = round trip / 2.
    Latency,
    /// Messages of a size sent one way as fast as they go.
    Throughput,
}

/// One measurement to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Case {
    pub kind: Kind,
    pub transport: Transport,
    /// Message size in bytes.
    pub size: usize,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Latency => write!(f, "latency:{}:{}", self.transport.name(), self.size),
            Kind::Throughput => write!(f, "throughput:{}:{}", self.transport.name(), self.size),
        }
    }
}

impl FromStr for Case {
    type Err = String;

    fn from_str(s: &str) -> Result<Case, String> {
        let mut parts = s.split(':');
        let (Some(kind), Some(transport), Some(size), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("{s:?} is not kind:transport:size"));
        };
        use clap::ValueEnum;
        Ok(Case {
            kind: Kind::from_str(kind, false)?,
            transport: Transport::from_str(transport, false)?,
            size: size.parse().map_err(|_| format!("bad size in {s:?}"))?,
        })
    }
}

/// What one case measured.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    #[serde(flatten)]
    pub case: Case,
    /// One-way latency of a raw spin ping-pong measured just before the
    /// case, in nanoseconds: where the two vCPUs were at the time.
    pub probe_ns: f64,
    /// The same probe right after the case (once every peer has measured):
    /// the two differ when the vCPUs moved during the case. None where the
    /// peers ended first, and for a case in one process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_after_ns: Option<f64>,
    /// Latency cases: one-way latency percentiles in nanoseconds.
    pub median_ns: Option<f64>,
    pub p99_ns: Option<f64>,
    pub p999_ns: Option<f64>,
    /// Latency cases: round trips measured.
    pub samples: u64,
    /// Throughput cases: messages and bytes per second. Publish-subscribe:
    /// messages per second of the slowest subscriber, and the bytes
    /// delivered per second to all subscribers together (none for
    /// `pubsub-publish`, which moves no payload).
    pub msgs_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
    /// Publish-subscribe throughput cases: each subscriber's messages per
    /// second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_msgs_per_sec: Option<Vec<f64>>,
    /// `pubsub-publish`: the time of one `loan` + header + `publish` when
    /// there is room, median and p99 in nanoseconds, reading the clock
    /// twice included; `clock_ns` is what reading it twice costs alone
    /// (median).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_p99_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_ns: Option<f64>,
    /// Request/response throughput cases: each client's calls per second
    /// (`msgs_per_sec` is their sum, `bytes_per_sec` the request bytes per
    /// second; as many come back in the responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_calls_per_sec: Option<Vec<f64>>,
}
