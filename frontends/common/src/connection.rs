//! One client connection: a session with the engine, driven by a read loop
//! and a write loop over a transport.
//!
//! Transports differ only in how bytes arrive and how frames leave: a TCP
//! stream carries lines, a WebSocket carries messages, an SSE stream carries
//! events. [`Inbound`] and [`Outbound`] are those two halves; everything else
//! (decoding, ordering, backpressure, flushing on close) is written once here.

use crate::direct::Shared;
use crate::hub::{Hub, Link, Offers, Progress, Via};
use futures::future::{poll_fn, select, Either};
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use mist_engine::{Batch, ConnId, Credentials, Flow};
use mist_proto::{LineDecoder, ProtoError, Request};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

/// How much one read of a TCP connection takes at most.
const READ_SIZE: usize = 64 * 1024;
/// A read that cannot use its thread's buffer (see [`ByteInbound`]).
const FALLBACK_READ: usize = 4 * 1024;
/// A read that brought fewer lines than this keeps no room for them after.
const SMALL_READ_LINES: usize = 128;
/// The longest line a client may send before it has authenticated: room
/// for an `auth` line with a long token, and no more.
pub const PRE_AUTH_LINE: usize = 8 * 1024;

/// The receiving half of a transport.
pub trait Inbound: Send {
    /// Waits for the client's next bytes and decodes every line they complete
    /// into `out`. Resolves to `false` once the client will send nothing more.
    fn receive<'a>(
        &'a mut self,
        decoder: &'a mut LineDecoder,
        out: &'a mut Vec<Result<Request, ProtoError>>,
    ) -> impl Future<Output = io::Result<bool>> + Send + 'a;
}

/// The sending half of a transport.
pub trait Outbound: Send {
    /// Sends a batch of frames, each one complete line ending in `\n`; it
    /// may take the frames out of `batch`.
    fn send<'a>(
        &'a mut self,
        batch: &'a mut Batch,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;

    /// Resolves when the transport wants to send something of its own while
    /// nothing is queued (a WebSocket ping); never, by default.
    fn idle(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        futures::future::pending()
    }

    /// Ends the stream once the client stopped sending and everything queued
    /// was sent (a WebSocket sends its close frame here).
    fn finish(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        async { Ok(()) }
    }
}

/// Serves one client over a byte stream until it disconnects or the socket
/// fails. See [`Session::run`].
///
/// ```
/// use futures::io::Cursor;
/// use mist_frontend::{serve, Hub};
/// use std::sync::Arc;
///
/// let hub = Arc::new(Hub::new(Default::default(), 1024));
/// let input = Cursor::new(b"{\"command\":\"ping\"}\n".to_vec());
/// let mut output = Cursor::new(Vec::new());
/// futures::executor::block_on(serve(&hub, input, &mut output)).unwrap();
/// assert_eq!(output.into_inner(), b"{\"command\":\"ping\",\"data\":\"pong\"}\n");
/// ```
pub async fn serve<R, W>(hub: &Arc<Hub>, reader: R, writer: W) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    serve_from(hub, None, reader, writer).await
}

/// [`serve`] for a client at `peer`, whose failed authentications count
/// against its address.
pub async fn serve_from<R, W>(
    hub: &Arc<Hub>,
    peer: Option<IpAddr>,
    reader: R,
    writer: W,
) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let session = match Session::open(hub, Via::Tcp, peer, Credentials::InBand) {
        Ok(session) => session,
        Err(refused) => return refuse(writer, &refused).await,
    };
    // Not lent to other tasks: the writer need not outlive the call.
    session.run_lines(reader, &Shared::new(writer)).await
}

