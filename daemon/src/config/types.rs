//! The typed configuration: what the rest of the daemon reads. Every value
//! here has been checked by the loader (`super::validate`), so code that
//! holds a [`Config`] never re-parses or re-validates it. Defaults live in
//! `validate.rs` (and are printed in `default.toml`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;

use super::pattern::{is_domain, DomainPattern, Pattern};
use super::rules::Rule;
use super::units::{ByteSize, Dur};

/// The whole configuration, one field per TOML section.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from: a file path, or `"<default>"` for the embedded
    /// default; shown in messages and over SNMP.
    pub origin: String,
    /// `[server]`: identity and where state lives.
    pub server: Server,
    /// `[network]`: listeners, protected domains, relaying, TLS.
    pub network: Network,
    /// `[access]`: access rules and DNSBLs.
    pub access: Access,
    /// `[limits]`: sessions, sizes, counts.
    pub limits: Limits,
    /// `[timeouts]`: protocol timeouts and queue retry times.
    pub timeouts: Timeouts,
    /// `[[route]]`: the routing table, in file order; first match wins.
    pub route: Vec<Route>,
    /// `[policy]`: the default group's policy.
    pub policy: Policy,
    /// `[group.NAME]`: groups that override the policy, by name.
    pub group: BTreeMap<String, Group>,
    /// `[archive]`: which mail is copied to the archive, and for how long.
    pub archive: Archive,
    /// `[quarantine]`: how long quarantined mail is kept.
    pub quarantine: Quarantine,
    /// `[spam]`: learning and rules of the spam check.
    pub spam: Spam,
    /// `[bases]`: signature bases and their updates.
    pub bases: Bases,
    /// `[statistics]`: statistics categories and files.
    pub statistics: Statistics,
    /// `[snmp]`: what the SNMP subagent serves and sends.
    pub snmp: Snmp,
    /// `[agentx]`: how to reach the AgentX master.
    pub agentx: Agentx,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: Metrics,
    /// `[milter]`: the milter listener for Postfix/Sendmail.
    pub milter: Milter,
    /// `[log]`: where logs go and how much.
    pub log: Log,
    /// What is valid but most likely not meant (a group that takes mail
    /// from another by the order of their names, a marked status without
    /// a prefix, a misnamed template): `check-config` prints them, the
    /// daemon logs them when it loads the file.
    pub warnings: Vec<super::ConfigProblem>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Our name in the SMTP banner, `Received:` headers and DSNs.
    pub hostname: String,
    /// The name `Authentication-Results` fields are written in (RFC 8601's
    /// authserv-id), and whose fields a message comes with are removed.
    /// Default: `hostname`; several gateways of one site share one.
    pub authserv_id: String,
    /// Where mail to `postmaster` and operator notices go.
    pub postmaster: String,
    /// The directory under which the spool, quarantine, archive, statistics
    /// and bases live unless set elsewhere.
    pub data_dir: PathBuf,
    /// The admin socket the CLI talks to (default `data_dir/admin.sock`).
    pub admin_socket: PathBuf,
    /// Started as root, the user `mailward run` switches to once its ports
    /// are bound (`"root"` to stay root).
    pub user: Option<String>,
    /// The group it switches to (default: the user's own group); it may
    /// use the admin socket and read the logs.
    pub group: Option<String>,
}

impl Server {
    /// The spool: `data_dir/spool`.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Addresses the SMTP listener binds; never empty.
    pub listen_on: Vec<SocketAddr>,
    /// Domains we accept mail for from anyone.
    pub protected_domains: Vec<DomainPattern>,
    /// Clients that may send mail to any domain.
    pub relay_networks: Vec<IpNet>,
    /// Clients that may use XFORWARD (say who their own client was): the
    /// MTA in front of or behind Mailward, not every client that may
    /// relay (walkAU F7).
    pub xforward_hosts: Vec<IpNet>,
    /// Mailward is an MTA's after-queue content filter: every SMTP client
    /// queued the message before and would bounce a refusal to its sender
    /// (who may be forged), so policy refusals become blocks.
    pub after_queue: bool,
    /// PEM certificate chain for STARTTLS; set together with `tls_key`.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for STARTTLS; set together with `tls_certificate`.
    pub tls_key: Option<PathBuf>,
}

impl Network {
    /// Whether mail for `domain` is accepted from anyone.
    pub fn is_protected(&self, domain: &str) -> bool {
        self.protected_domains.iter().any(|p| p.matches(domain))
    }

    /// Whether `ip` may use XFORWARD.
    pub fn may_xforward(&self, ip: IpAddr) -> bool {
        self.xforward_hosts
            .iter()
            .any(|n| super::rules::net_contains(n, ip))
    }

    /// Whether `ip` may relay to any domain.
    pub fn may_relay(&self, ip: IpAddr) -> bool {
        self.relay_networks
            .iter()
            .any(|n| super::rules::net_contains(n, ip))
    }
}

/// `[access]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Checked when a client connects (address and reverse DNS name).
    pub connect_rules: Vec<Rule>,
    /// Checked at HELO/EHLO (the host is the HELO name).
    pub helo_rules: Vec<Rule>,
    /// Checked at MAIL FROM (the address is the sender).
    pub mail_from_rules: Vec<Rule>,
    /// Checked at each RCPT TO (the address is the recipient).
    pub rcpt_rules: Vec<Rule>,
    /// DNSBL zones; a listed client is refused at connect.
    pub dnsbl: Vec<String>,
    /// The DNS server to ask; `None` means the system's resolvers.
    pub dns_resolver: Option<SocketAddr>,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open inbound SMTP sessions at most.
    pub incoming_sessions: u32,
    /// Open inbound sessions from one client address at most.
    pub incoming_sessions_per_ip: u32,
    /// Leading bits by which IPv6 clients are counted for
    /// `incoming_sessions_per_ip` (32 to 128).
    pub incoming_sessions_per_ipv6_prefix: u8,
    /// Open outbound SMTP sessions at most.
    pub outgoing_sessions: u32,
    /// Open outbound sessions to one next hop at most, and delivery
    /// attempts in flight to it (the rest of its mail waits in the queue).
    pub outgoing_sessions_per_host: u32,
    /// Messages scanned at the same time.
    pub antiviral_sessions: u32,
    /// Largest message accepted (also announced in EHLO SIZE).
    pub max_message_size: ByteSize,
    /// Messages per inbound session.
    pub max_messages_per_session: u32,
    /// Recipients per message (SMTP and the before-queue proxy; in milter
    /// mode the MTA's own limit applies, e.g. Postfix's
    /// `smtpd_recipient_limit`).
    pub max_rcpts_per_message: u32,
    /// Bytes per inbound session, all messages together.
    pub max_session_size: ByteSize,
    /// A message with this many `Received:` headers or more is refused as
    /// looping (554 5.4.6).
    pub max_hops: u32,
    /// Free space below which new mail is refused with 452.
    pub min_queue_free_space: ByteSize,
    /// Octets per second a client must keep up in DATA: the DATA deadline
    /// is `timeouts.data` plus the octets received at this rate (0: none).
    pub min_data_rate: u32,
    /// Share of `incoming_sessions`, in percent, above which the stress
    /// timeouts apply (0: never).
    pub stress_percent: u32,
    /// Bytes all scans together may hold unpacked at one time.
    pub scan_memory: ByteSize,
    /// What DATA does with a line longer than 998 octets.
    pub long_lines: LongLines,
}

