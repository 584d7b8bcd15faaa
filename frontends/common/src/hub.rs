//! The engine shared by every connection task, and the wiring that wakes them
//! and stores admin changes.

use crate::shutdown::Shutdown;
use crate::signal::Signal;
use crate::Runtime;
use bytes::Bytes;
use mist_engine::auth::{Authenticator, Change, Grants};
use mist_engine::{Config, ConnId, Credentials, Engine, Flow, Output, Stats};
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
}

/// A task handed to the runtime.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The runtime's spawning and timers, with its type erased.
struct Lent {
    spawn: Box<dyn Fn(Task) + Send + Sync>,
    sleep: Box<dyn Fn(Duration) -> Task + Send + Sync>,
}

/// What to do after the lock is released: wake writers and readers, store
/// changes, report throttled addresses.
#[derive(Default)]
struct Effects {
    woken: Vec<Arc<Link>>,
    resumed: Vec<Arc<Link>>,
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

/// The broker as the connection tasks see it: one [`Engine`] behind a lock.
///
/// Every method takes the lock once, applies its input, drains the engine's
/// outputs and releases the lock before acting on them (waking writers,
/// storing admin changes with the authenticator), so no task ever does IO, or
/// even a wake-up, while holding it.
///
/// ```
/// use mist_frontend::Hub;
/// use std::sync::Arc;
///
/// let hub = Arc::new(Hub::new(Default::default(), 1024 * 1024));
/// assert_eq!(hub.stats().connections, 0);
/// // Runtime frontends serve connections on it; see `serve` and `Session`.
/// hub.shut_down();
/// assert!(hub.is_stopping());
/// ```
pub struct Hub {
    state: Mutex<State>,
    max_line: usize,
    max_connections: usize,
    /// Accepted sockets open now, of every transport.
    sockets: AtomicUsize,
    authenticator: Option<Arc<dyn Authenticator>>,
    runtime: OnceLock<Lent>,
    pace_timeout: Duration,
    transports: TransportCounts,
    shutdown: Shutdown,
}

impl Hub {
    /// An open hub (no authentication); lines longer than `max_line` are refused.
    pub fn new(config: Config, max_line: usize) -> Hub {
        Hub::around(Engine::new(config), max_line, None)
    }

    /// A hub that wants a token from every client. `grants` are the tokens
    /// `authenticator` loaded at start; admin changes are stored with it.
    pub fn secured(
        config: Config,
        max_line: usize,
        server_token: String,
        authenticator: Arc<dyn Authenticator>,
        grants: Grants,
    ) -> Hub {
        let engine = Engine::secured(config, server_token, grants);
        Hub::around(engine, max_line, Some(authenticator))
    }

