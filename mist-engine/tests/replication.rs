//! Several nodes as one broker, as the engine sees it: every publish of a
//! node's own clients comes out to be carried to the other nodes, and a
//! publish carried in from another node reaches this node's subscribers
//! under the same rules as a local one, without waiting and without going
//! out again.

use bytes::Bytes;
use mist_engine::auth::Grants;
use mist_engine::{Batch, Config, ConnId, Engine, Error, Output};
use mist_proto::{LineDecoder, Message, ProtoError, Request};

fn subscribe(tags: &[&str]) -> Request {
    Request::new("subscribe").tags(tags.iter().copied())
}

fn publish(tags: &[&str], data: &str) -> Request {
    Request::new("publish")
        .tags(tags.iter().copied())
        .data(data)
}

/// Gives `request` to `conn` and returns the frames to replicate.
fn send(engine: &mut Engine, conn: ConnId, request: Request) -> Vec<Bytes> {
    engine.handle_message(conn, Ok(request));
    std::iter::from_fn(|| engine.poll_output())
        .filter_map(|output| match output {
            Output::Replicate(frame) => Some(frame),
            _ => None,
        })
        .collect()
}

/// A replicated frame as the receiving node decodes it.
fn decode(frame: &[u8]) -> Request {
    let mut decoder = LineDecoder::new(1 << 20);
    let mut out: Vec<Result<Request, ProtoError>> = Vec::new();
    decoder.decode(frame, &mut out);
    assert_eq!(out.len(), 1, "one frame, one line");
    out.remove(0).expect("a replicated frame decodes")
}

fn received(engine: &mut Engine, conn: ConnId) -> Vec<Message> {
    let mut batch = Batch::new();
    engine.poll_transmit(conn, &mut batch);
    batch
        .lines()
        .map(|line| serde_json::from_slice(line).expect("frames are JSON"))
        .collect()
}

fn data(messages: &[Message]) -> Vec<&str> {
    messages.iter().filter_map(|m| m.data.as_deref()).collect()
}

#[test]
fn a_node_that_replicates_hands_on_every_publish_of_its_clients() {
    let mut engine = Engine::new(Config::default());
    let client = engine.handle_connect().unwrap();
    assert!(
        send(&mut engine, client, publish(&["a"], "before")).is_empty(),
        "nothing goes out until replication is on"
    );
    engine.set_replicating(true);
    // Nobody here subscribes: the other nodes may.
    let out = send(&mut engine, client, publish(&["a", "b"], "one"));
    assert_eq!(out.len(), 1);
    let request = decode(&out[0]);
    assert_eq!(request.tags, Some(vec!["a".to_string(), "b".to_string()]));
    assert_eq!(request.data.unwrap().to_text(), "one");
    // An escaped message goes out as its subscribers get it.
    let out = send(&mut engine, client, publish(&["a"], "two\n\"lines\""));
    assert_eq!(decode(&out[0]).data.unwrap().to_text(), "two\n\"lines\"");
    // Commands other than publish, and refused publishes, do not.
    assert!(send(&mut engine, client, subscribe(&["a"])).is_empty());
    assert!(send(&mut engine, client, Request::new("publish").data("x")).is_empty());
}

#[test]
fn a_publish_from_another_node_reaches_matching_subscribers_only() {
    let mut engine = Engine::new(Config::default());
    engine.set_replicating(true);
    let (both, only_a, other) = (
        engine.handle_connect().unwrap(),
        engine.handle_connect().unwrap(),
        engine.handle_connect().unwrap(),
    );
    send(&mut engine, both, subscribe(&["a", "b"]));
    send(&mut engine, only_a, subscribe(&["a"]));
    send(&mut engine, other, subscribe(&["c"]));
    let frame = encode_publish(&["b", "a"], "remote");
    engine.handle_remote_publish(&decode(&frame)).unwrap();
    assert!(
        std::iter::from_fn(|| engine.poll_output()).all(|o| !matches!(o, Output::Replicate(_))),
        "a remote publish does not go out again"
    );
    assert_eq!(data(&received(&mut engine, both)), ["remote"]);
    assert_eq!(data(&received(&mut engine, only_a)), ["remote"]);
    assert!(received(&mut engine, other).is_empty());
    assert_eq!(engine.stats().remote, 1);
    assert_eq!(engine.stats().published, 0, "not published here");
}

