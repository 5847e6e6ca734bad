//! Requests to other servers: signed with this server's key (`X-Matrix`), over TLS, to the
//! address a server name gives; never to a private, loopback or link-local address unless the
//! configuration allows it. Implements the ports through which the rest of the server reads
//! other servers: their keys (`KeyFetch`) and their rooms' events (`RemoteFetch`, each event
//! checked with `verify_pdu` before it is answered).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use ruma::{
    api::{
        federation::{
            authentication::{ServerSignatures, XMatrixSigningInput},
            backfill::get_backfill,
            event::{get_event, get_missing_events},
        },
        path_builder::SinglePath,
        IncomingResponseExt, OutgoingRequest, OutgoingRequestExt,
    },
    CanonicalJsonObject, OwnedEventId, RoomId, RoomVersionId, ServerName, UInt,
};
use sandcat_core::{
    intent::ReceivedPdu,
    ports::{KeyFetch, RemoteFetch, RoomStore},
    remote_pdu::verify_pdu,
    sequencer::SigningKey,
    services::server_keys::ServerKeys,
    Error, ErrorCode, Result,
};
use serde_json::{value::RawValue, Value};

use crate::resolve::{parse_well_known, Dns, HttpDns, ServerResolver, WELL_KNOWN_LIMITS};

/// The largest answer read from another server.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// How the client reaches other servers.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Check other servers' TLS certificates (off only for servers with self-signed ones,
    /// as in tests on one machine).
    pub verify_certificates: bool,
    /// Let requests go to private, loopback and link-local addresses.
    pub allow_private_destinations: bool,
    /// The most one request may take.
    pub timeout: Duration,
    /// The DNS server to ask (`ip:port`); none: the system's.
    pub dns_server: Option<SocketAddr>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            verify_certificates: true,
            allow_private_destinations: false,
            timeout: Duration::from_secs(30),
            dns_server: None,
        }
    }
}

/// Redirects a `.well-known/matrix/server` answer may take before it counts as none.
const WELL_KNOWN_REDIRECTS: usize = 5;

pub struct FederationClient {
    http: reqwest::Client,
    signing: Arc<SigningKey>,
    dns: Arc<Dns>,
    servers: ServerResolver,
}

fn unreachable_server(destination: &ServerName, why: impl std::fmt::Display) -> Error {
    Error::matrix(
        ErrorCode::Unknown,
        format!("{destination} could not be reached: {why}"),
    )
}

