//! The protocol's rules, stated as tests driven through the engine step by step.

use mist_engine::{Batch, Config, ConnId, Engine, Flow, Output};
use mist_proto::{Message, ProtoError, Request};

struct Broker {
    engine: Engine,
}

impl Broker {
    fn new(config: Config) -> Broker {
        Broker {
            engine: Engine::new(config),
        }
    }

    /// A broker whose outboxes hold `frames` frames.
    fn with_outbox_frames(frames: usize) -> Broker {
        Broker::new(Config {
            max_outbox_frames: frames,
            ..Config::default()
        })
    }

    fn connect(&mut self) -> ConnId {
        self.engine.handle_connect().expect("room for a connection")
    }

    fn send(&mut self, conn: ConnId, request: Request) {
        self.engine.handle_message(conn, Ok(request));
        while self.engine.poll_output().is_some() {}
    }

    /// Every frame queued for `conn`, decoded.
    fn received(&mut self, conn: ConnId) -> Vec<Message> {
        let mut batch = Batch::new();
        self.engine.poll_transmit(conn, &mut batch);
        batch
            .lines()
            .map(|frame| serde_json::from_slice(frame).expect("frames are JSON"))
            .collect()
    }
}

fn subscribe(tags: &[&str]) -> Request {
    Request::new("subscribe").tags(tags.iter().copied())
}

fn publish(tags: &[&str], data: &str) -> Request {
    Request::new("publish")
        .tags(tags.iter().copied())
        .data(data)
}

fn data_of(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m.data.as_deref().unwrap_or(""))
        .collect()
}

#[test]
fn the_seed_table_of_onefish_twofish() {
    let subscriptions: [&[&str]; 3] = [
        &["onefish"],
        &["onefish", "twofish"],
        &["onefish", "twofish", "redfish"],
    ];
    let messages: [&[&str]; 3] = subscriptions;
    let mut broker = Broker::new(Config::default());
    let subscribers: Vec<ConnId> = subscriptions
        .iter()
        .map(|tags| {
            let c = broker.connect();
            broker.send(c, subscribe(tags));
            c
        })
        .collect();
    let publisher = broker.connect();
    for (i, tags) in messages.iter().enumerate() {
        broker.send(publisher, publish(tags, &i.to_string()));
    }
    assert_eq!(data_of(&broker.received(subscribers[0])), ["0", "1", "2"]);
    assert_eq!(data_of(&broker.received(subscribers[1])), ["1", "2"]);
    assert_eq!(data_of(&broker.received(subscribers[2])), ["2"]);
}

#[test]
fn tag_order_and_duplicates_do_not_matter() {
    let mut broker = Broker::new(Config::default());
    let (sub, publisher) = (broker.connect(), broker.connect());
    broker.send(sub, subscribe(&["b", "a", "a"]));
    broker.send(sub, subscribe(&["a", "b"]));
    broker.send(publisher, publish(&["a", "x", "b"], "hit"));
    let got = broker.received(sub);
    assert_eq!(data_of(&got), ["hit"], "one subscription, one delivery");
    assert_eq!(
        got[0].tags.as_deref(),
        Some(&["a", "x", "b"].map(String::from)[..])
    );
    broker.send(sub, Request::new("unsubscribe").tags(["a", "b", "b"]));
    broker.send(publisher, publish(&["a", "b"], "miss"));
    assert!(broker.received(sub).is_empty());
}

#[test]
fn several_matching_subscriptions_deliver_once_and_never_to_the_publisher() {
    let mut broker = Broker::new(Config::default());
    let (a, b) = (broker.connect(), broker.connect());
    for c in [a, b] {
        broker.send(c, subscribe(&["x"]));
        broker.send(c, subscribe(&["y"]));
        broker.send(c, subscribe(&["x", "y"]));
    }
    broker.send(a, publish(&["x", "y"], "from a"));
    assert!(broker.received(a).is_empty(), "publisher excluded");
    assert_eq!(data_of(&broker.received(b)), ["from a"]);
}

