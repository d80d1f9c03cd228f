//! Table tests of the plan: every status × list × in-session combination,
//! every status × action, and the notification rules.

use super::*;
use crate::check::{Finding, Kind, Report};
use crate::config::{Action, Status};

fn policy() -> Policy {
    crate::config::parse("", "t.toml").unwrap().policy
}

/// A report whose only finding (in part 0) has `kind`; None: clean.
fn report(kind: Option<Kind>) -> Report {
    Report {
        av_checked: true,
        av: kind
            .into_iter()
            .filter(|k| *k != Kind::Filtered)
            .map(|k| Finding::new(k, "Rule_X", "a.zip/x.exe", Some(0)))
            .collect(),
        filtered: [(
            String::new(),
            kind.into_iter()
                .filter(|k| *k == Kind::Filtered)
                .map(|k| Finding::new(k, "name:*.exe", "x.exe", Some(0)))
                .collect(),
        )]
        .into(),
        ..Report::default()
    }
}

const KINDS: [Option<Kind>; 6] = [
    None,
    Some(Kind::Infected),
    Some(Kind::Suspicious),
    Some(Kind::Protected),
    Some(Kind::Error),
    Some(Kind::Filtered),
];

fn status_of(kind: Option<Kind>) -> String {
    format!("av/{}", kind.map_or(AvStatus::Clean, Kind::status).as_str())
}

#[test]
fn every_status_with_every_list_in_and_after_the_session() {
    #[derive(Clone, Copy, Debug)]
    enum List {
        None,
        Reject,
        Block,
        Quarantine,
    }
    for kind in KINDS {
        let status = status_of(kind);
        for list in [List::None, List::Reject, List::Block, List::Quarantine] {
            for in_session in [true, false] {
                let mut p = policy();
                let entry = vec![Status(status.clone())];
                match list {
                    List::None => {}
                    List::Reject => p.reject = entry,
                    List::Block => p.block = entry,
                    List::Quarantine => p.quarantine = entry,
                }
                let plan = decide(&p, "", &report(kind), in_session, false);
                let want = match (list, in_session) {
                    (List::Reject, true) => "refuse",
                    // After the 250 a refusal is a block.
                    (List::Reject, false) | (List::Block, _) => "block",
                    // A quarantine copy alone never stops delivery.
                    (List::None | List::Quarantine, _) => "deliver",
                };
                let got = match &plan.delivery {
                    Delivery::Deliver => "deliver",
                    Delivery::Block => "block",
                    Delivery::Refuse(reply) => {
                        assert!(
                            reply.starts_with(&format!(
                                "550 5.7.1 Message refused by content policy: {status}"
                            )),
                            "{reply}"
                        );
                        "refuse"
                    }
                };
                assert_eq!(got, want, "{status} in {list:?}, in session: {in_session}");
                assert_eq!(
                    plan.quarantine.is_some(),
                    matches!(list, List::Quarantine),
                    "{status} in {list:?}"
                );
                assert_eq!(
                    plan.av.map(|s| format!("av/{}", s.as_str())),
                    Some(status.clone())
                );
            }
        }
    }
}

#[test]
fn every_status_with_every_part_action() {
    for kind in KINDS.into_iter().flatten() {
        for action in [Action::Pass, Action::Remove, Action::Placeholder] {
            let mut p = policy();
            match kind {
                Kind::Infected => p.action_infected = action,
                Kind::Suspicious => p.action_suspicious = action,
                Kind::Protected => p.action_protected = action,
                Kind::Error => p.action_error = action,
                Kind::Filtered => p.action_filtered = action,
            }
            let plan = decide(&p, "", &report(Some(kind)), true, false);
            let want = match action {
                Action::Pass => None,
                Action::Remove => Some(Edit::Remove),
                Action::Placeholder => Some(Edit::Placeholder),
            };
            assert_eq!(plan.edits.get(&0).map(|e| e.0), want, "{kind:?} {action:?}");
            if let Some((_, notice)) = plan.edits.get(&0) {
                assert!(notice.contains(kind.status().as_str()), "{notice}");
            }
        }
    }
}

/// The edit of part 0 and its notice (none: a removal with an empty
/// notice, which the assertions on the notice catch).
fn edit_of(p: &Policy, r: &Report) -> (Edit, String) {
    decide(p, "", r, true, false)
        .edits
        .get(&0)
        .cloned()
        .unwrap_or((Edit::Remove, String::new()))
}

