//! Man pages and shell completions, generated from the clap definitions
//! (`clap_mangen`, `clap_complete`) so they say what `--help` says, with
//! the same examples.
//!
//! One page per command, section 8 (the binary is in /usr/sbin):
//! `mailward.8`, `mailward-run.8`, `mailward-queue-list.8`, ... Each page of
//! a command with subcommands lists them; the examples (`after_help`) are
//! the page's EXAMPLES-like closing section.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

/// Why the pages could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ManualError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes every page into `dir` (made if missing); returns their paths.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, ManualError> {
    std::fs::create_dir_all(dir).map_err(|source| ManualError {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut root = super::cli::Cli::command();
    root.build();
    let mut written = Vec::new();
    page(&root, "mailward", dir, &mut written)?;
    Ok(written)
}

fn page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), ManualError> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let mut named = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    // clap's `help` subcommand gets no page of its own (below), so the
    // parent's page does not list it either (walkN: mailward(8) named a
    // mailward-help(8) that is not shipped).
    if named.find_subcommand("help").is_some() {
        named = named.mut_subcommand("help", |h| h.hide(true));
    }
    // clap_mangen renders after_help as one filled paragraph under
    // "EXTRA": man then wrapped the examples and hyphenated paths inside
    // them (walkAC: a copied "/etc/mail‐ward/mailward.toml" is another
    // path). It is written here as NOTES and an unfilled EXAMPLES section.
    let after = named
        .get_after_long_help()
        .or(named.get_after_help())
        .map(|s| s.to_string());
    let named = named.after_help(None::<&str>).after_long_help(None::<&str>);
    let man = clap_mangen::Man::new(named)
        .section("8")
        .manual("Mailward")
        .source(format!("Mailward {}", env!("CARGO_PKG_VERSION")));
    let mut text = Vec::new();
    let path = dir.join(format!("{name}.8"));
    man.render(&mut text)
        .map(|()| {
            if name == "mailward" {
                text.extend_from_slice(ENVIRONMENT_AND_FILES.as_bytes());
            }
            if let Some(after) = &after {
                text.extend_from_slice(notes_and_examples(after).as_bytes());
            }
        })
        .and_then(|()| std::fs::write(&path, &text))
        .map_err(|source| ManualError {
            path: path.clone(),
            source,
        })?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// mailward(8)'s ENVIRONMENT and FILES: where a Debian administrator looks
/// first for what the package put where (walkBB F7: the page named
/// /etc/mailward only in an example).
const ENVIRONMENT_AND_FILES: &str = r#".SH ENVIRONMENT
.TP
\fBMAILWARD_CONFIG\fR
The configuration file of every command that is given no \fB\%\-\-config\fR; without either, the embedded default configuration (\fB\%mailward config default\fR).
.TP
\fBMAILWARD_LOG\fR
Used in place of \fBlog.options\fR, the levels per target (the same syntax, e.g. \fBinfo,smtp=trace\fR).
.TP
\fBGLIBC_TUNABLES\fR
\fBmailward run\fR starts itself again with \fBglibc.malloc.mmap_threshold=131072\fR unless a threshold is set here (it keeps the peak memory of scans low).
.SH FILES
.TP
\fI/etc/mailward/mailward.toml\fR
The Debian package's configuration (check it with \fBmailward check\-config \-\-config /etc/mailward/mailward.toml\fR).
.TP
\fI/var/lib/mailward/\fR
The package's \fBserver.data_dir\fR: the spool, the quarantine, the archive, the signature bases, the spam store and the statistics.
.TP
\fI/run/mailward/admin.sock\fR
The package's \fBserver.admin_socket\fR, which the commands that talk to the daemon use.
.TP
\fI/var/log/mailward/\fR
The package's log (\fBmailward.log\fR) and raw statistics records (\fBraw.log\fR), rotated by \fI/etc/logrotate.d/mailward\fR.
.TP
\fI/usr/share/doc/mailward/\fR
README.md and the guides in docs/; \fBcopyright\fR, and \fBbundled\-crates.txt.gz\fR: the licences of the Rust crates linked into the program.
.TP
\fI/usr/share/snmp/mibs/MAILWARD\-MIB.txt\fR
The MIB of the SNMP objects and notifications.
.TP
\fI/usr/share/mailward/dashboards/\fR
The Grafana dashboard, provisioning examples and Prometheus alert rules.
"#;

/// A command's `after_help` as man sections: the prose before the first
/// "Example" line as NOTES, the rest as EXAMPLES, where the indented lines
/// (commands, configuration) are kept as they are (`.nf`), never filled or
/// hyphenated, so that they can be copied.
fn notes_and_examples(after: &str) -> String {
    let none = std::iter::empty::<&str>;
    let mut roff = roff::Roff::new();
    // Hyphenation off for the rest of the page: the prose names paths and
    // commands too.
    roff.control("nh", none());
    let mut section = None;
    let mut verbatim = false;
    for line in after.lines() {
        let example = line.starts_with("Example");
        let wanted = if example || section == Some("EXAMPLES") {
            "EXAMPLES"
        } else {
            "NOTES"
        };
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with("  ");
        if verbatim && (!indented || section != Some(wanted)) {
            roff.control("fi", none()).control("RE", none());
            verbatim = false;
        }
        if section != Some(wanted) {
            roff.control("SH", [wanted]);
            section = Some(wanted);
        }
        if indented {
            if !verbatim {
                roff.control("RS", ["4"]).control("nf", none());
                verbatim = true;
            }
            roff.text([roff::roman(line.strip_prefix("  ").unwrap_or(line))]);
        } else if !matches!(line, "Example:" | "Examples:") {
            // "Example (logrotate postrotate):", "Postfix main.cf:" say
            // what follows; a bare "Example:" only repeats the heading.
            roff.control("PP", none()).text([roff::roman(line)]);
        }
    }
    if verbatim {
        roff.control("fi", none()).control("RE", none());
    }
    // The page already starts with roff's apostrophe preamble.
    let preamble = roff::Roff::new().render();
    let text = roff.render();
    text.strip_prefix(&preamble).unwrap_or(&text).to_string()
}

