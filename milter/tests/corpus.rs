//! Replays every file of the fuzz corpus (`milter/fuzz/corpus/decode/`)
//! through the fuzz target's check (`milter/fuzz/fuzz_targets/common.rs`,
//! included below), so that plain `cargo test` on stable guards against
//! regressions on every input the fuzzer found interesting.
//!
//! `cargo test -p mailward-milter --test corpus -- --ignored` rewrites the
//! named seeds (see [`write_seeds`]).

#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mailward_milter::{split_packets, Command, MAX_PACKET};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode")
}

/// Runs the check on every corpus file; fails naming every file whose
/// check panicked.
#[test]
fn decode_corpus() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| common::decode(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} corpus files failed (the panics are printed above):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// A framed packet.
fn pkt(code: u8, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(code);
    out.extend_from_slice(data);
    out
}

/// The seeds: what Postfix sends, one protocol phase per file, and a
/// whole session. Each is a valid stream of packets.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let optneg = pkt(
        b'O',
        &[
            6u32.to_be_bytes(),
            0x1FFu32.to_be_bytes(),
            0x1F_FFFFu32.to_be_bytes(),
        ]
        .concat(),
    );
    let connect4 = [
        pkt(
            b'D',
            b"Cj\0mx.example.org\0{daemon_name}\0mx\0{client_addr}\x00192.0.2.1\0",
        ),
        pkt(b'C', b"client.example.net\x004\xc3\x5a192.0.2.1\0"),
    ]
    .concat();
    let connect6 = pkt(b'C', b"[2001:db8::25]\x006\x00\x19IPv6:2001:db8::25\0");
    let connect_other = [
        pkt(b'C', b"localhost\0U"),
        pkt(b'K', b""),
        pkt(b'C', b"localhost\0L\0\0/var/run/mta.sock\0"),
    ]
    .concat();
    let envelope = [
        pkt(b'H', b"client.example.net\0"),
        pkt(b'D', b"Mi\x004Xq1Y2Z3\0{mail_addr}\0sender@example.com\0"),
        pkt(b'M', b"<sender@example.com>\0SIZE=1234\0BODY=8BITMIME\0"),
        pkt(b'R', b"<rcpt@example.org>\0NOTIFY=NEVER\0"),
        pkt(b'U', b"XFOO bar\0"),
    ]
    .concat();
    let headers = [
        pkt(b'T', b""),
        pkt(b'L', b"Subject\0Gr\xc3\xbc\xc3\x9fe \xe9t\xe9\0"),
        pkt(b'L', b"Received\0from a.example\n\tby b.example\0"),
        pkt(b'N', b""),
    ]
    .concat();
    let body = [
        pkt(b'B', b"Hello,\r\n\r\nthis is the body.\r\n"),
        pkt(b'E', b""),
        pkt(b'A', b""),
        pkt(b'Q', b""),
    ]
    .concat();
    let session = [
        optneg.clone(),
        connect4.clone(),
        envelope.clone(),
        headers.clone(),
        body.clone(),
    ]
    .concat();
    vec![
        ("optneg-postfix-v6", optneg),
        ("connect-ipv4-with-macros", connect4),
        ("connect-ipv6-prefixed", connect6),
        ("connect-unknown-quit-nc-unix", connect_other),
        ("envelope-helo-mail-rcpt-unknown", envelope),
        ("headers-8bit-folded", headers),
        ("body-eom-abort-quit", body),
        ("session-postfix", session),
    ]
}

/// Writes the seeds into `fuzz/corpus/decode/`, after checking that every
/// packet of each decodes. Run by hand after changing them.
#[test]
#[ignore = "writes seeds into milter/fuzz/corpus/decode"]
fn write_seeds() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (name, bytes) in seeds() {
        for packet in split_packets(&bytes, MAX_PACKET) {
            let packet = packet.unwrap_or_else(|e| panic!("{name}: {e}"));
            Command::decode(packet).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
}

/// The seeds in the repository are the ones [`seeds`] makes, so that they
/// stay valid sessions as the codec changes.
#[test]
fn seeds_are_up_to_date() {
    for (name, bytes) in seeds() {
        let path = corpus_dir().join(name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(on_disk, bytes, "{name}: run the ignored write_seeds test");
        for packet in split_packets(&bytes, MAX_PACKET) {
            assert!(Command::decode(packet.expect("a packet")).is_ok(), "{name}");
        }
    }
}
