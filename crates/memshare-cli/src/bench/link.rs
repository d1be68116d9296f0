//! The two ends of each transport: what the benchmark (parent) holds, what
//! the peer (the same binary, re-run) holds, and how each side moves one
//! message.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memshare::channel::{Receiver, Sender, WaitStrategy};
use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
use memshare::rpc::{Client, Server, ServerConfig};
use memshare::{CommandExt, Segment, ViewMut};

use super::case::{Case, Kind, Transport, RPC_CLIENTS};
use super::raw_rpc::Rings as RawRings;
use super::waitset::Waiting;
use super::watch;
use crate::fail::Failure;

/// Offsets of the words of the raw ping-pongs, each on its own cache line
/// pair: the ping word, the pong word, and each side's "waiting" flag.
const PING: usize = 0;
const PONG: usize = 128;
const PING_WAITING: usize = 256;
const PONG_WAITING: usize = 384;

/// How long a raw spin-then-futex waiter spins before it sleeps, the same
/// as the channel's default.
const RAW_SPINS: u32 = memshare::channel::DEFAULT_SPINS;

/// Makes an I/O error a failure naming what failed.
pub fn io(what: &'static str) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure::other(format!("bench: {what}: {e}"))
}

/// A message stream: pipe, Unix socket or TCP.
pub enum Stream {
    Pipe(Option<File>, File),
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Pipe(Some(w), _) => w.write_all(buf),
            Stream::Pipe(None, _) => Err(std::io::ErrorKind::BrokenPipe.into()),
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
        }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Pipe(_, r) => r.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }

    pub fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Stream::Pipe(_, r) => r.read_exact(buf),
            Stream::Unix(s) => s.read_exact(buf),
            Stream::Tcp(s) => s.read_exact(buf),
        }
    }

    /// Closes the writing direction: the other side reads end-of-file.
    pub fn close_write(&mut self) {
        match self {
            Stream::Pipe(w, _) => drop(w.take()),
            Stream::Unix(s) => drop(s.shutdown(std::net::Shutdown::Write)),
            Stream::Tcp(s) => drop(s.shutdown(std::net::Shutdown::Write)),
        }
    }
}

/// What one side holds for a case.
pub enum Link {
    /// The raw ping-pongs: words in a shared segment.
    Words(ViewMut),
    /// Latency over channels: one each way.
    Channels(Sender, Receiver),
    /// Throughput over a channel, receiving end (the benchmark).
    ChannelIn(Receiver),
    /// Throughput over a channel, sending end (the peer).
    ChannelOut(Sender),
    Stream(Stream),
    /// Latency over publish-subscribe: a publisher to the other side's
    /// subscriber, and a subscriber of the other side's publisher (boxed:
    /// the endpoints are large).
    PubSub(Box<Publisher>, Box<Subscriber>),
    /// Publish-subscribe throughput, the publishing end (the benchmark).
    PubOut(Box<Publisher>),
    /// Publish-subscribe throughput, one subscriber (a peer).
    SubIn(Box<Subscriber>),
    /// A request/response client: the benchmark for latency, a peer for
    /// throughput (boxed, as the other endpoints).
    RpcClient(Box<Client>),
    /// A request/response server: the peer for latency, the benchmark for
    /// throughput.
    RpcServer(Box<Server>),
    /// The Unix-socket request/response server (the benchmark): one
    /// socket per client.
    Sockets(Vec<UnixStream>),
    /// A wake-up case: the stamped messages and, for `waitset-wakeup`, the
    /// benchmark's wait set (boxed: the set and its quiet members).
    Wakeup(Box<super::waitset::WakeLink>),
    /// memcpy: nothing crosses a process boundary.
    None,
}

/// The ring size for a case: room for a few messages of its size.
fn ring_for(case: &Case) -> usize {
    (case.size * 2).max(1 << 20)
}

fn wait_strategy(t: Transport) -> WaitStrategy {
    match t {
        Transport::ChannelSpin | Transport::RpcChannelsSpin => WaitStrategy::Spin,
        Transport::ChannelPark => WaitStrategy::Park,
        _ => WaitStrategy::default(),
    }
}

/// How the publish-subscribe endpoints of transport `t` wait.
fn pubsub_strategy(t: Transport) -> WaitStrategy {
    match t {
        Transport::Pubsub1To1 | Transport::Pubsub1To3 => WaitStrategy::default(),
        _ => WaitStrategy::Spin,
    }
}