#[test]
fn list_reports_sorted_subscriptions_in_both_forms() {
    let mut broker = Broker::new(Config::default());
    let c = broker.connect();
    broker.send(c, subscribe(&["c"]));
    broker.send(c, subscribe(&["b", "a"]));
    broker.send(c, Request::new("list"));
    let reply = broker.received(c).pop().unwrap();
    assert_eq!(reply.command, "list");
    assert_eq!(reply.data.as_deref(), Some("a,b c"));
    let expected = vec![
        vec!["a".to_string(), "b".to_string()],
        vec!["c".to_string()],
    ];
    assert_eq!(reply.subscriptions, Some(expected));
}

#[test]
fn failures_are_answered_in_order_and_the_connection_stays_usable() {
    let mut broker = Broker::new(Config::default());
    let c = broker.connect();
    broker.send(c, Request::new("bogus").tags(["t"]));
    broker.send(c, Request::new("subscribe"));
    broker.send(c, Request::new("publish").tags(Vec::<String>::new()));
    broker
        .engine
        .handle_message(c, Err(ProtoError::NotAnObject));
    broker.send(c, Request::new("ping"));
    let replies = broker.received(c);
    let errors: Vec<_> = replies.iter().map(|m| m.error.as_deref()).collect();
    assert_eq!(
        errors,
        [
            Some("Unknown Command"),
            Some("missing tags: subscribe needs a non-empty \"tags\" list of strings"),
            Some("missing tags: publish needs a non-empty \"tags\" list of strings"),
            Some("invalid message: expected a JSON object like {\"command\":\"ping\"}"),
            None,
        ]
    );
    assert_eq!(replies[0].command, "bogus");
    assert_eq!(replies[0].tags, Some(vec!["t".to_string()]));
    assert_eq!(replies[4].data.as_deref(), Some("pong"));
}

