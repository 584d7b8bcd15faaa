//! How protocol lines cross the connection: as they are (`tcp://`,
//! `tls://`), or one per WebSocket text frame (`ws://`, `wss://`).
//!
//! Either way the rest of the client sees lines: what a WebSocket frame
//! carries is handed on with a `\n` after it, so one decoder reads both.
//! tungstenite does the WebSocket framing; [`Bridge`] lends it the async
//! stream as a `std::io` one, a pending poll reading as `WouldBlock`.
//! tungstenite keeps a frame it read in part, so a read timed out on a
//! blocking socket loses nothing and can be tried again.

use crate::Error;
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tungstenite::error::ProtocolError;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error as WsError, Message as WsMessage, WebSocket};

/// A connection's framing, over the stream `S`.
pub(crate) enum Wire<S> {
    /// Lines as they are.
    Lines(S),
    /// One line per WebSocket text frame.
    WebSocket(Box<WebSocket<Bridge<S>>>),
}

/// What one read from the server gave.
pub(crate) enum Got {
    /// This many bytes of lines in the buffer.
    Bytes(usize),
    /// A WebSocket frame's text, with a `\n` after it, in the frame buffer.
    Frame,
    /// The server closed the connection.
    Closed,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// WebSocket's opening handshake for `url` over `stream`, with `token`
    /// in the `X-Auth-Token` header.
    pub(crate) async fn websocket(
        stream: S,
        url: &str,
        token: Option<&str>,
        max_message: usize,
    ) -> Result<Wire<S>, Error> {
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url)
            .map_err(|e| Error::Config(format!("{url} is not a WebSocket URL: {e}")))?;
        if let Some(token) = token {
            let value = token.parse().map_err(|_| {
                Error::Config("the token has characters an HTTP header cannot carry".into())
            })?;
            request.headers_mut().insert("X-Auth-Token", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let bridge = Bridge::new(stream);
        let mut state = Some(tungstenite::client::client_with_config(
            request,
            bridge,
            Some(config),
        ));
        // The first try ran with no waker: each poll tries again with the
        // caller's, and waits only on a stream that has it.
        let socket = poll_fn(|cx| match state.take().expect("polled after completion") {
            Ok((socket, _response)) => Poll::Ready(Ok(socket)),
            Err(HandshakeError::Failure(e)) => Poll::Ready(Err(refusal(e))),
            Err(HandshakeError::Interrupted(mut mid)) => {
                let bridge = stream_of(&mut mid);
                bridge.waker = cx.waker().clone();
                bridge.pending = false;
                match mid.handshake() {
                    Err(HandshakeError::Interrupted(mut mid)) => {
                        if !stream_of(&mut mid).pending {
                            return Poll::Ready(Err(Error::Io(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "the WebSocket handshake timed out",
                            ))));
                        }
                        state = Some(Err(HandshakeError::Interrupted(mid)));
                        Poll::Pending
                    }
                    Ok((socket, _response)) => Poll::Ready(Ok(socket)),
                    Err(HandshakeError::Failure(e)) => Poll::Ready(Err(refusal(e))),
                }
            }
        })
        .await?;
        Ok(Wire::WebSocket(Box::new(socket)))
    }

    /// Writes `lines` (whole lines; a WebSocket sends each as a frame).
    pub(crate) async fn write(&mut self, lines: &[u8]) -> Result<(), Error> {
        match self {
            Wire::Lines(stream) => {
                stream.write_all(lines).await.map_err(Error::Io)?;
                stream.flush().await.map_err(Error::Io)
            }
            Wire::WebSocket(socket) => {
                for line in lines.split(|&b| b == b'\n') {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let text = std::str::from_utf8(line)
                        .map_err(|_| Error::Config("a WebSocket text frame must be UTF-8".into()))?
                        .to_string();
                    let mut frame = Some(WsMessage::text(text));
                    drive(socket, |ws| match frame.take() {
                        Some(frame) => ws.write(frame),
                        None => Ok(()),
                    })
                    .await?;
                }
                drive(socket, |ws| ws.flush()).await
            }
        }
    }

