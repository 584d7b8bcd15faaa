//! What is particular to TCP, over real connections to the real `mist`
//! binary: byte-level framing, half-closed connections, slow readers. The
//! protocol rules shared by every transport are in `transports.rs`.

mod support;

use mist_proto::Request;
use std::io::Write;
use std::time::Duration;
use support::Server;

#[test]
fn ping_answers_pong() {
    let server = Server::start();
    let mut client = server.connect();
    client.send_raw(b"{\"command\":\"ping\"}\n");
    let reply = client.recv();
    assert_eq!(
        (reply.command.as_str(), reply.data.as_deref()),
        ("ping", Some("pong"))
    );
}

#[test]
fn delivery_is_exact_once_in_order_and_never_back_to_the_publisher() {
    let server = Server::start();
    let mut a = server.connect();
    let mut b = server.connect();
    for client in [&mut a, &mut b] {
        client.subscribe(&["x"]);
        client.subscribe(&["y"]);
        client.subscribe(&["y", "x"]);
    }
    for i in 0..50 {
        assert_eq!(a.publish(&["x", "y"], &i.to_string()), [], "not to itself");
    }
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(b.deliveries(), expected);
    let delivered = b.publish(&["y"], "back");
    assert_eq!(delivered, []);
    let got = a.sync();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tags.as_deref(), Some(&["y".to_string()][..]));
}

#[test]
fn subscriptions_are_sets_and_unsubscribe_is_exact() {
    let server = Server::start();
    let mut sub = server.connect();
    let mut publisher = server.connect();
    sub.subscribe(&["b", "a"]);
    sub.subscribe(&["a", "b", "a"]);
    sub.subscribe(&["c"]);
    sub.send(Request::new("list"));
    let list = sub.recv();
    assert_eq!(list.data.as_deref(), Some("a,b c"));
    assert_eq!(
        list.subscriptions,
        Some(vec![vec!["a".into(), "b".into()], vec!["c".into()]])
    );
    sub.send(Request::new("unsubscribe").tags(["a"]));
    sub.send(Request::new("unsubscribe").tags(["nothing", "held"]));
    sub.send(Request::new("unsubscribe").tags(["b", "a"]));
    assert_eq!(
        sub.sync(),
        [],
        "unsubscribe is silent, even for sets not held"
    );
    publisher.publish(&["a", "b"], "gone");
    publisher.publish(&["c", "a"], "kept");
    assert_eq!(sub.deliveries(), ["kept"]);
}

#[test]
fn frames_split_across_writes_crlf_and_pipelining() {
    let server = Server::start();
    let mut client = server.connect();
    let lines = b"{\"command\":\"subscribe\",\"tags\":[\"s\"]}\r\n\r\n{\"command\":\"list\"}\r\n{\"command\":\"ping\"}\n";
    for byte in lines {
        client.send_raw(&[*byte]);
        client.stream().flush().unwrap();
    }
    assert_eq!(client.recv().data.as_deref(), Some("s"));
    assert_eq!(client.recv().data.as_deref(), Some("pong"));
}

#[test]
fn every_failure_is_answered_and_the_connection_stays_usable() {
    let server = Server::start_with(&["--max-line", "1000", "--max-tags", "3"]);
    let mut client = server.connect();
    let cases: Vec<(&[u8], &str)> = vec![
        (
            b"{\"command\":\"bogus\",\"tags\":[\"t\"]}\n",
            "Unknown Command",
        ),
        (
            b"{\"command\":\"subscribe\"}\n",
            "missing tags: subscribe needs",
        ),
        (
            b"{\"command\":\"unsubscribe\",\"tags\":[]}\n",
            "missing tags: unsubscribe needs",
        ),
        (
            b"{\"command\":\"publish\",\"data\":\"x\"}\n",
            "missing tags: publish needs",
        ),
        (
            b"{\"command\":\"publish\",\"tags\":[\"a\",\"b\",\"c\",\"d\"]}\n",
            "too many tags: at most 3",
        ),
        (b"<html>\n", "invalid JSON: expected value at column 1"),
        (b"[\"ping\"]\n", "invalid message: expected a JSON object"),
        (
            b"{\"command\":true}\n",
            "invalid message: invalid type: boolean `true`, expected a string",
        ),
        (
            b"{\"command\":\"publish\",\"tags\":[1]}\n",
            "invalid message: invalid type: integer `1`",
        ),
        (
            b"{\"tags\":[\"a\"]}\n",
            "invalid message: missing field `command`",
        ),
        (b"{\"command\":\"p\xffng\"}\n", "invalid UTF-8"),
    ];
    for (line, expected) in cases {
        client.send_raw(line);
        let error = client.error();
        assert!(
            error.contains(expected),
            "{:?}: {error}",
            String::from_utf8_lossy(line)
        );
    }
    // An oversized line is refused as soon as it crosses the limit.
    client.send_raw(b"{\"command\":\"publish\",\"tags\":[\"t\"],\"data\":\"");
    client.send_raw(&[b'x'; 5000]);
    let error = client.error();
    assert!(
        error.contains("line too long: the limit is 1000 bytes"),
        "{error}"
    );
    client.send_raw(&[b'x'; 5000]);
    client.send_raw(b"\"}\n");
    assert_eq!(
        client.sync(),
        [],
        "the rest of the long line is skipped silently"
    );
    client.send_raw(b"{\"command\":\"bogus\",\"tags\":[\"t\"],\"data\":\"d\"}\n");
    let reply = client.recv();
    assert_eq!(reply.command, "bogus", "the failed command is echoed");
    assert_eq!(reply.tags, Some(vec!["t".to_string()]));
}