fn encode_publish(tags: &[&str], data: &str) -> Vec<u8> {
    publish(tags, data).to_line()
}

#[test]
fn a_publish_from_another_node_never_waits_for_a_full_subscriber() {
    let mut engine = Engine::new(Config {
        max_outbox_frames: 2,
        ..Config::default()
    });
    let subscriber = engine.handle_connect().unwrap();
    send(&mut engine, subscriber, subscribe(&["t"]));
    for i in 0..5 {
        let frame = encode_publish(&["t"], &i.to_string());
        engine.handle_remote_publish(&decode(&frame)).unwrap();
    }
    assert_eq!(data(&received(&mut engine, subscriber)), ["0", "1"]);
    assert_eq!(
        engine.stats().dropped,
        3,
        "the rest are dropped, not waited for"
    );
}

#[test]
fn a_publish_from_another_node_meets_the_tag_limits() {
    let mut engine = Engine::new(Config {
        max_tags: 2,
        ..Config::default()
    });
    let many = decode(&encode_publish(&["a", "b", "c"], "x"));
    assert_eq!(
        engine.handle_remote_publish(&many),
        Err(Error::TooManyTags { limit: 2 })
    );
    let none = Request::new("publish").data("x");
    assert!(engine.handle_remote_publish(&none).is_err());
}

#[test]
fn a_publish_from_another_node_reaches_only_subscribers_granted_all_its_tags() {
    let mut grants = Grants::new();
    grants.insert("news".into(), ["news".to_string()].into());
    grants.insert(
        "all".into(),
        ["news".to_string(), "sport".to_string()].into(),
    );
    let mut engine = Engine::secured(Config::default(), "admin".into(), grants);
    let (news, all) = (
        engine.handle_connect().unwrap(),
        engine.handle_connect().unwrap(),
    );
    send(&mut engine, news, Request::new("auth").data("news"));
    send(&mut engine, all, Request::new("auth").data("all"));
    send(&mut engine, news, subscribe(&["news"]));
    send(&mut engine, all, subscribe(&["news"]));
    received(&mut engine, news);
    received(&mut engine, all);
    let frame = encode_publish(&["news", "sport"], "both");
    engine.handle_remote_publish(&decode(&frame)).unwrap();
    assert!(
        received(&mut engine, news).is_empty(),
        "sport was not granted"
    );
    assert_eq!(data(&received(&mut engine, all)), ["both"]);
}

#[test]
fn a_remote_publish_goes_to_the_shards_that_may_want_it() {
    let mut shards = Engine::shards(Config::default(), 4);
    let subscriber = shards[2].handle_connect().unwrap();
    send(&mut shards[2], subscriber, subscribe(&["x", "y"]));
    let request = decode(&encode_publish(&["y", "x", "z"], "m"));
    let tags = request.tags.clone().unwrap();
    let wanting = shards[0].shards_wanting(&tags);
    assert_ne!(wanting & (1 << 2), 0, "the subscriber's shard is named");
    for shard in (0..4).filter(|s| wanting & (1 << s) != 0) {
        shards[shard].handle_remote_publish(&request).unwrap();
    }
    assert_eq!(data(&received(&mut shards[2], subscriber)), ["m"]);
    assert_eq!(
        Engine::new(Config::default()).shards_wanting(&tags),
        1,
        "a lone engine always wants it"
    );
}

