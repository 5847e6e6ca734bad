//! What other servers ask of this one's rooms: reads (`reads.rs`), transactions of events
//! (`inbound.rs`) and memberships (`membership.rs`, `knock.rs`), whose events enter a room through its
//! lane. `template.rs` places events built outside a room's lane.

pub mod acl;
mod inbound;
mod knock;
mod membership;
mod origin;
mod reads;
pub mod template;

pub use inbound::{Inbound, Outcomes, MAX_PDUS_PER_TRANSACTION};
pub use membership::{stripped, JoinAnswer};
pub use origin::check_user_of;
pub use reads::{ServerReads, StateIdsAt, MAX_EVENTS_PER_READ};
