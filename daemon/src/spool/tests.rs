use super::*;
use crate::envelope::{Envelope, QueueId, Recipient};
use std::io::Write;

fn envelope(n: u32) -> Envelope {
    Envelope {
        received_at: 1_700_000_000 + i64::from(n),
        rcpts: vec![Recipient::new(format!("rcpt{n}@example.com"))],
        ..Envelope::new(
            QueueId::generate(),
            "127.0.0.1".parse().unwrap(),
            "client.test".into(),
            format!("sender{n}@example.com"),
        )
    }
}

#[tokio::test]
async fn accepted_messages_survive_a_reopen_and_removed_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert!(found.is_empty());
    let a = envelope(1);
    let mut b = envelope(2);
    let c = envelope(3);
    spool.accept(&a, b"message a\r\n".to_vec()).await.unwrap();
    spool.accept(&b, b"message b\r\n".to_vec()).await.unwrap();
    spool.accept(&c, b"message c\r\n".to_vec()).await.unwrap();
    b.attempts = 3;
    spool.update(&b).await.unwrap();
    spool.remove(&c).await.unwrap();
    assert_eq!(spool.read(&a.id).unwrap(), b"message a\r\n");
    assert!(matches!(spool.read(&c.id), Err(SpoolError::NotFound(_))));
    // No stop(): as after a crash.
    drop(spool);

    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].id, a.id);
    assert_eq!(found[1].id, b.id);
    assert_eq!(found[1].attempts, 3, "the last update wins");
    assert_eq!(spool.read(&b.id).unwrap(), b"message b\r\n");
}

#[tokio::test]
async fn a_torn_record_at_the_end_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let a = envelope(1);
    spool.accept(&a, b"kept\r\n".to_vec()).await.unwrap();
    spool.stop().await;
    // Simulate a crash in the middle of the next write.
    let last = *record::list_segments(dir.path()).unwrap().last().unwrap();
    let path = record::segment_path(dir.path(), last);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"MWR1\x01\0\0\0garbage").unwrap();
    drop(f);
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(spool.read(&a.id).unwrap(), b"kept\r\n");
    // Cut exactly at the end of the last whole record: nothing of the
    // garbage is left, and a second recovery finds the same.
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 0 && !std::fs::read(&path).unwrap().ends_with(b"garbage"));
    drop(spool);
    let (_, again) = Spool::open(dir.path()).unwrap();
    assert_eq!(again.len(), 1, "recovery is repeatable");
}

#[tokio::test]
async fn corruption_in_an_older_segment_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    spool.accept(&envelope(1), b"x\r\n".to_vec()).await.unwrap();
    spool.stop().await;
    drop(spool);
    // A second start adds a newer (empty) segment.
    let (spool, _) = Spool::open(dir.path()).unwrap();
    spool.stop().await;
    drop(spool);
    let first = record::list_segments(dir.path()).unwrap()[0];
    let path = record::segment_path(dir.path(), first);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    match Spool::open(dir.path()) {
        Err(SpoolError::Corrupt { problem, .. }) => {
            assert!(problem.contains("checksum"), "{problem}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("corruption in an older segment must not pass silently"),
    }
}

#[tokio::test]
async fn empty_segments_are_deleted_and_old_live_messages_copied_forward() {
    let dir = tempfile::tempdir().unwrap();
    let mut keep = None;
    // Each open starts a new segment: make several.
    for round in 0..(COMPACT_AFTER_SEGMENTS as u32 + 3) {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let e = envelope(round);
        spool
            .accept(&e, format!("body {round}\r\n").into_bytes())
            .await
            .unwrap();
        if round == 0 {
            keep = Some(e);
        } else {
            spool.remove(&e).await.unwrap();
        }
        // No explicit compaction: each start does it past the limit, as
        // the once-a-second maintenance does.
        spool.stop().await;
    }
    let keep = keep.unwrap();
    let segs = record::list_segments(dir.path()).unwrap();
    assert!(
        segs.len() <= COMPACT_AFTER_SEGMENTS + 1,
        "old segments must go: {segs:?}"
    );
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, keep.id);
    assert_eq!(spool.read(&keep.id).unwrap(), b"body 0\r\n");
}

#[tokio::test]
async fn many_concurrent_accepts_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let e = envelope(n);
            spool.accept(&e, vec![b'x'; 1024]).await.map(|()| e.id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    drop(spool);
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 200);
    for id in ids {
        assert_eq!(spool.read(&id).unwrap().len(), 1024);
    }
}