    /// Reads what the server sent next into `buf`, or the text of its
    /// next frame into `text` (a WebSocket frame may be larger than `buf`).
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        text: &mut Vec<u8>,
    ) -> Poll<Result<Got, Error>> {
        match self {
            Wire::Lines(stream) => match Pin::new(stream).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => Poll::Ready(Ok(Got::Closed)),
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(Got::Bytes(n))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => Poll::Pending,
            },
            Wire::WebSocket(socket) => loop {
                let message = match poll_drive(socket, cx, |ws| ws.read()) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(Error::Closed)) => return Poll::Ready(Ok(Got::Closed)),
                    Poll::Ready(other) => other?,
                };
                match message {
                    WsMessage::Text(frame) => {
                        text.clear();
                        text.extend_from_slice(frame.as_bytes());
                        text.push(b'\n');
                        return Poll::Ready(Ok(Got::Frame));
                    }
                    WsMessage::Binary(_) => {
                        return Poll::Ready(Err(Error::Protocol(
                            "a binary WebSocket frame (mist sends text)".into(),
                        )))
                    }
                    WsMessage::Close(_) => return Poll::Ready(Ok(Got::Closed)),
                    // tungstenite answers pings itself.
                    WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
                }
            },
        }
    }

    /// Says goodbye: a WebSocket close frame (normal closure), or the
    /// stream closed for writing.
    pub(crate) async fn close(&mut self) -> Result<(), Error> {
        match self {
            Wire::Lines(stream) => stream.close().await.map_err(Error::Io),
            Wire::WebSocket(socket) => {
                let mut first = true;
                let closing = drive(socket, |ws| {
                    if std::mem::take(&mut first) {
                        ws.close(None)
                    } else {
                        ws.flush()
                    }
                })
                .await;
                match closing {
                    Err(Error::Closed) => Ok(()),
                    other => other,
                }
            }
        }
    }

    /// The stream under the framing.
    pub(crate) fn stream_ref(&self) -> &S {
        match self {
            Wire::Lines(stream) => stream,
            Wire::WebSocket(socket) => &socket.get_ref().stream,
        }
    }

    /// The stream under the framing (a WebSocket's frame read in part is
    /// dropped).
    pub(crate) fn into_inner(self) -> S {
        match self {
            Wire::Lines(stream) => stream,
            Wire::WebSocket(socket) => socket.into_inner().stream,
        }
    }
}

fn stream_of<S: AsyncRead + AsyncWrite + Unpin>(
    mid: &mut MidHandshake<ClientHandshake<Bridge<S>>>,
) -> &mut Bridge<S> {
    mid.get_mut().get_mut()
}

/// A failed opening handshake, as the caller can act on it.
fn refusal(e: WsError) -> Error {
    match e {
        WsError::Http(response) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .trim()
                .to_string();
            // The body, the server's reason, comes only if it was read
            // with the head: the status says it in short.
            let reason = if body.is_empty() {
                match status.as_u16() {
                    401 => "authentication failed: the token was refused",
                    403 => "forbidden: the server does not allow this origin",
                    404 => "no WebSocket endpoint at this path: use /subscribe/websocket",
                    429 => "too many failed attempts from this address: wait a while",
                    503 => "the server is full or shutting down",
                    _ => "",
                }
            } else {
                &body
            };
            let message = format!("the WebSocket upgrade was refused with HTTP {status}: {reason}");
            let message = message.trim_end_matches([':', ' ']).to_string();
            Error::Server {
                command: "connect".into(),
                message,
            }
        }
        WsError::Io(e) => Error::Io(e),
        other => Error::Protocol(format!("the WebSocket handshake failed: {other}")),
    }
}

/// Runs `op` on the socket until it no longer waits on the stream.
async fn drive<S, T>(
    socket: &mut WebSocket<Bridge<S>>,
    mut op: impl FnMut(&mut WebSocket<Bridge<S>>) -> Result<T, WsError>,
) -> Result<T, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(|cx| poll_drive(socket, cx, &mut op)).await
}

/// Runs `op` on the socket once, with `cx`'s waker lent to the stream.
fn poll_drive<S, T>(
    socket: &mut WebSocket<Bridge<S>>,
    cx: &mut Context<'_>,
    op: impl FnOnce(&mut WebSocket<Bridge<S>>) -> Result<T, WsError>,
) -> Poll<Result<T, Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bridge = socket.get_mut();
    if !bridge.waker.will_wake(cx.waker()) {
        bridge.waker = cx.waker().clone();
    }
    bridge.pending = false;
    match op(socket) {
        Ok(value) => Poll::Ready(Ok(value)),
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
            if socket.get_ref().pending {
                Poll::Pending
            } else {
                // The stream itself said so: a blocking socket's timeout.
                Poll::Ready(Err(Error::Io(e)))
            }
        }
        Err(
            WsError::ConnectionClosed
            | WsError::AlreadyClosed
            | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        ) => Poll::Ready(Err(Error::Closed)),
        Err(WsError::Io(e)) => Poll::Ready(Err(Error::Io(e))),
        Err(e) => Poll::Ready(Err(Error::Protocol(format!("WebSocket: {e}")))),
    }
}

/// An async stream lent to tungstenite as a `std::io` one: a poll that is
/// pending reads as `WouldBlock`, and is remembered, so that a `WouldBlock`
/// the stream itself returned (a blocking socket's timeout) is told apart.
pub(crate) struct Bridge<S> {
    stream: S,
    waker: Waker,
    pending: bool,
}

impl<S> Bridge<S> {
    fn new(stream: S) -> Bridge<S> {
        Bridge {
            stream,
            waker: Waker::noop().clone(),
            pending: false,
        }
    }

    fn poll<T>(
        &mut self,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T>
    where
        S: Unpin,
    {
        let mut cx = Context::from_waker(&self.waker);
        match f(Pin::new(&mut self.stream), &mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                self.pending = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

impl<S: AsyncRead + Unpin> Read for Bridge<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.poll(|stream, cx| stream.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> Write for Bridge<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.poll(|stream, cx| stream.poll_write(cx, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll(|stream, cx| stream.poll_flush(cx))
    }
}
