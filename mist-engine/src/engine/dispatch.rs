//! Routing one request to its command, the checks every command shares
//! (tags present, within limits, permitted), and how large a reply applying
//! a request can queue, which decides whether it may be applied now.

use super::publish::{Pacing, Published};
use super::{Conn, ConnId, Engine};
use crate::access::Role;
use crate::extension::{CommandContext, CommandHandler};
use crate::Error;
use mist_proto::encode::{self, escaped_len};
use mist_proto::{Command, ProtoError, Request};

/// Room for the fixed part of any reply: the frame's keys, a count, the
/// longest fixed error text.
const REPLY_FRAME: usize = 512;

/// Room a custom command's own replies may take beyond an error.
const CUSTOM_REPLY: usize = 64 * 1024;

impl Engine {
    /// Applies one received line: a decoding error or a refusal is answered,
    /// and a client that must authenticate first is refused and closed
    /// unless the line is a valid `auth` (told what was wrong with it).
    /// A publish that must wait for its subscribers ([`Published::Paced`])
    /// is handed back, unapplied.
    pub(super) fn process(
        &mut self,
        conn: ConnId,
        message: Result<Request, ProtoError>,
    ) -> Option<Result<Request, ProtoError>> {
        let anonymous = self.is_anonymous(conn);
        let mut request = match message {
            Ok(request) => request,
            Err(ProtoError::LineTooLong { limit }) if anonymous => {
                self.refuse(conn, "", Error::AuthLineTooLong { limit });
                return None;
            }
            Err(e) if anonymous => {
                self.refuse(conn, "", Error::from(e));
                return None;
            }
            Err(e) => {
                self.reply_error(conn, "", None, Error::from(e));
                return None;
            }
        };
        if anonymous && request.command != Command::Auth {
            self.refuse(conn, request.command.as_str(), Error::AuthRequired);
            return None;
        }
        // Until the publish it waited for is applied.
        let expired = self.conn(conn).is_some_and(|c| c.pace_expired);
        let pacing = if expired {
            Pacing::Expired
        } else {
            Pacing::Wait
        };
        match self.apply(conn, &mut request, pacing) {
            Ok(Published::Paced) => return Some(Ok(request)),
            Ok(Published::Applied) => {}
            Err(e) if anonymous => self.refuse(conn, request.command.as_str(), e),
            Err(e) => {
                let command = request.command.as_str();
                self.reply_error(conn, command, request.tags.as_deref(), e);
            }
        }
        None
    }

    /// Input: a request from `conn` whose failure the caller reports itself,
    /// for transports that answer out of band (an HTTP status, say). Replies
    /// on success are queued as usual. A publish never waits here: a
    /// delivery that does not fit its subscriber's outbox is dropped.
    pub fn handle_command(&mut self, conn: ConnId, request: &Request) -> Result<(), Error> {
        // A publish may move its tags into an offer to other shards.
        let mut request = request.clone();
        self.apply(conn, &mut request, Pacing::Never).map(|_| ())
    }

    /// Applies one request. A publish that is offered to other shards
    /// takes `request`'s tags for the offer.
    fn apply(
        &mut self,
        conn: ConnId,
        request: &mut Request,
        pacing: Pacing,
    ) -> Result<Published, Error> {
        if self.conn(conn).is_none() {
            return Ok(Published::Applied);
        }
        self.work += 1 + request.tags.as_ref().map_or(0, |t| t.len() as u64);
        let done = match request.command {
            Command::Ping => {
                self.reply(conn, encode::pong());
                Ok(())
            }
            Command::Subscribe => self.subscribe(conn, request),
            Command::Unsubscribe => self.unsubscribe(conn, request),
            Command::Publish => return self.publish(conn, request, pacing),
            Command::List => {
                self.list(conn);
                Ok(())
            }
            Command::Auth => self.authenticate(conn, request),
            Command::Who => {
                // Every shard's connections, not only this one's.
                let shared = &self.shared;
                let frame = encode::who(
                    shared
                        .connections
                        .load(std::sync::atomic::Ordering::Acquire),
                    shared
                        .subscribers
                        .load(std::sync::atomic::Ordering::Acquire),
                    self.scope(),
                );
                self.reply(conn, frame);
                Ok(())
            }
            Command::Listall => self.listall(conn),
            Command::Register
            | Command::Unregister
            | Command::Set
            | Command::Unset
            | Command::Tags => self.admin(conn, request),
            Command::Other(ref name) => self.custom(conn, name, request),
        };
        done.map(|()| Published::Applied)
    }