/// Writes the completion script for `shell` to `out`. The script is made
/// in memory first: `clap_complete` panics on a failed write (a closed
/// pipe, `| head`), and a write error here is only returned.
pub fn completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut cmd = super::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mailward", &mut script);
    out.write_all(&script)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_command_with_its_example() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "mailward.8",
            "mailward-run.8",
            "mailward-queue-list.8",
            "mailward-log-reopen.8",
            "mailward-quarantine-release.8",
            "mailward-completions.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("man-pages")), "{names:?}");
        // Every page a page names is written (no mailward-help(8)).
        for p in &pages {
            // roff escapes the hyphens: "mailward\\-help(8)".
            let text = std::fs::read_to_string(p).unwrap().replace("\\-", "-");
            for named in text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '('))
                .filter(|w| w.starts_with("mailward-") && w.ends_with("(8"))
            {
                let file = format!("{}.8", named.trim_end_matches("(8"));
                assert!(
                    names.contains(&file),
                    "{} names {named}): {names:?}",
                    p.display()
                );
            }
        }
        // walkBB F7: the top page says where the package puts things.
        let top = std::fs::read_to_string(dir.path().join("mailward.8")).unwrap();
        assert!(
            top.contains(".SH ENVIRONMENT\n.TP\n\\fBMAILWARD_CONFIG\\fR")
                && top.contains(".SH FILES\n.TP\n\\fI/etc/mailward/mailward.toml\\fR"),
            "{top}"
        );
        let page = std::fs::read_to_string(dir.path().join("mailward-log-reopen.8")).unwrap();
        assert!(!page.contains(".SH FILES"), "{page}");
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains("mailward log reopen"), "{page}");
        assert!(
            page.contains("postrotate"),
            "the example is on the page: {page}"
        );
        // walkAC: the examples were one filled paragraph under "EXTRA",
        // wrapped and hyphenated by man. Each example line is a line of
        // its own in an unfilled block now.
        let page = std::fs::read_to_string(dir.path().join("mailward-queue-salvage.8")).unwrap();
        assert!(!page.contains(".SH EXTRA"), "{page}");
        let examples = page
            .split(".SH EXAMPLES\n")
            .nth(1)
            .unwrap_or_else(|| panic!("no EXAMPLES section: {page}"));
        assert!(examples.starts_with(".RS 4\n.nf\n"), "{examples}");
        let lines: Vec<String> = examples.lines().map(|l| l.replace("\\-", "-")).collect();
        assert!(
            lines.iter().any(|l| l
                == "mailward queue salvage /root/0000000000000003.seg --config /etc/mailward/mailward.toml"),
            "{lines:#?}"
        );
        let notes = page.split(".SH NOTES\n").nth(1).unwrap_or_default();
        assert!(notes.starts_with(".PP\n"), "the prose is NOTES: {page}");
    }

    /// Every command but clap's `help`, groups (`mailward queue`) as well
    /// as leaves (`mailward queue list`), as (its path, its after_help).
    fn every_after_help() -> Vec<(String, String)> {
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
            let path = format!("{path} {}", cmd.get_name()).trim().to_string();
            let after = cmd
                .get_after_help()
                .or(cmd.get_after_long_help())
                .map(|s| s.to_string())
                .unwrap_or_default();
            out.push((path.clone(), after));
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                walk(sub, &path, out);
            }
        }
        let mut out = Vec::new();
        walk(
            &<crate::ops::cli::Cli as clap::CommandFactory>::command(),
            "",
            &mut out,
        );
        out
    }

    /// walkAC: clap wraps help at 100 columns, and an example line longer
    /// than that was split in two: a copied `# comment` ran as a command,
    /// a `--config` lost its value. Every example line fits.
    #[test]
    fn example_lines_fit_the_help_width() {
        let long: Vec<String> = every_after_help()
            .into_iter()
            .flat_map(|(path, after)| {
                after
                    .lines()
                    .filter(|l| l.starts_with("  ") && l.chars().count() > 96)
                    .map(|l| format!("{path}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(long.is_empty(), "example lines clap would wrap: {long:#?}");
    }

    /// An operator reads the first help they reach: every command's has an
    /// example.
    #[test]
    fn every_command_says_how_it_is_used_by_an_example() {
        let missing: Vec<String> = every_after_help()
            .into_iter()
            .filter(|(_, after)| !after.contains("Example") || !after.contains("mailward "))
            .map(|(path, _)| path)
            .collect();
        assert!(missing.is_empty(), "no example in the help of: {missing:?}");
    }

    #[test]
    fn completions_know_the_commands() {
        let mut out = Vec::new();
        completions(clap_complete::Shell::Bash, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("quarantine") && text.contains("reopen"),
            "{text}"
        );
    }
}
