//! What can go wrong talking to a server.

use std::fmt;
use std::io;

/// Why a client call failed.
#[derive(Debug)]
pub enum Error {
    /// The server refused the command, in its own words.
    Server {
        /// The command it answered.
        command: String,
        /// Its error text.
        message: String,
    },
    /// Connecting, reading or writing failed.
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The server sent what is not the protocol.
    Protocol(String),
    /// The client was given something it cannot use (an address, a TLS
    /// file).
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server { command, message } => write!(f, "{command}: {message}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("the server closed the connection"),
            Error::Protocol(why) => write!(f, "the server sent a bad frame: {why}"),
            Error::Config(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}
