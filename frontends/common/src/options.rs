//! Settings of the HTTP listener that do not belong to the engine.

use std::time::Duration;

/// How the HTTP endpoints treat browsers on other origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Origins allowed by CORS; `*` allows any. Web pages are usually served
    /// from another origin than the broker, so the default is `*`.
    pub allowed_origins: Vec<String>,
    /// How often an idle SSE stream gets a keepalive comment, which is also
    /// how soon a client that left is noticed and forgotten.
    pub sse_keepalive: Duration,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            allowed_origins: vec!["*".to_string()],
            sse_keepalive: Duration::from_secs(15),
        }
    }
}
