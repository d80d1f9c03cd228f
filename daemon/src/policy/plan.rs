//! The plan for one policy group of a message, decided purely from the
//! group's policy and the checks' report (DESIGN 1). Carrying it out is
//! [`super::execute`]'s job; nothing here does I/O.
//!
//! - **Delivery**: a status in `reject` refuses the message in the SMTP
//!   session (550 5.7.1, no bounce, no backscatter); once the 250 has been
//!   given, a refusal is no longer possible and becomes a block. A status
//!   in `block` accepts the message and never delivers it. Otherwise the
//!   message is delivered. A spam status that rests on a spam trap alone
//!   is never refused, only blocked: the refusal would tell the sender
//!   that one of the recipients is a trap (walkR 3).
//! - **Part edits** (`action_*`): a top-level part with a finding is kept,
//!   removed or replaced by a notice, by the action for the worst of its
//!   findings whose action edits it.
//! - **Subject and headers**: a status in `mark_subject` puts
//!   `subject_prefix` for it in front of the Subject; `add_headers` adds the
//!   verdict headers and `Authentication-Results`.
//! - **Quarantine**: a status in `quarantine` keeps a copy of the message as
//!   received. It never stops delivery by itself (seed: "Creation of message
//!   copy in backup storage or quarantine directory does not block
//!   delivery"): that is `block`'s job.
//! - **Notifications** to the sender, the recipients and the administrator
//!   (`notify_*`). Never to the null sender, and never to the sender for a
//!   spam status (`as/*`), nor about a virus in a message that is also
//!   `as/spam` or `as/blacklisted`: spam senders are forged, and notifying
//!   them is backscatter.

use super::edit::{ascii, Edit};
use crate::check::{av, Report};
use crate::config::{statuses_cover, Action, Policy, Status};
use mailward_metrics::event::{AvStatus, SpamStatus};
use std::collections::BTreeMap;

/// What happens to the group's recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Deliver,
    /// Refused in the session with this reply.
    Refuse(String),
    /// Accepted, never delivered.
    Block,
}

/// Who a notification goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotifyTo {
    Sender,
    Recipients,
    Admin,
}

impl NotifyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyTo::Sender => "sender",
            NotifyTo::Recipients => "recipients",
            NotifyTo::Admin => "admin",
        }
    }
}

/// The plan for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The group's anti-virus status (None: it does not check).
    pub av: Option<AvStatus>,
    /// Its spam status (None: it does not check).
    pub spam: Option<SpamStatus>,
    pub delivery: Delivery,
    /// The status that made `delivery` a refusal or a block (None when the
    /// message is delivered): the one logs and notices name for it, which
    /// is not always [`Plan::shown_status`] (a group that blocks as/spam
    /// blocks a message that is also av/infected because of the spam).
    pub cause: Option<String>,
    /// The group refuses `cause`, but the message is blocked instead: its
    /// spam verdict rests on a spam trap alone, and a refusal would give
    /// the trap away ([`crate::check::spam::Evidence::trapped`]).
    pub trap_kept_secret: bool,
    /// The group refuses `cause` (`reject`): a block only because no
    /// refusal can be given (after the 250, after the queue, or another
    /// group takes the message), which the log says (walkBQ F5).
    pub refused: bool,
    /// Top-level part index -> the edit and its notice text.
    pub edits: BTreeMap<usize, (Edit, String)>,
    /// Put in front of the Subject.
    pub subject_prefix: Option<String>,
    /// Verdict header lines, each with its CRLF.
    pub headers: String,
    /// Keep a copy in quarantine, for this status.
    pub quarantine: Option<String>,
    pub notify: Vec<NotifyTo>,
}

impl Plan {
    /// The statuses as policy lists write them: `["av/infected", "as/clean"]`.
    pub fn statuses(&self) -> Vec<String> {
        self.av
            .map(|s| format!("av/{}", s.as_str()))
            .into_iter()
            .chain(self.spam.map(|s| format!("as/{}", s.as_str())))
            .collect()
    }

