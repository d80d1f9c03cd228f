//! Carrying out the plans of a spooled message (DESIGN 1): the checks and
//! the plans are made on a scan worker ([`super::verdict`]); here they are
//! done, in an order that a crash at any point can repeat without loss or
//! duplicates, and everything that happens is said with events.
//!
//! 1. Quarantine copies (the message as received, with its metadata) and
//!    the incoming archive copy are written durably, under names derived
//!    from the queue ID (a second run writes the same entry again).
//! 2. One spool commit holds what is delivered and the message's own new
//!    state: the first delivered group keeps the queue ID (with new bytes
//!    when its plan changed them), each other group that is delivered gets
//!    its own copy `ID.N` (N: its position), unless an earlier entry has
//!    the same bytes and headers, which it then shares; each notification
//!    `ID.nN`, and a message nothing
//!    is delivered from is removed. Before that commit the message is
//!    still "unchecked" in the spool; a crash there means it is checked
//!    again at the next start (and counted again in the statistics).
//! 3. The queue gets the deliverable messages.
//!
//! The SMTP session waits for this up to `timeouts.scan_in_session`, so that
//! a refusal can still be given in the session; a message whose checks take
//! longer got its 250 already, and its refusals become blocks. The one
//! refusal possible after DATA is for the whole message: when only some
//! groups refuse, their recipients are blocked instead and the others get
//! the message.

use super::plan::Delivery;
use super::verdict::{Judged, Verdict};
use crate::check::Partition;
use crate::envelope::Envelope;
use crate::events::{
    MessageAccepted, MessageArchived, MessageBlocked, MessageChecked, MessageQuarantined,
    NotificationQueued, ScanMemoryRefused,
};
use crate::gateway::Gateway;
use crate::spool::Record;
use crate::store::{Direction, EntryMeta};
use std::sync::Arc;
use std::time::Duration;

/// Findings of one message logged one line each; the rest are summed up.
pub const MAX_LOGGED_FINDINGS: usize = 20;

/// What the SMTP client is told (when it still waits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 250: the plans are carried out (or will be, after a restart).
    Accepted,
    /// Refused by content policy: this reply, nothing kept.
    Refused(String),
    /// A copy or the spool could not be written: try again later.
    TempFail(String),
}

/// The groups of `env` and the checks and plans for them, on a scan
/// worker. Never fails: a message the workers cannot check is `av/error`
/// for every group that checks for viruses.
pub async fn judge(gw: &Gateway, env: &Envelope, raw: Arc<Vec<u8>>, in_session: bool) -> Verdict {
    let v = judge_checks(gw, env, raw.clone(), in_session).await;
    if let Some(e) = &v.report.spam {
        gw.scanner.spam.autolearn(&raw, e);
    }
    v
}

async fn judge_checks(
    gw: &Gateway,
    env: &Envelope,
    raw: Arc<Vec<u8>>,
    in_session: bool,
) -> Verdict {
    let cfg = gw.config();
    let partitions = super::partition(&cfg, env);
    let timeout = cfg.timeouts.scan.get();
    let started = std::time::Instant::now();
    let spam_wanted = partitions.iter().any(|p| p.policy.check_spam);
    let mut env = env.clone();
    // After DATA the DNS gets one `timeouts.dns` per message, shared by
    // DKIM/DMARC and the URI lists (asked after the scan, which reads the
    // DKIM/DMARC results): with a dead DNS server the reply to DATA waits
    // one timeout, not two, and stays within `timeouts.scan_in_session`.
    let dns_time = gw.dns().timeout();
    let authenticating = std::time::Instant::now();
    let uri_budget = if spam_wanted && authenticate(gw, &cfg, &mut env, &raw).await {
        dns_time.saturating_sub(authenticating.elapsed())
    } else {
        dns_time
    };
    let env = Arc::new(env);
    // The checks, and the plans in the same job when no URI list must be
    // asked in between (the usual case: one trip to a worker).
    let surbl = !cfg.spam.surbl.is_empty();
    let (job_env, job_parts, job_raw) = (env.clone(), partitions.clone(), raw.clone());
    // What the session and DKIM found holds whatever becomes of the checks,
    // so a message they failed on carries it too.
    let authentication = env
        .auth
        .results_header(&cfg.server.authserv_id, env.mail_from.is_empty());
    let job_authentication = authentication.clone();
    let job = gw.scanner.run(move |tools| {
        let mut report = crate::check::run(&job_env, &job_raw, &job_parts, tools, timeout);
        report.authentication = job_authentication;
        if surbl
            && report
                .spam
                .as_ref()
                .is_some_and(|e| !e.uri_domains.is_empty())
        {
            FirstTrip::AskUriLists(report)
        } else {
            FirstTrip::Decided(super::verdict::decide(
                &job_env, &job_raw, report, job_parts, in_session,
            ))
        }
    });
    let failed = |partitions| {
        let mut report =
            crate::check::Report::failed("internal error in the checks", started.elapsed());
        report.authentication = authentication.clone();
        Verdict::from_report(report, partitions, in_session, env.mail_from.is_empty())
    };
    let mut report = match job.await {
        Ok(FirstTrip::Decided(v)) => return v,
        Ok(FirstTrip::AskUriLists(report)) => report,
        Err(_) => return failed(partitions),
    };
    uri_lists(gw, &cfg, &mut report, uri_budget, &env.id.0).await;
    let (job_env, job_parts) = (env.clone(), partitions.clone());
    let job = gw
        .scanner
        .run(move |_tools| super::verdict::decide(&job_env, &raw, report, job_parts, in_session));
    match job.await {
        Ok(v) => v,
        Err(_) => failed(partitions),
    }
}

