//! Listener URIs: `scheme://host:port`, as the original mist takes them.

use crate::hub::Task;
use crate::{Error, Hub, ListenerOptions};
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Unanswered keepalive probes before the kernel gives up on a peer.
const KEEPALIVE_PROBES: u32 = 3;

/// Connections the kernel queues for a listener before it refuses more. The
/// default of 128 overflows when many clients connect at once, and a refused
/// SYN costs the client a one-second retransmit.
const ACCEPT_BACKLOG: i32 = 1024;

/// One listener a server was asked to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// `tcp`, `http`, `ws`, their TLS forms `tls`, `https`, `wss`, or a
    /// custom scheme.
    pub scheme: String,
    /// `host:port` to bind, e.g. `127.0.0.1:1445` or `[::1]:0`.
    pub address: String,
}

impl fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.address)
    }
}

/// The schemes whose address is `host:port` on the network.
const NETWORK_SCHEMES: [&str; 6] = ["tcp", "http", "ws", "tls", "https", "wss"];

/// The schemes served over TLS.
pub const TLS_SCHEMES: [&str; 3] = ["tls", "https", "wss"];

/// The listeners the original mist starts when given none.
pub const DEFAULT_LISTENERS: [&str; 3] = [
    "tcp://127.0.0.1:1445",
    "http://127.0.0.1:8080",
    "ws://127.0.0.1:8888",
];

impl ListenerSpec {
    /// The same listener with the address it actually bound (port 0 resolved).
    pub fn bound_to(&self, listener: &TcpListener) -> ListenerSpec {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| self.address.clone());
        ListenerSpec {
            scheme: self.scheme.clone(),
            address,
        }
    }

    /// Parses `scheme://host:port` (a trailing `/` is allowed); a custom
    /// scheme's address may be anything, such as a socket path.
    ///
    /// ```
    /// use mist_frontend::listener::ListenerSpec;
    ///
    /// let spec = ListenerSpec::parse("tcp://127.0.0.1:1445").unwrap();
    /// assert_eq!((spec.scheme.as_str(), spec.address.as_str()), ("tcp", "127.0.0.1:1445"));
    /// assert!(ListenerSpec::parse("tcp://127.0.0.1").is_err(), "a port is required");
    /// ```
    pub fn parse(uri: &str) -> Result<ListenerSpec, Error> {
        let invalid = |reason: &str| Error::InvalidListener {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| invalid("expected scheme://host:port, e.g. tcp://127.0.0.1:1445"))?;
        let address = rest.strip_suffix('/').unwrap_or(rest);
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(invalid("the scheme must be a word such as tcp, http or ws"));
        }
        let scheme = scheme.to_ascii_lowercase();
        if !NETWORK_SCHEMES.contains(&scheme.as_str()) {
            // A custom scheme's address is its own business (a socket path, say).
            if address.is_empty() {
                return Err(invalid("an address is required after the scheme"));
            }
            return Ok(ListenerSpec {
                scheme,
                address: rest.to_string(),
            });
        }
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid("a port is required, e.g. tcp://127.0.0.1:1445"))?;
        if host.is_empty() || address.contains('/') {
            return Err(invalid("expected host:port after the scheme"));
        }
        port.parse::<u16>()
            .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
        Ok(ListenerSpec {
            scheme,
            address: address.to_string(),
        })
    }
}

/// Binds a non-blocking TCP listener for a runtime to wrap.
///
/// `SO_REUSEADDR` lets a restarted server bind while old connections linger
/// in TIME_WAIT; it does not let two servers share a port. `TCP_NODELAY` and
/// the keepalive settings are set on the listener, and accepted connections
/// inherit them: writes are already coalesced, so Nagle would only add
/// latency, and keepalive closes peers that stop answering after
/// `keepalive` plus three probes a third of it apart.
pub fn bind_tcp(spec: &ListenerSpec, keepalive: Option<Duration>) -> Result<TcpListener, Error> {
    let bind_error = |source: io::Error| Error::Bind {
        uri: spec.to_string(),
        source,
    };
    let address = spec
        .address
        .to_socket_addrs()
        .map_err(bind_error)?
        .next()
        .ok_or_else(|| {
            bind_error(io::Error::new(
                io::ErrorKind::NotFound,
                "the host has no address",
            ))
        })?;
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(bind_error)?;
    socket.set_reuse_address(true).map_err(bind_error)?;
    socket.set_tcp_nodelay(true).map_err(bind_error)?;
    if let Some(idle) = keepalive {
        let interval = (idle / 3).max(Duration::from_secs(1));
        let probes = TcpKeepalive::new()
            .with_time(idle)
            .with_interval(interval)
            .with_retries(KEEPALIVE_PROBES);
        socket.set_tcp_keepalive(&probes).map_err(bind_error)?;
    }
    socket.bind(&address.into()).map_err(bind_error)?;
    socket.listen(ACCEPT_BACKLOG).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    Ok(socket.into())
}

/// A listener of the embedder's own, for a scheme of its own: given the hub
/// and the listener's URI, it binds (or fails with a clear error) and returns
/// the task that accepts clients, typically calling [`crate::serve`] for each
/// on the runtime it was written for.
pub type CustomListener = Arc<dyn Fn(Arc<Hub>, ListenerSpec) -> Result<Task, Error> + Send + Sync>;

