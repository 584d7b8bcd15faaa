//! One client connection: its read loop and its write loop.

use crate::hub::{Hub, Link};
use futures::future::{poll_fn, select, Either};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use mist_engine::ConnId;
use mist_proto::LineDecoder;
use std::collections::VecDeque;
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::Poll;

/// Reads start small so that idle connections stay cheap, and grow while a
/// client fills them, so that a busy publisher is read in large chunks.
const FIRST_READ: usize = 2 * 1024;
const LARGEST_READ: usize = 64 * 1024;
/// The write buffer is given back when a burst left it larger than this.
const RETAINED_WRITE_BUFFER: usize = 256 * 1024;

/// Serves one client until it disconnects or its socket fails.
///
/// `reader` and `writer` are the two halves of the client's byte stream. When
/// the client closes its sending side, its subscriptions end, the replies
/// already queued for it are still written, and then `serve` returns. Errors
/// are the socket's; protocol errors are answered to the client instead.
pub async fn serve<R, W>(hub: &Hub, reader: R, writer: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (conn, link) = hub.connect();
    // Forget the connection however this future ends, even when it is dropped.
    let _registered = Registered { hub, conn };
    let read = pin!(read_loop(hub, conn, &link, reader));
    let write = pin!(write_loop(hub, conn, &link, writer));
    match select(read, write).await {
        Either::Left((read_result, write)) => {
            hub.input_closed(conn);
            link.input_done.store(true, Ordering::Release);
            link.outbox_ready.notify();
            let write_result = write.await;
            read_result.and(write_result)
        }
        Either::Right((write_result, _read)) => write_result,
    }
}

struct Registered<'a> {
    hub: &'a Hub,
    conn: ConnId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.hub.disconnect(self.conn);
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    hub: &Hub,
    conn: ConnId,
    link: &Link,
    mut reader: R,
) -> io::Result<()> {
    let mut decoder = LineDecoder::new(hub.max_line());
    let mut buf = vec![0; FIRST_READ];
    let mut decoded = Vec::new();
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        decoder.decode(&buf[..n], &mut decoded);
        if !decoded.is_empty() && !hub.handle_messages(conn, &mut decoded) {
            // The client is not reading its replies: stop reading its requests
            // until the writer has made room.
            while !hub.accepts_input(conn) {
                link.room.wait().await;
            }
        }
        if n == buf.len() && buf.len() < LARGEST_READ {
            buf.resize(buf.len() * 2, 0);
        }
        // Let the writers this read woke run before reading more, so that a
        // publisher on a busy server is paced by the delivery it causes
        // instead of outrunning it until subscribers' outboxes overflow. A
        // stalled subscriber's writer is not runnable, so it slows no one.
        yield_now().await;
    }
}

/// Goes to the back of the executor's queue once, on any runtime.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

async fn write_loop<W: AsyncWrite + Unpin>(
    hub: &Hub,
    conn: ConnId,
    link: &Link,
    mut writer: W,
) -> io::Result<()> {
    let mut batch = VecDeque::new();
    let mut coalesced = Vec::new();
    loop {
        // Taking a batch also acknowledges the previous one as written.
        let got = hub.transmit(conn, &mut batch);
        link.room.notify();
        if !got {
            if link.input_done.load(Ordering::Acquire) {
                return writer.flush().await;
            }
            link.outbox_ready.wait().await;
            continue;
        }
        if let [frame] = batch.as_slices().0 {
            writer.write_all(frame).await?;
        } else {
            coalesced.clear();
            for frame in &batch {
                coalesced.extend_from_slice(frame);
            }
            writer.write_all(&coalesced).await?;
            if coalesced.capacity() > RETAINED_WRITE_BUFFER {
                coalesced = Vec::new();
            }
        }
        batch.clear();
        writer.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use mist_engine::Config;

    /// A whole session over in-memory streams: the client's input is read to
    /// its end, then every reply is flushed before `serve` returns.
    #[test]
    fn replies_are_flushed_after_the_client_stops_sending() {
        let hub = Hub::new(Config::default(), 1024);
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
