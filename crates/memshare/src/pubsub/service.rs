//! What both kinds of endpoint share: the service's segment checked and
//! mapped (each region writable only for the side that writes it), typed
//! views of the regions.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout::{self, Entry, Geometry, Header, PublisherBlock, SubscriberHead};
use super::ring::{Buffers, Corruption, PubView, Publishers, SubView};
use crate::endpoint::Window;
use crate::primitive::{AtomicU32, AtomicU64};
use crate::{Error, Result, Segment};

/// Which side an endpoint is: what it maps writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Writes publisher region `0`; reads the subscriber table.
    Publisher(u32),
    /// Writes the subscriber table; reads every publisher region.
    Subscriber,
    /// Writes nothing (inspection): everything read-only.
    Observer,
}

/// A service's segment, checked and mapped. A clone shares the mappings
/// (a wait set's member keeps them while its endpoint may be gone).
#[derive(Clone)]
pub(crate) struct Service {
    segment: Segment,
    pub(crate) geometry: Geometry,
    header: NonNull<Header>,
    subscribers: NonNull<u8>,
    /// One per publisher slot; `None` for the slots a publisher does not
    /// map (the others').
    publishers: Vec<Option<NonNull<u8>>>,
    buffers: Vec<Option<Buffers>>,
    // Declared last: dropped after everything that points into them.
    windows: Arc<Vec<Window>>,
}

// SAFETY: the pointers point into `windows`, owned by the service; the
// shared memory behind them is accessed through atomics, or by protocol.
unsafe impl Send for Service {}

impl Service {
    /// Checks that `segment` holds a service and maps it for `role`.
    pub(crate) fn open(segment: &Segment, role: Role) -> Result<Service> {
        Service::open_with(segment, role, false)
    }

    /// [`Service::open`] for the creator, before it stores the magic: the
    /// header is checked like any other, the magic not yet.
    pub(crate) fn open_unpublished(segment: &Segment, role: Role) -> Result<Service> {
        Service::open_with(segment, role, true)
    }

    fn open_with(segment: &Segment, role: Role, unpublished: bool) -> Result<Service> {
        let object = segment.describe();
        if segment.len() < layout::HEADER_LEN {
            return Err(Error::NotAService {
                object,
                kind: "publish-subscribe",
                detail: format!("{} bytes: too small", segment.len()),
            });
        }
        let header_window = match role {
            Role::Observer => Window::ReadOnly(segment.map_readonly(..layout::HEADER_LEN)?),
            _ => Window::Writable(segment.map(..layout::HEADER_LEN)?),
        };
        // SAFETY: the window maps the first page, page-aligned; `Header` is
        // atomics and padding, valid for any bytes; it lives in `windows`.
        let header = unsafe { NonNull::new_unchecked(header_window.ptr().cast::<Header>()) };
        // SAFETY: as above.
        let h = unsafe { header.as_ref() };
        if !unpublished
            && h.fixed.magic.load(Ordering::Acquire) != u64::from_le_bytes(layout::MAGIC)
        {
            header_window.check_intact()?;
            return Err(Error::NotAService {
                object,
                kind: "publish-subscribe",
                detail: "it does not start with the magic \"MSPUBS01\"".into(),
            });
        }
        let version = h.fixed.version.load(Ordering::Relaxed);
        if version != layout::VERSION {
            return Err(Error::Unsupported {
                what: format!(
                    "{object}: publish-subscribe layout version {version} (this library speaks {})",
                    layout::VERSION
                ),
            });
        }
        let geometry = Geometry::load(h, segment).map_err(|detail| Error::Corrupted {
            object: object.clone(),
            detail,
        })?;
        header_window.check_intact()?;
        let g = &geometry;
        // The publisher chose its slot from an earlier look at the header:
        // one that changed since (only a hostile writer does that) may no
        // longer have it.
        if let Role::Publisher(p) = role {
            if p >= g.shape.max_publishers {
                return Err(Error::Corrupted {
                    object,
                    detail: format!(
                        "its header changed while a publisher attached: slot {p} is not below \
                         max_publishers ({})",
                        g.shape.max_publishers
                    ),
                });
            }
        }
        let table = g.subscribers_at..g.publishers_at;
        let subscribers_window = match role {
            Role::Publisher(_) | Role::Observer => Window::ReadOnly(segment.map_readonly(table)?),
            Role::Subscriber => Window::Writable(segment.map(table)?),
        };
        let subscribers = NonNull::new(subscribers_window.ptr()).expect("a mapping is not null");
        let mut windows = vec![header_window, subscribers_window];
        let mut publishers = Vec::new();
        let mut buffers = Vec::new();
        for p in 0..g.shape.max_publishers {
            let region = g.publisher_at(p)..g.publisher_at(p) + g.publisher_region;
            let window = match role {
                Role::Publisher(me) if me == p => Window::Writable(segment.map(region)?),
                Role::Publisher(_) => {
                    publishers.push(None);
                    buffers.push(None);
                    continue;
                }
                Role::Subscriber | Role::Observer => {
                    Window::ReadOnly(segment.map_readonly(region)?)
                }
            };
            let base = NonNull::new(window.ptr()).expect("a mapping is not null");
            // SAFETY: the pool lies inside the region, which `windows`
            // keeps mapped as long as the service.
            let pool =
                // SAFETY: as just said: inside the region `windows` keeps.
                unsafe { Buffers::new(base.as_ptr().add(g.buffers_at as usize), g.buffer_stride) };
            publishers.push(Some(base));
            buffers.push(Some(pool));
            windows.push(window);
        }
        Ok(Service {
            segment: segment.clone(),
            geometry,
            header,
            subscribers,
            publishers,
            buffers,
            windows: Arc::new(windows),
        })
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    pub(crate) fn describe(&self) -> String {
        format!("service {:?}", self.segment.name().unwrap_or("(anonymous)"))
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: points into the first window, alive as long as `self`.
        unsafe { self.header.as_ref() }
    }

    /// Subscriber `i`'s block (`i` below `max_subscribers`).
    pub(crate) fn subscriber(&self, i: u32) -> SubView<'_> {
        let g = &self.geometry;
        let at = (u64::from(i) * g.subscriber_block) as usize;
        // SAFETY: block `i` lies inside the subscriber table (the geometry was checked against the
        // segment); its parts are atomics at the offsets the geometry gives, 8-aligned (blocks are
        // 128-byte multiples from a page-aligned table); the window lives as long as `self`.
        unsafe {
            let base = self.subscribers.as_ptr().add(at);
            SubView {
                head: &*base.cast::<SubscriberHead>(),
                holds: std::slice::from_raw_parts(
                    base.add(g.holds_at as usize).cast::<AtomicU32>(),
                    g.shape.max_held as usize,
                ),
                cursors: std::slice::from_raw_parts(
                    base.add(g.cursors_at as usize).cast::<AtomicU64>(),
                    g.shape.max_publishers as usize,
                ),
            }
        }
    }

