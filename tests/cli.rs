//! The `mist` command line: server flags, client subcommands, exit statuses.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::thread;
use support::{mist, Server, TIMEOUT};

fn run(args: &[&str]) -> Output {
    mist()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mist runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the command exited with `code` and said `message` on stderr.
fn assert_fails(out: &Output, code: i32, message: &str) {
    let said = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{said}");
    assert!(said.contains(message), "expected {message:?} in: {said}");
}

#[test]
fn version() {
    for flag in ["-v", "--version"] {
        let out = run(&[flag]);
        assert!(out.status.success());
        assert_eq!(
            stdout(&out).trim(),
            format!("mist {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn ping_prints_pong_and_the_round_trip_time() {
    let server = Server::start();
    let out = run(&["ping", "--host", &server.addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("pong (") && text.trim_end().ends_with(" ms)"),
        "{text}"
    );
}

#[test]
fn subscribe_prints_what_publish_sends() {
    let server = Server::start();
    subscribe_and_publish(&server.addr, &server.addr);
}

#[test]
fn the_client_commands_speak_websocket_too() {
    let server = Server::start();
    let ws = format!("ws://{}", server.listeners["ws"]);
    let http_ws = format!("ws://{}/subscribe/websocket", server.http());
    subscribe_and_publish(&ws, &http_ws);
}

/// What a process says on stderr, line by line.
struct Said(mpsc::Receiver<String>);

impl Said {
    /// The next line containing `what`; it must come within the timeout.
    fn wait_for(&self, what: &str) -> String {
        loop {
            let line = self
                .0
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("no {what:?} said"));
            if line.contains(what) {
                return line;
            }
        }
    }
}

/// `mist subscribe` with `args`, its stdout piped, and what it says on
/// stderr (when its subscription is in place, say).
fn subscriber_process(args: &[&str]) -> (std::process::Child, Said) {
    let mut child = mist()
        .arg("subscribe")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (said, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = said.send(line);
        }
    });
    (child, Said(lines))
}

/// `mist subscribe --host subscriber` prints what `mist publish --host
/// publisher` sends.
fn subscribe_and_publish(subscriber: &str, publisher: &str) {
    let (subscriber, said) =
        subscriber_process(&["--tags", "a,b", "--count", "2", "--host", subscriber]);
    said.wait_for("subscribed to a,b");
    for (tags, data) in [
        ("a", "not for it"),
        ("b,a,c", "first"),
        ("a,b", "line\nbreak"),
    ] {
        let out = run(&[
            "publish", "--tags", tags, "--data", data, "--host", publisher,
        ]);
        assert!(out.status.success(), "{}", self::stderr(&out));
    }
    let out = subscriber.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON message per line"))
        .collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"command":"publish","tags":["b","a","c"],"data":"first"}),
            serde_json::json!({"command":"publish","tags":["a","b"],"data":"line\nbreak"}),
        ]
    );
}