/// What the first trip to a scan worker ends with.
enum FirstTrip {
    /// The checks and the plans are done.
    Decided(Verdict),
    /// The checks found URI domains to look up in the `[spam] surbl` lists:
    /// asked on the runtime, then decided in a second trip.
    AskUriLists(crate::check::Report),
}

/// Messages up to this size are authenticated on the async runtime: their
/// parse and body hash take well under a millisecond, less than the hop to
/// a blocking thread costs a single session in latency (about 6 % fewer
/// 1 KiB messages per second in the relay benchmark when every message
/// made the hop).
const DKIM_ON_RUNTIME: usize = 256 * 1024;

/// DKIM and DMARC for a message from outside (`[spam] dkim`), into the
/// envelope the checks read; counted by result. Whether it asked the DNS.
async fn authenticate(
    gw: &Gateway,
    cfg: &crate::config::Config,
    env: &mut Envelope,
    raw: &Arc<Vec<u8>>,
) -> bool {
    if !cfg.spam.dkim || !env.standing(cfg).is_outside() {
        return false;
    }
    let dns = gw.dns();
    let (dkim, dmarc) = if !dns.server_answers() {
        // The server did not answer its last probe: no DKIM key or DMARC
        // record can come (temperror, as a timeout would give), and the
        // message does not wait timeouts.dns to learn that.
        crate::auth::dkim_dmarc_silent(raw)
    } else if raw.len() <= DKIM_ON_RUNTIME {
        crate::auth::dkim_dmarc(
            dns.authenticator(),
            raw,
            &env.mail_from,
            &env.helo,
            env.auth.spf.as_ref(),
            dns.timeout(),
        )
        .await
    } else {
        // Parsing a large message and hashing its body take milliseconds:
        // not on the async runtime, whose few threads carry every session.
        // The key and DMARC look-ups inside still wait on the runtime's
        // drivers, bounded by the DNS timeout.
        let (raw, mail_from, helo, spf) = (
            raw.clone(),
            env.mail_from.clone(),
            env.helo.clone(),
            env.auth.spf.clone(),
        );
        let runtime = tokio::runtime::Handle::current();
        let work = tokio::task::spawn_blocking(move || {
            runtime.block_on(crate::auth::dkim_dmarc(
                dns.authenticator(),
                &raw,
                &mail_from,
                &helo,
                spf.as_ref(),
                dns.timeout(),
            ))
        });
        match work.await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(target: "scan", queue_id = %env.id, error = %e,
                    "The DKIM and DMARC check failed; the message is judged without them.");
                return true;
            }
        }
    };
    for d in dkim.iter().flatten() {
        gw.stats.record(&mailward_metrics::Event::DkimChecked {
            result: d.result.as_str(),
        });
    }
    if let Some(d) = &dmarc {
        gw.stats.record(&mailward_metrics::Event::DmarcChecked {
            result: d.result.as_str(),
        });
    }
    let failed = dkim
        .iter()
        .flatten()
        .any(|d| d.result == crate::auth::Outcome::TempError)
        || dmarc
            .as_ref()
            .is_some_and(|d| d.result == crate::auth::Outcome::TempError);
    if failed {
        gw.dns().doubt_server();
    }
    env.auth.dkim = dkim;
    env.auth.dmarc = dmarc;
    true
}

/// The URI DNS lists (`[spam] surbl`) for the registered domains the spam
/// check found, into its evidence; counted by result.
/// `budget`: the DNS time left to this message.
async fn uri_lists(
    gw: &Gateway,
    cfg: &crate::config::Config,
    report: &mut crate::check::Report,
    budget: std::time::Duration,
    queue_id: &str,
) {
    let Some(evidence) = report.spam.as_mut() else {
        return;
    };
    let zones: Vec<&str> = cfg.spam.surbl.iter().map(|z| z.zone.as_str()).collect();
    let (listed, tally) = gw
        .dns()
        .uri_listed(&evidence.uri_domains, &zones, budget, queue_id)
        .await;
    gw.count_lookups(
        &mailward_metrics::Event::SurblLookups {
            listed: tally.listed,
            not_listed: tally.not_listed,
            failed: tally.failed,
        },
        tally.answered(),
        tally.failed,
    );
    for (zone, domain) in listed {
        if let Some(z) = cfg.spam.surbl.get(zone) {
            evidence.uri_listed(z, &domain);
        }
    }
}

