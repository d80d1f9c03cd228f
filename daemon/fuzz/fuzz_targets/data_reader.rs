//! See common::data_reader (the same code replays corpus/data_reader under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::data_reader(data));
