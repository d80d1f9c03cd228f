//! `mailward queue summary`: where the waiting mail is going and how long
//! it has waited, per recipient domain, in age columns that double (as
//! Postfix's qshape draws them), with the last error of each domain. It
//! answers "why is the queue growing?" without reading every entry: one
//! domain with all the old mail and the same 4xx is a next hop to look at.
//!
//! Computed by the CLI from `queue list`'s answer: the daemon does no more
//! work than for a listing.

use super::admin::QueueItem;
use serde::Serialize;
use std::collections::BTreeMap;

/// Upper bounds of the age columns, in minutes; the last column is older.
pub const BUCKETS: [i64; 7] = [5, 10, 20, 40, 80, 160, 320];

/// The waiting recipients of one domain (or all of them: `TOTAL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub domain: String,
    /// Recipients not yet delivered or failed.
    pub waiting: u64,
    /// Per age column ([`BUCKETS`], then older).
    pub ages: [u64; BUCKETS.len() + 1],
    /// Seconds since the oldest of them was received.
    pub oldest: i64,
    /// The last error of its most recently tried recipient, if any.
    pub last_error: Option<String>,
}

/// The queue by domain: the total first, then the domains with the most
/// waiting recipients first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The names of the age columns ("<5m" ... "older"), for `--json`.
    pub columns: Vec<String>,
    pub messages: u64,
    /// Messages held by an administrator (`queue hold`): not counted in
    /// the rows, since they do not wait for a next hop.
    pub held: u64,
    pub total: Row,
    pub domains: Vec<Row>,
}

/// Summarises `items` at unix time `now`.
pub fn summarize(items: &[QueueItem], now: i64) -> Summary {
    let mut total = Row {
        domain: "TOTAL".into(),
        ..Row::default()
    };
    // Per domain: the row, and when its error was last seen (the message's
    // last attempt is not kept, so the most recent message with an error).
    let mut by_domain: BTreeMap<String, (Row, i64)> = BTreeMap::new();
    let mut messages = 0;
    let mut held = 0;
    for item in items {
        if item.held {
            held += 1;
            continue;
        }
        let age = (now - item.received_at).max(0);
        let column = BUCKETS
            .iter()
            .position(|b| age < b * 60)
            .unwrap_or(BUCKETS.len());
        let mut counted = false;
        for r in item.recipients.iter().filter(|r| r.state == "pending") {
            counted = true;
            let domain = r
                .address
                .rsplit_once('@')
                .map_or("(no domain)", |(_, d)| d)
                .to_ascii_lowercase();
            let (row, seen) = by_domain.entry(domain.clone()).or_insert_with(|| {
                (
                    Row {
                        domain,
                        ..Row::default()
                    },
                    i64::MIN,
                )
            });
            for row in [&mut *row, &mut total] {
                row.waiting += 1;
                row.ages[column] += 1;
                row.oldest = row.oldest.max(age);
            }
            if let Some(e) = r.detail.as_ref().filter(|e| !e.is_empty()) {
                if item.received_at >= *seen {
                    *seen = item.received_at;
                    row.last_error = Some(e.clone());
                }
            }
        }
        if counted {
            messages += 1;
        }
    }
    let mut domains: Vec<Row> = by_domain.into_values().map(|(r, _)| r).collect();
    domains.sort_by(|a, b| b.waiting.cmp(&a.waiting).then(a.domain.cmp(&b.domain)));
    Summary {
        columns: columns(),
        messages,
        held,
        total,
        domains,
    }
}

/// "<5m", "<10m", ... "older".
fn columns() -> Vec<String> {
    BUCKETS
        .iter()
        .map(|b| format!("<{b}m"))
        .chain(std::iter::once("older".to_string()))
        .collect()
}

