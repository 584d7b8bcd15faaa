//! Connection handling for mist, written once for every async runtime.
//!
//! A runtime frontend (async-std, smol, ...) only accepts sockets, spawns a
//! task per connection and supplies timers. Everything a connection does is
//! here, over the [`futures::io`] traits:
//!
//! - [`Hub`] puts each of the [`mist_engine::Engine`]'s shards behind a lock
//!   of its own, hands publishes from shard to shard, and wakes the writers
//!   of connections the engine has frames for. No lock is held across IO,
//!   and no task holds two.
//! - [`serve`] runs one connection: a reader that decodes every complete line
//!   of a read and hands them to the engine under one lock acquisition, and a
//!   writer that takes everything queued for the connection at once and writes
//!   it with as few writes as possible. A TCP connection's small batches are
//!   written by the task that queued them while its writer is idle, without
//!   waking the writer task.
//! - [`accept_websocket`] and [`serve_websocket`] carry the same protocol over
//!   WebSocket, one message per text frame.
//! - [`HttpService`] answers the HTTP endpoints (ping, publish, SSE, the
//!   WebSocket upgrade) over `http-types`, whatever server carries them.
//! - [`listener`] parses and vets listener URIs such as `tcp://127.0.0.1:1445`.
//! - [`tls`] loads and checks the certificate of the `tls://`, `wss://` and
//!   `https://` listeners (and swaps it on reload); [`Listening::serve_tls`]
//!   runs the handshake, bounded in time and counted against the connection
//!   limit, then serves what the plain listener would.
//! - [`Hub::route_by_tag`], [`Hub::replicate_to`] and [`Hub::handle_remote`]
//!   make the hub one node of several (see the `mist-replicator` crate).

#![warn(missing_docs)]

mod accepted;
mod carried;
mod connection;
mod direct;
mod error;
pub mod guard;
mod http_service;
mod hub;
pub mod listener;
mod log_limit;
mod options;
mod origin;
mod runtime;
pub mod server;
mod shutdown;
mod signal;
pub mod tls;
mod token;
mod websocket;

pub use accepted::{is_disconnect, Listening, ACCEPT_BACKOFF};
pub use connection::{serve, serve_from, Inbound, Outbound, Session, PRE_AUTH_LINE};
pub use error::Error;
pub use http_service::HttpService;
pub use hub::{
    Admission, Hub, InterestOutlet, Outlet, ReplicationReport, ReplicationStats, Snapshot, Task,
    Via,
};
pub use log_limit::LogLimit;
pub use options::{ListenerOptions, Origins, MAX_HEAD};
pub use origin::check_origin;
pub use runtime::Runtime;
pub use token::{refusal_text, request_token};
pub use websocket::{
    accept_websocket, serve_websocket, websocket_handshake, Opened, Pinger, WEBSOCKET_PATHS,
};
