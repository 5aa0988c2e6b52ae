//! `yoton bench`: throughput and latency of yoton between two (or more) processes
//! over loopback, for every compiled-in transport, next to a floor measured in the
//! same run: a minimal framed tokio TCP sender/receiver shipped with the bench
//! (8-byte length prefix, BufWriter, same payloads; ping-pong for latency).
//!
//! The coordinator (this module) starts the processes of each measurement with
//! [`std::env::current_exe`] and the hidden `bench-peer` command (`bench/child.rs`
//! describes the line protocol, `bench/peer.rs` the yoton roles, `bench/floor.rs` the
//! floor's), runs every measurement `--runs` times (interleaved: floor and each
//! transport in turn, run after run) and prints medians with their spread.

mod child;
mod floor;
mod peer;
mod procs;
mod python;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use self::child::Spec;
use self::procs::{Group, Program};
use crate::error::EXIT_USAGE;

pub use self::child::main as peer_main;

/// Options of `yoton bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Runs of each measurement; the table shows the median and the spread (min-max)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Small counts (seconds instead of minutes; for tests and CI)
    #[arg(long)]
    pub quick: bool,
    /// Workloads to run, comma-separated: W1 (pub/sub 64 B throughput), W2 (1 MiB
    /// throughput), W3 (latency), W4 (one 256 MiB message), W5 (fan-out, both ways,
    /// chain, idle connections) [default: all]
    #[arg(long, value_name = "W1,W2,...", value_delimiter = ',')]
    pub workload: Vec<String>,
    /// Transports to measure, comma-separated [default: every compiled-in one of tcp, ws, quic]
    #[arg(long, value_name = "tcp,ws,...", value_delimiter = ',')]
    pub transport: Vec<String>,
    /// Also measure the Python reference (pyzo's yoton) for W1, with the venv at
    /// target/pyvenv (see scripts/python-venv.sh)
    #[arg(long)]
    pub python: bool,
}

// ------------------------------------------------------------------ what is measured

/// Counts of a full or a quick run.
#[derive(Clone, Copy, Debug)]
struct Params {
    w1: u64,
    w2: u64,
    w3: u64,
    w4: usize,
    fanout: u64,
    duplex: u64,
    chain_pings: u64,
    chain_msgs: u64,
    idle: usize,
    idle_ms: u64,
    warmup: u64,
    python_w1: u64,
    timeout: Duration,
}

impl Params {
    fn new(quick: bool) -> Params {
        if quick {
            Params {
                w1: 20_000,
                w2: 50,
                w3: 300,
                w4: 8 << 20,
                fanout: 5_000,
                duplex: 10_000,
                chain_pings: 100,
                chain_msgs: 5_000,
                idle: 50,
                idle_ms: 1_000,
                warmup: 20,
                python_w1: 5_000,
                timeout: Duration::from_secs(60),
            }
        } else {
            Params {
                w1: child::env_number("YOTON_BENCH_W1").unwrap_or(1_000_000),
                w2: 2_000,
                w3: 10_000,
                w4: 256 << 20,
                fanout: 200_000,
                duplex: 500_000,
                chain_pings: 2_000,
                chain_msgs: 200_000,
                idle: 1_000,
                idle_ms: 5_000,
                warmup: 200,
                python_w1: 100_000,
                timeout: Duration::from_secs(300),
            }
        }
    }
}

/// Who is measured.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Floor,
    Yoton(String),
    Python,
}

impl Kind {
    fn label(&self) -> String {
        match self {
            Kind::Floor => "floor".into(),
            Kind::Yoton(t) => t.clone(),
            Kind::Python => "python ref (tcp)".into(),
        }
    }
}

