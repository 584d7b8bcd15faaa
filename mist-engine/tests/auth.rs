//! Authentication and permissions, driven step by step through the engine:
//! the server token, registered tokens and their grants, admin changes that
//! wait for the authenticator, and revocation of what open connections hold.

use mist_engine::auth::{AuthError, Change, Grants};
use mist_engine::{Batch, Config, ConnId, Engine, Flow, Output};
use mist_proto::{Message, Request};
use std::collections::BTreeSet;

const ADMIN: &str = "admin-secret";

fn grants() -> Grants {
    let mut grants = Grants::new();
    grants.insert(
        "reader".into(),
        ["news".to_string(), "sport".to_string()].into(),
    );
    grants
}

fn engine() -> Engine {
    Engine::secured(Config::default(), ADMIN.into(), grants())
}

fn received(engine: &mut Engine, conn: ConnId) -> Vec<Message> {
    let mut batch = Batch::new();
    engine.poll_transmit(conn, &mut batch);
    batch
        .lines()
        .map(|f| serde_json::from_slice(f).unwrap())
        .collect()
}

fn errors(engine: &mut Engine, conn: ConnId) -> Vec<String> {
    received(engine, conn)
        .into_iter()
        .filter_map(|m| m.error)
        .collect()
}

fn auth(token: &str) -> Request {
    Request::new("auth").data(token)
}

/// Drains every output.
fn outputs(engine: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| engine.poll_output()).collect()
}

/// Drains outputs, returning the changes handed to the authenticator.
fn persists(engine: &mut Engine) -> Vec<(u64, Change)> {
    let mut out = Vec::new();
    while let Some(output) = engine.poll_output() {
        if let Output::Persist { id, change } = output {
            out.push((id, change));
        }
    }
    out
}

#[test]
fn the_first_message_must_be_auth() {
    let mut e = engine();
    let c = e.handle_connect().expect("room for a connection");
    e.handle_message(c, Ok(Request::new("ping")));
    assert_eq!(
        errors(&mut e, c),
        ["authentication required: send {\"command\":\"auth\",\"data\":\"TOKEN\"} first"]
    );
    assert!(e.is_closing(c));
    e.handle_message(c, Ok(auth(ADMIN)));
    assert!(
        received(&mut e, c).is_empty(),
        "a refused connection is not heard any more"
    );
}

#[test]
fn a_wrong_token_is_refused_and_closed() {
    let mut e = engine();
    let c = e.handle_connect().expect("room for a connection");
    e.handle_message(c, Ok(auth("guess")));
    assert_eq!(
        errors(&mut e, c),
        ["authentication failed: the token is not valid"]
    );
    assert!(e.is_closing(c));
}

#[test]
fn tokens_given_out_of_band_are_checked_at_connect() {
    let mut e = engine();
    assert_eq!(
        e.handle_connect_with_token(None).unwrap_err().to_string(),
        "authentication required: send {\"command\":\"auth\",\"data\":\"TOKEN\"} first"
    );
    assert!(e.handle_connect_with_token(Some("guess")).is_err());
    let reader = e.handle_connect_with_token(Some("reader")).unwrap();
    e.handle_message(reader, Ok(Request::new("ping")));
    assert_eq!(received(&mut e, reader)[0].data.as_deref(), Some("pong"));
}

#[test]
fn a_registered_token_may_use_only_its_tags() {
    let mut e = engine();
    let (reader, admin) = (
        e.handle_connect().expect("room for a connection"),
        e.handle_connect().expect("room for a connection"),
    );
    e.handle_message(reader, Ok(auth("reader")));
    e.handle_message(admin, Ok(auth(ADMIN)));
    e.handle_message(reader, Ok(Request::new("subscribe").tags(["news"])));
    e.handle_message(
        reader,
        Ok(Request::new("subscribe").tags(["news", "secret", "admin"])),
    );
    e.handle_message(
        reader,
        Ok(Request::new("publish").tags(["sport", "secret"]).data("x")),
    );
    e.handle_message(reader, Ok(Request::new("register").tags(["a"]).data("new")));
    assert_eq!(
        errors(&mut e, reader),
        [
            "permission denied: this token may not use the tag(s) admin, secret",
            "permission denied: this token may not use the tag(s) secret",
            "permission denied: admin commands need the server token",
        ]
    );
    e.handle_message(
        admin,
        Ok(Request::new("publish")
            .tags(["news", "secret"])
            .data("to all")),
    );
    assert!(
        received(&mut e, reader).is_empty(),
        "the reader subscribed to news, but was not granted secret: nothing of it reaches the reader"
    );
    e.handle_message(
        admin,
        Ok(Request::new("publish")
            .tags(["news", "sport"])
            .data("granted")),
    );
    let got = received(&mut e, reader);
    assert_eq!(
        got.len(),
        1,
        "the admin may publish anywhere; every tag of this one was granted"
    );
    assert!(
        persists(&mut e).is_empty(),
        "nothing was handed to the authenticator"
    );
}

