//! The text of a message as the spam tests read it, gathered once: the body
//! (text parts, and HTML parts turned into text), the HTML tag names, and
//! the URLs, each with a bound so that hostile mail (5 MB on one line,
//! 100,000 URLs, HTML nested a million deep) costs a bounded time.
//!
//! URLs are kept in the order the message shows them (first seen first),
//! so that the URI lists, which ask about the first links only, ask about
//! the ones a reader sees first rather than those whose names sort first
//! (which a spammer would choose). In HTML, character references are
//! decoded first (`http://&#101;vil.example/` is `http://evil.example/`
//! to every reader of the message) and a scheme-relative link
//! (`href="//evil.example/"`) is taken as `http:`.

use crate::text::cut;
use mail_parser::{Message, PartType};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

/// Body text kept at most (the tests and the tokens read the start).
const MAX_BODY: usize = 256 * 1024;
/// URLs kept at most (distinct).
pub const MAX_URLS: usize = 500;
/// HTML scanned for tags and URLs at most, per part.
const MAX_HTML: usize = 512 * 1024;

/// One URL found in the message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    /// Lower-case host name or address, without port or credentials, as
    /// written (percent-escapes kept: `URI_HEX_HOST` looks for them).
    pub host: String,
    /// The path and query, as written.
    pub path: String,
}

impl Url {
    /// The host as a browser resolves it: percent-escapes decoded
    /// (`%65vil.example` is `evil.example`, as the WHATWG URL parser
    /// decodes a host), lower case. The host as written when the escapes
    /// do not decode to text.
    pub fn dns_host(&self) -> Cow<'_, str> {
        if !self.host.contains('%') {
            return Cow::Borrowed(&self.host);
        }
        let bytes = self.host.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        match String::from_utf8(out) {
            Ok(host) => Cow::Owned(host.to_lowercase()),
            Err(_) => Cow::Borrowed(&self.host),
        }
    }
}

#[derive(Debug, Default)]
pub struct Text {
    /// The readable text of the body parts, joined.
    pub body: String,
    /// Bytes of HTML in the HTML parts.
    pub html_bytes: usize,
    /// Bytes of text in the plain-text parts.
    pub plain_bytes: usize,
    /// Distinct tag names seen in the HTML parts (lower case).
    pub html_tags: BTreeSet<String>,
    /// Distinct URLs (at most [`MAX_URLS`]), in the order the message
    /// shows them: the text parts and the HTML parts in their order, each
    /// from its start.
    pub urls: Vec<Url>,
    /// The URLs of `urls`, to keep them distinct.
    seen: HashSet<Url>,
    /// More URLs were present than kept.
    pub urls_cut: bool,
    /// Parts that are images.
    pub images: usize,
}

/// Gathers the text of `message` (the pipeline's parse).
pub fn gather(message: Option<&Message<'_>>) -> Text {
    let mut t = Text::default();
    let Some(m) = message else {
        return t;
    };
    for part in &m.parts {
        match &part.body {
            // A calendar invite or a contact card is data, not prose: its
            // capitals (`BEGIN:VCALENDAR`, `DTSTART`) made `BODY_SHOUTING`
            // and its keywords tokens (walkAL 6). Its links are still
            // links (calendar spam is a thing).
            PartType::Text(s) if is_data_text(part) => urls(&mut t, s, TEXT_STARTS),
            PartType::Text(s) => {
                t.plain_bytes += s.len();
                urls(&mut t, s, TEXT_STARTS);
                push(&mut t.body, s);
            }
            PartType::Html(s) => {
                t.html_bytes += s.len();
                let html = cut(s, MAX_HTML);
                tags(&mut t, html);
                urls(&mut t, &decode_references(html), HTML_STARTS);
                push(
                    &mut t.body,
                    &mail_parser::decoders::html::html_to_text(html),
                );
            }
            _ => {
                if mail_parser::MimeHeaders::content_type(part)
                    .is_some_and(|c| c.ctype().eq_ignore_ascii_case("image"))
                {
                    t.images += 1;
                }
            }
        }
    }
    t
}

/// Text subtypes that are data formats rather than anything a person
/// wrote: calendars, contact cards, tables.
const DATA_TEXT: &[&str] = &[
    "calendar",
    "x-vcalendar",
    "vcard",
    "x-vcard",
    "directory",
    "csv",
    "tab-separated-values",
];

/// Whether `part` is a `text/*` part in a data format ([`DATA_TEXT`]).
pub fn is_data_text(part: &mail_parser::MessagePart<'_>) -> bool {
    mail_parser::MimeHeaders::content_type(part)
        .and_then(|c| c.subtype())
        .is_some_and(|s| DATA_TEXT.iter().any(|d| s.eq_ignore_ascii_case(d)))
}

