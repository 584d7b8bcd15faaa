//! Embedding mist with a command of your own: `shout` publishes its data in
//! capitals. Run it with `cargo run --example custom_command`.

use async_std::io::{prelude::BufReadExt, BufReader, WriteExt};
use async_std::net::TcpStream;
use futures::StreamExt;
use mist_async_std::Server;
use mist_engine::{CommandContext, Config};
use mist_frontend::{Hub, ListenerOptions};
use mist_proto::{Request, DEFAULT_MAX_LINE};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let hub = Arc::new(Hub::new(Config::default(), DEFAULT_MAX_LINE));
    // A handler runs inside the engine: quick, no IO.
    let shout = |ctx: &mut CommandContext<'_>, request: &Request| {
        let tags = request.tags.clone().unwrap_or_default();
        let data = request
            .data
            .as_ref()
            .map(|d| d.to_text())
            .unwrap_or_default();
        ctx.publish(&tags, &data.to_uppercase())
    };
    hub.register_command("shout", shout)
        .expect("not a built-in name");

    async_std::task::block_on(async {
        let uris = ["tcp://127.0.0.1:0".to_string()];
        let server = Server::bind(hub.clone(), &uris, ListenerOptions::default())
            .await
            .expect("a free port");
        let address = server.listeners()[0].address.clone();
        let running = async_std::task::spawn(server.run(Duration::from_secs(1)));

        let listener = TcpStream::connect(&address).await.unwrap();
        let mut lines = BufReader::new(listener.clone()).lines();
        (&listener)
            .write_all(b"{\"command\":\"subscribe\",\"tags\":[\"news\"]}\n{\"command\":\"ping\"}\n")
            .await
            .unwrap();
        lines.next().await; // the pong: subscribed

        let shouter = TcpStream::connect(&address).await.unwrap();
        (&shouter)
            .write_all(b"{\"command\":\"shout\",\"tags\":[\"news\"],\"data\":\"hello\"}\n")
            .await
            .unwrap();
        let delivered = lines.next().await.unwrap().unwrap();
        println!("{delivered}");
        assert_eq!(
            delivered,
            r#"{"command":"publish","tags":["news"],"data":"HELLO"}"#
        );

        hub.shut_down();
        running.await;
    });
}
