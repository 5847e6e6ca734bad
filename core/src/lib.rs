//! Sandcat's domain: identifiers, events (PDUs), room state and auth, the room sequencer,
//! sync, and the services that the protocol crates call.
//!
//! This crate does no I/O of its own: storage, the event bus and media reach it through the
//! port traits in [`ports`], implemented in `sandcat-backends` and wired together by the binary.

pub mod addresses;
pub mod changes;
pub mod config;
pub mod ephemeral;
pub mod error;
pub mod inbox;
pub mod input;
pub mod intent;
pub mod join_rules;
pub mod json;
pub mod notifier;
pub mod pdu;
pub mod ports;
pub mod push;
pub mod ratelimit;
pub mod remote_auth;
pub mod remote_pdu;
pub mod sequencer;
pub mod services;
pub mod state;
pub mod state_resolution;
pub mod token;
pub mod transaction_stream;
pub mod visibility;

pub use config::{ServerConfig, TurnServers};
pub use error::{Error, ErrorCode, Result};
pub use pdu::{Pdu, StoredEvent};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
