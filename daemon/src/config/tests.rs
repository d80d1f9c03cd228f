//! Tests of loading whole configurations: the embedded default, defaults of
//! absent keys, and problem reports (all at once, with key and line).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text, "mailward.toml") {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn default_parses_and_validates() {
    let c = load(None).unwrap_or_else(|e| panic!("default.toml:\n{e}"));
    assert_eq!(c.origin, "<default>");
    assert_eq!(c.server.hostname, "gw.example.com");
    assert_eq!(c.server.authserv_id, "gw.example.com");
    assert_eq!(c.server.data_dir, PathBuf::from(super::DEFAULT_DATA_DIR));
    assert_eq!(
        c.server.admin_socket,
        PathBuf::from("mailward-data/admin.sock")
    );
    assert_eq!(c.server.spool_dir(), PathBuf::from("mailward-data/spool"));
    assert_eq!(
        c.network.listen_on,
        vec!["127.0.0.1:2525".parse::<SocketAddr>().unwrap()]
    );
    assert!(c.network.is_protected("example.com"));
    assert!(c.network.is_protected("mx.example.com"));
    assert!(!c.network.is_protected("example.org"));
    assert!(c.network.may_relay("127.0.0.1".parse().unwrap()));
    assert!(!c.network.may_relay("192.0.2.1".parse().unwrap()));
    assert_eq!(c.route.len(), 1);
    assert!(c.route[0].pattern.matches("anyone@anywhere.example"));
    assert_eq!(
        c.route[0].to,
        NextHop::Direct {
            host: "127.0.0.1".into(),
            port: 2526
        }
    );
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9925".parse().unwrap()));
    assert_eq!(
        c.agentx.endpoint().unwrap(),
        AgentxEndpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 705
        }
    );
    assert_eq!(
        c.agentx.root_oid_arcs().unwrap(),
        vec![1, 3, 6, 1, 4, 1, 32473, 25]
    );
    assert_eq!(c.bases.av, PathBuf::from("mailward-data/bases/av"));
    assert_eq!(
        c.statistics.destination,
        PathBuf::from("mailward-data/stats/stats.json")
    );
    assert_eq!(c.log.destination, LogDestination::Stderr);
    assert_eq!(c.limits.max_message_size, ByteSize::mib(20));
    assert_eq!(c.timeouts.max_queue_lifetime.get().as_secs(), 5 * 86_400);
    let managers = &c.group["managers"];
    assert_eq!(
        managers.recipients,
        vec![GroupEntry::Address(Pattern::new("*@managers.example.com"))]
    );
    let effective = managers.effective(&c.policy);
    assert!(statuses_cover(&effective.block, "as/spam"));
    assert!(effective.check_av);
    assert_eq!(effective.admin_address, c.policy.admin_address);
}

#[test]
fn absent_keys_take_the_defaults_of_default_toml() {
    let empty = parse("", "empty.toml").unwrap();
    let default = parse(DEFAULT_TOML, "empty.toml").unwrap();
    assert_eq!(empty.server, default.server);
    assert_eq!(empty.network, default.network);
    assert_eq!(empty.access, default.access);
    assert_eq!(empty.limits, default.limits);
    assert_eq!(empty.timeouts, default.timeouts);
    assert_eq!(empty.policy, default.policy);
    assert_eq!(empty.archive, default.archive);
    assert_eq!(empty.bases, default.bases);
    assert_eq!(empty.statistics, default.statistics);
    assert_eq!(empty.snmp, default.snmp);
    assert_eq!(empty.agentx, default.agentx);
    assert_eq!(empty.metrics, default.metrics);
    assert_eq!(empty.log, default.log);
    assert_eq!(empty.milter, default.milter);
    // Without [[route]] everything goes by MX; groups are only what is written.
    assert!(empty.route.is_empty());
    assert!(empty.group.is_empty());
}

#[test]
fn default_toml_documents_every_key() {
    for (section, keys) in raw::SECTIONS
        .iter()
        .map(|s| (*s, raw::known_keys(&[locate::Seg::Key(s.to_string())])))
    {
        assert!(
            DEFAULT_TOML.contains(&format!("\n[{section}]"))
                || DEFAULT_TOML.contains(&format!("\n[[{section}]]"))
                || DEFAULT_TOML.contains(&format!("\n[{section}.")),
            "section {section}"
        );
        for key in keys {
            assert!(
                DEFAULT_TOML.contains(&format!("\n{key} = "))
                    || DEFAULT_TOML.contains(&format!("\n# {key} = ")),
                "{section}.{key} is not in default.toml"
            );
        }
    }
    // Every key line is preceded by a comment line (or another key line that
    // shares it, as tls_certificate and tls_key).
    let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "no comment above line {}: {line}",
                i + 1
            );
        }
    }
}

#[test]
fn commented_out_keys_of_default_toml_are_valid() {
    let uncommented: String = DEFAULT_TOML
        .lines()
        .map(|l| {
            for key in ["admin_socket", "av", "destination", "raw_destination"] {
                if let Some(rest) = l.strip_prefix("# ") {
                    if rest.starts_with(&format!("{key} = ")) {
                        return format!("{rest}\n");
                    }
                }
            }
            format!("{l}\n")
        })
        .collect();
    assert_ne!(uncommented, DEFAULT_TOML);
    let a = parse(&uncommented, "x").unwrap_or_else(|e| panic!("{e}"));
    let b = parse(DEFAULT_TOML, "x").unwrap();
    assert_eq!(a.server, b.server);
    assert_eq!(a.bases, b.bases);
    assert_eq!(a.statistics, b.statistics);
}

#[test]
fn three_problems_reported_at_once_with_lines() {
    let text = "\
[network]
listen_on = [
  \"127.0.0.1:2525\",
  \"localhost\",
]

[limits]
max_sesions = 5
max_message_size = \"big\"
";
    assert_eq!(
        problems(text),
        vec![
            "mailward.toml:4: network.listen_on: expected an address like \"127.0.0.1:2525\" or \"[::1]:2525\", got \"localhost\"",
            "mailward.toml:8: limits.max_sesions: unknown key",
            "mailward.toml:9: limits.max_message_size: expected a size like \"20MiB\", got \"big\"",
        ]
    );
}

