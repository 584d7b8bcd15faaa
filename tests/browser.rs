//! A real browser: headless Chromium runs the README's WebSocket and
//! EventSource snippets, verbatim, against a running server. The page reports
//! everything the snippets `console.log` back to the test by publishing it to
//! mist, so the test reads the browser's output over plain TCP.
//!
//! In CI (`CI` set) Chromium must be present — `scripts/test.sh` installs it;
//! on a developer machine without it the test is skipped with a notice.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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
        .filter_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .next()
}

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a `console.log` line from the page that contains `needle`.
fn wait_for_log(logs: &mut Client, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + TIMEOUT * 2;
    while !seen.iter().any(|l| l.contains(needle)) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        match logs.try_recv(left) {
            Some(message) => seen.push(message.data.unwrap_or_default()),
            None => panic!("the browser never logged {needle:?}; it logged {seen:?}"),
        }
    }
}

#[test]
fn the_readme_snippets_work_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium is required in CI: scripts/test.sh installs it (apt-get install chromium)"
        );
        eprintln!(
            "NOTICE: browser test skipped: no chromium on this machine (apt-get install chromium)"
        );
        return;
    };
    let server = Server::start();
    let http = server.http().to_string();
    let mut logs = server.connect();
    logs.subscribe(&["browser-log"]);

    // The page: report console.log through a WebSocket of its own, then run the
    // README's snippets with the server's real address.
    let report = format!("ws://{}/", server.listeners["ws"]);
    let snippets = format!(
        "{}\n{}",
        readme_snippet("<!-- browser: websocket -->"),
        readme_snippet("<!-- browser: eventsource -->")
    )
    .replace("localhost:8080", &http);
    let page = format!(
        r#"<!doctype html><meta charset="utf-8"><script>
const report = new WebSocket({report:?});
const pending = [];
function forward(text) {{
  const line = JSON.stringify({{command: "publish", tags: ["browser-log"], data: text}});
  if (report.readyState === 1) report.send(line); else pending.push(line);
}}
report.onopen = () => {{ for (const line of pending.splice(0)) report.send(line); }};
console.log = (...args) => forward(args.join(" "));
window.onerror = (message) => forward("page error: " + message);
</script><script>
{snippets}
</script>"#
    );
    let dir = std::env::temp_dir().join(format!("mist-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page_path = dir.join("page.html");
    std::fs::write(&page_path, page).unwrap();
    let _browser = Browser(
        Command::new(chromium)
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
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("file://{}", page_path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts"),
    );

    let mut seen = Vec::new();
    // The WebSocket snippet subscribes, then pings: the pong means it is subscribed.
    wait_for_log(&mut logs, r#""data":"pong""#, &mut seen);
    wait_for_log(&mut logs, "Events open", &mut seen);
    let mut publisher = server.connect();
    publisher.publish(&["hello", "world"], "hi from tcp");
    wait_for_log(
        &mut logs,
        r#"Response! {"command":"publish","tags":["hello","world"],"data":"hi from tcp"}"#,
        &mut seen,
    );
    wait_for_log(
        &mut logs,
        r#"Event! {"command":"publish","tags":["hello","world"],"data":"hi from tcp"}"#,
        &mut seen,
    );
    assert!(
        !seen.iter().any(|l| l.starts_with("page error")),
        "{seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::thread::sleep(Duration::from_millis(10));
}
