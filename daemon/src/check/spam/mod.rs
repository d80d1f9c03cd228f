//! The spam check (`as/*`), the pipeline's second check: what it finds
//! goes into the report as [`Evidence`] (the tests that fired, each with its
//! weight, the classifier's probability, whether the message is formal),
//! and each policy group turns that into a status with its own
//! `spam_level` ([`Evidence::status`]).
//!
//! - [`text`]: the body text, HTML tags and URLs, gathered once;
//! - [`rules`]: content rules (regular expressions) and header heuristics;
//! - [`formal`]: delivery reports, read receipts, auto-replies;
//! - [`tokens`], [`classifier`], [`model`]: the statistical classifier and
//!   the files it learns into;
//! - [`knowledge`]: what the workers share (rules and models), reloaded
//!   when the site learns;
//! - [`signals`]: SPF, DKIM, DMARC and URI list results as tests (the
//!   look-ups themselves are made on the async side, `crate::auth` and
//!   `crate::dns`, never on a scan worker).

pub mod autolearn;
pub mod classifier;
pub mod formal;
pub mod held;
pub mod journal;
pub mod knowledge;
pub mod model;
pub mod rules;
pub mod signals;
pub mod store;
pub mod text;
pub mod tokens;

use super::{Check, Context, Report, Tools};
use crate::config::{Policy, SpamLevel};
use mail_parser::{Message, MessageParser};
pub use mailward_metrics::event::SpamStatus;
use rules::Hit;
use std::sync::LazyLock;

/// The header parser of the spam check: every header decoded (the
/// pipeline's parse only reads the MIME ones), no body.
static HEADERS: LazyLock<MessageParser> = LazyLock::new(MessageParser::default);

/// What the spam check found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Tests that fired, with their weights (the classifier's band
    /// included, as `BAYES_NN`).
    pub hits: Vec<Hit>,
    /// The classifier's spam probability (None: it abstained).
    pub probability: Option<f64>,
    /// Why the message is formal (an automatic message), if it is.
    pub formal: Option<&'static str>,
    /// The list that makes the message `as/blacklisted`, if one does.
    pub blacklisted: Option<String>,
    /// The blacklisting rests on a `[spam] traps` recipient alone (no
    /// list names the client, the sender or a link). A refusal would tell
    /// the sender which recipient is a trap (the same message to a mailbox
    /// alone is accepted), so the policy blocks such mail where it would
    /// refuse it ([`crate::policy::plan`]).
    pub trapped: bool,
    /// The `[spam] whitelist` entry of the client, if any: `as/clean`
    /// whatever the score.
    pub whitelisted: bool,
    /// Registered domains of the message's links (public suffix list), for
    /// the URI DNS lists; at most [`signals::MAX_URI_DOMAINS`].
    pub uri_domains: Vec<String>,
    /// The classifier could not speak because its shared store was down.
    pub classifier_unavailable: bool,
}

/// The two thresholds (probable, spam) of a level, in points.
pub fn thresholds(level: SpamLevel) -> (f64, f64) {
    match level {
        SpamLevel::Minimum => (8.0, 12.0),
        SpamLevel::Standard => (5.0, 8.0),
        SpamLevel::High => (4.0, 6.0),
        SpamLevel::Maximum => (3.0, 4.5),
    }
}

/// The classifier's bands: a probability at or above the first number is
/// worth the points (SpamAssassin's BAYES_NN shape, our weights).
/// Weights chosen by cross-validation on the development list
/// (bench/spam-eval.sh with 3, 5 and 10 folds; docs/spam.md has the
/// figures). A probability of 0.95 or more is spam on its own at the
/// standard level: since mailing lists' words stopped being tokens, the dev
/// list's ham reaches that band at most once in a run and its spam 10 to 14
/// times.
const BANDS: &[(f64, &str, f64)] = &[
    (0.999, "BAYES_999", 9.0),
    (0.99, "BAYES_99", 8.5),
    (0.95, "BAYES_95", 8.0),
    (0.80, "BAYES_80", 5.5),
    (0.60, "BAYES_60", 1.0),
    (0.40, "BAYES_50", 0.0),
    (0.20, "BAYES_20", -0.5),
    (0.05, "BAYES_05", -1.0),
    (0.0, "BAYES_00", -2.5),
];

