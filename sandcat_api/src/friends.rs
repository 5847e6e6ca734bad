//! `/friend/*`: friend requests, acceptance (which opens a Matrix DM room with `is_direct` and
//! `m.direct` on both sides), deletion (which leaves the room), remarks and lookups.

use axum::{extract::State, Json};
use rand::Rng;
use ruma::events::room::member::MembershipState;
use sandcat_core::inbox::sandcat_state::FRIENDSHIP;
use sandcat_core::ports::FriendshipStatus;
use sandcat_core::{
    ports::{FriendRow, Friendship},
    services::rooms::CreateRoom,
};
use serde_json::{json, Value};

use crate::{
    model::{
        msg_type, AgreeReply, DeleteFriendRequest, Friend, FriendInfo, FriendshipWithUser,
        FsCreate, Msg, UpdateRemarkRequest,
    },
    now,
    users::user_view,
    ApiError, ApiResult, Auth, Body, NativeState, PathArgs,
};

pub(crate) fn random_id() -> String {
    let mut rng = rand::thread_rng();
    (0..21)
        .map(|_| {
            let n = rng.gen_range(0..62u8);
            (match n {
                0..=9 => b'0' + n,
                10..=35 => b'a' + n - 10,
                _ => b'A' + n - 36,
            }) as char
        })
        .collect()
}

async fn with_user(
    s: &NativeState,
    fs: &Friendship,
    other: &str,
    remark: Option<String>,
) -> ApiResult<FriendshipWithUser> {
    let u = user_view(s, other).await?;
    Ok(FriendshipWithUser {
        fs_id: fs.fs_id.clone(),
        user_id: u.id,
        name: u.name,
        avatar: u.avatar,
        gender: u.gender,
        age: u.age,
        region: u.region,
        status: fs.status.as_i32(),
        apply_msg: fs.apply_msg.clone(),
        source: fs.source.clone(),
        create_time: fs.create_time,
        account: u.account,
        remark,
        email: u.email,
    })
}

pub(crate) async fn friend_view(s: &NativeState, row: &FriendRow) -> ApiResult<Friend> {
    let u = user_view(s, &row.friend_id).await?;
    Ok(Friend {
        fs_id: row.fs_id.clone(),
        friend_id: u.id,
        account: u.account,
        name: u.name,
        avatar: u.avatar,
        gender: u.gender,
        age: u.age,
        region: u.region,
        status: row.status.as_i32(),
        remark: row.remark.clone(),
        email: u.email,
        source: row.source.clone(),
        signature: u.signature,
        create_time: row.create_time,
        update_time: row.update_time,
    })
}

/// A notification frame from `from` to `to`.
pub(crate) fn notice(from: &str, to: &str, kind: i32, content: Vec<u8>) -> Msg {
    let t = now();
    Msg {
        send_id: from.to_owned(),
        receiver_id: to.to_owned(),
        local_id: random_id(),
        server_id: random_id(),
        create_time: t,
        send_time: t,
        msg_type: kind,
        content,
        ..Default::default()
    }
}

pub(crate) fn bin<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).unwrap_or_default()
}

/// POST /friend
pub(crate) async fn request(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<FsCreate>,
) -> ApiResult<Json<FriendshipWithUser>> {
    auth.check(&req.user_id)?;
    if req.friend_id == req.user_id {
        return Err(ApiError::bad_request("cannot befriend yourself"));
    }
    if s.matrix_id(&req.friend_id)?.server_name() != s.config.server_name {
        return Err(ApiError::bad_request(format!(
            "{} is a user of another server: friend requests reach users of this server only; \
             add them to a group, or talk in a Matrix direct chat",
            req.friend_id
        )));
    }
    user_view(&s, &req.friend_id).await?;
    if s.store
        .friend(&req.user_id, &req.friend_id)
        .await?
        .is_some_and(|f| f.status == FriendshipStatus::Accepted)
    {
        return Err(ApiError::bad_request("already friends"));
    }
    let t = now();
    let fs = Friendship {
        fs_id: random_id(),
        user_id: req.user_id.clone(),
        friend_id: req.friend_id.clone(),
        status: FriendshipStatus::Pending,
        apply_msg: req.apply_msg,
        req_remark: req.req_remark,
        source: req.source,
        create_time: t,
        update_time: t,
        ..Default::default()
    };
    s.store.put_friendship(&fs).await?;
    let to_friend = with_user(&s, &fs, &req.user_id, None).await?;
    s.hub.push(
        &req.friend_id,
        notice(
            &req.user_id,
            &req.friend_id,
            msg_type::FRIEND_APPLY_REQ,
            bin(&to_friend),
        ),
    );
    Ok(Json(
        with_user(&s, &fs, &req.friend_id, fs.req_remark.clone()).await?,
    ))
}

