//! Typed publish-subscribe: plain-data values (`bytemuck::Pod`).

use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use super::{Publisher, PublisherId, Sample, ServiceConfig, Subscriber};
use crate::{Error, Result};

/// Publishes values of type `T`, each as one message of exactly
/// `size_of::<T>()` bytes written in place (zero-copy).
///
/// ```
/// use memshare::pubsub::{ServiceConfig, TypedPublisher, TypedSubscriber};
///
/// #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Pose { x: f32, y: f32, z: f32, stamp: u32 }
///
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-typed-ps-{}", std::process::id());
/// let mut poses = TypedPublisher::<Pose>::create(&name, ServiceConfig::new())?;
/// let listener = TypedSubscriber::<Pose>::open(&name)?;
/// poses.publish(&Pose { x: 1.0, y: 2.0, z: 3.0, stamp: 7 })?;
/// assert_eq!(listener.recv()?.stamp, 7);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TypedPublisher<T: Pod> {
    inner: Publisher,
    _type: PhantomData<fn(T)>,
}

/// Receives values of type `T` published by a [`TypedPublisher`]. A
/// message of another size is [`Error::Corrupted`]; values are copied out,
/// so `T`'s alignment never matters.
#[derive(Debug)]
pub struct TypedSubscriber<T: Pod> {
    inner: Subscriber,
    _type: PhantomData<fn() -> T>,
}

impl<T: Pod> TypedPublisher<T> {
    /// Creates the service (see [`Publisher::create`]); its
    /// `max_message_len` is raised to `size_of::<T>()` if smaller.
    pub fn create(name: &str, config: ServiceConfig) -> Result<Self> {
        let len = std::mem::size_of::<T>() as u64;
        let config = config.max_message_len(config.get_max_message_len().max(len));
        Self::from_publisher(Publisher::create(name, config)?)
    }

    /// Attaches to an existing service (see [`Publisher::open`]).
    pub fn open(name: &str) -> Result<Self> {
        Self::from_publisher(Publisher::open(name)?)
    }

    /// Wraps a byte publisher; `OutOfRange` if the service's messages are
    /// too small for a `T`.
    pub fn from_publisher(inner: Publisher) -> Result<Self> {
        let max = inner.config().get_max_message_len();
        if (std::mem::size_of::<T>() as u64) > max {
            return Err(Error::OutOfRange {
                object: format!("service {:?}", inner.segment().name().unwrap_or("")),
                detail: format!(
                    "a {} of {} bytes does not fit its messages of at most {max} bytes",
                    std::any::type_name::<T>(),
                    std::mem::size_of::<T>()
                ),
            });
        }
        Ok(TypedPublisher {
            inner,
            _type: PhantomData,
        })
    }

    /// The byte publisher underneath.
    pub fn inner_mut(&mut self) -> &mut Publisher {
        &mut self.inner
    }

    /// Publishes `value` (written straight into a lent buffer).
    pub fn publish(&mut self, value: &T) -> Result<()> {
        self.inner.publish_copy(bytemuck::bytes_of(value))
    }

    /// Publishes `value` if there is room now (see
    /// [`Publisher::try_publish_copy`]).
    pub fn try_publish(&mut self, value: &T) -> Result<bool> {
        self.inner.try_publish_copy(bytemuck::bytes_of(value))
    }

    /// Like [`TypedPublisher::publish`], with a timeout.
    pub fn publish_timeout(&mut self, value: &T, timeout: Duration) -> Result<()> {
        self.inner
            .publish_copy_timeout(bytemuck::bytes_of(value), timeout)
    }
}

impl<T: Pod> TypedSubscriber<T> {
    /// Attaches to the service (see [`Subscriber::open`]).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self::from_subscriber(Subscriber::open(name)?))
    }

    /// Attaches, waiting for the service to appear (see
    /// [`Subscriber::open_timeout`]).
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Self> {
        Ok(Self::from_subscriber(Subscriber::open_timeout(
            name, timeout,
        )?))
    }

    /// Wraps a byte subscriber.
    pub fn from_subscriber(inner: Subscriber) -> Self {
        TypedSubscriber {
            inner,
            _type: PhantomData,
        }
    }

    /// The byte subscriber underneath.
    pub fn inner(&self) -> &Subscriber {
        &self.inner
    }

    /// The byte subscriber underneath, mutably (its futures borrow it so).
    #[cfg(feature = "async")]
    pub(crate) fn inner_mut(&mut self) -> &mut Subscriber {
        &mut self.inner
    }

    /// Receives the next value, waiting while there is none.
    pub fn recv(&self) -> Result<T> {
        value_of(self.inner.recv()?)
    }

    /// Receives the next value if there is one now.
    pub fn try_recv(&self) -> Result<Option<T>> {
        self.inner.try_recv()?.map(value_of).transpose()
    }

    /// Like [`TypedSubscriber::recv`], with a timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        value_of(self.inner.recv_timeout(timeout)?)
    }

    /// Like [`TypedSubscriber::recv`], with the publisher and sequence.
    pub fn recv_with_origin(&self) -> Result<(T, PublisherId, u64)> {
        let sample = self.inner.recv()?;
        let (publisher, seq) = (sample.publisher(), sample.sequence());
        Ok((value_of(sample)?, publisher, seq))
    }

    /// Messages lost (see [`Subscriber::missed`]).
    pub fn missed(&self) -> u64 {
        self.inner.missed()
    }
}

pub(crate) fn value_of<T: Pod>(sample: Sample<'_>) -> Result<T> {
    if sample.len() == std::mem::size_of::<T>() {
        return Ok(bytemuck::pod_read_unaligned(&sample));
    }
    Err(Error::Corrupted {
        object: sample.describe(),
        detail: format!(
            "a message of {} bytes where a {} of {} bytes was expected",
            sample.len(),
            std::any::type_name::<T>(),
            std::mem::size_of::<T>()
        ),
    })
}
