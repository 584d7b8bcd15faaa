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
    MissingTags { command: &'static str },
    /// More tags than [`crate::Config::max_tags`].
    TooManyTags { limit: usize },
    /// The connection already holds [`crate::Config::max_subscriptions`].
    TooManySubscriptions { limit: usize },
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
        }
    }
}

impl std::error::Error for Error {}

impl From<ProtoError> for Error {
    fn from(e: ProtoError) -> Error {
        Error::Protocol(e)
    }
}
