//! Memory limits: huge pages beyond the pool, and `RLIMIT_MEMLOCK`.
//!
//! Huge-page segments (`SegmentOptions::huge_pages`, `MFD_HUGETLB`) get
//! their pages at creation, so an exhausted pool is a clean `NoSpace` then,
//! with nothing left behind. `RLIMIT_MEMLOCK` limits memory a process
//! *locks* (`mlock`, `MAP_LOCKED`, SysV `SHM_HUGETLB`); memshare locks none,
//! so the limit does not affect it, which the second test shows in a child
//! where the limit is 0 and in force. Linux only: the pool, `/proc/meminfo`
//! and hugetlb memfds are Linux's.
#![cfg(target_os = "linux")]

mod common;

use common::{
    child, huge_pool, hugetlb_memfd_supported, in_dev_shm, kernel_page_size, role, unique_name,
    HugePool, Reaped, TIMEOUT,
};
use memshare::{Error, Segment};

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// A huge page pool of our own: sets `/proc/sys/vm/nr_hugepages` and
/// restores the old value when dropped, also when the test fails. (A
/// SIGKILL of the test process would leave the pool set: it is small.)
struct PoolSize {
    old: String,
}

impl PoolSize {
    /// Sets the pool to exactly `pages` if it is empty now and this process
    /// may change it; otherwise says why not (a skip: see
    /// [`common::privileged::skip`]) and returns `None`.
    fn set(pages: u64) -> Option<PoolSize> {
        let skip = |why: &str| {
            common::privileged::skip("a huge page pool of our own", why);
            None
        };
        if !rustix::process::geteuid().is_root() {
            return skip("not root: cannot set up a huge page pool");
        }
        let old = match std::fs::read_to_string(NR_HUGEPAGES) {
            Ok(old) => old,
            Err(e) => return skip(&format!("cannot read {NR_HUGEPAGES} ({e})")),
        };
        if huge_pool().is_none_or(|p| p.overcommit > 0) {
            return skip(
                "surplus huge pages are allowed (nr_overcommit_hugepages): a pool of our own would not be exact",
            );
        }
        if old.trim() != "0" {
            return skip(&format!(
                "the huge page pool is already set up ({} pages): leaving it alone",
                old.trim()
            ));
        }
        if let Err(e) = std::fs::write(NR_HUGEPAGES, pages.to_string()) {
            return skip(&format!("{NR_HUGEPAGES} is not writable ({e})"));
        }
        let guard = PoolSize { old };
        let got = huge_pool().map(|p| (p.total, p.free));
        if got != Some((pages, pages)) {
            drop(guard); // restores the old value
            return skip(&format!(
                "asked for a pool of {pages} huge pages, got (total, free) = {got:?} (memory too fragmented?)"
            ));
        }
        Some(guard)
    }
}

impl Drop for PoolSize {
    fn drop(&mut self) {
        let restored = std::fs::write(NR_HUGEPAGES, self.old.trim())
            .and_then(|()| std::fs::read_to_string(NR_HUGEPAGES));
        if restored.as_deref().ok().map(str::trim) != Some(self.old.trim()) {
            eprintln!(
                "COULD NOT RESTORE {NR_HUGEPAGES} to {}: {restored:?}; set it back by hand",
                self.old.trim()
            );
        }
    }
}

/// The shared-memory descriptors this process holds.
fn shm_descriptors() -> Vec<(i32, String)> {
    common::census::descriptors()
        .into_iter()
        .filter(|(_, target)| common::census::is_shared_memory(target))
        .collect()
}

/// A huge-page creation beyond what `pool` can give: `NoSpace` at creation
/// (or `Unsupported` where the kernel has no hugetlb memfd), with no
/// descriptor, no page and no name left.
fn assert_beyond_the_pool_fails_cleanly(pool: HugePool) {
    let before = common::census::Descriptors::take();
    let len = (pool.available() + 1) * pool.page;
    match Segment::options().huge_pages(true).create(len) {
        Err(e @ Error::NoSpace { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("huge") && text.contains(&len.to_string()),
                "{text}"
            );
        }
        Err(Error::Unsupported { .. }) if !hugetlb_memfd_supported() => {}
        other => panic!(
            "{} huge pages from a pool of {pool:?}: expected NoSpace, got {other:?}",
            pool.available() + 1
        ),
    }
    before.assert_unchanged("after a failed huge-page creation");
    assert_eq!(
        huge_pool().map(|p| p.free),
        Some(pool.free),
        "a failed creation kept huge pages"
    );
}

