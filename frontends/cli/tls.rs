//! TLS for the client subcommands and `mist bench`: `--tls` checks the
//! server's certificate against the public CAs (Mozilla's list),
//! `--tls-ca PATH` against the given CAs instead, and `--tls-cert` with
//! `--tls-key` present a client certificate (mutual TLS).

use crate::Failure;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// The TLS flags of a client command.
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    pub tls: bool,
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl TlsFlags {
    /// The client configuration the flags ask for; `None` for plain TCP.
    pub fn config(&self) -> Result<Option<Arc<ClientConfig>>, Failure> {
        if !self.tls && self.ca.is_none() && self.cert.is_none() && self.key.is_none() {
            return Ok(None);
        }
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(path) => {
                for cert in certificates(path, "--tls-ca")? {
                    roots.add(cert).map_err(|e| {
                        Failure::Usage(format!(
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
            .map_err(|e| Failure::Failed(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "--tls-cert")?;
                let key_pem = read(key, "--tls-key")?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                    Failure::Usage(format!("--tls-key {key}: no private key in PEM: {e}"))
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    Failure::Usage(format!(
                        "--tls-key {key} does not go with --tls-cert {cert}: {e}"
                    ))
                })?
            }
            _ => {
                return Err(Failure::Usage(
                    "a client certificate needs both --tls-cert and --tls-key".into(),
                ))
            }
        };
        Ok(Some(Arc::new(config)))
    }
}

fn read(path: &str, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("{flag} {path}: cannot read it: {e}")))
}

fn certificates(path: &str, flag: &str) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let pem = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(format!("{flag} {path}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Failure::Usage(format!(
            "{flag} {path}: no certificate in it"
        )));
    }
    Ok(certs)
}

/// A connection to a server, plain or over TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects to `host` (`name:port`), over TLS when `tls` is given, the
    /// handshake done before it returns.
    pub fn connect(host: &str, tls: Option<&Arc<ClientConfig>>) -> Result<Stream, Failure> {
        let tcp = TcpStream::connect(host).map_err(|e| {
            Failure::Failed(format!(
                "cannot connect to mist at {host}: {e} (is `mist --server` running there?)"
            ))
        })?;
        tcp.set_nodelay(true)?;
        let Some(config) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = host
            .rsplit_once(':')
            .map_or(host, |(name, _)| name)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| Failure::Usage(format!("{name} is not a host name for TLS: {e}")))?;
        let connection = ClientConnection::new(config.clone(), server_name)
            .map_err(|e| Failure::Failed(format!("TLS: {e}")))?;
        let mut stream = StreamOwned::new(connection, tcp);
        stream
            .sock
            .set_read_timeout(Some(Duration::from_secs(10)))?;
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| Failure::Failed(format!("TLS handshake with {host} failed: {e}")))?;
        }
        stream.sock.set_read_timeout(None)?;
        Ok(Stream::Tls(Box::new(stream)))
    }

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
