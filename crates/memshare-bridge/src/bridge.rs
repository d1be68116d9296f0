//! A running bridge: one Zenoh session and the services it carries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use zenoh::Wait;

use crate::config::Config;
use crate::stats::{Counters, Stats};
use crate::wire::BridgeId;
use crate::{pubsub, rpc, Error, Result};

/// What every part of a bridge shares.
pub(crate) struct Ctx {
    pub session: zenoh::Session,
    pub id: BridgeId,
    stop: AtomicBool,
    verbose: bool,
}

impl Ctx {
    /// Whether the bridge is stopping.
    pub fn stopped(&self) -> bool {
        // Relaxed: a flag read in loops that publish nothing through it.
        self.stop.load(Ordering::Relaxed)
    }

    /// Something the operator should know (always said, on stderr).
    pub fn warn(&self, what: String) {
        eprintln!("memshare-bridge: {what}");
    }

    /// Something that happened (said with `verbose`).
    pub fn info(&self, what: String) {
        if self.verbose {
            eprintln!("memshare-bridge: {what}");
        }
    }
}

#[cfg(test)]
impl Ctx {
    /// A context for unit tests: a Zenoh session that listens nowhere,
    /// connects nowhere and scouts nowhere.
    pub fn for_tests() -> Arc<Ctx> {
        let mut config = Config::default();
        config.zenoh.listen = Some(Vec::new());
        let session = zenoh::open(config.zenoh_config().expect("a Zenoh configuration"))
            .wait()
            .expect("opening a Zenoh session");
        Arc::new(Ctx {
            session,
            id: BridgeId::random(),
            stop: AtomicBool::new(false),
            verbose: false,
        })
    }
}

/// One carried service's counters.
struct Counted {
    service: String,
    kind: &'static str,
    counters: Arc<Counters>,
}

/// A running bridge. Dropping it stops it too (see [`Bridge::stop`]).
///
/// ```no_run
/// use memshare_bridge::{Bridge, Config, PubsubConfig};
/// # fn main() -> memshare_bridge::Result<()> {
/// let mut config = Config::default();
/// config.zenoh.connect = vec!["tcp/192.0.2.7:7447".into()];
/// config.pubsub.push(PubsubConfig::new("camera"));
/// let bridge = Bridge::start(&config, false)?;
/// // ... until it is time to stop:
/// for stats in bridge.stop() {
///     eprintln!("{stats}");
/// }
/// # Ok(()) }
/// ```
pub struct Bridge {
    ctx: Arc<Ctx>,
    counted: Vec<Counted>,
    threads: Vec<JoinHandle<()>>,
    declarations: Vec<Box<dyn Send>>,
    inbound: Vec<Arc<std::sync::Mutex<pubsub::Inbound>>>,
    stopped: bool,
}

impl Bridge {
    /// Opens the Zenoh session `config` describes and starts carrying its
    /// services; `verbose` says on stderr what it does (warnings are said
    /// always).
    pub fn start(config: &Config, verbose: bool) -> Result<Bridge> {
        config.check("the configuration")?;
        let session = zenoh::open(config.zenoh_config()?)
            .wait()
            .map_err(|e| Error::zenoh("opening the session", e))?;
        let ctx = Arc::new(Ctx {
            session,
            id: BridgeId::random(),
            stop: AtomicBool::new(false),
            verbose,
        });
        let mut bridge = Bridge {
            ctx: Arc::clone(&ctx),
            counted: Vec::new(),
            threads: Vec::new(),
            declarations: Vec::new(),
            inbound: Vec::new(),
            stopped: false,
        };
        for p in &config.pubsub {
            let carried = pubsub::start(&ctx, p)?;
            bridge.counted.push(Counted {
                service: p.service.clone(),
                kind: "pubsub",
                counters: carried.counters,
            });
            bridge.threads.extend(carried.threads);
            bridge.declarations.extend(carried.declarations);
            bridge.inbound.extend(carried.inbound);
        }
        for r in &config.rpc {
            let carried = rpc::start(&ctx, r)?;
            bridge.counted.push(Counted {
                service: r.service.clone(),
                kind: "rpc",
                counters: carried.counters,
            });
            bridge.threads.extend(carried.threads);
            bridge.declarations.extend(carried.declarations);
        }
        Ok(bridge)
    }

    /// This bridge's id on the wire (drawn at random at start).
    pub fn id(&self) -> BridgeId {
        self.ctx.id
    }

    /// Its Zenoh session.
    pub fn session(&self) -> &zenoh::Session {
        &self.ctx.session
    }

    /// Each carried service's counters now.
    pub fn stats(&self) -> Vec<Stats> {
        self.counted
            .iter()
            .map(|c| c.counters.snapshot(&c.service, c.kind))
            .collect()
    }

    /// Stops: every thread ends (within about 50 ms, or as soon as a
    /// blocked local publish gives up), the local endpoints detach (names
    /// the bridge created go unless others hold them), the Zenoh
    /// declarations are undeclared and the session closed. Returns the
    /// final counters.
    pub fn stop(mut self) -> Vec<Stats> {
        self.shut_down();
        self.stats()
    }

    fn shut_down(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        self.ctx.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Undeclare first, so that no callback publishes after this.
        self.declarations.clear();
        for inbound in &self.inbound {
            crate::lock(inbound).release();
        }
        if let Err(e) = self.ctx.session.close().wait() {
            self.ctx.warn(format!("closing the Zenoh session: {e}"));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("id", &self.ctx.id)
            .field("zid", &self.ctx.session.zid())
            .field("services", &self.counted.len())
            .finish_non_exhaustive()
    }
}
