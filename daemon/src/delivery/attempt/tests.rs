use super::*;
use crate::envelope::QueueId;

fn env(rcpts: &[(&str, Option<&str>)]) -> Envelope {
    Envelope {
        received_at: 1000,
        size: 10,
        rcpts: rcpts
            .iter()
            .map(|(a, n)| {
                let mut r = Recipient::new(a.to_string());
                r.notify = n.and_then(Notify::parse);
                r
            })
            .collect(),
        ..Envelope::new(
            QueueId::generate(),
            "127.0.0.1".parse().unwrap(),
            "h".into(),
            "sender@example.com".into(),
        )
    }
}

fn timing(now: i64) -> Timing {
    Timing {
        now,
        min_backoff: Duration::from_secs(300),
        max_backoff: Duration::from_secs(3600),
        lifetime: Duration::from_secs(5 * 86400),
        delay_notice: Duration::from_secs(4 * 3600),
    }
}

fn delivered(hop_dsn: bool) -> Outcome {
    Outcome::Delivered {
        reply: "250 2.0.0 ok".into(),
        relay: "sink".into(),
        hop_dsn,
        tls: "none".into(),
    }
}
fn failed() -> Outcome {
    Outcome::Failed {
        status: "5.1.1".into(),
        reply: "550 5.1.1 no such user".into(),
        relay: "sink".into(),
    }
}
fn deferred() -> Outcome {
    Outcome::Deferred {
        reply: "451 4.3.0 later".into(),
        relay: "sink".into(),
    }
}

fn actions(d: &Decision) -> Vec<(DsnAction, Vec<usize>)> {
    d.dsns
        .iter()
        .map(|p| (p.action, p.rcpts.iter().map(|r| r.index).collect()))
        .collect()
}

#[test]
fn backoff_doubles_from_min_to_max() {
    let (min, max) = (Duration::from_secs(300), Duration::from_secs(3600));
    let got: Vec<u64> = (1..=6).map(|a| backoff(a, min, max).as_secs()).collect();
    assert_eq!(got, vec![300, 600, 1200, 2400, 3600, 3600]);
    assert_eq!(backoff(1000, min, max).as_secs(), 3600);
}

#[test]
fn table_of_decisions() {
    struct Case {
        name: &'static str,
        rcpts: &'static [(&'static str, Option<&'static str>)],
        outcomes: Vec<Outcome>,
        now: i64,
        bounce: bool,
        want_done: bool,
        want: Vec<(DsnAction, Vec<usize>)>,
    }
    let day = 86400;
    let cases = vec![
        Case {
            name: "all delivered, no DSN asked",
            rcpts: &[("a@x", None), ("b@x", None)],
            outcomes: vec![delivered(false), delivered(false)],
            now: 1001,
            bounce: false,
            want_done: true,
            want: vec![],
        },
        Case {
            name: "one 5xx fails only that recipient",
            rcpts: &[("a@x", None), ("b@x", None)],
            outcomes: vec![failed(), deferred()],
            now: 1001,
            bounce: false,
            want_done: false,
            want: vec![(DsnAction::Failed, vec![0])],
        },
        Case {
            name: "NOTIFY=NEVER gets no failure DSN",
            rcpts: &[("a@x", Some("NEVER"))],
            outcomes: vec![failed()],
            now: 1001,
            bounce: false,
            want_done: true,
            want: vec![],
        },
        Case {
            name: "NOTIFY=SUCCESS to a hop without DSN: relayed",
            rcpts: &[("a@x", Some("SUCCESS"))],
            outcomes: vec![delivered(false)],
            now: 1001,
            bounce: false,
            want_done: true,
            want: vec![(DsnAction::Relayed, vec![0])],
        },
        Case {
            name: "NOTIFY=SUCCESS to a hop with DSN: the hop reports",
            rcpts: &[("a@x", Some("SUCCESS"))],
            outcomes: vec![delivered(true)],
            now: 1001,
            bounce: false,
            want_done: true,
            want: vec![],
        },
        Case {
            name: "delay notice only when asked and only after delay_notice",
            rcpts: &[("a@x", Some("DELAY")), ("b@x", None)],
            outcomes: vec![deferred(), deferred()],
            now: 1000 + 5 * 3600,
            bounce: false,
            want_done: false,
            want: vec![(DsnAction::Delayed, vec![0])],
        },
        Case {
            name: "no delay notice before delay_notice",
            rcpts: &[("a@x", Some("DELAY"))],
            outcomes: vec![deferred()],
            now: 1000 + 3600,
            bounce: false,
            want_done: false,
            want: vec![],
        },
        Case {
            name: "expired after max_queue_lifetime: failure DSN",
            rcpts: &[("a@x", None)],
            outcomes: vec![deferred()],
            now: 1000 + 6 * day,
            bounce: false,
            want_done: true,
            want: vec![(DsnAction::Failed, vec![0])],
        },
        Case {
            name: "never a bounce for a bounce",
            rcpts: &[("a@x", None)],
            outcomes: vec![failed()],
            now: 1001,
            bounce: true,
            want_done: true,
            want: vec![],
        },
    ];
    for c in cases {
        let mut e = env(c.rcpts);
        e.is_bounce = c.bounce;
        let outcomes = c.outcomes.into_iter().enumerate().collect();
        let d = decide(&mut e, outcomes, &timing(c.now));
        assert_eq!(d.done, c.want_done, "{}", c.name);
        assert_eq!(actions(&d), c.want, "{}", c.name);
        if !d.done {
            assert!(
                e.next_attempt >= c.now + 300,
                "{}: retry after back-off",
                c.name
            );
        }
    }
}

