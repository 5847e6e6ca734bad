//! Push for clients: the notification list (`/notifications`) and the pushers of a user's
//! devices (`/pushers`). What push rules ask is decided by the room's sequencer
//! (`crate::push`); the pushers' notifications are sent by the push senders.

use std::sync::Arc;

use ruma::{OwnedDeviceId, UserId};
use serde_json::Value;

use crate::{
    notifier::Notifier,
    ports::{Notified, PushFormat, PushStore, PusherRecord},
    services::Session,
    Error, Result,
};

/// The path every push gateway answers notifications on.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// The longest app id (the spec's limit, in characters).
pub const MAX_APP_ID_CHARS: usize = 64;
/// The longest push key (the spec's limit, in bytes).
pub const MAX_PUSHKEY_BYTES: usize = 512;
/// The longest gateway URL, and longest of the other strings of a pusher.
pub const MAX_URL_BYTES: usize = 2048;
/// The most pushers a user may have.
pub const MAX_PUSHERS_PER_USER: usize = 100;
/// Notifications per `/notifications` page: the default and the most.
pub const NOTIFICATIONS_PAGE: (usize, usize) = (20, 100);
/// How long notifications are kept (30 days, as Synapse keeps them).
pub const NOTIFICATIONS_KEPT_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// A pusher as a client sets it.
#[derive(Debug, Clone)]
pub struct NewPusher {
    pub app_id: String,
    pub pushkey: String,
    /// The gateway's URL (`data.url`).
    pub url: String,
    pub format: PushFormat,
    /// The whole pusher as the client sent it, shown back by `GET /pushers`.
    pub body: Value,
    /// Keep other users' pushers with the same app id and push key.
    pub append: bool,
}

/// A page of `/notifications`.
#[derive(Debug)]
pub struct NotificationsPage {
    pub notifications: Vec<Notified>,
    /// Where the next (older) page starts.
    pub next_token: Option<String>,
}

pub struct Push {
    store: Arc<dyn PushStore>,
    notifier: Notifier,
}

/// A gateway URL: `http(s)://host[:port]/_matrix/push/v1/notify`.
fn check_url(url: &str) -> Result<()> {
    if url.len() > MAX_URL_BYTES {
        return Err(Error::invalid_param("the pusher's URL is too long"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::invalid_param("the pusher's URL is not a URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none() || uri.query().is_some() {
        return Err(Error::invalid_param(
            "the pusher's URL must be an http(s) URL without a query",
        ));
    }
    if uri.path() != NOTIFY_PATH {
        return Err(Error::invalid_param(format!(
            "the pusher's URL must have the path {NOTIFY_PATH}"
        )));
    }
    Ok(())
}

impl Push {
    pub fn new(store: Arc<dyn PushStore>, notifier: Notifier) -> Self {
        Push { store, notifier }
    }

    pub async fn pushers(&self, user: &UserId) -> Result<Vec<PusherRecord>> {
        self.store.pushers(user).await
    }

    /// Adds or replaces a pusher of the session's device.
    pub async fn set_pusher(&self, session: &Session, pusher: NewPusher) -> Result<()> {
        if pusher.app_id.is_empty() || pusher.app_id.chars().count() > MAX_APP_ID_CHARS {
            return Err(Error::invalid_param(format!(
                "app_id must have 1 to {MAX_APP_ID_CHARS} characters"
            )));
        }
        if pusher.pushkey.is_empty() || pusher.pushkey.len() > MAX_PUSHKEY_BYTES {
            return Err(Error::invalid_param(format!(
                "pushkey must have 1 to {MAX_PUSHKEY_BYTES} bytes"
            )));
        }
        if pusher.body.to_string().len() > 4 * MAX_URL_BYTES {
            return Err(Error::invalid_param("the pusher is too large"));
        }
        check_url(&pusher.url)?;
        let existing = self.store.pushers(&session.user_id).await?;
        let replaces = existing
            .iter()
            .any(|p| p.app_id == pusher.app_id && p.pushkey == pusher.pushkey);
        if !replaces && existing.len() >= MAX_PUSHERS_PER_USER {
            return Err(Error::forbidden(format!(
                "a user has at most {MAX_PUSHERS_PER_USER} pushers"
            )));
        }
        let record = PusherRecord {
            user_id: session.user_id.clone(),
            device_id: (!session.device_id.is_empty())
                .then(|| OwnedDeviceId::from(session.device_id.as_str())),
            app_id: pusher.app_id,
            pushkey: pusher.pushkey,
            url: pusher.url,
            format: pusher.format,
            body: pusher.body,
            created_ts: crate::now_ms(),
        };
        self.store.set_pusher(&record, pusher.append).await?;
        // The push senders pick it up.
        self.notifier.notify();
        Ok(())
    }

    pub async fn delete_pusher(&self, user: &UserId, app_id: &str, pushkey: &str) -> Result<()> {
        self.store
            .delete_pusher(Some(user), app_id, pushkey)
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// A page of the user's notifications, newest first, from the token `from`.
    pub async fn notifications(
        &self,
        user: &UserId,
        from: Option<&str>,
        limit: Option<u64>,
        only: Option<&str>,
    ) -> Result<NotificationsPage> {
        let before = match from {
            Some(token) => Some(
                token
                    .parse::<i64>()
                    .map_err(|_| Error::invalid_param("unknown from token"))?,
            ),
            None => None,
        };
        let (default, most) = NOTIFICATIONS_PAGE;
        let limit = limit.map_or(default, |l| (l as usize).clamp(1, most));
        let highlights_only = only == Some("highlight");
        let notifications = self
            .store
            .notifications(user, before, limit, highlights_only)
            .await?;
        let next_token = (notifications.len() == limit)
            .then(|| notifications.last().map(|n| n.event.pos.to_string()))
            .flatten();
        Ok(NotificationsPage {
            notifications,
            next_token,
        })
    }
}
