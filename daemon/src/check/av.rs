//! The anti-virus check: the YARA rules of the signature bases over every
//! object of the message (each part, nested message part, uuencoded file
//! and archive member, and each archive as a whole). A rule tagged
//! `suspicious` gives a suspicious finding, any other an infected one; the
//! rule's name is the detection. No rules loaded is an error finding: a
//! message is never passed as clean unscanned.
//!
//! It also renders the verdict header, `X-Mailward-AV`, that policy puts on
//! a delivered message.

use super::unpack::Object;
use super::{Check, Context, Finding, Kind, Report, Tools};
use crate::check::bases::BasesInfo;
use crate::check::filter::saved_name;
use crate::config::Policy;
use mailward_metrics::event::AvStatus;
use std::time::{Duration, Instant};

/// The rule tag that makes a match "suspicious" rather than "infected".
pub const SUSPICIOUS_TAG: &str = "suspicious";

pub struct Av;

impl Check for Av {
    fn name(&self) -> &'static str {
        "av"
    }

    fn wanted(&self, policy: &Policy) -> bool {
        policy.check_av
    }

    fn run(&self, cx: &mut Context<'_, '_, '_>, tools: &mut Tools<'_, '_>, report: &mut Report) {
        report.av_checked = true;
        report.bases = tools.bases.cloned();
        let Some(scanner) = tools.scanner.as_deref_mut() else {
            report.av.push(Finding::new(
                Kind::Error,
                "no signature bases loaded",
                "message",
                None,
            ));
            return;
        };
        // (object index, finding) for the container check below.
        let mut found: Vec<(usize, Finding)> = Vec::new();
        for i in 0..cx.unpacked.objects.len() {
            let (part, path) = {
                let o = &cx.unpacked.objects[i];
                (o.part, o.path.clone())
            };
            if cx.unpacked.out_of_time(part, &path) {
                break;
            }
            let o = &cx.unpacked.objects[i];
            if o.is_message {
                continue;
            }
            match rules(scanner, o, cx.unpacked.deadline) {
                Ok(hits) => found.extend(hits.into_iter().map(|f| (i, f))),
                Err(Stop::Timeout) => cx.unpacked.time_is_up(part, &path),
                Err(Stop::Other(e)) => found.push((
                    i,
                    Finding::new(Kind::Error, format!("rules: {e}"), path, part),
                )),
            }
        }
        report
            .av
            .extend(drop_container_duplicates(&cx.unpacked.objects, found));
    }
}

enum Stop {
    Timeout,
    Other(String),
}

/// The names of one object the rules are run under, at most this many: a
/// part may carry many (`filename`, `filename*`, `name`, ...), and each
/// distinct name costs a scan of its bytes.
pub const MAX_NAMES_SCANNED: usize = 4;

/// The `filename` values an object is scanned under: each of its names
/// (see [`Object::aliases`]) as Windows saves it ([`saved_name`]:
/// `invoice.pdf.exe.` is saved, and run, as `invoice.pdf.exe`), once each,
/// at most [`MAX_NAMES_SCANNED`]; "" for an object without a name.
fn scan_names<'o>(o: &'o Object<'_>) -> Vec<&'o str> {
    let mut names: Vec<&str> = Vec::new();
    for n in o.name.iter().chain(&o.aliases) {
        let saved = saved_name(n);
        if !names.contains(&saved) && names.len() < MAX_NAMES_SCANNED {
            names.push(saved);
        }
    }
    if names.is_empty() {
        names.push("");
    }
    names
}

