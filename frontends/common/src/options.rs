//! Settings of the listeners that do not belong to the engine.

use std::time::Duration;

/// How the listeners treat their clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerOptions {
    /// TCP keepalive for every accepted connection: after this long without
    /// traffic the kernel probes the peer, and a peer that stops answering
    /// (a host gone, a network cut) is closed, so its outbox is freed. `None`
    /// turns keepalive off.
    pub keepalive: Option<Duration>,
    /// How often a WebSocket client is pinged; one that sends nothing, not
    /// even the pong, for twice that long is closed. `None` turns it off.
    pub ws_keepalive: Option<Duration>,
    /// Origins allowed by CORS; `*` allows any. Web pages are usually served
    /// from another origin than the broker, so the default is `*`.
    pub allowed_origins: Vec<String>,
    /// How often an idle SSE stream gets a keepalive comment, which is also
    /// how soon a client that left is noticed and forgotten.
    pub sse_keepalive: Duration,
}

impl Default for ListenerOptions {
    fn default() -> ListenerOptions {
        ListenerOptions {
            keepalive: Some(Duration::from_secs(60)),
            ws_keepalive: Some(Duration::from_secs(30)),
            allowed_origins: vec!["*".to_string()],
            sse_keepalive: Duration::from_secs(15),
        }
    }
}