/// Polls `check` for up to five seconds (the writer's maintenance round
/// runs once a second).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("not within 5 s: {what}");
}

#[tokio::test]
async fn dead_space_is_reclaimed_without_a_further_write() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let mut sent = Vec::new();
    for n in 0..3 {
        let e = envelope(n);
        spool.accept(&e, vec![b'x'; 512 * 1024]).await.unwrap();
        sent.push(e);
    }
    let first = record::list_segments(dir.path()).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(spool.reclaimable(), 0, "everything is live");
    for e in &sent {
        spool.remove(e).await.unwrap();
    }
    // Nothing else is written: the maintenance round alone must roll over
    // and delete the segment full of delivered mail, then publish that
    // nothing is left to reclaim (the round deletes first and publishes
    // after: both are waited for, or the test races the writer thread).
    eventually(
        "the dead segment is deleted, nothing left to reclaim",
        || {
            !record::list_segments(dir.path())
                .unwrap()
                .contains(&first[0])
                && spool.reclaimable() == 0
        },
    )
    .await;
    drop(spool);
    let (_, found) = Spool::open(dir.path()).unwrap();
    assert!(found.is_empty(), "removed messages stay removed");
}

#[tokio::test]
async fn reclaimable_space_counts_in_the_available_space() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let e = envelope(1);
    spool.accept(&e, vec![b'x'; 4096]).await.unwrap();
    spool.remove(&e).await.unwrap();
    // Below ROLL_DEAD_AFTER the segment stays, and the next message is
    // written beside the dead bytes (pinning them): they are not counted
    // (walkP 1: counted, they let new mail take more than the disk had).
    let reclaimable = spool.reclaimable();
    assert_eq!(reclaimable, 0);
    let free = spool.free_space().unwrap();
    let available = spool.available().unwrap();
    assert!(
        available >= free + reclaimable - 65536,
        "{available} vs {free}+{reclaimable}"
    );
}

/// Fills the current segment past ROLL_DEAD_AFTER with a message that is
/// then removed, so that the next maintenance round rolls over.
async fn fill_with_dead_bytes(spool: &Spool, n: u32) {
    let e = envelope(n);
    spool
        .accept(&e, vec![b'x'; super::ROLL_DEAD_AFTER as usize + 1])
        .await
        .unwrap();
    spool.remove(&e).await.unwrap();
}

#[tokio::test]
async fn a_file_in_the_way_of_a_new_segment_is_stepped_over() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let n = *record::list_segments(dir.path()).unwrap().last().unwrap();
    // An empty file where the next segment goes (what a refused second
    // start used to leave): it is taken over.
    std::fs::write(record::segment_path(dir.path(), n + 1), b"").unwrap();
    fill_with_dead_bytes(&spool, 1).await;
    eventually("rolled over onto the empty file", || {
        record::list_segments(dir.path()).unwrap() == vec![n + 1]
    })
    .await;
    // A file with something in it is not ours to take: it is renamed out
    // of the segments' names, kept, and its number taken. walkP: it used
    // to be stepped over and left, and the next start refused it as a
    // damaged segment.
    let foreign = record::segment_path(dir.path(), n + 2);
    std::fs::write(&foreign, b"not a segment of ours").unwrap();
    fill_with_dead_bytes(&spool, 2).await;
    eventually("rolled over onto the foreign file's number", || {
        record::list_segments(dir.path()).unwrap() == vec![n + 2]
    })
    .await;
    let e = envelope(3);
    spool.accept(&e, b"hello\r\n".to_vec()).await.unwrap();
    let moved = dir.path().join(format!("{:016}.seg.in-the-way", n + 2));
    assert_eq!(std::fs::read(&moved).unwrap(), b"not a segment of ours");
    spool.stop().await;
    drop(spool);
    // The next start reads the spool without a word about it.
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(spool.read(&e.id).unwrap(), b"hello\r\n");
}

#[tokio::test]
async fn segments_and_the_spool_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    std::fs::create_dir(&spool_dir).unwrap();
    std::fs::set_permissions(&spool_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (spool, _) = Spool::open(&spool_dir).unwrap();
    spool.accept(&envelope(1), b"x\r\n".to_vec()).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool_dir), 0o700);
    for seg in record::list_segments(&spool_dir).unwrap() {
        assert_eq!(mode(&record::segment_path(&spool_dir, seg)), 0o600);
    }
}