/// Runs the rules over one object, once under each of its names (the
/// rules on `filename` see every name a client may save it under). A rule
/// that matches only under another name than the first is reported as
/// `path (also named NAME)`.
fn rules(
    scanner: &mut yara_x::Scanner<'_>,
    o: &Object<'_>,
    deadline: Instant,
) -> Result<Vec<Finding>, Stop> {
    let mut found: Vec<Finding> = Vec::new();
    for (i, name) in scan_names(o).into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        // yara-x counts its timeout in whole seconds.
        scanner.set_timeout(left.max(Duration::from_secs(1)));
        // Both globals are declared by every compiled set (see bases.rs); an
        // error here would only mean an unusual rule set, not a bad mail.
        let _ = scanner.set_global("filename", name);
        let _ = scanner.set_global("mime_type", o.mime.as_str());
        match scanner.scan(&o.data) {
            Ok(r) => {
                for m in r.matching_rules() {
                    if found.iter().any(|f| f.name == m.identifier()) {
                        continue;
                    }
                    let kind = if m.tags().any(|t| t.identifier() == SUSPICIOUS_TAG) {
                        Kind::Suspicious
                    } else {
                        Kind::Infected
                    };
                    let path = if i == 0 {
                        o.path.clone()
                    } else {
                        format!("{} (also named {name})", o.path)
                    };
                    found.push(Finding::new(kind, m.identifier(), path, o.part));
                }
            }
            Err(yara_x::ScanError::Timeout) => return Err(Stop::Timeout),
            Err(e) => return Err(Stop::Other(e.to_string())),
        }
    }
    Ok(found)
}

