//! The client subcommands: one blocking connection to a running server.

use crate::tls::{Stream, TlsFlags};
use crate::{default_host, split_tags, Failure};
use argh::FromArgs;
use mist_proto::{LineDecoder, Message, ProtoError, Request, DEFAULT_MAX_LINE};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a command waits for the server's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Declares a client subcommand: its own fields, then the ones every
/// client command shares (where the server is, the token, TLS), and
/// [`Client::endpoint`] over them.
macro_rules! client_command {
    // A field's type is taken apart into identifiers, which argh's derive
    // can read (it tells `Option` and `Vec` fields by their tokens).
    ($(#[$meta:meta])* $name:literal struct $command:ident {
        $($(#[$field_meta:meta])* $field:ident: $type:ident $(<$inner:ident>)?,)*
    }) => {
        #[derive(FromArgs)]
        $(#[$meta])*
        #[argh(subcommand, name = $name)]
        pub struct $command {
            $($(#[$field_meta])* pub $field: $type $(<$inner>)?,)*
            /// server address (default: 127.0.0.1:1445)
            #[argh(option, default = "default_host()")]
            pub host: String,
            /// token for a server with authentication (sent as the first message)
            #[argh(option)]
            pub token: Option<String>,
            /// connect over TLS (a tls:// listener), checking the server's
            /// certificate against the public CAs
            #[argh(switch)]
            pub tls: bool,
            /// PEM CA certificates to check the server's certificate against
            /// instead (implies --tls)
            #[argh(option)]
            pub tls_ca: Option<String>,
            /// PEM client certificate, for a server that wants one (with
            /// --tls-key; implies --tls)
            #[argh(option)]
            pub tls_cert: Option<String>,
            /// PEM key of --tls-cert
            #[argh(option)]
            pub tls_key: Option<String>,
        }

        impl Client for $command {
            fn endpoint(&self) -> Result<Endpoint, Failure> {
                let flags = TlsFlags {
                    tls: self.tls,
                    ca: self.tls_ca.clone(),
                    cert: self.tls_cert.clone(),
                    key: self.tls_key.clone(),
                };
                Ok(Endpoint {
                    host: self.host.clone(),
                    token: self.token.clone(),
                    tls: flags.config()?,
                })
            }
        }
    };
}

/// Where a client command connects and how.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub token: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// The same server options at another address.
    pub fn at(&self, host: &str) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            ..self.clone()
        }
    }

    /// A new connection, authenticated when there is a token.
    pub fn open(&self) -> Result<Connection, Failure> {
        Connection::open(self)
    }
}

/// A client command's endpoint.
pub trait Client {
    fn endpoint(&self) -> Result<Endpoint, Failure>;
}

client_command! {
    /// ping a running mist server and print the round-trip time
    "ping" struct Ping {}
}

client_command! {
    /// publish a message
    "publish" struct Publish {
        /// comma-separated tags of the message
        #[argh(option)]
        tags: String,
        /// the message's data
        #[argh(option, default = "String::new()")]
        data: String,
    }
}

client_command! {
    /// subscribe to tags and print each message received as a JSON line
    "subscribe" struct Subscribe {
        /// comma-separated tags; a message must carry all of them
        #[argh(option)]
        tags: String,
        /// exit after this many messages (default: run until interrupted)
        #[argh(option)]
        count: Option<u64>,
    }
}

client_command! {
    /// send an unsubscribe (subscriptions belong to a connection, so this only
    /// checks that the server accepts the command)
    "unsubscribe" struct Unsubscribe {
        /// comma-separated tags
        #[argh(option)]
        tags: String,
    }
}

client_command! {
    /// print how many connections and subscribers the server has
    "who" struct Who {}
}

client_command! {
    /// print every subscribed tag set across all connections (the server token
    /// is needed when authentication is on)
    "listall" struct Listall {}
}

client_command! {
    /// print the list reply for this command's own connection, optionally after
    /// subscribing it to some tag sets
    "list" struct List {
        /// comma-separated tags to subscribe first; repeat for several sets
        #[argh(option)]
        subscribe: Vec<String>,
    }
}

pub(crate) use client_command;

/// A blocking line-protocol connection.
pub struct Connection {
    stream: Stream,
    decoder: LineDecoder,
    received: VecDeque<Result<Message, ProtoError>>,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects, and authenticates first when given a token.
    pub fn open(endpoint: &Endpoint) -> Result<Connection, Failure> {
        let mut connection = Connection {
            stream: Stream::connect(&endpoint.host, endpoint.tls.as_ref())?,
            decoder: LineDecoder::new(DEFAULT_MAX_LINE * 2),
            received: VecDeque::new(),
            buf: vec![0; 64 * 1024],
        };
        if let Some(token) = &endpoint.token {
            connection.send(&Request::new("auth").data(token))?;
        }
        Ok(connection)
    }

    /// Gives up the protocol decoding; frames not yet consumed are discarded.
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// Writes bytes that are already protocol lines.
    pub fn write_raw(&mut self, lines: &[u8]) -> Result<(), Failure> {
        self.stream.write_all(lines).map_err(Failure::from)
    }

    pub fn send(&mut self, request: &Request) -> Result<(), Failure> {
        self.stream
            .write_all(&request.to_line())
            .map_err(|e| Failure::Failed(format!("sending to the server failed: {e}")))
    }

    /// The next frame from the server; `None` once `timeout` passes first.
    pub fn receive(&mut self, timeout: Option<Duration>) -> Result<Option<Message>, Failure> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(frame) = self.received.pop_front() {
                return frame
                    .map(Some)
                    .map_err(|e| Failure::Failed(format!("the server sent a bad frame: {e}")));
            }
            let wait = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            self.stream.set_read_timeout(wait)?;
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(Failure::Failed("the server closed the connection".into())),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    return Err(Failure::Failed(format!(
                        "reading from the server failed: {e}"
                    )))
                }
            };
            let mut frames = Vec::new();
            self.decoder.decode(&self.buf[..n], &mut frames);
            self.received.extend(frames);
        }
    }

    /// Waits for the reply to a command sent last, failing on an error reply.
    pub fn reply(&mut self) -> Result<Message, Failure> {
        match self.receive(Some(REPLY_TIMEOUT))? {
            Some(Message {
                error: Some(error), ..
            }) => Err(Failure::Failed(format!("server error: {error}"))),
            Some(message) => Ok(message),
            None => Err(Failure::Failed(format!(
                "no reply from the server within {} s",
                REPLY_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Sends `request` followed by a ping: commands are applied in order, so
    /// the pong proves `request` took effect, and an error reply comes first.
    /// Returns the deliveries that arrived before the pong.
    pub fn confirm(&mut self, request: &Request) -> Result<Vec<Message>, Failure> {
        self.send(request)?;
        self.send(&Request::new("ping"))?;
        let mut early = Vec::new();
        loop {
            let message = self.reply()?;
            if message.command == "ping" {
                return Ok(early);
            }
            early.push(message);
        }
    }
}

fn tags_of(option: &str) -> Result<Vec<String>, Failure> {
    let tags = split_tags(option);
    if tags.is_empty() {
        return Err(Failure::Usage(
            "--tags needs at least one tag, e.g. --tags a,b".into(),
        ));
    }
    Ok(tags)
}

pub fn ping(cmd: &Ping) -> Result<(), Failure> {
    let mut conn = cmd.endpoint()?.open()?;
    let start = Instant::now();
    conn.send(&Request::new("ping"))?;
    let reply = conn.reply()?;
    let elapsed = start.elapsed();
    println!(
        "{} ({:.3} ms)",
        reply.data.as_deref().unwrap_or(""),
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

pub fn publish(cmd: &Publish) -> Result<(), Failure> {
    let request = Request::new("publish")
        .tags(tags_of(&cmd.tags)?)
        .data(&cmd.data);
    cmd.endpoint()?.open()?.confirm(&request).map(drop)
}

pub fn unsubscribe(cmd: &Unsubscribe) -> Result<(), Failure> {
    let request = Request::new("unsubscribe").tags(tags_of(&cmd.tags)?);
    cmd.endpoint()?.open()?.confirm(&request).map(drop)
}

pub fn subscribe(cmd: &Subscribe) -> Result<(), Failure> {
    let mut conn = cmd.endpoint()?.open()?;
    let tags = tags_of(&cmd.tags)?;
    let early = conn.confirm(&Request::new("subscribe").tags(&tags))?;
    eprintln!(
        "mist: subscribed to {}; waiting for messages",
        tags.join(",")
    );
    let mut early = early.into_iter();
    let mut stdout = io::stdout().lock();
    let mut printed = 0;
    while cmd.count.is_none_or(|count| printed < count) {
        let message = match early.next() {
            Some(message) => message,
            None => match conn.receive(None)? {
                Some(message) => message,
                None => continue,
            },
        };
        if let Some(error) = &message.error {
            eprintln!("mist: server error: {error}");
            continue;
        }
        let line = serde_json::to_string(&message)?;
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(()); // stdout closed, e.g. piped into `head`
        }
        printed += 1;
    }
    Ok(())
}

pub fn who(cmd: &Who) -> Result<(), Failure> {
    let mut conn = cmd.endpoint()?.open()?;
    conn.send(&Request::new("who"))?;
    let reply = conn.reply()?;
    println!("{}", reply.data.unwrap_or_default());
    Ok(())
}

pub fn listall(cmd: &Listall) -> Result<(), Failure> {
    let mut conn = cmd.endpoint()?.open()?;
    conn.send(&Request::new("listall"))?;
    let reply = conn.reply()?;
    println!("{}", serde_json::to_string(&reply)?);
    Ok(())
}

pub fn list(cmd: &List) -> Result<(), Failure> {
    let mut conn = cmd.endpoint()?.open()?;
    for tags in &cmd.subscribe {
        conn.confirm(&Request::new("subscribe").tags(tags_of(tags)?))?;
    }
    conn.send(&Request::new("list"))?;
    let reply = conn.reply()?;
    println!("{}", serde_json::to_string(&reply)?);
    Ok(())
}
