//! A client for mist servers.
//!
//! [`Client`] speaks mist's protocol over any stream that implements
//! [`futures::io::AsyncRead`] and [`AsyncWrite`], as lines ([`Client::new`],
//! for `tcp://` and `tls://` listeners) or as WebSocket text frames
//! ([`Client::websocket`], for `ws://` and `wss://`), so it runs on
//! async-std, smol, or tokio through a compat layer, and spawns nothing.
//! [`blocking`] wraps it for scripts, tests and the `mist` command, its
//! address naming the transport (`tcp://`, `tls://`, `ws://`, `wss://`).
//!
//! Commands take effect in order, so the client learns that a command whose
//! success is silent (`subscribe`, `publish`, ...) was applied from a
//! `ping` sent right behind it: when [`Client::subscribe`] returns, the
//! subscription is in place. Deliveries that arrive meanwhile wait for
//! [`Client::next_message`]. [`reconnecting::Reconnecting`] connects again
//! after a lost connection, with backoff and no limit, and makes its
//! subscriptions again ([`blocking::Reconnecting`] without a runtime).
//!
//! ```no_run
//! use mist_client::blocking;
//!
//! let mut client = blocking::Client::connect("127.0.0.1:1445", None)?;
//! client.subscribe(&["news"])?;
//! client.publish(&["news", "sport"], "from me")?; // never delivered to its publisher
//! println!("{:?}", client.ping()?);
//! # Ok::<(), mist_client::Error>(())
//! ```
//!
//! Over an async runtime's socket (async-std here; smol's and tokio's, the
//! latter through `tokio_util::compat`, work the same way), `subscribe`
//! gives a [`futures::Stream`] of the subscription's messages:
//!
//! ```no_run
//! use futures::StreamExt;
//!
//! # async_std::task::block_on(async {
//! let stream = async_std::net::TcpStream::connect("127.0.0.1:1445").await?;
//! let mut client = mist_client::Client::new(stream, None).await?;
//! let mut news = client.subscribe(&["news"]).await?;
//! while let Some(message) = news.next().await {
//!     println!("{:?}", message?.data);
//! }
//! // Or a WebSocket endpoint, the token in the upgrade's header:
//! let url = "ws://127.0.0.1:8888/subscribe/websocket";
//! let stream = async_std::net::TcpStream::connect("127.0.0.1:8888").await?;
//! let mut client = mist_client::Client::websocket(stream, url, Some("token")).await?;
//! client.publish(&["news"], "over WebSocket").await?;
//! # Ok::<(), mist_client::Error>(())
//! # });
//! ```

pub mod blocking;
mod error;
pub mod reconnecting;
mod tls;
mod wire;

pub use error::Error;
pub use mist_proto::Message;
pub use tls::{Stream, TlsOptions};

use futures::io::{AsyncRead, AsyncWrite};

use mist_proto::{LineDecoder, ProtoError, Request};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wire::{Got, Wire};

/// The longest line the client accepts from a server.
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// What `who` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// Connections open (on this node, for a node of several).
    pub connections: usize,
    /// Connections holding a subscription.
    pub subscribers: usize,
    /// The server's sentence.
    pub text: String,
}

/// One connection to a mist server over `S`.
pub struct Client<S> {
    wire: Wire<S>,
    decoder: LineDecoder,
    buf: Vec<u8>,
    /// The text of the last WebSocket frame read.
    text: Vec<u8>,
    /// Frames read and not handed out yet (or why one could not be read).
    frames: VecDeque<Result<Message, ProtoError>>,
    /// Deliveries (and notices from the server) read while waiting for a
    /// reply, for [`Client::next_message`].
    messages: VecDeque<Message>,
    /// Publishes queued by [`Client::queue_publish`], not written yet.
    out: Vec<u8>,
    /// Messages set aside and dropped, the oldest first, for want of room.
    dropped: u64,
}

/// Messages set aside for [`Client::next_message`] at most: past this the
/// oldest are dropped, as the server drops for a subscriber that falls
/// behind, so a program that only sends commands keeps bounded memory.
pub const SET_ASIDE: usize = 65_536;

