//! `/user/*`: verification codes, registration, login (JWT), refresh, profile, password,
//! search. A Sandcat user id is the Matrix localpart; one password serves both logins.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use axum::{extract::State, http::HeaderMap, Json};
use base64::{engine::general_purpose, Engine};
use rand::Rng;
use sandcat_core::ports::NativeProfile;

use crate::{
    jwt::{ACCESS_SECS, REFRESH_EXTRA_SECS},
    mapping::{avatar_from_mxc, avatar_to_mxc},
    model::{
        Email, LoginRequest, ModifyPwdRequest, Token, User, UserRegister, UserUpdate,
        UserWithMatchType,
    },
    now, ApiError, ApiResult, Auth, Body, NativeState, PathArgs,
};

const CODE_TTL: Duration = Duration::from_secs(5 * 60);

/// Verification codes by email, each valid for five minutes.
#[derive(Default)]
pub struct Codes(Mutex<HashMap<String, (String, std::time::Instant)>>);

impl Codes {
    fn issue(&self, email: &str) -> String {
        let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < CODE_TTL);
        map.insert(
            email.to_lowercase(),
            (code.clone(), std::time::Instant::now()),
        );
        code
    }

    /// Checks and consumes a code.
    fn take(&self, email: &str, code: &str) -> ApiResult<()> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&email.to_lowercase()) {
            Some((_, at)) if at.elapsed() >= CODE_TTL => Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "CodeIsExpired",
                "code is expired",
            )),
            Some((c, _)) if c == code => {
                map.remove(&email.to_lowercase());
                Ok(())
            }
            Some(_) => Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "CodeIsInvalid",
                "code is invalid",
            )),
            None => Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "CodeIsExpired",
                "no code was sent to this email",
            )),
        }
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
pub async fn send_code(State(s): State<NativeState>, Body(req): Body<Email>) -> ApiResult<()> {
    if !valid_email(&req.email) {
        return Err(ApiError::bad_request("a valid email is required"));
    }
    let code = s.codes.issue(&req.email);
    s.mailer.send_code(&req.email, &code);
    Ok(())
}

/// POST /user
pub async fn register(
    State(s): State<NativeState>,
    Body(req): Body<UserRegister>,
) -> ApiResult<Json<User>> {
    if req.password.is_empty() || req.name.trim().is_empty() || !valid_email(&req.email) {
        return Err(ApiError::bad_request(
            "name, password and a valid email are required",
        ));
    }
    if s.store.user_by_contact(&req.email).await?.is_some() {
        return Err(ApiError::bad_request("this email is already registered"));
    }
    s.codes.take(&req.email, &req.code)?;
    let id: String = {
        let mut rng = rand::thread_rng();
        (0..12)
            .map(|_| {
                let n = rng.gen_range(0..36u8);
                (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
            })
            .collect()
    };
    let uid = s.accounts.create_user(&id, Some(&req.password)).await?;
    let avatar = avatar_to_mxc(&s, &req.avatar);
    s.accounts
        .set_profile(&uid, Some(Some(req.name.trim())), Some(avatar.as_deref()))
        .await?;
    let t = now();
    s.store
        .put_native_profile(&NativeProfile {
            user_id: id.clone(),
            email: Some(req.email.to_lowercase()),
            create_time: t,
            update_time: t,
            ..Default::default()
        })
        .await?;
    Ok(Json(user_view(&s, &id).await?))
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

fn ws_addr(s: &NativeState, headers: &HeaderMap) -> String {
    let base = if s.config.public_base_url.is_empty() {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"))
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
pub async fn login(
    State(s): State<NativeState>,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Json<Token>> {
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
    if !s
        .accounts
        .check_password(&s.matrix_id(&id)?, &password)
        .await?
    {
        return Err(wrong());
    }
    Ok(Json(Token {
        user: user_view(&s, &id).await?,
        token: s.jwt.issue(&id, ACCESS_SECS)?,
        refresh_token: s.jwt.issue(&id, ACCESS_SECS + REFRESH_EXTRA_SECS)?,
        ws_addr: ws_addr(&s, &headers),
    }))
}

fn decode_password(b64: &str) -> ApiResult<String> {
    let bytes = general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| ApiError::bad_request("password must be base64"))?;
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("password must be UTF-8"))
}

/// GET /user/refresh_token/{token}/{is_refresh} — a new token for a valid one, as text.
pub async fn refresh(
    State(s): State<NativeState>,
    PathArgs((token, is_refresh)): PathArgs<(String, bool)>,
) -> ApiResult<String> {
    let id = s.jwt.verify(&token)?;
    let secs = if is_refresh {
        ACCESS_SECS + REFRESH_EXTRA_SECS
    } else {
        ACCESS_SECS
    };
    s.jwt.issue(&id, secs)
}

/// PUT /user
pub async fn update(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<UserUpdate>,
) -> ApiResult<Json<User>> {
    auth.check(&req.id)?;
    let uid = s.matrix_id(&req.id)?;
    let name = Some(req.name.trim()).filter(|n| !n.is_empty());
    let avatar = avatar_to_mxc(&s, &req.avatar);
    s.accounts
        .set_profile(&uid, name.map(Some), avatar.as_deref().map(Some))
        .await?;
    s.rooms.propagate_profile(&s.session(&req.id)?).await?;
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

/// PUT /user/pwd — with a code sent to the user's own email.
pub async fn change_password(
    State(s): State<NativeState>,
    auth: Auth,
    Body(req): Body<ModifyPwdRequest>,
) -> ApiResult<()> {
    auth.check(&req.user_id)?;
    let p = s
        .store
        .native_profile(&req.user_id)
        .await?
        .unwrap_or_default();
    if p.email.as_deref() != Some(req.email.to_lowercase().as_str()) {
        return Err(ApiError::bad_request("that is not this user's email"));
    }
    s.codes.take(&req.email, &req.code)?;
    let pwd = decode_password(&req.pwd)?;
    s.accounts
        .change_password(&s.session(&req.user_id)?, &pwd, false)
        .await?;
    Ok(())
}

/// GET /user/{id}
pub async fn get_user(
    State(s): State<NativeState>,
    _auth: Auth,
    PathArgs(id): PathArgs<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(user_view(&s, &id).await?))
}

/// GET /user/{user_id}/search/{pattern} — an exact match on id, email or phone.
pub async fn search(
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
        .is_some_and(|f| f.status == 1);
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

/// DELETE /user/logout/{uuid}, DELETE /user/{id} — the client signs out; JWTs expire on
/// their own.
pub async fn logout(auth: Auth, PathArgs(id): PathArgs<String>) -> ApiResult<()> {
    auth.check(&id)?;
    Ok(())
}
