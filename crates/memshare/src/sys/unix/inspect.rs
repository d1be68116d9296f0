//! Looking at named objects from the outside: what `/dev/shm` holds, who
//! holds it (`flock` entries in `/proc/locks`, descriptors in `/proc/*/fd`).
//!
//! Only Linux lists its POSIX shared-memory objects as files; elsewhere
//! these functions say [`Error::Unsupported`].

use super::platform::Marker;

/// What the system tells about one named object, without taking part in
/// its lifetime (no lock is taken, nothing is removed).
#[derive(Clone, Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // only Linux makes them
pub(crate) struct NamedStat {
    pub name: String,
    pub len: u64,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Open file descriptions holding a `flock` on the object.
    pub holders: usize,
    /// `None` when the object could not be opened (another user's).
    pub marker: Option<Marker>,
    /// The first bytes (at most the length asked for), `None` when the
    /// object could not be opened.
    pub head: Option<Vec<u8>>,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::OwnedFd;

    use rustix::fs::{self, FileType, Mode, OFlags, Stat};
    use rustix::io::Errno;

    use super::super::platform;
    use super::NamedStat;
    use crate::{validate_name, Error, Result};

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

    pub(crate) fn list_named(head_len: usize) -> Result<Vec<NamedStat>> {
        let locks = flock_table()?;
        let dir = std::fs::read_dir(SHM_DIR).map_err(|e| io_error(SHM_DIR, "read_dir", e))?;
        let mut found = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_error(SHM_DIR, "read_dir", e))?;
            let file_name = entry.file_name();
            // Names memshare cannot address are someone else's business.
            let Some(name) = file_name.to_str().filter(|n| validate_name(n).is_ok()) else {
                continue;
            };
            if let Some(stat) = stat_one(name, head_len, &locks)? {
                found.push(stat);
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    pub(crate) fn stat_named(name: &str, head_len: usize) -> Result<NamedStat> {
        let locks = flock_table()?;
        stat_one(name, head_len, &locks)?.ok_or_else(|| Error::NotFound {
            name: name.to_owned(),
        })
    }

    /// One object; `None` if it vanished or is not a regular file.
    fn stat_one(name: &str, head_len: usize, locks: &[FlockEntry]) -> Result<Option<NamedStat>> {
        let path = shm_path(name);
        let mut stat = match fs::lstat(path.as_str()) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(super::super::os_error(Some(name), "stat", e)),
        };
        let mut marker = None;
        let mut head = None;
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
                marker = Some(platform::get_marker(&fd));
                head = Some(read_head(&fd, head_len));
            }
            Err(Errno::NOENT) => return Ok(None),
            // Another user's object (or any other refusal): what stat
            // told is all there is to know.
            Err(_) => {}
        }
        Ok(Some(NamedStat {
            name: name.to_owned(),
            len: u64::try_from(stat.st_size).unwrap_or(0),
            uid: stat.st_uid,
            gid: stat.st_gid,
            mode: stat.st_mode & 0o7777,
            holders: count_holders(locks, &stat),
            marker,
            head,
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
            Errno::NOENT => Error::NotFound {
                name: name.to_owned(),
            },
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
    use super::NamedStat;
    use crate::{Error, Result};

    fn unsupported(what: &str) -> Error {
        Error::Unsupported {
            what: format!(
                "{what}: only Linux shows its shared-memory objects (/dev/shm, /proc/locks)"
            ),
        }
    }

    pub(crate) fn list_named(_head_len: usize) -> Result<Vec<NamedStat>> {
        Err(unsupported("listing named segments"))
    }

    pub(crate) fn stat_named(_name: &str, _head_len: usize) -> Result<NamedStat> {
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
