//! One delivery attempt of one message: recipients grouped by next hop, one
//! transaction per hop (in parallel), then the decision of what follows:
//! done, retry later with back-off, expire, and which DSNs are due. The
//! decision is a pure function ([`decide`]) with table tests; the I/O around
//! it is in [`Delivery::attempt`].

use super::client::{ClientError, ClientSettings, Reply, Transaction, TxRcpt};
use super::dsn::{self, DsnAction, DsnInput, DsnRecipient};
use super::pool::{Pool, PoolError};
use super::route::{destination, Destination};
use super::suspend::Gate;
use crate::config::Config;
use crate::envelope::{Envelope, Notify, QueueId, RcptState, Recipient};
use crate::events::{DeliveryAttempted, DeliveryResult, DsnQueued, MessageRemoved};
use crate::gateway::Gateway;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The result of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the next hop. `hop_dsn`: the hop took our NOTIFY, so it
    /// reports success itself and we send no "relayed" DSN.
    Delivered {
        reply: String,
        relay: String,
        hop_dsn: bool,
        /// "TLSv1.3 TLS13_AES_256_GCM_SHA384", or "none".
        tls: String,
    },
    /// Refused for good.
    Failed {
        status: String,
        reply: String,
        relay: String,
    },
    /// Try again later.
    Deferred { reply: String, relay: String },
}

fn reply_outcome(reply: &Reply, relay: &str, hop_dsn: bool, tls: &str) -> Outcome {
    let line = reply.to_line();
    if reply.is_positive() {
        Outcome::Delivered {
            reply: line,
            relay: relay.to_string(),
            hop_dsn,
            tls: tls.to_string(),
        }
    } else if reply.is_permanent() {
        Outcome::Failed {
            status: reply.enhanced().unwrap_or_else(|| "5.0.0".into()),
            reply: line,
            relay: relay.to_string(),
        }
    } else {
        Outcome::Deferred {
            reply: line,
            relay: relay.to_string(),
        }
    }
}

/// What a failed lease means for the recipients it was for. A hop that
/// answered and refused the session (a 5xx or 4xx greeting, EHLO and HELO
/// refused) is quoted by its own reply, so that a DSN names it as
/// Remote-MTA with `Diagnostic-Code: smtp; ...` and "Remote server:", as for
/// a refused RCPT (walkAQ 2: a 554 greeting gave `X-Mailward; 4.0.0 refused
/// at banner: 554 ...` and no hop). Our own findings (a refused connection,
/// a time-out, a failed look-up) keep their status and words.
fn lease_outcome(e: &PoolError, dest: &Destination) -> Outcome {
    let relay = e.relay(dest);
    let hop_reply = match e {
        PoolError::Connect { error, .. } => error.reply(),
        _ => None,
    };
    let reply = hop_reply.map_or_else(|| format!("{} {e}", e.status()), Reply::to_line);
    if e.is_permanent() {
        Outcome::Failed {
            status: hop_reply
                .and_then(Reply::enhanced)
                .unwrap_or_else(|| e.status().to_string()),
            reply,
            relay,
        }
    } else {
        Outcome::Deferred { reply, relay }
    }
}

/// One recipient of a planned DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Its index in the envelope.
    pub index: usize,
    /// RFC 3463 status.
    pub status: String,
    /// What the next hop (or we) said: the Diagnostic-Code.
    pub diagnostic: String,
    /// The hop that said it ("" when none was reached).
    pub relay: String,
    /// The reason in words for the human part, when it is not the
    /// diagnostic (an expiry).
    pub reason: Option<String>,
}

impl Planned {
    fn new(index: usize, status: String, diagnostic: String, relay: String) -> Planned {
        Planned {
            index,
            status,
            diagnostic,
            relay,
            reason: None,
        }
    }
}

/// Which DSN to send about which recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnPlan {
    pub action: DsnAction,
    pub rcpts: Vec<Planned>,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub dsns: Vec<DsnPlan>,
    /// The message is finished: remove it from the spool.
    pub done: bool,
}

/// Settings the decision depends on.
pub struct Timing {
    pub now: i64,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub lifetime: Duration,
    pub delay_notice: Duration,
}

impl Timing {
    /// Whether a message received at `received_at` has outlived
    /// `max_queue_lifetime`: what is still pending after this attempt fails.
    pub fn expired(&self, received_at: i64) -> bool {
        self.age(received_at) >= self.lifetime
    }

