//! DNS against a real server (dnsmasq): a DNSBL refusing a listed client
//! at connect, and routing by MX (and by the A record when there is no MX);
//! and against a server that never answers: mail is delayed by the DNS
//! timeouts, judged without the look-ups, delivered, and the failures are
//! counted; a relay that only asks the DNS to deliver by MX says so too;
//! and against a server that answers REFUSED, which the status names as
//! refusing, not as silent.

use std::time::Duration;

use anyhow::{ensure, Result};
use mailward_e2e::*;

/// dnsmasq option listing 127.0.0.1 (looked up as 1.0.0.127.ZONE) in `zone`.
fn listed_in(zone: &str) -> String {
    format!("--host-record=1.0.0.127.{zone},127.0.0.2")
}

/// A DNS server that takes queries and never answers: the socket (keep
/// it) and its address for `access.dns_resolver`. Its port is one of
/// `free_port`'s (free for TCP too, and below the ephemeral range), since
/// a test may start a real DNS server on it afterwards, and dnsmasq binds
/// TCP as well as UDP: a port the kernel picked for UDP can be any
/// outgoing TCP connection's source port by then.
fn silent_dns() -> Result<(std::net::UdpSocket, String)> {
    let silent = bind_free_udp()?;
    let address = silent.local_addr()?.to_string();
    Ok((silent, address))
}

/// Delivery's DNS look-ups so far: (answered, not found, failed).
fn delivery_lookups(stats: &mailward_e2e::stats::StatsSetup) -> Result<(f64, f64, f64)> {
    let m = stats.scrape()?;
    let n = |r: &str| {
        m.get("mailward_delivery_dns_lookups_total", &[("result", r)])
            .unwrap_or(-1.0)
    };
    Ok((n("answered"), n("not_found"), n("failed")))
}

/// One session with one plain message from `from` to `to`, accepted.
fn send_plain(port: u16, from: &str, to: &str) -> Result<()> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(from, &[to], &read_resource("mail/plain.eml")?)?;
    Ok(())
}

#[test]
fn listed_client_is_refused_at_connect() -> Result<()> {
    let dir = TestDir::new("dnsbl-listed")?;
    let dns = Dns::start(dir.path(), &[&listed_in("bl.test")])?;
    let sink = Sink::start(dir.path(), "sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*", sink.port)
            // An outside client: relay_networks are not looked up.
            .set("network", "relay_networks", "[]")
            .set_list("access", "dnsbl", &["clean.test", "bl.test"])
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    let mut c = SmtpClient::connect(daemon.port)?;
    c.banner.expect(554, "5.7.1")?;
    assert!(
        c.banner.text().contains("bl.test"),
        "the refusal names the list: {}",
        c.banner
    );
    assert!(c.closed_within(Duration::from_secs(10)), "closed after 554");
    Ok(())
}

#[test]
fn unlisted_client_is_welcome() -> Result<()> {
    let dir = TestDir::new("dnsbl-clean")?;
    // The zone lists someone else; 127.0.0.1 gets NXDOMAIN.
    let dns = Dns::start(dir.path(), &["--host-record=2.0.0.127.bl.test,127.0.0.2"])?;
    let sink = Sink::start(dir.path(), "sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*", sink.port)
            .set("network", "relay_networks", "[]")
            .set_list("access", "dnsbl", &["bl.test"])
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    send_plain(daemon.port, "alice@sender.test", "bob@example.com")?;
    sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    Ok(())
}

