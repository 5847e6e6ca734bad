//! A stream of transactions to one receiver — an application service, another server — that
//! loses nothing: the receiver's state (the position it has everything up to, the next
//! transaction id, the transaction built but not yet accepted) is kept in the store. A
//! transaction is persisted before its first attempt and sent unchanged, with exponential
//! backoff, until the receiver accepts it (or, for a receiver that says so, until it has been
//! refused for too long: push notifications go stale); only then does the position move. A
//! restart resumes the pending transaction; an accepted one is never sent again.

use std::time::{Duration, Instant};

use crate::{
    notifier::Notifier,
    ports::{AppserviceState, AppserviceStore},
    Result,
};

/// Retry timing: first delay, and the ceiling it doubles up to.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    fn next(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.max)
    }
}

/// Who the transactions go to.
#[async_trait::async_trait]
pub trait Receiver: Send + Sync {
    /// Its name, for the log.
    fn name(&self) -> &str;
    /// The next state after reading what is new since `state` (which has nothing pending):
    /// with a pending transaction if anything is for the receiver, else with the position
    /// moved on.
    async fn build(&self, state: &AppserviceState) -> Result<AppserviceState>;
    /// Sends a pending transaction: `Ok` once the receiver accepted it.
    async fn send(&self, txn: u64, body: &str) -> Result<()>;
    /// Resolves when something beside the event stream may be new for the receiver.
    async fn other_news(&self) {
        std::future::pending::<()>().await
    }
    /// Resolves when the receiver is known to be reachable again (it contacted us): a
    /// transaction waiting out its backoff is sent at once.
    async fn back(&self) {
        std::future::pending::<()>().await
    }
    /// How long a transaction is retried before it is dropped and the stream moves past it
    /// (`None`: until accepted, for receivers that must miss nothing).
    fn give_up_after(&self) -> Option<Duration> {
        None
    }
}

/// The state kept under `id`, or, for a receiver met for the first time, one starting at
/// `start` (retried with backoff until the store answers).
pub async fn load_state(
    store: &dyn AppserviceStore,
    id: &str,
    backoff: Backoff,
    start: impl Fn() -> i64,
) -> AppserviceState {
    let mut delay = backoff.initial;
    loop {
        match store.appservice_state(id).await {
            Ok(Some(s)) => return s,
            Ok(None) => {
                let s = AppserviceState {
                    last_pos: start(),
                    next_txn: 1,
                    pending: None,
                };
                if store.set_appservice_state(id, &s).await.is_ok() {
                    return s;
                }
            }
            Err(e) => tracing::warn!(id, error = %e, "reading a transaction stream's state"),
        }
        tokio::time::sleep(delay).await;
        delay = backoff.next(delay);
    }
}

/// Sends `receiver` its transactions from `state` (kept under `id`) for as long as the task
/// runs: builds one when something is new, persists it, sends it until accepted.
pub async fn run(
    receiver: &dyn Receiver,
    store: &dyn AppserviceStore,
    id: &str,
    mut state: AppserviceState,
    notifier: &Notifier,
    backoff: Backoff,
) {
    let name = receiver.name();
    let mut delay = backoff.initial;
    // A position that only moved on (nothing was for the receiver) is saved at most once a
    // second: after a restart, those events are read again and again found of no interest.
    let mut saved_pos = state.last_pos;
    let mut saved_at = Instant::now();
    // When the pending transaction was first refused.
    let mut failing_since: Option<Instant> = None;
    loop {
        let mut wake = notifier.subscribe();
        if state.pending.is_none() {
            match receiver.build(&state).await {
                Ok(next) => {
                    let advanced_only = next.pending.is_none();
                    state = next;
                    let due = saved_at.elapsed() > Duration::from_secs(1);
                    if !advanced_only || (state.last_pos != saved_pos && due) {
                        if let Err(e) = store.set_appservice_state(id, &state).await {
                            tracing::warn!(name, error = %e, "saving a transaction stream's state");
                            state.pending = None;
                            tokio::time::sleep(delay).await;
                            delay = backoff.next(delay);
                            continue;
                        }
                        saved_pos = state.last_pos;
                        saved_at = Instant::now();
                    }
                }
                Err(e) => {
                    tracing::warn!(name, error = %e, "building a transaction");
                    tokio::time::sleep(delay).await;
                    delay = backoff.next(delay);
                    continue;
                }
            }
        }
        if let Some((txn, upto, body)) = state.pending.clone() {
            let sent = match receiver.send(txn, &body).await {
                Err(e)
                    if receiver.give_up_after().is_some_and(|limit| {
                        failing_since.is_some_and(|since| since.elapsed() >= limit)
                    }) =>
                {
                    tracing::warn!(name, txn, upto, error = %e, "a transaction was refused for too long: dropped");
                    Ok(())
                }
                sent => sent,
            };
            match sent {
                Ok(()) => {
                    tracing::debug!(name, txn, upto, "transaction accepted");
                    failing_since = None;
                    let done = AppserviceState {
                        last_pos: state.last_pos.max(upto),
                        next_txn: txn + 1,
                        pending: None,
                    };
                    // Until this is saved the transaction may be sent again after a restart,
                    // with the same id: the receiver drops it as a repeat.
                    while let Err(e) = store.set_appservice_state(id, &done).await {
                        tracing::warn!(name, error = %e, "saving a transaction stream's state");
                        tokio::time::sleep(delay).await;
                        delay = backoff.next(delay);
                    }
                    state = done;
                    saved_pos = state.last_pos;
                    saved_at = Instant::now();
                    delay = backoff.initial;
                }
                Err(e) => {
                    failing_since.get_or_insert_with(Instant::now);
                    tracing::info!(name, txn, error = %e, retry_in_ms = delay.as_millis() as u64, "a transaction was not accepted");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => delay = backoff.next(delay),
                        _ = receiver.back() => {
                            tracing::debug!(name, txn, "the receiver is back: sending at once");
                            delay = backoff.initial;
                        }
                    }
                }
            }
            continue;
        }
        tokio::select! {
            _ = wake.changed() => {}
            _ = receiver.other_news() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
