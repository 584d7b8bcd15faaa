//! What every runtime does with a socket its listener accepted: count it
//! against the connection limit (or refuse it in its own protocol's terms),
//! bound what it may send and how long it may take before it is in, serve
//! it, and log its life without letting a hostile client flood the log.

use crate::connection::serve_stream;
use crate::guard::{watch, Guarded};
use crate::listener::ListenerSpec;
use crate::log_limit::LogLimit;
use crate::tls::TlsStream;
use crate::{log_limited, websocket_handshake, Hub, ListenerOptions, Pinger, Runtime, Via};
use futures::future::{select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use http_types::{Request as HttpRequest, Response};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// How long an accept loop pauses after an accept error such as running out
/// of file descriptors, instead of spinning on it.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long, and for how many bytes, a refused client is listened to while
/// its last answer reaches it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Warnings a client can cause at will: one per period each.
static FAILURES: LogLimit = LogLimit::new(Duration::from_secs(10));
static REFUSALS: LogLimit = LogLimit::new(Duration::from_secs(10));
static ACCEPT_ERRORS: LogLimit = LogLimit::new(Duration::from_secs(10));

/// A server's listeners as their accept loops see them: the hub, the
/// listener options and the runtime's timers.
#[derive(Clone)]
pub struct Listening<R> {
    /// The broker.
    pub hub: Arc<Hub>,
    /// How listeners treat their clients.
    pub options: Arc<ListenerOptions>,
    /// Timers and spawning.
    pub runtime: R,
}

impl<R: Runtime> Listening<R> {
    /// Serves one accepted socket of a `tcp://` or `ws://` listener until the
    /// client leaves. Over the connection limit or during shutdown it is
    /// refused: an error line, or a `503` to a WebSocket handshake.
    /// `via` says how it speaks: [`Via::Tcp`] lines, or a WebSocket
    /// handshake then one message per text frame ([`Via::WebSocket`]).
    pub async fn serve<S>(&self, via: Via, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
    {
        // The rare and the larger paths are boxed: a task's future is as
        // large as its largest path, and every idle connection keeps one.
        let admission = match self.hub.admit() {
            Ok(admission) => admission,
            Err(e) => {
                let answer = refusal(via == Via::Tcp, peer, &e);
                return Box::pin(self.answer_and_close(stream, &answer)).await;
            }
        };
        self.serve_admitted(via, stream, peer).await;
        drop(admission);
    }

    /// [`Listening::serve`] for a socket counted against the limit already.
    async fn serve_admitted<S>(&self, via: Via, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
    {
        log::debug!("{peer} connected ({via:?})");
        let outcome = match via {
            Via::WebSocket => Box::pin(self.handshake(stream, peer)).await,
            _ => serve_stream(&self.hub, Some(peer.ip()), stream).await,
        };
        report(peer, outcome);
    }

    /// Serves one accepted socket of a `tls://`, `wss://` or `https://`
    /// listener: counted against the connection limit (over it, closed:
    /// answering would cost a handshake), then its TLS handshake, bounded
    /// by `handshake_timeout`, then what the plain listener would serve
    /// over the encrypted stream. A failed handshake (a plaintext client,
    /// a client without a required certificate) is logged at debug level
    /// and closes that connection alone.
    pub async fn serve_tls<S, F, Fut>(&self, via: Via, stream: S, peer: SocketAddr, respond: F)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
        F: Fn(HttpRequest) -> Fut,
        Fut: Future<Output = http_types::Result<Response>>,
    {
        let Some(tls) = &self.options.tls else {
            log::error!("{peer}: a TLS listener without TLS settings; closing");
            return;
        };
        let admission = match self.hub.admit() {
            Ok(admission) => admission,
            Err(e) => {
                log_limited!(REFUSALS, log::Level::Warn, "{peer}: refused: {e}");
                return;
            }
        };
        let handshake = tls.acceptor().accept(stream);
        let timeout = self.runtime.sleep(self.options.handshake_timeout);
        let stream = match select(handshake, pin!(timeout)).await {
            Either::Left((Ok(stream), _)) => TlsStream::new(stream),
            Either::Left((Err(e), _)) => {
                log::debug!("{peer}: TLS handshake failed: {e}");
                return;
            }
            Either::Right(((), _)) => {
                log::debug!("{peer}: TLS handshake did not finish in time");
                return;
            }
        };
        match via {
            Via::Http | Via::Sse => self.serve_http_admitted(stream, peer, respond).await,
            via => self.serve_admitted(via, stream, peer).await,
        }
        drop(admission);
    }

    /// A `ws://` client: its handshake bounded in bytes and time, then the
    /// WebSocket session. The handshake runs boxed, so what it took is
    /// given back before the session starts, for as long as it lasts.
    async fn handshake<S>(&self, stream: S, peer: SocketAddr) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
    {
        let guarded = Guarded::new(stream, self.options.handshake_limits());
        let opening = Box::pin(async {
            let handshake =
                websocket_handshake(&self.hub, guarded.clone(), Some(peer.ip()), &self.options);
            match select(pin!(handshake), pin!(watch(&guarded, &self.runtime))).await {
                Either::Left((outcome, _)) => outcome,
                Either::Right(((), _)) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the WebSocket handshake did not finish in time",
                )),
            }
        });
        let opened = opening.await;
        if !matches!(opened, Ok(Some(_))) {
            Box::pin(self.answer_refusal(guarded, peer)).await;
        }
        match opened? {
            Some(opened) => opened.run(self.pinger()).await,
            None => Ok(()),
        }
    }

    /// Serves one accepted socket of an `http://` listener: each request,
    /// its head and body bounded in bytes and time, goes to `respond`
    /// with the client's address recorded on it.
    pub async fn serve_http<S, F, Fut>(&self, stream: S, peer: SocketAddr, respond: F)
    where
        S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
        F: Fn(HttpRequest) -> Fut,
        Fut: Future<Output = http_types::Result<Response>>,
    {
        let admission = match self.hub.admit() {
            Ok(admission) => admission,
            Err(e) => {
                let answer = refusal(false, peer, &e);
                return self.answer_and_close(stream, &answer).await;
            }
        };
        self.serve_http_admitted(stream, peer, respond).await;
        drop(admission);
    }

    /// [`Listening::serve_http`] for a socket counted against the limit
    /// already.
    async fn serve_http_admitted<S, F, Fut>(&self, stream: S, peer: SocketAddr, respond: F)
    where
        S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
        F: Fn(HttpRequest) -> Fut,
        Fut: Future<Output = http_types::Result<Response>>,
    {
        log::debug!("{peer} connected (Http)");
        let guarded = Guarded::new(stream, self.options.http_limits());
        let serving = async_h1::accept(guarded.clone(), |mut request| {
            request.set_peer_addr(Some(peer));
            respond(request)
        });
        match select(pin!(serving), pin!(watch(&guarded, &self.runtime))).await {
            Either::Left((Ok(()), _)) => log::debug!("{peer} disconnected"),
            Either::Left((Err(e), _)) => log::debug!("{peer}: HTTP connection ended: {e}"),
            Either::Right(((), _)) => log::debug!("{peer}: HTTP request timed out"),
        }
        self.answer_refusal(guarded, peer).await;
    }

    /// Sends the response for a request the guard ended (too large a head,
    /// too slow a head or body), if the HTTP layer could not.
    async fn answer_refusal<S>(&self, guarded: Guarded<S>, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some((refusal, response)) = guarded.refusal() {
            log_limited!(REFUSALS, log::Level::Warn, "{peer}: {refusal:?}; closing");
            self.answer_and_close(guarded, &response).await;
        }
    }

    /// Sends a last `answer` to a client that may still be sending, then
    /// ends the connection gently: stops writing, reads and drops what still
    /// comes for a moment, then closes. Closed at once, a socket with unread
    /// bytes is reset, and the client may never see the answer.
    async fn answer_and_close<S>(&self, mut stream: S, answer: &[u8])
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // A socket's send buffer takes this much without waiting on the client.
        let _ = stream.write_all(answer).await;
        let _ = stream.close().await;
        let drain = async {
            let mut buf = [0u8; 4096];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        select(pin!(drain), pin!(self.runtime.sleep(LINGER))).await;
    }

    /// The pings for WebSocket clients, if they are on.
    pub fn pinger(&self) -> Option<Pinger<R>> {
        self.options.ws_keepalive.map(|every| Pinger {
            runtime: self.runtime.clone(),
            every,
        })
    }

    /// Accepts clients of one listener with `accept` until the task is
    /// dropped, serving each in a task of its own as the listener's scheme
    /// says: lines for `tcp`, a WebSocket for `ws`, HTTP requests answered
    /// by `respond` for `http`, and each of them over TLS for `tls`, `wss`
    /// and `https`.
    pub async fn accept_loop<S, A, AF, H, HF>(self, spec: ListenerSpec, mut accept: A, respond: H)
    where
        S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
        A: FnMut() -> AF,
        AF: Future<Output = io::Result<(S, SocketAddr)>>,
        H: Fn(HttpRequest) -> HF + Clone + Send + Sync + 'static,
        HF: Future<Output = http_types::Result<Response>> + Send + 'static,
    {
        // How the listener's clients speak, and whether over TLS.
        let (via, tls) = match spec.scheme.as_str() {
            "tls" => (Via::Tcp, true),
            "wss" => (Via::WebSocket, true),
            "https" => (Via::Http, true),
            "http" => (Via::Http, false),
            "ws" => (Via::WebSocket, false),
            _ => (Via::Tcp, false),
        };
        loop {
            let (stream, peer) = match accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    self.accept_failed(&spec, e).await;
                    continue;
                }
            };
            // A task per kind: an idle client's task is only as large as
            // its own kind of service (a WebSocket's is far smaller than
            // an HTTP or a TLS one).
            let listening = self.clone();
            match (via, tls) {
                (via, true) => {
                    let respond = respond.clone();
                    self.runtime.spawn(async move {
                        listening.serve_tls(via, stream, peer, respond).await
                    });
                }
                (Via::Http, false) => {
                    let respond = respond.clone();
                    self.runtime
                        .spawn(async move { listening.serve_http(stream, peer, respond).await });
                }
                (via, false) => self
                    .runtime
                    .spawn(async move { listening.serve(via, stream, peer).await }),
            }
        }
    }

    /// What an accept loop does when accepting fails (out of file
    /// descriptors, say): says so, at most once in a while, and pauses.
    async fn accept_failed(&self, listener: &ListenerSpec, e: io::Error) {
        log_limited!(
            ACCEPT_ERRORS,
            log::Level::Error,
            "accepting on {listener} failed: {e}; retrying shortly"
        );
        self.runtime.sleep(ACCEPT_BACKOFF).await;
    }
}

/// The answer that refuses a socket the server cannot take: an error line
/// for the line protocol, else a `503`.
fn refusal(lines: bool, peer: SocketAddr, error: &mist_engine::Error) -> Vec<u8> {
    log_limited!(REFUSALS, log::Level::Warn, "{peer}: refused: {error}");
    let text = error.to_string();
    if lines {
        return mist_proto::encode::error("", None, &text).to_vec();
    }
    let body = crate::http_service::error_body("", None, &text);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Logs how a connection ended: an ordinary disconnect at debug level, any
/// other failure as a warning, at most once in a while.
fn report(peer: SocketAddr, outcome: io::Result<()>) {
    match outcome {
        Ok(()) => log::debug!("{peer} disconnected"),
        Err(e) if is_disconnect(&e) => log::debug!("{peer} disconnected: {e}"),
        Err(e) => log_limited!(FAILURES, log::Level::Warn, "{peer}: connection failed: {e}"),
    }
}

/// Errors that only mean the peer went away.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
    )
}
