//! async-std as the server's [`Runtime`] (its executor, timers and
//! sockets), and the HTTP listener on it: tide carries every request to the shared
//! [`HttpService`], which answers it the same way on every runtime. The
//! sockets are accepted, bounded and parsed by the shared accept loop, which
//! hands each request to [`app`].

use async_std::task;
use mist_frontend::{HttpService, Runtime};
use std::future::Future;
use std::time::Duration;

/// async-std's executor and timers.
#[derive(Clone, Copy)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Listener = async_std::net::TcpListener;
    type Stream = async_std::net::TcpStream;

    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        task::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        task::sleep(duration)
    }

    fn listener(&self, listener: std::net::TcpListener) -> std::io::Result<Self::Listener> {
        Ok(async_std::net::TcpListener::from(listener))
    }

    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, std::net::SocketAddr)>> + Send {
        crate::accept(listener)
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
