//! A loom model of the channel protocol, built only with `--cfg loom`.
#![cfg(loom)]
//!
//! It checks the ring's index protocol and the park/wake handshake over
//! every interleaving and every value that the memory model lets a load
//! return, within loom's bounds (a preemption bound per test, which
//! `LOOM_MAX_PREEMPTIONS` overrides).
//!
//! Run it with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p memshare --test loom_protocol`.
//!
//! The real code uses real atomics in mmap'd memory, which loom cannot
//! observe, so this file restates the protocol in small form. Each part
//! mirrors, step for step and with the same orderings:
//!
//! | model | real code (`crates/memshare/src/channel/`) |
//! |---|---|
//! | `frame_len`, the constants | `layout::frame_len`, `FRAME_HEADER`, `FRAME_ALIGN`, `PAD` |
//! | `needed` | `sender::needed` |
//! | `Futex::wait`, `Futex::wake` | `sys::wait`, `sys::wake` (the kernel's futex: the word is compared under the waiters' lock) |
//! | `Channel::park` | `Endpoint::park` |
//! | `Channel::publish` | `Endpoint::publish` |
//! | `Sender::reserve` | `Sender::reserve_until` with `WaitStrategy::Park` (and its "still full" closure) |
//! | `Sender::poll_space` | `Sender::poll_space` |
//! | `Sender::refresh_read` | `Sender::refresh_read` |
//! | `Sender::write_frame_header` | `Sender::write_frame_header` |
//! | `Sender::send` | `Sender::send_until`: reserve, copy into the `SendGuard`, `SendGuard::commit` |
//! | `Receiver::recv` | `Receiver::recv_until` with `WaitStrategy::Park` (and its "still empty" closure) |
//! | `Receiver::poll` | `Receiver::poll` |
//! | the end of `Receiver::recv` | reading the `RecvGuard`, then `Drop for RecvGuard` |
//!
//! Left out, because they do not take part in the handshake: the spin of
//! `WaitStrategy::SpinThenPark` (more polls before parking), deadlines,
//! liveness checks and disconnection, `Drop for Endpoint` (its wake-up
//! would hide a lost one). The futex wait here has no timeout (the real
//! one wakes every `LIVENESS_INTERVAL`), so a lost wake-up is a deadlock,
//! which loom reports. The checks that the real code turns into
//! `Error::Corrupted` are assertions here: with an honest peer they must
//! never fire.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use loom::sync::{Arc, Condvar, Mutex};

/// A small ring, so that frames wrap, pad and fill it.
const CAPACITY: u64 = 32;
const FRAME_HEADER: u64 = 8;
const FRAME_ALIGN: u64 = 8;
const PAD: u32 = u32::MAX;

fn frame_len(len: u64) -> u64 {
    (len + FRAME_HEADER + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

fn needed(capacity: u64, write: u64, frame: u64) -> u64 {
    let contiguous = capacity - write % capacity;
    if frame <= contiguous {
        frame
    } else {
        contiguous
    }
}

/// A futex word: `wait` sleeps only if the word still holds `expected`,
/// checked under the lock that `wake` takes, as the kernel does.
struct Futex {
    word: AtomicU32,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Futex {
    fn new() -> Futex {
        Futex {
            word: AtomicU32::new(0),
            lock: Mutex::new(()),
            cond: Condvar::new(),
        }
    }

    /// `FUTEX_WAIT` without a timeout. The lock orders this load after any
    /// bump whose `wake` came first, as the kernel's bucket lock does.
    fn wait(&self, expected: u32) {
        let guard = self.lock.lock().unwrap();
        if self.word.load(Ordering::Relaxed) != expected {
            return; // EAGAIN
        }
        drop(self.cond.wait(guard).unwrap());
    }

    /// `FUTEX_WAKE` (the real code wakes 1: there is one waiter per word).
    fn wake(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}

#[derive(Clone, Copy)]
enum Side {
    Sender,
    Receiver,
}

/// The shared part: the ring's bytes (each a loom `UnsafeCell`, so that an
/// access not ordered by the protocol is reported as a data race) and the
/// header's atomics.
struct Channel {
    ring: Vec<UnsafeCell<u8>>,
    write_pos: AtomicU64,
    read_pos: AtomicU64,
    recv_futex: Futex,
    recv_waiting: AtomicU32,
    send_futex: Futex,
    send_waiting: AtomicU32,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            ring: (0..CAPACITY).map(|_| UnsafeCell::new(0)).collect(),
            write_pos: AtomicU64::new(0),
            read_pos: AtomicU64::new(0),
            recv_futex: Futex::new(),
            recv_waiting: AtomicU32::new(0),
            send_futex: Futex::new(),
            send_waiting: AtomicU32::new(0),
        }
    }

    fn write_bytes(&self, offset: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: loom checks that no other access to this byte is
            // concurrent with this one (that is what the model is for).
            self.ring[offset as usize + i].with_mut(|p| unsafe { *p = b });
        }
    }

    fn read_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        (0..len)
            // SAFETY: as in `write_bytes`: loom reports a concurrent write.
            .map(|i| self.ring[offset as usize + i].with(|p| unsafe { *p }))
            .collect()
    }

    /// `Endpoint::park`: one park, unless `blocked` is already false.
    fn park(&self, side: Side, blocked: impl Fn(&Channel) -> bool) {
        let (futex, waiting) = match side {
            Side::Sender => (&self.send_futex, &self.send_waiting),
            Side::Receiver => (&self.recv_futex, &self.recv_waiting),
        };
        let seq = futex.word.load(Ordering::Acquire);
        waiting.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if blocked(self) {
            futex.wait(seq);
        }
        waiting.store(0, Ordering::Relaxed);
    }

    /// `Endpoint::publish`: `side` publishes `value` in its `position`
    /// (Release), then wakes the peer if it is parked.
    fn publish(&self, side: Side, position: &AtomicU64, value: u64) {
        position.store(value, Ordering::Release);
        fence(Ordering::SeqCst);
        let (futex, waiting) = match side {
            Side::Sender => (&self.recv_futex, &self.recv_waiting),
            Side::Receiver => (&self.send_futex, &self.send_waiting),
        };
        if waiting.load(Ordering::Relaxed) != 0 {
            futex.word.fetch_add(1, Ordering::Release);
            futex.wake();
        }
    }
}

