//! Custom commands: an embedder's own protocol commands, handled in the engine.
//!
//! ```
//! use mist_engine::{Batch, CommandContext, Config, Engine, Error};
//! use mist_proto::{encode, Request};
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
//! let mut batch = Batch::new();
//! assert!(engine.poll_transmit(client, &mut batch));
//! assert_eq!(batch.as_bytes(), b"{\"command\":\"echo\",\"data\":\"hi\"}\n");
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
    /// Build it with [`mist_proto::encode`]: a frame is one line of JSON
    /// ending in `\n`. Any other line breaks in it are turned into spaces
    /// (JSON allows a space wherever it allows a line break) and a missing
    /// final one is added, so a frame always stays one message.
    pub fn reply(&mut self, frame: Bytes) {
        let body = frame.strip_suffix(b"\n").unwrap_or(&frame);
        if memchr::memchr(b'\n', body).is_none() && body.len() < frame.len() {
            self.engine.reply(self.conn, frame);
        } else {
            let mut line: Vec<u8> = body
                .iter()
                .map(|&b| if b == b'\n' { b' ' } else { b })
                .collect();
            line.push(b'\n');
            self.engine.reply(self.conn, Bytes::from(line));
        }
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

#[cfg(test)]
mod tests {
    use crate::{Batch, CommandContext, Config, Engine};
    use bytes::Bytes;
    use mist_proto::Request;

    /// However a handler builds its reply, it reaches the client as one
    /// line: a frame is one message on every transport.
    #[test]
    fn a_reply_is_always_one_line() {
        let mut engine = Engine::new(Config::default());
        engine
            .register_command(
                "lines",
                Box::new(|ctx: &mut CommandContext<'_>, _: &Request| {
                    ctx.reply(Bytes::from_static(b"{\"a\":\n1}"));
                    ctx.reply(Bytes::from_static(b"{\"b\":2}\n"));
                    Ok(())
                }),
            )
            .unwrap();
        let client = engine.handle_connect().unwrap();
        engine.handle_message(client, Ok(Request::new("lines")));
        let mut batch = Batch::new();
        assert!(engine.poll_transmit(client, &mut batch));
        assert_eq!(batch.as_bytes(), b"{\"a\": 1}\n{\"b\":2}\n");
        assert_eq!(batch.frames(), 2);
    }
}
