//! Small text helpers the protocol code shares, so that each exists once:
//! RFC 3461 xtext (ENVID, ORCPT), the RFC 5321 mailbox syntax (for RCPT TO
//! and for the addresses administrators give the CLI), the ASCII sanitiser
//! for what goes into headers, notices and reports, a cut on a character
//! boundary, and where a message's header block ends.

use std::fmt::Write as _;

/// RFC 3461 4: "+HH" for every octet outside `!`..`~`, and for `+` and `=`.
pub fn xtext_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "+{b:02X}");
        }
    }
    out
}

/// Whether `value` is valid xtext: printable ASCII but `=`, and `+` only
/// before two upper-case hex digits.
pub fn is_xtext(value: &str) -> bool {
    xtext_decode(value).is_some()
}

/// Undoes xtext; None when `value` is not valid xtext (or not UTF-8 once
/// decoded).
pub fn xtext_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            b @ 33..=126 => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Longest local part (RFC 5321 4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// Longest mailbox: a path is 256 octets with its angle brackets (RFC 5321
/// 4.5.3.1.3), which leaves 254 for the address.
const MAX_MAILBOX: usize = 254;
/// Longest domain (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;

/// Why a text is not a mailbox (RFC 5321 4.1.2 `Mailbox`), as a phrase
/// that fits after "... is not an address: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxError {
    #[error("it is empty")]
    Empty,
    #[error("it has no @ between a local part and a domain")]
    NoAt,
    #[error("it has more than one @ outside quotes (one address only)")]
    TwoAts,
    #[error("the part before the @ is empty")]
    EmptyLocal,
    #[error("the domain after the @ is empty")]
    EmptyDomain,
    #[error("the part before the @ is longer than {MAX_LOCAL} characters")]
    LocalTooLong,
    #[error("it is longer than {MAX_MAILBOX} characters")]
    TooLong,
    #[error("it holds non-ASCII or control characters (allowed only in mail sent with SMTPUTF8)")]
    NotAscii,
    /// With SMTPUTF8: a control character (a bidirectional one or a line
    /// separator too), or an octet that was not UTF-8 (read as U+FFFD: a
    /// Latin-1 `é` from an old client).
    #[error("it holds control characters or octets that are not UTF-8")]
    Malformed,
    #[error(
        "{0:?} is not allowed in it (one address only, without spaces, commas or angle brackets)"
    )]
    BadChar(char),
    #[error("the quoted part before the @ is not closed or not followed by @")]
    BadQuote,
    #[error(
        "`{0}` is not a host name (labels of letters, digits and hyphens between dots, none empty)"
    )]
    BadDomain(String),
    #[error("`{0}` is not an address literal like [192.0.2.1] or [IPv6:2001:db8::1]")]
    BadLiteral(String),
    /// A domain IDNA would change on its way to the DNS (walkAR F10): a
    /// character it drops (soft hyphen, zero-width space, U+FEFF), maps
    /// (fullwidth letters, U+3002 as a dot) or normalises (not NFC). The
    /// rules would see one domain and the next hop get another.
    #[error(
        "the domain `{}` holds characters IDNA removes or replaces (invisible, fullwidth or compatibility forms, or not in NFC): it stands for `{canonical}`; write that",
        escaped(.domain)
    )]
    IdnNotCanonical {
        /// As written.
        domain: String,
        /// What IDNA makes of it, as U-labels.
        canonical: String,
    },
    /// Not a valid internationalised domain name: an `xn--` label that
    /// does not decode and encode back (`xn--zz`), a joiner out of
    /// context, or a character IDNA refuses.
    #[error("`{}` is not a valid internationalised domain name (IDNA)", escaped(.0))]
    BadIdn(String),
    /// A symbol or punctuation IDNA2008 (RFC 5892) disallows in a domain
    /// (emoji, dingbats, arrows), though UTS #46 passes it.
    #[error(
        "the domain `{}` holds U+{:04X}, a symbol that no domain name may hold (IDNA2008)",
        escaped(.0),
        u32::from(*.1)
    )]
    IdnDisallowed(String, char),
}

