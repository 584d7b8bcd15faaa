//! The match index: which connections want a message with these tags.
//!
//! Tags are interned to small integers, and every subscription is kept once
//! as the sorted set of its tag ids, shared by every connection holding the
//! same set. Each subscription is *anchored* at one of its tags: the one with
//! the fewest subscriptions anchored at it when the subscription was made.
//!
//! A publish visits only the anchors of its own tags, and at each anchor only
//! the connections with a subscription anchored there. A single-tag
//! subscription matches at once; a longer one is checked tag by tag against
//! the message, and a connection stops being checked as soon as one of its
//! subscriptions matched. So a publish costs about its recipients, plus, for
//! a connection whose longer subscriptions are anchored at the message's
//! tags, at most the tags of that connection's own subscriptions: a client
//! can make publishes expensive only in proportion to what it subscribed,
//! which [`crate::Config::max_subscription_bytes`] bounds. Memory is a few
//! bytes per tag of each distinct subscription, never a structure that grows
//! faster than the subscriptions themselves.

use crate::hash::IdHashMap;
use crate::id::ConnId;
use hashbrown::HashTable;
use mist_proto::encode::escaped_len;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

pub(crate) type TagId = u32;

/// A subscription: sorted, duplicate-free tag ids, shared by its holders.
pub(crate) type TagSet = Arc<[TagId]>;

/// What a subscription's tag set takes in the `subscriptions` array of a
/// `list` reply: every tag as a JSON string and a separator, the brackets
/// and a separator for the set. `escaped` is each tag's escaped length.
pub(crate) fn set_bytes(escaped: impl IntoIterator<Item = usize>) -> usize {
    2 + escaped.into_iter().map(|e| e + 3).sum::<usize>()
}

/// Gives back most of a map's room once it holds a quarter of it, so that a
/// burst of subscriptions does not pin memory after they are gone.
fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V, RandomState>) {
    if map.len() * 4 < map.capacity() && map.capacity() > 1024 {
        map.shrink_to(map.len() * 2);
    }
}

/// One interned tag.
struct Tag {
    name: Box<str>,
    /// Its length as written in JSON (see [`escaped_len`]).
    escaped: usize,
    /// Subscriptions that hold it; the tag is forgotten at zero.
    users: u32,
    /// The last match walk whose message carried this tag.
    mark: u64,
    /// Connections subscribed to exactly this one tag, which any message
    /// with it matches: a dense list, the common case's fast path.
    whole: Vec<ConnId>,
    /// Where each of them is in `whole`.
    whole_at: IdHashMap<ConnId, u32>,
    /// Connections with longer subscriptions anchored here, and those.
    longer: IdHashMap<ConnId, Vec<TagSet>>,
    /// Subscriptions anchored here, across connections.
    anchored_count: u32,
}

/// Where a subscription sits in the index, kept by its connection.
#[derive(Clone, Copy)]
struct Place {
    anchor: TagId,
    /// Its position in the anchor's `longer` list for the connection;
    /// `WHOLE` for a single tag.
    pos: u32,
}

const WHOLE: u32 = u32::MAX;

/// One connection's subscriptions, as the index keeps them.
#[derive(Default)]
pub(crate) struct Subscriptions {
    /// Keyed hashing: the sets' ids follow from tags a client chose.
    sets: HashMap<TagSet, Place, RandomState>,
    /// Their size as `list` writes them (see [`set_bytes`]).
    bytes: usize,
}

impl Subscriptions {
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }

    /// Their size as the `subscriptions` array of `list` writes them.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn contains(&self, set: &[TagId]) -> bool {
        self.sets.contains_key(set)
    }

    pub(crate) fn sets(&self) -> impl Iterator<Item = &TagSet> {
        self.sets.keys()
    }
}

/// Tags, the distinct subscriptions, and the anchors that match them.
#[derive(Default)]
pub(crate) struct Index {
    tags: Vec<Option<Tag>>,
    free: Vec<TagId>,
    /// Tag ids by name, hashed with a key: names are chosen by clients.
    lookup: HashTable<TagId>,
    hasher: RandomState,
    /// Every distinct subscription and how many connections hold it.
    distinct: HashMap<TagSet, u32, RandomState>,
    /// Their size as `listall` writes them.
    distinct_bytes: usize,
    /// Numbers match walks, for the tags' marks.
    walks: u64,
    /// Distinct subscriptions that appeared (`true`) or went away, by their
    /// sorted tag names, since the engine last took them: it tells the
    /// other shards (see [`crate::shared::Shared`]).
    pub(crate) changed: Vec<(Vec<String>, bool)>,
    /// Whether to record them: only a shard among several needs them.
    pub(crate) record_changes: bool,
}

