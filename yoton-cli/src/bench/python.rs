//! The Python reference (pyzo's yoton) in the bench (`--python`, W1 only): a small
//! script speaking the same line protocol as our child processes (see `child.rs`),
//! run with the venv of `scripts/python-venv.sh` (`target/pyvenv`).

use std::path::PathBuf;

use super::procs::Program;

/// The script: roles `sub` (binds) and `pub` (connects), BINARY channels, queues big
/// enough for every message (the reference drops the oldest above the limit).
const SCRIPT: &str = r#"
import importlib.util, json, os, struct, sys, threading, time

_OUT = sys.stdout
sys.stdout = sys.stderr
spec = importlib.util.find_spec("pyzo")
if spec is None:
    _OUT.write(json.dumps({"error": "pyzo is not installed in this Python"}) + "\n")
    _OUT.flush()
    sys.exit(1)
sys.path.insert(0, os.path.dirname(spec.origin))
import yoton  # noqa: E402

flags = {"go": False, "done": False, "quit": False}


def watch():
    for line in sys.stdin:
        line = line.strip()
        if line in flags:
            flags[line] = True
    flags["quit"] = True


def emit(obj):
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    spec = json.loads(sys.argv[1])
    threading.Thread(target=watch, daemon=True).start()
    ctx = yoton.Context(queue_params=(10**8, "old"))
    count, size = spec["count"], max(8, spec["size"])
    if spec["role"] == "sub":
        ch = yoton.SubChannel(ctx, "bench", yoton.BINARY)
        conn = ctx.bind("127.0.0.1:0")
        emit({"ready": True, "addr": "tcp://127.0.0.1:%d" % conn.port1, "pin": None})
        n = ooo = 0
        expect = 0
        t_first = t_last = 0
        last = time.time()
        while n < count:
            msgs = ch.recv_all()
            if not msgs:
                m = ch.recv(0.05)
                if not m:
                    waited = time.time() - last
                    if flags["quit"] or (flags["done"] and waited > 1.0) or waited > 300:
                        break
                    continue
                msgs = [m]
            for m in msgs:
                s = struct.unpack("<Q", m[:8])[0]
                if s != expect:
                    ooo += 1
                expect = s + 1
            n += len(msgs)
            t_last = time.time_ns()
            if not t_first:
                t_first = t_last
            last = time.time()
        emit({"result": {"received": n, "out_of_order": ooo, "discarded": 0,
                         "t_first_ns": t_first, "t_last_ns": t_last, "hwm": hwm()}})
    elif spec["role"] == "pub":
        ch = yoton.PubChannel(ctx, "bench", yoton.BINARY)
        ctx.connect(spec["connect"].replace("tcp://", ""), timeout=20.0)
        emit({"ready": True, "addr": None, "pin": None})
        while not flags["go"]:
            if flags["quit"]:
                return
            time.sleep(0.001)
        pad = b"Z" * (size - 8)
        pack = struct.Struct("<Q").pack
        t0 = time.time_ns()
        for i in range(count):
            ch.send(pack(i) + pad)
        ctx.flush(300.0)
        emit({"result": {"t0_ns": t0, "t_sent_ns": time.time_ns(), "hwm": hwm()}})
    else:
        emit({"error": "unknown role %s" % spec["role"]})
        return
    while not flags["quit"]:
        time.sleep(0.005)


main()
os._exit(0)
"#;

fn script_path() -> PathBuf {
    std::env::temp_dir().join(format!("yoton-bench-{}.py", std::process::id()))
}

/// Remove the temporary script.
pub fn cleanup() {
    let _ = std::fs::remove_file(script_path());
}

/// The venv's interpreter, and the script written to a temporary file.
pub fn program() -> Result<Program, String> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/release/yoton -> target/pyvenv
        if let Some(target) = exe.parent().and_then(|p| p.parent()) {
            candidates.push(target.join("pyvenv/bin/python"));
        }
    }
    candidates.push(PathBuf::from("target/pyvenv/bin/python"));
    let python = candidates
        .into_iter()
        .find(|p| p.exists())
        .ok_or("no Python venv at target/pyvenv (run scripts/python-venv.sh)")?;
    let script = script_path();
    if !script.exists() {
        std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    }
    Ok(Program::Python { python, script })
}
