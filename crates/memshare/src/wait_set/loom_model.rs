//! The loom model of the wait set's no-lost-wake-up argument, on its own
//! code.
//!
//! `watch.rs` (each member's flag or bit, the readiness of a channel
//! receiver and of a subscriber, and the park on all the members' words at
//! once) is written against `crate::primitive`: loom's atomics, and a
//! modelled kernel whose `wait_many` is `futex_waitv` (sleep only if every
//! word still holds its snapshot, checked under the lock the wakes take;
//! woken only by a wake of one of its words; no timeout, so a lost wake-up
//! is a deadlock, which loom reports). The wakers are the protocols' own
//! code, unchanged: a channel sender (`ring.rs`: commit, publish, its
//! fence and its look at the receiver's flag), a channel receiver freeing
//! room for a sender member (`add_writable`: release, the same fence and
//! look at the sender's flag), a publisher (`pubsub/ring.rs`: publish, its
//! fence, the swap of the parked bits), an rpc server answering a client
//! member (`rpc/protocol.rs`: `finish`) and an rpc client calling a server
//! member (`push` and `publish`).
//!
//! The set's thread does what `WaitSet::wait_until` does without the
//! liveness questions and deadlines (left out: they only shorten a park):
//! look at every member, park on all of them while none is ready, and on a
//! report receive from the member with the endpoints' own code, which must
//! then find a message (the report is never "nothing").
//!
//! Run it with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p memshare --lib wait_set::loom_model`.

use std::time::Duration;

use loom::sync::Arc;

use super::watch::{levels, park, prepare, ChannelWatch, SubscriberWatch, Watch};
use crate::channel::layout::Side;
use crate::channel::loom_model::{self as chan, Channel, CAPACITY};
use crate::channel::ring::{Consumer, Producer};
use crate::primitive::{check, ManyWaiter, Ordering, Parkers};
use crate::pubsub::layout::STATE_ATTACHED;
use crate::pubsub::loom_model::{self as ps, Model};
use crate::pubsub::ring::SubCore;

/// A channel sender sends `per_waker` messages and a publisher publishes
/// as many, each in a thread of its own; this thread waits on a set of the
/// channel's receiver and a subscriber of the service, and receives each
/// message where the set reports one.
fn run(per_waker: usize) {
    let ch = Arc::new(Channel::new());
    let service = Arc::new(Model::new(2, 1, false));
    // The publisher is attached before the subscriber waits (a service
    // with none is "disconnected", reported at once).
    service.block.state.store(STATE_ATTACHED, Ordering::Relaxed);
    let sender = {
        let ch = ch.clone();
        loom::thread::spawn(move || {
            let mut core = Producer::default();
            for i in 0..per_waker {
                chan::send(&ch, &mut core, &chan::message(i, 3));
            }
        })
    };
    let publisher = {
        let service = service.clone();
        loom::thread::spawn(move || ps::publish(&service, per_waker as u64))
    };

    let views = [service.publisher()];
    let pubs = &views[..];
    let sub = service.subscriber();
    let mut receiver = Consumer::default();
    let mut subscriber = SubCore::new(service.limits, pubs);
    let subscriber_parkers = Parkers::default();
    let channel_member = ChannelWatch {
        header: &ch.header,
        side: Side::Receiver,
        parkers: &ch.recv_parkers,
        capacity: CAPACITY,
        frame: 0,
    };
    let subscriber_member = SubscriberWatch {
        wake: &service.wake,
        bit: 0,
        parkers: &subscriber_parkers,
        cursors: sub.cursors,
        publishers: pubs,
        ring_len: service.limits.ring_len,
    };
    let members: [&dyn Watch; 2] = [&channel_member, &subscriber_member];
    let (mut received, mut sampled) = (0, 0);
    // One waiter for every park: the waits it queues stay queued from one
    // park to the next, as the set's do.
    let mut waiter = ManyWaiter::default();
    while received < per_waker || sampled < per_waker {
        let ready = levels(&members);
        if ready == 0 {
            park(&members, Duration::MAX, &mut waiter, || true);
            continue;
        }
        if ready & 1 != 0 {
            let frame = receiver
                .poll(&ch.header, &ch.ring)
                .expect("an honest sender")
                .expect("the set reported the receiver: a message is there");
            let msg = ch.ring.read_bytes(frame.offset, frame.len);
            assert_eq!(msg, chan::message(received, 3), "message {received}");
            receiver.release(&ch.header, frame.next);
            received += 1;
        }
        if ready & 2 != 0 {
            let got = subscriber
                .poll(&sub, pubs)
                .expect("an honest publisher")
                .expect("the set reported the subscriber: a message is there");
            let bytes = service.buffers.read(got.buffer, got.len);
            assert_eq!(bytes, ps::message(got.seq), "sample {}", got.seq);
            assert_eq!(got.seq, sampled as u64);
            subscriber.release(&sub, got.hold);
            subscriber.wake_publishers(pubs);
            sampled += 1;
        }
    }
    sender.join().unwrap();
    publisher.join().unwrap();
    // The set took its flags back.
    assert_eq!(
        ch.header
            .park(Side::Receiver)
            .waiting
            .load(Ordering::Relaxed),
        0
    );
    assert_eq!(service.wake.parked.load(Ordering::Relaxed), 0);
}

