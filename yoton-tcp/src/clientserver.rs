//! Request/reply over short-lived TCP connections, like telnet (the reference's
//! `yoton.clientserver`: `do_request` and `RequestServer`).
//!
//! One connection carries one request and one reply:
//!
//! 1. the client connects, sends the request as UTF-8 followed by `\r\n` (not added
//!    when the text already ends with `\r\n`) and shuts down its sending side;
//! 2. the server reads the request until `\r\n` or until the client's side is shut
//!    down, calls its handler, sends the reply the same way (`\r\n` appended unless
//!    present, then its sending side shut down) and closes;
//! 3. the client reads the reply until `\r\n` or until the server closes.
//!
//! Both ends therefore also work against ordinary line-based TCP servers and clients,
//! and against the Python reference ([`do_request`] against a Python
//! `yoton.RequestServer`, a Python `yoton.do_request` against a [`RequestServer`]).
//!
//! ```
//! use std::time::Duration;
//! use yoton_tcp::clientserver::{do_request, RequestServer};
//!
//! let server = RequestServer::bind("localhost:0", |request: &str| request.to_uppercase())
//!     .unwrap()
//!     .serve_in_thread()
//!     .unwrap();
//! let address = format!("localhost:{}", server.local().port);
//! let reply = do_request(&address, "hello", Duration::from_secs(5)).unwrap();
//! assert_eq!(reply.as_deref(), Some("HELLO"));
//! server.stop();
//! ```
//!
//! # Differences from the reference (the bytes on the wire are the same)
//!
//! - The terminating `\r\n` is framing: the handler gets the request without it and
//!   [`do_request`] returns the reply without it. The reference keeps it (its handler
//!   sees `"hello\r\n"` and its `do_request` returns `"HELLO\r\n"`).
//! - A reply that does not arrive within the time-out gives `Ok(None)`, as the
//!   reference documents; the reference actually returns whatever part arrived
//!   (usually `""`). There is no "wait forever" (the reference's `timeout <= 0`):
//!   pass a long [`Duration`]. The time-out also bounds connecting; not getting a
//!   connection is an error, as in the reference.
//! - The server waits [`DEFAULT_READ_TIMEOUT`] (configurable) for a complete request
//!   and then closes the connection without calling the handler. The reference waits
//!   one second (it passes `True` as the time-out of `recv_all`) and then calls the
//!   handler with whatever arrived, usually `""`.
//! - Requests larger than [`DEFAULT_MAX_REQUEST_SIZE`] (configurable) are refused by
//!   closing the connection; the reference has no limit.
//! - Invalid UTF-8 is replaced by U+FFFD; the reference drops it.
//!
//! As in the reference, an empty reply is sent as a bare `\r\n` (read back as `""`),
//! and a handler that fails (here: panics) gets no reply sent: the
//! connection is just closed, so the client reads an empty reply, `Some("")`.
//! Only the first line of a reply reaches a client that stops at `\r\n` (both
//! implementations do), so replies should not contain `\r\n`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use yoton_core::{Address, Endpoint};

/// How long a [`RequestServer`] waits for a complete request on a connection (and
/// for its reply to be sent) before it closes that connection: 10 seconds.
///
/// ```
/// assert_eq!(yoton_tcp::clientserver::DEFAULT_READ_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request a [`RequestServer`] accepts by default: 16 MiB.
///
/// ```
/// assert_eq!(yoton_tcp::clientserver::DEFAULT_MAX_REQUEST_SIZE, 16 << 20);
/// ```
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 16 << 20;

/// How many connections a concurrent [`RequestServer`] handles at once by default: 64.
///
/// ```
/// assert_eq!(yoton_tcp::clientserver::DEFAULT_MAX_CONNECTIONS, 64);
/// ```
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

const CRLF: &[u8] = b"\r\n";

