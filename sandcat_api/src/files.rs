//! `/file/*`: files and avatars on local disk under the data directory (the pipeline's S3
//! media store replaces this with the media backend). Stored names are random, with the
//! uploaded file's extension, and are the names clients fetch them by.

use axum::{
    extract::{Multipart, State},
    http::header,
    response::IntoResponse,
};

use crate::{friends::random_id, ApiError, ApiResult, Auth, NativeState, PathArgs};

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

async fn store(s: &NativeState, kind: &str, mut form: Multipart) -> ApiResult<String> {
    let field = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?
        .ok_or_else(|| ApiError::bad_request("no file in the form"))?;
    let ext: String = field
        .file_name()
        .and_then(|n| n.rsplit_once('.').map(|(_, e)| e.to_owned()))
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_default();
    let bytes = field.bytes().await.map_err(|e| {
        ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "BadRequest",
            e.to_string(),
        )
    })?;
    let name = if ext.is_empty() {
        random_id()
    } else {
        format!("{}.{ext}", random_id())
    };
    let dir = s.files_dir.join(kind);
    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
    tokio::fs::write(dir.join(&name), &bytes)
        .await
        .map_err(io)?;
    Ok(name)
}

fn io(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "file store");
    ApiError::new(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "IOError",
        "file store failed",
    )
}

async fn fetch(s: &NativeState, kind: &str, name: &str) -> ApiResult<impl IntoResponse> {
    if !valid_name(name) {
        return Err(ApiError::bad_request("invalid file name"));
    }
    match tokio::fs::read(s.files_dir.join(kind).join(name)).await {
        Ok(bytes) => Ok((
            [
                (header::CACHE_CONTROL, "private, max-age=31536000"),
                (header::CONTENT_TYPE, "application/octet-stream"),
            ],
            bytes,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(ApiError::not_found("no such file"))
        }
        Err(e) => Err(io(e)),
    }
}

/// POST /file/upload
pub async fn upload(
    State(s): State<NativeState>,
    _auth: Auth,
    form: Multipart,
) -> ApiResult<String> {
    store(&s, "files", form).await
}

/// POST /file/avatar/upload
pub async fn upload_avatar(
    State(s): State<NativeState>,
    _auth: Auth,
    form: Multipart,
) -> ApiResult<String> {
    store(&s, "avatars", form).await
}

/// GET /file/get/{name}
pub async fn get(
    State(s): State<NativeState>,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<impl IntoResponse> {
    fetch(&s, "files", &name).await
}

/// GET /file/avatar/get/{name}
pub async fn get_avatar(
    State(s): State<NativeState>,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<impl IntoResponse> {
    fetch(&s, "avatars", &name).await
}
