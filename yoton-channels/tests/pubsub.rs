//! Publish/subscribe over real TCP.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use yoton_channels::{
    select_sub_channel, Binary, DiscardMode, ObjectOf, PubChannel, SubChannel, Text,
};

#[test]
fn two_publishers_three_subscribers_everyone_gets_everything_in_order() {
    // A hub context joins everybody (star over TCP).
    let hub = ctx();
    let listener = hub.listen("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", listener.local().port);
    let pubs: Vec<_> = (0..2).map(|_| ctx()).collect();
    let subs: Vec<_> = (0..3).map(|_| ctx()).collect();
    let sub_channels: Vec<SubChannel<Text>> = subs
        .iter()
        .map(|c| SubChannel::new(c, "news").unwrap())
        .collect();
    let pub_channels: Vec<PubChannel<Text>> = pubs
        .iter()
        .map(|c| PubChannel::new(c, "news").unwrap())
        .collect();
    for c in pubs.iter().chain(&subs) {
        c.connect(&addr, WAIT).unwrap();
    }
    wait_for("5 peers at the hub", || hub.connection_count() == 5);
    let n = 500;
    std::thread::scope(|s| {
        for (k, p) in pub_channels.iter().enumerate() {
            s.spawn(move || {
                for i in 0..n {
                    p.send(format!("{k}:{i}")).unwrap();
                }
            });
        }
    });
    for sub in &sub_channels {
        let mut next = HashMap::new();
        for _ in 0..2 * n {
            let m = sub.recv_timeout(WAIT).unwrap().expect("a message");
            let (k, i) = m.split_once(':').unwrap();
            let expected = next.entry(k.to_owned()).or_insert(0);
            assert_eq!(
                i.parse::<i32>().unwrap(),
                *expected,
                "order of publisher {k}"
            );
            *expected += 1;
        }
        assert_eq!(sub.recv_timeout(Duration::from_millis(200)).unwrap(), None);
    }
}

