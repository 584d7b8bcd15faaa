//! The engine against a brute-force model of the protocol, shared by the
//! `engine` fuzz target (operations decoded from arbitrary bytes) and
//! mist-engine's property test (operations from proptest strategies), which
//! also replays the fuzzer's committed regressions.
//!
//! Sequences of connect / subscribe / unsubscribe / publish / list / garbage
//! / drain / resume / close / disconnect run through the real engine and
//! through a model that checks every subscription of every connection on
//! every publish. After each drain, the frames the engine hands out must
//! equal the model's, frame for frame: delivery targets, once-only delivery,
//! publisher exclusion, ordering, the outbox bound and the drop count all
//! have to agree. A command waits, unapplied, while its connection's outbox
//! has no room for a reply, and goes on once the writer has drained it: the
//! model keeps each connection's waiting commands too. On a secured engine
//! each connection holds a token, and permission errors must agree as well:
//! a message reaches a client only if its token was granted every tag of it.
//!
//! Publishers are paced: a publish waits, unapplied, while a recipient that
//! is not stalled has no room, and goes on when that recipient's writer
//! drains. When the wait expires (`Expire`), recipients still full lose the
//! message and are stalled, and nobody waits for them until they drain.

#![allow(dead_code)] // each includer uses a different part

use bytes::Bytes;
use mist_engine::auth::Grants;
use mist_engine::{Batch, Config, ConnId, Engine, Offer, Output};
use mist_proto::{encode, Data, ProtoError, Request};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

pub const TAGS: [&str; 4] = ["a", "b", "c", "d"];
const MAX_FRAMES: usize = 4;

/// Tokens of the secured engine: the admin, and two registered ones.
const ADMIN: &str = "admin";
const TOKENS: [(&str, &[&str]); 2] = [("ab", &["a", "b"]), ("bcd", &["b", "c", "d"])];

/// One step of a run.
#[derive(Debug, Clone)]
pub enum Op {
    /// Connects with the admin token (0) or a registered one (1, 2); on an
    /// open engine the token is ignored.
    Connect(usize),
    Subscribe(usize, Vec<usize>),
    Unsubscribe(usize, Vec<usize>),
    Publish(usize, Vec<usize>, u8),
    List(usize),
    /// A line that is not a message: answered with an error, in order.
    Garbage(usize),
    Drain(usize),
    /// The reader asks for another turn without its writer having drained.
    Resume(usize),
    /// A paced publisher's bounded wait ran out; its reader resumes.
    Expire(usize),
    CloseInput(usize),
    Disconnect(usize),
}

/// Operations decoded from arbitrary bytes, whether the engine is secured
/// (the first byte's low bit) and its shards (1, 2 or 4, from the next
/// bits): the fuzz target's input.
pub fn ops_from_bytes(bytes: &[u8]) -> (bool, usize, Vec<Op>) {
    let Some((&first, mut rest)) = bytes.split_first() else {
        return (false, 1, Vec::new());
    };
    let shards = [1, 2, 4][usize::from(first >> 1) % 3];
    let mut ops = Vec::new();
    let tags = |mask: u8| -> Vec<usize> {
        let mut tags: Vec<usize> = (0..TAGS.len()).filter(|t| mask & (1 << t) != 0).collect();
        if tags.is_empty() {
            tags.push(usize::from(mask >> 4) % TAGS.len());
        }
        tags
    };
    while let [code, who, arg, tail @ ..] = rest {
        rest = tail;
        let who = usize::from(*who);
        ops.push(match code % 11 {
            0 => Op::Connect(usize::from(*arg) % 3),
            1 => Op::Subscribe(who, tags(*arg)),
            2 => Op::Unsubscribe(who, tags(*arg)),
            3 | 4 => Op::Publish(who, tags(*arg), arg.wrapping_mul(31)),
            5 => Op::List(who),
            6 => Op::Garbage(who),
            7 | 8 => Op::Drain(who),
            9 => match arg % 4 {
                0 => Op::CloseInput(who),
                1 => Op::Disconnect(who),
                2 => Op::Expire(who),
                _ => Op::Resume(who),
            },
            _ => Op::Resume(who),
        });
    }
    (first & 1 == 1, shards, ops)
}

