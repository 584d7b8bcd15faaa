//! What every runtime does with a socket its listener accepted.

use crate::{accept_websocket, serve, Hub, Pinger, Runtime};
use futures::io::{AsyncRead, AsyncWrite};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// How an accepted socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Newline-delimited JSON over the raw stream (`tcp://`).
    Lines,
    /// A WebSocket handshake, then one message per text frame (`ws://`).
    WebSocket,
}

/// Serves one accepted socket until the client leaves, logging its life at
/// debug level. An ordinary disconnect is never logged as an error.
/// A WebSocket client is pinged as `pinger` says.
pub async fn serve_accepted<S, R>(
    hub: Arc<Hub>,
    transport: Transport,
    stream: S,
    peer: SocketAddr,
    pinger: Option<Pinger<R>>,
) where
    S: AsyncRead + AsyncWrite + Clone + Unpin + Send,
    R: Runtime,
{
    log::debug!("{peer} connected ({transport:?})");
    let outcome = match transport {
        Transport::Lines => serve(&hub, stream.clone(), stream).await,
        Transport::WebSocket => accept_websocket(&hub, stream, pinger).await,
    };
    match outcome {
        Ok(()) => log::debug!("{peer} disconnected"),
        Err(e) if is_disconnect(&e) => log::debug!("{peer} disconnected: {e}"),
        Err(e) => log::warn!("{peer}: connection failed: {e}"),
    }
}

/// Errors that only mean the peer went away.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
    )
}
