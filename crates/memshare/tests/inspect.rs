//! Inspection across real processes: holders counted from the kernel's lock
//! table, and a name whose holders were all killed found stale and reclaimed.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::{child, in_dev_shm, role, unique_name, wait_for, OnDrop, Reaped, TIMEOUT};
use memshare::inspect::NamedLifetime;
use memshare::Segment;

#[test]
fn holders_are_counted_and_a_killed_holders_name_is_reclaimed() {
    if role().is_some() {
        let name = std::env::var("MST_NAME").expect("MST_NAME");
        let _segment = Segment::create_named(&name, 4096).unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let name = unique_name("inspect");
    let mut cmd = child(
        "holders_are_counted_and_a_killed_holders_name_is_reclaimed",
        "create",
    );
    cmd.env("MST_NAME", &name);
    let creator = Reaped::spawn(cmd);
    // Created and sized: the child holds it.
    wait_for(TIMEOUT, || {
        memshare::inspect::named_info(&name)
            .ok()
            .filter(|info| info.len == 4096 && info.holders == 1)
    });
    assert!(memshare::inspect::holder_pids(&name)
        .unwrap()
        .contains(&creator.pid()));

    // A second holder in this process counts too.
    let opened = Segment::open_readonly(&name).unwrap();
    assert_eq!(memshare::inspect::named_info(&name).unwrap().holders, 2);
    drop(opened);

    creator.kill();
    let info = memshare::inspect::named_info(&name).unwrap();
    assert_eq!(info.lifetime, Some(NamedLifetime::Shared));
    assert_eq!(info.holders, 0);
    assert!(info.is_stale());
    assert!(memshare::inspect::list_named()
        .unwrap()
        .iter()
        .any(|listed| listed.name == name && listed.is_stale()));

    assert!(memshare::inspect::reclaim_stale(&name).unwrap());
    assert!(!in_dev_shm(&name), "{name} left in /dev/shm");
    assert!(!memshare::inspect::reclaim_stale(&name).unwrap());
}

#[test]
fn persistent_and_foreign_names_are_never_stale() {
    let name = unique_name("persist");
    // Removed however the test ends.
    let _persist = OnDrop(|| drop(Segment::remove(&name)));
    let segment = Segment::options()
        .persist(true)
        .create_named(&name, 4096)
        .unwrap();
    drop(segment);
    // Its holder went with it; but a process that another test of this
    // binary spawns meanwhile holds a copy of the descriptor (and so its
    // lock) from the fork until its exec closes it.
    let info = wait_for(TIMEOUT, || {
        memshare::inspect::named_info(&name)
            .ok()
            .filter(|info| info.holders == 0)
    });
    assert_eq!(info.lifetime, Some(NamedLifetime::Persist));
    assert!(!info.is_stale());
    assert!(!memshare::inspect::reclaim_stale(&name).unwrap());
    Segment::remove(&name).unwrap();

    // An object another program made: no lifetime recorded.
    let name = unique_name("foreign");
    let _foreign = OnDrop(|| drop(Segment::remove(&name)));
    std::fs::write(std::path::Path::new("/dev/shm").join(&name), b"py").unwrap();
    let info = memshare::inspect::named_info(&name).unwrap();
    assert_eq!(
        (info.lifetime, info.len, info.holders),
        (Some(NamedLifetime::Foreign), 2, 0)
    );
    assert!(!memshare::inspect::reclaim_stale(&name).unwrap());
    Segment::remove(&name).unwrap();
    assert!(!in_dev_shm(&name));
}

#[test]
fn invalid_and_absent_names_are_refused() {
    assert!(matches!(
        memshare::inspect::named_info("a/b"),
        Err(memshare::Error::InvalidName { .. })
    ));
    assert!(matches!(
        memshare::inspect::named_info(&unique_name("absent")),
        Err(memshare::Error::NotFound { .. })
    ));
    assert!(matches!(
        memshare::inspect::holder_pids(&unique_name("absent")),
        Err(memshare::Error::NotFound { .. })
    ));
}
