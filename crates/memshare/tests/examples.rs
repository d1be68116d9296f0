//! Runs each program of `examples/` as a user would (`cargo run --example
//! NAME`), and checks how it ends, what it says (in order, with its child
//! being another process), and that it leaves nothing behind: no name in
//! `/dev/shm` starting with `example-<its process id>`.
//!
//! `cargo test` without target filters builds the examples as programs,
//! with the profile, target and flags of the tests, into `examples/` beside
//! this binary's `deps/` directory. A run with target filters does not
//! (`--test examples` leaves them out; `--examples` and `--all-targets`
//! build them as tests instead): this test then fails and says so, rather
//! than run a missing or old binary. `cargo build --examples` with the same
//! options first, then any filter, works.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::TIMEOUT;

/// What to do when the examples were not built.
const REBUILD: &str = "run `cargo test` without target filters, or `cargo build --examples` \
                       (with the same options) before `cargo test --test examples`";

/// The example's binary, checked to exist and to be newer than every file
/// it was built from.
fn binary(name: &str) -> PathBuf {
    let this = std::env::current_exe().expect("the path of this test binary");
    let examples = this
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in <target>/<profile>/deps")
        .join("examples");
    let bin = examples.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = modified(&bin).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The examples were not built: {REBUILD}",
            bin.display()
        )
    });
    for source in sources(&examples.join(format!("{name}.d"))) {
        let changed = modified(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            built >= changed,
            "{} is older than {}: the examples were not rebuilt: {REBUILD}",
            bin.display(),
            source.display()
        );
    }
    bin
}

/// When `path` was last written.
fn modified(path: &Path) -> std::io::Result<SystemTime> {
    std::fs::metadata(path)?.modified()
}

/// The files an example was built from (its own source, the library's), as
/// cargo lists them in the dep-info file beside the binary: `target: file
/// file ...`, with spaces inside paths escaped as `\ `.
fn sources(dep_info: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(dep_info).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The examples were not built: {REBUILD}",
            dep_info.display()
        )
    });
    let line = text.lines().next().unwrap_or_default();
    let (_, files) = line
        .split_once(": ")
        .unwrap_or_else(|| panic!("{}: not a dep-info line: {line:?}", dep_info.display()));
    // NUL cannot be in a path: it holds the escaped spaces while splitting.
    let paths: Vec<PathBuf> = files
        .replace("\\ ", "\0")
        .split_whitespace()
        .map(|path| PathBuf::from(path.replace('\0', " ")))
        .collect();
    assert!(
        !paths.is_empty(),
        "{}: lists no source file",
        dep_info.display()
    );
    paths
}

/// Reads `pipe` to its end on a thread of its own; the text arrives on the
/// returned channel.
fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// How a run of an example went.
struct Run {
    name: &'static str,
    pid: u32,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs example `name` (killed, and the test failed, after [`TIMEOUT`]).
fn run(name: &'static str) -> Run {
    let mut child = Command::new(binary(name))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start example {name}: {e}"));
    let pid = child.id();
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The pipes close when every process that holds them is gone: a child
    // the example left running would keep them open.
    let rest = |rx: mpsc::Receiver<String>| {
        rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
            panic!("example {name} exited, but a process it started still holds its output")
        })
    };
    Run {
        name,
        pid,
        status,
        stdout: rest(stdout),
        stderr: rest(stderr),
    }
}

impl Run {
    /// Asserts that the example succeeded, said nothing on standard error,
    /// said each of `fragments` on standard output in this order, reported
    /// a child that is another process, and left no name behind.
    fn assert_says(&self, fragments: &[&str]) {
        assert!(
            self.status.success() && self.stderr.is_empty(),
            "example {} ended with {}; it said:\n{}\nand on standard error:\n{}",
            self.name,
            self.status,
            self.stdout,
            self.stderr
        );
        let mut rest = self.stdout.as_str();
        for fragment in fragments {
            match rest.find(fragment) {
                Some(at) => rest = &rest[at + fragment.len()..],
                None => panic!(
                    "example {} did not say {fragment:?} (or not in this order); it said:\n{}",
                    self.name, self.stdout
                ),
            }
        }
        let child = self.child_pid();
        assert_ne!(
            child, self.pid,
            "example {}: the child is the parent process",
            self.name
        );
        let left = names_left(self.pid);
        assert!(
            left.is_empty(),
            "example {} left names behind: {left:?}",
            self.name
        );
    }

