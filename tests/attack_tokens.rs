//! Issue 8, finding 6: tokens cannot be guessed at speed.
//!
//! On a connection that has authenticated, `auth` gets one answer whatever
//! the token (before, right and wrong ones were told apart, 3,000 guesses in
//! 10 ms). Failed authentications are limited per client address: after a
//! few, its attempts are refused unchecked, on every transport, and this is
//! logged once, never with the token.

mod support;

use mist_proto::Request;
use std::time::Duration;
use support::{http, register, Server, Transport};

const ADMIN: &str = "the-admin-token";

fn secured(runtime: &str) -> Server {
    Server::start_on(runtime, &["--authenticator", "memory://", "--token", ADMIN])
}

fn an_open_connection_tells_no_token_from_another(runtime: &str) {
    let server = secured(runtime);
    register(&server, ADMIN, "reader-token", &["news"]);
    let mut client = server.client_with_token(Transport::Tcp, "reader-token");
    let mut answers = Vec::new();
    for guess in ["reader-token", ADMIN, "wrong-guess", ""] {
        client.send(Request::new("auth").data(guess));
        answers.push(client.recv());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(
        answers[0].error.as_deref(),
        Some("already authenticated: a connection keeps the token it started with")
    );
    assert_eq!(client.sync(), [], "{runtime}: the connection stays usable");
}

fn failed_authentications_are_throttled_per_address(runtime: &str) {
    let server = secured(runtime);
    register(&server, ADMIN, "reader-token", &["news"]);
    for i in 0..5 {
        let mut guesser = server.connect();
        guesser.send(Request::new("auth").data(format!("guess-number-{i}")));
        let frames = guesser.until_closed();
        assert_eq!(
            frames[0].error.as_deref(),
            Some("authentication failed: the token is not valid"),
            "{runtime}: guess {i}"
        );
    }
    // Now even the right token is not checked from this address.
    let mut late = server.connect();
    late.send(Request::new("auth").data("reader-token"));
    let refusal = late.until_closed()[0].error.clone().unwrap();
    assert!(
        refusal.starts_with("too many failed authentications from this address: try again in "),
        "{runtime}: {refusal}"
    );
    assert_eq!(
        server.websocket_status(Transport::Ws, Some("reader-token")),
        429
    );
    assert_eq!(
        server.websocket_status(Transport::HttpWs, Some("reader-token")),
        429
    );
    let publish = http(
        server.http(),
        "POST",
        "/publish",
        &[("X-Auth-Token", "reader-token")],
        br#"{"tags":["news"],"data":"x"}"#,
    );
    assert_eq!(publish.status, 429, "{runtime}: {}", publish.body);
    // Logged once, and no token ever.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    let throttled: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("too many failed authentications"))
        .collect();
    assert_eq!(throttled.len(), 1, "{runtime}: {throttled:?}");
    for secret in ["guess-number", "reader-token", ADMIN] {
        assert!(
            !log.iter().any(|l| l.contains(secret)),
            "{runtime}: the log shows {secret}"
        );
    }
}

on_every_runtime!(
    an_open_connection_tells_no_token_from_another,
    failed_authentications_are_throttled_per_address
);
