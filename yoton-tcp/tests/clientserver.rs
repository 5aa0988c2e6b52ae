//! Request/reply (`yoton_tcp::clientserver`) over real TCP on 127.0.0.1: Rust against
//! Rust, against ordinary line-based servers written here with tokio, and against the
//! Python reference (`python/clientserver_peer.py`, run with the interpreter of the
//! venv made by `scripts/python-venv.sh`; those tests FAIL, never skip, when it cannot
//! be had). Every wait is bounded; Python children are killed when their guard drops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use yoton_tcp::clientserver::{
    do_request, do_request_async, ClientServerError, RequestServer, ServerHandle,
};
use yoton_testkit::child::LineChild;
use yoton_testkit::python;

const WAIT: Duration = Duration::from_secs(5);
/// Upper bound of every wait on the Python side (its start-up included).
const PY_WAIT: Duration = Duration::from_secs(10);

const NON_ASCII: &str = "héllo wörld ✓ 🦀 日本";

fn upper(request: &str) -> String {
    request.to_uppercase()
}

/// A plain upper-casing server in a thread of its own; its handle and address.
fn upper_server() -> (ServerHandle, String) {
    let handle = RequestServer::bind("127.0.0.1:0", upper)
        .unwrap()
        .serve_in_thread()
        .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    (handle, address)
}

/// Wait (bounded) until the server has stopped.
fn wait_stopped(handle: &ServerHandle) {
    let start = Instant::now();
    while !handle.is_stopped() {
        assert!(
            start.elapsed() < WAIT,
            "server did not stop within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- Rust against Rust

#[test]
fn plain_handler_round_trip() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handle = RequestServer::bind("localhost:0", move |request: &str| {
        log.lock().unwrap().push(request.to_owned());
        if request == "empty" {
            String::new()
        } else {
            format!("Requested: {request}")
        }
    })
    .unwrap()
    .serve_in_thread()
    .unwrap();
    let address = format!("localhost:{}", handle.local().port);
    assert_eq!(handle.local().host, "127.0.0.1");

    let ask = |r: &str| do_request(&address, r, WAIT).unwrap();
    assert_eq!(ask("hi").as_deref(), Some("Requested: hi"));
    // A request that already ends with CRLF is not terminated twice.
    assert_eq!(ask("hi\r\n").as_deref(), Some("Requested: hi"));
    // An empty reply is sent as a bare CRLF and read back as "".
    assert_eq!(ask("empty").as_deref(), Some(""));
    assert_eq!(ask("").as_deref(), Some("Requested: "));
    assert_eq!(
        ask(NON_ASCII).as_deref(),
        Some(format!("Requested: {NON_ASCII}").as_str())
    );
    // The handler sees the request without its CRLF.
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["hi", "hi", "empty", "", NON_ASCII]
    );
    handle.stop();
    wait_stopped(&handle);
}

#[test]
fn plain_handler_may_forward_with_the_blocking_api() {
    let (backend, backend_address) = upper_server();
    let proxy = RequestServer::bind("127.0.0.1:0", move |r: &str| {
        match do_request(&backend_address, r, WAIT) {
            Ok(Some(reply)) => format!("via proxy: {reply}"),
            other => format!("proxy failed: {other:?}"),
        }
    })
    .unwrap()
    .serve_in_thread()
    .unwrap();
    let address = format!("127.0.0.1:{}", proxy.local().port);
    assert_eq!(
        do_request(&address, "fwd", WAIT).unwrap().as_deref(),
        Some("via proxy: FWD")
    );
    proxy.stop();
    backend.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_handler_round_trip() {
    let handle = RequestServer::bind_async_handler("127.0.0.1:0", |request: String| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        format!("async {}", request.to_uppercase())
    })
    .unwrap()
    .start()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let reply = do_request_async(&address, NON_ASCII, WAIT).await.unwrap();
    assert_eq!(
        reply.as_deref(),
        Some(format!("async {}", NON_ASCII.to_uppercase()).as_str())
    );
    // The blocking call also works on a multi-thread runtime (block_in_place).
    let reply = do_request(&address, "x", WAIT).unwrap();
    assert_eq!(reply.as_deref(), Some("async X"));
    handle.stop();
}

/// `n` requests at once from threads; the total time and the replies.
fn parallel_requests(address: &str, n: usize) -> (Duration, Vec<Option<String>>) {
    let start = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let address = address.to_owned();
            std::thread::spawn(move || do_request(&address, &format!("r{i}"), WAIT).unwrap())
        })
        .collect();
    let replies = threads.into_iter().map(|t| t.join().unwrap()).collect();
    (start.elapsed(), replies)
}

