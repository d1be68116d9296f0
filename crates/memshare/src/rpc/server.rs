//! The server: takes requests from every client's ring in turn, answers
//! each in the slot it came in, and keeps the client regions (resets the
//! region of a client that left or died, once it owes it nothing).

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{
    self, Header, CLIENT_ATTACHED, CLIENT_EVICTED, CLIENT_FREE, SERVER_ATTACHED, SERVER_DETACHED,
    SERVER_LOCK_BYTE, SLOT_FREE,
};
use super::protocol::{self, Take};
use super::service::{Role, Service};
use super::{ClientId, ServerConfig};
use crate::endpoint::{new_instance, Link, Liveness, Routes};
use crate::primitive::Ordering;
use crate::sys::ByteLock;
use crate::waiting::{Rounds, Step, WaitStrategy, LIVENESS_INTERVAL};
use crate::{Error, Result, Segment};

/// The serving end of a request/response service: one per service, and
/// many [`Client`](super::Client)s.
///
/// [`Server::recv`] hands out requests as [`Request`] guards, fairly
/// across clients; several may be held at once and answered in any order
/// ([`Request::respond`], or zero-copy with [`Request::loan_response`]).
/// Each response reaches the client and request it answers. A `Server` is
/// used from one thread (it is `Send`, not `Sync`).
///
/// ```
/// use memshare::rpc::{Client, Server, ServerConfig};
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-rpc-server-{}", std::process::id());
/// let server = Server::create(&name, ServerConfig::new())?;
/// let mut client = Client::connect(&name)?; // usually another process
/// let pending = client.send_request(b"2+2")?;
///
/// let request = server.recv()?;
/// assert_eq!(&*request, b"2+2");
/// request.respond(b"4")?;
///
/// assert_eq!(&*client.receive_response(&pending)?, b"4");
/// # Ok(()) }
/// ```
pub struct Server {
    service: Service,
    instance: u64,
    strategy: Cell<WaitStrategy>,
    /// What the server knows of each client region.
    clients: RefCell<Vec<Known>>,
    liveness: RefCell<Liveness>,
    /// Where the next look for requests starts (round robin).
    next: Cell<u32>,
    /// Receives since the last upkeep look at the time.
    polls: Cell<u32>,
    /// When the last upkeep ended.
    last_upkeep: Cell<Instant>,
    /// What the wait sets this server is a member of share with it: per
    /// client region, what it knows (`Known`'s instance, tail, and whether
    /// it serves the client).
    link: Arc<Link<Box<[Mirror]>>>,
    _routes: Routes,
    _lock: ByteLock,
}

/// What the server knows of one client region, as a wait set reads it
/// (from another thread, maybe): a copy of `Known`'s instance and tail,
/// and whether the client was evicted or seen dead. The set looks at the
/// head of a client that is neither against this tail, as `nothing_pushed`
/// does, and watches for the death of every client not seen dead: an
/// evicted client's region too is reset only once the server sees it
/// gone. A copy read while the server changes it can only make the set
/// report the server when it has nothing, or late by at most a park
/// slice.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    pub(crate) instance: AtomicU64,
    pub(crate) tail: AtomicU64,
    pub(crate) evicted: AtomicBool,
    pub(crate) dead: AtomicBool,
    /// Its next request waits for a slot an earlier instance of the
    /// region held (`protocol::Ring::stale`): not ready until then.
    pub(crate) blocked: AtomicBool,
}

/// What the server knows of one client region.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The client instance this is about (0: none yet).
    instance: u64,
    /// Its ring as far as the server read it: requests taken (`tail`),
    /// entries read and not taken yet, slots held.
    ring: protocol::Ring,
    /// Requests taken from the region and not yet answered (or dropped),
    /// whichever instance they came from: kept when the instance changes
    /// (only a hostile client changes it under requests it is owed), so
    /// that the region is not reset while the server holds slots of it.
    owed: u32,
    /// Requests answered (with a response).
    served: u64,
    /// Its process was seen dead.
    dead: bool,
    /// It broke the protocol: not served any more.
    evicted: Option<&'static str>,
}

