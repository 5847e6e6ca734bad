//! Outgoing mail: what the server sends to an address (validation tokens, verification
//! codes). The SMTP transport lives in the backends.

use async_trait::async_trait;

use crate::Result;

/// A plain-text message to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands the message to the mail relay; an error when the relay refuses it or cannot be
    /// reached.
    async fn send(&self, mail: Mail) -> Result<()>;
}
