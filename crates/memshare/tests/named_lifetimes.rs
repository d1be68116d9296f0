//! Named segments across real processes: the test binary re-runs itself as
//! the child. Windows lifetimes: a name lives while any process holds it
//! and is gone when the last holder drops it or dies.
#![cfg(unix)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{child, in_dev_shm, role, unique_name, wait_for, Reaped, TIMEOUT};
use memshare::{CommandExt, Error, Segment};

fn env_name() -> String {
    std::env::var("MST_NAME").expect("MST_NAME")
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_child_reads_the_parents_bytes_and_the_parent_sees_the_reply() {
    if let Some(role) = role() {
        assert_eq!(role, "reader");
        let segment = Segment::open(&env_name()).unwrap();
        let view = segment.map(..).unwrap();
        let mut buf = [0u8; 17];
        view.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello from parent");
        view.write_at(100, b"reply from child").unwrap();
        return;
    }
    let name = unique_name("reply");
    let segment = Segment::create_named(&name, 4096).unwrap();
    let view = segment.map(..).unwrap();
    view.write_at(0, b"hello from parent").unwrap();
    let mut cmd = child(
        "a_child_reads_the_parents_bytes_and_the_parent_sees_the_reply",
        "reader",
    );
    cmd.env("MST_NAME", &name);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    let mut buf = [0u8; 16];
    view.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"reply from child");
    drop((view, segment));
    assert!(!in_dev_shm(&name));
}

#[test]
fn the_name_outlives_its_creator_and_goes_with_the_last_holder() {
    if role().is_some() {
        let segment = Segment::create_named(&env_name(), 4096).unwrap();
        let view = segment.map(..).unwrap();
        view.write_at(8, b"creator was here").unwrap();
        let flag = view.atomic_u32(0).unwrap();
        flag.store(1, Ordering::Release);
        wait_for(TIMEOUT, || {
            (flag.load(Ordering::Acquire) == 2).then_some(())
        });
        return; // exits, dropping its handle first
    }
    let name = unique_name("outlive");
    let mut cmd = child(
        "the_name_outlives_its_creator_and_goes_with_the_last_holder",
        "creator",
    );
    cmd.env("MST_NAME", &name);
    let creator = Reaped::spawn(cmd);
    let segment = wait_for(TIMEOUT, || Segment::open(&name).ok());
    let view = segment.map(..).unwrap();
    wait_for(TIMEOUT, || {
        (view.atomic_u32(0).unwrap().load(Ordering::Acquire) == 1).then_some(())
    });
    view.atomic_u32(0).unwrap().store(2, Ordering::Release);
    creator.wait_success(TIMEOUT);

    // The creator is gone; we still hold it, so the name still works.
    let again = Segment::open(&name).unwrap();
    let mut buf = [0u8; 16];
    again
        .map_readonly(..)
        .unwrap()
        .read_at(8, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"creator was here");
    drop((again, view, segment));
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    assert!(!in_dev_shm(&name));
}

#[test]
fn the_name_goes_when_every_holder_was_killed() {
    if let Some(role) = role() {
        let name = env_name();
        let segment = match role.as_str() {
            "create" => Segment::create_named(&name, 4096).unwrap(),
            "open" => Segment::open(&name).unwrap(),
            other => panic!("unknown role {other}"),
        };
        let view = segment.map(..).unwrap();
        view.atomic_u32(0).unwrap().fetch_add(1, Ordering::AcqRel);
        sleep_forever();
    }
    let test = "the_name_goes_when_every_holder_was_killed";
    for reclaim_by_create in [true, false] {
        let name = unique_name("killed");
        let spawn = |role| {
            let mut cmd = child(test, role);
            cmd.env("MST_NAME", &name);
            Reaped::spawn(cmd)
        };
        let creator = spawn("create");
        let probe = wait_for(TIMEOUT, || Segment::open_readonly(&name).ok());
        let counter = probe.map_readonly(..).unwrap();
        wait_for(TIMEOUT, || {
            (counter.atomic_u32(0).unwrap().load(Ordering::Acquire) == 1).then_some(())
        });
        let opener = spawn("open");
        wait_for(TIMEOUT, || {
            (counter.atomic_u32(0).unwrap().load(Ordering::Acquire) == 2).then_some(())
        });
        drop((counter, probe));
        // Both holders die without dropping anything.
        creator.kill();
        opener.kill();
        if reclaim_by_create {
            // The next creator finds the name stale and takes it over.
            let fresh = Segment::create_named(&name, 8192).unwrap();
            let mut word = [0u8; 4];
            fresh
                .map_readonly(..)
                .unwrap()
                .read_at(0, &mut word)
                .unwrap();
            assert_eq!(word, [0; 4], "got the dead segment back");
            drop(fresh);
        } else {
            assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
        }
        assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
    }
}

/// The words of the control segment of the churn test: children ready,
/// go, and how often a child found the name made by another (contended).
const READY: usize = 0;
const GO: usize = 4;
const OPENED: usize = 8;
const CHURNERS: u32 = 4;

