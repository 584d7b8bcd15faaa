//! Fuzzes what a node takes from Redis: arbitrary bytes, cut into reads of
//! arbitrary size, through the RESP decoder (which must stay within its
//! bound and never panic); the same bytes read as a payload's envelope
//! (refused, or read back to the same bytes); and its body handed to a hub
//! as if another node had sent it (refused or applied, never a panic).
#![no_main]

use mist_frontend::Hub;
use mist_replicator::envelope;
use mist_replicator::resp::Decoder;
use std::sync::{Arc, OnceLock};

const BOUND: usize = 4096;

fn hub() -> &'static Arc<Hub> {
    static HUB: OnceLock<Arc<Hub>> = OnceLock::new();
    HUB.get_or_init(|| Arc::new(Hub::with_shards(Default::default(), 1024, 2)))
}

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Some((&cut, bytes)) = input.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    let mut decoder = Decoder::new(BOUND);
    'reads: for chunk in bytes.chunks(step) {
        decoder.feed(chunk);
        loop {
            match decoder.decode() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'reads,
            }
        }
        assert!(
            decoder.buffered() <= BOUND,
            "held {} bytes",
            decoder.buffered()
        );
    }
    let payload = bytes::Bytes::copy_from_slice(bytes);
    if let Ok(read) = envelope::decode(&payload) {
        let mut again = Vec::new();
        envelope::encode(read.origin, read.seq, &read.body, &mut again);
        assert_eq!(again, bytes, "an envelope reads back as written");
        let _ = hub().handle_remote_all(&[&read.body]);
    } else {
        let _ = hub().handle_remote_all(&[bytes]);
    }
});
