//! The broker state machine: connections in, commands applied, frames out.

use crate::access::{Access, Next, Revoked, Role};
use crate::auth::{AuthError, Change, Grants};
use crate::extension::{CommandContext, CommandHandler};
use crate::hash::IdHashSet;
use crate::index::{Index, Interner, TagId};
use crate::outbox::{Outbox, Queued};
use crate::{Config, Error};
use bytes::Bytes;
use mist_proto::{encode, Command, ProtoError, Request};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

/// Names one connection for as long as it is open. Ids of closed connections
/// are not confused with new ones: a slot's generation changes on reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    fn new(slot: u32, generation: u32) -> ConnId {
        ConnId(u64::from(generation) << 32 | u64::from(slot))
    }

    fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[cfg(test)]
    pub(crate) fn for_test(n: u64) -> ConnId {
        ConnId(n)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.slot(), self.generation())
    }
}

/// Something the caller must act on; see the crate docs for the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// The connection's outbox went from empty to non-empty: wake its writer,
    /// which collects the frames with [`Engine::poll_transmit`].
    Transmit(ConnId),
    /// An admin change to store with the authenticator ([`Change::apply`]),
    /// outside the engine; report the outcome with [`Engine::handle_persisted`].
    /// One change is out at a time.
    Persist {
        /// Names this change in [`Engine::handle_persisted`].
        id: u64,
        /// What to store.
        change: Change,
    },
}

/// Counters over the engine's whole life, and its current size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Subscriptions held now, across all connections.
    pub subscriptions: usize,
    /// Messages accepted for publishing.
    pub published: u64,
    /// Deliveries queued for subscribers.
    pub delivered: u64,
    /// Deliveries dropped because the subscriber's outbox was full.
    pub dropped: u64,
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
}

struct Conn {
    role: Role,
    /// Refused or revoked: its remaining frames go out, then it is closed.
    closing: bool,
    /// An admin change of this connection is with the authenticator; its
    /// later input waits in `deferred`, so commands still apply in order.
    waiting: bool,
    deferred: VecDeque<Result<Request, ProtoError>>,
    /// Each subscription as its sorted, duplicate-free tag ids.
    subscriptions: IdHashSet<Box<[TagId]>>,
    outbox: Outbox,
    /// The last publish delivered here, so several matching subscriptions
    /// still mean one delivery.
    last_publish: u64,
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The broker. See the crate documentation for how to drive it.
pub struct Engine {
    config: Config,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    tags: Interner,
    index: Index,
    outputs: VecDeque<Output>,
    stats: Stats,
    /// Numbers publishes for once-per-connection delivery.
    publish_seq: u64,
    /// Reused for each publish's tag ids, to keep allocation off the hot path.
    scratch: Vec<TagId>,
    /// `None` for an open server.
    access: Option<Access>,
    /// Connections whose deferred input can go on.
    ready: Vec<ConnId>,
    /// Commands registered by an embedder.
    commands: HashMap<String, CommandHandler>,
}

impl Engine {
    /// An open engine: no authentication, no admin commands.
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            tags: Interner::default(),
            index: Index::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            publish_seq: 0,
            scratch: Vec::new(),
            access: None,
            ready: Vec::new(),
            commands: HashMap::new(),
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
        Engine {
            access: Some(Access::new(server_token, grants)),
            ..Engine::new(config)
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Input: a client connected. On a secured engine its first message must
    /// be `auth` (the TCP flow).
    pub fn handle_connect(&mut self) -> ConnId {
        let role = match self.access {
            None => Role::Open,
            Some(_) => Role::Anonymous,
        };
        self.connect_as(role)
    }

    /// Input: a client connected with a token it gave out of band (an HTTP
    /// header or query parameter). A secured engine refuses a missing or
    /// unknown token; an open one ignores it.
    pub fn handle_connect_with_token(&mut self, token: Option<&str>) -> Result<ConnId, Error> {
        let role = match (&self.access, token) {
            (None, _) => Role::Open,
            (Some(_), None) => return Err(Error::AuthRequired),
            (Some(access), Some(token)) => access.identify(token).ok_or(Error::BadToken)?,
        };
        Ok(self.connect_as(role))
    }

    /// Adds a command of the embedder's own. Built-in names are refused.
    /// See [`crate::extension`].
    pub fn register_command(
        &mut self,
        name: impl Into<String>,
        handler: CommandHandler,
    ) -> Result<(), Error> {
        let name = name.into();
        if !matches!(Command::from(name.as_str()), Command::Other(_)) {
            return Err(Error::Custom(format!(
                "{name} is a built-in command and cannot be replaced"
            )));
        }
        self.commands.insert(name, handler);
        Ok(())
    }

    fn custom(&mut self, conn: ConnId, name: &str, request: &Request) -> Result<(), Error> {
        // Taken out while it runs, so the handler may use the engine freely.
        let Some(mut handler) = self.commands.remove(name) else {
            return Err(Error::UnknownCommand);
        };
        let outcome = handler(&mut CommandContext { engine: self, conn }, request);
        self.commands.insert(name.to_string(), handler);
        outcome
    }

    /// Whether `conn` holds the server token (never on an open server).
    pub(crate) fn is_admin(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.role == Role::Admin)
    }