/// `limits.long_lines`: what DATA does with a line longer than 998 octets
/// (RFC 5322 2.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongLines {
    /// The message is refused with 554 5.6.0 (the default): what was
    /// scanned is what the sender wrote.
    Refuse,
    /// The line is broken into lines of 998 octets at most as it is read,
    /// as Postfix's `smtp_line_length_limit` does, and the message is
    /// accepted.
    Split,
}

impl LongLines {
    /// Parses `refuse|split`.
    pub fn parse(text: &str) -> Result<LongLines, String> {
        match text {
            "refuse" => Ok(LongLines::Refuse),
            "split" => Ok(LongLines::Split),
            _ => Err(format!("expected \"refuse\" or \"split\", got {text:?}")),
        }
    }

    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LongLines::Refuse => "refuse",
            LongLines::Split => "split",
        }
    }
}

/// `[timeouts]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// First retry delay after a temporary delivery failure.
    pub min_backoff: Dur,
    /// Longest retry delay (never less than `min_backoff`).
    pub max_backoff: Dur,
    /// Age after which an undeliverable message is bounced.
    pub max_queue_lifetime: Dur,
    /// Age after which a 'delayed' DSN is sent once, when asked for.
    pub delay_notice: Dur,
    /// Inbound: the deadline for one whole command line, for each DATA
    /// line after the one before, and for each write of replies;
    /// outbound: waiting for a reply.
    pub command: Dur,
    /// Inbound: the deadline for the whole DATA phase (plus its size at
    /// `limits.min_data_rate`), each line within `command` of the one
    /// before; outbound: sending the message data.
    pub data: Dur,
    /// `command` while under stress.
    pub stress_command: Dur,
    /// `data` while under stress.
    pub stress_data: Dur,
    /// Scanning one message.
    pub scan: Dur,
    /// How long the final reply to DATA may wait for the scan.
    pub scan_in_session: Dur,
    /// Opening an outbound connection.
    pub connect: Dur,
    /// One DNS query.
    pub dns: Dur,
}

/// `[[route]]`: recipients matching `pattern` go to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The recipient glob (TOML key `match`), e.g. `"*@example.com"`.
    pub pattern: Pattern,
    /// Where they go.
    pub to: NextHop,
    /// STARTTLS towards that hop (`tls`, `tls_ca`, `tls_name`).
    pub tls: OutboundTls,
}

/// A route's `tls`: how delivery uses STARTTLS (Postfix's
/// `smtp_tls_security_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsMode {
    /// Never (plain text even when offered).
    None,
    /// When offered, without checking the certificate; a failed handshake
    /// falls back to plain text (the default).
    May,
    /// Always, without checking the certificate; no STARTTLS or a failed
    /// handshake defers (4.7.x).
    Encrypt,
    /// Always, with a certificate that chains to `tls_ca` and names
    /// `tls_name`; anything else defers.
    Verify,
}

impl TlsMode {
    pub fn parse(text: &str) -> Result<TlsMode, String> {
        match text {
            "none" => Ok(TlsMode::None),
            "may" => Ok(TlsMode::May),
            "encrypt" => Ok(TlsMode::Encrypt),
            "verify" => Ok(TlsMode::Verify),
            _ => Err(format!(
                "expected \"none\", \"may\", \"encrypt\" or \"verify\", got {text:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::May => "may",
            TlsMode::Encrypt => "encrypt",
            TlsMode::Verify => "verify",
        }
    }
}

/// The CA bundle `verify` uses unless `tls_ca` names another (Debian's
/// ca-certificates).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// STARTTLS settings of one route (or of MX delivery: `may`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboundTls {
    pub mode: TlsMode,
    /// PEM CA certificates for `verify`.
    pub ca: PathBuf,
    /// The name the certificate must carry under `verify` (default: the
    /// next hop's host name).
    pub name: Option<String>,
}

impl Default for OutboundTls {
    fn default() -> OutboundTls {
        OutboundTls {
            mode: TlsMode::May,
            ca: PathBuf::from(SYSTEM_CA_BUNDLE),
            name: None,
        }
    }
}

/// The next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// `"[host:port]"`, `"[host]:port"`, `"[host]"` (port 25): that host
    /// itself, no MX lookup. `host` is a name or an address (IPv6 without
    /// brackets).
    Direct { host: String, port: u16 },
    /// `"domain"` or `"domain:port"`: the MX hosts of `domain`.
    Mx { domain: String, port: u16 },
}

const NEXT_HOP_EXAMPLE: &str =
    "expected a next hop like \"[127.0.0.1:2526]\", \"[mx.example.com]:25\" or \"example.com\"";

impl NextHop {
    /// Parses the `to` of a route.
    pub fn parse(text: &str) -> Result<NextHop, String> {
        let bad = |why: &str| format!("{NEXT_HOP_EXAMPLE}, got {text:?}{why}");
        let port_of = |p: &str| match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(bad(" (the port is a number from 1 to 65535)")),
        };
        if let Some(rest) = text.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(bad(" (no closing \"]\")"));
            };
            let (host, port) = if after.is_empty() {
                if inner.parse::<Ipv6Addr>().is_ok() {
                    (inner, 25)
                } else {
                    match inner.rsplit_once(':') {
                        Some((host, port)) => (host, port_of(port)?),
                        None => (inner, 25),
                    }
                }
            } else if let Some(port) = after.strip_prefix(':') {
                (inner, port_of(port)?)
            } else {
                return Err(bad(""));
            };
            if host.parse::<IpAddr>().is_err() && !is_domain(host) {
                return Err(bad(" (not a host name or address)"));
            }
            Ok(NextHop::Direct {
                host: host.to_string(),
                port,
            })
        } else {
            let (domain, port) = match text.split_once(':') {
                Some((domain, port)) => (domain, port_of(port)?),
                None => (text, 25),
            };
            if domain.parse::<IpAddr>().is_ok() {
                return Err(bad(" (an address needs brackets: \"[192.0.2.1]\")"));
            }
            if !is_domain(domain) {
                return Err(bad(" (not a domain name)"));
            }
            Ok(NextHop::Mx {
                domain: domain.to_string(),
                port,
            })
        }
    }

    /// The TCP port to connect to.
    pub fn port(&self) -> u16 {
        match self {
            NextHop::Direct { port, .. } | NextHop::Mx { port, .. } => *port,
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Direct { host, port } => write!(f, "[{host}]:{port}"),
            NextHop::Mx { domain, port: 25 } => f.write_str(domain),
            NextHop::Mx { domain, port } => write!(f, "{domain}:{port}"),
        }
    }
}

