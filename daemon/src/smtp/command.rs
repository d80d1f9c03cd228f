//! Parsing of SMTP command lines (RFC 5321 section 4.1) into [`Command`]s.
//! Pure: no I/O, no policy. Each error carries the reply the client gets.

use crate::envelope::{Notify, Ret};
use crate::text::xtext_decode;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: String,
        params: MailParams,
    },
    Rcpt {
        to: String,
        params: RcptParams,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// XFORWARD with its attribute text (applied by the session, which
    /// knows whether the client may use it: [`super::xforward`]).
    Xforward(String),
}

/// ESMTP parameters of MAIL FROM that Mailward knows (RFC 1870, 6152,
/// 3461, 6531).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub ret: Option<Ret>,
    /// ENVID, xtext-decoded.
    pub envid: Option<String>,
    /// SMTPUTF8 (RFC 6531): the addresses of this transaction and the
    /// message header may hold UTF-8.
    pub smtputf8: bool,
}

/// ESMTP parameters of RCPT TO (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// ORCPT as given: "addr-type;xtext".
    pub orcpt: Option<String>,
    /// The address as written held UTF-8, though its canonical form may
    /// not (`bob@b\u{fc}cher.example` is `bob@xn--bcher-kva.example`):
    /// RFC 6531 3.4 still wants SMTPUTF8 in the transaction's MAIL.
    pub written_utf8: bool,
}

/// Why a line is not a valid command, with the reply it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub reply: &'static str,
    /// The command it was meant to be: a MAIL or RCPT refused for its
    /// syntax is a refused transaction or recipient in the statistics,
    /// anything else a protocol error (the session decides, knowing its
    /// state).
    pub verb: Verb,
}

/// Which command a refused line was, as far as the statistics care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Mail,
    Rcpt,
    /// Any other line, known command or not.
    Other,
}

impl ParseError {
    /// The reply, for a line that is not MAIL or RCPT.
    pub(super) const fn other(reply: &'static str) -> ParseError {
        ParseError {
            reply,
            verb: Verb::Other,
        }
    }

    fn of(self, verb: Verb) -> ParseError {
        ParseError { verb, ..self }
    }
}

const UNKNOWN: ParseError = ParseError::other("500 5.5.1 Command unrecognized");
// A command of RFC 5321 or an extension we know but do not offer (BDAT
// without CHUNKING, EXPN, ETRN, AUTH, ...): 502 "not implemented", as RFC
// 5321 4.2.4 asks, so that the client learns the command exists but is
// off here (walkAJ 10: BDAT got 500 "unrecognized").
const NOT_IMPLEMENTED: ParseError = ParseError::other("502 5.5.1 Command not implemented");
const SYNTAX: ParseError = ParseError::other("501 5.5.4 Syntax error in parameters or arguments");
// The same replies as Postfix gives, so that clients and operators see
// familiar text.
const BAD_SENDER: ParseError = ParseError::other("501 5.1.7 Bad sender address syntax");
const BAD_RECIPIENT: ParseError = ParseError::other("501 5.1.3 Bad recipient address syntax");
const MAIL_SYNTAX: ParseError = ParseError::other("501 5.5.4 Syntax: MAIL FROM:<address>");
const RCPT_SYNTAX: ParseError = ParseError::other("501 5.5.4 Syntax: RCPT TO:<address>");
pub(super) const BAD_PARAM: ParseError =
    ParseError::other("555 5.5.4 Unsupported or malformed parameter");
// A path over MAX_PATH: the sender's code for MAIL (RFC 3463 5.1.7), the
// recipient's for RCPT (walkAH 9: MAIL got 5.1.3).
// RFC 6531 3.4: a non-ASCII address in a transaction without SMTPUTF8
// (Postfix: "Must declare SMTPUTF8 to send unicode address").
pub(super) const NEEDS_SMTPUTF8: &str =
    "553 5.6.7 Must declare SMTPUTF8 in MAIL FROM to send a non-ASCII address";
// Octets that are not UTF-8 (a Latin-1 envelope) or control characters:
// refused with SMTPUTF8 too, since no next hop could take them.
const MALFORMED: ParseError =
    ParseError::other("553 5.6.7 Malformed UTF-8 or control characters in address");
