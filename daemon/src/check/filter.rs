//! Content filtering by attachment name and MIME type (`include_by_name`,
//! `exclude_by_name`, `include_by_mime`, `exclude_by_mime`).
//!
//! An object is filtered when its name matches an `include_by_name` glob or
//! its MIME type an `include_by_mime` glob, unless its name matches an
//! `exclude_by_name` glob or its type an `exclude_by_mime` glob: the
//! excludes always win, so `exclude_by_name = ["*.pdf"]` keeps every PDF
//! whatever its declared type. The rule reported (statistics, logs,
//! raw records) is the include that matched, as `name:GLOB` or `mime:GLOB`.
//!
//! A part may carry several names: the `Content-Disposition` `filename` and
//! the `Content-Type` `name`, each plain or in RFC 2231 form (`filename*`),
//! and clients differ in which they save under: each is matched, and a part
//! is filtered when any of its names is included and not itself excluded.
//! A hit on a name other than the one the part is shown under is reported
//! as `tool.txt (also named tool.exe)`, so that the rule and the name it
//! matched are seen together. A name is matched as written and as saved:
//! cut at its first control character, its last path element, with its
//! trailing dots and spaces taken off, as Windows saves it (`tool.exe.` is
//! saved as `tool.exe`). Each form is a name the file may be saved under,
//! so a form that an include names and no exclude matches filters it; an
//! exclude of the other form does not let it through.

use super::{Check, Context, Finding, Kind, Report, Tools};
use crate::config::{Pattern, Policy};

/// The content filter as a check: each group's rules over every object.
/// Its findings are the group's own (another group may filter nothing).
pub struct ContentFilter;

impl Check for ContentFilter {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn wanted(&self, policy: &Policy) -> bool {
        policy.check_av
    }

    fn run(&self, cx: &mut Context<'_, '_, '_>, _tools: &mut Tools<'_, '_>, report: &mut Report) {
        for p in cx.partitions.iter().filter(|p| self.wanted(&p.policy)) {
            if report.filtered.contains_key(&p.group) {
                continue;
            }
            let filters = Filters::new(&p.policy);
            // One finding per rule and place: a zip member whose two
            // headers give different methods is read both ways under one
            // name (archive.rs), and its name is one file to the reader
            // (walkBY: its line was given twice).
            let mut seen = std::collections::HashSet::new();
            let found: Vec<Finding> = cx
                .unpacked
                .objects
                .iter()
                .filter_map(|o| {
                    let names: Vec<&str> = o
                        .name
                        .iter()
                        .chain(&o.aliases)
                        .map(String::as_str)
                        .collect();
                    let (rule, by) = filters.check_named(&names, &o.mime)?;
                    let path = match by {
                        Some(i) if i > 0 || o.name.is_none() => {
                            format!("{} (also named {})", o.path, names[i])
                        }
                        _ => o.path.clone(),
                    };
                    Some(Finding::new(Kind::Filtered, rule, path, o.part))
                })
                .filter(|f| seen.insert((f.name.clone(), f.path.clone())))
                .collect();
            report.filtered.insert(p.group.clone(), found);
        }
    }
}

/// A policy's filter rules, as compiled when the configuration was loaded.
#[derive(Debug, Clone, Copy)]
pub struct Filters<'p> {
    include_name: &'p [Pattern],
    exclude_name: &'p [Pattern],
    include_mime: &'p [Pattern],
    exclude_mime: &'p [Pattern],
}

