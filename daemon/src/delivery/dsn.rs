//! Delivery status notifications (RFC 3464) in a multipart/report
//! (RFC 6522): the message Mailward sends back to a sender when recipients
//! failed, are delayed, or were delivered or relayed and the sender asked to
//! know. It only builds the bytes; deciding whether a DSN is due (NOTIFY,
//! never for a bounce or the null sender) and queueing it are the delivery
//! worker's job.
//!
//! A report about a message that came with SMTPUTF8 and names a UTF-8
//! address (or returns a UTF-8 header) is an internationalised one (RFC
//! 6533): `report-type=global-delivery-status`, a
//! `message/global-delivery-status` part whose `utf-8;` addresses are
//! written as they are, and the message returned as `message/global` (or
//! its header as `message/global-headers`). Every other report is the
//! RFC 3464 one, ASCII in its delivery-status part.
//!
//! Everything that came from outside (addresses, server replies, the
//! ENVID) is cleaned before it goes into a header or a report field, so no
//! CR or LF can inject a line; every line of the result is CRLF-terminated and
//! at most 998 octets long.

use crate::delivery::client::is_status_code;
use crate::envelope::{Envelope, QueueId, Ret};
use crate::text::{ascii, xtext_decode, xtext_encode};
use std::fmt::Write as _;

/// Above this size the original message is returned as headers only, even
/// when RET=FULL asks for all of it: a DSN should reach the sender, and a
/// large one is likelier to be refused (and the sender has the message).
const RETURN_FULL_LIMIT: usize = 1024 * 1024;
/// RFC 5322 2.1.1: the hard line limit, CRLF excluded.
const MAX_LINE: usize = 998;
/// Where header fields are folded and text is wrapped when it can be.
const WRAP: usize = 76;
/// A word longer than this is cut (only hostile input has such words).
const MAX_WORD: usize = 900;

/// RFC 3464 2.3.3 Action: what happened to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl DsnAction {
    /// The value of the Action field.
    pub fn as_str(&self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
            DsnAction::Expanded => "expanded",
        }
    }
}

/// One recipient the DSN reports on.
#[derive(Debug, Clone)]
pub struct DsnRecipient<'a> {
    /// The address we tried (Final-Recipient).
    pub address: &'a str,
    /// The ORCPT the client gave ("rfc822;user@example.com", xtext), if any.
    pub orcpt: Option<&'a str>,
    pub action: DsnAction,
    /// RFC 3463 status ("5.1.1"); an invalid one is replaced by the action's
    /// generic code.
    pub status: String,
    /// "smtp; 550 5.1.1 User unknown"; a reply without the "type;" prefix
    /// gets "smtp; " when it starts with a code, "X-Mailward; " otherwise.
    pub diagnostic: Option<String>,
    /// The reason in words for the human part when it is not the
    /// diagnostic (an expiry: for how long it was tried, and the last
    /// error); `None`: the diagnostic.
    pub reason: Option<String>,
    /// The next hop, as a host name or as [`SmtpClient::peer`] gives it
    /// ("mx.example.com[192.0.2.1]:25"); the field carries the name part.
    ///
    /// [`SmtpClient::peer`]: crate::delivery::client::SmtpClient::peer
    pub remote_mta: Option<String>,
    /// Unix time of the last attempt.
    pub last_attempt: Option<i64>,
    /// Unix time until which a delayed recipient will be retried.
    pub will_retry_until: Option<i64>,
}

/// Everything a DSN is made of.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// The DSN's own queue ID: its Message-ID holds it, so that the
    /// `dsn_id` of the log line finds the message a sender holds.
    pub id: &'a QueueId,
    /// Our host name (`server.hostname`): Reporting-MTA, From, Message-ID.
    pub reporting_mta: &'a str,
    /// Named in the text as the contact for help ("" to leave it out).
    pub postmaster: &'a str,
    /// The envelope of the message reported on.
    pub original: &'a Envelope,
    pub recipients: Vec<DsnRecipient<'a>>,
    /// The original message, CRLF line ends. Empty when it cannot be read
    /// (the spool lost its bytes): the report goes out without it, saying
    /// so, as the envelope allows.
    pub message: &'a [u8],
    /// Unix time now (Date).
    pub now: i64,
}

/// The Subject for a DSN about these recipients: a failure outweighs a
/// delay, which outweighs a success.
pub fn subject_for(recipients: &[DsnRecipient]) -> &'static str {
    match Kind::of(recipients) {
        Kind::Failed => "Undelivered Mail Returned to Sender",
        Kind::Delayed => "Delayed Mail (still being retried)",
        Kind::Delivered => "Successful Mail Delivery Report",
        Kind::Relayed => "Relayed Mail Report",
    }
}

/// True when `bytes` hold an octet above 127 (the DSN must then travel as
/// 8-bit: BODY=8BITMIME).
pub fn is_eight_bit(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b >= 0x80)
}

/// True when a DSN to `to` with these bytes must travel with SMTPUTF8: its
/// recipient (the original sender) or its own header is not ASCII. UTF-8
/// inside its parts is 8-bit content only (RFC 6533 6).
pub fn needs_smtputf8(to: &str, dsn: &[u8]) -> bool {
    !to.is_ascii() || !dsn[..crate::text::HeaderEnd::of(dsn).header].is_ascii()
}

/// Whether the report is an internationalised one (RFC 6533): the message
/// came with SMTPUTF8 and an address in the report, or the header block
/// returned, holds UTF-8. Without SMTPUTF8 nothing changes, so that the
/// reports of all other mail stay as they were.
fn is_global(input: &DsnInput<'_>, returned: &Returned) -> bool {
    let env = input.original;
    env.smtputf8
        && (!env.mail_from.is_ascii()
            || input.recipients.iter().any(|r| {
                !r.address.is_ascii() || r.orcpt.and_then(utf8_orcpt).is_some_and(|a| !a.is_ascii())
            })
            || !returned.bytes[..crate::text::HeaderEnd::of(&returned.bytes).header].is_ascii())
}

