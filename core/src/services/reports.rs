//! Reports (`/rooms/{roomId}/report/{eventId}`, `/rooms/{roomId}/report`,
//! `/users/{userId}/report`): a user tells the server's admins of an event, a room or a user.
//! An event is reported only by a member of its room, so a report reveals nothing of a room
//! the reporter is not in; every report is kept (`Reports`) and logged.

use std::sync::Arc;

use ruma::{events::room::member::MembershipState, EventId, RoomId, UserId};

use crate::{
    now_ms,
    ports::{Report, Reported, Reports, RoomStore, UserStore},
    services::Session,
    Error, Result, ServerConfig,
};

/// The longest reason kept, in bytes.
pub const MAX_REASON_BYTES: usize = 1000;

pub struct ContentReports {
    reports: Arc<dyn Reports>,
    rooms: Arc<dyn RoomStore>,
    users: Arc<dyn UserStore>,
    config: Arc<ServerConfig>,
}

impl ContentReports {
    pub fn new(
        reports: Arc<dyn Reports>,
        rooms: Arc<dyn RoomStore>,
        users: Arc<dyn UserStore>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ContentReports {
            reports,
            rooms,
            users,
            config,
        }
    }

    async fn keep(&self, session: &Session, subject: Reported, reason: Option<&str>) -> Result<()> {
        let reason = reason.unwrap_or_default();
        if reason.len() > MAX_REASON_BYTES {
            return Err(Error::invalid_param(format!(
                "a reason is at most {MAX_REASON_BYTES} bytes"
            )));
        }
        tracing::warn!(reporter = %session.user_id, ?subject, reason, "report");
        self.reports
            .keep_report(&Report {
                reporter: session.user_id.clone(),
                subject,
                reason: reason.to_owned(),
                received_ms: now_ms(),
            })
            .await
    }

    /// Reports an event of a room the reporter is joined to; `M_NOT_FOUND` for an event that
    /// is not there or not the reporter's to see.
    pub async fn event(
        &self,
        session: &Session,
        room_id: &RoomId,
        event_id: &EventId,
        reason: Option<&str>,
    ) -> Result<()> {
        let not_found = || Error::not_found("no such event in a room of yours");
        let joined = self
            .rooms
            .membership(room_id, &session.user_id)
            .await?
            .is_some_and(|m| m.membership == MembershipState::Join);
        if !joined {
            return Err(not_found());
        }
        let event = self.rooms.event(event_id).await?.ok_or_else(not_found)?;
        if event.pdu.room_id() != room_id {
            return Err(not_found());
        }
        let subject = Reported::Event(room_id.to_owned(), event_id.to_owned());
        self.keep(session, subject, reason).await
    }

    /// Reports a room this server knows.
    pub async fn room(&self, session: &Session, room_id: &RoomId, reason: &str) -> Result<()> {
        if self.rooms.room_version(room_id).await?.is_none() {
            return Err(Error::not_found("no such room"));
        }
        self.keep(session, Reported::Room(room_id.to_owned()), Some(reason))
            .await
    }

    /// Reports a user: one of this server that exists, or any of another server.
    pub async fn user(&self, session: &Session, user_id: &UserId, reason: &str) -> Result<()> {
        let ours = user_id.server_name() == self.config.server_name;
        if ours && self.users.user(user_id).await?.is_none() {
            return Err(Error::not_found("no such user"));
        }
        self.keep(session, Reported::User(user_id.to_owned()), Some(reason))
            .await
    }
}
