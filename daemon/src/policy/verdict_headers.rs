//! The verdict headers, `X-Mailward-AV`, `X-Mailward-Spam`,
//! `X-Mailward-Spam-Rating` and the
//! `Authentication-Results` fields in our name: only the ones this gateway
//! writes leave it. A message that arrives with fields of those names (a
//! spammer's `X-Mailward-Spam: as/clean`, an upstream gateway's verdict,
//! an `Authentication-Results: OURNAME; spf=pass` written by the sender)
//! has them removed from every copy delivered, so that a mailbox rule or a
//! downstream filter that reads them reads ours alone, as SpamAssassin
//! removes the `X-Spam-*` fields a message comes with and as RFC 8601
//! section 5 asks of a border MTA. `Authentication-Results` fields of
//! other authserv-ids (another domain's verdicts) stay. The stored copies
//! (quarantine, archive) keep the message as it came.

/// The names of the fields the checks write (see `check::av::header` and
/// the spam evidence's `header`).
pub const NAMES: [&str; 3] = ["X-Mailward-AV", "X-Mailward-Spam", "X-Mailward-Spam-Rating"];

/// Whether `field` (with its folded lines) is one of ours: a verdict
/// field, or an `Authentication-Results` whose authserv-id is
/// `authserv_id` (ours: `server.authserv_id`, by default `server.hostname`).
fn is_verdict_field(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = field[..colon].trim_ascii_end();
    if name.eq_ignore_ascii_case(b"Authentication-Results") {
        return crate::auth::results::authserv_id(&field[colon + 1..])
            .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id.as_bytes()));
    }
    NAMES
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// How many verdict fields the header block of `raw` holds.
pub fn count(raw: &[u8], authserv_id: &str) -> usize {
    fields(raw, authserv_id)
        .filter(|&(_, _, ours)| ours)
        .count()
}

/// Counts and logs, once per message, that `raw` came with verdict
/// fields (which the delivered copies lose).
pub fn note_foreign(
    stats: &mailward_metrics::Stats,
    queue_id: &crate::envelope::QueueId,
    raw: &[u8],
    authserv_id: &str,
) {
    let fields = count(raw, authserv_id);
    if fields > 0 {
        crate::events::ForeignVerdictHeaders {
            id: queue_id,
            fields,
        }
        .emit(stats);
    }
}

/// `raw` without the verdict fields of its header block (each with its
/// folded lines), or None when it has none (no copy is made). The body,
/// and any message attached in it, is left alone.
pub fn strip(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    // One pass over the header block: the fields are few.
    let fields: Vec<(usize, usize, bool)> = fields(raw, authserv_id).collect();
    if !fields.iter().any(|&(_, _, ours)| ours) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut end = 0;
    for (start, stop, ours) in fields {
        if !ours {
            out.extend_from_slice(&raw[start..stop]);
        }
        end = stop;
    }
    out.extend_from_slice(&raw[end..]);
    Some(out)
}

/// The verdict fields of `raw`'s header block, in order and with their
/// folded lines, and `raw` without them; None when it has none. For a
/// copy this gateway delivered (the outgoing archive's) sent again: its
/// verdict fields are ours, and go on top of the copy as added headers,
/// which the delivery does not strip (`archive send` lost `X-Mailward-AV`
/// and the rest, as [`strip`] took them for a sender's). Never for a copy
/// as received: there they are the sender's.
pub fn take(raw: &[u8], authserv_id: &str) -> Option<(String, Vec<u8>)> {
    let fields: Vec<(usize, usize, bool)> = fields(raw, authserv_id).collect();
    if !fields.iter().any(|&(_, _, ours)| ours) {
        return None;
    }
    let mut taken = Vec::new();
    let mut rest = Vec::with_capacity(raw.len());
    let mut end = 0;
    for (start, stop, ours) in fields {
        if ours {
            taken.extend_from_slice(&raw[start..stop]);
        } else {
            rest.extend_from_slice(&raw[start..stop]);
        }
        end = stop;
    }
    rest.extend_from_slice(&raw[end..]);
    Some((String::from_utf8_lossy(&taken).into_owned(), rest))
}