#[test]
fn a_misbehaving_client_does_not_disturb_others() {
    let mut server = Server::start_with(&["--max-line", "4096"]);
    let mut sub = server.connect();
    let mut publisher = server.connect();
    sub.subscribe(&["t"]);
    let mut vandal = server.connect();
    vandal.send_raw(b"\xff\xfe\x00garbage\n{\"command\":");
    vandal.send_raw(&[b'{'; 100_000]);
    vandal.send_raw(b"\n]]]\n");
    drop(vandal);
    // A client that vanishes mid-line.
    let mut halfway = server.connect();
    halfway.send_raw(b"{\"command\":\"subscribe\",\"tags\":[\"t\"");
    drop(halfway);
    publisher.publish(&["t"], "still here");
    assert_eq!(sub.deliveries(), ["still here"]);
    assert!(server.is_running());
}

#[test]
fn closing_the_sending_side_still_flushes_replies() {
    let server = Server::start();
    let mut client = server.connect();
    client.send_raw(b"{\"command\":\"subscribe\",\"tags\":[\"a\"]}\n{\"command\":\"list\"}\n{\"command\":\"ping\"}\n");
    client.stream().shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.recv().data.as_deref(), Some("a"));
    assert_eq!(client.recv().data.as_deref(), Some("pong"));
}

/// A subscriber that never reads must not slow down anyone else, and the
/// server must not buffer without bound for it.
#[test]
fn a_stalled_subscriber_loses_messages_but_nobody_waits_for_it() {
    let server = Server::start_with(&["--max-outbox-bytes", "1048576"]);
    let mut stalled = server.connect();
    stalled.subscribe(&["flood"]);
    let mut fast = server.connect();
    fast.subscribe(&["flood"]);
    let mut publisher = server.connect();
    let payload = "x".repeat(1000);
    let line = Request::new("publish")
        .tags(["flood"])
        .data(&payload)
        .to_line();
    let rss_before = server.rss_kib();
    const ROUNDS: usize = 300;
    const PER_ROUND: usize = 200;
    let batch = line.repeat(PER_ROUND);
    let mut received = 0;
    for _ in 0..ROUNDS {
        publisher.send_raw(&batch);
        publisher.sync();
        let got = fast.deliveries();
        assert_eq!(
            got.len(),
            PER_ROUND,
            "the fast subscriber gets every message"
        );
        assert!(got.iter().all(|d| d == &payload));
        received += got.len();
    }
    assert_eq!(received, ROUNDS * PER_ROUND);
    let published_mib = ROUNDS * PER_ROUND * line.len() / (1024 * 1024);
    let growth_mib = server.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < 24,
        "{published_mib} MiB went to a stalled subscriber; the server grew by {growth_mib} MiB"
    );
    // Once it reads again, the stalled subscriber gets what fit, oldest first,
    // and its connection still works.
    stalled
        .stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let kept = stalled.deliveries();
    assert!(
        !kept.is_empty() && kept.len() < ROUNDS * PER_ROUND / 2,
        "kept {}",
        kept.len()
    );
    publisher.publish(&["flood"], "after");
    assert_eq!(stalled.deliveries(), ["after"]);
}

#[test]
fn connections_beyond_the_limit_are_told_and_closed() {
    let server = Server::start_with(&["--max-connections", "2"]);
    let mut first = server.connect();
    first.sync();
    let mut second = server.connect();
    second.sync();
    let mut third = server.connect();
    let frames = third.until_closed();
    assert_eq!(
        frames[0].error.as_deref(),
        Some("too many connections: the server takes at most 2; try again later")
    );
    drop(first);
    // Room again once a client leaves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut next = server.connect();
        next.send(Request::new("ping"));
        let reply = next.recv();
        if reply.error.is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no room after a client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A publisher's reader is faster than a subscriber's writer; a subscriber
/// that reads as fast as it can must still get every message: the publisher
/// is paced, not the deliveries dropped. The outbox is kept small, so
/// without pacing most of these would be lost.
fn a_subscriber_that_keeps_up_loses_nothing(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-outbox-frames", "64"]);
    let mut subscriber = server.connect();
    subscriber.subscribe(&["fast"]);
    let mut publisher = server.connect();
    const MESSAGES: usize = 200_000;
    const PER_WRITE: usize = 2_000;
    let line = Request::new("publish")
        .tags(["fast"])
        .data("0123456789abcdef")
        .to_line();
    let reader = std::thread::spawn(move || {
        subscriber.skim(MESSAGES, "{\"command\":\"publish\"");
        subscriber.sync()
    });
    let batch = line.repeat(PER_WRITE);
    for _ in 0..MESSAGES / PER_WRITE {
        publisher.send_raw(&batch);
    }
    publisher.sync();
    assert!(
        reader.join().unwrap().is_empty(),
        "nothing beyond the count"
    );
    let stats = support::http(server.http(), "GET", "/stats", &[], b"").json();
    assert_eq!(stats["published"], MESSAGES, "{runtime}: {stats}");
    assert_eq!(stats["delivered"], MESSAGES, "{runtime}: {stats}");
    assert_eq!(stats["dropped"], 0, "{runtime}: {stats}");
}

#[test]
fn a_subscriber_that_keeps_up_loses_nothing_on_async_std() {
    a_subscriber_that_keeps_up_loses_nothing("async-std");
}

#[test]
fn a_subscriber_that_keeps_up_loses_nothing_on_smol() {
    a_subscriber_that_keeps_up_loses_nothing("smol");
}
