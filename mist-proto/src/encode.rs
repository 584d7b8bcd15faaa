//! Builders for the frames a server sends, each one line with its newline.
//!
//! They return [`Bytes`] so that one encoded publish can be queued for any
//! number of recipients by reference count, never re-encoded or copied.

use crate::Data;
use bytes::Bytes;
use serde::Serialize;

/// The borrowed shape of every server frame; fields that are `None` are left out.
#[derive(Serialize)]
struct Frame<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions: Option<&'a [Vec<String>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// `"node"` when what a reply counts or lists is this node's alone, on
    /// a broker of several nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// What a `who` or `listall` reply covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole broker (a single node).
    Broker,
    /// This node only, on a broker of several: the reply says
    /// `"scope":"node"`.
    Node,
}

impl Scope {
    fn field(self) -> Option<&'static str> {
        match self {
            Scope::Broker => None,
            Scope::Node => Some("node"),
        }
    }
}

impl Frame<'_> {
    fn new(command: &str) -> Frame<'_> {
        Frame {
            command,
            tags: None,
            data: None,
            subscriptions: None,
            connections: None,
            subscribers: None,
            error: None,
            scope: None,
        }
    }

    fn to_bytes(&self) -> Bytes {
        // Strings, string slices and nested lists of strings cannot fail to serialize.
        let mut line = serde_json::to_vec(self).expect("frames always serialize");
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// A delivered message: `{"command":"publish","tags":[...],"data":"..."}`.
///
/// ```
/// use mist_proto::{encode, Data};
///
/// let frame = encode::publish(&["news".to_string()], Some(&Data::new("hi")));
/// assert_eq!(&frame[..], b"{\"command\":\"publish\",\"tags\":[\"news\"],\"data\":\"hi\"}\n");
/// ```
///
/// Tags are sent as the publisher wrote them, and the data as the literal it
/// sent (`""` when it sent none). Built in one allocation of the right size.
pub fn publish(tags: &[String], data: Option<&Data>) -> Bytes {
    let mut line = Vec::with_capacity(publish_len(tags, data));
    let data = data.map_or("\"\"", Data::json);
    line.extend_from_slice(PUBLISH_HEAD);
    serde_json::to_writer(&mut line, tags).expect("strings always serialize");
    line.extend_from_slice(PUBLISH_DATA);
    line.extend_from_slice(data.as_bytes());
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// A publish as a client sends it, `data` the text to publish, appended to
/// `out` with its newline: the same line as [`publish`]'s frame, which is
/// the form the server reads fastest. What [`crate::Request::to_line`]
/// writes for it, without building the request.
///
/// ```
/// use mist_proto::{encode, Request};
///
/// let mut line = Vec::new();
/// encode::publish_request(&mut line, &["news"], "say \"hi\"");
/// assert_eq!(line, Request::new("publish").tags(["news"]).data("say \"hi\"").to_line());
/// ```
pub fn publish_request(out: &mut Vec<u8>, tags: &[&str], data: &str) {
    out.extend_from_slice(PUBLISH_HEAD);
    out.push(b'[');
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string_literal(out, tag);
    }
    out.push(b']');
    out.extend_from_slice(PUBLISH_DATA);
    string_literal(out, data);
    out.extend_from_slice(b"}\n");
}

/// `text` as a JSON string literal, as serde_json writes it: a text with
/// nothing to escape (the common case, checked many bytes at a time) is
/// copied between its quotes.
fn string_literal(out: &mut Vec<u8>, text: &str) {
    let escapes = text.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        serde_json::to_writer(&mut *out, text).expect("strings always serialize");
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

const PUBLISH_HEAD: &[u8] = b"{\"command\":\"publish\",\"tags\":";
const PUBLISH_DATA: &[u8] = b",\"data\":";

/// The exact length of [`publish`]'s frame, newline included, without
/// building it.
///
/// ```
/// use mist_proto::{encode, Data};
///
/// let tags = ["a\"b".to_string(), "c".to_string()];
/// let data = Data::new("x\ny");
/// assert_eq!(encode::publish_len(&tags, Some(&data)), encode::publish(&tags, Some(&data)).len());
/// ```
pub fn publish_len(tags: &[String], data: Option<&Data>) -> usize {
    // Each tag is a quoted string, the tags are separated by commas and
    // bracketed.
    let tags_len =
        tags.iter().map(|t| escaped_len(t) + 2).sum::<usize>() + tags.len().saturating_sub(1) + 2;
    let data_len = data.map_or(2, |d| d.json().len());
    PUBLISH_HEAD.len() + tags_len + PUBLISH_DATA.len() + data_len + 2
}

/// The reply to `ping`: `{"command":"ping","data":"pong"}`.
pub fn pong() -> Bytes {
    Bytes::from_static(b"{\"command\":\"ping\",\"data\":\"pong\"}\n")
}

/// The reply to `list`.
///
/// `subscriptions` must already be in the order the client should see; `data`
/// joins each subscription's tags with `,` and the subscriptions with ` `.
pub fn list(subscriptions: &[Vec<String>]) -> Bytes {
    subscription_list("list", subscriptions, Scope::Broker)
}

/// The reply to `listall`: every subscribed tag set, in the shape of `list`.
pub fn listall(subscriptions: &[Vec<String>], scope: Scope) -> Bytes {
    subscription_list("listall", subscriptions, scope)
}

fn subscription_list(command: &str, subscriptions: &[Vec<String>], scope: Scope) -> Bytes {
    let data = subscriptions
        .iter()
        .map(|tags| tags.join(","))
        .collect::<Vec<_>>()
        .join(" ");
    Frame {
        data: Some(&data),
        subscriptions: Some(subscriptions),
        scope: scope.field(),
        ..Frame::new(command)
    }
    .to_bytes()
}

/// The reply to `who`: `{"command":"who","data":"3 connections, 2 subscribers","connections":3,"subscribers":2}`,
/// with `"scope":"node"` and "on this node" when it counts one node of several.
pub fn who(connections: usize, subscribers: usize, scope: Scope) -> Bytes {
    let mut data = format!("{connections} connections, {subscribers} subscribers");
    if scope == Scope::Node {
        data.push_str(" on this node");
    }
    Frame {
        data: Some(&data),
        connections: Some(connections),
        subscribers: Some(subscribers),
        scope: scope.field(),
        ..Frame::new("who")
    }
    .to_bytes()
}

/// The reply to the admin's `tags`: `{"command":"tags","tags":[...]}`.
pub fn tags(tags: &[String]) -> Bytes {
    Frame {
        tags: Some(tags),
        ..Frame::new("tags")
    }
    .to_bytes()
}

/// A plain reply: `{"command":"...","data":"..."}`, for custom commands.
pub fn reply(command: &str, data: &str) -> Bytes {
    Frame {
        data: Some(data),
        ..Frame::new(command)
    }
    .to_bytes()
}

/// How many bytes `text` takes inside a JSON string literal as these
/// builders write it (quotes excluded): `"` and `\\` and the short escapes
/// take two, other control characters six (`\u00XX`), anything else itself.
///
/// The engine uses it to know, before it answers, how large a reply can be.
///
/// ```
/// use mist_proto::encode::escaped_len;
///
/// assert_eq!(escaped_len("news"), 4);
/// assert_eq!(escaped_len("a\"b\n\u{1}"), 1 + 2 + 1 + 2 + 6);
/// assert_eq!(escaped_len("ü"), 2, "UTF-8 is written as it is");
/// ```
pub fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// An error reply. `command` and `tags` echo the request that failed (`""`
/// and `None` when the line could not be decoded at all).
pub fn error(command: &str, tags: Option<&[String]>, error: &str) -> Bytes {
    Frame {
        tags,
        error: Some(error),
        ..Frame::new(command)
    }
    .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn parse(frame: &Bytes) -> Message {
        assert_eq!(frame.last(), Some(&b'\n'), "every frame ends its line");
        assert_eq!(
            frame.iter().filter(|&&b| b == b'\n').count(),
            1,
            "a frame is exactly one line"
        );
        serde_json::from_slice(frame).unwrap()
    }

    #[test]
    fn publish_frame_keeps_tags_in_publisher_order() {
        let tags = vec!["b".to_string(), "a".to_string()];
        assert_eq!(
            &publish(&tags, Some(&Data::new("x")))[..],
            b"{\"command\":\"publish\",\"tags\":[\"b\",\"a\"],\"data\":\"x\"}\n"
        );
    }

    #[test]
    fn newlines_and_quotes_in_data_stay_inside_one_line() {
        let data = "line one\nline \"two\"\r\n\u{2028}end\\";
        let frame = publish(&["t".to_string()], Some(&Data::new(data)));
        assert_eq!(parse(&frame).data.as_deref(), Some(data));
        let frame = publish(&["t\n\"".to_string()], None);
        assert_eq!(parse(&frame).tags, Some(vec!["t\n\"".to_string()]));
        assert_eq!(
            parse(&frame).data.as_deref(),
            Some(""),
            "no data is empty data"
        );
    }

    #[test]
    fn list_has_string_and_structured_forms() {
        let subs = vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["c".to_string()],
        ];
        let msg = parse(&list(&subs));
        assert_eq!(msg.command, "list");
        assert_eq!(msg.data.as_deref(), Some("a,b c"));
        assert_eq!(msg.subscriptions, Some(subs));
        assert_eq!(parse(&list(&[])).data.as_deref(), Some(""));
    }

    #[test]
    fn error_echoes_command_and_tags() {
        let tags = vec!["x".to_string()];
        let msg = parse(&error("bogus", Some(&tags), "Unknown Command"));
        assert_eq!(msg.command, "bogus");
        assert_eq!(msg.tags, Some(tags));
        assert_eq!(msg.error.as_deref(), Some("Unknown Command"));
    }

    #[test]
    fn escaped_len_agrees_with_the_encoder() {
        let mut samples: Vec<String> = (0u8..=0x7f).map(|b| (b as char).to_string()).collect();
        samples.extend(
            [
                "",
                "plain",
                "ü\u{2028}\u{7f}",
                "\"\\\n\r\t\u{8}\u{c}\u{0}\u{1f}",
            ]
            .map(String::from),
        );
        for text in samples {
            let literal = serde_json::to_string(&text).unwrap();
            assert_eq!(escaped_len(&text) + 2, literal.len(), "{text:?}");
        }
    }

    #[test]
    fn pong_is_the_original_reply() {
        let msg = parse(&pong());
        assert_eq!(
            (msg.command.as_str(), msg.data.as_deref()),
            ("ping", Some("pong"))
        );
    }
}