/// [`serve_from`] for a socket whose handle can be cloned and outlives the
/// call: its writing half is shared, so that a task that queues frames for
/// it while it is idle writes them itself (see [`crate::direct`]).
pub(crate) async fn serve_stream<S>(
    hub: &Arc<Hub>,
    peer: Option<IpAddr>,
    stream: S,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static,
{
    let session = match Session::open(hub, Via::Tcp, peer, Credentials::InBand) {
        Ok(session) => session,
        Err(refused) => return refuse(stream, &refused).await,
    };
    let shared = Arc::new(Shared::new(stream.clone()));
    // Set once, on a link no one else has yet.
    let _ = session.link.direct.set(shared.clone());
    session.run_lines(stream, &shared).await
}

/// Full, or shutting down: says so, then closes.
async fn refuse<W: AsyncWrite + Unpin>(
    mut writer: W,
    refused: &mist_engine::Error,
) -> io::Result<()> {
    let frame = mist_proto::encode::error("", None, &refused.to_string());
    writer.write_all(&frame).await
}

/// A client's connection to the engine. Dropping it disconnects the client,
/// however the task serving it ends.
pub struct Session {
    hub: Arc<Hub>,
    conn: ConnId,
    link: Arc<Link>,
    via: Via,
}

impl Session {
    /// Connects a client at `peer` over `via`. With
    /// [`Credentials::InBand`] a secured hub wants `auth` as its first
    /// message; with [`Credentials::Token`] (an `X-Auth-Token` header or
    /// query parameter) it refuses a missing or bad token at once. Refused
    /// too while the server is full or shutting down.
    pub fn open(
        hub: &Arc<Hub>,
        via: Via,
        peer: Option<IpAddr>,
        credentials: Credentials<'_>,
    ) -> Result<Session, mist_engine::Error> {
        let (conn, link) = hub.connect(peer, credentials)?;
        Ok(Session::registered(hub, conn, link, via))
    }

    fn registered(hub: &Arc<Hub>, conn: ConnId, link: Arc<Link>, via: Via) -> Session {
        hub.opened(via);
        Session {
            hub: hub.clone(),
            conn,
            link,
            via,
        }
    }

    /// The hub the session belongs to.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Applies a request now and returns its failure instead of queueing an
    /// error reply: for transports that answer with an HTTP status.
    pub fn command(&self, request: &Request) -> Result<(), mist_engine::Error> {
        self.hub.command(self.conn, request)
    }

    /// Waits until what the commands given with [`Session::command`] wait
    /// for is done: a subscription whose anchor other nodes' messages are
    /// not heard on yet (routing by tag; see [`Hub::route_by_tag`]). Call
    /// it before [`Session::run`], which then waits for itself.
    pub async fn applied(&self) {
        while self.hub.progress(self.conn).flow == Flow::Wait {
            self.link.room.wait().await;
        }
    }

    /// Runs the connection: lines from `inbound` go to the engine in order,
    /// frames for this client go out through `outbound`. When the client
    /// stops sending, its subscriptions end, what is already queued for it is
    /// still sent, and then `run` returns. Errors are the transport's;
    /// protocol errors are answered to the client instead.
    pub async fn run(self, inbound: impl Inbound, outbound: impl Outbound) -> io::Result<()> {
        let write = write_loop(&self, outbound);
        self.run_with(inbound, write).await
    }

    /// [`Session::run`] for lines over a byte stream, written through `writer`.
    async fn run_lines<R, W>(&self, reader: R, writer: &Shared<W>) -> io::Result<()>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let write = writer.write_loop(&self.hub, self.conn, &self.link);
        self.run_with(ByteInbound::new(reader), write).await
    }

    /// [`Session::run`] with the writing done by `write`.
    async fn run_with(
        &self,
        inbound: impl Inbound,
        write: impl Future<Output = io::Result<()>>,
    ) -> io::Result<()> {
        let read = pin!(read_loop(self, inbound));
        let write = pin!(write);
        match select(read, write).await {
            Either::Left((read_result, write)) => {
                self.hub.input_closed(self.conn);
                self.link.input_done.store(true, Ordering::Release);
                self.link.outbox_ready.notify();
                let write_result = write.await;
                read_result.and(write_result)
            }
            Either::Right((write_result, _read)) => write_result,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.hub.disconnect(self.conn);
        self.hub.closed(self.via);
    }
}

async fn read_loop(session: &Session, mut inbound: impl Inbound) -> io::Result<()> {
    let (hub, conn) = (&session.hub, session.conn);
    let mut progress = hub.progress(conn);
    let mut decoder = LineDecoder::new(hub.max_line());
    if progress.anonymous {
        // Nothing large is buffered for a client that has not proven who it is.
        decoder = decoder.first_line_only(PRE_AUTH_LINE);
    }
    let mut decoded = Vec::new();
    let mut offers = Offers::default();
    loop {
        let open = inbound.receive(&mut decoder, &mut decoded).await?;
        // What the last input carried counts even when it also ended the input.
        let lines = decoded.len();
        if lines > 0 {
            progress = hub.handle_messages(conn, &mut decoded, &mut offers);
        }
        let applied = apply_all(session, &mut decoder, &mut decoded, &mut offers, progress);
        progress = match applied.await {
            Some(applied) => applied,
            None => return Ok(()),
        };
        if lines < SMALL_READ_LINES {
            // Few lines, or a burst is over: an idle connection keeps no
            // room for decoded requests (a client sending little pays one
            // allocation per read; a busy one reads many lines at a time).
            decoded = Vec::new();
        } else if decoded.capacity() > 4 * lines {
            decoded.shrink_to(lines);
        }
        // Let the writers this input woke run before reading more: a
        // publisher that keeps the runtime's threads to itself makes its
        // subscribers' writers late, and then waits for them (the engine
        // paces it). Taken out once, 8 pairs lost half their messages to
        // writers that had not had their turn.
        if !open {
            return Ok(());
        }
        futures_lite::future::yield_now().await;
    }
}

/// Waits until the engine has applied all of the client's input, giving it
/// turns as it allows: after other clients had theirs when its work was used
/// up, after its writer made room when its replies would not fit, and after
/// its subscribers made room (or its bounded wait ran out) when they were
/// full, on its shard or on others. Once the client has authenticated, what
/// the decoder held behind its `auth` line follows. Returns where the
/// connection then stands (always ready to read), or `None` when it is to be
/// closed.
async fn apply_all(
    session: &Session,
    decoder: &mut LineDecoder,
    decoded: &mut Vec<Result<Request, ProtoError>>,
    offers: &mut Offers,
    mut progress: Progress,
) -> Option<Progress> {
    let (hub, conn) = (&session.hub, session.conn);
    // The publish being paced, by its publisher's count: when its bounded
    // wait ends, and whether it has.
    let mut pace: Option<(u64, Pacing)> = None;
    // The same for an offer to another shard, by deliveries so far.
    let mut offer_pace: Option<(u64, Pacing)> = None;
    loop {
        if offers.waiting() {
            // Its publishes wait for a full subscriber on another shard:
            // nothing more of its input is applied until they are out.
            let expired = pace_wait(hub, &session.link, &mut offer_pace, offers.delivered).await;
            hub.retry_offers(offers, expired);
            continue;
        }
        match progress.flow {
            Flow::Close => return None,
            Flow::Read if decoder.is_held() && !progress.anonymous => {
                decoder.release(decoded);
                if decoded.is_empty() {
                    return Some(progress);
                }
                progress = hub.handle_messages(conn, decoded, offers);
                continue;
            }
            Flow::Read => return Some(progress),
            Flow::Yield => futures_lite::future::yield_now().await,
            Flow::Wait => session.link.room.wait().await,
            Flow::Pace => {
                if pace_wait(hub, &session.link, &mut pace, progress.published).await {
                    hub.pace_expired(conn);
                }
            }
        }
        progress = hub.resume(conn, offers);
    }
}

/// Where a publisher's wait for one publish stands.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// Waiting until this time at most.
    Until(Instant),
    /// Its bounded wait is over; it waits only for subscribers whose writer
    /// has not had its turn, which the runtime will give it.
    Expired,
}