/// A command waiting in the model as it waits in the engine.
#[derive(Debug, Clone)]
enum Cmd {
    Subscribe(Vec<usize>),
    Unsubscribe(Vec<usize>),
    Publish(Vec<usize>, String),
    List,
    Garbage,
}

/// What the model knows of one connection.
#[derive(Default)]
struct ModelConn {
    /// The tags its token may use; `None` for the admin or an open server.
    granted: Option<BTreeSet<&'static str>>,
    subscriptions: BTreeSet<BTreeSet<&'static str>>,
    queue: VecDeque<Bytes>,
    in_flight: usize,
    dropped: u64,
    /// Commands received and not applied yet.
    pending: VecDeque<Cmd>,
    /// Its next publish waits for room at a recipient.
    paced: bool,
    /// Its bounded wait ran out: its next publish waits for no one.
    expired: bool,
    /// It stayed full through a wait: nobody waits for it until it drains.
    stalled: bool,
    /// Publishers paced by it.
    waiters: BTreeSet<ConnId>,
    /// Its publishes on their way to the other shards, in order, with the
    /// shards that held recipients when it was published (a bit mask): the
    /// engine must offer it to each of them.
    offers: VecDeque<(BTreeSet<&'static str>, Bytes, u64)>,
}

impl ModelConn {
    fn held(&self) -> usize {
        self.queue.len() + self.in_flight
    }

    /// Room for one more reply or delivery: below the frame bound, or empty.
    fn has_room(&self) -> bool {
        self.held() == 0 || self.held() < MAX_FRAMES
    }

    /// Whether a publisher waits for it: it is full and not stalled, and,
    /// after the publisher's wait `expired`, its writer has not taken
    /// frames (nothing in flight) and is not held back by its own offers.
    fn waits_for(&self, expired: bool) -> bool {
        !self.stalled
            && !self.has_room()
            && (!expired || (self.in_flight == 0 && self.offers.is_empty()))
    }

    /// Whether a message tagged `published` may reach it.
    fn receives(&self, published: &BTreeSet<&'static str>) -> bool {
        self.granted.as_ref().is_none_or(|g| published.is_subset(g))
    }

    /// Whether the token may use `tags`; if not, the model expects the error.
    fn permits(&mut self, command: &str, tags: &[usize]) -> bool {
        let Some(granted) = &self.granted else {
            return true;
        };
        let mut denied: Vec<&str> = tags
            .iter()
            .map(|&t| TAGS[t])
            .filter(|t| !granted.contains(t))
            .collect();
        if denied.is_empty() {
            return true;
        }
        denied.sort_unstable();
        denied.dedup();
        let error = format!(
            "permission denied: this token may not use the tag(s) {}",
            denied.join(", ")
        );
        self.queue
            .push_back(encode::error(command, Some(&names(tags)), &error));
        false
    }
}

fn names(tags: &[usize]) -> Vec<String> {
    tags.iter().map(|&t| TAGS[t].to_string()).collect()
}

fn set(tags: &[usize]) -> BTreeSet<&'static str> {
    tags.iter().map(|&t| TAGS[t]).collect()
}

pub struct Harness {
    /// The engine's shards; a lone engine is one shard.
    engines: Vec<Engine>,
    secured: bool,
    /// Open connections, engine id and model side by side.
    conns: Vec<(ConnId, ModelConn)>,
    /// Connections whose writer the engine has asked to wake.
    woken: HashSet<ConnId>,
    /// Connections whose reader the engine has asked to resume.
    resumed: Vec<ConnId>,
    /// Offers the shards made and not yet delivered everywhere, by
    /// publisher, each with the shards still to take it.
    offers: HashMap<ConnId, VecDeque<(Offer, u64)>>,
    /// The shard the next connection goes to, counting up.
    next_shard: usize,
}

