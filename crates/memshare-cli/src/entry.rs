//! One named segment as `ls` and `info` show it, to people and in JSON.

use memshare::inspect::NamedInfo;
use serde::Serialize;

use crate::owner::Users;
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
    /// `channel` or `bytes`.
    pub kind: Option<String>,
}

impl Entry {
    /// The entry for `info`, with owner names from `users`.
    pub fn new(info: &NamedInfo, users: &Users) -> Entry {
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
        }
    }

    /// The size for people: exact, with a unit where one divides it.
    pub fn size_text(&self) -> String {
        format_size(self.size)
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

/// A cell for a value that may be unknown.
pub fn or_unknown(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "?".to_owned())
}
