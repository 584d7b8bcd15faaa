//! Fuzzes a whole session over in-memory streams: the line transport, open
//! and secured, and the WebSocket transport, on arbitrary bytes.
#![no_main]

#[path = "../session_check.rs"]
mod session_check;

libfuzzer_sys::fuzz_target!(|input: &[u8]| session_check::check(input));
