//! The async-std frontend: async-std's [`mist_frontend::Runtime`] (its
//! tasks, timers and sockets) under the shared start-up
//! ([`mist_frontend::server::Bound`]: binding, accept loops, draining), and
//! its HTTP carrier: requests parsed by async-h1 and routed by a tide app
//! ([`http`]) to the shared [`mist_frontend::HttpService`]. Nothing here
//! interprets a command.
//!
//! ```no_run
//! use mist_async_std::Server;
//! use mist_frontend::{Hub, ListenerOptions};
//! use std::sync::Arc;
//!
//! async_std::task::block_on(async {
//!     let max_line = 1024 * 1024;
//!     let hub = Arc::new(Hub::new(Default::default(), max_line));
//!     let uris = ["tcp://127.0.0.1:1445".to_string(), "ws://127.0.0.1:8888".to_string()];
//!     let server = Server::bind(hub, &uris, ListenerOptions::default()).await?;
//!     server.run(std::time::Duration::from_secs(10)).await;
//!     Ok::<_, mist_frontend::Error>(())
//! });
//! ```

#![warn(missing_docs)]

pub mod http;
mod runtime;

use mist_frontend::listener::{CustomListeners, ListenerSpec};
use mist_frontend::server::Bound;
use mist_frontend::{Error, Hub, ListenerOptions};
pub use runtime::AsyncStd;
use std::sync::Arc;
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
    pub async fn bind(
        hub: Arc<Hub>,
        uris: &[String],
        options: ListenerOptions,
    ) -> Result<Server, Error> {
        Server::bind_with(hub, uris, options, &CustomListeners::default()).await
    }

    /// Like [`Server::bind`], with listeners of the embedder's own schemes.
    pub async fn bind_with(
        hub: Arc<Hub>,
        uris: &[String],
        options: ListenerOptions,
        custom: &CustomListeners,
    ) -> Result<Server, Error> {
        // Lent now, so custom listeners' tasks and stored changes can use it.
        hub.set_runtime(AsyncStd);
        let bound = Bound::bind(hub, uris, &SCHEMES, options, custom)?;
        Ok(Server { bound })
    }

    /// The listeners as bound (port 0 replaced by the port the system chose).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        self.bound.listeners()
    }

    /// Accepts connections on every listener until [`Hub::shut_down`], in
    /// this future (the connections are served on async-std's threads);
    /// then waits up to `grace` for the open connections to flush and close.
    pub async fn run(self, grace: Duration) {
        let carrier = |service| {
            let app = http::app(service);
            move |request| {
                let app = app.clone();
                async move { app.respond(request).await }
            }
        };
        self.bound.run(AsyncStd, carrier, grace).await;
    }
}
