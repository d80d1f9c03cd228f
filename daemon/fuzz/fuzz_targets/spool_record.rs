//! See common::spool_record (the same code replays corpus/spool_record under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::spool_record(data));
