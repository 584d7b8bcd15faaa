//! Several mist nodes as one broker, over Redis pub/sub.
//!
//! Every node publishes what its own clients publish to Redis and
//! subscribes to what the other nodes publish there; what arrives goes to
//! [`Hub::handle_remote`], which delivers it to this node's subscribers
//! under the usual rules. A node delivers to its own subscribers first and
//! never waits for Redis: frames for the other nodes wait in a bounded
//! queue, and what does not fit is dropped and counted. Each payload (see
//! [`envelope`]) carries its node's id and a sequence number, so a node
//! skips its own messages and copies: every client gets a message once,
//! never its own.
//!
//! Two routings ([`Routing`]), the same on every node of a broker:
//! - `all` (the default): one channel, named by the prefix (`mist` by
//!   default); every node hears every message.
//! - `tag`: each subscription is anchored on its first tag in sorted order
//!   (see `mist_frontend::Hub::route_by_tag`), a node subscribes to the
//!   channel `{PREFIX}:TAG` of each of its anchors while it has one, and a
//!   message is published once on the channel of each of its tags. A node
//!   hears only messages carrying one of its anchors; one carrying several
//!   is heard several times and delivered once. A client's subscription
//!   on an anchor the node does not hear yet waits until Redis confirmed
//!   the channel, so a `ping` after `subscribe` answered means nothing
//!   published on any node is missed. The broker's own channel still
//!   carries admin changes and probes.
//!
//! On a Redis Cluster the channels are sharded (`SPUBLISH`, `SSUBSCRIBE`) and
//! all of one broker's channels share the slot of its prefix, so one
//! master carries one broker and each publisher's order holds (see
//! [`cluster`]); brokers on different prefixes spread over the masters.
//!
//! Cross-node delivery is at most once, as in Redis pub/sub itself: what is
//! published while a node's link to Redis is down is lost for that node (and
//! routing by tag holds nobody's subscription then). The link reconnects
//! with capped backoff and no retry limit and asks again for every channel
//! it needs. When the subscription has heard nothing for a second the node
//! publishes a probe to itself, and a subscription that has heard nothing,
//! not even its own probe, for three seconds is taken for dead and made
//! again (a Redis failover, or `CLIENT KILL TYPE pubsub`, can end one
//! silently).
//!
//! The link runs on a thread of its own with [`async_io`], whatever runtime
//! serves the clients: it is two connections and needs no more.

pub mod cluster;
pub mod envelope;
mod publisher;
pub mod resp;
mod stream;
mod subscriber;
mod target;

pub use target::{Endpoint, Routing, Target, TargetError, DEFAULT_PREFIX};

use async_io::Timer;
use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use mist_frontend::{Hub, ReplicationStats};
use resp::{Decoder, Value};
use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use stream::Stream;

/// How long the channel may be quiet before this node sends a probe.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// How long a subscription may hear nothing before it is made again.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// Connecting, and each reply, may take this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before reconnecting, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Bytes of frames waiting for Redis at most; more are dropped.
const MAX_QUEUED: usize = 16 * 1024 * 1024;

/// A running replicator; dropping it does not stop the link (it runs as
/// long as the process).
#[derive(Clone)]
pub struct Replicator {
    state: Arc<State>,
}

