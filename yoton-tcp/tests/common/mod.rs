//! Helpers shared by the TCP integration tests. Every wait is bounded.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use yoton_core::{Connection, Context, Package, SlotGuard};
/// Measurements of this process (descriptors, threads, VmRSS), for the leak tests.
#[allow(unused_imports)] // not every test binary measures
pub use yoton_testkit::proc::{fds, rss_kib, sample, threads};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn ctx() -> Context {
    Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .build()
        .unwrap()
}

/// Packages deposited at one slot of a context.
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<(Package, u64)>,
    _guard: SlotGuard,
}

pub fn inbox(ctx: &Context, slot: u64) -> Inbox {
    let (tx, rx) = mpsc::unbounded_channel();
    let guard = ctx
        .register_receiver(
            slot,
            "test",
            Arc::new(move |p: Package, seq: u64| {
                let _ = tx.send((p, seq));
            }),
        )
        .unwrap();
    Inbox { rx, _guard: guard }
}

impl Inbox {
    pub async fn recv(&mut self) -> Package {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("timed out waiting for a package")
            .expect("inbox closed")
            .0
    }

    pub async fn recv_text(&mut self) -> String {
        String::from_utf8(self.recv().await.payload.to_vec()).unwrap()
    }

    /// Nothing more arrives within `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some((p, _))) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected package {p:?}");
        }
    }
}

/// `a` binds on a free port, `b` connects; both connections returned.
pub async fn join(a: &Context, b: &Context) -> (Connection, Connection) {
    let host = a.bind_async("127.0.0.1:0").await.unwrap();
    let port = host.local().port;
    assert_ne!(port, 0);
    let client = b
        .connect_async(&format!("127.0.0.1:{port}"), WAIT)
        .await
        .unwrap();
    host.wait_connected_async(WAIT).await.unwrap();
    (host, client)
}

pub fn text(slot: u64, s: &str) -> Package {
    Package::new(slot, Bytes::copy_from_slice(s.as_bytes()))
}

/// A TCP proxy that delays every chunk by `delay` (in both directions).
pub async fn delay_proxy(target_port: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = TcpStream::connect(("127.0.0.1", target_port))
                .await
                .unwrap();
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(pump(ir, ow, delay));
            tokio::spawn(pump(or, iw, delay));
        }
    });
    port
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tokio::time::sleep(delay).await;
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A hand-made peer: raw socket, Yoton handshake done by the test itself.
pub async fn raw_peer(port: u16, id: u64) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("YOTON!{id:016x}.1\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        answer.push(b[0]);
    }
    (s, String::from_utf8(answer).unwrap())
}

pub fn header(slot: u64, source_id: u64, seq: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [
        u64::from_le_bytes(*b"YOTON   "),
        slot,
        source_id,
        seq,
        0,
        0,
        len,
    ] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}
