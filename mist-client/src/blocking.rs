//! The client for code without an async runtime: the same calls as
//! [`crate::Client`], each waiting for its answer, over TCP or TLS.
//!
//! ```no_run
//! use mist_client::blocking::Client;
//! use mist_client::TlsOptions;
//! use std::time::Duration;
//!
//! let tls = TlsOptions { ca: Some("ca.pem".into()), ..TlsOptions::default() };
//! let mut client = Client::connect_with("127.0.0.1:1446", Some("token"), &tls)?;
//! client.subscribe(&["news"])?;
//! while let Some(message) = client.next_message_within(Duration::from_secs(5))? {
//!     println!("{:?}: {:?}", message.tags, message.data);
//! }
//! # Ok::<(), mist_client::Error>(())
//! ```

use crate::tls::{Stream, TlsOptions};
use crate::{Error, Message, Who};
use futures::executor::block_on;
use futures::io::AllowStdIo;
use std::io;
use std::sync::Arc;
use std::time::Duration;

type Inner = crate::Client<AllowStdIo<Stream>>;

/// A blocking connection to a mist server.
pub struct Client {
    inner: Inner,
    /// How long a command waits for its answer; `None` for ever.
    reply_timeout: Option<Duration>,
    /// The socket's read timeout now, so it is set only when it changes.
    read_timeout: Option<Duration>,
}

impl Client {
    /// Connects to `address`, authenticated with `token` if given.
    /// `address` is `host:port` or `tcp://host:port` for the line protocol,
    /// `tls://host:port` for it over TLS, `ws://host:port[/path]` or
    /// `wss://host:port[/path]` for WebSocket (the path defaults to
    /// `/subscribe/websocket`). TLS checks the server against the public CAs.
    pub fn connect(address: &str, token: Option<&str>) -> Result<Client, Error> {
        Client::connect_with(address, token, &TlsOptions::default())
    }

    /// Connects as [`Client::connect`] does, with TLS as `tls` says: a
    /// `host:port` address speaks TLS when `tls` asks for anything.
    pub fn connect_with(
        address: &str,
        token: Option<&str>,
        tls: &TlsOptions,
    ) -> Result<Client, Error> {
        Client::connect_with_config(address, token, tls.config()?)
    }

