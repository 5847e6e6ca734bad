//! HTTP to addresses that users name (push gateways, pages to preview): every connection is
//! checked — no private, loopback or link-local address unless configured (tests, a gateway
//! on the same network) — at connect time for host names (the resolver refuses them) and
//! before each request and redirect for IP literals (which are connected without
//! resolving).

mod pages;

pub use pages::{PageOptions, WebFetcher};

use std::{net::SocketAddr, sync::Arc, time::Duration};

use sandcat_core::addresses::is_private;

/// Resolves host names through the system, refusing private addresses unless allowed.
struct GuardedDns {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow_private && addrs.iter().any(|a| is_private(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} resolves to a private address", name.as_str()),
                )
                .into());
            }
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", name.as_str()),
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether a URL names a private IP literal (a host name is checked when resolved).
pub fn is_private_literal(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => is_private(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => is_private(std::net::IpAddr::V6(v6)),
        _ => false,
    }
}

/// A client whose connections keep to public addresses unless `allow_private`, giving up
/// after `timeout`, following at most `redirects` redirects (each checked the same way).
pub fn guarded_client(
    allow_private: bool,
    timeout: Duration,
    redirects: usize,
) -> reqwest::Result<reqwest::Client> {
    let policy = if redirects == 0 {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > redirects {
                attempt.error("too many redirects")
            } else if !allow_private && is_private_literal(attempt.url()) {
                attempt.error("a redirect to a private address")
            } else if !matches!(attempt.url().scheme(), "http" | "https") {
                attempt.error("a redirect to neither http nor https")
            } else {
                attempt.follow()
            }
        })
    };
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedDns { allow_private }))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(policy)
        .build()
}

/// Reads an answer's body, refusing one larger than `max` bytes (or, with `truncate`,
/// keeping its first `max` bytes).
pub async fn read_body(
    answer: &mut reqwest::Response,
    max: usize,
    truncate: bool,
) -> Result<Vec<u8>, String> {
    let mut read = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| e.to_string())? {
        if read.len() + chunk.len() > max {
            if truncate {
                let room = max - read.len();
                read.extend_from_slice(chunk.get(..room).unwrap_or_default());
                return Ok(read);
            }
            return Err(format!("the answer is larger than {max} bytes"));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read)
}
