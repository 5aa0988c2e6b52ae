//! WebSocket specifics: a plain WebSocket client (not yoton) speaks the documented
//! framing, paths and HTTP answers, text/ping frames, size limits, and TLS refusals.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use yoton_channels::{PubChannel, SubChannel, Text};
use yoton_core::{channel_slot, Context};
use yoton_ws::WsTransport;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next binary message that is not a heartbeat (slot 1, empty).
async fn next_package(ws: &mut Client) -> Bytes {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time")
            .expect("stream ended")
            .expect("websocket error");
        match m {
            Message::Binary(b) => {
                let f = fields(&b);
                if f[1] == 1 && f[3] == 0 && f[6] == 0 {
                    continue; // heartbeat
                }
                return b;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A plain WebSocket client, upgraded at `/yoton` (no Yoton handshake yet).
async fn upgraded(port: u16) -> Client {
    tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/yoton"))
        .await
        .unwrap()
        .0
}

/// Connect a plain WebSocket client and do the Yoton handshake by hand.
async fn hand_made_peer(port: u16, id: u64) -> (Client, String) {
    let mut ws = upgraded(port).await;
    ws.send(Message::binary(
        format!("YOTON!{id:016x}.4242\r\n").into_bytes(),
    ))
    .await
    .unwrap();
    let answer = match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("no handshake answer: {other:?}"),
    };
    (ws, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_websocket_client_speaks_the_documented_framing() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    let publisher = PubChannel::<Text>::new(&ctx, "news").unwrap();
    let sub = SubChannel::<Text>::new(&ctx, "up").unwrap();

    let (mut ws, answer) = hand_made_peer(port, 0xab).await;
    assert_eq!(
        answer,
        format!("YOTON!{:016x}.{}\r\n", ctx.id(), std::process::id())
    );
    host.wait_connected_async(WAIT).await.unwrap();
    assert_eq!(host.peer_id(), 0xab);
    assert_eq!(host.peer_pid(), 4242);

    // A package published by the context: header + payload in one binary message.
    publisher.send_async("hello browser".into()).await.unwrap();
    let msg = next_package(&mut ws).await;
    assert_eq!(&msg[..8], b"YOTON   ");
    let f = fields(&msg);
    assert_eq!(f[1], channel_slot("news", "txt", "pub-sub"));
    assert_eq!(f[2], ctx.id());
    assert_eq!(f[6], 13);
    assert_eq!(msg.len(), 56 + 13);
    assert_eq!(&msg[56..], b"hello browser");

    // And the other way: a package made by hand reaches a subscriber.
    let payload = b"hello yoton";
    let mut up = header(
        channel_slot("up", "txt", "pub-sub"),
        0xab,
        1,
        payload.len() as u64,
    );
    up.extend_from_slice(payload);
    ws.send(Message::binary(up)).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.recv_async())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "hello yoton");

    // A ping is answered with a pong.
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let pong = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Pong(p))) => break p,
            Some(Ok(Message::Binary(_))) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");

    // The goodbye (slot 1, source_seq 1, empty) closes cleanly.
    ws.send(Message::binary(header(1, 0, 1, 0))).await.unwrap();
    assert_eq!(
        host.wait_closed_async(WAIT).await.unwrap(),
        "Closed from other end."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yoton_close_sends_goodbye_and_a_close_frame() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let (mut ws, _) = hand_made_peer(host.local().port, 0xcd).await;
    host.wait_connected_async(WAIT).await.unwrap();
    let closing = tokio::spawn({
        let host = host.clone();
        async move { host.close_async("bye").await }
    });
    let goodbye = next_package(&mut ws).await;
    assert_eq!(fields(&goodbye), fields(&header(1, 0, 1, 0)));
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Binary(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1000);
    tokio::time::timeout(WAIT, closing).await.unwrap().unwrap();
    assert_eq!(host.close_reason().as_deref(), Some("bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_yoton_subprotocol_is_selected_when_offered() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let mut req = format!("ws://127.0.0.1:{}/yoton", host.local().port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "yoton".parse().unwrap());
    let (_ws, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "yoton"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_gets_404_and_bind_keeps_waiting() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/elsewhere")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status().as_u16(), 404);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("/yoton"), "{body}");
        }
        other => panic!("expected HTTP 404, got {other:?}"),
    }
    // A yoton context asking for the wrong path is told so, at once: asking again
    // would get the same answer (the time-out of two minutes is not waited out).
    let err = tokio::time::timeout(
        WAIT,
        ws_ctx().connect_async(&format!("ws://127.0.0.1:{port}/elsewhere"), PATIENT),
    )
    .await
    .expect("a 404 was retried until the time-out")
    .unwrap_err();
    assert!(
        matches!(err, yoton_core::Error::ConnectFailed { .. }),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("404") && err.contains("/elsewhere"), "{err}");
    // A plain HTTP request (a browser) gets 426 and an explanation.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /yoton HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required"),
        "{answer}"
    );
    assert!(answer.contains("Yoton endpoint"), "{answer}");
    assert!(host.is_waiting());
    // A real peer still gets in.
    let peer = ws_ctx();
    peer.connect_async(&host.name(), WAIT).await.unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    assert_eq!(host.peer_id(), peer.id());
}

