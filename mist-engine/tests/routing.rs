//! Routing by tag between nodes, as the engine sees it: each distinct
//! subscription is anchored on its first tag in sorted order; the node
//! says when it gains or loses an anchor, and a client whose subscription's
//! anchor is not heard yet waits (its `ping` is not answered) until it is,
//! so a subscribe answered means nothing published elsewhere is missed.

use mist_engine::auth::Grants;
use mist_engine::{Batch, Config, ConnId, Engine, Flow, Output};
use mist_proto::Request;

fn subscribe(tags: &[&str]) -> Request {
    Request::new("subscribe").tags(tags.iter().copied())
}

/// Gives `request` to `conn`; returns the anchors the node gained or lost.
fn send(engine: &mut Engine, conn: ConnId, request: Request) -> Vec<String> {
    engine.handle_message(conn, Ok(request));
    interest(engine)
}

fn interest(engine: &mut Engine) -> Vec<String> {
    std::iter::from_fn(|| engine.poll_output())
        .filter_map(|output| match output {
            Output::Interest(tag) => Some(tag),
            _ => None,
        })
        .collect()
}

/// The commands of the replies queued for `conn`.
fn replies(engine: &mut Engine, conn: ConnId) -> Vec<String> {
    let mut batch = Batch::new();
    engine.poll_transmit(conn, &mut batch);
    batch
        .lines()
        .map(|line| {
            let message: mist_proto::Message = serde_json::from_slice(line).unwrap();
            message.data.unwrap_or(message.command)
        })
        .collect()
}

fn routing(shards: usize) -> Vec<Engine> {
    let mut engines = Engine::shards(Config::default(), shards);
    for engine in &mut engines {
        engine.set_routing_by_tag(true);
    }
    engines
}

#[test]
fn a_subscribe_waits_until_its_anchor_is_heard() {
    let mut engine = routing(1).remove(0);
    let client = engine.handle_connect().unwrap();
    assert_eq!(
        send(&mut engine, client, subscribe(&["b", "a"])),
        ["a"],
        "anchored on its first tag in sorted order"
    );
    assert!(engine.is_anchored("a"));
    assert!(!engine.is_anchored("b"));
    assert_eq!(
        send(&mut engine, client, Request::new("ping")),
        Vec::<String>::new()
    );
    assert_eq!(engine.flow(client), Flow::Wait);
    assert!(replies(&mut engine, client).is_empty(), "no pong yet");

    engine.handle_anchor_ready("a");
    let resumed: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
    assert!(resumed.contains(&Output::Resume(client)), "{resumed:?}");
    engine.handle_resume(client);
    assert_eq!(replies(&mut engine, client), ["pong"]);
    assert_eq!(engine.flow(client), Flow::Read);

    // The anchor is heard now: the next subscription on it does not wait.
    let other = engine.handle_connect().unwrap();
    assert!(send(&mut engine, other, subscribe(&["a", "c"])).is_empty());
    send(&mut engine, other, Request::new("ping"));
    assert_eq!(replies(&mut engine, other), ["pong"]);
}

#[test]
fn a_node_without_routing_by_tag_never_holds_a_subscribe() {
    let mut engine = Engine::new(Config::default());
    engine.set_replicating(true);
    let client = engine.handle_connect().unwrap();
    assert!(send(&mut engine, client, subscribe(&["a"])).is_empty());
    send(&mut engine, client, Request::new("ping"));
    assert_eq!(replies(&mut engine, client), ["pong"]);
}

#[test]
fn an_anchor_goes_with_its_last_subscription_on_every_shard() {
    let mut shards = routing(2);
    let (left, right) = shards.split_at_mut(1);
    let (left, right) = (&mut left[0], &mut right[0]);
    let one = left.handle_connect().unwrap();
    let two = right.handle_connect().unwrap();
    assert_eq!(send(left, one, subscribe(&["a"])), ["a"]);
    assert!(
        send(right, two, subscribe(&["a", "z"])).is_empty(),
        "had it"
    );
    left.handle_anchor_ready("a");
    right.handle_anchor_ready("a");
    interest(left);
    interest(right);
    assert!(send(left, one, Request::new("unsubscribe").tags(["a"])).is_empty());
    assert!(right.is_anchored("a"), "the other shard still holds one");
    assert_eq!(
        send(right, two, Request::new("unsubscribe").tags(["z", "a"])),
        ["a"]
    );
    assert!(!left.is_anchored("a"));
    assert!(left.anchors().is_empty());
    // A client going away takes its anchors with it.
    assert_eq!(send(left, one, subscribe(&["q"])), ["q"]);
    left.handle_disconnect(one);
    assert_eq!(interest(left), ["q"]);
    assert!(!left.is_anchored("q"));
}

#[test]
fn clients_waiting_on_an_anchor_go_on_when_it_is_heard_or_released() {
    let mut engine = routing(1).remove(0);
    let first = engine.handle_connect().unwrap();
    let second = engine.handle_connect().unwrap();
    send(&mut engine, first, subscribe(&["a"]));
    // The anchor is not heard yet: a second subscription on it waits too.
    assert!(send(&mut engine, second, subscribe(&["a", "b"])).is_empty());
    for client in [first, second] {
        send(&mut engine, client, Request::new("ping"));
        assert_eq!(engine.flow(client), Flow::Wait);
    }
    // The link went down: nobody waits for it.
    engine.handle_anchors_released();
    for client in [first, second] {
        engine.handle_resume(client);
        assert_eq!(replies(&mut engine, client), ["pong"]);
    }
    // Readiness for an anchor the node does not have changes nothing.
    engine.handle_anchor_ready("x");
    let third = engine.handle_connect().unwrap();
    assert_eq!(send(&mut engine, third, subscribe(&["x"])), ["x"]);
    send(&mut engine, third, Request::new("ping"));
    assert_eq!(engine.flow(third), Flow::Wait);
}

