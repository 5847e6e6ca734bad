//! Wake-ups for `/sync` long-polls and other live readers. A generation counter: every write
//! bumps it, every waiter sees the bump. Cross-instance backends feed it from outside.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Notifier {
    tx: watch::Sender<u64>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            tx: watch::channel(0).0,
        }
    }
}

impl Notifier {
    pub fn notify(&self) {
        self.tx.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Subscribe before reading, so that no write between the read and the wait is missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}