impl Known {
    /// What the server knows of a new client `instance` (0: none) in the
    /// region: nothing yet, but the slots it still holds and the requests
    /// it owes (taken from an earlier instance, not yet answered).
    fn renew(&mut self, instance: u64) {
        let mut ring = std::mem::take(&mut self.ring);
        ring.restart();
        *self = Known {
            instance,
            ring,
            owed: self.owed,
            ..Known::default()
        };
    }
}

/// One client as [`Server::clients`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientInfo {
    /// Which client.
    pub id: ClientId,
    /// Its process id, as it wrote it (informational).
    pub pid: u32,
    /// Requests handed out by [`Server::recv`] and not answered yet.
    pub owed: u32,
    /// Requests this server answered with a response.
    pub served: u64,
    /// Why the server stopped serving it, if it did (it broke the
    /// protocol; its calls fail until it reconnects).
    pub evicted: Option<&'static str>,
}

impl Server {
    /// Creates the service `name` with `config` and attaches as its
    /// server. If the name holds a service whose server is gone (it
    /// crashed, or left while clients still held the service), that
    /// service is retired (its clients get `Disconnected`) and a new one
    /// is created under the name.
    ///
    /// Fails with [`Error::AlreadyAttached`] if a live server serves the
    /// name, [`Error::AlreadyExists`] if the name holds something else,
    /// and [`Error::OutOfRange`] if `config` breaks a limit.
    pub fn create(name: &str, config: ServerConfig) -> Result<Server> {
        let geometry = config.geometry(name)?;
        for _ in 0..2000 {
            match Server::create_new(name, &geometry) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            match retire_dead(name)? {
                Retired::Done | Retired::Gone => {}
                Retired::Busy => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        // Still there: a service being created or retired all along. On
        // Windows, where a name lives as long as its holders, that is a
        // retired service whose old clients have not dropped it yet.
        Err(Error::already_exists_because(
            name,
            std::io::Error::other(
                "for 2 s the name held a service being created or retired (on Windows a \
                 retired service keeps its name until its old clients, which still hold it, \
                 let go)",
            ),
        ))
    }

    fn create_new(name: &str, geometry: &layout::Geometry) -> Result<Server> {
        let segment = match Segment::options()
            .reserve(true)
            .create_named(name, geometry.total_len)
        {
            // Systems that cannot reserve make it sparse.
            Err(Error::Unsupported { .. }) => Segment::create_named(name, geometry.total_len)?,
            other => other?,
        };
        let view = segment.map(..layout::HEADER_LEN)?;
        // SAFETY: the first page of a new segment, page-aligned; `Header`
        // is atomics and padding; nobody else can use it before the magic.
        let h: &Header = unsafe { &*view.as_mut_ptr().cast::<Header>() };
        geometry.store(h);
        let lock = segment
            .object()
            .lock_byte(SERVER_LOCK_BYTE)?
            .ok_or_else(|| Error::AlreadyAttached {
                object: format!("service {name:?}"),
                side: "server",
            })?;
        let server = Server::attach(&segment, lock, true)?;
        // Publish: whoever sees the magic (Acquire) sees the header and the
        // server's block.
        h.fixed
            .magic
            .store(u64::from_le_bytes(layout::MAGIC), Ordering::Release);
        view.check_intact()?;
        Ok(server)
    }

    fn attach(segment: &Segment, lock: ByteLock, creating: bool) -> Result<Server> {
        let service = if creating {
            Service::open_unpublished(segment, Role::Server)?
        } else {
            Service::open(segment, Role::Server)?
        };
        let instance = new_instance();
        let h = service.header();
        let n = service.geometry.shape.max_clients;
        // It parks on the server's word and wakes every client's.
        let mut routes = Routes::default();
        routes.parks(segment, h, &h.server_wake.futex)?;
        routes.wakes(
            segment,
            h,
            h.client_wake[..n as usize].iter().map(|w| &w.futex),
        )?;
        h.server.instance.store(instance, Ordering::Relaxed);
        h.server.pid.store(std::process::id(), Ordering::Relaxed);
        h.server.state.store(SERVER_ATTACHED, Ordering::Release);
        service.check_intact()?;
        Ok(Server {
            instance,
            strategy: Cell::new(WaitStrategy::default()),
            clients: RefCell::new(vec![Known::default(); n as usize]),
            liveness: RefCell::new(Liveness::new(n)),
            next: Cell::new(0),
            polls: Cell::new(0),
            last_upkeep: Cell::new(Instant::now()),
            link: Link::new((0..n).map(|_| Mirror::default()).collect()),
            _routes: routes,
            _lock: lock,
            service,
        })
    }

    /// The service's segment.
    pub fn segment(&self) -> &Segment {
        self.service.segment()
    }

    /// The service's configuration.
    pub fn config(&self) -> ServerConfig {
        ServerConfig::from_shape(&self.service.geometry.shape)
    }

    /// How this server waits for requests.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy.get()
    }

    /// Sets how this server waits for requests.
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.strategy.set(strategy);
    }