/// The size of the spool's segment files.
fn spool_bytes(dir: &std::path::Path) -> u64 {
    record::list_segments(dir)
        .unwrap()
        .iter()
        .map(|&n| {
            std::fs::metadata(record::segment_path(dir, n))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

/// walkJ: on a 20 MiB disk one message deferred to a dead host pinned the
/// delivered mail written after it in the same 64 MiB segment, and every
/// new message got 452 for as long as it waited (restarts included).
#[tokio::test]
async fn under_pressure_a_waiting_message_no_longer_pins_delivered_mail() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    // A floor no disk reaches: the spool is always under pressure.
    spool.set_free_floor(u64::MAX / 2);
    let waiting = envelope(0);
    spool
        .accept(&waiting, b"deferred\r\n".to_vec())
        .await
        .unwrap();
    for n in 1..=4 {
        let e = envelope(n);
        spool.accept(&e, vec![b'x'; 512 * 1024]).await.unwrap();
        spool.remove(&e).await.unwrap();
    }
    assert!(spool_bytes(dir.path()) > 2 * 1024 * 1024);
    let first = record::list_segments(dir.path()).unwrap();
    eventually("the delivered mail's segment is gone", || {
        let now = record::list_segments(dir.path()).unwrap();
        !now.contains(&first[0]) && spool_bytes(dir.path()) < 64 * 1024
    })
    .await;
    assert_eq!(spool.read(&waiting.id).unwrap(), b"deferred\r\n");
    // Nothing more to gain: the next rounds leave the copy where it is.
    let settled = record::list_segments(dir.path()).unwrap();
    tokio::time::sleep(super::MAINTENANCE_INTERVAL * 3).await;
    assert_eq!(record::list_segments(dir.path()).unwrap(), settled);
    drop(spool);
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 1, "the waiting message survives, alone");
    assert_eq!(found[0].id, waiting.id);
    assert_eq!(spool.read(&waiting.id).unwrap(), b"deferred\r\n");
}

/// Without pressure a waiting message keeps its segment: copying it
/// forward would cost writes for space nobody needs.
#[tokio::test]
async fn with_room_to_spare_nothing_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    if free_space(dir.path()).unwrap() < 2 * SEGMENT_SIZE {
        return; // a disk this full is under pressure: the test above covers it
    }
    let (spool, _) = Spool::open(dir.path()).unwrap();
    spool.set_free_floor(0);
    let waiting = envelope(0);
    spool
        .accept(&waiting, b"deferred\r\n".to_vec())
        .await
        .unwrap();
    for n in 1..=4 {
        let e = envelope(n);
        spool.accept(&e, vec![b'x'; 512 * 1024]).await.unwrap();
        spool.remove(&e).await.unwrap();
    }
    let before = record::list_segments(dir.path()).unwrap();
    tokio::time::sleep(super::MAINTENANCE_INTERVAL * 3).await;
    assert_eq!(record::list_segments(dir.path()).unwrap(), before);
}

/// walkP: a `queue release` (or `hold`, or `remove`) that the spool could
/// not write answered "nothing changed", but the change reached the
/// spool's index anyway: the pressure compaction then wrote it forward as
/// the message's new state (the release took effect at the next restart),
/// and a failed removal let the message's segment be deleted while the
/// queue kept it. A failed administrator's change leaves the spool as it
/// was, through compaction and a restart.
#[tokio::test]
async fn a_failed_administrators_change_does_not_take_effect_later() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let mut held = envelope(1);
    held.held = true;
    spool.accept(&held, b"held\r\n".to_vec()).await.unwrap();
    let kept = envelope(2);
    spool.accept(&kept, b"kept\r\n".to_vec()).await.unwrap();
    let first = record::list_segments(dir.path()).unwrap();

    // The disk is full: the release and the removal cannot be written.
    spool.shared.fail_writes.store(true, Ordering::Relaxed);
    let mut released = held.clone();
    released.held = false;
    assert!(spool.update_or_nothing(&released).await.is_err());
    assert!(spool.remove_or_nothing(&kept).await.is_err());
    // `mailward status` says so while it lasts (walkP 5).
    let (since, _) = spool.write_failing().expect("the writes are failing");
    assert!(since > 0);
    spool.shared.fail_writes.store(false, Ordering::Relaxed);
    assert_eq!(spool.read(&kept.id).unwrap(), b"kept\r\n");

    // Space comes back and runs short again: the compaction under pressure
    // copies both messages forward and deletes their old segment.
    spool.set_free_floor(u64::MAX / 2);
    fill_with_dead_bytes(&spool, 3).await;
    eventually("the old segment is compacted away", || {
        !record::list_segments(dir.path())
            .unwrap()
            .contains(&first[0])
    })
    .await;
    assert_eq!(spool.read(&kept.id).unwrap(), b"kept\r\n");
    assert_eq!(spool.write_failing(), None, "a write succeeded since");
    spool.stop().await;
    drop(spool);

    let (spool, found) = Spool::open(dir.path()).unwrap();
    // (Compaction copies in no set order: the order they come back in is
    // not the point.)
    assert_eq!(found.len(), 2, "both stay queued");
    let back = found
        .iter()
        .find(|e| e.id == held.id)
        .expect("still queued");
    assert!(back.held, "the release that failed did not happen");
    assert!(
        found.iter().any(|e| e.id == kept.id),
        "the removal that failed did not happen"
    );
    assert_eq!(spool.read(&held.id).unwrap(), b"held\r\n");
    assert_eq!(spool.read(&kept.id).unwrap(), b"kept\r\n");
}

