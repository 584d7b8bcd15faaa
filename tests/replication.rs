//! Several nodes as one broker over a real Redis (`--replicator`): what a
//! client publishes on any node, over any transport, reaches matching
//! subscribers on every node once, in order, never its publisher; brokers
//! on different prefixes stay apart; Redis going away stops only
//! cross-node delivery, and the link comes back on its own.

mod support;

use std::time::{Duration, Instant};
use support::{Client, Redis, Server, Transport};

fn node(redis: &Redis, extra: &[&str]) -> Server {
    node_on("async-std", redis, extra)
}

fn node_on(runtime: &str, redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--replicator", url.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start_on(runtime, &args);
    wait_for_log(&server, "subscribed");
    server
}

fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().iter().any(|line| line.contains(text)) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {:#?}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `subscriber` has `count` deliveries, returning their data.
fn collect(subscriber: &mut Client, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        match subscriber.try_recv(Duration::from_secs(5)) {
            Some(m) if m.command == "publish" => got.push(m.data.unwrap_or_default()),
            Some(m) => panic!("unexpected {m:?}"),
            None => panic!("only {} of {count} came: {got:?}", got.len()),
        }
    }
    got
}

fn nothing_more(client: &mut Client) {
    assert_eq!(client.try_recv(Duration::from_millis(300)), None);
}

#[test]
fn a_publish_on_one_node_reaches_every_node_once_and_never_its_publisher() {
    let Some(redis) = Redis::start() else { return };
    let (first, second) = (node(&redis, &[]), node(&redis, &[]));
    let mut ws = first.client(Transport::Ws);
    ws.subscribe(&["news"]);
    let mut tcp_elsewhere = second.connect();
    tcp_elsewhere.subscribe(&["news"]);
    let mut publisher = second.connect();
    publisher.subscribe(&["news"]);
    let mut other_tag = first.connect();
    other_tag.subscribe(&["sport"]);

    assert_eq!(
        publisher.publish(&["news", "x"], "from tcp"),
        [],
        "never its own"
    );
    assert_eq!(collect(&mut ws, 1), ["from tcp"]);
    assert_eq!(collect(&mut tcp_elsewhere, 1), ["from tcp"]);
    // Over HTTP on the other node.
    let body = br#"{"tags":["news"],"data":"from http"}"#;
    let reply = support::http(first.http(), "POST", "/publish", &[], body);
    assert_eq!(reply.status, 200);
    assert_eq!(collect(&mut ws, 1), ["from http"]);
    assert_eq!(collect(&mut tcp_elsewhere, 1), ["from http"]);
    assert_eq!(collect(&mut publisher, 1), ["from http"]);
    for client in [&mut ws, &mut tcp_elsewhere, &mut publisher, &mut other_tag] {
        nothing_more(client);
    }
    // Each node counts what it sent and what it received from the other.
    let stats = support::http(second.http(), "GET", "/stats", &[], b"").json();
    let link = &stats["replicator"];
    assert_eq!(link["connected"], true, "{stats}");
    assert_eq!(link["sent"], 1, "{stats}");
    assert_eq!(link["received"], 1, "{stats}");
    assert_eq!(stats["remote"], 1, "{stats}");
    let metrics = support::http(first.http(), "GET", "/metrics", &[], b"").body;
    assert!(metrics.contains("mist_replicator_connected 1"), "{metrics}");
    assert!(
        metrics.contains("mist_replicator_sent_total 1"),
        "{metrics}"
    );
    // `who` counts this node's connections only, and says so.
    let mut asker = first.connect();
    asker.send(mist_proto::Request::new("who"));
    let who = asker.recv();
    assert!(who.data.unwrap().ends_with("on this node"));
}