    /// The next request from any client, waiting while there is none.
    /// Clients take turns: one with many requests queued does not starve
    /// the others.
    pub fn recv(&self) -> Result<Request<'_>> {
        self.recv_until(None)
    }

    /// Like [`Server::recv`], giving up with [`Error::TimedOut`] after
    /// `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Request<'_>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// The next request if one is waiting, else `None` at once.
    pub fn try_recv(&self) -> Result<Option<Request<'_>>> {
        self.upkeep_now_and_then()?;
        self.poll()
    }

    /// The clients connected now, with what the server owes each. Clients
    /// that died or left are not listed (their regions are reset here if
    /// nothing is owed to them).
    pub fn clients(&self) -> Result<Vec<ClientInfo>> {
        self.upkeep(Duration::ZERO)?;
        let known = self.clients.borrow();
        let mut list = Vec::new();
        for c in 0..self.service.geometry.shape.max_clients {
            let block = self.service.block(c);
            let state = block.state.load(Ordering::Acquire);
            let k = &known[c as usize];
            if !matches!(state, CLIENT_ATTACHED | CLIENT_EVICTED) || k.dead {
                continue;
            }
            let instance = block.instance.load(Ordering::Acquire);
            let current = k.instance == instance;
            list.push(ClientInfo {
                id: ClientId { slot: c, instance },
                pid: block.pid.load(Ordering::Relaxed),
                owed: if current { k.owed } else { 0 },
                served: if current { k.served } else { 0 },
                evicted: if current { k.evicted } else { None },
            });
        }
        Ok(list)
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Request<'_>> {
        let mut rounds = Rounds::new(self.strategy.get(), deadline);
        loop {
            self.upkeep_now_and_then()?;
            if let Some(request) = self.poll()? {
                return Ok(request);
            }
            if rounds.parked() {
                // The slice ended when the oldest answer about a client's
                // liveness expired (or a client rang): ask again now.
                self.upkeep(LIVENESS_INTERVAL)?;
                self.service.check_intact()?;
            }
            match rounds.next_within(|| self.liveness.borrow().due()) {
                Some(Step::Spin) => std::hint::spin_loop(),
                Some(Step::Park(slice)) => {
                    protocol::park_server(
                        &self.service.header().server_wake,
                        &self.link.parkers,
                        slice,
                        || self.nothing_pushed(),
                    );
                }
                None => {
                    return Err(Error::TimedOut {
                        object: self.service.describe(),
                        op: "receive a request",
                    })
                }
            }
        }
    }

    /// One look at the pending mask, from where the last look left off.
    pub(crate) fn poll(&self) -> Result<Option<Request<'_>>> {
        let n = self.service.geometry.shape.max_clients;
        let words = n.div_ceil(64);
        let start = self.next.get();
        let h = self.service.header();
        for step in 0..=words {
            let w = (start / 64 + step) % words;
            let mut bits = h.pending[w as usize].load(Ordering::Relaxed);
            let split = start % 64;
            if step == 0 {
                bits &= u64::MAX << split;
            } else if step == words {
                // Back at the first word: the bits before the start.
                bits &= !(u64::MAX << split);
            }
            while bits != 0 {
                let c = w * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                if c >= n {
                    // No such client: a stray bit (a client writing where it
                    // should not). Cleared, nothing else.
                    h.pending[w as usize].fetch_and(!(1 << (c % 64)), Ordering::Relaxed);
                    continue;
                }
                if let Some(request) = self.take(c)? {
                    self.next.set((c + 1) % n);
                    return Ok(Some(request));
                }
            }
        }
        Ok(None)
    }

    /// The next request of client `c`, if it has one and may be served.
    fn take(&self, c: u32) -> Result<Option<Request<'_>>> {
        let block = self.service.block(c);
        let doorbell = self.service.doorbell(c);
        let state = block.state.load(Ordering::Acquire);
        if state != CLIENT_ATTACHED {
            // (Or the region's memory is gone, and the state read as zero:
            // say so, not "nothing to serve" for ever.)
            self.service.check_region_intact(c)?;
            // Detached, evicted or free: nothing to serve (requests it left
            // queued are dropped with its region).
            doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
            if state != CLIENT_FREE {
                self.reset_if_done(c)?;
            }
            return Ok(None);
        }
        let instance = block.instance.load(Ordering::Acquire);
        let mut known = self.clients.borrow_mut();
        let k = &mut known[c as usize];
        if k.instance != instance {
            // A new client in this region (it was reset when the last one
            // went): its ring starts at 0.
            k.renew(instance);
        }
        if k.dead {
            // Its process died: what it queued is dropped with its region.
            drop(known);
            doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
            self.reset_if_done(c)?;
            return Ok(None);
        }
        if k.evicted.is_some() {
            doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
            return Ok(None);
        }
        let max_len = self.service.geometry.shape.max_request_len;
        let taken = protocol::take(self.service.region(c), doorbell, &mut k.ring, max_len);
        if let Take::Violation(what) = taken {
            k.evicted = Some(what);
        }
        if let Some(batch) = k.ring.fresh_batch() {
            // The lines this batch's answers write, and its requests, asked
            // for all at once (the server takes them one at a time, round
            // robin with the other clients).
            let region = self.service.region(c);
            let g = &self.service.geometry;
            for slot in batch.filter(|&s| s < g.shape.max_in_flight) {
                protocol::prefetch_write(std::ptr::from_ref(&region.slots[slot as usize]).cast());
                protocol::prefetch_read(self.service.request_buffer(c, slot));
                protocol::prefetch_write(self.service.response_buffer(c, slot));
            }
        }
        self.mirror(c, k);
        match taken {
            Take::Empty => {
                drop(known);
                // (A ring read from memory that is gone reads as empty.)
                self.service.check_region_intact(c)?;
                Ok(None)
            }
            Take::Request { slot, id, len } => {
                k.owed += 1;
                drop(known);
                let request = || Request {
                    server: self,
                    client: ClientId { slot: c, instance },
                    slot,
                    id,
                    len: len as usize,
                    answered: false,
                };
                // `take` checked `len` against max_request_len.
                // SAFETY: inside the slot's request buffer, mapped while `self` lives.
                unsafe {
                    crate::endpoint::touch_last(self.service.request_buffer(c, slot), len as usize)
                };
                if let Err(e) = self.service.check_region_intact(c) {
                    // Declined, and counted back.
                    drop(request());
                    return Err(e);
                }
                // Made after the check, not before: a guard alive across
                // a `?` is built on the stack and copied out (a tenth of a
                // call's time, in store-forwarding stalls).
                Ok(Some(request()))
            }
            Take::Violation(_) => {
                drop(known);
                self.service.check_region_intact(c)?;
                self.evict(c);
                Ok(None)
            }
        }
    }

    /// Stops serving client `c` (it broke the protocol): marks its region,
    /// wakes it so that it notices, and clears its bit.
    fn evict(&self, c: u32) {
        let block = self.service.block(c);
        block.state.store(CLIENT_EVICTED, Ordering::Release);
        let doorbell = self.service.doorbell(c);
        doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
        self.service.header().client_wake[c as usize]
            .futex
            .bump_and_wake();
    }

    /// Whether no client has pushed a request the server has not taken
    /// (for the check before parking). A client found with requests but no
    /// bit (it died between the two) gets its bit set here, so that the
    /// next poll takes them.
    fn nothing_pushed(&self) -> bool {
        let known = self.clients.borrow();
        let mut nothing = true;
        for c in 0..self.service.geometry.shape.max_clients {
            let block = self.service.block(c);
            if block.state.load(Ordering::Acquire) != CLIENT_ATTACHED {
                continue;
            }
            let k = &known[c as usize];
            let tail = if k.instance == block.instance.load(Ordering::Acquire) {
                // Not served: what it queued is not waited for (a dead
                // client's requests would keep the server from parking
                // until its region is reset).
                if k.evicted.is_some() || k.dead {
                    continue;
                }
                // Its next request waits for a slot an earlier instance
                // held: the answer to that one sets its bit again.
                if k.ring.stale != 0 {
                    continue;
                }
                k.ring.tail
            } else {
                0
            };
            if protocol::has_requests(self.service.region(c), tail) {
                let doorbell = self.service.doorbell(c);
                doorbell.pending.fetch_or(doorbell.bit, Ordering::Relaxed);
                nothing = false;
            }
        }
        nothing
    }

    /// Upkeep when the server is busy: twice per liveness interval (so
    /// that with answering what a dead client is owed, its region is reset
    /// within the interval), at the cost of a clock read every 64 looks for
    /// a request.
    pub(crate) fn upkeep_now_and_then(&self) -> Result<()> {
        if self.link.take_recheck() {
            // A wait set saw a client die: reclaim its region now.
            return self.upkeep(Duration::ZERO);
        }
        let polls = self.polls.get().wrapping_add(1);
        self.polls.set(polls);
        if polls % 64 == 0 && self.last_upkeep.get().elapsed() >= LIVENESS_INTERVAL / 2 {
            self.upkeep(LIVENESS_INTERVAL)?;
        }
        Ok(())
    }

    /// Asks whether each attached client is alive (answers up to `max_age`
    /// old are trusted), and resets the regions of the clients that died
    /// or left and are owed nothing.
    fn upkeep(&self, max_age: Duration) -> Result<()> {
        // Answers from the last upkeep or before are asked again: otherwise
        // one got a moment after that upkeep began would still be trusted
        // now, and a client checked only every other interval. (So the time
        // kept is when the last upkeep ended: every answer it got is older.)
        let max_age = max_age.min(self.last_upkeep.get().elapsed());
        let segment = self.service.segment();
        for c in 0..self.service.geometry.shape.max_clients {
            let block = self.service.block(c);
            let state = block.state.load(Ordering::Acquire);
            match state {
                CLIENT_FREE => continue,
                CLIENT_ATTACHED | CLIENT_EVICTED => {
                    let instance = block.instance.load(Ordering::Acquire);
                    let alive = self.liveness.borrow_mut().alive(
                        segment,
                        c,
                        true,
                        instance,
                        layout::client_lock_byte(c),
                        max_age,
                    )?;
                    if alive {
                        continue;
                    }
                    let mut known = self.clients.borrow_mut();
                    let k = &mut known[c as usize];
                    if k.instance != instance {
                        k.renew(instance);
                    }
                    k.dead = true;
                    self.mirror(c, k);
                }
                _ => {}
            }
            self.reset_if_done(c)?;
        }
        // The pending bits are only a hint: a client may clear other
        // clients' bits (a hostile one; or a store of its own word), and a
        // server kept busy by the others would then never look at the
        // heads of those (it does before parking). Look at every head now
        // and then: their requests wait at most until the next upkeep.
        self.nothing_pushed();
        self.last_upkeep.set(Instant::now());
        Ok(())
    }

    /// Resets client `c`'s region for a new client if its client is gone
    /// (detached, or dead: its lock is free) and owed nothing.
    fn reset_if_done(&self, c: u32) -> Result<()> {
        let mut known = self.clients.borrow_mut();
        let k = &mut known[c as usize];
        let block = self.service.block(c);
        let state = block.state.load(Ordering::Acquire);
        if state == CLIENT_FREE
            || k.owed > 0
            || self
                .service
                .segment()
                .object()
                .byte_locked(layout::client_lock_byte(c))?
        {
            return Ok(());
        }
        // Nobody writes the region now: its client is gone, and a new one
        // claims it only once it reads FREE.
        let region = self.service.region(c);
        region.head.store(0, Ordering::Relaxed);
        for slot in region.slots {
            slot.state.store(SLOT_FREE, Ordering::Relaxed);
            slot.request_len.store(0, Ordering::Relaxed);
            slot.response_len.store(0, Ordering::Relaxed);
        }
        block.instance.store(0, Ordering::Relaxed);
        block.server_instance.store(0, Ordering::Relaxed);
        block.pid.store(0, Ordering::Relaxed);
        // Before the region is free: a client that takes it may set the
        // bit at once, and clearing it after would hide its first requests
        // until the server next looked at every head.
        let doorbell = self.service.doorbell(c);
        doorbell.pending.fetch_and(!doorbell.bit, Ordering::Relaxed);
        // Release: a client that reads FREE sees the region reset.
        block.state.store(CLIENT_FREE, Ordering::Release);
        k.renew(0);
        self.mirror(c, k);
        Ok(())
    }

    /// Answers request `id` of `client` in `slot` (`response`: its length,
    /// already in the response buffer; `None`: declined).
    fn finish(&self, client: ClientId, slot: u32, id: u64, response: Option<u32>) -> Result<()> {
        let c = client.slot;
        let mut known = self.clients.borrow_mut();
        let k = &mut known[c as usize];
        // Its buffers are the server's no more.
        let was_stale = k.ring.stale != 0;
        k.ring.release(slot);
        if was_stale && k.ring.stale == 0 {
            // The region's client may have a request waiting for a slot
            // an earlier instance held (`protocol::take`): look again.
            let doorbell = self.service.doorbell(c);
            doorbell.pending.fetch_or(doorbell.bit, Ordering::Relaxed);
            self.mirror(c, k);
        }
        k.owed = k.owed.saturating_sub(1);
        let block = self.service.block(c);
        // Never answer into another instance's region: the region is not
        // reset while a request is owed, but a hostile client may have
        // changed its instance meanwhile.
        let serving = k.instance == client.instance
            && block.state.load(Ordering::Acquire) == CLIENT_ATTACHED
            && block.instance.load(Ordering::Acquire) == client.instance
            && k.evicted.is_none();
        if serving && protocol::finish(self.service.region(c), slot, id, response) {
            k.served += u64::from(response.is_some());
        }
        let done = k.owed == 0 && (k.dead || !serving);
        drop(known);
        if done {
            self.reset_if_done(c)?;
        }
        self.service.check_region_intact(c)
    }

    /// Copies what the server knows of client `c` for the wait sets.
    fn mirror(&self, c: u32, k: &Known) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.link.state[c as usize];
        m.instance.store(k.instance, Relaxed);
        m.tail.store(k.ring.tail, Relaxed);
        m.evicted.store(k.evicted.is_some(), Relaxed);
        m.dead.store(k.dead, Relaxed);
        m.blocked.store(k.ring.stale != 0, Relaxed);
    }

    /// What a wait set needs of this server: its service (a clone shares
    /// the mappings) and its link.
    pub(crate) fn wait_parts(&self) -> (&Service, &Arc<Link<Box<[Mirror]>>>) {
        (&self.service, &self.link)
    }

    fn max_response_len(&self) -> usize {
        usize::try_from(self.service.geometry.shape.max_response_len).unwrap_or(usize::MAX)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.link.set_dropped();
        let h = self.service.header();
        h.server.state.store(SERVER_DETACHED, Ordering::Release);
        // Clients waiting for a response look at the server now.
        for wake in &h.client_wake[..self.service.geometry.shape.max_clients as usize] {
            wake.futex.bump_and_wake();
        }
        // The name goes with the server: clients connecting from now on
        // wait for (or get NotFound until) the next one.
        h.server.retired.store(1, Ordering::Release);
        let _ = self.service.segment().object().remove_name_if_current();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("service", &self.service.describe())
            .field("instance", &format_args!("{:016x}", self.instance))
            .finish_non_exhaustive()
    }
}

