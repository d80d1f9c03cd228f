//! "Formal" mail (`as/formal`): automatically generated messages that are
//! not spam, in the sense of Kaspersky's anti-spam: delivery status
//! notifications (RFC 3464), read receipts (RFC 8098), auto-replies marked
//! `Auto-Submitted` (RFC 3834) and vacation replies. A policy can treat
//! them apart (deliver them unmarked, or keep them from some groups).
//! Spam that dresses as a bounce still scores as spam: formal only applies
//! below the probable threshold.

use mail_parser::{Message, MimeHeaders};

/// Subject marks that vacation programs put in front of the subject
/// (several languages). A mark counts only when it is the subject or is
/// followed by its colon (`Out of Office: ...`, `Auto: ...` as RFC 5230
/// vacation writes it): "Vacation request approved" or "Out of office
/// hours support rota" is a person's mail (walkBW 7). And only on a reply
/// (see [`formal`]): "Out of office: can you cover for me?" is one too
/// (walkBX N3).
const VACATION_SUBJECTS: &[&str] = &[
    "out of office autoreply",
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto",
    "vacation",
    "abwesenheitsnotiz",
    "automatische antwort",
    "absence du bureau",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "resposta automática",
    "automatisch antwoord",
    "automatiskt svar",
    "automatisk svar",
    "automatisk besked",
    "frånvaromeddelande",
    "fraværsmelding",
    "odpowiedź automatyczna",
    "automaattinen vastaus",
    "автоматический ответ",
    "自动回复",
    "自動回覆",
    "自動応答",
    "自動返信",
];

/// Whether the header `name` is there and does not say no (`X-Autoreply:
/// no` is no auto-reply, walkBX N4).
fn says_yes(h: &Message<'_>, name: &str) -> bool {
    h.header_raw(name).is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !(v.starts_with("no") || v == "false" || v == "0" || v == "off")
    })
}

/// Whether the message is a reply, as an auto-reply is: it names the
/// message it answers, or says it is automatic by `Precedence` (not
/// `list`: a person's post to a mailing list carries it, walkBY 1), or
/// comes from the null sender (`null_sender`: `MAIL FROM:<>`, or a
/// delivered copy's `Return-Path: <>`). Exchange's
/// `X-Auto-Response-Suppress` on a message whose subject carries the
/// mark counts too (it sets it on its own replies).
fn looks_like_a_reply(h: &Message<'_>, null_sender: bool) -> bool {
    null_sender
        || h.header_raw("in-reply-to").is_some()
        || h.header_raw("references").is_some()
        || h.header_raw("x-auto-response-suppress").is_some()
        || h.header_raw("precedence").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "bulk" | "junk" | "auto_reply" | "auto-reply"
            )
        })
        || h.header_raw("return-path")
            .is_some_and(|v| v.trim().trim_matches(['<', '>']).trim().is_empty())
}

/// Whether `subject` (lower case) starts with a vacation program's mark.
fn vacation_subject(subject: &str) -> bool {
    VACATION_SUBJECTS.iter().any(|mark| {
        subject.strip_prefix(mark).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.is_empty() || rest.starts_with(':')
        })
    })
}

/// Why a message is formal, or None; `null_sender`: it came with
/// `MAIL FROM:<>`.
pub fn formal(
    headers: Option<&Message<'_>>,
    body: Option<&Message<'_>>,
    null_sender: bool,
) -> Option<&'static str> {
    if let Some(m) = body {
        for part in &m.parts {
            let Some(ct) = part.content_type() else {
                continue;
            };
            let (t, sub) = (ct.ctype(), ct.subtype().unwrap_or_default());
            if t.eq_ignore_ascii_case("multipart") && sub.eq_ignore_ascii_case("report") {
                match ct
                    .attribute("report-type")
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("delivery-status") => return Some("delivery status notification"),
                    Some("disposition-notification") => return Some("read receipt"),
                    _ => {}
                }
            }
            if t.eq_ignore_ascii_case("message") {
                if sub.eq_ignore_ascii_case("delivery-status")
                    || sub.eq_ignore_ascii_case("global-delivery-status")
                {
                    return Some("delivery status notification");
                }
                if sub.eq_ignore_ascii_case("disposition-notification") {
                    return Some("read receipt");
                }
            }
        }
    }
    let h = headers?;
    if let Some(v) = h.header_raw("auto-submitted") {
        let v = v.trim().to_ascii_lowercase();
        if !v.starts_with("no") {
            return Some("Auto-Submitted");
        }
    }
    // (Not X-Auto-Response-Suppress alone: a sender asks with it that
    // no auto-reply be sent, on ordinary mail such as meeting
    // invitations.)
    if says_yes(h, "x-autoreply") || says_yes(h, "x-autorespond") {
        return Some("vacation reply");
    }
    if let Some(s) = super::rules::first_subject(h) {
        if vacation_subject(&s.trim().to_lowercase()) && looks_like_a_reply(h, null_sender) {
            return Some("vacation reply");
        }
    }
    None
}
