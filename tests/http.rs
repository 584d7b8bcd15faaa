//! The HTTP listener (async-std/tide): ping, publish, Server-Sent Events, CORS,
//! and the WebSocket transport's own rules (frames, limits, pings, paths).

mod support;

use std::time::Duration;
use support::{http, EventStream, Server, Transport};

fn ping(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let response = http(server.http(), "GET", "/ping", &[], b"");
    assert_eq!((response.status, response.body.as_str()), (200, "pong"));
}

fn post_publish_reaches_every_matching_subscriber(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let mut tcp = server.client(Transport::Tcp);
    let mut ws = server.client(Transport::Ws);
    tcp.subscribe(&["a"]);
    ws.subscribe(&["a", "b"]);
    let body = br#"{"tags":["b","a"],"data":"over http\n"}"#;
    let response = http(
        server.http(),
        "POST",
        "/publish",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        serde_json::json!({"command":"publish","tags":["b","a"]})
    );
    assert_eq!(tcp.deliveries(), ["over http\n"]);
    assert_eq!(ws.deliveries(), ["over http\n"]);
}

fn a_bad_publish_body_is_a_400_saying_what_was_wrong(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-line", "200"]);
    for (body, status, error) in [
        (
            &b"not json"[..],
            400,
            "invalid JSON: expected ident at column 2",
        ),
        (b"[]", 400, "invalid message: expected a JSON object"),
        (
            br#"{"data":"x"}"#,
            400,
            "missing tags: publish needs a non-empty \"tags\" list",
        ),
        (
            br#"{"tags":"a"}"#,
            400,
            "invalid message: invalid type: string \"a\", expected a sequence",
        ),
        (
            br#"{"tags":["a"],"data":5}"#,
            400,
            "invalid message: invalid type: number, expected a string",
        ),
        (&[b'x'; 300], 413, "line too long: the limit is 200 bytes"),
    ] {
        let response = http(server.http(), "POST", "/publish", &[], body);
        assert_eq!(response.status, status, "{}", response.body);
        let reply = response.json();
        assert_eq!(reply["command"], "publish");
        let said = reply["error"].as_str().unwrap_or_default();
        assert!(
            said.starts_with(error),
            "{:?}: {said}",
            String::from_utf8_lossy(body)
        );
    }
}

fn server_sent_events_stream_matching_messages(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let mut events = EventStream::open(server.http(), "/subscribe?tags=a,b");
    let mut publisher = server.client(Transport::Tcp);
    publisher.publish(&["a"], "not for it");
    publisher.publish(&["c", "b", "a"], "first");
    publisher.publish(&["a", "b"], "line\nbreak");
    let first = events.next();
    assert_eq!(first.command, "publish");
    assert_eq!(
        first.tags,
        Some(vec!["c".to_string(), "b".to_string(), "a".to_string()])
    );
    assert_eq!(first.data.as_deref(), Some("first"));
    assert_eq!(events.next().data.as_deref(), Some("line\nbreak"));
}

/// The seed's table with SSE subscribers and an HTTP publisher.
fn seed_table_over_server_sent_events_and_http_publish(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let sets = ["onefish", "onefish,twofish", "onefish,twofish,redfish"];
    let mut streams: Vec<EventStream> = sets
        .iter()
        .map(|tags| EventStream::open(server.http(), &format!("/subscribe?tags={tags}")))
        .collect();
    for tags in sets.iter().chain(["onefish,twofish,redfish"].iter()) {
        let tags: Vec<&str> = tags.split(',').collect();
        let body = serde_json::json!({"tags": tags, "data": tags.join("+")}).to_string();
        let response = http(server.http(), "POST", "/publish", &[], body.as_bytes());
        assert_eq!(response.status, 200, "{}", response.body);
    }
    // The last message reaches everyone, so it marks the end of each stream.
    let expected: [&[&str]; 3] = [
        &[
            "onefish",
            "onefish+twofish",
            "onefish+twofish+redfish",
            "onefish+twofish+redfish",
        ],
        &[
            "onefish+twofish",
            "onefish+twofish+redfish",
            "onefish+twofish+redfish",
        ],
        &["onefish+twofish+redfish", "onefish+twofish+redfish"],
    ];
    for (stream, expected) in streams.iter_mut().zip(expected) {
        let got: Vec<String> = expected
            .iter()
            .map(|_| stream.next().data.unwrap())
            .collect();
        assert_eq!(got, expected);
    }
}