/// Queued publishes are written once they reach this many bytes.
const QUEUE_BYTES: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client of a line listener (`tcp://`, `tls://`) over `stream`,
    /// authenticated with `token` if given (the server's refusal is an
    /// [`Error::Server`]).
    pub async fn new(stream: S, token: Option<&str>) -> Result<Client<S>, Error> {
        let mut client = Client::over(Wire::Lines(stream));
        if let Some(token) = token {
            client.confirm(Request::new("auth").data(token)).await?;
        }
        Ok(client)
    }

    /// A client of a WebSocket endpoint (`ws://host:port/subscribe/websocket`,
    /// or `wss://` over a TLS stream) over `stream`: the opening handshake,
    /// with `token` in its `X-Auth-Token` header. A refused upgrade is an
    /// [`Error::Server`] for the command `connect`, with the HTTP status and
    /// the server's reason.
    pub async fn websocket(stream: S, url: &str, token: Option<&str>) -> Result<Client<S>, Error> {
        let wire = Wire::websocket(stream, url, token, MAX_LINE).await?;
        Ok(Client::over(wire))
    }

    fn over(wire: Wire<S>) -> Client<S> {
        Client {
            wire,
            decoder: LineDecoder::new(MAX_LINE),
            buf: vec![0; 64 * 1024],
            text: Vec::new(),
            frames: VecDeque::new(),
            messages: VecDeque::new(),
            out: Vec::new(),
            dropped: 0,
        }
    }

    /// The round-trip time of a `ping`.
    pub async fn ping(&mut self) -> Result<Duration, Error> {
        let start = Instant::now();
        self.send(&Request::new("ping")).await?;
        self.reply("ping").await?;
        Ok(start.elapsed())
    }

    /// Publishes `data` on `tags`; returns once the server applied it (its
    /// subscribers have it queued). The publisher never receives it.
    pub async fn publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        let request = Request::new("publish")
            .tags(tags.iter().copied())
            .data(data);
        self.confirm(request).await
    }

    /// Queues a publish without waiting for anything: publishes are written
    /// many at a time, once 64 KiB are queued, at [`Client::flush`], or
    /// before any other command (which then confirms them too). For a
    /// publisher that sends many messages; a refusal arrives later, as a
    /// message from [`Client::next_message`].
    pub async fn queue_publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        mist_proto::encode::publish_request(&mut self.out, tags, data);
        if self.out.len() >= QUEUE_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the queued publishes.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self.wire.write(&out).await;
        self.out = out;
        self.out.clear();
        written
    }

    /// Subscribes to messages carrying all of `tags`; returns once the
    /// subscription is in place, with a [`futures::Stream`] of its messages (drop it
    /// to send other commands; the subscription stays until
    /// [`Client::unsubscribe`]).
    pub async fn subscribe(&mut self, tags: &[&str]) -> Result<Subscription<'_, S>, Error> {
        self.confirm(Request::new("subscribe").tags(tags.iter().copied()))
            .await?;
        Ok(Subscription {
            client: self,
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            passed: 0,
        })
    }

    /// Ends the subscription to exactly `tags`.
    pub async fn unsubscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        self.confirm(Request::new("unsubscribe").tags(tags.iter().copied()))
            .await
    }

    /// Sends `request` and returns the server's reply to it, as it came
    /// (deliveries meanwhile are kept). Only for commands that answer
    /// (`ping`, `list`, `listall`, `who`, `tags`): a silent success would
    /// leave this waiting.
    pub async fn command(&mut self, request: Request) -> Result<Message, Error> {
        let command = request.command.as_str().to_string();
        self.send(&request).await?;
        self.reply(&command).await
    }

    /// This connection's subscriptions, each a sorted tag list.
    pub async fn list(&mut self) -> Result<Vec<Vec<String>>, Error> {
        self.send(&Request::new("list")).await?;
        Ok(self.reply("list").await?.subscriptions.unwrap_or_default())
    }

    /// Every subscription on the server (the admin's command).
    pub async fn listall(&mut self) -> Result<Vec<Vec<String>>, Error> {
        self.send(&Request::new("listall")).await?;
        Ok(self
            .reply("listall")
            .await?
            .subscriptions
            .unwrap_or_default())
    }

    /// How many connections and subscribers the server has.
    pub async fn who(&mut self) -> Result<Who, Error> {
        self.send(&Request::new("who")).await?;
        let reply = self.reply("who").await?;
        Ok(Who {
            connections: reply.connections.unwrap_or_default(),
            subscribers: reply.subscribers.unwrap_or_default(),
            text: reply.data.unwrap_or_default(),
        })
    }

    /// Registers `token` with `tags` (the admin's command).
    pub async fn register(&mut self, token: &str, tags: &[&str]) -> Result<(), Error> {
        self.admin("register", token, tags).await
    }

    /// Unregisters `token`, closing its connections (the admin's command).
    pub async fn unregister(&mut self, token: &str) -> Result<(), Error> {
        self.admin("unregister", token, &[]).await
    }

    /// Grants `token` more tags (the admin's command).
    pub async fn set(&mut self, token: &str, tags: &[&str]) -> Result<(), Error> {
        self.admin("set", token, tags).await
    }

    /// Takes tags from `token` (the admin's command).
    pub async fn unset(&mut self, token: &str, tags: &[&str]) -> Result<(), Error> {
        self.admin("unset", token, tags).await
    }

    /// The tags `token` was granted (the admin's command).
    pub async fn tags(&mut self, token: &str) -> Result<Vec<String>, Error> {
        self.send(&Request::new("tags").data(token)).await?;
        Ok(self.reply("tags").await?.tags.unwrap_or_default())
    }

    async fn admin(&mut self, command: &str, token: &str, tags: &[&str]) -> Result<(), Error> {
        let mut request = Request::new(command).data(token);
        if !tags.is_empty() {
            request = request.tags(tags.iter().copied());
        }
        self.confirm(request).await
    }

    /// The next delivery, or notice from the server (an error frame that
    /// answers no command of this client's, such as tags taken away);
    /// waits for it.
    pub async fn next_message(&mut self) -> Result<Message, Error> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    /// The next delivery or notice already read, without reading or
    /// waiting: `None` when [`Client::next_message`] would have to read.
    pub fn next_buffered(&mut self) -> Option<Result<Message, Error>> {
        match self.messages.pop_front() {
            Some(message) => Some(Ok(message)),
            None => self
                .frames
                .pop_front()
                .map(|frame| frame.map_err(|e| Error::Protocol(e.to_string()))),
        }
    }

    /// Messages dropped because [`SET_ASIDE`] were waiting for
    /// [`Client::next_message`] already.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keeps `frame` for [`Client::next_message`], within [`SET_ASIDE`].
    fn set_aside(&mut self, frame: Message) {
        if self.messages.len() >= SET_ASIDE {
            self.messages.pop_front();
            self.dropped += 1;
        }
        self.messages.push_back(frame);
    }

    /// Deliveries that arrived while waiting for replies, not yet taken.
    pub fn queued_messages(&self) -> usize {
        self.messages.len()
    }

    /// Frames read from the server and not handed out yet, deliveries and
    /// replies alike: while there are some, [`Client::next_message`] does
    /// not read.
    pub fn buffered(&self) -> usize {
        self.messages.len() + self.frames.len()
    }

    /// Writes bytes that are protocol lines already (a load generator's
    /// pre-encoded batch); their replies and deliveries are read as usual.
    /// Over WebSocket each line goes as one text frame.
    pub async fn send_raw(&mut self, lines: &[u8]) -> Result<(), Error> {
        self.flush().await?;
        self.wire.write(lines).await
    }

    /// Closes the connection cleanly: queued publishes are written, then a
    /// WebSocket says goodbye with a close frame (a line stream is closed).
    pub async fn close(mut self) -> Result<(), Error> {
        self.flush().await?;
        self.wire.close().await
    }

    /// Whether this client speaks WebSocket.
    pub fn is_websocket(&self) -> bool {
        matches!(self.wire, Wire::WebSocket(_))
    }

    /// The stream, for reading what the server sends without decoding it
    /// (frames already read are dropped).
    pub fn into_inner(self) -> S {
        self.wire.into_inner()
    }

    /// The stream, for its settings (a read timeout, say).
    pub fn stream_ref(&self) -> &S {
        self.wire.stream_ref()
    }

    /// Sends `request` and a `ping` behind it: the pong proves `request`
    /// took effect, and its error, if any, comes first.
    async fn confirm(&mut self, request: Request) -> Result<(), Error> {
        let command = request.command.as_str().to_string();
        let mut lines = request.to_line();
        lines.extend_from_slice(&Request::new("ping").to_line());
        self.send_raw(&lines).await?;
        let mut failure = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.error {
                None if frame.command == "ping" => return failure.map_or(Ok(()), Err),
                Some(message) if frame.command == command && failure.is_none() => {
                    // Past this the server may close (a refused `auth`).
                    let refused = command == "auth";
                    failure = Some(Error::Server {
                        command: command.clone(),
                        message,
                    });
                    if refused {
                        return failure.map_or(Ok(()), Err);
                    }
                }
                error => self.set_aside(Message { error, ..frame }),
            }
        }
    }

    /// The reply to `command`, sent last; deliveries meanwhile are kept.
    async fn reply(&mut self, command: &str) -> Result<Message, Error> {
        loop {
            let frame = self.read_frame().await?;
            if frame.command == command && !is_delivery(&frame) {
                return match frame.error {
                    Some(message) => Err(Error::Server {
                        command: command.to_string(),
                        message,
                    }),
                    None => Ok(frame),
                };
            }
            self.set_aside(frame);
        }
    }

    async fn send(&mut self, request: &Request) -> Result<(), Error> {
        self.send_raw(&request.to_line()).await
    }

    /// The next frame from the server.
    async fn read_frame(&mut self) -> Result<Message, Error> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// The next frame from the server, if one is there or can be read now.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Poll::Ready(frame.map_err(|e| Error::Protocol(e.to_string())));
            }
            let got = match self.wire.poll_read(cx, &mut self.buf, &mut self.text) {
                Poll::Ready(got) => got?,
                Poll::Pending => return Poll::Pending,
            };
            let bytes = match got {
                Got::Bytes(n) => &self.buf[..n],
                Got::Frame => &self.text[..],
                Got::Closed => return Poll::Ready(Err(Error::Closed)),
            };
            self.decoder.decode(bytes, &mut self.frames);
        }
    }

    /// The next delivery or notice, as [`Client::next_message`] gives it.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        match self.next_buffered() {
            Some(message) => Poll::Ready(message),
            None => self.poll_frame(cx),
        }
    }
}

