//! Head-of-line blocking: large packages travel on streams of their own, so small
//! packages of another channel sent after a large one arrive before it completes
//! (impossible over one ordered byte stream such as TCP), while each channel keeps its
//! order, as documented in `yoton_quic::wire`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use parking_lot::Mutex;
use yoton_core::{slot_hash, Context, Package};

fn files() -> u64 {
    slot_hash("files.bin.pub-sub")
}

fn chat() -> u64 {
    slot_hash("chat.bin.pub-sub")
}

fn small_on(slot: u64, i: u64) -> Package {
    Package::new(slot, i.to_le_bytes().to_vec())
}

fn index_of(p: &Package) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&p.payload[..8]);
    u64::from_le_bytes(w)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn tcp_ctx() -> Context {
    Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .build()
        .unwrap()
}

struct Race {
    /// Arrival order: Some(index) for small packages, None for the large one.
    order: Vec<Option<u64>>,
    /// Latencies of the small packages that arrived before the large one.
    latencies: Vec<Duration>,
    /// How long the large package took.
    took: Duration,
    /// Small packages sent before the large one arrived.
    sent_during: usize,
}

/// Send `big` on the files channel, then small packages on `small_slot` every
/// `every` until the receiver has the big one.
async fn race(a: &Context, ib: &mut Inbox, big: Bytes, small_slot: u64, every: Duration) -> Race {
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    a.send_async(Package::new(files(), big.clone()))
        .await
        .unwrap();
    // The first small package goes out at once, so that at least one is always sent
    // while the large one is in flight, however fast the machine.
    sent_at.lock().push(Instant::now());
    a.send_async(small_on(small_slot, 0)).await.unwrap();
    let sender = {
        let (a, sent_at, done) = (a.clone(), sent_at.clone(), done.clone());
        tokio::spawn(async move {
            let mut i = 1u64;
            while !done.load(Ordering::Acquire) && i < 10_000 {
                sent_at.lock().push(Instant::now());
                a.send_async(small_on(small_slot, i)).await.unwrap();
                i += 1;
                tokio::time::sleep(every).await;
            }
            i
        })
    };
    let mut order = vec![];
    let mut latencies = vec![];
    let (took, sent_during);
    loop {
        let p = ib.recv_within(Duration::from_secs(60)).await;
        if p.payload.len() == big.len() {
            took = t0.elapsed();
            sent_during = sent_at.lock().len();
            assert!(p.payload == big, "the large package arrived damaged");
            order.push(None);
            break;
        }
        let i = index_of(&p);
        latencies.push(sent_at.lock()[i as usize].elapsed());
        order.push(Some(i));
    }
    done.store(true, Ordering::Release);
    let n = sender.await.unwrap();
    // The small packages still in flight arrive after the big one, in order.
    let mut got = order.iter().flatten().count() as u64;
    while got < n {
        let p = ib.recv().await;
        assert_eq!(index_of(&p), got, "small packages out of order");
        got += 1;
    }
    latencies.sort();
    Race {
        order,
        latencies,
        took,
        sent_during,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_packages_of_another_channel_overtake_a_large_one_in_flight() {
    let (a, b) = pinned_contexts();
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    join(&a, &b).await;
    // Warm up (connection windows, allocator).
    race(
        &a,
        &mut ib,
        Bytes::from(pattern(1 << 20, 1)),
        chat(),
        Duration::from_millis(1),
    )
    .await;

    let big = Bytes::from(pattern(64 << 20, 7));
    let r = race(&a, &mut ib, big, chat(), Duration::from_millis(2)).await;
    let before = r.order.iter().take_while(|o| o.is_some()).count();
    eprintln!(
        "QUIC: 64 MiB took {:?}; {} small packages were sent meanwhile, {before} of them \
         arrived before it; their latency: median {:?}, p90 {:?}, max {:?}",
        r.took,
        r.sent_during,
        percentile(&r.latencies, 0.5),
        percentile(&r.latencies, 0.9),
        percentile(&r.latencies, 1.0),
    );
    // Every small package was sent after the large one was handed to the connection:
    // over one ordered stream none could arrive before it.
    assert!(
        before >= 3,
        "only {before} small packages overtook the large one (took {:?})",
        r.took
    );
    // Small packages keep their order.
    let smalls: Vec<u64> = r.order.iter().flatten().copied().collect();
    assert!(smalls.windows(2).all(|w| w[0] + 1 == w[1]), "{smalls:?}");
    assert_eq!(smalls.first(), Some(&0));
    // And they were not held up for the duration of the transfer.
    assert!(
        percentile(&r.latencies, 0.5) < r.took / 2,
        "median small latency {:?} vs large transfer {:?}",
        percentile(&r.latencies, 0.5),
        r.took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_of_the_same_channel_never_overtake_a_large_one() {
    let (a, b) = pinned_contexts();
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    join(&a, &b).await;
    let big = Bytes::from(pattern(32 << 20, 7));
    // Small packages on the large package's own channel wait for it.
    let r = race(&a, &mut ib, big, files(), Duration::from_millis(2)).await;
    eprintln!(
        "same channel: {} small packages sent during the {:?} transfer, {} before it",
        r.sent_during,
        r.took,
        r.order.len() - 1
    );
    assert_eq!(r.order, vec![None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_comparison_over_tcp_nothing_overtakes() {
    let (a, b) = (tcp_ctx(), tcp_ctx());
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    let host = a.bind_async("tcp://127.0.0.1:0").await.unwrap();
    b.connect_async(&format!("tcp://127.0.0.1:{}", host.local().port), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    let big = Bytes::from(pattern(64 << 20, 7));
    let r = race(&a, &mut ib, big, chat(), Duration::from_millis(2)).await;
    eprintln!(
        "TCP: 64 MiB took {:?}; {} small packages were sent meanwhile, {} arrived before it",
        r.took,
        r.sent_during,
        r.order.len() - 1
    );
    assert_eq!(r.order, vec![None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_large_packages_in_flight() {
    let (a, b) = pinned_contexts();
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    join(&a, &b).await;
    // On the files channel: L0 s0 L1 s1 L2 s2 L3 s3 with decreasing sizes (later ones
    // would complete first). All in one channel: arrival in exactly that order.
    let sizes = [16usize << 20, 4 << 20, 1 << 20, 70_000];
    let larges: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| Bytes::from(pattern(n, k as u8)))
        .collect();
    let name = |p: &Package| match larges.iter().position(|l| l.len() == p.payload.len()) {
        Some(k) => {
            assert!(p.payload == larges[k], "large {k} damaged");
            format!("L{k}")
        }
        None => format!("s{}", index_of(p)),
    };
    for (k, l) in larges.iter().enumerate() {
        a.send_async(Package::new(files(), l.clone()))
            .await
            .unwrap();
        a.send_async(small_on(files(), k as u64)).await.unwrap();
    }
    let mut arrivals = vec![];
    for _ in 0..2 * larges.len() {
        arrivals.push(name(&ib.recv_within(Duration::from_secs(60)).await));
    }
    eprintln!("one channel: {}", arrivals.join(" "));
    assert_eq!(arrivals, ["L0", "s0", "L1", "s1", "L2", "s2", "L3", "s3"]);

    // Large packages on the files channel, small ones on the chat channel: the small
    // ones do not wait, the large ones keep their order and never overtake a package
    // sent before them.
    for (k, l) in larges.iter().enumerate() {
        a.send_async(Package::new(files(), l.clone()))
            .await
            .unwrap();
        a.send_async(small_on(chat(), k as u64)).await.unwrap();
    }
    let mut arrivals = vec![];
    for _ in 0..2 * larges.len() {
        arrivals.push(name(&ib.recv_within(Duration::from_secs(60)).await));
    }
    eprintln!("two channels: {}", arrivals.join(" "));
    let pos = |name: &str| arrivals.iter().position(|x| x == name).unwrap();
    for k in 1..larges.len() {
        assert!(
            pos(&format!("L{}", k - 1)) < pos(&format!("L{k}")),
            "{arrivals:?}"
        );
        assert!(
            pos(&format!("s{}", k - 1)) < pos(&format!("s{k}")),
            "{arrivals:?}"
        );
        for j in 0..k {
            assert!(
                pos(&format!("s{j}")) < pos(&format!("L{k}")),
                "{arrivals:?}"
            );
        }
    }
    assert!(pos("s3") < pos("L0"), "{arrivals:?}");

    // A large package of another channel does not wait for a larger one either.
    let other = slot_hash("photos.bin.pub-sub");
    let mut ip = inbox(&b, other);
    a.send_async(Package::new(files(), larges[0].clone()))
        .await
        .unwrap();
    a.send_async(Package::new(other, larges[3].clone()))
        .await
        .unwrap();
    let photo = ip.recv_within(Duration::from_secs(60)).await;
    assert!(photo.payload == larges[3]);
    assert!(
        ib.rx.try_recv().is_err(),
        "the 16 MiB package arrived before the 70 kB one of another channel"
    );
    assert!(ib.recv_within(Duration::from_secs(60)).await.payload == larges[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_large_packages_than_the_stream_limit_all_arrive() {
    let server = yoton_quic::QuicTransport::builder()
        .self_signed_for(["127.0.0.1"])
        .max_concurrent_large_messages(2)
        .build()
        .unwrap();
    let client = yoton_quic::QuicTransport::builder()
        .pin_certificate(server.fingerprint().unwrap())
        .max_concurrent_large_messages(2)
        .build()
        .unwrap();
    let (a, b) = (ctx_with(server), ctx_with(client));
    let slots: Vec<u64> = (0..5)
        .map(|k| slot_hash(&format!("many{k}.bin.pub-sub")))
        .collect();
    let mut ia = inbox_slots(&a, &slots);
    let mut ib = inbox_slots(&b, &slots);
    join(&a, &b).await;
    // 20 large packages of decreasing size over 5 channels, both ways at once.
    let payloads: Vec<Bytes> = (0..20usize)
        .map(|k| Bytes::from(pattern((20 - k) * 200_000, k as u8)))
        .collect();
    for (k, p) in payloads.iter().enumerate() {
        a.send_async(Package::new(slots[k % 5], p.clone()))
            .await
            .unwrap();
        b.send_async(Package::new(slots[k % 5], p.clone()))
            .await
            .unwrap();
    }
    for inbox in [&mut ib, &mut ia] {
        let mut next_per_slot = [0usize; 5];
        for _ in 0..payloads.len() {
            let p = inbox.recv_within(Duration::from_secs(60)).await;
            let s = slots.iter().position(|&s| s == p.slot).unwrap();
            // Per channel, in the order sent.
            let k = next_per_slot[s] * 5 + s;
            assert!(
                p.payload == payloads[k],
                "package {k} out of order or damaged"
            );
            next_per_slot[s] += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_waits_for_the_large_packages_sent_before_it() {
    let (a, b) = pinned_contexts();
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    let (host, client) = join(&a, &b).await;
    let big = Bytes::from(pattern(48 << 20, 5));
    a.send_async(Package::new(files(), big.clone()))
        .await
        .unwrap();
    a.send_async(small_on(chat(), 1)).await.unwrap();
    // `close` flushes the connection's queue for at most 1 s (reference semantics);
    // on a loaded machine a debug build needs longer to hand 48 MiB to its stream, so
    // flush first. The transport then still has the large package in flight on its
    // own stream: the goodbye must not overtake it.
    a.flush_async(Duration::from_secs(60)).await.unwrap();
    host.close_async("sent it").await;
    // The small one may come first; the large one is not lost.
    let mut got_big = false;
    for _ in 0..2 {
        let p = ib.recv_within(Duration::from_secs(60)).await;
        if p.payload.len() == big.len() {
            assert!(p.payload == big);
            got_big = true;
        }
    }
    assert!(got_big);
    assert_eq!(
        client.wait_closed_async(WAIT).await.unwrap(),
        "Closed from other end."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overtaking_is_bounded_so_the_large_package_is_not_taken_for_a_duplicate() {
    // The router drops a package whose sequence number is 4096 or more below the
    // highest seen from its source. Thousands of small packages overtaking one large
    // package would make it look that old; the transport lets at most 2048 overtake.
    let (a, b) = pinned_contexts();
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    join(&a, &b).await;
    let big = Bytes::from(pattern(64 << 20, 3));
    a.send_async(Package::new(files(), big.clone()))
        .await
        .unwrap();
    let n = 6000u64;
    for i in 0..n {
        a.send_async(small_on(chat(), i)).await.unwrap();
    }
    let mut before = None;
    let mut next = 0u64;
    for k in 0..=n {
        let p = ib.recv_within(Duration::from_secs(60)).await;
        if p.payload.len() == big.len() {
            assert!(p.payload == big);
            before = Some(k);
        } else {
            assert_eq!(index_of(&p), next);
            next += 1;
        }
    }
    let before = before.expect("the large package was lost");
    eprintln!("{before} of {n} small packages overtook the large one");
    assert!(before <= yoton_quic::wire::MAX_OVERTAKE, "{before}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_packages_waiting_behind_a_large_one_of_their_channel_all_arrive_in_order() {
    // More than MAX_WAITING packages queue behind the large one of their channel:
    // the control stream pauses (flow control) and everything arrives, in order.
    let (a, b) = pinned_contexts();
    let mut ib = inbox_slots(&b, &[files(), chat()]);
    join(&a, &b).await;
    let big = Bytes::from(pattern(32 << 20, 3));
    a.send_async(Package::new(files(), big.clone()))
        .await
        .unwrap();
    let n = 3000u64;
    for i in 0..n {
        a.send_async(small_on(files(), i)).await.unwrap();
    }
    a.send_async(small_on(chat(), 0)).await.unwrap();
    let mut files_order = vec![];
    let mut chats = 0;
    for _ in 0..n + 2 {
        let p = ib.recv_within(Duration::from_secs(60)).await;
        if p.slot == chat() {
            chats += 1;
        } else if p.payload.len() == big.len() {
            assert!(p.payload == big);
            files_order.push(None);
        } else {
            files_order.push(Some(index_of(&p)));
        }
    }
    assert_eq!(chats, 1);
    let expected: Vec<Option<u64>> = std::iter::once(None).chain((0..n).map(Some)).collect();
    assert!(files_order == expected, "the files channel is out of order");
}
