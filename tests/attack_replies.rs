//! Issue 8, finding 2: a client's queued replies never exceed its outbox.
//!
//! A client sends thousands of `list` commands, each answered with a few
//! KiB, and reads nothing. Before the fix a 64 KiB write queued 15 times the
//! outbox bound. Now commands stop being applied once their replies would
//! not fit, the server stops reading that client, and the rest is applied as
//! it reads: every reply arrives, in order, and the server's memory stays
//! within the bound while a bystander is served.

mod support;

use mist_proto::Request;
use std::time::Duration;
use support::{Bystander, Client, Server, Transport, RUNTIMES};

const OUTBOX: usize = 256 * 1024;
const LISTS: usize = 2_500;
const SUBSCRIPTIONS: usize = 1_000;

/// A client holding 1,000 subscriptions, so each `list` reply is ~17 KiB.
fn lister(server: &Server, transport: Transport) -> Client {
    let mut client = server.client(transport);
    let lines: Vec<u8> = (0..SUBSCRIPTIONS)
        .flat_map(|i| {
            Request::new("subscribe")
                .tags([format!("subscription-{i:03}")])
                .to_line()
        })
        .collect();
    client.send_raw(&lines);
    client.sync();
    client
}

fn unread_replies_stay_within_the_outbox(runtime: &str, transport: Transport) {
    let outbox = OUTBOX.to_string();
    let server = Server::start_on(runtime, &["--max-outbox-bytes", &outbox]);
    let mut client = lister(&server, transport);
    let bystander = Bystander::start(&server, None, Duration::from_millis(20));
    let rss_before = server.rss_kib();
    // As many lines as fit in one WebSocket frame, or in a few TCP writes.
    let line = Request::new("list").to_line();
    let per_send = (1024 * 1024 - 1024) / line.len();
    let mut sent = 0;
    while sent < LISTS {
        let n = per_send.min(LISTS - sent);
        client.send_raw(&line.repeat(n));
        sent += n;
    }
    // Let the server do what it will with them, unread.
    std::thread::sleep(Duration::from_millis(1500));
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    let served = bystander.finish();
    assert!(served.pings > 10, "{runtime} {transport:?}: {served:?}");
    // Replies of ~17 KiB for 2,500 lists would be 42 MiB; the bound is 256
    // KiB. What the kernel's socket buffers hold is not the server's.
    println!("{runtime} {transport:?}: grew {grown_kib} KiB; bystander {served:?}");
    assert!(
        grown_kib < 24 * 1024,
        "{runtime} {transport:?}: the server grew {grown_kib} KiB for unread replies"
    );
    // Read: every reply comes, in order, none dropped.
    client.skim(LISTS, "{\"command\":\"list\",\"data\":\"subscription-000 ");
    assert_eq!(client.sync(), [], "{runtime} {transport:?}: nothing more");
}

#[test]
fn unread_replies_stay_within_the_outbox_on_every_runtime_and_transport() {
    for runtime in RUNTIMES {
        unread_replies_stay_within_the_outbox(runtime, Transport::Tcp);
    }
    // One WebSocket frame of lists, on the HTTP port's WebSocket.
    unread_replies_stay_within_the_outbox("smol", Transport::HttpWs);
}
