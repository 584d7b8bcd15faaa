//! A blocking client that survives its server going away: on a lost
//! connection it connects again, with capped backoff and no limit, makes
//! its subscriptions again, and says so. What was published while it was
//! away is lost to it, as the protocol says (messages are not stored).

use crate::blocking::Client;
use crate::{Error, Message, TlsOptions};
use std::thread;
use std::time::Duration;

/// The first wait before connecting again, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

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

/// A blocking client that reconnects; see the module docs.
pub struct Reconnecting {
    host: String,
    token: Option<String>,
    tls: TlsOptions,
    client: Option<Client>,
    /// The subscriptions to make again, in the order they were made.
    subscriptions: Vec<Vec<String>>,
    reconnects: u64,
}

impl Reconnecting {
    /// Connects (the first time without retrying, so a wrong address or
    /// token shows at once).
    pub fn connect(
        host: &str,
        token: Option<&str>,
        tls: &TlsOptions,
    ) -> Result<Reconnecting, Error> {
        let client = Client::connect_with(host, token, tls)?;
        Ok(Reconnecting {
            host: host.to_string(),
            token: token.map(str::to_string),
            tls: tls.clone(),
            client: Some(client),
            subscriptions: Vec::new(),
            reconnects: 0,
        })
    }

    /// Times the connection was made again so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Subscribes now, and again after every reconnect.
    pub fn subscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        self.with_client(|client| client.subscribe(tags))?;
        let set: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        if !self.subscriptions.contains(&set) {
            self.subscriptions.push(set);
        }
        Ok(())
    }

    /// Unsubscribes now, and no longer after a reconnect.
    pub fn unsubscribe(&mut self, tags: &[&str]) -> Result<(), Error> {
        let set: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.subscriptions.retain(|s| *s != set);
        self.with_client(|client| client.unsubscribe(tags))
    }

    /// Publishes; on a lost connection, connects again and publishes once
    /// more (so a message may be published twice if the connection broke
    /// after the server applied it, and never if it cannot reconnect).
    pub fn publish(&mut self, tags: &[&str], data: &str) -> Result<(), Error> {
        self.with_client(|client| client.publish(tags, data))
    }

    /// The next delivery or notice, or word of a reconnect; waits as long
    /// as it takes, reconnecting as often as needed.
    pub fn next_event(&mut self) -> Result<Event, Error> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                return self
                    .reconnect()
                    .map(|attempts| Event::Reconnected { attempts })
            }
        };
        match client.next_message() {
            Ok(message) => Ok(Event::Message(message)),
            Err(e) if lost(&e) => {
                self.client = None;
                self.reconnect()
                    .map(|attempts| Event::Reconnected { attempts })
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `call` on a connection; a lost one is made again first, once.
    fn with_client<T>(
        &mut self,
        mut call: impl FnMut(&mut Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.client.is_none() {
            self.reconnect()?;
        }
        let client = self.client.as_mut().expect("connected");
        match call(client) {
            Err(e) if lost(&e) => {
                self.client = None;
                self.reconnect()?;
                call(self.client.as_mut().expect("connected"))
            }
            other => other,
        }
    }

    /// Connects again until it works, with backoff, and subscribes again;
    /// returns the attempts it took. A refusal of the token or of a
    /// subscription ends it with that error.
    fn reconnect(&mut self) -> Result<u32, Error> {
        let mut wait = BACKOFF.0;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.connect_and_subscribe() {
                Ok(client) => {
                    self.client = Some(client);
                    self.reconnects += 1;
                    return Ok(attempts);
                }
                Err(e) if lost(&e) => {
                    thread::sleep(wait);
                    wait = (wait * 2).min(BACKOFF.1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn connect_and_subscribe(&self) -> Result<Client, Error> {
        let mut client = Client::connect_with(&self.host, self.token.as_deref(), &self.tls)?;
        for set in &self.subscriptions {
            let tags: Vec<&str> = set.iter().map(String::as_str).collect();
            client.subscribe(&tags)?;
        }
        Ok(client)
    }
}

/// Whether `e` means the connection is gone (rather than a refusal).
fn lost(e: &Error) -> bool {
    matches!(e, Error::Io(_) | Error::Closed)
}