#[test]
fn a_waiting_client_whose_subscription_is_taken_away_goes_on() {
    let grants: Grants = [("t".to_string(), ["a".to_string()].into())].into();
    let mut engine = Engine::secured(Config::default(), "admin".into(), grants);
    engine.set_routing_by_tag(true);
    let client = engine
        .handle_connect_with_token(Some("t"))
        .expect("a registered token");
    assert_eq!(send(&mut engine, client, subscribe(&["a"])), ["a"]);
    send(&mut engine, client, Request::new("ping"));
    assert_eq!(engine.flow(client), Flow::Wait);

    // The admin takes the tag away; the subscription, and the anchor, end.
    let admin = engine.handle_connect_with_token(Some("admin")).unwrap();
    engine.handle_message(admin, Ok(Request::new("unset").tags(["a"]).data("t")));
    let mut persisted = None;
    while let Some(output) = engine.poll_output() {
        if let Output::Persist { id, .. } = output {
            persisted = Some(id);
        }
    }
    engine.handle_persisted(persisted.expect("the change is stored"), Ok(()));
    let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
    assert!(
        outputs.contains(&Output::Interest("a".into())),
        "{outputs:?}"
    );
    assert!(outputs.contains(&Output::Resume(client)), "{outputs:?}");
    engine.handle_resume(client);
    // Told that its subscription ended, then answered.
    assert_eq!(replies(&mut engine, client), ["subscribe", "pong"]);
}

mod against_a_model {
    //! Over random subscribes, unsubscribes and disconnects on two shards,
    //! with every anchor answered at once: the node's anchors are always
    //! exactly the first tags of the subscriptions its clients hold, and no
    //! client is left waiting.

    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    const TAGS: [&str; 4] = ["a", "b", "c", "d"];

    #[derive(Debug, Clone)]
    enum Op {
        Subscribe(usize, Vec<usize>),
        Unsubscribe(usize, Vec<usize>),
        Reconnect(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let tags = prop::collection::vec(0..TAGS.len(), 1..3);
        prop_oneof![
            3 => (0usize..4, tags.clone()).prop_map(|(c, t)| Op::Subscribe(c, t)),
            2 => (0usize..4, tags).prop_map(|(c, t)| Op::Unsubscribe(c, t)),
            1 => (0usize..4).prop_map(Op::Reconnect),
        ]
    }

    fn names(tags: &[usize]) -> Vec<&'static str> {
        tags.iter().map(|&t| TAGS[t]).collect()
    }

    /// Answers every anchor the shards asked about, as a link to Redis
    /// that hears at once would, and resumes whoever was let go.
    fn answer(shards: &mut [Engine]) {
        loop {
            let mut asked = Vec::new();
            let mut resumed = Vec::new();
            for shard in shards.iter_mut() {
                while let Some(output) = shard.poll_output() {
                    match output {
                        Output::Interest(tag) => asked.push(tag),
                        Output::Resume(conn) => resumed.push(conn),
                        _ => {}
                    }
                }
            }
            if asked.is_empty() && resumed.is_empty() {
                return;
            }
            for tag in asked {
                let anchored = shards[0].is_anchored(&tag);
                for shard in shards.iter_mut() {
                    if anchored {
                        shard.handle_anchor_ready(&tag);
                    } else {
                        shard.handle_anchor_dropped(&tag);
                    }
                }
            }
            for conn in resumed {
                shards[conn.shard()].handle_resume(conn);
            }
        }
    }

    proptest! {
        #[test]
        fn anchors_are_the_first_tags_of_what_is_held(ops in prop::collection::vec(op(), 1..60)) {
            let mut shards = routing(2);
            let mut conns: Vec<ConnId> = (0..4)
                .map(|i| shards[i % 2].handle_connect().unwrap())
                .collect();
            let mut held: HashMap<usize, BTreeSet<Vec<&'static str>>> = HashMap::new();
            for op in ops {
                match op {
                    Op::Subscribe(c, tags) => {
                        let conn = conns[c];
                        shards[conn.shard()].handle_message(conn, Ok(subscribe(&names(&tags))));
                        let mut set = names(&tags);
                        set.sort_unstable();
                        set.dedup();
                        held.entry(c).or_default().insert(set);
                    }
                    Op::Unsubscribe(c, tags) => {
                        let conn = conns[c];
                        let request = Request::new("unsubscribe").tags(names(&tags));
                        shards[conn.shard()].handle_message(conn, Ok(request));
                        let mut set = names(&tags);
                        set.sort_unstable();
                        set.dedup();
                        held.entry(c).or_default().remove(&set);
                    }
                    Op::Reconnect(c) => {
                        let conn = conns[c];
                        shards[conn.shard()].handle_disconnect(conn);
                        conns[c] = shards[c % 2].handle_connect().unwrap();
                        held.remove(&c);
                    }
                }
                answer(&mut shards);
                let want: BTreeSet<String> = held
                    .values()
                    .flatten()
                    .map(|set| set[0].to_string())
                    .collect();
                let have: BTreeSet<String> = shards[0].anchors().into_iter().collect();
                prop_assert_eq!(&have, &want);
                for tag in TAGS {
                    prop_assert_eq!(shards[1].is_anchored(tag), want.contains(tag));
                }
                for conn in &conns {
                    prop_assert_eq!(shards[conn.shard()].flow(*conn), Flow::Read, "{} waits", conn);
                }
            }
        }
    }
}
