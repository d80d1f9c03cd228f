//! DNS look-ups the gateway needs: DNSBL at connect, MX and address records
//! for delivery, reverse names for `host` access rules. One resolver, with
//! the server and timeout of the configuration. A slow or dead DNS server
//! must never stop mail: every look-up is bounded by `timeouts.dns`, and the
//! callers decide what a failure means (DNSBL: not listed; MX: try later).

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (`nx`: NXDOMAIN) or has no such record: a
    /// permanent answer. Which one matters to a sender who mistyped a
    /// domain.
    #[error("{name}: {}", if *nx { "no such domain".to_string() } else { format!("no {kind} record") })]
    NotFound {
        name: String,
        kind: &'static str,
        nx: bool,
    },
    /// The server did not answer usefully in time: try again later.
    #[error("{name}: {kind} look-up failed: {message}")]
    Temporary {
        name: String,
        kind: &'static str,
        message: String,
    },
    /// A DNS list zone that has not answered lately was not asked
    /// ([`ZoneHealth`]).
    #[error("{zone}: not asked: its last look-ups got no answer")]
    Resting { zone: String },
    /// A DNS list was not asked because the DNS server does not answer
    /// its probes ([`Dns::doubt_server`]).
    #[error("{zone}: not asked: the DNS server does not answer")]
    ServerSilent { zone: String },
    #[error("cannot set up the resolver: {0}")]
    Setup(String),
}

impl DnsError {
    /// A look-up not made (a resting zone, a silent server), as opposed
    /// to one that was made and failed.
    pub fn is_skip(&self) -> bool {
        matches!(
            self,
            DnsError::Resting { .. } | DnsError::ServerSilent { .. }
        )
    }

    fn from_resolve(name: &str, kind: &'static str, e: NetError) -> DnsError {
        if e.is_no_records_found() || e.is_nx_domain() {
            DnsError::NotFound {
                name: name.to_string(),
                kind,
                nx: e.is_nx_domain(),
            }
        } else {
            DnsError::Temporary {
                name: name.to_string(),
                kind,
                message: e.to_string(),
            }
        }
    }
}

/// Less DNS time than this left for the URI lists of a message: not worth
/// a query (an answer cannot come back in time, short of a cached one).
const MIN_URI_BUDGET: Duration = Duration::from_millis(10);

/// What DNSBL look-ups gave, for the statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsblTally {
    pub listed: u64,
    pub not_listed: u64,
    pub failed: u64,
}

impl DnsblTally {
    /// Look-ups that got an answer (listed or not).
    pub fn answered(&self) -> u64 {
        self.listed + self.not_listed
    }

    pub fn event(self) -> mailward_metrics::Event<'static> {
        mailward_metrics::Event::DnsblLookups {
            listed: self.listed,
            not_listed: self.not_listed,
            failed: self.failed,
        }
    }
}

/// What delivery's look-ups for one next hop gave (MX, A/AAAA).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupTally {
    pub answered: u64,
    /// No such name or record: an answer too.
    pub not_found: u64,
    /// A timeout or a server failure: no answer.
    pub failed: u64,
}

impl LookupTally {
    /// Adds one look-up's result.
    pub fn note<T>(&mut self, result: &Result<T, DnsError>) {
        match result {
            Ok(_) => self.answered += 1,
            Err(DnsError::NotFound { .. }) => self.not_found += 1,
            Err(_) => self.failed += 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == LookupTally::default()
    }

    pub fn event(self) -> mailward_metrics::Event<'static> {
        mailward_metrics::Event::DeliveryDnsLookups {
            answered: self.answered,
            not_found: self.not_found,
            failed: self.failed,
        }
    }
}