/// The summary as a table, errors cut to fit a wide terminal.
pub fn render(s: &Summary) -> String {
    let held = if s.held > 0 {
        format!(
            "{} message(s) held by an administrator, not counted here (mailward queue release ID).\n",
            s.held
        )
    } else {
        String::new()
    };
    if s.total.waiting == 0 {
        return format!("No recipient is waiting for a next hop.\n{held}");
    }
    let width = s
        .domains
        .iter()
        .map(|r| r.domain.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{} recipient(s) waiting in {} message(s), the oldest for {}.\n\n",
        s.total.waiting,
        s.messages,
        crate::text::age(s.total.oldest)
    );
    let mut header = format!("{:<width$} {:>7}", "domain", "waiting");
    for c in &s.columns {
        header += &format!(" {c:>5}");
    }
    header += "  last error";
    out += header.trim_end();
    out.push('\n');
    for row in std::iter::once(&s.total).chain(&s.domains) {
        let mut line = format!("{:<width$} {:>7}", row.domain, row.waiting);
        for n in row.ages {
            line += &format!(" {n:>5}");
        }
        if let Some(e) = &row.last_error {
            line += "  ";
            let shown = crate::text::cut(e, 80);
            line += &shown.replace(['\r', '\n'], " ");
            // Cut errors say so (walkK): `queue list` and --json have them whole.
            if shown.len() < e.len() {
                line.push('…');
            }
        }
        out += &line;
        out.push('\n');
    }
    out += &held;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::admin::RcptView;

    fn item(received_at: i64, rcpts: &[(&str, &str, Option<&str>)]) -> QueueItem {
        QueueItem {
            id: "0".into(),
            size: 1,
            received_at,
            sender: "a@b".into(),
            recipients: rcpts
                .iter()
                .map(|(a, s, d)| RcptView {
                    address: a.to_string(),
                    state: s.to_string(),
                    detail: d.map(str::to_string),
                })
                .collect(),
            attempts: 1,
            next_attempt: 0,
            held: false,
            active: false,
        }
    }

    #[test]
    fn waiting_recipients_by_domain_and_age() {
        let now = 100_000;
        let items = [
            // 2 minutes old: two pending at slow.example, one delivered.
            item(
                now - 120,
                &[
                    ("a@slow.example", "pending", Some("451 4.7.1 Try later")),
                    ("b@Slow.Example", "pending", None),
                    ("c@fine.example", "delivered", Some("250 OK")),
                ],
            ),
            // 3 hours old: one pending at down.example, one failed.
            item(
                now - 3 * 3600,
                &[
                    ("d@down.example", "pending", Some("connect: timed out")),
                    ("e@gone.example", "failed", Some("550 5.1.1 No")),
                ],
            ),
            // 10 hours old, an older error at slow.example.
            item(
                now - 10 * 3600,
                &[("f@slow.example", "pending", Some("421 busy"))],
            ),
        ];
        let s = summarize(&items, now);
        assert_eq!(s.messages, 3);
        assert_eq!(s.columns.len(), s.total.ages.len());
        assert_eq!(s.columns[0], "<5m");
        assert_eq!(s.total.waiting, 4);
        assert_eq!(s.total.ages, [2, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(s.total.oldest, 10 * 3600);
        let names: Vec<&str> = s.domains.iter().map(|r| r.domain.as_str()).collect();
        assert_eq!(names, ["slow.example", "down.example"]);
        assert_eq!(s.domains[0].waiting, 3);
        // The newest message's error, not the older one's.
        assert_eq!(
            s.domains[0].last_error.as_deref(),
            Some("451 4.7.1 Try later")
        );
        let text = render(&s);
        assert!(
            text.starts_with("4 recipient(s) waiting in 3 message(s), the oldest for 10h 0m."),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("slow.example")
                && l.contains("    3     2")
                && l.ends_with("451 4.7.1 Try later")),
            "{text}"
        );
    }

    /// walkK: a long error was cut at 80 characters mid-word, unmarked.
    #[test]
    fn a_cut_error_ends_with_an_ellipsis() {
        let long = format!("4.4.3 MX look-up: vm: {}", "x".repeat(100));
        let s = summarize(&[item(0, &[("a@vm", "pending", Some(&long))])], 60);
        let text = render(&s);
        let row = text
            .lines()
            .find(|l| l.starts_with("vm"))
            .unwrap_or_default();
        assert!(row.ends_with('…'), "{text}");
        assert!(row.contains(crate::text::cut(&long, 80)), "{text}");
        let short = summarize(&[item(0, &[("a@vm", "pending", Some("421 busy"))])], 60);
        assert!(render(&short).lines().any(|l| l.ends_with("421 busy")));
    }

    #[test]
    fn an_empty_queue_says_so_and_held_mail_is_counted_apart() {
        assert_eq!(
            render(&summarize(&[], 0)),
            "No recipient is waiting for a next hop.\n"
        );
        let mut held = item(0, &[("a@slow.example", "pending", None)]);
        held.held = true;
        let s = summarize(&[held], 60);
        assert_eq!((s.held, s.total.waiting), (1, 0));
        assert!(render(&s).contains("1 message(s) held by an administrator"));
    }
}
