//! Looking at the named segments of the machine from the outside: what
//! exists, who holds it, what it holds; and collecting stale names.
//!
//! Nothing here takes part in a segment's lifetime: listing and inspecting
//! take no lock and open no [`Segment`](crate::Segment), so they never keep
//! a name alive nor remove one. Only [`reclaim_stale`] removes, and only a
//! name that nobody holds.

use std::fmt;

use crate::sys::{self, Marker, NamedStat, Reclaim};
use crate::{validate_name, Result};

/// The first 8 bytes of a segment that holds a memshare channel.
///
/// [`list_named`] and [`named_info`] report a segment that starts with
/// these bytes as [`SegmentKind::Channel`].
///
/// ```
/// assert_eq!(&memshare::CHANNEL_MAGIC, b"MSCHAN01");
/// ```
pub const CHANNEL_MAGIC: [u8; 8] = crate::channel::layout::MAGIC;

/// How long a named segment's name lives, as recorded on the object.
///
/// Displayed as `shared`, `persist` or `foreign`.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::{NamedLifetime, Segment};
/// let name = format!("doc-lifetime-{}", std::process::id());
/// let segment = Segment::options().persist(true).create_named(&name, 4096)?;
/// let info = memshare::named_info(&name)?;
/// assert_eq!(info.lifetime, Some(NamedLifetime::Persist));
/// assert_eq!(NamedLifetime::Persist.to_string(), "persist");
/// # drop(segment); Segment::remove(&name)?; Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NamedLifetime {
    /// Made by memshare; the name goes away with its last holder.
    Shared,
    /// Made by memshare with [`SegmentOptions::persist`](crate::SegmentOptions::persist):
    /// the name stays until [`Segment::remove`](crate::Segment::remove).
    Persist,
    /// No lifetime recorded: made by another program (Python, C…), or on a
    /// system that cannot record it. It lives like a file.
    Foreign,
}

impl fmt::Display for NamedLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamedLifetime::Shared => "shared",
            NamedLifetime::Persist => "persist",
            NamedLifetime::Foreign => "foreign",
        })
    }
}

/// What a segment holds, judging by its first bytes.
///
/// Displayed as `bytes` or `channel`.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::{Segment, SegmentKind, CHANNEL_MAGIC};
/// let name = format!("doc-kind-{}", std::process::id());
/// let segment = Segment::create_named(&name, 4096)?;
/// assert_eq!(memshare::named_info(&name)?.kind, Some(SegmentKind::Bytes));
/// segment.map(..)?.write_at(0, &CHANNEL_MAGIC)?;
/// assert_eq!(memshare::named_info(&name)?.kind, Some(SegmentKind::Channel));
/// assert_eq!(SegmentKind::Channel.to_string(), "channel");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// Plain bytes: anything that is not recognised.
    Bytes,
    /// A memshare channel: the segment starts with [`CHANNEL_MAGIC`].
    Channel,
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegmentKind::Bytes => "bytes",
            SegmentKind::Channel => "channel",
        })
    }
}

/// What the system tells about one named segment, from [`list_named`] or
/// [`named_info`]: a snapshot, which may be out of date as soon as it is
/// returned.
///
/// Objects this process may not open (another user's, mode 0600) are still
/// described, from what `stat` tells: their `lifetime` and `kind` are
/// `None`.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// let name = format!("doc-info-{}", std::process::id());
/// let segment = memshare::Segment::create_named(&name, 8192)?;
/// let info = memshare::named_info(&name)?;
/// assert_eq!((info.name.as_str(), info.len, info.mode), (name.as_str(), 8192, 0o600));
/// # drop(segment); Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamedInfo {
    /// The segment's name, as given to [`Segment::open`](crate::Segment::open).
    pub name: String,
    /// Its size in bytes.
    pub len: u64,
    /// The owner's user id.
    pub uid: u32,
    /// The owner's group id.
    pub gid: u32,
    /// The permission bits (`0o600` for a segment memshare made).
    pub mode: u32,
    /// How many holders it has: open objects holding the `flock` memshare
    /// keeps on a segment it uses (on Linux, the `FLOCK` entries of
    /// `/proc/locks` for this object). A process with one [`Segment`](crate::Segment)
    /// and its clones and views counts once. Objects made by other programs
    /// usually have none. Locks held by processes outside this process's
    /// PID namespace are not visible to it.
    pub holders: usize,
    /// The recorded lifetime; `None` if the object could not be opened.
    pub lifetime: Option<NamedLifetime>,
    /// What it holds; `None` if the object could not be opened.
    pub kind: Option<SegmentKind>,
}