impl<'p> Filters<'p> {
    pub fn new(policy: &'p Policy) -> Filters<'p> {
        Filters {
            include_name: &policy.include_by_name,
            exclude_name: &policy.exclude_by_name,
            include_mime: &policy.include_by_mime,
            exclude_mime: &policy.exclude_by_mime,
        }
    }

    /// The rule that filters an object with these names (none, as most
    /// body parts have; or one or two, see the module) and MIME type, if
    /// any.
    #[cfg(test)]
    pub fn check(&self, names: &[&str], mime: &str) -> Option<String> {
        self.check_named(names, mime).map(|(rule, _)| rule)
    }

    /// As [`Filters::check`], with the index in `names` of the name that
    /// matched (None: the MIME type did).
    pub fn check_named(&self, names: &[&str], mime: &str) -> Option<(String, Option<usize>)> {
        let any = |list: &[Pattern], s: &str| list.iter().find(|p| p.matches(s)).cloned();
        if any(self.exclude_mime, mime).is_some() {
            return None;
        }
        let mut excluded = false;
        for (i, name) in names.iter().enumerate() {
            // Only the last path element: a member "docs/a.exe" is "a.exe".
            // The saved form is cut at the control character first, as
            // the saving API ends the name there (walkBO F1:
            // `tool.exe<NUL>/a.txt` was taken as `a.txt`).
            let base = last_element(name);
            let saved = saved_name(last_element(cut_at_control(name)));
            // The last element as Windows saves it, not cut: without it
            // `a.txt<NUL>/run.bat.` passed `*.bat` (walkBS S1, a
            // regression of the walkBO F1 fix).
            let trimmed = saved_name(base);
            // Each form may be the name the file is saved under: one that
            // an include names and no exclude lets through filters it. An
            // exclude that matched another form let `tool.exe<NUL>.pdf`
            // through `exclude_by_name = ["*.pdf"]` (walkBR N1).
            for form in [base, trimmed, saved] {
                if any(self.exclude_name, form).is_some() {
                    excluded = true;
                } else if let Some(p) = any(self.include_name, form) {
                    return Some((format!("name:{p}"), Some(i)));
                }
            }
        }
        if excluded {
            return None;
        }
        any(self.include_mime, mime).map(|p| (format!("mime:{p}"), None))
    }
}

/// A file name as Windows saves it: trailing dots and spaces taken off
/// (`tool.exe. ` is saved as `tool.exe`), cut at its first NUL or other
/// control character, where C-string APIs end it (walkAX 13: the RFC 2231
/// name `tool.exe%00.txt` passed `*.exe`), and without NTFS's name of the
/// default data stream (`tool.exe::$DATA` opens `tool.exe`, walkBZ Z6).
pub fn saved_name(name: &str) -> &str {
    const STREAM: &str = "::$data";
    let name = cut_at_control(name);
    let name = match name.len().checked_sub(STREAM.len()) {
        Some(i) if name.is_char_boundary(i) && name[i..].eq_ignore_ascii_case(STREAM) => &name[..i],
        _ => name,
    };
    name.trim_end_matches(['.', ' '])
}

fn cut_at_control(name: &str) -> &str {
    name.find(char::is_control).map_or(name, |i| &name[..i])
}

fn last_element(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes_combined() {
        let mut p = crate::config::parse("", "t.toml").unwrap().policy;
        let globs = |l: &[&str]| l.iter().map(|g| Pattern::new(g)).collect();
        p.include_by_name = globs(&["*.exe", "*.scr"]);
        p.exclude_by_name = globs(&["setup-*.exe", "*.pdf"]);
        p.include_by_mime = globs(&["application/x-ms*", "video/*"]);
        p.exclude_by_mime = globs(&["video/mp4"]);
        let f = Filters::new(&p);
        let table = [
            (
                Some("evil.EXE"),
                "application/octet-stream",
                Some("name:*.exe"),
            ),
            (Some("setup-1.2.exe"), "application/octet-stream", None),
            (
                Some("dir/game.scr"),
                "application/octet-stream",
                Some("name:*.scr"),
            ),
            (
                None,
                "application/x-msdownload",
                Some("mime:application/x-ms*"),
            ),
            (Some("clip.mov"), "video/quicktime", Some("mime:video/*")),
            (Some("clip.mp4"), "video/mp4", None),
            (Some("setup-2.exe"), "application/x-msdownload", None),
            (Some("report.pdf"), "application/pdf", None),
            (None, "text/plain", None),
        ];
        for (name, mime, want) in table {
            let names: Vec<&str> = name.into_iter().collect();
            assert_eq!(f.check(&names, mime).as_deref(), want, "{name:?} {mime}");
        }
        // Two names: either may be the one saved; trailing dots and spaces
        // go when Windows saves the file.
        let two = [
            (["tool.txt", "tool.exe"], Some("name:*.exe")),
            (["tool.exe", "tool.txt"], Some("name:*.exe")),
            (["setup-1.exe", "tool.exe"], Some("name:*.exe")),
            (["setup-1.exe", "notes.txt"], None),
            (["tool.exe.", "a"], Some("name:*.exe")),
            (["tool.exe ", "a"], Some("name:*.exe")),
            (["dir/tool.EXE. .", "a"], Some("name:*.exe")),
            (["setup-2.exe.", "a"], None),
            (["tool.exe\0.txt", "a"], Some("name:*.exe")),
            (["tool.exe \u{1}x.txt", "a"], Some("name:*.exe")),
            (["setup-3.exe\0.txt", "a"], None),
            // A path separator after the cut is not part of the saved name.
            (["tool.exe\0/a.txt", "a"], Some("name:*.exe")),
            (["tool.exe\0\\a.txt", "a"], Some("name:*.exe")),
            (["dir/tool.exe\n/notes.txt", "a"], Some("name:*.exe")),
            (["setup-4.exe\0/a.txt", "a"], None),
            // An exclude of one form is not one of the other (walkBR N1).
            (["tool.exe\0.pdf", "a"], Some("name:*.exe")),
            (["evil.exe\0/setup-1.exe", "a"], Some("name:*.exe")),
            (["setup-5.exe\0/evil.exe", "a"], Some("name:*.exe")),
            (["a.txt\0/run.exe.", "a"], Some("name:*.exe")),
            (["a.txt\0/setup-6.exe.", "a"], None),
            (["evil.exe::$DATA", "a"], Some("name:*.exe")),
            (["evil.exe ::$data", "a"], Some("name:*.exe")),
            (["setup-7.exe::$DATA", "a"], None),
        ];
        for (names, want) in two {
            assert_eq!(
                f.check(&names, "application/octet-stream").as_deref(),
                want,
                "{names:?}"
            );
        }
    }
}
