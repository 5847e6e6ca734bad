//! The push senders: one task per pusher follows its user's notifications (what the room
//! sequencers appended with the events) and posts each to the pusher's gateway
//! (`POST /_matrix/push/v1/notify`, ruma's push-gateway types), with the user's unread count.
//!
//! Each runs on the `transaction_stream` driver the application services and federation
//! use: a notification is persisted before its first attempt and sent unchanged, with
//! exponential backoff, until the gateway accepts it; only then does the pusher's position
//! move, so a restart resumes it and nothing is lost or sent twice once accepted. The state
//! is kept with the other transaction streams, under `push:<user, app id, push key>`. One
//! instance runs the senders cluster-wide (the `push-senders` role).
//!
//! A notification the user has read by the time it would be sent is skipped, as are those of
//! events before the pusher was set. Push keys a gateway rejects lose their pushers.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{
    api::{
        push_gateway::send_event_notification::v1::{
            Device, Notification, NotificationCounts, NotificationPriority, PusherData, Request,
        },
        OutgoingRequestExt,
    },
    events::TimelineEventType,
    push::{Action, PushFormat as RumaPushFormat, Tweak},
    OwnedRoomAliasId, OwnedUserId, SecondsSinceUnixEpoch, UInt,
};
use sandcat_core::{
    notifier::Notifier,
    ports::{
        AppserviceState, AppserviceStore, Notified, PushFormat, PushStore, PusherRecord, RoomStore,
        StreamPosition,
    },
    services::push::NOTIFICATIONS_KEPT_MS,
    transaction_stream::{self, Backoff},
    Error, Result,
};
use tokio::task::JoinHandle;

use crate::gateway::Gateways;

/// The first wait after a failed attempt, and the longest.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(60),
};
/// How long a notification is retried before it is dropped, by default.
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Notifications read per step of a pusher.
const PER_STEP: usize = 100;
/// How often the pusher list is read again at most, and at least.
const RECONCILE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));
/// How often old notifications are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60 * 60);

/// A pusher's identity: user, app id, push key.
type PusherKey = (OwnedUserId, String, String);

fn key_of(p: &PusherRecord) -> PusherKey {
    (p.user_id.clone(), p.app_id.clone(), p.pushkey.clone())
}

/// Where a pusher's transaction stream is kept.
fn state_id(p: &PusherRecord) -> String {
    let key = serde_json::json!([p.user_id, p.app_id, p.pushkey]);
    format!("push:{key}")
}

pub struct PushSenders {
    gateways: Arc<Gateways>,
    push: Arc<dyn PushStore>,
    rooms: Arc<dyn RoomStore>,
    state: Arc<dyn AppserviceStore>,
    stream: Arc<dyn StreamPosition>,
    notifier: Notifier,
    /// How long a notification is retried before it is dropped.
    give_up_after: Duration,
    running: Mutex<HashMap<PusherKey, (PusherRecord, JoinHandle<()>)>>,
    manager: Mutex<Option<JoinHandle<()>>>,
}

/// A pusher as the receiver of its notifications.
struct Pusher<'a> {
    senders: &'a PushSenders,
    pusher: PusherRecord,
    name: String,
}

#[async_trait::async_trait]
impl transaction_stream::Receiver for Pusher<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn build(&self, state: &AppserviceState) -> Result<AppserviceState> {
        self.senders.build(&self.pusher, state).await
    }

    fn give_up_after(&self) -> Option<Duration> {
        Some(self.senders.give_up_after)
    }

    async fn send(&self, _txn: u64, body: &str) -> Result<()> {
        let p = &self.pusher;
        let rejected = self
            .senders
            .gateways
            .notify(&p.url, body.to_owned())
            .await?;
        if rejected.contains(&p.pushkey) {
            tracing::info!(user = %p.user_id, app_id = p.app_id, "the gateway rejected the push key; removing the pusher");
            self.senders
                .push
                .delete_pusher(None, &p.app_id, &p.pushkey)
                .await?;
            self.senders.notifier.notify();
        }
        Ok(())
    }
}