impl Harness {
    fn engine(&mut self, id: ConnId) -> &mut Engine {
        &mut self.engines[id.shard()]
    }

    fn drain_outputs(&mut self) {
        for engine in &mut self.engines {
            while let Some(output) = engine.poll_output() {
                match output {
                    Output::Transmit(id) => {
                        self.woken.insert(id);
                    }
                    Output::Resume(id) => self.resumed.push(id),
                    Output::Offer(offer) => {
                        let mask = offer.shard_mask();
                        let queue = self.offers.entry(offer.publisher()).or_default();
                        queue.push_back((offer, mask));
                    }
                    other => panic!("unexpected output {other:?}"),
                }
            }
        }
    }

    fn pick(&self, who: usize) -> Option<usize> {
        (!self.conns.is_empty()).then(|| who % self.conns.len())
    }

    /// Whether connection `i`'s publishes wait for a full subscriber on
    /// another shard: its reader then takes nothing more.
    fn offering(&self, i: usize) -> bool {
        !self.conns[i].1.offers.is_empty()
    }

    fn apply(&mut self, op: Op) {
        let busy = |h: &Harness, who: usize| h.pick(who).is_some_and(|i| h.offering(i));
        match op {
            Op::Connect(role) => {
                let (token, granted) = match role {
                    0 => (ADMIN, None),
                    n => (
                        TOKENS[n - 1].0,
                        Some(TOKENS[n - 1].1.iter().copied().collect()),
                    ),
                };
                let shard = self.next_shard % self.engines.len();
                self.next_shard += 1;
                let id = self.engines[shard]
                    .handle_connect_with_token(Some(token))
                    .unwrap();
                let granted = if self.secured { granted } else { None };
                self.conns.push((
                    id,
                    ModelConn {
                        granted,
                        ..ModelConn::default()
                    },
                ));
            }
            // A reader held up by its offers reads nothing more.
            Op::Subscribe(who, _)
            | Op::Unsubscribe(who, _)
            | Op::Publish(who, _, _)
            | Op::List(who)
            | Op::Garbage(who)
            | Op::Resume(who)
            | Op::CloseInput(who)
                if busy(self, who) => {}
            Op::Subscribe(who, tags) => self.command(who, Cmd::Subscribe(tags)),
            Op::Unsubscribe(who, tags) => self.command(who, Cmd::Unsubscribe(tags)),
            Op::Publish(who, tags, data) => self.command(who, Cmd::Publish(tags, data.to_string())),
            Op::List(who) => self.command(who, Cmd::List),
            Op::Garbage(who) => self.command(who, Cmd::Garbage),
            Op::Resume(who) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine(id).handle_resume(id);
                self.turn(i);
            }
            Op::Drain(who) => {
                let Some(i) = self.pick(who) else { return };
                if self.offering(i) {
                    // Its replies wait until its publishes are everywhere.
                    let id = self.conns[i].0;
                    let mut batch = Batch::new();
                    assert!(
                        !self.engine(id).poll_transmit(id, &mut batch),
                        "{id} is offering"
                    );
                    return self.after();
                }
                let id = self.conns[i].0;
                let mut batch = Batch::new();
                let got = self.engine(id).poll_transmit(id, &mut batch);
                let model = &mut self.conns[i].1;
                assert_eq!(got, !model.queue.is_empty());
                assert_eq!(batch.frames(), model.queue.len(), "frames handed to {id}");
                assert_eq!(
                    batch.as_bytes(),
                    model
                        .queue
                        .iter()
                        .flat_map(|f| f.iter().copied())
                        .collect::<Vec<u8>>(),
                    "frames handed to {id}"
                );
                model.in_flight = model.queue.len();
                model.queue.clear();
                model.stalled = false;
                let waiters = std::mem::take(&mut model.waiters);
                self.woken.remove(&id);
                // Publishers it paced are told to go on: those on its shard
                // if they still wait, those elsewhere in any case.
                // (The shard cannot tell whether a publisher elsewhere is
                // still there, or still waits.)
                let mut expected: Vec<ConnId> =
                    waiters
                        .iter()
                        .copied()
                        .filter(|w| {
                            w.shard() != id.shard()
                                || self.conns.iter_mut().find(|(c, _)| c == w).is_some_and(
                                    |(_, m)| {
                                        // Its wait starts over.
                                        let paced = std::mem::take(&mut m.paced);
                                        if paced {
                                            m.expired = false;
                                        }
                                        paced
                                    },
                                )
                        })
                        .collect();
                self.drain_outputs();
                let mut resumed = std::mem::take(&mut self.resumed);
                resumed.sort();
                resumed.dedup();
                expected.sort();
                assert_eq!(resumed, expected, "publishers resumed by {id}'s writer");
                // The reader goes on once the writer took frames, and so do
                // the publishers it paced.
                self.engine(id).handle_resume(id);
                self.turn(i);
                for waiter in resumed {
                    if let Some(w) = self.conns.iter().position(|(c, _)| *c == waiter) {
                        if self.offering(w) {
                            self.hand_on(w, false);
                        } else if waiter.shard() == id.shard() {
                            self.engine(waiter).handle_resume(waiter);
                            self.turn(w);
                        }
                    }
                }
            }
            Op::Expire(who) => {
                let Some(i) = self.pick(who) else { return };
                if self.offering(i) {
                    self.hand_on(i, true);
                    return self.after();
                }
                let (id, model) = &mut self.conns[i];
                let id = *id;
                if std::mem::take(&mut model.paced) {
                    model.expired = true;
                }
                self.engine(id).handle_pace_expired(id);
                self.engine(id).handle_resume(id);
                self.turn(i);
            }
            Op::CloseInput(who) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine(id).handle_input_closed(id);
                self.conns[i].1.subscriptions.clear();
                self.conns[i].1.pending.clear();
                self.conns[i].1.paced = false;
                self.conns[i].1.expired = false;
            }
            Op::Disconnect(who) => {
                let Some(i) = self.pick(who) else { return };
                let (id, _) = self.conns.remove(i);
                self.engine(id).handle_disconnect(id);
                self.offers.remove(&id);
                self.woken.remove(&id);
            }
        }
        self.after();
    }

    /// Connection `i`'s turn: its waiting commands, then its offers.
    fn turn(&mut self, i: usize) {
        self.drain_outputs();
        self.run_pending(i);
        self.hand_on(i, false);
    }

    /// Hands connection `i`'s offers to their shards, in order, engine and
    /// model alike, until one waits for a full subscriber. With `expired`,
    /// the first goes out to the shard it waits for whoever is full there.
    fn hand_on(&mut self, i: usize, mut expired: bool) {
        let publisher = self.conns[i].0;
        loop {
            let Some(expected) = self.conns[i].1.offers.front().cloned() else {
                assert!(
                    self.offers.get(&publisher).is_none_or(VecDeque::is_empty),
                    "{publisher} offered a publish the model did not expect"
                );
                return;
            };
            let (published, frame, wanted) = expected;
            let engine_offer = self
                .offers
                .get(&publisher)
                .and_then(|q| q.front())
                .filter(|(offer, _)| offer.frame() == &frame)
                .cloned();
            let Some((offer, mut mask)) = engine_offer else {
                // Not offered: no other shard held a recipient.
                assert_eq!(
                    wanted, 0,
                    "{publisher}'s publish skipped shards that want it"
                );
                self.conns[i].1.offers.pop_front();
                continue;
            };
            // Offered to every shard that held a recipient when it was
            // published (and maybe more); there, recipients are those of
            // the moment it arrives.
            let targets = offer.shard_mask();
            assert_eq!(
                wanted & !targets,
                0,
                "{publisher}'s publish skipped shards that want it"
            );
            for shard in (0..self.engines.len()).filter(|&s| s != publisher.shard()) {
                if mask & (1 << shard) == 0 {
                    // Not a target, or delivered before it had to wait.
                    continue;
                }
                let recipients = self.remote_recipients(i, shard, &published);
                let waits = recipients
                    .iter()
                    .any(|&j| self.conns[j].1.waits_for(expired));
                let delivered = if expired {
                    self.engines[shard].handle_offer_expired(&offer)
                } else {
                    self.engines[shard].handle_offer(&offer)
                };
                assert_eq!(delivered, !waits, "shard {shard} on {publisher}'s offer");
                for j in recipients {
                    let model = &mut self.conns[j].1;
                    if waits {
                        if model.waits_for(expired) {
                            model.waiters.insert(publisher);
                        }
                    } else if model.has_room() {
                        model.queue.push_back(frame.clone());
                    } else {
                        model.dropped += 1;
                        model.stalled |= expired;
                    }
                }
                if waits {
                    if let Some((_, left)) =
                        self.offers.get_mut(&publisher).and_then(|q| q.front_mut())
                    {
                        *left = mask;
                    }
                    self.drain_outputs();
                    return;
                }
                expired = false;
                mask &= !(1 << shard);
            }
            self.conns[i].1.offers.pop_front();
            let queue = self.offers.get_mut(&publisher).expect("offers");
            queue.pop_front();
            if queue.is_empty() {
                self.engine(publisher).handle_offered(publisher);
            }
            self.drain_outputs();
        }
    }

    /// Connections on `shard`, other than publisher `i`, that a message
    /// tagged `published` goes to.
    fn remote_recipients(
        &self,
        i: usize,
        shard: usize,
        published: &BTreeSet<&'static str>,
    ) -> Vec<usize> {
        (0..self.conns.len())
            .filter(|&j| {
                let (id, model) = &self.conns[j];
                let wants = model.subscriptions.iter().any(|s| s.is_subset(published));
                j != i && id.shard() == shard && wants && model.receives(published)
            })
            .collect()
    }

    /// Sends a command to the engine, and to the model's queue.
    fn command(&mut self, who: usize, cmd: Cmd) {
        let Some(i) = self.pick(who) else { return };
        let id = self.conns[i].0;
        let message = match &cmd {
            Cmd::Subscribe(tags) => Ok(Request::new("subscribe").tags(names(tags))),
            Cmd::Unsubscribe(tags) => Ok(Request::new("unsubscribe").tags(names(tags))),
            Cmd::Publish(tags, data) => Ok(Request::new("publish").tags(names(tags)).data(data)),
            Cmd::List => Ok(Request::new("list")),
            Cmd::Garbage => Err(ProtoError::NotAnObject),
        };
        self.engine(id).handle_message(id, message);
        self.conns[i].1.pending.push_back(cmd);
        self.turn(i);
    }

    /// Applies connection `i`'s waiting commands while its outbox has room
    /// and no publish of its waits for a subscriber.
    fn run_pending(&mut self, i: usize) {
        while self.conns[i].1.has_room() && !self.conns[i].1.paced {
            let Some(cmd) = self.conns[i].1.pending.pop_front() else {
                return;
            };
            if let Some(paced) = self.apply_command(i, cmd) {
                self.conns[i].1.pending.push_front(paced);
            }
        }
    }

    /// Applies one command; a publish that must wait comes back.
    fn apply_command(&mut self, i: usize, cmd: Cmd) -> Option<Cmd> {
        let publisher = self.conns[i].0;
        let model = &mut self.conns[i].1;
        // Until the publish it waited for is applied.
        let expired = model.expired;
        match cmd {
            Cmd::Subscribe(tags) => {
                if model.permits("subscribe", &tags) {
                    model.subscriptions.insert(set(&tags));
                }
            }
            Cmd::Unsubscribe(tags) => {
                if model.permits("unsubscribe", &tags) {
                    model.subscriptions.remove(&set(&tags));
                }
            }
            Cmd::Publish(tags, data) => {
                if !model.permits("publish", &tags) {
                    return None;
                }
                let frame = encode::publish(&names(&tags), Some(&Data::new(&data)));
                let published = set(&tags);
                // Its own shard's recipients now; the others' when its offer
                // reaches them (see `hand_on`).
                let recipients = self.remote_recipients(i, publisher.shard(), &published);
                let mut paced = false;
                for &j in &recipients {
                    let model = &mut self.conns[j].1;
                    if model.waits_for(expired) {
                        paced = true;
                        model.waiters.insert(publisher);
                    }
                }
                if paced {
                    self.conns[i].1.paced = true;
                    return Some(Cmd::Publish(tags, data));
                }
                self.conns[i].1.expired = false;
                for j in recipients {
                    let model = &mut self.conns[j].1;
                    if model.has_room() {
                        model.queue.push_back(frame.clone());
                    } else {
                        model.dropped += 1;
                        model.stalled |= expired;
                    }
                }
                if self.engines.len() > 1 {
                    let wanted = (0..self.engines.len())
                        .filter(|&s| s != publisher.shard())
                        .filter(|&s| !self.remote_recipients(i, s, &published).is_empty())
                        .fold(0u64, |m, s| m | 1 << s);
                    self.conns[i].1.offers.push_back((published, frame, wanted));
                }
            }
            Cmd::Garbage => {
                let error = mist_engine::Error::from(ProtoError::NotAnObject).to_string();
                model.queue.push_back(encode::error("", None, &error));
            }
            Cmd::List => {
                let mut subs: Vec<Vec<String>> = model
                    .subscriptions
                    .iter()
                    .map(|s| s.iter().map(|t| t.to_string()).collect())
                    .collect();
                subs.sort_by_key(|tags| tags.join(","));
                model.queue.push_back(encode::list(&subs));
            }
        }
        None
    }

    fn after(&mut self) {
        self.drain_outputs();
        self.check_invariants();
    }

    fn check_invariants(&self) {
        let mut subscriptions = 0;
        for (id, model) in &self.conns {
            let engine = &self.engines[id.shard()];
            let stats = engine.conn_stats(*id).expect("open connection");
            assert_eq!(stats.queued_frames, model.queue.len() + model.in_flight);
            assert_eq!(stats.dropped, model.dropped, "drops at {id}");
            assert_eq!(
                stats.pending_input,
                model.pending.len(),
                "waiting input at {id}"
            );
            assert_eq!(
                self.woken.contains(id),
                !model.queue.is_empty(),
                "{id} is woken exactly when it has frames queued"
            );
            subscriptions += model.subscriptions.len();
        }
        let connections: usize = self.engines.iter().map(|e| e.stats().connections).sum();
        let held: usize = self.engines.iter().map(|e| e.stats().subscriptions).sum();
        assert_eq!(connections, self.conns.len());
        assert_eq!(held, subscriptions);
    }
}

