//! Carrying a request/response service.
//!
//! **Server here** (`server = "local"`): a Zenoh queryable on the service's
//! key. `clients` worker threads take its queries in turn, each with its
//! own `rpc::Client` of the local server: the query's payload is the
//! request, the reply's the response. A failed call (no server, declined,
//! too long, timed out) is an error reply naming why. The queryable's
//! callback hands queries over without waiting (at most [`QUEUED`] wait;
//! one more is answered "busy" at once): it runs in Zenoh's receive
//! thread, which every service on the link shares.
//!
//! **Server elsewhere** (`server = "remote"`): the bridge is the local
//! server of the name (a stand-in), and forwards each request it receives
//! as a Zenoh query; the first reply answers the request, in whatever
//! order replies come, so each response reaches the client that asked. An
//! error reply, no reply within the timeout, or no queryable at all
//! declines the request: the client gets `NoResponse`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memshare::channel::WaitStrategy;
use memshare::rpc::{Client, Request, Server, ServerConfig};
use zenoh::bytes::ZBytes;
use zenoh::handlers::CallbackDrop;
use zenoh::query::{ConsolidationMode, Query, QueryTarget, Reply};
use zenoh::sample::Locality;
use zenoh::Wait;

use crate::bridge::Ctx;
use crate::config::{RpcConfig, ServerSide};
use crate::stats::Counters;
use crate::wire::Attachment;
use crate::{lock, Error, Result};

/// How long an idle thread waits before it looks at the stop flag.
const IDLE: Duration = Duration::from_millis(20);

/// How many queries may wait for a worker of a served service. One more
/// is answered at once with an error reply ("busy"): the handoff never
/// blocks Zenoh's receive thread, which every service on the link shares.
pub(crate) const QUEUED: usize = 256;

/// How often the stand-in looks for replies while requests are waiting
/// for theirs.
const REPLY_POLL: Duration = Duration::from_micros(50);

/// A carried service: what keeps it going.
pub(crate) struct Carried {
    pub counters: Arc<Counters>,
    pub threads: Vec<JoinHandle<()>>,
    pub declarations: Vec<Box<dyn Send>>,
}

/// Starts carrying `cfg`.
pub(crate) fn start(ctx: &Arc<Ctx>, cfg: &RpcConfig) -> Result<Carried> {
    let counters = Arc::new(Counters::default());
    let mut carried = Carried {
        counters: Arc::clone(&counters),
        threads: Vec::new(),
        declarations: Vec::new(),
    };
    let key = cfg.key();
    match cfg.server {
        ServerSide::Local => {
            let (handoff, queries) = mpsc::sync_channel(QUEUED);
            let queries = Arc::new(Mutex::new(queries));
            let busy = Busy {
                ctx: Arc::clone(ctx),
                service: cfg.service.clone(),
                handoff,
                counters: Arc::clone(&counters),
                warned: AtomicBool::new(false),
            };
            let queryable = ctx
                .session
                .declare_queryable(key.clone())
                .allowed_origin(Locality::Remote)
                .callback(move |query| busy.hand_off(query))
                .wait()
                .map_err(|e| Error::zenoh(format!("declaring a queryable on {key}"), e))?;
            for worker in 0..cfg.clients() {
                let caller = Caller {
                    ctx: Arc::clone(ctx),
                    service: cfg.service.clone(),
                    timeout: cfg.timeout(),
                    queries: Arc::clone(&queries),
                    counters: Arc::clone(&counters),
                };
                carried.threads.push(
                    std::thread::Builder::new()
                        .name(format!("rpc {} {worker}", cfg.service))
                        .spawn(move || caller.run())
                        .expect("spawning a thread"),
                );
            }
            carried.declarations.push(Box::new(queryable));
        }
        ServerSide::Remote => {
            let stand_in = StandIn {
                ctx: Arc::clone(ctx),
                service: cfg.service.clone(),
                key,
                config: cfg.create.unwrap_or_default().server_config(),
                timeout: cfg.timeout(),
                counters,
            };
            carried.threads.push(
                std::thread::Builder::new()
                    .name(format!("stand-in {}", cfg.service))
                    .spawn(move || stand_in.run())
                    .expect("spawning a thread"),
            );
        }
    }
    Ok(carried)
}

/// Why a call into the local server gave no response.
enum Failed {
    /// What the local server or the client said.
    Memshare(memshare::Error),
    /// No response within the timeout.
    TimedOut(Duration),
    /// The bridge is stopping: the call is given up.
    Stopping,
}

