//! See common::spam_model (the same code replays corpus/spam_model under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::spam_model(data));
