//! Reading a service's state from outside, without attaching: what
//! `memshare info` shows.

use std::sync::atomic::Ordering;

use super::layout::{self, STATE_ATTACHED, STATE_DETACHED, STATE_NEW};
use super::service::{Role, Service};
use super::{PublisherId, ServiceConfig};
use crate::channel::EndpointState;
use crate::{Result, Segment};

/// A snapshot of a service, read without attaching (and without trusting
/// it: only what the header's checked geometry bounds is read).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceState {
    /// The service's configuration.
    pub config: ServiceConfig,
    /// Every publisher slot that was ever used.
    pub publishers: Vec<PublisherState>,
    /// Every subscriber slot that was ever used.
    pub subscribers: Vec<SubscriberState>,
}

/// One publisher slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherState {
    /// The slot's index.
    pub slot: u32,
    /// Attached and alive, dead, or detached.
    pub state: EndpointState,
    /// The publisher's (or the last one's) identity.
    pub id: PublisherId,
    /// The sequence number its next message will have.
    pub next_sequence: u64,
}

/// One subscriber slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberState {
    /// The slot's index.
    pub slot: u32,
    /// Attached and alive, dead, or detached.
    pub state: EndpointState,
    /// Messages it received.
    pub received: u64,
    /// Messages it lost (overflow policy "drop oldest").
    pub missed: u64,
    /// How far behind it is: the most messages waiting for it from any one
    /// publisher.
    pub lag: u64,
    /// Samples it holds now.
    pub held: u32,
}

fn endpoint_state(segment: &Segment, state: u32, byte: u64) -> Result<EndpointState> {
    Ok(match state {
        STATE_NEW => EndpointState::New,
        STATE_DETACHED => EndpointState::Detached,
        STATE_ATTACHED => {
            if segment.object().byte_locked(byte)? {
                EndpointState::Attached
            } else {
                EndpointState::Dead
            }
        }
        other => EndpointState::Invalid(other),
    })
}

/// Reads the state of the service in `segment` without attaching (its
/// regions are mapped read-only).
///
/// ```
/// use memshare::channel::EndpointState;
/// use memshare::pubsub::{self, Publisher, ServiceConfig, Subscriber};
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-psinspect-{}", std::process::id());
/// let mut publisher = Publisher::create(&name, ServiceConfig::new())?;
/// let subscriber = Subscriber::open(&name)?;
/// publisher.publish_copy(b"one")?;
/// publisher.publish_copy(b"two")?;
/// let state = pubsub::inspect(publisher.segment())?;
/// assert_eq!(state.publishers[0].next_sequence, 2);
/// assert_eq!(state.subscribers[0].state, EndpointState::Attached);
/// assert_eq!(state.subscribers[0].lag, 2);
/// # drop(subscriber); Ok(()) }
/// ```
pub fn inspect(segment: &Segment) -> Result<ServiceState> {
    let service = Service::open(segment, Role::Observer)?;
    let shape = service.geometry.shape;
    let mut publishers = Vec::new();
    let mut heads = Vec::new();
    for (p, pv) in service.publishers().iter() {
        let head = pv.block.head.load(Ordering::Acquire);
        heads.push(head);
        let state = pv.block.state.load(Ordering::Acquire);
        if state == STATE_NEW {
            continue;
        }
        publishers.push(PublisherState {
            slot: p,
            state: endpoint_state(segment, state, layout::publisher_lock_byte(p))?,
            id: PublisherId(pv.block.instance.load(Ordering::Relaxed)),
            next_sequence: head,
        });
    }
    let mut subscribers = Vec::new();
    for (i, sub) in service.subscribers() {
        let state = sub.head.state.load(Ordering::Acquire);
        if state == STATE_NEW {
            continue;
        }
        let lag = sub
            .cursors
            .iter()
            .zip(&heads)
            .map(|(c, &head)| head.saturating_sub(c.load(Ordering::Acquire)))
            .max()
            .unwrap_or(0);
        subscribers.push(SubscriberState {
            slot: i,
            state: endpoint_state(segment, state, layout::subscriber_lock_byte(i))?,
            received: sub.head.received.load(Ordering::Relaxed),
            missed: sub.head.missed.load(Ordering::Relaxed),
            lag,
            held: sub
                .holds
                .iter()
                .filter(|h| h.load(Ordering::Relaxed) != 0)
                .count() as u32,
        });
    }
    service.check_intact()?;
    Ok(ServiceState {
        config: ServiceConfig::from_shape(&shape),
        publishers,
        subscribers,
    })
}
