//! Media: uploads (direct, or to an id created first), downloads, and thumbnails generated once
//! per size and stored beside the original. Bytes go to the `MediaStore`, metadata to the
//! `MediaIndex`. Another server's media is fetched from it once (`RemoteMedia`), then kept
//! and served like this server's, under a key of its own (`remote/{server}/{media id}`).

use std::{collections::HashMap, sync::Arc};

use image::{imageops::FilterType, ImageFormat};
use ruma::{
    http_headers::{ContentDisposition, ContentDispositionType},
    OwnedServerName, ServerName,
};

use crate::{
    error::ErrorCode,
    ports::{MediaIndex, MediaRecord, MediaStore, NoRemoteMedia, RemoteMedia},
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
    builtin: HashMap<&'static str, (&'static str, &'static [u8])>,
    /// This server's name: media of any other is remote.
    own: OwnedServerName,
    remote: Arc<dyn RemoteMedia>,
    /// One lock per remote file being fetched, so that concurrent requests fetch it once.
    fetching: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The key under which a copy of another server's file is kept (index and store): the server
/// name with `:`, `[` and `]` escaped as `_xx` (server names have no `_`, so no two collide).
fn remote_key(server: &ServerName, media_id: &str) -> String {
    let mut out = String::from("remote/");
    for c in server.as_str().chars() {
        match c {
            ':' | '[' | ']' => out.push_str(&format!("_{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('/');
    out.push_str(media_id);
    out
}

/// How a file is served: inline for types a browser shows safely, as an attachment otherwise.
pub fn disposition(rec: &MediaRecord, filename: Option<String>) -> ContentDisposition {
    let inline = rec.content_type.as_deref().is_some_and(|t| {
        [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "text/plain",
        ]
        .contains(&t)
            || t.starts_with("video/")
            || t.starts_with("audio/")
    });
    let kind = if inline {
        ContentDispositionType::Inline
    } else {
        ContentDispositionType::Attachment
    };
    ContentDisposition::new(kind).with_filename(filename.or_else(|| rec.filename.clone()))
}

/// The content type a file is served with.
pub fn content_type(rec: &MediaRecord) -> String {
    rec.content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into())
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
    pub fn new(
        blobs: Arc<dyn MediaStore>,
        index: Arc<dyn MediaIndex>,
        max_bytes: usize,
        own: OwnedServerName,
    ) -> Self {
        Media {
            blobs,
            index,
            max_bytes,
            builtin: Default::default(),
            own,
            remote: Arc::new(NoRemoteMedia),
            fetching: Default::default(),
        }
    }

    /// Where other servers' media is fetched from.
    pub fn with_remote(mut self, remote: Arc<dyn RemoteMedia>) -> Self {
        self.remote = remote;
        self
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

    async fn store(&self, mut record: MediaRecord, bytes: &[u8]) -> Result<MediaRecord> {
        self.check_size(bytes.len())?;
        self.blobs.put(&record.media_id, bytes).await?;
        record.size = bytes.len() as u64;
        record.uploaded = true;
        self.index.put_media(&record).await?;
        Ok(record)
    }

    /// Refuses a content URI of another server where only this server's may be named.
    fn check_own(&self, server: &ServerName) -> Result<()> {
        if server == self.own {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "{server} is not this server: media can only be uploaded here to this server's ids"
            )))
        }
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
        server: &ServerName,
        media_id: &str,
        bytes: &[u8],
        content_type: Option<String>,
        filename: Option<String>,
    ) -> Result<()> {
        self.check_own(server)?;
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
        .map(drop)
    }

    /// The record and bytes of `mxc://{server}/{media_id}`: this server's own, or another
    /// server's, fetched once when `allow_remote` (else `M_NOT_FOUND`).
    pub async fn download_from(
        &self,
        server: &ServerName,
        media_id: &str,
        allow_remote: bool,
    ) -> Result<(MediaRecord, Vec<u8>)> {
        if server == self.own {
            self.download(media_id).await
        } else if !allow_remote {
            Err(Error::not_found("media of other servers was not asked for"))
        } else {
            self.remote_copy(server, media_id).await
        }
    }

    /// The copy kept of another server's file, fetched from it the first time.
    async fn remote_copy(
        &self,
        server: &ServerName,
        media_id: &str,
    ) -> Result<(MediaRecord, Vec<u8>)> {
        if !valid_media_id(media_id) {
            return Err(Error::not_found("media not found"));
        }
        let key = remote_key(server, media_id);
        let lock = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            fetching.entry(key.clone()).or_default().clone()
        };
        let result = async {
            let _fetching = lock.lock().await;
            if let Some(kept) = self.kept(&key).await? {
                return Ok(kept);
            }
            let file = self
                .remote
                .download(server, media_id, self.max_bytes)
                .await?;
            let record = MediaRecord {
                media_id: key.clone(),
                uploader: String::new(),
                content_type: file.content_type,
                filename: file.filename,
                created_ts: crate::now_ms(),
                ..Default::default()
            };
            let record = self.store(record, &file.bytes).await?;
            Ok((record, file.bytes))
        }
        .await;
        let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            fetching.remove(&key);
        }
        result
    }

    /// A stored file by its key, if its bytes are all there.
    async fn kept(&self, key: &str) -> Result<Option<(MediaRecord, Vec<u8>)>> {
        let Some(record) = self.index.media(key).await?.filter(|r| r.uploaded) else {
            return Ok(None);
        };
        Ok(self.blobs.get(key).await?.map(|bytes| (record, bytes)))
    }

    /// The record and bytes of an uploaded media id of this server.
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
        server: &ServerName,
        media_id: &str,
        size: (u32, u32),
        crop: bool,
        allow_remote: bool,
    ) -> Result<(String, Vec<u8>)> {
        let (width, height) = size;
        let (rec, bytes) = self.download_from(server, media_id, allow_remote).await?;
        let media_id = rec.media_id.as_str();
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
