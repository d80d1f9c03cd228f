use super::*;
use crate::envelope::Recipient;
use crate::spool::{Record, Spool};

fn envelope(name: &str) -> Envelope {
    Envelope {
        rcpts: vec![Recipient::new(format!("{name}@example.com"))],
        ..Envelope::new(
            QueueId::generate(),
            "127.0.0.1".parse().unwrap(),
            "client.test".into(),
            format!("sender-{name}@example.com"),
        )
    }
}

/// One start of the gateway on the spool under `data` (so a new segment),
/// writing `records` one after the other, then a clean stop.
async fn start(data: &Path, records: Vec<Record>) {
    let (spool, _) = Spool::open(&data.join("spool")).unwrap();
    for r in records {
        spool.commit(vec![r]).await.unwrap();
    }
    spool.stop().await;
}

fn bytes(name: &str) -> Vec<u8> {
    format!("message {name}\r\n").into_bytes()
}

/// A temporary directory and the gateway's data directory in it (not yet
/// created: the first [`start`] makes the spool).
fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let data = top.path().join("data");
    (top, data)
}

/// `e` accepted with the bytes of its name ([`bytes`]: `message NAME`), the
/// name being its recipient's local part, as [`envelope`] makes it.
fn accepted(e: &Envelope) -> Record {
    let name = e
        .rcpts
        .first()
        .and_then(|r| r.address.split('@').next())
        .unwrap_or_default();
    Record::accepted(e.clone(), bytes(name))
}

fn queued(data: &Path) -> Vec<String> {
    let mut ids: Vec<String> = super::super::recover(&data.join("spool"))
        .unwrap()
        .into_iter()
        .map(|e| e.id.0)
        .collect();
    ids.sort();
    ids
}

fn ids<'a>(list: impl IntoIterator<Item = &'a Envelope>) -> Vec<String> {
    let mut ids: Vec<String> = list.into_iter().map(|e| e.id.0.clone()).collect();
    ids.sort();
    ids
}

