//! Carrying a publish-subscribe service.
//!
//! **Out** (a thread): the bridge is a subscriber of the local service and
//! puts every message published there, except its own and the history it
//! found when it attached, on the service's key expression, with a
//! "message" attachment ([`crate::wire`]); what its subscriber has waiting
//! when it wakes goes in one publication ("messages": up to
//! [`BATCH_BYTES`] of records; a lone message, or a large one, goes
//! alone), so a burst costs one Zenoh put, not one per message. Nothing
//! waits to fill a batch: a message that comes alone leaves at once. It
//! takes messages from the local
//! queue only while some remote bridge subscribes to the key: until then
//! the local service's overflow policy decides (`Block`: the publishers
//! wait; `DropOldest`: the oldest go). Zenoh's congestion control is
//! `Block`, so a slow network slows the bridge the same way.
//! When its local service has no live publisher left (but its own), it says
//! so on the key ("publishers gone").
//!
//! **In** (Zenoh callbacks): every message from another bridge is
//! published into the local service by the bridge's own publisher (the
//! service is created if missing, with the configured shape or the
//! origin's). The publisher is let go when every origin has said its
//! publishers are gone or has vanished from Zenoh (its liveliness token
//! went), so local subscribers see `Disconnected` as they would on the
//! origin machine.
//!
//! The bridge's memshare endpoints park at once when they wait
//! (`WaitStrategy::Park`, here and in rpc.rs): a bridge shares the machine
//! with the applications and with Zenoh's threads, and a spinning wait takes
//! the CPU they need (on 2 cores, memshare's default of 4000 spins made the
//! bridged round trip about 15 times slower than parking).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memshare::channel::{EndpointState, WaitStrategy};
use memshare::pubsub::{self, Publisher, PublisherId, ServiceConfig, Subscriber};
use memshare::Segment;
use zenoh::bytes::ZBytes;
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample, SampleKind};
use zenoh::Wait;

use crate::bridge::Ctx;
use crate::config::PubsubConfig;
use crate::stats::Counters;
use crate::wire::{
    push_record, Attachment, BridgeId, Origin, Records, ORIGIN_LEN, RECORD_HEADER_LEN,
};
use crate::{lock, Error, Result};

/// How long the out thread waits for a message before it looks at its
/// publishers' liveness, and the stop flag.
const IDLE: Duration = Duration::from_millis(50);

/// The most bytes of records the out thread gathers into one publication
/// (the batch is sent once it is this long, or once nothing more is
/// waiting). Well below Zenoh's 64 KiB batch: one publication, one batch.
pub(crate) const BATCH_BYTES: usize = 16 << 10;

/// Messages longer than this are put alone, with a "message" attachment
/// (copied once, straight from shared memory): batching them saves
/// nothing.
const ALONE: usize = 8 << 10;

/// The most remote bridges whose liveliness tokens an inbound side keeps
/// (a token past it is ignored, and said once: that bridge's messages are
/// published, but do not keep the local publisher attached). Zenoh peers
/// decide how many tokens there are, so the set is bounded.
pub(crate) const MAX_ORIGINS: usize = 1024;

/// The most (origin bridge, origin publisher) pairs whose last sequence
/// number an inbound side keeps, to count gaps as `lost`: a pair past it
/// is not tracked (its gaps are not counted). A pair goes when its bridge
/// says its publishers are gone or its liveliness token goes.
pub(crate) const MAX_TRACKED: usize = 4096;

/// The first wait before publishing into the local service again after it
/// failed (attaching or publishing); it doubles with each failure in a row
/// up to [`RETRY_MAX`]. Messages that come meanwhile are dropped (counted
/// as refused).
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between tries to publish into a failing local service.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// At most one warning about a failing local service per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The publisher ids of the bridge's own publishers of one service: what
/// it published there came from Zenoh and must not go back out.
pub(crate) type Own = Arc<Mutex<HashSet<u64>>>;

/// A carried service: what keeps it going.
pub(crate) struct Carried {
    pub counters: Arc<Counters>,
    pub threads: Vec<JoinHandle<()>>,
    /// Zenoh declarations held for the bridge's life.
    pub declarations: Vec<Box<dyn Send>>,
    /// The inbound side, to let go of its publisher when the bridge stops.
    pub inbound: Option<Arc<Mutex<Inbound>>>,
}

/// The liveliness token key of `bridge` carrying `key` out.
fn token_key(key: &str, bridge: BridgeId) -> String {
    format!("{key}/bridge/{bridge}")
}

