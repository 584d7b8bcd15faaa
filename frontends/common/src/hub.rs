//! The engine shared by every connection task, and the wiring that wakes them
//! and stores admin changes.

use crate::carried::{self, Carried};
use crate::direct::Flush;
use crate::shutdown::Shutdown;
use crate::signal::Signal;
use crate::Runtime;
use bytes::Bytes;
use mist_engine::auth::{Authenticator, Change, Grants, TokenVerifier};
use mist_engine::{Batch, Config, ConnId, Credentials, Engine, Flow, Offer, Output, Stats};
use mist_proto::{ProtoError, Request};
use parking_lot::{Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How often the engine is told the time: the resolution of the
/// authentication deadline.
const TICK: Duration = Duration::from_secs(1);

/// What a connection's tasks share with the hub.
#[derive(Default)]
pub(crate) struct Link {
    /// The engine queued frames for this connection.
    pub(crate) outbox_ready: Signal,
    /// The writer took frames out, or an admin change settled, so a waiting
    /// reader may go on ([`Flow::Wait`]).
    pub(crate) room: Signal,
    /// The reader has finished; the writer stops once the outbox is empty.
    pub(crate) input_done: AtomicBool,
    /// A writer other tasks may write with while it is idle (TCP).
    pub(crate) direct: OnceLock<Arc<dyn Flush>>,
}

struct State {
    engine: Engine,
    links: HashMap<ConnId, Arc<Link>>,
}

/// How a client reaches the server, for the per-transport counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Lines over TCP.
    Tcp,
    /// WebSocket, on a `ws://` listener or the HTTP listener.
    WebSocket,
    /// A Server-Sent Events stream.
    Sse,
    /// A single HTTP request (`POST /publish`).
    Http,
}

impl Via {
    /// Every transport, in the order stats list them.
    pub const ALL: [Via; 4] = [Via::Tcp, Via::WebSocket, Via::Sse, Via::Http];

    /// The transport's name in stats and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::WebSocket => "websocket",
            Via::Sse => "sse",
            Via::Http => "http",
        }
    }
}

/// Connections by transport: open now, and accepted since start.
#[derive(Default)]
struct TransportCounts {
    open: [AtomicUsize; 4],
    accepted: [AtomicU64; 4],
}

/// A snapshot of the hub's counters (see [`Hub::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The engine's counters.
    pub engine: Stats,
    /// Accepted sockets open now, of every transport, those not yet past
    /// their handshake or authentication included.
    pub sockets: usize,
    /// For each transport: its name, connections open now, accepted since start.
    pub transports: Vec<(&'static str, usize, u64)>,
    /// The link to the other nodes, on a node of several.
    pub replication: Option<ReplicationStats>,
}

/// The link to a broker's other nodes, as `/stats` and `/metrics` show it
/// (see [`Hub::report_replication`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    /// The link is up: publishes go out and come in.
    pub connected: bool,
    /// Publishes of this node's clients sent to the other nodes.
    pub sent: u64,
    /// Publishes of other nodes received.
    pub received: u64,
    /// Publishes not sent (no room to queue them, or lost with a broken
    /// link) or received ones that were not valid.
    pub dropped: u64,
    /// Times the link was made again after it was lost.
    pub reconnects: u64,
    /// The last thing that went wrong with the link, if anything has.
    pub last_error: Option<String>,
}

/// Reports the state of the link to the other nodes.
pub type ReplicationReport = Box<dyn Fn() -> ReplicationStats + Send + Sync>;

/// A task handed to the runtime.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Takes each frame a client of this node published, for the other nodes
/// of the broker, as a buffer of its own; it must not block (see
/// [`Hub::replicate_to`]).
pub type Outlet = Box<dyn Fn(Bytes) + Send + Sync>;

/// Told each tag whose need may have changed, when routing by tag (see
/// [`Hub::route_by_tag`]).
pub type InterestOutlet = Box<dyn Fn(String) + Send + Sync>;

/// The runtime's spawning and timers, with its type erased.
struct Lent {
    spawn: Box<dyn Fn(Task) + Send + Sync>,
    sleep: Box<dyn Fn(Duration) -> Task + Send + Sync>,
}

/// What to do after the lock is released: wake writers and readers, store
/// changes, report throttled addresses.
#[derive(Default)]
struct Effects {
    woken: Vec<(ConnId, Arc<Link>)>,
    resumed: Vec<Arc<Link>>,
    /// Publishers on other shards whose offer may go on.
    resumed_elsewhere: Vec<ConnId>,
    offers: Vec<Offer>,
    /// Publishes for the other nodes.
    replicate: Vec<Bytes>,
    /// Anchors gained or lost.
    interest: Vec<String>,
    /// An admin change settled: every shard must sync.
    sync: bool,
    persist: Vec<(u64, Change)>,
    throttled: Vec<(IpAddr, Duration)>,
}

