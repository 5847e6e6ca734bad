//! Filling in a room's past: the events before this server's earliest, asked of the servers
//! in the room (`/backfill`). They join the room's history, not its stream, so no reader of
//! the stream takes them for new events, and they change neither the room's heads nor its
//! state.

use ruma::{OwnedEventId, OwnedServerName, RoomId};

use super::{remote::Placement, Sequencer};
use crate::{
    intent::ReceivedPdu,
    ports::{HeldStatus, OUTLIERS_BELOW},
    Error, Pdu, Result, StoredEvent,
};

/// The most events asked of a server in one backfill, as Synapse asks.
const BACKFILL_LIMIT: usize = 100;

impl Sequencer {
    /// Asks the room's other servers, one after another, for the events before `from`, and
    /// adds what the first that answers sends: each checked against its own auth events
    /// (fetched when unknown), oldest first; one that fails is held as rejected. Answers no
    /// events: they are read as history, not as the outcome of a batch.
    pub(super) async fn sequence_backfill(
        &self,
        room_id: &RoomId,
        from: &[OwnedEventId],
    ) -> Result<Vec<StoredEvent>> {
        let Some(version) = self.store.room_version(room_id).await? else {
            return Err(Error::not_found(format!("{room_id} is not known here")));
        };
        let rules = super::rules_for(&version)?;
        for server in self.servers_in(room_id).await? {
            let answer = match self
                .fetch
                .backfill(&server, room_id, from, BACKFILL_LIMIT)
                .await
            {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "backfill failed; asking the next server");
                    continue;
                }
            };
            let new = self.not_in_history(room_id, answer).await?;
            if new.is_empty() {
                continue;
            }
            for (pdu, _) in &new {
                self.fetch_auth_events(room_id, pdu).await?;
            }
            let added = self
                .add_outside_stream(&rules, new, Placement::Backfilled)
                .await?;
            tracing::debug!(%room_id, %server, added, "backfilled");
            break;
        }
        Ok(Vec::new())
    }

    /// The servers of the room's joined members, this one left out, in a stable order.
    async fn servers_in(&self, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
        let mut servers = self.store.joined_servers(room_id).await?;
        servers.remove(&self.signing.server_name);
        Ok(servers.into_iter().collect())
    }

    /// Those of `answer` neither in the room's history nor rejected: new events, and outliers
    /// to move into history. (The fetcher checked that each is of the room.)
    async fn not_in_history(
        &self,
        room_id: &RoomId,
        answer: Vec<ReceivedPdu>,
    ) -> Result<Vec<(Pdu, ReceivedPdu)>> {
        let mut out = Vec::with_capacity(answer.len());
        for received in answer.into_iter().take(BACKFILL_LIMIT) {
            let known = self.store.event(&received.event_id).await?;
            if known.is_some_and(|e| e.pos > OUTLIERS_BELOW)
                || matches!(
                    self.store.held(&received.event_id).await?,
                    Some((HeldStatus::Rejected, _))
                )
            {
                continue;
            }
            let Ok(pdu) = Pdu::from_stored(
                &received.json,
                received.event_id.clone(),
                room_id.to_owned(),
            ) else {
                continue;
            };
            out.push((pdu, received));
        }
        Ok(out)
    }
}
