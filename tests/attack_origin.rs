//! Issue 8, finding 8: only allowed web pages may use the broker.
//!
//! A request that carries an `Origin` header (a browser's WebSocket, SSE or
//! `fetch`; a form's `text/plain` POST, which needs no preflight) is served
//! only when that origin is the server's own or allowed with
//! `--cors-origin`; `'*'` allows every origin. Refusals are 403 with a body
//! that names the flag. Clients without an `Origin` are not affected.

mod support;

use std::time::Duration;
use support::{http, Server};

const EVIL: &str = "http://evil.example";
const APP: &str = "http://app.example";

/// The status a WebSocket handshake to `addr` gets with `origin`.
fn websocket_with_origin(addr: &str, origin: Option<&str>) -> (u16, String) {
    let url = format!("ws://{addr}/subscribe/websocket");
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok(_) => (101, String::new()),
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// What each way in answers a page from `origin`.
fn statuses(server: &Server, origin: Option<&str>) -> Vec<u16> {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    let mut publish_headers = headers.clone();
    publish_headers.push(("Content-Type", "text/plain"));
    vec![
        websocket_with_origin(&server.listeners["ws"], origin).0,
        websocket_with_origin(server.http(), origin).0,
        http(
            server.http(),
            "POST",
            "/publish",
            &publish_headers,
            br#"{"tags":["t"],"data":"x"}"#,
        )
        .status,
        http(server.http(), "GET", "/ping", &headers, b"").status,
    ]
}

fn pages_from_other_origins_are_refused(runtime: &str) {
    let server = Server::start_on(runtime, &[]);
    let mut subscriber = server.connect();
    subscriber.subscribe(&["t"]);
    assert_eq!(
        statuses(&server, Some(EVIL)),
        [403, 403, 403, 403],
        "{runtime}"
    );
    assert_eq!(
        subscriber.deliveries(),
        Vec::<String>::new(),
        "{runtime}: the refused POST did nothing"
    );
    let (_, body) = websocket_with_origin(&server.listeners["ws"], Some(EVIL));
    assert!(body.contains("origin http://evil.example is not allowed: start mist with --cors-origin http://evil.example"), "{body}");
    let sse = http(
        server.http(),
        "GET",
        "/subscribe?tags=t",
        &[("Origin", EVIL)],
        b"",
    );
    assert_eq!(sse.status, 403, "{runtime}");
    // No Origin (a CLI, a server) and the server's own origin are served.
    assert_eq!(statuses(&server, None), [101, 101, 200, 200], "{runtime}");
    let own = format!("http://{}", server.http());
    let mut own_statuses = statuses(&server, Some(&own));
    own_statuses.remove(0); // a ws:// listener serves no pages of its own
    assert_eq!(own_statuses, [101, 200, 200], "{runtime}");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        subscriber.deliveries().len(),
        2,
        "{runtime}: the allowed POSTs"
    );
}

fn listed_origins_and_the_wildcard_are_allowed(runtime: &str) {
    let server = Server::start_on(runtime, &["--cors-origin", APP]);
    assert_eq!(
        statuses(&server, Some(APP)),
        [101, 101, 200, 200],
        "{runtime}"
    );
    assert_eq!(
        statuses(&server, Some(EVIL)),
        [403, 403, 403, 403],
        "{runtime}"
    );
    let allowed = http(server.http(), "GET", "/ping", &[("Origin", APP)], b"");
    assert_eq!(allowed.header("access-control-allow-origin"), Some(APP));
    let open = Server::start_on(runtime, &["--cors-origin", "*"]);
    assert_eq!(
        statuses(&open, Some(EVIL)),
        [101, 101, 200, 200],
        "{runtime}"
    );
}

on_every_runtime!(
    pages_from_other_origins_are_refused,
    listed_origins_and_the_wildcard_are_allowed
);
