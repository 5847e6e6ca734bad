//! What other servers ask of this one's rooms: reads (`reads.rs`), and joins and
//! transactions of events (`inbound.rs`), whose events enter a room through its lane.

mod inbound;
mod reads;

pub use inbound::{Inbound, JoinAnswer, MAX_PDUS_PER_TRANSACTION};
pub use reads::{ServerReads, StateIdsAt, MAX_EVENTS_PER_READ};
