//! The request/response throughput cases: the benchmark serves one thread,
//! each peer is a client pipelining calls. memshare's `Server` and
//! `Client`, and the baseline: a Unix-socket server (one thread, epoll over
//! the clients' sockets) whose clients pipeline as deep over a
//! `UnixStream`. Both servers echo every request, both kinds of client
//! read every byte of every response.

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use memshare::rpc::{Client, Server};

use super::case::Case;
use super::link::{io, raw_spins, rpc_depth, rpc_throughput_config, Link, Names, Stream};
use super::run::touch;
use super::watch;
use crate::fail::Failure;

/// What the server of a request/response throughput case counted: the
/// calls it answered per client (end markers not counted), and the time
/// from its start to the last client's end marker.
pub struct Served {
    pub calls: Vec<u64>,
    pub elapsed: Duration,
}

/// The benchmark's side: serves every client (echoes each request) until
/// each has sent its end marker: an empty request, or the end of its
/// stream. Gives up after `deadline`.
pub fn serve_all(link: &mut Link, case: Case, deadline: Instant) -> Result<Served, Failure> {
    let clients = case.transport.peers();
    match link {
        Link::RpcServer(server) => serve_memshare(server, clients, deadline),
        Link::Sockets(streams) => serve_sockets(streams, case.size, deadline),
        Link::Words(view) => super::raw_rpc::serve(view, case.size, deadline),
        _ => Err(Failure::other("bench: not a serving link")),
    }
}

fn serve_memshare(server: &Server, clients: usize, deadline: Instant) -> Result<Served, Failure> {
    let start = Instant::now();
    let mut calls = vec![0u64; clients];
    let mut done = 0;
    while done < clients {
        // (One load per call: the others may call on long after one died.)
        if watch::peer_failed() {
            return Err(Failure::other("bench: a client failed"));
        }
        // Without a clock read while requests keep coming.
        let request = match server.try_recv()? {
            Some(request) => request,
            // Looked at again every slice: a client that was killed
            // sends no end marker.
            None => loop {
                match server.recv_timeout(watch::slice(deadline)) {
                    Ok(request) => break request,
                    Err(memshare::Error::TimedOut { .. }) if !watch::expired(deadline) => {}
                    Err(e) => return Err(e.into()),
                }
            },
        };
        let count = calls
            .get_mut(request.client().slot() as usize)
            .ok_or_else(|| Failure::other("bench: a request from a client slot beyond 4"))?;
        if request.is_empty() {
            request.respond(&[])?;
            done += 1;
            continue;
        }
        // Echoed in place: the request read, the response written.
        let len = request.len();
        let mut out = request.loan_response(len)?;
        let (request, response) = out.split();
        response.copy_from_slice(request);
        out.send()?;
        *count += 1;
    }
    Ok(Served {
        calls,
        elapsed: start.elapsed(),
    })
}

/// One client's socket as the socket server sees it.
struct Conn {
    /// Bytes read and not yet answered (less than one request after each
    /// read): room for every request the client may have in flight.
    input: Vec<u8>,
    filled: usize,
    /// Responses not yet written, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    /// Whether the server waits for room to write (the socket is polled
    /// for writing too).
    writing: bool,
    calls: u64,
}

/// The baseline server: one thread, nonblocking sockets, epoll (level
/// triggered) over them. A readable socket is read once into its buffer;
/// every whole request in it is echoed into its output, which is written
/// at once (what does not fit waits until the socket is writable).
fn serve_sockets(
    streams: &mut [UnixStream],
    size: usize,
    deadline: Instant,
) -> Result<Served, Failure> {
    for s in streams.iter() {
        s.set_nonblocking(true).map_err(io("set_nonblocking"))?;
    }
    let mut poller = Poller::new(streams).map_err(io("epoll"))?;
    let mut conns: Vec<Conn> = streams
        .iter()
        .map(|_| Conn {
            input: vec![0; rpc_depth(size) * size],
            filled: 0,
            output: Vec::with_capacity(rpc_depth(size) * size),
            sent: 0,
            writing: false,
            calls: 0,
        })
        .collect();
    let start = Instant::now();
    let mut open = streams.len();
    let mut elapsed = Duration::ZERO;
    let mut ready = Vec::with_capacity(streams.len());
    while open > 0 {
        if watch::expired(deadline) {
            return Err(Failure::other("bench: a client stopped calling"));
        }
        poller
            .wait(streams, Duration::from_millis(100), &mut ready)
            .map_err(io("epoll_wait"))?;
        for r in &ready {
            let (s, c) = (&mut streams[r.index], &mut conns[r.index]);
            if r.readable {
                if c.filled == c.input.len() {
                    return Err(Failure::other(
                        "bench: a client sent more requests than it may have in flight",
                    ));
                }
                match s.read(&mut c.input[c.filled..]) {
                    Ok(0) => {
                        // Its end marker: every response was read.
                        poller.remove(streams, r.index).map_err(io("epoll_ctl"))?;
                        open -= 1;
                        elapsed = start.elapsed();
                        continue;
                    }
                    Ok(n) => {
                        c.filled += n;
                        let whole = c.filled / size * size;
                        c.output.extend_from_slice(&c.input[..whole]);
                        c.calls += (whole / size) as u64;
                        c.input.copy_within(whole..c.filled, 0);
                        c.filled -= whole;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io("read")(e)),
                }
            }
            while c.sent < c.output.len() {
                match s.write(&c.output[c.sent..]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(io("write")(e)),
                }
            }
            if c.sent == c.output.len() {
                c.output.clear();
                c.sent = 0;
            }
            let writing = c.sent < c.output.len();
            if writing != c.writing {
                c.writing = writing;
                poller
                    .want_writable(streams, r.index, writing)
                    .map_err(io("epoll_ctl"))?;
            }
        }
    }
    Ok(Served {
        calls: conns.iter().map(|c| c.calls).collect(),
        elapsed,
    })
}

