//! Segments and views within one process: sizes, offsets, errors, options.

mod common;

#[cfg(unix)]
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use common::{in_dev_shm, unique_name};
use memshare::{Error, Segment};

const GIB: u64 = 1 << 30;

#[test]
fn eight_gib_views_at_unaligned_offsets_beyond_4gib_see_each_other() {
    let segment = Segment::create(8 * GIB).unwrap();
    assert_eq!(segment.len(), 8 * GIB);
    let offset = 6 * GIB + 12345;
    let small = segment.map(offset..offset + (1 << 20)).unwrap();
    assert_eq!((small.offset(), small.len()), (offset, 1 << 20));
    // A second, differently aligned view that covers the first one.
    let wide = segment.map(6 * GIB..6 * GIB + (2 << 20)).unwrap();

    small.write_at(0, b"first byte").unwrap();
    small.write_at((1 << 20) - 4, b"last").unwrap();
    let mut buf = [0u8; 10];
    wide.read_at(12345, &mut buf).unwrap();
    assert_eq!(&buf, b"first byte");
    let mut last = [0u8; 4];
    wide.read_at(12345 + (1 << 20) - 4, &mut last).unwrap();
    assert_eq!(&last, b"last");

    wide.write_at(12345 + 100, b"from wide").unwrap();
    let mut back = [0u8; 9];
    small.read_at(100, &mut back).unwrap();
    assert_eq!(&back, b"from wide");

    // A view at the very end of the segment.
    let tail = segment.map(8 * GIB - 3..).unwrap();
    tail.write_at(0, b"end").unwrap();
    assert!(tail.write_at(1, b"end").is_err());
}

#[test]
fn a_view_outlives_its_segment_handle() {
    let segment = Segment::create(1 << 16).unwrap();
    let view = segment.map(100..200).unwrap();
    let reader = segment.map_readonly(..).unwrap();
    drop(segment);
    view.write_at(0, b"still here").unwrap();
    let mut buf = [0u8; 10];
    reader.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"still here");
}

#[test]
fn a_view_keeps_a_name_alive() {
    let name = unique_name("viewname");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let view = segment.map(..).unwrap();
    view.write_at(0, b"kept").unwrap();
    drop(segment);
    // The creator's handle is gone, its view is not: the name lives.
    let again = Segment::open(&name).unwrap();
    let mut buf = [0u8; 4];
    again
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"kept");
    drop(again);
    drop(view);
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    assert!(!in_dev_shm(&name));
}

