//! Log lines on their way to a slow or stalled reader: a bounded queue and
//! a thread of its own that writes them. Mail never waits for the log, so
//! a thread that logs only queues its line; past [`LINES`] lines or
//! [`BYTES`] waiting, the line is dropped and counted
//! (`mailward_log_lines_dropped_total`). Syslog (`ops::syslog`), the
//! daemon's standard error and its log file (`ops::logging`) write through
//! one each.

use crate::budget::{Budget, Share};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines that may wait.
pub const LINES: usize = 8192;

/// Bytes that may wait (the lines are bounded where their fields come
/// from the network, but a queue must not rest on that).
pub const BYTES: u64 = 16 * 1024 * 1024;

/// How long a busy writer keeps taking lines after one woke it, before
/// it waits again: a line is written at most this much later than it
/// would be one by one (its time stamp is taken when it is made).
const LINGER: Duration = Duration::from_millis(2);

/// Busy: more than [`BUSY_WAKES`] wake-ups in [`BUSY_WINDOW`] (about 60
/// messages a second). Below that every line is written as it comes.
const BUSY_WINDOW: Duration = Duration::from_millis(100);
const BUSY_WAKES: u32 = 32;

pub struct LineQueue {
    tx: SyncSender<Msg>,
    queued: Arc<Budget>,
}

enum Msg {
    /// A line and its share of [`BYTES`], given back once written.
    Line(Vec<u8>, Share),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

impl LineQueue {
    /// The queue, and the thread `name` that hands each line to `write`
    /// (which counts what it cannot write).
    pub fn start(
        name: &str,
        mut write: impl FnMut(&[u8]) + Send + 'static,
    ) -> std::io::Result<LineQueue> {
        let (tx, rx) = sync_channel(LINES);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut handle = |msg| match msg {
                    Msg::Line(line, _share) => write(&line),
                    Msg::Flush(done) => {
                        let _ = done.send(());
                    }
                };
                // Wake-ups in the current BUSY_WINDOW.
                let (mut window, mut wakes) = (Instant::now(), 0u32);
                while let Ok(first) = rx.recv() {
                    handle(first);
                    let now = Instant::now();
                    if now.duration_since(window) > BUSY_WINDOW {
                        (window, wakes) = (now, 0);
                    }
                    wakes = wakes.saturating_add(1);
                    if wakes <= BUSY_WAKES {
                        continue;
                    }
                    // Busy: a line wakes this thread only when it waits in
                    // recv, so lines queued while it lingers cost their
                    // sender no wake-up. Woken for every line, a busy
                    // gateway (five lines per message) paid two context
                    // switches a line, 13-27 % of the CPU a 1 KiB message
                    // took. Not when quiet: a line is then written at once.
                    std::thread::sleep(LINGER);
                    while let Ok(next) = rx.try_recv() {
                        handle(next);
                    }
                }
            })?;
        Ok(LineQueue {
            tx,
            queued: Arc::default(),
        })
    }

    /// Queues `line`, or drops and counts it when the queue is full. The
    /// line comes back only when the writer thread is gone.
    pub fn push(&self, line: Vec<u8>) -> Result<(), Vec<u8>> {
        let Some(share) = self.queued.take(line.len() as u64, BYTES) else {
            super::logging::count_dropped(1);
            return Ok(());
        };
        match self.tx.try_send(Msg::Line(line, share)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                super::logging::count_dropped(1);
                Ok(())
            }
            Err(TrySendError::Disconnected(Msg::Line(line, _))) => Err(line),
            Err(TrySendError::Disconnected(Msg::Flush(_))) => Ok(()),
        }
    }

    /// Queues `line` on `queue`; with no queue (its thread did not start)
    /// or its writer gone, writes it with `direct` instead, counting a
    /// failure. The log file and standard error write this way.
    pub fn push_or_write(
        queue: Option<&LineQueue>,
        line: Vec<u8>,
        direct: impl FnOnce(&[u8]) -> std::io::Result<()>,
    ) {
        let unsent = match queue {
            Some(queue) => queue.push(line),
            None => Err(line),
        };
        if let Err(line) = unsent {
            if direct(&line).is_err() {
                super::logging::count_dropped(1);
            }
        }
    }

    /// Hands the writer an empty line after those queued so far, for a
    /// writer that has something to do in order with its lines (the log
    /// file's reopen). False when the queue is full: nothing was queued.
    pub fn wake(&self) -> bool {
        let Some(share) = self.queued.take(0, BYTES) else {
            return false;
        };
        self.tx.try_send(Msg::Line(Vec::new(), share)).is_ok()
    }

    /// Waits up to `wait` for the lines queued so far to be written.
    pub fn flush(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let (done, written) = sync_channel(1);
        let mut msg = Msg::Flush(done);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= until {
                        return;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = written.recv_timeout(until.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn lines_are_written_in_order_and_a_stalled_writer_costs_counted_lines() {
        // A writer that stalls until told to go on, as a full pipe does.
        let written = Arc::new(Mutex::new(Vec::new()));
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let w = written.clone();
        let wait = Mutex::new(wait);
        let q = match LineQueue::start("line-queue-test", move |line| {
            if let Ok(rx) = wait.lock() {
                let _ = rx.recv();
            }
            if let Ok(mut w) = w.lock() {
                w.push(line.to_vec());
            }
        }) {
            Ok(q) => q,
            Err(e) => panic!("{e}"),
        };
        let before = super::super::logging::dropped();
        // The first line is taken by the stalled writer, LINES more wait,
        // and the rest are dropped at once, never waited for.
        for i in 0..LINES + 10 {
            assert_eq!(q.push(format!("{i}\n").into_bytes()), Ok(()));
        }
        assert!(super::super::logging::dropped() >= before + 9);
        for _ in 0..=LINES {
            let _ = go.send(());
        }
        q.flush(Duration::from_secs(10));
        let got = written.lock().map(|w| w.clone()).unwrap_or_default();
        assert!(
            got.len() >= LINES && got.len() <= LINES + 1,
            "{}",
            got.len()
        );
        assert_eq!(got[0], b"0\n");
        assert!(got.windows(2).all(|p| {
            let n = |l: &[u8]| {
                String::from_utf8_lossy(l)
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
            };
            n(&p[0]) < n(&p[1])
        }));
    }
}