/// Flips a byte of `needle`'s first occurrence in segment `n`.
fn damage(data: &Path, n: u64, needle: &[u8]) -> PathBuf {
    let path = record::segment_path(&data.join("spool"), n);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the needle is in the segment");
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What an operator does when the gateway refuses to start.
fn move_aside(path: &Path, aside: &Path) -> PathBuf {
    std::fs::create_dir_all(aside).unwrap();
    let to = aside.join(format!(
        "{}.damaged",
        path.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::rename(path, &to).unwrap();
    to
}

#[tokio::test]
async fn a_damaged_segment_gives_back_its_intact_messages_and_names_the_lost_one() {
    let (top, data) = data_dir();
    let (a, b, c, d) = (envelope("a"), envelope("b"), envelope("c"), envelope("d"));
    let mut b1 = b.clone();
    b1.attempts = 2;
    start(
        &data,
        vec![
            accepted(&a),
            accepted(&b),
            accepted(&c),
            Record::updated(b1),
        ],
    )
    .await;
    start(&data, vec![accepted(&d), Record::removed(a.clone())]).await;
    let path = damage(&data, 1, b"message b");
    assert!(matches!(
        Spool::open(&data.join("spool")),
        Err(SpoolError::Corrupt { .. })
    ));
    let aside = move_aside(&path, &top.path().join("aside"));
    assert_eq!(queued(&data), ids([&d]), "b and c left with the file");

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(s.segment, 1, "the number comes from the file's name");
    assert_eq!(s.written.as_deref(), Some(path.as_path()));
    assert_eq!((s.accepted, s.updated, s.removed), (2, 1, 0));
    assert_eq!(s.damage.len(), 1, "{:?}", s.damage);
    assert!(s.damage[0].problem.contains("checksum"), "{:?}", s.damage);
    assert_eq!(ids(&s.back), ids([&c]));
    assert_eq!(ids(&s.lost), ids([&b]), "b's bytes are damaged");
    assert!(s.gone.is_empty());
    assert_eq!((s.queued_before, s.queued_after), (1, 2));

    // The next start delivers c with its own bytes; a was delivered
    // before (its removed record is newer) and is not sent again.
    let (spool, found) = Spool::open(&data.join("spool")).unwrap();
    assert_eq!(ids(&found), ids([&c, &d]));
    assert_eq!(spool.read(&c.id).unwrap(), b"message c\r\n");
    spool.stop().await;
}

#[tokio::test]
async fn a_removal_recorded_in_the_file_keeps_the_message_from_going_twice() {
    let (top, data) = data_dir();
    let (a, x, y) = (envelope("a"), envelope("x"), envelope("y"));
    // k, still queued, keeps the first segment (and a's record) on disk.
    let k = envelope("k");
    start(&data, vec![accepted(&a), accepted(&k)]).await;
    start(
        &data,
        vec![accepted(&x), Record::removed(a.clone()), accepted(&y)],
    )
    .await;
    start(&data, vec![]).await;
    let path = damage(&data, 2, b"message x");
    let aside = move_aside(&path, &top.path().join("aside"));
    assert_eq!(
        queued(&data),
        ids([&a, &k]),
        "without the file, a (delivered) is back"
    );

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(ids(&s.back), ids([&y]));
    assert_eq!(ids(&s.gone), ids([&a]));
    assert_eq!(ids(&s.lost), ids([&x]));
    assert_eq!(queued(&data), ids([&k, &y]));
}

#[tokio::test]
async fn a_dry_run_tells_the_same_and_writes_nothing() {
    let (top, data) = data_dir();
    let (a, b) = (envelope("a"), envelope("b"));
    start(&data, vec![accepted(&a), accepted(&b)]).await;
    start(&data, vec![]).await;
    let path = damage(&data, 1, b"message a");
    let aside = move_aside(&path, &top.path().join("aside"));
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(data.join("spool"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();

    let s = salvage(&data, &aside, None, true).unwrap();
    assert_eq!(s.written, None);
    assert_eq!(ids(&s.back), ids([&b]));
    assert_eq!(ids(&s.lost), ids([&a]));
    assert_eq!(listing(), before, "a dry run leaves the spool as it was");
    assert!(queued(&data).is_empty());
}

#[tokio::test]
async fn it_refuses_a_running_gateway_the_spools_own_file_and_a_nameless_one() {
    let (top, data) = data_dir();
    start(&data, vec![accepted(&envelope("a"))]).await;
    let seg = record::segment_path(&data.join("spool"), 1);
    let copy = top.path().join("copy.bin");
    std::fs::copy(&seg, &copy).unwrap();

    let e = salvage(&data, &copy, None, false).unwrap_err();
    assert!(matches!(e, SalvageError::NoNumber { .. }), "{e}");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("--segment"), "{e}");

    let e = salvage(&data, &copy, Some(1), false).unwrap_err();
    assert!(matches!(e, SalvageError::Taken { segment: 1, .. }), "{e}");
    let e = salvage(&data, &seg, None, false).unwrap_err();
    assert!(matches!(e, SalvageError::InSpool { .. }), "{e}");
    let e = salvage(&data, &top.path().join("gone.seg"), Some(3), false).unwrap_err();
    assert_eq!(e.exit_code(), 66, "a missing file is said first: {e}");

    let held = DataDirLock::take(&data).unwrap();
    let e = salvage(&data, &copy, Some(7), false).unwrap_err();
    assert_eq!(e.exit_code(), 75, "{e}");
    drop(held);

    let e = salvage(&top.path().join("elsewhere"), &copy, Some(7), false).unwrap_err();
    assert!(matches!(e, SalvageError::NoSpool { .. }), "{e}");

    let empty = top.path().join("0000000000000009.seg");
    std::fs::write(&empty, b"not a segment at all").unwrap();
    let e = salvage(&data, &empty, None, false).unwrap_err();
    assert!(matches!(e, SalvageError::NothingIntact { .. }), "{e}");
    assert!(!record::segment_path(&data.join("spool"), 9).exists());
}

#[test]
fn reading_resumes_at_the_next_intact_record_past_garbage() {
    let record = |name: &str, data: &[u8]| {
        let env = serde_json::to_vec(&envelope(name)).unwrap();
        let mut out = Vec::new();
        record::encode(&mut out, RecordKind::Accepted, &env, data);
        out
    };
    let mut bytes = record("a", b"one\r\n");
    let garbage_at = bytes.len() as u64;
    // Garbage that even holds a magic, as a torn header would.
    let garbage = b"\0\0MWR1\x01\0\0\0zzzzzzzzzzzzzzzzzzzzzzzz";
    bytes.extend_from_slice(garbage);
    bytes.extend_from_slice(&record("b", b"two\r\n"));
    let mut last = record("c", b"three\r\n");
    let n = last.len();
    last[n - 3] ^= 1;
    bytes.extend_from_slice(&last);

    let scan = scan(&bytes);
    assert_eq!(scan.kept.len(), 2);
    assert_eq!(scan.damage.len(), 2, "{:?}", scan.damage);
    assert_eq!(scan.damage[0].offset, garbage_at);
    assert_eq!(scan.damage[0].len, garbage.len() as u64);
    assert_eq!(scan.damage[0].about, None);
    let (kind, env) = scan.damage[1].about.clone().unwrap();
    assert_eq!(kind, RecordKind::Accepted);
    assert_eq!(env.mail_from, "sender-c@example.com");
}

/// The newest segment damaged in the middle: recovery must not take it for
/// a torn write (the records after the damage were acknowledged). Moved
/// aside, its number is not given again: the salvage puts it back before
/// what was written since, which still wins.
#[tokio::test]
async fn damage_in_the_newest_segment_is_refused_and_salvaged_before_what_came_since() {
    let (top, data) = data_dir();
    let (a, b, c, d) = (envelope("a"), envelope("b"), envelope("c"), envelope("d"));
    start(&data, vec![accepted(&a)]).await;
    start(
        &data,
        vec![accepted(&b), accepted(&c), Record::removed(a.clone())],
    )
    .await;
    let newest = *record::list_segments(&data.join("spool"))
        .unwrap()
        .last()
        .unwrap();
    let path = damage(&data, newest, b"message b");
    match Spool::open(&data.join("spool")) {
        Err(SpoolError::Corrupt { problem, .. }) => {
            assert!(problem.contains("an intact record follows"), "{problem}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("damage before acknowledged records was cut off as a torn write"),
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        std::fs::read(&path).unwrap().len(),
        "nothing was cut"
    );
    let aside = move_aside(&path, &top.path().join("aside"));
    // The next start (a was delivered again: it does not know the file's
    // removal) numbers its segment past the one moved aside, although
    // every segment below it is gone.
    start(&data, vec![accepted(&d), Record::removed(a.clone())]).await;
    let now = record::list_segments(&data.join("spool")).unwrap();
    assert!(now.iter().all(|n| *n > newest), "{newest}: {now:?}");

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(ids(&s.back), ids([&c]));
    assert_eq!(ids(&s.lost), ids([&b]));
    let (spool, found) = Spool::open(&data.join("spool")).unwrap();
    assert_eq!(ids(&found), ids([&c, &d]));
    assert_eq!(spool.read(&d.id).unwrap(), b"message d\r\n");
    assert_eq!(spool.read(&c.id).unwrap(), b"message c\r\n");
    spool.stop().await;
}

#[test]
fn a_torn_tail_is_what_a_crash_leaves_and_nothing_else() {
    let env = serde_json::to_vec(&envelope("a")).unwrap();
    let mut whole = Vec::new();
    record::encode(&mut whole, RecordKind::Accepted, &env, b"one\r\n");
    // A write cut short: any prefix of a record, or zeros.
    for cut in [1, 3, 4, 10, whole.len() - 1] {
        let tail = &whole[..cut];
        assert!(record::torn_tail(tail).is_ok(), "cut at {cut}");
    }
    assert!(record::torn_tail(&[0u8; 512]).is_ok());
    // Not ours: text, or a bad record before an intact one.
    assert!(record::torn_tail(b"some operator notes, not a segment").is_err());
    let mut damaged = whole.clone();
    damaged[30] ^= 1;
    damaged.extend_from_slice(&whole);
    assert!(record::torn_tail(&damaged).is_err());
}

/// walkP: following the steps exactly (move the damaged segment aside,
/// start the gateway so that mail flows, salvage) delivered mail again:
/// with the file gone, the newer segments that recorded its messages as
/// delivered held nothing live and were deleted within a second, so the
/// salvage put those messages back. While a refused segment is missing,
/// no newer segment is deleted, and the start says what is out of the
/// queue.
#[tokio::test]
async fn a_gateway_started_without_the_damaged_segment_keeps_what_became_of_its_messages() {
    let (top, data) = data_dir();
    let spool_dir = data.join("spool");
    let (a, b, c) = (envelope("a"), envelope("b"), envelope("c"));
    start(&data, vec![accepted(&a), accepted(&b), accepted(&c)]).await;
    // A start later: a is delivered, c is retried.
    let mut c2 = c.clone();
    c2.attempts = 2;
    start(
        &data,
        vec![Record::removed(a.clone()), Record::updated(c2.clone())],
    )
    .await;
    let path = damage(&data, 1, b"message b");
    assert!(matches!(
        Spool::open(&spool_dir),
        Err(SpoolError::Corrupt { .. })
    ));
    assert!(
        record::damaged_note_path(&spool_dir, 1).exists(),
        "the refusal notes the damaged segment"
    );
    let aside = move_aside(&path, &top.path().join("aside"));

    // Step 2: the gateway runs without the file and mail flows (a write
    // is followed by the collection of dead segments).
    let recovered = record::recover(&spool_dir).unwrap();
    assert_eq!(recovered.missing, vec![1]);
    assert_eq!(
        recovered.orphans,
        vec![c.id.clone()],
        "c has a later record but no bytes: the start names it"
    );
    let (spool, found) = Spool::open(&spool_dir).unwrap();
    assert!(found.is_empty());
    let z = envelope("z");
    spool.accept(&z, bytes("z")).await.unwrap();
    spool.remove(&z).await.unwrap();
    spool.stop().await;
    drop(spool);
    assert!(
        record::segment_path(&spool_dir, 2).exists(),
        "the segment that recorded a's delivery is kept"
    );

    // Step 3: the salvage does not put a back.
    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(ids(&s.back), ids([&c]), "only c comes back");
    assert_eq!(ids(&s.lost), ids([&b]));
    assert!(!record::damaged_note_path(&spool_dir, 1).exists());
    let (spool, found) = Spool::open(&spool_dir).unwrap();
    assert_eq!(ids(&found), ids([&c]), "a was delivered: not again");
    assert_eq!(found[0].attempts, 2, "c's later record still holds");
    spool.stop().await;
}

/// walkP: nothing stopped a second salvage of the same file (its messages,
/// delivered since, would go again), nor a mistyped `--segment 99` (the
/// file's old records replayed after newer ones).
#[tokio::test]
async fn a_number_past_the_spool_and_a_second_salvage_of_one_file_are_refused() {
    let (top, data) = data_dir();
    let spool_dir = data.join("spool");
    let (a, b) = (envelope("a"), envelope("b"));
    start(&data, vec![accepted(&a), accepted(&b)]).await;
    start(&data, vec![]).await;
    let path = damage(&data, 1, b"message b");
    assert!(Spool::open(&spool_dir).is_err());
    let aside = move_aside(&path, &top.path().join("aside"));
    start(&data, vec![accepted(&envelope("k"))]).await;

    let newest = *record::list_segments(&spool_dir).unwrap().last().unwrap();
    match salvage(&data, &aside, Some(newest + 1), true) {
        Err(e @ SalvageError::TooNew { .. }) => {
            assert!(e.to_string().contains("not older than"), "{e}");
            assert_eq!(e.exit_code(), 1);
        }
        other => panic!("a number past the spool's newest segment: {other:?}"),
    }

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(ids(&s.back), ids([&a]));
    // a is delivered and its segment deleted in time; the file is still
    // kept aside, as the doc says, and salvaged again by mistake.
    let (spool, _) = Spool::open(&spool_dir).unwrap();
    spool.remove(&a).await.unwrap();
    spool.stop().await;
    drop(spool);
    std::fs::remove_file(&path).ok();
    let copy = top.path().join("aside").join("renamed.seg");
    std::fs::copy(&aside, &copy).unwrap();
    match salvage(&data, &copy, Some(1), true) {
        Err(e @ SalvageError::Again { .. }) => {
            assert!(e.to_string().contains("salvaged before"), "{e}");
        }
        other => panic!("a second salvage of the same file: {other:?}"),
    }
}

/// walkW 1: a file with no intact record could not be salvaged ("nothing
/// to salvage", exit 1) and its note stayed, so the spool kept every
/// newer segment for a salvage that could never come. The salvage now
/// settles it: nothing comes back, the note goes.
#[tokio::test]
async fn a_file_with_nothing_intact_is_given_up_and_its_note_removed() {
    let (top, data) = data_dir();
    let spool_dir = data.join("spool");
    let k = envelope("k");
    start(&data, vec![accepted(&k)]).await;
    start(&data, vec![]).await;
    // Segment 1 damaged whole; its note as a start before this fix wrote
    // it (a file with nothing intact gets none now).
    let path = record::segment_path(&spool_dir, 1);
    std::fs::write(&path, b"junk\n").unwrap();
    assert!(Spool::open(&spool_dir).is_err());
    let note = record::damaged_note_path(&spool_dir, 1);
    assert!(!note.exists());
    std::fs::write(&note, b"Segment 1 was refused as damaged.\n").unwrap();
    let aside = move_aside(&path, &top.path().join("aside"));

    let s = salvage(&data, &aside, None, true).unwrap();
    assert_eq!(s.given_up.as_deref(), Some(note.as_path()));
    assert!(note.exists(), "a dry run changes nothing");
    let said = crate::ops::salvage_report::render(&s);
    assert!(said.contains("Dry run: nothing changed."), "{said}");

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(s.given_up.as_deref(), Some(note.as_path()));
    assert!(s.written.is_none() && s.back.is_empty());
    assert!(!note.exists(), "the note is gone");
    let said = crate::ops::salvage_report::render(&s);
    assert!(
        said.contains("Nothing in it can be put back")
            && said.contains(&format!("Removed its note {}", note.display())),
        "{said}"
    );
    // Without a note, the same file is what it was: nothing to salvage.
    let e = salvage(&data, &aside, None, false).unwrap_err();
    assert!(matches!(e, SalvageError::NothingIntact { .. }), "{e}");
    let (spool, _) = Spool::open(&spool_dir).unwrap();
    assert_eq!(spool.damaged_kept(), None);
    spool.stop().await;
}

/// walkAI 1: salvage is run as root (between `systemctl stop` and
/// `start`), the gateway as its own user: what the salvage writes must be
/// the spool owner's, or the gateway cannot open it and does not start.
#[tokio::test]
async fn a_salvage_run_as_root_leaves_its_files_to_the_owner_of_the_spool() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: this test chowns the spool to nobody, which needs root");
        return;
    }
    let (top, data) = data_dir();
    let (a, b) = (envelope("a"), envelope("b"));
    start(&data, vec![accepted(&a), accepted(&b)]).await;
    start(&data, vec![]).await;
    let path = damage(&data, 1, b"message b");
    let aside = move_aside(&path, &top.path().join("aside"));
    // The gateway's user: nobody, its group a second, different id.
    let (uid, gid) = (65534u32, 65533u32);
    let spool = data.join("spool");
    for entry in std::fs::read_dir(&spool).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::chown(&spool, Some(uid), Some(gid)).unwrap();

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(ids(&s.back), ids([&a]));
    for written in [path.clone(), spool.join(LEDGER)] {
        let m = std::fs::metadata(&written).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (uid, gid, 0o600),
            "{} must be the spool owner's, as the gateway's user must open it",
            written.display()
        );
    }
}

/// The error a gateway gets on a spool file it may not open names the
/// file's owner and mode, who mailward runs as, and the fix: the chown
/// when another user owns it; when owner and mode are right, where else
/// to look (walkAU F8: the chown to the owner it had was a no-op).
#[test]
fn a_permission_refused_on_a_spool_file_names_its_owner_and_the_chown() {
    let top = tempfile::tempdir().unwrap();
    let spool = top.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let file = record::segment_path(&spool, 4);
    crate::files::create(&file, crate::files::PRIVATE_FILE).unwrap();
    let e = SpoolError::Io {
        path: file.clone(),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    let uid = nix::unistd::geteuid();
    let user = nix::unistd::User::from_uid(uid).unwrap().unwrap().name;
    let text = e.to_string();
    assert!(
        text.contains(&format!("it belongs to {user} (uid {uid}), mode 0600"))
            && text.contains(&format!("lsattr -d {}", spool.display())),
        "{text}"
    );
    assert!(!text.contains("chown"), "{text}");
    if uid.is_root() {
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let text = e.to_string();
        assert!(
            text.contains("(uid 65534), mode 0600")
                && text.contains(&format!("chown -R {user}: {}", spool.display())),
            "{text}"
        );
    }
    let other = SpoolError::Io {
        path: file,
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    assert!(!other.to_string().contains("chown"), "{other}");
}

/// walkAI 2: the damage hits a message's envelope (its accepted record no
/// longer parses), and an intact later update in the file carries its
/// queue ID: the salvage names it as lost, with what the update says.
#[tokio::test]
async fn a_message_whose_accepted_envelope_is_damaged_is_named_as_lost() {
    let (top, data) = data_dir();
    let (a, b, c, d) = (envelope("a"), envelope("b"), envelope("c"), envelope("d"));
    let mut b1 = b.clone();
    b1.attempts = 2;
    let mut c1 = c.clone();
    c1.attempts = 3;
    start(
        &data,
        vec![
            accepted(&a),
            accepted(&b),
            accepted(&c),
            Record::updated(b1),
            Record::updated(c1),
        ],
    )
    .await;
    start(&data, vec![accepted(&d)]).await;
    // The quote that opens b's sender in its accepted record (the first
    // one in the file): the envelope is no longer JSON.
    let path = damage(&data, 1, b"\"sender-b@");
    let aside = move_aside(&path, &top.path().join("aside"));

    let s = salvage(&data, &aside, None, false).unwrap();
    assert_eq!(s.damage.len(), 1, "{:?}", s.damage);
    assert!(s.damage[0].about.is_none(), "the envelope cannot be read");
    assert_eq!((s.accepted, s.updated), (2, 2));
    assert_eq!(ids(&s.back), ids([&a, &c]));
    assert!(s.lost.is_empty());
    assert_eq!(ids(&s.lost_accepted), ids([&b]), "b has an intact update");
    assert_eq!(s.lost_accepted[0].attempts, 2, "its last update's envelope");
    let report = crate::ops::salvage_report::render(&s);
    assert!(
        report.contains("Lost in the damage: 1 message(s)")
            && report.contains(&format!(
                "{}  (its accepted record is damaged: sender and recipients unreadable there; \
                 its last intact update says sender-b@example.com -> b@example.com; \
                 grep the log for {})",
                b.id, b.id
            )),
        "{report}"
    );
    assert_eq!(queued(&data), ids([&a, &c, &d]), "b is not made up");
}
