//! The `Transport` trait and the registry that finds a transport by address scheme.
//!
//! A transport turns an [`Address`] into links. Byte-stream transports return a
//! [`RawStream`] and message transports a [`crate::messages::RawMessages`]; core runs
//! the handshake and the framing ([`crate::stream`], [`crate::messages`]), so each
//! transport crate only opens sockets.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::address::Address;
use crate::link::Endpoint;
use crate::stream::RawStream;

/// What a transport hands to core before the handshake: a byte stream (TCP, TLS, QUIC
/// streams, pipes) or a message link (WebSocket).
pub enum Incoming {
    /// A byte stream; core frames packages with the header codec.
    Stream(RawStream),
    /// A message link; one package per message.
    Messages(crate::messages::RawMessages),
}

impl From<RawStream> for Incoming {
    fn from(s: RawStream) -> Self {
        Incoming::Stream(s)
    }
}

impl From<crate::messages::RawMessages> for Incoming {
    fn from(m: crate::messages::RawMessages) -> Self {
        Incoming::Messages(m)
    }
}

/// An error from a transport (it becomes the reason of a failed bind or connect).
///
/// A connect attempt that fails is retried until the time-out of
/// [`Context::connect`](crate::Context::connect) (the other side may not be up yet),
/// unless the error is *permanent*: a refused certificate, an invalid setting, a
/// server that answers in another protocol. Retrying cannot mend those, so `connect`
/// reports them at once ([`Error::ConnectFailed`](crate::Error::ConnectFailed)).
///
/// ```
/// use yoton_core::transport::TransportError;
/// let e = TransportError::new("connection refused");
/// assert!(!e.permanent);
/// let e = TransportError::permanent("the server's certificate is not trusted");
/// assert!(e.permanent);
/// assert_eq!(e.to_string(), "the server's certificate is not trusted");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct TransportError {
    /// What went wrong, in words that say what to do.
    pub reason: String,
    /// Retrying cannot help: `connect` fails at once instead of retrying.
    pub permanent: bool,
}

impl TransportError {
    /// An error that a later attempt may not meet (nobody listens yet, a reset).
    pub fn new(reason: impl Into<String>) -> Self {
        TransportError {
            reason: reason.into(),
            permanent: false,
        }
    }

    /// An error that every attempt would meet (see [`TransportError`]).
    pub fn permanent(reason: impl Into<String>) -> Self {
        TransportError {
            reason: reason.into(),
            permanent: true,
        }
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        TransportError::new(e.to_string())
    }
}

/// A listening endpoint of a transport.
#[async_trait]
pub trait TransportListener: Send + 'static {
    /// The address actually bound (with the real port when port 0 was asked for).
    fn local(&self) -> Endpoint;
    /// Wait for the next raw connection.
    async fn accept(&mut self) -> Result<Incoming, TransportError>;
    /// Stop listening before the listener is dropped. A listener whose socket lives
    /// in a task of its own ends that task here, so that once this returns (and the
    /// listener is dropped) the address can be bound again; one that owns its socket
    /// needs nothing (the default).
    async fn close(&mut self) {}
}

/// A way to reach other contexts, selected by address scheme.
///
/// ```
/// use yoton_core::transport::Transport;
/// let t = yoton_core::inproc::InprocTransport;
/// assert_eq!(t.schemes(), &["inproc"]);
/// ```
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// The schemes this transport serves, lower-case, e.g. `["tcp"]`.
    fn schemes(&self) -> &'static [&'static str];
    /// Start listening at `addr`.
    async fn listen(&self, addr: &Address) -> Result<Box<dyn TransportListener>, TransportError>;
    /// One attempt to open a raw connection to `addr` (the context retries).
    async fn connect(&self, addr: &Address) -> Result<Incoming, TransportError>;
}

/// Transports by scheme.
///
/// ```
/// use yoton_core::transport::Registry;
/// let mut r = Registry::new();
/// r.register(std::sync::Arc::new(yoton_core::inproc::InprocTransport));
/// assert!(r.get("inproc").is_some());
/// assert!(r.get("ws").is_none());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    by_scheme: HashMap<&'static str, Arc<dyn Transport>>,
    hints: HashMap<String, String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the in-process transport.
    pub fn with_inproc() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(crate::inproc::InprocTransport));
        r
    }

    /// Add (or replace) the transport for each of its schemes.
    pub fn register(&mut self, t: Arc<dyn Transport>) {
        for s in t.schemes() {
            self.by_scheme.insert(s, t.clone());
        }
    }

    /// Advice to show when `scheme` is used but not registered (e.g. "ws:// needs
    /// the `ws` feature of yoton").
    pub fn set_hint(&mut self, scheme: &str, hint: &str) {
        self.hints.insert(scheme.to_owned(), hint.to_owned());
    }

    /// The transport for a scheme.
    pub fn get(&self, scheme: &str) -> Option<Arc<dyn Transport>> {
        self.by_scheme.get(scheme).cloned()
    }

    /// The transport for an address, or an error that names the scheme.
    pub fn for_address(&self, addr: &Address) -> crate::Result<Arc<dyn Transport>> {
        self.get(&addr.scheme)
            .ok_or_else(|| crate::Error::UnknownScheme {
                scheme: addr.scheme.clone(),
                address: addr.to_string(),
                hint: match self.hints.get(&addr.scheme) {
                    Some(h) => format!(": {h}"),
                    None => {
                        let mut known: Vec<_> = self.by_scheme.keys().copied().collect();
                        known.sort_unstable();
                        format!("; registered: {}", known.join(", "))
                    }
                },
            })
    }

    /// The registered schemes, sorted.
    pub fn schemes(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.by_scheme.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("schemes", &self.schemes())
            .finish()
    }
}

/// How many transport-level handshakes (TLS, WebSocket upgrade, QUIC) a listener runs
/// at once; clients beyond are refused at once, so that silent or slow clients cannot
/// pile up tasks and memory.
pub const MAX_TRANSPORT_HANDSHAKES: usize = 64;

/// The transport-level handshakes of one listener, each in a task of its own (a slow
/// client does not hold up the others), at most a limit at once. Dropping it stops
/// the handshakes in progress.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use yoton_core::transport::Handshakes;
/// let mut h = Handshakes::new(1);
/// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
/// // One in progress (it waits for `tx`)...
/// assert!(h.try_spawn(rx, |rx| async move { let _ = rx.await; }).is_ok());
/// // ... so the next client is handed back, to be refused.
/// assert_eq!(h.try_spawn("client 2", |_| async {}).unwrap_err(), "client 2");
/// drop(tx);
/// # });
/// ```
#[derive(Debug)]
pub struct Handshakes {
    tasks: tokio::task::JoinSet<()>,
    limit: usize,
}

impl Handshakes {
    /// At most `limit` handshakes at once.
    pub fn new(limit: usize) -> Self {
        Handshakes {
            tasks: tokio::task::JoinSet::new(),
            limit,
        }
    }

    /// Run `handshake(client)` in its own task, unless the limit is reached: then the
    /// client comes back (and a warning names the limit) for the caller to refuse.
    pub fn try_spawn<T, F>(&mut self, client: T, handshake: impl FnOnce(T) -> F) -> Result<(), T>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // The handshakes still running are the tasks not yet finished.
        while self.tasks.try_join_next().is_some() {}
        if self.tasks.len() >= self.limit {
            tracing::warn!(
                limit = self.limit,
                "too many handshakes in progress; refused a new client"
            );
            return Err(client);
        }
        self.tasks.spawn(handshake(client));
        Ok(())
    }
}
