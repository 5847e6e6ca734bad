//! OpenID tokens (`/user/{userId}/openid/request_token`): a user proves who they are to a
//! third party — an integration manager, a call's media service — by handing it a token the
//! third party trades for the user's id at `/_matrix/federation/v1/openid/userinfo`. Tokens
//! live an hour, in the store, so every instance answers for every token.

use std::sync::Arc;

use ruma::{OwnedServerName, OwnedUserId, UserId};

use crate::{
    error::ErrorCode,
    now_ms,
    ports::{OpenIdTokens, UserStore},
    services::Session,
    token::random_string,
    Error, Result,
};

/// How long an OpenID token is good for.
pub const OPENID_TOKEN_SECS: u64 = 3600;

/// A token as the client is handed it.
#[derive(Debug, Clone)]
pub struct OpenIdToken {
    pub access_token: String,
    pub matrix_server_name: OwnedServerName,
    pub expires_in_secs: u64,
}

pub struct OpenId {
    tokens: Arc<dyn OpenIdTokens>,
    users: Arc<dyn UserStore>,
    server_name: OwnedServerName,
}

impl OpenId {
    pub fn new(
        tokens: Arc<dyn OpenIdTokens>,
        users: Arc<dyn UserStore>,
        server_name: OwnedServerName,
    ) -> Self {
        OpenId {
            tokens,
            users,
            server_name,
        }
    }

    /// A new token for `user_id`, who must be the session's user.
    pub async fn request_token(&self, session: &Session, user_id: &UserId) -> Result<OpenIdToken> {
        if session.user_id != user_id {
            return Err(Error::forbidden(
                "an OpenID token is only for one's own user id",
            ));
        }
        let token = random_string(32);
        let now = now_ms();
        let expires = now + OPENID_TOKEN_SECS * 1000;
        self.tokens
            .keep_openid_token(&token, user_id, expires, now)
            .await?;
        Ok(OpenIdToken {
            access_token: token,
            matrix_server_name: self.server_name.clone(),
            expires_in_secs: OPENID_TOKEN_SECS,
        })
    }

    /// The user a token was given to (`/openid/userinfo`); `M_UNKNOWN_TOKEN` for one that is
    /// unknown or expired, or whose user is deactivated since.
    pub async fn userinfo(&self, token: &str) -> Result<OwnedUserId> {
        let unknown = || {
            Error::matrix(
                ErrorCode::UnknownToken,
                "the OpenID token is unknown or has expired",
            )
        };
        let user = self
            .tokens
            .openid_token_user(token, now_ms())
            .await?
            .ok_or_else(unknown)?;
        match self.users.user(&user).await? {
            Some(record) if !record.deactivated => Ok(user),
            _ => Err(unknown()),
        }
    }
}
