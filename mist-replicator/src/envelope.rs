//! What a node puts on a Redis channel, and how a receiving node tells a
//! new message from one it has had.
//!
//! A payload is binary: a version byte (1), the origin node's id (8 bytes,
//! big-endian), the origin's sequence number for the message (8 bytes,
//! big-endian), then what the origin's hub carries (a publish frame, or an
//! admin change; see `mist_frontend::Hub::replicate_to`). A payload with
//! nothing after the header is a liveness probe.
//!
//! Routing by tag publishes a message once per tag, so a node subscribed to
//! two of its tags hears it twice: with the same origin and sequence number.
//! One origin's messages reach a node on one Redis connection, in the order
//! the origin published them, so a number not above the last one heard
//! from that origin is a copy, and is dropped.

use bytes::Bytes;
use std::collections::HashMap;

/// The format written and the only one read.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER: usize = 17;
/// Origins remembered at most; the one heard from longest ago goes first.
const ORIGINS: usize = 1024;

/// A payload read from a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The node that published it.
    pub origin: u64,
    /// Its number among the origin's messages.
    pub seq: u64,
    /// What the origin's hub carried; empty for a probe.
    pub body: Bytes,
}

/// Writes the payload of `body` from `origin` into `out`.
pub fn encode(origin: u64, seq: u64, body: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER + body.len());
    out.push(VERSION);
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(body);
}

/// Reads a payload; says why it is not one a node of this version wrote.
pub fn decode(payload: &Bytes) -> Result<Envelope, &'static str> {
    let Some((&version, rest)) = payload.split_first() else {
        return Err("an empty message");
    };
    if version != VERSION {
        return Err("a message in another format (a node of another mist version, or not mist)");
    }
    let (Some(origin), Some(seq)) = (rest.first_chunk::<8>(), rest.get(8..16)) else {
        return Err("a message shorter than its header");
    };
    Ok(Envelope {
        origin: u64::from_be_bytes(*origin),
        seq: u64::from_be_bytes(seq.try_into().expect("eight bytes")),
        body: payload.slice(HEADER..),
    })
}

/// The last sequence number heard from each origin.
#[derive(Default)]
pub struct Seen {
    origins: HashMap<u64, (u64, u64)>,
    /// Counts messages heard, to tell which origin was heard from last.
    clock: u64,
}

impl Seen {
    /// Whether `seq` from `origin` is new (and remembers it); a copy, or
    /// anything older than the last number heard from `origin`, is not.
    pub fn fresh(&mut self, origin: u64, seq: u64) -> bool {
        self.clock += 1;
        if let Some((last, heard)) = self.origins.get_mut(&origin) {
            *heard = self.clock;
            if seq <= *last {
                return false;
            }
            *last = seq;
            return true;
        }
        if self.origins.len() >= ORIGINS {
            let oldest = self
                .origins
                .iter()
                .min_by_key(|(_, (_, heard))| *heard)
                .map(|(&origin, _)| origin);
            if let Some(oldest) = oldest {
                self.origins.remove(&oldest);
            }
        }
        self.origins.insert(origin, (seq, self.clock));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_as_written() {
        let mut out = Vec::new();
        encode(0xfeed, 7, b"{\"x\":1}", &mut out);
        assert_eq!(out.len(), HEADER + 7);
        let envelope = decode(&Bytes::from(out)).unwrap();
        assert_eq!((envelope.origin, envelope.seq), (0xfeed, 7));
        assert_eq!(&envelope.body[..], b"{\"x\":1}");
        let mut probe = Vec::new();
        encode(1, 2, b"", &mut probe);
        assert!(decode(&Bytes::from(probe)).unwrap().body.is_empty());
    }

    #[test]
    fn other_payloads_are_refused_with_the_reason() {
        assert!(decode(&Bytes::new()).unwrap_err().contains("empty"));
        let text = Bytes::from_static(b"0123456789abcdef {}");
        assert!(decode(&text).unwrap_err().contains("another format"));
        let short = Bytes::from_static(&[VERSION, 0, 0, 0]);
        assert!(decode(&short).unwrap_err().contains("shorter"));
    }

    #[test]
    fn a_copy_or_an_older_number_is_not_fresh() {
        let mut seen = Seen::default();
        assert!(seen.fresh(1, 1));
        assert!(!seen.fresh(1, 1), "a copy");
        assert!(seen.fresh(2, 1), "another origin");
        assert!(seen.fresh(1, 5), "gaps are other nodes' tags");
        assert!(!seen.fresh(1, 3));
        assert!(seen.fresh(1, 6));
    }

    #[test]
    fn origins_are_bounded_and_the_quietest_is_forgotten() {
        let mut seen = Seen::default();
        for origin in 0..ORIGINS as u64 {
            assert!(seen.fresh(origin, 1));
        }
        assert!(!seen.fresh(0, 1), "origin 0 heard from again");
        assert!(seen.fresh(u64::MAX, 1));
        assert_eq!(seen.origins.len(), ORIGINS);
        assert!(seen.origins.contains_key(&0));
        assert!(!seen.origins.contains_key(&1), "the quietest went");
    }
}