/// The ID of group `k` (of `n`) of a message: the queue ID itself when
/// there is one group, else `ID.k`.
fn group_id(env: &Envelope, k: usize, n: usize) -> crate::envelope::QueueId {
    if n <= 1 {
        env.id.clone()
    } else {
        env.id.derived(&(k + 1).to_string())
    }
}

/// A group's recipients for a log line, capped
/// ([`crate::events::some_addresses`]).
fn rcpt_list(env: &Envelope, p: &Partition) -> String {
    crate::events::some_addresses(
        p.rcpts
            .iter()
            .filter_map(|&i| env.rcpts.get(i).map(|r| r.address.as_str())),
    )
}

/// The envelope of one group's copy: its recipients only.
fn group_envelope(env: &Envelope, p: &Partition) -> Envelope {
    let mut e = env.clone();
    e.rcpts = p
        .rcpts
        .iter()
        .filter_map(|&i| env.rcpts.get(i).cloned())
        .collect();
    e
}

/// What a store keeps about a message beside its bytes: the recipients
/// `rcpts` (indices), and what the checks and the policy made of it.
fn meta(
    env: &Envelope,
    rcpts: &[usize],
    statuses: Vec<String>,
    findings: Vec<String>,
    group: &str,
    reason: &str,
) -> EntryMeta {
    EntryMeta {
        queue_id: env.id.0.clone(),
        received: env.received_at,
        sender: env.mail_from.clone(),
        recipients: rcpts
            .iter()
            .filter_map(|&i| env.rcpts.get(i).map(|r| r.address.clone()))
            .collect(),
        client_ip: env.client_ip.to_string(),
        helo: env.helo.clone(),
        statuses,
        findings,
        group: group.to_string(),
        reason: reason.to_string(),
        size: env.size,
    }
}

/// Carries out `verdict` for the spooled message `env` (bytes `raw`).
/// `in_session`: the client still waits for its reply to DATA.
pub async fn execute(
    gw: &Gateway,
    env: Envelope,
    raw: Arc<Vec<u8>>,
    mut verdict: Verdict,
    in_session: bool,
) -> Answer {
    let cfg = gw.config();
    if let Some(reply) = in_session.then(|| refusal(&verdict)).flatten() {
        refused(gw, &env, &verdict, &reply);
        // A plain removal, not `remove_or_nothing`: the client was told
        // 550, so the message goes from the queue even when the spool
        // cannot record it (a full disk), and its space comes back.
        if let Err(e) = gw.spool.remove(&env).await {
            tracing::error!(target: "policy", queue_id = %env.id, error = %e,
                "Cannot record the removal of a refused message; it is dropped now, but a restart before its spool segment is reclaimed checks it again (and blocks it).");
        }
        return Answer::Refused(reply);
    }
    // 1. Copies that must exist before anything goes on. Before the
    // message is said to be accepted: a client answered 451 because one
    // cannot be written was not (walkAD: "Message accepted." came first).
    let (copies, kept) = write_copies_unlogged(gw, &cfg, &env, &raw, &verdict, in_session).await;
    if copies.is_err() && in_session {
        kept.emit(gw);
        not_accepted(&env, &verdict);
        return not_now(gw, &env, in_session).await;
    }
    // "Message accepted." was logged with the reply when the checks went
    // on after it (walkS 13); here only when the reply is this verdict's.
    accept(&env, &mut verdict, in_session);
    // The copies are told after the acceptance and the verdict that made
    // them (walkAP F3: "Message copied to quarantine." came first).
    kept.emit(gw);
    if copies.is_err() {
        return not_now(gw, &env, in_session).await;
    }
    if verdict
        .groups
        .iter()
        .any(|j| j.plan.delivery == Delivery::Deliver)
    {
        super::verdict_headers::note_foreign(&gw.stats, &env.id, &raw, &cfg.server.authserv_id);
    }

    // 2. One commit: the groups' copies, the notifications, the message.
    let mut records = Vec::new();
    let mut queued = Vec::new();
    let mut blocked = Vec::new();
    // Groups whose copies are the same (the same bytes and the same added
    // headers) share one queue entry: one delivery, one outgoing archive
    // copy (walkI 7). Each entry: its envelope and its bytes (None: the
    // message as spooled).
    let mut entries: Vec<(Envelope, Option<Arc<Vec<u8>>>)> = Vec::new();
    for (k, j) in verdict.groups.iter().enumerate() {
        match j.plan.delivery {
            Delivery::Deliver => {
                let same = entries.iter_mut().find(|(e, b)| {
                    e.added_headers == j.plan.headers && b.as_deref() == j.bytes.as_ref()
                });
                if let Some((e, _)) = same {
                    let mine = group_envelope(&env, &j.partition);
                    e.rcpts.extend(mine.rcpts);
                    for s in j.plan.statuses() {
                        if !e.statuses.contains(&s) {
                            e.statuses.push(s);
                        }
                    }
                    tracing::info!(target: "policy", queue_id = %env.id, copy = %e.id,
                        group = %j.partition.label(), rcpts = j.partition.rcpts.len(),
                        "The recipients of this group share a copy with another group: the same bytes.");
                    continue;
                }
                let mut e = group_envelope(&env, &j.partition);
                e.scanned = true;
                e.added_headers = j.plan.headers.clone();
                e.statuses = j.plan.statuses();
                if !entries.is_empty() {
                    e.id = env.id.derived(&(k + 1).to_string());
                    tracing::info!(target: "policy", queue_id = %env.id, copy = %e.id,
                        group = %j.partition.label(), rcpts = e.rcpts.len(),
                        "The recipients of this group get their own copy.");
                }
                entries.push((e, j.bytes.clone().map(Arc::new)));
            }
            Delivery::Block | Delivery::Refuse(_) => blocked.push(k),
        }
    }
    let keeps_id = !entries.is_empty();
    for (n, (mut e, bytes)) in entries.into_iter().enumerate() {
        match (n, bytes) {
            (0, b) => {
                if let Some(b) = &b {
                    e.size = b.len() as u64;
                }
                records.push(own_state(&env, Some((&e, b))));
            }
            (_, b) => {
                let b = b.unwrap_or_else(|| raw.clone());
                e.size = b.len() as u64;
                records.push(Record::accepted(e.clone(), b));
            }
        }
        queued.push(e);
    }
    let notices = compose_notifications(&cfg, &env, &raw, &verdict, &mut records);
    if !keeps_id {
        records.push(own_state(&env, None));
    }
    if let Err(e) = gw.spool.commit(records).await {
        tracing::error!(target: "policy", queue_id = %env.id, error = %e,
            "Cannot record what becomes of the message.");
        return not_now(gw, &env, in_session).await;
    }

    // 3. The queue, and what happened.
    count_accepted(gw, &env, &verdict);
    for (n, k) in blocked.into_iter().enumerate() {
        blocked_for(gw, &env, &verdict.groups[k], n == 0);
    }
    queue_notifications(gw, &env, notices);
    for e in queued {
        if e.size != env.size {
            tracing::info!(target: "policy", queue_id = %e.id, size = e.size,
                "Queued for delivery as changed by policy (verdict headers, subject mark or part edits).");
        }
        gw.queue.enqueue(e);
    }
    Answer::Accepted
}

