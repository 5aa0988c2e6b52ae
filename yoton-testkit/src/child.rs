//! A child process read line by line with bounded waits.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// At most this much of the end of a child's stderr goes into a failure message.
const STDERR_SHOWN: usize = 20_000;

/// A running child process: its stdout read as lines (JSON lines for the Python
/// peers), its stderr collected in the background for the failure messages, its
/// stdin (when the command pipes it) written line by line. Every wait is bounded
/// (by the limit given to [`LineChild::spawn`] unless a method takes its own).
/// SIGKILLed when dropped (and the command is made `kill_on_drop` as well).
pub struct LineChild {
    child: Child,
    pid: u32,
    label: String,
    limit: Duration,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl LineChild {
    /// Spawn `cmd` with stdout and stderr piped (stdin as the command has it: take
    /// [`Stdio::piped`] to write to it). `label` names the child in failures;
    /// `limit` bounds every wait. Call it inside a tokio runtime (a task collects
    /// stderr).
    pub fn spawn(label: impl Into<String>, cmd: &mut Command, limit: Duration) -> LineChild {
        let label = label.into();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {label} ({cmd:?}): {e}"));
        let pid = child.id().expect("a just spawned child has a pid");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        LineChild {
            child,
            pid,
            label,
            limit,
            stdin,
            lines: BufReader::new(stdout).lines(),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The bound of the waits that take none of their own.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// What the child wrote to its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Panic with the child's label, `what`, and (the end of) its stderr.
    pub fn fail(&self, what: &str) -> ! {
        let mut err = self.stderr();
        if err.len() > STDERR_SHOWN {
            let mut start = err.len() - STDERR_SHOWN;
            while !err.is_char_boundary(start) {
                start += 1;
            }
            err = format!("...{}", &err[start..]);
        }
        panic!(
            "{}: {what}\n--- stderr ---\n{err}---------------------",
            self.label
        )
    }

    /// The next line of stdout, within `wait`. Fails the test when none comes in
    /// time or stdout ends (with the exit status, if the child already exited).
    pub async fn next_line_within(&mut self, wait: Duration) -> String {
        match tokio::time::timeout(wait, self.lines.next_line()).await {
            Err(_) => self.fail(&format!("no line within {wait:?}")),
            Ok(Err(e)) => self.fail(&format!("reading stdout: {e}")),
            Ok(Ok(None)) => {
                // Give the stderr reader a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let status = self.child.try_wait().ok().flatten();
                self.fail(&format!("stdout ended (exit status {status:?})"))
            }
            Ok(Ok(Some(line))) => line,
        }
    }

    /// The next line of stdout (within the limit).
    pub async fn next_line(&mut self) -> String {
        self.next_line_within(self.limit).await
    }

    /// The next line of stdout, parsed as JSON (within the limit).
    pub async fn next_json(&mut self) -> serde_json::Value {
        let line = self.next_line().await;
        serde_json::from_str(&line)
            .unwrap_or_else(|e| self.fail(&format!("not JSON ({e}): {:?}", short(&line))))
    }

    /// The next line, which must be the JSON object `{"event": event, ...}`.
    pub async fn expect(&mut self, event: &str) -> serde_json::Value {
        let v = self.next_json().await;
        if v["event"] != event {
            self.fail(&format!(
                "expected a {event:?} event, got {}",
                short(&v.to_string())
            ));
        }
        v
    }

    /// No further line arrives within `within` (stdout may end or stay open).
    pub async fn assert_no_more_lines(&mut self, within: Duration) {
        if let Ok(Ok(Some(line))) = tokio::time::timeout(within, self.lines.next_line()).await {
            self.fail(&format!("unexpected extra line {:?}", short(&line)));
        }
    }

    /// Write `line` and a newline to the child's stdin (within the limit).
    pub async fn write_line(&mut self, line: &str) {
        let limit = self.limit;
        let Some(stdin) = self.stdin.as_mut() else {
            self.fail("stdin not piped or already closed")
        };
        let res = tokio::time::timeout(limit, async {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(&format!("writing {:?} to stdin: {e}", short(line))),
            Err(_) => self.fail(&format!(
                "writing {:?} to stdin took over {limit:?}",
                short(line)
            )),
        }
    }

    /// Close the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait (within the limit) for the process to exit; its status.
    pub async fn exit(&mut self) -> ExitStatus {
        match tokio::time::timeout(self.limit, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("wait: {e}")),
            Err(_) => self.fail(&format!("did not exit within {:?}", self.limit)),
        }
    }

    /// The process exits (within the limit) with status 0.
    pub async fn expect_success(&mut self) {
        let status = self.exit().await;
        if !status.success() {
            // Give the stderr reader a moment to collect the last words.
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.fail(&format!("exited with {status}"));
        }
    }

    /// SIGKILL now (the exit is not waited for: see [`LineChild::exit`]).
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.child.start_kill()
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        // SIGKILL; tokio reaps it (kill_on_drop is set as well).
        let _ = self.child.start_kill();
    }
}

/// `s` cut to its first 600 bytes (at a char boundary), with its length.
pub fn short(s: &str) -> String {
    if s.len() <= 600 {
        return s.to_string();
    }
    let mut end = 600;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> LineChild {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stdin(Stdio::piped());
        LineChild::spawn(format!("sh {script:?}"), &mut cmd, Duration::from_secs(10))
    }

    #[tokio::test]
    async fn reads_lines_and_json_and_collects_stderr() {
        let mut c =
            sh(r#"read x; echo "got $x"; echo '{"event":"ready","n":1}'; echo oops >&2; exit 3"#);
        c.write_line("hello").await;
        assert_eq!(c.next_line().await, "got hello");
        assert_eq!(c.expect("ready").await["n"], 1);
        c.assert_no_more_lines(Duration::from_secs(1)).await;
        assert_eq!(c.exit().await.code(), Some(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(c.stderr(), "oops\n");
    }

    #[tokio::test]
    #[should_panic(expected = "stdout ended")]
    async fn the_end_of_stdout_fails() {
        let mut c = sh("exit 0");
        c.next_line().await;
    }

    #[tokio::test]
    #[should_panic(expected = "no line within")]
    async fn a_silent_child_fails_in_bounded_time() {
        let mut c = sh("sleep 30");
        c.next_line_within(Duration::from_millis(100)).await;
    }

    #[test]
    fn short_cuts_at_a_char_boundary() {
        let s = "é".repeat(400);
        assert_eq!(short(&s), format!("{}... (800 bytes)", "é".repeat(300)));
        assert_eq!(short("abc"), "abc");
    }
}
