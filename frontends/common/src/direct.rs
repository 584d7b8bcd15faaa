//! Writing for a TCP connection from the task that queued its frames.
//!
//! A connection's writer task sleeps while its outbox is empty. Waking it for
//! a single frame costs a hop to another thread on most runtimes (a futex
//! wake, then the frame waits for that thread to be scheduled), which is most
//! of a message's latency on a quiet server. So the writing half of a TCP
//! connection is shared: whichever task queued frames for it (a publisher's
//! reader, usually) takes the writer while it is idle, takes the batch, and
//! writes it at once if it is small and the socket takes it without waiting.
//! Anything else (a large batch, a full socket, an error, a connection that
//! is closing) is left to the writer task, which is then woken as before.
//!
//! Every TCP connection writes through [`Shared`]; only a socket whose handle
//! outlives its session (one a listener accepted) is lent to other tasks.
//! The writer moves between tasks by ownership: whoever holds it owns it, and
//! the lock around its slot is held only to take it or put it back, never
//! across IO. nats-server flushes a client's pending data from the
//! producer's read loop for the same reason.

use crate::hub::{Hub, Link};
use futures::io::{AsyncWrite, AsyncWriteExt};
use futures::task::noop_waker_ref;
use mist_engine::{Batch, ConnId};
use parking_lot::Mutex;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A batch larger than this is left to the connection's own writer task:
/// under load, writing in parallel with the publisher beats writing in its
/// place, and a quiet connection's batch is a frame or two.
const INLINE_MAX: usize = 8 * 1024;

/// Batches written inline in one go at most.
const INLINE_ROUNDS: usize = 4;

/// What the hub needs to write for a connection without knowing its socket
/// type.
pub(crate) trait Flush: Send + Sync {
    /// Writes what is queued for `conn` now if its writer is idle; returns
    /// whether the writer task must still be woken.
    fn flush(&self, hub: &Arc<Hub>, conn: ConnId, link: &Link) -> bool;
}

/// The writing half of a TCP connection and the batch it is writing.
pub(crate) struct Shared<W> {
    slot: Mutex<Slot<W>>,
}

struct Slot<W> {
    /// The writer, while nobody is writing with it.
    idle: Option<Held<W>>,
    /// The writer task found it taken: it is to be woken when it is back.
    wanted: bool,
}

/// The writer, owned by whoever is writing: the batch the engine handed
/// over last, and how much of it is written.
pub(crate) struct Held<W> {
    writer: W,
    batch: Batch,
    written: usize,
    /// Written by an inline write whose flush did not complete.
    unflushed: bool,
}

impl<W> Held<W> {
    fn rest(&self) -> &[u8] {
        &self.batch.as_bytes()[self.written..]
    }

    /// Whether the writer task has writing or flushing left to do.
    fn unfinished(&self) -> bool {
        self.unflushed || !self.rest().is_empty()
    }

    /// Ready for the next batch: the last one is all written.
    fn clear(&mut self) {
        self.batch.clear();
        self.written = 0;
    }
}

impl<W: AsyncWrite + Unpin + Send> Shared<W> {
    pub(crate) fn new(writer: W) -> Shared<W> {
        Shared {
            slot: Mutex::new(Slot {
                idle: Some(Held {
                    writer,
                    batch: Batch::new(),
                    written: 0,
                    unflushed: false,
                }),
                wanted: false,
            }),
        }
    }

    /// For the writer task: the writer, or `None` if another task is
    /// writing with it (the writer task is woken when it is back).
    fn take(&self) -> Option<Held<W>> {
        let mut slot = self.slot.lock();
        let held = slot.idle.take();
        slot.wanted = held.is_none();
        held
    }

    /// Puts the writer back; returns whether the writer task asked for it
    /// meanwhile.
    fn put_back(&self, held: Held<W>) -> bool {
        let mut slot = self.slot.lock();
        slot.idle = Some(held);
        std::mem::take(&mut slot.wanted)
    }

    /// The writer task: writes what is queued whenever it is woken, until
    /// the connection closes or its input is done and everything is written.
    pub(crate) async fn write_loop(
        &self,
        hub: &Arc<Hub>,
        conn: ConnId,
        link: &Link,
    ) -> io::Result<()> {
        loop {
            let Some(mut held) = self.take() else {
                link.outbox_ready.wait().await;
                continue;
            };
            loop {
                // What an inline write left, or the batch taken below.
                if held.unfinished() {
                    let rest = &held.batch.as_bytes()[held.written..];
                    held.writer.write_all(rest).await?;
                    held.writer.flush().await?;
                    held.unflushed = false;
                }
                held.clear();
                // Taking a batch also acknowledges the previous one as written.
                let (got, closing) = hub.transmit(conn, &mut held.batch);
                link.room.notify();
                if got {
                    continue;
                }
                if closing || link.input_done.load(Ordering::Acquire) {
                    // Dropping the writer is what closes its side.
                    return Ok(());
                }
                break;
            }
            self.put_back(held);
            link.outbox_ready.wait().await;
        }
    }
}

impl<W: AsyncWrite + Unpin + Send> Flush for Shared<W> {
    fn flush(&self, hub: &Arc<Hub>, conn: ConnId, link: &Link) -> bool {
        let Some(mut held) = self.slot.lock().idle.take() else {
            // Its writer task is writing, and takes what is queued next.
            return true;
        };
        let mut wake = held.unfinished();
        if !wake {
            // A written batch is acknowledged at once, by the next take, so
            // its room counts as free for publishers waiting for it; a
            // connection that keeps getting frames is left to its writer.
            for round in 0..INLINE_ROUNDS {
                held.clear();
                let (got, closing) = hub.transmit(conn, &mut held.batch);
                link.room.notify();
                if !got && !closing {
                    break;
                }
                if closing || !write_now(&mut held) || round + 1 == INLINE_ROUNDS {
                    wake = true;
                    break;
                }
            }
        }
        self.put_back(held) || wake
    }
}

