//! Authentication and the admin commands: `auth`, the throttle on failed
//! attempts, the changes that wait for the authenticator, and revoking what
//! open connections hold when a change takes grants away. The decisions are
//! the [`Authority`](crate::authority::Authority)'s, shared by every shard;
//! each shard enforces them on its own connections when it syncs.

use super::{ConnId, Engine, Output};
use crate::access::{Revoked, Role};
use crate::auth::{AuthError, Change};
use crate::authority::{Identity, Next, Recognised};
use crate::Error;
use mist_proto::{encode, Command, Request};
use std::collections::BTreeSet;
use std::net::IpAddr;

impl Engine {
    /// `auth`: on an open server a no-op, so clients given a token work there
    /// too. A connection that has authenticated gets the same answer whatever
    /// token it sends, so an open connection cannot be used to test tokens.
    pub(super) fn authenticate(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        if self.access.is_none() {
            return Ok(());
        }
        if !self.is_anonymous(conn) {
            return Err(Error::AlreadyAuthenticated);
        }
        let token = request
            .data
            .as_ref()
            .map(|d| d.to_text())
            .unwrap_or_default();
        let peer = self.conn(conn).and_then(|c| c.peer);
        let identity = self.check_token(peer, &token)?;
        if let Some(c) = self.conn_mut(conn) {
            c.role = identity.role;
        }
        self.expire_at(conn, identity.expires);
        Ok(())
    }

    /// Closes `conn` when its signed token expires, if it has one.
    pub(super) fn expire_at(&mut self, conn: ConnId, expires: Option<u64>) {
        let Some(expires) = expires else { return };
        self.expiring.push(std::cmp::Reverse((expires, conn)));
        // Connections that left stay in the heap until their token's expiry:
        // a client reconnecting with a long-lived token must not grow it,
        // so once most entries are gone ones, they are swept out.
        if self.expiring.len() > 64 && self.expiring.len() > 2 * self.stats.connections {
            let mut expiring = std::mem::take(&mut self.expiring);
            expiring.retain(|std::cmp::Reverse((_, conn))| self.conn(*conn).is_some());
            self.expiring = expiring;
        }
    }

    /// Input: a request for what only the admin may see (the server's stats)
    /// made with `token` from `peer`. An open server lets anyone see them;
    /// a secured one wants the server token, and counts a wrong one as a
    /// failed authentication.
    pub fn check_admin_token(
        &mut self,
        peer: Option<IpAddr>,
        token: Option<&str>,
    ) -> Result<(), Error> {
        if self.access.is_none() {
            return Ok(());
        }
        let token = token.ok_or(Error::AuthRequired)?;
        match self.check_token(peer, token)?.role {
            Role::Admin => Ok(()),
            _ => Err(Error::AdminOnly),
        }
    }