    /// Connects as [`Client::connect`] does, speaking TLS with `config`
    /// (rustls's) when the address asks for TLS or `config` is given.
    pub fn connect_with_config(
        address: &str,
        token: Option<&str>,
        config: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Client, Error> {
        let inner = block_on(open(address, token, config))?;
        Ok(Client {
            inner,
            reply_timeout: None,
            read_timeout: None,
        })
    }

    /// How long each command waits for its answer from now on (`None`,
    /// the default, for as long as it takes); one that waits longer fails
    /// with an [`Error::Io`] of kind `WouldBlock` or `TimedOut`.
    pub fn set_reply_timeout(&mut self, timeout: Option<Duration>) {
        self.reply_timeout = timeout;
    }

    /// Runs a command with the reply timeout on the socket.
    fn call<T>(&mut self, run: impl FnOnce(&mut Inner) -> Result<T, Error>) -> Result<T, Error> {
        self.set_read_timeout(self.reply_timeout)?;
        run(&mut self.inner)
    }

    /// See [`crate::Client::command`].
    pub fn command(&mut self, request: mist_proto::Request) -> Result<Message, Error> {
        self.call(move |c: &mut Inner| block_on(c.command(request)))
    }

    /// See [`crate::Client::ping`].
    pub fn ping(&mut self) -> Result<Duration, Error> {
        self.call(|c: &mut Inner| block_on(c.ping()))
    }

    /// See [`crate::Client::publish`].
    pub fn publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.publish(tags, data)))
    }

    /// See [`crate::Client::queue_publish`].
    pub fn queue_publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        block_on(self.inner.queue_publish(tags, data))
    }

    /// See [`crate::Client::flush`].
    pub fn flush(&mut self) -> Result<(), Error> {
        block_on(self.inner.flush())
    }

    /// See [`crate::Client::subscribe`].
    pub fn subscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.subscribe(tags)).map(drop))
    }

    /// See [`crate::Client::unsubscribe`].
    pub fn unsubscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.unsubscribe(tags)))
    }

    /// See [`crate::Client::list`].
    pub fn list(&mut self) -> Result<Vec<Vec<String>>, Error> {
        self.call(|c: &mut Inner| block_on(c.list()))
    }

    /// See [`crate::Client::listall`].
    pub fn listall(&mut self) -> Result<Vec<Vec<String>>, Error> {
        self.call(|c: &mut Inner| block_on(c.listall()))
    }

    /// See [`crate::Client::who`].
    pub fn who(&mut self) -> Result<Who, Error> {
        self.call(|c: &mut Inner| block_on(c.who()))
    }

    /// See [`crate::Client::register`].
    pub fn register(&mut self, token: &str, tags: &[&str]) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.register(token, tags)))
    }

    /// See [`crate::Client::unregister`].
    pub fn unregister(&mut self, token: &str) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.unregister(token)))
    }

    /// See [`crate::Client::set`].
    pub fn set(&mut self, token: &str, tags: &[&str]) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.set(token, tags)))
    }

    /// See [`crate::Client::unset`].
    pub fn unset(&mut self, token: &str, tags: &[&str]) -> Result<(), Error> {
        self.call(|c: &mut Inner| block_on(c.unset(token, tags)))
    }

    /// See [`crate::Client::tags`].
    pub fn tags(&mut self, token: &str) -> Result<Vec<String>, Error> {
        self.call(|c: &mut Inner| block_on(c.tags(token)))
    }

    /// The next delivery or notice, waiting as long as it takes.
    pub fn next_message(&mut self) -> Result<Message, Error> {
        if let Some(message) = self.inner.next_buffered() {
            return message;
        }
        self.set_read_timeout(None)?;
        block_on(self.inner.next_message())
    }

    /// The next delivery or notice, or `None` if none comes within `wait`
    /// (a message partly read by then is kept for the next call).
    pub fn next_message_within(&mut self, wait: Duration) -> Result<Option<Message>, Error> {
        if let Some(message) = self.inner.next_buffered() {
            return message.map(Some);
        }
        self.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match block_on(self.inner.next_message()) {
            Ok(message) => Ok(Some(message)),
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The TCP socket under the connection (under TLS, if it speaks TLS),
    /// for its options: a shutdown, say.
    pub fn socket(&self) -> &std::net::TcpStream {
        self.inner.stream_ref().get_ref().tcp()
    }

    /// See [`crate::Client::close`].
    pub fn close(self) -> Result<(), Error> {
        block_on(self.inner.close())
    }

    /// Whether this client speaks WebSocket.
    pub fn is_websocket(&self) -> bool {
        self.inner.is_websocket()
    }

    /// See [`crate::Client::buffered`].
    pub fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// See [`crate::Client::send_raw`].
    pub fn send_raw(&mut self, lines: &[u8]) -> Result<(), Error> {
        block_on(self.inner.send_raw(lines))
    }

    /// The connection itself, for reading what the server sends without
    /// decoding it (a load generator counting lines).
    pub fn into_stream(self) -> Stream {
        let stream = self.inner.into_inner().into_inner();
        // As a plain socket reads: until something comes.
        let _ = stream.set_read_timeout(None);
        stream
    }

    /// The connection as an async client over the blocking stream, for
    /// what this wrapper does not offer.
    pub fn get_mut(&mut self) -> &mut crate::Client<AllowStdIo<Stream>> {
        &mut self.inner
    }

    fn set_read_timeout(&mut self, wait: Option<Duration>) -> Result<(), Error> {
        if wait == self.read_timeout {
            return Ok(());
        }
        self.inner
            .stream_ref()
            .get_ref()
            .set_read_timeout(wait)
            .map_err(Error::Io)?;
        self.read_timeout = wait;
        Ok(())
    }
}

/// A connection to `address` as [`Client::connect_with_config`] makes it.
async fn open(
    address: &str,
    token: Option<&str>,
    config: Option<Arc<rustls::ClientConfig>>,
) -> Result<Inner, Error> {
    let address = Address::parse(address)?;
    let config = match (address.tls, config) {
        (true, None) => TlsOptions {
            tls: true,
            ..TlsOptions::default()
        }
        .config()?,
        (_, config) => config,
    };
    let stream = AllowStdIo::new(Stream::connect(address.host, config.as_ref())?);
    match address.websocket {
        Some(url) => crate::Client::websocket(stream, &url, token).await,
        None => crate::Client::new(stream, token).await,
    }
}

/// A blocking client that reconnects: [`crate::reconnecting::Reconnecting`]
/// over blocking sockets, with the same calls, each waiting for its answer.
pub struct Reconnecting {
    inner: crate::reconnecting::Reconnecting<Dial>,
}

impl Reconnecting {
    /// Connects to `address` as [`Client::connect_with`] does (the first
    /// time without retrying, so a wrong address or token shows at once).
    pub fn connect(
        address: &str,
        token: Option<&str>,
        tls: &TlsOptions,
    ) -> Result<Reconnecting, Error> {
        let dial = Dial {
            address: address.to_string(),
            token: token.map(str::to_string),
            tls: tls.config()?,
        };
        let inner = block_on(crate::reconnecting::Reconnecting::connect(dial))?;
        Ok(Reconnecting { inner })
    }

    /// See [`crate::reconnecting::Reconnecting::reconnects`].
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects()
    }

    /// See [`crate::reconnecting::Reconnecting::subscribe`].
    pub fn subscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        block_on(self.inner.subscribe(tags))
    }

    /// See [`crate::reconnecting::Reconnecting::unsubscribe`].
    pub fn unsubscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        block_on(self.inner.unsubscribe(tags))
    }

    /// See [`crate::reconnecting::Reconnecting::publish`].
    pub fn publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        block_on(self.inner.publish(tags, data))
    }

    /// See [`crate::reconnecting::Reconnecting::next_event`].
    pub fn next_event(&mut self) -> Result<crate::reconnecting::Event, Error> {
        block_on(self.inner.next_event())
    }
}

