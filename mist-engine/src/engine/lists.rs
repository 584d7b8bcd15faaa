//! `list` and `listall`: subscriptions as sorted tag lists.

use super::{ConnId, Engine};
use crate::index::TagSet;
use crate::Error;
use mist_proto::encode;

impl Engine {
    /// A subscription's tag names, sorted.
    fn names_of(&self, set: &TagSet) -> Vec<String> {
        let mut tags: Vec<String> = set
            .iter()
            .map(|&id| self.index.name(id).to_owned())
            .collect();
        tags.sort_unstable();
        tags
    }

    /// Subscriptions sorted as the replies show them, counting the work.
    fn sorted(&mut self, mut lists: Vec<Vec<String>>) -> Vec<Vec<String>> {
        self.work += lists.iter().map(|tags| tags.len() as u64).sum::<u64>();
        lists.sort_by_cached_key(|tags| tags.join(","));
        lists
    }

    pub(super) fn list(&mut self, conn: ConnId) {
        let Some(c) = self.conn(conn) else { return };
        let sets: Vec<Vec<String>> = c.subscriptions.sets().map(|s| self.names_of(s)).collect();
        let subscriptions = self.sorted(sets);
        self.reply(conn, encode::list(&subscriptions));
    }

    /// `listall`: every distinct subscribed tag set, on every shard; the admin's only when
    /// authentication is on. Refused when the reply could not fit in an
    /// outbox at all.
    pub(super) fn listall(&mut self, conn: ConnId) -> Result<(), Error> {
        if self.access.is_some() && !self.is_admin(conn) {
            return Err(Error::AdminOnly);
        }
        if self.listall_bound().is_none() {
            return Err(Error::ReplyTooLarge {
                command: "listall",
                limit: self.config.max_outbox_bytes,
            });
        }
        // Every shard's subscriptions, not only this one's.
        let sets: Vec<Vec<String>> = if self.shared.shards() > 1 {
            self.shared.registry().sets()
        } else {
            let sets: Vec<TagSet> = self.index.distinct().cloned().collect();
            sets.iter().map(|s| self.names_of(s)).collect()
        };
        let all = self.sorted(sets);
        self.reply(conn, encode::listall(&all, self.scope()));
        Ok(())
    }
}
