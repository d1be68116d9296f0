//! A wait set's members: what the set holds of each endpoint (its own
//! reference to the shared memory, the geometry the endpoint validated,
//! the endpoint's link), and how it asks whether a member's peers live.
//! The handshake itself is `watch.rs`.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::watch::{self, ChannelWatch, RpcWatch, SubscriberWatch, Watch};
use crate::channel::layout::{self as channel, Side};
use crate::channel::{Receiver, Sender};
use crate::endpoint::{Link, Liveness, Routes};
use crate::primitive::{FutexWord, Ordering};
use crate::pubsub::layout as pubsub;
use crate::pubsub::ring::SubCore;
use crate::pubsub::Subscriber;
use crate::rpc::layout as rpc;
use crate::rpc::server::Mirror;
use crate::rpc::{Client, Server};
use crate::{Result, Segment, ViewMut};

/// One member of a wait set. Public only as the (unnameable) type of the
/// sealed traits' method.
pub struct Member {
    kind: Kind,
    /// What the last look at the member's peers found: gone. While it
    /// says so, every wait asks again (and reports the member). (A
    /// server's dead clients are remembered in its member instead, and
    /// reported by `ready` until the server has seen them dead.)
    gone: bool,
}

enum Kind {
    Channel(ChannelMember),
    Subscriber(SubscriberMember),
    Server(ServerMember),
    Client(ClientMember),
}

// SAFETY: the pointers point into mappings the member owns (its own view,
// or a service's windows shared through an `Arc`); everything reached
// through them is atomics. Links are `Arc`s of atomics.
unsafe impl Send for Member {}

/// A channel's end: the header page, mapped by the set.
struct ChannelMember {
    header: NonNull<channel::Header>,
    side: Side,
    capacity: u64,
    /// The peer's position when the member was added: a move says a peer
    /// came (as for the endpoint's own `peer_moved`).
    peer_position: u64,
    peer_seen: bool,
    link: Arc<Link<AtomicU64>>,
    segment: Segment,
    /// The route of the side's word in the set's own view (Windows wakes
    /// a word through the event registered for its address: the set waits
    /// on the event its endpoint parks on, opened again by name; nothing
    /// on Unix, where the word itself is waited on). Dropped before the
    /// view.
    _routes: Routes,
    // Declared last: dropped after the pointer into it.
    view: ViewMut,
}

struct SubscriberMember {
    index: u32,
    link: Arc<Link>,
    /// What the set last learnt of each publisher slot's liveness.
    publishers: Liveness,
    service: crate::pubsub::service::Service,
}

struct ServerMember {
    link: Arc<Link<Box<[Mirror]>>>,
    /// The client instances the set saw dead, per region (0: none), so
    /// that it reports each while the server has not yet seen it dead.
    dead: Vec<u64>,
    service: crate::rpc::service::Service,
}

struct ClientMember {
    index: u32,
    server_instance: u64,
    link: Arc<Link<AtomicU64>>,
    abandoned: Arc<AtomicU64>,
    service: crate::rpc::service::Service,
}

impl Member {
    fn new(kind: Kind) -> Member {
        Member { kind, gone: false }
    }

    /// A channel's receiver, waiting for a message.
    pub(crate) fn receiver(rx: &Receiver) -> Result<Member> {
        let (ep, moved) = rx.wait_parts();
        Member::channel(ep, moved)
    }

    /// A channel's sender, waiting for room.
    pub(crate) fn sender(tx: &Sender) -> Result<Member> {
        let (ep, moved) = tx.wait_parts();
        Member::channel(ep, moved)
    }

    fn channel(ep: &crate::channel::endpoint::Endpoint, moved: bool) -> Result<Member> {
        let segment = ep.segment().clone();
        // The header page only: the set reads the positions, states and
        // parking words, never the ring.
        let view = segment.map(..channel::HEADER_LEN as u64)?;
        // SAFETY: the view maps the segment from offset 0, page-aligned, at least HEADER_LEN bytes
        // (the endpoint checked the segment's length when it attached); `Header` is `#[repr(C)]`
        // atomics and padding, valid for any bytes; the member keeps the view.
        let header = unsafe { NonNull::new_unchecked(view.as_mut_ptr().cast::<channel::Header>()) };
        // SAFETY: as above.
        let h = unsafe { header.as_ref() };
        let peer_position = h.position(ep.side.peer()).load(Ordering::Relaxed);
        let mut routes = Routes::default();
        routes.parks(&segment, h, &h.park(ep.side).futex)?;
        Ok(Member::new(Kind::Channel(ChannelMember {
            header,
            side: ep.side,
            capacity: ep.capacity(),
            peer_position,
            peer_seen: ep.peer_seen() || moved,
            link: Arc::clone(&ep.link),
            segment,
            _routes: routes,
            view,
        })))
    }