/// Whether one of `sets` is within the message of walk `walk`; adds the
/// tags compared to `work`.
fn any_within(sets: &[TagSet], tags: &[Option<Tag>], walk: u64, work: &mut u64) -> bool {
    sets.iter().any(|set| {
        set.iter().all(|&id| {
            *work += 1;
            tags[id as usize].as_ref().map(|t| t.mark) == Some(walk)
        })
    })
}

impl Index {
    fn tag(&self, id: TagId) -> &Tag {
        self.tags[id as usize]
            .as_ref()
            .expect("ids in use name live tags")
    }

    fn tag_mut(&mut self, id: TagId) -> &mut Tag {
        self.tags[id as usize]
            .as_mut()
            .expect("ids in use name live tags")
    }

    /// The id of a tag some subscription uses, if any does.
    pub(crate) fn get(&self, name: &str) -> Option<TagId> {
        let hash = self.hasher.hash_one(name);
        let tags = &self.tags;
        self.lookup
            .find(hash, |&id| {
                tags[id as usize].as_ref().is_some_and(|t| &*t.name == name)
            })
            .copied()
    }

    /// The tag an id stands for.
    pub(crate) fn name(&self, id: TagId) -> &str {
        &self.tag(id).name
    }

    /// The sorted, duplicate-free ids of `names`, or `None` if some tag is
    /// used by no subscription (so no connection can hold this set).
    pub(crate) fn known_set(&self, names: &[String]) -> Option<Vec<TagId>> {
        let mut set = names
            .iter()
            .map(|t| self.get(t))
            .collect::<Option<Vec<TagId>>>()?;
        set.sort_unstable();
        set.dedup();
        Some(set)
    }

    /// The size `names` take as one subscription in a `list` reply.
    pub(crate) fn bytes_of(names: &[String]) -> usize {
        let mut unique: Vec<&str> = names.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        set_bytes(unique.into_iter().map(escaped_len))
    }

    /// Every distinct subscription across connections.
    pub(crate) fn distinct(&self) -> impl Iterator<Item = &TagSet> {
        self.distinct.keys()
    }

    /// What the distinct subscriptions take as `listall` writes them.
    pub(crate) fn distinct_bytes(&self) -> usize {
        self.distinct_bytes
    }

    /// A set's tag names, sorted.
    fn sorted_names(&self, set: &[TagId]) -> Vec<String> {
        let mut names: Vec<String> = set.iter().map(|&id| self.name(id).to_owned()).collect();
        names.sort_unstable();
        names
    }

    /// The id of `name`, counting one more user of it.
    fn acquire(&mut self, name: &str) -> TagId {
        let hash = self.hasher.hash_one(name);
        let Index {
            tags,
            free,
            lookup,
            hasher,
            ..
        } = self;
        let found = lookup
            .find(hash, |&id| {
                tags[id as usize].as_ref().is_some_and(|t| &*t.name == name)
            })
            .copied();
        if let Some(id) = found {
            if let Some(tag) = &mut tags[id as usize] {
                tag.users += 1;
            }
            return id;
        }
        let tag = Tag {
            name: name.into(),
            escaped: escaped_len(name),
            users: 1,
            mark: 0,
            whole: Vec::new(),
            whole_at: IdHashMap::default(),
            longer: IdHashMap::default(),
            anchored_count: 0,
        };
        let id = match free.pop() {
            Some(id) => {
                tags[id as usize] = Some(tag);
                id
            }
            None => {
                tags.push(Some(tag));
                TagId::try_from(tags.len() - 1).expect("fewer than 2^32 distinct tags")
            }
        };
        lookup.insert_unique(hash, id, |&id| {
            let name: &str = tags[id as usize].as_ref().map_or("", |t| &t.name);
            hasher.hash_one(name)
        });
        id
    }

    /// Counts one user less of `id`, forgetting the tag when none is left.
    fn release(&mut self, id: TagId) {
        let tag = self.tag_mut(id);
        tag.users -= 1;
        if tag.users > 0 {
            return;
        }
        let hash = self.hasher.hash_one(&*self.tag(id).name);
        if let Ok(entry) = self.lookup.find_entry(hash, |&x| x == id) {
            entry.remove();
        }
        if self.lookup.len() * 4 < self.lookup.capacity() && self.lookup.capacity() > 1024 {
            let Index {
                lookup,
                tags,
                hasher,
                ..
            } = self;
            lookup.shrink_to(lookup.len() * 2, |&id| {
                let name: &str = tags[id as usize].as_ref().map_or("", |t| &t.name);
                hasher.hash_one(name)
            });
        }
        self.tags[id as usize] = None;
        self.free.push(id);
    }