#[test]
fn our_own_clients_are_not_looked_up_in_dnsbls() -> Result<()> {
    // 127.0.0.1 is listed in both kinds of zone, but it is in
    // relay_networks (the e2e default): an office behind a listed address
    // keeps sending, as with Postfix's permit_mynetworks.
    let dir = TestDir::new("dnsbl-ours")?;
    let dns = Dns::start(
        dir.path(),
        &[&listed_in("bl.test"), &listed_in("score.test")],
    )?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &stats
            .apply(Config::new(dir.path()))
            .route_to_port("*", sink.port)
            .set_list("access", "dnsbl", &["bl.test"])
            .set_list("spam", "dnsbl", &["score.test:3.0"])
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    send_plain(daemon.port, "alice@example.com", "bob@elsewhere.test")?;
    let got = sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    // Judged (content checks apply to our own clients too), without a
    // DNSBL score.
    let spam = got[0].header("X-Mailward-Spam").unwrap_or_default();
    assert!(
        spam.starts_with("as/") && !spam.contains("DNSBL_"),
        "judged, with no DNSBL score: {spam:?}"
    );
    let m = stats.scrape()?;
    let asked: f64 = ["listed", "not_listed", "failed"]
        .iter()
        .map(|r| {
            m.get("mailward_dnsbl_lookups_total", &[("result", r)])
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(asked, 0.0, "no DNSBL look-up for a relay_networks client");
    Ok(())
}

#[test]
fn route_by_mx_reaches_the_mx_host() -> Result<()> {
    let dir = TestDir::new("mx")?;
    let dns = Dns::start(
        dir.path(),
        &[
            "--mx-host=mx.test,mail.mx.test,10",
            "--host-record=mail.mx.test,127.0.0.1",
        ],
    )?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &stats
            .apply(Config::new(dir.path()))
            .route("*@mx.test", &format!("mx.test:{}", sink.port))
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok(
        "alice@sender.test",
        &["user@mx.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    let messages = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(format!("dnsmasq log:\n{}", dns.log())))?;
    assert_eq!(messages[0].recipients(), ["user@mx.test"]);
    assert_eq!(messages[0].queue_ids(), [id]);
    // The MX and the MX host's address, both answered.
    assert_eq!(
        delivery_lookups(&stats)?,
        (2.0, 0.0, 0.0),
        "delivery's look-ups (answered, not found, failed)"
    );
    Ok(())
}

/// RFC 7505: a domain whose only MX is "." takes no mail; the sender is
/// told at once, with the status the RFC registers (5.1.10).
#[test]
fn a_null_mx_fails_at_once_with_5_1_10() -> Result<()> {
    let dir = TestDir::new("null-mx")?;
    let dns = Dns::start(dir.path(), &["--mx-host=nullmx.test,.,0"])?;
    let dsn_sink = Sink::start(dir.path(), "dsn-sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*@sender.test", dsn_sink.port)
            .route("*@nullmx.test", "nullmx.test")
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["user@nullmx.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    let dsns = dsn_sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(format!("{}\ndnsmasq log:\n{}", daemon.log(), dns.log())))?;
    let text = &dsns[0].message;
    assert!(
        text.lines().any(|l| l.trim() == "Status: 5.1.10") && text.contains("null MX"),
        "a failure DSN with Status: 5.1.10:\n{text}"
    );
    Ok(())
}

/// A domain that does not exist (NXDOMAIN) fails at once, and the sender
/// is told so in those words: "no A/AAAA record" hid a mistyped domain
/// (walkP 13).
#[test]
fn a_domain_that_does_not_exist_fails_at_once_saying_so() -> Result<()> {
    let dir = TestDir::new("nx-domain")?;
    let dns = Dns::start(dir.path(), &[])?;
    let dsn_sink = Sink::start(dir.path(), "dsn-sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*@sender.test", dsn_sink.port)
            .route("*@nosuchdomain.test", "nosuchdomain.test")
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["user@nosuchdomain.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    let dsns = dsn_sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(format!("{}\ndnsmasq log:\n{}", daemon.log(), dns.log())))?;
    let text = &dsns[0].message;
    assert!(
        text.lines().any(|l| l.trim() == "Status: 5.1.2")
            && text.contains("nosuchdomain.test: no such domain"),
        "a failure DSN with Status: 5.1.2 that says the domain does not exist:\n{text}"
    );
    Ok(())
}

/// walkBF F6: a host of a route that does not exist is the configuration's
/// mistake, not the sender's: the mail waits (4.3.5, as Postfix defers a
/// relayhost it cannot find) instead of going back to every sender.
#[test]
fn a_route_to_a_host_that_does_not_exist_defers_its_mail() -> Result<()> {
    let dir = TestDir::new("nx-route")?;
    let dns = Dns::start(dir.path(), &[])?;
    let dsn_sink = Sink::start(dir.path(), "dsn-sink")?;
    let config = Config::new(dir.path())
        .route_to_port("*@sender.test", dsn_sink.port)
        .route("*@elsewhere.test", "[relay.typo.test:2525]")
        .route("*@byname.test", "nosuchdomain.test")
        .set_str("access", "dns_resolver", &dns.resolver());
    let daemon = Daemon::start(&config)?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["user@elsewhere.test", "user@byname.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    let queue = wait_until(
        "the deferrals in the queue",
        Duration::from_secs(15),
        || {
            let queue = daemon.cli_ok(&["queue", "list"])?;
            Ok((queue.matches("4.3.5 ").count() == 2).then_some(queue))
        },
    )
    .map_err(|e| e.context(format!("{}\ndnsmasq log:\n{}", daemon.log(), dns.log())))?;
    ensure!(
        queue.contains(
            "relay.typo.test: no such domain (a next hop this gateway is configured to use)"
        ),
        "the reason names the route's host, in words for the sender too:\n{queue}"
    );
    // walkBH F8: the administrator is told, with what to do.
    let status = daemon.cli_ok(&["status"])?;
    ensure!(
        status.contains("The next hop [relay.typo.test]:2525 of a [[route]] cannot be found")
            && status
                .contains("Mend the route's `to`, `mailward reload`, then `mailward queue flush`"),
        "mailward status lists the route:\n{status}"
    );
    ensure!(
        dsn_sink.messages()?.is_empty(),
        "no failure report for a route's mistake"
    );
    // Mended, reloaded and flushed: the mail goes, and the problem of the
    // old hop is gone (its name is never looked up again).
    let sink = Sink::start(dir.path(), "sink")?;
    let mended = config.render().replace(
        "[relay.typo.test:2525]",
        &format!("[127.0.0.1:{}]", sink.port),
    );
    ensure!(
        mended != config.render(),
        "the route is in the rendered configuration"
    );
    daemon.write_config(&mended)?;
    daemon.cli_ok(&["reload"])?;
    daemon.cli_ok(&["queue", "flush"])?;
    let got = sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
    ensure!(
        got[0].recipients() == ["user@elsewhere.test"],
        "{:?}",
        got[0].recipients()
    );
    let status = daemon.cli_ok(&["status"])?;
    ensure!(
        !status.contains("[relay.typo.test]:2525")
            && status.contains("The next hop nosuchdomain.test:25 of a [[route]] cannot be found"),
        "only the route still wrong is listed:\n{status}"
    );
    Ok(())
}

#[test]
fn domain_without_mx_is_reached_by_its_address() -> Result<()> {
    let dir = TestDir::new("implicit-mx")?;
    let dns = Dns::start(dir.path(), &["--host-record=amx.test,127.0.0.1"])?;
    let sink = Sink::start(dir.path(), "sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route("*@amx.test", &format!("amx.test:{}", sink.port))
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["user@amx.test"],
        &read_resource("mail/plain.eml")?,
    )?;
    let messages = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(format!("dnsmasq log:\n{}", dns.log())))?;
    assert_eq!(messages[0].recipients(), ["user@amx.test"]);
    Ok(())
}

/// A gateway that relays to the sink on `sink_port`, takes every client
/// for an outside one (DNS tests apply) and asks `resolver`, with the
/// statistics of `stats`.
fn outside_client(
    stats: &mailward_e2e::stats::StatsSetup,
    dir: &std::path::Path,
    sink_port: u16,
    resolver: &str,
) -> Config {
    stats
        .apply(Config::new(dir))
        .route_to_port("*", sink_port)
        .set("network", "relay_networks", "[]")
        .set_str("access", "dns_resolver", resolver)
}

#[test]
fn names_that_never_get_an_answer_delay_mail_but_do_not_stop_it() -> Result<()> {
    // Every DNS test of the gateway at once (the refusing and the scoring
    // DNSBL at connect, SPF at MAIL, DMARC and the URI list after DATA)
    // against names whose name servers take the queries and never answer:
    // dnsmasq, the gateway's DNS server, forwards their zones to a socket
    // that never replies, and answers the rest itself (so it answers the
    // gateway's probes: nothing is skipped, every test waits its bounded
    // time; a server that is silent itself is the next test's).
    let dir = TestDir::new("dns-silent")?;
    let (_silent, silent_at) = silent_dns()?;
    let port: u16 = silent_at.rsplit_once(':').map_or("", |(_, p)| p).parse()?;
    let forward: Vec<String> = [
        "bl.test",
        "bl2.test",
        "score.test",
        "uri.test",
        "sender.test",
    ]
    .iter()
    .map(|zone| format!("--server=/{zone}/127.0.0.1#{port}"))
    .collect();
    let server = Dns::start(
        dir.path(),
        &forward.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let resolver = server.resolver();
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &resolver)
            // SPF and DKIM/DMARC apply to an outside client.
            .set_list("access", "dnsbl", &["bl.test", "bl2.test"])
            .set_list("spam", "dnsbl", &["score.test:3.0"])
            .set_list("spam", "surbl", &["uri.test:3.5"])
            .set_str("timeouts", "dns", "3s")
            // DKIM/DMARC and the URI list share one DNS timeout after
            // DATA (3 s): one after the other, each with its own (6 s),
            // they would outlast this, and the verdict would come after
            // the 250.
            .set_str("timeouts", "scan_in_session", "5s"),
    )?;
    // Three zones at connect, asked together: the greeting waits for one
    // DNS timeout (3 s), not three in a row (9 s).
    let asked = std::time::Instant::now();
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    let greeted = asked.elapsed();
    assert!(
        greeted < Duration::from_secs(6),
        "greeted after {greeted:?}: the DNSBL zones were asked one after another"
    );
    c.ehlo("client.test")?;
    let message = b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: while the DNS is dead\r\nDate: Tue, 1 Dec 2026 18:00:00 +0000\r\nMessage-ID: <dead-dns@sender.test>\r\n\r\nSee http://www.deals.shop.test/offer for details.\r\n";
    c.send_mail_ok("alice@sender.test", &["bob@example.com"], message)?;
    let got = sink
        .wait_for_count(1, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(daemon.log()))?;
    let spam = got[0].header("X-Mailward-Spam").unwrap_or_default();
    assert!(
        spam.starts_with("as/clean"),
        "judged without the DNS, not refused or marked for it: {spam:?}"
    );
    // Each test's failure is counted where an operator looks for it.
    let m = stats.scrape()?;
    let failed = |name: &str, result: &str| m.get(name, &[("result", result)]).unwrap_or(0.0);
    // (The harness's readiness probe was a session too.)
    let dnsbl = failed("mailward_dnsbl_lookups_total", "failed");
    assert!(
        dnsbl >= 3.0,
        "each session's three DNSBL look-ups failed: {dnsbl}"
    );
    assert_eq!(
        failed("mailward_spf_checks_total", "temperror"),
        1.0,
        "SPF without an answer is temperror"
    );
    assert_eq!(failed("mailward_surbl_lookups_total", "failed"), 1.0);
    let log = daemon.log();
    assert!(
        log.contains("client=127.0.0.1 zones=bl.test,bl2.test error="),
        "the refusing zones that failed for a client make one log line:\n{log}"
    );
    // That line names its session (the last such line: the readiness
    // probe's session had one too), so that `grep 'session=N '` finds it
    // beside the message the session brought.
    let session = log
        .lines()
        .rfind(|l| l.contains("zones=bl.test,bl2.test"))
        .and_then(|l| l.split_once(" session=")?.1.split_once(' '))
        .map(|(id, _)| id.to_string())
        .ok_or_else(|| anyhow::anyhow!("no session= on the DNSBL failure line:\n{log}"))?;
    assert!(
        log.lines().any(|l| l.contains("Message accepted.")
            && l.contains(&format!(" session={session} "))),
        "the DNSBL failure's session {session} is the message's:\n{log}"
    );
    assert!(
        !log.contains("The checks go on after the reply"),
        "the verdict was given in the session (within timeouts.scan_in_session):\n{log}"
    );
    assert_eq!(
        log.matches("URI lists not asked: DKIM and DMARC used up this message's DNS time")
            .count(),
        1,
        "the URI list was not asked once DMARC had waited the DNS timeout:\n{log}"
    );
    // And `mailward status` says what to look at: most look-ups failed.
    // The failures had the server probed, and it answered: it is not
    // taken for silent (which would skip SPF, DKIM and the lists).
    let status: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    assert_eq!(status["dns"]["resolver"], resolver.as_str());
    assert!(
        status["dns"]["recent"].as_u64() >= Some(8)
            && status["dns"]["recent_failed"] == status["dns"]["recent"],
        "every recent look-up failed: {}",
        status["dns"]
    );
    let problems = status["problems"].to_string();
    assert!(
        problems.contains(&format!("DNS look-ups got no answer from {resolver}")),
        "a problem in the status: {problems}"
    );
    assert!(
        status["dns"]["server_silent_since"].is_null()
            && !daemon.full_log().contains("DNS server does not answer"),
        "the server that answers its probes was taken for silent: {}",
        status["dns"]
    );
    Ok(())
}

#[test]
fn dns_lists_that_keep_failing_rest_until_a_probe_is_answered() -> Result<()> {
    // A DNS list zone whose last eight look-ups got no answer is not asked
    // (each would make its client wait timeouts.dns to learn nothing),
    // except for one probe every 5 s; the first answer ends the rest.
    // The DNS server itself answers (a dnsmasq, whose answer to a probe
    // is "refused"); it forwards the two list zones to a socket that takes
    // the queries and never answers, as a list whose own servers are dead.
    let dir = TestDir::new("dns-rest")?;
    let (silent, silent_at) = silent_dns()?;
    let port: u16 = silent_at.rsplit_once(':').map_or("", |(_, p)| p).parse()?;
    let server = Dns::start(
        dir.path(),
        &[
            &format!("--server=/bl.test/127.0.0.1#{port}"),
            &format!("--server=/score.test/127.0.0.1#{port}"),
        ],
    )?;
    let resolver = server.resolver();
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &resolver)
            // Asked about in both kinds of list; no SPF or DKIM, so that
            // only the lists ask.
            .set_list("access", "dnsbl", &["bl.test"])
            .set_list("spam", "dnsbl", &["score.test:3.0"])
            .set_str("spam", "spf", "off")
            .set("spam", "dkim", "false")
            .set_str("timeouts", "dns", "2s"),
    )?;
    let rests = "DNS list zone rests";
    // Each session asks both zones once (the harness's readiness probe
    // was a session too): eight sessions make both rest.
    let mut sessions = 0;
    while daemon.full_log().matches(rests).count() < 2 {
        ensure!(
            sessions < 9,
            "the zones never rested:\n{}",
            daemon.full_log()
        );
        SmtpClient::connect_ok(daemon.port)?.quit();
        sessions += 1;
    }
    // Now a client is greeted without asking the dead server (so without
    // waiting for it: the greeting waits only for those look-ups), and its
    // message goes through.
    let queries = |socket: &std::net::UdpSocket| -> Result<usize> {
        socket.set_nonblocking(true)?;
        let mut buf = [0u8; 512];
        let mut n = 0;
        while socket.recv(&mut buf).is_ok() {
            n += 1;
        }
        Ok(n)
    };
    queries(&silent)?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let asked = queries(&silent)?;
    ensure!(asked == 0, "the resting zones were asked {asked} time(s)");
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: resting lists\r\n\r\nHello.\r\n",
    )?;
    c.quit();
    sessions += 1;
    sink.wait_for_count(1, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(daemon.log()))?;
    // The look-ups not made count as failed, as timeouts did, and
    // `mailward status` names the resting zones.
    let m = stats.scrape()?;
    let failed = m
        .get("mailward_dnsbl_lookups_total", &[("result", "failed")])
        .unwrap_or(0.0);
    ensure!(
        failed >= 2.0 * sessions as f64,
        "both zones of every session ({sessions}) counted as failed: {failed}"
    );
    ensure!(
        m.get("mailward_dns_lists_resting", &[]) == Some(2.0),
        "the gauge counts the resting zones: {:?}",
        m.get("mailward_dns_lists_resting", &[])
    );
    let status: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    ensure!(
        status["dns"]["resting_zones"] == serde_json::json!(["bl.test", "score.test"]),
        "{}",
        status["dns"]
    );
    // The problem names the lists, not the server, which answers.
    let problems = status["problems"].to_string();
    ensure!(
        problems.contains(&format!("The DNS list zone(s) bl.test, score.test got no answer to their last 8 look-ups while the DNS server {resolver} answers"))
            && !problems.contains("DNS look-ups got no answer from"),
        "the problem in the status: {problems}"
    );
    ensure!(
        daemon
            .cli_ok(&["status"])?
            .contains("not asking (no answer lately): bl.test, score.test"),
        "the status text names them"
    );
    ensure!(
        daemon.log().matches(rests).count() == 2,
        "said once per zone:\n{}",
        daemon.log()
    );
    // The server was never taken for silent: its probes were answered.
    ensure!(
        !daemon.full_log().contains("DNS server does not answer"),
        "the zones' silence was blamed on the server:\n{}",
        daemon.full_log()
    );
    // The lists' servers come back on the same address: within a probe
    // interval each zone is asked again, answers, and is asked from then on.
    drop(silent);
    let live_dir = dir.path().join("lists");
    std::fs::create_dir_all(&live_dir)?;
    let live = Dns::start_at(&live_dir, port, &[])?;
    wait_until(
        "the zones to answer a probe",
        Duration::from_secs(20),
        || {
            SmtpClient::connect_ok(daemon.port)?.quit();
            std::thread::sleep(Duration::from_millis(300));
            Ok((daemon
                .full_log()
                .matches("DNS list zone answers again")
                .count()
                == 2)
                .then_some(()))
        },
    )
    .map_err(|e| e.context(format!("{}\n{}", daemon.full_log(), live.log())))?;
    let status: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    ensure!(
        status["dns"]["resting_zones"] == serde_json::json!([]),
        "{}",
        status["dns"]
    );
    wait_until("the gauge to fall to 0", Duration::from_secs(10), || {
        Ok((stats.scrape()?.get("mailward_dns_lists_resting", &[]) == Some(0.0)).then_some(()))
    })?;
    ensure!(
        live.log().contains("bl.test") && live.log().contains("score.test"),
        "the live server was asked:\n{}",
        live.log()
    );
    Ok(())
}

/// The names asked of `socket` since the last call (the question of each
/// datagram waiting on it).
fn asked_names(socket: &std::net::UdpSocket) -> Result<Vec<String>> {
    socket.set_nonblocking(true)?;
    let mut buf = [0u8; 512];
    let mut names = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        // The question follows the 12-byte header, as length-prefixed labels.
        let mut at = 12;
        let mut labels = Vec::new();
        while at < n && buf[at] != 0 {
            let len = usize::from(buf[at]);
            let end = (at + 1 + len).min(n);
            labels.push(String::from_utf8_lossy(&buf[at + 1..end]).to_string());
            at = end;
        }
        names.push(labels.join("."));
    }
    Ok(names)
}