pub struct Dns {
    resolver: TokioResolver,
    /// SPF, DKIM and DMARC (mail-auth) over the same resolver.
    authenticator: mail_auth::MessageAuthenticator,
    timeout: Duration,
    /// The servers asked (address and port of each connection), to tell
    /// whether a reload changed them.
    servers: Vec<SocketAddr>,
    /// Which DNS list zones answer lately (kept by a reload that leaves
    /// the servers alone: [`Dns::keep_health_of`]).
    zones: std::sync::Arc<ZoneHealth>,
    /// Whether the DNS server itself answers (shared with its probes).
    server: std::sync::Arc<ServerHealth>,
    /// When each DNS list zone last had its error code logged, so that a
    /// list refusing our resolver logs once an hour, not once a client.
    refusals: std::sync::Arc<ListRefusals>,
    /// When each DNS list zone last had a slow answer logged (walkAH 11:
    /// a list answering just under `timeouts.dns` delayed every greeting
    /// without a word).
    slow: std::sync::Arc<SlowLists>,
    /// What the last look-ups this resolver made itself (DNS lists, MX,
    /// A/AAAA, PTR) got, REFUSED apart (walkAK 2: a server that refuses
    /// to resolve for this host was reported as one that does not
    /// answer). Kept here, where the response code is known: the
    /// callers' tallies only say failed, and SPF and DKIM go through
    /// mail-auth, which does not tell.
    asked: std::sync::Arc<RecentLookups>,
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub host: String,
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Dns {
    /// `server` None = the system's resolver configuration.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Dns, DnsError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.cache_size = 1024;
        opts.use_hosts_file = ResolveHosts::Never;
        let (config, opts) = match server {
            Some(addr) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                let ns = NameServerConfig::new(addr.ip(), true, connections);
                (ResolverConfig::from_parts(None, vec![], vec![ns]), opts)
            }
            None => {
                let (config, mut sys) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| DnsError::Setup(format!("/etc/resolv.conf: {e}")))?;
                sys.timeout = timeout;
                sys.attempts = 1;
                sys.cache_size = 1024;
                (config, sys)
            }
        };
        let servers = config
            .name_servers()
            .iter()
            .flat_map(|ns| {
                ns.connections
                    .iter()
                    .map(|c| SocketAddr::new(ns.ip, c.port))
            })
            .collect();
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        let authenticator = mail_auth::MessageAuthenticator(resolver.clone());
        Ok(Dns {
            resolver,
            authenticator,
            timeout,
            servers,
            zones: std::sync::Arc::default(),
            server: std::sync::Arc::default(),
            refusals: std::sync::Arc::default(),
            slow: std::sync::Arc::default(),
            asked: std::sync::Arc::default(),
        })
    }

    /// Takes over what `old` learnt of the DNS server (silent or not) and
    /// of the list zones (which rest) when both ask the same servers with
    /// the same timeout; returns whether it did. A reload that leaves the
    /// DNS alone (logrotate's SIGHUP, a new rule) must not make the next
    /// clients wait again for a server or a zone known not to answer; a
    /// reload that names another server, or a resolv.conf that now does,
    /// starts afresh. The answers cached by the old resolver are not
    /// taken over (a reload also flushes them, as before).
    pub fn keep_health_of(&mut self, old: &Dns) -> bool {
        if self.servers != old.servers || self.timeout != old.timeout {
            return false;
        }
        self.zones = old.zones.clone();
        self.server = old.server.clone();
        self.refusals = old.refusals.clone();
        self.slow = old.slow.clone();
        self.asked = old.asked.clone();
        true
    }

    /// Whether the DNS server answers, as far as the last probe knows:
    /// false from a probe that got no answer until one that does. SPF and
    /// DKIM/DMARC are not asked meanwhile (temperror at once): every
    /// message would otherwise wait `timeouts.dns` at MAIL and again after
    /// DATA to learn nothing.
    pub fn server_answers(&self) -> bool {
        self.server.silent_since().is_none()
    }

    /// Since when the DNS server has not answered (None: it answers).
    pub fn server_silent_since(&self) -> Option<std::time::SystemTime> {
        self.server.silent_since()
    }

    /// How many times a probe found the DNS server back after silence
    /// (for [`RecentLookups::since_return`]).
    pub fn server_returns(&self) -> u64 {
        self.server.returns()
    }

    /// Whether the last probe of the DNS server was answered REFUSED
    /// (with the question or without it, as unbound refuses).
    pub fn server_refuses(&self) -> bool {
        self.server.refuses()
    }

    /// (refused, looked up) over the last look-ups this resolver made
    /// itself (DNS lists, MX, A/AAAA, PTR; at most
    /// [`RecentLookups::SPAN`]): how many the server answered REFUSED.
    pub fn refused_of(&self) -> (u32, u32) {
        self.asked.refused_of()
    }

    /// A look-up failed (sender authentication, a DNS list), or was
    /// skipped because the server is silent: probe the server (in the
    /// background; at most one probe in flight and one start per
    /// [`ServerHealth::PROBE_EVERY`]; while the server is silent, one every
    /// [`ServerHealth::PROBE_EVERY`] whether mail comes or not).
    /// The probe asks for a name made up for it, so that no cache (ours or
    /// the server's) can answer for the server: any reply, even "no such
    /// name" or "refused", shows the server answers; no reply within
    /// `timeouts.dns` shows it does not. A failed SPF look-up alone says
    /// nothing of the server (the sender's own name servers may be the
    /// dead ones), which is why the probe decides.
    pub fn doubt_server(&self) {
        if !self.server.probe_due(std::time::Instant::now()) {
            return;
        }
        let (resolver, health, timeout) =
            (self.resolver.clone(), self.server.clone(), self.timeout);
        let servers: Vec<SocketAddr> = self.servers.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Outside the runtime (never, for the gateway's callers):
            // nothing learnt, so nothing changes.
            health.abandon();
            return;
        };
        runtime.spawn(async move {
            loop {
                let name = probe_name();
                // The library's look-up and one by hand side by side
                // ([`raw_probe`]: a reply the library will not take),
                // each within `timeouts.dns`; the library's word first.
                let (library, by_hand) = tokio::join!(
                    tokio::time::timeout(
                        timeout + Duration::from_millis(100),
                        resolver.ipv4_lookup(name.as_str()),
                    ),
                    raw_probe(&servers, &name, timeout)
                );
                let reply = match library {
                    Ok(Ok(_)) => ProbeReply::Answer,
                    // A reply of any kind: the server is there.
                    Ok(Err(e @ NetError::Dns(_))) => match Outcome::of(&e) {
                        Outcome::Refused => ProbeReply::Refused,
                        _ => ProbeReply::Answer,
                    },
                    // Nothing the library could use in time. A REFUSED it
                    // would not take (unbound's, without the question)
                    // leaves every look-up waiting `timeouts.dns` as a
                    // silent server does, so it is one for the look-ups
                    // (not asked meanwhile), said as refusing. Any other
                    // reply to the question asked once by hand is the
                    // server's word: the library, which asks again after
                    // a REFUSED, may run out of time at a slow server
                    // that answers (walkBW 5: a dnsmasq 2 s away was said
                    // to refuse without the question, and every DNS test
                    // was switched off).
                    Ok(Err(_)) | Err(_) => by_hand,
                };
                match health.probed(reply) {
                    Some(true) if reply == ProbeReply::RefusedUnusable => tracing::warn!(target: "app", probe = %name,
                        probe_every_s = ServerHealth::PROBE_EVERY.as_secs(),
                        "DNS server answers REFUSED without the question, which the resolver cannot use: it does not resolve for this host; SPF and DKIM/DMARC (temperror) and the DNS lists (not listed) are not asked until a probe is answered."),
                    Some(true) => tracing::warn!(target: "app", probe = %name, timeout_s = timeout.as_secs_f64(),
                        probe_every_s = ServerHealth::PROBE_EVERY.as_secs(),
                        "DNS server does not answer: SPF and DKIM/DMARC (temperror) and the DNS lists (not listed) are not asked until a probe is answered."),
                    Some(false) => tracing::info!(target: "app",
                        "DNS server answers again: SPF, DKIM/DMARC and the DNS lists are asked again."),
                    None => {}
                }
                // While the server is silent the probes go on by the clock:
                // riding on look-ups alone, a quiet gateway found the
                // server back only when a message came, and judged that
                // message without the DNS lists (walkAK 6). They stop once
                // one is answered, when a look-up has started one of its
                // own, or when no gateway uses this health any more (a
                // reload that named another server).
                if health.silent_since().is_none() {
                    break;
                }
                tokio::time::sleep(ServerHealth::PROBE_EVERY).await;
                if std::sync::Arc::strong_count(&health) == 1
                    || !health.probe_due(std::time::Instant::now())
                {
                    break;
                }
            }
        });
    }

    /// SPF, DKIM and DMARC (through mail-auth) on the gateway's resolver:
    /// one server and one timeout for all of the gateway's look-ups.
    pub fn authenticator(&self) -> &mail_auth::MessageAuthenticator {
        &self.authenticator
    }

    /// The DNS list zones resting now (no answer to their last look-ups),
    /// by name.
    pub fn resting_zones(&self) -> Vec<String> {
        self.zones.resting()
    }

    /// How many DNS list zones rest now.
    pub fn resting_count(&self) -> usize {
        self.zones.resting_count()
    }

    /// Asks DNS list `zone` for `name`, unless the DNS server is known
    /// not to answer or the zone rests ([`ZoneHealth`]); what it gave is
    /// noted for the zone. A look-up without an answer, or not made because
    /// the server is silent, has the server probed: a dead server is then
    /// found, and its return noticed, with only the lists configured (no
    /// SPF), and while it is silent no list look-up waits for it (each zone
    /// would otherwise wait its [`ZoneHealth::REST_AFTER`] look-ups before
    /// resting, and all of them again after the server's return).
    async fn ask_list(&self, zone: &str, name: &str) -> Result<Option<IpAddr>, DnsError> {
        let zone = zone.trim_end_matches('.');
        if !self.server_answers() {
            self.doubt_server();
            return Err(DnsError::ServerSilent {
                zone: zone.to_string(),
            });
        }
        if self.zones.is_resting(zone) {
            // Its probe, when one is due, runs in the background, as the
            // server's does: no client waits `timeouts.dns` for a list
            // that is most likely still dead (walkQ finding 4), and this
            // look-up counts as not made.
            if self.zones.may_ask(zone, std::time::Instant::now()) {
                self.probe_zone(zone, name);
            }
            return Err(DnsError::Resting {
                zone: zone.to_string(),
            });
        }
        let r = self.list_entry(name).await;
        self.noted(zone, r.is_ok());
        Ok(self.listing(zone, &r?))
    }

    /// The listing among a DNS list's answers (the first that is one, by
    /// [`list_answer`]), if any; an error code among them is logged for
    /// the zone, at most once per [`ListRefusals::LOG_EVERY`].
    fn listing(&self, zone: &str, answers: &[std::net::Ipv4Addr]) -> Option<IpAddr> {
        let mut refusal = None;
        for a in answers {
            match list_answer(*a) {
                ListAnswer::Listed => return Some(IpAddr::V4(*a)),
                ListAnswer::Refusal => refusal = refusal.or(Some(*a)),
                ListAnswer::NotListing => {}
            }
        }
        if let Some(a) = refusal {
            if self
                .refusals
                .first_in_a_while(zone, std::time::Instant::now())
            {
                tracing::warn!(target: "app", zone = %zone, answer = %a,
                    log_every_s = ListRefusals::LOG_EVERY.as_secs(),
                    "DNS list answered with an error code, not a listing: it usually refuses queries from this resolver (a public or shared one, or one over the list's limit); until it answers properly it lists nothing. Logged once an hour per zone.");
            }
        }
        None
    }

    /// Asks resting DNS list `zone` for `name` in the background (the
    /// look-up a client would have made, whose answer no one waits for):
    /// an answer ends the rest, a failure is no news (the server is not
    /// probed for it, as in [`Self::noted`]).
    fn probe_zone(&self, zone: &str, name: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Outside the runtime (never, for the gateway's callers): the
            // next probe is due in PROBE_EVERY.
            return;
        };
        let (resolver, zones, asked, timeout) = (
            self.resolver.clone(),
            self.zones.clone(),
            self.asked.clone(),
            self.timeout,
        );
        let (zone, name) = (zone.to_string(), fqdn(name));
        runtime.spawn(async move {
            // "No such name" is an answer, as for a client's look-up
            // ([`Dns::list_entry`]); REFUSED is not.
            let outcome = match tokio::time::timeout(
                timeout + Duration::from_millis(100),
                resolver.ipv4_lookup(name.as_str()),
            )
            .await
            {
                Ok(Ok(_)) => Outcome::Answered,
                Ok(Err(e)) => Outcome::of(&e),
                Err(_) => Outcome::Failed,
            };
            asked.note_one(outcome);
            let answered = outcome == Outcome::Answered;
            log_rest(
                &zone,
                zones.note(&zone, answered, std::time::Instant::now()),
            );
        });
    }

    /// Notes for DNS list `zone` whether a look-up got an answer, and logs
    /// when the zone begins or ends a rest. A failure of a zone that is not
    /// resting has the server probed ([`Self::doubt_server`]); the failed
    /// probe of a resting zone is no news and probes nothing (a list that
    /// has died for good would otherwise have the server probed every 5 s
    /// for as long as mail comes in).
    fn noted(&self, zone: &str, answered: bool) {
        let zone = zone.trim_end_matches('.');
        if !answered && !self.zones.is_resting(zone) {
            self.doubt_server();
        }
        log_rest(
            zone,
            self.zones.note(zone, answered, std::time::Instant::now()),
        );
    }

    /// The configured per-look-up timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Bounds a look-up by the configured timeout (hickory's own timeout is
    /// per query; a resolver with several servers could take longer).
    async fn bounded<T>(
        &self,
        name: &str,
        kind: &'static str,
        fut: impl std::future::Future<Output = Result<T, NetError>>,
    ) -> Result<T, DnsError> {
        let r = tokio::time::timeout(self.timeout + Duration::from_millis(100), fut).await;
        self.asked.note_one(match &r {
            Ok(Ok(_)) => Outcome::Answered,
            Ok(Err(e)) => Outcome::of(e),
            Err(_) => Outcome::Failed,
        });
        match r {
            Ok(r) => r.map_err(|e| DnsError::from_resolve(name, kind, e)),
            Err(_) => Err(DnsError::Temporary {
                name: name.to_string(),
                kind,
                message: "timed out".into(),
            }),
        }
    }

    /// MX records of `domain`, by preference.
    pub async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        let name = fqdn(domain);
        let lookup = self
            .bounded(domain, "MX", self.resolver.mx_lookup(name.as_str()))
            .await?;
        let mut out: Vec<Mx> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference,
                    host: mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|m| m.preference);
        Ok(out)
    }

    /// Addresses of `host` (A and AAAA); an address literal is its own,
    /// without a look-up.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = address_literal(host) {
            return Ok(vec![ip]);
        }
        let name = fqdn(host);
        let lookup = self
            .bounded(host, "A/AAAA", self.resolver.lookup_ip(name.as_str()))
            .await?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(DnsError::NotFound {
                name: host.to_string(),
                kind: "A/AAAA",
                nx: false,
            });
        }
        Ok(ips)
    }

    /// The first zone of `zones` (in their order) that lists `ip`, with the
    /// answer, and what the look-ups gave. Every zone is asked at once, as
    /// Postfix's postscreen does: a DNS server that does not answer costs
    /// the client one `timeouts.dns` before its greeting, not one per zone.
    /// A zone that does not answer in time counts as "not listed" (and as
    /// failed in the tally).
    pub async fn dnsbl(
        &self,
        ip: IpAddr,
        zones: &[String],
    ) -> (Option<(String, IpAddr)>, DnsblTally) {
        let answers =
            futures_util::future::join_all(zones.iter().map(|z| self.dnsbl_zone(ip, z))).await;
        let mut tally = DnsblTally::default();
        let mut first = None;
        let mut failures = DnsblFailures::default();
        for (zone, r) in zones.iter().zip(answers) {
            match r {
                Ok(Some(answer)) => {
                    tally.listed += 1;
                    first = first.or_else(|| Some((zone.clone(), answer)));
                }
                Ok(None) => tally.not_listed += 1,
                Err(e) => {
                    tally.failed += 1;
                    failures.note(zone, e);
                }
            }
        }
        failures.log(ip);
        (first, tally)
    }

    /// One zone: Ok(Some(answer)) listed, Ok(None) not listed, Err: no
    /// usable answer.
    async fn dnsbl_zone(&self, ip: IpAddr, zone: &str) -> Result<Option<IpAddr>, DnsError> {
        let reversed = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let mut nibbles = Vec::with_capacity(32);
                for b in v6.octets().iter().rev() {
                    nibbles.push(format!("{:x}", b & 0xf));
                    nibbles.push(format!("{:x}", b >> 4));
                }
                nibbles.join(".")
            }
        };
        let name = format!("{reversed}.{}", zone.trim_end_matches('.'));
        let started = std::time::Instant::now();
        let answer = self.ask_list(zone, &name).await;
        // An answer that took more than half of timeouts.dns: the client
        // waited that long for its greeting (or its XFORWARD/milter
        // verdict). One that did not come in time is counted and logged
        // as failed already.
        let took = started.elapsed();
        if answer.is_ok()
            && took > self.timeout / 2
            && self.slow.first_in_a_while(zone, std::time::Instant::now())
        {
            tracing::warn!(target: "app", zone = %zone, took_ms = took.as_millis() as u64,
                timeout_ms = self.timeout.as_millis() as u64,
                "A DNS list answers slowly (more than half of timeouts.dns); every client waits for it before its greeting. Said at most once in 10 minutes per zone.");
        }
        answer
    }

    /// A DNS list entry: the A records of `name` (none when there is no
    /// such name), which [`list_answer`] reads.
    async fn list_entry(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, DnsError> {
        match self
            .bounded(name, "A", self.resolver.ipv4_lookup(fqdn(name).as_str()))
            .await
        {
            Ok(answer) => Ok(answer
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()),
            Err(DnsError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Which of `domains` the URI lists `zones` hold (SURBL, URIBL: the
    /// zone lists registered domains as `DOMAIN.ZONE`), all asked at once
    /// and waited for at most `budget` (what is left of the message's DNS
    /// time after DKIM and DMARC): (index of the zone, domain) per listing,
    /// and what the look-ups gave. A look-up without an answer in time,
    /// or not asked because the budget was spent, counts as failed (the
    /// link as not listed), and the failures of one message make one log
    /// line. What counts as a listing is [`list_answer`]'s (as for the
    /// client lists).
    pub async fn uri_listed(
        &self,
        domains: &[String],
        zones: &[&str],
        budget: Duration,
        queue_id: &str,
    ) -> (Vec<(usize, String)>, DnsblTally) {
        let mut tally = DnsblTally::default();
        let mut listed = Vec::new();
        let asked = (domains.len() * zones.len()) as u64;
        if budget < MIN_URI_BUDGET {
            tally.failed = asked;
            if asked > 0 {
                tracing::warn!(target: "scan", queue_id = %queue_id, lookups = asked,
                    "URI lists not asked: DKIM and DMARC used up this message's DNS time (timeouts.dns); its links count as not listed.");
            }
            return (listed, tally);
        }
        let lookups = zones.iter().enumerate().flat_map(|(z, zone)| {
            domains.iter().map(move |d| async move {
                let name = format!("{d}.{}", zone.trim_end_matches('.'));
                let answer = match tokio::time::timeout(budget, self.ask_list(zone, &name)).await {
                    Ok(r) => r,
                    Err(_) => {
                        // Cut by the budget: the zone's fault only if it
                        // had most of a timeout to answer in.
                        if budget >= self.timeout / 2 {
                            self.noted(zone, false);
                        }
                        Err(DnsError::Temporary {
                            name,
                            kind: "A",
                            message: "timed out".into(),
                        })
                    }
                };
                (z, d, answer)
            })
        });
        let mut first_failure = None;
        for (z, d, r) in futures_util::future::join_all(lookups).await {
            match r {
                Ok(Some(_)) => {
                    tally.listed += 1;
                    listed.push((z, d.clone()));
                }
                Ok(None) => tally.not_listed += 1,
                Err(e) => {
                    tally.failed += 1;
                    // A resting zone was logged once, when it began to
                    // rest, and a silent server when its probe failed.
                    if !e.is_skip() {
                        first_failure.get_or_insert((z, e));
                    }
                }
            }
        }
        if let Some((z, e)) = first_failure {
            tracing::warn!(target: "scan", queue_id = %queue_id, failed = tally.failed, lookups = asked,
                zone = %zones[z], error = %e,
                "URI list look-ups failed; those links count as not listed.");
        }
        (listed, tally)
    }

    /// Every zone of `zones` that lists `ip`, looked up together, and what
    /// the look-ups gave; a zone that does not answer in time counts as
    /// "not listed".
    pub async fn dnsbl_all<'z>(
        &self,
        ip: IpAddr,
        zones: impl IntoIterator<Item = &'z str>,
    ) -> (Vec<String>, DnsblTally) {
        let lookups = zones
            .into_iter()
            .map(|z| async move { (z, self.dnsbl_zone(ip, z).await) });
        let mut tally = DnsblTally::default();
        let mut listed = Vec::new();
        let mut failures = DnsblFailures::default();
        for (zone, r) in futures_util::future::join_all(lookups).await {
            match r {
                Ok(Some(_)) => {
                    tally.listed += 1;
                    listed.push(zone.to_string());
                }
                Ok(None) => tally.not_listed += 1,
                Err(e) => {
                    tally.failed += 1;
                    failures.note(zone, e);
                }
            }
        }
        failures.log(ip);
        (listed, tally)
    }

    /// The reverse name of `ip`, confirmed by a forward look-up, or None.
    ///
    /// For the access rules' `host` patterns, asked before the greeting, so
    /// it may not hold a client longer than the DNS tests do: nothing is
    /// asked while the DNS server is known silent (the client then has no
    /// name, as with an unanswered look-up), a PTR look-up without an
    /// answer has the server probed, and the whole of it (the PTR and the
    /// forward look-ups of at most [`Self::MAX_PTR_NAMES`] names, made
    /// together) takes at most one `timeouts.dns`.
    pub async fn verified_name(&self, ip: IpAddr) -> Option<String> {
        if !self.server_answers() {
            self.doubt_server();
            return None;
        }
        let whole = async {
            let names = match self
                .bounded("PTR", "PTR", self.resolver.reverse_lookup(ip))
                .await
            {
                Ok(names) => names,
                Err(DnsError::Temporary { .. }) => {
                    self.doubt_server();
                    return None;
                }
                Err(_) => return None,
            };
            let hosts: Vec<String> = names
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::PTR(name) => Some(name.0.to_ascii().trim_end_matches('.').to_string()),
                    _ => None,
                })
                .take(Self::MAX_PTR_NAMES)
                .collect();
            let confirmed =
                futures_util::future::join_all(hosts.iter().map(|host| self.ips(host))).await;
            hosts
                .iter()
                .zip(confirmed)
                .find(|(_, ips)| ips.as_ref().is_ok_and(|ips| ips.contains(&ip)))
                .map(|(host, _)| host.clone())
        };
        tokio::time::timeout(self.timeout + Duration::from_millis(100), whole)
            .await
            .ok()
            .flatten()
    }

    /// The PTR names of a client that are looked up forward, at most (as
    /// SPF's `ptr` mechanism, RFC 7208 5.5): a reverse zone may list any
    /// number.
    pub const MAX_PTR_NAMES: usize = 10;
}

/// What one A record from a DNS list (`access.dnsbl`, `[spam] dnsbl`,
/// `[spam] surbl`) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListAnswer {
    /// In 127.0.0.0/8 and no error code: the name is listed (what the
    /// address says, 127.0.0.2 or 127.0.0.4 on Spamhaus, is not read).
    Listed,
    /// The list's own error code: 127.0.0.1 (SURBL's and URIBL's "query
    /// refused") or 127.255.255.x (Spamhaus: .252 a mistyped zone name, .254
    /// a query through a public or open resolver, .255 too many queries).
    /// A list that answers every query so would list every client and
    /// every link.
    Refusal,
    /// Outside 127.0.0.0/8: no list answers so; a wildcard record, a
    /// hijacked or expired zone, or a resolver that rewrites "no such
    /// name" into the address of its search page.
    NotListing,
}