    /// The most bytes that applying `message` can queue for its sender.
    pub(super) fn reply_bound(&self, c: &Conn, message: &Result<Request, ProtoError>) -> usize {
        let request = match message {
            // Error texts may quote the line; each byte escapes to at most 6.
            Err(e) => return REPLY_FRAME + 6 * e.to_string().len(),
            Ok(request) => request,
        };
        let error = error_bound(request);
        match &request.command {
            Command::List => error.max(REPLY_FRAME + 2 * c.subscriptions.bytes()),
            Command::Listall => match self.listall_bound() {
                Some(reply) => error.max(reply),
                None => error,
            },
            Command::Tags => {
                let granted = self.shared.authority().and_then(|authority| {
                    let token = request.data.as_ref()?.to_text();
                    authority
                        .tags_of(&token)
                        .map(|tags| tags.iter().map(|t| escaped_len(t) + 3).sum::<usize>())
                });
                error + granted.unwrap_or(0)
            }
            Command::Other(name) if self.commands.contains_key(name) => error + CUSTOM_REPLY,
            _ => error,
        }
    }

    /// The largest `listall` reply, or `None` if it would not fit in an
    /// outbox at all (then `listall` answers an error instead).
    pub(super) fn listall_bound(&self) -> Option<usize> {
        let bytes = if self.shared.shards() > 1 {
            self.shared.registry().bytes()
        } else {
            self.index.distinct_bytes()
        };
        let bound = REPLY_FRAME + 2 * bytes;
        (bound <= self.config.max_outbox_bytes).then_some(bound)
    }

    /// The request's tags, checked for presence, count and length.
    pub(super) fn required_tags<'r>(
        &self,
        command: &'static str,
        request: &'r Request,
    ) -> Result<&'r [String], Error> {
        match request.tags.as_deref() {
            None | Some([]) => Err(Error::MissingTags { command }),
            Some(tags) => self.check_tags(tags).map(|()| tags),
        }
    }

    /// Tags within [`crate::Config::max_tags`] and
    /// [`crate::Config::max_tag_bytes`].
    pub(super) fn check_tags(&self, tags: &[String]) -> Result<(), Error> {
        if tags.len() > self.config.max_tags {
            return Err(Error::TooManyTags {
                limit: self.config.max_tags,
            });
        }
        if tags.iter().any(|t| t.len() > self.config.max_tag_bytes) {
            return Err(Error::TagTooLong {
                limit: self.config.max_tag_bytes,
            });
        }
        Ok(())
    }

    /// The role `conn` holds (a gone connection has none).
    pub(super) fn role(&self, conn: ConnId) -> Role {
        self.conn(conn).map_or(Role::Anonymous, |c| c.role)
    }

    /// Whether `conn` may use all of `tags`.
    pub(super) fn permit(&self, conn: ConnId, tags: &[String]) -> Result<(), Error> {
        match &self.access {
            None => Ok(()),
            Some(access) => access.permit(self.role(conn), tags),
        }
    }

    /// Whether `conn` holds the server token (never on an open server).
    pub(crate) fn is_admin(&self, conn: ConnId) -> bool {
        self.role(conn) == Role::Admin
    }

    /// Adds a command of the embedder's own. Built-in names are refused.
    /// See [`crate::extension`].
    pub fn register_command(
        &mut self,
        name: impl Into<String>,
        handler: CommandHandler,
    ) -> Result<(), Error> {
        let name = name.into();
        if !matches!(Command::from(name.as_str()), Command::Other(_)) {
            return Err(Error::Custom(format!(
                "{name} is a built-in command and cannot be replaced"
            )));
        }
        self.commands.insert(name, handler);
        Ok(())
    }

    fn custom(&mut self, conn: ConnId, name: &str, request: &Request) -> Result<(), Error> {
        // Taken out while it runs, so the handler may use the engine freely.
        let Some(mut handler) = self.commands.remove(name) else {
            return Err(Error::UnknownCommand);
        };
        let outcome = handler(&mut CommandContext { engine: self, conn }, request);
        self.commands.insert(name.to_string(), handler);
        outcome
    }
}

/// The largest error reply `request` can get: it echoes the command and the
/// tags, and the error text may name the tags again.
fn error_bound(request: &Request) -> usize {
    let tags = request.tags.as_deref().map_or(0, |tags| {
        tags.iter().map(|t| escaped_len(t) + 3).sum::<usize>()
    });
    REPLY_FRAME + escaped_len(request.command.as_str()) + 2 * tags
}
