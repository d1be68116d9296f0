//! Step 6: a request/response service. The parent serves a tiny
//! calculator; two peers connect by name and each makes three calls.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use memshare::rpc::{Client, Server, ServerConfig};
use memshare::Error;

use super::named::NameGuard;
use super::out::{Out, LINUX, WINDOWS};
use super::peer::{self, Peer, TIMEOUT};
use crate::fail::Failure;

/// The calls each client makes, by its index.
const CALLS: [[&str; 3]; 2] = [["2+2", "6*7", "1/0"], ["10-3", "12/4", "9*9"]];

/// How long one wait for a request lasts before the parent looks at its
/// peers again.
const SLICE: Duration = Duration::from_millis(20);

/// The step's service name: the demo's prefix and this process's id.
pub(super) fn service_name() -> String {
    format!("memshare-demo-rpc-{}", std::process::id())
}

/// The calculator: `A+B`, `A-B`, `A*B`, `A/B` on integers; `None` (the
/// request is declined) for anything else, a division by zero or an
/// overflow.
fn evaluate(request: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(request).ok()?;
    let at = text.find(['+', '-', '*', '/'])?;
    let a: i64 = text[..at].trim().parse().ok()?;
    let b: i64 = text[at + 1..].trim().parse().ok()?;
    let value = match &text[at..=at] {
        "+" => a.checked_add(b),
        "-" => a.checked_sub(b),
        "*" => a.checked_mul(b),
        _ => a.checked_div(b),
    }?;
    Some(value.to_string())
}

