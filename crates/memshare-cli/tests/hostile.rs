//! What is at a name cannot make the tool follow a link, block, or die of
//! SIGBUS: `write` through a symbolic link leaves the file it points to
//! alone, `cat` of a FIFO returns at once, `write` on a full /dev/shm is one
//! `NoSpace` error line with nothing written.

#[path = "../../memshare/tests/common/privileged.rs"]
mod privileged;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn memshare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memshare"))
}

/// A name no other test or run uses.
fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "cli-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Something a test put at `/dev/shm/<name>`, removed when dropped.
struct Planted(PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `cmd` with `input` on standard input; kills it and fails the test
/// if it has not finished within 10 s (it would be blocked on the name).
fn run(mut cmd: Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn memshare");
    // The tool may refuse before it reads its input: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("memshare {:?} blocked", cmd.get_args().collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Asserts one `memshare: error:` line containing `needle`, exit status 1.
fn one_error_line(output: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{:?}: {stderr}",
        output.status
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("memshare: error: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

#[test]
fn write_through_a_symbolic_link_leaves_its_target_alone() {
    let dir = std::env::temp_dir().join(unique("target"));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("precious");
    std::fs::write(&target, b"precious").unwrap();
    let name = unique("link");
    let link = PathBuf::from("/dev/shm").join(&name);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let _planted = Planted(link);

    let mut cmd = memshare();
    cmd.args(["write", &name]);
    one_error_line(&run(cmd, b"overwritten"), "symbolic link");
    let mut cmd = memshare();
    cmd.args(["rm", &name]);
    one_error_line(&run(cmd, b""), "symbolic link");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cat_of_a_fifo_returns_at_once() {
    let name = unique("fifo");
    let path = PathBuf::from("/dev/shm").join(&name);
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    let _planted = Planted(path);
    for command in ["cat", "write"] {
        let mut cmd = memshare();
        cmd.args([command, &name]);
        one_error_line(&run(cmd, b"x"), "FIFO");
    }
}

#[test]
fn write_on_a_full_dev_shm_is_no_space_with_nothing_written() {
    if !rustix::process::geteuid().is_root()
        || Command::new("unshare").arg("--help").output().is_err()
    {
        return privileged::skip(
            "write_on_a_full_dev_shm_is_no_space_with_nothing_written",
            "needs root and unshare(1) to mount a small private /dev/shm",
        );
    }
    // In a private mount namespace, /dev/shm is a 2 MiB tmpfs. A filler
    // takes 1.5 MiB of it; 1 MiB more cannot be written into a second
    // (sparse) segment.
    let script = r#"
        set -u
        mount -t tmpfs -o size=2m memshare-test /dev/shm || exit 90
        "$0" create filler 2M || exit 91
        head -c 1572864 /dev/zero | tr '\0' 'f' | "$0" write filler || exit 92
        "$0" create big 2M || exit 93
        head -c 1048576 /dev/zero | tr '\0' 'x' | "$0" write big
        echo "write-status=$?"
        # Nothing was written: the object still holds zeros only (read
        # without memshare), and memshare cat reads it on the full file
        # system.
        printf 'nonzero-bytes=%s\n' "$(tr -d '\0' < /dev/shm/big | wc -c)"
        printf 'cat-bytes=%s\n' "$("$0" cat big | wc -c)"
        "$0" rm big filler
    "#;
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_memshare"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Status 1 with one NoSpace line, not 135 (killed by SIGBUS).
    assert!(stdout.contains("write-status=1\n"), "{stdout}\n{stderr}");
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("memshare: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("not enough memory"), "{stderr}");
    assert!(stdout.contains("nonzero-bytes=0\n"), "{stdout}\n{stderr}");
    assert!(stdout.contains("cat-bytes=2097152\n"), "{stdout}\n{stderr}");
}
