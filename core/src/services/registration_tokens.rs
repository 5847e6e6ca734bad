//! Registration tokens: on a server whose registration needs one
//! (`registration_requires_token`), `/register` asks for the `m.login.registration_token`
//! stage, and a token counts one registration when the account is made. Admins create, list
//! and delete tokens from the command line.

use std::sync::Arc;

use crate::{
    ports::{RegistrationToken, RegistrationTokens},
    Error, ErrorCode, Result,
};

/// The longest token (the spec's limit), and the characters a token may have.
pub const MAX_TOKEN_CHARS: usize = 64;

fn token_chars_ok(token: &str) -> bool {
    !token.is_empty()
        && token.chars().count() <= MAX_TOKEN_CHARS
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
}

/// A new token as an admin asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewToken {
    /// The token itself; `None`: a random one.
    pub token: Option<String>,
    pub uses_allowed: Option<u64>,
    /// How long it works, in ms from now.
    pub lifetime_ms: Option<u64>,
}

pub struct RegistrationGate {
    store: Arc<dyn RegistrationTokens>,
    required: bool,
}

/// A token taken for a registration: given back unless the registration completes.
pub struct TakenToken<'a> {
    gate: &'a RegistrationGate,
    token: Option<String>,
}

impl TakenToken<'_> {
    /// The account was made: the use stays counted.
    pub fn keep(mut self) {
        self.token = None;
    }

    /// The account was not made: the use is given back.
    pub async fn give_back(mut self) -> Result<()> {
        match self.token.take() {
            Some(t) => self.gate.store.return_registration_token(&t).await,
            None => Ok(()),
        }
    }
}

impl RegistrationGate {
    pub fn new(store: Arc<dyn RegistrationTokens>, required: bool) -> Self {
        RegistrationGate { store, required }
    }

    /// Whether registration needs a token.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether `token` would allow a registration now.
    pub async fn is_valid(&self, token: &str) -> Result<bool> {
        if !token_chars_ok(token) {
            return Ok(false);
        }
        Ok(self
            .store
            .registration_token(token)
            .await?
            .is_some_and(|t| t.is_valid(crate::now_ms())))
    }

    /// Counts a registration against `token`; refused (`M_FORBIDDEN`) when it is unknown,
    /// used up or expired.
    pub async fn take(&self, token: &str) -> Result<TakenToken<'_>> {
        if !token_chars_ok(token)
            || !self
                .store
                .use_registration_token(token, crate::now_ms())
                .await?
        {
            return Err(Error::matrix(
                ErrorCode::Forbidden,
                "the registration token is invalid, used up or expired",
            ));
        }
        Ok(TakenToken {
            gate: self,
            token: Some(token.to_owned()),
        })
    }

    /// Creates a token (`sandcat registration-token create`).
    pub async fn create(&self, new: NewToken) -> Result<RegistrationToken> {
        let token = new.token.unwrap_or_else(|| crate::token::random_string(16));
        if !token_chars_ok(&token) {
            return Err(Error::invalid_param(format!(
                "a token has 1 to {MAX_TOKEN_CHARS} of the characters A-Z a-z 0-9 . _ ~ -"
            )));
        }
        let record = RegistrationToken {
            token,
            uses_allowed: new.uses_allowed,
            completed: 0,
            expiry_time: new.lifetime_ms.map(|ms| crate::now_ms().saturating_add(ms)),
        };
        if !self.store.add_registration_token(&record).await? {
            return Err(Error::invalid_param("that token exists already"));
        }
        Ok(record)
    }

    pub async fn list(&self) -> Result<Vec<RegistrationToken>> {
        self.store.registration_tokens().await
    }

    pub async fn delete(&self, token: &str) -> Result<bool> {
        self.store.delete_registration_token(token).await
    }
}
