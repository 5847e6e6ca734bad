//! Registration, login, logout, whoami, passwords, devices and profiles.

use axum::{extract::State, response::IntoResponse};
use ruma::{
    api::client::{
        account::{
            change_password, check_registration_token_validity, deactivate,
            get_username_availability, register, request_openid_token, whoami,
        },
        admin::get_user_info,
        device::{delete_device, delete_devices, get_device, get_devices, update_device, Device},
        profile::{
            delete_profile_field, get_avatar_url, get_display_name, get_profile, get_profile_field,
            set_avatar_url, set_display_name, set_profile_field,
        },
        session::{get_login_token, get_login_types, login, logout, logout_all, refresh_token},
        uiaa::{AuthData, ThirdpartyIdCredentials, UserIdentifier},
    },
    MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt, UserId,
};
use std::time::Duration;

use sandcat_core::{
    ports::{DeviceRecord, ValidationPurpose},
    services::{accounts::NewDevice, registration_tokens::TakenToken, Session},
    Error, ErrorCode,
};
use serde_json::json;

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    uiaa::{self, identifier_user, UiaaError},
    AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<register::v3::Request, _, _>(register)
        .ruma::<get_username_availability::v3::Request, _, _>(available)
        .ruma::<check_registration_token_validity::v1::Request, _, _>(token_validity)
        .ruma::<get_login_types::v3::Request, _, _>(login_types)
        .ruma::<login::v3::Request, _, _>(login)
        .ruma::<refresh_token::v3::Request, _, _>(refresh)
        .ruma::<get_login_token::v1::Request, _, _>(login_token)
        .ruma::<logout::v3::Request, _, _>(logout)
        .ruma::<logout_all::v3::Request, _, _>(logout_all)
        .ruma::<whoami::v3::Request, _, _>(whoami)
        .ruma::<change_password::v3::Request, _, _>(change_password)
        .ruma::<deactivate::v3::Request, _, _>(deactivate_account)
        .ruma::<get_devices::v3::Request, _, _>(devices)
        .ruma::<get_device::v3::Request, _, _>(device)
        .ruma::<update_device::v3::Request, _, _>(update_device)
        .ruma::<delete_device::v3::Request, _, _>(delete_device)
        .ruma::<delete_devices::v3::Request, _, _>(delete_devices)
        .ruma::<get_profile::v3::Request, _, _>(profile)
        .ruma::<get_display_name::v3::Request, _, _>(displayname)
        .ruma::<set_display_name::v3::Request, _, _>(set_displayname)
        .ruma::<get_avatar_url::v3::Request, _, _>(avatar_url)
        .ruma::<set_avatar_url::v3::Request, _, _>(set_avatar_url)
        .ruma::<get_profile_field::v3::Request, _, _>(profile_field)
        .ruma::<set_profile_field::v3::Request, _, _>(set_profile_field)
        .ruma::<delete_profile_field::v3::Request, _, _>(delete_profile_field)
        .ruma::<request_openid_token::v3::Request, _, _>(openid_token)
        .ruma::<get_user_info::v3::Request, _, _>(whois)
}

/// GET /_matrix/client/v3/admin/whois/{userId}
async fn whois(
    State(s): State<AppState>,
    req: Ruma<get_user_info::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let user_id = &req.body.user_id;
    let devices: serde_json::Map<String, serde_json::Value> = s
        .accounts
        .whois(req.session()?, user_id)
        .await?
        .into_iter()
        .map(|d| {
            let connections: Vec<serde_json::Value> = d
                .last_seen_ts
                .map(|ts| json!({ "ip": d.last_seen_ip, "last_seen": ts }))
                .into_iter()
                .collect();
            let sessions = json!([{ "connections": connections }]);
            (d.device_id, json!({ "sessions": sessions }))
        })
        .collect();
    Ok(axum::Json(json!({ "user_id": user_id, "devices": devices })).into_response())
}

