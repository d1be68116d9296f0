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
    /// memshare channel, `send(&[u8])`: one copy in.
    ChannelSend,
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
}

impl Transport {
    /// The transports measured for latency.
    pub const LATENCY: [Transport; 9] = [
        Transport::RawSpin,
        Transport::ChannelSpin,
        Transport::RawSpinFutex,
        Transport::ChannelSpinPark,
        Transport::RawFutex,
        Transport::ChannelPark,
        Transport::Pipe,
        Transport::UnixSocket,
        Transport::Tcp,
    ];

    /// The transports measured for throughput.
    pub const THROUGHPUT: [Transport; 6] = [
        Transport::ChannelReserve,
        Transport::ChannelSend,
        Transport::Pipe,
        Transport::UnixSocket,
        Transport::Tcp,
        Transport::Memcpy,
    ];

    /// The publish-subscribe transports measured for latency (with
    /// `--pubsub`, or when named).
    pub const PUBSUB_LATENCY: [Transport; 1] = [Transport::PubsubSpin];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::RawSpin => "raw-spin",
            Transport::RawFutex => "raw-futex",
            Transport::RawSpinFutex => "raw-spin-futex",
            Transport::ChannelSpin => "channel-spin",
            Transport::ChannelSpinPark => "channel-spin-park",
            Transport::ChannelPark => "channel-park",
            Transport::ChannelSend => "channel-send",
            Transport::ChannelReserve => "channel-reserve",
            Transport::Pipe => "pipe",
            Transport::UnixSocket => "unix-socket",
            Transport::Tcp => "tcp",
            Transport::Memcpy => "memcpy",
            Transport::PubsubSpin => "pubsub-spin",
        }
    }

    /// Whether this is a memshare transport (as opposed to a baseline).
    pub fn is_memshare(self) -> bool {
        self.name().starts_with("channel") || self.is_pubsub()
    }

    /// Whether this is a publish-subscribe transport (run with `--pubsub`,
    /// or when named).
    pub fn is_pubsub(self) -> bool {
        self.name().starts_with("pubsub")
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
    /// Latency cases: one-way latency percentiles in nanoseconds.
    pub median_ns: Option<f64>,
    pub p99_ns: Option<f64>,
    pub p999_ns: Option<f64>,
    /// Latency cases: round trips measured.
    pub samples: u64,
    /// Throughput cases: messages and bytes per second.
    pub msgs_per_sec: Option<f64>,
    pub bytes_per_sec: Option<f64>,
}