/// `text` with control, bidi and invisible format characters written as
/// `\u{200B}`, so that a message naming a refused address shows what is
/// in it.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || crate::ops::syslog::is_escaped_format(c) || is_invisible_format(c) {
            let _ = write!(out, "\\u{{{:04X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Invisible format characters (Unicode Cf besides the bidi controls
/// [`crate::ops::syslog::is_escaped_format`] has): soft hyphen, the
/// zero-width space and joiners, word joiner and invisible operators,
/// U+FEFF, interlinear annotation, tags. An address with one looks like
/// another in a log line or a notice (walkAR F1).
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{180E}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Symbols and punctuation that IDNA2008 (RFC 5892) disallows but UTS #46,
/// which the `idna` crate implements, lets through (`😀.example` becomes
/// `xn--e28h.example`): whole blocks of them only, so no letter is
/// refused. Not every disallowed code point: the rest is what UTS #46
/// itself refuses or maps.
fn is_disallowed_symbol(c: char) -> bool {
    matches!(c,
        // General Punctuation (but ZWNJ/ZWJ, which IDNA2008 allows in
        // context and UTS #46 checks), Currency Symbols.
        '\u{2010}'..='\u{206F}' | '\u{20A0}'..='\u{20CF}'
        // Arrows to Miscellaneous Symbols and Arrows (dingbats, box
        // drawing, Braille, math operators).
        | '\u{2190}'..='\u{2BFF}'
        // Mahjong tiles to Symbols for Legacy Computing (emoji).
        | '\u{1F000}'..='\u{1FBFF}')
}

/// `addr` with an internationalised domain written as its A-label
/// (`user@bücher.example` is `user@xn--bcher-kva.example`), as the DNS, the
/// routing table and a next hop without SMTPUTF8 know it. The local part
/// is left as it is: a non-ASCII one needs SMTPUTF8, which
/// [`check_mailbox`] refuses and [`check_utf8_mailbox`] allows. A domain
/// IDNA cannot convert is left too, for the checks to refuse.
pub fn a_label_mailbox(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => match canonical_domain(domain) {
            Ok(a_label) if a_label != domain => format!("{local}@{a_label}"),
            _ => addr.to_string(),
        },
        None => addr.to_string(),
    }
}

/// A domain as its A-labels (`bücher.example` is `xn--bcher-kva.example`),
/// lower-cased by IDNA; an ASCII domain without `xn--` labels as it is;
/// `None` when it is not a valid IDN in its canonical form
/// ([`canonical_domain`]). The one IDNA path of Mailward: addresses,
/// routes and MX look-ups all go through it.
pub fn a_label_domain(domain: &str) -> Option<String> {
    canonical_domain(domain).ok()
}

/// Whether a label is internationalised: a U-label, or an A-label
/// (`xn--`) that stands for one.
fn is_idn_label(label: &str) -> bool {
    !label.is_ascii()
        || label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
}

/// The one form of a domain inside Mailward: its A-labels, lower-case,
/// when it has an internationalised label (a U-label or an `xn--` one);
/// an ASCII host name or an address literal as written. Refused, rather
/// than silently changed: a domain UTS #46 would map to another text
/// ([`MailboxError::IdnNotCanonical`]: `n\u{200B}ou.example` is
/// `nou.example`, which a `deny address *@nou.example` must not miss,
/// walkAR F10), an invalid one (`xn--zz`, [`MailboxError::BadIdn`]) and
/// a symbol IDNA2008 disallows ([`MailboxError::IdnDisallowed`]). Case
/// is no change: `BÜCHER.example` is `xn--bcher-kva.example`.
pub fn canonical_domain(domain: &str) -> Result<String, MailboxError> {
    use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
    if domain.starts_with('[') || !domain.split('.').any(is_idn_label) {
        return Ok(domain.to_string());
    }
    // Empty labels and lengths are the host name's syntax (checked after,
    // on the A-labels), not IDNA's.
    if domain.split('.').any(str::is_empty) {
        return Err(MailboxError::BadDomain(domain.to_string()));
    }
    let bad = || MailboxError::BadIdn(domain.to_string());
    let uts46 = Uts46::new();
    // STD3: letters, digits and hyphens only, as a host name has them.
    let a_label = uts46
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| bad())?
        .into_owned();
    let (u_label, result) =
        uts46.to_unicode(a_label.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow);
    result.map_err(|_| bad())?;
    let not_canonical = || MailboxError::IdnNotCanonical {
        domain: domain.to_string(),
        canonical: u_label.to_string(),
    };
    let written: Vec<&str> = domain.split('.').collect();
    let ascii: Vec<&str> = a_label.split('.').collect();
    let unicode: Vec<&str> = u_label.split('.').collect();
    // U+3002 and U+FF0E are dots to UTS #46: another count of labels.
    if written.len() != ascii.len() || written.len() != unicode.len() {
        return Err(not_canonical());
    }
    for ((w, a), u) in written.iter().zip(&ascii).zip(&unicode) {
        let same = if w.is_ascii() {
            w.eq_ignore_ascii_case(a)
        } else {
            *u == w.to_lowercase()
        };
        if !same {
            return Err(not_canonical());
        }
    }
    if let Some(c) = u_label.chars().find(|&c| is_disallowed_symbol(c)) {
        return Err(MailboxError::IdnDisallowed(domain.to_string(), c));
    }
    Ok(a_label)
}

