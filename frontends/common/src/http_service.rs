//! The HTTP endpoints, written once over `http-types` for every runtime:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /ping` | `200 pong` |
//! | `POST /publish` | publishes the JSON body `{"tags":[...],"data":"..."}` |
//! | `GET /subscribe?tags=a,b` | a Server-Sent Events stream of matching messages |
//! | `GET /subscribe/websocket` | the WebSocket endpoint, as on a `ws://` listener |
//!
//! A request from a web page (one with an `Origin` header) is served only
//! for an allowed origin (see [`crate::check_origin`]); every response
//! answers CORS, preflight included, for those origins. On a secured server
//! `/stats` and `/metrics` want the server token. A runtime only carries
//! requests to [`HttpService::respond`] (tide on async-std, async-h1 on
//! smol) and lends its [`Runtime`] for what outlives a request: SSE streams,
//! with their keepalives, and upgraded WebSockets.

use crate::hub::Via;
use crate::{
    check_origin, is_disconnect, refusal_text, request_token, serve_websocket, Hub, Inbound,
    ListenerOptions, Outbound, Pinger, Runtime, Session,
};
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use bytes::{Buf, Bytes};
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncBufRead, AsyncRead, AsyncReadExt};
use futures::{SinkExt, StreamExt};
use http_types::{Body, Method, Mime, Request as HttpRequest, Response, StatusCode};
use mist_engine::{Batch, Credentials};
use mist_proto::{decode_document, encode, LineDecoder, ProtoError, Publication, Request};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The HTTP endpoints of one server.
#[derive(Clone)]
pub struct HttpService<R> {
    hub: Arc<Hub>,
    options: Arc<ListenerOptions>,
    runtime: R,
}

impl<R: Runtime> HttpService<R> {
    /// The endpoints of `hub`, with `runtime` for what outlives a request.
    pub fn new(
        hub: Arc<Hub>,
        options: impl Into<Arc<ListenerOptions>>,
        runtime: R,
    ) -> HttpService<R> {
        HttpService {
            hub,
            options: options.into(),
            runtime,
        }
    }

    /// Answers one request.
    pub async fn respond(&self, request: HttpRequest) -> Response {
        let origin = request.header("Origin").map(|o| o.as_str().to_string());
        let host = request.header("Host").map(|h| h.as_str().to_string());
        let preflight = request.method() == Method::Options
            && request.header("Access-Control-Request-Method").is_some();
        let allowed = check_origin(
            origin.as_deref(),
            host.as_deref(),
            &self.options.allowed_origins.get(),
        );
        let mut response = match &allowed {
            _ if preflight => Response::new(StatusCode::NoContent),
            Ok(()) => self.route(request).await,
            Err(error) => failure(StatusCode::Forbidden, "", None, error),
        };
        if allowed.is_ok() {
            self.cors(&mut response, origin.as_deref(), preflight);
        }
        response
    }

    async fn route(&self, request: HttpRequest) -> Response {
        let counters = matches!(request.url().path(), "/stats" | "/metrics");
        if counters && request.method() == Method::Get {
            if let Err(refused) = self.admin_only(&request) {
                return *refused;
            }
        }
        match (request.method(), request.url().path()) {
            (Method::Get, "/ping") => {
                let mut response = Response::new(StatusCode::Ok);
                response.set_body("pong");
                response
            }
            (Method::Post, "/publish") => self.publish(request).await,
            (Method::Get, "/stats") => json(StatusCode::Ok, self.stats()),
            (Method::Get, "/metrics") => {
                let mut response = Response::new(StatusCode::Ok);
                response.set_body(self.metrics());
                let text = Mime::from_str("text/plain; version=0.0.4").expect("a valid MIME type");
                response.set_content_type(text);
                response
            }
            (Method::Get, "/subscribe") => self.events(&request).await,
            (Method::Get, "/subscribe/websocket") => self.websocket(&request).await,
            (method, path @ ("/ping" | "/publish" | "/subscribe" | "/subscribe/websocket" | "/stats" | "/metrics")) => {
                let allowed = if path == "/publish" { "POST" } else { "GET" };
                let mut response = failure(
                    StatusCode::MethodNotAllowed,
                    "",
                    None,
                    &format!("{method} is not allowed on {path}; use {allowed}"),
                );
                response.insert_header("Allow", allowed);
                response
            }
            (method, path) => failure(
                StatusCode::NotFound,
                "",
                None,
                &format!(
                    "no route for {method} {path}: mist serves GET /ping, POST /publish, GET /subscribe?tags=..., GET /subscribe/websocket, GET /stats, GET /metrics"
                ),
            ),
        }
    }

