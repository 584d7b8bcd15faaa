//! A real browser: headless Chromium runs the README's WebSocket and
//! EventSource snippets, verbatim, against a running server on each runtime.
//! The page is served over HTTP from an origin of its own, which the server
//! allows with `--cors-origin`, as the README says a web application must.
//! It forwards everything the snippets `console.log` to the test by
//! publishing it to mist, so the test reads the browser's output over TCP.
//! The snippets run over TLS too (`wss://`, and an EventSource on
//! `https://`), with the browser trusting the test's server certificate.
//!
//! In CI (`CI` set) Chromium must be present — `scripts/test.sh` installs it;
//! on a developer machine without it the test is skipped with a notice.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use support::{Client, Server, TIMEOUT};

/// The code block of the README that follows `marker`.
fn readme_snippet(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("README has {marker}"))
        .1;
    let block = after.split_once("```js\n").expect("a js block").1;
    block
        .split_once("```")
        .expect("a closed block")
        .0
        .to_string()
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// A headless Chromium showing one page, killed when dropped.
struct Browser {
    child: Child,
    /// Its profile; dropped after the browser is killed (in `drop`).
    _dir: support::TempDir,
}

/// Where the page is served from: an origin of its own, known before the
/// page is written (the server must allow it when it starts).
struct PageServer {
    listener: TcpListener,
    origin: String,
}

impl PageServer {
    fn bind() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        PageServer { listener, origin }
    }

    /// Serves `page` at every path, for as long as the test runs.
    fn serve(self, page: String) {
        std::thread::spawn(move || {
            for stream in self.listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
    }
}

impl Browser {
    /// `trusting` is the base64 SHA-256 of a certificate's public key the
    /// browser accepts without a CA (the test's own server certificate).
    fn open(chromium: &Path, name: &str, url: &str, trusting: &str) -> Browser {
        let dir = support::TempDir::new(&format!("browser-{name}"));
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", dir.file("profile")))
            .arg(format!("--ignore-certificate-errors-spki-list={trusting}"))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        Browser { child, _dir: dir }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Before its profile directory goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page that forwards `console.log` to mist on the `browser-log` tag, then
/// runs each snippet in a scope of its own whose log lines carry its label.
fn page(report: &str, snippets: &[(&str, String)]) -> String {
    let mut page = format!(
        r#"<!doctype html><meta charset="utf-8"><script>
const report = new WebSocket({report:?});
const pending = [];
function forward(text) {{
  const line = JSON.stringify({{command: "publish", tags: ["browser-log"], data: text}});
  if (report.readyState === 1) report.send(line); else pending.push(line);
}}
report.onopen = () => {{ for (const line of pending.splice(0)) report.send(line); }};
window.onerror = (message) => forward("page error: " + message);
</script>"#
    );
    for (label, code) in snippets {
        page.push_str(&format!(
            "<script>(function () {{\nconst console = {{ log: (...args) => forward({label:?} + \" \" + args.join(\" \")) }};\n{code}\n}})();</script>\n"
        ));
    }
    page
}

/// Waits until the page logged every line in `wanted`.
fn wait_for_logs(logs: &mut Client, wanted: &[String]) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT * 2;
    let mut seen: Vec<String> = Vec::new();
    while let Some(missing) = wanted
        .iter()
        .find(|w| !seen.iter().any(|l| l.contains(w.as_str())))
    {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        match logs.try_recv(left) {
            Some(message) => seen.push(message.data.unwrap_or_default()),
            None => panic!("the browser never logged {missing:?}; it logged {seen:?}"),
        }
    }
    assert!(
        !seen.iter().any(|l| l.starts_with("page error")),
        "{seen:?}"
    );
    seen
}

/// The base64 SHA-256 of the public key of the certificate at `pem`, as
/// Chromium's `--ignore-certificate-errors-spki-list` takes it.
fn spki_hash(pem: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in {pem} | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
        ))
        .output()
        .expect("openssl runs");
    support::succeeded(out, "openssl").trim().to_string()
}

fn snippets_work_on(runtime: &str, chromium: &Path) {
    let pages = PageServer::bind();
    let origin = pages.origin.clone();
    let certs = support::Certs::new();
    let mut args = vec!["--cors-origin".to_string(), origin.clone()];
    args.extend(certs.server_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let schemes = ["tcp", "ws", "http", "wss", "https"];
    let server = Server::start_listening(runtime, &schemes, &args, &[]);
    let mut logs = server.connect();
    logs.subscribe(&["browser-log"]);
    let websocket = readme_snippet("<!-- browser: websocket -->");
    let mut snippets = vec![(
        "[ws]",
        websocket.replace("localhost:8888", &server.listeners["ws"]),
    )];
    if let Some(http) = server.listeners.get("http") {
        let over_http = websocket.replace("localhost:8888", http);
        snippets.push(("[http-ws]", over_http));
        let events =
            readme_snippet("<!-- browser: eventsource -->").replace("localhost:8080", http);
        snippets.push(("[sse]", events));
    }
    // The same snippets over TLS: a WebSocket on the wss:// listener, and
    // an EventSource on the https:// one.
    let wss = websocket
        .replace("ws://", "wss://")
        .replace("localhost:8888", &localhost(&server.listeners["wss"]));
    snippets.push(("[wss]", wss));
    let https_events = readme_snippet("<!-- browser: eventsource -->")
        .replace("http://", "https://")
        .replace("localhost:8080", &localhost(&server.listeners["https"]));
    snippets.push(("[https-sse]", https_events));
    let page = page(&format!("ws://{}/", server.listeners["ws"]), &snippets);
    pages.serve(page);
    let trusting = spki_hash(&certs.path("server.pem"));
    let _browser = Browser::open(chromium, runtime, &format!("{origin}/"), &trusting);

    // Each WebSocket snippet subscribes, then pings: its pong means it is
    // subscribed. The EventSource snippet is subscribed once it is open.
    let ready: Vec<String> = snippets
        .iter()
        .map(|(label, _)| match *label {
            "[sse]" | "[https-sse]" => format!("{label} Events open"),
            label => format!(r#"{label} Response! {{"command":"ping","data":"pong"}}"#),
        })
        .collect();
    wait_for_logs(&mut logs, &ready);
    let mut publisher = server.connect();
    publisher.publish(&["hello", "world"], "hi from tcp");
    let delivery = r#"{"command":"publish","tags":["hello","world"],"data":"hi from tcp"}"#;
    let received: Vec<String> = snippets
        .iter()
        .map(|(label, _)| match *label {
            "[sse]" | "[https-sse]" => format!("{label} Event! {delivery}"),
            label => format!("{label} Response! {delivery}"),
        })
        .collect();
    wait_for_logs(&mut logs, &received);
}

/// `localhost:PORT` for a listener's `127.0.0.1:PORT`: the name the test
/// certificate is for, as a page would use it.
fn localhost(addr: &str) -> String {
    format!("localhost:{}", addr.rsplit_once(':').unwrap().1)
}

#[test]
fn the_readme_snippets_work_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium is required in CI: scripts/test.sh installs it (apt-get install chromium)"
        );
        support::skipped(
            "browser test skipped: no chromium on this machine (apt-get install chromium)",
        );
        return;
    };
    for runtime in support::RUNTIMES {
        snippets_work_on(runtime, &chromium);
    }
}
