//! Every authenticator passes the same suite: what is stored is what loads,
//! each of the five operations does exactly its job, and errors are errors.

use futures::executor::block_on;
use mist_auth::{Authenticator, MemoryAuthenticator, ScribbleAuthenticator};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn tags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|t| t.to_string()).collect()
}

/// The suite, on an authenticator that starts empty.
fn conformance(auth: &dyn Authenticator) {
    block_on(async {
        assert!(auth.load().await.unwrap().is_empty(), "starts empty");
        auth.register("alpha", &tags(&["a", "b"])).await.unwrap();
        auth.register("beta", &tags(&[])).await.unwrap();
        assert!(
            auth.register("alpha", &tags(&["z"])).await.is_err(),
            "no duplicates"
        );
        assert_eq!(auth.tags("alpha").await.unwrap(), Some(tags(&["a", "b"])));
        assert_eq!(auth.tags("beta").await.unwrap(), Some(tags(&[])));
        assert_eq!(auth.tags("gamma").await.unwrap(), None);

        auth.set("alpha", &tags(&["c", "a"])).await.unwrap();
        assert_eq!(
            auth.tags("alpha").await.unwrap(),
            Some(tags(&["a", "b", "c"]))
        );
        auth.unset("alpha", &tags(&["a", "nothing"])).await.unwrap();
        assert_eq!(auth.tags("alpha").await.unwrap(), Some(tags(&["b", "c"])));
        assert!(auth.set("gamma", &tags(&["a"])).await.is_err());
        assert!(auth.unset("gamma", &tags(&["a"])).await.is_err());

        let loaded = auth.load().await.unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded["alpha"], tags(&["b", "c"]));

        auth.unregister("beta").await.unwrap();
        assert!(auth.unregister("beta").await.is_err());
        assert_eq!(auth.tags("beta").await.unwrap(), None);
        assert_eq!(auth.load().await.unwrap().len(), 1);

        // Tokens and tags are opaque strings (PostgreSQL text has no NUL).
        let odd = "tôken with spaces/and ../dots";
        auth.register(odd, &tags(&["ünï", "a,b c"])).await.unwrap();
        assert_eq!(auth.tags(odd).await.unwrap(), Some(tags(&["ünï", "a,b c"])));
        assert_eq!(auth.load().await.unwrap()[odd], tags(&["ünï", "a,b c"]));
    });
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mist-auth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn memory_conforms() {
    conformance(&MemoryAuthenticator::default());
}