#[test]
fn admin_changes_wait_for_the_authenticator_and_keep_command_order() {
    let mut e = engine();
    let admin = e.handle_connect().expect("room for a connection");
    e.handle_message(admin, Ok(auth(ADMIN)));
    e.handle_message(
        admin,
        Ok(Request::new("register").tags(["a", "b"]).data("writer")),
    );
    e.handle_message(admin, Ok(Request::new("tags").data("writer")));
    e.handle_message(admin, Ok(Request::new("ping")));
    let out = persists(&mut e);
    assert_eq!(out.len(), 1);
    let (id, change) = out[0].clone();
    assert_eq!(change.token(), "writer");
    assert!(
        received(&mut e, admin).is_empty(),
        "nothing is answered before the change is stored"
    );
    assert_eq!(
        e.flow(admin),
        Flow::Wait,
        "the admin's reader pauses meanwhile"
    );
    // Another client is not held up.
    let other = e.handle_connect_with_token(Some("reader")).unwrap();
    e.handle_message(other, Ok(Request::new("ping")));
    assert_eq!(received(&mut e, other).len(), 1);

    e.handle_persisted(id, Ok(()));
    assert!(
        outputs(&mut e).contains(&Output::Resume(admin)),
        "the admin may go on"
    );
    e.handle_resume(admin);
    let replies = received(&mut e, admin);
    assert_eq!(replies[0].command, "tags");
    assert_eq!(
        replies[0].tags,
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(replies[1].data.as_deref(), Some("pong"));
    assert!(
        e.handle_connect_with_token(Some("writer")).is_ok(),
        "the new token works"
    );
}

#[test]
fn a_change_the_authenticator_could_not_store_changes_nothing() {
    let mut e = engine();
    let admin = e.handle_connect_with_token(Some(ADMIN)).unwrap();
    e.handle_message(
        admin,
        Ok(Request::new("register").tags(["a"]).data("writer")),
    );
    let (id, _) = persists(&mut e)[0].clone();
    e.handle_persisted(id, Err(AuthError("database unreachable".into())));
    assert_eq!(
        errors(&mut e, admin),
        ["the change could not be saved, nothing changed: database unreachable"]
    );
    assert!(e.handle_connect_with_token(Some("writer")).is_err());
}

#[test]
fn invalid_changes_are_refused_without_the_authenticator() {
    let mut e = engine();
    let admin = e.handle_connect_with_token(Some(ADMIN)).unwrap();
    for request in [
        Request::new("register").tags(["a"]).data("reader"),
        Request::new("register").data(ADMIN),
        Request::new("unregister").data("nobody"),
        Request::new("set").tags(["a"]).data("nobody"),
        Request::new("unset").tags(["a"]).data("nobody"),
        Request::new("tags").data("nobody"),
        Request::new("set").data("reader"),
        Request::new("unregister"),
    ] {
        e.handle_message(admin, Ok(request));
    }
    assert!(persists(&mut e).is_empty());
    assert_eq!(
        errors(&mut e, admin),
        [
            "token already registered",
            "token already registered",
            "unknown token: it is not registered",
            "unknown token: it is not registered",
            "unknown token: it is not registered",
            "unknown token: it is not registered",
            "missing tags: set needs a non-empty \"tags\" list of strings",
            "missing token: unregister needs the token in \"data\"",
        ]
    );
}

#[test]
fn unregistering_closes_connections_open_with_the_token() {
    let mut e = engine();
    let reader = e.handle_connect_with_token(Some("reader")).unwrap();
    e.handle_message(reader, Ok(Request::new("subscribe").tags(["news"])));
    let admin = e.handle_connect_with_token(Some(ADMIN)).unwrap();
    e.handle_message(admin, Ok(Request::new("unregister").data("reader")));
    let (id, _) = persists(&mut e)[0].clone();
    e.handle_persisted(id, Ok(()));
    assert_eq!(
        errors(&mut e, reader),
        ["the token was unregistered: the connection is closed"]
    );
    assert!(e.is_closing(reader));
    e.handle_message(
        admin,
        Ok(Request::new("publish").tags(["news"]).data("late")),
    );
    assert!(
        received(&mut e, reader).is_empty(),
        "nothing reaches a revoked token"
    );
}

#[test]
fn unsetting_tags_removes_subscriptions_that_used_them() {
    let mut e = engine();
    let reader = e.handle_connect_with_token(Some("reader")).unwrap();
    e.handle_message(reader, Ok(Request::new("subscribe").tags(["news"])));
    e.handle_message(reader, Ok(Request::new("subscribe").tags(["sport"])));
    let admin = e.handle_connect_with_token(Some(ADMIN)).unwrap();
    e.handle_message(
        admin,
        Ok(Request::new("unset").tags(["news"]).data("reader")),
    );
    let (id, _) = persists(&mut e)[0].clone();
    e.handle_persisted(id, Ok(()));
    assert_eq!(
        errors(&mut e, reader),
        ["permission revoked for the tag(s) news: the subscription was removed"]
    );
    e.handle_message(
        admin,
        Ok(Request::new("publish").tags(["news", "sport"]).data("both")),
    );
    assert!(
        received(&mut e, reader).is_empty(),
        "news is no longer granted, so a message tagged with it does not reach the reader"
    );
    e.handle_message(
        admin,
        Ok(Request::new("publish").tags(["sport"]).data("sport")),
    );
    assert_eq!(
        received(&mut e, reader).len(),
        1,
        "still subscribed to sport"
    );
    e.handle_message(reader, Ok(Request::new("subscribe").tags(["news"])));
    assert_eq!(
        errors(&mut e, reader).len(),
        1,
        "and may not subscribe to news again"
    );
}

#[test]
fn admin_commands_are_unknown_on_an_open_server() {
    let mut e = Engine::new(Config::default());
    let c = e.handle_connect().expect("room for a connection");
    e.handle_message(c, Ok(auth("anything")));
    e.handle_message(c, Ok(Request::new("register").tags(["a"]).data("t")));
    assert_eq!(
        errors(&mut e, c),
        ["Unknown Command"],
        "auth is a no-op when there is no authenticator"
    );
}

#[test]
fn changes_to_different_tokens_are_stored_side_by_side() {
    let mut e = engine();
    let (a, b) = (
        e.handle_connect_with_token(Some(ADMIN)).unwrap(),
        e.handle_connect_with_token(Some(ADMIN)).unwrap(),
    );
    e.handle_message(a, Ok(Request::new("register").tags(["x"]).data("one")));
    e.handle_message(b, Ok(Request::new("set").tags(["y"]).data("reader")));
    let out = persists(&mut e);
    assert_eq!(out.len(), 2, "a stuck change holds up no other admin");
    e.handle_persisted(out[1].0, Ok(()));
    e.handle_message(b, Ok(Request::new("ping")));
    e.handle_resume(b);
    assert_eq!(received(&mut e, b).len(), 1, "b carries on while a waits");
    assert_eq!(e.flow(a), Flow::Wait);
}

#[test]
fn changes_to_one_token_are_stored_one_at_a_time_in_order() {
    let mut e = engine();
    let (a, b) = (
        e.handle_connect_with_token(Some(ADMIN)).unwrap(),
        e.handle_connect_with_token(Some(ADMIN)).unwrap(),
    );
    e.handle_message(a, Ok(Request::new("register").tags(["x"]).data("same")));
    e.handle_message(b, Ok(Request::new("register").tags(["y"]).data("same")));
    let first = persists(&mut e);
    assert_eq!(first.len(), 1, "the second waits for the first");
    e.handle_persisted(first[0].0, Ok(()));
    assert!(
        persists(&mut e).is_empty(),
        "re-checked when its turn came: now a duplicate"
    );
    assert_eq!(errors(&mut e, b), ["token already registered"]);
    let tags: BTreeSet<String> = ["x".to_string()].into();
    assert_eq!(
        first[0].1,
        Change::Register {
            token: "same".into(),
            tags
        }
    );
}

#[test]
fn listall_is_the_admins_who_is_anyones() {
    let mut e = engine();
    let reader = e.handle_connect_with_token(Some("reader")).unwrap();
    e.handle_message(reader, Ok(Request::new("subscribe").tags(["news"])));
    e.handle_message(reader, Ok(Request::new("listall")));
    e.handle_message(reader, Ok(Request::new("who")));
    let replies = received(&mut e, reader);
    assert_eq!(
        replies[0].error.as_deref(),
        Some("permission denied: admin commands need the server token")
    );
    assert_eq!(
        (replies[1].connections, replies[1].subscribers),
        (Some(1), Some(1))
    );
    let admin = e.handle_connect_with_token(Some(ADMIN)).unwrap();
    e.handle_message(admin, Ok(Request::new("listall")));
    let all = received(&mut e, admin).remove(0);
    assert_eq!(all.subscriptions, Some(vec![vec!["news".to_string()]]));
}