/// The script of a letter, as far as look-alike domains go: the scripts
/// whose letters pass for Latin ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
    Other,
}

fn script(c: char) -> Script {
    match c {
        'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => Script::Latin,
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Script::Greek,
        '\u{0400}'..='\u{052F}'
        | '\u{1C80}'..='\u{1C8F}'
        | '\u{2DE0}'..='\u{2DFF}'
        | '\u{A640}'..='\u{A69F}' => Script::Cyrillic,
        _ => Script::Other,
    }
}

/// Cyrillic letters that a reader takes for Latin ones in most fonts
/// (`а` for `a`, `ԁ` for `d`, `ӏ` for `l`): a label written in them
/// alone reads as a Latin word (`аррӏе` is not `apple`).
const CYRILLIC_AS_LATIN: &str = "аосԁеһіјӏорԛѕԝхуъьӀ";

/// Whether a domain (A-labels or U-labels, as a link or a `From:` shows
/// it) has a label that is made to look like another: Latin letters mixed
/// with Greek or Cyrillic ones in one label (`pаypal`, with a Cyrillic
/// `а`), or, under an ASCII top-level domain, a label of Cyrillic letters
/// that all pass for Latin ones (`аррӏе.com`). Registries refuse such
/// labels for most top-level domains (their label generation rules keep
/// one script to a label), and browsers show them as `xn--` for that
/// reason, so in mail they are phishing far more often than a name. An
/// ASCII domain and a domain in one script of its own (`пример.рф`,
/// `bücher.example`) are not look-alikes.
pub fn lookalike_domain(domain: &str) -> bool {
    use idna::uts46::{AsciiDenyList, Hyphens, Uts46};
    if !domain.split('.').any(is_idn_label) {
        return false;
    }
    let (unicode, _) =
        Uts46::new().to_unicode(domain.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow);
    let labels: Vec<&str> = unicode.split('.').filter(|l| !l.is_empty()).collect();
    let ascii_tld = labels.last().is_some_and(|t| t.is_ascii());
    labels.iter().any(|label| {
        let scripts: Vec<Script> = label
            .chars()
            .filter(|c| c.is_alphabetic())
            .map(script)
            .collect();
        let has = |s: Script| scripts.contains(&s);
        let mixed = u8::from(has(Script::Latin))
            + u8::from(has(Script::Greek))
            + u8::from(has(Script::Cyrillic))
            > 1;
        let cyrillic_as_latin = ascii_tld
            && label.chars().count() >= 3
            && label.chars().any(|c| script(c) == Script::Cyrillic)
            && label
                .chars()
                .all(|c| c == '-' || c.is_ascii_digit() || CYRILLIC_AS_LATIN.contains(c));
        mixed || cyrillic_as_latin
    })
}