fn push(body: &mut String, s: &str) {
    if body.len() >= MAX_BODY {
        return;
    }
    let room = MAX_BODY - body.len();
    body.push_str(cut(s, room));
    body.push('\n');
}

/// Tag names of an HTML text: `<font ...>` gives `font`.
fn tags(t: &mut Text, html: &str) {
    for piece in html.split('<').skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        if !name.is_empty() && t.html_tags.len() < 200 {
            t.html_tags.insert(name.to_ascii_lowercase());
        }
    }
}

/// URLs with a scheme (`http://`, `https://`), starting `www.`, or, in
/// HTML, an attribute value starting `//` (`starts`).
fn urls(t: &mut Text, s: &str, starts: &'static [(&'static str, usize)]) {
    let s = cut(s, MAX_HTML);
    let lower = s.to_ascii_lowercase();
    let mut starts = Starts::new(starts);
    let mut at = 0;
    while let Some((start, skip)) = starts.next(&lower, at) {
        let rest = &s[start + skip..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "\"'<>()[]{}\\^`|".contains(c))
            .unwrap_or(rest.len());
        // Past this URL (at least one whole character).
        at = start + skip + end.max(rest.chars().next().map_or(1, char::len_utf8));
        let url = rest[..end].trim_end_matches(|c: char| ".,;:!?".contains(c));
        let (authority, path) = match url.find(['/', '?', '#']) {
            Some(p) => (&url[..p], &url[p..]),
            None => (url, ""),
        };
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = host.split(':').next().unwrap_or(host).trim_end_matches('.');
        if host.len() < 4 || !host.contains('.') {
            continue;
        }
        let url = Url {
            host: host.to_ascii_lowercase(),
            path: cut(path, 200).to_string(),
        };
        if t.seen.contains(&url) {
            continue;
        }
        if t.urls.len() >= MAX_URLS {
            t.urls_cut = true;
            break;
        }
        t.seen.insert(url.clone());
        t.urls.push(url);
    }
}

/// What starts a URL in text, and how much of it is the scheme to skip.
const TEXT_STARTS: &[(&str, usize)] = &[("http://", 7), ("https://", 8), ("www.", 0)];

/// What starts a URL in HTML (character references decoded): as in text,
/// and a scheme-relative link, an attribute value starting `//`, which a
/// browser opens with the page's scheme (http or https: the host is the
/// same either way).
const HTML_STARTS: &[(&str, usize)] = &[
    ("http://", 7),
    ("https://", 8),
    ("www.", 0),
    ("=\"//", 4),
    ("='//", 4),
    ("=//", 3),
];

/// Where each pattern occurs next, remembered between calls: a pattern is
/// searched again only once the scan has passed its last hit, so finding
/// every URL is linear in the text however many there are.
struct Starts {
    patterns: &'static [(&'static str, usize)],
    /// Per pattern: None = not searched yet, Some(None) = no more.
    next: Vec<Option<Option<usize>>>,
}

impl Starts {
    fn new(patterns: &'static [(&'static str, usize)]) -> Starts {
        Starts {
            patterns,
            next: vec![None; patterns.len()],
        }
    }

    /// The next URL start at or after `from` in `lower`: (index, length
    /// of the scheme to skip).
    fn next(&mut self, lower: &str, from: usize) -> Option<(usize, usize)> {
        let hay = lower.get(from..)?;
        let mut best: Option<(usize, usize)> = None;
        for (k, (pattern, skip)) in self.patterns.iter().enumerate() {
            let pos = match self.next[k] {
                Some(Some(p)) if p >= from => Some(p),
                Some(None) => None,
                _ => hay.find(pattern).map(|i| from + i),
            };
            self.next[k] = Some(pos);
            if let Some(p) = pos {
                if best.is_none_or(|(b, _)| p < b) {
                    best = Some((p, *skip));
                }
            }
        }
        best
    }
}

/// The longest named character reference decoded, in letters.
const MAX_NAME: usize = 8;