    /// Whether [`Config::max_connections`] are open; the caller should
    /// refuse new clients until some leave.
    pub fn at_capacity(&self) -> bool {
        self.stats.connections >= self.config.max_connections
    }

    fn connect_as(&mut self, role: Role) -> ConnId {
        let conn = Conn {
            role,
            closing: false,
            waiting: false,
            deferred: VecDeque::new(),
            subscriptions: IdHashSet::default(),
            outbox: Outbox::default(),
            last_publish: 0,
        };
        self.stats.connections += 1;
        if let Some(slot) = self.free_slots.pop() {
            let entry = &mut self.slots[slot as usize];
            entry.generation = entry.generation.wrapping_add(1);
            entry.conn = Some(conn);
            return ConnId::new(slot, entry.generation);
        }
        let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 connections");
        self.slots.push(Slot {
            generation: 0,
            conn: Some(conn),
        });
        ConnId::new(slot, 0)
    }

    /// Input: one line from `conn`, decoded or not. Unknown ids are ignored.
    /// A failure is answered in `conn`'s outbox, in order with its other replies.
    pub fn handle_message(&mut self, conn: ConnId, message: Result<Request, ProtoError>) {
        let Some(c) = self.conn_mut(conn) else { return };
        if c.closing {
            return;
        }
        if c.waiting {
            c.deferred.push_back(message);
            return;
        }
        self.process(conn, message);
        self.drain_ready();
    }

    fn process(&mut self, conn: ConnId, message: Result<Request, ProtoError>) {
        let anonymous = self.conn(conn).is_some_and(|c| c.role == Role::Anonymous);
        let request = match message {
            Ok(request) => request,
            Err(_) if anonymous => return self.refuse(conn, "", Error::AuthRequired),
            Err(e) => return self.reply_error(conn, "", None, Error::from(e)),
        };
        if anonymous && request.command != Command::Auth {
            return self.refuse(conn, request.command.as_str(), Error::AuthRequired);
        }
        if let Err(e) = self.handle_command(conn, &request) {
            if anonymous {
                return self.refuse(conn, request.command.as_str(), e);
            }
            let command = request.command.as_str();
            self.reply_error(conn, command, request.tags.as_deref(), e);
        }
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
            c.deferred.clear();
        }
    }

