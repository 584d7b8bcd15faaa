//! `postgres://user[:password]@host[:port]?db=NAME`: tokens in PostgreSQL,
//! in the original mist's tables `tokens(token, token_id)` and
//! `tags(token_id, tag)`, created when missing.
//!
//! Query parameters besides `db`:
//!
//! | parameter | meaning |
//! |---|---|
//! | `timeout=SECONDS` | how long connecting, and every operation, may take (default 5); the server is also told to cancel a statement after it (`statement_timeout`) |
//! | `sslmode=MODE` | `disable`, `prefer` (the default, as in libpq: TLS if the server offers it, unverified), `require` (TLS, unverified), `verify-ca` (TLS with a certificate signed by `sslrootcert`), `verify-full` (and issued for the host) |
//! | `sslrootcert=PATH` | the PEM file of the CA that signed the server's certificate, for the `verify-` modes |
//!
//! The client is asynchronous and runs on a small runtime of its own, so a
//! database that stops answering costs a timeout, never a stuck thread. Each
//! operation takes a pooled connection of its own, so one that waits (on a
//! lock, say) holds up no other; a connection that failed or timed out is
//! dropped. A database that is unreachable or silent when the server starts
//! is a startup error naming it; one that goes away later fails the admin
//! change at hand, which the admin is told about, while publishing and
//! subscribing carry on from the grants in memory.

use crate::registry::Uri;
use mist_engine::auth::{AuthError, Authenticator, Grants, Pending};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// How long connecting and each operation may take, unless the URI says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept for the next operations.
const POOLED: usize = 4;

/// Tokens in a PostgreSQL database.
pub struct PostgresAuthenticator {
    shared: Arc<Shared>,
    /// Runs the client: a thread of its own, apart from the server's runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    timeout: Duration,
    /// Names the database in errors: host, port and database, never the
    /// password.
    label: String,
    idle: Mutex<Vec<Client>>,
}

/// One operation on the database.
enum Op {
    Load,
    Register(String, BTreeSet<String>),
    Unregister(String),
    Set(String, BTreeSet<String>),
    Unset(String, BTreeSet<String>),
    Tags(String),
}

/// What an operation found.
enum Found {
    Grants(Grants),
    Done,
    Tags(Option<BTreeSet<String>>),
}

impl Op {
    /// What it is doing, for errors.
    fn doing(&self) -> &'static str {
        match self {
            Op::Load => "loading tokens",
            Op::Register(..) => "registering a token",
            Op::Unregister(_) => "removing a token",
            Op::Set(..) => "adding tags",
            Op::Unset(..) => "removing tags",
            Op::Tags(_) => "reading tags",
        }
    }
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
        let timeout = match uri.param("timeout") {
            None => DEFAULT_TIMEOUT,
            Some(seconds) => match seconds.parse::<u64>() {
                Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
                _ => {
                    return Err(AuthError(format!(
                        "invalid PostgreSQL timeout {seconds:?}: give whole seconds, at least 1"
                    )))
                }
            },
        };
        let mut config = Config::new();
        config
            .host(host)
            .port(port)
            .connect_timeout(timeout)
            .application_name("mist")
            .options(format!("-c statement_timeout={}", timeout.as_millis()));
        if let Some(credentials) = credentials {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            config.user(user);
            if !password.is_empty() {
                config.password(password);
            }
        }
        let database = uri.param("db").unwrap_or("postgres");
        config.dbname(database);
        let (mode, tls) = tls(uri.param("sslmode"), uri.param("sslrootcert"))?;
        config.ssl_mode(mode);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mist-postgres")
            .enable_all()
            .build()
            .map_err(|e| AuthError(format!("cannot start the PostgreSQL client: {e}")))?;
        Ok(PostgresAuthenticator {
            shared: Arc::new(Shared {
                config,
                tls,
                timeout,
                label: format!("{host}:{port}, database {database}"),
                idle: Mutex::new(Vec::new()),
            }),
            runtime: Some(runtime),
        })
    }

    /// Runs `op` on a connection of its own within the timeout.
    fn run(&self, op: Op) -> Pending<'_, Result<Found, AuthError>> {
        let shared = self.shared.clone();
        let doing = op.doing();
        let task = self.runtime.as_ref().map(|runtime| {
            runtime.spawn(async move {
                let work = shared.perform(op);
                match tokio::time::timeout(shared.timeout, work).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(AuthError(format!(
                        "PostgreSQL did not answer {doing} within {} s ({})",
                        shared.timeout.as_secs(),
                        shared.label
                    ))),
                }
            })
        });
        Box::pin(async move {
            let task = task.ok_or_else(|| AuthError("the PostgreSQL client has stopped".into()))?;
            task.await
                .unwrap_or_else(|e| Err(AuthError(format!("the PostgreSQL client failed: {e}"))))
        })
    }
}

