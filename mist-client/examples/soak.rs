//! Soak test for a running mist server: mixed load for a number of minutes.
//!
//! Run by `scripts/soak.sh`, which starts the server and sets `SOAK_TCP`,
//! `SOAK_HTTP`, `SOAK_WS` (its listeners), `SOAK_TOKEN` (its admin token)
//! and `SOAK_PID`. Threads play:
//! - well-behaved pairs: publishers send numbered messages at a steady
//!   rate, subscribers read at once and count what is missing (their loss
//!   must be 0);
//! - churn: clients that connect, subscribe, publish, leave, over and over;
//! - slow and stalled subscribers on the busiest tag (their loss is theirs);
//! - hostile clients: garbage and overlong lines, floods of `list` never
//!   read, endless HTTP heads, idle sockets that never authenticate or
//!   handshake, wrong tokens (from another loopback address, so that the
//!   throttle they earn does not fall on the well-behaved clients).
//!
//! Every interval it prints the server's RSS, its sockets and counters, and
//! the well-behaved clients' loss; at the end, the RSS growth after warm-up.
//! The protocol clients are mist-client's; the hostile ones are raw sockets.
//!
//! ```sh
//! cargo run --release -p mist-client --example soak -- MINUTES
//! ```

use mist_client::blocking::Client;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What every thread counts.
#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    received: AtomicU64,
    missing: AtomicU64,
    churned: AtomicU64,
    hostile: AtomicU64,
    errors: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The server under test, from scripts/soak.sh's environment.
#[derive(Clone)]
struct Target {
    tcp: String,
    http: String,
    ws: String,
    token: String,
    pid: u32,
}

impl Target {
    fn from_env() -> Target {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/soak.sh"))
        };
        Target {
            tcp: format!("127.0.0.1:{}", var("SOAK_TCP")),
            http: format!("127.0.0.1:{}", var("SOAK_HTTP")),
            ws: format!("127.0.0.1:{}", var("SOAK_WS")),
            token: var("SOAK_TOKEN"),
            pid: var("SOAK_PID").parse().expect("SOAK_PID is a process id"),
        }
    }

    /// A well-behaved client, authenticated with the admin token.
    fn client(&self) -> Result<Client, mist_client::Error> {
        let mut client = Client::connect(&self.tcp, Some(&self.token))?;
        client.set_reply_timeout(Some(Duration::from_secs(10)));
        Ok(client)
    }

    fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// The server's `/stats`, as JSON text (empty if it cannot be had).
    fn stats(&self) -> String {
        let fetch = || -> std::io::Result<String> {
            let mut s = TcpStream::connect(&self.http)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let head = format!(
                "GET /stats HTTP/1.1\r\nHost: soak\r\nX-Auth-Token: {}\r\nConnection: close\r\n\r\n",
                self.token
            );
            s.write_all(head.as_bytes())?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_string())
                .unwrap_or_default())
        };
        fetch().unwrap_or_default()
    }
}

