//! Reading messages as a user would check them: header fields (unfolded),
//! the body, the queue IDs Mailward wrote into its `Received:` headers, and
//! the message minus the header lines Mailward adds.

use crate::smtp::is_queue_id;

/// The header section of a message (CRLF or LF), without the empty line.
pub fn header_section(message: &str) -> &str {
    split_message(message).0
}

/// The body of a message: everything after the first empty line.
pub fn body(message: &str) -> &str {
    split_message(message).1
}

fn split_message(message: &str) -> (&str, &str) {
    for sep in ["\r\n\r\n", "\n\n"] {
        if let Some(at) = message.find(sep) {
            // The first empty line wins, whichever line ending it has.
            let other = if sep == "\r\n\r\n" {
                "\n\n"
            } else {
                "\r\n\r\n"
            };
            if let Some(other_at) = message.find(other) {
                if other_at < at {
                    continue;
                }
            }
            return (&message[..at], &message[at + sep.len()..]);
        }
    }
    (message, "")
}

/// The header fields of a message, in order, with continuation lines
/// unfolded (joined with one space) and the value trimmed.
pub fn headers(message: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in header_section(message).lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}

/// The first value of the header field `name` (case-insensitive).
pub fn header(message: &str, name: &str) -> Option<String> {
    headers(message)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The queue ID in one `Received:` value written by Mailward ("... id
/// ID; date"), if it has one.
pub fn queue_id_in_received(value: &str) -> Option<String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    words.windows(2).find_map(|w| {
        let id = w[1].trim_end_matches(';');
        (w[0].eq_ignore_ascii_case("id") && is_queue_id(id)).then(|| id.to_string())
    })
}

/// Every Mailward queue ID found in the message's `Received:` headers.
pub fn mailward_queue_ids(message: &str) -> Vec<String> {
    headers(message)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Received"))
        .filter_map(|(_, v)| queue_id_in_received(&v))
        .collect()
}

/// The message without the header lines Mailward adds: any
/// `X-Mailward-*` field (the verdict goes on top) and the `Received:` field
/// that comes first after those (recognised by its queue ID). The rest is
/// left byte for byte as it is.
pub fn strip_added_headers(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut dropping = false;
    let mut first = true;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(line);
            out.extend_from_slice(rest);
            break;
        }
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        if !continuation {
            let text = String::from_utf8_lossy(line);
            let lower = text.to_ascii_lowercase();
            let verdict = lower.starts_with("x-mailward-");
            dropping = verdict
                || (first && lower.starts_with("received:") && received_is_ours(line, rest));
            first = first && verdict;
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Whether the `Received:` field starting with `line` (and continued in
/// the lines of `rest`) carries a Mailward queue ID.
fn received_is_ours(line: &[u8], rest: &[u8]) -> bool {
    let mut value = String::from_utf8_lossy(line).into_owned();
    for next in rest.split(|&b| b == b'\n') {
        if next.starts_with(b" ") || next.starts_with(b"\t") {
            value.push(' ');
            value.push_str(&String::from_utf8_lossy(next));
        } else {
            break;
        }
    }
    queue_id_in_received(value.split_once(':').map_or("", |(_, v)| v)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAYED: &str = "Received: from client (localhost [127.0.0.1])\r\n\tby mw.test (Mailward) with ESMTP id 00000000000000AB;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\nX-Mailward-AV: clean\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn finds_the_queue_id_and_strips_our_headers() {
        assert_eq!(mailward_queue_ids(RELAYED), ["00000000000000AB"]);
        assert_eq!(header(RELAYED, "subject").as_deref(), Some("hi"));
        assert_eq!(body(RELAYED), "body\r\n");
        assert_eq!(
            strip_added_headers(RELAYED.as_bytes()),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn strips_the_verdict_on_top_and_our_received_below_it() {
        let msg = "X-Mailward-AV: clean;\r\n\tbases=2026-11-24T00:00:00Z; version=\"1\"\r\n\
Received: from client (localhost [127.0.0.1])\r\n\tby mw.test (Mailward) with ESMTP id 00000000000000AB;\r\n\
\tMon, 1 Jan 2024 00:00:00 +0000\r\nReceived: from a by b id 0000000000000001; date\r\n\
Subject: hi\r\n\r\nbody\r\n";
        assert_eq!(
            strip_added_headers(msg.as_bytes()),
            b"Received: from a by b id 0000000000000001; date\r\nSubject: hi\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn leaves_other_received_headers() {
        let msg = b"Received: from a by b id 1234; date\r\nSubject: x\r\n\r\n.\r\n";
        assert_eq!(strip_added_headers(msg), msg);
    }
}
