//! `/group/*`: a Sandcat group is a Matrix room and its id is the room id. Name, avatar,
//! description (topic) and announcement (`org.sandcat.announcement`) are room state; roles are
//! power levels: owner 100, admin 50, member 0. Members learn of group operations from their
//! inbox (the indexer turns membership and detail changes into entries; `group_op_msg` makes
//! them frames), so an offline member learns of them too, and so do changes made from Matrix.

use axum::{extract::State, Json};
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId};
use sandcat_core::{services::rooms::CreateRoom, StoredEvent};
use serde_json::{json, Value};

use crate::{
    friends::{bin, notice},
    mapping::{avatar_from_mxc, avatar_to_mxc, sandcat_id},
    model::{
        msg_type, DeleteGroupRequest, GetMemberReq, GroupCreate, GroupInfo, GroupInvitation,
        GroupInviteNew, GroupMember, GroupUpdate, Msg, RemoveMemberRequest,
    },
    ApiError, ApiResult, Auth, Body, NativeState, PathArgs,
};

// Sandcat clients give a group the comma-joined avatars of its first members; Matrix gets the
// first as `m.room.avatar`, and the whole list is kept in `AVATARS`.
use sandcat_core::inbox::sandcat_state::{ANNOUNCEMENT, AVATARS, DISMISSED};

/// The avatar state events for a Sandcat group avatar string.
fn avatar_state(s: &NativeState, avatar: &str) -> Vec<(&'static str, Value)> {
    let Some(first) = avatar.split(',').find(|a| !a.is_empty()) else {
        // No avatar: both cleared.
        return vec![("m.room.avatar", json!({})), (AVATARS, json!({}))];
    };
    let mut out = vec![("m.room.avatar", json!({ "url": avatar_to_mxc(s, first) }))];
    out.push((AVATARS, json!({ "avatar": avatar })));
    out
}

fn room_id(id: &str) -> ApiResult<OwnedRoomId> {
    RoomId::parse(id).map_err(|_| ApiError::bad_request(format!("invalid group id {id}")))
}

fn state_of<'a>(state: &'a [StoredEvent], kind: &str) -> Option<&'a StoredEvent> {
    state
        .iter()
        .find(|e| e.pdu.kind.to_string() == kind && e.pdu.state_key.as_deref() == Some(""))
}

