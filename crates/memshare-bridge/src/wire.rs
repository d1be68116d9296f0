//! What the bridge puts on the network besides the payload: the Zenoh
//! attachment of every publication and query, and the optional origin
//! header in front of a republished message. docs/bridge.md ("Wire format")
//! says the same in prose, for other implementations.
//!
//! The payload of a "message" publication is the message's bytes,
//! unchanged; of a "messages" publication, several messages, each after a
//! record header; the payload of a query is the request's, of a reply the
//! response's. All integers are little-endian.
//!
//! ```text
//! attachment, every kind (16 bytes):
//!   0  4  magic "MSBR"
//!   4  1  version (1)
//!   5  1  kind: 0 message, 1 publishers gone, 2 request, 3 messages
//!   6  2  zero
//!   8  8  origin bridge id (random, drawn when the bridge starts; never 0)
//! kinds 0 "message" and 3 "messages" continue (64 bytes in all):
//!  16  8  kind 0: publisher id (memshare's PublisherId on the origin
//!         machine); kind 3: zero
//!  24  8  kind 0: sequence (that publisher's sequence number of the
//!         message); kind 3: how many records the payload holds
//!  32  8  max_message_len   \
//!  40  4  max_publishers     |
//!  44  4  max_subscribers    |  the shape of the origin's service
//!  48  4  depth              |  (memshare::pubsub::ServiceConfig)
//!  52  4  history            |
//!  56  4  max_held           |
//!  60  1  overflow: 0 block, 1 drop-oldest
//!  61  3  zero              /
//! ```
//!
//! A "messages" payload is its records back to back, nothing between or
//! after them (a bridge sends what its local subscriber had waiting at
//! once, in one publication, rather than one publication per message):
//!
//! ```text
//! record (20 bytes, then the message):
//!   0  8  publisher id on the origin machine
//!   8  8  that publisher's sequence number of the message
//!  16  4  the message's length
//!  20     the message
//! ```
//!
//! A receiver ignores bytes past the length its version defines, and
//! drops (and counts) anything with another magic or version.

use memshare::pubsub::{Overflow, PublisherId, ServiceConfig};

use crate::{Error, Result};

/// The attachment's first four bytes.
pub const MAGIC: [u8; 4] = *b"MSBR";
/// The wire format's version.
pub const VERSION: u8 = 1;
/// The length of every attachment's common part.
pub const PREFIX_LEN: usize = 16;
/// The length of a "message" attachment.
pub const MESSAGE_LEN: usize = 64;
/// The length of a record's header in a "messages" payload.
pub const RECORD_HEADER_LEN: usize = 20;

/// A bridge's identity on the wire: drawn at random when it starts, so a
/// restarted bridge is a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BridgeId(pub u64);

impl BridgeId {
    /// A new random id (never 0).
    pub fn random() -> BridgeId {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is seeded from the system's randomness once per
        // process; hashing the time and pid on top makes two ids drawn in
        // one process differ too.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        BridgeId(h.finish().max(1))
    }
}

impl std::fmt::Display for BridgeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A decoded attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// A message of a publish-subscribe service.
    Message {
        /// The bridge that took it from its local service.
        bridge: BridgeId,
        /// The publisher that published it there.
        publisher: PublisherId,
        /// That publisher's sequence number of it.
        sequence: u64,
        /// The shape of the origin's service (what a receiving bridge
        /// creates its own local service with, unless configured).
        config: ServiceConfig,
    },
    /// The origin's local service has no live publisher left (other than
    /// the bridge's own): a receiving bridge lets its local subscribers
    /// see `Disconnected` once no origin has any.
    PublishersGone {
        /// The bridge that says so.
        bridge: BridgeId,
    },
    /// A request of a request/response service (the query's payload).
    Request {
        /// The bridge that asks.
        bridge: BridgeId,
    },
    /// Messages of a publish-subscribe service, each in a record of the
    /// payload ([`Records`]).
    Messages {
        /// The bridge that took them from its local service.
        bridge: BridgeId,
        /// How many records the payload holds.
        count: u64,
        /// The shape of the origin's service.
        config: ServiceConfig,
    },
}

