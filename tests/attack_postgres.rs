//! Issue 8, finding 9: a PostgreSQL that stops answering hangs nothing.
//!
//! Only connecting had a timeout: a database that accepted and never
//! answered hung start-up forever, and one stuck change blocked its admin
//! and every later change. Now start-up against a silent database fails
//! within the timeout, naming the database (never the password), and a
//! change stuck on a lock fails in time while another admin's change is
//! stored at once. TLS to PostgreSQL is tested with the authenticator, in
//! mist-auth's conformance tests.

mod support;

use mist_proto::Request;
use support::{fresh_database, postgres, register, Server, Transport};

const ADMIN: &str = "admin-token";

#[test]
fn a_stuck_change_fails_in_time_and_holds_up_no_other_admin() {
    let Some(address) = postgres() else { return };
    let db = fresh_database(&address, "stuck");
    let uri = format!("postgres://postgres@{address}?db={db}&timeout=2");
    let server = Server::start_on("smol", &["--authenticator", uri.as_str(), "--token", ADMIN]);
    register(&server, ADMIN, "locked", &["a"]);
    register(&server, ADMIN, "free", &["a"]);
    // Another session holds the row of `locked`: a change to it must wait
    // on the database, which cancels it after the timeout.
    let (host, port) = address.rsplit_once(':').unwrap();
    let mut holder = postgres::Client::connect(
        &format!("host={host} port={port} user=postgres dbname={db}"),
        postgres::NoTls,
    )
    .unwrap();
    let mut lock = holder.transaction().unwrap();
    lock.execute(
        "SELECT 1 FROM tokens WHERE token = 'locked' FOR UPDATE",
        &[],
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut stuck = server.client_with_token(Transport::Tcp, ADMIN);
    stuck.send(Request::new("set").tags(["b"]).data("locked"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut other = server.client_with_token(Transport::Tcp, ADMIN);
    other.send(Request::new("set").tags(["b"]).data("free"));
    assert_eq!(other.sync(), [], "the other admin's change is stored");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "the other admin waited {:?}",
        started.elapsed()
    );
    let error = stuck.error();
    // The client's timeout or the server's statement_timeout, whichever
    // comes first.
    assert!(
        error.starts_with("the change could not be saved, nothing changed: PostgreSQL")
            && error.contains("adding tags")
            && (error.contains("statement timeout") || error.contains("did not answer")),
        "{error}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(stuck.sync(), [], "and the stuck admin goes on");
    lock.rollback().unwrap();
    stuck.send(Request::new("set").tags(["b"]).data("locked"));
    assert_eq!(stuck.sync(), [], "the row is free again");
}

/// Starts a server on `authenticator`, which must fail; returns its
/// standard error, and how long it took to fail.
fn failed_start(authenticator: &str) -> (String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = support::mist()
        .args([
            "--server",
            "--listeners",
            "tcp://127.0.0.1:0",
            "--token",
            ADMIN,
        ])
        .args(["--authenticator", authenticator])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (stderr, started.elapsed())
}

#[test]
fn an_unreachable_or_silent_postgres_at_start_is_a_startup_error() {
    let (stderr, _) = failed_start("postgres://postgres@127.0.0.1:1?db=nothing");
    assert!(
        stderr.contains("cannot load tokens from the authenticator: PostgreSQL failed connecting"),
        "{stderr}"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stderr, took) = failed_start(&format!(
        "postgres://postgres:hunter2@127.0.0.1:{port}?db=tokens&timeout=1"
    ));
    assert!(took < std::time::Duration::from_secs(5));
    assert!(
        stderr.contains(&format!(
            "cannot load tokens from the authenticator: PostgreSQL did not answer loading tokens within 1 s (127.0.0.1:{port}, database tokens)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password is never shown");
    drop(listener);
}
