//! What the hostile-peer targets for wait sets and the async notifier
//! share: the input reader, and the fuzzer's writes into a channel's
//! header, a publish-subscribe service and a request/response service
//! (each word a member's look, park or pid watch reads).

use memshare::channel::{Receiver, Sender};
use memshare::pubsub::{Overflow, Publisher, ServiceConfig, Subscriber};
use memshare::rpc::{Client, Server, ServerConfig};
use memshare::ViewMut;

pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    }
}

/// A channel's header words: states, pid hints, positions, parking words.
pub const CHANNEL_WORDS: [(usize, usize); 10] = [
    (64, 4),  // sender_state
    (68, 4),  // receiver_state
    (72, 4),  // sender_pid
    (76, 4),  // receiver_pid
    (128, 8), // write_pos
    (256, 4), // recv_futex
    (260, 4), // recv_waiting
    (384, 8), // read_pos
    (512, 4), // send_futex
    (516, 4), // send_waiting
];

pub const MAX_MESSAGE: usize = 64;
pub const MAX_REQUEST: u64 = 32;
pub const MAX_RESPONSE: u64 = 32;

/// A pid a hostile peer may claim: its own (this process), none, init, one
/// that cannot be a pid, one that died, or anything.
pub fn hostile_pid(input: &mut Input) -> u32 {
    match input.byte().unwrap_or(0) % 7 {
        0 => std::process::id(),
        1 => 0,
        2 => 1,
        3 => u32::MAX,
        4 => dead_pid(),
        5 => i32::MAX as u32,
        _ => input.u64() as u32,
    }
}

/// The pid of a child that has exited and been reaped.
pub fn dead_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(|| {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait true");
        pid
    })
}

