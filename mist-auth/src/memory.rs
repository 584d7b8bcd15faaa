//! `memory://`: tokens kept in the process.

use mist_engine::auth::{AuthError, Authenticator, Grants, Pending};
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Keeps tokens in memory; they last as long as the server process.
///
/// ```
/// use mist_auth::{Authenticator, MemoryAuthenticator};
///
/// let auth = MemoryAuthenticator::default();
/// futures::executor::block_on(async {
///     auth.register("t", &["a".to_string()].into()).await.unwrap();
///     assert_eq!(auth.load().await.unwrap().len(), 1);
/// });
/// ```
#[derive(Default)]
pub struct MemoryAuthenticator {
    tokens: Mutex<Grants>,
}

impl MemoryAuthenticator {
    fn tokens(&self) -> MutexGuard<'_, Grants> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes a registered token's tags.
    fn retag<'a>(
        &'a self,
        token: &'a str,
        change: impl FnOnce(&mut BTreeSet<String>) + Send + 'a,
    ) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async move {
            change(self.tokens().get_mut(token).ok_or_else(missing)?);
            Ok(())
        })
    }
}

fn missing() -> AuthError {
    AuthError("unknown token".into())
}

impl Authenticator for MemoryAuthenticator {
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>> {
        let grants = self.tokens().clone();
        Box::pin(async move { Ok(grants) })
    }

    fn register<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async move {
            let mut tokens = self.tokens();
            if tokens.contains_key(token) {
                return Err(AuthError("token already registered".into()));
            }
            tokens.insert(token.to_string(), tags.clone());
            Ok(())
        })
    }

    fn unregister<'a>(&'a self, token: &'a str) -> Pending<'a, Result<(), AuthError>> {
        Box::pin(async move { self.tokens().remove(token).map(drop).ok_or_else(missing) })
    }

    fn set<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        self.retag(token, |granted| granted.extend(tags.iter().cloned()))
    }

    fn unset<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        self.retag(token, |granted| granted.retain(|t| !tags.contains(t)))
    }

    fn tags<'a>(
        &'a self,
        token: &'a str,
    ) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>> {
        Box::pin(async move { Ok(self.tokens().get(token).cloned()) })
    }
}