/// walkAL 5: what DATA does with a line over 998 octets; "refuse" unless
/// said, and only "refuse" or "split".
#[test]
fn long_lines_is_refuse_unless_split_is_written() {
    let c = load(None).unwrap_or_else(|e| panic!("default.toml:\n{e}"));
    assert_eq!(c.limits.long_lines, LongLines::Refuse);
    let c = parse("[limits]\nlong_lines = \"split\"\n", "mailward.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.limits.long_lines, LongLines::Split);
    assert_eq!(
        problems("[limits]\nmax_hops = 3\nlong_lines = \"wrap\"\n\n[timeouts]\ncommand = \"1m\"\n"),
        vec!["mailward.toml:3: limits.long_lines: expected \"refuse\" or \"split\", got \"wrap\""]
    );
    assert_eq!(
        problems("[limits]\nlong_lines = true\n"),
        vec!["mailward.toml:2: limits.long_lines: expected \"refuse\" or \"split\", got true"]
    );
    assert_eq!(
        problems("[limits]\nlong_line = \"split\"\n"),
        vec!["mailward.toml:2: limits.long_line: unknown key (did you mean `long_lines`?)"]
    );
}

#[test]
fn unknown_keys_everywhere_with_hints() {
    let text = "\
[limts]
max_hops = 3

[limits]
max_hop = 3

[[route]]
match = \"*\"
too = \"[a]\"

[group.sales]
recipients = [\"*@sales.example.com\"]
blok = []
";
    assert_eq!(
        problems(text),
        vec![
            "mailward.toml:1: limts: unknown key (did you mean `limits`?)",
            "mailward.toml:5: limits.max_hop: unknown key (did you mean `max_hops`?)",
            "mailward.toml:7: route[0].to: missing: a route needs `match` and `to` (the next hop)",
            "mailward.toml:9: route[0].too: unknown key (did you mean `to`?)",
            "mailward.toml:13: group.sales.blok: unknown key (did you mean `block`?)",
        ]
    );
}

#[test]
fn many_value_problems_at_once() {
    let text = "\
[server]
hostname = \"bad host\"
postmaster = \"nobody\"

[access]
connect_rules = [\"allow any\", \"permit all\"]
dns_resolver = \"resolver\"

[limits]
max_hops = -1
incoming_sessions = 0
antiviral_sessions = \"4\"

[timeouts]
scan = \"60\"
dns = 10

[policy]
spam_level = \"extreme\"
reject = [\"av/infected\", \"av/virus\"]
action_error = \"drop\"
subject_prefix = { \"as/spam\" = \"[S]\", \"spam\" = \"[S]\" }

[snmp]
services = [\"config\", \"traps\"]
alert_thresholds = { queue_messages = 5, queue_lenght = 4 }

[agentx]
socket = \"udp:127.0.0.1:705\"
root_oid = \"mailward\"
timeout = \"10m\"

[metrics]
listen = \"9925\"

[log]
destination = \"stdout\"
options = [\"all.info\", \"smtp.loud\", \"-nothing\"]
format = \"xml\"
";
    let got = problems(text);
    let keys_and_lines: Vec<(usize, &str)> = got
        .iter()
        .map(|p| {
            let mut parts = p.splitn(4, ':');
            parts.next();
            let line = parts.next().unwrap().parse().unwrap();
            (line, parts.next().unwrap().trim())
        })
        .collect();
    assert_eq!(
        keys_and_lines,
        vec![
            (2, "server.hostname"),
            (3, "server.postmaster"),
            (6, "access.connect_rules"),
            (7, "access.dns_resolver"),
            (10, "limits.max_hops"),
            (11, "limits.incoming_sessions"),
            (12, "limits.antiviral_sessions"),
            (15, "timeouts.scan"),
            (16, "timeouts.dns"),
            (19, "policy.spam_level"),
            (20, "policy.reject"),
            (21, "policy.action_error"),
            (22, "policy.subject_prefix.spam"),
            (25, "snmp.services"),
            (26, "snmp.alert_thresholds.queue_lenght"),
            (29, "agentx.socket"),
            (30, "agentx.root_oid"),
            (31, "agentx.timeout"),
            (34, "metrics.listen"),
            (37, "log.destination"),
            (38, "log.options"),
            (38, "log.options"),
            (39, "log.format"),
        ],
        "{got:#?}"
    );
    assert!(got.contains(&"mailward.toml:15: timeouts.scan: expected a duration like \"30s\" or \"5m\", got \"60\" (a unit is needed: ms, s, m, h, d or w)".to_string()), "{got:#?}");
    assert!(
        got.contains(
            &"mailward.toml:16: timeouts.dns: expected a duration like \"30s\" or \"5m\", got 10"
                .to_string()
        ),
        "{got:#?}"
    );
    assert!(
        got.contains(&"mailward.toml:11: limits.incoming_sessions: must be at least 1".to_string()),
        "{got:#?}"
    );
}

#[test]
fn backoff_order_is_checked() {
    assert_eq!(
        problems("[timeouts]\nmin_backoff = \"2h\"\nmax_backoff = \"1h\"\n"),
        vec!["mailward.toml:2: timeouts.min_backoff: must not be longer than timeouts.max_backoff (1h)"]
    );
    // Against the default max_backoff (1h) too.
    assert_eq!(
        problems("[timeouts]\nmin_backoff = \"90m\"\n"),
        vec!["mailward.toml:2: timeouts.min_backoff: must not be longer than timeouts.max_backoff (1h)"]
    );
    assert!(problems("[timeouts]\nmin_backoff = \"1h\"\nmax_backoff = \"1h\"\n").is_empty());
}

#[test]
fn empty_listen_on_is_refused() {
    assert_eq!(
        problems("[server]\nhostname = \"a.example\"\n\n[network]\nlisten_on = []\n"),
        vec!["mailward.toml:5: network.listen_on: must not be empty (unless [milter] listen is set: a milter-only gateway)"]
    );
}

#[test]
fn milter_sockets_parse_and_bad_ones_are_named() {
    assert_eq!(
        MilterListen::parse("inet:10031@127.0.0.1"),
        Ok(MilterListen::Inet("127.0.0.1:10031".parse().unwrap()))
    );
    assert_eq!(
        MilterListen::parse("inet6:10031@[::1]"),
        Ok(MilterListen::Inet("[::1]:10031".parse().unwrap()))
    );
    assert_eq!(
        MilterListen::parse("unix:/run/mailward/milter.sock"),
        Ok(MilterListen::Unix(PathBuf::from(
            "/run/mailward/milter.sock"
        )))
    );
    for (text, shown) in [
        ("inet:10031@127.0.0.1", "inet:10031@127.0.0.1"),
        ("inet6:10031@[::1]", "inet6:10031@[::1]"),
        ("local:/x.sock", "unix:/x.sock"),
    ] {
        assert_eq!(MilterListen::parse(text).unwrap().to_string(), shown);
    }
    let p = problems("[milter]\nlisten = \"inet:10031@localhost\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("mailward.toml:2: milter.listen: expected") && p[0].contains("IP address"),
        "{p:?}"
    );
    let p = problems("[milter]\nlisten = \"unix:relative.sock\"\nmax_connections = 0\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("must be absolute"), "{p:?}");
    assert_eq!(
        p[1],
        "mailward.toml:3: milter.max_connections: must be at least 1"
    );
    // A milter-only gateway needs no SMTP listener.
    assert!(
        problems("[network]\nlisten_on = []\n\n[milter]\nlisten = \"inet:10031@127.0.0.1\"\n")
            .is_empty()
    );
}

#[test]
fn syntax_and_shape_errors_have_lines() {
    let p = problems("[server]\nhostname = \"a\"\nhostname = \"b\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("mailward.toml:3: "), "{p:?}");
    assert!(p[0].contains("duplicate key"), "{p:?}");
    assert!(!p[0].contains('\n'));

    let p = problems("[limits]\nmax_hops = 3\n\n[server\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("mailward.toml:4: "), "{p:?}");

    let p = problems("bogus = 1\nlimits = 5\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0], "mailward.toml:1: bogus: unknown key");
    assert!(p[1].starts_with("mailward.toml:2: limits: "), "{p:?}");
    assert!(p[1].contains("expected a table"), "{p:?}");

    // A bare CR in a comment: toml's error has no text (config_load fuzz
    // target); the problem line must still say something.
    let p = problems("#\r");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("mailward.toml:1: TOML syntax error"),
        "{p:?}"
    );

    // walkAI 10: a table written twice was "invalid table header;
    // duplicate key `server` in document root".
    let p = problems("[server]\nuser = \"root\"\n[server]\nhostname = \"x\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("mailward.toml:3: ")
            && p[0].contains("[server] is written twice")
            && !p[0].contains("document root"),
        "{p:?}"
    );

    // walkAC: toml's "invalid basic string" said neither what nor how.
    let p = problems("[server]\nhostname = \"gw\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("mailward.toml:2: ") && p[0].contains("a closing \" missing?"),
        "{p:?}"
    );

    let p = problems("[server]\nhostname = \"a.example\"\n\n[[group]]\nx = 1\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("mailward.toml:4: group"), "{p:?}");
    assert!(
        p[0].ends_with("invalid type: array, expected a table"),
        "{p:?}"
    );
}

#[test]
fn policy_keys_directly_under_group_are_refused() {
    assert_eq!(
        problems("[group]\nblock = []\n"),
        vec!["mailward.toml:2: group.block: `block` is not a group: a group's keys go in a [group.NAME] table"]
    );
}

/// `default` is what logs, statistics and notices call `[policy]`: a group
/// of that name (in any case) would be indistinguishable (walkO 3).
#[test]
fn a_group_named_default_is_refused() {
    for name in ["default", "Default"] {
        assert_eq!(
            problems(&format!(
                "[policy]\nblock = []\n[group.{name}]\nrecipients = [\"*@dflt.example.com\"]\n"
            )),
            vec![format!(
                "mailward.toml:3: group.{name}: `{name}` is the name logs and statistics give \
                 [policy] (the default group); choose another name"
            )]
        );
    }
    assert!(problems("[group.defaults]\nrecipients = [\"*@d.example\"]\n").is_empty());
}

#[test]
fn routes() {
    let c = parse(
        "route = [ { match = \"*@a.example\", to = \"[::1]:2526\" }, { match = \"*\", to = \"b.example:2525\" } ]\n",
        "x",
    )
    .unwrap();
    assert_eq!(
        c.route[0].to,
        NextHop::Direct {
            host: "::1".into(),
            port: 2526
        }
    );
    assert_eq!(
        c.route[1].to,
        NextHop::Mx {
            domain: "b.example".into(),
            port: 2525
        }
    );
    assert_eq!(c.route[0].pattern.as_str(), "*@a.example");

    let p = problems(
        "[[route]]\nmatch = \"*\"\nto = \"[127.0.0.1\"\n\n[[route]]\nto = \"a.example\"\n",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("mailward.toml:3: route[0].to: expected a next hop like"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("mailward.toml:5: route[1].match: missing"),
        "{p:?}"
    );
}

#[test]
fn groups() {
    let text = "\
[policy]
check_spam = false

[group.vip]
senders = [\"ip 10.0.0.0/8\", \"*@vip.example\"]
check_spam = true
spam_level = \"high\"

[group.nobody]
block = []

[group.bad]
recipients = [\"ip ten\"]
";
    let p = problems(text);
    assert_eq!(
        p,
        vec![
            "mailward.toml:9: group.nobody: a group needs `senders` or `recipients`, or it never applies",
            "mailward.toml:13: group.bad.recipients: expected \"ip\" and a network like \"ip 10.0.0.0/8\", got \"ip ten\"",
        ]
    );
    // walkV 4: two empty lists are no member either.
    let p = problems("[group.empty]\nsenders = []\nrecipients = []\nblock = [\"av/all\"]\n");
    assert_eq!(
        p,
        vec![
            "mailward.toml:3: group.empty.recipients: the group's `senders` and `recipients` are \
             both empty, so it never applies: give it a sender or a recipient, or remove the group"
        ]
    );
    let p = problems("[group.empty]\nsenders = []\n");
    assert!(
        p.len() == 1 && p[0].starts_with("mailward.toml:2: group.empty.senders: "),
        "{p:?}"
    );
    assert_eq!(
        problems("[group.one]\nsenders = []\nrecipients = [\"a@example.com\"]\n"),
        Vec::<String>::new()
    );
    let c = parse(&text[..text.find("[group.nobody]").unwrap()], "x").unwrap();
    let vip = &c.group["vip"];
    assert_eq!(
        vip.senders,
        vec![
            GroupEntry::Net("10.0.0.0/8".parse().unwrap()),
            GroupEntry::Address(Pattern::new("*@vip.example"))
        ]
    );
    assert_eq!(vip.check_spam, Some(true));
    assert_eq!(vip.check_av, None);
    let policy = vip.effective(&c.policy);
    assert!(!c.policy.check_spam);
    assert!(policy.check_spam);
    assert_eq!(policy.spam_level, SpamLevel::High);
    assert_eq!(c.policy.spam_level, SpamLevel::Standard);
}

#[test]
fn optional_addresses() {
    let c = parse(
        "[access]\ndns_resolver = \"127.0.0.1\"\n[metrics]\nlisten = \"\"\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.access.dns_resolver, Some("127.0.0.1:53".parse().unwrap()));
    assert_eq!(c.metrics.listen, None);
    let c = parse("[access]\ndns_resolver = \"127.0.0.1:5353\"\n", "x").unwrap();
    assert_eq!(
        c.access.dns_resolver,
        Some("127.0.0.1:5353".parse().unwrap())
    );
    let c = parse("[access]\ndns_resolver = \"::1\"\n", "x").unwrap();
    assert_eq!(c.access.dns_resolver, Some("[::1]:53".parse().unwrap()));
    let c = parse(
        "[access]\ndns_resolver = \"\"\nconnect_rules = [\"deny ip 10.0.0.0/8\", \"allow any\"]\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.access.dns_resolver, None);
    assert_eq!(c.access.connect_rules.len(), 2);
}

#[test]
fn tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "x").unwrap();
    let both = format!(
        "[network]\ntls_certificate = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let c = parse(&both, "x").unwrap();
    assert_eq!(c.network.tls_certificate.as_deref(), Some(cert.as_path()));

    let p = problems(&format!(
        "[network]\ntls_certificate = {:?}\n",
        cert.display().to_string()
    ));
    assert_eq!(
        p,
        vec!["mailward.toml:2: network.tls_certificate: set `tls_key` too, or neither"]
    );

    let p = problems(
        "[network]\ntls_certificate = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with(
            "mailward.toml:2: network.tls_certificate: cannot read /nonexistent/c.pem: "
        ),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("mailward.toml:3: network.tls_key: cannot read /nonexistent/k.pem: "),
        "{p:?}"
    );
}

#[test]
fn load_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailward.toml");
    std::fs::write(&file, "[limits]\nmax_hops = 7\n").unwrap();
    let c = load(Some(&file)).unwrap();
    assert_eq!(c.limits.max_hops, 7);
    assert_eq!(c.origin, file.display().to_string());

    std::fs::write(&file, "[limits]\nmax_hops = \"seven\"\n").unwrap();
    let e = load(Some(&file)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: limits.max_hops: expected a whole number from 0 to 4294967295, got \"seven\"",
            file.display()
        )
    );

    let missing = dir.path().join("missing.toml");
    let e = load(Some(&missing)).unwrap_err();
    assert_eq!(e.0.len(), 1);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "{}: cannot read the configuration: ",
            missing.display()
        )) && text.ends_with("(`mailward config default > FILE` writes a commented one)"),
        "{text}"
    );
}

#[test]
fn sizes_accept_integers_and_strings() {
    let c = parse(
        "[limits]\nmax_message_size = 1000\nmin_queue_free_space = \"1GB\"\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.limits.max_message_size, ByteSize(1000));
    assert_eq!(c.limits.min_queue_free_space, ByteSize(1_000_000_000));
    let p = problems("[limits]\nmax_message_size = \"300MiB\"\n");
    assert_eq!(
        p,
        vec!["mailward.toml:1: limits.max_session_size: must be at least limits.max_message_size (300MiB)"]
    );
}

#[test]
fn edit_distances() {
    assert_eq!(edit_distance("max_sesions", "max_sessions"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(closest("limts", raw::SECTIONS), Some("limits"));
    assert_eq!(closest("zzzzzz", raw::SECTIONS), None);
}

#[test]
fn spam_dnsbl_zones_score_or_are_final_and_bad_ones_are_named() {
    let c = parse(
        "[spam]\ndnsbl = [\"zen.example.org:3.5\", \"bl.example.net:final\"]\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.spam.dnsbl.len(), 2);
    assert_eq!(c.spam.dnsbl[0].weight, Some(3.5));
    assert_eq!(c.spam.dnsbl[0].test_name(), "DNSBL_ZEN_EXAMPLE_ORG");
    assert_eq!(c.spam.dnsbl[1].weight, None);
    let errors = parse(
        "[spam]\n\ndnsbl = [\"zen.example.org\", \"x:y\"]\n",
        "t.toml",
    )
    .unwrap_err();
    let lines: Vec<(usize, &str)> = errors.0.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(lines, [(3, "spam.dnsbl"), (3, "spam.dnsbl")], "{errors}");
    assert!(errors.to_string().contains("got \"x:y\""), "{errors}");
}

#[test]
fn spam_zones_may_be_written_as_tables_as_design_shows_them() {
    let c = parse(
        "[spam]\ndnsbl = [{ zone = \"zen.example.org\", weight = 4.0 }, { zone = \"bl.example.net\", weight = \"final\" }]\nsurbl = [{ zone = \"multi.surbl.example\", weight = 3 }]\n",
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.spam.dnsbl[0].zone, "zen.example.org");
    assert_eq!(c.spam.dnsbl[0].weight, Some(4.0));
    assert_eq!(c.spam.dnsbl[1].weight, None);
    assert_eq!(c.spam.surbl[0].weight, Some(3.0));
    let p = problems(
        "[spam]\ndnsbl = [{ zone = \"zen.example.org\", wieght = 4.0 }, { zone = \"a b\", weight = 1.0 }, { zone = \"z.example\", weight = \"high\" }]\n",
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("mailward.toml:2: spam.dnsbl: unknown key \"wieght\""),
        "{p:#?}"
    );
    assert!(p[1].contains("zone = \"a b\""), "{p:#?}");
    assert!(p[2].contains("weight = \"high\""), "{p:#?}");
}

#[test]
fn the_authserv_id_is_the_hostname_unless_set_and_must_be_a_name() {
    let c = parse(
        "[server]\nhostname = \"mx1.example.com\"\n",
        "mailward.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.authserv_id, "mx1.example.com");
    let c = parse(
        "[server]\nhostname = \"mx1.example.com\"\nauthserv_id = \"example.com\"\n",
        "mailward.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server.authserv_id, "example.com");
    let p = problems("[server]\nauthserv_id = \"example.com; spf=pass\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        p[0],
        "mailward.toml:2: server.authserv_id: expected a domain like \"mail.example.org\", \
         got \"example.com; spf=pass\""
    );
    // Each domain key's error shows an example of its own kind: a DNSBL
    // zone for a zone, a host name for a host.
    let p = problems("[server]\nhostname = \"bad host\"\n\n[access]\ndnsbl = [\"a b\"]\n");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("like \"mx.example.org\""), "{p:?}");
    assert!(p[1].contains("like \"zen.example.org\""), "{p:?}");
}

#[test]
fn the_ipv6_prefix_of_the_per_ip_limit_is_a_prefix_length_that_keeps_clients_apart() {
    let ok = |v: &str| {
        let text = format!("[limits]\nincoming_sessions_per_ipv6_prefix = {v}\n");
        problems(&text)
    };
    assert!(ok("48").is_empty() && ok("128").is_empty());
    assert_eq!(
        ok("16"),
        vec!["mailward.toml:2: limits.incoming_sessions_per_ipv6_prefix: must be a prefix length from 32 to 128, got 16 (shorter would count a whole provider as one client)".to_string()]
    );
    assert_eq!(ok("129").len(), 1);
}

#[test]
fn spam_limits_refuse_values_that_would_trim_away_a_days_learning() {
    let p = problems("[spam]\nmax_tokens = 5000\nmax_learnt = 20000\n");
    assert_eq!(
        p,
        vec!["mailward.toml:2: spam.max_tokens: must be at least 100000, got 5000"]
    );
    let c = parse("[spam]\nmax_tokens = 300000\n", "x").unwrap();
    assert_eq!((c.spam.max_tokens, c.spam.max_learnt), (300_000, 2_000_000));
}

/// walkAV F6: `min_learnt = 0` was taken and meant 1, and status said
/// "abstaining (scores from 0 of each)".
#[test]
fn spam_min_learnt_is_at_least_one() {
    assert_eq!(
        problems("[spam]\nmin_learnt = 0\n"),
        vec!["mailward.toml:2: spam.min_learnt: must be at least 1, got 0"]
    );
    let c = parse("[spam]\nmin_learnt = 1\n", "x").unwrap();
    assert_eq!(c.spam.min_learnt, 1);
}

#[test]
fn a_sender_notice_for_anything_but_a_virus_is_refused_where_it_is_written() {
    let text = "[policy]\nnotify_sender = [\"av/infected\", \"as/spam\"]\n\n\
                [group.sales]\nrecipients = [\"*@sales.example\"]\nnotify_sender = [\n  \"cf/filtered\",\n]\n";
    let errors = parse(text, "n.toml").unwrap_err();
    let got: Vec<(usize, &str)> = errors.0.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "policy.notify_sender"),
            (7, "group.sales.notify_sender")
        ],
        "{errors}"
    );
    assert!(
        errors.0[0]
            .problem
            .starts_with("as/spam is never notified to the sender"),
        "{errors}"
    );
    assert!(parse("[policy]\nnotify_sender = [\"av/all\"]\n", "n.toml").is_ok());
}

#[test]
fn a_number_too_large_for_toml_is_reported_with_its_key() {
    let errors = parse(
        "[limits]\nincoming_sessions = 99999999999999999999\n",
        "huge.toml",
    )
    .unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let p = &errors.0[0];
    assert_eq!(
        (p.line, p.key.as_str()),
        (2, "limits.incoming_sessions"),
        "{errors}"
    );
}

#[test]
fn notice_addresses_are_mailboxes_as_rcpt_to_takes_them() {
    for bad in ["a@b@c", "a@b.", "@example.com", "a@-b.com"] {
        let text = format!("[policy]\nadmin_address = \"{bad}\"\n");
        let errors = parse(&text, "a.toml").unwrap_err();
        assert_eq!(
            (errors.0[0].line, errors.0[0].key.as_str()),
            (2, "policy.admin_address"),
            "{bad}: {errors}"
        );
    }
    let ok = parse(
        "[policy]\nadmin_address = \"admin@example.com\"\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(ok.policy.admin_address, "admin@example.com");
    // walkAD: an internationalised domain is its A-label, as `--to` takes
    // it; a non-ASCII local part still needs SMTPUTF8 and is refused.
    let idn = parse(
        "[policy]\nadmin_address = \"sec@bücher.example\"\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(idn.policy.admin_address, "sec@xn--bcher-kva.example");
    let errors = parse("[policy]\nadmin_address = \"bö@example.com\"\n", "a.toml").unwrap_err();
    assert!(errors.to_string().contains("SMTPUTF8"), "{errors}");
}

#[test]
fn bare_ips_networks_and_domains_in_sender_lists_are_refused_with_the_form_meant() {
    // walkB finding 2: these were accepted as address globs that can never
    // match an address, so the whitelist or group silently did nothing.
    let text = "\
[group.lan]
senders = [\"10.0.0.0/8\", \"*.partner.example\"]
block = [\"as/spam\"]
[spam]
whitelist = [\"127.0.0.1\", \"192.0.2.0/24\", \"partner.example\"]
blacklist = [\"@spammer.example\", \"2001:db8::/32\", \"nobody\"]
";
    assert_eq!(
        problems(text),
        vec![
            "mailward.toml:2: group.lan.senders: expected \"ip 10.0.0.0/8\" for a client network, or an address glob like \"*@example.com\", got \"10.0.0.0/8\"",
            "mailward.toml:2: group.lan.senders: expected an address glob like \"*@*.partner.example\" for the addresses of a domain, or \"ip NET\" for a client network, got \"*.partner.example\"",
            "mailward.toml:5: spam.whitelist: expected \"ip 127.0.0.1\" for a client address, or an address glob like \"*@example.com\", got \"127.0.0.1\"",
            "mailward.toml:5: spam.whitelist: expected \"ip 192.0.2.0/24\" for a client network, or an address glob like \"*@example.com\", got \"192.0.2.0/24\"",
            "mailward.toml:5: spam.whitelist: expected an address glob like \"*@partner.example\" for the addresses of a domain, or \"ip NET\" for a client network, got \"partner.example\"",
            "mailward.toml:6: spam.blacklist: expected an address glob like \"*@spammer.example\" (a local part is needed: \"*\" for any), got \"@spammer.example\"",
            "mailward.toml:6: spam.blacklist: expected \"ip 2001:db8::/32\" for a client network, or an address glob like \"*@example.com\", got \"2001:db8::/32\"",
            "mailward.toml:6: spam.blacklist: expected an address glob like \"*@example.com\" or \"ip 10.0.0.0/8\", got \"nobody\" (without \"@\" it matches no address)",
        ]
    );
    // The forms the docs give, and a catch-all `*`, are kept.
    let c = parse(
        "[group.lan]\nsenders = [\"ip 10.0.0.0/8\", \"*\"]\n[spam]\nwhitelist = [\"ip 127.0.0.1\", \"*@partner.example\"]\nblacklist = [\"*@*.spammer.example\"]\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.group["lan"].senders.len(), 2);
    assert_eq!(
        c.spam.whitelist,
        vec![
            GroupEntry::Net("127.0.0.1/32".parse().unwrap()),
            GroupEntry::Address(Pattern::new("*@partner.example"))
        ]
    );
    assert_eq!(c.spam.blacklist.len(), 1);
}

#[test]
fn a_key_of_another_section_says_where_it_belongs() {
    // walkB finding 7: `spam.spam_level: unknown key` left the operator to
    // guess that the key is a policy key.
    let text = "\
hostname = \"gw.example.com\"
[server]
listen = \"127.0.0.1:9925\"
[policy]
senders = [\"*@example.com\"]
[group.g]
recipients = [\"*@g.example.com\"]
whitelist = []
[spam]
spam_level = \"high\"
[limits]
max_hop = 3
";
    assert_eq!(
        problems(text),
        vec![
            "mailward.toml:1: hostname: unknown key (hostname belongs in [server])",
            "mailward.toml:3: server.listen: unknown key (listen belongs in [metrics] or [milter])",
            "mailward.toml:5: policy.senders: unknown key (senders belongs in a [group.NAME])",
            "mailward.toml:8: group.g.whitelist: unknown key (whitelist belongs in [spam])",
            "mailward.toml:10: spam.spam_level: unknown key (spam_level belongs in [policy] or a [group.NAME])",
            "mailward.toml:12: limits.max_hop: unknown key (did you mean `max_hops`?)",
        ]
    );
}

#[test]
fn a_subject_prefix_key_that_is_no_status_is_named_as_the_key() {
    // walkB finding 7: the message ended in a stray "... as key".
    let p = problems("[policy]\nsubject_prefix = { \"as/spamm\" = \"[SPAM]\" }\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(
            "mailward.toml:2: policy.subject_prefix.\"as/spamm\": \"as/spamm\" is not a status: \
             each key is a status, like \"as/spam\" = \"[SPAM]\" (did you mean \"as/spam\"?); \
             statuses: av/clean, "
        ),
        "{p:?}"
    );
    assert!(!p[0].contains("as key"), "{p:?}");
}

#[test]
fn a_notify_templates_dir_that_is_missing_or_a_file_is_named_with_the_reason() {
    // walkB finding 7: "not a directory of notification templates" named
    // neither the path nor what was wrong with it.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nosuchdir");
    let file = dir.path().join("sender.txt");
    std::fs::write(&file, "x").unwrap();
    let text = format!(
        "[policy]\nnotify_templates = {:?}\n[group.g]\nrecipients = [\"*@g.example\"]\nnotify_templates = {:?}\n",
        missing.display().to_string(),
        file.display().to_string()
    );
    let tail = ": expected a directory of notification templates (sender.txt, recipients.txt, \
                admin.txt), or \"\" for the built-in templates";
    assert_eq!(
        problems(&text),
        vec![
            format!(
                "mailward.toml:2: policy.notify_templates: {} does not exist{tail}",
                missing.display()
            ),
            format!(
                "mailward.toml:5: group.g.notify_templates: {} is not a directory{tail}",
                file.display()
            ),
        ]
    );
}

/// walkV 12: a relative `notify_templates` was read from the current
/// directory: check-config in /etc/mailward found it, the daemon in / did
/// not. It is the configuration file's directory, as for `file:` globs.
#[test]
fn a_relative_notify_templates_is_beside_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("t1")).unwrap();
    std::fs::write(
        dir.path().join("t1").join("recipients.txt"),
        "Subject: Beside the file\n\nbody\n",
    )
    .unwrap();
    let origin = dir.path().join("rel.toml");
    let text = "[group.rel]\nrecipients = [\"*@rel.example\"]\nnotify_templates = \"t1\"\n";
    let c = parse(text, &origin.display().to_string()).unwrap();
    let t = c.group["rel"].notify_templates.as_ref().unwrap();
    assert_eq!(t.dir, dir.path().join("t1").display().to_string());
    assert!(
        t.texts
            .get("recipients.txt")
            .is_some_and(|x| x.starts_with("Subject: Beside the file")),
        "{:?}",
        t.texts.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_file_this_user_may_not_read_says_who_reads_and_what_to_do() {
    // walkF: "FILE:0: cannot read the configuration: Permission denied"
    // for a daemon that reads it after giving up root, or a monitoring
    // user outside the group; `check-config` as root said it was valid.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mw.toml");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = super::unreadable(
        &file,
        &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    );
    assert!(
        text.starts_with("cannot read the configuration as "),
        "{text}"
    );
    assert!(
        text.contains(" 0600, closed to its group); run as root, or make it readable by "),
        "{text}"
    );
    assert!(
        text.contains("(the package's is root:mailward 0640)"),
        "{text}"
    );
    // Open to its group: joining the group is the way.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let text = super::unreadable(
        &file,
        &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    );
    assert!(
        text.contains(" 0640); run as root or as a member of group "),
        "{text}"
    );
}

#[test]
fn an_admin_socket_path_too_long_for_unix_is_a_config_error() {
    // walkF: check-config passed it; the start failed later with
    // "path must be shorter than SUN_LEN", after making the directories.
    let long = format!("/tmp/{}/admin.sock", "a".repeat(120));
    let e = parse(&format!("[server]\nadmin_socket = {long:?}\n"), "t.toml").unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("t.toml:2: server.admin_socket: a unix socket path is at most 107 bytes and this one is 136"),
        "{text}"
    );
    let e = parse(
        &format!("[server]\ndata_dir = \"/tmp/{}\"\n", "d".repeat(110)),
        "t.toml",
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("t.toml:2: server.data_dir: the admin socket under it, ")
            && text.ends_with("choose a shorter one, or set server.admin_socket"),
        "{text}"
    );
    let ok = format!(
        "[server]\ndata_dir = \"/tmp/{}\"\nadmin_socket = \"/run/m.sock\"\n",
        "d".repeat(110)
    );
    assert!(
        parse(&ok, "t.toml").is_ok(),
        "a short admin_socket frees data_dir"
    );
}

#[test]
fn a_sender_notice_for_a_message_without_finding_is_refused() {
    // walkI 1: notify_sender = ["av/clean"] passed, and every message's
    // sender (nearly all spam is av/clean) got a notice.
    let text = "[policy]\nnotify_sender = [\"av/infected\", \"av/clean\"]\n\n\
                [group.sales]\nrecipients = [\"*@sales.example\"]\nnotify_sender = [\"av/clean\"]\n";
    let errors = parse(text, "n.toml").unwrap_err();
    let got: Vec<(usize, &str)> = errors.0.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "policy.notify_sender"),
            (6, "group.sales.notify_sender")
        ],
        "{errors}"
    );
    assert!(
        errors.0[0]
            .problem
            .starts_with("av/clean is never notified to the sender: it is no finding"),
        "{errors}"
    );
    for ok in ["av/infected", "av/suspicious", "av/error", "av/all"] {
        assert!(
            parse(&format!("[policy]\nnotify_sender = [\"{ok}\"]\n"), "n.toml").is_ok(),
            "{ok}"
        );
    }
}

/// The comment above `key` in the embedded default configuration.
fn default_comment(table: &str, key: &str) -> String {
    let text = include_str!("default.toml");
    let section = text
        .split(&format!("[{table}]\n"))
        .nth(1)
        .unwrap_or_default();
    let mut comment = Vec::new();
    for line in section.lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim());
        } else if line.starts_with(&format!("{key} =")) {
            return comment.join(" ");
        } else {
            comment.clear();
        }
    }
    String::new()
}

#[test]
fn the_default_config_says_what_max_hops_and_the_milter_keys_do() {
    // walkJ F5: the daemon refuses at max_hops Received: fields, not
    // "beyond" it.
    let hops = default_comment("limits", "max_hops");
    assert!(
        hops.contains("this many Received: headers or more"),
        "{hops}"
    );
    // walkH 8.7: a reload keeps these two.
    for key in ["listen", "max_connections"] {
        let c = default_comment("milter", key);
        assert!(c.contains("takes effect at restart"), "milter.{key}: {c}");
    }
}

#[test]
fn two_listeners_on_one_port_are_refused() {
    // walkH 8.4: check-config passed, `run` failed with "Address already
    // in use".
    let e = parse(
        "[network]\nlisten_on = [\"127.0.0.1:27110\"]\n[milter]\nlisten = \"inet:27110@127.0.0.1\"\n",
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:4: milter.listen: 127.0.0.1:27110 is also taken by network.listen_on \
         (127.0.0.1:27110): each listener needs an address and port of its own"
    );
    let e = parse(
        "[network]\nlisten_on = [\"127.0.0.1:25\",\n  \"0.0.0.0:9925\"]\n",
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:3: network.listen_on: 0.0.0.0:9925 is also taken by metrics.listen \
         (127.0.0.1:9925): each listener needs an address and port of its own",
        "the default metrics address is not written: the written key is blamed"
    );
    let e = parse("[metrics]\nlisten = \"127.0.0.1:2525\"\n", "t.toml").unwrap_err();
    assert!(
        e.to_string().starts_with("t.toml:2: metrics.listen: "),
        "{e}"
    );
    assert!(parse(
        "[network]\nlisten_on = [\"127.0.0.1:25\"]\n[metrics]\nlisten = \"127.0.0.2:25\"\n[milter]\nlisten = \"inet:25@127.0.0.3\"\n",
        "t.toml"
    )
    .is_ok());
}

#[test]
fn a_zone_weight_out_of_range_says_the_range_and_a_zone_twice_is_refused() {
    // walkI 17.
    let text = "[spam]\ndnsbl = [\"z.test:100.5\", { zone = \"y.test\", weight = 1000 }]\n\
                surbl = [\"u.test:3\",\n  \"U.test:final\"]\n";
    let e = parse(text, "t.toml").unwrap_err();
    let lines: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "t.toml:2: spam.dnsbl: weight 100.5 is not a number from -100 to 100, in \"z.test:100.5\"",
            "t.toml:2: spam.dnsbl: weight 1000 is not a number from -100 to 100",
            "t.toml:4: spam.surbl: zone u.test is listed twice (entry 1 and entry 2): keep one, with the weight you mean",
        ],
        "{e}"
    );
    assert!(parse(
        "[spam]\ndnsbl = [\"z.test:100\", \"y.test:-100\"]\n",
        "t.toml"
    )
    .is_ok());
}

#[test]
fn an_address_glob_without_a_domain_is_refused_with_a_usable_hint() {
    // walkI 18: "*@" and "user@" were accepted and matched nothing; "@"
    // was told to write "*@".
    let text = "[spam]\nwhitelist = [\"@\", \"*@\", \"user@\"]\ntraps = [\"trap@\"]\n\
                [group.g]\nrecipients = [\"*@\"]\n";
    let e = parse(text, "t.toml").unwrap_err();
    let lines: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
    let star = "expected an address glob like \"*@example.com\" or \"*@*\" (a domain is needed: \"*\" for any)";
    assert_eq!(
        lines,
        [
            format!("t.toml:2: spam.whitelist: {star}, got \"@\""),
            format!("t.toml:2: spam.whitelist: {star}, got \"*@\""),
            "t.toml:2: spam.whitelist: expected an address glob like \"user@example.com\" or \"user@*\" (a domain is needed: \"*\" for any), got \"user@\"".to_string(),
            "t.toml:3: spam.traps: expected an address glob like \"trap@example.com\" or \"trap@*\" (a domain is needed: \"*\" for any), got \"trap@\"".to_string(),
            format!("t.toml:5: group.g.recipients: {star}, got \"*@\""),
        ],
        "{e}"
    );
}

/// The warnings of a valid configuration, as `check-config` prints them.
pub(super) fn warnings(text: &str) -> Vec<String> {
    parse(text, "mailward.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .warnings
        .iter()
        .map(ConfigProblem::warning)
        .collect()
}

/// walkO 12: a group's `subject_prefix` for one status replaced the whole
/// table, so its spam was marked "[as/spam]"; it is put over `[policy]`'s
/// per status, and a marked status still without a prefix is a warning.
#[test]
fn a_groups_subject_prefix_changes_only_the_statuses_it_names() {
    let c = parse(
        "[group.marks]\nrecipients = [\"*@marks.example\"]\n\
         subject_prefix = { \"as/probable\" = \"[maybe spam]\" }\n",
        "mailward.toml",
    )
    .unwrap();
    let p = c.group["marks"].effective(&c.policy);
    assert_eq!(p.subject_prefix["as/spam"], "[!!SPAM]");
    assert_eq!(p.subject_prefix["as/probable"], "[maybe spam]");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // [policy]'s own table is put over the defaults the same way.
    let c = parse(
        "[policy]\nsubject_prefix = { \"as/probable\" = \"[?]\" }\n",
        "mailward.toml",
    )
    .unwrap();
    assert_eq!(c.policy.subject_prefix["as/spam"], "[!!SPAM]");
    assert_eq!(c.policy.subject_prefix["as/probable"], "[?]");
}

#[test]
fn a_marked_status_without_a_prefix_is_a_warning() {
    assert_eq!(
        warnings(
            "[policy]\nmark_subject = [\"as/spam\", \"av/suspicious\"]\n\
             [group.g]\nrecipients = [\"*@g.example\"]\nmark_subject = [\"av/infected\"]\n\
             subject_prefix = { \"av/all\" = \"[VIRUS]\" }\n"
        ),
        [
            "mailward.toml:2: warning: policy.mark_subject: av/suspicious is marked but \
             subject_prefix has no prefix for it: its Subject gets \"[av/suspicious]\"; add \
             \"av/suspicious\" = \"...\" to subject_prefix",
            "mailward.toml:5: warning: group.g.mark_subject: av/infected is marked but \
             subject_prefix has no prefix for it: its Subject gets \"[av/infected]\"; add \
             \"av/infected\" = \"...\" to subject_prefix",
            "mailward.toml:6: warning: group.g.subject_prefix.\"av/all\": a prefix for av/all is \
             never used: a message has one status, never av/all; give the prefix of each status",
        ]
    );
    // The default marks as/spam and as/probable, both with a prefix.
    assert!(load(None).unwrap().warnings.is_empty());
}

/// walkO 9: groups are tried in alphabetical order of their names, so a
/// `senders` group named before a `recipients` group takes the latter's
/// recipients in its senders' mail, and of two overlapping `recipients`
/// the first by name wins; check-config says so with both names.
#[test]
fn groups_that_take_mail_from_a_later_group_by_their_names_are_warned_about() {
    let w = warnings(
        "[group.zeta]\nrecipients = [\"*@example.com\"]\n\
         [group.aaa_partners]\nsenders = [\"*@partner.example\"]\n\
         [group.alpha]\nrecipients = [\"boss@EXAMPLE.com\"]\n\
         [group.beta]\nrecipients = [\"*@other.example\", \"ip 10.0.0.0/8\"]\n\
         [group.gamma]\nrecipients = [\"ip 10.1.0.0/16\"]\n",
    );
    let has = |needle: &str| w.iter().any(|l| l.contains(needle));
    assert!(
        has(
            "mailward.toml:4: warning: group.aaa_partners.senders: group aaa_partners is tried \
             before groups alpha, beta, gamma and zeta (groups are tried in alphabetical order of \
             their names): mail from aaa_partners's senders goes by aaa_partners's policy for \
             every recipient, also those of groups alpha, beta, gamma and zeta"
        ),
        "{w:#?}"
    );
    assert!(
        has(
            "mailward.toml:2: warning: group.zeta.recipients: \"*@example.com\" overlaps \
             \"boss@EXAMPLE.com\" of group alpha, which is tried first"
        ),
        "{w:#?}"
    );
    assert!(
        has("group.gamma.recipients: \"ip 10.1.0.0/16\" overlaps \"ip 10.0.0.0/8\" of group beta"),
        "{w:#?}"
    );
    // Disjoint recipients, and a senders group named after the others:
    // nothing to say.
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(warnings(
        "[group.managers]\nrecipients = [\"*@managers.example.com\"]\n\
         [group.sales]\nrecipients = [\"*@sales.example.com\", \"b?ss@x.example\"]\n\
         [group.zz_partners]\nsenders = [\"*@partner.example\"]\n"
    )
    .is_empty());
}

#[test]
fn a_misnamed_file_in_a_templates_dir_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "recipient.txt",
        "admin.txt",
        ".admin.txt.swp",
        "sender.txt~",
    ] {
        std::fs::write(dir.path().join(f), "Subject: x\n\nbody\n").unwrap();
    }
    assert_eq!(
        warnings(&format!("[policy]\nnotify_templates = {:?}\n", dir.path())),
        [format!(
            "mailward.toml:2: warning: policy.notify_templates: {}/recipient.txt is not read: the \
             templates are sender.txt, recipients.txt, admin.txt; for the others the built-in \
             ones are used (did you mean recipients.txt?)",
            dir.path().display()
        )]
    );
}

/// walkS 11 and 14: a depth past the cap, and an update source that is not
/// a directory, are said by check-config.
#[test]
fn a_depth_past_the_cap_and_a_missing_update_source_are_warnings() {
    let w = warnings(
        "[policy]\nmax_scan_depth = 100\n[bases]\nupdate_from = \"/nonexistent/mailward-bases\"\n\
         [group.g]\nrecipients = [\"*@g.example\"]\nmax_scan_depth = 40\n",
    );
    assert_eq!(
        w,
        [
            "mailward.toml:2: warning: policy.max_scan_depth: 100 is scanned as 32: nesting is \
             capped at 32 whatever the setting",
            "mailward.toml:4: warning: bases.update_from: /nonexistent/mailward-bases is not a \
             directory here: the hourly update will be refused until it is",
            "mailward.toml:7: warning: group.g.max_scan_depth: 40 is scanned as 32: nesting is \
             capped at 32 whatever the setting",
        ]
    );
}

/// walkBE 10 and 11: alert thresholds that can never fire are refused,
/// the free space takes a size, and a root OID outside enterprises is
/// warned of.
#[test]
fn thresholds_that_never_fire_and_a_root_outside_enterprises_are_said() {
    for (t, said) in [
        (
            "infected_share_percent = 150",
            "150 never fires: the alert is raised above N %, so give 0 to 99",
        ),
        ("dns_failed_percent = 100", "100 never fires"),
        (
            "queue_messages = 5000000000",
            "more than mwAlertThresholdValue (Unsigned32) can carry",
        ),
    ] {
        let p = problems(&format!("[snmp]\nalert_thresholds = {{ {t} }}\n"));
        assert!(p.len() == 1 && p[0].contains(said), "{t}: {p:?}");
    }
    let cfg = parse(
        "[snmp]\nalert_thresholds = { spool_free_bytes = \"2GiB\", dns_failed_percent = 99 }\n",
        "a.toml",
    )
    .unwrap();
    assert_eq!(cfg.snmp.alert_thresholds["spool_free_bytes"], 2 << 30);
    let w = warnings("[agentx]\nroot_oid = \"1.3.6.1.2.1\"\n");
    assert!(
        w.len() == 1
            && w[0].starts_with(
                "mailward.toml:2: warning: agentx.root_oid: 1.3.6.1.2.1 is not under enterprises"
            ),
        "{w:?}"
    );
    assert!(warnings("[agentx]\nroot_oid = \"1.3.6.1.4.1.99999.1\"\n").is_empty());
}

/// walkBE 5: a control character in a string is said as such, not as a
/// missing closing quote; an unterminated string still is one.
#[test]
fn a_control_character_in_a_string_is_named() {
    let p = problems("[server]\nhostname = \"ab\u{1}c\"\n");
    assert_eq!(
        p,
        ["mailward.toml:2: server.hostname: a string holds the control character U+0001, which TOML does not allow there: remove it, or write it as \\u0001 in double quotes"]
    );
    for text in [
        "[server]\nhostname = \"abc\n",
        "[server]\r\nhostname = \"abc\r\n",
    ] {
        let p = problems(text);
        assert!(
            p.len() == 1
                && p[0].ends_with("a string that does not end on its line (a closing \" missing?)"),
            "{text:?}: {p:?}"
        );
    }
}

/// walkBF F7: a route back to the gateway's own listener is warned of.
#[test]
fn a_route_to_our_own_listener_is_warned_of() {
    let w = warnings(
        "[network]\nlisten_on = [\"127.0.0.1:2525\"]\n[[route]]\nmatch = \"*@loop.test\"\nto = \"[127.0.0.1:2525]\"\n",
    );
    assert!(
        w.len() == 1
            && w[0].starts_with("mailward.toml:5: warning: route[0].to: [127.0.0.1]:2525 is this gateway's own listener"),
        "{w:?}"
    );
    let w = warnings(
        "[network]\nlisten_on = [\"0.0.0.0:25\"]\n[[route]]\nmatch = \"*\"\nto = \"[localhost]:25\"\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    // The next hop's own port on the same host is no loop.
    assert!(warnings(
        "[network]\nlisten_on = [\"127.0.0.1:2525\"]\n[[route]]\nmatch = \"*\"\nto = \"[127.0.0.1:2526]\"\n"
    )
    .is_empty());
}

/// walkBH F7, walkBI F2: a spam.store refused for any reason is said
/// without its password.
#[test]
fn a_refused_redis_url_never_shows_its_password() {
    for url in [
        "rediss://:s3cret@10.0.0.1:6379/0",
        "REDIS://:s3cret@10.0.0.1:6379/0",
        "redis//:s3cret@10.0.0.1:6379/0",
        "redis+unix://:s3cret@/run/redis.sock",
        " redis://:s3cret@10.0.0.1:6379/0",
    ] {
        let p = problems(&format!("[spam]\nstore = \"{url}\"\n"));
        assert!(
            !p.is_empty() && p.iter().all(|l| !l.contains("s3cret")),
            "{url}: {p:?}"
        );
    }
}

#[test]
fn a_tls_redis_url_is_refused_as_unsupported_not_as_a_typo() {
    // walkAK 1: `rediss://` got "expected \"\" or a URL like redis://...".
    let errors = parse("[spam]\nstore = \"rediss://127.0.0.1:6379/0\"\n", "a.toml").unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("TLS to Redis (rediss://) is not supported"),
        "{text}"
    );
    assert_eq!(errors.0[0].key, "spam.store", "{text}");
}

/// walkAU F7: XFORWARD was allowed to every relay_networks host, so any
/// LAN machine could set the client identity. `network.xforward_hosts`
/// is loopback by default (Postfix beside Mailward, as docs/postfix.md
/// runs it), checked like relay_networks, and a network wider than one
/// host (not loopback) is a warning.
#[test]
fn xforward_hosts_default_to_this_host_and_warn_when_wider_than_one() {
    let c = parse("", "t.toml").unwrap_or_else(|e| panic!("{e}"));
    for ip in ["127.0.0.1", "127.0.0.2", "::1"] {
        assert!(c.network.may_xforward(ip.parse().unwrap()), "{ip}");
    }
    assert!(!c.network.may_xforward("192.0.2.1".parse().unwrap()));
    // `mailward config default` says what an absent key means.
    let shipped = load(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shipped.network.xforward_hosts, c.network.xforward_hosts);
    let c = parse(
        "[network]\nrelay_networks = [\"192.168.10.0/24\"]\nxforward_hosts = [\"192.168.10.5\"]\n",
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.network.may_relay("192.168.10.6".parse().unwrap()));
    assert!(!c.network.may_xforward("192.168.10.6".parse().unwrap()));
    assert!(c.network.may_xforward("192.168.10.5".parse().unwrap()));
    assert!(!c.network.may_xforward("127.0.0.1".parse().unwrap()));
    let quiet =
        warnings("[network]\nxforward_hosts = [\"192.168.10.5\", \"127.0.0.0/8\", \"::1\"]\n");
    assert!(
        !quiet.iter().any(|w| w.contains("xforward_hosts")),
        "{quiet:?}"
    );
    let wide = warnings("[network]\nxforward_hosts = [\"192.168.10.0/24\"]\n");
    assert!(
        wide.iter().any(|w| w.contains("network.xforward_hosts")
            && w.contains("192.168.10.0/24 is wider than one host")),
        "{wide:?}"
    );
    let e = parse("[network]\nxforward_hosts = [\"nonsense\"]\n", "t.toml").unwrap_err();
    let lines: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("t.toml:2: network.xforward_hosts: "),
        "{lines:?}"
    );
}

/// walkAW F10: `antiviral_sessions = 100000` passed, and the start then
/// tried to spawn 100,000 scan threads (a panic, 89,000 log lines).
#[test]
fn antiviral_sessions_is_bounded() {
    assert_eq!(
        problems("[limits]\nantiviral_sessions = 100000\n"),
        vec!["mailward.toml:2: limits.antiviral_sessions: must be from 1 to 256, got 100000 (one scan thread each; about one per CPU core is right)"]
    );
    assert_eq!(problems("[limits]\nantiviral_sessions = 0\n").len(), 1);
    let c = parse("[limits]\nantiviral_sessions = 256\n", "x").unwrap();
    assert_eq!(c.limits.antiviral_sessions, 256);
}

/// walkAW F4: `relay_networks = ["0.0.0.0/0"]`, an open relay, was taken
/// without a word; a network written with host bits meant all of it.
#[test]
fn relay_networks_warn_of_an_open_relay_and_of_host_bits() {
    let quiet = warnings(
        "[network]\nrelay_networks = [\"127.0.0.0/8\", \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/48\"]\n",
    );
    assert!(
        !quiet.iter().any(|w| w.contains("relay_networks")),
        "{quiet:?}"
    );
    let open = warnings("[network]\nrelay_networks = [\"0.0.0.0/0\", \"::/0\"]\n");
    let open: Vec<_> = open
        .iter()
        .filter(|w| w.contains("network.relay_networks") && w.contains("an open relay"))
        .collect();
    assert_eq!(open.len(), 2, "{open:?}");
    let wide = warnings("[network]\nrelay_networks = [\"64.0.0.0/2\"]\n");
    assert!(
        wide.iter()
            .any(|w| w.contains("64.0.0.0/2 is wider than any one site's network")),
        "{wide:?}"
    );
    let bits = warnings("[network]\nrelay_networks = [\"10.0.0.5/8\"]\n");
    assert!(
        bits.iter().any(|w| w.contains(
            "10.0.0.5/8 has host bits set, so it is all of 10.0.0.0/8; write 10.0.0.5/32 for that one host"
        )),
        "{bits:?}"
    );
}

/// walkAW F11: port 0 was taken, and the gateway listened on a port the
/// system picked and logged `:0`.
#[test]
fn a_listener_on_port_zero_is_refused() {
    assert_eq!(
        problems("[network]\nlisten_on = [\"127.0.0.1:0\"]\n"),
        vec!["mailward.toml:2: network.listen_on: port 0 would take a port the system picks, which no client knows: give one, e.g. \"127.0.0.1:25\""]
    );
    assert_eq!(
        problems("[metrics]\nlisten = \"[::1]:0\"\n"),
        vec!["mailward.toml:2: metrics.listen: port 0 would take a port the system picks, which no client knows: give one, e.g. \"[::1]:9925\""]
    );
}

/// walkAW F14, F6: `[route]` for `[[route]]`, and a key without its `=`,
/// were said in serde's and toml's words.
#[test]
fn a_single_route_table_and_a_missing_equals_sign_are_said_plainly() {
    assert_eq!(
        problems("[route]\nmatch = \"*\"\nto = \"[127.0.0.1:2526]\"\n"),
        vec!["mailward.toml:1: route: a single table where a list is wanted (a list of tables is written with two brackets: [[route]], not [route])"]
    );
    assert_eq!(
        problems("[limits]\nmax_hops 50\n"),
        vec!["mailward.toml:2: a key must be followed by = and its value (key = value)"]
    );
}

/// walkAW F9: a directory, or a file that is not UTF-8 text, given as the
/// configuration was said in the OS's or the decoder's words alone.
#[test]
fn a_directory_or_binary_file_as_the_configuration_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(Some(dir.path())).unwrap_err().to_string();
    assert!(
        e.contains("cannot read the configuration: it is a directory; give --config the file"),
        "{e}"
    );
    let bin = dir.path().join("garbage.toml");
    std::fs::write(&bin, b"\xff\xfe\x00binary").unwrap();
    let e = load(Some(&bin)).unwrap_err().to_string();
    assert!(
        e.contains("it is not text in UTF-8 (is it the configuration file?"),
        "{e}"
    );
}

/// walkAW F12: a data directory that is a file, or under one, passed
/// check-config; run then failed with "File exists" and no fix.
#[test]
fn a_data_dir_that_is_a_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    for d in [file.clone(), file.join("data")] {
        let text = format!("[server]\ndata_dir = {:?}\n", d.display().to_string());
        assert_eq!(
            problems(&text),
            vec![format!(
                "mailward.toml:2: server.data_dir: {} is a file, not a directory: set server.data_dir to a directory, or move the file away",
                file.display()
            )],
            "{}",
            d.display()
        );
    }
    let text = format!(
        "[server]\ndata_dir = {:?}\n",
        dir.path().join("new/data").display().to_string()
    );
    assert_eq!(problems(&text), Vec::<String>::new());
}

/// walkAW F26: `reject = ["av/clean", "as/clean"]` refused every message
/// without a word.
#[test]
fn a_clean_status_in_reject_block_or_quarantine_is_a_warning() {
    let w = warnings("[policy]\nreject = [\"av/clean\", \"as/clean\"]\n");
    let ours: Vec<&String> = w.iter().filter(|w| w.contains("policy.reject")).collect();
    assert_eq!(ours.len(), 2, "{w:?}");
    assert!(
        ours[0].contains(
            "av/clean is the status of nearly every message: this rejects nearly all mail"
        ),
        "{w:?}"
    );
    let w = warnings("[group.g]\nrecipients = [\"*@example.com\"]\nquarantine = [\"as/clean\"]\n");
    assert!(
        w.iter().any(|w| w.contains("group.g.quarantine: as/clean is the status of nearly every message: this quarantines nearly all mail")),
        "{w:?}"
    );
    let quiet = warnings("[policy]\nreject = [\"av/infected\", \"as/spam\"]\n");
    assert!(
        !quiet.iter().any(|w| w.contains("nearly all mail")),
        "{quiet:?}"
    );
}

/// walkAW F5: queue timings that contradict each other pass as valid but
/// are warned of, at the key the file sets.
#[test]
fn contradictory_queue_timings_are_warned_of() {
    assert_eq!(
        warnings("[timeouts]\nmax_queue_lifetime = \"2m\"\n"),
        vec![
            "mailward.toml:2: warning: timeouts.max_queue_lifetime: timeouts.max_queue_lifetime (2m) is shorter than timeouts.min_backoff (5m): a deferred message is tried once more, when its lifetime ends, and then returned to its sender",
            "mailward.toml:2: warning: timeouts.max_queue_lifetime: timeouts.delay_notice (4h) is not shorter than timeouts.max_queue_lifetime (2m): no sender is told of a delay, since the message is bounced first",
        ]
    );
    assert_eq!(
        warnings("[timeouts]\ndelay_notice = \"6d\"\n"),
        vec!["mailward.toml:2: warning: timeouts.delay_notice: timeouts.delay_notice (6d) is not shorter than timeouts.max_queue_lifetime (5d): no sender is told of a delay, since the message is bounced first"]
    );
    // The defaults, and sensible settings, say nothing.
    assert!(warnings("").is_empty());
    assert!(warnings(
        "[timeouts]\nmax_queue_lifetime = \"1d\"\ndelay_notice = \"1h\"\nmin_backoff = \"1m\"\n"
    )
    .is_empty());
}

/// walkAW F7: a 100 kB value is not echoed whole in its problem; the start
/// (the key's complaint) and the end (what to give) stay.
#[test]
fn a_huge_value_is_cut_in_its_problem() {
    let huge = "x".repeat(100_000);
    let p = problems(&format!("[limits]\nmax_message_size = \"{huge}\"\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].len() < 800, "{} octets", p[0].len());
    assert!(
        p[0].starts_with("mailward.toml:2: limits.max_message_size: "),
        "{}",
        p[0]
    );
    assert!(p[0].contains("octets left out)..."), "{}", p[0]);
    // A short one is said whole.
    let short = problems("[limits]\nmax_message_size = \"big\"\n");
    assert!(!short[0].contains("left out"), "{}", short[0]);
    // A cut never splits a character.
    let wide = "é".repeat(50_000);
    let p = problems(&format!("[limits]\nmax_message_size = \"{wide}\"\n"));
    assert!(p[0].contains("octets left out"), "{}", p[0]);
}

/// walkAW F22: a route whose match can match no recipient is refused (its
/// mail went by MX, silently); globs whose `*` stands for the `@` stay.
#[test]
fn a_route_that_matches_no_recipient_is_refused() {
    let route = |m: &str| {
        problems(&format!(
            "[[route]]\nmatch = \"{m}\"\nto = \"[127.0.0.1:2526]\"\n"
        ))
    };
    assert_eq!(
        route("example.com"),
        vec!["mailward.toml:2: route[0].match: expected a recipient glob like \"*@example.com\" for the recipients of a domain, got \"example.com\": a route's match is compared with the whole address, so without \"@\" it matches no recipient and their mail goes by MX"]
    );
    assert_eq!(
        route("postmaster"),
        vec!["mailward.toml:2: route[0].match: expected a recipient glob like \"postmaster@*\" or \"*@example.com\", got \"postmaster\": a route's match is compared with the whole address, so without \"@\" it matches no recipient and their mail goes by MX"]
    );
    for m in ["", " ", "a b@example.com"] {
        let p = route(m);
        assert!(
            p.len() == 1
                && p[0].contains(
                    "expected a recipient glob like \"*@example.com\" (\"*\" for every recipient)"
                ),
            "{m:?}: {p:?}"
        );
    }
    for m in [
        "<user@example.com>",
        "mailto:user@example.com",
        "user@example.com,",
        "user@@example.com",
    ] {
        let p = route(m);
        assert!(
            p.len() == 1 && p[0].contains("one bare address form"),
            "{m:?}: {p:?}"
        );
    }
    for m in ["@example.com", "user@"] {
        let p = route(m);
        assert!(
            p.len() == 1
                && p[0]
                    .starts_with("mailward.toml:2: route[0].match: expected an address glob like"),
            "{m:?}: {p:?}"
        );
    }
    // walkBD F9: without "*", shorter than the shortest address ("a@b").
    for m in ["?", "??"] {
        let p = route(m);
        assert!(
            p.len() == 1 && p[0].ends_with("and the shortest address has three"),
            "{m:?}: {p:?}"
        );
    }
    // Any problem of a route's match is said at its key and line.
    let p = problems("[[route]]\nmatch = 5\nto = \"[127.0.0.1:2526]\"\n");
    assert!(
        p.len() == 1
            && p[0].starts_with("mailward.toml:2: route[0].match: expected a recipient glob"),
        "{p:?}"
    );
    for m in [
        "*",
        "*@*",
        "*.example",
        "*example.com",
        "???",
        "a?b",
        "gone@example.com",
        "*@xn--bcher-kva.example",
    ] {
        assert!(route(m).is_empty(), "{m:?}: {:?}", route(m));
    }
}

/// walkAZ F3: a 100 kB key or table name (a binary pasted into the file)
/// is cut as a value is, with its line kept.
#[test]
fn a_huge_key_is_cut_in_its_problem() {
    let huge = "k".repeat(100_000);
    for text in [
        format!("[server]\n{huge} = 1\n"),
        format!("[{huge}]\nx = 1\n"),
    ] {
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].len() < 400, "{} octets", p[0].len());
        assert!(p[0].starts_with("mailward.toml:"), "{}", p[0]);
        assert!(p[0].contains("octets left out)..."), "{}", p[0]);
        assert!(p[0].ends_with(": unknown key"), "{}", p[0]);
    }
}

/// walkAW F22: a store's max_size of 0 ("no limit" elsewhere) would remove
/// every quarantined message as soon as it is stored.
#[test]
fn a_store_max_size_of_zero_is_refused() {
    for table in ["quarantine", "archive"] {
        assert_eq!(
            problems(&format!("[{table}]\nmax_size = 0\n")),
            vec![format!("mailward.toml:2: {table}.max_size: 0 would remove every entry as soon as it is stored (it is a cap, not \"no limit\"): give the most the store may hold, like \"10GiB\"")]
        );
        assert_eq!(
            problems(&format!("[{table}]\nmax_size = \"0B\"\n")).len(),
            1
        );
        assert!(problems(&format!("[{table}]\nmax_size = \"1MiB\"\n")).is_empty());
    }
}

/// walkAW F22: a log rotated at every line and a statistics file written
/// a thousand times a second are warned of; 0 (never rotate) is not.
#[test]
fn a_tiny_rotate_size_and_write_interval_are_warned_of() {
    assert_eq!(
        warnings("[log]\nrotate_size = \"1B\"\n"),
        vec!["mailward.toml:2: warning: log.rotate_size: a file of 1 octet holds a few lines at most: the log is rotated at nearly every line, and its 5 files keep the last few (\"0\" never rotates; 10MiB is the default)"]
    );
    assert!(warnings("[log]\nrotate_size = \"0\"\n").is_empty());
    assert!(warnings("[log]\nrotate_size = \"1KiB\"\n").is_empty());
    assert_eq!(warnings("[log]\nrotate_size = 1023\n").len(), 1);
    // walkAZ F4: nothing is rotated (the log to stderr, no raw records).
    assert!(warnings(
        "[log]\nrotate_size = 10\ndestination = \"stderr\"\n[statistics]\noptions = [\"messages\"]\n"
    )
    .is_empty());
    let w = warnings("[statistics]\nwrite_interval = \"1ms\"\n");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("mailward.toml:2: warning: statistics.write_interval: 1ms rewrites the statistics file more than once a second"),
        "{}",
        w[0]
    );
    assert!(warnings("[statistics]\nwrite_interval = \"1s\"\n").is_empty());
}

/// walkAY T8: a store in use that is smaller than the largest message
/// accepted is emptied by one such message: warned of.
#[test]
fn a_store_smaller_than_the_largest_message_is_warned_of() {
    assert_eq!(
        warnings("[archive]\nincoming = true\nmax_size = \"2KiB\"\n"),
        vec!["mailward.toml:3: warning: archive.max_size: 2KiB is not more than limits.max_message_size (20MiB): one message that large takes the archive over max_size, and every entry is removed, that one included"]
    );
    // Not in use: nothing to say.
    assert!(warnings("[archive]\nmax_size = \"2KiB\"\n").is_empty());
    assert!(warnings("[quarantine]\nmax_size = \"2KiB\"\n").is_empty());
    let w = warnings(
        "[quarantine]\nmax_size = \"2KiB\"\n[group.g]\nrecipients = [\"*@g.example\"]\nquarantine = [\"av/infected\"]\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("mailward.toml:2: warning: quarantine.max_size: 2KiB is not more than"),
        "{w:?}"
    );
}

/// walkBT F3: an address rule written with < > (the null sender `<>`, as
/// Postfix's access maps write it) never matches: a warning, not silence.
#[test]
fn an_address_rule_with_angle_brackets_is_said_to_never_match() {
    let w = warnings(
        "[access]\nmail_from_rules = [\"deny address <>\", \"deny address *@spam.test\"]\n",
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("access.mail_from_rules")
            && w[0].contains("deny address <>: never matches")
            && w[0].starts_with("mailward.toml:2:"),
        "{w:?}"
    );
    // In rcpt_rules, <> is no recipient (walkBV low: the warning spoke of
    // the null sender there too).
    let w = warnings("[access]\nrcpt_rules = [\"deny address <>\"]\n");
    assert!(
        w.len() == 1 && w[0].contains("no recipient is <>") && !w[0].contains("null sender"),
        "{w:?}"
    );
    // No address is known at connect or at HELO (walkBU U6).
    let w = warnings("[access]\nconnect_rules = [\"deny address *@spam.test\"]\n");
    assert!(
        w.len() == 1 && w[0].contains("no address is known yet at this stage"),
        "{w:?}"
    );
}
