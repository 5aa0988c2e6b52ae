//! Overload over real TCP on 127.0.0.1: a peer that never reads. Its send queue stops
//! at the hard limit and discards (counted per connection and per context), the
//! publisher's memory stays flat, and well-behaved peers on the same publisher or
//! relay lose nothing. Memory is measured in this process (/proc/self) and printed
//! (`--nocapture`); the tests of this file run one at a time. Every wait is bounded.
//!
//! The run is shortened for CI; `YOTON_NEVER_READS_SECS=3600` streams for an hour.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tokio::io::AsyncWriteExt;
use yoton_core::connection::HARD_LIMIT_FACTOR;
use yoton_core::{slot_hash, Connection, Context, Listener, Package};

/// The tests measure the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SOFT_BYTES: usize = 1 << 20;
const HARD_BYTES: usize = SOFT_BYTES * HARD_LIMIT_FACTOR;
const PAYLOAD: usize = 4096;

fn ctx_small_queues() -> Context {
    Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .send_queue_bytes(SOFT_BYTES)
        .build()
        .unwrap()
}

fn numbered(slot: u64, i: u64) -> Package {
    let mut v = vec![0u8; PAYLOAD];
    v[..8].copy_from_slice(&i.to_le_bytes());
    Package::new(slot, Bytes::from(v))
}

fn number_of(p: &Package) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&p.payload[..8]);
    u64::from_le_bytes(w)
}

