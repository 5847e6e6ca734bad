//! JWT access and refresh tokens (HS256), as Sandcat clients expect: the client reads `sub`,
//! `exp` and `iat` to schedule its refreshes. Each token also names its session, the device
//! `sid` (so deleting the device revokes it, like a Matrix access token) and what it is for
//! (`typ`); a refresh token carries the secret `rid` stored with the device, used once to
//! rotate it.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Lifetime of an access token, seconds.
pub const ACCESS_SECS: i64 = 4 * 60 * 60;
/// Extra lifetime of a refresh token, seconds.
pub const REFRESH_EXTRA_SECS: i64 = 24 * 60 * 60;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Requests and the WebSocket.
    Access,
    /// Only `GET /user/refresh_token/...`.
    Refresh,
    /// The `state` of a sign-in through a provider (`sub` names the provider).
    #[serde(rename = "oauth_state")]
    OAuthState,
}

/// How long a sign-in through a provider may take, from redirect to callback.
const OAUTH_STATE_SECS: i64 = 10 * 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The Sandcat user id (the Matrix localpart).
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    /// The device of the session.
    pub sid: String,
    pub typ: TokenUse,
    /// The refresh secret stored with the device (refresh tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Where a Matrix client waits for the sign-in's login token (single sign-on states
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
}

pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Jwt {
    pub fn new(secret: &[u8]) -> Self {
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    fn issue(&self, claims: &Claims) -> Result<String, ApiError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServer",
                e.to_string(),
            )
        })
    }

    fn claims(user: &str, device: &str, typ: TokenUse, secs: i64) -> Claims {
        let now = crate::now() / 1000;
        Claims {
            sub: user.to_owned(),
            exp: now + secs,
            iat: now,
            sid: device.to_owned(),
            typ,
            rid: None,
            redirect: None,
        }
    }

    /// An access token of `user`'s session on `device`.
    pub fn issue_access(&self, user: &str, device: &str) -> Result<String, ApiError> {
        self.issue(&Self::claims(user, device, TokenUse::Access, ACCESS_SECS))
    }

    /// A refresh token carrying the device's refresh secret.
    pub fn issue_refresh(&self, user: &str, device: &str, rid: &str) -> Result<String, ApiError> {
        let mut claims = Self::claims(
            user,
            device,
            TokenUse::Refresh,
            ACCESS_SECS + REFRESH_EXTRA_SECS,
        );
        claims.rid = Some(rid.to_owned());
        self.issue(&claims)
    }

    /// The `state` of a sign-in through `provider`.
    /// The `state` of a sign-in through `provider`; `redirect`: the Matrix client's
    /// `redirectUrl` (single sign-on).
    pub fn issue_state(&self, provider: &str, redirect: Option<&str>) -> Result<String, ApiError> {
        let mut claims = Self::claims(provider, "", TokenUse::OAuthState, OAUTH_STATE_SECS);
        claims.rid = Some(crate::friends::random_id());
        claims.redirect = redirect.map(str::to_owned);
        self.issue(&claims)
    }

    /// Whether `state` is one this server issued for `provider`, unexpired; its claims.
    pub fn check_state(&self, state: &str, provider: &str) -> Result<Claims, ApiError> {
        let claims = self
            .verify(state, TokenUse::OAuthState)
            .map_err(|_| ApiError::bad_request("the sign-in expired or was not started here"))?;
        if claims.sub != provider {
            return Err(ApiError::bad_request(
                "the sign-in was started with another provider",
            ));
        }
        Ok(claims)
    }

    /// The claims of a valid, unexpired token made for `typ`. Whether its session still
    /// exists is the caller's to check.
    pub fn verify(&self, token: &str, typ: TokenUse) -> Result<Claims, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        let claims = decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
        if claims.typ != typ {
            return Err(ApiError::unauthorized(match typ {
                TokenUse::Access => "a refresh token is not an access token",
                TokenUse::Refresh => "only a refresh token refreshes",
                TokenUse::OAuthState => "not a sign-in state",
            }));
        }
        Ok(claims)
    }
}
