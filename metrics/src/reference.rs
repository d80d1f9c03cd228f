//! The metrics reference (docs/metrics.md), generated from the catalogue; a
//! test fails when the file in the repository drifts from it.

use crate::catalogue::{Kind, CATALOGUE, TOP_TABLES};
use std::fmt::Write;

pub fn markdown() -> String {
    let mut s = String::new();
    s.push_str("# Metrics reference\n\n");
    s.push_str("Generated from `metrics/src/catalogue.rs` (`cargo test -p mailward-metrics` fails when this file drifts; \
        regenerate with `MAILWARD_UPDATE_DOCS=1 cargo test -p mailward-metrics reference`).\n\n");
    s.push_str("Every statistic is declared once and rendered from one snapshot to Prometheus (`/metrics`), \
        the stats file (`mailward stats write`, keyed by the Prometheus name) and SNMP (MAILWARD-MIB: \
        the MIB object, at the MIB location, given as its parent's name and arc and as the OID under \
        `mailwardMIB`, 1.3.6.1.4.1.32473.25 by default; a labelled statistic is a table `OBJECTTable` \
        whose column `OBJECTCount` is indexed by the label, a histogram the scalars `OBJECTCount` and \
        `OBJECTTotal`). The objects under `mwStatistics` (`mwMessages`, `mwResources`, `mwViruses`, \
        `mwFilters`, `mwRaw`) are collected when their category is in `statistics.options`, except \
        `mwCounterDiscontinuityTime`; those under `mwUpdate` and `mwAdmin` always are, on `/metrics` too \
        ([statistics.md](statistics.md#categories)). Counters are \
        64-bit and monotonic until `mailward stats reset` or a restart, either of which sets \
        `mailward_stats_reset_timestamp_seconds` (SNMP: `mwCounterDiscontinuityTime`, which every Counter64 \
        object's DESCRIPTION names). A 0/1 flag here is a TruthValue in SNMP: 1 is `true(1)`, 0 is `false(2)`. \
        A label value is the same word in SNMP, as the enumeration label of the table's index, except that \
        SMI labels cannot hold `_`: `not_found` is `notFound`, `not_listed` `notListed`, `not_needed` \
        `notNeeded`, `rolled_back` `rolledBack` ([snmp-objects.md](snmp-objects.md) lists them).\n\n");
    s.push_str(
        "| Prometheus name | kind | labels | unit | MIB location | MIB object | meaning |\n",
    );
    s.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for st in CATALOGUE {
        let labels = st
            .label
            .map(|(n, v)| format!("`{n}`: {}", v.join(", ")))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | `{}` | {} |",
            st.prom,
            st.kind.as_str(),
            labels,
            st.unit.as_str(),
            location(&crate::snmp::base(crate::catalogue::place(st.id))),
            st.name,
            st.help
        );
    }
    let _ = writeln!(
        s,
        "| `mailward_build_info` | gauge | `version` | 1 | {} | `mwVersion` | Mailward's version; always 1. |",
        location(&[crate::snmp::ADMIN, &[1]].concat())
    );
    // The same figure under the standard process collector's name.
    for (id, prom, help) in crate::prometheus::STANDARD_TWINS {
        let st = crate::catalogue::stat(*id);
        let _ = writeln!(
            s,
            "| `{prom}` | {} |  | {} | {} | `{}` | {help} |",
            st.kind.as_str(),
            st.unit.as_str(),
            location(&crate::snmp::base(crate::catalogue::place(st.id))),
            st.name,
        );
    }

    s.push_str("\n## Reject reasons\n\n`mailward_messages_rejected_total` (`mwMessagesRejected`) counts \
        sessions and transactions refused in the SMTP session, once each. A transaction is one MAIL and \
        what follows it up to the reply to its DATA, RSET, a new HELO/EHLO, or the end of the session \
        (QUIT, the connection closed or timed out). It counts once when its MAIL is refused, when its \
        message is refused at or after DATA, or when it ends without a message accepted after some of \
        its recipients were refused (DATA answered `554 5.5.1 No valid recipients`, RSET, a new greeting, \
        the end of the session), then with the reason of its first refused recipient; a message refused \
        at DATA after some recipients were refused counts once, with the DATA reason. A message accepted \
        with `250` counts none, even when some of its recipients were refused. A session counts once when \
        it is refused at connect or at HELO/EHLO, or closed after too many errors. Unknown and \
        out-of-sequence commands (a MAIL before HELO or inside a transaction, a RCPT before MAIL, DATA \
        without any recipient given) are not transactions: they count only in that session close. \
        `mailward_recipients_rejected_total` (`mwRecipientsRejected`) counts every RCPT refused in a \
        transaction, by the same reasons, syntax included. Behind Postfix over the milter protocol the \
        same rules apply to what Mailward itself refuses (recipients past `limits.max_rcpts_per_message`, \
        SPF at MAIL, the message at its end); what the MTA refuses is counted by the MTA.\n\n");
    s.push_str("| reason | counts |\n| --- | --- |\n");
    for (reason, meaning) in crate::catalogue::REJECT_REASONS
        .iter()
        .zip(crate::catalogue::REJECT_REASON_MEANINGS)
    {
        let _ = writeln!(s, "| `{reason}` | {meaning} |");
    }
    s.push_str("\n## Top-N tables\n\nBounded by `statistics.top`; one gauge per row, labelled `rank` (1 = most) and the item. \
        Ties rank by item name. Counts are kept for up to 10,000 distinct items per table, so an item that falls \
        out of the top N keeps its count; past that the smallest is forgotten.\n\n\
        Each (`rank`, item) pair is a series of its own: when the order changes, series start and stop, so over \
        Prometheus's retention a table leaves more series than it has rows (the `rank` label is part of the metrics' \
        contract: dashboards and scripts read it; `topk` and `sort_desc` rank by value without it). \
        Two tables hold personal data: `mailward_top_infected_sender_messages` envelope senders (chosen by \
        whoever sends the mail) and `mailward_top_infected_client_messages` client addresses. A site that must \
        not keep them in its Prometheus drops them in the scrape job; SNMP and the statistics file still have them:\n\n\
        ```yaml\n\
        metric_relabel_configs:\n  \
        - source_labels: [__name__]\n    \
        regex: mailward_top_infected_(sender|client)_messages\n    \
        action: drop\n\
        ```\n\n");
    s.push_str("| Prometheus name | item label | MIB location | MIB table | meaning |\n| --- | --- | --- | --- | --- |\n");
    for t in TOP_TABLES {
        let _ = writeln!(
            s,
            "| `{}` | `{}` | {} | `{}Table` | {} |",
            t.prom,
            t.item_label,
            location(&[crate::snmp::STATISTICS, &[t.category as u32, t.arc]].concat()),
            t.name,
            t.help
        );
    }
    s.push_str("\n## Policy groups\n\nCounters per policy group of the configuration (`default` and each `[group.NAME]`); \
        exported from start (or from the reload that adds the group), at 0 until a message falls in it. \
        A message with recipients in two groups counts in both, each by its own plan. A group a reload \
        removes keeps its series, standing still, until the next restart or `stats reset`.\n\n");
    s.push_str("| Prometheus name | label | MIB column (`mwPolicyGroupTable`) | meaning |\n| --- | --- | --- | --- |\n");
    for col in crate::group::GROUP_COLUMNS {
        let _ = writeln!(
            s,
            "| `{}` | `group` | `{}` (.{}) | {} |",
            col.prom, col.mib, col.arc, col.help
        );
    }
    s.push_str("\n## Configuration\n\nThe configuration's life since start, under `mwConfig` in SNMP and in the \
        stats file's `config` object; not zeroed by `stats reset`.\n\n");
    s.push_str("| Prometheus name | MIB object | meaning |\n| --- | --- | --- |\n");
    for (prom, mib, help) in crate::prometheus::CONFIG_METRICS {
        let _ = writeln!(s, "| `{prom}` | {mib} | {help} |");
    }
    s.push_str("\n## Kinds\n\n");
    for k in [Kind::Counter, Kind::Gauge, Kind::Histogram] {
        let what = match k {
            Kind::Counter => "monotonic until reset; SNMP Counter64",
            Kind::Gauge => {
                "a level or a time. SNMP: a level is `MwGauge64`, a textual convention on \
                 Counter64 like HCNUM-TC's CounterBasedGauge64 (snmpget shows `Counter64`), \
                 except `mwBasesRecords`, a Gauge32 because notifications carry it and may not \
                 carry Counter64; a 0/1 flag is a TruthValue (true(1), false(2)); a time is a \
                 DateAndTime in UTC, the all-zero '0000000000000000'H where Prometheus says 0; \
                 `mwUpdateLastResult` is one INTEGER (MwUpdateResult) naming the result where \
                 Prometheus has a 0/1 series per result"
            }
            Kind::Histogram => {
                "Prometheus histogram `_bucket{le}`, `_sum`, `_count`; SNMP shows count and sum \
                 (Counter64, the sum in microseconds for times, in thousandths of a point for spam \
                 scores). Sums are kept as whole microseconds or thousandths, each measurement \
                 rounded to the nearest: `_sum` is that integer in seconds or points"
            }
        };
        let _ = writeln!(s, "- **{}**: {what}", k.as_str());
    }
    s
}