/// The unit of a metric (how it is printed).
#[derive(Clone, Copy, Debug)]
enum Unit {
    PerSec,
    GBps,
    Micros,
    Secs,
    TimesSize,
    KiB,
    CpuMicros,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::PerSec => "msg/s",
            Unit::GBps => "GB/s",
            Unit::Micros => "µs",
            Unit::Secs => "s",
            Unit::TimesSize => "x size",
            Unit::KiB => "KiB",
            Unit::CpuMicros => "CPU µs/s",
        }
    }

    fn fmt(self, v: f64) -> String {
        match self {
            Unit::PerSec => si(v),
            Unit::GBps => format!("{v:.2}"),
            Unit::Micros if v >= 10_000.0 => format!("{:.1}k", v / 1e3),
            Unit::Micros if v >= 100.0 => format!("{v:.0}"),
            Unit::Micros => format!("{v:.1}"),
            Unit::Secs => format!("{v:.3}"),
            Unit::TimesSize => format!("{v:.2}"),
            Unit::KiB => format!("{v:.1}"),
            Unit::CpuMicros => format!("{v:.2}"),
        }
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A target of the performance issue.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// yoton / floor at least this.
    RatioAtLeast(f64),
    /// yoton / floor at most this.
    RatioAtMost(f64),
    /// The value itself at most this.
    AtMost(f64),
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::RatioAtLeast(r) => format!(">= {r}x floor"),
            Target::RatioAtMost(r) => format!("<= {r}x floor"),
            Target::AtMost(v) => format!("<= {v}"),
        }
    }

    fn met(self, value: f64, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtLeast(r) => ratio.map(|x| x >= r),
            Target::RatioAtMost(r) => ratio.map(|x| x <= r),
            Target::AtMost(v) => Some(value <= v),
        }
    }
}

struct Metric {
    key: &'static str,
    label: String,
    unit: Unit,
    target: Option<Target>,
}

fn metric(
    key: &'static str,
    label: impl Into<String>,
    unit: Unit,
    target: Option<Target>,
) -> Metric {
    Metric {
        key,
        label: label.into(),
        unit,
        target,
    }
}

/// The shape of a measurement: which processes, and how their results combine.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// One sender, one receiver (W1, W2, W4).
    OneWay,
    /// The same, the sender publishing from one reused buffer (`send_slice`).
    OneWaySlice,
    /// The same, the sender publishing 64 messages per `send_slices` call.
    OneWaySlices,
    /// A `send_slice` publisher writing to a raw end that only reads (TCP only).
    PubAlone,
    /// The same with `send_slices`, 64 messages per call (TCP only).
    PubAloneSlices,
    /// A raw end writing pre-encoded packages to a subscriber (TCP only).
    SubAlone,
    /// One publisher, several subscribers.
    FanOut(usize),
    /// Both directions at once.
    Duplex,
    /// Pub/sub (or floor) ping-pong.
    PingPong,
    /// Pub/sub ping-pong with the async API on a current-thread runtime.
    PingPongAsync,
    /// Request/reply.
    ReqRep,
    /// Request/reply with the async API on a current-thread runtime.
    ReqRepAsync,
    /// The same in the requester's direct mode (one round trip per call).
    ReqRepDirect,
    /// Ping-pong through relays.
    ChainPing(usize),
    /// One way through relays.
    ChainFlow(usize),
    /// Idle connections on one listener.
    Idle,
}

struct Measurement {
    workload: &'static str,
    what: String,
    shape: Shape,
    /// The floor's shape (ReqRep is measured against the floor's ping-pong).
    floor: Shape,
    count: u64,
    size: usize,
    metrics: Vec<Metric>,
    python: bool,
}

impl Measurement {
    /// The transports (of `all`) this measurement runs over: TCP only for the W1
    /// halves (a raw end speaks Yoton over TCP).
    fn transports<'a>(&self, all: &'a [String]) -> impl Iterator<Item = &'a String> {
        let tcp_only = matches!(
            self.shape,
            Shape::PubAlone | Shape::PubAloneSlices | Shape::SubAlone
        );
        all.iter().filter(move |t| !tcp_only || *t == "tcp")
    }
}

const RELAYS: usize = 6;

fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn size_text(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} B")
    }
}

