//! Contexts over real TCP on 127.0.0.1: exchange, routing through a line, a triangle
//! (also with unequal delays), the start-up queue, close reasons and time-outs.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use yoton_core::{slot_hash, ConnectionEvent, Package, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contexts_exchange_both_ways() {
    let (a, b) = (ctx(), ctx());
    let slot = slot_hash("both.bin.pub-sub");
    let (mut ia, mut ib) = (inbox(&a, slot), inbox(&b, slot));
    let (host, client) = join(&a, &b).await;
    assert_eq!(host.status(), Status::Hosting);
    assert_eq!(client.status(), Status::Connected);
    assert_eq!((host.peer_id(), client.peer_id()), (b.id(), a.id()));
    assert_eq!(host.peer_pid(), u64::from(std::process::id()));
    assert_eq!(client.peer().port, host.local().port);
    for i in 0..100 {
        a.send_async(text(slot, &format!("a{i}"))).await.unwrap();
        b.send_async(text(slot, &format!("b{i}"))).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(ib.recv_text().await, format!("a{i}"));
        assert_eq!(ia.recv_text().await, format!("b{i}"));
    }
    // A large payload arrives intact.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    a.send_async(Package::new(slot, big.clone())).await.unwrap();
    assert_eq!(ib.recv().await.payload, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_routes_broadcast_and_directed_through_the_middle() {
    let (a, b, c) = (ctx(), ctx(), ctx());
    let slot = slot_hash("line.txt.pub-sub");
    let (mut ib, mut ic) = (inbox(&b, slot), inbox(&c, slot));
    join(&a, &b).await;
    join(&b, &c).await;
    a.send_async(text(slot, "to all")).await.unwrap();
    a.send_async(text(slot, "to c").to_owned_dest(c.id()))
        .await
        .unwrap();
    a.send_async(text(slot, "to b").to_owned_dest(b.id()))
        .await
        .unwrap();
    assert_eq!(ic.recv_text().await, "to all");
    assert_eq!(ic.recv_text().await, "to c");
    assert_eq!(ib.recv_text().await, "to all");
    assert_eq!(ib.recv_text().await, "to b");
    ib.assert_quiet(Duration::from_millis(300)).await;
    ic.assert_quiet(Duration::from_millis(1)).await;
}

trait Dest {
    fn to_owned_dest(self, id: u64) -> Self;
}
impl Dest for Package {
    fn to_owned_dest(self, id: u64) -> Self {
        self.to(id, 0)
    }
}

async fn triangle(delay_on_ca: Option<Duration>) {
    let (a, b, c) = (ctx(), ctx(), ctx());
    let slot = slot_hash("tri.txt.pub-sub");
    let mut inboxes = [inbox(&a, slot), inbox(&b, slot), inbox(&c, slot)];
    join(&a, &b).await;
    join(&b, &c).await;
    // c -> a, optionally through a slow proxy so that the cycle's paths differ.
    let host = a.bind_async("127.0.0.1:0").await.unwrap();
    let mut port = host.local().port;
    if let Some(d) = delay_on_ca {
        port = delay_proxy(port, d).await;
    }
    c.connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    let ctxs = [&a, &b, &c];
    let n = 60;
    for i in 0..n {
        ctxs[i % 3]
            .send_async(text(slot, &format!("m{i}")))
            .await
            .unwrap();
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for (k, inbox) in inboxes.iter_mut().enumerate() {
        let mut got: HashMap<String, u32> = HashMap::new();
        for _ in 0..(n - n / 3) {
            *got.entry(inbox.recv_text().await).or_default() += 1;
        }
        inbox.assert_quiet(Duration::from_millis(300)).await;
        for i in (0..n).filter(|i| i % 3 != k) {
            assert_eq!(got.get(&format!("m{i}")), Some(&1), "node {k}, m{i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_delivers_every_package_exactly_once() {
    triangle(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_with_unequal_paths_delivers_exactly_once() {
    triangle(Some(Duration::from_millis(40))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_overtaken_by_a_faster_path_are_not_lost() {
    // a -> c over a slow proxy; while packages are in flight there, a fast path
    // a -> b -> c appears and later packages overtake them. The reference's
    // "newer than the last seen" rule would drop the overtaken ones at c.
    let (a, b, c) = (ctx(), ctx(), ctx());
    let slot = slot_hash("overtake.txt.pub-sub");
    let mut ic = inbox(&c, slot);
    let host = a.bind_async("127.0.0.1:0").await.unwrap();
    let port = delay_proxy(host.local().port, Duration::from_millis(400)).await;
    c.connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // NEW_CONNECTION settles
    for i in 0..5 {
        a.send_async(text(slot, &format!("slow{i}"))).await.unwrap();
    }
    join(&a, &b).await;
    join(&b, &c).await;
    for i in 0..5 {
        a.send_async(text(slot, &format!("fast{i}"))).await.unwrap();
    }
    let mut got = vec![];
    for _ in 0..10 {
        got.push(ic.recv_text().await);
    }
    ic.assert_quiet(Duration::from_millis(500)).await;
    assert_eq!(got[0], "fast0", "the fast path did not overtake: {got:?}");
    got.sort();
    let mut expected: Vec<String> = (0..5)
        .flat_map(|i| [format!("fast{i}"), format!("slow{i}")])
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_sent_before_any_connection_arrive_after_connect() {
    let (a, b) = (ctx(), ctx());
    let slot = slot_hash("early.txt.pub-sub");
    let mut ib = inbox(&b, slot);
    for i in 0..5 {
        a.send_async(text(slot, &format!("early{i}")))
            .await
            .unwrap();
    }
    assert_eq!(a.startup_queue_len(), 5);
    join(&a, &b).await;
    for i in 0..5 {
        assert_eq!(ib.recv_text().await, format!("early{i}"));
    }
    assert_eq!(a.startup_queue_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reasons_reach_the_other_side() {
    let (a, b) = (ctx(), ctx());
    let (host, client) = join(&a, &b).await;
    let mut events = host.events();
    client.close_async("done here").await;
    assert_eq!(client.close_reason().as_deref(), Some("done here"));
    assert_eq!(
        host.wait_closed_async(WAIT).await.unwrap(),
        "Closed from other end."
    );
    assert_eq!(
        tokio::time::timeout(WAIT, events.next()).await.unwrap(),
        Some(ConnectionEvent::Closed("Closed from other end.".into()))
    );
    assert_eq!(a.connection_count(), 0);

    // A peer that just drops the socket.
    let host = a.bind_async("127.0.0.1:0").await.unwrap();
    let (sock, answer) = raw_peer(host.local().port, 77).await;
    assert!(answer.starts_with("YOTON!"), "{answer}");
    host.wait_connected_async(WAIT).await.unwrap();
    drop(sock);
    assert_eq!(
        host.wait_closed_async(WAIT).await.unwrap(),
        "Other end dropped the connection."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_times_out_and_recovers() {
    let a = ctx();
    let host = a.bind_async("127.0.0.1:0").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    host.on_timedout(move |_, t| {
        let _ = tx.send((t, std::time::Instant::now()));
    });
    let (mut sock, _) = raw_peer(host.local().port, 78).await;
    host.wait_connected_async(WAIT).await.unwrap();
    let silent_since = std::time::Instant::now();
    let (t, at) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("no timedout(true) within 2 s")
        .unwrap();
    assert!(t);
    assert!(
        at - silent_since <= Duration::from_secs(1),
        "{:?}",
        at - silent_since
    );
    assert!(host.is_timed_out());
    assert!(host.is_connected(), "a time-out does not close");
    // Resume: one heartbeat.
    sock.write_all(&header(1, 0, 0, 0)).await.unwrap();
    let (t, _) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(!t);
    assert!(!host.is_timed_out());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_idle_connection_alive() {
    let (a, b) = (ctx(), ctx());
    let (host, client) = join(&a, &b).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for c in [&host, &client] {
        let tx = tx.clone();
        c.on_timedout(move |_, t| {
            let _ = tx.send(t);
        });
    }
    // Idle for three time-outs: heartbeats (every 0.25 s) must prevent any time-out.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err(),
        "an idle connection timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_names_the_address() {
    let a = ctx();
    // A port that nobody listens on: bind one, note it, drop it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = a
        .connect_async(&format!("127.0.0.1:{port}"), Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    let err = a
        .connect_async("ws://127.0.0.1:1", WAIT)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ws://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_accepts_many_peers_and_routes_between_them() {
    let hub = ctx();
    let listener = hub.listen_async("127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    let slot = slot_hash("hub.txt.pub-sub");
    let leaves: Vec<_> = (0..4).map(|_| ctx()).collect();
    let mut inboxes: Vec<_> = leaves.iter().map(|c| inbox(c, slot)).collect();
    for leaf in &leaves {
        leaf.connect_async(&format!("127.0.0.1:{port}"), WAIT)
            .await
            .unwrap();
        listener.accept_async(WAIT).await.unwrap();
    }
    assert_eq!(hub.connection_count(), 4);
    leaves[0]
        .send_async(text(slot, "from leaf 0"))
        .await
        .unwrap();
    for inbox in inboxes.iter_mut().skip(1) {
        assert_eq!(inbox.recv_text().await, "from leaf 0");
    }
    inboxes[0].assert_quiet(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_listener_ends_waiting_accepts_and_keeps_its_connections() {
    let hub = ctx();
    let listener = std::sync::Arc::new(hub.listen_async("127.0.0.1:0").await.unwrap());
    let addr = format!("127.0.0.1:{}", listener.local().port);
    let leaf = ctx();
    leaf.connect_async(&addr, WAIT).await.unwrap();
    let conn = listener.accept_async(WAIT).await.unwrap();
    let waiting = tokio::spawn({
        let listener = listener.clone();
        async move { listener.accept_async(Duration::from_secs(60)).await }
    });
    listener.close();
    let got = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("accept still waiting after close")
        .unwrap();
    assert!(
        matches!(got, Err(yoton_core::Error::Closed(_))),
        "{:?}",
        got.map(|c| c.name())
    );
    // No new peers; the one already there stays.
    let late = ctx();
    assert!(late
        .connect_async(&addr, Duration::from_millis(500))
        .await
        .is_err());
    assert!(conn.is_connected());
}

/// Register a receiver at `slot` of `ctx` that passes each payload to the channel.
fn payloads_of(
    ctx: &yoton_core::Context,
    slot: u64,
    name: &str,
) -> (
    yoton_core::SlotGuard,
    std::sync::mpsc::Receiver<bytes::Bytes>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let guard = ctx
        .register_receiver(
            slot,
            name,
            std::sync::Arc::new(move |p: Package, _| {
                let _ = tx.send(p.payload);
            }),
        )
        .unwrap();
    (guard, rx)
}

#[test]
fn blocking_api_from_a_plain_thread() {
    let (a, b) = (ctx(), ctx());
    let host = a.bind("127.0.0.1:0").unwrap();
    let slot = slot_hash("plain.txt.pub-sub");
    let (_g, rx) = payloads_of(&b, slot, "plain");
    b.connect(&format!("127.0.0.1:{}", host.local().port), WAIT)
        .unwrap();
    host.wait_connected(WAIT).unwrap();
    a.send(text(slot, "plain")).unwrap();
    a.flush(WAIT).unwrap();
    assert_eq!(&rx.recv_timeout(WAIT).unwrap()[..], b"plain");
    a.close();
    assert_eq!(
        b.connections_all()[0].wait_closed(WAIT).unwrap(),
        "Closed from other end."
    );
}

#[test]
fn blocking_call_inside_current_thread_runtime_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = ctx();
        let err = a.bind("127.0.0.1:0").unwrap_err();
        assert!(err.to_string().contains("bind_async"), "{err}");
        assert!(a.bind_async("127.0.0.1:0").await.is_ok());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_connection_context_message_closes_the_senders_link() {
    let (a, b) = (ctx(), ctx());
    let (host, client) = join(&a, &b).await;
    // b asks a (directed) to close the connection to b.
    b.send_async(Package::new(yoton_core::package::SLOT_CONTEXT, "CLOSE_CONNECTION").to(a.id(), 0))
        .await
        .unwrap();
    assert_eq!(
        host.wait_closed_async(WAIT).await.unwrap(),
        "Closed from other end."
    );
    // a closed without a goodbye; b sees the end of the stream.
    assert_eq!(
        client.wait_closed_async(WAIT).await.unwrap(),
        "Other end dropped the connection."
    );
}

#[test]
fn public_handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<yoton_core::Context>();
    check::<yoton_core::Connection>();
    fn send_sync<T: Send + Sync>() {}
    send_sync::<yoton_core::Listener>();
}

#[test]
fn publichost_resolves_or_names_the_host() {
    match yoton_core::Address::parse("publichost:80") {
        Ok(a) => {
            assert!(a.host.parse::<std::net::Ipv4Addr>().is_ok(), "{a:?}");
            assert_eq!(a.port, 80);
            // The same as publichost0.
            assert_eq!(yoton_core::Address::parse("publichost0:80").unwrap(), a);
        }
        Err(e) => assert!(e.to_string().contains("host"), "{e}"),
    }
}

/// A receiver that answers from `after_deposit`: it runs once the context's lock is
/// released, so it may send (here: a pong for every ping), once per read.
#[test]
fn a_receiver_may_send_from_after_deposit() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use yoton_core::{Context, SlotReceiver};

    struct Echo {
        ctx: Context,
        got: std::sync::Mutex<Vec<Package>>,
        deposits: AtomicUsize,
        afters: AtomicUsize,
    }
    impl SlotReceiver for Echo {
        fn deposit(&self, p: Package, _: u64) {
            self.deposits.fetch_add(1, Ordering::SeqCst);
            self.got.lock().unwrap().push(p);
        }
        fn wants_after_deposit(&self) -> bool {
            true
        }
        fn after_deposit(&self) {
            self.afters.fetch_add(1, Ordering::SeqCst);
            let got = std::mem::take(&mut *self.got.lock().unwrap());
            for p in got {
                let pong = Package::new(slot_hash("pong"), p.payload).to(p.source_id, 0);
                self.ctx.send_now(pong).unwrap();
            }
        }
    }

    let (a, b) = (ctx(), ctx());
    let host = a.bind("127.0.0.1:0").unwrap();
    let echo = Arc::new(Echo {
        ctx: b.clone(),
        got: std::sync::Mutex::new(Vec::new()),
        deposits: AtomicUsize::new(0),
        afters: AtomicUsize::new(0),
    });
    let _g = b
        .register_receiver(slot_hash("ping"), "ping", echo.clone())
        .unwrap();
    let (_p, rx) = payloads_of(&a, slot_hash("pong"), "pong");
    b.connect(&format!("127.0.0.1:{}", host.local().port), WAIT)
        .unwrap();
    host.wait_connected(WAIT).unwrap();
    for i in 0..100 {
        a.send(text(slot_hash("ping"), &format!("{i}"))).unwrap();
    }
    for i in 0..100 {
        let got = rx.recv_timeout(WAIT).expect("no pong");
        assert_eq!(&got[..], format!("{i}").as_bytes());
    }
    let (deposits, afters) = (
        echo.deposits.load(Ordering::SeqCst),
        echo.afters.load(Ordering::SeqCst),
    );
    assert_eq!(deposits, 100);
    assert!((1..=100).contains(&afters), "{afters} calls");
    b.close();
}

/// Threads of this process named after the context (its own runtime's workers).
fn threads_of(ctx: &yoton_core::Context) -> usize {
    let name = format!("yoton-{:08x}", ctx.id() as u32);
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// A context built outside a runtime starts `io_threads` workers (default one), and
/// works over TCP with one as with several.
#[test]
fn io_threads_sets_the_workers_of_the_own_runtime() {
    let one = ctx();
    let three = yoton_core::Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .io_threads(3)
        .build()
        .unwrap();
    assert_eq!(
        one.config().io_threads,
        yoton_core::context::DEFAULT_IO_THREADS
    );
    // Workers name themselves as they start: poll a little.
    let t0 = std::time::Instant::now();
    let counts = || (threads_of(&one), threads_of(&three));
    while counts() != (yoton_core::context::DEFAULT_IO_THREADS, 3) && t0.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(counts(), (yoton_core::context::DEFAULT_IO_THREADS, 3));
    let slot = slot_hash("threads.txt.pub-sub");
    let (_g, rx) = payloads_of(&three, slot, "threads");
    let host = one.bind("127.0.0.1:0").unwrap();
    three
        .connect(&format!("127.0.0.1:{}", host.local().port), WAIT)
        .unwrap();
    host.wait_connected(WAIT).unwrap();
    one.send(text(slot, "over")).unwrap();
    assert_eq!(&rx.recv_timeout(WAIT).unwrap()[..], b"over");
}
