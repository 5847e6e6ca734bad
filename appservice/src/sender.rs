//! Transaction pushing: one task per application service follows the event stream from the
//! position it last had acknowledged, picks the events the service is interested in, and sends
//! them with `PUT /_matrix/app/v1/transactions/{txnId}`.
//!
//! A transaction is persisted (id, stream position it covers, body) before its first attempt
//! and sent unchanged until the service accepts it, with exponential backoff; only then does
//! the position move. A restart resumes the pending transaction, so nothing is lost and an
//! acknowledged transaction is never sent again. Ephemeral data (typing, receipts, presence,
//! to-device) arrives through [`EduSink`] into an in-memory queue and rides along with the next
//! transaction; it is not kept across a restart, like the data itself.

use ruma::events::room::member::MembershipState;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{
    api::{appservice::event::push_events, OutgoingRequestExt},
    serde::Raw,
    OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UserId,
};
use sandcat_core::{
    notifier::Notifier,
    ports::{AppserviceState, AppserviceStore, EduSink, RoomStore, StreamPosition, ToDevice},
    transaction_stream, Error, Result, StoredEvent,
};
use serde_json::{json, Value};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{registration::Appservice, service::Appservices};

pub use sandcat_core::transaction_stream::Backoff;

/// An application service as the receiver of its transactions.
struct Service<'a> {
    pushers: &'a Pushers,
    asv: &'a Appservice,
    queue: &'a Queue,
}

#[async_trait::async_trait]
impl transaction_stream::Receiver for Service<'_> {
    fn name(&self) -> &str {
        self.asv.id()
    }

    async fn build(&self, state: &AppserviceState) -> Result<AppserviceState> {
        self.pushers.build(self.asv, self.queue, state).await
    }

    async fn send(&self, txn: u64, body: &str) -> Result<()> {
        self.pushers
            .services
            .client()
            .put_transaction(self.asv, txn, body)
            .await
            .map_err(|e| Error::matrix(sandcat_core::ErrorCode::UrlNotSet, e.to_string()))
    }

    async fn other_news(&self) {
        self.queue.wake.notified().await
    }
}

/// Most events (and, separately, ephemeral items) in one transaction.
const MAX_EVENTS: usize = 100;
/// Most ephemeral items queued for a service that is not accepting them.
const MAX_QUEUED: usize = 1000;

enum Edu {
    Room(OwnedRoomId, Value),
    Presence(OwnedUserId, Value),
    ToDevice(Value),
}

#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<Edu>>,
    wake: Notify,
}

impl Queue {
    fn push(&self, edu: Edu) {
        {
            let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= MAX_QUEUED {
                q.pop_front();
            }
            q.push_back(edu);
        }
        self.wake.notify_one();
    }

    fn take(&self, n: usize) -> Vec<Edu> {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let n = n.min(q.len());
        q.drain(..n).collect()
    }
}

/// A pusher task and the registration it runs for.
type Running = (Arc<Appservice>, JoinHandle<()>);

