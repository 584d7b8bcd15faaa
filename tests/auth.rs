//! Authentication end to end, on every runtime and transport: no token, a
//! wrong token, the admin token, a registered token inside and outside its
//! grants, and revocation reaching connections already open.

mod support;

use mist_proto::Request;
use support::{fresh_database, http, postgres, psql, EventStream, Server, Transport};

const ADMIN: &str = "s3cret-admin";

fn start(runtime: &str) -> Server {
    Server::start_on(runtime, &["--authenticator", "memory://", "--token", ADMIN])
}

/// The admin registers `token` with `tags` and waits until it is stored.
fn register(server: &Server, token: &str, tags: &[&str]) {
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.send(
        Request::new("register")
            .tags(tags.iter().copied())
            .data(token),
    );
    admin.send(Request::new("tags").data(token));
    let reply = admin.recv();
    assert_eq!(reply.command, "tags", "{reply:?}");
    let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(reply.tags, Some(expected));
}

fn refuses_clients_without_a_valid_token(runtime: &str, transport: Transport) {
    let server = start(runtime);
    if transport == Transport::Tcp {
        let mut anonymous = server.connect();
        anonymous.send(Request::new("ping"));
        let frames = anonymous.until_closed();
        assert_eq!(frames.len(), 1);
        assert!(frames[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("authentication required"));
        let mut wrong = server.connect();
        wrong.send(Request::new("auth").data("guess"));
        let frames = wrong.until_closed();
        assert_eq!(
            frames[0].error.as_deref(),
            Some("authentication failed: the token is not valid")
        );
    } else {
        assert_eq!(server.websocket_status(transport, None), 401);
        assert_eq!(server.websocket_status(transport, Some("guess")), 401);
        assert_eq!(server.websocket_status(transport, Some(ADMIN)), 101);
    }
}

fn a_registered_token_is_held_to_its_grants(runtime: &str, transport: Transport) {
    let server = start(runtime);
    register(&server, "reader", &["news", "sport"]);
    let mut reader = server.client_with_token(transport, "reader");
    reader.subscribe(&["news"]);
    reader.send(Request::new("subscribe").tags(["news", "secret"]));
    assert_eq!(
        reader.error(),
        "permission denied: this token may not use the tag(s) secret"
    );
    reader.send(Request::new("publish").tags(["secret"]).data("x"));
    assert_eq!(
        reader.error(),
        "permission denied: this token may not use the tag(s) secret"
    );
    reader.send(Request::new("register").tags(["a"]).data("mine"));
    assert_eq!(
        reader.error(),
        "permission denied: admin commands need the server token"
    );
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.sync();
    admin.publish(&["news", "secret"], "secret news");
    admin.publish(&["news", "sport"], "for news readers");
    assert_eq!(
        reader.deliveries(),
        ["for news readers"],
        "a message reaches a token only if it was granted every tag of it"
    );
}

fn unregistering_closes_open_connections(runtime: &str, transport: Transport) {
    let server = start(runtime);
    register(&server, "reader", &["news"]);
    let mut reader = server.client_with_token(transport, "reader");
    reader.subscribe(&["news"]);
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.send(Request::new("unregister").data("reader"));
    assert_eq!(admin.sync(), [], "unregister is silent once stored");
    let frames = reader.until_closed();
    let errors: Vec<_> = frames.iter().filter_map(|f| f.error.as_deref()).collect();
    assert_eq!(
        errors,
        ["the token was unregistered: the connection is closed"]
    );
    assert_eq!(server.websocket_status(Transport::Ws, Some("reader")), 401);
}

fn unsetting_tags_takes_effect_at_once(runtime: &str, transport: Transport) {
    let server = start(runtime);
    register(&server, "reader", &["news", "sport"]);
    let mut reader = server.client_with_token(transport, "reader");
    reader.subscribe(&["news"]);
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.send(Request::new("unset").tags(["news"]).data("reader"));
    admin.sync();
    admin.publish(&["news"], "too late");
    let frames = reader.sync();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        frames[0].error.as_deref(),
        Some("permission revoked for the tag(s) news: the subscription was removed")
    );
}

fn admin_commands_answer_errors(runtime: &str, transport: Transport) {
    let server = start(runtime);
    let mut admin = server.client_with_token(transport, ADMIN);
    for (request, error) in [
        (
            Request::new("register").tags(["a"]).data(ADMIN),
            "token already registered",
        ),
        (
            Request::new("set").tags(["a"]).data("nobody"),
            "unknown token: it is not registered",
        ),
        (
            Request::new("unregister"),
            "missing token: unregister needs the token in \"data\"",
        ),
    ] {
        admin.send(request);
        assert_eq!(admin.error(), error);
    }
}

macro_rules! each_runtime_and_transport {
    ($($module:ident: $runtime:literal, $transport:expr;)*) => {$(
        mod $module {
            use super::*;
            #[test] fn refuses_clients_without_a_valid_token() { super::refuses_clients_without_a_valid_token($runtime, $transport) }
            #[test] fn a_registered_token_is_held_to_its_grants() { super::a_registered_token_is_held_to_its_grants($runtime, $transport) }
            #[test] fn unregistering_closes_open_connections() { super::unregistering_closes_open_connections($runtime, $transport) }
            #[test] fn unsetting_tags_takes_effect_at_once() { super::unsetting_tags_takes_effect_at_once($runtime, $transport) }
            #[test] fn admin_commands_answer_errors() { super::admin_commands_answer_errors($runtime, $transport) }
        }
    )*};
}

