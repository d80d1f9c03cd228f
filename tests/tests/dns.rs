//! DNS against a real server (dnsmasq): a DNSBL refusing a listed client
//! at connect, and routing by MX (and by the A record when there is no MX).

use std::time::Duration;

use anyhow::Result;
use mailward_e2e::*;

/// dnsmasq option listing 127.0.0.1 (looked up as 1.0.0.127.ZONE) in `zone`.
fn listed_in(zone: &str) -> String {
    format!("--host-record=1.0.0.127.{zone},127.0.0.2")
}

#[test]
fn listed_client_is_refused_at_connect() -> Result<()> {
    let dir = TestDir::new("dnsbl-listed")?;
    let dns = Dns::start(dir.path(), &[&listed_in("bl.test")])?;
    let sink = Sink::start(dir.path(), "sink")?;
    let daemon = Daemon::start(
        &Config::new(dir.path())
            .route_to_port("*", sink.port)
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
            .set_list("access", "dnsbl", &["bl.test"])
            .set_str("access", "dns_resolver", &dns.resolver()),
    )?;
    let mut c = SmtpClient::connect_ok(daemon.port)?;
    c.ehlo("client.test")?;
    c.send_mail_ok(
        "alice@sender.test",
        &["bob@example.com"],
        &read_resource("mail/plain.eml")?,
    )?;
    sink.wait_for_count(1, DELIVERY_TIMEOUT)?;
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
    let daemon = Daemon::start(
        &Config::new(dir.path())
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
