//! Handing segments to a process that is already running: the receiver
//! (this same program, started again as `receiver SOCKET`) connects to the
//! parent's Unix socket; only then does the parent create two segments,
//! and it sends both in one message (`send_segments`, `SCM_RIGHTS`). The
//! receiver takes them with `recv_segments`, reads the request from one and
//! writes its answer into the other.
//!
//! Unix only: on Windows, `Segment::duplicate_into` gives a segment to a
//! running process.
//!
//! ```text
//! cargo run -p memshare --example send_to_running_process
//! ```

#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
#[cfg(unix)]
use std::path::Path;
#[cfg(unix)]
use std::process::Command;

#[cfg(unix)]
use memshare::{recv_segments, send_segments, Result, Segment};

#[cfg(unix)]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [role, socket] = args.as_slice() {
        if role == "receiver" {
            return receiver(socket);
        }
    }
    let socket = std::env::temp_dir().join(format!("memshare-example-{}.sock", std::process::id()));
    let listener = UnixListener::bind(&socket).expect("bind the socket");
    let exe = std::env::current_exe().expect("the path of this program");
    let mut receiver = Command::new(exe)
        .arg("receiver")
        .arg(&socket)
        .spawn()
        .expect("start the receiver");
    // Whatever happens next, the receiver is waited for.
    let sent = send_to_receiver(&listener, &socket, receiver.id());
    let status = receiver.wait().expect("wait for the receiver");
    let reply = sent?;
    assert!(status.success(), "the receiver failed: {status}");
    let mut answer = [0u8; 17];
    reply.map_readonly(..)?.read_at(0, &mut answer)?;
    println!(
        "parent: the receiver answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// Accepts the receiver's connection, then creates two segments and sends
/// them; returns the one the receiver answers in.
#[cfg(unix)]
fn send_to_receiver(listener: &UnixListener, socket: &Path, pid: u32) -> Result<Segment> {
    let (stream, _) = listener.accept().expect("accept the receiver");
    // Connected: the path has done its job.
    std::fs::remove_file(socket).expect("remove the socket's path");
    println!("parent: the receiver (process {pid}) is connected");

    // The segments exist only now, after the receiver started.
    let request = Segment::create(4096)?;
    request.map(..)?.write_at(0, b"please shout this")?;
    let reply = Segment::create(4096)?;
    println!("parent: sending two segments in one message");
    send_segments(&stream, &[("request", &request), ("reply", &reply)])?;
    Ok(reply)
}

#[cfg(unix)]
fn receiver(socket: &str) -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let stream = UnixStream::connect(socket).expect("connect to the parent");
    let segments = recv_segments(&stream)?;
    let keys: Vec<&str> = segments.iter().map(|(key, _)| key.as_str()).collect();
    println!("child:  received {} segments: {keys:?}", segments.len());
    let find = |wanted: &str| {
        segments
            .iter()
            .find(|(key, _)| key == wanted)
            .map(|(_, segment)| segment)
            .expect("the parent sends this key")
    };
    let mut request = [0u8; 17];
    find("request").map_readonly(..)?.read_at(0, &mut request)?;
    println!(
        "child:  the request says {:?}",
        String::from_utf8_lossy(&request)
    );
    find("reply")
        .map(..)?
        .write_at(0, &request.to_ascii_uppercase())?;
    Ok(())
}

#[cfg(not(unix))]
fn main() {
    eprintln!(
        "send_to_running_process: Unix only (descriptors travel over a Unix socket); \
         on Windows, Segment::duplicate_into gives a segment to a running process"
    );
    std::process::exit(1);
}