    /// When to try again after `attempts` attempts: after the back-off,
    /// but no later than the moment the message outlives
    /// `max_queue_lifetime`, so that the last attempt is made, and a
    /// message that still fails is returned, at its lifetime and not up to
    /// `max_backoff` after it (Postfix returns it at the first attempt
    /// after; walkAQ's note: 4m lifetime, bounced after 5m), and a delay
    /// notice's Will-Retry-Until is when the last attempt is made.
    pub fn next_attempt(&self, attempts: u32, received_at: i64) -> i64 {
        let wait = backoff(attempts, self.min_backoff, self.max_backoff);
        let after_backoff = self
            .now
            .saturating_add(i64::try_from(wait.as_secs().max(1)).unwrap_or(i64::MAX));
        self.next_at(after_backoff, received_at)
    }

    /// At `at`, unless that is past the message's lifetime (then at its
    /// end: the last attempt is made at the lifetime, see
    /// [`Timing::next_attempt`]) or not in the future (then a second on).
    pub fn next_at(&self, at: i64, received_at: i64) -> i64 {
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        let expiry = received_at.saturating_add(lifetime);
        at.min(expiry).max(self.now + 1)
    }

    fn age(&self, received_at: i64) -> Duration {
        Duration::from_secs(u64::try_from(self.now - received_at).unwrap_or(0))
    }
}

/// The enhanced status code in an SMTP reply line of class 4 ("451 4.4.1
/// Connection refused"), or 4.0.0: what a delay DSN reports.
fn temporary_status(reply: Option<&str>) -> String {
    reply
        .and_then(|r| {
            r.split_whitespace()
                .take(2)
                .find(|w| w.starts_with('4') && crate::delivery::client::is_status_code(w))
        })
        .unwrap_or("4.0.0")
        .to_string()
}

/// Why a recipient failed when its message outlived the queue, for the
/// log and the queue (with the configuration key an administrator knows).
fn expiry_reason(attempts: u32, last_error: Option<&str>) -> String {
    format!(
        "Message expired after {attempts} attempts{LAST_ERROR}{}",
        last_error.unwrap_or("none")
    )
}

/// The same for the sender, in the DSN: for how long delivery was tried,
/// and the last error; no configuration key (walkP).
fn expiry_text(age: Duration, attempts: u32, last_error: Option<&str>) -> String {
    let tried = format!(
        "Delivery was tried for {} ({attempts} attempt{}) without success",
        for_how_long(age),
        if attempts == 1 { "" } else { "s" }
    );
    match last_error {
        Some(e) if !e.is_empty() => format!("{tried}; the last error was: {e}"),
        _ => format!("{tried}."),
    }
}

/// "5 days", "3 hours", "1 minute": the largest whole unit.
fn for_how_long(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| secs >= *size)
        .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Back-off before attempt `attempts + 1`: min_backoff doubled per attempt
/// made, capped at max_backoff.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1).min(30))
        .unwrap_or(u32::MAX);
    min.saturating_mul(factor).min(max).max(min.min(max))
}

fn wants_failure(n: Option<Notify>) -> bool {
    n.is_none_or(|n| n.failure)
}

/// Why a recipient that failed for good gets no DSN, for the log (walkP:
/// "did the sender get a bounce?" was answered only by the absence of a
/// line); `None` when a DSN is due.
fn no_failure_dsn(env: &Envelope, r: &Recipient) -> Option<String> {
    if env.is_bounce {
        return Some("none (the message is itself a notification)".into());
    }
    if env.mail_from.is_empty() {
        return Some("none (null sender)".into());
    }
    r.notify
        .filter(|n| !n.failure)
        .map(|n| format!("none (NOTIFY={})", n.to_param()))
}

