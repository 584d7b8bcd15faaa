//! The protocol on every runtime × transport: lines over TCP, WebSocket on the
//! `ws://` listener, and WebSocket on the HTTP listener. Each module below runs
//! the same specification against one combination.

mod support;

use support::{Client, Server, Transport};

fn start(runtime: &str) -> Server {
    Server::start_on(runtime, &["--max-tags", "3"])
}

fn seed_table(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let sets: [&[&str]; 3] = [
        &["onefish"],
        &["onefish", "twofish"],
        &["onefish", "twofish", "redfish"],
    ];
    let mut subscribers: Vec<Client> = sets
        .iter()
        .map(|tags| {
            let mut c = server.client(transport);
            c.subscribe(tags);
            c
        })
        .collect();
    let mut publisher = server.client(transport);
    for tags in sets {
        publisher.publish(tags, &tags.join("+"));
    }
    assert_eq!(
        subscribers[0].deliveries(),
        ["onefish", "onefish+twofish", "onefish+twofish+redfish"]
    );
    assert_eq!(
        subscribers[1].deliveries(),
        ["onefish+twofish", "onefish+twofish+redfish"]
    );
    assert_eq!(subscribers[2].deliveries(), ["onefish+twofish+redfish"]);
}

fn publisher_exclusion_once_only_and_order(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let mut a = server.client(transport);
    let mut b = server.client(transport);
    for client in [&mut a, &mut b] {
        client.subscribe(&["x"]);
        client.subscribe(&["x", "y"]);
    }
    for i in 0..20 {
        assert_eq!(
            a.publish(&["x", "y"], &i.to_string()),
            [],
            "never to itself"
        );
    }
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(b.deliveries(), expected, "once each, in order");
}

fn list_and_unsubscribe(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let mut client = server.client(transport);
    client.subscribe(&["b", "a"]);
    client.subscribe(&["c"]);
    client.send_line(br#"{"command":"unsubscribe","tags":["c"]}"#);
    client.send_line(br#"{"command":"list"}"#);
    let list = client.recv();
    assert_eq!(list.data.as_deref(), Some("a,b"));
    assert_eq!(
        list.subscriptions,
        Some(vec![vec!["a".to_string(), "b".to_string()]])
    );
}

fn errors_are_answered_and_the_connection_stays_usable(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let mut client = server.client(transport);
    for (line, expected) in [
        (
            &br#"{"command":"bogus","tags":["t"]}"#[..],
            "Unknown Command",
        ),
        (
            br#"{"command":"subscribe"}"#,
            "missing tags: subscribe needs",
        ),
        (
            br#"{"command":"publish","tags":["a","b","c","d"]}"#,
            "too many tags: at most 3",
        ),
        (b"<html>", "invalid JSON: expected value at column 1"),
        (b"[1]", "invalid message: expected a JSON object"),
        (
            br#"{"command":"publish","tags":"t"}"#,
            "invalid message: invalid type: string",
        ),
    ] {
        client.send_line(line);
        let error = client.error();
        assert!(
            error.contains(expected),
            "{:?}: {error}",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(client.sync(), []);
}

fn data_may_hold_any_character(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let mut sub = server.client(transport);
    let mut publisher = server.client(transport);
    sub.subscribe(&["t"]);
    let data = "two\nlines, \"quotes\", ünïcødé 🐟 and a NUL \u{0}";
    publisher.publish(&["t"], data);
    assert_eq!(sub.deliveries(), [data]);
}

/// Publishing on one transport reaches subscribers on every other one, and
/// publisher exclusion is per connection, whatever the transport.
fn crosses_transports(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let mut others: Vec<Client> = [Transport::Tcp, Transport::Ws, Transport::HttpWs]
        .into_iter()
        .map(|t| {
            let mut c = server.client(t);
            c.subscribe(&["cross"]);
            c
        })
        .collect();
    let mut publisher = server.client(transport);
    publisher.subscribe(&["cross"]);
    assert_eq!(publisher.publish(&["cross"], "hello"), []);
    for other in &mut others {
        assert_eq!(other.deliveries(), ["hello"]);
    }
    let echo = others[0].publish(&["cross"], "back");
    assert_eq!(echo, []);
    assert_eq!(publisher.deliveries(), ["back"]);
}

macro_rules! each_runtime_and_transport {
    ($($module:ident: $runtime:literal, $transport:expr;)*) => {$(
        mod $module {
            use super::*;
            #[test] fn seed_table() { super::seed_table($runtime, $transport) }
            #[test] fn publisher_exclusion_once_only_and_order() { super::publisher_exclusion_once_only_and_order($runtime, $transport) }
            #[test] fn list_and_unsubscribe() { super::list_and_unsubscribe($runtime, $transport) }
            #[test] fn errors_are_answered_and_the_connection_stays_usable() { super::errors_are_answered_and_the_connection_stays_usable($runtime, $transport) }
            #[test] fn data_may_hold_any_character() { super::data_may_hold_any_character($runtime, $transport) }
            #[test] fn crosses_transports() { super::crosses_transports($runtime, $transport) }
        }
    )*};
}

each_runtime_and_transport! {
    async_std_tcp: "async-std", Transport::Tcp;
    async_std_ws: "async-std", Transport::Ws;
    async_std_http_ws: "async-std", Transport::HttpWs;
    smol_tcp: "smol", Transport::Tcp;
    smol_ws: "smol", Transport::Ws;
    smol_http_ws: "smol", Transport::HttpWs;
}
