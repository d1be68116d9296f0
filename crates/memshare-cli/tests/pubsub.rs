//! `memshare pub` and `memshare sub`, run for real: messages from one
//! process's standard input to another's standard output, in text, hex
//! and JSON; bad input stops `pub` with the line's number; `sub` waits,
//! times out, and stops quietly when its reader goes away; `info` and `ls`
//! show a service's configuration, publishers and subscribers; `gc`
//! reclaims a service whose every holder died. Every test
//! kills the processes it started and removes the names it made, even
//! when it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use memshare::channel::EndpointState;
use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
use memshare::Segment;
use serde_json::Value;

/// The one way a test may skip (shared with the library's tests).
#[path = "../../memshare/tests/common/privileged.rs"]
mod privileged;

const OTHER: i32 = 1;
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;

/// How long a test waits for a process before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

fn memshare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memshare"))
}

/// A name no other test or run uses, removed when dropped (declare it
/// before the processes that hold it: they are killed first).
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
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

/// A `memshare` process, killed and reaped when dropped.
struct Running(Child);

impl Running {
    /// `memshare ARGS` with standard input and output piped.
    fn start(args: &[&str]) -> Running {
        Running(
            StdCommand::new(env!("CARGO_BIN_EXE_memshare"))
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start memshare"),
        )
    }

    fn stdin(&mut self) -> ChildStdin {
        self.0.stdin.take().expect("stdin piped")
    }