/// What [`retire_dead`] did.
enum Retired {
    /// Retired a service whose server was dead, and removed its name.
    Done,
    /// The name was gone.
    Gone,
    /// Someone else is retiring it (or just did): look again.
    Busy,
}

/// The name `name` exists: if it holds a service whose server is gone,
/// retires it (marks it so, and removes the name: its clients keep the old
/// segment and see the server gone). `AlreadyAttached` if its server
/// lives; `AlreadyExists` if it is not a request/response service.
fn retire_dead(name: &str) -> Result<Retired> {
    let segment = match Segment::open(name) {
        Err(Error::NotFound { .. }) => return Ok(Retired::Gone),
        other => other?,
    };
    let observed = crate::waiting::once_formatted(&segment, |s| Service::open(s, Role::Observer));
    match observed {
        Ok(_) => {}
        Err(Error::NotAService { .. } | Error::Corrupted { .. } | Error::Unsupported { .. }) => {
            return Err(Error::already_exists(name))
        }
        Err(e) => return Err(e),
    }
    let live = || Error::AlreadyAttached {
        object: format!("service {name:?}"),
        side: "server",
    };
    let view = segment.map(..layout::HEADER_LEN)?;
    // SAFETY: the first page, page-aligned; `Header` is atomics and
    // padding, valid for any bytes.
    let h: &Header = unsafe { &*view.as_mut_ptr().cast::<Header>() };
    if h.server.retired.load(Ordering::Acquire) != 0 {
        return Ok(Retired::Busy);
    }
    let Some(lock) = segment.object().lock_byte(SERVER_LOCK_BYTE)? else {
        return if h.server.state.load(Ordering::Acquire) == SERVER_ATTACHED {
            Err(live())
        } else {
            // Being created, or retired by another: look again.
            Ok(Retired::Busy)
        };
    };
    // Checked again under the lock: one retirer only.
    if h.server.retired.swap(1, Ordering::AcqRel) != 0 {
        return Ok(Retired::Busy);
    }
    // A server that is gone: detached, or dead (its lock was free).
    h.server.state.store(SERVER_DETACHED, Ordering::Release);
    let mut routes = Routes::default();
    routes.wakes(&segment, h, h.client_wake.iter().map(|w| &w.futex))?;
    for wake in &h.client_wake[..] {
        wake.futex.bump_and_wake();
    }
    drop(routes);
    view.check_intact()?;
    segment.object().remove_name_if_current()?;
    drop(lock);
    Ok(Retired::Done)
}

