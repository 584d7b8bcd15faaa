//! The async-std frontend: binds listeners, accepts connections and spawns one
//! task per connection with the shared [`Listening::accept_loop`]; HTTP
//! requests are parsed by async-h1 and routed by a tide app ([`http`]) to
//! the shared [`HttpService`]. Nothing here interprets a command.
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

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures::future::select;
use http::AsyncStd;
use mist_frontend::listener::{bind_all, CustomListeners, ListenerSpec};
use mist_frontend::{Error, HttpService, Hub, ListenerOptions, Listening, Task};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// The listener schemes this frontend serves.
pub const SCHEMES: [&str; 6] = ["tcp", "ws", "http", "tls", "wss", "https"];

/// Listeners bound and ready to accept.
pub struct Server {
    hub: Arc<Hub>,
    http: ListenerOptions,
    listeners: Vec<(ListenerSpec, std::net::TcpListener)>,
    custom: Vec<(ListenerSpec, Task)>,
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
        let bound = bind_all(&hub, uris, &SCHEMES, custom, &options)?;
        hub.set_runtime(AsyncStd);
        Ok(Server {
            hub,
            http: options,
            listeners: bound.tcp,
            custom: bound.custom,
        })
    }

    /// The listeners as bound (port 0 replaced by the port the system chose).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        let tcp = self.listeners.iter().map(|(spec, _)| spec);
        tcp.chain(self.custom.iter().map(|(spec, _)| spec))
            .cloned()
            .collect()
    }

    /// Accepts connections on every listener until [`Hub::shut_down`], in
    /// this future (the connections are served on async-std's threads);
    /// then waits up to `grace` for the open connections to flush and close.
    pub async fn run(self, grace: Duration) {
        let listening = Listening {
            hub: self.hub.clone(),
            options: Arc::new(self.http),
            runtime: AsyncStd,
        };
        task::spawn(self.hub.clone().keep_time(AsyncStd));
        let app = http::app(HttpService::new(
            self.hub.clone(),
            listening.options.clone(),
            AsyncStd,
        ));
        let respond = move |request| {
            let app = app.clone();
            async move { app.respond(request).await }
        };
        let mut loops = Vec::new();
        for (spec, listener) in self.listeners {
            let listener = Arc::new(TcpListener::from(listener));
            let accepting = listening.clone().accept_loop(
                spec,
                move || {
                    let listener = listener.clone();
                    async move {
                        let (stream, peer) = listener.accept().await?;
                        nodelay(&stream);
                        Ok((stream, peer))
                    }
                },
                respond.clone(),
            );
            loops.push(Box::pin(accepting) as Task);
        }
        loops.extend(self.custom.into_iter().map(|(_, accepting)| accepting));
        // The accept loops run in this future, on the thread that awaits
        // `run`, however busy the runtime's threads are with connections.
        select(futures::future::join_all(loops), pin!(self.hub.stopping())).await;
        if !self.hub.drained(grace).await {
            log::warn!("shutdown grace period over: closing the connections still open");
        }
    }
}

/// Writes are already coalesced; Nagle would only add latency.
fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY: {e}");
    }
}
