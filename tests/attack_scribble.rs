//! Issue 8, finding 10: the scribble store keeps tokens out of logs and
//! survives a damaged file.
//!
//! A token file's name is the token, so the server names a file by its
//! fingerprint; a file cut short by a crash, or one whose token is not the
//! one its name says, is skipped with a warning and the other tokens are
//! served (before, one truncated file stopped the server from starting).
//! The store's own rules (fingerprints in errors, directory syncs) are
//! tested in mist-auth's conformance tests.

mod support;

use support::{register, Server, Transport};

const ADMIN: &str = "admin-token";

#[test]
fn a_damaged_token_file_is_skipped_without_showing_its_token() {
    let dir = std::env::temp_dir().join(format!("mist-scribble-damaged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let uri = format!("scribble://?db={}", dir.display());
    let args = ["--authenticator", uri.as_str(), "--token", ADMIN];
    {
        let server = Server::start_on("async-std", &args);
        register(&server, ADMIN, "durable", &["news"]);
    }
    std::fs::write(
        dir.join("tokens/leaky-token.json"),
        b"{\"token\":\"leaky-to",
    )
    .unwrap();
    std::fs::write(
        dir.join("tokens/renamed-token.json"),
        b"{\"token\":\"other\",\"tags\":[\"news\"]}",
    )
    .unwrap();
    let server = Server::start_on("smol", &args);
    let mut client = server.client_with_token(Transport::Tcp, "durable");
    client.subscribe(&["news"]);
    assert_eq!(server.websocket_status(Transport::Ws, Some("other")), 401);
    let log = server.log().join("\n");
    assert!(
        log.contains("skipping a token file: the record of token #"),
        "{log}"
    );
    assert!(
        log.contains("the token in it is not the one its name says"),
        "{log}"
    );
    for secret in ["leaky", "renamed", "durable", ADMIN] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
