//! Rows as the database answers them, decoded column by column by name (`sqlx::FromRow`), and
//! turned into the domain's values here: the one place a column's type meets a value's.

use ruma::events::room::member::MembershipState;
use sandcat_core::ports::{
    FriendRow, Friendship, FriendshipStatus, HeldEvent, HeldStatus, MediaRecord, Membership,
    NativeProfile, Receipt, UserRecord,
};
use sqlx::{any::AnyRow, FromRow};

use super::{db, parse_id};
use sandcat_core::{Error, Pdu, Result, StoredEvent};

/// A row of `events` (`EVENT_COLUMNS`).
#[derive(FromRow)]
pub(super) struct EventRow {
    pos: i64,
    event_id: String,
    room_id: String,
    json: String,
    unsigned: Option<String>,
    pub(super) redacted_by: Option<String>,
    txn_user: Option<String>,
    txn_device: Option<String>,
    txn_id: Option<String>,
}

impl EventRow {
    pub(super) fn read(row: &AnyRow) -> Result<Self> {
        Self::from_row(row).map_err(db)
    }

    pub(super) fn fields(&self) -> EventFields<'_> {
        EventFields {
            pos: self.pos,
            event_id: &self.event_id,
            room_id: &self.room_id,
            json: &self.json,
            unsigned: self.unsigned.as_deref(),
            redacted_by: self.redacted_by.as_deref(),
            txn_user: self.txn_user.as_deref(),
            txn_device: self.txn_device.as_deref(),
            txn_id: self.txn_id.as_deref(),
        }
    }

    pub(super) fn into_event(self) -> Result<StoredEvent> {
        self.fields().into_event()
    }
}

/// The columns of an event (`EVENT_COLUMNS`), borrowed from a row or a packed list.
#[derive(Debug, Clone, Copy)]
pub(super) struct EventFields<'a> {
    pub pos: i64,
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub json: &'a str,
    pub unsigned: Option<&'a str>,
    pub redacted_by: Option<&'a str>,
    pub txn_user: Option<&'a str>,
    pub txn_device: Option<&'a str>,
    pub txn_id: Option<&'a str>,
}

impl EventFields<'_> {
    pub(super) fn into_event(self) -> Result<StoredEvent> {
        let invalid = || Error::storage("invalid identifier in database");
        let pdu = Pdu::from_stored(
            self.json,
            self.event_id.try_into().map_err(|_| invalid())?,
            self.room_id.try_into().map_err(|_| invalid())?,
        )?;
        let txn = match (self.txn_user, self.txn_device, self.txn_id) {
            (Some(u), Some(d), Some(t)) => Some((
                u.try_into().map_err(|_| invalid())?,
                d.to_owned(),
                t.to_owned(),
            )),
            _ => None,
        };
        Ok(StoredEvent {
            pos: self.pos,
            pdu,
            unsigned: self.unsigned.and_then(|u| serde_json::from_str(u).ok()),
            redacted_because: None,
            txn,
        })
    }
}

/// A membership row of `current_state`.
#[derive(FromRow)]
pub(super) struct MembershipRow {
    room_id: String,
    membership: Option<String>,
    pos: i64,
    event_id: String,
}

impl MembershipRow {
    pub(super) fn read(row: &AnyRow) -> Result<Membership> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(Membership {
            room_id: parse_id(r.room_id)?,
            membership: MembershipState::from(r.membership.unwrap_or_default()),
            pos: r.pos,
            event_id: parse_id(r.event_id)?,
        })
    }
}

/// A row of `held_events`.
#[derive(FromRow)]
pub(super) struct HeldRow {
    event_id: String,
    room_id: String,
    json: String,
    status: String,
    reason: String,
}

impl HeldRow {
    pub(super) fn read(row: &AnyRow) -> Result<HeldEvent> {
        let r = Self::from_row(row).map_err(db)?;
        let status = HeldStatus::parse(&r.status)
            .ok_or_else(|| Error::storage(format!("unknown held status {}", r.status)))?;
        Ok(HeldEvent {
            event_id: parse_id(r.event_id)?,
            room_id: parse_id(r.room_id)?,
            json: r.json,
            status,
            reason: r.reason,
        })
    }
}

/// A row of `native_profiles`.
#[derive(FromRow)]
pub(super) struct ProfileRow {
    user_id: String,
    email: Option<String>,
    phone: Option<String>,
    gender: String,
    #[sqlx(try_from = "i64")]
    age: i32,
    region: Option<String>,
    address: Option<String>,
    birthday: Option<i64>,
    signature: String,
    create_time: i64,
    update_time: i64,
}

