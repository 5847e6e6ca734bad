//! This server's events to the servers in their rooms: one task per destination follows the
//! event stream from the position it last had acknowledged, picks the events of this server's
//! users in rooms where the destination has a joined member, and sends them in a transaction
//! (`PUT /_matrix/federation/v1/send/{txnId}`, at most 50 PDUs).
//!
//! As for application services (the same `transaction_stream` driver), a transaction is
//! persisted before its first attempt and sent unchanged until the destination accepts it,
//! with exponential backoff; only then does the position move, so a restart resumes it and
//! nothing is lost. Destinations are the servers of the joined members of rooms other servers share
//! (found at start, and from joins as they arrive). Their state is kept with the application
//! services' transaction streams, under `federation:<server name>`. A destination that makes a
//! signed request here is up again: its transaction waiting out a backoff goes at once.
//!
//! EDUs (`edus.rs`) wait in the [`FederationOutbox`] at stream positions, so the same scan
//! finds them: a transaction carries the destination's EDUs up to the position its events
//! reach (at most 100, those expired left out), and everything up to there is forgotten once
//! it is accepted. A server that only has EDUs waiting (a to-device message to a server
//! sharing no room) gets a task of its own too.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{
    api::federation::transactions::send_transaction_message,
    events::{room::member::MembershipState, TimelineEventType},
    serde::Raw,
    MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedServerName, ServerName, UserId,
};
use sandcat_core::{
    notifier::Notifier,
    ports::{AppserviceState, AppserviceStore, FederationOutbox, RoomStore, StreamPosition},
    transaction_stream::{self, Backoff},
    Result, StoredEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::{sync::Notify, task::JoinHandle};

use crate::client::FederationClient;
use sandcat_core::services::federation::MAX_PDUS_PER_TRANSACTION;

/// The first wait after a failed transaction, and the longest.
const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(60),
};

/// A destination as the receiver of its transactions.
struct Destination<'a> {
    sender: &'a FederationSender,
    name: OwnedServerName,
}

#[async_trait::async_trait]
impl transaction_stream::Receiver for Destination<'_> {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    async fn build(&self, state: &AppserviceState) -> Result<AppserviceState> {
        self.sender.build(&self.name, state).await
    }

    async fn send(&self, txn: u64, body: &str) -> Result<()> {
        let body = Body::parse(body)?;
        self.sender.send(&self.name, txn, &body).await?;
        if let Some(upto) = body.upto {
            // Forgotten only to keep the table small: the position has moved past them.
            if let Err(e) = self.sender.outbox.forget_edus(&self.name, upto).await {
                tracing::warn!(destination = %self.name, error = %e, "forgetting EDUs sent");
            }
        }
        Ok(())
    }

    async fn back(&self) {
        self.sender.contact_of(&self.name).notified().await
    }
}

/// The most EDUs one transaction carries (the spec's limit).
const MAX_EDUS_PER_TRANSACTION: usize = 100;

/// A transaction as persisted until accepted: the PDUs' JSON, and the EDUs kept for the
/// destination (with when each expires), which are forgotten up to `upto` once it is
/// accepted. Transactions persisted before EDUs were kept are a bare array of the PDUs'
/// JSON, and read as such.
#[derive(Serialize, Deserialize)]
struct Body {
    pdus: Vec<Box<RawValue>>,
    #[serde(default)]
    edus: Vec<Box<RawValue>>,
    #[serde(default)]
    expires: Vec<Option<u64>>,
    #[serde(default)]
    upto: Option<i64>,
}

impl Body {
    /// The EDUs still worth sending at `now_ms`. An attempt after one that failed leaves out
    /// those expired meanwhile (a typing notification a minute late would mislead); the
    /// transaction keeps its id, and a server that took the first attempt answers the retry
    /// as it answered that.
    fn edus_at(&self, now_ms: u64) -> impl Iterator<Item = &RawValue> {
        self.edus.iter().enumerate().filter_map(move |(i, e)| {
            let expires = self.expires.get(i).copied().flatten();
            expires.is_none_or(|t| t > now_ms).then_some(&**e)
        })
    }
}

impl Body {
    fn parse(body: &str) -> Result<Body> {
        if body.trim_start().starts_with('[') {
            let pdus: Vec<String> = serde_json::from_str(body)?;
            return Ok(Body {
                pdus: pdus
                    .into_iter()
                    .map(RawValue::from_string)
                    .collect::<std::result::Result<_, _>>()?,
                edus: Vec::new(),
                expires: Vec::new(),
                upto: None,
            });
        }
        Ok(serde_json::from_str(body)?)
    }
}

pub struct FederationSender {
    client: Arc<FederationClient>,
    state: Arc<dyn AppserviceStore>,
    rooms: Arc<dyn RoomStore>,
    outbox: Arc<dyn FederationOutbox>,
    stream: Arc<dyn StreamPosition>,
    notifier: Notifier,
    own: OwnedServerName,
    running: Mutex<HashMap<OwnedServerName, JoinHandle<()>>>,
    discovery: Mutex<Option<JoinHandle<()>>>,
    /// Per destination, told when it makes a signed request here: it is up again.
    contacts: Mutex<HashMap<OwnedServerName, Arc<Notify>>>,
}

