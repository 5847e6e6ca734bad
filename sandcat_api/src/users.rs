//! `/user/*`: verification codes, registration, login (JWT), refresh, profile, password,
//! search. A Sandcat user id is the Matrix localpart; one password serves both logins.

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::{ConnectInfo, State},
    http::HeaderMap,
    Json,
};
use base64::{engine::general_purpose, Engine};
use rand::Rng;
use sandcat_core::{
    ports::{CodeCheck, NativeProfile},
    ratelimit::Key,
};

use crate::{
    jwt::TokenUse,
    mapping::{avatar_from_mxc, avatar_to_mxc},
    model::{
        Email, LoginRequest, ModifyPwdRequest, Token, User, UserRegister, UserUpdate,
        UserWithMatchType,
    },
    now, ApiError, ApiResult, Auth, Body, NativeState, PathArgs,
};

/// How long an emailed code is valid.
const CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// Tries a code survives; the next one, right or wrong, finds it gone.
const CODE_TRIES: i64 = 5;
/// Least time between two codes sent to one address.
const CODE_RESEND: Duration = Duration::from_secs(30);

/// Emailed verification codes, kept in the store so that every instance counts the same tries.
pub(crate) async fn issue_code(s: &NativeState, email: &str) -> ApiResult<String> {
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
    let issued = s
        .store
        .put_code(
            &email.to_lowercase(),
            &code,
            now(),
            CODE_RESEND.as_millis() as i64,
            CODE_TTL.as_millis() as i64,
        )
        .await?;
    if !issued {
        return Err(ApiError::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "BadRequest",
            format!(
                "a code was sent to this address less than {} s ago",
                CODE_RESEND.as_secs()
            ),
        ));
    }
    Ok(code)
}

/// Checks and uses up a code: it is accepted once, within its lifetime, among its first tries.
pub(crate) async fn take_code(s: &NativeState, email: &str, code: &str) -> ApiResult<()> {
    let check = s
        .store
        .try_code(
            &email.to_lowercase(),
            code,
            now(),
            CODE_TTL.as_millis() as i64,
            CODE_TRIES,
        )
        .await?;
    match check {
        CodeCheck::Accepted => Ok(()),
        CodeCheck::Wrong => Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "CodeIsInvalid",
            "code is invalid",
        )),
        CodeCheck::Expired => Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "CodeIsExpired",
            "code is expired or was tried too often; ask for a new one",
        )),
        CodeCheck::Missing => Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "CodeIsExpired",
            "no code was sent to this email",
        )),
    }
}

fn valid_email(email: &str) -> bool {
    let mut parts = email.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(d), None) if !a.is_empty() && d.contains('.') && email.len() <= 254)
}

/// The Sandcat view of a user.
pub(crate) async fn user_view(s: &NativeState, id: &str) -> ApiResult<User> {
    let uid = s.matrix_id(id)?;
    let rec = s
        .users
        .user(&uid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))?;
    let p = s.store.native_profile(id).await?.unwrap_or_default();
    Ok(User {
        id: id.to_owned(),
        name: rec.displayname.unwrap_or_else(|| id.to_owned()),
        account: id.to_owned(),
        avatar: avatar_from_mxc(s, rec.avatar_url.as_deref()),
        gender: p.gender,
        age: p.age,
        phone: p.phone,
        email: p.email,
        address: p.address,
        region: p.region,
        birthday: p.birthday,
        create_time: p.create_time,
        update_time: p.update_time,
        signature: p.signature,
        ..Default::default()
    })
}

/// POST /user/mail/send
///
/// With registration closed, codes go only to addresses of existing users (for password
/// changes): a code for a new address could only serve a registration.
pub(crate) async fn send_code(
    State(s): State<NativeState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<Email>,
) -> ApiResult<()> {
    s.limit(Key::Address(peer.ip()))?;
    if !valid_email(&req.email) {
        return Err(ApiError::bad_request("a valid email is required"));
    }
    if !s.config.registration_enabled
        && s.store
            .user_by_contact(&req.email.to_lowercase())
            .await?
            .is_none()
    {
        return Err(registration_closed());
    }
    let code = issue_code(&s, &req.email).await?;
    s.mailer.send_code(&req.email, &code);
    Ok(())
}

