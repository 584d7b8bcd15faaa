//! The broker state machine: connections in, their input applied in turns,
//! frames out. The commands themselves live in the submodules, one file per
//! group: [`dispatch`] routes a request and bounds its reply, and
//! [`subscribe`], [`publish`], [`lists`] and [`admin`] do the work.

mod admin;
mod dispatch;
mod lists;
mod offer;
mod publish;
mod remote;
mod routing;
pub use offer::Offer;
pub(crate) use publish::Pacing;
mod subscribe;

use crate::access::{Access, Role};
use crate::auth::Grants;
use crate::authority::{Authority, Identity};
use crate::extension::CommandHandler;
pub use crate::id::{ConnId, MAX_SHARDS};
use crate::index::{Index, Subscriptions, TagId};
use crate::outbox::{Batch, Outbox, Queued};
use crate::shared::Shared;
use crate::{Config, Error};
use bytes::Bytes;
use mist_proto::{encode, ProtoError, Request};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generations wrap within the bits a [`ConnId`] keeps of them.
const GENERATION_MASK: u32 = (1 << 24) - 1;

/// Waiting input kept room for once it is all applied.
const RETAINED_INPUT: usize = 64;

/// Something the caller must act on; see the crate docs for the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// The connection's outbox went from empty to non-empty: wake its writer,
    /// which collects the frames with [`Engine::poll_transmit`].
    Transmit(ConnId),
    /// An admin change to store with the authenticator ([`Change::apply`]),
    /// outside the engine; report the outcome with [`Engine::handle_persisted`].
    /// Changes to different tokens may be out at the same time.
    ///
    /// [`Change::apply`]: crate::auth::Change::apply
    Persist {
        /// Names this change in [`Engine::handle_persisted`].
        id: u64,
        /// What to store.
        change: crate::auth::Change,
    },
    /// The connection's admin change settled, or a subscriber it was paced
    /// by made room, so its input may go on: its reader should call
    /// [`Engine::handle_resume`].
    Resume(ConnId),
    /// A client address used up its failed authentications: its attempts
    /// are refused, unchecked, for `retry_after`. Reported once each time.
    Throttled {
        /// The address (for IPv6, any address of its /64).
        peer: IpAddr,
        /// How long its attempts are refused.
        retry_after: Duration,
    },
    /// A publish that connections on other shards may want: give it to
    /// each shard it names, in order with the publisher's other offers
    /// ([`Engine::handle_offer`]), then tell this shard that it went out
    /// ([`Engine::handle_offered`]). Never emitted by a lone engine.
    Offer(Offer),
    /// An admin change settled: call [`Engine::handle_sync`] on every
    /// shard, then once more on every shard (the first round applies the
    /// change everywhere, the second answers its admin). Never emitted by
    /// a lone engine.
    Sync,
    /// A publish this shard applied for one of its clients, as the frame
    /// its subscribers get: carry it to the other nodes of the broker,
    /// which give it to [`Engine::handle_remote_publish`]. Only while
    /// [`Engine::set_replicating`] is on.
    Replicate(Bytes),
    /// An admin change this node's authenticator stored and every shard
    /// applied: carry it to the other nodes, which give it to
    /// [`Engine::handle_remote_change`]. Only while replicating.
    ReplicateChange(crate::auth::Change),
    /// The node gained or lost its last subscription anchored on this tag
    /// (routing by tag; see [`Engine::set_routing_by_tag`]): whether it
    /// needs the other nodes' messages carrying it changed. Ask
    /// [`Engine::is_anchored`] whether it needs them now (outputs of
    /// different shards may be drained out of order), and once they are
    /// heard, or no longer needed, say so with
    /// [`Engine::handle_anchor_ready`].
    Interest(String),
}

/// What a connection's reader should do next, after any input it gave
/// (see [`Engine::flow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// All of its input has been applied: read more.
    Read,
    /// It has input left, and its turn's work is used up: let other
    /// connections run, then call [`Engine::handle_resume`].
    Yield,
    /// Its next input waits for room in its outbox (its writer must write
    /// what is queued) or for an admin change of its own to settle: wait
    /// until the writer took frames or [`Output::Resume`] came, then call
    /// [`Engine::handle_resume`].
    Wait,
    /// Its next input is a publish that waits for room in a subscriber's
    /// outbox: wait until [`Output::Resume`] comes, then call
    /// [`Engine::handle_resume`]; if it has not come within
    /// [`Config::pace_timeout`] of the first `Pace` for this publish, call
    /// [`Engine::handle_pace_expired`] and then `handle_resume`. A `Pace`
    /// for the same publish after that waits for a subscriber whose writer
    /// has not had its turn yet: wait for [`Output::Resume`] alone, after
    /// which the bounded wait starts over.
    Pace,
    /// It was refused or revoked: read nothing more; its writer writes what
    /// is queued and closes it.
    Close,
}

