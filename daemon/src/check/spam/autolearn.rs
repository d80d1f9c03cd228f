//! Autolearn (`[spam] autolearn`, off by default): the classifier learns
//! from verdicts it did not make itself. Only confident ones, and never on
//! the strength of its own score (that would feed its mistakes back):
//!
//! - spam: a list, a spam trap or a final zone blacklists the message, or
//!   the tests other than the classifier's reach [`SPAM_POINTS`];
//! - ham: a whitelisted sender or client, or SPF or DKIM vouches for the
//!   sender and the tests other than the classifier's stay at or below
//!   [`HAM_POINTS`].
//!
//! Learning happens on a thread of its own, in batches (one write of the
//! store per [`BATCH_WAIT`]): never on a scan worker or the async runtime.
//! A full queue drops the message's learning, never the message. A batch
//! starts from the daemon's model in use ([`Start`]) and reads only what
//! the store got since, not the whole learning.

use super::model::{Class, Model};
use super::store::{Cursor, Edit, Store};
use super::Evidence;
use crate::budget::{Budget, Share};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The other tests' points at which a message is learnt as spam.
pub const SPAM_POINTS: f64 = 12.0;
/// The other tests' points at or below which a vouched-for message is
/// learnt as ham.
pub const HAM_POINTS: f64 = 0.0;
/// How long learning waits to gather a batch.
const BATCH_WAIT: Duration = Duration::from_secs(5);
/// Messages waiting to be learnt, at most.
const QUEUE: usize = 1000;
/// Their bytes together, at most: they wait while the store is slow
/// (Redis), and 1,000 messages of 20 MiB would be 20 GiB.
const QUEUE_BYTES: u64 = 64 * 1024 * 1024;

/// What a verdict teaches, if anything.
pub fn lesson(e: &Evidence) -> Option<Class> {
    // A test message sent on purpose (GTUBE) is nobody's spam: learnt, its
    // words (often a real note around the string) would count as spam.
    if e.hits.iter().any(|h| h.name == "GTUBE") {
        return None;
    }
    let others: f64 = e
        .hits
        .iter()
        .filter(|h| !h.name.starts_with("BAYES_"))
        .map(|h| h.weight)
        .sum();
    if e.blacklisted.is_some() || others >= SPAM_POINTS {
        return Some(Class::Spam);
    }
    let vouched = e
        .hits
        .iter()
        .any(|h| matches!(h.name.as_str(), "SPF_PASS" | "DKIM_VALID" | "DMARC_PASS"));
    (e.whitelisted || (vouched && others <= HAM_POINTS)).then_some(Class::Ham)
}

/// Where a batch may start: the site's model in use and the store's cursor
/// it was read at (None when there is none yet, as when the store could
/// not be read).
pub type Start = Box<dyn Fn() -> Option<(Arc<Model>, Cursor)> + Send>;

/// The installed base in use, if any: what it learnt is not learnt into
/// the site again (walkAV F9: it would count twice).
pub type BaseInUse = Box<dyn Fn() -> Option<Arc<Model>> + Send>;

/// The learning thread's mailbox.
pub struct Learner {
    tx: SyncSender<(Arc<Vec<u8>>, Class, Share)>,
    queued: Arc<Budget>,
}

impl Learner {
    /// Starts the thread that learns into `store`, each batch from what
    /// `start` gives.
    pub fn start(store: Store, start: Start, base: BaseInUse) -> Option<Learner> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("spam-autolearn".into())
            .spawn(move || run(&store, &start, &base, &rx))
            .map_err(
                |e| tracing::error!(target: "scan", error = %e, "Cannot start spam autolearn."),
            )
            .ok()?;
        Some(Learner {
            tx,
            queued: Arc::default(),
        })
    }

    /// Queues a message to be learnt as `class` (dropped when the queue is
    /// full, in messages or in bytes: learning is a bonus, never a backlog).
    pub fn offer(&self, raw: Arc<Vec<u8>>, class: Class) {
        let full = match self.queued.take(raw.len() as u64, QUEUE_BYTES) {
            Some(share) => matches!(
                self.tx.try_send((raw, class, share)),
                Err(TrySendError::Full(_))
            ),
            None => true,
        };
        if full {
            tracing::debug!(target: "scan", "Autolearn queue full; a message is not learnt.");
        }
    }
}