#[test]
fn concurrent_create_open_and_drop_leave_nothing_behind() {
    if role().is_some() {
        let name = env_name();
        let me = std::process::id();
        let control = Segment::inherited("control").unwrap();
        let control = control.map(..).unwrap();
        // Start together: every child ready, then the parent's go.
        control
            .atomic_u32(READY)
            .unwrap()
            .fetch_add(1, Ordering::AcqRel);
        let go = control.atomic_u32(GO).unwrap();
        let deadline = std::time::Instant::now() + TIMEOUT;
        while go.load(Ordering::Acquire) == 0 {
            assert!(std::time::Instant::now() < deadline, "no go");
            std::thread::yield_now();
        }
        let mut opened = 0;
        for i in 0..300u32 {
            let segment = loop {
                match Segment::create_named(&name, 4096) {
                    Ok(s) => break s,
                    Err(Error::AlreadyExists { .. }) => match Segment::open(&name) {
                        Ok(s) => {
                            opened += 1;
                            break s;
                        }
                        Err(Error::NotFound { .. }) => continue,
                        Err(e) => panic!("open: {e}"),
                    },
                    Err(e) => panic!("create: {e}"),
                }
            };
            assert_eq!(segment.len(), 4096, "opened a half-made segment");
            let view = segment.map(..).unwrap();
            view.atomic_u32(0).unwrap().store(me ^ i, Ordering::Relaxed);
        }
        control
            .atomic_u32(OPENED)
            .unwrap()
            .fetch_add(opened, Ordering::AcqRel);
        return;
    }
    let name = unique_name("churn");
    let control = Segment::create(4096).unwrap();
    let words = control.map(..).unwrap();
    let children: Vec<_> = (0..CHURNERS)
        .map(|_| {
            let mut cmd = child(
                "concurrent_create_open_and_drop_leave_nothing_behind",
                "churn",
            );
            cmd.env("MST_NAME", &name).share("control", &control);
            Reaped::spawn(cmd)
        })
        .collect();
    wait_for(TIMEOUT, || {
        (words.atomic_u32(READY).unwrap().load(Ordering::Acquire) == CHURNERS).then_some(())
    });
    words.atomic_u32(GO).unwrap().store(1, Ordering::Release);
    for c in children {
        c.wait_success(Duration::from_secs(120));
    }
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
    // The children overlapped: some found the name made by another.
    let opened = words.atomic_u32(OPENED).unwrap().load(Ordering::Acquire);
    assert!(
        opened > 0,
        "in {} rounds of create-or-open, no child ever found the name held by another: they never overlapped",
        300 * CHURNERS
    );
    eprintln!(
        "{opened} of {} rounds opened a name another child held",
        300 * CHURNERS
    );
}

#[test]
fn another_user_cannot_open_map_or_remove_a_named_segment() {
    if role().is_some() {
        let name = env_name();
        for (what, result) in [
            ("open", Segment::open(&name).map(drop)),
            ("open_readonly", Segment::open_readonly(&name).map(drop)),
            ("remove", Segment::remove(&name)),
        ] {
            match result {
                Err(e @ Error::PermissionDenied { .. }) => {
                    assert!(e.to_string().contains(&name), "{what}: {e}")
                }
                other => panic!("{what}: expected PermissionDenied, got {other:?}"),
            }
        }
        // Its name is taken, whoever holds it.
        assert!(matches!(
            Segment::create_named(&name, 4096),
            Err(Error::AlreadyExists { .. })
        ));
        return;
    }
    if !rustix::process::geteuid().is_root() {
        common::privileged::skip(
            "another_user_cannot_open_map_or_remove_a_named_segment",
            "not root: cannot run a process as another user",
        );
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let name = unique_name("access");
    let segment = Segment::create_named(&name, 4096).unwrap();
    segment.map(..).unwrap().write_at(0, b"private").unwrap();
    let mut cmd = child(
        "another_user_cannot_open_map_or_remove_a_named_segment",
        "intruder",
    );
    cmd.env("MST_NAME", &name).uid(65534).gid(65534);
    Reaped::spawn(cmd).wait_success(TIMEOUT);
    // Untouched.
    let mut buf = [0u8; 7];
    Segment::open(&name)
        .unwrap()
        .map_readonly(..)
        .unwrap()
        .read_at(0, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"private");
    drop(segment);
    assert!(!in_dev_shm(&name));
}

#[test]
fn an_object_that_stays_empty_is_refused_not_opened_as_zero_bytes() {
    // What a program that creates by name and dies before sizing leaves
    // (memshare itself names objects only once they are sized).
    let name = unique_name("empty");
    let fd = rustix::shm::open(
        format!("/{name}").as_str(),
        rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    drop(fd);
    let err = Segment::open(&name).unwrap_err();
    Segment::remove(&name).unwrap();
    match err {
        Error::InvalidHandle { reason, .. } => assert!(reason.contains("empty"), "{reason}"),
        other => panic!("expected InvalidHandle, got {other:?}"),
    }
}