#[test]
fn a_dns_server_that_does_not_answer_a_probe_is_not_waited_for() -> Result<()> {
    // SPF and DKIM/DMARC look up names that the sender chooses, so their
    // own failures cannot switch anything off (the sender's name servers
    // may be the dead ones); a failure makes Mailward probe the server
    // itself with a name of its own, and while the probes get no answer,
    // SPF and DKIM/DMARC give temperror without asking, and the DNS lists
    // are not asked either.
    let dir = TestDir::new("dns-server-silent")?;
    let (silent, resolver) = silent_dns()?;
    let port: u16 = resolver.rsplit_once(':').map_or("", |(_, p)| p).parse()?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        // SPF (score) and DKIM/DMARC are on by default for outside clients.
        &outside_client(&stats, dir.path(), sink.port, &resolver)
            .set_list("spam", "dnsbl", &["score.test:3.0"])
            .set_str("timeouts", "dns", "2s"),
    )?;
    let message = |n: usize| {
        format!("From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: dead DNS {n}\r\nMessage-ID: <server-silent-{n}@sender.test>\r\n\r\nHello.\r\n")
    };
    // The first message waits for SPF and for DMARC (timeouts.dns each),
    // and SPF's failure sends a probe, which gets no answer either.
    let mut sent = 1;
    send_message(daemon.port, &message(sent))?;
    sink.wait_for_count(sent, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(daemon.log()))?;
    let silent_line = "DNS server does not answer";
    wait_until(
        "the probe to find the server silent",
        Duration::from_secs(15),
        || Ok(daemon.full_log().contains(silent_line).then_some(())),
    )
    .map_err(|e| e.context(daemon.full_log()))?;
    // Sends message `n` and returns what the dead server was asked
    // meanwhile.
    let send_and_ask = |n: usize| -> Result<Vec<String>> {
        asked_names(&silent)?;
        send_message(daemon.port, &message(n))?;
        sink.wait_for_count(n, DELIVERY_TIMEOUT)
            .map_err(|e| e.context(daemon.log()))?;
        asked_names(&silent)
    };
    // The next message is not held up for the dead server: nothing but a
    // probe reaches it.
    sent += 1;
    let asked = send_and_ask(sent)?;
    ensure!(
        asked.iter().all(|n| n.starts_with("mailward-probe-")),
        "the DNS list, SPF or DKIM/DMARC asked the silent server: {asked:?}"
    );
    let m = stats.scrape()?;
    ensure!(
        m.get("mailward_spf_checks_total", &[("result", "temperror")]) == Some(2.0),
        "both messages' SPF counted as temperror: {:?}",
        m.get("mailward_spf_checks_total", &[("result", "temperror")])
    );
    ensure!(
        m.get("mailward_dns_server_silent", &[]) == Some(1.0),
        "the gauge says the server is silent: {:?}",
        m.get("mailward_dns_server_silent", &[])
    );
    let status: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
    ensure!(
        status["dns"]["server_silent_since"].is_i64(),
        "{}",
        status["dns"]
    );
    let text = daemon.cli_ok(&["status"])?;
    ensure!(
        text.contains("server not answering since")
            && text.contains("(SPF, DKIM/DMARC, DNS lists not asked)"),
        "the status text says so:\n{text}"
    );
    ensure!(
        text.contains(&format!(
            "The DNS server {resolver} has not answered a probe since"
        )),
        "and names it as a problem:\n{text}"
    );
    ensure!(
        daemon.full_log().matches(silent_line).count() == 1,
        "said once:\n{}",
        daemon.full_log()
    );
    ensure!(
        !daemon.full_log().contains("DNS list zone rests"),
        "the list zone was not blamed for the server:\n{}",
        daemon.full_log()
    );
    // A reload that leaves the DNS settings alone (logrotate's SIGHUP)
    // keeps what is known of the server: the next message is not held up
    // for it again.
    daemon.sighup()?;
    wait_until("the reload", Duration::from_secs(10), || {
        Ok(daemon
            .full_log()
            .contains("The new configuration is in force")
            .then_some(()))
    })?;
    sent += 1;
    let asked = send_and_ask(sent)?;
    ensure!(
        asked.iter().all(|n| n.starts_with("mailward-probe-")),
        "after the reload, the silent server was asked again: {asked:?}"
    );
    ensure!(
        daemon
            .cli_ok(&["status"])?
            .contains("server not answering since"),
        "the status still says so after the reload"
    );
    // The server comes back on the same address: a later probe (one every
    // 5 s while it is silent, whether mail comes or not) is answered, with
    // no mail meanwhile (walkAK 6: the probes rode on look-ups, so the
    // first message after the outage was judged without the DNS lists),
    // and SPF is asked again.
    drop(silent);
    let live = Dns::start_at(dir.path(), port, &[])?;
    wait_until("a probe to be answered", Duration::from_secs(30), || {
        Ok(daemon
            .full_log()
            .contains("DNS server answers again")
            .then_some(()))
    })
    .map_err(|e| e.context(format!("{}\n{}", daemon.full_log(), live.log())))?;
    sent += 1;
    send_message(daemon.port, &message(sent))?;
    sink.wait_for_count(sent, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(daemon.log()))?;
    ensure!(
        live.log().contains("sender.test"),
        "SPF asks the server again:\n{}",
        live.log()
    );
    wait_until("the gauge to fall to 0", Duration::from_secs(10), || {
        Ok((stats.scrape()?.get("mailward_dns_server_silent", &[]) == Some(0.0)).then_some(()))
    })?;
    Ok(())
}

