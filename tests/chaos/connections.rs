//! Clients that hold sessions: 300 idle connections against a limit of 200
//! (stress mode cuts idle ones back to the mark, and a real client is still
//! served), and slowloris clients that trickle a command line or DATA one
//! piece at a time (cut at the whole-command and DATA deadlines).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use mailward_e2e::stats::StatsSetup;
use mailward_e2e::{wait_until, Gateway, SmtpClient};

use crate::report::{Goal, Report};
use crate::Length;

const CASE: &str = "connections";
const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nHello.\r\n";

/// The first reply line of a fresh connection (or "" when none came).
fn banner(s: &TcpStream) -> String {
    let mut line = String::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if let Ok(clone) = s.try_clone() {
        let _ = BufReader::new(clone).read_line(&mut line);
    }
    line
}

fn idle_connections(r: &mut Report, len: Length) -> Result<()> {
    let idle = len.pick(300, 600);
    let dir = std::env::temp_dir();
    let stats = StatsSetup::new(&dir);
    let gw = Gateway::start("chaos-idle", |c| {
        stats
            .apply(c)
            .set("limits", "incoming_sessions", "200")
            .set("limits", "incoming_sessions_per_ip", "2000")
            .set("limits", "stress_percent", "80")
            .set_str("timeouts", "command", "5m")
            .set_str("timeouts", "stress_command", "2s")
    })?;
    let mut conns = Vec::new();
    let (mut greeted, mut refused) = (0, 0);
    for _ in 0..idle {
        let s = TcpStream::connect(("127.0.0.1", gw.port()))?;
        let b = banner(&s);
        if b.starts_with("220") {
            greeted += 1;
            conns.push(s);
        } else if b.starts_with("421") {
            refused += 1;
        }
    }
    r.figure(
        CASE,
        &format!("{idle} idle: greeted (limit 200)"),
        greeted as f64,
        Goal::Exactly(200.0),
    );
    r.figure(
        CASE,
        &format!("{idle} idle: refused with 421"),
        refused as f64,
        Goal::Exactly((idle - 200) as f64),
    );
    // Every slot is held; a real client is served once stress mode has cut
    // idle sessions (after timeouts.stress_command).
    let t = Instant::now();
    let served = wait_until(
        "a real client to be served",
        Duration::from_secs(30),
        || {
            let Ok(mut c) = SmtpClient::connect(gw.port()) else {
                return Ok(None);
            };
            if c.banner.code != 220 {
                return Ok(None);
            }
            c.ehlo("client.test")?;
            Ok(Some(c.send_mail_ok(
                "a@example.com",
                &["b@example.com"],
                MESSAGE,
            )?))
        },
    );
    r.check(CASE, "a real client is served", served.is_ok());
    r.figure(
        CASE,
        "real client served after (s), stress timeout 2",
        t.elapsed().as_secs_f64(),
        Goal::AtMost(10.0),
    );
    // Stress mode cuts the idle ones back to 80 % of 200.
    thread::sleep(Duration::from_secs(4));
    let m = stats.scrape()?;
    let open = m.value("mailward_sessions", &[("direction", "in")])?;
    r.figure(
        CASE,
        "open after stress-mode cuts",
        open,
        Goal::AtMost(160.0),
    );
    r.figure(
        CASE,
        "cut by the stress timeouts",
        m.value("mailward_session_stress_timeouts_total", &[])?,
        Goal::AtLeast(40.0),
    );
    drop(conns);
    Ok(())
}

fn slowloris(r: &mut Report) -> Result<()> {
    let gw = Gateway::start("chaos-slowloris", |c| {
        c.set_str("timeouts", "command", "3s")
            .set_str("timeouts", "data", "3s")
            .set("limits", "min_data_rate", "500")
    })?;
    // A command line, one octet every 300 ms.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port()))?;
    banner(&s);
    let t = Instant::now();
    for b in b"EHLO a-very-slow-client.example.com\r\n" {
        if s.write_all(&[*b]).is_err() || t.elapsed() > Duration::from_secs(20) {
            break;
        }
        thread::sleep(Duration::from_millis(300));
    }
    let reply = banner(&s);
    r.check(
        CASE,
        "slow command line: 421 4.4.2",
        reply.starts_with("421 4.4.2"),
    );
    r.figure(
        CASE,
        "slow command line: cut after (s), deadline 3",
        t.elapsed().as_secs_f64(),
        Goal::AtMost(6.0),
    );
    // DATA, one short line every 300 ms (20 octets/s, min_data_rate 500).
    let mut c = SmtpClient::connect_ok(gw.port())?;
    c.ehlo("client.test")?;
    c.command("MAIL FROM:<a@example.com>")?;
    c.command("RCPT TO:<b@example.com>")?;
    c.command("DATA")?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if c.send(b"line\r\n").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(300));
        if c.closed_within(Duration::from_millis(1)) {
            break;
        }
    }
    let took = t.elapsed().as_secs_f64();
    r.figure(
        CASE,
        "slow DATA: cut after (s), deadline 3 + size/500",
        took,
        Goal::AtMost(6.0),
    );
    Ok(())
}

pub fn run(r: &mut Report, len: Length) -> Result<()> {
    if let Err(e) = idle_connections(r, len) {
        r.broken(CASE, &e);
    }
    slowloris(r)
}
