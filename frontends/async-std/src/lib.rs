//! The async-std frontend: binds listeners, accepts connections and spawns one
//! task per connection running [`mist_frontend::serve`]. It interprets
//! nothing; everything protocol-related happens in the shared code.
//!
//! ```no_run
//! use mist_async_std::Server;
//! use mist_frontend::Hub;
//! use std::sync::Arc;
//!
//! async_std::task::block_on(async {
//!     let max_line = 1024 * 1024;
//!     let hub = Arc::new(Hub::new(Default::default(), max_line));
//!     let server = Server::bind(hub, &["tcp://127.0.0.1:1445".to_string()]).await?;
//!     server.run().await;
//!     Ok::<_, mist_frontend::Error>(())
//! });
//! ```

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use mist_frontend::listener::{bind_tcp, plan, ListenerSpec};
use mist_frontend::{serve, Error, Hub};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The listener schemes this frontend serves.
pub const SCHEMES: [&str; 1] = ["tcp"];

/// How long to pause accepting after an accept error such as running out of
/// file descriptors, instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Listeners bound and ready to accept.
pub struct Server {
    hub: Arc<Hub>,
    listeners: Vec<(ListenerSpec, TcpListener)>,
}

impl Server {
    /// Binds every listener of a supported scheme; others are skipped with a
    /// logged error. Fails if a listener cannot be bound or none is left.
    pub async fn bind(hub: Arc<Hub>, uris: &[String]) -> Result<Server, Error> {
        let mut listeners = Vec::new();
        for spec in plan(uris, &SCHEMES)? {
            let listener = TcpListener::from(bind_tcp(&spec)?);
            let bound = ListenerSpec {
                address: local_addr(&listener),
                ..spec
            };
            log::info!("listening on {bound}");
            listeners.push((bound, listener));
        }
        if listeners.is_empty() {
            return Err(Error::NoListeners);
        }
        Ok(Server { hub, listeners })
    }

    /// The listeners as bound (port 0 replaced by the port the system chose).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        self.listeners
            .iter()
            .map(|(spec, _)| spec.clone())
            .collect()
    }

    /// Accepts connections on every listener, forever.
    pub async fn run(self) {
        let mut loops = Vec::new();
        for (spec, listener) in self.listeners {
            loops.push(task::spawn(accept_loop(self.hub.clone(), spec, listener)));
        }
        for accept in loops {
            accept.await;
        }
    }
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default()
}

async fn accept_loop(hub: Arc<Hub>, spec: ListenerSpec, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                task::spawn(connection(hub.clone(), stream, peer));
            }
            Err(e) => {
                log::error!("accepting on {spec} failed: {e}; retrying shortly");
                task::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn connection(hub: Arc<Hub>, stream: TcpStream, peer: SocketAddr) {
    // Writes are already coalesced; Nagle would only add latency.
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
    }
    log::debug!("{peer} connected over tcp");
    match serve(&hub, &stream, &stream).await {
        Ok(()) => log::debug!("{peer} disconnected"),
        Err(e) if is_disconnect(&e) => log::debug!("{peer} disconnected: {e}"),
        Err(e) => log::warn!("{peer}: connection failed: {e}"),
    }
}

/// Errors that only mean the peer went away.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
