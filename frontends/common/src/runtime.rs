//! What a runtime frontend lends the shared code: spawning, timers and its
//! sockets. Everything else a server does (binding, accepting, serving,
//! stopping) is written once over this trait; see [`crate::server`].

use futures::io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The async runtime a server runs on (async-std, smol, ...).
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A listening socket registered with the runtime.
    type Listener: Send + Sync + 'static;
    /// An accepted connection; clones share the socket, so a reader and a
    /// writer can use it at once.
    type Stream: AsyncRead + AsyncWrite + Clone + Unpin + Send + Sync + 'static;

    /// Runs a task in the background.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F);

    /// Resolves after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;

    /// Registers a bound, non-blocking listener with the runtime.
    fn listener(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// The next connection `listener` accepts.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}
