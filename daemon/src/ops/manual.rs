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
    let man = clap_mangen::Man::new(named)
        .section("8")
        .manual("Mailward")
        .source(format!("Mailward {}", env!("CARGO_PKG_VERSION")));
    let mut text = Vec::new();
    let path = dir.join(format!("{name}.8"));
    man.render(&mut text)
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
        let page = std::fs::read_to_string(dir.path().join("mailward-log-reopen.8")).unwrap();
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains("mailward log reopen"), "{page}");
        assert!(
            page.contains("postrotate"),
            "the example is on the page: {page}"
        );
    }

    #[test]
    fn every_command_says_how_it_is_used_by_an_example() {
        // Groups (`mailward queue`) as well as leaves (`mailward queue
        // list`): an operator reads the first help they reach.
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name()).trim().to_string();
            let after = cmd
                .get_after_help()
                .or(cmd.get_after_long_help())
                .map(|s| s.to_string())
                .unwrap_or_default();
            if !after.contains("Example") || !after.contains("mailward ") {
                missing.push(path.clone());
            }
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<crate::ops::cli::Cli as clap::CommandFactory>::command(),
            "",
            &mut missing,
        );
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