/// What the header heuristics and content rules weigh while the classifier
/// is silent (it has not learnt `min_learnt` of each class yet, or its
/// shared store cannot be read), as a factor of their weights.
/// SpamAssassin keeps a second set of scores for when Bayes is off; one
/// factor does the same here. Without it a new gateway marks almost no
/// spam until it has learnt: the classifier's bands span 11.5 points, and
/// the rules' weights are set for a verdict the classifier shares. On the
/// development list with nothing learnt, 2 takes the spam marked at the
/// standard level from 0.4 % to 57 %, at 0.58 % false positives
/// (docs/spam.md, "Quality, measured"). Network and authentication tests
/// (DNSBL, SPF, DKIM, DMARC, URI lists) keep their weights: the
/// administrator set those, and they do not stand in for the classifier.
pub const RULES_ALONE: f64 = 2.0;

/// The Generic Test for Unsolicited Bulk Email: the string that
/// SpamAssassin, rspamd and most gateways score as certain spam, so that
/// an administrator can send a spam on purpose and watch the spam path
/// (the marks, the quarantine, the refusal) work, as EICAR does for the
/// anti-virus. It names no other test's weight: [`GTUBE_POINTS`] is above
/// every level's spam threshold whatever else fires, and autolearn never
/// learns the message ([`autolearn::lesson`]).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// SpamAssassin's weight for it.
pub const GTUBE_POINTS: f64 = 1000.0;

/// Whether `raw` carries [`GTUBE`]: a test message, which no command
/// learns (its words are a test's, not a spammer's or a correspondent's;
/// walkAV F12: `spam learn` and the quarantine's --learn-* learnt it).
pub fn is_gtube(raw: &[u8]) -> bool {
    crate::text::find_bytes(raw, GTUBE.as_bytes()).is_some()
}

/// The classifier's test for a probability.
pub fn band(p: f64) -> Hit {
    let (_, name, weight) = BANDS
        .iter()
        .find(|(at, _, _)| p >= *at)
        .copied()
        .unwrap_or((0.0, "BAYES_00", -2.5));
    Hit::new(name, weight)
}

/// The 0-100 rating of a score (DESIGN 9a), the same at every level so
/// that a mailbox rule or a report can compare it across groups: ten per
/// point up to 8 points (at the standard level probable starts at 50 and
/// spam at 80), then the rest of the way to 100 at 20 points, where a
/// message is spam at every level. Rounded down, so that a rating of 50 or
/// 80 means what the standard level's status says: a score a hair under a
/// threshold is under it for the status too. A score of 0 or less (and
/// NaN, which no sum of finite weights gives) is 0.
pub fn rating_of(score: f64) -> u8 {
    let r = if score >= 20.0 {
        100.0
    } else if score >= 8.0 {
        80.0 + (score - 8.0) * 20.0 / 12.0
    } else if score > 0.0 {
        score * 10.0
    } else {
        0.0
    };
    // In 0..=100 by construction; the cast saturates in any case.
    r.floor() as u8
}

/// A score as every output shows it (`spam check`, the `Spam tests.` log
/// line, `X-Mailward-Spam`, quarantine findings): rounded down to one
/// decimal, as the rating is, so that a score a hair under a threshold
/// shows under it (7.95 shows 7.9, where rounding to nearest printed 8.0
/// beside `as/probable`). Rounding the binary value to nearest was not even
/// consistent: 7.95 is stored a hair above 7.95 and printed 8.0, 19.95 a
/// hair below and printed 19.9. Print it with `{:.1}`.
pub fn shown_score(score: f64) -> f64 {
    // The nudge keeps a score of exactly N.N (stored a hair under it, like
    // 0.3) at N.N; it is far below the millionth `score` rounds to.
    ((score * 10.0 + 1e-6).floor() / 10.0) + 0.0
}

/// A test's weight as shown (`NAME=+7.95`): one decimal, more when the
/// weight has them (up to six), so that the weights never show a sum the
/// score does not have.
pub fn shown_weight(weight: f64) -> String {
    let mut w = format!("{:+.6}", (weight * 1e6).round() / 1e6 + 0.0);
    while w.ends_with('0') && !w.ends_with(".0") {
        w.pop();
    }
    w
}

impl Evidence {
    /// The message's rating, 0 to 100 ([`rating_of`] its score): a list
    /// verdict settles it, as it settles the status, at 100 for a
    /// blacklisted message and 0 for a whitelisted one.
    pub fn rating(&self) -> u8 {
        if self.blacklisted.is_some() {
            100
        } else if self.whitelisted {
            0
        } else {
            rating_of(self.score())
        }
    }

