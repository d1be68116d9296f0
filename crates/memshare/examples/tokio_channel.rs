//! A tokio service that receives from another process, zero-copy and
//! without a thread of its own: the parent creates a channel, gives its
//! segment to a child (this same program, started again with the argument
//! `child`) that sends a thousand messages, one every 100 µs, and exits.
//! The parent receives them in a task with `recv_async` (each message read
//! in place in the ring), while another task of the same runtime keeps
//! ticking: the receiving task waits on the memshare notifier, not on a
//! blocked thread. When the child is gone, `recv_async` says
//! `Disconnected`.
//!
//! Needs the `async` feature (Unix only):
//!
//! ```text
//! cargo run -p memshare --features async --example tokio_channel
//! ```

#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use memshare::channel::{Receiver, Sender};
#[cfg(unix)]
use memshare::{CommandExt, Error, Result, Segment};

#[cfg(unix)]
const KEY: &str = "channel";
#[cfg(unix)]
const MESSAGES: u64 = 1000;

#[cfg(unix)]
fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    let mut rx = Receiver::create(64 * 1024)?;
    let exe = std::env::current_exe().expect("the path of this program");
    let mut child = Command::new(exe)
        .arg("child")
        .share(KEY, rx.segment())
        .spawn()
        .expect("start the child");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let (received, ticks) = runtime.block_on(async move {
        let ticking = tokio::spawn(async {
            let mut ticks = 0u64;
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            loop {
                interval.tick().await;
                ticks += 1;
                if ticks == 10 {
                    return ticks;
                }
            }
        });
        let receiving = tokio::spawn(async move {
            let mut received = 0u64;
            loop {
                match rx.recv_async().await {
                    Ok(message) => {
                        let n = u64::from_le_bytes((*message).try_into().expect("8 bytes"));
                        assert_eq!(n, received, "message {received} is not what was sent");
                        received += 1;
                    }
                    // Everything the sender committed has been received.
                    Err(Error::Disconnected { .. }) => return Ok(received),
                    Err(e) => return Err(e),
                }
            }
        });
        let ticks = ticking.await.expect("the ticking task");
        let received = receiving.await.expect("the receiving task");
        (received, ticks)
    });
    let status = child.wait().expect("wait for the child");
    assert!(status.success(), "the child failed: {status}");
    let received = received?;
    println!("parent: ticked {ticks} times meanwhile, on the same runtime");
    println!(
        "parent: received {received} messages in a tokio task with recv_async, then the sender was gone"
    );
    Ok(())
}

#[cfg(unix)]
fn child() -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let mut tx = Sender::attach(&Segment::inherited(KEY)?)?;
    for i in 0..MESSAGES {
        std::thread::sleep(Duration::from_micros(100));
        tx.send(&i.to_le_bytes())?;
    }
    println!("child:  sent {MESSAGES} messages");
    Ok(())
}

#[cfg(not(unix))]
fn main() {
    eprintln!("tokio_channel: Unix only (memshare's channels are Unix-only)");
    std::process::exit(1);
}
