//! The Python reference: the venv's interpreter and the repository's Python peers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::child::LineChild;

/// Environment that makes a Python child use UTF-8 for its argv and stdio whatever
/// the locale.
pub const UTF8_ENV: [(&str, &str); 2] = [("PYTHONUTF8", "1"), ("PYTHONIOENCODING", "utf-8")];

/// The root of the repository (the workspace directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("yoton-testkit has a parent directory")
}

/// The path of `python/<name>` in the repository.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("python").join(name)
}

/// The venv's python, made (or found, it is cached on disk) by
/// `scripts/python-venv.sh` once per test binary.
///
/// Panics with an explanation when the script fails or prints no interpreter that
/// exists: the tests that need the Python reference never skip.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = repo_root().join("scripts/python-venv.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "\n\n*** PYTHON INTEROP: cannot run `bash {}`: {e} ***\n\
                     These tests need Python 3 and the Yoton reference (pyzo); they never skip.\n",
                    script.display()
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let py = stdout.lines().last().unwrap_or_default().to_string();
        if !out.status.success() || py.is_empty() || !Path::new(&py).exists() {
            panic!(
                "\n\n*** PYTHON INTEROP: `bash {}` failed ({}) ***\n\
                 These tests need Python 3 and the Yoton reference (pyzo==4.22.0); they never skip.\n\
                 stdout: {stdout}\nstderr: {}\n",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        py
    })
}

/// A tokio command that runs `python/<name>` with the venv's python: working
/// directory the repository root, [`UTF8_ENV`], stdin null, stdout and stderr piped,
/// killed on drop. Add the script's arguments (and change stdin) before spawning.
pub fn command(name: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(script(name))
        .current_dir(repo_root())
        .envs(UTF8_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Start `python/<name> ARGS...` (see [`command`]) as a [`LineChild`] whose waits
/// are bounded by `wait`; failures name it `python peer ARGS`. Call it inside a
/// tokio runtime.
pub fn spawn(name: &str, args: &[&str], wait: Duration) -> LineChild {
    let mut cmd = command(name);
    cmd.args(args);
    LineChild::spawn(format!("python peer {args:?}"), &mut cmd, wait)
}

/// An id as the Python peers print it (16 hex digits).
pub fn hex_id(s: &str) -> u64 {
    assert_eq!(s.len(), 16, "ids are printed as 16 hex digits: {s:?}");
    u64::from_str_radix(s, 16).unwrap_or_else(|e| panic!("bad hex id {s:?}: {e}"))
}
