//! `memshare demo`, run for real: every step succeeds and says what it did,
//! and nothing is left behind (no name in /dev/shm, no process, no file),
//! on success and when a step fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use assert_cmd::Command;

/// The demo runs one at a time: the /dev/shm comparisons must not see
/// another run's segment.
static SERIAL: Mutex<()> = Mutex::new(());

/// The environment variable that marks the processes of one run, so that
/// a peer left behind can be found in /proc.
const MARKER_VAR: &str = "MEMSHARE_DEMO_TEST_RUN";

/// One run of `memshare demo`, with its own TMPDIR and marker.
struct Run {
    tmpdir: PathBuf,
    marker: String,
}

impl Run {
    fn new(tmp_name_len: usize) -> Run {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let marker = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut dir_name = format!("memshare-demo-test-{marker}-");
        while dir_name.len() < tmp_name_len {
            dir_name.push('x');
        }
        let tmpdir = std::env::temp_dir().join(dir_name);
        std::fs::create_dir(&tmpdir).expect("create the test's TMPDIR");
        Run { tmpdir, marker }
    }

    /// Runs `memshare demo ARGS`; stdout is a pipe, so no colour.
    fn demo(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_memshare"))
            .arg("demo")
            .args(args)
            .env("TMPDIR", &self.tmpdir)
            .env(MARKER_VAR, &self.marker)
            .env_remove("NO_COLOR")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .expect("run memshare demo")
    }

    /// Asserts that the run left no process and no file behind.
    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.tmpdir)
            .expect("read the test's TMPDIR")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
        let needle = format!("{MARKER_VAR}={}", self.marker);
        let alive = processes_with_env(&needle);
        assert!(alive.is_empty(), "processes left behind: {alive:?}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmpdir);
    }
}

/// The pids whose environment holds `needle` (`NAME=value`).
fn processes_with_env(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes())
            .then_some(pid)
    })
    .collect()
}

/// The demo's names in /dev/shm.
fn demo_names() -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir(Path::new("/dev/shm")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("memshare-demo-"))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_runs_every_step_and_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = demo_names();
    let run = Run::new(0);
    let output = run.demo(&[]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "status {}; stderr: {stderr}\nstdout:\n{stdout}",
        output.status
    );
    assert_eq!(stderr, "", "stdout:\n{stdout}");
    for heading in [
        "\n1. An anonymous segment, inherited by one child\n",
        "\n2. A named segment, opened by name, gone with its last holder\n",
        "\n3. Handles sent to a process that was already running\n",
        "\n4. A channel between two processes\n",
        "\n5. A publish-subscribe service: one publisher, two subscribers\n",
        "\n6. A request/response service: one server, two clients\n",
    ] {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    for needle in [
        // Step 1: the variable and its value, the child's side.
        "MEMSHARE_SEGMENT_GREETING=v1;handle=",
        "child  │ pid ",
        "  os: ",
        // Step 2: the name is gone with its last holder.
        "→ NotFound",
        // Step 3: the kernel refuses the writable map.
        "PermissionDenied",
        // Step 4: the channel and the timing.
        "median one-way latency",
        "memshare bench",
        // Step 5: each subscriber received every message, then the end.
        "→ NotFound: the service went with its last holder",
        // Step 6: the name goes with the server.
        "→ NotFound: the name went with the server",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains('\x1b'), "colour on a pipe:\n{stdout}");
    // Step 5: both subscribers told, in turn, every message in order.
    let received: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("child  │ recv → \"temperature"))
        .collect();
    assert_eq!(received.len(), 6, "{stdout}");
    for (i, line) in received.iter().enumerate() {
        assert!(
            line.contains(&format!(", sequence {} from ", i % 3)),
            "{line}"
        );
    }
    assert_eq!(
        stdout
            .matches("child  │ recv → Disconnected: no publisher left; 3 received, 0 missed")
            .count(),
        2,
        "{stdout}"
    );
    // Step 6: the server took six calls (answered five, declined one), and each
    // client told its three calls, answers included.
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("parent │ recv → \"") && l.contains(" from client "))
            .count(),
        6,
        "{stdout}"
    );
    for told in [
        "child  │ call(\"2+2\") → \"4\", read in place in our response buffer",
        "child  │ call(\"6*7\") → \"42\", read in place in our response buffer",
        "child  │ call(\"1/0\") → NoResponse: the server declined it",
        "child  │ call(\"10-3\") → \"7\", read in place in our response buffer",
        "child  │ call(\"12/4\") → \"3\", read in place in our response buffer",
        "child  │ call(\"9*9\") → \"81\", read in place in our response buffer",
    ] {
        assert_eq!(stdout.matches(told).count(), 1, "{told:?} in:\n{stdout}");
    }
    // Every line of the steps says who speaks.
    for line in stdout.lines().filter(|l| l.contains('│')) {
        assert!(
            line.starts_with("parent │ ") || line.starts_with("child  │ "),
            "{line:?}"
        );
    }
    run.assert_clean();
    let new: Vec<_> = demo_names().difference(&before).cloned().collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

#[test]
fn each_step_runs_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = demo_names();
    for step in 1..=6 {
        let run = Run::new(0);
        let output = run.demo(&["--step", &step.to_string()]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "step {step}: {}",
            text(&output.stderr)
        );
        for other in 1..=6 {
            let heading = format!("\n{other}. ");
            assert_eq!(
                stdout.contains(&heading),
                other == step,
                "step {step}, heading {other}:\n{stdout}"
            );
        }
        run.assert_clean();
    }
    let new: Vec<_> = demo_names().difference(&before).cloned().collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

#[test]
fn a_failing_step_is_one_error_line_and_leaves_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A TMPDIR so long that the peer's socket path does not fit in a
    // sockaddr_un: step 3's peer fails to listen, and says why.
    let run = Run::new(120);
    let output = run.demo(&["--step", "3"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(
        stderr.starts_with("memshare: error: step 3 (") && stderr.contains("the peer (pid "),
        "{stderr:?}"
    );
    run.assert_clean();
}

#[test]
fn the_peer_subcommand_is_hidden() {
    let output = Command::new(env!("CARGO_BIN_EXE_memshare"))
        .arg("--help")
        .output()
        .expect("run memshare --help");
    let help = text(&output.stdout);
    assert!(help.contains("demo"), "{help}");
    assert!(!help.contains("demo-peer"), "{help}");
}