/// GET /friend/{id}/{offline_time}
pub(crate) async fn list(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs((id, offline_time)): PathArgs<(String, i64)>,
) -> ApiResult<Json<Value>> {
    auth.check(&id)?;
    let mut friends = Vec::new();
    for row in s.store.friends(&id, offline_time).await? {
        friends.push(friend_view(&s, &row).await?);
    }
    let mut fs = Vec::new();
    for f in s
        .store
        .friendships_to(&id, FriendshipStatus::Pending, offline_time)
        .await?
    {
        fs.push(with_user(&s, &f, &f.user_id, None).await?);
    }
    Ok(Json(json!({ "friends": friends, "fs": fs })))
}

/// GET /friend/{id}/apply
pub(crate) async fn applications(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs(id): PathArgs<String>,
) -> ApiResult<Json<Vec<FriendshipWithUser>>> {
    auth.check(&id)?;
    let mut out = Vec::new();
    for f in s
        .store
        .friendships_to(&id, FriendshipStatus::Pending, -1)
        .await?
    {
        out.push(with_user(&s, &f, &f.user_id, None).await?);
    }
    Ok(Json(out))
}

/// Adds `room` to the user's `m.direct` under `other`.
async fn mark_direct(s: &NativeState, user: &str, other: &str, room: &str) -> ApiResult<()> {
    let uid = s.matrix_id(user)?;
    let other = s.matrix_id(other)?.to_string();
    let mut direct = s
        .data
        .account_data(&uid, None, "m.direct")
        .await
        .unwrap_or_else(|_| json!({}));
    if !direct.is_object() {
        direct = json!({});
    }
    let list = direct
        .get(&other)
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !list.iter().any(|r| r == room) {
        let mut list = list;
        list.push(json!(room));
        sandcat_core::json::set(&mut direct, &other, json!(list));
    }
    s.data
        .set_account_data(&uid, None, "m.direct", direct)
        .await?;
    Ok(())
}

/// The DM room of an earlier friendship of the two, brought back: whoever left is invited by
/// the one who stayed and joins again. `None` if there is none or both left.
async fn reusable_room(s: &NativeState, a: &str, b: &str) -> ApiResult<Option<ruma::OwnedRoomId>> {
    let Some(old) = s.store.friend(a, b).await? else {
        return Ok(None);
    };
    let Ok(room) = ruma::RoomId::parse(&old.room_id) else {
        return Ok(None);
    };
    let joined = |m: Option<sandcat_core::ports::Membership>| {
        m.is_some_and(|m| m.membership == MembershipState::Join)
    };
    let (ua, ub) = (s.matrix_id(a)?, s.matrix_id(b)?);
    let a_in = joined(s.room_store().membership(&room, &ua).await?);
    let b_in = joined(s.room_store().membership(&room, &ub).await?);
    let (stayed, left, left_id) = match (a_in, b_in) {
        (true, true) => return Ok(Some(room)),
        (true, false) => (a, b, ub),
        (false, true) => (b, a, ua),
        (false, false) => return Ok(None),
    };
    s.rooms
        .set_membership(
            &s.session(stayed).await?,
            &room,
            &left_id,
            MembershipState::Invite,
            None,
        )
        .await?;
    s.rooms.join(&s.session(left).await?, &room, None).await?;
    Ok(Some(room))
}