// A domain that is not an IDN in its one canonical form (walkAR F10):
// refused rather than changed, since access rules, the blacklist and the
// groups would judge the text written and the next hop get another. 553
// as for a malformed address; 5.1.2 / 5.1.8 (RFC 3463: bad destination /
// sender's system address) since the domain is what is wrong.
const RCPT_IDN_NOT_CANONICAL: ParseError = ParseError::other(
    "553 5.1.2 Bad recipient domain: it holds characters IDNA removes or replaces (invisible, fullwidth, compatibility or not NFC); write the domain as it is meant",
);
const MAIL_IDN_NOT_CANONICAL: ParseError = ParseError::other(
    "553 5.1.8 Bad sender domain: it holds characters IDNA removes or replaces (invisible, fullwidth, compatibility or not NFC); write the domain as it is meant",
);
const RCPT_BAD_IDN: ParseError = ParseError::other(
    "553 5.1.2 Bad recipient domain: not a valid internationalised domain name (IDNA)",
);
const MAIL_BAD_IDN: ParseError = ParseError::other(
    "553 5.1.8 Bad sender domain: not a valid internationalised domain name (IDNA)",
);
const SENDER_TOO_LONG: ParseError = ParseError::other("501 5.1.7 Path too long");
const RECIPIENT_TOO_LONG: ParseError = ParseError::other("501 5.1.3 Path too long");

/// Longest address we take (RFC 5321 4.5.3.1.3: a path is 256 octets).
const MAX_PATH: usize = 256;

/// Parses one command line (terminator already removed).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    // Octets that are not UTF-8 (a Latin-1 envelope from an old client)
    // become U+FFFD, so that an address with one gets the 553 5.6.7 that
    // says why, as a UTF-8 one does, not a 501 "syntax" (walkY 5).
    let line = String::from_utf8_lossy(line);
    let line: &str = &line;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => domain_arg(rest, "501 5.5.4 Syntax: EHLO hostname").map(Command::Ehlo),
        // An old client that only speaks HELO is told its own verb.
        "HELO" => domain_arg(rest, "501 5.5.4 Syntax: HELO hostname").map(Command::Helo),
        "MAIL" => mail(rest).map_err(|e| e.of(Verb::Mail)),
        "RCPT" => rcpt(rest).map_err(|e| e.of(Verb::Rcpt)),
        "DATA" => no_arg(rest, Command::Data),
        "RSET" => no_arg(rest, Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_arg(rest, Command::Quit),
        "VRFY" => {
            if rest.is_empty() {
                Err(SYNTAX)
            } else {
                Ok(Command::Vrfy)
            }
        }
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_arg(rest, Command::StartTls),
        "XFORWARD" => Ok(Command::Xforward(rest.to_string())),
        "BDAT" | "EXPN" | "ETRN" | "ATRN" | "TURN" | "AUTH" | "SEND" | "SOML" | "SAML" => {
            Err(NOT_IMPLEMENTED)
        }
        _ => Err(UNKNOWN),
    }
}

fn mail(rest: &str) -> Result<Command, ParseError> {
    let (path, params) = path_arg(rest, "FROM:", MAIL_SYNTAX, BAD_SENDER)?;
    // The parameters first: SMTPUTF8 among them decides whether the
    // address may be UTF-8.
    let params = mail_params(params)?;
    if !path.is_empty() {
        // (An empty path is the null reverse path.)
        check_address(&path, Verb::Mail)?;
        if !params.smtputf8 && !path.is_ascii() {
            return Err(ParseError::other(NEEDS_SMTPUTF8));
        }
    }
    Ok(Command::Mail {
        from: canonical(&path),
        params,
    })
}

fn rcpt(rest: &str) -> Result<Command, ParseError> {
    let (path, params) = path_arg(rest, "TO:", RCPT_SYNTAX, BAD_RECIPIENT)?;
    if path.is_empty() {
        return Err(BAD_RECIPIENT);
    }
    if !path.eq_ignore_ascii_case("postmaster") {
        check_address(&path, Verb::Rcpt)?;
    }
    // A UTF-8 address passes here: whether the transaction may carry it
    // (SMTPUTF8 in its MAIL) is the session's to say, with NEEDS_SMTPUTF8.
    Ok(Command::Rcpt {
        // `"bob"@example.com` is bob@example.com for the rules, the
        // duplicate check and the next hop (walkAH 3).
        to: canonical(&path),
        params: RcptParams {
            written_utf8: !path.is_ascii(),
            ..rcpt_params(params)?
        },
    })
}

/// The one form of an envelope address every later stage sees (access
/// rules, blacklist, groups, routing, queue, statistics, logs, the next
/// hop): quotes only where needed, and an internationalised domain as its
/// A-labels, lower-case (`j\u{fc}rgen@B\u{fc}cher.example` is
/// `j\u{fc}rgen@xn--bcher-kva.example`), which is the same domain under
/// RFC 6531 3.2 and valid with and without SMTPUTF8. One form, not a
/// match against both everywhere: a rule, a blacklist entry or a group
/// that missed one spelling of a domain let that spelling through
/// (walkAR F10), and one domain counted as two in the queue summary and
/// the statistics (F6). The local part stays as written.
fn canonical(path: &str) -> String {
    crate::text::a_label_mailbox(&crate::envelope::canonical_mailbox(path))
}

