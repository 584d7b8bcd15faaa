//! `publish`: one frame, encoded once, queued for every other connection
//! with a matching subscription whose token was granted all of its tags.

use super::{ConnId, Engine, Output};
use crate::outbox::Queued;
use crate::Error;
use bytes::Bytes;
use mist_proto::{encode, Request};

impl Engine {
    pub(crate) fn publish(&mut self, publisher: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("publish", request)?;
        self.permit(publisher, tags)?;
        self.stats.published += 1;
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
        let mut frame: Option<Bytes> = None;
        let data = request.data.as_ref();
        let Engine {
            slots,
            config,
            outputs,
            stats,
            access,
            work,
            ..
        } = self;
        for &id in &recipients {
            // The index holds only open connections: no generation to check.
            let Some(conn) = slots[id.slot()].conn.as_mut() else {
                continue;
            };
            if id == publisher || conn.last_publish == seq {
                continue;
            }
            conn.last_publish = seq;
            // Nothing reaches a client that its token was not granted.
            if let Some(access) = access.as_mut() {
                if !access.receives(conn.role, tags, seq) {
                    continue;
                }
            }
            *work += 2;
            let frame = frame
                .get_or_insert_with(|| encode::publish(tags, data))
                .clone();
            match conn.outbox.push_delivery(frame, config) {
                Queued::Yes { first } => {
                    stats.delivered += 1;
                    if first {
                        outputs.push_back(Output::Transmit(id));
                    }
                }
                Queued::Dropped => stats.dropped += 1,
            }
        }
        self.recipients = recipients;
        self.scratch = ids;
        Ok(())
    }
}