struct State {
    target: Target,
    /// This node's id, in every payload it publishes.
    node: u64,
    /// The last sequence number given to a payload.
    seq: AtomicU64,
    /// When the subscription last heard anything, in nanoseconds after
    /// `epoch`.
    heard_at: AtomicU64,
    epoch: Instant,
    /// Routing by tag: the subscribing link is up and keeps the anchors'
    /// channels in step; changes go to `dirty`, and `wake` says so.
    anchors_live: AtomicBool,
    dirty: Mutex<HashSet<String>>,
    wake: (async_channel::Sender<()>, async_channel::Receiver<()>),
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    queued: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl State {
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The subscription heard something.
    fn heard(&self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.heard_at.store(now, Ordering::Relaxed);
    }

    /// How long the subscription has heard nothing.
    fn quiet_for(&self) -> Duration {
        let heard = Duration::from_nanos(self.heard_at.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(heard)
    }

    fn dirty(&self) -> MutexGuard<'_, HashSet<String>> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel of messages carrying `tag`, routing by tag. The braces
    /// keep every channel of one broker in the slot of its prefix on a
    /// Redis Cluster, and apart from any prefix (which has none).
    fn tag_channel(&self, tag: &str) -> Vec<u8> {
        format!("{{{}}}:{tag}", self.target.prefix).into_bytes()
    }

    /// The tag whose channel `channel` is; `None` for the broker's own.
    fn tag_of_channel(&self, channel: &[u8]) -> Option<String> {
        let rest = channel.strip_prefix(b"{")?;
        let rest = rest.strip_prefix(self.target.prefix.as_bytes())?;
        let tag = rest.strip_prefix(b"}:")?;
        Some(String::from_utf8_lossy(tag).into_owned())
    }

    fn failed(&self, what: &str, error: &io::Error) {
        let message = format!("{what}: {error}");
        log::warn!("replicator {}: {message}", self.target);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}

impl Replicator {
    /// Makes `hub` one node of the broker at `target`: from now on the
    /// publishes of its clients go to the other nodes and theirs come here.
    /// Starts the link's thread; fails only for what cannot work at all.
    pub fn start(hub: Arc<Hub>, target: Target) -> Result<Replicator, TargetError> {
        let state = Arc::new(State {
            node: node_id(),
            target,
            seq: AtomicU64::new(0),
            heard_at: AtomicU64::new(0),
            epoch: Instant::now(),
            anchors_live: AtomicBool::new(false),
            dirty: Mutex::new(HashSet::new()),
            wake: async_channel::bounded(1),
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            last_error: Mutex::new(None),
        });
        let (tx, rx) = async_channel::unbounded::<Bytes>();
        let outlet_state = state.clone();
        let outlet = move |frame: Bytes| {
            let queued = outlet_state.queued.fetch_add(frame.len(), Ordering::AcqRel);
            if queued + frame.len() > MAX_QUEUED || tx.try_send(frame.clone()).is_err() {
                outlet_state.queued.fetch_sub(frame.len(), Ordering::AcqRel);
                outlet_state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        };
        if !hub.replicate_to(Box::new(outlet)) {
            return Err(TargetError::new(
                "replicator: this server replicates already",
            ));
        }
        if state.target.routing == Routing::Tag {
            let (marked, weak) = (state.clone(), Arc::downgrade(&hub));
            hub.route_by_tag(Box::new(move |tag: String| {
                if marked.anchors_live.load(Ordering::Acquire) {
                    marked.dirty().insert(tag);
                    let _ = marked.wake.0.try_send(());
                } else if let Some(hub) = weak.upgrade() {
                    // Down: what other nodes publish is lost to this one
                    // anyway, and nobody waits for it.
                    if hub.is_anchored(&tag) {
                        hub.anchor_ready(&tag);
                    } else {
                        hub.anchor_dropped(&tag);
                    }
                }
            }));
        }
        let reported = state.clone();
        hub.report_replication(Box::new(move || reported.stats()));
        let link = state.clone();
        std::thread::Builder::new()
            .name("mist-replicator".into())
            .spawn(move || {
                async_io::block_on(futures::future::join(
                    publisher::publish_loop(&link, rx),
                    subscriber::subscribe_loop(&link, &hub),
                ));
            })
            .map_err(|e| TargetError::new(format!("replicator: cannot start its thread: {e}")))?;
        log::info!(
            "replicating through {} as node {:016x}",
            state.target,
            state.node
        );
        Ok(Replicator { state })
    }

    /// The link's state and counters now (also in `/stats` and `/metrics`).
    pub fn stats(&self) -> ReplicationStats {
        self.state.stats()
    }
}

impl State {
    fn stats(&self) -> ReplicationStats {
        let s = self;
        ReplicationStats {
            connected: s.publisher_up.load(Ordering::Acquire)
                && s.subscriber_up.load(Ordering::Acquire),
            sent: s.sent.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// A random id for this node.
fn node_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The wait before the next connection attempt: doubling after each
/// failure up to a cap, back to the start once connected.
struct Backoff {
    next: Duration,
    connected_before: bool,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: BACKOFF.0,
            connected_before: false,
        }
    }

    /// A connection was made: counts a reconnect if one was made before.
    fn connected(&mut self, state: &State) {
        if self.connected_before {
            state.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.connected_before = true;
        self.next = BACKOFF.0;
    }

    async fn wait(&mut self) {
        Timer::after(self.next).await;
        self.next = (self.next * 2).min(BACKOFF.1);
    }
}

/// `future`, or a timeout error after `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match select(pin!(future), pin!(Timer::after(limit))).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no answer from Redis within {} s", limit.as_secs()),
        )),
    }
}

/// Reads the next value from Redis.
async fn reply(stream: &mut Stream, decoder: &mut Decoder) -> io::Result<Value> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(value) = decoder.decode().map_err(io::Error::other)? {
            return Ok(value);
        }
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "Redis closed the connection",
            ));
        }
        decoder.feed(&buffer[..n]);
    }
}

/// A new decoder. Its bound is generous: each node refuses frames over
/// its own line limit itself, and nodes may set different ones.
fn decoder() -> Decoder {
    Decoder::new(64 * 1024 * 1024)
}

