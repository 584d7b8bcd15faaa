//! The smol frontend: smol's [`mist_frontend::Runtime`] (a multi-threaded
//! executor, its timers and sockets) under the shared start-up
//! ([`mist_frontend::server::Bound`]: binding, accept loops, draining), and
//! its HTTP carrier: requests parsed by async-h1 and answered by the shared
//! [`mist_frontend::HttpService`]. Nothing here interprets a command, and
//! nothing here depends on async-std.
//!
//! ```no_run
//! use mist_frontend::{ListenerOptions, Hub};
//! use mist_smol::Server;
//! use std::sync::Arc;
//!
//! let hub = Arc::new(Hub::new(Default::default(), 1024 * 1024));
//! let uris = ["tcp://127.0.0.1:1445".to_string(), "http://127.0.0.1:8080".to_string()];
//! let server = Server::bind(hub, &uris, ListenerOptions::default())?;
//! server.run(std::time::Duration::from_secs(10));
//! # Ok::<_, mist_frontend::Error>(())
//! ```

#![warn(missing_docs)]

mod runtime;

pub use runtime::Smol;

use mist_frontend::listener::{CustomListeners, ListenerSpec};
use mist_frontend::server::Bound;
use mist_frontend::{Error, Hub, ListenerOptions};
use smol::{future, Executor};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// The listener schemes this frontend serves.
pub const SCHEMES: [&str; 6] = ["tcp", "ws", "http", "tls", "wss", "https"];

/// Listeners bound and ready to accept.
pub struct Server {
    bound: Bound,
}

impl Server {
    /// Binds every listener of a supported scheme; others are skipped with a
    /// logged error. Fails if a listener cannot be bound or none is left.
    pub fn bind(hub: Arc<Hub>, uris: &[String], options: ListenerOptions) -> Result<Server, Error> {
        Server::bind_with(hub, uris, options, &CustomListeners::default())
    }

    /// Like [`Server::bind`], with listeners of the embedder's own schemes.
    pub fn bind_with(
        hub: Arc<Hub>,
        uris: &[String],
        options: ListenerOptions,
        custom: &CustomListeners,
    ) -> Result<Server, Error> {
        let bound = Bound::bind(hub, uris, &SCHEMES, options, custom)?;
        Ok(Server { bound })
    }

    /// The listeners as bound (port 0 replaced by the port the system chose).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        self.bound.listeners()
    }

    /// Serves connections on an executor with one thread per core, and
    /// accepts them on the calling thread, so that accepting never waits
    /// behind connection tasks, until [`Hub::shut_down`]; then waits up to
    /// `grace` for the open connections to flush and close.
    pub fn run(self, grace: Duration) {
        let executor = Arc::new(Executor::new());
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..cores {
            let executor = executor.clone();
            let spawned = thread::Builder::new()
                .name(format!("mist-smol-{i}"))
                .spawn(move || future::block_on(executor.run(future::pending::<()>())));
            if let Err(e) = spawned {
                log::warn!("running with fewer executor threads: {e}");
            }
        }
        // async-h1 carries the requests straight to the service.
        let carrier = |service: mist_frontend::HttpService<Smol>| {
            move |request| {
                let service = service.clone();
                async move { Ok(service.respond(request).await) }
            }
        };
        future::block_on(self.bound.run(Smol::new(executor), carrier, grace));
    }
}