/// A fast publisher and a subscriber that reads one message per 0.5 ms, with a
/// queue limit of 500: returns (messages received, in order, discarded, sends that
/// found the publisher throttled).
fn slow_reader_run(sync: bool) -> (usize, u64, usize) {
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Text>::new(&a, "sync").unwrap();
    let sub = SubChannel::<Text>::new(&b, "sync").unwrap();
    sub.set_queue_limit(500, DiscardMode::Old);
    sub.set_sync_mode(sync);
    join(&a, &b);
    let n = 2000;
    let reader = std::thread::spawn({
        let sub = sub.clone();
        move || {
            let mut received = 0;
            let mut last = None;
            while let Some(m) = sub.recv_timeout(Duration::from_millis(1500)).unwrap() {
                let i: usize = m.parse().unwrap();
                assert!(
                    last.is_none_or(|l| i > l),
                    "out of order: {i} after {last:?}"
                );
                last = Some(i);
                received += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            received
        }
    });
    let mut throttled = 0;
    for i in 0..n {
        if publisher.is_throttled() {
            throttled += 1;
        }
        publisher.send(format!("{i}")).unwrap();
        // A fast publisher (about 10x the reader's rate) but not an instant burst:
        // sync mode bounds the queue to 32 plus what is in flight during the round
        // trip of its `full` message, which must stay below the limit of 500.
        std::thread::sleep(Duration::from_micros(20));
    }
    let in_order = reader.join().unwrap();
    (in_order, sub.discarded(), throttled)
}

#[test]
fn sync_mode_slows_the_publisher_and_loses_nothing() {
    let (got, discarded, throttled) = slow_reader_run(true);
    assert_eq!((got, discarded), (2000, 0), "lost messages in sync mode");
    assert!(throttled > 0, "the publisher was never throttled");
}

/// Sync mode holds a publisher back even while the subscriber does not call `recv`
/// at all: the arrivals themselves trigger the `full` message.
#[test]
fn sync_mode_holds_the_publisher_while_the_subscriber_is_not_reading() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Text>::new(&a, "held").unwrap();
    let sub = SubChannel::<Text>::new(&b, "held").unwrap();
    sub.set_sync_mode(true);
    join(&a, &b);
    let n = 20_000;
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let held = publisher.clone();
    let sender = std::thread::spawn({
        let sent = sent.clone();
        move || {
            for i in 0..n {
                publisher.send(format!("{i}")).unwrap();
                sent.fetch_add(1, SeqCst);
                // Fast (thousands per second), but not one burst that is all in the
                // socket buffers before the `full` message can come back.
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    });
    // Nobody reads. Once the publisher is held, it makes (almost) no progress: each
    // held send waits up to 1 s.
    wait_for("messages to pile up", || sub.pending() > 32);
    wait_for("the publisher to be held", || held.is_throttled());
    let before = sent.load(SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let progress = sent.load(SeqCst) - before;
    assert!(
        progress <= 2,
        "the publisher sent {progress} more in 300 ms while nobody read"
    );
    assert!(sub.pending() < 1000, "{} pending", sub.pending());
    // Reading lets it go on; nothing is lost.
    for i in 0..n {
        let m = sub
            .recv_timeout(WAIT)
            .unwrap()
            .expect("a message within WAIT");
        assert_eq!(m, i.to_string());
    }
    sender.join().unwrap();
    assert_eq!(sub.discarded(), 0);
}

#[test]
fn without_sync_mode_a_slow_reader_discards() {
    let (got, discarded, throttled) = slow_reader_run(false);
    assert!(discarded > 0, "nothing discarded ({got} received)");
    assert_eq!(got as u64 + discarded, 2000);
    assert_eq!(throttled, 0);
}

#[test]
fn select_sub_channel_keeps_the_original_order() {
    let (a, b) = (ctx(), ctx());
    let p1 = PubChannel::<Text>::new(&a, "left").unwrap();
    let p2 = PubChannel::<Binary>::new(&a, "right").unwrap();
    let s1 = SubChannel::<Text>::new(&b, "left").unwrap();
    let s2 = SubChannel::<Binary>::new(&b, "right").unwrap();
    join(&a, &b);
    let pattern = [0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1, 0];
    for (i, which) in pattern.iter().enumerate() {
        if *which == 0 {
            p1.send(format!("{i}")).unwrap();
        } else {
            p2.send(bytes::Bytes::from(format!("{i}"))).unwrap();
        }
    }
    wait_for("all pending", || {
        s1.pending() + s2.pending() == pattern.len()
    });
    let mut merged = Vec::new();
    while let Some(i) = select_sub_channel(&[&s1, &s2]) {
        if i == 0 {
            merged.extend(s1.recv_selected());
        } else {
            merged.extend(
                s2.recv_selected()
                    .into_iter()
                    .map(|b| String::from_utf8(b.to_vec()).unwrap()),
            );
        }
    }
    let expected: Vec<String> = (0..pattern.len()).map(|i| i.to_string()).collect();
    assert_eq!(merged, expected);
}

#[test]
fn object_messages_and_empty_messages() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Reading {
        sensor: String,
        values: Vec<f64>,
        ok: bool,
    }
    let (a, b) = (ctx(), ctx());
    let p = PubChannel::<ObjectOf<Reading>>::new(&a, "readings").unwrap();
    let s = SubChannel::<ObjectOf<Reading>>::new(&b, "readings").unwrap();
    let pt = PubChannel::<Text>::new(&a, "t").unwrap();
    let st = SubChannel::<Text>::new(&b, "t").unwrap();
    join(&a, &b);
    let r = Reading {
        sensor: "temp".into(),
        values: vec![1.5, -2.0],
        ok: true,
    };
    p.send(r).unwrap();
    let got = s.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(
        got,
        Reading {
            sensor: "temp".into(),
            values: vec![1.5, -2.0],
            ok: true
        }
    );
    // An empty text message is not sent at all.
    pt.send(String::new()).unwrap();
    pt.send("after".into()).unwrap();
    assert_eq!(st.recv_timeout(WAIT).unwrap().as_deref(), Some("after"));
}

#[test]
fn a_second_channel_on_the_same_slot_is_an_error() {
    let a = ctx();
    let _s = SubChannel::<Text>::new(&a, "dup").unwrap();
    let err = SubChannel::<Text>::new(&a, "dup").unwrap_err().to_string();
    assert!(err.contains("dup.txt.pub-sub"), "{err}");
    // Other type: other slot, fine.
    let _b = SubChannel::<Binary>::new(&a, "dup").unwrap();
}

#[test]
fn received_notification_is_coalesced_and_fires() {
    let (a, b) = (ctx(), ctx());
    let p = PubChannel::<Text>::new(&a, "note").unwrap();
    let s = SubChannel::<Text>::new(&b, "note").unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    s.on_received(move |_ch| {
        c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    join(&a, &b);
    for i in 0..1000 {
        p.send(i.to_string()).unwrap();
    }
    wait_for("all 1000", || s.pending() == 1000);
    wait_for("a notification", || {
        calls.load(std::sync::atomic::Ordering::SeqCst) > 0
    });
    let n = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n < 1000, "not coalesced: {n} calls for 1000 messages");
}

#[test]
fn closing_a_subscriber_ends_blocking_receives() {
    let a = ctx();
    let s = SubChannel::<Text>::new(&a, "closing").unwrap();
    let s2 = s.clone();
    let t = std::thread::spawn(move || s2.recv());
    std::thread::sleep(Duration::from_millis(100));
    s.close();
    let r = t.join().unwrap();
    assert!(r.unwrap_err().to_string().contains("closed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api_under_tokio() {
    let (a, b) = (ctx(), ctx());
    let p = PubChannel::<Text>::new(&a, "async").unwrap();
    let s = SubChannel::<Text>::new(&b, "async").unwrap();
    join_async(&a, &b).await;
    for i in 0..10 {
        p.send_async(i.to_string()).await.unwrap();
    }
    for i in 0..10 {
        let m = tokio::time::timeout(WAIT, s.recv_async())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m, i.to_string());
    }
    // A blocking call on a multi-thread runtime works too (block_in_place).
    p.send("blocking".into()).unwrap();
    assert_eq!(s.recv_timeout(WAIT).unwrap().as_deref(), Some("blocking"));
}

#[test]
fn blocking_recv_in_a_current_thread_runtime_is_a_clear_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = ctx();
        let s = SubChannel::<Text>::new(&a, "ct").unwrap();
        let err = s
            .recv_timeout(Duration::from_millis(10))
            .unwrap_err()
            .to_string();
        assert!(err.contains("recv_async"), "{err}");
    });
}

#[test]
fn send_slice_from_one_reused_buffer_arrives_intact_and_in_order() {
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Binary>::new(&a, "slices").unwrap();
    let sub = SubChannel::<Binary>::new(&b, "slices").unwrap();
    sub.set_queue_limit(usize::MAX, DiscardMode::Old);
    // Before any connection: into the start-up queue (copied once).
    publisher.send_slice(b"early").unwrap();
    publisher.send_slice(b"").unwrap(); // empty: not sent
    join(&a, &b);
    // Sizes around the 16 KiB limit of the copy-free path, from one buffer that is
    // overwritten after every send; one Bytes send in between keeps the order.
    let sizes = [1usize, 64, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 100_000];
    let mut buf = vec![0u8; 100_000];
    let mut expected: Vec<Vec<u8>> = vec![b"early".to_vec()];
    for i in 0..3_000u32 {
        let n = sizes[i as usize % sizes.len()];
        for (j, x) in buf[..n].iter_mut().enumerate() {
            *x = (i as usize + j) as u8;
        }
        buf[..4.min(n)].copy_from_slice(&i.to_le_bytes()[..4.min(n)]);
        publisher.send_slice(&buf[..n]).unwrap();
        expected.push(buf[..n].to_vec());
        if i % 1000 == 0 {
            let owned = bytes::Bytes::from(format!("owned {i}"));
            publisher.send(owned.clone()).unwrap();
            expected.push(owned.to_vec());
        }
    }
    receives_exactly(&sub, &expected);
    publisher.close();
    assert!(
        publisher.send_slice(b"x").is_err(),
        "a closed channel refuses"
    );
}

/// `sub` receives `expected` in order (each within `WAIT`), then nothing more for
/// 200 ms, and discarded nothing.
fn receives_exactly(sub: &SubChannel<Binary>, expected: &[Vec<u8>]) {
    for (k, want) in expected.iter().enumerate() {
        let got = sub.recv_timeout(WAIT).unwrap().expect("a message");
        assert_eq!(&got[..], &want[..], "message {k} ({} bytes)", want.len());
    }
    assert_eq!(sub.recv_timeout(Duration::from_millis(200)).unwrap(), None);
    assert_eq!(sub.discarded(), 0);
}

#[test]
fn send_slices_keeps_the_order_across_runs_sizes_and_the_start_up_queue() {
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Binary>::new(&a, "batches").unwrap();
    let sub = SubChannel::<Binary>::new(&b, "batches").unwrap();
    sub.set_queue_limit(usize::MAX, DiscardMode::Old);
    // Before any connection: each goes to the start-up queue; the empty one is left out.
    publisher
        .send_slices(&[&b"early 1"[..], b"", b"early 2"])
        .unwrap();
    join(&a, &b);
    // Calls of 1 to 300 messages (runs of 64 under one lock, and the rest), sizes
    // around the 16 KiB limit of the copy path, empty ones left out, and single sends
    // in between.
    let sizes = [1usize, 64, 0, 16 * 1024, 16 * 1024 + 1, 100_000, 7];
    let mut expected: Vec<Vec<u8>> = vec![b"early 1".to_vec(), b"early 2".to_vec()];
    let mut k = 0usize;
    for (call, n) in [1usize, 63, 64, 65, 300, 2, 129].into_iter().enumerate() {
        let batch: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                k += 1;
                let mut m = vec![(k % 251) as u8; sizes[k % sizes.len()]];
                let len = m.len().min(8);
                m[..len].copy_from_slice(&k.to_le_bytes()[..len]);
                m
            })
            .collect();
        publisher.send_slices(&batch).unwrap();
        expected.extend(batch.into_iter().filter(|m| !m.is_empty()));
        let single = format!("single after call {call}").into_bytes();
        publisher.send_slice(&single).unwrap();
        expected.push(single);
    }
    receives_exactly(&sub, &expected);
    // Async style, and a closed channel.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(publisher.send_slices_async(&[b"async 1", b"async 2"]))
        .unwrap();
    receives_exactly(&sub, &[b"async 1".to_vec(), b"async 2".to_vec()]);
    publisher.close();
    assert!(
        publisher.send_slices(&[b"x"]).is_err(),
        "a closed channel refuses"
    );
}