/// Runs `ops` through an engine of `shards` shards and the model; panics
/// where they differ.
pub fn run(secured: bool, shards: usize, ops: Vec<Op>) {
    let config = Config {
        max_outbox_frames: MAX_FRAMES,
        ..Config::default()
    };
    let engines = if secured {
        let grants: Grants = TOKENS
            .iter()
            .map(|(token, tags)| {
                (
                    token.to_string(),
                    tags.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect();
        Engine::secured_shards(config, shards, ADMIN.to_string(), grants)
    } else {
        Engine::shards(config, shards)
    };
    let mut harness = Harness {
        engines,
        secured,
        conns: Vec::new(),
        woken: HashSet::new(),
        resumed: Vec::new(),
        offers: HashMap::new(),
        next_shard: 0,
    };
    for op in ops {
        harness.apply(op);
    }
    // Finally every offer goes out (writers write, waits expire), and every
    // connection's remaining frames must match too.
    while (0..harness.conns.len()).any(|i| harness.offering(i)) {
        for i in 0..harness.conns.len() {
            if !harness.offering(i) {
                harness.apply(Op::Drain(i));
            }
        }
        for i in 0..harness.conns.len() {
            if harness.offering(i) {
                harness.apply(Op::Expire(i));
            }
        }
    }
    for i in 0..harness.conns.len() {
        harness.apply(Op::Drain(i));
    }
}