/// One session with one message from alice@sender.test to bob@example.com.
fn send_message(port: u16, message: &str) -> Result<()> {
    let mut c = SmtpClient::connect_ok(port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        message.as_bytes(),
    )?;
    c.quit();
    Ok(())
}

#[test]
fn a_relay_routing_by_mx_says_when_its_dns_server_is_dead() -> Result<()> {
    // No DNSBL, SPF or URI list here (the client is one of ours): only
    // delivery asks the DNS, and `mailward status` must still see that the
    // server does not answer, and say that mail waits for it.
    let dir = TestDir::new("dns-silent-mx")?;
    let (_silent, resolver) = silent_dns()?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &stats
            .apply(Config::new(dir.path()))
            .route("*", "mx.test")
            .set_str("access", "dns_resolver", &resolver)
            .set_str("timeouts", "dns", "1s"),
    )?;
    for n in 0..5 {
        send_plain(
            daemon.port,
            "alice@example.com",
            &format!("user{n}@mx.test"),
        )?;
    }
    let status = wait_until(
        "five failed look-ups in the status",
        Duration::from_secs(30),
        || {
            let s: serde_json::Value =
                serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
            Ok((s["dns"]["recent_failed"].as_u64() >= Some(5)).then_some(s))
        },
    )
    .map_err(|e| e.context(daemon.log()))?;
    assert_eq!(
        status["dns"]["recent_failed"], status["dns"]["recent"],
        "every MX look-up failed, and nothing else was asked: {}",
        status["dns"]
    );
    let problems = status["problems"].to_string();
    assert!(
        problems.contains(&format!("DNS look-ups got no answer from {resolver}"))
            && problems.contains("mail routed by MX waits in the queue"),
        "a problem in the status: {problems}"
    );
    // The SRE's side of it: the delivery look-ups by result (what the
    // MailwardDnsFailing alert reads).
    let (answered, not_found, failed) = delivery_lookups(&stats)?;
    assert!(
        failed >= 5.0 && answered == 0.0 && not_found == 0.0,
        "delivery's look-ups counted as failed: {failed} failed, {answered} answered, {not_found} not found"
    );
    // The mail waits, deferred for the DNS, not bounced (each attempt
    // records its deferral a moment after its look-up failed).
    wait_until(
        "the deferrals in the queue",
        Duration::from_secs(10),
        || {
            let queue = daemon.cli_ok(&["queue", "list"])?;
            Ok((queue.contains("5 message(s)")
                && queue.matches("4.4.3 mx.test: MX look-up failed").count() == 5)
                .then_some(()))
        },
    )
    .map_err(|e| e.context(daemon.cli_ok(&["queue", "list"]).unwrap_or_default()))?;
    Ok(())
}

