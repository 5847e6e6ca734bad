//! The threads of a room (`/rooms/{roomId}/threads`): the roots of `m.thread` replies, the
//! most recently active first, each with its thread summary bundled
//! (`unsigned["m.relations"]["m.thread"]`: reply count, latest reply, whether the reader took
//! part) — all of them, or those the reader took part in.

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::*;

impl Rooms {
    pub async fn threads(
        &self,
        user: &UserId,
        room_id: &RoomId,
        participated_only: bool,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        let until = self.visible_until(user, room_id).await?;
        let before = match from {
            Some(t) => parse_token(t)?.min(until),
            None => until,
        };
        let limit = limit.clamp(1, self.config.max_timeline_limit);
        let threads = self
            .store
            .thread_activity(room_id, user, until, before, limit)
            .await?;
        let end = (threads.len() == limit)
            .then(|| threads.last().map(|t| make_token(t.latest_pos - 1)))
            .flatten();
        let mut events = Vec::with_capacity(threads.len());
        for thread in threads {
            let Some(mut root) = self.store.event(&thread.root).await? else {
                continue;
            };
            if root.pdu.room_id() != room_id || root.pos > until {
                continue;
            }
            let participated = thread.reader_replied || root.pdu.sender == user;
            if participated_only && !participated {
                continue;
            }
            let latest = self
                .store
                .event(&thread.latest)
                .await?
                .map(|e| e.to_client_value(true, Some((user, None))));
            let summary = json!({
                "count": thread.replies,
                "current_user_participated": participated,
                "latest_event": latest,
            });
            let mut unsigned = root.unsigned.take().unwrap_or_else(|| json!({}));
            if let Value::Object(fields) = &mut unsigned {
                let relations = fields.entry("m.relations").or_insert_with(|| json!({}));
                relations["m.thread"] = summary;
            }
            root.unsigned = Some(unsigned);
            events.push(root);
        }
        Ok(Page { events, end })
    }
}
