//! The HTTP carrier on async-std: tide carries every request to the shared
//! [`HttpService`], which answers it the same way on every runtime. The
//! sockets are accepted, bounded and parsed by the shared accept loop, which
//! hands each request to [`app`].

use crate::AsyncStd;
use mist_frontend::HttpService;

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
