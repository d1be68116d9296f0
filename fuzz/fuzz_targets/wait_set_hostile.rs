//! A wait set whose members' peers are hostile (the fuzzer). The set holds
//! one member of every kind a set accepts: a channel receiver (`add`), a
//! channel sender waiting for room (`add_writable`), a publish-subscribe
//! subscriber, an rpc server and an rpc client. Between waits the fuzzer
//! writes the words each member's look and park read, through raw views
//! of the shared segments: channel states, positions, futex and waiting
//! words, the pid hints at header bytes 72/76; the subscriber's cursors
//! and state, the publishers' blocks and ring entries, the parked mask and
//! the wake words; the rpc client's ring head and entries, slot words,
//! its block, the pending mask, the server's block (state, retired,
//! instance, pid) and both sides' wake words. Honest traffic runs too.
//!
//! Every wait must return cleanly by its deadline (≤ 2 ms asked, with 3 s
//! of slack: on a loaded 2-core machine under ASan a 1 ms wait once took
//! 1.1 s, never again in 100 replays; the unit test
//! `wait_set::a_peer_scribbling_over_every_shared_word_cannot_make_a_set_crash_or_oversleep`
//! holds the tight bound), report only members of the set, each
//! once; and every member reported is acted on with its endpoint's `try_`
//! form, which must return (a message, nothing, or an error such as
//! `Corrupted` or `Disconnected`), never panic or block, and hand out only
//! messages within the endpoint's limits.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use memshare::channel::{Receiver, Sender};
use memshare::pubsub::Subscriber;
use memshare::rpc::{Client, Server};
use memshare::wait_set::Token;
use memshare::WaitSet;

mod hostile;
use hostile::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Receiver,
    Sender,
    Subscriber,
    Server,
    Client,
}

const KINDS: [Kind; 5] = [
    Kind::Receiver,
    Kind::Sender,
    Kind::Subscriber,
    Kind::Server,
    Kind::Client,
];

/// The slack on every bound: scheduling on a loaded machine, not the
/// library (a hang is a bound missed by far, and libFuzzer's -timeout).
const SLACK: Duration = Duration::from_secs(3);

