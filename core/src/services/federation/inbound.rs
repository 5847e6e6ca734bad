//! Events other servers bring to this server's rooms: transactions of events (`/send`), and
//! memberships (`membership.rs`). Every event is verified where it arrives (`verify_pdu`: format, signatures, content hash)
//! and added through its room's lane, which checks it against the room's state.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedEventId, RoomVersionId, ServerName};
use serde_json::Value;

use crate::{
    intent::RoomBatch,
    ports::{EventBus, ReceivedTransactions, RoomStore, UserStore},
    remote_pdu::verify_pdu,
    sequencer::{rules_for, SigningKey},
    services::server_keys::ServerKeys,
    Error, ErrorCode, Result,
};

/// The most PDUs one transaction carries (the spec's limit).
pub const MAX_PDUS_PER_TRANSACTION: usize = 50;

/// The outcome of each PDU of a transaction, by event id: taken, or why not.
pub type Outcomes = BTreeMap<OwnedEventId, std::result::Result<(), String>>;

pub struct Inbound {
    pub(super) store: Arc<dyn RoomStore>,
    pub(super) users: Arc<dyn UserStore>,
    pub(super) bus: Arc<dyn EventBus>,
    pub(super) keys: Arc<ServerKeys>,
    /// This server's key, which counter-signs the invites of its users.
    pub(super) signing: Arc<SigningKey>,
    transactions: Arc<dyn ReceivedTransactions>,
}

impl Inbound {
    pub fn new(
        store: Arc<dyn RoomStore>,
        users: Arc<dyn UserStore>,
        bus: Arc<dyn EventBus>,
        keys: Arc<ServerKeys>,
        signing: Arc<SigningKey>,
        transactions: Arc<dyn ReceivedTransactions>,
    ) -> Self {
        Inbound {
            store,
            users,
            bus,
            keys,
            signing,
            transactions,
        }
    }

    /// The outcomes answered before, if `origin` sends its transaction `txn_id` again: the
    /// retry gets them, and nothing of it is taken twice.
    pub async fn answered(&self, origin: &ServerName, txn_id: &str) -> Result<Option<Outcomes>> {
        let Some(answer) = self.transactions.transaction_answer(origin, txn_id).await? else {
            return Ok(None);
        };
        let kept: BTreeMap<OwnedEventId, Option<String>> = serde_json::from_str(&answer)?;
        Ok(Some(
            kept.into_iter()
                .map(|(id, error)| (id, error.map_or(Ok(()), Err)))
                .collect(),
        ))
    }

    /// Keeps the outcomes of `origin`'s transaction `txn_id`, taken now, for its retries.
    pub async fn remember(
        &self,
        origin: &ServerName,
        txn_id: &str,
        outcomes: &Outcomes,
    ) -> Result<()> {
        let kept: BTreeMap<&OwnedEventId, Option<&String>> = outcomes
            .iter()
            .map(|(id, outcome)| (id, outcome.as_ref().err()))
            .collect();
        let answer = serde_json::to_string(&kept)?;
        self.transactions
            .keep_transaction_answer(origin, txn_id, &answer, crate::now_ms())
            .await
    }

    /// Adds the PDUs of a transaction of `origin` (`/send`), each on its own: the outcome
    /// per event id. A PDU of a room this server does not know, or one whose id cannot be
    /// told, is left out (and logged).
    pub async fn transaction(&self, origin: &ServerName, pdus: &[&str]) -> Result<Outcomes> {
        if pdus.len() > MAX_PDUS_PER_TRANSACTION {
            return Err(Error::matrix(
                ErrorCode::TooLarge,
                format!("a transaction carries at most {MAX_PDUS_PER_TRANSACTION} PDUs"),
            ));
        }
        let mut out = BTreeMap::new();
        for raw in pdus {
            let room_id = serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| v.get("room_id")?.as_str().map(str::to_owned))
                .and_then(|r| ruma::OwnedRoomId::try_from(r).ok());
            let Some(room_id) = room_id else {
                tracing::info!(%origin, "a PDU without a room was left out");
                continue;
            };
            let Some(version) = self.store.room_version(&room_id).await? else {
                tracing::info!(%origin, %room_id, "a PDU of a room not known here was left out");
                continue;
            };
            if let Err(e) = super::acl::check_acl(self.store.as_ref(), &room_id, origin).await {
                tracing::info!(%origin, %room_id, error = %e, "a PDU was refused");
                if let Some(id) = event_id_of(&version, raw) {
                    out.insert(id, Err(e.to_string()));
                }
                continue;
            }
            let verified = match verify_pdu(&self.keys, &version, &room_id, raw).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::info!(%origin, %room_id, error = %e, "a PDU failed its checks");
                    if let Some(id) = event_id_of(&version, raw) {
                        out.insert(id, Err(e.to_string()));
                    }
                    continue;
                }
            };
            let id = verified.event_id().clone();
            let batch = RoomBatch::received(room_id.clone(), vec![verified.into()]);
            let outcome = match self.bus.submit(batch).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::info!(%origin, %room_id, event_id = %id, error = %e, "a PDU was refused");
                    Err(e.to_string())
                }
            };
            out.insert(id, outcome);
        }
        Ok(out)
    }
}

/// The id of a PDU of room version `version`: its reference hash.
fn event_id_of(version: &RoomVersionId, raw: &str) -> Option<OwnedEventId> {
    let rules = rules_for(version).ok()?;
    let object: ruma::CanonicalJsonObject = serde_json::from_str(raw).ok()?;
    let hash = ruma::signatures::reference_hash(&object, &rules).ok()?;
    OwnedEventId::try_from(format!("${hash}")).ok()
}
