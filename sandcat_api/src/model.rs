//! The wire types of the Sandcat protocol: serde of the seed's prost structs (snake_case
//! fields, enums as integers, `bytes` as arrays of numbers). Field order matters for `Msg`,
//! which travels as bincode on the WebSocket.

use serde::{Deserialize, Serialize};

pub mod msg_type {
    pub const SINGLE: i32 = 0;
    pub const GROUP: i32 = 1;
    pub const GROUP_INVITATION: i32 = 2;
    pub const GROUP_INVITE_NEW: i32 = 3;
    pub const GROUP_MEMBER_EXIT: i32 = 4;
    pub const GROUP_REMOVE_MEMBER: i32 = 5;
    pub const GROUP_DISMISS: i32 = 6;
    pub const GROUP_UPDATE: i32 = 9;
    pub const FRIEND_APPLY_REQ: i32 = 10;
    pub const FRIEND_APPLY_RESP: i32 = 11;
    pub const FRIEND_DELETE: i32 = 13;
    pub const CALL_FIRST: i32 = 14;
    pub const CALL_REJECT: i32 = 15;
    pub const CALL_NOT_ANSWERED: i32 = 17;
    pub const CALL_CANCEL: i32 = 18;
    pub const CALL_HANG_UP: i32 = 20;
    pub const CALL_CONNECT: i32 = 21;
    pub const CALL_LAST: i32 = 22;
    /// Call signals that are records of a call: stored in the DM (so an offline callee pulls
    /// them) and acknowledged to the caller, whose client shows them as sent messages.
    pub const CALL_RECORDS: [i32; 5] = [
        CALL_REJECT,
        CALL_NOT_ANSWERED,
        CALL_CANCEL,
        CALL_HANG_UP,
        CALL_CONNECT,
    ];
    pub const READ: i32 = 23;
    pub const REC_RESP: i32 = 24;
}

pub mod content_type {
    pub const DEFAULT: i32 = 0;
    pub const TEXT: i32 = 1;
    pub const IMAGE: i32 = 2;
    pub const VIDEO: i32 = 3;
    pub const AUDIO: i32 = 4;
    pub const FILE: i32 = 5;
    pub const EMOJI: i32 = 6;
    pub const ERROR: i32 = 9;
}

/// One message frame. bincode 1.x with default options, fields in this order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Msg {
    pub send_id: String,
    pub receiver_id: String,
    pub local_id: String,
    pub server_id: String,
    pub create_time: i64,
    pub send_time: i64,
    pub seq: i64,
    pub msg_type: i32,
    pub content_type: i32,
    pub content: Vec<u8>,
    pub is_read: bool,
    pub group_id: String,
    pub platform: i32,
    pub avatar: String,
    pub nickname: String,
    pub related_msg_id: Option<String>,
    pub send_seq: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MsgRead {
    pub msg_seq: Vec<i64>,
    pub user_id: String,
}

/// A birthday as Sandcat clients write and read it: a `NaiveDateTime` text, kept as
/// milliseconds since the epoch. Milliseconds are read too.
mod birthday {
    use chrono::{DateTime, NaiveDateTime};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    const FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