impl PushSenders {
    pub fn new(
        gateways: Arc<Gateways>,
        push: Arc<dyn PushStore>,
        rooms: Arc<dyn RoomStore>,
        state: Arc<dyn AppserviceStore>,
        stream: Arc<dyn StreamPosition>,
        notifier: Notifier,
    ) -> Self {
        PushSenders {
            gateways,
            push,
            rooms,
            state,
            stream,
            notifier,
            give_up_after: GIVE_UP_AFTER,
            running: Default::default(),
            manager: Default::default(),
        }
    }

    /// Drops a notification its gateway has refused for `after` (a day by default): one that
    /// late is no news, and the pusher goes on with the next.
    pub fn with_give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = after;
        self
    }

    /// Starts following the pushers: a task per pusher, started and stopped as pushers come
    /// and go.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        let task = tokio::spawn(async move { me.manage().await });
        if let Some(old) = self
            .manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// Stops every sender; a pending notification is sent again by whoever starts them next.
    pub fn stop(&self) {
        if let Some(task) = self
            .manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        for (_, (_, task)) in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
    }

    async fn manage(self: Arc<Self>) {
        let (soonest, latest) = RECONCILE;
        let mut forgotten_at: Option<Instant> = None;
        loop {
            let mut wake = self.notifier.subscribe();
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reading the pushers");
            }
            if forgotten_at.is_none_or(|at| at.elapsed() > FORGET_EVERY) {
                let before = sandcat_core::now_ms().saturating_sub(NOTIFICATIONS_KEPT_MS);
                match self.push.forget_notifications(before).await {
                    Ok(n) => tracing::debug!(forgotten = n, "old notifications forgotten"),
                    Err(e) => tracing::warn!(error = %e, "forgetting old notifications"),
                }
                forgotten_at = Some(Instant::now());
            }
            tokio::time::sleep(soonest).await;
            let _ = tokio::time::timeout(latest - soonest, wake.changed()).await;
        }
    }

    /// Starts a task for each new or changed pusher and stops those of pushers gone.
    async fn reconcile(self: &Arc<Self>) -> Result<()> {
        let pushers = self.push.all_pushers().await?;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: HashMap<PusherKey, PusherRecord> =
            pushers.into_iter().map(|p| (key_of(&p), p)).collect();
        running.retain(|key, (record, task)| {
            let keep = wanted.get(key) == Some(record) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, pusher) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let me = self.clone();
            let record = pusher.clone();
            let task = tokio::spawn(async move { me.run(record).await });
            running.insert(key, (pusher, task));
        }
        Ok(())
    }

    async fn run(&self, pusher: PusherRecord) {
        let id = state_id(&pusher);
        // A new pusher starts at the beginning of its user's notifications and skips those
        // older than itself: none is missed between its setting and this task's start.
        let state = transaction_stream::load_state(self.state.as_ref(), &id, BACKOFF, || 0).await;
        let receiver = Pusher {
            senders: self,
            name: format!("pusher {} {}", pusher.user_id, pusher.app_id),
            pusher,
        };
        transaction_stream::run(
            &receiver,
            self.state.as_ref(),
            &id,
            state,
            &self.notifier,
            BACKOFF,
        )
        .await;
    }

    /// The pusher's next notification after `state`, or its position moved past what is of
    /// no interest.
    async fn build(&self, p: &PusherRecord, state: &AppserviceState) -> Result<AppserviceState> {
        let until = self.stream.current_pos();
        // The pusher as it is now: set again with another format or data since this task
        // started, the notification follows that.
        let current = self
            .push
            .pushers(&p.user_id)
            .await?
            .into_iter()
            .find(|c| key_of(c) == key_of(p));
        let Some(p) = &current else {
            // Deleted: this task is stopped at the next reconciliation.
            return Ok(AppserviceState {
                last_pos: until.max(state.last_pos),
                next_txn: state.next_txn,
                pending: None,
            });
        };
        let found = self
            .push
            .notifications_after(&p.user_id, state.last_pos, until, PER_STEP)
            .await?;
        let full = found.len() == PER_STEP;
        let mut last_pos = state.last_pos;
        for n in found {
            if n.read || n.ts < p.created_ts {
                last_pos = n.event.pos;
                continue;
            }
            let body = self.notification(p, &n).await?;
            return Ok(AppserviceState {
                last_pos,
                next_txn: state.next_txn,
                pending: Some((state.next_txn, n.event.pos, body)),
            });
        }
        Ok(AppserviceState {
            last_pos: if full { last_pos } else { until.max(last_pos) },
            next_txn: state.next_txn,
            pending: None,
        })
    }

    /// The body of the gateway request for `n`.
    async fn notification(&self, p: &PusherRecord, n: &Notified) -> Result<String> {
        let unread = self.push.unread_total(&p.user_id).await?;
        let mut device = Device::new(p.app_id.clone(), p.pushkey.clone());
        device.pushkey_ts = Some(SecondsSinceUnixEpoch(UInt::new_saturating(
            p.created_ts / 1000,
        )));
        let mut data = PusherData::new();
        if let Some(serde_json::Value::Object(given)) = p.body.get("data") {
            data.data = given.clone();
            data.data.remove("url");
            data.data.remove("format");
        }
        if p.format == PushFormat::EventIdOnly {
            data.format = Some(RumaPushFormat::EventIdOnly);
        }
        device.data = data;
        device.tweaks = n
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::SetTweak(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        let urgent = n.highlight || device.tweaks.iter().any(|t| matches!(t, Tweak::Sound(_)));
        let mut note = Notification::new(vec![device]);
        note.event_id = Some(n.event.pdu.event_id.clone());
        note.room_id = Some(n.room_id.clone());
        note.counts = NotificationCounts::new(UInt::new_saturating(unread), UInt::MIN);
        note.prio = if urgent {
            NotificationPriority::High
        } else {
            NotificationPriority::Low
        };
        if p.format == PushFormat::Full {
            self.describe(&mut note, p, n).await?;
        }
        let request = Request::new(note)
            .try_into_http_request::<Vec<u8>>("http://gateway", (), ())
            .map_err(Error::internal)?;
        String::from_utf8(request.into_body()).map_err(Error::internal)
    }

    /// What a full notification tells of the event: type, sender and their name, content,
    /// the room's name and alias, whether the user is the event's target.
    async fn describe(
        &self,
        note: &mut Notification,
        p: &PusherRecord,
        n: &Notified,
    ) -> Result<()> {
        let pdu = &n.event.pdu;
        let room = &n.room_id;
        note.event_type = Some(pdu.kind.clone());
        note.sender = Some(pdu.sender.clone());
        note.content = Some(pdu.content.clone());
        note.user_is_target = pdu.kind == TimelineEventType::RoomMember
            && pdu.state_key.as_deref() == Some(p.user_id.as_str());
        let string_of = |ev: Option<sandcat_core::StoredEvent>, field: &str| {
            ev.and_then(|e| {
                e.pdu
                    .content_value()
                    .get(field)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
        };
        note.sender_display_name = string_of(
            self.rooms
                .state_event(room, "m.room.member", pdu.sender.as_str())
                .await?,
            "displayname",
        );
        note.room_name = string_of(
            self.rooms.state_event(room, "m.room.name", "").await?,
            "name",
        );
        note.room_alias = string_of(
            self.rooms
                .state_event(room, "m.room.canonical_alias", "")
                .await?,
            "alias",
        )
        .and_then(|a| OwnedRoomAliasId::try_from(a).ok());
        Ok(())
    }
}
