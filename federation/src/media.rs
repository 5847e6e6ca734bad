//! This server's media for other servers: `/_matrix/federation/v1/media/download/{mediaId}`
//! and `/thumbnail/{mediaId}` (authenticated media), answered `multipart/mixed` by ruma. Only
//! this server's own files are served: a copy of a third server's is not passed on.

use axum::{extract::State, Router};
use ruma::{
    api::federation::authenticated_media::{
        get_content, get_content_thumbnail, Content, ContentMetadata, FileOrLocation,
    },
    http_headers::{ContentDisposition, ContentDispositionType},
    media::Method,
    UInt,
};
use sandcat_client_api::{ApiResult, RumaResponse, RumaRouter};
use sandcat_core::services::media::{content_type, disposition};

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_content::v1::Request, _, _>(download)
        .ruma::<get_content_thumbnail::v1::Request, _, _>(thumbnail)
}

/// GET /_matrix/federation/v1/media/download/{mediaId}
async fn download(
    State(s): State<FederationState>,
    req: Signed<get_content::v1::Request>,
) -> ApiResult<get_content::v1::Response> {
    let (record, bytes) = s.media.download(&req.body.media_id).await?;
    let file = Content::new(bytes, content_type(&record), disposition(&record, None));
    Ok(RumaResponse(get_content::v1::Response::new(
        ContentMetadata::new(),
        FileOrLocation::File(file),
    )))
}

/// GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width=&height=&method=
async fn thumbnail(
    State(s): State<FederationState>,
    req: Signed<get_content_thumbnail::v1::Request>,
) -> ApiResult<get_content_thumbnail::v1::Response> {
    let b = req.body;
    let size = |n: UInt| u32::try_from(u64::from(n)).unwrap_or(u32::MAX);
    let crop = !matches!(b.method, Some(Method::Scale));
    let (content_type, bytes) = s
        .media
        .thumbnail(
            &s.server_name,
            &b.media_id,
            (size(b.width), size(b.height)),
            crop,
            false,
        )
        .await?;
    let file = Content::new(
        bytes,
        content_type,
        ContentDisposition::new(ContentDispositionType::Inline),
    );
    Ok(RumaResponse(get_content_thumbnail::v1::Response::new(
        ContentMetadata::new(),
        FileOrLocation::File(file),
    )))
}
