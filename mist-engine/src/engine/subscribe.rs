//! `subscribe` and `unsubscribe`: a connection's tag sets in the index,
//! within its limits on count and bytes.

use super::{conn_in, ConnId, Engine, Output};
use crate::index::{Index, Subscriptions, TagId};
use crate::Error;
use mist_proto::Request;
use std::sync::atomic::Ordering;

impl Engine {
    pub(super) fn subscribe(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("subscribe", request)?;
        self.permit(conn, tags)?;
        let Some(c) = self.conn(conn) else {
            return Ok(());
        };
        let held = &c.subscriptions;
        if (self.index.known_set(tags)).is_some_and(|set| held.contains(&set)) {
            return Ok(());
        }
        let config = &self.config;
        if held.len() >= config.max_subscriptions {
            return Err(Error::TooManySubscriptions {
                limit: config.max_subscriptions,
            });
        }
        if held.bytes() + Index::bytes_of(tags) > config.max_subscription_bytes {
            return Err(Error::SubscriptionBytes {
                limit: config.max_subscription_bytes,
            });
        }
        self.change_subscriptions(conn, |index, subs| {
            index.insert(conn, subs, tags);
        });
        if self.anchoring {
            self.await_anchor(conn, tags);
        }
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("unsubscribe", request)?;
        self.permit(conn, tags)?;
        if let Some(set) = self.index.known_set(tags) {
            self.drop_subscription(conn, &set);
        }
        Ok(())
    }

    /// Removes `conn`'s subscription `set`, if it holds it.
    pub(super) fn drop_subscription(&mut self, conn: ConnId, set: &[TagId]) {
        self.change_subscriptions(conn, |index, subs| {
            index.remove(conn, subs, set);
        });
    }

    /// Runs `change` on `conn`'s subscriptions in the index, keeping the
    /// counters of subscriptions and subscribers right.
    pub(super) fn change_subscriptions(
        &mut self,
        conn: ConnId,
        change: impl FnOnce(&mut Index, &mut Subscriptions),
    ) {
        let Engine {
            slots,
            index,
            stats,
            shared,
            shard,
            anchoring,
            outputs,
            ..
        } = self;
        if conn.shard() != *shard {
            return;
        }
        let Some(c) = conn_in(slots, conn) else {
            return;
        };
        let before = c.subscriptions.len();
        change(index, &mut c.subscriptions);
        let after = c.subscriptions.len();
        stats.subscriptions = stats.subscriptions + after - before;
        match (before > 0, after > 0) {
            (false, true) => {
                stats.subscribers += 1;
                shared.subscribers.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                stats.subscribers -= 1;
                shared.subscribers.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        // The other shards learn where this one has subscribers, and the
        // other nodes which anchors this one has.
        let mut gone = Vec::new();
        for (names, added) in index.changed.drain(..) {
            shared.subscription_changed(*shard, &names, added);
            if let (true, Some(anchor)) = (*anchoring, names.first()) {
                let mut anchors = shared.anchors();
                let changed = if added {
                    anchors.add(anchor)
                } else {
                    anchors.remove(anchor)
                };
                drop(anchors);
                if changed {
                    outputs.push_back(Output::Interest(anchor.clone()));
                    if !added {
                        gone.push(anchor.clone());
                    }
                }
            }
        }
        // Nobody waits for an anchor the node no longer has.
        for anchor in gone {
            self.release_waiters(&anchor);
        }
    }
}
