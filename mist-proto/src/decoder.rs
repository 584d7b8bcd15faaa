//! Incremental framing and decoding of newline-delimited JSON.
//!
//! Sockets deliver bytes in arbitrary chunks: one line may be split across
//! many reads and one read may hold many lines. [`LineDecoder`] keeps only the
//! unfinished tail of the current line, and never more than the line limit of
//! it, so a client cannot make the server buffer an unbounded line.

use crate::ProtoError;
use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::error::Category;

/// The default limit on one line, newline excluded: 1 MiB.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;

/// A partial line whose buffer grew beyond this is given back to the allocator
/// once the line is done, so a single large message does not pin memory on an
/// otherwise idle connection.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// Turns a stream of byte chunks into decoded lines.
///
/// Each complete line yields exactly one item, in order: the decoded value, or
/// the [`ProtoError`] that says why the line was rejected. Blank lines are
/// skipped. A line longer than the limit yields [`ProtoError::LineTooLong`] as
/// soon as it crosses the limit; the rest of it is skipped as it arrives.
///
/// A decoder made with [`LineDecoder::first_line_only`] decodes only the
/// first line, with a limit of its own, and holds what follows undecoded
/// until [`LineDecoder::release`]: a server that wants `auth` first neither
/// buffers a large line from a client that has not proven who it is, nor
/// refuses a large line that an authenticated client sent right behind it.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    /// The start of a line whose newline has not arrived yet (at most `max_line` bytes).
    partial: Vec<u8>,
    /// Inside a line that already crossed the limit: skip up to its newline.
    discarding: bool,
    /// Until released: the first line's own limit, and whether it is out.
    first: Option<FirstLine>,
    /// Bytes after the first line, undecoded until released.
    held: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct FirstLine {
    limit: usize,
    done: bool,
}

impl LineDecoder {
    /// A decoder that rejects lines longer than `max_line` bytes (newline excluded).
    pub fn new(max_line: usize) -> LineDecoder {
        LineDecoder {
            max_line,
            partial: Vec::new(),
            discarding: false,
            first: None,
            held: Vec::new(),
        }
    }

    /// Decodes only the first line, limited to `limit` bytes (or the line
    /// limit, if smaller), and holds everything after it until
    /// [`LineDecoder::release`].
    ///
    /// ```
    /// use mist_proto::{LineDecoder, ProtoError, Request};
    ///
    /// let mut decoder = LineDecoder::new(1 << 20).first_line_only(64);
    /// let mut out = Vec::<Result<Request, ProtoError>>::new();
    /// let big = format!("{{\"command\":\"publish\",\"tags\":[\"t\"],\"data\":\"{}\"}}\n", "x".repeat(1000));
    /// decoder.decode(format!("{{\"command\":\"auth\",\"data\":\"t\"}}\n{big}").as_bytes(), &mut out);
    /// assert_eq!(out.len(), 1, "only the first line");
    /// decoder.release(&mut out);
    /// assert!(out[1].is_ok(), "the large line was held, then decoded with the full limit");
    /// ```
    pub fn first_line_only(mut self, limit: usize) -> LineDecoder {
        self.first = Some(FirstLine {
            limit: limit.min(self.max_line),
            done: false,
        });
        self
    }

    /// Whether the decoder is in first-line mode and has not been released.
    pub fn is_held(&self) -> bool {
        self.first.is_some()
    }

    /// Ends first-line mode and decodes whatever was held behind the first line.
    pub fn release<T: FromLine>(&mut self, out: &mut impl Decoded<T>) {
        if self.first.take().is_none() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.decode(&held, out);
    }

    /// The line limit in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// How many bytes of an unfinished line are held; never more than [`Self::max_line`].
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Decodes every line that `chunk` completes, appending one item per line
    /// to `out` (only the first line in first-line mode).
    pub fn decode<T: FromLine>(&mut self, chunk: &[u8], out: &mut impl Decoded<T>) {
        if let Some(first) = self.first {
            if first.done {
                self.held.extend_from_slice(chunk);
                return;
            }
            self.decode_first(first.limit, chunk, out);
            return;
        }
        self.decode_lines(chunk, out);
    }

