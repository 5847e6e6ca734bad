//! Wake-ups for `/sync` long-polls and other live readers. A generation counter: every write
//! bumps it, every waiter sees the bump. Cross-instance backends feed it from outside: a write
//! here is also announced to them ([`Notifier::forward_to`]), and their announcements bump the
//! counter here ([`Notifier::notify_local`]).

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, watch};

#[derive(Clone)]
pub struct Notifier {
    tx: watch::Sender<u64>,
    forward: Arc<OnceLock<mpsc::UnboundedSender<()>>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            tx: watch::channel(0).0,
            forward: Arc::default(),
        }
    }
}

impl Notifier {
    /// A local write: wakes local readers and tells the other instances.
    pub fn notify(&self) {
        self.notify_local();
        if let Some(f) = self.forward.get() {
            let _ = f.send(());
        }
    }

    /// A write announced by another instance: wakes local readers only.
    pub fn notify_local(&self) {
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Announces every later local write on `tx` (set once).
    pub fn forward_to(&self, tx: mpsc::UnboundedSender<()>) -> bool {
        self.forward.set(tx).is_ok()
    }

    /// Subscribe before reading, so that no write between the read and the wait is missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