    /// The status that raw records and logs show: the AV status unless it
    /// is clean, then the spam status ("av/clean" when spam is not checked).
    pub fn shown_status(&self) -> String {
        match (self.av, self.spam) {
            (Some(AvStatus::Clean) | None, Some(s)) => format!("as/{}", s.as_str()),
            (Some(a), _) => format!("av/{}", a.as_str()),
            (None, None) => "av/clean".into(),
        }
    }

    /// The status named for what happened to the group's recipients: the
    /// one that caused a block or refusal, else [`Plan::shown_status`].
    pub fn outcome_status(&self) -> String {
        self.cause.clone().unwrap_or_else(|| self.shown_status())
    }

    /// The group's anti-virus status when it is a finding (`av/clean` and
    /// an unchecked message: None). The one status a sender's notice may
    /// state: spam and clean verdicts are never told to a sender.
    pub fn av_finding(&self) -> Option<String> {
        self.av
            .map(|s| format!("av/{}", s.as_str()))
            .filter(|s| !crate::config::NOT_IN_ALL.contains(&s.as_str()))
    }

    /// Whether the group's copy differs from the message as received.
    pub fn changes_bytes(&self) -> bool {
        self.delivery == Delivery::Deliver
            && (!self.edits.is_empty() || self.subject_prefix.is_some())
    }
}

/// The first of the message's statuses that `list` covers.
fn covered<'s>(list: &[Status], statuses: &'s [String]) -> Option<&'s String> {
    statuses.iter().find(|s| statuses_cover(list, s))
}

/// Decides the plan of group `group` (its `policy`) for a message with
/// `report`. `in_session`: the client still waits for its reply to DATA.
/// `null_sender`: the message came from `<>` (a bounce or the like).
pub fn decide(
    policy: &Policy,
    group: &str,
    report: &Report,
    in_session: bool,
    null_sender: bool,
) -> Plan {
    let av = report.av_status(group, policy);
    let spam = report.spam_status(policy);
    let mut plan = Plan {
        av,
        spam,
        delivery: Delivery::Deliver,
        cause: None,
        trap_kept_secret: false,
        refused: false,
        edits: BTreeMap::new(),
        subject_prefix: None,
        headers: String::new(),
        quarantine: None,
        notify: Vec::new(),
    };
    let statuses = plan.statuses();
    let findings: Vec<_> = report.findings_for(group, policy).collect();
    // A spam status that rests on a trap alone may be blocked, never
    // refused: a refusal (550 to a trap and a mailbox, 250 to the mailbox
    // alone) would tell a list cleaner which address is the trap. The
    // refusal is decided on the statuses the message has without the trap
    // (the same reply as to the mailbox alone: a spam that the group
    // refuses anyway is refused as such), the block on its own.
    let without_trap: Vec<String> = match report.spam.as_ref().filter(|e| e.trapped) {
        Some(e) => av
            .map(|s| format!("av/{}", s.as_str()))
            .into_iter()
            .chain(
                spam.map(|_| format!("as/{}", e.status_without_trap(policy.spam_level).as_str())),
            )
            .collect(),
        None => statuses.clone(),
    };
    let refused = covered(&policy.reject, &without_trap);
    if let Some(status) = covered(&policy.reject, &statuses).filter(|_| refused.is_none()) {
        plan.delivery = Delivery::Block;
        plan.cause = Some(status.clone());
        plan.trap_kept_secret = true;
    } else if let Some(status) = refused {
        plan.delivery = if in_session {
            // Only the findings of the status refused are named: a refusal
            // for as/spam that named a virus would tell the sender the spam
            // verdict was "EICAR_Test_File". A spam status names nothing:
            // its tests are ours, not the sender's business.
            let names = crate::check::unique(
                findings
                    .iter()
                    .filter(|f| status.strip_prefix("av/") == Some(f.kind.status().as_str()))
                    .map(|f| f.name.clone()),
            );
            let why = if names.is_empty() {
                String::new()
            } else {
                let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                format!(" ({})", ascii(&shown.join(", ")))
            };
            Delivery::Refuse(format!(
                "550 5.7.1 Message refused by content policy: {status}{why}"
            ))
        } else {
            Delivery::Block
        };
        plan.cause = Some(status.clone());
        plan.refused = true;
    } else if let Some(status) = covered(&policy.block, &statuses) {
        plan.delivery = Delivery::Block;
        plan.cause = Some(status.clone());
    }
    plan.quarantine = covered(&policy.quarantine, &statuses).cloned();
    // Only an anti-virus finding may reach the sender: never a spam or
    // clean verdict, even if a list named one (the configuration refuses
    // that; this holds for a Policy made any other way too).
    let av_only: Vec<String> = plan.av_finding().into_iter().collect();
    // A virus in a message that is also spam (or from a blacklisted
    // source) nearly always has a forged sender: the notice would be
    // backscatter to a stranger (walkAD 11).
    let forged = matches!(plan.spam, Some(SpamStatus::Spam | SpamStatus::Blacklisted));
    if !null_sender && !forged && covered(&policy.notify_sender, &av_only).is_some() {
        plan.notify.push(NotifyTo::Sender);
    }
    if covered(&policy.notify_recipients, &statuses).is_some() {
        plan.notify.push(NotifyTo::Recipients);
    }
    if covered(&policy.notify_admin, &statuses).is_some() {
        plan.notify.push(NotifyTo::Admin);
    }
    if plan.delivery != Delivery::Deliver {
        return plan;
    }
    plan.edits = edits(&findings, policy);
    if let Some(status) = covered(&policy.mark_subject, &statuses) {
        plan.subject_prefix = Some(
            policy
                .subject_prefix
                .get(status)
                .cloned()
                .unwrap_or_else(|| format!("[{status}]")),
        );
    }
    if policy.add_headers {
        if let Some(field) = &report.authentication {
            plan.headers.push_str(field);
        }
        if let Some(status) = av {
            plan.headers
                .push_str(&av::header(status, &findings, report.bases.as_ref()));
        }
        if let (Some(status), Some(evidence)) = (spam, report.spam.as_ref()) {
            plan.headers.push_str(&evidence.header(status));
        }
    }
    plan
}