/// The client is a stream of what [`Client::next_message`] gives, which
/// ends when the server closes the connection.
impl<S: AsyncRead + AsyncWrite + Unpin> futures::Stream for Client<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().poll_message(cx) {
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A subscription's messages: the deliveries whose tags include all of its
/// tags, and the server's notices, from [`Client::subscribe`]; it ends when
/// the server closes the connection. It borrows the client: drop it to send
/// other commands. Deliveries for the connection's other subscriptions are
/// set aside for [`Client::next_message`].
pub struct Subscription<'a, S> {
    client: &'a mut Client<S>,
    tags: Vec<String>,
    /// How many of the messages set aside, from the front, are known not
    /// to be this subscription's: each is looked at once.
    passed: usize,
}

impl<S> Subscription<'_, S> {
    /// The subscription's tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> futures::Stream for Subscription<'_, S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Deliveries set aside before it (those that came during the
        // subscribe) are the stream's first.
        let mut unseen = this.client.messages.range(this.passed..);
        match unseen.position(|m| this.wanted(m)) {
            Some(at) => {
                this.passed += at;
                return Poll::Ready(this.client.messages.remove(this.passed).map(Ok));
            }
            None => this.passed = this.client.messages.len(),
        }
        loop {
            let frame = match this.client.poll_frame(cx) {
                Poll::Ready(Ok(frame)) => frame,
                Poll::Ready(Err(Error::Closed)) => return Poll::Ready(None),
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            };
            if this.wanted(&frame) {
                return Poll::Ready(Some(Ok(frame)));
            }
            this.client.set_aside(frame);
            this.passed = this.client.messages.len();
        }
    }
}