    /// `GET /stats`: the counters as JSON.
    fn stats(&self) -> String {
        let snapshot = self.hub.snapshot();
        let stats = snapshot.engine;
        let transports: serde_json::Map<String, serde_json::Value> = snapshot
            .transports
            .iter()
            .map(|(name, open, accepted)| {
                (
                    name.to_string(),
                    serde_json::json!({"open": open, "accepted": accepted}),
                )
            })
            .collect();
        serde_json::json!({
            "sockets": snapshot.sockets,
            "connections": stats.connections,
            "subscriptions": stats.subscriptions,
            "published": stats.published,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "remote": stats.remote,
            "transports": transports,
            "replicator": snapshot.replication.as_ref().map(|r| serde_json::json!({
                "connected": r.connected,
                "sent": r.sent,
                "received": r.received,
                "dropped": r.dropped,
                "reconnects": r.reconnects,
                "last_error": r.last_error,
            })),
        })
        .to_string()
    }

    /// `GET /metrics`: the same counters in Prometheus' text format.
    fn metrics(&self) -> String {
        let snapshot = self.hub.snapshot();
        let stats = snapshot.engine;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        let by_transport = |pick: &dyn Fn(usize, u64) -> String| -> Vec<(String, String)> {
            snapshot
                .transports
                .iter()
                .map(|(name, open, accepted)| {
                    (format!("{{transport=\"{name}\"}}"), pick(*open, *accepted))
                })
                .collect()
        };
        let single = |value: String| vec![(String::new(), value)];
        family(
            "mist_connections",
            "gauge",
            "Connections open now, by transport.",
            &by_transport(&|open, _| open.to_string()),
        );
        family(
            "mist_connections_accepted_total",
            "counter",
            "Connections accepted since start, by transport.",
            &by_transport(&|_, accepted| accepted.to_string()),
        );
        family(
            "mist_sockets",
            "gauge",
            "Accepted sockets open now, of every transport, not yet authenticated ones included.",
            &single(snapshot.sockets.to_string()),
        );
        family(
            "mist_subscriptions",
            "gauge",
            "Subscriptions held now.",
            &single(stats.subscriptions.to_string()),
        );
        family(
            "mist_messages_published_total",
            "counter",
            "Messages accepted for publishing.",
            &single(stats.published.to_string()),
        );
        family(
            "mist_messages_delivered_total",
            "counter",
            "Deliveries queued for subscribers.",
            &single(stats.delivered.to_string()),
        );
        family(
            "mist_messages_dropped_total",
            "counter",
            "Deliveries dropped because the subscriber's outbox was full.",
            &single(stats.dropped.to_string()),
        );
        family(
            "mist_messages_remote_total",
            "counter",
            "Messages from other nodes delivered here.",
            &single(stats.remote.to_string()),
        );
        if let Some(r) = &snapshot.replication {
            let up = if r.connected { "1" } else { "0" };
            family(
                "mist_replicator_connected",
                "gauge",
                "Whether the link to the other nodes is up.",
                &single(up.to_string()),
            );
            for (name, help, value) in [
                ("sent", "Publishes sent to the other nodes.", r.sent),
                (
                    "received",
                    "Publishes received from the other nodes.",
                    r.received,
                ),
                (
                    "dropped",
                    "Publishes not sent, or received and not valid.",
                    r.dropped,
                ),
                ("reconnects", "Times the link was made again.", r.reconnects),
            ] {
                family(
                    &format!("mist_replicator_{name}_total"),
                    "counter",
                    help,
                    &single(value.to_string()),
                );
            }
        }
        out
    }

