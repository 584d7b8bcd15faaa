//! The HTTP listener (async-std/tide): ping, publish, Server-Sent Events, CORS,
//! and the WebSocket transport's own rules (frames, limits, pings, paths).

mod support;

use std::time::Duration;
use support::{http, EventStream, Server, Transport};

#[test]
fn ping() {
    let server = Server::start();
    let response = http(server.http(), "GET", "/ping", &[], b"");
    assert_eq!((response.status, response.body.as_str()), (200, "pong"));
}

#[test]
fn post_publish_reaches_every_matching_subscriber() {
    let server = Server::start();
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

#[test]
fn a_bad_publish_body_is_a_400_saying_what_was_wrong() {
    let server = Server::start_with(&["--max-line", "200"]);
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

#[test]
fn server_sent_events_stream_matching_messages() {
    let server = Server::start();
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
#[test]
fn seed_table_over_server_sent_events_and_http_publish() {
    let server = Server::start();
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

#[test]
fn server_sent_events_without_tags_is_a_400() {
    let server = Server::start();
    let response = http(server.http(), "GET", "/subscribe", &[], b"");
    assert_eq!(response.status, 400);
    assert!(response.json()["error"]
        .as_str()
        .unwrap()
        .starts_with("missing tags: subscribe needs"));
}

#[test]
fn cors_answers_preflight_and_simple_requests() {
    let server = Server::start();
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
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    // Any origin is allowed by default; the allowed origin is echoed back.
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://app.example")
    );
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

#[test]
fn cors_can_be_limited_to_listed_origins() {
    let server = Server::start_with(&["--cors-origin", "http://app.example"]);
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
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn the_websocket_route_wants_an_upgrade() {
    let server = Server::start();
    let response = http(server.http(), "GET", "/subscribe/websocket", &[], b"");
    assert_eq!(response.status, 426);
    assert!(
        response.body.contains("expected a WebSocket upgrade"),
        "{}",
        response.body
    );
}

#[test]
fn websocket_paths() {
    let server = Server::start();
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

fn websocket_frames_on(runtime: &str) {
    let server = Server::start_on(runtime, &["--max-line", "1000"]);
    let mut client = server.client(Transport::Ws);
    client.send_binary(b"{\"command\":\"ping\"}");
    assert_eq!(
        client.error(),
        "binary frames are not supported: send each message as JSON in a text frame"
    );
    // Several messages in one frame, the last without a newline.
    client.send_raw(b"{\"command\":\"subscribe\",\"tags\":[\"s\"]}\n{\"command\":\"list\"}");
    assert_eq!(client.recv().data.as_deref(), Some("s"));
    // A WebSocket ping is answered with a pong carrying the same payload.
    let Some(socket) = client.socket() else {
        unreachable!()
    };
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
    client.send_raw(&[b'x'; 5000]);
    assert!(client
        .error()
        .starts_with("line too long: the limit is 1000 bytes"));
    let socket = client.socket().unwrap();
    assert!(matches!(socket.read(), Ok(tungstenite::Message::Close(_))));
}

#[test]
fn websocket_frames_on_async_std() {
    websocket_frames_on("async-std");
}

#[test]
fn websocket_frames_on_smol() {
    websocket_frames_on("smol");
}

/// The original mist logged every WebSocket disconnect as an error.
#[test]
fn ordinary_websocket_disconnects_are_not_errors() {
    for runtime in support::RUNTIMES {
        let server = Server::start_on(runtime, &[]);
        let mut clean = server.client(Transport::Ws);
        clean.sync();
        clean.socket().unwrap().close(None).unwrap();
        let _ = clean.socket().unwrap().flush();
        let mut abrupt = server.client(Transport::Ws);
        abrupt.subscribe(&["t"]);
        drop(abrupt); // no close frame: 1006 for the server
        let mut going_away = server.client(Transport::Ws);
        going_away.sync();
        let frame = tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "bye".into(),
        };
        going_away.socket().unwrap().close(Some(frame)).unwrap();
        let _ = going_away.socket().unwrap().flush();
        // Give the server a moment to notice, then prove it is still fine.
        std::thread::sleep(Duration::from_millis(300));
        let mut probe = server.client(Transport::Tcp);
        probe.sync();
        let noisy: Vec<String> = server
            .log()
            .into_iter()
            .filter(|l| l.contains("[WARN]") || l.contains("[ERROR]"))
            .filter(|l| !l.contains("skipping listener http"))
            .collect();
        assert!(noisy.is_empty(), "{runtime}: {noisy:?}");
    }
}