#[test]
fn a_delay_notice_is_sent_once() {
    let mut e = env(&[("a@x", Some("DELAY,FAILURE"))]);
    let t = timing(1000 + 5 * 3600);
    let first = decide(&mut e, vec![(0, deferred())], &t);
    assert_eq!(actions(&first), vec![(DsnAction::Delayed, vec![0])]);
    settle_dsns(&mut e, &first.dsns, &[Ok(())], &t);
    let second = decide(&mut e, vec![(0, deferred())], &t);
    assert!(second.dsns.is_empty());
}

/// walkP: on a full disk the failure DSN could not be spooled, and the
/// message left the queue anyway: accepted with 250, not delivered, and its
/// sender never told. Now the failure stays pending, with a reason that
/// says why, and is done again (with its DSN) at the next attempt.
#[test]
fn a_failure_whose_dsn_cannot_be_spooled_stays_in_the_queue() {
    let mut e = env(&[("a@x", None), ("b@x", None), ("c@x", Some("NEVER"))]);
    let t = timing(1001);
    let d = decide(
        &mut e,
        vec![(0, failed()), (1, delivered(false)), (2, failed())],
        &t,
    );
    assert!(d.done, "all recipients done before the DSN is spooled");
    assert_eq!(actions(&d), vec![(DsnAction::Failed, vec![0])]);
    let full = "No space left on device (os error 28)".to_string();
    let done = settle_dsns(&mut e, &d.dsns, &[Err(full)], &t);
    assert!(!done, "the message stays in the queue");
    match &e.rcpts[0].state {
        RcptState::Pending {
            last_error: Some(reason),
        } => {
            assert!(reason.starts_with("4.3.0 "), "{reason}");
            assert!(
                reason.contains("notification could not be spooled")
                    && reason.contains("No space left on device")
                    && reason.contains("550 5.1.1 no such user"),
                "{reason}"
            );
        }
        other => panic!("a@x must be pending again, is {other:?}"),
    }
    assert!(
        matches!(e.rcpts[1].state, RcptState::Delivered { .. }),
        "a delivered recipient stays delivered"
    );
    assert!(
        matches!(e.rcpts[2].state, RcptState::Failed { .. }),
        "NOTIFY=NEVER: no DSN was due, the failure is final"
    );
    assert!(e.next_attempt >= 1001 + 300, "retried after the back-off");
    // The next attempt: the hop refuses again, the DSN is planned again,
    // for a@x only, and once spooled the message is done.
    let again = decide(&mut e, vec![(0, failed())], &timing(1400));
    assert_eq!(actions(&again), vec![(DsnAction::Failed, vec![0])]);
    assert!(settle_dsns(&mut e, &again.dsns, &[Ok(())], &timing(1400)));
}