    /// CORS headers for an allowed page from another origin.
    fn cors(&self, response: &mut Response, origin: Option<&str>, preflight: bool) {
        let Some(origin) = origin else { return };
        let origins = self.options.allowed_origins.get();
        let any = origins.iter().any(|o| o == "*");
        let listed = (origins.iter()).any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        if !any && !listed {
            return; // its own origin needs no CORS; any other was refused
        }
        response.insert_header(
            "Access-Control-Allow-Origin",
            if any { "*" } else { origin },
        );
        if !any {
            response.append_header("Vary", "Origin");
        }
        if preflight {
            response.insert_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            response.insert_header(
                "Access-Control-Allow-Headers",
                "content-type, x-auth-token, authorization",
            );
            response.insert_header("Access-Control-Max-Age", "86400");
        }
    }

    /// The pings for a WebSocket client, if they are on.
    pub fn pinger(&self) -> Option<Pinger<R>> {
        let every = self.options.ws_keepalive?;
        Some(Pinger {
            runtime: self.runtime.clone(),
            every,
        })
    }

    /// A session for the request's client, or the response that refuses it.
    fn session(
        &self,
        request: &HttpRequest,
        via: Via,
        command: &str,
    ) -> Result<Session, Box<Response>> {
        let header = request.header("X-Auth-Token").map(|v| v.as_str());
        let token = request_token(header, request.url().query());
        let credentials = Credentials::Token(token.as_deref());
        Session::open(&self.hub, via, peer_ip(request), credentials).map_err(|e| {
            Box::new(failure(
                refusal_status(&e),
                command,
                None,
                &refusal_text(&e),
            ))
        })
    }

    /// On a secured server, `/stats` and `/metrics` want the server token,
    /// in `X-Auth-Token` or as `Authorization: Bearer` (what Prometheus sends).
    fn admin_only(&self, request: &HttpRequest) -> Result<(), Box<Response>> {
        let bearer = request
            .header("Authorization")
            .and_then(|v| v.as_str().trim().strip_prefix("Bearer "));
        let header = request
            .header("X-Auth-Token")
            .map(|v| v.as_str())
            .or(bearer);
        let token = request_token(header, request.url().query());
        (self.hub.check_admin_token(peer_ip(request), token.as_deref())).map_err(|e| {
            let text = match &e {
                mist_engine::Error::AuthRequired => "authentication required: send the server token in the X-Auth-Token header or as Authorization: Bearer TOKEN".to_string(),
                other => other.to_string(),
            };
            Box::new(failure(refusal_status(&e), "", None, &text))
        })
    }

    /// `POST /publish`: an HTTP publisher holds no subscriptions, so every
    /// matching subscriber receives the message.
    async fn publish(&self, mut request: HttpRequest) -> Response {
        let session = match self.session(&request, Via::Http, "publish") {
            Ok(session) => session,
            Err(refused) => return *refused,
        };
        let limit = self.hub.max_line();
        let mut body = Vec::new();
        let read = request
            .take_body()
            .take(limit as u64 + 1)
            .read_to_end(&mut body)
            .await;
        if let Err(e) = read {
            let status = match e.kind() {
                io::ErrorKind::TimedOut => StatusCode::RequestTimeout,
                _ => StatusCode::BadRequest,
            };
            let error = format!("cannot read the body: {e}");
            return failure(status, "publish", None, &error);
        }
        if body.len() > limit {
            let error = ProtoError::LineTooLong { limit };
            return failure(StatusCode::PayloadTooLarge, "publish", None, &error);
        }
        let request = match decode_document::<Publication>(&body) {
            Ok(publication) => publication.into_request(),
            Err(e) => return failure(StatusCode::BadRequest, "publish", None, &e),
        };
        let tags = request.tags.as_deref();
        match session.command(&request) {
            Ok(()) => json(
                StatusCode::Ok,
                serde_json::json!({"command": "publish", "tags": tags}).to_string(),
            ),
            Err(e) => failure(refusal_status(&e), "publish", tags, &e),
        }
    }

