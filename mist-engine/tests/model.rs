//! Property test: the engine against a brute-force model of the protocol.
//!
//! Random sequences of connect / subscribe / unsubscribe / publish / drain /
//! close / disconnect run through the real engine and through a model that
//! checks every subscription of every connection on every publish. After each
//! drain, the frames the engine hands out must equal the model's, frame for
//! frame — so delivery targets, once-only delivery, publisher exclusion,
//! ordering, the outbox bound and the drop count all have to agree.

use bytes::Bytes;
use mist_engine::{Config, ConnId, Engine, Output};
use mist_proto::{encode, Data, Request};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet, VecDeque};

const TAGS: [&str; 4] = ["a", "b", "c", "d"];
const MAX_FRAMES: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Connect,
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
        2 => Just(Op::Connect),
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
    subscriptions: BTreeSet<BTreeSet<&'static str>>,
    queue: VecDeque<Bytes>,
    in_flight: usize,
    dropped: u64,
}

fn names(tags: &[usize]) -> Vec<String> {
    tags.iter().map(|&t| TAGS[t].to_string()).collect()
}

fn set(tags: &[usize]) -> BTreeSet<&'static str> {
    tags.iter().map(|&t| TAGS[t]).collect()
}

struct Harness {
    engine: Engine,
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
            Op::Connect => {
                let id = self.engine.handle_connect();
                self.conns.push((id, ModelConn::default()));
            }
            Op::Subscribe(who, tags) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine
                    .handle_message(id, Ok(Request::new("subscribe").tags(names(&tags))));
                self.conns[i].1.subscriptions.insert(set(&tags));
            }
            Op::Unsubscribe(who, tags) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                self.engine
                    .handle_message(id, Ok(Request::new("unsubscribe").tags(names(&tags))));
                self.conns[i].1.subscriptions.remove(&set(&tags));
            }
            Op::Publish(who, tags, data) => {
                let Some(i) = self.pick(who) else { return };
                let id = self.conns[i].0;
                let data = data.to_string();
                let request = Request::new("publish").tags(names(&tags)).data(&data);
                self.engine.handle_message(id, Ok(request));
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let config = Config { max_outbox_frames: MAX_FRAMES, ..Config::default() };
        let mut harness = Harness { engine: Engine::new(config), conns: Vec::new(), woken: HashSet::new() };
        for op in ops {
            harness.apply(op);
        }
        // Finally every connection's remaining frames must match too.
        for i in 0..harness.conns.len() {
            harness.apply(Op::Drain(i));
        }
    }
}