fn no_arg(rest: &str, cmd: Command) -> Result<Command, ParseError> {
    if rest.is_empty() {
        Ok(cmd)
    } else {
        Err(SYNTAX)
    }
}

fn domain_arg(rest: &str, syntax: &'static str) -> Result<String, ParseError> {
    let name = rest.split_whitespace().next().unwrap_or("");
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
    {
        return Err(ParseError::other(syntax));
    }
    Ok(name.to_string())
}

/// Splits "FROM:<path> params" into the path (brackets and source route
/// removed) and the parameter text.
fn path_arg<'a>(
    rest: &'a str,
    keyword: &str,
    syntax: ParseError,
    bad: ParseError,
) -> Result<(String, &'a str), ParseError> {
    // `get`, not indexing: the line is UTF-8 from the network, and the
    // keyword's length may fall inside a multi-byte character.
    let Some(rest) = rest
        .get(..keyword.len())
        .filter(|k| k.eq_ignore_ascii_case(keyword))
        .and_then(|_| rest.get(keyword.len()..))
    else {
        return Err(syntax);
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix('<') else {
        return bare_path(rest, bad);
    };
    let end = closing_bracket(rest).ok_or_else(|| bad.clone())?;
    let mut path = &rest[..end];
    let params = rest[end + 1..].trim();
    if path.len() > MAX_PATH {
        return Err(if bad == BAD_SENDER {
            SENDER_TOO_LONG
        } else {
            RECIPIENT_TOO_LONG
        });
    }
    // An obsolete source route "@a,@b:user@c" is ignored (RFC 5321 4.1.2).
    if path.starts_with('@') {
        path = path
            .split_once(':')
            .map(|(_, p)| p)
            .ok_or_else(|| bad.clone())?;
    }
    Ok((path.to_string(), params))
}

/// A path without angle brackets, `MAIL FROM:alice@example.com SIZE=10`,
/// as Postfix takes it by default (`strict_rfc821_envelopes = no`): old
/// scanners, printers and scripts send it. Only the plain address form,
/// up to the first space: no brackets, quotes or source route in it.
fn bare_path(rest: &str, bad: ParseError) -> Result<(String, &str), ParseError> {
    let (path, params) = rest.split_once(' ').unwrap_or((rest, ""));
    if path.is_empty()
        || path.starts_with('@')
        || path.contains(['<', '>', '"'])
        || path.len() > MAX_PATH
    {
        return Err(bad);
    }
    Ok((path.to_string(), params.trim()))
}

/// Index of the '>' that closes the path, skipping quoted strings.
/// The address a MAIL or RCPT line names, as written, for the log line
/// of a refusal the parser gave: no address was taken from such a line,
/// yet the postmaster asked about it must find it (walkAR F5; Postfix's
/// reject lines name it too). Octets that are not UTF-8 become U+FFFD;
/// control, bidi and invisible characters are escaped by the log writer,
/// as in every field. At most MAX_PATH characters.
pub fn written_path(line: &[u8]) -> String {
    let line = String::from_utf8_lossy(line);
    let rest = line.split_once(':').map_or("", |(_, r)| r.trim_start());
    let path = match rest.strip_prefix('<') {
        Some(r) => closing_bracket(r).map_or(r, |end| &r[..end]),
        None => rest.split(' ').next().unwrap_or(rest),
    };
    path.chars().take(MAX_PATH).collect()
}

fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// An address: a local part (dot-atom or quoted) @ a domain or literal,
/// as [`crate::text::check_utf8_mailbox`] (shared with the admin commands'
/// `--to`) has it: UTF-8 allowed (whether this transaction may use it is
/// checked by the caller), control characters and octets that were not
/// UTF-8 not, with or without SMTPUTF8.
/// A domain that IDNA would change, or cannot take, gets its own 553
/// (`RCPT_IDN_NOT_CANONICAL`, ...), not the 501 of a syntax error.
fn check_address(path: &str, verb: Verb) -> Result<(), ParseError> {
    use crate::text::MailboxError;
    let mail = verb == Verb::Mail;
    match crate::text::check_utf8_mailbox(path) {
        Ok(()) => Ok(()),
        Err(MailboxError::Malformed | MailboxError::NotAscii) => Err(MALFORMED),
        Err(MailboxError::IdnNotCanonical { .. }) if mail => Err(MAIL_IDN_NOT_CANONICAL),
        Err(MailboxError::IdnNotCanonical { .. }) => Err(RCPT_IDN_NOT_CANONICAL),
        Err(MailboxError::BadIdn(_) | MailboxError::IdnDisallowed(..)) if mail => Err(MAIL_BAD_IDN),
        Err(MailboxError::BadIdn(_) | MailboxError::IdnDisallowed(..)) => Err(RCPT_BAD_IDN),
        Err(_) if mail => Err(BAD_SENDER),
        Err(_) => Err(BAD_RECIPIENT),
    }
}

fn params_iter(text: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    text.split_whitespace().map(|p| match p.split_once('=') {
        Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
        None => (p.to_ascii_uppercase(), None),
    })
}

const DUPLICATE_PARAM: ParseError = ParseError::other("501 5.5.4 Duplicate parameter");

/// Refuses a parameter given twice (RFC 5321 4.1.2 has no meaning for it;
/// which of two SIZEs should count?).
fn once(seen: &mut Vec<String>, key: &str) -> Result<(), ParseError> {
    if seen.iter().any(|k| k == key) {
        return Err(DUPLICATE_PARAM);
    }
    seen.push(key.to_string());
    Ok(())
}

/// SIZE's value: digits only. A number too big for 64 bits is still a size
/// (a huge one, refused as too big), not a syntax error.
fn size_value(v: &str) -> Result<u64, ParseError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_PARAM);
    }
    Ok(v.parse().unwrap_or(u64::MAX))
}

