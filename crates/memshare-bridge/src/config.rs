//! The bridge's configuration: which services it carries, under which
//! key expressions, and how its Zenoh session connects. Read from a TOML
//! file ([`Config::from_file`]) or built in code; `memshare-bridge`'s flags
//! add to it. docs/bridge.md has the reference with an example.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use memshare::pubsub::{Overflow, ServiceConfig};
use memshare::rpc::ServerConfig;
use serde::Deserialize;

use crate::wire::ORIGIN_LEN;
use crate::{Error, Result};

/// The endpoint a bridge listens on unless told otherwise: loopback only,
/// Zenoh's usual port. Nothing off this machine can reach it.
pub const DEFAULT_LISTEN: &str = "tcp/127.0.0.1:7447";

/// The key expressions of services are `memshare/<service>` unless
/// configured.
pub const DEFAULT_KEY_PREFIX: &str = "memshare";

/// The longest `timeout_ms` of a request/response service: 10 minutes.
/// (A stopping bridge does not wait for it: a call in the local server is
/// given up within 20 ms.)
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// A bridge's whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Zenoh session.
    #[serde(default)]
    pub zenoh: ZenohConfig,
    /// Publish-subscribe services to carry (`[[pubsub]]` tables).
    #[serde(default)]
    pub pubsub: Vec<PubsubConfig>,
    /// Request/response services to carry (`[[rpc]]` tables).
    #[serde(default)]
    pub rpc: Vec<RpcConfig>,
}

/// Zenoh session settings (`[zenoh]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZenohConfig {
    /// `peer` (the default) or `client` (through a Zenoh router).
    #[serde(default)]
    pub mode: Mode,
    /// Endpoints to listen on; unset: [`DEFAULT_LISTEN`] in peer mode,
    /// none in client mode. `[]` listens nowhere.
    pub listen: Option<Vec<String>>,
    /// Endpoints to connect to (the other bridge, or a router). Zenoh keeps
    /// trying them, and reconnects when a link drops.
    #[serde(default)]
    pub connect: Vec<String>,
    /// Find peers by UDP multicast (off unless asked: a bridge talks to
    /// the endpoints it is given).
    #[serde(default)]
    pub multicast_scouting: bool,
    /// A Zenoh configuration file (JSON5) for everything else: TLS, access
    /// control, user/password authentication, timeouts. `mode`, `listen`,
    /// `connect` and multicast scouting are the bridge's own settings and
    /// override the file's.
    pub config_file: Option<PathBuf>,
}

/// Zenoh's session mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Talks to other peers directly.
    #[default]
    Peer,
    /// Talks to one router, which routes for it.
    Client,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "peer" => Ok(Mode::Peer),
            "client" => Ok(Mode::Client),
            other => Err(format!("mode {other:?} is neither \"peer\" nor \"client\"")),
        }
    }
}

/// Which way a publish-subscribe service is carried.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local messages go out, remote messages come in (the default; no
    /// message ever loops back).
    #[default]
    Both,
    /// Local messages go out only.
    Out,
    /// Remote messages come in only.
    In,
}

impl Direction {
    /// Whether local messages are sent out.
    pub fn out(self) -> bool {
        matches!(self, Direction::Both | Direction::Out)
    }

    /// Whether remote messages are published locally.
    pub fn into_local(self) -> bool {
        matches!(self, Direction::Both | Direction::In)
    }
}

/// A publish-subscribe service to carry (`[[pubsub]]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PubsubConfig {
    /// The local service's name (the same on every machine).
    pub service: String,
    /// Its Zenoh key expression; unset: `memshare/<service>`.
    pub key: Option<String>,
    /// Which way it is carried.
    #[serde(default)]
    pub direction: Direction,
    /// Put a 32-byte [`Origin`](crate::wire::Origin) header in front of
    /// every message published locally, so local subscribers can see the
    /// original publisher and sequence number.
    #[serde(default)]
    pub origin_header: bool,
    /// The shape of the local service, if the bridge creates it: it then
    /// creates it when it starts (so local subscribers can attach before
    /// anything comes). Unset: created when the first message comes, with
    /// the origin's shape, carried in each message.
    pub create: Option<ShapeConfig>,
}

