//! Custom commands: an embedder's own protocol commands, handled in the engine.
//!
//! ```
//! use mist_engine::{CommandContext, Config, Engine, Error};
//! use mist_proto::{encode, Request};
//! use std::collections::VecDeque;
//!
//! let mut engine = Engine::new(Config::default());
//! engine
//!     .register_command("echo", Box::new(|ctx: &mut CommandContext<'_>, request: &Request| {
//!         let data = request.data.as_ref().map(|d| d.to_text()).unwrap_or_default();
//!         ctx.reply(encode::reply("echo", &data));
//!         Ok(())
//!     }))
//!     .unwrap();
//! let client = engine.handle_connect().unwrap();
//! engine.handle_message(client, Ok(Request::new("echo").data("hi")));
//! let mut frames = VecDeque::new();
//! assert!(engine.poll_transmit(client, &mut frames));
//! assert_eq!(&frames[0][..], b"{\"command\":\"echo\",\"data\":\"hi\"}\n");
//! ```

use crate::engine::{Engine, Stats};
use crate::id::ConnId;
use crate::Error;
use bytes::Bytes;
use mist_proto::Request;

/// A custom command's handler. It runs inside the engine, under its shard's
/// lock: it must be quick and do no IO. Its error is answered to the client
/// like any other.
pub type CommandHandler =
    Box<dyn FnMut(&mut CommandContext<'_>, &Request) -> Result<(), Error> + Send>;

/// What a custom command may do while it runs.
pub struct CommandContext<'e> {
    pub(crate) engine: &'e mut Engine,
    pub(crate) conn: ConnId,
}

impl CommandContext<'_> {
    /// The connection that sent the command.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Whether the sender holds the server token (always false on an open
    /// server, where there is no admin).
    pub fn is_admin(&self) -> bool {
        self.engine.is_admin(self.conn)
    }

    /// Queues a frame for the sender, in order with its other replies.
    /// Build it with [`mist_proto::encode`].
    pub fn reply(&mut self, frame: Bytes) {
        self.engine.reply(self.conn, frame);
    }

    /// Publishes as the sender would, with its permissions: every other
    /// matching subscriber receives `tags` and `data`. It does not wait for
    /// subscribers: a delivery that does not fit an outbox is dropped.
    pub fn publish(&mut self, tags: &[String], data: &str) -> Result<(), Error> {
        let mut request = Request::new("publish")
            .tags(tags.iter().cloned())
            .data(data);
        self.engine
            .publish(self.conn, &mut request, crate::engine::Pacing::Never)
            .map(|_| ())
    }

    /// The counters of the shard running the command (a lone engine's are
    /// the server's).
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }
}
