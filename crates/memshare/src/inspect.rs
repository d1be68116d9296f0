//! Looking at the named segments of the machine from the outside: what
//! exists, who holds it, what it holds; and collecting stale names.
//!
//! Nothing here takes part in a segment's lifetime: listing and inspecting
//! take no lock and open no [`Segment`](crate::Segment), so they never keep
//! a name alive nor remove one. Only [`reclaim_stale`] removes, and only a
//! name that nobody holds.

use crate::sys::{self, Reclaim};
use crate::{validate_name, Result};

pub use crate::sys::{NamedInfo, NamedLifetime, SegmentKind};

/// The magics by which [`list_named`] and [`named_info`] recognise what a
/// segment holds.
const KINDS: &[(&[u8], SegmentKind)] = &[
    (&crate::channel::layout::MAGIC, SegmentKind::Channel),
    (&crate::pubsub::layout::MAGIC, SegmentKind::Pubsub),
    (&crate::rpc::layout::MAGIC, SegmentKind::Rpc),
];

/// Marks the names memshare's rules accept.
fn judged(mut info: NamedInfo) -> NamedInfo {
    info.valid_name = validate_name(&info.name).is_ok();
    info
}

/// Every named segment on this machine, sorted by name.
///
/// On Linux these are the regular files of `/dev/shm`: memshare's
/// segments, and those other programs made with `shm_open` (Python's
/// `shared_memory`, POSIX semaphores as `sem.*`, iceoryx2's `iox2_…`…),
/// including names that memshare's naming rules refuse
/// ([`NamedInfo::valid_name`] is false for those: listed, but
/// `Segment::open` refuses them). Other systems do not list their shared-memory
/// objects: there it fails with [`Error::Unsupported`](crate::Error::Unsupported).
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::inspect::{NamedLifetime, SegmentKind};
/// use memshare::Segment;
/// let name = format!("doc-list-{}", std::process::id());
/// let segment = Segment::create_named(&name, 4096)?;
/// let listed = memshare::inspect::list_named()?;
/// let info = listed.iter().find(|info| info.name == name).expect("listed");
/// assert_eq!(info.len, 4096);
/// assert_eq!(info.holders, 1);
/// assert_eq!(info.lifetime, Some(NamedLifetime::Shared));
/// assert_eq!(info.kind, Some(SegmentKind::Bytes));
/// # drop(segment); Ok(())
/// # }
/// ```
pub fn list_named() -> Result<Vec<NamedInfo>> {
    Ok(sys::list_named(KINDS)?.into_iter().map(judged).collect())
}

/// What [`list_named`] tells about the segment called `name`.
///
/// Fails with [`Error::NotFound`](crate::Error::NotFound) if there is none
/// (a stale name is still found: see [`NamedInfo::is_stale`]).
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::Error;
/// let name = format!("doc-named-info-{}", std::process::id());
/// let segment = memshare::Segment::create_named(&name, 4096)?;
/// assert_eq!(memshare::inspect::named_info(&name)?.holders, 1);
/// drop(segment);
/// assert!(matches!(memshare::inspect::named_info(&name), Err(Error::NotFound { .. })));
/// # Ok(())
/// # }
/// ```
pub fn named_info(name: &str) -> Result<NamedInfo> {
    validate_name(name)?;
    sys::stat_named(name, KINDS).map(judged)
}

/// The ids of the processes that have the segment called `name` open,
/// sorted; best effort.
///
/// On Linux this scans `/proc/*/fd` for descriptors of the object: it finds
/// processes with a descriptor of it (whether or not they hold the lock
/// counted by [`NamedInfo::holders`]), not those that only keep a mapping,
/// and only those this process may look at (its own user's, or all of them
/// with privilege). Fails with [`Error::NotFound`](crate::Error::NotFound)
/// if there is no such name.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-pids-{}", std::process::id());
/// let segment = memshare::Segment::create_named(&name, 4096)?;
/// assert!(memshare::inspect::holder_pids(&name)?.contains(&std::process::id()));
/// # drop(segment); Ok(())
/// # }
/// ```
pub fn holder_pids(name: &str) -> Result<Vec<u32>> {
    validate_name(name)?;
    sys::holder_pids(name)
}

/// Removes the name `name` if it is stale: its lifetime is shared and
/// nobody holds it. `Ok(true)` if this call removed it; `Ok(false)` if the
/// name is live, persistent, foreign, or not there.
///
/// The check is made again under an exclusive lock, so a name that a
/// process opens meanwhile is never removed.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-reclaim-{}", std::process::id());
/// let segment = memshare::Segment::create_named(&name, 4096)?;
/// assert!(!memshare::inspect::reclaim_stale(&name)?); // held by this process
/// drop(segment);
/// assert!(!memshare::inspect::reclaim_stale(&name)?); // gone with its last holder
/// # Ok(())
/// # }
/// ```
pub fn reclaim_stale(name: &str) -> Result<bool> {
    validate_name(name)?;
    Ok(sys::reclaim_if_stale(name)? == Reclaim::Removed)
}

/// The size in bytes of the file system that holds named segments (`/dev/shm`
/// on Linux). Named segments are sparse, so a larger one can be created, but
/// it could never be filled: touching its pages would fail with `SIGBUS`
/// once the file system is full.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// assert!(memshare::inspect::named_capacity()? > 0);
/// # Ok(())
/// # }
/// ```
pub fn named_capacity() -> Result<u64> {
    sys::named_capacity()
}