    pub(super) fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms.and_then(DateTime::from_timestamp_millis) {
            Some(t) => s.serialize_str(&t.naive_utc().format(FORMAT).to_string()),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Millis(i64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Either>::deserialize(d)? {
            None => Ok(None),
            Some(Either::Millis(ms)) => Ok(Some(ms)),
            Some(Either::Text(t)) if t.is_empty() => Ok(None),
            Some(Either::Text(t)) => NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
                })
                .map(|t| Some(t.and_utc().timestamp_millis()))
                .map_err(|e| D::Error::custom(format!("birthday {t:?}: {e}"))),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    pub id: String,
    pub name: String,
    pub account: String,
    pub password: String,
    pub avatar: String,
    pub gender: String,
    pub age: i32,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub region: Option<String>,
    /// Milliseconds here; on the wire a `NaiveDateTime` (`"1990-05-01T00:00:00"`), which is
    /// what the client's `User` parses.
    #[serde(with = "birthday")]
    pub birthday: Option<i64>,
    pub create_time: i64,
    pub update_time: i64,
    pub salt: String,
    pub signature: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserUpdate {
    pub id: String,
    pub name: String,
    pub avatar: String,
    pub gender: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub region: Option<String>,
    /// A `NaiveDateTime` or milliseconds.
    #[serde(with = "birthday")]
    pub birthday: Option<i64>,
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserWithMatchType {
    pub id: String,
    pub name: String,
    pub account: String,
    pub avatar: String,
    pub gender: String,
    pub age: i32,
    pub email: Option<String>,
    pub region: Option<String>,
    pub birthday: Option<i64>,
    pub match_type: Option<String>,
    pub signature: String,
    pub is_friend: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FriendshipWithUser {
    pub fs_id: String,
    pub user_id: String,
    pub name: String,
    pub avatar: String,
    pub gender: String,
    pub age: i32,
    pub region: Option<String>,
    pub status: i32,
    pub apply_msg: Option<String>,
    pub source: String,
    pub create_time: i64,
    pub account: String,
    pub remark: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Friend {
    pub fs_id: String,
    pub friend_id: String,
    pub account: String,
    pub name: String,
    pub avatar: String,
    pub gender: String,
    pub age: i32,
    pub region: Option<String>,
    pub status: i32,
    pub remark: Option<String>,
    pub email: Option<String>,
    pub source: String,
    pub signature: String,
    pub create_time: i64,
    pub update_time: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FriendInfo {
    pub id: String,
    pub name: String,
    pub avatar: String,
    pub gender: String,
    pub age: i32,
    pub region: Option<String>,
    pub account: String,
    pub signature: String,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FsCreate {
    pub user_id: String,
    pub friend_id: String,
    pub apply_msg: Option<String>,
    pub req_remark: Option<String>,
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgreeReply {
    pub fs_id: String,
    pub resp_msg: Option<String>,
    pub resp_remark: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteFriendRequest {
    pub user_id: String,
    pub friend_id: String,
    pub fs_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateRemarkRequest {
    pub user_id: String,
    pub friend_id: String,
    pub remark: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub avatar: String,
    pub description: String,
    pub announcement: String,
    pub create_time: i64,
    pub update_time: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupMember {
    pub age: i32,
    pub group_id: String,
    pub user_id: String,
    pub group_name: String,
    pub avatar: String,
    pub joined_at: i64,
    pub region: Option<String>,
    pub gender: String,
    pub remark: Option<String>,
    pub signature: String,
    /// 0 owner, 1 admin, 2 member.
    pub role: i32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupInvitation {
    pub info: Option<GroupInfo>,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupCreate {
    pub id: String,
    pub owner: String,
    pub avatar: String,
    pub group_name: String,
    pub members_id: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupUpdate {
    pub id: String,
    pub name: String,
    pub avatar: String,
    pub description: String,
    pub announcement: String,
    pub update_time: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupInviteNew {
    pub user_id: String,
    pub group_id: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoveMemberRequest {
    pub user_id: String,
    pub group_id: String,
    pub mem_id: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GetMemberReq {
    pub user_id: String,
    pub group_id: String,
    pub mem_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteGroupRequest {
    pub user_id: String,
    pub group_id: String,
    pub is_dismiss: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GetDbMessagesRequest {
    pub user_id: String,
    pub send_start: i64,
    pub send_end: i64,
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DelMsgRequest {
    pub user_id: String,
    pub msg_id: Vec<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seq {
    pub seq: i64,
    pub send_seq: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserRegister {
    pub avatar: String,
    pub name: String,
    pub password: String,
    pub email: String,
    pub code: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginRequest {
    pub account: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub user: User,
    pub token: String,
    pub refresh_token: String,
    pub ws_addr: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModifyPwdRequest {
    pub user_id: String,
    pub email: String,
    pub pwd: String,
    pub code: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Email {
    pub email: String,
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn msg_bincode_layout_is_fixed_width_little_endian() {
        let m = Msg {
            send_id: "a".into(),
            seq: 7,
            content: vec![1, 2],
            related_msg_id: Some("r".into()),
            ..Default::default()
        };
        let bytes = bincode::serialize(&m).unwrap();
        // send_id: u64 length + 1 byte
        assert_eq!(&bytes[..9], &[1, 0, 0, 0, 0, 0, 0, 0, b'a']);
        let back: Msg = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, m);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["content"], serde_json::json!([1, 2]));
    }

    #[test]
    fn birthdays_are_naive_date_times_on_the_wire() {
        let u = User {
            birthday: Some(641_520_000_000),
            ..Default::default()
        };
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["birthday"], "1990-05-01T00:00:00");
        let back: User = serde_json::from_value(json).unwrap();
        assert_eq!(back.birthday, Some(641_520_000_000));
        for (input, ms) in [
            (
                serde_json::json!("1990-05-01T00:00:00.000"),
                Some(641_520_000_000),
            ),
            (serde_json::json!("1990-05-01"), Some(641_520_000_000)),
            (serde_json::json!(641_520_000_000i64), Some(641_520_000_000)),
            (serde_json::json!(null), None),
        ] {
            let u: UserUpdate =
                serde_json::from_value(serde_json::json!({ "birthday": input })).unwrap();
            assert_eq!(u.birthday, ms, "{input}");
        }
        assert!(
            serde_json::from_value::<UserUpdate>(serde_json::json!({ "birthday": "soon" }))
                .is_err()
        );
        let none = serde_json::to_value(User::default()).unwrap();
        assert!(none["birthday"].is_null());
    }
}
