//! Carrying out a verdict for a message the MTA keeps (milter mode,
//! docs/postfix.md). The checks and the plans are the same as for SMTP;
//! what differs is who holds the message: the MTA queues and delivers it,
//! so the plans become what the milter protocol can say at end of message.
//!
//! - Every group refuses: the MTA is told to reject with our reply (the
//!   client sees 550 5.7.1, nothing is queued anywhere).
//! - A group that blocks: its recipients are deleted from the message; when
//!   no group delivers, the message is discarded (accepted, never
//!   delivered: `block`).
//! - Quarantine: our store keeps the copy, as for SMTP, and that is all:
//!   a copy alone does not stop delivery, in both modes (`block` does).
//!   The MTA is not asked to quarantine too (Postfix's hold queue): that
//!   would stop mail the plan delivers, and leave two copies whose two
//!   releases deliver the message twice (walkH).
//! - The delivered copy: the verdict headers go on top, and the subject
//!   mark and part edits become header changes and a new body. The MTA
//!   delivers one copy to every remaining recipient, so when delivered
//!   groups' plans change the message differently, the first group whose
//!   plan changes it gives the copy (the safer one: parts removed), and a
//!   log line says so.
//! - Archive copies and notifications are ours, as for SMTP.
//!
//! A store or spool that cannot be written makes the answer a temporary
//! failure: the MTA keeps the message and its client tries again.

use super::execute;
use super::plan::Delivery;
use super::verdict::Verdict;
use crate::envelope::Envelope;
use crate::gateway::Gateway;
use std::collections::HashMap;
use std::sync::Arc;

/// One modification the MTA is asked for, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert a header field at `index` (0: on top).
    InsertHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
    AddHeader {
        name: String,
        value: Vec<u8>,
    },
    /// Change the `index`th (from 1) field called `name`; "" deletes it.
    /// Values are the message's octets: a header in Latin-1 keeps its
    /// bytes, as in SMTP mode (walkBA F1: a marked Subject's 0xE9 went to
    /// the MTA as U+FFFD).
    ChangeHeader {
        name: String,
        index: u32,
        value: Vec<u8>,
    },
    ReplaceBody(Vec<u8>),
    DeleteRcpt(String),
}

/// What the MTA is told at end of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accept, after these changes.
    Accept(Vec<Change>),
    /// Reject with this reply.
    Reject(String),
    /// Temporary failure with this reply.
    TempFail(String),
    /// Accept and never deliver, after these changes (every group blocks).
    Discard(Vec<Change>),
}

const NOT_NOW: &str = "451 4.3.0 Local error writing the message, try again later";

/// Carries out `verdict` for the message `env` (bytes `raw`, never
/// spooled). `leading_space`: header values go to the MTA with their
/// leading white space (SMFIP_HDR_LEADSPC was agreed).
pub async fn carry_out(
    gw: &Gateway,
    env: &Envelope,
    raw: Arc<Vec<u8>>,
    mut verdict: Verdict,
    leading_space: bool,
) -> Outcome {
    if let Some(reply) = execute::refusal(&verdict) {
        execute::refused(gw, env, &verdict, &reply);
        return Outcome::Reject(reply);
    }
    let cfg = gw.config();
    // The copies are written before "Message accepted.": a message
    // answered 451 because one cannot be written was not accepted. They
    // are told (logged, counted) after it and the verdict that made them,
    // as in SMTP mode (walkAP F3: "Message copied to quarantine." came
    // first on the milter path).
    let (copies, kept) = execute::write_copies_unlogged(gw, &cfg, env, &raw, &verdict, true).await;
    if copies.is_err() {
        kept.emit(gw);
        execute::not_accepted(env, &verdict);
        return Outcome::TempFail(NOT_NOW.into());
    }
    execute::accept(env, &mut verdict, true);
    kept.emit(gw);
    let mut records = Vec::new();
    let notices = execute::compose_notifications(&cfg, env, &raw, &verdict, &mut records);
    if !records.is_empty() {
        if let Err(e) = gw.spool.commit(records).await {
            tracing::error!(target: "policy", queue_id = %env.id, error = %e,
                "Cannot spool the notifications.");
            return Outcome::TempFail(NOT_NOW.into());
        }
    }
    execute::count_accepted(gw, env, &verdict);
    execute::queue_notifications(gw, env, notices);

    let mut changes = Vec::new();
    let delivered: Vec<_> = verdict
        .groups
        .iter()
        .filter(|j| j.plan.delivery == Delivery::Deliver)
        .collect();
    for (n, j) in verdict
        .groups
        .iter()
        .filter(|j| j.plan.delivery != Delivery::Deliver)
        .enumerate()
    {
        execute::blocked_for(gw, env, j, n == 0);
        if !delivered.is_empty() {
            for &i in &j.partition.rcpts {
                if let Some(r) = env.rcpts.get(i) {
                    changes.push(Change::DeleteRcpt(format!("<{}>", r.address)));
                }
            }
        }
    }
    let Some(first) = delivered.first() else {
        return Outcome::Discard(changes);
    };
    // The copy: the first delivered group whose plan changes the message.
    let chosen = delivered
        .iter()
        .find(|j| j.bytes.is_some())
        .unwrap_or(first);
    if delivered
        .iter()
        .any(|j| j.bytes != chosen.bytes || j.plan.headers != chosen.plan.headers)
    {
        tracing::warn!(target: "policy", queue_id = %env.id, group = %chosen.partition.label(),
            "Policy groups would change this message differently; the MTA delivers one copy, so every recipient gets this group's.");
    }
    // Verdict headers the message came with are deleted before ours go
    // on top (so that no position can name ours).
    if let Some(clean) = super::verdict_headers::strip(&raw, &cfg.server.authserv_id) {
        super::verdict_headers::note_foreign(&gw.stats, &env.id, &raw, &cfg.server.authserv_id);
        changes.extend(differences(&raw, &clean, leading_space));
    }
    for (index, (name, value)) in fields(chosen.plan.headers.as_bytes())
        .into_iter()
        .enumerate()
    {
        changes.push(Change::InsertHeader {
            index: index as u32,
            name,
            value: milter_value(&value, leading_space),
        });
    }
    if let Some(new) = &chosen.bytes {
        changes.extend(differences(&raw, new, leading_space));
    }
    Outcome::Accept(changes)
}