#[test]
fn each_publishers_order_holds_across_nodes() {
    let Some(redis) = Redis::start() else { return };
    let (first, second) = (node(&redis, &[]), node_on("smol", &redis, &[]));
    let mut subscriber = second.connect();
    subscriber.subscribe(&["seq"]);
    let mut publisher = first.connect();
    const N: usize = 2000;
    for i in 0..N {
        publisher.send(
            mist_proto::Request::new("publish")
                .tags(["seq"])
                .data(i.to_string()),
        );
    }
    publisher.sync();
    let got = collect(&mut subscriber, N);
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    nothing_more(&mut subscriber);
}

#[test]
fn brokers_on_different_prefixes_stay_apart() {
    let Some(redis) = Redis::start() else { return };
    let chat = format!("{}?prefix=chat", redis.url());
    let games = format!("{}?prefix=games", redis.url());
    let first = Server::start_with(&["--replicator", &chat]);
    let same = Server::start_with(&["--replicator", &chat]);
    let other = Server::start_with(&["--replicator", &games]);
    for server in [&first, &same, &other] {
        wait_for_log(server, "subscribed");
    }
    let mut near = same.connect();
    near.subscribe(&["t"]);
    let mut far = other.connect();
    far.subscribe(&["t"]);
    first.connect().publish(&["t"], "hi");
    assert_eq!(collect(&mut near, 1), ["hi"]);
    nothing_more(&mut far);
}

#[test]
fn redis_going_away_stops_only_cross_node_delivery_until_it_is_back() {
    let Some(redis) = Redis::start() else { return };
    let (first, second) = (node(&redis, &[]), node(&redis, &[]));
    let mut local = first.connect();
    local.subscribe(&["t"]);
    let mut remote = second.connect();
    remote.subscribe(&["t"]);
    let mut publisher = first.connect();
    publisher.publish(&["t"], "before");
    assert_eq!(collect(&mut local, 1), ["before"]);
    assert_eq!(collect(&mut remote, 1), ["before"]);

    let port = redis.stop();
    publisher.publish(&["t"], "while down");
    assert_eq!(
        collect(&mut local, 1),
        ["while down"],
        "local delivery goes on"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = support::http(second.http(), "GET", "/stats", &[], b"").json();
        if stats["replicator"]["connected"] == false {
            assert!(stats["replicator"]["last_error"].is_string(), "{stats}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the link still looks up: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let _redis = Redis::start_on(port).expect("redis-server again");
    // Back within a few seconds: publish until the other node hears one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.publish(&["t"], "after");
        assert_eq!(collect(&mut local, 1), ["after"]);
        if let Some(m) = remote.try_recv(Duration::from_millis(500)) {
            if m.data.as_deref() == Some("after") {
                break;
            }
            // What was queued while down may arrive first.
            assert_eq!(m.data.as_deref(), Some("while down"));
        }
        assert!(
            Instant::now() < deadline,
            "the link did not come back: {:#?}",
            second.log()
        );
    }
    let stats = support::http(second.http(), "GET", "/stats", &[], b"").json();
    assert!(
        stats["replicator"]["reconnects"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn a_subscription_killed_in_redis_is_made_again() {
    let Some(redis) = Redis::start() else { return };
    let (first, second) = (node(&redis, &[]), node(&redis, &[]));
    let mut remote = second.connect();
    remote.subscribe(&["t"]);
    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.trim().parse::<u32>().unwrap_or(0) >= 2, "{killed}");
    let mut publisher = first.connect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.publish(&["t"], "again");
        if remote.try_recv(Duration::from_millis(500)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not subscribed again: {:#?}",
            second.log()
        );
    }
}

#[test]
fn a_bad_replicator_url_is_refused_at_start_naming_the_problem() {
    for (url, says) in [
        ("tcp://127.0.0.1:1446", "scheme \"tcp\""),
        ("redis://:hunter2@127.0.0.1:x", "port \"x\""),
        ("redis://127.0.0.1?prefix=a b", "prefix"),
        (
            "redis-cluster://127.0.0.1:7000",
            "Redis Cluster is not supported yet",
        ),
    ] {
        let out = support::mist()
            .args([
                "--server",
                "--listeners",
                "tcp://127.0.0.1:0",
                "--replicator",
                url,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