/// The record of the message's own new state in the commit of its plans:
/// the first delivered entry keeps the queue ID (`first`: its envelope,
/// and its bytes when its plan changed them), else the message goes. It
/// takes effect only if written: when the commit fails after the reply
/// (the disk is full), the message must stay in the spool unchecked, to be
/// checked again at the next start, as [`not_now`] says. A removal or a
/// "checked" state applied in memory anyway would let the spool collect
/// the message, or compact it forward as checked while none of its
/// groups' copies exists (walkP 4, the same as an administrator's change).
fn own_state(env: &Envelope, first: Option<(&Envelope, Option<Arc<Vec<u8>>>)>) -> Record {
    match first {
        Some((e, Some(bytes))) => Record::accepted(e.clone(), bytes),
        Some((e, None)) => Record::updated(e.clone()).only_if_written(),
        None => Record::removed(env.clone()).only_if_written(),
    }
}

/// The reply when every group refuses the message (the one refusal
/// possible after DATA is for the whole message); None otherwise.
pub(crate) fn refusal(verdict: &Verdict) -> Option<String> {
    let refusing = |j: &Judged| matches!(j.plan.delivery, Delivery::Refuse(_));
    if verdict.groups.is_empty() || !verdict.groups.iter().all(refusing) {
        return None;
    }
    match &verdict.groups[0].plan.delivery {
        Delivery::Refuse(r) => Some(r.clone()),
        _ => None,
    }
}

/// The message is refused for every group, in the session: counted (the
/// verdict and raw records) and logged.
pub(crate) fn refused(gw: &Gateway, env: &Envelope, verdict: &Verdict, reply: &str) {
    MessageChecked {
        envelope: env,
        verdict,
        accepted: false,
    }
    .emit(&gw.stats, gw.config().policy.spam_level);
    // Where the virus was, as for an accepted message (walkL 9): the
    // refusal names the detections, not the parts they were found in.
    log_findings(env, verdict);
    tracing::info!(target: "policy", queue_id = %env.id, reply = %reply,
        "Message refused by content policy.");
}

/// The verdict of a message the client is answered 451 for, as a copy it
/// needs could not be written: logged as not accepted (`accepted=false`,
/// no "Message accepted."), with its findings, and not counted: the
/// sender's server sends it again, and it is counted then.
pub(crate) fn not_accepted(env: &Envelope, verdict: &Verdict) {
    MessageChecked {
        envelope: env,
        verdict,
        accepted: false,
    }
    .log();
    log_findings(env, verdict);
}

