//! The child side of the bench protocol, shared by every role (yoton, floor):
//!
//! * stdout carries one JSON object per line: `{"ready": ...}` once the process is
//!   joined (with `addr`, and `pin` for QUIC, when it binds or listens), then
//!   `{"result": {...}}` when it measured something, or `{"error": "..."}`;
//! * stdin carries commands from the coordinator, one per line: `go` (start
//!   measuring), `done` (every sender finished: stop waiting for stragglers soon);
//!   end of input means quit.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Errors of a child role (any error type, shown as text).
pub type R<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

static GO: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);
static QUIT: AtomicBool = AtomicBool::new(false);

/// What a child process is asked to do: its role and the parameters of the
/// measurement (passed as one JSON argument of the hidden `bench-peer` command).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct Spec {
    /// The role, e.g. `pub`, `sub`, `floor-ping` (see `peer.rs` and `floor.rs`).
    pub role: String,
    /// Transport scheme for yoton roles (`tcp`, `ws`, `quic`).
    pub transport: String,
    /// Bind at 127.0.0.1, port 0, and wait for one peer (`peers` for `listen`).
    pub bind: bool,
    /// Listen at 127.0.0.1, port 0, and accept `peers` peers.
    pub listen: bool,
    /// Connect to this address (filled in by the coordinator).
    pub connect: Option<String>,
    /// QUIC: fingerprint of the server certificate at `connect`.
    pub pin: Option<String>,
    /// Messages, calls or round trips.
    pub count: u64,
    /// Payload size in bytes.
    pub size: usize,
    /// Peers to wait for (listen, fan-out) or connections to open (idle clients).
    pub peers: usize,
    /// Round trips before measuring.
    pub warmup: u64,
    /// Idle measurement window, in milliseconds.
    pub window_ms: u64,
}

/// A number from the environment variable `name` (the bench's experiment settings,
/// `YOTON_BENCH_*`); None when unset or not a number.
pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

/// Wall-clock time in nanoseconds since the Unix epoch: comparable between the
/// processes of one machine (the coordinator subtracts a sender's start from a
/// receiver's end).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Write one JSON line on stdout (flushed).
pub fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Say that this process is joined (and where it can be reached).
pub fn ready(addr: Option<String>, pin: Option<String>) {
    emit(&json!({"ready": true, "addr": addr, "pin": pin}));
}

/// Report the measurement.
pub fn result(v: Value) {
    emit(&json!({ "result": v }));
}

/// Read commands from stdin in the background.
pub fn watch_stdin() {
    std::thread::spawn(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("go") => GO.store(true, Ordering::SeqCst),
                Ok("done") => DONE.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        QUIT.store(true, Ordering::SeqCst);
    });
}

/// Whether the coordinator said `done` (or quit).
pub fn done() -> bool {
    DONE.load(Ordering::SeqCst) || quit()
}

/// Whether the coordinator closed our stdin.
pub fn quit() -> bool {
    QUIT.load(Ordering::SeqCst)
}

/// Wait for `go` (an error when the coordinator quits first).
pub fn wait_go() -> R<()> {
    while !GO.load(Ordering::SeqCst) {
        if quit() {
            return Err("quit before go".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Wait until the coordinator closes stdin (bounded: 10 minutes).
pub fn wait_quit() {
    let t0 = Instant::now();
    while !quit() && t0.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`wait_quit`], then exit at once (no goodbyes: every measurement is done).
pub fn wait_quit_and_exit() -> ! {
    wait_quit();
    std::process::exit(0)
}

/// A field of /proc/self/status in bytes (`VmHWM`, `VmRSS`).
pub fn proc_status_bytes(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

/// User plus system CPU time of this process (all threads), in clock ticks (USER_HZ,
/// 100 per second on Linux).
pub fn cpu_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14, stime field 15.
    let Some(after) = text.rfind(')').map(|i| &text[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Clock ticks per second of [`cpu_ticks`].
pub const TICKS_PER_SEC: f64 = 100.0;

/// Percentiles (p50, p99, mean) of round-trip times in microseconds.
pub fn latency_stats(mut rtts_ns: Vec<u64>) -> Value {
    if rtts_ns.is_empty() {
        return json!({"n": 0});
    }
    rtts_ns.sort_unstable();
    let n = rtts_ns.len();
    let at = |q: f64| rtts_ns[((n as f64 * q) as usize).min(n - 1)] as f64 / 1e3;
    let mean = rtts_ns.iter().sum::<u64>() as f64 / n as f64 / 1e3;
    json!({"n": n, "p50_us": at(0.50), "p99_us": at(0.99), "mean_us": mean, "max_us": at(1.0)})
}

/// Run a child role: watch stdin, run, report an error as `{"error": ...}` (exit 1).
pub fn main(spec_json: &str) -> std::process::ExitCode {
    watch_stdin();
    let spec: Spec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => {
            emit(&json!({"error": format!("bad spec: {e}")}));
            return std::process::ExitCode::from(2);
        }
    };
    let outcome = if spec.role.starts_with("floor-") {
        super::floor::run(&spec)
    } else {
        super::peer::run(&spec)
    };
    match outcome {
        Ok(()) => wait_quit_and_exit(),
        Err(e) => {
            emit(&json!({"error": format!("{}: {e}", spec.role)}));
            std::process::ExitCode::from(1)
        }
    }
}