    /// Waits (at most [`PATIENCE`]) for the process to exit: its status
    /// code, standard output and standard error.
    fn finish(mut self) -> (Option<i32>, String, String) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "memshare did not finish");
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        if let Some(mut err) = self.0.stderr.take() {
            err.read_to_string(&mut stderr).expect("read stderr");
        }
        (status.code(), stdout, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the service `name` has `publishers` and `subscribers`
/// attached and alive.
fn wait_for_endpoints(name: &Name, publishers: usize, subscribers: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let alive = Segment::open_readonly(name.as_str())
            .and_then(|segment| memshare::pubsub::inspect(&segment))
            .map(|state| {
                let attached = |s: EndpointState| s == EndpointState::Attached;
                (
                    state
                        .publishers
                        .iter()
                        .filter(|p| attached(p.state))
                        .count(),
                    state
                        .subscribers
                        .iter()
                        .filter(|s| attached(s.state))
                        .count(),
                )
            });
        if alive.as_ref().ok() == Some(&(publishers, subscribers)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "service {}: {alive:?}, not {publishers} publishers and {subscribers} subscribers",
            name.as_str()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` and checks that it failed with `status` and one error line
/// containing every one of `needles`, with nothing on standard output.
fn fails(cmd: &mut Command, status: i32, needles: &[&str]) {
    let output = cmd.output().expect("run memshare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("memshare: error: "), "{stderr:?}");
    for needle in needles {
        assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    }
}

#[test]
fn lines_published_reach_a_subscriber_as_json() {
    let name = Name::new("json");
    let n = name.as_str();
    // The subscriber first: it waits for the service to appear.
    let sub = Running::start(&["sub", n, "--count", "3", "--json", "--timeout", "20s"]);
    let mut publisher = Running::start(&["pub", n, "--create"]);
    wait_for_endpoints(&name, 1, 1);
    let mut input = publisher.stdin();
    input.write_all(b"first\nsecond one\n\n").unwrap();
    drop(input);
    assert_eq!(publisher.finish(), (Some(0), String::new(), String::new()));

    let (status, stdout, stderr) = sub.finish();
    assert_eq!((status, stderr.as_str()), (Some(0), ""), "{stdout}");
    let messages: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect();
    let payloads: [&[u8]; 3] = [b"first", b"second one", b""];
    assert_eq!(messages.len(), 3, "{stdout}");
    let publisher = messages[0]["publisher"].as_str().unwrap();
    assert_eq!(publisher.len(), 16, "{stdout}");
    assert!(publisher.bytes().all(|b| b.is_ascii_hexdigit()), "{stdout}");
    for (i, (message, payload)) in messages.iter().zip(payloads).enumerate() {
        let keys: Vec<&str> = message
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys.len(), 4, "{message}");
        assert_eq!(message["publisher"], publisher, "{message}");
        assert_eq!(message["sequence"], i, "{message}");
        assert_eq!(message["len"], payload.len(), "{message}");
        assert_eq!(message["payload_hex"], hex(payload), "{message}");
    }
    // The order of the fields is the documented one.
    assert!(stdout.starts_with("{\"publisher\":"), "{stdout}");
    assert!(!name.exists(), "the service outlived its endpoints");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hex_in_hex_out_and_the_end_of_the_publishers() {
    let name = Name::new("hex");
    let n = name.as_str();
    let sub = Running::start(&["sub", n, "--hex", "--timeout", "20s"]);
    let mut publisher = Running::start(&["pub", n, "--create", "--hex"]);
    wait_for_endpoints(&name, 1, 1);
    let mut input = publisher.stdin();
    input
        .write_all(b"00 01 fe FF\n\n  DEADbeef  \r\n0a")
        .unwrap();
    drop(input);
    assert_eq!(publisher.finish(), (Some(0), String::new(), String::new()));
    // No --count: the subscriber stops once the publisher is gone.
    assert_eq!(
        sub.finish(),
        (Some(0), "0001feff\n\ndeadbeef\n0a\n".into(), String::new())
    );
}

#[test]
fn text_output_keeps_each_message_on_one_line() {
    let name = Name::new("text");
    let n = name.as_str();
    let sub = Running::start(&["sub", n, "--timeout", "20s"]);
    let mut publisher = Running::start(&["pub", n, "--create", "--hex"]);
    wait_for_endpoints(&name, 1, 1);
    let mut input = publisher.stdin();
    // "hi"; "A\nB" + an invalid byte; an escape sequence and a tab.
    input
        .write_all(b"6869\n410a42ff\n1b5b33316d09726564\n")
        .unwrap();
    drop(input);
    assert_eq!(publisher.finish().0, Some(0));
    assert_eq!(
        sub.finish(),
        (
            Some(0),
            "hi\nA\\nB\u{fffd}\n\\u{1b}[31m\tred\n".into(),
            String::new()
        )
    );
}

/// A service made by this test, with a subscriber that sees what the
/// tool publishes.
fn service(name: &Name, config: ServiceConfig) -> (Publisher, Subscriber) {
    let publisher = Publisher::create(name.as_str(), config.max_publishers(2)).unwrap();
    let subscriber = Subscriber::open(name.as_str()).unwrap();
    (publisher, subscriber)
}

/// What `subscriber` has received so far, without waiting.
fn drain(subscriber: &Subscriber) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    while let Some(sample) = subscriber.try_recv().unwrap() {
        all.push(sample.to_vec());
    }
    all
}

#[test]
fn bad_hex_stops_at_its_line() {
    let name = Name::new("badhex");
    let (_publisher, subscriber) = service(&name, ServiceConfig::new());
    fails(
        memshare()
            .args(["pub", name.as_str(), "--hex"])
            .write_stdin("0a0b\n0c 0d\n0e zz\n0f\n"),
        USAGE,
        &["line 3", "invalid hex", "'z' at column 4"],
    );
    assert_eq!(drain(&subscriber), [vec![0x0a, 0x0b], vec![0x0c, 0x0d]]);
    fails(
        memshare()
            .args(["pub", name.as_str(), "--hex"])
            .write_stdin("abc\n"),
        USAGE,
        &["line 1", "odd number of hex digits"],
    );
    assert_eq!(drain(&subscriber), Vec::<Vec<u8>>::new());
}

#[test]
fn a_line_longer_than_the_service_allows_stops_there() {
    let name = Name::new("long");
    let (_publisher, subscriber) = service(&name, ServiceConfig::new().max_message_len(8));
    fails(
        memshare()
            .args(["pub", name.as_str()])
            .write_stdin("12345678\n123456789\nafter\n"),
        USAGE,
        &["line 2", "longer than the service's maximum of 8 bytes"],
    );
    assert_eq!(drain(&subscriber), [b"12345678".to_vec()]);
    // In hex, the decoded bytes count.
    fails(
        memshare()
            .args(["pub", name.as_str(), "--hex"])
            .write_stdin("0102030405060708\n010203040506070809\n"),
        USAGE,
        &["line 2", "maximum of 8 bytes"],
    );
    assert_eq!(drain(&subscriber), [(1..=8).collect::<Vec<u8>>()]);
}

#[test]
fn verbose_pub_says_each_sequence_and_length() {
    let name = Name::new("verbose");
    let (_publisher, subscriber) = service(&name, ServiceConfig::new());
    // Our publisher is slot 0; the tool's sequence starts at 0 too.
    memshare()
        .args(["pub", name.as_str(), "--verbose"])
        .write_stdin("abc\n\nhello\n")
        .assert()
        .success()
        .stdout("")
        .stderr(
            "memshare: published sequence 0, 3 bytes\n\
             memshare: published sequence 1, 0 bytes\n\
             memshare: published sequence 2, 5 bytes\n",
        );
    assert_eq!(
        drain(&subscriber),
        [b"abc".to_vec(), Vec::new(), b"hello".to_vec()]
    );
}

#[test]
fn pub_without_create_needs_the_service_and_config_needs_create() {
    let name = Name::new("nocreate");
    fails(
        memshare().args(["pub", name.as_str()]).write_stdin("x\n"),
        NOT_FOUND,
        &["not found"],
    );
    fails(
        memshare().args(["pub", name.as_str(), "--depth", "4"]),
        USAGE,
        &["--create"],
    );
    assert!(!name.exists());
}

#[test]
fn pub_create_makes_the_service_the_flags_describe() {
    let name = Name::new("config");
    let n = name.as_str();
    let mut publisher = Running::start(&[
        "pub",
        n,
        "--create",
        "--max-publishers",
        "3",
        "--max-subscribers",
        "5",
        "--max-message-len",
        "2K",
        "--depth",
        "7",
        "--history",
        "2",
        "--max-held",
        "4",
        "--overflow",
        "block",
    ]);
    wait_for_endpoints(&name, 1, 0);
    let subscriber = Subscriber::open(n).unwrap();
    let expected = ServiceConfig::new()
        .max_publishers(3)
        .max_subscribers(5)
        .max_message_len(2048)
        .depth(7)
        .history(2)
        .max_held(4)
        .overflow(memshare::pubsub::Overflow::Block);
    assert_eq!(subscriber.config(), expected);
    let mut input = publisher.stdin();
    input.write_all(b"configured\n").unwrap();
    drop(input);
    assert_eq!(publisher.finish().0, Some(0));
    assert_eq!(&*subscriber.recv().unwrap(), b"configured");
}

#[test]
fn sub_waits_for_a_missing_service_then_says_so() {
    let name = Name::new("absent");
    let n = name.as_str();
    fails(memshare().args(["sub", n]), NOT_FOUND, &["not found"]);
    let began = Instant::now();
    fails(
        memshare().args(["sub", n, "--timeout", "300ms"]),
        NOT_FOUND,
        &[&format!("no service \"{n}\" appeared within 300ms")],
    );
    assert!(began.elapsed() >= Duration::from_millis(300));
    fails(
        memshare().args(["sub", n, "--timeout", "5x"]),
        USAGE,
        &["invalid --timeout", "unknown unit"],
    );
    assert!(!name.exists());
}

#[test]
fn sub_times_out_when_no_message_comes() {
    let name = Name::new("quiet");
    let (mut publisher, _subscriber) = service(&name, ServiceConfig::new().history(1));
    publisher.publish_copy(b"kept").unwrap();
    // The history's one message, then nothing for 300 ms.
    let began = Instant::now();
    let output = memshare()
        .args(["sub", name.as_str(), "--timeout", "300ms"])
        .output()
        .unwrap();
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(output.status.code(), Some(OTHER));
    assert_eq!(output.stdout, b"kept\n");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "memshare: error: timed out: no message from service \"{}\" within 300ms \
             (1 received)\n",
            name.as_str()
        )
    );
}

#[test]
fn sub_waits_for_a_creator_to_write_the_header() {
    // A name whose first bytes are still zero: what a subscriber sees
    // between a creator's naming of the service and its writing the magic.
    let zeros = Name::new("zeros");
    let segment = Segment::create_named(zeros.as_str(), 1 << 16).unwrap();
    let began = Instant::now();
    fails(
        memshare().args(["sub", zeros.as_str(), "--timeout", "300ms"]),
        OTHER,
        &["not a publish-subscribe service"],
    );
    assert!(began.elapsed() >= Duration::from_millis(300));
    drop(segment);

    // Anything else there is refused at once.
    let bytes = Name::new("bytes");
    let segment = Segment::create_named(bytes.as_str(), 1 << 16).unwrap();
    segment
        .map(..)
        .unwrap()
        .write_at(0, b"not a service")
        .unwrap();
    let began = Instant::now();
    fails(
        memshare().args(["sub", bytes.as_str(), "--timeout", "10s"]),
        OTHER,
        &["not a publish-subscribe service"],
    );
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[test]
fn sub_stops_quietly_when_its_reader_goes_away() {
    let name = Name::new("pipe");
    let (mut publisher, _subscriber) = service(&name, ServiceConfig::new());
    let mut sub = Running::start(&["sub", name.as_str()]);
    wait_for_endpoints(&name, 1, 2);
    publisher.publish_copy(b"one").unwrap();
    let mut stdout = BufReader::new(sub.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "one\n");
    // Like `| head -1`: the reader reads a line and goes.
    drop(stdout);
    // More messages until the tool notices. (A process that another test
    // starts meanwhile holds a copy of the reading end until its exec:
    // a write while it does succeeds.)
    let deadline = Instant::now() + PATIENCE;
    while sub.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "sub did not stop");
        publisher.publish_copy(b"nobody reads this").unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _, stderr) = sub.finish();
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
}

#[test]
fn sub_options_are_checked() {
    fails(
        memshare().args(["sub", "x", "--hex", "--json"]),
        USAGE,
        &["--json"],
    );
    fails(memshare().args(["sub", "x", "--count", "0"]), USAGE, &["0"]);
    for command in ["pub", "sub"] {
        memshare()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicates::str::contains(format!(
                "Usage: memshare {command}"
            )));
    }
}

fn json_of(cmd: &mut Command) -> Value {
    let output = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&output).expect("valid JSON")
}

fn stdout_of(cmd: &mut Command) -> String {
    let output = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(output).expect("UTF-8")
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

/// The cells of the line of `table` whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no line for {first:?} in\n{table}"))
}

#[test]
fn info_and_ls_show_a_service_its_publishers_and_subscribers() {
    let name = Name::new("info");
    let n = name.as_str();
    let config = ServiceConfig::new()
        .max_publishers(2)
        .max_subscribers(4)
        .max_message_len(1024)
        .depth(4)
        .history(1)
        .max_held(3);
    let mut publisher = Publisher::create(n, config).unwrap();
    let lagging = Subscriber::open(n).unwrap();
    let keeping_up = Subscriber::open(n).unwrap();
    drop(Publisher::open(n).unwrap()); // slot 1: detached
    let mut last = None;
    for i in 0..10 {
        publisher.publish_copy(format!("m{i}").as_bytes()).unwrap();
        drop(last.take());
        last = Some(keeping_up.recv().unwrap());
    }
    // Six behind the depth of 4: it loses the oldest, then takes one.
    drop(lagging.recv().unwrap());
    assert!(lagging.missed() > 0);
    let missed = lagging.missed();
    let lag = 10 - missed - 1;
    let state = memshare::pubsub::inspect(publisher.segment()).unwrap();

    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(info["kind"], "pubsub", "{info}");
    assert_eq!(
        (&info["publishers"], &info["subscribers"]),
        (&Value::from(1), &Value::from(2))
    );
    assert_eq!(info["channel"], Value::Null);
    assert_eq!(
        (&info["server_alive"], &info["clients"], &info["rpc"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let pubsub = &info["pubsub"];
    for (field, value) in [
        ("max_publishers", Value::from(2)),
        ("max_subscribers", Value::from(4)),
        ("max_message_len", Value::from(1024)),
        ("depth", Value::from(4)),
        ("history", Value::from(1)),
        ("max_held", Value::from(3)),
        ("overflow", Value::from("drop-oldest")),
    ] {
        assert_eq!(pubsub[field], value, "{field}: {pubsub}");
    }
    assert_eq!(
        pubsub["publishers"],
        serde_json::json!([
            {"slot": 0, "state": "attached", "id": publisher.id().to_string(), "next_sequence": 10},
            {"slot": 1, "state": "detached", "id": state.publishers[1].id.to_string(),
             "next_sequence": 0},
        ])
    );
    let subscriber = |s: &Subscriber| {
        pubsub["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|json| json["slot"] == s.slot())
            .unwrap_or_else(|| panic!("no subscriber slot {}: {pubsub}", s.slot()))
            .clone()
    };
    assert_eq!(
        subscriber(&lagging),
        serde_json::json!({"slot": lagging.slot(), "state": "attached", "received": 1,
                           "missed": missed, "lag": lag, "held": 0})
    );
    assert_eq!(
        subscriber(&keeping_up),
        serde_json::json!({"slot": keeping_up.slot(), "state": "attached", "received": 10,
                           "missed": 0, "lag": 0, "held": 1})
    );

    let text = stdout_of(memshare().args(["info", n]));
    for line in [
        "kind:            pubsub\n",
        "publishers:      1 alive, at most 2\n",
        "subscribers:     2 alive, at most 4\n",
        "max message len: 1K (1024 bytes)\n",
        "depth:           4\n",
        "history:         1\n",
        "max held:        3\n",
        "overflow:        drop-oldest\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert_eq!(
        row(&text, "PUBLISHER"),
        ["PUBLISHER", "ID", "NEXT", "SEQ", "STATE"]
    );
    assert_eq!(
        row(&text, "SUBSCRIBER"),
        ["SUBSCRIBER", "RECEIVED", "MISSED", "LAG", "HELD", "STATE"]
    );
    let publisher_id = publisher.id().to_string();
    assert_eq!(row(&text, "0")[..3], ["0", publisher_id.as_str(), "10"]);
    let lagging_row = format!("{} 1 {missed} {lag} 0 attached", lagging.slot());
    let keeping_row = format!("{} 10 0 0 1 attached", keeping_up.slot());
    let rows: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(rows.contains(&lagging_row), "no {lagging_row:?} in\n{text}");
    assert!(rows.contains(&keeping_row), "no {keeping_row:?} in\n{text}");

    let entry = listed(&name).expect("listed");
    assert_eq!(entry["kind"], "pubsub");
    assert_eq!(
        (&entry["publishers"], &entry["subscribers"]),
        (&Value::from(1), &Value::from(2))
    );
    let table = stdout_of(memshare().arg("ls"));
    assert!(
        row(&table, "NAME").ends_with(&["KIND", "ENDPOINTS"]),
        "{table}"
    );
    assert!(row(&table, n).ends_with(&["pubsub", "1/2"]), "{table}");

    // Other kinds have no count, in JSON or in the table.
    let plain = Name::new("plain");
    let _segment = Segment::create_named(plain.as_str(), 4096).unwrap();
    let entry = listed(&plain).expect("listed");
    assert_eq!(
        (&entry["publishers"], &entry["subscribers"]),
        (&Value::Null, &Value::Null)
    );
    let table = stdout_of(memshare().arg("ls"));
    assert_eq!(
        row(&table, plain.as_str()).last(),
        Some(&"bytes"),
        "{table}"
    );
    drop(last);
}

#[test]
fn another_users_service_shows_what_stat_tells() {
    use std::os::unix::process::CommandExt;
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root {
        privileged::skip(
            "another_users_service_shows_what_stat_tells",
            "not root: cannot run the tool as another user",
        );
        return;
    }
    let name = Name::new("theirs");
    let _publisher = Publisher::create(name.as_str(), ServiceConfig::new()).unwrap();
    let as_nobody = || {
        let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_memshare"));
        cmd.uid(65534).gid(65534);
        Command::from_std(cmd)
    };
    // (Another test's `memshare ls` or `gc`, run as root meanwhile, opens
    // every segment and holds it for a moment: a second holder then. Asked
    // again, at most three times.)
    let mut info = Value::Null;
    for _ in 0..3 {
        info = json_of(as_nobody().args(["info", name.as_str(), "--json"]));
        if info["holders"] == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(info["holders"], 1, "{info}");
    for field in ["kind", "lifetime", "publishers", "subscribers", "pubsub"] {
        assert_eq!(info[field], Value::Null, "{field}: {info}");
    }
    let table = stdout_of(as_nobody().arg("ls"));
    assert_eq!(row(&table, name.as_str())[5..], ["?", "no", "?"], "{table}");
}

#[test]
fn gc_reclaims_the_service_of_a_killed_publisher() {
    let name = Name::new("gcsvc");
    let n = name.as_str();
    let publisher = Running::start(&["pub", n, "--create"]);
    wait_for_endpoints(&name, 1, 0);
    // SIGKILL: the publisher never detaches, and nobody else holds it.
    drop(publisher);

    let entry = listed(&name).expect("a killed publisher leaves its service");
    for (field, value) in [
        ("kind", Value::from("pubsub")),
        ("lifetime", Value::from("shared")),
        ("holders", Value::from(0)),
        ("stale", Value::from(true)),
        ("publishers", Value::from(0)),
        ("subscribers", Value::from(0)),
    ] {
        assert_eq!(entry[field], value, "{field}: {entry}");
    }
    // info describes it without opening it (an open would remove it).
    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(
        (&info["stale"], &info["pubsub"]),
        (&Value::from(true), &Value::Null)
    );
    let text = stdout_of(memshare().args(["info", n]));
    assert!(text.contains("not opened: it is stale"), "{text}");
    assert!(name.exists(), "info removed the stale service");

    memshare()
        .args(["gc", "--dry-run"])
        .assert()
        .success()
        .stdout(predicates::str::contains(format!("would remove {n}\n")));
    assert!(name.exists());
    memshare()
        .args(["gc", n])
        .assert()
        .success()
        .stdout(format!("removed {n}\n"));
    assert!(!name.exists());
}
