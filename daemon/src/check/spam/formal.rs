//! "Formal" mail (`as/formal`): automatically generated messages that are
//! not spam, in the sense of Kaspersky's anti-spam: delivery status
//! notifications (RFC 3464), read receipts (RFC 8098), auto-replies marked
//! `Auto-Submitted` (RFC 3834) and vacation replies. A policy can treat
//! them apart (deliver them unmarked, or keep them from some groups).
//! Spam that dresses as a bounce still scores as spam: formal only applies
//! below the probable threshold. Formal is a label of form, not a proof of
//! origin: anyone can write `Auto-Submitted` or a `multipart/report`.

use mail_parser::{Message, MimeHeaders, PartType};

/// Subject marks that vacation programs put in front of the subject
/// (several languages). A mark counts only when it is the subject or is
/// followed by its colon (`Out of Office: ...`, `Auto: ...` as RFC 5230
/// vacation writes it): "Vacation request approved" or "Out of office
/// hours support rota" is a person's mail (walkBW 7). And only on a
/// message sent automatically (see [`sent_automatically`]): "Out of
/// office: can you cover for me?" is one too (walkBX N3), and so is a
/// person's reply titled "Vacation: the December rota is final" (walkCA
/// F3).
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
    "afwezig",
    "absent du bureau",
    "automatická odpověď",
    "automatikus válasz",
    "otomatik yanıt",
    "otomatik cevap",
    "자동 회신",
    "자동 응답",
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

/// Whether the message comes from the null sender, as RFC 3834 and RFC
/// 5321 want automatic replies sent. `envelope`: at the gateway, whether
/// it came with `MAIL FROM:<>`, which alone counts there (a
/// `Return-Path` in the message is the sender's to write, walkCC F2);
/// none for a file (`spam check`), whose delivered copy's topmost
/// `Return-Path: <>` says it.
fn from_null_sender(h: &Message<'_>, envelope: Option<bool>) -> bool {
    envelope.unwrap_or_else(|| {
        h.headers_raw()
            .find(|(name, _)| name.eq_ignore_ascii_case("return-path"))
            .is_some_and(|(_, v)| v.trim().trim_matches(['<', '>']).trim().is_empty())
    })
}

/// The message's `Precedence`, in lower case.
fn precedence(h: &Message<'_>) -> Option<String> {
    h.header_raw("precedence")
        .map(|v| v.trim().to_ascii_lowercase())
}

/// Whether the message was sent by a program, as an auto-reply without
/// `Auto-Submitted` is (vacation(1), Exchange 2003): from the null sender,
/// or with `Precedence: auto_reply`, which only responders write. Not by
/// `In-Reply-To` or `References`, which every person's reply carries
/// (walkCA F3), nor by Exchange's `X-Auto-Response-Suppress`, which
/// Outlook puts on meeting invitations (walkCA F2: one titled "Out of
/// Office" was formal), nor by `Precedence: bulk` or `junk` alone, which
/// newsletters and some mailing lists put on every post (walkCA F1, walkCC
/// F1), nor `list`, a person's post to a mailing list (walkBY 1).
fn sent_automatically(h: &Message<'_>, envelope: Option<bool>) -> bool {
    from_null_sender(h, envelope)
        || matches!(precedence(h).as_deref(), Some("auto_reply" | "auto-reply"))
}

/// Whether `subject` (lower case) starts with a vacation program's mark.
fn vacation_subject(subject: &str) -> bool {
    VACATION_SUBJECTS.iter().any(|mark| {
        subject.strip_prefix(mark).is_some_and(|rest| {
            let rest = rest.trim_start();
            // The full-width colon is the one Chinese and Japanese text
            // writes (walkCA F6).
            rest.is_empty() || rest.starts_with(':') || rest.starts_with('\u{ff1a}')
        })
    })
}

/// Why a message is formal, or None; `envelope`: at the gateway, whether
/// it came with `MAIL FROM:<>` (none: a file, see [`from_null_sender`]).
pub fn formal(
    headers: Option<&Message<'_>>,
    body: Option<&Message<'_>>,
    envelope: Option<bool>,
) -> Option<&'static str> {
    if let Some(report) = body.and_then(report) {
        return Some(report);
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
        if vacation_subject(&s.trim().to_lowercase()) && sent_automatically(h, envelope) {
            return Some("vacation reply");
        }
    }
    // The null sender and a responder's Precedence without a mark:
    // vacation(1)'s own reply ("away from my mail", walkCA F7), or other
    // mail a program sent (a cron job's), so not called a vacation reply
    // (walkCC F4).
    if from_null_sender(h, envelope)
        && matches!(
            precedence(h).as_deref(),
            Some("junk" | "bulk" | "auto_reply" | "auto-reply")
        )
    {
        return Some("null sender and Precedence");
    }
    None
}

/// What the message reports, when it is a report (RFC 6522): the message
/// itself is a `multipart/report` (a person's mail with a delivery status
/// attached is none, walkCA F4), of a `report-type` of delivery status
/// (RFC 3464, RFC 6533's global form) or disposition (RFC 8098, RFC 6533);
/// without `report-type`, the type of a report part of its own.
fn report(m: &Message<'_>) -> Option<&'static str> {
    let root = m.root_part();
    let ct = root.content_type()?;
    if !(ct.ctype().eq_ignore_ascii_case("multipart")
        && ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report")))
    {
        return None;
    }
    let kind = |t: &str| match t.to_ascii_lowercase().as_str() {
        "delivery-status" | "global-delivery-status" => Some("delivery status notification"),
        "disposition-notification" | "global-disposition-notification" => Some("read receipt"),
        _ => None,
    };
    if let Some(t) = ct.attribute("report-type") {
        return kind(t);
    }
    let PartType::Multipart(children) = &root.body else {
        return None;
    };
    children
        .iter()
        .filter_map(|&i| m.parts.get(usize::try_from(i).ok()?)?.content_type())
        .filter(|c| c.ctype().eq_ignore_ascii_case("message"))
        .find_map(|c| kind(c.subtype()?))
}
