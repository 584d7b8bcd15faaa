//! Issue 8, finding 3: tags are bounded in bytes.
//!
//! A tag may be at most `--max-tag-bytes` long, and one connection's
//! subscriptions may take at most `--max-subscription-bytes`. Before, one
//! connection pinned 98 MiB of tag text in half a second; now it is told no
//! at the limit, and the server's memory does not follow its input.

mod support;

use mist_proto::Request;
use std::io::Write;
use support::Server;

#[test]
fn a_tag_longer_than_the_limit_is_refused_everywhere_tags_go() {
    let server = Server::start_on("smol", &["--max-tag-bytes", "16"]);
    let mut client = server.connect();
    let long = "x".repeat(17);
    for command in ["subscribe", "unsubscribe", "publish"] {
        client.send(Request::new(command).tags(["ok", &long]));
        assert_eq!(
            client.error(),
            "tag too long: a tag may have at most 16 bytes",
            "{command}"
        );
    }
    client.subscribe(&[&"y".repeat(16)]);
}

#[test]
fn the_limits_come_from_the_config_file_too() {
    let dir = std::env::temp_dir().join(format!("mist-tags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mist.yml");
    std::fs::write(&config, "max-tag-bytes: 8\nmax-subscription-bytes: 40\n").unwrap();
    let server = Server::start_on("async-std", &["--config", config.to_str().unwrap()]);
    let mut client = server.connect();
    client.send(Request::new("subscribe").tags(["123456789"]));
    assert_eq!(
        client.error(),
        "tag too long: a tag may have at most 8 bytes"
    );
    // Each tag counts its length plus 3, each subscription 2 more:
    // ["12345678"] takes 13, so three fit in 40 and a fourth does not.
    for tag in ["aaaaaaaa", "bbbbbbbb", "cccccccc"] {
        client.subscribe(&[tag]);
    }
    client.send(Request::new("subscribe").tags(["dddddddd"]));
    assert_eq!(
        client.error(),
        "too many subscription bytes: a connection's subscriptions may take at most 40 bytes (each tag counts its length plus 3)"
    );
    client.send(Request::new("unsubscribe").tags(["aaaaaaaa"]));
    client.subscribe(&["dddddddd"]);
    std::fs::remove_dir_all(dir).unwrap();
}

fn a_connection_cannot_pin_tag_text(runtime: &str) {
    // A small outbox, so that the refusals queued for the attacker do not
    // count as tags.
    let server = Server::start_on(runtime, &["--max-outbox-bytes", "1048576"]);
    let mut attacker = server.connect();
    let rss_before = server.rss_kib();
    // 2,400 subscriptions of 64 distinct 250-byte tags: 38 MB of tag text
    // offered, 1 MiB of it taken. The refusals, which echo the tags, are
    // read after every 200.
    let mut refused = 0;
    for batch in 0..12 {
        let mut lines = Vec::new();
        for n in 0..200 {
            let tags: Vec<String> = (0..64)
                .map(|t| format!("{batch:04}{n:04}{t:02}{}", "t".repeat(240)))
                .collect();
            lines.extend(Request::new("subscribe").tags(tags).to_line());
        }
        attacker.stream().write_all(&lines).unwrap();
        refused += attacker
            .sync()
            .iter()
            .filter(|r| {
                r.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("too many subscription bytes"))
            })
            .count();
    }
    let grown_mib = server.rss_kib().saturating_sub(rss_before) / 1024;
    println!("{runtime}: {refused} refused; the server grew {grown_mib} MiB");
    assert!(refused > 2_300, "{runtime}: only {refused} refused");
    assert!(
        grown_mib < 24,
        "{runtime}: the server grew {grown_mib} MiB for one connection's tags"
    );
}

on_every_runtime!(a_connection_cannot_pin_tag_text);
