//! SIGHUP: the server reads its config file (and the TLS and JWT key files
//! it names) again and applies what can change while it runs: the TLS
//! certificate (new connections use the new one, open ones are
//! untouched), the log level, the CORS origins, the limits on new work and
//! the JWT key. A setting that cannot change live (listeners, the
//! authenticator, the runtime, ...) is reported as needing a restart. A
//! config with a mistake anywhere is refused as a whole: the error is
//! logged and the old settings stay. Flags still win over the file.

use crate::server::{level_of, limits, tls_files};
use crate::settings::Settings;
use crate::Failure;
use mist_auth::Registry;
use mist_frontend::tls::Tls;
use mist_frontend::{Hub, Origins};
use std::path::PathBuf;
use std::sync::Arc;

/// The keys a reload applies; any other that changed needs a restart.
const LIVE: [&str; 15] = [
    "log-level",
    "cors-origins",
    "tls-cert",
    "tls-key",
    "tls-client-ca",
    "max-line",
    "max-outbox-bytes",
    "max-outbox-frames",
    "max-tags",
    "max-tag-bytes",
    "max-subscriptions",
    "max-subscription-bytes",
    "max-connections",
    "auth-timeout",
    "pace-timeout-ms",
];

/// What a reload reads and changes.
pub struct Reloader {
    /// The config file, if the server was given one.
    pub path: Option<PathBuf>,
    /// The environment and the flags, which win over the file.
    pub over: Settings,
    /// The settings in force.
    pub applied: Settings,
    pub hub: Arc<Hub>,
    pub tls: Option<Arc<Tls>>,
    pub origins: Origins,
}

/// What a reload will apply, every part of it checked.
struct Checked {
    settings: Settings,
    level: log::LevelFilter,
    config: mist_engine::Config,
    max_line: usize,
    tls: Option<Tls>,
    verifier: Option<Arc<dyn mist_engine::auth::TokenVerifier>>,
}

impl Reloader {
    /// Reads and applies the config again; says in the log what it did.
    pub fn reload(&mut self) {
        let Some(path) = self.path.clone() else {
            log::warn!("SIGHUP: this server has no config file (--config) to read again");
            return;
        };
        match self.check() {
            Err(e) => log::error!(
                "SIGHUP: {} refused, nothing changed: {}",
                path.display(),
                match e {
                    Failure::Usage(m) | Failure::Failed(m) => m,
                }
            ),
            Ok(checked) => self.apply(checked, &path),
        }
    }

    /// Reads the config file and every file it names, and checks them all.
    fn check(&self) -> Result<Checked, Failure> {
        let file = match &self.path {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let settings = file.overlay(self.over.clone());
        let level = level_of(settings.log_level.as_deref().unwrap_or("info"))?;
        let (config, max_line) = limits(&settings)?;
        let tls = match (tls_files(&settings)?, &self.tls) {
            (Some(files), Some(_)) => {
                Some(Tls::load(files).map_err(|e| Failure::Usage(e.to_string()))?)
            }
            _ => None,
        };
        let verifier = match &settings.authenticator {
            Some(uri) if Some(uri) == self.applied.authenticator.as_ref() => {
                Registry::with_builtins()
                    .open_verifier(uri)
                    .map_err(|e| Failure::Usage(format!("the authenticator: {e}")))?
            }
            _ => None,
        };
        Ok(Checked {
            settings,
            level,
            config,
            max_line,
            tls,
            verifier,
        })
    }

    fn apply(&mut self, checked: Checked, path: &std::path::Path) {
        let changed = self.applied.changed(&checked.settings);
        let (live, restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|key| LIVE.contains(&key.as_str()));
        let tls_now = checked.settings.tls_cert.is_some();
        if self.tls.is_none() && tls_now {
            log::warn!("SIGHUP: TLS was off at start; turning it on needs a restart");
        }
        if self.tls.is_some() && !tls_now {
            log::warn!("SIGHUP: TLS listeners cannot go without a certificate; the old one stays until a restart");
        }
        let mut reread = Vec::new();
        if checked.tls.is_some() {
            reread.push("the TLS files");
        }
        if checked.verifier.is_some() {
            reread.push("the JWT key");
        }
        log::set_max_level(checked.level);
        self.origins
            .set(checked.settings.cors_origins.clone().unwrap_or_default());
        self.hub.reconfigure(checked.config, checked.max_line);
        if let (Some(tls), Some(new)) = (&self.tls, checked.tls) {
            tls.replace_with(new);
        }
        if let Some(verifier) = checked.verifier {
            self.hub.set_token_verifier(verifier);
        }
        for key in &restart {
            log::warn!("SIGHUP: {key} changed; it takes effect only after a restart");
        }
        let reread = if reread.is_empty() {
            String::new()
        } else {
            format!(" ({} read anew as well)", reread.join(" and "))
        };
        log::info!(
            "SIGHUP: {} read again; applied {}{reread}",
            path.display(),
            if live.is_empty() {
                "no changed setting".to_string()
            } else {
                live.join(", ")
            }
        );
        let mut applied = checked.settings;
        // What needs a restart is still what the server runs with.
        for key in restart {
            applied.keep(&self.applied, &key);
        }
        self.applied = applied;
    }
}