/// The shape of a publish-subscribe service (`[pubsub.create]`): each field
/// unset takes [`ServiceConfig::new`]'s value.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShapeConfig {
    /// See [`ServiceConfig::max_publishers`].
    pub max_publishers: Option<u32>,
    /// See [`ServiceConfig::max_subscribers`].
    pub max_subscribers: Option<u32>,
    /// See [`ServiceConfig::max_message_len`].
    pub max_message_len: Option<u64>,
    /// See [`ServiceConfig::depth`].
    pub depth: Option<u32>,
    /// See [`ServiceConfig::history`].
    pub history: Option<u32>,
    /// See [`ServiceConfig::max_held`].
    pub max_held: Option<u32>,
    /// `"block"` or `"drop-oldest"`.
    pub overflow: Option<OverflowConfig>,
}

/// [`Overflow`], as the configuration spells it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowConfig {
    /// [`Overflow::Block`].
    Block,
    /// [`Overflow::DropOldest`].
    DropOldest,
}

impl ShapeConfig {
    /// The service configuration it describes.
    pub fn service_config(&self) -> ServiceConfig {
        let d = ServiceConfig::new();
        d.max_publishers(self.max_publishers.unwrap_or(d.get_max_publishers()))
            .max_subscribers(self.max_subscribers.unwrap_or(d.get_max_subscribers()))
            .max_message_len(self.max_message_len.unwrap_or(d.get_max_message_len()))
            .depth(self.depth.unwrap_or(d.get_depth()))
            .history(self.history.unwrap_or(d.get_history()))
            .max_held(self.max_held.unwrap_or(d.get_max_held()))
            .overflow(match self.overflow {
                None => d.get_overflow(),
                Some(OverflowConfig::Block) => Overflow::Block,
                Some(OverflowConfig::DropOldest) => Overflow::DropOldest,
            })
    }
}

/// Where the server of a request/response service runs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServerSide {
    /// On this machine: the bridge answers remote calls by calling it.
    Local,
    /// On another machine: the bridge serves the name here and forwards
    /// each request there.
    Remote,
}

/// A request/response service to carry (`[[rpc]]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RpcConfig {
    /// The service's name (the same on every machine).
    pub service: String,
    /// Its Zenoh key expression; unset: `memshare/<service>`.
    pub key: Option<String>,
    /// Where its server is.
    pub server: ServerSide,
    /// `server = "local"`: how many remote calls may be in the local server
    /// at once (each is a client of it). Default 4.
    pub clients: Option<u32>,
    /// How long a call may take end to end, in milliseconds (default
    /// 10000): `server = "remote"`: the Zenoh query's timeout;
    /// `server = "local"`: the wait for the local server's response.
    pub timeout_ms: Option<u64>,
    /// `server = "remote"`: the shape of the local stand-in server (each
    /// field unset takes [`ServerConfig::new`]'s value).
    pub create: Option<RpcShapeConfig>,
}

/// The shape of a stand-in server (`[rpc.create]`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RpcShapeConfig {
    /// See [`ServerConfig::max_clients`].
    pub max_clients: Option<u32>,
    /// See [`ServerConfig::max_in_flight`].
    pub max_in_flight: Option<u32>,
    /// See [`ServerConfig::max_request_len`].
    pub max_request_len: Option<u64>,
    /// See [`ServerConfig::max_response_len`].
    pub max_response_len: Option<u64>,
}

