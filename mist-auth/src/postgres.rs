//! `postgres://user[:password]@host[:port]?db=NAME`: tokens in PostgreSQL,
//! in the original mist's tables `tokens(token, token_id)` and
//! `tags(token_id, tag)`, created when missing.
//!
//! The client is synchronous and runs on the blocking thread pool, one
//! statement batch at a time, never on the async runtime's threads. A
//! database that is unreachable when the server starts is a startup error
//! (from [`Authenticator::load`]); one that goes away later fails the admin
//! change at hand, which the admin is told about, while publishing and
//! subscribing carry on from the grants in memory. The next change
//! reconnects.

use crate::registry::Uri;
use mist_engine::auth::{AuthError, Authenticator, Grants, Pending};
use postgres::{Client, Config, NoTls, Transaction};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS tokens (
        token_id BIGSERIAL PRIMARY KEY,
        token TEXT NOT NULL UNIQUE
    );
    CREATE TABLE IF NOT EXISTS tags (
        token_id BIGINT NOT NULL REFERENCES tokens (token_id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (token_id, tag)
    );";

/// How long to wait for the database to answer a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Tokens in a PostgreSQL database.
pub struct PostgresAuthenticator {
    config: Config,
    /// The open connection, if any; reopened after a failure.
    client: Arc<Mutex<Option<Client>>>,
}

impl PostgresAuthenticator {
    /// Reads the connection settings from a `postgres://` URI; connects on
    /// first use.
    pub fn from_uri(uri: &Uri) -> Result<PostgresAuthenticator, AuthError> {
        let (credentials, address) = match uri.authority.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, uri.authority.as_str()),
        };
        let address = address.trim_end_matches('/');
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| AuthError(format!("invalid PostgreSQL port {port:?}")))?;
                (host, port)
            }
            None => (address, 5432),
        };
        if host.is_empty() {
            return Err(AuthError(
                "postgres needs a host: postgres://user@host:port?db=NAME".into(),
            ));
        }
        let mut config = Config::new();
        config
            .host(host)
            .port(port)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(credentials) = credentials {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            config.user(user);
            if !password.is_empty() {
                config.password(password);
            }
        }
        if let Some(db) = uri.param("db") {
            config.dbname(db);
        }
        Ok(PostgresAuthenticator {
            config,
            client: Arc::new(Mutex::new(None)),
        })
    }

    /// Runs `work` in one transaction on the blocking pool, connecting (and
    /// creating the tables) first if needed.
    fn transact<'a, T, F>(&'a self, work: F) -> Pending<'a, Result<T, AuthError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> Result<T, AuthError> + Send + 'static,
    {
        let (config, client) = (self.config.clone(), self.client.clone());
        Box::pin(blocking::unblock(move || {
            let mut slot = client.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_none_or(Client::is_closed) {
                let mut fresh = config
                    .connect(NoTls)
                    .map_err(|e| db_error("connecting", e))?;
                fresh
                    .batch_execute(SCHEMA)
                    .map_err(|e| db_error("creating the tables", e))?;
                *slot = Some(fresh);
            }
            let Some(connection) = slot.as_mut() else {
                return Err(AuthError("no database connection".into()));
            };
            let outcome = (|| {
                let mut transaction = connection
                    .transaction()
                    .map_err(|e| db_error("starting", e))?;
                let value = work(&mut transaction)?;
                transaction
                    .commit()
                    .map_err(|e| db_error("committing", e))?;
                Ok(value)
            })();
            if connection.is_closed() {
                *slot = None;
            }
            outcome
        }))
    }
}

fn db_error(doing: &str, e: postgres::Error) -> AuthError {
    match e.as_db_error() {
        Some(db) => AuthError(format!("PostgreSQL failed {doing}: {}", db.message())),
        None => AuthError(format!("PostgreSQL failed {doing}: {e}")),
    }
}

/// The id of a registered token.
fn token_id(tx: &mut Transaction<'_>, token: &str) -> Result<i64, AuthError> {
    let row = tx
        .query_opt("SELECT token_id FROM tokens WHERE token = $1", &[&token])
        .map_err(|e| db_error("looking up a token", e))?;
    row.map(|r| r.get(0))
        .ok_or_else(|| AuthError("unknown token".into()))
}

fn add_tags(tx: &mut Transaction<'_>, id: i64, tags: &BTreeSet<String>) -> Result<(), AuthError> {
    for tag in tags {
        tx.execute(
            "INSERT INTO tags (token_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, tag],
        )
        .map_err(|e| db_error("adding a tag", e))?;
    }
    Ok(())
}

impl Authenticator for PostgresAuthenticator {
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>> {
        self.transact(|tx| {
            let mut grants = Grants::new();
            let rows = tx
                .query(
                    "SELECT t.token, g.tag FROM tokens t LEFT JOIN tags g ON g.token_id = t.token_id",
                    &[],
                )
                .map_err(|e| db_error("loading tokens", e))?;
            for row in rows {
                let tags = grants.entry(row.get::<_, String>(0)).or_default();
                if let Some(tag) = row.get::<_, Option<String>>(1) {
                    tags.insert(tag);
                }
            }
            Ok(grants)
        })
    }

    fn register<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        let (token, tags) = (token.to_string(), tags.clone());
        self.transact(move |tx| {
            let row = tx
                .query_opt(
                    "INSERT INTO tokens (token) VALUES ($1) ON CONFLICT (token) DO NOTHING RETURNING token_id",
                    &[&token],
                )
                .map_err(|e| db_error("registering a token", e))?;
            let id: i64 = row
                .map(|r| r.get(0))
                .ok_or_else(|| AuthError("token already registered".into()))?;
            add_tags(tx, id, &tags)
        })
    }

    fn unregister<'a>(&'a self, token: &'a str) -> Pending<'a, Result<(), AuthError>> {
        let token = token.to_string();
        self.transact(move |tx| {
            let id = token_id(tx, &token)?;
            tx.execute("DELETE FROM tokens WHERE token_id = $1", &[&id])
                .map_err(|e| db_error("removing a token", e))?;
            Ok(())
        })
    }

    fn set<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        let (token, tags) = (token.to_string(), tags.clone());
        self.transact(move |tx| {
            let id = token_id(tx, &token)?;
            add_tags(tx, id, &tags)
        })
    }

    fn unset<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        let (token, tags) = (token.to_string(), tags.clone());
        self.transact(move |tx| {
            let id = token_id(tx, &token)?;
            let tags: Vec<String> = tags.into_iter().collect();
            tx.execute(
                "DELETE FROM tags WHERE token_id = $1 AND tag = ANY($2)",
                &[&id, &tags],
            )
            .map_err(|e| db_error("removing tags", e))?;
            Ok(())
        })
    }

    fn tags<'a>(
        &'a self,
        token: &'a str,
    ) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>> {
        let token = token.to_string();
        self.transact(move |tx| {
            let id = match token_id(tx, &token) {
                Ok(id) => id,
                Err(_) => return Ok(None),
            };
            let rows = tx
                .query("SELECT tag FROM tags WHERE token_id = $1", &[&id])
                .map_err(|e| db_error("reading tags", e))?;
            Ok(Some(rows.iter().map(|r| r.get(0)).collect()))
        })
    }
}
