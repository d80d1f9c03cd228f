//! Cost of recording one message's events and of one scrape, side by side
//! with the same work done through the `prometheus` crate's own registry
//! (the usual way a Rust service counts). Run with
//! `cargo bench -p mailward-metrics`; it prints median nanoseconds per
//! operation over several rounds and the ratio.

use mailward_metrics::event::*;
use mailward_metrics::group::GroupOutcome;
use mailward_metrics::{prometheus as render, Category, Event, Gauges, Stats};
use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn median_ns(rounds: usize, iters: u64, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() {
    let stats = Stats::new(&Category::ALL, 10, None, "bench");
    let viruses = vec!["EICAR-Test-File".to_string()];
    let record_message = |stats: &Stats, i: u64| {
        stats.record(&Event::SessionOpened {
            direction: Direction::In,
        });
        stats.record(&Event::MessageAccepted { size: 1024 });
        stats.record(&Event::ScanFinished {
            av: if i.is_multiple_of(10) {
                AvStatus::Infected
            } else {
                AvStatus::Clean
            },
            spam: Some(SpamStatus::Clean),
            spam_score: Some(-2.5),
            viruses: if i.is_multiple_of(10) { &viruses } else { &[] },
            filter_rules: &[],
            spam_tests: &[],
            sender: "sender@example.com",
            client: "192.0.2.1"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            duration: Duration::from_micros(16),
            groups: &[GroupOutcome {
                group: "",
                infected: i.is_multiple_of(10),
                spam: false,
                refused: false,
            }],
            mode: mailward_metrics::event::Mode::Smtp,
        });
        stats.record(&Event::DeliveryAttempted {
            result: DeliveryResult::Delivered,
            rcpts: 1,
            bytes: 1024,
            domain: "example.com",
        });
        stats.record(&Event::SessionClosed {
            direction: Direction::In,
        });
    };

    // The same counting with the prometheus crate.
    let registry = Registry::new();
    let received = IntCounter::new("received_total", "r").unwrap_or_else(|_| std::process::exit(1));
    let bytes =
        IntCounter::new("received_bytes_total", "b").unwrap_or_else(|_| std::process::exit(1));
    let av = IntCounterVec::new(Opts::new("av_total", "a"), &["status"])
        .unwrap_or_else(|_| std::process::exit(1));
    let del = IntCounterVec::new(Opts::new("deliveries_total", "d"), &["result"])
        .unwrap_or_else(|_| std::process::exit(1));
    let sessions = IntCounterVec::new(Opts::new("sessions_total", "s"), &["direction"])
        .unwrap_or_else(|_| std::process::exit(1));
    let top = IntCounterVec::new(Opts::new("virus_total", "v"), &["virus"])
        .unwrap_or_else(|_| std::process::exit(1));
    {
        let c = received.clone();
        let _ = registry.register(Box::new(c));
    }
    let _ = registry.register(Box::new(bytes.clone()));
    let _ = registry.register(Box::new(av.clone()));
    let _ = registry.register(Box::new(del.clone()));
    let _ = registry.register(Box::new(sessions.clone()));
    let _ = registry.register(Box::new(top.clone()));
    let peer_message = |i: u64| {
        sessions.with_label_values(&["in"]).inc();
        received.inc();
        bytes.inc_by(1024);
        av.with_label_values(&[if i.is_multiple_of(10) {
            "infected"
        } else {
            "clean"
        }])
        .inc();
        if i.is_multiple_of(10) {
            top.with_label_values(&["EICAR-Test-File"]).inc();
        }
        del.with_label_values(&["delivered"]).inc();
    };

    let mut i = 0u64;
    let ours = median_ns(15, 20_000, || {
        i += 1;
        record_message(&stats, i);
    });
    let mut j = 0u64;
    let peer = median_ns(15, 20_000, || {
        j += 1;
        peer_message(j);
    });
    println!("record one message's events   mailward {ours:>9.0} ns   prometheus crate {peer:>9.0} ns   ratio {:.2}", ours / peer);

    // Full top-N tables: 10 rows in each of the four tables.
    for n in 0..40 {
        let v = vec![format!("Virus-{n}")];
        stats.record(&Event::ScanFinished {
            av: AvStatus::Infected,
            spam: None,
            spam_score: None,
            viruses: &v,
            filter_rules: &[format!("rule-{n}")],
            spam_tests: &[],
            sender: &format!("s{n}@example.com"),
            client: std::net::IpAddr::from([192, 0, 2, n as u8]),
            duration: Duration::from_micros(10),
            groups: &[GroupOutcome {
                group: "",
                infected: true,
                spam: false,
                refused: false,
            }],
            mode: mailward_metrics::event::Mode::Smtp,
        });
        top.with_label_values(&[&format!("Virus-{n}")]).inc();
    }
    let gauges = Gauges::default();
    let scrape = median_ns(15, 300, || {
        let snap = stats.snapshot(&gauges);
        black_box(render::render(&snap).map(|s| s.len()).unwrap_or(0));
    });
    let peer_scrape = median_ns(15, 300, || {
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
        black_box(buf.len());
    });
    println!("one scrape (snapshot + text)  mailward {scrape:>9.0} ns   prometheus crate {peer_scrape:>9.0} ns   ratio {:.2}", scrape / peer_scrape);
    println!("(the mailward scrape covers every catalogue series and four top-10 tables; the prometheus crate one only the six families above)");
}
