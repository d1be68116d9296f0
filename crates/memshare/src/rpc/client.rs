//! The client: a region of the service of its own (a ring of requests,
//! `max_in_flight` slots with a request and a response buffer each), and
//! the waits for responses.

use std::cell::Cell;
use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{
    self, id_of, CLIENT_ATTACHED, CLIENT_DETACHED, CLIENT_EVICTED, CLIENT_FREE, ID_MASK,
    SERVER_ATTACHED, SERVER_LOCK_BYTE,
};
use super::protocol::{self, Answer};
use super::service::{Role, Service};
use super::{ClientId, ServerConfig};
use crate::endpoint::{new_instance, Link, Routes};
use crate::primitive::Ordering;
use crate::sys::ByteLock;
use crate::waiting::{CoarseInstant, Rounds, Step, WaitStrategy, LIVENESS_INTERVAL};
use crate::{Error, Result, Segment};

/// A client of a request/response service: sends requests to its
/// [`Server`](super::Server) and receives the responses, in place.
///
/// [`Client::call`] sends one request and waits for its response.
/// [`Client::send_request`] and [`Client::receive_response`] pipeline: up
/// to the service's `max_in_flight` requests may be in flight, and their
/// responses received in any order.
///
/// ```
/// use memshare::rpc::{Client, Server, ServerConfig};
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-rpc-client-{}", std::process::id());
/// let server = Server::create(&name, ServerConfig::new())?;
/// let mut client = Client::connect(&name)?;
/// let first = client.send_request(b"one")?;
/// let second = client.send_request(b"two")?;
/// // (The server, usually in another process, answers in any order.)
/// let a = server.recv()?;
/// let b = server.recv()?;
/// b.respond(b"TWO")?;
/// a.respond(b"ONE")?;
/// assert_eq!(&*client.receive_response(&second)?, b"TWO");
/// assert_eq!(&*client.receive_response(&first)?, b"ONE");
/// # Ok(()) }
/// ```
pub struct Client {
    service: Service,
    index: u32,
    instance: u64,
    server_instance: u64,
    /// Requests pushed onto the ring so far.
    head: u64,
    /// The head as the server may see it: requests pushed in a
    /// [`RequestBatch`] are published when it ends.
    published: u64,
    /// The id the next request gets.
    next_id: u64,
    /// Slots free for a request.
    free: Vec<u32>,
    /// Per slot: the id of the request in flight in it.
    in_flight: Vec<Option<u64>>,
    /// Slots whose `Pending` was dropped before its response came (a bit
    /// per slot; shared with the `Pending`s).
    abandoned: Arc<AtomicU64>,
    /// Clones of `abandoned` made ahead for a batch's `Pending`s: a clone
    /// is a locked instruction, which waits for every store before it, so
    /// one made between two requests of a batch would wait for the first
    /// request's lines to come across (made at the batch's start, they
    /// wait for nothing).
    spare: Vec<Arc<AtomicU64>>,
    strategy: WaitStrategy,
    /// When the server's lock was last asked about (the coarse clock:
    /// looked at on every batch and every look for an answer that finds
    /// none).
    last_liveness: CoarseInstant,
    /// The slots whose answer this client waits for (sent, and the answer
    /// not looked at yet): a bit per slot, kept here and copied into the
    /// link for the wait sets this client is a member of.
    awaiting: u64,
    link: Arc<Link<AtomicU64>>,
    _routes: Routes,
    /// Held while this client lives (its process's liveness to the
    /// server); released in `drop` before the server is rung.
    lock: Option<ByteLock>,
}

/// A request in flight ([`Client::send_request`]): what
/// [`Client::receive_response`] waits for. Dropped before its response is
/// received, the response is discarded when it comes (its slot is busy
/// until then).
pub struct Pending {
    client: u64,
    slot: u32,
    id: u64,
    received: Cell<bool>,
    abandoned: Arc<AtomicU64>,
}

