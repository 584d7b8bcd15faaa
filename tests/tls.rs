//! TLS on every listener: `tls://` (lines), `wss://` and `https://` serve
//! what their plain forms do, to real TLS clients (`openssl s_client`,
//! curl, a Rust WebSocket client, the `mist` CLI), on both runtimes; mutual
//! TLS admits only clients with a certificate the CA signed; a plaintext
//! client, a stalled handshake or a failed one costs only its own
//! connection; and bad TLS settings stop the server at start, naming the
//! file or flag. Certificates are made by each test (rcgen), none committed.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Certs, Client, Server, RUNTIMES};

const ALL: [&str; 6] = ["tcp", "tls", "wss", "https", "ws", "http"];

fn tls_server(runtime: &str, certs: &Certs, extra: &[&str]) -> Server {
    let mut args: Vec<String> = certs.server_flags();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_listening(runtime, &ALL, &args, &[])
}

/// Whether a command-line tool is here; in CI it must be (the test script
/// installs it).
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed: scripts/test.sh installs it"
        );
        support::skipped(&format!(
            "the {tool} part of this test is skipped: {tool} is not installed"
        ));
    }
    found
}

/// `curl` over TLS trusting the test CA; returns its output.
fn curl(certs: &Certs, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &certs.path("ca.pem")])
        .args(args)
        .output()
        .unwrap();
    support::succeeded(out, &format!("curl {args:?}"))
}

