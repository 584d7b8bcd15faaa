//! Where the other nodes meet: a Redis URL, as given to `--replicator`.
//!
//! - `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME]` (port 6379,
//!   db 0; a USER is a Redis 6 ACL user)
//! - `redis+unix:///PATH[?db=DB&password=PASSWORD&prefix=NAME]`
//! - `redis-cluster://HOST:PORT[,HOST:PORT...][?prefix=NAME]`
//!
//! Every form also takes `routing=all` (the default: every node hears
//! every message) or `routing=tag` (a node hears only messages carrying a
//! tag its subscriptions are anchored on; see the crate docs).
//!
//! Nodes that give the same Redis, the same prefix (default `mist`) and
//! the same routing form one broker. A password never appears in what this
//! module prints.

use std::fmt;
use std::path::PathBuf;

/// The prefix of every channel, unless the URL names another.
pub const DEFAULT_PREFIX: &str = "mist";

/// A parsed `--replicator` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Where Redis listens.
    pub endpoint: Endpoint,
    /// Sent with `AUTH` after connecting.
    pub password: Option<String>,
    /// The Redis 6 ACL user to `AUTH` as (the default user if none).
    pub username: Option<String>,
    /// Selected after connecting (standalone Redis only).
    pub db: u32,
    /// Names this broker's channels.
    pub prefix: String,
    /// Which messages each node hears.
    pub routing: Routing,
}

/// Which messages each node of a broker hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Every message, on one channel: simplest, and fine for a few nodes.
    #[default]
    All,
    /// Only messages carrying a tag one of its subscriptions is anchored
    /// on: each message is published once per tag.
    Tag,
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A standalone Redis over TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A standalone Redis over a Unix socket.
    Unix(PathBuf),
    /// The seed nodes of a Redis Cluster.
    Cluster(Vec<(String, u16)>),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("db", &self.db)
            .field("prefix", &self.prefix)
            .field("routing", &self.routing)
            .finish()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Endpoint::Tcp { host, port } => write!(f, "redis://{host}:{port}/{}", self.db)?,
            Endpoint::Unix(path) => write!(f, "redis+unix://{}", path.display())?,
            Endpoint::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                write!(f, "redis-cluster://{}", nodes.join(","))?
            }
        }
        write!(f, " (prefix {}", self.prefix)?;
        match self.routing {
            Routing::All => f.write_str(")"),
            Routing::Tag => f.write_str(", routing by tag)"),
        }
    }
}

/// Why a URL was refused; never shows a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetError {}

impl TargetError {
    pub(crate) fn new(what: impl Into<String>) -> TargetError {
        TargetError(what.into())
    }
}

fn refuse(what: impl Into<String>) -> TargetError {
    TargetError(what.into())
}

impl Target {
    /// Parses a `--replicator` URL.
    ///
    /// ```
    /// use mist_replicator::{Endpoint, Target};
    ///
    /// let target = Target::parse("redis://:secret@cache:6380/2?prefix=chat").unwrap();
    /// assert_eq!(target.endpoint, Endpoint::Tcp { host: "cache".into(), port: 6380 });
    /// assert_eq!((target.db, target.prefix.as_str()), (2, "chat"));
    /// assert!(!format!("{target} {target:?}").contains("secret"));
    /// ```
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            refuse("a replicator is a URL such as redis://host:6379, redis+unix:///path/redis.sock or redis-cluster://host1:7000,host2:7001")
        })?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, query),
            None => (rest, ""),
        };
        let mut target = Target {
            endpoint: Endpoint::Unix(PathBuf::new()),
            password: None,
            username: None,
            db: 0,
            prefix: DEFAULT_PREFIX.to_string(),
            routing: Routing::All,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "prefix" if valid_prefix(value) => target.prefix = value.to_string(),
                "prefix" => {
                    return Err(refuse(format!(
                        "replicator prefix {value:?}: use 1 to 64 letters, digits, '-', '_', '.' or ':'"
                    )))
                }
                "routing" => {
                    target.routing = match value {
                        "all" => Routing::All,
                        "tag" => Routing::Tag,
                        other => {
                            return Err(refuse(format!(
                                "replicator routing {other:?}: use all (every node hears every message) or tag"
                            )))
                        }
                    }
                }
                "db" => target.db = parse_db(value)?,
                "password" => target.password = Some(value.to_string()),
                other => {
                    return Err(refuse(format!(
                        "replicator URL: unknown parameter {other:?} (known: prefix, routing, db, password)"
                    )))
                }
            }
        }
        match scheme {
            "redis" => {
                let (auth, rest) = match rest.rsplit_once('@') {
                    Some((auth, rest)) => (Some(auth), rest),
                    None => (None, rest),
                };
                if let Some(auth) = auth {
                    // `:password`, `user:password` (a Redis 6 ACL user) or
                    // a lone password.
                    let (user, password) = auth.split_once(':').unwrap_or(("", auth));
                    if !user.is_empty() {
                        target.username = Some(user.to_string());
                    }
                    if !password.is_empty() {
                        target.password = Some(password.to_string());
                    }
                }
                let (hostport, db) = match rest.split_once('/') {
                    Some((hostport, db)) => (hostport, db),
                    None => (rest, ""),
                };
                if !db.is_empty() {
                    target.db = parse_db(db)?;
                }
                let (host, port) = host_port(hostport, 6379)?;
                target.endpoint = Endpoint::Tcp { host, port };
            }
            "redis+unix" | "unix" => {
                if rest.is_empty() || !rest.starts_with('/') {
                    return Err(refuse(
                        "replicator redis+unix:// needs an absolute socket path, e.g. redis+unix:///run/redis/redis.sock",
                    ));
                }
                target.endpoint = Endpoint::Unix(PathBuf::from(rest));
            }
            "redis-cluster" => {
                let nodes = rest
                    .split(',')
                    .map(|node| host_port(node, 6379))
                    .collect::<Result<Vec<_>, _>>()?;
                if target.db != 0 {
                    return Err(refuse(
                        "replicator: a Redis Cluster has no databases; leave out db",
                    ));
                }
                target.endpoint = Endpoint::Cluster(nodes);
            }
            other => {
                return Err(refuse(format!(
                    "replicator scheme {other:?}: use redis://, redis+unix:// or redis-cluster://"
                )))
            }
        }
        Ok(target)
    }
}

