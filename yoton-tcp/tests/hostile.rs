//! Bad input closes only the connection concerned, with a reason that says why.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yoton_core::{slot_hash, Context};

/// A hub that listens, with one well-behaved peer connected; returns the hub, its port,
/// and a check that the good peer still gets traffic.
async fn hub_with_good_peer(max: u64) -> (Context, u16, Context, yoton_core::Listener) {
    let hub = Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .max_message_size(max)
        .build()
        .unwrap();
    let listener = hub.listen_async("127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    let good = ctx();
    good.connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    listener.accept_async(WAIT).await.unwrap();
    (hub, port, good, listener)
}

async fn good_peer_still_served(hub: &Context, good: &Context) {
    let slot = slot_hash("still.txt.pub-sub");
    let mut inbox = inbox(good, slot);
    hub.send_async(text(slot, "still here")).await.unwrap();
    assert_eq!(inbox.recv_text().await, "still here");
}

async fn bad_peer_closes_with(bytes: Vec<u8>, max: u64, reason_start: &str) {
    let (hub, port, good, listener) = hub_with_good_peer(max).await;
    let (mut sock, answer) = raw_peer(port, 0xbad).await;
    assert!(answer.starts_with("YOTON!"));
    let bad = listener.accept_async(WAIT).await.unwrap();
    assert_eq!(bad.peer_id(), 0xbad);
    sock.write_all(&bytes).await.unwrap();
    let reason = bad.wait_closed_async(WAIT).await.unwrap();
    assert!(reason.starts_with(reason_start), "reason: {reason}");
    // The hub dropped that socket: we read EOF.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, sock.read_to_end(&mut rest)).await;
    good_peer_still_served(&hub, &good).await;
    assert_eq!(hub.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_control_bytes() {
    let mut h = header(9, 5, 1, 3);
    h[..5].copy_from_slice(b"HTTP/");
    h.extend_from_slice(b"abc");
    bad_peer_closes_with(h, 1 << 20, "Lost track of the stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_a_valid_handshake() {
    let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8).collect();
    bad_peer_closes_with(garbage, 1 << 20, "Lost track of the stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_above_the_maximum() {
    bad_peer_closes_with(header(9, 5, 1, (1 << 20) + 1), 1 << 20, "Package too large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_package_then_eof() {
    let (hub, port, good, listener) = hub_with_good_peer(1 << 20).await;
    let (mut sock, _) = raw_peer(port, 0xbad).await;
    let bad = listener.accept_async(WAIT).await.unwrap();
    let mut bytes = header(9, 5, 1, 1000);
    bytes.extend_from_slice(&[1u8; 10]);
    sock.write_all(&bytes).await.unwrap();
    drop(sock);
    let reason = bad.wait_closed_async(WAIT).await.unwrap();
    // Our heartbeats may sit unread in the dropped socket, in which case the kernel
    // answers with a reset instead of a clean end of stream.
    assert!(
        reason == "Other end dropped the connection."
            || reason.starts_with("Socket error. Connection reset by peer"),
        "{reason}"
    );
    good_peer_still_served(&hub, &good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_gets_the_error_answer_and_bind_keeps_waiting() {
    let host_ctx = ctx();
    let host = host_ctx.bind_async("127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "ERROR: this is Yoton.\r\n");
    assert!(host.is_waiting());
    // A real peer still gets in.
    let peer = ctx();
    peer.connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    assert_eq!(host.peer_id(), peer.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_non_yoton_server_fails_with_its_answer() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let err = ctx()
        .connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Handshake failed") && err.contains("HTTP/1.1 400"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_cannot_connect_to_itself() {
    let a = ctx();
    let host = a.bind_async("127.0.0.1:0").await.unwrap();
    let err = a
        .connect_async(&format!("127.0.0.1:{}", host.local().port), WAIT)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to self"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_line_without_crlf_is_refused() {
    let host_ctx = ctx();
    let host = host_ctx.bind_async("127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Write until the host gives up on us (it must not buffer a megabyte).
    let chunk = vec![b'Y'; 64 * 1024];
    let mut sent = 0;
    while sent < (1 << 20) {
        match tokio::time::timeout(Duration::from_secs(3), s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("ERROR: this is Yoton."),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(host.is_waiting());
}

/// An empty package cannot be sent: as the very first package (sequence 1) it would
/// reach the peer as a goodbye and close the connection. Every send path refuses it,
/// name the slot, and the connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_payload_is_refused_and_the_connection_stays_up() {
    let (a, b) = (ctx(), ctx());
    let (ca, _cb) = join(&a, &b).await;
    let slot = yoton_core::slot_hash("empty.txt.pub-sub");
    let mut got = inbox(&b, slot);
    let e = a
        .send_async(yoton_core::Package::new(slot, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(e, yoton_core::Error::EmptyPayload { slot: s } if s == slot),
        "{e}"
    );
    assert!(e.to_string().contains(&format!("{slot:#x}")), "{e}");
    let e = a.send_slice_async(slot, b"").await.unwrap_err();
    assert!(matches!(e, yoton_core::Error::EmptyPayload { .. }), "{e}");
    // A list with an empty payload is refused whole: not even the one before it goes.
    let e = a
        .send_slices_async(slot, &[&b"before"[..], b""])
        .await
        .unwrap_err();
    assert!(matches!(e, yoton_core::Error::EmptyPayload { .. }), "{e}");
    // Had an empty package gone out, it would have reached the peer before this one
    // (as a goodbye or heartbeat): this one arriving over a connection that is still
    // up shows nothing was sent.
    a.send_async(text(slot, "still here")).await.unwrap();
    assert_eq!(got.recv_text().await, "still here");
    assert!(ca.is_connected());
}