    /// Input: a request from `conn` whose failure the caller reports itself,
    /// for transports that answer out of band (an HTTP status, say). Replies
    /// on success are queued as usual.
    pub fn handle_command(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        if self.conn(conn).is_none() {
            return Ok(());
        }
        match request.command {
            Command::Ping => {
                self.reply(conn, encode::pong());
                Ok(())
            }
            Command::Subscribe => self.subscribe(conn, request),
            Command::Unsubscribe => self.unsubscribe(conn, request),
            Command::Publish => self.publish(conn, request),
            Command::List => {
                self.list(conn);
                Ok(())
            }
            Command::Auth => self.authenticate(conn, request),
            Command::Who => {
                let subscribers = (self.slots.iter())
                    .filter_map(|slot| slot.conn.as_ref())
                    .filter(|c| !c.subscriptions.is_empty())
                    .count();
                self.reply(conn, encode::who(self.stats.connections, subscribers));
                Ok(())
            }
            Command::Listall => self.listall(conn),
            Command::Register
            | Command::Unregister
            | Command::Set
            | Command::Unset
            | Command::Tags => self.admin(conn, request),
            Command::Other(ref name) => self.custom(conn, name, request),
        }
    }

    /// Input: the authenticator's outcome for [`Output::Persist`] `id`. The
    /// change takes effect (or not) and its admin gets the reply now. Returns
    /// the admin's connection, whose input may go on again.
    pub fn handle_persisted(&mut self, id: u64, outcome: Result<(), AuthError>) -> Option<ConnId> {
        let (conn, change) = self.access.as_mut()?.finish(id)?;
        match outcome {
            Ok(()) => {
                let revoked = self
                    .access
                    .as_mut()
                    .map_or(Revoked::Nothing, |a| a.apply(change));
                self.enforce(revoked);
            }
            Err(e) => self.reply_error(conn, change_command(&change), None, Error::NotSaved(e.0)),
        }
        self.ready.push(conn);
        self.pump_changes();
        self.drain_ready();
        Some(conn)
    }