/// One message from each waker: whichever comes first, and whether it
/// comes before the set looks, while it arms, or once it sleeps, the set
/// wakes and reports it, then the other.
#[test]
fn a_set_of_a_receiver_and_a_subscriber_is_woken_by_either() {
    check(3, || run(1));
}

/// Two messages from each: the set parks again after each report, with
/// the other member's flag set again each time.
#[test]
fn a_set_parked_again_after_each_report_is_woken_every_time() {
    check(2, || run(2));
}

/// A channel's receiver, as a member.
fn member(ch: &Channel) -> ChannelWatch<'_> {
    ChannelWatch {
        header: &ch.header,
        side: Side::Receiver,
        parkers: &ch.recv_parkers,
        capacity: CAPACITY,
        frame: 0,
    }
}

/// A set parked on a receiver while the receiver's own blocking `recv`
/// (another thread) is parked on it too: they share the receiver's one
/// flag, and the sender's wake must reach both. The set also holds a
/// second channel's receiver; it stops looking at the first once it is
/// reported (someone else receives there) and returns once the second's
/// message came. Whether the set leaves before the first message, while
/// the receiver is asleep, or after, the receiver is woken and gets it.
/// (Planted: a set's leave that lowers the flag while the receiver is
/// parked, or a sender's wake that wakes one sleeper, deadlock here.)
#[test]
fn a_set_and_the_receivers_own_recv_parked_at_once_are_both_woken() {
    check(2, || {
        let shared = Arc::new(Channel::new());
        let other = Arc::new(Channel::new());
        let senders: Vec<_> = [shared.clone(), other.clone()]
            .into_iter()
            .map(|ch| {
                loom::thread::spawn(move || {
                    chan::send(&ch, &mut Producer::default(), &chan::message(0, 3));
                })
            })
            .collect();
        let receiver = {
            let ch = shared.clone();
            loom::thread::spawn(move || {
                let msg = chan::recv(&ch, &mut Consumer::default());
                assert_eq!(msg, chan::message(0, 3));
            })
        };
        let (shared_member, other_member) = (member(&shared), member(&other));
        let mut members: Vec<&dyn Watch> = vec![&other_member, &shared_member];
        let mut on_other = Consumer::default();
        let mut waiter = ManyWaiter::default();
        loop {
            let ready = levels(&members);
            if ready & 1 != 0 {
                let frame = on_other
                    .poll(&other.header, &other.ring)
                    .expect("an honest sender")
                    .expect("the set reported the receiver: a message is there");
                on_other.release(&other.header, frame.next);
                break;
            }
            if ready & 2 != 0 {
                // As `WaitSet::remove`.
                waiter.forget();
                members.truncate(1);
                continue;
            }
            park(&members, Duration::MAX, &mut waiter, || true);
        }
        for t in senders {
            t.join().unwrap();
        }
        receiver.join().unwrap();
        // Both parkers left: the flag is down.
        assert_eq!(
            shared
                .header
                .park(Side::Receiver)
                .waiting
                .load(Ordering::Relaxed),
            0
        );
    });
}

