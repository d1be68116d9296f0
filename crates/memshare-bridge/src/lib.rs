//! Carries memshare's publish-subscribe and request/response services
//! between machines over [Zenoh](https://zenoh.io): the same named services,
//! unchanged publishers, subscribers, servers and clients, on every machine.
//!
//! A bridge runs on each machine. For a publish-subscribe service it is a
//! subscriber of the local service, whose messages it puts on a Zenoh key
//! expression (`memshare/<service>` by default), and a publisher into the
//! local service of what other bridges put there. For a request/response
//! service it is, on the server's machine, a Zenoh queryable that calls the
//! local server, and on the others a local stand-in server that forwards
//! each request as a Zenoh query.
//!
//! Nothing is bridged that was not named; the bridge listens on loopback
//! unless told otherwise; no message loops back (each carries its origin
//! bridge's id, and a bridge never sends on what it published itself).
//! docs/bridge.md has the deployment picture, the configuration reference,
//! the reliability rules and the wire format.
//!
//! ```no_run
//! use memshare_bridge::{Bridge, Config};
//! # fn main() -> memshare_bridge::Result<()> {
//! let config = Config::from_toml(r#"
//!     [zenoh]
//!     listen = ["tcp/127.0.0.1:7447"]
//!     connect = ["tcp/127.0.0.1:7448"]
//!
//!     [[pubsub]]
//!     service = "camera"
//!
//!     [[rpc]]
//!     service = "calc"
//!     server = "local"
//! "#, "example")?;
//! let bridge = Bridge::start(&config, false)?;
//! # drop(bridge); Ok(()) }
//! ```

#[cfg(unix)]
mod bridge;
#[cfg(unix)]
pub mod config;
#[cfg(unix)]
mod error;
#[cfg(unix)]
mod pubsub;
#[cfg(unix)]
mod rpc;
#[cfg(unix)]
mod stats;
#[cfg(unix)]
pub mod wire;

#[cfg(unix)]
pub use bridge::Bridge;
#[cfg(unix)]
pub use config::{Config, PubsubConfig, RpcConfig};
#[cfg(unix)]
pub use error::{Error, Result};
#[cfg(unix)]
pub use stats::Stats;

/// Locks `mutex`, poisoned or not. A panic while it was held (a bug, or a
/// hostile input that slipped past a check) must not make every later
/// Zenoh callback, and the bridge's shutdown, panic too: the data it
/// guards is counters, maps and an optional publisher, each consistent
/// between statements.
#[cfg(unix)]
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