/// The recipients of group `j` get nothing: counted (the message once, at
/// its `first` blocked group) and logged.
pub(crate) fn blocked_for(gw: &Gateway, env: &Envelope, j: &Judged, first: bool) {
    MessageBlocked {
        id: &env.id,
        group: &j.partition.group,
        status: &j.plan.outcome_status(),
        to: &rcpt_list(env, &j.partition),
        rcpts: j.partition.rcpts.len(),
        first,
    }
    .emit(&gw.stats);
}

/// The message is accepted: a refusal for some groups (or after the 250)
/// becomes a block for them; the verdict and findings logged (counted by
/// [`count_accepted`] once stored). `announce`: log "Message accepted."
/// too (false when it was logged with a 250 given before the verdict).
pub(crate) fn accept(env: &Envelope, verdict: &mut Verdict, announce: bool) {
    for j in &mut verdict.groups {
        if j.plan.trap_kept_secret {
            tracing::info!(target: "policy", queue_id = %env.id, group = %j.partition.label(),
                status = %j.plan.cause.as_deref().unwrap_or_default(),
                "This group refuses the status, but the verdict rests on a spam trap alone: the message is blocked instead, so that the sender cannot tell the trap from a mailbox.");
        }
        if let Delivery::Refuse(_) = j.plan.delivery {
            j.plan.delivery = Delivery::Block;
        }
    }
    if announce {
        MessageAccepted { envelope: env }.log();
    }
    MessageChecked {
        envelope: env,
        verdict,
        accepted: true,
    }
    .log();
    // After the verdict it comes from (walkBO F3), and also where no
    // refusal was ever possible (walkBQ F5: after the queue it read as a
    // configured block).
    for j in verdict.groups.iter().filter(|j| j.plan.refused) {
        tracing::info!(target: "policy", queue_id = %env.id, group = %j.partition.label(),
            status = %j.plan.cause.as_deref().unwrap_or_default(),
            "The refusal of this group becomes a block: the message is accepted for other recipients, or the 250 was given.");
    }
    log_findings(env, verdict);
}

/// A spooled message whose checks are under way, counted in
/// [`Gateway::checks_in_progress`] while it lives: a stop that comes
/// meanwhile leaves the message unchecked in the spool (checked again at
/// the next start), and its last log line says how many (walkS 13: it said
/// `queued=0` of a message that had its 250).
pub(crate) struct Checking(Arc<Gateway>);