impl FederationClient {
    pub fn new(signing: Arc<SigningKey>, options: ClientOptions) -> Result<Self> {
        let dns = Arc::new(
            Dns::new(options.dns_server, options.allow_private_destinations)
                .map_err(|e| Error::internal(format!("the DNS resolver: {e}")))?,
        );
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(HttpDns(dns.clone())))
            .danger_accept_invalid_certs(!options.verify_certificates)
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::internal)?;
        Ok(FederationClient {
            http,
            signing,
            servers: ServerResolver::new(dns.clone()),
            dns,
        })
    }

    /// `https://host:port` of a destination, as server discovery finds it (`resolve.rs`).
    pub(crate) async fn base_url(&self, destination: &ServerName) -> Result<String> {
        let endpoint = self
            .servers
            .endpoint(destination, |host| self.well_known(host))
            .await;
        // A URL with an IP address is connected without asking the resolver: checked here.
        if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
            self.dns
                .check(&endpoint.host, vec![ip])
                .map_err(|e| Error::forbidden(format!("{destination}: {e}")))?;
        }
        Ok(endpoint.base_url())
    }

    /// `https://{server}` as it is named, without server discovery (identity servers have
    /// none); an IP address is checked here, a name by the resolver as it connects.
    pub(crate) fn direct_url(&self, server: &ServerName) -> Result<String> {
        let host = server.host();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.dns
                .check(literal, vec![ip])
                .map_err(|e| Error::forbidden(format!("{server}: {e}")))?;
        }
        Ok(format!("https://{server}"))
    }

    /// This server's signing key.
    pub(crate) fn signing(&self) -> &SigningKey {
        &self.signing
    }

    /// `https://{host}/.well-known/matrix/server`, if it answers a JSON document, following
    /// at most [`WELL_KNOWN_REDIRECTS`] redirects (as the spec asks) to other `https` URLs,
    /// each checked like a server's address.
    async fn well_known(&self, host: String) -> Option<Value> {
        let (timeout, max) = WELL_KNOWN_LIMITS;
        let name = ServerName::parse(host.as_str()).ok()?;
        let mut url =
            reqwest::Url::parse(&format!("https://{host}/.well-known/matrix/server")).ok()?;
        for _ in 0..=WELL_KNOWN_REDIRECTS {
            let mut request = match self.checked_get(&name, url.clone()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(host, %url, error = %e, "a .well-known location refused");
                    return None;
                }
            };
            *request.timeout_mut() = Some(timeout);
            let answer = match self.execute(&name, request, max).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::debug!(host, error = %e, "no .well-known delegation");
                    return None;
                }
            };
            if !answer.status().is_redirection() {
                return parse_well_known(answer.status(), answer.body());
            }
            let location = answer
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())?;
            if location.scheme() != "https" {
                tracing::debug!(host, %location, "a .well-known redirect away from https");
                return None;
            }
            url = location;
        }
        tracing::debug!(host, "too many .well-known redirects");
        None
    }

    /// Hashes and signs an event built from a template (as this server), and answers its id
    /// (its reference hash) and its JSON.
    pub fn sign_event(
        &self,
        version: &RoomVersionId,
        event: Value,
    ) -> Result<(OwnedEventId, String)> {
        let rules = version
            .rules()
            .ok_or_else(|| Error::invalid_param(format!("room version {version} is unknown")))?;
        let mut object: CanonicalJsonObject = serde_json::from_value(event)
            .map_err(|e| Error::bad_json(format!("a template is not canonical JSON: {e}")))?;
        ruma::signatures::hash_and_sign_event(
            self.signing.server_name.as_str(),
            &self.signing.key,
            &mut object,
            &rules.redaction,
        )
        .map_err(Error::internal)?;
        let hash = ruma::signatures::reference_hash(&object, &rules).map_err(Error::internal)?;
        let id = OwnedEventId::try_from(format!("${hash}")).map_err(Error::internal)?;
        Ok((id, serde_json::to_string(&object)?))
    }

    /// Sends a signed federation request to `destination` and parses its answer.
    pub async fn send<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let response = self.send_raw(destination, request, MAX_RESPONSE).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(remote_error(destination, status, response.body()));
        }
        R::IncomingResponse::try_from_http_response(borrowed(&response)).map_err(|e| {
            Error::matrix(
                ErrorCode::Unknown,
                format!("{destination} answered {status}: {e}"),
            )
        })
    }

    /// Sends a signed federation request to `destination` and answers its response as it
    /// came (at most `limit` bytes of body).
    pub(crate) async fn send_raw<R>(
        &self,
        destination: &ServerName,
        request: R,
        limit: usize,
    ) -> Result<http::Response<Vec<u8>>>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let base = self.base_url(destination).await?;
        let input = XMatrixSigningInput::new(
            self.signing.server_name.clone(),
            destination.to_owned(),
            &self.signing.key,
        );
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&base, input, ())
            .map_err(Error::internal)?;
        let request = reqwest::Request::try_from(http_request).map_err(Error::internal)?;
        self.execute(destination, request, limit).await
    }

    /// Runs `request`, reading at most `limit` bytes of the answer (`M_TOO_LARGE` past it).
    pub(crate) async fn execute(
        &self,
        destination: &ServerName,
        request: reqwest::Request,
        limit: usize,
    ) -> Result<http::Response<Vec<u8>>> {
        let mut response =
            self.http.execute(request).await.map_err(|e| {
                unreachable_server(destination, sandcat_core::error::with_causes(&e))
            })?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            *headers = std::mem::take(response.headers_mut());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable_server(destination, e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(Error::matrix(
                    ErrorCode::TooLarge,
                    format!("the answer of {destination} is larger than {limit} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        answer.body(body).map_err(Error::internal)
    }

    /// An unsigned GET of `url` (a file another server points to), checked like a server's
    /// address.
    pub(crate) async fn get_url(
        &self,
        destination: &ServerName,
        url: &str,
        limit: usize,
    ) -> Result<http::Response<Vec<u8>>> {
        let parsed = reqwest::Url::parse(url).map_err(|e| unreachable_server(destination, e))?;
        let request = self.checked_get(destination, parsed)?;
        self.execute(destination, request, limit).await
    }

    /// A GET of `url`, an http(s) URL `destination` pointed to, if its address may be
    /// reached: a name is checked by the resolver as it connects; an address, here.
    fn checked_get(&self, destination: &ServerName, url: reqwest::Url) -> Result<reqwest::Request> {
        let Some(host) = url.host_str() else {
            return Err(unreachable_server(destination, "a location without a host"));
        };
        if !matches!(url.scheme(), "https" | "http") {
            return Err(unreachable_server(
                destination,
                "a location that is not http(s)",
            ));
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.dns
                .check(&ip.to_string(), vec![ip])
                .map_err(|e| Error::forbidden(format!("{destination}: {e}")))?;
        }
        self.http.get(url).build().map_err(Error::internal)
    }
}

/// What another server refused, as this server tells it on: the refusals a client can act
/// on keep their code (a join that is forbidden, a room that is not there or of a version
/// this server does not speak, a restricted join that server cannot vouch for); the rest
/// are `M_UNKNOWN`. The message names the server and its status.
pub(crate) fn remote_error(
    destination: &ServerName,
    status: http::StatusCode,
    body: &[u8],
) -> Error {
    #[derive(serde::Deserialize)]
    struct Refusal {
        errcode: Option<String>,
        error: Option<String>,
        room_version: Option<RoomVersionId>,
    }
    let refusal = serde_json::from_slice::<Refusal>(body).ok();
    let (errcode, error, version) = match refusal {
        Some(r) => (r.errcode, r.error, r.room_version),
        None => (None, None, None),
    };
    let errcode = errcode.unwrap_or_default();
    let message = format!(
        "{destination} answered {status}: {errcode} {}",
        error.unwrap_or_default()
    );
    let code = match errcode.as_str() {
        "M_FORBIDDEN" => ErrorCode::Forbidden,
        "M_NOT_FOUND" => ErrorCode::NotFound,
        "M_UNABLE_TO_AUTHORISE_JOIN" => ErrorCode::UnableToAuthorizeJoin,
        "M_UNABLE_TO_GRANT_JOIN" => ErrorCode::UnableToGrantJoin,
        "M_INCOMPATIBLE_ROOM_VERSION" => match version {
            Some(v) => return Error::IncompatibleRoomVersion(v),
            None => ErrorCode::Unknown,
        },
        _ => ErrorCode::Unknown,
    };
    Error::matrix(code, message.trim_end().to_owned())
}

/// A response whose body is read in place, as ruma's parsers take it.
pub(crate) fn borrowed(response: &http::Response<Vec<u8>>) -> http::Response<&[u8]> {
    let mut out = http::Response::new(response.body().as_slice());
    *out.status_mut() = response.status();
    *out.headers_mut() = response.headers().clone();
    out
}

#[async_trait]
impl KeyFetch for FederationClient {
    async fn key_documents(&self, server: &ServerName) -> Result<Vec<String>> {
        let url = format!("{}/_matrix/key/v2/server", self.base_url(server).await?);
        let request = self.http.get(url).build().map_err(Error::internal)?;
        let answer = self.execute(server, request, MAX_RESPONSE).await?;
        let status = answer.status();
        let body = answer.into_body();
        if !status.is_success() {
            return Err(unreachable_server(
                server,
                format!("its key document answered {status}"),
            ));
        }
        let doc = String::from_utf8(body).map_err(|e| unreachable_server(server, e))?;
        Ok(vec![doc])
    }
}

/// Other servers' events, each checked (`verify_pdu`) before it is handed on; one that fails
/// is dropped.
pub struct RemoteEvents {
    pub(crate) client: Arc<FederationClient>,
    keys: Arc<ServerKeys>,
    store: Arc<dyn RoomStore>,
}

impl RemoteEvents {
    pub fn new(
        client: Arc<FederationClient>,
        keys: Arc<ServerKeys>,
        store: Arc<dyn RoomStore>,
    ) -> Self {
        RemoteEvents {
            client,
            keys,
            store,
        }
    }

    pub(crate) fn keys(&self) -> &ServerKeys {
        &self.keys
    }

    async fn verified(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        pdus: Vec<Box<RawValue>>,
    ) -> Result<Vec<ReceivedPdu>> {
        let version = self
            .store
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))?;
        self.verified_as(origin, &version, room_id, pdus).await
    }

    pub(crate) async fn verified_as(
        &self,
        origin: &ServerName,
        version: &RoomVersionId,
        room_id: &RoomId,
        pdus: Vec<Box<RawValue>>,
    ) -> Result<Vec<ReceivedPdu>> {
        let mut out = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            match verify_pdu(&self.keys, version, room_id, pdu.get()).await {
                Ok(v) => out.push(v.into()),
                Err(e) => {
                    tracing::info!(%origin, %room_id, error = %e, "a fetched event was dropped")
                }
            }
        }
        Ok(out)
    }
}

fn uint(n: usize) -> UInt {
    UInt::try_from(n as u64).unwrap_or(UInt::MAX)
}

#[async_trait]
impl RemoteFetch for RemoteEvents {
    async fn missing_events(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<ReceivedPdu>> {
        let mut request = get_missing_events::v1::Request::new(
            room_id.to_owned(),
            earliest.to_vec(),
            latest.to_vec(),
        );
        request.limit = uint(limit);
        let answer = self.client.send(origin, request).await?;
        self.verified(origin, room_id, answer.events).await
    }

    async fn event(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<Option<ReceivedPdu>> {
        let request = get_event::v1::Request::new(event_id.to_owned());
        let answer = match self.client.send(origin, request).await {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%origin, %event_id, error = %e, "an event could not be fetched");
                return Ok(None);
            }
        };
        Ok(self
            .verified(origin, room_id, vec![answer.pdu])
            .await?
            .into_iter()
            .find(|p| p.event_id == event_id))
    }

    async fn backfill(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<ReceivedPdu>> {
        let request =
            get_backfill::v1::Request::new(room_id.to_owned(), from.to_vec(), uint(limit));
        let answer = self.client.send(origin, request).await?;
        self.verified(origin, room_id, answer.pdus).await
    }
}
