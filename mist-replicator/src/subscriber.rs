//! The subscribing link: hears the other nodes on one connection at a time
//! and hands what is new to the hub; routing by tag, it also keeps the
//! node's subscription to each anchor's channel in step with the hub's
//! anchors, and tells the hub when one is heard.

use crate::envelope::{self, Seen};
use crate::resp::{self, Value};
use crate::stream::Stream;
use crate::target::Routing;
use crate::{decoder, linked, reply, State, Verbs, SILENCE_LIMIT};
use async_io::Timer;
use bytes::Bytes;
use futures::future::{select, Either};
use futures::io::AsyncWriteExt;
use mist_frontend::Hub;
use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Channels named in one SUBSCRIBE at most.
const CHANNELS_PER_COMMAND: usize = 512;

/// Hears the other nodes' frames and hands them to the hub, on one
/// connection at a time. Forever.
pub(crate) async fn subscribe_loop(state: &State, hub: &Arc<Hub>) {
    let mut seen = Seen::default();
    linked(state, "subscribing", &state.subscriber_up, async |stream| {
        let error = subscribe_on(state, stream, hub, &mut seen).await;
        if state.target.routing == Routing::Tag {
            // Down: nobody waits for an anchor until the link is back.
            state.anchors_live.store(false, Ordering::Release);
            hub.release_anchors();
        }
        error
    })
    .await
}

/// The anchors' channels as asked of Redis on one connection.
#[derive(Default)]
struct Channels {
    /// Asked for, and not given up since.
    subscribed: HashSet<String>,
    /// SUBSCRIBEs sent and not answered yet, by tag.
    subscribing: HashMap<String, u32>,
    /// UNSUBSCRIBEs sent and not answered yet, by tag.
    unsubscribing: HashMap<String, u32>,
}

fn count_up(counts: &mut HashMap<String, u32>, tag: &str) {
    *counts.entry(tag.to_string()).or_default() += 1;
}

/// Counts one answer down; whether one was awaited.
fn count_down(counts: &mut HashMap<String, u32>, tag: &str) -> bool {
    let Some(count) = counts.get_mut(tag) else {
        return false;
    };
    *count -= 1;
    if *count == 0 {
        counts.remove(tag);
    }
    true
}

impl Channels {
    /// Brings the subscription to `tag`'s channel in step with whether the
    /// hub has the anchor now, writing the command into `subscribe` or
    /// `unsubscribe`; tells the hub when nobody need wait.
    fn reconcile(
        &mut self,
        hub: &Arc<Hub>,
        tag: String,
        subscribe: &mut Vec<String>,
        unsubscribe: &mut Vec<String>,
    ) {
        let wanted = hub.is_anchored(&tag);
        match (wanted, self.subscribed.contains(&tag)) {
            (true, false) => {
                count_up(&mut self.subscribing, &tag);
                self.subscribed.insert(tag.clone());
                subscribe.push(tag);
            }
            (false, true) => {
                count_up(&mut self.unsubscribing, &tag);
                self.subscribed.remove(&tag);
                hub.anchor_dropped(&tag);
                unsubscribe.push(tag);
            }
            // Heard already, unless an answer is still to come.
            (true, true) if !self.subscribing.contains_key(&tag) => hub.anchor_ready(&tag),
            (true, true) => {}
            (false, false) => hub.anchor_dropped(&tag),
        }
    }

    /// Redis answered a SUBSCRIBE for `tag`: once the last one asked is
    /// answered, the anchor is heard.
    fn subscribed(&mut self, hub: &Arc<Hub>, tag: &str) {
        count_down(&mut self.subscribing, tag);
        if !self.subscribing.contains_key(tag) && self.subscribed.contains(tag) {
            hub.anchor_ready(tag);
        }
    }
}

/// Writes `verb` for the channels of `tags`, a bounded number at a time.
fn channel_commands(state: &State, verb: &[u8], tags: &[String], out: &mut Vec<u8>) {
    for chunk in tags.chunks(CHANNELS_PER_COMMAND) {
        let channels: Vec<Vec<u8>> = chunk.iter().map(|tag| state.tag_channel(tag)).collect();
        let mut args: Vec<&[u8]> = vec![verb];
        args.extend(channels.iter().map(Vec::as_slice));
        resp::command(&args, out);
    }
}

