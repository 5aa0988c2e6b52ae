//! Helpers for the channel tests: contexts over real TCP on 127.0.0.1.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use yoton_core::Context;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn ctx() -> Context {
    Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .build()
        .unwrap()
}

/// `host` binds on a free port and `client` connects (blocking style).
pub fn join(host: &Context, client: &Context) {
    let c = host.bind("127.0.0.1:0").unwrap();
    client
        .connect(&format!("127.0.0.1:{}", c.local().port), WAIT)
        .unwrap();
    c.wait_connected(WAIT).unwrap();
}

/// `host` binds on a free port and `client` connects (async style).
pub async fn join_async(host: &Context, client: &Context) {
    let c = host.bind_async("127.0.0.1:0").await.unwrap();
    client
        .connect_async(&format!("127.0.0.1:{}", c.local().port), WAIT)
        .await
        .unwrap();
    c.wait_connected_async(WAIT).await.unwrap();
}

/// Poll `f` until it holds or `WAIT` passes.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A current-thread runtime that counts the times its thread went to sleep (parked
/// with nothing to run, in `epoll_wait`).
pub fn counting_runtime() -> (tokio::runtime::Runtime, Arc<AtomicUsize>) {
    let parks = Arc::new(AtomicUsize::new(0));
    let p = parks.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            p.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    (rt, parks)
}
