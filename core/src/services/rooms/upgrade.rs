//! Room upgrades (`POST /rooms/{roomId}/upgrade`): a new room of another version takes the old
//! one's place. The new room's create event names its predecessor and it starts with the old
//! room's identity and rules (name, topic, avatar, join rules, history visibility, guest
//! access, encryption, server ACL, power levels, aliases, directory listing); the old room
//! gets a tombstone naming its replacement, and only moderators may speak there after.

use ruma::{OwnedRoomId, RoomId};

use super::*;
use crate::state::{as_int, power_level};

/// The state that moves to the new room as it is.
const CARRIED_STATE: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
    "m.room.canonical_alias",
];

/// Where an upgrade ends: the new room's version, and (for versions that privilege them)
/// who else creates it.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub new_version: RoomVersionId,
    pub additional_creators: Vec<OwnedUserId>,
}

impl Rooms {
    /// Upgrades `room_id` for `session`'s user, who must be allowed to send its tombstone;
    /// answers the new room's id.
    pub async fn upgrade_room(
        &self,
        session: &Session,
        room_id: &RoomId,
        upgrade: Upgrade,
    ) -> Result<OwnedRoomId> {
        session.ensure_may_add()?;
        let user = &session.user_id;
        if !ServerConfig::supported_room_versions().contains(&upgrade.new_version) {
            return Err(Error::matrix(
                ErrorCode::UnsupportedRoomVersion,
                format!("room version {} is not supported", upgrade.new_version),
            ));
        }
        let joined = self
            .store
            .membership(room_id, user)
            .await?
            .is_some_and(|m| m.membership == MembershipState::Join);
        let version = self.store.room_version(room_id).await?;
        let (true, Some(version)) = (joined, version) else {
            return Err(Error::forbidden("only a member of the room may upgrade it"));
        };
        let state = self.store.current_state(room_id).await?;
        let find = |kind: &str| {
            state
                .iter()
                .find(|e| e.pdu.kind.to_string() == kind && e.pdu.state_key.as_deref() == Some(""))
        };
        let create = find("m.room.create");
        let power = find("m.room.power_levels");
        let power_content = power.map(|p| p.pdu.content_value());
        let needed = power_content
            .as_ref()
            .map_or(100, |c| state_level(c, "m.room.tombstone"));
        let level = power_level(
            &version,
            create.map(|e| &e.pdu),
            power.map(|e| &e.pdu),
            user,
        );
        if level < needed {
            return Err(Error::forbidden(
                "upgrading a room takes the power to send its tombstone",
            ));
        }

        let mut creation = Map::new();
        creation.insert("predecessor".into(), json!({ "room_id": room_id }));
        if let Some(c) = create.map(|e| e.pdu.content_value()) {
            for key in ["type", "m.federate"] {
                if let Some(v) = c.get(key) {
                    creation.insert(key.into(), v.clone());
                }
            }
        }
        let rules = rules_for(&upgrade.new_version)?;
        let privileged = rules.authorization.explicitly_privilege_room_creators;
        if privileged && !upgrade.additional_creators.is_empty() {
            creation.insert(
                "additional_creators".into(),
                json!(upgrade.additional_creators),
            );
        }
        let creators: Vec<&UserId> = std::iter::once(&**user)
            .chain(upgrade.additional_creators.iter().map(|u| &**u))
            .collect();
        let power_override = power_content
            .map(|c| carried_power(c, &creators, privileged, level))
            .and_then(|c| c.as_object().cloned());
        let initial_state = CARRIED_STATE
            .iter()
            .filter_map(|kind| find(kind))
            .map(|e| (e.pdu.kind.to_string(), String::new(), e.pdu.content_value()))
            .collect();
        let request = CreateRoom {
            preset: Some(RoomPreset::PrivateChat),
            room_version: Some(upgrade.new_version),
            creation_content: Some(creation),
            initial_state,
            power_level_content_override: power_override,
            ..Default::default()
        };
        let new_room = self.create_room(session, request).await?;
        self.hand_over(session, room_id, &new_room, power).await?;
        Ok(new_room)
    }

    /// What the old room does once the new one exists: its aliases and directory listing move,
    /// a tombstone names the new room, and only moderators may speak or invite.
    async fn hand_over(
        &self,
        session: &Session,
        old: &RoomId,
        new: &RoomId,
        power: Option<&StoredEvent>,
    ) -> Result<()> {
        for alias in self.store.aliases_of(old).await? {
            let creator = self
                .store
                .alias(&alias)
                .await?
                .map_or_else(|| session.user_id.clone(), |(_, c)| c);
            self.store.delete_alias(&alias).await?;
            self.store.set_alias(&alias, new, &creator).await?;
        }
        if self.store.is_public(old).await? {
            self.store.set_public(new, true).await?;
            self.store.set_public(old, false).await?;
        }
        let tombstone = json!({
            "body": "This room has been replaced",
            "replacement_room": new,
        });
        self.send_state(session, old, "m.room.tombstone", "", tombstone, None)
            .await?;
        // Best effort from here: the user may send a tombstone yet not these.
        if let Some(p) = power {
            let mut content = p.pdu.content_value();
            let users_default = content.get("users_default").and_then(as_int).unwrap_or(0);
            let restricted = json!(50.max(users_default + 1));
            content["events_default"] = restricted.clone();
            content["invite"] = restricted;
            if let Err(e) = self
                .send_state(session, old, "m.room.power_levels", "", content, None)
                .await
            {
                tracing::info!(room_id = %old, error = %e, "the upgraded room stays open to all");
            }
        }
        if let Err(e) = self
            .send_state(session, old, "m.room.canonical_alias", "", json!({}), None)
            .await
        {
            tracing::info!(room_id = %old, error = %e, "the upgraded room keeps its alias event");
        }
        Ok(())
    }
}

/// The power a state event of `kind` takes under `power` levels.
fn state_level(power: &Value, kind: &str) -> i64 {
    power
        .get("events")
        .and_then(|e| e.get(kind))
        .or_else(|| power.get("state_default"))
        .and_then(as_int)
        .unwrap_or(50)
}

/// The old room's power levels for the new one: the same, except that the room's creators
/// are left out where the version privileges them (they may not be listed), and otherwise
/// the upgrading user keeps at least the power they had.
fn carried_power(mut power: Value, creators: &[&UserId], privileged: bool, level: i64) -> Value {
    if let Some(users) = power.get_mut("users").and_then(Value::as_object_mut) {
        if privileged {
            for c in creators {
                users.remove(c.as_str());
            }
        } else if let Some(upgrader) = creators.first() {
            let kept = users.get(upgrader.as_str()).and_then(as_int).unwrap_or(0);
            // A creator's unlimited power (v12) becomes the usual top level.
            let carried = if level == i64::MAX { 100 } else { level }.max(kept);
            users.insert(upgrader.to_string(), json!(carried));
        }
    } else if !privileged {
        if let Some(upgrader) = creators.first() {
            power["users"] = json!({ upgrader.to_string(): level.clamp(0, 100) });
        }
    }
    power
}
