//! `memshare ls`: the named segments on this machine.

use crate::entry::{or_unknown, Entry, INVALID_LEGEND};
use crate::fail::Failure;
use crate::owner::Users;
use crate::service::service_state;
use crate::table::{Align, Table};

/// List the named segments on this machine
///
/// One line per segment: its size, owner, mode, holders (processes that
/// have it open with memshare's lock; other programs' objects usually have
/// none), lifetime (shared: removed with its last holder; persist: stays
/// until `memshare rm`; foreign: made by another program, lives like a file),
/// whether it is stale (shared, and every holder died: `memshare gc`
/// removes it) and what it holds (channel, pubsub, rpc or bytes).
/// ENDPOINTS counts the endpoints of a service that are attached and
/// alive: for a publish-subscribe service PUBLISHERS/SUBSCRIBERS (`2/5`),
/// for a request/response service SERVER/CLIENTS (`1/3`: the server is
/// there, 3 clients; `0/1`: the server died or left, one client still
/// holds the service). `?` marks what cannot be known without
/// opening the segment (another user's). Every shared-memory
/// object is listed: `*` after a name marks one that memshare's naming rules
/// refuse (another program made it), which memshare cannot open.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print a JSON array of objects (name, size, owner, uid, gid, mode,
    /// holders, lifetime, stale, kind, publishers and subscribers: the
    /// alive ones of a publish-subscribe service, else null; server_alive
    /// (true or false) and clients (the alive ones) of a request/response
    /// service, else null; valid_name: false for a name memshare cannot
    /// open) instead of a table
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let users = Users::load();
    let entries: Vec<Entry> = memshare::inspect::list_named()?
        .iter()
        .map(|info| Entry::new(info, &users, service_state(info).as_ref()))
        .collect();
    if args.json {
        return super::print_json(&entries);
    }
    if entries.is_empty() {
        return super::print_stdout("no named segments\n");
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("SIZE", Align::Right),
        ("OWNER", Align::Left),
        ("MODE", Align::Left),
        ("HOLDERS", Align::Right),
        ("LIFETIME", Align::Left),
        ("STALE", Align::Left),
        ("KIND", Align::Left),
        ("ENDPOINTS", Align::Right),
    ]);
    for entry in &entries {
        table.push(vec![
            entry.name_text(),
            entry.size_text(),
            entry.owner.clone(),
            entry.mode.clone(),
            entry.holders.to_string(),
            or_unknown(&entry.lifetime),
            entry.stale_text().to_owned(),
            or_unknown(&entry.kind),
            entry.endpoints_text(),
        ]);
    }
    let mut text = table.render();
    if entries.iter().any(|entry| !entry.valid_name) {
        text.push_str(INVALID_LEGEND);
        text.push('\n');
    }
    super::print_stdout(&text)
}