/// How a connecting client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// It will send `auth` as its first message (the line protocol).
    InBand,
    /// It gave a token, or none, out of band (an HTTP header).
    Token(Option<&'a str>),
}

/// Counters over the engine's whole life, and its current size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Subscriptions held now, across all connections.
    pub subscriptions: usize,
    /// Connections holding at least one subscription now.
    pub subscribers: usize,
    /// Messages accepted for publishing.
    pub published: u64,
    /// Deliveries queued for subscribers.
    pub delivered: u64,
    /// Deliveries dropped because the subscriber's outbox was full.
    pub dropped: u64,
    /// Publishes from other nodes applied here
    /// ([`Engine::handle_remote_publish`]).
    pub remote: u64,
}

/// One connection's outbox as seen from outside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Frames queued or being written.
    pub queued_frames: usize,
    /// Bytes queued or being written.
    pub queued_bytes: usize,
    /// Deliveries to it dropped so far.
    pub dropped: u64,
    /// Received input not applied yet.
    pub pending_input: usize,
}

struct Conn {
    role: Role,
    peer: Option<IpAddr>,
    /// Refused or revoked: its remaining frames go out, then it is closed.
    closing: bool,
    /// An admin change of this connection is with the authenticator, or
    /// its new subscription waits for its anchor to be heard; its input
    /// waits, so commands still apply in order.
    waiting: bool,
    /// Input received and not applied yet: it waits for a turn, for room
    /// for its reply, or for an admin change.
    input: VecDeque<Result<Request, ProtoError>>,
    subscriptions: Subscriptions,
    outbox: Outbox,
    /// The last publish delivered here, so several matching subscriptions
    /// still mean one delivery.
    last_publish: u64,
    /// Its next publish waits for room at a subscriber ([`Flow::Pace`]).
    paced: bool,
    /// It waited its bounded time: its next publish drops what does not fit.
    pace_expired: bool,
    /// Its outbox stayed full through a publisher's bounded wait: nobody
    /// waits for it until its writer takes frames.
    stalled: bool,
    /// Publishers paced by this connection's full outbox.
    waiters: Vec<ConnId>,
    /// Publishes of its own applied so far: tells a paced reader whether the
    /// publish it waits for is still the same one.
    published: u64,
    /// Its publishes were offered to other shards and are not all there
    /// yet: its own frames wait, so that a reply after a publish still
    /// means the publish reached every shard.
    offering: bool,
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The broker, or one shard of it: a state machine that does no IO, spawns
/// nothing and reads no clock.
///
/// **Inputs** (each may queue outputs):
/// - connections: [`handle_connect_from`](Engine::handle_connect_from)
///   (and [`handle_connect`](Engine::handle_connect),
///   [`handle_connect_with_token`](Engine::handle_connect_with_token)), which
///   refuse at capacity and during shutdown;
///   [`handle_input_closed`](Engine::handle_input_closed),
///   [`handle_disconnect`](Engine::handle_disconnect);
/// - what clients send: [`handle_input`](Engine::handle_input) /
///   [`handle_message`](Engine::handle_message) (decoded lines, answered in
///   the connection's outbox), [`handle_command`](Engine::handle_command)
///   (a request whose failure the caller reports itself, e.g. as an HTTP
///   status), [`check_admin_token`](Engine::check_admin_token);
/// - turns and pacing: [`handle_resume`](Engine::handle_resume),
///   [`handle_pace_expired`](Engine::handle_pace_expired);
/// - time: [`handle_timeout`](Engine::handle_timeout), at start and about
///   once a second;
/// - the authenticator's outcome: [`handle_persisted`](Engine::handle_persisted);
/// - between shards: [`handle_offer`](Engine::handle_offer),
///   [`handle_offer_expired`](Engine::handle_offer_expired),
///   [`handle_offered`](Engine::handle_offered),
///   [`handle_sync`](Engine::handle_sync);
/// - the server stopping: [`handle_shutdown`](Engine::handle_shutdown).
///
/// **Outputs**: after every input, drain [`poll_output`](Engine::poll_output)
/// until it returns `None` ([`Output::Transmit`], [`Output::Resume`],
/// [`Output::Persist`], [`Output::Throttled`], [`Output::Offer`],
/// [`Output::Sync`]); a connection's writer collects its frames with
/// [`poll_transmit`](Engine::poll_transmit); its reader asks
/// [`flow`](Engine::flow) what to do next.
///
/// Queries: [`stats`](Engine::stats), [`conn_stats`](Engine::conn_stats),
/// [`is_anonymous`](Engine::is_anonymous), [`is_closing`](Engine::is_closing),
/// [`published_by`](Engine::published_by), [`work`](Engine::work),
/// [`config`](Engine::config). See the crate documentation for the whole
/// contract.
pub struct Engine {
    config: Config,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    index: Index,
    outputs: VecDeque<Output>,
    stats: Stats,
    /// Numbers publishes for once-per-connection delivery and grant checks.
    publish_seq: u64,
    /// Reused for each publish's tag ids and recipients, to keep allocation
    /// off the hot path.
    scratch: Vec<TagId>,
    recipients: Vec<ConnId>,
    /// This shard's replica of the grants; `None` for an open server.
    access: Option<Access>,
    /// Commands registered by an embedder.
    commands: HashMap<String, CommandHandler>,
    /// Work done since the engine started, in the units of
    /// [`Config::work_per_turn`].
    work: u64,
    /// The time last passed in with [`Engine::handle_timeout`].
    now: Option<Instant>,
    /// Connections that must authenticate in band, by deadline.
    auth_deadlines: VecDeque<(Instant, ConnId)>,
    /// Shutting down: new connections are refused.
    stopping: bool,
    /// This shard's number among the server's shards.
    shard: usize,
    /// What the shards share.
    shared: Arc<Shared>,
    /// Publishes come out as [`Output::Replicate`] for other nodes.
    replicating: bool,
    /// Subscriptions are anchored, and wait until their anchor is heard.
    anchoring: bool,
    /// Connections holding a signed token, by when it expires (seconds
    /// since the Unix epoch), soonest first.
    expiring: std::collections::BinaryHeap<std::cmp::Reverse<(u64, ConnId)>>,
    /// Connections waiting for an anchor to be heard, by anchor.
    awaiting: HashMap<String, Vec<ConnId>>,
}

/// The open connection `id` among `slots`.
fn conn_in(slots: &mut [Slot], id: ConnId) -> Option<&mut Conn> {
    let slot = slots.get_mut(id.slot())?;
    (slot.generation == id.generation()).then_some(slot.conn.as_mut())?
}

impl Engine {
    /// An open engine: no authentication, no admin commands.
    pub fn new(config: Config) -> Engine {
        Engine::shards(config, 1).remove(0)
    }