impl Drop for PostgresAuthenticator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Whatever is still running is abandoned, not waited for.
            runtime.shutdown_background();
        }
    }
}

impl Shared {
    fn error(&self, doing: &str, e: tokio_postgres::Error) -> AuthError {
        let what = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => {
                // The cause says what went wrong ("invalid peer certificate:
                // UnknownIssuer"), the error itself only where.
                let mut what = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(inner) = cause {
                    what = format!("{what}: {inner}");
                    cause = inner.source();
                }
                what
            }
        };
        AuthError(format!(
            "PostgreSQL failed {doing} ({}): {what}",
            self.label
        ))
    }

    /// An idle connection, or a new one with the tables in place.
    async fn checkout(&self) -> Result<Client, AuthError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(client) = idle.filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        let connecting = |e| self.error("connecting", e);
        let client = match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(connecting)?;
                tokio::spawn(connection);
                client
            }
            Some(tls) => {
                let (client, connection) =
                    self.config.connect(tls.clone()).await.map_err(connecting)?;
                tokio::spawn(connection);
                client
            }
        };
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| self.error("creating the tables", e))?;
        Ok(client)
    }

    /// Gives a connection back for the next operation.
    fn checkin(&self, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOLED && !client.is_closed() {
            idle.push(client);
        }
    }

    /// Runs `op` in a transaction. A connection whose operation failed is
    /// not reused; one abandoned by the timeout is dropped with this future.
    async fn perform(&self, op: Op) -> Result<Found, AuthError> {
        let mut client = self.checkout().await?;
        let doing = op.doing();
        let transaction = client
            .transaction()
            .await
            .map_err(|e| self.error(doing, e))?;
        let found = op
            .apply(&transaction)
            .await
            .map_err(|e| self.error(doing, e))??;
        transaction
            .commit()
            .await
            .map_err(|e| self.error(doing, e))?;
        self.checkin(client);
        Ok(found)
    }
}

