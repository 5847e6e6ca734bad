//! `/file/*`: files and avatars are Matrix media. A Sandcat file name is `{media_id}.{ext}`,
//! so a file a Sandcat client uploads is `mxc://{server_name}/{media_id}` for Matrix clients,
//! and an image a Matrix client sends is fetched by Sandcat clients as `{media_id}.{ext}`.

use axum::{
    extract::{Multipart, State},
    http::header,
    response::IntoResponse,
};

use crate::{ApiError, ApiResult, Auth, NativeState, PathArgs};

/// The avatars the Sandcat register page offers (`avatar1.png`…), shipped with the server as
/// media of its own: `(media id, PNG)`.
pub const DEFAULT_AVATARS: [(&str, &[u8]); 3] = [
    ("avatar1", include_bytes!("../assets/avatar1.png")),
    ("avatar2", include_bytes!("../assets/avatar2.png")),
    ("avatar3", include_bytes!("../assets/avatar3.png")),
];

/// The media id of a Sandcat file name.
pub(crate) fn media_id(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

fn content_type_of(ext: &str) -> Option<&'static str> {
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

async fn store(s: &NativeState, user: &str, mut form: Multipart) -> ApiResult<String> {
    let field = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?
        .ok_or_else(|| ApiError::bad_request("no file in the form"))?;
    let filename = field.file_name().map(str::to_owned);
    let ext: String = filename
        .as_deref()
        .and_then(|n| n.rsplit_once('.').map(|(_, e)| e.to_owned()))
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_default();
    let content_type = field
        .content_type()
        .filter(|c| *c != "application/octet-stream")
        .map(str::to_owned)
        .or_else(|| content_type_of(&ext).map(str::to_owned));
    let bytes = field.bytes().await.map_err(|e| {
        ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "BadRequest",
            e.to_string(),
        )
    })?;
    let uploader = s.matrix_id(user)?;
    let id = s
        .media
        .upload(uploader.as_str(), &bytes, content_type, filename)
        .await?;
    Ok(if ext.is_empty() {
        id
    } else {
        format!("{id}.{ext}")
    })
}

async fn fetch(s: &NativeState, name: &str) -> ApiResult<impl IntoResponse> {
    let (rec, bytes) = s.media.download(media_id(name)).await?;
    Ok((
        [
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000".to_owned(),
            ),
            (
                header::CONTENT_TYPE,
                rec.content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
        ],
        bytes,
    ))
}

/// POST /file/upload
pub(crate) async fn upload(
    State(s): State<NativeState>,
    auth: Auth,
    form: Multipart,
) -> ApiResult<String> {
    store(&s, &auth.user, form).await
}

/// POST /file/avatar/upload
pub(crate) async fn upload_avatar(
    State(s): State<NativeState>,
    auth: Auth,
    form: Multipart,
) -> ApiResult<String> {
    store(&s, &auth.user, form).await
}

/// GET /file/get/{name}, GET /file/avatar/get/{name}
pub(crate) async fn get(
    State(s): State<NativeState>,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<impl IntoResponse> {
    fetch(&s, &name).await
}