/// walkP: on a full disk the compaction under pressure could not write its
/// copy of the waiting message, said nothing, and the delivered mail behind
/// it stayed for good. It now says so once, with the bytes the copy needs,
/// and frees the space as soon as the copy can be written.
#[tokio::test]
async fn a_compaction_without_room_for_its_copy_says_what_it_needs() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let waiting = envelope(0);
    spool.accept(&waiting, vec![b'w'; 4096]).await.unwrap();
    fill_with_dead_bytes(&spool, 1).await;
    let first = record::list_segments(dir.path()).unwrap();
    // The disk is full: the copy cannot be written.
    spool.shared.fail_writes.store(true, Ordering::Relaxed);
    spool.set_free_floor(u64::MAX / 2);
    eventually("the compaction says it is stuck", || {
        spool.compaction_short_of() > 4096
    })
    .await;
    assert!(
        record::list_segments(dir.path())
            .unwrap()
            .contains(&first[0]),
        "nothing could be freed"
    );
    // Space comes back: the copy is made and the delivered mail goes.
    spool.shared.fail_writes.store(false, Ordering::Relaxed);
    eventually("the delivered mail's segment is gone", || {
        spool.compaction_short_of() == 0
            && !record::list_segments(dir.path())
                .unwrap()
                .contains(&first[0])
    })
    .await;
    assert_eq!(spool.read(&waiting.id).unwrap(), vec![b'w'; 4096]);
}