fn mail_params(text: &str) -> Result<MailParams, ParseError> {
    let mut out = MailParams::default();
    let mut seen = Vec::new();
    for (key, value) in params_iter(text) {
        once(&mut seen, &key)?;
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => out.size = Some(size_value(v)?),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => out.eight_bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => out.eight_bit = false,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => out.ret = Some(Ret::Full),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => out.ret = Some(Ret::Hdrs),
            // RFC 3461 4.4: 1*100xchar (walkAH 10: an empty one was taken).
            ("ENVID", Some(v)) if !v.is_empty() && v.len() <= 100 => {
                let envid = xtext_decode(v).ok_or(BAD_PARAM)?;
                // RFC 3461 4.4: printable (graphic) US-ASCII once decoded;
                // `a+0Db` was taken and kept a CR (walkAU F4).
                if !envid.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(BAD_ENVID);
                }
                out.envid = Some(envid)
            }
            // RFC 6531. Also with an ASCII envelope: Postfix's before-queue
            // proxy passes on what its own client sent, and a UTF-8 header
            // needs it as much as a UTF-8 address does.
            ("SMTPUTF8", None) => out.smtputf8 = true,
            _ => return Err(BAD_PARAM),
        }
    }
    Ok(out)
}

fn rcpt_params(text: &str) -> Result<RcptParams, ParseError> {
    let mut out = RcptParams::default();
    let mut seen = Vec::new();
    for (key, value) in params_iter(text) {
        once(&mut seen, &key)?;
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => out.notify = Some(Notify::parse(v).ok_or(BAD_PARAM)?),
            ("ORCPT", Some(v)) if v.contains(';') && v.len() <= 500 => {
                match xtext_decode(v) {
                    Some(decoded) if !orcpt_controls(&decoded) => {}
                    Some(_) => return Err(BAD_ORCPT),
                    None if is_utf8_orcpt(v) && !orcpt_controls(v) => {}
                    None if is_utf8_orcpt(v) => return Err(BAD_ORCPT),
                    None => return Err(BAD_PARAM),
                }
                out.orcpt = Some(v.to_string());
            }
            _ => return Err(BAD_PARAM),
        }
    }
    Ok(out)
}

// RFC 3461 4.2 and 4.4 (walkAU F4): ENVID and ORCPT whose xtext decodes
// to control characters (CR, LF, NUL) are refused, naming the parameter,
// as Postfix does; the DSN writer made them spaces, but they were kept and
// would go on to a DSN-capable hop.
const BAD_ENVID: ParseError = ParseError::other("501 5.5.4 Bad ENVID parameter syntax");
const BAD_ORCPT: ParseError = ParseError::other("501 5.5.4 Bad ORCPT parameter syntax");

/// Whether a decoded ORCPT holds control characters: xtext `+0D`, or,
/// in an address of type utf-8 (RFC 6533 3), `\x{D}`. UTF-8 is allowed
/// there, controls are not.
fn orcpt_controls(decoded: &str) -> bool {
    if decoded.chars().any(char::is_control) {
        return true;
    }
    let Some((kind, address)) = decoded.split_once(';') else {
        return false;
    };
    kind.eq_ignore_ascii_case("utf-8")
        && address.split("\\x{").skip(1).any(|after| {
            after
                .split_once('}')
                .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok())
                .and_then(char::from_u32)
                .is_none_or(char::is_control)
        })
}

