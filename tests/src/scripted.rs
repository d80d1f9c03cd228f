//! A tiny scripted SMTP server, for the two things smtp-sink cannot do:
//! refuse one particular recipient while accepting the others, and show
//! the exact bytes of DATA as they came over the wire (CRLF, dot-stuffing).
//! It answers in order, so pipelining clients work; it advertises neither
//! DSN nor SIZE.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::tools::wait_until;

/// One transaction that got as far as the end of DATA.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// The MAIL FROM address (empty for the null sender).
    pub mail_from: String,
    /// Recipients answered with 250.
    pub accepted: Vec<String>,
    /// Recipients refused.
    pub refused: Vec<String>,
    /// DATA exactly as received on the wire (still dot-stuffed), without
    /// the final ".\r\n" line.
    pub data: Vec<u8>,
}

impl Transaction {
    /// The message: the data with dot-stuffing removed, line endings kept.
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len());
        let mut at_line_start = true;
        for &b in &self.data {
            if at_line_start && b == b'.' {
                at_line_start = false;
                continue;
            }
            out.push(b);
            at_line_start = b == b'\n';
        }
        out
    }
}

/// What the server has seen.
#[derive(Debug, Default)]
struct Recorded {
    /// Completed transactions, in order.
    transactions: Vec<Transaction>,
    /// Every RCPT TO address, in order, accepted or not.
    rcpt_attempts: Vec<String>,
}

/// A running scripted server on 127.0.0.1.
pub struct ScriptedServer {
    /// Its port.
    pub port: u16,
    /// Shared with the connection threads.
    recorded: Arc<Mutex<Recorded>>,
    /// Tells the accept loop to stop.
    stop: Arc<AtomicBool>,
}

impl ScriptedServer {
    /// Starts a server that refuses the recipients in `refuse` with the
    /// given reply line (e.g. `("bad@example.com", "550 5.1.1 <bad@example.com>: User unknown")`)
    /// and accepts everything else.
    pub fn start(refuse: &[(&str, &str)]) -> Result<ScriptedServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the scripted server")?;
        let port = listener.local_addr()?.port();
        let refuse: Arc<HashMap<String, String>> = Arc::new(
            refuse
                .iter()
                .map(|(a, r)| (a.to_ascii_lowercase(), r.to_string()))
                .collect(),
        );
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let recorded = recorded.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let recorded = recorded.clone();
                    let refuse = refuse.clone();
                    thread::spawn(move || {
                        let _ = serve(stream, &refuse, &recorded);
                    });
                }
            });
        }
        Ok(ScriptedServer {
            port,
            recorded,
            stop,
        })
    }

    /// The completed transactions so far.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.lock().transactions.clone()
    }

    /// How often RCPT TO:<`address`> was tried.
    pub fn rcpt_attempts(&self, address: &str) -> usize {
        self.lock()
            .rcpt_attempts
            .iter()
            .filter(|a| a.eq_ignore_ascii_case(address))
            .count()
    }

    /// Waits until at least `n` transactions are complete.
    pub fn wait_for_transactions(&self, n: usize, timeout: Duration) -> Result<Vec<Transaction>> {
        wait_until(
            &format!("{n} transaction(s) at the scripted server"),
            timeout,
            || {
                let t = self.transactions();
                Ok((t.len() >= n).then_some(t))
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The address inside `<...>` after "FROM:" or "TO:".
fn path_of(args: &str) -> String {
    let start = args.find('<').map_or(0, |i| i + 1);
    let end = args[start..].find('>').map_or(args.len(), |i| start + i);
    args[start..end].to_string()
}

fn serve(
    stream: TcpStream,
    refuse: &HashMap<String, String>,
    recorded: &Mutex<Recorded>,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"220 scripted.test ESMTP\r\n")?;
    let mut txn: Option<Transaction> = None;
    loop {
        let mut line = Vec::new();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let upper = text.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-scripted.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES".into()
        } else if upper.starts_with("HELO") {
            "250 scripted.test".into()
        } else if upper.starts_with("MAIL FROM:") {
            txn = Some(Transaction {
                mail_from: path_of(&text[10..]),
                ..Transaction::default()
            });
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = path_of(&text[8..]);
            recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .rcpt_attempts
                .push(rcpt.clone());
            match (txn.as_mut(), refuse.get(&rcpt.to_ascii_lowercase())) {
                (None, _) => "503 5.5.1 Error: need MAIL command".into(),
                (Some(t), Some(reply)) => {
                    t.refused.push(rcpt);
                    reply.clone()
                }
                (Some(t), None) => {
                    t.accepted.push(rcpt);
                    "250 2.1.5 Ok".into()
                }
            }
        } else if upper == "DATA" {
            match txn.take() {
                Some(mut t) if !t.accepted.is_empty() => {
                    out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                    loop {
                        let mut data_line = Vec::new();
                        if input.read_until(b'\n', &mut data_line)? == 0 {
                            return Ok(());
                        }
                        if data_line == b".\r\n" {
                            break;
                        }
                        t.data.extend_from_slice(&data_line);
                    }
                    recorded
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .transactions
                        .push(t);
                    "250 2.0.0 Ok: queued".into()
                }
                _ => "554 5.5.1 Error: no valid recipients".into(),
            }
        } else if upper == "RSET" {
            txn = None;
            "250 2.0.0 Ok".into()
        } else if upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            "502 5.5.2 Error: command not recognized".into()
        };
        out.write_all(reply.as_bytes())?;
        out.write_all(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstuffs_data() {
        let t = Transaction {
            data: b"..x\r\n...\r\nplain\n".to_vec(),
            ..Transaction::default()
        };
        assert_eq!(t.message(), b".x\r\n..\r\nplain\n");
    }
}