/// POST /_matrix/client/v3/user/{userId}/openid/request_token
async fn openid_token(
    State(s): State<AppState>,
    req: Ruma<request_openid_token::v3::Request>,
) -> ApiResult<request_openid_token::v3::Response> {
    let token = s
        .openid
        .request_token(req.session()?, &req.body.user_id)
        .await?;
    Ok(RumaResponse(request_openid_token::v3::Response::new(
        token.access_token,
        ruma::authentication::TokenType::Bearer,
        token.matrix_server_name,
        std::time::Duration::from_secs(token.expires_in_secs),
    )))
}

/// POST /_matrix/client/v3/register
async fn register(
    State(s): State<AppState>,
    req: Ruma<register::v3::Request>,
) -> Result<axum::response::Response, UiaaError> {
    let session = req.session;
    let body = req.body;
    if body.kind == register::RegistrationKind::Guest {
        return Err(Error::matrix(
            ErrorCode::GuestAccessForbidden,
            "guest access is not enabled on this server",
        )
        .into());
    }
    let appservice = session.as_ref().and_then(|s| s.appservice.clone());
    let as_login = body.login_type == Some(register::LoginType::ApplicationService);
    if as_login && appservice.is_none() {
        return Err(Error::forbidden(
            "m.login.application_service needs an application service's token",
        )
        .into());
    }
    if !as_login && !s.config.registration_enabled {
        return Err(Error::forbidden("registration is disabled on this server").into());
    }
    let localpart = match &body.username {
        Some(u) => u.to_lowercase(),
        None => sandcat_core::token::device_id().to_lowercase(),
    };
    // Check the name before asking for authentication, as Synapse does.
    let wanted = s.accounts.check_available(&localpart).await?;
    let user_id = if let (true, Some(as_id)) = (as_login, appservice.as_deref()) {
        let asv = s
            .appservices
            .registry()
            .by_id(as_id)
            .ok_or_else(|| Error::forbidden("unknown application service"))?;
        if !asv.owns_user(&wanted) {
            return Err(Error::matrix(
                ErrorCode::Exclusive,
                format!("{wanted} is outside the namespace of the application service"),
            )
            .into());
        }
        s.accounts.create_user(&localpart, None).await?
    } else {
        s.appservices.check_user_claim(&wanted, None)?;
        let (taken, email) = if s.registration.required() {
            (Some(take_registration_token(&s, &body.auth).await?), None)
        } else {
            (None, open_registration_stage(&s, &body.auth).await?)
        };
        let password = body.password.as_deref().filter(|p| !p.is_empty());
        let made = match password {
            Some(p) => s.accounts.create_user(&localpart, Some(p)).await,
            None => Err(Error::matrix(
                ErrorCode::MissingParam,
                "password is required",
            )),
        };
        let user = match (made, taken) {
            (Ok(user), Some(t)) => {
                t.keep();
                user
            }
            (Ok(user), None) => user,
            (Err(e), Some(t)) => {
                t.give_back().await?;
                return Err(e.into());
            }
            (Err(e), None) => return Err(e.into()),
        };
        if let Some(creds) = email {
            s.threepids
                .add_to_account(
                    &user,
                    creds.sid.as_str(),
                    creds.client_secret.as_str(),
                    ValidationPurpose::Register,
                )
                .await?;
        }
        user
    };
    let mut resp = register::v3::Response::new(user_id.clone());
    if !body.inhibit_login {
        let device = NewDevice {
            device_id: body.device_id.map(|d| d.to_string()),
            display_name: body.initial_device_display_name.as_deref(),
            refresh: body.refresh_token,
        };
        let login = s.accounts.login_new_device(&user_id, device).await?;
        resp.access_token = Some(login.access_token);
        resp.device_id = Some(OwnedDeviceId::from(login.device_id));
        resp.refresh_token = login.refresh_token;
        resp.expires_in = login.expires_in_ms.map(Duration::from_millis);
    }
    Ok(RumaResponse(resp).into_response())
}

