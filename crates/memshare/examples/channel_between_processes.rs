//! A channel between two processes: the parent creates the sending end,
//! gives the channel's segment to a child (this same program, started again
//! with the argument `child`), which attaches the receiving end. The parent
//! sends a thousand messages and drops its end; the child receives every
//! one, in order, and then learns that the sender is gone.
//!
//! ```text
//! cargo run -p memshare --example channel_between_processes
//! ```

use std::process::Command;

use memshare::channel::{Receiver, Sender};
use memshare::{CommandExt, Error, Result, Segment};

/// The key both sides agree on.
const KEY: &str = "channel";
/// How many messages the parent sends.
const MESSAGES: usize = 1000;

fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    // A 64 KiB ring: the sender waits whenever the child falls behind.
    let mut tx = Sender::create(64 * 1024)?;
    let exe = std::env::current_exe().expect("the path of this program");
    let mut child = Command::new(exe)
        .arg("child")
        .share(KEY, tx.segment())
        .spawn()
        .expect("start the child");

    // Whatever happens next, the child is waited for.
    let sent = (0..MESSAGES).try_for_each(|i| tx.send(format!("message {i}").as_bytes()));
    // Dropping the sender tells the child that nothing more will come.
    drop(tx);
    let status = child.wait().expect("wait for the child");
    sent?;
    assert!(status.success(), "the child failed: {status}");
    println!("parent: sent {MESSAGES} messages and dropped the sender; the child is done");
    Ok(())
}

fn child() -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let segment = Segment::inherited(KEY)?;
    let mut rx = Receiver::attach(&segment)?;
    let mut received = 0;
    loop {
        match rx.recv() {
            Ok(message) => {
                let expected = format!("message {received}");
                assert_eq!(
                    &*message,
                    expected.as_bytes(),
                    "message {received} is not what was sent"
                );
                received += 1;
            }
            // Everything the sender committed has been received.
            Err(Error::Disconnected { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    println!("child:  received {received} messages in order, then the sender was gone");
    Ok(())
}
