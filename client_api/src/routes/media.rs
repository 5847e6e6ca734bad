//! The media repository: `/_matrix/media/v3/*` (upload, create, download, thumbnail, config) and
//! the authenticated `/_matrix/client/v1/media/*`. The unauthenticated v3 downloads are
//! deprecated since Matrix 1.11 but still served: older clients (matrix-nio among them) use them.
//! Another server's media is fetched from it once and kept (the `Media` service).
#![allow(deprecated)]

use axum::extract::State;
use ruma::{
    api::client::{
        authenticated_media as auth,
        media::{
            create_content, create_content_async, create_mxc_uri, get_content,
            get_content_as_filename, get_content_thumbnail, get_media_config, get_media_preview,
        },
    },
    http_headers::{ContentDisposition, ContentDispositionType},
    media::Method,
    OwnedMxcUri, ServerName, UInt,
};
use sandcat_core::{
    services::media::{content_type, disposition},
    Error,
};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<create_content::v3::Request, _, _>(upload)
        .ruma::<create_mxc_uri::v1::Request, _, _>(create)
        .ruma::<create_content_async::v3::Request, _, _>(upload_to)
        .ruma::<get_content::v3::Request, _, _>(download_legacy)
        .ruma::<get_content_as_filename::v3::Request, _, _>(download_named_legacy)
        .ruma::<get_content_thumbnail::v3::Request, _, _>(thumbnail_legacy)
        .ruma::<get_media_config::v3::Request, _, _>(config_legacy)
        .ruma::<auth::get_content::v1::Request, _, _>(download)
        .ruma::<auth::get_content_as_filename::v1::Request, _, _>(download_named)
        .ruma::<auth::get_content_thumbnail::v1::Request, _, _>(thumbnail)
        .ruma::<auth::get_media_config::v1::Request, _, _>(config)
        .ruma::<auth::get_media_preview::v1::Request, _, _>(preview)
        .ruma::<get_media_preview::v3::Request, _, _>(preview_legacy)
}

/// GET /_matrix/client/v1/media/preview_url
async fn preview(
    State(s): State<AppState>,
    req: Ruma<auth::get_media_preview::v1::Request>,
) -> ApiResult<auth::get_media_preview::v1::Response> {
    let answer = s
        .previews
        .preview(&req.session()?.user_id, &req.body.url)
        .await?;
    auth::get_media_preview::v1::Response::from_serialize(&answer)
        .map(RumaResponse)
        .map_err(|e| Error::internal(e).into())
}

/// GET /_matrix/media/v3/preview_url (deprecated; the same answer)
async fn preview_legacy(
    State(s): State<AppState>,
    req: Ruma<get_media_preview::v3::Request>,
) -> ApiResult<get_media_preview::v3::Response> {
    let answer = s
        .previews
        .preview(&req.session()?.user_id, &req.body.url)
        .await?;
    get_media_preview::v3::Response::from_serialize(&answer)
        .map(RumaResponse)
        .map_err(|e| Error::internal(e).into())
}

fn mxc(s: &AppState, media_id: &str) -> OwnedMxcUri {
    OwnedMxcUri::from(format!("mxc://{}/{media_id}", s.config.server_name))
}

/// POST /_matrix/media/v3/upload
async fn upload(
    State(s): State<AppState>,
    req: Ruma<create_content::v3::Request>,
) -> ApiResult<create_content::v3::Response> {
    let session = req.session()?;
    session.ensure_may_add()?;
    let uploader = session.user_id.to_string();
    let b = req.body;
    let id = s
        .media
        .upload(&uploader, &b.file, b.content_type, b.filename)
        .await?;
    Ok(RumaResponse(create_content::v3::Response::new(mxc(
        &s, &id,
    ))))
}

/// POST /_matrix/media/v1/create
async fn create(
    State(s): State<AppState>,
    req: Ruma<create_mxc_uri::v1::Request>,
) -> ApiResult<create_mxc_uri::v1::Response> {
    let session = req.session()?;
    session.ensure_may_add()?;
    let id = s.media.create(session.user_id.as_str()).await?;
    Ok(RumaResponse(create_mxc_uri::v1::Response::new(mxc(
        &s, &id,
    ))))
}

/// PUT /_matrix/media/v3/upload/{serverName}/{mediaId}
async fn upload_to(
    State(s): State<AppState>,
    req: Ruma<create_content_async::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let session = req.session()?;
    session.ensure_may_add()?;
    let uploader = session.user_id.to_string();
    let b = req.body;
    s.media
        .upload_to(
            &uploader,
            &b.server_name,
            &b.media_id,
            &b.file,
            b.content_type,
            b.filename,
        )
        .await?;
    // ruma's response type has no public constructor: the body is an empty object.
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        serde_json::json!({}),
    )))
}

