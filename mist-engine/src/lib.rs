//! The mist broker as a pure state machine.
//!
//! [`Engine`] owns everything a broker decides: which connections exist, what
//! each one subscribed to, the index that matches a published message to its
//! subscribers, every connection's bounded outbox and the policy for a
//! subscriber that falls behind. It does no IO, spawns nothing, reads no clock
//! and is deterministic, so tests can drive it step by step. A frontend moves
//! bytes between sockets and the engine; it never interprets commands.
//!
//! # The contract
//!
//! Inputs are the `handle_*` methods:
//! - [`Engine::handle_connect_from`] when a client connects from an address,
//!   with [`Credentials`]: in band (it must send `auth` first, within
//!   [`Config::auth_timeout`]) or a token given out of band (an HTTP header),
//!   which a secured engine checks at once. It returns the [`ConnId`].
//!   [`Engine::handle_connect`] and [`Engine::handle_connect_with_token`] are
//!   the same without an address.
//! - [`Engine::handle_input`] with the lines the client sent, decoded by
//!   [`mist_proto::LineDecoder`], in the order they arrived (errors too: the
//!   engine answers them in order with the other replies);
//!   [`Engine::handle_message`] for one.
//! - [`Engine::handle_resume`] to give a connection another turn for the
//!   input the engine holds for it (see below).
//! - [`Engine::handle_command`] for a request whose failure the caller
//!   reports itself (an HTTP status); [`Engine::check_admin_token`] for a
//!   request only the admin may make outside the protocol (`/stats`).
//! - [`Engine::handle_input_closed`] when the client will send nothing more.
//!   Its subscriptions end; replies already queued are still handed out.
//! - [`Engine::handle_disconnect`] when the connection is gone.
//! - [`Engine::handle_persisted`] with the authenticator's outcome for an
//!   [`Output::Persist`].
//! - [`Engine::handle_timeout`] with the current time, at start and about
//!   once a second: authentication deadlines and the failed-attempt throttle
//!   run on the time passed in.
//! - [`Engine::handle_pace_expired`] when a reader told [`Flow::Pace`] has
//!   waited [`Config::pace_timeout`] in vain.
//! - [`Engine::handle_offer`] with a publish another shard offered
//!   ([`Output::Offer`]); [`Engine::handle_offer_expired`] once its publisher
//!   waited its bounded time; [`Engine::handle_offered`] on the publisher's
//!   shard once all its offers are delivered.
//! - [`Engine::handle_sync`] on every shard after [`Output::Sync`].
//! - [`Engine::handle_remote_publish`] with a publish another node of the
//!   broker replicated, on every shard [`Engine::shards_wanting`] names;
//!   [`Engine::handle_remote_change`] with an admin change made there.
//! - [`Engine::handle_anchor_ready`], [`Engine::handle_anchor_dropped`] and
//!   [`Engine::handle_anchors_released`] when routing by tag (below).
//! - [`Engine::handle_clock`] with the wall-clock time, at start and about
//!   once a second: signed tokens are checked against it, and connections
//!   whose signed token expired are closed.
//! - [`Engine::set_config`] and [`Engine::set_token_verifier`] when the
//!   server's settings are reloaded: they apply to new work.
//! - [`Engine::handle_shutdown`] when the server stops: every connection is
//!   closed once its outbox is written, and new ones are refused.
//!
//! Outputs are the `poll_*` methods. **Every input must be followed by
//! draining [`Engine::poll_output`] until it returns `None`**:
//! - [`Output::Transmit`]`(conn)` says that `conn`'s outbox went from empty to
//!   non-empty. Its writer should then call [`Engine::poll_transmit`], which
//!   hands over every queued frame at once, write them, and call
//!   `poll_transmit` again: the next call also acknowledges that the previous
//!   batch was written, which frees its room in the outbox.
//! - [`Output::Persist`] carries an admin change ([`auth::Change`]) to store
//!   with the authenticator, outside the engine and its lock. Until the
//!   outcome comes back, the change has no effect and its admin's later
//!   commands wait, so commands still take effect in order; everyone else
//!   carries on, and changes to other tokens are stored meanwhile.
//! - [`Output::Resume`]`(conn)`: `conn`'s admin change settled, or a
//!   subscriber its publish waited for made room; its reader may give it
//!   another turn.
//! - [`Output::Throttled`]: an address used up its failed authentications;
//!   worth one line in the log.
//! - [`Output::Offer`] and [`Output::Sync`] come only from shards (below).
//! - [`Output::Replicate`] carries a publish of this node's clients to the
//!   other nodes, once [`Engine::set_replicating`] is on;
//!   [`Output::ReplicateChange`] an admin change.
//! - [`Output::Interest`] names a tag this node gained or lost as an anchor,
//!   once [`Engine::set_routing_by_tag`] is on: each subscription is anchored
//!   on its first tag in sorted order, and a client whose new anchor the
//!   node does not hear yet waits until [`Engine::handle_anchor_ready`].
//!
//! After each input, [`Engine::flow`] tells a connection's reader what to do:
//! [`Flow::Read`] when all its input is applied; [`Flow::Yield`] when its
//! turn's work ([`Config::work_per_turn`]) is used up, so that other clients
//! run before [`Engine::handle_resume`]; [`Flow::Wait`] when its next command
//! needs room in its outbox for a reply (or waits for an admin change), so
//! the reader waits for its writer before resuming; [`Flow::Pace`] when its
//! next publish waits for room in a subscriber's outbox, so the reader waits
//! for [`Output::Resume`] at most [`Config::pace_timeout`] before
//! [`Engine::handle_pace_expired`]; [`Flow::Close`] when it
//! was refused or revoked (write what is queued, then close). The reader
//! reads more only on `Read`, so a client is held to one read's worth of
//! waiting input, and its queued replies never exceed its outbox bound.
//!
//! # Shards
//!
//! [`Engine::new`] is a whole broker. [`Engine::shards`] makes several
//! engines that are together one broker, each owning the connections it
//! accepts (a [`ConnId`] names its shard), so that each can run behind its
//! own lock on its own core. They share only counters, lock-free interest
//! counters, and the authority on tokens. A publish a shard applies is
//! offered to the other shards that may want it ([`Output::Offer`]): hand it
//! to each, in order with the publisher's other offers, then call
//! [`Engine::handle_offered`] on the publisher's shard (its replies wait
//! until then). An admin change that settles produces [`Output::Sync`]: call
//! [`Engine::handle_sync`] on every shard, then once more on every shard.
//!
//! # Access
//!
//! [`Engine::new`] is an open server. [`Engine::secured`] wants a token from
//! every client: the server token may do everything, including the admin
//! commands (`register`, `unregister`, `set`, `unset`, `tags`); a registered
//! token may subscribe, unsubscribe and publish only with tags it was
//! granted. Grants live in the engine, so no request waits on storage; a
//! change that takes tags away applies at once to connections already open.
//!
//! # Delivery rules
//!
//! A published message goes to every *other* connection holding at least one
//! subscription whose tags are all among the message's tags, once per
//! connection, in each publisher's order. When a delivery does not fit in the
//! recipient's outbox, the publisher is paced: the publish waits, unapplied,
//! until the recipient's writer takes frames. A recipient still full after
//! the bounded wait is judged stalled: deliveries to it are dropped and
//! counted, and nobody waits for it until its writer takes frames again.
//! Replies to a client's own commands are never dropped.
//!
//! ```
//! use mist_engine::{Batch, Config, Engine, Output};
//! use mist_proto::Request;
//!
//! let mut engine = Engine::new(Config::default());
//! let subscriber = engine.handle_connect().unwrap();
//! let publisher = engine.handle_connect().unwrap();
//! engine.handle_message(subscriber, Ok(Request::new("subscribe").tags(["onefish"])));
//! engine.handle_message(publisher, Ok(Request::new("publish").tags(["onefish", "twofish"]).data("hi")));
//!
//! assert_eq!(engine.poll_output(), Some(Output::Transmit(subscriber)));
//! assert_eq!(engine.poll_output(), None);
//! let mut batch = Batch::new();
//! assert!(engine.poll_transmit(subscriber, &mut batch));
//! assert_eq!(
//!     batch.as_bytes(),
//!     b"{\"command\":\"publish\",\"tags\":[\"onefish\",\"twofish\"],\"data\":\"hi\"}\n"
//! );
//! ```

#![warn(missing_docs)]

mod access;
mod anchor;
pub mod auth;
mod authority;
mod config;
mod engine;
mod error;
pub mod extension;
mod hash;
mod id;
mod index;
mod outbox;
mod shared;
mod throttle;

pub use config::Config;
pub use engine::{ConnId, ConnStats, Credentials, Engine, Flow, Offer, Output, Stats, MAX_SHARDS};
pub use error::Error;
pub use extension::{CommandContext, CommandHandler};
pub use outbox::Batch;
