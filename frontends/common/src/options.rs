//! Settings of the listeners that do not belong to the engine.

use crate::guard::Limits;
use crate::tls::Tls;
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::Duration;

/// Bytes an HTTP request head or a WebSocket handshake may have; the HTTP
/// library refuses longer heads too, but only once a line is complete.
pub const MAX_HEAD: usize = 8 * 1024;

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
    /// Origins whose web pages may use the broker, besides its own (see
    /// [`crate::check_origin`]); `*` allows any. They can change while the
    /// server runs ([`Origins::set`]).
    pub allowed_origins: Origins,
    /// How often an idle SSE stream gets a keepalive comment, which is also
    /// how soon a client that left is noticed and forgotten.
    pub sse_keepalive: Duration,
    /// How long a client of a `ws://` listener may take over its handshake,
    /// and a client of a TLS listener over its TLS handshake.
    pub handshake_timeout: Duration,
    /// How long an HTTP client may take to send a request head; also how
    /// long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// How long an HTTP request body may take once its head is in.
    pub body_timeout: Duration,
    /// The certificate the `tls://`, `wss://` and `https://` listeners
    /// present; such listeners need it.
    pub tls: Option<Arc<Tls>>,
}

impl Default for ListenerOptions {
    fn default() -> ListenerOptions {
        ListenerOptions {
            keepalive: Some(Duration::from_secs(60)),
            ws_keepalive: Some(Duration::from_secs(30)),
            allowed_origins: Origins::default(),
            sse_keepalive: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// The origins a server allows, shared by its listeners and swappable
/// while it runs: requests from then on see the new list.
#[derive(Clone, Default)]
pub struct Origins(Arc<RwLock<Arc<Vec<String>>>>);

impl Origins {
    /// These origins (`*` for any).
    pub fn new(origins: Vec<String>) -> Origins {
        Origins(Arc::new(RwLock::new(Arc::new(origins))))
    }

    /// The list now.
    pub fn get(&self) -> Arc<Vec<String>> {
        self.0.read().clone()
    }

    /// Replaces the list for requests from now on.
    pub fn set(&self, origins: Vec<String>) {
        *self.0.write() = Arc::new(origins);
    }
}

impl std::fmt::Debug for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl PartialEq for Origins {
    fn eq(&self, other: &Origins) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Origins {}

impl ListenerOptions {
    /// The bounds on an HTTP listener's requests.
    pub fn http_limits(&self) -> Limits {
        Limits {
            max_head: MAX_HEAD,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
        }
    }

    /// The bounds on a `ws://` listener's handshakes.
    pub fn handshake_limits(&self) -> Limits {
        Limits {
            max_head: MAX_HEAD,
            header_timeout: self.handshake_timeout,
            body_timeout: self.handshake_timeout,
        }
    }
}