/// Applies the outcomes to the envelope and decides what follows. Pure.
pub fn decide(env: &mut Envelope, outcomes: Vec<(usize, Outcome)>, t: &Timing) -> Decision {
    let mut failed = Vec::new();
    let mut relayed = Vec::new();
    // The hop of each deferral of this attempt: a delay or expiry DSN
    // names it, as a failure DSN names the hop that refused (walkP).
    let mut deferred_by: BTreeMap<usize, String> = BTreeMap::new();
    for (i, outcome) in outcomes {
        let Some(r) = env.rcpts.get_mut(i) else {
            continue;
        };
        match outcome {
            Outcome::Delivered {
                reply,
                relay,
                hop_dsn,
                ..
            } => {
                if !hop_dsn && r.notify.is_some_and(|n| n.success) {
                    relayed.push(Planned::new(
                        i,
                        "2.0.0".to_string(),
                        format!("smtp; {reply}"),
                        relay,
                    ));
                }
                r.state = RcptState::Delivered { reply, at: t.now };
            }
            Outcome::Failed {
                status,
                reply,
                relay,
            } => {
                if wants_failure(r.notify) {
                    failed.push(Planned::new(i, status, reply.clone(), relay));
                }
                r.state = RcptState::Failed { reply, at: t.now };
            }
            Outcome::Deferred { reply, relay } => {
                deferred_by.insert(i, relay);
                r.state = RcptState::Pending {
                    last_error: Some(reply),
                };
            }
        }
    }
    env.attempts += 1;
    let mut delayed = Vec::new();
    if !env.is_done() {
        let age = t.age(env.received_at);
        if t.expired(env.received_at) {
            for (i, r) in env.rcpts.iter_mut().enumerate() {
                if let RcptState::Pending { last_error } = &r.state {
                    let reason = expiry_reason(env.attempts, last_error.as_deref());
                    // RFC 3463: X.4.7 "delivery time expired", of the
                    // permanent class since the message is returned. The
                    // diagnostic is the last error, from the hop that gave
                    // it; the words say for how long it was tried.
                    if wants_failure(r.notify) {
                        failed.push(Planned {
                            index: i,
                            status: "5.4.7".into(),
                            diagnostic: last_error.clone().unwrap_or_else(|| reason.clone()),
                            relay: deferred_by.get(&i).cloned().unwrap_or_default(),
                            reason: Some(expiry_text(age, env.attempts, last_error.as_deref())),
                        });
                    }
                    r.state = RcptState::Failed {
                        reply: reason,
                        at: t.now,
                    };
                }
            }
        } else {
            if !env.delay_notified && age >= t.delay_notice {
                for (i, r) in env.rcpts.iter().enumerate() {
                    if let RcptState::Pending { last_error } = &r.state {
                        if r.notify.is_some_and(|n| n.delay) {
                            // Not 4.4.7: the message has not expired; the
                            // last error says what holds it up.
                            delayed.push(Planned::new(
                                i,
                                temporary_status(last_error.as_deref()),
                                last_error.clone().unwrap_or_default(),
                                deferred_by.get(&i).cloned().unwrap_or_default(),
                            ));
                        }
                    }
                }
                // `delay_notified` is set once the notice is spooled
                // (`settle_dsns`): a notice that cannot be written is
                // planned again at the next attempt.
            }
            env.next_attempt = t.next_attempt(env.attempts, env.received_at);
        }
    }
    let mut dsns = Vec::new();
    // Never a DSN about a DSN, nor to the null sender (RFC 3461 6.2, 5321 6.1).
    if !env.is_bounce && !env.mail_from.is_empty() {
        for (action, rcpts) in [
            (DsnAction::Failed, failed),
            (DsnAction::Delayed, delayed),
            (DsnAction::Relayed, relayed),
        ] {
            if !rcpts.is_empty() {
                dsns.push(DsnPlan { action, rcpts });
            }
        }
    }
    Decision {
        dsns,
        done: env.is_done(),
    }
}

/// What [`unspooled_reason`] begins with.
const UNSPOOLED: &str = "4.3.0 the delivery status notification could not be spooled (";
/// What comes before the failure's own reply in [`unspooled_reason`].
const TRIED_AGAIN: &str = "), so the failure is tried again: ";
/// What comes before the last error in [`expiry_reason`].
const LAST_ERROR: &str = " (max_queue_lifetime); last error: ";

/// Why a failure stays in the queue when its notification could not be
/// spooled: the reason kept as the recipient's last error.
fn unspooled_reason(why: &str, reply: &str) -> String {
    format!("{UNSPOOLED}{why}{TRIED_AGAIN}{reply}")
}

/// walkAU F11: the outcomes of an attempt that only writes the DSN again,
/// when the message has outlived max_queue_lifetime and the report of its
/// expiry could not be spooled (a full disk): its hop is not asked again
/// (the failure is final already; each attempt made a connection and a new
/// "failed for good" per message). Each pending recipient is deferred with
/// the hop's last error, as that expiry had it, so that [`decide`] fails it
/// and plans the same report. None when the message is to be tried at its
/// hop: not expired, or a recipient not waiting for its report only.
pub fn dsn_only(env: &Envelope, t: &Timing) -> Option<Vec<(usize, Outcome)>> {
    if !t.expired(env.received_at) {
        return None;
    }
    let mut out = Vec::new();
    for (i, r) in env.pending() {
        let RcptState::Pending {
            last_error: Some(e),
        } = &r.state
        else {
            return None;
        };
        let reply = e.strip_prefix(UNSPOOLED)?.split_once(TRIED_AGAIN)?.1;
        // The expiry's own words are said again by decide.
        let reply = match reply.split_once(LAST_ERROR) {
            Some((head, last)) if head.starts_with("Message expired after ") => last,
            _ => reply,
        };
        out.push((
            i,
            Outcome::Deferred {
                reply: reply.to_string(),
                relay: String::new(),
            },
        ));
    }
    (!out.is_empty()).then_some(out)
}

