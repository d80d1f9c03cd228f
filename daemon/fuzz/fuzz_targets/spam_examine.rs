//! See common::spam_examine (the same code replays corpus/spam_examine under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::spam_examine(data));
