//! The envelope of one message: who sent it, to whom, with which DSN
//! parameters, and where each recipient stands. It is what the spool writes
//! beside the message bytes and what delivery, DSNs and the admin commands read.
//! It owns no I/O.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A queue ID: 16 upper-case hex digits, unique per host. It is given in the
/// 250 reply to DATA and follows the message through logs, spool, DSNs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub String);

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

impl QueueId {
    /// A new ID: milliseconds since the epoch (11 hex digits) and a 20-bit
    /// counter seeded from the clock, so that two processes started in the
    /// same millisecond (a restart after a crash) are unlikely to collide.
    pub fn generate() -> QueueId {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if ID_COUNTER.load(Ordering::Relaxed) == 0 {
            let seed = u64::from(now.subsec_nanos()) | 1;
            let _ = ID_COUNTER.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
        }
        let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
        let ms = now.as_millis() as u64 & 0xFFF_FFFF_FFFF;
        QueueId(format!("{ms:011X}{n:05X}"))
    }

    /// True when `s` has the shape of a queue ID (for CLI arguments): 16
    /// upper-case hex digits, maybe followed by a `.` suffix of up to 8
    /// lower-case letters and digits (see [`QueueId::derived`]).
    pub fn is_valid(s: &str) -> bool {
        let (base, suffix) = match s.split_once('.') {
            Some((b, x)) => (b, Some(x)),
            None => (s, None),
        };
        base.len() == 16
            && base
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
            && suffix.is_none_or(|x| {
                !x.is_empty()
                    && x.len() <= 8
                    && x.bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            })
    }

    /// `s` written as IDs are (upper-case hex, lower-case suffix), for a
    /// CLI argument: IDs copied from a ticket or a mail client often
    /// arrive in one case, and `1a22e9ff2eb0b74b` or `1A22E9FF2EB0B74B.N1`
    /// mean one entry (walkAW F25; upper-casing it all refused every
    /// `.n1` notification copy of the archive). Not checked: see
    /// [`QueueId::is_valid`].
    pub fn canonical(s: &str) -> String {
        let s = s.trim();
        match s.split_once('.') {
            Some((base, suffix)) => format!(
                "{}.{}",
                base.to_ascii_uppercase(),
                suffix.to_ascii_lowercase()
            ),
            None => s.to_ascii_uppercase(),
        }
    }

    /// The ID of something made from this message: a policy group's own
    /// copy (`ID.1`), a notification (`ID.n1`). Derived, not generated, so
    /// that doing the same work again after a crash writes the same entry
    /// instead of a second one.
    pub fn derived(&self, suffix: &str) -> QueueId {
        QueueId(format!("{}.{suffix}", self.0))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 3461 RET: how much of the message a failure DSN returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    Full,
    Hdrs,
}

/// RFC 3461 NOTIFY of one recipient. `None` in [`Recipient::notify`] means the
/// client did not say, which RFC 3461 treats as FAILURE (and DELAY at the
/// MTA's discretion; Mailward sends delay notices only when asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// Parses the NOTIFY parameter value ("NEVER" or a comma list of
    /// SUCCESS, FAILURE, DELAY). NEVER must stand alone.
    pub fn parse(value: &str) -> Option<Notify> {
        let mut n = Notify::default();
        for word in value.split(',') {
            match word.to_ascii_uppercase().as_str() {
                "NEVER" => n.never = true,
                "SUCCESS" => n.success = true,
                "FAILURE" => n.failure = true,
                "DELAY" => n.delay = true,
                _ => return None,
            }
        }
        if n.never && (n.success || n.failure || n.delay) {
            return None;
        }
        Some(n)
    }

