//! Replays every file of the fuzz corpora (`daemon/fuzz/corpus/<target>/`)
//! through the same checks as the fuzz targets (`daemon/fuzz/fuzz_targets/
//! common.rs`, included below), so that plain `cargo test` on stable guards
//! against regressions on every input the fuzzers found interesting.
//!
//! `cargo test -p mailward --test fuzz_corpus -- --ignored` rewrites the
//! spool_record seeds with the real spool (see [`write_spool_seeds`]).

#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of the target's corpus; fails naming every
/// file whose check panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus_dir(target);
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
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files failed (the panics are printed above):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn smtp_command_corpus() {
    replay("smtp_command", common::smtp_command);
}

#[test]
fn data_reader_corpus() {
    replay("data_reader", common::data_reader);
}

#[test]
fn scan_message_corpus() {
    replay("scan_message", common::scan_message);
}

#[test]
fn spool_record_corpus() {
    replay("spool_record", common::spool_record);
}

#[test]
fn config_load_corpus() {
    replay("config_load", common::config_load);
}

#[test]
fn spam_examine_corpus() {
    replay("spam_examine", common::spam_examine);
}

#[test]
fn spam_model_corpus() {
    replay("spam_model", common::spam_model);
}

/// Writes the spool_record seeds with the real `Spool`: one accepted
/// message; accepted, updated and removed messages; the same with a torn
/// record at the end (a crash in the middle of a write). Run by hand after
/// a change of the record format; each file stays well under 2 KiB.
#[tokio::test]
#[ignore = "writes seeds into daemon/fuzz/corpus/spool_record"]
async fn write_spool_seeds() {
    use mailward::envelope::{Envelope, QueueId, Recipient};
    use mailward::spool::Spool;

    fn envelope(n: u32) -> Envelope {
        Envelope {
            received_at: 1_700_000_000 + i64::from(n),
            rcpts: vec![Recipient::new(format!("rcpt{n}@example.net"))],
            ..Envelope::new(
                QueueId::generate(),
                "192.0.2.1".parse().expect("an address"),
                "client.example".into(),
                format!("sender{n}@example.com"),
            )
        }
    }
    /// The only segment a fresh spool wrote, after `ops`.
    async fn segment(ops: &[(&str, u32)]) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (spool, _) = Spool::open(dir.path()).expect("open the spool");
        let mut envs: Vec<Envelope> = Vec::new();
        for &(op, n) in ops {
            let i = n as usize;
            match op {
                "accept" => {
                    let e = envelope(n);
                    let body = format!("Subject: seed {n}\r\n\r\nHello {n}.\r\n");
                    spool.accept(&e, body.into_bytes()).await.expect("accept");
                    envs.push(e);
                }
                "update" => {
                    envs[i].attempts += 1;
                    envs[i].next_attempt = 1_700_000_600;
                    spool.update(&envs[i]).await.expect("update");
                }
                "remove" => spool.remove(&envs[i]).await.expect("remove"),
                _ => unreachable!("{op}"),
            }
        }
        spool.stop().await;
        let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("the spool directory")
            .map(|e| e.expect("an entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        let bytes = std::fs::read(&segs[0]).expect("the segment");
        assert!(segs[1..]
            .iter()
            .all(|p| std::fs::metadata(p).expect("a segment").len() == 0));
        bytes
    }

    let dir = corpus_dir("spool_record");
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    let one = segment(&[("accept", 0)]).await;
    let mixed = segment(&[("accept", 0), ("accept", 1), ("update", 0), ("remove", 1)]).await;
    let mut torn = mixed.clone();
    torn.extend_from_slice(b"MWR1\x01\0\0\0\x10\0\0\0");
    for (name, bytes) in [
        ("one-accepted.seg", &one),
        ("accepted-updated-removed.seg", &mixed),
        ("torn-tail.seg", &torn),
    ] {
        assert!(bytes.len() < 2048, "{name} is {} octets", bytes.len());
        std::fs::write(dir.join(name), bytes).expect("write a seed");
    }
}