const KIND_MESSAGE: u8 = 0;
const KIND_GONE: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_MESSAGES: u8 = 3;

impl Attachment {
    /// The bridge the attachment comes from.
    pub fn bridge(&self) -> BridgeId {
        match *self {
            Attachment::Message { bridge, .. }
            | Attachment::PublishersGone { bridge }
            | Attachment::Request { bridge }
            | Attachment::Messages { bridge, .. } => bridge,
        }
    }

    /// The attachment's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, len) = match self {
            Attachment::Message { .. } => (KIND_MESSAGE, MESSAGE_LEN),
            Attachment::PublishersGone { .. } => (KIND_GONE, PREFIX_LEN),
            Attachment::Request { .. } => (KIND_REQUEST, PREFIX_LEN),
            Attachment::Messages { .. } => (KIND_MESSAGES, MESSAGE_LEN),
        };
        let mut out = vec![0u8; len];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = kind;
        out[8..16].copy_from_slice(&self.bridge().0.to_le_bytes());
        let shaped = match *self {
            Attachment::Message {
                publisher,
                sequence,
                config,
                ..
            } => Some((publisher.0, sequence, config)),
            Attachment::Messages { count, config, .. } => Some((0, count, config)),
            _ => None,
        };
        if let Some((publisher, sequence, config)) = shaped {
            out[16..24].copy_from_slice(&publisher.to_le_bytes());
            out[24..32].copy_from_slice(&sequence.to_le_bytes());
            out[32..40].copy_from_slice(&config.get_max_message_len().to_le_bytes());
            out[40..44].copy_from_slice(&config.get_max_publishers().to_le_bytes());
            out[44..48].copy_from_slice(&config.get_max_subscribers().to_le_bytes());
            out[48..52].copy_from_slice(&config.get_depth().to_le_bytes());
            out[52..56].copy_from_slice(&config.get_history().to_le_bytes());
            out[56..60].copy_from_slice(&config.get_max_held().to_le_bytes());
            out[60] = match config.get_overflow() {
                Overflow::Block => 0,
                Overflow::DropOldest => 1,
            };
        }
        out
    }

    /// Decodes `bytes` (a Zenoh attachment). The service shape is taken as
    /// it comes: it is checked when a service is created with it.
    pub fn decode(bytes: &[u8]) -> Result<Attachment> {
        let bad = |detail: String| Error::Wire {
            key: "attachment".into(),
            detail,
        };
        if bytes.len() < PREFIX_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than the {PREFIX_LEN} of every memshare-bridge attachment",
                bytes.len()
            )));
        }
        if bytes[0..4] != MAGIC {
            return Err(bad(format!(
                "magic {:02x?} is not memshare-bridge's {MAGIC:02x?}",
                &bytes[0..4]
            )));
        }
        if bytes[4] != VERSION {
            return Err(bad(format!(
                "version {} (this bridge speaks {VERSION})",
                bytes[4]
            )));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let bridge = BridgeId(u64_at(8));
        match bytes[5] {
            kind @ (KIND_MESSAGE | KIND_MESSAGES) => {
                if bytes.len() < MESSAGE_LEN {
                    return Err(bad(format!(
                        "a message attachment of {} bytes, shorter than {MESSAGE_LEN}",
                        bytes.len()
                    )));
                }
                let overflow = match bytes[60] {
                    0 => Overflow::Block,
                    1 => Overflow::DropOldest,
                    other => {
                        return Err(bad(format!("overflow policy {other} is neither 0 nor 1")))
                    }
                };
                let config = ServiceConfig::new()
                    .max_message_len(u64_at(32))
                    .max_publishers(u32_at(40))
                    .max_subscribers(u32_at(44))
                    .depth(u32_at(48))
                    .history(u32_at(52))
                    .max_held(u32_at(56))
                    .overflow(overflow);
                Ok(if kind == KIND_MESSAGE {
                    Attachment::Message {
                        bridge,
                        publisher: PublisherId(u64_at(16)),
                        sequence: u64_at(24),
                        config,
                    }
                } else {
                    Attachment::Messages {
                        bridge,
                        count: u64_at(24),
                        config,
                    }
                })
            }
            KIND_GONE => Ok(Attachment::PublishersGone { bridge }),
            KIND_REQUEST => Ok(Attachment::Request { bridge }),
            other => Err(bad(format!("unknown kind {other}"))),
        }
    }
}