/// walkP 1: the admission check counted only a declared SIZE, so clients
/// without one could together write the disk past the floor. Room taken
/// for messages being received counts against every later check, and
/// comes back when the reservation goes.
#[tokio::test]
async fn room_held_for_messages_being_received_counts_in_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let available = spool.available().unwrap();
    // A floor that leaves 1 MiB of room, give or take what the disk does
    // meanwhile (other tests write to it too).
    spool.set_free_floor(available.saturating_sub(1 << 20));
    let mut a = spool.reservation();
    let mut b = spool.reservation();
    spool.reserve(&mut a, 256 << 10).unwrap();
    assert_eq!(a.bytes(), 256 << 10);
    // b asks for more than is left beside a's room: refused, nothing taken.
    match spool.reserve(&mut b, 900 << 10) {
        Err(NoRoom::Short(room)) => {
            assert_eq!(room.receiving, (256 + 900) << 10, "{room:?}");
            assert!(room.available < room.kept() + room.receiving, "{room:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(b.bytes(), 0);
    // A check with nothing asked still counts a's room.
    spool.reserve(&mut b, 0).unwrap();
    // a's message was refused: its room goes back, and b gets it.
    a.release();
    assert_eq!(a.bytes(), 0);
    spool.reserve(&mut b, 900 << 10).unwrap();
    drop(b);
    assert_eq!(
        spool
            .shared
            .receiving
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every reservation gave its room back"
    );
    // Past the floor, even nothing is refused.
    spool.set_free_floor(u64::MAX / 2);
    let mut c = spool.reservation();
    assert!(matches!(spool.reserve(&mut c, 0), Err(NoRoom::Short(_))));
}

/// walkP 1: a full disk could not copy its waiting messages forward, so
/// the delivered mail behind them stayed. The admission check keeps room
/// for that copy: the live bytes of the segment that holds the most.
#[tokio::test]
async fn the_room_kept_for_compaction_is_the_largest_segments_live_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.copy_reserve(), 0, "nothing waits, nothing kept");
    let waiting = envelope(0);
    spool
        .accept(&waiting, vec![b'w'; 300 * 1024])
        .await
        .unwrap();
    let one = spool.copy_reserve();
    assert!(
        one > 300 * 1024 && one <= 300 * 1024 + COPY_SLACK + 4096,
        "{one}"
    );
    // Delivered mail does not count; a second waiting message in the same
    // segment does.
    let gone = envelope(1);
    spool.accept(&gone, vec![b'x'; 500 * 1024]).await.unwrap();
    spool.remove(&gone).await.unwrap();
    assert_eq!(spool.copy_reserve(), one);
    let second = envelope(2);
    spool.accept(&second, vec![b'y'; 100 * 1024]).await.unwrap();
    let two = spool.copy_reserve();
    assert!(two > one + 100 * 1024, "{two} vs {one}");
    // An envelope that grows (an attempt recorded) is copied as it is now.
    let mut later = second.clone();
    later.attempts = 7;
    later.rcpts[0].orcpt = Some("rfc822;a-much-longer-original-recipient@example.com".into());
    spool.update(&later).await.unwrap();
    assert!(spool.copy_reserve() > two);
    spool.remove(&later).await.unwrap();
    spool.remove(&waiting).await.unwrap();
    assert_eq!(spool.copy_reserve(), 0);
    // And the admission check keeps it free beside the floor.
    spool.accept(&waiting, vec![b'w'; 1 << 20]).await.unwrap();
    spool.set_free_floor(0);
    let mut r = spool.reservation();
    let room = spool.reserve(&mut r, 0).unwrap();
    assert!(room.copy_reserve > 1 << 20, "{room:?}");
    assert_eq!(room.kept(), room.copy_reserve);
}

/// walkW 1: a stray file named like the next segment (five bytes of
/// text, nothing of ours in it) was refused at start with a note
/// `damaged-N`, and that note then kept every newer segment: on a small
/// disk, delivered mail filled it and new mail was refused. A file with
/// no intact record gives a salvage nothing to put back: it is refused
/// without a note, and the spool keeps nothing for it.
#[tokio::test]
async fn a_stray_file_with_no_record_is_refused_but_pins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        spool.accept(&envelope(1), b"a".to_vec()).await.unwrap();
        spool.stop().await;
    }
    let next = record::list_segments(dir.path()).unwrap().last().unwrap() + 1;
    let stray = record::segment_path(dir.path(), next);
    std::fs::write(&stray, b"junk\n").unwrap();
    match Spool::open(dir.path()) {
        Err(SpoolError::Corrupt { problem, .. }) => assert!(
            problem.contains("nothing in the file reads as a record")
                && problem.contains("the spool keeps no segment for it"),
            "{problem}"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a stray file in the spool is not read as a segment"),
    }
    assert!(
        !record::damaged_note_path(dir.path(), next).exists(),
        "no note: a salvage could put nothing back"
    );
    std::fs::remove_file(&stray).unwrap();
    let (spool, found) = Spool::open(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(spool.damaged_kept(), None);
    // Delivered mail is deleted as usual.
    let before = record::list_segments(dir.path()).unwrap();
    spool.remove(&found[0]).await.unwrap();
    fill_with_dead_bytes(&spool, 2).await;
    eventually("the segments of delivered mail are deleted", || {
        let now = record::list_segments(dir.path()).unwrap();
        before.iter().all(|s| !now.contains(s))
    })
    .await;
}

/// walkW 1: while a note `damaged-N` kept the segments after it, nothing
/// said how much delivered mail it kept, the compaction under pressure
/// copied messages it could not free (and logged that it had freed
/// space), and deleting the note (the doc's way to give the segment up)
/// took effect only at the next restart.
#[tokio::test]
async fn deleting_a_damaged_segments_note_frees_the_segments_after_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (envelope(1), envelope(2));
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        spool.accept(&a, b"message a".to_vec()).await.unwrap();
        spool.accept(&b, b"message b".to_vec()).await.unwrap();
        spool.stop().await;
    }
    {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        spool.remove(&a).await.unwrap();
        spool.stop().await;
    }
    let first = record::list_segments(dir.path()).unwrap()[0];
    let path = record::segment_path(dir.path(), first);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(9).position(|w| w == b"message b").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    assert!(Spool::open(dir.path()).is_err());
    let note = record::damaged_note_path(dir.path(), first);
    assert!(note.exists(), "a segment with intact records gets its note");
    let aside = tempfile::tempdir().unwrap();
    std::fs::rename(&path, aside.path().join("damaged.seg")).unwrap();

    let (spool, _) = Spool::open(dir.path()).unwrap();
    // A waiting message, and delivered mail after the damaged segment.
    let waiting = envelope(3);
    spool.accept(&waiting, vec![b'w'; 4096]).await.unwrap();
    fill_with_dead_bytes(&spool, 4).await;
    eventually("the kept delivered mail is published", || {
        spool
            .damaged_kept()
            .is_some_and(|d| d.segment == first && d.note == note && d.kept_bytes > ROLL_DEAD_AFTER)
    })
    .await;
    // The spool is under pressure (the floor is past the free space):
    // copying the waiting message out of a kept segment frees nothing, so
    // it is not copied, and no room is kept for such a copy.
    let segments = record::list_segments(dir.path()).unwrap();
    spool.set_free_floor(u64::MAX / 4);
    spool.reclaim_soon();
    tokio::time::sleep(MAINTENANCE_INTERVAL * 2).await;
    assert_eq!(
        record::list_segments(dir.path()).unwrap(),
        segments,
        "no segment was started for a copy"
    );
    assert_eq!(spool.copy_reserve(), 0, "no copy to keep room for");
    spool.set_free_floor(0);

    // The operator gives the segment up: no restart needed.
    std::fs::remove_file(&note).unwrap();
    eventually(
        "the segments after the damaged one are deleted again",
        || {
            let now = record::list_segments(dir.path()).unwrap();
            spool.damaged_kept().is_none() && now.len() < segments.len()
        },
    )
    .await;
    assert_eq!(spool.read(&waiting.id).unwrap().len(), 4096);
    spool.stop().await;
}