/// `html` with its character references decoded: numeric ones (`&#101;`,
/// `&#x65;`, the `;` optional as browsers take them) and the named ones
/// that stand for ASCII a link could be written with (`&period;`,
/// `&sol;`, `&amp;` ...). Others are left as written: they cannot spell a
/// host name, and this text only serves to find links.
pub fn decode_references(html: &str) -> Cow<'_, str> {
    if !html.contains('&') {
        return Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match reference(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The character of the reference at the start of `s` (just after its
/// `&`) and how many bytes of `s` it takes, or None when none starts there.
fn reference(s: &str) -> Option<(char, usize)> {
    if let Some(num) = s.strip_prefix('#') {
        let (radix, digits_at) = match num.as_bytes().first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = s[digits_at..]
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit() && (radix == 16 || b.is_ascii_digit()))
            .count();
        if digits == 0 {
            return None;
        }
        let end = digits_at + digits;
        // Leading zeros aside, more digits than U+10FFFF has are no
        // character (and would overflow).
        let value = u32::from_str_radix(s[digits_at..end].trim_start_matches('0'), radix)
            .ok()
            .or_else(|| s[digits_at..end].bytes().all(|b| b == b'0').then_some(0));
        let c = value
            .and_then(char::from_u32)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{fffd}');
        let used = end + usize::from(s[end..].starts_with(';'));
        return Some((c, used));
    }
    let name_len = s
        .bytes()
        .take(MAX_NAME + 1)
        .take_while(u8::is_ascii_alphabetic)
        .count();
    if name_len == 0 || name_len > MAX_NAME || !s[name_len..].starts_with(';') {
        return None;
    }
    let c = match &s[..name_len] {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "period" => '.',
        "colon" => ':',
        "sol" => '/',
        "bsol" => '\\',
        "percnt" => '%',
        "commat" => '@',
        "num" => '#',
        "quest" => '?',
        "equals" => '=',
        "lowbar" | "UnderBar" => '_',
        _ => return None,
    };
    Some((c, name_len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hosts_and_paths_are_found_and_bounded() {
        let mut t = Text::default();
        urls(
            &mut t,
            "see http://User@Cheap.Example.BIZ:8080/buy?now=1 and www.x.org, also http://a",
            TEXT_STARTS,
        );
        let v: Vec<_> = t
            .urls
            .iter()
            .map(|u| (u.host.as_str(), u.path.as_str()))
            .collect();
        assert_eq!(v, [("cheap.example.biz", "/buy?now=1"), ("www.x.org", "")]);
        let many: String = (0..10_000)
            .map(|i| format!("http://h{i}.example.com/ "))
            .collect();
        let mut t = Text::default();
        urls(&mut t, &many, TEXT_STARTS);
        assert_eq!(t.urls.len(), MAX_URLS);
        assert!(t.urls_cut);
    }

    /// The hosts of the links in an HTML body, in the order found.
    fn html_hosts(body: &str) -> Vec<String> {
        let raw = format!("Content-Type: text/html\r\n\r\n<html><body>{body}</body></html>\r\n");
        let message = mail_parser::MessageParser::new().parse(raw.as_bytes());
        gather(message.as_ref())
            .urls
            .iter()
            .map(|u| u.dns_host().into_owned())
            .collect()
    }

    #[test]
    fn links_are_kept_in_the_order_the_message_shows_them() {
        let mut t = Text::default();
        urls(
            &mut t,
            "first http://www.zzz.example/a then http://aaa.example/ and \
             http://www.zzz.example/a again, www.mmm.example",
            TEXT_STARTS,
        );
        let hosts: Vec<_> = t.urls.iter().map(|u| u.host.as_str()).collect();
        assert_eq!(hosts, ["www.zzz.example", "aaa.example", "www.mmm.example"]);
    }

    #[test]
    fn an_html_links_host_is_read_as_a_browser_reads_it() {
        for (link, why) in [
            (r#"<a href="http://evil.example/x">click</a>"#, "plain"),
            (
                r#"<a href="http://&#101;vil.example/x">click</a>"#,
                "decimal",
            ),
            (r#"<a href="http://ev&#x69;l.example/x">click</a>"#, "hex"),
            (r#"<a href="http://ev&#X69l.example/x">click</a>"#, "no ;"),
            (r#"<a href="http://evil&period;example/x">x</a>"#, "named"),
            (r#"<a href="http://%65vil.example/x">click</a>"#, "percent"),
            (r#"<a href="//evil.example/x">click</a>"#, "scheme-relative"),
            (r#"<a href='//evil.example/x'>click</a>"#, "single quotes"),
            (r#"<a href=//evil.example/x>click</a>"#, "unquoted"),
            (
                r#"<img src="&#104;ttp&colon;&sol;&sol;evil.example/i.png">"#,
                "scheme too",
            ),
        ] {
            assert_eq!(html_hosts(link), ["evil.example"], "{why}: {link}");
        }
        // A percent-escape stays in the host as written, where
        // URI_HEX_HOST looks for it.
        let raw = "Content-Type: text/html\r\n\r\n<a href=\"http://%65vil.example/\">x</a>\r\n";
        let message = mail_parser::MessageParser::new().parse(raw.as_bytes());
        assert_eq!(gather(message.as_ref()).urls[0].host, "%65vil.example");
        // Not references: left as written.
        assert_eq!(
            decode_references("a &unknown; &#; & b"),
            "a &unknown; &#; & b"
        );
        assert_eq!(decode_references("&#0;&#99999999999;"), "\u{fffd}\u{fffd}");
        assert_eq!(decode_references("AT&amp;T &lt;x&gt;"), "AT&T <x>");
    }
}
