//! Mutual rooms (`/mutual_rooms`): the rooms both the user and another user are joined to, as
//! this server knows them, in pages of room ids.

use std::collections::HashSet;

use ruma::{OwnedRoomId, UserId};

use super::*;

/// Rooms per page.
pub const MUTUAL_ROOMS_PAGE: usize = 100;

/// A page of mutual rooms: `count` is the whole number, `next_batch` where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutualRooms {
    pub joined: Vec<OwnedRoomId>,
    pub count: u64,
    pub next_batch: Option<String>,
}

impl Rooms {
    /// The rooms `user` and `other` are both joined to, ordered by room id, from the page
    /// token `from` (the last room id of the page before).
    pub async fn mutual_rooms(
        &self,
        user: &UserId,
        other: &UserId,
        from: Option<&str>,
    ) -> Result<MutualRooms> {
        if user == other {
            return Err(Error::invalid_param(
                "mutual rooms are asked with another user",
            ));
        }
        let joined = |memberships: Vec<crate::ports::Membership>| -> HashSet<OwnedRoomId> {
            memberships
                .into_iter()
                .filter(|m| m.membership == MembershipState::Join)
                .map(|m| m.room_id)
                .collect()
        };
        let mine = joined(self.store.memberships(user).await?);
        let theirs = joined(self.store.memberships(other).await?);
        let mut shared: Vec<OwnedRoomId> = mine.intersection(&theirs).cloned().collect();
        shared.sort();
        let start = match from {
            None => 0,
            Some(token) => {
                let after = RoomId::parse(token)
                    .map_err(|_| Error::invalid_param("invalid or expired from token"))?;
                shared.partition_point(|r| *r <= after)
            }
        };
        let page: Vec<OwnedRoomId> = shared
            .iter()
            .skip(start)
            .take(MUTUAL_ROOMS_PAGE)
            .cloned()
            .collect();
        let next_batch = (start + page.len() < shared.len())
            .then(|| page.last().map(|r| r.to_string()))
            .flatten();
        Ok(MutualRooms {
            joined: page,
            count: shared.len() as u64,
            next_batch,
        })
    }
}
