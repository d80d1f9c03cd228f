//! Crash safety: while raw clients keep sending (each recording the queue
//! ID of every 250 it gets), the daemon is killed with SIGKILL three times and
//! restarted on the same data_dir. Every message that got a 250 must reach
//! the next hop, with its own content (at least once: a delivery cut off
//! by the kill may be repeated).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Result;
use mailward_e2e::*;

const CLIENTS: usize = 4;
/// Messages per session before a client reconnects.
const PER_SESSION: usize = 5;

/// One client: sends tagged messages until told to stop, recording
/// (queue ID, tag) for each 250. Errors (the daemon is gone) mean: connect
/// again.
fn client_loop(
    port: u16,
    client: usize,
    template: String,
    accepted: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut c) = SmtpClient::connect_with_timeout(port, Duration::from_secs(10)) else {
            thread::sleep(Duration::from_millis(20));
            continue;
        };
        if c.banner.code != 220 || c.ehlo("client.test").is_err() {
            continue;
        }
        for _ in 0..PER_SESSION {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            n += 1;
            let tag = format!("client{client}-message{n}");
            let message = template.replace("{tag}", &tag);
            match c.send_mail(
                "sender@example.com",
                &["rcpt@example.com"],
                message.as_bytes(),
            ) {
                Ok(reply) => match reply.queue_id() {
                    Some(id) if reply.code == 250 => {
                        accepted.lock().unwrap().push((id, tag));
                    }
                    _ => break,
                },
                Err(_) => break,
            }
        }
    }
}

#[test]
fn every_accepted_message_survives_kill_9() -> Result<()> {
    let mut gw = Gateway::start("crash", |c| c)?;
    let template = String::from_utf8(read_resource("mail/tagged.eml")?)?;
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (port, template) = (gw.port(), template.clone());
            let (accepted, stop) = (accepted.clone(), stop.clone());
            thread::spawn(move || client_loop(port, i, template, accepted, stop))
        })
        .collect();
    let count = |accepted: &Arc<Mutex<Vec<(String, String)>>>| accepted.lock().unwrap().len();

    for target in [200, 400, 600] {
        wait_until(
            &format!("{target} accepted messages"),
            Duration::from_secs(120),
            || Ok((count(&accepted) >= target).then_some(())),
        )?;
        gw.daemon.kill9()?;
        eprintln!("killed with {} accepted", count(&accepted));
        gw.daemon.restart()?;
    }
    wait_until("800 accepted messages", Duration::from_secs(120), || {
        Ok((count(&accepted) >= 800).then_some(()))
    })?;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }
    let accepted: HashMap<String, String> = accepted.lock().unwrap().iter().cloned().collect();
    let total = accepted.len();
    eprintln!("{total} messages got a 250");

    let delivered = wait_until(
        "every accepted message at the sink",
        Duration::from_secs(180),
        || {
            let mut delivered: HashMap<String, Vec<String>> = HashMap::new();
            for m in gw.sink.messages()? {
                let subject = m.header("Subject").unwrap_or_default();
                for id in m.queue_ids() {
                    delivered.entry(id).or_default().push(subject.clone());
                }
            }
            let missing = accepted
                .keys()
                .filter(|id| !delivered.contains_key(*id))
                .count();
            Ok((missing == 0).then_some(delivered))
        },
    )
    .map_err(|e| {
        let got: Vec<String> = gw
            .sink
            .messages()
            .unwrap_or_default()
            .iter()
            .flat_map(|m| m.queue_ids())
            .collect();
        let missing: Vec<&String> = accepted.keys().filter(|id| !got.contains(id)).collect();
        e.context(format!(
            "{} of {total} accepted messages never arrived, e.g. {:?}; queue list: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)],
            gw.daemon.queue_ids()
        ))
    })?;

    let mut wrong = Vec::new();
    let mut repeated = 0;
    for (id, tag) in &accepted {
        let subjects = &delivered[id];
        if subjects.len() > 1 {
            repeated += 1;
        }
        if subjects.iter().any(|s| *s != format!("message {tag}")) {
            wrong.push(format!("{id}: sent {tag}, arrived {subjects:?}"));
        }
    }
    eprintln!("{repeated} message(s) arrived more than once (allowed after a kill)");
    assert!(
        wrong.is_empty(),
        "messages with the wrong content:\n{}",
        wrong.join("\n")
    );
    Ok(())
}
