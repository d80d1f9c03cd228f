//! Content filtering by attachment name and MIME type (`include_by_name`,
//! `exclude_by_name`, `include_by_mime`, `exclude_by_mime`).
//!
//! An object is filtered when its name matches an `include_by_name` glob or
//! its MIME type an `include_by_mime` glob, unless its name matches an
//! `exclude_by_name` glob or its type an `exclude_by_mime` glob: the
//! excludes always win, so `exclude_by_name = ["*.pdf"]` keeps every PDF
//! whatever its declared type. The rule reported (statistics, logs,
//! raw records) is the include that matched, as `name:GLOB` or `mime:GLOB`.

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
            let found: Vec<Finding> = cx
                .unpacked
                .objects
                .iter()
                .filter_map(|o| {
                    filters
                        .check(o.name.as_deref(), &o.mime)
                        .map(|rule| Finding::new(Kind::Filtered, rule, o.path.clone(), o.part))
                })
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

    /// The rule that filters an object with this name (None when it has
    /// none, as most body parts) and MIME type, if any.
    pub fn check(&self, name: Option<&str>, mime: &str) -> Option<String> {
        // Only the last path element: a member "docs/a.exe" is named "a.exe".
        let base = name.map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n));
        let any = |list: &[Pattern], s: &str| list.iter().find(|p| p.matches(s)).cloned();
        if base.is_some_and(|n| any(self.exclude_name, n).is_some())
            || any(self.exclude_mime, mime).is_some()
        {
            return None;
        }
        if let Some(p) = base.and_then(|n| any(self.include_name, n)) {
            return Some(format!("name:{p}"));
        }
        any(self.include_mime, mime).map(|p| format!("mime:{p}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes_combined() {
        let mut p = crate::config::parse("", "t.toml").unwrap().policy;
        let globs = |l: &[&str]| l.iter().map(|g| Pattern::new(g)).collect();
        p.include_by_name = globs(&["*.exe", "*.scr"]);
        p.exclude_by_name = globs(&["setup-*.exe"]);
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
            assert_eq!(f.check(name, mime).as_deref(), want, "{name:?} {mime}");
        }
    }
}
