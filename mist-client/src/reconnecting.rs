//! A client that survives its server going away: on a lost connection it
//! connects again, with capped backoff and no limit, makes its
//! subscriptions again, and says so. What was published while it was away
//! is lost to it, as the protocol says (messages are not stored).
//!
//! The crate spawns nothing and knows no runtime, so [`Reconnecting`]
//! takes a [`Connect`]: how to open a connection and how to wait, on the
//! caller's runtime. [`crate::blocking::Reconnecting`] is this over
//! blocking sockets. On async-std:
//!
//! ```no_run
//! use mist_client::reconnecting::{Connect, Event, Reconnecting};
//! use mist_client::{Client, Error};
//! use std::time::Duration;
//!
//! struct Dial(&'static str);
//!
//! impl Connect for Dial {
//!     type Stream = async_std::net::TcpStream;
//!     async fn connect(&mut self) -> Result<Client<Self::Stream>, Error> {
//!         let stream = async_std::net::TcpStream::connect(self.0).await?;
//!         Client::new(stream, None).await
//!     }
//!     async fn sleep(&mut self, wait: Duration) {
//!         async_std::task::sleep(wait).await
//!     }
//! }
//!
//! # async_std::task::block_on(async {
//! let mut client = Reconnecting::connect(Dial("127.0.0.1:1445")).await?;
//! client.subscribe(&["news"]).await?;
//! loop {
//!     match client.next_event().await? {
//!         Event::Message(message) => println!("{:?}", message.data),
//!         Event::Reconnected { attempts } => println!("back after {attempts} attempts"),
//!     }
//! }
//! # Ok::<(), Error>(())
//! # });
//! ```

use crate::{Client, Error, Message};
use futures::io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::time::Duration;

/// The first wait before connecting again, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How a [`Reconnecting`] client connects and waits, on some runtime.
pub trait Connect {
    /// The connection's stream.
    type Stream: AsyncRead + AsyncWrite + Unpin;

    /// A new connection to the server, authenticated.
    fn connect(&mut self) -> impl Future<Output = Result<Client<Self::Stream>, Error>>;

    /// Waits `wait` (before connecting again).
    fn sleep(&mut self, wait: Duration) -> impl Future<Output = ()>;
}

/// What [`Reconnecting::next_event`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A delivery, or a notice from the server.
    Message(Message),
    /// The connection was lost and is back, subscriptions made again;
    /// messages published meanwhile were lost. `attempts` were needed.
    Reconnected {
        /// Connection attempts it took.
        attempts: u32,
    },
}

/// A client that reconnects; see the module docs.
pub struct Reconnecting<C: Connect> {
    connect: C,
    client: Option<Client<C::Stream>>,
    /// The subscriptions to make again, in the order they were made.
    subscriptions: Vec<Vec<String>>,
    reconnects: u64,
}

impl<C: Connect> Reconnecting<C> {
    /// Connects (the first time without retrying, so a wrong address or
    /// token shows at once).
    pub async fn connect(mut connect: C) -> Result<Reconnecting<C>, Error> {
        let client = connect.connect().await?;
        Ok(Reconnecting {
            connect,
            client: Some(client),
            subscriptions: Vec::new(),
            reconnects: 0,
        })
    }

    /// Times the connection was made again so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The connection now, if there is one: for the calls this type does
    /// not make again after a reconnect.
    pub fn client(&mut self) -> Option<&mut Client<C::Stream>> {
        self.client.as_mut()
    }

    /// Subscribes now, and again after every reconnect.
    pub async fn subscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        self.with_client(async |client| client.subscribe(tags).await.map(drop))
            .await?;
        let set: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        if !self.subscriptions.contains(&set) {
            self.subscriptions.push(set);
        }
        Ok(())
    }

    /// Unsubscribes now, and no longer after a reconnect.
    pub async fn unsubscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        let set: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.subscriptions.retain(|s| *s != set);
        self.with_client(async |client| client.unsubscribe(tags).await)
            .await
    }

    /// Publishes; on a lost connection, connects again and publishes once
    /// more (so a message may be published twice if the connection broke
    /// after the server applied it, and never if it cannot reconnect).
    pub async fn publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        self.with_client(async |client| client.publish(tags, data).await)
            .await
    }

    /// The next delivery or notice, or word of a reconnect; waits as long
    /// as it takes, reconnecting as often as needed.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        if let Some(client) = &mut self.client {
            match client.next_message().await {
                Ok(message) => return Ok(Event::Message(message)),
                Err(e) if lost(&e) => self.client = None,
                Err(e) => return Err(e),
            }
        }
        let attempts = self.reconnect().await?;
        Ok(Event::Reconnected { attempts })
    }

    /// Runs `call` on a connection; a lost one is made again first, once.
    async fn with_client<T>(
        &mut self,
        mut call: impl AsyncFnMut(&mut Client<C::Stream>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.client.is_none() {
            self.reconnect().await?;
        }
        let client = self.client.as_mut().expect("connected");
        match call(client).await {
            Err(e) if lost(&e) => {
                self.client = None;
                self.reconnect().await?;
                call(self.client.as_mut().expect("connected")).await
            }
            other => other,
        }
    }

    /// Connects again until it works, with backoff, and subscribes again;
    /// returns the attempts it took. A refusal of the token or of a
    /// subscription ends it with that error.
    async fn reconnect(&mut self) -> Result<u32, Error> {
        let mut wait = BACKOFF.0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.connect_and_subscribe().await {
                Ok(client) => {
                    self.client = Some(client);
                    self.reconnects += 1;
                    return Ok(attempts);
                }
                Err(e) if lost(&e) => {
                    self.connect.sleep(wait).await;
                    wait = (wait * 2).min(BACKOFF.1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect_and_subscribe(&mut self) -> Result<Client<C::Stream>, Error> {
        let mut client = self.connect.connect().await?;
        for set in &self.subscriptions {
            let tags: Vec<&str> = set.iter().map(String::as_str).collect();
            client.subscribe(&tags).await?;
        }
        Ok(client)
    }
}

/// Whether `e` means the connection is gone (rather than a refusal).
fn lost(e: &Error) -> bool {
    matches!(e, Error::Io(_) | Error::Closed)
}
