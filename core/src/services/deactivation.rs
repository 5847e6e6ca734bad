//! Account deactivation: the one operation that spans accounts, rooms and the Sandcat profile.

use ruma::events::room::member::MembershipState;
use std::sync::Arc;

use ruma::UserId;

use crate::{
    ports::NativeStore,
    services::{
        accounts::Accounts,
        rooms::Rooms,
        threepids::{ThreePids, Unbound},
        Session,
    },
    Result,
};

pub struct Deactivation {
    accounts: Arc<Accounts>,
    rooms: Arc<Rooms>,
    native: Arc<dyn NativeStore>,
    threepids: Arc<ThreePids>,
}

impl Deactivation {
    pub fn new(
        accounts: Arc<Accounts>,
        rooms: Arc<Rooms>,
        native: Arc<dyn NativeStore>,
        threepids: Arc<ThreePids>,
    ) -> Self {
        Deactivation {
            accounts,
            rooms,
            native,
            threepids,
        }
    }

    /// Shuts the account for good. First every session ends (on every instance) and the
    /// password and profile go, so nothing can act as the user while the rest happens; then
    /// the user leaves every room they are in or invited to. `erase` also deletes what Sandcat
    /// kept about them (email, phone, …). The user id is never handed out again. The
    /// account's email addresses are free again, unbound from identity servers that bind
    /// them (the answer says whether every one did).
    pub async fn deactivate(&self, user_id: &UserId, erase: bool) -> Result<Unbound> {
        self.accounts.deactivate(user_id).await?;
        let unbound = self.threepids.forget(user_id).await?;
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
        Ok(unbound)
    }
}
