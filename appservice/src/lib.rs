//! The homeserver side of the Matrix Application Service API: registration files and their
//! namespaces, `as_token` identity (with `user_id` and `device_id` assertion), transaction
//! pushing with persisted positions and retries, and the user, alias, ping and third-party
//! queries a homeserver sends to a service.

pub mod client;
pub mod registration;
pub mod registry;
pub mod sender;
pub mod service;

pub use registration::{Appservice, RegistrationError};
pub use registry::Registry;
pub use sender::{Backoff, Pushers};
pub use service::Appservices;
