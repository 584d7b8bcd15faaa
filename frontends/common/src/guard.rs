//! Bounds on an HTTP exchange while it streams in, below the HTTP parser:
//! the bytes of a request head, and the time a head or a body may take.
//!
//! HTTP libraries check their head limit only once a line is complete, and
//! have no deadline for a body, so a client could send a head line without
//! end, or a body one byte a minute. [`Guarded`] wraps the socket before the
//! parser sees it and follows the exchange from the bytes that pass:
//!
//! - *head*: from the moment the server waits for a request until its blank
//!   line. At most [`Limits::max_head`] bytes, within
//!   [`Limits::header_timeout`]; a keep-alive connection that sends no next
//!   request is closed after the same time.
//! - *body*: from the end of the head until the server starts its answer,
//!   within [`Limits::body_timeout`].
//! - *answering*: the server writes its response (an SSE stream may write
//!   for hours); no deadline. The next read starts the next head.
//! - *open*: after `101 Switching Protocols` the bytes are a WebSocket's,
//!   which keeps time by itself.
//!
//! A read past a deadline or the head limit fails; [`watch`] runs beside the
//! connection, wakes a reader stuck past its deadline, and gives up on the
//! connection shortly after if it did not end by itself. [`Guarded::refusal`]
//! is the response to send, if the parser could not.

use crate::Runtime;
use futures::io::{AsyncRead, AsyncWrite};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long a connection past its deadline has to end by itself (after
/// sending its 408) before it is dropped.
const GRACE: Duration = Duration::from_secs(1);

/// The bounds on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes a request head may have, request line and blank line included.
    pub max_head: usize,
    /// How long the server waits for a whole request head.
    pub header_timeout: Duration,
    /// How long a request body may take once the head is in.
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body,
    Answering,
    Open,
}

/// Why the guard ended an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The head passed [`Limits::max_head`].
    HeadTooLarge,
    /// The head did not arrive within [`Limits::header_timeout`].
    HeadTimeout,
    /// The body did not arrive within [`Limits::body_timeout`].
    BodyTimeout,
}

impl Refusal {
    /// The HTTP response that says so, closing the connection.
    pub fn response(self, limits: &Limits) -> Vec<u8> {
        let (status, error) = match self {
            Refusal::HeadTooLarge => (
                "431 Request Header Fields Too Large",
                format!("request head too large: at most {} bytes", limits.max_head),
            ),
            Refusal::HeadTimeout => (
                "408 Request Timeout",
                format!(
                    "request head timed out: send it within {} s",
                    limits.header_timeout.as_secs()
                ),
            ),
            Refusal::BodyTimeout => (
                "408 Request Timeout",
                format!(
                    "request body timed out: send it within {} s",
                    limits.body_timeout.as_secs()
                ),
            ),
        };
        let body = crate::http_service::error_body("", None, &error);
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

struct State {
    limits: Limits,
    phase: Phase,
    /// When the current phase must be over, if it has a deadline.
    deadline: Option<Instant>,
    head_bytes: usize,
    /// In a head: the bytes since the last line feed are all `\r`.
    line_blank: bool,
    refusal: Option<Refusal>,
    /// The reader waiting for bytes, to wake when its deadline passes.
    reader: Option<Waker>,
}

impl State {
    fn start_head(&mut self) {
        self.phase = Phase::Head;
        self.deadline = Some(Instant::now() + self.limits.header_timeout);
        self.head_bytes = 0;
        self.line_blank = false;
    }

    /// Follows the head through `bytes` just read; returns the offset after
    /// its blank line, if it ended here.
    fn scan_head(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if self.line_blank => return Some(i + 1),
                b'\n' => self.line_blank = true,
                b'\r' => {}
                _ => self.line_blank = false,
            }
        }
        None
    }

