//! A private Redis: Debian's `redis-server` on a free loopback port, no
//! persistence, stopped and started again on the same port by the tests
//! that need it gone for a while.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::give_up;
use anyhow::{Context, Result};

use crate::tools::{self, free_port, require, wait_until, READY_TIMEOUT};

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts redis-server in `dir` on a free port.
    pub fn start(dir: &Path) -> Result<Redis> {
        let mut r = Redis {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        r.resume()?;
        Ok(r)
    }

    /// The URL of database 0.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again (after [`Redis::stop`]) on the same port.
    pub fn resume(&mut self) -> Result<()> {
        let program = require("redis-server", "redis-server")?;
        let log_path = self.dir.join("redis.log");
        let log = File::options().create(true).append(true).open(&log_path)?;
        let child = Command::new(program)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
            ])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server to answer", READY_TIMEOUT, || {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    give_up!(
                        "redis-server exited ({status}): {}",
                        tools::tail(&log_path, 20)
                    );
                }
            }
            Ok(ping(port).then_some(()))
        })
    }

    /// The value of a short string `key` (GET over RESP), or None when
    /// the key is not set.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .context("connecting to redis-server")?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        s.write_all(format!("GET {key}\r\n").as_bytes())?;
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head)?;
        let len: i64 = head
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("GET {key}: unexpected answer {head:?}"))?;
        if len < 0 {
            return Ok(None);
        }
        let mut value = vec![0u8; len as usize + 2];
        r.read_exact(&mut value)?;
        value.truncate(len as usize);
        Ok(Some(String::from_utf8_lossy(&value).into_owned()))
    }

    /// One command in Redis's inline form (`RPUSH key value`, words
    /// without spaces), and the first line of its answer.
    pub fn inline(&self, command: &str) -> Result<String> {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .context("connecting to redis-server")?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        s.write_all(format!("{command}\r\n").as_bytes())?;
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer)?;
        Ok(answer.trim_end().to_string())
    }

    /// Stops it (SIGKILL: as a crash, nothing saved).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PING over RESP: true when it answers +PONG.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}
