//! `mist bench`: a load generator against a running server, in the spirit of
//! `nats bench`. Fan-out mode measures throughput and loss; latency mode sends
//! at a fixed rate and reports percentiles. Both use plain blocking sockets so
//! that the tool, not the server, stays simple.

use crate::client::{client_command, failure, Client, Connection, Endpoint};
use crate::{default_host, Failure};
use argh::FromArgs;
use mist_client::TlsOptions;
use mist_proto::Request;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// A subscriber that has heard nothing for this long after publishing ended
/// has received all it is going to.
const IDLE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

client_command! {
    /// measure a running server: fan-out throughput and loss, or latency
    "bench" struct Bench {
        /// fanout (S subscribers on one tag, one publisher sending N messages as
        /// fast as it can), pairs (P publishers each sending N messages to a
        /// subscriber of its own) or latency (one publisher at a fixed rate,
        /// one subscriber)
        #[argh(option, default = "String::from(\"fanout\")")]
        mode: String,
        /// subscribers in fan-out mode (default: 10)
        #[argh(option, default = "10")]
        subs: usize,
        /// publisher and subscriber pairs in pairs mode (default: 2)
        #[argh(option, default = "2")]
        pairs: usize,
        /// messages to publish in fan-out mode (default: 100000)
        #[argh(option, default = "100_000")]
        msgs: u64,
        /// payload bytes per message (default: 128)
        #[argh(option, default = "128")]
        size: usize,
        /// messages per second in latency mode (default: 10000)
        #[argh(option, default = "10_000")]
        rate: u64,
        /// seconds to run in latency mode (default: 5)
        #[argh(option, default = "5.0")]
        duration: f64,
        /// where the fan-out subscribers connect, if not --host: another node
        /// of the same broker, to measure delivery across nodes
        #[argh(option)]
        subscribe_host: Option<String>,
        /// fan-out and pairs through mist-client as an application would:
        /// publishers queue each message with it, and subscribers decode
        /// every message (instead of pre-encoded batches and counted
        /// lines); always so over WebSocket, which has no lines to count
        #[argh(switch)]
        decode: bool,
    }
}

pub fn run(cmd: &Bench) -> Result<(), Failure> {
    match cmd.mode.as_str() {
        "fanout" if cmd.subs == 0 || cmd.msgs == 0 => Err(Failure::Usage(
            "--subs and --msgs must be at least 1".into(),
        )),
        "fanout" => fanout(cmd),
        "pairs" if cmd.pairs == 0 || cmd.msgs == 0 => Err(Failure::Usage(
            "--pairs and --msgs must be at least 1".into(),
        )),
        "pairs" => pairs(cmd),
        "latency" if cmd.rate == 0 || !cmd.duration.is_finite() || cmd.duration <= 0.0 => Err(
            Failure::Usage("--rate and --duration must be positive".into()),
        ),
        "latency" => latency(cmd),
        other => Err(Failure::Usage(format!(
            "unknown --mode {other:?}: use fanout, pairs or latency"
        ))),
    }
}

/// What one fan-out subscriber saw.
struct Received {
    count: u64,
    last: Option<Instant>,
}

fn fanout(cmd: &Bench) -> Result<(), Failure> {
    let tag = format!("bench-{}", std::process::id());
    let start_line = Arc::new(Barrier::new(cmd.subs + 1));
    let published = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    let endpoint = cmd.endpoint()?;
    let subscribers_at = endpoint.at(cmd.subscribe_host.as_deref().unwrap_or(&cmd.host));
    for _ in 0..cmd.subs {
        let start = (&start_line, &published);
        subscribers.push(subscriber(&subscribers_at, &tag, start, cmd)?);
    }
    let mut publisher = endpoint.open()?;
    start_line.wait();
    let start = Instant::now();
    publish_all(&mut publisher, &tag, cmd.msgs, cmd.size, cmd.decode)?;
    let publish_time = start.elapsed();
    published.store(true, Ordering::Release);
    let place = match &cmd.subscribe_host {
        Some(other) => format!("publisher on {}, subscribers on {other}", cmd.host),
        None => format!("server {}", cmd.host),
    };
    println!(
        "fanout: 1 publisher -> {} subscribers, {} messages of {} B, {place}",
        cmd.subs, cmd.msgs, cmd.size
    );
    println!(
        "published {:>12} msgs in {:>7.3} s  {:>12.0} msg/s",
        cmd.msgs,
        publish_time.as_secs_f64(),
        cmd.msgs as f64 / publish_time.as_secs_f64()
    );
    report_deliveries(subscribers, start, cmd.msgs * cmd.subs as u64)
}

