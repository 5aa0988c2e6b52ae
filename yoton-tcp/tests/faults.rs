//! Faults over real TCP on 127.0.0.1: a peer process killed (SIGKILL) in the middle of
//! a large message, and many connect/close cycles. Memory, file descriptors and threads
//! are measured in this process (/proc/self) and printed (`--nocapture`). The tests of
//! this file run one at a time (they measure the whole process). Every wait is bounded.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use yoton_core::{slot_hash, Context};

/// The tests measure the whole process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn exchange(from: &Context, to: &Context, what: &str) {
    let slot = slot_hash(&format!("faults.{what}.txt.pub-sub"));
    let mut inbox = inbox(to, slot);
    from.send_async(text(slot, what)).await.unwrap();
    assert_eq!(inbox.recv_text().await, what);
}

type ChildLines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The next line of a child's stdout (bounded wait).
async fn next_line(lines: &mut ChildLines) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the python peer went silent")
        .unwrap()
        .expect("the python peer ended")
}

/// A peer in another process (system python3, raw socket): handshake, then a header that
/// announces `TOTAL` bytes, then 1 MiB every 10 ms (about 100 MB/s) for ever, printing
/// how much it sent every 16 MiB.
const STREAMER_PY: &str = r#"
import os, socket, struct, sys, time
port, total, slot = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"YOTON!00000000000dead1.%d\r\n" % os.getpid())
line = b""
while not line.endswith(b"\r\n"):
    b = s.recv(1)
    if not b:
        sys.exit("closed during the handshake")
    line += b