/// The group as a member sees it.
async fn info(
    s: &NativeState,
    user: &str,
    room: &RoomId,
) -> ApiResult<(GroupInfo, Vec<StoredEvent>)> {
    let state = s.rooms.state(&s.matrix_id(user)?, room).await?;
    let field = |kind: &str, f: &str| {
        state_of(&state, kind)
            .and_then(|e| {
                e.pdu
                    .content_value()
                    .get(f)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    let create = state_of(&state, "m.room.create");
    let update_time = ["m.room.name", "m.room.avatar", "m.room.topic", ANNOUNCEMENT]
        .iter()
        .filter_map(|k| state_of(&state, k))
        .map(|e| e.pdu.origin_server_ts.get().into())
        .max()
        .unwrap_or_default();
    let info = GroupInfo {
        id: room.to_string(),
        owner: create
            .map(|e| sandcat_id(s, &e.pdu.sender))
            .unwrap_or_default(),
        name: field("m.room.name", "name"),
        avatar: Some(field(AVATARS, "avatar"))
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| avatar_from_mxc(s, Some(&field("m.room.avatar", "url")))),
        description: field("m.room.topic", "topic"),
        announcement: field(ANNOUNCEMENT, "text"),
        create_time: create
            .map(|e| e.pdu.origin_server_ts.get().into())
            .unwrap_or_default(),
        update_time,
    };
    Ok((info, state))
}

/// The joined members with their roles.
async fn members_of(
    s: &NativeState,
    info: &GroupInfo,
    state: &[StoredEvent],
) -> ApiResult<Vec<GroupMember>> {
    let power = state_of(state, "m.room.power_levels").map(|e| e.pdu.content_value());
    let mut out = Vec::new();
    for ev in state
        .iter()
        .filter(|e| e.pdu.membership() == Some(MembershipState::Join))
    {
        let Some(uid) = ev
            .pdu
            .state_key
            .as_deref()
            .and_then(|k| ruma::UserId::parse(k).ok())
        else {
            continue;
        };
        let id = sandcat_id(s, &uid);
        let level = power
            .as_ref()
            .and_then(|p| p.get("users")?.get(uid.as_str())?.as_i64())
            .unwrap_or(0);
        let role = if id == info.owner || level >= 100 {
            0
        } else if level >= 50 {
            1
        } else {
            2
        };
        let c = ev.pdu.content_value();
        let p = s.store.native_profile(&id).await?.unwrap_or_default();
        out.push(GroupMember {
            age: p.age,
            group_id: info.id.clone(),
            user_id: id,
            group_name: c
                .get("displayname")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            avatar: avatar_from_mxc(s, c.get("avatar_url").and_then(Value::as_str)),
            joined_at: ev.pdu.origin_server_ts.get().into(),
            region: p.region,
            gender: p.gender,
            remark: None,
            signature: p.signature,
            role,
        });
    }
    Ok(out)
}

/// The ids of the group's joined members other than `me`.
async fn others(
    s: &NativeState,
    info: &GroupInfo,
    state: &[StoredEvent],
    me: &str,
) -> ApiResult<Vec<String>> {
    Ok(members_of(s, info, state)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .filter(|m| m != me)
        .collect())
}

/// The Matrix id of a member to add: a user of this server that exists, or any user of
/// another server (whose server answers the invite).
async fn member_id(s: &NativeState, id: &str) -> ApiResult<ruma::OwnedUserId> {
    let uid = s.matrix_id(id)?;
    if uid.server_name() == s.config.server_name && s.users.user(&uid).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {id}")));
    }
    Ok(uid)
}

/// Invites and joins users into the group, as Sandcat groups add members directly. A user
/// of another server (a full Matrix id) is invited through their server, and joins from
/// there when they accept.
async fn add_members(s: &NativeState, by: &str, room: &RoomId, ids: &[String]) -> ApiResult<()> {
    let session = s.session(by).await?;
    for id in ids {
        let uid = member_id(s, id).await?;
        let local = uid.server_name() == s.config.server_name;
        match s.room_store().membership(room, &uid).await? {
            Some(m) if m.membership == MembershipState::Join => continue,
            Some(m) if m.membership == MembershipState::Invite => {}
            _ => {
                s.rooms
                    .set_membership(&session, room, &uid, MembershipState::Invite, None)
                    .await?
            }
        }
        if local {
            s.rooms.join(&s.session(id).await?, room, None).await?;
        }
    }
    Ok(())
}

/// POST /group/{user_id}
pub(crate) async fn create(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs(user_id): PathArgs<String>,
    Body(req): Body<GroupCreate>,
) -> ApiResult<Json<GroupInvitation>> {
    auth.check(&user_id)?;
    if !req.owner.is_empty() {
        auth.check(&req.owner)?;
    }
    let initial_state = if req.avatar.is_empty() {
        Vec::new()
    } else {
        avatar_state(&s, &req.avatar)
            .into_iter()
            .map(|(k, c)| (k.to_owned(), String::new(), c))
            .collect()
    };
    let members: Vec<String> = req
        .members_id
        .iter()
        .filter(|m| **m != user_id)
        .cloned()
        .collect();
    for m in &members {
        member_id(&s, m).await?;
    }
    let room = s
        .rooms
        .create_room(
            &s.session(&user_id).await?,
            CreateRoom {
                preset: Some(sandcat_core::services::rooms::RoomPreset::PrivateChat),
                name: Some(req.group_name.clone()).filter(|n| !n.is_empty()),
                initial_state,
                ..Default::default()
            },
        )
        .await?;
    add_members(&s, &user_id, &room, &members).await?;
    let (info, state) = info(&s, &user_id, &room).await?;
    Ok(Json(GroupInvitation {
        members: members_of(&s, &info, &state).await?,
        info: Some(info),
    }))
}

/// PUT /group/{user_id}
pub(crate) async fn update(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs(user_id): PathArgs<String>,
    Body(req): Body<GroupUpdate>,
) -> ApiResult<Json<GroupInfo>> {
    auth.check(&user_id)?;
    let room = room_id(&req.id)?;
    let (before, _) = info(&s, &user_id, &room).await?;
    let session = s.session(&user_id).await?;
    let mut changes: Vec<(&str, Value)> = Vec::new();
    if req.name != before.name {
        changes.push(("m.room.name", json!({ "name": req.name })));
    }
    if req.avatar != before.avatar {
        changes.extend(avatar_state(&s, &req.avatar));
    }
    if req.description != before.description {
        changes.push(("m.room.topic", json!({ "topic": req.description })));
    }
    if req.announcement != before.announcement {
        changes.push((ANNOUNCEMENT, json!({ "text": req.announcement })));
    }
    for (kind, content) in changes {
        s.rooms
            .send_state(&session, &room, kind, "", content, None)
            .await?;
    }
    Ok(Json(info(&s, &user_id, &room).await?.0))
}

/// GET /group/{user_id}/{group_id}
pub(crate) async fn get(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs((user_id, group_id)): PathArgs<(String, String)>,
) -> ApiResult<Json<GroupInfo>> {
    auth.check(&user_id)?;
    Ok(Json(info(&s, &user_id, &room_id(&group_id)?).await?.0))
}

/// GET /group/member/{user_id}/{group_id}
pub(crate) async fn with_members(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs((user_id, group_id)): PathArgs<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.check(&user_id)?;
    let (info, state) = info(&s, &user_id, &room_id(&group_id)?).await?;
    let members = members_of(&s, &info, &state).await?;
    Ok(Json(json!({ "group": info, "members": members })))
}

/// POST /group/member
pub(crate) async fn members(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<GetMemberReq>,
) -> ApiResult<Json<Vec<GroupMember>>> {
    auth.check(&req.user_id)?;
    let (info, state) = info(&s, &req.user_id, &room_id(&req.group_id)?).await?;
    let all = members_of(&s, &info, &state).await?;
    Ok(Json(if req.mem_ids.is_empty() {
        all
    } else {
        all.into_iter()
            .filter(|m| req.mem_ids.contains(&m.user_id))
            .collect()
    }))
}

/// PUT /group/invite
pub(crate) async fn invite(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<GroupInviteNew>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    let room = room_id(&req.group_id)?;
    let (before, state) = info(&s, &req.user_id, &room).await?;
    let existing: Vec<String> = members_of(&s, &before, &state)
        .await?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    let new: Vec<String> = req
        .members
        .into_iter()
        .filter(|m| !existing.contains(m))
        .collect();
    add_members(&s, &req.user_id, &room, &new).await?;
    Ok(())
}

/// DELETE /group/member
pub(crate) async fn remove(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<RemoveMemberRequest>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    let room = room_id(&req.group_id)?;
    let session = s.session(&req.user_id).await?;
    for m in &req.mem_id {
        s.rooms
            .set_membership(
                &session,
                &room,
                &s.matrix_id(m)?,
                MembershipState::Leave,
                None,
            )
            .await?;
    }
    Ok(())
}

/// DELETE /group — the owner dismisses the group (everyone leaves); anyone else leaves it.
pub(crate) async fn leave_or_dismiss(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<DeleteGroupRequest>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    let room = room_id(&req.group_id)?;
    let (info, state) = info(&s, &req.user_id, &room).await?;
    let others = others(&s, &info, &state, &req.user_id).await?;
    let session = s.session(&req.user_id).await?;
    if req.is_dismiss && info.owner == req.user_id {
        for m in &others {
            s.rooms
                .set_membership(
                    &session,
                    &room,
                    &s.matrix_id(m)?,
                    MembershipState::Leave,
                    Some(DISMISSED),
                )
                .await?;
        }
    } else if req.is_dismiss {
        return Err(ApiError::forbidden("only the owner can dismiss the group"));
    }
    s.rooms.leave(&session, &room, None).await?;
    Ok(())
}

/// The frame of a group operation — an inbox entry the indexer made of a state event — as
/// `me` gets it: a member joining is `GroupInviteNew` (the client fetches the group when it
/// is the one who joined), leaving is `GroupMemberExit`, being removed `GroupRemoveMember`,
/// and `me` leaving or removed is `GroupDismiss`; a change of details is `GroupUpdate` with the
/// group as it is now. `None` when it is none of those (or `me` can no longer see the group).
pub(crate) async fn group_op_msg(
    s: &NativeState,
    ev: &StoredEvent,
    me: &str,
) -> ApiResult<Option<Msg>> {
    let room = ev.pdu.room_id();
    let sender = sandcat_id(s, &ev.pdu.sender);
    let (kind, send_id, content) = if ev.pdu.kind.to_string() == "m.room.member" {
        let Some(target) = ev
            .pdu
            .state_key
            .as_deref()
            .and_then(|k| ruma::UserId::parse(k).ok())
        else {
            return Ok(None);
        };
        let target_id = sandcat_id(s, &target);
        match ev.pdu.membership() {
            Some(MembershipState::Join) => {
                (msg_type::GROUP_INVITE_NEW, sender, bin(&vec![target_id]))
            }
            Some(MembershipState::Leave | MembershipState::Ban) if target_id == me => {
                (msg_type::GROUP_DISMISS, sender, Vec::new())
            }
            Some(MembershipState::Leave | MembershipState::Ban) if ev.pdu.sender == target => {
                (msg_type::GROUP_MEMBER_EXIT, target_id, Vec::new())
            }
            Some(MembershipState::Leave | MembershipState::Ban) => {
                (msg_type::GROUP_REMOVE_MEMBER, sender, bin(&vec![target_id]))
            }
            _ => return Ok(None),
        }
    } else {
        let Ok((now, _)) = info(s, me, room).await else {
            return Ok(None);
        };
        (msg_type::GROUP_UPDATE, sender, bin(&now))
    };
    let mut m = notice(&send_id, room.as_str(), kind, content);
    m.group_id = room.to_string();
    m.server_id = ev.pdu.event_id.to_string();
    m.send_time = i64::from(ev.pdu.origin_server_ts.get());
    m.create_time = m.send_time;
    Ok(Some(m))
}