#[test]
fn an_expiry_or_delay_notice_that_cannot_be_spooled_is_planned_again() {
    // Expired: the failure of an expired recipient is not final either.
    let mut e = env(&[("a@x", None)]);
    let t = timing(1000 + 6 * 86400);
    let d = decide(&mut e, vec![(0, deferred())], &t);
    assert_eq!(actions(&d), vec![(DsnAction::Failed, vec![0])]);
    assert!(!settle_dsns(
        &mut e,
        &d.dsns,
        &[Err("cannot read".into())],
        &t
    ));
    assert!(e.rcpts[0].is_pending());
    // Delayed: not marked as notified, so the next attempt plans it again.
    let mut e = env(&[("a@x", Some("DELAY"))]);
    let t = timing(1000 + 5 * 3600);
    let d = decide(&mut e, vec![(0, deferred())], &t);
    assert_eq!(actions(&d), vec![(DsnAction::Delayed, vec![0])]);
    settle_dsns(&mut e, &d.dsns, &[Err("full".into())], &t);
    assert!(!e.delay_notified);
    let again = decide(&mut e, vec![(0, deferred())], &t);
    assert_eq!(actions(&again), vec![(DsnAction::Delayed, vec![0])]);
    settle_dsns(&mut e, &again.dsns, &[Ok(())], &t);
    assert!(e.delay_notified);
}

#[test]
fn dsn_statuses_say_expired_only_when_the_message_expired() {
    // deferred() replies "451 4.3.0 later": the delay notice reports it.
    let mut e = env(&[("a@x", Some("DELAY,FAILURE"))]);
    let delayed = decide(&mut e, vec![(0, deferred())], &timing(1000 + 5 * 3600));
    let status = |d: &Decision| d.dsns[0].rcpts[0].status.clone();
    assert_eq!(status(&delayed), "4.3.0");
    // Past max_queue_lifetime: failed, 5.4.7 (RFC 3463 "delivery time
    // expired", permanent class), with the last error in the reason.
    let failed = decide(&mut e, vec![(0, deferred())], &timing(1000 + 6 * 86400));
    assert_eq!(failed.dsns[0].action, DsnAction::Failed);
    assert_eq!(status(&failed), "5.4.7");
    // The diagnostic is the hop's last reply, from that hop (its
    // Remote-MTA); the words say for how long it was tried, without the
    // configuration key (walkP); the log and queue keep the key.
    let planned = &failed.dsns[0].rcpts[0];
    assert_eq!(planned.diagnostic, "451 4.3.0 later");
    assert_eq!(planned.relay, "sink");
    let reason = planned.reason.as_deref().unwrap_or_default();
    assert_eq!(
        reason,
        "Delivery was tried for 6 days (2 attempts) without success; the last error was: \
         451 4.3.0 later"
    );
    match &e.rcpts[0].state {
        RcptState::Failed { reply, .. } => assert!(reply.contains("max_queue_lifetime"), "{reply}"),
        other => panic!("failed, not {other:?}"),
    }
    // The delay notice names the hop too.
    assert_eq!(delayed.dsns[0].rcpts[0].relay, "sink");
    assert_eq!(for_how_long(Duration::from_secs(180)), "3 minutes");
    assert_eq!(for_how_long(Duration::from_secs(3600)), "1 hour");
    assert_eq!(for_how_long(Duration::from_secs(5 * 86400 + 7)), "5 days");
    assert_eq!(for_how_long(Duration::from_secs(42)), "42 seconds");
    assert_eq!(
        temporary_status(Some("4.3.0 local spool error: x")),
        "4.3.0"
    );
    assert_eq!(temporary_status(Some("421 Service not available")), "4.0.0");
    assert_eq!(temporary_status(None), "4.0.0");
    assert!(timing(1000 + 6 * 86400).expired(1000));
    assert!(!timing(1000 + 4 * 86400).expired(1000));
}

