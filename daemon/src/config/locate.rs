//! Where things stand in the configuration text: maps a dotted key path to
//! the line it is written on (through `toml_edit`'s spans), and a byte offset
//! back to a line and key. Only used to make messages point at the right
//! line; it never decides whether a configuration is valid.

use std::fmt;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An element of an array or array of tables.
    Index(usize),
}

/// A dotted key path such as `limits.max_hops` or `route[1].to`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The path of a top-level key or section.
    pub fn root(key: &str) -> KeyPath {
        KeyPath(vec![Seg::Key(key.to_string())])
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        KeyPath(segs)
    }

    /// This path extended by an array index.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Whether `k` can be written in TOML without quotes.
fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The configuration text with its parsed layout.
pub struct Locator {
    /// Byte offsets where each line starts.
    line_starts: Vec<usize>,
    /// The document with spans, when the text is valid TOML.
    doc: Option<ImDocument<String>>,
    /// The text, for [`Locator::key_at`] when it is not valid TOML.
    text: String,
}

/// A node of the document while walking a path.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl Locator {
    /// Indexes `text`.
    pub fn new(text: &str) -> Locator {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Locator {
            line_starts,
            doc: ImDocument::parse(text.to_string()).ok(),
            text: text.to_string(),
        }
    }

    /// The 1-based line of byte `offset`.
    pub fn line_at(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The line where `path` is written: its key (or, for an array element,
    /// the element); for a key that is not in the text, the line of the
    /// nearest enclosing table or key that is; 0 when there is none.
    pub fn line_of(&self, path: &KeyPath) -> usize {
        let Some(doc) = &self.doc else { return 0 };
        let mut node = Node::Table(doc.as_table());
        let mut best: Option<usize> = None;
        for seg in &path.0 {
            let next = match (seg, node) {
                (Seg::Key(k), Node::Table(t)) | (Seg::Key(k), Node::Item(Item::Table(t))) => {
                    t.get_key_value(k).map(|(key, item)| (key.span(), item))
                }
                (Seg::Key(k), Node::Value(Value::InlineTable(t)))
                | (Seg::Key(k), Node::Item(Item::Value(Value::InlineTable(t)))) => {
                    t.get_key_value(k).map(|(key, item)| (key.span(), item))
                }
                (Seg::Index(i), Node::Item(Item::ArrayOfTables(a))) => match a.get(*i) {
                    Some(t) => {
                        best = t.span().map(|s| s.start).or(best);
                        node = Node::Table(t);
                        continue;
                    }
                    None => None,
                },
                (Seg::Index(i), Node::Value(Value::Array(a)))
                | (Seg::Index(i), Node::Item(Item::Value(Value::Array(a)))) => match a.get(*i) {
                    Some(v) => {
                        best = v.span().map(|s| s.start).or(best);
                        node = Node::Value(v);
                        continue;
                    }
                    None => None,
                },
                _ => None,
            };
            let Some((key_span, item)) = next else { break };
            best = key_span.or_else(|| item.span()).map(|s| s.start).or(best);
            node = Node::Item(item);
        }
        best.map_or(0, |offset| self.line_at(offset))
    }

    /// The dotted key whose value contains byte `offset`, or `""`.
    pub fn key_at(&self, offset: usize) -> String {
        let Some(doc) = &self.doc else {
            return self.key_on_line(offset);
        };
        let mut found = None;
        walk_table(doc.as_table(), &KeyPath::default(), offset, &mut found);
        found.map(|p| p.to_string()).unwrap_or_default()
    }
}

impl Locator {
    /// [`Locator::key_at`] for text that is not valid TOML (a number too
    /// large, say): the `key = ...` written on the line of `offset`, under
    /// the last `[table]` header above it; `""` when the line has no key.
    /// Good for the one-line `key = value` where such errors are made.
    fn key_on_line(&self, offset: usize) -> String {
        let line = self.line_at(offset);
        let lines: Vec<&str> = self.text.lines().take(line).collect();
        let Some(here) = lines.last() else {
            return String::new();
        };
        let Some((key, _)) = here.split_once('=') else {
            return String::new();
        };
        let key = key.trim();
        let bare = |k: &str| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !bare(key) {
            return String::new();
        }
        let table = lines
            .iter()
            .rev()
            .skip(1)
            .map(|l| l.trim())
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
        match table {
            Some(t) if bare(t) => format!("{t}.{key}"),
            _ => key.to_string(),
        }
    }
}

/// Looks in `table` for the innermost entry around `offset`.
fn walk_table(table: &Table, path: &KeyPath, offset: usize, found: &mut Option<KeyPath>) {
    for (name, item) in table.iter() {
        let here = path.key(name);
        let key_start = table
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .map(|s| s.start);
        match item {
            Item::Table(t) => {
                if t.span().is_some_and(|s| s.contains(&offset)) {
                    *found = Some(here.clone());
                }
                walk_table(t, &here, offset, found)
            }
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    if t.span().is_some_and(|s| s.contains(&offset)) {
                        *found = Some(here.index(i));
                    }
                    walk_table(t, &here.index(i), offset, found);
                }
            }
            Item::Value(v) => walk_value(v, key_start, &here, offset, found),
            Item::None => {}
        }
    }
}