/// Writes `held`'s batch if it is small and the socket takes all of it
/// without waiting; returns whether it did. Whatever is left is the writer
/// task's, an error included (its next write meets it).
fn write_now<W: AsyncWrite + Unpin>(held: &mut Held<W>) -> bool {
    if held.batch.as_bytes().len() > INLINE_MAX {
        return false;
    }
    let mut cx = Context::from_waker(noop_waker_ref());
    while !held.rest().is_empty() {
        let start = held.written;
        match Pin::new(&mut held.writer).poll_write(&mut cx, &held.batch.as_bytes()[start..]) {
            Poll::Ready(Ok(n)) if n > 0 => held.written += n,
            _ => return false,
        }
    }
    held.unflushed = !matches!(
        Pin::new(&mut held.writer).poll_flush(&mut cx),
        Poll::Ready(Ok(()))
    );
    !held.unflushed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Offers;
    use futures::executor::block_on;
    use mist_engine::{Config, Credentials, Flow};
    use mist_proto::Request;

    /// A socket that takes up to `room` bytes, then would block.
    #[derive(Default)]
    struct Socket {
        written: Vec<u8>,
        room: usize,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.room);
            if n == 0 {
                return Poll::Pending;
            }
            self.room -= n;
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Setup {
        hub: Arc<Hub>,
        subscriber: ConnId,
        link: Arc<Link>,
        shared: Arc<Shared<Socket>>,
        publisher: ConnId,
    }

    /// A subscriber of `t` whose socket takes `room` bytes, and a publisher.
    fn setup(room: usize) -> Setup {
        // One frame fills an outbox: a batch written inline must be
        // acknowledged for the next publish to fit.
        let config = Config {
            max_outbox_frames: 1,
            ..Config::default()
        };
        let hub = Arc::new(Hub::new(config, 1 << 20));
        let (subscriber, link) = hub.connect(None, Credentials::InBand).unwrap();
        let shared = Arc::new(Shared::new(Socket {
            written: Vec::new(),
            room: usize::MAX,
        }));
        assert!(link.direct.set(shared.clone()).is_ok());
        let (publisher, _) = hub.connect(None, Credentials::InBand).unwrap();
        let mut setup = Setup {
            hub,
            subscriber,
            link,
            shared,
            publisher,
        };
        // Its `ping` is answered once the subscription is in place.
        setup.send(subscriber, Request::new("subscribe").tags(["t"]));
        setup.send(subscriber, Request::new("ping"));
        assert!(setup.written().contains("pong"));
        setup.socket_mut(|socket| {
            socket.written.clear();
            socket.room = room;
        });
        setup
    }

    impl Setup {
        fn send(&mut self, conn: ConnId, request: Request) -> Flow {
            let mut offers = Offers::default();
            let progress = self
                .hub
                .handle_messages(conn, &mut vec![Ok(request)], &mut offers);
            progress.flow
        }

        fn publish(&mut self, data: &str) -> Flow {
            self.send(
                self.publisher,
                Request::new("publish").tags(["t"]).data(data),
            )
        }

        fn socket_mut<R>(&self, f: impl FnOnce(&mut Socket) -> R) -> R {
            let mut slot = self.shared.slot.lock();
            f(&mut slot.idle.as_mut().expect("the writer is idle").writer)
        }

        fn written(&self) -> String {
            self.socket_mut(|socket| String::from_utf8(socket.written.clone()).unwrap())
        }
    }

    #[test]
    fn a_small_batch_is_written_by_the_task_that_queued_it() {
        let mut setup = setup(usize::MAX);
        for data in ["one", "two", "three"] {
            // Each fits: the one before was written and acknowledged.
            assert_eq!(setup.publish(data), Flow::Read, "{data} applied");
        }
        // No writer task ran: the publisher's own calls wrote them, and the
        // subscriber's writer has nothing to be woken for.
        let written = setup.written();
        assert_eq!(written.lines().count(), 3, "{written}");
        assert!(written.contains("one") && written.contains("three"));
        let woken = std::pin::pin!(setup.link.outbox_ready.wait());
        assert!(futures::FutureExt::now_or_never(woken).is_none());
    }

    #[test]
    fn a_full_socket_leaves_the_rest_to_the_writer_task() {
        let mut setup = setup(10);
        setup.publish("hello");
        assert_eq!(setup.written().len(), 10, "as much as the socket took");
        setup.socket_mut(|socket| socket.room = usize::MAX);
        // The writer task was woken; it writes the rest and then stops
        // (its client's input is done).
        setup.link.input_done.store(true, Ordering::Release);
        let (hub, conn, link) = (setup.hub.clone(), setup.subscriber, setup.link.clone());
        let woken = std::pin::pin!(link.outbox_ready.wait());
        assert!(futures::FutureExt::now_or_never(woken).is_some(), "woken");
        block_on(setup.shared.write_loop(&hub, conn, &link)).unwrap();
        let slot = setup.shared.slot.lock();
        assert!(slot.idle.is_none(), "the writer task kept it to the end");
    }

    #[test]
    fn a_large_batch_is_left_to_the_writer_task() {
        let mut setup = setup(usize::MAX);
        let large = "x".repeat(INLINE_MAX);
        setup.publish(&large);
        assert_eq!(setup.written(), "", "not written inline");
        let held = setup.shared.take().expect("idle");
        assert!(held.unfinished(), "taken, for the writer task to write");
    }
}