/// walkP: a permanent failure without a DSN logged nothing about the
/// missing notice; the log now says why there is none.
#[test]
fn why_a_failure_gets_no_dsn() {
    let e = env(&[
        ("a@x", Some("NEVER")),
        ("b@x", Some("DELAY")),
        ("c@x", None),
    ]);
    let why = |i: usize| no_failure_dsn(&e, &e.rcpts[i]);
    assert_eq!(why(0).as_deref(), Some("none (NOTIFY=NEVER)"));
    assert_eq!(why(1).as_deref(), Some("none (NOTIFY=DELAY)"));
    assert_eq!(why(2), None);
    let mut null = env(&[("a@x", None)]);
    null.mail_from.clear();
    assert_eq!(
        no_failure_dsn(&null, &null.rcpts[0]).as_deref(),
        Some("none (null sender)")
    );
    let mut bounce = env(&[("a@x", None)]);
    bounce.is_bounce = true;
    assert!(no_failure_dsn(&bounce, &bounce.rcpts[0])
        .is_some_and(|w| w.contains("itself a notification")));
}

/// walkAQ 2: a hop that greets with 554 is deferred (the next address, or
/// a later attempt, may take the mail), and a delay DSN names it with its
/// reply, as for a 451 to RCPT: Remote-MTA and `smtp;` need the reply as
/// the diagnostic and the hop as relay.
#[test]
fn a_refused_greeting_is_quoted_as_the_hops_reply() {
    use crate::delivery::client::ClientError;
    use crate::delivery::route::Destination;
    let addr: std::net::SocketAddr = "127.0.0.1:42221".parse().unwrap();
    let dest = Destination::Direct {
        host: "127.0.0.1".into(),
        port: 42221,
        tls: Default::default(),
    };
    let refused = |code: u16, text: &str, stage: &'static str| PoolError::Connect {
        error: ClientError::Rejected {
            stage,
            reply: Reply {
                code,
                text: text.into(),
            },
        },
        name: "127.0.0.1".into(),
        addr,
    };
    let greeting = lease_outcome(&refused(554, "5.3.2 go away, not now", "banner"), &dest);
    assert_eq!(
        greeting,
        Outcome::Deferred {
            reply: "554 5.3.2 go away, not now".into(),
            relay: "127.0.0.1[127.0.0.1]:42221".into(),
        }
    );
    // The delay notice quotes it, names the hop, and says 4.0.0: the
    // message is not refused for good.
    let mut e = env(&[("g1@greet5.test", Some("DELAY,FAILURE"))]);
    let mut t = timing(1000 + 5 * 3600);
    t.delay_notice = Duration::from_secs(60);
    let d = decide(&mut e, vec![(0, greeting)], &t);
    let plan = &d.dsns[0];
    assert_eq!(plan.action, DsnAction::Delayed);
    assert_eq!(plan.rcpts[0].status, "4.0.0");
    assert_eq!(plan.rcpts[0].diagnostic, "554 5.3.2 go away, not now");
    assert_eq!(plan.rcpts[0].relay, "127.0.0.1[127.0.0.1]:42221");
    // HELO refused for good: a failure with the hop's own status.
    let helo = lease_outcome(&refused(550, "5.7.1 not you", "helo"), &dest);
    assert!(
        matches!(&helo, Outcome::Failed { status, reply, .. } if status == "5.7.1" && reply == "550 5.7.1 not you"),
        "{helo:?}"
    );
    // A refused connection is our own finding: status and words, no reply.
    let unreachable = PoolError::Connect {
        error: ClientError::Timeout { stage: "banner" },
        name: "127.0.0.1".into(),
        addr,
    };
    let Outcome::Deferred { reply, relay } = lease_outcome(&unreachable, &dest) else {
        panic!("a time-out is temporary");
    };
    assert!(reply.starts_with("4.4.1 "), "{reply}");
    assert_eq!(relay, "[127.0.0.1]:42221");
}

