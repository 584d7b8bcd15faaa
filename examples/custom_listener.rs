//! Embedding mist with a listener scheme of your own: `unix://PATH` serves
//! the line protocol on a Unix socket. Run it with
//! `cargo run --example custom_listener`.

use async_std::io::{prelude::BufReadExt, BufReader, WriteExt};
use async_std::os::unix::net::{UnixListener, UnixStream};
use async_std::task;
use futures::StreamExt;
use mist_async_std::Server;
use mist_engine::Config;
use mist_frontend::listener::CustomListeners;
use mist_frontend::{serve, Error, Hub, ListenerOptions};
use mist_proto::DEFAULT_MAX_LINE;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let path = std::env::temp_dir().join(format!("mist-example-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut custom = CustomListeners::default();
    custom.register("unix", |hub, spec| {
        // Bind now, so a bad path is a startup error; accept in the task.
        let path = spec.address.clone();
        let listener = task::block_on(UnixListener::bind(&path)).map_err(|source| Error::Bind {
            uri: spec.to_string(),
            source,
        })?;
        Ok(Box::pin(async move {
            let mut incoming = listener.incoming();
            while let Some(Ok(stream)) = incoming.next().await {
                let hub = hub.clone();
                // The shared connection handling, over any AsyncRead/AsyncWrite.
                task::spawn(async move {
                    serve(&hub, &stream, &stream).await.ok();
                });
            }
        }))
    });

    let hub = Arc::new(Hub::new(Config::default(), DEFAULT_MAX_LINE));
    task::block_on(async {
        let uris = [format!("unix://{}", path.display())];
        let server = Server::bind_with(hub.clone(), &uris, ListenerOptions::default(), &custom)
            .await
            .expect("the unix listener starts");
        let running = task::spawn(server.run(Duration::from_secs(1)));

        let client = UnixStream::connect(&path).await.unwrap();
        (&client)
            .write_all(b"{\"command\":\"ping\"}\n")
            .await
            .unwrap();
        let reply = BufReader::new(&client)
            .lines()
            .next()
            .await
            .unwrap()
            .unwrap();
        println!("{reply}");
        assert_eq!(reply, r#"{"command":"ping","data":"pong"}"#);

        hub.shut_down();
        running.await;
    });
    let _ = std::fs::remove_file(&path);
}
