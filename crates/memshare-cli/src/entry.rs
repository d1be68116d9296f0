//! One named segment as `ls` and `info` show it, to people and in JSON.

use memshare::inspect::NamedInfo;
use serde::Serialize;

use crate::owner::Users;
use crate::service::{alive_counts, Alive, ServiceState};
use crate::size::format_size;

/// What is known about one named segment; `null` in JSON (`?` for people)
/// where the segment could not be opened.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The segment's name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The owner's name, or uid if it has none.
    pub owner: String,
    /// The owner's uid.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
    /// Permission bits in octal, as `0600`.
    pub mode: String,
    /// How many open objects hold its lock (memshare's holders).
    pub holders: usize,
    /// `shared`, `persist` or `foreign`.
    pub lifetime: Option<String>,
    /// Shared lifetime and no holder left: `memshare gc` removes it.
    pub stale: bool,
    /// `channel`, `pubsub`, `rpc` or `bytes`.
    pub kind: Option<String>,
    /// For a publish-subscribe service: how many publishers are attached
    /// and alive (`null` for other kinds, or if it could not be read).
    pub publishers: Option<usize>,
    /// The same for subscribers.
    pub subscribers: Option<usize>,
    /// For a request/response service: whether its server is attached and
    /// alive (`null` for other kinds, or if it could not be read).
    pub server_alive: Option<bool>,
    /// For a request/response service: how many clients are connected and
    /// alive (`null` for other kinds, or if it could not be read).
    pub clients: Option<usize>,
    /// Whether the name follows memshare's naming rules; `false` for names
    /// other programs made that memshare cannot open (`iox2_…`).
    pub valid_name: bool,
}

impl Entry {
    /// The entry for `info`, with owner names from `users`, and for a
    /// service the state `service` read
    /// ([`service_state`](crate::service::service_state)).
    pub fn new(
        info: &NamedInfo,
        users: &Users,
        service: Option<&Result<ServiceState, String>>,
    ) -> Entry {
        let alive = alive_counts(info, service);
        let (publishers, subscribers) = match alive {
            Some(Alive::Pubsub {
                publishers,
                subscribers,
            }) => (Some(publishers), Some(subscribers)),
            _ => (None, None),
        };
        let (server_alive, clients) = match alive {
            Some(Alive::Rpc { server, clients }) => (Some(server), Some(clients)),
            _ => (None, None),
        };
        Entry {
            name: info.name.clone(),
            size: info.len,
            owner: users.name(info.uid),
            uid: info.uid,
            gid: info.gid,
            mode: format!("{:04o}", info.mode),
            holders: info.holders,
            lifetime: info.lifetime.map(|l| l.to_string()),
            stale: info.is_stale(),
            kind: info.kind.map(|k| k.to_string()),
            publishers,
            subscribers,
            server_alive,
            clients,
            valid_name: info.valid_name,
        }
    }

    /// The name for people: control characters escaped (a name another
    /// program made may hold any), and [`INVALID_MARK`] after a name
    /// memshare cannot open.
    pub fn name_text(&self) -> String {
        let mut text: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().collect()
                } else {
                    c.to_string()
                }
            })
            .collect();
        if !self.valid_name {
            text.push(INVALID_MARK);
        }
        text
    }

    /// The size for people: exact, with a unit where one divides it.
    pub fn size_text(&self) -> String {
        format_size(self.size)
    }

    /// The endpoints alive: for a publish-subscribe service
    /// `PUBLISHERS/SUBSCRIBERS`, for a request/response service
    /// `SERVER/CLIENTS` (the server 1 or 0); `?` if unknown; nothing for
    /// other kinds.
    pub fn endpoints_text(&self) -> String {
        match (
            self.publishers,
            self.subscribers,
            self.server_alive,
            self.clients,
        ) {
            (Some(publishers), Some(subscribers), _, _) => format!("{publishers}/{subscribers}"),
            (_, _, Some(server), Some(clients)) => format!("{}/{clients}", u8::from(server)),
            _ if matches!(self.kind.as_deref(), Some("pubsub" | "rpc")) => "?".to_owned(),
            _ => String::new(),
        }
    }

    /// `yes` or `no`.
    pub fn stale_text(&self) -> &'static str {
        if self.stale {
            "yes"
        } else {
            "no"
        }
    }
}

/// Marks, after its name, a segment whose name memshare cannot open.
pub const INVALID_MARK: char = '*';

/// What [`INVALID_MARK`] means, for the line under a table that shows it.
pub const INVALID_LEGEND: &str = "* not a name memshare can open (another program made it; \
memshare's names are 1 to 30 of A-Z a-z 0-9 . _ -, not starting with '.')";

/// A cell for a value that may be unknown.
pub fn or_unknown(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "?".to_owned())
}
