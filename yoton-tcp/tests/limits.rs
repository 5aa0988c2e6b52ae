//! Resource limits under hostile clients, over real TCP on 127.0.0.1: slow handshakes,
//! connection floods, the connection limit, lying length fields, bad handshake lines,
//! and authentication with a shared secret.
//!
//! Memory and file descriptors are measured in this process (/proc/self); the numbers
//! are printed (run with `--nocapture` to see them). The tests run one at a time.
//! Every wait is bounded.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use yoton_core::{slot_hash, Connection, ConnectionEvent, Context, Listener};

/// The tests measure the whole process (descriptors, memory): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ----------------------------------------------------------------- measurements

// ----------------------------------------------------------------- log capture

/// Log events (message and fields, as text) of the whole test binary, so that tests
/// can check the reason a host gives when it refuses a peer.
fn logs() -> &'static Mutex<Vec<String>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let _ = tracing::subscriber::set_global_default(Capture(logs.clone()));
        logs
    })
}

struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        e.record(&mut f);
        if let Ok(mut logs) = self.0.lock() {
            if logs.len() < 100_000 {
                logs.push(f.0);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Wait (bounded) for a log line that contains all of `parts`.
async fn expect_log(parts: &[&str]) -> String {
    expect_log_after(parts, 0).await
}

/// Whether a log line contains all of `parts`.
fn has_all(line: &str, parts: &[&str]) -> bool {
    parts.iter().all(|p| line.contains(p))
}

/// Log lines so far that contain all of `parts`.
fn logged(parts: &[&str]) -> usize {
    logs()
        .lock()
        .map_or(0, |l| l.iter().filter(|s| has_all(s, parts)).count())
}

/// Wait (bounded) for a log line that contains all of `parts`, after the first `seen`
/// such lines.
async fn expect_log_after(parts: &[&str], seen: usize) -> String {
    let t0 = Instant::now();
    loop {
        let found = logs()
            .lock()
            .ok()
            .and_then(|l| l.iter().filter(|s| has_all(s, parts)).nth(seen).cloned());
        if let Some(line) = found {
            return line;
        }
        assert!(
            t0.elapsed() < WAIT,
            "no log line with {parts:?}; captured: {:#?}",
            logs().lock().map(|l| l.clone()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ----------------------------------------------------------------- helpers

fn ctx_with(f: impl FnOnce(yoton_core::ContextBuilder) -> yoton_core::ContextBuilder) -> Context {
    f(Context::builder().transport(yoton_tcp::TcpTransport))
        .build()
        .unwrap()
}

async fn listen(hub: &Context) -> (Listener, u16) {
    let l = hub.listen_async("127.0.0.1:0").await.unwrap();
    let port = l.local().port;
    (l, port)
}

/// Listen on a loopback address of the test's own (127.0.0.0/8 is all loopback), so
/// that the host's log lines, which name the address given to `listen` (with port 0),
/// can be told apart from those of other tests.
async fn listen_on(hub: &Context, ip: &str) -> (Listener, u16) {
    let l = hub.listen_async(&format!("{ip}:0")).await.unwrap();
    let port = l.local().port;
    (l, port)
}

/// A real peer connects to `ip:port` through the listener.
async fn real_peer_at(listener: &Listener, ip: &str, port: u16) -> Context {
    let peer = ctx();
    peer.connect_async(&format!("{ip}:{port}"), WAIT)
        .await
        .unwrap();
    let hosted = listener.accept_async(WAIT).await.unwrap();
    assert_eq!(hosted.peer_id(), peer.id());
    peer
}

/// A real peer connects through the listener; both connections.
async fn real_peer(listener: &Listener, port: u16) -> (Context, Connection, Connection) {
    let peer = ctx();
    let client = peer
        .connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    let hosted = listener.accept_async(WAIT).await.unwrap();
    assert_eq!(hosted.peer_id(), peer.id());
    (peer, client, hosted)
}

/// A package from `from` arrives at `to`.
async fn exchange(from: &Context, to: &Context, what: &str) {
    let slot = slot_hash(&format!("limits.{what}.txt.pub-sub"));
    let mut inbox = inbox(to, slot);
    from.send_async(text(slot, what)).await.unwrap();
    assert_eq!(inbox.recv_text().await, what);
}

/// Read until EOF or error (bounded); what was read and how long it took.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t0.elapsed()), s.read(&mut buf)).await {
            Err(_) => panic!("the socket was not closed within {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, t0.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

// ----------------------------------------------------------------- slow loris

/// A client that sends its handshake one byte per second until the socket closes;
/// returns how long the host kept it.
async fn slow_loris(port: u16) -> Duration {
    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let t0 = Instant::now();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for b in b"YOTON!0000000000000bad.1\r\n".iter() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = [0u8; 256];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await {
            Err(_) => panic!("a slow-loris client was kept for more than 10 s"),
            Ok(Ok(0)) | Ok(Err(_)) => break t0.elapsed(),
            Ok(Ok(_)) => {} // an answer line; keep reading until the close
        }
    };
    writer.abort();
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_dropped_after_the_handshake_timeout() {
    let _serial = SERIAL.lock().await;
    let hub = ctx();
    let (listener, port) = listen(&hub).await;
    let kept = slow_loris(port).await;
    println!("slow loris: one byte per second, dropped after {kept:?}");
    assert!(
        kept >= Duration::from_millis(1900) && kept <= Duration::from_millis(3500),
        "dropped after {kept:?}, expected the 2 s handshake time-out"
    );

    // 50 at once do not keep a real peer out.
    let lorises: Vec<_> = (0..50).map(|_| tokio::spawn(slow_loris(port))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let (peer, _client, _hosted) = real_peer(&listener, port).await;
    let took = t0.elapsed();
    println!("with 50 slow-loris clients: a real peer got in after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    exchange(&hub, &peer, "loris").await;
    let mut kept = Vec::new();
    for l in lorises {
        kept.push(l.await.unwrap());
    }
    let longest = kept.iter().max().copied().unwrap_or_default();
    println!("the 50 slow-loris clients were dropped after at most {longest:?}");
    assert!(longest <= Duration::from_millis(3500), "{longest:?}");
}

// ----------------------------------------------------------------- flood

/// A child process (system python3) that opens `n` TCP connections to `port`, never
/// says anything, and holds them until its stdin closes. The connections live in the
/// child so that this process's descriptor count is the host's alone.
const FLOOD_PY: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n = int(sys.argv[1]), int(sys.argv[2])
socks, failed = [], 0
for i in range(n):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        socks.append(s)
    except OSError:
        failed += 1
        s.close()
print("connected %d failed %d" % (len(socks), failed), flush=True)
sys.stdin.read()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_keeps_descriptors_and_memory_bounded() {
    let _serial = SERIAL.lock().await;
    let hub = ctx_with(|b| b.max_pending_handshakes(64));
    let (listener, port) = listen(&hub).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (fd0, rss0) = (fds(), rss_kib());
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", FLOOD_PY, &port.to_string(), "2000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 (system) is needed for the flood client");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Sample while the flood goes on.
    let (mut fd_max, mut rss_max) = (fd0, rss0);
    let t0 = Instant::now();
    let summary = loop {
        tokio::select! {
            line = lines.next_line() => break line.unwrap().expect("flood client died"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                fd_max = fd_max.max(fds());
                rss_max = rss_max.max(rss_kib());
                assert!(t0.elapsed() < Duration::from_secs(60), "flood did not finish");
            }
        }
    };
    let flood_took = t0.elapsed();
    // Keep sampling while the held connections sit in their handshakes.
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_millis(2500) {
        fd_max = fd_max.max(fds());
        rss_max = rss_max.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "flood: 2000 silent connects ({summary}) in {flood_took:?}; host fds {fd0} -> max {fd_max} \
         (+{}), VmRSS {rss0} KiB -> max {rss_max} KiB (+{} KiB)",
        fd_max - fd0,
        rss_max - rss0
    );
    assert!(summary.starts_with("connected"), "{summary}");
    assert!(
        fd_max <= fd0 + 64 + 16,
        "descriptors grew from {fd0} to {fd_max} with max_pending_handshakes 64"
    );
    assert!(
        rss_max <= rss0 + 64 * 1024,
        "VmRSS grew by {} KiB",
        rss_max - rss0
    );
    // The flood sockets are still open in the child: a real peer gets in anyway.
    let t2 = Instant::now();
    let peer = ctx();
    let mut tries = 0;
    loop {
        tries += 1;
        match peer
            .connect_async(&format!("127.0.0.1:{port}"), Duration::from_secs(2))
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(
                t2.elapsed() < Duration::from_secs(10),
                "a real peer could not get in after the flood: {e}"
            ),
        }
    }
    let hosted = listener.accept_async(WAIT).await.unwrap();
    assert_eq!(hosted.peer_id(), peer.id());
    println!(
        "flood: a real peer got in {:?} after the flood ({tries} attempt(s)); host fds now {}",
        t2.elapsed(),
        fds()
    );
    exchange(&peer, &hub, "after-flood").await;
    drop(child.stdin.take());
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}

// ----------------------------------------------------------------- max_connections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_drops_further_sockets_and_keeps_the_others() {
    let _serial = SERIAL.lock().await;
    let hub = ctx_with(|b| b.max_connections(3));
    let (listener, port) = listen(&hub).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        peers.push(real_peer(&listener, port).await);
    }
    assert_eq!(hub.connection_count(), 3);
    // A fourth is dropped during its handshake, again and again until its time-out
    // (a host at its limit may have room at the next attempt).
    let fourth = ctx();
    let t0 = Instant::now();
    let err = fourth
        .connect_async(&format!("127.0.0.1:{port}"), Duration::from_secs(1))
        .await
        .unwrap_err();
    println!(
        "max_connections 3: the 4th peer was refused in {:?}: {err}",
        t0.elapsed()
    );
    assert!(matches!(err, yoton_core::Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("Handshake failed"), "{err}");
    // A raw socket gets EOF without an answer.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (answer, _) = read_until_closed(&mut raw, WAIT).await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert_eq!(hub.connection_count(), 3);
    // The three still work, both ways.
    for (i, (peer, _, _)) in peers.iter().enumerate() {
        exchange(&hub, peer, &format!("to{i}")).await;
        exchange(peer, &hub, &format!("from{i}")).await;
    }
    // The fourth tries again, and while it is retrying one leaves: it gets in with
    // that one connect. The host's log says when it dropped an attempt of it.
    const DROPPED: &[&str] = &["connection limit reached"];
    let dropped = logged(DROPPED);
    let address = format!("127.0.0.1:{port}");
    let trying = {
        let fourth = fourth.clone();
        tokio::spawn(async move { fourth.connect_async(&address, WAIT).await })
    };
    expect_log_after(DROPPED, dropped).await;
    assert!(!trying.is_finished(), "{:?}", trying.await);
    let (_, client, hosted) = peers.pop().unwrap();
    client.close_async("leaving").await;
    hosted.wait_closed_async(WAIT).await.unwrap();
    let again = trying.await.unwrap().expect("no room after one left");
    assert!(again.is_connected());
    listener.accept_async(WAIT).await.unwrap();
    exchange(&hub, &fourth, "room-again").await;
}

// ----------------------------------------------------------------- lying length

/// The next `TimedOut` event of a connection (bounded wait).
async fn next_timeout_event(events: &mut yoton_core::EventStream<ConnectionEvent>) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next()).await {
            Ok(Some(ConnectionEvent::TimedOut(t))) => return t,
            Ok(Some(_)) => {}
            other => panic!("no time-out event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_announced_and_ten_bytes_sent_costs_little() {
    let _serial = SERIAL.lock().await;
    let hub = ctx(); // max_message_size: the default 1 GiB
    let (listener, port) = listen(&hub).await;
    let (good, _, _) = real_peer(&listener, port).await;
    let (mut sock, answer) = raw_peer(port, 0x1ead).await;
    assert!(answer.starts_with("YOTON!"), "{answer}");
    let bad = listener.accept_async(WAIT).await.unwrap();
    bad.set_timeout(Duration::from_secs(1));
    let mut events = bad.events();
    // The raw peer sends no heartbeats: the connection times out ...
    assert!(next_timeout_event(&mut events).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss0 = rss_kib();
    // ... comes back with one heartbeat (slot 1, seq 0, no payload) ...
    let mut bytes = header(1, 0, 0, 0);
    // ... and then lies: 1 GiB announced, 10 bytes sent, the socket held open.
    bytes.extend_from_slice(&header(slot_hash("lie.bin.pub-sub"), 0x1ead, 1, 1 << 30));
    bytes.extend_from_slice(b"0123456789");
    let t0 = Instant::now();
    sock.write_all(&bytes).await.unwrap();
    assert!(!next_timeout_event(&mut events).await);
    // The receive time-out fires again: nothing complete arrives.
    assert!(next_timeout_event(&mut events).await);
    let timed_out_after = t0.elapsed();
    assert!(
        timed_out_after >= Duration::from_millis(900) && timed_out_after < Duration::from_secs(3),
        "{timed_out_after:?} for a 1 s time-out"
    );
    let rss1 = rss_kib();
    println!(
        "1 GiB announced, 10 bytes sent: TimedOut(true) after {timed_out_after:?}; VmRSS {rss0} KiB -> {rss1} KiB"
    );
    assert!(
        rss1 < rss0 + 16 * 1024,
        "VmRSS grew by {} KiB for 10 bytes",
        rss1 - rss0
    );
    assert!(bad.is_connected());
    exchange(&hub, &good, "unaffected").await;
    // Closing works although a package is half read.
    let t0 = Instant::now();
    bad.close_async("enough").await;
    assert_eq!(bad.close_reason().as_deref(), Some("enough"));
    let (got, _) = read_until_closed(&mut sock, WAIT).await;
    println!(
        "closed by the host in {:?}; the peer read {} bytes (the goodbye) and EOF",
        t0.elapsed(),
        got.len()
    );
    assert!(got.len() >= 56 && got[..8] == *b"YOTON   ", "{got:?}");
    exchange(&good, &hub, "still-fine").await;

    // The same lie, then the peer vanishes: closed with a reason.
    let (mut sock, _) = raw_peer(port, 0x1eaf).await;
    let bad = listener.accept_async(WAIT).await.unwrap();
    sock.write_all(&bytes[56..]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(sock);
    let reason = bad.wait_closed_async(WAIT).await.unwrap();
    println!("the lying peer dropped the socket: {reason:?}");
    assert_eq!(reason, "Other end dropped the connection.");
}

// ----------------------------------------------------------------- bad lines

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_handshake_line_is_refused_with_a_reason() {
    let _serial = SERIAL.lock().await;
    logs();
    // Host side (listen): the answer and the logged reason.
    const IP: &str = "127.0.0.21";
    let hub = ctx();
    let (listener, port) = listen_on(&hub, IP).await;
    let mut s = TcpStream::connect((IP, port)).await.unwrap();
    s.write_all(b"YOTON!\xff\xfe\xfd.1\r\n").await.unwrap();
    let (answer, took) = read_until_closed(&mut s, WAIT).await;
    println!(
        "invalid UTF-8 line: answered {:?} and closed in {took:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(answer, b"ERROR: this is Yoton.\r\n");
    let line = expect_log(&["refused a peer", IP, "not valid UTF-8"]).await;
    println!("host log: {line}");
    let peer = real_peer_at(&listener, IP, port).await;
    exchange(&peer, &hub, "utf8").await;

    // Client side: a host that answers with invalid UTF-8.
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        let _ = s.write_all(b"YOTON!\xc3\x28.1\r\n").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    });
    let err = ctx()
        .connect_async(&format!("127.0.0.1:{fake_port}"), WAIT)
        .await
        .unwrap_err()
        .to_string();
    println!("client facing an invalid UTF-8 answer: {err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_handshake_line_is_refused_by_listen_without_buffering_it() {
    let _serial = SERIAL.lock().await;
    logs();
    const IP: &str = "127.0.0.22";
    let hub = ctx();
    let (listener, port) = listen_on(&hub, IP).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = rss_kib();
    let s = TcpStream::connect((IP, port)).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'Y'; 64 * 1024];
        let mut sent = 0usize;
        while sent < (1 << 20) {
            match tokio::time::timeout(Duration::from_secs(3), w.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let t0 = Instant::now();
    loop {
        match tokio::time::timeout(WAIT, r.read(&mut buf)).await {
            Err(_) => panic!("not closed within {WAIT:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let took = t0.elapsed();
    let sent = tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
    let rss1 = rss_kib();
    println!(
        "1 MB line without CRLF: answered {:?}, closed after {took:?}; the client got {sent} bytes \
         out before the close; VmRSS {rss0} -> {rss1} KiB",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        String::from_utf8_lossy(&answer).starts_with("ERROR: this is Yoton."),
        "{answer:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: the line was not cut short"
    );
    assert!(rss1 < rss0 + 8 * 1024, "VmRSS grew by {} KiB", rss1 - rss0);
    expect_log(&["refused a peer", IP, "longer than 256 bytes"]).await;
    let peer = real_peer_at(&listener, IP, port).await;
    exchange(&hub, &peer, "after-long-line").await;
}

// ----------------------------------------------------------------- authentication

const SECRET: &[u8] = b"s3cret-Value-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_and_the_host_keeps_waiting() {
    let _serial = SERIAL.lock().await;
    // bind: one peer; the wrong ones are refused and it keeps waiting.
    let host_ctx = ctx_with(|b| b.secret(SECRET));
    let host = host_ctx.bind_async("127.0.0.1:0").await.unwrap();
    let addr = format!("127.0.0.1:{}", host.local().port);
    let wrong = ctx_with(|b| b.secret(b"wrong secret"));
    let err = wrong
        .connect_async(&addr, WAIT)
        .await
        .unwrap_err()
        .to_string();
    println!("bind, wrong secret: {err}");
    assert!(err.contains("authentication"), "{err}");
    let none = ctx();
    let err = none
        .connect_async(&addr, WAIT)
        .await
        .unwrap_err()
        .to_string();
    println!("bind, no secret: {err}");
    assert!(err.contains("requires authentication"), "{err}");
    assert!(host.is_waiting());
    let right = ctx_with(|b| b.secret(SECRET));
    right.connect_async(&addr, WAIT).await.unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    assert_eq!(host.peer_id(), right.id());
    exchange(&host_ctx, &right, "authenticated").await;

    // listen: the same, and the refused ones never show up as connections.
    let hub = ctx_with(|b| b.secret(SECRET));
    let (listener, port) = listen(&hub).await;
    let addr = format!("127.0.0.1:{port}");
    let err = ctx_with(|b| b.secret(b"also wrong"))
        .connect_async(&addr, WAIT)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication"), "{err}");
    assert!(listener
        .accept_async(Duration::from_millis(300))
        .await
        .is_err());
    let right = ctx_with(|b| b.secret(SECRET));
    right.connect_async(&addr, WAIT).await.unwrap();
    let hosted = listener.accept_async(WAIT).await.unwrap();
    assert_eq!(hosted.peer_id(), right.id());
    assert_eq!(hub.connection_count(), 1);
    exchange(&right, &hub, "authenticated-listen").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reference_cannot_connect_to_a_host_with_a_secret() {
    let _serial = SERIAL.lock().await;
    logs();
    const IP: &str = "127.0.0.23";
    let hub = ctx_with(|b| b.secret(SECRET));
    let (listener, port) = listen_on(&hub, IP).await;
    // The venv's python with the Yoton reference (this test never skips).
    let child = yoton_testkit::python::command("peer.py")
        .args([
            "--connect",
            &format!("{IP}:{port}"),
            "--timeout",
            "3",
            "wait-connected",
        ])
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the python peer did not exit within 20 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "python reference against a host with a secret: {}\nstdout: {stdout}stderr: {stderr}",
        out.status
    );
    assert!(!out.status.success(), "the python peer connected: {stdout}");
    assert!(!stdout.contains("\"connected\""), "{stdout}");
    assert!(listener
        .accept_async(Duration::from_millis(200))
        .await
        .is_err());
    assert_eq!(hub.connection_count(), 0);
    let line = expect_log(&["refused a peer", IP]).await;
    println!("host log: {line}");
}

/// A proxy that records every byte in both directions.
async fn recording_proxy(target: u16) -> (u16, Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let up = Arc::new(Mutex::new(Vec::new()));
    let down = Arc::new(Mutex::new(Vec::new()));
    let (u, d) = (up.clone(), down.clone());
    tokio::spawn(async move {
        let (inbound, _) = l.accept().await.unwrap();
        let outbound = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
        let (ir, iw) = inbound.into_split();
        let (or, ow) = outbound.into_split();
        tokio::spawn(pump(ir, ow, u));
        tokio::spawn(pump(or, iw, d));
    });
    (port, up, down)
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_never_goes_on_the_wire() {
    let _serial = SERIAL.lock().await;
    let hub = ctx_with(|b| b.secret(SECRET));
    let (listener, port) = listen(&hub).await;
    let (proxy, up, down) = recording_proxy(port).await;
    let client = ctx_with(|b| b.secret(SECRET));
    client
        .connect_async(&format!("127.0.0.1:{proxy}"), WAIT)
        .await
        .unwrap();
    listener.accept_async(WAIT).await.unwrap();
    exchange(&client, &hub, "over-the-proxy").await;
    exchange(&hub, &client, "and-back").await;
    let up = up.lock().unwrap().clone();
    let down = down.lock().unwrap().clone();
    let first_lines = |b: &[u8]| {
        String::from_utf8_lossy(&b[..b.len().min(300)])
            .split("YOTON   ")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    println!(
        "captured {} bytes client->host, {} bytes host->client\nclient said: {:?}\nhost said: {:?}",
        up.len(),
        down.len(),
        first_lines(&up),
        first_lines(&down)
    );
    assert!(first_lines(&up).contains("AUTH "), "no authentication seen");
    let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
    for (dir, bytes) in [("client->host", &up), ("host->client", &down)] {
        for needle in [SECRET, &SECRET[..8], hex.as_bytes(), &hex.as_bytes()[..16]] {
            assert!(
                !contains(bytes, needle),
                "{dir}: the secret (or part of it) is on the wire: {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}