impl RpcShapeConfig {
    /// The server configuration it describes.
    pub fn server_config(&self) -> ServerConfig {
        let d = ServerConfig::new();
        d.max_clients(self.max_clients.unwrap_or(d.get_max_clients()))
            .max_in_flight(self.max_in_flight.unwrap_or(d.get_max_in_flight()))
            .max_request_len(self.max_request_len.unwrap_or(d.get_max_request_len()))
            .max_response_len(self.max_response_len.unwrap_or(d.get_max_response_len()))
    }
}

impl RpcConfig {
    /// Concurrent calls into a local server.
    pub fn clients(&self) -> u32 {
        self.clients.unwrap_or(4)
    }

    /// The end-to-end timeout of a call.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.unwrap_or(10_000))
    }
}

impl PubsubConfig {
    /// A service carried both ways under its default key.
    pub fn new(service: &str) -> PubsubConfig {
        PubsubConfig {
            service: service.to_owned(),
            key: None,
            direction: Direction::Both,
            origin_header: false,
            create: None,
        }
    }

    /// Its key expression.
    pub fn key(&self) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_KEY_PREFIX}/{}", self.service))
    }
}

impl RpcConfig {
    /// A service whose server is on `side`, under its default key.
    pub fn new(service: &str, side: ServerSide) -> RpcConfig {
        RpcConfig {
            service: service.to_owned(),
            key: None,
            server: side,
            clients: None,
            timeout_ms: None,
            create: None,
        }
    }

    /// Its key expression.
    pub fn key(&self) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_KEY_PREFIX}/{}", self.service))
    }
}