/// Publishes `msgs` messages of `size` bytes on `tag`, many lines per
/// write, and waits until the server applied them all.
/// Publishes `msgs` messages of `size` bytes on `tag`: queued one by one
/// through mist-client when `decode`, or as pre-encoded batches.
fn publish_all(
    publisher: &mut Connection,
    tag: &str,
    msgs: u64,
    size: usize,
    decode: bool,
) -> Result<(), Failure> {
    if decode || publisher.is_websocket() {
        let data = "x".repeat(size);
        for _ in 0..msgs {
            publisher.queue_publish(&[tag], &data).map_err(failure)?;
        }
        publisher.ping().map_err(failure)?;
        return Ok(());
    }
    let line = Request::new("publish")
        .tags([tag])
        .data("x".repeat(size))
        .to_line();
    let per_write = (64 * 1024 / line.len()).max(1) as u64;
    let chunk = line.repeat(per_write as usize);
    let mut left = msgs;
    while left > 0 {
        let n = left.min(per_write);
        publisher
            .send_raw(&chunk[..n as usize * line.len()])
            .map_err(failure)?;
        left -= n;
    }
    publisher.ping().map_err(failure)?;
    Ok(())
}

/// `--mode pairs`: each publisher sends to a subscriber of its own, all at
/// once.
fn pairs(cmd: &Bench) -> Result<(), Failure> {
    let endpoint = cmd.endpoint()?;
    let start_line = Arc::new(Barrier::new(2 * cmd.pairs + 1));
    let published = Arc::new(AtomicBool::new(false));
    let (mut subscribers, mut publishers) = (Vec::new(), Vec::new());
    for pair in 0..cmd.pairs {
        let tag = format!("bench-{}-{pair}", std::process::id());
        subscribers.push(subscriber(&endpoint, &tag, (&start_line, &published), cmd)?);
        let mut publisher = endpoint.open()?;
        let line = start_line.clone();
        let (msgs, size, decode) = (cmd.msgs, cmd.size, cmd.decode);
        publishers.push(thread::spawn(move || {
            line.wait();
            publish_all(&mut publisher, &tag, msgs, size, decode)
        }));
    }
    start_line.wait();
    let start = Instant::now();
    for publisher in publishers {
        publisher
            .join()
            .map_err(|_| Failure::Failed("a publisher thread panicked".into()))??;
    }
    let publish_time = start.elapsed();
    published.store(true, Ordering::Release);
    let total = cmd.msgs * cmd.pairs as u64;
    println!(
        "pairs: {} publishers -> a subscriber each, {} messages of {} B each, server {}",
        cmd.pairs, cmd.msgs, cmd.size, cmd.host
    );
    println!(
        "published {:>12} msgs in {:>7.3} s  {:>12.0} msg/s",
        total,
        publish_time.as_secs_f64(),
        total as f64 / publish_time.as_secs_f64()
    );
    report_deliveries(subscribers, start, total)
}

/// Waits for every subscriber and prints what was delivered and lost.
fn report_deliveries(
    subscribers: Vec<thread::JoinHandle<Result<Received, Failure>>>,
    start: Instant,
    expected: u64,
) -> Result<(), Failure> {
    let mut delivered = 0;
    let mut last = start;
    for subscriber in subscribers {
        let received = subscriber
            .join()
            .map_err(|_| Failure::Failed("a subscriber thread panicked".into()))??;
        delivered += received.count;
        last = last.max(received.last.unwrap_or(start));
    }
    let deliver_time = last.duration_since(start);
    println!(
        "delivered {:>12} msgs in {:>7.3} s  {:>12.0} msg/s",
        delivered,
        deliver_time.as_secs_f64(),
        delivered as f64 / deliver_time.as_secs_f64().max(1e-9)
    );
    println!(
        "loss      {:>11.3}%  ({} of {} deliveries missing)",
        100.0 * (expected - delivered.min(expected)) as f64 / expected as f64,
        expected - delivered.min(expected),
        expected
    );
    Ok(())
}

/// A subscriber to `tag` at `endpoint`, subscribed now, on a thread that
/// waits at the start line, then counts `cmd.msgs` messages (or until the
/// publishers are done and it has heard nothing for a while).
fn subscriber(
    endpoint: &Endpoint,
    tag: &str,
    (start_line, published): (&Arc<Barrier>, &Arc<AtomicBool>),
    cmd: &Bench,
) -> Result<thread::JoinHandle<Result<Received, Failure>>, Failure> {
    let mut conn = endpoint.open()?;
    conn.subscribe(&[tag]).map_err(failure)?;
    let (start_line, published) = (start_line.clone(), published.clone());
    let (expected, decode) = (cmd.msgs, cmd.decode);
    Ok(thread::spawn(move || {
        start_line.wait();
        receive(conn, expected, &published, decode)
    }))
}