fn plan(p: &Params, workloads: &[String]) -> Vec<Measurement> {
    use Shape::*;
    use Unit::*;
    let mut v = Vec::new();
    let want = |w: &str| workloads.iter().any(|x| x.eq_ignore_ascii_case(w));
    if want("W1") {
        let w1 = |what: String, shape: Shape, python: bool| Measurement {
            workload: "W1",
            what,
            shape,
            floor: OneWay,
            count: p.w1,
            size: 64,
            metrics: vec![metric(
                "rate",
                "throughput",
                PerSec,
                Some(Target::RatioAtLeast(0.5)),
            )],
            python,
        };
        let n = grouped(p.w1);
        v.push(w1(format!("pub/sub 64 B x {n}"), OneWay, true));
        v.push(w1(
            format!("pub/sub 64 B x {n}, send_slice (one reused buffer)"),
            OneWaySlice,
            false,
        ));
        v.push(w1(
            format!("pub/sub 64 B x {n}, send_slices (64 per call)"),
            OneWaySlices,
            false,
        ));
        // The two halves apart (diagnostic rows, no target).
        let mut half = |what: &str, shape| {
            let mut m = w1(format!("{what}, 64 B x {n} (TCP only)"), shape, false);
            m.metrics[0].target = None;
            v.push(m);
        };
        half("publisher alone, send_slice into a raw reader", PubAlone);
        half(
            "publisher alone, send_slices into a raw reader",
            PubAloneSlices,
        );
        half("subscriber alone, from a raw writer", SubAlone);
    }
    if want("W2") {
        v.push(Measurement {
            workload: "W2",
            what: format!("pub/sub 1 MiB x {}", grouped(p.w2)),
            shape: OneWay,
            floor: OneWay,
            count: p.w2,
            size: 1 << 20,
            metrics: vec![metric(
                "gbps",
                "throughput",
                GBps,
                Some(Target::RatioAtLeast(0.9)),
            )],
            python: false,
        });
    }
    if want("W3") {
        let latency = |what: &str, shape: Shape, target: Option<f64>| Measurement {
            workload: "W3",
            what: what.to_owned(),
            shape,
            floor: PingPong,
            count: p.w3,
            size: 64,
            metrics: vec![
                metric(
                    "p50",
                    "round trip p50",
                    Micros,
                    target.map(Target::RatioAtMost),
                ),
                metric("p99", "round trip p99", Micros, None),
            ],
            python: false,
        };
        let n = grouped(p.w3);
        v.push(latency(
            &format!("req/rep 64 B x {n} (vs floor ping-pong)"),
            ReqRep,
            Some(2.3),
        ));
        v.push(latency(
            &format!("req/rep 64 B x {n}, async API (vs floor ping-pong)"),
            ReqRepAsync,
            Some(2.3),
        ));
        v.push(latency(
            &format!("req/rep 64 B x {n}, async API, direct mode (vs floor ping-pong)"),
            ReqRepDirect,
            None,
        ));
        v.push(latency(
            &format!("pub/sub ping-pong 64 B x {n}"),
            PingPong,
            Some(1.2),
        ));
        v.push(latency(
            &format!("pub/sub ping-pong 64 B x {n}, async API"),
            PingPongAsync,
            Some(1.2),
        ));
    }
    if want("W4") {
        v.push(Measurement {
            workload: "W4",
            what: format!("one {} message", size_text(p.w4)),
            shape: OneWay,
            floor: OneWay,
            count: 1,
            size: p.w4,
            metrics: vec![
                metric("secs", "wall time", Secs, Some(Target::RatioAtMost(1.2))),
                metric(
                    "rss_send",
                    "sender peak RSS",
                    TimesSize,
                    Some(Target::AtMost(1.3)),
                ),
                metric(
                    "rss_recv",
                    "receiver peak RSS",
                    TimesSize,
                    Some(Target::AtMost(1.3)),
                ),
            ],
            python: false,
        });
    }
    if want("W5") {
        v.push(Measurement {
            workload: "W5",
            what: format!(
                "fan-out 1 pub -> 4 sub processes, 64 B x {}",
                grouped(p.fanout)
            ),
            shape: FanOut(4),
            floor: FanOut(4),
            count: p.fanout,
            size: 64,
            metrics: vec![metric("rate", "deliveries", PerSec, None)],
            python: false,
        });
        v.push(Measurement {
            workload: "W5",
            what: format!(
                "both directions at once, 64 B x {} each way",
                grouped(p.duplex)
            ),
            shape: Duplex,
            floor: Duplex,
            count: p.duplex,
            size: 64,
            metrics: vec![metric("rate", "total throughput", PerSec, None)],
            python: false,
        });
        v.push(Measurement {
            workload: "W5",
            what: format!(
                "chain of {} contexts (processes), ping-pong 64 B x {}",
                RELAYS + 2,
                grouped(p.chain_pings)
            ),
            shape: ChainPing(RELAYS),
            floor: ChainPing(RELAYS),
            count: p.chain_pings,
            size: 64,
            metrics: vec![
                metric("p50", "round trip p50", Micros, None),
                metric(
                    "hop",
                    format!("per hop (p50 / {} links)", 2 * (RELAYS + 1)),
                    Micros,
                    None,
                ),
            ],
            python: false,
        });
        v.push(Measurement {
            workload: "W5",
            what: format!(
                "chain of {} contexts (processes), pub/sub 64 B x {}",
                RELAYS + 2,
                grouped(p.chain_msgs)
            ),
            shape: ChainFlow(RELAYS),
            floor: ChainFlow(RELAYS),
            count: p.chain_msgs,
            size: 64,
            metrics: vec![metric("rate", "throughput", PerSec, None)],
            python: false,
        });
        v.push(Measurement {
            workload: "W5",
            what: format!(
                "{} idle connections on one listen ({:.0} s window)",
                grouped(p.idle as u64),
                p.idle_ms as f64 / 1e3
            ),
            shape: Idle,
            floor: Idle,
            count: 0,
            size: 0,
            metrics: vec![
                metric("mem", "memory per connection", KiB, None),
                metric("cpu", "CPU per connection", CpuMicros, None),
            ],
            python: false,
        });
    }
    v
}