impl Config {
    /// Reads and checks a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::from_toml(&text, &path.display().to_string())?;
        Ok(config)
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
        config.check(origin)?;
        Ok(config)
    }

    /// Checks the rules a file cannot express: valid service names and key
    /// expressions (no wildcards), each service and key named once,
    /// endpoints Zenoh can parse, sane limits.
    pub fn check(&self, origin: &str) -> Result<()> {
        let bad = |detail: String| {
            Err(Error::Config {
                origin: origin.to_owned(),
                detail,
            })
        };
        let mut services = HashSet::new();
        let mut keys = HashSet::new();
        let named = self
            .pubsub
            .iter()
            .map(|p| (p.service.as_str(), p.key()))
            .chain(self.rpc.iter().map(|r| (r.service.as_str(), r.key())));
        for (service, key) in named {
            if let Err(e) = memshare::validate_name(service) {
                return bad(e.to_string());
            }
            if !services.insert(service.to_owned()) {
                return bad(format!(
                    "service {service:?} is named twice (a name is one service, of one kind)"
                ));
            }
            if let Err(detail) = check_key(&key) {
                return bad(format!("service {service:?}: key {key:?}: {detail}"));
            }
            if !keys.insert(key.clone()) {
                return bad(format!("key {key:?} is given to two services"));
            }
        }
        for p in &self.pubsub {
            let service = &p.service;
            if p.direction == Direction::Out {
                if p.create.is_some() {
                    return bad(format!(
                        "service {service:?}: [pubsub.create] shapes the service the bridge \
                         publishes into, but direction = \"out\" publishes nothing here"
                    ));
                }
                if p.origin_header {
                    return bad(format!(
                        "service {service:?}: origin_header heads the messages the bridge \
                         publishes here, but direction = \"out\" publishes nothing here"
                    ));
                }
            }
            if let Some(shape) = p.create.map(|c| c.service_config()) {
                let publishers = shape.get_max_publishers();
                if p.direction == Direction::Both && publishers < 2 {
                    return bad(format!(
                        "service {service:?}: [pubsub.create] max_publishers = {publishers}, \
                         but direction = \"both\" needs 2 (the bridge's publisher and a local one)"
                    ));
                }
                let max = shape.get_max_message_len();
                if p.origin_header && max < ORIGIN_LEN as u64 {
                    return bad(format!(
                        "service {service:?}: [pubsub.create] max_message_len = {max} leaves no \
                         room for the {ORIGIN_LEN}-byte origin header"
                    ));
                }
            }
        }
        for r in &self.rpc {
            if r.clients.is_some() && r.server == ServerSide::Remote {
                return bad(format!(
                    "service {:?}: clients is how many calls go into a local server at once, \
                     but its server is remote",
                    r.service
                ));
            }
            if r.clients() == 0 || r.clients() > 256 {
                return bad(format!(
                    "service {:?}: clients = {} (1 to 256)",
                    r.service,
                    r.clients()
                ));
            }
            let timeout = r.timeout().as_millis();
            if timeout == 0 || timeout > u128::from(MAX_TIMEOUT_MS) {
                return bad(format!(
                    "service {:?}: timeout_ms = {timeout} (1 to {MAX_TIMEOUT_MS})",
                    r.service
                ));
            }
            if r.create.is_some() && r.server == ServerSide::Local {
                return bad(format!(
                    "service {:?}: [rpc.create] shapes a stand-in, but its server is local",
                    r.service
                ));
            }
        }
        for endpoint in self.listen().iter().chain(&self.zenoh.connect) {
            if let Err(e) = zenoh::config::EndPoint::from_str(endpoint) {
                return bad(format!("endpoint {endpoint:?}: {e}"));
            }
        }
        Ok(())
    }

    /// The endpoints the session listens on.
    pub fn listen(&self) -> Vec<String> {
        match (&self.zenoh.listen, self.zenoh.mode) {
            (Some(listen), _) => listen.clone(),
            (None, Mode::Peer) => vec![DEFAULT_LISTEN.to_owned()],
            (None, Mode::Client) => Vec::new(),
        }
    }

    /// The Zenoh configuration of the session: the Zenoh file if one is
    /// named, with the bridge's mode, endpoints and scouting set over it.
    pub fn zenoh_config(&self) -> Result<zenoh::Config> {
        let file_err = |e: zenoh::Error| Error::zenoh("reading the Zenoh configuration file", e);
        let mut config = match &self.zenoh.config_file {
            Some(path) => zenoh::Config::from_file(path).map_err(file_err)?,
            None => zenoh::Config::default(),
        };
        let mode = match self.zenoh.mode {
            Mode::Peer => "peer",
            Mode::Client => "client",
        };
        let settings = [
            ("mode", serde_json::json!(mode)),
            ("listen/endpoints", serde_json::json!(self.listen())),
            ("connect/endpoints", serde_json::json!(self.zenoh.connect)),
            (
                "scouting/multicast/enabled",
                serde_json::json!(self.zenoh.multicast_scouting),
            ),
        ];
        for (key, value) in settings {
            let value = value.to_string();
            config
                .insert_json5(key, &value)
                .map_err(|e| Error::zenoh(format!("setting {key} = {value}"), e))?;
        }
        Ok(config)
    }
}