/// Counts what a subscriber receives: messages decoded by mist-client when
/// `decode` (or over WebSocket), lines otherwise.
fn receive(
    conn: Connection,
    expected: u64,
    published: &AtomicBool,
    decode: bool,
) -> Result<Received, Failure> {
    if decode || conn.is_websocket() {
        count_messages(conn, expected, published)
    } else {
        count_lines(conn, expected, published)
    }
}

/// Counts messages decoded by mist-client until `expected` arrived, or
/// publishing ended and the connection went quiet.
fn count_messages(
    mut conn: Connection,
    expected: u64,
    published: &AtomicBool,
) -> Result<Received, Failure> {
    let mut received = Received {
        count: 0,
        last: None,
    };
    let mut quiet_since = Instant::now();
    while received.count < expected {
        match conn.next_message_within(POLL).map_err(failure)? {
            Some(message) if message.error.is_none() => {
                received.count += 1;
                // The messages of one read arrived together: the clock is
                // read once for them, after the last.
                if conn.buffered() == 0 {
                    let now = Instant::now();
                    received.last = Some(now);
                    quiet_since = now;
                }
            }
            Some(_) => {}
            None if published.load(Ordering::Acquire) && quiet_since.elapsed() > IDLE => break,
            None if !published.load(Ordering::Acquire) => quiet_since = Instant::now(),
            None => {}
        }
    }
    Ok(received)
}

/// Counts delivered lines until `expected` arrived, or publishing ended and
/// the stream went quiet.
fn count_lines(
    conn: Connection,
    expected: u64,
    published: &AtomicBool,
) -> Result<Received, Failure> {
    let mut stream = conn.into_stream();
    stream.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = Received {
        count: 0,
        last: None,
    };
    let mut quiet_since = Instant::now();
    while received.count < expected {
        match stream.read(&mut buf) {
            Ok(0) => return Err(Failure::Failed("the server closed a subscriber".into())),
            Ok(n) => {
                received.count += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                received.last = Some(Instant::now());
                quiet_since = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if published.load(Ordering::Acquire) && quiet_since.elapsed() > IDLE {
                    break;
                }
                if !published.load(Ordering::Acquire) {
                    quiet_since = Instant::now();
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(received)
}

fn latency(cmd: &Bench) -> Result<(), Failure> {
    let tag = format!("bench-latency-{}", std::process::id());
    let total = (cmd.rate as f64 * cmd.duration).ceil() as u64;
    let epoch = Instant::now();
    let published = Arc::new(AtomicBool::new(false));
    let endpoint = cmd.endpoint()?;
    let mut subscriber = endpoint.open()?;
    subscriber.subscribe(&[tag.as_str()]).map_err(failure)?;
    let receiving = {
        let published = published.clone();
        thread::spawn(move || -> Result<Vec<Duration>, Failure> {
            let mut latencies = Vec::with_capacity(total as usize);
            let mut quiet_since = Instant::now();
            while (latencies.len() as u64) < total {
                match subscriber.next_message_within(POLL).map_err(failure)? {
                    Some(message) => {
                        let sent: u64 = message
                            .data
                            .as_deref()
                            .and_then(|d| d.get(..20))
                            .and_then(|d| d.parse().ok())
                            .ok_or_else(|| {
                                Failure::Failed("a message without a timestamp".into())
                            })?;
                        latencies.push(epoch.elapsed().saturating_sub(Duration::from_nanos(sent)));
                        quiet_since = Instant::now();
                    }
                    None if published.load(Ordering::Acquire) && quiet_since.elapsed() > IDLE => {
                        break
                    }
                    None => {}
                }
            }
            Ok(latencies)
        })
    };
    let mut publisher = endpoint.open()?;
    let interval = Duration::from_secs_f64(1.0 / cmd.rate as f64);
    let padding = "x".repeat(cmd.size.saturating_sub(20));
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let stamp = format!("{:020}{padding}", epoch.elapsed().as_nanos());
        let line = Request::new("publish").tags([tag.as_str()]).data(stamp);
        publisher.send_raw(&line.to_line()).map_err(failure)?;
    }
    published.store(true, Ordering::Release);
    let mut latencies = receiving
        .join()
        .map_err(|_| Failure::Failed("the subscriber thread panicked".into()))??;
    latencies.sort_unstable();
    println!(
        "latency: {} msg/s for {} s, {} B messages, server {}",
        cmd.rate, cmd.duration, cmd.size, cmd.host
    );
    println!("received {} of {} messages", latencies.len(), total);
    if latencies.is_empty() {
        return Err(Failure::Failed("no message arrived".into()));
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    for (name, q) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("max", 1.0),
    ] {
        println!("{name:>6} {:>10.1} µs", at(q).as_secs_f64() * 1e6);
    }
    Ok(())
}
