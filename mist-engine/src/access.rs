//! What one shard knows of who may do what: the roles its connections hold,
//! and a replica of every registered token's grants, kept in step with the
//! [`Authority`](crate::authority::Authority) by applying its change log.
//! Every publish is checked here, without touching anything shared.

use crate::authority::Entry;
use crate::hash::IdHashMap;
use crate::Error;
use std::collections::BTreeSet;

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

/// A registered token's tags, as this shard knows them.
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

/// One shard's replica of the grants.
#[derive(Default)]
pub(crate) struct Access {
    grants: IdHashMap<TokenId, Grant>,
    /// The authority's log position this replica has applied.
    pub(crate) version: u64,
}

impl Access {
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

    /// Applies one entry of the authority's log.
    pub(crate) fn apply(&mut self, entry: &Entry) -> Revoked {
        match entry {
            Entry::Register(id, tags) => {
                let tags = tags.clone();
                self.grants.insert(
                    *id,
                    Grant {
                        tags,
                        checked: (0, false),
                    },
                );
                Revoked::Nothing
            }
            Entry::Set(id, tags) => {
                if let Some(grant) = self.grants.get_mut(id) {
                    grant.tags.extend(tags.iter().cloned());
                    grant.checked = (0, false);
                }
                Revoked::Nothing
            }
            Entry::Unset(id, tags) => {
                if let Some(grant) = self.grants.get_mut(id) {
                    grant.tags.retain(|t| !tags.contains(t));
                    grant.checked = (0, false);
                }
                Revoked::Tags(*id, tags.clone())
            }
            Entry::Unregister(id) => {
                self.grants.remove(id);
                Revoked::Token(*id)
            }
            Entry::Forget(id) => {
                self.grants.remove(id);
                Revoked::Nothing
            }
        }
    }
}