/// Waits for room for the publish (or offer) numbered `current`: the first
/// time at most [`Hub::pace_timeout`], again until that time, and after it
/// for the room signal alone (a subscriber whose writer has not had its
/// turn yet), after which the bounded wait starts over. Returns whether the
/// bounded wait ran out, so that subscribers stuck writing are no longer
/// waited for.
async fn pace_wait(hub: &Hub, link: &Link, pace: &mut Option<(u64, Pacing)>, current: u64) -> bool {
    let state = match *pace {
        Some((number, state)) if number == current => state,
        _ => Pacing::Until(Instant::now() + hub.pace_timeout()),
    };
    match state {
        Pacing::Until(deadline) => {
            let made_room = hub.wait_until(&link.room, deadline).await;
            *pace = Some((current, if made_room { state } else { Pacing::Expired }));
            !made_room
        }
        Pacing::Expired => {
            link.room.wait().await;
            *pace = Some((current, Pacing::Until(Instant::now() + hub.pace_timeout())));
            false
        }
    }
}

async fn write_loop(session: &Session, mut outbound: impl Outbound) -> io::Result<()> {
    let (hub, conn, link) = (&session.hub, session.conn, &session.link);
    let mut batch = Batch::new();
    loop {
        // Taking a batch also acknowledges the previous one as written.
        let (got, closing) = hub.transmit(conn, &mut batch);
        link.room.notify();
        if got {
            outbound.send(&mut batch).await?;
            batch.clear();
        } else if closing || link.input_done.load(Ordering::Acquire) {
            return outbound.finish().await;
        } else if let Either::Right((idle, _)) =
            select(pin!(link.outbox_ready.wait()), pin!(outbound.idle())).await
        {
            idle?;
        }
    }
}