    /// The sum of the weights (never -0.0, which would print as such), to
    /// a millionth of a point: a sum of decimal weights is not exact in
    /// binary (3.975 + 3.975 is a hair above 7.95, 0.1 + 0.2 a hair above
    /// 0.3), and a sum that should be 8 must not land a hair under it and
    /// change the status.
    pub fn score(&self) -> f64 {
        let sum = self.hits.iter().map(|h| h.weight).sum::<f64>();
        (sum * 1e6).round() / 1e6 + 0.0
    }

    /// The score as shown: [`shown_score`].
    pub fn shown_score(&self) -> f64 {
        shown_score(self.score())
    }

    /// The status at a level.
    pub fn status(&self, level: SpamLevel) -> SpamStatus {
        self.status_if(level, self.blacklisted.is_some())
    }

    /// The status at a level as the sender could know it: without the
    /// blacklisting of a spam trap ([`Evidence::trapped`]), which only we
    /// know of. A refusal may follow from this status, never from the
    /// trap's: the same message to a mailbox alone gets the same reply.
    pub fn status_without_trap(&self, level: SpamLevel) -> SpamStatus {
        self.status_if(level, self.blacklisted.is_some() && !self.trapped)
    }

    /// The status at a level, `blacklisted` or not.
    fn status_if(&self, level: SpamLevel, blacklisted: bool) -> SpamStatus {
        let (probable, spam) = thresholds(level);
        let score = self.score();
        if blacklisted {
            SpamStatus::Blacklisted
        } else if self.whitelisted {
            // The whitelist says "not spam"; an automatic message from a
            // whitelisted sender is formal still, for a group that keeps
            // auto-replies out (walkCA F10).
            if self.formal.is_some() {
                SpamStatus::Formal
            } else {
                SpamStatus::Clean
            }
        } else if score >= spam {
            SpamStatus::Spam
        } else if score >= probable {
            SpamStatus::Probable
        } else if self.formal.is_some() {
            SpamStatus::Formal
        } else {
            SpamStatus::Clean
        }
    }

    /// The test names, for headers and logs.
    pub fn test_names(&self) -> Vec<&str> {
        self.hits.iter().map(|h| h.name.as_str()).collect()
    }