/// walkW 3: with 1.4 MiB free over a 1 MiB floor a MAIL without SIZE was
/// taken, and every 200 KB message then got 452 at the end of its data,
/// while `mailward status` (which asks about a message of 0 bytes) named
/// no problem. The refusals themselves are kept for status.
#[tokio::test]
async fn refusals_at_the_end_of_data_are_kept_for_status() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.space_refusals(60), None);
    let available = spool.available().unwrap();
    spool.set_free_floor(available.saturating_sub(100 << 10));
    // A MAIL without SIZE finds room ...
    let mut r = spool.reservation();
    spool.reserve(&mut r, 0).unwrap();
    // ... its data does not (a chunk at a time, as the session takes it).
    spool.reserve(&mut r, 64 << 10).unwrap();
    assert!(matches!(
        spool.reserve(&mut r, 64 << 10),
        Err(NoRoom::Short(_))
    ));
    let seen = spool.space_refusals(60).expect("the refusal is kept");
    assert_eq!(seen.count, 1);
    assert_eq!(seen.wanted, 128 << 10, "what the message had asked for");
    assert!(seen.left < 128 << 10, "{seen:?}");
    assert!(seen.last_at >= chrono::Utc::now().timestamp() - 5);
    // Out of the window, it is no longer said.
    assert_eq!(spool.space_refusals(-5), None);
}

/// walkAE 3: a delivery whose removal could not be written (read-only or
/// full disk) is delivered again after a restart, a clean stop too; the
/// spool names those messages while their segment is on disk.
#[tokio::test]
async fn removals_that_could_not_be_written_are_named_until_their_segment_goes() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let delivered = envelope(1);
    spool.accept(&delivered, b"one\r\n".to_vec()).await.unwrap();
    let other = envelope(2);
    spool.accept(&other, b"two\r\n".to_vec()).await.unwrap();
    assert!(spool.unrecorded_done().is_empty());
    spool.shared.fail_writes.store(true, Ordering::Relaxed);
    assert!(spool.remove(&delivered).await.is_err());
    spool.shared.fail_writes.store(false, Ordering::Relaxed);
    assert_eq!(spool.unrecorded_done(), vec![delivered.id.clone()]);
    spool.stop().await;
    drop(spool);
    let (_, recovered) = Spool::open(dir.path()).unwrap();
    assert!(
        recovered.iter().any(|e| e.id == delivered.id),
        "the restart has it again, as the stop said"
    );
}

