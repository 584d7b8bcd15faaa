//! TLS for the `tls://`, `wss://` and `https://` listeners: the server's
//! certificate and key (and, for mutual TLS, the CA its clients' certificates
//! must be signed by), read from PEM files and checked at start, swappable
//! while the server runs; and the stream a handshake yields, which the
//! connection code shares between its reader and writer as it does a TCP
//! stream.
//!
//! rustls does the TLS, over `futures::io` through futures-rustls, so the
//! connection handling stays written once for every runtime.

use futures::io::{AsyncRead, AsyncWrite};
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{self, RootCertStore, ServerConfig};
use parking_lot::{Mutex, RwLock};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

/// Where the server's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, the server's own certificate first
    /// (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key, PEM: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: PathBuf,
    /// Only clients presenting a certificate signed by one of these CAs
    /// (PEM) get in (`--tls-client-ca`).
    pub client_ca: Option<PathBuf>,
}

/// Why TLS material could not be used; names the file or flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsError {
    /// A problem with a setting rather than a file.
    pub fn new(what: impl Into<String>) -> TlsError {
        TlsError(what.into())
    }
}

/// The server's TLS settings now; [`Tls::reload`] swaps them for new
/// connections, leaving open ones as they are.
pub struct Tls {
    files: Mutex<TlsFiles>,
    config: RwLock<Arc<ServerConfig>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &*self.files.lock())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Tls {}

impl Tls {
    /// Reads and checks `files`: every file readable, a certificate and a
    /// key in them, the key the certificate's, the certificate not expired.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let config = server_config(&files)?;
        Ok(Tls {
            files: Mutex::new(files),
            config: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads `files` (the same paths, or new ones) again and uses them for
    /// connections from now on; on any problem the old settings stay.
    pub fn reload(&self, files: TlsFiles) -> Result<(), TlsError> {
        self.replace_with(Tls::load(files)?);
        Ok(())
    }

    /// Uses what `new` (checked already, see [`Tls::load`]) holds for
    /// connections from now on; open ones keep theirs.
    pub fn replace_with(&self, new: Tls) {
        *self.config.write() = new.config.into_inner();
        *self.files.lock() = new.files.into_inner();
    }

    /// The files in use.
    pub fn files(&self) -> TlsFiles {
        self.files.lock().clone()
    }

    /// What a new connection's handshake uses.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(self.config.read().clone())
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        TlsError(format!(
            "cannot read the TLS {what} {}: {e}",
            path.display()
        ))
    })
}

/// Every certificate in the PEM file at `path`.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "the TLS {what} {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "the TLS {what} {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&files.cert, "certificate")?;
    check_validity(&chain[0], &files.cert)?;
    let key_pem = read(&files.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError(format!(
            "the TLS key {} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1): {e}",
            files.key.display()
        ))
    })?;
    let provider = Arc::new(provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS: {e}")))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "client CA")? {
                roots.add(cert).map_err(|e| {
                    TlsError(format!(
                        "the TLS client CA {} holds a certificate rustls cannot use: {e}",
                        path.display()
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError(format!("the TLS client CA {}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError(format!(
            "the TLS key {} does not go with the certificate {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    // The server's order of cipher suites decides (see `provider`).
    config.ignore_client_order = true;
    Ok(config)
}

/// rustls's ring provider with AES-128-GCM first: as secure for this use,
/// and a quarter cheaper per byte than AES-256 on a server that encrypts
/// every message once per subscriber. ChaCha20 stays for clients without
/// AES in hardware.
pub fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        use rustls::CipherSuite as C;
        match suite.suite() {
            C::TLS13_AES_128_GCM_SHA256 => 0,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 1,
            C::TLS13_CHACHA20_POLY1305_SHA256 => 2,
            _ => 3,
        }
    });
    provider
}

/// Refuses a certificate that is expired or not valid yet: clients would
/// refuse it anyway, each with an error far from its cause.
fn check_validity(cert: &CertificateDer<'_>, path: &Path) -> Result<(), TlsError> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(cert).map_err(|e| {
        TlsError(format!(
            "the TLS certificate {} cannot be read: {e}",
            path.display()
        ))
    })?;
    let validity = &parsed.tbs_certificate.validity;
    let now = SystemTime::now();
    if validity.not_after.to_system_time() < now {
        return Err(TlsError(format!(
            "the TLS certificate {} expired at {}",
            path.display(),
            validity.not_after
        )));
    }
    if validity.not_before.to_system_time() > now {
        return Err(TlsError(format!(
            "the TLS certificate {} is not valid before {}",
            path.display(),
            validity.not_before
        )));
    }
    Ok(())
}

/// Encrypted bytes rustls may hold for one connection before a write
/// takes no more; what a writer hands over at once fits.
const WRITE_LIMIT: usize = 1024 * 1024;

/// A TLS connection that, like a TCP stream, can be cloned so its reader
/// and writer work independently. Each read or write holds the lock for
/// one poll only, never across a wait.
pub struct TlsStream<S> {
    inner: Arc<Mutex<futures_rustls::server::TlsStream<S>>>,
}

impl<S> Clone for TlsStream<S> {
    fn clone(&self) -> TlsStream<S> {
        TlsStream {
            inner: self.inner.clone(),
        }
    }
}

impl<S> TlsStream<S> {
    /// Shares a connection whose handshake is done.
    pub fn new(mut stream: futures_rustls::server::TlsStream<S>) -> TlsStream<S> {
        // rustls takes at most 64 KiB of plaintext per write by default, so
        // a batch larger than that cost several writes (and system calls);
        // the outbox bounds what a connection holds already.
        stream.get_mut().1.set_buffer_limit(Some(WRITE_LIMIT));
        TlsStream {
            inner: Arc::new(Mutex::new(stream)),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner.lock()).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner.lock()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner.lock()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner.lock()).poll_close(cx)
    }
}