    pub(crate) fn subscriber(sub: &Subscriber) -> Result<Member> {
        let (service, index, link) = sub.wait_parts();
        Ok(Member::new(Kind::Subscriber(SubscriberMember {
            index,
            link: Arc::clone(link),
            publishers: Liveness::new(service.geometry.shape.max_publishers),
            service: service.clone(),
        })))
    }

    pub(crate) fn server(server: &Server) -> Result<Member> {
        let (service, link) = server.wait_parts();
        Ok(Member::new(Kind::Server(ServerMember {
            link: Arc::clone(link),
            dead: vec![0; service.geometry.shape.max_clients as usize],
            service: service.clone(),
        })))
    }

    pub(crate) fn client(client: &Client) -> Result<Member> {
        let (service, index, server_instance, link, abandoned) = client.wait_parts();
        Ok(Member::new(Kind::Client(ClientMember {
            index,
            server_instance,
            link: Arc::clone(link),
            abandoned: Arc::clone(abandoned),
            service: service.clone(),
        })))
    }

    /// Another member for the same endpoint, with mappings of its own (the
    /// async notifier's, which outlives any one wait of the set).
    #[cfg(feature = "async")]
    pub(crate) fn duplicate(&self) -> Result<Member> {
        let kind = match &self.kind {
            Kind::Channel(m) => {
                let view = m.segment.map(..channel::HEADER_LEN as u64)?;
                let ptr = view.as_mut_ptr().cast::<channel::Header>();
                // SAFETY: as in `Member::channel`: the header page of a
                // segment the endpoint validated, kept with the view.
                let header = unsafe { NonNull::new_unchecked(ptr) };
                let mut routes = Routes::default();
                // SAFETY: as just said: the header page, kept with the view.
                let h = unsafe { header.as_ref() };
                routes.parks(&m.segment, h, &h.park(m.side).futex)?;
                Kind::Channel(ChannelMember {
                    header,
                    side: m.side,
                    capacity: m.capacity,
                    peer_position: m.peer_position,
                    peer_seen: m.peer_seen,
                    link: Arc::clone(&m.link),
                    segment: m.segment.clone(),
                    _routes: routes,
                    view,
                })
            }
            Kind::Subscriber(m) => Kind::Subscriber(SubscriberMember {
                index: m.index,
                link: Arc::clone(&m.link),
                publishers: Liveness::new(m.service.geometry.shape.max_publishers),
                service: m.service.clone(),
            }),
            Kind::Server(m) => Kind::Server(ServerMember {
                link: Arc::clone(&m.link),
                dead: vec![0; m.dead.len()],
                service: m.service.clone(),
            }),
            Kind::Client(m) => Kind::Client(ClientMember {
                index: m.index,
                server_instance: m.server_instance,
                link: Arc::clone(&m.link),
                abandoned: Arc::clone(&m.abandoned),
                service: m.service.clone(),
            }),
        };
        Ok(Member::new(kind))
    }

    /// The endpoint's registration with the async notifier (made once, on
    /// a duplicate of `make()`'s member, and shared by every future and
    /// readiness descriptor of the endpoint and of its wait sets).
    #[cfg(feature = "async")]
    pub(crate) fn registration(
        &self,
    ) -> Result<std::sync::Arc<crate::aio::notifier::Registration>> {
        let slot = match &self.kind {
            Kind::Channel(m) => &m.link.aio,
            Kind::Subscriber(m) => &m.link.aio,
            Kind::Server(m) => &m.link.aio,
            Kind::Client(m) => &m.link.aio,
        };
        crate::aio::registration(slot, || self.duplicate())
    }

    /// Whether the member's peers attach and detach while it waits (a
    /// subscriber's publishers, a server's clients), so that the notifier
    /// looks at their pids at every round, not only when it starts
    /// watching.
    #[cfg(feature = "async")]
    pub(crate) fn peers_come_and_go(&self) -> bool {
        matches!(self.kind, Kind::Subscriber(_) | Kind::Server(_))
    }

