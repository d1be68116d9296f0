//! `memshare info NAME`: everything `ls` knows about one segment, and the
//! processes that have it open.

use memshare::channel::{ChannelState, EndpointState};
use memshare::inspect::{NamedInfo, SegmentKind};
use memshare::pubsub::{self, Overflow};
use memshare::rpc::{RpcState, ServerState};
use serde::Serialize;

use crate::entry::{or_unknown, Entry};
use crate::fail::Failure;
use crate::owner::Users;
use crate::service::{service_state, ServiceState};
use crate::size::format_size;
use crate::table::{Align, Table};

/// Show everything known about one named segment
///
/// What `memshare ls` shows, plus the processes that have the segment open
/// (found in /proc: best effort, only the processes you may look at). For a
/// channel, its header decoded; for a publish-subscribe service, its
/// configuration and every publisher and subscriber slot ever used: the
/// publisher's id and next sequence number, what each subscriber received
/// and missed, how far behind it is (lag: the most messages waiting for it
/// from one publisher) and how many samples it holds; for a
/// request/response service, its configuration, its server (state, pid,
/// whether a newer server took the name) and every client region in use:
/// the client's id and pid, whether it is alive, whether the server
/// evicted it (it broke the protocol), the requests it sent and how many
/// are in flight. A stale service (every holder died) is not opened: that
/// would remove it (`memshare gc` does).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The segment's name
    name: String,
    /// Print a JSON object (the fields of `ls --json`, `pids`: null if
    /// /proc could not be searched, `channel`, `pubsub` and `rpc`: what
    /// they hold, or null) instead of text. If it fails, the
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
    /// For a publish-subscribe service: its configuration and endpoints.
    pubsub: Option<PubsubJson>,
    /// For a request/response service: its configuration, server and
    /// clients.
    rpc: Option<RpcJson>,
}

/// A request/response service's state as JSON.
#[derive(Serialize)]
struct RpcJson {
    max_clients: u32,
    max_in_flight: u32,
    max_request_len: u64,
    max_response_len: u64,
    server: ServerJson,
    clients: Vec<ClientJson>,
}

#[derive(Serialize)]
struct ServerJson {
    state: String,
    pid: u32,
    retired: bool,
}

#[derive(Serialize)]
struct ClientJson {
    slot: u32,
    id: String,
    state: String,
    evicted: bool,
    pid: u32,
    sent: u64,
    in_flight: u32,
}

impl From<&RpcState> for RpcJson {
    fn from(s: &RpcState) -> RpcJson {
        let c = &s.config;
        RpcJson {
            max_clients: c.get_max_clients(),
            max_in_flight: c.get_max_in_flight(),
            max_request_len: c.get_max_request_len(),
            max_response_len: c.get_max_response_len(),
            server: ServerJson {
                state: endpoint_text(s.server.state),
                pid: s.server.pid,
                retired: s.server.retired,
            },
            clients: s
                .clients
                .iter()
                .map(|c| ClientJson {
                    slot: c.id.slot(),
                    id: c.id.to_string(),
                    state: endpoint_text(c.state),
                    evicted: c.evicted,
                    pid: c.pid,
                    sent: c.sent,
                    in_flight: c.in_flight,
                })
                .collect(),
        }
    }
}

/// A service's state as JSON.
#[derive(Serialize)]
struct PubsubJson {
    max_publishers: u32,
    max_subscribers: u32,
    max_message_len: u64,
    depth: u32,
    history: u32,
    max_held: u32,
    overflow: &'static str,
    publishers: Vec<PublisherJson>,
    subscribers: Vec<SubscriberJson>,
}

#[derive(Serialize)]
struct PublisherJson {
    slot: u32,
    state: String,
    id: String,
    next_sequence: u64,
}

#[derive(Serialize)]
struct SubscriberJson {
    slot: u32,
    state: String,
    received: u64,
    missed: u64,
    lag: u64,
    held: u32,
}

fn overflow_text(policy: Overflow) -> &'static str {
    match policy {
        Overflow::Block => "block",
        Overflow::DropOldest => "drop-oldest",
    }
}