/// How hard the spam checks judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpamLevel {
    /// Only sure spam is `as/spam`.
    Minimum,
    /// The default balance.
    Standard,
    /// More is marked, more false positives.
    High,
    /// Everything doubtful is marked.
    Maximum,
}

impl SpamLevel {
    /// Parses `minimum|standard|high|maximum`.
    pub fn parse(text: &str) -> Result<SpamLevel, String> {
        match text {
            "minimum" => Ok(SpamLevel::Minimum),
            "standard" => Ok(SpamLevel::Standard),
            "high" => Ok(SpamLevel::High),
            "maximum" => Ok(SpamLevel::Maximum),
            _ => Err(format!(
                "expected one of \"minimum\", \"standard\", \"high\", \"maximum\", got {text:?}"
            )),
        }
    }

    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SpamLevel::Minimum => "minimum",
            SpamLevel::Standard => "standard",
            SpamLevel::High => "high",
            SpamLevel::Maximum => "maximum",
        }
    }
}

/// What happens to the offending part of a message (`policy.action_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Leave the message as it is.
    Pass,
    /// Cut out the offending part.
    Remove,
    /// Replace the offending part with a short text saying why.
    Placeholder,
}

impl Action {
    /// Parses `pass|remove|placeholder`.
    pub fn parse(text: &str) -> Result<Action, String> {
        match text {
            "pass" => Ok(Action::Pass),
            "remove" => Ok(Action::Remove),
            "placeholder" => Ok(Action::Placeholder),
            _ => Err(format!(
                "expected one of \"pass\", \"remove\", \"placeholder\", got {text:?}"
            )),
        }
    }

    /// The name as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Remove => "remove",
            Action::Placeholder => "placeholder",
        }
    }
}

/// Every status of DESIGN section 5, plus `av/all` and `as/all`.
pub const STATUSES: &[&str] = &[
    "av/clean",
    "av/infected",
    "av/suspicious",
    "av/protected",
    "av/error",
    "av/filtered",
    "av/all",
    "as/spam",
    "as/probable",
    "as/formal",
    "as/blacklisted",
    "as/clean",
    "as/all",
];

/// The statuses that `av/all` and `as/all` leave out: they say the checks
/// found nothing to act on. `*/clean` is the absence of a finding, and
/// `as/formal` (a bounce, a read receipt, an auto-reply) is mail that is
/// not spam: `block = ["as/all"]` must not stop delivery reports, and
/// `block = ["av/all"]` must not stop clean mail. A group that wants to act
/// on them names them.
pub const NOT_IN_ALL: &[&str] = &["av/clean", "as/clean", "as/formal"];

/// A scan status as written in policy lists: `"av/infected"`, `"as/spam"`,
/// or `"av/all"`/`"as/all"` for every status of that kind that is a
/// finding (all but [`NOT_IN_ALL`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Status(pub String);

impl Status {
    /// Parses one of [`STATUSES`].
    pub fn parse(text: &str) -> Result<Status, String> {
        if STATUSES.contains(&text) {
            Ok(Status(text.to_string()))
        } else {
            Err(format!(
                "expected a status like \"av/infected\" or \"as/spam\", got {text:?} (statuses: {})",
                STATUSES.join(", ")
            ))
        }
    }

    /// The status as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this list entry stands for `status` (`"av/all"` stands for
    /// every `av/...` but `av/clean`; `"as/all"` for every `as/...` but
    /// `as/clean` and `as/formal`: [`NOT_IN_ALL`]).
    pub fn covers(&self, status: &str) -> bool {
        match self.0.strip_suffix("/all") {
            Some(kind) => {
                status
                    .strip_prefix(kind)
                    .is_some_and(|rest| rest.starts_with('/'))
                    && !NOT_IN_ALL.contains(&status)
            }
            None => self.0 == status,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether any entry of `list` stands for `status`.
pub fn statuses_cover(list: &[Status], status: &str) -> bool {
    list.iter().any(|s| s.covers(status))
}

/// `[policy]`: the default group's policy. A `[group.NAME]` overrides any
/// of these keys for its messages (see [`Group::effective`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Run the antivirus (and content filter).
    pub check_av: bool,
    /// Run the spam checks.
    pub check_spam: bool,
    /// How hard the spam checks judge.
    pub spam_level: SpamLevel,
    /// Statuses whose message gets a subject prefix.
    pub mark_subject: Vec<Status>,
    /// The prefix per status (keys are statuses).
    pub subject_prefix: BTreeMap<String, String>,
    /// Add `X-Mailward-AV` and `X-Mailward-Spam` headers.
    pub add_headers: bool,
    /// What to do with an infected part.
    pub action_infected: Action,
    /// What to do with a suspicious part.
    pub action_suspicious: Action,
    /// What to do with an encrypted or password-protected part.
    pub action_protected: Action,
    /// What to do with a part that could not be scanned.
    pub action_error: Action,
    /// What to do with a part filtered by name or MIME type.
    pub action_filtered: Action,
    /// Statuses refused inside the SMTP session (550 5.7.1).
    pub reject: Vec<Status>,
    /// Statuses whose message is accepted but not delivered.
    pub block: Vec<Status>,
    /// Statuses whose message is copied to quarantine.
    pub quarantine: Vec<Status>,
    /// Statuses for which the sender is notified.
    pub notify_sender: Vec<Status>,
    /// Statuses for which the recipients are notified.
    pub notify_recipients: Vec<Status>,
    /// Statuses for which the administrator is notified.
    pub notify_admin: Vec<Status>,
    /// Where administrator notifications go; `server.postmaster` when
    /// left out.
    pub admin_address: String,
    /// A directory with `sender.txt`, `recipients.txt`, `admin.txt`
    /// notification templates (each optional; "" = the built-in ones).
    pub notify_templates: TemplatesDir,
    /// File-name globs that make a part `av/filtered`.
    pub include_by_name: Vec<Pattern>,
    /// File-name globs never filtered (win over the includes).
    pub exclude_by_name: Vec<Pattern>,
    /// MIME-type globs that make a part `av/filtered`.
    pub include_by_mime: Vec<Pattern>,
    /// MIME-type globs never filtered (win over the includes).
    pub exclude_by_mime: Vec<Pattern>,
    /// Nesting of messages and archives scanned at most.
    pub max_scan_depth: u32,
    /// Bytes unpacked from one message at most; beyond, `av/error`.
    pub max_unpacked_size: ByteSize,
}

/// `notify_templates`: a directory of notification templates ("" = the
/// built-in ones), read and checked when the configuration is loaded.
/// Notices are made from the texts read then, never from the files as
/// they are later: a template edited after a refused reload (or without
/// any reload) does not change what is sent (walkO 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplatesDir {
    /// The directory as written in the file ("" = the built-in templates).
    pub dir: String,
    /// The templates found there at load, by file name (`sender.txt`,
    /// `recipients.txt`, `admin.txt`), line ends as LF; a file that is
    /// not there is the built-in one.
    pub texts: TemplateTexts,
}

/// Template texts by file name (`sender.txt`, ...).
pub type TemplateTexts = BTreeMap<String, std::sync::Arc<str>>;

impl TemplatesDir {
    /// A directory whose templates are not read yet.
    pub fn new(dir: impl Into<String>) -> TemplatesDir {
        TemplatesDir {
            dir: dir.into(),
            texts: BTreeMap::new(),
        }
    }
}

/// An entry of a group's `senders` or `recipients`, compiled once when the
/// configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEntry {
    /// `"ip 10.0.0.0/8"`: the client's address.
    Net(IpNet),
    /// An address glob.
    Address(Pattern),
}