/// A sender as a member (`WaitSet::add_writable`): the set's thread fills
/// the ring with one message, then waits for room for the next; a
/// receiver thread takes the first with the channel's own code, whose
/// release (its fence and its look at the sender's flag) must wake the
/// set, which then finds the room and sends the second. (Planted: a
/// sender member that arms no flag deadlocks here.)
#[test]
fn a_set_waiting_for_room_is_woken_by_the_receivers_release() {
    check(3, || {
        let ch = Arc::new(Channel::new());
        let first = chan::message(0, crate::channel::layout::max_message(CAPACITY) as usize);
        let second = chan::message(1, 3);
        let mut producer = Producer::default();
        // The whole ring: the next frame has no room until it is taken.
        chan::send(&ch, &mut producer, &first);
        let receiver = {
            let ch = ch.clone();
            let (first, second) = (first.clone(), second.clone());
            loom::thread::spawn(move || {
                let mut consumer = Consumer::default();
                assert_eq!(chan::recv(&ch, &mut consumer), first);
                assert_eq!(chan::recv(&ch, &mut consumer), second);
            })
        };
        let frame = crate::channel::layout::frame_len(second.len() as u64).unwrap();
        let member = ChannelWatch {
            header: &ch.header,
            side: Side::Sender,
            parkers: &ch.send_parkers,
            capacity: CAPACITY,
            frame,
        };
        let members = [member];
        let mut waiter = ManyWaiter::default();
        while levels(&members) == 0 {
            park(&members, Duration::MAX, &mut waiter, || true);
        }
        let slot = producer
            .poll_space(&ch.header, &ch.ring, frame)
            .expect("an honest receiver")
            .expect("the set reported room: the frame fits");
        ch.ring
            .write_bytes(slot.0 + crate::channel::layout::FRAME_HEADER, &second);
        producer.commit(&ch.header, &ch.ring, slot, second.len() as u32);
        receiver.join().unwrap();
        // The set took its flag back.
        assert_eq!(
            ch.header.park(Side::Sender).waiting.load(Ordering::Relaxed),
            0
        );
    });
}

/// The async notifier's registration handshake (`aio/notifier.rs`), with
/// the wait set's own `prepare` and the channel's own sender: a task
/// finds the ring empty and registers (under the worker's lock; it wakes
/// the worker through its control word if the worker sleeps, as
/// `Registration::listen` does); the worker runs its rounds as `run` does
/// (control word snapshot under the lock, `prepare` over the registered
/// members, then a sleep on their words and the control word, unlocked;
/// flags taken back under the lock); the sender sends. The task's park is
/// a futex word the worker bumps to wake it (a waker), snapshotted before
/// each look, as an executor's wake before the next poll; the task polls
/// once more right after it registers (as an executor may), so it may
/// take a message and stop listening while the worker sleeps armed on the
/// channel's word, which only the control word then ends (planted, the
/// control word out of that sleep: loom reports the deadlock). A lost wake-up
/// anywhere is a deadlock, which loom reports. (The worker's loop is a
/// transcription of `run`, its sleep a `ManyWaiter` kept from round to
/// round as there, whose waits stay queued; `prepare`, the waiter and the
/// ring are the real code.)
mod notifier {
    use super::*;
    use crate::primitive::{FutexWord, ManyWaiter};

    #[derive(Default)]
    struct State {
        listening: bool,
        sleeping: bool,
        armed: bool,
        stop: bool,
    }

    struct Shared {
        ch: Channel,
        control: FutexWord,
        task: FutexWord,
        state: loom::sync::Mutex<State>,
    }

    fn worker(s: &Shared) {
        let mut waiter = ManyWaiter::default();
        loop {
            let mut st = s.state.lock().unwrap();
            if st.stop {
                return;
            }
            let control = s.control.load();
            if !st.listening {
                st.sleeping = true;
                drop(st);
                waiter.wait(&[(&s.control, control)], Duration::MAX);
                s.state.lock().unwrap().sleeping = false;
                continue;
            }
            let m = member(&s.ch);
            let members = [m];
            let (ready, mut words) = prepare(&members);
            st.armed = true;
            if ready != 0 {
                st.listening = false;
                m.disarm();
                st.armed = false;
                drop(st);
                s.task.bump_and_wake(); // the waker
                continue;
            }
            st.sleeping = true;
            drop(st);
            words.push((&s.control, control));
            waiter.wait(&words, Duration::MAX);
            let mut st = s.state.lock().unwrap();
            st.sleeping = false;
            if st.armed {
                m.disarm();
                st.armed = false;
            }
        }
    }

