//! One broker across shards: with `--shards 4` consecutive clients land on
//! different shards, and everything a client sees must be as if there were
//! one: deliveries (once each, never to the publisher, in order), `who`,
//! `listall`, `/stats`, and admin changes reaching connections on every
//! shard.

mod support;

use mist_proto::Request;
use support::{http, register, Server, Transport};

const ADMIN: &str = "s3cret-admin";

fn a_publish_reaches_subscribers_on_every_shard_once_and_in_order(runtime: &str) {
    let server = Server::start_on(runtime, &["--shards", "4"]);
    // Eight subscribers: two on each shard, each with two matching
    // subscriptions, so once-per-connection delivery is at stake too.
    let mut subscribers: Vec<_> = (0..8).map(|_| server.connect()).collect();
    for s in &mut subscribers {
        s.subscribe(&["news"]);
        s.subscribe(&["news", "world"]);
    }
    let mut publisher = server.connect();
    publisher.subscribe(&["news"]);
    for i in 0..50 {
        publisher.send(
            Request::new("publish")
                .tags(["news", "world"])
                .data(i.to_string()),
        );
    }
    assert_eq!(publisher.sync(), [], "{runtime}: never its own publishes");
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    for (n, s) in subscribers.iter_mut().enumerate() {
        assert_eq!(s.deliveries(), expected, "{runtime}: subscriber {n}");
    }
    let mut observer = server.connect();
    observer.send(Request::new("who"));
    let who = observer.recv();
    assert_eq!(
        who.data.as_deref(),
        Some("10 connections, 9 subscribers"),
        "{runtime}: who counts every shard"
    );
    observer.send(Request::new("listall"));
    let all = observer.recv();
    assert_eq!(
        all.data.as_deref(),
        Some("news news,world"),
        "{runtime}: listall spans the shards"
    );
    let stats = http(server.http(), "GET", "/stats", &[], b"").json();
    assert_eq!(stats["connections"], 10, "{runtime}: {stats}");
    assert_eq!(stats["published"], 50, "{runtime}: {stats}");
    assert_eq!(stats["delivered"], 8 * 50, "{runtime}: {stats}");
}

fn admin_changes_reach_connections_on_every_shard(runtime: &str) {
    let server = Server::start_on(
        runtime,
        &[
            "--shards",
            "4",
            "--authenticator",
            "memory://",
            "--token",
            ADMIN,
        ],
    );
    register(&server, ADMIN, "reader", &["news", "sport"]);
    let mut readers: Vec<_> = (0..4)
        .map(|_| server.client_with_token(Transport::Tcp, "reader"))
        .collect();
    for r in &mut readers {
        r.subscribe(&["news"]);
        r.subscribe(&["sport"]);
    }
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    // Taking `sport` away ends those subscriptions on every shard, and the
    // admin's reply comes only once they have all ended.
    admin.send(Request::new("unset").tags(["sport"]).data("reader"));
    assert_eq!(admin.sync(), [], "{runtime}");
    for (n, r) in readers.iter_mut().enumerate() {
        let told = r.sync();
        assert_eq!(told.len(), 1, "{runtime}: reader {n} is told: {told:?}");
        assert!(
            told[0].error.as_deref().unwrap().contains("revoked"),
            "{runtime}: {told:?}"
        );
    }
    admin.publish(&["sport"], "gone");
    admin.publish(&["news"], "kept");
    for r in &mut readers {
        assert_eq!(r.deliveries(), ["kept"], "{runtime}");
    }
    // Unregistering the token closes its connections on every shard.
    admin.send(Request::new("unregister").data("reader"));
    assert_eq!(admin.sync(), [], "{runtime}");
    for (n, r) in readers.iter_mut().enumerate() {
        let frames = r.until_closed();
        assert!(
            frames.iter().any(|f| f
                .error
                .as_deref()
                .is_some_and(|e| e.contains("unregistered"))),
            "{runtime}: reader {n} got {frames:?}"
        );
    }
}

fn shards_must_be_between_1_and_64(runtime: &str) {
    for bad in ["0", "65"] {
        let output = support::mist()
            .args(["--server", "--runtime", runtime, "--shards", bad])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{runtime} --shards {bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("shards must be between 1 and 64"),
            "{stderr}"
        );
    }
}

#[test]
fn the_shard_count_is_a_config_key_too() {
    let dir = std::env::temp_dir().join(format!("mist-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mist.yaml");
    std::fs::write(&config, "shards: 65\n").unwrap();
    let output = support::mist()
        .args(["--server", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("shards must be between 1 and 64, not 65"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

on_every_runtime!(
    a_publish_reaches_subscribers_on_every_shard_once_and_in_order,
    admin_changes_reach_connections_on_every_shard,
    shards_must_be_between_1_and_64,
);
