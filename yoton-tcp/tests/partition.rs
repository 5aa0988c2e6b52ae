//! Network partitions between two processes in their own network namespaces.
//!
//! The test creates two namespaces joined by a veth pair, with 10.200.0.1/30 and
//! 10.200.0.2/30 inside them only (nothing outside the namespaces is touched), and runs
//! this very test binary in each of them (re-executed with `ip netns exec`, the role
//! in an environment variable), so that both ends are yoton-rs over TCP. It then cuts
//! the link, checks that both connections report `TimedOut(true)` within their
//! time-out, queues messages on both sides, restores the link, and checks
//! `TimedOut(false)` and the delivery of everything queued, exactly once and in order.
//! Two kinds of cuts: the link goes down (`ip link set ... down`), and every frame is
//! silently lost (the neighbour entry of the peer points at a MAC address that nobody
//! has: the effect of `tc netem loss 100%`, whose qdisc the kernel may lack).
//!
//! QUIC goes through the same two cuts with the `yoton` CLI at both ends (built with
//! `cargo build -p yoton-cli`; this crate's tests do not link yoton-quic): the CLI logs
//! each connection's time-out and recovery on standard error, which the test reads.
//!
//! Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`; where namespaces
//! cannot be created the test says so and FAILS. The namespaces are deleted at the
//! end, also on failure (a guard). Every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use yoton_core::{slot_hash, Context, Package};

const ROLE_VAR: &str = "YOTON_PARTITION_ROLE";
const HOST_IP: &str = "10.200.0.1";
const CLIENT_IP: &str = "10.200.0.2";
/// Receive time-out of both connections.
const TIMEOUT: Duration = Duration::from_secs(1);
/// A MAC address that no interface has.
const NOWHERE_MAC: &str = "02:00:00:00:de:ad";

fn slot() -> u64 {
    slot_hash("partition.txt.pub-sub")
}

// ------------------------------------------------------------------ namespaces

/// Run `ip ARGS`; the output, or an error message.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces and a veth pair between them; deleted on drop.
struct Namespaces {
    a: String,
    b: String,
    veth_a: String,
    veth_b: String,
}