/// PUT /friend/agree
pub(crate) async fn agree(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<AgreeReply>,
) -> ApiResult<Json<Friend>> {
    let mut fs = s
        .store
        .friendship(&req.fs_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such friend request"))?;
    auth.check(&fs.friend_id)?;
    let (requester, acceptor) = (fs.user_id.clone(), fs.friend_id.clone());
    if fs.status == FriendshipStatus::Accepted {
        if let Some(row) = s.store.friend(&acceptor, &requester).await? {
            return Ok(Json(friend_view(&s, &row).await?));
        }
    }
    let room = match reusable_room(&s, &requester, &acceptor).await? {
        Some(room) => room,
        None => {
            // The requester opens the DM; the acceptor joins it.
            let room = s
                .rooms
                .create_room(
                    &s.session(&requester).await?,
                    CreateRoom {
                        preset: Some(sandcat_core::services::rooms::RoomPreset::TrustedPrivateChat),
                        invite: vec![s.matrix_id(&acceptor)?],
                        is_direct: true,
                        // Not a group: its members are told nothing as groups (the inbox).
                        initial_state: vec![(FRIENDSHIP.to_owned(), String::new(), json!({}))],
                        ..Default::default()
                    },
                )
                .await?;
            s.rooms
                .join(&s.session(&acceptor).await?, &room, None)
                .await?;
            room
        }
    };
    mark_direct(&s, &requester, &acceptor, room.as_str()).await?;
    mark_direct(&s, &acceptor, &requester, room.as_str()).await?;
    let t = now();
    fs.status = FriendshipStatus::Accepted;
    fs.resp_msg = req.resp_msg;
    fs.resp_remark = req.resp_remark.clone();
    fs.update_time = t;
    s.store.put_friendship(&fs).await?;
    let row = |user: &str, friend: &str, remark: Option<String>| FriendRow {
        user_id: user.to_owned(),
        friend_id: friend.to_owned(),
        fs_id: fs.fs_id.clone(),
        status: FriendshipStatus::Accepted,
        remark,
        source: fs.source.clone(),
        room_id: room.to_string(),
        create_time: t,
        update_time: t,
    };
    let for_requester = row(&requester, &acceptor, fs.req_remark.clone());
    let for_acceptor = row(&acceptor, &requester, req.resp_remark);
    s.store.put_friend(&for_requester).await?;
    s.store.put_friend(&for_acceptor).await?;
    let note = friend_view(&s, &for_requester).await?;
    s.hub.push(
        &requester,
        notice(
            &acceptor,
            &requester,
            msg_type::FRIEND_APPLY_RESP,
            bin(&note),
        ),
    );
    Ok(Json(friend_view(&s, &for_acceptor).await?))
}

/// DELETE /friend — ends the friendship; the user leaves the DM room.
pub(crate) async fn delete(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<DeleteFriendRequest>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    let mine = s
        .store
        .friend(&req.user_id, &req.friend_id)
        .await?
        .filter(|f| f.status == FriendshipStatus::Accepted)
        .ok_or_else(|| ApiError::not_found("not friends"))?;
    let room = ruma::RoomId::parse(&mine.room_id)
        .map_err(|_| ApiError::not_found("the friendship has no room"))?;
    s.rooms
        .leave(&s.session(&req.user_id).await?, &room, None)
        .await?;
    let t = now();
    for (u, f) in [
        (&req.user_id, &req.friend_id),
        (&req.friend_id, &req.user_id),
    ] {
        if let Some(mut row) = s.store.friend(u, f).await? {
            row.status = FriendshipStatus::Deleted;
            row.update_time = t;
            s.store.put_friend(&row).await?;
        }
    }
    s.hub.push(
        &req.friend_id,
        notice(
            &req.user_id,
            &req.friend_id,
            msg_type::FRIEND_DELETE,
            Vec::new(),
        ),
    );
    Ok(())
}

/// PUT /friend/remark
pub(crate) async fn remark(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<UpdateRemarkRequest>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    let mut row = s
        .store
        .friend(&req.user_id, &req.friend_id)
        .await?
        .ok_or_else(|| ApiError::not_found("not friends"))?;
    row.remark = Some(req.remark);
    row.update_time = now();
    s.store.put_friend(&row).await?;
    Ok(())
}

/// GET /friend/query/{user_id}
pub(crate) async fn query(
    State(s): State<NativeState>,
    _auth: Auth,
    PathArgs(user_id): PathArgs<String>,
) -> ApiResult<Json<FriendInfo>> {
    let u = user_view(&s, &user_id).await?;
    Ok(Json(FriendInfo {
        id: u.id,
        name: u.name,
        avatar: u.avatar,
        gender: u.gender,
        age: u.age,
        region: u.region,
        account: u.account,
        signature: u.signature,
        email: u.email,
    }))
}
