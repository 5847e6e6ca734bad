//! Account deactivation: the one operation that spans accounts, rooms and the Sandcat profile.

use ruma::events::room::member::MembershipState;
use std::sync::Arc;

use ruma::UserId;

use crate::{
    ports::NativeStore,
    services::{accounts::Accounts, rooms::Rooms, Session},
    Result,
};

pub struct Deactivation {
    accounts: Arc<Accounts>,
    rooms: Arc<Rooms>,
    native: Arc<dyn NativeStore>,
}

impl Deactivation {
    pub fn new(accounts: Arc<Accounts>, rooms: Arc<Rooms>, native: Arc<dyn NativeStore>) -> Self {
        Deactivation {
            accounts,
            rooms,
            native,
        }
    }

    /// Shuts the account for good. First every session ends (on every instance) and the
    /// password and profile go, so nothing can act as the user while the rest happens; then
    /// the user leaves every room they are in or invited to. `erase` also deletes what Sandcat
    /// kept about them (email, phone, …). The user id is never handed out again.
    pub async fn deactivate(&self, user_id: &UserId, erase: bool) -> Result<()> {
        self.accounts.deactivate(user_id).await?;
        let session = Session::new(user_id.to_owned(), String::new());
        for m in self.rooms.store().memberships(user_id).await? {
            if !matches!(
                m.membership,
                MembershipState::Join | MembershipState::Invite | MembershipState::Knock
            ) {
                continue;
            }
            if let Err(e) = self.rooms.leave(&session, &m.room_id, None).await {
                tracing::warn!(%user_id, room_id = %m.room_id, error = %e, "leaving a room on deactivation");
            }
        }
        if erase {
            self.native
                .delete_native_profile(user_id.localpart())
                .await?;
        }
        Ok(())
    }
}
