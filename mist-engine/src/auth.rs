//! Tokens, what they may do, and where they are kept.
//!
//! The engine holds every token's grants in memory and decides every request
//! from them, so checking a publish never waits on a database. An
//! [`Authenticator`] keeps the tokens: it is read once at start
//! ([`Authenticator::load`]) and told about every admin change. The engine
//! never calls it: a change leaves the engine as [`crate::Output::Persist`],
//! the caller applies it with [`Change::apply`] outside the engine's lock, and
//! feeds the result back with [`crate::Engine::handle_persisted`]; only then
//! does the change take effect and the admin get its reply.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// Every registered token and the tags it was granted.
pub type Grants = HashMap<String, BTreeSet<String>>;

/// A boxed future, so that authenticators can be trait objects.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an authenticator could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// Where tokens are kept: the five admin operations, and loading them all.
///
/// Implementations store; they do not decide. The engine validates every
/// change (an unknown token, a duplicate registration) before it asks.
pub trait Authenticator: Send + Sync {
    /// Every token and its tags, read once when the server starts.
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>>;
    /// Stores a new token with its tags.
    fn register<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>>;
    /// Removes a token and its tags.
    fn unregister<'a>(&'a self, token: &'a str) -> Pending<'a, Result<(), AuthError>>;
    /// Adds tags to a token.
    fn set<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>>;
    /// Removes tags from a token.
    fn unset<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>>;
    /// A token's tags, or `None` if it is not registered.
    fn tags<'a>(
        &'a self,
        token: &'a str,
    ) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>>;
}

/// What a signed token says once its signature is checked: its grants and
/// when it is valid, in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The tags it may use (its grants).
    pub tags: BTreeSet<String>,
    /// It is the admin's: every tag, and the admin's commands.
    pub admin: bool,
    /// It is refused from this second on, and its connections are closed.
    pub expires: u64,
    /// It is refused before this second.
    pub not_before: Option<u64>,
}

/// Checks signed tokens (JWT): that they are signed with the server's key
/// and say what a mist token must. It does not check the time: the engine
/// checks [`Signed::expires`] and [`Signed::not_before`] against the time
/// passed in ([`crate::Engine::handle_clock`]), so it stays deterministic.
/// The reason of a refusal must never repeat the token.
pub trait TokenVerifier: Send + Sync {
    /// The token's claims, or why it is refused.
    fn verify(&self, token: &str) -> Result<Signed, AuthError>;
}

/// An admin change, on its way to the authenticator.
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    /// A new token with its tags.
    Register {
        /// The new token.
        token: String,
        /// The tags it may use.
        tags: BTreeSet<String>,
    },
    /// A token removed, with its tags.
    Unregister {
        /// The token to remove.
        token: String,
    },
    /// Tags added to a token.
    Set {
        /// The token.
        token: String,
        /// The tags to add.
        tags: BTreeSet<String>,
    },
    /// Tags removed from a token.
    Unset {
        /// The token.
        token: String,
        /// The tags to remove.
        tags: BTreeSet<String>,
    },
}

impl Change {
    /// The token the change is about.
    pub fn token(&self) -> &str {
        match self {
            Change::Register { token, .. }
            | Change::Unregister { token }
            | Change::Set { token, .. }
            | Change::Unset { token, .. } => token,
        }
    }

    /// Stores the change with `authenticator`.
    pub fn apply<'a>(
        &'a self,
        authenticator: &'a dyn Authenticator,
    ) -> Pending<'a, Result<(), AuthError>> {
        match self {
            Change::Register { token, tags } => authenticator.register(token, tags),
            Change::Unregister { token } => authenticator.unregister(token),
            Change::Set { token, tags } => authenticator.set(token, tags),
            Change::Unset { token, tags } => authenticator.unset(token, tags),
        }
    }
}

/// Tokens are secrets: a change is shown without its token.
impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Register { tags, .. } => write!(f, "Register {{ tags: {tags:?}, .. }}"),
            Change::Unregister { .. } => f.write_str("Unregister { .. }"),
            Change::Set { tags, .. } => write!(f, "Set {{ tags: {tags:?}, .. }}"),
            Change::Unset { tags, .. } => write!(f, "Unset {{ tags: {tags:?}, .. }}"),
        }
    }
}

/// Compares two tokens in time that depends only on their lengths, so that
/// timing does not tell an attacker how much of a guess was right.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut differ = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        differ |= x ^ y;
    }
    std::hint::black_box(differ) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_token_compares_whole_strings() {
        assert!(same_token("secret", "secret"));
        assert!(!same_token("secret", "secreT"));
        assert!(!same_token("secret", "secret2"));
        assert!(!same_token("", "x"));
        assert!(same_token("", ""));
    }

    #[test]
    fn a_change_never_shows_its_token() {
        let change = Change::Unregister {
            token: "hunter2".into(),
        };
        assert!(!format!("{change:?}").contains("hunter2"));
    }
}