fn run(
    store: &Store,
    start: &Start,
    base: &BaseInUse,
    rx: &Receiver<(Arc<Vec<u8>>, Class, Share)>,
) {
    let mut batch: Vec<(u64, Vec<u64>, Class)> = Vec::new();
    let mut since = Instant::now();
    loop {
        match rx.recv_timeout(BATCH_WAIT) {
            Ok((raw, class, share)) => {
                if batch.is_empty() {
                    since = Instant::now();
                }
                let (digest, tokens) = super::for_learning(&raw);
                batch.push((digest, tokens, class));
                // The message's bytes are given back once it is tokens.
                drop((raw, share));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if batch.is_empty() || since.elapsed() < BATCH_WAIT {
            continue;
        }
        let from = start();
        let base = base();
        match learn_batch(
            store,
            from.as_ref().map(|(m, at)| (&**m, *at)),
            base.as_deref(),
            &batch,
        ) {
            // Only a batch that changed the learning says "learnt": one of
            // messages learnt before writes nothing, and said so as
            // `spam=0 ham=0` (walkI finding 20).
            Ok(b) => {
                // A lesson autolearn would have moved (walkAB finding 4):
                // said, so that a verdict against an administrator's is seen.
                if b.kept > 0 {
                    tracing::info!(target: "scan", kept = b.kept, store = %store.describe(),
                        "Autolearn: left messages learnt before as the other class where they are (autolearn never moves a lesson).");
                }
                if b.spam + b.ham > 0 {
                    tracing::info!(target: "scan", spam = b.spam, ham = b.ham, known = b.known,
                        store = %store.describe(), "Autolearn: learnt from confident verdicts.");
                } else {
                    tracing::debug!(target: "scan", known = b.known,
                        "Autolearn: nothing new; the batch's messages were learnt before.");
                }
            }
            Err(e) => tracing::warn!(target: "scan", error = %e,
                "Autolearn cannot write the spam store; this batch is not learnt."),
        }
        batch.clear();
    }
}

/// What one batch did: messages learnt as spam and as ham (new ones
/// only), messages learnt before as they are, and messages learnt before
/// as the other class, left there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Batch {
    spam: usize,
    ham: usize,
    known: usize,
    kept: usize,
}

/// Learns `batch` into `store` from `from` (the model in use); writes
/// nothing when every message was learnt before, in the site's learning
/// or in the installed `base`.
fn learn_batch(
    store: &Store,
    from: Option<(&Model, Cursor)>,
    base: Option<&Model>,
    batch: &[(u64, Vec<u64>, Class)],
) -> Result<Batch, super::store::StoreError> {
    store
        .update_from(from, |model| {
            let mut n = Batch::default();
            for (digest, tokens, class) in batch {
                // The base's lessons count already, and are not moved
                // either (a base is curated: learnt as the other class
                // there, it stays so, as below).
                match base.and_then(|b| b.learnt.get(digest)) {
                    Some(c) if c == class => {
                        n.known += 1;
                        continue;
                    }
                    Some(_) => {
                        n.kept += 1;
                        continue;
                    }
                    None => {}
                }
                // A message learnt before as the other class stays there:
                // that lesson may be an administrator's (`spam learn`,
                // `quarantine release --learn-ham`, `remove --learn-spam`),
                // and the model does not say who gave it; the gateway's own
                // verdict does not overrule it (walkAB finding 4: a
                // released message came again and autolearn moved it back
                // to spam).
                if model.learnt.get(digest).is_some_and(|c| c != class) {
                    n.kept += 1;
                    continue;
                }
                match (model.learn(*digest, tokens, *class), class) {
                    (super::model::Learnt::Already, _) => n.known += 1,
                    (_, Class::Spam) => n.spam += 1,
                    (_, Class::Ham) => n.ham += 1,
                }
            }
            Edit::when(n.spam + n.ham > 0, n)
        })
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::spam::rules::Hit;

    fn evidence(hits: &[(&str, f64)]) -> Evidence {
        Evidence {
            hits: hits.iter().map(|(n, w)| Hit::new(n, *w)).collect(),
            ..Evidence::default()
        }
    }

    #[test]
    fn only_confident_verdicts_that_do_not_rest_on_the_classifier_teach() {
        // The classifier's own certainty teaches nothing.
        assert_eq!(
            lesson(&evidence(&[("BAYES_999", 9.0), ("HTML_ONLY", 0.5)])),
            None
        );
        assert_eq!(
            lesson(&evidence(&[
                ("BAYES_00", -2.5),
                ("SPF_PASS", -0.1),
                ("HTML_ONLY", 0.5)
            ])),
            None
        );
        let mut e = evidence(&[("EARN_MONEY", 6.0), ("DEAR_FRIEND", 6.0)]);
        assert_eq!(lesson(&e), Some(Class::Spam));
        e = evidence(&[("BAYES_00", -2.5), ("DKIM_VALID", -0.1)]);
        assert_eq!(lesson(&e), Some(Class::Ham));
        // Not vouched for: not ham, however low.
        assert_eq!(lesson(&evidence(&[("BAYES_00", -2.5)])), None);
        e.blacklisted = Some("spam trap <t@x>".into());
        assert_eq!(lesson(&e), Some(Class::Spam));
        // A test message sent on purpose teaches nothing, however sure.
        e.hits.push(Hit::new("GTUBE", 1000.0));
        assert_eq!(lesson(&e), None);
    }

    #[test]
    fn a_batch_of_known_messages_learns_and_writes_nothing() {
        // walkI finding 20: such a batch logged "learnt from confident
        // verdicts. spam=0 ham=0".
        let dir = tempfile::tempdir().unwrap();
        let limits = super::super::store::Limits {
            tokens: 1000,
            learnt: 1000,
        };
        let store = Store::dir(dir.path(), limits);
        let batch = vec![(7, vec![1, 2, 3], Class::Spam), (8, vec![4, 5], Class::Ham)];
        let first = learn_batch(&store, None, None, &batch).unwrap();
        assert_eq!(
            first,
            Batch {
                spam: 1,
                ham: 1,
                known: 0,
                kept: 0
            }
        );
        let journal = dir.path().join(super::super::store::JOURNAL);
        let written = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
        let again = learn_batch(&store, None, None, &batch).unwrap();
        assert_eq!(
            again,
            Batch {
                spam: 0,
                ham: 0,
                known: 2,
                kept: 0
            }
        );
        assert_eq!(
            std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0),
            written,
            "nothing written"
        );
    }

    /// walkAV F9: a message the installed base learnt counts there
    /// already; learnt into the site too it would count twice.
    #[test]
    fn what_the_base_learnt_is_not_learnt_again_into_the_site() {
        let dir = tempfile::tempdir().unwrap();
        let limits = super::super::store::Limits {
            tokens: 1000,
            learnt: 1000,
        };
        let store = Store::dir(dir.path(), limits);
        let mut base = Model::default();
        base.learn(7, &[1, 2, 3], Class::Spam);
        base.learn(8, &[4, 5], Class::Ham);
        let batch = vec![
            (7, vec![1, 2, 3], Class::Spam),
            (8, vec![4, 5], Class::Spam),
            (9, vec![6], Class::Spam),
        ];
        let n = learn_batch(&store, None, Some(&base), &batch).unwrap();
        assert_eq!(
            n,
            Batch {
                spam: 1,
                ham: 0,
                known: 1,
                kept: 1
            }
        );
        let site = store.read().unwrap();
        assert_eq!((site.spam_messages, site.ham_messages), (1, 0));
        assert!(site.learnt.contains_key(&9) && !site.learnt.contains_key(&7));
    }

    #[test]
    fn autolearn_does_not_move_a_message_learnt_as_the_other_class() {
        // walkAB finding 4: a message released with --learn-ham came again,
        // the rules called it spam, and autolearn moved it back.
        let dir = tempfile::tempdir().unwrap();
        let limits = super::super::store::Limits {
            tokens: 1000,
            learnt: 1000,
        };
        let store = Store::dir(dir.path(), limits);
        // The administrator's lesson.
        let admin = vec![(7, vec![1, 2, 3], Class::Ham)];
        learn_batch(&store, None, None, &admin).unwrap();
        let verdicts = vec![
            (7, vec![1, 2, 3], Class::Spam),
            (9, vec![4, 5], Class::Spam),
        ];
        let n = learn_batch(&store, None, None, &verdicts).unwrap();
        assert_eq!(
            n,
            Batch {
                spam: 1,
                ham: 0,
                known: 0,
                kept: 1
            }
        );
        let model = store.read().unwrap();
        assert_eq!(model.learnt.get(&7), Some(&Class::Ham));
        assert_eq!((model.spam_messages, model.ham_messages), (1, 1));
    }
}
