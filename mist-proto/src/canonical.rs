//! The fast path for the line a server sees most: a publish written exactly
//! as [`crate::encode::publish`] writes one (which is how mist's own client,
//! pubsub-bench and most clients send it):
//!
//! `{"command":"publish","tags":["a","b"],"data":"text"}`
//!
//! with no escapes, no control characters and nothing else. Such a line is
//! already the frame every subscriber gets, so it is copied once into a
//! shared [`Bytes`] and never parsed by serde nor re-encoded. Any other line,
//! including any line that is not valid, goes through serde with every
//! check and error message; this path only ever accepts lines serde would
//! decode to the same request.

use crate::decoder::Frames;
use crate::message::Data;
use crate::{Command, Request};

const HEAD: &[u8] = b"{\"command\":\"publish\",\"tags\":[";
const DATA: &[u8] = b"],\"data\":\"";
const TAIL: &[u8] = b"\"}";

/// Whether `text` is valid UTF-8 that may appear inside a JSON string
/// literal as it is: no quote, backslash or control character.
fn plain(text: &[u8]) -> bool {
    // Printable ASCII, the common case, in one pass: without an early exit
    // the compiler checks many bytes at a time.
    let odd = text.iter().fold(false, |seen, &b| {
        seen | !(0x20..0x80).contains(&b) | (b == b'"') | (b == b'\\')
    });
    if !odd {
        return true;
    }
    let control = text.iter().any(|&b| b < 0x20);
    !control && memchr::memchr2(b'"', b'\\', text).is_none() && std::str::from_utf8(text).is_ok()
}

/// `line` (without its line ending) as a request, if it is a canonical
/// publish.
pub(crate) fn publish(line: &[u8], frames: &mut Frames) -> Option<Request> {
    let (tags, body) = scan(line)?;
    let frame = frames.frame(line);
    // The literal, quotes included: just before `body` to just after it.
    let literal_end = line.len() - TAIL.len() + 1;
    let literal = literal_end - body.len() - 2..literal_end;
    Some(Request {
        command: Command::Publish,
        tags: Some(tags),
        data: Some(Data::in_frame(frame, literal)),
        canonical: true,
    })
}

/// The tags of a canonical publish `line` and its data's text: the bytes
/// between the data's quotes, which hold no escape.
pub(crate) fn scan(line: &[u8]) -> Option<(Vec<String>, &str)> {
    let mut rest = line.strip_prefix(HEAD)?;
    // Everything around the tags and the data is ASCII, so checking those
    // pieces as UTF-8 (in `plain`) checks the whole line.
    let mut tags = Vec::new();
    loop {
        rest = rest.strip_prefix(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' || !plain(&rest[..end]) {
            return None;
        }
        tags.push(std::str::from_utf8(&rest[..end]).ok()?.to_owned());
        rest = &rest[end + 1..];
        match rest.first() {
            Some(b',') => rest = &rest[1..],
            _ => break,
        }
    }
    let body = rest.strip_prefix(DATA)?.strip_suffix(TAIL)?;
    if !plain(body) {
        return None;
    }
    Some((tags, std::str::from_utf8(body).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode;
    use proptest::prelude::*;

    fn serde(line: &[u8]) -> Option<Request> {
        serde_json::from_slice(line).ok()
    }

    #[test]
    fn a_canonical_publish_is_its_own_frame() {
        let line = br#"{"command":"publish","tags":["a","b c"],"data":"hello"}"#;
        let request = publish(line, &mut Frames::default()).expect("canonical");
        assert_eq!(Some(request.clone()), serde(line));
        assert_eq!(request.data.as_ref().unwrap().json(), "\"hello\"");
        let frame = request.frame().unwrap();
        assert_eq!(&frame[..line.len()], line);
        assert_eq!(
            frame,
            &encode::publish(request.tags.as_ref().unwrap(), request.data.as_ref())
        );
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for line in [
            &br#"{"command":"publish","tags":["a\"b"],"data":"x"}"#[..],
            br#"{"command":"publish","tags":["a"],"data":"x\ny"}"#,
            br#"{"command":"publish","tags":["a"],"data":"x\u0041"}"#,
            br#"{"command":"publish","tags":[],"data":"x"}"#,
            br#"{"command":"publish","tags":["a"],"data":"x","extra":1}"#,
            br#"{"command":"publish","tags":["a"],"data":"x"} "#,
            br#"{"command":"publish", "tags":["a"],"data":"x"}"#,
            br#"{"command":"publish","tags":["a"],"data":"x"#,
            br#"{"command":"publish","tags":["a",],"data":"x"}"#,
            b"{\"command\":\"publish\",\"tags\":[\"a\"],\"data\":\"\xff\"}",
            b"{\"command\":\"publish\",\"tags\":[\"a\x01\"],\"data\":\"x\"}",
        ] {
            assert!(
                publish(line, &mut Frames::default()).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    proptest! {
        /// The encoder's length without encoding is its frame's length,
        /// whatever must be escaped.
        #[test]
        fn the_publish_length_is_exact(
            tags in prop::collection::vec(".{0,12}", 0..4),
            data in prop::option::of(".{0,40}"),
        ) {
            let data = data.map(|d| crate::Data::new(&d));
            prop_assert_eq!(
                encode::publish_len(&tags, data.as_ref()),
                encode::publish(&tags, data.as_ref()).len()
            );
        }

        /// Whatever the tags and data, a line the fast path takes is one
        /// serde decodes to the same request, and its frame is what the
        /// encoder would write.
        #[test]
        fn the_fast_path_agrees_with_serde(
            tags in prop::collection::vec(".{0,12}", 1..4),
            data in ".{0,40}",
        ) {
            let line = Request::new("publish").tags(tags).data(data).to_line();
            let line = &line[..line.len() - 1];
            if let Some(fast) = publish(line, &mut Frames::default()) {
                let slow = serde(line).expect("serde takes it too");
                prop_assert_eq!(&fast, &slow);
                prop_assert_eq!(
                    fast.frame().unwrap(),
                    &encode::publish(slow.tags.as_ref().unwrap(), slow.data.as_ref())
                );
            }
        }

        /// A client's publish written without a request is the request's line.
        #[test]
        fn a_publish_written_directly_is_the_requests_line(
            tags in prop::collection::vec(".{0,12}", 0..4),
            data in ".{0,40}",
        ) {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let mut direct = Vec::new();
            encode::publish_request(&mut direct, &tags, &data);
            let request = Request::new("publish").tags(tags.iter().copied()).data(&data);
            prop_assert_eq!(direct, request.to_line());
        }

        /// A client reading a delivery by the scanner gets what serde
        /// reads, whatever the tags and data (the scanner takes only the
        /// lines without escapes).
        #[test]
        fn a_delivery_scanned_is_what_serde_reads(
            tags in prop::collection::vec(".{0,12}", 1..4),
            data in ".{0,40}",
        ) {
            let line = Request::new("publish").tags(tags).data(data).to_line();
            let line = &line[..line.len() - 1];
            let scanned = <crate::Message as crate::FromLine>::from_canonical(
                line,
                &mut Frames::default(),
            );
            let slow: crate::Message = serde_json::from_slice(line).unwrap();
            prop_assert_eq!(scanned.is_some(), publish(line, &mut Frames::default()).is_some());
            if let Some(fast) = scanned {
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
