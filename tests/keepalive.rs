//! TCP keepalive on accepted connections, so a peer that stops answering (a
//! host gone, a cable cut) is closed and its outbox freed. Read from the
//! kernel's own table, /proc/net/tcp: timer kind 2 is keepalive.

mod support;

use std::time::Duration;
use support::{Server, Transport};

/// The timer kind of the server side of the established connection on `port`.
fn timer_kind(port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
        let established = fields[3] == "01";
        (local_port == port && established).then(|| u8::from_str_radix(&fields[5][..2], 16).ok())?
    })
}

/// The timer kind once the connection is idle: right after traffic the
/// kernel may show its retransmit timer (1) until the peer's ACK arrives.
fn idle_timer_kind(port: u16) -> Option<u8> {
    for _ in 0..40 {
        match timer_kind(port) {
            Some(1) => std::thread::sleep(Duration::from_millis(50)),
            other => return other,
        }
    }
    timer_kind(port)
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn keepalive_is_on_by_default_and_can_be_turned_off(runtime: &str) {
    // No --keepalive: the default.
    let server = Server::start_on(runtime, &[]);
    let mut tcp = server.client(Transport::Tcp);
    tcp.sync();
    let mut ws = server.client(Transport::Ws);
    ws.sync();
    assert_eq!(
        idle_timer_kind(port_of(&server.addr)),
        Some(2),
        "keepalive on the TCP listener"
    );
    assert_eq!(
        idle_timer_kind(port_of(&server.listeners["ws"])),
        Some(2),
        "and on the ws one"
    );

    let off = Server::start_on(runtime, &["--keepalive", "0"]);
    let mut tcp = off.client(Transport::Tcp);
    tcp.sync();
    assert_eq!(
        idle_timer_kind(port_of(&off.addr)),
        Some(0),
        "no timer when turned off"
    );
}

#[test]
fn keepalive_on_async_std() {
    keepalive_is_on_by_default_and_can_be_turned_off("async-std");
}

#[test]
fn keepalive_on_smol() {
    keepalive_is_on_by_default_and_can_be_turned_off("smol");
}

/// A WebSocket client that answers the server's pings stays; one that sends
/// nothing at all for two ping intervals is closed.
fn websocket_pings(runtime: &str, transport: Transport) {
    let server = Server::start_on(runtime, &["--ws-keepalive", "1"]);
    let mut lively = server.client(transport);
    let mut silent = server.client(transport);
    silent.sync();
    // The lively client reads (and so answers pings) for three intervals.
    let until = std::time::Instant::now() + Duration::from_millis(3500);
    while std::time::Instant::now() < until {
        assert!(lively.try_recv(Duration::from_millis(200)).is_none());
    }
    assert_eq!(lively.sync(), [], "still connected");
    // A busy subscriber that only reads is pinged all the same, answers, and
    // stays: deliveries going out do not prove the client is there.
    let mut busy = server.client(transport);
    busy.subscribe(&["busy"]);
    let mut publisher = server.client(Transport::Tcp);
    let mut received = 0;
    for i in 0..35 {
        publisher.publish(&["busy"], &i.to_string());
        while busy.try_recv(Duration::from_millis(100)).is_some() {
            received += 1;
        }
    }
    assert_eq!(received, 35);
    assert_eq!(busy.sync(), [], "the busy subscriber is still connected");
    // The silent one read nothing meanwhile: the server has closed it.
    let frames = silent.until_closed();
    assert!(frames.is_empty(), "{frames:?}");
}

#[test]
fn websocket_pings_on_async_std() {
    websocket_pings("async-std", Transport::Ws);
    websocket_pings("async-std", Transport::HttpWs);
}

#[test]
fn websocket_pings_on_smol() {
    websocket_pings("smol", Transport::Ws);
    websocket_pings("smol", Transport::HttpWs);
}
