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
    fn sorted<'s>(&mut self, sets: impl Iterator<Item = &'s TagSet>) -> Vec<Vec<String>> {
        let mut lists: Vec<Vec<String>> = sets.map(|set| self.names_of(set)).collect();
        self.work += lists.iter().map(|tags| tags.len() as u64).sum::<u64>();
        lists.sort_by_cached_key(|tags| tags.join(","));
        lists
    }

    pub(super) fn list(&mut self, conn: ConnId) {
        let Some(c) = self.conn(conn) else { return };
        let sets: Vec<TagSet> = c.subscriptions.sets().cloned().collect();
        let subscriptions = self.sorted(sets.iter());
        self.reply(conn, encode::list(&subscriptions));
    }

    /// `listall`: every distinct subscribed tag set; the admin's only when
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
        let sets: Vec<TagSet> = self.index.distinct().cloned().collect();
        let all = self.sorted(sets.iter());
        self.reply(conn, encode::listall(&all));
        Ok(())
    }
}