impl From<memshare::Error> for Failed {
    fn from(e: memshare::Error) -> Failed {
        Failed::Memshare(e)
    }
}

/// The queryable's side of the handoff to the workers (in Zenoh's
/// receive thread: it never waits).
struct Busy {
    ctx: Arc<Ctx>,
    service: String,
    handoff: SyncSender<Query>,
    counters: Arc<Counters>,
    /// "Busy" was said already (on stderr; each such query is answered).
    warned: AtomicBool,
}

impl Busy {
    fn hand_off(&self, query: Query) {
        let query = match self.handoff.try_send(query) {
            Ok(()) => return,
            Err(TrySendError::Full(query) | TrySendError::Disconnected(query)) => query,
        };
        Counters::add(&self.counters.declined, 1);
        if !self.warned.swap(true, Ordering::Relaxed) {
            self.ctx.warn(format!(
                "{}: {QUEUED} queries are waiting for the local server: \
                 more are answered at once with an error reply",
                self.service
            ));
        }
        let why = format!(
            "memshare-bridge: service {:?}: busy ({QUEUED} queries waiting)",
            self.service
        );
        if let Err(e) = query.reply_err(why).wait() {
            self.ctx
                .info(format!("{}: replying: {e}", query.key_expr()));
        }
    }
}

/// One worker answering queries by calling the local server.
struct Caller {
    ctx: Arc<Ctx>,
    service: String,
    timeout: Duration,
    /// The workers of a service take turns waiting here.
    queries: Arc<Mutex<Receiver<Query>>>,
    counters: Arc<Counters>,
}

impl Caller {
    fn run(self) {
        let mut client = None;
        while !self.ctx.stopped() {
            let next = {
                let queries = lock(&self.queries);
                // Looked at again once the lock is ours: the workers take
                // turns here, and each would otherwise wait out a whole
                // `IDLE` after a stop (`clients` of them in a row: 5 s at
                // 256).
                if self.ctx.stopped() {
                    return;
                }
                queries.recv_timeout(IDLE)
            };
            match next {
                Ok(query) => self.answer(&query, &mut client),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return, // the queryable is gone
            }
        }
    }

    fn answer(&self, query: &Query, client: &mut Option<Client>) {
        if let Some(bytes) = query.attachment() {
            match Attachment::decode(&bytes.to_bytes()) {
                Ok(a) if a.bridge() == self.ctx.id => {
                    Counters::add(&self.counters.refused, 1);
                    return self.refuse(query, "a query from this bridge itself".into());
                }
                Ok(_) => {}
                Err(e) => {
                    Counters::add(&self.counters.refused, 1);
                    return self.refuse(query, e.to_string());
                }
            }
        }
        // No attachment: a plain Zenoh `get` from another program is served.
        let request = query.payload().map(|p| p.to_bytes()).unwrap_or_default();
        match self.call(client, &request) {
            Ok(response) => {
                let reply = query.reply(query.key_expr().clone(), response).wait();
                if let Err(e) = reply {
                    self.ctx
                        .warn(format!("{}: replying: {e}", query.key_expr()));
                }
                Counters::add(&self.counters.calls, 1);
            }
            Err(failed) => {
                let why = match failed {
                    Failed::Memshare(e) => {
                        // A server that went away: connect afresh next time.
                        if matches!(
                            e,
                            memshare::Error::Disconnected { .. }
                                | memshare::Error::Corrupted { .. }
                        ) {
                            *client = None;
                        }
                        e.to_string()
                    }
                    Failed::TimedOut(t) => format!("no response within {} ms", t.as_millis()),
                    Failed::Stopping => "the bridge is stopping".into(),
                };
                Counters::add(&self.counters.declined, 1);
                self.refuse(query, format!("service {:?}: {why}", self.service));
            }
        }
    }

