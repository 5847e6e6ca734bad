//! Contract of the `MediaStore` port, run against local files and against a real S3 server on
//! loopback (`scripts/services.sh` starts one; `SANDCAT_TEST_S3` overrides its address).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use sandcat_backends::{
    fs_media::FsMediaStore,
    s3_media::{S3Config, S3MediaStore},
};
use sandcat_core::ports::MediaStore;

async fn contract(store: &dyn MediaStore) {
    assert_eq!(store.get("absent").await.unwrap(), None);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store.put("abc", b"hello").await.unwrap();
    store
        .put("thumbnails/abc/32x32-crop.png", &big)
        .await
        .unwrap();
    assert_eq!(
        store.get("abc").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        store.get("thumbnails/abc/32x32-crop.png").await.unwrap(),
        Some(big)
    );
    // A put replaces.
    store.put("abc", b"again").await.unwrap();
    assert_eq!(
        store.get("abc").await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
}

#[tokio::test]
async fn files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsMediaStore::new(dir.path().join("media"));
    contract(&store).await;
    assert!(
        store.put("../escape", b"x").await.is_err(),
        "keys cannot leave the root"
    );
}

fn s3_config(bucket: &str) -> S3Config {
    S3Config {
        endpoint: std::env::var("SANDCAT_TEST_S3")
            .unwrap_or_else(|_| "http://127.0.0.1:9000".into()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        access_key: std::env::var("SANDCAT_TEST_S3_KEY").unwrap_or_else(|_| "minioadmin".into()),
        secret_key: std::env::var("SANDCAT_TEST_S3_SECRET").unwrap_or_else(|_| "minioadmin".into()),
    }
}

#[tokio::test]
async fn s3() {
    let bucket = format!(
        "sandcat-test-{}",
        sandcat_core::token::random_string(6)
            .to_lowercase()
            .replace(['_', '-'], "x")
    );
    let config = s3_config(&bucket);
    let store = match S3MediaStore::connect(&config).await {
        Ok(s) => s,
        Err(e) => panic!(
            "no S3 server at {} ({e}); start one with scripts/services.sh",
            config.endpoint
        ),
    };
    contract(&store).await;
    // A second connection finds the bucket and its objects.
    let again = S3MediaStore::connect(&config).await.unwrap();
    assert_eq!(
        again.get("abc").await.unwrap().as_deref(),
        Some(&b"again"[..])
    );
}

#[tokio::test]
async fn s3_unreachable_fails_fast() {
    let mut config = s3_config("sandcat-nowhere");
    config.endpoint = "http://127.0.0.1:9".into();
    let err = S3MediaStore::connect(&config)
        .await
        .err()
        .expect("unreachable");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}