/// Appends a record of a "messages" payload: `message`, published by
/// `publisher` with sequence number `sequence`.
pub fn push_record(payload: &mut Vec<u8>, publisher: PublisherId, sequence: u64, message: &[u8]) {
    let len = u32::try_from(message.len()).expect("a memshare message is shorter than 4 GiB");
    payload.extend_from_slice(&publisher.0.to_le_bytes());
    payload.extend_from_slice(&sequence.to_le_bytes());
    payload.extend_from_slice(&len.to_le_bytes());
    payload.extend_from_slice(message);
}

/// The records of a "messages" payload, in order: each message with its
/// publisher and sequence number. A record that runs past the payload's
/// end is an [`Error::Wire`] (and the last item); so is a count that
/// disagrees with what the payload holds.
///
/// ```
/// use memshare::pubsub::PublisherId;
/// use memshare_bridge::wire::{push_record, Records};
/// let mut payload = Vec::new();
/// push_record(&mut payload, PublisherId(7), 0, b"first");
/// push_record(&mut payload, PublisherId(7), 1, b"second");
/// let got: Vec<_> = Records::new(&payload, 2).map(|r| r.unwrap()).collect();
/// assert_eq!(got, [(PublisherId(7), 0, &b"first"[..]), (PublisherId(7), 1, &b"second"[..])]);
/// ```
#[derive(Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: u64,
    failed: bool,
}

impl<'a> Records<'a> {
    /// The records of `payload`, which its attachment says are `count`.
    pub fn new(payload: &'a [u8], count: u64) -> Records<'a> {
        Records {
            rest: payload,
            left: count,
            failed: false,
        }
    }

    fn bad(&mut self, detail: String) -> Option<Result<(PublisherId, u64, &'a [u8])>> {
        self.failed = true;
        Some(Err(Error::Wire {
            key: "messages".into(),
            detail,
        }))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(PublisherId, u64, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.rest.is_empty() {
                return None;
            }
            let extra = self.rest.len();
            return self.bad(format!("{extra} bytes after the last record"));
        }
        let r = self.rest;
        if r.len() < RECORD_HEADER_LEN {
            let (left, len) = (self.left, r.len());
            return self.bad(format!(
                "{left} more records said, {len} bytes left: no room for a record header"
            ));
        }
        let publisher = u64::from_le_bytes(r[0..8].try_into().expect("8 bytes"));
        let sequence = u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(r[16..20].try_into().expect("4 bytes")) as usize;
        let Some(message) = r[RECORD_HEADER_LEN..].get(..len) else {
            let left = r.len() - RECORD_HEADER_LEN;
            return self.bad(format!(
                "a record of {len} bytes with {left} bytes left in the payload"
            ));
        };
        self.rest = &r[RECORD_HEADER_LEN + len..];
        self.left -= 1;
        Some(Ok((PublisherId(publisher), sequence, message)))
    }
}

/// The length of the origin header ([`Origin`]).
pub const ORIGIN_LEN: usize = 32;
/// The origin header's first four bytes.
pub const ORIGIN_MAGIC: [u8; 4] = *b"MSBO";

/// Where a republished message came from: what a bridge configured with
/// `origin_header = true` puts in front of every message it publishes into
/// its local service (the service's `max_message_len` is then 32 bytes
/// more than the origin's).
///
/// A message republished by a bridge has, locally, the bridge's publisher
/// id and that publisher's sequence number; the header keeps the original
/// ones. Without the header they are in the Zenoh attachment only.
///
/// ```text
///   0  4  magic "MSBO"
///   4  1  version (1)
///   5  3  zero
///   8  8  origin bridge id
///  16  8  publisher id on the origin machine
///  24  8  that publisher's sequence number of the message
///  32     the message, as published on the origin machine
/// ```
///
/// ```
/// use memshare::pubsub::PublisherId;
/// use memshare_bridge::wire::{BridgeId, Origin};
/// let origin = Origin { bridge: BridgeId(7), publisher: PublisherId(42), sequence: 3 };
/// let mut message = origin.to_bytes().to_vec();
/// message.extend_from_slice(b"frame");
/// let (got, payload) = Origin::split(&message).unwrap();
/// assert_eq!((got, payload), (origin, &b"frame"[..]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The bridge that took the message from its local service.
    pub bridge: BridgeId,
    /// The publisher that published it on the origin machine.
    pub publisher: PublisherId,
    /// That publisher's sequence number of it.
    pub sequence: u64,
}

