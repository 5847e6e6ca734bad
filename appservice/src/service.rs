//! What the Client-Server API asks of application services: who an `as_token` acts as,
//! whether a user id or alias is reserved, and the queries forwarded to a service.

use std::{sync::Arc, time::Duration};

use ruma::{
    api::appservice::{ping::send_ping, query, thirdparty},
    OwnedTransactionId, RoomAliasId, UserId,
};
use sandcat_core::{
    ports::{UserRecord, UserStore},
    services::Session,
    Error, ErrorCode, Result,
};
use serde_json::Value;

use crate::{client::AsClient, registration::Appservice, registry::Registry};

const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Appservices {
    registry: Arc<Registry>,
    client: AsClient,
    users: Arc<dyn UserStore>,
}

impl Appservices {
    pub fn new(registry: Arc<Registry>, users: Arc<dyn UserStore>) -> Self {
        Appservices {
            registry,
            client: AsClient::default(),
            users,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn client(&self) -> &AsClient {
        &self.client
    }

    /// Creates the `sender_localpart` user of every service that lacks one.
    pub async fn ensure_senders(&self) -> Result<()> {
        for asv in self.registry.all().iter() {
            if self.users.user(&asv.sender).await?.is_none() {
                let created = self
                    .users
                    .create_user(&UserRecord {
                        user_id: asv.sender.clone(),
                        password_hash: None,
                        displayname: Some(asv.sender.localpart().to_owned()),
                        avatar_url: None,
                        deactivated: false,
                    })
                    .await;
                match created {
                    Ok(()) => {
                        tracing::info!(user_id = %asv.sender, "application service sender created")
                    }
                    Err(Error::Matrix {
                        code: ErrorCode::UserInUse,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The session an `as_token` request acts as: `user_id` (identity assertion) or the
    /// sender, optionally on one of that user's devices (MSC3202 `device_id`).
    pub async fn session(
        &self,
        asv: &Appservice,
        user_id: Option<&str>,
        device_id: Option<&str>,
        must_exist: bool,
    ) -> Result<Session> {
        let user_id = match user_id {
            Some(u) => UserId::parse(u)
                .map_err(|_| Error::invalid_param("user_id is not a valid user id"))?,
            None => asv.sender.clone(),
        };
        if !asv.owns_user(&user_id) {
            return Err(Error::forbidden(format!(
                "{user_id} is outside the namespace of application service {}",
                asv.id()
            )));
        }
        if must_exist && user_id != asv.sender && self.users.user(&user_id).await?.is_none() {
            return Err(Error::forbidden(format!(
                "application service has not registered {user_id}"
            )));
        }
        let device_id = match device_id {
            Some(d) => {
                if !self
                    .users
                    .devices(&user_id)
                    .await?
                    .iter()
                    .any(|dev| dev.device_id == d)
                {
                    return Err(Error::forbidden(format!("{user_id} has no device {d}")));
                }
                d.to_owned()
            }
            None => String::new(),
        };
        let mut session = Session::new(user_id, device_id);
        session.appservice = Some(asv.id().to_owned());
        Ok(session)
    }

    /// Refuses a user id another party reserved (`M_EXCLUSIVE`). `by` is the caller's service.
    pub fn check_user_claim(&self, user_id: &UserId, by: Option<&str>) -> Result<()> {
        match self.registry.exclusive_user_owner(user_id) {
            Some(owner) if Some(owner.id()) != by => Err(Error::matrix(
                ErrorCode::Exclusive,
                format!("{user_id} is reserved by an application service"),
            )),
            _ => Ok(()),
        }
    }

    pub fn check_alias_claim(&self, alias: &RoomAliasId, by: Option<&str>) -> Result<()> {
        match self.registry.exclusive_alias_owner(alias) {
            Some(owner) if Some(owner.id()) != by => Err(Error::matrix(
                ErrorCode::Exclusive,
                format!("{alias} is reserved by an application service"),
            )),
            _ => Ok(()),
        }
    }

    /// Asks the services whose namespace holds `user_id` whether it exists (they create it
    /// before answering). True if one said yes.
    pub async fn query_user(&self, user_id: &UserId) -> bool {
        for asv in self.registry.all().iter().filter(|a| a.owns_user(user_id)) {
            let req = query::query_user_id::v1::Request::new(user_id.to_owned());
            match self.client.call(asv, req, QUERY_TIMEOUT).await {
                Ok(_) => return true,
                Err(e) => tracing::debug!(id = asv.id(), %user_id, error = %e, "user query"),
            }
        }
        false
    }

    /// Asks the services whose namespace holds `alias` whether it exists (they create the room
    /// and the alias before answering). True if one said yes.
    pub async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        for asv in self.registry.all().iter().filter(|a| a.owns_alias(alias)) {
            let req = query::query_room_alias::v1::Request::new(alias.to_owned());
            match self.client.call(asv, req, QUERY_TIMEOUT).await {
                Ok(_) => return true,
                Err(e) => tracing::debug!(id = asv.id(), %alias, error = %e, "alias query"),
            }
        }
        false
    }

    /// `POST /_matrix/client/v1/appservice/{id}/ping`: pings the service, returns the round
    /// trip in milliseconds.
    pub async fn ping(
        &self,
        session: &Session,
        appservice_id: &str,
        transaction_id: Option<OwnedTransactionId>,
    ) -> Result<u64> {
        let asv = self
            .registry
            .by_id(appservice_id)
            .filter(|a| session.appservice.as_deref() == Some(a.id()))
            .ok_or_else(|| {
                Error::forbidden("the access token is not that application service's")
            })?;
        let mut req = send_ping::v1::Request::new();
        req.transaction_id = transaction_id;
        let start = std::time::Instant::now();
        self.client.call(&asv, req, Duration::from_secs(15)).await?;
        Ok(start.elapsed().as_millis() as u64)
    }

    fn with_protocol(&self, protocol: &str) -> Vec<Arc<Appservice>> {
        self.registry
            .all()
            .iter()
            .filter(|a| {
                a.registration
                    .protocols
                    .as_ref()
                    .is_some_and(|p| p.iter().any(|x| x == protocol))
            })
            .cloned()
            .collect()
    }

    /// Every protocol any service declares, with the metadata the first one answering gives.
    pub async fn protocols(&self) -> Vec<(String, Value)> {
        let mut names: Vec<String> = self
            .registry
            .all()
            .iter()
            .flat_map(|a| a.registration.protocols.clone().unwrap_or_default())
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            if let Ok(p) = self.protocol(&name).await {
                out.push((name, p));
            }
        }
        out
    }

    /// `GET /thirdparty/protocol/{protocol}`.
    pub async fn protocol(&self, protocol: &str) -> Result<Value> {
        for asv in self.with_protocol(protocol) {
            let req = thirdparty::get_protocol::v1::Request::new(protocol.to_owned());
            match self.client.call(&asv, req, QUERY_TIMEOUT).await {
                Ok(res) => {
                    return serde_json::to_value(&res.protocol)
                        .map_err(|e| Error::internal(e.to_string()))
                }
                Err(e) => tracing::debug!(id = asv.id(), protocol, error = %e, "protocol query"),
            }
        }
        Err(Error::not_found(format!(
            "no application service offers {protocol}"
        )))
    }

    /// `GET /thirdparty/location/{protocol}` and `/thirdparty/user/{protocol}`: the answers of
    /// every service of the protocol, concatenated.
    pub async fn protocol_lookup(
        &self,
        protocol: &str,
        users: bool,
        fields: std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<Value>> {
        let services = self.with_protocol(protocol);
        if services.is_empty() {
            return Err(Error::not_found(format!(
                "no application service offers {protocol}"
            )));
        }
        let mut out = Vec::new();
        for asv in services {
            let found = if users {
                let mut req =
                    thirdparty::get_user_for_protocol::v1::Request::new(protocol.to_owned());
                req.fields = fields.clone();
                self.client
                    .call(&asv, req, QUERY_TIMEOUT)
                    .await
                    .map(|r| serde_json::to_value(r.users))
            } else {
                let mut req =
                    thirdparty::get_location_for_protocol::v1::Request::new(protocol.to_owned());
                req.fields = fields.clone();
                self.client
                    .call(&asv, req, QUERY_TIMEOUT)
                    .await
                    .map(|r| serde_json::to_value(r.locations))
            };
            match found {
                Ok(Ok(Value::Array(items))) => out.extend(items),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(id = asv.id(), protocol, error = %e, "third-party lookup")
                }
            }
        }
        Ok(out)
    }

    /// `GET /thirdparty/location?alias=` and `/thirdparty/user?userid=`: asked of every
    /// service with protocols.
    pub async fn reverse_lookup(
        &self,
        alias: Option<&RoomAliasId>,
        user: Option<&UserId>,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for asv in self.registry.all().iter().filter(|a| {
            a.registration
                .protocols
                .as_ref()
                .is_some_and(|p| !p.is_empty())
        }) {
            let found = match (alias, user) {
                (Some(a), _) => self
                    .client
                    .call(
                        asv,
                        thirdparty::get_location_for_room_alias::v1::Request::new(a.to_owned()),
                        QUERY_TIMEOUT,
                    )
                    .await
                    .map(|r| serde_json::to_value(r.locations)),
                (None, Some(u)) => self
                    .client
                    .call(
                        asv,
                        thirdparty::get_user_for_user_id::v1::Request::new(u.to_owned()),
                        QUERY_TIMEOUT,
                    )
                    .await
                    .map(|r| serde_json::to_value(r.users)),
                (None, None) => {
                    return Err(Error::matrix(
                        ErrorCode::MissingParam,
                        "alias or userid is required",
                    ))
                }
            };
            match found {
                Ok(Ok(Value::Array(items))) => out.extend(items),
                Ok(_) => {}
                Err(e) => tracing::debug!(id = asv.id(), error = %e, "third-party reverse lookup"),
            }
        }
        Ok(out)
    }
}
