//! async-std as the server's [`Runtime`]: its executor, timers and sockets.
//! The shared start-up (`mist_frontend::server::Bound`) needs nothing else.

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use mist_frontend::Runtime;
use std::future::Future;
use std::time::Duration;

/// async-std's executor and timers.
#[derive(Clone, Copy)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        task::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        task::sleep(duration)
    }

    fn listener(&self, listener: std::net::TcpListener) -> std::io::Result<Self::Listener> {
        Ok(TcpListener::from(listener))
    }

    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, std::net::SocketAddr)>> + Send {
        accept(listener)
    }
}

/// Accepts on `listener`, with TCP_NODELAY: writes are already coalesced,
/// so Nagle would only add latency.
async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    let (stream, peer) = listener.accept().await?;
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
    }
    Ok((stream, peer))
}
