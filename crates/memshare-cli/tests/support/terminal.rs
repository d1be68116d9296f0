//! Running the `memshare` binary with a pseudo-terminal as its standard
//! output, for the tests of what it does when stdout is a terminal.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Output, Stdio};

/// Runs `memshare ARGS` with a pseudo-terminal as standard output (standard
/// input empty, standard error piped); returns what it did and what reached
/// the terminal.
pub fn run_on_terminal<I, S>(args: I) -> (Output, Vec<u8>)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;

    // Close-on-exec set apart: `OpenptFlags::CLOEXEC` exists on Linux only.
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC).unwrap();
    rustix::pty::grantpt(&master).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let path = rustix::pty::ptsname(&master, Vec::new()).unwrap();
    let terminal = rustix::fs::open(
        path.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    // Read the terminal while the tool writes: its buffer is small. The
    // read ends (EIO) once the tool and this test have closed their ends.
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let output = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memshare"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(terminal))
            .stderr(Stdio::piped());
        cmd.output().expect("run memshare")
        // `cmd`, which holds this test's copy of the terminal, goes here.
    };
    (output, reader.join().unwrap())
}