/// The header block and the body of a message.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    let end = crate::text::HeaderEnd::of(message);
    (&message[..end.header], &message[end.body()..])
}

/// The header fields of a header block: name and raw value (everything
/// after the colon, folding included, without the final CRLF).
fn fields(block: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some((_, v)) = out.last_mut() {
                v.extend_from_slice(b"\r\n");
                v.extend_from_slice(line);
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon])
                .trim_end()
                .to_string();
            out.push((name, line[colon + 1..].to_vec()));
        }
    }
    out
}

/// A raw value as the milter protocol carries it: folding with LF (as the
/// MTA keeps headers), and without the leading white space unless the MTA
/// agreed to see it (SMFIP_HDR_LEADSPC).
fn milter_value(raw: &[u8], leading_space: bool) -> Vec<u8> {
    let start = if leading_space {
        0
    } else {
        raw.iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(raw.len())
    };
    let mut out = Vec::with_capacity(raw.len() - start);
    let mut bytes = raw[start..].iter().peekable();
    while let Some(&b) = bytes.next() {
        // CRLF folding as LF; a lone CR stays.
        if b == b'\r' && bytes.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// The changes that turn message `old` into `new`: header fields changed,
/// deleted or added (by name and position among fields of that name), and
/// the body when it differs. Deletions of one name go from the last, so
/// that earlier positions stay valid.
pub fn differences(old: &[u8], new: &[u8], leading_space: bool) -> Vec<Change> {
    let (old_head, old_body) = split(old);
    let (new_head, new_body) = split(new);
    let (old_fields, new_fields) = (fields(old_head), fields(new_head));
    // The fields grouped by name (without regard to case), the names in
    // the order first seen: one pass, since a header of many distinct
    // names made the per-name filtering quadratic (100,000 names, 10^10
    // steps for one message).
    let mut names: Vec<&str> = Vec::new();
    let mut groups: HashMap<String, [Vec<&[u8]>; 2]> = HashMap::new();
    for (side, list) in [&old_fields, &new_fields].into_iter().enumerate() {
        for (n, v) in list {
            let group = groups.entry(n.to_ascii_lowercase()).or_insert_with(|| {
                names.push(n);
                Default::default()
            });
            group[side].push(v);
        }
    }
    let mut out = Vec::new();
    for name in names {
        let Some([o, n]) = groups.get(&name.to_ascii_lowercase()) else {
            continue;
        };
        for (i, (a, b)) in o.iter().zip(n.iter()).enumerate() {
            if a != b {
                out.push(Change::ChangeHeader {
                    name: name.to_string(),
                    index: i as u32 + 1,
                    value: milter_value(b, leading_space),
                });
            }
        }
        for i in (n.len()..o.len()).rev() {
            out.push(Change::ChangeHeader {
                name: name.to_string(),
                index: i as u32 + 1,
                value: Vec::new(),
            });
        }
        for b in n.iter().skip(o.len()) {
            out.push(Change::AddHeader {
                name: name.to_string(),
                value: milter_value(b, leading_space),
            });
        }
    }
    if old_body != new_body {
        out.push(Change::ReplaceBody(new_body.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &[u8] = b"From: a@b.test\r\nSubject: Hello\r\n\tworld\r\nContent-Type: multipart/mixed; boundary=x\r\nX-One: 1\r\nX-One: 2\r\n\r\nbody\r\n";

    #[test]
    fn a_header_of_many_distinct_names_gives_just_the_one_change() {
        // 20,000 names, each once, then our verdict header added: one
        // AddHeader, and the same case-blind grouping as before (X-N-7
        // and x-n-7 are one name).
        let mut old = String::new();
        for n in 0..20_000 {
            old.push_str(&format!("X-N-{n}: {n}\r\n"));
        }
        let new = format!("{old}x-n-7: 7\r\nX-Mailward-AV: clean\r\n\r\nbody\r\n");
        let old = format!("{old}\r\nbody\r\n");
        assert_eq!(
            differences(old.as_bytes(), new.as_bytes(), true),
            vec![
                Change::AddHeader {
                    name: "X-N-7".into(),
                    value: " 7".into()
                },
                Change::AddHeader {
                    name: "X-Mailward-AV".into(),
                    value: " clean".into()
                },
            ]
        );
    }

    #[test]
    fn unchanged_message_needs_nothing() {
        assert!(differences(OLD, OLD, true).is_empty());
    }

    #[test]
    fn a_subject_mark_changes_the_first_subject_keeping_its_folding() {
        let new = b"From: a@b.test\r\nSubject: [VIRUS] Hello\r\n\tworld\r\nContent-Type: multipart/mixed; boundary=x\r\nX-One: 1\r\nX-One: 2\r\n\r\nbody\r\n";
        assert_eq!(
            differences(OLD, new, true),
            vec![Change::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: " [VIRUS] Hello\n\tworld".into()
            }]
        );
        assert_eq!(
            differences(OLD, new, false),
            vec![Change::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: "[VIRUS] Hello\n\tworld".into()
            }]
        );
    }

    /// walkBA F1: a marked Subject in Latin-1 keeps its octets (0xE9 went
    /// to the MTA as U+FFFD, EF BF BD).
    #[test]
    fn a_marked_subject_keeps_its_octets() {
        let old = b"Subject: caf\xe9\r\n\r\nbody\r\n";
        let new = b"Subject: [!!SPAM] caf\xe9\r\n\r\nbody\r\n";
        assert_eq!(
            differences(old, new, false),
            vec![Change::ChangeHeader {
                name: "Subject".into(),
                index: 1,
                value: b"[!!SPAM] caf\xe9".to_vec()
            }]
        );
        // A lone CR is no folding and stays.
        assert_eq!(milter_value(b" a\rb\r\n\tc", false), b"a\rb\n\tc");
        assert_eq!(milter_value(b" \t ", false), b"");
    }

    #[test]
    fn removed_fields_are_deleted_from_the_last_and_new_ones_added() {
        let new = b"From: a@b.test\r\nSubject: Hello\r\n\tworld\r\nContent-Type: text/plain\r\nX-Two: new\r\n\r\nnotice\r\n";
        assert_eq!(
            differences(OLD, new, false),
            vec![
                Change::ChangeHeader {
                    name: "Content-Type".into(),
                    index: 1,
                    value: "text/plain".into()
                },
                Change::ChangeHeader {
                    name: "X-One".into(),
                    index: 2,
                    value: Vec::new()
                },
                Change::ChangeHeader {
                    name: "X-One".into(),
                    index: 1,
                    value: Vec::new()
                },
                Change::AddHeader {
                    name: "X-Two".into(),
                    value: "new".into()
                },
                Change::ReplaceBody(b"notice\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn a_message_without_a_body_splits_cleanly() {
        assert_eq!(split(b"A: b\r\n"), (&b"A: b\r\n"[..], &b""[..]));
        assert_eq!(split(b"\r\nbody"), (&b""[..], &b"body"[..]));
        assert_eq!(split(b"A: b\r\n\r\n"), (&b"A: b\r\n"[..], &b""[..]));
    }

    #[test]
    fn verdict_header_lines_become_fields() {
        let f =
            fields(b"X-Mailward-AV: infected; Eicar\r\nX-Mailward-Spam: as/clean;\r\n score=0\r\n");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, "X-Mailward-AV");
        assert_eq!(milter_value(&f[1].1, false), b"as/clean;\n score=0");
    }
}
