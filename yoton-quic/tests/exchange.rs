//! Two contexts over real QUIC on 127.0.0.1: exchange both ways (up to 64 MiB),
//! endpoints, close reasons, listening for many peers, limits.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use yoton_core::{slot_hash, ConnectionEvent, Context, Package, Status};
use yoton_quic::QuicTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contexts_exchange_both_ways_up_to_64_mib() {
    let (a, b) = pinned_contexts();
    let slot = slot_hash("both.bin.pub-sub");
    let (mut ia, mut ib) = (inbox(&a, slot), inbox(&b, slot));
    let (host, client) = join(&a, &b).await;
    assert_eq!(host.status(), Status::Hosting);
    assert_eq!(client.status(), Status::Connected);
    assert_eq!((host.peer_id(), client.peer_id()), (b.id(), a.id()));
    assert_eq!(host.peer_pid(), u64::from(std::process::id()));
    assert_eq!(client.peer().port, host.local().port);
    assert_eq!(host.peer().port, client.local().port);
    assert_eq!(client.local().host, "127.0.0.1");
    assert_eq!(host.local().host, "127.0.0.1");
    for i in 0..200 {
        a.send_async(Package::new(slot, format!("a{i}")))
            .await
            .unwrap();
        b.send_async(Package::new(slot, format!("b{i}")))
            .await
            .unwrap();
    }
    for i in 0..200 {
        assert_eq!(ib.recv_text().await, format!("a{i}"));
        assert_eq!(ia.recv_text().await, format!("b{i}"));
    }
    // Sizes around the threshold and large ones, both ways at once.
    for len in [65_535usize, 65_536, 65_537, 1 << 20, 5_000_000] {
        let pa = pattern(len, 1);
        let pb = pattern(len, 2);
        a.send_async(Package::new(slot, pa.clone())).await.unwrap();
        b.send_async(Package::new(slot, pb.clone())).await.unwrap();
        assert!(ib.recv().await.payload == pa, "a->b {len} bytes differ");
        assert!(ia.recv().await.payload == pb, "b->a {len} bytes differ");
    }
    // 64 MiB each way, at the same time.
    let big_a = Bytes::from(pattern(64 << 20, 3));
    let big_b = Bytes::from(pattern(64 << 20, 4));
    let t0 = Instant::now();
    a.send_async(Package::new(slot, big_a.clone()))
        .await
        .unwrap();
    b.send_async(Package::new(slot, big_b.clone()))
        .await
        .unwrap();
    let got_b = ib.recv_within(Duration::from_secs(120)).await;
    let got_a = ia.recv_within(Duration::from_secs(120)).await;
    eprintln!("2 x 64 MiB crossed in {:?}", t0.elapsed());
    assert!(got_b.payload == big_a, "64 MiB a->b differ");
    assert!(got_a.payload == big_b, "64 MiB b->a differ");
    // Small packages still flow afterwards.
    a.send_async(Package::new(slot, "after")).await.unwrap();
    assert_eq!(ib.recv_text().await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reasons_reach_the_other_side() {
    let (a, b) = pinned_contexts();
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

    // The host closes this time.
    let (host, client) = join(&a, &b).await;
    host.close_async("").await;
    assert_eq!(host.close_reason().as_deref(), Some("Closed on command."));
    assert_eq!(
        client.wait_closed_async(WAIT).await.unwrap(),
        "Closed from other end."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_peer_context_is_reported_as_dropped() {
    let (server, client) = pinned_pair();
    let a = ctx_with(server);
    let host = a.bind_async("quic://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    {
        let b = ctx_with(client);
        b.connect_async(&format!("quic://127.0.0.1:{port}"), WAIT)
            .await
            .unwrap();
        host.wait_connected_async(WAIT).await.unwrap();
        drop(b);
    }
    let t0 = Instant::now();
    assert_eq!(
        host.wait_closed_async(WAIT).await.unwrap(),
        "Other end dropped the connection."
    );
    // Noticed at once (QUIC close frame), not after the idle time-out.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_in_another_runtime_dropped_is_reported_as_dropped() {
    // The peer owns its runtime (blocking API), as a separate process would.
    let (server, client) = pinned_pair();
    let a = ctx_with(server);
    let host = a.bind_async("quic://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    tokio::task::spawn_blocking(move || {
        let b = ctx_with(client);
        b.connect(&format!("quic://127.0.0.1:{port}"), WAIT)
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(b);
    })
    .await
    .unwrap();
    let reason = host
        .wait_closed_async(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        reason.starts_with("Other end dropped the connection."),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_accepts_many_peers_and_routes_between_them() {
    let (server, client) = pinned_pair();
    let hub = ctx_with(server);
    let listener = hub.listen_async("quic://127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    let slot = slot_hash("many.txt.pub-sub");
    let mut peers = vec![];
    let mut inboxes = vec![];
    for _ in 0..4 {
        let c = ctx_with(client.clone());
        inboxes.push(inbox(&c, slot));
        c.connect_async(&format!("quic://127.0.0.1:{port}"), WAIT)
            .await
            .unwrap();
        listener.accept_async(WAIT).await.unwrap();
        peers.push(c);
    }
    assert_eq!(hub.connection_count(), 4);
    // One peer's broadcast reaches every other peer through the hub.
    peers[0]
        .send_async(Package::new(slot, "hello all"))
        .await
        .unwrap();
    for ib in inboxes.iter_mut().skip(1) {
        assert_eq!(ib.recv_text().await, "hello all");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_above_the_receivers_maximum_closes_the_connection() {
    let server = QuicTransport::builder()
        .self_signed_for(["127.0.0.1"])
        .max_message_size(1 << 20)
        .build()
        .unwrap();
    let client = QuicTransport::builder()
        .pin_certificate(server.fingerprint().unwrap())
        .build()
        .unwrap();
    let (a, b) = (ctx_with(server), ctx_with(client));
    let (host, _client) = join(&a, &b).await;
    let slot = slot_hash("big.bin.pub-sub");
    let _ia = inbox(&a, slot);
    b.send_async(Package::new(slot, vec![0u8; (1 << 20) + 1]))
        .await
        .unwrap();
    let reason = host.wait_closed_async(WAIT).await.unwrap();
    assert!(reason.starts_with("Package too large"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_without_a_certificate_says_how_to_get_one() {
    let ctx = ctx_with(QuicTransport::default());
    let err = ctx
        .bind_async("quic://127.0.0.1:0")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a server certificate"), "{err}");
    assert!(err.contains("self_signed_for"), "{err}");
}

#[test]
fn blocking_api_from_a_plain_thread() {
    let (server, client) = pinned_pair();
    let a = Context::builder().transport(server).build().unwrap();
    let b = Context::builder().transport(client).build().unwrap();
    let host = a.bind("quic://127.0.0.1:0").unwrap();
    let conn = b
        .connect(&format!("quic://127.0.0.1:{}", host.local().port), WAIT)
        .unwrap();
    host.wait_connected(WAIT).unwrap();
    conn.close("bye");
    assert_eq!(host.wait_closed(WAIT).unwrap(), "Closed from other end.");
}