/// How the blocking [`Reconnecting`] connects: as [`Client`] does, waiting
/// by sleeping the thread.
struct Dial {
    address: String,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl crate::reconnecting::Connect for Dial {
    type Stream = AllowStdIo<Stream>;

    async fn connect(&mut self) -> Result<Inner, Error> {
        open(&self.address, self.token.as_deref(), self.tls.clone()).await
    }

    async fn sleep(&mut self, wait: Duration) {
        std::thread::sleep(wait)
    }
}

/// Where a blocking client connects, read from its address.
struct Address<'a> {
    /// `host:port`.
    host: &'a str,
    /// Whether the scheme asks for TLS.
    tls: bool,
    /// The URL of a WebSocket endpoint.
    websocket: Option<String>,
}

impl<'a> Address<'a> {
    fn parse(address: &'a str) -> Result<Address<'a>, Error> {
        let (scheme, rest) = address.split_once("://").unwrap_or(("tcp", address));
        let (host, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(Error::Config(format!("{address}: no host:port in it")));
        }
        let websocket = |scheme: &str| {
            let path = if path.is_empty() || path == "/" {
                "/subscribe/websocket"
            } else {
                path
            };
            Some(format!("{scheme}://{host}{path}"))
        };
        let (tls, websocket) = match scheme {
            "tcp" | "tls" if !path.is_empty() => {
                return Err(Error::Config(format!(
                    "{address}: a {scheme}:// address has no path"
                )))
            }
            "tcp" => (false, None),
            "tls" => (true, None),
            "ws" => (false, websocket("ws")),
            "wss" => (true, websocket("wss")),
            other => {
                return Err(Error::Config(format!(
                    "{address}: mist speaks tcp://, tls://, ws:// and wss://, not {other}://"
                )))
            }
        };
        Ok(Address {
            host,
            tls,
            websocket,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Address;

    #[test]
    fn an_address_names_its_transport() {
        let read = |a| {
            let address = Address::parse(a).unwrap();
            (address.host, address.tls, address.websocket)
        };
        assert_eq!(read("h:1"), ("h:1", false, None));
        assert_eq!(read("tcp://h:1"), ("h:1", false, None));
        assert_eq!(read("tls://h:1"), ("h:1", true, None));
        let ws = Some("ws://h:1/subscribe/websocket".to_string());
        assert_eq!(read("ws://h:1"), ("h:1", false, ws));
        let wss = Some("wss://h:1/other".to_string());
        assert_eq!(read("wss://h:1/other"), ("h:1", true, wss));
        for bad in ["http://h:1", "tcp://h:1/x", "ws://", ""] {
            let error = Address::parse(bad).err().expect(bad).to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