/// Where an object stands in MAILWARD-MIB: its parent's name and its arc
/// (`mwResources.10`), and its OID under the root (`.1.2.2.10`).
fn location(oid: &[u32]) -> String {
    let Some((last, parent)) = oid.split_last() else {
        return String::new();
    };
    let parent_name = crate::snmp::objects()
        .into_iter()
        .find(|o| o.oid == parent)
        .map_or_else(|| String::from("mailwardMIB"), |o| o.name);
    let dotted: Vec<String> = oid.iter().map(u32::to_string).collect();
    format!("`{parent_name}.{last}` (.{})", dotted.join("."))
}

#[cfg(test)]
mod tests {
    #[test]
    fn locations_are_the_mibs() {
        use crate::catalogue::{place, StatId};
        let at = |id| super::location(&crate::snmp::base(place(id)));
        assert_eq!(at(StatId::MessagesReceived), "`mwMessages.1` (.1.2.1.1)");
        assert_eq!(at(StatId::StartTime), "`mwAdmin.2` (.1.4.2)");
        assert_eq!(at(StatId::UpdateLastCheck), "`mwUpdate.1` (.1.3.1)");
    }

    #[test]
    fn reference_matches_docs_metrics_md() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
        let want = super::markdown();
        if std::env::var_os("MAILWARD_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/metrics.md drifted from the catalogue: run MAILWARD_UPDATE_DOCS=1 cargo test -p mailward-metrics reference"
        );
    }
}