const SLOW: Duration = Duration::from_millis(600);

fn slow_upper(request: &str) -> String {
    std::thread::sleep(SLOW);
    request.to_uppercase()
}

#[test]
fn concurrent_plain_handler_overlaps_requests() {
    let handle = RequestServer::bind("127.0.0.1:0", slow_upper)
        .unwrap()
        .concurrent(true)
        .serve_in_thread()
        .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let (elapsed, replies) = parallel_requests(&address, 4);
    let expected: Vec<_> = (0..4).map(|i| Some(format!("R{i}"))).collect();
    assert_eq!(replies, expected);
    assert!(elapsed >= SLOW, "{elapsed:?}");
    // About one handler duration, not four.
    assert!(elapsed < SLOW * 2, "4 concurrent requests took {elapsed:?}");
    handle.stop();
}

#[test]
fn concurrent_async_handler_overlaps_requests() {
    let handle = RequestServer::bind_async_handler("127.0.0.1:0", |request: String| async move {
        tokio::time::sleep(SLOW).await;
        request.to_uppercase()
    })
    .unwrap()
    .concurrent(true)
    .serve_in_thread()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let (elapsed, replies) = parallel_requests(&address, 4);
    let expected: Vec<_> = (0..4).map(|i| Some(format!("R{i}"))).collect();
    assert_eq!(replies, expected);
    assert!(elapsed < SLOW * 2, "4 concurrent requests took {elapsed:?}");
    handle.stop();
}

#[test]
fn sequential_by_default() {
    let handle = RequestServer::bind("127.0.0.1:0", slow_upper)
        .unwrap()
        .serve_in_thread()
        .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let (elapsed, replies) = parallel_requests(&address, 3);
    assert!(replies.iter().all(|r| r.is_some()), "{replies:?}");
    // One after the other, as in the reference.
    assert!(
        elapsed >= SLOW * 3,
        "3 sequential requests took {elapsed:?}"
    );
    handle.stop();
}

#[test]
fn reply_time_out_returns_none() {
    let handle = RequestServer::bind("127.0.0.1:0", |r: &str| {
        std::thread::sleep(Duration::from_secs(1));
        r.to_owned()
    })
    .unwrap()
    .serve_in_thread()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let start = Instant::now();
    let reply = do_request(&address, "slow", Duration::from_millis(200)).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(reply, None);
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_millis(900),
        "{elapsed:?}"
    );
    handle.stop();
}

#[test]
fn refused_connection_names_the_address() {
    let port = free_port();
    for address in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let err = do_request(&address, "hi", WAIT).unwrap_err();
        assert!(matches!(err, ClientServerError::Connect { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&address), "{msg}");
        assert!(msg.contains("no server is listening"), "{msg}");
    }
}

