//! Tests that need what a machine may not give (root, running a process as
//! another user, a huge page pool of their own, a private mount namespace)
//! skip that part where it is missing. A skip is invisible in a passing run
//! (libtest captures what the test prints), so `MEMSHARE_REQUIRE_PRIVILEGED=1`
//! turns every skip into a failure: CI, which runs as root, sets it.
//!
//! Every such skip goes through [`skip`]. This file uses nothing but `std`:
//! the CLI crate's tests include it by path.

#![allow(dead_code)] // each test binary uses its own subset

/// The switch that makes every skip a failure.
pub const REQUIRE_PRIVILEGED: &str = "MEMSHARE_REQUIRE_PRIVILEGED";

/// Whether `MEMSHARE_REQUIRE_PRIVILEGED=1` is set.
pub fn privileged_required() -> bool {
    std::env::var(REQUIRE_PRIVILEGED).is_ok_and(|v| v.trim() == "1")
}

/// `what` (a test, or a part of one) cannot run here because `why`: says
/// so and returns (the caller then skips it), or panics if
/// `MEMSHARE_REQUIRE_PRIVILEGED=1`.
#[track_caller]
pub fn skip(what: &str, why: &str) {
    assert!(
        !privileged_required(),
        "{what}: cannot run here ({why}), and {REQUIRE_PRIVILEGED}=1 makes a skip a failure"
    );
    eprintln!("SKIPPED {what}: {why} (with {REQUIRE_PRIVILEGED}=1 this fails)");
}