/// A request taken by [`Server::recv`]: its bytes in place
/// (`Deref<Target = [u8]>`), who sent it, and its id. Answer it with
/// [`Request::respond`] or [`Request::loan_response`]; dropped unanswered,
/// it is declined (the client gets [`Error::NoResponse`]).
///
/// The bytes are in the client's memory: a client that breaks the
/// protocol can change them while you read; treat them as input to
/// validate.
pub struct Request<'a> {
    server: &'a Server,
    client: ClientId,
    slot: u32,
    id: u64,
    len: usize,
    answered: bool,
}

impl Request<'_> {
    /// The client that sent it.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The request's id, as the client's [`Pending`](super::Pending) knows
    /// it: unique among the client's requests.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Answers with a copy of `response`. [`Error::TooLarge`] (and the
    /// request declined) if it is longer than the service's
    /// `max_response_len`. A client that is gone by now is not an error:
    /// the response is dropped.
    pub fn respond(self, response: &[u8]) -> Result<()> {
        let mut out = self.loan_response(response.len())?;
        out.copy_from_slice(response);
        out.send()
    }
}

impl<'a> Request<'a> {
    /// Lends the response buffer, `len` bytes of it: write the response in
    /// place, then [`ResponseLoan::send`]. [`Error::TooLarge`] (and the
    /// request declined) if `len` is more than `max_response_len`.
    pub fn loan_response(self, len: usize) -> Result<ResponseLoan<'a>> {
        let max = self.server.max_response_len();
        if len > max {
            return Err(Error::TooLarge {
                object: self.server.service.describe(),
                len,
                max,
            });
        }
        Ok(ResponseLoan { request: self, len })
    }
}