/// The bridge id at the end of a liveliness token key.
fn token_bridge(token: &str) -> Option<BridgeId> {
    let hex = token.rsplit('/').next()?;
    u64::from_str_radix(hex, 16).ok().map(BridgeId)
}

/// Starts carrying `cfg`.
pub(crate) fn start(ctx: &Arc<Ctx>, cfg: &PubsubConfig) -> Result<Carried> {
    let key = cfg.key();
    let counters = Arc::new(Counters::default());
    let own: Own = Arc::default();
    let mut carried = Carried {
        counters: Arc::clone(&counters),
        threads: Vec::new(),
        declarations: Vec::new(),
        inbound: None,
    };
    if cfg.direction.into_local() {
        let inbound = Arc::new(Mutex::new(Inbound {
            ctx: Arc::clone(ctx),
            service: cfg.service.clone(),
            origin_header: cfg.origin_header,
            create: cfg.create.map(|c| c.service_config()),
            publisher: None,
            held: cfg.create.is_some(),
            alive: HashSet::new(),
            origins: HashSet::new(),
            last: HashMap::new(),
            own: Arc::clone(&own),
            counters: Arc::clone(&counters),
            warned: false,
            warned_origins: false,
            failing: None,
        }));
        if let Some(config) = cfg.create {
            // Create the service now, so that local subscribers can attach
            // before the first message comes.
            lock(&inbound).attach(config.service_config())?;
        }
        // Tokens first: an origin's token is then known before the
        // messages it sends once it sees this bridge's subscriber.
        let alive = Arc::clone(&inbound);
        let tokens = ctx
            .session
            .liveliness()
            .declare_subscriber(format!("{key}/bridge/*"))
            .history(true)
            .callback(move |sample: Sample| {
                if let Some(bridge) = token_bridge(sample.key_expr().as_str()) {
                    let mut inbound = lock(&alive);
                    match sample.kind() {
                        SampleKind::Put => inbound.token_seen(bridge),
                        SampleKind::Delete => inbound.token_gone(bridge),
                    }
                }
            })
            .wait()
            .map_err(|e| {
                Error::zenoh(
                    format!("declaring a liveliness subscriber on {key}/bridge/*"),
                    e,
                )
            })?;
        let data = Arc::clone(&inbound);
        let subscriber = ctx
            .session
            .declare_subscriber(key.clone())
            .allowed_origin(Locality::Remote)
            .callback(move |sample: Sample| {
                lock(&data).on_sample(&sample);
            })
            .wait()
            .map_err(|e| Error::zenoh(format!("declaring a subscriber on {key}"), e))?;
        carried.declarations.push(Box::new(subscriber));
        carried.declarations.push(Box::new(tokens));
        carried.inbound = Some(inbound);
    }
    if cfg.direction.out() {
        let publisher = ctx
            .session
            .declare_publisher(key.clone())
            .congestion_control(CongestionControl::Block)
            // Express: each put (a batch already) leaves at once, without
            // Zenoh's batching of puts behind it (memshare-bridge bench
            // --only latency: bridged median round trip 64 -> 50 us in one
            // comparison; Zenoh alone with express the same as without).
            .express(true)
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(|e| Error::zenoh(format!("declaring a publisher on {key}"), e))?;
        let gate = Arc::new(Gate::default());
        let initial = publisher
            .matching_status()
            .wait()
            .map_err(|e| Error::zenoh(format!("asking who subscribes to {key}"), e))?
            .matching();
        gate.set(initial);
        let g = Arc::clone(&gate);
        publisher
            .matching_listener()
            .callback(move |status| g.set(status.matching()))
            .background()
            .wait()
            .map_err(|e| Error::zenoh(format!("watching who subscribes to {key}"), e))?;
        let token = ctx
            .session
            .liveliness()
            .declare_token(token_key(&key, ctx.id))
            .wait()
            .map_err(|e| Error::zenoh(format!("declaring the liveliness token of {key}"), e))?;
        carried.declarations.push(Box::new(token));
        let out = Outbound {
            ctx: Arc::clone(ctx),
            service: cfg.service.clone(),
            publisher,
            gate,
            own,
            counters,
        };
        let thread = std::thread::Builder::new()
            .name(format!("out {}", cfg.service))
            .spawn(move || out.run())
            .expect("spawning a thread");
        carried.threads.push(thread);
    }
    Ok(carried)
}