    /// `count` shards of one open server (at most [`MAX_SHARDS`]). Each owns
    /// the connections it accepts, their subscriptions, index and outboxes,
    /// and may run on its own thread behind its own lock; a publish reaches
    /// the other shards through [`Output::Offer`].
    pub fn shards(config: Config, count: usize) -> Vec<Engine> {
        let shared = Arc::new(Shared::new(count.clamp(1, MAX_SHARDS), None));
        Engine::around(config, shared)
    }

    /// `count` shards of one server whose clients present signed tokens
    /// (JWT) that `verifier` checks; `server_token`, if any, is the admin's
    /// as on a secured server. No token is stored: the admin commands that
    /// change stored tokens are refused. Pass the time in with
    /// [`Engine::handle_clock`] before clients connect.
    pub fn signed_shards(
        config: Config,
        count: usize,
        server_token: Option<String>,
        verifier: Arc<dyn crate::auth::TokenVerifier>,
    ) -> Vec<Engine> {
        let count = count.clamp(1, MAX_SHARDS);
        let authority = Authority::signed(server_token, verifier, &config, count);
        let shared = Arc::new(Shared::new(count, Some(authority)));
        Engine::around(config, shared)
    }

    /// `count` shards of one server that wants a token from every client;
    /// see [`Engine::secured`].
    pub fn secured_shards(
        config: Config,
        count: usize,
        server_token: String,
        grants: Grants,
    ) -> Vec<Engine> {
        let count = count.clamp(1, MAX_SHARDS);
        let authority = Authority::new(server_token, grants, &config, count);
        let shared = Arc::new(Shared::new(count, Some(authority)));
        Engine::around(config, shared)
    }