/// Silent clients (a TCP connection and no upgrade request) take at most
/// `MAX_TRANSPORT_HANDSHAKES` upgrade tasks: the sockets beyond are closed at once
/// instead of piling up until their time-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_beyond_the_handshake_limit_are_closed_at_once() {
    use yoton_core::transport::MAX_TRANSPORT_HANDSHAKES;
    let ctx = ws_ctx();
    let listener = ctx.listen_async("ws://127.0.0.1:0").await.unwrap();
    let port = listener.local().port;
    let extra = 10;
    let mut silent = Vec::new();
    for _ in 0..MAX_TRANSPORT_HANDSHAKES + extra {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // The last ones were refused: they see the end of the stream well before the
    // handshake time-out.
    let mut closed = 0;
    for s in silent.iter_mut().rev().take(extra) {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, extra, "sockets beyond the limit were kept open");
    // The first ones are still waiting (inside the limit).
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), silent[0].read(&mut b))
            .await
            .is_err(),
        "a socket inside the limit was closed"
    );
}

/// A client that upgrades and then streams one huge message instead of the handshake
/// line is cut off after `PRE_HANDSHAKE_BUDGET` bytes, long before any time-out
/// (before, the server buffered up to the maximum message size, 1 GiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_message_before_the_handshake_is_cut_off_early() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    let mut ws = upgraded(port).await;
    let t0 = std::time::Instant::now();
    // By hand: a masked binary frame announcing 512 MiB, then its payload.
    let raw = ws.get_mut();
    let mut frame = vec![0x82u8, 0x80 | 127];
    frame.extend_from_slice(&(512u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    raw.write_all(&frame).await.unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0usize;
    let writing = async {
        while sent < 64 << 20 {
            if raw.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), writing).await;
    let mut b = [0u8; 1024];
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match raw.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the server kept the connection open");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "cut off only after {took:?} ({sent} bytes sent)"
    );
    assert!(
        sent < 32 << 20,
        "the server read {sent} bytes before the handshake"
    );
    assert!(host.is_waiting());
    let peer = ws_ctx();
    peer.connect_async(&host.name(), WAIT).await.unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_paths_from_the_address_and_the_builder() {
    let a = ws_ctx();
    let host = a.bind_async("ws://127.0.0.1:0/bus").await.unwrap();
    assert!(host.name().ends_with("/bus"), "{}", host.name());
    let b = ws_ctx();
    b.connect_async(&host.name(), WAIT).await.unwrap();
    host.wait_connected_async(WAIT).await.unwrap();

    let t = WsTransport::builder().path("/custom").build().unwrap();
    let (c, d) = (ctx_with(&t), ctx_with(&t));
    let host = c.bind_async("ws://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    // The default path is not served by this one.
    let err = ws_ctx()
        .connect_async(
            &format!("ws://127.0.0.1:{port}"),
            Duration::from_millis(1000),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("404"), "{err}");
    d.connect_async(&format!("ws://127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    assert!(WsTransport::builder().path("nope").build().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_closes_with_a_clear_reason() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let (mut ws, _) = hand_made_peer(host.local().port, 0xef).await;
    host.wait_connected_async(WAIT).await.unwrap();
    ws.send(Message::text("hello?")).await.unwrap();
    let reason = host.wait_closed_async(WAIT).await.unwrap();
    assert!(
        reason.contains("text message") && reason.contains("binary"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_is_not_yoton_is_refused() {
    let ctx = ws_ctx();
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    let mut ws = upgraded(port).await;
    ws.send(Message::binary(b"HELLO?\r\n".to_vec()))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], b"ERROR: this is Yoton.\r\n"),
        other => panic!("expected the error answer, got {other:?}"),
    }
    assert!(host.is_waiting());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_above_the_transport_limit_are_refused_early() {
    let t = WsTransport::builder()
        .max_message_size(1024)
        .build()
        .unwrap();
    let ctx = ctx_with(&t);
    let host = ctx.bind_async("ws://127.0.0.1:0").await.unwrap();
    let (mut ws, _) = hand_made_peer(host.local().port, 0x51).await;
    host.wait_connected_async(WAIT).await.unwrap();
    let mut big = header(9, 0x51, 1, 4000);
    big.resize(56 + 4000, 7);
    let _ = ws.send(Message::binary(big)).await;
    let reason = host.wait_closed_async(WAIT).await.unwrap();
    assert!(
        reason.starts_with("Package too large") && reason.contains("1024"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_without_tls_settings_says_how_to_configure() {
    let ctx = ws_ctx();
    let err = ctx
        .bind_async("wss://127.0.0.1:0")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs a certificate") && err.contains("server_cert_pem_files"),
        "{err}"
    );
    let err = tokio::time::timeout(WAIT, ctx.connect_async("wss://127.0.0.1:1", PATIENT))
        .await
        .expect("a missing setting was retried until the time-out")
        .unwrap_err();
    assert!(
        matches!(err, yoton_core::Error::ConnectFailed { .. }),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("no TLS client settings") && err.contains("WsTransport::builder()"),
        "{err}"
    );
}

/// A wss host with `served`, and a client with the `client` transport; returns the
/// connect error (or None when it connected). A refused certificate fails at once
/// (the connect's time-out is two minutes, the test's 10 s). With `recheck`, a refused
/// client must not disturb the host: a peer that trusts `served` still gets in.
async fn wss_attempt(
    served: &TestCert,
    client: &WsTransport,
    addr_host: &str,
    recheck: bool,
) -> Option<String> {
    let host_ctx = ctx_with(&tls_transport(served, served));
    let host = host_ctx.bind_async("wss://127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    let peer = ctx_with(client);
    let result = tokio::time::timeout(
        WAIT,
        peer.connect_async(&format!("wss://{addr_host}:{port}"), PATIENT),
    )
    .await
    .expect("a refused certificate was retried until the time-out");
    match result {
        Ok(_) => {
            host.wait_connected_async(WAIT).await.unwrap();
            None
        }
        Err(e) => {
            assert!(
                matches!(e, yoton_core::Error::ConnectFailed { .. }),
                "{e:?}"
            );
            assert!(host.is_waiting());
            if recheck {
                let good = ctx_with(&tls_transport(served, served));
                good.connect_async(&format!("wss://127.0.0.1:{port}"), WAIT)
                    .await
                    .unwrap();
                host.wait_connected_async(WAIT).await.unwrap();
            }
            Some(e.to_string())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_with_a_clear_reason() {
    let served = cert_for(&["127.0.0.1", "localhost"]);
    let other = cert_for(&["127.0.0.1", "localhost"]);
    let err = wss_attempt(&served, &tls_transport(&other, &other), "127.0.0.1", true)
        .await
        .expect("an untrusted certificate was accepted");
    assert!(err.contains("TLS handshake with 127.0.0.1:"), "{err}");
    // Same subject name, other key: rustls finds the root by name, then the signature
    // fails; with an unknown name it would say UnknownIssuer. Both are "untrusted".
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("does not chain to a trusted root"), "{err}");
    // The public roots do not vouch for a self-signed certificate either.
    let public = WsTransport::builder().build().unwrap();
    let err = wss_attempt(&served, &public, "127.0.0.1", true)
        .await
        .expect("accepted with the public roots");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let served = cert_for(&["yoton.invalid"]);
    let err = wss_attempt(
        &served,
        &tls_transport(&served, &served),
        "127.0.0.1",
        false,
    )
    .await
    .expect("a certificate for another name was accepted");
    assert!(err.contains("not valid for name \"127.0.0.1\""), "{err}");
    assert!(err.contains("yoton.invalid"), "{err}");
    assert!(err.contains("another host name"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_resolves_and_verifies_and_danger_mode_accepts_anything() {
    let served = cert_for(&["127.0.0.1", "localhost"]);
    assert_eq!(
        wss_attempt(&served, &tls_transport(&served, &served), "localhost", true).await,
        None
    );
    let danger = WsTransport::builder()
        .danger_accept_invalid_certs()
        .build()
        .unwrap();
    assert_eq!(
        wss_attempt(&cert_for(&["yoton.invalid"]), &danger, "127.0.0.1", false).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_pem_files_and_bad_files_are_reported() {
    let dir = std::env::temp_dir().join(format!("yoton-ws-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = cert_for(&["127.0.0.1"]);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &c.cert_pem).unwrap();
    std::fs::write(&key, &c.key_pem).unwrap();
    let t = WsTransport::builder()
        .server_cert_pem_files(&cert, &key)
        .webpki_roots(false)
        .add_root_certificates_pem_file(&cert)
        .build()
        .unwrap();
    let (a, b) = (ctx_with(&t), ctx_with(&t));
    let host = a.bind_async("wss://127.0.0.1:0").await.unwrap();
    b.connect_async(&host.name(), WAIT).await.unwrap();
    host.wait_connected_async(WAIT).await.unwrap();

    let err = WsTransport::builder()
        .server_cert_pem_files(dir.join("missing.pem"), &key)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let err = WsTransport::builder()
        .server_cert_pem_files(&key, &key)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("BEGIN CERTIFICATE"), "{err}");
    let other = cert_for(&["127.0.0.1"]);
    let err = WsTransport::builder()
        .server_cert_pem(c.cert_pem.clone(), other.key_pem.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS configuration refused"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_makes_ws_the_default() {
    yoton_ws::install();
    let ctx = Context::new().unwrap();
    assert!(ctx.registry().get("ws").is_some());
}

/// Pinning as for tls:// and quic://: a client that pins a server's fingerprint
/// accepts exactly that certificate, with no CA and no name check, and refuses any
/// other at once, saying it is not the pinned one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_fingerprint_lets_exactly_that_server_in() {
    let served = cert_for(&["yoton.invalid"]);
    let pin = tls_transport(&served, &served).fingerprint().unwrap();
    assert_eq!(pin, yoton_ws::Fingerprint::of(&served.der));
    let client = WsTransport::builder()
        .webpki_roots(false)
        .pin_certificate(pin)
        .build()
        .unwrap();
    // For another name than the address's, and trusted by no CA: the pin decides.
    assert_eq!(
        wss_attempt(&served, &client, "127.0.0.1", false).await,
        None
    );
    let other = cert_for(&["127.0.0.1"]);
    let err = wss_attempt(&other, &client, "127.0.0.1", true)
        .await
        .expect("a certificate that is not the pinned one was accepted");
    assert!(err.contains("not the pinned one"), "{err}");
}

/// A client that trusts nothing is refused when it is built; one CA given as DER
/// (`trust_ca_der`, the name tls:// and quic:// use) is enough to reach a server
/// whose certificate it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_nothing_is_refused_at_build() {
    let err = WsTransport::builder()
        .webpki_roots(false)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("no trusted root certificate"), "{err}");
    let c = cert_for(&["127.0.0.1"]);
    let t = WsTransport::builder()
        .webpki_roots(false)
        .trust_ca_der(&c.der)
        .build()
        .unwrap();
    assert!(
        t.fingerprint().is_none(),
        "a client has no certificate of its own"
    );
    assert_eq!(wss_attempt(&c, &t, "127.0.0.1", true).await, None);
}
