//! Embedding mist with an authenticator of your own, under its own URI
//! scheme: `static://` knows one fixed token and refuses admin changes.
//! Run it with `cargo run --example custom_authenticator`.

use async_std::io::{prelude::BufReadExt, BufReader, WriteExt};
use async_std::net::TcpStream;
use futures::StreamExt;
use mist_async_std::Server;
use mist_auth::{AuthError, Authenticator, Grants, Pending, Registry};
use mist_engine::Config;
use mist_frontend::{Hub, ListenerOptions};
use mist_proto::DEFAULT_MAX_LINE;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// One token, `viewer`, that may use the tag `public`; nothing can change.
struct StaticAuthenticator;

fn read_only<'a>() -> Pending<'a, Result<(), AuthError>> {
    Box::pin(async { Err(AuthError("static:// tokens cannot be changed".into())) })
}

impl Authenticator for StaticAuthenticator {
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>> {
        let mut grants = Grants::new();
        grants.insert("viewer".into(), BTreeSet::from(["public".to_string()]));
        Box::pin(async move { Ok(grants) })
    }
    fn register<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        read_only()
    }
    fn unregister<'a>(&'a self, _: &'a str) -> Pending<'a, Result<(), AuthError>> {
        read_only()
    }
    fn set<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        read_only()
    }
    fn unset<'a>(
        &'a self,
        _: &'a str,
        _: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        read_only()
    }
    fn tags<'a>(
        &'a self,
        token: &'a str,
    ) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>> {
        let tags = (token == "viewer").then(|| BTreeSet::from(["public".to_string()]));
        Box::pin(async move { Ok(tags) })
    }
}

async fn ask(address: &str, lines: &[u8]) -> Vec<String> {
    let stream = TcpStream::connect(address).await.unwrap();
    (&stream).write_all(lines).await.unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    BufReader::new(stream)
        .lines()
        .map(Result::unwrap)
        .collect()
        .await
}

fn main() {
    let mut registry = Registry::with_builtins();
    registry.register("static", |_uri| Ok(Arc::new(StaticAuthenticator)));
    let authenticator = registry.open("static://").expect("a registered scheme");
    let grants = futures::executor::block_on(authenticator.load()).expect("tokens load");
    let hub = Arc::new(Hub::secured(
        Config::default(),
        DEFAULT_MAX_LINE,
        2, // shards
        "admin-token".into(),
        authenticator,
        grants,
    ));

    async_std::task::block_on(async {
        let uris = ["tcp://127.0.0.1:0".to_string()];
        let server = Server::bind(hub.clone(), &uris, ListenerOptions::default())
            .await
            .expect("a free port");
        let address = server.listeners()[0].address.clone();
        let running = async_std::task::spawn(server.run(Duration::from_secs(1)));

        let viewer = ask(
            &address,
            b"{\"command\":\"auth\",\"data\":\"viewer\"}\n{\"command\":\"subscribe\",\"tags\":[\"private\"]}\n{\"command\":\"ping\"}\n",
        )
        .await;
        println!("{}", viewer.join("\n"));
        assert!(viewer[0].contains("permission denied"), "{viewer:?}");
        assert!(viewer[1].contains("pong"), "{viewer:?}");
        let admin = ask(
            &address,
            b"{\"command\":\"auth\",\"data\":\"admin-token\"}\n{\"command\":\"register\",\"tags\":[\"a\"],\"data\":\"new\"}\n",
        )
        .await;
        println!("{}", admin.join("\n"));
        assert!(
            admin[0].contains("static:// tokens cannot be changed"),
            "{admin:?}"
        );

        hub.shut_down();
        running.await;
    });
}
