//! The configuration as TOML gives it: the layout of sections and keys, with
//! every value still a `toml::Value`. Deserializing into these structs only
//! fails on TOML syntax or a section of the wrong shape; keys not declared
//! here are reported by `serde_ignored`, and values are checked one by one,
//! all problems together, in `validate.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Value;

/// The field name of a raw key, honouring a rename (`match_ as "match"`).
macro_rules! raw_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $rename:literal) => {
        $rename
    };
}

/// A section whose keys are all optional raw values, with the list of its
/// keys (`FIELDS`) for "did you mean" hints.
macro_rules! raw_table {
    ($name:ident; $($field:ident $(as $rename:literal)?),* $(,)?) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[serde(rename = $rename)])?
                pub $field: Option<Value>,
            )*
        }

        impl $name {
            /// The keys of this section, as written in TOML.
            pub const FIELDS: &'static [&'static str] = &[$(raw_name!($field $($rename)?)),*];
        }
    };
}

/// A section made of some keys of its own plus every policy key.
macro_rules! raw_policy {
    ($name:ident; $($pre:ident),*; $($field:ident: $ty:ty),* $(,)?) => {
        raw_table!($name; $($pre,)* $($field),*);
    };
}

raw_table!(RawServer; hostname, authserv_id, user, group, postmaster, data_dir, admin_socket);
raw_table!(RawNetwork; listen_on, protected_domains, relay_networks, xforward_hosts, after_queue, tls_certificate, tls_key);
raw_table!(RawAccess; connect_rules, helo_rules, mail_from_rules, rcpt_rules, dnsbl, dns_resolver);
raw_table!(RawLimits;
    incoming_sessions, incoming_sessions_per_ip, incoming_sessions_per_ipv6_prefix, outgoing_sessions, outgoing_sessions_per_host,
    antiviral_sessions, max_message_size, max_messages_per_session, max_rcpts_per_message,
    max_session_size, max_hops, min_queue_free_space, min_data_rate, stress_percent, scan_memory,
    long_lines);
raw_table!(RawTimeouts;
    min_backoff, max_backoff, max_queue_lifetime, delay_notice, command, data, scan,
    scan_in_session, connect, dns, stress_command, stress_data);
raw_table!(RawRoute; match_ as "match", to, tls, tls_ca, tls_name);
for_policy_keys!(raw_policy!(RawPolicy;;));
for_policy_keys!(raw_policy!(RawGroup; senders, recipients;));
raw_table!(RawArchive; incoming, outgoing, max_age, max_size);
raw_table!(RawQuarantine; max_age, max_size);
raw_table!(RawBases; av, update_from, obsolete_after);
raw_table!(RawSpam; dir, min_learnt, rules, dnsbl, blacklist, whitelist, spf, dkim, surbl, store, autolearn, traps, max_tokens, max_learnt);
raw_table!(RawStatistics; options, destination, raw_destination, write_interval, top);
raw_table!(RawSnmp; services, traps, alert_thresholds);
raw_table!(RawAgentx; socket, timeout, retries, ping_interval, root_oid);
raw_table!(RawMetrics; listen);
raw_table!(RawMilter; listen, max_connections);
raw_table!(RawLog; destination, syslog_format, options, format, rotate_size, rotate_rounds);

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub network: RawNetwork,
    pub access: RawAccess,
    pub limits: RawLimits,
    pub timeouts: RawTimeouts,
    pub route: Vec<RawRoute>,
    pub policy: RawPolicy,
    pub group: BTreeMap<String, RawGroup>,
    pub archive: RawArchive,
    pub quarantine: RawQuarantine,
    pub bases: RawBases,
    pub spam: RawSpam,
    pub statistics: RawStatistics,
    pub snmp: RawSnmp,
    pub agentx: RawAgentx,
    pub metrics: RawMetrics,
    pub milter: RawMilter,
    pub log: RawLog,
}

/// The sections, as written in TOML.
pub const SECTIONS: &[&str] = &[
    "server",
    "network",
    "access",
    "limits",
    "timeouts",
    "route",
    "policy",
    "group",
    "archive",
    "quarantine",
    "bases",
    "spam",
    "statistics",
    "snmp",
    "agentx",
    "metrics",
    "milter",
    "log",
];

/// The keys a table at `parent` may hold (for hints), by the shape of the
/// path: the root, a section, a route (`route[N]`) or a group
/// (`group.NAME`).
pub fn known_keys(parent: &[super::locate::Seg]) -> &'static [&'static str] {
    use super::locate::Seg;
    match parent {
        [] => SECTIONS,
        [Seg::Key(s)] => match s.as_str() {
            "server" => RawServer::FIELDS,
            "network" => RawNetwork::FIELDS,
            "access" => RawAccess::FIELDS,
            "limits" => RawLimits::FIELDS,
            "timeouts" => RawTimeouts::FIELDS,
            "policy" => RawPolicy::FIELDS,
            "archive" => RawArchive::FIELDS,
            "quarantine" => RawQuarantine::FIELDS,
            "bases" => RawBases::FIELDS,
            "spam" => RawSpam::FIELDS,
            "statistics" => RawStatistics::FIELDS,
            "snmp" => RawSnmp::FIELDS,
            "agentx" => RawAgentx::FIELDS,
            "metrics" => RawMetrics::FIELDS,
            "milter" => RawMilter::FIELDS,
            "log" => RawLog::FIELDS,
            _ => &[],
        },
        [Seg::Key(s), Seg::Index(_)] if s == "route" => RawRoute::FIELDS,
        [Seg::Key(s), Seg::Key(_)] if s == "group" => RawGroup::FIELDS,
        _ => &[],
    }
}

/// Every table that holds keys, labelled as a message names it
/// (`"[spam]"`, `"[[route]]"`, `"a [group.NAME]"`), with its keys: where
/// an unknown key is looked for in the other tables.
pub fn tables() -> [(&'static str, &'static [&'static str]); 18] {
    [
        ("[server]", RawServer::FIELDS),
        ("[network]", RawNetwork::FIELDS),
        ("[access]", RawAccess::FIELDS),
        ("[limits]", RawLimits::FIELDS),
        ("[timeouts]", RawTimeouts::FIELDS),
        ("[[route]]", RawRoute::FIELDS),
        ("[policy]", RawPolicy::FIELDS),
        ("a [group.NAME]", RawGroup::FIELDS),
        ("[archive]", RawArchive::FIELDS),
        ("[quarantine]", RawQuarantine::FIELDS),
        ("[bases]", RawBases::FIELDS),
        ("[spam]", RawSpam::FIELDS),
        ("[statistics]", RawStatistics::FIELDS),
        ("[snmp]", RawSnmp::FIELDS),
        ("[agentx]", RawAgentx::FIELDS),
        ("[metrics]", RawMetrics::FIELDS),
        ("[milter]", RawMilter::FIELDS),
        ("[log]", RawLog::FIELDS),
    ]
}
