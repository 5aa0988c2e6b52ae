//! One implementation, two styles: every wait is a future; blocking methods run that
//! future on the context's runtime.
//!
//! Inside a tokio runtime the context uses that runtime. Outside one it starts a small
//! multi-thread runtime of its own ([`crate::context::DEFAULT_IO_THREADS`] worker
//! threads unless the builder says otherwise), kept alive while any handle lives.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::error::{Error, Result};

struct Owned(Option<Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            // Safe from any thread, including the runtime's own workers.
            rt.shutdown_background();
        }
    }
}

/// The runtime a context runs on.
#[derive(Clone)]
pub(crate) struct Rt {
    handle: Handle,
    owned: Option<Arc<Owned>>,
}

impl Rt {
    /// The current runtime, or a new one of our own with `workers` worker threads,
    /// named `yoton-` and the low 32 bits of the context id in hex (`top -H` shows
    /// which context a busy thread serves).
    pub(crate) fn current_or_new(workers: usize, context_id: u64) -> Result<Rt> {
        if let Ok(handle) = Handle::try_current() {
            return Ok(Rt {
                handle,
                owned: None,
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(format!("yoton-{:08x}", context_id as u32))
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        Ok(Rt {
            handle: rt.handle().clone(),
            owned: Some(Arc::new(Owned(Some(rt)))),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Whether the context started this runtime itself (it was built outside one).
    pub(crate) fn is_own(&self) -> bool {
        self.owned.is_some()
    }

    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }

    /// Run `fut` to completion from a blocking caller. On a thread of a multi-thread
    /// runtime the wait is handed to `block_in_place`; on a current-thread runtime it
    /// would deadlock, so it is refused with [`Error::BlockingInRuntime`].
    pub(crate) fn block_on<F: Future>(&self, what: &'static str, fut: F) -> Result<F::Output> {
        block_on(&self.handle, what, fut)
    }
}

/// Run `fut` to completion on `handle` from blocking code: directly outside any
/// runtime, through `block_in_place` on a multi-thread runtime's thread, and refused
/// with [`Error::BlockingInRuntime`] on a current-thread runtime (it would deadlock).
///
/// ```
/// let rt = tokio::runtime::Runtime::new().unwrap();
/// let v = yoton_core::block_on(rt.handle(), "example", async { 40 + 2 }).unwrap();
/// assert_eq!(v, 42);
/// ```
pub fn block_on<F: Future>(handle: &Handle, what: &'static str, fut: F) -> Result<F::Output> {
    match Handle::try_current() {
        Err(_) => Ok(handle.block_on(fut)),
        Ok(current) => match current.runtime_flavor() {
            RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(|| handle.block_on(fut))),
            _ => Err(Error::BlockingInRuntime(what)),
        },
    }
}