/// Everything that can go wrong with [`do_request`] and [`RequestServer`]. Messages
/// name the address concerned.
///
/// ```
/// use std::time::Duration;
/// use yoton_tcp::clientserver::{do_request, ClientServerError};
///
/// let err = do_request("localhost:70000", "hi", Duration::from_secs(1)).unwrap_err();
/// assert!(matches!(err, ClientServerError::Address(_)));
/// assert!(err.to_string().contains("localhost:70000"), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientServerError {
    /// The address could not be parsed.
    #[error(transparent)]
    Address(#[from] yoton_core::Error),
    /// The address is valid but cannot be used for request/reply.
    #[error("address `{address}` cannot be used for request/reply: {reason}")]
    Unsupported {
        /// The address as given.
        address: String,
        /// Why.
        reason: String,
    },
    /// No connection: refused (nobody listens there), unreachable, or not made within
    /// the time-out.
    #[error("no server is listening at {address}: {reason}")]
    Connect {
        /// The address as given, with the socket address it resolved to.
        address: String,
        /// The reason reported by the system.
        reason: String,
    },
    /// The server could not bind its address.
    #[error("could not listen at {address}: {source}")]
    Bind {
        /// The address as given, with the socket address it resolved to.
        address: String,
        /// The system error.
        source: io::Error,
    },
    /// Reading the reply failed (for instance the connection was reset).
    #[error("request to {address} failed: {source}")]
    Io {
        /// The address as given, with the socket address it resolved to.
        address: String,
        /// The system error.
        source: io::Error,
    },
    /// A blocking call was made on a thread of a current-thread tokio runtime, where
    /// waiting would deadlock.
    #[error("blocking call `{call}` made inside a current-thread tokio runtime would deadlock; use `{instead}`, or a multi-thread runtime")]
    BlockingInRuntime {
        /// The blocking call.
        call: &'static str,
        /// What to call instead.
        instead: &'static str,
    },
    /// A runtime or thread for the blocking API could not be started.
    #[error("could not start {what}: {source}")]
    Runtime {
        /// What could not be started.
        what: &'static str,
        /// The system error.
        source: io::Error,
    },
}

type Result<T, E = ClientServerError> = std::result::Result<T, E>;

/// Parse a TCP address; also a description "address (ip:port)" for messages.
fn tcp_address(address: &str) -> Result<(Address, String)> {
    let addr = Address::parse(address)?;
    if addr.scheme != "tcp" {
        return Err(ClientServerError::Unsupported {
            address: address.to_owned(),
            reason: format!(
                "request/reply runs over TCP; `{}://` is not supported",
                addr.scheme
            ),
        });
    }
    if !addr.path.is_empty() {
        return Err(ClientServerError::Unsupported {
            address: address.to_owned(),
            reason: format!("a TCP address has no path (`{}`)", addr.path),
        });
    }
    let target = addr.host_port();
    let shown = if address.trim() == target {
        target
    } else {
        format!("{} ({target})", address.trim())
    };
    Ok((addr, shown))
}

/// `text` with the terminating `\r\n` (not doubled), as the reference's `send_all`.
fn with_crlf(text: &str) -> String {
    if text.ends_with("\r\n") {
        text.to_owned()
    } else {
        format!("{text}\r\n")
    }
}

/// `timeout` from now; a year when that overflows.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// The end of one message.
enum Read {
    /// The bytes before the first `\r\n`, or all bytes up to the end of the stream.
    Complete(Vec<u8>),
    /// More than the limit arrived without a `\r\n`.
    TooLarge,
}

/// Read one message: until the first `\r\n` (dropped) or the end of the stream.
async fn read_message<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Read> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Read::Complete(buf));
        }
        // A `\r\n` may straddle two reads.
        let from = buf.len().saturating_sub(1);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let found = buf
            .get(from..)
            .and_then(|tail| tail.windows(2).position(|w| w == CRLF));
        if let Some(i) = found {
            buf.truncate(from + i);
            return Ok(Read::Complete(buf));
        }
        if buf.len() > limit {
            return Ok(Read::TooLarge);
        }
    }
}

fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Send a request to the server at `address` and wait for its reply (async version of
/// [`do_request`], which see).
///
/// ```
/// use std::time::Duration;
/// use yoton_tcp::clientserver::{do_request_async, RequestServer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let server = RequestServer::bind_async_handler("localhost:0", |request: String| async move {
///     format!("you said {request}")
/// })
/// .unwrap()
/// .start()
/// .unwrap();
/// let address = format!("localhost:{}", server.local().port);
/// let reply = do_request_async(&address, "hi", Duration::from_secs(5)).await.unwrap();
/// assert_eq!(reply.as_deref(), Some("you said hi"));
/// server.stop();
/// # }
/// ```
pub async fn do_request_async(
    address: &str,
    request: &str,
    timeout: Duration,
) -> Result<Option<String>> {
    let (addr, shown) = tcp_address(address)?;
    let deadline = deadline_after(timeout);
    let target = addr.host_port();
    let connected = tokio::time::timeout_at(deadline, TcpStream::connect(target.as_str())).await;
    let mut stream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(ClientServerError::Connect {
                address: shown,
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(ClientServerError::Connect {
                address: shown,
                reason: format!("no connection within {timeout:?}"),
            })
        }
    };
    // Small messages: do not wait for more to send.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("do_request {shown}: cannot set TCP_NODELAY: {e}");
    }
    let wire = with_crlf(request);
    let sent = tokio::time::timeout_at(deadline, async {
        stream.write_all(wire.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    match sent {
        Err(_) => {
            tracing::debug!("do_request {shown}: request not sent within {timeout:?}");
            return Ok(None);
        }
        // As the reference: a server may answer and close without reading; its reply
        // may still be waiting to be read.
        Ok(Err(e)) => tracing::debug!("do_request {shown}: sending the request: {e}"),
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout_at(deadline, read_message(&mut stream, usize::MAX)).await {
        Err(_) => {
            tracing::debug!("do_request {shown}: no reply within {timeout:?}");
            Ok(None)
        }
        Ok(Err(source)) => Err(ClientServerError::Io {
            address: shown,
            source,
        }),
        Ok(Ok(Read::Complete(bytes))) => Ok(Some(decode(&bytes))),
        // Not reached: the limit is usize::MAX.
        Ok(Ok(Read::TooLarge)) => Ok(None),
    }
}

/// Send a request to the server at `address` and wait for its reply, blocking the
/// calling thread; the reference's `yoton.do_request`.
///
/// Opens a TCP connection, sends `request` followed by `\r\n` (unless it already ends
/// with `\r\n`), shuts down its sending side, reads the reply until `\r\n` or until the
/// server closes, and returns the reply without its `\r\n`. The server may be a
/// [`RequestServer`], a Python `yoton.RequestServer` or any line-based TCP server.
///
/// `timeout` bounds the whole exchange. Returns `Ok(None)` when no complete reply
/// arrived in time, and [`ClientServerError::Connect`] (naming the address) when no
/// connection could be made in time, for instance because nobody listens there.
/// `address` is `host:port` as for contexts, so `localhost:name` uses the port hashed
/// from `name`.
///
/// Usable from any thread outside a tokio runtime, from a multi-thread runtime's
/// thread (through `block_in_place`) and from the plain handler of a
/// [`RequestServer`] served by [`RequestServer::serve_in_thread`] or
/// [`RequestServer::serve_forever`]; on a thread of a current-thread runtime it
/// returns [`ClientServerError::BlockingInRuntime`]: use [`do_request_async`] there.
///
/// ```
/// use std::time::Duration;
/// use yoton_tcp::clientserver::{do_request, RequestServer};
///
/// let server = RequestServer::bind("localhost:0", |request: &str| format!("Requested: {request}"))
///     .unwrap()
///     .serve_in_thread()
///     .unwrap();
/// let address = format!("localhost:{}", server.local().port);
/// let reply = do_request(&address, "wörld", Duration::from_secs(5)).unwrap();
/// assert_eq!(reply.as_deref(), Some("Requested: wörld"));
/// server.stop();
/// ```
pub fn do_request(address: &str, request: &str, timeout: Duration) -> Result<Option<String>> {
    block_on(
        "do_request",
        "do_request_async",
        Own::CurrentThread,
        do_request_async(address, request, timeout),
    )
}

/// The runtime a blocking call runs on outside any runtime.
#[derive(Clone, Copy)]
enum Own {
    /// A current-thread runtime (for a client's request: no extra thread).
    CurrentThread,
    /// A multi-thread runtime with one worker (for a server: its plain handlers, on
    /// the blocking pool, may then use the blocking API, e.g. to forward a request).
    OneWorker,
}

fn own_runtime(kind: Own, what: &'static str) -> Result<Runtime> {
    let mut builder = match kind {
        Own::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Own::OneWorker => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(1).thread_name("yoton-request-server");
            b
        }
    };
    builder
        .enable_all()
        .build()
        .map_err(|source| ClientServerError::Runtime { what, source })
}

/// Run `fut` to completion from blocking code: on a runtime of its own outside any
/// runtime, through `block_in_place` on a multi-thread runtime, refused on a
/// current-thread runtime (it would deadlock).
fn block_on<T, F>(call: &'static str, instead: &'static str, own: Own, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    match Handle::try_current() {
        Err(_) => {
            let rt = own_runtime(own, "a tokio runtime")?;
            let out = rt.block_on(fut);
            // Do not wait for blocking tasks left behind (e.g. a name lookup or a
            // request handler that outlived its server).
            rt.shutdown_background();
            out
        }
        Ok(handle) => match handle.runtime_flavor() {
            RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| handle.block_on(fut)),
            _ => Err(ClientServerError::BlockingInRuntime { call, instead }),
        },
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = String> + Send>>;
type PlainFn = dyn Fn(&str) -> String + Send + Sync;
type AsyncFn = dyn Fn(String) -> BoxFuture + Send + Sync;

/// The user's request handler.
#[derive(Clone)]
enum Handler {
    /// Runs on tokio's blocking thread pool.
    Plain(Arc<PlainFn>),
    /// Runs as a task.
    Async(Arc<AsyncFn>),
}

impl Handler {
    /// The reply, or None when the handler panicked (or was cancelled).
    async fn call(&self, request: String) -> Option<String> {
        let joined = match self {
            Handler::Plain(f) => {
                let f = Arc::clone(f);
                tokio::task::spawn_blocking(move || f(&request)).await
            }
            Handler::Async(f) => tokio::spawn(f(request)).await,
        };
        match joined {
            Ok(reply) => Some(reply),
            Err(e) => {
                tracing::error!("request handler failed, closing without a reply: {e}");
                None
            }
        }
    }
}

/// Settings shared by the connections of one server.
struct Shared {
    handler: Handler,
    read_timeout: Duration,
    max_request_size: usize,
}

/// State shared between a server and its handles.
struct Control {
    local: Endpoint,
    stop: watch::Sender<bool>,
    stopped: AtomicBool,
}

/// Marks the server stopped when dropped (the serving loop ended, or it never ran).
struct StoppedGuard(Arc<Control>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::SeqCst);
    }
}

/// A server answering one request per TCP connection with a handler; the reference's
/// `yoton.RequestServer`.
///
/// [`RequestServer::bind`] (plain handler, `Fn(&str) -> String`) or
/// [`RequestServer::bind_async_handler`] (async handler) binds the address right away,
/// so [`RequestServer::local`] tells the port also for port 0. Then serve in a thread
/// of its own ([`RequestServer::serve_in_thread`]), as a task of the current tokio
/// runtime ([`RequestServer::start`]), in the caller's thread
/// ([`RequestServer::serve_forever`]) or in the caller's task
/// ([`RequestServer::serve_async`]). Stop it with [`ServerHandle::stop`].
///
/// Each connection: the request is read until `\r\n` or until the client shuts down
/// its sending side (at most [`RequestServer::read_timeout`], otherwise the connection
/// is closed without calling the handler), the handler is called with the request
/// (without its `\r\n`), its reply is sent followed by `\r\n` and the connection is
/// closed. A handler that panics gets no reply sent. By default connections are
/// handled one after the other, as in the reference; [`RequestServer::concurrent`]
/// handles each in its own task (plain handlers run on tokio's blocking thread pool,
/// so a slow plain handler never stalls the server's runtime).
///
/// ```
/// use std::time::Duration;
/// use yoton_tcp::clientserver::{do_request, RequestServer};
///
/// let server = RequestServer::bind("127.0.0.1:0", |request: &str| request.chars().rev().collect())
///     .unwrap()
///     .concurrent(true)
///     .read_timeout(Duration::from_secs(2));
/// let handle = server.serve_in_thread().unwrap();
/// let address = format!("127.0.0.1:{}", handle.local().port);
/// let reply = do_request(&address, "abc", Duration::from_secs(5)).unwrap();
/// assert_eq!(reply.as_deref(), Some("cba"));
/// handle.stop();
/// ```
pub struct RequestServer {
    listener: std::net::TcpListener,
    address: String,
    handler: Handler,
    concurrent: bool,
    read_timeout: Duration,
    max_request_size: usize,
    max_connections: usize,
    control: Arc<Control>,
    guard: StoppedGuard,
}

impl fmt::Debug for RequestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestServer")
            .field("address", &self.address)
            .field("local", &self.control.local)
            .field("concurrent", &self.concurrent)
            .field("read_timeout", &self.read_timeout)
            .field("max_request_size", &self.max_request_size)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl RequestServer {
    /// Bind `address` (`host:port`; port 0 picks a free port; `localhost:name` hashes
    /// the name as contexts do) and answer requests with a plain handler. The handler
    /// runs on tokio's blocking thread pool, so it may block.
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |request: &str| request.len().to_string()).unwrap();
    /// assert_ne!(server.local().port, 0);
    /// let taken = format!("localhost:{}", server.local().port);
    /// let err = RequestServer::bind(&taken, |r: &str| r.to_owned()).unwrap_err();
    /// assert!(err.to_string().contains(&taken), "{err}");
    /// ```
    pub fn bind<F>(address: &str, handler: F) -> Result<RequestServer>
    where
        F: Fn(&str) -> String + Send + Sync + 'static,
    {
        RequestServer::bind_with(address, Handler::Plain(Arc::new(handler)))
    }

    /// Bind `address` as [`RequestServer::bind`] does, and answer requests with an
    /// async handler (it gets the request as an owned `String`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_tcp::clientserver::{do_request, RequestServer};
    ///
    /// let server = RequestServer::bind_async_handler("localhost:0", |request: String| async move {
    ///     tokio::time::sleep(Duration::from_millis(10)).await;
    ///     request.to_uppercase()
    /// })
    /// .unwrap()
    /// .serve_in_thread()
    /// .unwrap();
    /// let address = format!("localhost:{}", server.local().port);
    /// assert_eq!(do_request(&address, "ok", Duration::from_secs(5)).unwrap().as_deref(), Some("OK"));
    /// server.stop();
    /// ```
    pub fn bind_async_handler<F, Fut>(address: &str, handler: F) -> Result<RequestServer>
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        let boxed = move |request: String| -> BoxFuture { Box::pin(handler(request)) };
        RequestServer::bind_with(address, Handler::Async(Arc::new(boxed)))
    }

    fn bind_with(address: &str, handler: Handler) -> Result<RequestServer> {
        let (addr, shown) = tcp_address(address)?;
        let bind_error = |source| ClientServerError::Bind {
            address: shown.clone(),
            source,
        };
        // std sets SO_REUSEADDR on Unix, as the reference does.
        let listener =
            std::net::TcpListener::bind(addr.host_port().as_str()).map_err(bind_error)?;
        let local: SocketAddr = listener.local_addr().map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let (stop, _) = watch::channel(false);
        let control = Arc::new(Control {
            local: Endpoint {
                host: local.ip().to_string(),
                port: local.port(),
            },
            stop,
            stopped: AtomicBool::new(false),
        });
        tracing::debug!("request server bound at {shown}, port {}", local.port());
        Ok(RequestServer {
            listener,
            address: shown,
            handler,
            concurrent: false,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            guard: StoppedGuard(Arc::clone(&control)),
            control,
        })
    }

    /// Handle each connection in its own task (the reference's `async_val`), at most
    /// [`RequestServer::max_connections`] at once. Default: `false`, one connection
    /// after the other.
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap().concurrent(true);
    /// assert!(format!("{server:?}").contains("concurrent: true"));
    /// ```
    pub fn concurrent(mut self, concurrent: bool) -> RequestServer {
        self.concurrent = concurrent;
        self
    }

    /// How long a connection may take to deliver its complete request (and, separately,
    /// to take the reply); after that it is closed without a reply, so a client that
    /// never sends its line cannot hold the server. Default [`DEFAULT_READ_TIMEOUT`]
    /// (10 s). After [`ServerHandle::stop`], connections in progress get this long to
    /// finish.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned())
    ///     .unwrap()
    ///     .read_timeout(Duration::from_secs(1));
    /// assert!(format!("{server:?}").contains("read_timeout: 1s"));
    /// ```
    pub fn read_timeout(mut self, timeout: Duration) -> RequestServer {
        self.read_timeout = timeout;
        self
    }

    /// The largest request accepted, in bytes; a longer one closes the connection
    /// without a reply. Default [`DEFAULT_MAX_REQUEST_SIZE`] (16 MiB).
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap().max_request_size(1024);
    /// assert!(format!("{server:?}").contains("max_request_size: 1024"));
    /// ```
    pub fn max_request_size(mut self, bytes: usize) -> RequestServer {
        self.max_request_size = bytes;
        self
    }

    /// How many connections a [concurrent](RequestServer::concurrent) server handles at
    /// once (at least 1); further clients wait in the listen queue. Default
    /// [`DEFAULT_MAX_CONNECTIONS`] (64).
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned())
    ///     .unwrap()
    ///     .concurrent(true)
    ///     .max_connections(8);
    /// assert!(format!("{server:?}").contains("max_connections: 8"));
    /// ```
    pub fn max_connections(mut self, connections: usize) -> RequestServer {
        self.max_connections = connections.max(1);
        self
    }

    /// The bound address (the real port when bound at port 0).
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap();
    /// assert_eq!(server.local().host, "127.0.0.1");
    /// assert_ne!(server.local().port, 0);
    /// ```
    pub fn local(&self) -> Endpoint {
        self.control.local.clone()
    }

    /// A handle to stop the server later, for instance from another thread while
    /// [`RequestServer::serve_forever`] runs, or from the handler itself.
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap();
    /// let handle = server.handle();
    /// handle.stop(); // before serving: serve_forever returns at once
    /// server.serve_forever().unwrap();
    /// assert!(handle.is_stopped());
    /// ```
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            control: Arc::clone(&self.control),
        }
    }

    /// Serve in a new thread of its own (with a tokio runtime of one worker thread);
    /// works from anywhere. Returns at once with a handle.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_tcp::clientserver::{do_request, RequestServer};
    ///
    /// let handle = RequestServer::bind("localhost:0", |r: &str| r.to_owned())
    ///     .unwrap()
    ///     .serve_in_thread()
    ///     .unwrap();
    /// let address = format!("localhost:{}", handle.local().port);
    /// assert_eq!(do_request(&address, "echo", Duration::from_secs(5)).unwrap().as_deref(), Some("echo"));
    /// handle.stop();
    /// ```
    pub fn serve_in_thread(self) -> Result<ServerHandle> {
        let rt = own_runtime(Own::OneWorker, "the runtime of a request server")?;
        let handle = self.handle();
        let serving = {
            // Register the listener with the new runtime.
            let _enter = rt.enter();
            self.into_serving()?
        };
        let name = format!("yoton-request-server-{}", handle.local().port);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                rt.block_on(serving);
                rt.shutdown_background();
            })
            .map_err(|source| ClientServerError::Runtime {
                what: "the thread of a request server",
                source,
            })?;
        Ok(handle)
    }

    /// Serve as a task of the current tokio runtime, or, outside any runtime, in a
    /// thread of its own (as [`RequestServer::serve_in_thread`]). Returns at once with a
    /// handle.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_tcp::clientserver::{do_request_async, RequestServer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap().start().unwrap();
    /// let address = format!("localhost:{}", handle.local().port);
    /// let reply = do_request_async(&address, "echo", Duration::from_secs(5)).await.unwrap();
    /// assert_eq!(reply.as_deref(), Some("echo"));
    /// handle.stop();
    /// # }
    /// ```
    pub fn start(self) -> Result<ServerHandle> {
        match Handle::try_current() {
            Ok(rt) => {
                let handle = self.handle();
                let serving = self.into_serving()?;
                rt.spawn(serving);
                Ok(handle)
            }
            Err(_) => self.serve_in_thread(),
        }
    }

    /// Serve in the caller's thread until [stopped](ServerHandle::stop) (take a
    /// [`RequestServer::handle`] first). Works outside any runtime and on a
    /// multi-thread runtime's thread (through `block_in_place`); on a current-thread
    /// runtime it returns [`ClientServerError::BlockingInRuntime`]: use
    /// [`RequestServer::serve_async`] or [`RequestServer::start`] there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_tcp::clientserver::{do_request, RequestServer};
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap();
    /// let handle = server.handle();
    /// let address = format!("localhost:{}", server.local().port);
    /// let client = std::thread::spawn(move || {
    ///     let reply = do_request(&address, "bye", Duration::from_secs(5));
    ///     handle.stop();
    ///     reply
    /// });
    /// server.serve_forever().unwrap();
    /// assert_eq!(client.join().unwrap().unwrap().as_deref(), Some("bye"));
    /// ```
    pub fn serve_forever(self) -> Result<()> {
        block_on(
            "serve_forever",
            "serve_async().await or start()",
            Own::OneWorker,
            self.serve_async(),
        )
    }

    /// Serve in the caller's task until [stopped](ServerHandle::stop) (take a
    /// [`RequestServer::handle`] first); then connections in progress get
    /// [`RequestServer::read_timeout`] to finish.
    ///
    /// ```
    /// use std::time::Duration;
    /// use yoton_tcp::clientserver::{do_request_async, RequestServer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap();
    /// let handle = server.handle();
    /// let address = format!("localhost:{}", server.local().port);
    /// let serving = tokio::spawn(server.serve_async());
    /// let reply = do_request_async(&address, "async", Duration::from_secs(5)).await.unwrap();
    /// assert_eq!(reply.as_deref(), Some("async"));
    /// handle.stop();
    /// serving.await.unwrap().unwrap();
    /// # }
    /// ```
    pub async fn serve_async(self) -> Result<()> {
        self.into_serving()?.await;
        Ok(())
    }

    /// Register the listener with the current runtime; the serving future.
    fn into_serving(self) -> Result<impl Future<Output = ()> + Send + 'static> {
        let RequestServer {
            listener,
            address,
            handler,
            concurrent,
            read_timeout,
            max_request_size,
            max_connections,
            control,
            guard,
        } = self;
        let listener =
            TcpListener::from_std(listener).map_err(|source| ClientServerError::Bind {
                address: address.clone(),
                source,
            })?;
        let shared = Arc::new(Shared {
            handler,
            read_timeout,
            max_request_size,
        });
        let slots = if concurrent { max_connections } else { 1 };
        Ok(async move {
            serve(listener, &address, shared, slots, &control).await;
            drop(guard);
        })
    }
}