#[test]
fn every_tls_listener_serves_what_its_plain_one_does() {
    for runtime in RUNTIMES {
        let certs = Certs::new();
        let server = tls_server(runtime, &certs, &[]);
        let config = certs.client_config(false);
        let mut over_tls = Client::tls(&server.listeners["tls"], config.clone());
        over_tls.subscribe(&["t"]);
        let wss = format!("wss://{}/subscribe/websocket", server.listeners["wss"]);
        let mut over_wss = Client::websocket_tls(&wss, config.clone());
        over_wss.subscribe(&["t"]);
        let https_ws = format!("wss://{}/subscribe/websocket", server.listeners["https"]);
        let mut over_https_ws = Client::websocket_tls(&https_ws, config.clone());
        over_https_ws.subscribe(&["t"]);
        let mut plain = server.connect();
        plain.subscribe(&["t"]);

        // Every transport hears a publish made over any other.
        assert_eq!(over_tls.publish(&["t"], "from tls"), []);
        for client in [&mut over_wss, &mut over_https_ws, &mut plain] {
            assert_eq!(client.recv().data.as_deref(), Some("from tls"), "{runtime}");
        }
        over_wss.publish(&["t"], "from wss");
        assert_eq!(over_tls.recv().data.as_deref(), Some("from wss"));
        assert_eq!(plain.recv().data.as_deref(), Some("from wss"));
        assert_eq!(over_https_ws.recv().data.as_deref(), Some("from wss"));

        if have("curl") {
            let https = format!("https://localhost:{}", port(&server.listeners["https"]));
            let resolve = format!("localhost:{}:127.0.0.1", port(&server.listeners["https"]));
            assert_eq!(
                curl(&certs, &["--resolve", &resolve, &format!("{https}/ping")]),
                "pong"
            );
            // SSE over https, with curl reading the stream.
            let mut events = Command::new("curl")
                .args([
                    "-sSN",
                    "--max-time",
                    "20",
                    "--cacert",
                    &certs.path("ca.pem"),
                ])
                .args(["--resolve", &resolve, &format!("{https}/subscribe?tags=t")])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
            // The stream starts once the subscription is in place.
            let deadline = Instant::now() + Duration::from_secs(10);
            while support::http(&server.listeners["http"], "GET", "/stats", &[], b"").json()
                ["transports"]["sse"]["open"]
                != 1
            {
                assert!(Instant::now() < deadline, "the SSE stream never opened");
                std::thread::sleep(Duration::from_millis(20));
            }
            let body = r#"{"tags":["t"],"data":"over https"}"#;
            curl(
                &certs,
                &[
                    "--resolve",
                    &resolve,
                    "-X",
                    "POST",
                    "-d",
                    body,
                    &format!("{https}/publish"),
                ],
            );
            let data = lines
                .by_ref()
                .map_while(Result::ok)
                .find(|line| line.starts_with("data:"))
                .expect("an event");
            assert!(data.contains("over https"), "{data}");
            let _ = events.kill();
            let _ = events.wait();
            for client in [&mut over_tls, &mut over_wss, &mut plain] {
                assert_eq!(client.recv().data.as_deref(), Some("over https"));
            }
        }
        if have("openssl") {
            assert_eq!(
                openssl_line(&certs, &server.listeners["tls"], r#"{"command":"ping"}"#),
                r#"{"command":"ping","data":"pong"}"#
            );
        }
    }
}

fn port(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().1
}

/// Sends one line through `openssl s_client`, which checks the server's
/// certificate against the test CA, and returns the first line back.
fn openssl_line(certs: &Certs, addr: &str, line: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-connect",
            addr,
        ])
        .args(["-CAfile", &certs.path("ca.pem"), "-verify_ip", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{line}").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    let reply = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("openssl s_client got an answer");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    reply.trim_end().to_string()
}

#[test]
fn the_cli_speaks_tls_and_checks_the_servers_certificate() {
    let certs = Certs::new();
    let server = tls_server("smol", &certs, &["--tls-client-ca", &certs.path("ca.pem")]);
    let tls = &server.listeners["tls"];
    let ca = certs.path("ca.pem");
    let mutual = [
        "--tls-ca",
        ca.as_str(),
        "--tls-cert",
        &certs.path("client.pem"),
        "--tls-key",
        &certs.path("client.key"),
    ]
    .map(str::to_string);
    let run = |args: &[&str]| {
        support::mist()
            .args(args)
            .args(["--host", tls])
            .args(&mutual)
            .output()
            .unwrap()
    };
    let ping = run(&["ping"]);
    assert!(
        String::from_utf8_lossy(&ping.stdout).starts_with("pong ("),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let mut subscriber = support::mist()
        .args(["subscribe", "--tags", "cli", "--count", "1", "--host", tls])
        .args(&mutual)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = BufReader::new(subscriber.stderr.take().unwrap());
    let mut said = String::new();
    ready.read_line(&mut said).unwrap();
    assert!(said.contains("subscribed"), "{said}");
    assert!(run(&["publish", "--tags", "cli", "--data", "over tls"])
        .status
        .success());
    let mut out = String::new();
    subscriber
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(subscriber.wait().unwrap().success());
    assert!(out.contains("over tls"), "{out}");

    // A server whose certificate the client cannot check is refused.
    let unchecked = support::mist()
        .args(["ping", "--tls", "--host", tls])
        .output()
        .unwrap();
    assert_eq!(unchecked.status.code(), Some(1));
    let said = String::from_utf8_lossy(&unchecked.stderr);
    assert!(
        said.contains("TLS handshake") && said.contains("certificate"),
        "{said}"
    );
    // And mist bench runs over TLS.
    let bench = support::mist()
        .args(["bench", "--subs", "2", "--msgs", "200", "--host", tls])
        .args(&mutual)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bench.stdout);
    assert!(text.contains("(0 of 400 deliveries missing)"), "{text}");
}

#[test]
fn mutual_tls_admits_only_clients_with_a_certificate_the_ca_signed() {
    let certs = Certs::new();
    let server = tls_server(
        "async-std",
        &certs,
        &["--tls-client-ca", &certs.path("ca.pem")],
    );
    let addr = &server.listeners["tls"];
    let mut admitted = Client::tls(addr, certs.client_config(true));
    admitted.subscribe(&["m"]);

    // Without a certificate: TLS 1.3 reports the refusal on the first read.
    let refused = support::tls_ping(addr, certs.client_config(false));
    assert!(refused.is_err(), "{refused:?}");
    // With one from another CA.
    let stranger = Certs::new();
    let refused = support::tls_ping(addr, stranger.client_config(true));
    assert!(refused.is_err(), "{refused:?}");
    // The admitted client and the plain listener carry on.
    server.connect().publish(&["m"], "still here");
    assert_eq!(admitted.recv().data.as_deref(), Some("still here"));
    let wait = Instant::now() + Duration::from_secs(5);
    while !server
        .log()
        .iter()
        .any(|l| l.contains("TLS handshake failed") && l.contains("127.0.0.1:"))
    {
        assert!(Instant::now() < wait, "{:#?}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_plaintext_or_silent_client_on_a_tls_port_costs_only_its_connection() {
    let certs = Certs::new();
    let server = tls_server("smol", &certs, &["--handshake-timeout", "1"]);
    let addr = &server.listeners["tls"];
    let mut neighbour = Client::tls(addr, certs.client_config(false));
    neighbour.subscribe(&["n"]);

    // A plaintext line: the handshake fails and the connection closes.
    let mut plaintext = std::net::TcpStream::connect(addr).unwrap();
    plaintext
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plaintext.write_all(b"{\"command\":\"ping\"}\n").unwrap();
    let mut buf = [0u8; 256];
    let answered = plaintext.read(&mut buf).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&buf[..answered]).contains("pong"),
        "no protocol without TLS"
    );
    // A client that opens a connection and sends nothing is closed once
    // the handshake time is up.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(silent.read(&mut buf).unwrap_or(0), 0, "closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Many of them at once do not stop a well-behaved client.
    let idle: Vec<_> = (0..50)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let started = Instant::now();
    server.connect().publish(&["n"], "served");
    assert_eq!(neighbour.recv().data.as_deref(), Some("served"));
    let mut fresh = Client::tls(addr, certs.client_config(false));
    fresh.sync();
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(idle);
    let log = server.log().join("\n");
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(
        log.contains("TLS handshake did not finish in time"),
        "{log}"
    );
}

#[test]
fn bad_tls_settings_stop_the_server_at_start_naming_the_file_or_flag() {
    let certs = Certs::new();
    let other = Certs::new();
    let expired = Certs::valid_between((2020, 1, 1), (2021, 1, 1));
    let not_yet = Certs::valid_between((2090, 1, 1), (2091, 1, 1));
    let missing = certs.path("nowhere.pem");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--listeners".into(), "tls://127.0.0.1:0".into()],
            "needs a certificate: give --tls-cert and --tls-key".into(),
        ),
        (
            vec!["--tls-cert".into(), certs.path("server.pem")],
            "--tls-cert needs --tls-key".into(),
        ),
        (
            vec![
                "--tls-cert".into(),
                missing.clone(),
                "--tls-key".into(),
                certs.path("server.key"),
            ],
            format!("cannot read the TLS certificate {missing}"),
        ),
        (
            vec![
                "--tls-cert".into(),
                certs.path("server.pem"),
                "--tls-key".into(),
                other.path("server.key"),
            ],
            format!(
                "the TLS key {} does not go with the certificate",
                other.path("server.key")
            ),
        ),
        (
            vec![
                "--tls-cert".into(),
                certs.path("server.key"),
                "--tls-key".into(),
                certs.path("server.key"),
            ],
            "holds no certificate".into(),
        ),
        (
            expired.server_flags(),
            format!("the TLS certificate {} expired", expired.path("server.pem")),
        ),
        (not_yet.server_flags(), "is not valid before".into()),
        (
            [
                certs.server_flags(),
                vec!["--tls-client-ca".into(), missing.clone()],
            ]
            .concat(),
            format!("cannot read the TLS client CA {missing}"),
        ),
    ];
    for (args, says) in cases {
        let out = support::mist()
            .args([
                "--server",
                "--listeners",
                "tcp://127.0.0.1:0,tls://127.0.0.1:0",
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&says), "{args:?}: {stderr}");
    }
}
