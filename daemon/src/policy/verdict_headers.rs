//! The verdict headers, `X-Mailward-AV` and `X-Mailward-Spam`: only the
//! ones this gateway writes leave it. A message that arrives with fields of
//! those names (a spammer's `X-Mailward-Spam: as/clean`, or an upstream
//! gateway's verdict) has them removed from every copy delivered, so that a
//! mailbox rule or a downstream filter that reads them reads ours alone, as
//! SpamAssassin removes the `X-Spam-*` fields a message comes with. The
//! stored copies (quarantine, archive) keep the message as it came.

/// The names of the fields the checks write (see `check::av::header` and
/// the spam evidence's `header`).
pub const NAMES: [&str; 2] = ["X-Mailward-AV", "X-Mailward-Spam"];

/// Whether header line `line` (the first line of a field) is one of ours.
fn is_verdict_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    NAMES
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// How many verdict fields the header block of `raw` holds.
pub fn count(raw: &[u8]) -> usize {
    fields(raw).filter(|&(_, _, ours)| ours).count()
}

/// Counts and logs, once per message, that `raw` came with verdict
/// fields (which the delivered copies lose).
pub fn note_foreign(
    stats: &mailward_metrics::Stats,
    queue_id: &crate::envelope::QueueId,
    raw: &[u8],
) {
    let fields = count(raw);
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
pub fn strip(raw: &[u8]) -> Option<Vec<u8>> {
    if count(raw) == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut end = 0;
    for (start, stop, ours) in fields(raw) {
        if !ours {
            out.extend_from_slice(&raw[start..stop]);
        }
        end = stop;
    }
    out.extend_from_slice(&raw[end..]);
    Some(out)
}

/// The header fields of `raw` as (start, end, is a verdict field), each
/// with its continuation lines, up to the empty line that ends the header
/// block (LF or CRLF line ends). A line before the first field that is
/// neither (a stray continuation) counts as a field that is not ours.
fn fields(raw: &[u8]) -> impl Iterator<Item = (usize, usize, bool)> + '_ {
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
        let ours = is_verdict_field(line);
        at = first;
        while at < raw.len() && matches!(raw[at], b' ' | b'\t') {
            at = line_end(at);
        }
        Some((start, at, ours))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_verdict_fields_go_with_their_folded_lines_and_nothing_else() {
        let raw = b"Received: from x\r\n\tby y\r\nX-Mailward-Spam: as/clean;\r\n score=-5.0\r\nSubject: hi\r\nx-mailward-av : clean\r\nX-Mailward-Other: kept\r\n\r\nX-Mailward-AV: in the body\r\n";
        assert_eq!(count(raw), 2);
        assert_eq!(
            strip(raw).unwrap(),
            b"Received: from x\r\n\tby y\r\nSubject: hi\r\nX-Mailward-Other: kept\r\n\r\nX-Mailward-AV: in the body\r\n"
        );
    }

    #[test]
    fn a_message_without_them_is_not_copied() {
        assert_eq!(
            strip(b"Subject: hi\r\n\r\nX-Mailward-Spam: as/clean\r\n"),
            None
        );
        assert_eq!(strip(b""), None);
        assert_eq!(strip(b"\r\nbody"), None);
    }

    #[test]
    fn lf_line_ends_and_a_header_without_a_body() {
        assert_eq!(
            strip(b"X-Mailward-AV: clean\nFrom: a@b\n").unwrap(),
            b"From: a@b\n"
        );
        assert_eq!(strip(b"X-Mailward-Spam: as/clean").unwrap(), b"");
    }
}
