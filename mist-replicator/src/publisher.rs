//! The publishing link: what this node's hub hands over goes to Redis, in
//! order, on one connection at a time (a pool would reorder), pipelined;
//! a probe goes to this node's own subscription when it has heard nothing
//! for a while.

use crate::envelope;
use crate::resp::{self, Decoder, Value};
use crate::stream::Stream;
use crate::target::Routing;
use crate::{decoder, linked, reply, within, State, IO_TIMEOUT, PROBE_AFTER};
use async_io::Timer;
use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::AsyncWriteExt;
use mist_proto::{LineDecoder, ProtoError, Request};
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Frames published in one write.
const PIPELINE: usize = 256;

/// Sends the frames of this node's clients, in order, on one connection
/// at a time; a probe when the subscription has been quiet. Forever.
pub(crate) async fn publish_loop(state: &State, frames: async_channel::Receiver<Bytes>) {
    let mut writer = Writer::default();
    linked(state, "publishing", &state.publisher_up, async |stream| {
        publish_on(state, stream, &frames, &mut writer).await
    })
    .await
}

/// Turns frames into PUBLISH commands.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    payload: Vec<u8>,
    tags: Vec<Result<Request, ProtoError>>,
    /// Commands in `out`, each answered by one reply.
    commands: usize,
}

impl Writer {
    fn clear(&mut self) {
        self.out.clear();
        self.commands = 0;
    }

    /// Appends the commands that carry `body` from this node: on the
    /// broker's channel, or (routing by tag, a publish) on the channel of
    /// each of its tags. `false` if a publish to route has no tags to read.
    fn carry(&mut self, state: &State, body: &[u8]) -> bool {
        let verb = state.verbs().publish;
        self.payload.clear();
        envelope::encode(state.node, state.next_seq(), body, &mut self.payload);
        let by_tag = state.target.routing == Routing::Tag && body.first() == Some(&b'{');
        if !by_tag {
            resp::command(
                &[verb, state.target.prefix.as_bytes(), &self.payload],
                &mut self.out,
            );
            self.commands += 1;
            return true;
        }
        let mut tags = match self.read_tags(body) {
            Some(tags) => tags,
            None => return false,
        };
        tags.sort_unstable();
        tags.dedup();
        for tag in tags {
            resp::command(
                &[verb, &state.tag_channel(&tag), &self.payload],
                &mut self.out,
            );
            self.commands += 1;
        }
        true
    }

    /// The tags of a publish frame, as the hub made it.
    fn read_tags(&mut self, frame: &[u8]) -> Option<Vec<String>> {
        self.tags.clear();
        LineDecoder::new(frame.len() + 1).decode(frame, &mut self.tags);
        match self.tags.pop() {
            Some(Ok(request)) => request.tags.filter(|tags| !tags.is_empty()),
            _ => None,
        }
    }
}

/// `frames` published on `stream` until it fails; returns why.
async fn publish_on(
    state: &State,
    stream: &mut Stream,
    frames: &async_channel::Receiver<Bytes>,
    writer: &mut Writer,
) -> io::Error {
    let mut decoder = decoder();
    state.publisher_up.store(true, Ordering::Release);
    let mut last_probe = Instant::now();
    loop {
        let mut batch = Vec::new();
        match select(pin!(frames.recv()), pin!(Timer::after(PROBE_AFTER))).await {
            Either::Left((Ok(frame), _)) => batch.push(frame),
            Either::Left((Err(_), _)) => return io::Error::other("the server stopped"),
            Either::Right(_) => {}
        }
        while batch.len() < PIPELINE {
            match frames.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        writer.clear();
        // The subscription is quiet: a probe to itself shows it is alive.
        if state.quiet_for() >= PROBE_AFTER && last_probe.elapsed() >= PROBE_AFTER {
            last_probe = Instant::now();
            writer.carry(state, b"");
        }
        let mut unreadable = 0;
        for frame in &batch {
            if !writer.carry(state, frame) {
                unreadable += 1;
            }
        }
        let bytes: usize = batch.iter().map(Bytes::len).sum();
        state.queued.fetch_sub(bytes, Ordering::AcqRel);
        state.dropped.fetch_add(unreadable, Ordering::Relaxed);
        let sent = batch.len() as u64 - unreadable;
        if writer.commands == 0 {
            continue;
        }
        let outcome = async {
            stream.write_all(&writer.out).await?;
            for _ in 0..writer.commands {
                publish_reply(stream, &mut decoder).await?;
            }
            Ok(())
        };
        match within(IO_TIMEOUT, "PUBLISH", outcome).await {
            Ok(()) => {
                state.sent.fetch_add(sent, Ordering::Relaxed);
            }
            Err(e) => {
                // At most once: the batch in flight is lost.
                state.dropped.fetch_add(sent, Ordering::Relaxed);
                return e;
            }
        }
    }
}

/// Reads one PUBLISH reply: how many heard it, or Redis's refusal.
async fn publish_reply(stream: &mut Stream, decoder: &mut Decoder) -> io::Result<()> {
    match reply(stream, decoder).await? {
        Value::Integer(_) => Ok(()),
        Value::Error(e) => Err(io::Error::other(format!("PUBLISH refused: {e}"))),
        other => Err(io::Error::other(format!(
            "PUBLISH: unexpected reply {other:?}"
        ))),
    }
}