/// What `a`, an answer of a DNS list, says ([`ListAnswer`]).
pub fn list_answer(a: std::net::Ipv4Addr) -> ListAnswer {
    let o = a.octets();
    if o[0] != 127 {
        ListAnswer::NotListing
    } else if o == [127, 0, 0, 1] || o[..3] == [127, 255, 255] {
        ListAnswer::Refusal
    } else {
        ListAnswer::Listed
    }
}

/// When each DNS list zone last had a line of one kind logged, so that
/// it is logged at most once per `SECS` seconds: a list that refuses the
/// resolver, or answers slowly, does so for every client, and one line per
/// client would bury the log.
#[derive(Default)]
pub struct ZoneLogLimit<const SECS: u64>(
    Mutex<std::collections::HashMap<String, std::time::Instant>>,
);

impl<const SECS: u64> ZoneLogLimit<SECS> {
    /// A zone's line is logged at most this often.
    pub const LOG_EVERY: Duration = Duration::from_secs(SECS);

    /// Whether `zone`'s line at `now` is to be logged (none logged in the
    /// last [`Self::LOG_EVERY`]); it is noted as logged if so.
    pub fn first_in_a_while(&self, zone: &str, now: std::time::Instant) -> bool {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match m.get(zone) {
            Some(last) if now.saturating_duration_since(*last) < Self::LOG_EVERY => false,
            _ => {
                m.insert(zone.to_string(), now);
                true
            }
        }
    }
}