/// walkAQ note: the retry before expiry was scheduled a whole back-off
/// later, so a message with a 4-minute lifetime bounced after 5. The last
/// retry is made at the lifetime, and then the message expires.
#[test]
fn the_last_retry_is_made_when_the_lifetime_ends() {
    let mut t = timing(1000);
    t.lifetime = Duration::from_secs(240);
    t.min_backoff = Duration::from_secs(20);
    t.max_backoff = Duration::from_secs(60);
    let mut e = env(&[("a@x", None)]);
    // Early on: the back-off as before.
    let d = decide(&mut e, vec![(0, deferred())], &t);
    assert!(!d.done);
    assert_eq!(e.next_attempt, 1000 + 20);
    // 1 s before expiry, with a 60 s back-off due: retried at expiry.
    e.attempts = 7;
    t.now = 1000 + 239;
    decide(&mut e, vec![(0, deferred())], &t);
    assert_eq!(e.next_attempt, 1000 + 240);
    // That attempt fails too: it is the last one.
    t.now = e.next_attempt;
    let d = decide(&mut e, vec![(0, deferred())], &t);
    assert!(d.done, "expired at its lifetime");
    assert_eq!(actions(&d), vec![(DsnAction::Failed, vec![0])]);
    assert_eq!(d.dsns[0].rcpts[0].status, "5.4.7");
}

/// walkAU F11: an expired message whose report could not be spooled (a
/// full disk) is not tried at its hop again, nor a second later: the next
/// attempt, after min_backoff, only writes the same report, with the hop's
/// last error and the count of real attempts.
#[test]
fn an_expired_message_whose_report_cannot_be_spooled_only_writes_it_again() {
    let mut e = env(&[("a@x", None), ("b@x", Some("NEVER"))]);
    e.attempts = 5;
    let t = timing(1000 + 6 * 86400);
    assert!(dsn_only(&e, &t).is_none(), "never tried past its lifetime");
    let hop = Outcome::Deferred {
        reply: "4.4.1 cannot connect to 127.0.0.1:31204".into(),
        relay: "[127.0.0.1]:31204".into(),
    };
    let d = decide(&mut e, vec![(0, hop.clone()), (1, hop)], &t);
    assert_eq!(actions(&d), vec![(DsnAction::Failed, vec![0])]);
    assert!(!settle_dsns(
        &mut e,
        &d.dsns,
        &[Err("No space left on device".into())],
        &t
    ));
    assert!(
        e.next_attempt >= t.now + 300,
        "tried again at {}, {} s later, not after min_backoff",
        e.next_attempt,
        e.next_attempt - t.now
    );
    // b@x wanted no report: its expiry is final.
    assert!(!e.rcpts[1].is_pending());
    // The next attempt: no hop, the same failure planned again.
    let later = timing(t.now + 300);
    let outcomes = dsn_only(&e, &later).expect("only the report is written");
    assert_eq!(outcomes.len(), 1);
    match &outcomes[0] {
        (0, Outcome::Deferred { reply, .. }) => {
            assert_eq!(reply, "4.4.1 cannot connect to 127.0.0.1:31204")
        }
        other => panic!("{other:?}"),
    }
    e.attempts -= 1; // as attempt() does: no attempt at the hop was made
    let again = decide(&mut e, outcomes, &later);
    assert_eq!(actions(&again), vec![(DsnAction::Failed, vec![0])]);
    match &e.rcpts[0].state {
        RcptState::Failed { reply, .. } => assert_eq!(
            reply,
            "Message expired after 6 attempts (max_queue_lifetime); last error: \
             4.4.1 cannot connect to 127.0.0.1:31204"
        ),
        other => panic!("{other:?}"),
    }
    assert!(settle_dsns(&mut e, &again.dsns, &[Ok(())], &later));
    // A recipient merely deferred (not waiting for its report) is tried at
    // its hop, expired or not.
    let mut e = env(&[("a@x", None)]);
    e.rcpts[0].state = RcptState::Pending {
        last_error: Some("451 4.3.0 later".into()),
    };
    assert!(dsn_only(&e, &t).is_none());
}
