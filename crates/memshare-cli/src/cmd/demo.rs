//! `memshare demo`: the Win32 file-mapping model, narrated step by step with
//! real processes.
//!
//! The parent is `memshare demo`; every other process is this same binary
//! run again as `memshare demo-peer STEP` (a hidden subcommand). Each step
//! lives in its own module, with the parent's side and the peer's side next
//! to each other:
//!
//! | step | module | what |
//! |---|---|---|
//! | 1 | `inherit` | an anonymous segment given to one child (`CommandExt::share`) |
//! | 2 | `named` | a named segment, opened by name, gone with its last holder |
//! | 3 | `passing` | handles sent to a running process (`SCM_RIGHTS`), one read-only |
//! | 4 | `channel` | a channel between the two, and a timed ping-pong |
//! | 5 | `pubsub` | a publish-subscribe service: one publisher, two subscribers |
//! | 6 | `rpc` | a request/response service: one server, two clients |
//!
//! Turn-taking keeps the narration in order: parent and peer write to the
//! same standard output, and each side only prints while the other is
//! waiting for it (for the child's exit, a flag in the segment, a line on
//! the socket, a channel message). Peers exit on their own if the parent
//! goes away, and the parent kills and reaps any peer it leaves behind.

mod channel;
mod inherit;
mod named;
mod out;
#[cfg(unix)]
mod passing;
// Step 3 on Windows: `duplicate_into` and a value on the peer's standard
// input instead of a Unix socket.
#[cfg(windows)]
#[path = "demo/passing_windows.rs"]
mod passing;
mod peer;
mod pubsub;
mod rpc;

use std::path::PathBuf;

use crate::fail::Failure;
use out::{Out, Who};

/// Show how memshare works, step by step, with real processes
///
/// Six steps, each printing what happened and which system calls were
/// behind it: (1) an anonymous segment inherited by one child, (2) a named
/// segment opened by name and gone with its last holder, (3) handles sent
/// to a process that was already running, one of them read-only, (4) a
/// channel between two processes, with a small timed ping-pong, (5) a
/// publish-subscribe service: the parent publishes, two subscriber
/// processes each receive every message, (6) a request/response service:
/// the parent serves, two client processes each make three calls. Takes a
/// second or two and leaves nothing behind: no names, no processes, no
/// files.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Run only this step (1 to 6)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=6))]
    step: Option<u8>,
}

/// The other side of a step; run by `memshare demo`, not by hand.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// The step to play the peer of
    step: u8,
    /// Steps 2, 5 and 6: the segment's or the service's name
    #[arg(long)]
    name: Option<String>,
    /// Step 6: which of the clients this is (0 or 1)
    #[arg(long)]
    index: Option<usize>,
    /// Step 3 (Unix): the socket to listen on
    #[arg(long)]
    socket: Option<PathBuf>,
}

/// A step: its number, its title, the Win32 calls it mirrors, and the
/// parent's side.
struct Step {
    number: u8,
    title: &'static str,
    win32: &'static str,
    run: fn(&Out) -> Result<(), Failure>,
}

const STEPS: [Step; 6] = [
    Step {
        number: 1,
        title: "An anonymous segment, inherited by one child",
        win32: "CreateFileMapping(INVALID_HANDLE_VALUE, ...), MapViewOfFile, \
                an inheritable handle, CreateProcess(bInheritHandles)",
        run: inherit::parent,
    },
    Step {
        number: 2,
        title: "A named segment, opened by name, gone with its last holder",
        win32: "CreateFileMapping(..., name), OpenFileMapping(name), CloseHandle",
        run: named::parent,
    },
    Step {
        number: 3,
        title: "Handles sent to a process that was already running",
        win32: "DuplicateHandle into the other process, with FILE_MAP_READ for the read-only one",
        // (On Windows that is what runs.)
        run: passing::parent,
    },
    Step {
        number: 4,
        title: "A channel between two processes",
        win32: "a ring buffer in a file mapping, with events to wake the other side",
        run: channel::parent,
    },
    Step {
        number: 5,
        title: "A publish-subscribe service: one publisher, two subscribers",
        win32: "no such primitive: a named file mapping with a ring per publisher, \
                a lock per endpoint and events to wake the subscribers",
        run: pubsub::parent,
    },
    Step {
        number: 6,
        title: "A request/response service: one server, two clients",
        win32: "no such primitive: a named file mapping with a region per client, a lock per \
                endpoint and events to wake each side",
        run: rpc::parent,
    },
];

pub fn run(args: Args) -> Result<(), Failure> {
    let out = Out::new(Who::Parent);
    out.title(&format!(
        "memshare demo: shared memory the Win32 way, with real processes. \
         This is the parent (pid {}); its peers run `memshare demo-peer`.",
        std::process::id()
    ));
    for step in STEPS
        .iter()
        .filter(|s| args.step.is_none_or(|n| n == s.number))
    {
        out.heading(step.number, step.title, step.win32);
        (step.run)(&out).map_err(|failure| Failure {
            status: failure.status,
            message: format!("step {} ({}): {}", step.number, step.title, failure.message),
        })?;
    }
    nothing_left()?;
    out.blank();
    out.title(match args.step {
        None => "Done: every step worked; no segment name, process or file of the demo is left.",
        Some(_) => "Done: no segment name, process or file of the demo is left.",
    });
    Ok(())
}

/// Checks that the demo's names are not left in the shared-memory file
/// system (every step cleans up after itself; this is the proof).
fn nothing_left() -> Result<(), Failure> {
    for name in [
        named::segment_name(),
        pubsub::service_name(),
        rpc::service_name(),
    ] {
        #[cfg(unix)]
        let left = match memshare::inspect::named_info(&name) {
            // Where named segments cannot be inspected, steps 2, 5 and 6's own
            // checks stand.
            Err(memshare::Error::NotFound { .. } | memshare::Error::Unsupported { .. }) => false,
            Ok(_) => true,
            Err(e) => return Err(e.into()),
        };
        // Windows: a name is there while something holds it, so opening it
        // is the test (and the open goes with this handle).
        #[cfg(not(unix))]
        let left = match memshare::Segment::open_readonly(&name) {
            Err(memshare::Error::NotFound { .. }) => false,
            Ok(_) => true,
            Err(e) => return Err(e.into()),
        };
        if left {
            return Err(Failure::other(format!(
                "the demo left segment {name:?} behind"
            )));
        }
    }
    Ok(())
}

/// `memshare demo-peer STEP`: the other process of a step.
pub fn run_peer(args: PeerArgs) -> Result<(), Failure> {
    let out = Out::new(Who::Child);
    match args.step {
        1 => inherit::child(&out),
        2 => named::child(&out, args.name.as_deref()),
        3 => passing::child(&out, args.socket.as_deref()),
        4 => channel::child(&out),
        5 => pubsub::child(&out, args.name.as_deref()),
        6 => rpc::child(&out, args.name.as_deref(), args.index),
        n => Err(Failure::usage(format!("demo-peer: no step {n}"))),
    }
}
