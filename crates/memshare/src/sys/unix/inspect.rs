//! Looking at named objects from the outside: what `/dev/shm` holds, who
//! holds it (`flock` entries in `/proc/locks`, descriptors in `/proc/*/fd`).
//!
//! Only Linux lists its POSIX shared-memory objects as files; elsewhere
//! these functions say [`Error::Unsupported`].

use std::fmt;

use super::platform::Marker;

/// How long a named segment's name lives, as recorded on the object.
///
/// Displayed as `shared`, `persist` or `foreign`.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::{inspect::NamedLifetime, Segment};
/// let name = format!("doc-lifetime-{}", std::process::id());
/// let segment = Segment::options().persist(true).create_named(&name, 4096)?;
/// let info = memshare::inspect::named_info(&name)?;
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
/// Displayed as `bytes`, `channel` or `pubsub`.
///
/// ```
/// # fn main() -> memshare::Result<()> {
/// use memshare::{channel::layout::MAGIC, inspect::SegmentKind, Segment};
/// let name = format!("doc-kind-{}", std::process::id());
/// let segment = Segment::create_named(&name, 4096)?;
/// assert_eq!(memshare::inspect::named_info(&name)?.kind, Some(SegmentKind::Bytes));
/// segment.map(..)?.write_at(0, &MAGIC)?;
/// assert_eq!(memshare::inspect::named_info(&name)?.kind, Some(SegmentKind::Channel));
/// assert_eq!(SegmentKind::Channel.to_string(), "channel");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// Plain bytes: anything that is not recognised.
    Bytes,
    /// A memshare channel: the segment starts with the channel magic
    /// ([`channel::layout::MAGIC`](crate::channel::layout::MAGIC)).
    Channel,
    /// A memshare publish-subscribe service: the segment starts with
    /// [`pubsub::layout::MAGIC`](crate::pubsub::layout::MAGIC).
    Pubsub,
    /// A memshare request/response service: the segment starts with
    /// [`rpc::layout::MAGIC`](crate::rpc::layout::MAGIC).
    Rpc,
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegmentKind::Bytes => "bytes",
            SegmentKind::Channel => "channel",
            SegmentKind::Pubsub => "pubsub",
            SegmentKind::Rpc => "rpc",
        })
    }
}

/// What the system tells about one named segment, from
/// [`list_named`](crate::inspect::list_named) or
/// [`named_info`](crate::inspect::named_info): a snapshot, which may be out of date as soon as it is
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
/// let info = memshare::inspect::named_info(&name)?;
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
    /// Whether the name follows memshare's naming rules
    /// ([`validate_name`](crate::validate_name)): names that do not (made
    /// by other programs: `iox2_…`, `sem.…` with odd characters) are listed
    /// too, but `Segment::open` refuses them.
    pub valid_name: bool,
}

impl NamedInfo {
    /// Whether the name is stale: its lifetime is shared and nobody holds it
    /// (every holder died without dropping it). [`reclaim_stale`](crate::inspect::reclaim_stale) removes
    /// such a name, and so does the next [`Segment::open`](crate::Segment::open)
    /// or [`Segment::create_named`](crate::Segment::create_named) of it.
    ///
    /// ```
    /// # fn main() -> memshare::Result<()> {
    /// let name = format!("doc-stale-{}", std::process::id());
    /// let segment = memshare::Segment::create_named(&name, 4096)?;
    /// assert!(!memshare::inspect::named_info(&name)?.is_stale()); // held by this process
    /// # drop(segment); Ok(())
    /// # }
    /// ```
    pub fn is_stale(&self) -> bool {
        self.lifetime == Some(NamedLifetime::Shared) && self.holders == 0
    }
}

// Only Linux lists its objects (see `imp`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl NamedLifetime {
    fn from_marker(marker: Marker) -> NamedLifetime {
        match marker {
            Marker::Shared => NamedLifetime::Shared,
            Marker::Persist => NamedLifetime::Persist,
            Marker::Foreign => NamedLifetime::Foreign,
        }
    }
}