/// Applies what became of a decision's DSNs (`results`, one per plan: Ok
/// when it was spooled, or why not). A delay notice counts as sent only
/// once spooled. A failure whose notice could not be spooled (a full disk,
/// or the message could not be read to build it) is not final: its
/// recipients go back to pending with a 4.3.0 reason, so that the failure,
/// and its notice, are done again at the next attempt rather than the
/// message leaving the queue with its sender never told. A success report
/// cannot be taken back that way (the mail was delivered); it is only
/// logged. Returns whether the message is done. Pure.
pub fn settle_dsns(
    env: &mut Envelope,
    plans: &[DsnPlan],
    results: &[Result<(), String>],
    t: &Timing,
) -> bool {
    let mut undone = false;
    for (plan, result) in plans.iter().zip(results) {
        match (plan.action, result) {
            (DsnAction::Delayed, Ok(())) => env.delay_notified = true,
            (DsnAction::Failed, Err(why)) => {
                for p in &plan.rcpts {
                    let Some(r) = env.rcpts.get_mut(p.index) else {
                        continue;
                    };
                    if let RcptState::Failed { reply, .. } = &r.state {
                        r.state = RcptState::Pending {
                            last_error: Some(unspooled_reason(why, reply)),
                        };
                        undone = true;
                    }
                }
            }
            _ => {}
        }
    }
    if undone {
        env.next_attempt = if t.expired(env.received_at) {
            // Past its lifetime the next attempt is capped at nothing:
            // without this it came a second later, and again, while the
            // disk was full (walkAU F11). Only the report is written then
            // ([`dsn_only`]), so the shortest back-off serves.
            t.now + t.min_backoff.as_secs().max(1) as i64
        } else {
            t.next_attempt(env.attempts, env.received_at)
        };
    }
    env.is_done()
}

pub struct Delivery {
    pub gw: Arc<Gateway>,
    pub pool: Pool,
}

impl Delivery {
    fn settings(cfg: &Config) -> ClientSettings {
        ClientSettings {
            helo_name: cfg.server.hostname.clone(),
            connect_timeout: cfg.timeouts.connect.get(),
            command_timeout: cfg.timeouts.command.get(),
            data_timeout: cfg.timeouts.data.get(),
        }
    }

