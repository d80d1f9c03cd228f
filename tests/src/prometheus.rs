//! Prometheus for the tests: a private `prometheus` server (Debian's
//! package) scraping the daemon on loopback, with its config, TSDB and log
//! in the test directory, killed on drop; queries through its HTTP API; a
//! plain HTTP GET for reading `/metrics` directly; and `promtool`.
//!
//! The HTTP client is the smallest that does the job (one GET per
//! connection, `Connection: close`, a `Content-Length` or chunked body), so
//! that the harness needs no HTTP crate.

use std::fs::{self, File};
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::give_up;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::tools::{self, free_port, require, wait_until, READY_TIMEOUT};

/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The Debian package of `prometheus` and `promtool`.
pub const PACKAGE: &str = "prometheus";

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (chunked transfer coding undone), as text.
    pub body: String,
}

impl HttpResponse {
    /// The first value of header field `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET target` (path and query, e.g. `/metrics`) from 127.0.0.1:`port`.
pub fn http_get(port: u16, target: &str) -> Result<HttpResponse> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: mailward-e2e\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to GET {target} from {addr}"))?;
    parse_response(&raw).with_context(|| format!("the answer to GET {target} from {addr}"))
}

/// Parses a whole HTTP/1.x response read up to the end of the connection.
fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the header section")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let decoded;
    if chunked {
        decoded = dechunk(body)?;
        body = &decoded;
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().context("bad Content-Length")?;
        if body.len() < len {
            bail!("body cut short: {} of {len} bytes", body.len());
        }
        body = &body[..len];
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

/// Undoes the chunked transfer coding.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line without CRLF")?;
        let line = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("chunk cut short");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Percent-encodes `s` for a URL query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `GET /metrics` from 127.0.0.1:`port`; fails unless it answers 200.
pub fn scrape(port: u16) -> Result<String> {
    let response = http_get(port, "/metrics")?;
    if response.status != 200 {
        bail!(
            "GET /metrics on port {port} answered {}:\n{}",
            response.status,
            response.body
        );
    }
    Ok(response.body)
}

/// `promtool check metrics` on `exposition` (given on stdin); its output
/// and exit status. It prints nothing and exits 0 for a clean exposition.
pub fn promtool_check_metrics(exposition: &str) -> Result<Output> {
    let promtool = require("promtool", PACKAGE)?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting promtool")?;
    let mut stdin = child.stdin.take().expect("piped");
    let text = exposition.to_string();
    // Written from a thread so that a promtool that answers early cannot
    // block us on a full pipe.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().context("running promtool")?;
    let _ = writer.join();
    Ok(output)
}

/// `promtool check rules FILE`: its output and exit status.
pub fn promtool_check_rules(file: &Path) -> Result<Output> {
    let promtool = require("promtool", PACKAGE)?;
    tools::run(&promtool, &[Path::new("check"), Path::new("rules"), file])
}

/// `promtool test rules FILE`: the alerting rules' unit tests.
pub fn promtool_test_rules(file: &Path) -> Result<Output> {
    let promtool = require("promtool", PACKAGE)?;
    tools::run(&promtool, &[Path::new("test"), Path::new("rules"), file])
}

/// The answer to an instant query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// `vector`, `matrix`, `scalar` or `string`.
    pub result_type: String,
    /// `data.result` as Prometheus gave it.
    pub result: Value,
}

impl QueryResult {
    /// True for a vector or matrix without series (a scalar or string is
    /// never empty).
    pub fn is_empty(&self) -> bool {
        match &self.result {
            Value::Array(items) if matches!(self.result_type.as_str(), "vector" | "matrix") => {
                items.is_empty()
            }
            _ => false,
        }
    }

