//! The WebSocket transport: each text frame carries one JSON message (or
//! several, separated by newlines); each reply and delivery is one text frame.
//!
//! Shared by every runtime: [`accept_websocket`] for a `ws://` listener, which
//! does the handshake itself, and [`serve_websocket`] for a socket an HTTP
//! server has already upgraded.

use crate::{
    check_origin, refusal_text, request_token, Hub, Inbound, ListenerOptions, Outbound, Runtime,
    Session, Via,
};
use async_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as Handshake, Response,
};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncWrite};
use futures::{FutureExt, SinkExt, StreamExt};
use mist_engine::{Batch, Credentials};
use mist_proto::{LineDecoder, ProtoError, Request};
use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Paths a WebSocket client may connect to: the original mist's, and the root.
pub const WEBSOCKET_PATHS: [&str; 2] = ["/subscribe/websocket", "/"];

/// Room for the frames of a message up to the line limit (several messages
/// may share a frame, each still bounded by the limit), and small buffers,
/// so that an idle WebSocket client costs little.
fn config(hub: &Hub) -> WebSocketConfig {
    let limit = hub.max_line().saturating_add(1024);
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
}

/// The WebSocket library reads into a buffer of this size, and grows it
/// only for a larger frame.
const READ_BUFFER: usize = 4 * 1024;
/// Frames are written once this much is buffered, and at every flush.
const WRITE_BUFFER: usize = 16 * 1024;

/// Performs the handshake of a client of a `ws://` listener at `peer`, then
/// serves it. A page from an origin `options` does not allow gets 403; on a
/// secured hub the handshake must carry a valid token (`X-Auth-Token` header
/// or `x-auth-token` query parameter), else the answer is 401 and no socket.
pub async fn accept_websocket<S, R>(
    hub: &Arc<Hub>,
    stream: S,
    peer: Option<IpAddr>,
    options: &ListenerOptions,
    pinger: Option<Pinger<R>>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    R: Runtime,
{
    match websocket_handshake(hub, stream, peer, options).await? {
        Some(opened) => opened.run(pinger).await,
        None => Ok(()),
    }
}

/// A client past its WebSocket handshake, with its session open; see
/// [`websocket_handshake`].
pub struct Opened<S> {
    session: Session,
    socket: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Opened<S> {
    /// Serves the client until it leaves.
    pub async fn run<R: Runtime>(self, pinger: Option<Pinger<R>>) -> io::Result<()> {
        run(self.session, self.socket, pinger).await
    }
}

/// The handshake of [`accept_websocket`], apart, so that a server can bound
/// it in time and free what it took before serving the client. `None` when
/// the handshake was answered with a refusal.
pub async fn websocket_handshake<S>(
    hub: &Arc<Hub>,
    stream: S,
    peer: Option<IpAddr>,
    options: &ListenerOptions,
) -> io::Result<Option<Opened<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = None;
    // The callback's signature is tungstenite's; its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let check = |request: &Handshake, response: Response| -> Result<Response, ErrorResponse> {
        if !WEBSOCKET_PATHS.contains(&request.uri().path()) {
            let error = format!(
                "no WebSocket endpoint at {}; use /subscribe/websocket",
                request.uri().path()
            );
            return Err(refusal(StatusCode::NOT_FOUND, &error));
        }
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        if let Err(error) = check_origin(
            header("origin"),
            header("host"),
            &options.allowed_origins.get(),
        ) {
            return Err(refusal(StatusCode::FORBIDDEN, &error));
        }
        let token = request_token(header("x-auth-token"), request.uri().query());
        let credentials = Credentials::Token(token.as_deref());
        match Session::open(hub, Via::WebSocket, peer, credentials) {
            Ok(opened) => {
                session = Some(opened);
                Ok(response)
            }
            Err(e) => Err(refusal(refusal_status(&e), &refusal_text(&e))),
        }
    };
    let socket = async_tungstenite::accept_hdr_async_with_config(stream, check, Some(config(hub)))
        .await
        .map_err(into_io)?;
    Ok(session.map(|session| Opened { session, socket }))
}