/// The services of the latency ping-pong: 8-byte messages, one
/// subscriber, overflow "block" (as a channel: nothing is lost).
fn ping_config() -> ServiceConfig {
    ServiceConfig::new()
        .max_subscribers(1)
        .max_message_len(8)
        .depth(16)
        .overflow(Overflow::Block)
}

/// The service of a publish-subscribe throughput case: messages of the
/// case's size; a depth of about 1 MiB of them (4 to 4096 messages), or
/// the default 16 for `pubsub-publish` (the same pool at every size);
/// three subscriber slots whatever the case, so that 1 → 1 and 1 → 3 use
/// one layout; overflow "block": nothing is lost, and the slowest
/// subscriber sets the pace.
fn data_config(case: &Case) -> ServiceConfig {
    let depth = if case.transport == Transport::PubsubPublish {
        16
    } else {
        ((1 << 20) / case.size).clamp(4, 4096) as u32
    };
    ServiceConfig::new()
        .max_subscribers(3)
        .max_message_len(case.size as u64)
        .depth(depth)
        .overflow(Overflow::Block)
}

/// The request/response service of a latency case: one client, one call
/// in flight, requests and responses of the case's size.
fn rpc_latency_config(case: &Case) -> ServerConfig {
    ServerConfig::new()
        .max_clients(1)
        .max_in_flight(1)
        .max_request_len(case.size as u64)
        .max_response_len(case.size as u64)
}

/// How many calls each client of a request/response throughput case keeps
/// in flight (the socket baseline's clients as many): 8 (the service
/// default), fewer above 1 MiB so that the service stays within 128 MiB.
pub fn rpc_depth(size: usize) -> usize {
    ((8 << 20) / size).clamp(1, 8)
}

/// The request/response service of a throughput case.
pub fn rpc_throughput_config(case: &Case) -> ServerConfig {
    ServerConfig::new()
        .max_clients(RPC_CLIENTS as u32)
        .max_in_flight(rpc_depth(case.size) as u32)
        .max_request_len(case.size as u64)
        .max_response_len(case.size as u64)
}

/// The names of the services a case made, removed when dropped: by the
/// benchmark as soon as every peer has attached (sharing a named segment
/// and adopting it check the name) or once it has connected to the
/// service a peer made, or if setting up fails. From then on the services
/// have no name, so nothing is left in `/dev/shm` whatever happens (even
/// if every process is killed).
#[derive(Default)]
pub struct Names(Vec<String>);

impl Names {
    /// A name of its own for a service (this process's id and a count),
    /// removed with `self`.
    pub fn fresh(&mut self, what: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "msbench-{}-{}-{what}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.0.push(name.clone());
        name
    }

    /// Creates a publish-subscribe service under a name of its own.
    fn create_service(&mut self, what: &str, config: ServiceConfig) -> Result<Publisher, Failure> {
        Ok(Publisher::create(&self.fresh(what), config)?)
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for name in &self.0 {
            // An error means that the name is gone already (its last
            // holder took it): nothing is left to do.
            let _ = Segment::remove(name);
        }
    }
}

/// The benchmark's end of a link that is made once the peer is set up.
pub enum Later {
    /// TCP: accept the peer's connection.
    Accept(TcpListener),
    /// Request/response latency: connect to the service the peer serves.
    Connect(String),
}

impl Later {
    /// Makes the link (the peer has said it is set up).
    pub fn link(self) -> Result<Link, Failure> {
        match self {
            Later::Accept(listener) => accept_within(listener, Duration::from_secs(10)),
            Later::Connect(name) => {
                let mut client = Client::connect(&name)?;
                client.set_wait_strategy(WaitStrategy::Spin);
                Ok(Link::RpcClient(Box::new(client)))
            }
        }
    }
}

