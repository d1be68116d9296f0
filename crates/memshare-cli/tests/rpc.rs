//! `memshare call` and `memshare serve`, run for real: requests from the
//! command line or standard input, responses to a pipe (exactly), a
//! terminal (escaped) or in hex; a server that echoes or runs a command
//! per request; every way a call fails, with its status; `info`, `ls` and
//! `gc` on request/response services, live, with a dead client, with a
//! SIGKILLed server, and stale. Every test kills the processes it started
//! and removes the names it made, even when it fails.

use std::borrow::BorrowMut;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use memshare::rpc::{Client, Server, ServerConfig};
use memshare::Segment;
use serde_json::Value;

#[path = "support/terminal.rs"]
mod terminal;

const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;
const ALREADY_EXISTS: i32 = 4;
const NO_SERVER: i32 = 6;
const LIMIT_REACHED: i32 = 7;
const DECLINED: i32 = 8;
const TIMED_OUT: i32 = 9;

/// How long a test waits for a process before it gives up.
const PATIENCE: Duration = Duration::from_secs(20);

fn memshare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memshare"));
    // A tool that hangs fails the test instead of hanging it.
    cmd.timeout(PATIENCE);
    cmd
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

/// A `memshare` process whose standard error is collected as it comes;
/// killed (SIGKILL) and reaped when dropped.
struct Proc {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// `memshare ARGS`, standard input piped (closed by [`Proc::finish`]
    /// if not before), standard output piped.
    fn start(args: &[&str]) -> Proc {
        let mut child = StdCommand::new(env!("CARGO_BIN_EXE_memshare"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start memshare");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr piped"));
        let seen = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(lines.read_line(&mut line), Ok(1..)) {
                seen.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Proc {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// `memshare serve NAME ARGS`, once it says it is serving.
    fn serve(name: &Name, args: &[&str]) -> Proc {
        let mut all = vec!["serve", name.as_str()];
        all.extend_from_slice(args);
        let server = Proc::start(&all);
        server.wait_for_stderr(&format!("memshare: serving {}\n", name.as_str()));
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr_now(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until standard error holds `needle`.
    fn wait_for_stderr(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.stderr_now().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on standard error: {:?}",
                self.stderr_now()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Writes `bytes` to its standard input and closes it.
    fn feed(&mut self, bytes: &[u8]) {
        let mut stdin = self.child.stdin.take().expect("stdin piped");
        stdin.write_all(bytes).expect("write stdin");
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Waits (at most [`PATIENCE`]) for the process to exit: its status
    /// code, standard output and standard error.
    fn finish(mut self) -> (Option<i32>, Vec<u8>, String) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "memshare did not finish; stderr: {:?}",
                self.stderr_now()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stdout = Vec::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout).expect("read stdout");
        }
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        (status.code(), stdout, self.stderr_now())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` and checks that it failed with `status` and one error line
/// containing every one of `needles`, with nothing on standard output.
fn fails(mut cmd: impl BorrowMut<Command>, status: i32, needles: &[&str]) -> String {
    let output = cmd.borrow_mut().output().expect("run memshare");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("memshare: error: "), "{stderr:?}");
    for needle in needles {
        assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    }
    stderr
}

/// The standard output of `cmd`, which must succeed with nothing on
/// standard error.
fn output_of(mut cmd: impl BorrowMut<Command>) -> Vec<u8> {
    let output = cmd.borrow_mut().output().expect("run memshare");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert_eq!(stderr, "");
    output.stdout
}

fn call(name: &Name, args: &[&str]) -> Command {
    let mut cmd = memshare();
    cmd.args(["call", name.as_str()]).args(args);
    cmd
}

/// Waits until the service `name` shows `clients` client regions in use
/// (a snapshot for which `ready` holds), and returns that snapshot.
fn wait_for_state(
    name: &Name,
    ready: impl Fn(&memshare::rpc::RpcState) -> bool,
) -> memshare::rpc::RpcState {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = Segment::open_readonly(name.as_str())
            .and_then(|segment| memshare::rpc::inspect(&segment));
        if let Ok(state) = &state {
            if ready(state) {
                return state.clone();
            }
        }
        assert!(Instant::now() < deadline, "service {}: {state:?}", name.0);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn call_sends_its_argument_or_stdin_and_prints_the_response_exactly() {
    let name = Name::new("exact");
    let n = name.as_str();
    let server = Server::create(n, ServerConfig::new()).unwrap();

    // The request from the argument; the response, not the request, on
    // standard output: to a pipe, exactly its bytes, no newline added.
    let caller = Proc::start(&["call", n, "2+2"]);
    let request = server.recv_timeout(PATIENCE).unwrap();
    assert_eq!(&*request, b"2+2");
    request.respond(b"4\n\x00\xff").unwrap();
    let (status, stdout, stderr) = caller.finish();
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    assert_eq!(stdout, b"4\n\x00\xff");

    // From standard input, all of it, newlines and NULs included.
    let mut caller = Proc::start(&["call", n]);
    caller.feed(b"line one\nline two\n\x00");
    let request = server.recv_timeout(PATIENCE).unwrap();
    assert_eq!(&*request, b"line one\nline two\n\x00");
    let reversed: Vec<u8> = request.iter().rev().copied().collect();
    request.respond(&reversed).unwrap();
    let (status, stdout, _) = caller.finish();
    assert_eq!((status, stdout), (Some(0), reversed));

    // In hex both ways.
    let caller = Proc::start(&["call", n, "--hex", "00 01 FF"]);
    let request = server.recv_timeout(PATIENCE).unwrap();
    assert_eq!(&*request, [0, 1, 0xff]);
    request.respond(&[0xde, 0xad, 0x0a]).unwrap();
    let (status, stdout, _) = caller.finish();
    assert_eq!((status, stdout), (Some(0), b"dead0a\n".to_vec()));

    // An empty request, an empty response.
    let caller = Proc::start(&["call", n, ""]);
    let request = server.recv_timeout(PATIENCE).unwrap();
    assert!(request.is_empty());
    request.respond(b"").unwrap();
    assert_eq!(caller.finish(), (Some(0), Vec::new(), String::new()));
}

#[test]
fn call_against_serve_echo_argument_stdin_and_hex() {
    use std::os::unix::ffi::OsStrExt;
    let name = Name::new("echo");
    let n = name.as_str();
    let mut server = Proc::serve(&name, &["--echo"]);
    assert_eq!(output_of(call(&name, &["hello world"])), b"hello world");
    // Not UTF-8: the bytes as they are.
    let odd = std::ffi::OsStr::from_bytes(b"\xff\xfe-\x1b");
    assert_eq!(
        output_of(memshare().args(["call", n]).arg(odd)),
        b"\xff\xfe-\x1b"
    );
    assert_eq!(
        output_of(call(&name, &[]).write_stdin("from\nstdin\n")),
        b"from\nstdin\n"
    );
    assert_eq!(output_of(call(&name, &["--hex", "6869 21"])), b"686921\n");
    assert_eq!(
        output_of(call(&name, &["--hex"]).write_stdin("DE AD\nbe ef\n")),
        b"deadbeef\n"
    );
    assert_eq!(output_of(call(&name, &[]).write_stdin("")), b"");
    assert_eq!(output_of(call(&name, &["--hex", ""])), b"\n");
    fails(
        call(&name, &["--hex", "0g"]),
        USAGE,
        &["invalid hex request", "'g' at column 2", "nothing was sent"],
    );
    fails(
        call(&name, &["--hex"]).write_stdin("abc"),
        USAGE,
        &["invalid hex request", "odd number"],
    );
    assert!(server.running(), "{}", server.stderr_now());
}

/// Runs `memshare ARGS` with a pseudo-terminal as standard output;
/// returns its status and what reached the terminal (it must print nothing
/// on standard error).
fn to_terminal(args: &[&std::ffi::OsStr]) -> (Option<i32>, Vec<u8>) {
    let (output, seen) = terminal::run_on_terminal(args);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    (output.status.code(), seen)
}

#[test]
fn to_a_terminal_the_response_is_one_escaped_line() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let name = Name::new("tty");
    let _server = Proc::serve(&name, &["--echo"]);
    let call = OsStr::new("call");
    let n = OsStr::new(name.as_str());
    // Two lines, an escape sequence that would turn the terminal red, a
    // tab and an invalid byte.
    let request = OsStr::from_bytes(b"A\nB\x1b[31m\tc\xff");
    let (status, seen) = to_terminal(&[call, n, request]);
    assert_eq!(status, Some(0));
    // The one newline is ours (the terminal makes it CR LF).
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "A\\nB\\u{1b}[31m\tc\u{fffd}\r\n"
    );
    // --hex is hex on a terminal too.
    let hex = [call, n, OsStr::new("--hex"), OsStr::new("0a1b")];
    assert_eq!(to_terminal(&hex), (Some(0), b"0a1b\r\n".to_vec()));
}

#[test]
fn serve_exec_answers_with_the_commands_output_or_declines() {
    let name = Name::new("exec");
    let n = name.as_str();
    // The whole rest of the command line is the command, options included.
    let upper = Proc::serve(&name, &["--verbose", "--exec", "tr", "a-z", "A-Z"]);
    assert_eq!(output_of(call(&name, &["shout this"])), b"SHOUT THIS");
    assert_eq!(
        output_of(call(&name, &[]).write_stdin("two\nlines\n")),
        b"TWO\nLINES\n"
    );
    upper.wait_for_stderr("10 bytes, answered with 10 bytes\n");
    upper.signal(rustix::process::Signal::TERM);
    let (status, _, stderr) = upper.finish();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(!name.exists());

    // A command that fails: the request is declined, the caller told so.
    let failing = Proc::serve(&name, &["--exec", "sh", "-c", "cat >/dev/null; exit 3"]);
    fails(
        call(&name, &["anything"]),
        DECLINED,
        &[&format!(
            "the server of service \"{n}\" declined the request"
        )],
    );
    failing.wait_for_stderr("(8 bytes): `sh -c cat >/dev/null; exit 3` exited with status 3\n");
    // It goes on serving.
    fails(call(&name, &["again"]), DECLINED, &["declined"]);
    drop(failing);

    // A command that never reads its input (a closed pipe is no matter);
    // output longer than the service's responses: declined.
    let short = Proc::serve(
        &name,
        &["--max-response-len", "4", "--exec", "echo", "1234"],
    );
    fails(call(&name, &["x"]), DECLINED, &["declined"]);
    short.wait_for_stderr("`echo 1234` wrote more than --max-response-len (4 bytes)\n");
    drop(short);

    // --echo declines a request longer than its responses may be.
    let echo = Proc::serve(&name, &["--echo", "--max-response-len", "4"]);
    assert_eq!(output_of(call(&name, &["1234"])), b"1234");
    fails(call(&name, &["12345"]), DECLINED, &["declined"]);
    echo.wait_for_stderr(
        "(5 bytes): the response of 5 bytes would be longer than --max-response-len (4)\n",
    );
}

#[test]
fn serve_exec_of_a_missing_command_stops_serve() {
    let name = Name::new("nocmd");
    let server = Proc::serve(&name, &["--exec", "/nonexistent/memshare-test-cmd"]);
    fails(call(&name, &["x"]), DECLINED, &["declined"]);
    let (status, _, stderr) = server.finish();
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "memshare: error: cannot run `/nonexistent/memshare-test-cmd`: No such file or \
             directory (os error 2)\n"
        ),
        "{stderr}"
    );
    assert!(!name.exists());
}

#[test]
fn serve_count_and_signals_end_it_cleanly() {
    let name = Name::new("count");
    let server = Proc::serve(&name, &["--echo", "--count", "2"]);
    assert_eq!(output_of(call(&name, &["one"])), b"one");
    assert_eq!(output_of(call(&name, &["two"])), b"two");
    assert_eq!(server.finish().0, Some(0));
    assert!(!name.exists(), "the service outlived its server");

    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let server = Proc::serve(&name, &["--echo"]);
        // A client connected: it sees the server go.
        let mut client = Client::connect(name.as_str()).unwrap();
        assert_eq!(&*client.call(b"before").unwrap(), b"before");
        server.signal(signal);
        let (status, stdout, stderr) = server.finish();
        assert_eq!(
            (status, stdout, stderr),
            (
                Some(0),
                Vec::new(),
                format!("memshare: serving {}\n", name.as_str())
            ),
            "{signal:?}"
        );
        assert!(!name.exists(), "{signal:?}: the name outlived the server");
        assert!(matches!(
            client.call(b"after"),
            Err(memshare::Error::Disconnected { .. })
        ));
    }
}

#[test]
fn serve_refuses_a_served_name_and_bad_options() {
    let name = Name::new("twice");
    let _first = Proc::serve(&name, &["--echo"]);
    fails(
        memshare().args(["serve", name.as_str(), "--echo"]),
        ALREADY_EXISTS,
        &["a server is already attached"],
    );
    // Something else under the name.
    let bytes = Name::new("bytes");
    let _segment = Segment::create_named(bytes.as_str(), 4096).unwrap();
    fails(
        memshare().args(["serve", bytes.as_str(), "--echo"]),
        ALREADY_EXISTS,
        &["already exists"],
    );
    let other = Name::new("opts");
    fails(
        memshare().args(["serve", other.as_str()]),
        USAGE,
        &["--echo"],
    );
    fails(
        memshare().args(["serve", other.as_str(), "--echo", "--exec", "cat"]),
        USAGE,
        &["--exec"],
    );
    fails(
        memshare().args(["serve", other.as_str(), "--echo", "--max-clients", "0"]),
        USAGE,
        &["max_clients"],
    );
    assert!(!other.exists());
}

#[test]
fn call_waits_for_a_server_with_timeout_and_not_without() {
    let name = Name::new("late");
    let n = name.as_str();
    fails(
        call(&name, &["x"]),
        NOT_FOUND,
        &[&format!("no service \"{n}\" (nothing of that name)")],
    );
    let began = Instant::now();
    fails(
        call(&name, &["x", "--timeout", "300ms"]),
        NOT_FOUND,
        &[&format!("no service \"{n}\" appeared within 300ms")],
    );
    assert!(began.elapsed() >= Duration::from_millis(300));

    // The server comes 200 ms after the caller: it is waited for.
    let mut caller = Proc::start(&["call", n, "early", "--timeout", "10s"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        caller.running(),
        "call did not wait: {:?}",
        caller.stderr_now()
    );
    let _server = Proc::serve(&name, &["--echo"]);
    let (status, stdout, stderr) = caller.finish();
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    assert_eq!(stdout, b"early");
}

#[test]
fn call_times_out_when_no_response_comes() {
    let name = Name::new("slow");
    // A server that never looks at its requests.
    let _server = Server::create(name.as_str(), ServerConfig::new()).unwrap();
    let began = Instant::now();
    fails(
        call(&name, &["x", "--timeout", "300ms"]),
        TIMED_OUT,
        &[&format!(
            "timed out: no response from service \"{}\" within 300ms",
            name.as_str()
        )],
    );
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn call_with_every_client_slot_taken_names_the_limit() {
    let name = Name::new("full");
    let _server = Proc::serve(&name, &["--echo", "--max-clients", "1"]);
    let mut client = Client::connect(name.as_str()).unwrap();
    for extra in [&[][..], &["--timeout", "2s"]] {
        let mut args = vec!["x"];
        args.extend_from_slice(extra);
        fails(
            call(&name, &args),
            LIMIT_REACHED,
            &["max_clients", "the limit is 1"],
        );
    }
    // Our client still works, and once it goes the slot is free.
    assert_eq!(&*client.call(b"mine").unwrap(), b"mine");
    drop(client);
    assert_eq!(output_of(call(&name, &["x", "--timeout", "10s"])), b"x");
}

#[test]
fn a_request_longer_than_the_service_takes_is_not_sent() {
    let name = Name::new("big");
    let n = name.as_str();
    let server = Server::create(n, ServerConfig::new().max_request_len(8)).unwrap();
    let limit = format!("more than the 8 bytes service \"{n}\" takes in a request (its max_request_len); nothing was sent");
    fails(
        call(&name, &["123456789"]),
        USAGE,
        &["the request is 9 bytes,", &limit],
    );
    fails(
        call(&name, &["--hex", "00 01 02 03 04 05 06 07 08"]),
        USAGE,
        &["the request is 9 bytes,", &limit],
    );
    fails(
        call(&name, &[]).write_stdin(vec![b'x'; 100_000]),
        USAGE,
        &["standard input holds", &limit],
    );
    // Nothing reached the server.
    assert!(server.try_recv().unwrap().is_none());
    // Exactly the limit goes.
    let caller = Proc::start(&["call", n, "12345678"]);
    let request = server.recv_timeout(PATIENCE).unwrap();
    assert_eq!(&*request, b"12345678");
    request.respond(b"ok").unwrap();
    assert_eq!(caller.finish().1, b"ok");
}

#[test]
fn call_to_a_service_whose_server_died_says_no_server() {
    let name = Name::new("dead");
    let n = name.as_str();
    let server = Proc::serve(&name, &["--echo"]);
    let mut client = Client::connect(n).unwrap();
    assert_eq!(&*client.call(b"hi").unwrap(), b"hi");
    // SIGKILL: the server never detaches; our client holds the name.
    drop(server);
    fails(
        call(&name, &["x"]),
        NO_SERVER,
        &[&format!("service \"{n}\" has no server (it died or left)")],
    );
    let began = Instant::now();
    fails(
        call(&name, &["x", "--timeout", "300ms"]),
        NO_SERVER,
        &["has no server", "none came within 300ms"],
    );
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        client.call(b"x"),
        Err(memshare::Error::Disconnected { .. })
    ));

    // A server that comes while `call` waits is used; our old client
    // stays disconnected (the new server made a new service).
    let mut caller = Proc::start(&["call", n, "late", "--timeout", "10s"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        caller.running(),
        "call did not wait: {:?}",
        caller.stderr_now()
    );
    let again = Proc::serve(&name, &["--echo"]);
    let (status, stdout, stderr) = caller.finish();
    assert_eq!(
        (status, stdout, stderr),
        (Some(0), b"late".to_vec(), String::new())
    );
    assert!(matches!(
        client.call(b"x"),
        Err(memshare::Error::Disconnected { .. })
    ));

    // A server that goes while the call waits for its response.
    drop(again);
    drop(client);
    let server = Server::create(n, ServerConfig::new()).unwrap();
    let caller = Proc::start(&["call", n, "x"]);
    wait_for_state(&name, |s| s.clients.iter().any(|c| c.sent == 1));
    drop(server);
    let (status, _, stderr) = caller.finish();
    assert_eq!(status, Some(NO_SERVER), "{stderr}");
    assert_eq!(
        stderr,
        format!("memshare: error: the server of service \"{n}\" went away before it answered\n")
    );
}

fn json_of(cmd: impl BorrowMut<Command>) -> Value {
    serde_json::from_slice(&output_of(cmd)).expect("valid JSON")
}

fn text_of(cmd: impl BorrowMut<Command>) -> String {
    String::from_utf8(output_of(cmd)).expect("UTF-8")
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

/// The lines of `text`, each with its runs of spaces made one.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

const DEAD: &str = "dead (marked attached, its process is gone)";

#[test]
fn info_and_ls_show_a_live_service_its_server_and_clients() {
    let name = Name::new("info");
    let n = name.as_str();
    let config = ServerConfig::new()
        .max_clients(4)
        .max_in_flight(3)
        .max_request_len(100)
        .max_response_len(2048);
    let server = Server::create(n, config).unwrap();
    let me = std::process::id();

    // A client of this process: two requests sent, one answered and
    // received, one owed.
    let mut busy = Client::connect(n).unwrap();
    let first = busy.send_request(b"one").unwrap();
    let second = busy.send_request(b"two").unwrap();
    server.recv().unwrap().respond(b"1").unwrap();
    let _owed = server.recv().unwrap();
    drop(busy.receive_response(&first).unwrap());
    // A client that made three calls, one after another, all answered and
    // received.
    let mut done = Client::connect(n).unwrap();
    for call in [&b"a"[..], b"b", b"c"] {
        let pending = done.send_request(call).unwrap();
        server.recv().unwrap().respond(call).unwrap();
        assert_eq!(&*done.receive_response(&pending).unwrap(), call);
    }
    // (The server is not asked anything from now on: it would reset the
    // region of the dead client below.)
    // A `call` process that sent its request and was killed waiting.
    let caller = Proc::start(&["call", n, "never answered"]);
    let caller_pid = caller.pid();
    wait_for_state(&name, |s| {
        s.clients.iter().any(|c| c.pid == caller_pid && c.sent == 1)
    });
    drop(caller);
    // A client that sent nothing.
    let idle = Client::connect(n).unwrap();

    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(info["kind"], "rpc", "{info}");
    assert_eq!(
        (&info["server_alive"], &info["clients"]),
        (&Value::from(true), &Value::from(3)),
        "the dead client is not alive: {info}"
    );
    for field in ["publishers", "subscribers", "pubsub", "channel"] {
        assert_eq!(info[field], Value::Null, "{field}: {info}");
    }
    let rpc = &info["rpc"];
    assert_eq!(
        rpc["server"],
        serde_json::json!({"state": "attached", "pid": me, "retired": false})
    );
    for (field, value) in [
        ("max_clients", 4),
        ("max_in_flight", 3),
        ("max_request_len", 100),
        ("max_response_len", 2048),
    ] {
        assert_eq!(rpc[field], value, "{field}: {rpc}");
    }
    // The library's own numbers, to compare with. (Its `in_flight` counts
    // the slots that are not free, and a slot whose response was received
    // stays RESPONDED until it is used again: `busy`'s first request
    // counts.)
    let state = memshare::rpc::inspect(server.segment()).unwrap();
    let dead = state
        .clients
        .iter()
        .find(|c| c.pid == caller_pid)
        .expect("the dead client's region");
    let of =
        |id: memshare::rpc::ClientId| *state.clients.iter().find(|c| c.id == id).expect("a client");
    let client = |c: memshare::rpc::ClientState, state: &str, pid: u32, sent: u64| {
        serde_json::json!({"slot": c.id.slot(), "id": c.id.to_string(), "state": state,
                           "evicted": false, "pid": pid, "sent": sent,
                           "in_flight": c.in_flight})
    };
    let mut expected = vec![
        client(of(busy.id()), "attached", me, 2),
        client(of(done.id()), "attached", me, 3),
        client(of(idle.id()), "attached", me, 0),
        client(*dead, DEAD, caller_pid, 1),
    ];
    expected.sort_by_key(|json| json["slot"].as_u64());
    assert_eq!(rpc["clients"], Value::from(expected), "{rpc}");
    assert!(of(busy.id()).in_flight >= 1, "{state:?}");
    assert_eq!((of(idle.id()).in_flight, dead.in_flight), (0, 1));

    let text = text_of(memshare().args(["info", n]));
    for line in [
        "kind: rpc".to_owned(),
        format!("server: attached, pid {me}"),
        "clients: 3 alive, at most 4".to_owned(),
        "max in flight: 3".to_owned(),
        "max request len: 100 (100 bytes)".to_owned(),
        "max response len: 2K (2048 bytes)".to_owned(),
    ] {
        assert!(lines(&text).contains(&line), "no {line:?} in\n{text}");
    }
    assert_eq!(
        row(&text, "CLIENT"),
        ["CLIENT", "ID", "PID", "SENT", "IN", "FLIGHT", "EVICTED", "STATE"]
    );
    let busy_slot = busy.id().slot().to_string();
    let busy_row = format!(
        "{busy_slot} {} {me} 2 {} no attached",
        busy.id(),
        of(busy.id()).in_flight
    );
    assert!(
        lines(&text).contains(&busy_row),
        "no {busy_row:?} in\n{text}"
    );
    let dead_row = format!("{} {} {caller_pid} 1 1 no {DEAD}", dead.id.slot(), dead.id);
    assert!(
        lines(&text).contains(&dead_row),
        "no {dead_row:?} in\n{text}"
    );
    let done_row = format!(
        "{} {} {me} 3 {} no attached",
        done.id().slot(),
        done.id(),
        of(done.id()).in_flight
    );
    assert!(
        lines(&text).contains(&done_row),
        "no {done_row:?} in\n{text}"
    );

    let entry = listed(&name).expect("listed");
    assert_eq!(entry["kind"], "rpc");
    assert_eq!(
        (&entry["server_alive"], &entry["clients"]),
        (&Value::from(true), &Value::from(3))
    );
    assert_eq!(
        (&entry["publishers"], &entry["subscribers"]),
        (&Value::Null, &Value::Null)
    );
    let table = text_of(memshare().arg("ls"));
    assert!(
        row(&table, "NAME").ends_with(&["KIND", "ENDPOINTS"]),
        "{table}"
    );
    assert!(row(&table, n).ends_with(&["rpc", "1/3"]), "{table}");

    // Other kinds have neither, in JSON or in the table.
    let plain = Name::new("plain");
    let _segment = Segment::create_named(plain.as_str(), 4096).unwrap();
    let entry = listed(&plain).expect("listed");
    assert_eq!(
        (&entry["server_alive"], &entry["clients"]),
        (&Value::Null, &Value::Null)
    );
    let table = text_of(memshare().arg("ls"));
    assert_eq!(
        row(&table, plain.as_str()).last(),
        Some(&"bytes"),
        "{table}"
    );
    drop(second);
}

#[test]
fn info_and_ls_show_a_killed_server_dead_while_a_client_holds_it() {
    let name = Name::new("killed");
    let n = name.as_str();
    let server = Proc::serve(&name, &["--echo"]);
    let server_pid = server.pid();
    let mut client = Client::connect(n).unwrap();
    assert_eq!(&*client.call(b"hi").unwrap(), b"hi");
    // SIGKILL: the server never detaches; our client holds the name.
    drop(server);

    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(
        (&info["stale"], &info["holders"]),
        (&Value::from(false), &Value::from(1))
    );
    assert_eq!(
        (&info["server_alive"], &info["clients"]),
        (&Value::from(false), &Value::from(1)),
        "{info}"
    );
    assert_eq!(
        info["rpc"]["server"],
        serde_json::json!({"state": DEAD, "pid": server_pid, "retired": false})
    );
    let mine = &info["rpc"]["clients"][0];
    assert_eq!(
        (&mine["id"], &mine["state"], &mine["sent"], &mine["pid"]),
        (
            &Value::from(client.id().to_string()),
            &Value::from("attached"),
            &Value::from(1),
            &Value::from(std::process::id())
        ),
        "{info}"
    );
    let text = text_of(memshare().args(["info", n]));
    for line in [
        format!("server: {DEAD}, pid {server_pid}"),
        "clients: 1 alive, at most 16".to_owned(),
    ] {
        assert!(lines(&text).contains(&line), "no {line:?} in\n{text}");
    }
    let table = text_of(memshare().arg("ls"));
    assert!(row(&table, n).ends_with(&["no", "rpc", "0/1"]), "{table}");
    let entry = listed(&name).expect("listed");
    assert_eq!(
        (&entry["server_alive"], &entry["clients"]),
        (&Value::from(false), &Value::from(1))
    );
    // Nothing for gc: our client holds it.
    memshare()
        .args(["gc", n])
        .assert()
        .success()
        .stdout("nothing to collect\n");
    assert!(name.exists());

    // A new server takes the name over: info shows it, alone.
    let again = Proc::serve(&name, &["--echo"]);
    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(
        info["rpc"]["server"],
        serde_json::json!({"state": "attached", "pid": again.pid(), "retired": false})
    );
    assert_eq!(info["rpc"]["clients"], serde_json::json!([]), "{info}");
    drop(client);
}

#[test]
fn gc_reclaims_the_service_of_a_killed_server() {
    let name = Name::new("gcrpc");
    let n = name.as_str();
    let server = Proc::serve(&name, &["--echo"]);
    // SIGKILL with no client: nobody holds the service any more.
    drop(server);

    let entry = listed(&name).expect("a killed server leaves its service");
    for (field, value) in [
        ("kind", Value::from("rpc")),
        ("lifetime", Value::from("shared")),
        ("holders", Value::from(0)),
        ("stale", Value::from(true)),
        ("server_alive", Value::from(false)),
        ("clients", Value::from(0)),
    ] {
        assert_eq!(entry[field], value, "{field}: {entry}");
    }
    let table = text_of(memshare().arg("ls"));
    assert!(row(&table, n).ends_with(&["yes", "rpc", "0/0"]), "{table}");
    // info describes it without opening it (an open would remove it).
    let info = json_of(memshare().args(["info", n, "--json"]));
    assert_eq!(
        (&info["stale"], &info["rpc"]),
        (&Value::from(true), &Value::Null)
    );
    let text = text_of(memshare().args(["info", n]));
    assert!(lines(&text).contains(&"kind: rpc".to_owned()), "{text}");
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

#[test]
fn call_and_serve_options_are_checked() {
    fails(
        memshare().args(["call", "x", "--timeout", "5x"]),
        USAGE,
        &["invalid --timeout", "unknown unit"],
    );
    fails(
        memshare().args(["serve", "x", "--echo", "--count", "0"]),
        USAGE,
        &["0"],
    );
    for command in ["call", "serve"] {
        memshare()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicates::str::contains(format!(
                "Usage: memshare {command}"
            )));
    }
    // The statuses are in the help.
    memshare()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "8  call: the server declined the request",
        ));
}
