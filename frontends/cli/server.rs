//! `mist --server`: turns the flags into a running async-std server.

use crate::{Cli, Failure};
use mist_auth::Registry;
use mist_engine::Config;
use mist_frontend::listener::{split_uris, DEFAULT_LISTENERS};
use mist_frontend::{Hub, ListenerOptions};
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

pub fn run(cli: &Cli) -> Result<(), Failure> {
    init_logging(&cli.log_level)?;
    let (config, max_line) = limits(cli)?;
    let uris = if cli.listeners.is_empty() {
        DEFAULT_LISTENERS.iter().map(|s| s.to_string()).collect()
    } else {
        split_uris(&cli.listeners)
    };
    if let Some(replicator) = &cli.replicator {
        return Err(Failure::Usage(format!(
            "--replicator {replicator:?}: replication is not available in this version of mist"
        )));
    }
    let defaults = ListenerOptions::default();
    let http = ListenerOptions {
        keepalive: match cli.keepalive {
            Some(0) => None,
            Some(seconds) => Some(Duration::from_secs(seconds)),
            None => defaults.keepalive,
        },
        allowed_origins: if cli.cors_origin.is_empty() {
            defaults.allowed_origins
        } else {
            cli.cors_origin.clone()
        },
        sse_keepalive: match cli.sse_keepalive {
            Some(0) => {
                return Err(Failure::Usage(
                    "--sse-keepalive must be at least 1 second".into(),
                ))
            }
            Some(seconds) => Duration::from_secs(seconds),
            None => defaults.sse_keepalive,
        },
    };
    if !["async-std", "smol"].contains(&cli.runtime.as_str()) {
        return Err(Failure::Usage(format!(
            "unknown --runtime {:?}: use async-std or smol",
            cli.runtime
        )));
    }
    let grace = Duration::from_secs(cli.shutdown_grace.unwrap_or(10));
    let hub = Arc::new(hub(cli, config, max_line)?);
    if cli.runtime == "smol" {
        let server = mist_smol::Server::bind(hub.clone(), &uris, http)?;
        stop_on_signals(hub)?;
        server.run(grace);
    } else {
        async_std::task::block_on(async {
            let server = mist_async_std::Server::bind(hub.clone(), &uris, http).await?;
            stop_on_signals(hub)?;
            server.run(grace).await;
            Ok::<_, Failure>(())
        })?;
    }
    log::info!("stopped");
    Ok(())
}

/// The first SIGINT or SIGTERM starts a graceful shutdown; a second one
/// exits at once.
fn stop_on_signals(hub: Arc<Hub>) -> Result<(), Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Failure::Failed(format!("cannot handle signals: {e}")))?;
    std::thread::Builder::new()
        .name("mist-signals".into())
        .spawn(move || {
            let mut signals = signals.forever();
            if let Some(signal) = signals.next() {
                log::info!("signal {signal}: shutting down, flushing what is queued");
                hub.shut_down();
            }
            if let Some(signal) = signals.next() {
                log::warn!("signal {signal} again: exiting now");
                std::process::exit(1);
            }
        })
        .map_err(|e| Failure::Failed(format!("cannot handle signals: {e}")))?;
    Ok(())
}

/// An open hub, or one secured by the authenticator, with its tokens loaded.
fn hub(cli: &Cli, config: Config, max_line: usize) -> Result<Hub, Failure> {
    let (uri, token) = match (&cli.authenticator, &cli.token) {
        (None, None) => return Ok(Hub::new(config, max_line)),
        (Some(_), None) => return Err(Failure::Usage(
            "--authenticator needs --token: the server token is what the admin authenticates with"
                .into(),
        )),
        (None, Some(_)) => {
            return Err(Failure::Usage(
                "--token needs --authenticator, e.g. --authenticator memory://".into(),
            ))
        }
        (Some(uri), Some(token)) if token.is_empty() => {
            return Err(Failure::Usage(format!(
                "--token must not be empty (authenticator {uri})"
            )))
        }
        (Some(uri), Some(token)) => (uri, token),
    };
    let authenticator = Registry::with_builtins()
        .open(uri)
        .map_err(|e| Failure::Failed(format!("cannot use the authenticator: {e}")))?;
    let grants = futures::executor::block_on(authenticator.load())
        .map_err(|e| Failure::Failed(format!("cannot load tokens from the authenticator: {e}")))?;
    log::info!("authentication on: {} token(s) registered", grants.len());
    Ok(Hub::secured(
        config,
        max_line,
        token.clone(),
        authenticator,
        grants,
    ))
}

fn init_logging(level: &str) -> Result<(), Failure> {
    let level: LevelFilter = level.parse().map_err(|_| {
        Failure::Usage(format!(
            "invalid --log-level {level:?}: use trace, debug, info, warn or error"
        ))
    })?;
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    // tide announces its listener itself; mist already logged every listener.
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .add_filter_ignore_str("tide")
        .build();
    TermLogger::init(level, config, TerminalMode::Stderr, color)
        .map_err(|e| Failure::Failed(format!("cannot set up logging: {e}")))
}

/// The engine's limits and the line limit, from the flags over the defaults.
fn limits(cli: &Cli) -> Result<(Config, usize), Failure> {
    let positive = |flag: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(Failure::Usage(format!("--{flag} must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let defaults = Config::default();
    let config = Config {
        max_outbox_bytes: positive(
            "max-outbox-bytes",
            cli.max_outbox_bytes,
            defaults.max_outbox_bytes,
        )?,
        max_outbox_frames: positive(
            "max-outbox-frames",
            cli.max_outbox_frames,
            defaults.max_outbox_frames,
        )?,
        max_tags: positive("max-tags", cli.max_tags, defaults.max_tags)?,
        max_subscriptions: positive(
            "max-subscriptions",
            cli.max_subscriptions,
            defaults.max_subscriptions,
        )?,
    };
    let max_line = positive("max-line", cli.max_line, mist_proto::DEFAULT_MAX_LINE)?;
    Ok((config, max_line))
}
