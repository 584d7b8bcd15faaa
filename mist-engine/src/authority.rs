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
use crate::auth::{same_token, AuthError, Change, Grants, Signed, TokenVerifier};
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
    /// A signed token's grants are no longer needed (it expired, and its
    /// connections close of their own accord).
    Forget(TokenId),
}

/// The next admin change: handed out with its id, or refused for its
/// connection because it is no longer valid.
pub(crate) enum Next {
    Store(u64, Change),
    Refuse(ConnId, Change, Error),
}

/// What the authority makes of a token before any signature is checked.
pub(crate) enum Recognised {
    /// Who it makes a connection, or why it is refused.
    Known(Result<Identity, Error>),
    /// A signed token not seen yet (or not by this verifier): `verifier`
    /// checks it, outside the authority's lock, then [`Authority::admit`]
    /// takes the result with `key`, the verifier's generation.
    Unverified {
        verifier: std::sync::Arc<dyn TokenVerifier>,
        key: u64,
    },
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
    /// Checks signed tokens, on a server of signed tokens.
    verifier: Option<std::sync::Arc<dyn TokenVerifier>>,
    /// Signed tokens in use.
    signed: HashMap<String, Admitted>,
    /// Which verifier this is: a signed token admitted by an earlier one
    /// is checked again by this one before it admits a connection.
    key: u64,
    /// The time last passed in, in seconds since the Unix epoch.
    pub(crate) now_unix: u64,
}

/// A signed token in use: its id, its expiry, and the verifier that
/// checked it ([`Authority`]'s `key`).
#[derive(Debug, Clone, Copy)]
struct Admitted {
    id: TokenId,
    expires: u64,
    key: u64,
}

/// Who a valid token makes a connection, and until when (a signed token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) role: Role,
    pub(crate) expires: Option<u64>,
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
            verifier: None,
            signed: HashMap::new(),
            key: 0,
            now_unix: 0,
        };
        for (token, tags) in grants {
            authority.apply(Change::Register { token, tags });
        }
        authority
    }

    /// An authority of signed tokens, checked by `verifier`; no token is
    /// stored. `server_token`, if any, is the admin's as before.
    pub(crate) fn signed(
        server_token: Option<String>,
        verifier: std::sync::Arc<dyn TokenVerifier>,
        config: &Config,
        shards: usize,
    ) -> Authority {
        let mut authority = Authority::new(
            server_token.unwrap_or_default(),
            Grants::new(),
            config,
            shards,
        );
        authority.verifier = Some(verifier);
        authority
    }

    /// Replaces the verifier of a server of signed tokens; `false` on a
    /// server of stored tokens, which keeps none.
    pub(crate) fn set_verifier(&mut self, verifier: std::sync::Arc<dyn TokenVerifier>) -> bool {
        if self.verifier.is_none() {
            return false;
        }
        self.verifier = Some(verifier);
        self.key += 1;
        true
    }

    /// Whether tokens are signed rather than stored.
    pub(crate) fn is_signed(&self) -> bool {
        self.verifier.is_some()
    }

    /// Who `token` makes a connection as far as the authority knows
    /// without checking a signature: the admin's token, a stored token, or
    /// a signed token already admitted (its signature was checked then, and
    /// its `not_before` has passed); any other signed token needs `verify`
    /// and then [`Authority::admit`].
    pub(crate) fn recognise(&self, token: &str) -> Recognised {
        let forever = |role| Identity {
            role,
            expires: None,
        };
        if !self.server_token.is_empty() && same_token(token, &self.server_token) {
            return Recognised::Known(Ok(forever(Role::Admin)));
        }
        let Some(verifier) = &self.verifier else {
            // A hash lookup with the standard (keyed) hasher, then an exact
            // match: neither tells an attacker how close a guess was.
            let known = self
                .ids
                .get_key_value(token)
                .filter(|(known, _)| same_token(known, token))
                .map(|(_, &id)| forever(Role::Client(id)));
            return Recognised::Known(known.ok_or(Error::BadToken));
        };
        match self.signed.get(token) {
            Some(admitted) if admitted.expires <= self.now_unix => {
                Recognised::Known(Err(Error::TokenExpired))
            }
            Some(admitted) if admitted.key == self.key => Recognised::Known(Ok(Identity {
                role: Role::Client(admitted.id),
                expires: Some(admitted.expires),
            })),
            // New, or checked by a key since replaced.
            _ => Recognised::Unverified {
                verifier: verifier.clone(),
                key: self.key,
            },
        }
    }

    /// Who a signed `token` makes a connection, now that the verifier of
    /// generation `key` said what it claims (`verified`), or why it is
    /// refused. Should the verifier have been replaced meanwhile, the next
    /// connection with this token is checked again.
    pub(crate) fn admit(
        &mut self,
        token: &str,
        verified: Result<Signed, AuthError>,
        key: u64,
    ) -> Result<Identity, Error> {
        let signed = verified.map_err(|e| Error::BadSignedToken(e.0))?;
        if signed.expires <= self.now_unix {
            return Err(Error::TokenExpired);
        }
        if signed.not_before.is_some_and(|nbf| nbf > self.now_unix) {
            return Err(Error::TokenNotYetValid);
        }
        let expires = Some(signed.expires);
        if signed.admin {
            return Ok(Identity {
                role: Role::Admin,
                expires,
            });
        }
        // One id per signed token in use, its grants logged for the shards.
        let id = match self.signed.get_mut(token) {
            Some(admitted) => {
                admitted.key = key;
                admitted.id
            }
            None => {
                let id = self.next_token;
                self.next_token += 1;
                let admitted = Admitted {
                    id,
                    expires: signed.expires,
                    key,
                };
                self.signed.insert(token.to_string(), admitted);
                self.tags.insert(id, signed.tags.clone());
                self.version += 1;
                self.log
                    .push_back((self.version, Entry::Register(id, signed.tags)));
                id
            }
        };
        Ok(Identity {
            role: Role::Client(id),
            expires,
        })
    }

    /// The time is `now_unix`: signed tokens that expired are forgotten
    /// (their connections close by their own expiry).
    pub(crate) fn set_clock(&mut self, now_unix: u64) {
        self.now_unix = now_unix;
        if self.signed.is_empty() {
            return;
        }
        let expired: Vec<String> = self
            .signed
            .iter()
            .filter(|(_, admitted)| admitted.expires <= now_unix)
            .map(|(token, _)| token.clone())
            .collect();
        for token in expired {
            if let Some(Admitted { id, .. }) = self.signed.remove(&token) {
                self.tags.remove(&id);
                self.version += 1;
                self.log.push_back((self.version, Entry::Forget(id)));
            }
        }
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