impl Checking {
    pub(crate) fn new(gw: &Arc<Gateway>) -> Checking {
        gw.checks_in_progress
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Checking(gw.clone())
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        self.0
            .checks_in_progress
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Counts the accepted message: once its copies and its fate are stored,
/// not before, so that a message answered 451 because a copy could not be
/// written is counted when it comes again, once (walkH: it was counted as
/// received twice, and its viruses twice).
pub(crate) fn count_accepted(gw: &Gateway, env: &Envelope, verdict: &Verdict) {
    MessageChecked {
        envelope: env,
        verdict,
        accepted: true,
    }
    .count(&gw.stats, gw.config().policy.spam_level);
    if verdict.report.memory_refused {
        ScanMemoryRefused { id: &env.id }.emit(&gw.stats);
    }
}

/// A copy [`write_copies_unlogged`] wrote, told (logged and counted) by
/// [`Kept::emit`] once the message is said to be accepted.
enum KeptCopy {
    Quarantine {
        id: crate::envelope::QueueId,
        group: String,
        reason: String,
        bytes: u64,
        to: String,
    },
    Archive {
        id: crate::envelope::QueueId,
        bytes: u64,
    },
}

/// The copies written for a message, not yet told.
#[must_use = "the copies written are told with emit()"]
pub(crate) struct Kept(Vec<KeptCopy>);

impl Kept {
    /// Logs and counts each copy written.
    pub(crate) fn emit(self, gw: &Gateway) {
        for k in self.0 {
            match k {
                KeptCopy::Quarantine {
                    id,
                    group,
                    reason,
                    bytes,
                    to,
                } => MessageQuarantined {
                    id: &id,
                    group: &group,
                    reason: &reason,
                    bytes,
                    to: &to,
                }
                .emit(&gw.stats),
                KeptCopy::Archive { id, bytes } => MessageArchived {
                    id: &id,
                    direction: Direction::Incoming,
                    bytes,
                }
                .emit(&gw.stats),
            }
        }
    }
}

/// Writes the copies that must exist before anything goes on: each
/// group's quarantine copy and the incoming archive copy. Err when one
/// cannot be written (logged); what was written stays (a second run
/// writes the same entries again). The copies written are returned to be
/// told later with [`Kept::emit`] (after "Message accepted.", which must
/// not come before the copies are written), also when a later one fails.
pub(crate) async fn write_copies_unlogged(
    gw: &Gateway,
    cfg: &crate::config::Config,
    env: &Envelope,
    raw: &Arc<Vec<u8>>,
    verdict: &Verdict,
    in_session: bool,
) -> (Result<(), ()>, Kept) {
    let mut kept = Kept(Vec::new());
    let n = verdict.groups.len();
    for (k, j) in verdict.groups.iter().enumerate() {
        let Some(reason) = &j.plan.quarantine else {
            continue;
        };
        let id = group_id(env, k, n);
        let m = meta(
            env,
            &j.partition.rcpts,
            j.plan.statuses(),
            verdict.finding_lines(j, true),
            &j.partition.group,
            reason,
        );
        match gw.stores.quarantine.put(&id.0, raw, &m).await {
            Ok(bytes) => kept.0.push(KeptCopy::Quarantine {
                id,
                group: j.partition.group.clone(),
                reason: reason.clone(),
                bytes,
                to: rcpt_list(env, &j.partition),
            }),
            Err(e) => {
                let what = "Cannot write the quarantine copy the policy asks for";
                copy_failed(env, &e, what, in_session);
                return (Err(()), kept);
            }
        }
    }
    if cfg.archive.incoming {
        // Anti-virus first, as the quarantine's entries have them.
        let mut statuses: Vec<String> = Vec::new();
        for s in verdict.groups.iter().flat_map(|j| j.plan.statuses()) {
            if !statuses.contains(&s) {
                statuses.push(s);
            }
        }
        statuses.sort_by_key(|s| !s.starts_with("av/"));
        // Every group's findings, as the quarantine lists them: the parts'
        // AV and filter findings and the spam verdict (walkAD 2: the AV
        // ones alone left a filtered `.exe` unnamed, where the archive is
        // the only record).
        let mut findings: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for line in verdict
            .groups
            .iter()
            .flat_map(|j| verdict.finding_lines(j, true))
        {
            if seen.insert(line.clone()) {
                findings.push(line);
            }
        }
        let all: Vec<usize> = (0..env.rcpts.len()).collect();
        // The groups the message fell in (walkAD 11: every incoming copy
        // said "default", also for a message to one other group only).
        let mut groups: Vec<&str> = Vec::new();
        for j in &verdict.groups {
            if !groups.contains(&j.partition.label()) {
                groups.push(j.partition.label());
            }
        }
        let groups = match groups.as_slice() {
            [] | ["default"] => String::new(),
            _ => groups.join(","),
        };
        let m = meta(env, &all, statuses, findings, &groups, "incoming");
        match gw
            .stores
            .archive(Direction::Incoming)
            .put(&env.id.0, raw, &m)
            .await
        {
            Ok(bytes) => kept.0.push(KeptCopy::Archive {
                id: env.id.clone(),
                bytes,
            }),
            Err(e) => {
                copy_failed(
                    env,
                    &e,
                    "Cannot write the incoming archive copy",
                    in_session,
                );
                return (Err(()), kept);
            }
        }
    }
    (Ok(()), kept)
}

/// Logs a copy that could not be written, saying what becomes of the
/// message: in the session it is refused with 451 and nothing is kept (the
/// sender's server sends it again); after the 250 it stays unchecked in
/// the spool, checked again at the next start (walkAD 3: "not delivered
/// until it can be" read as if the gateway held it).
fn copy_failed(env: &Envelope, e: &crate::store::StoreError, what: &str, in_session: bool) {
    if in_session {
        tracing::error!(target: "policy", queue_id = %env.id, error = %e,
            "{what}; the message is refused with 451 4.3.0 and not kept (the sender's server retries).");
    } else {
        tracing::error!(target: "policy", queue_id = %env.id, error = %e,
            "{what}; the message stays unchecked in the spool, checked again at the next start.");
    }
}

/// The notifications the plans ask for, composed: their spool records are
/// added to `records` (committed with the rest), and their envelopes
/// returned for [`queue_notifications`] once the commit is done.
pub(crate) fn compose_notifications(
    cfg: &crate::config::Config,
    env: &Envelope,
    raw: &[u8],
    verdict: &Verdict,
    records: &mut Vec<Record>,
) -> Vec<(super::plan::NotifyTo, Envelope)> {
    use super::plan::NotifyTo;
    let mut notices = Vec::new();
    // The sender gets one notice for the whole message, made with the
    // first group that asks for one (notify::compose says why).
    let to_sender: Vec<&Judged> = verdict
        .groups
        .iter()
        .filter(|j| j.plan.notify.contains(&NotifyTo::Sender))
        .collect();
    for j in &verdict.groups {
        for &to in &j.plan.notify {
            let about: Vec<&Judged> = match to {
                NotifyTo::Sender if to_sender.first().is_some_and(|f| std::ptr::eq(*f, j)) => {
                    to_sender.clone()
                }
                NotifyTo::Sender => continue,
                NotifyTo::Recipients | NotifyTo::Admin => vec![j],
            };
            // Each recipient gets a notice of their own: one message to
            // all of them would show each the others, Bcc ones included.
            let addressees: Vec<Option<&str>> = match to {
                NotifyTo::Recipients => j
                    .partition
                    .rcpts
                    .iter()
                    .filter_map(|&i| env.rcpts.get(i).map(|r| Some(r.address.as_str())))
                    .collect(),
                NotifyTo::Sender | NotifyTo::Admin => vec![None],
            };
            for addressee in addressees {
                let nid = env.id.derived(&format!("n{}", notices.len() + 1));
                match super::notify::compose(cfg, env, raw, &about, verdict, to, addressee, nid) {
                    Ok(Some((e, bytes))) => {
                        records.push(Record::accepted(e.clone(), bytes));
                        notices.push((to, e));
                    }
                    Ok(None) => {}
                    Err(problem) => tracing::error!(target: "notif", queue_id = %env.id,
                        to = to.as_str(), problem = %problem, "Cannot make a notification."),
                }
            }
        }
    }
    notices
}

/// Queues the committed notifications, and says so.
pub(crate) fn queue_notifications(
    gw: &Gateway,
    env: &Envelope,
    notices: Vec<(super::plan::NotifyTo, Envelope)>,
) {
    for (to, e) in notices {
        NotificationQueued {
            about: &env.id,
            id: &e.id,
            to,
            address: e.rcpts.first().map_or("", |r| r.address.as_str()),
        }
        .emit(&gw.stats);
        gw.queue.enqueue(e);
    }
}

/// What cannot be written stops the message here. In the session the
/// client gets 451 and tries again later, so the spooled copy goes (or it
/// would be delivered twice); after the session, the message stays
/// unchecked in the spool and is checked again at the next start.
async fn not_now(gw: &Gateway, env: &Envelope, in_session: bool) -> Answer {
    if !in_session {
        return Answer::Accepted;
    }
    // A plain removal, not `remove_or_nothing`: the client sends the
    // message again after the 451, so this copy must go even when the
    // removal cannot be recorded; kept, it would be checked and delivered
    // at the next start as well.
    if let Err(e) = gw.spool.remove(env).await {
        tracing::error!(target: "policy", queue_id = %env.id, error = %e,
            "Cannot remove the message after a 451 either; it may be delivered twice.");
    }
    Answer::TempFail("451 4.3.0 Local error writing the message, try again later".into())
}

/// One line per finding, up to a cap: an archive of 10,000 infected
/// members must not write 10,000 lines (the statistics count them all).
fn log_findings(env: &Envelope, verdict: &Verdict) {
    let mut all: Vec<&crate::check::Finding> = verdict.report.av.iter().collect();
    // A set, not `all.contains`: 10,000 findings of each kind would be
    // 10^8 comparisons for a log line.
    let mut seen: std::collections::HashSet<&crate::check::Finding> = all.iter().copied().collect();
    for f in verdict.report.filtered.values().flatten() {
        if seen.insert(f) {
            all.push(f);
        }
    }
    for f in all.iter().take(MAX_LOGGED_FINDINGS) {
        // A part's name is the sender's: the text formatter quotes it
        // when it needs it, so `invoice to=ceo@example.com x.exe` adds no
        // field of their choosing (walkV 5; ops::logging::needs_quotes).
        tracing::info!(target: "scan", queue_id = %env.id, status = f.kind.status().as_str(),
            detection = %f.name, object = %f.path, "Finding.");
    }
    if all.len() > MAX_LOGGED_FINDINGS {
        let kinds: std::collections::BTreeSet<&str> = all[MAX_LOGGED_FINDINGS..]
            .iter()
            .map(|f| f.kind.status().as_str())
            .collect();
        tracing::info!(target: "scan", queue_id = %env.id,
            more = all.len() - MAX_LOGGED_FINDINGS,
            statuses = %kinds.into_iter().collect::<Vec<_>>().join(","),
            "More findings in this message, not logged one by one.");
    }
}

/// Checks a message found unchecked in the spool at start, then carries out
/// its plans (a refusal is no longer possible: it becomes a block).
pub async fn recheck(gw: Arc<Gateway>, env: Envelope) {
    let _checking = Checking::new(&gw);
    let data = match gw.spool.read(&env.id) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            tracing::error!(target: "scan", queue_id = %env.id, error = %e,
                "Cannot read an unchecked message from the spool; it stays there.");
            return;
        }
    };
    let verdict = judge(&gw, &env, data.clone(), false).await;
    execute(&gw, env, data, verdict, false).await;
}