#[test]
fn huge_pages_beyond_the_pool_are_no_space_at_creation_and_leave_nothing_behind() {
    const TEST: &str =
        "huge_pages_beyond_the_pool_are_no_space_at_creation_and_leave_nothing_behind";
    // The checks run in a child, where no other test opens descriptors.
    match role().as_deref() {
        Some("as-it-is") => {
            let pool = huge_pool().expect("/proc/meminfo has no huge page fields");
            assert_beyond_the_pool_fails_cleanly(pool);
            // A size that is not a whole number of huge pages is refused at
            // creation too.
            let before = common::census::Descriptors::take();
            match Segment::options().huge_pages(true).create(pool.page + 4096) {
                Err(e @ Error::OutOfRange { .. }) => {
                    assert!(e.to_string().contains("whole number of huge pages"), "{e}")
                }
                Err(Error::Unsupported { .. }) if !hugetlb_memfd_supported() => {}
                other => {
                    panic!("an odd-sized huge-page segment: expected OutOfRange, got {other:?}")
                }
            }
            before.assert_unchanged("after an odd-sized huge-page creation");
            assert_eq!(shm_descriptors(), vec![]);
            return;
        }
        Some("own-pool") => {
            // The parent made a pool of 4 huge pages for us.
            let pool = huge_pool().unwrap();
            assert_eq!(
                (pool.total, pool.free),
                (4, 4),
                "someone else uses huge pages"
            );
            let before = common::census::Descriptors::take();
            // 5 pages: fallocate takes the 4 there are, then fails; they
            // go back to the pool with the descriptor.
            assert_beyond_the_pool_fails_cleanly(pool);
            // 2 pages fit, and are allocated at creation, not at first touch.
            let segment = Segment::options()
                .huge_pages(true)
                .create(2 * pool.page)
                .unwrap();
            assert_eq!(
                huge_pool().unwrap().free,
                2,
                "pages not reserved at creation"
            );
            let view = segment.map(..).unwrap();
            assert_eq!(
                kernel_page_size(view.as_ptr()),
                pool.page,
                "a huge-page segment mapped with other pages"
            );
            for i in 0..2 {
                view.write_at((i * pool.page) as usize + 100, b"huge")
                    .unwrap();
            }
            let window = segment
                .map_readonly(pool.page + 12345..pool.page + 12349)
                .unwrap();
            let mut buf = [0u8; 4];
            view.read_at(pool.page as usize + 100, &mut buf).unwrap();
            assert_eq!(&buf, b"huge");
            // Beyond what is left now: the same clean error.
            assert_beyond_the_pool_fails_cleanly(huge_pool().unwrap());
            drop((window, view, segment));
            assert_eq!(huge_pool().unwrap().free, 4, "pages not returned on drop");
            before.assert_unchanged("at the end");
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    // The pool is the machine's: no other test may read or change it now.
    let _pool = common::huge_page_pool_lock();
    Reaped::spawn(child(TEST, "as-it-is")).wait_success(TIMEOUT);
    // With a pool of our own, the failure is NoSpace although the pool has
    // pages, and what fits really is reserved. 4 pages, of which the child
    // holds at most 2: a program outside this suite that uses huge pages
    // meanwhile still finds 2.
    if let Some(_pool_size) = PoolSize::set(4) {
        Reaped::spawn(child(TEST, "own-pool")).wait_success(TIMEOUT);
    }
}

#[test]
fn rlimit_memlock_does_not_limit_memshare_which_locks_no_memory() {
    const TEST: &str = "rlimit_memlock_does_not_limit_memshare_which_locks_no_memory";
    if role().is_some() {
        use rustix::process::{setrlimit, Resource, Rlimit};
        setrlimit(
            Resource::Memlock,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .unwrap();
        let before = common::census::Descriptors::take();
        let page = rustix::param::page_size();

        // Control: the limit is in force here. Locking one page of a view
        // is refused (EPERM with a limit of 0, or ENOMEM).
        let probe = Segment::create(page as u64).unwrap();
        let view = probe.map(..).unwrap();
        // SAFETY: mlock changes no memory; the range is one page of a live
        // view, and it is refused anyway (or unlocked with the view).
        let locked = unsafe { rustix::mm::mlock(view.as_ptr() as *mut _, page) };
        match locked {
            Err(rustix::io::Errno::PERM | rustix::io::Errno::NOMEM) => {}
            other => panic!(
                "mlock under RLIMIT_MEMLOCK=0 gave {other:?}: this process may lock memory anyway (CAP_IPC_LOCK), so it proves nothing"
            ),
        }
        drop((view, probe));

        // Everything memshare does with memory works under that limit:
        // reserved (fallocate) and prefaulted (MAP_POPULATE) anonymous and
        // named segments, opening, read-only handles, a channel.
        let anon = Segment::options()
            .reserve(true)
            .populate(true)
            .create(8 << 20)
            .unwrap();
        let view = anon.map(..).unwrap();
        for offset in (0..8 << 20).step_by(page) {
            view.write_at(offset, b"x").unwrap();
        }
        let readonly = anon.to_readonly().unwrap();
        drop(readonly.map_readonly(..).unwrap());
        let name = unique_name("memlock");
        let named = Segment::options()
            .reserve(true)
            .populate(true)
            .create_named(&name, 4 << 20)
            .unwrap();
        named.map(..).unwrap().write_at(0, b"named").unwrap();
        let opened = Segment::options()
            .populate(true)
            .open_readonly(&name)
            .unwrap();
        drop(opened.map_readonly(..).unwrap());
        let mut rx = memshare::channel::Receiver::create(1 << 16).unwrap();
        let mut tx = memshare::channel::Sender::attach(rx.segment()).unwrap();
        tx.send(b"under RLIMIT_MEMLOCK=0").unwrap();
        assert_eq!(&*rx.recv().unwrap(), b"under RLIMIT_MEMLOCK=0");

        // Huge pages (a hugetlb memfd is not charged to RLIMIT_MEMLOCK; only
        // SysV SHM_HUGETLB is): the same result as without the limit.
        let pool = huge_pool().unwrap();
        let huge = Segment::options()
            .huge_pages(true)
            .populate(true)
            .create(pool.page);
        match std::env::var("MST_HUGE").unwrap().as_str() {
            "fits" => {
                // A huge page really: taken from the pool, and what backs
                // the view (a fallback to small pages would pass a write).
                let huge = huge.unwrap();
                if pool.free > 0 {
                    assert_eq!(
                        huge_pool().unwrap().free,
                        pool.free - 1,
                        "no huge page taken from the pool"
                    );
                }
                let view = huge.map(..).unwrap();
                assert_eq!(kernel_page_size(view.as_ptr()), pool.page);
                view.write_at(0, b"huge").unwrap();
            }
            _ => match huge {
                Err(Error::NoSpace { .. }) => {}
                Err(Error::Unsupported { .. }) if !hugetlb_memfd_supported() => {}
                other => panic!("a huge page from an empty pool: expected NoSpace, got {other:?}"),
            },
        }
        drop((view, readonly, anon, named, opened, tx, rx));
        assert!(!in_dev_shm(&name));
        before.assert_unchanged("at the end");
        return;
    }
    // The pool is the machine's: no other test may read or change it now.
    let _pool = common::huge_page_pool_lock();
    // A huge page to show that hugetlb memfds are not charged either: from
    // a pool of our own if we may make one (kept while the child runs).
    let _pool_size = PoolSize::set(4);
    let fits = huge_pool().is_some_and(|p| p.available() >= 1);
    let mut cmd = child(TEST, "limited");
    cmd.env("MST_HUGE", if fits { "fits" } else { "no-pool" });
    if rustix::process::geteuid().is_root() {
        // Root has CAP_IPC_LOCK, which ignores the limit: run the child as
        // nobody, with no capabilities.
        use std::os::unix::process::CommandExt as _;
        cmd.uid(65534).gid(65534);
    }
    Reaped::spawn(cmd).wait_success(TIMEOUT);
}

/// A holder of a writable handle of a huge-page segment can punch a hole
/// into it (`fallocate(PUNCH_HOLE)`), which gives the page back to the
/// pool. If someone takes it, the creator's next touch of that page finds
/// no page to fault in: that used to be a SIGBUS; it is `NoSpace` from the
/// access, and the process lives.
#[test]
fn a_hole_punched_into_a_huge_page_segment_is_an_error_not_a_crash() {
    const TEST: &str = "a_hole_punched_into_a_huge_page_segment_is_an_error_not_a_crash";
    match role().as_deref() {
        Some("victim") => {
            use memshare::CommandExt;
            // The parent made a pool of 2 huge pages: this takes both.
            let page = huge_pool().unwrap().page;
            let segment = Segment::options()
                .huge_pages(true)
                .create(2 * page)
                .unwrap();
            let view = segment.map(..).unwrap();
            view.write_at(0, b"first page").unwrap();
            view.write_at(page as usize, b"second page").unwrap();
            assert_eq!(huge_pool().unwrap().free, 0);
            // A peer with a writable handle punches page 0 out and takes
            // the freed page for a segment of its own.
            let mut cmd = child(TEST, "puncher");
            cmd.share("huge", &segment)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            let mut puncher = Reaped::spawn(cmd);
            let mut out = puncher.0.as_mut().unwrap().stdout.take().unwrap();
            common::read_after(&mut out, "page=", TIMEOUT);
            assert_eq!(huge_pool().unwrap().free, 0);
            // Page 0 is gone and the pool is empty: an error, not SIGBUS.
            let mut buf = [0u8; 10];
            match view.read_at(0, &mut buf) {
                Err(e @ Error::NoSpace { .. }) => {
                    assert!(e.to_string().contains("huge-page"), "{e}")
                }
                other => panic!("expected NoSpace, got {other:?}"),
            }
            assert!(view.check_intact().is_err());
            // A new view of the untouched page still works.
            let second = segment.map_readonly(page..page + 11).unwrap();
            let mut buf = [0u8; 11];
            second.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"second page");
            drop(puncher); // killed and reaped: its page goes back
            return;
        }
        Some("puncher") => {
            use rustix::fs::{fallocate, FallocateFlags};
            use std::os::fd::AsFd;
            let segment = Segment::inherited("huge").unwrap();
            let page = huge_pool().unwrap().page;
            fallocate(
                segment.as_fd(),
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                0,
                page,
            )
            .unwrap();
            let mine = Segment::options().huge_pages(true).create(page).unwrap();
            println!("page=taken");
            // Hold it until the victim is done (it kills us).
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(mine);
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let _pool = common::huge_page_pool_lock();
    if let Some(_pool_size) = PoolSize::set(2) {
        Reaped::spawn(child(TEST, "victim")).wait_success(TIMEOUT);
    }
}
