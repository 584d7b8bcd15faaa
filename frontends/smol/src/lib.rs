//! The smol frontend: binds listeners, accepts connections and runs one task
//! per connection on a multi-threaded smol executor, with the shared
//! [`Listening::accept_loop`]; HTTP requests are parsed by async-h1 and
//! answered by the shared [`HttpService`]. Nothing here interprets a
//! command, and nothing here depends on async-std.
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

use mist_frontend::listener::{bind_all, CustomListeners, ListenerSpec};
use mist_frontend::{Error, HttpService, Hub, ListenerOptions, Listening, Runtime, Task};
use smol::net::TcpListener;
use smol::{future, Executor, Timer};
use std::future::Future;
use std::sync::Arc;
use std::thread;
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
        let bound = bind_all(&hub, uris, &SCHEMES, custom, &options)?;
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
        let runtime = Smol(executor.clone());
        self.hub.set_runtime(runtime.clone());
        let listening = Listening {
            hub: self.hub.clone(),
            options: Arc::new(self.http),
            runtime: runtime.clone(),
        };
        runtime.spawn(self.hub.clone().keep_time(runtime.clone()));
        let service = HttpService::new(self.hub.clone(), listening.options.clone(), runtime);
        let respond = move |request| {
            let service = service.clone();
            async move { Ok(service.respond(request).await) }
        };
        let mut loops: Vec<Task> = Vec::new();
        for (spec, listener) in self.listeners {
            let listener = match TcpListener::try_from(listener) {
                Ok(listener) => listener,
                Err(e) => {
                    log::error!("cannot register {spec} with the reactor: {e}");
                    continue;
                }
            };
            let accept = move || {
                let listener = listener.clone();
                async move {
                    let (stream, peer) = listener.accept().await?;
                    // Writes are already coalesced; Nagle would only add latency.
                    if let Err(e) = stream.set_nodelay(true) {
                        log::debug!("{peer}: cannot set TCP_NODELAY: {e}");
                    }
                    Ok((stream, peer))
                }
            };
            let accepting = listening.clone().accept_loop(spec, accept, respond.clone());
            loops.push(Box::pin(accepting));
        }
        loops.extend(self.custom.into_iter().map(|(_, accepting)| accepting));
        let hub = self.hub.clone();
        // The accept loops run here, on a thread of their own, however busy
        // the executor's threads are with connections.
        future::block_on(async {
            let accepting = async {
                futures::future::join_all(loops).await;
            };
            future::or(accepting, hub.stopping()).await;
            if !hub.drained(grace).await {
                log::warn!("shutdown grace period over: closing the connections still open");
            }
        });
    }
}

/// The server's smol executor, and smol's timers.
#[derive(Clone)]
pub struct Smol(Arc<Executor<'static>>);

impl Runtime for Smol {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.0.spawn(task).detach();
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        let timer = Timer::after(duration);
        async move {
            timer.await;
        }
    }
}
