//! Media: uploads (direct, or to an id created first), downloads, and thumbnails generated once
//! per size and stored beside the original. Bytes go to the `MediaStore`, metadata to the
//! `MediaIndex`. Only this server's media exists here (no federation yet).

use std::sync::Arc;

use image::{imageops::FilterType, ImageFormat};

use crate::{
    error::ErrorCode,
    ports::{MediaIndex, MediaRecord, MediaStore},
    Error, Result,
};

/// Thumbnail sizes served, as Synapse does: a request gets the smallest one at least as big.
const SIZES: [(u32, u32, bool); 5] = [
    (32, 32, true),
    (96, 96, true),
    (320, 240, false),
    (640, 480, false),
    (800, 600, false),
];

pub struct Media {
    blobs: Arc<dyn MediaStore>,
    index: Arc<dyn MediaIndex>,
    max_bytes: usize,
    /// Files the server ships (Sandcat's default avatars), by media id: content type, bytes.
    builtin: std::collections::HashMap<&'static str, (&'static str, &'static [u8])>,
}

fn new_media_id() -> String {
    crate::token::random_string(18)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Media {
    pub fn new(blobs: Arc<dyn MediaStore>, index: Arc<dyn MediaIndex>, max_bytes: usize) -> Self {
        Media {
            blobs,
            index,
            max_bytes,
            builtin: Default::default(),
        }
    }

    /// Serves `bytes` as the media `media_id` of this server (never uploaded, never stored).
    pub fn with_builtin(
        mut self,
        media_id: &'static str,
        content_type: &'static str,
        bytes: &'static [u8],
    ) -> Self {
        self.builtin.insert(media_id, (content_type, bytes));
        self
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn check_size(&self, len: usize) -> Result<()> {
        if len > self.max_bytes {
            return Err(Error::matrix(
                ErrorCode::TooLarge,
                format!("media is larger than {} bytes", self.max_bytes),
            ));
        }
        Ok(())
    }

    async fn store(&self, mut record: MediaRecord, bytes: &[u8]) -> Result<()> {
        self.check_size(bytes.len())?;
        self.blobs.put(&record.media_id, bytes).await?;
        record.size = bytes.len() as u64;
        record.uploaded = true;
        self.index.put_media(&record).await
    }

    /// `POST /upload`: stores the bytes under a new id.
    pub async fn upload(
        &self,
        uploader: &str,
        bytes: &[u8],
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<String> {
        let media_id = new_media_id();
        self.store(
            MediaRecord {
                media_id: media_id.clone(),
                uploader: uploader.to_owned(),
                content_type,
                filename,
                created_ts: crate::now_ms(),
                ..Default::default()
            },
            bytes,
        )
        .await?;
        Ok(media_id)
    }

    /// `POST /create`: an id whose bytes the same user uploads later.
    pub async fn create(&self, uploader: &str) -> Result<String> {
        let media_id = new_media_id();
        self.index
            .put_media(&MediaRecord {
                media_id: media_id.clone(),
                uploader: uploader.to_owned(),
                created_ts: crate::now_ms(),
                ..Default::default()
            })
            .await?;
        Ok(media_id)
    }

    /// `PUT /upload/{serverName}/{mediaId}`: the bytes of an id from `create`.
    pub async fn upload_to(
        &self,
        uploader: &str,
        media_id: &str,
        bytes: &[u8],
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<()> {
        let rec = self
            .index
            .media(media_id)
            .await?
            .ok_or_else(|| Error::not_found("unknown media id"))?;
        if rec.uploader != uploader {
            return Err(Error::forbidden("this media id belongs to another user"));
        }
        if rec.uploaded {
            return Err(Error::matrix(
                ErrorCode::CannotOverwriteMedia,
                "media already uploaded",
            ));
        }
        self.store(
            MediaRecord {
                content_type,
                filename,
                ..rec
            },
            bytes,
        )
        .await
    }

    /// The record and bytes of an uploaded media id.
    pub async fn download(&self, media_id: &str) -> Result<(MediaRecord, Vec<u8>)> {
        let not_found = || Error::not_found("media not found");
        if !valid_media_id(media_id) {
            return Err(not_found());
        }
        if let Some((content_type, bytes)) = self.builtin.get(media_id) {
            let rec = MediaRecord {
                media_id: media_id.to_owned(),
                uploader: String::new(),
                content_type: Some((*content_type).to_owned()),
                filename: Some(format!("{media_id}.png")),
                size: bytes.len() as u64,
                created_ts: 0,
                uploaded: true,
            };
            return Ok((rec, bytes.to_vec()));
        }
        let rec = self
            .index
            .media(media_id)
            .await?
            .filter(|r| r.uploaded)
            .ok_or_else(not_found)?;
        let bytes = self.blobs.get(media_id).await?.ok_or_else(not_found)?;
        Ok((rec, bytes))
    }

    /// A thumbnail (PNG, or JPEG for photos) of at least `width`×`height`; `crop` fills the
    /// box, otherwise the image is scaled to fit it. Generated once per size and stored.
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        crop: bool,
    ) -> Result<(String, Vec<u8>)> {
        let (rec, bytes) = self.download(media_id).await?;
        let (w, h, crop) = SIZES
            .iter()
            .copied()
            .find(|(w, h, c)| *c == crop && *w >= width && *h >= height)
            .or_else(|| SIZES.iter().copied().rev().find(|(_, _, c)| *c == crop))
            .unwrap_or((800, 600, false));
        let method = if crop { "crop" } else { "scale" };
        let jpeg = rec.content_type.as_deref() == Some("image/jpeg");
        let (ct, ext) = if jpeg {
            ("image/jpeg", "jpg")
        } else {
            ("image/png", "png")
        };
        let key = format!("thumbnails/{media_id}/{w}x{h}-{method}.{ext}");
        if let Some(t) = self.blobs.get(&key).await? {
            return Ok((ct.to_owned(), t));
        }
        let out = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let img = image::load_from_memory(&bytes)
                .map_err(|_| Error::matrix(ErrorCode::Unknown, "media is not an image"))?;
            let thumb = if crop {
                img.resize_to_fill(w, h, FilterType::Triangle)
            } else if img.width() <= w && img.height() <= h {
                img
            } else {
                img.resize(w, h, FilterType::Triangle)
            };
            let mut out = std::io::Cursor::new(Vec::new());
            let format = if jpeg {
                ImageFormat::Jpeg
            } else {
                ImageFormat::Png
            };
            let thumb = if jpeg {
                image::DynamicImage::ImageRgb8(thumb.to_rgb8())
            } else {
                thumb
            };
            thumb
                .write_to(&mut out, format)
                .map_err(|e| Error::internal(format!("thumbnail: {e}")))?;
            Ok(out.into_inner())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        self.blobs.put(&key, &out).await?;
        Ok((ct.to_owned(), out))
    }
}