    /// Adds the subscription `names` (non-empty, any order, duplicates
    /// allowed) for `conn`. Returns false if `conn` already held it.
    pub(crate) fn insert(
        &mut self,
        conn: ConnId,
        subs: &mut Subscriptions,
        names: &[String],
    ) -> bool {
        if self.known_set(names).is_some_and(|set| subs.contains(&set)) {
            return false;
        }
        let mut ids: Vec<TagId> = names.iter().map(|name| self.acquire(name)).collect();
        ids.sort_unstable();
        // A duplicate name was acquired twice: give the extra use back.
        let mut i = 1;
        while i < ids.len() {
            if ids[i] == ids[i - 1] {
                let id = ids.remove(i);
                self.release(id);
            } else {
                i += 1;
            }
        }
        let set = self.share(&ids);
        let bytes = set_bytes(set.iter().map(|&id| self.tag(id).escaped));
        let anchor = *set
            .iter()
            .min_by_key(|&&id| self.tag(id).anchored_count)
            .expect("a subscription has at least one tag");
        let tag = self.tag_mut(anchor);
        tag.anchored_count += 1;
        let pos = if set.len() == 1 {
            let at = u32::try_from(tag.whole.len()).expect("fewer than 2^32 connections");
            tag.whole.push(conn);
            tag.whole_at.insert(conn, at);
            WHOLE
        } else {
            let sets = tag.longer.entry(conn).or_default();
            sets.push(set.clone());
            u32::try_from(sets.len() - 1).expect("fewer than 2^32 subscriptions")
        };
        subs.sets.insert(set, Place { anchor, pos });
        subs.bytes += bytes;
        true
    }

    /// The shared copy of the distinct subscription `ids`, counting a holder.
    fn share(&mut self, ids: &[TagId]) -> TagSet {
        if let Some(holders) = self.distinct.get_mut(ids) {
            *holders += 1;
            if let Some((set, _)) = self.distinct.get_key_value(ids) {
                return set.clone();
            }
        }
        let set: TagSet = ids.into();
        self.distinct_bytes += set_bytes(ids.iter().map(|&id| self.tag(id).escaped));
        self.distinct.insert(set.clone(), 1);
        if self.record_changes {
            let names = self.sorted_names(&set);
            self.changed.push((names, true));
        }
        set
    }

    /// Removes `conn`'s subscription `set`; returns whether it held it.
    pub(crate) fn remove(&mut self, conn: ConnId, subs: &mut Subscriptions, set: &[TagId]) -> bool {
        let Some((set, place)) = subs.sets.remove_entry(set) else {
            return false;
        };
        shrink_if_sparse(&mut subs.sets);
        let tag = self.tag_mut(place.anchor);
        tag.anchored_count -= 1;
        if place.pos == WHOLE {
            tag.remove_whole(conn);
        } else if let Some(sets) = tag.longer.get_mut(&conn) {
            sets.swap_remove(place.pos as usize);
            // The set that took its place must know where it is now.
            if let Some(moved) = sets.get(place.pos as usize) {
                if let Some(moved_place) = subs.sets.get_mut(moved) {
                    moved_place.pos = place.pos;
                }
            }
            if sets.is_empty() {
                tag.longer.remove(&conn);
            }
        }
        self.forget(&set, subs);
        true
    }

    /// Removes every subscription of `conn`, in time linear in their number.
    pub(crate) fn clear(&mut self, conn: ConnId, subs: &mut Subscriptions) {
        for (set, place) in std::mem::take(&mut subs.sets) {
            let tag = self.tag_mut(place.anchor);
            tag.anchored_count -= 1;
            if place.pos == WHOLE {
                tag.remove_whole(conn);
            } else {
                tag.longer.remove(&conn);
            }
            self.forget(&set, subs);
        }
        subs.bytes = 0;
    }

    /// Drops one holder of `set`, and the tags' uses.
    fn forget(&mut self, set: &TagSet, subs: &mut Subscriptions) {
        let bytes = set_bytes(set.iter().map(|&id| self.tag(id).escaped));
        subs.bytes = subs.bytes.saturating_sub(bytes);
        if let Some(holders) = self.distinct.get_mut(set) {
            *holders -= 1;
            if *holders == 0 {
                self.distinct.remove(set);
                self.distinct_bytes -= bytes;
                shrink_if_sparse(&mut self.distinct);
                if self.record_changes {
                    let names = self.sorted_names(set);
                    self.changed.push((names, false));
                }
            }
        }
        for &id in set.iter() {
            self.release(id);
        }
    }

