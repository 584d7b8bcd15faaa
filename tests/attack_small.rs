//! Issue 8, finding 12: smaller holes.
//!
//! On a secured server `/stats` and `/metrics` want the server token (in
//! `X-Auth-Token`, or `Authorization: Bearer` as Prometheus sends it); a
//! refused SSE subscription is a 403, as for every other refused grant; and
//! the server token can come from `MIST_TOKEN` (or the config file), so that
//! it does not show in the process list.

mod support;

use support::{http, register, Server, Transport};

const ADMIN: &str = "the-admin-token";

fn secured(runtime: &str) -> Server {
    Server::start_on(runtime, &["--authenticator", "memory://", "--token", ADMIN])
}

fn counters_are_the_admins(runtime: &str) {
    let server = secured(runtime);
    register(&server, ADMIN, "reader-token", &["news"]);
    let bearer = format!("Bearer {ADMIN}");
    for path in ["/stats", "/metrics"] {
        let anonymous = http(server.http(), "GET", path, &[], b"");
        assert_eq!(anonymous.status, 401, "{runtime} {path}");
        assert!(
            anonymous.body.contains("Authorization: Bearer"),
            "{}",
            anonymous.body
        );
        let reader = http(
            server.http(),
            "GET",
            path,
            &[("X-Auth-Token", "reader-token")],
            b"",
        );
        assert_eq!(reader.status, 403, "{runtime} {path}");
        for header in [("X-Auth-Token", ADMIN), ("Authorization", bearer.as_str())] {
            let admin = http(server.http(), "GET", path, &[header], b"");
            assert_eq!(admin.status, 200, "{runtime} {path} {header:?}");
        }
    }
    // An open server's counters stay open.
    let open = Server::start_on(runtime, &[]);
    assert_eq!(http(open.http(), "GET", "/metrics", &[], b"").status, 200);
}

fn a_refused_sse_grant_is_a_403(runtime: &str) {
    let server = secured(runtime);
    register(&server, ADMIN, "reader-token", &["news"]);
    let refused = http(
        server.http(),
        "GET",
        "/subscribe?tags=secret&x-auth-token=reader-token",
        &[],
        b"",
    );
    assert_eq!(refused.status, 403, "{runtime}: {}", refused.body);
    assert_eq!(
        refused.json()["error"],
        "permission denied: this token may not use the tag(s) secret"
    );
}

fn the_server_token_can_come_from_the_environment(runtime: &str) {
    let server = Server::start_with_env(
        runtime,
        &["--authenticator", "memory://"],
        &[("MIST_TOKEN", ADMIN)],
    );
    let mut admin = server.client_with_token(Transport::Tcp, ADMIN);
    admin.send(mist_proto::Request::new("listall"));
    assert_eq!(admin.recv().command, "listall", "{runtime}");
    // A flag still wins over the environment.
    let server = Server::start_with_env(
        runtime,
        &["--authenticator", "memory://", "--token", "from-the-flag"],
        &[("MIST_TOKEN", ADMIN)],
    );
    assert_eq!(
        server.websocket_status(Transport::Ws, Some("from-the-flag")),
        101
    );
    assert_eq!(server.websocket_status(Transport::Ws, Some(ADMIN)), 401);
}

on_every_runtime!(
    counters_are_the_admins,
    a_refused_sse_grant_is_a_403,
    the_server_token_can_come_from_the_environment,
);