/// The kinds a segment's first bytes may announce (the layer above gives
/// the magics: channels, and later services).
pub(crate) type Kinds<'a> = &'a [(&'a [u8], SegmentKind)];

/// What `head` (the first bytes of an object) says it holds.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn kind_of(head: &[u8], kinds: Kinds<'_>) -> SegmentKind {
    kinds
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map_or(SegmentKind::Bytes, |&(_, kind)| kind)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::OwnedFd;

    use rustix::fs::{self, FileType, Mode, OFlags, Stat};
    use rustix::io::Errno;

    use super::super::platform;
    use super::{kind_of, Kinds, NamedInfo, NamedLifetime};
    use crate::{Error, Result};

    /// Where Linux keeps POSIX shared-memory objects.
    const SHM_DIR: &str = "/dev/shm";
    /// The kernel's table of file locks.
    const PROC_LOCKS: &str = "/proc/locks";

    fn shm_path(name: &str) -> String {
        format!("{SHM_DIR}/{name}")
    }

    fn io_error(object: &str, op: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            object: object.to_owned(),
            op,
            source,
        }
    }

    pub(crate) fn list_named(kinds: Kinds<'_>) -> Result<Vec<NamedInfo>> {
        let locks = flock_table()?;
        let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io_error(SHM_DIR, "read_dir", e))?;
        let mut found = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_error(SHM_DIR, "read_dir", e))?;
            // Every name the file system holds (the layer above marks those
            // memshare cannot open by its naming rules); names that are not
            // text cannot be shown or given to anything.
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if let Some(info) = stat_one(name, kinds, &locks)? {
                found.push(info);
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    pub(crate) fn stat_named(name: &str, kinds: Kinds<'_>) -> Result<NamedInfo> {
        let locks = flock_table()?;
        stat_one(name, kinds, &locks)?.ok_or_else(|| Error::not_found(name))
    }

    /// One object; `None` if it vanished or is not a regular file.
    fn stat_one(name: &str, kinds: Kinds<'_>, locks: &[FlockEntry]) -> Result<Option<NamedInfo>> {
        let path = shm_path(name);
        let mut stat = match fs::lstat(path.as_str()) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(super::super::os_error(Some(name), "stat", e)),
        };
        let mut lifetime = None;
        let mut kind = None;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        // No symlinks, and no waiting on a FIFO someone swapped in.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match fs::open(path.as_str(), flags, Mode::empty()) {
            Ok(fd) => {
                // The name may have changed hands since the lstat: describe
                // the object actually opened.
                if let Ok(now) = fs::fstat(&fd) {
                    if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                        return Ok(None);
                    }
                    stat = now;
                }
                lifetime = Some(NamedLifetime::from_marker(platform::get_marker(&fd)));
                let head_len = kinds.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
                kind = Some(kind_of(&read_head(&fd, head_len), kinds));
            }
            Err(Errno::NOENT) => return Ok(None),
            // Another user's object (or any other refusal): what stat
            // told is all there is to know.
            Err(_) => {}
        }
        Ok(Some(NamedInfo {
            name: name.to_owned(),
            len: u64::try_from(stat.st_size).unwrap_or(0),
            uid: stat.st_uid,
            gid: stat.st_gid,
            mode: stat.st_mode & 0o7777,
            holders: count_holders(locks, &stat),
            lifetime,
            kind,
            // Judged by the layer above (the naming rules are not sys's).
            valid_name: true,
        }))
    }

    /// Up to `len` bytes from the start; fewer for a shorter object (or
    /// none if reading fails).
    fn read_head(fd: &OwnedFd, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match rustix::io::pread(fd, &mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        buf.truncate(filled);
        buf
    }

    /// One `FLOCK` line of `/proc/locks`: the locked file's device and inode.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct FlockEntry {
        major: u32,
        minor: u32,
        inode: u64,
    }

    fn flock_table() -> Result<Vec<FlockEntry>> {
        let text =
            std::fs::read_to_string(PROC_LOCKS).map_err(|e| io_error(PROC_LOCKS, "read", e))?;
        Ok(parse_flock_table(&text))
    }

    /// The granted `FLOCK` entries of a `/proc/locks` text. Lines look like
    /// `1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF` (device numbers in
    /// hex, the inode in decimal); waiters (`1: -> FLOCK ...`), other lock
    /// classes and lines that do not parse are left out.
    fn parse_flock_table(text: &str) -> Vec<FlockEntry> {
        text.lines().filter_map(parse_flock_line).collect()
    }

    fn parse_flock_line(line: &str) -> Option<FlockEntry> {
        let mut fields = line.split_whitespace();
        fields.next()?; // "N:"
        if fields.next()? != "FLOCK" {
            return None;
        }
        // class, type and pid, then MAJOR:MINOR:INODE.
        let id = fields.nth(3)?;
        let mut parts = id.split(':');
        let major = u32::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
        let inode = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(FlockEntry {
            major,
            minor,
            inode,
        })
    }

    fn count_holders(locks: &[FlockEntry], stat: &Stat) -> usize {
        let wanted = FlockEntry {
            major: fs::major(stat.st_dev),
            minor: fs::minor(stat.st_dev),
            inode: stat.st_ino,
        };
        locks.iter().filter(|&&entry| entry == wanted).count()
    }

    pub(crate) fn holder_pids(name: &str) -> Result<Vec<u32>> {
        let path = shm_path(name);
        let target = fs::lstat(path.as_str()).map_err(|e| match e {
            Errno::NOENT => Error::not_found_because(name, e),
            e => super::super::os_error(Some(name), "stat", e),
        })?;
        let proc_dir = std::fs::read_dir("/proc").map_err(|e| io_error("/proc", "read_dir", e))?;
        let mut pids = Vec::new();
        for entry in proc_dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if process_has_open(pid, &target) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// Whether process `pid` has a descriptor for the object `target`.
    /// Processes that cannot be looked at count as no.
    fn process_has_open(pid: u32, target: &Stat) -> bool {
        let fd_dir = format!("/proc/{pid}/fd");
        let Ok(fds) = std::fs::read_dir(&fd_dir) else {
            return false;
        };
        let prefix = format!("{SHM_DIR}/");
        fds.flatten().any(|fd| {
            let link = fd.path();
            // Only descriptors of the shared-memory file system; the path
            // shown is not always the name (an object created unnamed and
            // named afterwards shows as `/dev/shm/#<inode> (deleted)`), so
            // the object itself decides: same device and inode.
            let in_shm = std::fs::read_link(&link).is_ok_and(|dest| {
                dest.as_os_str()
                    .as_encoded_bytes()
                    .starts_with(prefix.as_bytes())
            });
            in_shm
                && fs::stat(link.as_path())
                    .is_ok_and(|st| st.st_dev == target.st_dev && st.st_ino == target.st_ino)
        })
    }

    pub(crate) fn named_capacity() -> Result<u64> {
        let st = fs::statvfs(SHM_DIR).map_err(|e| Error::Io {
            object: SHM_DIR.to_owned(),
            op: "statvfs",
            source: e.into(),
        })?;
        Ok(st.f_blocks.saturating_mul(st.f_frsize))
    }

    #[cfg(test)]
    mod tests {
        use super::{parse_flock_table, FlockEntry};

        #[test]
        fn reads_granted_flocks_only() {
            let text = "\
1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF
1: -> FLOCK  ADVISORY  WRITE 1240 00:1a:5678 0 EOF
2: POSIX  ADVISORY  WRITE 99 00:1a:5678 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:1a:5678 0 EOF
4: FLOCK  ADVISORY  WRITE 77 fd:01:42 0 EOF
5: FLOCK  ADVISORY  READ  12 garbage 0 EOF
6: FLOCK  ADVISORY  READ  12 00:1a:1:2 0 EOF
7: FLOCK
";
            let entry = |major, minor, inode| FlockEntry {
                major,
                minor,
                inode,
            };
            assert_eq!(
                parse_flock_table(text),
                [entry(0, 0x1a, 5678), entry(0xfd, 1, 42)]
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Kinds, NamedInfo};
    use crate::{Error, Result};

    fn unsupported(what: &str) -> Error {
        Error::Unsupported {
            what: format!(
                "{what}: only Linux shows its shared-memory objects (/dev/shm, /proc/locks)"
            ),
        }
    }

    pub(crate) fn list_named(_kinds: Kinds<'_>) -> Result<Vec<NamedInfo>> {
        Err(unsupported("listing named segments"))
    }

    pub(crate) fn stat_named(_name: &str, _kinds: Kinds<'_>) -> Result<NamedInfo> {
        Err(unsupported("inspecting a named segment"))
    }

    pub(crate) fn holder_pids(_name: &str) -> Result<Vec<u32>> {
        Err(unsupported("finding the processes that hold a segment"))
    }

    pub(crate) fn named_capacity() -> Result<u64> {
        Err(unsupported("the capacity of named shared memory"))
    }
}

pub(crate) use imp::{holder_pids, list_named, named_capacity, stat_named};