/// The accept loop: one connection per permit, until stopped.
async fn serve(
    listener: TcpListener,
    address: &str,
    shared: Arc<Shared>,
    slots: usize,
    control: &Control,
) {
    tracing::debug!("request server hosting at {address}");
    let mut stop = control.stop.subscribe();
    let permits = Arc::new(Semaphore::new(slots));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        if *stop.borrow_and_update() {
            break;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            changed = stop.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = stop.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        match accepted {
            Ok((stream, peer)) => {
                tracing::debug!("request server {address}: handling a request from {peer}");
                let shared = Arc::clone(&shared);
                tasks.spawn(async move {
                    handle_connection(stream, peer, &shared).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: wait a little instead of spinning.
                tracing::warn!("request server {address}: accept failed: {e}");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracing::debug!("request server {address}: stopped listening");
    if !tasks.is_empty() {
        let finish = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(shared.read_timeout, finish)
            .await
            .is_err()
        {
            tracing::warn!(
                "request server {address}: abandoning {} connection(s) still in progress",
                tasks.len()
            );
        }
        tasks.abort_all();
    }
}

/// One connection: read the request, call the handler, send the reply, close.
async fn handle_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("request from {peer}: cannot set TCP_NODELAY: {e}");
    }
    let limit = shared.max_request_size;
    let read = tokio::time::timeout(shared.read_timeout, read_message(&mut stream, limit)).await;
    let request = match read {
        Err(_) => {
            tracing::debug!(
                "request from {peer}: incomplete after {:?}; closing without a reply",
                shared.read_timeout
            );
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!("request from {peer}: {e}");
            return;
        }
        Ok(Ok(Read::TooLarge)) => {
            tracing::warn!(
                "request from {peer}: larger than {limit} bytes; closing without a reply"
            );
            return;
        }
        Ok(Ok(Read::Complete(bytes))) => decode(&bytes),
    };
    let Some(reply) = shared.handler.call(request).await else {
        return;
    };
    let wire = with_crlf(&reply);
    let sent = tokio::time::timeout(shared.read_timeout, async {
        stream.write_all(wire.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    match sent {
        Err(_) => tracing::debug!(
            "reply to {peer}: not taken within {:?}",
            shared.read_timeout
        ),
        Ok(Err(e)) => tracing::debug!("reply to {peer}: {e}"),
        Ok(Ok(())) => {}
    }
    // Closing with unread input makes the kernel reset the connection, which can
    // destroy the reply before the client reads it: discard what already arrived.
    let mut scratch = [0u8; 4096];
    for _ in 0..64 {
        match stream.try_read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// A handle to a running [`RequestServer`]: its address, and a way to stop it.
/// Cloning gives another handle to the same server; dropping handles does not stop it.
///
/// ```
/// use std::time::{Duration, Instant};
/// use yoton_tcp::clientserver::{do_request, RequestServer};
///
/// let handle = RequestServer::bind("localhost:0", |r: &str| r.to_owned())
///     .unwrap()
///     .serve_in_thread()
///     .unwrap();
/// let address = format!("localhost:{}", handle.local().port);
/// handle.stop();
/// let start = Instant::now();
/// while !handle.is_stopped() && start.elapsed() < Duration::from_secs(5) {
///     std::thread::sleep(Duration::from_millis(5));
/// }
/// assert!(handle.is_stopped());
/// assert!(do_request(&address, "anyone?", Duration::from_secs(1)).is_err());
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    control: Arc<Control>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local", &self.control.local)
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl ServerHandle {
    /// The address the server is bound at (the real port when bound at port 0).
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("127.0.0.1:0", |r: &str| r.to_owned()).unwrap();
    /// let port = server.local().port;
    /// let handle = server.serve_in_thread().unwrap();
    /// assert_eq!(handle.local().port, port);
    /// handle.stop();
    /// ```
    pub fn local(&self) -> Endpoint {
        self.control.local.clone()
    }

    /// Stop the server: it stops accepting and closes its listening socket at once;
    /// connections in progress get [`RequestServer::read_timeout`] to finish. Returns
    /// without waiting; see [`ServerHandle::is_stopped`]. Stopping twice is harmless.
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let handle = RequestServer::bind("localhost:0", |r: &str| r.to_owned())
    ///     .unwrap()
    ///     .serve_in_thread()
    ///     .unwrap();
    /// handle.stop();
    /// handle.stop();
    /// ```
    pub fn stop(&self) {
        self.control.stop.send_replace(true);
    }

    /// Whether the server has finished: no longer listening and no connection in
    /// progress (also true for a server dropped without serving).
    ///
    /// ```
    /// use yoton_tcp::clientserver::RequestServer;
    ///
    /// let server = RequestServer::bind("localhost:0", |r: &str| r.to_owned()).unwrap();
    /// let handle = server.handle();
    /// assert!(!handle.is_stopped());
    /// drop(server);
    /// assert!(handle.is_stopped());
    /// ```
    pub fn is_stopped(&self) -> bool {
        self.control.stopped.load(Ordering::SeqCst)
    }
}
