//! The message routes of the Sandcat API, read from the user's inbox: offline pull, the
//! user's latest numbers, deletion. A user's `seq` numbers the messages they received and
//! `send_seq` the ones they sent, each `1, 2, 3, …` in stream order (the inbox's counters), so
//! a client sees a gap only where a message really is missing.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::{extract::State, Json};
use ruma::{OwnedRoomId, RoomId};
use sandcat_core::ports::{InboxEntry, SeqRange};

use crate::{
    groups::group_op_msg,
    mapping::{event_to_msg, Kinds, Profiles},
    model::{DelMsgRequest, GetDbMessagesRequest, Msg, Seq},
    ApiResult, Auth, Body, NativeState, PathArgs,
};

/// Most messages one pull returns. The Sandcat client takes a pull's answer in one piece and
/// then moves its seq to the end of what it asked for, so a smaller cap would lose messages
/// for a device catching up; this one bounds the answer (tens of MB) for a device that was
/// away very long.
const MAX_PULL: usize = 50_000;

/// How long a read waits for the inbox indexer to catch up with the stream.
const INDEX_WAIT: Duration = Duration::from_secs(5);

/// The frame of an inbox entry (a message, or a group operation), numbered as its owner `me` counts it: a received message
/// carries its `seq`, a sent one its `send_seq` (and `seq` 0: the client counts `seq` as
/// received messages).
pub(crate) async fn entry_to_msg(
    s: &NativeState,
    kinds: &mut Kinds,
    profiles: &mut Profiles,
    entry: &InboxEntry,
    me: &str,
) -> ApiResult<Option<Msg>> {
    let ev = entry.stored_event()?;
    let converted = if ev.pdu.state_key.is_some() {
        group_op_msg(s, &ev, me).await?
    } else {
        event_to_msg(s, kinds, profiles, &ev, me).await?
    };
    let Some(mut m) = converted else {
        return Ok(None);
    };
    if entry.item.sent {
        m.send_seq = entry.seq;
    } else {
        m.seq = entry.seq;
    }
    Ok(Some(m))
}

/// Waits (a little) for the inbox indexer to reach the stream position of this instance, so
/// that a message acknowledged before the request is in the answer.
async fn caught_up(s: &NativeState) -> ApiResult<()> {
    let target = s.stream.current_pos();
    let deadline = Instant::now() + INDEX_WAIT;
    loop {
        let at = s.inbox.indexed().await?;
        if at >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                indexed = at,
                stream = target,
                "the inbox lags behind the stream"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The range `(after, until]` of a request, as the protocol states it: `(5, 5]` is empty.
fn range(after: i64, until: i64) -> SeqRange {
    SeqRange::new(after.max(0), until)
}

/// POST /message — received messages with `seq ∈ (start, end]` and sent ones with
/// `send_seq ∈ (send_start, send_end]`, in stream order, from the user's inbox.
pub(crate) async fn pull(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<GetDbMessagesRequest>,
) -> ApiResult<Json<Vec<Msg>>> {
    auth.check(&req.user_id)?;
    let me = req.user_id.as_str();
    caught_up(&s).await?;
    let entries = s
        .inbox
        .pull(
            s.matrix_id(me)?.as_str(),
            range(req.start, req.end),
            range(req.send_start, req.send_end),
            MAX_PULL,
        )
        .await?;
    let (mut kinds, mut profiles) = (Kinds::default(), Profiles::default());
    let mut read_up_to: HashMap<OwnedRoomId, i64> = HashMap::new();
    let mut out = Vec::new();
    for entry in entries {
        let Some(mut m) = entry_to_msg(&s, &mut kinds, &mut profiles, &entry, me).await? else {
            continue;
        };
        let room = OwnedRoomId::try_from(entry.item.room.as_str())
            .map_err(|e| sandcat_core::Error::Internal(format!("inbox room id: {e}")))?;
        let read = match read_up_to.get(&room) {
            Some(p) => *p,
            None => {
                let p = read_position(&s, me, &room).await?;
                read_up_to.insert(room, p);
                p
            }
        };
        // Read state as the reader's own receipts tell it, whichever client sent them.
        m.is_read = !entry.item.sent && entry.item.pos <= read;
        out.push(m);
    }
    Ok(Json(out))
}

/// The stream position up to which `me` has read the room (0: nothing).
async fn read_position(s: &NativeState, me: &str, room: &RoomId) -> ApiResult<i64> {
    let Some(event_id) = s.data.read_marker(&s.matrix_id(me)?, room).await? else {
        return Ok(0);
    };
    Ok(s.room_store()
        .event(&event_id)
        .await?
        .map(|e| e.pos)
        .unwrap_or(0))
}

/// GET /message/seq/{user_id} — the latest received and sent numbers.
pub(crate) async fn seq(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs(user_id): PathArgs<String>,
) -> ApiResult<Json<Seq>> {
    auth.check(&user_id)?;
    caught_up(&s).await?;
    let latest = s.inbox.latest(s.matrix_id(&user_id)?.as_str()).await?;
    Ok(Json(Seq {
        seq: latest.seq,
        send_seq: latest.send_seq,
    }))
}

/// DELETE /message — removes received messages (by seq) from the user's inbox.
pub(crate) async fn delete(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<DelMsgRequest>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    s.inbox
        .remove(s.matrix_id(&req.user_id)?.as_str(), &req.msg_id)
        .await?;
    Ok(())
}