/// walkAU F1: the open segment deleted under a running gateway (a cleanup
/// job, an operator). New mail was acknowledged into the unlinked file and
/// gone at the next restart; now the next commit goes to a new segment,
/// and what was acknowledged before is copied there from the open file.
#[tokio::test]
async fn a_deleted_open_segment_is_replaced_before_anything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let before = envelope(1);
    spool.accept(&before, b"before\r\n".to_vec()).await.unwrap();
    let open = record::list_segments(dir.path()).unwrap();
    assert_eq!(open.len(), 1);
    std::fs::remove_file(record::segment_path(dir.path(), open[0])).unwrap();
    // A delivery reading it before the writer notices (CI: within the
    // same millisecond) reads it from the open file: no read error, no
    // "lost" ERROR for mail that is about to be saved.
    assert_eq!(spool.read(&before.id).unwrap(), b"before\r\n");
    assert_eq!(spool.read_errors(), 0);
    assert!(spool.lost_segments().is_empty());

    let after = envelope(2);
    spool.accept(&after, b"after\r\n".to_vec()).await.unwrap();
    let now = record::list_segments(dir.path()).unwrap();
    assert!(!now.contains(&open[0]), "{now:?}");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(spool.read(&after.id).unwrap(), b"after\r\n");
    assert_eq!(spool.read(&before.id).unwrap(), b"before\r\n");
    assert_eq!(spool.read_errors(), 0);
    assert!(spool.lost_segments().is_empty());

    // And a restart has both: nothing acknowledged lived only in the
    // unlinked file.
    spool.stop().await;
    drop(spool);
    let (_, recovered) = Spool::open(dir.path()).unwrap();
    let ids: Vec<_> = recovered.iter().map(|e| e.id.clone()).collect();
    assert!(
        ids.contains(&before.id) && ids.contains(&after.id),
        "{ids:?}"
    );
}

/// walkAU F1: without new mail, the writer's round notices the deleted
/// segment within a second and saves its waiting messages.
#[tokio::test]
async fn an_idle_spool_saves_the_messages_of_its_deleted_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let waiting = envelope(1);
    spool
        .accept(&waiting, b"waiting\r\n".to_vec())
        .await
        .unwrap();
    let open = record::list_segments(dir.path()).unwrap();
    std::fs::remove_file(record::segment_path(dir.path(), open[0])).unwrap();
    eventually("the waiting message is copied to a new segment", || {
        let now = record::list_segments(dir.path()).unwrap_or_default();
        !now.is_empty() && !now.contains(&open[0])
    })
    .await;
    assert_eq!(spool.read(&waiting.id).unwrap(), b"waiting\r\n");
    spool.stop().await;
    drop(spool);
    let (_, recovered) = Spool::open(dir.path()).unwrap();
    assert!(recovered.iter().any(|e| e.id == waiting.id));
}

/// walkAU F1: the spool directory renamed away under a running gateway:
/// new mail was acknowledged into the moved files. Now it is refused
/// (the session answers 451), `mailward status` says why, and the spool
/// writes again once the directory is back.
#[tokio::test]
async fn nothing_is_acknowledged_while_the_spool_directory_is_moved_away() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("spool");
    let moved = top.path().join("spool.moved");
    let (spool, _) = Spool::open(&dir).unwrap();
    let first = envelope(1);
    spool.accept(&first, b"first\r\n".to_vec()).await.unwrap();

    std::fs::rename(&dir, &moved).unwrap();
    let refused = envelope(2);
    let e = spool
        .accept(&refused, b"refused\r\n".to_vec())
        .await
        .expect_err("written where no restart reads it");
    assert!(e.to_string().contains("is gone while mailward ran"), "{e}");
    let (_, why) = spool
        .write_failing()
        .expect("status says the spool cannot write");
    assert!(why.contains("spool directory"), "{why}");
    // Another directory of the same name is not the spool either.
    std::fs::create_dir(&dir).unwrap();
    assert!(spool.accept(&envelope(3), b"x\r\n".to_vec()).await.is_err());
    std::fs::remove_dir(&dir).unwrap();

    std::fs::rename(&moved, &dir).unwrap();
    let third = envelope(4);
    spool.accept(&third, b"third\r\n".to_vec()).await.unwrap();
    assert_eq!(spool.write_failing(), None);
    spool.stop().await;
    drop(spool);
    let (_, recovered) = Spool::open(&dir).unwrap();
    let ids: Vec<_> = recovered.iter().map(|e| e.id.clone()).collect();
    assert!(
        ids.contains(&first.id) && ids.contains(&third.id),
        "{ids:?}"
    );
    assert!(!ids.contains(&refused.id), "{ids:?}");
}