/// Error codes from a DNS list ([`ListAnswer::Refusal`]): once an hour per
/// zone.
pub type ListRefusals = ZoneLogLimit<3600>;

/// Slow answers from a DNS list: once in 10 minutes per zone.
pub type SlowLists = ZoneLogLimit<600>;

/// The address `host` is when it is one ("192.0.2.1", "[2001:db8::1]").
pub fn address_literal(host: &str) -> Option<IpAddr> {
    host.trim_matches(|c| c == '[' || c == ']').parse().ok()
}

/// What one DNS look-up got, for [`RecentLookups`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Records, or "no such name or record": an answer.
    Answered,
    /// No answer in time, or a failure the server reported (SERVFAIL).
    Failed,
    /// The server answered REFUSED: it is there, but does not resolve for
    /// this host (a dnsmasq or unbound that allows recursion to others
    /// only). A failure too, whose remedy is on that server.
    Refused,
}

impl Outcome {
    /// What a look-up that ended in `e` got.
    pub fn of(e: &NetError) -> Outcome {
        if matches!(
            e,
            NetError::Dns(hickory_resolver::net::DnsError::ResponseCode(
                ResponseCode::Refused
            ))
        ) {
            Outcome::Refused
        } else if e.is_no_records_found() || e.is_nx_domain() {
            Outcome::Answered
        } else {
            Outcome::Failed
        }
    }
}

/// Whether the last [`RecentLookups::SPAN`] DNS look-ups (DNSBL, URI list,
/// SPF, and delivery's MX and address look-ups) got an answer, and which
/// of those without one the server REFUSED. The statistics count failures
/// since start; this says whether the DNS server answers now, for
/// `mailward status`.
#[derive(Default)]
pub struct RecentLookups(Mutex<Window>);

/// One bit per look-up, the newest lowest: in `bits` 1 failed, in
/// `refused` 1 refused (a refused look-up failed too).
#[derive(Default, Clone, Copy)]
struct Window {
    bits: u64,
    refused: u64,
    len: u32,
    /// The [`ServerHealth::returns`] the window was last read against.
    returns: u64,
}

impl Window {
    fn push(&mut self, failed: bool, refused: bool) {
        self.bits = (self.bits << 1) | u64::from(failed || refused);
        self.refused = (self.refused << 1) | u64::from(refused);
        self.len = (self.len + 1).min(RecentLookups::SPAN);
    }

    /// The bits of the look-ups in the window.
    fn mask(&self) -> u64 {
        if self.len >= RecentLookups::SPAN {
            u64::MAX
        } else {
            (1u64 << self.len) - 1
        }
    }
}

impl RecentLookups {
    pub const SPAN: u32 = u64::BITS;
    /// Look-ups at least before their failures say anything of the
    /// server (one client's broken domain is not the server's fault).
    pub const SAMPLE: u32 = 5;

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        match self.0.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a batch of look-ups (their order within the batch is lost).
    pub fn note(&self, answered: u64, failed: u64) {
        let mut w = self.window();
        let span = u64::from(Self::SPAN);
        for fail in std::iter::repeat_n(false, answered.min(span) as usize)
            .chain(std::iter::repeat_n(true, failed.min(span) as usize))
        {
            w.push(fail, false);
        }
    }

    /// Adds one look-up.
    pub fn note_one(&self, outcome: Outcome) {
        self.window()
            .push(outcome == Outcome::Failed, outcome == Outcome::Refused);
    }

    /// (failed, looked up) over the window; refused look-ups count as
    /// failed.
    pub fn failed_of(&self) -> (u32, u32) {
        let w = *self.window();
        ((w.bits & w.mask()).count_ones(), w.len)
    }

    /// (refused, looked up) over the window.
    pub fn refused_of(&self) -> (u32, u32) {
        let w = *self.window();
        ((w.refused & w.mask()).count_ones(), w.len)
    }

