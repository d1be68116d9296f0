//! Handing segments to a running process over a Unix socket
//! (`SCM_RIGHTS`).

use std::os::unix::net::UnixStream;

use super::message::{
    corrupt, decode_message, encode_message, message_len, MessageEntry, MAX_ENTRIES,
};
use crate::sys::{self, Claim, Object};
use crate::{Result, Segment};

/// Sends segments, each under a key, to the process at the other end of
/// `stream`, in one message (`SCM_RIGHTS`). At most 253 segments.
///
/// Each receiver becomes a holder of its own: a named segment stays alive
/// for it even if the sender drops it right after sending.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// # fn main() -> memshare::Result<()> {
/// let (a, b) = UnixStream::pair().unwrap();
/// let segment = memshare::Segment::create(4096)?;
/// segment.map(..)?.write_at(0, b"over the socket")?;
/// memshare::send_segments(&a, &[("data", &segment)])?;
/// let received = memshare::recv_segments(&b)?;
/// assert_eq!(received[0].0, "data");
/// let mut buf = [0; 15];
/// received[0].1.map_readonly(..)?.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"over the socket");
/// # Ok(()) }
/// ```
pub fn send_segments(stream: &UnixStream, segments: &[(&str, &Segment)]) -> Result<()> {
    let entries: Vec<MessageEntry> = segments
        .iter()
        .map(|(key, segment)| MessageEntry {
            key: (*key).to_owned(),
            name: segment.name().map(str::to_owned),
            len: segment.len(),
            readonly: segment.is_readonly(),
        })
        .collect();
    let payload = encode_message(&entries)?;
    let given = segments
        .iter()
        .map(|(_, segment)| segment.object().handover())
        .collect::<Result<Vec<_>>>()?;
    sys::send_with_fds(stream, &payload, &given)
}

/// Receives the segments one [`send_segments`] call sent, with their keys,
/// in the order they were sent. Every descriptor is checked (see the module
/// docs); on any error, all received descriptors are closed.
///
/// Reads one message and nothing of the next, so messages queued back to
/// back are received one per call. After an error about the message's
/// header itself (not `MSHS`, or a length out of range), where the next
/// message starts is unknown: the stream is out of step, close it. After
/// any other error the whole message was read and the next call receives
/// the next one.
pub fn recv_segments(stream: &UnixStream) -> Result<Vec<(String, Segment)>> {
    let mut buf = Vec::new();
    let fds = sys::recv_with_fds(stream, &mut buf, MAX_ENTRIES, message_len)?;
    let entries = decode_message(&buf)?;
    if fds.len() != entries.len() {
        return Err(corrupt(format!(
            "the message carries {} descriptors but describes {}: all closed",
            fds.len(),
            entries.len()
        )));
    }
    entries
        .into_iter()
        .zip(fds)
        .map(|(entry, fd)| {
            let origin = format!("received segment {:?}", entry.key);
            let claim = Claim {
                name: entry.name,
                len: entry.len,
                readonly: entry.readonly,
                identity: None,
            };
            let object = Object::from_received(fd, &claim, &origin)?;
            Ok((entry.key, Segment::from_object(object)))
        })
        .collect()
}
