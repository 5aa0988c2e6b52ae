//! TCP for the transports built on it (`tcp://`, `tls://`, `ws://`, `wss://`):
//! [`bind_tcp`] binds a listening socket as every one of them does, [`tcp_ends`]
//! readies a connected stream and names its two ends, and a [`HandshakingListener`]
//! runs each accepted socket through a transport-level handshake (TLS, a WebSocket
//! upgrade) before it hands it to the context.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::link::Endpoint;
use crate::transport::{
    Handshakes, Incoming, TransportError, TransportListener, MAX_TRANSPORT_HANDSHAKES,
};

/// Sockets waiting for a context's `accept` once their handshake is done.
const READY_QUEUE: usize = 16;

/// Bind a listening TCP socket at `addr`, with `SO_REUSEADDR` as the Python
/// reference (a port left in `TIME_WAIT` by an earlier run can be reused) and a
/// backlog of 1,024. Port 0 picks a free port.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let l = yoton_core::listen::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
/// assert_ne!(l.local_addr().unwrap().port(), 0);
/// # });
/// ```
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, TransportError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|e| TransportError::new(format!("cannot bind {addr}: {e}")))?;
    Ok(socket.listen(1024)?)
}

/// Ready a connected (or accepted) stream for Yoton, as every transport on TCP does:
/// `TCP_NODELAY` on (small packages go out at once; the writer batches them itself),
/// and the local and peer ends of the socket.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let l = yoton_core::listen::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
/// let s = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
/// let (local, peer) = yoton_core::listen::tcp_ends(&s).unwrap();
/// assert_eq!(peer.port, l.local_addr().unwrap().port());
/// assert_eq!(local.host, "127.0.0.1");
/// assert!(s.nodelay().unwrap());
/// # });
/// ```
pub fn tcp_ends(stream: &TcpStream) -> std::io::Result<(Endpoint, Endpoint)> {
    stream.set_nodelay(true)?;
    Ok((stream.local_addr()?.into(), stream.peer_addr()?.into()))
}

type Ready = Result<Incoming, TransportError>;

/// A listener whose accepted sockets each go through a transport-level handshake in
/// a task of its own, bounded by a time-out, so that a slow or silent client does
/// not hold up the others; at most [`MAX_TRANSPORT_HANDSHAKES`] at once (more
/// sockets are closed at once). A refused or late client is logged and dropped; the
/// listener goes on. Dropping it stops accepting and the handshakes in progress.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use yoton_core::listen::{bind_tcp, tcp_ends, HandshakingListener};
/// use yoton_core::stream::RawStream;
/// use yoton_core::transport::TransportListener;
///
/// // A "handshake" that wants the line `hi\n` first.
/// let tcp = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
/// let mut listener = HandshakingListener::spawn(tcp, "greeting", Duration::from_secs(2), |mut s| async move {
///     let mut line = [0u8; 3];
///     s.read_exact(&mut line).await.map_err(|e| e.to_string())?;
///     if &line != b"hi\n" {
///         return Err(format!("no greeting: {line:?}"));
///     }
///     let (local, peer) = tcp_ends(&s).map_err(|e| e.to_string())?;
///     let (r, w) = s.into_split();
///     Ok(RawStream { reader: Box::new(r), writer: Box::new(w), local, peer }.into())
/// })
/// .unwrap();
/// let at = listener.local().port;
/// let mut rude = tokio::net::TcpStream::connect(("127.0.0.1", at)).await.unwrap();
/// rude.write_all(b"yo\n").await.unwrap();
/// let mut polite = tokio::net::TcpStream::connect(("127.0.0.1", at)).await.unwrap();
/// polite.write_all(b"hi\n").await.unwrap();
/// // Only the polite client is handed out.
/// let incoming = listener.accept().await.unwrap();
/// let yoton_core::transport::Incoming::Stream(s) = incoming else { unreachable!() };
/// assert_eq!(s.peer.port, polite.local_addr().unwrap().port());
/// # });
/// ```
pub struct HandshakingListener {
    local: Endpoint,
    what: &'static str,
    rx: mpsc::Receiver<Ready>,
    task: JoinHandle<()>,
}

impl HandshakingListener {
    /// Accept on `listener` and run `handshake` on each socket, within `timeout`.
    /// `what` names the handshake in the log ("TLS", "WebSocket"); `handshake`'s
    /// error says why a client was refused.
    pub fn spawn<F, Fut>(
        listener: TcpListener,
        what: &'static str,
        timeout: Duration,
        handshake: F,
    ) -> Result<Self, TransportError>
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Incoming, String>> + Send + 'static,
    {
        let local = listener.local_addr()?.into();
        let (tx, rx) = mpsc::channel(READY_QUEUE);
        let task = tokio::spawn(accept_loop(listener, what, timeout, handshake, tx));
        Ok(HandshakingListener {
            local,
            what,
            rx,
            task,
        })
    }
}

impl Drop for HandshakingListener {
    fn drop(&mut self) {
        // Stops accepting and the handshakes in progress (`Handshakes` is dropped).
        self.task.abort();
    }
}

#[async_trait]
impl TransportListener for HandshakingListener {
    fn local(&self) -> Endpoint {
        self.local.clone()
    }

    async fn close(&mut self) {
        // The socket is the accept task's: it is closed once the task is dropped,
        // which awaiting the aborted task waits for.
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    async fn accept(&mut self) -> Result<Incoming, TransportError> {
        match self.rx.recv().await {
            Some(ready) => ready,
            None => Err(TransportError::new(format!(
                "the {} listener stopped",
                self.what
            ))),
        }
    }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    timeout: Duration,
    handshake: F,
    tx: mpsc::Sender<Ready>,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = Result<Incoming, String>> + Send + 'static,
{
    let mut handshakes = Handshakes::new(MAX_TRANSPORT_HANDSHAKES);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // As for plain TCP, the context decides what an accept error means.
                if tx.send(Err(e.into())).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer: Endpoint = stream.peer_addr().map(Into::into).unwrap_or_default();
        let (running, tx) = (handshake(stream), tx.clone());
        // Over the limit the handshake comes back and is dropped (the socket closed)
        // at once.
        let _ = handshakes.try_spawn(running, |running| async move {
            match tokio::time::timeout(timeout, running).await {
                Ok(Ok(raw)) => {
                    let _ = tx.send(Ok(raw)).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "refused a {what} client; still listening");
                }
                Err(_) => tracing::info!(
                    %peer,
                    ?timeout,
                    "a {what} client did not finish its handshake in time; dropped it"
                ),
            }
        });
    }
}
