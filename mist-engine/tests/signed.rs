//! Signed tokens, driven step by step with the time passed in: a verifier
//! (here a fake one that reads `tags|admin|nbf|exp` in clear) says what a
//! token claims; the engine checks `nbf` and `exp` against the clock it is
//! given, grants the claimed tags as it does a registered token's, closes
//! a connection when its token expires, and refuses the stored-token admin
//! commands.

use mist_engine::auth::{AuthError, Signed, TokenVerifier};
use mist_engine::{Batch, Config, ConnId, Engine, Error};
use mist_proto::{Message, Request};
use std::sync::Arc;

/// Reads `tags|admin|nbf|exp`, e.g. `a,b||0|1005`; `bad` is refused.
struct Clear;

impl TokenVerifier for Clear {
    fn verify(&self, token: &str) -> Result<Signed, AuthError> {
        let parts: Vec<&str> = token.split('|').collect();
        let [tags, admin, nbf, exp] = parts[..] else {
            return Err(AuthError("not a token".into()));
        };
        Ok(Signed {
            tags: tags
                .split(',')
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
            admin: admin == "admin",
            not_before: nbf.parse().ok().filter(|&n| n > 0),
            expires: exp.parse().map_err(|_| AuthError("no exp".into()))?,
        })
    }
}

fn engine(now: u64) -> Engine {
    let mut engine =
        Engine::signed_shards(Config::default(), 1, Some("server".into()), Arc::new(Clear))
            .remove(0);
    engine.handle_clock(now);
    engine
}

fn received(engine: &mut Engine, conn: ConnId) -> Vec<Message> {
    let mut batch = Batch::new();
    engine.poll_transmit(conn, &mut batch);
    batch
        .lines()
        .map(|f| serde_json::from_slice(f).unwrap())
        .collect()
}

fn send(engine: &mut Engine, conn: ConnId, request: Request) -> Vec<Message> {
    engine.handle_message(conn, Ok(request));
    while engine.poll_output().is_some() {}
    received(engine, conn)
}

#[test]
fn a_token_is_taken_only_between_its_nbf_and_its_exp_by_the_clock_given() {
    let mut engine = engine(1000);
    assert!(engine.handle_connect_with_token(Some("a||0|1001")).is_ok());
    assert_eq!(
        engine.handle_connect_with_token(Some("a||0|1000")),
        Err(Error::TokenExpired)
    );
    assert_eq!(
        engine.handle_connect_with_token(Some("a||1001|2000")),
        Err(Error::TokenNotYetValid)
    );
    engine.handle_clock(1001);
    assert!(engine
        .handle_connect_with_token(Some("a||1001|2000"))
        .is_ok());
    assert!(matches!(
        engine.handle_connect_with_token(Some("bad")),
        Err(Error::BadSignedToken(why)) if why == "not a token"
    ));
}

#[test]
fn its_claims_are_its_grants_and_its_expiry_closes_its_connection() {
    let mut engine = engine(1000);
    let reader = engine
        .handle_connect_with_token(Some("news||0|1010"))
        .unwrap();
    assert!(send(
        &mut engine,
        reader,
        Request::new("subscribe").tags(["news"])
    )
    .is_empty());
    let refused = send(
        &mut engine,
        reader,
        Request::new("subscribe").tags(["secret"]),
    );
    assert!(refused[0].error.as_deref().unwrap().contains("secret"));
    let admin = engine
        .handle_connect_with_token(Some("|admin|0|5000"))
        .unwrap();
    send(
        &mut engine,
        admin,
        Request::new("publish").tags(["news", "secret"]).data("no"),
    );
    send(
        &mut engine,
        admin,
        Request::new("publish").tags(["news"]).data("yes"),
    );
    let got: Vec<_> = received(&mut engine, reader)
        .into_iter()
        .filter_map(|m| m.data)
        .collect();
    assert_eq!(
        got,
        ["yes"],
        "only messages all of whose tags it was granted"
    );

    engine.handle_clock(1009);
    assert!(!engine.is_closing(reader));
    engine.handle_clock(1010);
    while engine.poll_output().is_some() {}
    assert!(engine.is_closing(reader), "closed at its exp");
    let said = received(&mut engine, reader);
    assert!(said
        .last()
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("the token expired"));
    assert!(!engine.is_closing(admin), "the admin's token lasts longer");
}

#[test]
fn stored_token_admin_commands_are_refused() {
    let mut engine = engine(1000);
    for token in ["server", "|admin|0|5000"] {
        let admin = engine.handle_connect_with_token(Some(token)).unwrap();
        let said = send(
            &mut engine,
            admin,
            Request::new("register").tags(["t"]).data("x"),
        );
        assert!(
            said[0]
                .error
                .as_deref()
                .unwrap()
                .contains("signed tokens (JWT), which are not stored"),
            "{said:?}"
        );
    }
}

/// Counts its checks, and refuses every token once told to.
struct Counting {
    checks: std::sync::atomic::AtomicUsize,
    refuse: bool,
}

impl TokenVerifier for Counting {
    fn verify(&self, token: &str) -> Result<Signed, AuthError> {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.refuse {
            return Err(AuthError("signed with another key".into()));
        }
        Clear.verify(token)
    }
}

impl Counting {
    fn new(refuse: bool) -> Arc<Counting> {
        Arc::new(Counting {
            checks: Default::default(),
            refuse,
        })
    }

    fn checks(&self) -> usize {
        self.checks.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_token_is_checked_once_until_the_key_changes() {
    let first = Counting::new(false);
    let mut engine = Engine::signed_shards(Config::default(), 1, None, first.clone()).remove(0);
    engine.handle_clock(1000);
    for _ in 0..3 {
        assert!(engine.handle_connect_with_token(Some("a||0|2000")).is_ok());
    }
    assert_eq!(first.checks(), 1, "its signature was checked once");
    let second = Counting::new(true);
    assert!(engine.set_token_verifier(second.clone()));
    assert!(matches!(
        engine.handle_connect_with_token(Some("a||0|2000")),
        Err(Error::BadSignedToken(why)) if why == "signed with another key"
    ));
    assert_eq!(second.checks(), 1, "the new key checks it again");
}

/// Admits a client on another shard while it checks a signature: that
/// needs the authority's lock, so it works only if the check runs without
/// holding it.
struct AdmitsElsewhere {
    other: std::sync::Mutex<Option<Engine>>,
}

impl TokenVerifier for AdmitsElsewhere {
    fn verify(&self, token: &str) -> Result<Signed, AuthError> {
        if let Some(other) = self.other.lock().unwrap().as_mut() {
            assert!(other.handle_connect_with_token(Some("server")).is_ok());
        }
        Clear.verify(token)
    }
}

#[test]
fn a_signature_is_checked_without_holding_other_shards_up() {
    let verifier = Arc::new(AdmitsElsewhere {
        other: std::sync::Mutex::new(None),
    });
    let mut shards = Engine::signed_shards(
        Config::default(),
        2,
        Some("server".into()),
        verifier.clone(),
    );
    *verifier.other.lock().unwrap() = shards.pop();
    let mut first = shards.pop().unwrap();
    first.handle_clock(1000);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let admitted = first.handle_connect_with_token(Some("a||0|2000")).is_ok();
        let _ = done.send(admitted);
    });
    let admitted = finished
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the other shard was held up by the check: it runs under the shared lock");
    assert!(admitted);
}