/// A subscriber in sync mode holds back a publisher that sends in batches: the
/// publisher checks before every run of 64, so its queue stays bounded and nothing
/// is lost. (The queue limit leaves room for what is sent while the `full` message
/// is on its way, which a loaded machine makes a few milliseconds; without the check
/// the 10,000 messages outrun the reader by far more.)
#[test]
fn sync_mode_holds_back_a_publisher_that_sends_in_batches() {
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Binary>::new(&a, "sync-batches").unwrap();
    let sub = SubChannel::<Binary>::new(&b, "sync-batches").unwrap();
    sub.set_queue_limit(5_000, DiscardMode::Old);
    sub.set_sync_mode(true);
    join(&a, &b);
    let (calls, per_call) = (100u32, 100u32);
    let sender = std::thread::spawn(move || {
        let mut throttled = 0;
        for c in 0..calls {
            if publisher.is_throttled() {
                throttled += 1;
            }
            let batch: Vec<[u8; 4]> = (0..per_call)
                .map(|i| (c * per_call + i).to_le_bytes())
                .collect();
            publisher.send_slices(&batch).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        throttled
    });
    let mut next = 0u32;
    while next < calls * per_call {
        let m = sub
            .recv_timeout(WAIT)
            .unwrap()
            .expect("a message within WAIT");
        assert_eq!(m[..], next.to_le_bytes(), "out of order");
        next += 1;
        std::thread::sleep(Duration::from_micros(20));
    }
    let throttled = sender.join().unwrap();
    assert_eq!(sub.discarded(), 0, "lost messages in sync mode");
    assert!(throttled > 0, "the publisher was never throttled");
}

/// The times the runtime threads of `ctx` went to sleep so far (voluntary context
/// switches of the threads named after it, from /proc).
#[cfg(target_os = "linux")]
fn runtime_sleeps(ctx: &yoton_core::Context) -> u64 {
    let name = format!("yoton-{:08x}", ctx.id() as u32);
    let mut n = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    n
}

/// While a blocking receive spins, its context's runtime polls the socket instead of
/// sleeping between packets (`Context::busy_poll`): messages that come every half
/// millisecond to a receiver that spins long are read without the runtime's thread
/// going to sleep for each, as it does when the receiver does not spin.
#[cfg(target_os = "linux")]
#[test]
fn a_spinning_blocking_receive_keeps_its_runtime_polling() {
    const N: u32 = 100;
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Binary>::new(&b, "trickle").unwrap();
    let sub = SubChannel::<Binary>::new(&a, "trickle").unwrap();
    join(&a, &b);
    let mut sleeps = Vec::new();
    for spin in [Duration::ZERO, WAIT] {
        sub.set_spin(spin);
        // Warm up: the connection is in use both ways.
        publisher.send_slice(b"warm-up").unwrap();
        assert!(sub.recv_timeout(WAIT).unwrap().is_some());
        let sender = {
            let publisher = publisher.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    std::thread::sleep(Duration::from_micros(500));
                    publisher.send_slice(&i.to_le_bytes()).unwrap();
                }
            })
        };
        let before = runtime_sleeps(&a);
        for i in 0..N {
            let m = sub
                .recv_timeout(WAIT)
                .unwrap()
                .expect("a message within WAIT");
            assert_eq!(m[..], i.to_le_bytes());
        }
        sleeps.push(runtime_sleeps(&a) - before);
        sender.join().unwrap();
    }
    let [without, with] = sleeps[..] else {
        unreachable!()
    };
    // Without spinning it sleeps once per message, less when a loaded machine lets
    // messages pile up while it waits for a CPU (43-100 times here under two CPU
    // hogs); with spinning 0-8 times.
    assert!(
        without >= u64::from(N) / 4,
        "without spinning the runtime slept only {without} times for {N} messages"
    );
    assert!(
        with * 3 < without,
        "while the receive spun the runtime slept {with} times, against {without} without"
    );
}

