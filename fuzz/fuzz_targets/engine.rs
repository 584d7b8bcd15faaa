//! Fuzzes the engine: operation sequences decoded from arbitrary bytes, run
//! through the engine and a brute-force model that must agree frame for frame.
#![no_main]

#[path = "../engine_model.rs"]
mod engine_model;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (secured, shards, mut ops) = engine_model::ops_from_bytes(input);
    ops.truncate(400);
    engine_model::run(secured, shards, ops);
});
