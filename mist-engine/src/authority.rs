//! The one place every shard asks about tokens: the server token, the
//! registered tokens and their grants, the admin changes on their way to the
//! authenticator, and the throttle on failed authentications.
//!
//! Shards reach it through a lock only when a client authenticates or an
//! admin changes something, never to deliver a message: each shard keeps a
//! replica of the grants ([`crate::access::Access`]) and catches up with the
//! authority's change log whenever it is told to sync. An admin's change is
//! settled (answered, and its next commands let go) only once every shard
//! has applied it, so the reply means it holds everywhere.

use crate::access::{Access, Revoked, Role, TokenId};
use crate::auth::{same_token, Change, Grants};
use crate::hash::IdHashMap;
use crate::id::ConnId;
use crate::throttle::Throttle;
use crate::{Config, Error};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// One applied change, as shards replay it.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Register(TokenId, BTreeSet<String>),
    Set(TokenId, BTreeSet<String>),
    Unset(TokenId, BTreeSet<String>),
    Unregister(TokenId),
}

/// The next admin change: handed out with its id, or refused for its
/// connection because it is no longer valid.
pub(crate) enum Next {
    Store(u64, Change),
    Refuse(ConnId, Change, Error),
}

/// An admin change that is done, for its connection's shard to answer.
pub(crate) struct Settled {
    pub(crate) conn: ConnId,
    /// The command and why it failed, if it did.
    pub(crate) failure: Option<(&'static str, Error)>,
    /// The log position every shard must have applied first.
    version: u64,
}

pub(crate) struct Authority {
    server_token: String,
    ids: HashMap<String, TokenId>,
    tags: IdHashMap<TokenId, BTreeSet<String>>,
    next_token: TokenId,
    /// Admin changes not yet handed out, in arrival order.
    queue: VecDeque<(ConnId, Change)>,
    /// Changes with the authenticator. Changes to different tokens are
    /// stored side by side; those to one token, one after the other.
    in_flight: IdHashMap<u64, (ConnId, Change)>,
    next_change: u64,
    pub(crate) throttle: Throttle,
    /// Applied changes some shard has not applied yet, by log position.
    log: VecDeque<(u64, Entry)>,
    /// The position of the last applied change.
    version: u64,
    /// Each shard's applied position.
    cursors: Vec<u64>,
    /// Each shard's settled changes, waiting for every shard to catch up.
    mailboxes: Vec<Vec<Settled>>,
}

impl Authority {
    pub(crate) fn new(
        server_token: String,
        grants: Grants,
        config: &Config,
        shards: usize,
    ) -> Authority {
        let mut authority = Authority {
            server_token,
            ids: HashMap::new(),
            tags: IdHashMap::default(),
            next_token: 0,
            queue: VecDeque::new(),
            in_flight: IdHashMap::default(),
            next_change: 0,
            throttle: Throttle::new(config.max_auth_failures, config.auth_failure_window),
            log: VecDeque::new(),
            version: 0,
            cursors: vec![0; shards],
            mailboxes: (0..shards).map(|_| Vec::new()).collect(),
        };
        for (token, tags) in grants {
            authority.apply(Change::Register { token, tags });
        }
        authority
    }

    /// The role a token gives, if it is valid.
    pub(crate) fn identify(&self, token: &str) -> Option<Role> {
        if same_token(token, &self.server_token) {
            return Some(Role::Admin);
        }
        // A hash lookup with the standard (keyed) hasher, then an exact match:
        // neither tells an attacker how close a guess was.
        let (known, &id) = self.ids.get_key_value(token)?;
        same_token(known, token).then_some(Role::Client(id))
    }

    /// The tags of a registered token.
    pub(crate) fn tags_of(&self, token: &str) -> Option<&BTreeSet<String>> {
        let id = self.ids.get(token)?;
        self.tags.get(id)
    }

    /// Checks a change against the current grants.
    fn check(&self, change: &Change) -> Result<(), Error> {
        let token = change.token();
        let known = self.ids.contains_key(token);
        match change {
            Change::Register { .. } if known || same_token(token, &self.server_token) => {
                Err(Error::TokenExists)
            }
            Change::Register { .. } => Ok(()),
            _ if !known => Err(Error::UnknownToken),
            _ => Ok(()),
        }
    }

    pub(crate) fn enqueue(&mut self, conn: ConnId, change: Change) {
        self.queue.push_back((conn, change));
    }

