//! Authentication and the admin commands: `auth`, the throttle on failed
//! attempts, the changes that wait for the authenticator, and revoking what
//! open connections hold when a change takes grants away.

use super::{ConnId, Engine, Output};
use crate::access::{Access, Next, Revoked, Role};
use crate::auth::{AuthError, Change};
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
        let role = self.check_token(peer, &token)?;
        if let Some(c) = self.conn_mut(conn) {
            c.role = role;
        }
        Ok(())
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
        match self.check_token(peer, token)? {
            Role::Admin => Ok(()),
            _ => Err(Error::AdminOnly),
        }
    }

    /// The role `token` gives, unless `peer` has used up its failed
    /// attempts; a failure counts against `peer`.
    pub(super) fn check_token(&mut self, peer: Option<IpAddr>, token: &str) -> Result<Role, Error> {
        let Some(access) = self.access.as_mut() else {
            return Ok(Role::Open);
        };
        let known = match (peer, self.now) {
            (Some(peer), Some(now)) => Some((peer, now)),
            _ => None,
        };
        if let Some((peer, now)) = known {
            if let Some(wait) = access.throttle.blocked(peer, now) {
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Error::Throttled { retry_after });
            }
        }
        if let Some(role) = access.identify(token) {
            return Ok(role);
        }
        if let Some((peer, now)) = known {
            if access.throttle.failed(peer, now) {
                let retry_after = self.config.auth_failure_window;
                self.outputs
                    .push_back(Output::Throttled { peer, retry_after });
            }
        }
        Err(Error::BadToken)
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
                let access = self.access.as_ref().ok_or(Error::UnknownCommand)?;
                let tags: Vec<String> = access
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
        if let Some(access) = self.access.as_mut() {
            access.enqueue(conn, change);
        }
        if let Some(c) = self.conn_mut(conn) {
            c.waiting = true;
        }
        self.pump_changes();
        Ok(())
    }

    /// Hands every change that can go now to the caller; answers those that
    /// are no longer valid.
    fn pump_changes(&mut self) {
        while let Some(next) = self.access.as_mut().and_then(Access::next) {
            match next {
                Next::Store(id, change) => self.outputs.push_back(Output::Persist { id, change }),
                Next::Refuse(conn, change, error) => {
                    self.reply_error(conn, change_command(&change), None, error);
                    self.settled(conn);
                }
            }
        }
    }

    /// `conn`'s admin change is done: its input may go on.
    fn settled(&mut self, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.waiting = false;
            self.outputs.push_back(Output::Resume(conn));
        }
    }

    /// Input: the authenticator's outcome for [`Output::Persist`] `id`. The
    /// change takes effect (or not) and its admin gets the reply now; its
    /// input may then go on ([`Output::Resume`]).
    pub fn handle_persisted(&mut self, id: u64, outcome: Result<(), AuthError>) {
        let Some((conn, change)) = self.access.as_mut().and_then(|a| a.finish(id)) else {
            return;
        };
        match outcome {
            Ok(()) => {
                let revoked = self
                    .access
                    .as_mut()
                    .map_or(Revoked::Nothing, |a| a.apply(change));
                self.enforce(revoked);
            }
            Err(e) => self.reply_error(conn, change_command(&change), None, Error::NotSaved(e.0)),
        }
        self.settled(conn);
        self.pump_changes();
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
