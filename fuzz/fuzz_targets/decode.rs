//! Fuzzes the line decoder: arbitrary bytes, cut into reads in arbitrary ways.
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|input: &[u8]| check::check(input));
