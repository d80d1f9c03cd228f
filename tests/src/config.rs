//! Test configurations: the minimal config of the daemon's contract
//! (hostname `mw.test`, one listener on a free port, `example.com`
//! protected, loopback allowed to relay, short back-off, metrics off, an
//! AgentX master nobody listens on) plus per-test settings.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::tools::free_port;

/// A `[[route]]` entry: match, to, more keys as raw TOML values.
type Route = (String, String, Vec<(String, String)>);

/// A Mailward config being put together.
#[derive(Debug, Clone)]
pub struct Config {
    /// The test directory: config file and data_dir go below it.
    pub dir: PathBuf,
    /// The SMTP port Mailward listens on.
    pub port: u16,
    /// Sections in order, each with its keys and raw TOML values.
    sections: Vec<(String, Vec<(String, String)>)>,
    /// `[[route]]` entries: (match, to, more keys as raw TOML values).
    routes: Vec<Route>,
}

impl Config {
    /// The minimal config for a daemon under `dir`, on a free port, with no
    /// route yet.
    pub fn new(dir: &Path) -> Config {
        let port = free_port();
        let data_dir = dir.join("data");
        let config = Config {
            dir: dir.to_path_buf(),
            port,
            sections: Vec::new(),
            routes: Vec::new(),
        }
        .set_str("server", "hostname", "mw.test")
        .set_str("server", "postmaster", "postmaster@mw.test")
        .set_str("server", "data_dir", &data_dir.display().to_string())
        .set(
            "network",
            "listen_on",
            &format!("[{}]", toml_str(&format!("127.0.0.1:{port}"))),
        )
        .set("network", "protected_domains", r#"["example.com"]"#)
        .set("network", "relay_networks", r#"["127.0.0.0/8"]"#)
        .set_str("metrics", "listen", "")
        // Nothing listens there; the daemon must run without a master.
        .set_str("agentx", "socket", "tcp:127.0.0.1:1")
        .set_str("timeouts", "min_backoff", "1s")
        .set_str("timeouts", "max_backoff", "2s");
        // Run as root (the tests are), a configuration must say so.
        if crate::tools::is_root() {
            config.set_str("server", "user", "root")
        } else {
            config
        }
    }

    /// Sets `key` in `[section]` to a raw TOML value (`3`, `"2s"`,
    /// `["a", "b"]`), replacing an earlier value.
    pub fn set(mut self, section: &str, key: &str, value: &str) -> Config {
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let keys = &mut self.sections[idx].1;
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => keys.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Sets `key` in `[section]` to a string.
    pub fn set_str(self, section: &str, key: &str, value: &str) -> Config {
        self.set(section, key, &toml_str(value))
    }

    /// Sets `key` in `[section]` to a list of strings.
    pub fn set_list(self, section: &str, key: &str, values: &[&str]) -> Config {
        let items: Vec<String> = values.iter().map(|v| toml_str(v)).collect();
        self.set(section, key, &format!("[{}]", items.join(", ")))
    }

    /// Adds a `[[route]]` (checked in the order added).
    pub fn route(mut self, pattern: &str, to: &str) -> Config {
        self.routes
            .push((pattern.to_string(), to.to_string(), Vec::new()));
        self
    }

    /// Adds a `[[route]]` with more keys, as strings (`tls`, `tls_ca`, ...).
    pub fn route_with(mut self, pattern: &str, to: &str, keys: &[(&str, &str)]) -> Config {
        self.routes.push((
            pattern.to_string(),
            to.to_string(),
            keys.iter()
                .map(|(k, v)| (k.to_string(), toml_str(v)))
                .collect(),
        ));
        self
    }

    /// Adds a route of `pattern` straight to 127.0.0.1:`port`.
    pub fn route_to_port(self, pattern: &str, port: u16) -> Config {
        self.route(pattern, &format!("[127.0.0.1:{port}]"))
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut out = String::from("# Written by the Mailward end-to-end tests.\n");
        for (section, keys) in &self.sections {
            let _ = writeln!(out, "\n[{section}]");
            for (key, value) in keys {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        for (pattern, to, keys) in &self.routes {
            let _ = writeln!(
                out,
                "\n[[route]]\nmatch = {}\nto = {}",
                toml_str(pattern),
                toml_str(to)
            );
            for (key, value) in keys {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        out
    }

    /// Where the config file is written.
    pub fn path(&self) -> PathBuf {
        self.dir.join("mailward.toml")
    }

    /// The daemon's data_dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sections_and_routes() {
        let cfg = Config::new(Path::new("/t"))
            .set("limits", "max_hops", "5")
            .set_str("timeouts", "min_backoff", "3s")
            .route_to_port("*", 2526);
        let text = cfg.render();
        assert!(text.contains("[limits]\nmax_hops = 5\n"), "{text}");
        assert!(text.contains("min_backoff = \"3s\"\n"), "{text}");
        assert!(!text.contains("\"1s\"\nmin_backoff"), "{text}");
        assert!(text.ends_with("[[route]]\nmatch = \"*\"\nto = \"[127.0.0.1:2526]\"\n"));
        assert!(text.contains(&format!("listen_on = [\"127.0.0.1:{}\"]", cfg.port)));
    }
}