fn accept_within(listener: TcpListener, patience: Duration) -> Result<Link, Failure> {
    listener.set_nonblocking(true).map_err(io("listen"))?;
    let deadline = Instant::now() + patience;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(io("accept"))?;
                stream.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
                return Ok(Link::Stream(Stream::Tcp(stream)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if watch::expired(deadline) {
                    return Err(Failure::other("bench: the peer never connected"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(io("accept")(e)),
        }
    }
}

/// Sets up the benchmark's end of `case` and configures `cmds` (the peers:
/// one, or a publish-subscribe case's subscribers, or a request/response
/// case's clients) with the other end: shared segments, standard
/// input/output, arguments. Returns the link, what is left to do once the
/// peers are set up (TCP: accept; request/response latency: connect), and
/// the names of the services made (to drop once the peers have attached).
pub fn parent_side(
    case: &Case,
    cmds: &mut [Command],
) -> Result<(Link, Option<Later>, Names), Failure> {
    use Transport::*;
    let mut names = Names::default();
    let cmd = cmds
        .first_mut()
        .ok_or_else(|| Failure::other("bench: a case without a peer"))?;
    let (link, listener) = match case.transport {
        RawSpin | RawFutex | RawSpinFutex => {
            let segment = Segment::create(4096)?;
            cmd.try_share("words", &segment)?;
            (Link::Words(segment.map(..)?), None)
        }
        ChannelSpin | ChannelSpinPark | ChannelPark | RpcChannelsSpin => {
            let mut tx = Sender::create(4096)?;
            let mut rx = Receiver::create(4096)?;
            tx.set_wait_strategy(wait_strategy(case.transport));
            rx.set_wait_strategy(wait_strategy(case.transport));
            cmd.try_share("ping", tx.segment())?;
            cmd.try_share("pong", rx.segment())?;
            (Link::Channels(tx, rx), None)
        }
        ChannelWakeup | WaitsetWakeup | AsyncWakeup | RawWakeup | RawWakeupWaitv => (
            Link::Wakeup(Box::new(super::waitset::WakeLink::parent(
                cmd,
                match case.transport {
                    WaitsetWakeup => Waiting::Set,
                    AsyncWakeup => Waiting::Async,
                    RawWakeup => Waiting::Raw,
                    RawWakeupWaitv => Waiting::RawMany,
                    _ => Waiting::Alone,
                },
            )?)),
            None,
        ),
        ChannelSend | ChannelReserve | ChannelRecvAsync => {
            let rx = Receiver::create(ring_for(case))?;
            cmd.try_share("data", rx.segment())?;
            (Link::ChannelIn(rx), None)
        }
        Pipe => {
            let (child_in, to_child) = cloexec_pipe().map_err(io("pipe"))?;
            let (from_child, child_out) = cloexec_pipe().map_err(io("pipe"))?;
            cmd.stdin(Stdio::from(OwnedFd::from(child_in)))
                .stdout(Stdio::from(OwnedFd::from(child_out)));
            let to_child = (case.kind == Kind::Latency).then_some(to_child);
            (Link::Stream(Stream::Pipe(to_child, from_child)), None)
        }
        UnixSocket => {
            let (mine, theirs) = UnixStream::pair().map_err(io("socketpair"))?;
            cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
            (Link::Stream(Stream::Unix(mine)), None)
        }
        Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1"))?;
            let port = listener.local_addr().map_err(io("local_addr"))?.port();
            cmd.arg("--port").arg(port.to_string());
            // The link is made when the peer connects (after spawning).
            (Link::None, Some(Later::Accept(listener)))
        }
        PubsubSpin => {
            let mut ping = names.create_service("ping", ping_config())?;
            // A service is made by its first publisher: make the pong
            // service, subscribe to it, and leave its only publisher slot
            // to the peer.
            let pong_creator = names.create_service("pong", ping_config())?;
            let mut pong = Subscriber::attach(pong_creator.segment())?;
            cmd.try_share("ping", ping.segment())?;
            cmd.try_share("pong", pong_creator.segment())?;
            drop(pong_creator);
            ping.set_wait_strategy(WaitStrategy::Spin);
            pong.set_wait_strategy(WaitStrategy::Spin);
            (Link::PubSub(Box::new(ping), Box::new(pong)), None)
        }
        Pubsub1To1 | Pubsub1To3 | Pubsub1To1Spin | Pubsub1To3Spin | PubsubPublish => {
            let mut publisher = names.create_service("data", data_config(case))?;
            publisher.set_wait_strategy(pubsub_strategy(case.transport));
            for cmd in cmds {
                cmd.try_share("data", publisher.segment())?;
            }
            (Link::PubOut(Box::new(publisher)), None)
        }
        RpcSpin => {
            // The peer serves (a server is its process's): it creates the
            // service under this name; the benchmark connects once the
            // peer is set up.
            let name = names.fresh("rpc");
            cmd.arg("--service").arg(&name);
            (Link::None, Some(Later::Connect(name)))
        }
        RpcPipeline => {
            let server = Server::create(&names.fresh("rpc"), rpc_throughput_config(case))?;
            for cmd in cmds {
                cmd.try_share("rpc", server.segment())?;
            }
            (Link::RpcServer(Box::new(server)), None)
        }
        RpcRawPipeline | RpcRawPipelineSpin => {
            let segment = Segment::create(RawRings::new(case.size).len() as u64)?;
            for cmd in cmds {
                cmd.try_share("words", &segment)?;
            }
            (Link::Words(segment.map(..)?), None)
        }
        RpcUnixSocket => {
            let mut mine = Vec::with_capacity(cmds.len());
            for cmd in cmds {
                let (ours, theirs) = UnixStream::pair().map_err(io("socketpair"))?;
                cmd.stdin(Stdio::from(OwnedFd::from(theirs)));
                mine.push(ours);
            }
            (Link::Sockets(mine), None)
        }
        Memcpy | RpcOneThread => (Link::None, None),
    };
    Ok((link, listener, names))
}

/// A pipe (read end, write end) whose ends children do not inherit.
/// (`pipe2(O_CLOEXEC)` is not on every Unix: the flag is set after.)
fn cloexec_pipe() -> std::io::Result<(File, File)> {
    let (reader, writer) = rustix::pipe::pipe()?;
    for end in [&reader, &writer] {
        rustix::io::fcntl_setfd(end, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok((File::from(reader), File::from(writer)))
}

/// What the benchmark gave a peer on its command line.
pub struct Given {
    /// TCP: the port to connect to.
    pub port: Option<u16>,
    /// Request/response latency: the name of the service to create.
    pub service: Option<String>,
}

/// Sets up the peer's end of `case` from what the benchmark gave it.
pub fn peer_side(case: &Case, given: Given) -> Result<Link, Failure> {
    use Transport::*;
    Ok(match case.transport {
        RawSpin | RawFutex | RawSpinFutex | RpcRawPipeline | RpcRawPipelineSpin => {
            Link::Words(Segment::inherited("words")?.map(..)?)
        }
        ChannelSpin | ChannelSpinPark | ChannelPark | RpcChannelsSpin => {
            let mut rx = Receiver::attach(&Segment::inherited("ping")?)?;
            let mut tx = Sender::attach(&Segment::inherited("pong")?)?;
            rx.set_wait_strategy(wait_strategy(case.transport));
            tx.set_wait_strategy(wait_strategy(case.transport));
            Link::Channels(tx, rx)
        }
        ChannelWakeup | WaitsetWakeup | AsyncWakeup | RawWakeup | RawWakeupWaitv => {
            Link::Wakeup(Box::new(super::waitset::WakeLink::peer(matches!(
                case.transport,
                RawWakeup | RawWakeupWaitv
            ))?))
        }
        ChannelSend | ChannelReserve | ChannelRecvAsync => {
            Link::ChannelOut(Sender::attach(&Segment::inherited("data")?)?)
        }
        Pipe => {
            let stdin = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(io("dup"))?;
            let stdout = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(io("dup"))?;
            // The process's own stdout is the pipe too: pointed elsewhere,
            // so that closing the stream ends the pipe for the benchmark
            // (this process lives on after its part, for the probe after
            // the case).
            let null = File::options()
                .write(true)
                .open("/dev/null")
                .map_err(io("open /dev/null"))?;
            rustix::stdio::dup2_stdout(&null).map_err(|e| io("dup2")(e.into()))?;
            Link::Stream(Stream::Pipe(Some(File::from(stdout)), File::from(stdin)))
        }
        UnixSocket | RpcUnixSocket => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(io("dup"))?;
            Link::Stream(Stream::Unix(UnixStream::from(fd)))
        }
        Tcp => {
            let port = given
                .port
                .ok_or_else(|| Failure::usage("bench-peer: tcp needs --port"))?;
            let stream = TcpStream::connect(("127.0.0.1", port)).map_err(io("connect"))?;
            stream.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
            Link::Stream(Stream::Tcp(stream))
        }
        PubsubSpin => {
            let mut rx = Subscriber::attach(&Segment::inherited("ping")?)?;
            let mut tx = Publisher::attach(&Segment::inherited("pong")?)?;
            rx.set_wait_strategy(WaitStrategy::Spin);
            tx.set_wait_strategy(WaitStrategy::Spin);
            Link::PubSub(Box::new(tx), Box::new(rx))
        }
        Pubsub1To1 | Pubsub1To3 | Pubsub1To1Spin | Pubsub1To3Spin | PubsubPublish => {
            let mut rx = Subscriber::attach(&Segment::inherited("data")?)?;
            rx.set_wait_strategy(pubsub_strategy(case.transport));
            Link::SubIn(Box::new(rx))
        }
        RpcSpin => {
            let name = given
                .service
                .ok_or_else(|| Failure::usage("bench-peer: rpc-spin needs --service"))?;
            let server = Server::create(&name, rpc_latency_config(case))?;
            server.set_wait_strategy(WaitStrategy::Spin);
            Link::RpcServer(Box::new(server))
        }
        RpcPipeline => {
            let mut client = Client::attach(&Segment::inherited("rpc")?)?;
            // As the socket baseline's clients, which block in `read`.
            client.set_wait_strategy(WaitStrategy::Park);
            Link::RpcClient(Box::new(client))
        }
        Memcpy | RpcOneThread => Link::None,
    })
}

/// Waits until `accept(word)`: spins `spins` times, then sleeps on a futex
/// with `waiting` set (the channel's handshake, in raw form). Returns the
/// accepted value; gives up after `deadline`.
pub fn wait_for(
    word: &AtomicU32,
    waiting: &AtomicU32,
    accept: impl Fn(u32) -> bool,
    spins: u32,
    deadline: Instant,
) -> Result<u32, Failure> {
    let gone = || Failure::other("bench: the other side stopped answering");
    let mut n = 0u32;
    while n < spins {
        let v = word.load(Ordering::Acquire);
        if accept(v) {
            return Ok(v);
        }
        std::hint::spin_loop();
        n += 1;
        if n % 65_536 == 0 && watch::expired(deadline) {
            return Err(gone());
        }
    }
    loop {
        let current = word.load(Ordering::Acquire);
        if accept(current) {
            return Ok(current);
        }
        waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if word.load(Ordering::Acquire) == current {
            memshare::sync::wait(word, current, Duration::from_millis(50));
        }
        waiting.store(0, Ordering::Relaxed);
        if watch::expired(deadline) {
            return Err(gone());
        }
    }
}

/// How long each raw transport spins before it sleeps (a raw pipelining
/// client: for its oldest response).
pub fn raw_spins(t: Transport) -> u32 {
    match t {
        Transport::RawSpin => u32::MAX,
        Transport::RawFutex | Transport::RpcRawPipeline => 0,
        _ => RAW_SPINS,
    }
}

/// Stores `value` and wakes the other side if it is (or may be) asleep.
fn publish(word: &AtomicU32, waiting: &AtomicU32, value: u32, always_wake: bool) {
    word.store(value, Ordering::Release);
    if always_wake {
        memshare::sync::wake(word, 1);
        return;
    }
    fence(Ordering::SeqCst);
    if waiting.load(Ordering::Relaxed) != 0 {
        memshare::sync::wake(word, 1);
    }
}

/// Publishes `value` the way raw transport `t` does: a plain store for the
/// spin ping-pong, always a wake for the futex one, a wake only if the
/// other side is asleep for spin-then-futex.
fn raw_publish(t: Transport, word: &AtomicU32, waiting: &AtomicU32, value: u32) {
    match t {
        Transport::RawSpin => word.store(value, Ordering::Release),
        Transport::RawFutex => publish(word, waiting, value, true),
        _ => publish(word, waiting, value, false),
    }
}

/// Raw ping-pong words of a view.
fn words(view: &ViewMut) -> Result<[&AtomicU32; 4], Failure> {
    Ok([
        view.atomic_u32(PING)?,
        view.atomic_u32(PONG)?,
        view.atomic_u32(PING_WAITING)?,
        view.atomic_u32(PONG_WAITING)?,
    ])
}

/// The value that tells a raw ponger to stop.
const STOP: u32 = u32::MAX;

/// The error of a ping-pong answered with another message than sent.
fn wrong_answer() -> Failure {
    Failure::other("bench: the peer answered the wrong message")
}

impl Link {
    /// One round trip from the benchmark's side, message number `seq`
    /// (never `u32::MAX`): `msg` (the case's size, at least 8 bytes) goes
    /// with `seq` in its first 8 bytes, and comes back.
    pub fn round_trip(
        &mut self,
        t: Transport,
        seq: u32,
        msg: &mut [u8],
        deadline: Instant,
    ) -> Result<(), Failure> {
        let stamp = u64::from(seq).to_le_bytes();
        msg[..8].copy_from_slice(&stamp);
        match self {
            Link::Words(view) => {
                let [ping, pong, ping_waiting, pong_waiting] = words(view)?;
                raw_publish(t, ping, ping_waiting, seq);
                wait_for(pong, pong_waiting, |v| v == seq, raw_spins(t), deadline)?;
                Ok(())
            }
            Link::Channels(tx, rx) => {
                tx.send(msg)?;
                let reply = rx.recv()?;
                if *reply != *msg {
                    return Err(wrong_answer());
                }
                Ok(())
            }
            Link::PubSub(tx, rx) => {
                tx.publish_copy(msg)?;
                let reply = rx.recv()?;
                if *reply != *msg {
                    return Err(wrong_answer());
                }
                Ok(())
            }
            Link::RpcClient(client) => {
                let reply = client.call(msg)?;
                if *reply != *msg {
                    return Err(wrong_answer());
                }
                Ok(())
            }
            Link::Stream(s) => {
                s.write_all(msg).map_err(io("write"))?;
                s.read_exact(msg).map_err(io("read"))?;
                if msg[..8] != stamp {
                    return Err(wrong_answer());
                }
                Ok(())
            }
            _ => Err(Failure::other("bench: not a latency link")),
        }
    }

    /// Tells the peer's ponger to stop.
    pub fn stop_pong(&mut self, t: Transport) -> Result<(), Failure> {
        match self {
            Link::Words(view) => {
                let [ping, _, ping_waiting, _] = words(view)?;
                raw_publish(t, ping, ping_waiting, STOP);
                memshare::sync::wake(ping, 1);
                Ok(())
            }
            Link::Channels(tx, _) => Ok(tx.send(&[])?),
            Link::PubSub(tx, _) => Ok(tx.publish_copy(&[])?),
            Link::RpcClient(client) => {
                client.call(&[])?;
                Ok(())
            }
            Link::Wakeup(link) => link.stop(),
            Link::Stream(s) => {
                s.close_write();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The peer's side of the ping-pong: echoes each message (at most
    /// `size` bytes) until told to stop.
    pub fn pong(&mut self, t: Transport, size: usize, deadline: Instant) -> Result<(), Failure> {
        let mut msg = vec![0u8; size];
        match self {
            Link::Words(view) => {
                let [ping, pong, ping_waiting, pong_waiting] = words(view)?;
                let mut last = 0;
                loop {
                    let seq = wait_for(ping, ping_waiting, |v| v != last, raw_spins(t), deadline)?;
                    if seq == STOP {
                        return Ok(());
                    }
                    last = seq;
                    raw_publish(t, pong, pong_waiting, seq);
                }
            }
            Link::Channels(tx, rx) => loop {
                let n = {
                    let got = rx.recv()?;
                    if got.is_empty() {
                        return Ok(());
                    }
                    let n = got.len().min(size);
                    msg[..n].copy_from_slice(&got[..n]);
                    n
                };
                tx.send(&msg[..n])?;
            },
            Link::PubSub(tx, rx) => loop {
                let n = {
                    let got = rx.recv()?;
                    if got.is_empty() {
                        return Ok(());
                    }
                    let n = got.len().min(size);
                    msg[..n].copy_from_slice(&got[..n]);
                    n
                };
                tx.publish_copy(&msg[..n])?;
            },
            Link::Wakeup(link) => link.send_stamped(deadline),
            Link::RpcServer(server) => loop {
                let request = server.recv()?;
                if request.is_empty() {
                    request.respond(&[])?;
                    return Ok(());
                }
                // Echoed in place: the request read, the response written.
                let len = request.len();
                let mut out = request.loan_response(len)?;
                let (request, response) = out.split();
                response.copy_from_slice(request);
                out.send()?;
            },
            Link::Stream(s) => loop {
                match s.read_exact(&mut msg) {
                    Ok(()) => s.write_all(&msg).map_err(io("write"))?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(io("read")(e)),
                }
            },
            _ => Err(Failure::other("bench-peer: not a latency link")),
        }
    }
}
