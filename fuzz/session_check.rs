//! A whole client session over in-memory streams, on arbitrary bytes: the
//! line transport (open and secured, where the first line must be `auth`)
//! and the WebSocket transport (frames built from the input, and raw bytes
//! as frames). Shared, by `#[path]`, between the `session` fuzz target and
//! mist-frontend's regression test.
//!
//! Whatever comes in, the session must not panic, must answer at most once
//! per line or frame it received (plus one last error), each answer within
//! the bound a reply can have, and must leave nothing behind in the hub.

#![allow(dead_code)] // each includer uses a different part

use futures::executor::block_on;
use futures::io::{AsyncRead, AsyncWrite, Cursor};
use mist_engine::auth::{AuthError, Authenticator, Grants, Pending};
use mist_engine::{Config, Credentials};
use mist_frontend::{serve, serve_websocket, Hub, Pinger, Runtime, Session, Via};
use std::collections::BTreeSet;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Small limits, so that fuzzing reaches them.
const MAX_LINE: usize = 512;
/// The longest answer any line can get with these limits: an error that
/// echoes the line's tags, escaped, twice over, and its own text.
const MAX_REPLY: usize = 12 * MAX_LINE + 1024;

fn config() -> Config {
    Config {
        max_outbox_bytes: 4096,
        max_outbox_frames: 16,
        max_tags: 8,
        max_tag_bytes: 32,
        max_subscriptions: 16,
        max_subscription_bytes: 256,
        work_per_turn: 200,
        ..Config::default()
    }
}

/// Keeps nothing; the engine decides, and these sessions change no token.
struct Nowhere;

impl Authenticator for Nowhere {
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>> {
        Box::pin(async { Ok(Grants::new()) })
    }
    fn register<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
    fn unregister<'a>(&'a self, _: &'a str) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
    fn set<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
    fn unset<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
    fn tags<'a>(&'a self, _: &'a str) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>> {
        Box::pin(async { Ok(None) })
    }
}

fn hub(secured: bool) -> Arc<Hub> {
    Arc::new(if secured {
        let mut grants = Grants::new();
        grants.insert("reader".into(), ["a".to_string(), "b".to_string()].into());
        Hub::secured(
            config(),
            MAX_LINE,
            1,
            "admin".into(),
            Arc::new(Nowhere),
            grants,
        )
    } else {
        Hub::new(config(), MAX_LINE)
    })
}

/// No timers: the sessions here never wait for one.
#[derive(Clone)]
struct NoTime;

/// No sockets either: the sessions here are handed their streams.
#[derive(Clone)]
struct NoSocket;

impl futures::io::AsyncRead for NoSocket {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(0))
    }
}

impl futures::io::AsyncWrite for NoSocket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Runtime for NoTime {
    type Listener = ();
    type Stream = NoSocket;

    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, _: F) {}
    fn sleep(&self, _: Duration) -> impl std::future::Future<Output = ()> + Send {
        futures::future::pending()
    }
    fn listener(&self, _: std::net::TcpListener) -> std::io::Result<()> {
        Err(std::io::Error::other("the fuzzer has no sockets"))
    }
    fn accept(
        _: &(),
    ) -> impl std::future::Future<Output = std::io::Result<(NoSocket, std::net::SocketAddr)>> + Send
    {
        futures::future::pending()
    }
}

/// The first byte chooses the transport; the rest is what the client sends.
pub fn check(input: &[u8]) {
    let Some((&mode, bytes)) = input.split_first() else {
        return;
    };
    match mode % 4 {
        0 => lines(bytes, false),
        1 => lines(bytes, true),
        2 => websocket(&frames(bytes)),
        _ => websocket(bytes),
    }
}

fn lines(bytes: &[u8], secured: bool) {
    let hub = hub(secured);
    let mut output = Cursor::new(Vec::new());
    block_on(serve(&hub, Cursor::new(bytes.to_vec()), &mut output)).expect("in-memory IO");
    let output = output.into_inner();
    let sent = bytes.iter().filter(|&&b| b == b'\n').count();
    let answers: Vec<&[u8]> = output.split_inclusive(|&b| b == b'\n').collect();
    assert!(
        answers.len() <= sent + 1,
        "{} answers to {sent} lines",
        answers.len()
    );
    for answer in answers {
        assert_eq!(answer.last(), Some(&b'\n'), "every answer is a whole line");
        assert!(
            answer.len() <= MAX_REPLY,
            "an answer of {} bytes",
            answer.len()
        );
        serde_json::from_slice::<mist_proto::Message>(answer).expect("every answer is a frame");
    }
    assert_eq!(hub.stats().connections, 0, "nothing is left behind");
    assert_eq!(hub.stats().subscriptions, 0);
}

/// Masked client frames made from `bytes`: each chunk's first byte picks the
/// opcode and length, the rest is the payload.
fn frames(mut bytes: &[u8]) -> Vec<u8> {
    let mut stream = Vec::new();
    while let [head, rest @ ..] = bytes {
        let len = usize::from(head >> 2).min(rest.len());
        let (payload, tail) = rest.split_at(len);
        bytes = tail;
        let opcode = [0x1, 0x2, 0x9, 0x8][usize::from(head & 3)];
        stream.push(0x80 | opcode);
        stream.push(0x80 | len as u8);
        let mask = [0x12, 0x34, 0x56, 0x78];
        stream.extend_from_slice(&mask);
        stream.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    stream
}

fn websocket(stream: &[u8]) {
    let hub = hub(false);
    let session = Session::open(&hub, Via::WebSocket, None, Credentials::InBand)
        .expect("an open hub takes the client");
    let socket = Duplex {
        input: Cursor::new(stream.to_vec()),
        output: Vec::new(),
    };
    let mut socket = socket;
    let served = block_on(serve_websocket(
        session,
        &mut socket,
        None::<Pinger<NoTime>>,
    ));
    // A broken stream may end the session with an error; it must not panic.
    drop(served);
    let frames_in = stream.len() / 6 + 1;
    assert!(
        socket.output.len() <= frames_in * (MAX_REPLY + 16),
        "{} bytes answered to {} bytes",
        socket.output.len(),
        stream.len()
    );
    assert_eq!(hub.stats().connections, 0, "nothing is left behind");
    assert_eq!(hub.stats().subscriptions, 0);
}

/// A client's end of a socket: what it sent, and what it got.
struct Duplex {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl AsyncRead for &mut Duplex {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().input).poll_read(cx, buf)
    }
}

impl AsyncWrite for &mut Duplex {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