    /// The processes whose deaths are all this member's peers' deaths, as
    /// their shared words say (hints: see `sys::watch_pid`), put in `out`
    /// (cleared first; a reused buffer, so that a look that finds the same
    /// pids allocates nothing); `false` if they cannot be named (no peer
    /// attached yet, a peer that wrote no pid): then the member's peers are
    /// asked every liveness interval. A subscriber's publishers and a
    /// server's clients are named (every attached one), and looked at
    /// again before every sleep (the notifier's: `peers_come_and_go`); a server
    /// with no client names none (`true` with nothing: nothing to ask; a
    /// client that attaches wakes the server's word).
    pub(crate) fn peer_pids_into(&self, out: &mut Vec<u32>) -> bool {
        out.clear();
        let pid = match &self.kind {
            Kind::Channel(m) => {
                let h = m.header();
                let peer = m.side.peer();
                if h.state(peer).load(Ordering::Acquire) != channel::STATE_ATTACHED {
                    return false;
                }
                h.pid(peer).load(Ordering::Relaxed)
            }
            Kind::Client(m) => {
                let h = m.service.header();
                if h.server.state.load(Ordering::Acquire) != rpc::SERVER_ATTACHED {
                    return false;
                }
                h.server.pid.load(Ordering::Relaxed)
            }
            Kind::Subscriber(m) => return m.publisher_pids(out),
            Kind::Server(m) => return m.client_pids(out),
        };
        named_pids(out, std::iter::once(pid))
    }

    /// Whether the member's endpoint was dropped.
    fn dropped(&self) -> bool {
        match &self.kind {
            Kind::Channel(m) => m.link.dropped(),
            Kind::Subscriber(m) => m.link.dropped(),
            Kind::Server(m) => m.link.dropped(),
            Kind::Client(m) => m.link.dropped(),
        }
    }

    /// Whether the memory under the member's mappings is gone (a peer
    /// truncated the segment): the endpoint then reports `Truncated`.
    fn faulted(&self) -> bool {
        match &self.kind {
            Kind::Channel(m) => m.view.check_intact().is_err(),
            Kind::Subscriber(m) => m.service.check_intact().is_err(),
            Kind::Server(m) => m.service.check_intact().is_err(),
            Kind::Client(m) => m.service.check_intact().is_err(),
        }
    }

    /// Whether the last look at the member's peers found them gone.
    pub(crate) fn gone(&self) -> bool {
        self.gone
    }

    /// Asks the kernel whether the member's peers live (one lock query per
    /// peer it relies on), and remembers the answer: `true` if they are
    /// gone, and then the endpoint is asked to look afresh too (its next
    /// try_ form asks the kernel rather than trust an older answer; so are
    /// the wait sets' async waits on it, `WaitSet::try_wait_asking`). An
    /// error asking (the kernel refused a lock query) asks them to look
    /// afresh too: their own look says what.
    pub(crate) fn check_peers(&mut self) -> Result<bool> {
        let gone = match &mut self.kind {
            Kind::Channel(m) => m.peer_gone(),
            Kind::Subscriber(m) => m.publishers_gone(),
            Kind::Server(m) => m.client_died(),
            Kind::Client(m) => m.server_gone(),
        };
        if !matches!(gone, Ok(false)) {
            match &self.kind {
                Kind::Channel(m) => m.link.request_recheck(),
                Kind::Subscriber(m) => m.link.request_recheck(),
                Kind::Server(m) => m.link.request_recheck(),
                Kind::Client(m) => m.link.request_recheck(),
            }
        }
        let gone = gone?;
        self.gone = gone && !matches!(self.kind, Kind::Server(_));
        Ok(gone)
    }

    /// Whether the endpoint was asked to look at its peers afresh (the
    /// notifier's member, or another set's, found one gone) and has not
    /// yet.
    pub(crate) fn recheck_requested(&self) -> bool {
        match &self.kind {
            Kind::Channel(m) => m.link.recheck_requested(),
            Kind::Subscriber(m) => m.link.recheck_requested(),
            Kind::Server(m) => m.link.recheck_requested(),
            Kind::Client(m) => m.link.recheck_requested(),
        }
    }
}

impl ChannelMember {
    fn header(&self) -> &channel::Header {
        // SAFETY: points into `view`, which lives as long as `self`.
        unsafe { self.header.as_ref() }
    }

