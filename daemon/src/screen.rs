//! Between the spool and the queue: a spooled message is scanned, its
//! verdict recorded, and the policy applied: delivered (maybe with parts
//! removed or replaced and a verdict header), refused in the session, or
//! blocked. The SMTP session waits for this up to `timeouts.scan_in_session`
//! (DESIGN 1); a scan that takes longer is settled here in the background.
//! Messages found unscanned in the spool at start come through here too.
//!
//! Durability: the original bytes are in the spool before the scan starts.
//! A rewritten message is spooled again (same queue id, new bytes) before
//! it is queued; a refused or blocked one is removed. A crash before any of
//! that leaves the message unscanned in the spool, and it is scanned again
//! at the next start: scanning is deterministic for given bases, so the
//! only cost is a second count in the statistics.

use crate::config::Policy;
use crate::envelope::Envelope;
use crate::events::ScanFinished;
use crate::gateway::Gateway;
use crate::policy::Fate;
use crate::scan::ScanOutcome;
use std::future::Future;
use std::sync::Arc;

/// Findings of one message logged one line each; the rest are summed up.
pub const MAX_LOGGED_FINDINGS: usize = 20;

/// Starts the scan of one message as the policy asks; the future gives
/// the outcome (it never fails: problems are the `av/error` status).
pub fn scan(
    gw: &Gateway,
    policy: &Arc<Policy>,
    data: Arc<Vec<u8>>,
) -> impl Future<Output = ScanOutcome> + Send + 'static {
    let scan = policy.check_av.then(|| {
        let timeout = gw.config().timeouts.scan.get();
        gw.scanner.submit(data, policy.clone(), timeout)
    });
    let check_spam = policy.check_spam;
    async move {
        match scan {
            Some(rx) => rx.await.unwrap_or_else(|_| {
                ScanOutcome::failed("the scan worker stopped", std::time::Duration::ZERO)
            }),
            None => ScanOutcome::unchecked(check_spam),
        }
    }
}

/// Records the verdict and applies the policy. `in_session` is true when
/// the client still waits for its reply to DATA (a refusal is possible).
pub async fn settle(
    gw: &Gateway,
    mut envelope: Envelope,
    outcome: ScanOutcome,
    policy: &Policy,
    group: &str,
    in_session: bool,
) -> Fate {
    let status = outcome.status();
    let names: Vec<String> = outcome
        .report
        .viruses
        .iter()
        .chain(&outcome.report.filter_rules)
        .cloned()
        .collect();
    let fate = crate::policy::fate(policy, &status, &names, in_session);
    // "Received" counts the 250s; in the session it is counted here, before
    // the verdict, so that no snapshot shows a verdict for a message not
    // yet received (a late scan's 250 was counted by the session).
    if in_session && !matches!(fate, Fate::Reject(_)) {
        crate::events::MessageAccepted {
            envelope: &envelope,
        }
        .emit(&gw.stats);
    }
    ScanFinished {
        envelope: &envelope,
        av: outcome.report.av,
        spam: outcome.report.spam,
        viruses: &outcome.report.viruses,
        filter_rules: &outcome.report.filter_rules,
        duration: outcome.duration,
        group,
    }
    .emit(&gw.stats);
    if outcome.memory_refused {
        crate::events::ScanMemoryRefused { id: &envelope.id }.emit(&gw.stats);
    }
    // One line per finding, up to a cap: an archive of 10,000 infected
    // members must not write 10,000 lines (the statistics count them all).
    for f in outcome.findings.iter().take(MAX_LOGGED_FINDINGS) {
        tracing::info!(target: "scan", queue_id = %envelope.id, status = f.kind.status().as_str(),
            detection = %f.name, object = %f.path, "Finding.");
    }
    if outcome.findings.len() > MAX_LOGGED_FINDINGS {
        let kinds: std::collections::BTreeSet<&str> = outcome.findings[MAX_LOGGED_FINDINGS..]
            .iter()
            .map(|f| f.kind.status().as_str())
            .collect();
        tracing::info!(target: "scan", queue_id = %envelope.id,
            more = outcome.findings.len() - MAX_LOGGED_FINDINGS,
            statuses = %kinds.into_iter().collect::<Vec<_>>().join(","),
            "More findings in this message, not logged one by one.");
    }
    match &fate {
        Fate::Reject(reply) => {
            if let Err(e) = gw.spool.remove(&envelope).await {
                tracing::error!(target: "policy", queue_id = %envelope.id, error = %e,
                    "Cannot remove a refused message from the spool; it will be scanned again at the next start.");
            }
            tracing::info!(target: "policy", queue_id = %envelope.id, status = %status, reply = %reply,
                "Message refused by content policy.");
        }
        Fate::Block => {
            if let Err(e) = gw.spool.remove(&envelope).await {
                tracing::error!(target: "policy", queue_id = %envelope.id, error = %e,
                    "Cannot remove a blocked message from the spool; it will be scanned again at the next start.");
            }
            gw.stats
                .record(&mailward_metrics::event::Event::MessageBlocked);
            tracing::info!(target: "policy", queue_id = %envelope.id, status = %status,
                from = %envelope.mail_from, rcpts = envelope.rcpts.len(),
                "Message blocked: accepted, not delivered.");
        }
        Fate::Deliver => {
            envelope.scanned = true;
            envelope.added_headers = outcome.header.unwrap_or_default();
            if let Some(new) = outcome.rewritten {
                envelope.size = new.len() as u64;
                if let Err(e) = gw.spool.accept(&envelope, new).await {
                    // Never deliver the original instead: it stays in the
                    // spool unscanned and is dealt with at the next start.
                    tracing::error!(target: "policy", queue_id = %envelope.id, error = %e,
                        "Cannot store the cleaned message; holding it until the next start.");
                    return fate;
                }
                tracing::info!(target: "policy", queue_id = %envelope.id, status = %status,
                    size = envelope.size, "Parts removed or replaced.");
            }
            gw.queue.enqueue(envelope);
        }
    }
    fate
}

/// Scans a message found unscanned in the spool at start, then settles it
/// (a refusal is no longer possible: it becomes a block).
pub async fn rescan(gw: Arc<Gateway>, envelope: Envelope) {
    let data = match gw.spool.read(&envelope.id) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            tracing::error!(target: "scan", queue_id = %envelope.id, error = %e,
                "Cannot read an unscanned message from the spool; it stays there.");
            return;
        }
    };
    let cfg = gw.config();
    let (policy, group) = crate::policy::effective(&cfg, &envelope);
    let policy = Arc::new(policy);
    let outcome = scan(&gw, &policy, data).await;
    settle(&gw, envelope, outcome, &policy, &group, false).await;
}