    /// `GET /subscribe?tags=a,b`: Server-Sent Events, one per delivery. The
    /// subscription is in place (on a node routing by tag, heard from the
    /// other nodes too) before the response starts.
    async fn events(&self, request: &HttpRequest) -> Response {
        let tags: Vec<String> = request
            .url()
            .query_pairs()
            .filter(|(key, _)| key == "tags")
            .flat_map(|(_, value)| value.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|tag| !tag.is_empty())
            .collect();
        let subscribe = Request::new("subscribe").tags(tags);
        let session = match self.session(request, Via::Sse, "subscribe") {
            Ok(session) => session,
            Err(refused) => return *refused,
        };
        if let Err(e) = session.command(&subscribe) {
            return failure(
                refusal_status(&e),
                "subscribe",
                subscribe.tags.as_deref(),
                &e,
            );
        }
        session.applied().await;
        // No room in the channel: a batch is handed over only when the body
        // takes it, so what the client has not read counts in its outbox.
        let (events, stream) = mpsc::channel(0);
        let keepalive = Keepalive {
            events: events.clone(),
            runtime: self.runtime.clone(),
            every: self.options.sse_keepalive,
        };
        self.runtime.spawn(async move {
            match session.run(keepalive, EventSink { events }).await {
                Err(e) if !is_disconnect(&e) => log::warn!("an SSE stream failed: {e}"),
                _ => log::debug!("an SSE client left"),
            }
        });
        let body = EventBody {
            events: stream,
            current: None,
        };
        let mut response = Response::new(StatusCode::Ok);
        response.set_body(Body::from_reader(body, None));
        response.set_content_type(Mime::from_str("text/event-stream").expect("a valid MIME type"));
        response.insert_header("Cache-Control", "no-cache");
        response
    }

    /// `GET /subscribe/websocket`: checks the handshake headers, answers 101,
    /// and hands the upgraded socket to the shared WebSocket transport.
    async fn websocket(&self, request: &HttpRequest) -> Response {
        let has = |name: &str, wanted: &str| {
            request.header(name).is_some_and(|values| {
                values
                    .iter()
                    .flat_map(|v| v.as_str().split(','))
                    .any(|v| v.trim().eq_ignore_ascii_case(wanted))
            })
        };
        let upgrade = has("Connection", "upgrade")
            && has("Upgrade", "websocket")
            && has("Sec-WebSocket-Version", "13");
        let key = match request.header("Sec-WebSocket-Key") {
            Some(key) if upgrade => key.as_str().to_string(),
            _ => {
                let error = "expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13, Sec-WebSocket-Key)";
                let mut response = failure(StatusCode::UpgradeRequired, "", None, &error);
                response.insert_header("Sec-WebSocket-Version", "13");
                return response;
            }
        };
        let session = match self.session(request, Via::WebSocket, "") {
            Ok(session) => session,
            Err(refused) => return *refused,
        };
        let mut response = Response::new(StatusCode::SwitchingProtocols);
        response.insert_header("Upgrade", "websocket");
        response.insert_header("Connection", "Upgrade");
        response.insert_header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
        let upgraded = response.recv_upgrade().await;
        let pinger = self.pinger();
        self.runtime.spawn(async move {
            if let Some(socket) = upgraded.await {
                match serve_websocket(session, socket, pinger).await {
                    Err(e) if !is_disconnect(&e) => {
                        log::warn!("a WebSocket client over HTTP failed: {e}")
                    }
                    _ => log::debug!("a WebSocket client over HTTP left"),
                }
            }
        });
        response
    }
}

/// The client's address, as the carrier recorded it.
fn peer_ip(request: &HttpRequest) -> Option<IpAddr> {
    let peer = request.peer_addr()?;
    peer.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer.parse::<IpAddr>())
        .ok()
}

/// The status that refuses a request for `error`: 401 without a valid
/// token, 403 for what the token may not do, 429 after too many failed
/// tokens, 503 when full, 400 for a malformed request.
fn refusal_status(error: &mist_engine::Error) -> StatusCode {
    use mist_engine::Error;
    match error {
        Error::AuthRequired
        | Error::BadToken
        | Error::BadSignedToken(_)
        | Error::TokenExpired
        | Error::TokenNotYetValid => StatusCode::Unauthorized,
        Error::PermissionDenied { .. } | Error::AdminOnly => StatusCode::Forbidden,
        Error::Throttled { .. } => StatusCode::TooManyRequests,
        Error::TooManyConnections { .. } | Error::ShuttingDown => StatusCode::ServiceUnavailable,
        _ => StatusCode::BadRequest,
    }
}

