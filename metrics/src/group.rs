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

/// The rows of the per-group table, in the order SNMP numbers them
/// (`mwPolicyGroupIndex` is the position + 1).
///
/// An NMS keeps a row's history by its index, so an index must not move
/// to another group while the daemon runs: the default group is row 1,
/// the configuration's groups at start follow by name, and a group that a
/// reload adds gets the next free row. A group a reload removes keeps its
/// row (its counters stand still) until the next restart or `stats reset`,
/// which number the rows afresh (and move mwCounterDiscontinuityTime, so
/// an NMS knows to read the names again).
#[derive(Debug, Clone)]
pub struct GroupTable {
    rows: Vec<(String, GroupCounts)>,
    /// The groups of the configuration in force, by name ("" not included).
    configured: Vec<String>,
}

impl Default for GroupTable {
    fn default() -> GroupTable {
        GroupTable {
            rows: vec![(String::new(), GroupCounts::default())],
            configured: Vec::new(),
        }
    }
}

impl GroupTable {
    /// The groups of a configuration put in force (at start or by a
    /// reload): those without a row get the next ones, in the order given.
    pub fn configure(&mut self, groups: &[&str]) {
        self.configured = groups.iter().map(|g| g.to_string()).collect();
        for g in groups {
            self.row(g);
        }
    }

    /// Counts in `group`'s row; a group without one (a message judged
    /// under a configuration the table was not told of) gets the next.
    pub fn count(&mut self, group: &str, f: impl FnOnce(&mut GroupCounts)) {
        f(self.row(group))
    }

    fn row(&mut self, group: &str) -> &mut GroupCounts {
        let at = match self.rows.iter().position(|(g, _)| g == group) {
            Some(at) => at,
            None => {
                self.rows.push((group.to_string(), GroupCounts::default()));
                self.rows.len() - 1
            }
        };
        &mut self.rows[at].1
    }

    /// `stats reset`: every count to zero, and the rows numbered afresh
    /// from the configuration in force (the default group, then its groups
    /// by name); rows of groups since removed are gone.
    pub fn reset(&mut self) {
        let mut configured = self.configured.clone();
        configured.sort();
        self.rows = std::iter::once(String::new())
            .chain(configured)
            .map(|g| (g, GroupCounts::default()))
            .collect();
    }

    /// The rows, row 1 first.
    pub fn rows(&self) -> &[(String, GroupCounts)] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &GroupTable) -> Vec<&str> {
        t.rows().iter().map(|(g, _)| g.as_str()).collect()
    }

    #[test]
    fn a_row_keeps_its_index_across_reloads_until_a_reset() {
        let mut t = GroupTable::default();
        t.configure(&["beta", "gamma"]);
        assert_eq!(names(&t), ["", "beta", "gamma"]);
        t.count("gamma", |c| c.messages += 1);
        // A reload adds alpha (first by name) and removes beta: no row moves.
        t.configure(&["alpha", "gamma"]);
        assert_eq!(names(&t), ["", "beta", "gamma", "alpha"]);
        assert_eq!(t.rows()[2].1.messages, 1, "gamma keeps row 3 and its count");
        // A message judged under the old configuration still counts in beta.
        t.count("beta", |c| c.blocked += 1);
        assert_eq!(t.rows()[1].1.blocked, 1);
        // A group the table was not told of gets the next row.
        t.count("delta", |c| c.messages += 1);
        assert_eq!(names(&t), ["", "beta", "gamma", "alpha", "delta"]);
        // stats reset: the configuration's groups by name, all at zero.
        t.reset();
        assert_eq!(names(&t), ["", "alpha", "gamma"]);
        assert!(t.rows().iter().all(|(_, c)| *c == GroupCounts::default()));
    }
}
