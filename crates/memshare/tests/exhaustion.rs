//! Running out of resources gives clear errors and leaves nothing behind:
//! a full /dev/shm (a small tmpfs mounted over it in a private mount
//! namespace) and the descriptor limit.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::{child, in_dev_shm, role, unique_name, Reaped, TIMEOUT};
use memshare::{Error, Segment};

#[test]
fn a_full_dev_shm_is_no_space_at_creation_and_leaves_no_name() {
    const TEST: &str = "a_full_dev_shm_is_no_space_at_creation_and_leaves_no_name";
    if role().is_some() {
        // Here /dev/shm is a private 1 MiB tmpfs.
        let name = unique_name("full");
        match Segment::options()
            .reserve(true)
            .create_named(&name, 4 << 20)
        {
            Err(e @ Error::NoSpace { .. }) => {
                assert!(
                    e.to_string().contains(&name) && e.to_string().contains("full"),
                    "{e}"
                )
            }
            other => panic!("expected NoSpace, got {other:?}"),
        }
        assert!(!in_dev_shm(&name), "a failed creation left its name");
        // What fits is fine, reserved and all.
        let fits = Segment::options()
            .reserve(true)
            .create_named(&name, 512 << 10)
            .unwrap();
        fits.map(..).unwrap().write_at(0, b"fits").unwrap();
        // A second reservation beyond what is left fails the same way.
        let other = unique_name("full2");
        assert!(matches!(
            Segment::options()
                .reserve(true)
                .create_named(&other, 768 << 10),
            Err(Error::NoSpace { .. })
        ));
        assert!(!in_dev_shm(&other));
        drop(fits);
        assert!(!in_dev_shm(&name));
        return;
    }
    if !rustix::process::geteuid().is_root()
        || Command::new("unshare").arg("--help").output().is_err()
    {
        common::privileged::skip(
            TEST,
            "needs root and unshare(1) to mount a private tmpfs over /dev/shm",
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let inner = child(TEST, "inside");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m memshare-test /dev/shm && exec \"$0\" \"$@\"")
        .arg(exe)
        .args(inner.get_args())
        .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    Reaped::spawn(cmd).wait_success(TIMEOUT);
}

#[test]
fn the_descriptor_limit_is_a_clear_error_and_leaves_no_name() {
    if role().is_some() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let name = unique_name("nofile");
        // The limit bounds descriptor *numbers*: set it to the lowest free
        // number, so that no new descriptor can be opened.
        let lowest_free = {
            use std::os::fd::AsRawFd;
            std::fs::File::open("/dev/null").unwrap().as_raw_fd() as u64
        };
        let old = getrlimit(Resource::Nofile);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(lowest_free),
                maximum: old.maximum,
            },
        )
        .unwrap();
        let anon = Segment::create(4096);
        let named = Segment::create_named(&name, 4096);
        setrlimit(Resource::Nofile, old).unwrap();
        for (what, result) in [
            ("create", anon.map(drop)),
            ("create_named", named.map(drop)),
        ] {
            match result {
                Err(e @ Error::Io { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("descriptors") || text.contains("Too many open files"),
                        "{what}: {text}"
                    );
                }
                other => panic!("{what}: expected an Io error, got {other:?}"),
            }
        }
        assert!(!in_dev_shm(&name));
        // And all is well again once descriptors are available.
        drop(Segment::create_named(&name, 4096).unwrap());
        assert!(!in_dev_shm(&name));
        return;
    }
    Reaped::spawn(child(
        "the_descriptor_limit_is_a_clear_error_and_leaves_no_name",
        "child",
    ))
    .wait_success(TIMEOUT);
}