#[test]
fn who_and_listall_say_when_they_cover_this_node_only() {
    let mut engine = Engine::new(Config::default());
    let client = engine.handle_connect().unwrap();
    send(&mut engine, client, subscribe(&["a"]));
    for (replicating, scope) in [(false, None), (true, Some("node"))] {
        engine.set_replicating(replicating);
        send(&mut engine, client, Request::new("who"));
        send(&mut engine, client, Request::new("listall"));
        let mut batch = Batch::new();
        engine.poll_transmit(client, &mut batch);
        let replies: Vec<serde_json::Value> = batch
            .lines()
            .map(|line| serde_json::from_slice(line).unwrap())
            .collect();
        assert_eq!(replies.len(), 2);
        for reply in &replies {
            assert_eq!(reply["scope"].as_str(), scope, "{reply}");
        }
        assert_eq!(
            replies[0]["data"]
                .as_str()
                .unwrap()
                .ends_with("on this node"),
            replicating
        );
    }
}

fn secured() -> Engine {
    let mut grants = Grants::new();
    grants.insert(
        "reader".into(),
        ["news".to_string(), "sport".to_string()].into(),
    );
    Engine::secured(Config::default(), "admin".into(), grants)
}

fn set(tags: &[&str]) -> std::collections::BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

#[test]
fn an_admin_change_goes_out_once_it_is_stored() {
    let mut engine = secured();
    engine.set_replicating(true);
    let admin = engine.handle_connect().unwrap();
    send(&mut engine, admin, Request::new("auth").data("admin"));
    engine.handle_message(
        admin,
        Ok(Request::new("register").tags(["a"]).data("writer")),
    );
    let mut persist = None;
    while let Some(output) = engine.poll_output() {
        match output {
            Output::Persist { id, .. } => persist = Some(id),
            Output::ReplicateChange(_) => panic!("not before it is stored"),
            _ => {}
        }
    }
    engine.handle_persisted(persist.expect("a change to store"), Ok(()));
    let out: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
    let changes: Vec<&mist_engine::auth::Change> = out
        .iter()
        .filter_map(|o| match o {
            Output::ReplicateChange(change) => Some(change),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [&mist_engine::auth::Change::Register {
            token: "writer".into(),
            tags: set(&["a"]),
        }]
    );
}

#[test]
fn a_revocation_from_another_node_closes_the_tokens_connections_here() {
    let mut engine = secured();
    engine.set_replicating(true);
    let reader = engine.handle_connect().unwrap();
    send(&mut engine, reader, Request::new("auth").data("reader"));
    send(&mut engine, reader, subscribe(&["news"]));
    assert!(
        engine.handle_remote_change(mist_engine::auth::Change::Unregister {
            token: "reader".into()
        })
    );
    assert!(
        std::iter::from_fn(|| engine.poll_output())
            .all(|o| !matches!(o, Output::ReplicateChange(_))),
        "not replicated again"
    );
    assert_eq!(engine.flow(reader), mist_engine::Flow::Close);
    assert!(!Engine::new(Config::default())
        .handle_remote_change(mist_engine::auth::Change::Unregister { token: "x".into() }));
}

#[test]
fn tags_taken_away_elsewhere_end_those_subscriptions_here() {
    let mut engine = secured();
    let reader = engine.handle_connect().unwrap();
    send(&mut engine, reader, Request::new("auth").data("reader"));
    send(&mut engine, reader, subscribe(&["news"]));
    send(&mut engine, reader, subscribe(&["sport"]));
    received(&mut engine, reader);
    engine.handle_remote_change(mist_engine::auth::Change::Unset {
        token: "reader".into(),
        tags: set(&["sport"]),
    });
    while engine.poll_output().is_some() {}
    send(&mut engine, reader, Request::new("list"));
    let list = received(&mut engine, reader);
    assert_eq!(list.last().unwrap().data.as_deref(), Some("news"));
    // A register of a token known here gives it exactly those tags.
    engine.handle_remote_change(mist_engine::auth::Change::Register {
        token: "reader".into(),
        tags: set(&["weather"]),
    });
    while engine.poll_output().is_some() {}
    assert_eq!(
        engine.flow(reader),
        mist_engine::Flow::Read,
        "still connected"
    );
    send(&mut engine, reader, Request::new("list"));
    let list = received(&mut engine, reader);
    assert_eq!(list.last().unwrap().data.as_deref(), Some(""));
    send(&mut engine, reader, subscribe(&["weather"]));
    assert!(received(&mut engine, reader)
        .iter()
        .all(|m| m.error.is_none()));
}