    /// The share of the window's look-ups that failed, in percent; None
    /// below [`Self::SAMPLE`] look-ups.
    pub fn failed_percent(&self) -> Option<u64> {
        let (failed, recent) = self.failed_of();
        (recent >= Self::SAMPLE).then(|| u64::from(failed) * 100 / u64::from(recent))
    }

    /// Forgets the window when the DNS server has come back since it was
    /// last read (`returns`, [`Dns::server_returns`]): the failures of an
    /// outage said "DNS fails" in `mailward status` and kept the
    /// `dns_failed_percent` alert raised, on a quiet gateway for hours,
    /// after a probe had found the server back (walkAM 3). Call before
    /// reading.
    pub fn since_return(&self, returns: u64) -> &Self {
        let mut w = self.window();
        if w.returns != returns {
            *w = Window {
                returns,
                ..Window::default()
            };
        }
        drop(w);
        self
    }
}

/// How each DNS list zone (`[access] dnsbl`, `[spam] dnsbl`, `[spam]
/// surbl`) answers lately. A zone whose last [`ZoneHealth::REST_AFTER`]
/// look-ups got no answer (a dead DNS server, or a dead list) *rests*: it
/// is not asked, and lists nothing, except for one probe every
/// [`ZoneHealth::PROBE_EVERY`]; the first answer ends the rest. Each
/// would otherwise make its client wait `timeouts.dns` to learn nothing.
/// Per zone, so one dead list does not silence the others, and only for
/// the lists: their names are the configuration's and a client's own
/// domain cannot make them fail (SPF, DKIM and delivery's look-ups, whose
/// names a sender chooses, never rest this way; SPF and DKIM are skipped
/// only while the server itself is silent, [`Dns::doubt_server`], and so
/// are the lists).
#[derive(Default)]
pub struct ZoneHealth(Mutex<std::collections::HashMap<String, ZoneState>>);

/// One zone that has failed lately (zones that answer are not kept).
#[derive(Debug, Default)]
struct ZoneState {
    failed_in_a_row: u32,
    /// When it began to rest or was last probed.
    last_probe: Option<std::time::Instant>,
}

impl ZoneState {
    fn rests(&self) -> bool {
        self.failed_in_a_row >= ZoneHealth::REST_AFTER
    }
}

impl ZoneHealth {
    /// Look-ups in a row without an answer after which a zone rests.
    pub const REST_AFTER: u32 = 8;
    /// A resting zone is asked once this often.
    pub const PROBE_EVERY: Duration = Duration::from_secs(5);

    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ZoneState>> {
        match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `zone` may be asked at `now`: yes unless it rests, and then
    /// once per [`Self::PROBE_EVERY`].
    pub fn may_ask(&self, zone: &str, now: std::time::Instant) -> bool {
        let mut m = self.map();
        let Some(s) = m.get_mut(zone) else {
            return true;
        };
        if !s.rests() {
            return true;
        }
        match s.last_probe {
            Some(t) if now.saturating_duration_since(t) < Self::PROBE_EVERY => false,
            _ => {
                s.last_probe = Some(now);
                true
            }
        }
    }

    /// What a look-up of `zone` gave. Some(true): the zone begins to rest
    /// with it; Some(false): it answered after resting.
    pub fn note(&self, zone: &str, answered: bool, now: std::time::Instant) -> Option<bool> {
        let mut m = self.map();
        if answered {
            let was = m.remove(zone)?;
            return was.rests().then_some(false);
        }
        let s = m.entry(zone.to_string()).or_default();
        s.failed_in_a_row = s.failed_in_a_row.saturating_add(1);
        if s.failed_in_a_row == Self::REST_AFTER {
            s.last_probe = Some(now);
            return Some(true);
        }
        None
    }

    /// Whether `zone` rests now.
    pub fn is_resting(&self, zone: &str) -> bool {
        self.map().get(zone).is_some_and(ZoneState::rests)
    }

    /// How many zones rest now.
    pub fn resting_count(&self) -> usize {
        self.map().values().filter(|s| s.rests()).count()
    }

    /// The zones resting now, by name.
    pub fn resting(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map()
            .iter()
            .filter(|(_, s)| s.rests())
            .map(|(z, _)| z.clone())
            .collect();
        v.sort();
        v
    }
}

/// Logs the start (Some(true)) or the end (Some(false)) of a zone's rest,
/// as [`ZoneHealth::note`] says it.
fn log_rest(zone: &str, change: Option<bool>) {
    match change {
        Some(true) => tracing::warn!(target: "app", zone = %zone,
            failed_in_a_row = ZoneHealth::REST_AFTER,
            probe_every_s = ZoneHealth::PROBE_EVERY.as_secs(),
            "DNS list zone rests: its last look-ups got no answer, so it is not asked (it lists nothing) until a probe is answered."),
        Some(false) => tracing::info!(target: "app", zone = %zone,
            "DNS list zone answers again: it is asked again."),
        None => {}
    }
}

/// Whether the DNS server itself answers, as its probes found
/// ([`Dns::doubt_server`]).
#[derive(Default)]
pub struct ServerHealth(Mutex<ServerState>);

#[derive(Debug, Default)]
struct ServerState {
    /// Since when the last probe got no answer (None: it answers).
    silent_since: Option<std::time::SystemTime>,
    /// How many times a probe found the server back after silence.
    returns: u64,
    /// The last probe was answered REFUSED.
    refuses: bool,
    /// When the last probe started.
    last_probe: Option<std::time::Instant>,
    probing: bool,
}

impl ServerHealth {
    /// Probes start at most this often.
    pub const PROBE_EVERY: Duration = Duration::from_secs(5);

    fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        match self.0.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn silent_since(&self) -> Option<std::time::SystemTime> {
        self.state().silent_since
    }

    /// Whether a probe should start at `now` (none in flight and none
    /// started in the last [`Self::PROBE_EVERY`]); if so it counts as
    /// started.
    pub fn probe_due(&self, now: std::time::Instant) -> bool {
        let mut s = self.state();
        let recent = s
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < Self::PROBE_EVERY);
        if s.probing || recent {
            return false;
        }
        s.probing = true;
        s.last_probe = Some(now);
        true
    }

    /// A probe that could not be sent: another may start.
    fn abandon(&self) {
        self.state().probing = false;
    }

    /// How many times a probe found the server back after silence.
    pub fn returns(&self) -> u64 {
        self.state().returns
    }

    /// Whether the last probe was answered REFUSED.
    pub fn refuses(&self) -> bool {
        self.state().refuses
    }

    /// What a probe found (`reply`). Some(true): the server falls silent
    /// with it; Some(false): it answers again; None: no change.
    pub fn probed(&self, reply: ProbeReply) -> Option<bool> {
        let mut s = self.state();
        s.probing = false;
        s.refuses = matches!(reply, ProbeReply::Refused | ProbeReply::RefusedUnusable);
        let answered = matches!(reply, ProbeReply::Answer | ProbeReply::Refused);
        match (answered, s.silent_since.is_some()) {
            (true, true) => {
                s.silent_since = None;
                s.returns += 1;
                Some(false)
            }
            (false, false) => {
                s.silent_since = Some(std::time::SystemTime::now());
                Some(true)
            }
            _ => None,
        }
    }
}

/// What a probe of the DNS server got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeReply {
    /// An answer ("no such name" is one).
    Answer,
    /// REFUSED: the server is there, but does not resolve for this host.
    Refused,
    /// REFUSED in a reply the resolver library does not take (no question
    /// section: unbound's): for the look-ups, as good as no answer.
    RefusedUnusable,
    /// Nothing in time.
    None,
}

