//! The `memshare` binary, run for real: each subcommand's success path and
//! each kind of bad input (one `memshare: error:` line, a distinct exit
//! status). Every test removes the names it made, even when it fails.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use assert_cmd::Command;
use memshare::Segment;
use predicates::prelude::*;
use serde_json::Value;

/// The one way a test may skip (shared with the library's tests).
#[path = "../../memshare/tests/common/privileged.rs"]
mod privileged;
#[path = "support/terminal.rs"]
mod terminal;

const NOT_FOUND: i32 = 3;
const ALREADY_EXISTS: i32 = 4;
const PERMISSION_DENIED: i32 = 5;
const USAGE: i32 = 2;

/// The uid the permission tests run the tool as.
const NOBODY: u32 = 65534;

fn memshare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memshare"))
}

/// A name no other test or run uses, removed when dropped.
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cli-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= memshare::MAX_NAME_LEN, "{name} too long");
        Name(name)
    }

    fn as_str(&self) -> &str {
        &self.0
    }

    fn exists(&self) -> bool {
        std::path::Path::new("/dev/shm").join(&self.0).exists()
    }

    /// `memshare create --quiet NAME SIZE`, which must succeed.
    fn create(&self, size: &str) {
        memshare()
            .args(["create", "--quiet", self.as_str(), size])
            .assert()
            .success()
            .stdout("")
            .stderr("");
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

/// Runs `cmd` and checks that it failed with `status` and one error line
/// containing `needle`, with nothing on standard output.
fn fails(cmd: &mut Command, status: i32, needle: &str) {
    let output = cmd.output().expect("run memshare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(status),
        "wrong exit status; stderr: {stderr}"
    );
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("memshare: error: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

fn json_of(cmd: &mut Command) -> Value {
    let output = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&output).expect("valid JSON")
}

/// The `ls --json` entry for `name`, if listed.
fn listed(name: &Name) -> Option<Value> {
    let all = json_of(memshare().args(["ls", "--json"]));
    all.as_array()
        .expect("an array")
        .iter()
        .find(|entry| entry["name"] == name.as_str())
        .cloned()
}

fn cat(name: &Name, extra: &[&str]) -> Vec<u8> {
    memshare()
        .args(["cat", name.as_str()])
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone()
}

#[test]
fn create_write_cat_ls_info_rm() {
    let name = Name::new("basic");
    name.create("64K");
    assert!(name.exists(), "create made no name");

    memshare()
        .args(["write", name.as_str(), "--offset", "4K"])
        .write_stdin("hello")
        .assert()
        .success()
        .stdout("");
    assert_eq!(cat(&name, &["--offset", "4096", "--len", "5"]), b"hello");
    let all = cat(&name, &[]);
    assert_eq!(all.len(), 64 << 10);
    assert_eq!(&all[4096..4101], b"hello");
    assert!(all[..4096].iter().all(|&b| b == 0));
    // From an offset to the end; at the end, nothing.
    assert_eq!(cat(&name, &["--offset", "4098"]).len(), (64 << 10) - 4098);
    assert_eq!(cat(&name, &["--offset", "64K"]), b"");

    let entry = listed(&name).expect("listed by ls --json");
    assert_eq!(entry["size"], 65536);
    assert_eq!(entry["owner"], owner_name());
    assert_eq!(entry["mode"], "0600");
    assert_eq!(entry["holders"], 0);
    assert_eq!(entry["lifetime"], "persist");
    assert_eq!(entry["stale"], false);
    assert_eq!(entry["kind"], "bytes");

    // The table: a header and one aligned line for the name.
    let table = memshare()
        .arg("ls")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("NAME"), "{table}");
    for column in [
        "SIZE", "OWNER", "MODE", "HOLDERS", "LIFETIME", "STALE", "KIND",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let line = table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .expect("a line for the name");
    assert_eq!(
        line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["64K", &owner_name(), "0600", "0", "persist", "no", "bytes"]
    );
    assert_eq!(
        line.find("64K").unwrap() + 3,
        header.find("SIZE").unwrap() + 4
    );

    let info = json_of(memshare().args(["info", name.as_str(), "--json"]));
    assert_eq!(info["name"], name.as_str());
    assert_eq!(info["size"], 65536);
    assert_eq!(info["lifetime"], "persist");
    assert_eq!(info["pids"], serde_json::json!([]));
    memshare()
        .args(["info", name.as_str()])
        .assert()
        .success()
        .stdout(predicate::str::contains("size:     64K (65536 bytes)"))
        .stdout(predicate::str::contains("lifetime: persist"))
        .stdout(predicate::str::contains("kind:     bytes"));

    memshare()
        .args(["rm", name.as_str()])
        .assert()
        .success()
        .stdout(format!("removed {}\n", name.as_str()))
        .stderr("");
    assert!(!name.exists());
    assert!(listed(&name).is_none());
}

#[test]
fn create_and_rm_say_what_they_did_unless_quiet() {
    let (a, b, absent) = (Name::new("say"), Name::new("say"), Name::new("say"));
    memshare()
        .args(["create", a.as_str(), "64K"])
        .assert()
        .success()
        .stdout(format!(
            "created {} (64K = 65536 bytes), persists until memshare rm\n",
            a.as_str()
        ))
        .stderr("");
    memshare()
        .args(["create", b.as_str(), "1000", "-q"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert!(a.exists() && b.exists());
    // One line per name removed; the error line for the others.
    memshare()
        .args(["rm", a.as_str(), absent.as_str(), b.as_str()])
        .assert()
        .code(NOT_FOUND)
        .stdout(format!("removed {}\nremoved {}\n", a.as_str(), b.as_str()))
        .stderr(predicate::str::contains(absent.as_str()));
    a.create("4K");
    memshare()
        .args(["rm", "--quiet", a.as_str()])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert!(!a.exists() && !b.exists());
}

/// The name of the user running the tests, as `ls` shows it.
fn owner_name() -> String {
    let uid =
        std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[2] == uid.to_string())
        .map_or_else(|| uid.to_string(), |fields| fields[0].to_owned())
}

#[test]
fn create_always_persists_and_accepts_persist() {
    for flag in [None, Some("--persist")] {
        let name = Name::new("persist");
        memshare()
            .args(["create", name.as_str(), "3M"])
            .args(flag)
            .assert()
            .success();
        // The command has exited; the name is still there.
        let entry = listed(&name).expect("outlives the command");
        assert_eq!(entry["size"], 3 << 20);
        assert_eq!(entry["lifetime"], "persist");
        assert_eq!(Segment::open(name.as_str()).unwrap().len(), 3 << 20);
    }
    memshare()
        .args(["create", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("memshare rm"));
}

#[test]
fn a_segment_that_starts_with_the_channel_magic_is_a_channel() {
    let name = Name::new("chan");
    name.create("4K");
    memshare()
        .args(["write", name.as_str()])
        .write_stdin(memshare::channel::layout::MAGIC.to_vec())
        .assert()
        .success();
    assert_eq!(listed(&name).unwrap()["kind"], "channel");
    memshare()
        .args(["info", name.as_str()])
        .assert()
        .success()
        .stdout(predicate::str::contains("kind:     channel"));
}

#[test]
fn write_refuses_a_live_channel_unless_forced() {
    let name = Name::new("wchan");
    let mut tx = memshare::channel::Sender::create_named(name.as_str(), 4096).unwrap();
    tx.send(b"queued").unwrap();
    let n = name.as_str();
    let before = cat(&name, &[]);
    fails(
        memshare().args(["write", n]).write_stdin("oops"),
        USAGE,
        "holds a channel",
    );
    fails(
        memshare()
            .args(["write", n, "--offset", "1K"])
            .write_stdin("oops"),
        USAGE,
        "--force",
    );
    assert!(cat(&name, &[]) == before, "the channel was written into");
    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(info["channel"]["messages_pending"], 1, "{info}");

    // --force writes (here into the ring, past the pending message).
    let end = before.len() - 4;
    memshare()
        .args(["write", n, "--force", "--offset", &end.to_string()])
        .write_stdin("oops")
        .assert()
        .success();
    assert_eq!(cat(&name, &["--offset", &end.to_string()]), b"oops");
    drop(tx);
}

#[test]
fn write_refuses_a_live_service_unless_forced() {
    use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
    use memshare::rpc::{Client, Server, ServerConfig};
    use std::time::Duration;

    let rpc = Name::new("wrpc");
    let server = Server::create(rpc.as_str(), ServerConfig::new()).unwrap();
    let mut client = Client::connect(rpc.as_str()).unwrap();
    let ps = Name::new("wpubs");
    let mut publisher = Publisher::create(ps.as_str(), ServiceConfig::new()).unwrap();
    let subscriber = Subscriber::open(ps.as_str()).unwrap();
    for (name, kind) in [
        (&rpc, "holds a request/response service"),
        (&ps, "holds a publish-subscribe service"),
    ] {
        let n = name.as_str();
        let before = cat(name, &[]);
        // `head -c 4096 /dev/zero | memshare write SERVICE`
        fails(
            memshare().args(["write", n]).write_stdin(vec![0u8; 4096]),
            USAGE,
            kind,
        );
        fails(
            memshare()
                .args(["write", n, "--offset", "1K"])
                .write_stdin("oops"),
            USAGE,
            "--force",
        );
        assert!(cat(name, &[]) == before, "{n} was written into");
    }
    // Both still work.
    let pending = client.send_request(b"ping").unwrap();
    server
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .respond(b"pong")
        .unwrap();
    let response = client
        .receive_response_timeout(&pending, Duration::from_secs(5))
        .unwrap();
    assert_eq!(&*response, b"pong");
    drop(response);
    publisher.publish_copy(b"tick").unwrap();
    let sample = subscriber.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(&*sample, b"tick");
    drop(sample);

    // --force writes (into the last bytes of the segment).
    let end = (cat(&ps, &[]).len() - 4).to_string();
    memshare()
        .args(["write", ps.as_str(), "--force", "--offset", &end])
        .write_stdin("oops")
        .assert()
        .success();
    assert_eq!(cat(&ps, &["--offset", &end]), b"oops");
}

/// Runs `memshare cat NAME extra...` with a pseudo-terminal as standard
/// output; returns what it did and what reached the terminal.
fn cat_to_terminal(name: &Name, extra: &[&str]) -> (std::process::Output, Vec<u8>) {
    terminal::run_on_terminal(["cat", name.as_str()].iter().chain(extra))
}

#[test]
fn cat_refuses_a_terminal_unless_raw_and_pipes_raw_bytes() {
    let name = Name::new("tty");
    name.create("4K");
    // An escape sequence that would turn a terminal's text red.
    let bytes = b"\x1b[31mred\x1b[0m";
    memshare()
        .args(["write", name.as_str()])
        .write_stdin(bytes.to_vec())
        .assert()
        .success();
    let len = bytes.len().to_string();

    let (output, seen) = cat_to_terminal(&name, &["--len", &len]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(USAGE), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("memshare: error: "), "{stderr:?}");
    assert!(
        stderr.contains("terminal") && stderr.contains("--raw") && stderr.contains("pipe"),
        "{stderr:?}"
    );
    assert!(seen.is_empty(), "bytes reached the terminal: {seen:?}");

    // --raw writes them to the terminal as they are.
    let (output, seen) = cat_to_terminal(&name, &["--len", &len, "--raw"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(seen, bytes);

    // Into a pipe, without --raw, the bytes are the segment's.
    assert_eq!(cat(&name, &["--len", &len]), bytes);
}

/// A file a test put in /dev/shm under a name memshare's rules refuse (as
/// other programs do), removed when dropped.
struct Foreign(String);

impl Foreign {
    /// `/dev/shm/<prefix>-<pid>-<n><suffix>`, holding `contents`.
    fn plant(prefix: &str, suffix: &str, contents: &[u8]) -> Foreign {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}{suffix}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        assert!(memshare::validate_name(&name).is_err(), "{name:?} is valid");
        let planted = Foreign(name);
        std::fs::write(planted.path(), contents).unwrap();
        planted
    }

    fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/shm").join(&self.0)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

#[test]
fn ls_shows_names_memshare_cannot_open_marked() {
    // Too long, as iceoryx2's are; and one with an escape sequence in it.
    let long = Foreign::plant("iox2_cli", "_0123456789abcdef_data.shm", b"iox");
    let escape = Foreign::plant("cli\x1b[31m", "", b"");
    let valid = Name::new("valid");
    valid.create("4K");

    let all = json_of(memshare().args(["ls", "--json"]));
    let entry = |name: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name:?} not listed: {all}"))
            .clone()
    };
    assert_eq!(entry(&long.0)["valid_name"], false);
    assert_eq!(entry(&long.0)["size"], 3);
    assert_eq!(entry(&escape.0)["valid_name"], false);
    assert_eq!(entry(valid.as_str())["valid_name"], true);

    let table = memshare()
        .arg("ls")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    let first_cell = |name: &str| {
        table
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .find(|cell| cell.starts_with(name))
            .unwrap_or_else(|| panic!("{name:?} not in\n{table}"))
            .to_owned()
    };
    assert_eq!(first_cell(&long.0), format!("{}*", long.0));
    assert_eq!(first_cell(valid.as_str()), valid.as_str());
    // The escape sequence is shown escaped, not sent to the terminal.
    assert!(!table.contains('\x1b'), "{table:?}");
    let shown = escape.0.replace('\x1b', "\\u{1b}");
    assert_eq!(first_cell(&shown), format!("{shown}*"));
    let legend = table.lines().last().unwrap();
    assert!(
        legend.starts_with("* not a name memshare can open"),
        "{table}"
    );

    // info says what it is, as one error line.
    fails(
        memshare().args(["info", &long.0]),
        USAGE,
        "but is not a name memshare can open: a name must be at most 30 bytes",
    );
}

// Extended attributes on /dev/shm (and rustix's setxattr) are Linux's.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn gc_leaves_names_memshare_cannot_open_alone() {
    // Another program's object that carries memshare's shared-lifetime
    // marker and has no holder: stale by the marker, but not memshare's.
    let planted = Foreign::plant("iox2_cli-gc", "_0123456789abcdef_data.shm", b"iox");
    let marked = rustix::fs::setxattr(
        planted.path(),
        "user.memshare.lifetime",
        b"shared",
        rustix::fs::XattrFlags::empty(),
    );
    if let Err(e) = marked {
        privileged::skip(
            "gc_leaves_names_memshare_cannot_open_alone",
            &format!("no user extended attributes on /dev/shm ({e}): nothing is ever stale"),
        );
        return;
    }
    let all = json_of(memshare().args(["ls", "--json"]));
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == planted.0.as_str())
        .expect("listed");
    assert_eq!(entry["stale"], true, "{entry}");
    let output = memshare()
        .args(["gc", "--dry-run"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let output = String::from_utf8(output).unwrap();
    assert!(!output.contains(&planted.0), "{output}");
    assert!(planted.path().exists());
}

#[test]
fn holders_and_pids_of_a_segment_in_use() {
    let name = Name::new("held");
    let segment = Segment::create_named(name.as_str(), 8192).unwrap();
    segment.map(..).unwrap().write_at(0, b"live").unwrap();

    let info = json_of(memshare().args(["info", name.as_str(), "--json"]));
    assert_eq!(info["holders"], 1);
    assert_eq!(info["lifetime"], "shared");
    assert_eq!(info["stale"], false);
    let pids = info["pids"].as_array().expect("pids found");
    assert!(pids.contains(&Value::from(std::process::id())), "{pids:?}");
    memshare()
        .args(["info", name.as_str()])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "pids:     {}",
            std::process::id()
        )));

    // Reading it makes the tool a holder for a moment, and it leaves the
    // name to its owner.
    assert_eq!(cat(&name, &["--len", "4"]), b"live");
    memshare()
        .args(["gc", name.as_str()])
        .assert()
        .success()
        .stdout("nothing to collect\n");
    assert!(name.exists());
    drop(segment);
    assert!(!name.exists(), "the last holder's drop removes the name");
}

/// The role of a child that creates a shared-lifetime segment and waits to
/// be killed.
const HOLDER_ROLE: &str = "MEMSHARE_CLI_TEST_HOLD";

#[test]
fn gc_removes_the_name_of_a_killed_holder() {
    if let Ok(name) = std::env::var(HOLDER_ROLE) {
        let _segment = Segment::create_named(&name, 4096).unwrap();
        println!("ready");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let name = Name::new("gc");
    let mut holder = KillOnDrop(
        StdCommand::new(std::env::current_exe().unwrap())
            .args([
                "gc_removes_the_name_of_a_killed_holder",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ROLE, name.as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = holder.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest prints "test NAME ... " first, on the same line.
        .any(|line| line.ends_with("ready"));
    assert!(ready, "the holder did not start");
    assert_eq!(listed(&name).unwrap()["holders"], 1);
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();

    // Stale now: shared lifetime, no holder.
    let entry = listed(&name).expect("a killed holder leaves its name");
    assert_eq!(
        (&entry["lifetime"], &entry["holders"], &entry["stale"]),
        (&Value::from("shared"), &Value::from(0), &Value::from(true))
    );
    // Over the whole machine, a dry run names it and removes nothing.
    memshare()
        .args(["gc", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "would remove {}\n",
            name.as_str()
        )));
    assert!(name.exists());
    // Collecting only this name leaves other tests' stale names alone.
    memshare()
        .args(["gc", name.as_str()])
        .assert()
        .success()
        .stdout(format!("removed {}\n", name.as_str()));
    assert!(!name.exists());
    fails(
        memshare().args(["gc", name.as_str()]),
        NOT_FOUND,
        "not found",
    );
}

/// A child process that is killed and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn unknown_names_are_not_found() {
    let name = Name::new("absent");
    let absent = name.as_str();
    fails(memshare().args(["info", absent]), NOT_FOUND, "not found");
    fails(memshare().args(["cat", absent]), NOT_FOUND, "not found");
    fails(
        memshare().args(["write", absent]).write_stdin("x"),
        NOT_FOUND,
        "not found",
    );
    fails(memshare().args(["rm", absent]), NOT_FOUND, "not found");
    assert!(!name.exists());
}

/// Runs `cmd`, which must fail with `status` and one error line, and
/// returns the JSON it printed on standard output.
fn json_failure(cmd: &mut Command, status: i32) -> Value {
    let output = cmd.output().expect("run memshare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("memshare: error: "), "{stderr:?}");
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[test]
fn info_json_failures_are_json_too() {
    let name = Name::new("nojson");
    let json = json_failure(
        memshare().args(["info", name.as_str(), "--json"]),
        NOT_FOUND,
    );
    assert_eq!(json["error"]["kind"], "not_found", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains(name.as_str()), "{json}");
    let json = json_failure(memshare().args(["info", "a/b", "--json"]), USAGE);
    assert_eq!(json["error"]["kind"], "bad_input", "{json}");
    // Without --json, only the error line.
    fails(
        memshare().args(["info", name.as_str()]),
        NOT_FOUND,
        "not found",
    );
}

#[test]
fn rm_removes_every_name_it_can_and_fails_for_the_others() {
    let (a, b, absent) = (Name::new("rm"), Name::new("rm"), Name::new("rm"));
    a.create("4K");
    b.create("4K");
    fails(
        memshare().args(["rm", "-q", a.as_str(), absent.as_str(), b.as_str()]),
        NOT_FOUND,
        absent.as_str(),
    );
    assert!(!a.exists() && !b.exists());
}

#[test]
fn invalid_names_are_usage_errors() {
    fails(
        memshare().args(["info", "a/b"]),
        USAGE,
        "invalid segment name",
    );
    fails(
        memshare().args(["create", ".hidden", "4K"]),
        USAGE,
        "start with '.'",
    );
    fails(
        memshare().args(["rm", "a b"]),
        USAGE,
        "invalid segment name",
    );
    fails(
        memshare().args(["cat", &"x".repeat(31)]),
        USAGE,
        "at most 30 bytes",
    );
}

#[test]
fn bad_sizes_are_usage_errors_and_create_nothing() {
    let name = Name::new("size");
    let create = |size: &str| {
        let mut cmd = memshare();
        cmd.args(["create", name.as_str(), size]);
        cmd
    };
    fails(&mut create("0"), USAGE, "at least 1 byte");
    fails(&mut create("1E"), USAGE, "could never be filled");
    fails(&mut create("16E"), USAGE, "too large");
    fails(&mut create("4KB"), USAGE, "ambiguous");
    fails(&mut create("lots"), USAGE, "not a number");
    assert!(!name.exists());
    fails(memshare().args(["create", name.as_str()]), USAGE, "<SIZE>");
    assert!(!name.exists());
}

#[test]
fn command_line_errors_are_one_line_and_help_still_works() {
    fails(memshare().arg("frobnicate"), USAGE, "'frobnicate'");
    fails(
        memshare().args(["ls", "--jsn"]),
        USAGE,
        "a similar argument exists: '--json'",
    );
    fails(
        memshare().args(["bench", "--only", "foo"]),
        USAGE,
        "possible values: latency, throughput",
    );
    fails(
        memshare().args(["cat", "x", "--len"]),
        USAGE,
        "a value is required for '--len <LEN>'",
    );
    fails(
        memshare().args(["info", "a", "b"]),
        USAGE,
        "(usage: memshare info [OPTIONS] <NAME>)",
    );
    for help in [&["--help"][..], &["-h"], &["help"], &["rm", "--help"]] {
        memshare()
            .args(help)
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: memshare"))
            .stderr("");
    }
    for version in ["--version", "-V"] {
        memshare()
            .arg(version)
            .assert()
            .success()
            .stdout(format!("memshare {}\n", env!("CARGO_PKG_VERSION")))
            .stderr("");
    }
}

#[test]
fn an_existing_name_is_not_created_again() {
    let name = Name::new("exists");
    name.create("4K");
    fails(
        memshare().args(["create", name.as_str(), "8K"]),
        ALREADY_EXISTS,
        "already exists",
    );
    assert_eq!(listed(&name).unwrap()["size"], 4096);
}

#[test]
fn offsets_and_lengths_out_of_range_are_usage_errors() {
    let name = Name::new("range");
    name.create("4K");
    let n = name.as_str();
    fails(
        memshare().args(["cat", n, "--offset", "4097"]),
        USAGE,
        "past the end",
    );
    fails(
        memshare().args(["cat", n, "--offset", "4000", "--len", "97"]),
        USAGE,
        "go past the end",
    );
    fails(
        memshare().args(["cat", n, "--len", "0"]),
        USAGE,
        "at least 1 byte",
    );
    fails(
        memshare()
            .args(["write", n, "--offset", "5K"])
            .write_stdin(""),
        USAGE,
        "past the end",
    );
    fails(
        memshare().args(["cat", n, "--offset", "1Q"]),
        USAGE,
        "unknown unit",
    );
}

#[test]
fn input_that_does_not_fit_writes_nothing() {
    let name = Name::new("fit");
    name.create("4K");
    let n = name.as_str();
    fails(
        memshare().args(["write", n]).write_stdin(vec![7u8; 4097]),
        USAGE,
        "does not fit",
    );
    fails(
        memshare()
            .args(["write", n, "--offset", "4090"])
            .write_stdin("1234567"),
        USAGE,
        "does not fit",
    );
    assert!(
        cat(&name, &[]).iter().all(|&b| b == 0),
        "something was written"
    );
    // Exactly up to the end fits.
    memshare()
        .args(["write", n, "--offset", "4090"])
        .write_stdin("123456")
        .assert()
        .success();
    assert_eq!(cat(&name, &["--offset", "4090"]), b"123456");
}

#[test]
fn large_segments_are_copied_a_window_at_a_time() {
    // 64 MiB windows: 65 MiB crosses a window boundary.
    let name = Name::new("large");
    name.create("65M");
    let data: Vec<u8> = (0..(64u32 << 20) + 4096).map(|i| (i % 251) as u8).collect();
    memshare()
        .args(["write", name.as_str(), "--offset", "100"])
        .write_stdin(data.clone())
        .assert()
        .success();
    let all = cat(&name, &[]);
    assert_eq!(all.len(), 65 << 20);
    assert!(all[100..100 + data.len()] == data[..], "contents differ");
    let across = cat(&name, &["--offset", "64M", "--len", "8"]);
    assert_eq!(across, &data[(64 << 20) - 100..][..8]);
}

/// Whether this process may run others as another user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

fn as_nobody() -> Command {
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_memshare"));
    cmd.uid(NOBODY).gid(NOBODY);
    Command::from_std(cmd)
}

#[test]
fn another_users_segment_is_listed_but_not_opened() {
    if !running_as_root() {
        privileged::skip(
            "another_users_segment_is_listed_but_not_opened",
            "not root: cannot run the tool as another user",
        );
        return;
    }
    // Root's segment, mode 0600; the tool runs as nobody.
    let name = Name::new("perm");
    name.create("4K");
    let n = name.as_str();
    fails(
        as_nobody().args(["cat", n]),
        PERMISSION_DENIED,
        "permission denied",
    );
    fails(
        as_nobody().args(["write", n]).write_stdin("x"),
        PERMISSION_DENIED,
        "permission denied",
    );
    fails(
        as_nobody().args(["rm", n]),
        PERMISSION_DENIED,
        "permission denied",
    );
    assert!(name.exists());

    // What stat tells is still shown; the rest is unknown.
    let info = json_of(as_nobody().args(["info", n, "--json"]));
    assert_eq!(info["size"], 4096);
    assert_eq!(info["uid"], 0);
    assert_eq!(info["mode"], "0600");
    assert_eq!(info["lifetime"], Value::Null);
    assert_eq!(info["kind"], Value::Null);
    let table = as_nobody()
        .arg("ls")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    let line = table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(n))
        .expect("listed");
    let cells: Vec<_> = line.split_whitespace().collect();
    assert_eq!(cells[1..], ["4K", "root", "0600", "0", "?", "no", "?"]);
}
