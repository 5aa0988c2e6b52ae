//! The floor: what a minimal framed protocol over tokio TCP achieves on this machine
//! in the same run. Frames are an 8-byte little-endian length and the payload,
//! written through a `BufWriter` (64 KiB) and read through a `BufReader` (64 KiB),
//! on a current-thread runtime, with TCP_NODELAY as yoton sets it. Same payloads as
//! the yoton roles (numbered copies up to 64 KiB, one shared buffer above).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use yoton::core::package::{Header, HEADER_SIZE};

use super::child::{self, now_ns, Spec, R};
use super::peer::SEQ_LIMIT;

const BUF: usize = 64 * 1024;

/// The floor's buffer size: [`BUF`], or for experiments only (not the table's) the
/// bytes in `YOTON_BENCH_FLOOR_BUF` (8192 is tokio's default `BufWriter`/`BufReader`).
pub(crate) fn buf() -> usize {
    child::env_number("YOTON_BENCH_FLOOR_BUF")
        .filter(|&n| n > 0)
        .unwrap_or(BUF)
}

/// Run the floor role of `spec` (role names start with `floor-`).
pub fn run(spec: &Spec) -> R<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match spec.role.as_str() {
            "floor-sub" => sub(spec).await,
            "floor-pub" => publish(spec).await,
            "floor-duplex" => duplex(spec).await,
            "floor-echo" => echo(spec).await,
            "floor-ping" => ping(spec).await,
            "floor-relay" => relay(spec).await,
            "floor-idle-server" => idle_server(spec).await,
            "floor-idle-clients" => idle_clients(spec).await,
            "floor-raw-sink" => raw_sink(spec).await,
            "floor-raw-source" => raw_source(spec).await,
            other => Err(format!("unknown role {other}").into()),
        }
    })?;
    child::wait_quit_and_exit()
}

/// Bind (then accept `peers`, at least one) or connect, as the spec says.
async fn streams(spec: &Spec) -> R<Vec<TcpStream>> {
    let mut out = Vec::new();
    if spec.bind || spec.listen {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        let upstream = match &spec.connect {
            Some(a) => Some(connect(a).await?),
            None => None,
        };
        child::ready(Some(format!("tcp://127.0.0.1:{port}")), None);
        for _ in 0..spec.peers.max(1) {
            let (s, _) = l.accept().await?;
            s.set_nodelay(true)?;
            out.push(s);
        }
        out.extend(upstream);
    } else {
        let a = spec.connect.as_deref().ok_or("no address")?;
        out.push(connect(a).await?);
        child::ready(None, None);
    }
    Ok(out)
}

async fn connect(addr: &str) -> R<TcpStream> {
    let a = addr.trim_start_matches("tcp://");
    let s = TcpStream::connect(a).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `go` from the coordinator, waited for off the runtime thread.
async fn go() -> R<()> {
    tokio::task::spawn_blocking(child::wait_go)
        .await
        .map_err(|e| e.to_string())?
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u64).to_le_bytes()).await?;
    w.write_all(payload).await
}

/// Read one frame into `buf` (resized to fit); false at the end of the stream.
async fn read_frame<Rd: AsyncRead + Unpin>(r: &mut Rd, buf: &mut Vec<u8>) -> R<bool> {
    let mut len = [0u8; 8];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let n = u64::from_le_bytes(len) as usize;
    if buf.len() != n {
        // calloc'ed: a large buffer is not touched twice.
        *buf = vec![0u8; n];
    }
    r.read_exact(buf).await?;
    Ok(true)
}

// ------------------------------------------------------------- raw Yoton ends
//
// The two halves of W1 measured apart: a Yoton publisher writing to an end that only
// reads (`raw-sink`), and an end that only writes pre-encoded packages (`raw-source`)
// to a Yoton subscriber. Each speaks Yoton over TCP as little as it must: the
// handshake line, then packages (56-byte header and payload), with the floor's
// buffers.

/// The context id a raw end says it is (and its packages' source id).
fn raw_id() -> u64 {
    0x7a11_0000_0000_0000 | u64::from(std::process::id())
}

/// The handshake line of a raw end (its id, this process's pid).
async fn raw_handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) -> R<()> {
    s.get_mut()
        .write_all(format!("YOTON!{:016x}.{}\r\n", raw_id(), std::process::id()).as_bytes())
        .await?;
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        if line.len() > 256 {
            return Err("the peer's handshake line is too long".into());
        }
        line.push(s.read_u8().await?);
    }
    Ok(())
}

