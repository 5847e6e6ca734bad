//! The inbox on MongoDB: one document per entry, `{user, sent, seq, pos, room, event_id, ts}`
//! (unique on `(user, sent, seq)`), the event's JSON once per event in `inbox_events`
//! (`{_id: pos, event_id, event}`: a membership change of a group of N members has N entries,
//! N joins N², and a copy of the event in each would be most of what is written), one counter
//! document per user, and one document recording how far the stream is indexed. Entries
//! written before `inbox_events` carry their own copy in `event`.
//!
//! A step writes several documents, and MongoDB without a replica set has no transactions,
//! so a step is made safe to cut short instead:
//! - the progress document first notes the step as started;
//! - events are written before the entries that point at them, entries before the counters
//!   that cover them (a redaction removes entries before their event), and a user's counter
//!   records the stream position it covers (`upto`) and the numbers readers may see until the
//!   step completes (`prev_*`);
//! - readers see only entries at or below the indexed position;
//! - a step that finds an earlier one started and never completed first removes its entries
//!   that no counter covers, then numbers after the counters.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, Document},
    options::{ClientOptions, IndexOptions},
    Client, Collection, Database, IndexModel,
};
use sandcat_core::{
    ports::{number_inbox_items, Inbox, InboxEntry, InboxItem, InboxSeqs, SeqRange},
    Error, Result,
};
use serde::{Deserialize, Serialize};

/// An inbox document.
#[derive(Serialize, Deserialize)]
struct Entry {
    user: String,
    sent: bool,
    seq: i64,
    pos: i64,
    room: String,
    event_id: String,
    /// The PDU as JSON text, in entries from before `inbox_events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    ts: i64,
}

/// An event of the inbox, kept once for all its entries.
#[derive(Serialize, Deserialize)]
struct EventDoc {
    #[serde(rename = "_id")]
    pos: i64,
    event_id: String,
    /// The PDU as JSON text: its keys (`m.relates_to`, `org.sandcat.…`) and numbers stay
    /// exactly as signed.
    event: String,
}

impl From<&InboxEntry> for Entry {
    fn from(e: &InboxEntry) -> Self {
        let i = &e.item;
        Entry {
            user: i.user.clone(),
            sent: i.sent,
            seq: e.seq,
            pos: i.pos,
            room: i.room.clone(),
            event_id: i.event_id.clone(),
            event: None,
            ts: i.ts,
        }
    }
}

impl Entry {
    /// The entry with its event: its own copy, else the one kept in `events`.
    fn with_event(self, events: &HashMap<i64, Arc<str>>) -> InboxEntry {
        let event = match self.event {
            Some(copy) => copy.into(),
            None => events.get(&self.pos).cloned().unwrap_or_else(|| "".into()),
        };
        InboxEntry {
            item: InboxItem {
                user: self.user,
                pos: self.pos,
                room: self.room,
                event_id: self.event_id,
                sent: self.sent,
                event,
                ts: self.ts,
            },
            seq: self.seq,
        }
    }
}

/// A user's counter document.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Counter {
    seq: i64,
    send_seq: i64,
    /// The stream position its numbers cover.
    upto: i64,
    /// The numbers before the step that wrote `upto`, for readers until that step completes.
    prev_seq: i64,
    prev_send_seq: i64,
}

impl Counter {
    /// The numbers readers may see when the inbox is indexed up to `indexed`.
    fn visible(&self, indexed: i64) -> InboxSeqs {
        if self.upto <= indexed {
            InboxSeqs {
                seq: self.seq,
                send_seq: self.send_seq,
            }
        } else {
            InboxSeqs {
                seq: self.prev_seq,
                send_seq: self.prev_send_seq,
            }
        }
    }
}

#[derive(Deserialize)]
struct CounterDoc {
    #[serde(rename = "_id")]
    user: String,
    #[serde(flatten)]
    counter: Counter,
}

#[derive(Deserialize, Default)]
struct Progress {
    #[serde(default)]
    pos: i64,
    /// The `upto` of a step under way (or cut short).
    #[serde(default)]
    started: Option<i64>,
}

fn mongo(e: mongodb::error::Error) -> Error {
    Error::storage(e)
}

fn bson(e: mongodb::bson::ser::Error) -> Error {
    Error::storage(e)
}

