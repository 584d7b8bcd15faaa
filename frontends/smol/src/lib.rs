//! The smol frontend: binds listeners, accepts connections and runs one task
//! per connection on a multi-threaded smol executor. It serves `tcp://` and
//! `ws://`; the HTTP listener is built on tide, which needs async-std, so this
//! frontend skips `http://` listeners with a logged error. Nothing here
//! interprets a command: connections run the shared
//! [`mist_frontend::serve_accepted`].
//!
//! ```no_run
//! use mist_frontend::Hub;
//! use mist_smol::Server;
//! use std::sync::Arc;
//!
//! let hub = Arc::new(Hub::new(Default::default(), 1024 * 1024));
//! let server = Server::bind(hub, &["tcp://127.0.0.1:1445".to_string()])?;
//! server.run();
//! # Ok::<_, mist_frontend::Error>(())
//! ```

use mist_frontend::listener::{bind_all, ListenerSpec};
use mist_frontend::{serve_accepted, Error, Hub, Transport};
use smol::net::TcpListener;
use smol::{future, Executor, Timer};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The listener schemes this frontend serves.
pub const SCHEMES: [&str; 2] = ["tcp", "ws"];

/// How long to pause accepting after an accept error such as running out of
/// file descriptors, instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Listeners bound and ready to accept.
pub struct Server {
    hub: Arc<Hub>,
    listeners: Vec<(ListenerSpec, std::net::TcpListener)>,
}

impl Server {
    /// Binds every listener of a supported scheme; others are skipped with a
    /// logged error. Fails if a listener cannot be bound or none is left.
    pub fn bind(hub: Arc<Hub>, uris: &[String]) -> Result<Server, Error> {
        let listeners = bind_all(uris, &SCHEMES)?;
        Ok(Server { hub, listeners })
    }

    /// The listeners as bound (port 0 replaced by the port the system chose).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        self.listeners
            .iter()
            .map(|(spec, _)| spec.clone())
            .collect()
    }

    /// Accepts connections forever on an executor with one thread per core.
    pub fn run(self) {
        let executor = Arc::new(Executor::new());
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        for i in 1..cores {
            let executor = executor.clone();
            let spawned = thread::Builder::new()
                .name(format!("mist-smol-{i}"))
                .spawn(move || future::block_on(executor.run(future::pending::<()>())));
            if let Err(e) = spawned {
                log::warn!("running with fewer executor threads: {e}");
            }
        }
        let mut loops = Vec::new();
        for (spec, listener) in self.listeners {
            let transport = match spec.scheme.as_str() {
                "ws" => Transport::WebSocket,
                _ => Transport::Lines,
            };
            let accepting = accept_loop(
                executor.clone(),
                self.hub.clone(),
                transport,
                spec,
                listener,
            );
            loops.push(executor.spawn(accepting));
        }
        future::block_on(executor.run(async {
            for accept in loops {
                accept.await;
            }
        }));
    }
}

async fn accept_loop(
    executor: Arc<Executor<'static>>,
    hub: Arc<Hub>,
    transport: Transport,
    spec: ListenerSpec,
    listener: std::net::TcpListener,
) {
    let listener = match TcpListener::try_from(listener) {
        Ok(listener) => listener,
        Err(e) => return log::error!("cannot register {spec} with the reactor: {e}"),
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Writes are already coalesced; Nagle would only add latency.
                if let Err(e) = stream.set_nodelay(true) {
                    log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
                }
                executor
                    .spawn(serve_accepted(hub.clone(), transport, stream, peer))
                    .detach();
            }
            Err(e) => {
                log::error!("accepting on {spec} failed: {e}; retrying shortly");
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
}
