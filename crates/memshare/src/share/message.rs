//! The payload of a segment message: what a sender says about the
//! descriptors it sends over a socket.

use super::inherit::check_key;
use crate::{validate_name, Error, Result};

/// The magic at the start of every segment message: `MSHS`.
pub const MESSAGE_MAGIC: [u8; 4] = *b"MSHS";
/// The message format version this library writes and reads.
pub const MESSAGE_VERSION: u16 = 1;
/// The most segments (descriptors) one message carries: Linux's
/// `SCM_MAX_FD` is 253.
pub const MAX_ENTRIES: usize = 253;
/// The largest message payload, in bytes.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
const HEADER_LEN: usize = 12;

/// One entry of a segment message: what the sender claims about a descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEntry {
    /// The key the receiver finds the segment under.
    pub key: String,
    /// The segment's name, for a named segment.
    pub name: Option<String>,
    /// The claimed size in bytes.
    pub len: u64,
    /// Whether the segment is claimed to be read-only.
    pub readonly: bool,
}

/// Encodes the payload of a segment message. All integers little-endian:
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `MSHS` |
/// | 2 | version, 1 |
/// | 2 | entry count, at most 253 (one descriptor each, in order) |
/// | 4 | total payload length in bytes, header included, at most 65536 |
///
/// then per entry: key length (1 byte, 1..=64), key; name length (1 byte,
/// 0 for anonymous, at most 30), name; flags (1 byte: bit 0 read-only, the
/// others zero); size (8 bytes).
///
/// ```
/// use memshare::share::{decode_message, encode_message, MessageEntry};
/// let entries = vec![MessageEntry { key: "a".into(), name: None, len: 4096, readonly: true }];
/// assert_eq!(decode_message(&encode_message(&entries).unwrap()).unwrap(), entries);
/// ```
pub fn encode_message(entries: &[MessageEntry]) -> Result<Vec<u8>> {
    if entries.len() > MAX_ENTRIES {
        return Err(Error::OutOfRange {
            object: "segment message".into(),
            detail: format!(
                "{} segments, at most {} fit in one message",
                entries.len(),
                MAX_ENTRIES
            ),
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * 48);
    out.extend_from_slice(&MESSAGE_MAGIC);
    out.extend_from_slice(&MESSAGE_VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // total length, filled in below
    for entry in entries {
        check_key(&entry.key).map_err(|reason| Error::InvalidInput {
            object: format!("key {:?}", entry.key),
            reason: reason.into(),
        })?;
        out.push(entry.key.len() as u8);
        out.extend_from_slice(entry.key.as_bytes());
        let name = entry.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            validate_name(name)?;
        }
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(u8::from(entry.readonly));
        out.extend_from_slice(&entry.len.to_le_bytes());
    }
    let total = out.len() as u32;
    out[8..12].copy_from_slice(&total.to_le_bytes());
    Ok(out)
}

/// How long the message that starts with `buf` is, once the header is in.
pub(super) fn message_len(buf: &[u8]) -> Result<usize> {
    if buf.len() >= 4 && buf[..4] != MESSAGE_MAGIC {
        return Err(corrupt("bad magic: not a memshare segment message".into()));
    }
    if buf.len() < HEADER_LEN {
        return Ok(HEADER_LEN);
    }
    let total = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&total) {
        return Err(corrupt(format!("declared length {total} is out of range")));
    }
    Ok(total)
}

pub(super) fn corrupt(reason: String) -> Error {
    Error::InvalidHandle {
        object: "segment message".into(),
        reason,
    }
}

/// Decodes and checks a segment message payload (format on
/// [`encode_message`]). Any inconsistency is an [`Error::InvalidHandle`].
pub fn decode_message(buf: &[u8]) -> Result<Vec<MessageEntry>> {
    if buf.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes: shorter than the header",
            buf.len()
        )));
    }
    if buf[..4] != MESSAGE_MAGIC {
        return Err(corrupt("bad magic: not a memshare segment message".into()));
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    if version != MESSAGE_VERSION {
        return Err(corrupt(format!(
            "version {version}, this library speaks {MESSAGE_VERSION}"
        )));
    }
    let count = usize::from(u16::from_le_bytes([buf[6], buf[7]]));
    if count > MAX_ENTRIES {
        return Err(corrupt(format!("{count} entries: too many")));
    }
    if message_len(buf)? != buf.len() {
        return Err(corrupt("declared length does not match the payload".into()));
    }
    let mut rest = &buf[HEADER_LEN..];
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(corrupt("payload ends in the middle of an entry".into()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = usize::from(take(1)?[0]);
        let key = std::str::from_utf8(take(key_len)?)
            .map_err(|_| corrupt("a key is not UTF-8".into()))?
            .to_owned();
        check_key(&key).map_err(|reason| corrupt(format!("key {key:?}: {reason}")))?;
        let name_len = usize::from(take(1)?[0]);
        let name = std::str::from_utf8(take(name_len)?)
            .map_err(|_| corrupt("a name is not UTF-8".into()))?;
        let name = if name.is_empty() {
            None
        } else {
            // The sender's mistake, or a lie: about the message, not a name
            // this process chose.
            validate_name(name).map_err(|e| corrupt(format!("name {name:?}: {e}")))?;
            Some(name.to_owned())
        };
        let flags = take(1)?[0];
        if flags & !1 != 0 {
            return Err(corrupt(format!("unknown flags {flags:#x}")));
        }
        let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        if entries.iter().any(|e: &MessageEntry| e.key == key) {
            return Err(corrupt(format!("key {key:?} appears twice")));
        }
        entries.push(MessageEntry {
            key,
            name,
            len,
            readonly: flags & 1 != 0,
        });
    }
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last entry",
            rest.len()
        )));
    }
    Ok(entries)
}