    /// Makes one attempt for every pending recipient, records the new state
    /// durably, queues the DSNs that are due, and hands the message back.
    pub async fn attempt(self: Arc<Self>, mut env: Envelope) {
        let cfg = self.gw.config();
        // Read once: the bytes serve the transactions and any DSN.
        let data = self.gw.spool.read(&env.id).map(|bytes| {
            // Verdict headers the message came with do not leave
            // (policy::verdict_headers); ours go on top below.
            let bytes = crate::policy::verdict_headers::strip(&bytes, &cfg.server.authserv_id)
                .unwrap_or(bytes);
            if env.added_headers.is_empty() {
                Arc::new(bytes)
            } else {
                // The scan verdict header goes on top, above our Received.
                let mut with = Vec::with_capacity(env.added_headers.len() + bytes.len());
                with.extend_from_slice(env.added_headers.as_bytes());
                with.extend_from_slice(&bytes);
                Arc::new(with)
            }
        });
        // The clock is read after the attempt too: one may take minutes.
        let timing = || Timing {
            now: chrono::Utc::now().timestamp(),
            min_backoff: cfg.timeouts.min_backoff.get(),
            max_backoff: cfg.timeouts.max_backoff.get(),
            lifetime: cfg.timeouts.max_queue_lifetime.get(),
            delay_notice: cfg.timeouts.delay_notice.get(),
        };
        let again = dsn_only(&env, &timing());
        // Only the report is written again: no attempt at the hop is
        // made, so none is counted (decide counts one), and a report that
        // still cannot be spooled was told of already (walkAU F11: an
        // ERROR per message per retry while the disk was full).
        let told = again.is_some();
        if told {
            env.attempts = env.attempts.saturating_sub(1);
        }
        let (outcomes, suspended_until) = match (&data, again) {
            (_, Some(outcomes)) => (outcomes, None),
            (Ok(data), None) => self.send_all(&cfg, &env, data.clone()).await,
            (Err(e), None) => {
                tracing::error!(target: "delivery", queue_id = %env.id, error = %e, "Cannot read the message from the spool.");
                let outcomes = env
                    .pending()
                    .map(|(i, _)| {
                        (
                            i,
                            Outcome::Deferred {
                                reply: format!("4.3.0 local spool error: {e}"),
                                relay: String::new(),
                            },
                        )
                    })
                    .collect();
                (outcomes, None)
            }
        };
        let timing = timing();
        // A deferral past max_queue_lifetime is the recipient's last
        // attempt: it is logged and counted as the bounce it becomes
        // (`decide` fails it and plans the DSN).
        let expired = timing.expired(env.received_at);
        for (i, o) in &outcomes {
            if let Some(r) = env.rcpts.get(*i) {
                let (result, relay, detail, tls) = match o {
                    Outcome::Delivered {
                        reply, relay, tls, ..
                    } => (
                        DeliveryResult::Delivered,
                        relay,
                        Cow::Borrowed(reply.as_str()),
                        tls.as_str(),
                    ),
                    Outcome::Failed { reply, relay, .. } => (
                        DeliveryResult::Bounced,
                        relay,
                        Cow::Borrowed(reply.as_str()),
                        "",
                    ),
                    Outcome::Deferred { reply, relay } if expired => (
                        DeliveryResult::Bounced,
                        relay,
                        Cow::Owned(expiry_reason(env.attempts + 1, Some(reply))),
                        "",
                    ),
                    Outcome::Deferred { reply, relay } => (
                        DeliveryResult::Deferred,
                        relay,
                        Cow::Borrowed(reply.as_str()),
                        "",
                    ),
                };
                let bounced = matches!(result, DeliveryResult::Bounced);
                DeliveryAttempted {
                    id: &env.id,
                    rcpt: &r.address,
                    result,
                    relay,
                    detail: &detail,
                    tls,
                    notice: env.is_bounce,
                }
                .emit(&self.gw.stats);
                if let Some(dsn) = bounced.then(|| no_failure_dsn(&env, r)).flatten() {
                    tracing::info!(target: "delivery", queue_id = %env.id, to = %r.address,
                        dsn = %dsn, "No delivery status notification for this failure.");
                }
            }
        }
        let decision = decide(&mut env, outcomes, &timing);
        // No hop was connected to, all being suspended: the next attempt
        // comes when the suspension ends, so that the probe is made then.
        // With the back-off instead, mail deferred with the suspension
        // fell due a moment before its end, was deferred again, and the
        // first probe came a doubled back-off late (walkBP F1). It still
        // counts as an attempt: `queue list --deferred` and `status` count
        // such mail as deferred.
        if let Some(at) = suspended_until.filter(|_| !decision.done && !expired) {
            env.next_attempt = timing.next_at(at, env.received_at);
        }
        let results = match &data {
            Ok(message) => {
                self.queue_dsns(&cfg, &env, &decision.dsns, message, timing.now, told)
                    .await
            }
            // Past its lifetime, waiting for the bytes helps nobody: the
            // sender is told, without them (dsn::build says why nothing
            // is attached), rather than the message being tried for good.
            Err(e) if !decision.dsns.is_empty() && expired => {
                tracing::error!(target: "notif", queue_id = %env.id, error = %e,
                    "Cannot read the message, and it has passed max_queue_lifetime: its sender gets the failure report without it.");
                self.queue_dsns(&cfg, &env, &decision.dsns, &[], timing.now, told)
                    .await
            }
            Err(e) if !decision.dsns.is_empty() => {
                tracing::error!(target: "notif", queue_id = %env.id, error = %e,
                    "Cannot read the message for its DSN; its recipients stay in the queue.");
                let why = format!("the message cannot be read: {e}");
                vec![Err(why); decision.dsns.len()]
            }
            Err(_) => Vec::new(),
        };
        let done = settle_dsns(&mut env, &decision.dsns, &results, &timing);
        let decision = Decision { done, ..decision };
        // The outgoing archive gets what was sent, before the message
        // leaves the spool (after a crash it is sent and archived again,
        // under the same entry).
        if decision.done && cfg.archive.outgoing {
            if let Ok(message) = &data {
                self.archive_sent(&env, message).await;
            }
        }
        let persisted = if decision.done {
            self.gw.spool.remove(&env).await
        } else {
            self.gw.spool.update(&env).await
        };
        // What a restart would do differs: a message done would go again;
        // one still waiting (perhaps not delivered at all, e.g. its DSN
        // could not be spooled) only has this attempt made again (walkW 7).
        match persisted {
            Err(e) if decision.done => {
                tracing::error!(target: "delivery", queue_id = %env.id, error = %e,
                "Cannot record the delivery state; after a restart the message may be delivered again.")
            }
            Err(e) => tracing::error!(target: "delivery", queue_id = %env.id, error = %e,
                "Cannot record the delivery state; after a restart the attempt may be made again."),
            Ok(()) => {}
        }
        if decision.done {
            MessageRemoved {
                id: &env.id,
                why: "all recipients done",
            }
            .emit();
        }
        self.gw.queue.complete(env);
    }