// ------------------------------------------------------------------ running

/// One process of a measurement.
struct Node {
    name: String,
    spec: Spec,
    /// Connect to the address of this earlier node.
    connect_to: Option<usize>,
    /// Gets `go` (it drives the measurement).
    drives: bool,
    /// Reports a result.
    reports: bool,
}

fn node(name: &str, role: &str, count: u64, size: usize) -> Node {
    Node {
        name: name.to_owned(),
        spec: Spec {
            role: role.to_owned(),
            count,
            size,
            ..Spec::default()
        },
        connect_to: None,
        drives: false,
        reports: false,
    }
}

impl Node {
    fn bind(mut self) -> Self {
        self.spec.bind = true;
        self
    }
    fn listen(mut self, peers: usize) -> Self {
        self.spec.listen = true;
        self.spec.peers = peers;
        self
    }
    fn to(mut self, i: usize) -> Self {
        self.connect_to = Some(i);
        self
    }
    fn drives(mut self) -> Self {
        self.drives = true;
        self.reports = true;
        self
    }
    fn reports(mut self) -> Self {
        self.reports = true;
        self
    }
}

/// The processes of a measurement, in start order (a node's peer starts before it).
fn topology(shape: Shape, count: u64, size: usize, p: &Params, floor: bool) -> Vec<Node> {
    let r = |role: &str| {
        if floor {
            format!("floor-{role}")
        } else {
            role.to_owned()
        }
    };
    let n = |name: &str, role: &str| node(name, &r(role), count, size);
    match shape {
        Shape::OneWay => vec![
            n("receiver", "sub").bind().reports(),
            n("sender", "pub").to(0).drives(),
        ],
        Shape::OneWaySlice => vec![
            n("receiver", "sub").bind().reports(),
            n("sender", "pub-slice").to(0).drives(),
        ],
        Shape::OneWaySlices => vec![
            n("receiver", "sub").bind().reports(),
            n("sender", "pub-slices").to(0).drives(),
        ],
        Shape::PubAlone | Shape::PubAloneSlices => {
            let role = match shape {
                Shape::PubAlone => "pub-slice",
                _ => "pub-slices",
            };
            vec![
                node("receiver", "floor-raw-sink", count, size)
                    .bind()
                    .reports(),
                n("sender", role).to(0).drives(),
            ]
        }
        Shape::SubAlone => vec![
            n("receiver", "sub").bind().reports(),
            node("sender", "floor-raw-source", count, size)
                .to(0)
                .drives(),
        ],
        Shape::FanOut(k) => {
            let mut v = vec![n("publisher", "pub").listen(k).drives()];
            for i in 0..k {
                v.push(n(&format!("subscriber {}", i + 1), "sub").to(0).reports());
            }
            v
        }
        Shape::Duplex => vec![
            n("side a", "duplex").bind().drives(),
            n("side b", "duplex").to(0).drives(),
        ],
        Shape::PingPong => {
            let mut pinger = n("pinger", "ping").to(0).drives();
            pinger.spec.warmup = p.warmup;
            vec![n("echo", "echo").bind(), pinger]
        }
        Shape::ReqRep => {
            let mut req = n("requester", "req").to(0).drives();
            req.spec.warmup = p.warmup;
            vec![n("replier", "rep").bind(), req]
        }
        Shape::PingPongAsync => {
            let mut pinger = n("pinger", "ping-async").to(0).drives();
            pinger.spec.warmup = p.warmup;
            vec![n("echo", "echo-async").bind(), pinger]
        }
        Shape::ReqRepAsync | Shape::ReqRepDirect => {
            let role = if shape == Shape::ReqRepDirect {
                "req-direct-async"
            } else {
                "req-async"
            };
            let mut req = n("requester", role).to(0).drives();
            req.spec.warmup = p.warmup;
            vec![n("replier", "rep-async").bind(), req]
        }
        Shape::ChainPing(relays) | Shape::ChainFlow(relays) => {
            let ping = matches!(shape, Shape::ChainPing(_));
            let mut v = Vec::new();
            let mut head = if ping {
                n("pinger", "ping").bind().drives()
            } else {
                n("sender", "pub").bind().drives()
            };
            head.spec.warmup = p.warmup;
            v.push(head);
            for i in 0..relays {
                v.push(n(&format!("relay {}", i + 1), "relay").bind().to(i));
            }
            v.push(if ping {
                n("echo", "echo").to(relays)
            } else {
                n("receiver", "sub").to(relays).reports()
            });
            v
        }
        Shape::Idle => {
            let mut server = n("server", "idle-server").listen(p.idle).drives();
            server.spec.window_ms = p.idle_ms;
            let mut clients = n("clients", "idle-clients").to(0);
            clients.spec.peers = p.idle;
            vec![server, clients]
        }
    }
}

