//! The errors a client's command can meet, as sent back in its `error` field.

use mist_proto::ProtoError;
use std::fmt;

/// Why a command was refused. Its `Display` text is the `error` of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The line could not be decoded.
    Protocol(ProtoError),
    /// The command is not one mist knows (the original mist's wording).
    UnknownCommand,
    /// The command needs a non-empty `tags` list.
    MissingTags {
        /// The command that needs them.
        command: &'static str,
    },
    /// More tags than [`crate::Config::max_tags`].
    TooManyTags {
        /// The most allowed.
        limit: usize,
    },
    /// The connection already holds [`crate::Config::max_subscriptions`].
    TooManySubscriptions {
        /// The most allowed.
        limit: usize,
    },
    /// The server wants a token before anything else.
    AuthRequired,
    /// The token given is neither the server token nor a registered one.
    BadToken,
    /// A connection keeps the token it authenticated with.
    AlreadyAuthenticated,
    /// The token was not granted these tags.
    PermissionDenied {
        /// The tags the token may not use, sorted.
        denied: Vec<String>,
    },
    /// Admin commands need the server token.
    AdminOnly,
    /// An admin command without the token it is about in `data`.
    MissingToken {
        /// The admin command that needs it.
        command: &'static str,
    },
    /// `register` of a token that exists already.
    TokenExists,
    /// A change to a token that is not registered.
    UnknownToken,
    /// The authenticator could not store the change; nothing changed.
    NotSaved(String),
    /// The connection's token was unregistered.
    TokenRevoked,
    /// Tags were taken from the connection's token; this subscription used them.
    PermissionRevoked {
        /// The revoked tags the subscription used.
        tags: Vec<String>,
    },
    /// The server is shutting down and takes no new connections.
    ShuttingDown,
    /// [`crate::Config::max_connections`] are open already.
    TooManyConnections {
        /// The most allowed.
        limit: usize,
    },
    /// A custom command's own error, sent as it is.
    Custom(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(e) => e.fmt(f),
            Error::UnknownCommand => f.write_str("Unknown Command"),
            Error::MissingTags { command } => write!(
                f,
                "missing tags: {command} needs a non-empty \"tags\" list of strings"
            ),
            Error::TooManyTags { limit } => {
                write!(f, "too many tags: at most {limit} tags are allowed")
            }
            Error::TooManySubscriptions { limit } => write!(
                f,
                "too many subscriptions: a connection may hold at most {limit}"
            ),
            Error::AuthRequired => f.write_str(
                "authentication required: send {\"command\":\"auth\",\"data\":\"TOKEN\"} first",
            ),
            Error::BadToken => f.write_str("authentication failed: the token is not valid"),
            Error::AlreadyAuthenticated => {
                f.write_str("already authenticated: a connection keeps the token it started with")
            }
            Error::PermissionDenied { denied } => write!(
                f,
                "permission denied: this token may not use the tag(s) {}",
                denied.join(", ")
            ),
            Error::AdminOnly => {
                f.write_str("permission denied: admin commands need the server token")
            }
            Error::MissingToken { command } => {
                write!(f, "missing token: {command} needs the token in \"data\"")
            }
            Error::TokenExists => f.write_str("token already registered"),
            Error::UnknownToken => f.write_str("unknown token: it is not registered"),
            Error::NotSaved(reason) => {
                write!(
                    f,
                    "the change could not be saved, nothing changed: {reason}"
                )
            }
            Error::TokenRevoked => {
                f.write_str("the token was unregistered: the connection is closed")
            }
            Error::ShuttingDown => f.write_str("the server is shutting down"),
            Error::Custom(message) => f.write_str(message),
            Error::TooManyConnections { limit } => write!(
                f,
                "too many connections: the server takes at most {limit}; try again later"
            ),
            Error::PermissionRevoked { tags } => write!(
                f,
                "permission revoked for the tag(s) {}: the subscription was removed",
                tags.join(", ")
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ProtoError> for Error {
    fn from(e: ProtoError) -> Error {
        Error::Protocol(e)
    }
}
