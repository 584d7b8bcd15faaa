//! Redis Cluster: which node owns a channel. A sharded channel
//! (`SSUBSCRIBE`, `SPUBLISH`) lives on the master that owns its hash slot,
//! so a node asks any seed for the slot map (`CLUSTER SLOTS`) and talks to
//! that master. When the slot moves, that master answers `MOVED` or ends
//! the subscription, the link fails, and the next connection asks again.

use crate::resp::{self, Value};
use std::io;

/// Hash slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of the part inside
/// its first non-empty `{...}`, modulo 16384.
///
/// ```
/// assert_eq!(mist_replicator::cluster::slot(b"123456789"), 0x31c3);
/// assert_eq!(mist_replicator::cluster::slot(b"{user1000}.following"), mist_replicator::cluster::slot(b"user1000"));
/// ```
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The `CLUSTER SLOTS` command.
pub(crate) fn slots_command() -> Vec<u8> {
    let mut out = Vec::new();
    resp::command(&[b"CLUSTER", b"SLOTS"], &mut out);
    out
}

/// The master that owns `slot` in a `CLUSTER SLOTS` reply: its host and port.
pub(crate) fn owner(reply: &Value, slot: u16, seed_host: &str) -> io::Result<(String, u16)> {
    let bad = |what: &str| io::Error::other(format!("CLUSTER SLOTS: {what}"));
    let ranges = match reply {
        Value::Array(Some(ranges)) => ranges,
        Value::Error(e) => return Err(bad(&format!("refused: {e} (is this a Redis Cluster?)"))),
        _ => return Err(bad("not a list of slot ranges")),
    };
    for range in ranges {
        let Value::Array(Some(fields)) = range else {
            return Err(bad("a slot range is not a list"));
        };
        let (
            Some(Value::Integer(start)),
            Some(Value::Integer(end)),
            Some(Value::Array(Some(master))),
        ) = (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(bad("a slot range without its master"));
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            continue;
        }
        let host = match master.first().and_then(Value::bytes) {
            // An empty or unknown host means "the node you asked".
            Some(b"") | Some(b"?") | None => seed_host.to_string(),
            Some(host) => String::from_utf8_lossy(host).into_owned(),
        };
        let Some(Value::Integer(port)) = master.get(1) else {
            return Err(bad("a master without a port"));
        };
        let port = u16::try_from(*port).map_err(|_| bad("a master's port is out of range"))?;
        return Ok((host, port));
    }
    Err(bad(&format!(
        "no master owns slot {slot} (is the cluster still forming?)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn the_owner_of_a_slot_is_found_and_a_bad_map_is_named() {
        let map = Value::Array(Some(vec![
            Value::Array(Some(vec![
                Value::Integer(0),
                Value::Integer(5460),
                Value::Array(Some(vec![
                    bulk("10.0.0.1"),
                    Value::Integer(7000),
                    bulk("id1"),
                ])),
            ])),
            Value::Array(Some(vec![
                Value::Integer(5461),
                Value::Integer(16383),
                Value::Array(Some(vec![bulk(""), Value::Integer(7001)])),
            ])),
        ]));
        assert_eq!(owner(&map, 100, "seed").unwrap(), ("10.0.0.1".into(), 7000));
        assert_eq!(owner(&map, 9000, "seed").unwrap(), ("seed".into(), 7001));
        let empty = Value::Array(Some(vec![]));
        assert!(owner(&empty, 1, "s")
            .unwrap_err()
            .to_string()
            .contains("no master owns slot 1"));
        let refused = Value::Error("ERR This instance has cluster support disabled".into());
        assert!(owner(&refused, 1, "s")
            .unwrap_err()
            .to_string()
            .contains("cluster support disabled"));
        assert!(owner(&Value::Integer(3), 1, "s").is_err());
    }

    #[test]
    fn slots_follow_hash_tags() {
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{}"), slot(b"{}"));
        assert_eq!(
            slot(b"a{}b"),
            crc16(b"a{}b") % SLOTS,
            "an empty tag hashes the whole key"
        );
    }
}