#[test]
fn messages_kept_by_the_receiver_stay_intact_while_reads_go_on() {
    // Payloads are slices of the read buffers, which are used again once nothing
    // refers to them, and reads hand their list to the channel's queue: keep every
    // 997th message (its buffer must not be reused) and drop the others (theirs may
    // be), then check the kept ones after the whole stream went through.
    let (a, b) = (ctx(), ctx());
    let publisher = PubChannel::<Binary>::new(&a, "kept").unwrap();
    let sub = SubChannel::<Binary>::new(&b, "kept").unwrap();
    sub.set_queue_limit(usize::MAX, DiscardMode::Old);
    join(&a, &b);
    let payload = |i: u32| {
        let mut p = vec![(i % 251) as u8; 64];
        p[..4].copy_from_slice(&i.to_le_bytes());
        p
    };
    const N: u32 = 200_000;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            publisher.send_slice(&payload(i)).unwrap();
        }
        publisher
    });
    let mut kept = Vec::new();
    let mut next = 0u32;
    let t0 = std::time::Instant::now();
    while next < N {
        assert!(t0.elapsed() < WAIT * 3, "only {next} of {N} arrived");
        let mut batch = sub.recv_all();
        if batch.is_empty() {
            // Nothing pending: wait for the next one.
            batch.extend(sub.recv_timeout(WAIT).unwrap());
        }
        for m in batch {
            assert_eq!(&m[..], &payload(next)[..], "message {next} on arrival");
            if next % 997 == 0 {
                kept.push((next, m));
            }
            next += 1;
        }
    }
    let _publisher = sender.join().unwrap();
    assert_eq!(kept.len(), (N as usize).div_ceil(997));
    for (i, m) in &kept {
        assert_eq!(&m[..], &payload(*i)[..], "kept message {i} was overwritten");
    }
    assert_eq!(sub.discarded(), 0);
}