    /// Sends to every next hop in parallel. The time is given when no
    /// hop was connected to, every one being suspended: when to try again
    /// ([`Suspended::retry_at`]).
    async fn send_all(
        &self,
        cfg: &Config,
        env: &Envelope,
        data: Arc<Vec<u8>>,
    ) -> (Vec<(usize, Outcome)>, Option<i64>) {
        let mut groups: BTreeMap<Destination, Vec<usize>> = BTreeMap::new();
        for (i, r) in env.pending() {
            groups
                .entry(destination(&cfg.route, &r.address))
                .or_default()
                .push(i);
        }
        let settings = Self::settings(cfg);
        let backoff = (
            cfg.timeouts.min_backoff.get(),
            cfg.timeouts.max_backoff.get(),
        );
        let mut outcomes = Vec::new();
        let mut retry_at: Option<i64> = None;
        let mut connecting = Vec::new();
        for (dest, idxs) in groups {
            // A suspended destination is not connected to: the mail waits,
            // with the last real error for its DSN (Postfix: "delivery
            // temporarily suspended").
            let now = chrono::Utc::now();
            match self.pool.suspensions.gate(&dest, now) {
                Gate::Suspended(held) => {
                    held.log(&env.id, &dest);
                    let at = held.retry_at(now, backoff.0);
                    retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
                    outcomes.extend(idxs.into_iter().map(|i| (i, held.last.clone())));
                }
                Gate::Go { .. } => connecting.push((dest, idxs)),
            }
        }
        let any_connect = !connecting.is_empty();
        let futures = connecting
            .into_iter()
            .map(|(dest, idxs)| self.send_group(&settings, backoff, env, &data, dest, idxs));
        let results = futures_util::future::join_all(futures).await;
        outcomes.extend(results.into_iter().flatten());
        (outcomes, retry_at.filter(|_| !any_connect))
    }