fn is_join(ev: &StoredEvent) -> bool {
    ev.pdu.kind == TimelineEventType::RoomMember
        && ev.pdu.membership() == Some(MembershipState::Join)
}

fn state_id(destination: &ServerName) -> String {
    format!("federation:{destination}")
}

impl FederationSender {
    pub fn new(
        client: Arc<FederationClient>,
        state: Arc<dyn AppserviceStore>,
        rooms: Arc<dyn RoomStore>,
        outbox: Arc<dyn FederationOutbox>,
        stream: Arc<dyn StreamPosition>,
        notifier: Notifier,
        own: OwnedServerName,
    ) -> Self {
        FederationSender {
            client,
            state,
            rooms,
            outbox,
            stream,
            notifier,
            own,
            running: Default::default(),
            discovery: Default::default(),
            contacts: Default::default(),
        }
    }

    /// `origin` made a signed request here, so it is up: a transaction of its that waits out
    /// a backoff on this instance is sent at once.
    pub fn contacted(&self, origin: &ServerName) {
        let contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = contacts.get(origin) {
            n.notify_waiters();
        }
    }

    fn contact_of(&self, destination: &ServerName) -> Arc<Notify> {
        let mut contacts = self.contacts.lock().unwrap_or_else(|e| e.into_inner());
        contacts.entry(destination.to_owned()).or_default().clone()
    }

    /// Starts a task per known destination, and one that finds new ones as events arrive.
    pub fn start(self: &Arc<Self>) {
        let this = self.clone();
        let task = tokio::spawn(async move { this.discover().await });
        *self.discovery.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops every task. Pending transactions stay persisted and are resent on start.
    pub fn stop(&self) {
        if let Some(t) = self
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
        for (_, t) in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            t.abort();
        }
    }

    fn ensure(self: &Arc<Self>, destination: OwnedServerName, from: Option<i64>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if destination == self.own || running.contains_key(&destination) {
            return;
        }
        let this = self.clone();
        let d = destination.clone();
        running.insert(
            destination,
            tokio::spawn(async move { this.run(d, from).await }),
        );
    }

