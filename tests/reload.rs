//! SIGHUP: the server reads its config file again and applies what can
//! change live (the TLS certificate, CORS origins, limits on new work, the
//! JWT key) while open connections carry on; what cannot change live is
//! reported as needing a restart; and a config with a mistake is refused
//! as a whole, the server running on as before.

mod support;

use mist_proto::Request;
use support::{Certs, Client, Server, TempDir};

/// A config file, rewritten by the test, in a directory of its own.
struct Config {
    dir: TempDir,
}

impl Config {
    fn new(name: &str) -> Config {
        Config {
            dir: TempDir::new(&format!("reload-{name}")),
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.file(file)
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.path("mist.yml"), yaml).unwrap();
    }

    /// Copies the server certificate and key of `certs` to `cert.pem` and
    /// `key.pem` here, as an operator renewing them would.
    fn install(&self, certs: &Certs) {
        std::fs::copy(certs.path("server.pem"), self.path("cert.pem")).unwrap();
        std::fs::copy(certs.path("server.key"), self.path("key.pem")).unwrap();
    }

    fn tls_yaml(&self) -> String {
        format!(
            "tls-cert: {}\ntls-key: {}\n",
            self.path("cert.pem"),
            self.path("key.pem")
        )
    }

    fn start(&self, schemes: &[&str]) -> Server {
        Server::start_listening(
            "async-std",
            schemes,
            &["--config", &self.path("mist.yml")],
            &[],
        )
    }
}

#[test]
fn a_certificate_renewed_on_disk_serves_new_connections_after_sighup() {
    let config = Config::new("cert");
    let (old, new) = (Certs::new(), Certs::new());
    config.install(&old);
    config.write(&config.tls_yaml());
    let server = config.start(&["tcp", "tls"]);
    let tls = server.listeners["tls"].clone();
    let mut open = Client::tls(&tls, old.client_config(false));
    open.subscribe(&["t"]);

    config.install(&new);
    let said = server.hangup();
    assert!(said.iter().any(|l| l.contains("read again")), "{said:?}");
    // New connections get the new certificate.
    let mut fresh = Client::tls(&tls, new.client_config(false));
    fresh.sync();
    assert!(
        support::tls_ping(&tls, old.client_config(false)).is_err(),
        "the old certificate is gone for new connections"
    );
    // The open connection carries on with the one it started with.
    fresh.publish(&["t"], "after the renewal");
    assert_eq!(open.recv().data.as_deref(), Some("after the renewal"));
}

#[test]
fn a_config_with_a_mistake_is_refused_as_a_whole_and_the_server_runs_on() {
    let config = Config::new("mistake");
    let certs = Certs::new();
    config.install(&certs);
    config.write(&format!("{}max-tags: 3\n", config.tls_yaml()));
    let server = config.start(&["tcp", "tls"]);
    let mut client = server.connect();
    client.subscribe(&["a", "b", "c"]);

    // A lower limit, but a certificate file that is not there: nothing
    // of it is applied.
    let missing = config.path("missing.pem");
    config.write(&format!(
        "tls-cert: {missing}\ntls-key: {}\nmax-tags: 2\n",
        config.path("key.pem")
    ));
    let said = server.hangup().join("\n");
    assert!(
        said.contains("refused, nothing changed") && said.contains(&missing),
        "{said}"
    );
    client.subscribe(&["d", "e", "f"]);
    let mut over_tls = Client::tls(&server.listeners["tls"], certs.client_config(false));
    over_tls.sync();
    // Not YAML at all.
    config.write("max-tags: [\n");
    assert!(server.hangup().join("\n").contains("refused"));
    client.subscribe(&["g", "h", "i"]);

    // Fixed: the new limit holds for new commands.
    config.write(&format!("{}max-tags: 2\n", config.tls_yaml()));
    let said = server.hangup().join("\n");
    assert!(said.contains("applied max-tags"), "{said}");
    client.send(Request::new("subscribe").tags(["x", "y", "z"]));
    let refused = client.error();
    assert!(refused.contains('2'), "{refused}");
}

#[test]
fn origins_change_live_and_what_cannot_is_reported_as_needing_a_restart() {
    let config = Config::new("origins");
    config.write("cors-origins:\n  - http://one.example\n");
    let server = config.start(&["tcp", "http"]);
    let http = server.listeners["http"].clone();
    let ping =
        |origin: &str| support::http(&http, "GET", "/ping", &[("Origin", origin)], b"").status;
    assert_eq!(ping("http://one.example"), 200);
    assert_eq!(ping("http://two.example"), 403);

    // (The test's flags, such as --runtime, win over the file.)
    config.write("cors-origins:\n  - http://two.example\nhandshake-timeout: 5\nshards: 3\n");
    let said = server.hangup().join("\n");
    assert!(said.contains("applied cors-origins"), "{said}");
    assert!(
        said.contains("handshake-timeout changed; it takes effect only after a restart"),
        "{said}"
    );
    assert!(
        said.contains("shards changed; it takes effect only after a restart"),
        "{said}"
    );
    assert_eq!(ping("http://two.example"), 200);
    assert_eq!(ping("http://one.example"), 403);
}

#[test]
fn a_new_jwt_key_checks_new_connections_and_open_ones_keep_theirs() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let config = Config::new("jwt");
    let (first, second) = (
        b"first-secret-first-secret-first-secret",
        b"second-secret-second-secret-second!!",
    );
    std::fs::write(config.path("jwt.key"), first).unwrap();
    config.write(&format!(
        "authenticator: jwt://?key={}\n",
        config.path("jwt.key")
    ));
    let server = config.start(&["tcp"]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"exp": exp, "mist": {"tags": ["t"]}});
    let token = |secret: &[u8]| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let mut open = server.connect();
    open.send(Request::new("auth").data(token(first)));
    open.subscribe(&["t"]);

    std::fs::write(config.path("jwt.key"), second).unwrap();
    assert!(server.hangup().join("\n").contains("read again"));
    let mut refused = server.connect();
    refused.send(Request::new("auth").data(token(first)));
    assert!(refused.error().contains("signature"));
    let mut fresh = server.connect();
    fresh.send(Request::new("auth").data(token(second)));
    fresh.publish(&["t"], "signed with the new key");
    assert_eq!(open.recv().data.as_deref(), Some("signed with the new key"));
}
