//! This server's users in rooms of other servers (`RemoteRooms`): a join through a resident
//! server (`make_join`, the join signed here, `send_join`, the answer verified), a leave
//! (`make_leave`, `send_leave`), a knock (`make_knock`, `send_knock`), an invite of another
//! server's user, which that server counter-signs (`/invite`), and reads of other servers'
//! directories, spaces, aliases and profiles.

use async_trait::async_trait;
use ruma::{
    api::federation::{
        directory::get_public_rooms_filtered,
        membership::{
            create_invite, create_join_event, create_knock_event, create_leave_event,
            prepare_join_event, prepare_knock_event, prepare_leave_event, RawStrippedState,
        },
        query::{get_profile_information, get_room_information},
        space::get_hierarchy,
    },
    canonical_json::redact,
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedRoomId,
    OwnedServerName, RoomAliasId, RoomId, RoomVersionId, ServerName, UInt, UserId,
};
use sandcat_core::{
    intent::{OutsideMembership, ReceivedPdu, RemoteJoin},
    join_rules::AUTHORISED_VIA,
    ports::{PublicRoomsPage, PublicRoomsQuery, RemoteRooms, RemoteSpace},
    remote_pdu::verify_pdu,
    services::federation::stripped,
    Error, ErrorCode, Result, ServerConfig,
};
use serde_json::{value::RawValue, Value};

use crate::{client::RemoteEvents, membership::told_state};

/// The room versions this server speaks, as it tells a server it joins through.
fn supported_versions() -> Vec<RoomVersionId> {
    ServerConfig::supported_room_versions().to_vec()
}

/// A membership of this server's user that another server is asked for.
struct Asking<'a> {
    server: &'a ServerName,
    room_id: &'a RoomId,
    user_id: &'a UserId,
    content: &'a Value,
}

/// A membership template another server answered (`make_join`, `make_leave`,
/// `make_knock`), for the user's own membership: checked, filled in with the content, and
/// signed here. Answers the event, and its JSON as the `send_*` request carries it.
fn fill_template(
    events: &RemoteEvents,
    asking: &Asking<'_>,
    version: &RoomVersionId,
    template: &RawValue,
) -> Result<(ReceivedPdu, Box<RawValue>)> {
    let Asking {
        server,
        room_id,
        user_id,
        content,
    } = asking;
    if !supported_versions().contains(version) {
        return Err(Error::matrix(
            ErrorCode::UnsupportedRoomVersion,
            format!("{room_id} is of room version {version}"),
        ));
    }
    let mut event: Value = serde_json::from_str(template.get())?;
    let is_own = event.get("type") == Some(&Value::from("m.room.member"))
        && event.get("state_key") == Some(&Value::from(user_id.as_str()))
        && event.get("sender") == Some(&Value::from(user_id.as_str()))
        && event.get("room_id") == Some(&Value::from(room_id.as_str()));
    if !is_own {
        return Err(Error::forbidden(format!(
            "{server} answered a template of another event"
        )));
    }
    // A restricted room's resident server names the member who vouches for the join.
    let voucher = event["content"].get(AUTHORISED_VIA).cloned();
    event["content"] = (*content).clone();
    if let Some(v) = voucher {
        event["content"][AUTHORISED_VIA] = v;
    }
    event["origin_server_ts"] = serde_json::json!(MilliSecondsSinceUnixEpoch::now());
    let (event_id, json) = events.client.sign_event(version, event)?;
    let pdu = RawValue::from_string(json.clone())?;
    Ok((ReceivedPdu { event_id, json }, pdu))
}

impl RemoteEvents {
    /// Joins through one server: its template, filled in and signed here, sent back.
    async fn join_through(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        content: &Value,
    ) -> Result<RemoteJoin> {
        let mut ask = prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        ask.ver = supported_versions();
        let template = self.client.send(server, ask).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        let asking = Asking {
            server,
            room_id,
            user_id,
            content,
        };
        let (event, pdu) = fill_template(self, &asking, &version, &template.event)?;
        let answer = self
            .client
            .send(
                server,
                create_join_event::v2::Request::new(
                    room_id.to_owned(),
                    event.event_id.clone(),
                    pdu,
                ),
            )
            .await?
            .room_state;
        // A join vouched for by a member of that server comes back signed by it too.
        let event = match answer.event {
            Some(signed) => {
                let signed = verify_pdu(self.keys(), &version, room_id, signed.get()).await?;
                if signed.pdu.event_id != event.event_id {
                    return Err(Error::forbidden(format!(
                        "{server} answered another event than the join"
                    )));
                }
                signed.into()
            }
            None => event,
        };
        let state = self
            .verified_as(server, &version, room_id, answer.state)
            .await?;
        let auth_chain = self
            .verified_as(server, &version, room_id, answer.auth_chain)
            .await?;
        Ok(RemoteJoin {
            room_version: version,
            state,
            auth_chain,
            event,
        })
    }

