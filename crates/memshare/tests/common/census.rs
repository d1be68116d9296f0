//! A census of what a test process holds: its descriptors, its children,
//! and the names it made in `/dev/shm`. Tests take one at the start and
//! check that the end looks the same.
//!
//! Tests of one binary run in parallel threads, so an exact count needs the
//! binary to itself: either one test per binary, or every census-taking test
//! holding [`serial`] for its whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::MutexGuard;

/// Serializes the census-taking tests of one binary, so that no other test
/// opens or closes descriptors while one counts them. A test that failed
/// (poisoning the lock) does not stop the others.
pub fn serial() -> MutexGuard<'static, ()> {
    super::serial()
}

/// Every open descriptor of this process and what it refers to.
pub fn descriptors() -> BTreeMap<i32, String> {
    // Read the numbers first: the directory's own descriptor is closed by
    // the time the links are read, so it drops out (its link is gone).
    let numbers: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers
        .into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Whether a descriptor's target (as `/proc/self/fd` shows it) is a
/// shared-memory object: a memfd or an object in `/dev/shm`.
pub fn is_shared_memory(target: &str) -> bool {
    target.starts_with("/memfd:") || target.starts_with("/dev/shm/")
}

/// The descriptors of this process at one moment.
pub struct Descriptors(BTreeMap<i32, String>);

impl Descriptors {
    pub fn take() -> Descriptors {
        Descriptors(descriptors())
    }

    /// How many there were.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// What the descriptors opened since `earlier` refer to.
    pub fn opened_since(&self, earlier: &Descriptors) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| !earlier.0.contains_key(k))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Panics, naming the differences, unless this process holds exactly
    /// the descriptors it held when `self` was taken.
    pub fn assert_unchanged(&self, when: &str) {
        let now = descriptors();
        if now == self.0 {
            return;
        }
        let opened: Vec<_> = now
            .iter()
            .filter(|(k, _)| !self.0.contains_key(k))
            .collect();
        let closed: Vec<_> = self
            .0
            .iter()
            .filter(|(k, _)| !now.contains_key(k))
            .collect();
        let changed: Vec<_> = now
            .iter()
            .filter(|(k, v)| self.0.get(*k).is_some_and(|old| old != *v))
            .collect();
        panic!(
            "{when}: descriptors changed ({} before, {} now): opened {opened:?}, closed {closed:?}, now referring elsewhere {changed:?}",
            self.0.len(),
            now.len()
        );
    }
}

/// The names in `/dev/shm` that start with `prefix`.
pub fn dev_shm_names(prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The prefix of every name [`super::unique_name`] gives this process for `tag`.
pub fn name_prefix(tag: &str) -> String {
    format!("mst-{tag}-{}-", std::process::id())
}

/// Removes, when dropped, every name in `/dev/shm` that starts with its
/// prefix: a test that fails half-way leaves no name behind. The test
/// itself asserts, before that, that there is nothing to remove.
pub struct NameSweeper {
    prefix: String,
}

impl NameSweeper {
    /// Sweeps the names [`super::unique_name`] gives this process for `tag`.
    pub fn for_tag(tag: &str) -> NameSweeper {
        NameSweeper {
            prefix: name_prefix(tag),
        }
    }

    /// The names of this prefix that exist now.
    pub fn left(&self) -> BTreeSet<String> {
        dev_shm_names(&self.prefix)
    }
}

impl Drop for NameSweeper {
    fn drop(&mut self) {
        for name in self.left() {
            let _ = memshare::Segment::remove(&name);
        }
    }
}

/// The process ids whose parent is this process (running or zombies).
pub fn children() -> Vec<u32> {
    super::procs::children_of(std::process::id())
}

/// Asserts that this process has no children at all: none running, none
/// left unreaped (`waitpid(-1, WNOHANG)` says `ECHILD`).
pub fn assert_no_children(when: &str) {
    use rustix::process::{waitpid, WaitOptions};
    match waitpid(None, WaitOptions::NOHANG) {
        Err(rustix::io::Errno::CHILD) => {}
        Ok(None) => panic!("{when}: child processes still running: {:?}", children()),
        Ok(Some((pid, status))) => {
            panic!("{when}: child {pid:?} was left unreaped (a zombie): {status:?}")
        }
        Err(e) => panic!("{when}: waitpid: {e}"),
    }
}
