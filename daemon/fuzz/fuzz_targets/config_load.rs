//! See common::config_load (the same code replays corpus/config_load under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::config_load(data));