    /// Starts the destinations of the rooms other servers share, then follows the stream for
    /// events of this server in rooms with servers that have no task yet.
    async fn discover(self: Arc<Self>) {
        match self.rooms.federated_servers().await {
            Ok(servers) => {
                for s in servers {
                    self.ensure(s, None);
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the servers of shared rooms"),
        }
        let mut last = self.stream.current_pos();
        // EDUs queued before a restart, for servers whose task has no state yet.
        self.ensure_edu_destinations(0, last).await;
        loop {
            let mut wake = self.notifier.subscribe();
            let until = self.stream.current_pos();
            self.ensure_edu_destinations(last, until).await;
            while last < until {
                let batch = match self.rooms.events_between(last, until, 500).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the stream for destinations");
                        break;
                    }
                };
                if batch.is_empty() {
                    last = until;
                    break;
                }
                // A server becomes a destination when it has a member join a room here, or
                // a user here joins a room of its: only joins are looked at, so messages cost
                // nothing, and a server with no other server in its rooms reads nothing more.
                for ev in batch.iter().filter(|e| is_join(e)) {
                    let joined = ev.pdu.state_key.as_deref().map(UserId::parse);
                    let Some(Ok(user)) = joined else { continue };
                    if user.server_name() != self.own {
                        self.ensure(user.server_name().to_owned(), Some(ev.pos - 1));
                        continue;
                    }
                    let room = ev.pdu.room_id().to_owned();
                    match self.rooms.joined_servers(&room).await {
                        Ok(servers) => servers
                            .into_iter()
                            .for_each(|s| self.ensure(s, Some(ev.pos - 1))),
                        Err(e) => tracing::warn!(%room, error = %e, "reading a room's servers"),
                    }
                }
                last = batch.last().map_or(until, |e| e.pos);
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Starts a task for each server with EDUs queued at positions in `(after, until]`, from
    /// just before its first.
    async fn ensure_edu_destinations(self: &Arc<Self>, after: i64, until: i64) {
        if after >= until {
            return;
        }
        match self.outbox.edu_destinations(after, until).await {
            Ok(found) => {
                for (server, first) in found {
                    self.ensure(server, Some(first - 1));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the servers EDUs wait for"),
        }
    }

    /// Sends a destination's transactions, one at a time, as events for it arrive.
    async fn run(self: Arc<Self>, destination: OwnedServerName, from: Option<i64>) {
        let id = state_id(&destination);
        let state = transaction_stream::load_state(self.state.as_ref(), &id, BACKOFF, || {
            from.unwrap_or_else(|| self.stream.current_pos())
        })
        .await;
        let receiver = Destination {
            sender: &self,
            name: destination,
        };
        transaction_stream::run(
            &receiver,
            self.state.as_ref(),
            &id,
            state,
            &self.notifier,
            BACKOFF,
        )
        .await
    }

    /// The next state after reading the stream: a pending transaction with the events for
    /// `destination`, or the position moved on.
    async fn build(
        &self,
        destination: &ServerName,
        state: &AppserviceState,
    ) -> Result<AppserviceState> {
        let until = self.stream.current_pos();
        let mut scanned = state.last_pos;
        let mut pdus: Vec<(i64, String)> = Vec::new();
        let mut shared: HashMap<OwnedRoomId, bool> = HashMap::new();
        'scan: while scanned < until {
            let batch = self.rooms.events_between(scanned, until, 500).await?;
            if batch.is_empty() {
                scanned = until;
                break;
            }
            for ev in batch {
                if self.is_for(destination, &ev, &mut shared).await? {
                    if let Some(json) = self.rooms.event_json(&ev.pdu.event_id).await? {
                        pdus.push((ev.pos, json));
                    }
                }
                scanned = ev.pos;
                if pdus.len() >= MAX_PDUS_PER_TRANSACTION {
                    break 'scan;
                }
            }
        }
        let edus = self
            .outbox
            .queued_edus(
                destination,
                state.last_pos,
                scanned,
                MilliSecondsSinceUnixEpoch::now().get().into(),
                MAX_EDUS_PER_TRANSACTION,
            )
            .await?;
        if edus.len() == MAX_EDUS_PER_TRANSACTION {
            // The transaction is full of EDUs: it ends at the last one, and the events after
            // it go in the next.
            if let Some(last) = edus.last() {
                scanned = last.pos;
                pdus.retain(|(pos, _)| *pos <= scanned);
            }
        }
        let mut next = state.clone();
        if pdus.is_empty() && edus.is_empty() {
            next.last_pos = scanned.max(state.last_pos);
            return Ok(next);
        }
        let body = Body {
            upto: Some(scanned),
            pdus: pdus
                .into_iter()
                .map(|(_, json)| RawValue::from_string(json))
                .collect::<std::result::Result<_, _>>()?,
            expires: edus.iter().map(|e| e.expires_ms).collect(),
            edus: edus
                .into_iter()
                .map(|e| RawValue::from_string(e.edu))
                .collect::<std::result::Result<_, _>>()?,
        };
        next.pending = Some((state.next_txn, scanned, serde_json::to_string(&body)?));
        Ok(next)
    }

    /// Whether `ev` goes to `destination`: an event of this server's, in a room where the
    /// destination has a joined member.
    async fn is_for(
        &self,
        destination: &ServerName,
        ev: &StoredEvent,
        shared: &mut HashMap<OwnedRoomId, bool>,
    ) -> Result<bool> {
        if ev.pdu.sender.server_name() != self.own {
            return Ok(false);
        }
        let room = ev.pdu.room_id().to_owned();
        if let Some(known) = shared.get(&room) {
            return Ok(*known);
        }
        let yes = self
            .rooms
            .joined_servers(&room)
            .await?
            .contains(destination);
        shared.insert(room, yes);
        Ok(yes)
    }

    async fn send(&self, destination: &ServerName, txn: u64, body: &Body) -> Result<()> {
        let mut request = send_transaction_message::v1::Request::new(
            txn.to_string().into(),
            self.own.clone(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = body.pdus.clone();
        request.edus = body
            .edus_at(MilliSecondsSinceUnixEpoch::now().get().into())
            .map(|e| Raw::from_json(e.to_owned()))
            .collect();
        let answer = self.client.send(destination, request).await?;
        for (event_id, outcome) in answer.pdus {
            if let Err(why) = outcome {
                tracing::info!(%destination, %event_id, %why, "an event was refused");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::Body;

    #[test]
    fn a_transaction_persisted_before_edus_reads_as_its_pdus() {
        let old = serde_json::to_string(&vec![r#"{"type":"m.room.message"}"#]).unwrap();
        let body = Body::parse(&old).unwrap();
        assert_eq!(body.pdus.len(), 1);
        assert_eq!(body.pdus[0].get(), r#"{"type":"m.room.message"}"#);
        assert!(body.edus.is_empty());
        assert_eq!(body.upto, None);
        assert!(Body::parse("[1]").is_err(), "not a list of JSON strings");
    }

    #[test]
    fn expired_edus_are_left_out_of_an_attempt() {
        let body = Body::parse(
            r#"{"pdus":[],"edus":[{"n":1},{"n":2},{"n":3}],"expires":[null,100,300],"upto":7}"#,
        )
        .unwrap();
        let at = |now| body.edus_at(now).map(|e| e.get()).collect::<Vec<_>>();
        assert_eq!(at(50), [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
        assert_eq!(at(100), [r#"{"n":1}"#, r#"{"n":3}"#]);
        assert_eq!(at(400), [r#"{"n":1}"#]);
        assert_eq!(body.upto, Some(7));
    }
}