/// A client that leaves an idle stream is noticed at the next keepalive and
/// forgotten, even if nothing is ever published to its tags.
fn a_departed_sse_client_is_forgotten(runtime: &str) {
    let server = Server::start_on(runtime, &["--sse-keepalive", "1"]);
    let events = EventStream::open(server.http(), "/subscribe?tags=quiet");
    drop(events);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server
        .log()
        .iter()
        .any(|l| l.contains("an SSE client left"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn server_sent_events_without_tags_is_a_400(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let response = http(server.http(), "GET", "/subscribe", &[], b"");
    assert_eq!(response.status, 400);
    assert!(response.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("missing tags: subscribe needs"));
}

fn cors_answers_preflight_and_simple_requests(runtime: &str) {
    let server = Server::start_on(runtime, &["--cors-origin", "*"]);
    let preflight = http(
        server.http(),
        "OPTIONS",
        "/publish",
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.body);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("content-type"));
    assert!(preflight
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let simple = http(
        server.http(),
        "GET",
        "/ping",
        &[("Origin", "http://other.example")],
        b"",
    );
    assert_eq!(simple.header("access-control-allow-origin"), Some("*"));
}

fn cors_can_be_limited_to_listed_origins(runtime: &str) {
    let server = Server::start_on(runtime, &["--cors-origin", "http://app.example"]);
    let allowed = http(
        server.http(),
        "GET",
        "/ping",
        &[("Origin", "http://app.example")],
        b"",
    );
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let other = http(
        server.http(),
        "GET",
        "/ping",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(other.status, 403, "a page from another origin is refused");
    assert_eq!(other.header("access-control-allow-origin"), None);
}

fn the_websocket_route_wants_an_upgrade(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let response = http(server.http(), "GET", "/subscribe/websocket", &[], b"");
    assert_eq!(response.status, 426);
    assert!(
        response.body.contains("expected a WebSocket upgrade"),
        "{}",
        response.body
    );
}

fn websocket_paths(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    for path in ["/", "/subscribe/websocket"] {
        let mut client =
            support::Client::websocket(&format!("ws://{}{path}", server.listeners["ws"]));
        assert_eq!(client.sync(), []);
    }
    let refused = tungstenite::connect(format!("ws://{}/elsewhere", server.listeners["ws"]));
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected a 404, got {other:?}"),
    }
}

/// The next text frame of a raw WebSocket, decoded.
fn next_text(socket: &mut support::RawWebSocket) -> mist_proto::Message {
    loop {
        match socket.read().expect("a frame") {
            tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            other => assert!(other.is_ping() || other.is_pong(), "{other:?}"),
        }
    }
}

fn websocket_frames(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-line", "1000"]);
    let url = format!("ws://{}/subscribe/websocket", server.listeners["ws"]);
    let mut socket = support::raw_websocket(&url);
    let ping = b"{\"command\":\"ping\"}".to_vec();
    socket.send(tungstenite::Message::binary(ping)).unwrap();
    assert_eq!(
        next_text(&mut socket).error.as_deref(),
        Some("binary frames are not supported: send each message as JSON in a text frame")
    );
    // Several messages in one frame, the last without a newline.
    let several = "{\"command\":\"subscribe\",\"tags\":[\"s\"]}\n{\"command\":\"list\"}";
    socket.send(tungstenite::Message::text(several)).unwrap();
    assert_eq!(next_text(&mut socket).data.as_deref(), Some("s"));
    // A WebSocket ping is answered with a pong carrying the same payload.
    socket
        .send(tungstenite::Message::Ping(b"hi".to_vec().into()))
        .unwrap();
    let pong = match socket.read().unwrap() {
        tungstenite::Message::Pong(payload) => payload,
        other => panic!("expected a pong, got {other:?}"),
    };
    assert_eq!(&pong[..], b"hi");
    // An oversized frame is answered, then the connection is closed: the
    // stream cannot be resynchronised after it.
    socket
        .send(tungstenite::Message::text("x".repeat(5000)))
        .unwrap();
    let refusal = next_text(&mut socket).error.unwrap();
    assert!(
        refusal.starts_with("line too long: the limit is 1000 bytes"),
        "{refusal}"
    );
    assert!(matches!(socket.read(), Ok(tungstenite::Message::Close(_))));
}

/// The original mist logged every WebSocket disconnect as an error.
fn ordinary_websocket_disconnects_are_not_errors(runtime: &str) {
    {
        let server = Server::start_on(runtime, &[]);
        let mut clean = server.client(Transport::Ws);
        clean.sync();
        clean.close();
        let mut abrupt = server.client(Transport::Ws);
        abrupt.subscribe(&["t"]);
        drop(abrupt); // no close frame: 1006 for the server
        let url = format!("ws://{}/subscribe/websocket", server.listeners["ws"]);
        let mut going_away = support::raw_websocket(&url);
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "bye".into(),
        };
        going_away.close(Some(frame)).unwrap();
        let _ = going_away.flush();
        // Give the server a moment to notice, then prove it is still fine.
        std::thread::sleep(Duration::from_millis(300));
        let mut probe = server.client(Transport::Tcp);
        probe.sync();
        let noisy: Vec<String> = server
            .log()
            .into_iter()
            .filter(|l| l.contains("[WARN]") || l.contains("[ERROR]"))
            .collect();
        assert!(noisy.is_empty(), "{runtime}: {noisy:?}");
    }
}

macro_rules! on_each_runtime {
    ($($module:ident: $runtime:literal;)*) => {$(
        mod $module {
            #[test] fn ping() { super::ping($runtime) }
            #[test] fn post_publish_reaches_every_matching_subscriber() { super::post_publish_reaches_every_matching_subscriber($runtime) }
            #[test] fn a_bad_publish_body_is_a_400_saying_what_was_wrong() { super::a_bad_publish_body_is_a_400_saying_what_was_wrong($runtime) }
            #[test] fn server_sent_events_stream_matching_messages() { super::server_sent_events_stream_matching_messages($runtime) }
            #[test] fn seed_table_over_server_sent_events_and_http_publish() { super::seed_table_over_server_sent_events_and_http_publish($runtime) }
            #[test] fn a_departed_sse_client_is_forgotten() { super::a_departed_sse_client_is_forgotten($runtime) }
            #[test] fn server_sent_events_without_tags_is_a_400() { super::server_sent_events_without_tags_is_a_400($runtime) }
            #[test] fn cors_answers_preflight_and_simple_requests() { super::cors_answers_preflight_and_simple_requests($runtime) }
            #[test] fn cors_can_be_limited_to_listed_origins() { super::cors_can_be_limited_to_listed_origins($runtime) }
            #[test] fn the_websocket_route_wants_an_upgrade() { super::the_websocket_route_wants_an_upgrade($runtime) }
            #[test] fn websocket_paths() { super::websocket_paths($runtime) }
            #[test] fn websocket_frames() { super::websocket_frames($runtime) }
            #[test] fn ordinary_websocket_disconnects_are_not_errors() { super::ordinary_websocket_disconnects_are_not_errors($runtime) }
        }
    )*};
}

on_each_runtime! {
    async_std: "async-std";
    smol: "smol";
}