struct Sender {
    ch: Arc<Channel>,
    write: u64,
    read: u64,
}

impl Sender {
    fn send(&mut self, msg: &[u8]) {
        let (offset, position) = self.reserve(msg.len());
        // Writing into the SendGuard.
        self.ch.write_bytes(offset + FRAME_HEADER, msg);
        // SendGuard::commit.
        self.write_frame_header(offset, msg.len() as u32);
        self.write = position + frame_len(msg.len() as u64);
        self.ch
            .publish(Side::Sender, &self.ch.write_pos, self.write);
    }

    fn reserve(&mut self, len: usize) -> (u64, u64) {
        loop {
            if let Some(slot) = self.poll_space(len) {
                return slot;
            }
            let (write, capacity) = (self.write, CAPACITY);
            let frame = frame_len(len as u64);
            self.ch.park(Side::Sender, |ch| {
                let read = ch.read_pos.load(Ordering::Relaxed);
                capacity.saturating_sub(write.wrapping_sub(read)) < needed(capacity, write, frame)
            });
        }
    }

    fn poll_space(&mut self, len: usize) -> Option<(u64, u64)> {
        let capacity = CAPACITY;
        let frame = frame_len(len as u64);
        assert!(frame <= capacity);
        loop {
            let offset = self.write % capacity;
            let need = needed(capacity, self.write, frame);
            if capacity - (self.write - self.read) < need {
                self.refresh_read();
                if capacity - (self.write - self.read) < need {
                    return None;
                }
            }
            if need == frame {
                return Some((offset, self.write));
            }
            self.write_frame_header(offset, PAD);
            self.write += need;
            self.ch
                .publish(Side::Sender, &self.ch.write_pos, self.write);
        }
    }

    fn refresh_read(&mut self) {
        let read = self.ch.read_pos.load(Ordering::Acquire);
        assert!(
            read >= self.read && read <= self.write && read % FRAME_ALIGN == 0,
            "the receiver's position {read} is outside {}..={}",
            self.read,
            self.write
        );
        self.read = read;
    }

    fn write_frame_header(&self, offset: u64, len: u32) {
        self.ch.write_bytes(offset, &len.to_ne_bytes());
        self.ch.write_bytes(offset + 4, &0u32.to_ne_bytes());
    }
}

struct Receiver {
    ch: Arc<Channel>,
    read: u64,
    write: u64,
}

/// Where a validated frame lies (`receiver::Frame`).
struct Frame {
    offset: u64,
    len: usize,
    next: u64,
}

