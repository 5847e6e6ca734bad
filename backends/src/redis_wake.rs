//! Cross-instance wake-ups over Redis pub/sub: every local write is published on a channel,
//! and every instance's subscriber wakes its own `/sync` long-polls and WebSockets when another
//! instance writes. Typing and presence changes ride on the same channel and are applied to
//! every other instance's ephemeral state. Both directions reconnect with backoff when Redis
//! goes away.

use std::time::Duration;

use std::sync::Arc;

use futures::{future::BoxFuture, StreamExt};
use redis::AsyncCommands;
use sandcat_core::{
    ephemeral::{Ephemeral, EphemeralUpdate},
    notifier::Notifier,
    Error, Result,
};
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};

fn redis_err(what: &str, e: redis::RedisError) -> Error {
    Error::Storage(format!("redis {what}: {e}"))
}

/// What runs before local readers are woken for another instance's write (e.g. catching up
/// with the shared store, so that the readers see the write).
pub type BeforeWake = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// One message on the channel: a write happened (`eph` empty), or an ephemeral change.
#[derive(Serialize, Deserialize)]
struct Announcement {
    from: String,
    eph: Option<EphemeralUpdate>,
}

/// The publisher and subscriber tasks of one instance.
pub struct RedisWake {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RedisWake {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RedisWake {
    /// Connects (failing fast when Redis is unreachable) and links `notifier` to `channel`.
    pub async fn start(
        url: &str,
        channel: &str,
        notifier: Notifier,
        before_wake: Option<BeforeWake>,
        ephemeral: Option<Arc<Ephemeral>>,
    ) -> Result<RedisWake> {
        let client = redis::Client::open(url).map_err(|e| redis_err("url", e))?;
        let mut publish = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| redis_err(&format!("connecting to {url}"), e))?;
        let _: () = redis::cmd("PING")
            .query_async(&mut publish)
            .await
            .map_err(|e| redis_err(&format!("ping {url}"), e))?;
        let instance = sandcat_core::token::random_string(12);
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        if !notifier.forward_to(tx) {
            return Err(Error::internal("the notifier already forwards elsewhere"));
        }

        let (eph_tx, mut eph_rx) = mpsc::unbounded_channel::<EphemeralUpdate>();
        if let Some(e) = &ephemeral {
            if !e.forward_to(eph_tx) {
                return Err(Error::internal("ephemeral changes already go elsewhere"));
            }
        }

        let (ch, me) = (channel.to_owned(), instance.clone());
        let publisher = tokio::spawn(async move {
            loop {
                let eph = tokio::select! {
                    w = rx.recv() => match w {
                        // Many writes between two publishes need one wake-up.
                        Some(()) => { while rx.try_recv().is_ok() {} None }
                        None => break,
                    },
                    Some(u) = eph_rx.recv() => Some(u),
                };
                let payload = serde_json::to_string(&Announcement {
                    from: me.clone(),
                    eph,
                })
                .unwrap_or_default();
                let mut delay = Duration::from_millis(100);
                loop {
                    match publish.publish::<_, _, i64>(&ch, &payload).await {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "redis publish failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });

        let ch = channel.to_owned();
        let subscriber = tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if let Err(e) = pubsub.subscribe(&ch).await {
                            tracing::warn!(error = %e, "redis subscribe failed");
                        } else {
                            delay = Duration::from_millis(100);
                            // Anything may have happened while unsubscribed.
                            if let Some(hook) = &before_wake {
                                hook().await;
                            }
                            notifier.notify_local();
                            let mut stream = pubsub.on_message();
                            while let Some(msg) = stream.next().await {
                                let payload: String = msg.get_payload().unwrap_or_default();
                                let Ok(a) = serde_json::from_str::<Announcement>(&payload) else {
                                    continue;
                                };
                                if a.from == instance {
                                    continue;
                                }
                                match (a.eph, &ephemeral) {
                                    (Some(u), Some(e)) => e.apply(u),
                                    (Some(_), None) => {}
                                    (None, _) => {
                                        if let Some(hook) = &before_wake {
                                            hook().await;
                                        }
                                        notifier.notify_local();
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "redis pubsub connection failed"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        });
        Ok(RedisWake {
            tasks: vec![publisher, subscriber],
        })
    }
}
