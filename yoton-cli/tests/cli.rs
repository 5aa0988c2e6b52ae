//! The `yoton` binary end to end: processes talking over TCP on 127.0.0.1, with
//! each other and with the Python reference (`python/cli_peer.py`, run with the venv
//! of `scripts/python-venv.sh`; those tests FAIL, never skip, when it cannot be had).
//!
//! Every wait is bounded; children are killed when their guard drops. Processes that
//! bind use port 0 and the test reads the real port from their stderr (`yoton: bound
//! at ...`) or stdout (`{"event":"ready","port":...}` of the Python peer).
#![cfg(feature = "tcp")]

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use yoton_testkit::python;

/// Upper bound of every wait for a process.
const WAIT: Duration = Duration::from_secs(30);

/// A child process with its stdout and stderr collected in the background; killed
/// when dropped.
struct Proc {
    name: String,
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a process ended.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
    /// Assert exit code 0, showing everything otherwise.
    fn ok(self) -> Ended {
        assert!(self.status.success(), "expected success: {self:#?}");
        self
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    })
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, stdin: Option<&[u8]>) -> Proc {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .envs(python::UTF8_ENV);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // In a thread of its own: a large input must not block the test.
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
                // dropped: end of input
            });
        }
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped"), out.clone()),
            collect(child.stderr.take().expect("piped"), err.clone()),
        ];
        Proc {
            name: format!("{name} {:?}", cmd.get_args().collect::<Vec<_>>()),
            child,
            out,
            err,
            readers,
        }
    }

    fn stderr(&self) -> String {
        self.err.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Wait (bounded) for a complete line of stderr or stdout that `pick` accepts (a
    /// line still being written is not looked at: it may arrive in pieces).
    fn wait_for<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let complete = |s: String| match s.rfind('\n') {
            Some(i) => s[..i].to_owned(),
            None => String::new(),
        };
        let t0 = Instant::now();
        loop {
            let text = format!("{}\n{}", complete(self.stderr()), complete(self.stdout()));
            if let Some(v) = text.lines().find_map(&pick) {
                return v;
            }
            if t0.elapsed() > WAIT {
                self.fail(&format!("no {what} within {WAIT:?}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the readers a moment to collect the last output.
                std::thread::sleep(Duration::from_millis(100));
                let text = format!("{}\n{}", self.stderr(), self.stdout());
                if let Some(v) = text.lines().find_map(&pick) {
                    return v;
                }
                self.fail(&format!("exited ({status}) before printing {what}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port a `yoton` process bound or listens at (it says so on stderr).
    fn port(&mut self) -> u16 {
        self.wait_for("`yoton: ... at ADDR` on stderr", |line| {
            let rest = line.strip_prefix("yoton: ")?;
            let (_, addr) = rest.split_once(" at ")?;
            addr.rsplit(':').next()?.trim().parse().ok()
        })
    }

    /// The port of a Python peer's ready event.
    fn ready_port(&mut self) -> u16 {
        self.wait_for("a ready event on stdout", |line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["event"] == "ready")
                .then(|| v["port"].as_u64())??
                .try_into()
                .ok()
        })
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        panic!(
            "{}: {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.stdout(),
            self.stderr()
        );
    }

    /// Wait (bounded) for the end.
    fn finish(mut self) -> Ended {
        let t0 = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if t0.elapsed() > WAIT => {
                    self.fail(&format!("still running after {WAIT:?}"))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => self.fail(&format!("wait failed: {e}")),
            }
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Ended {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn yoton_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yoton"));
    cmd.args(args);
    cmd
}

/// Start `yoton ARGS...`.
fn yoton(args: &[&str]) -> Proc {
    Proc::spawn("yoton", yoton_cmd(args), None)
}

/// Start `yoton ARGS...` with `input` on its standard input.
fn yoton_stdin(args: &[&str], input: &str) -> Proc {
    Proc::spawn("yoton", yoton_cmd(args), Some(input.as_bytes()))
}

/// Run `yoton ARGS...` to its end.
fn run(args: &[&str]) -> Ended {
    yoton(args).finish()
}

fn at(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

// ------------------------------------------------------------------ pub / sub

/// `yoton sub --bind` at a free port, then `yoton pub` to it; the sub's output.
fn pub_to_sub(ty: &str, messages: &[&str], count: usize) -> Ended {
    let n = count.to_string();
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "127.0.0.1:0",
        "chat",
        "--type",
        ty,
        "--count",
        &n,
        "--timeout",
        "20",
    ]);
    let addr = at(sub.port());
    let mut args = vec!["pub", &addr, "chat", "--type", ty, "--"];
    args.extend_from_slice(messages);
    run(&args).ok();
    sub.finish().ok()
}

#[test]
fn pub_sub_txt() {
    let out = pub_to_sub("txt", &["hello", "two words", "héllo ✓", "-dash"], 4);
    assert_eq!(out.lines(), ["hello", "two words", "héllo ✓", "-dash"]);
}

#[test]
fn pub_sub_obj() {
    let out = pub_to_sub(
        "obj",
        &[
            r#"{"z": [1, 2.5, null, true, "x"], "a": {"nested": []}}"#,
            "-7",
            "1.0",
            r#""text""#,
        ],
        4,
    );
    assert_eq!(
        out.lines(),
        [
            r#"{"z":[1,2.5,null,true,"x"],"a":{"nested":[]}}"#,
            "-7",
            "1.0",
            r#""text""#
        ]
    );
}

#[test]
fn pub_sub_bin() {
    let out = pub_to_sub("bin", &["AAEC/w==", "aGVsbG8="], 2);
    assert_eq!(out.lines(), ["AAEC/w==", "aGVsbG8="]);
}

#[test]
fn pub_reads_stdin_lines() {
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "127.0.0.1:0",
        "lines",
        "--count",
        "3",
        "--timeout",
        "20",
    ]);
    let addr = at(sub.port());
    yoton_stdin(&["pub", &addr, "lines"], "one\r\n\ntwo\nthree")
        .finish()
        .ok();
    assert_eq!(sub.finish().ok().lines(), ["one", "two", "three"]);
}

/// A fast publisher does not overflow a subscriber that prints (sync mode).
#[test]
fn pub_sub_many_lines_lossless() {
    let n = 20_000;
    let input: String = (0..n).map(|i| format!("line {i}\n")).collect();
    let count = n.to_string();
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "127.0.0.1:0",
        "bulk",
        "--count",
        &count,
        "--timeout",
        "60",
    ]);
    let addr = at(sub.port());
    yoton_stdin(&["pub", &addr, "bulk", "--timeout", "30"], &input)
        .finish()
        .ok();
    let out = sub.finish().ok();
    assert_eq!(out.stdout, input, "{}", out.stderr);
}

/// `pub --bind` waits for its peer; `sub` without --count stops when the
/// publisher closes, with everything printed.
#[test]
fn pub_bind_waits_for_sub_and_sub_ends_with_the_connection() {
    let mut publisher = yoton(&[
        "pub",
        "--bind",
        "127.0.0.1:0",
        "news",
        "--timeout",
        "20",
        "a",
        "b",
        "c",
    ]);
    let addr = at(publisher.port());
    let sub = yoton(&["sub", &addr, "news", "--timeout", "20"]);
    publisher.finish().ok();
    let out = sub.finish().ok();
    assert_eq!(out.lines(), ["a", "b", "c"]);
}

#[test]
fn sub_count_not_reached_exits_1() {
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "127.0.0.1:0",
        "few",
        "--count",
        "2",
        "--timeout",
        "3",
    ]);
    let addr = at(sub.port());
    run(&["pub", &addr, "few", "only one"]).ok();
    let out = sub.finish();
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(out.lines(), ["only one"]);
    assert!(out.stderr.contains("received 1 of 2"), "{out:#?}");
}

