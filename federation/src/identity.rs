//! Identity servers, as this homeserver talks to them: binding an address an identity server
//! validated to an account (`/account/3pid/bind`), with the user's token there, and unbinding
//! it when the address is removed or the account deactivated, in a request this server signs
//! (`X-Matrix`), as the identity service API asks of homeservers. An identity server is
//! reached at `https://{id_server}` as named (no server discovery), through the federation
//! client's guarded connections.

use std::{borrow::Cow, sync::Arc, time::Duration};

use async_trait::async_trait;
use ruma::{
    api::{
        auth_scheme::AuthScheme,
        federation::authentication::{ServerSignatures, XMatrixSigningInput},
        identity_service::{
            association::{bind_3pid, unbind_3pid},
            invitation::store_invitation,
            lookup::{get_hash_parameters, lookup_3pid, IdentifierHashingAlgorithm},
            IdentityServiceToken,
        },
        path_builder::VersionHistory,
        IncomingResponseExt, MatrixVersion, OutgoingRequestExt, SupportedVersions,
    },
    room::RoomType,
    thirdparty::Medium,
    ClientSecret, OwnedUserId, ServerName, SessionId, UserId,
};
use sandcat_core::{
    ports::{AddressInvite, IdentityServers, StoredInvite},
    Error, ErrorCode, Result,
};

use crate::client::{borrowed, remote_error, FederationClient};

/// The largest answer read from an identity server.
const MAX_ANSWER: usize = 64 * 1024;
/// The most a request to an identity server may take (a client waits on it).
const TIMEOUT: Duration = Duration::from_secs(10);

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

    async fn send(
        &self,
        server: &ServerName,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>> {
        let mut request = reqwest::Request::try_from(request).map_err(Error::internal)?;
        *request.timeout_mut() = Some(TIMEOUT);
        self.client.execute(server, request, MAX_ANSWER).await
    }

    /// Sends `request` to `server` with the user's token there, and parses a successful
    /// answer; a refusal comes back as an error naming the server and its reason.
    async fn ask<R>(
        &self,
        server: &ServerName,
        token: &str,
        request: R,
    ) -> Result<R::IncomingResponse>
    where
        R: OutgoingRequestExt<Authentication = IdentityServiceToken, PathBuilder = VersionHistory>,
    {
        let request = request
            .try_into_http_request::<Vec<u8>>(
                &self.client.direct_url(server)?,
                token,
                Cow::Owned(versions()),
            )
            .map_err(|e| Error::invalid_param(format!("id_access_token: {e}")))?;
        let answer = self.send(server, request).await?;
        if !answer.status().is_success() {
            return Err(remote_error(server, answer.status(), answer.body()));
        }
        R::IncomingResponse::try_from_http_response(borrowed(&answer))
            .map_err(|e| Error::bad_json(format!("{server} answered with {e}")))
    }
}

/// An address as the hashed lookup sends it: `address medium pepper`, SHA-256, unpadded
/// URL-safe base64.
fn hashed(address: &str, medium: &str, pepper: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{address} {medium} {pepper}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
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
            bind_3pid::v2::Request::new(sid.to_owned(), secret.to_owned(), user_id.to_owned());
        let bound = self.ask(server, id_access_token, request).await?;
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
        let answer = self.send(server, request).await?;
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

    async fn lookup(
        &self,
        id_server: &str,
        id_access_token: &str,
        medium: &str,
        address: &str,
    ) -> Result<Option<OwnedUserId>> {
        let server = server_name(id_server)?;
        let parameters = self
            .ask(
                server,
                id_access_token,
                get_hash_parameters::v2::Request::new(),
            )
            .await?;
        let pepper = parameters.lookup_pepper;
        let offers = |a: IdentifierHashingAlgorithm| parameters.algorithms.contains(&a);
        let (algorithm, key) = if offers(IdentifierHashingAlgorithm::Sha256) {
            let key = hashed(address, medium, &pepper);
            (IdentifierHashingAlgorithm::Sha256, key)
        } else if offers(IdentifierHashingAlgorithm::None) {
            (
                IdentifierHashingAlgorithm::None,
                format!("{address} {medium}"),
            )
        } else {
            return Err(Error::matrix(
                ErrorCode::Unknown,
                format!("{server} offers no lookup algorithm this server speaks"),
            ));
        };
        let request = lookup_3pid::v2::Request::new(algorithm, pepper, vec![key.clone()]);
        let found = self.ask(server, id_access_token, request).await?;
        Ok(found.mappings.get(&key).cloned())
    }

    async fn store_invite(
        &self,
        id_server: &str,
        id_access_token: &str,
        invite: &AddressInvite,
    ) -> Result<StoredInvite> {
        let server = server_name(id_server)?;
        let mut request = store_invitation::v2::Request::new(
            Medium::from(invite.medium.as_str()),
            invite.address.clone(),
            invite.room_id.clone(),
            invite.sender.clone(),
        );
        request.room_name = invite.room_name.clone();
        request.room_join_rules = invite.room_join_rules.clone();
        request.room_type = invite.room_type.as_deref().map(RoomType::from);
        request.sender_display_name = invite.sender_display_name.clone();
        request.room_alias = invite.room_alias.as_deref().and_then(|a| a.try_into().ok());
        request.room_avatar_url = invite.room_avatar_url.as_deref().map(Into::into);
        request.sender_avatar_url = invite.sender_avatar_url.as_deref().map(Into::into);
        let kept = self.ask(server, id_access_token, request).await?;
        let keys = [kept.public_keys.server_key, kept.public_keys.ephemeral_key];
        Ok(StoredInvite {
            token: kept.token,
            display_name: kept.display_name,
            public_keys: keys
                .into_iter()
                .map(|k| (k.public_key.0, k.key_validity_url))
                .collect(),
        })
    }
}