/// walkAU F1: an older segment deleted while a message waits in it: that
/// message is lost, and the spool says so (once, with its queue ID) and
/// counts the failed reads, instead of a delivery deferring it forever.
#[tokio::test]
async fn a_deleted_older_segment_is_reported_as_lost_mail() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let lost = envelope(1);
    spool.accept(&lost, b"lost\r\n".to_vec()).await.unwrap();
    spool.stop().await;
    drop(spool);
    // The restart writes to a new segment; the old one holds the message.
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let segs = record::list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 2, "{segs:?}");
    std::fs::remove_file(record::segment_path(dir.path(), segs[0])).unwrap();
    assert!(spool.read(&lost.id).is_err());
    assert_eq!(spool.read_errors(), 1);
    assert_eq!(spool.lost_segments(), vec![(segs[0], 1)]);
}

/// walkAU F12: a spool write that does not complete (a frozen disk) is
/// visible while it lasts.
#[tokio::test]
async fn a_stalled_write_is_visible_while_it_lasts() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.write_stalled_for(), None);
    // As the writer publishes a write that started 7 s ago.
    let started = chrono::Utc::now().timestamp_millis() - 7_000;
    spool
        .shared
        .write_started_ms
        .store(started, Ordering::Relaxed);
    assert_eq!(spool.write_stalled_for(), Some(7));
    eventually("the ticker said the stall", || {
        spool.shared.stall_warned.load(Ordering::Relaxed)
    })
    .await;
    spool.shared.write_started_ms.store(0, Ordering::Relaxed);
    assert_eq!(spool.write_stalled_for(), None);
}

/// walkAU F1: a start after a segment was deleted by someone else said
/// only "The queue is empty.": mail that got 250 was gone without a trace.
/// A segment missing between the oldest and the newest is now named.
#[tokio::test]
async fn a_start_names_a_segment_deleted_between_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        // Each start writes to a new segment: one message in each.
        let (spool, _) = Spool::open(dir.path()).unwrap();
        let e = envelope(n);
        spool.accept(&e, b"m\r\n".to_vec()).await.unwrap();
        ids.push(e.id);
        spool.stop().await;
    }
    let segs = record::list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 3, "{segs:?}");
    std::fs::remove_file(record::segment_path(dir.path(), segs[1])).unwrap();
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    let back: Vec<_> = recovered.iter().map(|e| e.id.clone()).collect();
    assert_eq!(back, vec![ids[0].clone(), ids[2].clone()]);
    assert_eq!(spool.lost_segments(), vec![(segs[1], 0)]);
    // A spool without holes names none.
    spool.stop().await;
    drop(spool);
    let clean = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(clean.path()).unwrap();
    assert!(spool.lost_segments().is_empty());
}

/// walkAU F8: a spool directory that refuses a new segment for another
/// reason than its owner (here immutable) was told to `chown -R` to the
/// owner it had, and `mailward status` had nothing to say. The failure is
/// kept for status, with the hint that fits, until a segment starts.
#[tokio::test]
async fn a_new_segment_refused_by_an_immutable_directory_is_kept_for_status() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("spool");
    let (spool, _) = Spool::open(&dir).unwrap();
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !nix::unistd::geteuid().is_root() || !chattr("+i") {
        eprintln!("skipped: needs root and a file system with chattr +i");
        return;
    }
    // Dead bytes past ROLL_DEAD_AFTER: the round wants a new segment.
    fill_with_dead_bytes(&spool, 1).await;
    eventually("the refused rotation is kept for status", || {
        spool.rotate_failing().is_some()
    })
    .await;
    let (since, error) = spool.rotate_failing().unwrap();
    assert!(since > 0);
    assert!(chattr("-i"), "chattr -i");
    assert!(
        error.contains("lsattr -d") && !error.contains("chown"),
        "{error}"
    );
    eventually("a segment starts again", || {
        spool.rotate_failing().is_none()
    })
    .await;
}