    /// The series of a vector: labels and value (NaN when unparsable).
    pub fn samples(&self) -> Vec<(serde_json::Map<String, Value>, f64)> {
        if self.result_type != "vector" {
            return Vec::new();
        }
        self.result
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|s| {
                        let labels = s["metric"].as_object().cloned().unwrap_or_default();
                        let value = s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN);
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of a one-series vector or of a scalar.
    pub fn single_value(&self) -> Option<f64> {
        match self.result_type.as_str() {
            "scalar" => self.result[1].as_str().and_then(|v| v.parse().ok()),
            "vector" => match self.samples().as_slice() {
                [(_, v)] => Some(*v),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A running Prometheus on 127.0.0.1.
pub struct Prometheus {
    /// Its HTTP port (UI and API).
    pub port: u16,
    /// Its config file.
    pub config_path: PathBuf,
    /// Its stderr.
    log_path: PathBuf,
    /// The process; None once stopped.
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus under `dir/NAME/`, scraping each (job, `host:port`)
    /// of `jobs` every second, evaluating `rule_files` every second;
    /// returns once it is ready to answer queries.
    pub fn start(
        dir: &Path,
        name: &str,
        jobs: &[(&str, String)],
        rule_files: &[PathBuf],
    ) -> Result<Prometheus> {
        let program = require("prometheus", PACKAGE)?;
        let home = dir.join(name);
        fs::create_dir_all(home.join("tsdb"))?;
        let config_path = home.join("prometheus.yml");
        fs::write(&config_path, config_text(jobs, rule_files))?;
        let log_path = home.join("prometheus.log");
        let log = File::options().create(true).append(true).open(&log_path)?;
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                home.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let mut prometheus = Prometheus {
            port,
            config_path,
            log_path,
            child: Some(child),
        };
        prometheus.wait_ready()?;
        Ok(prometheus)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        let log_path = self.log_path.clone();
        let child = self.child.as_mut().expect("started");
        // The TSDB is created and replayed before it answers; allow time.
        wait_until("prometheus to be ready", READY_TIMEOUT * 2, || {
            if let Some(status) = child.try_wait()? {
                give_up!(
                    "prometheus exited ({status}): {}",
                    tools::tail(&log_path, 30)
                );
            }
            Ok(http_get(port, "/-/ready")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ()))
        })
    }

    /// `GET /api/v1/PATH_AND_QUERY`: the `data` of a success, or the
    /// error Prometheus gave (`errorType: error`).
    pub fn api(&self, path_and_query: &str) -> Result<Value> {
        let response = http_get(self.port, &format!("/api/v1/{path_and_query}"))?;
        let body: Value = serde_json::from_str(&response.body).with_context(|| {
            format!(
                "no JSON in the answer ({}) to /api/v1/{path_and_query}: {:?}",
                response.status, response.body
            )
        })?;
        if body["status"] == "success" {
            return Ok(body["data"].clone());
        }
        Err(anyhow!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        ))
    }

    /// An instant query at the current time.
    pub fn query(&self, expr: &str) -> Result<QueryResult> {
        let data = self.api(&format!("query?query={}", url_encode(expr)))?;
        Ok(QueryResult {
            result_type: data["resultType"].as_str().unwrap_or_default().to_string(),
            result: data["result"].clone(),
        })
    }

    /// Waits until `expr` returns a non-empty result; returns it.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Result<QueryResult> {
        wait_until(
            &format!("prometheus to return data for {expr}"),
            timeout,
            || {
                let result = self.query(expr)?;
                Ok((!result.is_empty()).then_some(result))
            },
        )
    }

    /// Prometheus' log (the last lines), for failure messages.
    pub fn log(&self) -> String {
        tools::tail(&self.log_path, 40)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// prometheus.yml: scrape and evaluate every second (so that rates have
/// samples within seconds), one job per entry of `jobs`.
fn config_text(jobs: &[(&str, String)], rule_files: &[PathBuf]) -> String {
    let mut out = String::from(
        "# Written by the Mailward end-to-end tests.\nglobal:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    if !rule_files.is_empty() {
        out.push_str("rule_files:\n");
        for file in rule_files {
            out.push_str(&format!("  - {}\n", yaml_str(&file.display().to_string())));
        }
    }
    out.push_str("scrape_configs:\n");
    for (job, target) in jobs {
        out.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
            yaml_str(job),
            yaml_str(target)
        ));
    }
    out
}

/// A YAML double-quoted string (JSON's escapes are valid YAML).
fn yaml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (200, "hello"));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, "hello world");
        assert_eq!(chunked.header("TRANSFER-ENCODING"), Some("chunked"));
        let closed = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nno").unwrap();
        assert_eq!((closed.status, closed.body.as_str()), (404, "no"));
    }

    #[test]
    fn url_encodes_promql() {
        assert_eq!(
            url_encode(r#"rate(a{b=~"$x"}[1m])"#),
            "rate%28a%7Bb%3D~%22%24x%22%7D%5B1m%5D%29"
        );
    }

    #[test]
    fn config_names_jobs_and_rules() {
        let text = config_text(
            &[("mailward", "127.0.0.1:9925".to_string())],
            &[PathBuf::from("/r/a.yaml")],
        );
        assert!(text.contains("rule_files:\n  - \"/r/a.yaml\"\n"), "{text}");
        assert!(
            text.contains("  - job_name: \"mailward\"\n    static_configs:\n      - targets: [\"127.0.0.1:9925\"]\n"),
            "{text}"
        );
    }
}