/// Where a connection's reader stands after giving the engine its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) flow: Flow,
    /// It must still authenticate (send `auth`).
    pub(crate) anonymous: bool,
    /// Its publishes applied so far: while [`Flow::Pace`] comes back with
    /// the same count, it waits for the same publish.
    pub(crate) published: u64,
}

/// One accepted socket, counted against `max_connections` until dropped.
pub struct Admission {
    hub: Arc<Hub>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.sockets.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The broker as the connection tasks see it: the engine's shards, each
/// behind its own lock.
///
/// A connection belongs to one shard, chosen in turn as it connects, and
/// everything about it (its input, its writer taking frames) locks only that
/// shard. A publish that other shards may want leaves its shard as an
/// [`Offer`], which the publisher's own task hands to each of those shards
/// after releasing its own, in order, so no task ever holds two shard locks.
/// Every method takes a lock, applies its input, drains the engine's outputs
/// and releases the lock before acting on them (waking writers, handing
/// offers on, storing admin changes with the authenticator), so no task ever
/// does IO, or even a wake-up, while holding one.
///
/// ```
/// use mist_frontend::Hub;
/// use std::sync::Arc;
///
/// let hub = Arc::new(Hub::with_shards(Default::default(), 1024 * 1024, 2));
/// assert_eq!(hub.stats().connections, 0);
/// // Runtime frontends serve connections on it; see `serve` and `Session`.
/// hub.shut_down();
/// assert!(hub.is_stopping());
/// ```
pub struct Hub {
    shards: Box<[Mutex<State>]>,
    /// The shard the next connection goes to, counting up.
    next_shard: AtomicUsize,
    max_line: AtomicUsize,
    max_connections: AtomicUsize,
    /// Accepted sockets open now, of every transport.
    sockets: AtomicUsize,
    authenticator: Option<Arc<dyn Authenticator>>,
    runtime: OnceLock<Lent>,
    /// Where publishes of this node's clients go for the other nodes.
    outlet: OnceLock<Outlet>,
    /// Where the anchors this node gains and loses go, routing by tag.
    interest: OnceLock<InterestOutlet>,
    /// Publishes from other nodes delivered here.
    remote: AtomicU64,
    /// The link to the other nodes, for the snapshot.
    replication: OnceLock<ReplicationReport>,
    /// In milliseconds.
    pace_timeout: AtomicU64,
    transports: TransportCounts,
    shutdown: Shutdown,
}

impl Hub {
    /// An open hub (no authentication) of one shard; lines longer than
    /// `max_line` are refused.
    pub fn new(config: Config, max_line: usize) -> Hub {
        Hub::with_shards(config, max_line, 1)
    }

    /// An open hub of `shards` shards (at most [`mist_engine::MAX_SHARDS`]):
    /// as many as there are cores lets every core deliver messages at once.
    pub fn with_shards(config: Config, max_line: usize, shards: usize) -> Hub {
        Hub::around(Engine::shards(config, shards), max_line, None)
    }

    /// A hub of `shards` shards that wants a token from every client.
    /// `grants` are the tokens `authenticator` loaded at start; admin
    /// changes are stored with it.
    pub fn secured(
        config: Config,
        max_line: usize,
        shards: usize,
        server_token: String,
        authenticator: Arc<dyn Authenticator>,
        grants: Grants,
    ) -> Hub {
        let engines = Engine::secured_shards(config, shards, server_token, grants);
        Hub::around(engines, max_line, Some(authenticator))
    }

    /// A hub of `shards` shards whose clients present signed tokens (JWT)
    /// that `verifier` checks; `server_token`, if any, is the admin's.
    pub fn signed(
        config: Config,
        max_line: usize,
        shards: usize,
        server_token: Option<String>,
        verifier: Arc<dyn TokenVerifier>,
    ) -> Hub {
        let engines = Engine::signed_shards(config, shards, server_token, verifier);
        Hub::around(engines, max_line, None)
    }