    /// A read past the deadline or the head limit fails.
    fn check(&mut self) -> io::Result<()> {
        if let Some(refusal) = self.refusal {
            return Err(refused(refusal));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(self.expire());
        }
        Ok(())
    }

    fn expire(&mut self) -> io::Error {
        let refusal = match self.phase {
            Phase::Body => Refusal::BodyTimeout,
            _ => Refusal::HeadTimeout,
        };
        self.refusal = Some(refusal);
        refused(refusal)
    }
}

fn refused(refusal: Refusal) -> io::Error {
    let kind = match refusal {
        Refusal::HeadTooLarge => io::ErrorKind::InvalidData,
        Refusal::HeadTimeout | Refusal::BodyTimeout => io::ErrorKind::TimedOut,
    };
    io::Error::new(kind, format!("{refusal:?}"))
}

/// A socket whose HTTP exchanges are bounded; clones share the bounds.
pub struct Guarded<S> {
    inner: S,
    state: Arc<Mutex<State>>,
    /// Set once the connection is open: its bytes then pass untouched,
    /// without taking the lock.
    open: Arc<AtomicBool>,
}

impl<S: Clone> Clone for Guarded<S> {
    fn clone(&self) -> Self {
        Guarded {
            inner: self.inner.clone(),
            state: self.state.clone(),
            open: self.open.clone(),
        }
    }
}

