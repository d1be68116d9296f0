//! A Rust peer for the Python package's tests and benchmark: the other
//! side of every exchange, in a process of its own.
//!
//! ```text
//! peer segment-hold NAME SIZE TEXT     create NAME with TEXT at 0, say "ready", wait for a
//!                                      line on stdin, print the text at offset 100, exit
//! peer segment-write NAME TEXT         open NAME (made elsewhere) and write TEXT at 0
//! peer inherit-parent KEY CMD...       share an anonymous segment with "from rust parent" at 0
//!                                      with CMD under KEY, wait for it, print its text at 100
//! peer inherited KEY                   take the segment a parent shared under KEY, print its
//!                                      text at 0, write "from rust child" at 100
//! peer chan-send NAME COUNT SIZE       send COUNT messages of SIZE bytes (message i: its index
//!                                      as 8 bytes little-endian, then bytes i % 251)
//! peer chan-recv NAME                  say "ready", receive until the sender is gone; print "count=N
//!                                      bytes=B", then each message of at most 64 bytes
//! peer frames NAME COUNT SIZE          the benchmark's producer: COUNT frames of SIZE bytes
//!                                      made in place (reserve, fill with i % 251, index in
//!                                      the first 8 bytes, commit); prints "sent N"
//! peer pub NAME COUNT                  publish "message I" for I < COUNT (history COUNT), say
//!                                      "ready", wait for a line on stdin, exit
//! peer sub NAME COUNT                  receive COUNT messages (waiting up to 10 s for the
//!                                      service), print each
//! peer serve NAME COUNT                serve NAME: say "ready", answer COUNT requests with
//!                                      their bytes upper-cased, exit
//! peer call NAME TEXT...               call NAME with each TEXT, print each response
//! ```
//!
//! Errors end it with status 1 and the error on stderr.

use std::io::{BufRead, Write};
use std::process::{Command, ExitCode};
use std::time::Duration;

use memshare::channel::{Receiver, Sender};
use memshare::pubsub::{Publisher, ServiceConfig, Subscriber};
use memshare::rpc::{Client, Server, ServerConfig};
use memshare::{CommandExt, Error, Segment};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a line and flushes (the tests read stdout as it comes).
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn wait_for_line() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

/// The text at `offset` of a view, up to the first zero byte (64 at most).
fn text_at(view: &memshare::View, offset: usize) -> Result<String> {
    let mut buf = [0u8; 64];
    view.read_at(offset, &mut buf)?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn num(s: Option<&String>, what: &str) -> Result<usize> {
    Ok(s.ok_or(format!("missing {what}"))?.parse()?)
}

fn arg<'a>(s: Option<&'a String>, what: &str) -> Result<&'a str> {
    Ok(s.ok_or(format!("missing {what}"))?.as_str())
}

fn run(args: &[String]) -> Result<()> {
    let mut a = args.iter();
    let cmd = arg(a.next(), "command")?;
    match cmd {
        "segment-hold" => {
            let name = arg(a.next(), "NAME")?;
            let size = num(a.next(), "SIZE")?;
            let text = arg(a.next(), "TEXT")?;
            let seg = Segment::create_named(name, size as u64)?;
            let view = seg.map(..)?;
            view.write_at(0, text.as_bytes())?;
            say("ready")?;
            wait_for_line()?;
            say(&text_at(&view, 100)?)?;
        }
        "segment-write" => {
            let name = arg(a.next(), "NAME")?;
            let text = arg(a.next(), "TEXT")?;
            Segment::open(name)?.map(..)?.write_at(0, text.as_bytes())?;
        }
        "inherit-parent" => {
            let key = arg(a.next(), "KEY")?;
            let program = arg(a.next(), "CMD")?;
            let seg = Segment::create(4096)?;
            let view = seg.map(..)?;
            view.write_at(0, b"from rust parent")?;
            let status = Command::new(program).args(a).share(key, &seg).status()?;
            if !status.success() {
                return Err(format!("the child failed: {status}").into());
            }
            say(&text_at(&view, 100)?)?;
        }
        "inherited" => {
            let key = arg(a.next(), "KEY")?;
            let seg = Segment::inherited(key)?;
            let view = seg.map(..)?;
            say(&text_at(&view, 0)?)?;
            view.write_at(100, b"from rust child")?;
        }
        "chan-send" => {
            let name = arg(a.next(), "NAME")?;
            let count = num(a.next(), "COUNT")?;
            let size = num(a.next(), "SIZE")?.max(8);
            let mut tx = Sender::open_or_create(name, (4 * size).max(1 << 16))?;
            for i in 0..count {
                let mut g = tx.reserve(size)?;
                g[..8].copy_from_slice(&(i as u64).to_le_bytes());
                g[8..].fill((i % 251) as u8);
                g.commit();
            }
        }
        "chan-recv" => {
            let name = arg(a.next(), "NAME")?;
            let mut rx = Receiver::open_or_create(name, 1 << 16)?;
            say("ready")?;
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 0;
            loop {
                match rx.recv() {
                    Ok(m) => {
                        bytes += m.len();
                        got.push(m.to_vec());
                    }
                    Err(Error::Disconnected { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            say(&format!("count={} bytes={bytes}", got.len()))?;
            for m in got.iter().filter(|m| m.len() <= 64) {
                say(&String::from_utf8_lossy(m))?;
            }
        }
        "frames" => {
            let name = arg(a.next(), "NAME")?;
            let count = num(a.next(), "COUNT")?;
            let size = num(a.next(), "SIZE")?.max(8);
            let mut tx = Sender::open_or_create(name, 4 * size)?;
            for i in 0..count {
                let mut g = tx.reserve(size)?;
                g.fill((i % 251) as u8); // the frame, made in place
                g[..8].copy_from_slice(&(i as u64).to_le_bytes());
                g.commit();
            }
            say(&format!("sent {count}"))?;
        }
        "pub" => {
            let name = arg(a.next(), "NAME")?;
            let count = num(a.next(), "COUNT")? as u32;
            let config = ServiceConfig::new().depth(count.max(1)).history(count);
            let mut p = Publisher::create(name, config)?;
            for i in 0..count {
                p.publish_copy(format!("message {i}").as_bytes())?;
            }
            say("ready")?;
            wait_for_line()?;
        }
        "sub" => {
            let name = arg(a.next(), "NAME")?;
            let count = num(a.next(), "COUNT")?;
            let s = Subscriber::open_timeout(name, Duration::from_secs(10))?;
            say("ready")?;
            for _ in 0..count {
                let m = s.recv_timeout(Duration::from_secs(10))?;
                say(&String::from_utf8_lossy(&m))?;
            }
        }
        "serve" => {
            let name = arg(a.next(), "NAME")?;
            let count = num(a.next(), "COUNT")?;
            let server = Server::create(name, ServerConfig::new())?;
            say("ready")?;
            for _ in 0..count {
                let r = server.recv_timeout(Duration::from_secs(10))?;
                let answer = r.to_ascii_uppercase();
                r.respond(&answer)?;
            }
        }
        "call" => {
            let name = arg(a.next(), "NAME")?;
            let mut c = Client::connect_timeout(name, Duration::from_secs(10))?;
            for text in a {
                let r = c.call_timeout(text.as_bytes(), Duration::from_secs(10))?;
                say(&String::from_utf8_lossy(&r))?;
            }
        }
        other => return Err(format!("unknown command {other:?}").into()),
    }
    Ok(())
}
