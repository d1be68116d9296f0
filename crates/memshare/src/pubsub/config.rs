//! How a service is configured.

use super::layout::{self, Geometry, Shape};
use crate::{Error, Result};

/// What a publisher does when a subscriber's queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Overflow {
    /// The publisher waits (or its `try_` forms say "full") while any live
    /// subscriber has `depth` messages waiting: nothing is ever lost, and
    /// the slowest subscriber sets the pace.
    Block,
    /// The publisher never waits for subscribers: a subscriber that falls
    /// more than `depth` messages behind loses its oldest, and
    /// [`Subscriber::missed`](super::Subscriber::missed) counts them.
    #[default]
    DropOldest,
}

/// The shape of a service, fixed when its first publisher creates it.
///
/// ```
/// use memshare::pubsub::{Overflow, ServiceConfig};
/// let config = ServiceConfig::new()
///     .max_publishers(2)
///     .max_subscribers(8)
///     .max_message_len(64 << 10)
///     .depth(16)
///     .history(4)
///     .overflow(Overflow::Block);
/// assert_eq!(config.get_depth(), 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceConfig {
    max_publishers: u32,
    max_subscribers: u32,
    max_message_len: u64,
    depth: u32,
    history: u32,
    max_held: u32,
    overflow: Overflow,
}

impl Default for ServiceConfig {
    fn default() -> ServiceConfig {
        ServiceConfig::new()
    }
}

impl ServiceConfig {
    /// The defaults: 1 publisher, 8 subscribers, messages of up to 4 KiB,
    /// a depth of 16, no history, 2 samples held at once per subscriber,
    /// [`Overflow::DropOldest`].
    pub const fn new() -> ServiceConfig {
        ServiceConfig {
            max_publishers: 1,
            max_subscribers: 8,
            max_message_len: 4096,
            depth: 16,
            history: 0,
            max_held: 2,
            overflow: Overflow::DropOldest,
        }
    }

    /// How many publishers may be attached at once (1 to 64).
    pub const fn max_publishers(mut self, n: u32) -> ServiceConfig {
        self.max_publishers = n;
        self
    }

    /// How many subscribers may be attached at once (1 to 64).
    pub const fn max_subscribers(mut self, n: u32) -> ServiceConfig {
        self.max_subscribers = n;
        self
    }

    /// The largest message, in bytes (1 to `u32::MAX`). Every buffer of the
    /// pool is this large.
    pub const fn max_message_len(mut self, len: u64) -> ServiceConfig {
        self.max_message_len = len;
        self
    }

    /// How many messages each subscriber can have waiting (1 to 2^20).
    pub const fn depth(mut self, n: u32) -> ServiceConfig {
        self.depth = n;
        self
    }

    /// How many of the most recent messages a late subscriber receives
    /// first (0 to `depth`).
    pub const fn history(mut self, n: u32) -> ServiceConfig {
        self.history = n;
        self
    }

    /// How many samples a subscriber may hold at once (1 to 64): a receive
    /// beyond that is [`Error::LimitReached`](crate::Error::LimitReached)
    /// until a sample is dropped.
    pub const fn max_held(mut self, n: u32) -> ServiceConfig {
        self.max_held = n;
        self
    }

    /// What a publisher does when a subscriber's queue is full.
    pub const fn overflow(mut self, policy: Overflow) -> ServiceConfig {
        self.overflow = policy;
        self
    }

    /// See [`ServiceConfig::max_publishers`].
    pub const fn get_max_publishers(&self) -> u32 {
        self.max_publishers
    }

    /// See [`ServiceConfig::max_subscribers`].
    pub const fn get_max_subscribers(&self) -> u32 {
        self.max_subscribers
    }

    /// See [`ServiceConfig::max_message_len`].
    pub const fn get_max_message_len(&self) -> u64 {
        self.max_message_len
    }

    /// See [`ServiceConfig::depth`].
    pub const fn get_depth(&self) -> u32 {
        self.depth
    }

    /// See [`ServiceConfig::history`].
    pub const fn get_history(&self) -> u32 {
        self.history
    }

    /// See [`ServiceConfig::max_held`].
    pub const fn get_max_held(&self) -> u32 {
        self.max_held
    }

    /// See [`ServiceConfig::overflow`].
    pub const fn get_overflow(&self) -> Overflow {
        self.overflow
    }

    pub(crate) fn shape(&self) -> Shape {
        Shape {
            max_publishers: self.max_publishers,
            max_subscribers: self.max_subscribers,
            max_message_len: self.max_message_len,
            depth: self.depth,
            history: self.history,
            max_held: self.max_held,
            overflow: match self.overflow {
                Overflow::Block => layout::OVERFLOW_BLOCK,
                Overflow::DropOldest => layout::OVERFLOW_DROP_OLDEST,
            },
        }
    }

    pub(crate) fn from_shape(shape: &Shape) -> ServiceConfig {
        ServiceConfig {
            max_publishers: shape.max_publishers,
            max_subscribers: shape.max_subscribers,
            max_message_len: shape.max_message_len,
            depth: shape.depth,
            history: shape.history,
            max_held: shape.max_held,
            overflow: if shape.overflow == layout::OVERFLOW_BLOCK {
                Overflow::Block
            } else {
                Overflow::DropOldest
            },
        }
    }

    /// The geometry of this configuration, or `OutOfRange` naming the
    /// limit it breaks.
    pub(crate) fn geometry(&self, name: &str) -> Result<Geometry> {
        Geometry::of(self.shape()).map_err(|detail| Error::OutOfRange {
            object: format!("service {name:?}"),
            detail,
        })
    }
}