    /// `NAME=+1.0 NAME=-2.5`, for the log.
    pub fn weighed(&self) -> String {
        self.hits
            .iter()
            .map(|h| format!("{}={}", h.name, shown_weight(h.weight)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The spam verdict as a line of a quarantine copy or a notice to the
    /// administrator or recipients: `as/spam score=9.5 rating=82
    /// tests=REMOVE_ME,BAYES_999`, with the list in brackets after
    /// `as/blacklisted`, and why after `as/formal` (walkCA F8: a release
    /// wants to know what made a newsletter formal).
    pub fn finding_line(&self, status: SpamStatus) -> String {
        let list = match (&self.blacklisted, status, self.formal) {
            (Some(list), SpamStatus::Blacklisted, _) => format!(" ({})", crate::text::ascii(list)),
            (_, SpamStatus::Formal, Some(why)) => format!(" ({why})"),
            _ => String::new(),
        };
        let tests = match self.test_names().join(",") {
            t if t.is_empty() => "none".to_string(),
            t => t,
        };
        format!(
            "as/{}{list} score={:.1} rating={} tests={tests}",
            status.as_str(),
            self.shown_score(),
            self.rating()
        )
    }

    /// The verdict fields for `status`: `X-Mailward-Spam` (status, score,
    /// tests) and `X-Mailward-Spam-Rating` (the rating alone, so that a
    /// Sieve rule can compare it as a number: `header :value "ge"
    /// :comparator "i;ascii-numeric"`, RFC 5231).
    pub fn header(&self, status: SpamStatus) -> String {
        // Folded between tests so that no line passes 78 characters
        // however many fire (RFC 5322 2.1.1).
        let mut h = format!(
            "X-Mailward-Spam: as/{}; score={:.1}; tests=",
            status.as_str(),
            self.shown_score()
        );
        let mut line = h.len();
        if self.hits.is_empty() {
            h.push_str("none");
        }
        for (i, name) in self.test_names().iter().enumerate() {
            let name = crate::text::ascii(name);
            if i > 0 {
                if line + name.len() + 1 > 76 {
                    h.push_str(",\r\n\t");
                    line = 1;
                } else {
                    h.push(',');
                    line += 1;
                }
            }
            line += name.len();
            h.push_str(&name);
        }
        h.push_str(&format!(
            "\r\nX-Mailward-Spam-Rating: {}\r\n",
            self.rating()
        ));
        h
    }
}

/// Who sent a message, as the lists see it (None offline: no client).
pub struct Origin<'a> {
    pub client: std::net::IpAddr,
    pub sender: &'a str,
    /// The `[spam] dnsbl` zones that listed the client at connect.
    pub dnsbl_listed: &'a [String],
    /// SPF, DKIM and DMARC results.
    pub auth: &'a crate::auth::Auth,
    /// A recipient that is a `[spam] traps` address, if one is.
    pub trapped: Option<&'a str>,
    /// The client is one of ours (`relay_networks`, or authenticated with
    /// the MTA in front): [`crate::standing::Standing`].
    pub ours: bool,
}

/// Whether one `[spam] blacklist`/`whitelist` entry matches the client or
/// the sender (the null sender matches no address entry). The session asks
/// it at RCPT too ([`blacklisted`]).
pub fn list_matches(
    entry: &crate::config::GroupEntry,
    client: std::net::IpAddr,
    sender: &str,
) -> bool {
    match entry {
        crate::config::GroupEntry::Net(net) => crate::config::rules::net_contains(net, client),
        crate::config::GroupEntry::Address(p) => !sender.is_empty() && p.matches(sender),
    }
}

/// Whether `[spam] blacklist` lists the client or the sender: then every
/// recipient's verdict is `as/blacklisted`, whatever else is found.
pub fn blacklisted(cfg: &crate::config::Config, client: std::net::IpAddr, sender: &str) -> bool {
    cfg.spam
        .blacklist
        .iter()
        .any(|e| list_matches(e, client, sender))
}

/// Whether `[spam] whitelist` lists the client by address (`ip NET`): then
/// `spf = "reject"` does not refuse its `fail` (the SPF result still goes
/// into the verdict). Such a client is typically a forwarder or a
/// partner's relay, exactly the mail SPF fails on. A sender glob does not
/// count: it is only vouched for by SPF itself, or DKIM after DATA.
pub fn whitelisted_client(cfg: &crate::config::Config, client: std::net::IpAddr) -> bool {
    cfg.spam.whitelist.iter().any(|e| match e {
        crate::config::GroupEntry::Net(net) => crate::config::rules::net_contains(net, client),
        crate::config::GroupEntry::Address(_) => false,
    })
}

/// Judges one message.
pub fn examine(
    knowledge: &knowledge::Knowledge,
    raw: &[u8],
    message: Option<&Message<'_>>,
    origin: Option<&Origin<'_>>,
) -> Evidence {
    let dnsbl_listed = origin.map_or(&[][..], |o| o.dnsbl_listed);
    let headers = HEADERS.parse_headers(raw);
    let raw_headers = header_block(raw);
    let text = text::gather(message);
    let mut hits = Vec::new();
    let mut blacklisted = None;
    for zone in knowledge
        .dnsbl
        .iter()
        .filter(|z| dnsbl_listed.contains(&z.zone))
    {
        match zone.weight {
            Some(w) => hits.push(Hit::new(&zone.test_name(), w)),
            None => {
                hits.push(Hit::new(&zone.test_name(), 0.0));
                blacklisted.get_or_insert_with(|| zone.zone.clone());
            }
        }
    }
    let mut whitelisted = false;
    let mut trapped = false;
    if let Some(o) = origin {
        let matches = |e: &crate::config::GroupEntry| list_matches(e, o.client, o.sender);
        let listed = blacklisted.is_some();
        if let Some(trap) = o.trapped {
            hits.push(Hit::new("SPAM_TRAP", 0.0));
            blacklisted.get_or_insert_with(|| format!("spam trap <{trap}>"));
        }
        let on_blacklist = knowledge.blacklist.iter().any(matches);
        if on_blacklist {
            hits.push(Hit::new("BLACKLIST", 0.0));
            blacklisted.get_or_insert_with(|| "[spam] blacklist".to_string());
        }
        trapped = o.trapped.is_some() && !listed && !on_blacklist;
        // A sender address counts only when SPF or DKIM vouches for it:
        // anyone can write any address in MAIL FROM.
        let vouched = |e: &crate::config::GroupEntry| match e {
            crate::config::GroupEntry::Net(_) => matches(e),
            crate::config::GroupEntry::Address(_) => matches(e) && o.auth.vouches_for(o.sender),
        };
        if knowledge.whitelist.iter().any(vouched) {
            hits.push(Hit::new("WHITELIST", 0.0));
            whitelisted = true;
        } else if knowledge.whitelist.iter().any(matches) {
            hits.push(Hit::new("WHITELIST_UNVERIFIED", 0.0));
        }
        signals::sender_auth(o.auth, o.sender.is_empty(), &mut hits);
    }
    let content_from = hits.len();
    let ours = origin.is_some_and(|o| o.ours);
    rules::heuristics(headers.as_ref(), message, &text, ours, &mut hits);
    rules::content(
        &knowledge.rules,
        headers.as_ref(),
        raw_headers,
        &text,
        &mut hits,
    );
    let content_to = hits.len();
    // After the content tests: its points are the same whether or not the
    // classifier speaks.
    if text.body.contains(GTUBE) {
        hits.push(Hit::new("GTUBE", GTUBE_POINTS));
    }
    let tokens = tokens::tokenize(headers.as_ref(), message, &text);
    let probability = knowledge
        .classifier
        .spam_probability(tokens.iter(), |t| tokens.is_structure(t));
    match probability {
        Some(p) => hits.push(band(p)),
        None => hits[content_from..content_to]
            .iter_mut()
            .for_each(|h| h.weight *= RULES_ALONE),
    }
    Evidence {
        hits,
        probability,
        formal: formal::formal(
            headers.as_ref(),
            message,
            origin.map(|o| o.sender.is_empty()),
        ),
        blacklisted,
        trapped,
        whitelisted,
        uri_domains: signals::uri_domains(&text),
        classifier_unavailable: knowledge.classifier.unavailable,
    }
}

/// The header block of a raw message (up to the first empty line), as text
/// (256 KiB at most, cut at the last whole character).
pub fn header_block(raw: &[u8]) -> &str {
    let block = &raw[..crate::text::HeaderEnd::of(raw).header.min(256 * 1024)];
    match std::str::from_utf8(block) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&block[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// What learning needs of one message: its identity and its tokens, from
/// one parse. The identity is its Message-ID and its body, so that the same
/// message learnt twice (from two mailboxes, or after passing through a
/// gateway that added headers) counts once. The body's line ends count as
/// LF: a copy saved from the wire (CRLF) and one from a Maildir (LF) are
/// the same message (an LF copy keeps the identity it always had).
pub fn for_learning(raw: &[u8]) -> (u64, Vec<u64>) {
    let headers = HEADERS.parse_headers(raw);
    let message_id = headers
        .as_ref()
        .and_then(|h| h.message_id())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&raw[crate::text::HeaderEnd::of(raw).header..]);
    let body = if body.contains('\r') {
        std::borrow::Cow::Owned(body.replace("\r\n", "\n"))
    } else {
        body
    };
    let digest = tokens::hash(&["digest", message_id, body.trim()]);
    let message = super::parse(raw);
    let text = text::gather(message.as_ref());
    let tokens = tokens::tokenize(headers.as_ref(), message.as_ref(), &text).into_vec();
    (digest, tokens)
}

/// A message's tokens with their texts, as the check makes them (for
/// `mailward spam check --clues`; the check itself keeps only hashes).
pub fn named_tokens(raw: &[u8]) -> tokens::Tokens {
    let headers = HEADERS.parse_headers(raw);
    let message = super::parse(raw);
    let text = text::gather(message.as_ref());
    let mut t = tokens::Tokens::named();
    tokens::tokenize_into(&mut t, headers.as_ref(), message.as_ref(), &text);
    t
}

/// The spam check of the pipeline.
pub struct Spam;

impl Check for Spam {
    fn name(&self) -> &'static str {
        "spam"
    }

    fn wanted(&self, policy: &Policy) -> bool {
        policy.check_spam
    }

    fn run(&self, cx: &mut Context<'_, '_, '_>, tools: &mut Tools<'_, '_>, report: &mut Report) {
        static RULES_ONLY: LazyLock<knowledge::Knowledge> =
            LazyLock::new(|| knowledge::Knowledge {
                rules: rules::built_in().into(),
                ..knowledge::Knowledge::default()
            });
        let k = tools.spam.as_deref().unwrap_or(&RULES_ONLY);
        let origin = Origin {
            client: cx.envelope.client_ip,
            sender: &cx.envelope.mail_from,
            dnsbl_listed: &cx.envelope.dnsbl_listed,
            auth: &cx.envelope.auth,
            trapped: cx
                .envelope
                .rcpts
                .iter()
                .map(|r| r.address.as_str())
                .find(|a| k.traps.iter().any(|t| t.matches(a))),
            ours: !crate::standing::Standing::among(
                &k.relay_networks,
                cx.envelope.client_ip,
                cx.envelope.sasl_user.as_deref(),
            )
            .is_outside(),
        };
        report.spam = Some(examine(k, cx.raw, cx.message, Some(&origin)));
    }
}

#[cfg(test)]
mod tests;