    fn around(config: Config, shared: Arc<Shared>) -> Vec<Engine> {
        (0..shared.shards())
            .map(|shard| {
                let mut engine = Engine::shard(config.clone(), shared.clone(), shard);
                engine.index.record_changes = shared.shards() > 1;
                engine.sync_grants();
                engine
            })
            .collect()
    }

    fn shard(config: Config, shared: Arc<Shared>, shard: usize) -> Engine {
        Engine {
            access: shared.is_secured().then(Access::default),
            shard,
            shared,
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: Index::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            publish_seq: 0,
            scratch: Vec::new(),
            recipients: Vec::new(),
            commands: HashMap::new(),
            work: 0,
            now: None,
            auth_deadlines: VecDeque::new(),
            stopping: false,
            replicating: false,
            anchoring: false,
            awaiting: HashMap::new(),
            expiring: std::collections::BinaryHeap::new(),
        }
    }

    /// An engine that wants a token from every client: `server_token` is the
    /// admin's, `grants` the registered tokens as the authenticator loaded them.
    ///
    /// ```
    /// use mist_engine::auth::Grants;
    /// use mist_engine::{Config, Engine};
    ///
    /// let mut grants = Grants::new();
    /// grants.insert("reader".into(), ["news".to_string()].into());
    /// let mut engine = Engine::secured(Config::default(), "admin".into(), grants);
    /// assert!(engine.handle_connect_with_token(Some("reader")).is_ok());
    /// assert!(engine.handle_connect_with_token(Some("guess")).is_err());
    /// ```
    pub fn secured(config: Config, server_token: String, grants: Grants) -> Engine {
        Engine::secured_shards(config, 1, server_token, grants).remove(0)
    }

    /// Input: new limits, for work from now on (new connections, commands
    /// and deliveries); what clients hold already stays. Call it on every
    /// shard.
    pub fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Input: a new verifier for signed tokens (a new key), for tokens
    /// presented from now on; open connections keep what theirs gave them.
    /// Shared by every shard; `false` on an engine of stored tokens.
    pub fn set_token_verifier(&mut self, verifier: Arc<dyn crate::auth::TokenVerifier>) -> bool {
        self.shared
            .authority()
            .is_some_and(|mut authority| authority.set_verifier(verifier))
    }

    /// This shard's number, which the [`ConnId`]s it hands out carry.
    pub fn shard_index(&self) -> usize {
        self.shard
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether [`Config::max_connections`] are open, on all shards
    /// together: new clients are refused until some leave.
    pub fn at_capacity(&self) -> bool {
        self.shared.connections.load(Ordering::Acquire) >= self.config.max_connections
    }

    /// Input: a client connected. On a secured engine its first message must
    /// be `auth` (the line protocol). Refused at capacity or during shutdown.
    pub fn handle_connect(&mut self) -> Result<ConnId, Error> {
        self.handle_connect_from(None, Credentials::InBand)
    }

    /// Input: a client connected with a token it gave out of band (an HTTP
    /// header or query parameter). A secured engine refuses a missing or
    /// unknown token; an open one ignores it.
    pub fn handle_connect_with_token(&mut self, token: Option<&str>) -> Result<ConnId, Error> {
        self.handle_connect_from(None, Credentials::Token(token))
    }

    /// Input: a client connected from `peer`. Its failed authentications
    /// count against that address ([`Config::max_auth_failures`]); a client
    /// that authenticates in band must do so within
    /// [`Config::auth_timeout`] of the time last passed in.
    pub fn handle_connect_from(
        &mut self,
        peer: Option<IpAddr>,
        credentials: Credentials<'_>,
    ) -> Result<ConnId, Error> {
        if self.stopping {
            return Err(Error::ShuttingDown);
        }
        let limit = self.config.max_connections;
        if self.shared.connections.fetch_add(1, Ordering::AcqRel) >= limit {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::TooManyConnections { limit });
        }
        let unsigned = |role| {
            Ok(Identity {
                role,
                expires: None,
            })
        };
        let identity = match (&self.access, credentials) {
            (None, _) => unsigned(Role::Open),
            (Some(_), Credentials::InBand) => unsigned(Role::Anonymous),
            (Some(_), Credentials::Token(None)) => Err(Error::AuthRequired),
            (Some(_), Credentials::Token(Some(token))) => self.check_token(peer, token),
        };
        let Identity { role, expires } = identity.inspect_err(|_| {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        })?;
        let conn = self.connect_as(role, peer);
        self.expire_at(conn, expires);
        if role == Role::Anonymous {
            if let Some(now) = self.now {
                let deadline = now + self.config.auth_timeout;
                self.auth_deadlines.push_back((deadline, conn));
            }
        }
        Ok(conn)
    }

