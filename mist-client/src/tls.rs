//! TLS for the blocking client: the server's certificate checked against
//! the public CAs (Mozilla's list) or given ones, and optionally a client
//! certificate (mutual TLS).

use crate::Error;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// How to speak TLS to a server: `tls` on, or any file given.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Speak TLS, checking the server against the public CAs unless `ca`.
    pub tls: bool,
    /// PEM CA certificates to check the server against instead.
    pub ca: Option<String>,
    /// PEM client certificate (with `key`).
    pub cert: Option<String>,
    /// PEM key of `cert`.
    pub key: Option<String>,
}

impl TlsOptions {
    /// The client configuration these options ask for; `None` for plain
    /// TCP (TLS off and no file given).
    pub fn config(&self) -> Result<Option<Arc<ClientConfig>>, Error> {
        if !self.tls && self.ca.is_none() && self.cert.is_none() && self.key.is_none() {
            return Ok(None);
        }
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(path) => {
                for cert in certificates(path, "--tls-ca")? {
                    roots.add(cert).map_err(|e| {
                        Error::Config(format!(
                            "--tls-ca {path}: a certificate rustls cannot use: {e}"
                        ))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "--tls-cert")?;
                let key_pem = read(key, "--tls-key")?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    Error::Config(format!("--tls-key {key}: no private key in PEM: {e}"))
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    Error::Config(format!(
                        "--tls-key {key} does not go with --tls-cert {cert}: {e}"
                    ))
                })?
            }
            _ => {
                return Err(Error::Config(
                    "a client certificate needs both --tls-cert and --tls-key".into(),
                ))
            }
        };
        Ok(Some(Arc::new(config)))
    }
}

fn read(path: &str, flag: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{flag} {path}: cannot read it: {e}")))
}

fn certificates(path: &str, flag: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{flag} {path}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{flag} {path}: no certificate in it"
        )));
    }
    Ok(certs)
}

/// A blocking connection to a server, plain or over TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects to `host` (`name:port`), over TLS when `tls` is given, the
    /// handshake done before it returns.
    pub fn connect(host: &str, tls: Option<&Arc<ClientConfig>>) -> Result<Stream, Error> {
        let tcp = TcpStream::connect(host).map_err(|e| {
            Error::Io(io::Error::new(
                e.kind(),
                format!(
                    "cannot connect to mist at {host}: {e} (is `mist --server` running there?)"
                ),
            ))
        })?;
        tcp.set_nodelay(true).map_err(Error::Io)?;
        let Some(config) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = host
            .rsplit_once(':')
            .map_or(host, |(name, _)| name)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| Error::Config(format!("{name} is not a host name for TLS: {e}")))?;
        let connection = ClientConnection::new(config.clone(), server_name)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
        let mut stream = StreamOwned::new(connection, tcp);
        stream
            .sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(Error::Io)?;
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| {
                Error::Io(io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {host} failed: {e}"),
                ))
            })?;
        }
        stream.sock.set_read_timeout(None).map_err(Error::Io)?;
        Ok(Stream::Tls(Box::new(stream)))
    }

    /// The TCP socket (under TLS, if it speaks TLS).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// How long a read waits; `None` for ever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.set_read_timeout(timeout),
            Stream::Tls(tls) => tls.sock.set_read_timeout(timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