    async fn send_group(
        &self,
        settings: &ClientSettings,
        backoff: (Duration, Duration),
        env: &Envelope,
        data: &[u8],
        dest: Destination,
        idxs: Vec<usize>,
    ) -> Vec<(usize, Outcome)> {
        let dns = self.gw.dns();
        let all = |o: Outcome| idxs.iter().map(|&i| (i, o.clone())).collect::<Vec<_>>();
        // A cached connection may have been closed by the peer meanwhile:
        // one retry on a fresh connection.
        for round in 0..2 {
            let mut leased = match self
                .pool
                .lease(&dns, &self.gw.dns_recent, &dest, settings, &env.id)
                .await
            {
                Ok(l) => {
                    self.pool.suspensions.succeeded(&dest, self.pool.stats());
                    l
                }
                Err(e) => {
                    let outcome = lease_outcome(&e, &dest);
                    self.pool
                        .suspensions
                        .failed(&dest, &e, &outcome, backoff, self.pool.stats());
                    return all(outcome);
                }
            };
            let rcpts: Vec<TxRcpt<'_>> = idxs
                .iter()
                .filter_map(|&i| env.rcpts.get(i))
                .map(|r: &Recipient| TxRcpt {
                    address: &r.address,
                    notify: r.notify,
                    orcpt: r.orcpt.as_deref(),
                })
                .collect();
            // A hop without 8BITMIME gets 8-bit mail converted to 7-bit
            // MIME (RFC 6152 3, as Postfix does); what cannot be converted
            // still goes to the client as 8-bit, which fails it with 5.6.3.
            let converted = (env.eight_bit && !leased.client.extensions().eight_bit_mime)
                .then(|| super::downgrade::seven_bit(data));
            let (body, eight_bit, size) = match &converted {
                Some(Ok(seven)) => {
                    tracing::info!(target: "delivery", queue_id = %env.id,
                        relay = %leased.client.peer(), bytes = seven.len(),
                        "Converted 8-bit content to 7-bit MIME for a hop without 8BITMIME.");
                    (seven.as_slice(), false, seven.len() as u64)
                }
                Some(Err(why)) => {
                    tracing::warn!(target: "delivery", queue_id = %env.id,
                        relay = %leased.client.peer(), reason = %why,
                        "Cannot convert 8-bit content to 7-bit MIME for a hop without 8BITMIME.");
                    (data, true, env.size)
                }
                None => (data, env.eight_bit, env.size),
            };
            let tx = Transaction {
                mail_from: &env.mail_from,
                eight_bit,
                smtputf8: env.smtputf8,
                size,
                ret: env.ret,
                envid: env.envid.as_deref(),
                rcpts,
                body,
                // Mail we made ourselves (DSNs, notifications) has no
                // client to name.
                origin: (!env.is_bounce).then_some(crate::delivery::client::Origin {
                    addr: env.client_ip,
                    helo: &env.helo,
                    ident: &env.id.0,
                }),
            };
            let relay = leased.client.peer().to_string();
            let hop_dsn = leased.client.extensions().dsn;
            let tls = leased
                .client
                .tls()
                .map_or_else(|| "none".to_string(), |t| t.to_string());
            match leased.client.send(&tx).await {
                Ok(outcome) => {
                    let mut finals: BTreeMap<usize, Reply> =
                        idxs.iter().copied().zip(outcome.rcpts).collect();
                    let mut usable = leased.client.reset().await.is_ok();
                    // A 452 to some recipients of a transaction that took
                    // others means "not in this transaction" (RFC 5321
                    // 4.5.3.1.10, a per-transaction limit): the rest go in
                    // another transaction now, not after a back-off, until
                    // one takes none of them (walkAE 4). A 452 to all of
                    // them is the hop being busy: that waits.
                    let mut last: Vec<usize> = idxs.clone();
                    while usable {
                        let took_some = last
                            .iter()
                            .any(|i| finals.get(i).is_some_and(Reply::is_positive));
                        let rest: Vec<usize> = last
                            .iter()
                            .copied()
                            .filter(|i| finals.get(i).is_some_and(|r| r.code == 452))
                            .collect();
                        if !took_some || rest.is_empty() {
                            break;
                        }
                        tracing::info!(target: "delivery", queue_id = %env.id, relay = %relay,
                            rcpts = rest.len(), reply = %rest.first().and_then(|i| finals.get(i)).map(Reply::to_line).unwrap_or_default(),
                            "The next hop took only some recipients in this transaction; the rest go in another one now.");
                        let more = Transaction {
                            rcpts: rest
                                .iter()
                                .filter_map(|&i| tx.rcpts.get(idxs.iter().position(|&x| x == i)?))
                                .cloned()
                                .collect(),
                            ..tx.clone()
                        };
                        match leased.client.send(&more).await {
                            Ok(o) => {
                                for (&i, reply) in rest.iter().zip(o.rcpts) {
                                    finals.insert(i, reply);
                                }
                                last = rest;
                                usable = leased.client.reset().await.is_ok();
                            }
                            Err(e) => {
                                // The rest keep their 452 and wait for the
                                // next attempt.
                                if e.after_end_of_data() {
                                    tracing::warn!(target: "delivery", queue_id = %env.id, relay = %relay, error = %e,
                                        "No reply to the end of the message: the next hop may have it, so the retry after the back-off may deliver it twice.");
                                } else {
                                    tracing::info!(target: "delivery", queue_id = %env.id, relay = %relay, error = %e,
                                        "The next transaction for the rest of the recipients failed; they wait for the next attempt.");
                                }
                                usable = false;
                            }
                        }
                    }
                    if finals.values().any(Reply::is_positive) {
                        crate::events::MessageSent {
                            id: &env.id,
                            bytes: data.len() as u64,
                        }
                        .emit(&self.gw.stats);
                    }
                    let results = idxs
                        .iter()
                        .filter_map(|&i| {
                            let reply = finals.get(&i)?;
                            Some((i, reply_outcome(reply, &relay, hop_dsn, &tls)))
                        })
                        .collect();
                    if usable {
                        self.pool.release(leased);
                    }
                    return results;
                }
                // Only before the final dot: after it the next hop may
                // have queued the message, and sending it again now would
                // deliver it twice (walkAE 1); it is deferred below.
                Err(e)
                    if leased.reused
                        && round == 0
                        && !e.is_permanent()
                        && !e.after_end_of_data() =>
                {
                    tracing::info!(target: "delivery", queue_id = %env.id, relay = %relay, error = %e,
                        "Cached connection failed before the message was sent; retrying on a new one.");
                    continue;
                }
                Err(e) => {
                    if e.after_end_of_data() {
                        tracing::warn!(target: "delivery", queue_id = %env.id, relay = %relay, error = %e,
                            "No reply to the end of the message: the next hop may have it, so the retry after the back-off may deliver it twice.");
                    }
                    let status = e
                        .reply()
                        .and_then(Reply::enhanced)
                        .unwrap_or_else(|| e.status().to_string());
                    // The sender's DSN says why the message could not be
                    // converted, not only that it is 8-bit.
                    let reply = match (&e, &converted) {
                        (ClientError::EightBitNotSupported, Some(Err(why))) => format!(
                            "{status} the message has 8-bit content that cannot be converted \
                             to 7-bit MIME ({why}) and the next hop does not offer 8BITMIME"
                        ),
                        _ => format!("{status} {e}"),
                    };
                    return all(if e.is_permanent() {
                        Outcome::Failed {
                            status: status.clone(),
                            reply,
                            relay,
                        }
                    } else {
                        Outcome::Deferred { reply, relay }
                    });
                }
            }
        }
        Vec::new()
    }