    fn decode_lines<T: FromLine>(&mut self, mut chunk: &[u8], out: &mut impl Decoded<T>) {
        let mut frames = Frames::default();
        while !chunk.is_empty() {
            // The frames of this read share one allocation.
            frames.room_for = chunk.len();
            let Some(newline) = memchr(b'\n', chunk) else {
                self.hold(chunk, out);
                return;
            };
            let (line, rest) = (&chunk[..newline], &chunk[newline + 1..]);
            chunk = rest;
            if self.discarding {
                self.discarding = false;
            } else if self.partial.len() + line.len() > self.max_line {
                self.partial.clear();
                out.push(Err(self.too_long()));
            } else if self.partial.is_empty() {
                // The common case: the whole line is in this chunk, decode it in place.
                push_line(line, &mut frames, out);
            } else {
                self.partial.extend_from_slice(line);
                push_line(&self.partial, &mut frames, out);
                self.partial.clear();
                if self.partial.capacity() > RETAINED_CAPACITY {
                    self.partial = Vec::new();
                }
            }
        }
    }

    /// First-line mode: decodes up to the first non-blank line with `limit`
    /// and holds the rest of `chunk`.
    fn decode_first<T: FromLine>(&mut self, limit: usize, chunk: &[u8], out: &mut impl Decoded<T>) {
        let before = out.len();
        let full_limit = std::mem::replace(&mut self.max_line, limit);
        let mut rest = chunk;
        while out.len() == before && !rest.is_empty() {
            let end = memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            self.decode_lines(&rest[..end], out);
            rest = &rest[end..];
        }
        self.max_line = full_limit;
        if out.len() > before {
            if let Some(first) = &mut self.first {
                first.done = true;
            }
            self.held.extend_from_slice(rest);
        }
    }

    /// Keeps the unterminated tail of a chunk, or starts discarding if it is too long.
    fn hold<T>(&mut self, tail: &[u8], out: &mut impl Decoded<T>) {
        if self.discarding {
            return;
        }
        if self.partial.len() + tail.len() > self.max_line {
            self.partial = Vec::new();
            self.discarding = true;
            out.push(Err(self.too_long()));
        } else {
            self.partial.extend_from_slice(tail);
        }
    }

    fn too_long(&self) -> ProtoError {
        ProtoError::LineTooLong {
            limit: self.max_line,
        }
    }
}

