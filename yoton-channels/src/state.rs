//! State channels (PROTOCOL.md section 6): the last value of a slot, known by every
//! context, resent to newcomers.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use yoton_core::{channel_slot, Context, Package, SlotGuard, SlotReceiver, SlotSender};

use crate::error::Result;
use crate::message::{MessageType, Text};
use crate::queue::Notifier;

struct StateShared {
    ctx: Context,
    slot: u64,
    name: String,
    current: Mutex<Option<Bytes>>,
    notifier: Arc<Notifier>,
}

impl StateShared {
    fn send_last(&self) {
        let last = self.current.lock().clone();
        if let Some(payload) = last {
            if let Err(e) = self.ctx.send_now(Package::new(self.slot, payload)) {
                tracing::debug!(channel = %self.name, error = %e, "could not resend state");
            }
        }
    }
}

struct Hooks(std::sync::Weak<StateShared>);

impl SlotSender for Hooks {
    fn on_new_connection(&self) {
        if let Some(s) = self.0.upgrade() {
            s.send_last();
        }
    }
}

impl SlotReceiver for Hooks {
    fn deposit(&self, package: Package, _recv_seq: u64) {
        if let Some(s) = self.0.upgrade() {
            let changed = {
                let mut cur = s.current.lock();
                let changed = cur.as_ref() != Some(&package.payload);
                *cur = Some(package.payload);
                changed
            };
            // The same state arrives again whenever a context joins (every state
            // channel resends): notify only real changes.
            if changed {
                s.notifier.arrived(s.ctx.runtime());
            }
        }
    }
}

/// The state of a slot: every context with a StateChannel at the slot knows the
/// latest value sent by any of them; a context that joins later learns it (all state
/// channels resend on `NEW_CONNECTION`). Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use yoton_core::Context;
/// use yoton_channels::{StateChannel, Text};
///
/// let (a, b) = (Context::new().unwrap(), Context::new().unwrap());
/// let sa = StateChannel::<Text>::new(&a, "status").unwrap();
/// sa.send("ready".to_string()).unwrap();          // before anyone listens
/// let sb = StateChannel::<Text>::new(&b, "status").unwrap();
/// a.bind("inproc://state-doc").unwrap();
/// b.connect("inproc://state-doc", Duration::from_secs(1)).unwrap();
/// let t0 = std::time::Instant::now();
/// while sb.recv().is_none() && t0.elapsed() < Duration::from_secs(2) {
///     std::thread::sleep(Duration::from_millis(5));
/// }
/// assert_eq!(sb.recv().as_deref(), Some("ready"));
/// ```
pub struct StateChannel<M: MessageType = Text> {
    shared: Arc<StateShared>,
    guards: Arc<Mutex<Vec<SlotGuard>>>,
    _m: PhantomData<fn(M) -> M>,
}

impl<M: MessageType> Clone for StateChannel<M> {
    fn clone(&self) -> Self {
        StateChannel {
            shared: self.shared.clone(),
            guards: self.guards.clone(),
            _m: PhantomData,
        }
    }
}

impl<M: MessageType> std::fmt::Debug for StateChannel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateChannel({}.{}.state)", self.shared.name, M::NAME)
    }
}

impl<M: MessageType> StateChannel<M> {
    /// A state channel at slot `name` (`name.TYPE.state`).
    pub fn new(ctx: &Context, name: &str) -> Result<Self> {
        let slot = channel_slot(name, M::NAME, "state");
        let shared = Arc::new(StateShared {
            ctx: ctx.clone(),
            slot,
            name: name.to_owned(),
            current: Mutex::new(None),
            notifier: Notifier::new(),
        });
        let label = format!("{name}.{}.state", M::NAME);
        let g1 = ctx.register_sender(slot, &label, Arc::new(Hooks(Arc::downgrade(&shared))))?;
        let g2 = ctx.register_receiver(slot, &label, Arc::new(Hooks(Arc::downgrade(&shared))))?;
        Ok(StateChannel {
            shared,
            guards: Arc::new(Mutex::new(vec![g1, g2])),
            _m: PhantomData,
        })
    }

    /// Set the state. Sent only when it differs from the current state (compared as
    /// encoded bytes); an empty message is not sent.
    pub fn send(&self, message: M::Message) -> Result<()> {
        let payload = M::encode(message)?;
        if payload.is_empty() {
            return Ok(());
        }
        {
            let mut cur = self.shared.current.lock();
            if cur.as_ref() == Some(&payload) {
                return Ok(());
            }
            *cur = Some(payload.clone());
        }
        Ok(self
            .shared
            .ctx
            .send_now(Package::new(self.shared.slot, payload))?)
    }

    /// Send the current state again (what `NEW_CONNECTION` triggers).
    pub fn send_last(&self) {
        self.shared.send_last();
    }

    /// The latest state, received or sent (None while nothing is known). Never blocks.
    pub fn recv(&self) -> Option<M::Message> {
        let cur = self.shared.current.lock().clone()?;
        match M::decode(cur) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(channel = %self.shared.name, error = %e, "state does not decode");
                None
            }
        }
    }

    /// Call `f` when a different state arrived (coalesced; the resends that follow a
    /// `NEW_CONNECTION` do not count when the state is unchanged).
    pub fn on_received(&self, f: impl Fn(&StateChannel<M>) + Send + Sync + 'static) {
        let weak = Arc::downgrade(&self.shared);
        let guards = Arc::downgrade(&self.guards);
        self.shared.notifier.add(Box::new(move || {
            if let (Some(shared), Some(guards)) = (weak.upgrade(), guards.upgrade()) {
                f(&StateChannel {
                    shared,
                    guards,
                    _m: PhantomData,
                })
            }
        }));
    }

    /// The `received` signal of the event system.
    pub fn received(&self) -> &yoton_core::events::Signal<()> {
        self.shared.notifier.signal()
    }

    /// The base slot name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Unregister the channel.
    pub fn close(&self) {
        self.guards.lock().clear();
    }
}
