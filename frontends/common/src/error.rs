//! Errors a frontend reports when it cannot start.

use std::fmt;
use std::io;

/// Why a server could not start listening.
#[derive(Debug)]
pub enum Error {
    /// A listener URI could not be understood.
    InvalidListener {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A listener could not be bound (port in use, address not local, ...).
    Bind {
        /// The listener's URI.
        uri: String,
        /// The system's reason.
        source: io::Error,
    },
    /// None of the requested listeners could be started.
    NoListeners,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidListener { uri, reason } => {
                write!(f, "invalid listener {uri:?}: {reason}")
            }
            Error::Bind { uri, source } if source.kind() == io::ErrorKind::AddrInUse => write!(
                f,
                "cannot listen on {uri}: the address is already in use (is another mist running?)"
            ),
            Error::Bind { uri, source } => write!(f, "cannot listen on {uri}: {source}"),
            Error::NoListeners => f.write_str(
                "no listener could be started; give at least one supported one, e.g. --listeners tcp://127.0.0.1:1445",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}