/// Asks `servers` (UDP) for `name` once, by hand, and reads the first
/// reply's response code whatever the rest of it holds. unbound's
/// REFUSED (`access-control: ... refuse`) carries no question section,
/// and the resolver library drops such a reply as forged and waits out
/// its timeout (walkAM 1): the server was reported silent while it
/// answered every query. Used when the library's probe got nothing.
async fn raw_probe(servers: &[SocketAddr], name: &str, timeout: Duration) -> ProbeReply {
    use hickory_resolver::proto::op::{Message, Query};
    use hickory_resolver::proto::rr::{Name, RecordType};
    let Ok(qname) = Name::from_ascii(name) else {
        return ProbeReply::None;
    };
    let id: u16 = rand_id();
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname, RecordType::A));
    let Ok(bytes) = query.to_vec() else {
        return ProbeReply::None;
    };
    let mut targets: Vec<SocketAddr> = servers.to_vec();
    targets.sort_unstable();
    targets.dedup();
    let ask = async {
        let bind: SocketAddr = match targets.first() {
            Some(SocketAddr::V6(_)) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            _ => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        };
        let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
        for t in &targets {
            let _ = socket.send_to(&bytes, t).await;
        }
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.ok()?;
            if !targets.contains(&from) {
                continue;
            }
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if reply.metadata.id != id {
                continue;
            }
            return Some(match reply.metadata.response_code {
                ResponseCode::Refused if reply.queries.is_empty() => ProbeReply::RefusedUnusable,
                ResponseCode::Refused => ProbeReply::Refused,
                _ => ProbeReply::Answer,
            });
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(ProbeReply::None)
}

/// A query ID that another probe's is unlikely to be.
fn rand_id() -> u16 {
    static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos as u16) ^ N.fetch_add(0x9e37, std::sync::atomic::Ordering::Relaxed)
}

/// A name of a made-up top-level domain, new for each probe: the server
/// answers it (no such name, or refused) without a cache to answer for it.
/// Not under `.invalid`: the resolver library answers that itself
/// (RFC 6761), without asking the server.
fn probe_name() -> String {
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("mailward-probe-{nanos:08x}{n:x}.")
}

/// The DNSBL zones that gave no usable answer for one client, logged as
/// one line (a dead DNS server would otherwise log a line per zone and
/// connection).
#[derive(Default)]
struct DnsblFailures {
    zones: Vec<String>,
    first: Option<DnsError>,
}

impl DnsblFailures {
    fn note(&mut self, zone: &str, e: DnsError) {
        // A resting zone was logged once, when it began to rest, and a
        // silent server when its probe failed.
        if e.is_skip() {
            return;
        }
        self.zones.push(zone.to_string());
        self.first.get_or_insert(e);
    }