print("handshake " + line.decode().strip(), flush=True)
control = int.from_bytes(b"YOTON   ", "little")
s.sendall(struct.pack("<7Q", control, slot, 0xdead1, 1, 0, 0, total))
chunk = b"x" * (1 << 20)
sent = 0
while True:
    s.sendall(chunk)
    sent += len(chunk)
    if sent % (16 << 20) == 0:
        print("sent %d" % sent, flush=True)
    time.sleep(0.01)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_message_frees_its_memory_and_the_others_go_on() {
    let _serial = SERIAL.lock().await;
    let hub = ctx();
    let listener = hub.listen_async("127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    // Another peer, which must not notice anything.
    let good = ctx();
    good.connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    listener.accept_async(WAIT).await.unwrap();
    exchange(&hub, &good, "before").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = rss_kib();

    let total: u64 = 500 << 20;
    let mut child = tokio::process::Command::new("python3")
        .args([
            "-c",
            STREAMER_PY,
            &port.to_string(),
            &total.to_string(),
            &slot_hash("big.bin.pub-sub").to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 (system) is needed for the streaming peer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let hello = next_line(&mut lines).await;
    assert!(hello.starts_with("handshake YOTON!"), "{hello}");
    let victim = listener.accept_async(WAIT).await.unwrap();
    assert_eq!(victim.peer_id(), 0xdead1);
    // Let about 160 MB of the 500 MB arrive, then SIGKILL the sender.
    let mut sent = 0u64;
    while sent < 160 << 20 {
        let line = next_line(&mut lines).await;
        sent = line
            .strip_prefix("sent ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    }
    // The Rust side holds what arrived of the partial payload.
    let t0 = Instant::now();
    let mut rss_peak = rss_kib();
    while t0.elapsed() < Duration::from_millis(300) {
        rss_peak = rss_peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Others are served meanwhile.
    exchange(&hub, &good, "during").await;
    child.start_kill().unwrap(); // SIGKILL
    let t0 = Instant::now();
    let reason = victim.wait_closed_async(WAIT).await.unwrap();
    let closed_after = t0.elapsed();
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
    // Give the allocator a moment, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_kib();
    println!(
        "SIGKILL mid-message: {} MiB of {} MiB sent; closed {closed_after:?} after the kill: {reason:?}; \
         VmRSS {rss0} KiB -> peak {rss_peak} KiB -> {rss_after} KiB after the close",
        sent >> 20,
        total >> 20
    );
    assert!(
        reason == "Other end dropped the connection."
            || reason.starts_with("Socket error. Connection reset by peer"),
        "unexpected close reason {reason:?}"
    );
    assert!(closed_after < Duration::from_secs(2), "{closed_after:?}");
    assert!(
        rss_peak > rss0 + 100 * 1024,
        "the partial payload did not show in VmRSS ({rss0} -> {rss_peak} KiB): the measurement is void"
    );
    assert!(
        rss_after < rss0 + 48 * 1024,
        "memory did not come back down: VmRSS {rss0} -> {rss_after} KiB"
    );
    // The other connection goes on, both ways.
    assert!(good.connections()[0].is_connected());
    exchange(&hub, &good, "after").await;
    exchange(&good, &hub, "after-back").await;
    assert_eq!(hub.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connect_close_cycles_leak_no_descriptors_or_threads() {
    let _serial = SERIAL.lock().await;
    let hub = ctx();
    let listener = hub.listen_async("127.0.0.1:0").await.unwrap();
    let addr = format!("127.0.0.1:{}", listener.local().port);
    let client = ctx();
    let cycle = |i: usize| {
        let (client, listener, addr) = (&client, &listener, &addr);
        async move {
            let conn = client.connect_async(addr, WAIT).await.unwrap();
            let hosted = listener.accept_async(WAIT).await.unwrap();
            if i % 2 == 0 {
                conn.close_async("cycle").await;
                assert_eq!(
                    hosted.wait_closed_async(WAIT).await.unwrap(),
                    "Closed from other end."
                );
            } else {
                hosted.close_async("cycle").await;
                assert_eq!(
                    conn.wait_closed_async(WAIT).await.unwrap(),
                    "Closed from other end."
                );
            }
        }
    };
    // Warm up (runtime threads, lazily allocated pools).
    for i in 0..20 {
        cycle(i).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fd0, th0, rss0) = sample();
    let t0 = Instant::now();
    let (mut fd_max, mut th_max) = (fd0, th0);
    for i in 0..1000 {
        cycle(i).await;
        if i % 50 == 0 {
            fd_max = fd_max.max(fds());
            th_max = th_max.max(threads());
        }
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fd1, th1, rss1) = sample();
    println!(
        "1000 connect/close cycles in {took:?}: fds {fd0} -> {fd1} (max {fd_max}), \
         threads {th0} -> {th1} (max {th_max}), VmRSS {rss0} -> {rss1} KiB; \
         closed connections still listed by connections_all(): hub {}, client {}",
        hub.connections_all().len(),
        client.connections_all().len()
    );
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(client.connection_count(), 0);
    assert!(fd1 <= fd0 + 2, "file descriptors grew from {fd0} to {fd1}");
    assert!(
        fd_max <= fd0 + 8,
        "file descriptors peaked at {fd_max} (from {fd0})"
    );
    assert!(th1 <= th0 + 2, "threads grew from {th0} to {th1}");
    assert!(
        rss1 < rss0 + 16 * 1024,
        "VmRSS grew from {rss0} to {rss1} KiB over 1000 cycles"
    );
    // Both still work.
    let peer = ctx();
    peer.connect_async(&addr, WAIT).await.unwrap();
    listener.accept_async(WAIT).await.unwrap();
    exchange(&hub, &peer, "after-cycles").await;
}

/// Regression test of a library issue found by the test above (now fixed): a context
/// kept every connection it ever had (`connections_all()`, closed ones included),
/// about 4.6 KB each, so a peer that connects and disconnects in a loop grew a
/// long-running listener's memory without bound. Now only the 16 most recently
/// closed ones are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_are_not_kept_for_ever() {
    let _serial = SERIAL.lock().await;
    let hub = ctx();
    let listener = hub.listen_async("127.0.0.1:0").await.unwrap();
    let addr = format!("127.0.0.1:{}", listener.local().port);
    let client = ctx();
    for _ in 0..200 {
        let conn = client.connect_async(&addr, WAIT).await.unwrap();
        let hosted = listener.accept_async(WAIT).await.unwrap();
        conn.close_async("cycle").await;
        hosted.wait_closed_async(WAIT).await.unwrap();
    }
    let (kept_hub, kept_client) = (hub.connections_all().len(), client.connections_all().len());
    println!("after 200 connect/close cycles: hub keeps {kept_hub}, client keeps {kept_client}");
    assert!(
        kept_hub <= 16 && kept_client <= 16,
        "closed connections pile up: hub {kept_hub}, client {kept_client}"
    );
}