/// The `m.login.registration_token` stage: the token, counted against its uses, or the 401
/// that asks for one (again, with the reason, when the one given does not work).
async fn take_registration_token<'a>(
    s: &'a AppState,
    auth: &Option<AuthData>,
) -> Result<TakenToken<'a>, UiaaError> {
    const STAGE: &str = "m.login.registration_token";
    let Some(AuthData::RegistrationToken(given)) = auth else {
        return Err(UiaaError::challenge(s.uiaa.challenge(STAGE, None)));
    };
    s.registration.take(&given.token).await.map_err(|e| {
        UiaaError::challenge(
            s.uiaa
                .challenge(STAGE, Some(("M_FORBIDDEN", &e.to_string()))),
        )
    })
}

/// The stage of open registration: `m.login.dummy`, or — when this server mails —
/// `m.login.email.identity`, whose validated address joins the new account. An address not
/// validated yet gets the challenge again, with the reason (clients poll until it is).
async fn open_registration_stage(
    s: &AppState,
    auth: &Option<AuthData>,
) -> Result<Option<ThirdpartyIdCredentials>, UiaaError> {
    const DUMMY: &str = "m.login.dummy";
    let stages: &[&str] = if s.threepids.email_enabled() {
        &[DUMMY, uiaa::EMAIL_STAGE]
    } else {
        &[DUMMY]
    };
    match auth {
        Some(AuthData::Dummy(_)) => Ok(None),
        Some(AuthData::EmailIdentity(e)) if s.threepids.email_enabled() => {
            let c = &e.thirdparty_id_creds;
            let checked = s
                .threepids
                .validated(
                    c.sid.as_str(),
                    c.client_secret.as_str(),
                    ValidationPurpose::Register,
                )
                .await;
            uiaa::threepid_checked(s, stages, checked)?;
            Ok(Some(c.clone()))
        }
        _ => Err(UiaaError::challenge(s.uiaa.challenge_any(stages, None))),
    }
}