fn registration_closed() -> ApiError {
    ApiError::forbidden("registration is closed on this server")
}

/// POST /user
pub(crate) async fn register(
    State(s): State<NativeState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<UserRegister>,
) -> ApiResult<Json<User>> {
    if !s.config.registration_enabled {
        return Err(registration_closed());
    }
    s.limit(Key::Address(peer.ip()))?;
    if req.password.is_empty() || req.name.trim().is_empty() || !valid_email(&req.email) {
        return Err(ApiError::bad_request(
            "name, password and a valid email are required",
        ));
    }
    if s.store.user_by_contact(&req.email).await?.is_some() {
        return Err(ApiError::bad_request("this email is already registered"));
    }
    take_code(&s, &req.email, &req.code).await?;
    let id = new_account(&s, Some(&req.password), req.name.trim(), Some(&req.email)).await?;
    if !req.avatar.is_empty() {
        let avatar = avatar_to_mxc(&s, &req.avatar);
        s.accounts
            .set_profile(&s.matrix_id(&id)?, None, Some(avatar.as_deref()))
            .await?;
    }
    Ok(Json(user_view(&s, &id).await?))
}

/// Makes an account (registration must be open): a fresh id, the display name, and the email
/// when no other account has it. Its Sandcat id.
pub(crate) async fn new_account(
    s: &NativeState,
    password: Option<&str>,
    name: &str,
    email: Option<&str>,
) -> ApiResult<String> {
    if !s.config.registration_enabled {
        return Err(registration_closed());
    }
    let id: String = {
        let mut rng = rand::thread_rng();
        (0..12)
            .map(|_| {
                let n = rng.gen_range(0..36u8);
                (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
            })
            .collect()
    };
    let uid = s.accounts.create_user(&id, password).await?;
    s.accounts.set_profile(&uid, Some(Some(name)), None).await?;
    let email = match email.map(str::to_lowercase) {
        Some(e) if s.store.user_by_contact(&e).await?.is_none() => Some(e),
        _ => None,
    };
    let t = now();
    s.store
        .put_native_profile(&NativeProfile {
            user_id: id.clone(),
            email,
            create_time: t,
            update_time: t,
            ..Default::default()
        })
        .await?;
    Ok(id)
}

/// Opens a session of `id` (a Matrix device, which its JWTs name): the answer of a login.
pub(crate) async fn sign_in(s: &NativeState, id: &str, headers: &HeaderMap) -> ApiResult<Token> {
    let uid = s.matrix_id(id)?;
    if s.users.user(&uid).await?.is_none_or(|u| u.deactivated) {
        return Err(ApiError::forbidden("this account is deactivated"));
    }
    let session = s
        .accounts
        .open_device_session(&uid, "Sandcat client")
        .await?;
    Ok(Token {
        user: user_view(s, id).await?,
        token: s.jwt.issue_access(id, &session.device_id)?,
        refresh_token: s
            .jwt
            .issue_refresh(id, &session.device_id, &session.refresh_token)?,
        ws_addr: ws_addr(s, headers),
    })
}

/// The Sandcat id a login name means: an id, an email or a phone number.
async fn resolve_account(s: &NativeState, account: &str) -> ApiResult<Option<String>> {
    let lower = account.trim().to_lowercase();
    if let Some(id) = s.store.user_by_contact(&lower).await? {
        return Ok(Some(id));
    }
    let id = lower
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    match s.matrix_id(&id) {
        Ok(uid) if s.users.user(&uid).await?.is_some() => Ok(Some(id)),
        _ => Ok(None),
    }
}

/// The WebSocket address a client is told: from `public_base_url`, else from the request —
/// `X-Forwarded-Proto`/`X-Forwarded-Host` of a TLS-terminating proxy first, so that a page
/// served over https is not sent to `ws://` (which browsers block).
fn ws_addr(s: &NativeState, headers: &HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split(',').next())
            .map(str::trim)
            .filter(|h| !h.is_empty())
    };
    let base = if !s.config.public_base_url_configured {
        let scheme = match header("x-forwarded-proto") {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        header("x-forwarded-host")
            .or_else(|| header(http::header::HOST.as_str()))
            .map(|h| format!("{scheme}://{h}"))
            .unwrap_or_default()
    } else {
        s.config.public_base_url.trim_end_matches('/').to_owned()
    };
    let ws = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{ws}/ws")
}

