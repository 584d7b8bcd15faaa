//! The client subcommands: one blocking connection to a running server.

use crate::{default_host, split_tags, Failure};
use argh::FromArgs;
use mist_client::blocking::Reconnecting;
use mist_client::reconnecting::Event;
use mist_client::TlsOptions;
use mist_proto::Request;
use std::io::{self, Write};
use std::time::Duration;

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
            /// server address: host:port or tcp://, tls://, ws:// or wss://
            /// host:port[/path] (default: 127.0.0.1:1445)
            #[argh(option, default = "default_host()")]
            pub host: String,
            /// token for a server with authentication (the first message, or
            /// the X-Auth-Token header over WebSocket)
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
                let tls = TlsOptions {
                    tls: self.tls,
                    ca: self.tls_ca.clone(),
                    cert: self.tls_cert.clone(),
                    key: self.tls_key.clone(),
                };
                // Files that cannot be used are a usage error, said now.
                tls.config().map_err(|e| Failure::Usage(e.to_string()))?;
                Ok(Endpoint {
                    host: self.host.clone(),
                    token: self.token.clone(),
                    tls,
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
    pub tls: TlsOptions,
}

impl Endpoint {
    /// The same server options at another address.
    pub fn at(&self, host: &str) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            ..self.clone()
        }
    }

    /// A new connection, authenticated when there is a token; a command
    /// waits at most [`REPLY_TIMEOUT`] for its answer.
    pub fn open(&self) -> Result<Connection, Failure> {
        let mut conn = Connection::connect_with(&self.host, self.token.as_deref(), &self.tls)
            .map_err(failure)?;
        conn.set_reply_timeout(Some(REPLY_TIMEOUT));
        Ok(conn)
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
        /// connect again when the connection is lost (backoff from 0.1 s to
        /// 5 s, no limit) and subscribe again; messages published meanwhile
        /// are lost
        #[argh(switch)]
        reconnect: bool,
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

/// A connection of the client commands: mist-client's blocking client.
pub type Connection = mist_client::blocking::Client;

/// A client error as the command reports it: the server's refusal in its
/// own words.
pub fn failure(error: mist_client::Error) -> Failure {
    match error {
        mist_client::Error::Server { message, .. } => {
            Failure::Failed(format!("server error: {message}"))
        }
        mist_client::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Failure::Failed(format!(
                "no reply from the server within {} s",
                REPLY_TIMEOUT.as_secs()
            ))
        }
        other => Failure::Failed(other.to_string()),
    }
}

/// Sends `request` and prints the server's reply as the JSON line it is.
fn print_reply(conn: &mut Connection, request: Request) -> Result<(), Failure> {
    let reply = conn.command(request).map_err(failure)?;
    println!("{}", serde_json::to_string(&reply)?);
    Ok(())
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
    let elapsed = cmd.endpoint()?.open()?.ping().map_err(failure)?;
    println!("pong ({:.3} ms)", elapsed.as_secs_f64() * 1000.0);
    Ok(())
}

pub fn publish(cmd: &Publish) -> Result<(), Failure> {
    let tags = tags_of(&cmd.tags)?;
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut conn = cmd.endpoint()?.open()?;
    conn.publish(&tags, &cmd.data).map_err(failure)
}

pub fn unsubscribe(cmd: &Unsubscribe) -> Result<(), Failure> {
    let tags = tags_of(&cmd.tags)?;
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut conn = cmd.endpoint()?.open()?;
    conn.unsubscribe(&tags).map_err(failure)
}

pub fn subscribe(cmd: &Subscribe) -> Result<(), Failure> {
    let endpoint = cmd.endpoint()?;
    let tags = tags_of(&cmd.tags)?;
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut source = if cmd.reconnect {
        let mut client =
            Reconnecting::connect(&endpoint.host, endpoint.token.as_deref(), &endpoint.tls)
                .map_err(failure)?;
        client.subscribe(&tag_refs).map_err(failure)?;
        Source::Reconnecting(client)
    } else {
        let mut conn = endpoint.open()?;
        conn.subscribe(&tag_refs).map_err(failure)?;
        Source::Once(conn)
    };
    eprintln!(
        "mist: subscribed to {}; waiting for messages",
        tags.join(",")
    );
    let mut stdout = io::stdout().lock();
    let mut printed = 0;
    while cmd.count.is_none_or(|count| printed < count) {
        let message = source.next_message()?;
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

/// Where `mist subscribe` reads its messages from.
enum Source {
    /// One connection: its loss ends the command.
    Once(Connection),
    /// A connection made again whenever it is lost.
    Reconnecting(Reconnecting),
}

impl Source {
    fn next_message(&mut self) -> Result<mist_proto::Message, Failure> {
        match self {
            Source::Once(conn) => conn.next_message().map_err(failure),
            Source::Reconnecting(client) => loop {
                match client.next_event().map_err(failure)? {
                    Event::Message(message) => return Ok(message),
                    Event::Reconnected { attempts } => eprintln!(
                        "mist: reconnected and subscribed again after {attempts} attempt(s); \
                         messages published meanwhile were lost"
                    ),
                }
            },
        }
    }
}

pub fn who(cmd: &Who) -> Result<(), Failure> {
    let who = cmd.endpoint()?.open()?.who().map_err(failure)?;
    println!("{}", who.text);
    Ok(())
}

pub fn listall(cmd: &Listall) -> Result<(), Failure> {
    print_reply(&mut cmd.endpoint()?.open()?, Request::new("listall"))
}

pub fn list(cmd: &List) -> Result<(), Failure> {
    let mut conn = cmd.endpoint()?.open()?;
    for tags in &cmd.subscribe {
        let tags = tags_of(tags)?;
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        conn.subscribe(&tags).map_err(failure)?;
    }
    print_reply(&mut conn, Request::new("list"))
}