/// An async receive spins before it sleeps, yielding to its runtime (which polls its
/// I/O meanwhile): an echo that comes back within the spin is taken without the
/// runtime's thread going to sleep. (The spin is set long here, so that a loaded
/// machine cannot make an echo outlast it.) The echo waits `ECHO_DELAY` before it
/// answers: longer than the connection writer's linger after a write (50 us), which
/// keeps the runtime awake too, so that without spinning the runtime must sleep once
/// a round (a fast machine answered within the linger and slept 20 times in 100).
#[test]
fn async_receive_spins_for_an_echo_instead_of_parking_its_runtime() {
    const ROUNDS: usize = 100;
    const ECHO_DELAY: Duration = Duration::from_micros(300);
    let echo = ctx();
    let echo_in = SubChannel::<Binary>::new(&echo, "spin-ping").unwrap();
    let echo_out = PubChannel::<Binary>::new(&echo, "spin-pong").unwrap();
    // The echo: a blocking receiver on a thread of its own.
    let echoer = std::thread::spawn(move || {
        for _ in 0..2 * ROUNDS + 1 {
            let m = echo_in.recv_timeout(WAIT).unwrap().expect("a ping");
            std::thread::sleep(ECHO_DELAY);
            echo_out.send(m).unwrap();
        }
    });
    let (rt, parks) = counting_runtime();
    rt.block_on(async {
        let a = ctx();
        let ping = PubChannel::<Binary>::new(&a, "spin-ping").unwrap();
        let pong = SubChannel::<Binary>::new(&a, "spin-pong").unwrap();
        join_async(&a, &echo).await;
        let round = |i: usize| {
            let (ping, pong) = (&ping, &pong);
            async move {
                ping.send_async(vec![i as u8; 8].into()).await.unwrap();
                let m = tokio::time::timeout(WAIT, pong.recv_async()).await.unwrap();
                assert_eq!(&m.unwrap()[..], &[i as u8; 8][..]);
            }
        };
        round(0).await; // warm-up
        let mut parked = Vec::new();
        for spin in [WAIT, Duration::ZERO] {
            pong.set_spin(spin);
            let before = parks.load(Ordering::Relaxed);
            for i in 1..=ROUNDS {
                round(i).await;
            }
            parked.push(parks.load(Ordering::Relaxed) - before);
        }
        assert!(
            parked[0] < ROUNDS / 10 && parked[1] >= ROUNDS / 2,
            "the runtime slept {parked:?} times in {ROUNDS} round trips, spinning / not"
        );
    });
    echoer.join().unwrap();
}
