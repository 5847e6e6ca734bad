//! Calls: credentials for the configured TURN servers (`/voip/turnServer`), as the TURN REST
//! scheme makes them — the user name is the expiry time and the user id, the password its
//! HMAC-SHA1 under the secret the TURN server shares — so the TURN server checks them
//! without asking this one.

use base64::Engine;
use hmac::{Hmac, Mac};
use ruma::UserId;
use sha1::Sha1;

use crate::{Error, Result, TurnServers};

/// A credential for the TURN servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub uris: Vec<String>,
    pub ttl_secs: u64,
}

/// A credential for `user` that expires `ttl_secs` after `now_secs`; `None` when no TURN
/// server is configured.
pub fn turn_credentials(
    turn: &TurnServers,
    user: &UserId,
    now_secs: u64,
) -> Result<Option<TurnCredentials>> {
    if turn.uris.is_empty() || turn.shared_secret.is_empty() {
        return Ok(None);
    }
    let username = format!("{}:{user}", now_secs.saturating_add(turn.ttl_secs));
    let mut mac =
        Hmac::<Sha1>::new_from_slice(turn.shared_secret.as_bytes()).map_err(Error::internal)?;
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(Some(TurnCredentials {
        username,
        password,
        uris: turn.uris.clone(),
        ttl_secs: turn.ttl_secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let turn = TurnServers {
            uris: vec!["turn:turn.example.org".into()],
            shared_secret: "secret".into(),
            ttl_secs: 60,
        };
        let user: &UserId = "@alice:example.org".try_into().unwrap();
        let c = turn_credentials(&turn, user, 1_000).unwrap().unwrap();
        assert_eq!(c.username, "1060:@alice:example.org");
        // printf '1060:@alice:example.org' | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(c.password, "G45kltEeoRnBRAElfOus372BZBw=");
        let none = TurnServers::default();
        assert_eq!(turn_credentials(&none, user, 1_000).unwrap(), None);
    }
}