/// A call that must not block: it returns within the slack.
fn quick<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < SLACK, "{what} blocked");
    out
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte().unwrap_or(0);
    let capacity = 64usize << (mode & 3); // 64..=512
    let pid = std::process::id();
    let ps_name = format!("fz-ws-ps-{pid}");
    let rpc_name = format!("fz-ws-rpc-{pid}");
    let _ = memshare::Segment::remove(&ps_name);
    let _ = memshare::Segment::remove(&rpc_name);

    // The set waits on channel A's receiver, for room on channel B's
    // sender, on the subscriber, the server and the client.
    let Some(Endpoints {
        rx_a,
        tx_a,
        view_a,
        tx_b,
        rx_b,
        view_b,
        publisher,
        subscriber,
        view_ps,
        ps_layout,
        sub_slot,
        server,
        client,
        view_rpc,
        client_slot,
    }) = Endpoints::build(capacity, mode, &ps_name, &rpc_name)
    else {
        return;
    };

    let mut set = WaitSet::new().unwrap();
    let mut members: Vec<(Token, Kind)> = Vec::new();
    // Peers that may go (the fuzzer decides), and the endpoints.
    let mut tx_a = (mode & 8 == 0).then_some(tx_a);
    let mut rx_b = Some(rx_b);
    let mut publisher = Some(publisher);
    let mut rx_a = Some(rx_a);
    let mut tx_b = Some(tx_b);
    let mut subscriber = Some(subscriber);
    let server = Some(server);
    let mut client = Some(client);
    let mut pending = Vec::new();
    let mut held = Vec::new();

    let add = |set: &mut WaitSet,
               kind: Kind,
               rx_a: &Option<Receiver>,
               tx_b: &Option<Sender>,
               subscriber: &Option<Subscriber>,
               server: &Option<Server>,
               client: &Option<Client>|
     -> Option<Token> {
        let r = match kind {
            Kind::Receiver => set.add(rx_a.as_ref()?),
            Kind::Sender => set.add_writable(tx_b.as_ref()?),
            Kind::Subscriber => set.add(subscriber.as_ref()?),
            Kind::Server => set.add(server.as_ref()?),
            Kind::Client => set.add(client.as_ref()?),
        };
        Some(r.expect("adding a live endpoint to a set with room"))
    };
    for kind in KINDS {
        let t = add(&mut set, kind, &rx_a, &tx_b, &subscriber, &server, &client).unwrap();
        members.push((t, kind));
    }

    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 128 {
            break;
        }
        let sel = input.byte().unwrap_or(0);
        match op % 8 {
            0 => poke_channel(&mut input, &view_a, sel),
            1 => poke_channel(&mut input, &view_b, sel),
            2 => poke_pubsub(&mut input, &view_ps, &ps_layout, sel, sub_slot),
            3 => poke_rpc(&mut input, &view_rpc, client_slot, sel),
            4 => {
                // Honest traffic.
                match sel % 6 {
                    0 => {
                        if let Some(tx) = tx_a.as_mut() {
                            let _ = tx.try_send(&vec![sel; usize::from(sel >> 3)]);
                        }
                    }
                    1 => {
                        if let Some(rx) = rx_b.as_mut() {
                            let _ = rx.try_recv().map(|m| m.map(|m| m.len()));
                        }
                    }
                    2 => {
                        if let Some(p) = publisher.as_mut() {
                            let _ = p.try_publish_copy(&[sel; 8]);
                        }
                    }
                    3 => {
                        if let Some(c) = client.as_mut() {
                            if pending.len() < 4 {
                                if let Ok(p) = c.send_request(&[sel; 4]) {
                                    pending.push(p);
                                }
                            }
                        }
                    }
                    4 => {
                        // Answer the requests held (the client's member
                        // then has a response).
                        for r in held.drain(..) {
                            let _ = memshare::rpc::Request::respond(r, &[sel; 3]);
                        }
                    }
                    _ => {
                        // A peer goes: detached cleanly.
                        match sel >> 3 & 3 {
                            0 => drop(tx_a.take()),
                            1 => drop(rx_b.take()),
                            _ => drop(publisher.take()),
                        }
                    }
                }
            }
            5 | 6 => {
                // Wait, then act on what is reported.
                let timeout = Duration::from_micros(u64::from(sel % 5) * 500);
                let start = Instant::now();
                let ready = if sel & 0x80 != 0 {
                    set.try_wait()
                } else {
                    set.wait_timeout(timeout)
                };
                let elapsed = start.elapsed();
                assert!(
                    elapsed < timeout + SLACK,
                    "a wait of {timeout:?} took {elapsed:?}"
                );
                let ready = match ready {
                    Ok(ready) => ready,
                    Err(e) => panic!("a wait failed: {e}"),
                };
                assert!(ready.len() <= set.len(), "more reported than members");
                let tokens: Vec<Token> = ready.collect();
                for (i, t) in tokens.iter().enumerate() {
                    assert!(set.contains(*t), "reported {t}, not a member");
                    assert!(!tokens[..i].contains(t), "reported {t} twice");
                }
                for t in tokens {
                    let kind = members
                        .iter()
                        .find(|(m, _)| *m == t)
                        .map(|&(_, k)| k)
                        .expect("a member the harness added");
                    let gone = match kind {
                        Kind::Receiver => rx_a.as_mut().map(|rx| {
                            quick("try_recv", || match rx.try_recv() {
                                Ok(Some(m)) => {
                                    assert!(m.len() <= capacity - 8, "a message beyond the ring");
                                    false
                                }
                                Ok(None) => false,
                                Err(_) => true,
                            })
                        }),
                        Kind::Sender => tx_b
                            .as_mut()
                            .map(|tx| quick("try_send", || tx.try_send(&[op; 8]).is_err())),
                        Kind::Subscriber => subscriber.as_ref().map(|s| {
                            quick("subscriber try_recv", || match s.try_recv() {
                                Ok(Some(m)) => {
                                    assert!(m.len() <= MAX_MESSAGE, "a sample beyond the limit");
                                    false
                                }
                                Ok(None) => false,
                                Err(_) => true,
                            })
                        }),
                        Kind::Server => server.as_ref().map(|s| {
                            quick("server try_recv", || match s.try_recv() {
                                Ok(Some(r)) => {
                                    assert!(
                                        r.len() as u64 <= MAX_REQUEST,
                                        "a request beyond the limit"
                                    );
                                    if op & 0x80 != 0 {
                                        let _ = r.respond(&[1; 4]);
                                    }
                                    false
                                }
                                Ok(None) => false,
                                Err(_) => true,
                            })
                        }),
                        Kind::Client => client.as_mut().map(|c| {
                            quick("client try_receive_response", || {
                                let mut failed = false;
                                for p in &pending {
                                    match c.try_receive_response(p) {
                                        Ok(Some(r)) => assert!(
                                            r.len() as u64 <= MAX_RESPONSE,
                                            "a response beyond the limit"
                                        ),
                                        Ok(None) => {}
                                        Err(_) => failed = true,
                                    }
                                }
                                failed
                            })
                        }),
                    };
                    // A member whose endpoint dropped (None) or says it is
                    // done is removed, if the fuzzer says so.
                    if gone.unwrap_or(true) && op & 0x40 != 0 {
                        assert!(set.remove(t));
                        members.retain(|(m, _)| *m != t);
                    }
                }
                // The server takes requests at other times too (held, so
                // that their answers come later).
                if let Some(s) = server.as_ref() {
                    if held.len() < 2 && op & 0x20 != 0 {
                        if let Ok(Some(r)) = s.try_recv() {
                            held.push(r);
                        }
                    }
                }
            }
            _ => {
                // Members come and go; endpoints drop under the set.
                let kind = KINDS[usize::from(sel) % KINDS.len()];
                match sel >> 3 & 3 {
                    0 => {
                        if let Some(i) = members.iter().position(|&(_, k)| k == kind) {
                            assert!(set.remove(members[i].0));
                            members.remove(i);
                        }
                    }
                    1 => {
                        if let Some(t) =
                            add(&mut set, kind, &rx_a, &tx_b, &subscriber, &server, &client)
                        {
                            members.push((t, kind));
                        }
                    }
                    2 if kind != Kind::Server => match kind {
                        Kind::Receiver => drop(rx_a.take()),
                        Kind::Sender => drop(tx_b.take()),
                        Kind::Subscriber => drop(subscriber.take()),
                        _ => {
                            pending.clear();
                            drop(client.take());
                        }
                    },
                    _ => {}
                }
            }
        }
        assert_eq!(set.len(), members.len());
    }
    drop(held);
    drop(pending);
    drop(set);
    drop((rx_a, tx_a, tx_b, rx_b, subscriber, publisher, client));
    drop((view_a, view_b, view_ps, view_rpc));
    drop(server);
    let _ = memshare::Segment::remove(&ps_name);
    let _ = memshare::Segment::remove(&rpc_name);
});