/// The complete DSN message, headers and body, CRLF line ends, no line
/// longer than 998 octets. It is 8-bit (see [`is_eight_bit`]) when the
/// returned content or a quoted address or reply is.
pub fn build(input: &DsnInput<'_>) -> Vec<u8> {
    let host = clean_host(input.reporting_mta);
    let returned = returned_content(input);
    let global = is_global(input, &returned);
    let human = human_text(input, &host, &returned);
    let status = delivery_status(input, &host, global);
    let eight_bit = is_eight_bit(human.as_bytes()) || is_eight_bit(&returned.bytes);
    let boundary = boundary(
        input.original,
        &[human.as_bytes(), status.as_bytes(), &returned.bytes],
    );

    let mut head = String::with_capacity(1024);
    let sender = clean_address(&input.original.mail_from);
    let to = if sender.is_empty() {
        clean_address(input.postmaster)
    } else {
        sender
    };
    push_field(&mut head, "Date", &date(input.now));
    push_field(
        &mut head,
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    push_field(&mut head, "To", &format!("<{to}>"));
    push_field(&mut head, "Subject", subject_for(&input.recipients));
    push_field(
        &mut head,
        "Message-ID",
        &format!("<{}.dsn@{host}>", input.id),
    );
    push_field(&mut head, "Auto-Submitted", "auto-replied");
    push_field(&mut head, "MIME-Version", "1.0");
    let report_type = if global {
        "global-delivery-status"
    } else {
        "delivery-status"
    };
    push_field(
        &mut head,
        "Content-Type",
        &format!("multipart/report; report-type={report_type}; boundary=\"{boundary}\""),
    );
    if eight_bit {
        push_field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    // Part 1: for people.
    let _ = write!(head, "--{boundary}\r\n");
    let charset = if human.is_ascii() {
        "us-ascii"
    } else {
        "utf-8"
    };
    push_field(
        &mut head,
        "Content-Type",
        &format!("text/plain; charset={charset}"),
    );
    push_field(&mut head, "Content-Description", "Notification");
    if !human.is_ascii() {
        push_field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\n");
    head.push_str(&human);

    // Part 2: for programs.
    let _ = write!(head, "--{boundary}\r\n");
    if global {
        push_field(&mut head, "Content-Type", "message/global-delivery-status");
    } else {
        push_field(&mut head, "Content-Type", "message/delivery-status");
    }
    push_field(&mut head, "Content-Description", "Delivery report");
    if !status.is_ascii() {
        push_field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\n");
    head.push_str(&status);
    // The CRLF before a delimiter belongs to it (RFC 2046 5.1.1): without
    // one more, the last field would lose its line end (RFC 3464 2.1 ends
    // every field with CRLF; walkK).
    head.push_str("\r\n");

    // Part 3: what the sender sent, when it can be read (the third part
    // of a multipart/report is optional: RFC 6522 3).
    if returned.kind == ReturnedKind::Nothing {
        let _ = write!(head, "--{boundary}--\r\n");
        return head.into_bytes();
    }
    let _ = write!(head, "--{boundary}\r\n");
    // RFC 6533 6.3, 6.4: a returned header with UTF-8 is message/global
    // (message/global-headers) in an internationalised report.
    let utf8_header =
        global && !returned.bytes[..crate::text::HeaderEnd::of(&returned.bytes).header].is_ascii();
    let (kind, description) = match (returned.kind, utf8_header) {
        (ReturnedKind::Full, false) => ("message/rfc822", "Returned message"),
        (ReturnedKind::Full, true) => ("message/global", "Returned message"),
        (ReturnedKind::Headers | ReturnedKind::Nothing, false) => {
            ("text/rfc822-headers", "Returned message headers")
        }
        (ReturnedKind::Headers | ReturnedKind::Nothing, true) => {
            ("message/global-headers", "Returned message headers")
        }
    };
    push_field(&mut head, "Content-Type", kind);
    push_field(&mut head, "Content-Description", description);
    if is_eight_bit(&returned.bytes) {
        push_field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\n");

    let mut out = Vec::with_capacity(head.len() + returned.bytes.len() + 64);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&returned.bytes);
    // The CRLF before the delimiter belongs to it (RFC 2046 5.1.1): a
    // returned message or header block that ends with a line end gets one
    // more, so that its last line (the last header field) keeps its own.
    if out.ends_with(b"\r\n") || returned.bytes.is_empty() {
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(b"\r\n\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Which report this is, by its most serious recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failed,
    Delayed,
    Delivered,
    Relayed,
}

impl Kind {
    fn of(recipients: &[DsnRecipient]) -> Kind {
        let has = |a: DsnAction| recipients.iter().any(|r| r.action == a);
        if has(DsnAction::Failed) {
            Kind::Failed
        } else if has(DsnAction::Delayed) {
            Kind::Delayed
        } else if has(DsnAction::Delivered) {
            Kind::Delivered
        } else {
            Kind::Relayed
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReturnedKind {
    Full,
    Headers,
    /// The message could not be read: no third part.
    Nothing,
}

/// The third part: the whole message or its header block, CRLF, lines
/// within the limit; `note` says why headers were returned against RET=FULL.
struct Returned {
    kind: ReturnedKind,
    bytes: Vec<u8>,
    note: Option<&'static str>,
}

/// A failure, unless RET=HDRS: the whole message; otherwise, and for a
/// message over [`RETURN_FULL_LIMIT`] or with over-long lines, its headers.
/// RET=FULL asks for the whole message in a failure report only (RFC 3461
/// 4.3): a delay or success report returns the headers, as for RET=HDRS
/// (walkP: RET=FULL returned it whole in those too).
fn returned_content(input: &DsnInput<'_>) -> Returned {
    if input.message.is_empty() {
        return Returned {
            kind: ReturnedKind::Nothing,
            bytes: Vec::new(),
            note: None,
        };
    }
    let failed = input
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Failed);
    let want_full = failed && input.original.ret != Some(Ret::Hdrs);
    let mut note = (!failed && input.original.ret == Some(Ret::Full)).then_some(
        "Only the headers of your message are returned: the whole message is returned only \
         in a report of a failure.",
    );
    if want_full {
        if input.message.len() > RETURN_FULL_LIMIT {
            note = Some("The message is larger than 1 MiB, so only its headers are returned.");
        } else {
            let bytes = crlf(input.message);
            if bytes
                .split(|&b| b == b'\n')
                .all(|l| l.len() <= MAX_LINE + 1)
            {
                return Returned {
                    kind: ReturnedKind::Full,
                    bytes,
                    note: None,
                };
            }
            note = Some(
                "The message has lines too long to be returned, so only its headers are returned.",
            );
        }
    }
    Returned {
        kind: ReturnedKind::Headers,
        bytes: fold_long_lines(&crlf(header_block(input.message))),
        note,
    }
}

/// The header block of a message: up to the first empty line, without it.
/// A message without an empty line is all headers (capped, cut at a line end).
fn header_block(message: &[u8]) -> &[u8] {
    let end = crate::text::HeaderEnd::of(message);
    if end.blank > 0 {
        return &message[..end.header];
    }
    if message.len() <= RETURN_FULL_LIMIT {
        return message;
    }
    let capped = &message[..RETURN_FULL_LIMIT];
    match capped.iter().rposition(|&b| b == b'\n') {
        Some(i) => &capped[..=i],
        None => &[],
    }
}

/// CRLF line ends throughout (bare CR or LF become CRLF), and a final CRLF
/// when there is content.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            _ => {
                let run = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(bytes.len() - i);
                out.extend_from_slice(&bytes[i..i + run]);
                i += run;
            }
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Breaks lines over the limit by folding ("\r\n " inserted), never inside
/// a UTF-8 sequence. For header blocks, where this is a legal fold.
fn fold_long_lines(crlf_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(crlf_bytes.len() + 16);
    for line in crlf_bytes.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\r\n").unwrap_or(line);
        if body.len() <= MAX_LINE {
            out.extend_from_slice(line);
            continue;
        }
        let mut rest = body;
        let mut first = true;
        while !rest.is_empty() {
            let room = if first { MAX_LINE } else { MAX_LINE - 1 };
            let mut cut = rest.len().min(room);
            while cut < rest.len() && cut > 0 && (rest[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            if cut == 0 {
                cut = rest.len().min(room);
            }
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(&rest[..cut]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[cut..];
            first = false;
        }
    }
    out
}

/// The text/plain part: what happened, to whom, and why, in words.
fn human_text(input: &DsnInput<'_>, host: &str, returned: &Returned) -> String {
    let env = input.original;
    let mut lines: Vec<String> = Vec::new();
    let attached = match returned.kind {
        ReturnedKind::Full => "your message is attached",
        ReturnedKind::Headers => "the headers of your message are attached",
        ReturnedKind::Nothing => {
            "your message is not attached: it could not be read back from the mail system's storage"
        }
    };
    let paragraph = |lines: &mut Vec<String>, text: &str| {
        lines.extend(wrap(text, ""));
        lines.push(String::new());
    };
    paragraph(&mut lines, &format!("This is the mail system at {host}."));
    let intro = match Kind::of(&input.recipients) {
        Kind::Failed => format!(
            "Your message could not be delivered to one or more of its recipients. \
             This is a permanent error: the mail system has given up on them. \
             The reasons are given below, and {attached}."
        ),
        // No promise of a failure report: a recipient whose NOTIFY asked
        // for delay notices only gets none (RFC 3461 5.2.1).
        Kind::Delayed => format!(
            "Your message has not yet been delivered to one or more of its \
             recipients. The mail system will keep trying; you do not need to send it \
             again. {}.",
            capitalized(attached)
        ),
        Kind::Delivered => format!(
            "Your message was delivered to the recipients listed below. {}.",
            capitalized(attached)
        ),
        Kind::Relayed => format!(
            "Your message was passed on to the recipients listed below through \
             a system that does not send delivery reports, so this is the last report \
             about them. {}.",
            capitalized(attached)
        ),
    };
    paragraph(&mut lines, &intro);

    let sender = clean_address(&env.mail_from);
    lines.extend(wrap(&format!("Queue ID: {}", clean_line(&env.id.0)), ""));
    lines.extend(wrap(&format!("Sender: <{sender}>"), ""));
    lines.extend(wrap(&format!("Arrived: {}", date(env.received_at)), ""));
    lines.push(String::new());

    for rcpt in &input.recipients {
        let address = clean_address(rcpt.address);
        lines.extend(wrap(&format!("<{address}>: {}", rcpt.action.as_str()), ""));
        if let Some(mta) = reporting_mta(rcpt) {
            lines.extend(wrap(&format!("Remote server: {}", clean_line(mta)), "    "));
        }
        let reason = match (&rcpt.reason, &rcpt.diagnostic) {
            (Some(r), _) => clean_line(r),
            (None, Some(d)) => clean_line(human_reason(d)),
            (None, None) => format!("status {}", status_of(rcpt)),
        };
        // A success has a server's reply, not a reason (walkP).
        let label = match rcpt.action {
            DsnAction::Failed | DsnAction::Delayed => "Reason",
            _ => "Server reply",
        };
        lines.extend(wrap(&format!("{label}: {reason}"), "    "));
        if rcpt.action == DsnAction::Delayed {
            if let Some(until) = rcpt.will_retry_until {
                lines.extend(wrap(&format!("Will retry until: {}", date(until)), "    "));
            }
        }
        lines.push(String::new());
    }
    if let Some(note) = returned.note {
        paragraph(&mut lines, note);
    }
    let postmaster = clean_address(input.postmaster);
    if !postmaster.is_empty() {
        paragraph(
            &mut lines,
            &format!(
                "If you need help, write to the postmaster <{postmaster}> and include this report."
            ),
        );
    }
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push_str("\r\n");
    }
    text
}

/// "The headers ..." for "the headers ...": a sentence of its own.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The message/delivery-status part (RFC 3464 2.2, 2.3), ASCII only; or,
/// `global`, the message/global-delivery-status one (RFC 6533 6.2), whose
/// `utf-8;` addresses are written as they are.
fn delivery_status(input: &DsnInput<'_>, host: &str, global: bool) -> String {
    let env = input.original;
    let mut out = String::new();
    if let Some(envid) = &env.envid {
        let envid = clean_line(envid);
        if !envid.is_empty() {
            let envid = if envid.is_ascii() {
                envid
            } else {
                xtext_encode(&envid)
            };
            push_field(&mut out, "Original-Envelope-Id", &envid);
        }
    }
    push_field(&mut out, "Reporting-MTA", &format!("dns; {host}"));
    push_field(&mut out, "Arrival-Date", &date(env.received_at));
    push_field(
        &mut out,
        "X-Mailward-Queue-ID",
        &ascii(&clean_line(&env.id.0)),
    );

    for rcpt in &input.recipients {
        out.push_str("\r\n");
        let orcpt = match rcpt.orcpt {
            Some(o) if global => utf8_orcpt(o)
                .map(|a| typed_address_utf8(&a))
                .or_else(|| original_recipient(o)),
            Some(o) => original_recipient(o),
            None => None,
        };
        if let Some(orcpt) = orcpt {
            push_field(&mut out, "Original-Recipient", &orcpt);
        }
        let final_recipient = if global {
            typed_address_utf8(rcpt.address)
        } else {
            typed_address(rcpt.address)
        };
        push_field(&mut out, "Final-Recipient", &final_recipient);
        push_field(&mut out, "Action", rcpt.action.as_str());
        push_field(&mut out, "Status", status_of(rcpt));
        if let Some(mta) = reporting_mta(rcpt).map(remote_mta_name) {
            if !mta.is_empty() {
                push_field(&mut out, "Remote-MTA", &format!("dns; {mta}"));
            }
        }
        if let Some(diagnostic) = &rcpt.diagnostic {
            let diagnostic = ascii(&clean_line(diagnostic));
            if !diagnostic.is_empty() {
                push_field(&mut out, "Diagnostic-Code", &typed_diagnostic(&diagnostic));
            }
        }
        if let Some(at) = rcpt.last_attempt {
            push_field(&mut out, "Last-Attempt-Date", &date(at));
        }
        if rcpt.action == DsnAction::Delayed {
            if let Some(until) = rcpt.will_retry_until {
                push_field(&mut out, "Will-Retry-Until", &date(until));
            }
        }
    }
    out
}

/// The recipient's status, or the action's generic one when it is invalid.
fn status_of<'s>(rcpt: &'s DsnRecipient<'_>) -> &'s str {
    let status = rcpt.status.trim();
    let class_ok = match rcpt.action {
        DsnAction::Failed => status.starts_with('5'),
        DsnAction::Delayed => status.starts_with('4'),
        _ => status.starts_with('2'),
    };
    if is_status_code(status) && class_ok {
        return status;
    }
    match rcpt.action {
        DsnAction::Failed => "5.0.0",
        DsnAction::Delayed => "4.0.0",
        _ => "2.0.0",
    }
}

/// "rfc822; user@example.com"; an address with non-ASCII characters is of
/// type utf-8 with those characters as \x{HEX} (RFC 6533 utf-8-addr-xtext).
fn typed_address(address: &str) -> String {
    let address = clean_address(address);
    if address.is_ascii() {
        return format!("rfc822; {address}");
    }
    let mut out = String::from("utf-8; ");
    for c in address.chars() {
        if c.is_ascii() && c != '\\' && c != '+' && c != '=' {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
        }
    }
    out
}

/// "rfc822; user@example.com"; an address with non-ASCII characters is
/// "utf-8; jürgen@example.com", as it is (RFC 6533 3, utf-8-address: the
/// form of message/global-delivery-status).
fn typed_address_utf8(address: &str) -> String {
    let address = clean_address(address);
    if address.is_ascii() {
        format!("rfc822; {address}")
    } else {
        format!("utf-8; {address}")
    }
}

/// The address of an ORCPT of type utf-8 (RFC 6533 3), decoded: `+HH`
/// (xtext) and `\x{HEX}` (utf-8-addr-xtext) undone, UTF-8 characters
/// (utf-8-addr-unitext) as they are. `None` for another type or what does
/// not decode to a clean address.
fn utf8_orcpt(orcpt: &str) -> Option<String> {
    let (kind, address) = orcpt.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let mut out = String::with_capacity(address.len());
    let mut rest = address.trim();
    while let Some(c) = rest.chars().next() {
        if let Some(hex) = rest.strip_prefix('+') {
            let code = hex.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(char::from(code).is_ascii().then_some(char::from(code))?);
            rest = &hex[2..];
        } else if let Some(tail) = rest.strip_prefix("\\x{") {
            let (hex, after) = tail.split_once('}')?;
            out.push(u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)?);
            rest = after;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let clean = clean_address(&out);
    (!clean.is_empty() && clean == out).then_some(out)
}

/// The Original-Recipient value for an ORCPT as given ("rfc822;a+2Bb@x"):
/// "rfc822; a+b@x". The ORCPT is xtext only on the wire (RFC 3461 4.2);
/// the report field holds the address itself (RFC 3464 2.3.1), so it is
/// always decoded, and then cleaned as the ENVID is: a control character
/// (an encoded CR or LF, which RFC 3461 4.2 forbids in the decoded address)
/// is a space, so no line of the sender's choosing starts in the report
/// (walkAH 10: such an ORCPT was written still encoded). Only an address
/// with non-ASCII characters is written as xtext, the form that keeps them
/// in an ASCII-only field; one that is not xtext at all is written in
/// ASCII as it came.
fn original_recipient(orcpt: &str) -> Option<String> {
    let (kind, address) = orcpt.split_once(';')?;
    let kind = clean_line(kind);
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let address = match xtext_decode(address.trim()) {
        Some(decoded) => {
            let decoded = clean_line(&decoded);
            if decoded.is_ascii() {
                decoded
            } else {
                xtext_encode(&decoded)
            }
        }
        None => ascii(&clean_line(address)),
    };
    if address.is_empty() {
        return None;
    }
    Some(format!("{kind}; {address}"))
}

/// The host name out of "mx.example.com[192.0.2.1]:25"; "[192.0.2.1]" when
/// there is no name.
/// The MTA that reported the recipient's status: the hop, when its status
/// is one of its replies (or a success). A status of our own (a null MX, a
/// failed look-up, a refused connection: `X-Mailward;`) was reported by no
/// remote MTA, and RFC 3464 2.3.5 then has no Remote-MTA (walkK: it said
/// `dns; nullmx.test:25` for a domain that takes no mail).
fn reporting_mta<'r>(rcpt: &'r DsnRecipient<'_>) -> Option<&'r str> {
    let replied = rcpt
        .diagnostic
        .as_deref()
        .is_none_or(|d| typed_diagnostic(d).starts_with("smtp;"));
    rcpt.remote_mta.as_deref().filter(|_| replied)
}

fn remote_mta_name(peer: &str) -> String {
    let peer = clean_line(peer);
    let name = match peer.split_once('[') {
        Some(("", rest)) => format!("[{}]", rest.split(']').next().unwrap_or_default()),
        Some((name, _)) => name.to_string(),
        None => peer,
    };
    ascii(&name).replace(' ', "")
}

/// The reason as a person reads it: the text without the diagnostic type
/// ("smtp; ", "X-Mailward; ") that the machine-readable part carries. The
/// diagnostics come both ways, and the human part said "smtp; 250" for one
/// recipient and "550" for the next.
fn human_reason(diagnostic: &str) -> &str {
    let typed = typed_diagnostic(diagnostic);
    match (typed.split_once(';'), diagnostic.split_once(';')) {
        // Given with its type: what follows it.
        (Some((kind, _)), Some((given, rest))) if given.trim() == kind => rest.trim(),
        _ => diagnostic,
    }
}

/// "smtp; 550 ..." as given; a bare reply gets its type.
fn typed_diagnostic(diagnostic: &str) -> String {
    if let Some((kind, rest)) = diagnostic.split_once(';') {
        let kind = kind.trim();
        if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return format!("{kind}; {}", rest.trim());
        }
    }
    let code = diagnostic.len() >= 3 && diagnostic.bytes().take(3).all(|b| b.is_ascii_digit());
    if code {
        format!("smtp; {diagnostic}")
    } else {
        format!("X-Mailward; {diagnostic}")
    }
}

/// A header field, folded at spaces near [`WRAP`] columns; words over
/// [`MAX_WORD`] characters are cut, so no line exceeds 998 octets. `value`
/// must already be one clean line.
fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut column = name.len() + 1;
    let mut words_on_line = 0;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        for piece in cut_word(word) {
            if words_on_line > 0 && column + 1 + piece.len() > WRAP {
                out.push_str("\r\n");
                column = 0;
                words_on_line = 0;
            }
            out.push(' ');
            out.push_str(piece);
            column += 1 + piece.len();
            words_on_line += 1;
        }
    }
    out.push_str("\r\n");
}

/// Lines of at most [`WRAP`] characters (longer only for a single long
/// word, and then at most [`MAX_WORD`]), each starting with `indent`.
fn wrap(text: &str, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::from(indent);
    let mut width = indent.len();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        for piece in cut_word(word) {
            let len = piece.chars().count();
            if width > indent.len() && width + 1 + len > WRAP {
                lines.push(std::mem::replace(&mut line, String::from(indent)));
                width = indent.len();
            }
            if width > indent.len() {
                line.push(' ');
                width += 1;
            }
            line.push_str(piece);
            width += len;
        }
    }
    if width > indent.len() {
        lines.push(line);
    }
    lines
}

/// A word in pieces of at most [`MAX_WORD`] octets, cut at char boundaries.
fn cut_word(word: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = word;
    while rest.len() > MAX_WORD {
        let mut cut = MAX_WORD;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

/// One line of text: control characters (CR, LF, TAB...) become spaces,
/// runs of spaces one.
fn clean_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

/// An address fit for "<...>": no control characters, no angle brackets.
fn clean_address(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() && c != '<' && c != '>')
        .collect::<String>()
        .trim()
        .to_string()
}

/// A host name: letters, digits and ".-_:[]" only; "localhost" if none.
fn clean_host(s: &str) -> String {
    let host: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(*c))
        .collect();
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}

/// RFC 5322 date of a Unix time (UTC).
fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc2822()
}

/// A MIME boundary found in none of the parts. "=_" cannot occur in
/// base64 or quoted-printable, and the queue ID and a fresh ID make it
/// unguessable for whoever wrote the message or the remote replies.
fn boundary(env: &Envelope, parts: &[&[u8]]) -> String {
    let id: String = env
        .id
        .0
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let mut boundary = format!("=_mailward_{id}_{}", QueueId::generate());
    for _ in 0..8 {
        let found = parts
            .iter()
            .any(|p| crate::text::find_bytes(p, boundary.as_bytes()).is_some());
        if !found {
            break;
        }
        boundary.push('_');
        boundary.push_str(&QueueId::generate().0);
    }
    boundary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Recipient;
    use std::net::{IpAddr, Ipv4Addr};

    fn envelope(mail_from: &str, ret: Option<Ret>) -> Envelope {
        Envelope {
            received_at: 1_700_000_000,
            ret,
            envid: Some("env+id\r\nX: y".into()),
            rcpts: vec![Recipient::new("a@b.test".into())],
            attempts: 1,
            ..Envelope::new(
                QueueId("0123456789ABCDEF".into()),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                "client.test".into(),
                mail_from.into(),
            )
        }
    }

    fn failed<'a>(address: &'a str, diagnostic: &str) -> DsnRecipient<'a> {
        DsnRecipient {
            address,
            orcpt: Some("rfc822;user+2Bx@b.test"),
            action: DsnAction::Failed,
            status: "5.1.1".into(),
            diagnostic: Some(diagnostic.into()),
            reason: None,
            remote_mta: Some("mx.b.test[192.0.2.1]:25".into()),
            last_attempt: Some(1_700_000_100),
            will_retry_until: None,
        }
    }

    const MESSAGE: &[u8] =
        b"From: a@a.test\r\nTo: u@b.test\r\nSubject: hello\r\n\r\nBody line one\r\n.dot line\r\n";

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Splits a DSN into its top header block and its parts (each as its
    /// header block and content), checking the framing as it goes.
    fn parts(dsn: &str) -> (String, Vec<(String, String)>) {
        let (head, body) = dsn.split_once("\r\n\r\n").unwrap();
        let boundary = head
            .split("boundary=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let delimiter = format!("\r\n--{boundary}");
        let end = format!("\r\n--{boundary}--\r\n");
        assert!(body.ends_with(&end), "no close delimiter");
        let body = &body[..body.len() - end.len()];
        let mut pieces = body.split(&delimiter);
        let preamble = pieces.next().unwrap();
        assert!(!preamble.contains(&boundary));
        let parts = pieces
            .map(|p| {
                let p = p.strip_prefix("\r\n").unwrap();
                let (h, c) = p.split_once("\r\n\r\n").unwrap();
                (h.to_string(), c.to_string())
            })
            .collect();
        (head.to_string(), parts)
    }

    fn check_lines(dsn: &[u8]) {
        assert!(dsn.ends_with(b"\r\n"));
        for line in dsn.split(|&b| b == b'\n') {
            assert!(line.len() <= MAX_LINE + 1, "line of {} octets", line.len());
            assert!(
                !line[..line.len().saturating_sub(1)].contains(&b'\r'),
                "bare CR"
            );
        }
        for (i, _) in dsn.iter().enumerate().filter(|(_, &b)| b == b'\n') {
            assert!(i > 0 && dsn[i - 1] == b'\r', "bare LF at {i}");
        }
    }

    #[test]
    fn failure_report_has_three_parts_and_returns_the_message() {
        let env = envelope("sender@a.test", None);
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw.example.com",
            postmaster: "postmaster@example.com",
            original: &env,
            recipients: vec![
                failed("u@b.test", "smtp; 550 5.1.1 User unknown"),
                DsnRecipient {
                    address: "v@b.test",
                    orcpt: None,
                    action: DsnAction::Delivered,
                    status: "2.0.0".into(),
                    diagnostic: None,
                    reason: None,
                    remote_mta: None,
                    last_attempt: None,
                    will_retry_until: None,
                },
            ],
            message: MESSAGE,
            now: 1_700_000_200,
        };
        let dsn = build(&input);
        check_lines(&dsn);
        assert!(!is_eight_bit(&dsn));
        let dsn = text(&dsn);
        let (head, parts) = parts(&dsn);
        assert!(head.contains("\r\nFrom: Mail Delivery System <MAILER-DAEMON@gw.example.com>\r\n"));
        assert!(head.contains("\r\nTo: <sender@a.test>\r\n"));
        assert!(head.contains("\r\nSubject: Undelivered Mail Returned to Sender\r\n"));
        assert!(head.contains("\r\nAuto-Submitted: auto-replied\r\n"));
        assert!(head.contains("\r\nMIME-Version: 1.0\r\n"));
        assert!(
            head.starts_with("Date: Tue, 14 Nov 2023 22:16:40 +0000\r\n"),
            "{head}"
        );
        // The DSN's own queue ID, as the log line names it (dsn_id).
        assert!(head.contains("Message-ID: <1A22E10E77891C7D.dsn@gw.example.com>"));
        assert!(head.contains("multipart/report; report-type=delivery-status;"));
        assert_eq!(parts.len(), 3);

        let (h1, human) = &parts[0];
        assert!(h1.contains("Content-Type: text/plain; charset=us-ascii"));
        assert!(human.contains("0123456789ABCDEF"));
        assert!(human.contains("<u@b.test>: failed"));
        assert!(human.contains("Reason: 550 5.1.1 User unknown"), "{human}");
        assert!(human.contains("Remote server: mx.b.test[192.0.2.1]:25"));
        assert!(human.contains("<postmaster@example.com>"));

        let (h2, status) = &parts[1];
        assert!(h2.contains("Content-Type: message/delivery-status"));
        let blocks: Vec<&str> = status.trim_end().split("\r\n\r\n").collect();
        assert_eq!(blocks.len(), 3, "{status}");
        assert!(blocks[0].contains("Reporting-MTA: dns; gw.example.com\r\n"));
        assert!(blocks[0].contains("X-Mailward-Queue-ID: 0123456789ABCDEF"));
        assert!(blocks[0].contains("Original-Envelope-Id: env+id X: y"));
        assert!(blocks[0].contains("Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000"));
        assert_eq!(
            blocks[1],
            "Original-Recipient: rfc822; user+x@b.test\r\n\
             Final-Recipient: rfc822; u@b.test\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.b.test\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\
             Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000"
        );
        assert!(blocks[2]
            .contains("Final-Recipient: rfc822; v@b.test\r\nAction: delivered\r\nStatus: 2.0.0"));
        assert!(!blocks[2].contains("Will-Retry-Until"));

        let (h3, returned) = &parts[2];
        assert!(h3.contains("Content-Type: message/rfc822"));
        // Whole, its last line with its own CRLF (walkK).
        assert_eq!(returned, &text(MESSAGE));
    }

    #[test]
    fn delay_report_returns_headers_and_says_until_when() {
        let env = envelope("sender@a.test", None);
        let mut rcpt = failed("u@b.test", "451 4.4.1 Connection refused");
        rcpt.action = DsnAction::Delayed;
        rcpt.status = "4.4.1".into();
        rcpt.will_retry_until = Some(1_700_432_000);
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw.example.com",
            postmaster: "",
            original: &env,
            recipients: vec![rcpt],
            message: MESSAGE,
            now: 1_700_000_200,
        };
        assert_eq!(
            subject_for(&input.recipients),
            "Delayed Mail (still being retried)"
        );
        let dsn = build(&input);
        check_lines(&dsn);
        let dsn = text(&dsn);
        let (head, parts) = parts(&dsn);
        assert!(head.contains("Subject: Delayed Mail (still being retried)"));
        assert!(parts[1].1.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(parts[1]
            .1
            .contains("Diagnostic-Code: smtp; 451 4.4.1 Connection refused\r\n"));
        assert!(parts[1]
            .1
            .contains("Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000"));
        assert!(parts[0].1.contains("Will retry until: Sun, 19 Nov 2023"));
        assert!(!parts[0].1.contains("postmaster"));
        // It promises no failure report: NOTIFY=DELAY alone gets none.
        assert!(!parts[0].1.contains("told"), "{}", parts[0].1);
        assert!(parts[2].0.contains("Content-Type: text/rfc822-headers"));
        // The last field keeps its CRLF (walkK).
        assert_eq!(
            parts[2].1,
            "From: a@a.test\r\nTo: u@b.test\r\nSubject: hello\r\n"
        );
    }

    /// walkK: a recipient whose domain takes no mail (null MX) was
    /// reported with `Remote-MTA: dns; nullmx.test:25`, an MTA nobody
    /// reached; and the status part's last field had no line end.
    #[test]
    fn no_remote_mta_for_a_status_of_our_own_and_every_field_ends_its_line() {
        let env = envelope("sender@a.test", None);
        let mut rcpt = failed(
            "u@nullmx.test",
            "5.1.10 nullmx.test does not accept mail (null MX, RFC 7505)",
        );
        rcpt.status = "5.1.10".into();
        rcpt.remote_mta = Some("nullmx.test:25".into());
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7E".into()),
            reporting_mta: "gw.example.com",
            postmaster: "postmaster@example.com",
            original: &env,
            recipients: vec![rcpt],
            message: MESSAGE,
            now: 1_700_000_200,
        };
        let dsn = text(&build(&input));
        let (_, parts) = parts(&dsn);
        assert!(!parts[1].1.contains("Remote-MTA"), "{}", parts[1].1);
        assert!(!parts[0].1.contains("Remote server"), "{}", parts[0].1);
        assert!(parts[1].1.contains("Diagnostic-Code: X-Mailward; 5.1.10"));
        assert!(parts[1].1.ends_with(" +0000\r\n"), "{:?}", parts[1].1);
        // A hop's own reply still names the hop.
        let replied = failed("u@b.test", "550 5.1.1 User unknown");
        assert_eq!(reporting_mta(&replied), Some("mx.b.test[192.0.2.1]:25"));
    }

    #[test]
    fn ret_decides_what_is_returned() {
        let big = {
            let mut m = b"Subject: big\r\n\r\n".to_vec();
            while m.len() <= RETURN_FULL_LIMIT {
                m.extend_from_slice(&[b'x'; 78]);
                m.extend_from_slice(b"\r\n");
            }
            m
        };
        let long_line = [&b"Subject: long\r\n\r\n"[..], &[b'y'; 2000], b"\r\n"].concat();
        use DsnAction::{Delayed, Failed, Relayed};
        /// RET, the report's action, the message, what is returned, and
        /// whether the human part says why only headers are.
        type Case<'a> = (Option<Ret>, DsnAction, &'a [u8], &'a str, bool);
        let cases: [Case; 9] = [
            (
                Some(Ret::Hdrs),
                Failed,
                MESSAGE,
                "text/rfc822-headers",
                false,
            ),
            (Some(Ret::Full), Failed, MESSAGE, "message/rfc822", false),
            (None, Failed, MESSAGE, "message/rfc822", false),
            (Some(Ret::Full), Failed, &big, "text/rfc822-headers", true),
            (
                Some(Ret::Full),
                Failed,
                &long_line,
                "text/rfc822-headers",
                true,
            ),
            // RFC 3461 4.3: RET=FULL is for failures; delays and successes
            // return the headers, and say why (walkP).
            (
                Some(Ret::Full),
                Delayed,
                MESSAGE,
                "text/rfc822-headers",
                true,
            ),
            (
                Some(Ret::Full),
                Relayed,
                MESSAGE,
                "text/rfc822-headers",
                true,
            ),
            (None, Delayed, MESSAGE, "text/rfc822-headers", false),
            (
                Some(Ret::Hdrs),
                Relayed,
                MESSAGE,
                "text/rfc822-headers",
                false,
            ),
        ];
        for (ret, action, message, kind, noted) in cases {
            let env = envelope("s@a.test", ret);
            let mut rcpt = failed("u@b.test", "550 5.1.1 no");
            rcpt.action = action;
            let input = DsnInput {
                id: &QueueId("1A22E10E77891C7D".into()),
                reporting_mta: "gw",
                postmaster: "pm@gw",
                original: &env,
                recipients: vec![rcpt],
                message,
                now: 0,
            };
            let dsn = build(&input);
            check_lines(&dsn);
            let dsn = text(&dsn);
            let (_, parts) = parts(&dsn);
            assert!(parts[2].0.contains(kind), "{ret:?} {action:?} {kind}");
            let human = parts[0].1.replace("\r\n", " ");
            let said = human.contains("only its headers") || human.contains("Only the headers");
            assert_eq!(said, noted, "{ret:?} {action:?}: {human}");
            // The human part says what is attached.
            let attached = if kind == "message/rfc822" {
                "your message is attached"
            } else {
                "he headers of your message are attached"
            };
            assert!(human.contains(attached), "{ret:?} {action:?}: {human}");
            assert!(dsn.len() < 64 * 1024 || kind == "message/rfc822");
        }
    }

    /// walkP: a success report said "Reason: 250 2.0.0 Ok".
    #[test]
    fn a_success_gives_the_server_reply_not_a_reason() {
        let env = envelope("s@a.test", None);
        let mut rcpt = failed("u@b.test", "smtp; 250 2.0.0 Ok");
        rcpt.action = DsnAction::Relayed;
        rcpt.status = "2.0.0".into();
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw",
            postmaster: "",
            original: &env,
            recipients: vec![rcpt],
            message: MESSAGE,
            now: 0,
        };
        let dsn = text(&build(&input));
        let (_, parts) = parts(&dsn);
        assert!(
            parts[0].1.contains("Server reply: 250 2.0.0 Ok"),
            "{}",
            parts[0].1
        );
        assert!(!parts[0].1.contains("Reason:"), "{}", parts[0].1);
    }

    /// A message whose bytes the spool lost (unreadable past
    /// max_queue_lifetime) is bounced without them: the report says so
    /// and has no third part, and is a well-formed multipart/report.
    #[test]
    fn a_message_that_cannot_be_read_is_reported_without_it() {
        let env = envelope("s@a.test", None);
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw",
            postmaster: "postmaster@gw",
            original: &env,
            recipients: vec![failed("u@b.test", "4.3.0 local spool error")],
            message: b"",
            now: 0,
        };
        let bytes = build(&input);
        check_lines(&bytes);
        let dsn = text(&bytes);
        let (_, parts) = parts(&dsn);
        assert_eq!(parts.len(), 2, "{dsn}");
        assert!(parts[1].0.contains("message/delivery-status"), "{dsn}");
        assert!(
            parts[1].1.contains("Final-Recipient: rfc822; u@b.test"),
            "{dsn}"
        );
        let human = parts[0].1.replace("\r\n", " ");
        assert!(
            human.contains("your message is not attached: it could not be read back"),
            "{human}"
        );
        assert!(!dsn.contains("rfc822-headers"), "{dsn}");
        assert!(dsn.ends_with("--\r\n"), "{dsn}");
    }

    #[test]
    fn header_injection_is_neutralised() {
        let env = envelope("evil@a.test>\r\nBcc: victim@c.test\r\nX-A: <", None);
        let mut rcpt = failed(
            "u@b.test\r\nBcc: victim2@c.test",
            "smtp; 550 no\r\n\r\n--fake-boundary\r\nContent-Type: text/html",
        );
        rcpt.orcpt = Some("rfc822;x+0D+0ABcc:+20v3@c.test");
        rcpt.remote_mta = Some("mx\r\nBcc: v4@c.test".into());
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw.test\r\nBcc: v5@c.test",
            postmaster: "pm@gw.test\r\n",
            original: &env,
            recipients: vec![rcpt],
            message: MESSAGE,
            now: 0,
        };
        let dsn = build(&input);
        check_lines(&dsn);
        let dsn = text(&dsn);
        for line in dsn.split("\r\n") {
            assert!(!line.starts_with("Bcc:"), "{line}");
            assert!(!line.starts_with("--fake-boundary"), "{line}");
            assert!(!line.starts_with("Content-Type: text/html"), "{line}");
        }
        assert!(dsn.contains("\r\nTo: <evil@a.testBcc: victim@c.testX-A:>\r\n"));
        assert!(dsn.contains("MAILER-DAEMON@gw.testBcc:v5c.test>"));
        let (_, parts) = parts(&dsn);
        assert_eq!(parts.len(), 3);
    }

    #[test]
    fn long_diagnostics_are_folded() {
        let env = envelope("s@a.test", Some(Ret::Hdrs));
        let diagnostic = format!(
            "smtp; 550 5.7.1 {} {}",
            "word ".repeat(400),
            "z".repeat(3000)
        );
        let address = "l".repeat(1500);
        let message = [b"X-Long: ", &[b'h'; 3000][..], b"\r\n\r\nbody\r\n"].concat();
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw",
            postmaster: "",
            original: &env,
            recipients: vec![failed(&address, &diagnostic)],
            message: &message,
            now: 0,
        };
        let dsn = build(&input);
        check_lines(&dsn);
        let dsn = text(&dsn);
        assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.7.1 word word"));
        // Folded lines start with white space and unfold to the original words.
        let (_, parts) = parts(&dsn);
        let unfolded = parts[1].1.replace("\r\n ", " ");
        assert!(unfolded.contains(&"word ".repeat(400)));
        assert!(parts[2].1.starts_with("X-Long: hhh"));
        assert!(parts[2].1.contains("\r\n hhh"));
    }

    #[test]
    fn eight_bit_content_makes_an_eight_bit_dsn() {
        let env = envelope("s@a.test", Some(Ret::Full));
        let message = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n";
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw",
            postmaster: "",
            original: &env,
            recipients: vec![failed("j\u{fc}rgen@b.test", "550 5.1.1 unbekannt \u{fc}")],
            message: message.as_bytes(),
            now: 0,
        };
        let dsn = build(&input);
        check_lines(&dsn);
        assert!(is_eight_bit(&dsn));
        let dsn = text(&dsn);
        let (head, parts) = parts(&dsn);
        assert!(head.contains("\r\nContent-Transfer-Encoding: 8bit"));
        assert!(parts[0].0.contains("charset=utf-8"));
        assert!(parts[1].1.is_ascii());
        assert!(parts[1]
            .1
            .contains("Final-Recipient: utf-8; j\\x{FC}rgen@b.test"));
        assert!(parts[1]
            .1
            .contains("Diagnostic-Code: smtp; 550 5.1.1 unbekannt ?"));
        assert!(parts[2].0.contains("Content-Transfer-Encoding: 8bit"));
        assert!(parts[2].1.contains("na\u{ef}ve"));
    }

    #[test]
    fn a_report_on_utf8_mail_is_a_global_delivery_status() {
        // RFC 6533: the message came with SMTPUTF8 from and to UTF-8
        // addresses, and its header is UTF-8.
        let mut env = envelope("j\u{fc}rgen@b\u{fc}cher.example", Some(Ret::Full));
        env.smtputf8 = true;
        let message =
            "From: j\u{fc}rgen@b\u{fc}cher.example\r\nSubject: Gr\u{fc}\u{df}e\r\n\r\nhi\r\n";
        let mut rcpt = failed(
            "\u{3b4}\u{3bf}\u{3ba}@example.com",
            "5.6.7 SMTPUTF8 is required, but was not offered by host mx.test[192.0.2.1]:25",
        );
        rcpt.status = "5.6.7".into();
        rcpt.orcpt = Some("utf-8;\u{3b4}\u{3bf}\u{3ba}@example.com");
        let input = DsnInput {
            id: &QueueId("1A22E10E77891C7D".into()),
            reporting_mta: "gw.test",
            postmaster: "",
            original: &env,
            recipients: vec![rcpt],
            message: message.as_bytes(),
            now: 0,
        };
        let bytes = build(&input);
        check_lines(&bytes);
        // Its own header names the UTF-8 sender: it goes with SMTPUTF8.
        assert!(needs_smtputf8(&env.mail_from, &bytes));
        let dsn = text(&bytes);
        let (head, got) = parts(&dsn);
        assert!(
            head.contains("report-type=global-delivery-status;"),
            "{head}"
        );
        assert!(
            head.contains("\r\nTo: <j\u{fc}rgen@b\u{fc}cher.example>"),
            "{head}"
        );
        assert_eq!(got.len(), 3);
        assert!(got[1]
            .0
            .contains("Content-Type: message/global-delivery-status"));
        assert!(got[1].0.contains("Content-Transfer-Encoding: 8bit"));
        let status = &got[1].1;
        assert!(
            status.contains("\r\nFinal-Recipient: utf-8; \u{3b4}\u{3bf}\u{3ba}@example.com\r\n"),
            "{status}"
        );
        assert!(
            status.contains("Original-Recipient: utf-8; \u{3b4}\u{3bf}\u{3ba}@example.com\r\n"),
            "{status}"
        );
        assert!(status.contains("Status: 5.6.7\r\n"), "{status}");
        assert!(
            got[2].0.contains("Content-Type: message/global\r\n"),
            "{}",
            got[2].0
        );
        assert!(got[2].1.contains("Subject: Gr\u{fc}\u{df}e"));

        // Headers only: message/global-headers.
        let mut hdrs_env = env.clone();
        hdrs_env.ret = Some(Ret::Hdrs);
        let bytes = build(&DsnInput {
            original: &hdrs_env,
            ..input.clone()
        });
        let dsn = text(&bytes);
        let (_, got) = parts(&dsn);
        assert!(got[2]
            .0
            .contains("Content-Type: message/global-headers\r\n"));

        // The same with an ASCII sender and an ASCII header: the report
        // is global for the recipient, but its own header is ASCII, so it
        // needs no SMTPUTF8.
        let mut ascii_env = envelope("alice@sender.test", Some(Ret::Hdrs));
        ascii_env.smtputf8 = true;
        let bytes = build(&DsnInput {
            original: &ascii_env,
            message: b"Subject: hi\r\n\r\nhi\r\n",
            ..input.clone()
        });
        assert!(!needs_smtputf8(&ascii_env.mail_from, &bytes));
        let dsn = text(&bytes);
        let (head, got) = parts(&dsn);
        assert!(head.contains("report-type=global-delivery-status;"));
        assert!(got[2].0.contains("Content-Type: text/rfc822-headers"));
    }

    #[test]
    fn a_report_on_smtputf8_mail_that_is_all_ascii_stays_rfc3464() {
        let env = envelope("s@a.test", Some(Ret::Full));
        let id = QueueId("1A22E10E77891C7D".into());
        let input = |env| DsnInput {
            id: &id,
            reporting_mta: "gw",
            postmaster: "postmaster@gw",
            original: env,
            recipients: vec![failed("u@b.test", "550 5.1.1 no")],
            message: MESSAGE,
            now: 0,
        };
        let without = text(&build(&input(&env)));
        let mut env_utf8 = env.clone();
        env_utf8.smtputf8 = true;
        let with = text(&build(&input(&env_utf8)));
        // Only the boundary (a fresh ID) differs.
        let cut = |d: &str| {
            let (head, _) = parts(d);
            let b = head
                .split("boundary=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_string();
            d.replace(&b, "B")
        };
        assert_eq!(cut(&without), cut(&with));
        assert!(with.contains("report-type=delivery-status"));
    }

    #[test]
    fn utf8_orcpts_decode_every_form() {
        for given in [
            "utf-8;j\u{fc}rgen@example.com",
            "utf-8;j\\x{FC}rgen@example.com",
            "UTF-8; j\\x{fc}rgen@example.com",
        ] {
            assert_eq!(
                utf8_orcpt(given).as_deref(),
                Some("j\u{fc}rgen@example.com"),
                "{given}"
            );
        }
        assert_eq!(
            utf8_orcpt("utf-8;a+2Bb@example.com").as_deref(),
            Some("a+b@example.com")
        );
        assert_eq!(utf8_orcpt("rfc822;a@example.com"), None);
        assert_eq!(utf8_orcpt("utf-8;a+0Db@example.com"), None);
        assert_eq!(utf8_orcpt("utf-8;a\\x{zz}@example.com"), None);
    }

    #[test]
    fn subjects_follow_the_most_serious_action() {
        let r = |action| DsnRecipient {
            address: "a@b",
            orcpt: None,
            action,
            status: "2.0.0".into(),
            diagnostic: None,
            reason: None,
            remote_mta: None,
            last_attempt: None,
            will_retry_until: None,
        };
        use DsnAction::*;
        assert_eq!(
            subject_for(&[r(Delivered), r(Failed), r(Delayed)]),
            "Undelivered Mail Returned to Sender"
        );
        assert_eq!(
            subject_for(&[r(Delivered), r(Delayed)]),
            "Delayed Mail (still being retried)"
        );
        assert_eq!(
            subject_for(&[r(Relayed), r(Delivered)]),
            "Successful Mail Delivery Report"
        );
        assert_eq!(
            subject_for(&[r(Relayed), r(Expanded)]),
            "Relayed Mail Report"
        );
        // A status that does not fit the action is replaced.
        let mut bad = r(Failed);
        bad.status = "2.0.0".into();
        assert_eq!(status_of(&bad), "5.0.0");
        bad.status = "5.2.2".into();
        assert_eq!(status_of(&bad), "5.2.2");
    }

    /// RFC 3464 2.3.1 / RFC 3461 4.2: the report names the ORCPT's
    /// address decoded from xtext (walkAH 10: an encoded CR LF was kept
    /// as `+0D+0A`).
    #[test]
    fn original_recipient_is_the_decoded_orcpt() {
        let cases = [
            ("rfc822;b+2Bo@x.test", Some("rfc822; b+o@x.test")),
            ("rfc822;plain@x.test", Some("rfc822; plain@x.test")),
            (
                "rfc822;bob+0D+0AX-Injected:+20yes@x.test",
                Some("rfc822; bob X-Injected: yes@x.test"),
            ),
            ("rfc822;a+09+09b@x.test", Some("rfc822; a b@x.test")),
            // Non-ASCII stays xtext: the field is ASCII only.
            ("rfc822;j+C3+A9@x.test", Some("rfc822; j+C3+A9@x.test")),
            // Not xtext (a lone '+'): as it came, in ASCII.
            ("rfc822;a+b@x.test", Some("rfc822; a+b@x.test")),
            ("rfc822;+0D+0A", None),
            ("no-type@x.test", None),
        ];
        for (orcpt, want) in cases {
            assert_eq!(original_recipient(orcpt).as_deref(), want, "{orcpt}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            header_block(b"A: b\r\nC: d\r\n\r\nbody"),
            b"A: b\r\nC: d\r\n"
        );
        assert_eq!(header_block(b"A: b\nC: d\n\nbody"), b"A: b\nC: d\n");
        assert_eq!(header_block(b"\r\nbody"), b"");
        assert_eq!(header_block(b"A: b"), b"A: b");
        assert_eq!(crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(xtext_decode("a+2Bb+3D").as_deref(), Some("a+b="));
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(remote_mta_name("mx.test[1.2.3.4]:25"), "mx.test");
        assert_eq!(remote_mta_name("[1.2.3.4]:25"), "[1.2.3.4]");
        assert_eq!(remote_mta_name("mx.test"), "mx.test");
        assert_eq!(typed_diagnostic("smtp; 550 x"), "smtp; 550 x");
        assert_eq!(typed_diagnostic("550 x"), "smtp; 550 x");
        assert_eq!(typed_diagnostic("virus found"), "X-Mailward; virus found");
        assert_eq!(human_reason("smtp; 250 2.0.0 queued"), "250 2.0.0 queued");
        assert_eq!(human_reason("550 5.1.1 unknown"), "550 5.1.1 unknown");
        assert_eq!(human_reason("X-Mailward; virus found"), "virus found");
        assert_eq!(human_reason("a; b"), "b");
        assert_eq!(human_reason("no type here"), "no type here");
        assert_eq!(human_reason("two words; then"), "two words; then");
        let wrapped = wrap(&"abc ".repeat(40), "  ");
        assert!(wrapped
            .iter()
            .all(|l| l.len() <= WRAP && l.starts_with("  abc")));
        assert_eq!(wrapped.join(" ").split_whitespace().count(), 40);
    }
}
