//! Routing by tag between the nodes of one broker: the tags this node
//! needs to hear about from the others.
//!
//! Each distinct subscription is *anchored* on its first tag in sorted
//! order. A message matches a subscription only if it carries all of its
//! tags, the anchor among them, so a node that hears every message carrying
//! one of its anchors hears every message it can deliver. The node tells
//! whoever carries messages between nodes which anchors it has
//! ([`Output::Interest`](crate::Output::Interest)), and that carrier says
//! when it hears an anchor's messages ([`Engine::handle_anchor_ready`]):
//! until then, a client that subscribed on the anchor waits, so that once
//! its `subscribe` is answered (by a `ping` after it) it misses nothing
//! published on any node.
//!
//! [`Engine::handle_anchor_ready`]: crate::Engine::handle_anchor_ready

use std::collections::HashMap;

/// The node's anchors, across its shards.
#[derive(Default)]
pub(crate) struct Anchors {
    tags: HashMap<String, Anchor>,
}

struct Anchor {
    /// Distinct subscriptions on this anchor, one per shard holding each.
    holders: u32,
    /// The other nodes' messages on it are heard.
    ready: bool,
}

impl Anchors {
    /// One more subscription on `tag`; returns whether the node did not
    /// have the anchor before.
    pub(crate) fn add(&mut self, tag: &str) -> bool {
        match self.tags.get_mut(tag) {
            Some(anchor) => {
                anchor.holders += 1;
                false
            }
            None => {
                let anchor = Anchor {
                    holders: 1,
                    ready: false,
                };
                self.tags.insert(tag.to_string(), anchor);
                true
            }
        }
    }

    /// One subscription fewer on `tag`; returns whether that was the last.
    pub(crate) fn remove(&mut self, tag: &str) -> bool {
        let Some(anchor) = self.tags.get_mut(tag) else {
            return false;
        };
        anchor.holders -= 1;
        if anchor.holders > 0 {
            return false;
        }
        self.tags.remove(tag);
        true
    }

    /// Whether a subscription on `tag` must wait: the node has the anchor
    /// and does not hear it yet.
    pub(crate) fn pending(&self, tag: &str) -> bool {
        self.tags.get(tag).is_some_and(|a| !a.ready)
    }

    pub(crate) fn contains(&self, tag: &str) -> bool {
        self.tags.contains_key(tag)
    }

    /// The anchor `tag` is heard, if the node still has it.
    pub(crate) fn ready(&mut self, tag: &str) {
        if let Some(anchor) = self.tags.get_mut(tag) {
            anchor.ready = true;
        }
    }

    /// Every anchor counts as heard (the link between nodes is down, and
    /// nobody should wait for it).
    pub(crate) fn all_ready(&mut self) {
        for anchor in self.tags.values_mut() {
            anchor.ready = true;
        }
    }

    pub(crate) fn tags(&self) -> Vec<String> {
        self.tags.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_is_new_once_and_gone_with_its_last_holder() {
        let mut anchors = Anchors::default();
        assert!(anchors.add("a"));
        assert!(!anchors.add("a"));
        assert!(anchors.pending("a"));
        anchors.ready("a");
        assert!(!anchors.pending("a"));
        assert!(!anchors.remove("a"));
        assert!(anchors.remove("a"));
        assert!(!anchors.contains("a"));
        assert!(anchors.add("a"), "new again");
        assert!(anchors.pending("a"), "and not heard yet");
    }

    #[test]
    fn readiness_of_a_tag_the_node_does_not_have_is_ignored() {
        let mut anchors = Anchors::default();
        anchors.ready("a");
        assert!(anchors.add("a"));
        assert!(anchors.pending("a"));
        anchors.all_ready();
        assert!(!anchors.pending("a"));
        assert!(!anchors.remove("x"));
    }
}
