//! Push notifications to users' phones: the client of push gateways (`gateway.rs`) and the
//! senders that follow each pusher's notifications (`sender.rs`). What push rules ask of
//! each event is decided in `sandcat_core::push`, by the room's sequencer.

mod gateway;
mod sender;

pub use gateway::{GatewayOptions, Gateways};
pub use sender::PushSenders;