    /// Leaves through one server: its template, filled in and signed here, sent back.
    async fn leave_through(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        content: &Value,
    ) -> Result<OutsideMembership> {
        let ask = prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        let template = self.client.send(server, ask).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        let asking = Asking {
            server,
            room_id,
            user_id,
            content,
        };
        let (event, pdu) = fill_template(self, &asking, &version, &template.event)?;
        self.client
            .send(
                server,
                create_leave_event::v2::Request::new(
                    room_id.to_owned(),
                    event.event_id.clone(),
                    pdu,
                ),
            )
            .await?;
        Ok(OutsideMembership {
            room_version: version,
            event,
            stripped_state: Vec::new(),
        })
    }
}

impl RemoteEvents {
    /// Knocks through one server: its template, filled in and signed here, sent back; with
    /// what the room told of itself.
    async fn knock_through(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        content: &Value,
    ) -> Result<OutsideMembership> {
        let mut ask = prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        ask.ver = supported_versions();
        let template = self.client.send(server, ask).await?;
        let version = template.room_version;
        let asking = Asking {
            server,
            room_id,
            user_id,
            content,
        };
        let (event, pdu) = fill_template(self, &asking, &version, &template.event)?;
        let answer = self
            .client
            .send(
                server,
                create_knock_event::v1::Request::new(
                    room_id.to_owned(),
                    event.event_id.clone(),
                    pdu,
                ),
            )
            .await?;
        Ok(OutsideMembership {
            room_version: version,
            event,
            stripped_state: told_state(&answer.knock_room_state)
                .into_iter()
                .filter_map(stripped)
                .collect(),
        })
    }
}

/// The answer of the first of `via` that `ask` succeeds with, else the last failure; each
/// failure is logged (`what`: what was asked).
async fn first_answer<'a, T, F, Fut>(
    via: &'a [OwnedServerName],
    room_id: &RoomId,
    what: &str,
    ask: F,
) -> Result<T>
where
    F: Fn(&'a ServerName) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut last = Error::not_found(format!("no server answered for {room_id}"));
    for server in via {
        match ask(server).await {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                tracing::info!(%room_id, %server, error = %e, "{what} through a server failed");
                last = e;
            }
        }
    }
    Err(last)
}

#[async_trait]
impl RemoteRooms for RemoteEvents {
    async fn join(
        &self,
        via: &[OwnedServerName],
        room_id: &RoomId,
        user_id: &UserId,
        content: Value,
    ) -> Result<RemoteJoin> {
        first_answer(via, room_id, "joining", |server| {
            self.join_through(server, room_id, user_id, &content)
        })
        .await
    }

    async fn leave(
        &self,
        via: &[OwnedServerName],
        room_id: &RoomId,
        user_id: &UserId,
        content: Value,
    ) -> Result<OutsideMembership> {
        first_answer(via, room_id, "leaving", |server| {
            self.leave_through(server, room_id, user_id, &content)
        })
        .await
    }

    async fn knock(
        &self,
        via: &[OwnedServerName],
        room_id: &RoomId,
        user_id: &UserId,
        content: Value,
    ) -> Result<OutsideMembership> {
        first_answer(via, room_id, "knocking", |server| {
            self.knock_through(server, room_id, user_id, &content)
        })
        .await
    }

