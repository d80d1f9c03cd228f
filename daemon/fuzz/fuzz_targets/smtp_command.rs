//! See common::smtp_command (the same code replays corpus/smtp_command under `cargo test`).

#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::smtp_command(data));