/// Custom listeners by scheme, for a runtime frontend's `bind_with`; see
/// `examples/custom_listener.rs` for one that serves a Unix socket.
///
/// ```
/// use mist_frontend::listener::CustomListeners;
///
/// let mut custom = CustomListeners::default();
/// custom.register("nowhere", |_hub, _spec| Ok(Box::pin(async {})));
/// ```
#[derive(Clone, Default)]
pub struct CustomListeners {
    by_scheme: HashMap<String, CustomListener>,
}

impl CustomListeners {
    /// Serves URIs of `scheme` with `listener`.
    pub fn register(
        &mut self,
        scheme: &str,
        listener: impl Fn(Arc<Hub>, ListenerSpec) -> Result<Task, Error> + Send + Sync + 'static,
    ) {
        self.by_scheme
            .insert(scheme.to_ascii_lowercase(), Arc::new(listener));
    }
}

/// What a runtime frontend starts: its own TCP listeners, and the tasks of
/// custom ones.
pub struct Bound {
    /// The runtime's own listeners, bound, for it to accept on.
    pub tcp: Vec<(ListenerSpec, TcpListener)>,
    /// Custom listeners' accept tasks, for it to run.
    pub custom: Vec<(ListenerSpec, Task)>,
}

/// Binds every listener of a scheme the runtime serves (`builtin`) or a
/// custom one, in order, logging each; others are skipped with a logged
/// error. Fails if a listener cannot be bound or if none is left.
pub fn bind_all(
    hub: &Arc<Hub>,
    uris: &[String],
    builtin: &[&str],
    custom: &CustomListeners,
    options: &ListenerOptions,
) -> Result<Bound, Error> {
    let mut supported: Vec<&str> = builtin.to_vec();
    supported.extend(custom.by_scheme.keys().map(String::as_str));
    let mut bound = Bound {
        tcp: Vec::new(),
        custom: Vec::new(),
    };
    check_tls(uris, options)?;
    for spec in plan(uris, &supported)? {
        if let Some(listener) = custom.by_scheme.get(&spec.scheme) {
            let task = listener(hub.clone(), spec.clone())?;
            log::info!("listening on {spec}");
            bound.custom.push((spec, task));
            continue;
        }
        let listener = bind_tcp(&spec, options.keepalive)?;
        let spec = spec.bound_to(&listener);
        log::info!("listening on {spec}");
        bound.tcp.push((spec, listener));
    }
    if bound.tcp.is_empty() && bound.custom.is_empty() {
        return Err(Error::NoListeners);
    }
    Ok(bound)
}

/// Refuses a TLS listener among `uris` when `options` have no
/// certificate, before anything is bound (malformed URIs are left to
/// [`plan`]).
pub fn check_tls(uris: &[String], options: &ListenerOptions) -> Result<(), Error> {
    if options.tls.is_some() {
        return Ok(());
    }
    let tls = uris
        .iter()
        .filter_map(|uri| ListenerSpec::parse(uri).ok())
        .find(|spec| TLS_SCHEMES.contains(&spec.scheme.as_str()));
    match tls {
        Some(spec) => Err(Error::InvalidListener {
            uri: spec.to_string(),
            reason: "a TLS listener needs a certificate: give --tls-cert and --tls-key".into(),
        }),
        None => Ok(()),
    }
}

/// Splits command-line values that may each hold several comma-separated URIs.
pub fn split_uris<S: AsRef<str>>(values: &[S]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.as_ref().split(','))
        .map(|uri| uri.trim().trim_matches('"').to_string())
        .filter(|uri| !uri.is_empty())
        .collect()
}

/// Parses every URI and keeps those whose scheme is in `supported`.
///
/// As in the original mist, a listener of a scheme this server does not
/// support is skipped with a logged error. A malformed URI is an error.
pub fn plan(uris: &[String], supported: &[&str]) -> Result<Vec<ListenerSpec>, Error> {
    let mut specs = Vec::new();
    for uri in uris {
        let spec = ListenerSpec::parse(uri)?;
        if supported.contains(&spec.scheme.as_str()) {
            specs.push(spec);
        } else {
            log::error!(
                "skipping listener {spec}: the {} scheme is not supported by this server (supported: {})",
                spec.scheme,
                supported.join(", ")
            );
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_forms() {
        let spec = ListenerSpec::parse("tcp://127.0.0.1:1445").unwrap();
        assert_eq!(
            (spec.scheme.as_str(), spec.address.as_str()),
            ("tcp", "127.0.0.1:1445")
        );
        assert_eq!(
            ListenerSpec::parse("WS://[::1]:0/").unwrap().to_string(),
            "ws://[::1]:0"
        );
    }

    #[test]
    fn malformed_uris_say_what_is_wrong() {
        for (uri, reason) in [
            ("127.0.0.1:1445", "expected scheme://host:port"),
            ("tcp://127.0.0.1", "a port is required"),
            ("tcp://127.0.0.1:99999", "the port must be a number"),
            ("tcp://:1445", "expected host:port"),
        ] {
            let err = ListenerSpec::parse(uri).unwrap_err().to_string();
            assert!(err.contains(reason), "{uri}: {err}");
        }
    }

    #[test]
    fn comma_separated_and_repeated_values_combine() {
        let uris = split_uris(&["tcp://a:1,http://b:2", " ws://c:3 "]);
        assert_eq!(uris, ["tcp://a:1", "http://b:2", "ws://c:3"]);
        let plan = plan(&uris, &["tcp"]).unwrap();
        assert_eq!(plan.len(), 1, "unsupported schemes are skipped");
    }
}