/// A file of this server or, when `allow_remote`, of another (fetched from it once).
async fn fetch(
    s: &AppState,
    server: &ServerName,
    media_id: &str,
    filename: Option<String>,
    allow_remote: bool,
) -> Result<(Vec<u8>, String, ContentDisposition), Error> {
    let (rec, bytes) = s
        .media
        .download_from(server, media_id, allow_remote)
        .await?;
    Ok((bytes, content_type(&rec), disposition(&rec, filename)))
}

async fn thumb(
    s: &AppState,
    server: &ServerName,
    media_id: &str,
    width: UInt,
    height: UInt,
    method: Option<Method>,
    allow_remote: bool,
) -> Result<(Vec<u8>, String, ContentDisposition), Error> {
    let crop = !matches!(method, Some(Method::Scale));
    let size = |n: UInt| u32::try_from(u64::from(n)).unwrap_or(u32::MAX);
    let (ct, bytes) = s
        .media
        .thumbnail(
            server,
            media_id,
            (size(width), size(height)),
            crop,
            allow_remote,
        )
        .await?;
    Ok((
        bytes,
        ct,
        ContentDisposition::new(ContentDispositionType::Inline),
    ))
}

/// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}
async fn download(
    State(s): State<AppState>,
    req: Ruma<auth::get_content::v1::Request>,
) -> ApiResult<auth::get_content::v1::Response> {
    let b = req.body;
    let (f, ct, cd) = fetch(&s, &b.server_name, &b.media_id, None, true).await?;
    Ok(RumaResponse(auth::get_content::v1::Response::new(
        f, ct, cd,
    )))
}

/// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}
async fn download_named(
    State(s): State<AppState>,
    req: Ruma<auth::get_content_as_filename::v1::Request>,
) -> ApiResult<auth::get_content_as_filename::v1::Response> {
    let b = req.body;
    let (f, ct, cd) = fetch(&s, &b.server_name, &b.media_id, Some(b.filename), true).await?;
    Ok(RumaResponse(
        auth::get_content_as_filename::v1::Response::new(f, ct, cd),
    ))
}

/// GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
async fn thumbnail(
    State(s): State<AppState>,
    req: Ruma<auth::get_content_thumbnail::v1::Request>,
) -> ApiResult<auth::get_content_thumbnail::v1::Response> {
    let b = req.body;
    let (f, ct, cd) = thumb(
        &s,
        &b.server_name,
        &b.media_id,
        b.width,
        b.height,
        b.method,
        true,
    )
    .await?;
    Ok(RumaResponse(
        auth::get_content_thumbnail::v1::Response::new(f, ct, cd),
    ))
}

/// GET /_matrix/client/v1/media/config
async fn config(
    State(s): State<AppState>,
    _: Ruma<auth::get_media_config::v1::Request>,
) -> ApiResult<auth::get_media_config::v1::Response> {
    Ok(RumaResponse(auth::get_media_config::v1::Response::new(
        UInt::try_from(s.media.max_bytes() as u64).unwrap_or(UInt::MAX),
    )))
}

/// GET /_matrix/media/v3/download/{serverName}/{mediaId}
async fn download_legacy(
    State(s): State<AppState>,
    req: Ruma<get_content::v3::Request>,
) -> ApiResult<get_content::v3::Response> {
    let b = req.body;
    let (f, ct, cd) = fetch(&s, &b.server_name, &b.media_id, None, b.allow_remote).await?;
    Ok(RumaResponse(get_content::v3::Response::new(f, ct, cd)))
}

/// GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}
async fn download_named_legacy(
    State(s): State<AppState>,
    req: Ruma<get_content_as_filename::v3::Request>,
) -> ApiResult<get_content_as_filename::v3::Response> {
    let b = req.body;
    let (f, ct, cd) = fetch(
        &s,
        &b.server_name,
        &b.media_id,
        Some(b.filename),
        b.allow_remote,
    )
    .await?;
    Ok(RumaResponse(get_content_as_filename::v3::Response::new(
        f, ct, cd,
    )))
}

/// GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}
async fn thumbnail_legacy(
    State(s): State<AppState>,
    req: Ruma<get_content_thumbnail::v3::Request>,
) -> ApiResult<get_content_thumbnail::v3::Response> {
    let b = req.body;
    let (f, ct, cd) = thumb(
        &s,
        &b.server_name,
        &b.media_id,
        b.width,
        b.height,
        b.method,
        b.allow_remote,
    )
    .await?;
    Ok(RumaResponse(get_content_thumbnail::v3::Response::new(
        f, ct, cd,
    )))
}

/// GET /_matrix/media/v3/config
async fn config_legacy(
    State(s): State<AppState>,
    _: Ruma<get_media_config::v3::Request>,
) -> ApiResult<get_media_config::v3::Response> {
    Ok(RumaResponse(get_media_config::v3::Response::new(
        UInt::try_from(s.media.max_bytes() as u64).unwrap_or(UInt::MAX),
    )))
}
