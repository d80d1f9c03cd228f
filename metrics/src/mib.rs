//! MAILWARD-MIB, generated from the object tree of [`crate::snmp`] (itself
//! generated from the catalogue). `mibs/MAILWARD-MIB.txt` in the repository
//! is this text; a test fails when it drifts, and the end-to-end tests lint
//! it with smilint and resolve it with snmptranslate.

use crate::snmp::{objects, Access, Node, Object, Syntax, ALERT_STATE_NAMES, UPDATE_RESULT_NAMES};
use std::fmt::Write;

/// The module root under `enterprises`.
pub const ENTERPRISE_ARCS: &str = "25";

/// One REVISION of the module, newest first in [`REVISIONS`].
pub struct Revision {
    /// `YYYYMMDDHHMMZ` (UTC).
    pub date: &'static str,
    /// How many objects the tree of [`crate::snmp::objects`] has in this
    /// revision: a test fails when objects are added without a revision
    /// that says so.
    pub objects: usize,
    pub description: &'static str,
}

/// The module's revisions, newest first (LAST-UPDATED is the first). An
/// NMS that loaded an older copy of the MIB sees from them what it lacks.
/// Objects are only ever added; none is renumbered or removed.
pub const REVISIONS: &[Revision] = &[
    Revision {
        date: "202612062230Z",
        objects: 242,
        description: "Added the notification mwProductErrorCleared: a \
            fault mwProductError reported has ended (the signature bases \
            on disk load again, a message store writes its copies again), \
            so that an NMS closes the alarm without polling. \
            mwSnmpNotificationsName has the value mwProductErrorCleared(9). \
            No object was added.",
    },
    Revision {
        date: "202612061700Z",
        objects: 242,
        description: "Added mwSpoolReadErrors (reads of a waiting message \
            that failed), mwSpoolSegmentsLost (spool segments deleted by \
            something other than mailward while accepted mail waited in \
            them: lost mail) and mwSpoolWriteStalled (seconds the current \
            spool write has been waiting, past 5): before this revision \
            those spool faults were only in the log and mailward status. \
            mwProductError is also sent once per lost spool segment.",
    },
    Revision {
        date: "202612061345Z",
        objects: 239,
        description: "Added mwDestinationSuspensions and \
            mwDestinationsSuspended: delivery destinations suspended after \
            connection-level failures in a row, whose mail then waits \
            without connections until a probe gets through. mwSessions \
            and mwSessionsOpened count an outbound session from the start \
            of its TCP connect: before this revision an outbound \
            connection counted only once the next hop had greeted it, so \
            connections stuck waiting for a greeting were not seen.",
    },
    Revision {
        date: "202612060735Z",
        objects: 237,
        description: "Added mwQueueOldestDeferred (seconds since the oldest \
            message tried and still waiting was received: mail not leaving, \
            which mailward status calls a problem past 30 minutes) and \
            mwBasesOnDiskBroken (the bases on disk do not load: a restart \
            would run without AV rules).",
    },
    Revision {
        date: "202612060730Z",
        objects: 235,
        description: "Descriptions only, no object was added: \
            mwProductError is sent for store write failures and bases on \
            disk that do not load too, not only for a component that \
            stopped; mwDnsServerSilent's probes go on 5 s after the last \
            one timed out, with or without mail.",
    },
    Revision {
        date: "202612060410Z",
        objects: 235,
        description: "Added mwStoreWriteErrorsTable: copies the quarantine \
            and the archive could not write (a full or read-only file \
            system), which were only logged.",
    },
    Revision {
        date: "202612060400Z",
        objects: 231,
        description: "mwSessionTimeoutsPhase has the value write(4): a \
            session closed because the client did not read our replies \
            within timeouts.command (it sends commands but does not read). \
            Before this revision such sessions were closed without being \
            counted. No object was added.",
    },
    Revision {
        date: "202612060215Z",
        objects: 231,
        description: "Added mwInboundTlsTable: inbound SMTP sessions by \
            STARTTLS outcome (tls, plain, failed), beside mwOutboundTlsTable.",
    },
    Revision {
        date: "202612060100Z",
        objects: 227,
        description: "DESCRIPTIONs in SNMP terms: the TruthValue objects \
            (mwAgentxConnected, mwStressMode, mwAgentxRegistered, \
            mwDnsServerSilent, mwBasesObsolete) say true(1) and false(2) \
            where they said 1 and 0, and other statistics are named by their \
            objects (mwPolicyGroupBlocked, mwPolicyGroupQuarantined, \
            mwQueueMessages, mwAgentxConnected). Every Counter64 names \
            mwCounterDiscontinuityTime as its discontinuity indicator, the \
            Counter32 mwConfigReloads and mwConfigReloadFailures \
            mwStartTime. MwUtf8String: a text longer than 255 octets now \
            ends with '...' where it is cut. mwSpamScoreTotal rounds each \
            score to the nearest thousandth (it cut it, and could serve a \
            thousandth less than it kept); mwUpdateLastCheck and \
            mwUpdateLastResult are kept across restarts. No object was \
            added.",
    },
    Revision {
        date: "202612052015Z",
        objects: 227,
        description: "Added mwMilterSlotsFull (times every milter connection \
            slot was taken) and mwSpoolDamagedKeptOctets (delivered mail a \
            damaged segment's note keeps from being reclaimed). The idle \
            reason of mwMilterConnectionErrors now reads the bound the \
            milter applies since this revision.",
    },
    Revision {
        date: "202612051954Z",
        objects: 225,
        description: "Added mwMaxOpenFiles: the most file descriptors the \
            process may open, beside mwOpenFiles, so that running out of \
            them can be seen coming.",
    },
    Revision {
        date: "202612051926Z",
        objects: 224,
        description: "Added mwConfigLastReloadSuccessful: whether the \
            configuration file on disk was in force at the last attempt to \
            load it (false after a refused reload, until a later one is \
            accepted), as /metrics says it with \
            mailward_config_last_reload_successful.",
    },
    Revision {
        date: "202612051919Z",
        objects: 223,
        description: "The DESCRIPTIONs of mwSpamScoreCount and mwSpamScoreTotal say \
            how the histogram's buckets (Prometheus only) now count: the scores \
            at or below their bound (le, as Prometheus defines it), with the \
            bounds a millionth under each level's thresholds. Their values are \
            unchanged. No object was added.",
    },
    Revision {
        date: "202612051900Z",
        objects: 223,
        description: "Added mwRawRecordsLost: raw records the raw records \
            file refused (a full disk, a directory the user may not write \
            to), until now only in the output of mailward status.",
    },
    Revision {
        date: "202612051330Z",
        objects: 222,
        description: "Added mwSpoolWriteErrors: spool writes that failed, when \
            new mail gets 451 4.3.0. mwBasesObsolete is now also on /metrics \
            (mailward_bases_obsolete); its value is unchanged.",
    },
    Revision {
        date: "202612051130Z",
        objects: 221,
        description: "mwObsoleteBases is also sent when another set of bases \
            comes into use (a rollback, a reload, an update) and is obsolete, \
            not only at start and daily. No object was added.",
    },
    Revision {
        date: "202612050650Z",
        objects: 221,
        description: "The DESCRIPTIONs of mwSpamScoreCount and mwSpamScoreTotal say \
            how the histogram's buckets (Prometheus only) now count: the scores \
            below their bound, so that a score exactly at a level's threshold, \
            which the level marks, counts above it. Their values are unchanged. \
            No object was added.",
    },
    Revision {
        date: "202612050400Z",
        objects: 221,
        description: "Added mwRecipientsRejectedTable: every recipient (RCPT) \
            refused in the SMTP session, by reason. mwMessagesRejectedCount now \
            counts each refused session or transaction once, as its DESCRIPTION \
            always said; before, it counted each refused recipient (a transaction \
            with three refused recipients counted three, and one accepted with a \
            refused recipient counted one), and a MAIL or RCPT refused for its \
            syntax was not counted. mwVirusesDetected counts infected files, one \
            per file; before, one per virus name and message, suspicious \
            findings included; mwFilterHits counts one per part and rule.",
    },
    Revision {
        date: "202612042100Z",
        objects: 217,
        description: "mwSnmpNotificationsCount says that it counts the notifications \
            the AgentX master acknowledged (sent), as it now does; before, it \
            counted them when raised, also those later dropped. A DateAndTime \
            that has no time (mwUpdateLastCheck before any update, mwBasesReleased \
            and mwBasesLoaded without bases) is '0000000000000000'H, as their \
            DESCRIPTIONs now say; before, it was 1970-01-01. No object was added.",
    },
    Revision {
        date: "202612031800Z",
        objects: 217,
        description: "mwForeignVerdictHeaders also counts the X-Mailward-Spam-Rating \
            fields a message comes with; mwMessagesQuarantined says that it counts \
            quarantine copies (one per policy group), as it always has. No object \
            was added.",
    },
    Revision {
        date: "202612030000Z",
        objects: 217,
        description: "Added the counters of what each policy group's plan did \
            (mwPolicyGroupInfected, mwPolicyGroupSpam, mwPolicyGroupRefused, \
            mwPolicyGroupBlocked, mwPolicyGroupQuarantined), and the objects of \
            the policy engine (quarantine, archive), the spam check (results by \
            test, DNSBL, SPF, DKIM, DMARC and URI list look-ups, the classifier, \
            the score histogram), reliability (session time-outs, stress mode, \
            scans refused for memory, spool space to reclaim, held messages), \
            delivery (outbound TLS, DNS look-ups, deferred domains), logging, \
            the milter and the AgentX subagent's own health. A policy group \
            keeps its mwPolicyGroupIndex while Mailward runs (a reload no longer \
            renumbers the rows). No other object of the first version changed.",
    },
    Revision {
        date: "202611240000Z",
        objects: 123,
        description: "First version.",
    },
];