/// A hand-made peer on `listener` that completes the handshake, keeps its connection
/// alive with heartbeats, and never reads a byte. Returns the host's connection to it
/// and a guard that keeps it going.
async fn never_reading_peer(
    listener: &Listener,
    port: u16,
) -> (Connection, tokio::task::JoinHandle<()>) {
    let (stream, answer) = raw_peer(port, 0x5EED_0000_0000_0001).await;
    assert!(answer.starts_with("YOTON!"), "{answer}");
    let conn = listener.accept_async(WAIT).await.unwrap();
    let heartbeats = tokio::spawn(async move {
        let (_unread, mut w) = stream.into_split();
        loop {
            if w.write_all(&header(1, 0, 0, 0)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (conn, heartbeats)
}

/// Counts the numbered packages arriving at `slot` of `ctx` and checks their order.
fn counting_subscriber(
    ctx: &Context,
    slot: u64,
) -> (Arc<AtomicU64>, Arc<AtomicBool>, yoton_core::SlotGuard) {
    let got = Arc::new(AtomicU64::new(0));
    let out_of_order = Arc::new(AtomicBool::new(false));
    let guard = ctx
        .register_receiver(slot, "count", {
            let (got, ooo) = (got.clone(), out_of_order.clone());
            Arc::new(move |p: Package, _| {
                let expected = got.fetch_add(1, Ordering::Relaxed);
                if number_of(&p) != expected {
                    ooo.store(true, Ordering::Relaxed);
                }
            })
        })
        .unwrap();
    (got, out_of_order, guard)
}

/// A publisher with small send queues, listening, with two peers: one that never
/// reads, and a context that counts what arrives at `slot`.
struct Hub {
    hub: Context,
    /// The hub's connection to the peer that never reads.
    dead: Connection,
    /// The hub's connection to the counting peer.
    good_conn: Connection,
    got: Arc<AtomicU64>,
    out_of_order: Arc<AtomicBool>,
    /// The heartbeats of the peer that never reads, the counting context and its
    /// registration.
    _keep: (tokio::task::JoinHandle<()>, Context, yoton_core::SlotGuard),
}

async fn hub_with_two_peers(slot: u64) -> Hub {
    let hub = ctx_small_queues();
    let listener = hub.listen_async("127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    let (dead, heartbeats) = never_reading_peer(&listener, port).await;
    let good = ctx();
    good.connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    let good_conn = listener.accept_async(WAIT).await.unwrap();
    let (got, out_of_order, guard) = counting_subscriber(&good, slot);
    Hub {
        hub,
        dead,
        good_conn,
        got,
        out_of_order,
        _keep: (heartbeats, good, guard),
    }
}

impl Hub {
    /// Wait (bounded) until the counting peer has `n` packages; it lost none and got
    /// them in order.
    async fn good_peer_got_all(&self, n: u64) {
        wait_count(&self.got, n).await;
        assert_eq!(self.good_conn.discarded(), 0);
        assert_eq!(self.got.load(Ordering::Relaxed), n);
        assert!(!self.out_of_order.load(Ordering::Relaxed));
    }
}

/// Poll `done` (a counter's condition: no event to wait on) until it holds or
/// `within` passed; whether it holds.
async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() >= within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

async fn wait_count(got: &AtomicU64, n: u64) {
    let arrived = wait_until(4 * WAIT, || got.load(Ordering::Relaxed) >= n).await;
    assert!(
        arrived,
        "{} of {n} packages arrived",
        got.load(Ordering::Relaxed)
    );
}

fn secs_from_env() -> Duration {
    let secs = std::env::var("YOTON_NEVER_READS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6u64);
    Duration::from_secs(secs.max(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_costs_the_publisher_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let slot = slot_hash("overload.stream.bin.pub-sub");
    let h = hub_with_two_peers(slot).await;
    let (hub, dead) = (&h.hub, &h.dead);

    let run = secs_from_env();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut rss_after_warmup = None;
    let mut next_report = Duration::from_secs(1);
    let mut series = vec![];
    while t0.elapsed() < run || sent * (PAYLOAD as u64) < 64 * HARD_BYTES as u64 {
        assert!(t0.elapsed() < Duration::from_secs(120) + run, "too slow");
        hub.send_async(numbered(slot, sent)).await.unwrap();
        sent += 1;
        if t0.elapsed() >= next_report {
            let rss = rss_kib();
            rss_after_warmup.get_or_insert(rss);
            series.push(format!(
                "{:>4.1}s sent {:>6} MiB, VmRSS {rss} KiB, dead peer: queued {} KiB, \
                 discarded {}",
                t0.elapsed().as_secs_f64(),
                (sent * PAYLOAD as u64) >> 20,
                dead.queued_bytes() >> 10,
                dead.discarded()
            ));
            next_report += Duration::from_secs(1);
        }
    }
    // The other subscriber lost nothing and got everything in order.
    h.good_peer_got_all(sent).await;
    let rss_end = rss_kib();
    let rss_start = rss_after_warmup.expect("at least one second ran");
    println!("{}", series.join("\n"));
    println!(
        "never-reading subscriber: {sent} packages of {PAYLOAD} B ({} MiB) in {:?}; \
         discarded for it: {} (context total {}); well-behaved subscriber got {}; \
         VmRSS after 1 s {rss_start} KiB, at the end {rss_end} KiB",
        (sent * PAYLOAD as u64) >> 20,
        t0.elapsed(),
        dead.discarded(),
        hub.discarded(),
        h.got.load(Ordering::Relaxed)
    );
    // The peer that never reads holds at most the hard limit, the rest is counted.
    assert!(
        dead.queued_bytes() <= HARD_BYTES + PAYLOAD,
        "{}",
        dead.queued_bytes()
    );
    assert!(dead.discarded() > 0);
    assert!(dead.discarded() < sent);
    assert_eq!(hub.discarded(), dead.discarded());
    assert!(
        dead.is_connected(),
        "the heartbeats keep the slow peer connected"
    );
    // Memory: flat after the first second although 64 hard limits went out.
    assert!(
        rss_end < rss_start + 16 * 1024,
        "VmRSS grew from {rss_start} to {rss_end} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_discards_for_a_peer_that_never_reads_and_serves_the_others() {
    let _serial = SERIAL.lock().await;
    let slot = slot_hash("overload.relay.bin.pub-sub");
    // a -> relay -> {never-reading peer, b}; the relay only forwards.
    let relay = ctx_small_queues();
    let listener = relay.listen_async("127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    let (dead, _heartbeats) = never_reading_peer(&listener, port).await;
    let (a, b) = (ctx(), ctx());
    for peer in [&a, &b] {
        peer.connect_async(&format!("127.0.0.1:{port}"), WAIT)
            .await
            .unwrap();
        listener.accept_async(WAIT).await.unwrap();
    }
    let (got, out_of_order, _guard) = counting_subscriber(&b, slot);
    let n = (8 * HARD_BYTES / PAYLOAD) as u64;
    for i in 0..n {
        a.send_async(numbered(slot, i)).await.unwrap();
        // Paced so that the relay's queue towards b never reaches its hard limit:
        // only the peer that never reads should lose packages.
        if i % 256 == 255 {
            wait_count(&got, i + 1).await;
        }
    }
    wait_count(&got, n).await;
    println!(
        "relay: {n} packages forwarded; towards the peer that never reads: queued {} KiB, \
         discarded {}",
        dead.queued_bytes() >> 10,
        dead.discarded()
    );
    assert!(!out_of_order.load(Ordering::Relaxed));
    assert!(dead.queued_bytes() <= HARD_BYTES + PAYLOAD);
    assert!(dead.discarded() > 0, "the relay's queue grew instead");
    assert_eq!(relay.discarded(), dead.discarded());
    assert!(
        relay
            .connections()
            .iter()
            .filter(|c| c.peer_id() != dead.peer_id())
            .all(|c| c.discarded() == 0),
        "a well-behaved peer lost packages"
    );

    // Context messages from a peer are forwarded too, and obey the same bound (only a
    // context's own are exempt): a peer flooding them cannot grow the relay's queue.
    let before = dead.discarded();
    for i in 0..n {
        // A numbered payload: junk that no context message matches.
        let p = numbered(yoton_core::package::SLOT_CONTEXT, i);
        a.send_async(p).await.unwrap();
        if i % 256 == 255 {
            a.flush_async(WAIT).await.unwrap();
        }
    }
    a.flush_async(WAIT).await.unwrap();
    wait_until(WAIT, || dead.discarded() >= before + n / 2).await;
    println!(
        "relay: {n} context messages from a peer; towards the peer that never reads: \
         queued {} KiB, discarded {}",
        dead.queued_bytes() >> 10,
        dead.discarded() - before
    );
    assert!(dead.queued_bytes() <= HARD_BYTES + PAYLOAD);
    assert!(
        dead.discarded() >= before + n / 2,
        "forwarded context messages queued"
    );

    // The relay's own packages at that full queue: an ordinary one is discarded, a
    // context message of its own is queued all the same. First the relay finishes
    // forwarding the flood (its discard count stops moving).
    let mut last = (dead.discarded(), Instant::now());
    let settled = wait_until(WAIT, || {
        let now = dead.discarded();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(250)
    })
    .await;
    assert!(settled, "the relay kept discarding");
    let (queued, discarded) = (dead.queued(), dead.discarded());
    relay.send_now(numbered(slot, u64::MAX)).unwrap();
    assert_eq!(dead.discarded(), discarded + 1, "the queue was not full");
    relay
        .send_now(numbered(yoton_core::package::SLOT_CONTEXT, u64::MAX))
        .unwrap();
    assert_eq!(
        dead.discarded(),
        discarded + 1,
        "the relay's own context message was discarded"
    );
    assert_eq!(dead.queued(), queued + 1);
}

/// `send_slices` obeys the send queues' limits as single sends do: at a peer that
/// never reads it waits (up to `SEND_QUEUE_WAIT`) once the queue reaches its soft
/// limit, then goes on and discards beyond the hard limit, while a peer that reads
/// gets everything in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_slices_waits_at_a_full_queue_then_discards_beyond_the_hard_limit() {
    let _serial = SERIAL.lock().await;
    let slot = slot_hash("overload.slices.bin.pub-sub");
    let h = hub_with_two_peers(slot).await;
    let (hub, dead) = (&h.hub, &h.dead);

    // Far more than the hard limit and what the sockets hold, in one call.
    let n = (8 * HARD_BYTES / PAYLOAD) as u64 + 4096;
    let payloads: Vec<Bytes> = (0..n).map(|i| numbered(slot, i).payload).collect();
    // A blocking send waits only on a thread outside any runtime.
    let sender = hub.clone();
    let thread = std::thread::spawn(move || {
        let t0 = Instant::now();
        sender.send_slices(slot, &payloads).unwrap();
        t0.elapsed()
    });
    let took = tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    h.good_peer_got_all(n).await;
    println!(
        "send_slices: {n} packages of {PAYLOAD} B in {took:?}; towards the peer that \
         never reads: queued {} KiB, discarded {}",
        dead.queued_bytes() >> 10,
        dead.discarded()
    );
    assert!(
        took >= yoton_core::context::SEND_QUEUE_WAIT - Duration::from_millis(100),
        "the call never waited for the full queue ({took:?})"
    );
    assert!(dead.queued_bytes() <= HARD_BYTES + PAYLOAD);
    assert!(dead.discarded() > 0, "the queue grew instead");
}
