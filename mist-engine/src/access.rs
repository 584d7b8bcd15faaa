//! Who may do what: the server token, registered tokens and their grants,
//! and the queue of admin changes waiting for the authenticator.

use crate::auth::{same_token, Change, Grants};
use crate::engine::ConnId;
use crate::Error;
use std::collections::{BTreeSet, VecDeque};

/// What a connection is allowed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The server has no authenticator: everything but admin commands.
    Open,
    /// Not authenticated yet: only `auth`.
    Anonymous,
    /// The server token: everything, admin commands included.
    Admin,
    /// A registered token: only its granted tags.
    Client(String),
}

/// What an applied change took away from connections already open.
pub(crate) enum Revoked {
    Nothing,
    Token(String),
    Tags(String, BTreeSet<String>),
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
    grants: Grants,
    /// Admin changes in arrival order; the front one is with the
    /// authenticator while `in_flight` is set.
    queue: VecDeque<(ConnId, Change)>,
    in_flight: Option<u64>,
    next_id: u64,
}

impl Access {
    pub(crate) fn new(server_token: String, grants: Grants) -> Access {
        Access {
            server_token,
            grants,
            queue: VecDeque::new(),
            in_flight: None,
            next_id: 0,
        }
    }

    /// The role a token gives, if it is valid.
    pub(crate) fn identify(&self, token: &str) -> Option<Role> {
        if same_token(token, &self.server_token) {
            return Some(Role::Admin);
        }
        // A hash lookup with the standard (keyed) hasher, then an exact match:
        // neither tells an attacker how close a guess was.
        let (known, _) = self.grants.get_key_value(token)?;
        same_token(known, token).then(|| Role::Client(known.clone()))
    }

    /// Whether `role` may use every one of `tags`.
    pub(crate) fn permit(&self, role: &Role, tags: &[String]) -> Result<(), Error> {
        let granted = match role {
            Role::Open | Role::Admin => return Ok(()),
            Role::Anonymous => return Err(Error::AuthRequired),
            Role::Client(token) => self.grants.get(token),
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

    /// The tags of a registered token.
    pub(crate) fn tags_of(&self, token: &str) -> Option<&BTreeSet<String>> {
        self.grants.get(token)
    }

    /// Checks a change against the current grants.
    fn check(&self, change: &Change) -> Result<(), Error> {
        let token = change.token();
        let known = self.grants.contains_key(token);
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
    pub(crate) fn next(&mut self) -> Option<Next> {
        if self.in_flight.is_some() {
            return None;
        }
        let (_, change) = self.queue.front()?;
        match self.check(change) {
            Ok(()) => {
                let id = self.next_id;
                self.next_id += 1;
                self.in_flight = Some(id);
                Some(Next::Store(id, change.clone()))
            }
            Err(e) => {
                let (conn, change) = self.queue.pop_front()?;
                Some(Next::Refuse(conn, change, e))
            }
        }
    }

    /// Takes the change with `id` off the queue once the authenticator is done.
    pub(crate) fn finish(&mut self, id: u64) -> Option<(ConnId, Change)> {
        if self.in_flight != Some(id) {
            return None;
        }
        self.in_flight = None;
        self.queue.pop_front()
    }

    /// Applies a stored change to the grants.
    pub(crate) fn apply(&mut self, change: Change) -> Revoked {
        match change {
            Change::Register { token, tags } => {
                self.grants.insert(token, tags);
                Revoked::Nothing
            }
            Change::Set { token, tags } => {
                self.grants.entry(token).or_default().extend(tags);
                Revoked::Nothing
            }
            Change::Unset { token, tags } => {
                if let Some(granted) = self.grants.get_mut(&token) {
                    granted.retain(|t| !tags.contains(t));
                }
                Revoked::Tags(token, tags)
            }
            Change::Unregister { token } => {
                self.grants.remove(&token);
                Revoked::Token(token)
            }
        }
    }

    /// Forgets the changes a departed connection queued, except one already
    /// with the authenticator, whose outcome must still be applied.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        let keep_front = self.in_flight.is_some();
        let mut i = 0;
        self.queue.retain(|(c, _)| {
            let keep = *c != conn || (keep_front && i == 0);
            i += 1;
            keep
        });
    }
}
