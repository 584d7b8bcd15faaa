//! Several mist nodes as one broker, over Redis pub/sub.
//!
//! Every node publishes what its own clients publish to one Redis channel
//! (named by the prefix, `mist` by default) and subscribes to it (on a
//! Redis Cluster, as a sharded channel on the master that owns its slot;
//! see [`cluster`]); what
//! arrives from the other nodes goes to [`Hub::handle_remote`], which
//! delivers it to this node's subscribers under the usual rules. A node
//! delivers to its own subscribers first and never waits for Redis: frames
//! for the other nodes wait in a bounded queue, and what does not fit is
//! dropped and counted. Each payload carries its node's id, so a node skips
//! its own messages: every client gets a message once, never its own.
//!
//! Cross-node delivery is at most once, as in Redis pub/sub itself: what is
//! published while a node's link to Redis is down is lost for that node. The
//! link reconnects with capped backoff and no retry limit. When the channel
//! has been quiet for a second the node publishes a probe to itself, and a
//! subscription that has heard nothing, not even its own probe, for three
//! seconds is taken for dead and made again (a Redis failover, or `CLIENT
//! KILL TYPE pubsub`, can end one silently).
//!
//! The link runs on a thread of its own with [`async_io`], whatever runtime
//! serves the clients: it is two connections and needs no more.

pub mod cluster;
pub mod resp;
mod stream;
mod target;

pub use target::{Endpoint, Target, TargetError, DEFAULT_PREFIX};

use async_io::Timer;
use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use mist_frontend::{Hub, ReplicationStats};
use resp::{Decoder, Value};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stream::Stream;

/// How long the channel may be quiet before this node sends a probe.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// How long a subscription may hear nothing before it is made again.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// Connecting, and each reply, may take this long.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before reconnecting, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Frames published in one write.
const PIPELINE: usize = 256;
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
    /// This node's id, in front of every payload it publishes.
    node: String,
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
        let reported = state.clone();
        hub.report_replication(Box::new(move || reported.stats()));
        let link = state.clone();
        std::thread::Builder::new()
            .name("mist-replicator".into())
            .spawn(move || {
                async_io::block_on(futures::future::join(
                    publish_loop(&link, rx),
                    subscribe_loop(&link, &hub),
                ));
            })
            .map_err(|e| TargetError::new(format!("replicator: cannot start its thread: {e}")))?;
        log::info!(
            "replicating through {} as node {}",
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

/// A random id for this node: sixteen hex digits.
fn node_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
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
    message: &'static [u8],
}

impl State {
    fn verbs(&self) -> Verbs {
        if matches!(self.target.endpoint, Endpoint::Cluster(_)) {
            Verbs {
                publish: b"SPUBLISH",
                subscribe: b"SSUBSCRIBE",
                subscribed: b"ssubscribe",
                message: b"smessage",
            }
        } else {
            Verbs {
                publish: b"PUBLISH",
                subscribe: b"SUBSCRIBE",
                subscribed: b"subscribe",
                message: b"message",
            }
        }
    }
}