/// How long start-up waits for MongoDB by default: long enough for a server that is busy,
/// short enough that a wrong address fails at once rather than after the driver's 30 s.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Updates sent in one command: an event is 64 KiB at most, so a command stays below
/// MongoDB's 16 MB.
const UPDATES_PER_COMMAND: usize = 100;

pub struct MongoInbox {
    db: Database,
    entries: Collection<Entry>,
    events: Collection<EventDoc>,
    counters: Collection<CounterDoc>,
    progress: Collection<Document>,
}

impl MongoInbox {
    /// Connects (failing within [`CONNECT_WAIT`] when the server cannot be reached, unless the
    /// URL's `serverSelectionTimeoutMS` / `connectTimeoutMS` say otherwise) and creates the
    /// indexes.
    pub async fn connect(url: &str, database: &str) -> Result<Self> {
        let mut options = ClientOptions::parse(url).await.map_err(mongo)?;
        options.app_name = Some("sandcat".into());
        options.server_selection_timeout.get_or_insert(CONNECT_WAIT);
        options.connect_timeout.get_or_insert(CONNECT_WAIT);
        let client = Client::with_options(options).map_err(mongo)?;
        let db = client.database(database);
        db.run_command(doc! { "ping": 1 }).await.map_err(mongo)?;
        let entries = db.collection::<Entry>("inbox");
        let unique = IndexOptions::builder()
            .unique(true)
            .name("user_sent_seq".to_owned())
            .build();
        let indexes = [
            IndexModel::builder()
                .keys(doc! { "user": 1, "sent": 1, "seq": 1 })
                .options(unique)
                .build(),
            IndexModel::builder()
                .keys(doc! { "user": 1, "pos": 1 })
                .build(),
            IndexModel::builder().keys(doc! { "pos": 1 }).build(),
            IndexModel::builder().keys(doc! { "event_id": 1 }).build(),
        ];
        // Entries from before the counters were numbered by their stream position.
        entries
            .update_many(
                doc! { "pos": { "$exists": false } },
                vec![doc! { "$set": { "pos": "$seq" } }],
            )
            .await
            .map_err(mongo)?;
        for index in indexes {
            entries.create_index(index).await.map_err(mongo)?;
        }
        let events = db.collection::<EventDoc>("inbox_events");
        events
            .create_index(IndexModel::builder().keys(doc! { "event_id": 1 }).build())
            .await
            .map_err(mongo)?;
        Ok(MongoInbox {
            entries,
            events,
            counters: db.collection("inbox_counters"),
            progress: db.collection("inbox_indexed"),
            db,
        })
    }

    async fn progress(&self) -> Result<Progress> {
        let d = first(self.progress.find(doc! { "_id": "indexed" })).await?;
        Ok(d.map(|d| Progress {
            pos: int(d.get("pos")).unwrap_or(0),
            started: int(d.get("started")),
        })
        .unwrap_or_default())
    }

    async fn counters(&self, users: &[&str]) -> Result<HashMap<String, Counter>> {
        let docs: Vec<CounterDoc> =
            all(self.counters.find(doc! { "_id": { "$in": users } })).await?;
        Ok(docs.into_iter().map(|d| (d.user, d.counter)).collect())
    }

    /// The counter of a user who has none yet: their entries at or below `indexed` (an inbox
    /// from before counters) tell where they are.
    async fn first_counter(&self, user: &str, indexed: i64) -> Result<Counter> {
        let mut last = [0, 0];
        for (i, sent) in [false, true].into_iter().enumerate() {
            let found = first(
                self.entries
                    .find(doc! { "user": user, "sent": sent, "pos": { "$lte": indexed } })
                    .sort(doc! { "seq": -1 }),
            )
            .await?;
            last[i] = found.map_or(0, |e| e.seq);
        }
        Ok(Counter {
            seq: last[0],
            send_seq: last[1],
            upto: indexed,
            prev_seq: last[0],
            prev_send_seq: last[1],
        })
    }

