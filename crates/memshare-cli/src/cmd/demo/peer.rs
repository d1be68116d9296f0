//! The demo's other processes: this very binary, run again as
//! `memshare demo-peer STEP`, and reaped whatever happens.

use std::io::Read;
#[cfg(unix)]
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::out::io_failure;
use crate::fail::Failure;

/// How long the parent waits for a peer at any one point before it gives
/// up, kills it and fails. Every step takes milliseconds; this is for a
/// machine under heavy load.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiting parent looks again.
pub(super) const POLL: Duration = Duration::from_millis(1);

/// `memshare demo-peer STEP`: standard output shared with the parent (the
/// narration), standard input empty, standard error captured for the
/// parent's error message.
pub(super) fn command(step: u8) -> Result<Command, Failure> {
    let exe = std::env::current_exe().map_err(|e| io_failure("finding this program's path", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo-peer")
        .arg(step.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// A running peer. Dropped before it was waited for (the parent failed),
/// it is killed and reaped: the demo leaves no process behind.
pub(super) struct Peer {
    child: Child,
    stderr: Option<ChildStderr>,
    reaped: bool,
}

impl Peer {
    pub(super) fn spawn(cmd: &mut Command) -> Result<Peer, Failure> {
        let mut child = cmd
            .spawn()
            .map_err(|e| io_failure("starting `memshare demo-peer`", e))?;
        let stderr = child.stderr.take();
        Ok(Peer {
            child,
            stderr,
            reaped: false,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peer's process (Windows: a handle to give segments to).
    #[cfg(windows)]
    pub(super) fn process(&self) -> &Child {
        &self.child
    }

    /// The peer's standard input, if it was piped; dropping it tells the
    /// peer to go on.
    pub(super) fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Fails with the peer's own error if it has exited: called while the
    /// parent waits for something the peer should do.
    pub(super) fn check_running(&mut self) -> Result<(), Failure> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.reaped = true;
                Err(self.failure(status, "exited early"))
            }
            Err(e) => Err(io_failure("waiting for the peer", e)),
        }
    }

    /// Waits (at most [`TIMEOUT`]) for the peer to exit, and fails with its
    /// own error if it did not succeed.
    pub(super) fn wait(mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    return if status.success() {
                        Ok(())
                    } else {
                        Err(self.failure(status, "failed"))
                    };
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    return Err(Failure::other(format!(
                        "the peer (pid {}) did not finish within {} s: killed",
                        self.pid(),
                        TIMEOUT.as_secs()
                    )))
                }
                Err(e) => return Err(io_failure("waiting for the peer", e)),
            }
        }
    }

    /// `err`, unless the peer failed: then the peer's own error, which is
    /// the real reason why talking to it went wrong.
    pub(super) fn explain(&mut self, err: Failure) -> Failure {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    self.reaped = true;
                    return self.failure(status, "failed");
                }
                Ok(None) => std::thread::sleep(POLL),
                _ => break,
            }
        }
        err
    }

    /// The failure of a peer that exited with `status`: its own error
    /// line, without the `memshare: error:` it printed it with.
    fn failure(&mut self, status: ExitStatus, what: &str) -> Failure {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        let reason: Vec<&str> = text
            .lines()
            .map(|l| l.strip_prefix("memshare: error: ").unwrap_or(l).trim())
            .filter(|l| !l.is_empty())
            .collect();
        let pid = self.pid();
        Failure::other(if reason.is_empty() {
            format!("the peer (pid {pid}) {what}: {status}")
        } else {
            format!("the peer (pid {pid}) {what}: {}", reason.join("; "))
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private directory (mode 0700) for the demo's socket, removed with
/// everything in it when dropped.
#[cfg(unix)]
pub(super) struct TempDir(PathBuf);

#[cfg(unix)]
impl TempDir {
    pub(super) fn new() -> Result<TempDir, Failure> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("memshare-demo-{}-{nanos:x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| io_failure(format!("creating {}", path.display()), e))?;
        Ok(TempDir(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(unix)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
