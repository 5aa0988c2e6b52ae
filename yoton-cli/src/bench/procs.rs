//! The coordinator side of the bench protocol (see `child.rs`): a group of child
//! processes, their JSON lines, `go`/`done` commands, and clean-up (stdin closed,
//! then killed if they linger).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::Spec;

/// What runs a role.
#[derive(Clone, Debug)]
pub enum Program {
    /// This executable (`yoton bench-peer SPEC`).
    Yoton,
    /// The Python reference: `PYTHON SCRIPT SPEC`.
    Python {
        /// The venv's interpreter.
        python: PathBuf,
        /// The bench script.
        script: PathBuf,
    },
}

enum Msg {
    Line(Value),
    Eof,
}

struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    err: Arc<Mutex<String>>,
}

/// Where a process can be reached.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// Its address, when it binds or listens.
    pub addr: Option<String>,
    /// Its QUIC certificate fingerprint.
    pub pin: Option<String>,
}

/// Child processes of one measurement.
pub struct Group {
    procs: Vec<Proc>,
    tx: mpsc::Sender<(usize, Msg)>,
    rx: mpsc::Receiver<(usize, Msg)>,
    stash: Vec<(usize, Value)>,
    deadline: Instant,
}

impl Group {
    /// An empty group; every wait ends by `timeout` from now.
    pub fn new(timeout: Duration) -> Group {
        let (tx, rx) = mpsc::channel();
        Group {
            procs: Vec::new(),
            tx,
            rx,
            stash: Vec::new(),
            deadline: Instant::now() + timeout,
        }
    }

    /// Start a child; returns its index.
    pub fn spawn(&mut self, name: &str, program: &Program, spec: &Spec) -> Result<usize, String> {
        let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut cmd = match program {
            Program::Yoton => {
                let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
                let mut c = Command::new(exe);
                c.arg("bench-peer");
                c
            }
            Program::Python { python, script } => {
                let mut c = Command::new(python);
                c.arg(script);
                c
            }
        };
        cmd.arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start: {e}"))?;
        let i = self.procs.len();
        let out = child.stdout.take().ok_or("no stdout")?;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send((i, Msg::Line(v))).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send((i, Msg::Eof));
        });
        let err = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().ok_or("no stderr")?;
        let err2 = err.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = err2.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    // Keep the tail only.
                    if s.len() > 64 * 1024 {
                        let cut = s.len() - 16 * 1024;
                        let cut = (cut..s.len()).find(|&c| s.is_char_boundary(c)).unwrap_or(0);
                        s.drain(..cut);
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            stdin,
            err,
        });
        Ok(i)
    }

    fn describe(&self, i: usize) -> String {
        let Some(p) = self.procs.get(i) else {
            return format!("process {i}");
        };
        let tail = p.err.lock().map(|s| s.clone()).unwrap_or_default();
        let tail = tail.trim();
        let start = tail.len().saturating_sub(600);
        let start = (start..=tail.len())
            .find(|&c| tail.is_char_boundary(c))
            .unwrap_or(0);
        if tail.is_empty() {
            p.name.clone()
        } else {
            format!("{} (stderr: ...{})", p.name, &tail[start..])
        }
    }

    /// Wait for the line of process `i` that has `key`.
    fn wait_for(&mut self, i: usize, key: &str) -> Result<Value, String> {
        if let Some(pos) = self
            .stash
            .iter()
            .position(|(j, v)| *j == i && v.get(key).is_some())
        {
            return Ok(self.stash.remove(pos).1);
        }
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((j, Msg::Line(v))) => {
                    if let Some(e) = v.get("error") {
                        return Err(format!("{}: {}", self.describe(j), e));
                    }
                    if j == i && v.get(key).is_some() {
                        return Ok(v);
                    }
                    self.stash.push((j, v));
                }
                Ok((j, Msg::Eof)) if j == i => {
                    // Give stderr a moment to be collected.
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(format!("{} ended before `{key}`", self.describe(j)));
                }
                Ok((_, Msg::Eof)) => {}
                Err(_) => {
                    return Err(format!(
                        "timed out waiting for `{key}` from {}",
                        self.describe(i)
                    ))
                }
            }
        }
    }

    /// Wait until process `i` is ready.
    pub fn wait_ready(&mut self, i: usize) -> Result<Ready, String> {
        let v = self.wait_for(i, "ready")?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Ready {
            addr: s("addr"),
            pin: s("pin"),
        })
    }

    /// Wait for the result of process `i`.
    pub fn wait_result(&mut self, i: usize) -> Result<Value, String> {
        let mut v = self.wait_for(i, "result")?;
        Ok(v["result"].take())
    }

    /// Send a command line to process `i`.
    pub fn send(&mut self, i: usize, cmd: &str) {
        if let Some(stdin) = self.procs.get_mut(i).and_then(|p| p.stdin.as_mut()) {
            let _ = writeln!(stdin, "{cmd}");
            let _ = stdin.flush();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.stdin = None;
        }
        let until = Instant::now() + Duration::from_secs(5);
        for p in &mut self.procs {
            loop {
                match p.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Ok(None) => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        break;
                    }
                }
            }
        }
    }
}