/// One measurement's values (by metric key) and notes (losses...).
type Values = BTreeMap<&'static str, f64>;

/// The outcome of one run of one measurement.
type Outcome = Result<(Values, Vec<String>), String>;

fn run_once(m: &Measurement, kind: &Kind, p: &Params) -> Outcome {
    let (shape, program, transport) = match kind {
        Kind::Floor => (m.floor, Program::Yoton, "tcp".to_owned()),
        Kind::Yoton(t) => (m.shape, Program::Yoton, t.clone()),
        Kind::Python => (m.shape, python::program()?, "tcp".to_owned()),
    };
    let count = if *kind == Kind::Python {
        p.python_w1.min(m.count)
    } else {
        m.count
    };
    let nodes = topology(shape, count, m.size, p, *kind == Kind::Floor);
    let mut g = Group::new(p.timeout);
    let mut ready = Vec::new();
    for n in &nodes {
        let mut spec = n.spec.clone();
        spec.transport = transport.clone();
        if let Some(j) = n.connect_to {
            let to: &procs::Ready = ready.get(j).ok_or("bad topology")?;
            spec.connect = to.addr.clone();
            spec.pin = to.pin.clone();
        }
        let i = g.spawn(&n.name, &program, &spec)?;
        ready.push(g.wait_ready(i)?);
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.drives {
            g.send(i, "go");
        }
    }
    let mut results: Vec<Option<Value>> = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.drives {
            results[i] = Some(g.wait_result(i)?);
        }
    }
    for i in 0..nodes.len() {
        g.send(i, "done");
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.reports && !n.drives {
            results[i] = Some(g.wait_result(i)?);
        }
    }
    drop(g);
    let (values, mut notes) = evaluate(shape, &nodes, &results, count, m.size)?;
    if *kind == Kind::Python {
        notes.push(format!("{} messages", grouped(count)));
    }
    Ok((values, notes))
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Combine the results of the processes into metric values.
fn evaluate(
    shape: Shape,
    nodes: &[Node],
    results: &[Option<Value>],
    count: u64,
    size: usize,
) -> Outcome {
    let mut v = Values::new();
    let mut notes = Vec::new();
    let get = |i: usize| -> Result<&Value, String> {
        results
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("no result from {}", nodes[i].name))
    };
    match shape {
        Shape::PingPong
        | Shape::PingPongAsync
        | Shape::ReqRep
        | Shape::ReqRepAsync
        | Shape::ReqRepDirect
        | Shape::ChainPing(_) => {
            let i = nodes.iter().position(|n| n.drives).ok_or("no driver")?;
            let r = get(i)?;
            v.insert("p50", num(r, "p50_us"));
            v.insert("p99", num(r, "p99_us"));
            if let Shape::ChainPing(relays) = shape {
                // Out and back through relays + 1 links each way.
                v.insert("hop", num(r, "p50_us") / (2 * (relays + 1)) as f64);
            }
        }
        Shape::Idle => {
            let r = get(0)?;
            let conns = num(r, "conns").max(1.0);
            v.insert("mem", (num(r, "rss1") - num(r, "rss0")) / conns / 1024.0);
            v.insert(
                "cpu",
                num(r, "cpu_s") / num(r, "window_s").max(1e-9) / conns * 1e6,
            );
            if (conns as usize) < nodes[1].spec.peers {
                notes.push(format!("only {conns} connected"));
            }
        }
        _ => {
            // Senders start the clock, receivers stop it.
            let (mut t0, mut t_end) = (u64::MAX, 0u64);
            let (mut received, mut ooo, mut dropped, mut receivers) = (0.0, 0.0, 0.0, 0u64);
            let mut gaps = 0.0;
            let (mut hwm_send, mut hwm_recv) = (0.0f64, 0.0f64);
            for r in results.iter().flatten() {
                if r.get("t0_ns").is_some() {
                    t0 = t0.min(num(r, "t0_ns") as u64);
                    hwm_send = hwm_send.max(num(r, "hwm"));
                }
                if r.get("received").is_some() {
                    t_end = t_end.max(num(r, "t_last_ns") as u64);
                    received += num(r, "received");
                    ooo += num(r, "out_of_order");
                    gaps += num(r, "gaps");
                    dropped += num(r, "discarded");
                    hwm_recv = hwm_recv.max(num(r, "hwm"));
                    receivers += 1;
                }
            }
            if t0 == u64::MAX || receivers == 0 || t_end <= t0 {
                return Err("incomplete results".into());
            }
            let secs = (t_end - t0) as f64 / 1e9;
            v.insert("rate", received / secs);
            v.insert("gbps", received * size as f64 / secs / 1e9);
            v.insert("secs", secs);
            v.insert("rss_send", hwm_send / size.max(1) as f64);
            v.insert("rss_recv", hwm_recv / size.max(1) as f64);
            let expected = (count * receivers) as f64;
            if received < expected {
                notes.push(format!("lost {}", expected - received));
            }
            if ooo > 0.0 {
                notes.push(format!("{ooo} out of order"));
            }
            if gaps > 0.0 {
                notes.push(format!("{gaps} gaps"));
            }
            if dropped > 0.0 {
                notes.push(format!("{dropped} dropped by queue"));
            }
        }
    }
    Ok((v, notes))
}