/// Whether `addr` (without angle brackets) is a mailbox a forward path may
/// name: one local part (dot-atom or quoted string) and one domain (a host
/// name or an address literal), ASCII only: what a transaction without
/// SMTPUTF8 may carry. The SMTP server checks MAIL FROM and RCPT TO with it
/// (or with [`check_utf8_mailbox`] under SMTPUTF8), and the configuration
/// checks its addresses with it, so that all agree on what an address is.
pub fn check_mailbox(addr: &str) -> Result<(), MailboxError> {
    check(addr, false)
}

/// [`check_mailbox`] for a transaction with SMTPUTF8 (RFC 6531 3.3): the
/// local part may also hold UTF-8 characters (unquoted or quoted) and the
/// domain U-labels, which must convert to a host name in A-labels (IDNA).
/// Control characters, C1 controls included, and octets that were not
/// UTF-8 (U+FFFD) are still refused ([`MailboxError::Malformed`]). The
/// limits count octets, as RFC 5321 does: 64 for the local part, 254 for
/// the mailbox.
pub fn check_utf8_mailbox(addr: &str) -> Result<(), MailboxError> {
    check(addr, true)
}

fn check(addr: &str, utf8: bool) -> Result<(), MailboxError> {
    if addr.is_empty() {
        return Err(MailboxError::Empty);
    }
    if utf8 {
        // Bidirectional controls and U+2028/U+2029 too: no address needs
        // them, and they would turn a log line or a report around
        // (`invoice\u{202E}fdp.exe`) or break it.
        if addr.chars().any(|c| {
            c.is_control()
                || c == char::REPLACEMENT_CHARACTER
                || crate::ops::syslog::is_escaped_format(c)
        }) {
            return Err(MailboxError::Malformed);
        }
    } else if !addr.is_ascii() || addr.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(MailboxError::NotAscii);
    }
    let (local, domain) = split_mailbox(addr)?;
    // Invisible in the local part too (in the domain IDNA's check below
    // says what they are): `a\u{200B}b@` looks like `ab@` everywhere it
    // is shown, as a bidi control would turn it round (walkAR F1).
    if local.chars().any(is_invisible_format) {
        return Err(MailboxError::Malformed);
    }
    if local.is_empty() {
        return Err(MailboxError::EmptyLocal);
    }
    if domain.is_empty() {
        return Err(MailboxError::EmptyDomain);
    }
    if local.len() > MAX_LOCAL {
        return Err(MailboxError::LocalTooLong);
    }
    if addr.len() > MAX_MAILBOX {
        return Err(MailboxError::TooLong);
    }
    if !local.starts_with('"') {
        // Dots are taken anywhere (".a", "a..b"): not RFC dot-atoms, but
        // real mailboxes that Postfix and others accept and deliver. RFC
        // 6531 3.3 adds UTF-8 characters to atext.
        if let Some(c) = local.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || "!#$%&'*+-/=?^_`{|}~.".contains(*c)
                || (utf8 && !c.is_ascii()))
        }) {
            return Err(MailboxError::BadChar(c));
        }
    }
    if let Some(literal) = domain.strip_prefix('[') {
        return match literal.strip_suffix(']') {
            Some(inner) if is_address_literal(inner) => Ok(()),
            _ => Err(MailboxError::BadLiteral(domain.to_string())),
        };
    }
    // U-labels are checked as the A-labels the DNS knows them by, and
    // must be in the one form IDNA gives them (so must `xn--` labels,
    // which must decode).
    if !utf8 && !domain.is_ascii() {
        return Err(MailboxError::NotAscii);
    }
    let a_label = canonical_domain(domain)?;
    if is_hostname(&a_label) {
        Ok(())
    } else {
        Err(MailboxError::BadDomain(domain.to_string()))
    }
}

/// Splits a mailbox at its @: after the closing quote of a quoted local
/// part (which may hold an @), else at the only @.
fn split_mailbox(addr: &str) -> Result<(&str, &str), MailboxError> {
    if let Some(quoted) = addr.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                // qtextSMTP is printable ASCII but `"` and `\`; angle
                // brackets are legal there, but no relay (ours included)
                // passes them on safely.
                '<' | '>' => return Err(MailboxError::BadChar(c)),
                '"' => {
                    let end = i + 2; // the opening quote, then this one
                    let rest = &addr[end..];
                    let Some(domain) = rest.strip_prefix('@') else {
                        return Err(MailboxError::BadQuote);
                    };
                    if domain.contains('@') {
                        return Err(MailboxError::TwoAts);
                    }
                    return Ok((&addr[..end], domain));
                }
                _ => {}
            }
        }
        return Err(MailboxError::BadQuote);
    }
    let mut parts = addr.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => Ok((local, domain)),
        (_, None, _) => Err(MailboxError::NoAt),
        _ => Err(MailboxError::TwoAts),
    }
}

