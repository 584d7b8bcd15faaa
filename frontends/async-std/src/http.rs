//! The HTTP listener on async-std: tide carries every request to the shared
//! [`HttpService`], which answers it the same way on every runtime.

use async_std::task;
use mist_frontend::listener::ListenerSpec;
use mist_frontend::{HttpService, Hub, ListenerOptions, Runtime};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// async-std's executor and timers.
#[derive(Clone, Copy)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        task::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        task::sleep(duration)
    }
}

/// Serves the HTTP endpoints on `listener` until the process ends.
pub async fn serve(
    hub: Arc<Hub>,
    options: ListenerOptions,
    spec: ListenerSpec,
    listener: std::net::TcpListener,
) {
    if let Err(e) = app(HttpService::new(hub, options, AsyncStd))
        .listen(listener)
        .await
    {
        log::error!("the HTTP listener {spec} stopped: {e}");
    }
}

/// The tide app: every path and method goes to the service.
pub fn app(service: HttpService<AsyncStd>) -> tide::Server<HttpService<AsyncStd>> {
    let mut app = tide::with_state(service);
    for path in ["/", "*"] {
        app.at(path)
            .all(|request: tide::Request<HttpService<AsyncStd>>| async move {
                let service = request.state().clone();
                let response = service.respond(request.into()).await;
                Ok(tide::Response::from(response))
            });
    }
    app
}