impl ProfileRow {
    pub(super) fn read(row: &AnyRow) -> Result<NativeProfile> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(NativeProfile {
            user_id: r.user_id,
            email: r.email,
            phone: r.phone,
            gender: r.gender,
            age: r.age,
            region: r.region,
            address: r.address,
            birthday: r.birthday,
            signature: r.signature,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

/// A friendship status as stored: Sandcat's wire number.
fn status(n: i64) -> Result<FriendshipStatus> {
    let n = i32::try_from(n).map_err(|_| Error::storage(format!("friendship status {n}")))?;
    Ok(FriendshipStatus::from_i32(n))
}

/// A row of `native_friendships` (a request and its answer).
#[derive(FromRow)]
pub(super) struct FriendshipRow {
    fs_id: String,
    user_id: String,
    friend_id: String,
    status: i64,
    apply_msg: Option<String>,
    req_remark: Option<String>,
    resp_msg: Option<String>,
    resp_remark: Option<String>,
    source: String,
    create_time: i64,
    update_time: i64,
}

impl FriendshipRow {
    pub(super) fn read(row: &AnyRow) -> Result<Friendship> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(Friendship {
            fs_id: r.fs_id,
            user_id: r.user_id,
            friend_id: r.friend_id,
            status: status(r.status)?,
            apply_msg: r.apply_msg,
            req_remark: r.req_remark,
            resp_msg: r.resp_msg,
            resp_remark: r.resp_remark,
            source: r.source,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

/// A row of `native_friends` (one direction of a friendship).
#[derive(FromRow)]
pub(super) struct FriendDbRow {
    user_id: String,
    friend_id: String,
    fs_id: String,
    status: i64,
    remark: Option<String>,
    source: String,
    room_id: String,
    create_time: i64,
    update_time: i64,
}

impl FriendDbRow {
    pub(super) fn read(row: &AnyRow) -> Result<FriendRow> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(FriendRow {
            user_id: r.user_id,
            friend_id: r.friend_id,
            fs_id: r.fs_id,
            status: status(r.status)?,
            remark: r.remark,
            source: r.source,
            room_id: r.room_id,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

/// A row of `media`.
#[derive(FromRow)]
pub(super) struct MediaRow {
    media_id: String,
    uploader: String,
    content_type: Option<String>,
    filename: Option<String>,
    #[sqlx(try_from = "i64")]
    size: u64,
    #[sqlx(try_from = "i64")]
    created_ts: u64,
    uploaded: i64,
}

impl MediaRow {
    pub(super) fn read(row: &AnyRow) -> Result<MediaRecord> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(MediaRecord {
            media_id: r.media_id,
            uploader: r.uploader,
            content_type: r.content_type,
            filename: r.filename,
            size: r.size,
            created_ts: r.created_ts,
            uploaded: r.uploaded != 0,
        })
    }
}

/// A row of `users`.
#[derive(FromRow)]
pub(super) struct UserRow {
    user_id: String,
    password_hash: Option<String>,
    displayname: Option<String>,
    avatar_url: Option<String>,
    deactivated: i64,
}

impl UserRow {
    pub(super) fn read(row: &AnyRow) -> Result<UserRecord> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(UserRecord {
            user_id: parse_id(r.user_id)?,
            password_hash: r.password_hash,
            displayname: r.displayname,
            avatar_url: r.avatar_url,
            deactivated: r.deactivated != 0,
        })
    }
}

/// A row of `receipts` (an empty thread id: an unthreaded receipt).
#[derive(FromRow)]
pub(super) struct ReceiptRow {
    room_id: String,
    user_id: String,
    receipt_type: String,
    thread_id: String,
    event_id: String,
    #[sqlx(try_from = "i64")]
    ts: u64,
    pos: i64,
}

impl ReceiptRow {
    pub(super) fn read(row: &AnyRow) -> Result<Receipt> {
        let r = Self::from_row(row).map_err(db)?;
        Ok(Receipt {
            room_id: parse_id(r.room_id)?,
            user_id: parse_id(r.user_id)?,
            receipt_type: r.receipt_type,
            thread_id: (!r.thread_id.is_empty()).then_some(r.thread_id),
            event_id: parse_id(r.event_id)?,
            ts: r.ts,
            pos: r.pos,
        })
    }
}