/// RFC 6533 3: under SMTPUTF8 an ORCPT of type utf-8 may hold its
/// address as utf-8-addr-unitext, UTF-8 characters as they are. Taken when
/// the value has no control characters, `+` only as xtext and no `=`; kept
/// as given (delivery writes it as ASCII for a hop without SMTPUTF8).
fn is_utf8_orcpt(v: &str) -> bool {
    let Some((kind, address)) = v.split_once(';') else {
        return false;
    };
    kind.eq_ignore_ascii_case("utf-8")
        && !address.is_empty()
        && !address.contains('=')
        && !address.chars().any(|c| {
            c.is_control()
                || c == char::REPLACEMENT_CHARACTER
                || crate::ops::syslog::is_escaped_format(c)
        })
        && address.split('+').skip(1).all(|after| {
            after.len() >= 2 && after.as_bytes()[..2].iter().all(|b| b.is_ascii_hexdigit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envid_and_orcpt_decoding_to_control_characters_are_refused() {
        let reply = |line: &str| parse(line.as_bytes()).err().map(|e| e.reply);
        assert_eq!(
            reply("MAIL FROM:<a@sender.test> ENVID=a+0Ab"),
            Some(BAD_ENVID.reply)
        );
        assert_eq!(
            reply("MAIL FROM:<a@sender.test> ENVID=a+00b"),
            Some(BAD_ENVID.reply)
        );
        assert_eq!(
            reply("MAIL FROM:<a@sender.test> ENVID=a+20b"),
            Some(BAD_ENVID.reply)
        );
        assert_eq!(reply("MAIL FROM:<a@sender.test> ENVID=QQ+2B1"), None);
        for bad in [
            "rfc822;x+0D+0ASubject:+20pwned@example.com",
            "rfc822;x+00@example.com",
            "utf-8;x\\x{0D}\\x{0A}Subject:@example.com",
            "utf-8;x\\x{7F}@example.com",
            "utf-8;j\u{fc}\\x{0A}rgen@example.com",
        ] {
            assert_eq!(
                reply(&format!("RCPT TO:<bob@example.com> ORCPT={bad}")),
                Some(BAD_ORCPT.reply),
                "{bad}"
            );
        }
        for good in [
            "rfc822;bob@example.com",
            "rfc822;b+2Bob@example.com",
            "utf-8;j\\x{FC}rgen@example.com",
        ] {
            assert_eq!(
                reply(&format!("RCPT TO:<bob@example.com> ORCPT={good}")),
                None,
                "{good}"
            );
        }
    }

    #[test]
    fn a_refused_line_names_the_address_as_written() {
        // What a refusal's log line names: the path between the brackets,
        // with its parameters left out, non-UTF-8 octets as U+FFFD.
        assert_eq!(
            written_path(b"MAIL FROM:<j\xfcrgen@x.example> SMTPUTF8"),
            "j\u{FFFD}rgen@x.example"
        );
        assert_eq!(
            written_path("RCPT TO:<kaputt@\u{85}x.example>".as_bytes()),
            "kaputt@\u{85}x.example"
        );
        assert_eq!(
            written_path(b"RCPT TO: bare@x.example NOTIFY=NEVER"),
            "bare@x.example"
        );
        assert_eq!(
            written_path(b"MAIL FROM:<\"a>b\"@x.example>"),
            "\"a>b\"@x.example"
        );
        assert_eq!(written_path(b"MAIL FROM"), "");
        let long = format!("RCPT TO:<{}@x.example>", "a".repeat(400));
        assert_eq!(written_path(long.as_bytes()).chars().count(), MAX_PATH);
    }

    #[test]
    fn table_of_commands() {
        let cases: &[(&str, Result<Command, &str>)] = &[
            ("EHLO client.test", Ok(Command::Ehlo("client.test".into()))),
            ("helo [127.0.0.1]", Ok(Command::Helo("[127.0.0.1]".into()))),
            ("EHLO", Err("501 5.5.4 Syntax: EHLO hostname")),
            ("HELO", Err("501 5.5.4 Syntax: HELO hostname")),
            ("DATA", Ok(Command::Data)),
            ("DATA now", Err(SYNTAX.reply)),
            ("NOOP anything", Ok(Command::Noop)),
            ("FROB", Err(UNKNOWN.reply)),
            ("BDAT 10 LAST", Err(NOT_IMPLEMENTED.reply)),
            ("expn staff", Err(NOT_IMPLEMENTED.reply)),
            ("MAIL TO:<a@b>", Err(MAIL_SYNTAX.reply)),
            ("MAIL FROM:a-without-domain", Err(BAD_SENDER.reply)),
            ("MAIL FROM:", Err(BAD_SENDER.reply)),
            ("MAIL FROM:\"a b\"@c", Err(BAD_SENDER.reply)),
            ("MAIL FROM:<a@b", Err(BAD_SENDER.reply)),
            (
                "RCPT TO:@relay.test:u@example.com",
                Err(BAD_RECIPIENT.reply),
            ),
            ("RCPT TO:u@example.com>", Err(BAD_RECIPIENT.reply)),
            ("MAIL FROM:<a b@c>", Err(BAD_SENDER.reply)),
            ("RCPT TO:<>", Err(BAD_RECIPIENT.reply)),
            ("RCPT FROM:<a@b>", Err(RCPT_SYNTAX.reply)),
            ("RCPT TO:<\"x<y>\"@example.com>", Err(BAD_RECIPIENT.reply)),
            ("MAIL FROM:<a@b> FROB=1", Err(BAD_PARAM.reply)),
            ("MAIL FROM:<a@b> SIZE=big", Err(BAD_PARAM.reply)),
            ("RCPT TO:<x@y> NOTIFY=NEVER,DELAY", Err(BAD_PARAM.reply)),
            ("MAIL FROM:<a@b> SIZE=", Err(BAD_PARAM.reply)),
            ("MAIL FROM:<a@b> SIZE=-1", Err(BAD_PARAM.reply)),
            ("MAIL FROM:<a@b> SIZE=1 SIZE=2", Err(DUPLICATE_PARAM.reply)),
            ("MAIL FROM:<a@b> ENVID=", Err(BAD_PARAM.reply)),
            // A multi-byte character where "FROM:" would end (found by the
            // smtp_command fuzz target: a panic before).
            ("MAIL \0\0\0\u{fa23}c..oFROM:<a@b>", Err(MAIL_SYNTAX.reply)),
            ("RCPT T\u{e9}:<a@b>", Err(RCPT_SYNTAX.reply)),
            (
                "MAIL FROM:<a@b> BODY=7BIT body=8BITMIME",
                Err(DUPLICATE_PARAM.reply),
            ),
            (
                "RCPT TO:<x@y> NOTIFY=NEVER NOTIFY=SUCCESS",
                Err(DUPLICATE_PARAM.reply),
            ),
        ];
        for (line, want) in cases {
            let got = parse(line.as_bytes()).map_err(|e| e.reply);
            assert_eq!(&got, want, "{line}");
        }
    }

    #[test]
    fn a_refused_mail_or_rcpt_says_which_it_was() {
        // The session counts these as a refused transaction or recipient;
        // any other bad line is a protocol error.
        let cases = [
            ("MAIL FROM:a", Verb::Mail),
            ("MAIL FROM:<a@b> SIZE=big", Verb::Mail),
            ("MAIL TO:<a@b>", Verb::Mail),
            ("MAIL FROM:<caf\u{e9}@b>", Verb::Mail),
            ("RCPT TO:<>", Verb::Rcpt),
            ("RCPT TO:<x@y> NOTIFY=BAD", Verb::Rcpt),
            ("FROB", Verb::Other),
            ("DATA now", Verb::Other),
            ("EHLO", Verb::Other),
        ];
        for (line, want) in cases {
            let got = parse(line.as_bytes()).map_err(|e| e.verb);
            assert_eq!(got, Err(want), "{line}");
        }
    }

    #[test]
    fn mail_with_every_parameter() {
        let cmd =
            parse(b"MAIL FROM: <a@example.com> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1")
                .unwrap();
        assert_eq!(
            cmd,
            Command::Mail {
                from: "a@example.com".into(),
                params: MailParams {
                    size: Some(1000),
                    eight_bit: true,
                    ret: Some(Ret::Hdrs),
                    envid: Some("QQ+1".into()),
                    smtputf8: false,
                }
            }
        );
        assert_eq!(
            parse(b"MAIL FROM:<>").unwrap(),
            Command::Mail {
                from: String::new(),
                params: MailParams::default()
            }
        );
    }

    #[test]
    fn smtputf8_allows_utf8_in_mail_and_is_taken_with_an_ascii_envelope() {
        // Postfix's before-queue proxy forwards the flag its client gave.
        let mail = |line: &str| match parse(line.as_bytes()) {
            Ok(Command::Mail { from, params }) => Ok((from, params.smtputf8, params.eight_bit)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.reply),
        };
        assert_eq!(
            mail("MAIL FROM:<alice@sender.test> SMTPUTF8"),
            Ok(("alice@sender.test".into(), true, false))
        );
        assert_eq!(
            mail("MAIL FROM:<j\u{fc}rgen@b\u{fc}cher.example> BODY=8BITMIME smtputf8"),
            Ok(("j\u{fc}rgen@xn--bcher-kva.example".into(), true, true))
        );
        assert_eq!(
            mail("MAIL FROM:<\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{6d4b}\u{8bd5}> SMTPUTF8"),
            Ok((
                "\u{7528}\u{6237}@xn--fsqu00a.xn--0zwm56d".into(),
                true,
                false
            ))
        );
        assert_eq!(
            mail("MAIL FROM:<> SMTPUTF8"),
            Ok((String::new(), true, false))
        );
        // RFC 6531 3.4: without the parameter, a non-ASCII address is
        // refused, and the reply says what was missing.
        assert_eq!(
            mail("MAIL FROM:<j\u{fc}rgen@sender.test>"),
            Err(NEEDS_SMTPUTF8)
        );
        assert!(NEEDS_SMTPUTF8.starts_with("553 5.6.7 ") && NEEDS_SMTPUTF8.contains("SMTPUTF8"));
        // Control characters stay refused with it.
        assert_eq!(
            mail("MAIL FROM:<j\u{85}rgen@sender.test> SMTPUTF8"),
            Err(MALFORMED.reply)
        );
        assert_eq!(mail("MAIL FROM:<a@b> SMTPUTF8=yes"), Err(BAD_PARAM.reply));
        // The limit counts octets: 130 two-octet characters are 260.
        let long = format!("{}@b\u{fc}cher.example", "\u{fc}".repeat(130));
        assert_eq!(
            mail(&format!("MAIL FROM:<{long}> SMTPUTF8")),
            Err(SENDER_TOO_LONG.reply)
        );
        let local = format!("{}@example.com", "\u{fc}".repeat(33));
        assert_eq!(
            mail(&format!("MAIL FROM:<{local}> SMTPUTF8")),
            Err(BAD_SENDER.reply)
        );
    }

    #[test]
    fn a_utf8_recipient_is_parsed_for_the_session_to_judge() {
        let rcpt = |line: &str| match parse(line.as_bytes()) {
            Ok(Command::Rcpt { to, params }) => Ok((to, params.orcpt)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.reply),
        };
        assert_eq!(
            rcpt("RCPT TO:<\u{3b4}\u{3bf}\u{3ba}@b\u{fc}cher.example>"),
            Ok(("\u{3b4}\u{3bf}\u{3ba}@xn--bcher-kva.example".into(), None))
        );
        // RFC 6533 3: an ORCPT of type utf-8 may carry the address as it is.
        assert_eq!(
            rcpt("RCPT TO:<j\u{fc}rgen@example.com> ORCPT=utf-8;j\u{fc}rgen@example.com"),
            Ok((
                "j\u{fc}rgen@example.com".into(),
                Some("utf-8;j\u{fc}rgen@example.com".into())
            ))
        );
        assert_eq!(
            rcpt("RCPT TO:<j\u{fc}rgen@example.com> ORCPT=rfc822;j\u{fc}rgen@example.com"),
            Err(BAD_PARAM.reply)
        );
        assert_eq!(
            rcpt("RCPT TO:<a@example.com> ORCPT=utf-8;a+4@example.com"),
            Err(BAD_PARAM.reply)
        );
        assert_eq!(rcpt("RCPT TO:<a\u{9f}@example.com>"), Err(MALFORMED.reply));
    }

    #[test]
    fn an_octet_that_is_not_utf8_in_an_address_is_malformed_with_or_without_smtputf8() {
        for line in [
            b"MAIL FROM:<a\xe9@b.test>".as_slice(),
            b"MAIL FROM:<a@b\xe9.test>",
            b"MAIL FROM:<a\xe9@b.test> SMTPUTF8",
            b"RCPT TO:<bob\xe9@example.com>",
            b"MAIL FROM:<a\0@b.test> SMTPUTF8",
        ] {
            let got = parse(line).map_err(|e| (e.reply, e.verb));
            assert!(
                matches!(got, Err((r, Verb::Mail | Verb::Rcpt)) if r == MALFORMED.reply),
                "{line:?}: {got:?}"
            );
        }
        assert_eq!(
            parse(b"EHLO x\xe9\xff.test").map_err(|e| e.reply),
            Err("501 5.5.4 Syntax: EHLO hostname")
        );
    }

    #[test]
    fn a_plain_address_without_brackets_is_taken_as_postfix_takes_it() {
        assert_eq!(
            parse(b"MAIL FROM:alice@sender.test SIZE=10 BODY=8BITMIME").unwrap(),
            Command::Mail {
                from: "alice@sender.test".into(),
                params: MailParams {
                    size: Some(10),
                    eight_bit: true,
                    ..MailParams::default()
                }
            }
        );
        assert_eq!(
            parse(b"RCPT TO: bob@example.com NOTIFY=NEVER").map(|c| match c {
                Command::Rcpt { to, .. } => to,
                _ => String::new(),
            }),
            Ok("bob@example.com".to_string())
        );
        assert!(parse(b"RCPT TO:postmaster").is_ok());
    }

    #[test]
    fn a_size_beyond_64_bits_is_a_huge_size_not_a_syntax_error() {
        let Command::Mail { params, .. } =
            parse(b"MAIL FROM:<a@b> SIZE=99999999999999999999").unwrap()
        else {
            panic!("not mail");
        };
        assert_eq!(params.size, Some(u64::MAX));
    }

    #[test]
    fn rcpt_with_dsn_parameters_and_source_route() {
        let cmd = parse(b"RCPT TO:<@relay.test:u@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@example.com").unwrap();
        let Command::Rcpt { to, params } = cmd else {
            panic!("not rcpt");
        };
        assert_eq!(to, "u@example.com");
        assert!(params
            .notify
            .is_some_and(|n| n.success && n.failure && !n.delay));
        assert_eq!(params.orcpt.as_deref(), Some("rfc822;u@example.com"));
        assert!(parse(b"RCPT TO:<Postmaster>").is_ok());
    }

    #[test]
    fn a_path_too_long_gets_the_code_of_its_verb() {
        let long = format!("{}@example.com", "a".repeat(300));
        assert_eq!(
            parse(format!("MAIL FROM:<{long}>").as_bytes()).map_err(|e| e.reply),
            Err("501 5.1.7 Path too long")
        );
        assert_eq!(
            parse(format!("RCPT TO:<{long}>").as_bytes()).map_err(|e| e.reply),
            Err("501 5.1.3 Path too long")
        );
    }

    #[test]
    fn an_idn_domain_comes_out_as_its_a_label_and_a_mapped_one_is_refused() {
        let parsed = |line: &str| match parse(line.as_bytes()) {
            Ok(Command::Rcpt { to, params }) => Ok((to, params.written_utf8)),
            Ok(Command::Mail { from, .. }) => Ok((from, false)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.reply),
        };
        // One form for the rules, the blacklist, the groups, the queue and
        // the next hop (walkAR F10, F6).
        assert_eq!(
            parsed("RCPT TO:<j\u{fc}rgen@B\u{fc}cher.example>"),
            Ok(("j\u{fc}rgen@xn--bcher-kva.example".into(), true))
        );
        assert_eq!(
            parsed("RCPT TO:<m@XN--MNCHEN-3YA.test>"),
            Ok(("m@xn--mnchen-3ya.test".into(), false))
        );
        assert_eq!(
            parsed("MAIL FROM:<x@m\u{fc}nchen.test> SMTPUTF8"),
            Ok(("x@xn--mnchen-3ya.test".into(), false))
        );
        assert_eq!(
            parsed("RCPT TO:<bob@Example.COM>"),
            Ok(("bob@Example.COM".into(), false))
        );
        for hidden in [
            "a@n\u{200B}ou.example",
            "a@nou\u{AD}.example",
            "a@\u{FF4E}ou.example",
            "a@nou\u{3002}example",
        ] {
            assert_eq!(
                parsed(&format!("RCPT TO:<{hidden}>")),
                Err(RCPT_IDN_NOT_CANONICAL.reply),
                "{hidden:?}"
            );
        }
        assert_eq!(
            parsed("MAIL FROM:<bl2@spam\u{AD}mer.example> SMTPUTF8"),
            Err(MAIL_IDN_NOT_CANONICAL.reply)
        );
        assert_eq!(
            parsed("RCPT TO:<zz@xn--zz.example>"),
            Err(RCPT_BAD_IDN.reply)
        );
        assert_eq!(
            parsed("MAIL FROM:<e@\u{1F600}.example> SMTPUTF8"),
            Err(MAIL_BAD_IDN.reply)
        );
        assert!(RCPT_IDN_NOT_CANONICAL.reply.starts_with("553 5.1.2 "));
        assert!(MAIL_IDN_NOT_CANONICAL.reply.starts_with("553 5.1.8 "));
        // The local part: invisible characters as bidi controls.
        assert_eq!(
            parsed("RCPT TO:<a\u{FEFF}b@example.com>"),
            Err(MALFORMED.reply)
        );
    }

    #[test]
    fn quoted_local_parts_come_out_canonical() {
        let to = |line: &[u8]| match parse(line) {
            Ok(Command::Rcpt { to, .. }) => to,
            other => format!("{other:?}"),
        };
        assert_eq!(
            to(b"RCPT TO:<\"blocked\"@example.com>"),
            "blocked@example.com"
        );
        assert_eq!(
            to(b"RCPT TO:<\"blo\\cked\"@example.com>"),
            "blocked@example.com"
        );
        assert_eq!(to(b"RCPT TO:<\"a b\"@example.com>"), "\"a b\"@example.com");
        let Ok(Command::Mail { from, .. }) = parse(b"MAIL FROM:<\"x\"@spammer.test>") else {
            panic!("not mail");
        };
        assert_eq!(from, "x@spammer.test");
    }
}
