//! Server discovery, as the spec resolves a server name: an IP literal or a name with an
//! explicit port is reached as it is; otherwise the name's `/.well-known/matrix/server` may
//! delegate it (`m.server`), and the (delegated) host name's SRV records
//! (`_matrix-fed._tcp`, then the older `_matrix._tcp`) may name the host and port to connect
//! to; else port 8448. Requests keep the (delegated) host name in their URL — the name the
//! certificate must carry and the `Host` header names — while the DNS resolver here connects
//! them to the SRV target. Every address a name resolves to is checked: private, loopback and
//! link-local ones are refused unless the configuration allows them. Results are kept an hour.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use hickory_resolver::{
    config::{NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
    TokioResolver,
};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

/// How long a server name's resolution is kept, and how many names are kept at most (any
/// user can name a server, in a media URI for one: past this, the expired ones go, and if
/// none has, all).
const KEPT: Duration = Duration::from_secs(60 * 60);
const MAX_KEPT: usize = 10_000;
/// The longest a `.well-known` document may take, and its largest size.
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);
const WELL_KNOWN_MAX: usize = 64 * 1024;

/// Where requests for a server name go: `https://{host}:{port}`, connected to `target`'s
/// addresses when an SRV record named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub(crate) fn base_url(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("https://[{v6}]:{}", self.port),
            _ => format!("https://{}:{}", self.host, self.port),
        }
    }
}

/// Whether an address is one that outbound federation stays away from by default.
pub(crate) use sandcat_core::addresses::is_private;

pub(crate) struct Dns {
    resolver: TokioResolver,
    /// Host name → the SRV target its connections go to.
    targets: RwLock<HashMap<String, String>>,
    allow_private: bool,
}

impl Dns {
    /// A resolver asking `server` (`ip:port`), or the system's name servers when none.
    pub(crate) fn new(server: Option<SocketAddr>, allow_private: bool) -> std::io::Result<Self> {
        let resolver = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
                .build()
            }
            None => TokioResolver::builder_tokio().and_then(|b| b.build()),
        }
        .map_err(std::io::Error::other)?;
        Ok(Dns {
            resolver,
            targets: Default::default(),
            allow_private,
        })
    }

    /// The addresses of `host` (or of the SRV target it stands for), private ones refused
    /// unless allowed.
    pub(crate) async fn addresses(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let target = self
            .targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
            .unwrap_or_else(|| host.to_owned());
        let ips: Vec<IpAddr> = match target.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self
                .resolver
                .lookup_ip(target.as_str())
                .await
                .map_err(std::io::Error::other)?
                .iter()
                .collect(),
        };
        self.check(host, ips)
    }

    /// `ips`, unless one of them is private and that is not allowed.
    pub(crate) fn check(&self, host: &str, ips: Vec<IpAddr>) -> std::io::Result<Vec<IpAddr>> {
        if !self.allow_private && ips.iter().any(|ip| is_private(*ip)) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{host} resolves to a private address"),
            ));
        }
        if ips.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        Ok(ips)
    }

    /// The first SRV record of `name` (lowest priority, then highest weight): target, port.
    async fn srv(&self, name: &str) -> Option<(String, u16)> {
        let lookup = self.resolver.srv_lookup(name).await.ok()?;
        lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some((srv.priority, u16::MAX - srv.weight, srv.clone())),
                _ => None,
            })
            .min_by_key(|(priority, weight, _)| (*priority, *weight))
            .map(|(_, _, srv)| {
                let target = srv.target.to_ascii();
                (target.trim_end_matches('.').to_owned(), srv.port)
            })
    }

    fn route(&self, host: &str, target: &str) {
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        if targets.len() >= MAX_KEPT {
            // Routes are found again as their names are resolved again.
            targets.clear();
        }
        targets.insert(host.to_owned(), target.to_owned());
    }
}

/// reqwest resolves through [`Dns`]: every connection of the federation client is checked.
pub(crate) struct HttpDns(pub Arc<Dns>);

impl reqwest::dns::Resolve for HttpDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        Box::pin(async move {
            let ips = dns.addresses(name.as_str()).await?;
            // Port 0: the URL's port is used.
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Server names to endpoints, kept an hour.
pub(crate) struct ServerResolver {
    dns: Arc<Dns>,
    kept: Mutex<HashMap<OwnedServerName, (Endpoint, Instant)>>,
}

impl ServerResolver {
    pub(crate) fn new(dns: Arc<Dns>) -> Self {
        ServerResolver {
            dns,
            kept: Default::default(),
        }
    }

    /// Where requests for `server` go. `well_known` fetches a name's `.well-known` document
    /// (the JSON, if it answered one).
    pub(crate) async fn endpoint<F, Fut>(&self, server: &ServerName, well_known: F) -> Endpoint
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Option<Value>>,
    {
        if let Some((endpoint, at)) = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
        {
            if at.elapsed() < KEPT {
                return endpoint.clone();
            }
        }
        let endpoint = self.discover(server, well_known).await;
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, (_, at)| at.elapsed() < KEPT);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(server.to_owned(), (endpoint.clone(), Instant::now()));
        endpoint
    }

    async fn discover<F, Fut>(&self, server: &ServerName, well_known: F) -> Endpoint
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Option<Value>>,
    {
        let host = server.host();
        // An IP literal, or an explicit port: as it is.
        if server.is_ip_literal() || server.port().is_some() {
            return Endpoint {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port: server.port().unwrap_or(8448),
            };
        }
        // Delegation through `.well-known`: the delegated name, then as below.
        let delegated = well_known(host.to_owned())
            .await
            .and_then(|doc| doc.get("m.server")?.as_str().map(str::to_owned))
            .and_then(|name| OwnedServerName::try_from(name).ok());
        if let Some(delegated) = delegated {
            tracing::debug!(%server, %delegated, "delegated by .well-known");
            if delegated.is_ip_literal() || delegated.port().is_some() {
                return Endpoint {
                    host: delegated
                        .host()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                    port: delegated.port().unwrap_or(8448),
                };
            }
            return self.by_srv(delegated.host()).await;
        }
        self.by_srv(host).await
    }

    /// A host name without a port: its SRV records, else port 8448.
    async fn by_srv(&self, host: &str) -> Endpoint {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            if let Some((target, port)) = self.dns.srv(&format!("{service}.{host}.")).await {
                tracing::debug!(host, target, port, service, "reached through SRV");
                self.dns.route(host, &target);
                return Endpoint {
                    host: host.to_owned(),
                    port,
                };
            }
        }
        Endpoint {
            host: host.to_owned(),
            port: 8448,
        }
    }
}

/// Reads a `.well-known/matrix/server` answer: JSON of at most [`WELL_KNOWN_MAX`] bytes.
pub(crate) fn parse_well_known(status: http::StatusCode, body: &[u8]) -> Option<Value> {
    if !status.is_success() || body.len() > WELL_KNOWN_MAX {
        return None;
    }
    serde_json::from_slice(body).ok()
}

pub(crate) const WELL_KNOWN_LIMITS: (Duration, usize) = (WELL_KNOWN_TIMEOUT, WELL_KNOWN_MAX);