/// The transaction pushers of every registered service with a url.
pub struct Pushers {
    services: Arc<Appservices>,
    store: Arc<dyn AppserviceStore>,
    rooms: Arc<dyn RoomStore>,
    stream: Arc<dyn StreamPosition>,
    notifier: Notifier,
    backoff: Backoff,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    running: Mutex<HashMap<String, Running>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Pushers {
    pub fn new(
        services: Arc<Appservices>,
        store: Arc<dyn AppserviceStore>,
        rooms: Arc<dyn RoomStore>,
        stream: Arc<dyn StreamPosition>,
        notifier: Notifier,
        backoff: Backoff,
    ) -> Self {
        Pushers {
            services,
            store,
            rooms,
            stream,
            notifier,
            backoff,
            queues: Default::default(),
            running: Default::default(),
            supervisor: Default::default(),
        }
    }

    fn queue(&self, id: &str) -> Arc<Queue> {
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Starts the pushers, and a supervisor that re-reads the registrations every
    /// `rescan` and restarts the pusher of a service whose registration changed.
    pub fn start(self: &Arc<Self>, rescan: Duration) {
        let this = self.clone();
        let supervisor = tokio::spawn(async move {
            let mut changes = this.services.registry().subscribe();
            // Senders are created at start-up; a changed set may bring new ones.
            let mut changed = false;
            loop {
                if changed {
                    if let Err(e) = this.services.ensure_senders().await {
                        tracing::warn!(error = %e, "creating application service senders");
                    }
                }
                this.reconcile();
                changed = tokio::select! {
                    _ = tokio::time::sleep(rescan) => this.services.registry().reload(),
                    _ = changes.changed() => true,
                };
            }
        });
        *self.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(supervisor);
    }

    /// Runs one pusher per registered service with a url, restarting changed ones.
    fn reconcile(self: &Arc<Self>) {
        let list = self.services.registry().all();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|id, (asv, task)| {
            let keep = list.iter().any(|a| a.id() == id && a.text == asv.text);
            if !keep {
                task.abort();
            }
            keep
        });
        for asv in list.iter() {
            if asv
                .registration
                .url
                .as_deref()
                .is_some_and(|u| !u.is_empty())
                && !running.contains_key(asv.id())
            {
                let task = tokio::spawn(self.clone().run(asv.clone()));
                running.insert(asv.id().to_owned(), (asv.clone(), task));
            }
        }
    }

    /// Stops every pusher. Pending transactions stay persisted and are resent on start.
    pub fn stop(&self) {
        if let Some(t) = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
        for (_, (_, t)) in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            t.abort();
        }
    }

    async fn run(self: Arc<Self>, asv: Arc<Appservice>) {
        let id = asv.id().to_owned();
        let queue = self.queue(&id);
        // A new service starts from now, not from the beginning of history.
        let state = transaction_stream::load_state(self.store.as_ref(), &id, self.backoff, || {
            self.stream.current_pos()
        })
        .await;
        tracing::info!(
            id,
            last_pos = state.last_pos,
            "application service pusher started"
        );
        let receiver = Service {
            pushers: &self,
            asv: &asv,
            queue: &queue,
        };
        transaction_stream::run(
            &receiver,
            self.store.as_ref(),
            &id,
            state,
            &self.notifier,
            self.backoff,
        )
        .await
    }

    /// Reads the stream after `state.last_pos` and returns the next state: with a pending
    /// transaction if anything is of interest, else with the position moved on.
    async fn build(
        &self,
        asv: &Appservice,
        queue: &Queue,
        state: &AppserviceState,
    ) -> Result<AppserviceState> {
        let until = self.stream.current_pos();
        let mut scanned = state.last_pos;
        let mut events = Vec::new();
        let mut interest = Interest::new(asv, self.rooms.as_ref());
        'scan: while scanned < until && events.len() < MAX_EVENTS {
            let batch = self.rooms.events_between(scanned, until, 500).await?;
            if batch.is_empty() {
                scanned = until;
                break;
            }
            for ev in batch {
                if interest.event(&ev).await? {
                    events.push(ev.to_client_value(true, None));
                }
                scanned = ev.pos;
                if events.len() >= MAX_EVENTS {
                    break 'scan;
                }
            }
        }
        let mut ephemeral = Vec::new();
        let mut to_device = Vec::new();
        for edu in queue.take(MAX_EVENTS) {
            match edu {
                Edu::Room(room, v) => {
                    if interest.room(&room).await? {
                        ephemeral.push(v);
                    }
                }
                Edu::Presence(user, v) => {
                    if interest.user_shares_room(&user).await? {
                        ephemeral.push(v);
                    }
                }
                Edu::ToDevice(v) => to_device.push(v),
            }
        }
        if events.is_empty() && ephemeral.is_empty() && to_device.is_empty() {
            return Ok(AppserviceState {
                last_pos: scanned.max(state.last_pos),
                next_txn: state.next_txn,
                pending: None,
            });
        }
        let txn = state.next_txn;
        let body = transaction_body(asv, txn, events, ephemeral, to_device)?;
        Ok(AppserviceState {
            last_pos: state.last_pos,
            next_txn: txn,
            pending: Some((txn, scanned, body)),
        })
    }
}