    /// Who `token` makes a connection, unless `peer` has used up its
    /// failed attempts; a failure counts against `peer`.
    pub(super) fn check_token(
        &mut self,
        peer: Option<IpAddr>,
        token: &str,
    ) -> Result<Identity, Error> {
        let shared = self.shared.clone();
        let Some(mut authority) = shared.authority() else {
            return Ok(Identity {
                role: Role::Open,
                expires: None,
            });
        };
        let known = match (peer, self.now) {
            (Some(peer), Some(now)) => Some((peer, now)),
            _ => None,
        };
        if let Some((peer, now)) = known {
            if let Some(wait) = authority.throttle.blocked(peer, now) {
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Error::Throttled { retry_after });
            }
        }
        let identified = match authority.recognise(token) {
            Recognised::Known(identified) => identified,
            Recognised::Unverified { verifier, key } => {
                // The signature is checked outside the shared lock (an
                // Ed25519 or RSA check takes tens of microseconds), so
                // other shards admit their clients meanwhile.
                drop(authority);
                let verified = verifier.verify(token);
                authority = shared.authority().expect("the authority stays");
                authority.admit(token, verified, key)
            }
        };
        let refused = match identified {
            Ok(identity) => {
                drop(authority);
                // The token may be newer than this shard's replica.
                self.sync_grants();
                return Ok(identity);
            }
            Err(refused) => refused,
        };
        if let Some((peer, now)) = known {
            if authority.throttle.failed(peer, now) {
                let retry_after = self.config.auth_failure_window;
                self.outputs
                    .push_back(Output::Throttled { peer, retry_after });
            }
        }
        Err(refused)
    }

    /// The admin commands; changes wait for the authenticator.
    pub(super) fn admin(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        if self.access.is_none() {
            return Err(Error::UnknownCommand);
        }
        if !self.is_admin(conn) {
            return Err(Error::AdminOnly);
        }
        let command = match request.command {
            Command::Register => "register",
            Command::Unregister => "unregister",
            Command::Set => "set",
            Command::Unset => "unset",
            _ => "tags",
        };
        if self.shared.authority().is_some_and(|a| a.is_signed()) {
            return Err(Error::SignedTokensNotStored { command });
        }
        let token = request
            .data
            .as_ref()
            .map(|d| d.to_text())
            .unwrap_or_default();
        if token.is_empty() {
            return Err(Error::MissingToken { command });
        }
        let tag_set = |tags: &[String]| tags.iter().cloned().collect::<BTreeSet<String>>();
        let change = match request.command {
            Command::Tags => {
                let tags: Vec<String> = self
                    .shared
                    .authority()
                    .ok_or(Error::UnknownCommand)?
                    .tags_of(&token)
                    .ok_or(Error::UnknownToken)?
                    .iter()
                    .cloned()
                    .collect();
                self.reply(conn, encode::tags(&tags));
                return Ok(());
            }
            Command::Register => {
                let tags = request.tags.as_deref().unwrap_or_default();
                self.check_tags(tags)?;
                Change::Register {
                    token,
                    tags: tag_set(tags),
                }
            }
            Command::Unregister => Change::Unregister { token },
            Command::Set => Change::Set {
                tags: tag_set(self.required_tags(command, request)?),
                token,
            },
            _ => Change::Unset {
                tags: tag_set(self.required_tags(command, request)?),
                token,
            },
        };
        if let Some(c) = self.conn_mut(conn) {
            c.waiting = true;
        }
        let shared = self.shared.clone();
        if let Some(mut authority) = shared.authority() {
            authority.enqueue(conn, change);
            self.pump_changes(&mut authority);
        }
        self.settle();
        Ok(())
    }

    /// Hands every change that can go now to the caller; those that are no
    /// longer valid are settled with their error.
    fn pump_changes(&mut self, authority: &mut crate::authority::Authority) {
        while let Some(next) = authority.next() {
            match next {
                Next::Store(id, change) => self.outputs.push_back(Output::Persist { id, change }),
                Next::Refuse(conn, change, error) => {
                    authority.settle(conn, Some((change_command(&change), error)));
                }
            }
        }
    }

    /// What `conn` waited for (its admin change, its anchor) is done: its
    /// input may go on.
    pub(super) fn settled(&mut self, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.waiting = false;
            self.outputs.push_back(Output::Resume(conn));
        }
    }

    /// Input: the authenticator's outcome for [`Output::Persist`] `id`, on
    /// any shard. The change takes effect (or not) on every shard, and then
    /// its admin gets the reply; its input may then go on
    /// ([`Output::Resume`]).
    pub fn handle_persisted(&mut self, id: u64, outcome: Result<(), AuthError>) {
        let shared = self.shared.clone();
        let Some(mut authority) = shared.authority() else {
            return;
        };
        let Some((conn, change)) = authority.finish(id) else {
            return;
        };
        match outcome {
            Ok(()) => {
                if self.replicating {
                    self.outputs
                        .push_back(Output::ReplicateChange(change.clone()));
                }
                authority.apply(change);
                authority.settle(conn, None);
            }
            Err(e) => {
                let failure = (change_command(&change), Error::NotSaved(e.0));
                authority.settle(conn, Some(failure));
            }
        }
        self.pump_changes(&mut authority);
        drop(authority);
        self.settle();
    }

    /// Brings this shard up to date with the authority, and tells the other
    /// shards to do the same.
    pub(super) fn settle(&mut self) {
        if self.shared.shards() > 1 {
            self.outputs.push_back(Output::Sync);
        }
        self.handle_sync();
    }

    /// Input: the authority changed (after [`Output::Sync`], on every
    /// shard): this shard applies the changes to its connections (closing
    /// those whose token was revoked, ending subscriptions to tags taken
    /// away) and answers the admins whose change every shard has applied.
    pub fn handle_sync(&mut self) {
        let shared = self.shared.clone();
        let Some(mut authority) = shared.authority() else {
            return;
        };
        let Some(access) = self.access.as_mut() else {
            return;
        };
        let revoked = authority.sync(self.shard, access);
        let settled = authority.take_settled(self.shard);
        drop(authority);
        for revoked in revoked {
            self.enforce(revoked);
        }
        for done in settled {
            if let Some((command, error)) = done.failure {
                self.reply_error(done.conn, command, None, error);
            }
            self.settled(done.conn);
        }
    }

    /// Brings this shard's replica of the grants up to date.
    pub(super) fn sync_grants(&mut self) {
        let shared = self.shared.clone();
        let (Some(mut authority), Some(access)) = (shared.authority(), self.access.as_mut()) else {
            return;
        };
        let revoked = authority.sync(self.shard, access);
        drop(authority);
        for revoked in revoked {
            self.enforce(revoked);
        }
    }

    /// Takes from open connections what an applied change revoked.
    fn enforce(&mut self, revoked: Revoked) {
        let (token, tags) = match revoked {
            Revoked::Nothing => return,
            Revoked::Token(token) => (token, None),
            Revoked::Tags(token, tags) => (token, Some(tags)),
        };
        let holders: Vec<ConnId> = self
            .open_conns()
            .filter(|&conn| self.role(conn) == Role::Client(token))
            .collect();
        for conn in holders {
            match &tags {
                None => self.refuse(conn, "auth", Error::TokenRevoked),
                Some(tags) => self.revoke_tags(conn, tags),
            }
        }
    }

    /// Removes `conn`'s subscriptions that use any of `tags`, telling it why.
    fn revoke_tags(&mut self, conn: ConnId, tags: &BTreeSet<String>) {
        let Some(c) = self.conn(conn) else { return };
        let lost: Vec<_> = c
            .subscriptions
            .sets()
            .filter(|set| set.iter().any(|&id| tags.contains(self.index.name(id))))
            .cloned()
            .collect();
        for set in lost {
            let names: Vec<String> = set
                .iter()
                .map(|&id| self.index.name(id).to_owned())
                .collect();
            let revoked: Vec<String> = names
                .iter()
                .filter(|t| tags.contains(*t))
                .cloned()
                .collect();
            self.drop_subscription(conn, &set);
            self.reply_error(
                conn,
                "subscribe",
                Some(&names),
                Error::PermissionRevoked { tags: revoked },
            );
        }
    }
}

/// The command that asked for a change, for its reply.
fn change_command(change: &Change) -> &'static str {
    match change {
        Change::Register { .. } => "register",
        Change::Unregister { .. } => "unregister",
        Change::Set { .. } => "set",
        Change::Unset { .. } => "unset",
    }
}