    /// Appends to `out` every connection with a subscription within
    /// `tags` (sorted ids, no duplicates); a connection may appear once per
    /// anchor it matched at. Adds the connections and tags examined to
    /// `work`.
    pub(crate) fn matches(&mut self, tags: &[TagId], work: &mut u64, out: &mut Vec<ConnId>) {
        self.walks += 1;
        let walk = self.walks;
        for &id in tags {
            self.tag_mut(id).mark = walk;
        }
        for &id in tags {
            let tag = self.tag(id);
            *work += (tag.whole.len() + tag.longer.len()) as u64;
            out.extend_from_slice(&tag.whole);
            for (&conn, sets) in &tag.longer {
                if any_within(sets, &self.tags, walk, work) {
                    out.push(conn);
                }
            }
        }
    }
}

impl Tag {
    /// Takes `conn` off the connections holding this tag alone.
    fn remove_whole(&mut self, conn: ConnId) {
        let Some(at) = self.whole_at.remove(&conn) else {
            return;
        };
        self.whole.swap_remove(at as usize);
        if let Some(&moved) = self.whole.get(at as usize) {
            self.whole_at.insert(moved, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    fn matches(index: &mut Index, tags: &[&str]) -> Vec<ConnId> {
        let ids = index.known_set(&names(tags)).unwrap_or_default();
        let mut found = Vec::new();
        index.matches(&ids, &mut 0, &mut found);
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn subsets_match_and_supersets_do_not() {
        let (a, b, c) = (
            ConnId::for_test(1),
            ConnId::for_test(2),
            ConnId::for_test(3),
        );
        let mut index = Index::default();
        let mut subs = [
            Subscriptions::default(),
            Subscriptions::default(),
            Subscriptions::default(),
        ];
        index.insert(a, &mut subs[0], &names(&["x"]));
        index.insert(b, &mut subs[1], &names(&["y", "x"]));
        index.insert(c, &mut subs[2], &names(&["x", "y", "z"]));
        assert_eq!(matches(&mut index, &["x"]), [a]);
        assert_eq!(matches(&mut index, &["x", "y"]), [a, b]);
        assert_eq!(matches(&mut index, &["x", "y", "z"]), [a, b, c]);
        assert_eq!(matches(&mut index, &["y", "z"]), []);
        assert_eq!(matches(&mut index, &["x", "z"]), [a]);
    }

    #[test]
    fn removal_forgets_tags_and_distinct_sets() {
        let a = ConnId::for_test(1);
        let b = ConnId::for_test(2);
        let mut index = Index::default();
        let (mut sa, mut sb) = (Subscriptions::default(), Subscriptions::default());
        assert!(index.insert(a, &mut sa, &names(&["x", "y", "x"])));
        assert!(
            !index.insert(a, &mut sa, &names(&["y", "x"])),
            "held already"
        );
        assert!(index.insert(b, &mut sb, &names(&["x", "y"])));
        assert_eq!(index.distinct().count(), 1, "one shared set");
        assert_eq!(sa.bytes(), set_bytes([1, 1]));
        let set = index.known_set(&names(&["x", "y"])).unwrap();
        assert!(index.remove(a, &mut sa, &set));
        assert!(!index.remove(a, &mut sa, &set), "removing twice is a no-op");
        assert_eq!(sa.bytes(), 0);
        assert_eq!(index.distinct().count(), 1, "b still holds it");
        index.clear(b, &mut sb);
        assert_eq!(index.distinct().count(), 0);
        assert_eq!(index.distinct_bytes(), 0);
        assert_eq!(index.get("x"), None, "unused tags are forgotten");
        assert!(index.tags.iter().all(Option::is_none));
    }

    #[test]
    fn a_removed_set_leaves_the_others_findable() {
        let a = ConnId::for_test(1);
        let mut index = Index::default();
        let mut subs = Subscriptions::default();
        // The first tag is the rarest anchor for all three, so they share it.
        for other in ["p", "q", "r"] {
            index.insert(a, &mut subs, &names(&["a", other]));
        }
        let first = index.known_set(&names(&["a", "p"])).unwrap();
        index.remove(a, &mut subs, &first);
        for other in ["q", "r"] {
            let set = index.known_set(&names(&["a", other])).unwrap();
            assert!(index.remove(a, &mut subs, &set), "{other}");
        }
        assert_eq!(subs.len(), 0);
        assert_eq!(index.get("a"), None);
    }

    #[test]
    fn freed_ids_are_reused() {
        let a = ConnId::for_test(1);
        let mut index = Index::default();
        let mut subs = Subscriptions::default();
        index.insert(a, &mut subs, &names(&["a"]));
        let id = index.get("a").unwrap();
        index.clear(a, &mut subs);
        index.insert(a, &mut subs, &names(&["b"]));
        assert_eq!(index.get("b"), Some(id));
        assert_eq!(index.name(id), "b");
    }
}
