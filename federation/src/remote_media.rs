//! Other servers' media (`RemoteMedia`): `/_matrix/federation/v1/media/download/{mediaId}` of
//! the server that holds it. Its answer names the file or a URL to fetch it from; a server
//! without authenticated media (`404 M_UNRECOGNIZED`) is asked at its older, unauthenticated
//! client endpoint instead.

use std::str::FromStr;

use async_trait::async_trait;
use http::{header, Response, StatusCode};
use ruma::{
    api::{
        federation::authenticated_media::{get_content, FileOrLocation},
        IncomingResponseExt,
    },
    http_headers::ContentDisposition,
    ServerName,
};
use sandcat_core::{
    ports::{RemoteFile, RemoteMedia},
    Error, ErrorCode, Result,
};

use crate::client::{borrowed, FederationClient};

/// Room for the `multipart/mixed` framing around a file of the largest size allowed.
const FRAMING: usize = 64 * 1024;

#[async_trait]
impl RemoteMedia for FederationClient {
    async fn download(
        &self,
        server: &ServerName,
        media_id: &str,
        max_bytes: usize,
    ) -> Result<RemoteFile> {
        let request = get_content::v1::Request::new(media_id.to_owned());
        let answer = self
            .send_raw(server, request, max_bytes + FRAMING)
            .await
            .map_err(failed)?;
        if unrecognized(&answer) {
            return self
                .download_unauthenticated(server, media_id, max_bytes)
                .await;
        }
        check_status(server, &answer)?;
        let status = answer.status();
        let parsed = get_content::v1::Response::try_from_http_response(borrowed(&answer))
            .map_err(|e| bad_answer(server, format!("{status}: {e}")))?;
        let file = match parsed.content {
            FileOrLocation::File(content) => RemoteFile {
                bytes: content.file,
                content_type: content.content_type,
                filename: content.content_disposition.and_then(|d| d.filename),
            },
            FileOrLocation::Location(url) => {
                let answer = self
                    .get_url(server, &url, max_bytes)
                    .await
                    .map_err(failed)?;
                check_status(server, &answer)?;
                file_of(answer)
            }
            _ => return Err(bad_answer(server, "an answer of a kind not known here")),
        };
        if file.bytes.len() > max_bytes {
            return Err(too_large(max_bytes));
        }
        Ok(file)
    }
}

impl FederationClient {
    /// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` of a server that predates
    /// authenticated media.
    async fn download_unauthenticated(
        &self,
        server: &ServerName,
        media_id: &str,
        max_bytes: usize,
    ) -> Result<RemoteFile> {
        let base = self.base_url(server).await?;
        let url =
            format!("{base}/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false");
        let answer = self
            .get_url(server, &url, max_bytes)
            .await
            .map_err(failed)?;
        check_status(server, &answer)?;
        Ok(file_of(answer))
    }
}

/// A file answered as a plain HTTP body.
fn file_of(answer: Response<Vec<u8>>) -> RemoteFile {
    let header = |name| {
        answer
            .headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(header::CONTENT_TYPE);
    let filename = header(header::CONTENT_DISPOSITION)
        .and_then(|d| ContentDisposition::from_str(&d).ok())
        .and_then(|d| d.filename);
    RemoteFile {
        bytes: answer.into_body(),
        content_type,
        filename,
    }
}

/// Whether a server answered that it has no such endpoint.
fn unrecognized(answer: &Response<Vec<u8>>) -> bool {
    matches!(
        answer.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) && serde_json::from_slice::<serde_json::Value>(answer.body())
        .is_ok_and(|v| v["errcode"] == "M_UNRECOGNIZED")
}

/// A `404` stays "not found"; any other failure is the other server's.
fn check_status(server: &ServerName, answer: &Response<Vec<u8>>) -> Result<()> {
    match answer.status() {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Err(Error::not_found(format!("{server} has no such media"))),
        s => Err(bad_answer(server, s)),
    }
}

fn bad_answer(server: &ServerName, why: impl std::fmt::Display) -> Error {
    Error::not_found(format!("{server} did not answer with the media: {why}"))
}

fn too_large(max_bytes: usize) -> Error {
    Error::matrix(
        ErrorCode::TooLarge,
        format!("the media is larger than {max_bytes} bytes"),
    )
}

/// Media of a server that could not be reached (or may not be: a private address) is not
/// found here — the client's answer is a 404 naming why, never a server error; a file too
/// large stays so.
fn failed(e: Error) -> Error {
    match e {
        Error::Matrix {
            code: ErrorCode::TooLarge,
            message,
        } => Error::matrix(ErrorCode::TooLarge, message),
        Error::Matrix { message, .. } => Error::not_found(message),
        e => e,
    }
}