    /// The parameter value as sent onward.
    pub fn to_param(&self) -> String {
        if self.never {
            return "NEVER".into();
        }
        let mut words = Vec::new();
        if self.success {
            words.push("SUCCESS");
        }
        if self.failure {
            words.push("FAILURE");
        }
        if self.delay {
            words.push("DELAY");
        }
        words.join(",")
    }
}

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum RcptState {
    /// Not yet delivered; the last temporary failure, if any.
    Pending { last_error: Option<String> },
    /// Accepted by the next hop (its reply).
    Delivered { reply: String, at: i64 },
    /// Failed for good (the reason, an SMTP reply or ours).
    Failed { reply: String, at: i64 },
}

/// One recipient of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The forward path, without angle brackets.
    pub address: String,
    /// RFC 3461 NOTIFY, `None` when not given.
    pub notify: Option<Notify>,
    /// RFC 3461 ORCPT as given ("rfc822;user@example.com"), kept for DSNs.
    pub orcpt: Option<String>,
    pub state: RcptState,
}

impl Recipient {
    pub fn new(address: String) -> Recipient {
        Recipient {
            address,
            notify: None,
            orcpt: None,
            state: RcptState::Pending { last_error: None },
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self.state, RcptState::Pending { .. })
    }

    /// The domain part, lower-cased ("" for an address without one).
    pub fn domain(&self) -> String {
        domain_of(&self.address)
    }
}

/// The domain of an address, lower-cased ("" when there is none).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

/// The canonical form of a mailbox as a client wrote it: a quoted local
/// part whose content is a dot-atom loses its quotes and quoted pairs
/// (`"blo\cked"@example.com` is `blocked@example.com`, RFC 5321 4.1.2:
/// the same mailbox), and one that needs its quotes keeps only the
/// escapes it needs (`"a\ b"` is `"a b"`). Access rules, the duplicate
/// check, the logs and the next hop all see this form, as Postfix unquotes
/// an address before any table look-up and quotes it again only where
/// needed (walkAH 3: a quoted local part escaped `rcpt_rules`). Anything
/// else (no quotes, no `@` after the closing quote) is returned as is.
pub fn canonical_mailbox(address: &str) -> String {
    let Some(quoted) = address.strip_prefix('"') else {
        return address.to_string();
    };
    let mut content = String::with_capacity(quoted.len());
    let mut chars = quoted.char_indices();
    let mut domain = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => content.push(escaped),
                None => return address.to_string(),
            },
            '"' => {
                domain = quoted[i + 1..].strip_prefix('@');
                break;
            }
            _ => content.push(c),
        }
    }
    let Some(domain) = domain else {
        return address.to_string();
    };
    if is_dot_atom(&content) {
        return format!("{content}@{domain}");
    }
    let mut out = String::with_capacity(content.len() + domain.len() + 4);
    out.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"@");
    out.push_str(domain);
    out
}

/// RFC 5322 3.2.3 dot-atom-text: atoms of atext joined by single dots;
/// atext includes UTF-8 characters (RFC 6532 3.2), which only a
/// transaction with SMTPUTF8 can carry (`"jürgen"@example.com` is
/// `jürgen@example.com`).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || "!#$%&'*+-/=?^_`{|}~".contains(c)
                        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
                })
        })
}

#[cfg(test)]
#[test]
fn quoted_local_parts_are_unquoted_when_they_need_no_quotes() {
    for (given, canonical) in [
        ("\"blocked\"@example.com", "blocked@example.com"),
        ("\"blo\\cked\"@example.com", "blocked@example.com"),
        ("\"first.last\"@example.com", "first.last@example.com"),
        ("\"user%other\"@example.com", "user%other@example.com"),
        ("\"a b\"@example.com", "\"a b\"@example.com"),
        ("\"a\\ b\"@example.com", "\"a b\"@example.com"),
        ("\"a\\\"b\"@example.com", "\"a\\\"b\"@example.com"),
        ("\"user@other\"@example.com", "\"user@other\"@example.com"),
        ("\".a\"@example.com", "\".a\"@example.com"),
        ("\"a..b\"@example.com", "\"a..b\"@example.com"),
        ("\"\"@example.com", "\"\"@example.com"),
        ("plain@example.com", "plain@example.com"),
        ("\"j\u{fc}rgen\"@example.com", "j\u{fc}rgen@example.com"),
        (
            "\"j\u{fc}rgen m\"@example.com",
            "\"j\u{fc}rgen m\"@example.com",
        ),
        ("postmaster", "postmaster"),
        ("\"unterminated@example.com", "\"unterminated@example.com"),
    ] {
        assert_eq!(canonical_mailbox(given), canonical, "{given}");
    }
}