/// Lines over a byte stream (TCP).
///
/// It owns no read buffer: every read goes into its thread's buffer and is
/// decoded at once, before the task can move or yield, so an idle
/// connection keeps nothing for reading but its decoder's unfinished line.
struct ByteInbound<R> {
    reader: R,
}

thread_local! {
    /// The buffer every connection on this thread reads into.
    static READ_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

impl<R> ByteInbound<R> {
    fn new(reader: R) -> Self {
        ByteInbound { reader }
    }
}

impl<R: AsyncRead + Unpin + Send> Inbound for ByteInbound<R> {
    async fn receive(
        &mut self,
        decoder: &mut LineDecoder,
        out: &mut Vec<Result<Request, ProtoError>>,
    ) -> io::Result<bool> {
        let n = poll_fn(|cx| {
            READ_BUFFER.with(|shared| {
                let mut read = |buffer: &mut [u8]| {
                    let read = Pin::new(&mut self.reader).poll_read(cx, buffer);
                    if let Poll::Ready(Ok(n)) = read {
                        // Decoded here, while the bytes are still this thread's.
                        decoder.decode(&buffer[..n], &mut *out);
                    }
                    read
                };
                match shared.try_borrow_mut() {
                    Ok(mut buffer) => read(&mut buffer[..]),
                    // A stream whose read polls another connection on this
                    // thread: this read gets a buffer of its own.
                    Err(_) => read(&mut vec![0; FALLBACK_READ][..]),
                }
            })
        })
        .await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use mist_engine::Config;

    /// A read while the thread's buffer is in use (a stream whose read polls
    /// another connection) gets a buffer of its own instead of panicking.
    #[test]
    fn a_nested_read_does_not_need_the_threads_buffer() {
        // The thread's buffer stays borrowed (this test's thread only).
        READ_BUFFER.with(|b| std::mem::forget(b.borrow_mut()));
        let mut inbound = ByteInbound::new(Cursor::new(b"{\"command\":\"ping\"}\n".to_vec()));
        let mut decoder = LineDecoder::new(1024);
        let mut out = Vec::new();
        assert!(block_on(inbound.receive(&mut decoder, &mut out)).unwrap());
        assert_eq!(out.len(), 1);
    }

    /// A whole session over in-memory streams: the client's input is read to
    /// its end, then every reply is flushed before `serve` returns.
    #[test]
    fn replies_are_flushed_after_the_client_stops_sending() {
        let hub = Arc::new(Hub::new(Config::default(), 1024));
        let input = Cursor::new(
            b"{\"command\":\"subscribe\",\"tags\":[\"a\"]}\n{\"command\":\"list\"}\nnot json\n{\"command\":\"ping\"}\n"
                .to_vec(),
        );
        let mut output = Cursor::new(Vec::new());
        block_on(serve(&hub, input, &mut output)).unwrap();
        let text = String::from_utf8(output.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("\"data\":\"a\""), "{text}");
        assert!(lines[1].contains("invalid JSON"), "{text}");
        assert_eq!(lines[2], "{\"command\":\"ping\",\"data\":\"pong\"}");
        assert_eq!(hub.stats().connections, 0, "the connection is forgotten");
        assert_eq!(hub.stats().subscriptions, 0);
    }
}
