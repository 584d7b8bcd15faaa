//! Issue 8, finding 11: what a connection costs while it waits.
//!
//! An idle WebSocket client cost 142 KiB (the WebSocket library's default
//! buffers), a TCP client kept its burst-sized read buffer forever, and a
//! slow SSE client held batches beyond its outbox bound. Now an idle
//! WebSocket costs at most 16 KiB, read buffers shrink once a burst is
//! over, and an SSE stream's batches count in its outbox until the client
//! takes them.

mod support;

use mist_proto::Request;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use support::{http, Client, Server, Transport};

const CLIENTS: usize = 1500;

/// Server memory per client, in KiB, for `CLIENTS` clients made by `open`
/// on a server of their own.
fn per_client_kib(runtime: &str, open: impl Fn(&Server, usize) -> Client) -> u64 {
    let server = Server::start_on(runtime, &[]);
    // Warm up the allocator, the runtime and the server's tables first.
    let warm: Vec<Client> = (0..100).map(|i| open(&server, i)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss_kib();
    let clients: Vec<Client> = (0..CLIENTS).map(|i| open(&server, i)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown = server.rss_kib().saturating_sub(before);
    drop((warm, clients));
    grown / CLIENTS as u64
}

fn an_idle_websocket_costs_little(runtime: &str) {
    for transport in [Transport::Ws, Transport::HttpWs] {
        let kib = per_client_kib(runtime, |server, i| {
            let mut client = server.client(transport);
            client.subscribe(&[&format!("idle-{i}")]);
            client
        });
        println!("{runtime} {transport:?}: {kib} KiB per idle WebSocket client");
        assert!(
            kib <= 16,
            "{runtime} {transport:?}: {kib} KiB per idle client"
        );
    }
}

fn read_buffers_shrink_after_a_burst(runtime: &str) {
    // 60 KiB of publishes nobody receives, so nothing is sent back.
    let burst: Vec<u8> = Request::new("publish")
        .tags(["nobody"])
        .data("x".repeat(1000))
        .to_line()
        .repeat(60);
    let kib = per_client_kib(runtime, |server, _| {
        let mut client = server.connect();
        client.stream().write_all(&burst).unwrap();
        client.sync();
        client
    });
    println!("{runtime}: {kib} KiB per TCP client after its burst");
    assert!(kib <= 16, "{runtime}: {kib} KiB per client after its burst");
}

fn a_slow_sse_client_is_held_to_its_outbox(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-outbox-bytes", "1048576"]);
    // An SSE stream and a TCP subscriber, both opened and never read: the
    // SSE one may hold no more than the TCP one, whose outbox is the bound.
    let mut sse = TcpStream::connect(server.http()).unwrap();
    write!(
        sse,
        "GET /subscribe?tags=flood HTTP/1.1\r\nHost: mist\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut tcp = server.connect();
    tcp.subscribe(&["flood"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut publisher = server.connect();
    let data = "y".repeat(64 * 1024);
    for _ in 0..10 {
        let lines: Vec<u8> = Request::new("publish")
            .tags(["flood"])
            .data(&data)
            .to_line()
            .repeat(50);
        publisher.send_raw(&lines);
        publisher.sync();
    }
    let stats = http(server.http(), "GET", "/stats", &[], b"").json();
    let delivered = stats["delivered"].as_u64().unwrap();
    let dropped = stats["dropped"].as_u64().unwrap();
    assert_eq!(delivered + dropped, 1000, "{runtime}: {stats}");
    // Each took what its outbox and its socket's kernel buffers hold; the
    // SSE stream used to take 8 batches more (here 8 MiB, 128 messages).
    let to_tcp = tcp.deliveries().len() as u64;
    let to_sse = delivered - to_tcp;
    println!(
        "{runtime}: stalled subscribers took {to_sse} (SSE) and {to_tcp} (TCP) messages of 64 KiB"
    );
    assert!(
        to_sse <= to_tcp + 24,
        "{runtime}: the stalled SSE stream took {to_sse} messages, the TCP subscriber {to_tcp}"
    );
    drop(sse);
}

on_every_runtime!(
    an_idle_websocket_costs_little,
    read_buffers_shrink_after_a_burst,
    a_slow_sse_client_is_held_to_its_outbox,
);
