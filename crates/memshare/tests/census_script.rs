//! `scripts/census`, which CI runs after the suite, must recognise what the
//! tests leave behind wherever their binaries were built: a zombie has no
//! executable or environment left to look at, only its name, so the census
//! knows the names of every binary in the target directories, at any depth
//! (the sanitizer's build is `target/asan/<triple>/debug/deps/*`, loom's
//! `target/loom/release/deps/*`).
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/procs.rs"]
mod procs;

/// A target directory of our own, removed when dropped.
struct ProbeDir(PathBuf);

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_census_recognises_a_zombie_of_a_binary_deep_in_a_target_directory() {
    // A target directory holding one binary as deep as the sanitizer's
    // builds put theirs (five levels down).
    let dir = ProbeDir(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("census-probe-{}", std::process::id())),
    );
    let deps = dir.0.join("asan/x86_64-unknown-linux-gnu/debug/deps");
    std::fs::create_dir_all(&deps).unwrap();
    // A name of 15 bytes at most: a process's name (comm) is cut there.
    let binary = deps.join("mst-censusprobe");
    std::fs::copy("/bin/true", &binary).unwrap();

    // Run it and leave it unreaped: a zombie, known by its name alone.
    let mut zombie = Command::new(&binary).spawn().unwrap();
    let pid = zombie.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while procs::state(pid) != Some('Z') {
        assert!(Instant::now() < deadline, "the probe did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/census");
    let out = Command::new("bash")
        .arg(&script)
        .env("CARGO_TARGET_DIR", &dir.0)
        .env("CENSUS_GRACE", "0")
        // As CI runs it: not from a test (its own subshells would carry
        // this test's CARGO_MANIFEST_DIR and count as the tests').
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    zombie.wait().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    // Other findings (what other work on this machine leaves) do not matter
    // here, only that this zombie is among them.
    assert!(
        said.contains(&format!("zombie {pid} (mst-censusprobe)")),
        "scripts/census did not recognise the zombie {pid} of {}: {said}{}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