impl Pending {
    /// The request's id (what the server's
    /// [`Request::id`](super::Request::id) says).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.received.get() {
            self.abandoned
                .fetch_or(1 << self.slot, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("received", &self.received.get())
            .finish()
    }
}

/// A response, in place in the client's region (`Deref<Target = [u8]>`).
/// Its slot takes a new request once it is dropped.
///
/// The bytes are in shared memory the server writes: a server that breaks
/// the protocol can change them while you read; treat them as input to
/// validate.
pub struct Response<'a> {
    client: &'a mut Client,
    slot: u32,
    len: usize,
}

impl Deref for Response<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let buffer = self
            .client
            .service
            .response_buffer(self.client.index, self.slot);
        // (A hostile server may still write these bytes while they are lent: it can change them,
        // never the slice's bounds; docs/security.md.)
        // SAFETY: `len` was checked against max_response_len, within the slot's buffer; mapped
        // while the client lives; the server does not write the slot before its next request.
        unsafe { std::slice::from_raw_parts(buffer, self.len) }
    }
}

impl Drop for Response<'_> {
    fn drop(&mut self) {
        self.client.release(self.slot);
    }
}

impl std::fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response").field("len", &self.len).finish()
    }
}

impl Client {
    /// Connects to the service `name`. Fails with [`Error::NotFound`] if
    /// there is none, [`Error::Disconnected`] if its server is gone,
    /// [`Error::LimitReached`] if it has its `max_clients` already.
    pub fn connect(name: &str) -> Result<Client> {
        crate::waiting::once_formatted(&Segment::open(name)?, Client::attach)
    }

