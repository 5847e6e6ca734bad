//! Identity servers, as this homeserver talks to them: binding an address an identity server
//! validated to an account (`/account/3pid/bind`), with the user's token there, and unbinding
//! it when the address is removed or the account deactivated, in a request this server signs
//! (`X-Matrix`), as the identity service API asks of homeservers. An identity server is
//! reached at `https://{id_server}` as named (no server discovery), through the federation
//! client's guarded connections.

use std::{borrow::Cow, sync::Arc};

use async_trait::async_trait;
use ruma::{
    api::{
        auth_scheme::AuthScheme,
        federation::authentication::{ServerSignatures, XMatrixSigningInput},
        identity_service::association::{bind_3pid, unbind_3pid},
        IncomingResponseExt, MatrixVersion, OutgoingRequestExt, SupportedVersions,
    },
    thirdparty::Medium,
    ClientSecret, ServerName, SessionId, UserId,
};
use sandcat_core::{ports::IdentityServers, Error, Result};

use crate::client::{borrowed, remote_error, FederationClient};

/// The largest answer read from an identity server.
const MAX_ANSWER: usize = 64 * 1024;

/// The identity service API version the requests are built for.
fn versions() -> SupportedVersions {
    SupportedVersions {
        versions: [MatrixVersion::V1_0].into(),
        features: Default::default(),
    }
}

pub struct IdentityClient {
    client: Arc<FederationClient>,
}

impl IdentityClient {
    pub fn new(client: Arc<FederationClient>) -> Self {
        IdentityClient { client }
    }

    async fn post(
        &self,
        server: &ServerName,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>> {
        let request = reqwest::Request::try_from(request).map_err(Error::internal)?;
        self.client.execute(server, request, MAX_ANSWER).await
    }
}

fn server_name(id_server: &str) -> Result<&ServerName> {
    <&ServerName>::try_from(id_server)
        .map_err(|e| Error::invalid_param(format!("id_server {id_server:?}: {e}")))
}

#[async_trait]
impl IdentityServers for IdentityClient {
    async fn bind(
        &self,
        id_server: &str,
        id_access_token: &str,
        sid: &str,
        client_secret: &str,
        user_id: &UserId,
    ) -> Result<(String, String)> {
        let server = server_name(id_server)?;
        let sid =
            <&SessionId>::try_from(sid).map_err(|e| Error::invalid_param(format!("sid: {e}")))?;
        let secret = <&ClientSecret>::try_from(client_secret)
            .map_err(|e| Error::invalid_param(format!("client_secret: {e}")))?;
        let request =
            bind_3pid::v2::Request::new(sid.to_owned(), secret.to_owned(), user_id.to_owned())
                .try_into_http_request::<Vec<u8>>(
                    &self.client.direct_url(server)?,
                    id_access_token,
                    Cow::Owned(versions()),
                )
                .map_err(|e| Error::invalid_param(format!("id_access_token: {e}")))?;
        let answer = self.post(server, request).await?;
        if !answer.status().is_success() {
            return Err(remote_error(server, answer.status(), answer.body()));
        }
        let bound = bind_3pid::v2::Response::try_from_http_response(borrowed(&answer))
            .map_err(|e| Error::bad_json(format!("{server} answered a bind with {e}")))?;
        if bound.mxid != user_id {
            return Err(Error::forbidden(format!(
                "{server} bound the address to {} instead",
                bound.mxid
            )));
        }
        Ok((bound.medium.as_str().to_owned(), bound.address))
    }

    async fn unbind(
        &self,
        id_server: &str,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<bool> {
        let server = server_name(id_server)?;
        let threepid = unbind_3pid::v2::ThirdPartyId::new(Medium::from(medium), address.to_owned());
        // ruma types the endpoint for a client's identity-server token; a homeserver signs
        // the request instead, and the signature replaces the token.
        let mut request = unbind_3pid::v2::Request::new(None, user_id.to_owned(), threepid)
            .try_into_http_request::<Vec<u8>>(
                &self.client.direct_url(server)?,
                "signed",
                Cow::Owned(versions()),
            )
            .map_err(Error::internal)?;
        let signing = self.client.signing();
        ServerSignatures::add_authentication(
            &mut request,
            XMatrixSigningInput::new(signing.server_name.clone(), server.to_owned(), &signing.key),
        )
        .map_err(Error::internal)?;
        let answer = self.post(server, request).await?;
        let status = answer.status();
        match status.as_u16() {
            200..=299 => Ok(true),
            // The identity server does not unbind for homeservers (as Synapse reads it).
            400 | 404 | 501 => {
                tracing::info!(%server, %status, "the identity server does not unbind");
                Ok(false)
            }
            _ => Err(remote_error(server, status, answer.body())),
        }
    }
}