    fn around(
        engine: Engine,
        max_line: usize,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Hub {
        Hub {
            max_connections: engine.config().max_connections,
            pace_timeout: engine.config().pace_timeout,
            sockets: AtomicUsize::new(0),
            state: Mutex::new(State {
                engine,
                links: HashMap::new(),
            }),
            max_line,
            authenticator,
            runtime: OnceLock::new(),
            transports: TransportCounts::default(),
            shutdown: Shutdown::default(),
        }
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
        self.pace_timeout
    }

    /// Adds a custom command to the engine (see [`mist_engine::extension`]).
    pub fn register_command(
        &self,
        name: impl Into<String>,
        handler: mist_engine::CommandHandler,
    ) -> Result<(), mist_engine::Error> {
        self.lock().engine.register_command(name, handler)
    }

    /// The longest line a client may send, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The engine's counters.
    pub fn stats(&self) -> Stats {
        self.lock().engine.stats()
    }

    /// Starts a graceful shutdown: listeners stop accepting (see
    /// [`Hub::stopping`]), every connection stops receiving, and each is
    /// closed once what is queued for it has been written.
    pub fn shut_down(self: &Arc<Self>) {
        self.shutdown.trigger();
        let links: Vec<Arc<Link>> = self.drive(|state| {
            state.engine.handle_shutdown();
            state.links.values().cloned().collect()
        });
        for link in links {
            link.outbox_ready.notify();
            link.room.notify();
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
        }
    }

    pub(crate) fn opened(&self, via: Via) {
        self.transports.open[via as usize].fetch_add(1, Ordering::Relaxed);
        self.transports.accepted[via as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, via: Via) {
        self.transports.open[via as usize].fetch_sub(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // parking_lot's lock does not poison: the engine never panics on
        // client input, and if something else did while holding the lock,
        // serving the other clients beats stopping them all.
        self.state.lock()
    }

    /// Counts an accepted socket against `max_connections`, whatever its
    /// transport, until the returned admission is dropped; refuses it when
    /// the server is full or shutting down.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, mist_engine::Error> {
        if self.is_stopping() {
            return Err(mist_engine::Error::ShuttingDown);
        }
        let limit = self.max_connections;
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
        let outcome = self.drive(|state| {
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
        self.drive(|state| {
            state.engine.handle_timeout(Instant::now());
            state.engine.check_admin_token(peer, token)
        })
    }

    /// Gives the engine a batch of decoded lines, in order; the engine
    /// applies what this turn allows and keeps the rest (see [`Flow`]).
    pub(crate) fn handle_messages(
        self: &Arc<Self>,
        conn: ConnId,
        messages: &mut Vec<Result<Request, ProtoError>>,
    ) -> Progress {
        self.with_engine(conn, |engine| engine.handle_input(conn, messages.drain(..)))
    }

    /// Gives `conn` another turn for the input the engine holds.
    pub(crate) fn resume(self: &Arc<Self>, conn: ConnId) -> Progress {
        self.with_engine(conn, |engine| engine.handle_resume(conn))
    }

    /// Runs `input` on the engine, then reports where `conn` stands.
    fn with_engine(self: &Arc<Self>, conn: ConnId, input: impl FnOnce(&mut Engine)) -> Progress {
        self.drive_handing_over(|state| {
            input(&mut state.engine);
            let progress = progress_of(&state.engine, conn);
            // A client that used up its turn will be back for more: hand the
            // lock to a client waiting for it, or the busy one would take it
            // again first, turn after turn, while the others wait.
            (progress, progress.flow == Flow::Yield)
        })
    }

    /// The one way into the engine: takes the lock, gives the engine its
    /// input, drains every output, releases the lock and only then acts on
    /// the outputs (wakes writers and readers, stores admin changes).
    fn drive<R>(self: &Arc<Self>, input: impl FnOnce(&mut State) -> R) -> R {
        self.drive_handing_over(|state| (input(state), false))
    }

    /// [`Hub::drive`], handing the lock fairly to a waiting task when
    /// `input` says so.
    fn drive_handing_over<R>(self: &Arc<Self>, input: impl FnOnce(&mut State) -> (R, bool)) -> R {
        let mut state = self.lock();
        let (outcome, hand_over) = input(&mut state);
        let effects = drain_outputs(&mut state);
        if hand_over {
            MutexGuard::unlock_fair(state);
        } else {
            drop(state);
        }
        self.act(effects);
        outcome
    }

    /// Where `conn` stands, without giving it input.
    pub(crate) fn progress(&self, conn: ConnId) -> Progress {
        progress_of(&self.lock().engine, conn)
    }

    /// `conn` waited its bounded time for its subscribers (see
    /// [`Engine::handle_pace_expired`]).
    pub(crate) fn pace_expired(self: &Arc<Self>, conn: ConnId) {
        self.drive(|state| state.engine.handle_pace_expired(conn));
    }

    /// Tells the engine the time: clients past their authentication
    /// deadline are refused, failed attempts age out.
    pub fn tick(self: &Arc<Self>) {
        self.drive(|state| state.engine.handle_timeout(Instant::now()));
    }

    /// Ticks about once a second until the server shuts down. Runtime
    /// frontends run it when they start.
    pub async fn keep_time(self: Arc<Self>, runtime: impl Runtime) {
        while !self.is_stopping() {
            runtime.sleep(TICK).await;
            self.tick();
        }
    }

    /// Applies a request, returning its failure rather than queueing it.
    pub(crate) fn command(
        self: &Arc<Self>,
        conn: ConnId,
        request: &Request,
    ) -> Result<(), mist_engine::Error> {
        self.drive(|state| state.engine.handle_command(conn, request))
    }

    pub(crate) fn input_closed(self: &Arc<Self>, conn: ConnId) {
        self.drive(|state| state.engine.handle_input_closed(conn));
    }

    pub(crate) fn disconnect(self: &Arc<Self>, conn: ConnId) {
        self.drive(|state| {
            state.engine.handle_disconnect(conn);
            state.links.remove(&conn);
        });
    }

    /// Hands every frame queued for `conn` to its writer (see
    /// [`Engine::poll_transmit`]); also says whether `conn` is to be closed.
    pub(crate) fn transmit(
        self: &Arc<Self>,
        conn: ConnId,
        batch: &mut VecDeque<Bytes>,
    ) -> (bool, bool) {
        self.drive(|state| {
            let got = state.engine.poll_transmit(conn, batch);
            (got, state.engine.is_closing(conn))
        })
    }

    /// Feeds the authenticator's outcome back; the admin goes on.
    fn persisted(self: &Arc<Self>, id: u64, outcome: Result<(), mist_engine::auth::AuthError>) {
        self.drive(|state| state.engine.handle_persisted(id, outcome));
    }

    /// Wakes writers and readers, starts storing changes and reports
    /// throttled addresses, after the lock is released.
    fn act(self: &Arc<Self>, effects: Effects) {
        for link in effects.woken {
            link.outbox_ready.notify();
        }
        for link in effects.resumed {
            link.room.notify();
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
    while let Some(output) = state.engine.poll_output() {
        match output {
            Output::Transmit(conn) => {
                if let Some(link) = state.links.get(&conn) {
                    effects.woken.push(link.clone());
                }
            }
            Output::Resume(conn) => {
                if let Some(link) = state.links.get(&conn) {
                    effects.resumed.push(link.clone());
                }
            }
            Output::Persist { id, change } => effects.persist.push((id, change)),
            Output::Throttled { peer, retry_after } => effects.throttled.push((peer, retry_after)),
            other => log::error!("unhandled engine output {other:?}"),
        }
    }
    effects
}