/// POST /user/login — `password` is base64 without padding.
///
/// Each login opens a session: a Matrix device (listed with the user's other sessions, and
/// signed out like them) that its JWTs name.
pub(crate) async fn login(
    State(s): State<NativeState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Json<Token>> {
    s.limit(Key::Address(peer.ip()))?;
    if req.account.is_empty() || req.password.is_empty() {
        return Err(ApiError::bad_request("account and password are required"));
    }
    let password = decode_password(&req.password)?;
    let wrong = || {
        ApiError::new(
            http::StatusCode::UNAUTHORIZED,
            "AccountOrPassword",
            "wrong account or password",
        )
    };
    let id = resolve_account(&s, &req.account).await?.ok_or_else(wrong)?;
    let uid = s.matrix_id(&id)?;
    if !s.accounts.check_password(&uid, &password).await? {
        return Err(wrong());
    }
    Ok(Json(sign_in(&s, &id, &headers).await?))
}

fn decode_password(b64: &str) -> ApiResult<String> {
    let bytes = general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| ApiError::bad_request("password must be base64"))?;
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("password must be UTF-8"))
}

/// GET /user/refresh_token/{refresh_token}/{is_refresh}, as text: a new access token
/// (`false`), or a new refresh token in place of this one, which then stops working (`true`).
/// Only a refresh token of a live session refreshes.
pub(crate) async fn refresh(
    State(s): State<NativeState>,
    PathArgs((token, is_refresh)): PathArgs<(String, bool)>,
) -> ApiResult<String> {
    let claims = s.jwt.verify(&token, TokenUse::Refresh)?;
    let rid = claims.rid.as_deref().unwrap_or_default();
    let (session, token) = if is_refresh {
        let (session, new_rid) = s.accounts.rotate_refresh_token(rid).await?;
        let token = s
            .jwt
            .issue_refresh(&claims.sub, &session.device_id, &new_rid)?;
        (session, token)
    } else {
        let session = s.accounts.refresh_session(rid).await?;
        let token = s.jwt.issue_access(&claims.sub, &session.device_id)?;
        (session, token)
    };
    if session.user_id.localpart() != claims.sub || session.device_id != claims.sid {
        return Err(ApiError::unauthorized(
            "the refresh token is not this session's",
        ));
    }
    Ok(token)
}

/// PUT /user
pub(crate) async fn update(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<UserUpdate>,
) -> ApiResult<Json<User>> {
    auth.check(&req.id)?;
    let uid = s.matrix_id(&req.id)?;
    let name = Some(req.name.trim()).filter(|n| !n.is_empty());
    let avatar = avatar_to_mxc(&s, &req.avatar);
    let session = s.session(&req.id).await?;
    session.ensure_may_add()?;
    s.accounts
        .set_profile(&uid, name.map(Some), avatar.as_deref().map(Some))
        .await?;
    s.rooms.propagate_profile(&session).await?;
    let mut p = s
        .store
        .native_profile(&req.id)
        .await?
        .unwrap_or_else(|| NativeProfile {
            user_id: req.id.clone(),
            create_time: now(),
            ..Default::default()
        });
    p.gender = req.gender;
    if req.phone.is_some() {
        p.phone = req.phone.filter(|x| !x.is_empty());
    }
    if req.email.is_some() {
        p.email = req
            .email
            .filter(|x| valid_email(x))
            .map(|x| x.to_lowercase());
    }
    p.address = req.address.or(p.address);
    p.region = req.region.or(p.region);
    p.birthday = req.birthday.or(p.birthday);
    if let Some(sig) = req.signature {
        p.signature = sig;
    }
    p.update_time = now();
    s.store.put_native_profile(&p).await?;
    Ok(Json(user_view(&s, &req.id).await?))
}

