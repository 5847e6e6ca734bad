//! Requests from the homeserver to an application service, typed with ruma's Application
//! Service API and authenticated with the service's `hs_token`.

use std::time::Duration;

use ruma::api::{
    appservice::HomeserverToken, path_builder::SinglePath, IncomingResponseExt, OutgoingRequest,
    OutgoingRequestExt,
};
use sandcat_core::{Error, ErrorCode};

use crate::registration::Appservice;

/// How a call to an application service failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the application service has no url")]
    NoUrl,
    #[error("the application service did not answer in time")]
    Timeout,
    #[error("could not reach the application service: {0}")]
    Connect(String),
    #[error("the application service answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad request or response: {0}")]
    Protocol(String),
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        let code = match &e {
            CallError::NoUrl => ErrorCode::UrlNotSet,
            CallError::Timeout => ErrorCode::ConnectionTimeout,
            CallError::Status { .. } => ErrorCode::BadStatus,
            CallError::Connect(_) | CallError::Protocol(_) => ErrorCode::ConnectionFailed,
        };
        Error::matrix(code, e.to_string())
    }
}

/// The HTTP client all calls to application services share, built on first use (a server
/// without application services never pays for its TLS setup).
#[derive(Clone, Default)]
pub struct AsClient {
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl AsClient {
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default()
        })
    }
}

fn base_url(asv: &Appservice) -> Result<&str, CallError> {
    asv.registration
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/'))
        .ok_or(CallError::NoUrl)
}

impl AsClient {
    async fn execute(
        &self,
        req: reqwest::Request,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, CallError> {
        let res = tokio::time::timeout(timeout, async {
            let res = self.http().execute(req).await?;
            let status = res.status();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
        .await
        .map_err(|_| CallError::Timeout)?
        .map_err(|e| {
            if e.is_timeout() {
                CallError::Timeout
            } else {
                CallError::Connect(e.to_string())
            }
        })?;
        let (status, body) = res;
        if !status.is_success() {
            return Err(CallError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        http::Response::builder()
            .status(status)
            .body(body.to_vec())
            .map_err(|e| CallError::Protocol(e.to_string()))
    }

    /// Sends a ruma Application Service API request and parses the response.
    pub async fn call<R>(
        &self,
        asv: &Appservice,
        req: R,
        timeout: Duration,
    ) -> Result<R::IncomingResponse, CallError>
    where
        R: OutgoingRequest<Authentication = HomeserverToken, PathBuilder = SinglePath>,
    {
        let base = base_url(asv)?;
        let http_req = req
            .try_into_http_request::<Vec<u8>>(base, &asv.registration.hs_token, ())
            .map_err(|e| CallError::Protocol(e.to_string()))?;
        let req =
            reqwest::Request::try_from(http_req).map_err(|e| CallError::Protocol(e.to_string()))?;
        let res = self.execute(req, timeout).await?;
        let (parts, body) = res.into_parts();
        R::IncomingResponse::try_from_http_response(http::Response::from_parts(parts, &body[..]))
            .map_err(|e| CallError::Protocol(e.to_string()))
    }

    /// `PUT {url}/_matrix/app/v1/transactions/{txnId}` with a body built earlier, so that a
    /// retry sends exactly the same transaction.
    pub async fn put_transaction(
        &self,
        asv: &Appservice,
        txn_id: u64,
        body: &str,
    ) -> Result<(), CallError> {
        let url = format!("{}/_matrix/app/v1/transactions/{txn_id}", base_url(asv)?);
        let req = self
            .http()
            .put(url)
            .bearer_auth(&asv.registration.hs_token)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .build()
            .map_err(|e| CallError::Protocol(e.to_string()))?;
        self.execute(req, Duration::from_secs(60)).await.map(|_| ())
    }
}