/// The action for parts with a finding of this kind.
fn action(kind: crate::check::Kind, policy: &Policy) -> Action {
    use crate::check::Kind;
    match kind {
        Kind::Filtered => policy.action_filtered,
        Kind::Error => policy.action_error,
        Kind::Protected => policy.action_protected,
        Kind::Suspicious => policy.action_suspicious,
        Kind::Infected => policy.action_infected,
    }
}

/// The edit of each top-level part: the action for the worst of its
/// findings whose action edits it. Any finding's action is taken: an
/// encrypted zip holding `invoice.exe` is `av/protected` (passed by
/// default) and filtered by name (removed by default), and is removed;
/// with the worst finding's action alone, encrypting the zip let the
/// filtered name through (walkBS S7).
/// A virus found in no part of the parse the edits work on (found in the
/// message as another reader reads it, walkAH 2) is an edit of the whole
/// message (part 0, the root: its body is replaced by the notice), so
/// that the action for it is taken rather than the virus delivered marked.
fn edits(findings: &[&crate::check::Finding], policy: &Policy) -> BTreeMap<usize, (Edit, String)> {
    use crate::check::Kind;
    let mut worst: BTreeMap<usize, (&crate::check::Finding, Edit)> = BTreeMap::new();
    for f in findings {
        let part = match f.part {
            Some(p) => Some(p),
            None if matches!(f.kind, Kind::Infected | Kind::Suspicious) => Some(0),
            None => None,
        };
        let edit = match action(f.kind, policy) {
            Action::Pass => continue,
            Action::Remove => Edit::Remove,
            Action::Placeholder => Edit::Placeholder,
        };
        if let Some(p) = part {
            let e = worst.entry(p).or_insert((f, edit));
            if f.kind > e.0.kind {
                *e = (f, edit);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (part, (f, edit)) in worst {
        let verb = match edit {
            Edit::Remove => "removed",
            Edit::Placeholder => "replaced",
        };
        // The part's label is filled in by the edit (it knows the parse).
        let notice = format!(
            "Mailward {verb} {{part}} of this message: {} ({} in {}).",
            f.kind.status().as_str(),
            crate::text::one_line(&f.name),
            crate::text::one_line(&f.path)
        );
        out.insert(part, (edit, notice));
    }
    out
}

#[cfg(test)]
mod tests;
