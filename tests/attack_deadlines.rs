//! Issue 8, finding 5: no client is held forever before it is in.
//!
//! A TCP client that must authenticate has `--auth-timeout` to do so, and
//! before it has, a line may be only as long as an `auth` line needs; a
//! `ws://` client has `--handshake-timeout` for its handshake. Before, such
//! clients were held forever and each could pin a 1 MiB partial line. A
//! flood of idle sockets neither keeps normal clients out nor floods the log.

mod support;

use mist_proto::Request;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{http, Server, TIMEOUT};

const ADMIN: &str = "admin-token";

fn secured(runtime: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--authenticator", "memory://", "--token", ADMIN];
    args.extend_from_slice(extra);
    Server::start_on(runtime, &args)
}

fn a_client_that_never_authenticates_is_closed(runtime: &str) {
    let server = secured(runtime, &["--auth-timeout", "1"]);
    let started = Instant::now();
    let mut silent = server.connect();
    let mut partial = server.connect();
    partial.send_raw(b"{\"command\":\"auth\",\"da");
    for client in [&mut silent, &mut partial] {
        let frames = client.until_closed();
        assert_eq!(frames.len(), 1, "{runtime}: {frames:?}");
        assert_eq!(
            frames[0].error.as_deref(),
            Some("authentication timed out: send {\"command\":\"auth\",\"data\":\"TOKEN\"} within 1 s of connecting")
        );
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4));
    // A client that authenticates in time stays.
    let mut prompt = server.connect();
    prompt.send(Request::new("auth").data(ADMIN));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(prompt.sync(), []);
}

fn before_authentication_a_line_is_short(runtime: &str) {
    let server = secured(runtime, &[]);
    let rss_before = server.rss_kib();
    // 40 clients each trying to hold most of a 1 MiB line.
    let mut clients: Vec<_> = (0..40).map(|_| server.connect()).collect();
    for client in &mut clients {
        let _ = client.stream().write_all(
            &[
                b"{\"command\":\"auth\",\"data\":\"".as_slice(),
                &[b'x'; 1000 * 1024],
            ]
            .concat(),
        );
    }
    for client in &mut clients {
        let frames = client.until_closed();
        assert_eq!(
            frames[0].error.as_deref(),
            Some("line too long: before authentication a line may have at most 8192 bytes; send {\"command\":\"auth\",\"data\":\"TOKEN\"} first"),
            "{runtime}"
        );
    }
    let grown_mib = server.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 16,
        "{runtime}: 40 partial lines grew the server {grown_mib} MiB"
    );
    // An authenticated client may send long lines, even right behind `auth`.
    let mut subscriber = server.connect();
    subscriber.send(Request::new("auth").data(ADMIN));
    subscriber.subscribe(&["big"]);
    let mut publisher = server.connect();
    let big = "y".repeat(100 * 1024);
    let mut pipelined = Request::new("auth").data(ADMIN).to_line();
    pipelined.extend(Request::new("publish").tags(["big"]).data(&big).to_line());
    publisher.send_raw(&pipelined);
    assert_eq!(publisher.sync(), []);
    assert_eq!(subscriber.deliveries(), [big]);
}

fn a_websocket_handshake_must_come_in_time(runtime: &str) {
    let server = Server::start_on(runtime, &["--handshake-timeout", "1"]);
    let started = Instant::now();
    let mut silent = TcpStream::connect(&server.listeners["ws"]).unwrap();
    let mut partial = TcpStream::connect(&server.listeners["ws"]).unwrap();
    partial
        .write_all(b"GET /subscribe/websocket HTTP/1.1\r\nHost: mi")
        .unwrap();
    for (stream, answer) in [(&mut silent, ""), (&mut partial, "HTTP/1.1 408 ")] {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        assert!(
            String::from_utf8_lossy(&got).starts_with(answer),
            "{runtime}: {}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}

fn a_flood_of_idle_sockets_keeps_no_one_out(runtime: &str) {
    let server = secured(
        runtime,
        &[
            "--auth-timeout",
            "2",
            "--handshake-timeout",
            "2",
            "--header-timeout",
            "2",
        ],
    );
    let baseline = socket_count(&server);
    let mut idle = Vec::new();
    for _ in 0..150 {
        idle.push(TcpStream::connect(&server.addr).unwrap());
        idle.push(TcpStream::connect(&server.listeners["ws"]).unwrap());
        let mut partial = TcpStream::connect(server.http()).unwrap();
        partial.write_all(b"GET /ping HTTP/1.1\r\n").unwrap();
        idle.push(partial);
    }
    // A normal client gets in and is served at once.
    let started = Instant::now();
    let mut normal = server.connect();
    normal.send(Request::new("auth").data(ADMIN));
    normal.sync();
    assert!(started.elapsed() < Duration::from_secs(1), "{runtime}");
    // The idle ones are gone after their deadlines.
    let deadline = Instant::now() + Duration::from_secs(8);
    while socket_count(&server) > baseline + 2 {
        assert!(
            Instant::now() < deadline,
            "{runtime}: {} sockets still open",
            socket_count(&server)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let noisy = server
        .log()
        .into_iter()
        .filter(|l| l.contains("[WARN]") || l.contains("[ERROR]"))
        .count();
    assert!(noisy <= 6, "{runtime}: {noisy} warnings for one flood");
}

/// Accepted sockets open now, from `/stats` (the admin's).
fn socket_count(server: &Server) -> u64 {
    let stats = http(
        server.http(),
        "GET",
        "/stats",
        &[("X-Auth-Token", ADMIN)],
        b"",
    );
    stats.json()["sockets"].as_u64().unwrap()
}

on_every_runtime!(
    a_client_that_never_authenticates_is_closed,
    before_authentication_a_line_is_short,
    a_websocket_handshake_must_come_in_time,
    a_flood_of_idle_sockets_keeps_no_one_out
);