/// A DNS list's error code (Spamhaus's 127.255.255.254, "you query through
/// a public resolver"), or an answer outside 127.0.0.0/8, is no listing:
/// the client is neither refused at connect nor scored, and the error code
/// is logged once per zone, naming it (walkI 2).
#[test]
fn a_lists_error_code_is_not_a_listing() -> Result<()> {
    let dir = TestDir::new("dnsbl-error-code")?;
    let dns = Dns::start(
        dir.path(),
        &[
            "--host-record=1.0.0.127.err.test,127.255.255.254",
            "--host-record=1.0.0.127.wild.test,10.0.0.1",
            "--host-record=1.0.0.127.refused.test,127.0.0.1",
            &listed_in("score.test"),
        ],
    )?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &dns.resolver())
            .set_list(
                "access",
                "dnsbl",
                &["err.test", "wild.test", "refused.test"],
            )
            .set_list(
                "spam",
                "dnsbl",
                &["err.test:2.0", "wild.test:2.0", "score.test:3.0"],
            )
            .set_str("spam", "spf", "off"),
    )?;
    for _ in 0..2 {
        // Greeted (not refused with 554), and the message taken.
        send_plain(daemon.port, "alice@sender.test", "bob@example.com")?;
    }
    let got = sink
        .wait_for_count(2, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(daemon.log()))?;
    for m in &got {
        let spam = m.header("X-Mailward-Spam").unwrap_or_default();
        ensure!(
            spam.contains("DNSBL_SCORE_TEST")
                && !spam.contains("DNSBL_ERR_TEST")
                && !spam.contains("DNSBL_WILD_TEST"),
            "only the real listing scores: {spam}"
        );
    }
    let log = daemon.full_log();
    for zone in ["err.test", "refused.test"] {
        let lines = log
            .lines()
            .filter(|l| {
                l.contains("DNS list answered with an error code")
                    && l.contains(&format!("zone={zone} "))
            })
            .count();
        ensure!(
            lines == 1,
            "{zone}'s error code is logged once (not per client or list kind), got {lines}:\n{log}"
        );
    }
    ensure!(
        log.contains("zone=err.test answer=127.255.255.254"),
        "the warning names the answer:\n{log}"
    );
    Ok(())
}

