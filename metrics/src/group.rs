//! The counters kept per policy group (`mwPolicyGroupTable`, the
//! `mailward_group_*_total{group}` families). Groups come from the
//! configuration, so they are rows and labels, not catalogue entries; their
//! columns are declared once here and every rendering (Prometheus, the
//! stats file, the SNMP view, the reference) walks [`GROUP_COLUMNS`].

/// What happened to the messages under one group's policy since the last
/// statistics reset. A message with recipients in two groups counts in
/// both, each with its own plan (a spam level or an AV check of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    pub messages: u64,
    pub infected: u64,
    pub spam: u64,
    pub refused: u64,
    pub blocked: u64,
    pub quarantined: u64,
}

/// One group's part of a checked message, as the scan reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupOutcome<'a> {
    /// The group ("" = the default group).
    pub group: &'a str,
    /// The group's plan found a virus (`av/infected`).
    pub infected: bool,
    /// The group's plan counts the message as spam (`as/spam` or
    /// `as/blacklisted` at the group's spam level).
    pub spam: bool,
    /// The message was refused in the session (the refusal of every group).
    pub refused: bool,
}

/// One column of the per-group table.
pub struct GroupColumn {
    /// The Prometheus family (counter, label `group`).
    pub prom: &'static str,
    /// Its HELP text (also the reference's).
    pub help: &'static str,
    /// The MIB column (`mwPolicyGroupEntry.ARC`).
    pub mib: &'static str,
    pub arc: u32,
    /// The MIB column's DESCRIPTION.
    pub mib_help: &'static str,
    pub read: fn(&GroupCounts) -> u64,
}

/// The counter columns, in MIB order (arcs 1 and 2 are the index and the
/// name).
pub const GROUP_COLUMNS: &[GroupColumn] = &[
    GroupColumn {
        prom: "mailward_group_messages_total",
        help: "Messages handled under each policy group's policy (a message with recipients in two groups counts in both).",
        mib: "mwPolicyGroupMessages",
        arc: 3,
        mib_help: "Messages handled under this group's policy since the last statistics reset.",
        read: |c| c.messages,
    },
    GroupColumn {
        prom: "mailward_group_infected_total",
        help: "Messages of each policy group in which a virus was found (av/infected under the group's policy).",
        mib: "mwPolicyGroupInfected",
        arc: 4,
        mib_help: "Messages of this group in which a virus was found (av/infected) since the last statistics reset.",
        read: |c| c.infected,
    },
    GroupColumn {
        prom: "mailward_group_spam_total",
        help: "Messages of each policy group judged spam at the group's spam level (as/spam or as/blacklisted).",
        mib: "mwPolicyGroupSpam",
        arc: 5,
        mib_help: "Messages of this group judged spam at its spam level (as/spam or as/blacklisted) since the last statistics reset.",
        read: |c| c.spam,
    },
    GroupColumn {
        prom: "mailward_group_refused_total",
        help: "Messages of each policy group refused in the SMTP session by content policy (reject).",
        mib: "mwPolicyGroupRefused",
        arc: 6,
        mib_help: "Messages of this group refused in the SMTP session by content policy (reject) since the last statistics reset.",
        read: |c| c.refused,
    },
    GroupColumn {
        prom: "mailward_group_blocked_total",
        help: "Messages accepted but not delivered to each policy group's recipients (block, or a reject after the 250).",
        mib: "mwPolicyGroupBlocked",
        arc: 7,
        mib_help: "Messages accepted but not delivered to this group's recipients (block, or a reject after the 250) since the last statistics reset.",
        read: |c| c.blocked,
    },
    GroupColumn {
        prom: "mailward_group_quarantined_total",
        help: "Copies kept in quarantine under each policy group's policy.",
        mib: "mwPolicyGroupQuarantined",
        arc: 8,
        mib_help: "Copies kept in quarantine under this group's policy since the last statistics reset.",
        read: |c| c.quarantined,
    },
];
