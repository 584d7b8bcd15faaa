//! The server's settings, from four places, each overriding the one before:
//! built-in defaults, the config file (`--config`), the environment
//! (`MIST_TOKEN`), the command line.

use crate::{Cli, Failure};
use serde::Deserialize;
use std::path::Path;

/// Declares [`Settings`], every key once, and [`Settings::overlay`].
macro_rules! settings {
    ($($(#[$doc:meta])* $key:ident: $type:ty,)*) => {
        /// Every setting, each optional: absent means "not said here".
        ///
        /// The config file uses the same names as the flags (`log-level`,
        /// `max-outbox-bytes`, ...); an unknown key or a wrong type is an error
        /// naming it and its line, never a silent default.
        #[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $($(#[$doc])* pub $key: Option<$type>,)*
        }

        impl Settings {
            /// These settings with every one that `over` has replaced by its.
            pub fn overlay(self, over: Settings) -> Settings {
                Settings {
                    $($key: over.$key.or(self.$key),)*
                }
            }

            /// Takes the value of `key` (as the config file names it) from
            /// `from`.
            pub fn keep(&mut self, from: &Settings, key: &str) {
                $(
                    if key == stringify!($key).replace('_', "-") {
                        self.$key = from.$key.clone();
                    }
                )*
            }

            /// The keys (as the config file names them) whose values
            /// differ between these settings and `other`.
            pub fn changed(&self, other: &Settings) -> Vec<String> {
                let mut changed = Vec::new();
                $(
                    if self.$key != other.$key {
                        changed.push(stringify!($key).replace('_', "-"));
                    }
                )*
                changed
            }
        }
    };
}

settings! {
    authenticator: String,
    token: String,
    listeners: Vec<String>,
    log_level: String,
    replicator: String,
    tls_cert: String,
    tls_key: String,
    tls_client_ca: String,
    runtime: String,
    shards: usize,
    cors_origins: Vec<String>,
    max_line: usize,
    max_outbox_bytes: usize,
    max_outbox_frames: usize,
    max_tags: usize,
    max_tag_bytes: usize,
    max_subscriptions: usize,
    max_subscription_bytes: usize,
    max_connections: usize,
    keepalive: u64,
    ws_keepalive: u64,
    sse_keepalive: u64,
    shutdown_grace: u64,
    auth_timeout: u64,
    pace_timeout_ms: u64,
    handshake_timeout: u64,
    header_timeout: u64,
    body_timeout: u64,
}

impl Settings {
    /// Reads a YAML config file.
    pub fn from_file(path: &Path) -> Result<Settings, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::Failed(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        Settings::from_yaml(&text)
            .map_err(|e| Failure::Failed(format!("invalid config file {}: {e}", path.display())))
    }

    /// Parses YAML config text; an empty document is no settings.
    pub fn from_yaml(text: &str) -> Result<Settings, String> {
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        serde_norway::from_str::<Option<Settings>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string())
    }

    /// What the command line says.
    pub fn from_cli(cli: &Cli) -> Settings {
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        Settings {
            authenticator: cli.authenticator.clone(),
            token: cli.token.clone(),
            listeners: nonempty(&cli.listeners),
            log_level: cli.log_level.clone(),
            replicator: cli.replicator.clone(),
            tls_cert: cli.tls_cert.clone(),
            tls_key: cli.tls_key.clone(),
            tls_client_ca: cli.tls_client_ca.clone(),
            runtime: cli.runtime.clone(),
            shards: cli.shards,
            cors_origins: nonempty(&cli.cors_origin),
            max_line: cli.max_line,
            max_outbox_bytes: cli.max_outbox_bytes,
            max_outbox_frames: cli.max_outbox_frames,
            max_tags: cli.max_tags,
            max_tag_bytes: cli.max_tag_bytes,
            max_subscriptions: cli.max_subscriptions,
            max_subscription_bytes: cli.max_subscription_bytes,
            max_connections: cli.max_connections,
            keepalive: cli.keepalive,
            ws_keepalive: cli.ws_keepalive,
            sse_keepalive: cli.sse_keepalive,
            shutdown_grace: cli.shutdown_grace,
            auth_timeout: cli.auth_timeout,
            pace_timeout_ms: cli.pace_timeout_ms,
            handshake_timeout: cli.handshake_timeout,
            header_timeout: cli.header_timeout,
            body_timeout: cli.body_timeout,
        }
    }

    /// The server token from the environment (`MIST_TOKEN`), which keeps
    /// it out of the process list; it counts as a flag.
    pub fn from_env() -> Settings {
        Settings {
            token: std::env::var("MIST_TOKEN").ok().filter(|t| !t.is_empty()),
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads() {
        let example = include_str!("../../mist.example.yml");
        let settings = Settings::from_yaml(example).expect("the example config is valid");
        assert_eq!(settings.listeners.as_ref().map(Vec::len), Some(3));
        assert_eq!(settings.log_level.as_deref(), Some("info"));
        assert_eq!(settings.max_line, Some(1_048_576));
    }

    #[test]
    fn the_seed_keys_are_understood() {
        let seed = "authenticator: memory://\nlisteners:\n  - tcp://127.0.0.1:1445\nlog-level: INFO\ntoken: TOKEN\n";
        let settings = Settings::from_yaml(seed).unwrap();
        assert_eq!(settings.authenticator.as_deref(), Some("memory://"));
        assert_eq!(settings.token.as_deref(), Some("TOKEN"));
    }

    #[test]
    fn mistakes_are_errors_that_name_the_key_and_line() {
        let unknown = Settings::from_yaml("log-level: info\nmax-lines: 5\n").unwrap_err();
        assert!(
            unknown.contains("unknown field `max-lines`") && unknown.contains("line 2"),
            "{unknown}"
        );
        let wrong = Settings::from_yaml("max-tags: many\n").unwrap_err();
        assert!(
            wrong.contains("max-tags") && wrong.contains("line 1"),
            "{wrong}"
        );
        let not_a_list = Settings::from_yaml("listeners: tcp://x:1\n").unwrap_err();
        assert!(not_a_list.contains("listeners"), "{not_a_list}");
    }

    #[test]
    fn changed_keys_are_named_as_the_file_names_them() {
        let old = Settings::from_yaml("max-tags: 5\nlog-level: info\n").unwrap();
        let new = Settings::from_yaml("max-tags: 6\nlog-level: info\nruntime: smol\n").unwrap();
        assert_eq!(old.changed(&new), ["runtime", "max-tags"]);
        assert!(old.changed(&old).is_empty());
    }

    #[test]
    fn the_command_line_wins_over_the_file_which_wins_over_defaults() {
        let file = Settings::from_yaml("max-tags: 5\nmax-line: 100\n").unwrap();
        let flags = Settings {
            max_tags: Some(7),
            ..Settings::default()
        };
        let merged = file.overlay(flags);
        assert_eq!(merged.max_tags, Some(7), "the flag");
        assert_eq!(merged.max_line, Some(100), "the file");
        assert_eq!(merged.max_subscriptions, None, "the default, decided later");
    }
}
