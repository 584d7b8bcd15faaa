//! Issue 8, finding 4: HTTP requests are bounded while they stream in.
//!
//! A request head is capped in bytes as it arrives (before, a header line
//! without end grew the server 272 MiB), a head or a body that does not
//! arrive in time is answered 408 and closed, an idle keep-alive connection
//! is closed, and HTTP connections count against `--max-connections`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{http, Bystander, Server, TIMEOUT};

/// Everything the server sends until it closes the connection.
fn until_closed(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn a_head_without_end_is_cut_off(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let bystander = Bystander::start(&server, None, Duration::from_millis(20));
    let rss_before = server.rss_kib();
    let mut answers = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.http()).unwrap();
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: mist\r\nX-Endless: ")
            .unwrap();
        // 1 MiB of one header line; the server stops reading long before.
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if stream.write_all(&junk).is_err() {
                break;
            }
        }
        answers.push(until_closed(&mut stream));
    }
    let grown_kib = server.rss_kib().saturating_sub(rss_before);
    let served = bystander.finish();
    for answer in &answers {
        // The answer may be lost to a reset when the client was still writing.
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
            "{runtime}: {answer}"
        );
    }
    assert!(
        answers
            .iter()
            .any(|a| a.contains("request head too large: at most 8192 bytes")),
        "{runtime}: {answers:?}"
    );
    assert!(
        grown_kib < 8 * 1024,
        "{runtime}: 20 endless heads grew the server {grown_kib} KiB"
    );
    assert!(served.slowest < Duration::from_millis(500), "{served:?}");
}

fn slow_heads_and_bodies_time_out(runtime: &str) {
    let server = Server::start_on(runtime, &["--header-timeout", "1", "--body-timeout", "1"]);
    // A head that stops halfway.
    let started = Instant::now();
    let mut head = TcpStream::connect(server.http()).unwrap();
    head.write_all(b"GET /ping HTTP/1.1\r\nHost: mi").unwrap();
    let answer = until_closed(&mut head);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{runtime}: {answer}");
    assert!(answer.contains("request head timed out: send it within 1 s"));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that stops halfway.
    let mut body = TcpStream::connect(server.http()).unwrap();
    body.write_all(
        b"POST /publish HTTP/1.1\r\nHost: mist\r\nContent-Length: 100\r\n\r\n{\"tags\":[\"a\"",
    )
    .unwrap();
    let answer = until_closed(&mut body);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{runtime}: {answer}");
    assert!(answer.contains("timed out"), "{runtime}: {answer}");

    // A keep-alive connection that asks for nothing more.
    let mut idle = TcpStream::connect(server.http()).unwrap();
    idle.write_all(b"GET /ping HTTP/1.1\r\nHost: mist\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let answer = until_closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{runtime}: {answer}");
    assert!(
        answer.ends_with("pong"),
        "no 408 after a complete answer: {answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn http_connections_count_against_the_limit(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-connections", "4"]);
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(server.http()).unwrap();
            stream
                .write_all(b"GET /ping HTTP/1.1\r\nHost: mist\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    let refused = http(server.http(), "GET", "/ping", &[], b"");
    assert_eq!(refused.status, 503, "{runtime}");
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("too many connections: the server takes at most 4"));
    let mut tcp = server.connect();
    assert!(tcp.until_closed()[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("too many connections"));
    // One leaves: another gets in.
    held.pop();
    let deadline = Instant::now() + TIMEOUT;
    while http(server.http(), "GET", "/ping", &[], b"").status != 200 {
        assert!(Instant::now() < deadline, "{runtime}: the slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

on_every_runtime!(
    a_head_without_end_is_cut_off,
    slow_heads_and_bodies_time_out,
    http_connections_count_against_the_limit
);
