//! `memshare info NAME`: everything `ls` knows about one segment, and the
//! processes that have it open.

use memshare::{NamedInfo, SegmentKind};
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
    /// /proc could not be searched) instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    entry: Entry,
    pids: Option<Vec<u32>>,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let info = memshare::named_info(&args.name)?;
    // Best effort: the segment may vanish, /proc may be hidden.
    let pids = memshare::holder_pids(&args.name).ok();
    let entry = Entry::new(&info, &Users::load());
    if args.json {
        return super::print_json(&Report { entry, pids });
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
    fields.extend(contents_fields(&info));
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

/// The lines that say what the segment holds: its kind, for now.
///
/// This is where a channel's header will be decoded and shown (capacity,
/// positions, peers…) when `kind` is [`SegmentKind::Channel`]; everything
/// `info` prints about a segment's contents goes through here.
fn contents_fields(info: &NamedInfo) -> Vec<(&'static str, String)> {
    match info.kind {
        // A channel: decode its header here, after the kind.
        Some(SegmentKind::Channel) => vec![("kind", "channel".to_owned())],
        Some(kind) => vec![("kind", kind.to_string())],
        None => vec![("kind", "? (cannot open it)".to_owned())],
    }
}
