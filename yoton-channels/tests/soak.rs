//! Soak: mixed traffic over real TCP on 127.0.0.1 for a bounded, configurable time,
//! with file descriptors, threads and memory of this process sampled every second and
//! printed (`--nocapture`). Pub/sub bursts of varied sizes from two clients, request/
//! reply calls, state changes, and a third client that connects, publishes and closes
//! in every round. Everything sent is checked on arrival.
//!
//! CI runs it for 15 s; `YOTON_SOAK_SECS=600 cargo test -p yoton-channels --test soak
//! -- --nocapture` is the 10-minute run.

#[path = "common.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use yoton_channels::{PubChannel, RepChannel, RepMode, ReqChannel, StateChannel, SubChannel, Text};
use yoton_testkit::proc::{sample, thread_names};

fn soak_time() -> Duration {
    let secs = std::env::var("YOTON_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15u64);
    Duration::from_secs(secs.max(4))
}

/// A message of `round`, `i` whose size cycles through 10 B .. 64 KiB.
fn message(client: usize, round: u64, i: u64) -> String {
    let size = [10usize, 100, 1000, 10_000, 65_536][(i % 5) as usize];
    let head = format!("{client}:{round}:{i}:");
    let pad = size.saturating_sub(head.len());
    format!("{head}{}", "x".repeat(pad))
}

#[test]
fn soak_mixed_traffic_keeps_descriptors_threads_and_memory_flat() {
    let run = soak_time();
    let hub = ctx();
    let listener = hub.listen("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", listener.local().port);

    // The hub: subscriber, replier and the state's owner.
    let news = SubChannel::<Text>::new(&hub, "soak.news").unwrap();
    let rep = RepChannel::new(&hub, "soak.rpc").unwrap();
    rep.handle("add", |(a, b): (i64, i64)| Ok::<_, String>(a + b));
    rep.set_mode(RepMode::Task);
    let state = StateChannel::<Text>::new(&hub, "soak.state").unwrap();

    // Two long-lived clients.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let c = ctx();
            let p = PubChannel::<Text>::new(&c, "soak.news").unwrap();
            let r = ReqChannel::new(&c, "soak.rpc").unwrap();
            let s = StateChannel::<Text>::new(&c, "soak.state").unwrap();
            c.connect(&addr, WAIT).unwrap();
            (c, p, r, s)
        })
        .collect();
    wait_for("2 clients", || hub.connection_count() == 2);

    let received = Arc::new(AtomicU64::new(0));
    let mut expected = 0u64;
    let mut calls = 0u64;
    let mut churned = 0u64;
    let mut samples: Vec<(Duration, usize, usize, u64)> = vec![];
    let t0 = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut round = 0u64;
    while t0.elapsed() < run {
        // Pub/sub: a burst from each client, all checked on arrival.
        for (k, (_, p, _, _)) in clients.iter().enumerate() {
            for i in 0..100 {
                p.send(message(k, round, i)).unwrap();
            }
        }
        expected += 200;
        // A client that connects, publishes once and closes.
        {
            let c = ctx();
            let p = PubChannel::<Text>::new(&c, "soak.news").unwrap();
            c.connect(&addr, WAIT).unwrap();
            p.send(format!("churn:{round}")).unwrap();
            c.flush(WAIT).unwrap();
            c.close();
            expected += 1;
            churned += 1;
        }
        // Request/reply from both clients.
        for (_, _, r, _) in &clients {
            let replies: Vec<_> = (0..10)
                .map(|i| (i, r.call("add", (round as i64, i)).unwrap()))
                .collect();
            for (i, reply) in replies {
                let sum: i64 = reply.result_as(WAIT).unwrap();
                assert_eq!(sum, round as i64 + i);
                calls += 1;
            }
        }
        // State: the hub changes it, both clients see it.
        let v = format!("state {round}");
        state.send(v.clone()).unwrap();
        for (_, _, _, s) in &clients {
            wait_for("the state", || s.recv().as_deref() == Some(v.as_str()));
        }
        // Everything published so far arrives.
        let t_wait = Instant::now();
        while received.load(Ordering::Relaxed) < expected {
            for m in news.recv_all() {
                assert!(m.contains(':'), "damaged message");
                received.fetch_add(1, Ordering::Relaxed);
            }
            if received.load(Ordering::Relaxed) < expected {
                assert!(
                    t_wait.elapsed() < WAIT,
                    "{} of {expected} messages arrived",
                    received.load(Ordering::Relaxed)
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if t0.elapsed() >= next_sample {
            let (fd, th, rss) = sample();
            samples.push((t0.elapsed(), fd, th, rss));
            next_sample += Duration::from_secs(1);
        }
        round += 1;
    }
    let (fd, th, rss) = sample();
    samples.push((t0.elapsed(), fd, th, rss));

    println!("threads at the end: {}", thread_names());
    println!("   time   fds  threads   VmRSS KiB");
    for (t, fd, th, rss) in &samples {
        println!("{:>6.1}s {fd:>5} {th:>8} {rss:>11}", t.as_secs_f64());
    }
    println!(
        "soak of {:?}: {round} rounds, {expected} messages received in full, {calls} calls \
         answered, {churned} connect/close cycles, {} state changes; discarded: channel {}, \
         send queues {}",
        t0.elapsed(),
        round,
        news.discarded(),
        hub.discarded()
    );
    assert_eq!(received.load(Ordering::Relaxed), expected);
    assert_eq!(news.discarded(), 0);
    assert_eq!(hub.discarded(), 0);
    wait_for("the churned connections to close at the hub", || {
        hub.connection_count() == 2
    });

    // Flat after the warm-up (the first quarter of the run).
    let warm = samples
        .iter()
        .find(|s| s.0 >= run / 4)
        .copied()
        .expect("samples after the warm-up");
    let peak = |f: fn(&(Duration, usize, usize, u64)) -> u64| {
        samples
            .iter()
            .filter(|s| s.0 >= warm.0)
            .map(f)
            .max()
            .unwrap_or(0)
    };
    let (fd_max, th_max, rss_max) = (peak(|s| s.1 as u64), peak(|s| s.2 as u64), peak(|s| s.3));
    assert!(
        fd_max <= warm.1 as u64 + 6,
        "fds grew from {} to {fd_max}",
        warm.1
    );
    // The replier runs its plain handlers on tokio's blocking pool, whose idle threads
    // live 10 s: a few more under load are normal; a leak per cycle (a runtime per
    // churned context) would add hundreds.
    assert!(
        th_max <= warm.2 as u64 + 8,
        "threads grew from {} to {th_max}",
        warm.2
    );
    assert!(
        rss_max <= warm.3 + 16 * 1024,
        "VmRSS grew from {} to {rss_max} KiB",
        warm.3
    );
    assert!(round >= 10, "only {round} rounds in {run:?}");
    drop(listener);
}
