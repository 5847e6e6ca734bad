//! The HTTP client of push gateways. A pusher's URL is a user's input, so every connection is
//! checked: no private, loopback or link-local address unless configured (tests), checked at
//! connect time for host names (the resolver refuses them) and before the request for IP
//! literals (which reqwest connects without resolving).

use std::time::Duration;

use sandcat_backends::web::{guarded_client, is_private_literal, read_body};
use sandcat_core::{error::with_causes, Error, ErrorCode, Result};

/// The largest gateway answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How the client reaches push gateways.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Let requests go to private, loopback and link-local addresses.
    pub allow_private: bool,
    /// The most one request may take.
    pub timeout: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            allow_private: false,
            timeout: Duration::from_secs(30),
        }
    }
}

pub struct Gateways {
    http: reqwest::Client,
    allow_private: bool,
}

fn unreachable(url: &str, why: impl std::fmt::Display) -> Error {
    Error::matrix(ErrorCode::Unknown, format!("push gateway {url}: {why}"))
}

impl Gateways {
    pub fn new(options: GatewayOptions) -> Result<Self> {
        let http =
            guarded_client(options.allow_private, options.timeout, 0).map_err(Error::internal)?;
        Ok(Gateways {
            http,
            allow_private: options.allow_private,
        })
    }

    /// Posts a notification (`body`, JSON) to the gateway at `url`; answers the push keys
    /// it rejected.
    pub async fn notify(&self, url: &str, body: String) -> Result<Vec<String>> {
        let parsed = reqwest::Url::parse(url).map_err(|e| unreachable(url, e))?;
        if is_private_literal(&parsed) && !self.allow_private {
            return Err(unreachable(url, "a private address"));
        }
        let mut answer = self
            .http
            .post(parsed)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(url, with_causes(&e)))?;
        let status = answer.status();
        let read = read_body(&mut answer, MAX_ANSWER_BYTES, false)
            .await
            .map_err(|e| unreachable(url, e))?;
        if !status.is_success() {
            return Err(unreachable(url, format!("answered {status}")));
        }
        let rejected = serde_json::from_slice::<serde_json::Value>(&read)
            .ok()
            .and_then(|v| {
                v.get("rejected")?.as_array().map(|keys| {
                    keys.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        Ok(rejected)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly
    use super::*;

    #[tokio::test]
    async fn private_gateways_are_refused_unless_allowed() {
        let refusing = Gateways::new(GatewayOptions::default()).unwrap();
        for url in [
            "http://127.0.0.1:9/_matrix/push/v1/notify",
            "http://[::1]:9/_matrix/push/v1/notify",
            "http://localhost:9/_matrix/push/v1/notify",
        ] {
            let e = refusing.notify(url, "{}".into()).await.unwrap_err();
            assert!(e.to_string().contains("private"), "{url}: {e}");
        }
        // Allowed, the same request is made (and fails only because nothing listens).
        let allowing = Gateways::new(GatewayOptions {
            allow_private: true,
            ..Default::default()
        })
        .unwrap();
        let e = allowing
            .notify("http://127.0.0.1:9/_matrix/push/v1/notify", "{}".into())
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("private"), "{e}");
    }
}
