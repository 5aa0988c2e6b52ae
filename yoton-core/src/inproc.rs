//! In-process transport (`inproc://NAME`): contexts in one process joined by in-memory
//! pipes. It goes through the same handshake and framing as TCP, which makes it a
//! fast and faithful transport for tests.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::address::Address;
use crate::link::Endpoint;
use crate::stream::RawStream;
use crate::transport::{Incoming, Transport, TransportError, TransportListener};

/// Buffer size of each in-memory pipe direction.
const PIPE_BUFFER: usize = 256 * 1024;

type Acceptors = Mutex<HashMap<String, mpsc::Sender<Incoming>>>;

fn acceptors() -> &'static Acceptors {
    static A: OnceLock<Acceptors> = OnceLock::new();
    A.get_or_init(Default::default)
}

/// The in-process transport. Names are process-wide; a name can be listened on by one
/// listener at a time.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use yoton_core::{Context, Address};
/// let a = Context::new().unwrap();
/// let b = Context::new().unwrap();
/// let host = a.bind_async("inproc://doc-example").await.unwrap();
/// b.connect_async("inproc://doc-example", std::time::Duration::from_secs(1)).await.unwrap();
/// host.wait_connected_async(std::time::Duration::from_secs(1)).await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct InprocTransport;

struct InprocListener {
    name: String,
    rx: mpsc::Receiver<Incoming>,
}

impl Drop for InprocListener {
    fn drop(&mut self) {
        acceptors().lock().remove(&self.name);
    }
}

#[async_trait]
impl TransportListener for InprocListener {
    fn local(&self) -> Endpoint {
        Endpoint {
            host: self.name.clone(),
            port: 0,
        }
    }

    async fn accept(&mut self) -> Result<Incoming, TransportError> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| TransportError::new(format!("inproc://{} stopped listening", self.name)))
    }
}

#[async_trait]
impl Transport for InprocTransport {
    fn schemes(&self) -> &'static [&'static str] {
        &["inproc"]
    }

    async fn listen(&self, addr: &Address) -> Result<Box<dyn TransportListener>, TransportError> {
        let mut map = acceptors().lock();
        if let Some(tx) = map.get(&addr.host) {
            if !tx.is_closed() {
                return Err(TransportError::new(format!(
                    "inproc://{} is already in use in this process",
                    addr.host
                )));
            }
        }
        let (tx, rx) = mpsc::channel(64);
        map.insert(addr.host.clone(), tx);
        Ok(Box::new(InprocListener {
            name: addr.host.clone(),
            rx,
        }))
    }

    async fn connect(&self, addr: &Address) -> Result<Incoming, TransportError> {
        let tx = acceptors().lock().get(&addr.host).cloned().ok_or_else(|| {
            TransportError::new(format!("nobody listens at inproc://{}", addr.host))
        })?;
        let (a, b) = tokio::io::duplex(PIPE_BUFFER);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let name = Endpoint {
            host: addr.host.clone(),
            port: 0,
        };
        let client = Endpoint {
            host: format!("{}#client", addr.host),
            port: 0,
        };
        let host_side = RawStream {
            reader: Box::new(ar),
            writer: Box::new(aw),
            local: name.clone(),
            peer: client.clone(),
        };
        tx.send(host_side.into()).await.map_err(|_| {
            TransportError::new(format!("inproc://{} stopped listening", addr.host))
        })?;
        Ok(RawStream {
            reader: Box::new(br),
            writer: Box::new(bw),
            local: client,
            peer: name,
        }
        .into())
    }
}

/// Shared handle type used by registries.
pub fn transport() -> Arc<dyn Transport> {
    Arc::new(InprocTransport)
}