/// The header fields of `raw` as (start, end, is a verdict field), each
/// with its continuation lines, up to the empty line that ends the header
/// block (LF or CRLF line ends). A line before the first field that is
/// neither (a stray continuation) counts as a field that is not ours.
fn fields<'a>(
    raw: &'a [u8],
    authserv_id: &'a str,
) -> impl Iterator<Item = (usize, usize, bool)> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= raw.len() {
            return None;
        }
        let line_end = |from: usize| {
            raw[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| from + i + 1)
        };
        let first = line_end(at);
        let line = &raw[at..first];
        if line == b"\r\n" || line == b"\n" {
            return None;
        }
        let start = at;
        at = first;
        while at < raw.len() && matches!(raw[at], b' ' | b'\t') {
            at = line_end(at);
        }
        Some((start, at, is_verdict_field(&raw[start..at], authserv_id)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "mw.example.net";

    #[test]
    fn take_moves_the_verdict_fields_out_in_order() {
        let raw = b"Received: from x\r\nX-Mailward-AV: clean\r\nSubject: hi\r\nX-Mailward-Spam: as/clean;\r\n score=-5.0\r\n\r\nX-Mailward-AV: in the body\r\n";
        let (taken, rest) = take(raw, ID).unwrap();
        assert_eq!(
            taken,
            "X-Mailward-AV: clean\r\nX-Mailward-Spam: as/clean;\r\n score=-5.0\r\n"
        );
        assert_eq!(
            rest,
            b"Received: from x\r\nSubject: hi\r\n\r\nX-Mailward-AV: in the body\r\n"
        );
        // What the delivery sends: the taken fields on top survive strip.
        let mut sent = taken.into_bytes();
        sent.extend_from_slice(&rest);
        assert_eq!(count(&sent, ID), 2);
        assert!(take(b"Subject: hi\r\n\r\nbody\r\n", ID).is_none());
    }

    #[test]
    fn forged_verdict_fields_go_with_their_folded_lines_and_nothing_else() {
        let raw = b"Received: from x\r\n\tby y\r\nX-Mailward-Spam: as/clean;\r\n score=-5.0\r\nX-Mailward-Spam-Rating: 0\r\nSubject: hi\r\nx-mailward-av : clean\r\nX-Mailward-Other: kept\r\n\r\nX-Mailward-AV: in the body\r\n";
        assert_eq!(count(raw, ID), 3);
        assert_eq!(
            strip(raw, ID).unwrap(),
            b"Received: from x\r\n\tby y\r\nSubject: hi\r\nX-Mailward-Other: kept\r\n\r\nX-Mailward-AV: in the body\r\n"
        );
    }

    #[test]
    fn a_message_without_them_is_not_copied() {
        assert_eq!(
            strip(b"Subject: hi\r\n\r\nX-Mailward-Spam: as/clean\r\n", ID),
            None
        );
        assert_eq!(strip(b"", ID), None);
        assert_eq!(strip(b"\r\nbody", ID), None);
    }

    #[test]
    fn lf_line_ends_and_a_header_without_a_body() {
        assert_eq!(
            strip(b"X-Mailward-AV: clean\nFrom: a@b\n", ID).unwrap(),
            b"From: a@b\n"
        );
        assert_eq!(strip(b"X-Mailward-Spam: as/clean", ID).unwrap(), b"");
    }

    #[test]
    fn authentication_results_in_our_name_go_and_others_stay() {
        let raw = b"Authentication-Results: MW.example.net; spf=pass\r\n\
Authentication-Results: (forged)\r\n mw.example.net;\r\n\tdkim=pass header.d=bank.example\r\n\
Authentication-Results: mx.other.example; spf=fail\r\n\
Authentication-Results: mw.example.net.evil; none\r\n\
Authentication-Results: \"mw.example.net\"; none\r\n\
Subject: hi\r\n\r\nbody\r\n";
        assert_eq!(count(raw, ID), 3);
        assert_eq!(
            strip(raw, ID).unwrap(),
            b"Authentication-Results: mx.other.example; spf=fail\r\n\
Authentication-Results: mw.example.net.evil; none\r\n\
Subject: hi\r\n\r\nbody\r\n"
        );
    }
}
