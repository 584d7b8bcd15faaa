//! mist-client against a real server: every call over TCP, WebSocket (on
//! the ws listener and the HTTP one) and TLS, the async client over an
//! async runtime's socket, errors carrying the server's words, and a
//! subscribe that returns only once it is in place.

mod support;

use futures::StreamExt;
use mist_client::reconnecting::{Connect, Event, Reconnecting};
use mist_client::{blocking, Error, TlsOptions};
use std::time::Duration;
use support::{Certs, Server};

/// The addresses of `server`'s line and WebSocket endpoints, as a
/// mist-client user writes them.
fn addresses(server: &Server) -> [String; 3] {
    [
        format!("tcp://{}", server.addr),
        format!("ws://{}", server.listeners["ws"]),
        format!("ws://{}/subscribe/websocket", server.listeners["http"]),
    ]
}

#[test]
fn a_subscription_is_in_place_when_subscribe_returns_on_every_transport() {
    let server = Server::start();
    for subscriber in addresses(&server) {
        for publisher in addresses(&server) {
            subscribe_and_publish(&subscriber, &publisher);
        }
    }
}

fn subscribe_and_publish(subscriber: &str, publisher: &str) {
    let mut subscriber = blocking::Client::connect(subscriber, None).unwrap();
    let mut publisher = blocking::Client::connect(publisher, None).unwrap();
    for round in 0..20 {
        let tag = format!("fresh-{round}");
        subscriber.subscribe(&[&tag]).unwrap();
        publisher.publish(&[&tag], "right away").unwrap();
        let message = subscriber
            .next_message_within(Duration::from_secs(5))
            .unwrap()
            .expect("the message published right after subscribe returned");
        assert_eq!(message.data.as_deref(), Some("right away"));
    }
    // Never its own.
    subscriber.publish(&["fresh-0"], "mine").unwrap();
    assert!(subscriber
        .next_message_within(Duration::from_millis(200))
        .unwrap()
        .is_none());
    assert!(subscriber.ping().unwrap() < Duration::from_secs(1));
    assert_eq!(
        subscriber.list().unwrap().len(),
        20,
        "every subscription listed"
    );
    subscriber.unsubscribe(&["fresh-0"]).unwrap();
    assert_eq!(subscriber.list().unwrap().len(), 19);
    let who = publisher.who().unwrap();
    assert_eq!((who.connections, who.subscribers), (2, 1), "{}", who.text);
    assert_eq!(publisher.listall().unwrap().len(), 19);
    subscriber.close().unwrap();
    publisher.close().unwrap();
}

#[test]
fn a_websocket_refusal_names_its_status_and_a_read_timeout_loses_nothing() {
    let server = Server::start_with(&["--authenticator", "memory://", "--token", "adm"]);
    for address in addresses(&server).into_iter().skip(1) {
        match blocking::Client::connect(&address, Some("wrong")).err() {
            Some(Error::Server { command, message }) => {
                assert_eq!(command, "connect");
                assert!(message.contains("401"), "{message}");
                assert!(message.contains("authentication failed"), "{message}");
                assert!(!message.contains("wrong"), "never the token: {message}");
            }
            other => panic!("{address}: {other:?}"),
        }
        let mut subscriber = blocking::Client::connect(&address, Some("adm")).unwrap();
        subscriber.subscribe(&["t"]).unwrap();
        // Nothing yet: the read times out, and the connection goes on.
        for _ in 0..3 {
            let nothing = subscriber.next_message_within(Duration::from_millis(50));
            assert!(nothing.unwrap().is_none());
        }
        let mut publisher = blocking::Client::connect(&server.addr, Some("adm")).unwrap();
        let big = "x".repeat(200_000);
        publisher.publish(&["t"], &big).unwrap();
        let message = subscriber.next_message_within(Duration::from_secs(5));
        assert_eq!(message.unwrap().unwrap().data.as_deref(), Some(&big[..]));
        assert!(subscriber.ping().is_ok());
    }
}