/// PUT /user/pwd — proven by a code sent to the user's own email (Sandcat clients send no
/// token here). Every session of the user ends, on every instance.
pub(crate) async fn change_password(
    State(s): State<NativeState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(req): Body<ModifyPwdRequest>,
) -> ApiResult<()> {
    s.limit(Key::Address(peer.ip()))?;
    let p = s
        .store
        .native_profile(&req.user_id)
        .await?
        .unwrap_or_default();
    if p.email.as_deref() != Some(req.email.to_lowercase().as_str()) {
        return Err(ApiError::bad_request("that is not this user's email"));
    }
    let pwd = decode_password(&req.pwd)?;
    take_code(&s, &req.email, &req.code).await?;
    s.accounts
        .reset_password(&s.matrix_id(&req.user_id)?, &pwd, true)
        .await?;
    Ok(())
}

/// GET /user/{id}
pub(crate) async fn get_user(
    State(s): State<NativeState>,
    _auth: Auth,
    PathArgs(id): PathArgs<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(user_view(&s, &id).await?))
}

/// GET /user/{user_id}/search/{pattern} — an exact match on id, email or phone.
pub(crate) async fn search(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs((user_id, pattern)): PathArgs<(String, String)>,
) -> ApiResult<Json<Option<UserWithMatchType>>> {
    auth.check(&user_id)?;
    if pattern.is_empty() || pattern.chars().count() > 32 {
        return Err(ApiError::bad_request("keyword is empty or too long"));
    }
    let lower = pattern.to_lowercase();
    let (id, match_type) = match s.store.user_by_contact(&lower).await? {
        Some(id) => {
            let kind = if lower.contains('@') {
                "email"
            } else {
                "phone"
            };
            (id, kind)
        }
        None => match s.matrix_id(&lower) {
            Ok(uid) if s.users.user(&uid).await?.is_some() => (lower.clone(), "account"),
            _ => return Ok(Json(None)),
        },
    };
    if id == user_id {
        return Ok(Json(None));
    }
    let u = user_view(&s, &id).await?;
    let is_friend = s
        .store
        .friend(&user_id, &id)
        .await?
        .is_some_and(|f| f.status == sandcat_core::ports::FriendshipStatus::Accepted);
    Ok(Json(Some(UserWithMatchType {
        id: u.id,
        name: u.name,
        account: u.account,
        avatar: u.avatar,
        gender: u.gender,
        age: u.age,
        email: u.email,
        region: u.region,
        birthday: u.birthday,
        match_type: Some(match_type.to_owned()),
        signature: u.signature,
        is_friend,
    })))
}

/// DELETE /user/{id} — the client signs out: its session (device) ends, and with it every
/// token naming it.
pub(crate) async fn logout(
    State(s): State<NativeState>,
    auth: Auth,
    PathArgs(id): PathArgs<String>,
) -> ApiResult<()> {
    auth.check(&id)?;
    logout_session(State(s), auth).await
}

/// DELETE /user/logout/{uuid} — the same, for the session of the token.
pub(crate) async fn logout_session(State(s): State<NativeState>, auth: Auth) -> ApiResult<()> {
    s.accounts
        .logout(&sandcat_core::services::Session::new(
            s.matrix_id(&auth.user)?,
            auth.device,
        ))
        .await?;
    Ok(())
}