/// Where a [`LineDecoder`] puts what it decodes: a `Vec`, or a `VecDeque`
/// for a reader that takes items from the front.
pub trait Decoded<T> {
    /// Appends one line's item.
    fn push(&mut self, item: Result<T, ProtoError>);
    /// Items held.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Decoded<T> for Vec<Result<T, ProtoError>> {
    fn push(&mut self, item: Result<T, ProtoError>) {
        Vec::push(self, item)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

impl<T> Decoded<T> for std::collections::VecDeque<Result<T, ProtoError>> {
    fn push(&mut self, item: Result<T, ProtoError>) {
        self.push_back(item)
    }
    fn len(&self) -> usize {
        std::collections::VecDeque::len(self)
    }
}

/// What a [`LineDecoder`] decodes lines into: anything serde can decode,
/// plus, for [`crate::Request`], a fast path for publishes written exactly
/// as the server delivers them.
pub trait FromLine: DeserializeOwned {
    /// Decodes `line` (no line ending, not yet checked for UTF-8) without
    /// serde, if it has a form the type recognises; `None` sends it through
    /// serde. Must never accept a line serde would decode differently. A
    /// value that keeps the line keeps it as a [`Frames::frame`].
    fn from_canonical(_line: &[u8], _frames: &mut Frames) -> Option<Self> {
        None
    }
}

impl FromLine for crate::Request {
    fn from_canonical(line: &[u8], frames: &mut Frames) -> Option<Self> {
        crate::canonical::publish(line, frames)
    }
}

/// Copies of the lines decoded from one read, kept as frames: every copy
/// made while decoding one read shares one allocation (freed when the last
/// of them is dropped) instead of taking one each. A frame kept alive keeps
/// that allocation, at most the size of the read, so a server copies what
/// it queues for long (a recipient's outbox) rather than keeping frames.
#[derive(Debug, Default)]
pub struct Frames {
    /// Room still free for copies.
    buffer: BytesMut,
    /// The bytes of the read still to be decoded: the room to take when
    /// the current room runs out.
    room_for: usize,
}

impl Frames {
    /// `line` with a `\n` after it, as a frame of its own.
    pub fn frame(&mut self, line: &[u8]) -> Bytes {
        let needed = line.len() + 1;
        if self.buffer.capacity() - self.buffer.len() < needed {
            self.buffer = BytesMut::with_capacity(needed.max(self.room_for));
        }
        self.buffer.extend_from_slice(line);
        self.buffer.put_u8(b'\n');
        self.buffer.split().freeze()
    }
}

impl FromLine for crate::Message {
    /// A delivery as the server writes it, read by the publish scanner:
    /// a client decodes a great many of them.
    fn from_canonical(line: &[u8], _frames: &mut Frames) -> Option<Self> {
        // The text is the literal's inside: it has no escape to undo.
        let (tags, text) = crate::canonical::scan(line)?;
        Some(crate::Message {
            command: "publish".to_string(),
            tags: Some(tags),
            data: Some(text.to_owned()),
            subscriptions: None,
            connections: None,
            subscribers: None,
            error: None,
        })
    }
}

impl FromLine for crate::Publication {}

fn push_line<T: FromLine>(line: &[u8], frames: &mut Frames, out: &mut impl Decoded<T>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(fast) = T::from_canonical(line, frames) {
        out.push(Ok(fast));
        return;
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    out.push(parse_line(line));
}

/// Decodes one whole JSON document, such as an HTTP request body, with the
/// same checks and errors as a line. Surrounding whitespace is allowed.
pub fn decode_document<T: DeserializeOwned>(document: &[u8]) -> Result<T, ProtoError> {
    parse_line(document.trim_ascii())
}

/// What went wrong, without serde_json's "at line L column C" suffix.
pub(crate) fn describe(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&position) {
        Some(what) => what.to_string(),
        None => full,
    }
}

/// Decodes one line (without its line ending) into `T`.
pub(crate) fn parse_line<T: DeserializeOwned>(line: &[u8]) -> Result<T, ProtoError> {
    let text = std::str::from_utf8(line).map_err(|e| ProtoError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    if !text.trim_start().starts_with('{') {
        // Say "not an object" only for valid JSON; anything else is a JSON error.
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => ProtoError::NotAnObject,
            Err(e) => json_error(e),
        });
    }
    serde_json::from_str(text).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> ProtoError {
    // Every message is one line, so the column alone says where.
    let detail = match e.line() {
        0 => describe(&e),
        _ => format!("{} at column {}", describe(&e), e.column()),
    };
    match e.classify() {
        Category::Data => ProtoError::InvalidMessage { detail },
        Category::Syntax | Category::Eof | Category::Io => ProtoError::InvalidJson { detail },
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_delivery_read_by_the_scanner_is_what_serde_reads() {
        let line = br#"{"command":"publish","tags":["a","b c"],"data":"hello"}"#;
        let mut frames = Frames::default();
        let fast = <crate::Message as FromLine>::from_canonical(line, &mut frames).unwrap();
        let slow: crate::Message = serde_json::from_slice(line).unwrap();
        assert_eq!(fast, slow);
        let escaped = br#"{"command":"publish","tags":["a"],"data":"x\ny"}"#;
        assert!(<crate::Message as FromLine>::from_canonical(escaped, &mut frames).is_none());
    }

    use super::*;
    use crate::Request;
    use proptest::prelude::*;

    fn decode_all(decoder: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<Result<Request, ProtoError>> {
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.decode(chunk, &mut out);
        }
        out
    }

    fn commands(results: Vec<Result<Request, ProtoError>>) -> Vec<String> {
        results
            .into_iter()
            .map(|r| r.unwrap().command.to_string())
            .collect()
    }

    #[test]
    fn a_frame_split_across_reads_is_decoded_once_complete() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE);
        let out = decode_all(&mut d, &[b"{\"comm", b"and\":\"pi", b"ng\"}"]);
        assert!(out.is_empty(), "nothing until the newline arrives");
        assert_eq!(d.buffered(), 18);
        let out = decode_all(&mut d, &[b"\n"]);
        assert_eq!(commands(out), ["ping"]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn many_frames_in_one_read_come_out_in_order() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE);
        let out = decode_all(
            &mut d,
            &[b"{\"command\":\"a\"}\n{\"command\":\"b\"}\n{\"command\":\"c\"}\n{\"comm"],
        );
        assert_eq!(commands(out), ["a", "b", "c"]);
        assert_eq!(commands(decode_all(&mut d, &[b"and\":\"d\"}\n"])), ["d"]);
    }

    #[test]
    fn crlf_and_blank_lines() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE);
        let out = decode_all(&mut d, &[b"\r\n\n  \r\n{\"command\":\"ping\"}\r", b"\n"]);
        assert_eq!(commands(out), ["ping"]);
    }

    #[test]
    fn tags_data_and_unknown_fields() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE);
        let out = decode_all(
            &mut d,
            &[b"{\"command\":\"publish\",\"tags\":[\"a\",\"b\"],\"data\":\"x\\ny\",\"extra\":{\"k\":[1]}}\n"],
        );
        let request = out.into_iter().next().unwrap().unwrap();
        assert_eq!(
            request,
            Request::new("publish").tags(["a", "b"]).data("x\ny")
        );
        let out = decode_all(&mut d, &[b"{\"command\":\"list\",\"tags\":null}\n"]);
        assert_eq!(out, [Ok(Request::new("list"))]);
    }

    #[test]
    fn a_line_at_the_limit_is_accepted_and_one_byte_more_is_not() {
        let line = b"{\"command\":\"ping\"}";
        let mut d = LineDecoder::new(line.len());
        assert_eq!(commands(decode_all(&mut d, &[line, b"\n"])), ["ping"]);
        let mut d = LineDecoder::new(line.len() - 1);
        let out = decode_all(&mut d, &[line, b"\n", line, b"\n"]);
        let limit = line.len() - 1;
        assert_eq!(
            out,
            [
                Err(ProtoError::LineTooLong { limit }),
                Err(ProtoError::LineTooLong { limit })
            ]
        );
    }

    #[test]
    fn an_oversized_line_is_discarded_without_being_buffered() {
        let mut d = LineDecoder::new(100);
        let mut out: Vec<Result<Request, ProtoError>> = Vec::new();
        d.decode(b"{\"command\":\"publish\",\"data\":\"", &mut out);
        for _ in 0..1000 {
            d.decode(&[b'x'; 1000], &mut out);
            assert_eq!(d.buffered(), 0, "the over-long line is never held");
        }
        assert_eq!(
            out,
            [Err(ProtoError::LineTooLong { limit: 100 })],
            "reported once"
        );
        d.decode(b"\"}\n{\"command\":\"ping\"}\n", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].as_ref().unwrap().command.as_str(),
            "ping",
            "the next line is fine"
        );
    }

    #[test]
    fn garbage_gets_errors_that_say_what_was_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"hello", "invalid JSON: expected value at column 1"),
            (
                b"{\"command\":",
                "invalid JSON: EOF while parsing a value at column 11",
            ),
            (
                b"[1,2]",
                "invalid message: expected a JSON object like {\"command\":\"ping\"}",
            ),
            (
                b"\"ping\"",
                "invalid message: expected a JSON object like {\"command\":\"ping\"}",
            ),
            (
                b"{}",
                "invalid message: missing field `command` at column 2",
            ),
            (
                b"{\"command\":5}",
                "invalid message: invalid type: integer `5`, expected a string at column 12",
            ),
            (
                b"{\"command\":\"publish\",\"tags\":\"a\"}",
                "invalid message: invalid type: string \"a\", expected a sequence at column 31",
            ),
            (
                b"{\"command\":\"publish\",\"data\":[]}",
                "invalid message: invalid type: sequence, expected a string at column 31",
            ),
            (
                b"{\"command\":\"ping\"} trailing",
                "invalid JSON: trailing characters at column 20",
            ),
            (
                b"{\"command\":\"\xff\"}",
                "invalid UTF-8: the line has a byte that is not UTF-8 at offset 12",
            ),
        ];
        for (line, expected) in cases {
            let mut d = LineDecoder::new(DEFAULT_MAX_LINE);
            let out = decode_all(&mut d, &[line, b"\n"]);
            assert_eq!(out.len(), 1, "{:?}", String::from_utf8_lossy(line));
            let err = out[0].as_ref().unwrap_err();
            assert_eq!(
                err.to_string(),
                *expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn first_line_mode_holds_what_follows_until_released() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE).first_line_only(32);
        let big = format!(
            "{{\"command\":\"publish\",\"data\":\"{}\"}}\n",
            "x".repeat(100)
        );
        let out = decode_all(
            &mut d,
            &[
                b"\r\n{\"command\":",
                b"\"auth\"}\n",
                big.as_bytes(),
                b"{\"command\":\"ping\"}\n",
            ],
        );
        assert_eq!(commands(out), ["auth"], "blank lines skipped, one line out");
        assert!(d.is_held());
        let mut out = Vec::new();
        d.release(&mut out);
        assert_eq!(
            commands(out),
            ["publish", "ping"],
            "held lines get the full limit"
        );
        assert!(!d.is_held());
        assert_eq!(
            commands(decode_all(&mut d, &[b"{\"command\":\"list\"}\n"])),
            ["list"]
        );
    }

    #[test]
    fn a_first_line_over_its_own_limit_is_refused_without_being_buffered() {
        let mut d = LineDecoder::new(DEFAULT_MAX_LINE).first_line_only(16);
        let mut out: Vec<Result<Request, ProtoError>> = Vec::new();
        d.decode(b"{\"command\":\"auth\",\"data\":\"", &mut out);
        assert_eq!(out, [Err(ProtoError::LineTooLong { limit: 16 })]);
        assert_eq!(d.buffered(), 0);
    }

    proptest! {
        /// However the byte stream is cut into reads, the decoded items are the same.
        #[test]
        fn chunking_never_changes_the_result(
            lines in prop::collection::vec(
                prop_oneof![
                    prop::string::string_regex("[a-z]{0,8}").unwrap()
                        .prop_map(|c| format!("{{\"command\":\"{c}\",\"tags\":[\"t\"],\"data\":\"{c}\"}}")),
                    prop::string::string_regex("[ -~]{0,40}").unwrap(),
                ],
                0..20,
            ),
            cuts in prop::collection::vec(0usize..2000, 0..10),
            crlf in any::<bool>(),
        ) {
            let ending = if crlf { "\r\n" } else { "\n" };
            let stream: Vec<u8> = lines.iter().flat_map(|l| format!("{l}{ending}").into_bytes()).collect();
            let whole = decode_all(&mut LineDecoder::new(30), &[&stream]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&stream[start..cut]);
                start = cut;
            }
            pieces.push(&stream[start..]);
            let split = decode_all(&mut LineDecoder::new(30), &pieces);
            prop_assert_eq!(whole, split);
        }
    }
}