#[test]
fn sub_without_count_ends_on_timeout_with_0() {
    let t0 = Instant::now();
    let out = run(&[
        "sub",
        "--listen",
        "127.0.0.1:0",
        "quiet",
        "--timeout",
        "0.5",
    ])
    .ok();
    assert!(out.stdout.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_obj_message_exits_1_before_connecting() {
    let out = run(&[
        "pub",
        "--type",
        "obj",
        "127.0.0.1:1",
        "x",
        "{not json",
        "--timeout",
        "20",
    ]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("not valid JSON"), "{out:#?}");
}

#[cfg(feature = "ws")]
#[test]
fn pub_sub_over_ws() {
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "ws://127.0.0.1:0",
        "web",
        "--count",
        "2",
        "--timeout",
        "20",
    ]);
    let addr = format!("ws://127.0.0.1:{}", sub.port());
    run(&["pub", &addr, "web", "over", "websocket"]).ok();
    assert_eq!(sub.finish().ok().lines(), ["over", "websocket"]);
}

#[cfg(feature = "quic")]
/// A subscriber listens at `scheme://` with a generated self-signed certificate; a
/// publisher that does not pin it is refused, one that pins the printed fingerprint
/// gets through.
fn pub_sub_with_a_pinned_self_signed_certificate(scheme: &str) {
    let mut sub = yoton(&[
        "sub",
        "--listen",
        &format!("{scheme}://127.0.0.1:0"),
        "--self-signed",
        "q",
        "--count",
        "2",
        "--timeout",
        "20",
    ]);
    let pin = sub.wait_for("the certificate fingerprint", |line| {
        line.strip_prefix("yoton: certificate fingerprint ")
            .map(str::to_owned)
    });
    let addr = format!("{scheme}://127.0.0.1:{}", sub.port());
    // Not trusted without the pin (listening, the subscriber just goes on).
    let refused = run(&["pub", &addr, "q", "--timeout", "2", "nope"]);
    assert_eq!(refused.code(), Some(1), "{refused:#?}");
    run(&["pub", &addr, "q", "--pin", &pin, "over", scheme]).ok();
    assert_eq!(sub.finish().ok().lines(), ["over", scheme]);
}

