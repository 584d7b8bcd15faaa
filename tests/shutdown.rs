//! SIGINT/SIGTERM: stop accepting, flush what is queued, close, exit 0.

mod support;

use std::time::Duration;
use support::{Server, Transport};

fn queued_messages_are_flushed_before_exit(runtime: &str) {
    let mut server = Server::start_on(
        runtime,
        &["--max-outbox-bytes", "67108864", "--shutdown-grace", "60"],
    );
    // A subscriber that does not read yet: what is published piles up in its
    // outbox, beyond what the socket buffers hold.
    let mut subscriber = server.client(Transport::Tcp);
    subscriber.subscribe(&["q"]);
    let mut publisher = server.client(Transport::Tcp);
    let data = "x".repeat(10 * 1024);
    const MESSAGES: usize = 2000;
    for _ in 0..MESSAGES / 100 {
        for _ in 0..100 {
            publisher.send(mist_proto::Request::new("publish").tags(["q"]).data(&data));
        }
        publisher.sync();
    }
    server.terminate();
    // Everything queued arrives, then the server closes the connection...
    let frames = subscriber.until_closed();
    assert_eq!(
        frames.len(),
        MESSAGES,
        "every queued message is delivered before closing"
    );
    assert!(frames
        .iter()
        .all(|f| f.data.as_deref() == Some(data.as_str())));
    // ...and exits cleanly.
    assert_eq!(server.exit_code(Duration::from_secs(30)), Some(0));
    let log = server.log().join("\n");
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn queued_messages_are_flushed_before_exit_on_async_std() {
    queued_messages_are_flushed_before_exit("async-std");
}

#[test]
fn queued_messages_are_flushed_before_exit_on_smol() {
    queued_messages_are_flushed_before_exit("smol");
}

#[test]
fn an_idle_server_exits_at_once() {
    // A grace period far longer than the test may wait.
    let mut server = Server::start_with(&["--shutdown-grace", "60"]);
    let _idle = server.client(Transport::Ws);
    let _idle_tcp = server.connect();
    let started = std::time::Instant::now();
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "nothing was queued, so it did not wait for the grace period: {:?}",
        started.elapsed()
    );
}