#[test]
fn limits_on_tags_and_subscriptions() {
    let config = Config {
        max_tags: 2,
        max_subscriptions: 1,
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    let c = broker.connect();
    broker.send(c, subscribe(&["a", "b", "c"]));
    broker.send(c, subscribe(&["a"]));
    broker.send(c, subscribe(&["a"]));
    broker.send(c, subscribe(&["b"]));
    let errors: Vec<_> = broker.received(c).into_iter().map(|m| m.error).collect();
    assert_eq!(
        errors,
        [
            Some("too many tags: at most 2 tags are allowed".to_string()),
            Some("too many subscriptions: a connection may hold at most 1".to_string()),
        ],
        "re-subscribing to a held set is not a new subscription"
    );
}

#[test]
fn a_publisher_waits_for_a_subscriber_that_is_full_instead_of_dropping() {
    let mut broker = Broker::with_outbox_frames(3);
    let (subscriber, publisher) = (broker.connect(), broker.connect());
    broker.send(subscriber, subscribe(&["t"]));
    broker.engine.handle_input(
        publisher,
        (0..5).map(|i| Ok(publish(&["t"], &i.to_string()))),
    );
    while broker.engine.poll_output().is_some() {}
    assert_eq!(
        broker.engine.flow(publisher),
        Flow::Pace,
        "the fourth publish waits for room"
    );
    assert_eq!(broker.engine.stats().published, 3);
    // The subscriber's writer takes what is queued: the publisher is told
    // to go on, and its next turn fills the room that was made.
    let mut batch = Batch::new();
    assert!(broker.engine.poll_transmit(subscriber, &mut batch));
    assert_eq!(broker.engine.poll_output(), Some(Output::Resume(publisher)));
    broker.engine.handle_resume(publisher);
    assert_eq!(broker.engine.flow(publisher), Flow::Pace, "3 in flight");
    batch.clear();
    assert!(
        !broker.engine.poll_transmit(subscriber, &mut batch),
        "written"
    );
    broker.engine.handle_resume(publisher);
    assert_eq!(broker.engine.flow(publisher), Flow::Read);
    assert_eq!(data_of(&broker.received(subscriber)), ["3", "4"]);
    assert_eq!(broker.engine.stats().dropped, 0, "nothing lost");
}

#[test]
fn a_subscriber_still_full_after_the_wait_is_stalled_and_nobody_waits_for_it_again() {
    let mut broker = Broker::with_outbox_frames(3);
    let (slow, fast, publisher) = (broker.connect(), broker.connect(), broker.connect());
    broker.send(slow, subscribe(&["t"]));
    broker.send(fast, subscribe(&["t"]));
    let mut fast_got = Vec::new();
    let mut slow_batch = Batch::new();
    for i in 0..10 {
        broker.send(publisher, publish(&["t"], &i.to_string()));
        if i == 2 {
            // The slow subscriber's writer takes what is queued and never
            // comes back: its socket is full.
            assert!(broker.engine.poll_transmit(slow, &mut slow_batch));
        }
        if broker.engine.flow(publisher) == Flow::Pace {
            assert_eq!(i, 3, "paced once, when the slow one is full");
            // The frontend's timer ran out: the wait is over.
            broker.engine.handle_pace_expired(publisher);
            broker.engine.handle_resume(publisher);
        }
        assert_eq!(broker.engine.flow(publisher), Flow::Read);
        fast_got.extend(broker.received(fast));
    }
    assert_eq!(fast_got.len(), 10, "the fast subscriber gets everything");
    let kept: Vec<String> = slow_batch
        .lines()
        .map(|f| serde_json::from_slice::<Message>(f).unwrap().data.unwrap())
        .collect();
    assert_eq!(kept, ["0", "1", "2"], "oldest kept");
    assert_eq!(broker.engine.conn_stats(slow).unwrap().dropped, 7);
    assert_eq!(broker.engine.stats().dropped, 7);
    assert_eq!(broker.engine.stats().delivered, 13);
    // Its writer wrote and came back: it made progress, and is waited for
    // again.
    slow_batch.clear();
    assert!(broker.received(slow).is_empty());
    for i in 10..14 {
        broker.send(publisher, publish(&["t"], &i.to_string()));
        broker.received(fast);
    }
    assert_eq!(broker.engine.flow(publisher), Flow::Pace);
}

#[test]
fn after_the_wait_a_subscriber_whose_writer_had_no_turn_yet_is_still_waited_for() {
    let mut broker = Broker::with_outbox_frames(3);
    let (subscriber, publisher) = (broker.connect(), broker.connect());
    broker.send(subscriber, subscribe(&["t"]));
    for i in 0..4 {
        broker.send(publisher, publish(&["t"], &i.to_string()));
    }
    assert_eq!(broker.engine.flow(publisher), Flow::Pace);
    // The wait ran out, but the subscriber's writer never took anything: on
    // a busy machine it has not had its turn, which is not its client's
    // fault.
    broker.engine.handle_pace_expired(publisher);
    broker.engine.handle_resume(publisher);
    assert_eq!(broker.engine.flow(publisher), Flow::Pace, "still waits");
    assert_eq!(broker.engine.stats().dropped, 0);
    // Its writer runs at last and writes; the publish goes out, nothing lost.
    assert_eq!(data_of(&broker.received(subscriber)), ["0", "1", "2"]);
    broker.engine.handle_resume(publisher);
    assert_eq!(broker.engine.flow(publisher), Flow::Pace, "3 in flight");
    assert!(broker.received(subscriber).is_empty());
    broker.engine.handle_resume(publisher);
    assert_eq!(broker.engine.flow(publisher), Flow::Read);
    assert_eq!(data_of(&broker.received(subscriber)), ["3"]);
    assert_eq!(broker.engine.stats().dropped, 0);
}

#[test]
fn a_client_that_does_not_read_its_replies_gets_no_more_than_its_outbox_holds() {
    let config = Config {
        max_outbox_frames: 2,
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    let c = broker.connect();
    broker
        .engine
        .handle_input(c, (0..3).map(|_| Ok(Request::new("ping"))));
    assert_eq!(
        broker.engine.flow(c),
        Flow::Wait,
        "the third reply would not fit"
    );
    assert_eq!(broker.engine.conn_stats(c).unwrap().queued_frames, 2);
    assert_eq!(broker.engine.conn_stats(c).unwrap().pending_input, 1);
    assert_eq!(broker.received(c).len(), 2, "no reply is ever dropped");
    broker.engine.handle_resume(c);
    assert_eq!(
        broker.engine.flow(c),
        Flow::Wait,
        "the batch taken is still being written"
    );
    let mut written = Batch::new();
    broker.engine.poll_transmit(c, &mut written);
    broker.engine.handle_resume(c);
    assert_eq!(
        broker.engine.flow(c),
        Flow::Read,
        "applied once there was room"
    );
    assert_eq!(broker.received(c).len(), 1);
}

#[test]
fn a_turn_ends_when_its_work_is_used_up() {
    let config = Config {
        work_per_turn: 100,
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    let c = broker.connect();
    let many = (0..1000).map(|i| Ok(subscribe(&[&format!("t{i}")])));
    broker.engine.handle_input(c, many);
    let left = broker.engine.conn_stats(c).unwrap().pending_input;
    assert!(left > 900, "a turn applies only a little: {left} left");
    assert_eq!(broker.engine.flow(c), Flow::Yield);
    while broker.engine.flow(c) == Flow::Yield {
        broker.engine.handle_resume(c);
    }
    assert_eq!(broker.engine.flow(c), Flow::Read);
    assert_eq!(
        broker.engine.stats().subscriptions,
        1000,
        "all of it, in turns"
    );
}

#[test]
fn closing_input_ends_subscriptions_but_keeps_queued_frames() {
    let mut broker = Broker::new(Config::default());
    let (sub, publisher) = (broker.connect(), broker.connect());
    broker.send(sub, subscribe(&["t"]));
    broker.send(publisher, publish(&["t"], "before"));
    broker.engine.handle_input_closed(sub);
    broker.send(publisher, publish(&["t"], "after"));
    assert_eq!(data_of(&broker.received(sub)), ["before"]);
    assert_eq!(broker.engine.stats().subscriptions, 0);
    broker.engine.handle_disconnect(sub);
    assert_eq!(broker.engine.conn_stats(sub), None);
    let reused = broker.connect();
    assert_ne!(reused, sub, "a new connection never takes an old id");
}

#[test]
fn a_publish_costs_at_most_the_tags_of_the_subscriptions_it_could_match() {
    let config = Config {
        max_subscription_bytes: usize::MAX,
        ..Config::default()
    };
    let mut broker = Broker::new(config);
    let tag = |i: usize| format!("t{i:02}");
    // 1,000 subscriptions of 40 tags, each with t63, which no message has:
    // every publish of the other 63 tags nearly matches all of them.
    let tenant = broker.connect();
    for n in 0..1000u64 {
        let mut state = n * 7_919 + 1;
        let mut tags: Vec<String> = (0..63).map(tag).collect();
        for i in (1..tags.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            tags.swap(i, (state >> 33) as usize % (i + 1));
        }
        tags.truncate(39);
        tags.push(tag(63));
        broker.send(tenant, Request::new("subscribe").tags(tags));
    }
    assert_eq!(broker.engine.stats().subscriptions, 1000);
    let publisher = broker.connect();
    let before = broker.engine.work();
    broker.send(
        publisher,
        Request::new("publish").tags((0..63).map(tag)).data("x"),
    );
    let spent = broker.engine.work() - before;
    assert!(broker.received(tenant).is_empty());
    assert!(
        spent <= 1000 * 40 + 1000 + 64 + 16,
        "a publish that matches nothing cost {spent} units"
    );
}

#[test]
fn a_full_engine_refuses_new_connections_until_one_leaves() {
    let mut broker = Broker::new(Config {
        max_connections: 2,
        ..Config::default()
    });
    let first = broker.connect();
    broker.connect();
    assert!(broker.engine.at_capacity());
    let refused = broker.engine.handle_connect().unwrap_err();
    assert_eq!(refused, mist_engine::Error::TooManyConnections { limit: 2 });
    assert_eq!(broker.engine.stats().connections, 2, "nothing was opened");
    broker.engine.handle_disconnect(first);
    assert!(broker.engine.handle_connect().is_ok(), "room again");
}

#[test]
fn a_stopping_engine_refuses_new_connections_and_closes_the_open_ones() {
    let mut broker = Broker::new(Config::default());
    let open = broker.connect();
    broker.send(open, Request::new("ping"));
    broker.engine.handle_shutdown();
    assert_eq!(
        broker.engine.handle_connect().unwrap_err(),
        mist_engine::Error::ShuttingDown
    );
    assert_eq!(broker.engine.flow(open), Flow::Close);
    assert_eq!(
        data_of(&broker.received(open)),
        ["pong"],
        "what was queued still goes out"
    );
}