/// (name, arc, objects, description)
pub const NOTIFICATIONS: &[(&str, u32, &[&str], &str)] = &[
    ("mwProductStart", 1, &["mwVersion", "mwConfigFile"], "Mailward has started and accepts mail."),
    ("mwProductStop", 2, &["mwVersion"], "Mailward is stopping gracefully (SIGTERM or SIGINT)."),
    ("mwProductError", 3, &["mwNotifyMessage"], "A fault an operator must mend; mwNotifyMessage says which and why: a component (the listener, the milter, the delivery loop) stopped, and the gateway stops; or the signature bases on disk do not load (at start, or at a reload, where the rules in use stay but a restart would run without them); or a message store (the quarantine, the incoming or outgoing archive) cannot write its copies (sent once until a copy is written again); or accepted mail was lost from the spool (a segment holding it deleted by something other than mailward, or missing at start: sent once per segment, counted in mwSpoolSegmentsLost). mailward status shows the faults still open."),
    ("mwConfigReloaded", 4, &["mwConfigFile", "mwReloadResult", "mwNotifyMessage"],
        "The configuration was reloaded (SIGHUP): mwReloadResult says whether the new one is in force or was refused."),
    ("mwBasesReloaded", 5, &["mwBasesRecords", "mwBasesReleased"], "New signature bases are in use."),
    ("mwUpdateStatus", 6, &["mwUpdateLastResult", "mwNotifyMessage"], "An update of the signature bases was attempted."),
    ("mwObsoleteBases", 7, &["mwBasesReleased", "mwBasesObsolete"],
        "The signature bases in use are older than bases.obsolete_after (sent at start, when another set comes into use, and then daily while true)."),
    ("mwAlertThreshold", 8, &["mwAlertName", "mwAlertValue", "mwAlertThresholdValue", "mwAlertState"],
        "A threshold of snmp.alert_thresholds was crossed (mwAlertState raised) or is no longer (cleared)."),
    ("mwProductErrorCleared", 9, &["mwNotifyMessage"], "A fault that mwProductError reported has ended; mwNotifyMessage says which: the signature bases on disk load again (after a reload, an update or a rollback), or a message store (the quarantine, the incoming or outgoing archive) writes its copies again. Faults that do not end are not cleared: lost mail stays lost (mwSpoolSegmentsLost), and a stopped component stops the gateway (mwProductStart follows its restart)."),
];

