//! "Two machines on one host": each machine is a mount namespace with a
//! private tmpfs over /dev/shm (so the same service name lives on both
//! sides, as on two hosts), held open by a `sleep` process; every process
//! of a machine is started in it with nsenter(1). Processes are real:
//! bridges are the `memshare-bridge` binary, publishers, subscribers,
//! servers and clients are this test binary run again in a role. Every
//! process is killed and reaped when its guard drops, and each machine's
//! /dev/shm goes with its namespace.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variable that makes this test binary play a role.
pub const ROLE: &str = "MEMSHARE_BRIDGE_TEST_ROLE";

/// How long a test waits for anything before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Why these tests cannot run here, if they cannot: they need root (to
/// mount), unshare(1) and nsenter(1).
pub fn missing_privileges() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root to mount a private tmpfs over /dev/shm per machine");
    }
    for tool in ["unshare", "nsenter"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some("needs unshare(1) and nsenter(1) (util-linux)");
        }
    }
    None
}

/// The bridge tests run one at a time: each starts several processes with
/// Zenoh sessions, and they would only fight over two cores.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory for configuration files, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "msb-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One "machine": a mount namespace with its own /dev/shm.
pub struct Machine {
    name: &'static str,
    holder: Proc,
}

impl Machine {
    pub fn new(name: &'static str) -> Machine {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs -o size=256m,mode=1777 memshare-bridge-test /dev/shm && echo mounted && exec sleep 3600");
        let holder = Proc::spawn(&format!("machine {name}"), cmd);
        holder.wait_for("mounted", PATIENCE);
        Machine { name, holder }
    }

    /// A command that runs `program` on this machine.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.pid()))
            .arg("--")
            .arg(program.as_ref());
        cmd
    }

    /// This test binary, run on this machine in `role` (with `vars`) for
    /// the test `test`.
    pub fn role(&self, test: &str, role: &str, vars: &[(&str, String)]) -> Proc {
        let mut cmd = self.command(std::env::current_exe().unwrap());
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Proc::spawn(&format!("{role} on {}", self.name), cmd)
    }

    /// The bridge, on this machine, with the configuration file `config`.
    pub fn bridge(&self, config: &Path) -> Proc {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_memshare-bridge"));
        cmd.arg("--config").arg(config).arg("--verbose");
        let p = Proc::spawn(&format!("bridge on {}", self.name), cmd);
        p.wait_for("memshare-bridge: ready", PATIENCE);
        p
    }

    /// The names in this machine's /dev/shm.
    pub fn names(&self) -> Vec<String> {
        let out = self
            .command("ls")
            .args(["-A", "/dev/shm"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ls /dev/shm on {}", self.name);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until this machine's /dev/shm is empty (the processes that
    /// held names are gone).
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let names = self.names();
            if names.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "machine {} still has {names:?} in /dev/shm",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A child process whose standard output and error are collected line by
/// line; killed and reaped when dropped.
pub struct Proc {
    what: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    news: mpsc::Receiver<()>,
}

impl Proc {
    pub fn spawn(what: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, news) = mpsc::channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let lines = Arc::clone(&lines);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                    let _ = tx.send(());
                }
            });
        }
        Proc {
            what: what.to_owned(),
            child: Some(child),
            lines,
            news,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Everything it said so far.
    pub fn said(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line it said containing `needle` (waiting for it).
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.said().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} did not say {needle:?} within {timeout:?}; it said:\n{}",
                self.what,
                self.said().join("\n")
            );
            let _ = self.news.recv_timeout(left.min(Duration::from_millis(100)));
        }
    }

    /// The text after `key` on the first line that has it (waiting).
    pub fn value(&self, key: &str) -> String {
        let line = self.wait_for(key, PATIENCE);
        let at = line.find(key).unwrap() + key.len();
        line[at..].trim().to_owned()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> Vec<String> {
        let child = self.child.as_mut().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        self.finish()
    }

    /// Waits for it to exit by itself, and asserts success.
    pub fn finish(mut self) -> Vec<String> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not finish within {PATIENCE:?}; it said:\n{}",
                    self.what,
                    self.said().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Let the reader threads take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            status.success(),
            "{} failed ({status}); it said:\n{}",
            self.what,
            self.said().join("\n")
        );
        self.said()
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP relay on 127.0.0.1 that the link between two bridges goes
/// through, so that a test can cut the link (every connection shut down,
/// new ones refused) and mend it, with both bridges running.
pub struct Relay {
    port: u16,
    state: Arc<RelayState>,
}

struct RelayState {
    up: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    links: Mutex<Vec<std::net::TcpStream>>,
}

impl Relay {
    /// A relay to `upstream` (a port on 127.0.0.1).
    pub fn new(upstream: u16) -> Relay {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(RelayState {
            up: true.into(),
            stop: false.into(),
            links: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                let Ok((inbound, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if !s.up.load(Ordering::Relaxed) {
                    continue; // dropped: the connection is refused
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                inbound.set_nonblocking(false).unwrap();
                let mut links = s.links.lock().unwrap();
                for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                links.push(inbound);
                links.push(outbound);
            }
        });
        Relay { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the link: shuts every connection down and refuses new ones.
    pub fn cut(&self) {
        self.state.up.store(false, Ordering::Relaxed);
        for link in self.state.links.lock().unwrap().drain(..) {
            let _ = link.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.state.up.store(true, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.state.stop.store(true, Ordering::Relaxed);
    }
}