#[test]
fn bad_addresses_are_clear_errors() {
    let err = do_request("ws://localhost:80", "hi", WAIT).unwrap_err();
    assert!(
        matches!(err, ClientServerError::Unsupported { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ws://localhost:80"), "{err}");
    let err = do_request("localhost", "hi", WAIT).unwrap_err();
    assert!(matches!(err, ClientServerError::Address(_)), "{err:?}");
    let err = RequestServer::bind("nonsense:x:y:z", upper).unwrap_err();
    assert!(err.to_string().contains("nonsense"), "{err}");
}

#[test]
fn hashed_port_names_are_understood() {
    // `localhost:NAME` means the port hashed from NAME, for client and server alike.
    let name = format!("localhost:yoton-rs-clientserver-{}", std::process::id());
    let port = yoton_core::Address::parse(&name).unwrap().port;
    let handle = match RequestServer::bind(&name, upper) {
        Ok(server) => server.serve_in_thread().unwrap(),
        // Someone else has that port: nothing to test here.
        Err(ClientServerError::Bind { .. }) => return,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(handle.local().port, port);
    assert_eq!(
        do_request(&name, "named", WAIT).unwrap().as_deref(),
        Some("NAMED")
    );
    handle.stop();
}

#[test]
fn handler_panic_closes_without_reply_and_server_goes_on() {
    let handle = RequestServer::bind("127.0.0.1:0", |r: &str| {
        if r == "boom" {
            panic!("handler failure requested by the test");
        }
        r.to_uppercase()
    })
    .unwrap()
    .serve_in_thread()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    // As the reference: no reply, the connection is closed, the client reads "".
    assert_eq!(
        do_request(&address, "boom", WAIT).unwrap().as_deref(),
        Some("")
    );
    assert_eq!(
        do_request(&address, "fine", WAIT).unwrap().as_deref(),
        Some("FINE")
    );
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_cannot_hold_the_server() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handle = RequestServer::bind("127.0.0.1:0", move |r: &str| {
        counter.fetch_add(1, Ordering::SeqCst);
        r.to_uppercase()
    })
    .unwrap()
    .read_timeout(Duration::from_millis(300))
    .start()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    // Sends part of a line, never the CRLF, never shuts down.
    let mut silent = TcpStream::connect(&address).await.unwrap();
    silent.write_all(b"partial").await.unwrap();
    let start = Instant::now();
    // The (sequential) server is busy with it; this request waits in the queue.
    let waiting = tokio::spawn({
        let address = address.clone();
        async move { do_request_async(&address, "next", WAIT).await }
    });
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, silent.read_to_end(&mut buf))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    let elapsed = start.elapsed();
    assert_eq!(n, 0, "no reply for an incomplete request: {buf:?}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let next = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(next.unwrap().as_deref(), Some("NEXT"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "handler not called for it");
    handle.stop();
}

#[test]
fn oversized_request_is_refused() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handle = RequestServer::bind("127.0.0.1:0", move |r: &str| {
        counter.fetch_add(1, Ordering::SeqCst);
        r.to_owned()
    })
    .unwrap()
    .max_request_size(1024)
    .serve_in_thread()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let big = "x".repeat(5000);
    match do_request(&address, &big, WAIT) {
        // Closed without a reply; depending on timing the close is a reset.
        Ok(Some(reply)) => assert_eq!(reply, ""),
        Err(ClientServerError::Io { .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        do_request(&address, "small", WAIT).unwrap().as_deref(),
        Some("small")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    handle.stop();
}

#[test]
fn stop_closes_the_listener_and_finishes_requests_in_progress() {
    let handle = RequestServer::bind("127.0.0.1:0", slow_upper)
        .unwrap()
        .serve_in_thread()
        .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let in_progress = std::thread::spawn({
        let address = address.clone();
        move || do_request(&address, "last", WAIT)
    });
    std::thread::sleep(Duration::from_millis(150));
    handle.stop();
    // Refused as soon as the listener is closed (well before the handler is done).
    let start = Instant::now();
    loop {
        match do_request(&address, "late", Duration::from_millis(200)) {
            Err(ClientServerError::Connect { .. }) => break,
            other => assert!(start.elapsed() < WAIT, "still served after stop: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        in_progress.join().unwrap().unwrap().as_deref(),
        Some("LAST")
    );
    wait_stopped(&handle);
}

#[test]
fn serve_forever_in_the_callers_thread() {
    let server = RequestServer::bind("127.0.0.1:0", upper).unwrap();
    let handle = server.handle();
    let address = format!("127.0.0.1:{}", server.local().port);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.serve_forever());
    });
    assert_eq!(
        do_request(&address, "forever", WAIT).unwrap().as_deref(),
        Some("FOREVER")
    );
    assert!(done_rx.try_recv().is_err(), "still serving");
    handle.stop();
    done_rx
        .recv_timeout(WAIT)
        .expect("serve_forever returns after stop")
        .unwrap();
    assert!(handle.is_stopped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_async_in_the_callers_task() {
    let server = RequestServer::bind("127.0.0.1:0", upper)
        .unwrap()
        .concurrent(true);
    let handle = server.handle();
    let address = format!("127.0.0.1:{}", server.local().port);
    let serving = tokio::spawn(server.serve_async());
    let reply = do_request_async(&address, "task", WAIT).await.unwrap();
    assert_eq!(reply.as_deref(), Some("TASK"));
    handle.stop();
    tokio::time::timeout(WAIT, serving)
        .await
        .expect("serve_async returns after stop")
        .unwrap()
        .unwrap();
    assert!(handle.is_stopped());
}

#[tokio::test]
async fn blocking_calls_on_a_current_thread_runtime_are_refused() {
    let (handle, address) = upper_server();
    let err = do_request(&address, "hi", WAIT).unwrap_err();
    assert!(
        matches!(err, ClientServerError::BlockingInRuntime { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("do_request_async"), "{err}");
    let err = RequestServer::bind("127.0.0.1:0", upper)
        .unwrap()
        .serve_forever()
        .unwrap_err();
    assert!(
        matches!(err, ClientServerError::BlockingInRuntime { .. }),
        "{err:?}"
    );
    // The async version works here.
    let reply = do_request_async(&address, "hi", WAIT).await.unwrap();
    assert_eq!(reply.as_deref(), Some("HI"));
    handle.stop();
}

// ------------------------------------------------ against ordinary line-based servers

/// A one-connection tokio server: reads the request until the client shuts down its
/// side (reporting the exact bytes), writes `answer`, then closes, or with
/// `keep_open` keeps the connection open for a long while.
async fn line_server(
    answer: &'static [u8],
    keep_open: bool,
) -> (String, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok(Ok((mut s, _))) = tokio::time::timeout(WAIT, listener.accept()).await else {
            return;
        };
        let mut request = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut request)).await;
        let _ = tx.send(request);
        let _ = s.write_all(answer).await;
        if keep_open {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
    });
    (address, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_server_that_answers_and_closes() {
    let (address, request) = line_server(b"hello from a line server", false).await;
    let reply = do_request_async(&address, "ping", WAIT).await.unwrap();
    assert_eq!(reply.as_deref(), Some("hello from a line server"));
    // On the wire: the request, CRLF, then the client's side shut down.
    assert_eq!(request.await.unwrap(), b"ping\r\n");

    let (address, request) = line_server("ünïcode ✓\r\n".as_bytes(), false).await;
    let reply = do_request_async(&address, "GET / HTTP/1.0\r\n", WAIT)
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some("ünïcode ✓"));
    assert_eq!(request.await.unwrap(), b"GET / HTTP/1.0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_server_that_answers_a_line_and_stays_open() {
    let (address, request) = line_server(b"pong\r\nsecond line\r\n", true).await;
    let start = Instant::now();
    let reply = do_request_async(&address, NON_ASCII, WAIT).await.unwrap();
    // Ends at the first CRLF, without waiting for the close.
    assert_eq!(reply.as_deref(), Some("pong"));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        request.await.unwrap(),
        format!("{NON_ASCII}\r\n").as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        if let Ok(Ok((s, _))) = tokio::time::timeout(WAIT, listener.accept()).await {
            tokio::time::sleep(Duration::from_secs(20)).await;
            drop(s);
        }
    });
    let start = Instant::now();
    let reply = do_request_async(&address, "anyone?", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(reply, None);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_line_client_against_the_request_server() {
    let handle = RequestServer::bind("127.0.0.1:0", upper)
        .unwrap()
        .start()
        .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    // A telnet-like client: writes a line, keeps its side open, reads until close.
    let mut s = TcpStream::connect(&address).await.unwrap();
    s.write_all("line ✓\r\n".as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut reply))
        .await
        .expect("the server closes after replying")
        .unwrap();
    assert_eq!(reply, "LINE ✓\r\n".as_bytes());
    handle.stop();
}

// ------------------------------------------------------- against the Python reference

/// Start `python/clientserver_peer.py ARGS...`: its JSON lines read with waits
/// bounded by [`PY_WAIT`], its stderr kept for diagnostics. Killed (SIGKILL) when
/// dropped.
fn peer(args: &[&str]) -> LineChild {
    python::spawn("clientserver_peer.py", args, PY_WAIT)
}

/// `serve`: the port from the ready line.
async fn ready_port(py: &mut LineChild) -> u16 {
    let v = py.expect("ready").await;
    let port = v["port"].as_u64().expect("ready.port is a number");
    u16::try_from(port).expect("a port fits in u16")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_do_request_against_python_request_server() {
    let mut py = peer(&["serve", "127.0.0.1:0"]);
    let port = ready_port(&mut py).await;
    let address = format!("127.0.0.1:{port}");
    for text in ["hello", NON_ASCII, ""] {
        let reply = do_request_async(&address, text, WAIT).await.unwrap();
        // The Python handler upper-cases the request with its CRLF; the CRLF is the
        // terminator, dropped by the Rust client.
        assert_eq!(reply, Some(text.to_uppercase()), "request {text:?}");
        // The reference hands its handler the request with the CRLF.
        let seen = py.expect("request").await;
        assert_eq!(seen["text"], format!("{text}\r\n"));
    }
    // Blocking version, from a multi-thread runtime.
    let reply = do_request(&address, "blocking", WAIT).unwrap();
    assert_eq!(reply.as_deref(), Some("BLOCKING"));
    py.expect("request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_do_request_against_rust_request_server() {
    let handle = RequestServer::bind("127.0.0.1:0", upper)
        .unwrap()
        .start()
        .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    for text in ["hello", NON_ASCII] {
        let mut py = peer(&["request", &address, text]);
        let v = py.expect("reply").await;
        // The reference's do_request keeps the terminating CRLF.
        assert_eq!(v["reply"], format!("{}\r\n", text.to_uppercase()));
        py.expect_success().await;
    }
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_do_request_against_async_concurrent_rust_server() {
    let handle = RequestServer::bind_async_handler("127.0.0.1:0", |r: String| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        format!("async:{r}")
    })
    .unwrap()
    .concurrent(true)
    .start()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let mut a = peer(&["request", &address, "one"]);
    let mut b = peer(&["request", &address, NON_ASCII]);
    assert_eq!(a.expect("reply").await["reply"], "async:one\r\n");
    assert_eq!(
        b.expect("reply").await["reply"],
        format!("async:{NON_ASCII}\r\n")
    );
    a.expect_success().await;
    b.expect_success().await;
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_do_request_time_out_against_rust_server() {
    // Reference defect: its docstring promises None on time-out, but it returns the
    // part of the reply received so far, here "".
    let handle = RequestServer::bind_async_handler("127.0.0.1:0", |r: String| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        r
    })
    .unwrap()
    .concurrent(true)
    .read_timeout(Duration::from_secs(1))
    .start()
    .unwrap();
    let address = format!("127.0.0.1:{}", handle.local().port);
    let mut py = peer(&["request", &address, "slow", "--timeout", "0.5"]);
    assert_eq!(py.expect("reply").await["reply"], "");
    py.expect_success().await;
    handle.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_do_request_refused() {
    let address = format!("127.0.0.1:{}", free_port());
    let mut py = peer(&["request", &address, "hi"]);
    let v = py.expect("error").await;
    assert_eq!(
        v["error"],
        "RuntimeError: No server is listening at the given port."
    );
}