/// Declares [`Group`] from the list of policy keys: every key of
/// [`Policy`] as an `Option`, `None` meaning "as in `[policy]`".
macro_rules! declare_group {
    ($($field:ident: $ty:ty),* $(,)?) => {
        /// `[group.NAME]`: messages of some senders or recipients, with their
        /// own policy. A message is in the first group (by name) where the
        /// sender or any recipient matches.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct Group {
            /// Sender address globs (`"*@example.com"`) or client networks
            /// (`"ip 10.0.0.0/8"`), compiled at load.
            pub senders: Vec<GroupEntry>,
            /// Recipient address globs (`"*@managers.example.com"`).
            pub recipients: Vec<GroupEntry>,
            $(
                #[doc = concat!("Overrides `policy.", stringify!($field), "` when set.")]
                pub $field: Option<$ty>,
            )*
        }

        impl Group {
            /// The policy of this group: `base` (the `[policy]` section) with
            /// this group's keys put over it. `subject_prefix` is put over
            /// `base`'s per status: a group that changes the prefix of one
            /// status keeps the others' (walkO 12: a group's table for
            /// as/probable alone marked spam "[as/spam]").
            pub fn effective(&self, base: &Policy) -> Policy {
                let mut policy = Policy {
                    $( $field: self.$field.clone().unwrap_or_else(|| base.$field.clone()), )*
                };
                if let Some(own) = &self.subject_prefix {
                    let mut merged = base.subject_prefix.clone();
                    merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                    policy.subject_prefix = merged;
                }
                policy
            }
        }
    };
}

for_policy_keys!(declare_group!());

/// `[archive]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// Keep a copy of every accepted message, as received.
    pub incoming: bool,
    /// Keep a copy of every delivered message, as sent.
    pub outgoing: bool,
    /// Entries older than this are removed.
    pub max_age: Dur,
    /// Beyond this total, the oldest entries are removed.
    pub max_size: ByteSize,
}

/// `[quarantine]`: retention of the quarantine store (what goes there is
/// each group's `quarantine` list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Entries older than this are removed.
    pub max_age: Dur,
    /// Beyond this total, the oldest entries are removed.
    pub max_size: ByteSize,
}

/// `[bases]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bases {
    /// Directory of `.yar` files and `manifest.toml` (default
    /// `data_dir/bases/av`).
    pub av: PathBuf,
    /// A directory or `file://` URL to update from; empty = no updates.
    pub update_from: String,
    /// Age of the bases' release after which they are reported obsolete.
    pub obsolete_after: Dur,
}

/// `[spam]`: where the spam check keeps what it has learnt, and its rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Spam {
    /// The site's learning and the installed classifier base (default
    /// `data_dir/spam`).
    pub dir: PathBuf,
    /// Spam and ham messages the classifier must have learnt (each) before
    /// it scores.
    pub min_learnt: u64,
    /// A file of content rules added to the built-in ones ("" = none).
    pub rules: Option<PathBuf>,
    /// DNSBL zones whose listing of the client is a spam test.
    pub dnsbl: Vec<ScoredZone>,
    /// Senders (address globs) and clients (`ip NET`) whose mail is
    /// `as/blacklisted`.
    pub blacklist: Vec<GroupEntry>,
    /// Clients (`ip NET`) and senders (address globs) whose mail is
    /// `as/clean` whatever it scores; a sender only when SPF or DKIM
    /// vouches for it.
    pub whitelist: Vec<GroupEntry>,
    /// What SPF does at MAIL FROM.
    pub spf: SpfMode,
    /// Whether DKIM signatures and DMARC are verified after DATA.
    pub dkim: bool,
    /// URI DNS list zones (SURBL, URIBL) for the registered domains of the
    /// message's links.
    pub surbl: Vec<ScoredZone>,
    /// Where the site's learning lives: "" = `dir`, or a Redis URL that
    /// several gateways share.
    pub store: String,
    /// Whether confident verdicts that do not rest on the classifier are
    /// learnt by it.
    pub autolearn: bool,
    /// Spam-trap addresses: mail to one of them is `as/blacklisted`.
    pub traps: Vec<Pattern>,
    /// Distinct tokens the site's learning keeps; past it the rarest are
    /// forgotten.
    pub max_tokens: u64,
    /// Learnt messages whose identities the site's learning keeps (for
    /// "learnt twice counts once" and `spam forget`).
    pub max_learnt: u64,
}

/// `[spam] spf`: what the SPF check at MAIL FROM does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfMode {
    /// Not checked.
    Off,
    /// A signal for the score (and the proof a whitelisted sender needs).
    Score,
    /// As `Score`, and a `fail` refuses the sender (550 5.7.23).
    Reject,
}