    fn run(messages: usize) {
        let s = Arc::new(Shared {
            ch: Channel::new(),
            control: FutexWord::new(),
            task: FutexWord::new(),
            state: loom::sync::Mutex::new(State::default()),
        });
        let notifier = {
            let s = s.clone();
            loom::thread::spawn(move || worker(&s))
        };
        let sender = {
            let s = s.clone();
            loom::thread::spawn(move || {
                let mut core = Producer::default();
                for i in 0..messages {
                    chan::send(&s.ch, &mut core, &chan::message(i, 3));
                }
            })
        };
        // The task: recv_async's polls.
        let mut receiver = Consumer::default();
        for i in 0..messages {
            let mut registered = false;
            loop {
                let seq = s.task.load();
                if let Some(frame) = receiver.poll(&s.ch.header, &s.ch.ring).expect("honest") {
                    let msg = s.ch.ring.read_bytes(frame.offset, frame.len);
                    assert_eq!(msg, chan::message(i, 3));
                    receiver.release(&s.ch.header, frame.next);
                    break;
                }
                if registered {
                    s.task.wait(seq, Duration::MAX); // Pending, until woken
                    continue;
                }
                // Register: Registration::listen.
                let mut st = s.state.lock().unwrap();
                let was = st.listening;
                st.listening = true;
                let sleeping = st.sleeping;
                drop(st);
                if !was && sleeping {
                    s.control.bump_and_wake();
                }
                // Polled once more before any wake (as an executor may):
                // the message may be taken with the registration still
                // listening, and the worker asleep on its word when the
                // task stops listening below.
                registered = true;
            }
        }
        sender.join().unwrap();
        // Done: Registration::forget, then stop the worker.
        let mut st = s.state.lock().unwrap();
        st.listening = false;
        st.stop = true;
        if st.armed {
            member(&s.ch).disarm();
            st.armed = false;
        }
        drop(st);
        s.control.bump_and_wake();
        notifier.join().unwrap();
        assert_eq!(
            s.ch.header
                .park(Side::Receiver)
                .waiting
                .load(Ordering::Relaxed),
            0
        );
    }

    /// One message: whether it comes before the task looks, between its
    /// look and its registration, while the worker arms, or once it
    /// sleeps, the task is woken and receives it.
    #[test]
    fn a_task_registered_with_the_notifier_is_woken_by_the_sender() {
        check(3, || run(1));
    }

    /// Two messages: the task registers again after the first, with the
    /// worker asleep on its control word or about to be.
    #[test]
    fn a_task_registered_again_is_woken_again() {
        check(2, || run(2));
    }
}

/// Request/response endpoints as members, with the protocol's own wakers:
/// the set's thread is the client of one service (its request answered by
/// a server thread running `take` and `finish`, whose fence and look at
/// the client's flag must wake the set) and the server of another (a
/// client thread's request pushed and published by `push` and `publish`,
/// whose fence and look at the server's flag must wake the set; the set
/// then takes and answers it, and the client thread, parked on its own
/// words, must be woken). The members' flags, words and readiness are the
/// wait set's own (`RpcWatch`, `answered`, `pushed`); left out are the
/// liveness questions (they only shorten a park) and the state words a
/// server or client writes when it comes or goes.
mod rpc_members {
    use super::*;
    use crate::rpc::loom_model::{self as rm, Model as Service};
    use crate::rpc::protocol::{self, Answer, Ring, Take};
    use crate::wait_set::watch::{answered, pushed, RpcWatch};