    /// Copies a delivered message, as sent, to the outgoing archive.
    async fn archive_sent(&self, env: &Envelope, message: &Arc<Vec<u8>>) {
        use crate::envelope::RcptState;
        let delivered: Vec<String> = env
            .rcpts
            .iter()
            .filter(|r| matches!(r.state, RcptState::Delivered { .. }))
            .map(|r| r.address.clone())
            .collect();
        if delivered.is_empty() {
            return;
        }
        let meta = crate::store::EntryMeta {
            queue_id: env.id.0.clone(),
            received: env.received_at,
            sender: env.mail_from.clone(),
            recipients: delivered,
            client_ip: env.client_ip.to_string(),
            helo: env.helo.clone(),
            statuses: {
                // Anti-virus first, as in the other stores' entries.
                let mut statuses = env.statuses.clone();
                statuses.sort_by_key(|s| !s.starts_with("av/"));
                statuses
            },
            findings: Vec::new(),
            group: String::new(),
            // A notification or DSN was made here, not received: its
            // client (127.0.0.1) and empty statuses would otherwise read
            // as a message that came in unchecked (walkAY A5).
            reason: if env.is_bounce && env.mail_from.is_empty() {
                "outgoing; made by this gateway (a notification or delivery report), not received"
                    .into()
            } else {
                "outgoing".into()
            },
            size: message.len() as u64,
        };
        let direction = crate::store::Direction::Outgoing;
        match self
            .gw
            .stores
            .archive(direction)
            .put(&env.id.0, message, &meta)
            .await
        {
            Ok(bytes) => crate::events::MessageArchived {
                id: &env.id,
                direction,
                bytes,
            }
            .emit(&self.gw.stats),
            Err(e) => tracing::error!(target: "backup", queue_id = %env.id, error = %e,
                "Cannot copy a delivered message to the outgoing archive."),
        }
    }

    /// Builds, spools and queues the DSNs of a decision. `told`: a
    /// failure to spool them was logged already, for this message, since
    /// the spool last took its report.
    async fn queue_dsns(
        &self,
        cfg: &Config,
        env: &Envelope,
        plans: &[DsnPlan],
        message: &[u8],
        now: i64,
        told: bool,
    ) -> Vec<Result<(), String>> {
        let mut results = Vec::with_capacity(plans.len());
        let retry_until = env.received_at + cfg.timeouts.max_queue_lifetime.get().as_secs() as i64;
        for plan in plans {
            let recipients = plan
                .rcpts
                .iter()
                .filter_map(|p| {
                    let r = env.rcpts.get(p.index)?;
                    Some(DsnRecipient {
                        address: &r.address,
                        orcpt: r.orcpt.as_deref(),
                        action: plan.action,
                        status: p.status.clone(),
                        diagnostic: (!p.diagnostic.is_empty()).then(|| p.diagnostic.clone()),
                        reason: p.reason.clone(),
                        remote_mta: (!p.relay.is_empty()).then(|| p.relay.clone()),
                        last_attempt: Some(now),
                        will_retry_until: (plan.action == DsnAction::Delayed)
                            .then_some(retry_until),
                    })
                })
                .collect();
            let dsn_id = QueueId::generate();
            let bytes = dsn::build(&DsnInput {
                id: &dsn_id,
                reporting_mta: &cfg.server.hostname,
                postmaster: &cfg.server.postmaster,
                original: env,
                recipients,
                message,
                now,
            });
            let mut to = Recipient::new(env.mail_from.clone());
            to.notify = Some(Notify {
                never: true,
                ..Notify::default()
            });
            let dsn_env = Envelope {
                received_at: now,
                eight_bit: dsn::is_eight_bit(&bytes),
                // A report to a UTF-8 sender, or one whose header names
                // one, goes with SMTPUTF8 (RFC 6533 6).
                smtputf8: dsn::needs_smtputf8(&env.mail_from, &bytes),
                size: bytes.len() as u64,
                rcpts: vec![to],
                is_bounce: true,
                scanned: true,
                ..Envelope::new(
                    dsn_id,
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    cfg.server.hostname.clone(),
                    String::new(),
                )
            };
            match self.gw.spool.accept(&dsn_env, bytes).await {
                Ok(()) => {
                    DsnQueued {
                        about: &env.id,
                        dsn: &dsn_env.id,
                        kind: plan.action.as_str(),
                        to: &env.mail_from,
                    }
                    .emit(&self.gw.stats);
                    self.gw.queue.enqueue(dsn_env);
                    results.push(Ok(()));
                }
                Err(e) => {
                    let then = match plan.action {
                        DsnAction::Failed => {
                            "the failed recipients stay in the queue and are tried again"
                        }
                        DsnAction::Delayed => "the delay notice is tried again at the next attempt",
                        _ => "the report is lost (the mail was delivered)",
                    };
                    if told {
                        tracing::debug!(target: "notif", queue_id = %env.id, kind = plan.action.as_str(),
                            error = %e, then, "Cannot spool a DSN.");
                    } else {
                        tracing::error!(target: "notif", queue_id = %env.id, kind = plan.action.as_str(),
                            error = %e, then, "Cannot spool a DSN.");
                    }
                    results.push(Err(e.to_string()));
                }
            }
        }
        results
    }
}

#[cfg(test)]
mod tests;