// ------------------------------------------------------------------ results

#[derive(Default)]
struct Cell {
    values: BTreeMap<&'static str, Vec<f64>>,
    notes: Vec<String>,
    errors: Vec<String>,
}

struct Summary {
    median: f64,
    min: f64,
    max: f64,
}

fn summary(v: &[f64]) -> Option<Summary> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: s[0],
        max: s[n - 1],
    })
}

fn show(unit: Unit, s: &Option<Summary>, runs: usize) -> String {
    match s {
        None => "failed".into(),
        Some(s) if runs <= 1 => unit.fmt(s.median),
        Some(s) => format!(
            "{} ({}-{})",
            unit.fmt(s.median),
            unit.fmt(s.min),
            unit.fmt(s.max)
        ),
    }
}

struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    started: Instant,
}

impl Progress {
    fn step(&mut self, text: &str) {
        self.done += 1;
        let line = format!(
            "[{}/{}] {text}... ({:.0} s)",
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn warn(&self, text: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("yoton bench: {text}");
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

fn compiled_transports() -> Vec<String> {
    let schemes = yoton::schemes();
    ["tcp", "ws", "quic"]
        .into_iter()
        .filter(|t| schemes.contains(t))
        .map(str::to_owned)
        .collect()
}

/// Run the benchmark and print the table.
pub fn run(args: &BenchArgs) -> ExitCode {
    let params = Params::new(args.quick);
    let all = ["W1", "W2", "W3", "W4", "W5"];
    let workloads: Vec<String> = if args.workload.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        args.workload
            .iter()
            .map(|w| w.trim().to_uppercase())
            .collect()
    };
    if let Some(bad) = workloads.iter().find(|w| !all.contains(&w.as_str())) {
        eprintln!(
            "yoton bench: unknown workload {bad} (known: {})",
            all.join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let compiled = compiled_transports();
    let transports: Vec<String> = if args.transport.is_empty() {
        compiled.clone()
    } else {
        args.transport
            .iter()
            .map(|t| t.trim().to_lowercase())
            .collect()
    };
    if let Some(bad) = transports.iter().find(|t| !compiled.contains(t)) {
        eprintln!(
            "yoton bench: transport {bad} is not in this build (compiled in: {})",
            compiled.join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let python = if args.python {
        match python::program() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("yoton bench: --python: {e}; the Python reference is left out");
                false
            }
        }
    } else {
        false
    };
    let measurements = plan(&params, &workloads);
    let kinds_of = |m: &Measurement| -> Vec<Kind> {
        let mut k = vec![Kind::Floor];
        k.extend(m.transports(&transports).cloned().map(Kind::Yoton));
        if python && m.python {
            k.push(Kind::Python);
        }
        k
    };
    let runs = args.runs as usize;
    let mut progress = Progress {
        total: runs
            * measurements
                .iter()
                .map(|m| kinds_of(m).len())
                .sum::<usize>(),
        done: 0,
        tty: std::io::stderr().is_terminal(),
        started: Instant::now(),
    };
    // cells[measurement index][kind label]
    let mut cells: Vec<BTreeMap<String, Cell>> =
        measurements.iter().map(|_| BTreeMap::new()).collect();
    // The floor of W3's two measurements is the same: measured once per run.
    let mut floor_cache: BTreeMap<(usize, String), Outcome> = BTreeMap::new();
    for run in 1..=runs {
        for (mi, m) in measurements.iter().enumerate() {
            for kind in kinds_of(m) {
                progress.step(&format!(
                    "{} {} {} run {run}/{runs}",
                    m.workload,
                    m.what,
                    kind.label()
                ));
                let outcome = if kind == Kind::Floor {
                    let key = (run, format!("{:?}/{}/{}", m.floor, m.count, m.size));
                    floor_cache
                        .entry(key)
                        .or_insert_with(|| run_once(m, &kind, &params))
                        .clone()
                } else {
                    run_once(m, &kind, &params)
                };
                let cell = cells[mi].entry(kind.label()).or_default();
                match outcome {
                    Ok((values, notes)) => {
                        for (k, x) in values {
                            cell.values.entry(k).or_default().push(x);
                        }
                        for n in notes {
                            if !cell.notes.contains(&n) {
                                cell.notes.push(n);
                            }
                        }
                    }
                    Err(e) => {
                        progress.warn(&format!(
                            "{} {} ({}) run {run}: {e}",
                            m.workload,
                            m.what,
                            kind.label()
                        ));
                        cell.errors.push(e);
                    }
                }
            }
        }
    }
    progress.finish();
    if python {
        python::cleanup();
    }
    let failed = print_table(&measurements, &cells, &transports, python, runs, &params);
    if failed {
        ExitCode::from(crate::error::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Print the table; true when some measurement failed.
fn print_table(
    measurements: &[Measurement],
    cells: &[BTreeMap<String, Cell>],
    transports: &[String],
    python: bool,
    runs: usize,
    p: &Params,
) -> bool {
    let mut rows: Vec<[String; 8]> = vec![[
        "workload".into(),
        "metric".into(),
        "impl".into(),
        "yoton".into(),
        "floor".into(),
        "ratio".into(),
        "target".into(),
        "notes".into(),
    ]];
    let mut failed = false;
    let mut missed = 0usize;
    let mut met = 0usize;
    let mut titles = Vec::new();
    for (mi, m) in measurements.iter().enumerate() {
        titles.push((rows.len(), format!("{} {}", m.workload, m.what)));
        let floor = cells[mi].get("floor");
        let mut kinds: Vec<String> = m.transports(transports).cloned().collect();
        if python && m.python {
            kinds.push(Kind::Python.label());
        }
        for metric in &m.metrics {
            let fs = floor.and_then(|c| summary(c.values.get(metric.key)?));
            for k in &kinds {
                let cell = cells[mi].get(k);
                let ys = cell.and_then(|c| summary(c.values.get(metric.key)?));
                let ratio = match (&ys, &fs) {
                    (Some(y), Some(f)) if f.median > 0.0 => Some(y.median / f.median),
                    _ => None,
                };
                let verdict = match (metric.target, &ys) {
                    (Some(t), Some(y)) if !k.starts_with("python") => t.met(y.median, ratio),
                    _ => None,
                };
                match verdict {
                    Some(true) => met += 1,
                    Some(false) => missed += 1,
                    None => {}
                }
                let mut notes: Vec<String> = cell.map(|c| c.notes.clone()).unwrap_or_default();
                if let Some(c) = cell {
                    if !c.errors.is_empty() {
                        failed = true;
                        notes.push(format!("{} run(s) failed", c.errors.len()));
                    }
                }
                rows.push([
                    m.workload.to_owned(),
                    format!("{} [{}]", metric.label, metric.unit.name()),
                    k.clone(),
                    show(metric.unit, &ys, runs),
                    show(metric.unit, &fs, runs),
                    ratio.map_or("-".into(), |r| {
                        if r >= 0.1 {
                            format!("{r:.2}x")
                        } else if r >= 0.001 {
                            format!("{r:.3}x")
                        } else {
                            format!("{r:.4}x")
                        }
                    }),
                    match (metric.target, verdict) {
                        (Some(t), Some(true)) => format!("{} ok", t.text()),
                        (Some(t), Some(false)) => format!("{} MISSED", t.text()),
                        (Some(t), None) => t.text(),
                        (None, _) => String::new(),
                    },
                    notes.join("; "),
                ]);
            }
            if fs.is_none() {
                failed = true;
            }
        }
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 8]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i < 7 {
                s.push_str(&" ".repeat(w - c.chars().count()));
            }
        }
        s.trim_end().to_owned()
    };
    println!(
        "yoton bench: {} run(s) each, median (min-max); {}",
        runs,
        if runs > 1 {
            "spread over the runs"
        } else {
            "single run"
        }
    );
    println!(
        "floor: minimal framed tokio TCP (8-byte length prefix, {} KiB BufWriter/BufReader, TCP_NODELAY, same payloads), measured in the same run",
        floor::buf() / 1024
    );
    println!();
    let mut t = titles.iter().peekable();
    for (i, r) in rows.iter().enumerate() {
        if let Some((_, title)) = t.next_if(|(at, _)| *at == i) {
            println!("{title}");
        }
        println!("  {}", line(r));
        if i == 0 {
            println!("  {}", "-".repeat(widths.iter().sum::<usize>() + 14));
        }
    }
    println!();
    println!("targets: {met} met, {missed} missed (targets of the performance issue: W1 >= 0.5x floor; W2 >= 0.9x; W3 pub/sub ping-pong p50 <= 1.2x floor, req/rep p50 <= 2.3x floor round trip; W4 peak RSS <= 1.3x message size each side, time <= 1.2x floor)");
    println!("ratio: yoton / floor (throughput: higher is better; times, RSS, memory, CPU: lower is better)");
    println!("method: each measurement runs as separate processes over 127.0.0.1 (this executable, hidden `bench-peer` command);");
    println!("  throughput = messages received / (last receive - first send), clocks are the machine's wall clock;");
    println!("  yoton receivers use SubChannel<Binary> with an unbounded queue and recv_all batches (losses would be reported);");
    println!("  W1 halves: the other end is raw Yoton over TCP with the floor's buffers (the handshake line, then packages; the raw reader parses headers and counts);");
    println!(
        "  W5 chain: {} processes, each one context: pinger/sender, {} relay contexts (no channels, routing only), echo/receiver;",
        RELAYS + 2,
        RELAYS
    );
    println!("    the floor's relays forward bytes (copy_bidirectional); per hop = round trip p50 / {} links;", 2 * (RELAYS + 1));
    println!(
        "  W5 idle: {} connections from one client process ({} contexts on one runtime); memory = VmRSS delta of the listening process / connections,",
        p.idle, p.idle
    );
    println!(
        "    CPU = utime+stime of the listening process over {:.0} s / connections (µs of CPU per second per connection; yoton heartbeats every 0.25 s)",
        p.idle_ms as f64 / 1e3
    );
    failed
}