/// A host name: labels of 1 to 63 letters, digits and hyphens (not at
/// either end) between single dots, 255 octets at most.
pub fn is_hostname(name: &str) -> bool {
    name.len() <= MAX_DOMAIN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The inside of an RFC 5321 4.1.3 address literal: IPv4, "IPv6:" and an
/// IPv6 address, or a standardized tag, a colon and printable text.
fn is_address_literal(inner: &str) -> bool {
    if inner.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    if let Some(v6) = inner
        .get(..5)
        .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
        .and_then(|_| inner.get(5..))
    {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    match inner.split_once(':') {
        Some((tag, content)) => {
            !tag.is_empty()
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !tag.ends_with('-')
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b))
        }
        None => false,
    }
}

/// Keeps printable ASCII and spaces; anything else becomes `?`, so that
/// the text is safe in a 7-bit header, notice or report field.
pub fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `text` with each run of control characters (CR, LF, TAB, ...) as one
/// space, trimmed. What the sender chose (a decoded Subject, an
/// attachment's file name, an archive member's path) goes through it before
/// it is written into a notice, a placeholder or a quarantine entry's
/// findings: a line break there would start lines of the sender's choosing
/// (`IMPORTANT: log in at ...`, a fake log line) in a text that says it
/// comes from us. A bidirectional control (U+202E RIGHT-TO-LEFT OVERRIDE
/// and its kin) is written as `<U+202E>`: left as it is, the notice that
/// reports `invoice<U+202E>fdp.exe` would show the spoofed
/// "invoiceexe.pdf" itself (walkZ 7).
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if crate::ops::syslog::is_bidi_control(c) {
            out.push_str(&format!("<U+{:04X}>", c as u32));
            in_run = false;
        } else if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out.trim().to_string()
}

/// A duration in two units at most, as people write it: "3d 4h", "2h 5m",
/// "42s" (negative: 0s). For ages in tables and status lines.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// "1 record", "5 records": a count with its noun, for operators' lines.
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `s` cut to at most `max` octets, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where `needle` first occurs in `hay` (MIME boundaries, header ends).
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Where `needle` last occurs in `hay`.
pub fn rfind_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(hay, needle)
}

/// A message or MIME entity cut at the empty line that ends its header
/// block (RFC 5322 2.1): `raw[..header]` is the header block with its last
/// line end, `raw[header..header + blank]` the empty line, the rest the
/// body. Line ends may be CRLF or bare LF, and even mixed (spool files,
/// files given to the CLI, what a careless client sends), so the first line
/// that is empty either way ends the block. Without an empty line the whole
/// input is header and `blank` is 0; an input that starts with one has no
/// header. One function for every reader (policy marks, spam rules, DSNs,
/// DKIM, 7-bit conversion, milter changes), so that they all agree on where
/// a message's body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEnd {
    /// Octets of the header block, its last line end included.
    pub header: usize,
    /// Octets of the empty line: 2 (CRLF), 1 (LF) or 0 (none).
    pub blank: usize,
}

impl HeaderEnd {
    /// Where `raw`'s header block ends.
    pub fn of(raw: &[u8]) -> HeaderEnd {
        let mut at = 0;
        loop {
            let rest = &raw[at..];
            if rest.starts_with(b"\r\n") {
                return HeaderEnd {
                    header: at,
                    blank: 2,
                };
            }
            if rest.starts_with(b"\n") {
                return HeaderEnd {
                    header: at,
                    blank: 1,
                };
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => at += nl + 1,
                None => {
                    return HeaderEnd {
                        header: raw.len(),
                        blank: 0,
                    }
                }
            }
        }
    }