    fn around(
        mut engines: Vec<Engine>,
        max_line: usize,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Hub {
        let now = unix_now();
        for engine in &mut engines {
            engine.handle_clock(now);
        }
        let config = engines[0].config().clone();
        Hub {
            max_connections: AtomicUsize::new(config.max_connections),
            pace_timeout: AtomicU64::new(config.pace_timeout.as_millis() as u64),
            sockets: AtomicUsize::new(0),
            shards: engines
                .into_iter()
                .map(|engine| {
                    Mutex::new(State {
                        engine,
                        links: HashMap::new(),
                    })
                })
                .collect(),
            next_shard: AtomicUsize::new(0),
            max_line: AtomicUsize::new(max_line),
            authenticator,
            runtime: OnceLock::new(),
            outlet: OnceLock::new(),
            interest: OnceLock::new(),
            remote: AtomicU64::new(0),
            replication: OnceLock::new(),
            transports: TransportCounts::default(),
            shutdown: Shutdown::default(),
        }
    }

    /// How many shards the engine runs in.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Makes this node one of several: every publish of its clients, on
    /// any transport, is handed to `outlet` as the frame its subscribers
    /// get, in each publisher's order, after it was delivered here; so is
    /// every admin change stored here (as `!` and JSON), for the other
    /// nodes' [`Hub::handle_remote`]. Set once, before clients connect;
    /// `false` if it was set already.
    pub fn replicate_to(&self, outlet: Outlet) -> bool {
        if self.outlet.set(outlet).is_err() {
            return false;
        }
        for shard in self.shards.iter() {
            shard.lock().engine.set_replicating(true);
        }
        true
    }

    /// Makes this node route by tag: each subscription is anchored on its
    /// first tag in sorted order, and `outlet` is told each tag the node
    /// may have gained or lost as an anchor (ask [`Hub::is_anchored`]); a
    /// client that subscribes on an anchor the node does not hear yet
    /// waits until [`Hub::anchor_ready`]. Set once, before clients connect;
    /// `false` if it was set already.
    pub fn route_by_tag(&self, outlet: InterestOutlet) -> bool {
        if self.interest.set(outlet).is_err() {
            return false;
        }
        for shard in self.shards.iter() {
            shard.lock().engine.set_routing_by_tag(true);
        }
        true
    }

    /// Whether a subscription on this node is anchored on `tag` now.
    pub fn is_anchored(&self, tag: &str) -> bool {
        self.lock(0).engine.is_anchored(tag)
    }

    /// Every anchor of this node now.
    pub fn anchors(&self) -> Vec<String> {
        self.lock(0).engine.anchors()
    }

    /// The other nodes' messages carrying `tag` are heard now: the clients
    /// that waited for them go on.
    pub fn anchor_ready(self: &Arc<Self>, tag: &str) {
        self.drive_each(|engine| engine.handle_anchor_ready(tag));
    }

    /// The other nodes' messages carrying `tag` are no longer asked for
    /// (see [`Engine::handle_anchor_dropped`]).
    pub fn anchor_dropped(self: &Arc<Self>, tag: &str) {
        self.drive_each(|engine| engine.handle_anchor_dropped(tag));
    }

    /// Nobody waits for an anchor any more: the link is down.
    pub fn release_anchors(self: &Arc<Self>) {
        self.drive_each(Engine::handle_anchors_released);
    }

    /// Makes [`Hub::snapshot`] (so `/stats` and `/metrics`) include the
    /// state of the link to the other nodes; set once.
    pub fn report_replication(&self, report: ReplicationReport) -> bool {
        self.replication.set(report).is_ok()
    }

    /// What another node's outlet (see [`Hub::replicate_to`]) was given
    /// there. A publish is delivered to this node's matching subscribers
    /// that were granted all of its tags, never waiting for a full one; an
    /// admin change takes effect here as it did there (a revoked token's
    /// connections close). Neither is replicated again. Bytes that are
    /// neither are refused with the reason (which never shows a token).
    pub fn handle_remote(self: &Arc<Self>, bytes: &[u8]) -> Result<(), String> {
        self.handle_remote_all(&[bytes]).pop().map_or(Ok(()), Err)
    }

    /// [`Hub::handle_remote`] for everything that arrived at once, in
    /// order: each shard takes the publishes it may want under one lock,
    /// so its subscribers' writers are woken once. Returns the reasons of
    /// those refused.
    pub fn handle_remote_all(self: &Arc<Self>, items: &[&[u8]]) -> Vec<String> {
        let mut refused = Vec::new();
        let mut publishes = Vec::new();
        for bytes in items {
            match carried::decode(bytes) {
                Err(e) => refused.push(e),
                Ok(Carried::Publish(frame)) => match self.decode_publish(frame) {
                    Ok(request) => publishes.push(request),
                    Err(e) => refused.push(e),
                },
                Ok(Carried::Change(change)) => {
                    // What came before it goes first.
                    refused.extend(self.remote_publishes(std::mem::take(&mut publishes)));
                    if !self.drive(0, |state| state.engine.handle_remote_change(change)) {
                        refused.push("an admin change for a node without authentication".into());
                    }
                }
            }
        }
        refused.extend(self.remote_publishes(publishes));
        refused
    }

    /// One publish line from another node.
    fn decode_publish(&self, frame: &[u8]) -> Result<Request, String> {
        let mut decoder = mist_proto::LineDecoder::new(self.max_line());
        let mut decoded: Vec<Result<Request, ProtoError>> = Vec::new();
        decoder.decode(frame, &mut decoded);
        match (decoded.pop(), decoded.is_empty(), decoder.buffered()) {
            (Some(Ok(request)), true, 0) if request.command == mist_proto::Command::Publish => {
                Ok(request)
            }
            (Some(Err(e)), ..) => Err(e.to_string()),
            _ => Err("not one publish line".into()),
        }
    }

    /// Delivers `publishes` from other nodes, each shard taking those it
    /// may want in one turn; returns why any were refused.
    fn remote_publishes(self: &Arc<Self>, publishes: Vec<Request>) -> Vec<String> {
        if publishes.is_empty() {
            return Vec::new();
        }
        let mut outcomes: Vec<Option<Result<(), String>>> = vec![None; publishes.len()];
        for shard in 0..self.shards.len() {
            self.drive(shard, |state| {
                for (i, request) in publishes.iter().enumerate() {
                    let tags = request.tags.as_deref().unwrap_or_default();
                    if state.engine.shards_wanting(tags) & (1 << shard) != 0 {
                        let outcome = state.engine.handle_remote_publish(request);
                        outcomes[i].get_or_insert(outcome.map_err(|e| e.to_string()));
                    }
                }
            });
        }
        let mut refused = Vec::new();
        for outcome in outcomes {
            match outcome {
                Some(Err(e)) => refused.push(e),
                // Delivered, or wanted by no shard.
                _ => {
                    self.remote.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        refused
    }

    /// Lends the hub the runtime: its spawner, for storing admin changes in
    /// the background, and its timers, for bounding how long a publisher
    /// waits for its subscribers. Runtime frontends call it when they start;
    /// later calls are ignored. Without it, a paced publisher waits for its
    /// subscribers without a bound.
    pub fn set_runtime(&self, runtime: impl Runtime) {
        let sleeper = runtime.clone();
        let _ = self.runtime.set(Lent {
            spawn: Box::new(move |task| runtime.spawn(task)),
            sleep: Box::new(move |duration| {
                let runtime = sleeper.clone();
                Box::pin(async move { runtime.sleep(duration).await })
            }),
        });
    }

    /// Waits for `signal` until `deadline`; returns whether it came. Without
    /// a runtime there is no timer, and it waits for the signal alone.
    pub(crate) async fn wait_until(&self, signal: &Signal, deadline: Instant) -> bool {
        let Some(runtime) = self.runtime.get() else {
            signal.wait().await;
            return true;
        };
        let timer = (runtime.sleep)(deadline.saturating_duration_since(Instant::now()));
        matches!(
            futures::future::select(std::pin::pin!(signal.wait()), timer).await,
            futures::future::Either::Left(_)
        )
    }

    /// How long a paced publisher waits for its subscribers.
    pub(crate) fn pace_timeout(&self) -> Duration {
        Duration::from_millis(self.pace_timeout.load(Ordering::Relaxed))
    }

    /// New limits, for work from now on: new connections and lines, new
    /// commands and new deliveries (what clients already hold stays, even
    /// beyond a lowered limit). The number of shards cannot change.
    pub fn reconfigure(self: &Arc<Self>, config: Config, max_line: usize) {
        self.max_line.store(max_line, Ordering::Relaxed);
        self.max_connections
            .store(config.max_connections, Ordering::Relaxed);
        self.pace_timeout
            .store(config.pace_timeout.as_millis() as u64, Ordering::Relaxed);
        self.drive_each(|engine| engine.set_config(config.clone()));
    }

    /// Checks signed tokens of new connections with `verifier` from now on
    /// (a new key); open connections keep what their token gave them.
    /// `false` on a hub that does not take signed tokens.
    pub fn set_token_verifier(&self, verifier: Arc<dyn TokenVerifier>) -> bool {
        self.lock(0).engine.set_token_verifier(verifier)
    }

    /// Adds a custom command to every shard (see [`mist_engine::extension`]).
    /// Shards run at once, so the handler is shared: keep its state behind
    /// a lock or in atomics.
    pub fn register_command<H>(
        &self,
        name: impl Into<String>,
        handler: H,
    ) -> Result<(), mist_engine::Error>
    where
        H: Fn(&mut mist_engine::CommandContext<'_>, &Request) -> Result<(), mist_engine::Error>
            + Send
            + Sync
            + 'static,
    {
        let name = name.into();
        let handler = Arc::new(handler);
        for shard in self.shards.iter() {
            let handler = handler.clone();
            shard.lock().engine.register_command(
                name.clone(),
                Box::new(move |ctx, request| handler(ctx, request)),
            )?;
        }
        Ok(())
    }

    /// The longest line a client may send, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line.load(Ordering::Relaxed)
    }

    /// The engine's counters, summed over its shards.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for shard in self.shards.iter() {
            let stats = shard.lock().engine.stats();
            total.connections += stats.connections;
            total.subscriptions += stats.subscriptions;
            total.subscribers += stats.subscribers;
            total.published += stats.published;
            total.delivered += stats.delivered;
            total.dropped += stats.dropped;
        }
        // Each shard counts the remote publishes it took; the node counts
        // each once.
        total.remote = self.remote.load(Ordering::Relaxed);
        total
    }

    /// Starts a graceful shutdown: listeners stop accepting (see
    /// [`Hub::stopping`]), every connection stops receiving, and each is
    /// closed once what is queued for it has been written.
    pub fn shut_down(self: &Arc<Self>) {
        self.shutdown.trigger();
        for shard in 0..self.shards.len() {
            let links: Vec<Arc<Link>> = self.drive(shard, |state| {
                state.engine.handle_shutdown();
                state.links.values().cloned().collect()
            });
            for link in links {
                link.outbox_ready.notify();
                link.room.notify();
            }
        }
    }

    /// Resolves once a shutdown has started; accept loops stop on it.
    pub async fn stopping(&self) {
        self.shutdown.wait().await
    }

    /// Whether a shutdown has started.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_on()
    }

    /// Waits, with the runtime's timers (see [`Hub::set_runtime`]), until
    /// every connection has closed or `grace` has passed; returns whether
    /// all closed. Without a runtime it only checks once.
    pub async fn drained(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while self.stats().connections > 0 {
            let Some(runtime) = self.runtime.get() else {
                return false;
            };
            if Instant::now() >= deadline {
                return false;
            }
            (runtime.sleep)(Duration::from_millis(20)).await;
        }
        true
    }

    /// The engine's counters and the connections by transport.
    pub fn snapshot(&self) -> Snapshot {
        let engine = self.stats();
        let transports = Via::ALL
            .iter()
            .enumerate()
            .map(|(i, via)| {
                let open = self.transports.open[i].load(Ordering::Relaxed);
                (
                    via.name(),
                    open,
                    self.transports.accepted[i].load(Ordering::Relaxed),
                )
            })
            .collect();
        Snapshot {
            engine,
            sockets: self.sockets(),
            transports,
            replication: self.replication.get().map(|report| report()),
        }
    }

    pub(crate) fn opened(&self, via: Via) {
        self.transports.open[via as usize].fetch_add(1, Ordering::Relaxed);
        self.transports.accepted[via as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, via: Via) {
        self.transports.open[via as usize].fetch_sub(1, Ordering::Relaxed);
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, State> {
        // parking_lot's lock does not poison: the engine never panics on
        // client input, and if something else did while holding the lock,
        // serving the other clients beats stopping them all.
        self.shards[shard].lock()
    }

    /// Counts an accepted socket against `max_connections`, whatever its
    /// transport, until the returned admission is dropped; refuses it when
    /// the server is full or shutting down.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, mist_engine::Error> {
        if self.is_stopping() {
            return Err(mist_engine::Error::ShuttingDown);
        }
        let limit = self.max_connections.load(Ordering::Relaxed);
        if self.sockets.fetch_add(1, Ordering::AcqRel) >= limit {
            self.sockets.fetch_sub(1, Ordering::AcqRel);
            return Err(mist_engine::Error::TooManyConnections { limit });
        }
        Ok(Admission { hub: self.clone() })
    }

    /// Accepted sockets open now.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Acquire)
    }

    pub(crate) fn connect(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
        credentials: Credentials<'_>,
    ) -> Result<(ConnId, Arc<Link>), mist_engine::Error> {
        let link = Arc::new(Link::default());
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let outcome = self.drive(shard, |state| {
            state.engine.handle_timeout(Instant::now());
            let outcome = state.engine.handle_connect_from(peer, credentials);
            if let Ok(conn) = outcome {
                state.links.insert(conn, link.clone());
            }
            outcome
        });
        outcome.map(|conn| (conn, link))
    }

    /// Whether `token`, from `peer`, may see what only the admin may (see
    /// [`Engine::check_admin_token`]).
    pub fn check_admin_token(
        self: &Arc<Self>,
        peer: Option<IpAddr>,
        token: Option<&str>,
    ) -> Result<(), mist_engine::Error> {
        self.drive(0, |state| {
            state.engine.handle_timeout(Instant::now());
            state.engine.check_admin_token(peer, token)
        })
    }

    /// Gives the engine a batch of decoded lines, in order; the engine
    /// applies what this turn allows and keeps the rest (see [`Flow`]).
    /// Offers the turn's publishes to the other shards; those that must
    /// wait for a full subscriber are left in `offers` (see
    /// [`Hub::retry_offers`]).
    pub(crate) fn handle_messages(
        self: &Arc<Self>,
        conn: ConnId,
        messages: &mut Vec<Result<Request, ProtoError>>,
        offers: &mut Offers,
    ) -> Progress {
        self.with_engine(conn, offers, |engine| {
            engine.handle_input(conn, messages.drain(..))
        })
    }

    /// Gives `conn` another turn for the input the engine holds.
    pub(crate) fn resume(self: &Arc<Self>, conn: ConnId, offers: &mut Offers) -> Progress {
        self.with_engine(conn, offers, |engine| engine.handle_resume(conn))
    }

    /// Runs `input` on `conn`'s shard, hands its offers on, then reports
    /// where `conn` stands.
    fn with_engine(
        self: &Arc<Self>,
        conn: ConnId,
        offers: &mut Offers,
        input: impl FnOnce(&mut Engine),
    ) -> Progress {
        let (progress, new) = self.drive_handing_over(conn.shard(), |state| {
            input(&mut state.engine);
            let progress = progress_of(&state.engine, conn);
            // A client that used up its turn will be back for more: hand the
            // lock to a client waiting for it, or the busy one would take it
            // again first, turn after turn, while the others wait.
            let yielding = progress.flow == Flow::Yield;
            (progress, yielding)
        });
        offers.add(new);
        self.hand_on(offers);
        progress
    }

    /// Hands `offers` to their shards: each shard, locked once, takes every
    /// offer for it in order until one must wait for a full subscriber
    /// (later ones for that shard wait behind it; other shards go on). Once
    /// all are delivered, the publisher's shard lets its replies go.
    fn hand_on(self: &Arc<Self>, offers: &mut Offers) {
        let Some(publisher) = offers.queue.front().map(|(offer, _)| offer.publisher()) else {
            return;
        };
        let wanted = offers.queue.iter().fold(0u64, |m, (_, mask)| m | mask);
        for shard in (0..self.shards.len()).filter(|s| wanted & (1 << s) != 0) {
            let delivered = self.drive(shard, |state| {
                let mut delivered = 0;
                for (offer, mask) in offers.queue.iter_mut() {
                    if *mask & (1 << shard) == 0 {
                        continue;
                    }
                    if !state.engine.handle_offer(offer) {
                        break;
                    }
                    *mask &= !(1 << shard);
                    delivered += 1;
                }
                delivered
            });
            offers.delivered += delivered;
        }
        while offers.queue.front().is_some_and(|(_, mask)| *mask == 0) {
            offers.queue.pop_front();
        }
        if offers.queue.is_empty() {
            self.drive(publisher.shard(), |state| {
                state.engine.handle_offered(publisher)
            });
        }
    }

    /// Retries the offers left waiting after a subscriber made room, or,
    /// with `expired`, after the publisher waited its bounded time: the
    /// first one then goes out to the shard it waits for, dropped for the
    /// subscribers stuck writing (see [`Engine::handle_offer_expired`]).
    pub(crate) fn retry_offers(self: &Arc<Self>, offers: &mut Offers, expired: bool) {
        if expired {
            if let Some((offer, mask)) = offers.queue.front_mut() {
                if *mask != 0 {
                    let shard = mask.trailing_zeros() as usize;
                    if !self.drive(shard, |state| state.engine.handle_offer_expired(offer)) {
                        return;
                    }
                    *mask &= !(1 << shard);
                    offers.delivered += 1;
                }
            }
        }
        self.hand_on(offers);
    }

    /// The one way into a shard: takes its lock, gives the engine its
    /// input, drains every output, releases the lock and only then acts on
    /// the outputs (wakes writers and readers, stores admin changes, syncs
    /// the shards, hands on offers).
    fn drive<R>(self: &Arc<Self>, shard: usize, input: impl FnOnce(&mut State) -> R) -> R {
        let (outcome, new) = self.drive_handing_over(shard, |state| (input(state), false));
        if !new.is_empty() {
            // Only a request answered at once (`POST /publish`) publishes
            // here, and its offers never wait: they are delivered or dropped.
            let mut offers = Offers::default();
            offers.add(new);
            self.hand_on(&mut offers);
            debug_assert!(!offers.waiting(), "an offer that waits has no reader");
        }
        outcome
    }

    /// [`Hub::drive`] with the same input on every shard, one at a time.
    fn drive_each(self: &Arc<Self>, input: impl Fn(&mut Engine)) {
        for shard in 0..self.shards.len() {
            self.drive(shard, |state| input(&mut state.engine));
        }
    }

    /// [`Hub::drive`], handing the lock fairly to a waiting task when
    /// `input` says so, and returning the offers instead of handing them on.
    fn drive_handing_over<R>(
        self: &Arc<Self>,
        shard: usize,
        input: impl FnOnce(&mut State) -> (R, bool),
    ) -> (R, Vec<Offer>) {
        let mut state = self.lock(shard);
        let (outcome, hand_over) = input(&mut state);
        let mut effects = drain_outputs(&mut state);
        if hand_over {
            MutexGuard::unlock_fair(state);
        } else {
            drop(state);
        }
        let offers = std::mem::take(&mut effects.offers);
        self.act(effects);
        (outcome, offers)
    }

    /// Where `conn` stands, without giving it input.
    pub(crate) fn progress(&self, conn: ConnId) -> Progress {
        progress_of(&self.lock(conn.shard()).engine, conn)
    }

    /// `conn` waited its bounded time for its subscribers (see
    /// [`Engine::handle_pace_expired`]).
    pub(crate) fn pace_expired(self: &Arc<Self>, conn: ConnId) {
        self.drive(conn.shard(), |state| state.engine.handle_pace_expired(conn));
    }

    /// Tells every shard the time: clients past their authentication
    /// deadline are refused, failed attempts age out, and connections whose
    /// signed token expired are closed.
    pub fn tick(self: &Arc<Self>) {
        let (now, wall) = (Instant::now(), unix_now());
        self.drive_each(|engine| {
            engine.handle_timeout(now);
            engine.handle_clock(wall);
        });
    }

    /// Ticks about once a second until the server shuts down. Runtime
    /// frontends run it when they start.
    pub async fn keep_time(self: Arc<Self>, runtime: impl Runtime) {
        while !self.is_stopping() {
            runtime.sleep(TICK).await;
            self.tick();
        }
    }

    /// Applies a request, returning its failure rather than queueing it. A
    /// publish does not wait for full subscribers.
    pub(crate) fn command(
        self: &Arc<Self>,
        conn: ConnId,
        request: &Request,
    ) -> Result<(), mist_engine::Error> {
        self.drive(conn.shard(), |state| {
            state.engine.handle_command(conn, request)
        })
    }

    pub(crate) fn input_closed(self: &Arc<Self>, conn: ConnId) {
        self.drive(conn.shard(), |state| state.engine.handle_input_closed(conn));
    }

    pub(crate) fn disconnect(self: &Arc<Self>, conn: ConnId) {
        self.drive(conn.shard(), |state| {
            state.engine.handle_disconnect(conn);
            state.links.remove(&conn);
        });
    }

    /// Hands every frame queued for `conn` to its writer (see
    /// [`Engine::poll_transmit`]); also says whether `conn` is to be closed.
    pub(crate) fn transmit(self: &Arc<Self>, conn: ConnId, batch: &mut Batch) -> (bool, bool) {
        self.drive(conn.shard(), |state| {
            let got = state.engine.poll_transmit(conn, batch);
            (got, state.engine.is_closing(conn))
        })
    }

    /// Feeds the authenticator's outcome back; the admin goes on.
    fn persisted(self: &Arc<Self>, id: u64, outcome: Result<(), mist_engine::auth::AuthError>) {
        self.drive(0, |state| state.engine.handle_persisted(id, outcome));
    }

    /// Wakes writers and readers, syncs the shards after an admin change,
    /// starts storing changes and reports throttled addresses, after the
    /// lock is released.
    fn act(self: &Arc<Self>, effects: Effects) {
        if effects.sync {
            // First every shard applies the change, then every shard
            // answers the admins whose change all have applied.
            for _round in 0..2 {
                self.drive_each(Engine::handle_sync);
            }
        }
        for (conn, link) in effects.woken {
            // Written here if its writer is idle and the batch small, else
            // its writer task is woken (see `crate::direct`).
            if link
                .direct
                .get()
                .is_none_or(|direct| direct.flush(self, conn, &link))
            {
                link.outbox_ready.notify();
            }
        }
        for link in effects.resumed {
            link.room.notify();
        }
        for conn in effects.resumed_elsewhere {
            let link = self.lock(conn.shard()).links.get(&conn).cloned();
            if let Some(link) = link {
                link.room.notify();
            }
        }
        if let Some(outlet) = self.outlet.get() {
            for frame in effects.replicate {
                // A frame may be a slice of the whole read it came in (see
                // `mist_proto::Frames`); what waits for other nodes must not
                // keep that read alive, so the outlet gets a copy of its own.
                outlet(Bytes::copy_from_slice(&frame));
            }
        }
        if let Some(outlet) = self.interest.get() {
            for tag in effects.interest {
                outlet(tag);
            }
        }
        for (id, change) in effects.persist {
            self.store(id, change);
        }
        for (peer, retry_after) in effects.throttled {
            log::warn!(
                "{peer}: too many failed authentications; its attempts are refused for {} s",
                retry_after.as_secs()
            );
        }
    }

    fn store(self: &Arc<Self>, id: u64, change: Change) {
        let (Some(authenticator), Some(runtime)) = (self.authenticator.clone(), self.runtime.get())
        else {
            let reason = "the server cannot store changes (no authenticator or runtime)";
            log::error!("{reason}");
            return self.persisted(id, Err(mist_engine::auth::AuthError(reason.into())));
        };
        let hub = self.clone();
        (runtime.spawn)(Box::pin(async move {
            let outcome = change.apply(authenticator.as_ref()).await;
            if let Err(e) = &outcome {
                log::warn!("storing an admin change ({change:?}) failed: {e}");
            }
            hub.persisted(id, outcome);
        }));
    }
}

/// A publisher's offers not yet delivered to every shard they go to, each
/// with the shards still to take it; kept by its reader.
#[derive(Default)]
pub(crate) struct Offers {
    queue: VecDeque<(Offer, u64)>,
    /// Deliveries to a shard so far: while it stays the same, the reader
    /// waits for the same one.
    pub(crate) delivered: u64,
}

impl Offers {
    /// Queues offers a shard just made, each with every shard it goes to.
    fn add(&mut self, new: Vec<Offer>) {
        let with_masks = new.into_iter().map(|offer| {
            let mask = offer.shard_mask();
            (offer, mask)
        });
        self.queue.extend(with_masks);
    }

