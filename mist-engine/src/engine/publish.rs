//! `publish`: one frame, encoded once, queued for every other connection
//! with a matching subscription whose token was granted all of its tags;
//! offered to the other shards that may hold such connections
//! ([`super::offer`]).
//!
//! A publisher is paced rather than allowed to outrun its subscribers: when a
//! recipient's outbox has no room, the publish is not applied and the
//! publisher waits ([`Flow::Pace`]) until that recipient's writer takes
//! frames or [`Config::pace_timeout`] passes. After the wait, recipients
//! still full are judged stalled: their deliveries are dropped, and nobody
//! waits for them again until their writer takes frames.
//!
//! [`Flow::Pace`]: super::Flow::Pace
//! [`Config::pace_timeout`]: crate::Config::pace_timeout

use super::{conn_in, ConnId, Engine, Offer, Output};
use crate::outbox::Queued;
use crate::Error;
use bytes::Bytes;
use mist_proto::{encode, Request};

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
    pub(crate) fn publish(
        &mut self,
        publisher: ConnId,
        request: &Request,
        pacing: Pacing,
    ) -> Result<Published, Error> {
        let tags = self.required_tags("publish", request)?;
        self.permit(publisher, tags)?;
        let targets = self
            .shared
            .targets(self.shard, tags.iter().map(String::as_str));
        self.find_recipients(tags, Some(publisher));
        let frame: Option<Bytes> = (!self.recipients.is_empty() || targets != 0)
            .then(|| encode::publish(tags, request.data.as_ref()));
        if let (Some(frame), Pacing::Wait) = (&frame, pacing) {
            if self.must_wait(frame.len(), publisher) {
                if let Some(c) = self.conn_mut(publisher) {
                    c.paced = true;
                }
                return Ok(Published::Paced);
            }
        }
        self.stats.published += 1;
        let Some(frame) = frame else {
            return Ok(Published::Applied);
        };
        self.deliver(&frame, pacing);
        if targets != 0 {
            if let Some(c) = self.conn_mut(publisher) {
                c.offering = true;
            }
            let offer = Offer::new(publisher, frame, tags, targets, pacing != Pacing::Never);
            self.outputs.push_back(Output::Offer(offer));
        }
        if let Some(c) = self.conn_mut(publisher) {
            c.published += 1;
        }
        Ok(Published::Applied)
    }

    /// Fills `self.recipients` with this shard's connections that a message
    /// with `tags` goes to: matched, once each, never `publisher`, only
    /// where granted. Numbers the publish.
    pub(super) fn find_recipients(&mut self, tags: &[String], publisher: Option<ConnId>) {
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
        let Engine { slots, access, .. } = self;
        recipients.retain(|&id| {
            // The index holds only open connections: no generation to check.
            let Some(conn) = slots[id.slot()].conn.as_mut() else {
                return false;
            };
            if Some(id) == publisher || conn.last_publish == seq {
                return false;
            }
            conn.last_publish = seq;
            access
                .as_mut()
                .is_none_or(|access| access.receives(conn.role, tags, seq))
        });
        self.recipients = recipients;
    }

    /// Whether a delivery of `len` bytes must wait because a recipient that
    /// is not stalled has no room; if so, `waiter` is told when one makes
    /// room.
    pub(super) fn must_wait(&mut self, len: usize, waiter: ConnId) -> bool {
        let mut wait = false;
        for &id in &self.recipients {
            let Some(conn) = self.slots[id.slot()].conn.as_mut() else {
                continue;
            };
            if !conn.stalled && !conn.outbox.fits(len, &self.config) {
                wait = true;
                if !conn.waiters.contains(&waiter) {
                    conn.waiters.push(waiter);
                }
            }
        }
        wait
    }

    /// Queues `frame` for every one of `self.recipients` it fits; drops it
    /// for the others, judging them stalled after a publisher's wait.
    pub(super) fn deliver(&mut self, frame: &Bytes, pacing: Pacing) {
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
            match conn.outbox.push_delivery(frame.clone(), config) {
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
