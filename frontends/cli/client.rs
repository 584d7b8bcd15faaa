//! The client subcommands: one blocking connection to a running server.

use crate::{default_host, split_tags, Failure};
use argh::FromArgs;
use mist_proto::{LineDecoder, Message, ProtoError, Request, DEFAULT_MAX_LINE};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a command waits for the server's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(FromArgs)]
/// ping a running mist server and print the round-trip time
#[argh(subcommand, name = "ping")]
pub struct Ping {
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

#[derive(FromArgs)]
/// publish a message
#[argh(subcommand, name = "publish")]
pub struct Publish {
    /// comma-separated tags of the message
    #[argh(option)]
    tags: String,
    /// the message's data
    #[argh(option, default = "String::new()")]
    data: String,
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

#[derive(FromArgs)]
/// subscribe to tags and print each message received as a JSON line
#[argh(subcommand, name = "subscribe")]
pub struct Subscribe {
    /// comma-separated tags; a message must carry all of them
    #[argh(option)]
    tags: String,
    /// exit after this many messages (default: run until interrupted)
    #[argh(option)]
    count: Option<u64>,
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

#[derive(FromArgs)]
/// send an unsubscribe (subscriptions belong to a connection, so this only
/// checks that the server accepts the command)
#[argh(subcommand, name = "unsubscribe")]
pub struct Unsubscribe {
    /// comma-separated tags
    #[argh(option)]
    tags: String,
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

#[derive(FromArgs)]
/// print how many connections and subscribers the server has
#[argh(subcommand, name = "who")]
pub struct Who {
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

#[derive(FromArgs)]
/// print every subscribed tag set across all connections (the server token
/// is needed when authentication is on)
#[argh(subcommand, name = "listall")]
pub struct Listall {
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

#[derive(FromArgs)]
/// print the list reply for this command's own connection, optionally after
/// subscribing it to some tag sets
#[argh(subcommand, name = "list")]
pub struct List {
    /// comma-separated tags to subscribe first; repeat for several sets
    #[argh(option)]
    subscribe: Vec<String>,
    /// server address (default: 127.0.0.1:1445)
    #[argh(option, default = "default_host()")]
    host: String,
    /// token for a server with authentication (sent as the first message)
    #[argh(option)]
    token: Option<String>,
}

/// A blocking line-protocol connection.
pub struct Connection {
    stream: TcpStream,
    decoder: LineDecoder,
    received: VecDeque<Result<Message, ProtoError>>,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects, and authenticates first when given a token.
    pub fn open(host: &str, token: Option<&str>) -> Result<Connection, Failure> {
        let mut connection = Connection::connect(host)?;
        if let Some(token) = token {
            connection.send(&Request::new("auth").data(token))?;
        }
        Ok(connection)
    }

    fn connect(host: &str) -> Result<Connection, Failure> {
        let stream = TcpStream::connect(host).map_err(|e| {
            Failure::Failed(format!(
                "cannot connect to mist at {host}: {e} (is `mist --server` running there?)"
            ))
        })?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            decoder: LineDecoder::new(DEFAULT_MAX_LINE * 2),
            received: VecDeque::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    /// Gives up the protocol decoding; frames not yet consumed are discarded.
    pub fn into_stream(self) -> TcpStream {
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
    let mut conn = Connection::open(&cmd.host, cmd.token.as_deref())?;
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
    Connection::open(&cmd.host, cmd.token.as_deref())?
        .confirm(&request)
        .map(drop)
}

pub fn unsubscribe(cmd: &Unsubscribe) -> Result<(), Failure> {
    let request = Request::new("unsubscribe").tags(tags_of(&cmd.tags)?);
    Connection::open(&cmd.host, cmd.token.as_deref())?
        .confirm(&request)
        .map(drop)
}

pub fn subscribe(cmd: &Subscribe) -> Result<(), Failure> {
    let mut conn = Connection::open(&cmd.host, cmd.token.as_deref())?;
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
    let mut conn = Connection::open(&cmd.host, cmd.token.as_deref())?;
    conn.send(&Request::new("who"))?;
    let reply = conn.reply()?;
    println!("{}", reply.data.unwrap_or_default());
    Ok(())
}

pub fn listall(cmd: &Listall) -> Result<(), Failure> {
    let mut conn = Connection::open(&cmd.host, cmd.token.as_deref())?;
    conn.send(&Request::new("listall"))?;
    let reply = conn.reply()?;
    println!("{}", serde_json::to_string(&reply)?);
    Ok(())
}

pub fn list(cmd: &List) -> Result<(), Failure> {
    let mut conn = Connection::open(&cmd.host, cmd.token.as_deref())?;
    for tags in &cmd.subscribe {
        conn.confirm(&Request::new("subscribe").tags(tags_of(tags)?))?;
    }
    conn.send(&Request::new("list"))?;
    let reply = conn.reply()?;
    println!("{}", serde_json::to_string(&reply)?);
    Ok(())
}