/// DKIM and DMARC whose look-ups get no answer: an unsigned message is
/// `dkim=none` (it needs no DNS) and counts no signature, a signed one is
/// `temperror` for its signature, and DMARC is `dmarc=temperror`, counted
/// (walkI 6, walkJ F2). The server itself answers (dnsmasq), the From
/// domain's zone is forwarded to a socket that never does.
#[test]
fn dkim_and_dmarc_without_an_answer_are_temperror_but_unsigned_is_none() -> Result<()> {
    let dir = TestDir::new("dkim-no-answer")?;
    let (_silent, silent_at) = silent_dns()?;
    let port: u16 = silent_at.rsplit_once(':').map_or("", |(_, p)| p).parse()?;
    let server = Dns::start(
        dir.path(),
        &[&format!("--server=/sender.test/127.0.0.1#{port}")],
    )?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &server.resolver())
            .set_str("spam", "spf", "off")
            .set_str("timeouts", "dns", "2s")
            .set_str("timeouts", "scan_in_session", "5s"),
    )?;
    let unsigned = b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: unsigned\r\nDate: Tue, 1 Dec 2026 18:00:00 +0000\r\nMessage-ID: <unsigned@sender.test>\r\n\r\nHello.\r\n";
    let signed = b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=sender.test;\r\n s=sel; h=from:to:subject; bh=AAAA; b=AAAA\r\nFrom: alice@sender.test\r\nTo: bob@example.com\r\nSubject: signed\r\nDate: Tue, 1 Dec 2026 18:00:00 +0000\r\nMessage-ID: <signed@sender.test>\r\n\r\nHello.\r\n";
    for message in [&unsigned[..], &signed[..]] {
        let mut c = SmtpClient::connect_ok(daemon.port)?;
        c.ehlo("client.test")?;
        c.send_mail_ok("alice@sender.test", &["bob@example.com"], message)?;
    }
    let got = sink
        .wait_for_count(2, DELIVERY_TIMEOUT)
        .map_err(|e| e.context(daemon.log()))?;
    let results = |subject: &str| -> String {
        got.iter()
            .find(|m| m.header("Subject").as_deref() == Some(subject))
            .and_then(|m| m.header("Authentication-Results"))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let unsigned = results("unsigned");
    ensure!(
        unsigned.contains("dkim=none;")
            && unsigned.contains("dmarc=temperror header.from=sender.test"),
        "unsigned: dkim=none, DMARC temperror: {unsigned}"
    );
    let signed = results("signed");
    ensure!(
        signed.contains("dkim=temperror header.d=sender.test;")
            && signed.contains("dmarc=temperror header.from=sender.test"),
        "signed: the signature and DMARC temperror: {signed}"
    );
    let m = stats.scrape()?;
    let count = |name: &str, result: &str| m.get(name, &[("result", result)]).unwrap_or(0.0);
    ensure!(
        count("mailward_dkim_signatures_total", "temperror") == 1.0,
        "one signature, the signed message's, is counted: {}",
        count("mailward_dkim_signatures_total", "temperror")
    );
    ensure!(
        count("mailward_dmarc_checks_total", "temperror") == 2.0,
        "both DMARC evaluations are counted as temperror: {}",
        count("mailward_dmarc_checks_total", "temperror")
    );
    Ok(())
}