    /// The process id the example's child reported.
    fn child_pid(&self) -> u32 {
        const SAID: &str = "child:  this is process ";
        let at = self.stdout.find(SAID).unwrap_or_else(|| {
            panic!(
                "example {} did not say {SAID:?}; it said:\n{}",
                self.name, self.stdout
            )
        });
        let digits: String = self.stdout[at + SAID.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a process id")
    }
}

/// The names of example `pid` (`example-<pid>`, `example-<pid>-…`) that
/// exist.
#[cfg(target_os = "linux")]
fn names_left(pid: u32) -> Vec<String> {
    let name = format!("example-{pid}");
    common::census::dev_shm_names(&name)
        .into_iter()
        .filter(|left| *left == name || left.starts_with(&format!("{name}-")))
        .collect()
}

/// The name of example `pid` (`example-<pid>`), if it exists.
#[cfg(not(target_os = "linux"))]
fn names_left(pid: u32) -> Vec<String> {
    let name = format!("example-{pid}");
    if common::in_dev_shm(&name) {
        vec![name]
    } else {
        Vec::new()
    }
}

#[test]
fn share_by_name() {
    let run = run("share_by_name");
    let name = format!("example-{}", run.pid);
    run.assert_says(&[
        &format!("parent: created {name:?} (4096 bytes)"),
        &format!("child:  opened {name:?} and read \"hello from the parent\""),
        "parent: the child replied \"hello from the child\"",
        "the name is gone: Some(NotFound",
    ]);
}

#[test]
fn inherit_into_child() {
    run("inherit_into_child").assert_says(&[
        "parent: created an anonymous segment (4096 bytes)",
        "child:  inherited 4096 bytes under \"frames\" and read \"frame 1 of 1\"",
        // The reason's wording is the platform's (a descriptor, a token).
        "child:  taking it again is refused: inherited segment \"frames\"",
        "parent: the child wrote back \"received\"",
    ]);
}

#[test]
fn readonly_segment() {
    // Linux seals the segment against every new write; Windows has no
    // seals (Segment::is_write_sealed).
    let sealed = if cfg!(target_os = "linux") {
        "write-sealed: true"
    } else {
        "write-sealed: "
    };
    run("readonly_segment").assert_says(&[
        "parent: wrote the configuration and made a read-only handle",
        "child:  inherited a read-only handle: true, ",
        sealed,
        "child:  a writable view is refused: ",
        "child:  read \"configuration v1\"",
        "parent: its own earlier view still writes: \"configuration v2\"",
    ]);
}

#[cfg(unix)]
#[test]
fn send_to_running_process() {
    let run = run("send_to_running_process");
    run.assert_says(&[
        "parent: the receiver (process ",
        "parent: sending two segments in one message",
        "child:  received 2 segments: [\"request\", \"reply\"]",
        "child:  the request says \"please shout this\"",
        "parent: the receiver answered \"PLEASE SHOUT THIS\"",
    ]);
    let socket = std::env::temp_dir().join(format!("memshare-example-{}.sock", run.pid));
    assert!(!socket.exists(), "{} was left behind", socket.display());
}

#[test]
fn channel_between_processes() {
    run("channel_between_processes").assert_says(&[
        "child:  received 1000 messages in order, then the sender was gone",
        "parent: sent 1000 messages and dropped the sender; the child is done",
    ]);
}

#[test]
fn request_response() {
    run("request_response").assert_says(&[
        "client: 10 answers, each to its own request",
        "server: answered 30 requests from 3 clients",
    ]);
}

#[cfg(unix)]
#[test]
fn wait_set() {
    run("wait_set").assert_says(&[
        "child:  this is process ",
        "parent: 15 messages from 3 children and 3 calls, in one thread",
    ]);
}

/// The tokio example (the `async` feature, which the workspace's build has:
/// memshare-cli asks for it).
#[cfg(all(unix, feature = "async"))]
#[test]
fn tokio_channel() {
    run("tokio_channel").assert_says(&[
        "child:  this is process ",
        "child:  sent 1000 messages",
        "parent: received 1000 messages in a tokio task with recv_async, then the sender was gone",
    ]);
}

/// The Unix-only examples (`send_segments` needs a Unix socket; the wait
/// set sleeps on futex words) build on Windows and say, when run, that
/// they are Unix-only, with a failing status.
#[cfg(not(unix))]
#[test]
fn unix_only_examples_say_so() {
    for name in ["send_to_running_process", "wait_set"] {
        let run = run(name);
        assert!(
            !run.status.success() && run.stderr.contains("Unix only") && run.stdout.is_empty(),
            "example {name} ended with {}; it said:\n{}\nand on standard error:\n{}",
            run.status,
            run.stdout,
            run.stderr
        );
    }
}