    /// Removes what a step cut short left behind: entries above the indexed position that no
    /// counter covers.
    async fn recover(&self, indexed: i64) -> Result<()> {
        let left: Vec<Entry> = all(self.entries.find(doc! { "pos": { "$gt": indexed } })).await?;
        let mut users: Vec<&str> = left.iter().map(|e| e.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let counters = self.counters(&users).await?;
        for user in users {
            let covered = counters.get(user).map_or(indexed, |c| c.upto.max(indexed));
            self.entries
                .delete_many(doc! { "user": user, "pos": { "$gt": covered } })
                .await
                .map_err(mongo)?;
        }
        Ok(())
    }

    /// Applies `updates` to `collection`, [`UPDATES_PER_COMMAND`] to a command (a command is
    /// at most 16 MB).
    async fn command_updates(&self, collection: &str, updates: Vec<Document>) -> Result<()> {
        for chunk in updates.chunks(UPDATES_PER_COMMAND) {
            let reply = self
                .db
                .run_command(doc! { "update": collection, "updates": chunk, "ordered": true })
                .await
                .map_err(mongo)?;
            if let Some(Bson::Array(errors)) = reply.get("writeErrors") {
                if !errors.is_empty() {
                    return Err(Error::storage(format!("writing {collection}: {errors:?}")));
                }
            }
        }
        Ok(())
    }

    /// Keeps each event of `entries` once (an event kept by a step cut short stays as it is).
    async fn write_events(&self, entries: &[InboxEntry]) -> Result<()> {
        let mut seen = HashSet::new();
        let updates: Vec<Document> = entries
            .iter()
            .map(|e| &e.item)
            .filter(|i| seen.insert(i.pos))
            .map(|i| {
                doc! {
                    "q": { "_id": i.pos },
                    "u": { "$setOnInsert": { "event_id": &i.event_id, "event": &*i.event } },
                    "upsert": true,
                }
            })
            .collect();
        self.command_updates("inbox_events", updates).await
    }

    /// `docs` with their events, read from `inbox_events` for those that carry none.
    async fn with_events(&self, docs: Vec<Entry>) -> Result<Vec<InboxEntry>> {
        let mut wanted: Vec<i64> = docs
            .iter()
            .filter(|d| d.event.is_none())
            .map(|d| d.pos)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut events = HashMap::new();
        if !wanted.is_empty() {
            let found: Vec<EventDoc> =
                all(self.events.find(doc! { "_id": { "$in": wanted } })).await?;
            events = found.into_iter().map(|e| (e.pos, e.event.into())).collect();
        }
        Ok(docs.into_iter().map(|d| d.with_event(&events)).collect())
    }

    /// Numbers and writes the items of a step; `indexed` is the position before it.
    async fn number_and_write(&self, fresh: &[InboxItem], indexed: i64, upto: i64) -> Result<()> {
        let mut users: Vec<&str> = fresh.iter().map(|i| i.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let mut stored = self.counters(&users).await?;
        for user in &users {
            if !stored.contains_key(*user) {
                let c = self.first_counter(user, indexed).await?;
                stored.insert((*user).to_owned(), c);
            }
        }
        // Items a cut-short step already numbered (its counter covers them) stay as they are.
        let todo: Vec<InboxItem> = fresh
            .iter()
            .filter(|i| stored.get(&i.user).is_none_or(|c| i.pos > c.upto))
            .cloned()
            .collect();
        let mut next: HashMap<String, InboxSeqs> = stored
            .iter()
            .map(|(u, c)| {
                let seqs = InboxSeqs {
                    seq: c.seq,
                    send_seq: c.send_seq,
                };
                (u.clone(), seqs)
            })
            .collect();
        let entries = number_inbox_items(&todo, &mut next);
        if entries.is_empty() {
            return Ok(());
        }
        self.write_events(&entries).await?;
        let docs: Vec<Entry> = entries.iter().map(Entry::from).collect();
        self.entries.insert_many(docs).await.map_err(mongo)?;
        let mut updates = Vec::new();
        for e in &entries {
            let user = &e.item.user;
            let (Some(old), Some(new)) = (stored.get(user), next.remove(user)) else {
                continue;
            };
            let before = old.visible(indexed);
            let counter = Counter {
                seq: new.seq,
                send_seq: new.send_seq,
                upto,
                prev_seq: before.seq,
                prev_send_seq: before.send_seq,
            };
            let set = mongodb::bson::to_document(&counter).map_err(bson)?;
            updates.push(doc! { "q": { "_id": user }, "u": { "$set": set }, "upsert": true });
        }
        self.command_updates("inbox_counters", updates).await
    }
}

fn int(b: Option<&Bson>) -> Option<i64> {
    match b {
        Some(Bson::Int64(p)) => Some(*p),
        Some(Bson::Int32(p)) => Some(i64::from(*p)),
        _ => None,
    }
}

/// Every document a query finds.
async fn all<T>(find: mongodb::action::Find<'_, T>) -> Result<Vec<T>>
where
    T: serde::de::DeserializeOwned + Send + Sync,
{
    let cursor = find.await.map_err(mongo)?;
    cursor.try_collect().await.map_err(mongo)
}

/// The first document a query finds. (`find_one` asks for `limit: -1`, which not every
/// server of the wire protocol accepts; `limit: 1` means the same.)
async fn first<T>(find: mongodb::action::Find<'_, T>) -> Result<Option<T>>
where
    T: serde::de::DeserializeOwned + Send + Sync,
{
    let mut cursor = find.limit(1).await.map_err(mongo)?;
    cursor.try_next().await.map_err(mongo)
}

#[async_trait]
impl Inbox for MongoInbox {
    async fn append(&self, items: &[InboxItem], redacted: &[String], upto: i64) -> Result<()> {
        let progress = self.progress().await?;
        let indexed = progress.pos;
        if progress.started.is_some_and(|s| s > indexed) {
            self.recover(indexed).await?;
        }
        let fresh: Vec<InboxItem> = items.iter().filter(|i| i.pos > indexed).cloned().collect();
        if !fresh.is_empty() {
            self.progress
                .update_one(
                    doc! { "_id": "indexed" },
                    doc! { "$max": { "started": upto }, "$setOnInsert": { "pos": 0_i64 } },
                )
                .upsert(true)
                .await
                .map_err(mongo)?;
            self.number_and_write(&fresh, indexed, upto).await?;
        }
        if !redacted.is_empty() {
            self.entries
                .delete_many(doc! { "event_id": { "$in": redacted } })
                .await
                .map_err(mongo)?;
            self.events
                .delete_many(doc! { "event_id": { "$in": redacted } })
                .await
                .map_err(mongo)?;
        }
        self.progress
            .update_one(
                doc! { "_id": "indexed" },
                doc! { "$max": { "pos": upto }, "$unset": { "started": "" } },
            )
            .upsert(true)
            .await
            .map_err(mongo)?;
        Ok(())
    }

    async fn indexed(&self) -> Result<i64> {
        Ok(self.progress().await?.pos)
    }

    async fn pull(
        &self,
        user: &str,
        received: SeqRange,
        sent: SeqRange,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let indexed = self.indexed().await?;
        let range = |sent: bool, r: SeqRange| {
            doc! { "sent": sent, "seq": { "$gt": r.after, "$lte": r.until } }
        };
        let find = self
            .entries
            .find(doc! {
                "user": user,
                "pos": { "$lte": indexed },
                "$or": [range(false, received), range(true, sent)],
            })
            .sort(doc! { "pos": 1 })
            .limit(limit as i64);
        let docs: Vec<Entry> = all(find).await?;
        self.with_events(docs).await
    }

    async fn since(&self, user: &str, after: i64, limit: usize) -> Result<Vec<InboxEntry>> {
        let indexed = self.indexed().await?;
        let find = self
            .entries
            .find(doc! { "user": user, "pos": { "$gt": after, "$lte": indexed } })
            .sort(doc! { "pos": 1, "sent": 1 })
            .limit(limit as i64);
        let docs: Vec<Entry> = all(find).await?;
        self.with_events(docs).await
    }

    async fn received(&self, user: &str, seq: i64) -> Result<Option<InboxEntry>> {
        let indexed = self.indexed().await?;
        let found = first(
            self.entries
                .find(doc! { "user": user, "sent": false, "seq": seq, "pos": { "$lte": indexed } }),
        )
        .await?;
        Ok(self.with_events(found.into_iter().collect()).await?.pop())
    }

    async fn latest(&self, user: &str) -> Result<InboxSeqs> {
        let indexed = self.indexed().await?;
        match self.counters(&[user]).await?.remove(user) {
            Some(c) => Ok(c.visible(indexed)),
            None => Ok(self.first_counter(user, indexed).await?.visible(indexed)),
        }
    }

    async fn remove(&self, user: &str, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.entries
            .delete_many(doc! { "user": user, "sent": false, "seq": { "$in": seqs } })
            .await
            .map_err(mongo)?;
        Ok(())
    }
}