/// walkBS S7: an encrypted zip (av/protected, passed by default) holding a
/// name the filter removes is removed; the part's edit is that of the
/// worst of its findings whose action edits it.
#[test]
fn a_part_is_edited_by_any_finding_whose_action_edits_it() {
    let mut p = policy();
    p.action_protected = Action::Pass;
    p.action_filtered = Action::Remove;
    let mut r = report(Some(Kind::Protected));
    r.filtered = [(
        String::new(),
        vec![Finding::new(
            Kind::Filtered,
            "name:*.exe",
            "a.zip/x.exe",
            Some(0),
        )],
    )]
    .into();
    let (edit, notice) = edit_of(&p, &r);
    assert_eq!(edit, Edit::Remove);
    assert!(
        notice.contains(": filtered (name:*.exe in a.zip/x.exe)"),
        "{notice}"
    );
    // Both edit it: the worst finding's action and notice.
    p.action_protected = Action::Placeholder;
    let (edit, notice) = edit_of(&p, &r);
    assert_eq!(edit, Edit::Placeholder);
    assert!(notice.contains(": protected (Rule_X"), "{notice}");
    // Neither does: the part stays.
    p.action_protected = Action::Pass;
    p.action_filtered = Action::Pass;
    assert!(decide(&p, "", &r, true, false).edits.is_empty());
}

/// walkAH 2: a virus found only in another reading of the message names
/// no part; it was delivered, marked, when the action was a part edit.
#[test]
fn a_virus_in_no_part_is_an_edit_of_the_whole_message() {
    for (kind, want) in [
        (Kind::Infected, Some(Edit::Remove)),
        (Kind::Suspicious, Some(Edit::Remove)),
        // No bases, a damaged message: nothing to act on by part.
        (Kind::Error, None),
    ] {
        let mut p = policy();
        p.action_infected = Action::Remove;
        p.action_suspicious = Action::Remove;
        p.action_error = Action::Remove;
        let r = Report {
            av_checked: true,
            av: vec![Finding::new(kind, "Rule_X", "part 2 (read past ...)", None)],
            ..Report::default()
        };
        let plan = decide(&p, "", &r, true, false);
        assert_eq!(plan.edits.get(&0).map(|e| e.0), want, "{kind:?}");
    }
}

#[test]
fn a_blocked_or_refused_message_gets_no_edits_mark_or_headers() {
    let mut p = policy();
    p.block = vec![Status("av/infected".into())];
    p.mark_subject = vec![Status("av/infected".into())];
    let plan = decide(&p, "", &report(Some(Kind::Infected)), true, false);
    assert_eq!(plan.delivery, Delivery::Block);
    assert!(plan.edits.is_empty() && plan.subject_prefix.is_none() && plan.headers.is_empty());
}

#[test]
fn subject_marks_and_verdict_headers() {
    let mut p = policy();
    p.mark_subject = vec![Status("av/infected".into()), Status("as/spam".into())];
    let plan = decide(&p, "", &report(Some(Kind::Infected)), true, false);
    // No prefix configured for this status: the status itself.
    assert_eq!(plan.subject_prefix.as_deref(), Some("[av/infected]"));
    assert!(plan
        .headers
        .starts_with("X-Mailward-AV: infected; detection=\"Rule_X\""));
    p.subject_prefix
        .insert("av/infected".into(), "[VIRUS]".into());
    let plan = decide(&p, "", &report(Some(Kind::Infected)), true, false);
    assert_eq!(plan.subject_prefix.as_deref(), Some("[VIRUS]"));
    let plan = decide(&p, "", &report(None), true, false);
    assert_eq!(plan.subject_prefix, None, "clean: not marked");
    p.add_headers = false;
    assert!(decide(&p, "", &report(None), true, false)
        .headers
        .is_empty());
}

