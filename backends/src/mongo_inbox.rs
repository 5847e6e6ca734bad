//! The inbox on MongoDB: one document per entry, `{user, seq, room, event_id, sent, event,
//! ts}`, with a unique `(user, seq)` index, and one document recording how far the stream is
//! indexed.

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, Document},
    error::ErrorKind,
    options::{ClientOptions, IndexOptions},
    Client, Collection, IndexModel,
};
use sandcat_core::{
    ports::{Inbox, InboxEntry},
    Error, Result,
};
use serde::{Deserialize, Serialize};

/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// An inbox document.
#[derive(Serialize, Deserialize)]
struct Entry {
    user: String,
    seq: i64,
    room: String,
    event_id: String,
    sent: bool,
    /// The PDU as JSON text: its keys (`m.relates_to`, `org.sandcat.…`) and numbers stay
    /// exactly as signed.
    event: String,
    ts: i64,
}

impl From<&InboxEntry> for Entry {
    fn from(e: &InboxEntry) -> Self {
        Entry {
            user: e.user.clone(),
            seq: e.seq,
            room: e.room.clone(),
            event_id: e.event_id.clone(),
            sent: e.sent,
            event: e.event.clone(),
            ts: e.ts,
        }
    }
}

impl From<Entry> for InboxEntry {
    fn from(e: Entry) -> Self {
        InboxEntry {
            user: e.user,
            seq: e.seq,
            room: e.room,
            event_id: e.event_id,
            sent: e.sent,
            event: e.event,
            ts: e.ts,
        }
    }
}

fn mongo(e: mongodb::error::Error) -> Error {
    Error::storage(e)
}

pub struct MongoInbox {
    entries: Collection<Entry>,
    progress: Collection<Document>,
}

impl MongoInbox {
    /// Connects (failing within seconds when the server cannot be reached) and creates the
    /// indexes.
    pub async fn connect(url: &str, database: &str) -> Result<Self> {
        let mut options = ClientOptions::parse(url).await.map_err(mongo)?;
        options.app_name = Some("sandcat".into());
        options.server_selection_timeout = Some(Duration::from_secs(5));
        options.connect_timeout = Some(Duration::from_secs(5));
        let client = Client::with_options(options).map_err(mongo)?;
        let db = client.database(database);
        db.run_command(doc! { "ping": 1 }).await.map_err(mongo)?;
        let entries = db.collection::<Entry>("inbox");
        entries
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "user": 1, "seq": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .name("user_seq".to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(mongo)?;
        entries
            .create_index(IndexModel::builder().keys(doc! { "event_id": 1 }).build())
            .await
            .map_err(mongo)?;
        Ok(MongoInbox {
            entries,
            progress: db.collection("inbox_indexed"),
        })
    }
}

/// Whether every write error of an unordered insert is a duplicate key: the entries were
/// there already (a step repeated after a crash or a change of indexer).
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
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
    async fn put(&self, entries: &[InboxEntry], redacted: &[String], upto: i64) -> Result<()> {
        if !entries.is_empty() {
            let docs: Vec<Entry> = entries.iter().map(Entry::from).collect();
            match self.entries.insert_many(docs).ordered(false).await {
                Ok(_) => {}
                Err(e) if only_duplicates(&e) => {}
                Err(e) => return Err(mongo(e)),
            }
        }
        if !redacted.is_empty() {
            self.entries
                .delete_many(doc! { "event_id": { "$in": redacted } })
                .await
                .map_err(mongo)?;
        }
        self.progress
            .update_one(doc! { "_id": "indexed" }, doc! { "$max": { "pos": upto } })
            .upsert(true)
            .await
            .map_err(mongo)?;
        Ok(())
    }

    async fn indexed(&self) -> Result<i64> {
        let d = first(self.progress.find(doc! { "_id": "indexed" })).await?;
        Ok(d.and_then(|d| match d.get("pos") {
            Some(Bson::Int64(p)) => Some(*p),
            Some(Bson::Int32(p)) => Some(i64::from(*p)),
            _ => None,
        })
        .unwrap_or(0))
    }

    async fn pull(
        &self,
        user: &str,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let cursor = self
            .entries
            .find(doc! { "user": user, "seq": { "$gt": after, "$lte": until } })
            .sort(doc! { "seq": 1 })
            .limit(limit as i64)
            .await
            .map_err(mongo)?;
        let docs: Vec<Entry> = cursor.try_collect().await.map_err(mongo)?;
        Ok(docs.into_iter().map(InboxEntry::from).collect())
    }

    async fn latest(&self, user: &str) -> Result<(i64, i64)> {
        let mut out = [0, 0];
        for (i, sent) in [false, true].into_iter().enumerate() {
            let last = first(
                self.entries
                    .find(doc! { "user": user, "sent": sent })
                    .sort(doc! { "seq": -1 }),
            )
            .await?;
            out[i] = last.map_or(0, |e| e.seq);
        }
        Ok((out[0], out[1]))
    }

    async fn remove(&self, user: &str, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.entries
            .delete_many(doc! { "user": user, "seq": { "$in": seqs } })
            .await
            .map_err(mongo)?;
        Ok(())
    }
}