    /// The subscribers' views, with their index.
    pub(crate) fn subscribers(&self) -> impl Iterator<Item = (u32, SubView<'_>)> {
        (0..self.geometry.shape.max_subscribers).map(|i| (i, self.subscriber(i)))
    }

    /// Publisher `p`'s region, if this endpoint maps it.
    pub(crate) fn publisher(&self, p: u32) -> Option<PubView<'_>> {
        let g = &self.geometry;
        let base = self.publishers[p as usize]?;
        let buffers = self.buffers[p as usize].as_ref()?;
        let wake = &self.header().publisher_wake[p as usize];
        // SAFETY: the region lies inside the segment (checked geometry); the
        // block and the entries are atomics at page- and 32-byte-aligned
        // offsets; the window lives as long as `self`.
        Some(unsafe {
            PubView {
                block: &*base.as_ptr().cast::<PublisherBlock>(),
                wake,
                entries: std::slice::from_raw_parts(
                    base.as_ptr()
                        .add(layout::PUBLISHER_BLOCK as usize)
                        .cast::<Entry>(),
                    g.ring_len as usize,
                ),
                buffers,
            }
        })
    }

    /// Every publisher region, for a subscriber or an observer (which map
    /// them all).
    pub(crate) fn publishers(&self) -> AllPublishers<'_> {
        AllPublishers(self)
    }

    /// `Ok` unless the memory under a mapping is gone (another process
    /// truncated the segment).
    pub(crate) fn check_intact(&self) -> Result<()> {
        Window::check_all(self.windows.iter())
    }

    /// The error for what the ring code found, unless the memory is gone,
    /// which explains it better.
    pub(crate) fn corrupted(&self, corruption: Corruption) -> Error {
        match self.check_intact() {
            Err(e) => e,
            Ok(()) => Error::Corrupted {
                object: self.describe(),
                detail: corruption.0,
            },
        }
    }
}

/// Every publisher region of a service mapped by a subscriber or an
/// observer: [`Publishers`] without an allocation per message.
#[derive(Clone, Copy)]
pub(crate) struct AllPublishers<'a>(&'a Service);

impl<'a> Publishers<'a> for AllPublishers<'a> {
    fn count(&self) -> usize {
        self.0.geometry.shape.max_publishers as usize
    }

    fn get(&self, p: usize) -> PubView<'a> {
        self.0
            .publisher(p as u32)
            .expect("subscribers and observers map every publisher region")
    }
}

impl<'a> AllPublishers<'a> {
    /// Each publisher's region, with its index.
    pub(crate) fn iter(self) -> impl Iterator<Item = (u32, PubView<'a>)> {
        (0..self.count()).map(move |p| (p as u32, self.get(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::{Role, Service};
    use crate::pubsub::{Publisher, ServiceConfig};
    use crate::Error;

    /// A publisher's slot beyond the header's `max_publishers` (the header
    /// changed between the publisher's look and its open) is `Corrupted`,
    /// not an index out of bounds.
    #[test]
    fn a_publisher_slot_beyond_the_header_is_corrupted_not_a_panic() {
        let name = format!("mst-pubsub-role-{}", std::process::id());
        let publisher = Publisher::create(&name, ServiceConfig::new().max_publishers(2)).unwrap();
        let segment = publisher.segment();
        assert!(Service::open(segment, Role::Publisher(1)).is_ok());
        match Service::open(segment, Role::Publisher(2)) {
            Err(Error::Corrupted { detail, .. }) => {
                assert!(detail.contains("max_publishers (2)"), "{detail}")
            }
            other => panic!("expected Corrupted, got {:?}", other.err()),
        }
    }
}