/// A socket found ready by [`Poller::wait`].
struct Ready {
    index: usize,
    /// Readable, or closed or failed (a read says which).
    readable: bool,
}

/// Which of the server's sockets are ready: epoll on Linux (the baseline
/// the numbers are about), poll(2) on the other Unix systems.
#[cfg(target_os = "linux")]
struct Poller {
    epoll: std::os::fd::OwnedFd,
    events: Vec<rustix::event::epoll::Event>,
}

#[cfg(target_os = "linux")]
impl Poller {
    fn new(streams: &[UnixStream]) -> std::io::Result<Poller> {
        use rustix::event::epoll;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        for (i, s) in streams.iter().enumerate() {
            epoll::add(
                &epoll,
                s,
                epoll::EventData::new_u64(i as u64),
                epoll::EventFlags::IN,
            )?;
        }
        Ok(Poller {
            epoll,
            events: Vec::with_capacity(streams.len()),
        })
    }

    /// Polls socket `i` for room to write too (`on`), or no more.
    fn want_writable(&mut self, streams: &[UnixStream], i: usize, on: bool) -> std::io::Result<()> {
        use rustix::event::epoll::{self, EventFlags};
        let flags = if on {
            EventFlags::IN | EventFlags::OUT
        } else {
            EventFlags::IN
        };
        Ok(epoll::modify(
            &self.epoll,
            &streams[i],
            epoll::EventData::new_u64(i as u64),
            flags,
        )?)
    }

    /// Polls socket `i` no more.
    fn remove(&mut self, streams: &[UnixStream], i: usize) -> std::io::Result<()> {
        Ok(rustix::event::epoll::delete(&self.epoll, &streams[i])?)
    }

    /// Waits up to `timeout` for sockets to be ready; `ready` lists them
    /// (none after a timeout or a signal).
    fn wait(
        &mut self,
        _streams: &[UnixStream],
        timeout: Duration,
        ready: &mut Vec<Ready>,
    ) -> std::io::Result<()> {
        use rustix::event::epoll::{self, EventFlags};
        ready.clear();
        let timeout = rustix::event::Timespec::try_from(timeout)
            .map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut self.events),
            Some(&timeout),
        ) {
            Err(rustix::io::Errno::INTR) => return Ok(()),
            other => other?,
        };
        ready.extend(self.events.drain(..).map(|e| {
            // (Copied out: the event is a packed struct.)
            let flags = e.flags;
            Ready {
                index: e.data.u64() as usize,
                readable: flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR),
            }
        }));
        Ok(())
    }
}

/// poll(2) over the sockets still open.
#[cfg(not(target_os = "linux"))]
struct Poller {
    /// Per socket: what it is polled for (`None`: no more).
    interest: Vec<Option<rustix::event::PollFlags>>,
}

#[cfg(not(target_os = "linux"))]
impl Poller {
    fn new(streams: &[UnixStream]) -> std::io::Result<Poller> {
        Ok(Poller {
            interest: vec![Some(rustix::event::PollFlags::IN); streams.len()],
        })
    }

    fn want_writable(&mut self, _: &[UnixStream], i: usize, on: bool) -> std::io::Result<()> {
        use rustix::event::PollFlags;
        self.interest[i] = Some(if on {
            PollFlags::IN | PollFlags::OUT
        } else {
            PollFlags::IN
        });
        Ok(())
    }

    fn remove(&mut self, _: &[UnixStream], i: usize) -> std::io::Result<()> {
        self.interest[i] = None;
        Ok(())
    }

    fn wait(
        &mut self,
        streams: &[UnixStream],
        timeout: Duration,
        ready: &mut Vec<Ready>,
    ) -> std::io::Result<()> {
        use rustix::event::{PollFd, PollFlags};
        ready.clear();
        let timeout = rustix::event::Timespec::try_from(timeout)
            .map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
        let polled: Vec<usize> = (0..streams.len())
            .filter(|&i| self.interest[i].is_some())
            .collect();
        let mut fds: Vec<PollFd<'_>> = polled
            .iter()
            .filter_map(|&i| Some(PollFd::new(&streams[i], self.interest[i]?)))
            .collect();
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Err(rustix::io::Errno::INTR) => return Ok(()),
            other => other?,
        };
        for (fd, &index) in fds.iter().zip(&polled) {
            let got = fd.revents();
            if !got.is_empty() {
                ready.push(Ready {
                    index,
                    readable: got.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
                });
            }
        }
        Ok(())
    }
}

