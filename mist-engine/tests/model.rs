//! Property test: the engine against a brute-force model of the protocol.
//!
//! Random sequences of connect / subscribe / unsubscribe / publish / drain /
//! close / disconnect run through the real engine and through a model that
//! checks every subscription of every connection on every publish. After each
//! drain, the frames the engine hands out must equal the model's, frame for
//! frame — so delivery targets, once-only delivery, publisher exclusion,
//! ordering, the outbox bound and the drop count all have to agree. On a
//! secured engine each connection holds a token, and permission errors must
//! agree too: nothing may reach a client that its token was not granted.

use bytes::Bytes;
use mist_engine::auth::Grants;
use mist_engine::{Config, ConnId, Engine, Output};
use mist_proto::{encode, Data, Request};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet, VecDeque};

const TAGS: [&str; 4] = ["a", "b", "c", "d"];
const MAX_FRAMES: usize = 4;

/// Tokens of the secured engine: the admin, and two registered ones.
const ADMIN: &str = "admin";
const TOKENS: [(&str, &[&str]); 2] = [("ab", &["a", "b"]), ("bcd", &["b", "c", "d"])];

#[derive(Debug, Clone)]
enum Op {
    /// Connects with the admin token (0) or a registered one (1, 2); on an
    /// open engine the token is ignored.
    Connect(usize),
    Subscribe(usize, Vec<usize>),
    Unsubscribe(usize, Vec<usize>),
    Publish(usize, Vec<usize>, u8),
    List(usize),
    Drain(usize),
    CloseInput(usize),
    Disconnect(usize),
}

fn tag_list() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..TAGS.len(), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0usize..6;
    prop_oneof![
        2 => (0usize..3).prop_map(Op::Connect),
        3 => (who.clone(), tag_list()).prop_map(|(c, t)| Op::Subscribe(c, t)),
        1 => (who.clone(), tag_list()).prop_map(|(c, t)| Op::Unsubscribe(c, t)),
        5 => (who.clone(), tag_list(), any::<u8>()).prop_map(|(c, t, d)| Op::Publish(c, t, d)),
        1 => who.clone().prop_map(Op::List),
        3 => who.clone().prop_map(Op::Drain),
        1 => who.clone().prop_map(Op::CloseInput),
        1 => who.prop_map(Op::Disconnect),
    ]
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
}