/// A stored (uncompressed) member also matches in its archive's own bytes:
/// keep the finding that says where it really is, the member's.
///
/// Linear in the findings times the nesting depth: an archive of 10,000
/// members that all match would take 10^8 comparisons pairwise, seconds
/// of a scan worker after the rules' own deadline.
fn drop_container_duplicates(objects: &[Object<'_>], found: Vec<(usize, Finding)>) -> Vec<Finding> {
    // Every (detection, container) pair some finding lies inside.
    let mut inside: std::collections::HashSet<(&str, usize)> = std::collections::HashSet::new();
    for (j, g) in &found {
        let mut child = *j;
        // Bounded by the objects' count too, should a parent link loop.
        for _ in 0..objects.len() {
            let Some(p) = objects.get(child).and_then(|o| o.parent) else {
                break;
            };
            inside.insert((g.name.as_str(), p));
            child = p;
        }
    }
    // And one finding per detection and place: a zip member read both
    // by its central directory and by its local header under one name
    // matched twice (walkCB CB9).
    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    let keep: Vec<bool> = found
        .iter()
        .map(|(i, f)| !inside.contains(&(f.name.as_str(), *i)) && seen.insert((&f.name, &f.path)))
        .collect();
    found
        .into_iter()
        .zip(keep)
        .filter_map(|((_, f), keep)| keep.then_some(f))
        .collect()
}

/// The `X-Mailward-AV` header (with its CRLF): the status, the detections
/// or problems behind it, and the bases in use. Rule names are ASCII
/// identifiers; the rest is made ASCII, and each name is cut to
/// [`MAX_QUOTED`](crate::policy::edit::MAX_QUOTED) octets (a problem can
/// quote an archive member's name, of any length): with five names at
/// most, the line stays far below RFC 5322's 998 octets.
pub fn header(av: AvStatus, findings: &[&Finding], bases: Option<&BasesInfo>) -> String {
    use crate::policy::edit::{ascii, shorten, MAX_QUOTED};
    let mut h = format!("X-Mailward-AV: {}", av.as_str());
    let worst = findings.iter().map(|f| f.kind).max();
    let names = super::unique(
        findings
            .iter()
            .filter(|f| Some(f.kind) == worst)
            .map(|f| shorten(&ascii(&f.name).replace(';', ","), MAX_QUOTED)),
    );
    if !names.is_empty() {
        let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        h.push_str(&format!(
            "; detection=\"{}\"",
            shown.join(", ").replace('"', "'")
        ));
    }
    match bases {
        Some(b) => {
            // As "%Y-%m-%dT%H:%M:%SZ" would, without parsing a format for
            // every message (that took a tenth of the scan step outside
            // the rules on a 1 KiB message).
            let released = chrono::DateTime::from_timestamp(b.released, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            h.push_str(";\r\n\tbases=");
            h.push_str(&released);
            h.push_str("; version=\"");
            h.push_str(&ascii(&b.version));
            h.push('"');
        }
        None => h.push_str("; bases=none"),
    }
    h.push_str("\r\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn object(path: &str, parent: Option<usize>) -> Object<'static> {
        Object {
            part: Some(1),
            path: path.to_string(),
            name: None,
            aliases: Vec::new(),
            mime: "application/octet-stream".to_string(),
            data: Cow::Borrowed(b""),
            parent,
            is_message: false,
        }
    }

    #[test]
    fn long_names_are_cut_so_that_no_header_line_passes_998_octets() {
        let problem = format!(
            "damaged zip archive: {}: unsupported method",
            "L".repeat(3000)
        );
        let findings: Vec<Finding> = (0..5)
            .map(|n| Finding::new(Kind::Error, format!("{problem}{n}"), "part 2", Some(1)))
            .collect();
        let refs: Vec<&Finding> = findings.iter().collect();
        let h = header(AvStatus::Error, &refs, None);
        for line in h.split("\r\n") {
            assert!(line.len() <= 998, "{} octets: {line}", line.len());
        }
        // Cut in the middle: where the problem starts and how it ends.
        assert!(h.contains("detection=\"damaged zip archive: LLL"), "{h}");
        assert!(h.contains("LLL...LLL"), "{h}");
        assert!(h.contains(": unsupported method4\""), "{h}");
    }

    #[test]
    fn a_detection_is_reported_where_it_is_not_in_every_container_around_it() {
        // part 1 (0) > outer.zip (1) > inner.zip (2) > a.com (3); b.com (4)
        // in outer.zip. EICAR matches a.com and, stored, both archives;
        // OTHER matches outer.zip alone and stays.
        let objects = vec![
            object("part 1", None),
            object("outer.zip", Some(0)),
            object("outer.zip/inner.zip", Some(1)),
            object("outer.zip/inner.zip/a.com", Some(2)),
            object("outer.zip/b.com", Some(1)),
        ];
        let f = |i: usize, name: &str| {
            (
                i,
                Finding::new(Kind::Infected, name, objects[i].path.clone(), Some(1)),
            )
        };
        let found = vec![
            f(1, "EICAR"),
            f(2, "EICAR"),
            f(3, "EICAR"),
            f(1, "OTHER"),
            f(4, "EICAR"),
        ];
        let kept: Vec<(String, String)> = drop_container_duplicates(&objects, found)
            .into_iter()
            .map(|f| (f.name, f.path))
            .collect();
        assert_eq!(
            kept,
            [
                ("EICAR".to_string(), "outer.zip/inner.zip/a.com".to_string()),
                ("OTHER".to_string(), "outer.zip".to_string()),
                ("EICAR".to_string(), "outer.zip/b.com".to_string()),
            ]
        );
    }

    #[test]
    fn ten_thousand_matching_members_keep_their_own_findings() {
        // The shape of an archive of 10,000 EICAR files, stored: each
        // member and the archive match (pairwise, 10^8 steps; now one
        // walk up from each finding).
        let mut objects = vec![object("part 1", None), object("big.zip", Some(0))];
        objects.extend((0..10_000).map(|n| object(&format!("big.zip/{n}.com"), Some(1))));
        let found: Vec<(usize, Finding)> = (1..objects.len())
            .map(|i| {
                (
                    i,
                    Finding::new(Kind::Infected, "EICAR", objects[i].path.clone(), Some(1)),
                )
            })
            .collect();
        let kept = drop_container_duplicates(&objects, found);
        assert_eq!(kept.len(), 10_000);
        assert!(kept.iter().all(|f| f.path != "big.zip"));
    }
}