impl<S> Subscription<'_, S> {
    /// Whether `frame` is this subscription's: a delivery carrying all of
    /// its tags, or a notice.
    fn wanted(&self, frame: &Message) -> bool {
        if !is_delivery(frame) {
            return frame.error.is_some();
        }
        let tags = frame.tags.as_deref().unwrap_or_default();
        self.tags.iter().all(|tag| tags.contains(tag))
    }
}

/// Whether `frame` is a delivery (a publish without an error).
fn is_delivery(frame: &Message) -> bool {
    frame.command == "publish" && frame.error.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A server that has already said `said`, and records what it is sent.
    struct Scripted {
        said: futures::io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.said).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.sent.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn client(said: &str) -> Client<Scripted> {
        let stream = Scripted {
            said: futures::io::Cursor::new(said.as_bytes().to_vec()),
            sent: Vec::new(),
        };
        block_on(Client::new(stream, None)).unwrap()
    }

    #[test]
    fn a_silent_command_is_confirmed_by_the_pong_behind_it_and_deliveries_wait() {
        let mut client = client(concat!(
            r#"{"command":"publish","tags":["a"],"data":"early"}"#,
            "\n",
            r#"{"command":"ping","data":"pong"}"#,
            "\n",
        ));
        drop(block_on(client.subscribe(&["a"])).unwrap());
        let sent = String::from_utf8(client.stream_ref().sent.clone()).unwrap();
        assert_eq!(sent.lines().count(), 2, "{sent}");
        assert!(sent.lines().nth(1).unwrap().contains("ping"));
        let early = block_on(client.next_message()).unwrap();
        assert_eq!(early.data.as_deref(), Some("early"));
        assert!(matches!(
            block_on(client.next_message()),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn a_subscription_streams_its_deliveries_and_sets_the_others_aside() {
        use futures::StreamExt;
        let mut client = client(concat!(
            r#"{"command":"publish","tags":["b","a"],"data":"during"}"#,
            "\n",
            r#"{"command":"ping","data":"pong"}"#,
            "\n",
            r#"{"command":"publish","tags":["c"],"data":"another subscription's"}"#,
            "\n",
            r#"{"command":"publish","tags":["a","b","c"],"data":"after"}"#,
            "\n",
            r#"{"command":"","error":"tags taken away"}"#,
            "\n",
        ));
        let mut subscription = block_on(client.subscribe(&["a", "b"])).unwrap();
        let mut next = || block_on(subscription.next()).map(|m| m.unwrap());
        let data = |m: Option<Message>| m.and_then(|m| m.data.or(m.error));
        assert_eq!(data(next()).as_deref(), Some("during"));
        assert_eq!(data(next()).as_deref(), Some("after"));
        assert_eq!(data(next()).as_deref(), Some("tags taken away"), "a notice");
        assert!(next().is_none(), "the stream ends with the connection");
        let aside = block_on(client.next_message()).unwrap();
        assert_eq!(aside.data.as_deref(), Some("another subscription's"));
    }

    #[test]
    fn messages_nobody_takes_are_bounded_and_the_oldest_go() {
        let mut said = String::new();
        for i in 0..SET_ASIDE + 5 {
            said.push_str(&format!(
                "{{\"command\":\"publish\",\"tags\":[\"a\"],\"data\":\"{i}\"}}\n"
            ));
        }
        said.push_str("{\"command\":\"ping\",\"data\":\"pong\"}\n");
        let mut client = client(&said);
        block_on(client.ping()).unwrap();
        assert_eq!(client.queued_messages(), SET_ASIDE);
        assert_eq!(client.dropped(), 5);
        let oldest = block_on(client.next_message()).unwrap();
        assert_eq!(oldest.data.as_deref(), Some("5"));
    }

    #[test]
    fn an_error_before_the_pong_is_the_commands_and_the_rest_is_read_past() {
        let mut client = client(concat!(
            r#"{"command":"subscribe","tags":["a"],"error":"too many tags"}"#,
            "\n",
            r#"{"command":"publish","tags":["b"],"data":"meanwhile"}"#,
            "\n",
            r#"{"command":"ping","data":"pong"}"#,
            "\n",
            r#"{"command":"who","data":"3 connections, 1 subscriber","connections":3,"subscribers":1}"#,
            "\n",
        ));
        match block_on(client.subscribe(&["a"])).map(|s| s.tags().to_vec()) {
            Err(Error::Server { command, message }) => {
                assert_eq!(
                    (command.as_str(), message.as_str()),
                    ("subscribe", "too many tags")
                );
            }
            other => panic!("{other:?}"),
        }
        let who = block_on(client.who()).unwrap();
        assert_eq!((who.connections, who.subscribers), (3, 1));
        assert_eq!(client.queued_messages(), 1, "the delivery was kept");
    }
}
