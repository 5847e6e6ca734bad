//! The pipeline's media store: any S3 service (MinIO, Garage, AWS) through `aws-sdk-s3`, with
//! a custom endpoint, region and path-style addressing.

use async_trait::async_trait;
use aws_sdk_s3::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::ByteStream,
    Client,
};
use sandcat_core::{ports::MediaStore, Error, Result};

/// Where the bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

pub struct S3MediaStore {
    client: Client,
    bucket: String,
}

fn s3_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("S3 {what}: {e}"))
}

impl S3MediaStore {
    /// Connects and makes sure the bucket exists (creating it if missing). Fails when the
    /// service cannot be reached, so a misconfigured server stops at start-up.
    pub async fn connect(config: &S3Config) -> Result<S3MediaStore> {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&config.endpoint)
            .region(Region::new(config.region.clone()))
            .credentials_provider(Credentials::new(
                &config.access_key,
                &config.secret_key,
                None,
                None,
                "sandcat-config",
            ))
            .force_path_style(true)
            .build();
        let store = S3MediaStore {
            client: Client::from_conf(conf),
            bucket: config.bucket.clone(),
        };
        match store
            .client
            .head_bucket()
            .bucket(&store.bucket)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                store
                    .client
                    .create_bucket()
                    .bucket(&store.bucket)
                    .send()
                    .await
                    .map_err(|e| {
                        s3_err(
                            "creating the bucket",
                            aws_sdk_s3::error::DisplayErrorContext(e),
                        )
                    })?;
            }
            Err(e) => {
                return Err(s3_err(
                    &format!("reaching {} (bucket {})", config.endpoint, config.bucket),
                    aws_sdk_s3::error::DisplayErrorContext(e),
                ))
            }
        }
        Ok(store)
    }
}

#[async_trait]
impl MediaStore for S3MediaStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| s3_err("put", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| s3_err("reading an object", e))?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_err("get", aws_sdk_s3::error::DisplayErrorContext(e))),
        }
    }
}