    /// Like [`Client::connect`], but waits (in 1 ms steps) for a server to
    /// serve `name`, for at most `timeout`: `TimedOut` after that.
    pub fn connect_timeout(name: &str, timeout: Duration) -> Result<Client> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = Segment::open(name).and_then(|segment| {
                crate::waiting::once_formatted_until(&segment, deadline, Client::attach)
            });
            match attempt {
                Err(Error::NotFound { .. } | Error::Disconnected { .. })
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Error::NotFound { .. } | Error::Disconnected { .. }) => {
                    return Err(Error::TimedOut {
                        object: format!("service {name:?}"),
                        op: "connect (waiting for a server)",
                    })
                }
                other => return other,
            }
        }
    }

    /// Connects to the service in `segment`: takes a free client region.
    pub fn attach(segment: &Segment) -> Result<Client> {
        let probe = Service::open(segment, Role::Observer)?;
        let h = probe.header();
        let server_instance = h.server.instance.load(Ordering::Acquire);
        let server_alive = h.server.state.load(Ordering::Acquire) == SERVER_ATTACHED
            && h.server.retired.load(Ordering::Acquire) == 0
            && segment.object().byte_locked(SERVER_LOCK_BYTE)?;
        if !server_alive {
            return Err(Error::Disconnected {
                object: probe.describe(),
                peer: "server",
            });
        }
        let n = probe.geometry.shape.max_clients;
        // Regions whose client left or died are reset by the server within
        // a liveness interval: worth waiting that long for.
        let deadline = Instant::now() + 3 * LIVENESS_INTERVAL;
        let (index, lock) = loop {
            let mut reclaimable = false;
            let mut taken = None;
            for c in 0..n {
                let state = probe.block(c).state.load(Ordering::Acquire);
                if state != CLIENT_FREE {
                    reclaimable |= state == CLIENT_DETACHED
                        || !segment.object().byte_locked(layout::client_lock_byte(c))?;
                    continue;
                }
                if let Some(lock) = segment.object().lock_byte(layout::client_lock_byte(c))? {
                    // Checked again under the lock: only its holder claims a
                    // free region.
                    if probe.block(c).state.load(Ordering::Acquire) == CLIENT_FREE {
                        taken = Some((c, lock));
                        break;
                    }
                }
            }
            match taken {
                Some(found) => break found,
                None if reclaimable && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                None => {
                    return Err(Error::LimitReached {
                        object: probe.describe(),
                        what: "every client slot is taken (max_clients)".into(),
                        limit: u64::from(n),
                    })
                }
            }
        };
        drop(probe);
        let service = Service::open(segment, Role::Client(index))?;
        // It parks on its own word in the header and wakes the server.
        let h = service.header();
        let mut routes = Routes::default();
        routes.parks(segment, h, &h.client_wake[index as usize].futex)?;
        routes.wakes(segment, h, [&h.server_wake.futex])?;
        let block = service.block(index);
        let instance = new_instance();
        // A region is free once the server reset it (head 0, every slot
        // free): a client that wrote "free" itself (only a hostile one
        // does) may have left any head, entries and slot words, which this
        // client would build on (a head near 2^64 overflowed its first
        // push; entries it left would be taken as this client's
        // requests). Start clean, before saying attached.
        let region = service.region(index);
        region.head.store(0, Ordering::Relaxed);
        for slot in region.slots {
            slot.state.store(layout::SLOT_FREE, Ordering::Relaxed);
            slot.request_len.store(0, Ordering::Relaxed);
            slot.response_len.store(0, Ordering::Relaxed);
        }
        let head = 0;
        block.instance.store(instance, Ordering::Relaxed);
        block
            .server_instance
            .store(server_instance, Ordering::Relaxed);
        block.pid.store(std::process::id(), Ordering::Relaxed);
        // Release: a server that reads ATTACHED sees the instance.
        block.state.store(CLIENT_ATTACHED, Ordering::Release);
        // A server waiting (a notifier watching for it) learns of the new
        // client now, and watches its process, rather than asking about it
        // every liveness interval.
        protocol::wake_server(&h.server_wake);
        service.check_intact()?;
        let slots = service.geometry.shape.max_in_flight;
        Ok(Client {
            index,
            instance,
            server_instance,
            head,
            published: head,
            // Ids start at a random point: a request id is not a guess of
            // what another client (or an earlier one) used.
            next_id: new_instance() & ID_MASK,
            free: (0..slots).rev().collect(),
            in_flight: vec![None; slots as usize],
            abandoned: Arc::new(AtomicU64::new(0)),
            spare: Vec::with_capacity(slots as usize),
            strategy: WaitStrategy::default(),
            last_liveness: CoarseInstant::now(),
            awaiting: 0,
            link: Link::new(AtomicU64::new(0)),
            _routes: routes,
            lock: Some(lock),
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

    /// This client, as the server sees it ([`Request::client`](super::Request::client)).
    pub fn id(&self) -> ClientId {
        ClientId {
            slot: self.index,
            instance: self.instance,
        }
    }

    /// How this client waits for responses.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Sets how this client waits for responses.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
    }

    /// Requests sent whose response has not been received (or discarded)
    /// yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|s| s.is_some()).count()
    }

    /// Sends `request` and waits for its response.
    pub fn call(&mut self, request: &[u8]) -> Result<Response<'_>> {
        let (slot, id) = self.send(request)?;
        self.receive_until(slot, id, None, false)
    }

    /// Like [`Client::call`], giving up with [`Error::TimedOut`] after
    /// `timeout` (the response is then discarded when it comes).
    pub fn call_timeout(&mut self, request: &[u8], timeout: Duration) -> Result<Response<'_>> {
        let deadline = Instant::now() + timeout;
        let (slot, id) = self.send(request)?;
        self.receive_until(slot, id, Some(deadline), true)
    }

    /// Sends `request` without waiting for its response: several may be in
    /// flight (up to the service's `max_in_flight`; one more is
    /// [`Error::LimitReached`]). [`Error::TooLarge`] if it is longer than
    /// `max_request_len`; [`Error::Disconnected`] if the server is gone.
    pub fn send_request(&mut self, request: &[u8]) -> Result<Pending> {
        let (slot, id) = self.send(request)?;
        Ok(Pending {
            client: self.instance,
            slot,
            id,
            received: Cell::new(false),
            abandoned: Arc::clone(&self.abandoned),
        })
    }

    /// Sends several requests with one notice to the server: requests
    /// sent through the batch are published together when it is dropped
    /// (or [`RequestBatch::publish`]ed), with one store of the ring's head
    /// and one look at the server's doorbell for all of them, as a socket
    /// client writes several requests with one `write`.
    ///
    /// ```
    /// use memshare::rpc::{Client, Server, ServerConfig};
    /// # fn main() -> memshare::Result<()> {
    /// # let name = format!("doc-rpc-batch-{}", std::process::id());
    /// # let server = Server::create(&name, ServerConfig::new())?;
    /// let mut client = Client::connect(&name)?;
    /// let mut batch = client.batch();
    /// let first = batch.send_request(b"one")?;
    /// let second = batch.send_request(b"two")?;
    /// batch.publish();
    /// # server.recv()?.respond(b"1")?;
    /// # server.recv()?.respond(b"2")?;
    /// assert_eq!(&*client.receive_response(&first)?, b"1");
    /// assert_eq!(&*client.receive_response(&second)?, b"2");
    /// # Ok(()) }
    /// ```
    pub fn batch(&mut self) -> RequestBatch<'_> {
        let slots = self.service.geometry.shape.max_in_flight as usize;
        while self.spare.len() < slots {
            self.spare.push(Arc::clone(&self.abandoned));
        }
        RequestBatch {
            client: self,
            checked: false,
        }
    }

    /// Sends `request`: its slot and id.
    pub(crate) fn send(&mut self, request: &[u8]) -> Result<(u32, u64)> {
        let sent = self.push(request, true)?;
        self.publish();
        Ok(sent)
    }

    /// Writes `request` in a free slot and pushes it onto the ring, not yet
    /// published: its slot and id. With `check`, the server is checked
    /// first (a batch checks it once).
    fn push(&mut self, request: &[u8], check: bool) -> Result<(u32, u64)> {
        let max =
            usize::try_from(self.service.geometry.shape.max_request_len).unwrap_or(usize::MAX);
        if request.len() > max {
            return Err(Error::TooLarge {
                object: self.service.describe(),
                len: request.len(),
                max,
            });
        }
        if check {
            self.check_server(false)?;
        }
        let Some(slot) = self.free_slot() else {
            return Err(Error::LimitReached {
                object: self.service.describe(),
                what: "this client has max_in_flight requests in flight (receive a response first)"
                    .into(),
                limit: u64::from(self.service.geometry.shape.max_in_flight),
            });
        };
        let buffer = self.service.request_buffer(self.index, slot);
        // SAFETY: the slot's request buffer is `max_request_len` bytes
        // (checked above), mapped writable for this client, and the server
        // does not read it before the request is pushed below.
        unsafe { std::ptr::copy_nonoverlapping(request.as_ptr(), buffer, request.len()) };
        let id = self.next_id;
        self.next_id = (id + 1) & ID_MASK;
        self.head = protocol::push(
            self.service.region(self.index),
            self.head,
            slot,
            id,
            request.len() as u32,
        );
        self.in_flight[slot as usize] = Some(id);
        self.set_awaiting(slot, true);
        Ok((slot, id))
    }

    /// Publishes the requests pushed and not yet published, if any.
    fn publish(&mut self) {
        if self.published != self.head {
            protocol::publish(
                self.service.region(self.index),
                self.service.doorbell(self.index),
                self.head,
            );
            self.published = self.head;
        }
    }

    /// Waits for the response to `pending` (sent by this client, not yet
    /// received). [`Error::NoResponse`] if the server dropped the request
    /// unanswered; [`Error::Disconnected`] if the server went away first.
    pub fn receive_response(&mut self, pending: &Pending) -> Result<Response<'_>> {
        self.check_pending(pending)?;
        let result = self.receive_until(pending.slot, pending.id, None, false);
        pending.received.set(true);
        result
    }

    /// Like [`Client::receive_response`], giving up with
    /// [`Error::TimedOut`] after `timeout` (`pending` stays valid: ask
    /// again later).
    pub fn receive_response_timeout(
        &mut self,
        pending: &Pending,
        timeout: Duration,
    ) -> Result<Response<'_>> {
        self.check_pending(pending)?;
        let deadline = Instant::now() + timeout;
        let result = self.receive_until(pending.slot, pending.id, Some(deadline), false);
        if !matches!(result, Err(Error::TimedOut { .. })) {
            pending.received.set(true);
        }
        result
    }

    /// The response to `pending` if it has come, else `None` at once.
    pub fn try_receive_response(&mut self, pending: &Pending) -> Result<Option<Response<'_>>> {
        self.check_pending(pending)?;
        let (slot, id) = (pending.slot, pending.id);
        let answered = match self.answer(slot, id) {
            Ok(false) => match self.check_server(false) {
                // The server may have answered just before it went.
                Err(e) => self
                    .answer(slot, id)
                    .and_then(|a| if a { Ok(true) } else { Err(e) }),
                Ok(()) => return Ok(None),
            },
            other => other,
        };
        pending.received.set(true);
        match answered {
            Ok(_) => self.response(slot, id).map(Some),
            Err(e) => Err(e),
        }
    }

    /// Waits for the answer to request `id` in `slot`; on a timeout, with
    /// `abandon`, its slot is freed when the answer comes.
    fn receive_until(
        &mut self,
        slot: u32,
        id: u64,
        deadline: Option<Instant>,
        abandon: bool,
    ) -> Result<Response<'_>> {
        let mut rounds = Rounds::new(self.strategy, deadline);
        loop {
            if self.answer(slot, id)? {
                return self.response(slot, id);
            }
            if rounds.check_peer() {
                if let Err(e) = self.check_server(rounds.parked()) {
                    // An answer written before the server went still counts.
                    if self.answer(slot, id)? {
                        return self.response(slot, id);
                    }
                    return Err(e);
                }
            }
            let last = self.last_liveness;
            match rounds.next_within(|| LIVENESS_INTERVAL.saturating_sub(last.elapsed())) {
                Some(Step::Spin) => std::hint::spin_loop(),
                Some(Step::Park(slice)) => protocol::park_client(
                    self.service.region(self.index),
                    &self.link.parkers,
                    slot,
                    id,
                    slice,
                ),
                None => {
                    if abandon {
                        self.abandoned
                            .fetch_or(1 << slot, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Err(Error::TimedOut {
                        object: self.service.describe(),
                        op: "receive a response",
                    });
                }
            }
        }
    }

    /// `InvalidInput` unless `pending` is this client's and unreceived.
    fn check_pending(&self, pending: &Pending) -> Result<()> {
        if pending.client != self.instance
            || pending.received.get()
            || self.in_flight.get(pending.slot as usize) != Some(&Some(pending.id))
        {
            return Err(Error::InvalidInput {
                object: self.service.describe(),
                reason: format!(
                    "request {}: its response was received already, or it is another client's",
                    pending.id
                ),
            });
        }
        Ok(())
    }

    /// Whether request `id` in `slot` is answered with a response;
    /// `Err(NoResponse)` if declined (the slot is free again),
    /// `Err(Corrupted)` if its slot says something no server following the
    /// protocol writes (the slot is lost).
    pub(crate) fn answer(&mut self, slot: u32, id: u64) -> Result<bool> {
        // (A batch forgotten with `mem::forget` left its requests
        // unpublished: no answer would come.)
        self.publish();
        // The response's first line, asked for before the slot's: when the
        // answer is there, the two lines the server wrote come across
        // together, not one after the other.
        protocol::prefetch_read(self.service.response_buffer(self.index, slot));
        let answer = protocol::answer(self.service.region(self.index), slot, id);
        if answer != Answer::Waiting {
            // Looked at: not waited for any more.
            self.set_awaiting(slot, false);
        }
        match answer {
            Answer::Waiting => Ok(false),
            Answer::Responded(_) => Ok(true),
            Answer::Declined => {
                self.release(slot);
                Err(Error::NoResponse {
                    object: self.service.describe(),
                    id,
                })
            }
            Answer::Broken(word) => {
                self.in_flight[slot as usize] = None;
                Err(self.service.corrupted(format!(
                    "slot {slot} of client {} holds request {} (phase {}) while request {id} waits for its response",
                    self.index,
                    id_of(word),
                    layout::phase_of(word),
                )))
            }
        }
    }

    /// The guard over the response to request `id` in `slot`, which is
    /// answered.
    pub(crate) fn response(&mut self, slot: u32, id: u64) -> Result<Response<'_>> {
        let region = self.service.region(self.index);
        let len = region.slots[slot as usize]
            .response_len
            .load(Ordering::Relaxed);
        let max = self.service.geometry.shape.max_response_len;
        if u64::from(len) > max {
            self.in_flight[slot as usize] = None;
            return Err(self.service.corrupted(format!(
                "the response to request {id} is {len} bytes, more than max_response_len {max}"
            )));
        }
        // `len` is at most max_response_len (checked above).
        // SAFETY: within the slot's response buffer, mapped while `self` lives.
        unsafe {
            crate::endpoint::touch_last(
                self.service.response_buffer(self.index, slot),
                len as usize,
            )
        };
        self.service.check_intact()?;
        Ok(Response {
            slot,
            len: len as usize,
            client: self,
        })
    }

    /// Frees `slot` for a new request. The slot keeps its answer's phase
    /// until its next request: the server does not look at a slot that is
    /// not in its ring, and a store here would cost a transfer of the
    /// line the server writes the answer in (its next request writes it
    /// anyway).
    fn release(&mut self, slot: u32) {
        self.set_awaiting(slot, false);
        if self.in_flight[slot as usize].take().is_some() {
            self.free.push(slot);
        }
    }

    /// Says whether this client waits for the answer in `slot`, here and
    /// to its wait sets (a plain store: only this client writes it).
    fn set_awaiting(&mut self, slot: u32, awaiting: bool) {
        let awaiting = if awaiting {
            self.awaiting | 1 << slot
        } else {
            self.awaiting & !(1 << slot)
        };
        if awaiting != self.awaiting {
            self.awaiting = awaiting;
            self.link
                .state
                .store(awaiting, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Frees `slot` when its answer comes (an async call dropped before
    /// its response), as a timed-out `call_timeout` does.
    #[cfg(feature = "async")]
    pub(crate) fn abandon(&self, slot: u32) {
        self.abandoned
            .fetch_or(1 << slot, std::sync::atomic::Ordering::Relaxed);
    }

    /// What a wait set needs of this client: its service (a clone shares
    /// the mappings), its region, the server instance it connected to, its
    /// link, and the slots whose `Pending` was dropped.
    pub(crate) fn wait_parts(
        &self,
    ) -> (&Service, u32, u64, &Arc<Link<AtomicU64>>, &Arc<AtomicU64>) {
        (
            &self.service,
            self.index,
            self.server_instance,
            &self.link,
            &self.abandoned,
        )
    }

    /// A free slot, after taking back the slots of dropped `Pending`s
    /// whose answer has come.
    fn free_slot(&mut self) -> Option<u32> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.free.is_empty() {
            // (`Pending`s may be dropped in other threads meanwhile: only
            // the bits handled here are cleared.)
            let mut bits = self.abandoned.load(Relaxed);
            let mut handled = 0;
            while bits != 0 {
                let slot = bits.trailing_zeros();
                bits &= bits - 1;
                let Some(id) = self.in_flight[slot as usize] else {
                    handled |= 1 << slot;
                    continue;
                };
                match protocol::answer(self.service.region(self.index), slot, id) {
                    Answer::Waiting => {}
                    Answer::Responded(_) | Answer::Declined => {
                        handled |= 1 << slot;
                        self.release(slot);
                    }
                    Answer::Broken(_) => {
                        // Lost: never reused.
                        handled |= 1 << slot;
                        self.set_awaiting(slot, false);
                        self.in_flight[slot as usize] = None;
                    }
                }
            }
            self.abandoned.fetch_and(!handled, Relaxed);
        }
        self.free.pop()
    }

    /// `Err(Disconnected)` if the server is gone (detached, replaced, or
    /// dead: its lock asked at most once per liveness interval, or now if
    /// `fresh`), `Err(Corrupted)` if it evicted this client.
    pub(crate) fn check_server(&mut self, fresh: bool) -> Result<()> {
        self.check_server_words()?;
        // (A wait set that found the server's lock free asks for a fresh
        // answer: the client then reports what it did. The request is
        // taken even when the answer is asked anyway: left standing, it
        // would have a woken async wait set ask again at every wake.)
        let recheck = self.link.take_recheck();
        if fresh || recheck || self.last_liveness.elapsed() >= LIVENESS_INTERVAL {
            self.last_liveness = CoarseInstant::now();
            if !self
                .service
                .segment()
                .object()
                .byte_locked(SERVER_LOCK_BYTE)?
            {
                return Err(Error::Disconnected {
                    object: self.service.describe(),
                    peer: "server",
                });
            }
        }
        Ok(())
    }

    /// [`Client::check_server`] without the lock: what the state words
    /// say (the server detached or was replaced; this client evicted).
    fn check_server_words(&self) -> Result<()> {
        let h = self.service.header();
        let gone = || Error::Disconnected {
            object: self.service.describe(),
            peer: "server",
        };
        if h.server.state.load(Ordering::Acquire) != SERVER_ATTACHED
            || h.server.instance.load(Ordering::Acquire) != self.server_instance
            || h.server.retired.load(Ordering::Acquire) != 0
        {
            return Err(gone());
        }
        if self.service.block(self.index).state.load(Ordering::Acquire) == CLIENT_EVICTED {
            return Err(self.service.corrupted(
                "the server stopped serving this client: it saw the client break the protocol"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.link.set_dropped();
        let block = self.service.block(self.index);
        block.state.store(CLIENT_DETACHED, Ordering::Release);
        // The lock first: the server resets a region only once its lock is
        // free, and the look this ring brings may be the last it takes at
        // the region for long (a server waiting through a wait set or
        // `recv_async` looks only when rung).
        drop(self.lock.take());
        // Ring: the server resets the region soon, not a liveness interval
        // later.
        let doorbell = self.service.doorbell(self.index);
        doorbell.pending.fetch_or(doorbell.bit, Ordering::Release);
        protocol::wake_server(doorbell.server_wake);
    }
}

/// Requests sent together ([`Client::batch`]): each
/// [`RequestBatch::send_request`] writes its request and pushes it onto
/// the ring; the server is told of them all at once when the batch is
/// dropped or published. (A batch leaked with `mem::forget` is published by
/// the client's next look for a response.)
pub struct RequestBatch<'a> {
    client: &'a mut Client,
    /// Whether the server was checked in this batch (once is enough).
    checked: bool,
}

impl RequestBatch<'_> {
    /// As [`Client::send_request`], published when the batch ends.
    pub fn send_request(&mut self, request: &[u8]) -> Result<Pending> {
        let (slot, id) = self.client.push(request, !self.checked)?;
        self.checked = true;
        let abandoned = match self.client.spare.pop() {
            Some(spare) => spare,
            None => Arc::clone(&self.client.abandoned),
        };
        Ok(Pending {
            client: self.client.instance,
            slot,
            id,
            received: Cell::new(false),
            abandoned,
        })
    }

    /// Publishes the batch's requests (as dropping it does).
    pub fn publish(self) {}
}

impl Drop for RequestBatch<'_> {
    fn drop(&mut self) {
        self.client.publish();
    }
}

impl std::fmt::Debug for RequestBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBatch")
            .field("unpublished", &(self.client.head - self.client.published))
            .finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &self.service.describe())
            .field("id", &self.id())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}
