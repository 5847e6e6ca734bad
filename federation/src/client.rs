//! Requests to other servers: signed with this server's key (`X-Matrix`), over TLS, to the
//! address a server name gives; never to a private, loopback or link-local address unless the
//! configuration allows it. Implements the ports through which the rest of the server reads
//! other servers: their keys (`KeyFetch`) and their rooms' events (`RemoteFetch`, each event
//! checked with `verify_pdu` before it is answered).

use std::{net::IpAddr, sync::Arc, time::Duration};

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            verify_certificates: true,
            allow_private_destinations: false,
            timeout: Duration::from_secs(30),
        }
    }
}

pub struct FederationClient {
    http: reqwest::Client,
    signing: Arc<SigningKey>,
    options: ClientOptions,
}

fn unreachable_server(destination: &ServerName, why: impl std::fmt::Display) -> Error {
    Error::matrix(
        ErrorCode::Unknown,
        format!("{destination} could not be reached: {why}"),
    )
}

/// Whether an address is one that outbound federation stays away from by default.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

impl FederationClient {
    pub fn new(signing: Arc<SigningKey>, options: ClientOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(!options.verify_certificates)
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::internal)?;
        Ok(FederationClient {
            http,
            signing,
            options,
        })
    }

    /// `https://host:port` of a destination: the name's explicit port, else 8448. (Delegation
    /// through `.well-known` and SRV records comes with the rest of server discovery.)
    pub(crate) async fn base_url(&self, destination: &ServerName) -> Result<String> {
        let host = destination.host();
        let port = destination.port().unwrap_or(8448);
        let authority = format!("{host}:{port}");
        self.check_public(destination, &authority).await?;
        Ok(format!("https://{authority}"))
    }

    /// Refuses an address that resolves to a private one, unless the configuration allows it.
    pub(crate) async fn check_public(
        &self,
        destination: &ServerName,
        authority: &str,
    ) -> Result<()> {
        if self.options.allow_private_destinations {
            return Ok(());
        }
        let addrs = tokio::net::lookup_host(authority)
            .await
            .map_err(|e| unreachable_server(destination, e))?;
        for addr in addrs {
            if is_private(addr.ip()) {
                return Err(Error::forbidden(format!(
                    "{destination} resolves to a private address"
                )));
            }
        }
        Ok(())
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
        let mut response = self
            .http
            .execute(request)
            .await
            .map_err(|e| unreachable_server(destination, e))?;
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
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return Err(unreachable_server(destination, "a location without a host"));
        };
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(unreachable_server(
                destination,
                "a location that is not http(s)",
            ));
        }
        self.check_public(destination, &format!("{host}:{port}"))
            .await?;
        let request = self.http.get(parsed).build().map_err(Error::internal)?;
        self.execute(destination, request, limit).await
    }
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
