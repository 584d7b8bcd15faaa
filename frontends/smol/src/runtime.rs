//! smol as the server's [`Runtime`]: the server's executor, smol's timers
//! and its sockets. The shared start-up (`mist_frontend::server::Bound`)
//! needs nothing else.

use mist_frontend::Runtime;
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The server's smol executor, smol's timers and its sockets.
#[derive(Clone)]
pub struct Smol(Arc<Executor<'static>>);

impl Smol {
    /// Tasks spawned on `executor`, which the caller's threads run.
    pub fn new(executor: Arc<Executor<'static>>) -> Smol {
        Smol(executor)
    }
}

impl Runtime for Smol {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.0.spawn(task).detach();
    }

    fn listener(&self, listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
        TcpListener::try_from(listener)
    }

    async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        // Writes are already coalesced; Nagle would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        Ok((stream, peer))
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        let timer = Timer::after(duration);
        async move {
            timer.await;
        }
    }
}