impl Namespaces {
    /// `test` (one letter) tells the tests of one process apart.
    fn create(test: char) -> Namespaces {
        let tag = std::process::id() % 1_000_000;
        let ns = Namespaces {
            a: format!("yoton-part-{test}a-{tag}"),
            b: format!("yoton-part-{test}b-{tag}"),
            veth_a: format!("y{test}a{tag}"),
            veth_b: format!("y{test}b{tag}"),
        };
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &ns.a])?;
            ip(&["netns", "add", &ns.b])?;
            // Created directly inside the namespaces: the host's own network never sees them.
            ip(&[
                "link", "add", &ns.veth_a, "netns", &ns.a, "type", "veth", "peer", "name",
                &ns.veth_b, "netns", &ns.b,
            ])?;
            ip(&[
                "-n",
                &ns.a,
                "addr",
                "add",
                &format!("{HOST_IP}/30"),
                "dev",
                &ns.veth_a,
            ])?;
            ip(&[
                "-n",
                &ns.b,
                "addr",
                "add",
                &format!("{CLIENT_IP}/30"),
                "dev",
                &ns.veth_b,
            ])?;
            for (n, dev) in [(&ns.a, &ns.veth_a), (&ns.b, &ns.veth_b)] {
                ip(&["-n", n, "link", "set", "lo", "up"])?;
                ip(&["-n", n, "link", "set", dev, "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            drop(ns);
            panic!(
                "\n\n*** NETWORK PARTITION TEST: cannot create network namespaces: {e} ***\n\
                 This test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip` \
                 (apt-get install iproute2). It does not skip.\n"
            );
        }
        ns
    }

    /// Cut the link: down on A's side (B sees no carrier).
    fn link_down(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a, "down"]).unwrap();
    }

    fn link_up(&self) {
        ip(&["-n", &self.a, "link", "set", &self.veth_a, "up"]).unwrap();
    }

    /// Lose every frame in both directions, silently: each side sends to a MAC address
    /// that the other does not have, so the frames are dropped on arrival.
    fn lose_everything(&self) {
        ip(&[
            "-n",
            &self.a,
            "neigh",
            "replace",
            CLIENT_IP,
            "lladdr",
            NOWHERE_MAC,
            "dev",
            &self.veth_a,
            "nud",
            "permanent",
        ])
        .unwrap();
        ip(&[
            "-n",
            &self.b,
            "neigh",
            "replace",
            HOST_IP,
            "lladdr",
            NOWHERE_MAC,
            "dev",
            &self.veth_b,
            "nud",
            "permanent",
        ])
        .unwrap();
    }

    fn stop_losing(&self) {
        ip(&[
            "-n",
            &self.a,
            "neigh",
            "del",
            CLIENT_IP,
            "dev",
            &self.veth_a,
        ])
        .unwrap();
        ip(&["-n", &self.b, "neigh", "del", HOST_IP, "dev", &self.veth_b]).unwrap();
    }

    /// This test binary, running only `partition_child_process`, inside namespace `ns`.
    fn spawn_child(&self, ns: &str, role: &str) -> Child {
        let exe = std::env::current_exe().unwrap();
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "partition_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_VAR, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a child in {ns}: {e}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        for n in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

// ------------------------------------------------------------------ the two peers

/// A child process in a namespace; its `@@` lines arrive on a channel.
struct Peer {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    fn start(name: &'static str, mut child: Child) -> Peer {
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // libtest may put "test NAME ... " before the first line.
                if let Some(i) = line.find("@@") {
                    if tx.send(line[i + 2..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Peer {
            name,
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Wait (at most `limit`) for a line for which `f` holds; the lines before it are
    /// kept in `seen`.
    fn expect(&mut self, what: &str, limit: Duration, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = f(&line);
                    self.seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {limit:?}; it said: {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Take the lines that arrived meanwhile into `seen`.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// The texts received so far that start with `prefix`, in order.
    fn received(&self, prefix: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|l| l.strip_prefix("recv "))
            .filter(|t| t.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// Wait until `n` texts with `prefix` arrived; check they are exactly prefix0.. in order.
    fn expect_all(&mut self, prefix: &str, n: usize, limit: Duration) {
        let want = format!("recv {prefix}{}", n - 1);
        if !self.seen.contains(&want) {
            self.expect(&format!("{prefix}0..{prefix}{}", n - 1), limit, |l| {
                l == want
            });
        }
        // Nothing else with that prefix after a short while.
        std::thread::sleep(Duration::from_millis(200));
        self.drain();
        let expected: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(self.received(prefix), expected, "{}: {prefix}*", self.name);
    }

    fn closed(&self) -> Option<&String> {
        self.seen.iter().find(|l| l.starts_with("closed"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Cut, check the time-outs, queue messages both ways, restore, check the recovery
/// and the delivery. Returns (time to TimedOut(true) on host and client, time to
/// TimedOut(false) after the restore on host and client).
fn partition_round(
    host: &mut Peer,
    client: &mut Peer,
    tag: &str,
    cut: impl FnOnce(),
    restore: impl FnOnce(),
) -> [Duration; 4] {
    let t_cut = Instant::now();
    cut();
    let limit = TIMEOUT * 3;
    host.expect("timedout true", limit, |l| l == "timedout true");
    let host_out = t_cut.elapsed();
    client.expect("timedout true", limit, |l| l == "timedout true");
    let client_out = t_cut.elapsed();
    // Queue on both sides while cut.
    host.say(&format!("send {tag}h 20"));
    client.say(&format!("send {tag}c 20"));
    host.expect("sent", Duration::from_secs(5), |l| l.starts_with("sent"));
    client.expect("sent", Duration::from_secs(5), |l| l.starts_with("sent"));
    std::thread::sleep(Duration::from_secs(2));
    host.drain();
    client.drain();
    assert!(
        host.received(&format!("{tag}c")).is_empty(),
        "delivered while cut"
    );
    assert!(
        client.received(&format!("{tag}h")).is_empty(),
        "delivered while cut"
    );
    let t_restore = Instant::now();
    restore();
    let limit = Duration::from_secs(30);
    host.expect("timedout false", limit, |l| l == "timedout false");
    let host_back = t_restore.elapsed();
    client.expect("timedout false", limit, |l| l == "timedout false");
    let client_back = t_restore.elapsed();
    host.expect_all(&format!("{tag}c"), 20, limit);
    client.expect_all(&format!("{tag}h"), 20, limit);
    assert_eq!(host.closed(), None, "host closed during the partition");
    assert_eq!(client.closed(), None, "client closed during the partition");
    [host_out, client_out, host_back, client_back]
}

#[test]
fn tcp_partition_times_out_and_recovers_with_everything_delivered() {
    assert!(
        std::env::var_os(ROLE_VAR).is_none(),
        "run as the controller only"
    );
    let ns = Namespaces::create('t');
    let mut host = Peer::start("host", ns.spawn_child(&ns.a, "host"));
    let ready = host.expect("ready", Duration::from_secs(30), |l| {
        l.starts_with("ready ")
    });
    let port = ready.trim_start_matches("ready ").to_owned();
    let mut client = Peer::start("client", ns.spawn_child(&ns.b, &format!("client {port}")));
    host.expect("connected", Duration::from_secs(20), |l| l == "connected");
    client.expect("connected", Duration::from_secs(20), |l| l == "connected");
    // Before: both ways.
    host.say("send preh 10");
    client.say("send prec 10");
    client.expect_all("preh", 10, Duration::from_secs(10));
    host.expect_all("prec", 10, Duration::from_secs(10));

    let down = partition_round(
        &mut host,
        &mut client,
        "down",
        || ns.link_down(),
        || ns.link_up(),
    );
    println!(
        "TCP, link down ({TIMEOUT:?} time-out): TimedOut(true) after {:?} (host) / {:?} (client); \
         link up: TimedOut(false) after {:?} / {:?}; 20+20 queued messages delivered in order",
        down[0], down[1], down[2], down[3]
    );
    let loss = partition_round(
        &mut host,
        &mut client,
        "loss",
        || ns.lose_everything(),
        || ns.stop_losing(),
    );
    println!(
        "TCP, 100% loss ({TIMEOUT:?} time-out): TimedOut(true) after {:?} (host) / {:?} (client); \
         restored: TimedOut(false) after {:?} / {:?}; 20+20 queued messages delivered in order",
        loss[0], loss[1], loss[2], loss[3]
    );
    for d in [down, loss] {
        for out in &d[..2] {
            assert!(
                *out >= TIMEOUT.mul_f32(0.5) && *out <= TIMEOUT * 3,
                "time-out reported after {out:?} for a {TIMEOUT:?} time-out"
            );
        }
    }
    // After: both ways, and a clean close.
    host.say("send posth 5");
    client.say("send postc 5");
    client.expect_all("posth", 5, Duration::from_secs(10));
    host.expect_all("postc", 5, Duration::from_secs(10));
    client.say("quit");
    client.expect("bye", Duration::from_secs(5), |l| l.starts_with("bye"));
    let reason = host.expect("closed", Duration::from_secs(5), |l| {
        l.starts_with("closed")
    });
    assert_eq!(reason, "closed Closed from other end.");
    host.say("quit");
}

// ------------------------------------------------------------------ QUIC, with the CLI

/// The `yoton` CLI next to this test binary (target/debug/yoton).
fn yoton_cli() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("yoton"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p yoton-cli` (this test does not skip)",
        bin.display()
    );
    bin
}

/// Lines of a child's stream, on a channel.
fn line_channel(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait (bounded) for a line for which `f` holds; every line seen goes into `seen`.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    limit: Duration,
    what: &str,
    f: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                seen.push(line.clone());
                if f(&line) {
                    return line;
                }
            }
            Err(_) => panic!("no {what} within {limit:?}; seen: {seen:#?}"),
        }
    }
}

/// QUIC through a partition, with the `yoton` CLI at both ends (this crate's tests do not
/// link yoton-quic): both ends report the time-out within their connection time-out of
/// the cut and the recovery after it (the CLI logs these events on standard error), and
/// messages published while the link is down (and while every frame is lost) all
/// arrive, in order, once it is back; QUIC's idle time-out (10 s) is longer than each
/// cut (about 3.5 s).
#[test]
fn quic_partition_times_out_and_recovers_with_everything_delivered() {
    assert!(std::env::var_os(ROLE_VAR).is_none());
    let cli = yoton_cli();
    let ns = Namespaces::create('q');
    let addr = format!("quic://{HOST_IP}:47000");
    let mut sub = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &ns.a])
            .arg(&cli)
            .args([
                "sub",
                "--bind",
                "--self-signed",
                "-n",
                "60",
                "--timeout",
                "90",
                &addr,
                "part",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let sub_out = line_channel(sub.0.stdout.take().unwrap());
    let sub_err = line_channel(sub.0.stderr.take().unwrap());
    let mut err_seen = Vec::new();
    let fp = wait_line(
        &sub_err,
        &mut err_seen,
        Duration::from_secs(20),
        "fingerprint",
        |l| l.contains("fingerprint"),
    );
    let fp = fp.rsplit(' ').next().unwrap().to_owned();
    let mut publisher = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &ns.b])
            .arg(&cli)
            .args(["pub", "--pin", &fp, "--timeout", "30", &addr, "part"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pub_err = line_channel(publisher.0.stderr.take().unwrap());
    let mut pub_err_seen = Vec::new();
    let mut stdin = publisher.0.stdin.take().unwrap();
    let mut publish = |tag: &str| {
        for i in 0..20 {
            writeln!(stdin, "{tag}{i}").unwrap();
        }
        stdin.flush().unwrap();
    };
    let mut got = Vec::new();
    publish("pre");
    wait_line(&sub_out, &mut got, Duration::from_secs(20), "pre19", |l| {
        l == "pre19"
    });

    let rounds: [Round; 2] = [
        ("down", &|| ns.link_down(), &|| ns.link_up()),
        ("loss", &|| ns.lose_everything(), &|| ns.stop_losing()),
    ];
    let timed_out = |l: &str| l.contains("connection timed out");
    let back = |l: &str| l.contains("connection back");
    for (tag, cut, restore) in rounds {
        let t_cut = Instant::now();
        cut();
        // Both ends notice within their time-out (0.5 s by default) plus a
        // heartbeat interval and some scheduling slack.
        let limit = Duration::from_secs(3);
        wait_line(&sub_err, &mut err_seen, limit, "sub time-out", timed_out);
        let sub_noticed = t_cut.elapsed();
        wait_line(
            &pub_err,
            &mut pub_err_seen,
            limit,
            "pub time-out",
            timed_out,
        );
        let pub_noticed = t_cut.elapsed();
        std::thread::sleep(Duration::from_millis(1500).saturating_sub(t_cut.elapsed()));
        publish(tag);
        std::thread::sleep(Duration::from_secs(2));
        while let Ok(l) = sub_out.try_recv() {
            got.push(l);
        }
        assert!(
            !got.iter().any(|l| l.starts_with(tag)),
            "delivered while cut: {got:?}"
        );
        let t0 = Instant::now();
        restore();
        let last = format!("{tag}19");
        wait_line(&sub_out, &mut got, Duration::from_secs(20), &last, |l| {
            l == last
        });
        let delivered = t0.elapsed();
        wait_line(&sub_err, &mut err_seen, WAIT_BACK, "sub recovery", back);
        wait_line(&pub_err, &mut pub_err_seen, WAIT_BACK, "pub recovery", back);
        println!(
            "QUIC, cut by {tag}: time-out reported after {sub_noticed:?} (subscriber) and \
             {pub_noticed:?} (publisher); 20 messages published during the 3.5 s cut arrived \
             {delivered:?} after the restore, recovery reported by both"
        );
    }
    drop(stdin); // the publisher flushes and exits
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = publisher.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the publisher did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "publisher: {status}");
    let expected: Vec<String> = ["pre", "down", "loss"]
        .iter()
        .flat_map(|t| (0..20).map(move |i| format!("{t}{i}")))
        .collect();
    assert_eq!(got, expected);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = sub.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the subscriber did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "subscriber: {status}");
}

/// How long a recovery may take to be reported once the messages are through.
const WAIT_BACK: Duration = Duration::from_secs(5);

/// A kind of cut: its name, how to cut, how to restore.
type Round<'a> = (&'a str, &'a dyn Fn(), &'a dyn Fn());

/// A child process killed (SIGKILL) and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ------------------------------------------------------------------ child side

/// Not a test of its own: the entry point of the processes that
/// `tcp_partition_times_out_and_recovers_with_everything_delivered` starts inside the
/// namespaces (with the role in `YOTON_PARTITION_ROLE`). Without it, it does nothing.
///
/// Roles: `host` binds at 10.200.0.1 (any port, printed), `client PORT` connects to it.
/// Prints `@@ready PORT`, `@@connected`, `@@timedout true|false`, `@@recv TEXT`,
/// `@@sent TAG N`, `@@closed REASON`, `@@bye`; reads commands `send TAG N` and `quit`
/// from stdin. Exits after `quit`, at the end of stdin, or after 3 minutes.
#[test]
fn partition_child_process() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    // Outside any runtime: the context runs its own.
    let ctx = Context::builder()
        .transport(yoton_tcp::TcpTransport)
        .build()
        .unwrap();
    let _guard = ctx
        .register_receiver(
            slot(),
            "partition",
            std::sync::Arc::new(|p: Package, _seq: u64| {
                println!("@@recv {}", String::from_utf8_lossy(&p.payload));
            }),
        )
        .unwrap();
    let conn = if role == "host" {
        let c = ctx.bind(&format!("{HOST_IP}:0")).unwrap();
        println!("@@ready {}", c.local().port);
        c.wait_connected(Duration::from_secs(30)).unwrap();
        c
    } else {
        let port = role.trim_start_matches("client ");
        ctx.connect(&format!("{HOST_IP}:{port}"), Duration::from_secs(20))
            .unwrap()
    };
    conn.set_timeout(TIMEOUT);
    conn.on_timedout(|_, t| println!("@@timedout {t}"));
    conn.on_closed(|_, reason| println!("@@closed {reason}"));
    println!("@@connected");

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(180) {
        let line = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["send", tag, n] => {
                let n: usize = n.parse().unwrap();
                for i in 0..n {
                    ctx.send_now(Package::new(slot(), format!("{tag}{i}")))
                        .unwrap();
                }
                println!("@@sent {tag} {n}");
            }
            ["quit"] => {
                conn.close("done");
                println!("@@bye {:?}", conn.close_reason());
                break;
            }
            other => panic!("unknown command {other:?}"),
        }
    }
    ctx.close();
    // Do not wait for the stdin thread.
    std::process::exit(0);
}