/// The same when the whole DNS server is silent and known to be (its probe
/// got no answer): the message does not wait, and gets the same results as
/// a look-up without an answer: unsigned is `dkim=none`, DMARC `temperror`
/// (it said `dkim=temperror` with no DMARC before).
#[test]
fn a_server_known_silent_gives_the_same_dkim_and_dmarc_results() -> Result<()> {
    let dir = TestDir::new("dkim-silent-server")?;
    let (_silent, silent_at) = silent_dns()?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &silent_at)
            .set_str("spam", "spf", "off")
            .set_str("timeouts", "dns", "1s")
            .set_str("timeouts", "scan_in_session", "5s"),
    )?;
    let unsigned = b"From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: unsigned\r\nDate: Tue, 1 Dec 2026 18:00:00 +0000\r\nMessage-ID: <unsigned@sender.test>\r\n\r\nHello.\r\n";
    // Until the probe has marked the server silent, messages wait for
    // their own look-ups; the ones after it do not.
    wait_until("the server known silent", Duration::from_secs(30), || {
        let mut c = SmtpClient::connect_ok(daemon.port)?;
        c.ehlo("client.test")?;
        c.send_mail_ok("alice@sender.test", &["bob@example.com"], unsigned)?;
        let status: serde_json::Value =
            serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
        Ok((!status["dns"]["server_silent_since"].is_null()).then_some(()))
    })?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    let id = c.send_mail_ok("alice@sender.test", &["bob@example.com"], unsigned)?;
    let got = wait_until("the last message", DELIVERY_TIMEOUT, || {
        Ok(sink
            .messages()?
            .into_iter()
            .find(|m| m.queue_ids().contains(&id)))
    })
    .map_err(|e| e.context(daemon.log()))?;
    let results = got
        .header("Authentication-Results")
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    ensure!(
        results.contains("dkim=none;")
            && results.contains("dmarc=temperror header.from=sender.test"),
        "unsigned with the server known silent: {results}"
    );
    Ok(())
}

