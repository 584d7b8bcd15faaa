//! `publish`: one frame, encoded once, queued for every other connection
//! with a matching subscription whose token was granted all of its tags;
//! offered to the other shards that may hold such connections
//! ([`super::offer`]).
//!
//! A publisher is paced rather than allowed to outrun its subscribers: when a
//! recipient's outbox has no room, the publish is not applied and the
//! publisher waits ([`Flow::Pace`]) until that recipient's writer takes
//! frames or [`Config::pace_timeout`] passes. After the wait, recipients
//! still full whose writer is stuck writing a batch (or held back while its
//! own publishes are offered to other shards) are judged stalled: their
//! deliveries are dropped, and nobody waits for them again until their
//! writer takes frames. A recipient whose writer has not even taken what is
//! queued has not had its turn on a busy machine, which is no fault of its
//! client: it is still waited for.
//!
//! [`Flow::Pace`]: super::Flow::Pace
//! [`Config::pace_timeout`]: crate::Config::pace_timeout

use super::{conn_in, ConnId, Engine, Offer, Output};
use crate::outbox::Queued;
use crate::Error;
use bytes::Bytes;
use mist_proto::{encode, Request};

/// The frame a publish's subscribers get: the line itself when it came in
/// the canonical form (see `Request::frame`), else encoded once, here.
pub(super) fn frame_of(tags: &[String], request: &Request) -> Bytes {
    request
        .frame()
        .cloned()
        .unwrap_or_else(|| encode::publish(tags, request.data.as_ref()))
}

/// Whether a publish may make its publisher wait for full outboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// Wait for every recipient that is not stalled (a line-protocol client).
    Wait,
    /// The publisher waited its bounded time: recipients still full are
    /// judged stalled and their deliveries dropped.
    Expired,
    /// Never wait: deliveries that do not fit are dropped (a publish that
    /// arrives in its own HTTP request, with no reader to hold back).
    Never,
}

/// What became of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Queued for every recipient (or dropped where the policy says so).
    Applied,
    /// Not applied: a recipient has no room, and the publisher waits for it.
    Paced,
}

impl Engine {
    /// Publishes `request` from `publisher`; if it is offered to other
    /// shards, the offer takes the request's tags.
    pub(crate) fn publish(
        &mut self,
        publisher: ConnId,
        request: &mut Request,
        pacing: Pacing,
    ) -> Result<Published, Error> {
        let tags = self.required_tags("publish", request)?;
        self.permit(publisher, tags)?;
        let targets = self
            .shared
            .targets(self.shard, tags.iter().map(String::as_str));
        let len = request.frame().map_or_else(
            || encode::publish_len(tags, request.data.as_ref()),
            |frame| frame.len(),
        );
        if self.find_recipients(tags, Some(publisher), Some(publisher), len, pacing) {
            if let Some(c) = self.conn_mut(publisher) {
                c.paced = true;
            }
            return Ok(Published::Paced);
        }
        self.stats.published += 1;
        if !self.recipients.is_empty() || targets != 0 || self.replicating {
            // Encoded only when someone receives it.
            let frame = frame_of(tags, request);
            self.deliver(&frame, pacing);
            if self.replicating {
                self.outputs.push_back(Output::Replicate(frame.clone()));
            }
            if targets != 0 {
                self.offer(publisher, request, frame, targets, pacing);
            }
        }
        if let Some(c) = self.conn_mut(publisher) {
            c.published += 1;
            c.pace_expired = false;
        }
        Ok(Published::Applied)
    }

    /// Offers a publish this shard applied to the shards in `targets`,
    /// moving `request`'s tags into the offer; the publisher's replies wait
    /// until it is delivered everywhere.
    fn offer(
        &mut self,
        publisher: ConnId,
        request: &mut Request,
        frame: Bytes,
        targets: u64,
        pacing: Pacing,
    ) {
        if let Some(c) = self.conn_mut(publisher) {
            c.offering = true;
        }
        let tags = request.tags.take().unwrap_or_default();
        let offer = Offer::new(publisher, frame, tags, targets, pacing != Pacing::Never);
        self.outputs.push_back(Output::Offer(offer));
    }

    /// Fills `self.recipients` with this shard's connections that a message
    /// with `tags` goes to: matched, once each, never `publisher`, only
    /// where granted. Numbers the publish. Unless `pacing` is
    /// [`Pacing::Never`], returns whether a recipient that is not stalled
    /// has no room for a frame of `len` bytes (after an expired wait, only
    /// one whose writer has not taken what is queued), and tells every such
    /// recipient that `waiter` waits for it.
    pub(super) fn find_recipients(
        &mut self,
        tags: &[String],
        publisher: Option<ConnId>,
        waiter: Option<ConnId>,
        len: usize,
        pacing: Pacing,
    ) -> bool {
        // Tags no subscription uses cannot narrow a match, so they are skipped.
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(tags.iter().filter_map(|t| self.index.get(t)));
        ids.sort_unstable();
        ids.dedup();
        self.publish_seq += 1;
        let seq = self.publish_seq;
        let mut recipients = std::mem::take(&mut self.recipients);
        recipients.clear();
        self.index.matches(&ids, &mut self.work, &mut recipients);
        self.scratch = ids;
        let mut must_wait = false;
        let Engine {
            slots,
            access,
            config,
            ..
        } = self;
        recipients.retain(|&id| {
            // The index holds only open connections: no generation to check.
            let Some(conn) = slots[id.slot()].conn.as_mut() else {
                return false;
            };
            if Some(id) == publisher || conn.last_publish == seq {
                return false;
            }
            conn.last_publish = seq;
            let granted = access
                .as_mut()
                .is_none_or(|access| access.receives(conn.role, tags, seq));
            // After the wait, only a writer that has not had its turn is
            // waited for; one that is writing, or held back by offers of its
            // own, is not.
            let waits = match pacing {
                Pacing::Wait => true,
                Pacing::Expired => !conn.outbox.writing() && !conn.offering,
                Pacing::Never => false,
            };
            if granted && waits && !conn.stalled && !conn.outbox.fits(len, config) {
                must_wait = true;
                if let Some(waiter) = waiter.filter(|w| !conn.waiters.contains(w)) {
                    conn.waiters.push(waiter);
                }
            }
            granted
        });
        self.recipients = recipients;
        must_wait
    }

    /// Queues `frame` for every one of `self.recipients` it fits; drops it
    /// for the others, judging them stalled after a publisher's wait.
    pub(super) fn deliver(&mut self, frame: &[u8], pacing: Pacing) {
        let Engine {
            slots,
            config,
            outputs,
            stats,
            work,
            recipients,
            ..
        } = self;
        for &id in recipients.iter() {
            let Some(conn) = conn_in(slots, id) else {
                continue;
            };
            *work += 2;
            match conn.outbox.push_delivery(frame, config) {
                Queued::Yes { first } => {
                    stats.delivered += 1;
                    if first {
                        outputs.push_back(Output::Transmit(id));
                    }
                }
                Queued::Dropped => {
                    stats.dropped += 1;
                    if pacing == Pacing::Expired {
                        conn.stalled = true;
                    }
                }
            }
        }
    }
}
