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
    /// A tag longer than [`crate::Config::max_tag_bytes`].
    TagTooLong {
        /// The most bytes allowed.
        limit: usize,
    },
    /// The connection already holds [`crate::Config::max_subscriptions`].
    TooManySubscriptions {
        /// The most allowed.
        limit: usize,
    },
    /// The subscription would take the connection's subscriptions past
    /// [`crate::Config::max_subscription_bytes`].
    SubscriptionBytes {
        /// The most bytes allowed.
        limit: usize,
    },
    /// The reply would be larger than the client's whole outbox.
    ReplyTooLarge {
        /// The command.
        command: &'static str,
        /// The outbox bound in bytes.
        limit: usize,
    },
    /// A line too long for a client that has not authenticated yet.
    AuthLineTooLong {
        /// The most bytes an `auth` line may have.
        limit: usize,
    },
    /// The client did not send `auth` within [`crate::Config::auth_timeout`].
    AuthTimeout {
        /// The timeout in seconds.
        seconds: u64,
    },
    /// Too many failed authentications came from the client's address.
    Throttled {
        /// Seconds until attempts are checked again.
        retry_after: u64,
    },
    /// The server wants a token before anything else.
    AuthRequired,
    /// The token given is neither the server token nor a registered one.
    BadToken,
    /// A signed token whose signature or claims are refused (never repeats
    /// the token).
    BadSignedToken(String),
    /// A signed token past its `exp`: refused, or its connection closed.
    TokenExpired,
    /// A signed token before its `nbf`.
    TokenNotYetValid,
    /// A stored-token admin command on a server of signed tokens.
    SignedTokensNotStored {
        /// The admin command.
        command: &'static str,
    },
    /// `auth` on a connection that has authenticated already; the answer is
    /// the same whatever the token, so it cannot be used to test tokens.
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
            Error::TagTooLong { limit } => {
                write!(f, "tag too long: a tag may have at most {limit} bytes")
            }
            Error::TooManySubscriptions { limit } => write!(
                f,
                "too many subscriptions: a connection may hold at most {limit}"
            ),
            Error::SubscriptionBytes { limit } => write!(
                f,
                "too many subscription bytes: a connection's subscriptions may take at most {limit} bytes (each tag counts its length plus 3)"
            ),
            Error::ReplyTooLarge { command, limit } => write!(
                f,
                "reply too large: the {command} reply would be larger than the client's outbox ({limit} bytes)"
            ),
            Error::AuthLineTooLong { limit } => write!(
                f,
                "line too long: before authentication a line may have at most {limit} bytes; send {{\"command\":\"auth\",\"data\":\"TOKEN\"}} first"
            ),
            Error::AuthTimeout { seconds } => write!(
                f,
                "authentication timed out: send {{\"command\":\"auth\",\"data\":\"TOKEN\"}} within {seconds} s of connecting"
            ),
            Error::Throttled { retry_after } => write!(
                f,
                "too many failed authentications from this address: try again in {retry_after} s"
            ),
            Error::AuthRequired => f.write_str(
                "authentication required: send {\"command\":\"auth\",\"data\":\"TOKEN\"} first",
            ),
            Error::BadToken => f.write_str("authentication failed: the token is not valid"),
            Error::BadSignedToken(why) => write!(f, "authentication failed: {why}"),
            Error::TokenExpired => f.write_str("the token expired: get a new one and connect again"),
            Error::TokenNotYetValid => {
                f.write_str("authentication failed: the token is not valid yet (its nbf is in the future)")
            }
            Error::SignedTokensNotStored { command } => write!(
                f,
                "{command}: this server checks signed tokens (JWT), which are not stored; mint a token with the tags instead"
            ),
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