    fn connect_as(&mut self, role: Role, peer: Option<IpAddr>) -> ConnId {
        let conn = Conn {
            role,
            peer,
            closing: false,
            waiting: false,
            input: VecDeque::new(),
            subscriptions: Subscriptions::default(),
            outbox: Outbox::default(),
            last_publish: 0,
            paced: false,
            pace_expired: false,
            stalled: false,
            waiters: Vec::new(),
            published: 0,
            offering: false,
        };
        self.stats.connections += 1;
        if let Some(slot) = self.free_slots.pop() {
            let entry = &mut self.slots[slot as usize];
            entry.generation = entry.generation.wrapping_add(1) & GENERATION_MASK;
            entry.conn = Some(conn);
            return ConnId::new(self.shard, slot, entry.generation);
        }
        let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 connections");
        self.slots.push(Slot {
            generation: 0,
            conn: Some(conn),
        });
        ConnId::new(self.shard, slot, 0)
    }

    /// Input: one line from `conn`, decoded or not; see [`Engine::handle_input`].
    pub fn handle_message(&mut self, conn: ConnId, message: Result<Request, ProtoError>) {
        self.handle_input(conn, [message]);
    }

    /// Input: lines from `conn`, decoded or not, in the order they arrived.
    /// They are applied in order, as far as this turn's work allows and as
    /// long as the connection's outbox has room for the largest reply the
    /// next one can get; the rest wait in the engine (see [`Engine::flow`]).
    /// A failure is answered in `conn`'s outbox, in order with its other
    /// replies. Unknown ids are ignored.
    pub fn handle_input(
        &mut self,
        conn: ConnId,
        messages: impl IntoIterator<Item = Result<Request, ProtoError>>,
    ) {
        let Some(c) = self.conn(conn) else { return };
        if c.closing {
            return;
        }
        let end = self.work.saturating_add(self.config.work_per_turn);
        let mut messages = messages.into_iter();
        // Nothing waits before them: apply them as they come, and queue only
        // what this turn cannot take.
        if c.input.is_empty() {
            while self.work < end {
                let Some(message) = messages.next() else {
                    return;
                };
                if !self.admits(conn, &message) {
                    if let Some(c) = self.conn_mut(conn).filter(|c| !c.closing) {
                        c.input.push_back(message);
                    }
                    break;
                }
                if !self.apply_next(conn, message) {
                    break;
                }
            }
        }
        if let Some(c) = self.conn_mut(conn) {
            if !c.closing {
                c.input.extend(messages);
            }
        }
        self.run_turn(conn, end);
    }

    /// Input: `conn` may go on with its waiting input, for another turn.
    pub fn handle_resume(&mut self, conn: ConnId) {
        let end = self.work.saturating_add(self.config.work_per_turn);
        self.run_turn(conn, end);
    }

    /// Applies `conn`'s waiting input until it is all applied, the turn's
    /// work reaches `end`, or the next one must wait.
    fn run_turn(&mut self, conn: ConnId, end: u64) {
        while self.work < end && self.next_fits(conn) {
            let Some(message) = self.conn_mut(conn).and_then(|c| c.input.pop_front()) else {
                return;
            };
            if !self.apply_next(conn, message) {
                return;
            }
        }
        if let Some(c) = self.conn_mut(conn) {
            if c.input.is_empty() && c.input.capacity() > RETAINED_INPUT {
                // A burst is over: an idle connection keeps no large queue.
                c.input = VecDeque::new();
            }
        }
    }

