//! One thread serving many endpoints with a wait set: the parent gives
//! each of three children (this same program, started again with the
//! argument `child`) a channel of its own, and serves a request/response
//! service besides. Each child sends five messages over its channel, then
//! calls the service to say it is done, and exits. The parent waits on the
//! three receivers and the server at once, in one thread, and handles
//! whichever is ready: messages, calls, and each channel's end when its
//! child is gone.
//!
//! Unix only: a wait set sleeps on its members' futex words (Windows parks
//! endpoints on events instead).
//!
//! ```text
//! cargo run -p memshare --example wait_set
//! ```

#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use memshare::channel::{Receiver, Sender};
#[cfg(unix)]
use memshare::rpc::{Client, Server, ServerConfig};
#[cfg(unix)]
use memshare::{CommandExt, Error, Result, Segment, WaitSet};

/// Children, and messages each sends.
#[cfg(unix)]
const CHILDREN: usize = 3;
#[cfg(unix)]
const MESSAGES: usize = 5;

#[cfg(unix)]
fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("child") {
        return child(&args.next().expect("the service's name"));
    }
    let name = format!("example-{}-calls", std::process::id());
    let server = Server::create(&name, ServerConfig::new().max_clients(4))?;
    let exe = std::env::current_exe().expect("the path of this program");
    let mut set = WaitSet::new()?;
    let calls = set.add(&server)?;
    let mut receivers = Vec::new();
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        let rx = Receiver::create(4096)?;
        children.push(
            Command::new(&exe)
                .args(["child", &name])
                .share("channel", rx.segment())
                .spawn()
                .expect("start a child"),
        );
        receivers.push((set.add(&rx)?, rx));
    }

    // One thread, every endpoint: handle whichever is ready.
    let (mut received, mut answered, mut ended) = (0, 0, 0);
    while ended < CHILDREN || answered < CHILDREN {
        let ready = set.wait_timeout(Duration::from_secs(30))?;
        if ready.is_empty() {
            return Err(Error::TimedOut {
                object: "the wait set".into(),
                op: "hear from the children",
            });
        }
        for token in ready {
            if token == calls {
                if let Some(request) = server.try_recv()? {
                    request.respond(b"bye")?;
                    answered += 1;
                }
                continue;
            }
            let Some((_, rx)) = receivers.iter_mut().find(|(t, _)| *t == token) else {
                continue;
            };
            // Everything there now; the set reports it again if more comes.
            loop {
                match rx.try_recv() {
                    Ok(Some(_message)) => received += 1,
                    Ok(None) => break,
                    // The child is gone and everything it sent was received.
                    Err(Error::Disconnected { .. }) => {
                        set.remove(token);
                        ended += 1;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for child in &mut children {
        let status = child.wait().expect("wait for a child");
        assert!(status.success(), "a child failed: {status}");
    }
    assert_eq!(received, CHILDREN * MESSAGES);
    println!(
        "parent: {received} messages from {CHILDREN} children and {answered} calls, in one thread"
    );
    Ok(())
}

#[cfg(unix)]
fn child(name: &str) -> Result<()> {
    println!("child:  this is process {}", std::process::id());
    let mut tx = Sender::attach(&Segment::inherited("channel")?)?;
    for i in 0..MESSAGES {
        tx.send(format!("message {i}").as_bytes())?;
    }
    let mut client = Client::connect_timeout(name, Duration::from_secs(30))?;
    let reply = client.call(b"done")?;
    assert_eq!(&*reply, b"bye");
    Ok(())
}

#[cfg(not(unix))]
fn main() {
    eprintln!("wait_set: Unix only (a wait set sleeps on the members' futex words, which Windows has not)");
    std::process::exit(1);
}