    /// Whether some wait for a full subscriber.
    pub(crate) fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }
}

/// The wall-clock time in seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where `conn` stands in `engine`.
fn progress_of(engine: &Engine, conn: ConnId) -> Progress {
    Progress {
        flow: engine.flow(conn),
        anonymous: engine.is_anonymous(conn),
        published: engine.published_by(conn),
    }
}

/// Collects what the engine asked for; the caller acts after unlocking.
fn drain_outputs(state: &mut State) -> Effects {
    let mut effects = Effects::default();
    let shard = state.engine.shard_index();
    while let Some(output) = state.engine.poll_output() {
        match output {
            Output::Transmit(conn) => {
                if let Some(link) = state.links.get(&conn) {
                    effects.woken.push((conn, link.clone()));
                }
            }
            Output::Resume(conn) if conn.shard() != shard => {
                effects.resumed_elsewhere.push(conn);
            }
            Output::Resume(conn) => {
                if let Some(link) = state.links.get(&conn) {
                    effects.resumed.push(link.clone());
                }
            }
            Output::Offer(offer) => effects.offers.push(offer),
            Output::Sync => effects.sync = true,
            Output::Replicate(frame) => effects.replicate.push(frame),
            Output::ReplicateChange(change) => effects.replicate.push(carried::change(&change)),
            Output::Interest(tag) => effects.interest.push(tag),
            Output::Persist { id, change } => effects.persist.push((id, change)),
            Output::Throttled { peer, retry_after } => effects.throttled.push((peer, retry_after)),
            other => log::error!("unhandled engine output {other:?}"),
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(hub: &Arc<Hub>, conn: ConnId, request: Request) {
        let mut offers = Offers::default();
        hub.handle_messages(conn, &mut vec![Ok(request)], &mut offers);
    }

    fn received(hub: &Arc<Hub>, conn: ConnId) -> Vec<String> {
        let mut batch = Batch::new();
        hub.transmit(conn, &mut batch);
        batch
            .lines()
            .map(|line| String::from_utf8(line.to_vec()).unwrap())
            .collect()
    }

    /// Two nodes of two shards each, the first replicating to the second
    /// by hand: what a client of the first publishes reaches the second's
    /// subscribers on every shard, once, and is not handed on again.
    #[test]
    fn a_publish_replicated_to_another_node_reaches_its_subscribers_once() {
        let first = Arc::new(Hub::with_shards(Config::default(), 1 << 20, 2));
        let second = Arc::new(Hub::with_shards(Config::default(), 1 << 20, 2));
        let carried: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let sink = carried.clone();
        assert!(first.replicate_to(Box::new(move |frame| sink.lock().push(frame))));
        assert!(!first.replicate_to(Box::new(|_| ())), "set once");
        let echoed: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let sink = echoed.clone();
        assert!(second.replicate_to(Box::new(move |frame| sink.lock().push(frame))));

        let subscribers: Vec<ConnId> = (0..2)
            .map(|_| second.connect(None, Credentials::InBand).unwrap().0)
            .collect();
        assert_ne!(subscribers[0].shard(), subscribers[1].shard());
        for &s in &subscribers {
            send(&second, s, Request::new("subscribe").tags(["t"]));
        }
        let (publisher, _) = first.connect(None, Credentials::InBand).unwrap();
        send(
            &first,
            publisher,
            Request::new("publish").tags(["t"]).data("hi"),
        );
        let frames = std::mem::take(&mut *carried.lock());
        assert_eq!(frames.len(), 1);
        second.handle_remote(&frames[0]).unwrap();
        for &s in &subscribers {
            let got = received(&second, s);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(got[0].contains("\"data\":\"hi\""));
        }
        assert!(echoed.lock().is_empty(), "not replicated again");
        assert_eq!(second.stats().remote, 1);
        assert_eq!(second.stats().published, 0);
        assert!(second.handle_remote(b"{\"command\":\"ping\"}\n").is_err());
        assert!(second.handle_remote(b"not json\n").is_err());
        assert!(second
            .handle_remote(&[&frames[0][..], &frames[0][..]].concat())
            .is_err());
    }
}