    /// Calls the local server with `request`, connecting first if needed.
    /// It waits in slices of [`IDLE`], so that a stopping bridge gives the
    /// call up within one (dropping the request in flight abandons it: its
    /// response is discarded when it comes).
    fn call(
        &self,
        client: &mut Option<Client>,
        request: &[u8],
    ) -> std::result::Result<ZBytes, Failed> {
        if client.is_none() {
            let mut c = Client::connect(&self.service)?;
            c.set_wait_strategy(WaitStrategy::Park);
            *client = Some(c);
        }
        let c = client.as_mut().expect("just connected");
        let deadline = Instant::now() + self.timeout;
        let pending = c.send_request(request)?;
        loop {
            if self.ctx.stopped() {
                return Err(Failed::Stopping);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failed::TimedOut(self.timeout));
            }
            match c.receive_response_timeout(&pending, left.min(IDLE)) {
                Ok(response) => return Ok(ZBytes::from(&*response)),
                Err(memshare::Error::TimedOut { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn refuse(&self, query: &Query, why: String) {
        if let Err(e) = query.reply_err(format!("memshare-bridge: {why}")).wait() {
            self.ctx
                .warn(format!("{}: replying: {e}", query.key_expr()));
        }
    }
}

/// The local stand-in of a remote server.
struct StandIn {
    ctx: Arc<Ctx>,
    service: String,
    key: String,
    config: ServerConfig,
    timeout: Duration,
    counters: Arc<Counters>,
}

/// What a query's callbacks tell the stand-in.
enum Event {
    /// The response to request `token`, or why there is none.
    Reply(u64, std::result::Result<Vec<u8>, String>),
    /// The query of request `token` is over: no more replies.
    Done(u64),
}

impl StandIn {
    fn run(self) {
        let mut warned = false;
        while !self.ctx.stopped() {
            match Server::create(&self.service, self.config) {
                Ok(server) => {
                    warned = false;
                    server.set_wait_strategy(WaitStrategy::Park);
                    self.ctx.info(format!(
                        "{}: serving the name here for the remote server",
                        self.service
                    ));
                    if let Err(e) = self.serve(&server) {
                        self.ctx.warn(format!("{e}; serving the name again"));
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut warned, true) {
                        self.ctx.warn(format!(
                            "{}: cannot stand in for the remote server: {e}; trying again every second",
                            self.service
                        ));
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Serves requests until the bridge stops (`Ok`) or the server fails.
    fn serve(&self, server: &Server) -> Result<()> {
        let (events, replies) = mpsc::channel();
        let mut pending: HashMap<u64, Request<'_>> = HashMap::new();
        let mut next = 0u64;
        while !self.ctx.stopped() {
            for event in replies.try_iter() {
                match event {
                    Event::Reply(token, Ok(response)) => {
                        if let Some(request) = pending.remove(&token) {
                            match request.respond(&response) {
                                Ok(()) => Counters::add(&self.counters.calls, 1),
                                Err(e) => {
                                    Counters::add(&self.counters.too_large, 1);
                                    self.ctx.info(format!("{e}: the request is declined"));
                                }
                            }
                        }
                    }
                    Event::Reply(token, Err(why)) => {
                        if pending.remove(&token).is_some() {
                            Counters::add(&self.counters.declined, 1);
                            self.ctx.info(format!(
                                "{}: the remote side declined a request: {why}",
                                self.key
                            ));
                        }
                    }
                    Event::Done(token) => {
                        // No reply came: dropping the request declines it.
                        if pending.remove(&token).is_some() {
                            Counters::add(&self.counters.declined, 1);
                        }
                    }
                }
            }
            let wait = if pending.is_empty() { IDLE } else { REPLY_POLL };
            match server.recv_timeout(wait) {
                Ok(request) => {
                    let token = next;
                    next += 1;
                    self.ask(token, &request, &events)?;
                    pending.insert(token, request);
                }
                Err(memshare::Error::TimedOut { .. }) => {}
                Err(e) => return Err(Error::memshare(&self.service, e)),
            }
        }
        Ok(())
    }

    /// Sends `request` as a Zenoh query whose callbacks report to `events`.
    fn ask(&self, token: u64, request: &[u8], events: &mpsc::Sender<Event>) -> Result<()> {
        let on_reply = events.clone();
        let on_done = events.clone();
        self.ctx
            .session
            .get(self.key.as_str())
            .payload(ZBytes::from(request))
            .attachment(
                Attachment::Request {
                    bridge: self.ctx.id,
                }
                .encode(),
            )
            .allowed_destination(Locality::Remote)
            .target(QueryTarget::BestMatching)
            .consolidation(ConsolidationMode::None)
            .timeout(self.timeout)
            .with(CallbackDrop {
                callback: move |reply: Reply| {
                    let result = match reply.result() {
                        Ok(sample) => Ok(sample.payload().to_bytes().into_owned()),
                        Err(e) => Err(e.payload().try_to_string().map_or_else(
                            |_| format!("{} bytes", e.payload().len()),
                            |s| s.into_owned(),
                        )),
                    };
                    let _ = on_reply.send(Event::Reply(token, result));
                },
                drop: move || {
                    let _ = on_done.send(Event::Done(token));
                },
            })
            .wait()
            .map_err(|e| Error::zenoh(format!("querying {}", self.key), e))
    }
}