each_runtime_and_transport! {
    async_std_tcp: "async-std", Transport::Tcp;
    async_std_ws: "async-std", Transport::Ws;
    async_std_http_ws: "async-std", Transport::HttpWs;
    smol_tcp: "smol", Transport::Tcp;
    smol_ws: "smol", Transport::Ws;
    smol_http_ws: "smol", Transport::HttpWs;
}

/// SSE and HTTP publish take the token from the header or the query.
fn http_endpoints_check_tokens(runtime: &str) {
    let server = start(runtime);
    register(&server, "reader", &["news"]);
    let publish = |token: Option<&str>, tags: &str| {
        let body = format!(r#"{{"tags":[{tags}],"data":"x"}}"#);
        let headers: Vec<(&str, &str)> = token.map(|t| ("X-Auth-Token", t)).into_iter().collect();
        http(server.http(), "POST", "/publish", &headers, body.as_bytes())
    };
    assert_eq!(publish(None, r#""news""#).status, 401);
    assert_eq!(publish(Some("guess"), r#""news""#).status, 401);
    let forbidden = publish(Some("reader"), r#""secret""#);
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    let no_token = http(server.http(), "GET", "/subscribe?tags=news", &[], b"");
    assert_eq!(no_token.status, 401);
    assert_eq!(
        no_token.json()["error"],
        "authentication required: send the token in the X-Auth-Token header or the x-auth-token query parameter"
    );
    let mut events = EventStream::open(server.http(), "/subscribe?tags=news&x-auth-token=reader");
    assert_eq!(publish(Some("reader"), r#""news""#).status, 200);
    assert_eq!(events.next().data.as_deref(), Some("x"));
}

#[test]
fn http_endpoints_check_tokens_on_async_std() {
    http_endpoints_check_tokens("async-std");
}

#[test]
fn http_endpoints_check_tokens_on_smol() {
    http_endpoints_check_tokens("smol");
}

#[test]
fn an_authenticator_without_a_token_refuses_to_start() {
    let out = support::mist()
        .args([
            "--server",
            "--authenticator",
            "memory://",
            "--listeners",
            "tcp://127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("an authenticator needs a token"));
    let out = support::mist()
        .args([
            "--server",
            "--authenticator",
            "ldap://x",
            "--token",
            "t",
            "--listeners",
            "tcp://127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown authenticator scheme \"ldap\""));
}

#[test]
fn tokens_never_reach_the_log() {
    let server = start("async-std");
    register(&server, "reader-token-xyz", &["news"]);
    let mut wrong = server.connect();
    wrong.send(Request::new("auth").data("guessed-token-abc"));
    wrong.until_closed();
    let log = server.log().join("\n");
    for secret in [ADMIN, "reader-token-xyz", "guessed-token-abc"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// Tokens registered on a scribble-backed server survive its restart.
#[test]
fn scribble_tokens_survive_a_server_restart() {
    let dir = std::env::temp_dir().join(format!("mist-scribble-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let uri = format!("scribble://?db={}", dir.display());
    let args = ["--authenticator", uri.as_str(), "--token", ADMIN];
    {
        let server = Server::start_on("async-std", &args);
        register(&server, "durable", &["news"]);
    }
    // A file cut short by a crash, and one whose name is not its token:
    // skipped, said so without the token, the rest served.
    std::fs::write(
        dir.join("tokens/leaky-token.json"),
        b"{\"token\":\"leaky-to",
    )
    .unwrap();
    let server = Server::start_on("smol", &args);
    assert_eq!(server.websocket_status(Transport::Ws, Some("durable")), 101);
    let mut client = server.client_with_token(Transport::Tcp, "durable");
    client.subscribe(&["news"]);
    let log = server.log().join("\n");
    assert!(
        log.contains("skipping a token file: the record of token #"),
        "{log}"
    );
    assert!(!log.contains("leaky"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn postgres_tokens_survive_a_restart_and_an_outage_only_fails_admin_commands() {
    let Some(address) = postgres() else { return };
    let db = fresh_database(&address, "e2e");
    let uri = format!("postgres://postgres@{address}?db={db}");
    let args = ["--authenticator", uri.as_str(), "--token", ADMIN];
    {
        let server = Server::start_on("smol", &args);
        register(&server, "durable", &["news"]);
    }
    let server = Server::start_on("async-std", &args);
    let mut reader = server.client_with_token(Transport::Tcp, "durable");
    reader.subscribe(&["news"]);
    // The database goes away: admin changes fail and say so; traffic goes on.
    psql(&address, &format!("DROP DATABASE {db} WITH (FORCE)"));
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.send(Request::new("register").tags(["x"]).data("newcomer"));
    let error = admin.error();
    assert!(
        error.starts_with("the change could not be saved, nothing changed: PostgreSQL failed"),
        "{error}"
    );
    admin.publish(&["news"], "still flowing");
    assert_eq!(reader.deliveries(), ["still flowing"]);
    assert_eq!(
        server.websocket_status(Transport::Ws, Some("newcomer")),
        401
    );
}
