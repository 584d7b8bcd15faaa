//! The match index: which connections want a message with these tags.
//!
//! Tags are interned to small integers. Each subscription is the sorted set of
//! its tag ids, stored as a path in a set-trie. Matching a message walks only
//! the paths made of the message's own tags, so a publish costs about the
//! number of matching subscriptions, not the number of connections.

use crate::engine::ConnId;
use crate::hash::{IdHashMap, IdHashSet};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) type TagId = u32;

/// Tag strings ↔ ids, reference-counted by the subscriptions that use them, so
/// tags nobody subscribes to any more are forgotten.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<str>, TagId>,
    slots: Vec<Option<(Arc<str>, usize)>>,
    free: Vec<TagId>,
}

impl Interner {
    /// The id of a tag some subscription uses, if any does.
    pub(crate) fn get(&self, tag: &str) -> Option<TagId> {
        self.ids.get(tag).copied()
    }

    /// The id of `tag`, counting one more user of it.
    pub(crate) fn acquire(&mut self, tag: &str) -> TagId {
        if let Some(&id) = self.ids.get(tag) {
            if let Some((_, users)) = &mut self.slots[id as usize] {
                *users += 1;
            }
            return id;
        }
        let name: Arc<str> = Arc::from(tag);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                TagId::try_from(self.slots.len() - 1).expect("fewer than 2^32 distinct tags")
            }
        };
        self.slots[id as usize] = Some((name.clone(), 1));
        self.ids.insert(name, id);
        id
    }

    /// Counts one user less of `id`, forgetting the tag when none is left.
    pub(crate) fn release(&mut self, id: TagId) {
        let slot = &mut self.slots[id as usize];
        if let Some((name, users)) = slot {
            *users -= 1;
            if *users == 0 {
                self.ids.remove(&**name);
                *slot = None;
                self.free.push(id);
            }
        }
    }

    /// The tag an id stands for.
    pub(crate) fn name(&self, id: TagId) -> &str {
        match &self.slots[id as usize] {
            Some((name, _)) => name,
            None => "",
        }
    }
}

/// A set-trie of subscriptions over sorted tag ids.
#[derive(Default)]
pub(crate) struct Index {
    root: Node,
}

#[derive(Default)]
struct Node {
    /// Connections subscribed to exactly the set spelled by the path to here.
    subscribers: IdHashSet<ConnId>,
    children: IdHashMap<TagId, Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.children.is_empty()
    }
}

impl Index {
    /// Adds `conn` under the subscription `set` (sorted, no duplicates).
    pub(crate) fn insert(&mut self, set: &[TagId], conn: ConnId) {
        let mut node = &mut self.root;
        for tag in set {
            node = node.children.entry(*tag).or_default();
        }
        node.subscribers.insert(conn);
    }

    /// Removes `conn` from the subscription `set`, pruning emptied nodes.
    /// Recursion depth is the subscription's size, which the engine bounds.
    pub(crate) fn remove(&mut self, set: &[TagId], conn: ConnId) {
        fn remove_below(node: &mut Node, set: &[TagId], conn: ConnId) {
            match set.split_first() {
                None => {
                    node.subscribers.remove(&conn);
                }
                Some((tag, rest)) => {
                    if let Some(child) = node.children.get_mut(tag) {
                        remove_below(child, rest, conn);
                        if child.is_empty() {
                            node.children.remove(tag);
                        }
                    }
                }
            }
        }
        remove_below(&mut self.root, set, conn);
    }

    /// Calls `visit` for every (subscription, connection) whose set is a
    /// subset of `tags` (sorted, no duplicates). A connection with several
    /// matching subscriptions is visited once per subscription.
    pub(crate) fn for_each_match(&self, tags: &[TagId], mut visit: impl FnMut(ConnId)) {
        fn walk(node: &Node, tags: &[TagId], visit: &mut impl FnMut(ConnId)) {
            node.subscribers.iter().copied().for_each(&mut *visit);
            for (i, tag) in tags.iter().enumerate() {
                if let Some(child) = node.children.get(tag) {
                    walk(child, &tags[i + 1..], visit);
                }
            }
        }
        walk(&self.root, tags, &mut visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(index: &Index, tags: &[TagId]) -> Vec<ConnId> {
        let mut found = Vec::new();
        index.for_each_match(tags, |c| found.push(c));
        found.sort();
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
        index.insert(&[1], a);
        index.insert(&[1, 2], b);
        index.insert(&[1, 2, 3], c);
        assert_eq!(matches(&index, &[1]), [a]);
        assert_eq!(matches(&index, &[1, 2]), [a, b]);
        assert_eq!(matches(&index, &[1, 2, 3]), [a, b, c]);
        assert_eq!(matches(&index, &[2, 3]), []);
        assert_eq!(matches(&index, &[1, 3]), [a]);
    }

    #[test]
    fn removal_prunes_the_trie() {
        let a = ConnId::for_test(1);
        let mut index = Index::default();
        index.insert(&[1, 2, 3], a);
        index.remove(&[1, 2, 3], a);
        assert!(index.root.is_empty());
        index.remove(&[7], a);
        assert!(
            index.root.is_empty(),
            "removing what is not there is a no-op"
        );
    }

    #[test]
    fn interner_reuses_ids_of_forgotten_tags() {
        let mut tags = Interner::default();
        let a = tags.acquire("a");
        assert_eq!(tags.acquire("a"), a);
        tags.release(a);
        assert_eq!(tags.get("a"), Some(a), "one user left");
        tags.release(a);
        assert_eq!(tags.get("a"), None);
        let b = tags.acquire("b");
        assert_eq!(b, a, "the freed id is reused");
        assert_eq!(tags.name(b), "b");
    }
}