/// Authenticates and selects the database, as the target says.
async fn handshake(state: &State, stream: &mut Stream) -> io::Result<()> {
    let target = &state.target;
    let decoder = &mut decoder();
    let mut out = Vec::new();
    if let Some(password) = &target.password {
        match &target.username {
            Some(user) => resp::command(&[b"AUTH", user.as_bytes(), password.as_bytes()], &mut out),
            None => resp::command(&[b"AUTH", password.as_bytes()], &mut out),
        }
    }
    if target.db != 0 {
        resp::command(&[b"SELECT", target.db.to_string().as_bytes()], &mut out);
    }
    if out.is_empty() {
        return Ok(());
    }
    stream.write_all(&out).await?;
    for step in [
        target.password.is_some().then_some("AUTH"),
        (target.db != 0).then_some("SELECT"),
    ]
    .into_iter()
    .flatten()
    {
        match within(IO_TIMEOUT, step, reply(stream, decoder)).await? {
            Value::Simple(_) => {}
            // Redis's own words, which never repeat the password.
            Value::Error(e) => return Err(io::Error::other(format!("{step} refused: {e}"))),
            other => {
                return Err(io::Error::other(format!(
                    "{step}: unexpected reply {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// A connection to the Redis that holds this broker's channel, past its
/// `AUTH` and `SELECT`: the standalone server, or the cluster master that
/// owns the channel's slot (asked of each seed in turn).
async fn connect(state: &State) -> io::Result<Stream> {
    let target = &state.target;
    let seeds = match &target.endpoint {
        Endpoint::Tcp { host, port } => {
            let mut stream = stream::tcp(host, *port, IO_TIMEOUT).await?;
            handshake(state, &mut stream).await?;
            return Ok(stream);
        }
        Endpoint::Unix(path) => {
            let mut stream = stream::unix(path, IO_TIMEOUT).await?;
            handshake(state, &mut stream).await?;
            return Ok(stream);
        }
        Endpoint::Cluster(seeds) => seeds,
    };
    let slot = cluster::slot(target.prefix.as_bytes());
    let mut last = io::Error::other("no seed node");
    for (host, port) in seeds {
        let asked = async {
            let mut seed = stream::tcp(host, *port, IO_TIMEOUT).await?;
            handshake(state, &mut seed).await?;
            seed.write_all(&cluster::slots_command()).await?;
            let mut decoder = decoder();
            let map = within(IO_TIMEOUT, "CLUSTER SLOTS", reply(&mut seed, &mut decoder)).await?;
            let owner = cluster::owner(&map, slot, host)?;
            if owner == (host.clone(), *port) {
                return Ok::<Stream, io::Error>(seed);
            }
            let mut master = stream::tcp(&owner.0, owner.1, IO_TIMEOUT).await?;
            handshake(state, &mut master).await?;
            Ok(master)
        };
        match asked.await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = io::Error::new(e.kind(), format!("seed {host}:{port}: {e}")),
        }
    }
    Err(last)
}

/// The commands and pushes of plain or sharded pub/sub.
struct Verbs {
    publish: &'static [u8],
    subscribe: &'static [u8],
    subscribed: &'static [u8],
    unsubscribe: &'static [u8],
    unsubscribed: &'static [u8],
    message: &'static [u8],
}

impl State {
    fn verbs(&self) -> Verbs {
        if matches!(self.target.endpoint, Endpoint::Cluster(_)) {
            Verbs {
                publish: b"SPUBLISH",
                subscribe: b"SSUBSCRIBE",
                subscribed: b"ssubscribe",
                unsubscribe: b"SUNSUBSCRIBE",
                unsubscribed: b"sunsubscribe",
                message: b"smessage",
            }
        } else {
            Verbs {
                publish: b"PUBLISH",
                subscribe: b"SUBSCRIBE",
                subscribed: b"subscribe",
                unsubscribe: b"UNSUBSCRIBE",
                unsubscribed: b"unsubscribe",
                message: b"message",
            }
        }
    }
}

/// Connects to Redis again and again, with backoff, and runs `on` on each
/// connection until it fails, for as long as the process runs (the link
/// holds the hub, so the node never goes away under it). `up` is down
/// between connections.
async fn linked(
    state: &State,
    what: &str,
    up: &AtomicBool,
    mut on: impl AsyncFnMut(&mut Stream) -> io::Error,
) {
    let mut backoff = Backoff::new();
    loop {
        let error = match connect(state).await {
            Ok(mut stream) => {
                backoff.connected(state);
                let error = on(&mut stream).await;
                up.store(false, Ordering::Release);
                error
            }
            Err(error) => error,
        };
        state.failed(what, &error);
        backoff.wait().await;
    }
}