    fn watch(&self) -> ChannelWatch<'_> {
        ChannelWatch {
            header: self.header(),
            side: self.side,
            parkers: &self.link.parkers,
            capacity: self.capacity,
            // (Process-local: what the endpoint's future waits for.)
            frame: self.link.state.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// As `Endpoint::peer_gone`: the peer detached, or it was seen
    /// (attached, or moving its position) and no longer holds its lock.
    fn peer_gone(&mut self) -> Result<bool> {
        let peer = self.side.peer();
        let h = self.header();
        let state = h.state(peer).load(Ordering::Acquire);
        let moved = h.position(peer).load(Ordering::Relaxed) != self.peer_position;
        if state == channel::STATE_DETACHED {
            return Ok(true);
        }
        self.peer_seen = self
            .link
            .peer_seen(self.peer_seen || moved || state != channel::STATE_NEW);
        if !self.peer_seen {
            return Ok(false);
        }
        Ok(!self
            .segment
            .object()
            .byte_locked(channel::lock_byte(peer))?)
    }
}

impl SubscriberMember {
    /// Puts the process ids the attached publishers published in `out`;
    /// `false` if one did not publish one, or none is attached.
    fn publisher_pids(&self, out: &mut Vec<u32>) -> bool {
        let named = named_pids(
            out,
            self.service.publishers().iter().filter_map(|(p, pv)| {
                if pv.block.state.load(Ordering::Acquire) != pubsub::STATE_ATTACHED {
                    return None;
                }
                // A publisher found dead stays dead (its instance is not
                // reused): its process needs no watch (once reaped it
                // cannot be watched, and would keep the others polled).
                let instance = pv.block.instance.load(Ordering::Acquire);
                (!self.publishers.known_dead(p, instance))
                    .then(|| pv.block.pid.load(Ordering::Relaxed))
            }),
        );
        named && !out.is_empty()
    }

    fn watch(&self) -> SubscriberWatch<'_, crate::pubsub::service::AllPublishers<'_>> {
        SubscriberWatch {
            wake: &self.service.header().wake,
            bit: self.index,
            parkers: &self.link.parkers,
            cursors: self.service.subscriber(self.index).cursors,
            publishers: self.service.publishers(),
            ring_len: self.service.geometry.ring_len,
        }
    }

    /// As `Subscriber::check_disconnected`, asking afresh: no publisher
    /// alive, and everything they published received. Every attached
    /// publisher is asked, not only up to the first one alive, so that the
    /// dead ones are known dead ([`SubscriberMember::publisher_pids`] then
    /// leaves them out).
    fn publishers_gone(&mut self) -> Result<bool> {
        let segment = self.service.segment();
        let cursors = self.service.subscriber(self.index).cursors;
        let mut drained = true;
        let mut any_alive = false;
        for (p, pv) in self.service.publishers().iter() {
            let state = pv.block.state.load(Ordering::Acquire);
            let instance = pv.block.instance.load(Ordering::Acquire);
            let byte = pubsub::publisher_lock_byte(p);
            if self.publishers.alive(
                segment,
                p,
                state == pubsub::STATE_ATTACHED,
                instance,
                byte,
                std::time::Duration::ZERO,
            )? {
                any_alive = true;
                continue;
            }
            // As the subscriber decides it: nothing at the cursor, not a
            // cursor at the head.
            let c = cursors[p as usize].load(Ordering::Relaxed);
            drained &= !SubCore::news_at(&pv, c, self.service.geometry.ring_len);
        }
        Ok(!any_alive && drained)
    }
}

impl ServerMember {
    fn header(&self) -> &rpc::Header {
        self.service.header()
    }

    /// Its flag and word, as `protocol::park_server` uses them.
    fn watch(&self) -> RpcWatch<'_> {
        RpcWatch {
            wake: &self.header().server_wake,
            parkers: &self.link.parkers,
        }
    }

    /// The process ids of the clients attached, or evicted and not yet
    /// reset, but those the server saw dead and those found dead here (a
    /// reaped one cannot be watched, and would keep the others polled), put
    /// in `out`; `false` if one of them wrote no pid.
    fn client_pids(&self, out: &mut Vec<u32>) -> bool {
        named_pids(
            out,
            clients_not_seen_dead(&self.service, &self.link)
                .filter(|&(c, _, instance)| self.dead[c as usize] != instance)
                .map(|(_, block, _)| block.pid.load(Ordering::Relaxed)),
        )
    }

