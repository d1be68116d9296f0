//! The demo's narration: numbered steps, `parent │` and `child  │` lines,
//! `os:` lines for the system calls, colour only on a terminal.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

use memshare::View;

use crate::fail::Failure;

/// Which process is talking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Who {
    Parent,
    Child,
}

/// Writes the narration to standard output, one line per `write`, so that
/// the lines of the parent and its peers (which share the descriptor) never
/// mix. Writing errors are ignored: a demo whose reader went away
/// (`| head`) still runs to the end and cleans up.
pub(super) struct Out {
    who: Who,
    color: bool,
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const CYAN: &str = "\x1b[36m";
const YELLOW: &str = "\x1b[33m";

impl Out {
    /// Colour if standard output is a terminal and `NO_COLOR` is not set.
    pub(super) fn new(who: Who) -> Out {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            who,
            color: std::io::stdout().is_terminal() && !no_color,
        }
    }

    fn write(&self, line: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdout.flush());
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn prefix(&self) -> String {
        match self.who {
            Who::Parent => self.paint(CYAN, "parent │"),
            Who::Child => self.paint(YELLOW, "child  │"),
        }
    }

    /// A line of the demo's own, outside the steps.
    pub(super) fn title(&self, text: &str) {
        self.write(&self.paint(BOLD, text));
    }

    /// An empty line.
    pub(super) fn blank(&self) {
        self.write("");
    }

    /// The start of step `n`.
    pub(super) fn heading(&self, n: u8, title: &str, win32: &str) {
        self.blank();
        self.write(&self.paint(BOLD, &format!("{n}. {title}")));
        self.write(&self.paint(DIM, &format!("   Win32: {win32}")));
    }

    /// What this process did or saw.
    pub(super) fn say(&self, text: impl Display) {
        self.write(&format!("{} {text}", self.prefix()));
    }

    /// The system calls behind the line before.
    pub(super) fn os(&self, text: impl Display) {
        let line = self.paint(DIM, &format!("  os: {text}"));
        self.write(&format!("{} {line}", self.prefix()));
    }

    /// An explanation of the line before.
    pub(super) fn note(&self, text: impl Display) {
        let line = self.paint(DIM, &format!("  {text}"));
        self.write(&format!("{} {line}", self.prefix()));
    }
}

/// Whether the system calls are Linux's (memfd, seals, /proc); elsewhere
/// the demo names the POSIX calls memshare falls back to, or Win32's.
pub(super) const LINUX: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Whether the system calls are Win32's (the model itself).
pub(super) const WINDOWS: bool = cfg!(windows);

/// How this process refers to `segment`: its descriptor number on Unix,
/// its handle's value on Windows.
pub(super) fn handle_number(segment: &memshare::Segment) -> i64 {
    #[cfg(unix)]
    {
        use std::os::fd::{AsFd, AsRawFd};
        i64::from(segment.as_fd().as_raw_fd())
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::{AsHandle, AsRawHandle};
        segment.as_handle().as_raw_handle() as isize as i64
    }
}

/// "descriptor 5" or "handle 0x1a4".
pub(super) fn handle_text(segment: &memshare::Segment) -> String {
    let n = handle_number(segment);
    if WINDOWS {
        format!("handle {n:#x}")
    } else {
        format!("descriptor {n}")
    }
}

/// The text stored at `offset` of `view`: up to the first NUL, at most 1 KiB.
pub(super) fn read_text(view: &View, offset: usize) -> Result<String, Failure> {
    let mut buf = vec![0u8; 1024.min(view.len().saturating_sub(offset))];
    view.read_at(offset, &mut buf)?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// What descriptor `fd` of this process refers to, as `/proc` shows it
/// (`/memfd:memshare (deleted)`, `/dev/shm/NAME`); `None` elsewhere.
pub(super) fn fd_target(fd: i64) -> Option<String> {
    if WINDOWS {
        return None;
    }
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    Some(target.display().to_string())
}

/// The descriptors open in this process, with what they refer to; `None`
/// where `/proc` is not there.
pub(super) fn open_descriptors() -> Option<Vec<(i64, String)>> {
    if WINDOWS {
        return None;
    }
    let numbers: Vec<i64> = std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing included the directory's own descriptor; it is closed
    // now, so it has no target any more and drops out here.
    Some(
        numbers
            .into_iter()
            .filter_map(|fd| Some((fd, fd_target(fd)?)))
            .collect(),
    )
}

/// Whether descriptor `fd` of this process is close-on-exec, from
/// `/proc/self/fdinfo` (`O_CLOEXEC` in its `flags:` line); `None` if that
/// cannot be read.
pub(super) fn is_cloexec(fd: i64) -> Option<bool> {
    // O_CLOEXEC as fdinfo shows it: the asm-generic value, which x86, ARM,
    // RISC-V, MIPS and PowerPC use; SPARC has its own.
    const O_CLOEXEC: u32 = 0o2000000;
    if WINDOWS || cfg!(any(target_arch = "sparc", target_arch = "sparc64")) {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    let flags = u32::from_str_radix(flags.trim(), 8).ok()?;
    Some(flags & O_CLOEXEC != 0)
}

/// A failure of an operating-system call other than memshare's.
pub(super) fn io_failure(what: impl Display, err: std::io::Error) -> Failure {
    Failure::other(format!("{what}: {err}"))
}
