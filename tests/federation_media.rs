//! Media across servers, over loopback TLS: a user downloads another server's file and its
//! thumbnails through the client media endpoints; the file is fetched from its server once
//! (authenticated federation media) and then served from the copy kept here, even when that
//! server is gone. Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on
//! the pipeline (S3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{federation::federating, png, Client};
use serde_json::Value;

async fn upload(c: &Client, bytes: Vec<u8>, name: &str, ct: &str) -> String {
    let res = c
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename={name}",
            c.base
        ))
        .bearer_auth(c.token.as_deref().unwrap())
        .header("content-type", ct)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["content_uri"].as_str().unwrap().to_owned()
}

/// Status, content type, content disposition and bytes of a GET.
async fn get(c: &Client, path: &str) -> (u16, String, String, Vec<u8>) {
    let res = c
        .http
        .get(format!("{}{path}", c.base))
        .bearer_auth(c.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (ct, cd) = (header("content-type"), header("content-disposition"));
    (
        res.status().as_u16(),
        ct,
        cd,
        res.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn remote_media_is_fetched_once_and_kept() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, _b_name) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;

    let picture = png(200, 100);
    let uri = upload(&alice, picture.clone(), "cat.png", "image/png").await;
    let id = uri
        .strip_prefix(&format!("mxc://{a_name}/"))
        .expect("an mxc uri of the first server")
        .to_owned();
    let text = upload(&alice, b"plain words".to_vec(), "notes.txt", "text/plain").await;
    let text_id = text.rsplit('/').next().unwrap().to_owned();

    // Bob, on the second server, downloads it through his own server.
    let (s, ct, cd, bytes) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/{id}"),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(bytes, picture);
    assert_eq!(ct, "image/png");
    assert!(cd.contains("cat.png"), "{cd}");
    // With a name of his choosing, on the legacy endpoint too.
    let (s, _, cd, bytes) = get(
        &bob,
        &format!("/_matrix/media/v3/download/{a_name}/{id}/other.png"),
    )
    .await;
    assert_eq!((s, bytes.len()), (200, picture.len()));
    assert!(cd.contains("other.png"), "{cd}");
    // A thumbnail, made here from the copy.
    let path =
        format!("/_matrix/client/v1/media/thumbnail/{a_name}/{id}?width=32&height=32&method=crop");
    let (s, ct, _, thumb) = get(&bob, &path).await;
    assert_eq!((s, ct.as_str()), (200, "image/png"));
    let t = image::load_from_memory(&thumb).unwrap();
    assert_eq!((t.width(), t.height()), (32, 32));

    // The legacy endpoint fetches nothing when asked not to; a file the server lacks is 404.
    let (s, _, _, _) = get(
        &bob,
        &format!("/_matrix/media/v3/download/{a_name}/{text_id}?allow_remote=false"),
    )
    .await;
    assert_eq!(s, 404, "allow_remote=false fetches nothing");
    let (s, _, _, _) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/nosuchfile"),
    )
    .await;
    assert_eq!(s, 404, "a file its server does not have");
    let (s, _, _, _) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/bad%2Fid"),
    )
    .await;
    assert_eq!(s, 404, "an id that is not a media id");

    // The first server goes away: what was fetched is still served; what was not is not
    // found, and the answer says why.
    let _data = a.stop().await;
    let (s, _, _, bytes) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/{id}"),
    )
    .await;
    assert_eq!((s, bytes), (200, picture), "served from the kept copy");
    let path =
        format!("/_matrix/client/v1/media/thumbnail/{a_name}/{id}?width=96&height=96&method=crop");
    let (s, _, _, _) = get(&bob, &path).await;
    assert_eq!(s, 200, "a new size is made from the kept copy");
    let (s, _, _, body) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/{text_id}"),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{body}"
    );
}

#[tokio::test]
async fn remote_media_over_the_size_limit_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, _) =
        common::federation::federating_with(certs.path(), |c| c.max_upload_bytes = 1_000).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let big = upload(
        &alice,
        vec![7u8; 5_000],
        "big.bin",
        "application/octet-stream",
    )
    .await;
    let id = big.rsplit('/').next().unwrap();
    let (s, _, _, body) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/{id}"),
    )
    .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (s, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{body}"
    );
    let small = upload(
        &alice,
        vec![7u8; 500],
        "small.bin",
        "application/octet-stream",
    )
    .await;
    let id = small.rsplit('/').next().unwrap();
    let (s, _, cd, bytes) = get(
        &bob,
        &format!("/_matrix/client/v1/media/download/{a_name}/{id}"),
    )
    .await;
    assert_eq!((s, bytes.len()), (200, 500));
    assert!(cd.starts_with("attachment"), "{cd}");
}
