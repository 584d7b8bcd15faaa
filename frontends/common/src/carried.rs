//! What one node of a broker carries to the others, as bytes: a publish as
//! the frame its subscribers get (a JSON object, so it starts with `{`), and
//! an admin change as `!` and a JSON object:
//! `!{"change":"register","token":"t","tags":["a"]}` (`unregister` has no
//! tags). The token is in it: the link to the other nodes must be trusted
//! as the token store is.

use bytes::Bytes;
use mist_engine::auth::Change;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// What arrived from another node.
pub(crate) enum Carried<'a> {
    Publish(&'a [u8]),
    Change(Change),
}

/// `change` as bytes for the other nodes.
pub(crate) fn change(change: &Change) -> Bytes {
    let (kind, token, tags) = match change {
        Change::Register { token, tags } => ("register", token, Some(tags)),
        Change::Unregister { token } => ("unregister", token, None),
        Change::Set { token, tags } => ("set", token, Some(tags)),
        Change::Unset { token, tags } => ("unset", token, Some(tags)),
    };
    let mut value = json!({"change": kind, "token": token});
    if let Some(tags) = tags {
        value["tags"] = json!(tags);
    }
    let mut bytes = b"!".to_vec();
    bytes.extend_from_slice(value.to_string().as_bytes());
    Bytes::from(bytes)
}

/// Tells what `bytes` from another node are; the reason if they are
/// neither (never showing a token).
pub(crate) fn decode(bytes: &[u8]) -> Result<Carried<'_>, String> {
    let Some(json) = bytes.strip_prefix(b"!") else {
        return Ok(Carried::Publish(bytes));
    };
    let value: Value =
        serde_json::from_slice(json).map_err(|_| "an admin change that is not JSON".to_string())?;
    let token = value["token"]
        .as_str()
        .ok_or("an admin change without a token")?
        .to_string();
    let tags = || -> Result<BTreeSet<String>, String> {
        value["tags"]
            .as_array()
            .ok_or("an admin change without tags")?
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "a tag that is not a string".to_string())
            })
            .collect()
    };
    let change = match value["change"].as_str() {
        Some("register") => Change::Register {
            token,
            tags: tags()?,
        },
        Some("unregister") => Change::Unregister { token },
        Some("set") => Change::Set {
            token,
            tags: tags()?,
        },
        Some("unset") => Change::Unset {
            token,
            tags: tags()?,
        },
        _ => return Err("an admin change of an unknown kind".into()),
    };
    Ok(Carried::Change(change))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_comes_back_as_it_went() {
        let tags: BTreeSet<String> = ["a".to_string(), "b c".to_string()].into();
        for change in [
            Change::Register {
                token: "t\"1".into(),
                tags: tags.clone(),
            },
            Change::Unregister { token: "t".into() },
            Change::Set {
                token: "t".into(),
                tags: tags.clone(),
            },
            Change::Unset {
                token: "t".into(),
                tags,
            },
        ] {
            let bytes = self::change(&change);
            assert!(bytes.starts_with(b"!{"));
            match decode(&bytes).unwrap() {
                Carried::Change(back) => assert!(back == change),
                Carried::Publish(_) => panic!("a change"),
            }
        }
        assert!(matches!(
            decode(b"{\"command\":\"publish\"}\n"),
            Ok(Carried::Publish(_))
        ));
    }

    #[test]
    fn a_bad_change_is_refused_without_its_token() {
        for bytes in [
            &b"!not json"[..],
            b"!{\"change\":\"register\",\"token\":\"secret\"}",
            b"!{\"change\":\"explode\",\"token\":\"secret\"}",
            b"!{\"change\":\"set\",\"token\":\"secret\",\"tags\":[1]}",
            b"!{\"change\":\"unregister\"}",
        ] {
            match decode(bytes) {
                Err(e) => assert!(!e.contains("secret"), "{e}"),
                Ok(_) => panic!("{:?} accepted", String::from_utf8_lossy(bytes)),
            }
        }
    }
}