    async fn query_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let server = alias.server_name();
        let answer = self
            .client
            .send(
                server,
                get_room_information::v1::Request::new(alias.to_owned()),
            )
            .await?;
        Ok((answer.room_id, answer.servers))
    }

    async fn public_rooms(
        &self,
        server: &ServerName,
        query: &PublicRoomsQuery,
    ) -> Result<PublicRoomsPage> {
        let mut ask = get_public_rooms_filtered::v1::Request::new();
        ask.filter.generic_search_term = query.filter.clone();
        ask.since = query.since.clone();
        ask.limit = query.limit.and_then(|l| UInt::try_from(l as u64).ok());
        let answer = self.client.send(server, ask).await?;
        Ok(PublicRoomsPage {
            chunk: answer
                .chunk
                .iter()
                .map(serde_json::to_value)
                .collect::<std::result::Result<_, _>>()?,
            next_batch: answer.next_batch,
            prev_batch: answer.prev_batch,
            total: answer.total_room_count_estimate.map(u64::from),
        })
    }

    async fn hierarchy(&self, via: &[OwnedServerName], room_id: &RoomId) -> Result<RemoteSpace> {
        first_answer(via, room_id, "reading a space", |server| async move {
            let ask = get_hierarchy::v1::Request::new(room_id.to_owned());
            let answer = self.client.send(server, ask).await?;
            Ok(RemoteSpace {
                room: serde_json::to_value(&answer.room)?,
                children: answer
                    .children
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<std::result::Result<_, _>>()?,
                inaccessible: answer.inaccessible_children,
            })
        })
        .await
    }

    async fn query_profile(&self, user_id: &UserId) -> Result<(Option<String>, Option<String>)> {
        let answer = self
            .client
            .send(
                user_id.server_name(),
                get_profile_information::v1::Request::new(user_id.to_owned()),
            )
            .await?;
        let text = |field: &str| answer.get(field).and_then(Value::as_str).map(str::to_owned);
        Ok((text("displayname"), text("avatar_url")))
    }

    async fn invite(
        &self,
        room_version: &RoomVersionId,
        invite: &ReceivedPdu,
        invite_state: &[String],
    ) -> Result<ReceivedPdu> {
        let event: Value = serde_json::from_str(&invite.json)?;
        let (Some(room_id), Some(invitee)) = (
            event.get("room_id").and_then(Value::as_str),
            event.get("state_key").and_then(Value::as_str),
        ) else {
            return Err(Error::invalid_param("an invite names its room and user"));
        };
        let room_id = RoomId::parse(room_id).map_err(|e| Error::invalid_param(e.to_string()))?;
        let invitee = UserId::parse(invitee).map_err(|e| Error::invalid_param(e.to_string()))?;
        let server = invitee.server_name();
        let state = invite_state
            .iter()
            .map(|json| RawValue::from_string(json.clone()).map(RawStrippedState::Pdu))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let request = create_invite::v2::Request::new(
            room_id.clone(),
            invite.event_id.clone(),
            room_version.clone(),
            RawValue::from_string(invite.json.clone())?,
            state,
        );
        let answer = self.client.send(server, request).await?;
        let signed = verify_pdu(self.keys(), room_version, &room_id, answer.event.get()).await?;
        if signed.pdu.event_id != invite.event_id {
            return Err(Error::forbidden(format!(
                "{server} answered another event than the invite"
            )));
        }
        self.check_counter_signature(room_version, server, &signed.json)
            .await?;
        Ok(signed.into())
    }
}

impl RemoteEvents {
    /// Checks `server`'s signature of an invite (`json`, as it answered it) with its keys: the
    /// signature covers the redacted event, as every event signature does.
    async fn check_counter_signature(
        &self,
        room_version: &RoomVersionId,
        server: &ServerName,
        json: &str,
    ) -> Result<()> {
        let refused =
            |why: String| Error::forbidden(format!("{server} did not sign the invite: {why}"));
        let rules = room_version.rules().ok_or_else(|| {
            Error::invalid_param(format!("room version {room_version} is unknown"))
        })?;
        let object: CanonicalJsonObject = serde_json::from_str(json)?;
        let mut redacted =
            redact(object, &rules.redaction, None).map_err(|e| refused(e.to_string()))?;
        let theirs = match redacted.get("signatures") {
            Some(CanonicalJsonValue::Object(all)) => all.get(server.as_str()).cloned(),
            _ => None,
        };
        let Some(CanonicalJsonValue::Object(theirs)) = theirs else {
            return Err(refused("no signature".into()));
        };
        let key_ids: Vec<String> = theirs.keys().cloned().collect();
        // Only that server's signature is checked here (the inviter's was, by `verify_pdu`).
        redacted.insert(
            "signatures".into(),
            CanonicalJsonValue::Object(
                [(server.to_string(), CanonicalJsonValue::Object(theirs))].into(),
            ),
        );
        let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
        let keys = self
            .keys()
            .key_map(&[(server.to_owned(), key_ids)].into(), now)
            .await?;
        ruma::signatures::verify_json(&keys, &redacted).map_err(|e| refused(e.to_string()))
    }
}
