//! Carrying a publish-subscribe service.
//!
//! **Out** (a thread): the bridge is a subscriber of the local service and
//! puts every message published there, except its own and the history it
//! found when it attached, on the service's key expression, with a
//! "message" attachment ([`crate::wire`]). It takes messages from the local
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
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
use crate::wire::{Attachment, BridgeId, Origin, ORIGIN_LEN};
use crate::{Error, Result};

/// How long the out thread waits for a message before it looks at its
/// publishers' liveness, and the stop flag.
const IDLE: Duration = Duration::from_millis(50);

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
            origins: HashSet::new(),
            last: HashMap::new(),
            own: Arc::clone(&own),
            counters: Arc::clone(&counters),
            warned: false,
        }));
        if let Some(config) = cfg.create {
            // Create the service now, so that local subscribers can attach
            // before the first message comes.
            inbound
                .lock()
                .expect("not poisoned")
                .attach(config.service_config())?;
        }
        let data = Arc::clone(&inbound);
        let subscriber = ctx
            .session
            .declare_subscriber(key.clone())
            .allowed_origin(Locality::Remote)
            .callback(move |sample: Sample| {
                data.lock().expect("not poisoned").on_sample(&sample);
            })
            .wait()
            .map_err(|e| Error::zenoh(format!("declaring a subscriber on {key}"), e))?;
        let alive = Arc::clone(&inbound);
        let tokens = ctx
            .session
            .liveliness()
            .declare_subscriber(format!("{key}/bridge/*"))
            .history(true)
            .callback(move |sample: Sample| {
                if sample.kind() == SampleKind::Delete {
                    if let Some(bridge) = token_bridge(sample.key_expr().as_str()) {
                        alive.lock().expect("not poisoned").origin_gone(bridge);
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
        carried.declarations.push(Box::new(subscriber));
        carried.declarations.push(Box::new(tokens));
        carried.inbound = Some(inbound);
    }
    if cfg.direction.out() {
        let publisher = ctx
            .session
            .declare_publisher(key.clone())
            .congestion_control(CongestionControl::Block)
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
        let _guard = self.lock.lock().expect("not poisoned");
        self.open.store(open, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Whether it is open, waiting at most `timeout` for it to open.
    fn wait(&self, timeout: Duration) -> bool {
        if self.open.load(Ordering::Relaxed) {
            return true;
        }
        let guard = self.lock.lock().expect("not poisoned");
        let (_guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |_| !self.open.load(Ordering::Relaxed))
            .expect("not poisoned");
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
            match subscriber.recv_timeout(IDLE) {
                Ok(sample) => {
                    let publisher = sample.publisher();
                    if self.is_own(publisher)
                        || history
                            .get(&publisher.0)
                            .is_some_and(|&h| sample.sequence() < h)
                    {
                        continue;
                    }
                    let attachment = Attachment::Message {
                        bridge: self.ctx.id,
                        publisher,
                        sequence: sample.sequence(),
                        config,
                    }
                    .encode();
                    let payload = ZBytes::from(&*sample);
                    drop(sample);
                    self.publisher
                        .put(payload)
                        .attachment(attachment)
                        .wait()
                        .map_err(|e| {
                            Error::zenoh(format!("putting on {}", self.publisher.key_expr()), e)
                        })?;
                    Counters::add(&self.counters.sent, 1);
                    active = true;
                }
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

    fn is_own(&self, publisher: PublisherId) -> bool {
        self.own
            .lock()
            .expect("not poisoned")
            .contains(&publisher.0)
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

/// The in side of one service: the bridge's local publisher and what it
/// knows of the origins.
pub(crate) struct Inbound {
    ctx: Arc<Ctx>,
    service: String,
    origin_header: bool,
    /// The configured shape of the local service.
    create: Option<ServiceConfig>,
    publisher: Option<Publisher>,
    /// The remote bridges whose publishers are live, as far as known.
    origins: HashSet<BridgeId>,
    /// The last sequence number seen of each (bridge, publisher).
    last: HashMap<(BridgeId, u64), u64>,
    own: Own,
    counters: Arc<Counters>,
    /// A "too large" was reported already.
    warned: bool,
}

impl Inbound {
    /// Attaches the bridge's publisher to the local service, creating it
    /// with `config` if it does not exist.
    fn attach(&mut self, config: ServiceConfig) -> Result<&mut Publisher> {
        if self.publisher.is_none() {
            let mut p = Publisher::open_or_create(&self.service, config)
                .map_err(|e| Error::memshare(&self.service, e))?;
            p.set_wait_strategy(WaitStrategy::Park);
            self.own.lock().expect("not poisoned").insert(p.id().0);
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
        if self.publisher.take().is_some() {
            self.ctx.info(format!(
                "{}: no remote publisher left: detached from the local service",
                self.service
            ));
        }
    }

    fn origin_gone(&mut self, bridge: BridgeId) {
        if self.origins.remove(&bridge) && self.origins.is_empty() {
            self.release();
        }
    }

    fn on_sample(&mut self, sample: &Sample) {
        let attachment = match sample
            .attachment()
            .map(|a| Attachment::decode(&a.to_bytes()))
        {
            Some(Ok(a)) if a.bridge() != self.ctx.id => a,
            Some(Ok(_)) => return Counters::add(&self.counters.refused, 1),
            Some(Err(e)) => {
                Counters::add(&self.counters.refused, 1);
                return self
                    .ctx
                    .info(format!("{}: {e}: dropped", sample.key_expr()));
            }
            None => {
                Counters::add(&self.counters.refused, 1);
                return self.ctx.info(format!(
                    "{}: a publication without attachment: dropped",
                    sample.key_expr()
                ));
            }
        };
        match attachment {
            Attachment::Message {
                bridge,
                publisher,
                sequence,
                config,
            } => {
                if let Some(last) = self.last.insert((bridge, publisher.0), sequence) {
                    if sequence > last + 1 {
                        Counters::add(&self.counters.lost, sequence - last - 1);
                    }
                }
                self.origins.insert(bridge);
                let origin = Origin {
                    bridge,
                    publisher,
                    sequence,
                };
                if let Err(e) = self.publish(sample.payload(), origin, config) {
                    self.ctx.warn(e.to_string());
                    // Attach afresh for the next message.
                    self.publisher = None;
                }
            }
            Attachment::PublishersGone { bridge } => self.origin_gone(bridge),
            Attachment::Request { .. } => Counters::add(&self.counters.refused, 1),
        }
    }

    fn publish(&mut self, payload: &ZBytes, origin: Origin, config: ServiceConfig) -> Result<()> {
        let header = if self.origin_header { ORIGIN_LEN } else { 0 };
        let config = self.create.unwrap_or_else(|| {
            config.max_message_len(config.get_max_message_len() + header as u64)
        });
        let len = header + payload.len();
        let ctx = Arc::clone(&self.ctx);
        let service = self.service.clone();
        let publisher = self.attach(config)?;
        let max = publisher.config().get_max_message_len();
        let published = loop {
            match publisher.loan_timeout(len, IDLE) {
                Ok(mut loan) => {
                    if header > 0 {
                        loan[..header].copy_from_slice(&origin.to_bytes());
                    }
                    let mut at = header;
                    for slice in payload.slices() {
                        loan[at..at + slice.len()].copy_from_slice(slice);
                        at += slice.len();
                    }
                    loan.publish();
                    break true;
                }
                // Block: a local subscriber's queue is full. Wait, unless
                // the bridge stops.
                Err(memshare::Error::TimedOut { .. }) if !ctx.stopped() => {}
                Err(memshare::Error::TimedOut { .. }) => return Ok(()),
                Err(memshare::Error::TooLarge { .. }) => break false,
                Err(e) => return Err(Error::memshare(&service, e)),
            }
        };
        if published {
            Counters::add(&self.counters.published, 1);
        } else {
            Counters::add(&self.counters.too_large, 1);
            if !std::mem::replace(&mut self.warned, true) {
                self.ctx.warn(format!(
                    "{}: a message of {len} bytes does not fit the local service \
                     (max_message_len {max}): dropped (and every such message after it)",
                    self.service
                ));
            }
        }
        Ok(())
    }
}
