//! Other nodes of one broker: a node that replicates hands every publish
//! its clients make to the caller ([`Output::Replicate`]), who carries it
//! to the other nodes; a publish that comes back from another node goes in
//! with [`Engine::handle_remote_publish`] and reaches this node's matching
//! subscribers as a local one would, granted tags and all, but it never
//! waits: a subscriber that is full loses it, and it is not replicated
//! again.
//!
//! [`Output::Replicate`]: super::Output::Replicate

use super::publish::{frame_of, Pacing};
use super::Engine;
use crate::auth::Change;
use crate::Error;
use mist_proto::{encode, Request};

impl Engine {
    /// Makes every publish applied on this shard from now on also come out
    /// as [`Output::Replicate`](super::Output::Replicate). Call it on every
    /// shard of a node that has other nodes.
    pub fn set_replicating(&mut self, replicating: bool) {
        self.replicating = replicating;
    }

    /// Whether publishes come out as [`Output::Replicate`](super::Output::Replicate).
    pub fn is_replicating(&self) -> bool {
        self.replicating
    }

    /// What `who` and `listall` cover: this node alone when it replicates.
    pub(super) fn scope(&self) -> encode::Scope {
        if self.replicating {
            encode::Scope::Node
        } else {
            encode::Scope::Broker
        }
    }

    /// The shards that may hold a subscription `tags` match, as a bit mask
    /// (bit `s` for shard `s`): the shards to give a remote publish to.
    pub fn shards_wanting(&self, tags: &[String]) -> u64 {
        self.shared.wanting(tags.iter().map(String::as_str))
    }

    /// Input: an admin change another node made and stored. It takes
    /// effect here as if made here (a revoked token's connections are
    /// closed, subscriptions to tags taken away end) on every shard (after
    /// [`Output::Sync`](super::Output::Sync)), and is not stored again nor
    /// replicated: nodes share a store, or each keeps its own memory.
    /// Returns `false` on a node without authentication, which ignores it.
    pub fn handle_remote_change(&mut self, change: Change) -> bool {
        let shared = self.shared.clone();
        let Some(mut authority) = shared.authority() else {
            return false;
        };
        // Registered here already (nodes that each keep their memory, or a
        // change that crossed another): the token keeps its connections and
        // gets exactly the tags registered.
        let change = match change {
            Change::Register { token, tags } => match authority.granted(&token) {
                Some(old) => {
                    let gone = old.difference(&tags).cloned().collect();
                    authority.apply(Change::Unset {
                        token: token.clone(),
                        tags: gone,
                    });
                    Change::Set { token, tags }
                }
                None => Change::Register { token, tags },
            },
            other => other,
        };
        authority.apply(change);
        drop(authority);
        self.settle();
        true
    }

    /// Input: a publish from another node (`request`, decoded from the frame
    /// it published). It goes to this shard's connections that match it and
    /// were granted all of its tags; one without room loses it. Tags beyond
    /// the limits are refused as they would be from a client. Give it to
    /// every shard [`Engine::shards_wanting`] names.
    pub fn handle_remote_publish(&mut self, request: &Request) -> Result<(), Error> {
        let tags = self.required_tags("publish", request)?;
        let frame = frame_of(tags, request);
        self.find_recipients(tags, None, None, frame.len(), Pacing::Never);
        self.stats.remote += 1;
        self.deliver(&frame, Pacing::Never);
        Ok(())
    }
}
