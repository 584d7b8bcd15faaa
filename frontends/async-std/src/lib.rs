//! The async-std frontend: binds listeners, accepts connections and spawns one
//! task per connection. TCP and WebSocket clients run the shared
//! [`mist_frontend::serve_accepted`]; the HTTP listener is a tide app
//! ([`http`]). Nothing here interprets a command.
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
use mist_frontend::{serve_accepted, Error, Hub, ListenerOptions, Pinger, Task, Transport};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

/// The listener schemes this frontend serves.
pub const SCHEMES: [&str; 3] = ["tcp", "ws", "http"];

/// How long to pause accepting after an accept error such as running out of
/// file descriptors, instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
        let bound = bind_all(&hub, uris, &SCHEMES, custom, options.keepalive)?;
        hub.set_spawner(|task| {
            task::spawn(task);
        });
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

    /// Accepts connections on every listener until [`Hub::shut_down`]; then
    /// waits up to `grace` for the open connections to flush and close.
    pub async fn run(self, grace: Duration) {
        let mut loops = Vec::new();
        let pinger = self.http.ws_keepalive.map(|every| Pinger {
            runtime: AsyncStd,
            every,
        });
        for (spec, listener) in self.listeners {
            let hub = self.hub.clone();
            let accepting: Pin<Box<dyn Future<Output = ()> + Send>> = match spec.scheme.as_str() {
                "http" => Box::pin(http::serve(hub.clone(), self.http.clone(), spec, listener)),
                "ws" => Box::pin(accept_loop(
                    hub.clone(),
                    Transport::WebSocket,
                    spec,
                    listener,
                    pinger.clone(),
                )),
                _ => Box::pin(accept_loop(
                    hub.clone(),
                    Transport::Lines,
                    spec,
                    listener,
                    None,
                )),
            };
            loops.push(task::spawn(async move {
                select(accepting, pin!(hub.stopping())).await;
            }));
        }
        for (_, accepting) in self.custom {
            let hub = self.hub.clone();
            loops.push(task::spawn(async move {
                select(accepting, pin!(hub.stopping())).await;
            }));
        }
        for accepting in loops {
            accepting.await;
        }
        if !self.hub.drained(grace, task::sleep).await {
            log::warn!("shutdown grace period over: closing the connections still open");
        }
    }
}

async fn accept_loop(
    hub: Arc<Hub>,
    transport: Transport,
    spec: ListenerSpec,
    listener: std::net::TcpListener,
    pinger: Option<Pinger<AsyncStd>>,
) {
    let listener = TcpListener::from(listener);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                nodelay(&stream);
                task::spawn(serve_accepted(
                    hub.clone(),
                    transport,
                    stream,
                    peer,
                    pinger.clone(),
                ));
            }
            Err(e) => {
                log::error!("accepting on {spec} failed: {e}; retrying shortly");
                task::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Writes are already coalesced; Nagle would only add latency.
fn nodelay(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY: {e}");
    }
}