/// Why `key` is not a key expression the bridge can use: it must be a
/// valid Zenoh key expression without wildcards (it names one service).
fn check_key(key: &str) -> Result<(), String> {
    let ke = zenoh::key_expr::KeyExpr::try_from(key).map_err(|e| e.to_string())?;
    if ke.is_wild() {
        return Err("has a wildcard: a key names exactly one service".into());
    }
    if ke.as_str().split('/').any(|chunk| chunk.starts_with('@')) {
        return Err("has a chunk starting with '@' (reserved by Zenoh)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[zenoh]
mode = "peer"
listen = ["tcp/127.0.0.1:7450"]
connect = ["tcp/127.0.0.1:7451"]

[[pubsub]]
service = "camera"
key = "site/camera"
direction = "in"
origin_header = true

[pubsub.create]
depth = 64
overflow = "block"
max_message_len = 1048576

[[rpc]]
service = "calc"
server = "remote"
timeout_ms = 500

[rpc.create]
max_clients = 4
"#;

    #[test]
    fn the_documented_example_reads() {
        let c = Config::from_toml(EXAMPLE, "example").unwrap();
        assert_eq!(c.pubsub[0].key(), "site/camera");
        assert_eq!(c.pubsub[0].direction, Direction::In);
        let shape = c.pubsub[0].create.unwrap().service_config();
        assert_eq!(shape.get_depth(), 64);
        assert_eq!(shape.get_overflow(), Overflow::Block);
        assert_eq!(shape.get_max_subscribers(), 8);
        assert_eq!(c.rpc[0].key(), "memshare/calc");
        assert_eq!(c.rpc[0].timeout().as_millis(), 500);
        assert_eq!(
            c.rpc[0].create.unwrap().server_config().get_max_clients(),
            4
        );
        c.zenoh_config().unwrap();
    }

    #[test]
    fn defaults_listen_on_loopback_only_and_scout_nowhere() {
        let c = Config::from_toml("", "empty").unwrap();
        assert_eq!(c.listen(), vec![DEFAULT_LISTEN.to_owned()]);
        assert!(!c.zenoh.multicast_scouting);
        let z = c.zenoh_config().unwrap();
        let text = format!("{z}");
        assert!(text.contains("127.0.0.1:7447"), "{text}");
        let client = Config::from_toml("[zenoh]\nmode = \"client\"", "client").unwrap();
        assert!(client.listen().is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[[pubsub]]\nservice = \"a/b\"", "path separator"),
            ("[[pubsub]]\nservice = \"a\"\nkey = \"x/*\"", "wildcard"),
            ("[[pubsub]]\nservice = \"a\"\nkey = \"x/@y\"", "'@'"),
            (
                "[[pubsub]]\nservice = \"a\"\n[[rpc]]\nservice = \"a\"\nserver = \"local\"",
                "named twice",
            ),
            (
                "[[pubsub]]\nservice = \"a\"\nkey = \"k\"\n[[pubsub]]\nservice = \"b\"\nkey = \"k\"",
                "two services",
            ),
            ("[zenoh]\nconnect = [\"nonsense\"]", "nonsense"),
            ("[zenoh]\nmode = \"router\"", "router"),
            ("[[pubsub]]\nservice = \"a\"\ncolour = 1", "colour"),
            (
                "[[rpc]]\nservice = \"a\"\nserver = \"local\"\nclients = 0",
                "clients = 0",
            ),
            (
                "[[rpc]]\nservice = \"a\"\nserver = \"local\"\n[rpc.create]\nmax_clients = 1",
                "stand-in",
            ),
            (
                "[[pubsub]]\nservice = \"a\"\n[pubsub.create]\nmax_publishers = 1",
                "service \"a\": [pubsub.create] max_publishers = 1",
            ),
            (
                "[[pubsub]]\nservice = \"a\"\ndirection = \"in\"\norigin_header = true\n[pubsub.create]\nmax_message_len = 31",
                "service \"a\": [pubsub.create] max_message_len = 31 leaves no room",
            ),
            (
                "[[rpc]]\nservice = \"a\"\nserver = \"remote\"\nclients = 2",
                "service \"a\": clients is how many",
            ),
            (
                "[[pubsub]]\nservice = \"a\"\ndirection = \"out\"\n[pubsub.create]\ndepth = 4",
                "service \"a\": [pubsub.create] shapes",
            ),
            (
                "[[pubsub]]\nservice = \"a\"\ndirection = \"out\"\norigin_header = true",
                "service \"a\": origin_header heads",
            ),
            (
                "[[rpc]]\nservice = \"a\"\nserver = \"local\"\ntimeout_ms = 0",
                "timeout_ms = 0 (1 to 600000)",
            ),
            (
                "[[rpc]]\nservice = \"a\"\nserver = \"remote\"\ntimeout_ms = 600001",
                "timeout_ms = 600001 (1 to 600000)",
            ),
        ];
        for (text, needle) in cases {
            let e = Config::from_toml(text, "test").unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
