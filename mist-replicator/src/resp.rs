//! RESP2, the Redis protocol, as far as a pub/sub client needs it: commands
//! go out as arrays of bulk strings; replies and pushed messages come in and
//! are decoded incrementally. No IO here.
//!
//! Redis is trusted no more than a client: a value larger than the decoder's
//! bound, an array too long or too deep, or bytes that are not RESP are an
//! error naming the problem, and the connection is dropped, never a buffer
//! that grows without end.

use bytes::Bytes;
use std::fmt;

/// Elements one array may have.
const MAX_ARRAY: usize = 1024;
/// Arrays within arrays.
const MAX_DEPTH: usize = 4;

/// Appends `args` as one command.
///
/// ```
/// let mut out = Vec::new();
/// mist_replicator::resp::command(&[b"PUBLISH", b"mist", b"hi"], &mut out);
/// assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nmist\r\n$2\r\nhi\r\n");
/// ```
pub fn command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: Redis refused a command.
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc` (`None` for the null bulk string).
    Bulk(Option<Bytes>),
    /// `*2 ...` (`None` for the null array).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// Bytes that are not RESP, or a value beyond the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespError(String);

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RespError {}

/// Decodes values from bytes as they arrive.
#[derive(Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    start: usize,
    max_value: usize,
}

impl Decoder {
    /// A decoder that refuses any value (with its framing) over `max_value` bytes.
    pub fn new(max_value: usize) -> Decoder {
        Decoder {
            buffer: Vec::new(),
            start: 0,
            max_value,
        }
    }

    /// Takes the next bytes that arrived.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held that are not decoded yet; never more than the bound
    /// once [`Decoder::decode`] has returned `None`.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The next complete value, `None` until one has arrived whole.
    pub fn decode(&mut self) -> Result<Option<Value>, RespError> {
        let pending = &self.buffer[self.start..];
        match parse(pending, 0, 0, self.max_value)? {
            Some((value, used)) => {
                self.start += used;
                if self.start > self.buffer.len() / 2 && self.start > 64 * 1024 {
                    self.buffer.drain(..self.start);
                    self.start = 0;
                }
                Ok(Some(value))
            }
            None if pending.len() > self.max_value => Err(RespError(format!(
                "a value from Redis is over the {} byte limit",
                self.max_value
            ))),
            None => Ok(None),
        }
    }
}

/// The line at `pos` without its `\r\n`, and where the next one starts.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let Some(end) = memchr::memchr(b'\n', &buf[pos..]) else {
        return Ok(None);
    };
    let end = pos + end;
    if end == pos || buf[end - 1] != b'\r' {
        return Err(RespError("a line from Redis does not end in CRLF".into()));
    }
    Ok(Some((&buf[pos..end - 1], end + 1)))
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            RespError(format!(
                "not a number from Redis: {:?}",
                String::from_utf8_lossy(text)
            ))
        })
}

fn parse(
    buf: &[u8],
    pos: usize,
    depth: usize,
    max: usize,
) -> Result<Option<(Value, usize)>, RespError> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some((head, next)) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(head).into_owned();
    Ok(Some(match buf[pos] {
        b'+' => (Value::Simple(text()), next),
        b'-' => (Value::Error(text()), next),
        b':' => (Value::Integer(number(head)?), next),
        b'$' => {
            let len = number(head)?;
            if len < 0 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = len as usize;
            if len > max {
                return Err(RespError(format!(
                    "a value from Redis is over the {max} byte limit"
                )));
            }
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(RespError(
                    "a bulk string from Redis does not end in CRLF".into(),
                ));
            }
            let value = Bytes::copy_from_slice(&buf[next..next + len]);
            (Value::Bulk(Some(value)), next + len + 2)
        }
        b'*' => {
            let len = number(head)?;
            if len < 0 {
                return Ok(Some((Value::Array(None), next)));
            }
            if len as usize > MAX_ARRAY || depth >= MAX_DEPTH {
                return Err(RespError(
                    "an array from Redis is too long or too deep".into(),
                ));
            }
            let mut items = Vec::with_capacity(len as usize);
            let mut at = next;
            for _ in 0..len {
                match parse(buf, at, depth + 1, max)? {
                    Some((item, after)) => {
                        items.push(item);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            (Value::Array(Some(items)), at)
        }
        other => {
            return Err(RespError(format!(
                "not RESP from Redis: a value starts with {:?}",
                other as char
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(decoder: &mut Decoder) -> Vec<Value> {
        std::iter::from_fn(|| decoder.decode().unwrap()).collect()
    }

    #[test]
    fn pushed_messages_and_replies_decode_however_they_are_split() {
        let wire =
            b"*3\r\n$7\r\nmessage\r\n$4\r\nmist\r\n$5\r\nhello\r\n:2\r\n+OK\r\n-ERR no\r\n$-1\r\n";
        for split in 0..wire.len() {
            let mut decoder = Decoder::new(1024);
            decoder.feed(&wire[..split]);
            let mut got = all(&mut decoder);
            decoder.feed(&wire[split..]);
            got.extend(all(&mut decoder));
            assert_eq!(
                got,
                [
                    Value::Array(Some(vec![
                        Value::Bulk(Some(Bytes::from_static(b"message"))),
                        Value::Bulk(Some(Bytes::from_static(b"mist"))),
                        Value::Bulk(Some(Bytes::from_static(b"hello"))),
                    ])),
                    Value::Integer(2),
                    Value::Simple("OK".into()),
                    Value::Error("ERR no".into()),
                    Value::Bulk(None),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn what_is_not_resp_or_too_large_is_refused_with_the_reason() {
        for (wire, says) in [
            (&b"?what\r\n"[..], "not RESP"),
            (b"$5\r\nabc\r\n", ""),
            (b"$100000\r\n", "byte limit"),
            (b"*99999\r\n", "too long"),
            (b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "too deep"),
            (b":12x\r\n", "not a number"),
            (b"+OK\n", "CRLF"),
            (b"$2\r\nabcd\r\n", "CRLF"),
        ] {
            let mut decoder = Decoder::new(1024);
            decoder.feed(wire);
            match decoder.decode() {
                Err(e) => assert!(e.to_string().contains(says), "{e}"),
                Ok(None) if says.is_empty() => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(wire)),
            }
        }
        // A line that never ends is refused once it passes the bound.
        let mut decoder = Decoder::new(16);
        decoder.feed(&[b'+'; 40]);
        assert!(decoder.decode().is_err());
    }

    proptest! {
        /// A command decodes to the arguments it was made of.
        #[test]
        fn a_command_decodes_to_its_arguments(args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut wire = Vec::new();
            command(&refs, &mut wire);
            let mut decoder = Decoder::new(1 << 16);
            decoder.feed(&wire);
            let want = Value::Array(Some(args.iter().map(|a| Value::Bulk(Some(Bytes::copy_from_slice(a)))).collect()));
            prop_assert_eq!(decoder.decode().unwrap(), Some(want));
            prop_assert_eq!(decoder.decode().unwrap(), None);
        }

        /// Any bytes: an error or values, never a panic.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut decoder = Decoder::new(64);
            decoder.feed(&bytes);
            for _ in 0..50 {
                match decoder.decode() {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