/// The status that refuses a WebSocket client for `error`.
fn refusal_status(error: &mist_engine::Error) -> StatusCode {
    match error {
        mist_engine::Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        mist_engine::Error::TooManyConnections { .. } | mist_engine::Error::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// A handshake refused with `status` and the protocol's error frame as body.
fn refusal(status: StatusCode, error: &str) -> ErrorResponse {
    let mut refusal = ErrorResponse::new(Some(crate::http_service::error_body("", None, error)));
    *refusal.status_mut() = status;
    refusal
}

/// Serves a client whose HTTP connection was already upgraded to WebSocket,
/// with the session opened (and its token checked) before the upgrade.
pub async fn serve_websocket<S, R>(
    session: Session,
    upgraded: S,
    pinger: Option<Pinger<R>>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    R: Runtime,
{
    let config = config(session.hub());
    let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config)).await;
    run(session, socket, pinger).await
}

/// Server pings on a WebSocket: one every `every`; a client that sends
/// nothing at all, not even the pong, for twice that long is closed, so a
/// peer that stopped answering does not keep its outbox alive.
#[derive(Clone)]
pub struct Pinger<R> {
    /// Timers for the pings and the deadline.
    pub runtime: R,
    /// The time between pings.
    pub every: Duration,
}

async fn run<S, R>(
    session: Session,
    socket: WebSocketStream<S>,
    pinger: Option<Pinger<R>>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    R: Runtime,
{
    let (sink, stream) = socket.split();
    let inbound = WsInbound {
        stream,
        pinger: pinger.clone(),
        last_heard: Instant::now(),
        frame: None,
    };
    let outbound = WsOutbound {
        sink,
        next_ping: pinger.as_ref().map(|p| Instant::now() + p.every),
        pinger,
    };
    session.run(inbound, outbound).await
}

struct WsInbound<S, R> {
    stream: WebSocketReceiver<S>,
    pinger: Option<Pinger<R>>,
    last_heard: Instant,
    /// A text frame not yet decoded to its end, and how far it is.
    frame: Option<(Utf8Bytes, usize)>,
}

/// A large text frame is decoded this much at a time, each part applied
/// before the next is decoded, so that a frame full of small commands never
/// sits in memory as a mass of decoded requests.
const DECODE_STEP: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin + Send, R: Runtime> WsInbound<S, R> {
    /// The client's next frame; with a pinger, an error once it has been
    /// silent for two ping intervals.
    async fn next(&mut self) -> io::Result<Option<Result<Message, WsError>>> {
        let Some(pinger) = self.pinger.clone() else {
            return Ok(self.stream.next().await);
        };
        loop {
            let tick = pin!(pinger.runtime.sleep(pinger.every));
            match select(self.stream.next(), tick).await {
                Either::Left((message, _)) => {
                    self.last_heard = Instant::now();
                    return Ok(message);
                }
                Either::Right(((), _)) if self.last_heard.elapsed() >= pinger.every * 2 => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the WebSocket client stopped answering pings",
                    ));
                }
                Either::Right(_) => {}
            }
        }
    }
}

/// Frames that one receive takes at most, when they are there already.
const FRAMES_PER_RECEIVE: usize = 1024;

impl<S: AsyncRead + AsyncWrite + Unpin + Send, R: Runtime> Inbound for WsInbound<S, R> {
    /// Decodes the client's next frame, and the frames that arrived with
    /// it (up to [`DECODE_STEP`] bytes and [`FRAMES_PER_RECEIVE`] frames):
    /// one frame holds one message, so a publisher's burst is applied as a
    /// batch and its deliveries written together, as the line protocol's
    /// reads are.
    async fn receive(
        &mut self,
        decoder: &mut LineDecoder,
        out: &mut Vec<Result<Request, ProtoError>>,
    ) -> io::Result<bool> {
        let mut budget = DECODE_STEP;
        // Whether this receive has input in hand, so must not wait.
        let mut holding = false;
        for taken in 0..=FRAMES_PER_RECEIVE {
            if let Some((text, at)) = self.frame.take() {
                holding = true;
                let end = (at + budget).min(text.len());
                decoder.decode(&text.as_bytes()[at..end], out);
                budget -= end - at;
                if end < text.len() {
                    self.frame = Some((text, end));
                    return Ok(true);
                }
                // A frame ends its last message, newline or not.
                decoder.decode(b"\n", out);
            }
            if budget == 0 || taken == FRAMES_PER_RECEIVE {
                break;
            }
            let message = if !holding {
                match self.next().await? {
                    Some(message) => message,
                    None => return Ok(false),
                }
            } else {
                // Only what is there already: never wait with a batch in hand.
                match self.stream.next().now_or_never() {
                    Some(Some(message)) => {
                        if self.pinger.is_some() {
                            self.last_heard = Instant::now();
                        }
                        message
                    }
                    Some(None) => return Ok(false),
                    None => break,
                }
            };
            holding = true;
            match message {
                Ok(Message::Text(text)) => self.frame = Some((text, 0)),
                Ok(Message::Binary(_)) => out.push(Err(ProtoError::BinaryFrame)),
                // Pings are answered by the WebSocket layer itself.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(_)) => return Ok(false),
                Err(WsError::Capacity(_)) => {
                    // The stream cannot be resynchronised after an oversized
                    // frame: answer it, then close.
                    out.push(Err(ProtoError::LineTooLong {
                        limit: decoder.max_line(),
                    }));
                    return Ok(false);
                }
                Err(e) => return disconnected(e).map(|()| false),
            }
        }
        Ok(true)
    }
}

