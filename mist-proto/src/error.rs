//! Why a line could not be turned into a message.

use std::fmt;

/// A line that could not be decoded. The connection stays usable: the decoder
/// has already moved past the offending line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The line grew past the configured limit; its bytes were discarded up to
    /// and including the next newline.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The line is not UTF-8 (JSON must be). `valid_up_to` is the offset of the
    /// first bad byte within the line.
    InvalidUtf8 {
        /// Offset of the first bad byte within the line.
        valid_up_to: usize,
    },
    /// The line is not well-formed JSON.
    InvalidJson {
        /// What the JSON parser said, with the column.
        detail: String,
    },
    /// The line is JSON, but not an object.
    NotAnObject,
    /// The line is a JSON object whose fields do not fit the protocol
    /// (a missing `command`, a field of the wrong type, ...).
    InvalidMessage {
        /// What does not fit, with the column.
        detail: String,
    },
    /// A message-based transport (WebSocket) delivered binary data; mist
    /// messages are JSON text.
    BinaryFrame,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong { limit } => write!(
                f,
                "line too long: the limit is {limit} bytes per message; the line was discarded"
            ),
            ProtoError::InvalidUtf8 { valid_up_to } => write!(
                f,
                "invalid UTF-8: the line has a byte that is not UTF-8 at offset {valid_up_to}"
            ),
            ProtoError::InvalidJson { detail } => write!(f, "invalid JSON: {detail}"),
            ProtoError::NotAnObject => write!(
                f,
                "invalid message: expected a JSON object like {{\"command\":\"ping\"}}"
            ),
            ProtoError::InvalidMessage { detail } => write!(f, "invalid message: {detail}"),
            ProtoError::BinaryFrame => f.write_str(
                "binary frames are not supported: send each message as JSON in a text frame",
            ),
        }
    }
}

impl std::error::Error for ProtoError {}