/// Subscribes on `stream` and hands what arrives to `hub` until the stream
/// fails or has been silent too long (not even this node's probe came):
/// returns why.
async fn subscribe_on(
    state: &State,
    stream: &mut Stream,
    hub: &Arc<Hub>,
    seen: &mut Seen,
) -> io::Error {
    let verbs = state.verbs();
    let by_tag = state.target.routing == Routing::Tag;
    let mut decoder = decoder();
    let mut channels = Channels::default();
    let mut out = Vec::new();
    resp::command(&[verbs.subscribe, state.target.prefix.as_bytes()], &mut out);
    if by_tag {
        // Changes from now on are marked for this connection; every
        // anchor the hub has now is asked for at once.
        state.anchors_live.store(true, Ordering::Release);
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        for tag in hub.anchors() {
            channels.reconcile(hub, tag, &mut subscribe, &mut unsubscribe);
        }
        channel_commands(state, verbs.subscribe, &subscribe, &mut out);
    }
    if let Err(e) = stream.write_all(&out).await {
        return e;
    }
    let mut frames: Vec<Bytes> = Vec::new();
    let mut heard = Instant::now();
    loop {
        let silence = Timer::at(heard + SILENCE_LIMIT);
        let changed = state.wake.1.recv();
        let event = match select(
            pin!(reply(stream, &mut decoder)),
            select(pin!(silence), pin!(changed)),
        )
        .await
        {
            Either::Left((outcome, _)) => Event::Heard(outcome),
            Either::Right((Either::Left(_), _)) => Event::Silent,
            Either::Right((Either::Right(_), _)) => Event::Changed,
        };
        let value = match event {
            Event::Heard(Ok(value)) => value,
            Event::Heard(Err(e)) => return e,
            Event::Silent => {
                return io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                    "the subscription: nothing from Redis, not even this node's probe, for {} s",
                    SILENCE_LIMIT.as_secs()
                ),
                )
            }
            Event::Changed => {
                let dirty = std::mem::take(&mut *state.dirty());
                let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
                for tag in dirty {
                    channels.reconcile(hub, tag, &mut subscribe, &mut unsubscribe);
                }
                out.clear();
                channel_commands(state, verbs.subscribe, &subscribe, &mut out);
                channel_commands(state, verbs.unsubscribe, &unsubscribe, &mut out);
                if let Err(e) = stream.write_all(&out).await {
                    return e;
                }
                continue;
            }
        };
        heard = Instant::now();
        state.heard();
        // Everything that arrived with it is handed over in one go.
        let mut values = vec![value];
        loop {
            match decoder.decode() {
                Ok(Some(value)) => values.push(value),
                Ok(None) => break,
                Err(e) => return io::Error::other(e),
            }
        }
        frames.clear();
        for value in values {
            if let Err(e) = take(state, &verbs, hub, &mut channels, seen, value, &mut frames) {
                return e;
            }
        }
        if frames.is_empty() {
            continue;
        }
        state
            .received
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        let items: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        for e in hub.handle_remote_all(&items) {
            state.dropped.fetch_add(1, Ordering::Relaxed);
            log::debug!("replicator: a message from another node was refused: {e}");
        }
    }
}

/// What the subscribing connection waited for.
enum Event {
    Heard(io::Result<Value>),
    Silent,
    Changed,
}

/// Acts on one push from Redis; a new message's body goes to `frames`.
fn take(
    state: &State,
    verbs: &Verbs,
    hub: &Arc<Hub>,
    channels: &mut Channels,
    seen: &mut Seen,
    value: Value,
    frames: &mut Vec<Bytes>,
) -> io::Result<()> {
    let items = match value {
        Value::Array(Some(items)) => items,
        Value::Error(e) => return Err(io::Error::other(format!("SUBSCRIBE refused: {e}"))),
        _ => return Ok(()),
    };
    let mut items = items.into_iter();
    let (kind, channel, payload) = (items.next(), items.next(), items.next());
    let (Some(kind), Some(channel)) = (
        kind.as_ref().and_then(Value::bytes),
        channel.as_ref().and_then(Value::bytes),
    ) else {
        return Ok(());
    };
    let tag = state.tag_of_channel(channel);
    if kind == verbs.subscribed {
        match tag {
            Some(tag) => channels.subscribed(hub, &tag),
            None => {
                state.subscriber_up.store(true, Ordering::Release);
                log::info!("replicator {}: subscribed", state.target);
            }
        }
    } else if kind == verbs.unsubscribed {
        let asked = tag.is_some_and(|tag| count_down(&mut channels.unsubscribing, &tag));
        // Not asked for: the slot moved (sharded pub/sub); find its master
        // again.
        if !asked && verbs.unsubscribed == b"sunsubscribe" {
            return Err(io::Error::other(
                "Redis ended the subscription: its slot moved",
            ));
        }
    } else if kind == verbs.message {
        let Some(Value::Bulk(Some(payload))) = payload else {
            return Ok(());
        };
        match envelope::decode(&payload) {
            // This node's own, or another node's probe.
            Ok(e) if e.origin == state.node || e.body.is_empty() => {}
            // A copy heard on another of its tags.
            Ok(e) if !seen.fresh(e.origin, e.seq) => {}
            Ok(e) => frames.push(e.body),
            Err(why) => {
                state.dropped.fetch_add(1, Ordering::Relaxed);
                log::debug!("replicator: {why} on the channel");
            }
        }
    }
    Ok(())
}