#[test]
fn list_and_unsubscribe() {
    let server = Server::start();
    let out = run(&[
        "list",
        "--subscribe",
        "b,a",
        "--subscribe",
        "c",
        "--host",
        &server.addr,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(reply["data"], "a,b c");
    assert_eq!(
        reply["subscriptions"],
        serde_json::json!([["a", "b"], ["c"]])
    );
    let out = run(&["unsubscribe", "--tags", "a", "--host", &server.addr]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn server_errors_go_to_stderr_with_status_1() {
    let server = Server::start_with(&["--max-tags", "2"]);
    let out = run(&[
        "publish",
        "--tags",
        "a,b,c",
        "--data",
        "x",
        "--host",
        &server.addr,
    ]);
    assert_fails(&out, 1, "server error: too many tags: at most 2");
}

#[test]
fn an_unreachable_server_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&["ping", "--host", &format!("127.0.0.1:{port}")]);
    assert_fails(&out, 1, "cannot connect to mist at");
}

#[test]
fn a_port_in_use_is_a_clear_startup_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("tcp://{}", taken.local_addr().unwrap());
    let out = run(&["--server", "--listeners", &uri]);
    assert_fails(
        &out,
        1,
        &format!("cannot listen on {uri}: the address is already in use"),
    );
}

#[test]
fn unsupported_listeners_are_skipped_and_none_left_is_fatal() {
    let out = run(&["--server", "--listeners", "gopher://127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("skipping listener gopher://127.0.0.1:0"),
        "{text}"
    );
    assert!(text.contains("no listener could be started"), "{text}");
}

#[test]
fn listeners_may_be_repeated_or_comma_separated() {
    let mut server = mist()
        .args([
            "--server",
            "--listeners",
            "tcp://127.0.0.1:0,gopher://127.0.0.1:0",
            "--listeners",
            "tcp://127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let (line, lines) = mpsc::channel();
    thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line.send(l);
        }
    });
    let mut listening = 0;
    while listening < 2 {
        let l = lines.recv_timeout(TIMEOUT).expect("two listeners start");
        listening += usize::from(l.contains("listening on tcp://127.0.0.1:"));
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn bad_flag_values_are_usage_errors() {
    for (args, message) in [
        (
            &["--server", "--log-level", "loud"][..],
            "invalid log-level \"loud\"",
        ),
        (
            &["--server", "--max-line", "0"][..],
            "max-line must be at least 1",
        ),
        (
            &["--server", "--listeners", "127.0.0.1:1445"][..],
            "expected scheme://host:port",
        ),
        (&[][..], "nothing to do"),
        (
            &["--server", "--replicator", "tcp://127.0.0.1:1446"][..],
            "replicator scheme \"tcp\"",
        ),
        (
            &["bench", "--mode", "sideways"][..],
            "unknown --mode \"sideways\"",
        ),
        (
            &["publish", "--tags", ","][..],
            "--tags needs at least one tag",
        ),
    ] {
        let out = run(args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn bench_measures_fanout_and_latency() {
    let server = Server::start();
    let out = run(&[
        "bench",
        "--subs",
        "3",
        "--msgs",
        "500",
        "--size",
        "64",
        "--host",
        &server.addr,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("delivered         1500 msgs"), "{text}");
    assert!(text.contains("(0 of 1500 deliveries missing)"), "{text}");
    let out = run(&[
        "bench",
        "--mode",
        "latency",
        "--rate",
        "200",
        "--duration",
        "0.5",
        "--host",
        &server.addr,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("received 100 of 100 messages"), "{text}");
    assert!(text.contains("p99"), "{text}");
}

#[test]
fn who_and_listall() {
    let server = Server::start();
    let mut a = server.connect();
    a.subscribe(&["b", "a"]);
    a.subscribe(&["c"]);
    let mut b = server.connect();
    b.subscribe(&["a", "b"]);
    let mut idle = server.connect();
    idle.sync();
    let out = run(&["who", "--host", &server.addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    // a, b, the idle client and the command's own connection.
    assert_eq!(stdout(&out).trim(), "4 connections, 2 subscribers");
    let out = run(&["listall", "--host", &server.addr]);
    let reply: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(reply["data"], "a,b c", "distinct sets across connections");
    assert_eq!(
        reply["subscriptions"],
        serde_json::json!([["a", "b"], ["c"]])
    );
}

#[test]
fn client_commands_take_a_token() {
    let server = Server::start_with(&["--authenticator", "memory://", "--token", "adm"]);
    let out = run(&["ping", "--host", &server.addr]);
    assert_fails(&out, 1, "authentication required");
    let out = run(&["ping", "--host", &server.addr, "--token", "nope"]);
    assert_fails(&out, 1, "authentication failed");
    let out = run(&["listall", "--host", &server.addr, "--token", "adm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&[
        "publish",
        "--tags",
        "t",
        "--data",
        "x",
        "--host",
        &server.addr,
        "--token",
        "adm",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("mist-config-{}-{name}.yml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_config_file_is_read_and_flags_override_it() {
    let path = write_config("precedence", "max-tags: 2\nmax-line: 4096\nruntime: smol\n");
    let path = path.to_str().unwrap();
    let server = Server::start_with(&["--config", path, "--max-tags", "3"]);
    let mut client = server.connect();
    client.publish(
        &["a", "b", "c"],
        "three tags: the flag's 3 wins over the file's 2",
    );
    client.send(mist_proto::Request::new("publish").tags(["a", "b", "c", "d"]));
    assert_eq!(client.error(), "too many tags: at most 3 tags are allowed");
    client.send_raw(&[b'x'; 5000]);
    client.send_raw(b"\n");
    assert!(
        client.error().contains("the limit is 4096 bytes"),
        "the file's max-line"
    );
}

#[test]
fn the_example_config_starts_a_server() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/mist.example.yml");
    let server = Server::start_with(&["--config", example]);
    server.connect().sync();
}

#[test]
fn config_mistakes_stop_the_server_with_a_clear_error() {
    let unknown = write_config("unknown", "log-level: info\nmax-lines: 5\n");
    let out = run(&["--server", "--config", unknown.to_str().unwrap()]);
    assert_fails(&out, 1, "unknown field `max-lines`");
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let wrong = write_config("wrong", "max-tags: many\n");
    let out = run(&["--server", "--config", wrong.to_str().unwrap()]);
    assert_fails(&out, 1, "max-tags");
    let out = run(&["--server", "--config", "/nonexistent/mist.yml"]);
    assert_fails(&out, 1, "cannot read the config file /nonexistent/mist.yml");
    let no_token = write_config("no-token", "authenticator: memory://\n");
    let out = run(&["--server", "--config", no_token.to_str().unwrap()]);
    assert_fails(&out, 2, "an authenticator needs a token");
}

#[test]
fn subscribe_with_reconnect_outlives_its_server() {
    let port = support::free_port();
    let listener = format!("tcp://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let first = Server::start_with(&["--listeners", &listener]);
    support::wait_listening(&addr);
    let (subscriber, said) = subscriber_process(&[
        "--reconnect",
        "--tags",
        "t",
        "--count",
        "1",
        "--host",
        &addr,
    ]);
    said.wait_for("subscribed to t");
    drop(first);
    let second = Server::start_with(&["--listeners", &listener]);
    let back = said.wait_for("reconnected");
    assert!(
        back.contains("messages published meanwhile were lost"),
        "{back}"
    );
    let out = run(&["publish", "--tags", "t", "--data", "after", "--host", &addr]);
    assert!(out.status.success(), "{}", self::stderr(&out));
    let out = subscriber.wait_with_output().unwrap();
    assert!(out.status.success());
    let message: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(message["data"], "after");
    drop(second);
}