impl ModelConn {
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

struct Harness {
    engine: Engine,
    secured: bool,
    /// Open connections, engine id and model side by side.
    conns: Vec<(ConnId, ModelConn)>,
    /// Connections whose writer the engine has asked to wake.
    woken: HashSet<ConnId>,
}

impl Harness {
    fn drain_outputs(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit(id) => {
                    self.woken.insert(id);
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    fn pick(&self, who: usize) -> Option<usize> {
        (!self.conns.is_empty()).then(|| who % self.conns.len())
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Connect(role) => {
                let (token, granted) = match role {
                    0 => (ADMIN, None),
                    n => (
                        TOKENS[n - 1].0,
                        Some(TOKENS[n - 1].1.iter().copied().collect()),
                    ),
                };
                let id = self.engine.handle_connect_with_token(Some(token)).unwrap();
                let granted = if self.secured { granted } else { None };
                self.conns.push((
                    id,
                    ModelConn {
                        granted,
                        ..ModelConn::default()
                    },
                ));
            }
            Op::Subscribe(who, tags) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine
                    .handle_message(id, Ok(Request::new("subscribe").tags(names(&tags))));
                if self.conns[i].1.permits("subscribe", &tags) {
                    self.conns[i].1.subscriptions.insert(set(&tags));
                }
            }
            Op::Unsubscribe(who, tags) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine
                    .handle_message(id, Ok(Request::new("unsubscribe").tags(names(&tags))));
                if self.conns[i].1.permits("unsubscribe", &tags) {
                    self.conns[i].1.subscriptions.remove(&set(&tags));
                }
            }
            Op::Publish(who, tags, data) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                let data = data.to_string();
                let request = Request::new("publish").tags(names(&tags)).data(&data);
                self.engine.handle_message(id, Ok(request));
                if !self.conns[i].1.permits("publish", &tags) {
                    return self.after();
                }
                let frame = encode::publish(&names(&tags), Some(&Data::new(&data)));
                let published = set(&tags);
                for (j, (_, model)) in self.conns.iter_mut().enumerate() {
                    let wants = model.subscriptions.iter().any(|s| s.is_subset(&published));
                    if j == i || !wants {
                        continue;
                    }
                    let held = model.queue.len() + model.in_flight;
                    if held == 0 || held < MAX_FRAMES {
                        model.queue.push_back(frame.clone());
                    } else {
                        model.dropped += 1;
                    }
                }
            }
            Op::List(who) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine.handle_message(id, Ok(Request::new("list")));
                let model = &mut self.conns[i].1;
                let mut subs: Vec<Vec<String>> = model
                    .subscriptions
                    .iter()
                    .map(|s| s.iter().map(|t| t.to_string()).collect())
                    .collect();
                subs.sort_by_key(|tags| tags.join(","));
                model.queue.push_back(encode::list(&subs));
            }
            Op::Drain(who) => {
                let Some(i) = self.pick(who) else { return };
                let (id, model) = &mut self.conns[i];
                let mut batch = VecDeque::new();
                let got = self.engine.poll_transmit(*id, &mut batch);
                assert_eq!(got, !model.queue.is_empty());
                assert_eq!(batch, model.queue, "frames handed to {id}");
                model.in_flight = model.queue.len();
                model.queue.clear();
                self.woken.remove(id);
            }
            Op::CloseInput(who) => {
                let Some(i) = self.pick(who) else { return };
                self.engine.handle_input_closed(self.conns[i].0);
                self.conns[i].1.subscriptions.clear();
            }
            Op::Disconnect(who) => {
                let Some(i) = self.pick(who) else { return };
                let (id, _) = self.conns.remove(i);
                self.engine.handle_disconnect(id);
                self.woken.remove(&id);
            }
        }
        self.after();
    }

    fn after(&mut self) {
        self.drain_outputs();
        self.check_invariants();
    }

    fn check_invariants(&self) {
        let mut subscriptions = 0;
        for (id, model) in &self.conns {
            let stats = self.engine.conn_stats(*id).expect("open connection");
            assert_eq!(stats.queued_frames, model.queue.len() + model.in_flight);
            assert_eq!(stats.dropped, model.dropped, "drops at {id}");
            assert_eq!(
                self.woken.contains(id),
                !model.queue.is_empty(),
                "{id} is woken exactly when it has frames queued"
            );
            subscriptions += model.subscriptions.len();
        }
        let stats = self.engine.stats();
        assert_eq!(stats.connections, self.conns.len());
        assert_eq!(stats.subscriptions, subscriptions);
    }
}

fn run(secured: bool, ops: Vec<Op>) {
    let config = Config {
        max_outbox_frames: MAX_FRAMES,
        ..Config::default()
    };
    let engine = if secured {
        let grants: Grants = TOKENS
            .iter()
            .map(|(token, tags)| {
                (
                    token.to_string(),
                    tags.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect();
        Engine::secured(config, ADMIN.to_string(), grants)
    } else {
        Engine::new(config)
    };
    let mut harness = Harness {
        engine,
        secured,
        conns: Vec::new(),
        woken: HashSet::new(),
    };
    for op in ops {
        harness.apply(op);
    }
    // Finally every connection's remaining frames must match too.
    for i in 0..harness.conns.len() {
        harness.apply(Op::Drain(i));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn open_engine_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(false, ops);
    }

    #[test]
    fn secured_engine_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(true, ops);
    }
}
