//! Test support: the real `mist` binary as a server process, and a plain
//! blocking TCP client speaking its line protocol.

#![allow(dead_code)] // each test file uses a different part

use mist_proto::{LineDecoder, Message, Request};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for anything the server should do promptly.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn mist() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mist"))
}

/// A running `mist --server` on a free port, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the server with extra flags and waits until it listens.
    pub fn start_with(args: &[&str]) -> Server {
        let mut child = mist()
            .args([
                "--server",
                "--listeners",
                "tcp://127.0.0.1:0",
                "--log-level",
                "debug",
            ])
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
                if let Some((_, addr)) = line.split_once("listening on tcp://") {
                    let _ = found.send(addr.trim().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = listening
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("server did not start: {:?}", log.lock().unwrap()));
        Server { child, addr, log }
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.addr)
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

/// A blocking client of the line protocol.
pub struct Client {
    pub stream: TcpStream,
    decoder: LineDecoder,
    frames: VecDeque<Message>,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the server");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            decoder: LineDecoder::new(64 * 1024 * 1024),
            frames: VecDeque::new(),
        }
    }

    pub fn send(&mut self, request: Request) {
        self.stream.write_all(&request.to_line()).unwrap();
    }

    /// Sends raw bytes: half a line, several lines, garbage.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
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
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => {
                    let mut out = Vec::new();
                    self.decoder.decode::<Message>(&buf[..n], &mut out);
                    self.frames.extend(
                        out.into_iter()
                            .map(|r| r.expect("the server sends valid JSON lines")),
                    );
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
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

    /// The error text of the next frame, which must be an error reply.
    pub fn error(&mut self) -> String {
        let frame = self.recv();
        match frame.error {
            Some(error) => error,
            None => panic!("expected an error reply, got {frame:?}"),
        }
    }
}