fn quote(s: &str) -> String {
    s.replace('"', "'")
}

/// Wraps text for a DESCRIPTION clause.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in quote(text).split_whitespace() {
        if !line.is_empty() && line.len() + word.len() + 1 > 64 {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = write!(out, "{indent}{line}");
    out
}

fn enum_syntax(names: &[&str]) -> String {
    let items: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{}({})", crate::snmp::smi_label(n), i + 1))
        .collect();
    format!("INTEGER {{ {} }}", items.join(", "))
}

fn syntax_text(s: Syntax, rows: Option<u32>) -> String {
    match s {
        Syntax::Counter32 => "Counter32".into(),
        Syntax::Counter64 => "Counter64".into(),
        Syntax::Gauge64 => "MwGauge64".into(),
        Syntax::Gauge32 => "Gauge32".into(),
        Syntax::Unsigned32 => "Unsigned32".into(),
        Syntax::Index => format!("Unsigned32 (1..{})", rows.unwrap_or(4_294_967_295)),
        Syntax::DateAndTime => "DateAndTime".into(),
        Syntax::Text => "MwUtf8String".into(),
        Syntax::TimeTicks => "TimeTicks".into(),
        Syntax::TruthValue => "TruthValue".into(),
        Syntax::UpdateResult => "MwUpdateResult".into(),
        Syntax::Enum(names) => enum_syntax(names),
    }
}