impl NamedInfo {
    /// Whether the name is stale: its lifetime is shared and nobody holds it
    /// (every holder died without dropping it). [`reclaim_stale`] removes
    /// such a name, and so does the next [`Segment::open`](crate::Segment::open)
    /// or [`Segment::create_named`](crate::Segment::create_named) of it.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-stale-{}", std::process::id());
    /// let segment = memshare::Segment::create_named(&name, 4096)?;
    /// assert!(!memshare::named_info(&name)?.is_stale()); // held by this process
    /// # drop(segment); Ok(())
    /// # }
    /// ```
    pub fn is_stale(&self) -> bool {
        self.lifetime == Some(NamedLifetime::Shared) && self.holders == 0
    }

    fn from_stat(stat: NamedStat) -> NamedInfo {
        let lifetime = stat.marker.map(|marker| match marker {
            Marker::Shared => NamedLifetime::Shared,
            Marker::Persist => NamedLifetime::Persist,
            Marker::Foreign => NamedLifetime::Foreign,
        });
        let kind = stat.head.map(|head| {
            if head == CHANNEL_MAGIC {
                SegmentKind::Channel
            } else {
                SegmentKind::Bytes
            }
        });
        NamedInfo {
            name: stat.name,
            len: stat.len,
            uid: stat.uid,
            gid: stat.gid,
            mode: stat.mode,
            holders: stat.holders,
            lifetime,
            kind,
        }
    }
}

/// Every named segment on this machine, sorted by name.
///
/// On Linux these are the regular files of `/dev/shm` whose names are valid
/// segment names (see [`validate_name`]): memshare's segments, and those
/// other programs made with `shm_open` (Python's `shared_memory`, POSIX
/// semaphores as `sem.*`…). Other systems do not list their shared-memory
/// objects: there it fails with [`Error::Unsupported`](crate::Error::Unsupported).
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::{NamedLifetime, Segment, SegmentKind};
/// let name = format!("doc-list-{}", std::process::id());
/// let segment = Segment::create_named(&name, 4096)?;
/// let listed = memshare::list_named()?;
/// let info = listed.iter().find(|info| info.name == name).expect("listed");
/// assert_eq!(info.len, 4096);
/// assert_eq!(info.holders, 1);
/// assert_eq!(info.lifetime, Some(NamedLifetime::Shared));
/// assert_eq!(info.kind, Some(SegmentKind::Bytes));
/// # drop(segment); Ok(())
/// # }
/// ```
pub fn list_named() -> Result<Vec<NamedInfo>> {
    Ok(sys::list_named(CHANNEL_MAGIC.len())?
        .into_iter()
        .map(NamedInfo::from_stat)
        .collect())
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
/// assert_eq!(memshare::named_info(&name)?.holders, 1);
/// drop(segment);
/// assert!(matches!(memshare::named_info(&name), Err(Error::NotFound { .. })));
/// # Ok(())
/// # }
/// ```
pub fn named_info(name: &str) -> Result<NamedInfo> {
    validate_name(name)?;
    sys::stat_named(name, CHANNEL_MAGIC.len()).map(NamedInfo::from_stat)
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
/// assert!(memshare::holder_pids(&name)?.contains(&std::process::id()));
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
/// assert!(!memshare::reclaim_stale(&name)?); // held by this process
/// drop(segment);
/// assert!(!memshare::reclaim_stale(&name)?); // gone with its last holder
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
/// assert!(memshare::named_capacity()? > 0);
/// # Ok(())
/// # }
/// ```
pub fn named_capacity() -> Result<u64> {
    sys::named_capacity()
}