pub(super) fn parent(out: &Out) -> Result<(), Failure> {
    let name = service_name();
    let mut guard = NameGuard::new(&name);
    let config = ServerConfig::new()
        .max_clients(2)
        .max_in_flight(2)
        .max_request_len(64)
        .max_response_len(64);
    let server = Server::create(&name, config)?;
    guard.arm();
    out.say(format!(
        "Server::create({name:?}, 2 clients, 2 requests in flight each): a named segment of {} \
         KiB: a header page, then a region per client: its ring of requests, and a request and \
         a response buffer per request in flight",
        server.segment().len() >> 10
    ));
    out.os(if WINDOWS {
        "CreateFileMappingW(\"Local\\memshare.<name>\"), MapViewOfFile; the server's mutex \
         (CreateMutexW, taken by the lock thread) and the event it sleeps on"
    } else if LINUX {
        "open(\"/dev/shm\", O_TMPFILE), flock(LOCK_SH), fchmod, fsetxattr, ftruncate + fallocate, \
         linkat to the name; mmap, then fcntl(F_OFD_SETLK) on the server's byte"
    } else {
        "shm_open(O_CREAT|O_EXCL), flock(LOCK_SH), ftruncate; mmap, then fcntl(F_SETLK) on the \
         server's byte"
    });

    out.say(format!(
        "start two `memshare demo-peer 6 --name {name}`: each connects by name and makes three \
         calls; we answer A+B, A-B, A*B and A/B, and decline anything else"
    ));
    let mut peers = Vec::new();
    for index in 0..CALLS.len() {
        let mut cmd = peer::command(6)?;
        cmd.arg("--name")
            .arg(&name)
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::piped());
        let mut child = Peer::spawn(&mut cmd)?;
        let turn = child.take_stdin();
        peers.push((child, turn));
    }

    let total = CALLS.iter().map(|calls| calls.len()).sum::<usize>();
    let deadline = Instant::now() + TIMEOUT;
    let mut served = 0;
    while served < total {
        let request = match server.recv_timeout(SLICE) {
            Ok(request) => request,
            Err(Error::TimedOut { .. }) => {
                for (child, _) in &mut peers {
                    child.check_running()?;
                }
                if Instant::now() > deadline {
                    return Err(Failure::other(format!(
                        "the clients did not make their calls within {} s",
                        TIMEOUT.as_secs()
                    )));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        served += 1;
        let shown = String::from_utf8_lossy(&request).into_owned();
        let from = format!("from client {}", request.client());
        match evaluate(&request) {
            Some(answer) => {
                let mut loan = request.loan_response(answer.len())?;
                loan.copy_from_slice(answer.as_bytes());
                loan.send()?;
                out.say(format!(
                    "recv → {shown:?} {from}; loan_response({}), write {answer:?}, send",
                    answer.len()
                ));
            }
            None => {
                drop(request);
                out.say(format!(
                    "recv → {shown:?} {from}: no answer to that; drop the request: declined"
                ));
            }
        }
    }
    out.os(if WINDOWS {
        "no system call per call while both sides are awake: stores into shared memory; \
         SetEvent only for a side parked waiting"
    } else if LINUX {
        "no system call per call while both sides are awake: stores into shared memory; \
         futex(FUTEX_WAKE) only for a side parked waiting"
    } else {
        "no system call per call: stores into shared memory, which the other side sees when it \
         next looks"
    });
    let clients = server.clients()?;
    out.say(format!(
        "Server::clients: {} connected ({}), each in a region of its own (what `memshare info` \
         shows)",
        clients.len(),
        clients
            .iter()
            .map(|c| c.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.say("each client now tells what it did, one after the other");
    for (child, turn) in peers {
        drop(turn);
        child.wait()?;
    }

    drop(server);
    out.say(if WINDOWS {
        "drop the server: the service is marked detached; its name goes with its last holder, \
         which was the server (the clients have exited)"
    } else {
        "drop the server: the service is marked detached and its name removed"
    });
    match Client::connect(&name) {
        Err(Error::NotFound { .. }) => {
            out.say(format!(
                "Client::connect({name:?}) → NotFound: the name went with the server"
            ));
            Ok(())
        }
        Ok(_) => Err(Failure::other(format!(
            "service {name:?} outlived its server"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A line of a client's story, told when its turn comes.
enum Told {
    Say(String),
    Os(String),
}

pub(super) fn child(out: &Out, name: Option<&str>, index: Option<usize>) -> Result<(), Failure> {
    let name = name.ok_or_else(|| Failure::usage("demo-peer 6 needs --name"))?;
    let calls = index
        .and_then(|i| CALLS.get(i))
        .ok_or_else(|| Failure::usage("demo-peer 6 needs --index 0 or 1"))?;
    let mut client = Client::connect(name)?;
    let mut story = vec![
        Told::Say(format!(
            "pid {}: Client::connect({name:?}): client {} (slot {})",
            std::process::id(),
            client.id(),
            client.id().slot()
        )),
        Told::Os(format!(
            "{}; {} on a free client slot's byte; {}: the header page and our own region only, \
             the response buffers read-only",
            if WINDOWS {
                "OpenFileMappingW"
            } else {
                "shm_open(O_RDWR), flock(LOCK_SH|LOCK_NB)"
            },
            if WINDOWS {
                "a mutex (CreateMutexW, taken by the lock thread)"
            } else if LINUX {
                "fcntl(F_OFD_SETLK)"
            } else {
                "fcntl(F_SETLK)"
            },
            if WINDOWS { "MapViewOfFile" } else { "mmap" }
        )),
    ];
    for request in calls {
        let told = match client.call_timeout(request.as_bytes(), TIMEOUT) {
            Ok(response) => format!(
                "call({request:?}) → {:?}, read in place in our response buffer",
                String::from_utf8_lossy(&response)
            ),
            Err(Error::NoResponse { .. }) => {
                format!("call({request:?}) → NoResponse: the server declined it")
            }
            Err(e) => return Err(e.into()),
        };
        story.push(Told::Say(told));
    }
    // Our turn: standard input closes (also if the parent dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    for told in story {
        match told {
            Told::Say(text) => out.say(text),
            Told::Os(text) => out.os(text),
        }
    }
    drop(client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calculator() {
        let eval = |s: &str| evaluate(s.as_bytes());
        assert_eq!(eval("2+2").as_deref(), Some("4"));
        assert_eq!(eval("6*7").as_deref(), Some("42"));
        assert_eq!(eval("10-3").as_deref(), Some("7"));
        assert_eq!(eval("12/4").as_deref(), Some("3"));
        for declined in ["1/0", "2^10", "", "x+1", "+", "9223372036854775807+1"] {
            assert_eq!(eval(declined), None, "{declined}");
        }
    }
}