impl Origin {
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; ORIGIN_LEN] {
        let mut out = [0u8; ORIGIN_LEN];
        out[0..4].copy_from_slice(&ORIGIN_MAGIC);
        out[4] = VERSION;
        out[8..16].copy_from_slice(&self.bridge.0.to_le_bytes());
        out[16..24].copy_from_slice(&self.publisher.0.to_le_bytes());
        out[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        out
    }

    /// Splits a message received from a service whose bridge adds the
    /// origin header into the header and the original message.
    /// [`Error::Wire`] if it does not start with one.
    pub fn split(message: &[u8]) -> Result<(Origin, &[u8])> {
        let bad = |detail: String| Error::Wire {
            key: "origin header".into(),
            detail,
        };
        if message.len() < ORIGIN_LEN {
            return Err(bad(format!(
                "a message of {} bytes has no room for the {ORIGIN_LEN}-byte header",
                message.len()
            )));
        }
        if message[0..4] != ORIGIN_MAGIC || message[4] != VERSION {
            return Err(bad(format!(
                "starts with {:02x?}, not the magic {ORIGIN_MAGIC:02x?} and version {VERSION}",
                &message[0..5]
            )));
        }
        let u64_at =
            |at: usize| u64::from_le_bytes(message[at..at + 8].try_into().expect("8 bytes"));
        Ok((
            Origin {
                bridge: BridgeId(u64_at(8)),
                publisher: PublisherId(u64_at(16)),
                sequence: u64_at(24),
            },
            &message[ORIGIN_LEN..],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let config = ServiceConfig::new()
            .max_publishers(3)
            .max_subscribers(5)
            .max_message_len(1 << 20)
            .depth(64)
            .history(2)
            .max_held(4)
            .overflow(Overflow::Block);
        for a in [
            Attachment::Message {
                bridge: BridgeId(u64::MAX),
                publisher: PublisherId(0x0102_0304_0506_0708),
                sequence: 1 << 40,
                config,
            },
            Attachment::PublishersGone {
                bridge: BridgeId(9),
            },
            Attachment::Request {
                bridge: BridgeId(1),
            },
            Attachment::Messages {
                bridge: BridgeId(2),
                count: 300,
                config,
            },
        ] {
            let bytes = a.encode();
            assert_eq!(&bytes[0..4], b"MSBR");
            assert_eq!(Attachment::decode(&bytes).unwrap(), a);
            // Longer is fine (a later version's extra fields are ignored).
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0xee; 8]);
            assert_eq!(Attachment::decode(&longer).unwrap(), a);
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let bytes = Attachment::Message {
            bridge: BridgeId(0x11),
            publisher: PublisherId(0x22),
            sequence: 0x33,
            config: ServiceConfig::new(),
        }
        .encode();
        assert_eq!(bytes.len(), 64);
        assert_eq!((bytes[4], bytes[5]), (1, 0));
        assert_eq!((bytes[8], bytes[16], bytes[24]), (0x11, 0x22, 0x33));
        // ServiceConfig::new(): 4096-byte messages, 1 publisher, 8
        // subscribers, depth 16, no history, 2 held, drop-oldest.
        assert_eq!(&bytes[32..40], &4096u64.to_le_bytes());
        assert_eq!(
            (bytes[40], bytes[44], bytes[48], bytes[52], bytes[56], bytes[60]),
            (1, 8, 16, 0, 2, 1)
        );
    }

    #[test]
    fn foreign_short_and_future_attachments_are_refused() {
        let good = Attachment::PublishersGone {
            bridge: BridgeId(1),
        }
        .encode();
        assert!(Attachment::decode(&good[..15]).is_err());
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(Attachment::decode(&magic)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut version = good.clone();
        version[4] = 2;
        assert!(Attachment::decode(&version)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        let mut kind = good.clone();
        kind[5] = 9;
        assert!(Attachment::decode(&kind)
            .unwrap_err()
            .to_string()
            .contains("kind 9"));
        let mut short = Attachment::Message {
            bridge: BridgeId(1),
            publisher: PublisherId(1),
            sequence: 0,
            config: ServiceConfig::new(),
        }
        .encode();
        short.truncate(40);
        assert!(Attachment::decode(&short).is_err());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let mut payload = Vec::new();
        push_record(&mut payload, PublisherId(1), 5, b"");
        push_record(&mut payload, PublisherId(2), 6, &[9; 100]);
        assert_eq!(payload.len(), 2 * RECORD_HEADER_LEN + 100);
        let got: Vec<_> = Records::new(&payload, 2).map(|r| r.unwrap()).collect();
        assert_eq!(
            got,
            [
                (PublisherId(1), 5, &[][..]),
                (PublisherId(2), 6, &[9; 100][..])
            ]
        );
        // The documented layout.
        assert_eq!(&payload[0..8], &1u64.to_le_bytes());
        assert_eq!(&payload[8..16], &5u64.to_le_bytes());
        assert_eq!(&payload[16..20], &0u32.to_le_bytes());
        // Fewer records said than there are, more, and one cut short: the
        // good records come first, then one error, then nothing.
        let fewer: Vec<_> = Records::new(&payload, 1).collect();
        assert_eq!(fewer.len(), 2);
        assert!(fewer[1]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("after the last"));
        let more: Vec<_> = Records::new(&payload, 3).collect();
        assert_eq!(more.len(), 3);
        assert!(more[2].is_err());
        let cut: Vec<_> = Records::new(&payload[..payload.len() - 1], 2).collect();
        assert_eq!(cut.len(), 2);
        assert!(cut[0].is_ok() && cut[1].is_err());
        let huge = [&[0u8; 16][..], &u32::MAX.to_le_bytes()].concat();
        assert!(Records::new(&huge, 1).next().unwrap().is_err());
    }

    #[test]
    fn the_origin_header_is_checked() {
        assert!(Origin::split(b"short").is_err());
        assert!(Origin::split(&[0u8; 40]).is_err());
        let origin = Origin {
            bridge: BridgeId(1),
            publisher: PublisherId(2),
            sequence: 3,
        };
        let bytes = origin.to_bytes();
        let (got, rest) = Origin::split(&bytes).unwrap();
        assert_eq!((got, rest), (origin, &[][..]));
    }

    #[test]
    fn bridge_ids_differ_and_are_never_zero() {
        let a = BridgeId::random();
        let b = BridgeId::random();
        assert_ne!(a, b);
        assert_ne!(a.0, 0);
    }
}