impl From<&pubsub::ServiceState> for PubsubJson {
    fn from(s: &pubsub::ServiceState) -> PubsubJson {
        let c = &s.config;
        PubsubJson {
            max_publishers: c.get_max_publishers(),
            max_subscribers: c.get_max_subscribers(),
            max_message_len: c.get_max_message_len(),
            depth: c.get_depth(),
            history: c.get_history(),
            max_held: c.get_max_held(),
            overflow: overflow_text(c.get_overflow()),
            publishers: s
                .publishers
                .iter()
                .map(|p| PublisherJson {
                    slot: p.slot,
                    state: endpoint_text(p.state),
                    id: p.id.to_string(),
                    next_sequence: p.next_sequence,
                })
                .collect(),
            subscribers: s
                .subscribers
                .iter()
                .map(|s| SubscriberJson {
                    slot: s.slot,
                    state: endpoint_text(s.state),
                    received: s.received,
                    missed: s.missed,
                    lag: s.lag,
                    held: s.held,
                })
                .collect(),
        }
    }
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
    let service = service_state(&info);
    let entry = Entry::new(&info, &Users::load(), service.as_ref());
    let channel = channel_state(&args.name, &info);
    if args.json {
        let channel = channel
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .map(ChannelJson::from);
        let service = service.as_ref().and_then(|s| s.as_ref().ok());
        let pubsub = match service {
            Some(ServiceState::Pubsub(s)) => Some(PubsubJson::from(s)),
            _ => None,
        };
        let rpc = match service {
            Some(ServiceState::Rpc(s)) => Some(RpcJson::from(s)),
            _ => None,
        };
        return super::print_json(&Report {
            entry,
            pids,
            channel,
            pubsub,
            rpc,
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
    fields.extend(contents_fields(&info, channel.as_ref(), service.as_ref()));
    let service = service.as_ref().and_then(|s| s.as_ref().ok());
    match service {
        Some(ServiceState::Pubsub(service)) => fields.extend(config_fields(service, &entry)),
        Some(ServiceState::Rpc(service)) => fields.extend(rpc_fields(service, &entry)),
        None => {}
    }
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    let mut text: String = fields
        .iter()
        .map(|(label, value)| format!("{:<width$} {value}\n", format!("{label}:")))
        .collect();
    match service {
        Some(ServiceState::Pubsub(service)) => text.push_str(&endpoint_tables(service)),
        Some(ServiceState::Rpc(service)) => text.push_str(&client_table(service)),
        None => {}
    }
    super::print_stdout(&text)
}

/// A request/response service's server, configuration, and how many
/// clients are alive.
fn rpc_fields(service: &RpcState, entry: &Entry) -> Vec<(&'static str, String)> {
    let c = &service.config;
    let clients = entry
        .clients
        .map_or_else(|| "?".to_owned(), |n| n.to_string());
    let len = |n: u64| format!("{} ({n} bytes)", format_size(n));
    vec![
        ("server", server_text(&service.server)),
        (
            "clients",
            format!("{clients} alive, at most {}", c.get_max_clients()),
        ),
        ("max in flight", c.get_max_in_flight().to_string()),
        ("max request len", len(c.get_max_request_len())),
        ("max response len", len(c.get_max_response_len())),
    ]
}

/// The server's state, its pid, and whether it was retired.
fn server_text(server: &ServerState) -> String {
    let mut text = endpoint_text(server.state);
    if server.pid != 0 {
        text.push_str(&format!(", pid {}", server.pid));
    }
    if server.retired {
        text.push_str(", retired (the name is no longer this service's)");
    }
    text
}

/// A table of the client regions in use (the state last: the one long
/// cell).
fn client_table(service: &RpcState) -> String {
    if service.clients.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&[
        ("CLIENT", Align::Right),
        ("ID", Align::Left),
        ("PID", Align::Right),
        ("SENT", Align::Right),
        ("IN FLIGHT", Align::Right),
        ("EVICTED", Align::Left),
        ("STATE", Align::Left),
    ]);
    for c in &service.clients {
        table.push(vec![
            c.id.slot().to_string(),
            c.id.to_string(),
            c.pid.to_string(),
            c.sent.to_string(),
            c.in_flight.to_string(),
            if c.evicted { "yes" } else { "no" }.to_owned(),
            endpoint_text(c.state),
        ]);
    }
    format!("\n{}", table.render())
}

/// A service's configuration, and how many of its endpoints are alive.
fn config_fields(service: &pubsub::ServiceState, entry: &Entry) -> Vec<(&'static str, String)> {
    let c = &service.config;
    let alive = |n: Option<usize>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    vec![
        (
            "publishers",
            format!(
                "{} alive, at most {}",
                alive(entry.publishers),
                c.get_max_publishers()
            ),
        ),
        (
            "subscribers",
            format!(
                "{} alive, at most {}",
                alive(entry.subscribers),
                c.get_max_subscribers()
            ),
        ),
        (
            "max message len",
            format!(
                "{} ({} bytes)",
                format_size(c.get_max_message_len()),
                c.get_max_message_len()
            ),
        ),
        ("depth", c.get_depth().to_string()),
        ("history", c.get_history().to_string()),
        ("max held", c.get_max_held().to_string()),
        ("overflow", overflow_text(c.get_overflow()).to_owned()),
    ]
}

/// A table of the publisher slots and one of the subscriber slots ever
/// used (the state last: the one long cell).
fn endpoint_tables(service: &pubsub::ServiceState) -> String {
    let mut text = String::new();
    if !service.publishers.is_empty() {
        let mut table = Table::new(&[
            ("PUBLISHER", Align::Right),
            ("ID", Align::Left),
            ("NEXT SEQ", Align::Right),
            ("STATE", Align::Left),
        ]);
        for p in &service.publishers {
            table.push(vec![
                p.slot.to_string(),
                p.id.to_string(),
                p.next_sequence.to_string(),
                endpoint_text(p.state),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    if !service.subscribers.is_empty() {
        let mut table = Table::new(&[
            ("SUBSCRIBER", Align::Right),
            ("RECEIVED", Align::Right),
            ("MISSED", Align::Right),
            ("LAG", Align::Right),
            ("HELD", Align::Right),
            ("STATE", Align::Left),
        ]);
        for s in &service.subscribers {
            table.push(vec![
                s.slot.to_string(),
                s.received.to_string(),
                s.missed.to_string(),
                s.lag.to_string(),
                s.held.to_string(),
                endpoint_text(s.state),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
    }
    text
}

/// The lines that say what the segment holds: its kind and, for a
/// channel, its header decoded; for a service that could not be read, why.
fn contents_fields(
    info: &NamedInfo,
    channel: Option<&Result<ChannelState, String>>,
    service: Option<&Result<ServiceState, String>>,
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
        (Some(kind @ (SegmentKind::Pubsub | SegmentKind::Rpc)), _) => {
            let mut fields = vec![("kind", kind.to_string())];
            match service {
                Some(Ok(_)) => {}
                Some(Err(e)) => fields.push(("service", format!("? ({e})"))),
                None => fields.push((
                    "service",
                    "not opened: it is stale, and opening it would remove it \
                     (memshare gc does)"
                        .to_owned(),
                )),
            }
            fields
        }
        (Some(kind), _) => vec![("kind", kind.to_string())],
        (None, _) => vec![("kind", "? (cannot open it)".to_owned())],
    }
}