/// Whether some remote bridge subscribes to the key (Zenoh's matching
/// status), and a way to wait until one does. `open` is written under
/// `lock` (so a waiter cannot miss the notification) and read without it on
/// the fast path: Relaxed, as it guards no other data.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, open: bool) {
        let _guard = lock(&self.lock);
        self.open.store(open, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Whether it is open, waiting at most `timeout` for it to open.
    fn wait(&self, timeout: Duration) -> bool {
        if self.open.load(Ordering::Relaxed) {
            return true;
        }
        let guard = lock(&self.lock);
        let (_guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |_| !self.open.load(Ordering::Relaxed))
            .unwrap_or_else(PoisonError::into_inner);
        self.open.load(Ordering::Relaxed)
    }
}

/// The out side of one service.
struct Outbound {
    ctx: Arc<Ctx>,
    service: String,
    publisher: zenoh::pubsub::Publisher<'static>,
    gate: Arc<Gate>,
    own: Own,
    counters: Arc<Counters>,
}

impl Outbound {
    fn run(self) {
        while !self.ctx.stopped() {
            let Some((subscriber, history)) = self.attach() else {
                return;
            };
            self.ctx.info(format!(
                "{}: attached to the local service as subscriber {}",
                self.service,
                subscriber.slot()
            ));
            if let Err(e) = self.forward(&subscriber, &history) {
                self.ctx.warn(format!("{e}; attaching again"));
                std::thread::sleep(IDLE);
            }
        }
    }