#[test]
fn pub_sub_over_quic_with_a_pinned_self_signed_certificate() {
    pub_sub_with_a_pinned_self_signed_certificate("quic");
}

#[test]
fn pub_sub_over_tls_and_wss_with_a_pinned_self_signed_certificate() {
    pub_sub_with_a_pinned_self_signed_certificate("tls");
    pub_sub_with_a_pinned_self_signed_certificate("wss");
}

// ------------------------------------------------------------------ req / rep

#[test]
fn req_rep() {
    let mut rep = yoton(&[
        "rep",
        "--listen",
        "127.0.0.1:0",
        "svc",
        "--count",
        "4",
        "--timeout",
        "30",
    ]);
    let addr = at(rep.port());
    let pong = run(&["req", &addr, "svc", "ping"]).ok();
    assert_eq!(pong.lines(), [r#""pong""#]);
    let echo = run(&["req", &addr, "svc", "echo", "hello"]).ok();
    let v: serde_json::Value = serde_json::from_str(echo.stdout.trim()).expect("JSON reply");
    assert_eq!(v[0], "hello", "{echo:#?}");
    assert!(
        v[1].as_str().is_some_and(|s| s.starts_with("0x")),
        "{echo:#?}"
    );
    let echo = run(&[
        "req",
        &addr,
        "svc",
        "echo",
        r#"{"a": [1, null]}"#,
        "--kw",
        "sleep=0.01",
    ])
    .ok();
    assert!(
        echo.stdout.starts_with(r#"[{"a":[1,null]},"0x"#),
        "{echo:#?}"
    );
    // A remote error: stderr, exit 1.
    let err = run(&["req", &addr, "svc", "nope", "1"]);
    assert_eq!(err.code(), Some(1), "{err:#?}");
    assert!(err.stdout.is_empty(), "{err:#?}");
    assert!(
        err.stderr.contains("remote error") && err.stderr.contains("not implemented"),
        "{err:#?}"
    );
    // Four requests answered: the replier ends by itself.
    rep.finish().ok();
}

#[test]
fn req_without_reply_exits_1() {
    let mut rep = yoton(&["rep", "--listen", "127.0.0.1:0", "here", "--timeout", "30"]);
    let addr = at(rep.port());
    let t0 = Instant::now();
    let out = run(&["req", &addr, "elsewhere", "ping", "--timeout", "1"]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("no reply"), "{out:#?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    drop(rep);
}

#[test]
fn rep_count_not_reached_exits_1() {
    let out = run(&[
        "rep",
        "--listen",
        "127.0.0.1:0",
        "lonely",
        "--count",
        "1",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("handled 0 of 1"), "{out:#?}");
}

// ------------------------------------------------------------------ state

#[test]
fn state_set_get() {
    let mut setter = yoton(&["state", "--listen", "127.0.0.1:0", "mood", "sunny"]);
    let addr = at(setter.port());
    let mut obj = yoton(&[
        "state",
        "--listen",
        "127.0.0.1:0",
        "--type",
        "obj",
        "level",
        r#"{"n": 3}"#,
    ]);
    let obj_addr = at(obj.port());
    // Two newcomers learn it, one after the other.
    for _ in 0..2 {
        let got = run(&["state", &addr, "mood", "--timeout", "20"]).ok();
        assert_eq!(got.lines(), ["sunny"]);
    }
    let got = run(&[
        "state",
        &obj_addr,
        "--type",
        "obj",
        "level",
        "--timeout",
        "20",
    ])
    .ok();
    assert_eq!(got.lines(), [r#"{"n":3}"#]);
    // Not set at that slot: exit 1 after the time-out.
    let unknown = run(&["state", &addr, "weather", "--timeout", "0.5"]);
    assert_eq!(unknown.code(), Some(1), "{unknown:#?}");
    assert!(unknown.stderr.contains("not learned"), "{unknown:#?}");
    // The setter stays up until killed (dropping the guards kills them).
    assert!(setter.child.try_wait().expect("try_wait").is_none());
    drop((setter, obj));
}

#[test]
fn state_set_with_timeout_ends_with_0() {
    let out = run(&[
        "state",
        "--listen",
        "127.0.0.1:0",
        "s",
        "v",
        "--timeout",
        "0.3",
    ]);
    assert!(out.status.success(), "{out:#?}");
}

// ------------------------------------------------------------------ client/server

#[test]
fn request_serve() {
    let mut server = yoton(&["serve", "127.0.0.1:0", "--count", "2", "--timeout", "30"]);
    let addr = at(server.port());
    let one = run(&["request", &addr, "hello"]).ok();
    assert_eq!(one.lines(), ["Requested: hello"]);
    let two = run(&["request", &addr, "héllo wörld"]).ok();
    assert_eq!(two.lines(), ["Requested: héllo wörld"]);
    server.finish().ok();
    // Nobody there any more.
    let none = run(&["request", &addr, "anyone?", "--timeout", "2"]);
    assert_eq!(none.code(), Some(1), "{none:#?}");
}

// ------------------------------------------------------------------ other commands

#[test]
fn demo_exits_0() {
    let t0 = Instant::now();
    let out = run(&["demo"]).ok();
    assert!(out.stdout.contains("everything arrived"), "{out:#?}");
    #[allow(unused_mut)]
    let mut wanted = vec!["inproc", "tcp", "pub/sub txt", "req/rep", "state newcomer"];
    #[cfg(feature = "ws")]
    wanted.push("\nws ");
    #[cfg(feature = "quic")]
    wanted.push("\nquic ");
    for want in wanted {
        assert!(out.stdout.contains(want), "no {want:?} in {out:#?}");
    }
    assert!(!out.stdout.contains(" NO"), "{out:#?}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["sub"][..],
        &["pub", "--bind", "--listen", "a:1", "s"],
        &["sub", "a:1", "s", "--type", "xml"],
        &["sub", "a:1", "s", "--timeout", "-1"],
        &["frobnicate"],
    ] {
        let out = run(args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:#?}");
    }
}

#[test]
fn help_describes_every_command() {
    let out = run(&["--help"]).ok();
    for cmd in [
        "pub", "sub", "req", "rep", "state", "request", "serve", "demo", "bench",
    ] {
        assert!(
            out.stdout.contains(&format!("\n  {cmd} ")),
            "{cmd} missing: {}",
            out.stdout
        );
        let sub = run(&[cmd, "--help"]).ok();
        assert!(sub.stdout.contains("Usage: yoton"), "{cmd}: {sub:#?}");
    }
    assert!(out.stdout.contains("Schemes in this build: inproc://"));
}

// ------------------------------------------------------------------ Python reference

/// Start `python/cli_peer.py ARGS...` with the reference venv.
fn py_peer(args: &[&str]) -> Proc {
    // The venv's python; it never skips: without the venv the test fails.
    let mut cmd = Command::new(python::python());
    cmd.arg(python::script("cli_peer.py"))
        .args(args)
        .current_dir(python::repo_root());
    Proc::spawn("cli_peer.py", cmd, None)
}

/// The values of the Python peer's msg events.
fn py_messages(out: &Ended) -> Vec<serde_json::Value> {
    out.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "msg")
        .map(|v| v["value"].clone())
        .collect()
}

#[test]
fn python_pub_to_yoton_sub_txt() {
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "127.0.0.1:0",
        "chat",
        "--count",
        "2",
        "--timeout",
        "30",
    ]);
    let addr = at(sub.port());
    let py = py_peer(&[
        "--timeout",
        "20",
        "pub",
        "--connect",
        &addr,
        "chat",
        "txt",
        "from Python",
        "héllo ✓",
    ]);
    let out = sub.finish().ok();
    assert_eq!(out.lines(), ["from Python", "héllo ✓"]);
    py.finish().ok();
}

#[test]
fn python_pub_to_yoton_sub_obj() {
    let mut sub = yoton(&[
        "sub",
        "--bind",
        "127.0.0.1:0",
        "data",
        "--type",
        "obj",
        "--count",
        "2",
        "--timeout",
        "30",
    ]);
    let addr = at(sub.port());
    let py = py_peer(&[
        "--timeout",
        "20",
        "pub",
        "--connect",
        &addr,
        "data",
        "obj",
        r#"{"b": [1, 2.5, null, true], "a": {"c": "x"}}"#,
        "-3",
    ]);
    let out = sub.finish().ok();
    assert_eq!(
        out.lines(),
        [r#"{"b":[1,2.5,null,true],"a":{"c":"x"}}"#, "-3"]
    );
    py.finish().ok();
}

#[test]
fn yoton_pub_to_python_sub_obj() {
    let mut publisher = yoton(&[
        "pub",
        "--bind",
        "127.0.0.1:0",
        "--type",
        "obj",
        "data",
        "--timeout",
        "30",
        r#"{"x": [1, 2.5]}"#,
        r#""s""#,
    ]);
    let addr = at(publisher.port());
    let py = py_peer(&[
        "--timeout",
        "20",
        "sub",
        "--connect",
        &addr,
        "data",
        "obj",
        "2",
    ]);
    publisher.finish().ok();
    let out = py.finish().ok();
    assert_eq!(
        py_messages(&out),
        [serde_json::json!({"x": [1, 2.5]}), serde_json::json!("s")]
    );
}

/// `yoton req --bind` waits for the Python replier to connect, then calls it.
fn req_to_python(args: &[&str]) -> Ended {
    let mut full = vec!["req", "--bind", "127.0.0.1:0", "svc", "--timeout", "30"];
    full.extend_from_slice(args);
    let mut req = yoton(&full);
    let addr = at(req.port());
    let py = py_peer(&["--timeout", "20", "rep", "--connect", &addr, "svc", "1"]);
    let out = req.finish();
    py.finish().ok();
    out
}

#[test]
fn yoton_req_to_python_rep() {
    let pong = req_to_python(&["ping"]).ok();
    assert_eq!(pong.lines(), [r#""pong""#]);
    let sum = req_to_python(&["add", "2", "3.5"]).ok();
    assert_eq!(sum.lines(), ["5.5"]);
    let echo = req_to_python(&["echo", r#"[1, {"a": null}]"#]).ok();
    assert!(
        echo.stdout.starts_with(r#"[[1,{"a":null}],"0x"#),
        "{echo:#?}"
    );
}

#[test]
fn yoton_req_to_python_rep_remote_error_exits_1() {
    let err = req_to_python(&["fail", "--kw", "text=broken on purpose"]);
    assert_eq!(err.code(), Some(1), "{err:#?}");
    assert!(
        err.stderr.contains("remote error") && err.stderr.contains("broken on purpose"),
        "{err:#?}"
    );
}

#[test]
fn yoton_request_to_python_serve_and_back() {
    let mut server = py_peer(&["--timeout", "20", "serve", "127.0.0.1:0", "1"]);
    let addr = at(server.ready_port());
    let out = run(&["request", &addr, "from Rust"]).ok();
    assert_eq!(out.lines(), ["Requested: from Rust"]);
    server.finish().ok();

    let mut server = yoton(&["serve", "127.0.0.1:0", "--count", "1", "--timeout", "30"]);
    let addr = at(server.port());
    let py = py_peer(&["--timeout", "20", "request", &addr, "from Python"])
        .finish()
        .ok();
    let reply: serde_json::Value = serde_json::from_str(py.stdout.trim()).expect("JSON line");
    // The reference keeps the terminating CRLF of the framing.
    assert_eq!(reply["reply"], "Requested: from Python\r\n", "{py:#?}");
    server.finish().ok();
}

// ------------------------------------------------------------------ overload

/// A hand-made Yoton host at a free port that answers the handshake, keeps the
/// connection alive with heartbeats, and never reads a byte of what comes after.
fn never_reading_host() -> u16 {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(WAIT));
        let mut line = String::new();
        if std::io::BufReader::new(&sock).read_line(&mut line).is_err() {
            return;
        }
        let mut w = &sock;
        let _ = w.write_all(b"YOTON!00000000c0ffee01.1\r\n");
        let mut heartbeat = Vec::new();
        for x in [u64::from_le_bytes(*b"YOTON   "), 1, 0, 0, 0, 0, 0] {
            heartbeat.extend_from_slice(&x.to_le_bytes());
        }
        let t0 = Instant::now();
        while t0.elapsed() < WAIT && w.write_all(&heartbeat).is_ok() {
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    port
}

#[test]
fn pub_to_a_peer_that_never_reads_reports_the_discarded_messages_and_exits_1() {
    let port = never_reading_host();
    // 2,000 messages of 64 KiB (128 MiB): more than the kernel's socket buffers plus
    // the send queue's hard limit (4 x 16 MiB).
    let line = "x".repeat(64 << 10);
    let input: String = (0..2000).map(|_| format!("{line}\n")).collect();
    let ended = yoton_stdin(&["pub", &at(port), "flood", "--timeout", "3"], &input).finish();
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert!(
        ended
            .stderr
            .contains(&format!("discarded for 127.0.0.1:{port}")),
        "{}",
        ended.stderr
    );
    assert!(
        ended.stderr.contains("of 2000 messages were discarded"),
        "{}",
        ended.stderr
    );
}