#[test]
fn views_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<memshare::View>();
    check::<memshare::ViewMut>();
    check::<Segment>();

    let segment = Segment::create(4096).unwrap();
    let view = segment.map(..).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let view = &view;
            s.spawn(move || {
                for _ in 0..1000 {
                    view.atomic_u64(8 * t)
                        .unwrap()
                        .fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    for t in 0..4 {
        assert_eq!(
            view.atomic_u64(8 * t).unwrap().load(Ordering::Relaxed),
            1000
        );
    }
}

#[test]
fn create_named_on_a_live_name_is_already_exists() {
    let name = unique_name("exists");
    let segment = Segment::create_named(&name, 4096).unwrap();
    match Segment::create_named(&name, 8192) {
        Err(Error::AlreadyExists { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The failed attempt did not disturb the live segment.
    assert_eq!(Segment::open(&name).unwrap().len(), 4096);
    drop(segment);
    assert!(!in_dev_shm(&name));
}

#[test]
fn open_of_a_missing_name_is_not_found() {
    let name = unique_name("missing");
    for result in [Segment::open(&name), Segment::open_readonly(&name)] {
        match result {
            Err(e @ Error::NotFound { .. }) => assert!(e.to_string().contains(&name), "{e}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    #[cfg(unix)]
    assert!(matches!(
        Segment::remove(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn invalid_names_are_refused_with_a_reason() {
    let long = "x".repeat(memshare::MAX_NAME_LEN + 1);
    for name in [
        "",
        long.as_str(),
        "a/b",
        "/abs",
        "nul\0byte",
        "..",
        "sp ace",
    ] {
        for result in [
            Segment::create_named(name, 4096).map(drop),
            Segment::open(name).map(drop),
            Segment::open_readonly(name).map(drop),
            Segment::remove(name),
        ] {
            match result {
                Err(e @ Error::InvalidName { .. }) => {
                    assert!(e.to_string().contains("invalid segment name"), "{e}")
                }
                other => panic!("{name:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
}

#[test]
fn out_of_range_sizes_ranges_and_offsets() {
    assert!(matches!(Segment::create(0), Err(Error::OutOfRange { .. })));
    assert!(matches!(
        Segment::create(u64::MAX),
        Err(Error::OutOfRange { .. })
    ));
    let segment = Segment::create(4096).unwrap();
    for result in [
        segment.map(0..4097).map(drop),
        segment.map(4096..).map(drop),
        segment.map(10..10).map(drop),
        segment.map(..=4096).map(drop),
        segment.map_readonly(5000..6000).map(drop),
    ] {
        match result {
            Err(e @ Error::OutOfRange { .. }) => {
                assert!(e.to_string().contains("anonymous segment"))
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = segment.map(20..10);
    assert!(matches!(backwards, Err(Error::OutOfRange { .. })));

    let view = segment.map(100..200).unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(
        view.read_at(93, &mut buf),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        view.write_at(usize::MAX, b"x"),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(view.atomic_u64(96), Err(Error::OutOfRange { .. })));
    view.read_at(92, &mut buf).unwrap();
}

#[test]
fn misaligned_atomics_are_refused() {
    let segment = Segment::create(4096).unwrap();
    // The view starts at offset 2: its offset 2 is address-aligned to 4.
    let view = segment.map(2..).unwrap();
    assert!(view.atomic_u32(2).is_ok());
    for offset in [0, 1, 3] {
        match view.atomic_u32(offset) {
            Err(Error::Misaligned {
                offset: o,
                align: 4,
                ..
            }) => assert_eq!(o, offset),
            other => panic!("expected Misaligned, got {other:?}"),
        }
    }
    assert!(matches!(
        view.atomic_u64(2),
        Err(Error::Misaligned { align: 8, .. })
    ));
    assert!(view.atomic_u64(6).is_ok());
    let ro = segment.map_readonly(..).unwrap();
    assert!(matches!(ro.atomic_u64(4), Err(Error::Misaligned { .. })));
}

#[test]
#[cfg(unix)]
fn named_objects_are_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique_name("mode");
    let _segment = Segment::create_named(&name, 4096).unwrap();
    let mode = std::fs::metadata(format!("/dev/shm/{name}"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600, "mode is {mode:o}");
}

#[test]
fn a_readonly_segment_cannot_be_mapped_writable() {
    let name = unique_name("ro");
    let creator = Segment::create_named(&name, 4096).unwrap();
    creator.map(..).unwrap().write_at(0, b"data").unwrap();
    let reader = Segment::open_readonly(&name).unwrap();
    assert!(reader.is_readonly());
    assert!(!creator.is_readonly());
    match reader.map(..) {
        Err(e @ Error::PermissionDenied { .. }) => assert!(e.to_string().contains(&name)),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let mut buf = [0u8; 4];
    reader
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"data");
    // The descriptor itself is read-only: the kernel refuses a writable
    // mapping even if the library's own check were bypassed (Windows: in
    // tests/windows.rs).
    #[cfg(unix)]
    // SAFETY: a new mapping the kernel refuses; nothing is aliased.
    let raw = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            4096,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            reader.as_fd(),
            0,
        )
    };
    #[cfg(unix)]
    assert_eq!(raw.unwrap_err(), rustix::io::Errno::ACCESS);
}

#[test]
#[cfg(target_os = "linux")]
fn an_anonymous_segment_cannot_be_shrunk_or_grown() {
    let segment = Segment::create(1 << 20).unwrap();
    let fd = segment.as_fd();
    assert_eq!(
        rustix::fs::ftruncate(fd, 4096).unwrap_err(),
        rustix::io::Errno::PERM
    );
    assert_eq!(
        rustix::fs::ftruncate(fd, 2 << 20).unwrap_err(),
        rustix::io::Errno::PERM
    );
    let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW));
    // The descriptor is close-on-exec.
    assert!(rustix::io::fcntl_getfd(fd)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC));
}

#[test]
#[cfg(unix)]
fn persistent_names_stay_until_removed() {
    let name = unique_name("persist");
    let segment = Segment::options()
        .persist(true)
        .create_named(&name, 4096)
        .unwrap();
    segment.map(..).unwrap().write_at(0, b"kept").unwrap();
    drop(segment);
    assert!(in_dev_shm(&name));
    let again = Segment::open(&name).unwrap();
    let mut buf = [0u8; 4];
    again
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"kept");
    // It is not reclaimed as stale either.
    assert!(matches!(
        Segment::create_named(&name, 4096),
        Err(Error::AlreadyExists { .. })
    ));
    drop(again);
    Segment::remove(&name).unwrap();
    assert!(!in_dev_shm(&name));
}

#[test]
#[cfg(unix)]
fn remove_takes_the_name_but_not_the_memory() {
    let name = unique_name("remove");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let view = segment.map(..).unwrap();
    Segment::remove(&name).unwrap();
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    view.write_at(0, b"ok").unwrap();
    // A new segment may take the name; dropping the old one leaves it alone.
    let newer = Segment::create_named(&name, 8192).unwrap();
    drop(view);
    drop(segment);
    assert_eq!(Segment::open(&name).unwrap().len(), 8192);
    drop(newer);
    assert!(!in_dev_shm(&name));
}

#[test]
#[cfg(unix)]
fn reserve_fails_cleanly_when_the_file_system_is_too_small() {
    let stat = rustix::fs::statvfs("/dev/shm").unwrap();
    let capacity = stat.f_blocks * stat.f_frsize;
    let name = unique_name("reserve");
    match Segment::options()
        .reserve(true)
        .create_named(&name, capacity * 2)
    {
        Err(e @ Error::NoSpace { .. }) => assert!(e.to_string().contains(&name), "{e}"),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(!in_dev_shm(&name), "a failed creation left its name behind");

    // A reservation that fits succeeds, and its pages are allocated.
    let segment = Segment::options()
        .reserve(true)
        .populate(true)
        .create_named(&name, 1 << 20)
        .unwrap();
    let st = rustix::fs::fstat(segment.as_fd()).unwrap();
    assert!(st.st_blocks * 512 >= 1 << 20, "{} blocks", st.st_blocks);
    segment.map(..).unwrap().write_at(0, b"x").unwrap();
    drop(segment);
    assert!(!in_dev_shm(&name));
}

#[test]
#[cfg(unix)]
fn huge_pages_succeed_or_fail_at_creation() {
    #[cfg(target_os = "linux")]
    {
        // Not while another test (memory_limits) has a pool of its own set up.
        let _pool = common::huge_page_pool_lock();
        // What the pool can give now (free pages, not its size: some may be
        // taken), and whether this kernel makes huge-page memfds at all.
        let (pool, supported) = (common::huge_pool(), common::hugetlb_memfd_supported());
        let page = pool.map_or(2 << 20, |p| p.page);
        match Segment::options().huge_pages(true).create(2 * page) {
            Ok(segment) => {
                let pool = pool.expect("huge pages from a kernel without them");
                assert!(pool.available() >= 2, "two huge pages from {pool:?}");
                // Huge pages really: taken from the pool, and what backs
                // the views (a fallback to small pages would pass a write).
                if pool.free >= 2 {
                    assert_eq!(
                        common::huge_pool().unwrap().free,
                        pool.free - 2,
                        "the pages were not taken from the pool"
                    );
                }
                let view = segment.map(..).unwrap();
                assert_eq!(common::kernel_page_size(view.as_ptr()), page);
                view.write_at(12345, b"huge").unwrap();
                let window = segment.map(page + 12345..page + 12345 + 100).unwrap();
                assert_eq!(common::kernel_page_size(window.as_ptr()), page);
                window.write_at(0, b"huge").unwrap();
            }
            Err(e @ Error::NoSpace { .. })
                if supported && pool.is_some_and(|p| p.available() < 2) =>
            {
                assert!(e.to_string().contains("huge"), "{e}")
            }
            Err(e @ Error::Unsupported { .. }) if !supported => {
                assert!(e.to_string().contains("huge"), "{e}")
            }
            other => panic!(
                "two huge pages (pool {pool:?}, hugetlb memfds: {supported}): expected what the pool allows, got {other:?}"
            ),
        }
    }
    #[cfg(not(target_os = "linux"))]
    match Segment::options().huge_pages(true).create(4 << 20) {
        Err(e @ (Error::NoSpace { .. } | Error::Unsupported { .. })) => {
            assert!(e.to_string().contains("huge"), "{e}")
        }
        other => panic!("expected a clear error, got {other:?}"),
    }
    let name = unique_name("hugename");
    assert!(matches!(
        Segment::options()
            .huge_pages(true)
            .create_named(&name, 4 << 20),
        Err(Error::Unsupported { .. })
    ));
    assert!(!in_dev_shm(&name));
}

#[test]
fn plain_data_values_are_read_and_written_at_any_offset() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Header {
        magic: u64,
        version: u32,
        flags: u32,
    }
    let segment = Segment::create(4096).unwrap();
    let view = segment.map(..).unwrap();
    let header = Header {
        magic: 0x0102_0304_0506_0708,
        version: 3,
        flags: 0xdead_beef,
    };
    // Unaligned on purpose: a copy, not a reference.
    view.write_pod(13, &header).unwrap();
    assert_eq!(view.read_pod::<Header>(13).unwrap(), header);
    let mut raw = [0u8; 16];
    view.read_at(13, &mut raw).unwrap();
    assert_eq!(&raw[..8], &header.magic.to_ne_bytes());
    // Past the end: OutOfRange, nothing written.
    assert!(matches!(
        view.write_pod(4096 - 8, &header),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        view.read_pod::<Header>(4090),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(view.read_pod::<u64>(4096 - 8).unwrap(), 0);
}
