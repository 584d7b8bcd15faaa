//! Test support: the real `mist` binary as a server process, mist-client's
//! blocking client with the checks tests make on what it reads (over TCP
//! lines, TLS and WebSocket), HTTP and SSE clients, and real PostgreSQL and
//! Redis servers.

#![allow(dead_code)] // each test file uses a different part

use mist_proto::{Message, Request};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

/// How long a test waits for anything the server should do promptly.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Both runtimes a server can run on.
pub const RUNTIMES: [&str; 2] = ["async-std", "smol"];

pub fn mist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mist"))
}

/// The listener schemes every runtime serves.
const SCHEMES: [&str; 3] = ["tcp", "ws", "http"];

/// A running `mist --server` on free ports, killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port` of the TCP listener.
    pub addr: String,
    /// `host:port` of each listener, by scheme.
    pub listeners: HashMap<String, String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the async-std server with extra flags and waits until it listens.
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_on("async-std", args)
    }

    /// Starts a server on `runtime` with a TCP, a WebSocket and an HTTP
    /// listener and waits until they listen.
    pub fn start_on(runtime: &str, args: &[&str]) -> Server {
        Server::start_with_env(runtime, args, &[])
    }

    /// Like [`Server::start_on`], with environment variables set.
    pub fn start_with_env(runtime: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_listening(runtime, &SCHEMES, args, env)
    }

    /// Starts a server on `runtime` with a listener of each of `schemes`
    /// (TCP first) on free ports and waits until they listen.
    pub fn start_listening(
        runtime: &str,
        schemes: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let listeners: Vec<String> = schemes
            .iter()
            .map(|scheme| format!("{scheme}://127.0.0.1:0"))
            .collect();
        let mut child = mist()
            .envs(env.iter().copied())
            .args(["--server", "--runtime", runtime, "--log-level", "debug"])
            .args(["--listeners", &listeners.join(",")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mist binary starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, uri)) = line.split_once("listening on ") {
                    if let Some((scheme, addr)) = uri.trim().split_once("://") {
                        let _ = found.send((scheme.to_string(), addr.to_string()));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut listeners = HashMap::new();
        while listeners.len() < schemes.len() {
            let (scheme, addr) = listening
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("server did not start: {:?}", log.lock().unwrap()));
            listeners.insert(scheme, addr);
        }
        Server {
            child,
            addr: listeners[schemes[0]].clone(),
            listeners,
            log,
        }
    }

    /// A client of the TCP listener.
    pub fn connect(&self) -> Client {
        Client::tcp(&self.addr)
    }

    /// A client over `transport`.
    pub fn client(&self, transport: Transport) -> Client {
        match transport {
            Transport::Tcp => Client::tcp(&self.addr),
            Transport::Ws => Client::websocket(&format!(
                "ws://{}/subscribe/websocket",
                self.listeners["ws"]
            )),
            Transport::HttpWs => Client::websocket(&format!(
                "ws://{}/subscribe/websocket",
                self.listeners["http"]
            )),
        }
    }

    /// A client over `transport` presenting `token`: as its first message on
    /// TCP, in the `X-Auth-Token` header on the ws port, and in the
    /// `x-auth-token` query parameter on the HTTP port.
    pub fn client_with_token(&self, transport: Transport, token: &str) -> Client {
        match transport {
            Transport::Tcp => {
                let mut client = Client::tcp(&self.addr);
                client.send(Request::new("auth").data(token));
                client
            }
            Transport::Ws => {
                let url = format!("ws://{}/subscribe/websocket", self.listeners["ws"]);
                let inner = mist_client::blocking::Client::connect(&url, Some(token))
                    .unwrap_or_else(|e| panic!("WebSocket handshake: {e}"));
                Client { inner }
            }
            Transport::HttpWs => Client::websocket(&format!(
                "ws://{}/subscribe/websocket?x-auth-token={token}",
                self.listeners["http"]
            )),
        }
    }

    /// The HTTP status a WebSocket handshake over `transport` gets with
    /// `token` (none when `None`); 101 when it is accepted.
    pub fn websocket_status(&self, transport: Transport, token: Option<&str>) -> u16 {
        let port = if transport == Transport::Ws {
            "ws"
        } else {
            "http"
        };
        let url = format!("ws://{}/subscribe/websocket", self.listeners[port]);
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("X-Auth-Token", token.parse().unwrap());
        }
        match tungstenite::connect(request) {
            Ok(_) => 101,
            Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    /// `host:port` of the HTTP listener.
    pub fn http(&self) -> &str {
        &self.listeners["http"]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM: a graceful shutdown.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGHUP, and waits until the server logged that it read its
    /// config again (applied or refused); returns what it logged for it.
    pub fn hangup(&self) -> Vec<String> {
        let before = self.log().len();
        self.signal("HUP");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let said: Vec<String> = self.log()[before..]
                .iter()
                .filter(|line| line.contains("SIGHUP"))
                .cloned()
                .collect();
            if said
                .iter()
                .any(|line| line.contains("read again") || line.contains("refused"))
            {
                return said;
            }
            assert!(Instant::now() < deadline, "no reload in {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, returning its exit code.
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit: {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still alive (it never exits on bad input).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a test client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Lines over the TCP listener.
    Tcp,
    /// WebSocket on the `ws://` listener.
    Ws,
    /// WebSocket on the HTTP listener's `/subscribe/websocket`.
    HttpWs,
}

/// A blocking client of the protocol over any transport: mist-client's,
/// with the checks tests make on what it reads.
pub struct Client {
    inner: mist_client::blocking::Client,
}

impl Client {
    /// A client of the TCP line listener at `addr`.
    pub fn tcp(addr: &str) -> Client {
        Client::at(addr, None)
    }

    /// A client at `address` (any scheme mist-client knows) trusting the
    /// CAs of `tls`, if given; the handshakes are done when it returns (a
    /// refusal that TLS 1.3 reports only after them, such as a missing
    /// client certificate, shows on the first read).
    pub fn at(address: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Client {
        let inner = mist_client::blocking::Client::connect_with_config(address, None, tls)
            .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
        Client { inner }
    }

    /// A client of a `tls://` listener at `addr` trusting `config`'s CAs.
    pub fn tls(addr: &str, config: Arc<rustls::ClientConfig>) -> Client {
        Client::at(&format!("tls://{addr}"), Some(config))
    }

    /// A WebSocket client over TLS (`wss://`) trusting `config`'s CAs.
    pub fn websocket_tls(url: &str, config: Arc<rustls::ClientConfig>) -> Client {
        Client::at(url, Some(config))
    }

    /// A WebSocket client of `url` (`ws://`).
    pub fn websocket(url: &str) -> Client {
        Client::at(url, None)
    }

    /// Closes the connection cleanly (a WebSocket with a close frame).
    pub fn close(self) {
        self.inner.close().expect("a clean close");
    }

    /// The TCP socket under the client (under TLS, if it speaks TLS), for
    /// writing bytes past the client or shutting it.
    pub fn stream(&self) -> &TcpStream {
        self.inner.socket()
    }

    pub fn send(&mut self, request: Request) {
        self.send_raw(&request.to_line());
    }

    /// Sends raw bytes: over TCP as they are (half a line, several lines,
    /// garbage); over WebSocket one text frame per line (so UTF-8).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.inner.send_raw(bytes).expect("send");
    }

    /// Sends one line, adding its newline.
    pub fn send_line(&mut self, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        self.send_raw(&bytes);
    }

    pub fn subscribe(&mut self, tags: &[&str]) {
        self.send(Request::new("subscribe").tags(tags.iter().copied()));
        assert_eq!(self.sync(), [], "subscribe is silent");
    }

    /// Publishes and waits for the server to have applied it, so that every
    /// delivery is already queued for its subscribers when this returns.
    /// Returns what reached this client meanwhile.
    pub fn publish(&mut self, tags: &[&str], data: &str) -> Vec<Message> {
        self.send(
            Request::new("publish")
                .tags(tags.iter().copied())
                .data(data),
        );
        self.sync()
    }

    /// The next frame, or `None` if none arrives within `timeout`.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<Message> {
        match self.inner.next_message_within(timeout) {
            Ok(frame) => frame,
            Err(mist_client::Error::Closed) => panic!("the server closed the connection"),
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Reads `n` frames, checking that each starts with `prefix`: for tests
    /// that receive a great many. Over TCP the lines are read off the socket
    /// without decoding them.
    pub fn skim(&mut self, n: usize, prefix: &str) {
        assert_eq!(
            self.inner.buffered(),
            0,
            "skim before anything else arrived"
        );
        let deadline = Instant::now() + TIMEOUT * 3;
        if self.inner.is_websocket() {
            for seen in 0..n {
                assert!(Instant::now() < deadline, "only {seen} of {n} frames came");
                let frame = self.recv();
                let text = serde_json::to_string(&frame).unwrap();
                assert!(text.starts_with(prefix), "frame {seen}: {text}");
            }
            return;
        }
        let mut socket = self.stream();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut seen = 0;
        let mut line_start = true;
        let mut buf = vec![0u8; 256 * 1024];
        while seen < n {
            assert!(Instant::now() < deadline, "only {seen} of {n} frames came");
            let got = socket.read(&mut buf).expect("read");
            assert!(got > 0, "the server closed after {seen} frames");
            for (i, &b) in buf[..got].iter().enumerate() {
                if line_start {
                    let rest = &buf[i..got];
                    let want = prefix.as_bytes();
                    let k = rest.len().min(want.len());
                    assert_eq!(&rest[..k], &want[..k], "frame {seen}");
                }
                line_start = b == b'\n';
                seen += usize::from(line_start);
            }
        }
        assert_eq!(seen, n, "more frames than expected");
    }

    pub fn recv(&mut self) -> Message {
        self.try_recv(TIMEOUT).expect("a frame from the server")
    }

    /// Sends a ping and returns every frame that arrived before its pong.
    /// Commands take effect in order, so the pong proves all earlier ones did.
    pub fn sync(&mut self) -> Vec<Message> {
        self.send(Request::new("ping"));
        let mut before = Vec::new();
        loop {
            let frame = self.recv();
            if frame.command == "ping" && frame.error.is_none() {
                assert_eq!(frame.data.as_deref(), Some("pong"));
                return before;
            }
            before.push(frame);
        }
    }

    /// Data of every delivery that arrived before a ping's pong.
    pub fn deliveries(&mut self) -> Vec<String> {
        self.sync()
            .into_iter()
            .map(|m| {
                assert_eq!(m.command, "publish", "{m:?}");
                m.data.unwrap_or_default()
            })
            .collect()
    }

    /// Waits until the server closes the connection, returning the frames
    /// that came before.
    pub fn until_closed(&mut self) -> Vec<Message> {
        let mut frames = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("the server closes the connection");
            match self.inner.next_message_within(left) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {}
                Err(_) => return frames,
            }
        }
    }

    /// The error text of the next frame, which must be an error reply.
    pub fn error(&mut self) -> String {
        let frame = self.recv();
        match frame.error {
            Some(error) => error,
            None => panic!("expected an error reply, got {frame:?}"),
        }
    }
}

/// A WebSocket as tungstenite gives it.
pub type RawWebSocket = WebSocket<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket to `url`, for tests of the framing itself (binary,
/// ping and close frames), which a protocol client does not send.
pub fn raw_websocket(url: &str) -> RawWebSocket {
    let (socket, _) = tungstenite::connect(url).expect("WebSocket handshake");
    socket
}

/// A `ping` over a new `tls://` connection to `addr` trusting `config`:
/// an error when the server refuses the handshake.
pub fn tls_ping(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Duration, mist_client::Error> {
    let address = format!("tls://{addr}");
    let mut client =
        mist_client::blocking::Client::connect_with_config(&address, None, Some(config))?;
    client.set_reply_timeout(Some(TIMEOUT));
    client.ping()
}

/// Certificates made for one test, in a directory of their own removed
/// with it: a CA, a server certificate it signed for `localhost` and
/// `127.0.0.1`, and a client certificate it signed.
pub struct Certs {
    dir: TempDir,
    ca_pem: String,
}

impl Certs {
    pub fn new() -> Certs {
        Certs::valid_between((2020, 1, 1), (2099, 1, 1))
    }

    /// With a server certificate valid only from `start` to `end` (year,
    /// month, day).
    pub fn valid_between(start: (i32, u8, u8), end: (i32, u8, u8)) -> Certs {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = TempDir::new(&format!("certs-{n}"));
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "mist test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, file: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = vec![usage];
            if file == "server" {
                params.not_before = rcgen::date_time_ymd(start.0, start.1, start.2);
                params.not_after = rcgen::date_time_ymd(end.0, end.1, end.2);
            }
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            std::fs::write(dir.file(&format!("{file}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.file(&format!("{file}.key")), key.serialize_pem()).unwrap();
        };
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        leaf(names, ExtendedKeyUsagePurpose::ServerAuth, "server");
        leaf(
            vec!["a client".to_string()],
            ExtendedKeyUsagePurpose::ClientAuth,
            "client",
        );
        let ca_pem = ca_cert.pem();
        std::fs::write(dir.file("ca.pem"), &ca_pem).unwrap();
        Certs { dir, ca_pem }
    }

    /// The path of one of the files: `ca.pem`, `server.pem`, `server.key`,
    /// `client.pem`, `client.key`.
    pub fn path(&self, file: &str) -> String {
        self.dir.file(file)
    }

    /// The server flags for these certificates.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.path("server.pem"),
            "--tls-key".into(),
            self.path("server.key"),
        ]
    }

    /// A client configuration trusting the CA, presenting the client
    /// certificate if `with_certificate`.
    pub fn client_config(&self, with_certificate: bool) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_certificate {
            let chain = CertificateDer::pem_file_iter(self.path("client.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(self.path("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

/// A directory of a test's own under the system's temporary one, named
/// for the process and `name`, removed with its contents when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mist-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The directory itself.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// `file` in it, as a string for a command line.
    pub fn file(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stdout of a command that must have succeeded; `what` and its stderr
/// say what failed if it did not.
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Says that (part of) a test is skipped, where a test run shows it: on
/// stderr directly, which the test harness does not capture, so a local
/// run without the tool does not pass silently. (In CI nothing skips: the
/// callers fail there instead.)
pub fn skipped(what: &str) {
    let _ = writeln!(std::io::stderr(), "NOTICE: {what}");
}

/// A minimal HTTP/1.1 exchange: sends `request` (with `Connection: close`
/// added) and returns the status code, the headers and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    HttpResponse::parse(&raw)
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    fn parse(raw: &[u8]) -> HttpResponse {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        HttpResponse {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A Server-Sent Events subscription over a raw socket.
pub struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    /// Opens `GET path` and checks that the server answers with an event stream.
    pub fn open(addr: &str, path: &str) -> EventStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        EventStream { reader }
    }

    /// The data of the next event, decoded as a mist frame.
    pub fn next(&mut self) -> Message {
        let mut data = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "the event stream ended"
            );
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(chunk) = line.strip_prefix("data:") {
                data.push_str(chunk.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                return serde_json::from_str(&data).expect("an event carries one JSON frame");
            }
        }
    }
}

/// A well-behaved client that keeps pinging the server over TCP (and over
/// HTTP, when the server has an HTTP listener) from a thread of its own
/// while an attack runs, and reports the slowest answers it got.
pub struct Bystander {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Served>>,
}

/// What a [`Bystander`] saw.
#[derive(Debug)]
pub struct Served {
    /// Pings answered.
    pub pings: usize,
    /// The slowest TCP ping's round trip.
    pub slowest: Duration,
    /// The slowest HTTP `GET /ping`.
    pub slowest_http: Duration,
}

impl Bystander {
    /// Starts pinging `server` every `every`; a bystander with a token
    /// authenticates first.
    pub fn start(server: &Server, token: Option<&str>, every: Duration) -> Bystander {
        let mut client = server.connect();
        if let Some(token) = token {
            client.send(Request::new("auth").data(token));
        }
        client.sync();
        let http_addr = server.listeners.get("http").cloned();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = Served {
                pings: 0,
                slowest: Duration::ZERO,
                slowest_http: Duration::ZERO,
            };
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                client.sync();
                served.slowest = served.slowest.max(start.elapsed());
                served.pings += 1;
                if let Some(addr) = &http_addr {
                    if served.pings % 5 == 0 {
                        let start = Instant::now();
                        let pong = http(addr, "GET", "/ping", &[], b"");
                        assert_eq!(pong.status, 200);
                        served.slowest_http = served.slowest_http.max(start.elapsed());
                    }
                }
                std::thread::sleep(every);
            }
            served
        });
        Bystander {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops pinging and says how it went.
    pub fn finish(mut self) -> Served {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the bystander was served")
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Registers `token` with `tags` through the admin's connection.
pub fn register(server: &Server, admin: &str, token: &str, tags: &[&str]) {
    let mut client = server.connect();
    client.send(Request::new("auth").data(admin));
    client.send(
        Request::new("register")
            .tags(tags.iter().copied())
            .data(token),
    );
    assert_eq!(client.sync(), [], "register {token}");
}

/// Runs each of the given functions, which take a runtime's name, as a test
/// on every runtime: `on_every_runtime!(a_test, another_test);` makes
/// `on_every_runtime::a_test`, ...
#[macro_export]
macro_rules! on_every_runtime {
    ($($name:ident),* $(,)?) => {
        mod on_every_runtime {
            $(
                #[test]
                fn $name() {
                    for runtime in $crate::support::RUNTIMES {
                        super::$name(runtime);
                    }
                }
            )*
        }
    };
}

/// The address of the throwaway PostgreSQL that `scripts/test.sh` starts.
pub fn postgres() -> Option<String> {
    let address = std::env::var("MIST_TEST_POSTGRES").ok();
    if address.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "MIST_TEST_POSTGRES is not set: use scripts/test.sh"
        );
        skipped(
            "PostgreSQL tests skipped: MIST_TEST_POSTGRES is not set (scripts/test.sh sets it)",
        );
    }
    address
}

/// A new, empty database on the test server; returns its name.
pub fn fresh_database(address: &str, name: &str) -> String {
    let db = format!("mist_{name}_{}", std::process::id());
    psql(address, &format!("DROP DATABASE IF EXISTS {db}"));
    psql(address, &format!("CREATE DATABASE {db}"));
    db
}

/// Runs SQL on the test server's `postgres` database.
pub fn psql(address: &str, sql: &str) {
    let (host, port) = address.rsplit_once(':').unwrap();
    let status = std::process::Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .status()
        .expect("psql runs");
    assert!(status.success(), "{sql}");
}

/// A throwaway `redis-server` on a free port, killed when dropped; `None`
/// (with a notice) where Redis is not installed, outside CI.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Option<Redis> {
        Redis::start_on(free_port())
    }

    /// Starts Redis on `port` (again, after [`Redis::stop`]).
    pub fn start_on(port: u16) -> Option<Redis> {
        Redis::start_with(port, &[])
    }

    /// Starts Redis on `port` with more `redis-server` options.
    pub fn start_with(port: u16, options: &[&str]) -> Option<Redis> {
        let found = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed: scripts/test.sh installs it"
            );
            skipped("replication tests skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis { child, port })
    }

    /// The `--replicator` URL for it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against it.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops it at once (no shutdown save), freeing its port.
    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on now.
/// Waits until `addr` accepts connections (a listener on a fixed port,
/// which the server may log after its port-0 ones).
pub fn wait_listening(addr: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway Redis Cluster of three masters on free ports, in a temporary
/// directory, killed when dropped; `None` (with a notice) where Redis is
/// not installed, outside CI.
pub struct RedisCluster {
    nodes: Vec<Redis>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Option<RedisCluster> {
        let dir = std::env::temp_dir().join(format!(
            "mist-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let config = dir.join(format!("nodes-{port}.conf"));
            let node = Redis::start_with(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config.to_str().unwrap(),
                    "--dir",
                    dir.to_str().unwrap(),
                ],
            )?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        succeeded(created, "redis-cli --cluster create");
        let deadline = Instant::now() + TIMEOUT * 4;
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster did not form");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(RedisCluster { nodes, dir })
    }

    /// The ports of its masters.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