/// The table of MAILWARD-MIB objects (docs/snmp-objects.md).
pub fn snmp_markdown() -> String {
    use crate::snmp::{objects, Access, Node};
    let mut s = String::new();
    s.push_str("# MAILWARD-MIB objects\n\n");
    s.push_str("Generated from the catalogue (`metrics/src/snmp.rs`), like `mibs/MAILWARD-MIB.txt` itself; \
        OIDs are relative to the module root `mailwardMIB` (1.3.6.1.4.1.32473.25 unless `agentx.root_oid` says otherwise). \
        Scalars are read with `.0`, table columns with the row index.\n\n");
    s.push_str("| object | OID | kind | syntax | access | description |\n| --- | --- | --- | --- | --- | --- |\n");
    for o in objects() {
        let kind = match &o.node {
            Node::Group => "node",
            Node::Scalar => "scalar",
            Node::Table => "table",
            Node::Entry(_) => "row",
            Node::Column => "column",
        };
        // Enumerations by their MIB labels (`notListed`), as an NMS
        // spells them, not by the Prometheus label values.
        let syntax = o
            .syntax
            .map(|x| match x {
                crate::snmp::Syntax::Enum(names) => format!(
                    "enum([{}])",
                    names
                        .iter()
                        .map(|n| crate::snmp::smi_label(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        let access = match o.access {
            Access::NotAccessible => "not-accessible",
            Access::ReadOnly => "read-only",
            Access::ForNotify => "accessible-for-notify",
        };
        let access = if matches!(o.node, Node::Group) {
            ""
        } else {
            access
        };
        let oid: Vec<String> = o.oid.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(
            s,
            "| `{}` | .{} | {kind} | {syntax} | {access} | {} |",
            o.name,
            oid.join("."),
            o.description.replace('|', "/")
        );
    }
    s.push_str("\n## Notifications\n\n| notification | OID | objects | when |\n| --- | --- | --- | --- |\n");
    for (name, arc, objs, d) in crate::mib::NOTIFICATIONS {
        let _ = writeln!(s, "| `{name}` | .0.{arc} | {} | {d} |", objs.join(", "));
    }
    s
}

#[cfg(test)]
mod snmp_tests {
    #[test]
    fn snmp_objects_match_docs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/snmp-objects.md");
        let want = super::snmp_markdown();
        if std::env::var_os("MAILWARD_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/snmp-objects.md drifted from the catalogue: run MAILWARD_UPDATE_DOCS=1 cargo test -p mailward-metrics"
        );
    }
}
