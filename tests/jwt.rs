//! Signed tokens (`--authenticator jwt://?key=PATH`): a token's claims are
//! its grants, enforced on every transport as a registered token's are; a
//! token that is expired, not valid yet, badly signed, unsigned
//! (`alg: none`) or signed with another algorithm is refused at connect; a
//! connection whose token expires is closed saying so; nothing is stored,
//! so the stored-token admin commands say so; and no token reaches the log.
//! Keys for Ed25519 and RSA are made by openssl at test time.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mist_proto::Request;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{Server, TempDir, Transport};

/// A key directory for one test, removed with it.
struct Keys {
    dir: TempDir,
}

impl Keys {
    fn new(name: &str) -> Keys {
        let dir = TempDir::new(&format!("jwt-{name}"));
        std::fs::write(dir.file("hmac.key"), SECRET).unwrap();
        Keys { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.file(file)
    }

    /// Makes `name.pem` (private) and `name.pub` (public) with openssl.
    fn openssl(&self, name: &str, algorithm: &[&str]) {
        let private = self.path(&format!("{name}.pem"));
        let made = Command::new("openssl")
            .args(["genpkey", "-out", &private])
            .args(algorithm)
            .output()
            .expect("openssl is installed (scripts/test.sh installs it)");
        support::succeeded(made, "openssl genpkey");
        let public = Command::new("openssl")
            .args(["pkey", "-in", &private, "-pubout", "-out"])
            .arg(self.path(&format!("{name}.pub")))
            .output()
            .unwrap();
        support::succeeded(public, "openssl pkey");
    }
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token with `claims`, signed by `key` with `algorithm`.
fn sign(algorithm: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

fn hmac(claims: serde_json::Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn claims(tags: &[&str], ttl: i64) -> serde_json::Value {
    serde_json::json!({"exp": now() as i64 + ttl, "mist": {"tags": tags}})
}

fn server(keys: &Keys, key_file: &str, extra: &[&str]) -> Server {
    let uri = format!("jwt://?key={}", keys.path(key_file));
    let mut args = vec!["--authenticator", uri.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// The first reply to `auth` with `token` over TCP.
fn auth_reply(server: &Server, token: &str) -> mist_proto::Message {
    let mut client = server.connect();
    client.send(Request::new("auth").data(token));
    client.send(Request::new("ping"));
    client.recv()
}

#[test]
fn a_signed_tokens_claims_are_its_grants_on_every_transport() {
    let keys = Keys::new("grants");
    let server = server(&keys, "hmac.key", &[]);
    // Minted by the CLI, as a backend would.
    let minted = support::mist()
        .args([
            "token",
            "--key",
            &keys.path("hmac.key"),
            "--tags",
            "news",
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    let reader = support::succeeded(minted, "mist token").trim().to_string();
    let admin = hmac(serde_json::json!({"exp": now() + 3600, "mist": {"admin": true}}));

    for transport in [Transport::Tcp, Transport::Ws, Transport::HttpWs] {
        let mut client = server.client_with_token(transport, &reader);
        client.subscribe(&["news"]);
        client.send(Request::new("subscribe").tags(["secret"]));
        let refused = client.error();
        assert!(
            refused.contains("may not use the tag(s) secret"),
            "{transport:?}: {refused}"
        );
        // It receives only messages all of whose tags it was granted.
        let mut publisher = server.client_with_token(Transport::Tcp, &admin);
        publisher.publish(&["news", "secret"], "not for readers");
        publisher.publish(&["news"], "for readers");
        assert_eq!(client.deliveries(), ["for readers"], "{transport:?}");
    }
    // Over HTTP: the header and the query parameter.
    let http = &server.listeners["http"];
    let denied = support::http(
        http,
        "GET",
        "/subscribe?tags=secret",
        &[("X-Auth-Token", &reader)],
        b"",
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
    let body = br#"{"tags":["news"],"data":"over http"}"#;
    let published = support::http(
        http,
        "POST",
        &format!("/publish?x-auth-token={reader}"),
        &[],
        body,
    );
    assert_eq!(published.status, 200, "{}", published.body);
    let unsigned = support::http(http, "POST", "/publish?x-auth-token=nonsense", &[], body);
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
    // The admin's token is the admin.
    let mut admin_client = server.client_with_token(Transport::Tcp, &admin);
    admin_client.send(Request::new("listall"));
    assert!(admin_client.recv().error.is_none());
    let log = server.log().join("\n");
    assert!(
        !log.contains(&reader) && !log.contains(&admin),
        "no token in the log"
    );
}

#[test]
fn tokens_that_are_not_valid_now_or_not_signed_so_are_refused() {
    let keys = Keys::new("refused");
    keys.openssl("ed", &["-algorithm", "ed25519"]);
    keys.openssl(
        "rsa",
        &["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let hmac_server = server(&keys, "hmac.key", &[]);
    // Failed attempts are throttled per address: a second server takes
    // the cases beyond the first's allowance.
    let hmac_again = server(&keys, "hmac.key", &[]);
    let ed_server = server(&keys, "ed.pub", &[]);
    let rsa_server = server(&keys, "rsa.pub", &[]);
    let ed_key = EncodingKey::from_ed_pem(&std::fs::read(keys.path("ed.pem")).unwrap()).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(&std::fs::read(keys.path("rsa.pem")).unwrap()).unwrap();

    // What each key takes.
    let good = claims(&["t"], 3600);
    for (server, token) in [
        (&hmac_server, hmac(good.clone())),
        (&ed_server, sign(Algorithm::EdDSA, &ed_key, good.clone())),
        (&rsa_server, sign(Algorithm::RS256, &rsa_key, good.clone())),
    ] {
        let reply = auth_reply(server, &token);
        assert_eq!(reply.data.as_deref(), Some("pong"), "{reply:?}");
    }

    let none = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64.encode(good.to_string());
        format!("{header}.{payload}.")
    };
    let other_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&[9u8; 40]),
        good.clone(),
    );
    let cases = [
        (&hmac_server, hmac(claims(&["t"], -10)), "the token expired"),
        (
            &hmac_server,
            hmac(serde_json::json!({"exp": now() + 3600, "nbf": now() + 600})),
            "not valid yet",
        ),
        (&hmac_server, other_secret, "signature is not valid"),
        (&hmac_server, none, "alg none is never taken"),
        (
            &hmac_server,
            hmac(serde_json::json!({"mist": {"tags": ["t"]}})),
            "no \"exp\" claim",
        ),
        (
            &ed_server,
            hmac(good.clone()),
            "an algorithm this server does not take (its key is an Ed25519 public key)",
        ),
        (
            &hmac_again,
            sign(Algorithm::RS256, &rsa_key, good.clone()),
            "an algorithm this server does not take (its key is an HMAC secret)",
        ),
    ];
    for (server, token, says) in cases {
        let reply = auth_reply(server, &token);
        let error = reply.error.unwrap_or_else(|| panic!("{says}: accepted"));
        assert!(error.contains(says), "{says}: {error}");
        assert!(!error.contains(&token));
        assert!(
            server.log().iter().all(|l| !l.contains(&token)),
            "{says}: token logged"
        );
    }
}

#[test]
fn a_connection_whose_token_expires_is_closed_saying_so() {
    let keys = Keys::new("expiry");
    let server = server(&keys, "hmac.key", &[]);
    let token = hmac(claims(&["t"], 2));
    let mut client = server.client_with_token(Transport::Tcp, &token);
    client.subscribe(&["t"]);
    let mut ws = server.client_with_token(Transport::Ws, &token);
    ws.subscribe(&["t"]);
    let started = std::time::Instant::now();
    for client in [&mut client, &mut ws] {
        let last = client.until_closed();
        let error = last
            .last()
            .and_then(|m| m.error.clone())
            .unwrap_or_default();
        assert!(error.contains("the token expired"), "{last:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn stored_token_commands_say_that_signed_tokens_are_not_stored() {
    let keys = Keys::new("admin");
    let server = server(&keys, "hmac.key", &["--token", "server-secret"]);
    let admin = hmac(serde_json::json!({"exp": now() + 3600, "mist": {"admin": true}}));
    for token in [admin.as_str(), "server-secret"] {
        let mut client = server.client_with_token(Transport::Tcp, token);
        for command in ["register", "unregister", "set", "unset", "tags"] {
            client.send(Request::new(command).tags(["t"]).data("someone"));
            let error = client.error();
            assert!(
                error.contains(&format!(
                    "{command}: this server checks signed tokens (JWT), which are not stored"
                )),
                "{error}"
            );
        }
    }
    // A key that cannot be used stops the server at start, naming it.
    let out = support::mist()
        .args(["--server", "--listeners", "tcp://127.0.0.1:0"])
        .args([
            "--authenticator",
            &format!("jwt://?key={}", keys.path("missing.key")),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read the JWT key") && stderr.contains("missing.key"),
        "{stderr}"
    );
}