    /// As the server's own check before parking (`nothing_pushed`), with
    /// the server's tails as it shares them: a client it serves pushed a
    /// request it has not taken (its pending bit is set here too, as
    /// there, for a client that died between its head and its bit); or a
    /// client left (its detach rang the bell: the server resets its
    /// region); or a client the set saw die that the server has not seen
    /// dead yet (evicted or not: it resets the region once it does).
    fn ready(&self) -> bool {
        let n = self.service.geometry.shape.max_clients;
        let h = self.header();
        let mut ready = false;
        for c in 0..n {
            let block = self.service.block(c);
            let state = block.state.load(Ordering::Acquire);
            let doorbell = self.service.doorbell(c);
            match state {
                rpc::CLIENT_FREE => {}
                rpc::CLIENT_ATTACHED | rpc::CLIENT_EVICTED => {
                    let instance = block.instance.load(Ordering::Acquire);
                    let known = &self.link.state[c as usize];
                    let current = known.instance.load(Ordering::Relaxed) == instance;
                    let saw_dead = server_saw_dead(&self.link, c, instance);
                    if instance != 0 && self.dead[c as usize] == instance && !saw_dead {
                        ready = true;
                    }
                    // Not served: evicted, or seen dead; or its next
                    // request waits for the server (a slot an earlier
                    // instance held: its answer rings the bell).
                    let ignored = saw_dead
                        || (current
                            && (known.evicted.load(Ordering::Relaxed)
                                || known.blocked.load(Ordering::Relaxed)));
                    if state != rpc::CLIENT_ATTACHED || ignored {
                        continue;
                    }
                    let tail = if current {
                        known.tail.load(Ordering::Relaxed)
                    } else {
                        0
                    };
                    ready |= watch::pushed(self.service.region(c), doorbell, tail);
                }
                _ => {
                    // Detached (or a state no client writes): the server
                    // looks at it when its bit is set.
                    let bits = h.pending[(c / 64) as usize].load(Ordering::Relaxed);
                    ready |= bits & doorbell.bit != 0;
                }
            }
        }
        ready
    }

    /// Whether a client whose death the server has yet to see died (its
    /// lock is free), evicted ones too: their regions are reset only then.
    /// Each is asked once per look.
    fn client_died(&mut self) -> Result<bool> {
        let segment = self.service.segment();
        let mut died = false;
        for (c, _, instance) in clients_not_seen_dead(&self.service, &self.link) {
            if !segment.object().byte_locked(rpc::client_lock_byte(c))? {
                self.dead[c as usize] = instance;
                died = true;
            }
        }
        Ok(died)
    }
}

/// Puts the pids the peers wrote in `out`; `false` if one wrote none (0:
/// an older writer; then the peers are polled). Duplicates are the
/// caller's to drop.
fn named_pids(out: &mut Vec<u32>, pids: impl Iterator<Item = u32>) -> bool {
    for pid in pids {
        if pid == 0 {
            return false;
        }
        out.push(pid);
    }
    true
}

/// Whether the server saw client instance `instance` of region `c` dead,
/// as it shares in its mirror `link`.
fn server_saw_dead(link: &Link<Box<[Mirror]>>, c: u32, instance: u64) -> bool {
    let known = &link.state[c as usize];
    known.instance.load(Ordering::Relaxed) == instance && known.dead.load(Ordering::Relaxed)
}

/// The clients whose death the server has yet to see (attached, or
/// evicted and not yet reset; not those it saw dead): region, block and
/// instance.
fn clients_not_seen_dead<'a>(
    service: &'a crate::rpc::service::Service,
    link: &'a Link<Box<[Mirror]>>,
) -> impl Iterator<Item = (u32, &'a rpc::ClientBlock, u64)> {
    (0..service.geometry.shape.max_clients).filter_map(move |c| {
        let block = service.block(c);
        let state = block.state.load(Ordering::Acquire);
        if !matches!(state, rpc::CLIENT_ATTACHED | rpc::CLIENT_EVICTED) {
            return None;
        }
        let instance = block.instance.load(Ordering::Acquire);
        (!server_saw_dead(link, c, instance)).then_some((c, block, instance))
    })
}