/// Whether `address` asks for sender-specified routing (RFC 1123 5.2.16
/// style): a `%` or `!` in the local part, or an `@` inside a quoted local
/// part (`"user@other"@domain`). Relays that honour these forward further.
pub fn has_sender_routing(address: &str) -> bool {
    let Some((local, _)) = address.rsplit_once('@') else {
        return false;
    };
    local.contains(['%', '!', '@'])
}

#[cfg(test)]
#[test]
fn sender_routing_is_seen_in_every_form() {
    for routed in [
        "user%elsewhere.org@example.com",
        "elsewhere.org!user@example.com",
        "\"user@elsewhere.org\"@example.com",
    ] {
        assert!(has_sender_routing(routed), "{routed}");
    }
    for plain in [
        "user@example.com",
        "first.last+tag@example.com",
        "postmaster",
    ] {
        assert!(!has_sender_routing(plain), "{plain}");
    }
}

/// The envelope of one message, as spooled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: QueueId,
    /// Unix time of the 250.
    pub received_at: i64,
    pub client_ip: IpAddr,
    /// The name the client gave in EHLO/HELO.
    pub helo: String,
    /// The reverse path without brackets; "" for the null sender.
    pub mail_from: String,
    pub ret: Option<Ret>,
    /// RFC 3461 ENVID (xtext-decoded).
    pub envid: Option<String>,
    /// The body holds octets above 127 (declared BODY=8BITMIME or seen).
    pub eight_bit: bool,
    /// Message size in octets as spooled (CRLF line ends).
    pub size: u64,
    pub rcpts: Vec<Recipient>,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Unix time of the next attempt (0 = now).
    pub next_attempt: i64,
    /// A "delayed" DSN has been sent for the recipients that asked for one.
    pub delay_notified: bool,
    /// This message is a DSN we generated: it never causes another DSN.
    pub is_bounce: bool,
    /// The scan is done and its verdict applied. A message spooled but not
    /// yet scanned when the gateway stopped is scanned again at start
    /// (records of older versions, without the field, count as unscanned).
    #[serde(default)]
    pub scanned: bool,
    /// Header lines (with CRLF) put in front of the message when it is
    /// sent: the scan verdict (`X-Mailward-AV`). Kept here rather than in
    /// the spooled bytes so that a clean message is never rewritten.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub added_headers: String,
    /// The client sent the message over TLS (STARTTLS).
    #[serde(default)]
    pub tls: bool,
    /// The check statuses of this copy's recipients (`av/clean`,
    /// `as/spam`, ...: the union of their groups' plans), for the outgoing
    /// archive: the delivery writes that copy and knows no verdict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<String>,
    /// The `[spam] dnsbl` zones that list the client (looked up at
    /// connect; the spam check scores them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnsbl_listed: Vec<String>,
    /// SPF (from the session), DKIM and DMARC (after DATA) results.
    #[serde(default, skip_serializing_if = "crate::auth::Auth::is_empty")]
    pub auth: crate::auth::Auth,
    /// The MTA that handed the message over and named its original client
    /// with XFORWARD (Postfix as content filter or before-queue proxy);
    /// `client_ip` and `helo` are then that client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_by: Option<IpAddr>,
    /// That MTA's own ID for the message (XFORWARD IDENT), logged beside ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<String>,
    /// The message is checked for an MTA over the milter protocol and never
    /// spooled here (so never read back).
    #[serde(skip)]
    pub milter: bool,
    /// The user the client authenticated as with the MTA (Postfix's
    /// `{auth_authen}`): one of ours, like a relay_networks client, so SPF,
    /// DKIM/DMARC and DNSBL scores say nothing about its mail. Milter only.
    #[serde(skip)]
    pub sasl_user: Option<String>,
    /// An administrator held it (`mailward queue hold`): no delivery
    /// attempt until `mailward queue release`; it survives a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// The client gave SMTPUTF8 in MAIL FROM (RFC 6531): the addresses and
    /// the header may hold UTF-8. Delivery passes it on to a hop that
    /// offers SMTPUTF8, and to one that does not sends the message only
    /// when its envelope and header are ASCII after all. Records written
    /// before the field existed read as false (nothing was UTF-8 then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
}

