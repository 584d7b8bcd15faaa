//! The mist wire protocol, and the only place that turns bytes into messages
//! and messages into bytes.
//!
//! A client speaks newline-delimited JSON: one object per line, terminated by
//! `\n` (a `\r\n` ending is accepted too). Requests look like
//! `{"command":"publish","tags":["a","b"],"data":"hello"}`; unknown fields are
//! ignored. The server answers with frames built by the [`encode`] functions.
//!
//! - [`Request`] is what a client sends and [`Message`] what a server sends.
//! - [`LineDecoder`] is an incremental decoder: feed it byte chunks exactly as
//!   they arrive from a socket, split or batched anywhere, and it yields one
//!   decoded item per line. Lines longer than the limit are discarded as they
//!   stream past, never buffered whole.
//! - [`encode`] builds outgoing frames (newline included) as shareable
//!   [`bytes::Bytes`], so a published message is encoded once for all of its
//!   recipients.
//!
//! This crate does no IO and has no async code.
//!
//! ```
//! use mist_proto::{LineDecoder, Request};
//!
//! let mut decoder = LineDecoder::new(1024);
//! let mut out = Vec::new();
//! decoder.decode::<Request>(b"{\"command\":\"ping\"}\n{\"comm", &mut out);
//! decoder.decode::<Request>(b"and\":\"list\"}\r\n", &mut out);
//! let commands: Vec<_> = out.into_iter().map(|r| r.unwrap().command.to_string()).collect();
//! assert_eq!(commands, ["ping", "list"]);
//! ```

#![warn(missing_docs)]

mod canonical;
mod decoder;
pub mod encode;
mod error;
mod message;

pub use decoder::{decode_document, Decoded, Frames, FromLine, LineDecoder, DEFAULT_MAX_LINE};
pub use error::ProtoError;
pub use message::{Command, Data, Message, Publication, Request};
