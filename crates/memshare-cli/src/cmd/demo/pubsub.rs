//! Step 5: a publish-subscribe service. The parent publishes; two peers
//! subscribe by name and each receives every message, in place.

use std::io::Read;
use std::process::Stdio;
use std::time::Instant;

use memshare::channel::EndpointState;
use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
use memshare::Error;

use super::named::NameGuard;
use super::out::{Out, LINUX, WINDOWS};
use super::peer::{self, Peer, POLL, TIMEOUT};
use crate::fail::Failure;

/// The messages the parent publishes.
const MESSAGES: [&str; 3] = ["temperature 21.5", "temperature 21.7", "temperature 22.0"];
/// How many messages each subscriber can have waiting.
const DEPTH: u32 = 4;

/// The step's service name: the demo's prefix and this process's id.
pub(super) fn service_name() -> String {
    format!("memshare-demo-ps-{}", std::process::id())
}

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    let name = service_name();
    let mut guard = NameGuard::new(&name);
    let config = ServiceConfig::new().max_subscribers(2).depth(DEPTH);
    let mut publisher = Publisher::create(&name, config)?;
    guard.arm();
    out.say(format!(
        "Publisher::create({name:?}, 2 subscribers, depth {DEPTH}): a named segment of {} KiB: \
         a header, a block per subscriber, and our region: a ring of entries and a pool of \
         buffers",
        publisher.segment().len() >> 10
    ));
    out.os(if WINDOWS {
        "CreateFileMappingW(\"Local\\memshare.<name>\"), MapViewOfFile; our publisher slot's \
         mutex (CreateMutexW, taken by the lock thread) and the event we sleep on when the ring \
         is full"
    } else if LINUX {
        "open(\"/dev/shm\", O_TMPFILE), flock(LOCK_SH), fchmod, fsetxattr, ftruncate + fallocate \
         (every page now, not a SIGBUS later), linkat to the name; mmap, then fcntl(F_OFD_SETLK) \
         on our publisher slot's byte"
    } else {
        "shm_open(O_CREAT|O_EXCL), flock(LOCK_SH), ftruncate; mmap, then fcntl(F_SETLK) on our \
         publisher slot's byte"
    });

    out.say(format!(
        "start two `memshare demo-peer 5 --name {name}`: each subscribes by name"
    ));
    let mut peers = Vec::new();
    for _ in 0..2 {
        let mut cmd = peer::command(5)?;
        cmd.arg("--name").arg(&name).stdin(Stdio::piped());
        let mut child = Peer::spawn(&mut cmd)?;
        let turn = child.take_stdin();
        peers.push((child, turn));
    }
    // A subscriber receives what is published after it attached: wait for
    // both (the state `memshare info` reads).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let state = memshare::pubsub::inspect(publisher.segment())?;
        let attached = state
            .subscribers
            .iter()
            .filter(|s| s.state == EndpointState::Attached)
            .count();
        if attached == 2 {
            break;
        }
        for (child, _) in &mut peers {
            child.check_running()?;
        }
        if Instant::now() > deadline {
            return Err(Failure::other(format!(
                "the subscribers did not attach within {} s",
                TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
    out.say("pubsub::inspect: both subscribers attached (what `memshare info` shows)");

    for message in MESSAGES {
        let mut loan = publisher.loan(message.len())?;
        loan.copy_from_slice(message.as_bytes());
        let sequence = loan.sequence();
        loan.publish();
        out.say(format!(
            "loan({}), write {message:?} into the buffer, publish: sequence {sequence}",
            message.len()
        ));
    }
    out.os(if WINDOWS {
        "no system call to publish: stores into shared memory; SetEvent only for a subscriber \
         parked waiting, its own event"
    } else if LINUX {
        "no system call to publish: stores into shared memory; futex(FUTEX_WAKE) only for a \
         subscriber parked waiting"
    } else {
        "no system call to publish: stores into shared memory, which a subscriber sees when it \
         next looks"
    });
    drop(publisher);
    out.say("drop the publisher: the subscribers receive what is left, then Disconnected");
    out.say("each subscriber now tells what it did, one after the other");
    for (child, turn) in peers {
        drop(turn);
        child.wait()?;
    }

    match Subscriber::open(&name) {
        Err(Error::NotFound { .. }) => {
            out.say(format!(
                "Subscriber::open({name:?}) → NotFound: the service went with its last holder"
            ));
            Ok(())
        }
        Ok(_) => Err(Failure::other(format!(
            "service {name:?} outlived every holder"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A line of a subscriber's story, told when its turn comes.
enum Told {
    Say(String),
    Os(String),
}

pub(super) fn child(out: &Out, name: Option<&str>) -> Result<(), Failure> {
    let name = name.ok_or_else(|| Failure::usage("demo-peer 5 needs --name"))?;
    let subscriber = Subscriber::open(name)?;
    let mut story = vec![
        Told::Say(format!(
            "pid {}: Subscriber::open({name:?}): subscriber slot {}",
            std::process::id(),
            subscriber.slot()
        )),
        Told::Os(if WINDOWS {
            "OpenFileMappingW; MapViewOfFile: the subscribers' blocks writable, the publishers' \
             regions read-only; our slot's mutex; waiting: spin, then WaitForSingleObject on our \
             own event (Local\\memshare-wake.<section>.136.<slot>)"
                .to_owned()
        } else {
            format!(
            "shm_open(O_RDWR), flock(LOCK_SH|LOCK_NB); mmap: the subscribers' blocks writable, \
             the publishers' regions read-only; {}",
            if LINUX {
                "fcntl(F_OFD_SETLK) on our slot's byte; waiting: spin, then futex(FUTEX_WAIT) on \
                 the header's wake word"
            } else {
                "fcntl(F_SETLK) on our slot's byte; waiting: spin, then short sleeps (no shared \
                 futex here)"
            }
        )
        }),
    ];
    loop {
        match subscriber.recv_timeout(TIMEOUT) {
            Ok(sample) => story.push(Told::Say(format!(
                "recv → {:?}, sequence {} from publisher {}, read in place",
                String::from_utf8_lossy(&sample),
                sample.sequence(),
                sample.publisher()
            ))),
            Err(Error::Disconnected { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    story.push(Told::Say(format!(
        "recv → Disconnected: no publisher left; {} received, {} missed; exit",
        subscriber.received(),
        subscriber.missed()
    )));
    // Our turn: standard input closes (also if the parent dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    for told in story {
        match told {
            Told::Say(text) => out.say(text),
            Told::Os(text) => out.os(text),
        }
    }
    Ok(())
}
