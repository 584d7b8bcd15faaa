//! Who may do what: the server token, registered tokens and their grants,
//! the admin changes waiting for the authenticator, and the throttle on
//! failed authentications.

use crate::auth::{same_token, Change, Grants};
use crate::hash::IdHashMap;
use crate::id::ConnId;
use crate::throttle::Throttle;
use crate::{Config, Error};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Names a registered token inside the engine, so that connections hold a
/// number rather than a copy of the secret.
pub(crate) type TokenId = u32;

/// What a connection is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The server has no authenticator: everything but admin commands.
    Open,
    /// Not authenticated yet: only `auth`.
    Anonymous,
    /// The server token: everything, admin commands included.
    Admin,
    /// A registered token: only its granted tags.
    Client(TokenId),
}

/// A registered token and what it was granted.
struct Grant {
    tags: BTreeSet<String>,
    /// The last publish checked against these grants, and its outcome: every
    /// recipient holding this token shares one check per publish.
    checked: (u64, bool),
}

/// What an applied change took away from connections already open.
pub(crate) enum Revoked {
    Nothing,
    Token(TokenId),
    Tags(TokenId, BTreeSet<String>),
}

/// The next admin change: handed out with its id, or refused for its
/// connection because it is no longer valid.
pub(crate) enum Next {
    Store(u64, Change),
    Refuse(ConnId, Change, Error),
}

/// The access state of a server started with an authenticator.
pub(crate) struct Access {
    server_token: String,
    ids: HashMap<String, TokenId>,
    grants: IdHashMap<TokenId, Grant>,
    next_token: TokenId,
    /// Admin changes not yet handed out, in arrival order.
    queue: VecDeque<(ConnId, Change)>,
    /// Changes with the authenticator. Changes to different tokens are
    /// stored side by side; those to one token, one after the other.
    in_flight: IdHashMap<u64, (ConnId, Change)>,
    next_change: u64,
    pub(crate) throttle: Throttle,
}

impl Access {
    pub(crate) fn new(server_token: String, grants: Grants, config: &Config) -> Access {
        let mut access = Access {
            server_token,
            ids: HashMap::new(),
            grants: IdHashMap::default(),
            next_token: 0,
            queue: VecDeque::new(),
            in_flight: IdHashMap::default(),
            next_change: 0,
            throttle: Throttle::new(config.max_auth_failures, config.auth_failure_window),
        };
        for (token, tags) in grants {
            access.register(token, tags);
        }
        access
    }

    fn register(&mut self, token: String, tags: BTreeSet<String>) -> TokenId {
        let id = self.next_token;
        self.next_token += 1;
        self.ids.insert(token, id);
        self.grants.insert(
            id,
            Grant {
                tags,
                checked: (0, false),
            },
        );
        id
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

    /// Whether `role` may use every one of `tags`.
    pub(crate) fn permit(&self, role: Role, tags: &[String]) -> Result<(), Error> {
        let granted = match role {
            Role::Open | Role::Admin => return Ok(()),
            Role::Anonymous => return Err(Error::AuthRequired),
            Role::Client(id) => self.grants.get(&id).map(|g| &g.tags),
        };
        let mut denied: Vec<String> = tags
            .iter()
            .filter(|t| !granted.is_some_and(|g| g.contains(*t)))
            .cloned()
            .collect();
        if denied.is_empty() {
            return Ok(());
        }
        denied.sort_unstable();
        denied.dedup();
        Err(Error::PermissionDenied { denied })
    }

    /// Whether a connection with `role` may receive publish number `seq`,
    /// tagged `tags`: only if it was granted every one of them. Checked once
    /// per token and publish, however many of its connections receive it.
    pub(crate) fn receives(&mut self, role: Role, tags: &[String], seq: u64) -> bool {
        let Role::Client(id) = role else {
            return true;
        };
        let Some(grant) = self.grants.get_mut(&id) else {
            return false;
        };
        if grant.checked.0 != seq {
            let all = tags.iter().all(|t| grant.tags.contains(t));
            grant.checked = (seq, all);
        }
        grant.checked.1
    }

    /// The tags of a registered token.
    pub(crate) fn tags_of(&self, token: &str) -> Option<&BTreeSet<String>> {
        let id = self.ids.get(token)?;
        self.grants.get(id).map(|g| &g.tags)
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

    /// Applies a stored change to the grants.
    pub(crate) fn apply(&mut self, change: Change) -> Revoked {
        match change {
            Change::Register { token, tags } => {
                self.register(token, tags);
                Revoked::Nothing
            }
            Change::Set { token, tags } => {
                if let Some(grant) = self.ids.get(&token).and_then(|id| self.grants.get_mut(id)) {
                    grant.tags.extend(tags);
                    grant.checked = (0, false);
                }
                Revoked::Nothing
            }
            Change::Unset { token, tags } => {
                let Some(&id) = self.ids.get(&token) else {
                    return Revoked::Nothing;
                };
                if let Some(grant) = self.grants.get_mut(&id) {
                    grant.tags.retain(|t| !tags.contains(t));
                    grant.checked = (0, false);
                }
                Revoked::Tags(id, tags)
            }
            Change::Unregister { token } => match self.ids.remove(&token) {
                Some(id) => {
                    self.grants.remove(&id);
                    Revoked::Token(id)
                }
                None => Revoked::Nothing,
            },
        }
    }

    /// Forgets the changes a departed connection queued; one already with
    /// the authenticator stays, since its outcome must still be applied.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        self.queue.retain(|(c, _)| *c != conn);
    }
}
