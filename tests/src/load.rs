//! Mail under load, and the check that none of it was lost: client threads
//! send tagged messages (`tests/resources/mail/tagged.eml`) and record the
//! queue ID of every 250; [`Ledger::settle`] then matches what reached the
//! next hop against that record, by queue ID and tag (the tag is also in
//! the Subject and Message-ID, so a message with the wrong content shows).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Result;

use crate::sink::Sink;
use crate::smtp::{Reply, SmtpClient};
use crate::tools::{read_resource, wait_until};

/// Messages each client sends per session before it reconnects.
const PER_SESSION: usize = 5;

/// What the clients have been told: every message that got a 250.
#[derive(Debug, Default)]
pub struct Ledger {
    /// (queue ID, tag) of each 250.
    accepted: Mutex<Vec<(String, String)>>,
    /// Transactions that got a 4xx or 5xx final reply.
    refused: AtomicU64,
    /// Sessions that broke (connection refused or cut): the daemon was gone.
    broken: AtomicU64,
}

impl Ledger {
    /// Messages that got a 250 so far.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Transactions refused with a 4xx/5xx so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Sessions that broke so far.
    pub fn broken(&self) -> u64 {
        self.broken.load(Ordering::Relaxed)
    }

    /// Records a 250 for a message sent outside [`Load`].
    pub fn record(&self, queue_id: String, tag: String) {
        if let Ok(mut a) = self.accepted.lock() {
            a.push((queue_id, tag));
        }
    }

    /// Waits (up to `timeout`) until every accepted message is at `sink`,
    /// then counts. Returns the counts also when some never arrive.
    pub fn settle(&self, sink: &Sink, timeout: Duration) -> Result<Settled> {
        let accepted: HashMap<String, String> = self
            .accepted
            .lock()
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default();
        let tally = || -> Result<Settled> {
            let mut seen: HashMap<String, Vec<String>> = HashMap::new();
            for m in sink.messages()? {
                let subject = m.header("Subject").unwrap_or_default();
                for id in m.queue_ids() {
                    seen.entry(id).or_default().push(subject.clone());
                }
            }
            let mut s = Settled {
                accepted: accepted.len(),
                ..Settled::default()
            };
            for (id, tag) in &accepted {
                match seen.get(id) {
                    None => s.lost.push(id.clone()),
                    Some(subjects) => {
                        s.delivered += 1;
                        s.duplicated += subjects.len() - 1;
                        if subjects.iter().any(|x| *x != format!("message {tag}")) {
                            s.wrong
                                .push(format!("{id}: sent {tag}, arrived {subjects:?}"));
                        }
                    }
                }
            }
            Ok(s)
        };
        match wait_until("every accepted message at the sink", timeout, || {
            let s = tally()?;
            Ok(s.lost.is_empty().then_some(s))
        }) {
            Ok(s) => Ok(s),
            Err(_) => tally(),
        }
    }
}

/// What reached the next hop, against what got a 250.
#[derive(Debug, Default, Clone)]
pub struct Settled {
    pub accepted: usize,
    /// Accepted messages that arrived (at least once).
    pub delivered: usize,
    /// Queue IDs that got a 250 and never arrived.
    pub lost: Vec<String>,
    /// Extra copies (at-least-once delivery after a crash).
    pub duplicated: usize,
    /// Arrived with another message's content.
    pub wrong: Vec<String>,
}

/// A tagged message (the ledger's template) with `pad` octets of filler
/// lines after the text.
pub fn tagged_message(tag: &str, pad: usize) -> Result<Vec<u8>> {
    let template = String::from_utf8(read_resource("mail/tagged.eml")?)?;
    let mut m = template.replace("{tag}", tag).into_bytes();
    let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n";
    for _ in 0..pad / line.len() {
        m.extend_from_slice(line);
    }
    Ok(m)
}

/// Client threads sending tagged messages until stopped.
pub struct Load {
    pub ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` threads sending to 127.0.0.1:`port`, with tags
    /// `NAME-cN-mM`.
    pub fn start(port: u16, clients: usize, name: &str) -> Result<Load> {
        let template = String::from_utf8(read_resource("mail/tagged.eml")?)?;
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|i| {
                let (ledger, stop, template) = (ledger.clone(), stop.clone(), template.clone());
                let prefix = format!("{name}-c{i}");
                thread::spawn(move || client(port, &prefix, &template, &ledger, &stop))
            })
            .collect();
        Ok(Load {
            ledger,
            stop,
            threads,
        })
    }

    /// Waits until at least `n` messages got a 250.
    pub fn wait_accepted(&self, n: usize, timeout: Duration) -> Result<()> {
        wait_until(&format!("{n} accepted messages"), timeout, || {
            Ok((self.ledger.accepted() >= n).then_some(()))
        })
    }

    /// Stops the clients and waits for them.
    pub fn stop(self) -> Arc<Ledger> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        self.ledger
    }
}

/// MAIL, RCPT, DATA: the queue ID of a 250, or the first refusal; Err when
/// the session broke.
pub fn transaction(c: &mut SmtpClient, message: &[u8]) -> Result<Result<String, Reply>> {
    for line in [
        "MAIL FROM:<sender@example.com>",
        "RCPT TO:<rcpt@example.com>",
    ] {
        let r = c.command(line)?;
        if r.code != 250 {
            return Ok(Err(r));
        }
    }
    let r = c.data(message)?;
    Ok(match (r.code, r.queue_id()) {
        (250, Some(id)) => Ok(id),
        _ => Err(r),
    })
}

/// One client: sessions of [`PER_SESSION`] messages; a broken session means
/// the daemon is gone (connect again after a pause).
fn client(port: u16, prefix: &str, template: &str, ledger: &Ledger, stop: &AtomicBool) {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut c) = SmtpClient::connect_with_timeout(port, Duration::from_secs(10)) else {
            ledger.broken.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        if c.banner.code != 220 || c.ehlo("client.test").is_err() {
            ledger.broken.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        for _ in 0..PER_SESSION {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            n += 1;
            let tag = format!("{prefix}-m{n}");
            let message = template.replace("{tag}", &tag);
            match transaction(&mut c, message.as_bytes()) {
                Ok(Ok(id)) => ledger.record(id, tag),
                Ok(Err(_refusal)) => {
                    ledger.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => {
                    ledger.broken.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        c.quit();
    }
}
