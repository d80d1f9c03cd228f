//! See common::scan_message (the same code replays corpus/scan_message under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::scan_message(data));
