//! The HTTP listener, a tide app:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /ping` | `200 pong` |
//! | `POST /publish` | publishes the JSON body `{"tags":[...],"data":"..."}` |
//! | `GET /subscribe?tags=a,b` | a Server-Sent Events stream of matching messages |
//! | `GET /subscribe/websocket` | the WebSocket endpoint, as on a `ws://` listener |
//!
//! Every route answers CORS, preflight included, for the allowed origins.

use async_std::task;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use futures::io::AsyncReadExt;
use mist_frontend::listener::ListenerSpec;
use mist_frontend::{is_disconnect, serve_websocket, HttpOptions, Hub, Inbound, Outbound, Session};
use mist_proto::{decode_document, encode, LineDecoder, ProtoError, Publication, Request};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use tide::http::headers::HeaderValue;
use tide::security::{CorsMiddleware, Origin};
use tide::sse::Sender;
use tide::{Body, Request as HttpRequest, Response, StatusCode};

type Req = HttpRequest<Arc<Hub>>;

/// Serves the HTTP routes on `listener` until the process ends.
pub async fn serve(
    hub: Arc<Hub>,
    options: HttpOptions,
    spec: ListenerSpec,
    listener: std::net::TcpListener,
) {
    if let Err(e) = app(hub, &options).listen(listener).await {
        log::error!("the HTTP listener {spec} stopped: {e}");
    }
}

/// The tide app with every route; public so that embedders can mount it.
pub fn app(hub: Arc<Hub>, options: &HttpOptions) -> tide::Server<Arc<Hub>> {
    let mut app = tide::with_state(hub);
    app.with(cors(options));
    app.at("/ping").get(|_| async { Ok("pong") });
    app.at("/publish").post(publish);
    app.at("/subscribe").get(subscribe_events);
    app.at("/subscribe/websocket").get(websocket);
    app
}

fn cors(options: &HttpOptions) -> CorsMiddleware {
    let origin = if options.allowed_origins.iter().any(|o| o == "*") {
        Origin::Any
    } else {
        Origin::from(options.allowed_origins.clone())
    };
    let header = |value: &str| value.parse::<HeaderValue>().expect("an ASCII header value");
    CorsMiddleware::new()
        .allow_methods(header("GET, POST, OPTIONS"))
        .allow_headers(header("content-type, x-auth-token"))
        .allow_origin(origin)
        .allow_credentials(false)
}

/// A JSON response whose body is one protocol frame.
fn json(status: StatusCode, frame: &[u8]) -> Response {
    let body = frame.strip_suffix(b"\n").unwrap_or(frame);
    let mut response = Response::new(status);
    response.set_body(Body::from_bytes(body.to_vec()));
    response.set_content_type(tide::http::mime::JSON);
    response
}

fn refused(
    status: StatusCode,
    command: &str,
    tags: Option<&[String]>,
    error: &dyn std::fmt::Display,
) -> Response {
    json(status, &encode::error(command, tags, &error.to_string()))
}

/// `POST /publish`: an HTTP publisher holds no subscriptions, so every
/// matching subscriber receives the message.
async fn publish(mut req: Req) -> tide::Result<Response> {
    let hub = req.state().clone();
    let limit = hub.max_line();
    let mut body = Vec::new();
    req.take_body()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .await?;
    if body.len() > limit {
        let error = ProtoError::LineTooLong { limit };
        return Ok(refused(
            StatusCode::PayloadTooLarge,
            "publish",
            None,
            &error,
        ));
    }
    let request = match decode_document::<Publication>(&body) {
        Ok(publication) => publication.into_request(),
        Err(e) => return Ok(refused(StatusCode::BadRequest, "publish", None, &e)),
    };
    let tags = request.tags.as_deref();
    match Session::open(&hub).command(&request) {
        Ok(()) => {
            let reply = serde_json::json!({"command": "publish", "tags": tags});
            Ok(json(StatusCode::Ok, reply.to_string().as_bytes()))
        }
        Err(e) => Ok(refused(StatusCode::BadRequest, "publish", tags, &e)),
    }
}