pub fn word(view: &ViewMut, at: usize) -> u64 {
    let mut b = [0u8; 8];
    view.read_at(at, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A channel header word, written as the fuzzer says.
pub fn poke_channel(input: &mut Input, view: &ViewMut, sel: u8) {
    let (at, size) = CHANNEL_WORDS[usize::from(sel) % CHANNEL_WORDS.len()];
    let value = if at == 72 || at == 76 {
        u64::from(hostile_pid(input))
    } else if size == 4 && sel & 0x10 != 0 {
        // A plausible state or flag.
        input.u64() % 4
    } else if size == 8 && sel & 0x10 != 0 {
        // A plausible position: near what is there, 8-aligned or not.
        word(view, at)
            .wrapping_add(input.u64() % 512)
            .wrapping_sub(256)
    } else {
        input.u64()
    };
    view.write_at(at, &value.to_le_bytes()[..size]).unwrap();
}

/// Where the publish-subscribe service's parts lie (read from its header).
pub struct PubsubLayout {
    pub ring_len: usize,
    pub cursors_at: usize,
    pub subscriber_block: usize,
    pub publishers_at: usize,
    pub region: usize,
    pub pool_len: u64,
}

impl PubsubLayout {
    pub fn read(view: &ViewMut, max_held: usize, publishers: usize) -> PubsubLayout {
        let region = word(view, 64) as usize;
        let total = word(view, 72) as usize;
        PubsubLayout {
            ring_len: word(view, 44) as u32 as usize,
            cursors_at: (32 + 4 * max_held).next_multiple_of(8),
            subscriber_block: word(view, 52) as u32 as usize,
            publishers_at: total - publishers * region,
            region,
            pool_len: u64::from(word(view, 48) as u32),
        }
    }
}

/// A word of the publish-subscribe service, as a hostile publisher (or a
/// peer subscriber) writes it.
pub fn poke_pubsub(input: &mut Input, view: &ViewMut, l: &PubsubLayout, sel: u8, sub_slot: usize) {
    let p = usize::from(sel >> 7);
    let region = l.publishers_at + p * l.region;
    let sub_block = 4096 + sub_slot * l.subscriber_block;
    let (at, value, size) = match (sel >> 3) % 9 {
        // The parked mask (all of it, or the subscriber's bit), the futex.
        0 => (128, input.u64(), 8),
        1 => (136, input.u64(), 4),
        // Publishers' wake words.
        2 => (1024 + 8 * p + 4 * usize::from(sel & 4 != 0), input.u64(), 4),
        // A publisher's state, pid hint, instance, head.
        3 if sel & 4 != 0 => (region + 4, u64::from(hostile_pid(input)), 4),
        3 => (region, input.u64() % 4, 4),
        4 => (
            region + 128,
            word(view, region + 128).wrapping_add(input.u64() % 16),
            8,
        ),
        // An entry's sequence, plausible or anything.
        5 => {
            let e = input.u64() as usize % l.ring_len;
            let seq = if sel & 4 != 0 {
                input.u64()
            } else {
                input.u64() % 64
            };
            (region + 256 + 32 * e, seq, 8)
        }
        // An entry's buffer index or length.
        6 => {
            let e = input.u64() as usize % l.ring_len;
            let value = input.u64() % (2 * l.pool_len.max(MAX_MESSAGE as u64));
            (
                region + 256 + 32 * e + 8 + 4 * usize::from(sel & 4 != 0),
                value,
                4,
            )
        }
        // The subscriber's own cursor (its published position) and state.
        7 => (sub_block + l.cursors_at + 8 * p, input.u64() % 128, 8),
        _ => (
            sub_block + if sel & 4 != 0 { 0 } else { 32 },
            input.u64() % 4,
            4,
        ),
    };
    view.write_at(at, &value.to_le_bytes()[..size]).unwrap();
}

/// A word of the rpc service: the hostile client's region and wake words,
/// or the server's block and the pending mask.
pub fn poke_rpc(input: &mut Input, view: &ViewMut, client_slot: usize, sel: u8) {
    let ring_len = word(view, 40) as u32 as usize;
    let control_len = word(view, 64) as usize;
    let region_len = word(view, 72) as usize;
    let region = 4096 + client_slot * region_len;
    let slots_at = (136 + 4 * ring_len).next_multiple_of(64);
    let (at, value, size) = match (sel >> 3) % 10 {
        // Anywhere in the client's control part.
        0 => (
            region + (input.u64() as usize % (control_len / 8)) * 8,
            input.u64(),
            8,
        ),
        // The client's state, or its server instance.
        1 => (region, input.u64() % 5, 4),
        2 => (region + 16, input.u64(), 8),
        // Its ring head (plausible) and entries.
        3 => (
            region + 128,
            word(view, region + 128).wrapping_add(input.u64() % 8),
            8,
        ),
        4 => (
            region + 136 + 4 * (usize::from(sel) % ring_len),
            input.u64() % 8,
            4,
        ),
        // A slot word: a phase and a small id; or a length.
        5 => {
            let s = usize::from(sel & 7) % ring_len.max(1);
            let at = region + slots_at + 64 * s;
            if sel & 0x80 == 0 {
                (at, (input.u64() % 8) << 3 | (input.u64() % 8), 8)
            } else {
                (
                    at + 8 + 4 * usize::from(sel & 0x40 != 0),
                    input.u64() % 128,
                    4,
                )
            }
        }
        // The server's block: state, retired, instance, pid hint.
        6 => (128 + 4 * usize::from(sel & 4 != 0), input.u64() % 4, 4),
        7 => {
            if sel & 4 != 0 {
                (136, input.u64(), 8)
            } else {
                (144, u64::from(hostile_pid(input)), 4)
            }
        }
        // The pending mask.
        8 => (384, input.u64(), 8),
        // Wake words: the server's, the client's.
        _ => {
            let at =
                [256, 260, 1024 + 8 * client_slot, 1028 + 8 * client_slot][usize::from(sel & 3)];
            (at, input.u64() % 3, 4)
        }
    };
    view.write_at(at, &value.to_le_bytes()[..size]).unwrap();
}

/// One endpoint of every kind, with the raw views a hostile peer writes
/// through: channel A (a receiver, its sender the peer), channel B (a
/// sender filled by `mode >> 4` messages, its receiver the peer), a
/// publish-subscribe service (`mode & 4`: Block, else DropOldest) and a
/// request/response service with one client.
pub struct Endpoints {
    pub rx_a: Receiver,
    pub tx_a: Sender,
    pub view_a: ViewMut,
    pub tx_b: Sender,
    pub rx_b: Receiver,
    pub view_b: ViewMut,
    pub publisher: Publisher,
    pub subscriber: Subscriber,
    pub view_ps: ViewMut,
    pub ps_layout: PubsubLayout,
    pub sub_slot: usize,
    pub server: Server,
    pub client: Client,
    pub view_rpc: ViewMut,
    pub client_slot: usize,
}

impl Endpoints {
    /// Builds them (the services under `ps_name` and `rpc_name`), or
    /// `None` if the system refused one (the names are then removed).
    pub fn build(capacity: usize, mode: u8, ps_name: &str, rpc_name: &str) -> Option<Endpoints> {
        let built = Self::try_build(capacity, mode, ps_name, rpc_name);
        if built.is_none() {
            let _ = memshare::Segment::remove(ps_name);
            let _ = memshare::Segment::remove(rpc_name);
        }
        built
    }

    fn try_build(capacity: usize, mode: u8, ps_name: &str, rpc_name: &str) -> Option<Endpoints> {
        let rx_a = Receiver::create(capacity).ok()?;
        let tx_a = Sender::attach(rx_a.segment()).ok()?;
        let view_a = rx_a.segment().map(..).unwrap();
        let mut tx_b = Sender::create(capacity).ok()?;
        let rx_b = Receiver::attach(tx_b.segment()).ok()?;
        for i in 0..(mode >> 4) {
            let _ = tx_b.try_send(&[i; 12]);
        }
        let view_b = tx_b.segment().map(..).unwrap();
        let config = ServiceConfig::new()
            .max_publishers(2)
            .max_subscribers(2)
            .max_message_len(MAX_MESSAGE as u64)
            .depth(4)
            .history(1)
            .max_held(2)
            .overflow(if mode & 4 == 0 {
                Overflow::DropOldest
            } else {
                Overflow::Block
            });
        let publisher = Publisher::create(ps_name, config).ok()?;
        let subscriber = Subscriber::open(ps_name).ok()?;
        let view_ps = publisher.segment().map(..).unwrap();
        let ps_layout = PubsubLayout::read(&view_ps, 2, 2);
        let sub_slot = subscriber.slot() as usize;
        let rpc_config = ServerConfig::new()
            .max_clients(2)
            .max_in_flight(4)
            .max_request_len(MAX_REQUEST)
            .max_response_len(MAX_RESPONSE);
        let server = Server::create(rpc_name, rpc_config).ok()?;
        let client = Client::connect(rpc_name).ok()?;
        let view_rpc = server.segment().map(..).unwrap();
        let client_slot = client.id().slot() as usize;
        Some(Endpoints {
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
        })
    }
}