/// Read packages and count those of the measurement's size (context messages and
/// heartbeats are skipped); report as a receiver does.
async fn raw_sink(spec: &Spec) -> R<()> {
    let mut ss = streams(spec).await?;
    let s = ss.pop().ok_or("no stream")?;
    let mut r = BufReader::with_capacity(buf(), s);
    raw_handshake(&mut r).await?;
    let mut header = [0u8; HEADER_SIZE];
    let mut skip = vec![0u8; 64 * 1024];
    let (mut n, mut t_first) = (0u64, 0u64);
    while n < spec.count {
        r.read_exact(&mut header).await?;
        let len = Header::from_bytes(&header)
            .map_err(|found| format!("lost track of the stream (control word {found:#x})"))?
            .length as usize;
        let mut left = len;
        while left > 0 {
            let k = left.min(skip.len());
            r.read_exact(&mut skip[..k]).await?;
            left -= k;
        }
        if len == spec.size {
            if t_first == 0 {
                t_first = now_ns();
            }
            n += 1;
        }
    }
    child::result(json!({
        "received": n, "out_of_order": 0, "t_first_ns": t_first, "t_last_ns": now_ns(),
        "discarded": 0, "hwm": child::proc_status_bytes("VmHWM"),
    }));
    Ok(())
}

/// Write `count` packages for the W1 subscriber (its channel's slot, this end's
/// source id and sequence numbers, the bench's numbered payload), encoded in place
/// into one reused buffer of the floor's size.
async fn raw_source(spec: &Spec) -> R<()> {
    let mut ss = streams(spec).await?;
    let s = ss.pop().ok_or("no stream")?;
    let mut s = BufReader::with_capacity(4096, s);
    raw_handshake(&mut s).await?;
    let mut w = BufWriter::with_capacity(buf(), s.into_inner());
    let slot = yoton::channel_slot("bench", "bin", "pub-sub");
    let source_id = raw_id();
    let mut p = Payload::new(spec.size);
    go().await?;
    let t0 = now_ns();
    for i in 0..spec.count {
        let payload = p.get(i);
        let h = Header {
            slot,
            source_id,
            source_seq: i + 1,
            dest_id: 0,
            dest_seq: 0,
            length: payload.len() as u64,
        };
        w.write_all(&h.to_bytes()).await?;
        w.write_all(payload).await?;
    }
    w.flush().await?;
    let t_sent = now_ns();
    child::result(
        json!({"t0_ns": t0, "t_sent_ns": t_sent, "hwm": child::proc_status_bytes("VmHWM")}),
    );
    tokio::task::spawn_blocking(child::wait_quit).await?;
    Ok(())
}

struct Payload {
    buf: Vec<u8>,
    numbered: bool,
}

impl Payload {
    fn new(size: usize) -> Self {
        let size = size.max(8);
        Payload {
            buf: vec![0x5a; size],
            numbered: size <= SEQ_LIMIT,
        }
    }
    fn get(&mut self, seq: u64) -> &[u8] {
        if self.numbered {
            self.buf[..8].copy_from_slice(&seq.to_le_bytes());
        }
        &self.buf
    }
}

fn seq_of(m: &[u8]) -> u64 {
    m.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(u64::MAX)
}

async fn receive_frames<Rd: AsyncRead + Unpin>(
    r: Rd,
    count: u64,
    size: usize,
) -> R<serde_json::Value> {
    let mut r = BufReader::with_capacity(buf(), r);
    let mut buf = Vec::new();
    let (mut n, mut ooo, mut t_first) = (0u64, 0u64, 0u64);
    let check = (8..=SEQ_LIMIT).contains(&size);
    while n < count && read_frame(&mut r, &mut buf).await? {
        if t_first == 0 {
            t_first = now_ns();
        }
        if check && seq_of(&buf) != n {
            ooo += 1;
        }
        n += 1;
    }
    Ok(json!({
        "received": n, "out_of_order": ooo, "t_first_ns": t_first, "t_last_ns": now_ns(),
        "discarded": 0, "hwm": child::proc_status_bytes("VmHWM"),
    }))
}

async fn sub(spec: &Spec) -> R<()> {
    let mut s = streams(spec).await?;
    let s = s.pop().ok_or("no stream")?;
    let r = receive_frames(s, spec.count, spec.size).await?;
    child::result(r);
    Ok(())
}

async fn publish(spec: &Spec) -> R<()> {
    let ss = streams(spec).await?;
    let mut ws: Vec<_> = ss
        .into_iter()
        .map(|s| BufWriter::with_capacity(buf(), s))
        .collect();
    let mut p = Payload::new(spec.size);
    go().await?;
    let t0 = now_ns();
    for i in 0..spec.count {
        let m = p.get(i);
        for w in &mut ws {
            write_frame(w, m).await?;
        }
    }
    for w in &mut ws {
        w.flush().await?;
    }
    let t_sent = now_ns();
    drop(p);
    child::result(
        json!({"t0_ns": t0, "t_sent_ns": t_sent, "hwm": child::proc_status_bytes("VmHWM")}),
    );
    // Keep the sockets open until the coordinator lets us go.
    tokio::task::spawn_blocking(child::wait_quit).await?;
    Ok(())
}

