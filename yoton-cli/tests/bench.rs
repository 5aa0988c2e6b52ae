//! `yoton bench --quick`: the benchmark runs its processes end to end and prints a
//! table with the floor next to yoton (bounded time; the numbers are not checked).
#![cfg(feature = "tcp")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound of the run (the quick counts take a few seconds, also in debug).
const LIMIT: Duration = Duration::from_secs(60);

fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

#[test]
fn quick_bench_prints_a_table_with_the_floor() {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_yoton"))
        .args([
            "bench",
            "--quick",
            "--workload",
            "W1,W3",
            "--transport",
            "tcp",
            "--runs",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("yoton starts");
    let out = read_all(child.stdout.take().expect("stdout"));
    let err = read_all(child.stderr.take().expect("stderr"));
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "yoton bench --quick took more than {LIMIT:?}; stderr so far:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{out}\nstderr:\n{err}"
    );
    for needle in [
        "W1",
        "W3",
        "floor",
        "tcp",
        "ratio",
        "msg/s",
        "round trip p50",
        "publisher alone",
        "subscriber alone",
    ] {
        assert!(out.contains(needle), "no {needle:?} in the table:\n{out}");
    }
    // Every cell measured (the raw ends of the W1 halves speak Yoton correctly).
    assert!(!out.contains("failed"), "a run failed:\n{out}\n{err}");
    // A progress line per step on stderr.
    assert!(err.contains("[1/"), "no progress on stderr:\n{err}");
}

#[test]
fn unknown_workload_or_transport_is_a_usage_error() {
    for args in [
        &["bench", "--workload", "W9"][..],
        &["bench", "--transport", "carrier-pigeon"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_yoton"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("yoton runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
