//! `GET /stats` and `GET /metrics` count what a scripted run did.

mod support;

use support::{http, Server, Transport};

fn scripted_run_adds_up(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-outbox-bytes", "262144"]);
    let mut stalled = server.client(Transport::Tcp);
    stalled.subscribe(&["load"]);
    let mut fast = server.client(Transport::Ws);
    fast.subscribe(&["load"]);
    let mut publisher = server.client(Transport::Tcp);
    // 200 messages of 64 KiB: far more than a stalled reader's socket buffers
    // and its 256 KiB outbox hold, so some deliveries to it must be dropped.
    let data = "x".repeat(64 * 1024);
    for _ in 0..200 {
        // One at a time, so the fast subscriber is never more than one behind.
        publisher.publish(&["load"], &data);
        assert_eq!(
            fast.deliveries().len(),
            1,
            "the fast subscriber gets everything"
        );
    }
    let stats = http(server.http(), "GET", "/stats", &[], b"").json();
    assert_eq!(stats["published"], 200);
    assert_eq!(stats["subscriptions"], 2);
    let (delivered, dropped) = (
        stats["delivered"].as_u64().unwrap(),
        stats["dropped"].as_u64().unwrap(),
    );
    assert_eq!(delivered + dropped, 400, "{stats}");
    assert!(dropped > 0 && delivered >= 200, "{stats}");
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["transports"]["tcp"]["open"], 2);
    assert_eq!(stats["transports"]["websocket"]["open"], 1);

    let metrics = http(server.http(), "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let value = |name: &str| -> u64 {
        metrics
            .body
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} in {}", metrics.body))
            .parse()
            .unwrap()
    };
    assert_eq!(value("mist_messages_published_total"), 200);
    assert_eq!(value("mist_messages_delivered_total"), delivered);
    assert_eq!(value("mist_messages_dropped_total"), dropped);
    assert_eq!(value("mist_connections{transport=\"tcp\"}"), 2);
    assert!(metrics
        .body
        .contains("# TYPE mist_messages_dropped_total counter"));
    drop(stalled);
}

#[test]
fn scripted_run_adds_up_on_async_std() {
    scripted_run_adds_up("async-std");
}

#[test]
fn scripted_run_adds_up_on_smol() {
    scripted_run_adds_up("smol");
}