    /// The next change to hand to the authenticator, with its id; changes
    /// that are no longer valid come back as failures for their connection.
    /// A change waits while another change to its token is with the
    /// authenticator.
    pub(crate) fn next(&mut self) -> Option<Next> {
        let busy = |token: &str, in_flight: &IdHashMap<u64, (ConnId, Change)>| {
            in_flight.values().any(|(_, c)| c.token() == token)
        };
        let i = self
            .queue
            .iter()
            .position(|(_, change)| !busy(change.token(), &self.in_flight))?;
        let (conn, change) = self.queue.remove(i)?;
        match self.check(&change) {
            Ok(()) => {
                let id = self.next_change;
                self.next_change += 1;
                self.in_flight.insert(id, (conn, change.clone()));
                Some(Next::Store(id, change))
            }
            Err(e) => Some(Next::Refuse(conn, change, e)),
        }
    }

    /// Takes the change with `id` back once the authenticator is done.
    pub(crate) fn finish(&mut self, id: u64) -> Option<(ConnId, Change)> {
        self.in_flight.remove(&id)
    }

    /// The tags `token` was granted, if it is registered.
    pub(crate) fn granted(&self, token: &str) -> Option<&BTreeSet<String>> {
        self.tags.get(self.ids.get(token)?)
    }

    /// Applies a stored change to the grants and logs it for the shards.
    pub(crate) fn apply(&mut self, change: Change) {
        let entry = match change {
            Change::Register { token, tags } => {
                let id = self.next_token;
                self.next_token += 1;
                self.ids.insert(token, id);
                self.tags.insert(id, tags.clone());
                Entry::Register(id, tags)
            }
            Change::Set { token, tags } => {
                let Some(&id) = self.ids.get(&token) else {
                    return;
                };
                self.tags
                    .entry(id)
                    .or_default()
                    .extend(tags.iter().cloned());
                Entry::Set(id, tags)
            }
            Change::Unset { token, tags } => {
                let Some(&id) = self.ids.get(&token) else {
                    return;
                };
                if let Some(granted) = self.tags.get_mut(&id) {
                    granted.retain(|t| !tags.contains(t));
                }
                Entry::Unset(id, tags)
            }
            Change::Unregister { token } => {
                let Some(id) = self.ids.remove(&token) else {
                    return;
                };
                self.tags.remove(&id);
                Entry::Unregister(id)
            }
        };
        self.version += 1;
        self.log.push_back((self.version, entry));
    }

    /// Records that `conn`'s change is done (with `failure`, if it failed),
    /// to be answered on its shard once every shard has caught up.
    pub(crate) fn settle(&mut self, conn: ConnId, failure: Option<(&'static str, Error)>) {
        if let Some(mailbox) = self.mailboxes.get_mut(conn.shard()) {
            mailbox.push(Settled {
                conn,
                failure,
                version: self.version,
            });
        }
    }

    /// Brings `shard`'s replica up to date; returns what the changes it
    /// applied took away, for the shard to enforce on its connections.
    pub(crate) fn sync(&mut self, shard: usize, replica: &mut Access) -> Vec<Revoked> {
        let from = replica.version;
        let revoked = self
            .log
            .iter()
            .filter(|(version, _)| *version > from)
            .map(|(_, entry)| replica.apply(entry))
            .collect();
        replica.version = self.version;
        if let Some(cursor) = self.cursors.get_mut(shard) {
            *cursor = self.version;
        }
        let seen_by_all = self.seen_by_all();
        while self.log.front().is_some_and(|(v, _)| *v <= seen_by_all) {
            self.log.pop_front();
        }
        revoked
    }

    /// The settled changes of `shard`'s connections that every shard has
    /// applied.
    pub(crate) fn take_settled(&mut self, shard: usize) -> Vec<Settled> {
        let seen_by_all = self.seen_by_all();
        let Some(mailbox) = self.mailboxes.get_mut(shard) else {
            return Vec::new();
        };
        let (ready, waiting) = std::mem::take(mailbox)
            .into_iter()
            .partition(|settled| settled.version <= seen_by_all);
        *mailbox = waiting;
        ready
    }

    fn seen_by_all(&self) -> u64 {
        self.cursors.iter().copied().min().unwrap_or(self.version)
    }

    /// Forgets the changes a departed connection queued; one already with
    /// the authenticator stays, since its outcome must still be applied.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        self.queue.retain(|(c, _)| *c != conn);
    }
}