impl<S> Guarded<S> {
    /// Wraps a socket whose first bytes are a request head.
    pub fn new(inner: S, limits: Limits) -> Guarded<S> {
        let mut state = State {
            limits,
            phase: Phase::Head,
            deadline: None,
            head_bytes: 0,
            line_blank: false,
            refusal: None,
            reader: None,
        };
        state.start_head();
        Guarded {
            inner,
            state: Arc::new(Mutex::new(state)),
            open: Arc::new(AtomicBool::new(false)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the guard ended the exchange, if it did, with the response that
    /// says so. `None` once a response was on its way, and for a connection
    /// that went quiet between requests: then there is nothing to tell.
    pub fn refusal(&self) -> Option<(Refusal, Vec<u8>)> {
        let state = self.state();
        let refusal = state.refusal?;
        let quiet = refusal == Refusal::HeadTimeout && state.head_bytes == 0;
        (matches!(state.phase, Phase::Head | Phase::Body) && !quiet)
            .then(|| (refusal, refusal.response(&state.limits)))
    }

    /// The socket underneath.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.open.load(Ordering::Acquire) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let mut state = this.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.phase == Phase::Answering {
            state.start_head();
        }
        state.check()?;
        let room = match state.phase {
            // Never take more of a head than its limit allows, plus one byte
            // to tell that it is too long.
            Phase::Head => buf.len().min(state.limits.max_head + 1 - state.head_bytes),
            _ => buf.len(),
        };
        let polled = Pin::new(&mut this.inner).poll_read(cx, &mut buf[..room]);
        let n = match polled {
            Poll::Pending => {
                state.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => n,
        };
        if state.phase == Phase::Head {
            match state.scan_head(&buf[..n]) {
                Some(_) => {
                    state.phase = Phase::Body;
                    state.deadline = Some(Instant::now() + state.limits.body_timeout);
                }
                None => {
                    state.head_bytes += n;
                    if state.head_bytes > state.limits.max_head {
                        state.refusal = Some(Refusal::HeadTooLarge);
                        return Poll::Ready(Err(refused(Refusal::HeadTooLarge)));
                    }
                }
            }
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.open.load(Ordering::Acquire) {
            let mut state = this.state.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(state.phase, Phase::Head | Phase::Body) {
                if buf.starts_with(b"HTTP/1.1 101") {
                    state.phase = Phase::Open;
                    state.deadline = None;
                    this.open.store(true, Ordering::Release);
                } else if !buf.starts_with(b"HTTP/1.1 1") {
                    // A final answer (not `100 Continue`): the request is in.
                    state.phase = Phase::Answering;
                    state.deadline = None;
                }
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// Keeps the deadlines of `guarded`'s exchanges: resolves once one has
/// passed and the connection has had a second to end by itself, so the
/// caller can drop it. Never resolves once the connection is open.
pub async fn watch<S>(guarded: &Guarded<S>, runtime: &impl Runtime) {
    loop {
        let (phase, deadline, limits) = {
            let state = guarded.state();
            (state.phase, state.deadline, state.limits)
        };
        let now = Instant::now();
        match (phase, deadline) {
            (Phase::Open, _) => return futures::future::pending().await,
            (_, Some(deadline)) if now >= deadline => break,
            (_, Some(deadline)) => runtime.sleep(deadline - now).await,
            // Answering: the next head's deadline starts with its first read.
            (_, None) => runtime.sleep(limits.header_timeout).await,
        }
    }
    let reader = {
        let mut state = guarded.state();
        state.expire();
        state.reader.take()
    };
    if let Some(reader) = reader {
        reader.wake();
    }
    runtime.sleep(GRACE).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::{AsyncReadExt, AsyncWriteExt, Cursor};

    fn limits(max_head: usize) -> Limits {
        Limits {
            max_head,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_head_without_end_is_refused_at_its_limit() {
        let endless = Cursor::new(vec![b'x'; 100_000]);
        let mut guarded = Guarded::new(endless, limits(1000));
        let mut sink = Vec::new();
        let error = block_on(guarded.read_to_end(&mut sink)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(sink.len() <= 1001, "read {} bytes", sink.len());
        let (refusal, response) = guarded.refusal().unwrap();
        assert_eq!(refusal, Refusal::HeadTooLarge);
        assert!(response.starts_with(b"HTTP/1.1 431 "));
    }

    #[test]
    fn a_body_may_be_larger_than_a_head_and_a_next_head_is_counted_again() {
        let body = "b".repeat(5000);
        let head = format!("POST /publish HTTP/1.1\r\ncontent-length: 5000\r\n\r\n{body}");
        let mut guarded = Guarded::new(Cursor::new(head.clone().into_bytes()), limits(100));
        let mut all = Vec::new();
        block_on(guarded.read_to_end(&mut all)).unwrap();
        assert_eq!(all, head.as_bytes());
        assert_eq!(guarded.state().phase, Phase::Body);
        block_on(guarded.write_all(b"HTTP/1.1 200 OK\r\n\r\n")).unwrap();
        assert_eq!(guarded.state().phase, Phase::Answering);
    }

    #[test]
    fn a_switch_to_websocket_lifts_every_bound() {
        let head = b"GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n".to_vec();
        let mut guarded = Guarded::new(Cursor::new(head), limits(100));
        let mut all = Vec::new();
        block_on(guarded.read_to_end(&mut all)).unwrap();
        block_on(guarded.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")).unwrap();
        assert_eq!(guarded.state().phase, Phase::Open);
        assert_eq!(guarded.state().deadline, None);
    }

    #[test]
    fn a_read_past_the_deadline_fails() {
        let mut guarded = Guarded::new(Cursor::new(b"GET / HT".to_vec()), limits(100));
        let mut buf = [0; 4];
        assert_eq!(block_on(guarded.read(&mut buf)).unwrap(), 4);
        guarded.state().deadline = Some(Instant::now());
        let error = block_on(guarded.read(&mut buf)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(guarded.refusal().unwrap().0, Refusal::HeadTimeout);
    }

    #[test]
    fn a_connection_quiet_between_requests_is_closed_without_an_answer() {
        let mut guarded = Guarded::new(Cursor::new(Vec::new()), limits(100));
        guarded.state().deadline = Some(Instant::now());
        let mut buf = [0; 4];
        assert!(block_on(guarded.read(&mut buf)).is_err());
        assert_eq!(
            guarded.refusal(),
            None,
            "no 408 to a client that asked nothing"
        );
    }
}