/// A DNS server that answers every query "no such name" (NXDOMAIN), each
/// after `delay`: a DNS list that answers, but slowly. The socket's
/// address for `access.dns_resolver`; the thread ends with the process.
fn slow_dns(delay: Duration) -> Result<String> {
    answering_dns(delay, 3)
}

/// A DNS server that answers every query with the response code `rcode`
/// (3 NXDOMAIN, 5 REFUSED) and no records, each after `delay`. The
/// socket's address for `access.dns_resolver`; the thread ends with the
/// process.
fn answering_dns(delay: Duration, rcode: u8) -> Result<String> {
    let socket = bind_free_udp()?;
    let address = socket.local_addr()?.to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..n];
            // The header and the question only (no EDNS record back).
            let mut end = 12;
            while end < n && query[end] != 0 {
                end += 1 + query[end] as usize;
            }
            end += 5;
            if n < 12 || end > n {
                continue;
            }
            let mut answer = query[..end].to_vec();
            answer[2] |= 0x80; // a response
            answer[3] = 0x80 | rcode; // recursion available
            for b in &mut answer[6..12] {
                *b = 0; // no answer, authority or additional records
            }
            std::thread::sleep(delay);
            let _ = socket.send_to(&answer, from);
        }
    });
    Ok(address)
}

/// walkAH 11: a DNS list that answered just under `timeouts.dns` delayed
/// every greeting by that much, and nothing said so (its look-ups were
/// answered, so none counted as failed). An answer that takes more than
/// half of `timeouts.dns` is a warning naming the zone and the time, once
/// in 10 minutes per zone.
#[test]
fn a_dns_list_that_answers_slowly_is_named_in_the_log() -> Result<()> {
    let dir = TestDir::new("dns-slow-list")?;
    let resolver = slow_dns(Duration::from_millis(1_300))?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &resolver)
            .set_list("access", "dnsbl", &["slow.test"])
            .set_str("timeouts", "dns", "2s"),
    )?;
    for _ in 0..2 {
        let asked = std::time::Instant::now();
        let c = SmtpClient::connect_ok(daemon.port)?;
        let greeted = asked.elapsed();
        ensure!(
            greeted >= Duration::from_millis(1_200),
            "greeted after {greeted:?}: the slow list was not waited for"
        );
        c.quit();
    }
    let log = daemon.log();
    let slow: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("A DNS list answers slowly"))
        .collect();
    ensure!(
        slow.len() == 1,
        "want one warning for two slow greetings, got {}:\n{log}",
        slow.len()
    );
    for want in ["WARN", "zone=slow.test", "took_ms=1", "timeout_ms=2000"] {
        ensure!(slow[0].contains(want), "`{want}` missing from: {}", slow[0]);
    }
    Ok(())
}

/// walkAK 2: a DNS server that will not resolve for this host (an unbound
/// whose access-control does not allow it, a dnsmasq without upstream
/// servers) answers REFUSED at once, and `mailward status` said its
/// look-ups "got no answer": the operator looked for a dead server or a
/// firewall. It says they were refused, by whom, and what to change; the
/// JSON counts them.
#[test]
fn a_dns_server_that_refuses_is_named_as_refusing_in_the_status() -> Result<()> {
    let dir = TestDir::new("dns-refused")?;
    let resolver = answering_dns(Duration::ZERO, 5)?;
    let sink = Sink::start(dir.path(), "sink")?;
    let stats = mailward_e2e::stats::StatsSetup::new(dir.path());
    let daemon = Daemon::start(
        &outside_client(&stats, dir.path(), sink.port, &resolver).set_list(
            "access",
            "dnsbl",
            &["bl.test", "bl2.test"],
        ),
    )?;
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        let c = SmtpClient::connect_ok(daemon.port)?;
        ensure!(
            asked.elapsed() < Duration::from_secs(2),
            "greeted after {:?}: a refusal is not waited for",
            asked.elapsed()
        );
        c.quit();
    }
    let status = wait_until(
        "the refused look-ups in the status",
        Duration::from_secs(10),
        || {
            let s: serde_json::Value =
                serde_json::from_str(&daemon.cli_ok(&["status", "--json"])?)?;
            Ok((s["dns"]["recent_refused"].as_u64() >= Some(6)).then_some(s))
        },
    )
    .map_err(|e| e.context(daemon.log()))?;
    ensure!(
        status["dns"]["recent_refused"] == status["dns"]["recent_asked"]
            && status["dns"]["server_silent_since"].is_null(),
        "every list look-up was refused, and the server answers: {}",
        status["dns"]
    );
    let problems = status["problems"].to_string();
    ensure!(
        problems.contains(&format!(
            "DNS look-ups were REFUSED by {resolver}: it does not resolve for this host."
        )) && problems.contains("or set access.dns_resolver to a server that does")
            && !problems.contains("got no answer"),
        "the refusal named as such, not as silence: {problems}"
    );
    let text = daemon.cli_ok(&["status"])?;
    ensure!(
        text.contains("list, MX, address and PTR look-ups REFUSED"),
        "the dns line counts the refusals:\n{text}"
    );
    Ok(())
}