impl Receiver {
    fn recv(&mut self) -> Vec<u8> {
        let frame = loop {
            if let Some(frame) = self.poll() {
                break frame;
            }
            let read = self.read;
            self.ch.park(Side::Receiver, |ch| {
                ch.write_pos.load(Ordering::Relaxed) == read
            });
        };
        // Reading the RecvGuard...
        let msg = self.ch.read_bytes(frame.offset, frame.len);
        // ...and dropping it.
        self.read = frame.next;
        self.ch
            .publish(Side::Receiver, &self.ch.read_pos, self.read);
        msg
    }

    fn poll(&mut self) -> Option<Frame> {
        let capacity = CAPACITY;
        for _ in 0..2 {
            if self.read == self.write {
                let write = self.ch.write_pos.load(Ordering::Acquire);
                assert!(
                    write >= self.write
                        && write - self.read <= capacity
                        && write % FRAME_ALIGN == 0,
                    "the sender's position {write} is outside {}..={}",
                    self.write,
                    self.read + capacity
                );
                self.write = write;
                if write == self.read {
                    return None;
                }
            }
            let offset = self.read % capacity;
            let header = self.ch.read_bytes(offset, 4);
            let len = u32::from_ne_bytes(header.try_into().unwrap());
            let available = self.write - self.read;
            if len == PAD {
                let pad = capacity - offset;
                assert!(
                    offset != 0 && pad <= available,
                    "padding frame at ring offset {offset} with {available} bytes published"
                );
                self.read += pad;
                self.ch
                    .publish(Side::Receiver, &self.ch.read_pos, self.read);
                continue;
            }
            let frame = frame_len(u64::from(len));
            assert!(
                u64::from(len) <= capacity - FRAME_HEADER
                    && frame <= available
                    && offset + frame <= capacity,
                "frame of {len} bytes at ring offset {offset} does not fit in the {available} bytes published"
            );
            return Some(Frame {
                offset: offset + FRAME_HEADER,
                len: len as usize,
                next: self.read + frame,
            });
        }
        panic!("two padding frames in a row");
    }
}

/// Message `i` of length `len`: bytes that say which message and which
/// byte they are, so that a mix-up or a stale byte shows.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 64 + j + 1) as u8).collect()
}

/// A sender thread sends messages of `lens`; this thread receives them and
/// checks each against what was sent.
fn run(lens: &'static [usize]) {
    let ch = Arc::new(Channel::new());
    let mut tx = Sender {
        ch: ch.clone(),
        write: 0,
        read: 0,
    };
    let mut rx = Receiver {
        ch,
        read: 0,
        write: 0,
    };
    let producer = loom::thread::spawn(move || {
        for (i, &len) in lens.iter().enumerate() {
            tx.send(&message(i, len));
        }
    });
    for (i, &len) in lens.iter().enumerate() {
        assert_eq!(rx.recv(), message(i, len), "message {i}");
    }
    producer.join().unwrap();
    // Nothing more was published than was received.
    assert_eq!(rx.ch.write_pos.load(Ordering::Acquire), rx.read);
}

/// Explores every execution of `f` with at most `preemption_bound`
/// preemptions (`LOOM_MAX_PREEMPTIONS` overrides it), and prints how many
/// there were (seen with `--nocapture`).
fn check(preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemption_bound);
    }
    // A plain counter, outside the model.
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    println!(
        "{} executions with at most {} preemptions",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        builder.preemption_bound.unwrap()
    );
}

/// The receiver parks on an empty ring: whenever it sleeps, the sender's
/// publication wakes it.
#[test]
fn receiver_parked_on_an_empty_ring_is_woken() {
    check(5, || run(&[3, 5]));
}

/// The sender parks on a full ring (each message fills it): whenever it
/// sleeps, the receiver's freeing wakes it.
#[test]
fn sender_parked_on_a_full_ring_is_woken() {
    check(5, || run(&[24, 17]));
}

/// A frame that does not fit before the end of the ring: 12 bytes, frame
/// 24 at 0; 20 bytes: padding at 24, then the sender waits until the
/// receiver has freed the whole ring, and the frame of 32 fills it.
#[test]
fn a_padded_frame_that_fills_the_ring_arrives_intact() {
    check(3, || run(&[12, 20]));
}

/// Frames of different lengths that pad the end of the ring, start at
/// offset 0 and fill the whole ring: each message arrives once, in order,
/// intact, and no byte is read while it is written (loom's race check on
/// the ring cells). 5 bytes: frame 16 at 0. 12 bytes: padding at 16, frame
/// 24 at 0. 1 byte: padding at 24, frame 16 at 0. 20 bytes: padding at 16,
/// frame 32 (the whole ring) at 0.
#[test]
fn four_messages_with_padding_arrive_once_in_order_intact() {
    check(2, || run(&[5, 12, 1, 20]));
}