/// The JSON body of a transaction, through ruma's request type.
fn transaction_body(
    asv: &Appservice,
    txn: u64,
    events: Vec<Value>,
    ephemeral: Vec<Value>,
    to_device: Vec<Value>,
) -> Result<String> {
    fn raw<T>(list: &[Value]) -> Result<Vec<Raw<T>>> {
        list.iter()
            .map(|v| {
                serde_json::value::to_raw_value(v)
                    .map(Raw::from_json)
                    .map_err(|e| Error::internal(e.to_string()))
            })
            .collect()
    }
    let mut req =
        push_events::v1::Request::new(OwnedTransactionId::from(txn.to_string()), raw(&events)?);
    req.ephemeral = raw(&ephemeral)?;
    req.to_device = raw(&to_device)?;
    let http = req
        .try_into_http_request::<Vec<u8>>(
            "http://appservice.invalid",
            &asv.registration.hs_token,
            (),
        )
        .map_err(|e| Error::internal(format!("transaction: {e}")))?;
    String::from_utf8(http.into_body()).map_err(|e| Error::internal(e.to_string()))
}

/// Which rooms and events a service is interested in, cached for one transaction.
struct Interest<'a> {
    asv: &'a Appservice,
    rooms: &'a dyn RoomStore,
    cache: HashMap<OwnedRoomId, bool>,
}

impl<'a> Interest<'a> {
    fn new(asv: &'a Appservice, rooms: &'a dyn RoomStore) -> Self {
        Interest {
            asv,
            rooms,
            cache: HashMap::new(),
        }
    }

    /// A room id, an alias of the room, or a joined or invited member in its namespaces.
    async fn room(&mut self, room_id: &RoomId) -> Result<bool> {
        if let Some(v) = self.cache.get(room_id) {
            return Ok(*v);
        }
        let mut yes = self.asv.owns_room(room_id);
        if !yes {
            yes = self
                .rooms
                .aliases_of(room_id)
                .await?
                .iter()
                .any(|a| ruma::RoomAliasId::parse(a).is_ok_and(|a| self.asv.owns_alias(&a)));
        }
        if !yes {
            yes = self.rooms.members(room_id).await?.iter().any(|(u, m)| {
                matches!(m, MembershipState::Join | MembershipState::Invite)
                    && self.asv.owns_user(u)
            });
        }
        self.cache.insert(room_id.to_owned(), yes);
        Ok(yes)
    }

    async fn event(&mut self, ev: &StoredEvent) -> Result<bool> {
        if self.asv.owns_user(&ev.pdu.sender) {
            return Ok(true);
        }
        if ev.pdu.kind.to_string() == "m.room.member" {
            if let Some(target) = ev
                .pdu
                .state_key
                .as_deref()
                .and_then(|k| UserId::parse(k).ok())
            {
                if self.asv.owns_user(&target) {
                    // The service now has a member here: later events are of interest too.
                    self.cache.insert(ev.pdu.room_id().to_owned(), true);
                    return Ok(true);
                }
            }
        }
        self.room(ev.pdu.room_id()).await
    }

    async fn user_shares_room(&mut self, user: &UserId) -> Result<bool> {
        if self.asv.owns_user(user) {
            return Ok(true);
        }
        for m in self.rooms.memberships(user).await? {
            if m.membership == MembershipState::Join && self.room(&m.room_id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Pushers {
    /// Queues an ephemeral item for every service that asked for ephemeral data.
    fn queue_ephemeral(&self, edu: impl Fn() -> Edu) {
        for asv in self
            .services
            .registry()
            .all()
            .iter()
            .filter(|a| a.push_ephemeral)
        {
            self.queue(asv.id()).push(edu());
        }
    }
}

impl EduSink for Pushers {
    fn room_edu(&self, room_id: &RoomId, edu: Value) {
        self.queue_ephemeral(|| Edu::Room(room_id.to_owned(), edu.clone()));
    }

    fn presence(&self, user_id: &UserId, edu: Value) {
        self.queue_ephemeral(|| Edu::Presence(user_id.to_owned(), edu.clone()));
    }

    fn to_device(&self, messages: &[ToDevice]) {
        for asv in self
            .services
            .registry()
            .all()
            .iter()
            .filter(|a| a.push_to_device)
        {
            for m in messages.iter().filter(|m| asv.owns_user(&m.user_id)) {
                let mut ev = m.event.clone();
                ev["to_user_id"] = json!(m.user_id);
                ev["to_device_id"] = json!(m.device_id);
                self.queue(asv.id()).push(Edu::ToDevice(ev));
            }
        }
    }
}