#[test]
fn a_refusal_is_an_error_in_the_servers_words() {
    let server = Server::start_with(&[
        "--max-tags",
        "2",
        "--authenticator",
        "memory://",
        "--token",
        "adm",
    ]);
    let refused = blocking::Client::connect(&server.addr, Some("wrong")).err();
    match refused {
        Some(Error::Server { command, message }) => {
            assert_eq!(command, "auth");
            assert!(message.contains("authentication failed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut admin = blocking::Client::connect(&server.addr, Some("adm")).unwrap();
    match admin.subscribe(&["a", "b", "c"]) {
        Err(Error::Server { command, message }) => {
            assert_eq!(command, "subscribe");
            assert!(message.contains('2'), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The connection is still usable, and the admin commands work.
    admin.register("reader", &["news"]).unwrap();
    admin.set("reader", &["sport"]).unwrap();
    assert_eq!(admin.tags("reader").unwrap(), ["news", "sport"]);
    admin.unset("reader", &["sport"]).unwrap();
    let mut reader = blocking::Client::connect(&server.addr, Some("reader")).unwrap();
    reader.subscribe(&["news"]).unwrap();
    assert!(matches!(
        reader.subscribe(&["sport"]),
        Err(Error::Server { .. })
    ));
    admin.unregister("reader").unwrap();
    let closed = reader.next_message_within(Duration::from_secs(5)).unwrap();
    assert!(
        closed
            .and_then(|m| m.error)
            .is_some_and(|e| e.contains("unregistered")),
        "told why"
    );
}

#[test]
fn the_async_client_runs_over_async_std_sockets() {
    let server = Server::start_on("smol", &[]);
    async_std::task::block_on(async_session(&server, async_std::net::TcpStream::connect));
}

#[test]
fn the_async_client_runs_over_smol_sockets() {
    let server = Server::start_on("async-std", &[]);
    smol::block_on(async_session(&server, smol::net::TcpStream::connect));
}

#[test]
fn the_async_client_runs_over_tokio_sockets_through_compat() {
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async_session(&server, |addr| async move {
        Ok(tokio::net::TcpStream::connect(addr).await?.compat())
    }));
}

/// Subscriptions as streams, the client as a stream of what they passed
/// over, and WebSocket, over sockets that `connect` opens.
async fn async_session<S, F>(server: &Server, connect: impl Fn(String) -> F)
where
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
    F: std::future::Future<Output = std::io::Result<S>>,
{
    let stream = connect(server.addr.clone()).await.unwrap();
    let mut subscriber = mist_client::Client::new(stream, None).await.unwrap();
    subscriber.subscribe(&["c"]).await.unwrap();
    let mut subscription = subscriber.subscribe(&["a"]).await.unwrap();
    let stream = connect(server.addr.clone()).await.unwrap();
    let mut publisher = mist_client::Client::new(stream, None).await.unwrap();
    publisher.publish(&["a", "b"], "async").await.unwrap();
    publisher
        .publish(&["c"], "the other subscription's")
        .await
        .unwrap();
    publisher.publish(&["b", "a"], "second").await.unwrap();
    let message = subscription.next().await.unwrap().unwrap();
    assert_eq!(message.tags, Some(vec!["a".to_string(), "b".to_string()]));
    assert_eq!(message.data.as_deref(), Some("async"));
    let message = subscription.next().await.unwrap().unwrap();
    assert_eq!(message.data.as_deref(), Some("second"));
    // What the stream passed over waits for next_message.
    let aside = subscriber.next_message().await.unwrap();
    assert_eq!(aside.data.as_deref(), Some("the other subscription's"));
    // And over WebSocket, on the same runtime.
    let stream = connect(server.listeners["ws"].clone()).await.unwrap();
    let url = format!("ws://{}/subscribe/websocket", server.listeners["ws"]);
    let mut over_ws = mist_client::Client::websocket(stream, &url, None)
        .await
        .unwrap();
    over_ws.subscribe(&["b"]).await.unwrap();
    publisher.publish(&["b"], "to the socket").await.unwrap();
    let message = over_ws.next_message().await.unwrap();
    assert_eq!(message.data.as_deref(), Some("to the socket"));
    over_ws.close().await.unwrap();
}

#[test]
fn over_tls_with_and_without_a_client_certificate() {
    let certs = Certs::new();
    let mut args = certs.server_flags();
    args.extend(["--tls-client-ca".to_string(), certs.path("ca.pem")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_listening("async-std", &["tcp", "tls"], &args, &[]);
    let tls = TlsOptions {
        ca: Some(certs.path("ca.pem")),
        cert: Some(certs.path("client.pem")),
        key: Some(certs.path("client.key")),
        ..TlsOptions::default()
    };
    let mut client = blocking::Client::connect_with(&server.listeners["tls"], None, &tls).unwrap();
    client.subscribe(&["t"]).unwrap();
    assert!(client.ping().is_ok());
    let without = TlsOptions {
        ca: Some(certs.path("ca.pem")),
        ..TlsOptions::default()
    };
    let refused = blocking::Client::connect_with(&server.listeners["tls"], None, &without)
        .and_then(|mut c| c.ping());
    assert!(refused.is_err(), "no client certificate, no service");
    let unreadable = TlsOptions {
        ca: Some(certs.path("nowhere.pem")),
        ..TlsOptions::default()
    };
    match blocking::Client::connect_with(&server.listeners["tls"], None, &unreadable) {
        Err(Error::Config(why)) => assert!(why.contains("nowhere.pem"), "{why}"),
        other => panic!("{:?}", other.err()),
    }
}

/// What the reconnect scenario asks of a reconnecting client.
trait Reconnects {
    fn subscribe(&mut self, tags: &[&str]);
    fn unsubscribe(&mut self, tags: &[&str]);
    fn next_event(&mut self) -> Event;
    fn reconnects(&self) -> u64;
}

impl Reconnects for blocking::Reconnecting {
    fn subscribe(&mut self, tags: &[&str]) {
        blocking::Reconnecting::subscribe(self, tags).unwrap()
    }
    fn unsubscribe(&mut self, tags: &[&str]) {
        blocking::Reconnecting::unsubscribe(self, tags).unwrap()
    }
    fn next_event(&mut self) -> Event {
        blocking::Reconnecting::next_event(self).unwrap()
    }
    fn reconnects(&self) -> u64 {
        blocking::Reconnecting::reconnects(self)
    }
}

/// The async client's way to connect, over async-std's WebSocket sockets.
struct AsyncStdWebSocket(String);

impl Connect for AsyncStdWebSocket {
    type Stream = async_std::net::TcpStream;

    async fn connect(&mut self) -> Result<mist_client::Client<Self::Stream>, Error> {
        let stream = async_std::net::TcpStream::connect(&self.0).await?;
        let url = format!("ws://{}/subscribe/websocket", self.0);
        mist_client::Client::websocket(stream, &url, None).await
    }

    async fn sleep(&mut self, wait: Duration) {
        async_std::task::sleep(wait).await
    }
}

impl Reconnects for Reconnecting<AsyncStdWebSocket> {
    fn subscribe(&mut self, tags: &[&str]) {
        async_std::task::block_on(Reconnecting::subscribe(self, tags)).unwrap()
    }
    fn unsubscribe(&mut self, tags: &[&str]) {
        async_std::task::block_on(Reconnecting::unsubscribe(self, tags)).unwrap()
    }
    fn next_event(&mut self) -> Event {
        async_std::task::block_on(Reconnecting::next_event(self)).unwrap()
    }
    fn reconnects(&self) -> u64 {
        Reconnecting::reconnects(self)
    }
}

#[test]
fn a_reconnecting_client_comes_back_with_its_subscriptions() {
    reconnect("tcp", |addr| {
        Box::new(blocking::Reconnecting::connect(addr, None, &TlsOptions::default()).unwrap())
    });
}

#[test]
fn the_async_reconnecting_client_comes_back_over_websocket() {
    reconnect("ws", |addr| {
        let dial = AsyncStdWebSocket(addr.to_string());
        Box::new(async_std::task::block_on(Reconnecting::connect(dial)).unwrap())
    });
}

/// A client subscribes, its server goes away and another takes its port
/// (a `scheme` listener): the client says it is back, subscribed again.
fn reconnect(scheme: &str, connect: impl FnOnce(&str) -> Box<dyn Reconnects>) {
    let port = support::free_port();
    let listener = format!("{scheme}://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let args = ["--listeners", &listener];
    let first = Server::start_with(&args);
    support::wait_listening(&addr);
    let mut client = connect(&addr);
    client.subscribe(&["a", "b"]);
    client.subscribe(&["c"]);
    client.unsubscribe(&["c"]);
    drop(first);
    let second = Server::start_with(&args);
    support::wait_listening(&addr);
    match client.next_event() {
        Event::Reconnected { attempts } => assert!(attempts >= 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.reconnects(), 1);
    // Subscribed again, to what it still wanted: a publish right away
    // arrives, and one for the set it left does not.
    let mut publisher = blocking::Client::connect(&second.addr, None).unwrap();
    publisher.publish(&["c"], "left").unwrap();
    publisher.publish(&["b", "a"], "back").unwrap();
    match client.next_event() {
        Event::Message(m) => assert_eq!(m.data.as_deref(), Some("back")),
        other => panic!("{other:?}"),
    }
    let who = publisher.who().unwrap();
    assert_eq!(who.subscribers, 1, "{}", who.text);
}