/// A DNS list zone of the spam check: a listing adds `weight` to the
/// score, or (None) makes the message `as/blacklisted`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredZone {
    pub zone: String,
    pub weight: Option<f64>,
}

impl ScoredZone {
    /// `"bl.example.org:3.5"` or `"bl.example.org:final"`.
    pub fn parse(s: &str) -> Result<ScoredZone, String> {
        let expected = || {
            format!("expected a zone and a weight like \"bl.example.org:3.5\" or \"bl.example.org:final\", got {s:?}")
        };
        let (zone, w) = s.rsplit_once(':').ok_or_else(expected)?;
        let weight = match w {
            "final" => None,
            w => Some(w.parse::<f64>().map_err(|_| expected())?),
        };
        if let Some(problem) = weight.and_then(ScoredZone::weight_problem) {
            return Err(format!("{problem}, in {s:?}"));
        }
        ScoredZone::new(zone, weight).ok_or_else(expected)
    }

    /// Why `weight` is not a zone's weight (None: it is one). Said apart
    /// from the syntax, so that "z.test:100.5" is not told it has the wrong
    /// form (walkI 17); the same range as the rules file's weights.
    pub fn weight_problem(weight: f64) -> Option<String> {
        (!(weight.is_finite() && weight.abs() <= 100.0))
            .then(|| format!("weight {weight} is not a number from -100 to 100"))
    }

    /// A zone that is a domain name, with a finite weight of at most 100
    /// either way (None: final); None when either is not.
    pub fn new(zone: &str, weight: Option<f64>) -> Option<ScoredZone> {
        let weight_ok = weight.is_none_or(|w| w.is_finite() && w.abs() <= 100.0);
        (super::pattern::is_domain(zone) && weight_ok).then(|| ScoredZone {
            zone: zone.to_string(),
            weight,
        })
    }

    /// The test's name: `DNSBL_` and the zone in capitals.
    pub fn test_name(&self) -> String {
        self.test_name_with("DNSBL")
    }

    /// `PREFIX_ZONE_IN_CAPITALS`.
    pub fn test_name_with(&self, prefix: &str) -> String {
        let z: String = self
            .zone
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{prefix}_{z}")
    }
}

/// Statistics categories of DESIGN section 6.
pub const STATISTICS_OPTIONS: &[&str] = &["messages", "resources", "viruses", "filters", "raw"];

/// `[statistics]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statistics {
    /// Categories kept (a subset of [`STATISTICS_OPTIONS`]).
    pub options: Vec<String>,
    /// The JSON snapshot `stats write` renders (default
    /// `data_dir/stats/stats.json`).
    pub destination: PathBuf,
    /// The raw records, one line per message and recipient (default
    /// `data_dir/stats/raw.log`).
    pub raw_destination: PathBuf,
    /// How often the snapshot is written.
    pub write_interval: Dur,
    /// Length of the top-N tables.
    pub top: u32,
}

impl Statistics {
    /// Whether the category `name` is kept.
    pub fn has(&self, name: &str) -> bool {
        self.options.iter().any(|o| o == name)
    }
}

/// Subtrees the subagent may serve.
pub const SNMP_SERVICES: &[&str] = &["config", "statistics", "admin", "update"];
/// Groups of notifications the subagent may send.
pub const SNMP_TRAPS: &[&str] = &["config", "admin", "update"];
/// Alert thresholds that raise `mwAlertThreshold`.
pub const SNMP_THRESHOLDS: &[&str] = &[
    "queue_messages",
    "infected_per_minute",
    "infected_share_percent",
    "spool_free_bytes",
    "dns_failed_percent",
];

/// `[snmp]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snmp {
    /// Subtrees served (a subset of [`SNMP_SERVICES`]); "config" also
    /// serves mwPolicyGroupTable, the per-group counters.
    pub services: Vec<String>,
    /// Notification groups sent (a subset of [`SNMP_TRAPS`]).
    pub traps: Vec<String>,
    /// Thresholds by name (keys from [`SNMP_THRESHOLDS`]); absent = no alert.
    pub alert_thresholds: BTreeMap<String, u64>,
}

/// `[agentx]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agentx {
    /// The master's socket in net-snmp syntax (see [`AgentxEndpoint`]).
    pub socket: String,
    /// What we ask the master to wait for our replies.
    pub timeout: Dur,
    /// What we ask the master to retry.
    pub retries: u32,
    /// How often we ping the master to notice it is gone.
    pub ping_interval: Dur,
    /// The OID of `mailwardMIB`, dotted numeric, no leading dot.
    pub root_oid: String,
}

impl Agentx {
    /// The parsed `socket` (it was validated at load).
    pub fn endpoint(&self) -> Result<AgentxEndpoint, String> {
        AgentxEndpoint::parse(&self.socket).map_err(|e| e.to_string())
    }

    /// The parsed `root_oid` (it was validated at load).
    pub fn root_oid_arcs(&self) -> Result<Vec<u32>, String> {
        parse_oid(&self.root_oid)
    }
}

/// Where the AgentX master listens: the agentx crate's parser of
/// net-snmp's `agentXSocket` syntax, so that the configuration accepts
/// exactly what the subagent can use.
pub type AgentxEndpoint = mailward_agentx::Endpoint;

/// Parses a dotted numeric OID like `"1.3.6.1.4.1.32473.25"` (a leading dot
/// is allowed).
pub fn parse_oid(text: &str) -> Result<Vec<u32>, String> {
    let bad = || format!("expected a numeric OID like \"1.3.6.1.4.1.32473.25\", got {text:?}");
    let body = text.strip_prefix('.').unwrap_or(text);
    let arcs = body
        .split('.')
        .map(|a| {
            if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                a.parse::<u32>().ok()
            }
        })
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(bad)?;
    match arcs.as_slice() {
        [first, second, ..]
            if *first <= 2 && (*first == 2 || *second <= 39) && arcs.len() <= 128 =>
        {
            Ok(arcs)
        }
        _ => Err(bad()),
    }
}

/// `[milter]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milter {
    /// Where MTAs connect to speak the milter protocol; `None` = off.
    pub listen: Option<MilterListen>,
    /// Milter connections served at once; more wait to be accepted.
    pub max_connections: u32,
}

/// A milter socket as Postfix and Sendmail write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterListen {
    /// `inet:PORT@ADDRESS` (or `inet6:PORT@ADDRESS`).
    Inet(SocketAddr),
    /// `unix:/PATH` (or `local:/PATH`).
    Unix(PathBuf),
}

