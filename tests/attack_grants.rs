//! Issue 8, finding 7: nothing reaches a client that its token was not
//! granted. A reader granted only `news`, subscribed to `news`, used to
//! receive a message tagged `news` and `secret`, tag and data included. A
//! message now reaches a registered token only if every tag of it was
//! granted, on every transport; the admin and open servers are unaffected.

mod support;

use support::{register, EventStream, Server, Transport};

const ADMIN: &str = "admin-token";

fn a_message_reaches_only_tokens_granted_all_its_tags(runtime: &str) {
    let server = Server::start_on(runtime, &["--authenticator", "memory://", "--token", ADMIN]);
    register(&server, ADMIN, "reader-token", &["news"]);
    let mut readers: Vec<_> = [Transport::Tcp, Transport::Ws, Transport::HttpWs]
        .into_iter()
        .map(|transport| {
            let mut reader = server.client_with_token(transport, "reader-token");
            reader.subscribe(&["news"]);
            reader
        })
        .collect();
    let mut events = EventStream::open(
        server.http(),
        "/subscribe?tags=news&x-auth-token=reader-token",
    );
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.subscribe(&["news"]);
    let mut publisher = server.client_with_token(Transport::Tcp, ADMIN);
    publisher.publish(&["news", "secret"], "the secret");
    publisher.publish(&["news"], "the news");
    for reader in &mut readers {
        assert_eq!(reader.deliveries(), ["the news"], "{runtime}");
    }
    let event = events.next();
    assert_eq!(event.data.as_deref(), Some("the news"), "{runtime}: SSE");
    assert_eq!(
        admin.deliveries(),
        ["the secret", "the news"],
        "{runtime}: the admin receives everything"
    );
}

on_every_runtime!(a_message_reaches_only_tokens_granted_all_its_tags);
