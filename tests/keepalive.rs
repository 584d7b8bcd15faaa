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
    let server = Server::start_on(runtime, &["--keepalive", "30"]);
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
