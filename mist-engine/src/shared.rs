//! What the shards of one server share: the counters every shard answers
//! from (`who`, the connection limit), where each shard has subscribers
//! (so that a publish is offered only to shards that may want it), every
//! distinct subscription (for `listall`), and the [`Authority`].
//!
//! The per-message path reads only atomics here: a shard offers a publish to
//! another shard when one of the message's tags falls in a bucket where that
//! shard holds a subscription's *interest tag* (the first of its sorted tag
//! names). A message matches a subscription only if it carries all of its
//! tags, the interest tag among them, so no matching shard is ever skipped;
//! a shared bucket only costs an offer that finds nothing.

use crate::anchor::Anchors;
use crate::authority::Authority;
use crate::hash::IdHasher;
use crate::index::set_bytes;
use mist_proto::encode::escaped_len;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Interest buckets per shard: a power of two, taken from the hash's top
/// bits, which depend on every byte of the tag.
const BUCKET_BITS: u32 = 10;
const BUCKETS: usize = 1 << BUCKET_BITS;

/// Every distinct subscription across the shards, for `listall` on a
/// server of several shards (a lone engine answers from its own index).
#[derive(Default)]
pub(crate) struct Registry {
    /// Sorted tag names, packed (see [`pack`]), and how many shards hold
    /// the set.
    sets: HashMap<Box<[u8]>, u32>,
    /// Their size as `listall` writes them.
    bytes: usize,
}

/// Tag names as one allocation: each name's length (4 bytes) and bytes.
fn pack(names: &[String]) -> Box<[u8]> {
    let mut packed = Vec::with_capacity(names.iter().map(|n| 4 + n.len()).sum());
    for name in names {
        packed.extend_from_slice(&(name.len() as u32).to_le_bytes());
        packed.extend_from_slice(name.as_bytes());
    }
    packed.into()
}

fn unpack(mut packed: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((len, rest)) = packed.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let (name, rest) = rest.split_at(len.min(rest.len()));
        names.push(String::from_utf8_lossy(name).into_owned());
        packed = rest;
    }
    names
}

impl Registry {
    /// Every distinct subscription's sorted tag names.
    pub(crate) fn sets(&self) -> Vec<Vec<String>> {
        self.sets.keys().map(|packed| unpack(packed)).collect()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

pub(crate) struct Shared {
    shards: usize,
    /// Connections open on every shard.
    pub(crate) connections: AtomicUsize,
    /// Connections holding a subscription, on every shard.
    pub(crate) subscribers: AtomicUsize,
    /// For each shard, its distinct subscriptions by interest bucket.
    interest: Box<[AtomicU32]>,
    /// Buckets need no defence against chosen collisions: a collision only
    /// offers a publish to a shard that then finds no recipient, and the
    /// shards are few. So the fast id hasher serves.
    hasher: BuildHasherDefault<IdHasher>,
    registry: Mutex<Registry>,
    authority: Option<Mutex<Authority>>,
    /// The node's anchors, when it routes by tag (see [`crate::anchor`]).
    anchors: Mutex<Anchors>,
}

impl Shared {
    pub(crate) fn new(shards: usize, authority: Option<Authority>) -> Shared {
        Shared {
            shards,
            connections: AtomicUsize::new(0),
            subscribers: AtomicUsize::new(0),
            interest: (0..shards * BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            hasher: BuildHasherDefault::default(),
            registry: Mutex::new(Registry::default()),
            authority: authority.map(Mutex::new),
            anchors: Mutex::new(Anchors::default()),
        }
    }

    pub(crate) fn shards(&self) -> usize {
        self.shards
    }

    fn bucket(&self, tag: &str) -> usize {
        (self.hasher.hash_one(tag) >> (64 - BUCKET_BITS)) as usize
    }

    /// Every shard that may hold a subscription matching a message with
    /// `tags`, as a bit mask.
    pub(crate) fn wanting<'t>(&self, tags: impl Iterator<Item = &'t str>) -> u64 {
        if self.shards == 1 {
            return 1;
        }
        let mut mask = 0u64;
        for tag in tags {
            let bucket = self.bucket(tag);
            for shard in 0..self.shards {
                if self.interest[shard * BUCKETS + bucket].load(Ordering::Acquire) > 0 {
                    mask |= 1 << shard;
                }
            }
        }
        mask
    }

    /// The shards other than `from` that may hold a subscription matching a
    /// message with `tags`, as a bit mask.
    pub(crate) fn targets<'t>(&self, from: usize, tags: impl Iterator<Item = &'t str>) -> u64 {
        if self.shards == 1 {
            return 0;
        }
        self.wanting(tags) & !(1 << from)
    }

    /// Records that `shard` gained (`added`) or lost its last holder of the
    /// distinct subscription `names` (sorted).
    pub(crate) fn subscription_changed(&self, shard: usize, names: &[String], added: bool) {
        if self.shards > 1 {
            if let Some(first) = names.first() {
                let slot = &self.interest[shard * BUCKETS + self.bucket(first)];
                if added {
                    slot.fetch_add(1, Ordering::AcqRel);
                } else {
                    slot.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        if self.shards == 1 {
            return;
        }
        let bytes = set_bytes(names.iter().map(|t| escaped_len(t)));
        let packed = pack(names);
        let mut registry = self.registry();
        if added {
            let holders = registry.sets.entry(packed).or_insert(0);
            *holders += 1;
            if *holders == 1 {
                registry.bytes += bytes;
            }
        } else if let Some(holders) = registry.sets.get_mut(&packed) {
            *holders -= 1;
            if *holders == 0 {
                registry.sets.remove(&packed);
                registry.bytes -= bytes;
            }
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent counts.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn authority(&self) -> Option<MutexGuard<'_, Authority>> {
        self.authority
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn anchors(&self) -> MutexGuard<'_, Anchors> {
        // Nothing panics while holding it.
        self.anchors.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_secured(&self) -> bool {
        self.authority.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_publish_is_offered_to_the_shards_whose_subscriptions_it_may_match() {
        let shared = Shared::new(4, None);
        shared.subscription_changed(2, &names(&["a", "b"]), true);
        shared.subscription_changed(3, &names(&["c"]), true);
        let targets = |tags: &[&str]| shared.targets(0, tags.iter().copied());
        assert_eq!(targets(&["a", "b", "x"]), 1 << 2);
        assert_eq!(targets(&["c"]), 1 << 3);
        assert_eq!(targets(&["a", "c"]) & (1 << 2 | 1 << 3), 1 << 2 | 1 << 3);
        assert_eq!(shared.targets(2, ["a", "b"].into_iter()), 0, "not itself");
        shared.subscription_changed(2, &names(&["a", "b"]), false);
        assert_eq!(targets(&["a", "b"]) & (1 << 2), 0, "gone");
    }

    #[test]
    fn tags_that_differ_only_at_the_end_spread_over_the_buckets() {
        let shared = Shared::new(2, None);
        let buckets: std::collections::HashSet<usize> = (0..64)
            .map(|i| shared.bucket(&format!("pair-{i}")))
            .collect();
        assert!(buckets.len() > 48, "{} buckets for 64 tags", buckets.len());
    }
}
