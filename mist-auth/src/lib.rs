//! Authenticators: where mist keeps tokens and the tags each was granted.
//!
//! The engine decides every request from grants it holds in memory; an
//! [`Authenticator`] only loads them when the server starts and stores each
//! admin change (see [`mist_engine::auth`]). This crate has the built-in
//! ones and a [`Registry`] that opens them by URI scheme:
//!
//! | URI | authenticator |
//! |---|---|
//! | `memory://` | [`MemoryAuthenticator`]: in the process, gone at exit |
//! | `scribble://?db=DIR` | [`ScribbleAuthenticator`]: one JSON file per token under `DIR/tokens` |
//! | `postgres://user@host:port?db=NAME` | [`PostgresAuthenticator`]: the tables `tokens` and `tags` |
//!
//! `jwt://?key=PATH` is not a store but a [`JwtVerifier`]: clients present
//! signed tokens and nothing is kept (see [`Registry::open_verifier`]).
//!
//! Custom authenticators are registered under a scheme of their own:
//!
//! ```
//! use mist_auth::{MemoryAuthenticator, Registry};
//! use std::sync::Arc;
//!
//! let mut registry = Registry::with_builtins();
//! registry.register("mine", |_uri| Ok(Arc::new(MemoryAuthenticator::default())));
//! assert!(registry.open("mine://anything").is_ok());
//! assert!(registry.open("nosuch://").is_err());
//! ```

#![warn(missing_docs)]

mod jwt;
mod memory;
mod postgres;
mod registry;
mod scribble;

pub use jwt::{mint_hmac, read_hmac_secret, JwtVerifier};
pub use memory::MemoryAuthenticator;
pub use mist_engine::auth::{AuthError, Authenticator, Change, Grants, Pending};
pub use postgres::PostgresAuthenticator;
pub use registry::{Registry, Uri};
pub use scribble::ScribbleAuthenticator;