    /// An rpc member of the set: its endpoint's flag and word, and its
    /// readiness (`answered` for a client, `pushed` for a server).
    struct Member<'a, F: Fn() -> bool> {
        watch: RpcWatch<'a>,
        ready: F,
    }

    impl<F: Fn() -> bool> Watch for Member<'_, F> {
        fn word(&self) -> &crate::primitive::FutexWord {
            self.watch.word()
        }
        fn arm(&self) {
            self.watch.arm()
        }
        fn disarm(&self) {
            self.watch.disarm()
        }
        fn ready(&self) -> bool {
            (self.ready)()
        }
    }

    fn run() {
        // `called`: the set calls its server; `serving`: the set serves
        // its client.
        let called = Service::new(1);
        let serving = Service::new(1);
        let server = {
            let called = called.clone();
            loom::thread::spawn(move || rm::server(&called, rm::case(1)))
        };
        let client = {
            let serving = serving.clone();
            loom::thread::spawn(move || rm::client(&serving, rm::case(1)))
        };
        let (as_client, as_server) = (Parkers::default(), Parkers::default());
        // The set's request, published before it waits.
        called.requests[0].with_mut(|p| {
            // SAFETY: the slot is the set's until it is pushed.
            unsafe { *p = 10 }
        });
        let head = protocol::push(called.region(), 0, 0, 100, 4);
        protocol::publish(called.region(), called.doorbell(), head);

        let mut ring = Ring::default();
        let (mut got_answer, mut served) = (false, false);
        let mut waiter = ManyWaiter::default();
        while !(got_answer && served) {
            // The client waits for its one answer until it has it; the
            // server's one client has pushed past what it took.
            let (awaiting, tail) = (u64::from(!got_answer), ring.tail);
            let client_member = Member {
                watch: RpcWatch {
                    wake: &called.client_wake,
                    parkers: &as_client,
                },
                ready: || answered(&called.slots, awaiting),
            };
            let server_member = Member {
                watch: RpcWatch {
                    wake: &serving.server_wake,
                    parkers: &as_server,
                },
                ready: || pushed(serving.region(), serving.doorbell(), tail),
            };
            let members: [&dyn Watch; 2] = [&client_member, &server_member];
            let ready = levels(&members);
            if ready == 0 {
                park(&members, Duration::MAX, &mut waiter, || true);
                continue;
            }
            if ready & 1 != 0 {
                assert_eq!(
                    protocol::answer(called.region(), 0, 100),
                    Answer::Responded(8),
                    "the set reported its client: the answer is there"
                );
                let value = called.responses[0].with(|p| {
                    // SAFETY: answered: the server wrote it, and is done.
                    unsafe { *p }
                });
                assert_eq!(value, 1010);
                got_answer = true;
            }
            if ready & 2 != 0 {
                // As `Server::poll`, which takes from a client only when
                // its pending bit is set: a report must find it set (the
                // member sets it, for a client whose bit is not there yet).
                assert_ne!(
                    serving.pending.load(Ordering::Relaxed) & 1,
                    0,
                    "the set reported its server: the client's pending bit is set"
                );
                let Take::Request { slot, id, len } =
                    protocol::take(serving.region(), serving.doorbell(), &mut ring, 4)
                else {
                    panic!("the set reported its server: a request is there");
                };
                assert_eq!((slot, id, len), (0, 100, 4));
                let value = serving.requests[0].with(|p| {
                    // SAFETY: taken: the client wrote it, and is done.
                    unsafe { *p }
                });
                serving.responses[0].with_mut(|p| {
                    // SAFETY: the set owes this slot's answer.
                    unsafe { *p = value + 1000 }
                });
                assert!(protocol::finish(serving.region(), 0, 100, Some(8)));
                ring.release(0);
                served = true;
            }
        }
        server.join().unwrap();
        client.join().unwrap();
        // The set took its flags back.
        assert_eq!(called.client_wake.waiting.load(Ordering::Relaxed), 0);
        assert_eq!(serving.server_wake.waiting.load(Ordering::Relaxed), 0);
    }

    /// Whether the answer comes before the set looks, while it arms, or
    /// once it sleeps, and the same for the request it serves, the set is
    /// woken for each, and its client thread for the set's answer.
    #[test]
    fn a_set_of_an_rpc_client_and_an_rpc_server_is_woken_by_either() {
        check(2, run);
    }
}
