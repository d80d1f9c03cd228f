//! What `mailward queue salvage` prints: what it read, what it skipped,
//! and which messages come back, leave or are lost, so that the operator
//! can tell the senders of the lost ones.

use crate::envelope::Envelope;
use crate::spool::salvage::Salvage;
use crate::spool::RecordKind;
use std::fmt::Write;

/// The report, as text for a terminal.
pub fn render(s: &Salvage) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Read {} as segment {} ({}): {} intact record(s): {} accepted, {} updated, {} removed.",
        s.source.display(),
        s.segment,
        super::status::bytes(s.source_bytes),
        s.accepted + s.updated + s.removed,
        s.accepted,
        s.updated,
        s.removed
    );
    if s.damage.is_empty() {
        let _ = writeln!(out, "No damaged record in it.");
    } else {
        let skipped: u64 = s.damage.iter().map(|d| d.len).sum();
        let _ = writeln!(
            out,
            "Skipped {} damaged stretch(es), {} byte(s) in all:",
            s.damage.len(),
            skipped
        );
        for d in &s.damage {
            let about = match &d.about {
                Some((kind, e)) => format!(
                    " (the {} record of {} from {})",
                    kind_name(*kind),
                    e.id,
                    sender(e)
                ),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  offset {}, {} byte(s): {}{about}",
                d.offset, d.len, d.problem
            );
        }
    }
    if let Some(note) = &s.given_up {
        let _ = writeln!(
            out,
            "Nothing in it can be put back: the messages recorded only in it are lost."
        );
        if s.dry_run {
            let _ = writeln!(
                out,
                "Dry run: nothing changed. Without --dry-run, its note {} is removed, so that the spool deletes the segments after segment {} again (it keeps them for a salvage while the note is there).",
                note.display(),
                s.segment
            );
        } else {
            let _ = writeln!(
                out,
                "Removed its note {}: the spool deletes the segments after segment {} again (it kept them for a salvage while the note was there).",
                note.display(),
                s.segment
            );
            let _ = writeln!(
                out,
                "Next: start the gateway. {} is no longer needed by the spool.",
                s.source.display()
            );
        }
        return out;
    }
    match &s.written {
        Some(path) => {
            let _ = writeln!(out, "Wrote {}.", path.display());
        }
        None => {
            let _ = writeln!(out, "Dry run: nothing written.");
        }
    }
    let _ = writeln!(
        out,
        "Queue: {} message(s) before, {} after.",
        s.queued_before, s.queued_after
    );
    section(
        &mut out,
        "Back in the queue",
        "delivered at the next start like any queued message",
        &s.back,
    );
    section(
        &mut out,
        "Leaving the queue",
        "the file records that they were delivered or removed; without it they would be sent again",
        &s.gone,
    );
    lost(&mut out, s);
    if s.written.is_some() {
        let _ = writeln!(
            out,
            "Next: start the gateway (`mailward queue list` shows them); keep {} until they are delivered.",
            s.source.display()
        );
    } else {
        let _ = writeln!(
            out,
            "Run it again without --dry-run to write the repaired segment."
        );
    }
    out
}

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Accepted => "accepted",
        RecordKind::Updated => "updated",
        RecordKind::Removed => "removed",
    }
}

fn sender(e: &Envelope) -> &str {
    if e.mail_from.is_empty() {
        "<>"
    } else {
        &e.mail_from
    }
}

fn section(out: &mut String, title: &str, why: &str, list: &[Envelope]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}: {} message(s) ({why}):", list.len());
    for e in list {
        line(out, e);
    }
}

/// The messages lost in the damage: those whose damaged record still shows
/// their envelope, then those whose accepted record is unreadable, named
/// by what their later updated records in the file say.
fn lost(out: &mut String, s: &Salvage) {
    let count = s.lost.len() + s.lost_accepted.len();
    if count == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "Lost in the damage: {count} message(s) (their bytes cannot be trusted; tell their senders):"
    );
    for e in &s.lost {
        line(out, e);
    }
    for e in &s.lost_accepted {
        let rcpts: Vec<&str> = e.rcpts.iter().map(|r| r.address.as_str()).collect();
        let _ = writeln!(
            out,
            "  {}  (its accepted record is damaged: sender and recipients unreadable there; \
             its last intact update says {} -> {}; grep the log for {})",
            e.id,
            sender(e),
            rcpts.join(", "),
            e.id
        );
    }
}

fn line(out: &mut String, e: &Envelope) {
    let rcpts: Vec<&str> = e.rcpts.iter().map(|r| r.address.as_str()).collect();
    let _ = writeln!(
        out,
        "  {}  {:>9}  {} -> {}",
        e.id,
        e.size,
        sender(e),
        rcpts.join(", ")
    );
}