#[test]
fn notifications_never_go_to_the_null_sender_nor_to_the_sender_of_spam() {
    let mut p = policy();
    p.notify_sender = vec![Status("av/all".into()), Status("as/all".into())];
    p.notify_recipients = vec![Status("av/infected".into())];
    p.notify_admin = vec![Status("av/all".into())];
    let plan = decide(&p, "", &report(Some(Kind::Infected)), true, false);
    assert_eq!(
        plan.notify,
        [NotifyTo::Sender, NotifyTo::Recipients, NotifyTo::Admin]
    );
    let plan = decide(&p, "", &report(Some(Kind::Infected)), true, true);
    assert_eq!(
        plan.notify,
        [NotifyTo::Recipients, NotifyTo::Admin],
        "null sender"
    );
    // A clean message: av/clean is not in av/all, so nobody hears of it.
    let plan = decide(&p, "", &report(None), true, false);
    assert_eq!(plan.notify, []);
    // The sender hears only of a virus finding: never of av/clean (nearly
    // all spam is av/clean: walkI 1) nor of as/*, whatever the list says.
    p.notify_sender = vec![Status("av/clean".into()), Status("as/all".into())];
    let plan = decide(&p, "", &report(None), true, false);
    assert_eq!(plan.notify, [], "av/clean is not a finding");
    p.notify_sender = vec![Status("as/all".into()), Status("as/clean".into())];
    let plan = decide(&p, "", &report(None), true, false);
    assert!(!plan.notify.contains(&NotifyTo::Sender), "never for as/*");
}

/// A report of a message with no AV finding and this spam evidence.
fn spam_report(evidence: crate::check::spam::Evidence) -> Report {
    Report {
        spam: Some(evidence),
        ..report(None)
    }
}

#[test]
fn all_in_a_list_acts_on_findings_never_on_clean_or_formal_mail() {
    use crate::check::spam::{rules::Hit, Evidence};
    let formal = Evidence {
        formal: Some("auto-submitted"),
        ..Evidence::default()
    };
    let spam = Evidence {
        hits: vec![Hit::new("BAYES_999", 9.0)],
        ..Evidence::default()
    };
    let blacklisted = Evidence {
        blacklisted: Some("sender *@spammer.example".into()),
        ..Evidence::default()
    };
    let cases: [(&str, Report, bool); 6] = [
        ("av/clean, as/clean", report(None), false),
        ("av/clean, as/formal", spam_report(formal), false),
        ("av/infected", report(Some(Kind::Infected)), true),
        ("av/filtered", report(Some(Kind::Filtered)), true),
        ("as/spam", spam_report(spam), true),
        ("as/blacklisted", spam_report(blacklisted), true),
    ];
    for (what, r, finding) in cases {
        for all in ["av/all", "as/all"] {
            // "av/" or "as/": the list acts on findings of its own kind.
            let acts = finding && what.starts_with(&all[..3]);
            let mut p = policy();
            p.block = vec![Status(all.into())];
            p.mark_subject = vec![Status(all.into())];
            p.quarantine = vec![Status(all.into())];
            p.notify_admin = vec![Status(all.into())];
            let plan = decide(&p, "", &r, false, false);
            let blocked = plan.delivery == Delivery::Block;
            assert_eq!(blocked, acts, "{what} with block = [{all}]");
            assert_eq!(
                plan.quarantine.is_some(),
                acts,
                "{what} with quarantine = [{all}]"
            );
            assert_eq!(
                plan.notify.contains(&NotifyTo::Admin),
                acts,
                "{what} notify_admin = [{all}]"
            );
            p.block.clear();
            let plan = decide(&p, "", &r, false, false);
            assert_eq!(
                plan.subject_prefix.is_some(),
                acts,
                "{what} with mark_subject = [{all}]"
            );
        }
    }
}

#[test]
fn a_group_that_does_not_check_for_viruses_ignores_them() {
    let mut p = policy();
    p.check_av = false;
    p.block = vec![Status("av/infected".into())];
    let plan = decide(&p, "", &report(Some(Kind::Infected)), true, false);
    assert_eq!(plan.delivery, Delivery::Deliver);
    assert_eq!(plan.av, None);
    assert!(plan.edits.is_empty() && plan.headers.is_empty());
}

#[test]
fn filter_findings_are_the_groups_own() {
    let mut r = report(Some(Kind::Filtered));
    let p = policy();
    let plan = decide(&p, "", &r, true, false);
    assert_eq!(plan.av, Some(AvStatus::Filtered));
    let plan = decide(&p, "lab", &r, true, false);
    assert_eq!(plan.av, Some(AvStatus::Clean), "no filter hit in group lab");
    r.filtered.clear();
    assert_eq!(decide(&p, "", &r, true, false).av, Some(AvStatus::Clean));
}