async fn duplex(spec: &Spec) -> R<()> {
    let mut s = streams(spec).await?;
    let s = s.pop().ok_or("no stream")?;
    let (r, w) = s.into_split();
    go().await?;
    let (count, size) = (spec.count, spec.size);
    let send = async move {
        let mut w = BufWriter::with_capacity(buf(), w);
        let mut p = Payload::new(size);
        let t0 = now_ns();
        for i in 0..count {
            write_frame(&mut w, p.get(i)).await?;
        }
        w.flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((t0, now_ns(), w))
    };
    let (sent, got) = tokio::join!(send, receive_frames(r, count, size));
    let (t0, t_sent, _w) = sent?;
    let mut got = got?;
    got["t0_ns"] = json!(t0);
    got["t_sent_ns"] = json!(t_sent);
    child::result(got);
    tokio::task::spawn_blocking(child::wait_quit).await?;
    Ok(())
}

async fn echo(spec: &Spec) -> R<()> {
    let mut s = streams(spec).await?;
    let s = s.pop().ok_or("no stream")?;
    let (r, w) = s.into_split();
    let (mut r, mut w) = (
        BufReader::with_capacity(buf(), r),
        BufWriter::with_capacity(buf(), w),
    );
    let mut buf = Vec::new();
    while read_frame(&mut r, &mut buf).await? {
        write_frame(&mut w, &buf).await?;
        w.flush().await?;
    }
    Ok(())
}

async fn ping(spec: &Spec) -> R<()> {
    let mut s = streams(spec).await?;
    let s = s.pop().ok_or("no stream")?;
    let (r, w) = s.into_split();
    let (mut r, mut w) = (
        BufReader::with_capacity(buf(), r),
        BufWriter::with_capacity(buf(), w),
    );
    go().await?;
    let mut p = Payload::new(spec.size);
    let mut buf = Vec::new();
    let mut rtts = Vec::with_capacity(spec.count as usize);
    for i in 0..spec.warmup + spec.count {
        let t = Instant::now();
        write_frame(&mut w, p.get(i)).await?;
        w.flush().await?;
        let got = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut r, &mut buf))
            .await
            .map_err(|_| "no pong within 5 s")??;
        if !got || seq_of(&buf) != i {
            return Err(format!("bad pong for ping {i}").into());
        }
        if i >= spec.warmup {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    child::result(child::latency_stats(rtts));
    tokio::task::spawn_blocking(child::wait_quit).await?;
    Ok(())
}

/// Forward bytes both ways between the upstream it connected to and the one peer it
/// accepted (the least a relay can do).
async fn relay(spec: &Spec) -> R<()> {
    let mut s = streams(spec).await?;
    let mut up = s.pop().ok_or("no upstream")?;
    let mut down = s.pop().ok_or("no downstream")?;
    let _ = tokio::io::copy_bidirectional(&mut up, &mut down).await;
    Ok(())
}

async fn idle_server(spec: &Spec) -> R<()> {
    let rss0 = child::proc_status_bytes("VmRSS");
    let l = TcpListener::bind("127.0.0.1:0").await?;
    child::ready(
        Some(format!("tcp://127.0.0.1:{}", l.local_addr()?.port())),
        None,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            let _ = tx.send(());
            // One task per connection, reading whatever comes (nothing does).
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
            });
        }
    });
    go().await?;
    for _ in 0..spec.peers {
        tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .map_err(|_| "peers did not connect")?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = child::proc_status_bytes("VmRSS");
    let c0 = child::cpu_ticks();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(spec.window_ms)).await;
    let ticks = child::cpu_ticks() - c0;
    child::result(json!({
        "conns": spec.peers, "rss0": rss0, "rss1": rss1,
        "cpu_s": ticks as f64 / child::TICKS_PER_SEC, "window_s": t0.elapsed().as_secs_f64(),
    }));
    tokio::task::spawn_blocking(child::wait_quit).await?;
    Ok(())
}

async fn idle_clients(spec: &Spec) -> R<()> {
    let a = spec.connect.as_deref().ok_or("no address")?;
    let mut keep = Vec::with_capacity(spec.peers);
    for _ in 0..spec.peers {
        keep.push(connect(a).await?);
    }
    child::ready(None, None);
    tokio::task::spawn_blocking(child::wait_quit).await?;
    Ok(())
}