impl ClientMember {
    /// Its flag and word, as `protocol::park_client` uses them.
    fn watch(&self) -> RpcWatch<'_> {
        RpcWatch {
            wake: &self.service.header().client_wake[self.index as usize],
            parkers: &self.link.parkers,
        }
    }

    /// A request the client waits for, among `only` (a bit per slot; all
    /// of them for a wait set), is answered (or its slot holds what no
    /// honest server writes: the client then says `Corrupted`); or the
    /// server is gone as the state words say, or it evicted this client.
    fn ready(&self, only: u64) -> bool {
        let h = self.service.header();
        if h.server.state.load(Ordering::Acquire) != rpc::SERVER_ATTACHED
            || h.server.instance.load(Ordering::Acquire) != self.server_instance
            || h.server.retired.load(Ordering::Acquire) != 0
            || self.service.block(self.index).state.load(Ordering::Acquire) == rpc::CLIENT_EVICTED
        {
            return true;
        }
        let awaiting = self.link.state.load(Ordering::Relaxed)
            & !self.abandoned.load(Ordering::Relaxed)
            & only;
        watch::answered(self.service.region(self.index).slots, awaiting)
    }

    /// Whether the server's lock is free.
    fn server_gone(&mut self) -> Result<bool> {
        Ok(!self
            .service
            .segment()
            .object()
            .byte_locked(rpc::SERVER_LOCK_BYTE)?)
    }
}

impl Watch for Member {
    fn word(&self) -> &FutexWord {
        match &self.kind {
            Kind::Channel(m) => m.watch().word(),
            Kind::Subscriber(m) => &m.service.header().wake.futex,
            Kind::Server(m) => m.watch().word(),
            Kind::Client(m) => m.watch().word(),
        }
    }

    fn arm(&self) {
        // (Through the endpoint's parkers: once it is dropped they neither
        // raise nor lower its flag, which may belong to another endpoint
        // by then. A dropped member is always ready: the set and the
        // notifier do not sleep on it.)
        match &self.kind {
            Kind::Channel(m) => m.watch().arm(),
            Kind::Subscriber(m) => m.watch().arm(),
            Kind::Server(m) => m.watch().arm(),
            Kind::Client(m) => m.watch().arm(),
        }
    }

    fn disarm(&self) {
        match &self.kind {
            Kind::Channel(m) => m.watch().disarm(),
            Kind::Subscriber(m) => m.watch().disarm(),
            Kind::Server(m) => m.watch().disarm(),
            Kind::Client(m) => m.watch().disarm(),
        }
    }

    fn ready(&self) -> bool {
        self.ready_for(None)
    }
}

impl Member {
    /// Whether the member is ready (`Watch::ready`) for a waiter that waits
    /// for the answers in `answers` only (a bit per slot: an rpc client's
    /// call, whose future waits for its own answer), or for anything the
    /// member reports (`None`: a wait set, a readiness descriptor). An
    /// answer to another request counts for the first only if it is in
    /// `answers`; what ends every call (the server gone, this client
    /// evicted, the endpoint dropped, its memory gone) counts for all.
    /// Members of other kinds ignore `answers`.
    pub(crate) fn ready_for(&self, answers: Option<u64>) -> bool {
        let found = match &self.kind {
            Kind::Channel(m) => m.watch().ready(),
            Kind::Subscriber(m) => m.watch().ready(),
            Kind::Server(m) => m.ready(),
            Kind::Client(m) => m.ready(answers.unwrap_or(u64::MAX)),
        };
        found || self.dropped() || self.faulted()
    }
}

#[cfg(test)]
mod tests {
    use super::{Member, Watch};
    use crate::primitive::Ordering;
    use crate::pubsub::{Publisher, ServiceConfig, Subscriber};

    /// A member whose subscriber was dropped leaves the parked bit of its
    /// slot alone: the subscriber that took the slot again may be parked
    /// with it set (found by a review: a set that had parked before the
    /// drop cleared it when its slice ended, and the new subscriber slept
    /// through the publishes until its own slice ended).
    #[test]
    fn a_dropped_subscribers_member_leaves_the_slots_parked_bit_alone() {
        let name = format!("mst-member-dropped-{}", std::process::id());
        let _publisher = Publisher::create(&name, ServiceConfig::new()).unwrap();
        let first = Subscriber::open(&name).unwrap();
        let member = Member::subscriber(&first).unwrap();
        drop(first);
        let second = Subscriber::open(&name).unwrap();
        let (service, slot, _) = second.wait_parts();
        assert_eq!(slot, 0, "the slot is taken again");
        let parked = &service.header().wake.parked;
        // The new subscriber parks (its bit set); the old member comes and
        // goes.
        parked.fetch_or(1, Ordering::Relaxed);
        member.arm();
        member.disarm();
        assert_eq!(parked.load(Ordering::Relaxed) & 1, 1);
        parked.fetch_and(!1, Ordering::Relaxed);
        member.arm();
        assert_eq!(parked.load(Ordering::Relaxed) & 1, 0);
    }
}
