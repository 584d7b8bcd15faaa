//! The engine shared by every connection task, and the wiring that wakes them
//! and stores admin changes.

use crate::shutdown::Shutdown;
use crate::signal::Signal;
use bytes::Bytes;
use mist_engine::auth::{Authenticator, Change, Grants};
use mist_engine::{Config, ConnId, Engine, Output, Stats};
use mist_proto::{ProtoError, Request};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// What a connection's tasks share with the hub.
#[derive(Default)]
pub(crate) struct Link {
    /// The engine queued frames for this connection.
    pub(crate) outbox_ready: Signal,
    /// The writer took frames out, or an admin change settled, so a paused
    /// reader may go on.
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
    /// For each transport: its name, connections open now, accepted since start.
    pub transports: Vec<(&'static str, usize, u64)>,
}

/// A task handed to the runtime.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;
type Spawn = Box<dyn Fn(Task) + Send + Sync>;

/// What to do after the lock is released: wake writers, store changes.
#[derive(Default)]
struct Effects {
    woken: Vec<Arc<Link>>,
    persist: Vec<(u64, Change)>,
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
    authenticator: Option<Arc<dyn Authenticator>>,
    spawn: OnceLock<Spawn>,
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
            state: Mutex::new(State {
                engine,
                links: HashMap::new(),
            }),
            max_line,
            authenticator,
            spawn: OnceLock::new(),
            transports: TransportCounts::default(),
            shutdown: Shutdown::default(),
        }
    }

    /// Lends the hub the runtime's spawner, for storing admin changes in the
    /// background. Runtime frontends call it when they start; later calls
    /// are ignored.
    pub fn set_spawner(&self, spawn: impl Fn(Task) + Send + Sync + 'static) {
        let _ = self.spawn.set(Box::new(spawn));
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
    pub fn shut_down(&self) {
        self.shutdown.trigger();
        let mut state = self.lock();
        state.engine.handle_shutdown();
        let links: Vec<Arc<Link>> = state.links.values().cloned().collect();
        drop(state);
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

    /// Waits, with the runtime's `sleep`, until every connection has closed
    /// or `grace` has passed; returns whether all closed.
    pub async fn drained<F, S>(&self, grace: std::time::Duration, sleep: S) -> bool
    where
        S: Fn(std::time::Duration) -> F,
        F: Future<Output = ()>,
    {
        let deadline = std::time::Instant::now() + grace;
        while self.stats().connections > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            sleep(std::time::Duration::from_millis(20)).await;
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
        Snapshot { engine, transports }
    }

    pub(crate) fn opened(&self, via: Via) {
        self.transports.open[via as usize].fetch_add(1, Ordering::Relaxed);
        self.transports.accepted[via as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, via: Via) {
        self.transports.open[via as usize].fetch_sub(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The engine never panics on client input; if something else did while
        // holding the lock, serving the other clients beats stopping them all.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn connect(
        &self,
        token: Option<Option<&str>>,
    ) -> Result<(ConnId, Arc<Link>), mist_engine::Error> {
        let link = Arc::new(Link::default());
        let mut state = self.lock();
        if self.is_stopping() {
            return Err(mist_engine::Error::ShuttingDown);
        }
        if state.engine.at_capacity() {
            let limit = state.engine.config().max_connections;
            return Err(mist_engine::Error::TooManyConnections { limit });
        }
        let conn = match token {
            None => state.engine.handle_connect(),
            Some(token) => state.engine.handle_connect_with_token(token)?,
        };
        state.links.insert(conn, link.clone());
        Ok((conn, link))
    }

    /// Applies a batch of decoded lines in order; returns whether the
    /// connection may keep sending (see [`Engine::accepts_input`]) and
    /// whether it is to be closed (see [`Engine::is_closing`]).
    pub(crate) fn handle_messages(
        self: &Arc<Self>,
        conn: ConnId,
        messages: &mut Vec<Result<Request, ProtoError>>,
    ) -> (bool, bool) {
        let mut state = self.lock();
        for message in messages.drain(..) {
            state.engine.handle_message(conn, message);
        }
        let flags = (
            state.engine.accepts_input(conn),
            state.engine.is_closing(conn),
        );
        let effects = drain_outputs(&mut state);
        drop(state);
        self.act(effects);
        flags
    }

    /// Applies a request, returning its failure rather than queueing it.
    pub(crate) fn command(
        self: &Arc<Self>,
        conn: ConnId,
        request: &Request,
    ) -> Result<(), mist_engine::Error> {
        let mut state = self.lock();
        let outcome = state.engine.handle_command(conn, request);
        let effects = drain_outputs(&mut state);
        drop(state);
        self.act(effects);
        outcome
    }

    pub(crate) fn accepts_input(&self, conn: ConnId) -> bool {
        self.lock().engine.accepts_input(conn)
    }

    pub(crate) fn input_closed(self: &Arc<Self>, conn: ConnId) {
        let mut state = self.lock();
        state.engine.handle_input_closed(conn);
        let effects = drain_outputs(&mut state);
        drop(state);
        self.act(effects);
    }

    pub(crate) fn disconnect(&self, conn: ConnId) {
        let mut state = self.lock();
        state.engine.handle_disconnect(conn);
        state.links.remove(&conn);
    }

    /// Hands every frame queued for `conn` to its writer (see
    /// [`Engine::poll_transmit`]); also says whether `conn` is to be closed.
    pub(crate) fn transmit(&self, conn: ConnId, batch: &mut VecDeque<Bytes>) -> (bool, bool) {
        let mut state = self.lock();
        let got = state.engine.poll_transmit(conn, batch);
        (got, state.engine.is_closing(conn))
    }

    /// Feeds the authenticator's outcome back, and lets the admin go on.
    fn persisted(self: &Arc<Self>, id: u64, outcome: Result<(), mist_engine::auth::AuthError>) {
        let mut state = self.lock();
        let admin = state.engine.handle_persisted(id, outcome);
        let link = admin.and_then(|conn| state.links.get(&conn).cloned());
        let effects = drain_outputs(&mut state);
        drop(state);
        self.act(effects);
        if let Some(link) = link {
            link.room.notify();
        }
    }

    /// Wakes writers and starts storing changes, after the lock is released.
    fn act(self: &Arc<Self>, effects: Effects) {
        for link in effects.woken {
            link.outbox_ready.notify();
        }
        for (id, change) in effects.persist {
            self.store(id, change);
        }
    }

    fn store(self: &Arc<Self>, id: u64, change: Change) {
        let (Some(authenticator), Some(spawn)) = (self.authenticator.clone(), self.spawn.get())
        else {
            let reason = "the server cannot store changes (no authenticator or runtime)";
            log::error!("{reason}");
            return self.persisted(id, Err(mist_engine::auth::AuthError(reason.into())));
        };
        let hub = self.clone();
        spawn(Box::pin(async move {
            let outcome = change.apply(authenticator.as_ref()).await;
            if let Err(e) = &outcome {
                log::warn!("storing an admin change ({change:?}) failed: {e}");
            }
            hub.persisted(id, outcome);
        }));
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
            Output::Persist { id, change } => effects.persist.push((id, change)),
            other => log::error!("unhandled engine output {other:?}"),
        }
    }
    effects
}