#[test]
fn a_refusal_names_the_findings_of_the_status_refused_only() {
    use crate::check::spam::{rules::Hit, Evidence};
    let spam = Evidence {
        hits: vec![Hit::new("BAYES_999", 9.0)],
        ..Evidence::default()
    };
    // An infected and spammy message, with a filter hit besides.
    let mut r = Report {
        spam: Some(spam),
        ..report(Some(Kind::Infected))
    };
    r.filtered.insert(
        String::new(),
        vec![Finding::new(Kind::Filtered, "name:*.exe", "x.exe", Some(1))],
    );
    for (reject, want) in [
        (
            "as/spam",
            "550 5.7.1 Message refused by content policy: as/spam",
        ),
        (
            "av/infected",
            "550 5.7.1 Message refused by content policy: av/infected (Rule_X)",
        ),
    ] {
        let mut p = policy();
        p.reject = vec![Status(reject.into())];
        let plan = decide(&p, "", &r, true, false);
        assert_eq!(
            plan.delivery,
            Delivery::Refuse(want.into()),
            "reject = [{reject}]"
        );
    }
    // A status whose findings are several names each once, at most three.
    let mut p = policy();
    p.reject = vec![Status("av/filtered".into())];
    let plan = decide(&p, "", &report(Some(Kind::Filtered)), true, false);
    assert_eq!(
        plan.delivery,
        Delivery::Refuse(
            "550 5.7.1 Message refused by content policy: av/filtered (name:*.exe)".into()
        )
    );
}

/// A group that blocks as/spam blocks an infected spam because of the
/// spam: the cause is as/spam, not the av/infected the logs showed
/// (walkI 11).
#[test]
fn the_cause_of_a_block_is_the_status_the_group_blocks() {
    let mut p = policy();
    p.block = vec![Status("as/spam".into())];
    let mut r = report(Some(Kind::Infected));
    r.spam = Some(crate::check::spam::Evidence {
        blacklisted: Some("sender *@x".into()),
        ..Default::default()
    });
    p.block.push(Status("as/blacklisted".into()));
    let plan = decide(&p, "", &r, true, false);
    assert_eq!(plan.delivery, Delivery::Block);
    assert_eq!(plan.shown_status(), "av/infected");
    assert_eq!(plan.outcome_status(), "as/blacklisted");
    p.block = vec![Status("av/all".into())];
    let plan = decide(&p, "", &r, true, false);
    assert_eq!(plan.outcome_status(), "av/infected");
    p.block.clear();
    let plan = decide(&p, "", &r, true, false);
    assert_eq!((plan.delivery, plan.cause), (Delivery::Deliver, None));
}