#[test]
fn scribble_conforms() {
    let dir = temp_dir("conforms");
    conformance(&ScribbleAuthenticator::open(&dir).unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn scribble_keeps_tokens_across_a_restart() {
    let dir = temp_dir("restart");
    block_on(async {
        let first = ScribbleAuthenticator::open(&dir).unwrap();
        first.register("kept", &tags(&["x"])).await.unwrap();
        first.set("kept", &tags(&["y"])).await.unwrap();
        drop(first);
        let again = ScribbleAuthenticator::open(&dir).unwrap();
        assert_eq!(again.load().await.unwrap()["kept"], tags(&["x", "y"]));
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn scribble_tokens_cannot_name_paths_outside_the_database() {
    let dir = temp_dir("traversal");
    let outside = dir.join("outside");
    block_on(async {
        let auth = ScribbleAuthenticator::open(&dir.join("db")).unwrap();
        for token in [
            "../outside",
            "../../outside",
            "/tmp/outside",
            "..",
            ".",
            "a/../../b",
            "nul\0byte",
        ] {
            auth.register(token, &tags(&["t"])).await.unwrap();
            assert_eq!(
                auth.tags(token).await.unwrap(),
                Some(tags(&["t"])),
                "{token:?}"
            );
        }
        assert!(!outside.exists());
        // Every record is a plain file directly in DIR/tokens.
        for entry in std::fs::read_dir(dir.join("db/tokens")).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(path.parent().unwrap(), dir.join("db/tokens"));
            assert!(path.is_file());
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "nothing beside db/"
        );
        let long = "x".repeat(241);
        let refused = auth.register(&long, &tags(&["t"])).await.unwrap_err();
        assert!(refused.0.contains("too long"), "{refused}");
        let escaped = "/".repeat(81);
        assert!(
            auth.register(&escaped, &tags(&["t"])).await.is_err(),
            "243 bytes once encoded"
        );
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// The address of the throwaway PostgreSQL that `scripts/test.sh` starts.
/// In CI it must be there; elsewhere the PostgreSQL tests skip with a notice.
fn postgres_address() -> Option<String> {
    match std::env::var("MIST_TEST_POSTGRES") {
        Ok(address) => Some(address),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "MIST_TEST_POSTGRES is not set: run the suite with scripts/test.sh, which starts PostgreSQL"
            );
            eprintln!("NOTICE: PostgreSQL tests skipped: MIST_TEST_POSTGRES is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// A new, empty database on the test server; returns its authenticator URI.
fn fresh_database(address: &str, name: &str) -> String {
    let db = format!("mist_{name}_{}", std::process::id());
    let mut admin = postgres::Client::connect(
        &format!(
            "host={} port={} user=postgres dbname=postgres",
            address.split(':').next().unwrap(),
            address.rsplit(':').next().unwrap()
        ),
        postgres::NoTls,
    )
    .expect("the test PostgreSQL answers");
    // Each its own statement: neither may run inside a transaction block.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    format!("postgres://postgres@{address}?db={db}")
}

#[test]
fn postgres_conforms() {
    let Some(address) = postgres_address() else {
        return;
    };
    let uri = fresh_database(&address, "conforms");
    let auth = mist_auth::Registry::with_builtins().open(&uri).unwrap();
    conformance(auth.as_ref());
    // A second authenticator on the same database sees what the first stored.
    let again = mist_auth::Registry::with_builtins().open(&uri).unwrap();
    assert!(block_on(again.load()).unwrap().contains_key("alpha"));
}

#[test]
fn an_unreachable_postgres_is_a_clear_error() {
    let auth = mist_auth::Registry::with_builtins()
        .open("postgres://postgres@127.0.0.1:1?db=nothing")
        .unwrap();
    let error = block_on(auth.load()).unwrap_err();
    assert!(
        error.0.starts_with("PostgreSQL failed connecting"),
        "{error}"
    );
}

/// A server that accepts connections and never says a word.
fn silent_server() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn a_silent_postgres_is_a_clear_error_within_the_timeout() {
    let (_listener, port) = silent_server();
    let auth = mist_auth::Registry::with_builtins()
        .open(&format!(
            "postgres://postgres@127.0.0.1:{port}?db=tokens&timeout=1"
        ))
        .unwrap();
    let started = std::time::Instant::now();
    let error = block_on(auth.load()).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(
        error.0,
        format!("PostgreSQL did not answer loading tokens within 1 s (127.0.0.1:{port}, database tokens)")
    );
}

#[test]
fn tls_settings_are_checked_when_the_authenticator_is_opened() {
    let open = |uri: &str| {
        mist_auth::Registry::with_builtins()
            .open(uri)
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    };
    assert_eq!(
        open("postgres://u@h?db=d&sslmode=maybe"),
        "invalid sslmode \"maybe\": use disable, prefer, require, verify-ca or verify-full"
    );
    assert_eq!(
        open("postgres://u@h?db=d&sslmode=verify-full"),
        "sslmode=verify-full needs sslrootcert=PATH: the CA that signed the PostgreSQL server's certificate"
    );
    assert!(
        open("postgres://u@h?db=d&sslmode=verify-ca&sslrootcert=/no/such.pem")
            .starts_with("cannot read sslrootcert /no/such.pem")
    );
    assert_eq!(
        open("postgres://u@h?db=d&timeout=0"),
        "invalid PostgreSQL timeout \"0\": give whole seconds, at least 1"
    );
}

/// The CA of the test PostgreSQL's certificate, which `scripts/test.sh` makes.
fn postgres_ca() -> Option<String> {
    postgres_address()?;
    let ca = std::env::var("MIST_TEST_POSTGRES_CA").ok();
    assert!(
        ca.is_some() || std::env::var_os("CI").is_none(),
        "MIST_TEST_POSTGRES_CA is not set: run the suite with scripts/test.sh"
    );
    ca
}

#[test]
fn postgres_over_verified_tls() {
    let (Some(address), Some(ca)) = (postgres_address(), postgres_ca()) else {
        eprintln!("NOTICE: PostgreSQL TLS test skipped");
        return;
    };
    let uri = fresh_database(&address, "tls");
    let port = address.rsplit(':').next().unwrap();
    // verify-full wants the name in the certificate: localhost and 127.0.0.1 are.
    let mut open = Vec::new();
    for host in ["localhost", "127.0.0.1"] {
        let uri = uri.replace(&address, &format!("{host}:{port}"));
        let auth = mist_auth::Registry::with_builtins()
            .open(&format!("{uri}&sslmode=verify-full&sslrootcert={ca}"))
            .unwrap();
        conformance_once(auth.as_ref(), host);
        open.push(auth);
    }
    // Their sessions, still open, really are TLS.
    let mut admin = postgres::Client::connect(
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        postgres::NoTls,
    )
    .unwrap();
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'mist' AND ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted >= 2, "{encrypted} TLS sessions from mist");
    drop(open);
    // A certificate from another CA is refused, saying why.
    let other_ca = std::env::temp_dir().join(format!("mist-other-ca-{}.pem", std::process::id()));
    make_other_ca(&other_ca);
    let auth = mist_auth::Registry::with_builtins()
        .open(&format!(
            "{uri}&sslmode=verify-ca&sslrootcert={}",
            other_ca.display()
        ))
        .unwrap();
    let error = block_on(auth.load()).unwrap_err().0;
    assert!(
        error.starts_with("PostgreSQL failed connecting") && error.contains("certificate"),
        "{error}"
    );
    let _ = std::fs::remove_file(other_ca);
}

/// A register and a load on `auth`, as a short conformance check.
fn conformance_once(auth: &dyn mist_auth::Authenticator, name: &str) {
    block_on(auth.register(name, &tags(&["t"]))).unwrap();
    assert!(block_on(auth.load()).unwrap().contains_key(name));
}

/// A new self-signed CA, which signed nothing the test server holds.
fn make_other_ca(path: &std::path::Path) {
    let key = path.with_extension("key");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=other-ca", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(path)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let _ = std::fs::remove_file(key);
}

#[test]
fn scribble_skips_a_corrupt_or_mismatched_file_and_serves_the_rest() {
    let dir = temp_dir("corrupt");
    let auth = ScribbleAuthenticator::open(&dir).unwrap();
    block_on(auth.register("good", &tags(&["t"]))).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(tokens.join("truncated.json"), b"{\"token\":\"trunc").unwrap();
    std::fs::write(
        tokens.join("named.json"),
        b"{\"token\":\"other\",\"tags\":[]}",
    )
    .unwrap();
    std::fs::write(tokens.join("notes.txt"), b"not a record").unwrap();
    let again = ScribbleAuthenticator::open(&dir).unwrap();
    let grants = block_on(again.load()).unwrap();
    assert_eq!(grants.keys().collect::<Vec<_>>(), ["good"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn scribble_errors_name_a_file_by_its_fingerprint_never_by_its_token() {
    let dir = temp_dir("fingerprint");
    let auth = ScribbleAuthenticator::open(&dir).unwrap();
    block_on(auth.register("secret-token-1", &tags(&["t"]))).unwrap();
    // Something in the way of the temporary file: the write must fail.
    std::fs::create_dir(dir.join("tokens/secret-token-1.json.tmp")).unwrap();
    let error = block_on(auth.set("secret-token-1", &tags(&["u"])))
        .unwrap_err()
        .0;
    assert!(
        error.starts_with("cannot create the record of token #"),
        "{error}"
    );
    assert!(!error.contains("secret-token"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}