    /// Applies `message`, `conn`'s next input. A publish that must wait for
    /// its subscribers goes back to the head of the input; returns whether
    /// the message was applied.
    fn apply_next(&mut self, conn: ConnId, message: Result<Request, ProtoError>) -> bool {
        self.work += 1;
        let Some(paced) = self.process(conn, message) else {
            return true;
        };
        if let Some(c) = self.conn_mut(conn) {
            c.input.push_front(paced);
        }
        false
    }

    /// Whether `conn`'s next input can be applied now.
    fn next_fits(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .and_then(|c| c.input.front())
            .is_some_and(|next| self.admits(conn, next))
    }

    /// Whether `message` may be applied for `conn` now: it is neither
    /// closing nor waiting for an admin change, and its outbox has room for
    /// the largest reply `message` can get.
    fn admits(&self, conn: ConnId, message: &Result<Request, ProtoError>) -> bool {
        let Some(c) = self.conn(conn) else {
            return false;
        };
        // An empty outbox takes any reply: no need to size it.
        !c.closing
            && !c.waiting
            && !c.paced
            && (c.outbox.is_empty()
                || c.outbox
                    .has_room(self.reply_bound(c, message), &self.config))
    }

    /// What `conn`'s reader should do next.
    pub fn flow(&self, conn: ConnId) -> Flow {
        match self.conn(conn) {
            None => Flow::Close,
            Some(c) if c.closing => Flow::Close,
            Some(c) if c.input.is_empty() && !c.waiting => Flow::Read,
            Some(c) if c.paced => Flow::Pace,
            Some(_) if self.next_fits(conn) => Flow::Yield,
            Some(_) => Flow::Wait,
        }
    }

    /// How many of `conn`'s publishes have been applied: a reader told
    /// [`Flow::Pace`] again after a resume is still waiting for the same
    /// publish if this has not changed, so its bounded wait goes on.
    pub fn published_by(&self, conn: ConnId) -> u64 {
        self.conn(conn).map_or(0, |c| c.published)
    }

    /// Input: `conn` was told [`Flow::Pace`] and waited
    /// [`Config::pace_timeout`] without the room it waited for. Its publish
    /// goes out at its next turn ([`Engine::handle_resume`]): subscribers
    /// still full whose writer is stuck writing are judged stalled, lose this
    /// delivery, and are not waited for again until their writer takes
    /// frames. A full subscriber whose writer has not yet taken what is
    /// queued (it has not had its turn) is still waited for.
    pub fn handle_pace_expired(&mut self, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn).filter(|c| c.paced) {
            c.paced = false;
            c.pace_expired = true;
        }
    }