    /// Where the body starts (after the empty line).
    pub fn body(self) -> usize {
        self.header + self.blank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(42), "42s");
        assert_eq!(age(125), "2m 5s");
        assert_eq!(age(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }

    #[test]
    fn xtext_round_trips_and_is_strict() {
        assert_eq!(xtext_encode("a+b=c d\u{e9}"), "a+2Bb+3Dc+20d+C3+A9");
        assert_eq!(
            xtext_decode(&xtext_encode("a+b=c d")).as_deref(),
            Some("a+b=c d")
        );
        for bad in ["+G1", "a+2", "a=b", "a b", "+2b"] {
            assert_eq!(xtext_decode(bad), None, "{bad}");
        }
        assert!(is_xtext("rfc822;a+2Bb@example.com"));
    }

    #[test]
    fn one_line_flattens_control_characters() {
        assert_eq!(one_line("a\r\n\tb\u{7}c\n"), "a b c");
        // walkZ 7: a notice must not repeat the spoof it reports.
        assert_eq!(one_line("invoice\u{202E}fdp.exe"), "invoice<U+202E>fdp.exe");
        assert_eq!(
            one_line("invoice\n\nIMPORTANT: log in\u{2028}x.exe"),
            "invoice IMPORTANT: log in x.exe"
        );
        assert_eq!(
            one_line("\u{e4}rger R\u{e9}sum\u{e9}.exe"),
            "\u{e4}rger R\u{e9}sum\u{e9}.exe"
        );
    }

    #[test]
    fn ascii_and_cut() {
        assert_eq!(ascii("caf\u{e9}\r\n\t !"), "caf???? !");
        assert_eq!(cut("h\u{e9}llo", 2), "h");
        assert_eq!(cut("hello", 255), "hello");
    }

    #[test]
    fn mailboxes_are_one_local_part_at_one_domain() {
        for good in [
            "user@example.com",
            "a@b",
            "first.last+tag@sub.example-mail.org",
            "a..b@example.com",
            "\"john doe\"@example.com",
            "\"a@b\"@example.com",
            "\"a\\\"b\"@example.com",
            "postmaster@[192.0.2.1]",
            "u@[IPv6:2001:db8::1]",
            "u@[x-tag:content]",
        ] {
            assert_eq!(check_mailbox(good), Ok(()), "{good}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        // Each part within its limit, the whole beyond 254.
        let long_whole = format!(
            "{}@{}com",
            "a".repeat(60),
            format!("{}.", "b".repeat(60)).repeat(4)
        );
        use MailboxError::*;
        for (bad, why) in [
            ("", Empty),
            ("notanaddress", NoAt),
            ("@reject.test", EmptyLocal),
            ("a@", EmptyDomain),
            ("x@", EmptyDomain),
            ("a@b@c", TwoAts),
            ("a@example.com,b@example.com", TwoAts),
            ("a,b@example.com", BadChar(',')),
            ("x y@example.com", BadChar(' ')),
            ("a@example.com ", BadDomain("example.com ".into())),
            ("a@exa mple.com", BadDomain("exa mple.com".into())),
            ("a@example..com", BadDomain("example..com".into())),
            ("a@example.com.", BadDomain("example.com.".into())),
            ("a@-example.com", BadDomain("-example.com".into())),
            ("a@exam_ple.com", BadDomain("exam_ple.com".into())),
            ("a@[300.1.1.1]", BadLiteral("[300.1.1.1]".into())),
            ("a@[IPv6:nope]", BadLiteral("[IPv6:nope]".into())),
            ("a@[192.0.2.1", BadLiteral("[192.0.2.1".into())),
            ("\"x<y>\"@example.com", BadChar('<')),
            ("<a@example.com>", BadChar('<')),
            ("\"open@example.com", BadQuote),
            ("\"a\"b@example.com", BadQuote),
            ("caf\u{e9}@example.com", NotAscii),
            ("a\r\nRCPT TO:<b@example.com>", NotAscii),
            (long_local.as_str(), LocalTooLong),
            (long_whole.as_str(), TooLong),
        ] {
            assert_eq!(check_mailbox(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn utf8_mailboxes_are_taken_only_where_smtputf8_allows_them() {
        for good in [
            "j\u{fc}rgen@b\u{fc}cher.example",
            "\u{3b4}\u{3bf}\u{3ba}\u{3b9}\u{3bc}\u{3ae}@\u{3c0}\u{3b1}\u{3c1}\u{3ac}\u{3b4}\u{3b5}\u{3b9}\u{3b3}\u{3bc}\u{3b1}.\u{3b4}\u{3bf}\u{3ba}\u{3b9}\u{3bc}\u{3ae}",
            "\"j\u{fc}rgen m\u{fc}ller\"@example.com",
            "user@example.com",
            "\u{7528}\u{6237}@[192.0.2.1]",
        ] {
            assert_eq!(check_utf8_mailbox(good), Ok(()), "{good}");
            if !good.is_ascii() {
                assert_eq!(check_mailbox(good), Err(MailboxError::NotAscii), "{good}");
            }
        }
        use MailboxError::*;
        // The limits count octets: 33 two-octet characters are 66 octets,
        // over the 64 a local part may have.
        let long_local = format!("{}@example.com", "\u{fc}".repeat(33));
        assert_eq!(long_local.chars().count(), 45);
        for (bad, why) in [
            ("a\u{fffd}@example.com", Malformed),
            ("a\r\nRCPT TO:<b@example.com>", Malformed),
            ("a\u{85}b@example.com", Malformed),
            ("invoice\u{202e}fdp@example.com", Malformed),
            ("a\u{2028}b@example.com", Malformed),
            ("a\0@example.com", Malformed),
            ("j\u{fc}rgen example@example.com", BadChar(' ')),
            (
                "j\u{fc}rgen@b\u{fc}cher..example",
                BadDomain("b\u{fc}cher..example".into()),
            ),
            (long_local.as_str(), LocalTooLong),
        ] {
            assert_eq!(check_utf8_mailbox(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn a_labels_replace_u_labels_in_the_domain_only() {
        assert_eq!(
            a_label_mailbox("user@B\u{fc}cher.example"),
            "user@xn--bcher-kva.example"
        );
        assert_eq!(
            a_label_mailbox("j\u{fc}rgen@b\u{fc}cher.example"),
            "j\u{fc}rgen@xn--bcher-kva.example"
        );
        assert_eq!(a_label_mailbox("user@Example.COM"), "user@Example.COM");
        assert_eq!(
            a_label_domain("example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            a_label_domain("b\u{fc}cher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
    }

    #[test]
    fn a_domain_is_taken_only_in_the_form_idna_gives_it() {
        use MailboxError::*;
        // Canonical: converted (case is no change), or ASCII as written.
        for (given, a_label) in [
            ("b\u{fc}cher.example", "xn--bcher-kva.example"),
            ("B\u{dc}CHER.example", "xn--bcher-kva.example"),
            ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
            (
                "\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}",
                "xn--fsqu00a.xn--0zwm56d",
            ),
            (
                "b\u{fc}cher.xn--mnchen-3ya.test",
                "xn--bcher-kva.xn--mnchen-3ya.test",
            ),
            ("Example.COM", "Example.COM"),
            ("[192.0.2.1]", "[192.0.2.1]"),
        ] {
            assert_eq!(canonical_domain(given).as_deref(), Ok(a_label), "{given}");
        }
        // walkAR F10: each of these is nou.example to IDNA, and was let
        // past `deny address *@nou.example`.
        for mapped in [
            "n\u{200B}ou.example",
            "nou\u{AD}.example",
            "nou\u{FEFF}.example",
            "\u{FF4E}ou.example",
            "nou\u{3002}example",
            "bu\u{308}cher.example",
        ] {
            assert!(
                matches!(canonical_domain(mapped), Err(IdnNotCanonical { .. })),
                "{mapped:?}"
            );
            let addr = format!("a@{mapped}");
            assert!(
                matches!(check_utf8_mailbox(&addr), Err(IdnNotCanonical { .. })),
                "{addr:?}"
            );
        }
        let Err(e) = canonical_domain("spam\u{AD}mer.example") else {
            panic!("a soft hyphen was taken");
        };
        let said = e.to_string();
        assert!(said.contains("spam\\u{00AD}mer.example"), "{said}");
        assert!(said.contains("`spammer.example`"), "{said}");
        for invalid in ["xn--zz.example", "xn--abc-.example", "a\u{200D}b.example"] {
            assert_eq!(
                canonical_domain(invalid),
                Err(BadIdn(invalid.into())),
                "{invalid:?}"
            );
            assert!(
                check_utf8_mailbox(&format!("a@{invalid}")).is_err(),
                "{invalid:?}"
            );
        }
        assert_eq!(
            canonical_domain("\u{1F600}.example"),
            Err(IdnDisallowed("\u{1F600}.example".into(), '\u{1F600}'))
        );
        assert_eq!(
            canonical_domain("xn--e28h.example"),
            Err(IdnDisallowed("xn--e28h.example".into(), '\u{1F600}'))
        );
        // An ASCII transaction's check refuses an invalid A-label too.
        assert_eq!(
            check_mailbox("a@xn--zz.example"),
            Err(BadIdn("xn--zz.example".into()))
        );
        assert_eq!(
            a_label_mailbox("j\u{fc}@XN--MNCHEN-3YA.TEST"),
            "j\u{fc}@xn--mnchen-3ya.test"
        );
    }

    #[test]
    fn invisible_characters_are_refused_in_a_local_part_as_bidi_controls_are() {
        for c in [
            '\u{FEFF}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{AD}', '\u{2060}',
        ] {
            let addr = format!("a{c}b@example.com");
            assert_eq!(
                check_utf8_mailbox(&addr),
                Err(MailboxError::Malformed),
                "{addr:?}"
            );
        }
        assert_eq!(
            escaped("a\u{200B}b\u{202E}c\n"),
            "a\\u{200B}b\\u{202E}c\\u{000A}"
        );
    }

    #[test]
    fn the_header_block_ends_at_the_first_empty_line_whatever_the_line_ends() {
        let cut = |raw: &[u8]| {
            let end = HeaderEnd::of(raw);
            (end.header, end.blank, end.body())
        };
        assert_eq!(cut(b"A: b\r\nC: d\r\n\r\nbody\r\n\r\n"), (12, 2, 14));
        assert_eq!(cut(b"A: b\nC: d\n\nbody\n"), (10, 1, 11));
        // Mixed: a CRLF header line, then a bare LF empty line.
        assert_eq!(cut(b"A: b\r\n\nbody"), (6, 1, 7));
        // A line holding only a CR is not empty.
        assert_eq!(cut(b"A: b\n\r\r\n\r\nbody"), (8, 2, 10));
        // No header, no empty line, nothing at all.
        assert_eq!(cut(b"\r\nbody"), (0, 2, 2));
        assert_eq!(cut(b"\nbody"), (0, 1, 1));
        assert_eq!(cut(b"A: b\r\nC: d"), (10, 0, 10));
        assert_eq!(cut(b""), (0, 0, 0));
    }

    #[test]
    fn look_alike_domains_are_told_from_names_in_one_script() {
        for (domain, lookalike) in [
            // A Cyrillic а in a Latin word, as written and as A-labels.
            ("p\u{0430}ypal.com", true),
            ("xn--pypal-4ve.com", true),
            // A Greek ο among Latin letters.
            ("g\u{03BF}\u{03BF}gle.com", true),
            // Cyrillic letters that all pass for Latin, under .com.
            ("\u{0430}\u{0440}\u{0440}\u{04CF}\u{0435}.com", true),
            // Names in one script of their own, and ASCII.
            (
                "\u{043F}\u{0440}\u{0438}\u{043C}\u{0435}\u{0440}.\u{0440}\u{0444}",
                false,
            ),
            ("b\u{00FC}cher.example", false),
            ("xn--bcher-kva.example", false),
            ("\u{03B1}\u{03B8}\u{03AE}\u{03BD}\u{03B1}.gr", false),
            ("example.com", false),
            ("xn--zz.example", false),
            // The same Cyrillic letters under a Cyrillic top-level domain:
            // a Russian word, not a disguise.
            (
                "\u{0430}\u{0440}\u{0440}\u{04CF}\u{0435}.\u{0440}\u{0444}",
                false,
            ),
        ] {
            assert_eq!(lookalike_domain(domain), lookalike, "{domain}");
        }
    }
}