    /// Whether `conn` was refused or revoked: once its outbox is written, the
    /// frontend should close it.
    pub fn is_closing(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.closing)
    }

    /// `auth`: on an open server a no-op, so clients given a token work there too.
    fn authenticate(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        let Some(access) = &self.access else {
            return Ok(());
        };
        let token = request
            .data
            .as_ref()
            .map(|d| d.to_text())
            .unwrap_or_default();
        let role = access.identify(&token).ok_or(Error::BadToken)?;
        let c = self.conn_mut(conn).ok_or(Error::BadToken)?;
        match &c.role {
            Role::Anonymous => {
                c.role = role;
                Ok(())
            }
            current if *current == role => Ok(()),
            _ => Err(Error::AlreadyAuthenticated),
        }
    }

    /// Whether `conn` may use all of `tags`.
    fn permit(&self, conn: ConnId, tags: &[String]) -> Result<(), Error> {
        match &self.access {
            None => Ok(()),
            Some(access) => {
                let role = self.conn(conn).map_or(&Role::Anonymous, |c| &c.role);
                access.permit(role, tags)
            }
        }
    }

    /// The admin commands; changes wait for the authenticator.
    fn admin(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        if self.access.is_none() {
            return Err(Error::UnknownCommand);
        }
        if !self.is_admin(conn) {
            return Err(Error::AdminOnly);
        }
        let command = match request.command {
            Command::Register => "register",
            Command::Unregister => "unregister",
            Command::Set => "set",
            Command::Unset => "unset",
            _ => "tags",
        };
        let token = request
            .data
            .as_ref()
            .map(|d| d.to_text())
            .unwrap_or_default();
        if token.is_empty() {
            return Err(Error::MissingToken { command });
        }
        let tag_set = |tags: &[String]| tags.iter().cloned().collect::<BTreeSet<String>>();
        let change = match request.command {
            Command::Tags => {
                let access = self.access.as_ref().ok_or(Error::UnknownCommand)?;
                let tags: Vec<String> = access
                    .tags_of(&token)
                    .ok_or(Error::UnknownToken)?
                    .iter()
                    .cloned()
                    .collect();
                self.reply(conn, encode::tags(&tags));
                return Ok(());
            }
            Command::Register => Change::Register {
                token,
                tags: tag_set(request.tags.as_deref().unwrap_or_default()),
            },
            Command::Unregister => Change::Unregister { token },
            Command::Set => Change::Set {
                tags: tag_set(self.required_tags(command, request)?),
                token,
            },
            _ => Change::Unset {
                tags: tag_set(self.required_tags(command, request)?),
                token,
            },
        };
        if let Some(access) = self.access.as_mut() {
            access.enqueue(conn, change);
        }
        if let Some(c) = self.conn_mut(conn) {
            c.waiting = true;
        }
        self.pump_changes();
        Ok(())
    }

    /// Hands the next valid change to the caller; answers invalid ones.
    fn pump_changes(&mut self) {
        while let Some(next) = self.access.as_mut().and_then(Access::next) {
            match next {
                Next::Store(id, change) => {
                    self.outputs.push_back(Output::Persist { id, change });
                    return;
                }
                Next::Refuse(conn, change, error) => {
                    self.reply_error(conn, change_command(&change), None, error);
                    self.ready.push(conn);
                }
            }
        }
    }

    /// Lets connections whose admin change is settled process their deferred input.
    fn drain_ready(&mut self) {
        while let Some(conn) = self.ready.pop() {
            if let Some(c) = self.conn_mut(conn) {
                c.waiting = false;
            }
            while let Some(message) = self.next_deferred(conn) {
                self.process(conn, message);
            }
        }
    }

    /// The next deferred message of `conn`, unless it is waiting or closing.
    fn next_deferred(&mut self, conn: ConnId) -> Option<Result<Request, ProtoError>> {
        let c = self.conn_mut(conn)?;
        if c.waiting || c.closing {
            return None;
        }
        c.deferred.pop_front()
    }

    /// Takes from open connections what an applied change revoked.
    fn enforce(&mut self, revoked: Revoked) {
        let (token, tags) = match revoked {
            Revoked::Nothing => return,
            Revoked::Token(token) => (token, None),
            Revoked::Tags(token, tags) => (token, Some(tags)),
        };
        let holders: Vec<ConnId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                let c = slot.conn.as_ref()?;
                matches!(&c.role, Role::Client(held) if *held == token)
                    .then(|| ConnId::new(i as u32, slot.generation))
            })
            .collect();
        for conn in holders {
            match &tags {
                None => self.refuse(conn, "auth", Error::TokenRevoked),
                Some(tags) => self.revoke_tags(conn, tags),
            }
        }
    }

    /// Removes `conn`'s subscriptions that use any of `tags`, telling it why.
    fn revoke_tags(&mut self, conn: ConnId, tags: &BTreeSet<String>) {
        let Some(c) = self.conn(conn) else { return };
        let lost: Vec<Box<[TagId]>> = c
            .subscriptions
            .iter()
            .filter(|set| set.iter().any(|&id| tags.contains(self.tags.name(id))))
            .cloned()
            .collect();
        for set in lost {
            let names: Vec<String> = set
                .iter()
                .map(|&id| self.tags.name(id).to_owned())
                .collect();
            let revoked: Vec<String> = names
                .iter()
                .filter(|t| tags.contains(*t))
                .cloned()
                .collect();
            if let Some(c) = self.conn_mut(conn) {
                c.subscriptions.remove(&set);
            }
            self.forget_subscription(conn, &set);
            self.reply_error(
                conn,
                "subscribe",
                Some(&names),
                Error::PermissionRevoked { tags: revoked },
            );
        }
    }

    /// Input: `conn` will send nothing more. Its subscriptions end now; frames
    /// already queued for it can still be collected with `poll_transmit`.
    pub fn handle_input_closed(&mut self, conn: ConnId) {
        let Some(c) = self.conn_mut(conn) else { return };
        let subscriptions = std::mem::take(&mut c.subscriptions);
        for set in subscriptions {
            self.forget_subscription(conn, &set);
        }
    }

    /// Input: the server is shutting down. Every connection stops receiving
    /// and is closed once what is queued for it has been written.
    pub fn handle_shutdown(&mut self) {
        let open: Vec<ConnId> = self.open_conns().collect();
        for conn in open {
            self.close(conn);
        }
    }

    /// Input: `conn` is gone. Everything about it is forgotten.
    pub fn handle_disconnect(&mut self, conn: ConnId) {
        self.handle_input_closed(conn);
        if let Some(access) = self.access.as_mut() {
            access.forget(conn);
        }
        if self.conn(conn).is_some() {
            self.slots[conn.slot()].conn = None;
            self.free_slots.push(conn.slot() as u32);
            self.stats.connections -= 1;
        }
    }

    /// Output: the next thing the caller must act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Output: moves every frame queued for `conn` into `batch`, which must be
    /// empty, and returns whether there were any. Calling it also tells the
    /// engine that the previous batch has been written.
    pub fn poll_transmit(&mut self, conn: ConnId, batch: &mut VecDeque<Bytes>) -> bool {
        match self.conn_mut(conn) {
            Some(c) => c.outbox.take(batch),
            None => false,
        }
    }

    /// Whether `conn`'s reader should go on reading: false while its outbox is
    /// over its bound, until the writer drains it.
    pub fn accepts_input(&self, conn: ConnId) -> bool {
        self.conn(conn)
            .is_some_and(|c| !c.waiting && !c.outbox.over_limit(&self.config))
    }

    /// Counters for the whole engine.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The state of one connection's outbox, if it is open.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        self.conn(conn).map(|c| {
            let (queued_frames, queued_bytes) = c.outbox.queued();
            ConnStats {
                queued_frames,
                queued_bytes,
                dropped: c.outbox.dropped,
            }
        })
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        let slot = self.slots.get(id.slot())?;
        (slot.generation == id.generation()).then_some(slot.conn.as_ref())?
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(id.slot())?;
        (slot.generation == id.generation()).then_some(slot.conn.as_mut())?
    }

    /// The request's tags, checked for presence and count.
    fn required_tags<'r>(
        &self,
        command: &'static str,
        request: &'r Request,
    ) -> Result<&'r [String], Error> {
        match request.tags.as_deref() {
            None | Some([]) => Err(Error::MissingTags { command }),
            Some(tags) if tags.len() > self.config.max_tags => Err(Error::TooManyTags {
                limit: self.config.max_tags,
            }),
            Some(tags) => Ok(tags),
        }
    }

    fn subscribe(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("subscribe", request)?;
        self.permit(conn, tags)?;
        let (held, already) = match (self.conn(conn), self.known_set(tags)) {
            (Some(c), Some(set)) => (
                c.subscriptions.len(),
                c.subscriptions.contains(set.as_slice()),
            ),
            (Some(c), None) => (c.subscriptions.len(), false),
            (None, _) => return Ok(()),
        };
        if already {
            return Ok(());
        }
        if held >= self.config.max_subscriptions {
            return Err(Error::TooManySubscriptions {
                limit: self.config.max_subscriptions,
            });
        }
        let mut names: Vec<&str> = tags.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let mut set: Vec<TagId> = names.into_iter().map(|t| self.tags.acquire(t)).collect();
        set.sort_unstable();
        self.index.insert(&set, conn);
        self.stats.subscriptions += 1;
        if let Some(c) = self.conn_mut(conn) {
            c.subscriptions.insert(set.into());
        }
        Ok(())
    }

    fn unsubscribe(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("unsubscribe", request)?;
        self.permit(conn, tags)?;
        let Some(set) = self.known_set(tags) else {
            return Ok(());
        };
        let removed = self
            .conn_mut(conn)
            .is_some_and(|c| c.subscriptions.remove(set.as_slice()));
        if removed {
            self.forget_subscription(conn, &set);
        }
        Ok(())
    }

    /// The sorted, duplicate-free ids of `tags`, or `None` if some tag is used
    /// by no subscription (so no connection can hold this set).
    fn known_set(&self, tags: &[String]) -> Option<Vec<TagId>> {
        let mut set = tags
            .iter()
            .map(|t| self.tags.get(t))
            .collect::<Option<Vec<TagId>>>()?;
        set.sort_unstable();
        set.dedup();
        Some(set)
    }

    /// Takes a subscription already removed from the connection out of the
    /// index and the interner.
    fn forget_subscription(&mut self, conn: ConnId, set: &[TagId]) {
        self.index.remove(set, conn);
        for &id in set {
            self.tags.release(id);
        }
        self.stats.subscriptions -= 1;
    }

    pub(crate) fn publish(&mut self, publisher: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("publish", request)?;
        self.permit(publisher, tags)?;
        self.stats.published += 1;
        // Tags no subscription uses cannot narrow a match, so they are skipped.
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(tags.iter().filter_map(|t| self.tags.get(t)));
        ids.sort_unstable();
        ids.dedup();
        self.publish_seq += 1;
        let seq = self.publish_seq;
        let mut frame: Option<Bytes> = None;
        let data = request.data.as_ref();
        let Engine {
            index,
            slots,
            config,
            outputs,
            stats,
            ..
        } = self;
        index.for_each_match(&ids, |id| {
            if id == publisher {
                return;
            }
            let Some(conn) = slots[id.slot()].conn.as_mut() else {
                return;
            };
            if conn.last_publish == seq {
                return;
            }
            conn.last_publish = seq;
            let frame = frame
                .get_or_insert_with(|| encode::publish(tags, data))
                .clone();
            match conn.outbox.push_delivery(frame, config) {
                Queued::Yes { first } => {
                    stats.delivered += 1;
                    if first {
                        outputs.push_back(Output::Transmit(id));
                    }
                }
                Queued::Dropped => stats.dropped += 1,
            }
        });
        self.scratch = ids;
        Ok(())
    }

    /// The ids of every open connection.
    fn open_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.conn.is_some())
            .map(|(i, slot)| ConnId::new(i as u32, slot.generation))
    }

    /// A subscription's tag names, sorted.
    fn names_of(&self, set: &[TagId]) -> Vec<String> {
        let mut tags: Vec<String> = set
            .iter()
            .map(|&id| self.tags.name(id).to_owned())
            .collect();
        tags.sort_unstable();
        tags
    }

    /// `listall`: every distinct subscribed tag set; the admin's only when
    /// authentication is on.
    fn listall(&mut self, conn: ConnId) -> Result<(), Error> {
        if self.access.is_some() && !self.is_admin(conn) {
            return Err(Error::AdminOnly);
        }
        let mut all: Vec<Vec<String>> = self
            .open_conns()
            .filter_map(|c| self.conn(c))
            .flat_map(|c| c.subscriptions.iter())
            .map(|set| self.names_of(set))
            .collect();
        all.sort_by_cached_key(|tags| tags.join(","));
        all.dedup();
        self.reply(conn, encode::listall(&all));
        Ok(())
    }

    fn list(&mut self, conn: ConnId) {
        let Some(c) = self.conn(conn) else { return };
        let mut subscriptions: Vec<Vec<String>> = c
            .subscriptions
            .iter()
            .map(|set| self.names_of(set))
            .collect();
        subscriptions.sort_by_cached_key(|tags| tags.join(","));
        self.reply(conn, encode::list(&subscriptions));
    }

    fn reply_error(&mut self, conn: ConnId, command: &str, tags: Option<&[String]>, error: Error) {
        self.reply(conn, encode::error(command, tags, &error.to_string()));
    }

    pub(crate) fn reply(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conn_mut(conn) else { return };
        if c.outbox.push_reply(frame) == (Queued::Yes { first: true }) {
            self.outputs.push_back(Output::Transmit(conn));
        }
    }
}

/// The command that asked for a change, for its reply.
fn change_command(change: &Change) -> &'static str {
    match change {
        Change::Register { .. } => "register",
        Change::Unregister { .. } => "unregister",
        Change::Set { .. } => "set",
        Change::Unset { .. } => "unset",
    }
}
