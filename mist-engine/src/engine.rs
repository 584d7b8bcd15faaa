//! The broker state machine: connections in, commands applied, frames out.

use crate::hash::IdHashSet;
use crate::index::{Index, Interner, TagId};
use crate::outbox::{Outbox, Queued};
use crate::{Config, Error};
use bytes::Bytes;
use mist_proto::{encode, Command, ProtoError, Request};
use std::collections::VecDeque;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// The connection's outbox went from empty to non-empty: wake its writer,
    /// which collects the frames with [`Engine::poll_transmit`].
    Transmit(ConnId),
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
}

impl Engine {
    /// An engine with no connections.
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
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Input: a client connected.
    pub fn handle_connect(&mut self) -> ConnId {
        let conn = Conn {
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
        if self.conn(conn).is_none() {
            return;
        }
        let request = match message {
            Ok(request) => request,
            Err(e) => return self.reply_error(conn, "", None, Error::from(e)),
        };
        if let Err(e) = self.handle_command(conn, &request) {
            let command = request.command.as_str();
            self.reply_error(conn, command, request.tags.as_deref(), e);
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
            Command::Other(_) => Err(Error::UnknownCommand),
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

    /// Input: `conn` is gone. Everything about it is forgotten.
    pub fn handle_disconnect(&mut self, conn: ConnId) {
        self.handle_input_closed(conn);
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
            .is_some_and(|c| !c.outbox.over_limit(&self.config))
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

    fn publish(&mut self, publisher: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("publish", request)?;
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

    fn list(&mut self, conn: ConnId) {
        let Some(c) = self.conn(conn) else { return };
        let mut subscriptions: Vec<Vec<String>> = c
            .subscriptions
            .iter()
            .map(|set| {
                let mut tags: Vec<String> = set
                    .iter()
                    .map(|&id| self.tags.name(id).to_owned())
                    .collect();
                tags.sort_unstable();
                tags
            })
            .collect();
        subscriptions.sort_by_cached_key(|tags| tags.join(","));
        self.reply(conn, encode::list(&subscriptions));
    }

    fn reply_error(&mut self, conn: ConnId, command: &str, tags: Option<&[String]>, error: Error) {
        self.reply(conn, encode::error(command, tags, &error.to_string()));
    }

    fn reply(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conn_mut(conn) else { return };
        if c.outbox.push_reply(frame) == (Queued::Yes { first: true }) {
            self.outputs.push_back(Output::Transmit(conn));
        }
    }
}