/// Looks in `value` (written from `start`) for the innermost key around
/// `offset`.
fn walk_value(
    value: &Value,
    start: Option<usize>,
    path: &KeyPath,
    offset: usize,
    found: &mut Option<KeyPath>,
) {
    let Some(span) = value.span() else { return };
    let begin = start.unwrap_or(span.start).min(span.start);
    if offset < begin || offset >= span.end.max(begin + 1) {
        return;
    }
    *found = Some(path.clone());
    if let Value::InlineTable(t) = value {
        for (name, v) in t.iter() {
            let key_start = t
                .get_key_value(name)
                .and_then(|(k, _)| k.span())
                .map(|s| s.start);
            walk_value(v, key_start, &path.key(name), offset, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
[server]
hostname = \"a\"

[network]
listen_on = [
  \"127.0.0.1:25\",
  \"x\",
]
limits.max_hops = 3

[[route]]
match = \"*\"
to = \"[a]\"

[[route]]
match = \"*@b\"

[policy]
subject_prefix = { \"as/spam\" = \"S\", x = 1 }

[group.managers]
block = []
";

    fn path(segs: &[&str]) -> KeyPath {
        KeyPath(
            segs.iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key(s.to_string()),
                })
                .collect(),
        )
    }

    #[test]
    fn lines_of_paths() {
        let l = Locator::new(TEXT);
        let cases: &[(&[&str], usize)] = &[
            (&["server"], 2),
            (&["server", "hostname"], 3),
            (&["server", "postmaster"], 2),
            (&["network", "listen_on"], 6),
            (&["network", "listen_on", "1"], 8),
            (&["network", "limits", "max_hops"], 10),
            (&["route", "0", "to"], 14),
            (&["route", "1"], 16),
            (&["route", "1", "to"], 16),
            (&["route", "1", "match"], 17),
            (&["policy", "subject_prefix", "x"], 20),
            (&["group", "managers", "block"], 23),
            (&["group", "managers", "senders"], 22),
            (&["timeouts", "dns"], 0),
        ];
        for (p, line) in cases {
            assert_eq!(l.line_of(&path(p)), *line, "{p:?}");
        }
        assert_eq!(path(&["route", "1", "to"]).to_string(), "route[1].to");
        assert_eq!(
            path(&["policy", "subject_prefix", "as/spam"]).to_string(),
            "policy.subject_prefix.\"as/spam\""
        );
    }

    #[test]
    fn keys_at_offsets() {
        let l = Locator::new(TEXT);
        let at = |needle: &str| TEXT.find(needle).unwrap();
        assert_eq!(l.key_at(at("\"a\"")), "server.hostname");
        assert_eq!(l.key_at(at("\"x\"")), "network.listen_on");
        assert_eq!(l.key_at(at("x = 1")), "policy.subject_prefix.x");
        assert_eq!(l.key_at(at("# comment")), "");
        assert_eq!(l.line_at(0), 1);
        assert_eq!(l.line_at(at("[server]")), 2);
    }

    #[test]
    fn keys_on_lines_of_text_that_is_not_toml() {
        let text =
            "[server]\nhostname = \"a\"\n\n[limits]\nincoming_sessions = 99999999999999999999\n";
        let l = Locator::new(text);
        let at = |needle: &str| text.find(needle).unwrap();
        assert_eq!(l.key_at(at("9999")), "limits.incoming_sessions");
        assert_eq!(l.key_at(at("[limits]")), "");
        let top = Locator::new("max = 99999999999999999999\n");
        assert_eq!(top.key_at(4), "max");
    }
}