impl Op {
    /// The statements of the operation; the inner error is a refusal (an
    /// unknown token), the outer one the database's.
    async fn apply(
        self,
        tx: &tokio_postgres::Transaction<'_>,
    ) -> Result<Result<Found, AuthError>, tokio_postgres::Error> {
        let unknown = || Ok(Err(AuthError("unknown token".into())));
        let token_id = |token: String| async move {
            let row = tx
                .query_opt("SELECT token_id FROM tokens WHERE token = $1", &[&token])
                .await?;
            Ok::<_, tokio_postgres::Error>(row.map(|r| r.get::<_, i64>(0)))
        };
        let add_tags = |id: i64, tags: BTreeSet<String>| async move {
            for tag in tags {
                tx.execute(
                    "INSERT INTO tags (token_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&id, &tag],
                )
                .await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        };
        match self {
            Op::Load => {
                let rows = tx
                    .query(
                        "SELECT t.token, g.tag FROM tokens t LEFT JOIN tags g ON g.token_id = t.token_id",
                        &[],
                    )
                    .await?;
                let mut grants = Grants::new();
                for row in rows {
                    let tags = grants.entry(row.get::<_, String>(0)).or_default();
                    if let Some(tag) = row.get::<_, Option<String>>(1) {
                        tags.insert(tag);
                    }
                }
                Ok(Ok(Found::Grants(grants)))
            }
            Op::Register(token, tags) => {
                let row = tx
                    .query_opt(
                        "INSERT INTO tokens (token) VALUES ($1) ON CONFLICT (token) DO NOTHING RETURNING token_id",
                        &[&token],
                    )
                    .await?;
                let Some(row) = row else {
                    return Ok(Err(AuthError("token already registered".into())));
                };
                add_tags(row.get(0), tags).await?;
                Ok(Ok(Found::Done))
            }
            Op::Unregister(token) => {
                let Some(id) = token_id(token).await? else {
                    return unknown();
                };
                tx.execute("DELETE FROM tokens WHERE token_id = $1", &[&id])
                    .await?;
                Ok(Ok(Found::Done))
            }
            Op::Set(token, tags) => {
                let Some(id) = token_id(token).await? else {
                    return unknown();
                };
                add_tags(id, tags).await?;
                Ok(Ok(Found::Done))
            }
            Op::Unset(token, tags) => {
                let Some(id) = token_id(token).await? else {
                    return unknown();
                };
                let tags: Vec<String> = tags.into_iter().collect();
                tx.execute(
                    "DELETE FROM tags WHERE token_id = $1 AND tag = ANY($2)",
                    &[&id, &tags],
                )
                .await?;
                Ok(Ok(Found::Done))
            }
            Op::Tags(token) => {
                let Some(id) = token_id(token).await? else {
                    return Ok(Ok(Found::Tags(None)));
                };
                let rows = tx
                    .query("SELECT tag FROM tags WHERE token_id = $1", &[&id])
                    .await?;
                Ok(Ok(Found::Tags(Some(
                    rows.iter().map(|r| r.get(0)).collect(),
                ))))
            }
        }
    }
}

/// The TLS settings of `sslmode` and `sslrootcert`.
fn tls(
    mode: Option<&str>,
    root: Option<&str>,
) -> Result<(SslMode, Option<MakeRustlsConnect>), AuthError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| AuthError(format!("cannot set up TLS for PostgreSQL: {e}")))
    };
    let roots = |mode: &str| -> Result<Arc<RootCertStore>, AuthError> {
        let path = root.ok_or_else(|| {
            AuthError(format!(
                "sslmode={mode} needs sslrootcert=PATH: the CA that signed the PostgreSQL server's certificate"
            ))
        })?;
        let mut store = RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| AuthError(format!("cannot read sslrootcert {path}: {e}")))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|e| AuthError(format!("cannot read sslrootcert {path}: {e}")))?;
            store.add(certificate).map_err(|e| {
                AuthError(format!("sslrootcert {path} holds a bad certificate: {e}"))
            })?;
        }
        if store.is_empty() {
            return Err(AuthError(format!(
                "sslrootcert {path} holds no certificate"
            )));
        }
        Ok(Arc::new(store))
    };
    let checked_by = |chain: Option<Arc<WebPkiServerVerifier>>| -> Result<ClientConfig, AuthError> {
        let verifier = Verifier {
            provider: provider.clone(),
            chain,
        };
        Ok(builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    };
    let (mode, config) = match mode.unwrap_or("prefer") {
        "disable" => return Ok((SslMode::Disable, None)),
        "prefer" => (SslMode::Prefer, checked_by(None)?),
        "require" => (SslMode::Require, checked_by(None)?),
        "verify-full" => (
            SslMode::Require,
            builder()?
                .with_root_certificates(roots("verify-full")?)
                .with_no_client_auth(),
        ),
        "verify-ca" => {
            let chain =
                WebPkiServerVerifier::builder_with_provider(roots("verify-ca")?, provider.clone())
                    .build()
                    .map_err(|e| AuthError(format!("cannot set up TLS for PostgreSQL: {e}")))?;
            (SslMode::Require, checked_by(Some(chain))?)
        }
        other => {
            return Err(AuthError(format!(
                "invalid sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    Ok((mode, Some(MakeRustlsConnect::new(config))))
}

/// Checks the server's certificate as the mode says: `prefer` and `require`
/// take any (TLS without checking who answers, as libpq does); `verify-ca`
/// wants a chain to the CA, whatever the name.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// The CA's chain check, for `verify-ca`.
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl Authenticator for PostgresAuthenticator {
    fn load(&self) -> Pending<'_, Result<Grants, AuthError>> {
        let found = self.run(Op::Load);
        Box::pin(async move {
            match found.await? {
                Found::Grants(grants) => Ok(grants),
                _ => Ok(Grants::new()),
            }
        })
    }

    fn register<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        done(self.run(Op::Register(token.into(), tags.clone())))
    }

    fn unregister<'a>(&'a self, token: &'a str) -> Pending<'a, Result<(), AuthError>> {
        done(self.run(Op::Unregister(token.into())))
    }

    fn set<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        done(self.run(Op::Set(token.into(), tags.clone())))
    }

    fn unset<'a>(
        &'a self,
        token: &'a str,
        tags: &'a BTreeSet<String>,
    ) -> Pending<'a, Result<(), AuthError>> {
        done(self.run(Op::Unset(token.into(), tags.clone())))
    }

    fn tags<'a>(
        &'a self,
        token: &'a str,
    ) -> Pending<'a, Result<Option<BTreeSet<String>>, AuthError>> {
        let found = self.run(Op::Tags(token.into()));
        Box::pin(async move {
            match found.await? {
                Found::Tags(tags) => Ok(tags),
                _ => Ok(None),
            }
        })
    }
}

/// An operation whose only answer is that it is done.
fn done(found: Pending<'_, Result<Found, AuthError>>) -> Pending<'_, Result<(), AuthError>> {
    Box::pin(async move { found.await.map(|_| ()) })
}