/// A number field of `/stats`' JSON, or `?`.
fn field(stats: &str, name: &str) -> String {
    let key = format!("\"{name}\":");
    stats
        .split_once(&key)
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
        .filter(|n: &String| !n.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// A publisher at 500 msg/s and a subscriber that reads at once.
fn pair(target: Target, n: usize, totals: Arc<Totals>, stop: Arc<AtomicBool>) {
    let tag = format!("pair-{n}");
    let mut subscriber = target.client().expect("a pair's subscriber connects");
    subscriber.subscribe(&[&tag]).expect("a pair subscribes");
    let mut publisher = target.client().expect("a pair's publisher connects");
    let reader = {
        let (totals, stop) = (totals.clone(), stop.clone());
        thread::spawn(move || {
            let mut expected = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match subscriber.next_message_within(Duration::from_millis(200)) {
                    Ok(Some(message)) => {
                        let seq: u64 = message
                            .data
                            .as_deref()
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(expected);
                        add(&totals.missing, seq.saturating_sub(expected));
                        expected = seq + 1;
                        add(&totals.received, 1);
                    }
                    Ok(None) => {}
                    Err(_) => {
                        add(&totals.errors, 1);
                        return;
                    }
                }
            }
        })
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..50 {
            publisher
                .queue_publish(&[&tag], &(seq + i).to_string())
                .expect("a pair publishes");
        }
        publisher.flush().expect("a pair publishes");
        seq += 50;
        add(&totals.sent, 50);
        thread::sleep(Duration::from_millis(100));
    }
    let _ = publisher.ping();
    let _ = reader.join();
}

fn churn(target: Target, totals: Arc<Totals>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let once = || -> Result<(), mist_client::Error> {
            let mut client = target.client()?;
            client.subscribe(&[&format!("churn-{}", n % 1000), "x"])?;
            client.publish(&["busy"], "churn")?;
            client.close()
        };
        match once() {
            Ok(()) => add(&totals.churned, 1),
            Err(_) => {
                add(&totals.errors, 1);
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn busy_publisher(target: Target, stop: Arc<AtomicBool>) {
    let mut client = target.client().expect("the busy publisher connects");
    let data = "z".repeat(1024);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..20 {
            client
                .queue_publish(&["busy"], &data)
                .expect("the busy publisher publishes");
        }
        client.ping().expect("the busy publisher is answered");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Reads 4 KiB every `pause`, or never (`None`, stalled).
fn slow_subscriber(target: Target, pause: Option<Duration>, stop: Arc<AtomicBool>) {
    let mut client = target.client().expect("a slow subscriber connects");
    client
        .subscribe(&["busy"])
        .expect("a slow subscriber subscribes");
    let mut socket = client.socket();
    let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match pause {
            None => thread::sleep(Duration::from_secs(1)),
            Some(pause) => {
                let _ = socket.read(&mut buf);
                thread::sleep(pause);
            }
        }
    }
}

/// A raw socket to `address`, from the loopback address `source` if
/// given, that has sent `first` (as much as the server took in 2 s).
fn raw(address: &str, source: Option<&str>, first: &[u8]) -> std::io::Result<TcpStream> {
    let to: SocketAddr = address.parse().expect("a socket address");
    let stream = match source {
        Some(source) => {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            let from: SocketAddr = format!("{source}:0").parse().expect("an address");
            socket.bind(&from.into())?;
            socket.connect(&to.into())?;
            TcpStream::from(socket)
        }
        None => TcpStream::connect(to)?,
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut writer = &stream;
    let _ = writer.write_all(first);
    Ok(stream)
}

fn auth_line(token: &str) -> Vec<u8> {
    format!("{{\"command\":\"auth\",\"data\":\"{token}\"}}\n").into_bytes()
}

/// One attack from the list, chosen by `n`; returns a socket to keep open.
fn attack(target: &Target, n: u64) -> std::io::Result<Option<TcpStream>> {
    let authed = |then: &[u8]| {
        let mut first = auth_line(&target.token);
        first.extend_from_slice(then);
        raw(&target.tcp, None, &first)
    };
    let kept = match n % 10 {
        0 => authed(&b"garbage\n{not json}\n".repeat(100))?,
        1 => {
            let mut line = b"{\"command\":\"publish\",\"tags\":[\"a\"],\"data\":\"".to_vec();
            line.extend(std::iter::repeat_n(b'x', 2_000_000));
            authed(&line)?
        }
        2 => {
            let mut lines = Vec::new();
            for i in 0..50 {
                lines.extend(
                    format!("{{\"command\":\"subscribe\",\"tags\":[\"flood-{i}\"]}}\n").bytes(),
                );
            }
            lines.extend(b"{\"command\":\"list\"}\n".repeat(5000));
            authed(&lines)?
        }
        3 => {
            let mut head = b"GET /ping HTTP/1.1\r\nX-Endless: ".to_vec();
            head.extend(std::iter::repeat_n(b'x', 1_000_000));
            raw(&target.http, None, &head)?
        }
        4 => raw(&target.tcp, None, b"")?,
        5 => raw(&target.ws, None, b"")?,
        6 => raw(&target.http, None, b"GET /ping HTTP/1.1\r\n")?,
        7 => {
            let mut s = raw(
                &target.tcp,
                Some("127.0.0.2"),
                &auth_line(&format!("wrong-{n}")),
            )?;
            let _ = s.read(&mut [0u8; 1024]);
            s
        }
        8 => {
            let mut line = b"{\"command\":\"auth\",\"data\":\"".to_vec();
            line.extend(std::iter::repeat_n(b'y', 100_000));
            raw(&target.tcp, None, &line)?
        }
        _ => {
            let head = format!(
                "GET /subscribe/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Auth-Token: {}\r\n\r\n",
                target.token
            );
            let mut first = head.into_bytes();
            first.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
            raw(&target.ws, None, &first)?
        }
    };
    Ok(Some(kept))
}

fn hostile(target: Target, seed: u64, totals: Arc<Totals>, stop: Arc<AtomicBool>) {
    let mut held = std::collections::VecDeque::new();
    let mut n = seed;
    while !stop.load(Ordering::Relaxed) {
        // A cheap shuffle of the attacks.
        n = n
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if let Ok(Some(socket)) = attack(&target, n >> 33) {
            held.push_back(socket);
            if held.len() > 200 {
                held.pop_front();
            }
        }
        add(&totals.hostile, 1);
        thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let minutes: f64 = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let interval = Duration::from_secs_f64(
        std::env::var("SOAK_INTERVAL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30.0),
    );
    let target = Target::from_env();
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for n in 0..4 {
        let (t, c, s) = (target.clone(), totals.clone(), stop.clone());
        threads.push(thread::spawn(move || pair(t, n, c, s)));
    }
    for _ in 0..2 {
        let (t, c, s) = (target.clone(), totals.clone(), stop.clone());
        threads.push(thread::spawn(move || churn(t, c, s)));
    }
    let (t, s) = (target.clone(), stop.clone());
    threads.push(thread::spawn(move || busy_publisher(t, s)));
    for pause in [Some(50), Some(500), None, None] {
        let (t, s) = (target.clone(), stop.clone());
        let pause = pause.map(Duration::from_millis);
        threads.push(thread::spawn(move || slow_subscriber(t, pause, s)));
    }
    for seed in [1, 2] {
        let (t, c, s) = (target.clone(), totals.clone(), stop.clone());
        threads.push(thread::spawn(move || hostile(t, seed, c, s)));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    println!(
        "{:>5} {:>8} {:>7} {:>9} {:>9} {:>6} {:>8} {:>8} {:>9}",
        "min", "RSS MiB", "sockets", "sent", "received", "lost", "churned", "hostile", "dropped"
    );
    let total = |c: &AtomicU64| c.load(Ordering::Relaxed);
    while started.elapsed().as_secs_f64() < minutes * 60.0 {
        thread::sleep(interval);
        let rss = target.rss_mib();
        let elapsed = started.elapsed().as_secs_f64() / 60.0;
        if elapsed >= 1.0 {
            samples.push((elapsed, rss)); // after warm-up
        }
        let stats = target.stats();
        println!(
            "{elapsed:5.1} {rss:8.1} {:>7} {:>9} {:>9} {:>6} {:>8} {:>8} {:>9}",
            field(&stats, "sockets"),
            total(&totals.sent),
            total(&totals.received),
            total(&totals.missing),
            total(&totals.churned),
            total(&totals.hostile),
            field(&stats, "dropped"),
        );
    }
    stop.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_secs(3));
    let (missing, sent) = (total(&totals.missing), total(&totals.sent));
    let loss = 100.0 * missing as f64 / sent.max(1) as f64;
    println!(
        "well-behaved loss: {missing} of {sent} ({loss:.3} %); client errors: {}",
        total(&totals.errors)
    );
    if samples.len() >= 2 {
        // Least squares: memory that is flat has a slope near zero.
        let n = samples.len() as f64;
        let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
        let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
        let slope = samples
            .iter()
            .map(|(x, y)| (x - mx) * (y - my))
            .sum::<f64>()
            / samples.iter().map(|(x, _)| (x - mx).powi(2)).sum::<f64>();
        let low = samples.iter().map(|s| s.1).fold(f64::MAX, f64::min);
        let high = samples.iter().map(|s| s.1).fold(0.0, f64::max);
        println!("RSS after warm-up: {low:.0} to {high:.0} MiB, trend {slope:+.2} MiB per minute");
    }
    std::process::exit(if missing == 0 { 0 } else { 1 });
}