impl MilterListen {
    pub const EXAMPLE: &'static str =
        "\"inet:10031@127.0.0.1\", \"inet6:10031@[::1]\" or \"unix:/run/mailward/milter.sock\"";

    /// A socket as `mailward milter --listen` takes it.
    pub fn parse(s: &str) -> Result<MilterListen, String> {
        Self::parse_offering(s, "")
    }

    /// A socket as `[milter] listen` takes it, whose problems also offer
    /// "" (no milter), which the key allows and the command line does not.
    pub fn parse_key(s: &str) -> Result<MilterListen, String> {
        Self::parse_offering(s, ", or \"\" for no milter")
    }

    fn parse_offering(s: &str, also: &str) -> Result<MilterListen, String> {
        let bad = || format!("expected {}{also}, got {s:?}", Self::EXAMPLE);
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "unix" | "local" => {
                if !rest.starts_with('/') {
                    return Err(format!("{}: the socket path must be absolute", bad()));
                }
                Ok(MilterListen::Unix(PathBuf::from(rest)))
            }
            "inet" | "inet6" => {
                let (port, host) = rest.split_once('@').ok_or_else(bad)?;
                let port: u16 = port.parse().map_err(|_| bad())?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let ip: std::net::IpAddr = host.parse().map_err(|_| {
                    format!("{}: the address must be an IP address (a milter port is not for the world: use 127.0.0.1)", bad())
                })?;
                Ok(MilterListen::Inet(SocketAddr::new(ip, port)))
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for MilterListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MilterListen::Inet(a) if a.is_ipv6() => write!(f, "inet6:{}@[{}]", a.port(), a.ip()),
            MilterListen::Inet(a) => write!(f, "inet:{}@{}", a.port(), a.ip()),
            MilterListen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Where `GET /metrics` is served; `None` = disabled.
    pub listen: Option<SocketAddr>,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Where log lines go.
    pub destination: LogDestination,
    /// `CATEGORY.LEVEL` and `-CATEGORY` items, applied in order (validated;
    /// see [`LogOption`]).
    pub options: Vec<String>,
    /// Text or JSON lines.
    pub format: LogFormat,
    /// The framing of syslog lines.
    pub syslog_format: SyslogFormat,
    /// Size at which the log file and the raw records are rotated (0:
    /// never, e.g. when logrotate does it).
    pub rotate_size: ByteSize,
    /// Rotated files kept beside the current one.
    pub rotate_rounds: u32,
}

impl Log {
    /// The parsed `options` (they were validated at load, so an item that
    /// somehow does not parse is skipped).
    pub fn parsed_options(&self) -> Vec<LogOption> {
        self.options
            .iter()
            .filter_map(|o| LogOption::parse(o).ok())
            .collect()
    }
}

/// `log.destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// `"stderr"`.
    Stderr,
    /// `"file:PATH"`: appended to, rotated at `rotate_size`.
    File(PathBuf),
    /// `"syslog"`, `"syslog:FACILITY"`, `"syslog:unix:/PATH"`,
    /// `"syslog:udp:HOST:PORT"`, `"syslog:tcp:HOST:PORT"`; the last three
    /// take a facility after `@` (`"syslog:udp:10.0.0.5:514@local3"`).
    Syslog(SyslogTarget),
}

/// Where syslog lines go, and with which facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: SyslogTransport,
    /// One of [`SYSLOG_FACILITIES`]; `mail` unless given.
    pub facility: String,
}

/// How syslog lines travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTransport {
    /// The local syslog daemon's datagram socket, `/dev/log`.
    Local,
    /// A unix datagram socket at this path (rsyslog's `imuxsock`).
    Unix(PathBuf),
    /// `HOST:PORT` over UDP, a datagram per line (RFC 5426).
    Udp(String),
    /// `HOST:PORT` over TCP, octet-counted frames (RFC 6587 3.4.1).
    Tcp(String),
}

impl std::fmt::Display for SyslogTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogTransport::Local => write!(f, "unix:/dev/log"),
            SyslogTransport::Unix(p) => write!(f, "unix:{}", p.display()),
            SyslogTransport::Udp(a) => write!(f, "udp:{a}"),
            SyslogTransport::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Syslog facilities accepted in `log.destination`.
pub const SYSLOG_FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// What `log.destination` accepts, for error messages.
pub const LOG_DESTINATIONS: &str = "\"stderr\", \"file:PATH\", \"syslog\", \"syslog:FACILITY\", \"syslog:unix:/PATH\", \"syslog:udp:HOST:PORT\" or \"syslog:tcp:HOST:PORT\" (the last three may end in @FACILITY)";

/// Checks `HOST:PORT` (`[V6]:PORT` for IPv6 literals).
fn host_port(text: &str) -> Result<String, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} has no port (HOST:PORT)"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("{port:?} in {text:?} is not a port (1-65535)")),
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let bracketed = bare.len() != host.len();
    if bare.is_empty()
        || (bare.contains(':') && (!bracketed || bare.parse::<std::net::Ipv6Addr>().is_err()))
    {
        return Err(format!(
            "{host:?} in {text:?} is not a host (an IPv6 address goes in brackets)"
        ));
    }
    Ok(text.to_string())
}