/// Judges a message the SMTP session has just spooled and carries out its
/// plans while the client waits for its reply, up to
/// `timeouts.scan_in_session`. Checks that take longer go on after the
/// reply, where a refusal becomes a block, and the answer is `Accepted`.
/// Those left behind a reply hold at most `limits.scan_memory` of messages
/// together (`gw.backlog`, one message always taken): past it the session
/// waits for its own verdict up to `timeouts.scan` more, and so sends no
/// more meanwhile, then leaves it anyway so that the reply still comes
/// within a client's (or Postfix's proxy) patience. `may_refuse` false
/// (an after-queue filter's client) makes every refusal a block even in
/// time: the client would bounce it.
pub async fn in_session(
    gw: &Arc<Gateway>,
    env: Envelope,
    raw: Arc<Vec<u8>>,
    may_refuse: bool,
) -> Answer {
    let (handoff, mut verdict) = tokio::sync::oneshot::channel::<(Verdict, Checking)>();
    let checking = Checking::new(gw);
    // The message's place in the backlog, once the session leaves its
    // checks there; freed when the last holder of `place` (the judging
    // task, or the one carrying out a verdict of the same instant) is done.
    let place = Arc::new(std::sync::OnceLock::new());
    {
        let (gw, env, raw) = (gw.clone(), env.clone(), raw.clone());
        let place = place.clone();
        tokio::spawn(async move {
            let v = judge(&gw, &env, raw.clone(), may_refuse).await;
            // The session gave up waiting: carry it out here.
            if let Err((v, checking)) = handoff.send((v, checking)) {
                execute(&gw, env, raw, v, false).await;
                drop(checking);
            }
            drop(place);
        });
    }
    match tokio::time::timeout(session_wait(gw), &mut verdict).await {
        Ok(Ok((v, _checking))) => return execute(gw, env, raw, v, true).await,
        // The task ended without a verdict (it cannot, short of a bug):
        // the message stays unchecked in the spool for the next start.
        Ok(Err(_)) => return accepted_unchecked(&env),
        Err(_) => {}
    }
    let cfg = gw.config();
    let size = raw.len() as u64;
    if let Some(p) = gw.backlog.take(size, cfg.limits.scan_memory.0) {
        let _ = place.set(p);
    } else {
        tracing::info!(target: "scan", queue_id = %env.id,
            backlog_bytes = gw.backlog.bytes(),
            "The checks after the reply are behind (limits.scan_memory); this session waits for its verdict.");
        match tokio::time::timeout(cfg.timeouts.scan.get(), &mut verdict).await {
            Ok(Ok((v, _checking))) => return execute(gw, env, raw, v, true).await,
            Ok(Err(_)) => return accepted_unchecked(&env),
            Err(_) => {
                if let Some(p) = gw.backlog.take(size, u64::MAX) {
                    let _ = place.set(p);
                }
            }
        }
    }
    // A verdict that came in the same instant is carried out in the
    // background like any later one.
    verdict.close();
    // Logged with the 250, not when the verdict comes (walkS 13: a stop
    // meanwhile left a message the client had its 250 for with no
    // "Message accepted." line until the next start).
    MessageAccepted { envelope: &env }.log();
    let id = env.id.clone();
    if let Ok((v, checking)) = verdict.try_recv() {
        let gw = gw.clone();
        tokio::spawn(async move {
            execute(&gw, env, raw, v, false).await;
            drop((place, checking));
        });
    }
    tracing::info!(target: "scan", queue_id = %id,
        "The checks go on after the reply (timeouts.scan_in_session).");
    Answer::Accepted
}