/// GET /_matrix/client/v1/register/m.login.registration_token/validity
async fn token_validity(
    State(s): State<AppState>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<check_registration_token_validity::v1::Response> {
    let valid = s.registration.is_valid(&req.body.token).await?;
    Ok(RumaResponse(
        check_registration_token_validity::v1::Response::new(valid),
    ))
}

/// GET /_matrix/client/v3/register/available
async fn available(
    State(s): State<AppState>,
    req: Ruma<get_username_availability::v3::Request>,
) -> ApiResult<get_username_availability::v3::Response> {
    let user_id = s
        .accounts
        .check_available(&req.body.username.to_lowercase())
        .await?;
    s.appservices.check_user_claim(&user_id, None)?;
    Ok(RumaResponse(get_username_availability::v3::Response::new(
        true,
    )))
}

/// GET /_matrix/client/v3/login
async fn login_types(
    State(s): State<AppState>,
    _: Ruma<get_login_types::v3::Request>,
) -> ApiResult<get_login_types::v3::Response> {
    use get_login_types::v3::{
        ApplicationServiceLoginType, IdentityProvider, IdentityProviderBrand, LoginType,
        PasswordLoginType, SsoLoginType, TokenLoginType,
    };
    let mut token = TokenLoginType::new();
    token.get_login_token = true;
    let mut types = vec![
        LoginType::Password(PasswordLoginType::new()),
        LoginType::Token(token),
        LoginType::ApplicationService(ApplicationServiceLoginType::new()),
    ];
    let providers: Vec<IdentityProvider> = s
        .config
        .sign_in_providers
        .iter()
        .map(|id| {
            let (name, brand) = match id.as_str() {
                "github" => ("GitHub", IdentityProviderBrand::GitHub),
                "google" => ("Google", IdentityProviderBrand::Google),
                other => (other, IdentityProviderBrand::from(other)),
            };
            let mut p = IdentityProvider::new(id.clone(), name.to_owned());
            p.brand = Some(brand);
            p
        })
        .collect();
    if !providers.is_empty() {
        let mut sso = SsoLoginType::new();
        sso.identity_providers = providers;
        types.push(LoginType::Sso(sso));
    }
    Ok(RumaResponse(get_login_types::v3::Response::new(types)))
}

/// POST /_matrix/client/v3/login
async fn login(
    State(s): State<AppState>,
    req: Ruma<login::v3::Request>,
) -> ApiResult<login::v3::Response> {
    let session = req.session;
    let body = req.body;
    let device = NewDevice {
        device_id: body.device_id.map(|d| d.to_string()),
        display_name: body.initial_device_display_name.as_deref(),
        refresh: body.refresh_token,
    };
    let result = match &body.login_info {
        login::v3::LoginInfo::Password(p) => {
            let user = match &p.identifier {
                Some(UserIdentifier::Email(e)) => s
                    .threepids
                    .owner(&e.address.trim().to_lowercase())
                    .await?
                    .map(|u| u.to_string()),
                Some(id) => identifier_user(id).map(str::to_owned),
                None => None,
            }
            .ok_or_else(|| Error::forbidden("invalid username or password"))?;
            s.accounts
                .login_password(&user, &p.password, device)
                .await?
        }
        login::v3::LoginInfo::Token(t) => s.accounts.login_with_token(&t.token, device).await?,
        login::v3::LoginInfo::ApplicationService(a) => {
            let asv = session
                .as_ref()
                .and_then(|s| s.appservice.as_deref())
                .and_then(|id| s.appservices.registry().by_id(id))
                .ok_or_else(|| {
                    Error::forbidden(
                        "m.login.application_service needs an application service's token",
                    )
                })?;
            let user = a
                .identifier
                .as_ref()
                .and_then(identifier_user)
                .ok_or_else(|| Error::matrix(ErrorCode::MissingParam, "identifier is required"))?;
            let user_id = s.accounts.user_id_from(user)?;
            if !asv.owns_user(&user_id) {
                return Err(Error::forbidden(format!(
                    "{user_id} is outside the namespace of the application service"
                ))
                .into());
            }
            if !s.accounts.exists(&user_id).await? {
                return Err(Error::forbidden(format!("{user_id} is not registered")).into());
            }
            s.accounts.login_new_device(&user_id, device).await?
        }
        _ => return Err(Error::matrix(
            ErrorCode::Unknown,
            "only m.login.password, m.login.token and m.login.application_service are supported",
        )
        .into()),
    };
    let mut resp = login::v3::Response::new(
        result.user_id,
        result.access_token,
        OwnedDeviceId::from(result.device_id),
    );
    resp.refresh_token = result.refresh_token;
    resp.expires_in = result.expires_in_ms.map(Duration::from_millis);
    #[allow(deprecated)]
    {
        resp.home_server = Some(s.config.server_name.clone());
    }
    Ok(RumaResponse(resp))
}

/// POST /_matrix/client/v1/login/get_token: a single-use token for signing in another
/// device, after the user's password (user-interactive auth).
async fn login_token(
    State(s): State<AppState>,
    req: Ruma<get_login_token::v1::Request>,
) -> Result<axum::response::Response, UiaaError> {
    let session = req.session()?;
    uiaa::password_stage(&s, session, &req.body.auth).await?;
    let (token, ttl_ms) = s.accounts.issue_login_token(session).await?;
    Ok(RumaResponse(get_login_token::v1::Response::new(
        Duration::from_millis(ttl_ms),
        token,
    ))
    .into_response())
}

/// POST /_matrix/client/v3/refresh
async fn refresh(
    State(s): State<AppState>,
    req: Ruma<refresh_token::v3::Request>,
) -> ApiResult<refresh_token::v3::Response> {
    let fresh = s.accounts.refresh(&req.body.refresh_token).await?;
    let mut resp = refresh_token::v3::Response::new(fresh.access_token);
    resp.refresh_token = fresh.refresh_token;
    resp.expires_in_ms = fresh.expires_in_ms.map(Duration::from_millis);
    Ok(RumaResponse(resp))
}

/// POST /_matrix/client/v3/logout
async fn logout(
    State(s): State<AppState>,
    req: Ruma<logout::v3::Request>,
) -> ApiResult<logout::v3::Response> {
    s.accounts.logout(req.session()?).await?;
    Ok(RumaResponse(logout::v3::Response::new()))
}

/// POST /_matrix/client/v3/logout/all
async fn logout_all(
    State(s): State<AppState>,
    req: Ruma<logout_all::v3::Request>,
) -> ApiResult<logout_all::v3::Response> {
    s.accounts.logout_all(&req.session()?.user_id).await?;
    Ok(RumaResponse(logout_all::v3::Response::new()))
}

/// GET /_matrix/client/v3/account/whoami
async fn whoami(req: Ruma<whoami::v3::Request>) -> ApiResult<whoami::v3::Response> {
    let s = req.session()?;
    let mut resp = whoami::v3::Response::new(s.user_id.clone(), false);
    resp.device_id = (!s.device_id.is_empty()).then(|| OwnedDeviceId::from(s.device_id.clone()));
    Ok(RumaResponse(resp))
}

/// POST /_matrix/client/v3/account/deactivate — with the access token and the password
/// stage, or with the password stage alone naming the user. An application service
/// deactivates its users without one.
async fn deactivate_account(
    State(s): State<AppState>,
    req: Ruma<deactivate::v3::Request>,
) -> Result<axum::response::Response, UiaaError> {
    let session = match req.session.clone() {
        Some(session) if session.appservice.is_some() => session,
        Some(session) => {
            uiaa::password_stage(&s, &session, &req.body.auth).await?;
            session
        }
        None => {
            let user = match &req.body.auth {
                Some(AuthData::Password(p)) => identifier_user(&p.identifier)
                    .map(|u| s.accounts.user_id_from(u))
                    .transpose()?,
                _ => None,
            };
            let Some(user) = user else {
                return Err(UiaaError::challenge(
                    s.uiaa.challenge("m.login.password", None),
                ));
            };
            let session = Session::new(user, String::new());
            uiaa::password_stage(&s, &session, &req.body.auth).await?;
            session
        }
    };
    let unbound = s
        .deactivation
        .deactivate(&session.user_id, req.body.erase)
        .await?;
    Ok(RumaResponse(deactivate::v3::Response::new(
        crate::routes::threepid::removal_status(unbound),
    ))
    .into_response())
}

/// POST /_matrix/client/v3/account/password
async fn change_password(
    State(s): State<AppState>,
    req: Ruma<change_password::v3::Request>,
) -> Result<axum::response::Response, UiaaError> {
    let body = &req.body;
    match (&req.session, &body.auth) {
        (Some(session), auth) => {
            uiaa::password_stage(&s, session, auth).await?;
            s.accounts
                .change_password(session, &body.new_password, body.logout_devices)
                .await?;
        }
        // A forgotten password: the address the reset mail went to proves the account.
        (None, Some(AuthData::EmailIdentity(e))) if s.threepids.email_enabled() => {
            let c = &e.thirdparty_id_creds;
            let reset = s
                .threepids
                .reset_password(
                    c.sid.as_str(),
                    c.client_secret.as_str(),
                    &body.new_password,
                    body.logout_devices,
                )
                .await
                .map(|_| ());
            uiaa::threepid_checked(&s, &[uiaa::EMAIL_STAGE], reset)?;
        }
        (None, _) if s.threepids.email_enabled() => {
            return Err(UiaaError::challenge(
                s.uiaa.challenge(uiaa::EMAIL_STAGE, None),
            ))
        }
        (None, _) => {
            return Err(Error::matrix(
                ErrorCode::MissingToken,
                "an access token is needed to change the password",
            )
            .into())
        }
    }
    Ok(RumaResponse(change_password::v3::Response::new()).into_response())
}

/// A device as the spec shows it: what is not known is absent (ruma's `Device` would write
/// `null`).
fn device_out(d: DeviceRecord) -> serde_json::Value {
    let mut dev = Device::new(OwnedDeviceId::from(d.device_id));
    dev.display_name = d.display_name;
    dev.last_seen_ip = d.last_seen_ip;
    dev.last_seen_ts = d
        .last_seen_ts
        .and_then(UInt::new)
        .map(MilliSecondsSinceUnixEpoch);
    crate::routes::present(serde_json::to_value(dev).unwrap_or_default())
}

/// GET /_matrix/client/v3/devices
async fn devices(
    State(s): State<AppState>,
    req: Ruma<get_devices::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let list = s.accounts.devices(&req.session()?.user_id).await?;
    let devices: Vec<serde_json::Value> = list.into_iter().map(device_out).collect();
    Ok(axum::Json(json!({ "devices": devices })).into_response())
}

/// GET /_matrix/client/v3/devices/{deviceId}
async fn device(
    State(s): State<AppState>,
    req: Ruma<get_device::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let d = s
        .accounts
        .device(&req.session()?.user_id, req.body.device_id.as_str())
        .await?;
    Ok(axum::Json(device_out(d)).into_response())
}

/// PUT /_matrix/client/v3/devices/{deviceId}
async fn update_device(
    State(s): State<AppState>,
    req: Ruma<update_device::v3::Request>,
) -> ApiResult<update_device::v3::Response> {
    s.accounts
        .update_device(
            &req.session()?.user_id,
            req.body.device_id.as_str(),
            req.body.display_name.as_deref(),
        )
        .await?;
    Ok(RumaResponse(update_device::v3::Response::new()))
}

/// DELETE /_matrix/client/v3/devices/{deviceId}
async fn delete_device(
    State(s): State<AppState>,
    req: Ruma<delete_device::v3::Request>,
) -> Result<axum::response::Response, UiaaError> {
    let session = req.session()?.clone();
    s.accounts
        .device(&session.user_id, req.body.device_id.as_str())
        .await?;
    uiaa::password_stage(&s, &session, &req.body.auth).await?;
    s.accounts
        .delete_devices(&session.user_id, &[req.body.device_id.to_string()])
        .await?;
    Ok(RumaResponse(delete_device::v3::Response::new()).into_response())
}

/// POST /_matrix/client/v3/delete_devices
async fn delete_devices(
    State(s): State<AppState>,
    req: Ruma<delete_devices::v3::Request>,
) -> Result<axum::response::Response, UiaaError> {
    let session = req.session()?.clone();
    uiaa::password_stage(&s, &session, &req.body.auth).await?;
    let ids: Vec<String> = req.body.devices.iter().map(|d| d.to_string()).collect();
    s.accounts.delete_devices(&session.user_id, &ids).await?;
    Ok(RumaResponse(delete_devices::v3::Response::new()).into_response())
}

async fn profile_of(
    s: &AppState,
    user_id: &UserId,
) -> Result<sandcat_core::ports::UserRecord, Error> {
    if let Some(u) = s.accounts.user(user_id).await? {
        return Ok(u);
    }
    if user_id.server_name() != s.config.server_name {
        let (displayname, avatar_url) = s.rooms.remote_profile(user_id).await?;
        return Ok(sandcat_core::ports::UserRecord {
            user_id: user_id.to_owned(),
            password_hash: None,
            displayname,
            avatar_url,
            deactivated: false,
        });
    }
    super::appservice::user_known(s, user_id).await?;
    s.accounts
        .user(user_id)
        .await?
        .ok_or_else(|| Error::not_found("profile not found"))
}

/// GET /_matrix/client/v3/profile/{userId}
async fn profile(
    State(s): State<AppState>,
    req: Ruma<get_profile::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let u = profile_of(&s, &req.body.user_id).await?;
    let mut body = json!({});
    if let Some(d) = u.displayname {
        sandcat_core::json::set(&mut body, "displayname", json!(d));
    }
    if let Some(a) = u.avatar_url {
        sandcat_core::json::set(&mut body, "avatar_url", json!(a));
    }
    if req.body.user_id.server_name() == s.config.server_name {
        for (field, value) in s.accounts.profile_fields(&req.body.user_id).await? {
            sandcat_core::json::set(&mut body, &field, value);
        }
    }
    Ok(axum::Json(body).into_response())
}

/// GET /_matrix/client/v3/profile/{userId}/{keyName}: an extended profile field.
async fn profile_field(
    State(s): State<AppState>,
    req: Ruma<get_profile_field::v3::Request>,
) -> ApiResult<get_profile_field::v3::Response> {
    let field = req.body.field.as_str();
    let value = s.accounts.profile_field(&req.body.user_id, field).await?;
    let value = ruma::profile::ProfileFieldValue::new(field, value)
        .map_err(|e| Error::bad_json(e.to_string()))?;
    Ok(RumaResponse(get_profile_field::v3::Response::new(value)))
}

/// PUT /_matrix/client/v3/profile/{userId}/{keyName}
async fn set_profile_field(
    State(s): State<AppState>,
    req: Ruma<set_profile_field::v3::Request>,
) -> ApiResult<set_profile_field::v3::Response> {
    let field = req.body.value.field_name();
    let value = req.body.value.value().into_owned();
    s.accounts
        .set_profile_field(req.session()?, &req.body.user_id, field.as_str(), value)
        .await?;
    Ok(RumaResponse(set_profile_field::v3::Response::new()))
}

/// DELETE /_matrix/client/v3/profile/{userId}/{keyName}
async fn delete_profile_field(
    State(s): State<AppState>,
    req: Ruma<delete_profile_field::v3::Request>,
) -> ApiResult<delete_profile_field::v3::Response> {
    s.accounts
        .delete_profile_field(req.session()?, &req.body.user_id, req.body.field.as_str())
        .await?;
    Ok(RumaResponse(delete_profile_field::v3::Response::new()))
}

/// GET /_matrix/client/v3/profile/{userId}/displayname
async fn displayname(
    State(s): State<AppState>,
    req: Ruma<get_display_name::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let u = profile_of(&s, &req.body.user_id).await?;
    Ok(axum::Json(json!({ "displayname": u.displayname })).into_response())
}

/// GET /_matrix/client/v3/profile/{userId}/avatar_url
async fn avatar_url(
    State(s): State<AppState>,
    req: Ruma<get_avatar_url::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let u = profile_of(&s, &req.body.user_id).await?;
    Ok(axum::Json(json!({ "avatar_url": u.avatar_url })).into_response())
}

/// PUT /_matrix/client/v3/profile/{userId}/displayname
async fn set_displayname(
    State(s): State<AppState>,
    req: Ruma<set_display_name::v3::Request>,
) -> ApiResult<set_display_name::v3::Response> {
    let session = req.session()?.clone();
    if req.body.user_id != session.user_id {
        return Err(Error::forbidden("you may only change your own profile").into());
    }
    session.ensure_may_add()?;
    s.accounts
        .set_profile(
            &session.user_id,
            Some(req.body.displayname.as_deref()),
            None,
        )
        .await?;
    s.rooms.propagate_profile(&session).await?;
    Ok(RumaResponse(set_display_name::v3::Response::new()))
}

/// PUT /_matrix/client/v3/profile/{userId}/avatar_url
async fn set_avatar_url(
    State(s): State<AppState>,
    req: Ruma<set_avatar_url::v3::Request>,
) -> ApiResult<set_avatar_url::v3::Response> {
    let session = req.session()?.clone();
    if req.body.user_id != session.user_id {
        return Err(Error::forbidden("you may only change your own profile").into());
    }
    session.ensure_may_add()?;
    let url = req.body.avatar_url.as_ref().map(|u| u.to_string());
    s.accounts
        .set_profile(&session.user_id, None, Some(url.as_deref()))
        .await?;
    s.rooms.propagate_profile(&session).await?;
    Ok(RumaResponse(set_avatar_url::v3::Response::new()))
}