/// A client (a peer): pipelines calls of `size` bytes for `duration`
/// (keeps as many in flight as the service allows, reads every byte of
/// each response), then waits for the rest and sends its end marker.
/// (`index`: which client this is.)
pub fn call_all(
    link: &mut Link,
    case: Case,
    index: usize,
    duration: Duration,
) -> Result<(), Failure> {
    let size = case.size;
    let depth = rpc_depth(size);
    let check_every = if size >= 65_536 { 1 } else { 64 };
    let end = Instant::now() + duration;
    let mut acc = 0u64;
    match link {
        Link::RpcClient(client) => {
            let request: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut pending = VecDeque::with_capacity(depth);
            let mut calls = 0u64;
            let mut next_check = check_every;
            loop {
                // As many new requests as responses came, published together
                // (as the socket client writes them in one `write`).
                let mut batch = client.batch();
                while pending.len() < depth {
                    pending.push_back(batch.send_request(&request)?);
                }
                drop(batch);
                let oldest = pending.pop_front().expect("a call is in flight");
                acc ^= touch(&client.receive_response(&oldest)?);
                calls += 1;
                // Then every response that has come.
                while let Some(next) = pending.front() {
                    match client.try_receive_response(next)? {
                        Some(response) => acc ^= touch(&response),
                        None => break,
                    }
                    pending.pop_front();
                    calls += 1;
                }
                if calls >= next_check {
                    next_check = calls + check_every;
                    if Instant::now() > end {
                        break;
                    }
                }
            }
            for p in pending {
                acc ^= touch(&client.receive_response(&p)?);
            }
            client.call(&[])?;
        }
        Link::Stream(s) => socket_calls(s, size, depth, end, &mut acc)?,
        Link::Words(view) => {
            let spins = raw_spins(case.transport);
            super::raw_rpc::call(view, index, size, spins, duration)?
        }
        _ => return Err(Failure::other("bench-peer: not a calling link")),
    }
    black_box(acc);
    Ok(())
}

/// A socket client: `depth` requests written at once; then each read takes
/// what responses have come, and as many new requests go in one write;
/// after `end`, the last responses are read and the stream closed for
/// writing (the end marker).
fn socket_calls(
    s: &mut Stream,
    size: usize,
    depth: usize,
    end: Instant,
    acc: &mut u64,
) -> Result<(), Failure> {
    let requests: Vec<u8> = (0..depth * size).map(|i| (i % size) as u8).collect();
    let mut buf = vec![0u8; depth * size];
    s.write_all(&requests).map_err(io("write"))?;
    let mut in_flight = depth;
    // Bytes of a response read in part.
    let mut partial = 0;
    let mut ending = false;
    while in_flight > 0 {
        let n = s.read(&mut buf).map_err(io("read"))?;
        if n == 0 {
            return Err(Failure::other("bench-peer: the server closed the socket"));
        }
        *acc ^= touch(&buf[..n]);
        partial += n;
        let answered = partial / size;
        partial %= size;
        in_flight -= answered;
        ending = ending || Instant::now() > end;
        if answered > 0 && !ending {
            s.write_all(&requests[..answered * size])
                .map_err(io("write"))?;
            in_flight += answered;
        }
    }
    s.close_write();
    Ok(())
}

/// `rpc-one-thread`: a client and the server in this one thread. The
/// client sends `depth` calls of the case's size as one batch, the server
/// takes and echoes each, the client receives them (and reads every byte),
/// for `duration`: the library's own CPU cost of a call, every line in this
/// CPU's cache.
pub fn one_thread(case: Case, duration: Duration) -> Result<Served, Failure> {
    let mut names = Names::default();
    let name = names.fresh("rpc");
    let server = Server::create(&name, rpc_throughput_config(&case))?;
    let mut client = Client::connect(&name)?;
    drop(names);
    let depth = rpc_depth(case.size);
    let request: Vec<u8> = (0..case.size).map(|i| i as u8).collect();
    let missing = || Failure::other("bench: a call sent in this thread was not there");
    let mut pending = VecDeque::with_capacity(depth);
    let mut acc = 0u64;
    let mut calls = 0u64;
    let start = Instant::now();
    loop {
        let mut batch = client.batch();
        for _ in 0..depth {
            pending.push_back(batch.send_request(&request)?);
        }
        drop(batch);
        for _ in 0..depth {
            let request = server.try_recv()?.ok_or_else(missing)?;
            let len = request.len();
            let mut out = request.loan_response(len)?;
            let (request, response) = out.split();
            response.copy_from_slice(request);
            out.send()?;
        }
        while let Some(p) = pending.pop_front() {
            acc ^= touch(&client.try_receive_response(&p)?.ok_or_else(missing)?);
        }
        calls += depth as u64;
        // A clock read every 64 calls or more.
        if calls % 64 < depth as u64 && start.elapsed() > duration {
            break;
        }
    }
    black_box(acc);
    Ok(Served {
        calls: vec![calls],
        elapsed: start.elapsed(),
    })
}