/// Sends the frames of this node's clients, in order, on one connection
/// at a time; a probe when they have been quiet for a second. Forever.
async fn publish_loop(state: &State, frames: async_channel::Receiver<Bytes>) {
    linked(state, "publishing", &state.publisher_up, async |stream| {
        publish_on(state, stream, &frames).await
    })
    .await
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

/// `frames` published on `stream` until it fails; returns why.
async fn publish_on(
    state: &State,
    stream: &mut Stream,
    frames: &async_channel::Receiver<Bytes>,
) -> io::Error {
    let channel = state.target.prefix.as_bytes();
    let verbs = state.verbs();
    let mut decoder = decoder();
    state.publisher_up.store(true, Ordering::Release);
    let mut out = Vec::new();
    let mut payload = Vec::new();
    loop {
        let mut batch = Vec::new();
        match select(pin!(frames.recv()), pin!(Timer::after(PROBE_AFTER))).await {
            Either::Left((Ok(frame), _)) => batch.push(frame),
            Either::Left((Err(_), _)) => return io::Error::other("the server stopped"),
            Either::Right(_) => {}
        }
        while batch.len() < PIPELINE {
            match frames.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        out.clear();
        if batch.is_empty() {
            // The probe: this node's id and nothing else.
            payload.clear();
            payload.extend_from_slice(state.node.as_bytes());
            payload.push(b' ');
            resp::command(&[verbs.publish, channel, &payload], &mut out);
        }
        for frame in &batch {
            payload.clear();
            payload.extend_from_slice(state.node.as_bytes());
            payload.push(b' ');
            payload.extend_from_slice(frame);
            resp::command(&[verbs.publish, channel, &payload], &mut out);
        }
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        state.queued.fetch_sub(bytes, Ordering::AcqRel);
        let replies = batch.len().max(1);
        let sent = async {
            stream.write_all(&out).await?;
            for _ in 0..replies {
                match reply(stream, &mut decoder).await? {
                    Value::Integer(_) => {}
                    Value::Error(e) => {
                        return Err(io::Error::other(format!("PUBLISH refused: {e}")))
                    }
                    other => {
                        return Err(io::Error::other(format!(
                            "PUBLISH: unexpected reply {other:?}"
                        )))
                    }
                }
            }
            Ok(())
        };
        match within(IO_TIMEOUT, "PUBLISH", sent).await {
            Ok(()) => {
                state.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // At most once: the batch in flight is lost.
                state
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return e;
            }
        }
    }
}

/// Hears the other nodes' frames and hands them to the hub, on one
/// connection at a time. Forever.
async fn subscribe_loop(state: &State, hub: &Arc<Hub>) {
    linked(state, "subscribing", &state.subscriber_up, async |stream| {
        subscribe_on(state, stream, hub).await
    })
    .await
}

/// Subscribes on `stream` and hands what arrives to `hub` until the stream
/// fails or has been silent too long (not even this node's probe came):
/// returns why.
async fn subscribe_on(state: &State, stream: &mut Stream, hub: &Arc<Hub>) -> io::Error {
    let verbs = state.verbs();
    let mut decoder = decoder();
    let mut out = Vec::new();
    resp::command(&[verbs.subscribe, state.target.prefix.as_bytes()], &mut out);
    if let Err(e) = stream.write_all(&out).await {
        return e;
    }
    let mut frames: Vec<Bytes> = Vec::new();
    loop {
        let first = match within(
            SILENCE_LIMIT,
            "the subscription",
            reply(stream, &mut decoder),
        )
        .await
        {
            Ok(value) => value,
            Err(e) => return e,
        };
        // Everything that arrived with it is handed over in one go.
        let mut values = vec![first];
        loop {
            match decoder.decode() {
                Ok(Some(value)) => values.push(value),
                Ok(None) => break,
                Err(e) => return io::Error::other(e),
            }
        }
        frames.clear();
        for value in values {
            let items = match value {
                Value::Array(Some(items)) => items,
                Value::Error(e) => return io::Error::other(format!("SUBSCRIBE refused: {e}")),
                _ => continue,
            };
            let mut items = items.into_iter();
            let (kind, _channel, payload) = (items.next(), items.next(), items.next());
            match (kind.as_ref().and_then(Value::bytes), payload) {
                (Some(kind), _) if kind == verbs.subscribed => {
                    state.subscriber_up.store(true, Ordering::Release);
                    log::info!("replicator {}: subscribed", state.target);
                }
                // The slot moved (sharded pub/sub): find its master again.
                (Some(b"sunsubscribe"), _) => {
                    return io::Error::other("Redis ended the subscription: its slot moved");
                }
                (Some(kind), Some(Value::Bulk(Some(payload)))) if kind == verbs.message => {
                    match split_payload(&payload) {
                        // This node's own, or another node's probe.
                        Some((node, frame))
                            if node == state.node.as_bytes() || frame.is_empty() => {}
                        Some(_) => frames.push(payload.slice(17..)),
                        None => {
                            state.dropped.fetch_add(1, Ordering::Relaxed);
                            log::debug!(
                                "replicator: a message on the channel is not from a mist node"
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if frames.is_empty() {
            continue;
        }
        state
            .received
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        let items: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        for e in hub.handle_remote_all(&items) {
            state.dropped.fetch_add(1, Ordering::Relaxed);
            log::debug!("replicator: a message from another node was refused: {e}");
        }
    }
}

/// A payload's node id (sixteen hex digits) and frame.
fn split_payload(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let (node, rest) = payload.split_at_checked(16)?;
    let frame = rest.strip_prefix(b" ")?;
    node.iter()
        .all(u8::is_ascii_hexdigit)
        .then_some((node, frame))
}
