//! The subject mark (`mark_subject`, `subject_prefix`): the prefix goes in
//! front of the Subject field's value, on the raw bytes, so that nothing
//! else in the message changes (signatures over other fields stay valid).
//!
//! - An encoded subject (RFC 2047, `=?UTF-8?B?...?=`) stays encoded; a
//!   plain ASCII prefix goes before it as text. A prefix that is not ASCII is
//!   itself put as an encoded word, with its trailing space inside it (white
//!   space between two encoded words is not shown, RFC 2047 6.2).
//! - A folded subject keeps its folding; when the prefix would make the first
//!   line longer than 998 octets, the line is folded after the prefix.
//! - A message without a Subject gets one, at the end of its header.
//! - A subject that already starts with the prefix is left as it is.

use base64::Engine as _;

/// RFC 5322 2.1.1: a line is at most 998 octets.
const MAX_LINE: usize = 998;

/// The prefix as it goes into the field: plain ASCII text with a space, or
/// an encoded word holding the prefix and the space.
fn rendered(prefix: &str) -> String {
    let printable = prefix.bytes().all(|b| (0x20..0x7f).contains(&b));
    if printable {
        format!("{prefix} ")
    } else {
        format!(
            "=?UTF-8?B?{}?= ",
            base64::engine::general_purpose::STANDARD.encode(format!("{prefix} "))
        )
    }
}

/// The message with `prefix` in front of its subject.
pub fn mark(raw: &[u8], prefix: &str) -> Vec<u8> {
    let prefix = rendered(prefix);
    let end = crate::text::HeaderEnd::of(raw).header;
    let mut at = 0;
    while at < end {
        let line_end = raw[at..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |i| at + i + 1);
        let line = &raw[at..line_end];
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            // After "Subject:" and the white space that follows it.
            let mut value = at + 8;
            while value < line_end && matches!(raw[value], b' ' | b'\t') {
                value += 1;
            }
            // A subject that already starts with the mark (a reply, or a
            // message marked by another gateway or an earlier pass) is not
            // marked again: "[!!SPAM] [!!SPAM] ..." tells nobody more.
            let mark = prefix.trim_end().as_bytes();
            if raw[value..line_end].len() >= mark.len()
                && raw[value..value + mark.len()].eq_ignore_ascii_case(mark)
            {
                return raw.to_vec();
            }
            let first_line_len = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
            let mut out = Vec::with_capacity(raw.len() + prefix.len() + 3);
            // The sender's white space after the colon stays as it was
            // (walkAL 7: two spaces became one); none gets one.
            out.extend_from_slice(&raw[..value]);
            if value == at + 8 {
                out.push(b' ');
            }
            out.extend_from_slice(prefix.trim_end().as_bytes());
            let empty = matches!(raw.get(value), Some(b'\r' | b'\n') | None);
            if first_line_len + prefix.len() + 1 > MAX_LINE {
                out.extend_from_slice(b"\r\n ");
            } else if !empty {
                out.push(b' ');
            }
            out.extend_from_slice(&raw[value..]);
            return out;
        }
        at = line_end;
    }
    // No Subject: add one at the end of the header.
    let mut out = Vec::with_capacity(raw.len() + prefix.len() + 12);
    out.extend_from_slice(&raw[..end]);
    if end > 0 && !raw[..end].ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Subject: ");
    out.extend_from_slice(prefix.trim_end().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&raw[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn a_plain_subject_gets_the_prefix_and_nothing_else_changes() {
        let m = b"From: a@x\r\nSubject: Hello there\r\nTo: b@y\r\n\r\nSubject: body\r\n";
        assert_eq!(
            s(mark(m, "[!!SPAM]")),
            "From: a@x\r\nSubject: [!!SPAM] Hello there\r\nTo: b@y\r\n\r\nSubject: body\r\n"
        );
        let m = b"subject:no space\r\n\r\nbody";
        assert_eq!(s(mark(m, "[X]")), "subject: [X] no space\r\n\r\nbody");
        // walkAL 7: the white space after the colon is the sender's.
        let m = b"Subject:  Linux-Announce Digest #180\r\n\r\nbody";
        assert_eq!(
            s(mark(m, "[X]")),
            "Subject:  [X] Linux-Announce Digest #180\r\n\r\nbody"
        );
        let m = b"Subject:\tTabbed\r\n\r\nbody";
        assert_eq!(s(mark(m, "[X]")), "Subject:\t[X] Tabbed\r\n\r\nbody");
    }

    #[test]
    fn an_encoded_subject_stays_encoded() {
        let m = b"Subject: =?UTF-8?B?w5xiZXJ3ZWlzdW5n?=\r\n\r\nx\r\n";
        let out = s(mark(m, "[!!SPAM]"));
        assert_eq!(
            out,
            "Subject: [!!SPAM] =?UTF-8?B?w5xiZXJ3ZWlzdW5n?=\r\n\r\nx\r\n"
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(out.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some("[!!SPAM] Überweisung"));
    }

    #[test]
    fn a_prefix_that_is_not_ascii_becomes_an_encoded_word() {
        let m = b"Subject: =?UTF-8?B?w5xiZXJ3ZWlzdW5n?=\r\n\r\nx\r\n";
        let out = s(mark(m, "[СПАМ]"));
        assert!(out.is_ascii(), "{out}");
        let parsed = mail_parser::MessageParser::default()
            .parse(out.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some("[СПАМ] Überweisung"));
    }

    #[test]
    fn a_folded_subject_keeps_its_folding() {
        let m = b"Subject: first part\r\n second part\r\nTo: b@y\r\n\r\nx\r\n";
        let out = s(mark(m, "[P]"));
        assert_eq!(
            out,
            "Subject: [P] first part\r\n second part\r\nTo: b@y\r\n\r\nx\r\n"
        );
        let long = format!("Subject: {}\r\n\r\nx\r\n", "y".repeat(990));
        let out = s(mark(long.as_bytes(), "[PROBABLE SPAM]"));
        assert!(out.lines().all(|l| l.len() <= MAX_LINE), "{out}");
        assert!(out.starts_with("Subject: [PROBABLE SPAM]\r\n yyy"), "{out}");
    }

    #[test]
    fn a_message_without_subject_gets_one() {
        assert_eq!(
            s(mark(b"From: a@x\r\n\r\nbody\r\n", "[X]")),
            "From: a@x\r\nSubject: [X]\r\n\r\nbody\r\n"
        );
        assert_eq!(
            s(mark(b"From: a@x", "[X]")),
            "From: a@x\r\nSubject: [X]\r\n"
        );
        assert_eq!(
            s(mark(b"Subject:\r\n\r\nx", "[X]")),
            "Subject: [X]\r\n\r\nx"
        );
    }

    /// walkI 22: "[!!SPAM] [!!SPAM] FREE MONEY".
    #[test]
    fn a_subject_already_marked_is_not_marked_again() {
        let m = b"Subject: [!!SPAM] FREE MONEY\r\n\r\nx\r\n";
        assert_eq!(mark(m, "[!!SPAM]"), m.to_vec());
        let m = b"Subject: [!!spam] free\r\n\r\nx\r\n";
        assert_eq!(mark(m, "[!!SPAM]"), m.to_vec(), "any case");
        assert_eq!(
            s(mark(b"Subject: Re: [!!SPAM] x\r\n\r\n", "[!!SPAM]")),
            "Subject: [!!SPAM] Re: [!!SPAM] x\r\n\r\n"
        );
    }
}