/// How a message reached the checks: the `mode` of the statistics.
pub use mailward_metrics::event::Mode;

impl Envelope {
    /// A new envelope: nothing delivered, nothing decided yet.
    pub fn new(id: QueueId, client_ip: IpAddr, helo: String, mail_from: String) -> Envelope {
        Envelope {
            id,
            received_at: chrono::Utc::now().timestamp(),
            client_ip,
            helo,
            mail_from,
            ret: None,
            envid: None,
            eight_bit: false,
            size: 0,
            rcpts: Vec::new(),
            attempts: 0,
            next_attempt: 0,
            delay_notified: false,
            is_bounce: false,
            scanned: false,
            added_headers: String::new(),
            tls: false,
            statuses: Vec::new(),
            dnsbl_listed: Vec::new(),
            auth: Default::default(),
            forwarded_by: None,
            upstream_id: None,
            milter: false,
            sasl_user: None,
            held: false,
            smtputf8: false,
        }
    }

    /// Who the client is to us (see [`crate::standing`]).
    pub fn standing(&self, cfg: &crate::config::Config) -> crate::standing::Standing {
        crate::standing::Standing::of(cfg, self.client_ip, self.sasl_user.as_deref())
    }

    pub fn mode(&self) -> Mode {
        if self.milter {
            Mode::Milter
        } else if self.forwarded_by.is_some() {
            Mode::Filter
        } else {
            Mode::Smtp
        }
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.rcpts
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_pending())
    }

    pub fn is_done(&self) -> bool {
        self.rcpts.iter().all(|r| !r.is_pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_valid() {
        let a = QueueId::generate();
        let b = QueueId::generate();
        assert_ne!(a, b);
        assert!(QueueId::is_valid(&a.0), "{a}");
        assert!(!QueueId::is_valid("abc"));
    }

    #[test]
    fn smtputf8_survives_the_spool_record_and_old_records_read_as_without() {
        let mut env = Envelope::new(
            QueueId("0123456789ABCDEF".into()),
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            "client.test".into(),
            "j\u{fc}rgen@b\u{fc}cher.example".into(),
        );
        env.rcpts = vec![Recipient::new("\u{3b4}@example.com".into())];
        env.smtputf8 = true;
        let json = serde_json::to_string(&env).unwrap_or_default();
        let back: Envelope = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert!(back.smtputf8, "{json}");
        assert_eq!(back.mail_from, env.mail_from);
        assert_eq!(back, env);
        // A record of an older version has no field: without SMTPUTF8, and
        // a record without it is written as before (no new field).
        env.smtputf8 = false;
        let old = serde_json::to_string(&env).unwrap_or_default();
        assert!(!old.contains("smtputf8"), "{old}");
        let back: Envelope = serde_json::from_str(&old).unwrap_or_else(|e| panic!("{e}: {old}"));
        assert!(!back.smtputf8);
    }

    #[test]
    fn notify_parses_and_refuses_never_with_others() {
        let n = Notify::parse("success,DELAY").unwrap_or_default();
        assert!(n.success && n.delay && !n.failure);
        assert_eq!(Notify::parse("NEVER,SUCCESS"), None);
        assert_eq!(Notify::parse("SOMETIMES"), None);
        assert_eq!(n.to_param(), "SUCCESS,DELAY");
    }
}