fn valid_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn parse_db(db: &str) -> Result<u32, TargetError> {
    db.parse().map_err(|_| {
        refuse(format!(
            "replicator database {db:?}: a number such as 0 is needed"
        ))
    })
}

fn host_port(hostport: &str, default_port: u16) -> Result<(String, u16), TargetError> {
    let (host, port) = match hostport.rsplit_once(':') {
        // An IPv6 address in brackets, with or without a port.
        _ if hostport.starts_with('[') && hostport.ends_with(']') => (hostport, None),
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(refuse(format!(
            "replicator address {hostport:?} has no host"
        )));
    }
    let port = match port {
        Some(port) => port
            .parse()
            .map_err(|_| refuse(format!("replicator port {port:?} is not a port number")))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_the_issue_parses() {
        let t = Target::parse("redis://host:6379").unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "host".into(),
                port: 6379
            }
        );
        assert_eq!(
            (t.db, t.prefix.as_str(), t.password.as_deref()),
            (0, "mist", None)
        );
        let t = Target::parse("redis://:pw@10.0.0.1:7000/3").unwrap();
        assert_eq!((t.db, t.password.as_deref()), (3, Some("pw")));
        assert_eq!(t.username, None);
        let t = Target::parse("redis://alice:pw@host").unwrap();
        assert_eq!(
            (t.username.as_deref(), t.password.as_deref()),
            (Some("alice"), Some("pw"))
        );
        assert!(!format!("{t:?}").contains("pw"));
        let t = Target::parse("redis://localhost").unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "localhost".into(),
                port: 6379
            }
        );
        let t = Target::parse("redis://h?routing=tag").unwrap();
        assert_eq!(t.routing, Routing::Tag);
        assert!(t.to_string().ends_with("routing by tag)"), "{t}");
        assert_eq!(Target::parse("redis://h").unwrap().routing, Routing::All);
        let t = Target::parse("redis+unix:///run/redis.sock?db=1&prefix=a.b").unwrap();
        assert_eq!(t.endpoint, Endpoint::Unix("/run/redis.sock".into()));
        assert_eq!((t.db, t.prefix.as_str()), (1, "a.b"));
        let t = Target::parse("redis-cluster://h1:7000,h2:7001").unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Cluster(vec![("h1".into(), 7000), ("h2".into(), 7001)])
        );
        let t = Target::parse("redis://[::1]:6380").unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Tcp {
                host: "::1".into(),
                port: 6380
            }
        );
    }

    #[test]
    fn a_bad_url_names_its_problem_and_never_its_password() {
        for (url, says) in [
            ("host:6379", "a replicator is a URL"),
            ("http://host", "scheme \"http\""),
            ("redis://host:port", "port \"port\""),
            ("redis://host/x", "database \"x\""),
            ("redis://:secret@host/x", "database"),
            ("redis://host?prefix=", "prefix"),
            ("redis://host?prefix=a%20b", "prefix"),
            ("redis://host?colour=red", "unknown parameter \"colour\""),
            ("redis://host?routing=fast", "routing \"fast\""),
            ("redis+unix://relative", "absolute socket path"),
            ("redis-cluster://h1:7000?db=2", "no databases"),
            ("redis://:secret@", "has no host"),
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret"), "{url}: {e}");
        }
    }
}
