//! The media repository end to end: uploads, downloads, thumbnails stored once, the
//! create-then-upload flow, limits, and Sandcat files seen as Matrix media.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, png, Server};
use serde_json::Value;

async fn upload(c: &common::Client, path: &str, bytes: Vec<u8>, ct: &str) -> (u16, Value) {
    let res = c
        .http
        .post(format!("{}{path}", c.base))
        .bearer_auth(c.token.as_deref().unwrap())
        .header("content-type", ct)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_bytes(
    c: &common::Client,
    path: &str,
    auth: bool,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = c.http.get(format!("{}{path}", c.base));
    if auth {
        req = req.bearer_auth(c.token.as_deref().unwrap());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn upload_download_and_thumbnails() {
    // The bytes on local disk, whichever profile the rest runs on.
    let server = Server::start_with(|c| c.media.backend = sandcat::MediaBackend::Embedded).await;
    media_flow(&server, true).await;
}

/// The same flow with the bytes in S3 (`scripts/services.sh` starts a server on loopback).
#[cfg(feature = "s3")]
#[tokio::test]
async fn upload_download_and_thumbnails_on_s3() {
    let bucket = format!("sandcat-e2e-{}", std::process::id());
    let server = Server::start_with(|c| {
        c.media.backend = sandcat::MediaBackend::S3;
        c.media.s3_endpoint =
            std::env::var("SANDCAT_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
        c.media.s3_bucket = bucket;
        c.media.s3_access_key =
            std::env::var("SANDCAT_TEST_S3_KEY").unwrap_or_else(|_| "minioadmin".into());
        c.media.s3_secret_key =
            std::env::var("SANDCAT_TEST_S3_SECRET").unwrap_or_else(|_| "minioadmin".into());
    })
    .await;
    media_flow(&server, false).await;
    assert!(
        !server.dir.path().join("media").exists(),
        "nothing on local disk"
    );
}

async fn media_flow(server: &Server, on_disk: bool) {
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let picture = png(400, 300);
    let (s, b) = upload(
        &alice,
        "/_matrix/media/v3/upload?filename=cat.png",
        picture.clone(),
        "image/png",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let uri = b["content_uri"].as_str().unwrap().to_owned();
    let id = uri
        .strip_prefix("mxc://localhost/")
        .expect("a local mxc uri")
        .to_owned();

    // Authenticated download: the same bytes, type and name.
    let (s, h, bytes) = get_bytes(
        &bob,
        &format!("/_matrix/client/v1/media/download/localhost/{id}"),
        true,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(bytes, picture);
    assert_eq!(h["content-type"], "image/png");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("cat.png"),
        "{h:?}"
    );
    let (s, _, _) = get_bytes(
        &bob,
        &format!("/_matrix/client/v1/media/download/localhost/{id}"),
        false,
    )
    .await;
    assert_eq!(s, 401, "authenticated media needs a token");
    // The legacy download, with a file name.
    let (s, h, bytes) = get_bytes(
        &bob,
        &format!("/_matrix/media/v3/download/localhost/{id}/other.png"),
        false,
    )
    .await;
    assert_eq!((s, bytes.len()), (200, picture.len()));
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("other.png"));

    // Thumbnails: cropped to the box, scaled to fit it, generated once.
    let path =
        format!("/_matrix/client/v1/media/thumbnail/localhost/{id}?width=32&height=32&method=crop");
    let (s, h, first) = get_bytes(&bob, &path, true).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "image/png");
    let t = image::load_from_memory(&first).unwrap();
    assert_eq!((t.width(), t.height()), (32, 32));
    let (_, _, second) = get_bytes(&bob, &path, true).await;
    assert_eq!(first, second);
    if on_disk {
        assert!(
            server
                .dir
                .path()
                .join(format!("media/thumbnails/{id}/32x32-crop.png"))
                .exists(),
            "stored"
        );
    }
    let (_, _, scaled) = get_bytes(
        &bob,
        &format!("/_matrix/media/v3/thumbnail/localhost/{id}?width=300&height=200&method=scale"),
        false,
    )
    .await;
    let t = image::load_from_memory(&scaled).unwrap();
    assert_eq!(
        (t.width(), t.height()),
        (320, 240),
        "fits 320x240, aspect kept"
    );

    // Create first, upload later; only once, only by its creator.
    let (s, b) = alice
        .post("/_matrix/media/v1/create", serde_json::json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    let later = b["content_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("mxc://localhost/")
        .unwrap()
        .to_owned();
    let (s, _, _) = get_bytes(
        &bob,
        &format!("/_matrix/client/v1/media/download/localhost/{later}"),
        true,
    )
    .await;
    assert_eq!(s, 404, "not uploaded yet");
    let put = |c: &common::Client, body: &'static [u8]| {
        let req = c
            .http
            .put(format!(
                "{}/_matrix/media/v3/upload/localhost/{later}",
                c.base
            ))
            .bearer_auth(c.token.as_deref().unwrap())
            .header("content-type", "text/plain")
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, b) = put(&bob, b"not mine").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{b}"
    );
    let (s, _) = put(&alice, b"hello later").await;
    assert_eq!(s, 200);
    let (s, b) = put(&alice, b"again").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (409, Some("M_CANNOT_OVERWRITE_MEDIA")),
        "{b}"
    );
    let (_, _, bytes) = get_bytes(
        &bob,
        &format!("/_matrix/client/v1/media/download/localhost/{later}"),
        true,
    )
    .await;
    assert_eq!(bytes, b"hello later");

    // Errors: unknown, remote, not an image; the configured limit.
    let (s, _, _) = get_bytes(
        &bob,
        "/_matrix/client/v1/media/download/localhost/nope",
        true,
    )
    .await;
    assert_eq!(s, 404);
    // Another server's media is fetched from it; that of one this server may not reach (a
    // private address, by default) is not found, and nothing is fetched when not asked.
    let (s, _, _) = get_bytes(
        &bob,
        &format!("/_matrix/client/v1/media/download/10.255.255.1:8448/{id}"),
        true,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = get_bytes(
        &bob,
        &format!("/_matrix/media/v3/download/10.255.255.1:8448/{id}?allow_remote=false"),
        true,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = get_bytes(
        &bob,
        &format!("/_matrix/client/v1/media/thumbnail/localhost/{later}?width=32&height=32"),
        true,
    )
    .await;
    assert_eq!(s, 400, "a text file has no thumbnail");
    let (s, b) = bob.get("/_matrix/client/v1/media/config").await;
    assert_eq!(
        (s, b["m.upload.size"].as_u64()),
        (200, Some(50 * 1024 * 1024))
    );
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused() {
    let server = Server::start_with(|c| c.max_upload_bytes = 1000).await;
    let alice = server.register("alice").await;
    let (s, b) = upload(
        &alice,
        "/_matrix/media/v3/upload",
        vec![7u8; 2000],
        "application/octet-stream",
    )
    .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{b}"
    );
    let (s, _) = upload(
        &alice,
        "/_matrix/media/v3/upload",
        vec![7u8; 900],
        "application/octet-stream",
    )
    .await;
    assert_eq!(s, 200);
    let (_, b) = alice
        .get(&format!("/_matrix/media/v3/config?x={}", enc("y")))
        .await;
    assert_eq!(b["m.upload.size"], 1000);
}