    /// Attaches to the local service once it exists: the subscriber, and
    /// the next sequence number of each publisher before it attached
    /// (what it receives below those is history, not sent on).
    fn attach(&self) -> Option<(Subscriber, HashMap<u64, u64>)> {
        let mut warned = false;
        let mut warn = |what: String| {
            if !std::mem::replace(&mut warned, true) {
                self.ctx.warn(what);
            }
        };
        let mut tries = 0u32;
        loop {
            if self.ctx.stopped() {
                return None;
            }
            match Segment::open(&self.service) {
                Err(memshare::Error::NotFound { .. }) => {
                    std::thread::sleep(IDLE);
                    continue;
                }
                Err(e) => warn(format!("{}: {e}; trying again", self.service)),
                Ok(segment) => match pubsub::inspect(&segment) {
                    // Its creator may not have written its header yet: a
                    // moment later it is a service.
                    Err(_) if tries < 200 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(e) => warn(format!("{}: {e}; trying again", self.service)),
                    Ok(state) => {
                        let heads = state
                            .publishers
                            .iter()
                            .map(|p| (p.id.0, p.next_sequence))
                            .collect();
                        match Subscriber::attach(&segment) {
                            Ok(mut s) => {
                                s.set_wait_strategy(WaitStrategy::Park);
                                return Some((s, heads));
                            }
                            Err(e) => warn(format!("{}: {e}; trying again", self.service)),
                        }
                    }
                },
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends every new message of `subscriber` on, until the bridge stops
    /// (`Ok`) or the local service fails (`Err`: attach again).
    fn forward(&self, subscriber: &Subscriber, history: &HashMap<u64, u64>) -> Result<()> {
        let config = subscriber.config();
        // Whether foreign publishers were seen since "publishers gone" was
        // last said (or since the start).
        let mut active = false;
        let memshare_err = |e| Error::memshare(&self.service, e);
        let mut batch = Batch::default();
        // The last publisher seen, and whether its messages go out (and
        // from which sequence on): most messages come from the publisher
        // of the one before, so the mutex of `own` and the history map are
        // asked once per publisher, not once per message. A publisher id
        // is drawn at random when it attaches, so a verdict never changes.
        let mut last: Option<(PublisherId, Option<u64>)> = None;
        loop {
            if self.ctx.stopped() {
                return Ok(());
            }
            if !self.gate.wait(IDLE) {
                // Ask again now and then: a change between the first
                // answer and the listener's declaration would be missed.
                if let Ok(status) = self.publisher.matching_status().wait() {
                    self.gate.set(status.matching());
                }
                continue;
            }
            // The first wait's outcome, handled once the batch is out.
            let mut outcome = Ok(());
            let mut next = subscriber.recv_timeout(IDLE).map(Some);
            loop {
                let sample = match next {
                    Ok(Some(sample)) => sample,
                    Ok(None) => break,
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                };
                let publisher = sample.publisher();
                let from = match last {
                    Some((p, from)) if p == publisher => from,
                    _ => {
                        let from = if self.is_own(publisher) {
                            None
                        } else {
                            Some(history.get(&publisher.0).copied().unwrap_or(0))
                        };
                        last = Some((publisher, from));
                        from
                    }
                };
                if from.is_some_and(|from| sample.sequence() >= from) {
                    if sample.len() > ALONE {
                        self.flush(&mut batch, config)?;
                        let attachment = Attachment::Message {
                            bridge: self.ctx.id,
                            publisher,
                            sequence: sample.sequence(),
                            config,
                        }
                        .encode();
                        let payload = ZBytes::from(&*sample);
                        drop(sample);
                        self.put(payload, attachment)?;
                        Counters::add(&self.counters.sent, 1);
                    } else {
                        batch.push(publisher, sample.sequence(), &sample);
                        drop(sample);
                        if batch.payload.len() >= BATCH_BYTES {
                            self.flush(&mut batch, config)?;
                        }
                    }
                    active = true;
                } else {
                    drop(sample);
                }
                // What else is waiting, without waiting for it.
                next = match subscriber.try_recv() {
                    Ok(sample) => Ok(sample),
                    // Disconnected and the like: the next wait says it
                    // again, once the batch is out.
                    Err(_) => Ok(None),
                };
            }
            self.flush(&mut batch, config)?;
            match outcome {
                Ok(()) => {}
                Err(memshare::Error::TimedOut { .. }) => {
                    if active && !self.foreign_publishers(subscriber).map_err(memshare_err)? {
                        self.say_gone()?;
                        active = false;
                    }
                }
                Err(memshare::Error::Disconnected { .. }) => {
                    if active {
                        self.say_gone()?;
                        active = false;
                    }
                    std::thread::sleep(IDLE);
                }
                Err(e) => return Err(memshare_err(e)),
            }
        }
    }

    /// Puts what `batch` holds, if anything: one message as a "message"
    /// (its payload the message alone), more as "messages".
    fn flush(&self, batch: &mut Batch, config: ServiceConfig) -> Result<()> {
        let count = std::mem::take(&mut batch.count);
        let (payload, attachment) = match count {
            0 => return Ok(()),
            1 => {
                let mut payload = std::mem::take(&mut batch.payload);
                let attachment = Attachment::Message {
                    bridge: self.ctx.id,
                    publisher: PublisherId(u64::from_le_bytes(
                        payload[0..8].try_into().expect("8 bytes"),
                    )),
                    sequence: u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")),
                    config,
                };
                // At most ALONE bytes move.
                payload.drain(..RECORD_HEADER_LEN);
                (payload, attachment)
            }
            n => (
                std::mem::take(&mut batch.payload),
                Attachment::Messages {
                    bridge: self.ctx.id,
                    count: n,
                    config,
                },
            ),
        };
        self.put(ZBytes::from(payload), attachment.encode())?;
        Counters::add(&self.counters.sent, count);
        Ok(())
    }

    fn put(&self, payload: ZBytes, attachment: Vec<u8>) -> Result<()> {
        self.publisher
            .put(payload)
            .attachment(attachment)
            .wait()
            .map_err(|e| Error::zenoh(format!("putting on {}", self.publisher.key_expr()), e))?;
        Counters::add(&self.counters.puts, 1);
        Ok(())
    }

    fn is_own(&self, publisher: PublisherId) -> bool {
        lock(&self.own).contains(&publisher.0)
    }

    /// Whether the local service has a live publisher other than the
    /// bridge's own.
    fn foreign_publishers(&self, subscriber: &Subscriber) -> memshare::Result<bool> {
        let state = pubsub::inspect(subscriber.segment())?;
        Ok(state
            .publishers
            .iter()
            .any(|p| p.state == EndpointState::Attached && !self.is_own(p.id)))
    }

    fn say_gone(&self) -> Result<()> {
        self.ctx.info(format!(
            "{}: no local publisher left: telling the remote bridges",
            self.service
        ));
        self.publisher
            .put(ZBytes::new())
            .attachment(
                Attachment::PublishersGone {
                    bridge: self.ctx.id,
                }
                .encode(),
            )
            .wait()
            .map_err(|e| Error::zenoh(format!("putting on {}", self.publisher.key_expr()), e))
    }
}

/// Records gathered for one publication ([`crate::wire::push_record`]).
#[derive(Default)]
struct Batch {
    payload: Vec<u8>,
    count: u64,
}

impl Batch {
    fn push(&mut self, publisher: PublisherId, sequence: u64, message: &[u8]) {
        if self.payload.capacity() == 0 {
            self.payload
                .reserve(BATCH_BYTES + ALONE + RECORD_HEADER_LEN);
        }
        push_record(&mut self.payload, publisher, sequence, message);
        self.count += 1;
    }
}

/// The in side of one service: the bridge's local publisher and what it
/// knows of the origins.
pub(crate) struct Inbound {
    ctx: Arc<Ctx>,
    service: String,
    origin_header: bool,
    /// The configured shape of the local service.
    create: Option<ServiceConfig>,
    publisher: Option<Publisher>,
    /// The publisher was attached from the start (`[pubsub.create]`) and
    /// is kept until every origin is gone for the first time.
    held: bool,
    /// The remote bridges whose liveliness token is up (at most
    /// [`MAX_ORIGINS`]).
    alive: HashSet<BridgeId>,
    /// Those of `alive` whose publishers are live, as far as known: the
    /// local publisher is kept while there is one.
    origins: HashSet<BridgeId>,
    /// The last sequence number seen of each (bridge, publisher) of an
    /// origin in `alive` (at most [`MAX_TRACKED`]).
    last: HashMap<(BridgeId, u64), u64>,
    own: Own,
    counters: Arc<Counters>,
    /// A "too large" was reported already.
    warned: bool,
    /// "Too many origins" was reported already.
    warned_origins: bool,
    /// Publishing into the local service fails: since when it waits.
    failing: Option<Failing>,
}

/// A local service that failed: when to try again, and what to say.
struct Failing {
    /// Failures in a row.
    failures: u64,
    /// Messages dropped while waiting to try again, since the last warning.
    dropped: u64,
    /// The wait after the last failure.
    backoff: Duration,
    /// When to try again.
    retry_at: Instant,
    /// When a warning was last said, if one was.
    warned_at: Option<Instant>,
}

impl Inbound {
    /// Attaches the bridge's publisher to the local service, creating it
    /// with `config` if it does not exist.
    fn attach(&mut self, config: ServiceConfig) -> Result<&mut Publisher> {
        if self.publisher.is_none() {
            let mut p = Publisher::open_or_create(&self.service, config)
                .map_err(|e| Error::memshare(&self.service, e))?;
            p.set_wait_strategy(WaitStrategy::Park);
            lock(&self.own).insert(p.id().0);
            self.ctx.info(format!(
                "{}: publishing into the local service as publisher {}",
                self.service,
                p.id()
            ));
            self.publisher = Some(p);
        }
        Ok(self.publisher.as_mut().expect("just attached"))
    }

    /// Lets go of the local publisher (its subscribers see `Disconnected`
    /// once they have everything).
    pub(crate) fn release(&mut self) {
        self.held = false;
        if self.publisher.take().is_some() {
            self.ctx.info(format!(
                "{}: no remote publisher left: detached from the local service",
                self.service
            ));
        }
    }

    /// The liveliness token of `bridge` is up.
    fn token_seen(&mut self, bridge: BridgeId) {
        if bridge == self.ctx.id || self.alive.contains(&bridge) {
            return;
        }
        if self.alive.len() >= MAX_ORIGINS {
            if !std::mem::replace(&mut self.warned_origins, true) {
                self.ctx.warn(format!(
                    "{}: more than {MAX_ORIGINS} remote bridges: the messages of those past it \
                     are published but do not keep the local publisher attached",
                    self.service
                ));
            }
            return;
        }
        self.alive.insert(bridge);
    }

    /// The liveliness token of `bridge` went: it stopped, died, or the link
    /// to it dropped.
    fn token_gone(&mut self, bridge: BridgeId) {
        self.alive.remove(&bridge);
        self.origin_gone(bridge);
    }

    /// `bridge` has no live publisher: what is known of its publishers
    /// goes, and the local publisher with the last origin.
    fn origin_gone(&mut self, bridge: BridgeId) {
        self.last.retain(|&(b, _), _| b != bridge);
        if self.origins.remove(&bridge) && self.origins.is_empty() {
            self.release();
        }
    }

    /// A message of `bridge` came: it counts as an origin if its token is
    /// up. Whether it does.
    fn origin_active(&mut self, bridge: BridgeId) -> bool {
        let alive = self.alive.contains(&bridge);
        if alive {
            self.origins.insert(bridge);
        }
        alive
    }

    /// After publishing what a bridge without a token sent: with no origin
    /// left to end it, the local publisher goes at once (local subscribers
    /// see `Disconnected` once they have it), rather than never.
    fn release_if_no_origin(&mut self) {
        if self.origins.is_empty() && !self.held {
            self.release();
        }
    }

    fn on_sample(&mut self, sample: &Sample) {
        self.on_publication(
            sample.key_expr().as_str(),
            sample.attachment(),
            sample.payload(),
        );
    }

    /// Handles a publication on the key: `attachment` and `payload` are as
    /// they came from the network, so nothing in them is trusted.
    fn on_publication(&mut self, key: &str, attachment: Option<&ZBytes>, payload: &ZBytes) {
        let attachment = match attachment.map(|a| Attachment::decode(&a.to_bytes())) {
            Some(Ok(a)) if a.bridge() != self.ctx.id => a,
            Some(Ok(_)) => return Counters::add(&self.counters.refused, 1),
            Some(Err(e)) => {
                Counters::add(&self.counters.refused, 1);
                return self.ctx.info(format!("{key}: {e}: dropped"));
            }
            None => {
                Counters::add(&self.counters.refused, 1);
                return self
                    .ctx
                    .info(format!("{key}: a publication without attachment: dropped"));
            }
        };
        match attachment {
            Attachment::Message {
                bridge,
                publisher,
                sequence,
                config,
            } => {
                let alive = self.origin_active(bridge);
                if alive {
                    self.received(bridge, publisher, sequence, sequence);
                }
                let origin = Origin {
                    bridge,
                    publisher,
                    sequence,
                };
                // A large message comes in several slices: copied from each.
                self.publish(payload.len(), payload.slices(), origin, config);
                if !alive {
                    self.release_if_no_origin();
                }
            }
            Attachment::Messages {
                bridge,
                count,
                config,
            } => {
                let alive = self.origin_active(bridge);
                let payload = payload.to_bytes();
                // Runs of one publisher's records update `last` once.
                let mut run: Option<(PublisherId, u64, u64)> = None;
                for record in Records::new(&payload, count) {
                    let (publisher, sequence, message) = match record {
                        Ok(r) => r,
                        Err(e) => {
                            Counters::add(&self.counters.refused, 1);
                            self.ctx.info(format!("{key}: {e}: the rest dropped"));
                            break;
                        }
                    };
                    run = match run {
                        Some((p, first, prev))
                            if p == publisher && prev.checked_add(1) == Some(sequence) =>
                        {
                            Some((p, first, sequence))
                        }
                        other => {
                            if let Some((p, first, prev)) = other.filter(|_| alive) {
                                self.received(bridge, p, first, prev);
                            }
                            Some((publisher, sequence, sequence))
                        }
                    };
                    let origin = Origin {
                        bridge,
                        publisher,
                        sequence,
                    };
                    self.publish(message.len(), std::iter::once(message), origin, config);
                }
                if let Some((p, first, prev)) = run.filter(|_| alive) {
                    self.received(bridge, p, first, prev);
                }
                if !alive {
                    self.release_if_no_origin();
                }
            }
            Attachment::PublishersGone { bridge } => self.origin_gone(bridge),
            Attachment::Request { .. } => Counters::add(&self.counters.refused, 1),
        }
    }

    /// Notes that messages `first..=last` of `publisher` behind `bridge`
    /// came (in order), counting the gap before them as lost.
    fn received(&mut self, bridge: BridgeId, publisher: PublisherId, first: u64, last: u64) {
        let key = (bridge, publisher.0);
        if self.last.len() >= MAX_TRACKED && !self.last.contains_key(&key) {
            return;
        }
        if let Some(before) = self.last.insert(key, last) {
            // Wire values: a sequence at or below the last one (a restart,
            // or a hostile peer) is no gap, and nothing here may overflow.
            let gap = first.saturating_sub(before).saturating_sub(1);
            if gap > 0 {
                Counters::add(&self.counters.lost, gap);
            }
        }
    }

    /// Publishes the message of `len` bytes in `parts` into the local
    /// service; a failure is said, and the publisher attached afresh for
    /// the next message.
    fn publish<'a>(
        &mut self,
        len: usize,
        parts: impl Iterator<Item = &'a [u8]>,
        origin: Origin,
        config: ServiceConfig,
    ) {
        let now = Instant::now();
        if let Some(f) = self.failing.as_mut().filter(|f| now < f.retry_at) {
            f.dropped += 1;
            return Counters::add(&self.counters.refused, 1);
        }
        match self.try_publish(len, parts, origin, config) {
            Ok(()) => {
                if let Some(f) = self.failing.take() {
                    self.ctx.info(format!(
                        "{}: publishing again after {} failures",
                        self.service, f.failures
                    ));
                }
            }
            Err(e) => {
                self.publisher = None;
                Counters::add(&self.counters.refused, 1);
                let f = self.failing.get_or_insert(Failing {
                    failures: 0,
                    dropped: 0,
                    backoff: RETRY_FIRST / 2,
                    retry_at: now,
                    warned_at: None,
                });
                f.failures += 1;
                f.backoff = (f.backoff * 2).min(RETRY_MAX);
                f.retry_at = now + f.backoff;
                if f.warned_at
                    .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
                {
                    f.warned_at = Some(now);
                    let dropped = std::mem::take(&mut f.dropped);
                    self.ctx.warn(format!(
                        "{e} ({} failures in a row; {dropped} messages dropped since the last \
                         warning; trying again in {} ms, at most every {} s)",
                        f.failures,
                        f.backoff.as_millis(),
                        RETRY_MAX.as_secs()
                    ));
                }
            }
        }
    }

    fn try_publish<'a>(
        &mut self,
        len: usize,
        parts: impl Iterator<Item = &'a [u8]>,
        origin: Origin,
        config: ServiceConfig,
    ) -> Result<()> {
        let header = if self.origin_header { ORIGIN_LEN } else { 0 };
        let config = match self.create {
            Some(create) => create,
            // The origin's shape, from the wire: a length that leaves no
            // room for the header is no shape (nor would the sum be).
            None => match config.get_max_message_len().checked_add(header as u64) {
                Some(max) => config.max_message_len(max),
                None => {
                    Counters::add(&self.counters.refused, 1);
                    self.ctx.info(format!(
                        "{}: a message whose service shape has max_message_len {}: dropped",
                        self.service,
                        config.get_max_message_len()
                    ));
                    return Ok(());
                }
            },
        };
        let len = header + len;
        self.attach(config)?;
        let Inbound {
            ctx,
            service,
            publisher,
            counters,
            warned,
            ..
        } = self;
        let publisher = publisher.as_mut().expect("just attached");
        let max = publisher.config().get_max_message_len();
        let published = loop {
            match publisher.loan_timeout(len, IDLE) {
                Ok(mut loan) => {
                    if header > 0 {
                        loan[..header].copy_from_slice(&origin.to_bytes());
                    }
                    let mut at = header;
                    for part in parts {
                        loan[at..at + part.len()].copy_from_slice(part);
                        at += part.len();
                    }
                    loan.publish();
                    break true;
                }
                // Block: a local subscriber's queue is full. Wait, unless
                // the bridge stops.
                Err(memshare::Error::TimedOut { .. }) if !ctx.stopped() => {}
                Err(memshare::Error::TimedOut { .. }) => return Ok(()),
                Err(memshare::Error::TooLarge { .. }) => break false,
                Err(e) => return Err(Error::memshare(service, e)),
            }
        };
        if published {
            Counters::add(&counters.published, 1);
        } else {
            Counters::add(&counters.too_large, 1);
            if !std::mem::replace(warned, true) {
                ctx.warn(format!(
                    "{service}: a message of {len} bytes does not fit the local service \
                     (max_message_len {max}): dropped (and every such message after it)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service name of this test process.
    fn name(tag: &str) -> String {
        format!("bu-{}-{tag}", std::process::id())
    }

    fn inbound(ctx: &Arc<Ctx>, service: &str, origin_header: bool) -> Inbound {
        Inbound {
            ctx: Arc::clone(ctx),
            service: service.to_owned(),
            origin_header,
            create: None,
            publisher: None,
            held: false,
            alive: HashSet::new(),
            origins: HashSet::new(),
            last: HashMap::new(),
            own: Own::default(),
            counters: Arc::default(),
            warned: false,
            warned_origins: false,
            failing: None,
        }
    }

    fn message(bridge: u64, publisher: u64, sequence: u64, config: ServiceConfig) -> ZBytes {
        ZBytes::from(
            Attachment::Message {
                bridge: BridgeId(bridge),
                publisher: PublisherId(publisher),
                sequence,
                config,
            }
            .encode(),
        )
    }

    fn gone(service: &str) {
        assert!(
            matches!(
                Segment::open(service),
                Err(memshare::Error::NotFound { .. })
            ),
            "{service} left behind: {:?}",
            Segment::open(service).map(|_| ())
        );
    }

    #[test]
    fn hostile_sequence_numbers_and_shapes_neither_panic_nor_count_garbage() {
        let ctx = Ctx::for_tests();
        let service = name("hostile");
        let mut i = inbound(&ctx, &service, false);
        i.token_seen(BridgeId(1));
        let shape = ServiceConfig::new();
        // A batch from one publisher: u64::MAX, then 0 (which follows it
        // only if the sequence wrapped).
        let mut records = Vec::new();
        push_record(&mut records, PublisherId(7), u64::MAX, b"first");
        push_record(&mut records, PublisherId(7), 0, b"second");
        let batch = Attachment::Messages {
            bridge: BridgeId(1),
            count: 2,
            config: shape,
        };
        let batch = ZBytes::from(batch.encode());
        i.on_publication("k", Some(&batch), &ZBytes::from(records));
        // Twice the last sequence number there is, alone.
        for _ in 0..2 {
            let one = message(1, 8, u64::MAX, shape);
            i.on_publication("k", Some(&one), &ZBytes::from(b"third".to_vec()));
        }
        let stats = i.counters.snapshot(&service, "pubsub");
        assert_eq!((stats.published, stats.lost, stats.refused), (4, 0, 0));
        drop(i);
        gone(&service);

        // A shape whose max_message_len leaves no room for the origin
        // header: dropped, and no service made of the wrapped sum.
        let service = name("shape");
        let mut i = inbound(&ctx, &service, true);
        let huge = message(1, 9, 0, shape.max_message_len(u64::MAX - 8));
        i.on_publication("k", Some(&huge), &ZBytes::from(b"x".to_vec()));
        let stats = i.counters.snapshot(&service, "pubsub");
        assert_eq!((stats.published, stats.refused), (0, 1));
        assert!(i.publisher.is_none());
        drop(i);
        gone(&service);
    }

    #[test]
    fn what_is_kept_of_origins_is_bounded_and_pruned() {
        let ctx = Ctx::for_tests();
        let service = name("bounded");
        let mut i = inbound(&ctx, &service, false);
        let shape = ServiceConfig::new();
        let payload = ZBytes::from(b"m".to_vec());
        i.token_seen(BridgeId(1));
        // One origin with ever new publisher ids, and bridges without a
        // token: what is kept stays bounded.
        for n in 0..(MAX_TRACKED as u64 + 500) {
            let one = message(1, n + 1, 0, shape);
            i.on_publication("k", Some(&one), &payload);
            let other = message(1000 + n, 1, 0, shape);
            i.on_publication("k", Some(&other), &payload);
        }
        assert_eq!(i.last.len(), MAX_TRACKED);
        assert_eq!(i.origins.len(), 1);
        for n in 0..(MAX_ORIGINS as u64 + 10) {
            i.token_seen(BridgeId(5000 + n));
        }
        assert_eq!(i.alive.len(), MAX_ORIGINS);
        // The origin goes: so does what was known of its publishers.
        i.token_gone(BridgeId(1));
        assert!(i.last.is_empty() && i.origins.is_empty());
        assert!(i.publisher.is_none());
        drop(i);
        gone(&service);
    }

    #[test]
    fn a_message_from_a_bridge_without_a_token_does_not_keep_subscribers_waiting() {
        let ctx = Ctx::for_tests();
        let service = name("tokenless");
        let local = Publisher::create(&service, ServiceConfig::new()).expect("a service");
        let subscriber = Subscriber::open(&service).expect("a subscriber");
        drop(local);
        let mut i = inbound(&ctx, &service, false);
        let fake = message(77, 1, 0, ServiceConfig::new());
        i.on_publication("k", Some(&fake), &ZBytes::from(b"fake".to_vec()));
        let sample = subscriber
            .recv_timeout(Duration::from_secs(1))
            .expect("the message");
        assert_eq!(&*sample, b"fake");
        drop(sample);
        let next = subscriber.recv_timeout(Duration::from_secs(1)).map(|_| ());
        assert!(
            matches!(next, Err(memshare::Error::Disconnected { .. })),
            "{next:?}"
        );
        drop((i, subscriber));
        gone(&service);
    }

    #[test]
    fn a_failing_local_service_is_tried_again_with_a_backoff_not_per_message() {
        let ctx = Ctx::for_tests();
        // A name no service can have: every attach fails.
        let mut i = inbound(&ctx, "a-name-longer-than-thirty-bytes-long", false);
        i.token_seen(BridgeId(1));
        for n in 0..100 {
            let one = message(1, 1, n, ServiceConfig::new());
            i.on_publication("k", Some(&one), &ZBytes::from(b"m".to_vec()));
            if n == 0 {
                // The wait made long: a loaded machine that deschedules this
                // thread beyond the first wait (100 ms) must not make a
                // second try in the loop.
                let f = i.failing.as_mut().expect("failing after the first");
                assert!(f.retry_at > Instant::now(), "a wait after the failure");
                f.retry_at = Instant::now() + Duration::from_secs(3600);
            }
        }
        let f = i.failing.as_ref().expect("failing");
        assert_eq!((f.failures, f.dropped), (1, 99));
        assert_eq!(i.counters.snapshot("x", "pubsub").refused, 100);
        // Once the wait is over, it tries again, and waits twice as long.
        i.failing.as_mut().expect("failing").retry_at = Instant::now();
        let one = message(1, 1, 100, ServiceConfig::new());
        i.on_publication("k", Some(&one), &ZBytes::from(b"m".to_vec()));
        let f = i.failing.as_ref().expect("failing");
        assert_eq!((f.failures, f.backoff), (2, RETRY_FIRST * 2));
    }
}