fn parent_name(objs: &[Object], o: &Object) -> String {
    let parent = &o.oid[..o.oid.len() - 1];
    if parent.is_empty() {
        return "mailwardMIB".into();
    }
    objs.iter()
        .find(|p| p.oid == parent)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| {
            if parent == [1] {
                "mwObjects".into()
            } else {
                "mailwardMIB".into()
            }
        })
}

fn entry_type(name: &str) -> String {
    let stem = name.trim_start_matches("mw").trim_end_matches("Entry");
    format!("Mw{stem}Entry")
}

/// The whole MIB module text.
pub fn text() -> String {
    let objs = objects();
    let mut m = String::new();
    m.push_str("MAILWARD-MIB DEFINITIONS ::= BEGIN\n\n");
    m.push_str("-- Generated from metrics/src/catalogue.rs by metrics/src/mib.rs: edit those,\n");
    m.push_str("-- then run MAILWARD_UPDATE_DOCS=1 cargo test -p mailward-metrics.\n\n");
    m.push_str("IMPORTS\n    MODULE-IDENTITY, OBJECT-TYPE, NOTIFICATION-TYPE, enterprises,\n");
    m.push_str(
        "    Counter32, Counter64, Gauge32, Unsigned32, TimeTicks\n        FROM SNMPv2-SMI\n",
    );
    m.push_str("    TEXTUAL-CONVENTION, DateAndTime, TruthValue\n        FROM SNMPv2-TC\n");
    m.push_str(
        "    MODULE-COMPLIANCE, OBJECT-GROUP, NOTIFICATION-GROUP\n        FROM SNMPv2-CONF;\n\n",
    );
    let last_updated = REVISIONS.first().map_or("202611240000Z", |r| r.date);
    let _ = write!(
        m,
        "mailwardMIB MODULE-IDENTITY\n    LAST-UPDATED \"{last_updated}\"\n"
    );
    m.push_str(
        r#"    ORGANIZATION "The Mailward project"
    CONTACT-INFO
        "The Mailward developers.
         Issues and questions: the project's issue tracker."
    DESCRIPTION
        "Statistics, configuration, signature bases and events of
         Mailward, an SMTP filtering gateway, served by its AgentX
         subagent. 32473 is the enterprise number RFC 5612 reserves
         for documentation and examples: a site with its own number
         changes this module's root and agentx.root_oid together."
"#,
    );
    for r in REVISIONS {
        let _ = write!(
            m,
            "    REVISION \"{}\"\n    DESCRIPTION\n        \"{}\"\n",
            r.date,
            wrap(r.description, "         ").trim_start()
        );
    }
    m.push_str("    ::= { mwEnterprise ");
    m.push_str(ENTERPRISE_ARCS);
    m.push_str(" }\n\n");
    m.push_str("-- The enterprise arc (see DESCRIPTION above).\n");
    m.push_str("mwEnterprise OBJECT IDENTIFIER ::= { enterprises 32473 }\n\n");
    m.push_str(
        r#"MwUtf8String ::= TEXTUAL-CONVENTION
    DISPLAY-HINT "255t"
    STATUS       current
    DESCRIPTION
        "Text in UTF-8 (RFC 3629), as SnmpAdminString of
         SNMP-FRAMEWORK-MIB. A text longer than 255 octets is cut
         at a character boundary and ends with '...' (three full
         stops): a top-N item or a raw record's field that long is
         whole only on Prometheus's /metrics, in the statistics
         file and in the raw records file."
    SYNTAX       OCTET STRING (SIZE (0..255))

MwGauge64 ::= TEXTUAL-CONVENTION
    DISPLAY-HINT "d"
    STATUS       current
    DESCRIPTION
        "A level that may pass 2^32 (octets, counts). It may go up
         and down; like CounterBasedGauge64 of HCNUM-TC, it is
         carried as a Counter64, and is never sent in notifications."
    SYNTAX       Counter64

MwUpdateResult ::= TEXTUAL-CONVENTION
    STATUS       current
    DESCRIPTION
        "The result of the last update of the signature bases:
         updated (new bases in use), notNeeded (already current),
         error (the update failed and the old bases stay), rolledBack
         (an administrator went back to the previous bases), unknown
         (no update attempted yet)."
    SYNTAX       "#,
    );
    m.push_str(&enum_syntax(UPDATE_RESULT_NAMES));
    m.push_str("\n\n");
    m.push_str("mwNotifications OBJECT IDENTIFIER ::= { mailwardMIB 0 }\n");
    m.push_str("mwObjects       OBJECT IDENTIFIER ::= { mailwardMIB 1 }\n");
    m.push_str("mwConformance   OBJECT IDENTIFIER ::= { mailwardMIB 2 }\n\n");
    let _ = ALERT_STATE_NAMES;
    for o in &objs {
        let parent = parent_name(&objs, o);
        let arc = o.oid.last().copied().unwrap_or(0);
        match &o.node {
            Node::Group => {
                let _ = writeln!(m, "{} OBJECT IDENTIFIER ::= {{ {parent} {arc} }}\n", o.name);
            }
            Node::Table => {
                let entry = objs
                    .iter()
                    .find(|e| e.oid == [o.oid.as_slice(), &[1]].concat());
                let et = entry.map(|e| entry_type(&e.name)).unwrap_or_default();
                let _ = writeln!(
                    m,
                    "{} OBJECT-TYPE\n    SYNTAX      SEQUENCE OF {et}\n    MAX-ACCESS  not-accessible\n    STATUS      current\n    DESCRIPTION\n        \"{}\"\n    ::= {{ {parent} {arc} }}\n",
                    o.name,
                    wrap(&o.description, "         ").trim_start()
                );
            }
            Node::Entry(index) => {
                let columns: Vec<&Object> = objs
                    .iter()
                    .filter(|c| c.oid.len() == o.oid.len() + 1 && c.oid.starts_with(&o.oid))
                    .collect();
                let _ = writeln!(
                    m,
                    "{} OBJECT-TYPE\n    SYNTAX      {}\n    MAX-ACCESS  not-accessible\n    STATUS      current\n    DESCRIPTION\n        \"{}\"\n    INDEX       {{ {} }}\n    ::= {{ {parent} {arc} }}\n",
                    o.name,
                    entry_type(&o.name),
                    wrap(&o.description, "         ").trim_start(),
                    index.join(", ")
                );
                let _ = writeln!(m, "{} ::= SEQUENCE {{", entry_type(&o.name));
                let n = columns.len();
                for (i, c) in columns.iter().enumerate() {
                    let syn = c.syntax.map(|s| match s {
                        Syntax::Enum(_) => "INTEGER".to_string(),
                        Syntax::Index => "Unsigned32".to_string(),
                        s => syntax_text(s, None),
                    });
                    let _ = writeln!(
                        m,
                        "    {:<32} {}{}",
                        c.name,
                        syn.unwrap_or_default(),
                        if i + 1 < n { "," } else { "" }
                    );
                }
                m.push_str("}\n\n");
            }
            Node::Scalar | Node::Column => {
                let access = match o.access {
                    Access::NotAccessible => "not-accessible",
                    Access::ReadOnly => "read-only",
                    Access::ForNotify => "accessible-for-notify",
                };
                let rows = if o.name == "mwRawRecentIndex" {
                    Some(50)
                } else {
                    None
                };
                let syntax = o.syntax.map(|s| syntax_text(s, rows)).unwrap_or_default();
                let units = o
                    .units
                    .map(|u| format!("    UNITS       \"{u}\"\n"))
                    .unwrap_or_default();
                let _ = writeln!(
                    m,
                    "{} OBJECT-TYPE\n    SYNTAX      {syntax}\n{units}    MAX-ACCESS  {access}\n    STATUS      current\n    DESCRIPTION\n        \"{}\"\n    ::= {{ {parent} {arc} }}\n",
                    o.name,
                    wrap(&o.description, "         ").trim_start()
                );
            }
        }
    }
    for (name, arc, objects, d) in NOTIFICATIONS {
        let _ = writeln!(
            m,
            "{name} NOTIFICATION-TYPE\n    OBJECTS     {{ {} }}\n    STATUS      current\n    DESCRIPTION\n        \"{}\"\n    ::= {{ mwNotifications {arc} }}\n",
            objects.join(", "),
            wrap(d, "         ").trim_start()
        );
    }
    // Conformance.
    let groups = [
        (
            "mwConfigGroup",
            1,
            "The configuration in force and the policy groups.",
        ),
        (
            "mwStatisticsGroup",
            2,
            "Statistics of messages, resources, viruses, filters and raw records.",
        ),
        ("mwUpdateGroup", 3, "The signature bases and their updates."),
        ("mwAdminGroup", 4, "The daemon's version and uptime."),
        (
            "mwNotificationObjectsGroup",
            5,
            "Objects carried by notifications.",
        ),
    ];
    m.push_str("mwCompliances OBJECT IDENTIFIER ::= { mwConformance 1 }\n");
    m.push_str("mwGroups      OBJECT IDENTIFIER ::= { mwConformance 2 }\n\n");
    let mut group_names = Vec::new();
    for (g, arc, d) in groups {
        let members: Vec<&str> = objs
            .iter()
            .filter(|o| o.group == g)
            .map(|o| o.name.as_str())
            .collect();
        let _ = writeln!(
            m,
            "{g} OBJECT-GROUP\n    OBJECTS {{\n        {}\n    }}\n    STATUS      current\n    DESCRIPTION\n        \"{d}\"\n    ::= {{ mwGroups {arc} }}\n",
            members.join(",\n        ")
        );
        group_names.push(g);
    }
    let notes: Vec<&str> = NOTIFICATIONS.iter().map(|n| n.0).collect();
    let _ = writeln!(
        m,
        "mwNotificationsGroup NOTIFICATION-GROUP\n    NOTIFICATIONS {{\n        {}\n    }}\n    STATUS      current\n    DESCRIPTION\n        \"The notifications of Mailward.\"\n    ::= {{ mwGroups 6 }}\n",
        notes.join(",\n        ")
    );
    group_names.push("mwNotificationsGroup");
    let _ = writeln!(
        m,
        "mwCompliance MODULE-COMPLIANCE\n    STATUS      current\n    DESCRIPTION\n        \"What a Mailward agent implements: all of this module.\"\n    MODULE -- this module\n        MANDATORY-GROUPS {{\n            {}\n        }}\n    ::= {{ mwCompliances 1 }}\n",
        group_names.join(",\n            ")
    );
    m.push_str("END\n");
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_object_added_comes_with_a_revision() {
        let now = crate::snmp::objects().len();
        let last = super::REVISIONS[0].objects;
        assert!(
            now == last,
            "the MIB has {now} objects, its newest REVISION says {last}: add a Revision to \
             REVISIONS in metrics/src/mib.rs naming what was added (objects: {now})"
        );
        let dates: Vec<&str> = super::REVISIONS.iter().map(|r| r.date).collect();
        assert!(
            dates.windows(2).all(|w| w[0] > w[1]),
            "REVISIONS must be newest first: {dates:?}"
        );
    }

    #[test]
    fn mib_file_matches_the_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../mibs/MAILWARD-MIB.txt");
        let want = super::text();
        if std::env::var_os("MAILWARD_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "mibs/MAILWARD-MIB.txt drifted from the catalogue: run MAILWARD_UPDATE_DOCS=1 cargo test -p mailward-metrics"
        );
    }
}