/// A JSON response.
fn json(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(status);
    response.set_body(body);
    response.set_content_type(http_types::mime::JSON);
    response
}

/// An error response whose body is the protocol's error frame.
fn failure(
    status: StatusCode,
    command: &str,
    tags: Option<&[String]>,
    error: &dyn std::fmt::Display,
) -> Response {
    json(status, error_body(command, tags, &error.to_string()))
}

/// The protocol's error frame as an HTTP body: the same JSON, no newline.
pub(crate) fn error_body(command: &str, tags: Option<&[String]>, error: &str) -> String {
    let frame = encode::error(command, tags, error);
    String::from_utf8_lossy(frame.strip_suffix(b"\n").unwrap_or(&frame)).into_owned()
}

/// An SSE client sends nothing after its request, and a client that went away
/// is only noticed when something is written to it. So the "input" of an SSE
/// session is a keepalive comment every so often: once writing it fails, the
/// client is gone and the session ends, even on a tag nobody publishes to.
struct Keepalive<R> {
    events: mpsc::Sender<Event>,
    runtime: R,
    every: Duration,
}

impl<R: Runtime> Inbound for Keepalive<R> {
    async fn receive(
        &mut self,
        _: &mut LineDecoder,
        _: &mut Vec<Result<Request, ProtoError>>,
    ) -> io::Result<bool> {
        self.runtime.sleep(self.every).await;
        let comment = Bytes::from_static(b": keepalive\n\n");
        Ok(hand_over(&mut self.events, comment).await.is_ok())
    }
}

/// Bytes for the response body, and the signal that the body took all of
/// them.
type Event = (Bytes, oneshot::Sender<()>);

/// Hands `bytes` to the response body and waits until it has taken them
/// all, so that a batch counts in the client's outbox until then.
async fn hand_over(events: &mut mpsc::Sender<Event>, bytes: Bytes) -> io::Result<()> {
    let left = || io::Error::new(io::ErrorKind::BrokenPipe, "the SSE client left");
    let (taken, is_taken) = oneshot::channel();
    events.send((bytes, taken)).await.map_err(|_| left())?;
    is_taken.await.map_err(|_| left())
}

/// Frames as SSE events into the response body; a closed body means the
/// client left.
struct EventSink {
    events: mpsc::Sender<Event>,
}

impl Outbound for EventSink {
    async fn send(&mut self, batch: &mut Batch) -> io::Result<()> {
        let mut events = Vec::with_capacity(batch.as_bytes().len() + 8 * batch.frames());
        for line in batch.lines() {
            // A frame is one line of JSON: it needs a single `data:` field.
            events.extend_from_slice(b"data: ");
            events.extend_from_slice(line);
            events.extend_from_slice(b"\n\n");
        }
        hand_over(&mut self.events, Bytes::from(events)).await
    }
}

/// The SSE response body: the events handed over, one batch at a time.
struct EventBody {
    events: mpsc::Receiver<Event>,
    current: Option<Event>,
}

impl AsyncRead for EventBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(available)) => available,
            other => return other.map(|r| r.map(|_| 0)),
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl AsyncBufRead for EventBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        loop {
            if this
                .current
                .as_ref()
                .is_some_and(|(bytes, _)| !bytes.is_empty())
            {
                break;
            }
            // The batch before is all taken: say so, and wait for the next.
            if let Some((_, taken)) = this.current.take() {
                let _ = taken.send(());
            }
            match this.events.poll_next_unpin(cx) {
                Poll::Ready(Some(event)) => this.current = Some(event),
                Poll::Ready(None) => return Poll::Ready(Ok(&[])),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(this
            .current
            .as_ref()
            .map_or(&[][..], |(bytes, _)| bytes)))
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        if let Some((bytes, _)) = &mut self.get_mut().current {
            bytes.advance(amount.min(bytes.len()));
        }
    }
}
