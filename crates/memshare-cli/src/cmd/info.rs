//! `memshare info NAME`: everything `ls` knows about one segment, and the
//! processes that have it open.

use memshare::channel::{ChannelState, EndpointState};
use memshare::inspect::{NamedInfo, SegmentKind};
use serde::Serialize;

use crate::entry::{or_unknown, Entry};
use crate::fail::Failure;
use crate::owner::Users;

/// Show everything known about one named segment
///
/// What `memshare ls` shows, plus the processes that have the segment open
/// (found in /proc: best effort, only the processes you may look at).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The segment's name
    name: String,
    /// Print a JSON object (the fields of `ls --json`, and `pids`: null if
    /// /proc could not be searched) instead of text. If it fails, the
    /// object is {"error": {"kind": K, "message": M}} (K: not_found,
    /// bad_input, permission_denied or other), besides the error line
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    entry: Entry,
    pids: Option<Vec<u32>>,
    /// For a channel: its header, decoded.
    channel: Option<ChannelJson>,
}

/// A channel's state as JSON.
#[derive(Serialize)]
struct ChannelJson {
    capacity: u64,
    write_pos: u64,
    read_pos: u64,
    bytes_pending: Option<u64>,
    messages_pending: Option<u64>,
    sender: String,
    receiver: String,
    sender_parked: bool,
    receiver_parked: bool,
}

fn endpoint_text(state: EndpointState) -> String {
    match state {
        EndpointState::New => "never attached".into(),
        EndpointState::Attached => "attached".into(),
        EndpointState::Dead => "dead (marked attached, its process is gone)".into(),
        EndpointState::Detached => "detached".into(),
        EndpointState::Invalid(v) => format!("invalid state word {v}"),
    }
}

impl From<&ChannelState> for ChannelJson {
    fn from(c: &ChannelState) -> ChannelJson {
        ChannelJson {
            capacity: c.capacity,
            write_pos: c.write_pos,
            read_pos: c.read_pos,
            bytes_pending: c.bytes_pending,
            messages_pending: c.messages_pending,
            sender: endpoint_text(c.sender),
            receiver: endpoint_text(c.receiver),
            sender_parked: c.sender_parked,
            receiver_parked: c.receiver_parked,
        }
    }
}

/// Decodes the channel header of `name`, if it is a channel we can open.
fn channel_state(name: &str, info: &NamedInfo) -> Option<Result<ChannelState, String>> {
    if info.kind != Some(SegmentKind::Channel) {
        return None;
    }
    Some(
        memshare::Segment::open_readonly(name)
            .and_then(|segment| memshare::channel::inspect(&segment))
            .map_err(|e| e.to_string()),
    )
}

/// What is known about the segment `name`. A name memshare's rules refuse
/// that is there all the same (another program's: `ls` lists it) is said
/// to be one memshare cannot open.
fn named_info(name: &str) -> Result<NamedInfo, Failure> {
    match memshare::inspect::named_info(name) {
        Err(memshare::Error::InvalidName { reason, .. })
            if memshare::inspect::list_named()
                .is_ok_and(|all| all.iter().any(|info| info.name == name)) =>
        {
            Err(Failure::usage(format!(
                "{name:?} exists (another program made it), but is not a name memshare \
                 can open: {reason}"
            )))
        }
        other => other.map_err(Failure::from),
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let info = match named_info(&args.name) {
        Ok(info) => info,
        Err(failure) if args.json => return Err(super::json_failure(failure)),
        Err(failure) => return Err(failure),
    };
    // Best effort: the segment may vanish, /proc may be hidden.
    let pids = memshare::inspect::holder_pids(&args.name).ok();
    let entry = Entry::new(&info, &Users::load());
    let channel = channel_state(&args.name, &info);
    if args.json {
        let channel = channel
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .map(ChannelJson::from);
        return super::print_json(&Report {
            entry,
            pids,
            channel,
        });
    }
    let pids_text = match &pids {
        None => "? (could not search /proc)".to_owned(),
        Some(pids) if pids.is_empty() => "none found".to_owned(),
        Some(pids) => pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    };
    let mut fields = vec![
        ("name", entry.name.clone()),
        (
            "size",
            format!("{} ({} bytes)", entry.size_text(), entry.size),
        ),
        (
            "owner",
            format!("{} (uid {}, gid {})", entry.owner, entry.uid, entry.gid),
        ),
        ("mode", entry.mode.clone()),
        ("holders", entry.holders.to_string()),
        ("pids", pids_text),
        ("lifetime", or_unknown(&entry.lifetime)),
        ("stale", entry.stale_text().to_owned()),
    ];
    fields.extend(contents_fields(&info, channel.as_ref()));
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    let text: String = fields
        .iter()
        .map(|(label, value)| format!("{:<width$} {value}\n", format!("{label}:")))
        .collect();
    super::print_stdout(&text)
}

/// The lines that say what the segment holds: its kind and, for a
/// channel, its header decoded.
fn contents_fields(
    info: &NamedInfo,
    channel: Option<&Result<ChannelState, String>>,
) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>| {
        v.map_or("? (the positions contradict each other)".to_owned(), |v| {
            v.to_string()
        })
    };
    match (info.kind, channel) {
        (Some(SegmentKind::Channel), Some(Ok(c))) => vec![
            ("kind", "channel".to_owned()),
            ("capacity", format!("{} bytes", c.capacity)),
            (
                "positions",
                format!("write {} / read {}", c.write_pos, c.read_pos),
            ),
            ("pending bytes", opt(c.bytes_pending)),
            ("pending msgs", opt(c.messages_pending)),
            (
                "sender",
                format!(
                    "{}{}",
                    endpoint_text(c.sender),
                    if c.sender_parked { ", parked" } else { "" }
                ),
            ),
            (
                "receiver",
                format!(
                    "{}{}",
                    endpoint_text(c.receiver),
                    if c.receiver_parked { ", parked" } else { "" }
                ),
            ),
        ],
        (Some(SegmentKind::Channel), Some(Err(e))) => vec![
            ("kind", "channel".to_owned()),
            ("header", format!("? ({e})")),
        ],
        (Some(kind), _) => vec![("kind", kind.to_string())],
        (None, _) => vec![("kind", "? (cannot open it)".to_owned())],
    }
}