impl LogDestination {
    /// Parses the forms of [`LOG_DESTINATIONS`].
    pub fn parse(text: &str) -> Result<LogDestination, String> {
        let example = format!("expected {LOG_DESTINATIONS}");
        let facility_of = |f: &str| -> Result<String, String> {
            if SYSLOG_FACILITIES.contains(&f) {
                Ok(f.to_string())
            } else {
                Err(format!(
                    "{example}, got {text:?} ({f:?} is not a facility; facilities: {})",
                    SYSLOG_FACILITIES.join(", ")
                ))
            }
        };
        if text == "stderr" {
            return Ok(LogDestination::Stderr);
        }
        if let Some(path) = text.strip_prefix("file:") {
            return if path.is_empty() {
                Err(format!(
                    "{example}, got {text:?} (the file path is missing)"
                ))
            } else {
                Ok(LogDestination::File(PathBuf::from(path)))
            };
        }
        if text == "syslog" || text == "syslog:" {
            return Ok(LogDestination::Syslog(SyslogTarget {
                transport: SyslogTransport::Local,
                facility: "mail".into(),
            }));
        }
        let Some(rest) = text.strip_prefix("syslog:") else {
            return Err(format!("{example}, got {text:?}"));
        };
        // A facility may follow the transport after the last '@'. A
        // HOST:PORT has no '@' of its own: what follows one there must be a
        // facility (walkBL F9: `@locla3` was called a bad port); a socket
        // path may hold one.
        // In a socket path, a suffix that reads as a word (letters and
        // digits, no '/') is taken for a facility too (walkBM F6:
        // `/dev/log@locla3` was a path that does not exist, and every
        // line was dropped).
        let split_strict = |s: &str, strict: bool| -> Result<(String, String), String> {
            match s.rsplit_once('@') {
                Some((t, f)) if SYSLOG_FACILITIES.contains(&f) => Ok((t.to_string(), f.into())),
                Some((_, f))
                    if strict
                        || (!f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric())) =>
                {
                    Err(facility_of(f).err().unwrap_or_default())
                }
                _ => Ok((s.to_string(), "mail".into())),
            }
        };
        let split = |s: &str| split_strict(s, false);
        let target = if let Some(path) = rest.strip_prefix("unix:") {
            let (path, facility) = split(path)?;
            if !path.starts_with('/') {
                return Err(format!(
                    "{example}, got {text:?} (the socket path must be absolute)"
                ));
            }
            SyslogTarget {
                transport: SyslogTransport::Unix(PathBuf::from(path)),
                facility,
            }
        } else if let Some(addr) = rest.strip_prefix("udp:") {
            let (addr, facility) = split_strict(addr, true)?;
            SyslogTarget {
                transport: SyslogTransport::Udp(
                    host_port(&addr).map_err(|e| format!("{example}: {e}"))?,
                ),
                facility,
            }
        } else if let Some(addr) = rest.strip_prefix("tcp:") {
            let (addr, facility) = split_strict(addr, true)?;
            SyslogTarget {
                transport: SyslogTransport::Tcp(
                    host_port(&addr).map_err(|e| format!("{example}: {e}"))?,
                ),
                facility,
            }
        } else {
            SyslogTarget {
                transport: SyslogTransport::Local,
                facility: facility_of(rest)?,
            }
        };
        Ok(LogDestination::Syslog(target))
    }
}

/// As written in the configuration (`"file:/var/log/mailward.log"`,
/// `"syslog:udp:10.0.0.5:514@local3"`): what a message about the key shows.
impl std::fmt::Display for LogDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogDestination::Stderr => write!(f, "stderr"),
            LogDestination::File(p) => write!(f, "file:{}", p.display()),
            LogDestination::Syslog(SyslogTarget {
                transport: SyslogTransport::Local,
                facility,
            }) => write!(f, "syslog:{facility}"),
            LogDestination::Syslog(SyslogTarget {
                transport,
                facility,
            }) => write!(f, "syslog:{transport}@{facility}"),
        }
    }
}

/// `log.syslog_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    /// BSD syslog, what rsyslog and syslog-ng expect on `/dev/log`.
    Rfc3164,
    /// The syslog protocol, with structured data (category, queue ID).
    Rfc5424,
}

impl std::fmt::Display for SyslogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyslogFormat::Rfc3164 => "rfc3164",
            SyslogFormat::Rfc5424 => "rfc5424",
        })
    }
}

impl SyslogFormat {
    /// Parses `rfc3164|rfc5424`.
    pub fn parse(text: &str) -> Result<SyslogFormat, String> {
        match text {
            "rfc3164" => Ok(SyslogFormat::Rfc3164),
            "rfc5424" => Ok(SyslogFormat::Rfc5424),
            _ => Err(format!("expected \"rfc3164\" or \"rfc5424\", got {text:?}")),
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl LogFormat {
    /// Parses `text|json`.
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected \"text\" or \"json\", got {text:?}")),
        }
    }
}

/// Log categories of DESIGN section 4; each is a tracing target (and code in
/// module `mailward::CATEGORY` is in that category too).
pub const LOG_CATEGORIES: &[&str] = &[
    "config", "app", "smtp", "scan", "cfilter", "spam", "policy", "delivery", "backup", "notif",
    "admin", "snmp",
];

/// A log level of the configuration, least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Cannot go on (logged as tracing ERROR).
    Fatal,
    /// Something failed (ERROR).
    Error,
    /// Something looks wrong (WARN).
    Warning,
    /// What operators want to see (INFO).
    Info,
    /// Every message and session (DEBUG).
    Activity,
    /// Everything (TRACE).
    Debug,
}

impl LogLevel {
    /// Parses `fatal|error|warning|info|activity|debug`.
    pub fn parse(text: &str) -> Result<LogLevel, String> {
        match text {
            "fatal" => Ok(LogLevel::Fatal),
            "error" => Ok(LogLevel::Error),
            "warning" => Ok(LogLevel::Warning),
            "info" => Ok(LogLevel::Info),
            "activity" => Ok(LogLevel::Activity),
            "debug" => Ok(LogLevel::Debug),
            _ => Err(format!(
                "unknown level {text:?} (levels: fatal, error, warning, info, activity, debug)"
            )),
        }
    }
}

/// One item of `log.options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOption {
    /// The category; `None` for `all`.
    pub category: Option<String>,
    /// The most verbose level logged; `None` (from `-CATEGORY`) = nothing.
    pub level: Option<LogLevel>,
}