impl Deref for Request<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let buffer = self
            .server
            .service
            .request_buffer(self.client.slot, self.slot);
        // (A hostile client may still write these bytes while they are lent: it can change them,
        // never the slice's bounds; docs/security.md.)
        // SAFETY: `len` was checked against max_request_len, within the slot's buffer; mapped
        // while the server lives; the client does not write the slot until it has the answer.
        unsafe { std::slice::from_raw_parts(buffer, self.len) }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.answered = true;
            let _ = self.server.finish(self.client, self.slot, self.id, None);
        }
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("client", &self.client)
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

/// A response being written in place ([`Request::loan_response`]):
/// `DerefMut<Target = [u8]>`. [`ResponseLoan::send`] answers; dropped
/// unsent, the request is declined.
pub struct ResponseLoan<'a> {
    request: Request<'a>,
    len: usize,
}

impl ResponseLoan<'_> {
    /// The request being answered.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The request and the response buffer at once (to compute one from
    /// the other in place).
    pub fn split(&mut self) -> (&[u8], &mut [u8]) {
        let response = self.response_ptr();
        // SAFETY: as in `deref_mut`; the request buffer is another part.
        (&*self.request, unsafe {
            std::slice::from_raw_parts_mut(response, self.len)
        })
    }

    /// Sends the response to the client.
    pub fn send(mut self) -> Result<()> {
        self.request.answered = true;
        let r = &self.request;
        r.server
            .finish(r.client, r.slot, r.id, Some(self.len as u32))
    }

    fn response_ptr(&self) -> *mut u8 {
        let r = &self.request;
        r.server.service.response_buffer(r.client.slot, r.slot)
    }
}

impl Deref for ResponseLoan<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: as in `deref_mut`.
        unsafe { std::slice::from_raw_parts(self.response_ptr(), self.len) }
    }
}

impl DerefMut for ResponseLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` is at most max_response_len, within the slot's
        // response buffer, which only the server writes and only for the
        // request it owes (this one); mapped while the server lives.
        unsafe { std::slice::from_raw_parts_mut(self.response_ptr(), self.len) }
    }
}

impl std::fmt::Debug for ResponseLoan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseLoan")
            .field("request", &self.request)
            .field("len", &self.len)
            .finish()
    }
}