    /// Whether `conn` must still authenticate (send `auth`).
    pub fn is_anonymous(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.role == Role::Anonymous)
    }

    /// Whether `conn` was refused or revoked: once its outbox is written, the
    /// frontend should close it.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.closing)
    }

    /// Answers a client that failed to authenticate, then closes it.
    fn refuse(&mut self, conn: ConnId, command: &str, error: Error) {
        self.reply_error(conn, command, None, error);
        self.close(conn);
    }

    fn close(&mut self, conn: ConnId) {
        self.handle_input_closed(conn);
        if let Some(c) = self.conn_mut(conn) {
            c.closing = true;
        }
    }

    /// Input: the current time. Clients that had to authenticate in band
    /// and did not within [`Config::auth_timeout`] are refused and closed,
    /// and failed authentications are counted in windows of this time.
    /// Call it when the engine starts and then about once a second.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        while let Some(&(deadline, conn)) = self.auth_deadlines.front() {
            if deadline > now {
                break;
            }
            self.auth_deadlines.pop_front();
            if self.is_anonymous(conn) && !self.is_closing(conn) {
                let seconds = self.config.auth_timeout.as_secs();
                self.refuse(conn, "auth", Error::AuthTimeout { seconds });
            }
        }
    }

    /// Input: the wall-clock time, in seconds since the Unix epoch, at start
    /// and about once a second (as [`Engine::handle_timeout`]): signed
    /// tokens are checked against it, and connections whose signed token
    /// expired get an error saying so and are closed. Call it on every
    /// shard.
    pub fn handle_clock(&mut self, now_unix: u64) {
        if let Some(mut authority) = self.shared.authority() {
            authority.set_clock(now_unix);
        }
        while let Some(&std::cmp::Reverse((expires, conn))) = self.expiring.peek() {
            if expires > now_unix {
                break;
            }
            self.expiring.pop();
            if !self.is_closing(conn) && self.conn(conn).is_some() {
                self.refuse(conn, "auth", Error::TokenExpired);
            }
        }
        self.sync_grants();
    }

    /// Input: `conn` will send nothing more. Its subscriptions end now, and
    /// input still waiting is dropped (a frontend lets it be applied first,
    /// see [`Flow`]); frames already queued for it can still be collected
    /// with `poll_transmit`.
    pub fn handle_input_closed(&mut self, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.input.clear();
            c.paced = false;
            c.pace_expired = false;
        }
        self.change_subscriptions(conn, |index, subs| index.clear(conn, subs));
    }

    /// Input: the server is shutting down. Every connection stops receiving
    /// and is closed once what is queued for it has been written; new ones
    /// are refused.
    pub fn handle_shutdown(&mut self) {
        self.stopping = true;
        let open: Vec<ConnId> = self.open_conns().collect();
        for conn in open {
            self.close(conn);
        }
    }

    /// Input: `conn` is gone. Everything about it is forgotten.
    pub fn handle_disconnect(&mut self, conn: ConnId) {
        if self.is_admin(conn) {
            // Only the admin queues changes with the authority.
            if let Some(mut authority) = self.shared.authority() {
                authority.forget(conn);
            }
        }
        self.handle_input_closed(conn);
        if self.conn(conn).is_some() {
            self.slots[conn.slot()].conn = None;
            self.free_slots.push(conn.slot() as u32);
            self.stats.connections -= 1;
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Output: the next thing the caller must act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Output: moves every frame queued for `conn` into `batch`, which must be
    /// empty, and returns whether there were any. Calling it also tells the
    /// engine that the previous batch has been written, which makes room
    /// for waiting input ([`Flow::Wait`]).
    /// A writer that calls it has made progress: publishers paced by this
    /// connection get [`Output::Resume`], and a stalled connection is
    /// waited for again.
    pub fn poll_transmit(&mut self, conn: ConnId, batch: &mut Batch) -> bool {
        if conn.shard() != self.shard {
            return false;
        }
        let Some(c) = conn_in(&mut self.slots, conn) else {
            return false;
        };
        if c.offering {
            // Its publishes are not on every shard yet: its replies wait.
            return false;
        }
        let got = c.outbox.take(batch);
        c.stalled = false;
        if !c.waiters.is_empty() {
            let mut waiters = std::mem::take(&mut c.waiters);
            for &waiter in &waiters {
                if waiter.shard() != self.shard {
                    // An offer from another shard waits: its publisher's
                    // reader retries it.
                    self.outputs.push_back(Output::Resume(waiter));
                } else if let Some(w) = conn_in(&mut self.slots, waiter).filter(|w| w.paced) {
                    // A subscriber it waited for made progress: its wait
                    // starts over.
                    w.paced = false;
                    w.pace_expired = false;
                    self.outputs.push_back(Output::Resume(waiter));
                }
            }
            waiters.clear();
            if let Some(c) = conn_in(&mut self.slots, conn) {
                c.waiters = waiters;
            }
        }
        got
    }

    /// This shard's counters (a lone engine's are the server's).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Work done since the engine started, in the units of
    /// [`Config::work_per_turn`]: what a frontend can watch to see how much
    /// a client costs.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// The state of one connection, if it is open.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        self.conn(conn).map(|c| {
            let (queued_frames, queued_bytes) = c.outbox.queued();
            ConnStats {
                queued_frames,
                queued_bytes,
                dropped: c.outbox.dropped,
                pending_input: c.input.len(),
            }
        })
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        if id.shard() != self.shard {
            return None;
        }
        let slot = self.slots.get(id.slot())?;
        (slot.generation == id.generation()).then_some(slot.conn.as_ref())?
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        if id.shard() != self.shard {
            return None;
        }
        conn_in(&mut self.slots, id)
    }

    /// The ids of every open connection.
    fn open_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.conn.is_some())
            .map(|(i, slot)| ConnId::new(self.shard, i as u32, slot.generation))
    }

    fn reply_error(&mut self, conn: ConnId, command: &str, tags: Option<&[String]>, error: Error) {
        self.reply(conn, encode::error(command, tags, &error.to_string()));
    }

    pub(crate) fn reply(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conn_mut(conn) else { return };
        if c.outbox.push_reply(&frame) == (Queued::Yes { first: true }) {
            self.outputs.push_back(Output::Transmit(conn));
        }
    }
}
