//! `mist --server`: turns the settings (defaults, config file, flags) into a
//! running server on the chosen runtime.

use crate::reload::Reloader;
use crate::settings::Settings;
use crate::{Cli, Failure};
use mist_auth::Registry;
use mist_engine::Config;
use mist_frontend::listener::{check_tls, split_uris, DEFAULT_LISTENERS};
use mist_frontend::tls::{Tls, TlsFiles};
use mist_frontend::{Hub, ListenerOptions, Origins};
use mist_replicator::{Replicator, Target};
use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let file = match &cli.config {
        Some(path) => Settings::from_file(Path::new(path))?,
        None => Settings::default(),
    };
    let over = Settings::from_env().overlay(Settings::from_cli(cli));
    let settings = file.overlay(over.clone());
    init_logging(settings.log_level.as_deref().unwrap_or("info"))?;
    let (config, max_line) = limits(&settings)?;
    let uris = match &settings.listeners {
        Some(listeners) => split_uris(listeners),
        None => DEFAULT_LISTENERS.iter().map(|s| s.to_string()).collect(),
    };
    let replicator = match &settings.replicator {
        Some(url) => Some(Target::parse(url).map_err(|e| Failure::Usage(e.to_string()))?),
        None => None,
    };
    let defaults = ListenerOptions::default();
    let seconds_or_off = |value: Option<u64>, default: Option<Duration>| match value {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => default,
    };
    let listener_options = ListenerOptions {
        keepalive: seconds_or_off(settings.keepalive, defaults.keepalive),
        ws_keepalive: seconds_or_off(settings.ws_keepalive, defaults.ws_keepalive),
        allowed_origins: Origins::new(settings.cors_origins.clone().unwrap_or_default()),
        sse_keepalive: seconds(
            "sse-keepalive",
            settings.sse_keepalive,
            defaults.sse_keepalive,
        )?,
        handshake_timeout: seconds(
            "handshake-timeout",
            settings.handshake_timeout,
            defaults.handshake_timeout,
        )?,
        header_timeout: seconds(
            "header-timeout",
            settings.header_timeout,
            defaults.header_timeout,
        )?,
        body_timeout: seconds("body-timeout", settings.body_timeout, defaults.body_timeout)?,
        tls: tls(&settings)?.map(Arc::new),
    };
    // Said before anything starts, as the usage error it is.
    check_tls(&uris, &listener_options).map_err(|e| Failure::Usage(e.to_string()))?;
    let runtime = settings.runtime.as_deref().unwrap_or("async-std");
    if !["async-std", "smol"].contains(&runtime) {
        return Err(Failure::Usage(format!(
            "unknown runtime {runtime:?}: use async-std or smol"
        )));
    }
    let grace = Duration::from_secs(settings.shutdown_grace.unwrap_or(10));
    raise_file_limit(config.max_connections);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = match settings.shards {
        Some(n) if (1..=mist_engine::MAX_SHARDS).contains(&n) => n,
        Some(n) => {
            return Err(Failure::Usage(format!(
                "shards must be between 1 and {}, not {n}",
                mist_engine::MAX_SHARDS
            )))
        }
        None => cores.min(mist_engine::MAX_SHARDS),
    };
    let hub = Arc::new(hub(&settings, config, max_line, shards)?);
    let reloader = Reloader {
        path: cli.config.as_ref().map(Into::into),
        over,
        applied: settings.clone(),
        hub: hub.clone(),
        tls: listener_options.tls.clone(),
        origins: listener_options.allowed_origins.clone(),
    };
    if let Some(target) = replicator {
        Replicator::start(hub.clone(), target).map_err(|e| Failure::Usage(e.to_string()))?;
    }
    if runtime == "smol" {
        let server = mist_smol::Server::bind(hub.clone(), &uris, listener_options)?;
        handle_signals(hub, reloader)?;
        server.run(grace);
    } else {
        async_std::task::block_on(async {
            let server = mist_async_std::Server::bind(hub.clone(), &uris, listener_options).await?;
            handle_signals(hub, reloader)?;
            server.run(grace).await;
            Ok::<_, Failure>(())
        })?;
    }
    log::info!("stopped");
    Ok(())
}

/// The TLS files the settings name, read and checked; none without
/// `tls-cert`.
fn tls(settings: &Settings) -> Result<Option<Tls>, Failure> {
    let Some(files) = tls_files(settings)? else {
        return Ok(None);
    };
    Tls::load(files)
        .map(Some)
        .map_err(|e| Failure::Usage(e.to_string()))
}

/// Which TLS files the settings name; none without `tls-cert`.
pub(crate) fn tls_files(settings: &Settings) -> Result<Option<TlsFiles>, Failure> {
    let files = match (&settings.tls_cert, &settings.tls_key) {
        (None, None) if settings.tls_client_ca.is_some() => {
            return Err(Failure::Usage(
                "--tls-client-ca needs --tls-cert and --tls-key".into(),
            ))
        }
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(Failure::Usage("--tls-cert needs --tls-key".into())),
        (None, Some(_)) => return Err(Failure::Usage("--tls-key needs --tls-cert".into())),
        (Some(cert), Some(key)) => TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: settings.tls_client_ca.as_ref().map(Into::into),
        },
    };
    Ok(Some(files))
}

/// A duration of at least one second from a setting, or the default.
fn seconds(name: &str, value: Option<u64>, default: Duration) -> Result<Duration, Failure> {
    match value {
        Some(0) => Err(Failure::Usage(format!("{name} must be at least 1 second"))),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Ok(default),
    }
}