struct WsOutbound<S, R> {
    sink: WebSocketSender<S>,
    pinger: Option<Pinger<R>>,
    /// When the next ping is due. Pings keep their pace however busy the
    /// connection is, since only the client's own frames prove it alive.
    next_ping: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, R: Runtime> WsOutbound<S, R> {
    /// Queues a ping if one is due.
    async fn ping_if_due(&mut self) -> io::Result<()> {
        let (Some(pinger), Some(due)) = (&self.pinger, self.next_ping) else {
            return Ok(());
        };
        if Instant::now() < due {
            return Ok(());
        }
        self.next_ping = Some(Instant::now() + pinger.every);
        self.sink
            .feed(Message::Ping(Bytes::new()))
            .await
            .or_else(disconnected)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, R: Runtime> Outbound for WsOutbound<S, R> {
    async fn idle(&mut self) -> io::Result<()> {
        let (Some(pinger), Some(due)) = (&self.pinger, self.next_ping) else {
            return futures::future::pending().await;
        };
        pinger
            .runtime
            .sleep(due.saturating_duration_since(Instant::now()))
            .await;
        self.ping_if_due().await?;
        self.sink.flush().await.or_else(disconnected)
    }

    async fn send(&mut self, batch: &mut Batch) -> io::Result<()> {
        for line in batch.take_lines() {
            let text = Utf8Bytes::try_from(line).map_err(io::Error::other)?;
            self.sink
                .feed(Message::Text(text))
                .await
                .or_else(disconnected)?;
        }
        self.ping_if_due().await?;
        self.sink.flush().await.or_else(disconnected)
    }

    async fn finish(&mut self) -> io::Result<()> {
        // The client may already have closed; nothing is lost either way.
        let _ = self.sink.close(None).await;
        Ok(())
    }
}

/// Maps a WebSocket error to the transport error it stands for. A client going
/// away (close codes 1001/1005/1006, a reset) is an ordinary disconnect.
fn disconnected(e: WsError) -> io::Result<()> {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Ok(()),
        WsError::Protocol(p) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, p)),
        other => Err(into_io(other)),
    }
}

fn into_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(io) => io,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_tungstenite::tungstenite::protocol::WebSocket;
    use futures::executor::block_on;

    /// A runtime for a test that needs none: no pinger, no sockets.
    #[derive(Clone)]
    struct NoRuntime;

    impl Runtime for NoRuntime {
        type Listener = ();
        type Stream = futures::io::Cursor<Vec<u8>>;
        fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, _: F) {
            unreachable!("nothing is spawned")
        }
        fn sleep(&self, _: Duration) -> impl std::future::Future<Output = ()> + Send {
            futures::future::pending()
        }
        fn listener(&self, _: std::net::TcpListener) -> io::Result<()> {
            Err(io::ErrorKind::Unsupported.into())
        }
        #[allow(clippy::manual_async_fn)]
        fn accept(
            _: &(),
        ) -> impl std::future::Future<Output = io::Result<(Self::Stream, std::net::SocketAddr)>> + Send
        {
            async { Err(io::ErrorKind::Unsupported.into()) }
        }
    }

    /// What a client sent, frame by frame, as the server reads it.
    fn inbound(texts: &[String]) -> WsInbound<futures::io::Cursor<Vec<u8>>, NoRuntime> {
        let mut client =
            WebSocket::from_raw_socket(std::io::Cursor::new(Vec::new()), Role::Client, None);
        for text in texts {
            client.send(Message::text(text.as_str())).unwrap();
        }
        client.close(None).unwrap();
        client.flush().unwrap();
        let wire = client.get_ref().get_ref().clone();
        let socket = block_on(WebSocketStream::from_raw_socket(
            futures::io::Cursor::new(wire),
            Role::Server,
            None,
        ));
        WsInbound {
            stream: socket.split().1,
            pinger: None,
            last_heard: Instant::now(),
            frame: None,
        }
    }

    fn publish(data: &str) -> String {
        String::from_utf8(Request::new("publish").tags(["t"]).data(data).to_line()).unwrap()
    }

    #[test]
    fn frames_that_arrived_together_are_decoded_together() {
        let burst: Vec<String> = (0..10).map(|i| publish(&i.to_string())).collect();
        let mut inbound = inbound(&burst);
        let mut decoder = LineDecoder::new(1 << 20);
        let mut out = Vec::new();
        let open = block_on(inbound.receive(&mut decoder, &mut out)).unwrap();
        assert_eq!(out.len(), 10, "one receive, the whole burst");
        assert!(!open, "and the close behind it");
    }

    #[test]
    fn a_receive_takes_no_more_than_its_step() {
        let big = publish(&"x".repeat(DECODE_STEP * 2 / 3));
        let mut inbound = inbound(&[big.clone(), big.clone(), big]);
        let mut decoder = LineDecoder::new(1 << 20);
        let mut taken = Vec::new();
        loop {
            let mut out = Vec::new();
            let open = block_on(inbound.receive(&mut decoder, &mut out)).unwrap();
            taken.push(out.len());
            if !open {
                break;
            }
        }
        // The first frame and a third of the second, then the rest of the
        // second and a third of the third, then what is left and the close.
        assert_eq!(taken, [1, 1, 1], "{taken:?}");
    }
}