/// The 250 for a spooled message whose checks ended without a verdict: it
/// stays unchecked in the spool for the next start.
fn accepted_unchecked(env: &Envelope) -> Answer {
    MessageAccepted { envelope: env }.log();
    Answer::Accepted
}

/// How long the session waits before it gives its 250 anyway.
fn session_wait(gw: &Gateway) -> Duration {
    gw.config()
        .timeouts
        .scan_in_session
        .get()
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{QueueId, Recipient};
    use crate::spool::RecordKind;

    fn envelope() -> Envelope {
        let mut e = Envelope::new(
            QueueId::generate(),
            "192.0.2.1".parse().unwrap(),
            "client.test".into(),
            "a@example.net".into(),
        );
        e.rcpts = vec![Recipient::new("b@example.com".into())];
        e
    }

    /// The commit of a message's plans that fails after the reply leaves
    /// the message unchecked in the spool, for the next start: its own new
    /// state (checked, or removed) takes effect only if written. New bytes
    /// under its ID are an accepted record, which a failed write never
    /// applies anyway.
    #[test]
    fn the_message_own_new_state_takes_effect_only_if_written() {
        let env = envelope();
        let mut checked = env.clone();
        checked.scanned = true;
        let gone = own_state(&env, None);
        assert_eq!(gone.kind, RecordKind::Removed);
        assert!(gone.only_if_written, "a removal");
        let same = own_state(&env, Some((&checked, None)));
        assert_eq!(same.kind, RecordKind::Updated);
        assert!(same.only_if_written, "a checked state");
        let changed = own_state(&env, Some((&checked, Some(Arc::new(b"x".to_vec())))));
        assert_eq!(changed.kind, RecordKind::Accepted);
    }
}
