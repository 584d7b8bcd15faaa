//! Authenticators by URI scheme, built-in and custom.

use crate::{MemoryAuthenticator, PostgresAuthenticator, ScribbleAuthenticator};
use mist_engine::auth::{AuthError, Authenticator};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// An authenticator URI, `scheme://[user@]host[:port][/path][?query]`, split
/// into the parts authenticators use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `memory`, `scribble`, `postgres`, or a custom one; lower case.
    pub scheme: String,
    /// Everything between `://` and `?`.
    pub authority: String,
    /// The query's `key=value` pairs, percent-decoding left to the user.
    pub query: Vec<(String, String)>,
}

impl Uri {
    /// Splits an authenticator URI; it must have a `scheme://`.
    pub fn parse(uri: &str) -> Result<Uri, AuthError> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            AuthError(format!(
                "invalid authenticator {uri:?}: expected scheme://..., e.g. memory://"
            ))
        })?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let query = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_string(), value.to_string())
            })
            .collect();
        Ok(Uri {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_string(),
            query,
        })
    }

    /// The value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

type Factory = Box<dyn Fn(&Uri) -> Result<Arc<dyn Authenticator>, AuthError> + Send + Sync>;

/// Opens authenticators by the scheme of their URI.
pub struct Registry {
    factories: HashMap<String, Factory>,
}

impl Registry {
    /// A registry with mist's own schemes.
    pub fn with_builtins() -> Registry {
        let mut registry = Registry {
            factories: HashMap::new(),
        };
        registry.register("memory", |_| Ok(Arc::new(MemoryAuthenticator::default())));
        registry.register("scribble", |uri| {
            let db = uri.param("db").filter(|db| !db.is_empty()).ok_or_else(|| {
                AuthError("scribble needs its directory: scribble://?db=DIR".into())
            })?;
            Ok(Arc::new(ScribbleAuthenticator::open(Path::new(db))?))
        });
        for scheme in ["postgres", "postgresql"] {
            registry.register(scheme, |uri| {
                Ok(Arc::new(PostgresAuthenticator::from_uri(uri)?))
            });
        }
        registry
    }

    /// Adds (or replaces) the authenticator for `scheme`.
    pub fn register<F>(&mut self, scheme: &str, factory: F)
    where
        F: Fn(&Uri) -> Result<Arc<dyn Authenticator>, AuthError> + Send + Sync + 'static,
    {
        self.factories
            .insert(scheme.to_ascii_lowercase(), Box::new(factory));
    }

    /// The schemes it can open, sorted.
    pub fn schemes(&self) -> Vec<&str> {
        let mut schemes: Vec<&str> = self.factories.keys().map(String::as_str).collect();
        schemes.sort_unstable();
        schemes
    }

    /// The token verifier a URI names, if it names one rather than a store:
    /// `jwt://?key=PATH` (see [`crate::JwtVerifier`]). `None` for the
    /// other schemes, which [`Registry::open`] opens.
    pub fn open_verifier(
        &self,
        uri: &str,
    ) -> Result<Option<Arc<dyn mist_engine::auth::TokenVerifier>>, AuthError> {
        let parsed = Uri::parse(uri)?;
        if parsed.scheme != "jwt" {
            return Ok(None);
        }
        Ok(Some(Arc::new(crate::JwtVerifier::from_uri(&parsed)?)))
    }

    /// Opens the authenticator a URI names.
    pub fn open(&self, uri: &str) -> Result<Arc<dyn Authenticator>, AuthError> {
        let parsed = Uri::parse(uri)?;
        let factory = self.factories.get(&parsed.scheme).ok_or_else(|| {
            AuthError(format!(
                "unknown authenticator scheme {:?}: use one of {}",
                parsed.scheme,
                self.schemes().join(", ")
            ))
        })?;
        factory(&parsed)
    }
}