/// walkR 3: a group that refuses as/blacklisted refused mail to a spam
/// trap and a mailbox with 550, while the same mail to the mailbox alone
/// got 250: a list cleaner learnt which address is the trap. A verdict
/// that rests on a trap alone is blocked (and quarantined where the group
/// quarantines it), in the session too; a refusal for a listed sender, or
/// for a virus in the same message, stays.
#[test]
fn a_spam_trap_verdict_is_blocked_never_refused() {
    use crate::check::spam::Evidence;
    let mut p = policy();
    p.reject = vec![Status("as/blacklisted".into())];
    p.quarantine = vec![Status("as/blacklisted".into())];
    let trap = Evidence {
        blacklisted: Some("spam trap <trap@example.com>".into()),
        trapped: true,
        ..Evidence::default()
    };
    for in_session in [true, false] {
        let plan = decide(&p, "", &spam_report(trap.clone()), in_session, false);
        assert_eq!(plan.delivery, Delivery::Block, "in session: {in_session}");
        assert_eq!(plan.cause.as_deref(), Some("as/blacklisted"));
        assert!(plan.trap_kept_secret);
        assert_eq!(plan.quarantine.as_deref(), Some("as/blacklisted"));
        assert!(plan.subject_prefix.is_none() && plan.headers.is_empty());
    }
    // Without `quarantine` it is dropped: blocked, no copy, no notice.
    let mut dropping = p.clone();
    dropping.quarantine.clear();
    let plan = decide(&dropping, "", &spam_report(trap.clone()), true, false);
    assert_eq!(plan.delivery, Delivery::Block);
    assert!(plan.quarantine.is_none() && plan.notify.is_empty());

    // A sender on a list is refused as before: the trap tells nothing.
    let listed = Evidence {
        trapped: false,
        ..trap.clone()
    };
    let plan = decide(&p, "", &spam_report(listed), true, false);
    assert_eq!(
        plan.delivery,
        Delivery::Refuse("550 5.7.1 Message refused by content policy: as/blacklisted".into())
    );
    assert!(!plan.trap_kept_secret);

    // Spam the group refuses anyway is refused as spam, trap or not: the
    // same message to a mailbox alone gets the same 550 (were it blocked
    // for the trap, the 250 would give the trap away).
    let mut strict = p.clone();
    strict.reject.push(Status("as/spam".into()));
    let spammy = Evidence {
        hits: vec![crate::check::spam::rules::Hit::new("BAYES_999", 9.0)],
        ..trap.clone()
    };
    let plan = decide(&strict, "", &spam_report(spammy), true, false);
    assert_eq!(
        plan.delivery,
        Delivery::Refuse("550 5.7.1 Message refused by content policy: as/spam".into())
    );
    assert_eq!(plan.statuses(), ["av/clean", "as/blacklisted"]);

    // A virus the group refuses is refused, trap or not.
    p.reject.push(Status("av/infected".into()));
    let r = Report {
        spam: Some(trap),
        ..report(Some(Kind::Infected))
    };
    let plan = decide(&p, "", &r, true, false);
    assert!(matches!(plan.delivery, Delivery::Refuse(ref s) if s.contains("av/infected")));
    assert!(!plan.trap_kept_secret);
}

/// walkO 12: a group that sets the prefix of as/probable alone keeps
/// `[policy]`'s prefix for as/spam (it got "[as/spam]").
#[test]
fn a_groups_prefix_for_one_status_keeps_the_others() {
    use crate::check::spam::{rules::Hit, Evidence};
    let cfg = crate::config::parse(
        "[group.marks]\nrecipients = [\"*@marks.example\"]\n\
         subject_prefix = { \"as/probable\" = \"[maybe spam]\" }\n",
        "t.toml",
    )
    .unwrap();
    let p = crate::policy::policy_of(&cfg, "marks");
    let at = |score: f64| {
        let r = spam_report(Evidence {
            hits: vec![Hit::new("X", score)],
            ..Evidence::default()
        });
        decide(&p, "marks", &r, true, false).subject_prefix
    };
    assert_eq!(at(9.0).as_deref(), Some("[!!SPAM]"));
    assert_eq!(at(6.0).as_deref(), Some("[maybe spam]"));
}

/// walkAD 11: a virus in a message that is also spam (or blacklisted) is
/// not notified to its sender, who is almost surely forged; its recipients
/// and the administrator still hear of it.
#[test]
fn the_sender_of_a_virus_that_is_also_spam_gets_no_notice() {
    use crate::check::spam::{rules::Hit, Evidence};
    let mut p = policy();
    p.notify_sender = vec![Status("av/all".into())];
    p.notify_admin = vec![Status("av/all".into())];
    let spammy = Report {
        spam: Some(Evidence {
            hits: vec![Hit::new("BAYES_999", 30.0)],
            ..Evidence::default()
        }),
        ..report(Some(Kind::Infected))
    };
    let plan = decide(&p, "", &spammy, true, false);
    assert_eq!(plan.spam, Some(SpamStatus::Spam));
    assert_eq!(plan.notify, [NotifyTo::Admin]);
    let blacklisted = Report {
        spam: Some(Evidence {
            blacklisted: Some("dnsbl zen.example".into()),
            ..Evidence::default()
        }),
        ..report(Some(Kind::Infected))
    };
    assert_eq!(
        decide(&p, "", &blacklisted, true, false).notify,
        [NotifyTo::Admin]
    );
    let clean = Report {
        spam: Some(Evidence::default()),
        ..report(Some(Kind::Infected))
    };
    assert_eq!(
        decide(&p, "", &clean, true, false).notify,
        [NotifyTo::Sender, NotifyTo::Admin]
    );
}