/// Every connection takes a file descriptor, and the usual soft limit of
/// 1024 would refuse clients long before `max-connections`: raise it to the
/// hard limit, as nats-server and redis do, and say if that is still short.
fn raise_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let room = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    if room < max_connections.saturating_add(64) {
        log::info!(
            "the process may open {room} files: fewer connections than max-connections ({max_connections}) can be served at once; raise the limit (ulimit -Hn) to serve more"
        );
    }
}

/// The first SIGINT or SIGTERM starts a graceful shutdown; a second one
/// exits at once. SIGHUP reads the config again (see [`crate::reload`]).
fn handle_signals(hub: Arc<Hub>, mut reloader: Reloader) -> Result<(), Failure> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Failure::Failed(format!("cannot handle signals: {e}")))?;
    std::thread::Builder::new()
        .name("mist-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                match signal {
                    SIGHUP => reloader.reload(),
                    _ if stopping => {
                        log::warn!("signal {signal} again: exiting now");
                        std::process::exit(1);
                    }
                    _ => {
                        log::info!("signal {signal}: shutting down, flushing what is queued");
                        hub.shut_down();
                        stopping = true;
                    }
                }
            }
        })
        .map_err(|e| Failure::Failed(format!("cannot handle signals: {e}")))?;
    Ok(())
}

/// An open hub, or one secured by the authenticator, with its tokens loaded.
fn hub(
    settings: &Settings,
    config: Config,
    max_line: usize,
    shards: usize,
) -> Result<Hub, Failure> {
    let registry = Registry::with_builtins();
    if let Some(uri) = &settings.authenticator {
        let verifier = registry
            .open_verifier(uri)
            .map_err(|e| Failure::Usage(format!("cannot use the authenticator: {e}")))?;
        if let Some(verifier) = verifier {
            let token = match &settings.token {
                Some(token) if token.is_empty() => {
                    return Err(Failure::Usage(format!(
                        "--token must not be empty (authenticator {uri})"
                    )))
                }
                token => token.clone(),
            };
            log::info!(
                "authentication on: signed tokens (JWT), {}",
                if token.is_some() {
                    "and the server token for the admin"
                } else {
                    "no server token"
                }
            );
            return Ok(Hub::signed(config, max_line, shards, token, verifier));
        }
    }
    let (uri, token) = match (&settings.authenticator, &settings.token) {
        (None, None) => return Ok(Hub::with_shards(config, max_line, shards)),
        (Some(_), None) => return Err(Failure::Usage(
            "an authenticator needs a token (--token, or token: in the config file): the server token is what the admin authenticates with"
                .into(),
        )),
        (None, Some(_)) => {
            return Err(Failure::Usage(
                "a token needs an authenticator (--authenticator, or authenticator: in the config file), e.g. memory://".into(),
            ))
        }
        (Some(uri), Some(token)) if token.is_empty() => {
            return Err(Failure::Usage(format!(
                "--token must not be empty (authenticator {uri})"
            )))
        }
        (Some(uri), Some(token)) => (uri, token),
    };
    let authenticator = registry
        .open(uri)
        .map_err(|e| Failure::Failed(format!("cannot use the authenticator: {e}")))?;
    let grants = futures::executor::block_on(authenticator.load())
        .map_err(|e| Failure::Failed(format!("cannot load tokens from the authenticator: {e}")))?;
    log::info!("authentication on: {} token(s) registered", grants.len());
    Ok(Hub::secured(
        config,
        max_line,
        shards,
        token.clone(),
        authenticator,
        grants,
    ))
}

/// A log level as the settings give it.
pub(crate) fn level_of(level: &str) -> Result<LevelFilter, Failure> {
    level.parse().map_err(|_| {
        Failure::Usage(format!(
            "invalid log-level {level:?}: use trace, debug, info, warn or error"
        ))
    })
}

/// Logs to stderr at `level`, which a reload may change: the logger takes
/// every level and the `log` crate's maximum does the filtering.
fn init_logging(level: &str) -> Result<(), Failure> {
    let level = level_of(level)?;
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
    TermLogger::init(LevelFilter::Trace, config, TerminalMode::Stderr, color)
        .map_err(|e| Failure::Failed(format!("cannot set up logging: {e}")))?;
    log::set_max_level(level);
    Ok(())
}

/// The engine's limits and the line limit, from the settings over the defaults.
pub(crate) fn limits(settings: &Settings) -> Result<(Config, usize), Failure> {
    let positive = |name: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(Failure::Usage(format!("{name} must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let defaults = Config::default();
    let config = Config {
        max_outbox_bytes: positive(
            "max-outbox-bytes",
            settings.max_outbox_bytes,
            defaults.max_outbox_bytes,
        )?,
        max_outbox_frames: positive(
            "max-outbox-frames",
            settings.max_outbox_frames,
            defaults.max_outbox_frames,
        )?,
        max_tags: positive("max-tags", settings.max_tags, defaults.max_tags)?,
        max_tag_bytes: positive(
            "max-tag-bytes",
            settings.max_tag_bytes,
            defaults.max_tag_bytes,
        )?,
        max_subscriptions: positive(
            "max-subscriptions",
            settings.max_subscriptions,
            defaults.max_subscriptions,
        )?,
        max_subscription_bytes: positive(
            "max-subscription-bytes",
            settings.max_subscription_bytes,
            defaults.max_subscription_bytes,
        )?,
        max_connections: positive(
            "max-connections",
            settings.max_connections,
            defaults.max_connections,
        )?,
        auth_timeout: seconds("auth-timeout", settings.auth_timeout, defaults.auth_timeout)?,
        pace_timeout: settings
            .pace_timeout_ms
            .map_or(defaults.pace_timeout, Duration::from_millis),
        ..defaults
    };
    let max_line = positive("max-line", settings.max_line, mist_proto::DEFAULT_MAX_LINE)?;
    Ok((config, max_line))
}