impl LogOption {
    /// Parses `CATEGORY.LEVEL` (`all.info`, `smtp.debug`) or `-CATEGORY`
    /// (`-scan`, `-all`).
    pub fn parse(text: &str) -> Result<LogOption, String> {
        let bad = |why: String| {
            format!("expected an option like \"all.info\", \"smtp.debug\" or \"-scan\", got {text:?} ({why})")
        };
        let category = |name: &str| {
            if name == "all" {
                Ok(None)
            } else if LOG_CATEGORIES.contains(&name) {
                Ok(Some(name.to_string()))
            } else {
                Err(bad(format!(
                    "unknown category {name:?}; categories: all, {}",
                    LOG_CATEGORIES.join(", ")
                )))
            }
        };
        if let Some(name) = text.strip_prefix('-') {
            return Ok(LogOption {
                category: category(name)?,
                level: None,
            });
        }
        let Some((name, level)) = text.split_once('.') else {
            return Err(bad("CATEGORY.LEVEL".to_string()));
        };
        Ok(LogOption {
            category: category(name)?,
            level: Some(LogLevel::parse(level).map_err(bad)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops() {
        let direct = |h: &str, p| NextHop::Direct {
            host: h.to_string(),
            port: p,
        };
        let mx = |h: &str, p| NextHop::Mx {
            domain: h.to_string(),
            port: p,
        };
        let cases = [
            ("[127.0.0.1:2526]", direct("127.0.0.1", 2526)),
            ("[127.0.0.1]:2526", direct("127.0.0.1", 2526)),
            ("[127.0.0.1]", direct("127.0.0.1", 25)),
            ("[mx.example.com]", direct("mx.example.com", 25)),
            ("[mx.example.com:587]", direct("mx.example.com", 587)),
            ("[::1]:2526", direct("::1", 2526)),
            ("[::1]", direct("::1", 25)),
            ("[2001:db8::25]", direct("2001:db8::25", 25)),
            ("example.com", mx("example.com", 25)),
            ("example.com:2525", mx("example.com", 2525)),
        ];
        for (text, hop) in cases {
            assert_eq!(NextHop::parse(text).unwrap(), hop, "{text}");
            assert_eq!(
                NextHop::parse(&hop.to_string()).unwrap(),
                hop,
                "{text} round trip"
            );
        }
        assert_eq!(direct("::1", 2526).to_string(), "[::1]:2526");
        for bad in [
            "",
            "[",
            "[127.0.0.1",
            "[127.0.0.1]x",
            "[127.0.0.1]:",
            "[127.0.0.1]:0",
            "[127.0.0.1]:70000",
            "[]",
            "[bad host]",
            "127.0.0.1",
            "127.0.0.1:25",
            "example.com:x",
            "exa mple.com",
            "::1",
        ] {
            let e = NextHop::parse(bad).unwrap_err();
            assert!(e.starts_with("expected a next hop like"), "{bad}: {e}");
        }
    }

    #[test]
    fn statuses() {
        assert!(Status::parse("av/infected").is_ok());
        assert!(Status::parse("as/all").is_ok());
        assert!(Status::parse("av/spam").is_err());
        assert!(Status::parse("infected").is_err());
        let all = Status::parse("av/all").unwrap();
        assert!(all.covers("av/infected"));
        assert!(!all.covers("as/spam"));
        assert!(!all.covers("av"));
        let one = Status::parse("as/spam").unwrap();
        assert!(one.covers("as/spam"));
        assert!(!one.covers("as/probable"));
        assert!(statuses_cover(&[one, all], "av/error"));
    }

    #[test]
    fn all_stands_for_the_findings_of_its_kind_not_for_clean_mail() {
        let av = Status::parse("av/all").unwrap();
        let as_ = Status::parse("as/all").unwrap();
        for s in STATUSES.iter().filter(|s| !s.ends_with("/all")) {
            let finding = !NOT_IN_ALL.contains(s);
            assert_eq!(av.covers(s), finding && s.starts_with("av/"), "av/all {s}");
            assert_eq!(as_.covers(s), finding && s.starts_with("as/"), "as/all {s}");
        }
        // Spelt out, as the docs say it.
        for s in ["av/clean", "as/clean", "as/formal"] {
            assert!(!statuses_cover(&[av.clone(), as_.clone()], s), "{s}");
        }
        for s in [
            "av/infected",
            "av/filtered",
            "as/spam",
            "as/probable",
            "as/blacklisted",
        ] {
            assert!(statuses_cover(&[av.clone(), as_.clone()], s), "{s}");
        }
        // Named on its own, a status left out of "all" is still matched.
        assert!(Status::parse("as/formal").unwrap().covers("as/formal"));
        assert!(Status::parse("av/clean").unwrap().covers("av/clean"));
    }

    #[test]
    fn oids() {
        assert_eq!(
            parse_oid("1.3.6.1.4.1.32473.25").unwrap(),
            vec![1, 3, 6, 1, 4, 1, 32473, 25]
        );
        assert_eq!(parse_oid(".1.3.6").unwrap(), vec![1, 3, 6]);
        for bad in [
            "",
            "1",
            "1..3",
            "1.3.x",
            "3.1",
            "1.40",
            "1.3.-6",
            "1.3.99999999999",
        ] {
            assert!(parse_oid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_options_and_destinations() {
        assert_eq!(
            LogOption::parse("all.info").unwrap(),
            LogOption {
                category: None,
                level: Some(LogLevel::Info)
            }
        );
        assert_eq!(
            LogOption::parse("smtp.debug").unwrap(),
            LogOption {
                category: Some("smtp".into()),
                level: Some(LogLevel::Debug)
            }
        );
        assert_eq!(
            LogOption::parse("-scan").unwrap(),
            LogOption {
                category: Some("scan".into()),
                level: None
            }
        );
        for bad in ["info", "smtp", "smtp.loud", "bogus.info", "-bogus", "-"] {
            assert!(LogOption::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            LogDestination::parse("stderr").unwrap(),
            LogDestination::Stderr
        );
        assert_eq!(
            LogDestination::parse("file:/var/log/mailward.log").unwrap(),
            LogDestination::File(PathBuf::from("/var/log/mailward.log"))
        );
        let syslog = |transport, facility: &str| {
            LogDestination::Syslog(SyslogTarget {
                transport,
                facility: facility.into(),
            })
        };
        for (text, want) in [
            ("syslog", syslog(SyslogTransport::Local, "mail")),
            ("syslog:", syslog(SyslogTransport::Local, "mail")),
            ("syslog:local3", syslog(SyslogTransport::Local, "local3")),
            (
                "syslog:unix:/run/x.sock",
                syslog(SyslogTransport::Unix("/run/x.sock".into()), "mail"),
            ),
            (
                "syslog:udp:127.0.0.1:514@daemon",
                syslog(SyslogTransport::Udp("127.0.0.1:514".into()), "daemon"),
            ),
            (
                "syslog:tcp:[::1]:601",
                syslog(SyslogTransport::Tcp("[::1]:601".into()), "mail"),
            ),
            (
                "syslog:tcp:logs.example.com:6514@local7",
                syslog(
                    SyslogTransport::Tcp("logs.example.com:6514".into()),
                    "local7",
                ),
            ),
        ] {
            assert_eq!(LogDestination::parse(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "file:",
            "syslog:x@nowhere",
            "syslog:mw@local3",
            "syslog:nowhere",
            "syslog:udp:127.0.0.1",
            "syslog:udp:127.0.0.1:0",
            "syslog:tcp::::514",
            "syslog:unix:relative.sock",
            "stdout",
        ] {
            assert!(LogDestination::parse(bad).is_err(), "{bad}");
        }
        // walkBL F9: a misspelt facility is named as one, not as a port.
        let e = LogDestination::parse("syslog:tcp:127.0.0.1:601@locla3").unwrap_err();
        assert!(e.contains("\"locla3\" is not a facility"), "{e}");
        let e = LogDestination::parse("syslog:unix:/dev/log@locla3").unwrap_err();
        assert!(e.contains("\"locla3\" is not a facility"), "{e}");
        assert!(e.contains("may end in @FACILITY"), "{e}");
    }
}
