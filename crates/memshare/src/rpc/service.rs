//! What the server and the clients share: the service's segment checked
//! and mapped (each part writable only for the side that writes it), and
//! typed views of the parts.

use std::ptr::NonNull;
use std::sync::Arc;

use super::layout::{self, ClientBlock, Geometry, Header, Slot};
use super::protocol::{Doorbell, Region};
use crate::endpoint::Window;
use crate::primitive::{AtomicU32, Ordering};
use crate::{Error, Result, Segment};

/// Which side an endpoint is: what it maps, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Every region: the control parts and response buffers writable, the
    /// request buffers read-only.
    Server,
    /// Region `c` only: the control part and request buffers writable, the
    /// response buffers read-only.
    Client(u32),
    /// Every control part, read-only (inspection).
    Observer,
}

/// One client region as mapped by this endpoint.
#[derive(Clone, Copy)]
struct Parts {
    control: NonNull<u8>,
    requests: Option<NonNull<u8>>,
    responses: Option<NonNull<u8>>,
    /// Its windows in `Service::windows`.
    windows: (usize, usize),
}

/// A service's segment, checked and mapped. A clone shares the mappings
/// (a wait set's member keeps them while its endpoint may be gone).
#[derive(Clone)]
pub(crate) struct Service {
    segment: Segment,
    pub(crate) geometry: Geometry,
    header: NonNull<Header>,
    /// One per client region; `None` for the regions a client does not map.
    regions: Vec<Option<Parts>>,
    // Declared last: dropped after everything that points into them.
    windows: Arc<Vec<Window>>,
}

// SAFETY: the pointers point into `windows`, owned by the service; the
// shared memory behind them is accessed through atomics, or by protocol.
unsafe impl Send for Service {}

/// The error kind's name for this kind of service.
pub(crate) const KIND: &str = "request/response";

impl Service {
    /// Checks that `segment` holds a service and maps it for `role`.
    pub(crate) fn open(segment: &Segment, role: Role) -> Result<Service> {
        Service::open_with(segment, role, false)
    }

    /// [`Service::open`] for the creator, before it stores the magic.
    pub(crate) fn open_unpublished(segment: &Segment, role: Role) -> Result<Service> {
        Service::open_with(segment, role, true)
    }

