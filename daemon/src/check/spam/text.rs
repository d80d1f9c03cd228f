//! The text of a message as the spam tests read it, gathered once: the body
//! (text parts, and HTML parts turned into text), the HTML tag names, and
//! the URLs, each with a bound so that hostile mail (5 MB on one line,
//! 100,000 URLs, HTML nested a million deep) costs a bounded time.

use crate::text::cut;
use mail_parser::{Message, PartType};
use std::collections::BTreeSet;

/// Body text kept at most (the tests and the tokens read the start).
const MAX_BODY: usize = 256 * 1024;
/// URLs kept at most (distinct).
pub const MAX_URLS: usize = 500;
/// HTML scanned for tags and URLs at most, per part.
const MAX_HTML: usize = 512 * 1024;

/// One URL found in the message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Url {
    /// Lower-case host name or address, without port or credentials.
    pub host: String,
    /// The path and query, as written.
    pub path: String,
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
    /// Distinct URLs (at most [`MAX_URLS`]).
    pub urls: BTreeSet<Url>,
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
            PartType::Text(s) => {
                t.plain_bytes += s.len();
                urls(&mut t, s);
                push(&mut t.body, s);
            }
            PartType::Html(s) => {
                t.html_bytes += s.len();
                let html = cut(s, MAX_HTML);
                tags(&mut t, html);
                urls(&mut t, html);
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

/// URLs with a scheme (`http://`, `https://`) or starting `www.`.
fn urls(t: &mut Text, s: &str) {
    let s = cut(s, MAX_HTML);
    let lower = s.to_ascii_lowercase();
    let mut starts = Starts::default();
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
        if t.urls.len() >= MAX_URLS {
            t.urls_cut = true;
            break;
        }
        t.urls.insert(Url {
            host: host.to_ascii_lowercase(),
            path: cut(path, 200).to_string(),
        });
    }
}

/// What starts a URL, and how much of it is the scheme to skip.
const STARTS: [(&str, usize); 3] = [("http://", 7), ("https://", 8), ("www.", 0)];

/// Where each of [`STARTS`] occurs next, remembered between calls: a
/// pattern is searched again only once the scan has passed its last hit,
/// so finding every URL is linear in the text however many there are.
#[derive(Default)]
struct Starts {
    /// Per pattern: None = not searched yet, Some(None) = no more.
    next: [Option<Option<usize>>; 3],
}

impl Starts {
    /// The next URL start at or after `from` in `lower`: (index, length
    /// of the scheme to skip).
    fn next(&mut self, lower: &str, from: usize) -> Option<(usize, usize)> {
        let hay = lower.get(from..)?;
        let mut best: Option<(usize, usize)> = None;
        for (k, (pattern, skip)) in STARTS.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hosts_and_paths_are_found_and_bounded() {
        let mut t = Text::default();
        urls(
            &mut t,
            "see http://User@Cheap.Example.BIZ:8080/buy?now=1 and www.x.org, also http://a",
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
        urls(&mut t, &many);
        assert_eq!(t.urls.len(), MAX_URLS);
        assert!(t.urls_cut);
    }
}
