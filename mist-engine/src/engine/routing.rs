//! Routing by tag between nodes: this node says which anchors it has
//! ([`Output::Interest`](super::Output::Interest)), and a subscription waits until its anchor is
//! heard ([`Engine::handle_anchor_ready`]); see [`crate::anchor`].

use super::{ConnId, Engine};

impl Engine {
    /// Makes this shard anchor its subscriptions and hold a client whose
    /// new subscription's anchor the node does not hear yet, until
    /// [`Engine::handle_anchor_ready`]. Call it on every shard, before
    /// clients connect.
    pub fn set_routing_by_tag(&mut self, on: bool) {
        self.anchoring = on;
        self.index.record_changes = on || self.shared.shards() > 1;
    }

    /// Whether this node has a subscription anchored on `tag` now, on any
    /// shard: whether it needs the other nodes' messages carrying `tag`.
    pub fn is_anchored(&self, tag: &str) -> bool {
        self.shared.anchors().contains(tag)
    }

    /// Every anchor this node has now, on every shard (to ask for them all
    /// again, after the link to the other nodes was down).
    pub fn anchors(&self) -> Vec<String> {
        self.shared.anchors().tags()
    }

    /// Input: the other nodes' messages carrying `tag` are heard now. Call
    /// it on every shard: each lets its clients that waited for it go on.
    pub fn handle_anchor_ready(&mut self, tag: &str) {
        self.shared.anchors().ready(tag);
        self.release_waiters(tag);
    }

    /// Input: the other nodes' messages carrying `tag` are no longer asked
    /// for, because [`Engine::is_anchored`] said the node had no anchor
    /// there. Call it on every shard: clients that waited for it whose
    /// subscription ended meanwhile go on (if the node has the anchor again
    /// already, they wait for [`Engine::handle_anchor_ready`]).
    pub fn handle_anchor_dropped(&mut self, tag: &str) {
        self.release_waiters(tag);
    }

    /// Input: nobody should wait for any anchor (the link to the other
    /// nodes is down: what they publish is lost to this node anyway, until
    /// it is back). Call it on every shard.
    pub fn handle_anchors_released(&mut self) {
        self.shared.anchors().all_ready();
        let tags: Vec<String> = self.awaiting.keys().cloned().collect();
        for tag in tags {
            self.release_waiters(&tag);
        }
    }

    /// Holds `conn`, which just subscribed to `tags`, until their anchor
    /// is heard.
    pub(super) fn await_anchor(&mut self, conn: ConnId, tags: &[String]) {
        let Some(anchor) = tags.iter().min() else {
            return;
        };
        if !self.shared.anchors().pending(anchor) {
            return;
        }
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        c.waiting = true;
        self.awaiting.entry(anchor.clone()).or_default().push(conn);
    }

    /// Lets the clients waiting for `anchor` go on, unless the node still
    /// has it and does not hear it yet.
    pub(super) fn release_waiters(&mut self, anchor: &str) {
        if self.shared.anchors().pending(anchor) {
            return;
        }
        for conn in self.awaiting.remove(anchor).unwrap_or_default() {
            self.settled(conn);
        }
    }
}
