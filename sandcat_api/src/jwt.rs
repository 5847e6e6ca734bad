//! JWT access and refresh tokens (HS256, claims `{sub, exp, iat}`), as Sandcat clients expect.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Lifetime of an access token, seconds.
pub const ACCESS_SECS: i64 = 4 * 60 * 60;
/// Extra lifetime of a refresh token, seconds.
pub const REFRESH_EXTRA_SECS: i64 = 24 * 60 * 60;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The Sandcat user id (the Matrix localpart).
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
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

    /// A token for `user` valid for `secs` seconds.
    pub fn issue(&self, user: &str, secs: i64) -> Result<String, ApiError> {
        let now = crate::now() / 1000;
        let claims = Claims {
            sub: user.to_owned(),
            exp: now + secs,
            iat: now,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServer",
                e.to_string(),
            )
        })
    }

    /// The user of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims.sub)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))
    }
}
