//! A server's start-up, written once for every runtime: its listeners
//! bound, an accept loop on each (with backoff on accept errors), the
//! clock, and a graceful stop that lets open connections flush. A runtime
//! frontend supplies only its [`Runtime`] and how HTTP requests reach the
//! [`HttpService`].

use crate::listener::{bind_all, CustomListeners, ListenerSpec};
use crate::{Error, HttpService, Hub, ListenerOptions, Listening, Runtime, Task};
use futures::future::{select, Future};
use http_types::{Request as HttpRequest, Response};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// Listeners bound and ready to accept.
pub struct Bound {
    hub: Arc<Hub>,
    options: ListenerOptions,
    listeners: Vec<(ListenerSpec, std::net::TcpListener)>,
    custom: Vec<(ListenerSpec, Task)>,
}

impl Bound {
    /// Binds every listener of a scheme in `schemes` or `custom`; others
    /// are skipped with a logged error. Fails if a listener cannot be
    /// bound, a TLS one has no certificate, or none is left.
    pub fn bind(
        hub: Arc<Hub>,
        uris: &[String],
        schemes: &[&str],
        options: ListenerOptions,
        custom: &CustomListeners,
    ) -> Result<Bound, Error> {
        let bound = bind_all(&hub, uris, schemes, custom, &options)?;
        Ok(Bound {
            hub,
            options,
            listeners: bound.tcp,
            custom: bound.custom,
        })
    }

    /// The listeners as bound (port 0 replaced by the port the system
    /// chose).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        let tcp = self.listeners.iter().map(|(spec, _)| spec);
        tcp.chain(self.custom.iter().map(|(spec, _)| spec))
            .cloned()
            .collect()
    }

    /// Accepts connections on every listener, in this future, until
    /// [`Hub::shut_down`]; then waits up to `grace` for the open
    /// connections to flush and close. `carrier` turns the HTTP service
    /// into what answers one request (tide, or the service itself).
    pub async fn run<R, H, HF>(
        self,
        runtime: R,
        carrier: impl FnOnce(HttpService<R>) -> H,
        grace: Duration,
    ) where
        R: Runtime,
        H: Fn(HttpRequest) -> HF + Clone + Send + Sync + 'static,
        HF: Future<Output = http_types::Result<Response>> + Send + 'static,
    {
        self.hub.set_runtime(runtime.clone());
        let listening = Listening {
            hub: self.hub.clone(),
            options: Arc::new(self.options),
            runtime: runtime.clone(),
        };
        runtime.spawn(self.hub.clone().keep_time(runtime.clone()));
        let respond = carrier(HttpService::new(
            self.hub.clone(),
            listening.options.clone(),
            runtime.clone(),
        ));
        let mut loops: Vec<Task> = Vec::new();
        for (spec, listener) in self.listeners {
            let listener = match runtime.listener(listener) {
                Ok(listener) => Arc::new(listener),
                Err(e) => {
                    log::error!("cannot register {spec} with the runtime: {e}");
                    continue;
                }
            };
            let accept = move || {
                let listener = listener.clone();
                async move { R::accept(&listener).await }
            };
            let accepting = listening.clone().accept_loop(spec, accept, respond.clone());
            loops.push(Box::pin(accepting));
        }
        loops.extend(self.custom.into_iter().map(|(_, accepting)| accepting));
        let accepting = futures::future::join_all(loops);
        select(pin!(accepting), pin!(self.hub.stopping())).await;
        if !self.hub.drained(grace).await {
            log::warn!("shutdown grace period over: closing the connections still open");
        }
    }
}