    /// The line names the inbound session when there is one (not in a
    /// milter connection), as its other lines do.
    fn log(self, client: IpAddr) {
        if let Some(e) = self.first {
            tracing::warn!(target: "smtp", session = crate::smtp::session::current().map(tracing::field::display),
                client = %client, zones = %self.zones.join(","), error = %e,
                "DNSBL look-ups failed; the client counts as not listed by those zones.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_list_answer_in_127_8_that_is_no_error_code_is_a_listing() {
        let answer = |s: &str| list_answer(s.parse().unwrap());
        for listed in [
            "127.0.0.2",
            "127.0.0.4",
            "127.0.0.10",
            "127.0.1.2",
            "127.1.0.1",
        ] {
            assert_eq!(answer(listed), ListAnswer::Listed, "{listed}");
        }
        // Spamhaus's and SURBL's "you may not ask me" answers.
        for refused in [
            "127.0.0.1",
            "127.255.255.252",
            "127.255.255.254",
            "127.255.255.255",
        ] {
            assert_eq!(answer(refused), ListAnswer::Refusal, "{refused}");
        }
        for other in ["10.0.0.1", "192.0.2.1", "0.0.0.0", "128.0.0.2"] {
            assert_eq!(answer(other), ListAnswer::NotListing, "{other}");
        }
    }

    #[test]
    fn a_zones_error_code_is_logged_once_an_hour() {
        let r = ListRefusals::default();
        let t0 = std::time::Instant::now();
        assert!(r.first_in_a_while("zen.test", t0));
        assert!(!r.first_in_a_while("zen.test", t0 + Duration::from_secs(60)));
        assert!(r.first_in_a_while("other.test", t0 + Duration::from_secs(60)));
        assert!(r.first_in_a_while("zen.test", t0 + ListRefusals::LOG_EVERY));
    }

    #[test]
    fn the_recent_window_keeps_the_last_64_look_ups() {
        let r = RecentLookups::default();
        assert_eq!(r.failed_of(), (0, 0));
        r.note(3, 2);
        assert_eq!(r.failed_of(), (2, 5));
        // A server that stops answering: its failures push the answers out.
        r.note(0, 70);
        assert_eq!(r.failed_of(), (64, 64));
        // And one that answers again.
        r.note(60, 0);
        assert_eq!(r.failed_of(), (4, 64));
        r.note(1000, 0);
        assert_eq!(r.failed_of(), (0, 64));
    }

    #[test]
    fn the_recent_window_keeps_refusals_apart_from_other_failures() {
        let r = RecentLookups::default();
        r.note_one(Outcome::Answered);
        r.note_one(Outcome::Failed);
        r.note_one(Outcome::Refused);
        r.note_one(Outcome::Refused);
        assert_eq!(r.failed_of(), (3, 4), "a refused look-up failed too");
        assert_eq!(r.refused_of(), (2, 4));
        // Answers push the refusals out of the window, as the failures.
        r.note(63, 0);
        assert_eq!(r.refused_of(), (1, 64));
        r.note(1, 0);
        assert_eq!(r.refused_of(), (0, 64));
        assert_eq!(r.failed_of(), (0, 64));
    }

    #[test]
    fn refused_is_told_from_no_answer_and_from_no_such_name() {
        let refused = NetError::Dns(hickory_resolver::net::DnsError::ResponseCode(
            ResponseCode::Refused,
        ));
        let servfail = NetError::Dns(hickory_resolver::net::DnsError::ResponseCode(
            ResponseCode::ServFail,
        ));
        assert_eq!(Outcome::of(&refused), Outcome::Refused);
        assert_eq!(Outcome::of(&servfail), Outcome::Failed);
        assert_eq!(Outcome::of(&NetError::Timeout), Outcome::Failed);
    }

    /// A DNS server on a loopback port that answers every query with the
    /// response code `rcode` and no records (5: REFUSED); its address.
    async fn answering(rcode: u8) -> SocketAddr {
        answering_after(rcode, Duration::ZERO).await
    }

    /// Waits for the server's probe to end, within `limit`.
    async fn probe_ended(dns: &Dns, limit: Duration) {
        tokio::time::timeout(limit, async {
            while dns.server.state().probing {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the probe ends within its time");
    }

    /// As [`answering`], each reply `delay` after its query (a slow
    /// server, or a slow link to it).
    async fn answering_after(rcode: u8, delay: Duration) -> SocketAddr {
        let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let at = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                // The header and the question only (no EDNS record back).
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + buf[end] as usize;
                }
                end += 5;
                if n < 12 || end > n {
                    continue;
                }
                let mut answer = buf[..end].to_vec();
                answer[2] |= 0x80; // a response
                answer[3] = rcode;
                answer[6..12].fill(0); // no answer, authority or additional records
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.send_to(&answer, from).await;
                });
            }
        });
        at
    }

    /// A server that answers every query REFUSED without the question
    /// section, as unbound's `access-control: ... refuse` does.
    async fn refusing_without_the_question() -> SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if n < 12 {
                    continue;
                }
                let mut answer = buf[..12].to_vec();
                answer[2] |= 0x80; // a response
                answer[3] = 5; // REFUSED
                answer[4..12].fill(0); // no question, no records
                let _ = socket.send_to(&answer, from).await;
            }
        });
        at
    }

    /// walkAM 1: the library drops unbound's REFUSED (no question
    /// section) as forged and times out, so the server was reported
    /// silent while it answered every query: it is said as refusing.
    #[tokio::test]
    async fn a_refusal_without_the_question_is_a_refusal_not_silence() {
        let at = refusing_without_the_question().await;
        let dns = Dns::new(Some(at), Duration::from_millis(400)).unwrap();
        assert!(!dns.server_refuses());
        dns.doubt_server();
        probe_ended(&dns, Duration::from_secs(3)).await;
        // The look-ups could not use its replies (each would wait the
        // timeout): not asked meanwhile, as for a silent server; and said
        // as refusing.
        assert!(!dns.server_answers(), "its refusals are of no use");
        assert!(dns.server_refuses(), "it refuses");
        assert_eq!(
            raw_probe(&[at], "mailward-probe-x.", Duration::from_millis(400)).await,
            ProbeReply::RefusedUnusable
        );
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(
            raw_probe(
                &[silent.local_addr().unwrap()],
                "mailward-probe-y.",
                Duration::from_millis(200)
            )
            .await,
            ProbeReply::None
        );
    }

    /// walkAM 3: after the server came back, the failures of the outage
    /// kept "DNS fails" in the status and the alert raised until mail
    /// came.
    #[test]
    fn the_failures_of_an_outage_are_forgotten_once_the_server_is_back() {
        let recent = RecentLookups::default();
        let health = ServerHealth::default();
        recent.since_return(health.returns()).note(1, 19);
        assert_eq!(recent.since_return(health.returns()).failed_of(), (19, 20));
        assert_eq!(health.probed(ProbeReply::None), Some(true));
        assert_eq!(recent.since_return(health.returns()).failed_of(), (19, 20));
        assert_eq!(health.probed(ProbeReply::Answer), Some(false));
        assert_eq!(recent.since_return(health.returns()).failed_of(), (0, 0));
        assert_eq!(recent.since_return(health.returns()).failed_percent(), None);
        recent.note(5, 0);
        assert_eq!(recent.since_return(health.returns()).failed_of(), (0, 5));
    }

    /// walkBW 5: a dnsmasq that refuses the probe's name (no upstream)
    /// and answers in more than half the timeout: the library asks again
    /// after the REFUSED and runs out of time, but the refusal carries
    /// the question; the server answers, and its look-ups go on.
    #[tokio::test]
    async fn a_slow_refusal_with_the_question_is_an_answer() {
        let at = answering_after(5, Duration::from_millis(300)).await;
        let dns = Dns::new(Some(at), Duration::from_millis(400)).unwrap();
        dns.doubt_server();
        probe_ended(&dns, Duration::from_secs(3)).await;
        assert!(dns.server_answers(), "a slow refusal is an answer");
        assert_eq!(
            raw_probe(&[at], "mailward-probe-z.", Duration::from_millis(400)).await,
            ProbeReply::Refused
        );
    }

    #[tokio::test]
    async fn a_server_that_refuses_is_counted_as_refusing_not_as_silent() {
        // walkAK 2: a dnsmasq or unbound that does not resolve for this
        // host answers REFUSED at once; `mailward status` must say that,
        // not that it gives no answer.
        let dns = Dns::new(Some(answering(5).await), Duration::from_secs(2)).unwrap();
        let zones = vec!["bl.test".to_string(), "score.test".to_string()];
        let started = std::time::Instant::now();
        let (listed, tally) = dns.dnsbl("192.0.2.1".parse().unwrap(), &zones).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a refusal is not waited for"
        );
        assert_eq!(
            (listed, tally.failed),
            (None, 2),
            "refused: not listed, failed"
        );
        assert!(dns.mx("example.com").await.is_err());
        assert_eq!(dns.refused_of(), (3, 3));
        // Its probe (the failures had it probed) was refused too: an
        // answer, so the server is not taken for silent.
        probe_ended(&dns, Duration::from_secs(1)).await;
        assert!(dns.server_answers());
        // A server that answers "no such name" refuses nothing.
        let dns = Dns::new(Some(answering(3).await), Duration::from_secs(2)).unwrap();
        let (_, tally) = dns.dnsbl("192.0.2.1".parse().unwrap(), &zones).await;
        assert_eq!((tally.not_listed, dns.refused_of()), (2, (0, 2)));
    }

    #[tokio::test]
    async fn a_silent_servers_probes_end_with_the_last_gateway_that_uses_them() {
        // While the server is silent it is probed every 5 s by the clock;
        // once no gateway holds its health (a reload that named another
        // server), the probes stop rather than go on for ever.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dns = Dns::new(
            Some(silent.local_addr().unwrap()),
            Duration::from_millis(200),
        )
        .unwrap();
        dns.doubt_server();
        tokio::time::timeout(Duration::from_secs(3), async {
            while dns.server_answers() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the first probe finds the server silent");
        let health = std::sync::Arc::downgrade(&dns.server);
        drop(dns);
        // The probe task wakes after its PROBE_EVERY, finds itself alone
        // with the health, and ends (dropping it).
        let ended = tokio::time::timeout(ServerHealth::PROBE_EVERY * 2, async {
            while health.strong_count() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ended.is_ok(), "the probes went on with no gateway to tell");
        let mut buf = [0u8; 512];
        let mut probes = std::collections::BTreeSet::new();
        while let Ok(n) = silent.try_recv(&mut buf) {
            let query = String::from_utf8_lossy(&buf[..n]).to_string();
            if let Some((_, name)) = query.split_once("mailward-probe-") {
                probes.insert(
                    name.chars()
                        .take_while(char::is_ascii_hexdigit)
                        .collect::<String>(),
                );
            }
        }
        assert_eq!(probes.len(), 1, "one probe only: {probes:?}");
    }

    #[tokio::test]
    async fn a_resting_zones_probe_keeps_no_client_waiting() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = silent.local_addr().unwrap();
        let dns = Dns::new(Some(at), Duration::from_secs(2)).unwrap();
        let long_ago = std::time::Instant::now()
            .checked_sub(ZoneHealth::PROBE_EVERY + Duration::from_secs(1))
            .unwrap();
        for _ in 0..ZoneHealth::REST_AFTER {
            dns.zones.note("dead.test", false, long_ago);
        }
        // The probe is due: the client is answered at once (not listed,
        // the look-up not made), and the probe goes out all the same.
        let started = std::time::Instant::now();
        let (listed, tally) = dns
            .dnsbl("192.0.2.1".parse().unwrap(), &["dead.test".to_string()])
            .await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "the client waited {:?} for a resting zone's probe",
            started.elapsed()
        );
        assert_eq!((listed, tally.failed), (None, 1));
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), silent.recv_from(&mut buf))
            .await
            .expect("the probe went out")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("dead"));
        assert!(
            dns.zones.is_resting("dead.test"),
            "no answer: still resting"
        );
    }

    #[test]
    fn a_zone_rests_after_eight_failures_in_a_row_and_is_probed() {
        let h = ZoneHealth::default();
        let t0 = std::time::Instant::now();
        for _ in 0..7 {
            assert_eq!(h.note("bl.test", false, t0), None);
        }
        assert!(h.may_ask("bl.test", t0), "seven are not enough");
        assert_eq!(
            h.note("bl.test", true, t0),
            None,
            "an answer starts the count again"
        );
        for _ in 0..7 {
            h.note("bl.test", false, t0);
        }
        assert_eq!(h.note("bl.test", false, t0), Some(true), "eight in a row");
        assert_eq!(h.note("bl.test", false, t0), None, "said once");
        assert_eq!(h.resting(), ["bl.test"]);
        assert!(h.may_ask("other.test", t0), "other zones are asked");
        assert!(
            !h.may_ask("bl.test", t0 + Duration::from_secs(4)),
            "resting"
        );
        let probe = t0 + ZoneHealth::PROBE_EVERY;
        assert!(h.may_ask("bl.test", probe), "one probe");
        assert!(!h.may_ask("bl.test", probe), "one at a time");
        assert_eq!(
            h.note("bl.test", false, probe),
            None,
            "the probe failed: still resting"
        );
        assert!(!h.may_ask("bl.test", probe + Duration::from_secs(1)));
        let next = probe + ZoneHealth::PROBE_EVERY;
        assert!(h.may_ask("bl.test", next));
        assert_eq!(
            h.note("bl.test", true, next),
            Some(false),
            "answered: asked again"
        );
        assert!(h.may_ask("bl.test", next) && h.resting().is_empty());
    }

    #[tokio::test]
    async fn uri_lists_wait_no_longer_than_the_budget_left_to_the_message() {
        // A server that takes the queries and never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns = Dns::new(Some(silent.local_addr().unwrap()), Duration::from_secs(5)).unwrap();
        let domains = vec!["deals.test".to_string(), "other.test".to_string()];
        let zones = ["uri.test", "uri2.test"];
        // What DKIM/DMARC left: 300 ms of the 5 s.
        let asked = std::time::Instant::now();
        let (listed, tally) = dns
            .uri_listed(&domains, &zones, Duration::from_millis(300), "Q1")
            .await;
        let waited = asked.elapsed();
        assert!(listed.is_empty());
        assert_eq!(tally.failed, 4, "every look-up without an answer failed");
        assert!(
            waited < Duration::from_secs(4),
            "waited {waited:?}: the look-ups had 300 ms, not timeouts.dns"
        );
        // Nothing left: nothing asked, every look-up counted as failed.
        let (listed, tally) = dns.uri_listed(&domains, &zones, Duration::ZERO, "Q2").await;
        assert!(listed.is_empty());
        assert_eq!(
            tally,
            DnsblTally {
                listed: 0,
                not_listed: 0,
                failed: 4
            }
        );
    }

    #[test]
    fn the_failed_share_needs_a_sample() {
        let r = RecentLookups::default();
        r.note(0, 4);
        assert_eq!(r.failed_percent(), None, "four look-ups say nothing");
        r.note(1, 0);
        assert_eq!(r.failed_percent(), Some(80));
        r.note(95, 0);
        assert_eq!(r.failed_percent(), Some(0), "only the last 64 count");
    }

    #[test]
    fn the_server_falls_silent_on_a_failed_probe_and_answers_on_the_next_good_one() {
        let h = ServerHealth::default();
        let t0 = std::time::Instant::now();
        assert!(h.silent_since().is_none(), "answers until a probe says not");
        assert!(h.probe_due(t0));
        assert!(!h.probe_due(t0), "one probe in flight at a time");
        assert_eq!(h.probed(ProbeReply::Answer), None, "it answered: no change");
        assert!(
            !h.probe_due(t0 + Duration::from_secs(4)),
            "one start per 5 s"
        );
        assert!(h.probe_due(t0 + Duration::from_secs(5)));
        assert_eq!(h.probed(ProbeReply::None), Some(true), "no answer: silent");
        assert!(h.silent_since().is_some());
        assert!(h.probe_due(t0 + Duration::from_secs(10)));
        assert_eq!(h.probed(ProbeReply::None), None, "still silent");
        assert!(h.probe_due(t0 + Duration::from_secs(15)));
        assert_eq!(h.probed(ProbeReply::Answer), Some(false), "answers again");
        assert!(h.silent_since().is_none());
    }

    #[tokio::test]
    async fn a_probe_of_a_server_that_never_answers_finds_it_silent() {
        // A socket that takes queries and never answers.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let dns = Dns::new(Some(addr), Duration::from_millis(300)).unwrap();
        assert!(dns.server_answers());
        dns.doubt_server();
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), silent.recv_from(&mut buf))
            .await
            .expect("the probe reaches the server")
            .unwrap();
        let query = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(query.contains("mailward-probe-"), "{query:?}");
        // The probe gives up after its 300 ms (and 100 ms of grace).
        let found = tokio::time::timeout(Duration::from_secs(5), async {
            while dns.server_answers() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "no answer within the timeout: silent");
    }

    #[tokio::test]
    async fn a_clients_name_is_not_waited_for_past_one_timeout_nor_asked_of_a_silent_server() {
        // The access rules' host names: a server that takes the PTR query
        // and never answers costs one timeouts.dns and has the server
        // probed; once it is known silent, nothing is asked at all.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dns = Dns::new(
            Some(silent.local_addr().unwrap()),
            Duration::from_millis(500),
        )
        .unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let asked = std::time::Instant::now();
        assert_eq!(dns.verified_name(ip).await, None);
        let waited = asked.elapsed();
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        // The failed PTR look-up had the server probed: silent soon.
        let found = tokio::time::timeout(Duration::from_secs(5), async {
            while dns.server_answers() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "the PTR look-up's failure probed the server");
        // Now nothing is asked: no query reaches the socket, no wait.
        let mut buf = [0u8; 512];
        while silent.try_recv_from(&mut buf).is_ok() {}
        let asked = std::time::Instant::now();
        assert_eq!(dns.verified_name(ip).await, None);
        assert!(asked.elapsed() < Duration::from_millis(100));
        assert!(
            silent.try_recv_from(&mut buf).is_err(),
            "a silent server was asked for a PTR record"
        );
    }

    #[tokio::test]
    async fn while_the_server_is_silent_the_lists_are_not_asked() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dns = Dns::new(Some(silent.local_addr().unwrap()), Duration::from_secs(30)).unwrap();
        dns.server.probed(ProbeReply::None);
        let zones = vec!["bl.test".to_string(), "score.test".to_string()];
        // Not asked, so not waited for (30 s would be the timeout), and
        // counted as failed, as a timeout would be.
        let (listed, tally) = tokio::time::timeout(
            Duration::from_secs(5),
            dns.dnsbl("192.0.2.1".parse().unwrap(), &zones),
        )
        .await
        .expect("not waited for");
        assert_eq!((listed, tally.failed), (None, 2));
        // Nor does the zones' health suffer for the server's silence.
        assert_eq!(dns.resting_count(), 0);
        assert!(dns.zones.map().is_empty());
        // The skip had the server probed, and only the probe reached it.
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), silent.recv_from(&mut buf))
            .await
            .expect("a probe reaches the server")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("mailward-probe-"));
    }

    #[tokio::test]
    async fn a_failed_list_look_up_probes_the_server_a_resting_zone_probe_does_not() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = silent.local_addr().unwrap();
        // What reached the socket until it stayed quiet for 800 ms.
        let heard = || async {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(800), silent.recv_from(&mut buf)).await
            {
                got.push(String::from_utf8_lossy(&buf[..n]).to_string());
            }
            got
        };
        let zones = vec!["dead.test".to_string()];
        let ip = "192.0.2.1".parse().unwrap();
        // A zone that answered lately: its failure has the server probed.
        let dns = Dns::new(Some(at), Duration::from_millis(300)).unwrap();
        dns.dnsbl(ip, &zones).await;
        let got = heard().await;
        assert!(got.iter().any(|q| q.contains("dead")), "{got:?}");
        assert!(got.iter().any(|q| q.contains("mailward-probe-")), "{got:?}");
        // A resting zone (its probe due now) on a gateway that has not
        // probed the server yet: the zone's probe goes out, fails, and
        // that is all.
        let dns = Dns::new(Some(at), Duration::from_millis(300)).unwrap();
        let long_ago = std::time::Instant::now()
            .checked_sub(ZoneHealth::PROBE_EVERY + Duration::from_secs(1))
            .unwrap();
        for _ in 0..ZoneHealth::REST_AFTER {
            dns.zones.note("dead.test", false, long_ago);
        }
        assert!(dns.zones.is_resting("dead.test"));
        dns.dnsbl(ip, &zones).await;
        let got = heard().await;
        assert!(got.iter().any(|q| q.contains("dead")), "{got:?}");
        assert!(
            !got.iter().any(|q| q.contains("mailward-probe-")),
            "a resting zone's failed probe probed the server: {got:?}"
        );
    }

    #[test]
    fn a_reload_keeps_what_is_known_of_the_same_servers_only() {
        let at: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let t = Duration::from_secs(2);
        let old = Dns::new(Some(at), t).unwrap();
        old.server.probed(ProbeReply::None);
        for _ in 0..ZoneHealth::REST_AFTER {
            old.zones.note("bl.test", false, std::time::Instant::now());
        }
        let mut same = Dns::new(Some(at), t).unwrap();
        assert!(same.keep_health_of(&old));
        assert!(!same.server_answers());
        assert_eq!(same.resting_zones(), vec!["bl.test".to_string()]);
        // Shared, not copied: a probe of the old resolver still in flight
        // speaks for the new one.
        old.server.probed(ProbeReply::Answer);
        assert!(same.server_answers());
        for other in [
            Dns::new(Some("127.0.0.1:5354".parse().unwrap()), t),
            Dns::new(Some(at), Duration::from_secs(3)),
        ] {
            let mut other = other.unwrap();
            assert!(!other.keep_health_of(&old));
            assert_eq!(other.resting_count(), 0);
        }
    }

    #[test]
    fn probe_names_are_new_each_time_and_not_special_use() {
        let (a, b) = (probe_name(), probe_name());
        assert_ne!(a, b);
        assert!(a.starts_with("mailward-probe-") && a.ends_with('.') && !a.contains(".invalid"));
    }

    #[test]
    fn a_name_that_does_not_exist_was_answered_a_timeout_was_not() {
        let mut t = LookupTally::default();
        assert!(t.is_empty());
        let nx = DnsError::NotFound {
            name: "x.test".into(),
            kind: "MX",
            nx: true,
        };
        assert_eq!(nx.to_string(), "x.test: no such domain");
        t.note::<()>(&Err(nx));
        t.note::<()>(&Err(DnsError::Temporary {
            name: "x.test".into(),
            kind: "MX",
            message: "timed out".into(),
        }));
        t.note(&Ok(()));
        assert_eq!(
            t,
            LookupTally {
                answered: 1,
                not_found: 1,
                failed: 1
            }
        );
    }
}