/// `GET /subscribe?tags=a,b`: Server-Sent Events, one event per message.
async fn subscribe_events(req: Req) -> tide::Result<Response> {
    let tags: Vec<String> = req
        .url()
        .query_pairs()
        .filter(|(key, _)| key == "tags")
        .flat_map(|(_, value)| value.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter(|tag| !tag.is_empty())
        .collect();
    let request = Request::new("subscribe").tags(tags);
    let session = Session::open(req.state());
    if let Err(e) = session.command(&request) {
        return Ok(refused(
            StatusCode::BadRequest,
            "subscribe",
            request.tags.as_deref(),
            &e,
        ));
    }
    // The handler is an `Fn`, but it runs once per request: hand it the session.
    let session = Mutex::new(Some(session));
    Ok(tide::sse::upgrade(req, move |_req, sender| {
        let session = session.lock().unwrap_or_else(|e| e.into_inner()).take();
        async move {
            if let Some(session) = session {
                match session.run(NoInput, EventStream { sender }).await {
                    Err(e) if !is_disconnect(&e) => log::warn!("an SSE stream failed: {e}"),
                    _ => log::debug!("an SSE client left"),
                }
            }
            Ok(())
        }
    }))
}

/// An SSE client sends nothing after its request.
struct NoInput;

impl Inbound for NoInput {
    async fn receive(
        &mut self,
        _: &mut LineDecoder,
        _: &mut Vec<Result<Request, ProtoError>>,
    ) -> io::Result<bool> {
        futures::future::pending().await
    }
}

/// Frames as SSE `message` events; a write failure means the client left.
struct EventStream {
    sender: Sender,
}

impl Outbound for EventStream {
    async fn send(&mut self, frames: &VecDeque<bytes::Bytes>) -> io::Result<()> {
        for frame in frames {
            let line = std::str::from_utf8(frame).map_err(io::Error::other)?;
            self.sender
                .send("message", line.trim_end(), None)
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        }
        Ok(())
    }
}

/// `GET /subscribe/websocket`: upgrades to the WebSocket protocol of the `ws://`
/// listener. The handshake headers are checked here; the socket is handed to
/// the shared WebSocket transport once the 101 response has gone out.
async fn websocket(req: Req) -> tide::Result<Response> {
    let has = |name: &str, wanted: &str| {
        req.header(name).is_some_and(|values| {
            values
                .iter()
                .flat_map(|v| v.as_str().split(','))
                .any(|v| v.trim().eq_ignore_ascii_case(wanted))
        })
    };
    let key = req
        .header("Sec-WebSocket-Key")
        .map(|k| k.as_str().to_string());
    let key = match key {
        Some(key)
            if has("Connection", "upgrade")
                && has("Upgrade", "websocket")
                && has("Sec-WebSocket-Version", "13") =>
        {
            key
        }
        _ => {
            let error = "expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13, Sec-WebSocket-Key)";
            let mut response = refused(StatusCode::UpgradeRequired, "", None, &error);
            response.insert_header("Sec-WebSocket-Version", "13");
            return Ok(response);
        }
    };
    let mut response = Response::new(StatusCode::SwitchingProtocols);
    response.insert_header("Upgrade", "websocket");
    response.insert_header("Connection", "Upgrade");
    response.insert_header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    let http: &mut tide::http::Response = response.as_mut();
    let upgraded = http.recv_upgrade().await;
    let hub = req.state().clone();
    task::spawn(async move {
        if let Some(socket) = upgraded.await {
            match serve_websocket(&hub, socket).await {
                Err(e) if !is_disconnect(&e) => {
                    log::warn!("a WebSocket client over HTTP failed: {e}")
                }
                _ => log::debug!("a WebSocket client over HTTP left"),
            }
        }
    });
    Ok(response)
}