    fn open_with(segment: &Segment, role: Role, unpublished: bool) -> Result<Service> {
        let object = segment.describe();
        if segment.len() < layout::HEADER_LEN {
            return Err(Error::NotAService {
                object,
                kind: KIND,
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
                kind: KIND,
                detail: "it does not start with the magic \"MSRPC001\"".into(),
            });
        }
        let version = h.fixed.version.load(Ordering::Relaxed);
        if version != layout::VERSION {
            return Err(Error::Unsupported {
                what: format!(
                    "{object}: request/response layout version {version} (this library speaks {})",
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
        // The client chose its region from an earlier look at the header:
        // one that changed since (only a hostile writer does that) may no
        // longer have it.
        if let Role::Client(c) = role {
            if c >= g.shape.max_clients {
                return Err(Error::Corrupted {
                    object,
                    detail: format!(
                        "its header changed while a client attached: region {c} is not below \
                         max_clients ({})",
                        g.shape.max_clients
                    ),
                });
            }
        }
        let mut windows = vec![header_window];
        let mut regions = Vec::with_capacity(g.shape.max_clients as usize);
        for c in 0..g.shape.max_clients {
            let at = g.region_at(c);
            let control = at..at + g.control_len;
            let requests = at + g.requests_at..at + g.responses_at;
            let responses = at + g.responses_at..at + g.region_len;
            let (control, requests, responses) = match role {
                Role::Client(me) if me != c => {
                    regions.push(None);
                    continue;
                }
                Role::Client(_) => (
                    Window::Writable(segment.map(control)?),
                    Some(Window::Writable(segment.map(requests)?)),
                    Some(Window::ReadOnly(segment.map_readonly(responses)?)),
                ),
                Role::Server => (
                    Window::Writable(segment.map(control)?),
                    Some(Window::ReadOnly(segment.map_readonly(requests)?)),
                    Some(Window::Writable(segment.map(responses)?)),
                ),
                Role::Observer => (Window::ReadOnly(segment.map_readonly(control)?), None, None),
            };
            let ptr = |w: &Window| NonNull::new(w.ptr()).expect("a mapping is not null");
            let first = windows.len();
            let parts = Parts {
                control: ptr(&control),
                requests: requests.as_ref().map(ptr),
                responses: responses.as_ref().map(ptr),
                windows: (
                    first,
                    first + 1 + requests.is_some() as usize + responses.is_some() as usize,
                ),
            };
            regions.push(Some(parts));
            windows.push(control);
            windows.extend(requests);
            windows.extend(responses);
        }
        Ok(Service {
            segment: segment.clone(),
            geometry,
            header,
            regions,
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

    fn parts(&self, c: u32) -> Parts {
        self.regions[c as usize].expect("this endpoint maps that region")
    }

    /// Client `c`'s block (`c` below `max_clients`, a region this endpoint
    /// maps).
    pub(crate) fn block(&self, c: u32) -> &ClientBlock {
        // SAFETY: the control part starts with the block, page-aligned;
        // atomics and padding; the window lives as long as `self`.
        unsafe { &*self.parts(c).control.as_ptr().cast::<ClientBlock>() }
    }

    /// Client `c`'s ring, slots and wake words.
    pub(crate) fn region(&self, c: u32) -> Region<'_> {
        let g = &self.geometry;
        let base = self.parts(c).control.as_ptr();
        // SAFETY: the control part holds the ring's entries from RING_AT + 8 (4-aligned) and the
        // slots from `slots_at` (64-aligned), both within `control_len` (checked geometry); they
        // are atomics; the window lives as long as `self`.
        unsafe {
            Region {
                head: &self.block(c).head,
                entries: std::slice::from_raw_parts(
                    base.add(layout::RING_AT as usize + 8).cast::<AtomicU32>(),
                    g.ring_len as usize,
                ),
                slots: std::slice::from_raw_parts(
                    base.add(g.slots_at as usize).cast::<Slot>(),
                    g.shape.max_in_flight as usize,
                ),
                wake: &self.header().client_wake[c as usize],
            }
        }
    }

    /// How client `c` rings the server.
    pub(crate) fn doorbell(&self, c: u32) -> Doorbell<'_> {
        let h = self.header();
        Doorbell {
            pending: &h.pending[(c / 64) as usize],
            bit: 1 << (c % 64),
            server_wake: &h.server_wake,
        }
    }

    /// The request buffer of slot `s` of client `c` (`max_request_len`
    /// bytes; `s` below `max_in_flight`).
    pub(crate) fn request_buffer(&self, c: u32, s: u32) -> *mut u8 {
        let base = self.parts(c).requests.expect("mapped");
        // SAFETY: slot `s`'s buffer lies inside the request part (checked
        // geometry: `max_in_flight` strides).
        unsafe {
            base.as_ptr()
                .add(s as usize * self.geometry.request_stride as usize)
        }
    }

    /// The response buffer of slot `s` of client `c`.
    pub(crate) fn response_buffer(&self, c: u32, s: u32) -> *mut u8 {
        let base = self.parts(c).responses.expect("mapped");
        // SAFETY: as for the request buffers.
        unsafe {
            base.as_ptr()
                .add(s as usize * self.geometry.response_stride as usize)
        }
    }

    /// `Ok` unless the memory under a mapping is gone (another process
    /// truncated the segment).
    pub(crate) fn check_intact(&self) -> Result<()> {
        Window::check_all(self.windows.iter())
    }

    /// [`Service::check_intact`] for the header and client `c`'s region
    /// only (what one request or answer touches).
    /// Inlined: the server calls it twice per call, and the common case is
    /// one load (a call of its own, saving registers for the slow part,
    /// cost 17 instructions each: `docs/benchmarks.md`).
    #[inline]
    pub(crate) fn check_region_intact(&self, c: u32) -> Result<()> {
        if !crate::sys::any_mapping_faulted() {
            return Ok(());
        }
        self.check_region_windows(c)
    }

    /// The slow part of [`Service::check_region_intact`]: some mapping of
    /// this process lost its memory; is it one of these?
    #[cold]
    #[inline(never)]
    fn check_region_windows(&self, c: u32) -> Result<()> {
        let (first, end) = self.parts(c).windows;
        Window::check_all(self.windows[..1].iter().chain(&self.windows[first..end]))
    }

    /// `Corrupted` with `detail`, unless the memory is gone, which explains
    /// it better.
    pub(crate) fn corrupted(&self, detail: String) -> Error {
        match self.check_intact() {
            Err(e) => e,
            Ok(()) => Error::Corrupted {
                object: self.describe(),
                detail,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Role, Service};
    use crate::rpc::{Server, ServerConfig};
    use crate::Error;

    /// A client's region beyond the header's `max_clients` (the header
    /// changed between the client's look and its open) is `Corrupted`, not
    /// an index out of bounds.
    #[test]
    fn a_client_region_beyond_the_header_is_corrupted_not_a_panic() {
        let name = format!("mst-rpc-role-{}", std::process::id());
        let server = Server::create(&name, ServerConfig::new().max_clients(2)).unwrap();
        let segment = server.segment();
        assert!(Service::open(segment, Role::Client(1)).is_ok());
        match Service::open(segment, Role::Client(2)) {
            Err(Error::Corrupted { detail, .. }) => {
                assert!(detail.contains("max_clients (2)"), "{detail}")
            }
            other => panic!("expected Corrupted, got {:?}", other.err()),
        }
    }
}
