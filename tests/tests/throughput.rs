//! Load and correctness together: 2000 messages from `smtp-source` over 10
//! parallel sessions through Mailward into `smtp-sink`. Each must arrive
//! exactly once (2000 dump files, 2000 distinct queue IDs in the Received
//! headers) and intact (the same headers and body as smtp-source sends
//! straight into a sink, apart from the header lines Mailward adds).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use mailward_e2e::mail::{self, strip_added_headers};
use mailward_e2e::tools::{output_text, smtp_source};
use mailward_e2e::*;

const MESSAGES: usize = 2000;
const SESSIONS: &str = "10";
const PAYLOAD: &str = "1024";

/// smtp-source arguments for `count` messages to 127.0.0.1:`port`.
fn source_args(sessions: &str, count: usize, port: u16) -> Vec<String> {
    [
        "-s",
        sessions,
        "-m",
        &count.to_string(),
        "-l",
        PAYLOAD,
        "-f",
        "sender@example.com",
        "-t",
        "rcpt@example.com",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn header_names(message: &str) -> Vec<String> {
    mail::headers(message).into_iter().map(|(n, _)| n).collect()
}

#[test]
fn two_thousand_messages_arrive_exactly_once_and_intact() -> Result<()> {
    let gw = Gateway::start("throughput", |c| c)?;

    // What smtp-source sends, seen without Mailward in between.
    let direct = Sink::start(gw.dir.path(), "direct")?;
    let args = source_args("1", 1, direct.port);
    let out = smtp_source(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    ensure!(
        out.status.success(),
        "smtp-source failed:\n{}",
        output_text(&out)
    );
    let reference = direct.wait_for_count(1, DELIVERY_TIMEOUT)?.remove(0);
    let reference_names = header_names(&reference.message);
    // 1024 octets with CRLF line ends; the dump has LF only.
    ensure!(
        reference.body().len() >= 1000,
        "reference body: {:?}",
        reference.body()
    );

    let start = Instant::now();
    let args = source_args(SESSIONS, MESSAGES, gw.port());
    let out = smtp_source(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    ensure!(
        out.status.success(),
        "smtp-source failed:\n{}",
        output_text(&out)
    );
    let accepted = start.elapsed();
    gw.sink.wait_for_count(MESSAGES, Duration::from_secs(300))?;
    let delivered = start.elapsed();
    eprintln!(
        "{MESSAGES} messages: accepted in {:.1}s ({:.0}/s), all at the sink after {:.1}s ({:.0}/s)",
        accepted.as_secs_f64(),
        MESSAGES as f64 / accepted.as_secs_f64(),
        delivered.as_secs_f64(),
        MESSAGES as f64 / delivered.as_secs_f64()
    );

    let messages = gw.sink.settle(Duration::from_secs(3))?;
    assert_eq!(messages.len(), MESSAGES, "messages at the sink");
    let mut ids = HashSet::new();
    let mut problems = Vec::new();
    for m in &messages {
        let found = m.queue_ids();
        if found.len() != 1 {
            problems.push(format!("{}: queue IDs {found:?}", m.path.display()));
        }
        ids.extend(found);
        if m.sender() != "sender@example.com" || m.recipients() != ["rcpt@example.com"] {
            problems.push(format!(
                "{}: envelope {} {:?}",
                m.path.display(),
                m.mail_args,
                m.rcpt_args
            ));
        }
        let original = String::from_utf8(strip_added_headers(m.message.as_bytes()))?;
        if header_names(&original) != reference_names {
            problems.push(format!(
                "{}: headers {:?}, sent {:?}",
                m.path.display(),
                header_names(&original),
                reference_names
            ));
        }
        if mail::body(&original) != reference.body() {
            problems.push(format!("{}: body differs", m.path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s), the first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
    assert_eq!(ids.len(), MESSAGES, "distinct queue IDs");
    wait_until("the queue to empty", Duration::from_secs(30), || {
        Ok(gw.daemon.queue_ids()?.is_empty().then_some(()))
    })?;
    Ok(())
}
